//! `replicatorctl`: drbdadm's verbs. `create-md`, `dump` and `show-gi` work on files and need
//! no daemon; `up`, `down`, `primary`, `secondary`, `connect`, `disconnect`, `invalidate`,
//! `verify` and `status` ask `replicatord` over its control socket (the daemon reads its own
//! configuration).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use replicator_core::config::{Host, Loaded, Resource, dump};
use replicator_core::meta::superblock::Flags;
use serde_json::json;
use tokio::net::UnixStream;

use crate::control::{self, Command, PROTOCOL_VERSION, Request, Response};
use crate::daemon::DEFAULT_STATE_DIR;
use crate::exit::{Exit, Failure};
use crate::status::render_text;

/// Administer replicatord resources (drbdadm's verbs).
#[derive(Debug, Parser)]
#[command(name = "replicatorctl", version)]
pub struct Cli {
    /// The daemon's state directory (where its control socket is).
    #[arg(long, short = 's', env = "REPLICATOR_STATE_DIR", default_value = DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
    /// Configuration file, for the offline verbs (create-md, dump, show-gi).
    #[arg(
        long,
        short = 'c',
        env = "REPLICATOR_CONFIG",
        default_value = "/etc/replicator/replicator.conf",
        global = true
    )]
    pub config: PathBuf,
    /// This node's name, for the offline verbs [default: the host name].
    #[arg(long, short = 'n', env = "REPLICATOR_NODE", global = true)]
    pub node: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Write fresh meta-data for this node's disk of RES (offline; the resource must be down).
    CreateMd {
        /// Resource name.
        resource: String,
        /// Overwrite valid meta-data, or internal meta-data over a filesystem.
        #[arg(long)]
        force: bool,
    },
    /// Attach RES's disk (the daemon re-reads its configuration).
    Up {
        /// Resource name.
        resource: String,
    },
    /// Demote RES if Primary, then detach its disk.
    Down {
        /// Resource name.
        resource: String,
    },
    /// Make RES Primary on this node and open its NBD export.
    Primary {
        /// Resource name.
        resource: String,
        /// Promote even if the disk is not UpToDate (first promotion of fresh meta-data).
        #[arg(long)]
        force: bool,
    },
    /// Make RES Secondary (closes the NBD export).
    Secondary {
        /// Resource name.
        resource: String,
    },
    /// Connect RES to its peer (after `disconnect`, a refused handshake or a split brain).
    Connect {
        /// Resource name.
        resource: String,
        /// This node is the split-brain victim: discard its changes and resync it from the peer.
        #[arg(long)]
        discard_my_data: bool,
    },
    /// Drop RES's connection to its peer and stay StandAlone.
    Disconnect {
        /// Resource name.
        resource: String,
    },
    /// Discard this node's data of RES and resync it in full from the peer (Secondary only).
    Invalidate {
        /// Resource name.
        resource: String,
    },
    /// Online verify of RES against its peer (needs verify-alg): differing blocks are marked
    /// out of sync; `disconnect` + `connect` resyncs them.
    Verify {
        /// Resource name.
        resource: String,
        /// Wait until the verify has finished and print its result.
        #[arg(long)]
        wait: bool,
    },
    /// Show the state of RES (every resource of this node without RES).
    Status {
        /// Resource name.
        resource: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the parsed, normalised configuration (offline).
    Dump {
        /// Resource name (every resource without it).
        resource: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set the generation identifiers in RES's meta-data on this node (offline, an expert's
    /// recovery tool like drbdmeta set-gi): GI is CURRENT:BITMAP:HISTORY1:HISTORY2 in hex.
    SetGi {
        /// Resource name.
        resource: String,
        /// CURRENT:BITMAP:HISTORY1:HISTORY2 (hex, as show-gi prints them).
        gi: String,
    },
    /// Show the generation identifiers from RES's meta-data on this node (offline).
    ShowGi {
        /// Resource name.
        resource: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one invocation.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let node = cli.node.clone().unwrap_or_else(crate::hostname);
    match &cli.verb {
        Verb::CreateMd { resource, force } => create_md(&cli, &node, resource, *force),
        Verb::Dump { resource, json } => dump_cmd(&cli, resource.as_deref(), *json),
        Verb::ShowGi { resource, json } => show_gi(&cli, &node, resource, *json),
        Verb::SetGi { resource, gi } => set_gi(&cli, &node, resource, gi),
        Verb::Up { resource } => online(
            &cli,
            Command::Up {
                resource: resource.clone(),
            },
        ),
        Verb::Down { resource } => online(
            &cli,
            Command::Down {
                resource: resource.clone(),
            },
        ),
        Verb::Primary { resource, force } => online(
            &cli,
            Command::Primary {
                resource: resource.clone(),
                force: *force,
            },
        ),
        Verb::Secondary { resource } => online(
            &cli,
            Command::Secondary {
                resource: resource.clone(),
            },
        ),
        Verb::Connect {
            resource,
            discard_my_data,
        } => online(
            &cli,
            Command::Connect {
                resource: resource.clone(),
                discard_my_data: *discard_my_data,
            },
        ),
        Verb::Disconnect { resource } => online(
            &cli,
            Command::Disconnect {
                resource: resource.clone(),
            },
        ),
        Verb::Invalidate { resource } => online(
            &cli,
            Command::Invalidate {
                resource: resource.clone(),
            },
        ),
        Verb::Verify { resource, wait } => online(
            &cli,
            Command::Verify {
                resource: resource.clone(),
                wait: *wait,
            },
        ),
        Verb::Status { resource, json } => status(&cli, resource.clone(), *json),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot start the runtime: {e}")))
}

/// Sends one request to the daemon of `state_dir` and returns its response.
pub fn request(state_dir: &std::path::Path, command: Command) -> Result<Response, Failure> {
    let path = state_dir.join(control::SOCKET_NAME);
    runtime()?.block_on(async move {
        let mut s = UnixStream::connect(&path).await.map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => "replicatord is not running".to_owned(),
                std::io::ErrorKind::PermissionDenied => "permission denied (run as root)".to_owned(),
                _ => e.to_string(),
            };
            Failure::new(Exit::NoDaemon, format!("cannot reach replicatord at {}: {why}", path.display()))
        })?;
        let req = Request { version: PROTOCOL_VERSION, command };
        let body = serde_json::to_vec(&req).expect("serialisable");
        control::write_frame(&mut s, &body).await.map_err(|e| Failure::new(Exit::NoDaemon, format!("sending to replicatord: {e}")))?;
        let frame = control::read_frame(&mut s).await.map_err(|e| Failure::new(Exit::NoDaemon, format!("reading replicatord's answer: {e}")))?;
        let resp: Response = serde_json::from_slice(&frame).map_err(|e| Failure::new(Exit::Protocol, format!("bad answer from replicatord: {e}")))?;
        if resp.version != PROTOCOL_VERSION {
            return Err(Failure::new(Exit::Protocol, format!("replicatord speaks control protocol {} (this replicatorctl: {PROTOCOL_VERSION})", resp.version)));
        }
        Ok(resp)
    })
}

fn online(cli: &Cli, command: Command) -> Result<(), Failure> {
    let resp = request(&cli.state_dir, command)?;
    for w in &resp.warnings {
        eprintln!("warning: {w}");
    }
    if resp.exit != Exit::Ok {
        return Err(Failure::new(resp.exit, resp.message));
    }
    if !resp.message.is_empty() {
        println!("{}", resp.message);
    }
    Ok(())
}

fn status(cli: &Cli, resource: Option<String>, json: bool) -> Result<(), Failure> {
    let resp = request(&cli.state_dir, Command::Status { resource })?;
    if resp.exit != Exit::Ok {
        return Err(Failure::new(resp.exit, resp.message));
    }
    let out = if json {
        let v = if resp.status.len() == 1 {
            serde_json::to_string_pretty(&resp.status[0])
        } else {
            serde_json::to_string_pretty(&resp.status)
        };
        v.expect("serialisable") + "\n"
    } else {
        render_text(&resp.status)
    };
    print!("{out}");
    let _ = std::io::stdout().flush();
    Ok(())
}

fn load(cli: &Cli) -> Result<Loaded, Failure> {
    crate::source::load(&cli.config.to_string_lossy())
        .map_err(|e| Failure::new(Exit::Config, e.to_string()))
}

fn local<'a>(
    cli: &Cli,
    loaded: &'a Loaded,
    node: &str,
    resource: &str,
) -> Result<(&'a Resource, &'a Host), Failure> {
    let r = loaded.config.resource(resource).ok_or_else(|| {
        Failure::new(
            Exit::Config,
            format!("no resource '{resource}' in {}", cli.config.display()),
        )
    })?;
    let h = r.host(node).ok_or_else(|| {
        let hosts: Vec<&str> = r.hosts.iter().map(|h| h.name()).collect();
        Failure::new(
            Exit::Config,
            format!(
                "resource '{resource}' has no 'on {node}' section (it has: {}); give --node",
                hosts.join(", ")
            ),
        )
    })?;
    Ok((r, h))
}

/// Refuses offline meta-data changes while a daemon has the resource up.
fn refuse_if_up(cli: &Cli, resource: &str) -> Result<(), Failure> {
    // DRBD refuses create-md on an attached device; so do we, when a daemon has it up.
    if let Ok(resp) = request(
        &cli.state_dir,
        Command::Status {
            resource: Some(resource.to_owned()),
        },
    ) && resp.status.iter().any(|s| s.up)
    {
        return Err(Failure::new(
            Exit::Refused,
            format!(
                "resource {resource} is up in replicatord ({}): bring it down first",
                cli.state_dir.display()
            ),
        ));
    }
    Ok(())
}

fn set_gi(cli: &Cli, node: &str, resource: &str, gi: &str) -> Result<(), Failure> {
    use replicator_core::types::{GenerationIds, Uuid};
    let loaded = load(cli)?;
    let (_, h) = local(cli, &loaded, node, resource)?;
    let parts: Vec<&str> = gi.split(':').collect();
    let parsed: Result<Vec<u64>, _> = parts.iter().map(|p| u64::from_str_radix(p, 16)).collect();
    let ids = match parsed {
        Ok(v) if v.len() == 4 => GenerationIds {
            current: Uuid(v[0]),
            bitmap: Uuid(v[1]),
            history: [Uuid(v[2]), Uuid(v[3])],
        },
        _ => {
            return Err(Failure::new(
                Exit::Usage,
                format!(
                    "bad generation identifiers {gi:?}: expected CURRENT:BITMAP:HISTORY1:HISTORY2 in hex (as show-gi prints them)"
                ),
            ));
        }
    };
    refuse_if_up(cli, resource)?;
    let disks = crate::md::open(h)?;
    let mut sb = disks.superblock()?.sb;
    sb.gi = ids;
    sb.seq += 1;
    let offs =
        replicator_core::meta::Layout::superblock_offsets(disks.placement, disks.backing_bytes);
    let off = offs[replicator_core::meta::Superblock::slot_for_seq(sb.seq)];
    crate::md::write_block(&disks.meta, off, &sb.encode())
        .and_then(|()| disks.meta.sync_data())
        .map_err(|e| Failure::new(Exit::Failed, format!("writing the superblock: {e}")))?;
    println!(
        "resource {resource} on node {node}: generation identifiers set to {}:{}:{}:{}",
        ids.current, ids.bitmap, ids.history[0], ids.history[1]
    );
    Ok(())
}

fn create_md(cli: &Cli, node: &str, resource: &str, force: bool) -> Result<(), Failure> {
    let loaded = load(cli)?;
    let (r, h) = local(cli, &loaded, node, resource)?;
    refuse_if_up(cli, resource)?;
    let created = crate::createmd::create_md(r, h, force)?;
    for w in &created.warnings {
        eprintln!("warning: {w}");
    }
    let l = &created.layout;
    println!(
        "New meta-data for resource {resource} on node {node} (node id {}): {} bytes of data, {} KiB of meta-data ({} bitmap pages, {} activity-log slots), {}",
        created.sb.node_id.0,
        l.data_bytes,
        l.meta_bytes / 1024,
        l.bm_pages,
        l.al_slots,
        match l.placement {
            replicator_core::meta::Placement::Internal => "internal".to_owned(),
            replicator_core::meta::Placement::External { index: None } =>
                format!("external in {}", meta_path(h)),
            replicator_core::meta::Placement::External { index: Some(i) } =>
                format!("external in {} [{i}]", meta_path(h)),
        }
    );
    Ok(())
}

fn meta_path(h: &Host) -> String {
    match &h.meta_disk {
        replicator_core::config::MetaDisk::External { path, .. } => path.clone(),
        replicator_core::config::MetaDisk::Internal => String::new(),
    }
}

fn dump_cmd(cli: &Cli, resource: Option<&str>, json: bool) -> Result<(), Failure> {
    let loaded = load(cli)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let state_dir = cli.state_dir.to_string_lossy().into_owned();
    let selected: Vec<&Resource> = match resource {
        Some(name) => vec![loaded.config.resource(name).ok_or_else(|| {
            Failure::new(
                Exit::Config,
                format!("no resource '{name}' in {}", cli.config.display()),
            )
        })?],
        None => loaded.config.resources.iter().collect(),
    };
    if json {
        let resources: Vec<serde_json::Value> = selected
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("serialisable");
                let exports: serde_json::Map<String, serde_json::Value> = r
                    .hosts
                    .iter()
                    .map(|h| {
                        (
                            h.name().to_owned(),
                            json!(h.device.export(&r.name, &state_dir).uri()),
                        )
                    })
                    .collect();
                v["exports"] = serde_json::Value::Object(exports);
                v
            })
            .collect();
        let out = json!({
            "files": loaded.config.files,
            "global": loaded.config.global,
            "resources": resources,
            "warnings": loaded.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialisable")
        );
    } else if resource.is_some() {
        print!("{}", dump::render_resource(selected[0], Some(&state_dir)));
    } else {
        print!("{}", dump::render(&loaded.config, Some(&state_dir)));
    }
    Ok(())
}

fn show_gi(cli: &Cli, node: &str, resource: &str, json: bool) -> Result<(), Failure> {
    let loaded = load(cli)?;
    let (_, h) = local(cli, &loaded, node, resource)?;
    let disks = crate::md::open(h)?;
    let sb = disks.superblock()?.sb;
    let f = sb.flags;
    let bits = [
        Flags::CONSISTENT,
        Flags::WAS_UP_TO_DATE,
        Flags::PRIMARY_IND,
        Flags::CONNECTED_IND,
        Flags::FULL_SYNC,
        Flags::PEER_OUT_DATED,
        Flags::CRASHED_PRIMARY,
    ];
    if json {
        let out = json!({
            "resource": resource,
            "node": node,
            "node_id": sb.node_id.0,
            "current": sb.gi.current.to_string(),
            "bitmap": sb.gi.bitmap.to_string(),
            "history": sb.gi.history.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "flags": {
                "consistent": f.has(Flags::CONSISTENT),
                "was_up_to_date": f.has(Flags::WAS_UP_TO_DATE),
                "primary": f.has(Flags::PRIMARY_IND),
                "connected": f.has(Flags::CONNECTED_IND),
                "full_sync": f.has(Flags::FULL_SYNC),
                "peer_out_dated": f.has(Flags::PEER_OUT_DATED),
                "crashed_primary": f.has(Flags::CRASHED_PRIMARY),
            },
            "data_bytes": sb.data_bytes,
            "md_uuid": format!("{:016X}", sb.md_uuid),
            "seq": sb.seq,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialisable")
        );
        return Ok(());
    }
    // drbdadm show-gi's picture.
    let flags: Vec<&str> = bits
        .iter()
        .map(|b| if f.has(*b) { "1" } else { "0" })
        .collect();
    println!();
    println!("       +--<  Current data generation UUID  >-");
    println!("       |               +--<  Bitmap's base data generation UUID  >-");
    println!("       |               |                 +--<  younger history UUID  >-");
    println!("       |               |                 |         +-<  older history  >-");
    println!("       V               V                 V         V");
    println!(
        "{}:{}:{}:{}:{}",
        sb.gi.current,
        sb.gi.bitmap,
        sb.gi.history[0],
        sb.gi.history[1],
        flags.join(":")
    );
    println!("                                                                    ^ ^ ^ ^ ^ ^ ^");
    println!("                                      -<  Data consistency flag  >--+ | | | | | |");
    println!("                             -<  Data was/is currently up-to-date  >--+ | | | | |");
    println!("                                  -<  Node was/is currently primary  >--+ | | | |");
    println!("                                  -<  Node was/is currently connected  >--+ | | |");
    println!("         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |");
    println!("                        -<  The peer's disk was out-dated or inconsistent  >--+ |");
    println!("      -<  This node was a crashed primary, and has not seen its peer since   >--+");
    println!();
    Ok(())
}

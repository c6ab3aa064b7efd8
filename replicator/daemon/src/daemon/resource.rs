//! One resource as the event loop sees it: its configuration, its state (down, attaching, up),
//! and the handlers the loop calls. Plain synchronous code: every piece of I/O is spawned and
//! comes back as an event.
//!
//! ```text
//!             up                 attached (+ connect)
//!   Down ───────────► Attaching ──────────► Up ── primary / secondary / connect / disconnect /
//!    ▲                   │ error             │    invalidate / verify: the machine's verbs
//!    └───────────────────┘                   │
//!    ▲        down: close the export, drain clients, secondary, disconnect,
//!    └─────── wait until the machine is quiescent, write bitmap and superblock ◄─┘
//! ```
//!
//! Role, disk and connection state belong to the replication machine (`Up::replica`); this
//! file only sequences the daemon's side of each verb. The output queue carries the machine's
//! outputs out ([`super::drive`]); client requests are in [`super::io_path`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use replicator_core::bitmap::{BLOCK_SIZE, Bitmap};
use replicator_core::config::{Export as ExportAddr, Host, Resource};
use replicator_core::meta::{Layout, Superblock};
use replicator_core::protocol::{
    AdminCommand, AdminDone, AdminError, Event as MEvent, Persisted, Replica,
};
use replicator_core::types::{ConnState, Role};
use tandem_nbd::{Export, FileBackend, FileOptions, Refusal};
use tracing::{info, warn};

use super::drive::md_flags_of;
use super::event::{Disk, Event, Peer};
use super::meta_io::{Done, Job, MetaQueue};
use super::peer::{LinkAction, LinkConfig, PeerLink};
use super::replica_cfg::{connection, replica_config};
use super::up::{Counters, Ctx, Item, Reply, Step, Up};
use crate::control::Response;
use crate::exit::{Exit, Failure};
use crate::md;
use crate::status::IoStatus;
use crate::volume::Attached;

/// Bitmap pages written back per tick when idle (a bound on one write-back job).
pub const WRITEBACK_PAGES_PER_TICK: usize = 64;
/// How long `verify --wait` waits for the verify to start (a Secondary asks its Primary, which
/// starts it only when both disks are consistent and the link is idle).
pub const VERIFY_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The resource's state.
pub enum State {
    /// Not attached.
    Down,
    /// `up` is reading the meta-data.
    Attaching(Reply, Vec<String>),
    /// Attached.
    Up(Box<Up>),
}

/// A resource of this node.
pub struct Res {
    /// Its name.
    pub name: Arc<str>,
    /// Its configuration (as of the last `up`, or daemon start).
    pub cfg: Resource,
    /// This node's section.
    pub host: Host,
    /// Where it is exported.
    pub export: ExportAddr,
    /// The listener key of the export (socket path or host:port).
    pub listener: Arc<str>,
    /// Its state.
    pub state: State,
    /// The configuration file (for handlers).
    pub conf_path: String,
}

fn busy(name: &str) -> Response {
    Response::err(
        Exit::Refused,
        format!("resource {name}: another command is in progress; try again"),
    )
}

fn down_refusal(name: &str) -> Response {
    Response::err(
        Exit::Refused,
        format!("resource {name} is down: bring it up first (replicatorctl up {name})"),
    )
}

/// The listener key of an export: its socket path or `host:port`.
pub fn listener_key(e: &ExportAddr) -> String {
    match e {
        ExportAddr::Unix { socket, .. } => socket.clone(),
        ExportAddr::Tcp { host, port, .. } => format!("{host}:{port}"),
    }
}

/// The superblock record at the slot its sequence selects.
pub fn sb_record(layout: &Layout, sb: &Superblock) -> (u64, Vec<u8>) {
    (
        layout.sb_offsets[Superblock::slot_for_seq(sb.seq)],
        sb.encode().to_vec(),
    )
}

/// The answer to a verb the machine refused.
pub fn admin_refusal(name: &str, e: &AdminError) -> Response {
    let msg = match e {
        AdminError::NoUpToDateData(d) => format!(
            "resource {name}: refusing to become Primary: the disk is {d} (only UpToDate data may be Primary; 'replicatorctl primary --force {name}' declares this node's data good)"
        ),
        AdminError::PeerIsPrimary => format!(
            "resource {name}: refusing to become Primary: the peer is Primary (allow-two-primaries is not set)"
        ),
        AdminError::PeerUpToDate => format!(
            "resource {name}: refusing to force: the peer has UpToDate data; connect and let it resync this node instead"
        ),
        other => format!("resource {name}: {other}"),
    };
    Response::err(Exit::Refused, msg)
}

impl Res {
    /// A down resource.
    pub fn new(cfg: Resource, host: Host, state_dir: &str, conf_path: &str) -> Self {
        let export = host.device.export(&cfg.name, state_dir);
        let listener = Arc::from(listener_key(&export));
        Res {
            name: Arc::from(cfg.name.as_str()),
            cfg,
            host,
            export,
            listener,
            state: State::Down,
            conf_path: conf_path.to_owned(),
        }
    }

    /// The attached state.
    pub fn up_mut(&mut self) -> Option<&mut Up> {
        match &mut self.state {
            State::Up(u) => Some(u),
            _ => None,
        }
    }

    /// The attached state.
    pub fn up_ref(&self) -> Option<&Up> {
        match &self.state {
            State::Up(u) => Some(u),
            _ => None,
        }
    }

    /// Whether the resource is down (nothing attached, nothing in progress).
    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Down)
    }

    /// `up`: attach on a blocking thread (`cfg`/`host` were just re-read by the daemon).
    pub fn up(&mut self, ctx: &Ctx, reply: Reply, warnings: Vec<String>) {
        match &self.state {
            State::Up(_) => {
                let mut r = Response::ok(format!("resource {} is already up", self.name));
                r.warnings = warnings;
                let _ = reply.send(r);
                return;
            }
            State::Attaching(..) => {
                let _ = reply.send(busy(&self.name));
                return;
            }
            State::Down => {}
        }
        info!(resource = %self.name, node = %ctx.node, "attaching");
        self.state = State::Attaching(reply, warnings);
        let (cfg, host, events, name) = (
            self.cfg.clone(),
            self.host.clone(),
            ctx.events.clone(),
            self.name.to_string(),
        );
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                crate::volume::attach(&cfg, &host).map(Box::new)
            })
            .await
            .unwrap_or_else(|e| Err(Failure::new(Exit::Failed, format!("attach failed: {e}"))));
            let _ = events
                .send(Event::Disk(Disk::Attached {
                    resource: name,
                    result,
                }))
                .await;
        });
    }

    /// The attach finished: start the replication machine and, for two nodes, connect.
    pub fn attached(&mut self, ctx: &Ctx, result: Result<Box<Attached>, Failure>) {
        let State::Attaching(reply, mut warnings) = std::mem::replace(&mut self.state, State::Down)
        else {
            panic!(
                "attach result for resource {} that is not attaching",
                self.name
            );
        };
        let name = self.name.clone();
        let fail = |reply: Reply, warnings: Vec<String>, f: Failure| {
            warn!(resource = %name, node = %ctx.node, error = %f.message, "up failed");
            let mut r = Response::err(f.exit, format!("resource {name}: {}", f.message));
            r.warnings = warnings;
            let _ = reply.send(r);
        };
        let att = match result {
            Ok(a) => a,
            Err(f) => return fail(reply, warnings, f),
        };
        let Attached {
            disks,
            layout,
            sb,
            bitmap,
            al,
            notes,
            ..
        } = *att;
        for n in &notes {
            warn!(resource = %self.name, node = %ctx.node, "{n}");
            warnings.push(n.clone());
        }
        // The machine counts 4 KiB blocks: a data area with a partial last block exports
        // whole blocks only.
        let usable = layout.data_bytes / BLOCK_SIZE * BLOCK_SIZE;
        if usable == 0 {
            return fail(
                reply,
                warnings,
                Failure::new(
                    Exit::MetaData,
                    "the data area is smaller than one 4 KiB block",
                ),
            );
        }
        if usable != layout.data_bytes {
            let w = format!(
                "the data area is not a whole number of 4 KiB blocks: its last {} bytes are not exported",
                layout.data_bytes - usable
            );
            warn!(resource = %self.name, node = %ctx.node, "{w}");
            warnings.push(w);
        }
        let opts = FileOptions {
            size: Some(usable),
            ..FileOptions::default()
        };
        let data = match FileBackend::open(&disks.backing_path, opts) {
            Ok(d) => d,
            Err(e) => {
                let f = Failure::new(
                    Exit::Failed,
                    format!("cannot open {}: {e}", disks.backing_path.display()),
                );
                return fail(reply, warnings, f);
            }
        };
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disks.backing_path)
        {
            Ok(f) => f,
            Err(e) => {
                let f = Failure::new(
                    Exit::Failed,
                    format!("cannot open {}: {e}", disks.backing_path.display()),
                );
                return fail(reply, warnings, f);
            }
        };
        let rcfg = match replica_config(&self.cfg, &self.host, usable, al.table_size()) {
            Ok(c) => c,
            Err(e) => return fail(reply, warnings, Failure::new(Exit::Config, e)),
        };
        let bitmap = if bitmap.blocks() == usable / BLOCK_SIZE {
            bitmap
        } else {
            let mut b = Bitmap::new(usable);
            for i in 0..b.blocks() {
                if bitmap.get(i) {
                    b.set(i);
                }
            }
            b
        };
        let persisted = Persisted {
            uuids: sb.gi,
            flags: md_flags_of(sb.flags),
            bitmap: bitmap.clone(),
            al: Vec::new(),
        };
        let seed = md::random_u64();
        let replica = Replica::new(rcfg, persisted, seed, ctx.now());
        let link = connection(&self.cfg, &self.host).and_then(|c| {
            let (me, peer) = c.ends(self.host.name())?;
            Some(PeerLink::new(LinkConfig {
                resource: self.name.clone(),
                me: me.node_id,
                peer: peer.node_id,
                peer_name: peer.host.clone(),
                local: me.address.socket_addr(),
                remote: peer.address.socket_addr(),
                connect_int: Duration::from_millis(u64::from(c.net.connect_int_ms)),
                connect_timeout: Duration::from_millis(u64::from(c.net.timeout_ms)),
                sndbuf: c.net.sndbuf_size_bytes,
                rcvbuf: c.net.rcvbuf_size_bytes,
                seed: md::random_u64(),
            }))
        });
        let (nbd_tx, nbd_rx) = Up::nbd_channel();
        let mut up = Up {
            data,
            file,
            inline: Default::default(),
            layout,
            sb,
            bitmap,
            dirty: BTreeSet::new(),
            al,
            al_enabled: self.host.disk_options.al_updates,
            meta: MetaQueue::new(Arc::new(disks.meta), self.host.disk_options.md_flushes),
            replica,
            queue: VecDeque::new(),
            blocked: None,
            groups: 0,
            inline_done: Vec::new(),
            local_in_flight: 0,
            export: None,
            nbd_tx,
            nbd_rx,
            held: VecDeque::new(),
            clients: HashMap::new(),
            ops: HashMap::new(),
            next_id: 0,
            link,
            step: None,
            promotion: None,
            verify_waiters: Vec::new(),
            counters: Counters::default(),
            io: IoStatus::default(),
            last_verify: None,
            verifies: 0,
            split_brains: 0,
            failed: None,
            disk_flushes: self.host.disk_options.disk_flushes,
            handlers: self.cfg.handlers.clone(),
            res_cfg: self.cfg.clone(),
            host: self.host.clone(),
            conf_path: self.conf_path.clone(),
            export_name: self.export.name().to_owned(),
            sb_durable: sb.seq,
            resync_started: None,
            last_resync: None,
        };
        let disk = up.replica.status().disk;
        info!(resource = %self.name, node = %ctx.node, disk = %disk, size_bytes = usable, current_uuid = %up.sb.gi.current, "up");
        let mut msg = format!("resource {} is up: disk {disk}, {usable} bytes", self.name);
        if up.link.is_some() {
            // drbdadm up = attach + connect.
            up.replica
                .admin(
                    ctx.now(),
                    AdminCommand::Connect {
                        discard_my_data: false,
                    },
                )
                .expect("a freshly attached resource is StandAlone");
            if let Some(l) = up.link.as_mut() {
                l.listen(ctx.events);
                msg.push_str(&format!(
                    "; connecting to {} at {}",
                    l.peer_name(),
                    l.remote()
                ));
            }
        }
        up.pump(&self.name, ctx);
        self.state = State::Up(Box::new(up));
        let mut r = Response::ok(msg);
        r.warnings = warnings;
        let _ = reply.send(r);
        self.timers(ctx);
    }

    /// `primary [--force]`.
    pub fn primary(&mut self, ctx: &Ctx, force: bool, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(down_refusal(&name));
            return;
        };
        if let Some(why) = &up.failed {
            let _ = reply.send(Response::err(
                Exit::Failed,
                format!("resource {name}: the disk is Failed ({why})"),
            ));
            return;
        }
        if up.step.is_some() || up.promotion.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        if up.replica.status().role == Role::Primary {
            up.open_export(&name, ctx);
            let _ = reply.send(Response::ok(format!("resource {name} is already Primary")));
            return;
        }
        let forced_disk = up.replica.status().disk;
        match up.replica.admin(ctx.now(), AdminCommand::Primary { force }) {
            Ok(AdminDone::Done) => {
                if force && forced_disk != replicator_core::types::DiskState::UpToDate {
                    warn!(resource = %name, node = %ctx.node, "forced to consider the local data UpToDate (it was {forced_disk})");
                }
                info!(resource = %name, node = %ctx.node, "Primary; the export opens once that is on disk");
                up.drain();
                up.queue.push_back(Item::Promoted(
                    reply,
                    Response::ok(format!("resource {name} is Primary")),
                ));
            }
            Ok(AdminDone::Pending) => {
                info!(resource = %name, node = %ctx.node, "promotion: asking the peer");
                up.promotion = Some(reply);
            }
            Err(e) => {
                let _ = reply.send(admin_refusal(&name, &e));
            }
        }
        up.pump(&name, ctx);
    }

    /// `secondary`: close the export, let its requests finish, then demote.
    pub fn secondary(&mut self, ctx: &Ctx, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Response::ok(format!("resource {name} is down (Secondary)")));
            return;
        };
        if up.step.is_some() || up.promotion.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        if up.replica.status().role != Role::Primary {
            let _ = reply.send(Response::ok(format!(
                "resource {name} is already Secondary"
            )));
            return;
        }
        self.start_demote(ctx, Some(reply), false);
    }

    /// `down` (and daemon shutdown, with no reply): demote if Primary, disconnect, detach.
    pub fn down(&mut self, ctx: &Ctx, reply: Option<Reply>) {
        let name = self.name.clone();
        match &mut self.state {
            State::Down => {
                if let Some(r) = reply {
                    let _ = r.send(Response::ok(format!("resource {name} is already down")));
                }
            }
            State::Attaching(..) => {
                if let Some(r) = reply {
                    let _ = r.send(busy(&name));
                }
            }
            State::Up(up) => {
                if up.step.is_some() || up.promotion.is_some() {
                    if let Some(r) = reply {
                        let _ = r.send(busy(&name));
                    }
                    return;
                }
                if up.replica.status().role == Role::Primary && up.failed.is_none() {
                    self.start_demote(ctx, reply, true);
                } else {
                    self.start_detach(ctx, reply);
                }
            }
        }
    }

    fn start_demote(&mut self, ctx: &Ctx, reply: Option<Reply>, then_down: bool) {
        let name = self.name.clone();
        let up = self.up_mut().expect("demote of an up resource");
        info!(resource = %name, node = %ctx.node, "demoting: closing the export");
        if let Some(e) = &up.export {
            e.close();
        }
        up.step = Some(Step::Demoting { reply, then_down });
        self.advance(ctx);
    }

    fn start_detach(&mut self, ctx: &Ctx, reply: Option<Reply>) {
        let name = self.name.clone();
        let up = self.up_mut().expect("detach of an up resource");
        info!(resource = %name, node = %ctx.node, "detaching");
        if let Some(e) = up.export.take() {
            e.close();
        }
        if up.failed.is_none() {
            let _ = up.replica.admin(ctx.now(), AdminCommand::Disconnect);
        }
        if let Some(l) = up.link.as_mut() {
            l.stop();
        }
        up.step = Some(Step::Detaching {
            reply,
            final_seq: None,
        });
        up.pump(&name, ctx);
        self.advance(ctx);
    }

    /// Moves a control transition on when what it waits for is done.
    pub fn advance(&mut self, ctx: &Ctx) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        match up.step.take() {
            Some(Step::Demoting { reply, then_down }) => {
                if !up.clients_drained() {
                    up.step = Some(Step::Demoting { reply, then_down });
                    return;
                }
                match up.replica.admin(ctx.now(), AdminCommand::Secondary) {
                    Ok(_) => {
                        up.export = None;
                        info!(resource = %name, node = %ctx.node, "Secondary; export closed");
                        if then_down {
                            up.pump(&name, ctx);
                            self.start_detach(ctx, reply);
                            return;
                        }
                        up.drain();
                        if let Some(r) = reply {
                            up.queue.push_back(Item::Reply(
                                r,
                                Response::ok(format!("resource {name} is Secondary")),
                            ));
                        }
                        up.pump(&name, ctx);
                    }
                    Err(AdminError::Busy(_)) => {
                        // Requests the machine still holds: wait for them.
                        up.step = Some(Step::Demoting { reply, then_down });
                    }
                    Err(e) => {
                        if let Some(r) = reply {
                            let _ = r.send(admin_refusal(&name, &e));
                        }
                        up.open_export(&name, ctx);
                    }
                }
            }
            Some(Step::Detaching {
                reply,
                final_seq: None,
            }) => {
                let settled = up.failed.is_some()
                    || (up.replica.is_quiescent()
                        && up.queue.is_empty()
                        && up.blocked.is_none()
                        && up.inline_done.is_empty()
                        && up.local_in_flight == 0
                        && up.clients_drained());
                if !settled {
                    up.step = Some(Step::Detaching {
                        reply,
                        final_seq: None,
                    });
                    return;
                }
                if up.failed.is_some() {
                    info!(resource = %name, node = %ctx.node, "down (the disk had failed: meta-data not rewritten)");
                    self.state = State::Down;
                    if let Some(r) = reply {
                        let _ = r.send(Response::ok(format!("resource {name} is down")));
                    }
                    return;
                }
                let pages = up.take_dirty_pages(usize::MAX);
                up.sb.seq += 1;
                let seq = up.sb.seq;
                up.meta.push(Job {
                    pages,
                    records: vec![sb_record(&up.layout, &up.sb)],
                    done: vec![Done::Superblock(seq)],
                });
                up.meta.kick(&name, ctx.events);
                up.step = Some(Step::Detaching {
                    reply,
                    final_seq: Some(seq),
                });
            }
            Some(Step::Detaching {
                reply,
                final_seq: Some(seq),
            }) => {
                if up.sb_durable < seq {
                    up.step = Some(Step::Detaching {
                        reply,
                        final_seq: Some(seq),
                    });
                    return;
                }
                info!(resource = %name, node = %ctx.node, "down");
                self.state = State::Down;
                if let Some(r) = reply {
                    let _ = r.send(Response::ok(format!("resource {name} is down")));
                }
            }
            None => {}
        }
    }

    /// `connect [--discard-my-data]`.
    pub fn connect(&mut self, ctx: &Ctx, discard_my_data: bool, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(down_refusal(&name));
            return;
        };
        if up.step.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        match up
            .replica
            .admin(ctx.now(), AdminCommand::Connect { discard_my_data })
        {
            Ok(_) => {
                let to = up.link.as_mut().map(|l| {
                    l.listen(ctx.events);
                    format!("{} at {}", l.peer_name(), l.remote())
                });
                up.drain();
                let msg = format!(
                    "resource {name}: connecting to {}{}",
                    to.unwrap_or_default(),
                    if discard_my_data {
                        " (this node's data will be discarded if the handshake finds a split brain)"
                    } else {
                        ""
                    }
                );
                up.queue.push_back(Item::Reply(reply, Response::ok(msg)));
                up.pump(&name, ctx);
            }
            Err(e) => {
                let _ = reply.send(admin_refusal(&name, &e));
            }
        }
        self.timers(ctx);
    }

    /// `disconnect`, `invalidate`: the machine's verbs that answer at once.
    pub fn simple_verb(&mut self, ctx: &Ctx, cmd: AdminCommand, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(down_refusal(&name));
            return;
        };
        if up.step.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        match up.replica.admin(ctx.now(), cmd) {
            Ok(_) => {
                let msg = match cmd {
                    AdminCommand::Disconnect => format!("resource {name} is StandAlone"),
                    AdminCommand::Invalidate => format!(
                        "resource {name}: local data invalidated; it is resynced in full from the peer"
                    ),
                    _ => format!("resource {name}: done"),
                };
                up.drain();
                up.queue.push_back(Item::Reply(reply, Response::ok(msg)));
                up.pump(&name, ctx);
            }
            Err(e) => {
                let _ = reply.send(admin_refusal(&name, &e));
            }
        }
        self.timers(ctx);
    }

    /// `verify [--wait]`.
    pub fn verify(&mut self, ctx: &Ctx, wait: bool, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(down_refusal(&name));
            return;
        };
        if up.step.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        match up.replica.admin(ctx.now(), AdminCommand::Verify) {
            Ok(_) => {
                let conn = up.replica.status().conn;
                if wait {
                    up.verify_waiters.push((reply, Instant::now()));
                } else {
                    let how = if conn == ConnState::VerifyS {
                        "started"
                    } else {
                        "asked of the Primary, which drives it"
                    };
                    up.drain();
                    up.queue.push_back(Item::Reply(
                        reply,
                        Response::ok(format!("resource {name}: online verify {how}")),
                    ));
                }
                up.pump(&name, ctx);
            }
            Err(e) => {
                let _ = reply.send(admin_refusal(&name, &e));
            }
        }
    }

    /// Whether a client asking for this export is served, or why not.
    pub fn lookup(&self, node: &str) -> Result<Arc<Export>, Refusal> {
        let name = &self.name;
        match &self.state {
            State::Up(up) => match (&up.export, up.replica.status().role) {
                (Some(e), Role::Primary) if !e.is_closed() => Ok(e.clone()),
                (_, Role::Primary) if up.failed.is_some() => Err(Refusal::policy(format!(
                    "resource {name} on node {node}: the disk is Failed"
                ))),
                (_, Role::Primary) => Err(Refusal::policy(format!(
                    "resource {name} is being demoted or promoted on node {node}; the export is only served while Primary"
                ))),
                _ => Err(Refusal::policy(format!(
                    "resource {name} is Secondary on node {node}; the export is only served while Primary (replicatorctl primary {name})"
                ))),
            },
            State::Attaching(..) => Err(Refusal::policy(format!(
                "resource {name} is coming up on node {node}; the export is only served while Primary"
            ))),
            State::Down => Err(Refusal::policy(format!(
                "resource {name} is down on node {node}; the export is only served while Primary (replicatorctl up {name}; replicatorctl primary {name})"
            ))),
        }
    }

    /// The export, when open.
    pub fn open_export(&self) -> Option<&Arc<Export>> {
        self.up_ref()
            .and_then(|up| up.export.as_ref())
            .filter(|e| !e.is_closed())
    }

    /// A disk operation of the machine, or a meta-data job, finished.
    pub fn disk(&mut self, ctx: &Ctx, d: Disk) {
        let name = self.name.clone();
        match d {
            Disk::Attached { result, .. } => self.attached(ctx, result),
            Disk::Io { io, done, .. } => {
                if let Some(up) = self.up_mut() {
                    up.io_done(io, done, &name, ctx);
                }
            }
            Disk::MetaDone { done, result, .. } => {
                if let Some(up) = self.up_mut() {
                    for d in &done {
                        if let (Done::Superblock(seq), Ok(())) = (d, &result) {
                            up.sb_durable = up.sb_durable.max(*seq);
                        }
                    }
                    up.meta_done(done, result, &name, ctx);
                }
            }
        }
        self.advance(ctx);
    }

    /// Something happened on the replication link.
    pub fn peer(&mut self, ctx: &Ctx, p: Peer) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        if let Peer::Message { conn, msg, .. } = p {
            match &msg {
                replicator_core::wire::Message::Data { data, .. } => {
                    up.counters.net_received += data.len() as u64;
                    up.counters.data_received += data.len() as u64;
                }
                replicator_core::wire::Message::RsData { data, .. } => {
                    up.counters.net_received += data.len() as u64;
                    up.counters.resync_received += data.len() as u64;
                }
                _ => {}
            }
            up.feed(MEvent::PeerMessage { conn, msg }, &name, ctx);
            self.advance(ctx);
            return;
        }
        let wanting = up.replica.status().conn == ConnState::WFConnection;
        let Some(link) = up.link.as_mut() else { return };
        let action = match p {
            Peer::Offered {
                stream,
                preamble,
                from,
                ..
            } => link.offered(stream, preamble, from, wanting, ctx.events),
            Peer::Dialed {
                attempt, result, ..
            } => link.dialed(attempt, result, wanting, ctx.events),
            Peer::ListenFailed {
                generation, error, ..
            } => {
                link.listen_failed(generation, error);
                LinkAction::None
            }
            Peer::Closed { conn, reason, .. } => link.closed(conn, reason),
            Peer::Message { .. } => unreachable!("handled above"),
        };
        match action {
            LinkAction::Connected(conn) => up.feed(MEvent::PeerConnected { conn }, &name, ctx),
            LinkAction::Lost(conn, reason) => {
                up.feed(MEvent::PeerDisconnected { conn, reason }, &name, ctx)
            }
            LinkAction::None => {}
        }
        self.advance(ctx);
        self.timers(ctx);
    }

    /// Runs due timers (the machine's, dialling, the listener's retry); returns when the next
    /// one is due.
    pub fn timers(&mut self, ctx: &Ctx) -> Option<Instant> {
        let name = self.name.clone();
        let up = self.up_mut()?;
        if up.failed.is_some() {
            return None;
        }
        let now = ctx.now();
        if up.replica.poll_timeout().is_some_and(|t| t <= now) {
            up.replica.handle_timeout(now);
            up.pump(&name, ctx);
        }
        let wanting = up.replica.status().conn == ConnState::WFConnection;
        if let Some(l) = up.link.as_mut() {
            l.poll(wanting, ctx.events);
        }
        let mut next = up.replica.poll_timeout().map(|t| ctx.instant(t));
        if let Some(l) = &up.link
            && let Some(t) = l.deadline(wanting)
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if step_waits(up) {
            // A step waiting for the machine to settle is re-checked soon.
            let soon = Instant::now() + Duration::from_millis(50);
            next = Some(next.map_or(soon, |n| n.min(soon)));
        }
        next
    }

    /// The periodic tick: write back some dirty bitmap pages when idle; time out `verify
    /// --wait` callers whose verify never started.
    pub fn tick(&mut self, ctx: &Ctx) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        if up.failed.is_none()
            && up.step.is_none()
            && up.meta.idle()
            && up.blocked.is_none()
            && !up.dirty.is_empty()
        {
            let pages = up.take_dirty_pages(WRITEBACK_PAGES_PER_TICK);
            up.counters.bitmap_writes += pages.len() as u64;
            up.meta.push(Job {
                pages,
                records: Vec::new(),
                done: vec![Done::Pages],
            });
            up.meta.kick(&name, ctx.events);
        }
        let conn = up.replica.status().conn;
        if !matches!(conn, ConnState::VerifyS | ConnState::VerifyT) {
            let (late, waiting): (Vec<_>, Vec<_>) = up
                .verify_waiters
                .drain(..)
                .partition(|(_, t)| t.elapsed() > VERIFY_START_TIMEOUT);
            up.verify_waiters = waiting;
            for (r, _) in late {
                let _ = r.send(Response::err(
                    Exit::Refused,
                    format!(
                        "resource {name}: the verify did not start (the connection is {conn}; a Secondary's verify is driven by its Primary, which needs both disks consistent and the link Connected)"
                    ),
                ));
            }
        }
        self.advance(ctx);
    }
}

fn step_waits(up: &Up) -> bool {
    matches!(
        up.step,
        Some(Step::Demoting { .. })
            | Some(Step::Detaching {
                final_seq: None,
                ..
            })
    )
}

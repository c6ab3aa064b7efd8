//! `tandem-mail`: with one OCF action as its argument it is the resource agent
//! (`ocf:tandem:mail`); otherwise it is the administrator's command.
//!
//! Exit codes of the admin commands: 0 success, 1 failure (the message says why), 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem_mail::layout::Layout;
use tandem_mail::{admin, agent, config, dns, import, setup, supervisor, train};

/// OCF actions: `tandem-mail ACTION` runs the agent.
const OCF_ACTIONS: &[&str] = &[
    "start",
    "stop",
    "monitor",
    "meta-data",
    "validate-all",
    "usage",
    "promote",
    "demote",
    "notify",
    "reload",
    "migrate_to",
    "migrate_from",
];

/// The mail suite on the replicated filesystem: OCF agent and admin commands.
#[derive(Parser)]
#[command(name = "tandem-mail", version, about, long_about = None)]
struct Cli {
    /// The directory holding all state (the replicated mount).
    #[arg(short, long, global = true, env = "OCF_RESKEY_directory")]
    directory: Option<PathBuf>,
    /// The declarative file (default: DIRECTORY/mail.toml).
    #[arg(short, long, global = true, env = "OCF_RESKEY_config")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage accounts (passwords follow the rules of the account's class of service).
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Print the DNS records to publish (A, MX, SPF, DKIM, DMARC, PTR).
    DnsRecords {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every mailbox of accounts on an existing IMAP server (resumable: run it again).
    Import {
        /// The old server.
        #[arg(long)]
        host: String,
        /// Its port (default 993 for imaps, 143 otherwise).
        #[arg(long)]
        port: Option<u16>,
        /// How to reach it.
        #[arg(long, value_enum, default_value = "imaps")]
        tls: import::Tls,
        /// Accept any certificate (an old server with a self-signed one).
        #[arg(long)]
        insecure: bool,
        /// Login on the old server (with --password-file and --to).
        #[arg(long, requires_all = ["password_file", "to"], conflicts_with = "batch")]
        user: Option<String>,
        /// File whose first line is the old server's password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The local account to import into.
        #[arg(long)]
        to: Option<String>,
        /// File of `LOCAL REMOTE_USER PASSWORD` lines, one account each.
        #[arg(long, required_unless_present = "user")]
        batch: Option<PathBuf>,
    },
    /// Learn spam and ham from the training mailboxes now.
    Train {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the supervisor's view of the daemons.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and print it as the agent understands it.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the supervisor (started by the agent).
    #[command(hide = true)]
    Supervise,
    /// Run the auth-policy service (started by the supervisor).
    #[command(hide = true)]
    PolicyServer,
    /// Run the attachment filter milter (started by the supervisor).
    #[command(hide = true)]
    AttachmentFilter,
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Add an account to mail.toml and set its password (read from a file, a prompt or stdin).
    Add {
        /// The address.
        address: String,
        /// Its class of service.
        #[arg(long, default_value = "general")]
        class: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a new password.
    Passwd {
        /// The address.
        address: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Lock the account.
    Lock {
        /// The address.
        address: String,
    },
    /// Unlock the account and lift a failed-login lockout.
    Unlock {
        /// The address.
        address: String,
    },
    /// Mark the password expired.
    Expire {
        /// The address.
        address: String,
    },
    /// List accounts with their class, password age and lock state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 2 && OCF_ACTIONS.contains(&args[1].as_str()) {
        return ocf::run(&agent::MailAgent);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-mail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a command's output. A reader that stopped reading (`| head`) is not an error: the
/// output is simply not wanted any more (print! would panic on the broken pipe).
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.directory.ok_or_else(|| {
        anyhow::anyhow!("give the directory with --directory (or OCF_RESKEY_directory)")
    })?;
    let layout = Layout::new(dir);
    let cfg_path = admin::config_path(cli.config, &layout);
    match cli.cmd {
        Cmd::Supervise => {
            let cfg = config::load(&cfg_path)?;
            supervisor::run(&cfg, &layout, &cfg_path)
        }
        Cmd::PolicyServer => tandem_mail::policy_server::run(&cfg_path, &layout),
        Cmd::AttachmentFilter => {
            let cfg = config::load(&cfg_path)?;
            let owners = setup::check_installed()?;
            tandem_mail::attachment_filter::run(
                &layout.attachment_filter_socket(),
                tandem_mail::attachment_filter::Policy {
                    blocked: cfg.smtp.blocked_extensions.clone(),
                    domain: cfg.domains[0].clone(),
                },
                owners.uid("postfix"),
                owners.gid("postfix"),
            )
        }
        Cmd::Account { cmd } => match cmd {
            AccountCmd::Add {
                address,
                class,
                password_file,
            } => {
                let pw = admin::read_password(password_file.as_deref())?;
                admin::add(&cfg_path, &layout, &address, &class, &pw)?;
                println!("{address} added (class {class})");
                Ok(())
            }
            AccountCmd::Passwd {
                address,
                password_file,
            } => {
                let pw = admin::read_password(password_file.as_deref())?;
                admin::passwd(&cfg_path, &layout, &address, &pw)?;
                println!("password of {address} changed");
                Ok(())
            }
            AccountCmd::Lock { address } => {
                admin::set_flag(&cfg_path, &layout, &address, admin::Flag::Lock)
            }
            AccountCmd::Unlock { address } => {
                admin::set_flag(&cfg_path, &layout, &address, admin::Flag::Unlock)
            }
            AccountCmd::Expire { address } => {
                admin::set_flag(&cfg_path, &layout, &address, admin::Flag::Expire)
            }
            AccountCmd::List { json } => {
                let rows = admin::list(&cfg_path, &layout)?;
                if json {
                    out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))
                } else {
                    out(&admin::list_text(&rows, admin::now()))
                }
            }
        },
        Cmd::DnsRecords { json } => {
            let cfg = config::load(&cfg_path)?;
            let owners = setup::check_installed()?;
            setup::dkim_keys(&cfg, &layout, &owners)?;
            let mut dkim = Vec::new();
            for d in &cfg.domains {
                dkim.push((d.clone(), setup::dkim_record(&cfg, &layout, d)?));
            }
            let recs = dns::records(&cfg, &dkim);
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&recs)?))
            } else {
                out(&dns::zone_text(&recs))
            }
        }
        Cmd::Import {
            host,
            port,
            tls,
            insecure,
            user,
            password_file,
            to,
            batch,
        } => {
            let cfg = config::load(&cfg_path)?;
            let jobs = match (batch, user, password_file, to) {
                (Some(b), _, _, _) => import::parse_batch(&std::fs::read_to_string(&b)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", b.display()))?,
                (None, Some(u), Some(p), Some(t)) => {
                    vec![import::Job {
                        local: t.to_ascii_lowercase(),
                        remote_user: u,
                        password: admin::read_password(Some(&p))?,
                    }]
                }
                _ => anyhow::bail!("give --user, --password-file and --to, or --batch"),
            };
            import::run(
                &layout,
                &cfg,
                &import::Source {
                    host,
                    port,
                    tls,
                    insecure,
                },
                &jobs,
            )
        }
        Cmd::Train { json } => {
            let cfg = config::load(&cfg_path)?;
            let r = train::train(&cfg, &layout)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("learned {} spam and {} ham", r.spam, r.ham);
            }
            Ok(())
        }
        Cmd::Status { json } => {
            let running = supervisor::running_pid(&layout);
            let st = supervisor::read_status(&layout).filter(|_| running.is_some());
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(());
            }
            match st {
                None => println!("stopped"),
                Some(st) => {
                    println!("supervisor pid {} ({:?})", st.pid, st.phase);
                    for d in st.daemons {
                        let pid = d.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                        println!(
                            "  {:<15} {:<9} pid {:<8} restarts {} {}",
                            d.name,
                            format!("{:?}", d.state),
                            pid,
                            d.restarts,
                            d.message
                        );
                    }
                }
            }
            Ok(())
        }
        Cmd::Check { json } => {
            let cfg = config::load(&cfg_path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            } else {
                println!("{}: OK: {cfg}", cfg_path.display());
            }
            Ok(())
        }
    }
}

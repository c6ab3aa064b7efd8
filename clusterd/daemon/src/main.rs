//! `clusterd --config FILE --node NAME [--state-dir DIR]`: the resource manager daemon.
//!
//! Started as `crm_attribute`, `crm_master` or `crm_node` (the links clusterd makes in
//! `STATE_DIR/sbin` for agents), the same binary is the shim of that name (see `shim`).
//!
//! Exit codes: 0 clean shutdown; 1 runtime failure; 2 bad arguments or configuration.

use std::path::PathBuf;

use clap::Parser;
use clusterd::agent::AgentResolver;
use clusterd::config::DaemonConfig;
use clusterd::daemon::{Daemon, Event};
use clusterd::exec::ExecEnv;
use clusterd::shim::{self, SHIM_NAMES};
use clusterd::store::{DEFAULT_STATE_DIR, StateDir};

/// clusterd: Tandem's resource manager daemon (Pacemaker's role): runs OCF agents as the
/// configuration (CIB, edited with clusterctl) and the scheduler decide.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The node's daemon configuration (TOML: cluster_name, [[node]] entries, [executor]).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// This node's name (one of the configuration's nodes).
    #[arg(long, short = 'n', value_name = "NAME")]
    node: String,
    /// State directory: cib.json, control.sock, sbin/ (agent shims).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR, env = "CLUSTERD_STATE_DIR")]
    state_dir: PathBuf,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    if SHIM_NAMES.contains(&prog.as_str()) {
        std::process::exit(shim::run(&prog, &argv[1..]));
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = match DaemonConfig::load(&args.config, &args.node) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clusterd: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cfg, args)) {
        eprintln!("clusterd: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cfg: DaemonConfig, args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = StateDir::open(&args.state_dir)
        .with_context(|| format!("state dir {}", args.state_dir.display()))?;
    let _lock = dir.lock()?;
    let exe = std::env::current_exe().context("locating the clusterd binary")?;
    dir.install_shims(&exe)
        .with_context(|| format!("shim links in {}", dir.shim_dir().display()))?;
    let env = ExecEnv {
        ocf_root: cfg.executor.ocf_root.clone(),
        shim_dir: dir.shim_dir(),
        control_socket: dir.socket_path(),
        node: args.node.clone(),
        base_path: ExecEnv::default_base_path(std::env::var("PATH").ok()),
        extra: Default::default(),
    };
    let resolver = AgentResolver::new(cfg.executor.ocf_root.clone());
    let listener = clusterd::server::bind(&dir.socket_path())
        .with_context(|| format!("binding {}", dir.socket_path().display()))?;
    let daemon = Daemon::new(
        cfg,
        args.node,
        dir,
        env,
        resolver,
        clusterd_core::sched::schedule,
    )?;
    let events = daemon.sender();
    tokio::spawn(clusterd::server::serve(listener, events.clone()));
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if events.send(Event::Shutdown).await.is_err() {
                return;
            }
        }
    });
    daemon.run().await;
    Ok(())
}

//! `replicatord --config FILE --node NAME [--state-dir DIR]`: the replicated block device
//! daemon. Runs in the foreground, logs to stderr, is controlled through
//! `STATE_DIR/control.sock` (see `replicatorctl`). Exit codes: docs/replicator.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use replicator::daemon::{self, DEFAULT_STATE_DIR};

/// The Tandem replicated block device daemon (DRBD-compatible .res configuration, NBD export).
#[derive(Debug, Parser)]
#[command(name = "replicatord", version)]
struct Cli {
    /// Configuration file (drbd.conf syntax; `include` works).
    #[arg(
        long,
        short = 'c',
        env = "REPLICATOR_CONFIG",
        default_value = "/etc/replicator/replicator.conf"
    )]
    config: PathBuf,
    /// This node's name, as in the configuration's `on NAME` sections [default: the host name].
    #[arg(long, short = 'n', env = "REPLICATOR_NODE")]
    node: Option<String>,
    /// State directory: control socket, default NBD sockets, lock file.
    #[arg(long, short = 's', env = "REPLICATOR_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    replicator::init_tracing();
    let node = cli.node.unwrap_or_else(replicator::hostname);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("replicatord: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon::run(daemon::Args {
        config: cli.config,
        node,
        state_dir: cli.state_dir,
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            tracing::error!("{}", f.message);
            eprintln!("replicatord: error: {}", f.message);
            f.exit.into()
        }
    }
}

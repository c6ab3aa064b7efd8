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
    // One thread by default: the event loop, the NBD connections and the peer's reader and
    // writer then hand work to each other without a thread wake-up (measured faster for
    // replicated writes on the 2-core machines here, benches/scripts/replication-vs-single.sh);
    // fsyncs, meta-data writes and large data writes still go to the blocking pool.
    // REPLICATORD_WORKER_THREADS=N (N > 1) runs N worker threads, 0 one per core.
    let threads: usize = std::env::var("REPLICATORD_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("replicatord: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The event loop runs as a task on a worker thread, not on this thread: a task it wakes
    // (an NBD connection waiting for its reply, a peer writer) then runs on the same worker
    // next, instead of being woken across threads for every request.
    let args = daemon::Args {
        config: cli.config,
        node,
        state_dir: cli.state_dir,
    };
    let result = rt.block_on(async move {
        tokio::spawn(daemon::run(args)).await.unwrap_or_else(|e| {
            Err(replicator::exit::Failure::new(
                replicator::exit::Exit::Failed,
                format!("the event loop failed: {e}"),
            ))
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            tracing::error!("{}", f.message);
            eprintln!("replicatord: error: {}", f.message);
            f.exit.into()
        }
    }
}

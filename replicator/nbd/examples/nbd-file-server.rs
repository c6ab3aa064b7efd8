//! A small NBD server of this crate exporting one file: what the benchmark measures until
//! replicatord exists, and a way to poke at the server by hand.
//!
//! ```sh
//! cargo run --release -p tandem-nbd --example nbd-file-server -- --socket /tmp/nbd.sock disk.img
//! nbdinfo 'nbd+unix:///?socket=/tmp/nbd.sock'
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tandem_nbd::{
    Export, Exports, FileBackend, FileOptions, IoMode, Listener, Server, ServerConfig,
};

/// Export FILE over NBD on a unix socket or TCP address until SIGINT/SIGTERM.
#[derive(Parser, Debug)]
struct Args {
    /// Unix socket to listen on.
    #[arg(long, conflicts_with = "tcp")]
    socket: Option<PathBuf>,
    /// TCP address to listen on (e.g. 127.0.0.1:10809).
    #[arg(long)]
    tcp: Option<String>,
    /// Export name (the file is also the default export).
    #[arg(long, default_value = "disk")]
    name: String,
    /// Export read-only.
    #[arg(long)]
    read_only: bool,
    /// Do every read and write on the blocking pool of the shared runtime (no RWF_NOWAIT fast
    /// path).
    #[arg(long, conflicts_with = "inline")]
    pool_only: bool,
    /// Do reads and writes with plain blocking calls on the shared runtime's threads.
    #[arg(long)]
    inline: bool,

    /// Serve every connection on the one shared runtime instead of a thread of its own each
    /// (the file's reads and writes then go to the blocking pool unless --inline).
    #[arg(long)]
    shared_runtime: bool,
    /// Refuse NBD_OPT_EXTENDED_HEADERS.
    #[arg(long)]
    no_extended_headers: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The file or block device to export.
    file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let io = if args.pool_only {
        IoMode::Pool
    } else if args.inline {
        IoMode::Inline
    } else {
        IoMode::NowaitThenPool
    };
    let backend = FileBackend::open(
        &args.file,
        FileOptions {
            read_only: args.read_only,
            size: None,
            io,
        },
    )
    .with_context(|| format!("opening {}", args.file.display()))?;
    let exports = Exports::new();
    exports.insert(Export::new(args.name.clone(), Arc::new(backend)));
    exports.set_default(Some(&args.name));
    let config = ServerConfig {
        extended_headers: !args.no_extended_headers,
        // --inline and --pool-only measure the shared runtime (what they are compared with).
        thread_per_connection: !(args.shared_runtime || args.inline || args.pool_only),
        ..ServerConfig::default()
    };
    let server = Server::new(exports, config);
    let listener = match (&args.socket, &args.tcp) {
        (Some(p), _) => {
            Listener::bind_unix(p).with_context(|| format!("binding {}", p.display()))?
        }
        (None, Some(a)) => Listener::bind_tcp(a)
            .await
            .with_context(|| format!("binding {a}"))?,
        (None, None) => anyhow::bail!("give --socket PATH or --tcp ADDR"),
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    server.serve(listener, shutdown).await?;
    Ok(())
}

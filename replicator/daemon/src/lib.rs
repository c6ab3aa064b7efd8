//! replicatord and replicatorctl: the I/O driver around `replicator-core`.
//!
//! - [`daemon`]: `replicatord`'s event loop, its NBD backend and lookup, the meta-data writer.
//! - [`ctl`]: `replicatorctl`'s verbs (offline ones act on files, online ones ask the daemon).
//! - [`control`]: the versioned control protocol between them; [`status`]: what status says.
//! - [`md`], [`volume`], [`createmd`]: blocking meta-data I/O — open, attach, create.
//! - [`source`]: `.res` files from the filesystem; [`exit`]: documented exit codes.

pub mod control;
pub mod createmd;
pub mod ctl;
pub mod daemon;
pub mod exit;
pub mod md;
pub mod source;
pub mod status;
pub mod volume;

/// This machine's host name (`uname -n`), the default node name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), no colours off a terminal.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

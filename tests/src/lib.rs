//! System-test kit for Tandem.
//!
//! System tests run real processes (our daemons, real NBD clients, real mounts) inside network
//! namespaces the test creates. Every resource the kit hands out is a guard that removes what it
//! made when dropped — on success, on assertion failure and on panic — so a failing test never
//! leaves a namespace, mount, loop device or daemon behind.
//!
//! Modules:
//! - [`bins`]: locate the workspace's own binaries (built by `cargo nextest run --workspace`).
//! - [`proc`]: child processes that are killed (with their process group) on drop.
//! - [`netns`]: network namespaces joined by veth pairs or a bridge.
//! - [`blockdev`]: loop devices, `nbdfuse` attachments and mounts.
//! - [`wait`]: bounded polling helpers.
//!
//! Tests that need root (namespaces, mounts) call [`require_root`] first; it fails loudly rather
//! than skipping, because CI runs as root and a silently skipped test cannot fail.

pub mod bins;
pub mod blockdev;
pub mod netns;
pub mod proc;
pub mod stack;
pub mod wait;

use std::sync::atomic::{AtomicU32, Ordering};

/// Panics unless the test runs as root; system tests need namespaces, loop devices and mounts.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this system test needs root (namespaces, loop devices, mounts); run it as root as CI does"
    );
}

/// A name unique to this process and call, short enough for an interface name (≤ 15 bytes)
/// when `prefix` is at most 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    format!("{prefix}{pid}x{n}")
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its exit status and combined output, never panicking on failure.
pub fn run_status(program: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `PATH` with `/usr/bin` first, for tools that need Debian's python3 (nbdsh, python3-libnbd)
/// rather than a pyenv python that comes first on a developer's PATH.
pub fn debian_path() -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("/usr/sbin:/usr/bin:/sbin:/bin:{rest}")
}

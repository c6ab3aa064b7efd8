//! Locating the workspace's binaries from a test.
//!
//! `cargo nextest run --workspace` (and `cargo test --workspace`) builds every binary target of
//! the workspace into the same profile directory as the test executables, so a test finds
//! `replicatord` next to its own `deps/` directory.

use std::path::PathBuf;

/// The profile directory (`target/debug` or `target/release`) the running test was built into.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/test-hash → target/debug
    let deps = exe.parent().expect("test binary has a parent dir");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace binary such as `replicatord`; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

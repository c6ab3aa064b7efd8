//! clusterctl: the pcs-compatible command line of clusterd.
//!
//! `clusterctl [--state-dir DIR] [-f FILE] COMMAND...`. With `-f FILE` every configuration
//! command edits FILE offline (a missing FILE starts an empty configuration, as pcs's does);
//! without it, commands talk to the running clusterd over `STATE_DIR/control.sock` using
//! `clusterd_core::control`. All parsing, editing, scheduling and rendering happen in
//! `clusterd-core`; this crate only moves bytes (files, the socket, stdout).
//!
//! Exit codes: 0 success; 1 the command failed (refused edit, stale push, daemon error);
//! 2 bad arguments (the message names the token); 3 clusterd is not reachable.

pub mod client;
pub mod run;

pub use run::{ExitCode, main_with_args};

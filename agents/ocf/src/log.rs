//! Logging to stderr in the form Pacemaker's executor (and clusterd) record: one line per
//! message, `TYPE(INSTANCE)[PID]: LEVEL: message`, as ocf-shellfuncs' `ocf_log` writes it.
//! A failed action's reason also goes out as `ocf-exit-reason:REASON`, the line Pacemaker
//! shows beside the failed operation in `crm_mon`/`pcs status`.
//!
//! Debug lines are written only when `HA_debug=1` or `OCF_TRACE_RA=1`.

use std::fmt;
use std::io::Write as _;
use std::sync::OnceLock;

/// Severity, named as `ocf_log` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only with `HA_debug=1`.
    Debug,
    /// Normal progress.
    Info,
    /// Something is off but the action goes on.
    Warn,
    /// The action fails.
    Err,
    /// Data or safety is at stake.
    Crit,
}

impl Level {
    /// The word printed (`INFO`, `WARNING`, `ERROR`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Err => "ERROR",
            Level::Crit => "CRIT",
        }
    }
}

#[derive(Debug)]
struct Config {
    tag: String,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Sets the tag (`TYPE(INSTANCE)`) and whether debug lines are written. Called once by
/// [`crate::run`]; later calls are ignored.
pub fn init(agent: &str, instance: &str, debug: bool) {
    let tag = if instance.is_empty() {
        agent.to_owned()
    } else {
        format!("{agent}({instance})")
    };
    let _ = CONFIG.set(Config { tag, debug });
}

/// Formats one log line (without the newline).
pub fn format_line(tag: &str, pid: u32, level: Level, msg: &dyn fmt::Display) -> String {
    format!("{tag}[{pid}]: {}: {msg}", level.word())
}

/// Writes one line to stderr.
pub fn log(level: Level, msg: fmt::Arguments<'_>) {
    let (tag, debug) = match CONFIG.get() {
        Some(c) => (c.tag.as_str(), c.debug),
        None => ("ocf", false),
    };
    if level == Level::Debug && !debug {
        return;
    }
    let line = format_line(tag, std::process::id(), level, &msg);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints the `ocf-exit-reason:` line and logs the reason as an error.
pub fn exit_reason(reason: &str) {
    // One line only: Pacemaker takes the first line after the prefix.
    let one_line = reason.replace('\n', " ");
    let _ = writeln!(std::io::stderr().lock(), "ocf-exit-reason:{one_line}");
    log(Level::Err, format_args!("{one_line}"));
}

/// `ocf::debug!("...", args)`: a debug line (only with `HA_debug=1`).
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($t)*)) };
}
/// `ocf::info!("...", args)`.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) };
}
/// `ocf::warn!("...", args)`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, format_args!($($t)*)) };
}
/// `ocf::error!("...", args)`.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Err, format_args!($($t)*)) };
}
/// `ocf::crit!("...", args)`.
#[macro_export]
macro_rules! crit {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Crit, format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_matches_ocf_log() {
        assert_eq!(
            format_line("IPaddr(vip)", 42, Level::Warn, &"arping failed"),
            "IPaddr(vip)[42]: WARNING: arping failed"
        );
        assert_eq!(
            format_line("x", 1, Level::Err, &format_args!("rc={}", 5)),
            "x[1]: ERROR: rc=5"
        );
    }
}

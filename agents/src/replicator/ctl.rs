//! Driving `replicatorctl`: its documented exit codes (docs/replicator.md, "Exit codes") become
//! typed outcomes here, once, so the agent's actions never look at message text.

use std::path::{Path, PathBuf};
use std::process::Command;

use ocf::{OcfError, Status, tools};

use super::state::{ResState, parse_status};

/// replicatord's default configuration file (`replicatorctl --config`), the agent's `config`
/// default. Checked against the real `replicatorctl --help` by `agents/tests/replicator.rs`.
pub const DEFAULT_CONFIG: &str = "/etc/replicator/replicator.conf";
/// replicatord's default state directory (`replicatord --state-dir`), the agent's `state_dir`
/// default. Checked against the real `replicatorctl --help` by `agents/tests/replicator.rs`.
pub const DEFAULT_STATE_DIR: &str = "/run/replicatord";

/// `replicatorctl`'s exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtlExit {
    /// 0: done (or already so).
    Ok,
    /// 1: runtime failure (I/O error on the backing or meta-data file).
    Failed,
    /// 2: bad command-line arguments.
    Usage,
    /// 3: replicatord is not running (no control socket, or nothing listening).
    NoDaemon,
    /// 10: refused by the resource's state (Primary without UpToDate data, a verb on a down
    /// resource, another command running).
    Refused,
    /// 11: no valid meta-data, or meta-data that does not match the configuration.
    MetaData,
    /// 20: configuration error: does not parse, unknown resource, no `on` section here.
    Config,
    /// 30: malformed or incompatible control request/response (versions differ).
    Protocol,
    /// Anything else (a signal, an undocumented code).
    Other(Option<i32>),
}

impl CtlExit {
    /// From a process exit code.
    pub fn from_code(code: Option<i32>) -> CtlExit {
        match code {
            Some(0) => CtlExit::Ok,
            Some(1) => CtlExit::Failed,
            Some(2) => CtlExit::Usage,
            Some(3) => CtlExit::NoDaemon,
            Some(10) => CtlExit::Refused,
            Some(11) => CtlExit::MetaData,
            Some(20) => CtlExit::Config,
            Some(30) => CtlExit::Protocol,
            other => CtlExit::Other(other),
        }
    }

    /// The OCF status an action returns when `replicatorctl` failed this way: the
    /// resource's meta-data or configuration missing on this node is `OCF_ERR_INSTALLED`
    /// (the cluster bans this node only: another may be fine, as the DRBD agent reasons);
    /// everything else is `OCF_ERR_GENERIC` (recoverable, retried).
    pub fn ocf_status(self) -> Status {
        match self {
            CtlExit::MetaData | CtlExit::Config => Status::ErrInstalled,
            _ => Status::ErrGeneric,
        }
    }
}

/// A failed `replicatorctl` run.
#[derive(Debug, Clone)]
pub struct CtlError {
    /// How it exited.
    pub exit: CtlExit,
    /// The command, for messages.
    pub command: String,
    /// Its error message (stderr, warnings left out).
    pub message: String,
}

impl CtlError {
    /// As the action's error.
    pub fn into_ocf(self) -> OcfError {
        OcfError::new(
            self.exit.ocf_status(),
            format!("{} failed: {}", self.command, self.message),
        )
    }
}

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// replicatord answered for the resource.
    Res(ResState),
    /// replicatord is not running (nothing of the resource can be up).
    NoDaemon(String),
    /// replicatord runs but does not know the resource for this node (exit 20): its
    /// configuration lacks it, or has no `on` section for this node.
    NotConfigured(String),
}

/// `replicatorctl` for one resource.
#[derive(Debug, Clone)]
pub struct Ctl {
    /// The replicatorctl binary.
    pub prog: PathBuf,
    /// `--config` (only the offline verbs read it: the daemon reads its own).
    pub config: String,
    /// `--state-dir`: where replicatord's control socket is.
    pub state_dir: String,
    /// The resource.
    pub resource: String,
    /// When every `replicatorctl` run is given up (killed): a little before the op's timeout,
    /// so that a replicatord that accepts but never answers gets the action a clear error of
    /// its own instead of the cluster manager's timeout.
    pub deadline: std::time::Instant,
}

/// `replicatorctl` prints warnings about the configuration (e.g. a DRBD kernel device name)
/// on stderr as `warning: ...` or `FILE:LINE:COL: warning: ...`; only the rest is the error.
fn error_text(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("warning:") && !l.contains(": warning: "))
        .map(|l| l.strip_prefix("replicatorctl: error: ").unwrap_or(l))
        .collect();
    if lines.is_empty() {
        text.trim().to_owned()
    } else {
        lines.join("; ")
    }
}

impl Ctl {
    /// The `replicatorctl` next to this binary (clusterd runs Tandem's binaries from one
    /// directory), else the one in PATH.
    pub fn find() -> Result<PathBuf, OcfError> {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("replicatorctl")))
            .and_then(|p| tools::find_tool(p.to_str()?)); // an executable file, not just a name
        match beside {
            Some(p) => Ok(p),
            None => tools::require_tool("replicatorctl", Some("tandem (replicatorctl)")),
        }
    }

    fn cmd(&self, verb: &[&str]) -> Command {
        let mut c = Command::new(&self.prog);
        c.args(["--state-dir", &self.state_dir, "--config", &self.config])
            .args(verb)
            .arg(&self.resource);
        c
    }

    fn describe(&self, verb: &[&str]) -> String {
        format!("replicatorctl {} {}", verb.join(" "), self.resource)
    }

    /// Runs `replicatorctl VERB... RES`; returns its stdout.
    pub fn run(&self, verb: &[&str]) -> Result<String, CtlError> {
        let out =
            tools::output_until(&mut self.cmd(verb), self.deadline).map_err(|e| CtlError {
                exit: CtlExit::Other(None),
                command: self.describe(verb),
                message: e.reason,
            })?;
        let exit = CtlExit::from_code(out.status.code());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if exit == CtlExit::Ok {
            ocf::debug!("{}: {}", self.describe(verb), stdout.trim());
            return Ok(stdout);
        }
        Err(CtlError {
            exit,
            command: self.describe(verb),
            message: error_text(&out.stderr),
        })
    }

    /// The resource's state, from `status --json`.
    pub fn status(&self) -> Result<Seen, OcfError> {
        // No control socket at all: replicatord is not running (no need to start a process).
        if !Path::new(&self.state_dir).join("control.sock").exists() {
            return Ok(Seen::NoDaemon(format!(
                "replicatord is not running (no control socket in {})",
                self.state_dir
            )));
        }
        match self.run(&["status", "--json"]) {
            Ok(json) => parse_status(&json, &self.resource)
                .map(Seen::Res)
                .map_err(|e| OcfError::generic(format!("replicatorctl status: {e}"))),
            Err(e) if e.exit == CtlExit::NoDaemon => Ok(Seen::NoDaemon(e.message)),
            Err(e) if e.exit == CtlExit::Config => Ok(Seen::NotConfigured(e.message)),
            Err(e) => Err(OcfError::generic(format!(
                "{} failed: {}",
                e.command, e.message
            ))),
        }
    }

    /// Checks offline that the configuration file defines the resource (`replicatorctl
    /// dump RES`), as the DRBD agent checks with `drbdadm sh-dev`.
    pub fn check_config(&self) -> Result<(), OcfError> {
        self.run(&["dump"]).map(|_| ()).map_err(|e| {
            OcfError::new(
                Status::ErrInstalled,
                format!(
                    "resource {} is not usable from {}: {}",
                    self.resource, self.config, e.message
                ),
            )
        })
    }

    /// Whether the configuration allows two primaries for the resource (`dump --json`).
    pub fn allows_two_primaries(&self) -> Result<bool, OcfError> {
        let json = self.run(&["dump", "--json"]).map_err(CtlError::into_ocf)?;
        let v: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| OcfError::generic(format!("replicatorctl dump --json: {e}")))?;
        let res = v["resources"]
            .as_array()
            .and_then(|r| r.first())
            .ok_or_else(|| OcfError::generic("replicatorctl dump --json lists no resource"))?;
        let yes = |net: &serde_json::Value| net["allow_two_primaries"].as_bool() == Some(true);
        let conns = res["connections"].as_array().cloned().unwrap_or_default();
        Ok(yes(&res["net"]) || conns.iter().any(|c| yes(&c["net"])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_exit_codes_map_to_ocf_statuses() {
        for (code, exit) in [
            (0, CtlExit::Ok),
            (1, CtlExit::Failed),
            (2, CtlExit::Usage),
            (3, CtlExit::NoDaemon),
            (10, CtlExit::Refused),
            (11, CtlExit::MetaData),
            (20, CtlExit::Config),
            (30, CtlExit::Protocol),
        ] {
            assert_eq!(CtlExit::from_code(Some(code)), exit);
        }
        assert_eq!(CtlExit::from_code(Some(7)), CtlExit::Other(Some(7)));
        assert_eq!(CtlExit::from_code(None), CtlExit::Other(None));
        assert_eq!(CtlExit::MetaData.ocf_status(), Status::ErrInstalled);
        assert_eq!(CtlExit::Config.ocf_status(), Status::ErrInstalled);
        assert_eq!(CtlExit::Refused.ocf_status(), Status::ErrGeneric);
        assert_eq!(CtlExit::NoDaemon.ocf_status(), Status::ErrGeneric);
    }

    #[test]
    fn configuration_warnings_are_not_the_error() {
        let stderr = b"warning: r.res:4:3: device /dev/drbd1 is a DRBD kernel device name\n\
            r.res:4:3: warning: device /dev/drbd1 is a DRBD kernel device name\n\
            replicatorctl: error: resource r0: refusing to become Primary: the disk is Inconsistent\n";
        assert_eq!(
            error_text(stderr),
            "resource r0: refusing to become Primary: the disk is Inconsistent"
        );
        assert_eq!(error_text(b"warning: only this\n"), "warning: only this");
    }
}

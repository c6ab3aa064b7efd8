//! Running one OCF operation: the environment an agent sees, its own process group, the
//! timeout that kills that group, and the captured output and exit reason.
//!
//! An operation is a short-lived child process: `AGENT ACTION` with `env_clear()` plus the OCF
//! variables (OCF 1.1 §4 and what Pacemaker's executor adds: `OCF_RESKEY_CRM_meta_*`,
//! `OCF_RESKEY_crm_feature_set`). The child is the leader of a new process group, so at the
//! timeout `killpg(SIGKILL)` takes the agent and everything it forked (a hung `sleep`, a stuck
//! `mount`) and the operation fails with [`ExecStatus::TimedOut`]. A child that exits normally
//! keeps any daemon it started (the mail agent's services must outlive `start`); its pipes are
//! drained for at most [`OUTPUT_DRAIN_GRACE_MS`] after it exits, so a daemon that inherited
//! stdout cannot hold the operation open.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::agent::{Action, AgentRef, AgentResolver, OcfRc};

/// Bytes kept of each of stdout and stderr (the tail is kept: errors come last). An agent that
/// prints more has the excess dropped, never buffered.
pub const OUTPUT_MAX_BYTES: usize = 64 * 1024;

/// How long the output pipes are read after the agent exited. A daemon started by the agent
/// that kept its stdout/stderr open would otherwise hold the operation forever; at the bound
/// the pipes are closed and what was read is kept.
pub const OUTPUT_DRAIN_GRACE_MS: u64 = 200;

/// Longest exit reason kept (Pacemaker keeps a short line, too).
pub const EXIT_REASON_MAX_CHARS: usize = 512;

/// The prefix with which `ocf_exit_reason` marks the reason on stderr.
pub const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";

/// The Pacemaker feature set advertised to agents (`OCF_RESKEY_crm_feature_set`), that of
/// Pacemaker 2.1.5 (Debian 12). At ≥ 3.10.0, ocf-shellfuncs' `ocf_promotion_score` calls
/// `crm_attribute -p` rather than the deprecated `crm_master`; both are served (see `shim`).
pub const CRM_FEATURE_SET: &str = "3.16.2";

/// What every operation of this node shares: where agents live and how they reach clusterd.
#[derive(Debug, Clone)]
pub struct ExecEnv {
    /// `$OCF_ROOT`.
    pub ocf_root: PathBuf,
    /// Directory of the `crm_attribute`/`crm_master`/`crm_node` shims: `HA_SBIN_DIR`, and
    /// first on `PATH`.
    pub shim_dir: PathBuf,
    /// clusterd's control socket (`CLUSTERD_CONTROL`).
    pub control_socket: PathBuf,
    /// This node's name (`CLUSTERD_NODE`, `OCF_RESKEY_CRM_meta_on_node`).
    pub node: String,
    /// `PATH` after the shim directory.
    pub base_path: String,
    /// Extra variables passed to every agent (e.g. `HA_RSCTMP` for tests); applied before the
    /// OCF variables, which win.
    pub extra: BTreeMap<String, String>,
}

impl ExecEnv {
    /// The `PATH` agents see when the daemon's own is `path`: it, followed by the system
    /// directories it lacks (agents call `ip`, `mount`, `modprobe`, `fuser` from the sbin
    /// directories, which a daemon started from a user's shell may not have).
    pub fn default_base_path(path: Option<String>) -> String {
        let mut dirs: Vec<String> = path
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        for d in SYSTEM_PATH {
            if !dirs.iter().any(|x| x == d) {
                dirs.push((*d).to_owned());
            }
        }
        dirs.join(":")
    }
}

/// The directories every agent's `PATH` contains.
pub const SYSTEM_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// One operation to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRequest {
    /// `OCF_RESOURCE_INSTANCE`, e.g. `web` or `db:1` for a clone instance.
    pub resource: String,
    /// The agent.
    pub agent: AgentRef,
    /// The action.
    pub action: Action,
    /// `OCF_RESKEY_CRM_meta_interval` (0 = one-shot; a monitor with 0 is a probe).
    pub interval_ms: u64,
    /// The timeout; the agent's process group is killed when it passes.
    pub timeout_ms: u64,
    /// Instance attributes → `OCF_RESKEY_<name>`.
    pub params: BTreeMap<String, String>,
    /// Meta attributes → `OCF_RESKEY_CRM_meta_<name>` (`-` in names becomes `_`); includes the
    /// clone and notify variables the caller computed.
    pub meta: BTreeMap<String, String>,
    /// `OCF_CHECK_LEVEL` (monitor depth 0/10/20).
    pub check_level: Option<u32>,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecStatus {
    /// The agent exited by itself; its exit code is the result.
    Done,
    /// Killed at its timeout.
    TimedOut,
    /// Could not be run at all (not installed, bad parameter name, spawn failure).
    Error,
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    /// The OCF exit code (for a timeout, `OCF_ERR_GENERIC`; for an agent that cannot run,
    /// `OCF_ERR_INSTALLED` or `OCF_ERR_CONFIGURED`).
    pub rc: OcfRc,
    /// How it ended.
    pub status: ExecStatus,
    /// The agent's `ocf-exit-reason:` line, or clusterd's own reason (timeout, not installed).
    pub exit_reason: Option<String>,
    /// Captured stdout (capped, tail kept); `meta-data` returns its XML here.
    pub stdout: String,
    /// Captured stderr (capped, tail kept).
    pub stderr: String,
    /// Wall time.
    pub duration_ms: u64,
}

impl OpResult {
    fn failed_to_run(rc: OcfRc, reason: String) -> Self {
        OpResult {
            rc,
            status: ExecStatus::Error,
            exit_reason: Some(reason),
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
        }
    }
}

/// Is `name` usable as an OCF parameter name (and so inside an environment variable name)?
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The complete environment of `req` (nothing is inherited from clusterd).
pub fn build_env(env: &ExecEnv, req: &OpRequest) -> Result<BTreeMap<String, String>, String> {
    let mut e: BTreeMap<String, String> = env.extra.clone();
    let mut set = |k: &str, v: &str| {
        e.insert(k.to_owned(), v.to_owned());
    };
    set(
        "PATH",
        &format!("{}:{}", env.shim_dir.display(), env.base_path),
    );
    set("LC_ALL", "C");
    set("HA_SBIN_DIR", &env.shim_dir.to_string_lossy());
    set("CLUSTERD_CONTROL", &env.control_socket.to_string_lossy());
    set("CLUSTERD_NODE", &env.node);
    set("OCF_ROOT", &env.ocf_root.to_string_lossy());
    set("OCF_RA_VERSION_MAJOR", "1");
    set("OCF_RA_VERSION_MINOR", "1");
    set("OCF_RESOURCE_INSTANCE", &req.resource);
    set("OCF_RESOURCE_PROVIDER", &req.agent.provider);
    set("OCF_RESOURCE_TYPE", &req.agent.kind);
    set("OCF_RESKEY_crm_feature_set", CRM_FEATURE_SET);
    for (k, v) in &req.params {
        if !valid_param_name(k) || k.starts_with("CRM_meta") {
            return Err(format!(
                "resource {}: invalid parameter name `{k}`",
                req.resource
            ));
        }
        e.insert(format!("OCF_RESKEY_{k}"), v.clone());
    }
    for (k, v) in &req.meta {
        if !valid_param_name(k) {
            return Err(format!(
                "resource {}: invalid meta attribute name `{k}`",
                req.resource
            ));
        }
        e.insert(
            format!("OCF_RESKEY_CRM_meta_{}", k.replace(['-', '.'], "_")),
            v.clone(),
        );
    }
    // What the executor itself decides wins over anything a caller put in `meta`.
    e.insert(
        "OCF_RESKEY_CRM_meta_name".into(),
        req.action.as_str().into(),
    );
    e.insert(
        "OCF_RESKEY_CRM_meta_interval".into(),
        req.interval_ms.to_string(),
    );
    e.insert(
        "OCF_RESKEY_CRM_meta_timeout".into(),
        req.timeout_ms.to_string(),
    );
    e.insert("OCF_RESKEY_CRM_meta_on_node".into(), env.node.clone());
    e.insert("OCF_RESKEY_CRM_meta_on_node_uuid".into(), env.node.clone());
    if let Some(level) = req.check_level {
        e.insert("OCF_CHECK_LEVEL".into(), level.to_string());
    }
    Ok(e)
}

/// The last `ocf-exit-reason:` message on `stderr`, trimmed and bounded.
pub fn exit_reason(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(EXIT_REASON_PREFIX))?;
    let msg: String = line.trim().chars().take(EXIT_REASON_MAX_CHARS).collect();
    (!msg.is_empty()).then_some(msg)
}

/// Runs `req` to completion or timeout.
pub async fn run_op(env: &ExecEnv, resolver: &AgentResolver, req: &OpRequest) -> OpResult {
    let path = match resolver.resolve(&req.agent) {
        Ok(p) => p,
        Err(e) => return OpResult::failed_to_run(OcfRc::ErrInstalled, e.to_string()),
    };
    let vars = match build_env(env, req) {
        Ok(v) => v,
        Err(e) => return OpResult::failed_to_run(OcfRc::ErrConfigured, e),
    };
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&path);
    cmd.arg(req.action.as_str())
        .env_clear()
        .envs(&vars)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return OpResult::failed_to_run(
                OcfRc::ErrInstalled,
                format!("cannot run {}: {e}", path.display()),
            );
        }
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let mut group = GroupGuard(pgid);
    let out_task = tokio::spawn(read_tail(child.stdout.take()));
    let err_task = tokio::spawn(read_tail(child.stderr.take()));

    let timeout = Duration::from_millis(req.timeout_ms.max(1));
    let (status, code) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => (ExecStatus::Done, Some(c)),
                (None, sig) => (ExecStatus::Done, sig.map(|s| -s)),
            }
        }
        Ok(Err(e)) => {
            group.kill();
            let _ = child.wait().await;
            return OpResult::failed_to_run(OcfRc::ErrGeneric, format!("waiting for agent: {e}"));
        }
        Err(_elapsed) => {
            group.kill();
            let _ = child.wait().await;
            (ExecStatus::TimedOut, None)
        }
    };
    group.disarm();
    let grace = Duration::from_millis(OUTPUT_DRAIN_GRACE_MS);
    let stdout = collect(out_task, grace).await;
    let stderr = collect(err_task, grace).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (rc, reason) = match (&status, code) {
        (ExecStatus::TimedOut, _) => (
            OcfRc::ErrGeneric,
            Some(format!(
                "{} {} timed out after {} ms (agent killed)",
                req.resource, req.action, req.timeout_ms
            )),
        ),
        (_, Some(c)) if c < 0 => (
            OcfRc::ErrGeneric,
            Some(exit_reason(&stderr).unwrap_or_else(|| format!("agent killed by signal {}", -c))),
        ),
        (_, Some(c)) => (OcfRc::from_code(c), exit_reason(&stderr)),
        (_, None) => (
            OcfRc::ErrGeneric,
            Some("agent ended without an exit status".into()),
        ),
    };
    OpResult {
        rc,
        status,
        exit_reason: reason,
        stdout,
        stderr,
        duration_ms,
    }
}

/// Kills the operation's process group if the operation is abandoned before the agent was
/// reaped (a cancelled future, a panic): no agent outlives a timeout or its daemon's loop.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            use nix::sys::signal::{Signal, killpg};
            let _ = killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn read_tail<R: AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_MAX_BYTES {
                    let cut = kept.len() - OUTPUT_MAX_BYTES;
                    kept.drain(..cut);
                }
            }
        }
    }
    kept
}

async fn collect(task: tokio::task::JoinHandle<Vec<u8>>, grace: Duration) -> String {
    let abort = task.abort_handle();
    match tokio::time::timeout(grace, task).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            abort.abort();
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ExecEnv {
        ExecEnv {
            ocf_root: "/usr/lib/ocf".into(),
            shim_dir: "/run/x/sbin".into(),
            control_socket: "/run/x/control.sock".into(),
            node: "n1".into(),
            base_path: "/usr/bin:/bin".into(),
            extra: BTreeMap::new(),
        }
    }

    fn req() -> OpRequest {
        OpRequest {
            resource: "db:1".into(),
            agent: "ocf:pacemaker:Stateful".parse().unwrap(),
            action: Action::Monitor,
            interval_ms: 10_000,
            timeout_ms: 20_000,
            params: [("state".to_owned(), "/tmp/s".to_owned())].into(),
            meta: [
                ("clone-max".to_owned(), "2".to_owned()),
                ("notify_start_uname".to_owned(), "n1 n2".to_owned()),
                ("interval".to_owned(), "999".to_owned()),
            ]
            .into(),
            check_level: Some(10),
        }
    }

    #[test]
    fn environment_is_complete_and_exact() {
        let e = build_env(&env(), &req()).unwrap();
        let want: BTreeMap<String, String> = [
            ("CLUSTERD_CONTROL", "/run/x/control.sock"),
            ("CLUSTERD_NODE", "n1"),
            ("HA_SBIN_DIR", "/run/x/sbin"),
            ("LC_ALL", "C"),
            ("OCF_CHECK_LEVEL", "10"),
            ("OCF_RA_VERSION_MAJOR", "1"),
            ("OCF_RA_VERSION_MINOR", "1"),
            ("OCF_RESKEY_CRM_meta_clone_max", "2"),
            ("OCF_RESKEY_CRM_meta_interval", "10000"),
            ("OCF_RESKEY_CRM_meta_name", "monitor"),
            ("OCF_RESKEY_CRM_meta_notify_start_uname", "n1 n2"),
            ("OCF_RESKEY_CRM_meta_on_node", "n1"),
            ("OCF_RESKEY_CRM_meta_on_node_uuid", "n1"),
            ("OCF_RESKEY_CRM_meta_timeout", "20000"),
            ("OCF_RESKEY_crm_feature_set", CRM_FEATURE_SET),
            ("OCF_RESKEY_state", "/tmp/s"),
            ("OCF_RESOURCE_INSTANCE", "db:1"),
            ("OCF_RESOURCE_PROVIDER", "pacemaker"),
            ("OCF_RESOURCE_TYPE", "Stateful"),
            ("OCF_ROOT", "/usr/lib/ocf"),
            ("PATH", "/run/x/sbin:/usr/bin:/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(e, want);
    }

    #[test]
    fn agent_path_always_has_the_system_directories() {
        assert_eq!(
            ExecEnv::default_base_path(Some("/opt/x/bin:/usr/bin".into())),
            "/opt/x/bin:/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/bin"
        );
        assert_eq!(ExecEnv::default_base_path(None), SYSTEM_PATH.join(":"));
    }

    #[test]
    fn bad_parameter_names_are_refused() {
        let mut r = req();
        r.params.insert("a=b".into(), "x".into());
        assert_eq!(
            build_env(&env(), &r).unwrap_err(),
            "resource db:1: invalid parameter name `a=b`"
        );
    }

    #[test]
    fn exit_reason_is_the_last_marked_line() {
        let err =
            "noise\nocf-exit-reason:first\nmore\nocf-exit-reason: No process state file found \n";
        assert_eq!(
            exit_reason(err).as_deref(),
            Some("No process state file found")
        );
        assert_eq!(exit_reason("nothing here"), None);
        let long = format!("ocf-exit-reason:{}", "x".repeat(2000));
        assert_eq!(exit_reason(&long).unwrap().len(), EXIT_REASON_MAX_CHARS);
    }
}

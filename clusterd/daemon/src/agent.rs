//! Which program runs a resource: `ocf:PROVIDER:TYPE` names, their resolution to an executable,
//! and the OCF 1.1 exit codes and actions.
//!
//! `ocf:tandem:TYPE` resolves to Tandem's own agents, found next to the `clusterd` binary so a
//! build directory or an install prefix works with no install step (`IPaddr` → `tandem-ipaddr`,
//! `Filesystem` → `tandem-filesystem`, `replicator` → `tandem-replicator`, `mail` →
//! `tandem-mail`); a Tandem agent copied to `$OCF_ROOT/resource.d/tandem/TYPE` (as for a real
//! Pacemaker) is used when the sibling binary is missing. Every other provider comes from
//! `$OCF_ROOT/resource.d/PROVIDER/TYPE`, e.g. Debian's `resource-agents`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Tandem's agents: the `ocf:tandem:TYPE` name and the binary built by the workspace.
pub const TANDEM_AGENTS: &[(&str, &str)] = &[
    ("IPaddr", "tandem-ipaddr"),
    ("Filesystem", "tandem-filesystem"),
    ("replicator", "tandem-replicator"),
    ("mail", "tandem-mail"),
];

/// The provider name under which Tandem's agents are addressed.
pub const TANDEM_PROVIDER: &str = "tandem";

/// Default `OCF_ROOT` (Debian's `resource-agents` installs here).
pub const DEFAULT_OCF_ROOT: &str = "/usr/lib/ocf";

/// A parsed agent name: `ocf:PROVIDER:TYPE` (the only class clusterd runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentRef {
    /// The OCF provider, e.g. `heartbeat`, `pacemaker`, `tandem`.
    pub provider: String,
    /// The agent type, e.g. `Dummy`, `Stateful`, `IPaddr2`.
    pub kind: String,
}

/// Why an agent name or an agent could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The name is not of the form `ocf:PROVIDER:TYPE`.
    #[error("agent `{0}`: expected ocf:PROVIDER:TYPE (e.g. ocf:heartbeat:Dummy)")]
    Malformed(String),
    /// A class other than `ocf` (lsb, systemd, stonith...).
    #[error("agent `{name}`: class `{class}` is not supported; clusterd runs OCF agents only")]
    UnsupportedClass {
        /// The whole name.
        name: String,
        /// Its class.
        class: String,
    },
    /// A provider or type with characters that could escape `resource.d`.
    #[error("agent `{0}`: provider and type may hold only letters, digits, '-', '_' and '.'")]
    BadCharacters(String),
    /// No executable for the agent.
    #[error("agent {agent} is not installed (looked for {looked})")]
    NotInstalled {
        /// The agent.
        agent: String,
        /// The paths tried, comma-separated.
        looked: String,
    },
}

impl FromStr for AgentRef {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let [class, provider, kind] = parts.as_slice() else {
            return Err(AgentError::Malformed(s.to_owned()));
        };
        if !class.eq_ignore_ascii_case("ocf") {
            return Err(AgentError::UnsupportedClass {
                name: s.to_owned(),
                class: (*class).to_owned(),
            });
        }
        let ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !ok(provider) || !ok(kind) {
            return Err(AgentError::BadCharacters(s.to_owned()));
        }
        Ok(AgentRef {
            provider: (*provider).to_owned(),
            kind: (*kind).to_owned(),
        })
    }
}

impl fmt::Display for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ocf:{}:{}", self.provider, self.kind)
    }
}

/// Finds the executable of an agent.
#[derive(Debug, Clone)]
pub struct AgentResolver {
    /// `$OCF_ROOT`.
    pub ocf_root: PathBuf,
    /// Where Tandem's agent binaries live (the directory of the `clusterd` binary).
    pub tandem_bin_dir: PathBuf,
}

impl AgentResolver {
    /// A resolver for `ocf_root`, with Tandem's agents next to the running executable.
    pub fn new(ocf_root: PathBuf) -> Self {
        let tandem_bin_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        AgentResolver {
            ocf_root,
            tandem_bin_dir,
        }
    }

    /// The candidate paths for `agent`, in the order they are tried.
    pub fn candidates(&self, agent: &AgentRef) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if agent.provider == TANDEM_PROVIDER
            && let Some((_, bin)) = TANDEM_AGENTS.iter().find(|(t, _)| *t == agent.kind)
        {
            out.push(self.tandem_bin_dir.join(bin));
        }
        out.push(
            self.ocf_root
                .join("resource.d")
                .join(&agent.provider)
                .join(&agent.kind),
        );
        out
    }

    /// The first candidate that is an executable file.
    pub fn resolve(&self, agent: &AgentRef) -> Result<PathBuf, AgentError> {
        let candidates = self.candidates(agent);
        for c in &candidates {
            if is_executable(c) {
                return Ok(c.clone());
            }
        }
        Err(AgentError::NotInstalled {
            agent: agent.to_string(),
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An OCF action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `start`.
    Start,
    /// `stop`.
    Stop,
    /// `monitor` (a probe when its interval is 0).
    Monitor,
    /// `promote`.
    Promote,
    /// `demote`.
    Demote,
    /// `notify`.
    Notify,
    /// `reload` (OCF 1.0 agents).
    Reload,
    /// `reload-agent` (OCF 1.1 agents).
    ReloadAgent,
    /// `meta-data`.
    MetaData,
    /// `validate-all`.
    ValidateAll,
}

impl Action {
    /// The word the agent receives as its argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::Reload => "reload",
            Action::ReloadAgent => "reload-agent",
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
        }
    }

    /// Default timeout when the configuration names none (Pacemaker's default is 20 s).
    pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "monitor" => Action::Monitor,
            "promote" => Action::Promote,
            "demote" => Action::Demote,
            "notify" => Action::Notify,
            "reload" => Action::Reload,
            "reload-agent" => Action::ReloadAgent,
            "meta-data" => Action::MetaData,
            "validate-all" => Action::ValidateAll,
            other => return Err(format!("unknown OCF action `{other}`")),
        })
    }
}

/// OCF 1.1 exit codes (and how Pacemaker grades a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OcfRc {
    /// 0 `OCF_SUCCESS`.
    Success,
    /// 1 `OCF_ERR_GENERIC`.
    ErrGeneric,
    /// 2 `OCF_ERR_ARGS`.
    ErrArgs,
    /// 3 `OCF_ERR_UNIMPLEMENTED`.
    ErrUnimplemented,
    /// 4 `OCF_ERR_PERM`.
    ErrPerm,
    /// 5 `OCF_ERR_INSTALLED`.
    ErrInstalled,
    /// 6 `OCF_ERR_CONFIGURED`.
    ErrConfigured,
    /// 7 `OCF_NOT_RUNNING`.
    NotRunning,
    /// 8 `OCF_RUNNING_PROMOTED`.
    RunningPromoted,
    /// 9 `OCF_FAILED_PROMOTED`.
    FailedPromoted,
    /// 190 `OCF_DEGRADED`.
    Degraded,
    /// 191 `OCF_DEGRADED_PROMOTED`.
    DegradedPromoted,
    /// Any other code (treated as a generic error).
    Other(i32),
}

/// How bad a failed operation is, in Pacemaker's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureSeverity {
    /// Recover in place (restart): 1, 7 on a recurring monitor, 9, timeouts.
    Soft,
    /// The resource cannot run on this node (2–5).
    Hard,
    /// The resource cannot run anywhere (6).
    Fatal,
}

impl OcfRc {
    /// From a process exit code.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => OcfRc::Success,
            1 => OcfRc::ErrGeneric,
            2 => OcfRc::ErrArgs,
            3 => OcfRc::ErrUnimplemented,
            4 => OcfRc::ErrPerm,
            5 => OcfRc::ErrInstalled,
            6 => OcfRc::ErrConfigured,
            7 => OcfRc::NotRunning,
            8 => OcfRc::RunningPromoted,
            9 => OcfRc::FailedPromoted,
            190 => OcfRc::Degraded,
            191 => OcfRc::DegradedPromoted,
            other => OcfRc::Other(other),
        }
    }

    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            OcfRc::Success => 0,
            OcfRc::ErrGeneric => 1,
            OcfRc::ErrArgs => 2,
            OcfRc::ErrUnimplemented => 3,
            OcfRc::ErrPerm => 4,
            OcfRc::ErrInstalled => 5,
            OcfRc::ErrConfigured => 6,
            OcfRc::NotRunning => 7,
            OcfRc::RunningPromoted => 8,
            OcfRc::FailedPromoted => 9,
            OcfRc::Degraded => 190,
            OcfRc::DegradedPromoted => 191,
            OcfRc::Other(c) => c,
        }
    }

    /// The name Pacemaker prints (`crm_mon`'s failed-actions list).
    pub fn name(self) -> &'static str {
        match self {
            OcfRc::Success => "ok",
            OcfRc::ErrGeneric => "error",
            OcfRc::ErrArgs => "invalid parameter",
            OcfRc::ErrUnimplemented => "unimplemented feature",
            OcfRc::ErrPerm => "insufficient privileges",
            OcfRc::ErrInstalled => "not installed",
            OcfRc::ErrConfigured => "not configured",
            OcfRc::NotRunning => "not running",
            OcfRc::RunningPromoted => "promoted",
            OcfRc::FailedPromoted => "promoted (failed)",
            OcfRc::Degraded => "OCF_DEGRADED",
            OcfRc::DegradedPromoted => "promoted (degraded)",
            OcfRc::Other(_) => "unknown error",
        }
    }

    /// Severity of this code as a failure (Pacemaker: 2–5 hard, 6 fatal, the rest soft).
    pub fn severity(self) -> FailureSeverity {
        match self {
            OcfRc::ErrArgs | OcfRc::ErrUnimplemented | OcfRc::ErrPerm | OcfRc::ErrInstalled => {
                FailureSeverity::Hard
            }
            OcfRc::ErrConfigured => FailureSeverity::Fatal,
            _ => FailureSeverity::Soft,
        }
    }
}

impl fmt::Display for OcfRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ocf_names() {
        let a: AgentRef = "ocf:heartbeat:Dummy".parse().unwrap();
        assert_eq!(
            a,
            AgentRef {
                provider: "heartbeat".into(),
                kind: "Dummy".into()
            }
        );
        assert_eq!(a.to_string(), "ocf:heartbeat:Dummy");
        assert_eq!(
            "lsb:foo:bar".parse::<AgentRef>(),
            Err(AgentError::UnsupportedClass {
                name: "lsb:foo:bar".into(),
                class: "lsb".into()
            })
        );
        assert_eq!(
            "ocf:Dummy".parse::<AgentRef>(),
            Err(AgentError::Malformed("ocf:Dummy".into()))
        );
        assert!(matches!(
            "ocf:..:Dummy".parse::<AgentRef>(),
            Err(AgentError::BadCharacters(_))
        ));
        assert!(matches!(
            "ocf:heartbeat:a/b".parse::<AgentRef>(),
            Err(AgentError::BadCharacters(_))
        ));
    }

    #[test]
    fn tandem_agents_resolve_next_to_the_binary_first() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let root = dir.path().join("ocf");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("resource.d/tandem")).unwrap();
        let r = AgentResolver {
            ocf_root: root.clone(),
            tandem_bin_dir: bin.clone(),
        };
        let ip: AgentRef = "ocf:tandem:IPaddr".parse().unwrap();
        assert_eq!(
            r.candidates(&ip),
            vec![
                bin.join("tandem-ipaddr"),
                root.join("resource.d/tandem/IPaddr")
            ]
        );
        let err = r.resolve(&ip).unwrap_err();
        assert!(err.to_string().contains("tandem-ipaddr"), "{err}");
        // An installed copy is found when the sibling binary is missing...
        write_exe(&root.join("resource.d/tandem/IPaddr"));
        assert_eq!(
            r.resolve(&ip).unwrap(),
            root.join("resource.d/tandem/IPaddr")
        );
        // ...and the sibling wins when both exist.
        write_exe(&bin.join("tandem-ipaddr"));
        assert_eq!(r.resolve(&ip).unwrap(), bin.join("tandem-ipaddr"));
        // A non-executable file is not an agent.
        std::fs::write(root.join("resource.d/tandem/Other"), "x").unwrap();
        assert!(r.resolve(&"ocf:tandem:Other".parse().unwrap()).is_err());
    }

    fn write_exe(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn exit_codes_round_trip_and_grade() {
        for c in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191, 42] {
            assert_eq!(OcfRc::from_code(c).code(), c);
        }
        assert_eq!(OcfRc::from_code(5).severity(), FailureSeverity::Hard);
        assert_eq!(OcfRc::from_code(6).severity(), FailureSeverity::Fatal);
        assert_eq!(OcfRc::from_code(1).severity(), FailureSeverity::Soft);
        assert_eq!(OcfRc::from_code(7).to_string(), "not running (7)");
    }
}

//! The node's daemon configuration (`clusterd --config FILE`), TOML:
//!
//! ```toml
//! cluster_name = "mail"
//!
//! [[node]]
//! name = "zimbra1"
//! address = "192.168.1.11"     # used by membership (a later issue); optional today
//!
//! [[node]]
//! name = "zimbra2"
//! address = "192.168.1.12"
//!
//! [executor]                   # all optional
//! ocf_root = "/usr/lib/ocf"
//! max_concurrent_ops = 4       # agents running at once on this node
//! probe_timeout_ms = 20000
//! ```
//!
//! The same file goes on every node; `--node NAME` says which entry is this one. One node (the
//! DC) computes transitions and every node runs its own part: with membership absent, the
//! local node is the only online one, so it is the DC. The resource configuration itself (the
//! CIB) is not here: it lives in the state dir and is edited with `clusterctl`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::agent::DEFAULT_OCF_ROOT;

/// Default bound on agents running at once on one node (Pacemaker's `node-action-limit`
/// defaults to twice the cores; these machines have 2). Further operations wait in the queue.
pub const DEFAULT_MAX_CONCURRENT_OPS: usize = 4;

/// Default timeout of start-up probes and of operations the CIB gives no timeout.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 20_000;

/// The parsed configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The cluster's name (shown by `clusterctl status`).
    pub cluster_name: String,
    /// Every node of the cluster, this one included.
    #[serde(rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// Executor settings.
    #[serde(default)]
    pub executor: ExecutorConfig,
}

/// One node entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, as constraints and `clusterctl` name it.
    pub name: String,
    /// Address for the membership layer (not used yet).
    #[serde(default)]
    pub address: Option<String>,
}

/// `[executor]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// `$OCF_ROOT` for agents.
    pub ocf_root: PathBuf,
    /// At most this many agents run at once (≥ 1).
    pub max_concurrent_ops: usize,
    /// Timeout of probes and of operations without a configured timeout.
    pub probe_timeout_ms: u64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            ocf_root: PathBuf::from(DEFAULT_OCF_ROOT),
            max_concurrent_ops: DEFAULT_MAX_CONCURRENT_OPS,
            probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        }
    }
}

/// A configuration that cannot be used, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown/missing key (the message names line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// toml's message, with the position.
        message: String,
    },
    /// Valid TOML that makes no sense.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl DaemonConfig {
    /// Reads and validates `path`; `node` must be one of its nodes.
    pub fn load(path: &Path, node: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), node)
    }

    /// Parses and validates configuration text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str, node: &str) -> Result<Self, ConfigError> {
        let cfg: DaemonConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        if cfg.cluster_name.trim().is_empty() {
            return Err(invalid("cluster_name is empty".into()));
        }
        if cfg.nodes.is_empty() {
            return Err(invalid("no [[node]] entries".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &cfg.nodes {
            if !valid_node_name(&n.name) {
                return Err(invalid(format!(
                    "node name `{}` is not a valid name",
                    n.name
                )));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(invalid(format!("node `{}` is listed twice", n.name)));
            }
        }
        if !seen.contains(node) {
            let names: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(invalid(format!(
                "--node {node} is not one of the configured nodes ({})",
                names.join(", ")
            )));
        }
        if cfg.executor.max_concurrent_ops == 0 {
            return Err(invalid(
                "executor.max_concurrent_ops must be at least 1".into(),
            ));
        }
        if cfg.executor.probe_timeout_ms == 0 {
            return Err(invalid(
                "executor.probe_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(cfg)
    }

    /// Node names in configuration order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

/// A node name: letters, digits, `-`, `_`, `.`, starting with a letter or digit (host names).
pub fn valid_node_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "cluster_name = \"mail\"\n[[node]]\nname = \"n1\"\n[[node]]\nname = \"n2\"\naddress = \"10.0.0.2\"\n";

    #[test]
    fn parses_with_defaults() {
        let c = DaemonConfig::parse(GOOD, "c.toml", "n1").unwrap();
        assert_eq!(c.cluster_name, "mail");
        assert_eq!(c.node_names(), vec!["n1", "n2"]);
        assert_eq!(c.nodes[1].address.as_deref(), Some("10.0.0.2"));
        assert_eq!(c.executor, ExecutorConfig::default());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = DaemonConfig::parse(GOOD, "c.toml", "n9")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.toml: --node n9 is not one of the configured nodes (n1, n2)"
        );
        let e = DaemonConfig::parse(
            &format!("{GOOD}[executor]\nmax_concurrent_ops = 0\n"),
            "c.toml",
            "n1",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "c.toml: executor.max_concurrent_ops must be at least 1");
        let e = DaemonConfig::parse(&format!("{GOOD}[executor]\nbogus = 1\n"), "c.toml", "n1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `bogus`") && e.contains("line 8"),
            "{e}"
        );
        let dup = "cluster_name = \"x\"\n[[node]]\nname = \"a\"\n[[node]]\nname = \"a\"\n";
        assert_eq!(
            DaemonConfig::parse(dup, "c", "a").unwrap_err().to_string(),
            "c: node `a` is listed twice"
        );
    }
}

//! The environment a cluster manager gives an agent (OCF 1.1 "Environment variables", plus
//! the `CRM_meta_*` variables Pacemaker and clusterd add), read once into typed values.
//!
//! [`Env::from_vars`] is pure (it takes the variables as pairs), so every rule here is unit
//! tested; [`Env::from_process`] reads the real environment.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::OcfError;

/// Prefix of instance parameters: `OCF_RESKEY_ip` is the parameter `ip`.
pub const RESKEY_PREFIX: &str = "OCF_RESKEY_";
/// Prefix of meta attributes, inside the `OCF_RESKEY_` namespace: `OCF_RESKEY_CRM_meta_interval`.
pub const META_PREFIX: &str = "OCF_RESKEY_CRM_meta_";

/// `OCF_CHECK_LEVEL`: how deep `monitor` looks (OCF 1.1 defines 0, 10 and 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum CheckLevel {
    /// 0: is it running (mounted, address present...).
    #[default]
    Basic,
    /// 10: can it be read.
    Read,
    /// 20: can it be written and read back.
    Write,
}

impl CheckLevel {
    /// Parses `0`, `10`, `20`; other numbers round down to the nearest of them (as the
    /// heartbeat agents do: a depth "at least 10" gets the depth-10 checks).
    pub fn parse(s: &str) -> Result<CheckLevel, OcfError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| OcfError::bad_param("OCF_CHECK_LEVEL", s, "expected 0, 10 or 20"))?;
        Ok(match n {
            0..=9 => CheckLevel::Basic,
            10..=19 => CheckLevel::Read,
            _ => CheckLevel::Write,
        })
    }

    /// The numeric depth (0, 10, 20).
    pub fn depth(self) -> u32 {
        match self {
            CheckLevel::Basic => 0,
            CheckLevel::Read => 10,
            CheckLevel::Write => 20,
        }
    }
}

/// `OCF_RESKEY_CRM_meta_notify_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyType {
    /// Before the operation runs on any instance.
    Pre,
    /// After it ran.
    Post,
}

/// `OCF_RESKEY_CRM_meta_notify_operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOperation {
    /// Instances are being started.
    Start,
    /// Instances are being stopped.
    Stop,
    /// An instance is being promoted.
    Promote,
    /// An instance is being demoted.
    Demote,
}

/// A clone notification: which operation, before or after, and the node lists Pacemaker
/// passes (`notify_start_uname`, ...; lists are space separated in the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// pre or post.
    pub kind: NotifyType,
    /// start, stop, promote or demote.
    pub operation: NotifyOperation,
    /// Nodes where instances are being started (`notify_start_uname`).
    pub start_uname: Vec<String>,
    /// Nodes where instances are being stopped.
    pub stop_uname: Vec<String>,
    /// Nodes where an instance is being promoted.
    pub promote_uname: Vec<String>,
    /// Nodes where an instance is being demoted.
    pub demote_uname: Vec<String>,
    /// Nodes running an instance (`notify_active_uname`).
    pub active_uname: Vec<String>,
    /// Nodes running a promoted instance (`notify_promoted_uname`, or the older
    /// `notify_master_uname`).
    pub promoted_uname: Vec<String>,
    /// Nodes running an unpromoted instance (`notify_unpromoted_uname` / `notify_slave_uname`).
    pub unpromoted_uname: Vec<String>,
}

/// Clone and promotable-clone meta attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneInfo {
    /// `clone`: this instance's number, when the resource is a clone.
    pub instance: Option<u32>,
    /// `clone_max`.
    pub clone_max: Option<u32>,
    /// `clone_node_max`.
    pub clone_node_max: Option<u32>,
    /// `promoted_max` (older `master_max`).
    pub promoted_max: Option<u32>,
    /// `promoted_node_max` (older `master_node_max`).
    pub promoted_node_max: Option<u32>,
    /// `notify`: whether the cluster sends notifications.
    pub notify: bool,
}

impl CloneInfo {
    /// Whether the resource is configured as a promotable clone (promoted_max given).
    pub fn is_promotable(&self) -> bool {
        self.promoted_max.is_some()
    }
}

/// Everything an action reads from its environment, except the parameters themselves (those
/// are parsed against the agent's definitions by [`crate::Params::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Env {
    /// `OCF_ROOT` (default `/usr/lib/ocf`).
    pub ocf_root: String,
    /// `OCF_RESOURCE_INSTANCE`, e.g. `vip` or `ZimbraData:0`; empty if unset.
    pub instance: String,
    /// `OCF_RESKEY_CRM_meta_interval`, in ms: 0 for a one-shot action or a probe.
    pub interval_ms: u64,
    /// `OCF_RESKEY_CRM_meta_timeout`, in ms, if the manager gave one.
    pub timeout_ms: Option<u64>,
    /// `OCF_CHECK_LEVEL` (or the `CRM_meta_OCF_CHECK_LEVEL` Pacemaker may pass).
    pub check_level: CheckLevel,
    /// The node this runs on (`CRM_meta_on_node`), if given.
    pub on_node: Option<String>,
    /// Clone meta attributes.
    pub clone: CloneInfo,
    /// The notification, for the `notify` action.
    pub notify: Option<Notify>,
    /// Whether clusterd runs this agent (`CLUSTERD_CONTROL` is set).
    pub under_clusterd: bool,
    /// `HA_SBIN_DIR`, where `crm_master` and `crm_attribute` live (clusterd points it at its
    /// shims; Pacemaker's default is `/usr/sbin`).
    pub ha_sbin_dir: Option<String>,
    /// `HA_debug=1` or `OCF_TRACE_RA=1`: log debug lines too.
    pub debug: bool,
    /// Instance parameters: `OCF_RESKEY_NAME` (not `CRM_meta_`), by NAME.
    pub reskeys: BTreeMap<String, String>,
    /// All meta attributes: `OCF_RESKEY_CRM_meta_NAME`, by NAME.
    pub meta: BTreeMap<String, String>,
}

impl Env {
    /// Reads the real process environment (non-UTF-8 variables are ignored).
    pub fn from_process() -> Result<Env, OcfError> {
        Env::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Builds the environment from `(name, value)` pairs. Fails with `OCF_ERR_CONFIGURED` on a
    /// malformed meta attribute (e.g. a non-numeric interval), naming it.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Env, OcfError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut env = Env {
            ocf_root: "/usr/lib/ocf".into(),
            ..Env::default()
        };
        let mut check_level: Option<String> = None;
        let mut meta_check_level: Option<String> = None;
        for (k, v) in vars {
            let (k, v) = (k.into(), v.into());
            if let Some(name) = k.strip_prefix(META_PREFIX) {
                env.meta.insert(name.to_owned(), v);
            } else if let Some(name) = k.strip_prefix(RESKEY_PREFIX) {
                env.reskeys.insert(name.to_owned(), v);
            } else {
                match k.as_str() {
                    "OCF_ROOT" if !v.is_empty() => env.ocf_root = v,
                    "OCF_RESOURCE_INSTANCE" => env.instance = v,
                    "OCF_CHECK_LEVEL" => check_level = Some(v),
                    "CLUSTERD_CONTROL" => env.under_clusterd = !v.is_empty(),
                    "HA_SBIN_DIR" if !v.is_empty() => env.ha_sbin_dir = Some(v),
                    "HA_debug" | "OCF_TRACE_RA" => env.debug |= v == "1" || v == "yes",
                    _ => {}
                }
            }
        }
        if let Some(v) = env.meta.get("OCF_CHECK_LEVEL") {
            meta_check_level = Some(v.clone());
        }
        if let Some(level) = check_level
            .or(meta_check_level)
            .filter(|s| !s.trim().is_empty())
        {
            env.check_level = CheckLevel::parse(&level)?;
        }
        env.interval_ms = meta_u64(&env.meta, "interval")?.unwrap_or(0);
        env.timeout_ms = meta_u64(&env.meta, "timeout")?;
        env.on_node = env.meta.get("on_node").filter(|s| !s.is_empty()).cloned();
        env.clone = CloneInfo {
            instance: meta_u32(&env.meta, &["clone"])?,
            clone_max: meta_u32(&env.meta, &["clone_max"])?,
            clone_node_max: meta_u32(&env.meta, &["clone_node_max"])?,
            promoted_max: meta_u32(&env.meta, &["promoted_max", "master_max"])?,
            promoted_node_max: meta_u32(&env.meta, &["promoted_node_max", "master_node_max"])?,
            notify: env
                .meta
                .get("notify")
                .is_some_and(|v| crate::param::parse_bool(v) == Some(true)),
        };
        env.notify = parse_notify(&env.meta)?;
        Ok(env)
    }

    /// Whether this `monitor` is a probe (interval 0): the cluster asks what runs here before
    /// it starts anything, so "not running" is the expected answer, not a failure.
    pub fn is_probe(&self) -> bool {
        self.interval_ms == 0
    }

    /// The operation's timeout, or `default` when the manager gave none.
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(default)
    }
}

fn meta_u64(meta: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, OcfError> {
    match meta.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            OcfError::bad_param(
                &format!("CRM_meta_{name}"),
                v,
                "expected a number of milliseconds",
            )
        }),
    }
}

fn meta_u32(meta: &BTreeMap<String, String>, names: &[&str]) -> Result<Option<u32>, OcfError> {
    for name in names {
        if let Some(v) = meta.get(*name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            return v.parse().map(Some).map_err(|_| {
                OcfError::bad_param(
                    &format!("CRM_meta_{name}"),
                    v,
                    "expected a non-negative integer",
                )
            });
        }
    }
    Ok(None)
}

fn names(meta: &BTreeMap<String, String>, keys: &[&str]) -> Vec<String> {
    for k in keys {
        if let Some(v) = meta.get(*k) {
            let list: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
            if !list.is_empty() {
                return list;
            }
        }
    }
    Vec::new()
}

fn parse_notify(meta: &BTreeMap<String, String>) -> Result<Option<Notify>, OcfError> {
    let (Some(kind), Some(op)) = (meta.get("notify_type"), meta.get("notify_operation")) else {
        return Ok(None);
    };
    let kind = match kind.as_str() {
        "pre" => NotifyType::Pre,
        "post" => NotifyType::Post,
        other => {
            return Err(OcfError::bad_param(
                "CRM_meta_notify_type",
                other,
                "expected pre or post",
            ));
        }
    };
    let operation = match op.as_str() {
        "start" => NotifyOperation::Start,
        "stop" => NotifyOperation::Stop,
        "promote" => NotifyOperation::Promote,
        "demote" => NotifyOperation::Demote,
        other => {
            return Err(OcfError::bad_param(
                "CRM_meta_notify_operation",
                other,
                "expected start, stop, promote or demote",
            ));
        }
    };
    Ok(Some(Notify {
        kind,
        operation,
        start_uname: names(meta, &["notify_start_uname"]),
        stop_uname: names(meta, &["notify_stop_uname"]),
        promote_uname: names(meta, &["notify_promote_uname"]),
        demote_uname: names(meta, &["notify_demote_uname"]),
        active_uname: names(meta, &["notify_active_uname"]),
        promoted_uname: names(meta, &["notify_promoted_uname", "notify_master_uname"]),
        unpromoted_uname: names(meta, &["notify_unpromoted_uname", "notify_slave_uname"]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    fn env(vars: &[(&str, &str)]) -> Result<Env, OcfError> {
        Env::from_vars(vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn splits_params_from_meta_and_reads_times_in_ms() {
        let e = env(&[
            ("OCF_RESKEY_ip", "10.0.0.5"),
            ("OCF_RESKEY_CRM_meta_interval", "10000"),
            ("OCF_RESKEY_CRM_meta_timeout", "20000"),
            ("OCF_RESOURCE_INSTANCE", "vip"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(e.reskeys.get("ip").map(String::as_str), Some("10.0.0.5"));
        assert!(!e.reskeys.contains_key("CRM_meta_interval"));
        assert_eq!(e.interval_ms, 10_000);
        assert_eq!(e.timeout_ms, Some(20_000));
        assert_eq!(
            e.timeout_or(Duration::from_secs(1)),
            Duration::from_secs(20)
        );
        assert_eq!(e.instance, "vip");
        assert_eq!(e.ocf_root, "/usr/lib/ocf");
        assert!(!e.is_probe());
        assert!(env(&[]).unwrap().is_probe());
    }

    #[test]
    fn bad_interval_is_a_configuration_error_naming_it() {
        let err = env(&[("OCF_RESKEY_CRM_meta_interval", "10s")]).unwrap_err();
        assert_eq!(err.status, Status::ErrConfigured);
        assert!(
            err.reason.contains("CRM_meta_interval") && err.reason.contains("\"10s\""),
            "{err}"
        );
    }

    #[test]
    fn check_level_from_either_variable_rounding_down() {
        assert_eq!(
            env(&[("OCF_CHECK_LEVEL", "10")]).unwrap().check_level,
            CheckLevel::Read
        );
        assert_eq!(
            env(&[("OCF_RESKEY_CRM_meta_OCF_CHECK_LEVEL", "20")])
                .unwrap()
                .check_level,
            CheckLevel::Write
        );
        assert_eq!(
            env(&[("OCF_CHECK_LEVEL", "15")]).unwrap().check_level,
            CheckLevel::Read
        );
        assert_eq!(
            env(&[("OCF_CHECK_LEVEL", "")]).unwrap().check_level,
            CheckLevel::Basic
        );
        assert_eq!(
            env(&[("OCF_CHECK_LEVEL", "deep")]).unwrap_err().status,
            Status::ErrConfigured
        );
        assert_eq!(CheckLevel::Write.depth(), 20);
    }

    #[test]
    fn clone_and_notify_variables_old_and_new_names() {
        let e = env(&[
            ("OCF_RESKEY_CRM_meta_clone", "1"),
            ("OCF_RESKEY_CRM_meta_clone_max", "2"),
            ("OCF_RESKEY_CRM_meta_master_max", "1"),
            ("OCF_RESKEY_CRM_meta_notify", "true"),
            ("OCF_RESKEY_CRM_meta_notify_type", "pre"),
            ("OCF_RESKEY_CRM_meta_notify_operation", "promote"),
            ("OCF_RESKEY_CRM_meta_notify_promote_uname", "n2 "),
            ("OCF_RESKEY_CRM_meta_notify_master_uname", " "),
            ("OCF_RESKEY_CRM_meta_notify_slave_uname", "n1 n2"),
        ])
        .unwrap();
        assert_eq!(e.clone.instance, Some(1));
        assert_eq!(e.clone.promoted_max, Some(1));
        assert!(e.clone.is_promotable() && e.clone.notify);
        let n = e.notify.unwrap();
        assert_eq!(
            (n.kind, n.operation),
            (NotifyType::Pre, NotifyOperation::Promote)
        );
        assert_eq!(n.promote_uname, ["n2"]);
        assert!(n.promoted_uname.is_empty());
        assert_eq!(n.unpromoted_uname, ["n1", "n2"]);
        let bad = env(&[
            ("OCF_RESKEY_CRM_meta_notify_type", "during"),
            ("OCF_RESKEY_CRM_meta_notify_operation", "start"),
        ]);
        assert_eq!(bad.unwrap_err().status, Status::ErrConfigured);
    }

    #[test]
    fn clusterd_and_debug_flags() {
        let e = env(&[
            ("CLUSTERD_CONTROL", "/run/clusterd/control.sock"),
            ("HA_debug", "1"),
            ("HA_SBIN_DIR", "/x"),
        ])
        .unwrap();
        assert!(e.under_clusterd && e.debug);
        assert_eq!(e.ha_sbin_dir.as_deref(), Some("/x"));
    }
}

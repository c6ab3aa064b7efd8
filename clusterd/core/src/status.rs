//! The cluster status the scheduler reads: node states, transient node attributes, each
//! resource's operation history per node, and fail counts.
//!
//! The daemon owns one `ClusterStatus`, appends an [`OpRecord`] for every operation it runs
//! (with the agent's rc and the time), bumps fail counts on failures, and hands the whole to
//! [`crate::sched::schedule`]. Importing a Pacemaker CIB's `<status>` section fills the same model
//! (`node_state`, `transient_attributes`, `lrm_rsc_op`), so both answer the same question.
//!
//! History is keyed by *primitive id* and node: anonymous clone instances have no stable
//! number (as in Pacemaker's status section, where the `lrm_resource` id is the primitive id).
//! The current state of a resource on a node is derived from its history by [`derive_state`],
//! following Pacemaker's rules: operations are replayed in call-id order; success moves the
//! role; a failed start or monitor leaves the resource active but failed (it must be stopped
//! before it is started again); a failed stop blocks it; hard errors (rc 2–5) ban the node
//! and rc 6 (not configured) bans the resource everywhere.

use crate::cib::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OCF exit codes (OCF 1.1 + Pacemaker's degraded codes).
pub mod rc {
    pub const OK: i32 = 0;
    pub const ERR_GENERIC: i32 = 1;
    pub const ERR_ARGS: i32 = 2;
    pub const ERR_UNIMPLEMENTED: i32 = 3;
    pub const ERR_PERM: i32 = 4;
    pub const ERR_INSTALLED: i32 = 5;
    pub const ERR_CONFIGURED: i32 = 6;
    pub const NOT_RUNNING: i32 = 7;
    pub const RUNNING_PROMOTED: i32 = 8;
    pub const FAILED_PROMOTED: i32 = 9;
    pub const DEGRADED: i32 = 190;
    pub const DEGRADED_PROMOTED: i32 = 191;

    /// The OCF name of an exit code, as `pcs status` prints it.
    pub fn name(code: i32) -> &'static str {
        match code {
            OK => "ok",
            ERR_GENERIC => "error",
            ERR_ARGS => "invalid parameter",
            ERR_UNIMPLEMENTED => "unimplemented feature",
            ERR_PERM => "insufficient privileges",
            ERR_INSTALLED => "not installed",
            ERR_CONFIGURED => "not configured",
            NOT_RUNNING => "not running",
            RUNNING_PROMOTED => "promoted",
            FAILED_PROMOTED => "promoted (failed)",
            DEGRADED => "OCF_DEGRADED",
            DEGRADED_PROMOTED => "OCF_DEGRADED_PROMOTED",
            _ => "unknown error",
        }
    }
}

/// How an operation ended, independently of the agent's rc (Pacemaker's `op-status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// The agent ran to completion; `rc` says what it found.
    #[default]
    Done,
    /// Still running (recorded when it was started).
    Pending,
    /// A recurring monitor that was cancelled.
    Cancelled,
    /// Killed at its timeout; counts as a failure whatever `rc` says.
    Timeout,
    /// The agent could not be run (missing, not executable).
    Error,
}

/// One operation as it ran on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// `start`, `stop`, `monitor`, `promote`, `demote`, `notify`.
    pub op: String,
    #[serde(default)]
    pub interval_ms: u64,
    /// Per-node increasing call number: replay order.
    pub call_id: u64,
    pub rc: i32,
    #[serde(default)]
    pub status: OpStatus,
    /// Unix seconds when the result last changed (`last-rc-change`).
    #[serde(default)]
    pub last_rc_change_s: u64,
    #[serde(default)]
    pub exec_time_ms: u64,
    /// The agent's `ocf_exit_reason` message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// Pacemaker's `op-digest`: the digest of the parameters it ran with
    /// ([`crate::digest`]); `None` when whoever recorded it did not compute one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_digest: Option<String>,
    /// Present when the agent supports reload: which parameters force a restart, and their
    /// digest (Pacemaker's `op-force-restart` and `op-restart-digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadDigest>,
}

/// The reload half of an operation's digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadDigest {
    /// Parameters whose change needs a restart (all the others can be reloaded).
    pub force_restart: Vec<String>,
    /// Digest of those parameters as they were.
    pub restart_digest: String,
}

impl OpRecord {
    /// Did this operation fail (as Pacemaker judges it, expected results considered)?
    pub fn failed(&self) -> bool {
        match self.status {
            OpStatus::Timeout | OpStatus::Error => return true,
            OpStatus::Pending | OpStatus::Cancelled => return false,
            OpStatus::Done => {}
        }
        match self.op.as_str() {
            "monitor" if self.interval_ms == 0 => !matches!(
                self.rc,
                rc::OK
                    | rc::NOT_RUNNING
                    | rc::RUNNING_PROMOTED
                    | rc::DEGRADED
                    | rc::DEGRADED_PROMOTED
            ),
            "monitor" => !matches!(
                self.rc,
                rc::OK | rc::RUNNING_PROMOTED | rc::DEGRADED | rc::DEGRADED_PROMOTED
            ),
            "stop" => !matches!(self.rc, rc::OK | rc::NOT_RUNNING),
            _ => !matches!(self.rc, rc::OK | rc::DEGRADED | rc::DEGRADED_PROMOTED),
        }
    }

    /// Pacemaker's operation key, `RSC_OP_INTERVAL` without the resource.
    pub fn key(&self) -> String {
        format!("{}_{}", self.op, self.interval_ms)
    }
}

/// A fail count for one resource operation on one node
/// (Pacemaker's `fail-count-RSC#OP_INTERVAL` / `last-failure-RSC#OP_INTERVAL` attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailCount {
    pub rsc: String,
    pub op: String,
    pub interval_ms: u64,
    /// Saturates at INFINITY (1,000,000), which a failed start sets when
    /// `start-failure-is-fatal` is true.
    pub count: u32,
    pub last_failure_s: u64,
}

/// A node as the cluster sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Member of the cluster and running clusterd.
    pub online: bool,
    /// Transient attributes (cleared on reboot): promotion scores `master-RSC`, `standby` set
    /// with a reboot lifetime, user attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub fail_counts: Vec<FailCount>,
}

/// Everything the scheduler knows besides the configuration. The default is an empty cluster
/// that has quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub nodes: BTreeMap<String, NodeState>,
    /// Whether this partition has quorum (`no-quorum-policy` applies when it does not).
    #[serde(default = "yes")]
    pub has_quorum: bool,
    /// Operation history: primitive id → node → operations (any order; replayed by call id).
    #[serde(default)]
    pub history: BTreeMap<String, BTreeMap<String, Vec<OpRecord>>>,
    /// The node computing transitions, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for ClusterStatus {
    fn default() -> Self {
        ClusterStatus {
            nodes: BTreeMap::new(),
            has_quorum: true,
            history: BTreeMap::new(),
            dc: None,
        }
    }
}

/// The state of a resource on one node, derived from its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Stopped,
    /// Active in `role`; `failed` when the last failure has not been recovered (stop needed).
    Active {
        role: Role,
        failed: bool,
    },
    /// A stop failed: the resource is blocked on that node until cleanup (or fencing).
    StopFailed,
}

impl RunState {
    pub fn is_active(self) -> bool {
        !matches!(self, RunState::Stopped)
    }
}

/// What the history of one resource on one node says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedState {
    pub state: RunState,
    /// rc 2–5 outside a probe: the resource may not run on this node again until cleanup.
    pub hard_error: bool,
    /// rc 6: the resource may not run anywhere until cleanup.
    pub fatal_error: bool,
    /// rc 5 on a probe: the agent is not installed here.
    pub not_installed: bool,
    /// The recurring monitors known to be active (interval, role).
    pub active_monitors: Vec<u64>,
    /// The last failed operation, for `status` and `why`.
    pub last_failure: Option<OpRecord>,
    /// The resource has been probed (any completed operation) on this node.
    pub probed: bool,
}

/// Replays a resource's history on one node. `promotable` makes a plain start mean Unpromoted.
/// `now_s`/`failure_timeout_s`: a failure older than the timeout is expired and ignored for the
/// failed flag (Pacemaker: "failure-timeout ... the failure is ignored").
pub fn derive_state(
    ops: &[OpRecord],
    promotable: bool,
    now_s: u64,
    failure_timeout_s: u64,
) -> DerivedState {
    let started = if promotable {
        Role::Unpromoted
    } else {
        Role::Started
    };
    let mut sorted: Vec<&OpRecord> = ops.iter().collect();
    if !ops.is_sorted_by_key(|o| o.call_id) {
        sorted.sort_by_key(|o| o.call_id);
    }
    let mut state = RunState::Stopped;
    let mut out = DerivedState {
        state,
        hard_error: false,
        fatal_error: false,
        not_installed: false,
        active_monitors: Vec::new(),
        last_failure: None,
        probed: false,
    };
    let expired = |o: &OpRecord| {
        failure_timeout_s > 0 && now_s >= o.last_rc_change_s.saturating_add(failure_timeout_s)
    };
    for o in sorted {
        if matches!(o.status, OpStatus::Cancelled) {
            out.active_monitors.retain(|&i| i != o.interval_ms);
            continue;
        }
        if o.op == "notify" {
            continue;
        }
        if o.status == OpStatus::Pending {
            // An operation in flight: assume it will reach its goal (Pacemaker does the same).
            state = match o.op.as_str() {
                "start" => RunState::Active {
                    role: started,
                    failed: false,
                },
                "stop" => RunState::Stopped,
                "promote" => RunState::Active {
                    role: Role::Promoted,
                    failed: false,
                },
                "demote" => RunState::Active {
                    role: Role::Unpromoted,
                    failed: false,
                },
                _ => state,
            };
            continue;
        }
        out.probed = true;
        let role_now = match state {
            RunState::Active { role, .. } => role,
            _ => started,
        };
        if !o.failed() {
            state = match (o.op.as_str(), o.rc) {
                ("start", _) => RunState::Active {
                    role: started,
                    failed: false,
                },
                ("stop", _) => {
                    out.active_monitors.clear();
                    RunState::Stopped
                }
                ("promote", _) => RunState::Active {
                    role: Role::Promoted,
                    failed: false,
                },
                ("demote", _) => RunState::Active {
                    role: Role::Unpromoted,
                    failed: false,
                },
                ("monitor", rc::NOT_RUNNING) => RunState::Stopped,
                ("monitor", rc::RUNNING_PROMOTED | rc::DEGRADED_PROMOTED) => RunState::Active {
                    role: Role::Promoted,
                    failed: matches!(state, RunState::Active { failed: true, .. }),
                },
                ("monitor", _) => match state {
                    RunState::Active { role, failed } if o.interval_ms > 0 => {
                        RunState::Active { role, failed }
                    }
                    RunState::StopFailed => RunState::StopFailed,
                    _ => RunState::Active {
                        role: started,
                        failed: false,
                    },
                },
                _ => state,
            };
            if o.op == "monitor"
                && o.interval_ms > 0
                && !out.active_monitors.contains(&o.interval_ms)
            {
                out.active_monitors.push(o.interval_ms);
            }
            continue;
        }
        // A failure.
        let is_probe = o.op == "monitor" && o.interval_ms == 0;
        let ignore = expired(o);
        if !ignore {
            out.last_failure = Some(o.clone());
        }
        match o.rc {
            rc::ERR_CONFIGURED if o.status == OpStatus::Done => out.fatal_error = true,
            rc::ERR_INSTALLED if is_probe && o.status == OpStatus::Done => {
                out.not_installed = true;
                state = RunState::Stopped;
                continue;
            }
            rc::ERR_ARGS | rc::ERR_UNIMPLEMENTED | rc::ERR_PERM | rc::ERR_INSTALLED
                if o.status == OpStatus::Done =>
            {
                out.hard_error = true
            }
            _ => {}
        }
        state = match o.op.as_str() {
            "stop" => RunState::StopFailed,
            "promote" | "demote" => RunState::Active {
                role: Role::Promoted,
                failed: !ignore,
            },
            "monitor" if o.rc == rc::FAILED_PROMOTED => RunState::Active {
                role: Role::Promoted,
                failed: !ignore,
            },
            "monitor" if o.rc == rc::NOT_RUNNING && !ignore => RunState::Active {
                role: role_now,
                failed: true,
            },
            "monitor" if o.rc == rc::NOT_RUNNING => RunState::Stopped,
            _ => RunState::Active {
                role: role_now,
                failed: !ignore,
            },
        };
    }
    out.state = state;
    out
}

impl ClusterStatus {
    /// A status where every named node is online, with no history.
    pub fn all_online<S: AsRef<str>>(nodes: &[S]) -> ClusterStatus {
        ClusterStatus {
            nodes: nodes
                .iter()
                .map(|n| {
                    (
                        n.as_ref().to_string(),
                        NodeState {
                            online: true,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            has_quorum: true,
            history: BTreeMap::new(),
            dc: None,
        }
    }

    /// Appends an operation result.
    pub fn record(&mut self, rsc: &str, node: &str, op: OpRecord) {
        self.history
            .entry(rsc.to_string())
            .or_default()
            .entry(node.to_string())
            .or_default()
            .push(op);
    }

    /// The next call id for `node` (one more than any recorded there).
    pub fn next_call_id(&self, node: &str) -> u64 {
        self.history
            .values()
            .filter_map(|m| m.get(node))
            .flatten()
            .map(|o| o.call_id + 1)
            .max()
            .unwrap_or(1)
    }

    /// Adds one failure to the fail count of `rsc`'s `op` on `node` (INFINITY for `fatal`).
    pub fn record_failure(
        &mut self,
        node: &str,
        rsc: &str,
        op: &str,
        interval_ms: u64,
        now_s: u64,
        fatal: bool,
    ) {
        let st = self.nodes.entry(node.to_string()).or_default();
        let inf = u32::try_from(crate::score::INFINITY).expect("INFINITY fits");
        if let Some(fc) = st
            .fail_counts
            .iter_mut()
            .find(|f| f.rsc == rsc && f.op == op && f.interval_ms == interval_ms)
        {
            fc.count = if fatal {
                inf
            } else {
                fc.count.saturating_add(1).min(inf)
            };
            fc.last_failure_s = now_s;
        } else {
            st.fail_counts.push(FailCount {
                rsc: rsc.to_string(),
                op: op.to_string(),
                interval_ms,
                count: if fatal { inf } else { 1 },
                last_failure_s: now_s,
            });
        }
    }

    /// Total fail count of `rsc` on `node` over all its operations, ignoring those whose last
    /// failure is older than `failure_timeout_s` (0: never expire). Saturates at INFINITY.
    pub fn fail_count(&self, node: &str, rsc: &str, now_s: u64, failure_timeout_s: u64) -> u32 {
        let Some(st) = self.nodes.get(node) else {
            return 0;
        };
        let inf = u32::try_from(crate::score::INFINITY).expect("INFINITY fits");
        st.fail_counts
            .iter()
            .filter(|f| f.rsc == rsc)
            .filter(|f| {
                failure_timeout_s == 0 || now_s < f.last_failure_s.saturating_add(failure_timeout_s)
            })
            .fold(0u32, |acc, f| acc.saturating_add(f.count).min(inf))
    }

    /// `clusterctl resource cleanup [RSC] [--node N]`: forgets failures and history so the
    /// scheduler re-probes. `None` means every resource / every node.
    pub fn cleanup(&mut self, rsc: Option<&str>, node: Option<&str>) {
        for (n, st) in self.nodes.iter_mut() {
            if node.is_some_and(|x| x != n) {
                continue;
            }
            st.fail_counts.retain(|f| rsc.is_some_and(|r| r != f.rsc));
        }
        for (r, per_node) in self.history.iter_mut() {
            if rsc.is_some_and(|x| x != r) {
                continue;
            }
            for (n, ops) in per_node.iter_mut() {
                if node.is_some_and(|x| x != n) {
                    continue;
                }
                // Keep only what says where the resource runs: drop failed operations, then the
                // state is re-derived (and re-probed by the daemon if it wants certainty).
                let keep_state = derive_state(ops, false, 0, 0);
                ops.retain(|o| !o.failed());
                if matches!(keep_state.state, RunState::StopFailed) {
                    ops.clear();
                }
            }
            per_node.retain(|_, ops| !ops.is_empty());
        }
        self.history.retain(|_, m| !m.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: &str, interval_ms: u64, call_id: u64, rc: i32) -> OpRecord {
        OpRecord {
            op: op.into(),
            interval_ms,
            call_id,
            rc,
            status: OpStatus::Done,
            last_rc_change_s: 100,
            exec_time_ms: 1,
            exit_reason: None,
            op_digest: None,
            reload: None,
        }
    }

    #[test]
    fn start_then_monitor_is_started() {
        let d = derive_state(
            &[
                op("start", 0, 2, 0),
                op("monitor", 10_000, 3, 0),
                op("monitor", 0, 1, 7),
            ],
            false,
            200,
            0,
        );
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: false
            }
        );
        assert_eq!(d.active_monitors, vec![10_000]);
    }

    #[test]
    fn promotable_roles() {
        let d = derive_state(&[op("start", 0, 1, 0), op("promote", 0, 2, 0)], true, 0, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Promoted,
                failed: false
            }
        );
        let d = derive_state(&[op("monitor", 0, 1, 8)], true, 0, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Promoted,
                failed: false
            }
        );
        let d = derive_state(&[op("start", 0, 1, 0)], true, 0, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Unpromoted,
                failed: false
            }
        );
    }

    #[test]
    fn monitor_failure_marks_failed_and_expires() {
        let ops = [op("start", 0, 1, 0), op("monitor", 10_000, 2, 7)];
        let d = derive_state(&ops, false, 150, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: true
            }
        );
        let d = derive_state(&ops, false, 150, 60);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: true
            }
        );
        let d = derive_state(&ops, false, 161, 60);
        assert_eq!(d.state, RunState::Stopped);
    }

    #[test]
    fn stop_failure_blocks_and_hard_errors_ban() {
        let d = derive_state(&[op("start", 0, 1, 0), op("stop", 0, 2, 1)], false, 0, 0);
        assert_eq!(d.state, RunState::StopFailed);
        let d = derive_state(&[op("start", 0, 1, 5)], false, 0, 0);
        assert!(d.hard_error);
        let d = derive_state(&[op("monitor", 0, 1, 5)], false, 0, 0);
        assert!(d.not_installed && !d.hard_error);
        assert_eq!(d.state, RunState::Stopped);
        let d = derive_state(&[op("start", 0, 1, 6)], false, 0, 0);
        assert!(d.fatal_error);
    }

    #[test]
    fn fail_counts_expire() {
        let mut s = ClusterStatus::all_online(&["n1"]);
        s.record_failure("n1", "A", "monitor", 10_000, 100, false);
        s.record_failure("n1", "A", "monitor", 10_000, 110, false);
        assert_eq!(s.fail_count("n1", "A", 120, 0), 2);
        assert_eq!(s.fail_count("n1", "A", 120, 60), 2);
        assert_eq!(s.fail_count("n1", "A", 170, 60), 0);
        s.record_failure("n1", "A", "start", 0, 110, true);
        assert_eq!(s.fail_count("n1", "A", 120, 0), 1_000_000);
        s.cleanup(Some("A"), None);
        assert_eq!(s.fail_count("n1", "A", 120, 0), 0);
    }
}

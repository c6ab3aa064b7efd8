//! The transition: what the scheduler decided, as a graph of actions for the executors.
//!
//! Actions are listed in an order that respects every dependency (`after` only names actions
//! listed earlier), so an executor may simply run them in list order one at a time; a parallel
//! executor runs any action whose `after` actions all succeeded. When an action fails, the
//! executor stops starting new actions, records the failure in the status and asks for a new
//! transition (Pacemaker's "transition aborted").
//!
//! Each action carries what the executor needs to run the agent: the agent, its instance
//! parameters (`OCF_RESKEY_<name>`) and the `CRM_meta` values (`OCF_RESKEY_CRM_meta_<name>`:
//! `timeout`, `interval`, `clone`, `clone_max`, `notify_*`, ...), so the executor does not need
//! to interpret the CIB.

use crate::cib::{Agent, OrderAction, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Index of an action in [`Transition::actions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActionId(pub u32);

/// Pre- or post-notification around clone actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyPhase {
    Pre,
    Post,
}

impl NotifyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyPhase::Pre => "pre",
            NotifyPhase::Post => "post",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Stop,
    Start,
    Demote,
    Promote,
    /// Reload the agent's parameters in place (`reload-agent`, or `reload` for OCF 1.0
    /// agents): only reloadable parameters changed.
    Reload,
    /// `interval_ms == 0` is a probe (one-shot monitor); otherwise start a recurring monitor.
    Monitor {
        interval_ms: u64,
    },
    /// Cancel the recurring monitor of that interval (before a role change or a stop).
    Cancel {
        interval_ms: u64,
    },
    /// Forget the fail counts of the resource on the node: an operation that failed there was
    /// redefined since (Pacemaker's `clear_failcount`), so it gets a fresh start.
    ClearFailcount,
    /// Clone notification: `phase` of `op`, sent to an instance that has `notify=true`.
    Notify {
        phase: NotifyPhase,
        op: OrderAction,
    },
}

impl ActionKind {
    /// The OCF action the agent is called with.
    pub fn agent_action(self) -> &'static str {
        match self {
            ActionKind::Stop => "stop",
            ActionKind::Start => "start",
            ActionKind::Demote => "demote",
            ActionKind::Promote => "promote",
            ActionKind::Reload => "reload-agent",
            ActionKind::Monitor { .. } => "monitor",
            ActionKind::Cancel { .. } => "cancel",
            ActionKind::ClearFailcount => "clear_failcount",
            ActionKind::Notify { .. } => "notify",
        }
    }
    pub fn interval_ms(self) -> u64 {
        match self {
            ActionKind::Monitor { interval_ms } | ActionKind::Cancel { interval_ms } => interval_ms,
            _ => 0,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionKind::Monitor { interval_ms: 0 } => f.write_str("probe"),
            ActionKind::Monitor { interval_ms } => write!(f, "monitor_{interval_ms}"),
            ActionKind::Cancel { interval_ms } => write!(f, "cancel_monitor_{interval_ms}"),
            ActionKind::Notify { phase, op } => write!(f, "notify_{}_{}", phase.as_str(), op),
            k => f.write_str(k.agent_action()),
        }
    }
}

/// One action on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: ActionId,
    /// Instance name: the primitive id, or `PRIMITIVE:N` for clone instances (Pacemaker style).
    pub resource: String,
    /// The configured primitive (the status history key).
    pub primitive: String,
    pub kind: ActionKind,
    pub node: String,
    pub timeout_ms: u64,
    /// Actions that must have completed successfully first.
    pub after: Vec<ActionId>,
    pub agent: Agent,
    /// Instance attributes → `OCF_RESKEY_<name>`.
    pub params: BTreeMap<String, String>,
    /// Meta values → `OCF_RESKEY_CRM_meta_<name>` (`timeout`, `interval`, `clone`, `notify_*`).
    pub meta: BTreeMap<String, String>,
}

impl Action {
    /// `RSC_OP_INTERVAL on NODE`, as crm_simulate names actions.
    pub fn key(&self) -> String {
        format!(
            "{}_{}_{} {}",
            self.resource,
            self.kind.agent_action_key(),
            self.kind.interval_ms(),
            self.node
        )
    }
}

impl ActionKind {
    fn agent_action_key(self) -> String {
        match self {
            ActionKind::Notify { phase, op } => format!("{}_notify_{}", phase.as_str(), op),
            ActionKind::Cancel { .. } => "monitor_cancel".into(),
            k => k.agent_action().into(),
        }
    }
}

/// Where one resource (clone instances separately) is and will be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Instance name (`ClusterIP`, `mailData:0`).
    pub resource: String,
    pub primitive: String,
    /// Where it runs now, and in which role (`Stopped` with no node when it is not running).
    pub current_node: Option<String>,
    pub current_role: Role,
    /// Where it will run once the transition completed.
    pub node: Option<String>,
    pub role: Role,
    /// The resource is unmanaged (maintenance, `is-managed=false`) or blocked: no action touches it.
    #[serde(default)]
    pub unmanaged: bool,
    /// The resource is active but failed and will be recovered (stopped and started).
    #[serde(default)]
    pub failed: bool,
    /// Why it restarts or reloads where it is, when that is not a failure (Pacemaker's
    /// "due to resource definition change").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub actions: Vec<Action>,
    pub placements: Vec<Placement>,
}

impl Transition {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Actions a node executes, in list order.
    pub fn for_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions.iter().filter(move |a| a.node == node)
    }

    /// Checks the ordering invariant: every dependency names an earlier action.
    pub fn is_topologically_ordered(&self) -> bool {
        self.actions
            .iter()
            .enumerate()
            .all(|(i, a)| a.id.0 as usize == i && a.after.iter().all(|d| (d.0 as usize) < i))
    }

    /// Pacemaker-style transition summary lines, one per resource that changes:
    /// `Start      ClusterIP     ( hermes )`, `Move ... ( n1 -> n2 )`,
    /// `Promote    mailData:0    ( Unpromoted -> Promoted hermes )`, `Stop`, `Recover`,
    /// `Restart`, `Demote`.
    pub fn summary(&self) -> Vec<String> {
        crate::simulate::summary_lines(self)
    }
}

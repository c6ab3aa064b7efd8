//! The scheduler: a pure function from configuration + status + time to a transition.
//!
//! ```text
//! schedule(cib, status, now_s) ─► Sched::build   (unpack: nodes, resource tree, clone instances,
//!                                  │              current state from history, constraints,
//!                                  │              stickiness, failure bans)
//!                                  ├► assign_all  (placement and roles — see `assign`)
//!                                  └► build_transition (actions and their order — see `actions`)
//! ```
//! Everything is deterministic: the same inputs give the same transition, action for action.
//! Time enters only through `now_s` (failure-timeout expiry).

mod actions;
mod assign;
mod model;
pub mod rules;

pub use actions::Final;
pub use model::{Kind, Sched};

use crate::cib::Cib;
use crate::status::ClusterStatus;
use crate::transition::Transition;

/// Computes the transition for this configuration and status at time `now_s` (unix seconds).
pub fn schedule(cib: &Cib, status: &ClusterStatus, now_s: u64) -> Transition {
    analyse(cib, status, now_s).transition
}

/// The scheduler's full result: the transition plus the working state, for `why`.
pub struct Analysis<'a> {
    pub sched: Sched<'a>,
    pub transition: Transition,
    pub finals: Vec<Option<Final>>,
}

/// A start that placement chose but an order blocks (Pacemaker's "(blocked)" summary line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedStart {
    pub resource: String,
    pub node: String,
    pub role: crate::cib::Role,
    pub reason: String,
}

impl Analysis<'_> {
    /// Starts that cannot happen, with the node they would have used.
    pub fn blocked_starts(&self) -> Vec<BlockedStart> {
        let s = &self.sched;
        self.finals
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let f = f.as_ref()?;
                let n = f.blocked_on?;
                if s.rscs[i].current_node() == Some(n) {
                    return None;
                }
                Some(BlockedStart {
                    resource: s.rscs[i].id.clone(),
                    node: s.nodes[n].name.clone(),
                    role: f.blocked_role.unwrap_or(crate::cib::Role::Started),
                    reason: f
                        .reasons
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "an order".into()),
                })
            })
            .collect()
    }

    /// The transition summary, blocked starts included.
    pub fn summary(&self) -> Vec<String> {
        crate::simulate::summary_lines_with(&self.transition, &self.blocked_starts())
    }
}

/// Runs the scheduler and keeps its working state (node scores, bans) for explanations.
pub fn analyse<'a>(cib: &'a Cib, status: &'a ClusterStatus, now_s: u64) -> Analysis<'a> {
    let mut sched = Sched::build(cib, status, now_s);
    sched.assign_all();
    let (transition, finals) = sched.build_transition();
    debug_assert!(transition.is_topologically_ordered());
    Analysis {
        sched,
        transition,
        finals,
    }
}

//! Recording operation results into the cluster status, bounded as Pacemaker bounds its
//! `lrm_resource` entries.
//!
//! Per primitive and node the history keeps the latest record of each operation key
//! (`start_0`, `stop_0`, `monitor_0`, `monitor_10000`, ...) plus the latest failure (Pacemaker's
//! `RSC_last_failure_0`). Replaying that set by call id gives the same state as replaying every
//! operation ever run: a later record of the same key supersedes an earlier one, and the kept
//! failure keeps its own call id, so a recovery recorded after it wins. A recurring monitor
//! that keeps returning the same result updates its record in place (the call id does not
//! move; `exec_time_ms` does), so a monitor every second does not grow anything.

use clusterd_core::agent_meta::AgentMeta;
use clusterd_core::digest::DigestInput;
use clusterd_core::status::{ClusterStatus, OpRecord, OpStatus, ReloadDigest};

use crate::agent::OcfRc;
use crate::exec::{ExecStatus, OpRequest, OpResult};

/// The digests of an operation as Pacemaker's controller records them: `op-digest` of what
/// it ran with, and — for one-shot operations of an agent that can reload — the list of
/// parameters that force a restart with their digest ([`clusterd_core::digest`]).
pub fn digests_of(
    req: &OpRequest,
    meta: Option<&AgentMeta>,
) -> (Option<String>, Option<ReloadDigest>) {
    let input = DigestInput {
        params: &req.params,
        op_params: clusterd_core::digest::op_params(req.check_level),
        interval_ms: req.interval_ms,
        timeout_ms: req.timeout_ms,
    };
    let reload = meta
        .filter(|_| req.interval_ms == 0)
        .and_then(AgentMeta::force_restart)
        .map(|list| ReloadDigest {
            restart_digest: input.restart_digest(&list),
            force_restart: list,
        });
    (Some(input.op_digest()), reload)
}

/// Builds the record of a finished operation.
pub fn record_of(
    op: &str,
    interval_ms: u64,
    call_id: u64,
    result: &OpResult,
    now_s: u64,
    digests: (Option<String>, Option<ReloadDigest>),
) -> OpRecord {
    OpRecord {
        op: op.to_owned(),
        interval_ms,
        call_id,
        rc: result.rc.code(),
        status: match result.status {
            ExecStatus::Done => OpStatus::Done,
            ExecStatus::TimedOut => OpStatus::Timeout,
            ExecStatus::Error => OpStatus::Error,
        },
        last_rc_change_s: now_s,
        exec_time_ms: result.duration_ms,
        exit_reason: result.exit_reason.clone(),
        op_digest: digests.0,
        reload: digests.1,
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new call id was used.
    New,
    /// A repeated recurring-monitor result updated its record in place.
    Repeated,
}

/// Records `rec` for `primitive` on `node`, keeping the bounded set described above.
/// `rec.call_id` must come from [`ClusterStatus::next_call_id`] unless it repeats.
pub fn record(
    status: &mut ClusterStatus,
    primitive: &str,
    node: &str,
    mut rec: OpRecord,
) -> Recorded {
    let ops = status
        .history
        .entry(primitive.to_owned())
        .or_default()
        .entry(node.to_owned())
        .or_default();
    let key = rec.key();
    let same_key = |o: &OpRecord| o.key() == key && o.status != OpStatus::Cancelled;
    // A recurring monitor repeating its last result: update in place — but only while nothing
    // but recurring monitors happened since that result (after a stop and start, the monitor's
    // record must move past them, or replaying would lose it).
    let prev_id = ops.iter().filter(|o| same_key(o)).map(|o| o.call_id).max();
    let quiet_since = |id: u64| {
        ops.iter().all(|o| {
            o.call_id <= id
                || (o.op == "monitor" && o.interval_ms > 0 && o.status != OpStatus::Cancelled)
        })
    };
    if rec.interval_ms > 0
        && rec.op == "monitor"
        && !rec.failed()
        && let Some(id) = prev_id
        && quiet_since(id)
        && let Some(prev) = ops.iter_mut().find(|o| same_key(o) && o.call_id == id)
        && prev.rc == rec.rc
        && prev.status == rec.status
    {
        prev.exec_time_ms = rec.exec_time_ms;
        // A re-armed monitor (new parameters or timeout) repeating the same result still
        // records what it now runs with.
        prev.op_digest = rec.op_digest;
        return Recorded::Repeated;
    }
    if rec.status == OpStatus::Done && rec.rc == OcfRc::Success.code() {
        rec.exit_reason = rec.exit_reason.filter(|r| !r.is_empty());
    }
    // Drop superseded records of this key (and a cancel marker of it), keep the last failure.
    let keep_failure = ops
        .iter()
        .filter(|o| o.failed())
        .max_by_key(|o| o.call_id)
        .map(|o| o.call_id);
    let rec_failed = rec.failed();
    ops.retain(|o| {
        let superseded = o.key() == key;
        !superseded || (!rec_failed && Some(o.call_id) == keep_failure)
    });
    if rec_failed {
        // The new failure is now the last failure: earlier failures of other keys may go too.
        ops.retain(|o| !o.failed() || o.key() == key);
    }
    ops.push(rec);
    ops.sort_by_key(|o| o.call_id);
    Recorded::New
}

/// Records that the recurring monitor `interval_ms` was cancelled.
pub fn record_cancel(
    status: &mut ClusterStatus,
    primitive: &str,
    node: &str,
    interval_ms: u64,
    call_id: u64,
    now_s: u64,
) {
    let ops = status
        .history
        .entry(primitive.to_owned())
        .or_default()
        .entry(node.to_owned())
        .or_default();
    let keep_failure = ops
        .iter()
        .filter(|o| o.failed())
        .max_by_key(|o| o.call_id)
        .map(|o| o.call_id);
    ops.retain(|o| {
        !(o.op == "monitor" && o.interval_ms == interval_ms) || Some(o.call_id) == keep_failure
    });
    ops.push(OpRecord {
        op: "monitor".into(),
        interval_ms,
        call_id,
        rc: 0,
        status: OpStatus::Cancelled,
        last_rc_change_s: now_s,
        exec_time_ms: 0,
        exit_reason: None,
        op_digest: None,
        reload: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterd_core::cib::Role;
    use clusterd_core::status::{RunState, derive_state};

    fn rec(op: &str, interval_ms: u64, call_id: u64, rc: i32) -> OpRecord {
        OpRecord {
            op: op.into(),
            interval_ms,
            call_id,
            rc,
            status: OpStatus::Done,
            last_rc_change_s: call_id,
            exec_time_ms: 1,
            exit_reason: None,
            op_digest: None,
            reload: None,
        }
    }

    fn add(s: &mut ClusterStatus, op: &str, interval: u64, rc: i32) -> Recorded {
        let id = s.next_call_id("n1");
        record(s, "A", "n1", rec(op, interval, id, rc))
    }

    fn keys(s: &ClusterStatus) -> Vec<(String, u64, i32)> {
        s.history["A"]["n1"]
            .iter()
            .map(|o| (o.key(), o.call_id, o.rc))
            .collect()
    }

    #[test]
    fn repeated_monitors_do_not_grow_history() {
        let mut s = ClusterStatus::all_online(&["n1"]);
        add(&mut s, "monitor", 0, 7);
        add(&mut s, "start", 0, 0);
        assert_eq!(add(&mut s, "monitor", 10_000, 0), Recorded::New);
        for _ in 0..100 {
            assert_eq!(add(&mut s, "monitor", 10_000, 0), Recorded::Repeated);
        }
        assert_eq!(
            keys(&s),
            vec![
                ("monitor_0".into(), 1, 7),
                ("start_0".into(), 2, 0),
                ("monitor_10000".into(), 3, 0)
            ]
        );
    }

    #[test]
    fn failure_then_recovery_replays_like_the_full_history() {
        let mut s = ClusterStatus::all_online(&["n1"]);
        let mut full = Vec::new();
        for (op, i, rc) in [
            ("monitor", 0, 7),
            ("start", 0, 0),
            ("monitor", 10_000, 0),
            ("monitor", 10_000, 7),
        ] {
            add(&mut s, op, i, rc);
            full.push(s.history["A"]["n1"].last().unwrap().clone());
        }
        let d = derive_state(&s.history["A"]["n1"], false, 10, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: true
            }
        );
        // Recovery: cancel the monitor, stop, start, monitor again.
        let id = s.next_call_id("n1");
        record_cancel(&mut s, "A", "n1", 10_000, id, 5);
        add(&mut s, "stop", 0, 0);
        add(&mut s, "start", 0, 0);
        add(&mut s, "monitor", 10_000, 0);
        let d = derive_state(&s.history["A"]["n1"], false, 10, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: false
            }
        );
        assert_eq!(d.active_monitors, vec![10_000]);
        // The failure is still there to show in status, with its reason and rc.
        assert_eq!(
            d.last_failure.map(|f| (f.key(), f.rc)),
            Some(("monitor_10000".into(), 7))
        );
        assert_eq!(s.history["A"]["n1"].len(), 5, "{:?}", keys(&s));
    }

    /// Regression: a restart whose new monitor returned what the old one last returned must
    /// still show the monitor active after the start (it was updated in place, before the
    /// stop, and the scheduler re-armed it forever).
    #[test]
    fn monitor_after_a_restart_is_recorded_after_it() {
        let mut s = ClusterStatus::all_online(&["n1"]);
        add(&mut s, "start", 0, 0);
        add(&mut s, "monitor", 1_000, 0);
        add(&mut s, "stop", 0, 0);
        add(&mut s, "start", 0, 0);
        assert_eq!(add(&mut s, "monitor", 1_000, 0), Recorded::New);
        let d = derive_state(&s.history["A"]["n1"], false, 10, 0);
        assert_eq!(
            d.state,
            RunState::Active {
                role: Role::Started,
                failed: false
            }
        );
        assert_eq!(d.active_monitors, vec![1_000]);
        // A second monitor of another interval does not stop in-place updates.
        add(&mut s, "monitor", 2_000, 0);
        assert_eq!(add(&mut s, "monitor", 1_000, 0), Recorded::Repeated);
    }

    #[test]
    fn a_newer_failure_replaces_the_older_one() {
        let mut s = ClusterStatus::all_online(&["n1"]);
        add(&mut s, "start", 0, 0);
        add(&mut s, "monitor", 10_000, 1);
        add(&mut s, "stop", 0, 0);
        add(&mut s, "start", 0, 1);
        let failed: Vec<String> = s.history["A"]["n1"]
            .iter()
            .filter(|o| o.failed())
            .map(OpRecord::key)
            .collect();
        assert_eq!(failed, vec!["start_0"]);
    }
}

//! The local resource manager's bookkeeping: the queue of operations waiting for a slot, the
//! bound on agents running at once, one operation at a time per resource instance, and the
//! recurring monitors with their next due time.
//!
//! Everything here is plain data driven by the event loop; nothing here spawns or sleeps.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::exec::OpRequest;

/// Operations waiting for a slot. Transition actions are bounded by the transition's size and
/// probes by the number of primitives, so this bound is only reached by a configuration of
/// thousands of resources: at the bound, recurring monitor runs are skipped (they run at their
/// next interval) — transition actions and probes are always queued.
pub const MAX_QUEUED_OPS: usize = 4096;

/// Why an operation runs, so its result goes to the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Action `index` of the transition with sequence number `seq`.
    Transition {
        /// The transition's sequence number (a result of an older transition is recorded but
        /// does not drive the current one).
        seq: u64,
        /// Index in its action list.
        index: usize,
    },
    /// A run of a recurring monitor.
    Recurring,
    /// A probe run by the daemon (start-up, new resource, cleanup).
    Probe,
}

/// One operation, queued or running.
#[derive(Debug, Clone)]
pub struct Op {
    /// Identifies the completion event.
    pub token: u64,
    /// The configured primitive (history key).
    pub primitive: String,
    /// What to run (its `resource` is the instance name).
    pub req: OpRequest,
    /// Why.
    pub origin: Origin,
}

/// Queue, concurrency bound and per-instance serialisation.
#[derive(Debug)]
pub struct OpQueue {
    max_running: usize,
    queue: VecDeque<Op>,
    running: BTreeMap<u64, Op>,
    busy: BTreeSet<String>,
}

impl OpQueue {
    /// A queue that lets at most `max_running` agents run at once.
    pub fn new(max_running: usize) -> Self {
        assert!(max_running >= 1, "the executor needs at least one slot");
        OpQueue {
            max_running,
            queue: VecDeque::new(),
            running: BTreeMap::new(),
            busy: BTreeSet::new(),
        }
    }

    /// Queues `op`; a recurring run is refused (returns false) at [`MAX_QUEUED_OPS`].
    pub fn push(&mut self, op: Op) -> bool {
        if op.origin == Origin::Recurring && self.queue.len() >= MAX_QUEUED_OPS {
            return false;
        }
        self.queue.push_back(op);
        true
    }

    /// Takes the operations that may start now (FIFO, skipping busy instances), marking them
    /// running.
    pub fn start_ready(&mut self) -> Vec<Op> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && self.running.len() < self.max_running {
            if self.busy.contains(&self.queue[i].req.resource) {
                i += 1;
                continue;
            }
            let op = self.queue.remove(i).expect("index in range");
            self.busy.insert(op.req.resource.clone());
            self.running.insert(op.token, op.clone());
            out.push(op);
        }
        out
    }

    /// The running operation of `token`.
    pub fn running_op(&self, token: u64) -> Option<&Op> {
        self.running.get(&token)
    }

    /// Marks `token` finished and returns its operation.
    pub fn finish(&mut self, token: u64) -> Option<Op> {
        let op = self.running.remove(&token)?;
        self.busy.remove(&op.req.resource);
        Some(op)
    }

    /// Is an operation queued or running for `instance` with this action and interval?
    pub fn has(&self, instance: &str, action: crate::agent::Action, interval_ms: u64) -> bool {
        self.queue.iter().chain(self.running.values()).any(|o| {
            o.req.resource == instance && o.req.action == action && o.req.interval_ms == interval_ms
        })
    }

    /// Is anything of `origin`'s kind queued or running (for probes: are probes outstanding)?
    pub fn any(&self, pred: impl Fn(&Op) -> bool) -> bool {
        self.queue.iter().chain(self.running.values()).any(pred)
    }

    /// Drops queued (not running) recurring runs of `instance`.
    pub fn drop_queued_recurring(&mut self, instance: &str) {
        self.queue
            .retain(|o| !(o.origin == Origin::Recurring && o.req.resource == instance));
    }

    /// Number of agents running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Number of queued operations.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// A recurring monitor of one resource instance.
#[derive(Debug, Clone)]
pub struct Recurring {
    /// The configured primitive.
    pub primitive: String,
    /// The monitor request (interval > 0).
    pub req: OpRequest,
    /// When the next run is due (`None` while a run is queued or running).
    pub next_due: Option<Instant>,
    /// The result a healthy run returns: 0 (started/unpromoted) or 8 (promoted), learnt from
    /// the first run; a run returning the other one means the role changed behind our back.
    pub expected_rc: Option<i32>,
    /// After a failure the monitor stops running until the scheduler re-arms or cancels it,
    /// so one failure is counted once.
    pub suspended: bool,
}

/// The recurring monitors of this node, keyed by (instance, interval).
#[derive(Debug, Default)]
pub struct Monitors {
    map: BTreeMap<(String, u64), Recurring>,
}

impl Monitors {
    /// Arms (or re-arms) a monitor; its first run is due at once.
    pub fn arm(&mut self, primitive: &str, req: OpRequest, now: Instant) {
        let key = (req.resource.clone(), req.interval_ms);
        self.map.insert(
            key,
            Recurring {
                primitive: primitive.to_owned(),
                req,
                next_due: Some(now),
                expected_rc: None,
                suspended: false,
            },
        );
    }

    /// Cancels one monitor; true if it existed.
    pub fn cancel(&mut self, instance: &str, interval_ms: u64) -> bool {
        self.map
            .remove(&(instance.to_owned(), interval_ms))
            .is_some()
    }

    /// Cancels every monitor of `instance`; returns their intervals.
    pub fn cancel_all(&mut self, instance: &str) -> Vec<u64> {
        let keys: Vec<(String, u64)> = self
            .map
            .keys()
            .filter(|(i, _)| i == instance)
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                self.map.remove(&k);
                k.1
            })
            .collect()
    }

    /// The instances of `primitive` with a monitor of this interval armed.
    pub fn instances_of(&self, primitive: &str, interval_ms: u64) -> Vec<String> {
        self.map
            .iter()
            .filter(|((_, iv), r)| *iv == interval_ms && r.primitive == primitive)
            .map(|((i, _), _)| i.clone())
            .collect()
    }

    /// Cancels the monitors of every instance of `primitive`.
    pub fn cancel_primitive(&mut self, primitive: &str) {
        self.map.retain(|_, r| r.primitive != primitive);
    }

    /// The monitor, if armed.
    pub fn get_mut(&mut self, instance: &str, interval_ms: u64) -> Option<&mut Recurring> {
        self.map.get_mut(&(instance.to_owned(), interval_ms))
    }

    /// Monitors due at `now` (not suspended); their `next_due` is cleared.
    pub fn take_due(&mut self, now: Instant) -> Vec<Recurring> {
        let mut out = Vec::new();
        for r in self.map.values_mut() {
            if !r.suspended && r.next_due.is_some_and(|d| d <= now) {
                r.next_due = None;
                out.push(r.clone());
            }
        }
        out
    }

    /// Schedules the next run `interval` after `now` (a run finished or was skipped).
    pub fn reschedule(&mut self, instance: &str, interval_ms: u64, now: Instant) {
        if let Some(r) = self.get_mut(instance, interval_ms) {
            r.next_due = Some(now + Duration::from_millis(interval_ms));
        }
    }

    /// The earliest due time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.map
            .values()
            .filter(|r| !r.suspended)
            .filter_map(|r| r.next_due)
            .min()
    }

    /// All armed monitors (for status).
    pub fn iter(&self) -> impl Iterator<Item = &Recurring> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Action;

    fn op(token: u64, rsc: &str, origin: Origin) -> Op {
        Op {
            token,
            primitive: rsc.into(),
            req: OpRequest {
                resource: rsc.into(),
                agent: "ocf:heartbeat:Dummy".parse().unwrap(),
                action: Action::Monitor,
                interval_ms: 0,
                timeout_ms: 1000,
                params: Default::default(),
                meta: Default::default(),
                check_level: None,
            },
            origin,
        }
    }

    #[test]
    fn bound_and_per_instance_serialisation() {
        let mut q = OpQueue::new(2);
        q.push(op(1, "a", Origin::Probe));
        q.push(op(2, "a", Origin::Probe));
        q.push(op(3, "b", Origin::Probe));
        q.push(op(4, "c", Origin::Probe));
        let started: Vec<u64> = q.start_ready().iter().map(|o| o.token).collect();
        assert_eq!(
            started,
            vec![1, 3],
            "a's second op waits for the first; c waits for a slot"
        );
        assert!(q.start_ready().is_empty());
        q.finish(1);
        let started: Vec<u64> = q.start_ready().iter().map(|o| o.token).collect();
        assert_eq!(started, vec![2]);
        q.finish(3);
        assert_eq!(
            q.start_ready().iter().map(|o| o.token).collect::<Vec<_>>(),
            vec![4]
        );
        assert_eq!((q.running(), q.queued()), (2, 0));
    }

    #[test]
    fn recurring_runs_are_dropped_at_the_bound() {
        let mut q = OpQueue::new(1);
        for t in 0..MAX_QUEUED_OPS as u64 {
            assert!(q.push(op(t, "x", Origin::Probe)));
        }
        assert!(!q.push(op(99_999, "y", Origin::Recurring)));
        assert!(q.push(op(100_000, "y", Origin::Transition { seq: 1, index: 0 })));
    }

    /// Regression: a transition's cancel names the instance number it computed, which need
    /// not be the one the monitor was armed under; cancels go by primitive.
    #[test]
    fn monitors_are_found_by_primitive() {
        let t0 = Instant::now();
        let mut m = Monitors::default();
        let mut req = op(0, "S:1", Origin::Recurring).req;
        req.interval_ms = 1000;
        m.arm("S", req.clone(), t0);
        req.resource = "T:0".into();
        m.arm("T", req, t0);
        assert_eq!(m.instances_of("S", 1000), vec!["S:1".to_string()]);
        assert!(m.instances_of("S", 2000).is_empty());
    }

    #[test]
    fn monitors_come_due_and_reschedule() {
        let t0 = Instant::now();
        let mut m = Monitors::default();
        let mut req = op(0, "a", Origin::Recurring).req;
        req.interval_ms = 1000;
        m.arm("a", req, t0);
        assert_eq!(m.take_due(t0).len(), 1);
        assert!(m.take_due(t0).is_empty(), "not due again while it runs");
        assert_eq!(m.next_deadline(), None);
        m.reschedule("a", 1000, t0);
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(m.take_due(t0 + Duration::from_millis(999)).is_empty());
        m.get_mut("a", 1000).unwrap().suspended = true;
        assert!(m.take_due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(m.cancel_all("a"), vec![1000]);
    }
}

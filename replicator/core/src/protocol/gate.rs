//! The conflict gate: overlapping local disk operations run one after the other, in the order
//! they were submitted. Both nodes submit a given pair of overlapping writes in the same order
//! (the Primary's admission order, carried by the in-order connection), so a disk that reorders
//! concurrent writes can never leave the replicas different. Reads may share a range with other
//! reads; a read overlapping a write waits for it (so a fresh Primary never reads under a
//! replicated write still in flight, and resync and verify reads see a stable block).
//!
//! Every operation is at most [`MAX_OP_BYTES`] long, which bounds the search for overlaps.

use std::collections::{BTreeMap, VecDeque};

/// Longest operation the gate accepts (and so the longest client write).
pub const MAX_OP_BYTES: u64 = 8 << 20;

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads commute with reads.
    Read,
    /// Writes conflict with everything overlapping.
    Write,
}

#[derive(Debug, Clone)]
struct Op<T> {
    start: u64,
    end: u64,
    access: Access,
    token: T,
}

fn conflicts(a: (u64, u64, Access), b: (u64, u64, Access)) -> bool {
    a.0 < b.1 && b.0 < a.1 && !(a.2 == Access::Read && b.2 == Access::Read)
}

/// The gate; `T` is the caller's token for an operation.
#[derive(Debug, Clone)]
pub struct Gate<T> {
    /// Running operations by (start, unique id).
    active: BTreeMap<(u64, u64), (u64, Access)>,
    waiting: VecDeque<(u64, Op<T>)>,
    next: u64,
}

/// The handle of a running operation, to pass to [`Gate::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GateTicket(u64, u64);

impl<T> Default for Gate<T> {
    fn default() -> Self {
        Gate {
            active: BTreeMap::new(),
            waiting: VecDeque::new(),
            next: 0,
        }
    }
}

impl<T> Gate<T> {
    fn conflicts_active(&self, start: u64, end: u64, access: Access) -> bool {
        let lo = start.saturating_sub(MAX_OP_BYTES);
        self.active
            .range((lo, 0)..(end, 0))
            .any(|(&(s, _), &(e, a))| conflicts((s, e, a), (start, end, access)))
    }

    /// Submits an operation on `[start, start + len)`. Returns the token with its ticket if it
    /// may run now; otherwise it waits and comes back from a later [`Gate::complete`].
    pub fn submit(
        &mut self,
        start: u64,
        len: u64,
        access: Access,
        token: T,
    ) -> Option<(GateTicket, T)> {
        assert!(
            len > 0 && len <= MAX_OP_BYTES,
            "gate operation of {len} bytes"
        );
        let end = start + len;
        self.next += 1;
        let id = self.next;
        let blocked_by_waiting = self
            .waiting
            .iter()
            .any(|(_, w)| conflicts((w.start, w.end, w.access), (start, end, access)));
        if blocked_by_waiting || self.conflicts_active(start, end, access) {
            self.waiting.push_back((
                id,
                Op {
                    start,
                    end,
                    access,
                    token,
                },
            ));
            return None;
        }
        self.active.insert((start, id), (end, access));
        Some((GateTicket(start, id), token))
    }

    /// Ends a running operation; returns the waiting operations that may run now, in order.
    pub fn complete(&mut self, ticket: GateTicket) -> Vec<(GateTicket, T)> {
        self.active
            .remove(&(ticket.0, ticket.1))
            .expect("gate ticket completed twice");
        let mut ready = Vec::new();
        let mut still = VecDeque::with_capacity(self.waiting.len());
        while let Some((id, op)) = self.waiting.pop_front() {
            let blocked = still.iter().any(|(_, w): &(u64, Op<T>)| {
                conflicts((w.start, w.end, w.access), (op.start, op.end, op.access))
            }) || self.conflicts_active(op.start, op.end, op.access);
            if blocked {
                still.push_back((id, op));
            } else {
                self.active.insert((op.start, id), (op.end, op.access));
                ready.push((GateTicket(op.start, id), op.token));
            }
        }
        self.waiting = still;
        ready
    }

    /// Running plus waiting operations.
    pub fn len(&self) -> usize {
        self.active.len() + self.waiting.len()
    }

    /// Whether nothing runs or waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overlapping_writes_run_in_order() {
        let mut g = Gate::default();
        let (t1, _) = g.submit(0, 4096, Access::Write, 1).unwrap();
        assert!(g.submit(0, 8192, Access::Write, 2).is_none());
        // Does not overlap the running write but overlaps the waiting one: waits too.
        assert!(g.submit(4096, 4096, Access::Read, 3).is_none());
        let (t4, _) = g.submit(65536, 4096, Access::Write, 4).unwrap();
        let ready: Vec<i32> = g.complete(t1).into_iter().map(|(_, t)| t).collect();
        assert_eq!(ready, vec![2]);
        g.complete(t4);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn reads_share() {
        let mut g = Gate::default();
        g.submit(0, 4096, Access::Read, 1).unwrap();
        g.submit(0, 4096, Access::Read, 2).unwrap();
        assert!(g.submit(0, 512, Access::Write, 3).is_none());
    }

    proptest! {
        /// No two running operations conflict, and operations that conflict start in submission order.
        #[test]
        fn never_runs_conflicting_ops(ops in proptest::collection::vec((0u64..64, 1u64..16, any::<bool>(), any::<bool>()), 1..80)) {
            let mut g = Gate::default();
            let mut running: Vec<(GateTicket, usize)> = vec![];
            let mut started: Vec<usize> = vec![];
            let spec: Vec<(u64, u64, Access)> = ops.iter().map(|(s, l, w, _)| (s * 512, l * 512, if *w { Access::Write } else { Access::Read })).collect();
            let mut i = 0;
            while i < ops.len() || !running.is_empty() {
                let complete_now = i >= ops.len() || (ops[i].3 && !running.is_empty());
                if complete_now {
                    let (t, _) = running.remove(0);
                    for (t, k) in g.complete(t) { running.push((t, k)); started.push(k); }
                } else {
                    let (s, l, a) = spec[i];
                    if let Some((t, k)) = g.submit(s, l, a, i) { running.push((t, k)); started.push(k); }
                    i += 1;
                }
                for (x, (_, a)) in running.iter().enumerate() {
                    for (_, b) in &running[x + 1..] {
                        let (sa, la, aa) = spec[*a];
                        let (sb, lb, ab) = spec[*b];
                        prop_assert!(!conflicts((sa, sa + la, aa), (sb, sb + lb, ab)), "{a} and {b} run together");
                    }
                }
            }
            prop_assert_eq!(started.len(), ops.len());
            for (x, a) in started.iter().enumerate() {
                for b in &started[x + 1..] {
                    let (sa, la, aa) = spec[*a];
                    let (sb, lb, ab) = spec[*b];
                    if conflicts((sa, sa + la, aa), (sb, sb + lb, ab)) {
                        prop_assert!(a < b, "{b} started before {a}");
                    }
                }
            }
        }
    }
}

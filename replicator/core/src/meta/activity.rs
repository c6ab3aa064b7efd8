//! The activity log's on-disk table in memory, and the transactions that record its changes.
//!
//! **Which extents are hot is decided by the replication state machine** (`protocol::al`,
//! inside `protocol::Replica`, which keeps an extent hot until its writes are settled on both
//! nodes): replicatord encodes each `Output::AlUpdate` with [`ActivityLog::record`] and marks
//! it [`ActivityLog::committed`] once durable. That is the one hot-set authority.
//!
//! [`ActivityLog::begin`] / [`ActivityLog::end`] are a self-contained policy over the same table
//! (make extents hot before a write, LRU eviction of idle extents, wait when all are busy): the
//! crash oracle of `meta::tests` checks the on-disk format's recovery with it; the daemon does
//! not use them.

use std::collections::BTreeMap;

use super::AL_EXTENT_BYTES;
use super::al::{AlTransaction, CONTEXT_PER_TX_U32, MAX_UPDATES};

/// What a write must do before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// A transaction to write (to ring slot `seq % ring`) and flush before the write starts.
    pub transaction: Option<AlTransaction>,
    /// Extents leaving the log: their bitmap pages must be flushed before `transaction`.
    pub evicted: Vec<u32>,
    /// The write may start once every transaction up to this sequence is durable
    /// (0: immediately). Covers transactions of other writes that activated a shared extent.
    pub wait_for_seq: u64,
}

/// The in-memory activity log.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    md_uuid: u64,
    ring_slots: u32,
    table: Vec<Option<u32>>,
    slot_of: BTreeMap<u32, usize>,
    refs: Vec<u32>,
    last_use: Vec<u64>,
    /// Sequence of the transaction that put each slot's extent in; the slot's extent is
    /// durable once `durable_seq` reaches it.
    since: Vec<u64>,
    tick: u64,
    next_seq: u64,
    durable_seq: u64,
    ctx_next: u32,
}

/// The extents (first, last) touched by the byte range `[offset, offset + len)`.
pub fn extents_of(offset: u64, len: u64) -> Option<(u32, u32)> {
    if len == 0 {
        return None;
    }
    let first = u32::try_from(offset / AL_EXTENT_BYTES).ok()?;
    let last = u32::try_from((offset + len - 1) / AL_EXTENT_BYTES).ok()?;
    Some((first, last))
}

impl ActivityLog {
    /// An empty log of `table_size` slots whose next transaction has sequence `next_seq`.
    pub fn new(table_size: u32, ring_slots: u32, md_uuid: u64, next_seq: u64) -> Self {
        assert!(table_size >= 1 && next_seq >= 1);
        assert!(
            table_size <= super::layout::max_al_extents(ring_slots),
            "{table_size} extents need a bigger ring than {ring_slots} slots"
        );
        let n = table_size as usize;
        ActivityLog {
            md_uuid,
            ring_slots,
            table: vec![None; n],
            slot_of: BTreeMap::new(),
            refs: vec![0; n],
            last_use: vec![0; n],
            since: vec![0; n],
            tick: 0,
            next_seq,
            durable_seq: next_seq - 1,
            ctx_next: 0,
        }
    }

    /// Table size.
    pub fn table_size(&self) -> u32 {
        u32::try_from(self.table.len()).expect("table fits u32")
    }

    /// Ring slots.
    pub fn ring_slots(&self) -> u32 {
        self.ring_slots
    }

    /// The newest durable transaction.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Extents in the log, sorted.
    pub fn active(&self) -> Vec<u32> {
        self.slot_of.keys().copied().collect()
    }

    /// Writes in flight.
    pub fn in_flight(&self) -> u64 {
        self.refs.iter().map(|r| u64::from(*r)).sum()
    }

    /// Transactions describing the whole (current) table with no updates: written after
    /// `create-md` and at attach, so the ring always holds a complete description.
    pub fn full_context(&mut self) -> Vec<AlTransaction> {
        let mut out = Vec::new();
        self.ctx_next = 0;
        loop {
            out.push(self.transaction(Vec::new()));
            if self.ctx_next == 0 {
                return out;
            }
        }
    }

    fn transaction(&mut self, updates: Vec<(u32, Option<u32>)>) -> AlTransaction {
        let size = self.table_size();
        let start = self.ctx_next;
        let k = (size - start).min(CONTEXT_PER_TX_U32);
        let context = self.table[start as usize..(start + k) as usize].to_vec();
        self.ctx_next = (start + k) % size;
        let seq = self.next_seq;
        self.next_seq += 1;
        AlTransaction {
            seq,
            md_uuid: self.md_uuid,
            table_size: size,
            updates,
            context_start: start,
            context,
        }
    }

    /// Makes extents `first..=last` hot for one write. `None` when the log is full of extents
    /// with writes in flight (nothing was changed; call again after an [`Self::end`]).
    pub fn begin(&mut self, first: u32, last: u32) -> Option<Begin> {
        assert!(
            first <= last && ((last - first) as usize) < MAX_UPDATES,
            "a write of {} extents",
            last - first + 1
        );
        self.tick += 1;
        let wanted: Vec<u32> = (first..=last).collect();
        let missing: Vec<u32> = wanted
            .iter()
            .copied()
            .filter(|e| !self.slot_of.contains_key(e))
            .collect();
        // Candidate slots: free ones, then idle ones least recently used first.
        let mut candidates: Vec<usize> = (0..self.table.len())
            .filter(|s| self.table[*s].is_none())
            .collect();
        if candidates.len() < missing.len() {
            let mut idle: Vec<usize> = (0..self.table.len())
                .filter(|s| {
                    self.table[*s].is_some_and(|e| !wanted.contains(&e)) && self.refs[*s] == 0
                })
                .collect();
            idle.sort_by_key(|s| (self.last_use[*s], *s));
            candidates.extend(idle);
        }
        if candidates.len() < missing.len() {
            return None;
        }
        let mut wait = 0;
        for e in &wanted {
            if let Some(&s) = self.slot_of.get(e) {
                self.refs[s] += 1;
                self.last_use[s] = self.tick;
                wait = wait.max(self.since[s]);
            }
        }
        let mut updates = Vec::new();
        let mut evicted = Vec::new();
        for (e, s) in missing.iter().zip(candidates) {
            if let Some(old) = self.table[s].take() {
                self.slot_of.remove(&old);
                evicted.push(old);
            }
            self.table[s] = Some(*e);
            self.slot_of.insert(*e, s);
            self.refs[s] = 1;
            self.last_use[s] = self.tick;
            updates.push((u32::try_from(s).expect("slot fits u32"), Some(*e)));
        }
        let transaction = if updates.is_empty() {
            None
        } else {
            let slots: Vec<usize> = updates.iter().map(|(s, _)| *s as usize).collect();
            let t = self.transaction(updates);
            for s in slots {
                self.since[s] = t.seq;
            }
            wait = wait.max(t.seq);
            Some(t)
        };
        let wait_for_seq = if wait > self.durable_seq { wait } else { 0 };
        Some(Begin {
            transaction,
            evicted,
            wait_for_seq,
        })
    }

    /// The write to `first..=last` (begun with [`Self::begin`]) completed.
    pub fn end(&mut self, first: u32, last: u32) {
        for e in first..=last {
            let s = *self
                .slot_of
                .get(&e)
                .unwrap_or_else(|| panic!("end of a write to extent {e}, which is not in the log"));
            assert!(
                self.refs[s] > 0,
                "end of a write to extent {e} with no write in flight"
            );
            self.refs[s] -= 1;
        }
    }

    /// Records a change of the hot set decided elsewhere (the replication state machine keeps
    /// its own, `protocol::al`): `evict` leave the log, then `activate` enter it, as one
    /// transaction (`None` when nothing changes). The caller flushes the bitmap pages of the
    /// evicted extents before writing the transaction, as with [`Self::begin`]. Fails, changing
    /// nothing, when an activated extent finds no slot or the change exceeds one transaction.
    pub fn record(
        &mut self,
        activate: &[u32],
        evict: &[u32],
    ) -> Result<Option<AlTransaction>, String> {
        let new: Vec<u32> = activate
            .iter()
            .copied()
            .filter(|e| !self.slot_of.contains_key(e))
            .collect();
        let gone: Vec<u32> = evict
            .iter()
            .copied()
            .filter(|e| self.slot_of.contains_key(e) && !activate.contains(e))
            .collect();
        if new.len() + gone.len() > MAX_UPDATES {
            return Err(format!(
                "{} changes in one transaction (at most {MAX_UPDATES})",
                new.len() + gone.len()
            ));
        }
        let free = self.table.iter().filter(|s| s.is_none()).count() + gone.len();
        if free < new.len() {
            return Err(format!(
                "{} extents to activate, {free} free slots in a log of {}",
                new.len(),
                self.table.len()
            ));
        }
        if new.is_empty() && gone.is_empty() {
            return Ok(None);
        }
        self.tick += 1;
        let mut updates = Vec::new();
        for e in &gone {
            let s = self.slot_of.remove(e).expect("checked");
            self.table[s] = None;
            self.refs[s] = 0;
            updates.push((u32::try_from(s).expect("slot fits u32"), None));
        }
        for e in &new {
            let s = (0..self.table.len())
                .find(|s| self.table[*s].is_none())
                .expect("counted");
            self.table[s] = Some(*e);
            self.slot_of.insert(*e, s);
            self.last_use[s] = self.tick;
            updates.push((u32::try_from(s).expect("slot fits u32"), Some(*e)));
        }
        let t = self.transaction(updates);
        for e in &new {
            self.since[self.slot_of[e]] = t.seq;
        }
        Ok(Some(t))
    }

    /// Transactions up to `seq` are durable.
    pub fn committed(&mut self, seq: u64) {
        assert!(
            seq < self.next_seq,
            "commit of transaction {seq} never produced"
        );
        self.durable_seq = self.durable_seq.max(seq);
    }
}

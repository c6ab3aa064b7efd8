//! The activity log: the set of "hot" 4 MiB extents that may hold writes not yet known to be on
//! both disks. An extent is made hot (and that fact persisted, [`super::Output::AlUpdate`])
//! before a write to it is issued; it stays referenced until the write is *settled* — durable
//! locally and on the peer, or recorded in the bitmap. After a Primary crash only the hot extents
//! can differ between the nodes, so only they are marked out of sync and resynced. The set is
//! bounded by `al-extents` (DRBD default 1237); at the bound, the least recently used extent with
//! no unsettled write is evicted; if every extent is busy, the write waits (and a barrier is
//! issued so that writes settle and extents free up).

use std::collections::BTreeMap;

/// Bytes covered by one activity-log extent (DRBD: 4 MiB).
pub const AL_EXTENT_BYTES: u64 = 4 << 20;

/// The fewest extents the log holds: a request of [`super::gate::MAX_OP_BYTES`] (8 MiB) touches
/// at most 3 extents, and must always be able to get them (DRBD's own minimum is 7).
pub const AL_EXTENTS_MIN: u32 = 3;

/// DRBD's default `al-extents`.
pub const AL_EXTENTS_DEFAULT: u32 = 1237;

/// The extents touched by the byte range `[offset, offset + len)` (len > 0).
pub fn extents_of(offset: u64, len: u64) -> std::ops::RangeInclusive<u64> {
    let first = offset / AL_EXTENT_BYTES;
    let last = (offset + len.max(1) - 1) / AL_EXTENT_BYTES;
    first..=last
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    refs: u32,
    last_use: u64,
}

/// One persisted change of the hot set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlChange {
    /// Extents that became hot.
    pub activate: Vec<u64>,
    /// Extents that are no longer hot.
    pub evict: Vec<u64>,
}

impl AlChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.activate.is_empty() && self.evict.is_empty()
    }
}

/// The in-memory activity log.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    capacity: usize,
    hot: BTreeMap<u64, Slot>,
    clock: u64,
}

impl ActivityLog {
    /// An empty log of `capacity` extents, at least [`AL_EXTENTS_MIN`] so that the longest
    /// request always fits.
    pub fn new(capacity: u32) -> Self {
        ActivityLog {
            capacity: usize::try_from(capacity.max(AL_EXTENTS_MIN)).unwrap_or(usize::MAX),
            hot: BTreeMap::new(),
            clock: 0,
        }
    }

    /// A log restored from persisted hot extents (all unreferenced).
    pub fn restore(capacity: u32, extents: impl IntoIterator<Item = u64>) -> Self {
        let mut al = ActivityLog::new(capacity);
        for e in extents {
            al.clock += 1;
            al.hot.insert(
                e,
                Slot {
                    refs: 0,
                    last_use: al.clock,
                },
            );
        }
        al
    }

    /// Takes a reference on every extent of `extents`, making them hot. All or nothing: returns
    /// `None` (and changes nothing) if some extent cannot get a slot because every hot extent is
    /// referenced.
    pub fn begin(&mut self, extents: std::ops::RangeInclusive<u64>) -> Option<AlChange> {
        let missing: Vec<u64> = extents
            .clone()
            .filter(|e| !self.hot.contains_key(e))
            .collect();
        let free = self.capacity.saturating_sub(self.hot.len());
        let mut change = AlChange::default();
        if missing.len() > free {
            let need = missing.len() - free;
            let mut idle: Vec<(u64, u64)> = self
                .hot
                .iter()
                .filter(|(e, s)| s.refs == 0 && !extents.contains(e))
                .map(|(e, s)| (s.last_use, *e))
                .collect();
            if idle.len() < need {
                return None;
            }
            idle.sort_unstable();
            for (_, e) in idle.into_iter().take(need) {
                self.hot.remove(&e);
                change.evict.push(e);
            }
        }
        for e in extents {
            self.clock += 1;
            let clock = self.clock;
            let slot = self.hot.entry(e).or_insert_with(|| {
                change.activate.push(e);
                Slot {
                    refs: 0,
                    last_use: clock,
                }
            });
            slot.refs += 1;
            slot.last_use = clock;
        }
        Some(change)
    }

    /// Drops the references taken by [`ActivityLog::begin`] for `extents`.
    pub fn end(&mut self, extents: std::ops::RangeInclusive<u64>) {
        for e in extents {
            let slot = self
                .hot
                .get_mut(&e)
                .expect("activity-log end on an extent that is not hot");
            assert!(
                slot.refs > 0,
                "activity-log end on extent {e} without a reference"
            );
            slot.refs -= 1;
        }
    }

    /// Whether any extent is referenced.
    pub fn busy(&self) -> bool {
        self.hot.values().any(|s| s.refs > 0)
    }

    /// Evicts every unreferenced extent (after a clean demotion); returns the change.
    pub fn clear_idle(&mut self) -> AlChange {
        let evict: Vec<u64> = self
            .hot
            .iter()
            .filter(|(_, s)| s.refs == 0)
            .map(|(e, _)| *e)
            .collect();
        for e in &evict {
            self.hot.remove(e);
        }
        AlChange {
            activate: vec![],
            evict,
        }
    }

    /// The hot extents, ascending.
    pub fn hot(&self) -> impl Iterator<Item = u64> + '_ {
        self.hot.keys().copied()
    }

    /// Number of hot extents.
    pub fn len(&self) -> usize {
        self.hot.len()
    }

    /// Whether no extent is hot.
    pub fn is_empty(&self) -> bool {
        self.hot.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_cover_the_range() {
        assert_eq!(extents_of(0, 4096), 0..=0);
        assert_eq!(extents_of(AL_EXTENT_BYTES - 1, 2), 0..=1);
        assert_eq!(extents_of(3 * AL_EXTENT_BYTES, AL_EXTENT_BYTES), 3..=3);
    }

    #[test]
    fn evicts_least_recently_used_idle_extent() {
        let mut al = ActivityLog::new(3);
        assert_eq!(al.begin(0..=0).unwrap().activate, vec![0]);
        assert_eq!(al.begin(1..=1).unwrap().activate, vec![1]);
        assert_eq!(al.begin(9..=9).unwrap().activate, vec![9]);
        // All busy: no slot.
        assert_eq!(al.begin(2..=2), None);
        al.end(0..=0);
        al.end(1..=1);
        al.end(9..=9);
        // Re-using a hot extent changes nothing persistent.
        assert!(al.begin(1..=1).unwrap().is_empty());
        al.end(1..=1);
        let c = al.begin(2..=2).unwrap();
        assert_eq!((c.activate, c.evict), (vec![2], vec![0]));
        assert_eq!(al.hot().collect::<Vec<_>>(), vec![1, 2, 9]);
    }

    #[test]
    fn all_or_nothing() {
        let mut al = ActivityLog::new(3);
        al.begin(0..=1).unwrap();
        assert_eq!(al.begin(2..=3), None);
        assert_eq!(al.hot().collect::<Vec<_>>(), vec![0, 1]);
        al.end(0..=1);
        let c = al.begin(2..=3).unwrap();
        assert_eq!((c.activate, c.evict), (vec![2, 3], vec![0]));
        assert!(al.busy());
        al.end(2..=3);
        assert!(!al.busy());
        assert_eq!(al.clear_idle().evict, vec![1, 2, 3]);
        assert!(al.is_empty());
    }
}

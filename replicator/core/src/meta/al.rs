//! Activity-log transactions and their recovery.
//!
//! The activity log is a table of `al-extents` slots, each naming one hot 4 MiB extent (or
//! none). Every change to the table is first written as a transaction to the next slot of a
//! ring of 4 KiB records. A transaction carries the changes (`updates`) and a window of the
//! whole table (`context`), the window moving on with every transaction, so that the newest
//! `ceil(al-extents / CONTEXT_PER_TX)` transactions together describe every slot (DRBD's
//! scheme, drbd_actlog.c). The ring has one slot more than that, so a torn newest write still
//! leaves a complete description.
//!
//! ```text
//! off   size  field
//!    0     4  magic "TNAL"
//!    4     2  version (1)
//!    6     2  reserved (0)
//!    8     8  md_uuid
//!   16     8  seq (1, 2, 3, ...; ring slot = seq % ring slots)
//!   24     4  table size (al-extents)
//!   28     2  number of updates (<= 64)
//!   30     2  number of context entries (<= 885)
//!   32     4  first table slot of the context window
//!   36     4  reserved (0)
//!   40   512  updates: (table slot u32, extent u32) x 64, unused entries 0
//!  552  3540  context: extent u32 x 885 (0xFFFFFFFF = empty slot), unused entries 0
//! 4092     4  crc32 of bytes 0..4092
//! ```

use super::{BLOCK_LEN, Get, MetaError, Put, check_seal, seal};

/// The transaction magic.
pub const MAGIC: [u8; 4] = *b"TNAL";
/// The transaction version.
pub const VERSION: u16 = 1;
/// Most table changes in one transaction (one request touches at most this many extents;
/// NBD requests are far smaller than 64 × 4 MiB).
pub const MAX_UPDATES: usize = 64;
/// Table slots described by one transaction's context window.
pub const CONTEXT_PER_TX: usize = (BLOCK_LEN - 4 - UPDATES_OFF - MAX_UPDATES * 8) / 4;
/// [`CONTEXT_PER_TX`] as a table-slot count.
pub const CONTEXT_PER_TX_U32: u32 = 885;
const _: () = assert!(CONTEXT_PER_TX == CONTEXT_PER_TX_U32 as usize);
/// Largest table (DRBD's `al-extents` maximum).
pub const MAX_TABLE: u32 = 65534;
/// The on-disk marker of an empty table slot.
const EMPTY: u32 = u32::MAX;

const WHAT: &str = "activity-log transaction";
const UPDATES_OFF: usize = 40;
const CONTEXT_OFF: usize = UPDATES_OFF + MAX_UPDATES * 8;

/// One activity-log transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlTransaction {
    /// Sequence number (from 1).
    pub seq: u64,
    /// The meta-data it belongs to.
    pub md_uuid: u64,
    /// Table size (al-extents).
    pub table_size: u32,
    /// Table changes: (slot, new extent or `None` for freed).
    pub updates: Vec<(u32, Option<u32>)>,
    /// First table slot of `context`.
    pub context_start: u32,
    /// The table from `context_start` on, after `updates`.
    pub context: Vec<Option<u32>>,
}

fn put_extent(e: Option<u32>) -> u32 {
    let v = e.unwrap_or(EMPTY);
    assert!(e != Some(EMPTY), "extent number {EMPTY:#x} is reserved");
    v
}

fn get_extent(v: u32) -> Option<u32> {
    (v != EMPTY).then_some(v)
}

impl AlTransaction {
    /// The ring slot this transaction is written to.
    pub fn ring_slot(&self, ring_slots: u32) -> u32 {
        u32::try_from(self.seq % u64::from(ring_slots)).expect("below ring size")
    }

    /// Encodes into one 4 KiB block.
    pub fn encode(&self) -> [u8; BLOCK_LEN] {
        assert!(self.updates.len() <= MAX_UPDATES && self.context.len() <= CONTEXT_PER_TX);
        assert!(self.table_size >= 1 && self.table_size <= MAX_TABLE);
        assert!(self.context_start as usize + self.context.len() <= self.table_size as usize);
        let mut b = [0u8; BLOCK_LEN];
        let mut p = Put::new(&mut b);
        p.bytes(&MAGIC)
            .u16(VERSION)
            .u16(0)
            .u64(self.md_uuid)
            .u64(self.seq)
            .u32(self.table_size);
        p.u16(u16::try_from(self.updates.len()).expect("<= 64"));
        p.u16(u16::try_from(self.context.len()).expect("<= 885"));
        p.u32(self.context_start).u32(0);
        for (slot, e) in &self.updates {
            assert!(
                *slot < self.table_size,
                "update of slot {slot} in a table of {}",
                self.table_size
            );
            p.u32(*slot).u32(put_extent(*e));
        }
        let mut p = Put::new(&mut b[CONTEXT_OFF..]);
        for e in &self.context {
            p.u32(put_extent(*e));
        }
        seal(&mut b);
        b
    }

    /// Decodes a 4 KiB block, refusing anything an encoder would not have written or that
    /// belongs to other meta-data.
    pub fn decode(block: &[u8], md_uuid: u64) -> Result<AlTransaction, MetaError> {
        if block.len() != BLOCK_LEN {
            return Err(MetaError::Invalid {
                what: WHAT,
                detail: format!("block of {} bytes", block.len()),
            });
        }
        if block[..4] != MAGIC {
            return Err(MetaError::BadMagic { what: WHAT });
        }
        let mut g = Get::new(block);
        g.bytes(4);
        let version = g.u16();
        if version != VERSION {
            return Err(MetaError::Version {
                what: WHAT,
                found: u32::from(version),
                supported: u32::from(VERSION),
            });
        }
        check_seal(WHAT, block)?;
        let invalid = |detail: String| MetaError::Invalid { what: WHAT, detail };
        let r0 = g.u16();
        let uuid = g.u64();
        let seq = g.u64();
        let table_size = g.u32();
        let n_updates = usize::from(g.u16());
        let n_context = usize::from(g.u16());
        let context_start = g.u32();
        let r1 = g.u32();
        if uuid != md_uuid {
            return Err(invalid(format!(
                "transaction of other meta-data ({uuid:016x}, expected {md_uuid:016x})"
            )));
        }
        if r0 != 0 || r1 != 0 {
            return Err(invalid("reserved fields are not zero".into()));
        }
        if seq == 0 || table_size == 0 || table_size > MAX_TABLE {
            return Err(invalid(format!("seq {seq}, table of {table_size} slots")));
        }
        if n_updates > MAX_UPDATES
            || n_context > CONTEXT_PER_TX
            || context_start as usize + n_context > table_size as usize
        {
            return Err(invalid(format!(
                "{n_updates} updates, context {context_start}+{n_context} of {table_size}"
            )));
        }
        let mut updates = Vec::with_capacity(n_updates);
        for i in 0..MAX_UPDATES {
            let (slot, e) = (g.u32(), g.u32());
            if i < n_updates {
                if slot >= table_size {
                    return Err(invalid(format!(
                        "update of slot {slot} in a table of {table_size}"
                    )));
                }
                updates.push((slot, get_extent(e)));
            } else if slot != 0 || e != 0 {
                return Err(invalid("unused update entries are not zero".into()));
            }
        }
        let mut context = Vec::with_capacity(n_context);
        for i in 0..CONTEXT_PER_TX {
            let e = g.u32();
            if i < n_context {
                context.push(get_extent(e));
            } else if e != 0 {
                return Err(invalid("unused context entries are not zero".into()));
            }
        }
        Ok(AlTransaction {
            seq,
            md_uuid,
            table_size,
            updates,
            context_start,
            context,
        })
    }
}

/// What the activity log on disk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlRecovery {
    /// The extents in the table (sorted): writes to them may not have reached the peer.
    pub extents: Vec<u32>,
    /// Sequence of the newest valid transaction (0: none).
    pub last_seq: u64,
    /// Whether the chain of transactions described every table slot. When false the log
    /// cannot be trusted (corruption, or never initialised) and a crashed Primary needs a full
    /// resync.
    pub complete: bool,
    /// Ring slots that did not decode (a torn newest write leaves one).
    pub invalid_slots: u32,
}

/// Recovers the table from the ring: `slots[i]` is ring slot `i` decoded. Uses the chain of
/// consecutive sequence numbers ending at the newest valid transaction.
pub fn recover(slots: &[Result<AlTransaction, MetaError>]) -> AlRecovery {
    let n = slots.len() as u64;
    let invalid_slots =
        u32::try_from(slots.iter().filter(|s| s.is_err()).count()).expect("ring fits u32");
    let placed = |i: usize| -> Option<&AlTransaction> {
        match &slots[i] {
            Ok(t) if t.seq % n == i as u64 => Some(t),
            _ => None,
        }
    };
    let newest = (0..slots.len()).filter_map(placed).max_by_key(|t| t.seq);
    let Some(newest) = newest else {
        return AlRecovery {
            extents: Vec::new(),
            last_seq: 0,
            complete: false,
            invalid_slots,
        };
    };
    let size = newest.table_size;
    let mut chain = vec![newest];
    while chain.len() < slots.len() {
        let want = chain.last().expect("non-empty").seq - 1;
        if want == 0 {
            break;
        }
        match placed(usize::try_from(want % n).expect("small")) {
            Some(t) if t.seq == want && t.table_size == size => chain.push(t),
            _ => break,
        }
    }
    let mut table: Vec<Option<u32>> = vec![None; size as usize];
    let mut covered = vec![false; size as usize];
    for t in chain.iter().rev() {
        for (slot, e) in &t.updates {
            table[*slot as usize] = *e;
        }
        for (i, e) in t.context.iter().enumerate() {
            let s = t.context_start as usize + i;
            table[s] = *e;
            covered[s] = true;
        }
    }
    let mut extents: Vec<u32> = table.into_iter().flatten().collect();
    extents.sort_unstable();
    extents.dedup();
    AlRecovery {
        extents,
        last_seq: newest.seq,
        complete: covered.iter().all(|c| *c),
        invalid_slots,
    }
}

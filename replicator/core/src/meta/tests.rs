//! Meta-data tests: exact layouts, round trips, every corruption detected, and a crash
//! simulation of the activity log checked against what a crash may have left unreplicated.

use proptest::prelude::*;

use super::activity::extents_of;
use super::al::{self, AlTransaction, CONTEXT_PER_TX};
use super::bmpage::{self, BITS_PER_PAGE};
use super::layout::{self, INDEXED_SLOT_BYTES};
use super::superblock::{self, Flags, Superblock};
use super::*;
use crate::bitmap::Bitmap;
use crate::types::{GenerationIds, NodeId, Uuid};

const MIB: u64 = 1 << 20;

#[test]
fn internal_layout_fills_the_backing_file_exactly() {
    for backing in [
        64 * MIB,
        64 * MIB + 123,
        127 * MIB + 4096 * 7,
        10 << 30,
        3 << 40,
    ] {
        let l = Layout::compute(Placement::Internal, backing, 0, 8, None).unwrap();
        let end = backing & !4095;
        assert_eq!(l.data_bytes + l.meta_bytes, end, "{backing}");
        assert_eq!(l.meta_offset, l.data_bytes);
        assert_eq!(l.bm_offset, l.meta_offset);
        assert_eq!(l.sb_offsets, [end - 8192, end - 4096]);
        assert_eq!(l.al_offset + 8 * 4096, l.sb_offsets[0]);
        assert!(
            u64::from(l.bm_pages) * BITS_PER_PAGE * 4096 >= l.data_bytes,
            "bitmap covers the data"
        );
        assert!(
            l.bm_pages <= layout::bm_pages_for(l.data_bytes) + 1,
            "at most one spare page"
        );
        assert_eq!(
            Layout::superblock_offsets(Placement::Internal, backing),
            l.sb_offsets
        );
    }
    // 64 MiB: one bitmap page, 8 AL slots, 2 superblocks = 44 KiB of meta-data.
    let l = Layout::compute(Placement::Internal, 64 * MIB, 0, 8, None).unwrap();
    assert_eq!(
        (l.bm_pages, l.meta_bytes, l.data_bytes),
        (1, 44 * 1024, 64 * MIB - 44 * 1024)
    );
    // 1 TiB: about 32 MiB of bitmap, as DRBD.
    let l = Layout::compute(Placement::Internal, 1 << 40, 0, 8, None).unwrap();
    assert_eq!(l.bm_pages, 8257);
}

#[test]
fn external_and_indexed_layouts() {
    let l = Layout::compute(Placement::External { index: None }, 64 * MIB, MIB, 8, None).unwrap();
    assert_eq!(
        (l.data_bytes, l.sb_offsets, l.al_offset, l.bm_offset),
        (64 * MIB, [0, 4096], 8192, 8192 + 8 * 4096)
    );
    assert_eq!(l.meta_bytes, 44 * 1024);
    let e = Layout::compute(
        Placement::External { index: None },
        64 * MIB,
        40 * 1024,
        8,
        None,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the meta-data file has 40960 bytes; this volume needs 45056 (meta-data of 45056 bytes)"
    );
    let l = Layout::compute(
        Placement::External { index: Some(2) },
        64 * MIB,
        3 * INDEXED_SLOT_BYTES,
        8,
        None,
    )
    .unwrap();
    assert_eq!(
        l.sb_offsets,
        [2 * INDEXED_SLOT_BYTES, 2 * INDEXED_SLOT_BYTES + 4096]
    );
    assert!(
        Layout::compute(
            Placement::External { index: Some(2) },
            64 * MIB,
            2 * INDEXED_SLOT_BYTES,
            8,
            None
        )
        .is_err()
    );
    assert!(
        Layout::compute(
            Placement::External { index: Some(0) },
            5 << 40,
            1 << 30,
            8,
            None
        )
        .unwrap_err()
        .to_string()
        .contains("indexed meta-disk slot holds 128 MiB")
    );
    assert!(
        Layout::compute(Placement::Internal, 40 * 1024, 0, 8, None)
            .unwrap_err()
            .to_string()
            .contains("too small")
    );
    let l = Layout::compute(Placement::Internal, 64 * MIB, 0, 8, Some(32 * MIB + 100)).unwrap();
    assert_eq!(l.data_bytes, 32 * MIB);
    assert!(
        Layout::compute(Placement::Internal, 64 * MIB, 0, 8, Some(64 * MIB))
            .unwrap_err()
            .to_string()
            .contains("disk { size }")
    );
}

#[test]
fn al_ring_is_sized_for_the_table() {
    assert_eq!(CONTEXT_PER_TX, 885);
    assert_eq!(layout::al_slots_for(1237), 8);
    assert_eq!(layout::al_slots_for(6195), 8);
    assert_eq!(layout::al_slots_for(6196), 9);
    assert_eq!(layout::al_slots_for(65534), 76);
    assert_eq!(layout::max_al_extents(8), 6195);
    assert_eq!(layout::max_al_extents(76), 65534);
    assert_eq!(extents_of(0, 4096), Some((0, 0)));
    assert_eq!(extents_of(4 * MIB - 1, 2), Some((0, 1)));
    assert_eq!(extents_of(4 * MIB, 0), None);
}

fn sb_strategy() -> impl Strategy<Value = Superblock> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        0u8..32,
        0u8..3,
        any::<u32>(),
        1u64..(1 << 30),
        any::<[u64; 4]>(),
        8u32..80,
        any::<u32>(),
        proptest::option::of(0u8..32),
    )
        .prop_map(
            |(flags, seq, md_uuid, node, kind, index, blocks, uuids, al_slots, ext, peer)| {
                let max_data_bytes = blocks * 4096;
                let placement = match kind {
                    0 => Placement::Internal,
                    1 => Placement::External { index: None },
                    _ => Placement::External { index: Some(index) },
                };
                Superblock {
                    flags: Flags(flags & Flags::ALL),
                    seq,
                    md_uuid,
                    node_id: NodeId(node),
                    placement,
                    data_bytes: max_data_bytes - (blocks / 2) * 4096,
                    max_data_bytes,
                    gi: GenerationIds {
                        current: Uuid(uuids[0]),
                        bitmap: Uuid(uuids[1]),
                        history: [Uuid(uuids[2]), Uuid(uuids[3])],
                    },
                    al_slots,
                    al_extents: 1 + ext % layout::max_al_extents(al_slots),
                    bm_pages: layout::bm_pages_for(max_data_bytes),
                    peer_node_id: peer.map(NodeId),
                    al_offset: u64::from(al_slots) * 4096,
                    bm_offset: (u64::from(al_slots) + 2) * 4096,
                }
            },
        )
}

fn tx_strategy() -> impl Strategy<Value = AlTransaction> {
    (
        1u64..u64::MAX,
        any::<u64>(),
        1u32..=al::MAX_TABLE,
        proptest::collection::vec(
            (any::<u32>(), proptest::option::of(0u32..u32::MAX)),
            0..=al::MAX_UPDATES,
        ),
        any::<u32>(),
        proptest::collection::vec(proptest::option::of(0u32..u32::MAX), 0..=CONTEXT_PER_TX),
    )
        .prop_map(|(seq, md_uuid, size, updates, start, mut context)| {
            let updates = updates.into_iter().map(|(s, e)| (s % size, e)).collect();
            let start = start % size;
            context.truncate((size - start) as usize);
            AlTransaction {
                seq,
                md_uuid,
                table_size: size,
                updates,
                context_start: start,
                context,
            }
        })
}

proptest! {
    #[test]
    fn superblock_round_trips(sb in sb_strategy()) {
        prop_assert_eq!(Superblock::decode(&sb.encode()), Ok(sb));
    }

    /// Any change to any byte of a superblock is refused.
    #[test]
    fn superblock_corruption_is_detected(sb in sb_strategy(), at in 0usize..4096, x in 1u8..=255) {
        let mut b = sb.encode();
        b[at] ^= x;
        prop_assert!(Superblock::decode(&b).is_err());
    }

    #[test]
    fn al_transaction_round_trips(t in tx_strategy()) {
        prop_assert_eq!(AlTransaction::decode(&t.encode(), t.md_uuid), Ok(t));
    }

    /// Any change to any byte of a transaction, or another md_uuid, is refused.
    #[test]
    fn al_transaction_corruption_is_detected(t in tx_strategy(), at in 0usize..4096, x in 1u8..=255, other in any::<u64>()) {
        let mut b = t.encode();
        b[at] ^= x;
        prop_assert!(AlTransaction::decode(&b, t.md_uuid).is_err());
        if other != t.md_uuid {
            prop_assert!(AlTransaction::decode(&t.encode(), other).is_err());
        }
    }

    #[test]
    fn bitmap_pages_round_trip(blocks in 1u64..200_000, bits in proptest::collection::vec(any::<u64>(), 0..300), md_uuid in any::<u64>()) {
        let mut bm = Bitmap::new(blocks * 4096);
        for b in bits { bm.set(b % blocks); }
        let pages = layout::bm_pages_for(blocks * 4096);
        let decoded: Vec<Option<Vec<u64>>> = (0..pages)
            .map(|p| Some(bmpage::decode(&bmpage::encode(&bm, p, md_uuid), p, md_uuid, blocks).unwrap()))
            .collect();
        prop_assert_eq!(bmpage::assemble(decoded, blocks), bm);
    }

    /// Any change to any byte of a bitmap page, a page in the wrong place, or a page of other
    /// meta-data is refused.
    #[test]
    fn bitmap_page_corruption_is_detected(blocks in 1u64..100_000, bit in any::<u64>(), at in 0usize..4096, x in 1u8..=255) {
        let mut bm = Bitmap::new(blocks * 4096);
        bm.set(bit % blocks);
        let page = bmpage::page_of_block(bit % blocks);
        let mut b = bmpage::encode(&bm, page, 7);
        b[at] ^= x;
        prop_assert!(bmpage::decode(&b, page, 7, blocks).is_err());
        let good = bmpage::encode(&bm, page, 7);
        prop_assert!(bmpage::decode(&good, page + 1, 7, blocks).is_err());
        prop_assert!(bmpage::decode(&good, page, 8, blocks).is_err());
    }
}

#[test]
fn bits_past_the_end_are_refused_and_torn_pages_read_as_all_set() {
    let bm = Bitmap::new(100 * 4096);
    let mut b = bmpage::encode(&bm, 0, 1);
    b[100 / 8] |= 1 << (100 % 8); // bit 100 of a 100-block device
    super::seal(&mut b);
    assert!(
        bmpage::decode(&b, 0, 1, 100)
            .unwrap_err()
            .to_string()
            .contains("past the last block")
    );
    let blocks = BITS_PER_PAGE + 10;
    let assembled = bmpage::assemble(vec![Some(vec![0; bmpage::WORDS_PER_PAGE]), None], blocks);
    assert_eq!(
        assembled.count(),
        10,
        "the torn page's 10 real blocks come back set"
    );
    assert!(assembled.get(BITS_PER_PAGE) && !assembled.get(0));
}

fn sample_sb(seq: u64) -> Superblock {
    Superblock {
        flags: Flags(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE),
        seq,
        md_uuid: 42,
        node_id: NodeId(1),
        placement: Placement::Internal,
        data_bytes: 64 * MIB,
        max_data_bytes: 64 * MIB,
        gi: GenerationIds::just_created(),
        al_slots: 8,
        al_extents: 1237,
        bm_pages: 1,
        peer_node_id: None,
        al_offset: 8192,
        bm_offset: 40960,
    }
}

#[test]
fn the_newer_valid_superblock_wins_and_a_torn_one_falls_back() {
    let (s1, s2) = (sample_sb(1), sample_sb(2));
    assert_eq!(Superblock::slot_for_seq(1), 1);
    assert_eq!(Superblock::slot_for_seq(2), 0);
    let c = superblock::choose(Ok(s2), Ok(s1)).unwrap();
    assert_eq!((c.sb.seq, c.slot, c.other), (2, 0, None));
    // Writing seq 3 to slot 1 tears: slot 0 (seq 2) is used.
    let mut torn = sample_sb(3).encode();
    torn[2000] ^= 1;
    let c = superblock::choose(Ok(s2), Superblock::decode(&torn)).unwrap();
    assert_eq!(c.sb.seq, 2);
    assert!(matches!(c.other, Some(MetaError::Checksum { .. })));
    // Nothing there at all.
    let zero = [0u8; 4096];
    assert_eq!(
        superblock::choose(Superblock::decode(&zero), Superblock::decode(&zero)).unwrap_err(),
        MetaError::BadMagic { what: "superblock" }
    );
    // Slots of two different create-md runs are refused, not guessed between.
    let mut other = sample_sb(9);
    other.md_uuid = 43;
    assert!(superblock::choose(Ok(s1), Ok(other)).is_err());
}

#[test]
fn writes_to_extents_activated_by_a_pending_transaction_wait_for_it() {
    let mut al = ActivityLog::new(67, 8, 1, 1);
    let first = al.full_context();
    assert_eq!(first.len(), 1);
    for t in &first {
        al.committed(t.seq);
    }
    let b1 = al.begin(5, 5).unwrap();
    let t1 = b1.transaction.clone().unwrap();
    assert_eq!(
        (t1.seq, b1.wait_for_seq, &t1.updates[..]),
        (2, 2, &[(0, Some(5))][..])
    );
    let b2 = al.begin(5, 6).unwrap();
    let t2 = b2.transaction.clone().unwrap();
    assert_eq!(
        b2.wait_for_seq, 3,
        "waits for its own transaction (and the one that activated extent 5)"
    );
    al.committed(t2.seq);
    let b3 = al.begin(5, 5).unwrap();
    assert_eq!(
        (b3.transaction, b3.wait_for_seq),
        (None, 0),
        "hot and durable: no meta-data write"
    );
    al.end(5, 5);
    al.end(5, 6);
    al.end(5, 5);
    assert_eq!(al.active(), vec![5, 6]);
}

#[test]
fn a_full_log_of_busy_extents_refuses_until_a_write_ends() {
    let mut al = ActivityLog::new(2, 8, 1, 1);
    al.begin(0, 1).unwrap();
    assert!(al.begin(2, 2).is_none());
    al.end(0, 1);
    let b = al.begin(2, 2).unwrap();
    assert_eq!(b.evicted, vec![0], "least recently used idle extent leaves");
}

/// The crash oracle: random writes through the activity log with the bitmap flushed as the
/// daemon does (evicted extents before the transaction, everything now and then), and a crash
/// at a random point, possibly tearing the transaction being written. After recovery, every
/// extent that may hold writes whose bitmap bits never reached the disk must be in the
/// recovered log.
fn crash_run(seed: u64, table: u32, steps: usize) -> Result<(), String> {
    let ring = layout::al_slots_for(table).max(8);
    let md_uuid = 0xD00D;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut disk: Vec<Vec<u8>> = vec![vec![0u8; 4096]; ring as usize];
    let mut al = ActivityLog::new(table, ring, md_uuid, 1);
    for t in al.full_context() {
        disk[t.ring_slot(ring) as usize] = t.encode().to_vec();
        al.committed(t.seq);
    }
    let mut unflushed: std::collections::BTreeSet<u32> = Default::default();
    let mut in_flight: Vec<(u32, u32)> = Vec::new();
    let extents = table * 3;
    let crash_at = usize::try_from(next() % steps as u64).unwrap();
    for step in 0..steps {
        let crash = step == crash_at;
        match next() % 4 {
            0 | 1 => {
                let first = u32::try_from(next() % u64::from(extents)).unwrap();
                let last = (first + u32::try_from(next() % 2).unwrap()).min(extents - 1);
                let Some(b) = al.begin(first, last) else {
                    continue;
                };
                for e in &b.evicted {
                    unflushed.remove(e); // their bitmap pages are flushed first
                }
                if let Some(t) = &b.transaction {
                    let mut block = t.encode().to_vec();
                    if crash && next() % 2 == 0 {
                        let at = usize::try_from(next() % 4096).unwrap();
                        block[at] ^= 0x5A; // torn: the write never starts
                        disk[t.ring_slot(ring) as usize] = block;
                        break;
                    }
                    disk[t.ring_slot(ring) as usize] = block;
                    al.committed(t.seq);
                }
                // The write starts: its bits are set in memory only.
                for e in first..=last {
                    unflushed.insert(e);
                }
                in_flight.push((first, last));
            }
            2 => {
                if !in_flight.is_empty() {
                    let i = usize::try_from(next() % in_flight.len() as u64).unwrap();
                    let (f, l) = in_flight.swap_remove(i);
                    al.end(f, l);
                }
            }
            _ => {
                if next() % 8 == 0 {
                    unflushed.clear(); // periodic flush of all dirty bitmap pages
                }
            }
        }
        if crash {
            break;
        }
    }
    let slots: Vec<Result<AlTransaction, MetaError>> = disk
        .iter()
        .map(|b| AlTransaction::decode(b, md_uuid))
        .collect();
    let rec = al::recover(&slots);
    if !rec.complete {
        return Err(format!("seed {seed}: recovery incomplete: {rec:?}"));
    }
    let missing: Vec<u32> = unflushed
        .iter()
        .copied()
        .filter(|e| rec.extents.binary_search(e).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "seed {seed}: extents {missing:?} may hold unreplicated writes but are not in the recovered log {:?}",
            rec.extents
        ));
    }
    Ok(())
}

#[test]
fn crash_simulation_never_loses_an_unflushed_extent() {
    // Small tables force evictions; 1237 (the default) spans two transactions of context.
    for seed in 1..250u64 {
        for table in [1, 2, 5, 67, 1237] {
            crash_run(seed * 7919 + u64::from(table), table, 300).unwrap();
        }
    }
}

#[test]
fn changes_decided_elsewhere_are_recorded_and_recovered() {
    let mut al = ActivityLog::new(67, 8, 9, 1);
    let mut ring: Vec<Result<AlTransaction, MetaError>> = (0..8)
        .map(|_| Err(MetaError::BadMagic { what: "x" }))
        .collect();
    let mut put = |t: AlTransaction| {
        let slot = t.ring_slot(8) as usize;
        ring[slot] = AlTransaction::decode(&t.encode(), 9);
    };
    for t in al.full_context() {
        put(t);
    }
    put(al.record(&[3, 4, 5], &[]).unwrap().unwrap());
    put(al.record(&[6], &[4]).unwrap().unwrap());
    assert_eq!(
        al.record(&[3], &[]).unwrap(),
        None,
        "already hot: nothing to write"
    );
    assert_eq!(al.active(), vec![3, 5, 6]);
    let rec = al::recover(&ring);
    assert!(rec.complete);
    assert_eq!(rec.extents, vec![3, 5, 6]);
    let too_many: Vec<u32> = (100..200).collect();
    assert!(al.record(&too_many, &[]).is_err());
    assert_eq!(
        al.active(),
        vec![3, 5, 6],
        "a refused change changes nothing"
    );
}

#[test]
fn recovery_of_an_uninitialised_ring_is_incomplete() {
    let slots: Vec<Result<AlTransaction, MetaError>> = (0..8)
        .map(|_| AlTransaction::decode(&[0u8; 4096], 1))
        .collect();
    let rec = al::recover(&slots);
    assert_eq!(
        (rec.complete, rec.last_seq, rec.invalid_slots),
        (false, 0, 8)
    );
}

/// The combination replicatord runs: the replication machine's hot set (`protocol::al`)
/// decides, `ActivityLog::record` writes each change; evicted extents' bitmap pages are flushed
/// before the transaction that drops them (a sync point). A crash at any point, possibly tearing
/// the transaction being written, must recover every extent whose writes may be unreplicated.
fn record_crash_run(seed: u64, table: u32, steps: usize) -> Result<(), String> {
    use crate::protocol::al::ActivityLog as HotSet;
    let ring = layout::al_slots_for(table).max(8);
    let md_uuid = 0xBEEF;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut disk: Vec<Vec<u8>> = vec![vec![0u8; 4096]; ring as usize];
    let mut table_log = ActivityLog::new(table, ring, md_uuid, 1);
    for t in table_log.full_context() {
        disk[t.ring_slot(ring) as usize] = t.encode().to_vec();
        table_log.committed(t.seq);
    }
    let mut hot = HotSet::new(table);
    let mut unflushed: std::collections::BTreeSet<u32> = Default::default();
    let mut in_flight: Vec<std::ops::RangeInclusive<u64>> = Vec::new();
    let extents = u64::from(table) * 3;
    let crash_at = usize::try_from(next() % steps as u64).unwrap();
    for step in 0..steps {
        let crash = step == crash_at;
        match next() % 4 {
            0 | 1 => {
                let first = next() % extents;
                let last = (first + next() % 2).min(extents - 1);
                let Some(change) = hot.begin(first..=last) else {
                    continue;
                };
                for e in &change.evict {
                    unflushed.remove(&u32::try_from(*e).unwrap()); // pages flushed first
                }
                let act: Vec<u32> = change
                    .activate
                    .iter()
                    .map(|e| u32::try_from(*e).unwrap())
                    .collect();
                let ev: Vec<u32> = change
                    .evict
                    .iter()
                    .map(|e| u32::try_from(*e).unwrap())
                    .collect();
                if let Some(t) = table_log
                    .record(&act, &ev)
                    .map_err(|e| format!("seed {seed}: {e}"))?
                {
                    let mut block = t.encode().to_vec();
                    if crash && next() % 2 == 0 {
                        let at = usize::try_from(next() % 4096).unwrap();
                        block[at] ^= 0x5A; // torn: the write never starts
                        disk[t.ring_slot(ring) as usize] = block;
                        break;
                    }
                    disk[t.ring_slot(ring) as usize] = block;
                    table_log.committed(t.seq);
                }
                for e in first..=last {
                    unflushed.insert(u32::try_from(e).unwrap());
                }
                in_flight.push(first..=last);
            }
            2 => {
                if !in_flight.is_empty() {
                    let i = usize::try_from(next() % in_flight.len() as u64).unwrap();
                    hot.end(in_flight.swap_remove(i));
                }
            }
            _ => {
                if next() % 8 == 0 {
                    unflushed.clear();
                }
            }
        }
        if crash {
            break;
        }
    }
    let slots: Vec<Result<AlTransaction, MetaError>> = disk
        .iter()
        .map(|b| AlTransaction::decode(b, md_uuid))
        .collect();
    let rec = al::recover(&slots);
    if !rec.complete {
        return Err(format!("seed {seed}: recovery incomplete: {rec:?}"));
    }
    let missing: Vec<u32> = unflushed
        .iter()
        .copied()
        .filter(|e| rec.extents.binary_search(e).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "seed {seed}: extents {missing:?} may hold unreplicated writes but are not in the recovered log {:?}",
            rec.extents
        ));
    }
    Ok(())
}

#[test]
fn the_machines_hot_set_recorded_survives_a_crash_at_any_point() {
    for seed in 1..200u64 {
        for table in [3, 5, 67, 1237] {
            record_crash_run(seed * 6151 + u64::from(table), table, 300).unwrap();
        }
    }
}

//! How the generation identifiers change, as DRBD 8.4 changes them (drbd_main.c:
//! `drbd_uuid_new_current`, `drbd_uuid_set_bm`, `drbd_gen_and_send_sync_uuid`,
//! drbd_worker.c: `drbd_resync_finished`).
//!
//! - **New current UUID** when a Primary loses its peer, when a node is promoted without a peer
//!   in sync, and on `primary --force`: the old current becomes the bitmap UUID (the bitmap now
//!   counts changes relative to it). Only if no bitmap UUID is set yet: an existing one already
//!   names the generation the peer has.
//! - **Sync UUID** when a resync starts: the source's bitmap UUID plus [`UUID_NEW_BM_OFFSET`] (or a
//!   fresh one); the target takes it as its current UUID, so an interrupted resync is recognised
//!   and resumed by bitmap at the next handshake.
//! - **Resync finished**: the source's bitmap UUID moves to history; the target takes the
//!   source's UUIDs. Both then hold identical identifiers.

use crate::types::{GenerationIds, HISTORY_UUIDS, Uuid};

/// What DRBD adds to a bitmap UUID to make the sync UUID.
pub const UUID_NEW_BM_OFFSET: u64 = 0x0001_0000_0000_0000;

/// Sets or clears DRBD's Primary flag (bit 0) on the current UUID.
pub fn with_primary_flag(mut ids: GenerationIds, primary: bool) -> GenerationIds {
    ids.current = Uuid(if primary {
        ids.current.0 | 1
    } else {
        ids.current.0 & !1
    });
    ids
}

/// A new current UUID (`fresh` from the driver's randomness): the old current becomes the
/// bitmap UUID. Panics if a bitmap UUID is already set (the caller checks [`needs_new_current`]).
pub fn new_current(ids: GenerationIds, fresh: u64, primary: bool) -> GenerationIds {
    assert!(
        ids.bitmap.is_none(),
        "new current UUID while bitmap UUID {} is set",
        ids.bitmap
    );
    let mut fresh = fresh & !1;
    if fresh == 0 || fresh == Uuid::JUST_CREATED.value() {
        fresh = 0x5EED_0000_0000_0000;
    }
    let next = GenerationIds {
        current: Uuid(fresh),
        bitmap: ids.current,
        history: ids.history,
    };
    with_primary_flag(next, primary)
}

/// Whether a new current UUID is due (no bitmap UUID tracks changes yet).
pub fn needs_new_current(ids: &GenerationIds) -> bool {
    ids.bitmap.is_none()
}

/// Moves the bitmap UUID to the front of the history and clears it (`drbd_uuid_set_bm(0)`).
pub fn rotate_bitmap_to_history(mut ids: GenerationIds) -> GenerationIds {
    if ids.bitmap.is_none() {
        return ids;
    }
    for i in (1..HISTORY_UUIDS).rev() {
        ids.history[i] = ids.history[i - 1];
    }
    ids.history[0] = Uuid(ids.bitmap.value());
    ids.bitmap = Uuid::NONE;
    ids
}

/// The sync UUID a SyncSource generates at resync start, and the source's identifiers after it.
pub fn start_sync_as_source(ids: GenerationIds, fresh: u64) -> (Uuid, GenerationIds) {
    let bm = ids.bitmap.value();
    let sync = if bm != 0 && bm != Uuid::JUST_CREATED.value() {
        Uuid(bm.wrapping_add(UUID_NEW_BM_OFFSET) & !1)
    } else {
        let f = fresh & !1;
        Uuid(if f == 0 || f == Uuid::JUST_CREATED.value() {
            0x5EED_0000_0000_0002
        } else {
            f
        })
    };
    // Like DRBD's `drbd_uuid_set(UI_BITMAP)`: a replaced bitmap UUID moves into the history, so
    // that a lost SyncUuid can be recognised (handshake rules 51 and 71).
    let mut next = ids;
    if !ids.bitmap.is_none() && ids.bitmap.value() != Uuid::JUST_CREATED.value() {
        for i in (1..HISTORY_UUIDS).rev() {
            next.history[i] = next.history[i - 1];
        }
        next.history[0] = Uuid(bm);
    }
    next.bitmap = sync;
    (sync, next)
}

/// The target's identifiers once it accepted the sync UUID: current = sync UUID, no bitmap.
pub fn start_sync_as_target(ids: GenerationIds, sync: Uuid) -> GenerationIds {
    GenerationIds {
        current: Uuid(sync.value()),
        bitmap: Uuid::NONE,
        history: ids.history,
    }
}

/// The source's identifiers once the resync completed.
pub fn finish_sync_as_source(ids: GenerationIds) -> GenerationIds {
    rotate_bitmap_to_history(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: u64, b: u64, h0: u64, h1: u64) -> GenerationIds {
        GenerationIds {
            current: Uuid(c),
            bitmap: Uuid(b),
            history: [Uuid(h0), Uuid(h1)],
        }
    }

    #[test]
    fn new_current_moves_current_to_bitmap() {
        let after = new_current(ids(0xA0, 0, 0x90, 0x80), 0xB0, true);
        assert_eq!(after, ids(0xB1, 0xA0, 0x90, 0x80));
        let after = new_current(ids(0xA1, 0, 0, 0), 0xB1, false);
        assert_eq!(after, ids(0xB0, 0xA1, 0, 0));
    }

    #[test]
    #[should_panic(expected = "bitmap UUID")]
    fn new_current_refuses_when_bitmap_set() {
        new_current(ids(0xA0, 0x70, 0, 0), 0xB0, true);
    }

    #[test]
    fn resync_round_trip_leaves_both_sides_equal() {
        let source = ids(0xB0, 0xA0, 0x90, 0x80);
        let target = ids(0xA0, 0, 0x90, 0x80);
        let (sync, source) = start_sync_as_source(source, 0);
        assert_eq!(sync, Uuid(0xA0 + UUID_NEW_BM_OFFSET));
        assert_eq!(source.bitmap, sync);
        let target = start_sync_as_target(target, sync);
        assert_eq!(target.current, sync);
        assert_eq!(source.history, [Uuid(0xA0), Uuid(0x90)]);
        let source = finish_sync_as_source(source);
        assert_eq!(source, ids(0xB0, 0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0));
    }

    #[test]
    fn sync_uuid_is_fresh_after_just_created() {
        let (sync, after) = start_sync_as_source(ids(0xB0, 4, 0, 0), 0x1234);
        assert_eq!(sync, Uuid(0x1234));
        assert_eq!(after.bitmap, Uuid(0x1234));
    }
}

//! The bitmap exchange and the resync, source-driven: the SyncSource walks its bitmap (the
//! union of both nodes' bitmaps), reads runs of out-of-sync blocks through the gate, sends them
//! as `RsData`, and closes batches with `RsBarrier`. The target writes them, flushes at each
//! barrier, clears the covered bits and answers `RsBarrierAck`; only then does the source clear
//! its bits. Bits are therefore cleared only for blocks durable on the target, and an
//! interrupted resync resumes from the bitmap that is left (the target's current UUID is the
//! sync UUID, which the next handshake recognises).
//!
//! Bounds: the bytes sent and not yet acknowledged stay under `resync_window_bytes`; each step
//! ([`crate::protocol::rate::STEP`]) the rate controller grants a budget of sectors.

use super::*;
use crate::bitmap::BLOCK_SIZE;
use crate::protocol::bitmap_xfer::{self, BitmapRun};
use crate::protocol::gate::Access;
use crate::protocol::handshake::SyncDirection;
use crate::protocol::rate::STEP;
use crate::protocol::uuids;
use crate::types::Uuid;
use crate::wire::Message;

const SECTORS_PER_BLOCK: u64 = BLOCK_SIZE / 512;

/// Runs of blocks: (first block, count).
pub(super) type BlockRuns = Vec<(u64, u64)>;

/// The SyncSource's progress.
#[derive(Debug, Clone)]
pub struct SourceSync {
    /// Full sync.
    pub full: bool,
    /// Out-of-sync blocks at the start.
    pub total_blocks: u64,
    /// Blocks confirmed durable on the target.
    pub done_blocks: u64,
    /// When it started.
    pub started: Time,
    cursor: u64,
    batch: Vec<(u64, u64)>,
    batch_bytes: u64,
    /// Batches sent and not yet acknowledged: (barrier seq, block runs, bytes).
    unacked: VecDeque<(u64, BlockRuns, u64)>,
    in_flight_bytes: u64,
    reads_pending: usize,
    budget_sectors: i64,
    sect_in: u64,
    /// Sectors the controller granted in its last step (its current rate, for status).
    last_grant: u64,
}

/// The SyncTarget's progress.
#[derive(Debug, Clone)]
pub struct TargetSync {
    /// Out-of-sync blocks at the start.
    pub total_blocks: u64,
    /// Blocks received and durable.
    pub done_blocks: u64,
    /// When it started.
    pub started: Time,
}

impl Replica {
    pub(super) fn begin_bitmap_exchange(&mut self, direction: SyncDirection, full: bool) {
        if full {
            let blocks = self.bitmap.blocks();
            self.mark_out_of_sync(0, blocks);
        }
        self.link.as_mut().expect("link").pending_sync = Some((direction, full));
        match direction {
            SyncDirection::Source => {
                self.set_conn(ConnState::WFBitMapS);
                if self.peer_disk != DiskState::Inconsistent {
                    self.peer_disk = DiskState::Outdated;
                }
            }
            SyncDirection::Target => {
                self.set_conn(ConnState::WFBitMapT);
                if self.disk != DiskState::Inconsistent {
                    self.set_disk(DiskState::Outdated);
                }
            }
        }
        let parts = bitmap_xfer::encode(&self.bitmap);
        let n = parts.len();
        for (i, runs) in parts.into_iter().enumerate() {
            self.send(Message::BitmapPart {
                runs,
                last: i + 1 == n,
            });
        }
    }

    pub(super) fn on_bitmap_part(&mut self, runs: Vec<BitmapRun>, last: bool) {
        if !matches!(self.conn, ConnState::WFBitMapS | ConnState::WFBitMapT)
            || self.link.as_ref().is_some_and(|l| l.bitmap_received)
        {
            return self.protocol_error_pub(format!("BitmapPart while {}", self.conn));
        }
        match bitmap_xfer::apply(&mut self.bitmap, &runs) {
            Err(e) => return self.protocol_error_pub(e.to_string()),
            Ok(newly) => {
                // Persist the newly set bits as runs.
                let mut i = 0;
                while i < newly.len() {
                    let start = newly[i];
                    let mut j = i + 1;
                    while j < newly.len() && newly[j] == newly[j - 1] + 1 {
                        j += 1;
                    }
                    self.emit(Output::MarkOutOfSync {
                        first_block: start,
                        blocks: (j - i) as u64,
                    });
                    i = j;
                }
            }
        }
        if last {
            self.link.as_mut().expect("link").bitmap_received = true;
            if self.conn == ConnState::WFBitMapS {
                self.start_source();
            }
        }
    }

    fn start_source(&mut self) {
        let full = self
            .link
            .as_ref()
            .and_then(|l| l.pending_sync)
            .is_some_and(|(_, f)| f);
        let fresh = self.fresh_u64();
        let (sync, ids) = uuids::start_sync_as_source(self.uuids, fresh);
        // A sync point: the bitmap (all of it, for a full sync) is durable before the sync UUID.
        self.set_uuids(ids);
        self.send(Message::SyncUuid { uuid: sync });
        self.set_conn(ConnState::SyncSource);
        self.peer_disk = DiskState::Inconsistent;
        let total = self.bitmap.count();
        self.source = Some(SourceSync {
            full,
            total_blocks: total,
            done_blocks: 0,
            started: self.now,
            cursor: 0,
            batch: vec![],
            batch_bytes: 0,
            unacked: VecDeque::new(),
            in_flight_bytes: 0,
            reads_pending: 0,
            budget_sectors: 0,
            sect_in: 0,
            last_grant: 0,
        });
        self.notice(Notice::ResyncStarted {
            direction: SyncDirection::Source,
            blocks: total,
            full,
        });
        self.start_controller();
    }

    pub(super) fn start_controller(&mut self) {
        if self.controller.is_none() {
            self.controller = Some(RateController::new(self.cfg.rate));
        }
        self.next_step = Some(self.now);
        self.controller_step();
    }

    pub(super) fn on_sync_uuid(&mut self, uuid: Uuid) {
        if self.conn != ConnState::WFBitMapT
            || !self.link.as_ref().is_some_and(|l| l.bitmap_received)
        {
            return self.protocol_error_pub(format!("SyncUuid while {}", self.conn));
        }
        // Inconsistent first, then the new current UUID: both durable before any resync write.
        self.set_disk(DiskState::Inconsistent);
        self.set_uuids(uuids::start_sync_as_target(self.uuids, uuid));
        self.set_conn(ConnState::SyncTarget);
        let total = self.bitmap.count();
        let full = self
            .link
            .as_ref()
            .and_then(|l| l.pending_sync)
            .is_some_and(|(_, f)| f);
        self.target = Some(TargetSync {
            total_blocks: total,
            done_blocks: 0,
            started: self.now,
        });
        self.notice(Notice::ResyncStarted {
            direction: SyncDirection::Target,
            blocks: total,
            full,
        });
    }

    pub(super) fn on_rs_data(&mut self, seq: u64, offset: u64, data: Bytes) {
        if self.conn != ConnState::SyncTarget {
            return self.protocol_error_pub(format!("RsData while {}", self.conn));
        }
        let len = data.len() as u64;
        if !offset.is_multiple_of(BLOCK_SIZE) || !len.is_multiple_of(BLOCK_SIZE) {
            return self.protocol_error_pub(format!("RsData {offset}+{len} not block-aligned"));
        }
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.cfg.size_bytes)
        {
            return self.protocol_error_pub(format!("RsData {offset}+{len} past the device"));
        }
        self.rs_landed.push((offset / BLOCK_SIZE, len / BLOCK_SIZE));
        self.peer_write(seq, offset, data, false, false, true);
    }

    /// Issues resync reads while budget and window allow.
    fn pump_source(&mut self) {
        let window = self.cfg.limits.resync_window_bytes;
        let max_blocks = (self.cfg.limits.resync_request_bytes / BLOCK_SIZE).max(1);
        loop {
            let Some(s) = self.source.as_ref() else {
                return;
            };
            if s.budget_sectors <= 0 || s.in_flight_bytes >= window {
                break;
            }
            let Some(b) = self.bitmap.next_set(s.cursor) else {
                break;
            };
            let budget_blocks =
                (u64::try_from(s.budget_sectors).unwrap_or(0) / SECTORS_PER_BLOCK).max(1);
            let room_blocks = ((window - s.in_flight_bytes) / BLOCK_SIZE).max(1);
            let limit = max_blocks.min(budget_blocks).min(room_blocks);
            let mut n = 1;
            while n < limit && b + n < self.bitmap.blocks() && self.bitmap.get(b + n) {
                n += 1;
            }
            let s = self.source.as_mut().expect("source");
            s.cursor = b + n;
            s.in_flight_bytes += n * BLOCK_SIZE;
            s.budget_sectors -= i64::try_from(n * SECTORS_PER_BLOCK).unwrap_or(i64::MAX);
            s.reads_pending += 1;
            let io = self.new_io(
                IoKind::ResyncRead {
                    first_block: b,
                    blocks: n,
                },
                b * BLOCK_SIZE,
                n * BLOCK_SIZE,
                None,
                false,
            );
            self.submit_io(io, Access::Read);
        }
        self.maybe_finish_source();
    }

    pub(super) fn resync_read_done(
        &mut self,
        io: IoId,
        first_block: u64,
        blocks: u64,
        result: Result<Bytes, IoError>,
    ) {
        let epoch = self.ios[&io].epoch;
        let live = self.source.is_some() && self.link.as_ref().is_some_and(|l| l.epoch == epoch);
        match result {
            Ok(data) if live => {
                assert_eq!(
                    data.len() as u64,
                    blocks * BLOCK_SIZE,
                    "resync read returned the wrong length"
                );
                let seq = self.next_seq;
                self.next_seq += 1;
                self.stats.resync_bytes_sent += data.len() as u64;
                // Send before releasing the gate: a write waiting on this block goes after it.
                self.send(Message::RsData {
                    seq,
                    offset: first_block * BLOCK_SIZE,
                    data,
                });
                let s = self.source.as_mut().expect("source");
                s.batch.push((first_block, blocks));
                s.batch_bytes += blocks * BLOCK_SIZE;
                s.reads_pending -= 1;
                self.release_io(io);
                let window = self.cfg.limits.resync_window_bytes;
                let s = self.source.as_ref().expect("source");
                if s.reads_pending == 0 || s.batch_bytes * 4 >= window {
                    self.send_rs_barrier();
                }
                self.pump_source();
            }
            Ok(_) => {
                self.release_io(io);
            }
            Err(e) => {
                self.release_io(io);
                self.notice(Notice::IoError(e.0.clone()));
                if live {
                    self.protocol_error_pub(format!("resync read failed: {}", e.0));
                }
            }
        }
    }

    fn send_rs_barrier(&mut self) {
        let Some(s) = self.source.as_mut() else {
            return;
        };
        if s.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut s.batch);
        let bytes = std::mem::take(&mut s.batch_bytes);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.source
            .as_mut()
            .expect("source")
            .unacked
            .push_back((seq, batch, bytes));
        self.send(Message::RsBarrier { seq });
    }

    pub(super) fn on_rs_barrier_ack(&mut self, seq: u64) {
        // The target flushes barriers concurrently: an acknowledgement may come after a later
        // one already covered it (and maybe finished the resync). Such an ack says nothing new.
        if self.source.is_none() {
            return;
        }
        loop {
            let s = self.source.as_mut().expect("source");
            match s.unacked.front() {
                Some((b, _, _)) if *b <= seq => {}
                _ => break,
            }
            let (_, ranges, bytes) = s.unacked.pop_front().expect("front");
            s.in_flight_bytes -= bytes;
            s.sect_in += bytes / 512;
            for (first, n) in ranges {
                self.source.as_mut().expect("source").done_blocks += n;
                self.mark_in_sync(first, n);
            }
        }
        self.pump_source();
    }

    fn maybe_finish_source(&mut self) {
        let Some(s) = self.source.as_ref() else {
            return;
        };
        if s.reads_pending > 0
            || !s.batch.is_empty()
            || !s.unacked.is_empty()
            || self.bitmap.next_set(s.cursor).is_some()
        {
            return;
        }
        if self.bitmap.count() > 0 {
            // Blocks behind the cursor were marked again: go round once more.
            self.source.as_mut().expect("source").cursor = 0;
            return self.pump_source();
        }
        let s = self.source.take().expect("source");
        self.controller = None;
        self.next_step = self.verify_source.as_ref().map(|_| self.now);
        self.set_uuids(uuids::finish_sync_as_source(self.uuids));
        self.crashed_primary = false;
        // Connected and identical: both hold the newest data.
        self.set_disk(DiskState::UpToDate);
        self.send(Message::ResyncDone {
            uuids: self.uuids,
            disk: self.disk,
        });
        self.set_conn(ConnState::Connected);
        self.peer_disk = self.disk;
        self.stats.resyncs_completed += 1;
        self.notice(Notice::ResyncFinished {
            direction: SyncDirection::Source,
            blocks: s.done_blocks,
        });
        self.maybe_clear_primary_flag();
    }

    pub(super) fn on_resync_done(&mut self, ids: crate::types::GenerationIds, disk: DiskState) {
        let Some(t) = self.target.take() else {
            return self.protocol_error_pub(format!("ResyncDone while {}", self.conn));
        };
        self.set_uuids(ids);
        self.set_disk(if disk == DiskState::UpToDate {
            DiskState::UpToDate
        } else {
            DiskState::Consistent
        });
        self.crashed_primary = false;
        self.set_conn(ConnState::Connected);
        self.peer_disk = disk;
        self.notice(Notice::ResyncFinished {
            direction: SyncDirection::Target,
            blocks: t.done_blocks,
        });
        self.maybe_clear_primary_flag();
    }

    /// One controller step: grant budgets, pump.
    pub(super) fn controller_step(&mut self) {
        let app = std::mem::take(&mut self.app_sectors_this_step);
        if self.source.is_none() && self.verify_source.is_none() {
            self.next_step = None;
            return;
        }
        self.next_step = Some(self.now + STEP);
        let ctl = self
            .controller
            .get_or_insert_with(|| RateController::new(self.cfg.rate));
        if let Some(s) = self.source.as_mut() {
            let grant = ctl.step(std::mem::take(&mut s.sect_in), s.in_flight_bytes / 512, app);
            s.last_grant = grant;
            s.budget_sectors = s.budget_sectors.min(0) + i64::try_from(grant).unwrap_or(i64::MAX);
            self.pump_source();
        } else if let Some(v) = self.verify_source.as_mut() {
            let grant = ctl.step(
                std::mem::take(&mut v.sect_in),
                v.in_flight_blocks * SECTORS_PER_BLOCK,
                app,
            );
            v.budget_sectors = v.budget_sectors.min(0) + i64::try_from(grant).unwrap_or(i64::MAX);
            self.pump_verify();
        }
    }

    pub(super) fn resync_progress(&self) -> Option<Progress> {
        let rate = self
            .controller
            .as_ref()
            .map_or(0, |c| c.recent_rate_kib_s());
        if let Some(s) = &self.source {
            return Some(Progress {
                total_blocks: s.total_blocks,
                remaining_blocks: self.bitmap.count(),
                started: s.started,
                rate_kib_s: rate,
                // Sectors per 100 ms step → KiB/s.
                want_kib_s: s.last_grant * 10 / 2,
            });
        }
        self.target.as_ref().map(|t| Progress {
            total_blocks: t.total_blocks,
            remaining_blocks: self.bitmap.count(),
            started: t.started,
            rate_kib_s: (t.done_blocks * 4)
                .checked_div(self.now.since(t.started).as_secs().max(1))
                .unwrap_or(0),
            want_kib_s: 0,
        })
    }

    pub(super) fn protocol_error_pub(&mut self, what: String) {
        let Some(conn) = self.link.as_ref().map(|l| l.conn) else {
            return;
        };
        self.notice(Notice::ProtocolError(what.clone()));
        self.emit(Output::CloseConnection {
            conn,
            reason: what.clone(),
        });
        self.link_lost(what, ConnState::WFConnection);
    }
}

//! Online verify (DRBD's VerifyS/VerifyT): the initiator reads runs of blocks and has the daemon
//! digest them (`ComputeDigests`), sends the digests, and the peer digests the same blocks and
//! compares; differing blocks are marked out of sync on both nodes and counted. Reads go
//! through the gate, and the request is sent before the gate slot is released, so an
//! application write to a block lands after both nodes digested it. That ordering holds only if
//! the driver is the node the writes come from: `verify` on a Secondary whose peer is Primary
//! asks the Primary to drive (`VerifyAsk`). Verify does not resync by
//! itself: the marked blocks are resynced at the next handshake (`disconnect` + `connect`, as
//! DRBD documents).

use super::*;
use crate::bitmap::BLOCK_SIZE;
use crate::protocol::gate::Access;
use crate::protocol::verify::VerifyAlg;
use crate::wire::Message;
use crate::wire::message::MAX_DIGESTS;

/// The initiator's progress.
#[derive(Debug, Clone)]
pub struct VerifySource {
    /// Algorithm.
    pub alg: VerifyAlg,
    /// Blocks compared.
    pub checked: u64,
    /// Blocks found different.
    pub mismatched: u64,
    /// Blocks to compare.
    pub total_blocks: u64,
    /// When it started.
    pub started: Time,
    cursor: u64,
    end: u64,
    next_req: u64,
    outstanding: BTreeMap<u64, (u64, u64)>,
    pub(super) in_flight_blocks: u64,
    reads_pending: usize,
    pub(super) budget_sectors: i64,
    pub(super) sect_in: u64,
}

/// The peer's side.
#[derive(Debug, Clone)]
pub struct VerifyTarget {
    /// Algorithm.
    pub alg: VerifyAlg,
    /// Blocks compared.
    pub checked: u64,
    /// Blocks found different.
    pub mismatched: u64,
    /// When it started.
    pub started: Time,
}

impl Replica {
    pub(super) fn start_verify(&mut self, alg: VerifyAlg) {
        let end = self.bitmap.blocks();
        self.set_conn(ConnState::VerifyS);
        self.send(Message::VerifyStart {
            alg,
            start_block: 0,
        });
        self.verify_source = Some(VerifySource {
            alg,
            checked: 0,
            mismatched: 0,
            total_blocks: end,
            started: self.now,
            cursor: 0,
            end,
            next_req: 0,
            outstanding: BTreeMap::new(),
            in_flight_blocks: 0,
            reads_pending: 0,
            budget_sectors: 0,
            sect_in: 0,
        });
        self.start_controller();
    }

    pub(super) fn pump_verify(&mut self) {
        let window = self.cfg.limits.verify_window_blocks.max(1);
        loop {
            let Some(v) = self.verify_source.as_ref() else {
                return;
            };
            if v.budget_sectors <= 0 || v.in_flight_blocks >= window || v.cursor >= v.end {
                break;
            }
            let budget_blocks =
                (u64::try_from(v.budget_sectors).unwrap_or(0) / (BLOCK_SIZE / 512)).max(1);
            let n = (MAX_DIGESTS as u64)
                .min(v.end - v.cursor)
                .min(budget_blocks)
                .min(window - v.in_flight_blocks);
            let first = v.cursor;
            let v = self.verify_source.as_mut().expect("verify");
            v.cursor += n;
            v.in_flight_blocks += n;
            v.reads_pending += 1;
            v.budget_sectors -= i64::try_from(n * BLOCK_SIZE / 512).unwrap_or(i64::MAX);
            let io = self.new_io(
                IoKind::VerifyRead {
                    first_block: first,
                    blocks: n,
                    request: None,
                },
                first * BLOCK_SIZE,
                n * BLOCK_SIZE,
                None,
                false,
            );
            self.submit_io(io, Access::Read);
        }
        self.maybe_finish_verify();
    }

    fn maybe_finish_verify(&mut self) {
        let Some(v) = self.verify_source.as_ref() else {
            return;
        };
        if v.cursor < v.end || v.reads_pending > 0 || !v.outstanding.is_empty() {
            return;
        }
        self.send(Message::VerifyDone);
        self.end_verify_source(true);
    }

    fn end_verify_source(&mut self, complete: bool) {
        let v = self.verify_source.take().expect("verify");
        self.set_conn(ConnState::Connected);
        self.controller = None;
        self.next_step = None;
        if complete {
            self.stats.verifies_completed += 1;
            self.stats.last_verify_mismatches = v.mismatched;
        }
        self.notice(Notice::VerifyFinished {
            checked: v.checked,
            mismatched: v.mismatched,
            complete,
        });
    }

    pub(super) fn digests_done(&mut self, io: IoId, result: Result<Vec<Digest>, IoError>) {
        let Some(p) = self.ios.get(&io) else { return };
        let IoKind::VerifyRead {
            first_block,
            blocks,
            request,
        } = p.kind.clone()
        else {
            panic!("digest completion for {:?}", p.kind);
        };
        let live = self.link.as_ref().is_some_and(|l| l.epoch == p.epoch);
        let result = result.and_then(|d| {
            if d.len() as u64 == blocks {
                Ok(d)
            } else {
                Err(IoError(format!("{} digests for {blocks} blocks", d.len())))
            }
        });
        match request {
            None => {
                if live && self.verify_source.is_some() {
                    match result {
                        Ok(digests) => {
                            let v = self.verify_source.as_mut().expect("verify");
                            let seq = v.next_req;
                            v.next_req += 1;
                            v.reads_pending -= 1;
                            v.outstanding.insert(seq, (first_block, blocks));
                            self.send(Message::VerifyRequest {
                                seq,
                                start_block: first_block,
                                digests,
                            });
                            self.release_io(io);
                            self.pump_verify();
                        }
                        Err(e) => {
                            self.release_io(io);
                            self.notice(Notice::IoError(e.0));
                            self.send(Message::VerifyDone);
                            self.end_verify_source(false);
                        }
                    }
                } else {
                    self.release_io(io);
                }
            }
            Some((seq, theirs)) => {
                // A local read error: every block of the request counts as different.
                let mine = result.unwrap_or_default();
                let mismatched: Vec<u64> = (0..blocks)
                    .filter(|i| {
                        let i = usize::try_from(*i).expect("at most MAX_DIGESTS blocks");
                        mine.get(i) != theirs.get(i)
                    })
                    .map(|i| first_block + i)
                    .collect();
                for b in &mismatched {
                    self.mark_out_of_sync(*b, 1);
                }
                if live {
                    if let Some(t) = self.verify_target.as_mut() {
                        t.checked += blocks;
                        t.mismatched += mismatched.len() as u64;
                    }
                    self.send(Message::VerifyReply { seq, mismatched });
                }
                self.release_io(io);
            }
        }
    }

    /// The peer (a Secondary) asks this node to drive a verify.
    pub(super) fn on_verify_ask(&mut self, alg: VerifyAlg) {
        let ok = self.conn == ConnState::Connected
            && matches!(self.disk, DiskState::UpToDate | DiskState::Consistent)
            && matches!(self.peer_disk, DiskState::UpToDate | DiskState::Consistent);
        if ok {
            self.start_verify(alg);
        }
    }

    pub(super) fn on_verify_start(&mut self, alg: VerifyAlg, start_block: u64) {
        if self.conn != ConnState::Connected || start_block > self.bitmap.blocks() {
            return self.protocol_error_pub(format!("VerifyStart while {}", self.conn));
        }
        self.set_conn(ConnState::VerifyT);
        self.verify_target = Some(VerifyTarget {
            alg,
            checked: 0,
            mismatched: 0,
            started: self.now,
        });
    }

    pub(super) fn on_verify_request(&mut self, seq: u64, start_block: u64, digests: Vec<Digest>) {
        let Some(t) = self.verify_target.as_ref() else {
            return self.protocol_error_pub(format!("VerifyRequest while {}", self.conn));
        };
        let n = digests.len() as u64;
        if start_block
            .checked_add(n)
            .is_none_or(|e| e > self.bitmap.blocks())
            || digests.iter().any(|d| d.alg != t.alg)
        {
            return self
                .protocol_error_pub("VerifyRequest out of range or with another algorithm".into());
        }
        let io = self.new_io(
            IoKind::VerifyRead {
                first_block: start_block,
                blocks: n,
                request: Some((seq, digests)),
            },
            start_block * BLOCK_SIZE,
            n * BLOCK_SIZE,
            None,
            false,
        );
        self.submit_io(io, Access::Read);
    }

    pub(super) fn on_verify_reply(&mut self, seq: u64, mismatched: Vec<u64>) {
        let Some((first, n)) = self
            .verify_source
            .as_mut()
            .and_then(|v| v.outstanding.remove(&seq))
        else {
            return self
                .protocol_error_pub(format!("VerifyReply {seq} unexpected while {}", self.conn));
        };
        if mismatched.iter().any(|b| *b < first || *b >= first + n) {
            return self.protocol_error_pub("VerifyReply names blocks outside its request".into());
        }
        for b in &mismatched {
            self.mark_out_of_sync(*b, 1);
        }
        let v = self.verify_source.as_mut().expect("verify");
        v.checked += n;
        v.mismatched += mismatched.len() as u64;
        v.in_flight_blocks -= n;
        v.sect_in += n * BLOCK_SIZE / 512;
        self.pump_verify();
    }

    pub(super) fn on_verify_done(&mut self) {
        if let Some(t) = self.verify_target.take() {
            self.set_conn(ConnState::Connected);
            self.notice(Notice::VerifyFinished {
                checked: t.checked,
                mismatched: t.mismatched,
                complete: true,
            });
        } else if self.verify_source.is_some() {
            self.end_verify_source(false);
        } else {
            self.protocol_error_pub(format!("VerifyDone while {}", self.conn));
        }
    }

    pub(super) fn verify_progress(&self) -> Option<(Progress, u64)> {
        let v = self.verify_source.as_ref()?;
        Some((
            Progress {
                total_blocks: v.total_blocks,
                remaining_blocks: v.total_blocks - v.checked,
                started: v.started,
                rate_kib_s: self
                    .controller
                    .as_ref()
                    .map_or(0, |c| c.recent_rate_kib_s()),
                want_kib_s: 0,
            },
            v.mismatched,
        ))
    }
}

//! Client I/O on a Primary: writes (activity log, gate, replication per protocol, the ack
//! rule), reads, flushes, barriers and settlement.
//!
//! The ack rule (REFERENCE.md, DRBD's protocols), for a write issued while replicating:
//!
//! | protocol | the client's write completes when |
//! |---|---|
//! | A | the local write is done and the `Data` message is queued to send |
//! | B | the local write is done and the peer sent `RecvAck` (FUA: `WriteAck`) |
//! | C | the local write is done and the peer sent `WriteAck` |
//!
//! A client FLUSH completes when the local flush is done and, under B and C while
//! replicating, the peer answered the `Barrier` sent with it (it flushed everything received
//! before). A FUA write is written with FUA on both nodes and, under B and C, waits for the
//! peer's `WriteAck`. A write issued while not replicating marks its blocks out of sync and
//! completes on the local write alone. When the link is lost, every write the peer has not
//! confirmed durable is marked out of sync (DRBD's `tl_clear`) and completes.
//!
//! A write is *settled* once durable locally (FUA, or a local flush issued after it completed)
//! and on the peer (FUA `WriteAck`, or a `BarrierAck` for a barrier sent after it), or recorded
//! in the bitmap. Only then is its activity-log extent released.

use super::*;
use crate::protocol::gate::{Access, MAX_OP_BYTES};
use crate::types::Protocol;
use crate::wire::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Local {
    Pending,
    /// Done; `mark` is the number of flushes issued before it completed.
    Done {
        mark: u64,
    },
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Net {
    /// Not replicated: marked out of sync.
    Local,
    /// Waiting for `RecvAck`.
    AwaitRecv,
    /// Waiting for `WriteAck`.
    AwaitWrite,
    /// The peer part is done for the client's purpose.
    Done,
}

#[derive(Debug, Clone)]
pub(super) struct WriteReq {
    pub(super) id: ClientId,
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) fua: bool,
    pub(super) extents: std::ops::RangeInclusive<u64>,
    pub(super) al_held: bool,
    pub(super) data: Option<Bytes>,
    pub(super) seq: Option<u64>,
    pub(super) local: Local,
    pub(super) net: Net,
    pub(super) client_done: bool,
    pub(super) peer_settled: bool,
}

#[derive(Debug, Clone)]
pub(super) struct FlushReq {
    pub(super) id: Option<ClientId>,
    pub(super) local_done: bool,
    pub(super) peer_seq: Option<u64>,
}

impl Replica {
    fn check_range(&self, offset: u64, len: u64) -> Result<(), ClientError> {
        let size = self.cfg.size_bytes;
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(ClientError::OutOfRange { offset, len, size });
        }
        if len > MAX_OP_BYTES {
            return Err(ClientError::TooLarge(len));
        }
        Ok(())
    }

    fn may_serve(&self) -> bool {
        self.role == Role::Primary
    }

    pub(super) fn client_write(&mut self, id: ClientId, offset: u64, data: Bytes, fua: bool) {
        let len = data.len() as u64;
        if !self.may_serve() {
            return self.emit(Output::ClientDone {
                id,
                result: Err(ClientError::NotPrimary),
            });
        }
        if let Err(e) = self.check_range(offset, len) {
            return self.emit(Output::ClientDone { id, result: Err(e) });
        }
        let credit = self.write_credit();
        if credit.writes == 0 || credit.bytes < len {
            return self.emit(Output::ClientDone {
                id,
                result: Err(ClientError::Busy),
            });
        }
        self.next_wseq += 1;
        let wseq = self.next_wseq;
        let extents = crate::protocol::al::extents_of(offset, len);
        self.writes.insert(
            wseq,
            WriteReq {
                id,
                offset,
                len,
                fua,
                extents,
                al_held: false,
                data: Some(data),
                seq: None,
                local: Local::Pending,
                net: Net::Local,
                client_done: false,
                peer_settled: false,
            },
        );
        self.writes_in_flight += 1;
        self.write_bytes_in_flight += len;
        self.app_sectors_this_step += len / 512;
        if self.cfg.standalone {
            // No peer: no activity log, nothing to resync after a crash.
            self.issue_write(wseq);
        } else if self.al_wait.is_empty() && self.try_al_begin(wseq) {
            self.issue_write(wseq);
        } else {
            self.al_wait.push_back(wseq);
            self.issue_barrier_if_idle();
        }
    }

    /// Takes activity-log references for write `wseq`; persists the change first if any.
    fn try_al_begin(&mut self, wseq: u64) -> bool {
        let extents = self.writes[&wseq].extents.clone();
        match self.al.begin(extents) {
            Some(change) => {
                assert!(
                    self.flags.primary,
                    "activity log used without the primary indicator"
                );
                if !change.is_empty() {
                    self.emit(Output::AlUpdate {
                        activate: change.activate,
                        evict: change.evict,
                    });
                }
                self.writes.get_mut(&wseq).expect("write").al_held = true;
                true
            }
            None => false,
        }
    }

    fn issue_write(&mut self, wseq: u64) {
        let w = self.writes.get_mut(&wseq).expect("write");
        let (offset, len, fua) = (w.offset, w.len, w.fua);
        let data = w.data.take();
        let io = self.new_io(IoKind::ClientWrite { wseq }, offset, len, data, fua);
        self.submit_io(io, Access::Write);
    }

    /// The gate admitted client write `wseq`: write locally and replicate (in parallel).
    pub(super) fn start_client_write(&mut self, io: IoId, wseq: u64, data: Bytes) {
        let (offset, len, fua) = {
            let w = &self.writes[&wseq];
            (w.offset, w.len, w.fua)
        };
        self.emit(Output::DiskWrite {
            io,
            offset,
            data: data.clone(),
            fua,
        });
        if self.replicating() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.stats.data_bytes_sent += len;
            self.send(Message::Data {
                seq,
                offset,
                data,
                fua,
            });
            let net = match (self.cfg.protocol, fua) {
                (Protocol::A, _) => Net::Done,
                (Protocol::B, false) => Net::AwaitRecv,
                (Protocol::B, true) | (Protocol::C, _) => Net::AwaitWrite,
            };
            let w = self.writes.get_mut(&wseq).expect("write");
            w.seq = Some(seq);
            w.net = net;
            self.seq_to_wseq.insert(seq, wseq);
        } else {
            if !self.cfg.standalone {
                self.mark_range_out_of_sync(offset, len);
            }
            let w = self.writes.get_mut(&wseq).expect("write");
            w.net = Net::Local;
            w.peer_settled = true;
        }
    }

    pub(super) fn client_write_done(&mut self, wseq: u64, result: Result<(), IoError>) {
        let mark = self.flushes_issued;
        let w = self.writes.get_mut(&wseq).expect("write");
        match result {
            Ok(()) => w.local = Local::Done { mark },
            Err(e) => {
                w.local = Local::Failed;
                let (o, l) = (w.offset, w.len);
                // The local disk may now hold anything there: the peer's copy is the good one.
                if !self.cfg.standalone {
                    self.mark_range_out_of_sync(o, l);
                }
                self.notice(Notice::IoError(e.0));
            }
        }
        self.maybe_complete_write(wseq);
    }

    /// Net acks from the peer.
    pub(super) fn on_recv_ack(&mut self, seq: u64, write: bool) {
        let Some(&wseq) = self.seq_to_wseq.get(&seq) else {
            return;
        };
        let w = self.writes.get_mut(&wseq).expect("write");
        match (w.net, write) {
            (Net::AwaitRecv, _) | (Net::AwaitWrite, true) => w.net = Net::Done,
            _ => {}
        }
        if write && w.fua {
            w.peer_settled = true;
        }
        self.maybe_complete_write(wseq);
    }

    fn maybe_complete_write(&mut self, wseq: u64) {
        let w = self.writes.get_mut(&wseq).expect("write");
        if w.client_done
            || w.local == Local::Pending
            || matches!(w.net, Net::AwaitRecv | Net::AwaitWrite)
        {
            return;
        }
        w.client_done = true;
        let (id, len) = (w.id, w.len);
        let result = if w.local == Local::Failed {
            Err(ClientError::Io("local write failed".into()))
        } else {
            Ok(())
        };
        self.emit(Output::ClientDone { id, result });
        self.writes_in_flight -= 1;
        self.write_bytes_in_flight -= len;
        self.unsettled += 1;
        self.unsettled_bytes += len;
        self.oldest_unsettled.get_or_insert(self.now);
        let l = self.cfg.limits;
        if self.unsettled * 4 >= l.max_unsettled_writes * 3
            || self.unsettled_bytes * 4 >= l.max_unsettled_bytes * 3
        {
            self.issue_barrier_if_idle();
        }
        self.try_settle(wseq);
    }

    fn settled(&self, w: &WriteReq) -> bool {
        if self.cfg.standalone {
            // Settlement releases activity-log extents and peer state; a standalone resource
            // has neither (a client FLUSH still makes its writes durable).
            return w.client_done;
        }
        let durable = match w.local {
            Local::Pending => false,
            Local::Failed => true,
            Local::Done { mark } => w.fua || mark < self.flushes_covered,
        };
        w.client_done && durable && (w.net == Net::Local || w.peer_settled)
    }

    fn try_settle(&mut self, wseq: u64) {
        if !self.settled(&self.writes[&wseq]) {
            return;
        }
        let w = self.writes.remove(&wseq).expect("write");
        if w.al_held {
            self.al.end(w.extents.clone());
        }
        if let Some(s) = w.seq {
            self.seq_to_wseq.remove(&s);
        }
        self.unsettled -= 1;
        self.unsettled_bytes -= w.len;
        if self.unsettled == 0 {
            self.oldest_unsettled = None;
        }
        self.admit_al_waiters();
        self.maybe_clear_primary_flag();
    }

    /// Re-checks every unsettled write (after a flush or a barrier acknowledgement).
    pub(super) fn settle_all(&mut self) {
        let done: Vec<u64> = self
            .writes
            .iter()
            .filter(|(_, w)| self.settled(w))
            .map(|(k, _)| *k)
            .collect();
        for wseq in done {
            self.try_settle(wseq);
        }
    }

    fn admit_al_waiters(&mut self) {
        while let Some(&wseq) = self.al_wait.front() {
            if !self.try_al_begin(wseq) {
                self.issue_barrier_if_idle();
                return;
            }
            self.al_wait.pop_front();
            self.issue_write(wseq);
        }
    }

    pub(super) fn client_read(&mut self, id: ClientId, offset: u64, len: u64) {
        if !self.may_serve() {
            return self.emit(Output::ClientReadDone {
                id,
                result: Err(ClientError::NotPrimary),
            });
        }
        if let Err(e) = self.check_range(offset, len) {
            return self.emit(Output::ClientReadDone { id, result: Err(e) });
        }
        self.reads_in_flight += 1;
        self.app_sectors_this_step += len / 512;
        let io = self.new_io(IoKind::ClientRead { id }, offset, len, None, false);
        self.submit_io(io, Access::Read);
    }

    pub(super) fn client_flush(&mut self, id: ClientId) {
        if !self.may_serve() {
            return self.emit(Output::ClientDone {
                id,
                result: Err(ClientError::NotPrimary),
            });
        }
        self.issue_barrier(Some(id));
    }

    fn issue_barrier_if_idle(&mut self) {
        let machine_flush_pending = self.client_flushes.values().any(|f| f.id.is_none());
        if !machine_flush_pending {
            self.issue_barrier(None);
        }
    }

    /// A local flush and, while replicating, a `Barrier` to the peer. With `client`, completes
    /// that client's FLUSH when both are done (the peer's part only under B and C).
    pub(super) fn issue_barrier(&mut self, client: Option<ClientId>) {
        let index = self.flushes_issued;
        self.flushes_issued += 1;
        let io = self.new_io(IoKind::Flush { index }, 0, 0, None, false);
        self.emit(Output::DiskFlush { io });
        let mut peer_seq = None;
        if self.replicating() {
            let link = self.link.as_mut().expect("link");
            let seq = self.next_seq;
            self.next_seq += 1;
            link.barriers_out.insert(seq);
            self.send(Message::Barrier { seq });
            if self.cfg.protocol != Protocol::A {
                peer_seq = Some(seq);
            }
        }
        self.next_flush += 1;
        self.client_flushes.insert(
            index,
            FlushReq {
                id: client,
                local_done: false,
                peer_seq,
            },
        );
        if self.unsettled > 0 {
            self.oldest_unsettled = Some(self.now);
        }
    }

    pub(super) fn local_flush_done(&mut self, index: u64, result: Result<(), IoError>) {
        if let Err(e) = &result {
            self.notice(Notice::IoError(e.0.clone()));
        } else {
            self.flushes_covered = self.flushes_covered.max(index + 1);
        }
        if let Some(f) = self.client_flushes.get_mut(&index) {
            f.local_done = true;
            if let (Some(id), Err(e)) = (f.id, result) {
                // A failed flush fails the client's FLUSH at once.
                self.client_flushes.remove(&index);
                self.emit(Output::ClientDone {
                    id,
                    result: Err(ClientError::Io(e.0)),
                });
            }
        }
        self.complete_flushes();
        self.settle_all();
    }

    /// The peer acknowledged barrier `seq`: everything sent before it is durable there.
    pub(super) fn on_barrier_ack(&mut self, seq: u64) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if !link.barriers_out.remove(&seq) {
            return;
        }
        for w in self.writes.values_mut() {
            if w.seq.is_some_and(|s| s < seq) {
                w.peer_settled = true;
            }
        }
        for f in self.client_flushes.values_mut() {
            if f.peer_seq.is_some_and(|s| s <= seq) {
                f.peer_seq = None;
            }
        }
        self.complete_flushes();
        self.settle_all();
    }

    pub(super) fn complete_flushes(&mut self) {
        let done: Vec<u64> = self
            .client_flushes
            .iter()
            .filter(|(_, f)| f.local_done && f.peer_seq.is_none())
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            let f = self.client_flushes.remove(&k).expect("flush");
            if let Some(id) = f.id {
                self.emit(Output::ClientDone { id, result: Ok(()) });
            }
        }
    }

    /// The link is lost (DRBD's `tl_clear`), first half: every write the peer has not
    /// confirmed durable is marked out of sync and no longer waits for the peer. Returns the
    /// writes to complete with [`Self::writes_link_lost_complete`].
    pub(super) fn writes_link_lost_mark(&mut self) -> Vec<u64> {
        let mut marks = vec![];
        let mut touched = vec![];
        for (k, w) in self.writes.iter_mut() {
            if w.seq.is_some() && !w.peer_settled {
                marks.push((w.offset, w.len));
                w.peer_settled = true;
                if matches!(w.net, Net::AwaitRecv | Net::AwaitWrite) {
                    w.net = Net::Done;
                }
                touched.push(*k);
            }
        }
        for (o, l) in marks {
            self.mark_range_out_of_sync(o, l);
        }
        for f in self.client_flushes.values_mut() {
            f.peer_seq = None;
        }
        touched
    }

    /// Second half: completes what no longer waits for the peer.
    pub(super) fn writes_link_lost_complete(&mut self, touched: Vec<u64>) {
        for k in touched {
            self.maybe_complete_write(k);
        }
        self.complete_flushes();
        self.settle_all();
    }

    pub(super) fn client_read_done(&mut self, id: ClientId, result: Result<Bytes, IoError>) {
        self.reads_in_flight -= 1;
        let result = result.map_err(|e| ClientError::Io(e.0));
        self.emit(Output::ClientReadDone { id, result });
    }

    /// Completion dispatch for writes.
    pub(super) fn disk_write_done(&mut self, io: IoId, result: Result<(), IoError>) {
        let Some(p) = self.release_io(io) else { return };
        match p.kind {
            IoKind::ClientWrite { wseq } => self.client_write_done(wseq, result),
            IoKind::PeerWrite {
                rx,
                seq,
                ack,
                resync,
            } => self.peer_write_done(p.epoch, rx, seq, ack, resync, p.offset, p.len, result),
            other => panic!("write completion for {other:?}"),
        }
    }

    /// Completion dispatch for reads.
    pub(super) fn disk_read_done(&mut self, io: IoId, result: Result<Bytes, IoError>) {
        let Some(p) = self.ios.get(&io) else { return };
        match p.kind.clone() {
            IoKind::ClientRead { id } => {
                self.release_io(io);
                self.client_read_done(id, result);
            }
            IoKind::ResyncRead {
                first_block,
                blocks,
            } => self.resync_read_done(io, first_block, blocks, result),
            other => panic!("read completion for {other:?}"),
        }
    }

    /// Completion dispatch for flushes.
    pub(super) fn disk_flush_done(&mut self, io: IoId, result: Result<(), IoError>) {
        let Some(p) = self.release_io(io) else { return };
        match p.kind {
            IoKind::Flush { index } => self.local_flush_done(index, result),
            IoKind::PeerBarrier { seq, resync_ranges } => {
                self.peer_barrier_done(p.epoch, seq, resync_ranges, result)
            }
            other => panic!("flush completion for {other:?}"),
        }
    }
}

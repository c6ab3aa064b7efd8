//! The connection: coming up (Hello, handshake decision), messages, peer writes and barriers,
//! keep-alive, and going down.

use super::*;
use crate::protocol::gate::Access;
use crate::protocol::handshake::{
    self, Decision, Hello, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, SyncDirection,
};
use crate::types::Protocol;
use crate::wire::Message;

impl Replica {
    pub(super) fn hello(&self) -> Hello {
        Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX,
            node_id: self.cfg.node_id,
            peer_node_id: self.cfg.peer_node_id,
            size_bytes: self.cfg.size_bytes,
            protocol: self.cfg.protocol,
            allow_two_primaries: self.cfg.allow_two_primaries,
            after_sb: self.cfg.after_sb,
            uuids: self.uuids,
            bitmap_weight: self.bitmap.count(),
            role: self.role,
            disk: self.disk,
            discard_my_data: self.discard_my_data,
            crashed_primary: self.crashed_primary,
        }
    }

    pub(super) fn peer_connected(&mut self, conn: ConnId) {
        if self.conn != ConnState::WFConnection {
            return self.emit(Output::CloseConnection {
                conn,
                reason: format!("not accepting connections while {}", self.conn),
            });
        }
        self.link_epoch += 1;
        self.link = Some(Link {
            conn,
            epoch: self.link_epoch,
            peer_hello: None,
            last_rx: self.now,
            ping_sent: None,
            barriers_out: BTreeSet::new(),
            bitmap_received: false,
            pending_sync: None,
        });
        self.set_conn(ConnState::WFReportParams);
        let hello = self.hello();
        self.send(Message::Hello(hello));
    }

    pub(super) fn peer_disconnected(&mut self, conn: ConnId, reason: LinkLoss) {
        if self.link.as_ref().is_none_or(|l| l.conn != conn) {
            return;
        }
        let why = match reason {
            LinkLoss::Closed(s) => s,
            LinkLoss::BadFrame(s) => format!("bad frame: {s}"),
        };
        self.link_lost(why, ConnState::WFConnection);
    }

    /// Tears the link down (already closed by the daemon, or to be closed: the caller emits
    /// CloseConnection) and moves to `next` (WFConnection to retry, StandAlone when refused
    /// or disconnected by the admin).
    pub(super) fn link_lost(&mut self, why: String, next: ConnState) {
        let Some(link) = self.link.take() else { return };
        self.notice(Notice::LinkLost(why));
        self.peer_role = Role::Unknown;
        self.peer_disk = DiskState::DUnknown;
        self.source = None;
        self.target = None;
        self.controller = None;
        self.next_step = None;
        if let Some(v) = self.verify_source.take() {
            self.notice(Notice::VerifyFinished {
                checked: v.checked,
                mismatched: v.mismatched,
                complete: false,
            });
        }
        if let Some(v) = self.verify_target.take() {
            self.notice(Notice::VerifyFinished {
                checked: v.checked,
                mismatched: v.mismatched,
                complete: false,
            });
        }
        self.barriers_in.clear();
        self.rs_landed.clear();
        self.promotion_lost();
        let unsettled_before = self
            .writes
            .values()
            .any(|w| w.seq.is_some() && !w.peer_settled);
        // Every write the peer has not confirmed is marked out of sync first; then a Primary
        // (or a node with writes the peer may lack) starts a new data generation; only then
        // do those writes complete to their clients. The new UUID is a sync point the daemon
        // makes durable (with the marks) before it answers them, so a crash right after the
        // answers cannot bring this node back on the old generation, where a promoted peer's
        // resync would silently overwrite writes it acknowledged alone.
        let completions = self.writes_link_lost_mark();
        if self.role == Role::Primary || unsettled_before {
            self.new_current_uuid_if_needed();
        }
        self.writes_link_lost_complete(completions);
        // The Secondary's data under the `fencing` policy: `dont-care` (DRBD 8.4's default)
        // keeps UpToDate, so the node can be promoted without --force after the Primary died
        // (a peer that was alive and went on writing shows up as a split brain at the
        // reconnect: both sides have a new current UUID). `resource-only` and
        // `resource-and-stonith` (Tandem's stricter rule): it cannot know whether the peer
        // goes on writing, so it drops to Consistent and promoting it needs the peer outdated
        // or --force.
        if self.role == Role::Secondary
            && self.disk == DiskState::UpToDate
            && !self.cfg.fencing.secondary_keeps_up_to_date()
        {
            self.set_disk(DiskState::Consistent);
        }
        drop(link);
        if next == ConnState::StandAlone && self.conn != ConnState::Disconnecting {
            self.set_conn(ConnState::Disconnecting);
        }
        self.set_conn(next);
    }

    fn protocol_error(&mut self, what: String) {
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

    /// Refuses the connection: tell the peer why, close, StandAlone.
    pub(super) fn refuse(&mut self, reason: Refusal, tell_peer: bool) {
        let Some(conn) = self.link.as_ref().map(|l| l.conn) else {
            return;
        };
        self.stats.refusals += 1;
        if tell_peer {
            self.send(Message::Refuse {
                reason: reason.clone(),
            });
        }
        self.notice(Notice::Refused(reason.clone()));
        if matches!(reason, Refusal::SplitBrain { .. }) {
            self.emit(Output::CallHandler(Handler::SplitBrain));
        }
        self.refusal = Some(reason.clone());
        self.emit(Output::CloseConnection {
            conn,
            reason: reason.to_string(),
        });
        self.link_lost(reason.to_string(), ConnState::StandAlone);
    }

    pub(super) fn peer_message(&mut self, conn: ConnId, msg: Message) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if link.conn != conn {
            return;
        }
        link.last_rx = self.now;
        link.ping_sent = None;
        let handshaken = link.peer_hello.is_some();
        match msg {
            Message::Hello(h) if !handshaken => self.on_hello(h),
            Message::Refuse { reason } => {
                let r = match reason {
                    Refusal::ByPeer(inner) => *inner,
                    other => Refusal::ByPeer(Box::new(other)),
                };
                self.refuse(r, false);
            }
            Message::Ping => self.send(Message::PingAck),
            Message::PingAck => {}
            _ if !handshaken => self.protocol_error(format!("{} before Hello", msg.kind())),
            Message::Hello(_) => self.protocol_error("second Hello".into()),
            Message::State { role, disk } => self.on_peer_state(role, disk),
            Message::Data {
                seq,
                offset,
                data,
                fua,
            } => self.on_data(seq, offset, data, fua),
            Message::RecvAck { seq } => self.on_recv_ack(seq, false),
            Message::WriteAck { seq } => self.on_recv_ack(seq, true),
            Message::Barrier { seq } => self.on_barrier(seq, false),
            Message::BarrierAck { seq } => self.on_barrier_ack(seq),
            Message::BitmapPart { runs, last } => self.on_bitmap_part(runs, last),
            Message::SyncUuid { uuid } => self.on_sync_uuid(uuid),
            Message::RsData { seq, offset, data } => self.on_rs_data(seq, offset, data),
            Message::RsBarrier { seq } => self.on_barrier(seq, true),
            Message::RsBarrierAck { seq } => self.on_rs_barrier_ack(seq),
            Message::ResyncDone { uuids, disk } => self.on_resync_done(uuids, disk),
            Message::VerifyAsk { alg } => self.on_verify_ask(alg),
            Message::VerifyStart { alg, start_block } => self.on_verify_start(alg, start_block),
            Message::VerifyRequest {
                seq,
                start_block,
                digests,
            } => self.on_verify_request(seq, start_block, digests),
            Message::VerifyReply { seq, mismatched } => self.on_verify_reply(seq, mismatched),
            Message::VerifyDone => self.on_verify_done(),
            Message::PromoteRequest => self.on_promote_request(),
            Message::PromoteReply { ok } => self.on_promote_reply(ok),
        }
    }

    fn on_hello(&mut self, peer: Hello) {
        let mine = self.hello();
        if let Err(r) = handshake::check_params(&mine, &peer) {
            return self.refuse(r, true);
        }
        let resolve_conflicts = self.cfg.node_id < self.cfg.peer_node_id;
        let verdict = handshake::decide(&mine, &peer, resolve_conflicts);
        self.notice(Notice::Handshake {
            hg: verdict.uuid_hg,
            rule: verdict.rule,
        });
        if verdict.auto_split_brain.is_some() {
            self.emit(Output::CallHandler(Handler::InitialSplitBrain));
        }
        self.set_uuids(verdict.my_uuids);
        self.link.as_mut().expect("link").peer_hello = Some(peer.clone());
        self.peer_role = peer.role;
        self.peer_disk = peer.disk;
        self.notice(Notice::Peer {
            role: peer.role,
            disk: peer.disk,
        });
        let decision = match verdict.decision {
            // Tandem: no sync by the UUIDs but blocks marked out of sync (after a verify, or
            // writes of a handshake in progress): resync them, from the Primary if there is
            // exactly one, else from the node with more marked blocks, else the lower node id.
            Decision::NoSync if mine.bitmap_weight > 0 || peer.bitmap_weight > 0 => {
                let source = match (mine.role == Role::Primary, peer.role == Role::Primary) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => match mine.bitmap_weight.cmp(&peer.bitmap_weight) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => resolve_conflicts,
                    },
                };
                let direction = if source {
                    SyncDirection::Source
                } else {
                    SyncDirection::Target
                };
                let target_disk = if source { peer.disk } else { mine.disk };
                let target_role = if source { peer.role } else { mine.role };
                if target_role == Role::Primary
                    || (source && mine.disk == DiskState::Inconsistent)
                    || (!source && peer.disk == DiskState::Inconsistent)
                {
                    // Cannot resync towards a Primary or from Inconsistent data: leave them marked.
                    let _ = target_disk;
                    Decision::NoSync
                } else {
                    Decision::Resync {
                        direction,
                        full: false,
                        demote_first: false,
                    }
                }
            }
            d => d,
        };
        match decision {
            Decision::Refuse(r) => self.refuse(r, true),
            Decision::NoSync => {
                self.set_conn(ConnState::Connected);
                self.crashed_primary = false;
                self.discard_my_data = false;
                // In sync with the peer: both hold the newest data.
                if self.disk != DiskState::Inconsistent && peer.disk != DiskState::Inconsistent {
                    self.set_disk(DiskState::UpToDate);
                    if self.peer_disk != DiskState::Inconsistent {
                        self.peer_disk = DiskState::UpToDate;
                    }
                }
                self.maybe_clear_primary_flag();
            }
            Decision::Resync {
                direction,
                full,
                demote_first,
            } => {
                if demote_first && self.role == Role::Primary {
                    if self.writes_in_flight > 0 || self.reads_in_flight > 0 {
                        self.emit(Output::CallHandler(Handler::PriLostAfterSb));
                        return self.refuse(Refusal::PrimaryWouldBeSyncTarget, true);
                    }
                    self.set_role(Role::Secondary);
                }
                self.discard_my_data = false;
                self.begin_bitmap_exchange(direction, full);
            }
        }
    }

    fn on_peer_state(&mut self, role: Role, disk: DiskState) {
        if role == Role::Primary && self.role == Role::Primary && !self.cfg.allow_two_primaries {
            return self.protocol_error("peer became Primary while this node is Primary".into());
        }
        self.peer_role = role;
        self.peer_disk = disk;
        self.notice(Notice::Peer { role, disk });
    }

    fn check_peer_range(&mut self, offset: u64, len: u64) -> bool {
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.cfg.size_bytes)
        {
            self.protocol_error(format!(
                "peer write {offset}+{len} past the {}-byte device",
                self.cfg.size_bytes
            ));
            return false;
        }
        if self.rx_pending.len() >= self.cfg.limits.max_peer_writes_pending {
            self.protocol_error("peer exceeded the pending-write bound".into());
            return false;
        }
        true
    }

    /// A replicated application write.
    fn on_data(&mut self, seq: u64, offset: u64, data: Bytes, fua: bool) {
        if self.peer_role != Role::Primary {
            return self.protocol_error("Data from a peer that is not Primary".into());
        }
        if self.role == Role::Primary && !self.cfg.allow_two_primaries {
            return self.protocol_error("Data while both nodes are Primary".into());
        }
        if !self.check_peer_range(offset, data.len() as u64) {
            return;
        }
        if self.cfg.protocol == Protocol::B {
            self.send(Message::RecvAck { seq });
        }
        let ack = self.cfg.protocol == Protocol::C || fua;
        self.peer_write(seq, offset, data, fua, ack, false);
    }

    pub(super) fn peer_write(
        &mut self,
        seq: u64,
        offset: u64,
        data: Bytes,
        fua: bool,
        ack: bool,
        resync: bool,
    ) {
        self.next_rx += 1;
        let rx = self.next_rx;
        self.rx_pending.insert(rx);
        let len = data.len() as u64;
        let io = self.new_io(
            IoKind::PeerWrite {
                rx,
                seq,
                ack,
                resync,
            },
            offset,
            len,
            Some(data),
            fua,
        );
        self.submit_io(io, Access::Write);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn peer_write_done(
        &mut self,
        epoch: u64,
        rx: u64,
        seq: u64,
        ack: bool,
        resync: bool,
        offset: u64,
        len: u64,
        result: Result<(), IoError>,
    ) {
        self.rx_pending.remove(&rx);
        let same_link = self.link.as_ref().is_some_and(|l| l.epoch == epoch);
        match result {
            Ok(()) => {
                if resync {
                    self.stats.resync_bytes_received += len;
                }
                if ack && same_link {
                    self.send(Message::WriteAck { seq });
                }
            }
            Err(e) => {
                self.notice(Notice::IoError(e.0.clone()));
                self.mark_range_out_of_sync(offset, len);
                if same_link {
                    // The write the peer relies on did not happen: drop the link so the peer
                    // marks it out of sync, rather than acknowledge it.
                    self.protocol_error(format!("local write of replicated data failed: {}", e.0));
                }
            }
        }
        self.run_barriers_in();
    }

    /// `Barrier`/`RsBarrier`: flush once everything received before it is on disk.
    fn on_barrier(&mut self, seq: u64, resync: bool) {
        let ranges = if resync {
            Some(std::mem::take(&mut self.rs_landed))
        } else {
            None
        };
        self.barriers_in.push_back((self.next_rx, seq, ranges));
        self.run_barriers_in();
    }

    fn run_barriers_in(&mut self) {
        while let Some((mark, _, _)) = self.barriers_in.front() {
            if self.rx_pending.range(..=*mark).next().is_some() {
                return;
            }
            let (_, seq, ranges) = self.barriers_in.pop_front().expect("front");
            let io = self.new_io(
                IoKind::PeerBarrier {
                    seq,
                    resync_ranges: ranges,
                },
                0,
                0,
                None,
                false,
            );
            self.emit(Output::DiskFlush { io });
        }
    }

    pub(super) fn peer_barrier_done(
        &mut self,
        epoch: u64,
        seq: u64,
        ranges: Option<Vec<(u64, u64)>>,
        result: Result<(), IoError>,
    ) {
        let same_link = self.link.as_ref().is_some_and(|l| l.epoch == epoch);
        if let Err(e) = result {
            self.notice(Notice::IoError(e.0.clone()));
            if same_link {
                self.protocol_error(format!("flush for the peer's barrier failed: {}", e.0));
            }
            return;
        }
        match ranges {
            // Bits are cleared only for the resync they belong to: after the link changed, this
            // node's bitmap may mean something else (it may even be the source now).
            Some(ranges) if same_link => {
                let mut blocks = 0;
                for (first, n) in ranges {
                    self.mark_in_sync(first, n);
                    blocks += n;
                }
                if let Some(t) = self.target.as_mut() {
                    t.done_blocks += blocks;
                }
                self.send(Message::RsBarrierAck { seq });
            }
            Some(_) => {}
            None => {
                if same_link {
                    self.send(Message::BarrierAck { seq });
                }
            }
        }
    }

    /// Keep-alive: ping after `ping-int` of silence, give up after `ping-timeout` more.
    pub(super) fn link_timers(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.ping_sent {
            Some(sent) if sent + self.cfg.ping_timeout <= self.now => {
                let conn = link.conn;
                self.emit(Output::CloseConnection {
                    conn,
                    reason: "ping timeout".into(),
                });
                self.link_lost(
                    "ping timeout: the peer did not answer".into(),
                    ConnState::WFConnection,
                );
            }
            None if link.last_rx + self.cfg.ping_int <= self.now => {
                link.ping_sent = Some(self.now);
                self.send(Message::Ping);
            }
            _ => {}
        }
    }
}

//! The replication state machine of one resource on one node: [`Replica`].
//!
//! Sans-IO, in the style of quinn-proto and raft-rs: the daemon feeds [`Event`]s in with
//! [`Replica::handle`] and admin commands with [`Replica::admin`], wakes it at
//! [`Replica::poll_timeout`] with [`Replica::handle_timeout`], and after each call drains
//! [`Replica::poll_output`] and carries the [`Output`]s out in order (sending, disk I/O,
//! persisting, completing client requests). Time is an argument; the only randomness (new
//! generation UUIDs) comes from the seed the daemon passes at start-up.
//!
//! Invariants are re-checked after every call ([`Replica::check_invariants`]).
//!
//! The parts live in sibling files: `client.rs` (writes, reads, flushes, barriers, activity
//! log, settlement), `link.rs` (connection, handshake, peer writes), `resync.rs` (bitmap
//! exchange and resync), `verify.rs` (online verify), `admin.rs` (drbdadm verbs).

mod admin;
mod client;
mod link;
mod resync;
mod verify;

use super::al::ActivityLog;
use super::config::ReplicaConfig;
use super::gate::{Gate, GateTicket};
use super::handshake::Refusal;
use super::io::*;
use super::rate::RateController;
use super::state;
use super::time::Time;
use super::verify::Digest;
use crate::bitmap::Bitmap;
use crate::types::{ConnState, DiskState, GenerationIds, Role};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

pub use resync::{SourceSync, TargetSync};
pub use verify::{VerifySource, VerifyTarget};

/// What a local disk operation is for.
#[derive(Debug, Clone)]
enum IoKind {
    /// The local half of client write `wseq`.
    ClientWrite { wseq: u64 },
    /// A client read.
    ClientRead { id: ClientId },
    /// A local flush with index `index` (barrier or client flush).
    Flush { index: u64 },
    /// A write received from the peer (`Data` or `RsData`), receive index `rx`.
    PeerWrite {
        rx: u64,
        seq: u64,
        ack: bool,
        resync: bool,
    },
    /// The flush answering the peer's barrier `seq`.
    PeerBarrier {
        seq: u64,
        resync_ranges: Option<Vec<(u64, u64)>>,
    },
    /// A resync read (source).
    ResyncRead { first_block: u64, blocks: u64 },
    /// Digests for verify: as source (`request` None) or answering the peer's request.
    VerifyRead {
        first_block: u64,
        blocks: u64,
        request: Option<(u64, Vec<Digest>)>,
    },
}

#[derive(Debug, Clone)]
struct PendingIo {
    kind: IoKind,
    /// Link epoch when it was issued (answers to the peer go only on the same link).
    epoch: u64,
    /// Set once the gate admitted it (and the output went out).
    ticket: Option<GateTicket>,
    /// Byte range, for the gate.
    offset: u64,
    len: u64,
    /// Data to write, until issued.
    data: Option<Bytes>,
    fua: bool,
}

/// The current connection.
#[derive(Debug, Clone)]
struct Link {
    conn: ConnId,
    epoch: u64,
    /// Peer's Hello, once received.
    peer_hello: Option<super::handshake::Hello>,
    /// Last time anything arrived.
    last_rx: Time,
    /// A ping is outstanding since.
    ping_sent: Option<Time>,
    /// Barriers sent and not acknowledged.
    barriers_out: BTreeSet<u64>,
    /// Bitmap exchange: our parts sent / peer's last part received / sync UUID seen.
    bitmap_received: bool,
    /// Handshake decided we resync (direction, full).
    pending_sync: Option<(super::handshake::SyncDirection, bool)>,
}

/// The replication state machine of one resource on one node.
#[derive(Debug)]
pub struct Replica {
    cfg: ReplicaConfig,
    rng: u64,
    now: Time,
    role: Role,
    peer_role: Role,
    disk: DiskState,
    peer_disk: DiskState,
    conn: ConnState,
    uuids: GenerationIds,
    flags: MdFlags,
    bitmap: Bitmap,
    al: ActivityLog,
    refusal: Option<Refusal>,
    discard_my_data: bool,
    crashed_primary: bool,
    /// A promotion waits for the peer's answer (`--force` given).
    promoting: Option<bool>,
    link: Option<Link>,
    link_epoch: u64,
    gate: Gate<IoId>,
    /// Next sequence number for Data/Barrier/RsData/RsBarrier: never reused, across links too,
    /// so that an acknowledgement can only ever name the message it answers.
    next_seq: u64,
    ios: HashMap<IoId, PendingIo>,
    next_io: u64,
    // Client writes (client.rs).
    writes: BTreeMap<u64, client::WriteReq>,
    seq_to_wseq: HashMap<u64, u64>,
    next_wseq: u64,
    al_wait: VecDeque<u64>,
    writes_in_flight: usize,
    write_bytes_in_flight: u64,
    unsettled: usize,
    unsettled_bytes: u64,
    oldest_unsettled: Option<Time>,
    flushes_issued: u64,
    flushes_covered: u64,
    client_flushes: BTreeMap<u64, client::FlushReq>,
    next_flush: u64,
    reads_in_flight: usize,
    app_sectors_this_step: u64,
    // Peer side (link.rs).
    next_rx: u64,
    rx_pending: BTreeSet<u64>,
    /// Barriers received and waiting for earlier peer writes: (receive mark, seq, resync runs).
    barriers_in: VecDeque<(u64, u64, Option<resync::BlockRuns>)>,
    rs_landed: Vec<(u64, u64)>,
    // Resync and verify.
    source: Option<SourceSync>,
    target: Option<TargetSync>,
    verify_source: Option<VerifySource>,
    verify_target: Option<VerifyTarget>,
    controller: Option<RateController>,
    next_step: Option<Time>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

/// Counters for status, benchmarks and the simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of resync data sent as SyncSource.
    pub resync_bytes_sent: u64,
    /// Bytes of resync data written as SyncTarget.
    pub resync_bytes_received: u64,
    /// Bytes of replicated application data sent.
    pub data_bytes_sent: u64,
    /// Resyncs completed as source.
    pub resyncs_completed: u64,
    /// Verify runs completed.
    pub verifies_completed: u64,
    /// Blocks found different by the last verify.
    pub last_verify_mismatches: u64,
    /// Handshakes that ended in a refusal.
    pub refusals: u64,
}

impl Replica {
    /// A replica started from persisted meta-data. `seed` feeds the generation of new UUIDs
    /// (the daemon passes OS randomness; the simulation a seeded value). If the node went down
    /// as Primary (flags.primary), its activity log is applied to the bitmap now and the AL
    /// cleared; the handshake will treat it as a crashed Primary. The disk comes up
    /// Inconsistent, Outdated or Consistent, never UpToDate: only the peer (or `--force`) can
    /// say it is the newest.
    ///
    /// `cfg.size_bytes` must be a multiple of 4 KiB (the daemon rounds the usable size down).
    pub fn new(cfg: ReplicaConfig, persisted: Persisted, seed: u64, now: Time) -> Replica {
        assert!(
            cfg.size_bytes.is_multiple_of(crate::bitmap::BLOCK_SIZE),
            "device size {} is not a multiple of 4 KiB",
            cfg.size_bytes
        );
        assert_eq!(
            persisted.bitmap.blocks(),
            cfg.size_bytes.div_ceil(crate::bitmap::BLOCK_SIZE),
            "bitmap size does not match the device"
        );
        let disk = if !persisted.flags.consistent {
            DiskState::Inconsistent
        } else if persisted.flags.outdated {
            DiskState::Outdated
        } else if cfg.standalone {
            // No peer exists that could hold newer data.
            DiskState::UpToDate
        } else {
            DiskState::Consistent
        };
        let al_extents = cfg.al_extents;
        let mut r = Replica {
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            now,
            role: Role::Secondary,
            peer_role: Role::Unknown,
            disk,
            peer_disk: DiskState::DUnknown,
            conn: ConnState::StandAlone,
            uuids: super::uuids::with_primary_flag(persisted.uuids, false),
            flags: persisted.flags,
            bitmap: persisted.bitmap,
            al: ActivityLog::new(al_extents),
            refusal: None,
            discard_my_data: false,
            crashed_primary: persisted.flags.primary,
            promoting: None,
            link: None,
            link_epoch: 0,
            gate: Gate::default(),
            next_seq: 1,
            ios: HashMap::new(),
            next_io: 0,
            writes: BTreeMap::new(),
            seq_to_wseq: HashMap::new(),
            next_wseq: 0,
            al_wait: VecDeque::new(),
            writes_in_flight: 0,
            write_bytes_in_flight: 0,
            unsettled: 0,
            unsettled_bytes: 0,
            oldest_unsettled: None,
            flushes_issued: 0,
            flushes_covered: 0,
            client_flushes: BTreeMap::new(),
            next_flush: 0,
            reads_in_flight: 0,
            app_sectors_this_step: 0,
            next_rx: 0,
            rx_pending: BTreeSet::new(),
            barriers_in: VecDeque::new(),
            rs_landed: vec![],
            source: None,
            target: None,
            verify_source: None,
            verify_target: None,
            controller: None,
            next_step: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            cfg,
        };
        if !persisted.al.is_empty() {
            if r.flags.primary {
                for e in &persisted.al {
                    r.mark_extent_out_of_sync(*e);
                }
            }
            // Clearing the AL is a sync point: the bits just set reach the disk first.
            r.emit(Output::AlUpdate {
                activate: vec![],
                evict: persisted.al.clone(),
            });
        }
        r.check_invariants();
        r
    }

    /// Handles one event at time `now`.
    pub fn handle(&mut self, now: Time, event: Event) {
        self.now = self.now.max(now);
        match event {
            Event::ClientWrite {
                id,
                offset,
                data,
                fua,
            } => self.client_write(id, offset, data, fua),
            Event::ClientRead { id, offset, len } => self.client_read(id, offset, len),
            Event::ClientFlush { id } => self.client_flush(id),
            Event::DiskWriteDone { io, result } => self.disk_write_done(io, result),
            Event::DiskReadDone { io, result } => self.disk_read_done(io, result),
            Event::DiskFlushDone { io, result } => self.disk_flush_done(io, result),
            Event::DigestsDone { io, result } => self.digests_done(io, result),
            Event::PeerConnected { conn } => self.peer_connected(conn),
            Event::PeerMessage { conn, msg } => self.peer_message(conn, msg),
            Event::PeerDisconnected { conn, reason } => self.peer_disconnected(conn, reason),
        }
        self.check_invariants();
    }

    /// Runs an admin command at time `now`. On error nothing changed. [`AdminDone::Pending`]:
    /// the command waits for the peer (a promotion while connected); its outcome comes as
    /// [`Output::AdminResult`].
    pub fn admin(&mut self, now: Time, cmd: AdminCommand) -> Result<AdminDone, AdminError> {
        self.now = self.now.max(now);
        let done = |r: Result<(), AdminError>| r.map(|()| AdminDone::Done);
        let r = match cmd {
            AdminCommand::Primary { force } => self.cmd_primary(force),
            AdminCommand::Secondary => done(self.cmd_secondary()),
            AdminCommand::Connect { discard_my_data } => done(self.cmd_connect(discard_my_data)),
            AdminCommand::Disconnect => done(self.cmd_disconnect()),
            AdminCommand::Invalidate => done(self.cmd_invalidate()),
            AdminCommand::Verify => done(self.cmd_verify()),
        };
        self.check_invariants();
        r
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the machine next wants [`Replica::handle_timeout`] (None: no timer armed).
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t: Option<Time> = self.next_step;
        let mut consider = |x: Time| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(l) = &self.link {
            match l.ping_sent {
                Some(s) => consider(s + self.cfg.ping_timeout),
                None => consider(l.last_rx + self.cfg.ping_int),
            }
        }
        if let Some(o) = self.oldest_unsettled {
            consider(o + self.cfg.barrier_interval);
        }
        t
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.link_timers();
        if self
            .oldest_unsettled
            .is_some_and(|o| o + self.cfg.barrier_interval <= self.now)
        {
            self.issue_barrier(None);
        }
        if self.next_step.is_some_and(|t| t <= self.now) {
            self.controller_step();
        }
        self.check_invariants();
    }

    /// A snapshot for `status`.
    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            peer_role: self.peer_role,
            disk: self.disk,
            peer_disk: self.peer_disk,
            conn: self.conn,
            protocol: self.cfg.protocol,
            uuids: self.uuids,
            out_of_sync_blocks: self.bitmap.count(),
            refusal: self.refusal.clone(),
            resync: self.resync_progress(),
            verify: self.verify_progress(),
            writes_in_flight: self.writes_in_flight,
            unsettled_writes: self.unsettled,
            al_extents: self.al.len(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    /// The in-memory bitmap.
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmap
    }

    /// The hot activity-log extents.
    pub fn al_extents(&self) -> Vec<u64> {
        self.al.hot().collect()
    }

    /// How many more writes (and bytes) the daemon may submit now.
    pub fn write_credit(&self) -> WriteCredit {
        let l = &self.cfg.limits;
        let writes = l
            .max_writes_in_flight
            .saturating_sub(self.writes_in_flight)
            .min(
                l.max_unsettled_writes
                    .saturating_sub(self.unsettled + self.writes_in_flight),
            );
        let bytes = l
            .max_write_bytes_in_flight
            .saturating_sub(self.write_bytes_in_flight)
            .min(
                l.max_unsettled_bytes
                    .saturating_sub(self.unsettled_bytes + self.write_bytes_in_flight),
            );
        WriteCredit {
            writes,
            bytes: if writes == 0 { 0 } else { bytes },
        }
    }

    /// Whether nothing is in flight: no local I/O, no client request, nothing unsettled, no
    /// resync or verify running. (For tests and clean shutdown.)
    pub fn is_quiescent(&self) -> bool {
        self.ios.is_empty()
            && self.writes.is_empty()
            && self.client_flushes.is_empty()
            && self.source.is_none()
            && self.target.is_none()
            && self.verify_source.is_none()
            && self.verify_target.is_none()
    }

    /// A one-line summary of what is in flight, for logs when something seems stuck.
    pub fn debug_in_flight(&self) -> String {
        let writes: Vec<String> = self
            .writes
            .iter()
            .map(|(k, w)| {
                format!(
                    "w{k}@{}+{} {:?}/{:?} seq {:?} done {} settled {}",
                    w.offset, w.len, w.local, w.net, w.seq, w.client_done, w.peer_settled
                )
            })
            .collect();
        let ios: Vec<String> = self
            .ios
            .iter()
            .map(|(k, p)| format!("{k:?}:{:?} gate {}", p.kind, p.ticket.is_some()))
            .collect();
        format!(
            "writes [{}] al_wait {:?} gate {} ios [{}] flushes {:?} covered {}/{} al {:?}",
            writes.join(", "),
            self.al_wait,
            self.gate.len(),
            ios.join(", "),
            self.client_flushes.keys().collect::<Vec<_>>(),
            self.flushes_covered,
            self.flushes_issued,
            self.al.hot().collect::<Vec<_>>()
        )
    }

    /// Checks the invariants that must hold between events; panics (a bug) if one does not.
    pub fn check_invariants(&self) {
        use ConnState::*;
        assert!(
            self.role != Role::Primary || self.disk == DiskState::UpToDate,
            "Primary with {} data",
            self.disk
        );
        let linked = !matches!(self.conn, StandAlone | WFConnection | Disconnecting);
        assert_eq!(
            linked,
            self.link.is_some(),
            "connection state {} with link {:?}",
            self.conn,
            self.link.as_ref().map(|l| l.conn)
        );
        if self.link.is_none() {
            assert_eq!(
                (self.peer_role, self.peer_disk),
                (Role::Unknown, DiskState::DUnknown),
                "peer state known without a link"
            );
        }
        assert_eq!(
            self.source.is_some(),
            self.conn == SyncSource,
            "source state vs {}",
            self.conn
        );
        assert_eq!(
            self.target.is_some(),
            self.conn == SyncTarget,
            "target state vs {}",
            self.conn
        );
        assert_eq!(
            self.verify_source.is_some(),
            self.conn == VerifyS,
            "verify source vs {}",
            self.conn
        );
        assert_eq!(
            self.verify_target.is_some(),
            self.conn == VerifyT,
            "verify target vs {}",
            self.conn
        );
        if self.conn == SyncTarget {
            assert_eq!(
                self.disk,
                DiskState::Inconsistent,
                "SyncTarget with {} data",
                self.disk
            );
            assert_ne!(self.role, Role::Primary, "Primary as SyncTarget");
        }
        if self.role == Role::Primary && self.peer_role == Role::Primary {
            assert!(
                self.cfg.allow_two_primaries,
                "two Primaries without allow-two-primaries"
            );
        }
        assert!(
            self.writes_in_flight <= self.cfg.limits.max_writes_in_flight,
            "writes in flight past the bound"
        );
        assert!(self.bitmap.count() <= self.bitmap.blocks());
        assert!(self.flushes_covered <= self.flushes_issued);
        // The counters against a recount: O(writes), so only in debug builds (tests, simulation).
        if cfg!(debug_assertions) {
            assert_eq!(
                self.writes.values().filter(|w| !w.client_done).count(),
                self.writes_in_flight,
                "writes in flight count"
            );
            assert_eq!(
                self.writes.values().filter(|w| w.client_done).count(),
                self.unsettled,
                "unsettled count"
            );
        }
        if self.role == Role::Primary || self.al.busy() {
            assert!(
                self.flags.primary,
                "Primary or unsettled writes without the primary indicator"
            );
        }
    }

    // ---- small helpers shared by the parts ----

    fn emit(&mut self, o: Output) {
        self.outputs.push_back(o);
    }

    fn notice(&mut self, n: Notice) {
        self.emit(Output::Notice(n));
    }

    fn fresh_u64(&mut self) -> u64 {
        // SplitMix64: a well-known, stable generator; only used for generation UUIDs.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn set_conn(&mut self, next: ConnState) {
        let from = self.conn;
        state::conn_transition(&mut self.conn, next);
        self.notice(Notice::Conn { from, to: next });
    }

    fn set_disk(&mut self, next: DiskState) {
        if self.disk == next {
            return;
        }
        let from = self.disk;
        state::disk_transition(&mut self.disk, next);
        self.notice(Notice::Disk { from, to: next });
        let consistent = next != DiskState::Inconsistent;
        let outdated = next == DiskState::Outdated;
        if self.flags.consistent != consistent || self.flags.outdated != outdated {
            self.flags.consistent = consistent;
            self.flags.outdated = outdated;
            self.emit(Output::PersistFlags(self.flags));
        }
        self.send_state();
    }

    fn set_role(&mut self, next: Role) {
        let from = self.role;
        state::role_transition(&mut self.role, next);
        self.notice(Notice::Role { from, to: next });
        self.uuids = super::uuids::with_primary_flag(self.uuids, next == Role::Primary);
        self.emit(Output::PersistUuids(self.uuids));
        self.send_state();
    }

    fn set_uuids(&mut self, ids: GenerationIds) {
        let ids = super::uuids::with_primary_flag(ids, self.role == Role::Primary);
        if ids != self.uuids {
            self.uuids = ids;
            self.emit(Output::PersistUuids(ids));
        }
    }

    /// New current UUID if none is pending (a Primary losing its peer, a lone promotion).
    fn new_current_uuid_if_needed(&mut self) {
        if super::uuids::needs_new_current(&self.uuids) {
            let fresh = self.fresh_u64();
            self.uuids = super::uuids::new_current(self.uuids, fresh, self.role == Role::Primary);
            self.emit(Output::PersistUuids(self.uuids));
            self.notice(Notice::NewCurrentUuid(self.uuids));
        }
    }

    fn send(&mut self, msg: crate::wire::Message) {
        if let Some(l) = &self.link {
            let conn = l.conn;
            self.emit(Output::Send { conn, msg });
        }
    }

    fn send_state(&mut self) {
        if self.link.as_ref().is_some_and(|l| l.peer_hello.is_some()) {
            self.send(crate::wire::Message::State {
                role: self.role,
                disk: self.disk,
            });
        }
    }

    fn new_io(
        &mut self,
        kind: IoKind,
        offset: u64,
        len: u64,
        data: Option<Bytes>,
        fua: bool,
    ) -> IoId {
        self.next_io += 1;
        let io = IoId(self.next_io);
        self.ios.insert(
            io,
            PendingIo {
                kind,
                epoch: self.link_epoch,
                ticket: None,
                offset,
                len,
                data,
                fua,
            },
        );
        io
    }

    /// Submits `io` through the conflict gate (or issues it at once for flushes, which have no range).
    fn submit_io(&mut self, io: IoId, access: super::gate::Access) {
        let p = &self.ios[&io];
        if let Some((ticket, io)) = self.gate.submit(p.offset, p.len, access, io) {
            self.start_io(io, ticket);
        }
    }

    fn start_io(&mut self, io: IoId, ticket: GateTicket) {
        let p = self.ios.get_mut(&io).expect("started io is pending");
        p.ticket = Some(ticket);
        let (offset, len, fua) = (p.offset, p.len, p.fua);
        let data = p.data.take();
        match p.kind.clone() {
            IoKind::ClientWrite { wseq } => {
                self.start_client_write(io, wseq, data.expect("write data"))
            }
            IoKind::PeerWrite { .. } => self.emit(Output::DiskWrite {
                io,
                offset,
                data: data.expect("write data"),
                fua,
            }),
            IoKind::ClientRead { .. } | IoKind::ResyncRead { .. } => {
                self.emit(Output::DiskRead { io, offset, len })
            }
            IoKind::VerifyRead {
                first_block,
                blocks,
                ..
            } => {
                let alg = self.verify_alg();
                self.emit(Output::ComputeDigests {
                    io,
                    first_block,
                    blocks,
                    alg,
                });
            }
            IoKind::Flush { .. } | IoKind::PeerBarrier { .. } => {
                unreachable!("flushes do not go through the gate")
            }
        }
    }

    /// Releases the gate slot of a finished io and starts what waited on it.
    fn release_io(&mut self, io: IoId) -> Option<PendingIo> {
        let p = self.ios.remove(&io)?;
        if let Some(t) = p.ticket {
            for (ticket, next) in self.gate.complete(t) {
                self.start_io(next, ticket);
            }
        }
        Some(p)
    }

    fn mark_out_of_sync(&mut self, first_block: u64, blocks: u64) {
        let mut changed = false;
        for b in first_block..first_block + blocks {
            changed |= self.bitmap.set(b);
        }
        if changed {
            self.emit(Output::MarkOutOfSync {
                first_block,
                blocks,
            });
        }
    }

    fn mark_range_out_of_sync(&mut self, offset: u64, len: u64) {
        let r = crate::bitmap::blocks_of(offset, len);
        self.mark_out_of_sync(r.start, r.end - r.start);
    }

    fn mark_in_sync(&mut self, first_block: u64, blocks: u64) {
        let mut changed = false;
        for b in first_block..first_block + blocks {
            changed |= self.bitmap.clear(b);
        }
        if changed {
            self.emit(Output::MarkInSync {
                first_block,
                blocks,
            });
        }
    }

    fn mark_extent_out_of_sync(&mut self, extent: u64) {
        let per = super::al::AL_EXTENT_BYTES / crate::bitmap::BLOCK_SIZE;
        let first = extent.saturating_mul(per);
        if first >= self.bitmap.blocks() {
            return;
        }
        let n = per.min(self.bitmap.blocks() - first);
        self.mark_out_of_sync(first, n);
    }

    /// Clears the primary indicator once this node is Secondary, has nothing unsettled and no
    /// crashed-Primary state is left to report in a handshake; drops the idle AL extents.
    fn maybe_clear_primary_flag(&mut self) {
        if self.role == Role::Primary
            || self.al.busy()
            || self.crashed_primary
            || !self.writes.is_empty()
        {
            return;
        }
        let change = self.al.clear_idle();
        if !change.is_empty() {
            self.emit(Output::AlUpdate {
                activate: change.activate,
                evict: change.evict,
            });
        }
        if self.flags.primary {
            self.flags.primary = false;
            self.emit(Output::PersistFlags(self.flags));
        }
    }

    fn verify_alg(&self) -> super::verify::VerifyAlg {
        self.verify_source
            .as_ref()
            .map(|v| v.alg)
            .or(self.verify_target.as_ref().map(|v| v.alg))
            .or(self.cfg.verify_alg)
            .unwrap_or(super::verify::VerifyAlg::Crc32c)
    }

    fn replicating(&self) -> bool {
        use ConnState::*;
        self.link.is_some()
            && matches!(
                self.conn,
                Connected | SyncSource | SyncTarget | VerifyS | VerifyT
            )
            && matches!(
                self.peer_disk,
                DiskState::Inconsistent
                    | DiskState::Outdated
                    | DiskState::Consistent
                    | DiskState::UpToDate
            )
    }
}

#[cfg(test)]
mod tests;

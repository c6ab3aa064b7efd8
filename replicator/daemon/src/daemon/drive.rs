//! Carrying out the replication machine's outputs, in order, under the persistence contract
//! (docs/replication.md §1):
//!
//! - `PersistUuids`, `PersistFlags` and `AlUpdate` are *sync points*. The queue stops at one;
//!   the sync point — merged with the sync points right behind it — becomes one meta-data job:
//!   every dirty bitmap page first (written and flushed), then the activity-log transactions and
//!   the superblock, then a flush. Only when that job is durable does the queue move on.
//! - `MarkOutOfSync` / `MarkInSync` change the daemon's copy of the bitmap when they are carried
//!   out; the pages reach the disk at the next sync point, on the tick when idle, or at detach.
//! - Disk work starts inline: a buffered write or read the page cache takes at once completes
//!   on its first poll, without a task or a thread hop; its completion is handed back to the
//!   machine when the queue has been carried out. Anything that would block runs in a task
//!   and comes back as an event.
//!
//! The queue has no bound of its own: it holds what the machine emitted, which the machine's
//! limits bound (writes in flight, resync window, verify window).

use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use replicator_core::bitmap::BLOCK_SIZE;
use replicator_core::meta::superblock::Flags;
use replicator_core::meta::{AlTransaction, bmpage};
use replicator_core::protocol::handshake::{Refusal, SyncDirection};
use replicator_core::protocol::verify::digest;
use replicator_core::protocol::{
    AdminCommand, ClientError, Event as MEvent, Handler, IoError, IoId, MdFlags, Notice, Output,
};
use replicator_core::wire::Message;
use tandem_nbd::{Backend, ZeroFlags};
use tracing::{debug, error, info, warn};

use super::event::{Disk, Event, IoDone};
use super::meta_io::{Done, Job};
use super::peer::LinkAction;
use super::up::{ClientOp, Ctx, Item, Up, VerifyResult};
use crate::control::Response;
use crate::exit::Exit;

/// Zeroes handed to the machine for TRIM and WRITE_ZEROES (one chunk at most). A disk write
/// whose buffer lies in here is carried out as a zeroing (a punched hole), not a write.
pub static ZEROES: [u8; MAX_CHUNK_LEN] = [0; MAX_CHUNK_LEN];
/// The longest request the machine takes (`gate::MAX_OP_BYTES`): longer NBD requests are split.
pub const MAX_CHUNK: u64 = replicator_core::protocol::gate::MAX_OP_BYTES;
// 8 MiB fits every usize this code targets.
#[allow(clippy::cast_possible_truncation)]
const MAX_CHUNK_LEN: usize = MAX_CHUNK as usize;
const BLOCK_LEN: usize = replicator_core::meta::BLOCK_LEN;

fn is_zeroes(b: &Bytes) -> bool {
    let start = ZEROES.as_ptr() as usize;
    let p = b.as_ptr() as usize;
    !b.is_empty() && p >= start && p + b.len() <= start + ZEROES.len()
}

fn io_err(e: io::Error) -> IoError {
    IoError(e.to_string())
}

/// Whether an output is a sync point.
fn is_sync_point(o: &Output) -> bool {
    matches!(
        o,
        Output::PersistUuids(_) | Output::PersistFlags(_) | Output::AlUpdate { .. }
    )
}

/// The superblock flags for the machine's flags: MDF_CONSISTENT, MDF_WAS_UP_TO_DATE (clear =
/// Outdated), MDF_PRIMARY_IND; clearing the primary indicator also clears CRASHED_PRIMARY
/// (the crash it reported has been dealt with by a handshake or a clean demotion).
pub fn apply_md_flags(flags: Flags, f: MdFlags) -> Flags {
    let mut out = flags
        .with(Flags::CONSISTENT, f.consistent)
        .with(Flags::WAS_UP_TO_DATE, f.consistent && !f.outdated)
        .with(Flags::PRIMARY_IND, f.primary);
    if !f.primary {
        out = out.with(Flags::CRASHED_PRIMARY, false);
    }
    out
}

/// The machine's flags from the superblock's (the inverse of [`apply_md_flags`]). A node whose
/// attach found it crashed as Primary (CRASHED_PRIMARY) reports `primary`, so that its handshake
/// treats it as a crashed Primary.
pub fn md_flags_of(flags: Flags) -> MdFlags {
    let consistent = flags.has(Flags::CONSISTENT);
    MdFlags {
        consistent,
        outdated: consistent && !flags.has(Flags::WAS_UP_TO_DATE),
        primary: flags.has(Flags::PRIMARY_IND) || flags.has(Flags::CRASHED_PRIMARY),
    }
}

impl Up {
    /// Moves the machine's outputs into the queue.
    pub fn drain(&mut self) {
        while let Some(o) = self.replica.poll_output() {
            self.queue.push_back(Item::Out(o));
        }
    }

    /// Feeds an event to the machine and carries out what follows.
    pub fn feed(&mut self, ev: MEvent, name: &Arc<str>, ctx: &Ctx) {
        self.replica.handle(ctx.now(), ev);
        self.pump(name, ctx);
    }

    /// Carries out queued outputs until the queue is empty or waits for a sync point; reports
    /// inline completions; hands waiting requests to the machine while it gives credit.
    pub fn pump(&mut self, name: &Arc<str>, ctx: &Ctx) {
        loop {
            self.drain();
            while self.blocked.is_none() {
                let Some(item) = self.queue.pop_front() else {
                    break;
                };
                self.execute(item, name, ctx);
            }
            let mut progressed = false;
            if !self.inline_done.is_empty() {
                let now = ctx.now();
                for (io, d) in std::mem::take(&mut self.inline_done) {
                    self.replica.handle(now, d.into_event(io));
                }
                progressed = true;
            }
            progressed |= self.feed_held(name, ctx);
            self.drain();
            if !progressed && (self.blocked.is_some() || self.queue.is_empty()) {
                break;
            }
        }
        if cfg!(debug_assertions) && self.queue.is_empty() && self.blocked.is_none() {
            assert_eq!(
                &self.bitmap,
                self.replica.bitmap(),
                "the daemon's bitmap differs from the machine's"
            );
        }
    }

    fn execute(&mut self, item: Item, name: &Arc<str>, ctx: &Ctx) {
        match item {
            Item::Reply(r, resp) => {
                let _ = r.send(resp);
            }
            Item::Promoted(r, resp) => {
                self.open_export(name, ctx);
                let _ = r.send(resp);
            }
            Item::Out(o) => self.output(o, name, ctx),
        }
    }

    fn output(&mut self, o: Output, name: &Arc<str>, ctx: &Ctx) {
        match o {
            Output::Send { conn, msg } => {
                match &msg {
                    Message::Data { data, .. } => {
                        self.counters.net_sent += data.len() as u64;
                        self.counters.data_sent += data.len() as u64;
                    }
                    Message::RsData { data, .. } => {
                        self.counters.net_sent += data.len() as u64;
                        self.counters.resync_sent += data.len() as u64;
                    }
                    _ => {}
                }
                let action = match self.link.as_mut() {
                    Some(l) => l.send(conn, msg),
                    None => LinkAction::None,
                };
                if let LinkAction::Lost(conn, reason) = action {
                    self.replica
                        .handle(ctx.now(), MEvent::PeerDisconnected { conn, reason });
                }
            }
            Output::CloseConnection { conn, reason } => {
                debug!(resource = %name, node = %ctx.node, conn = conn.0, reason = %reason, "closing the peer connection");
                if let Some(l) = self.link.as_mut() {
                    l.close(conn);
                }
            }
            Output::DiskWrite {
                io,
                offset,
                data,
                fua,
            } => {
                self.counters.disk_written += data.len() as u64;
                if !fua && !is_zeroes(&data) && self.inline.try_inline(data.len()) {
                    let (t, sleeps) = (Instant::now(), voluntary_switches());
                    let r = self.file.write_all_at(&data, offset).map_err(io_err);
                    self.inline.took(t.elapsed(), voluntary_switches() > sleeps);
                    self.inline_done.push((io, IoDone::Write(r)));
                    return;
                }
                self.inline.pooled += 1;
                let backend = self.data.clone();
                if is_zeroes(&data) {
                    let len = data.len() as u64;
                    let flags = ZeroFlags {
                        fua,
                        no_hole: false,
                        fast: false,
                    };
                    self.run_io(io, name, ctx, async move {
                        IoDone::Write(
                            Backend::write_zeroes(&backend, offset, len, flags)
                                .await
                                .map_err(io_err),
                        )
                    });
                } else {
                    self.run_io(io, name, ctx, async move {
                        IoDone::Write(backend.write_at(offset, data, fua).await.map_err(io_err))
                    });
                }
            }
            Output::DiskRead { io, offset, len } => {
                self.counters.disk_read += len;
                let n = usize::try_from(len).expect("the machine reads at most 8 MiB at once");
                if self.inline.try_inline(n) {
                    // Resync reads: the page cache usually has them (tmpfs and ext4 have no
                    // RWF_NOWAIT reads that would tell), and a pool hop per 128 KiB costs more
                    // than the copy.
                    let mut buf = vec![0u8; n];
                    let (t, sleeps) = (Instant::now(), voluntary_switches());
                    let r = self.file.read_exact_at(&mut buf, offset);
                    self.inline.took(t.elapsed(), voluntary_switches() > sleeps);
                    let r = r.map(|()| Bytes::from(buf)).map_err(io_err);
                    self.inline_done.push((io, IoDone::Read(r)));
                    return;
                }
                self.inline.pooled += 1;
                let backend = self.data.clone();
                let len = u32::try_from(len).expect("the machine reads at most 8 MiB at once");
                self.run_io(io, name, ctx, async move {
                    IoDone::Read(
                        backend
                            .read_at(offset, len)
                            .await
                            .map(Bytes::from)
                            .map_err(io_err),
                    )
                });
            }
            Output::DiskFlush { io } => {
                if self.disk_flushes {
                    let backend = self.data.clone();
                    self.run_io(io, name, ctx, async move {
                        IoDone::Flush(backend.sync().await.map_err(io_err))
                    });
                } else {
                    self.inline_done.push((io, IoDone::Flush(Ok(()))));
                }
            }
            Output::ComputeDigests {
                io,
                first_block,
                blocks,
                alg,
            } => {
                self.counters.disk_read += blocks * BLOCK_SIZE;
                let backend = self.data.clone();
                self.local_in_flight += 1;
                let (events, resource) = (ctx.events.clone(), name.clone());
                tokio::spawn(async move {
                    let len = u32::try_from(blocks * BLOCK_SIZE).expect("at most 256 blocks");
                    let r = match backend.read_at(first_block * BLOCK_SIZE, len).await {
                        Ok(buf) => tokio::task::spawn_blocking(move || {
                            buf.chunks(BLOCK_LEN)
                                .map(|b| digest(alg, b))
                                .collect::<Vec<_>>()
                        })
                        .await
                        .map_err(|e| IoError(format!("digest task failed: {e}"))),
                        Err(e) => Err(io_err(e)),
                    };
                    let _ = events
                        .send(Event::Disk(Disk::Io {
                            resource,
                            io,
                            done: IoDone::Digests(r),
                        }))
                        .await;
                });
            }
            Output::ClientDone { id, result } => self.client_done(id.0, result),
            Output::ClientReadDone { .. } => {
                unreachable!("replicatord reads from the file directly, never through the machine")
            }
            Output::PersistUuids(_) | Output::PersistFlags(_) | Output::AlUpdate { .. } => {
                self.persist(o, name, ctx)
            }
            Output::MarkOutOfSync {
                first_block,
                blocks,
            } => self.mark(first_block, blocks, true),
            Output::MarkInSync {
                first_block,
                blocks,
            } => self.mark(first_block, blocks, false),
            Output::AdminResult { cmd, result } => self.admin_result(cmd, result, name, ctx),
            Output::CallHandler(h) => {
                let (which, cmd) = match h {
                    Handler::SplitBrain => ("split-brain", self.handlers.split_brain.clone()),
                    Handler::InitialSplitBrain => (
                        "initial-split-brain",
                        self.handlers.initial_split_brain.clone(),
                    ),
                    Handler::PriLostAfterSb => {
                        ("pri-lost-after-sb", self.handlers.pri_lost_after_sb.clone())
                    }
                };
                self.run_handler(which, cmd, name, ctx);
            }
            Output::Notice(n) => self.notice(n, name, ctx),
        }
    }

    /// Starts a disk operation: inline if it completes on its first poll, else in a task.
    fn run_io(
        &mut self,
        io: IoId,
        name: &Arc<str>,
        ctx: &Ctx,
        fut: impl Future<Output = IoDone> + Send + 'static,
    ) {
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(d) => self.inline_done.push((io, d)),
            std::task::Poll::Pending => {
                self.local_in_flight += 1;
                let (events, resource) = (ctx.events.clone(), name.clone());
                tokio::spawn(async move {
                    let done = fut.await;
                    let _ = events
                        .send(Event::Disk(Disk::Io { resource, io, done }))
                        .await;
                });
            }
        }
    }

    /// A disk operation that ran in a task finished.
    pub fn io_done(&mut self, io: IoId, done: IoDone, name: &Arc<str>, ctx: &Ctx) {
        self.local_in_flight = self.local_in_flight.saturating_sub(1);
        self.feed(done.into_event(io), name, ctx);
    }

    fn mark(&mut self, first_block: u64, blocks: u64, set: bool) {
        for b in first_block..first_block + blocks {
            let changed = if set {
                self.bitmap.set(b)
            } else {
                self.bitmap.clear(b)
            };
            if changed {
                self.dirty.insert(bmpage::page_of_block(b));
            }
        }
    }

    /// A sync point (and those right behind it) become one meta-data job; the queue waits.
    fn persist(&mut self, first: Output, name: &Arc<str>, ctx: &Ctx) {
        let mut sb_changed = false;
        let mut txs: Vec<AlTransaction> = Vec::new();
        let mut o = first;
        loop {
            match o {
                Output::PersistUuids(gi) => {
                    self.sb.gi = gi;
                    sb_changed = true;
                }
                Output::PersistFlags(f) => {
                    self.sb.flags = apply_md_flags(self.sb.flags, f);
                    sb_changed = true;
                }
                Output::AlUpdate { activate, evict } if self.al_enabled => {
                    txs.extend(self.record_al(&activate, &evict));
                }
                Output::AlUpdate { .. } => {}
                other => unreachable!("not a sync point: {other:?}"),
            }
            match self.queue.front() {
                Some(Item::Out(next)) if is_sync_point(next) => {
                    let Some(Item::Out(next)) = self.queue.pop_front() else {
                        unreachable!()
                    };
                    o = next;
                }
                _ => break,
            }
        }
        let pages = self.take_dirty_pages(usize::MAX);
        if pages.is_empty() && txs.is_empty() && !sb_changed {
            return; // al-updates off and nothing else: nothing to wait for
        }
        self.groups += 1;
        let group = self.groups;
        let mut records: Vec<(u64, Vec<u8>)> = txs
            .iter()
            .map(|t| {
                (
                    self.layout
                        .al_slot_offset(t.ring_slot(self.layout.al_slots)),
                    t.encode().to_vec(),
                )
            })
            .collect();
        let mut done = vec![Done::Group(group)];
        if let Some(t) = txs.last() {
            done.push(Done::Al(t.seq, txs.len() as u64));
        }
        if sb_changed {
            self.sb.seq += 1;
            records.push(super::resource::sb_record(&self.layout, &self.sb));
            done.push(Done::Superblock(self.sb.seq));
        }
        self.counters.bitmap_writes += pages.len() as u64;
        self.meta.push(Job {
            pages,
            records,
            done,
        });
        self.meta.kick(name, ctx.events);
        self.blocked = Some(group);
    }

    /// The activity-log transactions for one change of the hot set (split so that each fits:
    /// evictions first, in chunks, then the activations).
    fn record_al(&mut self, activate: &[u64], evict: &[u64]) -> Vec<AlTransaction> {
        let to32 = |v: &[u64]| -> Vec<u32> {
            v.iter()
                .map(|e| u32::try_from(*e).expect("extent numbers of a device below 16 PiB"))
                .collect()
        };
        let (act, ev) = (to32(activate), to32(evict));
        let mut out = Vec::new();
        let max = replicator_core::meta::al::MAX_UPDATES;
        let mut rest: &[u32] = &ev;
        while rest.len() > max {
            let (chunk, tail) = rest.split_at(max);
            if let Some(t) = self.al.record(&[], chunk).expect("evictions always fit") {
                out.push(t);
            }
            rest = tail;
        }
        match self.al.record(&act, rest) {
            Ok(Some(t)) => out.push(t),
            Ok(None) => {}
            Err(e) => {
                panic!("the machine's hot set does not fit the on-disk activity log ({e}): a bug")
            }
        }
        out
    }

    /// Up to `max` dirty bitmap pages, encoded, removed from the dirty set.
    pub fn take_dirty_pages(&mut self, max: usize) -> Vec<(u64, Vec<u8>)> {
        let pages: Vec<u32> = self.dirty.iter().copied().take(max).collect();
        pages
            .into_iter()
            .map(|p| {
                self.dirty.remove(&p);
                (
                    self.layout.bm_page_offset(p),
                    bmpage::encode(&self.bitmap, p, self.sb.md_uuid).to_vec(),
                )
            })
            .collect()
    }

    /// A meta-data job finished.
    pub fn meta_done(
        &mut self,
        done: Vec<Done>,
        result: io::Result<()>,
        name: &Arc<str>,
        ctx: &Ctx,
    ) {
        self.meta.completed();
        if let Err(e) = &result {
            self.fail(format!("meta-data write failed: {e}"), name, ctx);
        }
        for d in done {
            match d {
                Done::Group(g) if result.is_ok() && self.blocked == Some(g) => self.blocked = None,
                Done::Al(seq, n) if result.is_ok() => {
                    self.al.committed(seq);
                    self.io.al_transactions += n;
                }
                _ => {}
            }
        }
        self.meta.kick(name, ctx.events);
        if self.failed.is_none() {
            self.pump(name, ctx);
        }
    }

    /// The meta-data cannot be written: the resource stops serving (its disk is Failed), its
    /// clients get errors, the peer connection is dropped. `down` still works.
    pub fn fail(&mut self, why: String, name: &Arc<str>, ctx: &Ctx) {
        if self.failed.is_some() {
            return;
        }
        error!(resource = %name, node = %ctx.node, error = %why, "the disk is Failed: stopping the resource (on-io-error detach)");
        self.failed = Some(why.clone());
        if let Some(e) = self.export.take() {
            e.close();
        }
        if let Some(l) = self.link.as_mut() {
            l.stop();
        }
        self.queue.clear();
        self.blocked = None;
        for (_, op) in self.ops.drain() {
            if let Some(r) = op.reply {
                let _ = r.send(Err(io::Error::other(why.clone())));
            }
        }
        for (_, c) in self.clients.drain() {
            if let ClientOp::Flush(r) = c {
                let _ = r.send(Err(io::Error::other(why.clone())));
            }
        }
        for h in self.held.drain(..) {
            match h {
                super::up::Held::Flush(r) => {
                    let _ = r.send(Err(io::Error::other(why.clone())));
                }
                super::up::Held::Data { .. } => {}
            }
        }
        if let Some(r) = self.promotion.take() {
            let _ = r.send(Response::err(Exit::Failed, why.clone()));
        }
        for (r, _) in self.verify_waiters.drain(..) {
            let _ = r.send(Response::err(Exit::Failed, why.clone()));
        }
        if let Some(cmd) = self.handlers.local_io_error.clone() {
            self.run_handler("local-io-error", Some(cmd), name, ctx);
        }
    }

    fn admin_result(
        &mut self,
        cmd: AdminCommand,
        result: Result<(), replicator_core::protocol::AdminError>,
        name: &Arc<str>,
        ctx: &Ctx,
    ) {
        let AdminCommand::Primary { .. } = cmd else {
            return;
        };
        let Some(reply) = self.promotion.take() else {
            return;
        };
        match result {
            Ok(()) => {
                info!(resource = %name, node = %ctx.node, "Primary (the peer agreed); export open");
                self.open_export(name, ctx);
                let _ = reply.send(Response::ok(format!("resource {name} is Primary")));
            }
            Err(e) => {
                let _ = reply.send(super::resource::admin_refusal(name, &e));
            }
        }
    }

    fn notice(&mut self, n: Notice, name: &Arc<str>, ctx: &Ctx) {
        let node = ctx.node;
        let peer = self
            .link
            .as_ref()
            .map_or(String::new(), |l| l.peer_name().to_owned());
        match n {
            Notice::Conn { from, to } => {
                info!(resource = %name, node, peer = %peer, "conn( {from} -> {to} )")
            }
            Notice::Disk { from, to } => info!(resource = %name, node, "disk( {from} -> {to} )"),
            Notice::Role { from, to } => info!(resource = %name, node, "role( {from} -> {to} )"),
            Notice::Peer { role, disk } => {
                info!(resource = %name, node, peer = %peer, "peer( {role} ) pdsk( {disk} )")
            }
            Notice::Refused(r) => {
                if matches!(r, Refusal::SplitBrain { .. } | Refusal::ByPeer(_))
                    && is_split_brain(&r)
                {
                    self.split_brains += 1;
                    error!(resource = %name, node, peer = %peer, "Split-Brain detected, dropping connection! StandAlone: {r}");
                } else {
                    error!(resource = %name, node, peer = %peer, "connection refused, StandAlone: {r}");
                }
            }
            Notice::LinkLost(why) => {
                warn!(resource = %name, node, peer = %peer, "connection to the peer lost: {why}")
            }
            Notice::Handshake { hg, rule } => {
                info!(resource = %name, node, peer = %peer, "sync handshake: uuid_compare()={hg} by rule {rule}")
            }
            Notice::ResyncStarted {
                direction,
                blocks,
                full,
            } => {
                let (side, handler) = match direction {
                    SyncDirection::Source => {
                        ("SyncSource", self.handlers.before_resync_source.clone())
                    }
                    SyncDirection::Target => {
                        ("SyncTarget", self.handlers.before_resync_target.clone())
                    }
                };
                info!(resource = %name, node, peer = %peer, "began resync as {side} ({} sync; will sync {} KiB [{blocks} bits set])", if full { "full" } else { "bitmap" }, blocks * 4);
                self.resync_started = Some(Instant::now());
                let which = match direction {
                    SyncDirection::Source => "before-resync-source",
                    SyncDirection::Target => "before-resync-target",
                };
                self.run_handler(which, handler, name, ctx);
            }
            Notice::ResyncFinished { direction, blocks } => {
                let secs = self
                    .resync_started
                    .take()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                let kib = blocks * 4;
                info!(resource = %name, node, peer = %peer, "resync done (total {secs:.3} s; {kib} KiB; {:.0} K/sec)", kib as f64 / secs.max(1e-9));
                self.last_resync = Some(super::up::ResyncResult {
                    bytes: blocks * BLOCK_SIZE,
                    seconds: secs,
                    source: direction == SyncDirection::Source,
                });
                if direction == SyncDirection::Target {
                    let h = self.handlers.after_resync_target.clone();
                    self.run_handler("after-resync-target", h, name, ctx);
                }
            }
            Notice::VerifyFinished {
                checked,
                mismatched,
                complete,
            } => {
                self.verifies += 1;
                self.last_verify = Some(VerifyResult {
                    checked,
                    mismatched,
                    complete,
                });
                if complete {
                    info!(resource = %name, node, peer = %peer, "online verify done: {checked} blocks checked, {mismatched} out of sync ({} KiB)", mismatched * 4);
                } else {
                    warn!(resource = %name, node, peer = %peer, "online verify cut short after {checked} blocks ({mismatched} out of sync so far)");
                }
                if mismatched > 0 {
                    let h = self.handlers.out_of_sync.clone();
                    self.run_handler("out-of-sync", h, name, ctx);
                }
                for (r, _) in self.verify_waiters.drain(..) {
                    let resp = if complete {
                        Response::ok(format!(
                            "verify of {name} finished: {checked} blocks checked, {mismatched} out of sync"
                        ))
                    } else {
                        Response::err(
                            Exit::Failed,
                            format!(
                                "verify of {name} was cut short after {checked} blocks ({mismatched} out of sync so far)"
                            ),
                        )
                    };
                    let _ = r.send(resp);
                }
            }
            Notice::NewCurrentUuid(ids) => {
                info!(resource = %name, node, "new current UUID {} (bitmap UUID {})", ids.current, ids.bitmap)
            }
            Notice::IoError(e) => {
                error!(resource = %name, node, error = %e, "local I/O error");
                let h = self.handlers.local_io_error.clone();
                self.run_handler("local-io-error", h, name, ctx);
            }
            Notice::ProtocolError(e) => {
                error!(resource = %name, node, peer = %peer, error = %e, "protocol error; connection dropped")
            }
        }
    }

    /// Runs a handler of the configuration as DRBD does (`/bin/sh -c CMD`) with DRBD's
    /// environment: DRBD_RESOURCE, DRBD_CONF, DRBD_MINOR (kernel device names), DRBD_PEER_AF,
    /// DRBD_PEER_ADDRESS, DRBD_PEERS, DRBD_MY_NODE_ID, DRBD_PEER_NODE_ID, DRBD_LOCAL_HOST.
    pub fn run_handler(
        &self,
        which: &'static str,
        cmd: Option<String>,
        name: &Arc<str>,
        ctx: &Ctx,
    ) {
        let Some(cmd) = cmd else { return };
        let mut env: Vec<(&'static str, String)> = vec![
            ("DRBD_RESOURCE", name.to_string()),
            ("DRBD_CONF", self.conf_path.clone()),
            ("DRBD_MY_NODE_ID", self.host.node_id.0.to_string()),
            ("DRBD_LOCAL_HOST", self.host.name().to_owned()),
        ];
        if let replicator_core::config::Device::Kernel { minor, .. } = &self.host.device {
            env.push(("DRBD_MINOR", minor.to_string()));
        }
        if let Some(c) = super::replica_cfg::connection(&self.res_cfg, &self.host)
            && let Some((_, p)) = c.ends(self.host.name())
        {
            env.push((
                "DRBD_PEER_AF",
                if p.address.ip.is_ipv4() {
                    "ipv4"
                } else {
                    "ipv6"
                }
                .to_owned(),
            ));
            env.push(("DRBD_PEER_ADDRESS", p.address.ip.to_string()));
            env.push(("DRBD_PEERS", p.host.clone()));
            env.push(("DRBD_PEER_NODE_ID", p.node_id.0.to_string()));
        }
        info!(resource = %name, node = %ctx.node, handler = which, command = %cmd, "running handler");
        let resource = name.to_string();
        tokio::spawn(async move {
            let status = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .envs(env)
                .status()
                .await;
            match status {
                Ok(s) => {
                    info!(resource = %resource, handler = which, status = %s, "handler finished")
                }
                Err(e) => {
                    error!(resource = %resource, handler = which, error = %e, "handler could not run")
                }
            }
        });
    }

    /// A client write or flush completed in the machine.
    fn client_done(&mut self, id: u64, result: Result<(), ClientError>) {
        let Some(op) = self.clients.remove(&id) else {
            return;
        };
        let result = result.map_err(client_error);
        match op {
            ClientOp::Flush(reply) => {
                let _ = reply.send(result);
            }
            ClientOp::Chunk { parent, len } => {
                let finished = {
                    let p = self.ops.get_mut(&parent).expect("chunk of a known request");
                    p.outstanding -= 1;
                    match result {
                        Ok(()) => {}
                        Err(e) => {
                            p.error.get_or_insert(e);
                        }
                    }
                    p.outstanding == 0 && p.unsent == 0
                };
                if finished {
                    let p = self.ops.remove(&parent).expect("known");
                    let r = match p.error {
                        None => {
                            self.io.writes += 1;
                            Ok(())
                        }
                        Some(e) => Err(e),
                    };
                    if let Some(reply) = p.reply {
                        let _ = reply.send(r);
                    }
                }
                let _ = len;
            }
        }
    }
}

fn is_split_brain(r: &Refusal) -> bool {
    match r {
        Refusal::SplitBrain { .. } => true,
        Refusal::ByPeer(inner) => is_split_brain(inner),
        _ => false,
    }
}

/// The NBD error for a failed client request (the server maps the OS errno).
pub fn client_error(e: ClientError) -> io::Error {
    match e {
        ClientError::NotPrimary => io::Error::from_raw_os_error(libc::EROFS),
        ClientError::OutOfRange { .. } => io::Error::from_raw_os_error(libc::ENOSPC),
        ClientError::TooLarge(_) => io::Error::from_raw_os_error(libc::EINVAL),
        ClientError::Busy => io::Error::from_raw_os_error(libc::EAGAIN),
        ClientError::Io(s) => io::Error::other(s),
    }
}

impl IoDone {
    /// The machine's event for this completion of `io`.
    pub fn into_event(self, io: IoId) -> MEvent {
        match self {
            IoDone::Write(result) => MEvent::DiskWriteDone { io, result },
            IoDone::Read(result) => MEvent::DiskReadDone { io, result },
            IoDone::Flush(result) => MEvent::DiskFlushDone { io, result },
            IoDone::Digests(result) => MEvent::DigestsDone { io, result },
        }
    }
}

/// Disk writes and resync reads up to this size are done on the loop's thread (a buffered
/// `pwrite`/`pread` in the page cache takes microseconds; handing it to the blocking pool
/// costs two thread wake-ups). The filesystems here have no non-blocking buffered writes
/// (`RWF_NOWAIT` → EOPNOTSUPP), nor tmpfs non-blocking reads, so this is how an operation
/// completes without a hop.
pub const INLINE_WRITE_MAX: usize = 1 << 20;
/// An inline write that had to sleep (the page cache throttling writers, or a page to read
/// in) and took longer than this sends writes to the blocking pool for [`INLINE_BACKOFF`], so
/// the loop — which answers the peer's keep-alives — never stalls for long. (Being preempted by
/// another process is not sleeping: that does not count.)
pub const INLINE_SLOW: Duration = Duration::from_millis(1);
/// How long writes stay off the loop's thread after a slow one.
pub const INLINE_BACKOFF: Duration = Duration::from_secs(1);

/// Voluntary context switches of this thread so far (it slept in the kernel).
fn voluntary_switches() -> i64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer we pass, which points to a
    // zeroed `rusage` we own; RUSAGE_THREAD is valid on Linux.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr()) };
    if r != 0 {
        return 0;
    }
    // SAFETY: zero-initialised and, on success, filled by the kernel: a valid `rusage`.
    unsafe { u.assume_init() }.ru_nvcsw
}

/// When disk operations are carried out inline.
#[derive(Debug, Default)]
pub struct InlineWrites {
    off_until: Option<Instant>,
    /// Writes and reads done inline.
    pub inline: u64,
    /// Writes and reads handed to the blocking pool (large, FUA, zeroing, or after a slow one).
    pub pooled: u64,
    /// Inline operations that slept (each sent operations to the pool for a while).
    pub slow: u64,
}

impl InlineWrites {
    /// Whether a write of `len` bytes goes inline now.
    pub fn try_inline(&mut self, len: usize) -> bool {
        if len > INLINE_WRITE_MAX {
            return false;
        }
        match self.off_until {
            Some(t) if Instant::now() < t => false,
            _ => {
                self.off_until = None;
                self.inline += 1;
                true
            }
        }
    }

    /// An inline write took `d`; `slept`: the thread slept in the kernel meanwhile.
    pub fn took(&mut self, d: Duration, slept: bool) {
        if slept && d > INLINE_SLOW {
            self.slow += 1;
            self.off_until = Some(Instant::now() + INLINE_BACKOFF);
        }
    }
}

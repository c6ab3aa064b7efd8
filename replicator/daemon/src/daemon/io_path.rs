//! The write path of a Primary resource: a WRITE, TRIM or WRITE_ZEROES from the export is
//! admitted by the activity log (parked when every slot is busy; waiting when its transaction
//! is not durable yet), marks the blocks its absent peer misses, runs on the file — inline
//! when the page cache takes it at once, in a task otherwise — and its completion releases the
//! extents and answers the client. Also the meta-data completions and the tick's write-back.

use std::future::Future;
use std::io;
use std::sync::Arc;

use replicator_core::meta::activity::extents_of;
use replicator_core::meta::{AL_EXTENT_BYTES, Begin, bmpage};
use replicator_core::types::{ConnState, DiskState, Role};
use tandem_nbd::Backend;
use tracing::error;

use super::event::{DataOp, Disk, Event};
use super::meta_io::{Done, Job};
use super::resource::{
    Ctx, Demote, IoReply, Pending, Res, Running, Step, Up, WRITEBACK_PAGES_PER_TICK, err,
    run_handler,
};
use crate::volume::pages_of;

impl Res {
    /// A WRITE, TRIM or WRITE_ZEROES from the export.
    pub fn data(&mut self, ctx: &Ctx, offset: u64, op: DataOp, reply: IoReply) {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Err(err(libc::ESHUTDOWN)));
            return;
        };
        let accepting = up.role == Role::Primary
            && matches!(
                up.step,
                None | Some(Step::Demoting {
                    stage: Demote::Draining,
                    ..
                })
            );
        if !accepting {
            let _ = reply.send(Err(err(libc::EROFS)));
            return;
        }
        if up.disk == DiskState::Failed {
            let _ = reply.send(Err(io::Error::other(format!(
                "resource {name}: the disk failed"
            ))));
            return;
        }
        let extents = if up.al_enabled {
            extents_of(offset, op.len())
        } else {
            None
        };
        let p = Pending {
            offset,
            op,
            reply,
            extents,
            wait_seq: 0,
        };
        up.admit(&name, ctx, p, standalone);
        self.settle(ctx);
    }

    /// A FLUSH from the export.
    pub fn flush(&mut self, ctx: &Ctx, reply: IoReply) {
        let disk_flushes = self.host.disk_options.disk_flushes;
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Err(err(libc::ESHUTDOWN)));
            return;
        };
        up.io.flushes += 1;
        let data = up.data.clone();
        let _ = ctx;
        tokio::spawn(async move {
            let r = if disk_flushes {
                data.sync().await
            } else {
                Ok(())
            };
            let _ = reply.send(r);
        });
    }

    /// A data operation finished on the file (in its own task).
    pub fn data_done(&mut self, ctx: &Ctx, id: u64, result: io::Result<()>) {
        self.complete(ctx, id, result);
        self.settle(ctx);
    }

    /// Completes the data operations that finished inline, until none is left (completing one
    /// may start parked ones, which may finish inline too).
    pub(super) fn settle(&mut self, ctx: &Ctx) {
        loop {
            let Some(up) = self.up_mut() else { return };
            let Some((id, result)) = up.completed.pop() else {
                break;
            };
            self.complete(ctx, id, result);
        }
        self.advance_demote(ctx);
    }

    /// A data operation finished: release its extents, answer the client, admit parked writes.
    pub(super) fn complete(&mut self, ctx: &Ctx, id: u64, result: io::Result<()>) {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let on_io_error_cmd = self.cfg.handlers.local_io_error.clone();
        let Some(up) = self.up_mut() else { return };
        let r = up
            .running
            .remove(&id)
            .expect("completion of a known data operation");
        if let Some((f, l)) = r.extents {
            up.al.end(f, l);
        }
        match &result {
            Ok(()) => {
                up.io.writes += 1;
                up.io.written_bytes += r.len;
            }
            Err(e) => {
                error!(resource = %name, node = %ctx.node, error = %e, "write to the backing file failed; detaching the disk (on-io-error)");
                up.disk = DiskState::Failed;
                if let Some(cmd) = on_io_error_cmd {
                    run_handler(&name, "local-io-error", cmd);
                }
            }
        }
        let _ = r.reply.send(result);
        // Writes that waited for a free activity-log slot.
        while let Some(p) = up.parked.pop_front() {
            let before = up.parked.len();
            up.admit(&name, ctx, p, standalone);
            if up.parked.len() > before {
                break;
            }
        }
    }

    /// A meta-data job finished; returns whether the resource went down with it.
    pub fn meta_done(&mut self, ctx: &Ctx, done: Vec<Done>, result: io::Result<()>) -> bool {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let Some(up) = self.up_mut() else {
            return false;
        };
        up.meta.completed();
        if let Err(e) = &result {
            error!(resource = %name, node = %ctx.node, error = %e, "meta-data write failed; the disk is Failed");
            up.disk = DiskState::Failed;
            for p in up.waiting.drain(..).chain(up.parked.drain(..)) {
                let _ = p
                    .reply
                    .send(Err(io::Error::other("meta-data write failed")));
            }
        }
        for d in done {
            match d {
                Done::Al(seq) if result.is_ok() => {
                    up.al.committed(seq);
                    up.io.al_transactions += 1;
                }
                Done::Al(_) | Done::Pages => {}
                Done::Superblock(seq) => up.superblock_written(&name, ctx, seq, &result),
            }
        }
        // Writes whose activity-log transactions are now durable.
        let durable = up.al.durable_seq();
        let (ready, still): (Vec<Pending>, Vec<Pending>) =
            up.waiting.drain(..).partition(|p| p.wait_seq <= durable);
        up.waiting = still;
        for p in ready {
            up.start(&name, ctx, p, standalone);
        }
        up.meta.kick(&name, ctx.events);
        self.settle(ctx);
        self.finish_steps(ctx)
    }

    /// The periodic tick: write back some dirty bitmap pages when idle.
    pub fn tick(&mut self, ctx: &Ctx) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        if up.step.is_some() || !up.meta.idle() || up.dirty.is_empty() {
            return;
        }
        let pages = take_dirty_pages(up, WRITEBACK_PAGES_PER_TICK);
        up.meta.push(Job {
            pages,
            records: Vec::new(),
            done: vec![Done::Pages],
        });
        up.meta.kick(&name, ctx.events);
    }
}

impl Up {
    /// Admits a data operation: makes its extents hot (or parks it when the log is full of
    /// busy extents), then starts it once its transaction is durable.
    pub(super) fn admit(&mut self, name: &Arc<str>, ctx: &Ctx, mut p: Pending, standalone: bool) {
        let Some((first, last)) = p.extents else {
            self.start(name, ctx, p, standalone);
            return;
        };
        let Some(b) = self.al.begin(first, last) else {
            self.parked.push_back(p);
            return;
        };
        let Begin {
            transaction,
            evicted,
            wait_for_seq,
        } = b;
        if let Some(t) = transaction {
            // The bits of extents leaving the log must be on disk before the transaction.
            let mut pages = Vec::new();
            for e in evicted {
                let start = u64::from(e) * AL_EXTENT_BYTES;
                let len = AL_EXTENT_BYTES.min(self.layout.data_bytes.saturating_sub(start));
                if len == 0 {
                    continue;
                }
                for pg in pages_of(start, len) {
                    if self.dirty.remove(&pg) {
                        pages.push((
                            self.layout.bm_page_offset(pg),
                            bmpage::encode(&self.bitmap, pg, self.sb.md_uuid).to_vec(),
                        ));
                    }
                }
            }
            let rec = (
                self.layout
                    .al_slot_offset(t.ring_slot(self.layout.al_slots)),
                t.encode().to_vec(),
            );
            self.meta.push(Job {
                pages,
                records: vec![rec],
                done: vec![Done::Al(t.seq)],
            });
            self.meta.kick(name, ctx.events);
        }
        if wait_for_seq == 0 {
            self.start(name, ctx, p, standalone);
        } else {
            p.wait_seq = wait_for_seq;
            self.waiting.push(p);
        }
    }

    /// Starts a data operation on the file.
    pub(super) fn start(&mut self, name: &Arc<str>, ctx: &Ctx, p: Pending, standalone: bool) {
        let len = p.op.len();
        // The peer misses this write until replication sends it: mark it out of sync.
        if !standalone && self.conn != ConnState::Connected && len > 0 {
            self.bitmap.set_range(p.offset, len);
            self.dirty.extend(pages_of(p.offset, len));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.running.insert(
            id,
            Running {
                extents: p.extents,
                len,
                reply: p.reply,
            },
        );
        let (data, offset) = (self.data.clone(), p.offset);
        let mut io = Box::pin(async move {
            match p.op {
                DataOp::Write { data: bytes, fua } => data.write_at(offset, bytes, fua).await,
                DataOp::Trim { len, fua } => data.trim(offset, len, fua).await,
                DataOp::Zero { len, flags } => data.write_zeroes(offset, len, flags).await,
            }
        });
        // Fast path: a buffered write the page cache takes at once (the file backend's
        // non-blocking RWF_NOWAIT attempt) completes on this first poll, without a task or an
        // event; anything that would block (FUA, trim, a write needing the blocking pool) is
        // still pending here and finishes in its own task, reporting back as an event.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match io.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => self.completed.push((id, result)),
            std::task::Poll::Pending => {
                let (events, resource) = (ctx.events.clone(), name.clone());
                tokio::spawn(async move {
                    let result = io.await;
                    let _ = events
                        .send(Event::Disk(Disk::DataDone {
                            resource,
                            id,
                            result,
                        }))
                        .await;
                });
            }
        }
    }
}

/// Up to `max` dirty bitmap pages, encoded, removed from the dirty set.
pub(super) fn take_dirty_pages(up: &mut Up, max: usize) -> Vec<(u64, Vec<u8>)> {
    let pages: Vec<u32> = up.dirty.iter().copied().take(max).collect();
    pages
        .into_iter()
        .map(|p| {
            up.dirty.remove(&p);
            (
                up.layout.bm_page_offset(p),
                bmpage::encode(&up.bitmap, p, up.sb.md_uuid).to_vec(),
            )
        })
        .collect()
}

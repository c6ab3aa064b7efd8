//! The client side of a Primary resource: NBD data requests become the machine's client
//! writes and flushes.
//!
//! A WRITE becomes one `ClientWrite` per chunk of at most 8 MiB (the machine's request bound);
//! TRIM and WRITE_ZEROES become writes of zeroes (so both nodes read zeroes there; the local
//! side punches a hole rather than writing them). Requests wait in arrival order in
//! [`Held`] until the machine's write credit covers the next chunk: while anything waits, the
//! loop stops reading the resource's NBD queue, so the NBD connections stop reading their
//! sockets — back-pressure from the replication bounds (unsettled writes, bytes in flight) to
//! the clients. Reads never reach the loop: the export reads the file directly (a Primary's
//! data is UpToDate; NBD gives no ordering between overlapping requests in flight).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use replicator_core::protocol::{ClientId, Event as MEvent};
use tandem_nbd::Export;

use super::backend::ReplicatedBackend;
use super::drive::{MAX_CHUNK, ZEROES};
use super::event::NbdReq;
use super::up::{ClientOp, Ctx, DataOp, Held, Up};

impl Up {
    /// A data request from the export.
    pub fn nbd_request(&mut self, req: NbdReq, name: &Arc<str>, ctx: &Ctx) {
        if let Some(why) = &self.failed {
            let e = io::Error::other(format!("resource {name}: the disk failed ({why})"));
            let reply = match req {
                NbdReq::Write { reply, .. }
                | NbdReq::Zero { reply, .. }
                | NbdReq::Flush { reply } => reply,
            };
            let _ = reply.send(Err(e));
            return;
        }
        match req {
            NbdReq::Write {
                offset,
                data,
                fua,
                reply,
            } => {
                let len = data.len() as u64;
                self.hold_data(offset, Some(data), len, fua, reply);
            }
            NbdReq::Zero {
                offset,
                len,
                fua,
                reply,
            } => self.hold_data(offset, None, len, fua, reply),
            NbdReq::Flush { reply } => {
                self.io.flushes += 1;
                self.held.push_back(Held::Flush(reply));
            }
        }
        self.pump(name, ctx);
    }

    fn hold_data(
        &mut self,
        offset: u64,
        data: Option<Bytes>,
        len: u64,
        fua: bool,
        reply: super::event::IoReply,
    ) {
        if len == 0 {
            let _ = reply.send(Ok(()));
            return;
        }
        let parent = self.fresh_id();
        self.ops.insert(
            parent,
            DataOp {
                outstanding: 0,
                unsent: len,
                error: None,
                reply: Some(reply),
            },
        );
        self.io.written_bytes += len;
        self.held.push_back(Held::Data {
            parent,
            offset,
            data,
            len,
            fua,
        });
    }

    /// Hands waiting requests to the machine while its write credit allows; returns whether
    /// it handed any.
    pub fn feed_held(&mut self, _name: &Arc<str>, ctx: &Ctx) -> bool {
        let mut any = false;
        let now = ctx.now();
        loop {
            match self.held.front_mut() {
                None => break,
                Some(Held::Flush(_)) => {
                    let Some(Held::Flush(reply)) = self.held.pop_front() else {
                        unreachable!()
                    };
                    let id = self.fresh_id();
                    self.clients.insert(id, ClientOp::Flush(reply));
                    self.replica
                        .handle(now, MEvent::ClientFlush { id: ClientId(id) });
                    any = true;
                }
                Some(Held::Data {
                    parent,
                    offset,
                    data,
                    len,
                    fua,
                }) => {
                    let chunk = (*len).min(MAX_CHUNK);
                    let credit = self.replica.write_credit();
                    if credit.writes == 0 || credit.bytes < chunk {
                        break;
                    }
                    let bytes = match data.as_mut() {
                        Some(d) => d.split_to(usize::try_from(chunk).expect("at most 8 MiB")),
                        None => Bytes::from_static(
                            &ZEROES[..usize::try_from(chunk).expect("at most 8 MiB")],
                        ),
                    };
                    let (parent, at, fua) = (*parent, *offset, *fua);
                    *offset += chunk;
                    *len -= chunk;
                    if *len == 0 {
                        self.held.pop_front();
                    }
                    let op = self
                        .ops
                        .get_mut(&parent)
                        .expect("held data has its request");
                    op.outstanding += 1;
                    op.unsent -= chunk;
                    let id = self.fresh_id();
                    self.clients
                        .insert(id, ClientOp::Chunk { parent, len: chunk });
                    self.replica.handle(
                        now,
                        MEvent::ClientWrite {
                            id: ClientId(id),
                            offset: at,
                            data: bytes,
                            fua,
                        },
                    );
                    any = true;
                }
            }
        }
        any
    }

    /// Opens the export (the resource is Primary and its promotion durable).
    pub fn open_export(&mut self, name: &Arc<str>, ctx: &Ctx) {
        if self.export.as_ref().is_some_and(|e| !e.is_closed()) {
            return;
        }
        let backend = ReplicatedBackend::new(self.data.clone(), self.nbd_tx.clone());
        let desc = format!("replicatord resource {name} on node {}", ctx.node);
        self.export = Some(Export::with_description(
            self.export_name.clone(),
            Some(desc),
            Arc::new(backend),
        ));
    }

    /// How many client writes wait for nothing but the peer's acknowledgement: handed to the
    /// machine, no local disk work pending or queued, nothing waiting for credit, a connection
    /// up. Zero when anything else is still to happen here.
    pub fn awaiting_peer(&self) -> usize {
        let idle_here = self.local_in_flight == 0
            && self.inline_done.is_empty()
            && self.queue.is_empty()
            && self.blocked.is_none()
            && self.held.is_empty()
            && self.nbd_rx.is_empty();
        let linked = self.link.as_ref().is_some_and(|l| l.conn().is_some());
        if idle_here && linked {
            self.clients.len()
        } else {
            0
        }
    }

    /// Nothing of a client is in progress: no request waiting, handed over, or queued.
    pub fn clients_drained(&self) -> bool {
        self.ops.is_empty()
            && self.held.is_empty()
            && self.clients.is_empty()
            && self.nbd_rx.is_empty()
    }
}

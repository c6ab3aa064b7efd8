//! The NBD side of a resource: the [`Backend`] its export serves (writes go through the event
//! loop, reads straight to the backing file) and the [`ExportLookup`] of each listener, which
//! asks the loop — the only owner of resource state — whether to serve or refuse.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tandem_nbd::request::ZeroFlags;
use tandem_nbd::{
    Backend, BoxFuture, Capabilities, Export, ExportListing, ExportLookup, Extent, FileBackend,
    Refusal,
};
use tokio::sync::{mpsc, oneshot};

use super::event::{DataOp, Event, Nbd};

fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ESHUTDOWN)
}

/// The exported device of a Primary resource.
pub struct ReplicatedBackend {
    resource: Arc<str>,
    data: FileBackend,
    size: u64,
    events: mpsc::Sender<Event>,
}

impl ReplicatedBackend {
    /// A backend for `resource` over its data file.
    pub fn new(resource: Arc<str>, data: FileBackend, events: mpsc::Sender<Event>) -> Self {
        let size = data.len();
        ReplicatedBackend {
            resource,
            data,
            size,
            events,
        }
    }

    async fn data_op(&self, offset: u64, op: DataOp) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        let ev = Event::Nbd(Nbd::Data {
            resource: self.resource.clone(),
            offset,
            op,
            reply,
        });
        self.events.send(ev).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

impl Backend for ReplicatedBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn capabilities(&self) -> Capabilities {
        // Every connection's writes go through one loop to one file: FLUSH on any connection
        // covers all of them (the export-wide barrier does the rest), so multi-conn holds.
        Capabilities::FULL
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(self.data.read_at(offset, len))
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.data_op(offset, DataOp::Write { data, fua }))
    }

    fn flush(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.events
                .send(Event::Nbd(Nbd::Flush {
                    resource: self.resource.clone(),
                    reply,
                }))
                .await
                .map_err(|_| gone())?;
            rx.await.map_err(|_| gone())?
        })
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.data_op(offset, DataOp::Trim { len, fua }))
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.data_op(offset, DataOp::Zero { len, flags }))
    }

    fn cache(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<()>> {
        self.data.cache(offset, len)
    }

    fn block_status(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<Vec<Extent>>> {
        self.data.block_status(offset, len)
    }
}

/// The lookup of one listener: every question goes to the event loop.
pub struct LoopLookup {
    listener: Arc<str>,
    events: mpsc::Sender<Event>,
}

impl LoopLookup {
    /// The lookup for the listener at `listener` (socket path or host:port).
    pub fn new(listener: Arc<str>, events: mpsc::Sender<Event>) -> Self {
        LoopLookup { listener, events }
    }
}

impl ExportLookup for LoopLookup {
    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Export>, Refusal>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            let ev = Event::Nbd(Nbd::Lookup {
                listener: self.listener.clone(),
                name: name.to_owned(),
                reply,
            });
            let down = || Refusal::policy("replicatord is shutting down");
            self.events.send(ev).await.map_err(|_| down())?;
            rx.await.map_err(|_| down())?
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<ExportListing>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if self
                .events
                .send(Event::Nbd(Nbd::List {
                    listener: self.listener.clone(),
                    reply,
                }))
                .await
                .is_err()
            {
                return Vec::new();
            }
            rx.await.unwrap_or_default()
        })
    }
}

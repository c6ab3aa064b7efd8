//! The NBD side of a resource: the [`Backend`] its export serves (writes, zeroing and flushes go
//! to the event loop through the resource's bounded request queue; reads go straight to the
//! backing file) and the [`ExportLookup`] of each listener, which asks the loop — the only
//! owner of resource state — whether to serve or refuse.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tandem_nbd::request::ZeroFlags;
use tandem_nbd::{
    Backend, BoxFuture, Capabilities, Export, ExportListing, ExportLookup, Extent, FileBackend,
    Refusal,
};
use tokio::sync::{mpsc, oneshot};

use super::event::{Event, Nbd, NbdReq};

fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ESHUTDOWN)
}

/// The exported device of a Primary resource.
pub struct ReplicatedBackend {
    data: FileBackend,
    size: u64,
    requests: mpsc::Sender<NbdReq>,
}

impl ReplicatedBackend {
    /// A backend over the resource's data file, sending changes to `requests`.
    pub fn new(data: FileBackend, requests: mpsc::Sender<NbdReq>) -> Self {
        let size = data.len();
        ReplicatedBackend {
            data,
            size,
            requests,
        }
    }

    async fn ask(&self, make: impl FnOnce(super::event::IoReply) -> NbdReq) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| gone())?;
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

    fn read_into(&self, offset: u64, len: u32, buf: Vec<u8>) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(self.data.read_into(offset, len, buf))
    }

    /// Large READs may be spliced from the data file to the socket: reads are the data file's
    /// bytes at the same offsets, exactly as `read` above serves them.
    fn zero_copy_file(&self) -> Option<Arc<std::fs::File>> {
        self.data.zero_copy_file()
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.ask(move |reply| NbdReq::Write {
            offset,
            data,
            fua,
            reply,
        }))
    }

    fn flush(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.ask(|reply| NbdReq::Flush { reply }))
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        // A trim is only a hint, but both nodes must read the same afterwards: zero the range.
        Box::pin(self.ask(move |reply| NbdReq::Zero {
            offset,
            len,
            fua,
            reply,
        }))
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> BoxFuture<'_, io::Result<()>> {
        if flags.fast {
            // Zeroes are replicated like data: never faster than writing them.
            return Box::pin(async { Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)) });
        }
        Box::pin(self.ask(move |reply| NbdReq::Zero {
            offset,
            len,
            fua: flags.fua,
            reply,
        }))
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

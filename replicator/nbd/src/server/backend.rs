//! The block backend a server exports, and the export object that wraps it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::barrier::FlushBarrier;
use crate::reply::Extent;
use crate::request::ZeroFlags;
use crate::session::{BlockSizes, Capabilities, ExportInfo};

/// A boxed, `Send` future: what [`Backend`] methods return, so the trait stays object safe
/// (one server can export backends of different types) and a method can await anything — the
/// replicated device's write awaits its peer.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A block device as the NBD server sees it.
///
/// Every range the server passes has been checked against [`size`](Backend::size) and the
/// block sizes, so implementations need not re-check bounds. Methods may run concurrently
/// (many requests per connection, many connections); an implementation that needs ordering
/// provides it itself. Errors are `io::Error`s: their OS errno picks the NBD error (ENOSPC,
/// EDQUOT, EFBIG → `NBD_ENOSPC`; EPERM, EROFS → `NBD_EPERM`; EOPNOTSUPP → `NBD_ENOTSUP`;
/// ESHUTDOWN → `NBD_ESHUTDOWN`; everything else `NBD_EIO`) and their text is sent to clients
/// that negotiated structured replies.
///
/// Cancellation: a client that disconnects does not cancel anything (the server finishes
/// every request it has read), but a future still pending when the server's shutdown grace
/// runs out is dropped. Its request is then never acknowledged; an implementation must leave
/// the device as after a crash at that point — the write applied or not (a block device may
/// tear an unacknowledged write), everything acknowledged before untouched.
pub trait Backend: Send + Sync + 'static {
    /// Export size in bytes; constant for the backend's life.
    fn size(&self) -> u64;

    /// What the backend supports; decides the transmission flags.
    fn capabilities(&self) -> Capabilities;

    /// Block size constraints (defaults: 1 / 4096 / 32 MiB).
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }

    /// Reads exactly `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, io::Result<Vec<u8>>>;

    /// [`read`](Backend::read) into `buf`, a buffer the server had for an earlier reply: an
    /// implementation that overrides this reuses its allocation (clear it, read into its
    /// capacity) and returns it with exactly `len` bytes. The server keeps a few such buffers
    /// per connection, as nbdkit keeps one per thread: a fresh 1 MiB buffer per READ costs
    /// page faults once the allocator has given freed memory back. The default ignores `buf`.
    fn read_into(&self, offset: u64, len: u32, buf: Vec<u8>) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        drop(buf);
        self.read(offset, len)
    }

    /// A file whose bytes at every offset are this export's bytes at the same offset, if
    /// there is one (a [`FileBackend`](super::FileBackend) returns its file). The server then
    /// sends large READs from the file's page cache to the socket with `splice(2)`, without
    /// calling [`read`](Backend::read) and without copying the data in this process (see
    /// `server/splice.rs` for what a client can observe). A backend whose reads must go
    /// through its own code (data not yet in the file, a different layout) returns `None`,
    /// the default.
    fn zero_copy_file(&self) -> Option<Arc<std::fs::File>> {
        None
    }

    /// Writes `data` at `offset`; with `fua` the data is on stable storage before this
    /// returns. `Bytes` is cheap to clone: a replicated backend sends the same buffer to its
    /// peer without copying.
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, io::Result<()>>;

    /// Makes every write that completed before this call durable.
    fn flush(&self) -> BoxFuture<'_, io::Result<()>>;

    /// Discards a range (a hint: doing nothing is correct).
    fn trim(&self, offset: u64, len: u64, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        let _ = (offset, len, fua);
        Box::pin(async { Ok(()) })
    }

    /// Makes a range read as zeroes. `flags.fast`: fail with `EOPNOTSUPP` at once unless this is
    /// faster than writing zeroes. `flags.no_hole`: keep the range allocated.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> BoxFuture<'_, io::Result<()>>;

    /// Prefetches a range (a hint: doing nothing is correct).
    fn cache(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<()>> {
        let _ = (offset, len);
        Box::pin(async { Ok(()) })
    }

    /// `base:allocation` extents starting at `offset`, covering at most `len` bytes (fewer is
    /// fine; at least one extent). The default says "all data".
    fn block_status(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<Vec<Extent>>> {
        let _ = offset;
        Box::pin(async move { Ok(vec![Extent { len, flags: 0 }]) })
    }
}

/// One export: a name, a backend, the export-wide FLUSH barrier, and a switch that closes every
/// connection to it. Create one per export and hand the same `Arc<Export>` to every lookup:
/// connections share the barrier through it, which is what `NBD_FLAG_CAN_MULTI_CONN` promises.
pub struct Export {
    name: String,
    description: Option<String>,
    backend: Arc<dyn Backend>,
    barrier: FlushBarrier,
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("size", &self.backend.size())
            .field("closed", &*self.closed.borrow())
            .finish()
    }
}

impl Export {
    /// An export named `name` over `backend`.
    pub fn new(name: impl Into<String>, backend: Arc<dyn Backend>) -> Arc<Self> {
        Self::with_description(name, None, backend)
    }

    /// An export with a description (`NBD_INFO_DESCRIPTION`, `nbdinfo` shows it).
    pub fn with_description(
        name: impl Into<String>,
        description: Option<String>,
        backend: Arc<dyn Backend>,
    ) -> Arc<Self> {
        let b = backend.block_sizes();
        assert_eq!(
            b.validate(),
            Ok(()),
            "backend advertises invalid block sizes {b:?}"
        );
        Arc::new(Self {
            name: name.into(),
            description,
            backend,
            barrier: FlushBarrier::default(),
            closed: watch::channel(false).0,
        })
    }

    /// The export name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// What the handshake advertises for this export.
    pub fn info(&self) -> ExportInfo {
        ExportInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            size: self.backend.size(),
            caps: self.backend.capabilities(),
            block: self.backend.block_sizes(),
        }
    }

    /// Flushes through the export-wide barrier: concurrent FLUSHes from every connection share
    /// backend flushes, and each one returns only after a backend flush that *started* after it
    /// arrived has succeeded — so it covers every write any connection completed before it.
    pub async fn flush(&self) -> std::io::Result<()> {
        self.barrier.flush(|| self.backend.flush()).await
    }

    /// Closes the export: every connection to it stops reading requests, finishes the ones in
    /// flight, and closes. (replicatord calls this when a resource leaves Primary; its lookup
    /// then refuses new clients.) Idempotent.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    pub(crate) fn closed_signal(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

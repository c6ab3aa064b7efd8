//! The tokio NBD server (feature `server`, on by default).
//!
//! ```text
//!  Server::serve(listener, shutdown)
//!    accept loop ── at most max_connections; one task per connection
//!      connection task:
//!        handshake (pure Negotiator; the ExportLookup is asked at INFO/GO/EXPORT_NAME time)
//!        transmission:
//!          reader ── header → Session::decode → drives the requests in flight itself ─┐
//!            (FuturesUnordered; bounded: max_in_flight requests, max_in_flight_bytes)  │ Backend
//!          writer task ◄── mpsc of encoded replies (header + data) ───────────────────┘
//!            one writev per batch; a large READ's data goes pipe → socket by splice(2);
//!            replies may go out of order
//!        buffers and pipes are reused per connection (pool.rs, splice.rs)
//! ```
//!
//! All connections to one [`Export`] share its FLUSH barrier, so a FLUSH on any connection
//! covers writes completed on all of them (`NBD_FLAG_CAN_MULTI_CONN`).
//!
//! Bounds (what happens at each):
//! - `max_connections`: a client beyond it is accepted and closed at once, with a warning.
//! - `handshake_timeout`: a client still haggling after it is closed.
//! - [`MAX_OPTION_LEN`](crate::handshake::MAX_OPTION_LEN), [`MAX_OPTIONS`](crate::handshake::MAX_OPTIONS):
//!   hard disconnect.
//! - `max_in_flight` requests and `max_in_flight_bytes` of payload per connection: the reader
//!   stops reading the socket until replies go out (TCP/unix flow control pushes back).
//! - the block sizes' maximum (32 MiB): a READ above it gets `NBD_EINVAL`; a WRITE payload
//!   above it is never read — hard disconnect, as nbdkit does.
//! - `shutdown_grace`: after shutdown, connections still busy after it are aborted.

mod backend;
mod barrier;
mod conn;
mod file;
mod pool;
mod splice;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use backend::{Backend, BoxFuture, Export};
pub use barrier::FlushBarrier;
pub use file::{FileBackend, FileOptions, IoMode};

use crate::handshake::{ExportListing, Refusal};

/// Finds exports by name at handshake time (INFO, GO, EXPORT_NAME, meta-context options) and
/// lists them (`NBD_OPT_LIST`). replicatord implements it over its resources and refuses a
/// Secondary's export with [`Refusal::policy`] and a message saying why.
pub trait ExportLookup: Send + Sync + 'static {
    /// The export called `name` (`""` is the default export), or why not.
    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Export>, Refusal>>;

    /// Every export a client may see.
    fn list(&self) -> BoxFuture<'_, Vec<ExportListing>>;
}

/// A ready [`ExportLookup`]: a map of exports, changeable at run time, with an optional
/// default export served for the empty name.
#[derive(Debug, Default)]
pub struct Exports {
    map: RwLock<BTreeMap<String, Arc<Export>>>,
    default: RwLock<Option<String>>,
}

impl Exports {
    /// An empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds (or replaces) an export.
    pub fn insert(&self, export: Arc<Export>) {
        self.map
            .write()
            .expect("exports lock")
            .insert(export.name().to_owned(), export);
    }

    /// Removes an export and closes its connections.
    pub fn remove(&self, name: &str) -> Option<Arc<Export>> {
        let e = self.map.write().expect("exports lock").remove(name);
        if let Some(e) = &e {
            e.close();
        }
        e
    }

    /// Serves `name` to clients that ask for the empty (default) name.
    pub fn set_default(&self, name: Option<&str>) {
        *self.default.write().expect("exports lock") = name.map(str::to_owned);
    }

    fn find(&self, name: &str) -> Option<Arc<Export>> {
        let map = self.map.read().expect("exports lock");
        if let Some(e) = map.get(name) {
            return Some(e.clone());
        }
        if name.is_empty() {
            let d = self.default.read().expect("exports lock");
            return d.as_deref().and_then(|d| map.get(d).cloned());
        }
        None
    }
}

impl ExportLookup for Exports {
    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Arc<Export>, Refusal>> {
        Box::pin(async move {
            self.find(name).ok_or_else(|| {
                Refusal::unknown(format!("there is no export named {name:?} on this server"))
            })
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<ExportListing>> {
        Box::pin(async move {
            let map = self.map.read().expect("exports lock");
            map.values()
                .map(|e| ExportListing {
                    name: e.name().to_owned(),
                    description: e.info().description,
                })
                .collect()
        })
    }
}

/// Server limits and policy. Every bound here says what happens when it is hit (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Requests in flight per connection before the reader stops reading.
    pub max_in_flight: usize,
    /// READ/WRITE payload bytes in flight per connection before the reader stops reading
    /// (must be at least the maximum block size).
    pub max_in_flight_bytes: usize,
    /// Time a client may spend in the handshake.
    pub handshake_timeout: Duration,
    /// Time busy connections get to finish after shutdown before they are aborted.
    pub shutdown_grace: Duration,
    /// Accept `NBD_OPT_EXTENDED_HEADERS`.
    pub extended_headers: bool,
    /// Serve each connection on a thread of its own (with a single-threaded runtime), as nbdkit
    /// does, instead of on the caller's runtime. A [`FileBackend`] (default I/O mode) then does
    /// `pread`/`pwrite` right on that thread: no hand-off to another thread per request (the
    /// fastest at queue depth 1), and a slow disk stalls only the connection that waits on it —
    /// never the caller's runtime. Costs one thread per connection (at most `max_connections`);
    /// a backend that hands work to a task on the caller's runtime (replicatord's writes) pays
    /// a cross-thread wake-up per request instead, so it is off by default.
    pub thread_per_connection: bool,
    /// Send buffer asked for on accepted unix-socket clients (`SO_SNDBUF`; the kernel clamps it
    /// to `net.core.wmem_max`, 4 MiB here, and doubles it). The default, 208 KiB, splits a
    /// 1 MiB READ reply into five `writev`s, each waiting for the client to drain the socket
    /// (a wake-up of this thread each time). `None` keeps the system default. TCP sockets are
    /// left alone: setting it there would switch off the kernel's buffer autotuning.
    pub unix_send_buffer: Option<usize>,
}

/// Default connections served at once (worst-case buffer memory: this × 64 MiB).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default requests in flight per connection (fio and nbdcopy use ≤ 64).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// Default [`ServerConfig::unix_send_buffer`]: room for a few 1 MiB READ replies.
pub const DEFAULT_UNIX_SEND_BUFFER: usize = 4 << 20;
/// Default payload bytes in flight per connection.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            extended_headers: true,
            thread_per_connection: false,
            unix_send_buffer: Some(DEFAULT_UNIX_SEND_BUFFER),
        }
    }
}

/// A listening socket the server accepts NBD clients on.
#[derive(Debug)]
pub enum Listener {
    /// A unix stream socket (`nbd+unix:///NAME?socket=PATH`).
    Unix(UnixListener),
    /// A TCP socket (`nbd://HOST:PORT/NAME`).
    Tcp(TcpListener),
}

impl Listener {
    /// Binds a unix socket at `path`, removing a stale socket file first.
    pub fn bind_unix(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(m) = std::fs::symlink_metadata(path)
            && m.file_type().is_socket()
        {
            std::fs::remove_file(path)?;
        }
        Ok(Self::Unix(UnixListener::bind(path)?))
    }

    /// Binds a TCP socket (use port 0 in tests).
    pub async fn bind_tcp(addr: &str) -> io::Result<Self> {
        Ok(Self::Tcp(TcpListener::bind(addr).await?))
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Self::Unix(l)
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Self::Tcp(l)
    }
}

/// The NBD server. Cheap to share; [`serve`](Server::serve) may run on several listeners.
pub struct Server {
    config: Arc<ServerConfig>,
    lookup: Arc<dyn ExportLookup>,
    next_conn: AtomicU64,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Set on the threads [`ServerConfig::thread_per_connection`] starts: blocking there stalls
    /// nobody but the connection itself.
    static CONNECTION_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this is a connection's own thread (see [`ServerConfig::thread_per_connection`]), where
/// a backend may block on the disk without stalling anyone else.
pub fn on_connection_thread() -> bool {
    CONNECTION_THREAD.with(std::cell::Cell::get)
}

/// Resolves when `rx` turns true; never, if its sender is gone.
pub(crate) async fn signalled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&v| v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Server {
    /// A server over `lookup` with `config`.
    pub fn new(lookup: Arc<dyn ExportLookup>, config: ServerConfig) -> Self {
        assert!(
            config.max_connections > 0 && config.max_in_flight > 0,
            "limits must be positive"
        );
        assert!(
            config.max_in_flight_bytes >= crate::session::DEFAULT_MAX_PAYLOAD as usize,
            "max_in_flight_bytes must hold one maximum-size request"
        );
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Self {
            config: Arc::new(config),
            lookup,
            next_conn: AtomicU64::new(1),
            connections,
        }
    }

    /// Accepts and serves clients on `listener` until `shutdown` resolves; then stops
    /// accepting, lets every connection finish the requests it has in flight (up to
    /// `shutdown_grace`), and returns.
    pub async fn serve(
        &self,
        listener: impl Into<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let listener = listener.into();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                a = accept(&listener, self.config.unix_send_buffer) => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the clients we have, retry shortly.
                    warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                warn!(conn = id, peer = %peer, max = self.config.max_connections, "too many connections; closing this one");
                continue;
            };
            let ctx = conn::Ctx {
                id,
                peer,
                config: self.config.clone(),
                lookup: self.lookup.clone(),
                shutdown: stop_rx.clone(),
            };
            if !self.config.thread_per_connection {
                tasks.spawn(async move {
                    let (rd, wr) = stream.split();
                    conn::serve(ctx, rd, wr).await;
                    drop(permit);
                });
                continue;
            }
            // A thread of its own. The task in `tasks` stands for it: it ends when the thread
            // does, and aborting it (shutdown grace over) drops `kill`, which stops the thread's
            // connection the way an abort stops a task.
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let (kill, killed) = oneshot::channel::<()>();
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    warn!(conn = id, error = %e, "cannot hand the connection to a thread; closing it");
                    continue;
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("nbd-conn-{id}"))
                .spawn(move || {
                    CONNECTION_THREAD.with(|c| c.set(true));
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => {
                            rt.block_on(async move {
                                let (rd, wr) = match Accepted::from_std(stream) {
                                    Ok(s) => s.split(),
                                    Err(e) => {
                                        warn!(conn = id, error = %e, "cannot register the connection");
                                        return;
                                    }
                                };
                                tokio::select! {
                                    () = conn::serve(ctx, rd, wr) => {}
                                    _ = killed => debug!(conn = id, "connection aborted"),
                                }
                            });
                            // Never wait here for blocking work stuck on a dead disk.
                            rt.shutdown_background();
                        }
                        Err(e) => warn!(conn = id, error = %e, "cannot build a connection runtime"),
                    }
                    drop(permit);
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => {
                    tasks.spawn(async move {
                        let _kill = kill;
                        let _ = done_rx.await;
                    });
                }
                Err(e) => {
                    warn!(conn = id, error = %e, "cannot start a connection thread; closing it")
                }
            }
        }
        info!(connections = tasks.len(), "NBD server shutting down");
        stop_tx.send_replace(true);
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            warn!(
                remaining = tasks.len(),
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                "connections still busy after the shutdown grace period; aborting them"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// Asks for a send buffer of `bytes` (the kernel clamps it to `net.core.wmem_max` and doubles
/// it). Failure only costs speed, so it is logged, not fatal.
fn set_send_buffer(s: &UnixStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: SO_SNDBUF reads one c_int through the pointer, which points to `v` and whose size
    // is passed; the fd is open for the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const v).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("4 bytes"),
        )
    };
    if r != 0 {
        debug!(error = %io::Error::last_os_error(), "cannot enlarge the socket send buffer");
    }
}

type BoxRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// The writing half of a client socket: an `AsyncWrite`, plus what `splice` needs (the fd and
/// write readiness).
pub(crate) enum BoxWrite {
    Unix(tokio::net::unix::OwnedWriteHalf),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

impl BoxWrite {
    /// Runs `f` (a non-blocking write to [`fd`](Self::fd)) once the socket is writable, until
    /// it does not return `WouldBlock`.
    pub(crate) async fn write_with<R>(
        &self,
        mut f: impl FnMut(RawFd) -> io::Result<R>,
    ) -> io::Result<R> {
        use tokio::io::Interest;
        loop {
            let r = match self {
                Self::Unix(w) => {
                    let s = w.as_ref();
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || f(s.as_raw_fd()))
                }
                Self::Tcp(w) => {
                    let s = w.as_ref();
                    s.writable().await?;
                    s.try_io(Interest::WRITABLE, || f(s.as_raw_fd()))
                }
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

macro_rules! delegate_write {
    ($self:ident, $w:ident => $e:expr) => {
        match Pin::get_mut($self) {
            BoxWrite::Unix($w) => $e,
            BoxWrite::Tcp($w) => $e,
        }
    };
}

impl tokio::io::AsyncWrite for BoxWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate_write!(self, w => Pin::new(w).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate_write!(self, w => Pin::new(w).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_write!(self, w => Pin::new(w).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_write!(self, w => Pin::new(w).poll_shutdown(cx))
    }
}

/// An accepted client socket.
enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// An accepted client socket detached from its runtime, to be registered with another.
enum StdStream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Accepted {
    fn split(self) -> (BoxRead, BoxWrite) {
        match self {
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), BoxWrite::Unix(w))
            }
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), BoxWrite::Tcp(w))
            }
        }
    }

    /// Leaves the current runtime (the socket stays non-blocking).
    fn into_std(self) -> io::Result<StdStream> {
        Ok(match self {
            Self::Unix(s) => StdStream::Unix(s.into_std()?),
            Self::Tcp(s) => StdStream::Tcp(s.into_std()?),
        })
    }

    /// Registers with the runtime this is called in.
    fn from_std(s: StdStream) -> io::Result<Self> {
        Ok(match s {
            StdStream::Unix(s) => Self::Unix(UnixStream::from_std(s)?),
            StdStream::Tcp(s) => Self::Tcp(TcpStream::from_std(s)?),
        })
    }
}

async fn accept(l: &Listener, unix_send_buffer: Option<usize>) -> io::Result<(Accepted, String)> {
    match l {
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            if let Some(bytes) = unix_send_buffer {
                set_send_buffer(&s, bytes);
            }
            Ok((Accepted::Unix(s), "unix".to_owned()))
        }
        Listener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            // The spec: disable Nagle, or multi-packet replies wait for the peer's ACK.
            s.set_nodelay(true)?;
            Ok((Accepted::Tcp(s), addr.to_string()))
        }
    }
}

//! The NBD protocol (`doc/proto.md` of the NetworkBlockDevice project, plus the
//! extended-headers extension): a pure codec for the handshake and transmission phases, and a
//! tokio server over a block backend. What of the spec is implemented, section by section, and
//! every limit, is in `docs/nbd.md`.
//!
//! # Layout
//! - Pure codec, no tokio (build with `default-features = false`, as the fuzz targets do):
//!   - [`proto`]: wire constants and error values.
//!   - [`handshake`]: fixed newstyle negotiation — parsers for the client flags, option headers
//!     and every option, and the [`Negotiator`](handshake::Negotiator) state machine that
//!     answers them.
//!   - [`session`]: what a handshake agrees on ([`session::ExportInfo`],
//!     [`Session`](session::Session)).
//!   - [`request`]: request headers (compact and extended) decoded against the session into
//!     typed [`Command`](request::Command)s, or a rejection with the spec's errno.
//!   - [`reply`]: simple, structured and extended reply encoding.
//! - `server` (feature `server`, default): [`Server`], the [`Backend`] trait, [`FileBackend`],
//!   [`Export`] (with its export-wide FLUSH barrier) and [`ExportLookup`].
//!
//! # Using the server (replicatord)
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use tandem_nbd::{Export, Exports, FileBackend, FileOptions, Listener, Server, ServerConfig};
//!
//! let backend = FileBackend::open("/var/lib/tandem/r0.img".as_ref(), FileOptions::default())?;
//! let exports = Exports::new();
//! exports.insert(Export::new("r0", Arc::new(backend)));
//! exports.set_default(Some("r0"));
//! let server = Server::new(exports.clone(), ServerConfig::default());
//! let listener = Listener::bind_unix("/run/tandem/r0.nbd".as_ref())?;
//! // nbd+unix:///r0?socket=/run/tandem/r0.nbd
//! server.serve(listener, async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```
//!
//! - To refuse clients while a resource is Secondary, implement [`ExportLookup`] and return
//!   `Err(Refusal::policy("resource r0 is Secondary on node n1; the export is only served while Primary"))`:
//!   `NBD_OPT_GO` gets `NBD_REP_ERR_POLICY` with that text (nbdinfo and qemu print it);
//!   `NBD_OPT_EXPORT_NAME` cannot carry an error and is disconnected.
//! - On demotion, call [`Export::close`]: its connections finish the requests in flight and
//!   close.
//! - A replicated device implements [`Backend`]: every method returns a boxed future, so
//!   `write` can await the peer's acknowledgement (protocol C) before the client's reply goes
//!   out; `Bytes` lets it send the same buffer to disk and peer. `flush` is called through the
//!   export-wide barrier ([`Export::flush`]), so it runs once for many concurrent FLUSHes and
//!   always *starts* after every write a client saw completed.
//! - Reads: a backend whose exported bytes are a file's bytes at the same offsets returns that
//!   file from [`Backend::zero_copy_file`]; large READs then go from its page cache to the
//!   socket with `splice(2)`, never copied in this process. Override [`Backend::read_into`]
//!   (delegate to [`FileBackend::read_into`]) so the other READs reuse the connection's
//!   buffers.
//!
//! # Tracing
//! Log lines carry stable fields: `conn` (connection id), `peer`, `export`, `cmd`, `cookie`,
//! `offset`, `errno`, `error`, `reason`.

pub mod handshake;
pub mod proto;
pub mod reply;
pub mod request;
pub mod session;
mod wire;

#[cfg(feature = "server")]
mod server;

/// The buffer type of WRITE payloads ([`Backend::write`]).
#[cfg(feature = "server")]
pub use bytes::Bytes;
#[cfg(feature = "server")]
pub use server::{
    Backend, BoxFuture, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_UNIX_SEND_BUFFER, Export, ExportLookup, Exports,
    FileBackend, FileOptions, FlushBarrier, IoMode, Listener, Server, ServerConfig,
    on_connection_thread,
};

pub use handshake::{ExportListing, Refusal, RefusalKind};
pub use reply::Extent;
pub use request::ZeroFlags;
pub use session::{BlockSizes, Capabilities, ExportInfo};

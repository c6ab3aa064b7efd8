//! Everything that reaches the event loop. Only the loop changes resource state; everyone
//! else sends one of these and, when they need an answer, waits on a oneshot.
//!
//! Two kinds of queue feed the loop: the shared [`Event`] queue (control requests, NBD lookups,
//! completions of disk work, peer connections and messages, ticks) and one queue of data
//! requests per exported resource ([`NbdReq`]), which the loop reads only while the resource's
//! replication state machine gives write credit — that is the back-pressure on NBD clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use replicator_core::protocol::verify::Digest;
use replicator_core::protocol::{ConnId, IoError, IoId, LinkLoss};
use replicator_core::wire::Message;
use replicator_core::wire::preamble::{Preamble, Verdict};
use tandem_nbd::{Export, ExportListing, Refusal};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::control::{Command, Response};
use crate::exit::Failure;
use crate::volume::Attached;

/// Bound of the event queue. At the bound senders wait: a peer connection's reader stops
/// reading its socket (TCP then pushes back on the peer), a control connection waits,
/// completions of disk work already started wait their turn. The loop itself never sends into
/// it while holding state, so it cannot deadlock on it.
pub const EVENT_QUEUE: usize = 4096;

/// Bound of each resource's queue of NBD data requests. At the bound the NBD connection tasks
/// wait, so they stop reading requests from their sockets (and the server's own per-connection
/// bounds push back on the clients). The loop stops taking requests from this queue while the
/// replication state machine has no write credit.
pub const NBD_QUEUE: usize = 256;

/// An event for the loop.
#[derive(Debug)]
pub enum Event {
    /// A control request and where to answer it.
    Control(Command, oneshot::Sender<Response>),
    /// An NBD lookup or listing.
    Nbd(Nbd),
    /// Blocking or asynchronous disk work finished.
    Disk(Disk),
    /// Something happened on a replication connection.
    Peer(Peer),
    /// The periodic tick.
    Tick,
    /// SIGTERM or SIGINT: demote, detach and exit.
    Shutdown,
}

/// A data request from a resource's export.
#[derive(Debug)]
pub enum NbdReq {
    /// WRITE (with FUA).
    Write {
        /// Byte offset.
        offset: u64,
        /// Payload.
        data: Bytes,
        /// Durable before the reply.
        fua: bool,
        /// The answer.
        reply: IoReply,
    },
    /// TRIM or WRITE_ZEROES: the range reads as zeroes on both nodes afterwards.
    Zero {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Durable before the reply.
        fua: bool,
        /// The answer.
        reply: IoReply,
    },
    /// FLUSH (through the export-wide barrier).
    Flush {
        /// The answer.
        reply: IoReply,
    },
}

/// Where a data request's answer goes.
pub type IoReply = oneshot::Sender<io::Result<()>>;

/// Lookups from NBD listeners.
#[derive(Debug)]
pub enum Nbd {
    /// A client asks for export `name` on the listener `listener`.
    Lookup {
        /// The listener's address (socket path or host:port).
        listener: Arc<str>,
        /// Export name asked for.
        name: String,
        /// The export, or why not.
        reply: oneshot::Sender<Result<Arc<Export>, Refusal>>,
    },
    /// A client lists the exports of `listener`.
    List {
        /// The listener's address.
        listener: Arc<str>,
        /// The open exports.
        reply: oneshot::Sender<Vec<ExportListing>>,
    },
}

/// The result of a local disk operation the replication machine asked for.
#[derive(Debug)]
pub enum IoDone {
    /// `DiskWrite`.
    Write(Result<(), IoError>),
    /// `DiskRead`.
    Read(Result<Bytes, IoError>),
    /// `DiskFlush`.
    Flush(Result<(), IoError>),
    /// `ComputeDigests`.
    Digests(Result<Vec<Digest>, IoError>),
}

/// Completions of disk work.
#[derive(Debug)]
pub enum Disk {
    /// `up`'s attach finished.
    Attached {
        /// Resource name.
        resource: String,
        /// The attached volume, or why not.
        result: Result<Box<Attached>, Failure>,
    },
    /// A disk operation of the replication machine finished.
    Io {
        /// Resource name.
        resource: Arc<str>,
        /// The machine's id of the operation.
        io: IoId,
        /// Its result.
        done: IoDone,
    },
    /// A meta-data job finished.
    MetaDone {
        /// Resource name.
        resource: Arc<str>,
        /// What the job made durable.
        done: Vec<super::meta_io::Done>,
        /// Its result.
        result: io::Result<()>,
    },
}

/// Replication connections.
#[derive(Debug)]
pub enum Peer {
    /// A connection accepted on the resource's address presented a valid preamble.
    Offered {
        /// Resource whose listener accepted it.
        resource: Arc<str>,
        /// The connection.
        stream: TcpStream,
        /// What the dialer said.
        preamble: Preamble,
        /// Where it came from.
        from: SocketAddr,
    },
    /// A dial attempt finished.
    Dialed {
        /// Resource.
        resource: Arc<str>,
        /// Which attempt.
        attempt: u64,
        /// The connection and the peer's verdict, or why it failed.
        result: Result<(TcpStream, Verdict), String>,
    },
    /// The listener could not be bound (it is retried).
    ListenFailed {
        /// Resource.
        resource: Arc<str>,
        /// Which listener incarnation.
        generation: u64,
        /// Why.
        error: String,
    },
    /// A message arrived on a connection.
    Message {
        /// Resource.
        resource: Arc<str>,
        /// Connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// A connection ended (read or write side).
    Closed {
        /// Resource.
        resource: Arc<str>,
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: LinkLoss,
    },
}

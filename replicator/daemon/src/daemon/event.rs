//! Everything that reaches the event loop. Only the loop changes resource state; everyone
//! else sends one of these and, when they need an answer, waits on a oneshot.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tandem_nbd::request::ZeroFlags;
use tandem_nbd::{Export, ExportListing, Refusal};
use tokio::sync::oneshot;

use crate::control::{Command, Response};
use crate::exit::Failure;
use crate::volume::Attached;

/// Bound of the event queue. At the bound senders wait: an NBD connection stops reading
/// requests (its own in-flight bound then pushes back on the client), a control connection
/// waits; completions of disk work already started wait their turn.
pub const EVENT_QUEUE: usize = 4096;

/// An event for the loop.
#[derive(Debug)]
pub enum Event {
    /// A control request and where to answer it.
    Control(Command, oneshot::Sender<Response>),
    /// A request from an NBD connection.
    Nbd(Nbd),
    /// Blocking disk work finished.
    Disk(Disk),
    /// The periodic tick.
    Tick,
    /// SIGTERM or SIGINT: demote, detach and exit.
    Shutdown,
}

/// A data-changing operation on a resource's export.
#[derive(Debug)]
pub enum DataOp {
    /// WRITE (with FUA).
    Write {
        /// Payload.
        data: Bytes,
        /// Durable before the reply.
        fua: bool,
    },
    /// TRIM.
    Trim {
        /// Length in bytes.
        len: u64,
        /// Durable before the reply.
        fua: bool,
    },
    /// WRITE_ZEROES.
    Zero {
        /// Length in bytes.
        len: u64,
        /// Flags.
        flags: ZeroFlags,
    },
}

impl DataOp {
    /// Bytes the operation covers.
    pub fn len(&self) -> u64 {
        match self {
            DataOp::Write { data, .. } => data.len() as u64,
            DataOp::Trim { len, .. } | DataOp::Zero { len, .. } => *len,
        }
    }

    /// Whether it covers nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests from NBD connections.
#[derive(Debug)]
pub enum Nbd {
    /// A write, trim or zeroing of `resource`.
    Data {
        /// Resource name.
        resource: Arc<str>,
        /// Byte offset.
        offset: u64,
        /// The operation.
        op: DataOp,
        /// The answer.
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// A FLUSH of `resource`.
    Flush {
        /// Resource name.
        resource: Arc<str>,
        /// The answer.
        reply: oneshot::Sender<io::Result<()>>,
    },
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

/// Completions of blocking work.
#[derive(Debug)]
pub enum Disk {
    /// `up`'s attach finished.
    Attached {
        /// Resource name.
        resource: String,
        /// The attached volume, or why not.
        result: Result<Box<Attached>, Failure>,
    },
    /// A data operation finished.
    DataDone {
        /// Resource name.
        resource: Arc<str>,
        /// The operation's id.
        id: u64,
        /// Its result.
        result: io::Result<()>,
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
    /// An fdatasync of the data finished (demotion).
    Synced {
        /// Resource name.
        resource: Arc<str>,
        /// Its result.
        result: io::Result<()>,
    },
}

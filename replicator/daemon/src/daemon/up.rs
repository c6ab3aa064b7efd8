//! An attached resource: its files and meta-data, its replication state machine
//! ([`Replica`], the one owner of role, disk, connection, bitmap and hot set), the queue of the
//! machine's outputs, the NBD requests waiting for write credit, and the replication link.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Instant;

use replicator_core::bitmap::Bitmap;
use replicator_core::config::{Handlers, Host, Resource};
use replicator_core::meta::{ActivityLog as AlTable, Layout, Superblock};
use replicator_core::protocol::{Output, Replica, Time};
use tandem_nbd::{Export, FileBackend};
use tokio::sync::{mpsc, oneshot};

use super::event::{Event, IoDone, IoReply, NBD_QUEUE, NbdReq};
use super::meta_io::MetaQueue;
use super::peer::PeerLink;
use crate::control::Response;
use crate::status::IoStatus;

/// What handlers need from the daemon.
pub struct Ctx<'a> {
    /// The event queue (for completions of spawned work).
    pub events: &'a mpsc::Sender<Event>,
    /// This node's name.
    pub node: &'a str,
    /// The origin of the machines' clock.
    pub origin: Instant,
}

impl Ctx<'_> {
    /// Now, on the machines' clock.
    pub fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant of machine time `t`.
    pub fn instant(&self, t: Time) -> Instant {
        self.origin + std::time::Duration::from_nanos(t.as_nanos())
    }
}

/// Where a control request's answer goes.
pub type Reply = oneshot::Sender<Response>;

/// An item of the output queue: the machine's outputs, in order, and answers the daemon gives
/// once the outputs before them are carried out (so an answer never precedes the durability of
/// what it reports).
#[derive(Debug)]
pub enum Item {
    /// An output of the machine.
    Out(Output),
    /// Answer a control request.
    Reply(Reply, Response),
    /// Open the export (the promotion is durable), then answer.
    Promoted(Reply, Response),
}

/// A client request handed to the machine (one NBD request may be several chunks).
#[derive(Debug)]
pub enum ClientOp {
    /// A chunk of data request `parent`.
    Chunk {
        /// The NBD request.
        parent: u64,
        /// Bytes.
        len: u64,
    },
    /// A FLUSH.
    Flush(IoReply),
}

/// An NBD data request being split into chunks the machine accepts.
#[derive(Debug)]
pub struct DataOp {
    /// Chunks handed to the machine and not yet completed.
    pub outstanding: usize,
    /// Bytes not yet handed to the machine.
    pub unsent: u64,
    /// The first error.
    pub error: Option<io::Error>,
    /// The answer.
    pub reply: Option<IoReply>,
}

/// A request waiting for write credit.
#[derive(Debug)]
pub enum Held {
    /// Data (a WRITE, or zeroes for TRIM/WRITE_ZEROES when `data` is `None`) from `offset`.
    Data {
        /// The NBD request.
        parent: u64,
        /// Next offset to hand over.
        offset: u64,
        /// What is left of the payload.
        data: Option<bytes::Bytes>,
        /// Bytes left.
        len: u64,
        /// FUA.
        fua: bool,
    },
    /// A FLUSH (after the writes before it).
    Flush(IoReply),
}

/// Counters in the spirit of `/proc/drbd` (bytes, not KiB).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// `ns`: replicated and resync data sent.
    pub net_sent: u64,
    /// `nr`: replicated and resync data received.
    pub net_received: u64,
    /// `dw`: bytes written to the local disk.
    pub disk_written: u64,
    /// `dr`: bytes read from the local disk for the machine (resync, verify).
    pub disk_read: u64,
    /// `bm`: bitmap pages written.
    pub bitmap_writes: u64,
    /// Resync data sent / received.
    pub resync_sent: u64,
    /// Resync data received.
    pub resync_received: u64,
    /// Replicated application data sent.
    pub data_sent: u64,
    /// Replicated application data received.
    pub data_received: u64,
}

/// The outcome of the last online verify seen on this node.
#[derive(Debug, Clone, Copy)]
pub struct VerifyResult {
    /// Blocks compared.
    pub checked: u64,
    /// Blocks found different.
    pub mismatched: u64,
    /// Ran to the end.
    pub complete: bool,
}

/// The last resync that finished on this node.
#[derive(Debug, Clone, Copy)]
pub struct ResyncResult {
    /// Bytes transferred.
    pub bytes: u64,
    /// How long it took, from its start to the last block durable on the target.
    pub seconds: f64,
    /// This node was the SyncSource.
    pub source: bool,
}

/// A control transition in progress (one at a time per resource).
#[derive(Debug)]
pub enum Step {
    /// Demoting: the export is closed; waiting for client requests to finish.
    Demoting {
        /// Answer (none for a shutdown).
        reply: Option<Reply>,
        /// Go on to detach.
        then_down: bool,
    },
    /// Detaching: waiting for the machine to settle, then for the final meta-data write.
    Detaching {
        /// Answer.
        reply: Option<Reply>,
        /// The sequence of the final superblock, once queued.
        final_seq: Option<u64>,
    },
}

/// An attached resource.
pub struct Up {
    /// The data (exported) part of the backing file.
    pub data: FileBackend,
    /// The backing file, for writes carried out on the loop's thread.
    pub file: std::fs::File,
    /// When writes are carried out on the loop's thread.
    pub inline: super::drive::InlineWrites,
    /// Where the meta-data lives.
    pub layout: Layout,
    /// The superblock as last queued for writing.
    pub sb: Superblock,
    /// The bitmap as the outputs carried out so far left it (the machine's, lagging by the
    /// outputs still queued); what is persisted.
    pub bitmap: Bitmap,
    /// Bitmap pages changed since they were last written.
    pub dirty: BTreeSet<u32>,
    /// The on-disk activity-log table. The hot set is decided by the machine
    /// (`protocol::al`, via `Output::AlUpdate`); this only encodes its changes as transactions.
    pub al: AlTable,
    /// `al-updates`.
    pub al_enabled: bool,
    /// Meta-data writes, in order.
    pub meta: MetaQueue,
    /// The replication state machine.
    pub replica: Replica,
    /// Outputs not carried out yet.
    pub queue: VecDeque<Item>,
    /// A group of sync points is being made durable: nothing after it is carried out.
    pub blocked: Option<u64>,
    /// Sync-point groups written so far.
    pub groups: u64,
    /// Disk operations that completed inline, to report to the machine.
    pub inline_done: Vec<(replicator_core::protocol::IoId, IoDone)>,
    /// Local disk operations in flight (`lo`).
    pub local_in_flight: u64,
    /// The NBD export while Primary.
    pub export: Option<Arc<Export>>,
    /// Data requests from the export.
    pub nbd_tx: mpsc::Sender<NbdReq>,
    /// Their receiving end (read only while there is write credit).
    pub nbd_rx: mpsc::Receiver<NbdReq>,
    /// Requests waiting for write credit, in arrival order.
    pub held: VecDeque<Held>,
    /// Client requests handed to the machine, by its client id.
    pub clients: HashMap<u64, ClientOp>,
    /// NBD data requests in progress, by number.
    pub ops: HashMap<u64, DataOp>,
    /// Next client id / request number.
    pub next_id: u64,
    /// The replication link (two-node resources).
    pub link: Option<PeerLink>,
    /// A control transition in progress.
    pub step: Option<Step>,
    /// A promotion waiting for the peer's agreement.
    pub promotion: Option<Reply>,
    /// `verify --wait` callers: (answer, started verify as its driver or asked the peer, when).
    pub verify_waiters: Vec<(Reply, Instant)>,
    /// Counters.
    pub counters: Counters,
    /// Counters of the export (the original `io` status fields).
    pub io: IoStatus,
    /// The last verify.
    pub last_verify: Option<VerifyResult>,
    /// Verifies finished on this node since up.
    pub verifies: u64,
    /// Split brains detected since up.
    pub split_brains: u64,
    /// A meta-data write failed: the resource stopped (the disk is Failed).
    pub failed: Option<String>,
    /// `disk-flushes`.
    pub disk_flushes: bool,
    /// The handlers of the configuration.
    pub handlers: Handlers,
    /// The configuration of this node and resource (for handlers' environment).
    pub res_cfg: Resource,
    /// This node's section.
    pub host: Host,
    /// The configuration file (handlers' DRBD_CONF).
    pub conf_path: String,
    /// The export's name and description.
    pub export_name: String,
    /// The newest superblock sequence known durable.
    pub sb_durable: u64,
    /// When the running resync started.
    pub resync_started: Option<Instant>,
    /// The last resync that finished.
    pub last_resync: Option<ResyncResult>,
}

impl Up {
    /// A new NBD request queue pair.
    pub fn nbd_channel() -> (mpsc::Sender<NbdReq>, mpsc::Receiver<NbdReq>) {
        mpsc::channel(NBD_QUEUE)
    }

    /// Whether the loop takes more NBD data requests now: nothing is waiting for credit and
    /// the machine has some.
    pub fn accepting_nbd(&self) -> bool {
        if !self.held.is_empty() {
            return false;
        }
        let c = self.replica.write_credit();
        c.writes > 0 && c.bytes > 0
    }

    /// Client requests in progress (handed to the machine or waiting for credit).
    pub fn client_requests(&self) -> usize {
        self.ops.len()
            + self
                .clients
                .values()
                .filter(|c| matches!(c, ClientOp::Flush(_)))
                .count()
            + self
                .held
                .iter()
                .filter(|h| matches!(h, Held::Flush(_)))
                .count()
    }

    /// A fresh client id.
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

//! What goes in and out of the state machine: events, outputs, identifiers, errors, persisted
//! flags and the status snapshot.

use super::handshake::{Refusal, SyncDirection};
use super::verify::{Digest, VerifyAlg};
use crate::types::{ConnState, DiskState, GenerationIds, Protocol, Role};
use crate::wire::Message;
use bytes::Bytes;

/// A client request's handle, chosen by the daemon (unique among its outstanding requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// One TCP connection to the peer, numbered by the daemon (never reused). Events from a
/// connection the machine has given up are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A local disk operation the machine asked for; the daemon echoes it in the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoId(pub u64);

/// A local disk operation failed (the daemon's error, as text for the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("local I/O error: {0}")]
pub struct IoError(pub String);

/// Why the link to the peer went down (for logs and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkLoss {
    /// The TCP connection closed or failed.
    Closed(String),
    /// A frame failed its checks (checksum, bounds): the daemon dropped the connection.
    BadFrame(String),
}

/// Inputs to [`super::Replica::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An NBD client's write (`fua`: force unit access).
    ClientWrite {
        /// Handle.
        id: ClientId,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// NBD_CMD_FLAG_FUA.
        fua: bool,
    },
    /// An NBD client's read.
    ClientRead {
        /// Handle.
        id: ClientId,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// An NBD client's flush.
    ClientFlush {
        /// Handle.
        id: ClientId,
    },
    /// A [`Output::DiskWrite`] completed.
    DiskWriteDone {
        /// Which.
        io: IoId,
        /// Outcome.
        result: Result<(), IoError>,
    },
    /// A [`Output::DiskRead`] completed.
    DiskReadDone {
        /// Which.
        io: IoId,
        /// The bytes read (exactly the length asked) or the error.
        result: Result<Bytes, IoError>,
    },
    /// A [`Output::DiskFlush`] completed.
    DiskFlushDone {
        /// Which.
        io: IoId,
        /// Outcome.
        result: Result<(), IoError>,
    },
    /// A [`Output::ComputeDigests`] completed.
    DigestsDone {
        /// Which.
        io: IoId,
        /// One digest per block, or the error.
        result: Result<Vec<Digest>, IoError>,
    },
    /// A TCP connection to the peer is up (either side dialled).
    PeerConnected {
        /// The connection.
        conn: ConnId,
    },
    /// A decoded message arrived.
    PeerMessage {
        /// On which connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// The connection went down.
    PeerDisconnected {
        /// Which.
        conn: ConnId,
        /// Why.
        reason: LinkLoss,
    },
}

/// What the daemon must do, in order. Persisting outputs ([`Output::PersistUuids`],
/// [`Output::PersistFlags`], [`Output::AlUpdate`]) are *sync points*: before making one durable
/// the daemon writes out every bitmap change emitted before it, and it makes the sync point
/// durable before acting on any later output. [`Output::MarkOutOfSync`] and
/// [`Output::MarkInSync`] change the in-memory bitmap at once and reach the disk lazily (at the
/// next sync point, at clean shutdown, or earlier): the activity log covers a crash in between.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `msg` on connection `conn` (drop it if that connection is gone).
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: Message,
    },
    /// Close connection `conn` (the machine has already forgotten it).
    CloseConnection {
        /// Connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// Write `data` at `offset` on the local disk; with `fua`, durably.
    DiskWrite {
        /// Echo in [`Event::DiskWriteDone`].
        io: IoId,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// Force unit access.
        fua: bool,
    },
    /// Read `len` bytes at `offset` from the local disk.
    DiskRead {
        /// Echo in [`Event::DiskReadDone`].
        io: IoId,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Flush the local disk's volatile cache (fdatasync): every write completed before this
    /// output must be durable when [`Event::DiskFlushDone`] comes back.
    DiskFlush {
        /// Echo in [`Event::DiskFlushDone`].
        io: IoId,
    },
    /// Read `blocks` 4 KiB blocks from `first_block` and compute one digest per block with
    /// [`super::verify::digest`].
    ComputeDigests {
        /// Echo in [`Event::DigestsDone`].
        io: IoId,
        /// First block.
        first_block: u64,
        /// Number of blocks.
        blocks: u64,
        /// Algorithm.
        alg: VerifyAlg,
    },
    /// Complete a client write or flush.
    ClientDone {
        /// Handle.
        id: ClientId,
        /// Outcome.
        result: Result<(), ClientError>,
    },
    /// Complete a client read.
    ClientReadDone {
        /// Handle.
        id: ClientId,
        /// The data or the error.
        result: Result<Bytes, ClientError>,
    },
    /// Persist the generation identifiers (sync point).
    PersistUuids(GenerationIds),
    /// Persist the meta-data flags (sync point).
    PersistFlags(MdFlags),
    /// Persist an activity-log transaction: extents made hot, extents dropped (sync point).
    AlUpdate {
        /// Extents (4 MiB units) that became hot.
        activate: Vec<u64>,
        /// Extents no longer hot.
        evict: Vec<u64>,
    },
    /// Set bitmap bits `first_block .. first_block + blocks` (lazily persisted).
    MarkOutOfSync {
        /// First block.
        first_block: u64,
        /// Count.
        blocks: u64,
    },
    /// Clear bitmap bits `first_block .. first_block + blocks` (lazily persisted).
    MarkInSync {
        /// First block.
        first_block: u64,
        /// Count.
        blocks: u64,
    },
    /// The outcome of an admin command that returned [`AdminDone::Pending`].
    AdminResult {
        /// The command.
        cmd: AdminCommand,
        /// Its outcome.
        result: Result<(), AdminError>,
    },
    /// Run a DRBD-style handler script (`handlers { split-brain ...; }`).
    CallHandler(Handler),
    /// Something an operator wants in the log and the status (state changes and events).
    Notice(Notice),
}

/// DRBD's handler names that the machine may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `split-brain`: a split brain was detected and not resolved automatically.
    SplitBrain,
    /// `initial-split-brain`: a split brain was detected (resolved or not).
    InitialSplitBrain,
    /// `pri-lost-after-sb`: this Primary lost a split-brain decision and could not demote.
    PriLostAfterSb,
}

/// A change an operator should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Connection state changed.
    Conn {
        /// From.
        from: ConnState,
        /// To.
        to: ConnState,
    },
    /// Local disk state changed.
    Disk {
        /// From.
        from: DiskState,
        /// To.
        to: DiskState,
    },
    /// Local role changed.
    Role {
        /// From.
        from: Role,
        /// To.
        to: Role,
    },
    /// The peer's role or disk state changed.
    Peer {
        /// Its role.
        role: Role,
        /// Its disk.
        disk: DiskState,
    },
    /// The connection was refused (by either side).
    Refused(Refusal),
    /// The link went down.
    LinkLost(String),
    /// The sync handshake decided (DRBD's `hg` and rule number, for the log).
    Handshake {
        /// `drbd_uuid_compare` result.
        hg: i32,
        /// Rule that produced it.
        rule: u32,
    },
    /// A resync started.
    ResyncStarted {
        /// This node's side.
        direction: SyncDirection,
        /// Out-of-sync blocks at the start.
        blocks: u64,
        /// Whether it is a full sync.
        full: bool,
    },
    /// A resync finished.
    ResyncFinished {
        /// This node's side.
        direction: SyncDirection,
        /// Blocks transferred.
        blocks: u64,
    },
    /// Online verify finished (or was cut short by a lost link).
    VerifyFinished {
        /// Blocks compared.
        checked: u64,
        /// Blocks found different (now marked out of sync).
        mismatched: u64,
        /// It ran to the end.
        complete: bool,
    },
    /// A new current UUID was generated.
    NewCurrentUuid(GenerationIds),
    /// A local I/O error.
    IoError(String),
    /// The peer broke the protocol; the connection was dropped.
    ProtocolError(String),
}

/// Why a client request failed (mapped to NBD errors by the daemon).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// This node is not Primary (NBD: EPERM).
    #[error("this node is not Primary")]
    NotPrimary,
    /// Past the end of the device or empty (NBD: EINVAL / ENOSPC).
    #[error("request {offset}+{len} is outside the {size}-byte device")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Device size.
        size: u64,
    },
    /// Longer than the machine accepts in one request (NBD: EINVAL / EOVERFLOW).
    #[error("request of {0} bytes exceeds the per-request limit")]
    TooLarge(u64),
    /// Submitted beyond [`super::Replica::write_credit`] (NBD: ENOMEM/EAGAIN; a daemon bug).
    #[error("too many writes in flight")]
    Busy,
    /// The local disk failed the operation (NBD: EIO).
    #[error("{0}")]
    Io(String),
}

/// Meta-data flags the machine keeps persisted (DRBD's MDF_* bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MdFlags {
    /// The data is consistent (not a fresh device, not a resync target mid-sync).
    pub consistent: bool,
    /// The data is known to miss writes the peer has.
    pub outdated: bool,
    /// Primary indicator: set while Primary and until its last writes settled. Found set at
    /// start-up, it means the node went down as Primary: its activity log is applied to the
    /// bitmap and the handshake treats it as a crashed Primary.
    pub primary: bool,
}

/// What the daemon read from the meta-data at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// Generation identifiers.
    pub uuids: GenerationIds,
    /// Flags.
    pub flags: MdFlags,
    /// The quick-sync bitmap.
    pub bitmap: crate::bitmap::Bitmap,
    /// Hot activity-log extents.
    pub al: Vec<u64>,
}

impl Persisted {
    /// Fresh meta-data (`create-md`): just-created UUIDs, inconsistent, clean bitmap.
    pub fn fresh(size_bytes: u64) -> Self {
        Persisted {
            uuids: GenerationIds::just_created(),
            flags: MdFlags::default(),
            bitmap: crate::bitmap::Bitmap::new(size_bytes),
            al: vec![],
        }
    }
}

/// Admin commands (drbdadm's verbs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand {
    /// `primary [--force]`.
    Primary {
        /// `--force`: accept data that is not known to be UpToDate.
        force: bool,
    },
    /// `secondary`.
    Secondary,
    /// `connect [--discard-my-data]`.
    Connect {
        /// `--discard-my-data`: this node is the split-brain victim.
        discard_my_data: bool,
    },
    /// `disconnect`.
    Disconnect,
    /// `invalidate`: discard this node's data and take the peer's (full resync as target).
    Invalidate,
    /// `verify`: online verify against the peer.
    Verify,
}

/// An admin command's immediate outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDone {
    /// Done.
    Done,
    /// Waiting for the peer; an [`Output::AdminResult`] follows.
    Pending,
}

/// Why an admin command was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Promotion without UpToDate data.
    #[error("need access to UpToDate data: the local disk is {0} (use --force to promote anyway)")]
    NoUpToDateData(DiskState),
    /// Promotion while the peer is Primary.
    #[error("the peer is Primary (allow-two-primaries is not set)")]
    PeerIsPrimary,
    /// Two Primaries need protocol C.
    #[error("allow-two-primaries requires protocol C, the resource uses protocol {0}")]
    TwoPrimariesNeedProtocolC(Protocol),
    /// `--force` while the peer has UpToDate data.
    #[error("the peer has UpToDate data: connect and let it resync this node instead of --force")]
    PeerUpToDate,
    /// The command needs a state the resource is not in.
    #[error("not possible while the connection is {conn} and the disk {disk}: {why}")]
    WrongState {
        /// Connection state.
        conn: ConnState,
        /// Disk state.
        disk: DiskState,
        /// What is needed.
        why: &'static str,
    },
    /// The device is in use.
    #[error("device is held open: {0} client requests in flight")]
    Busy(usize),
    /// Online verify needs `verify-alg`.
    #[error("no verify-alg configured for this resource")]
    NoVerifyAlg,
}

/// Progress of a resync or verify, for status (`/proc/drbd`'s progress line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Blocks to do at the start.
    pub total_blocks: u64,
    /// Blocks still to do.
    pub remaining_blocks: u64,
    /// When it started.
    pub started: super::Time,
    /// Recent speed, KiB/s.
    pub rate_kib_s: u64,
    /// Controller's target, KiB/s (what `/proc/drbd` prints in parentheses).
    pub want_kib_s: u64,
}

/// A snapshot for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Own role.
    pub role: Role,
    /// Peer's role (Unknown when not connected).
    pub peer_role: Role,
    /// Own disk.
    pub disk: DiskState,
    /// Peer's disk (DUnknown when not connected).
    pub peer_disk: DiskState,
    /// Connection state.
    pub conn: ConnState,
    /// Replication protocol.
    pub protocol: Protocol,
    /// Generation identifiers.
    pub uuids: GenerationIds,
    /// Out-of-sync blocks.
    pub out_of_sync_blocks: u64,
    /// Why the resource is StandAlone, if it was refused.
    pub refusal: Option<Refusal>,
    /// Resync progress, while syncing.
    pub resync: Option<Progress>,
    /// Verify progress and mismatches so far, while verifying.
    pub verify: Option<(Progress, u64)>,
    /// Client writes in flight.
    pub writes_in_flight: usize,
    /// Writes completed but not yet settled on both nodes.
    pub unsettled_writes: usize,
    /// Hot activity-log extents.
    pub al_extents: usize,
}

/// How much more the daemon may submit (see [`super::config::Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCredit {
    /// Writes.
    pub writes: usize,
    /// Bytes.
    pub bytes: u64,
}

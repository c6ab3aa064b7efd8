//! Vocabulary shared by the configuration, the meta-data and the replication protocol.
//!
//! The names are DRBD's (REFERENCE.md, "States"), so that an operator who knows `drbdadm status`
//! and `/proc/drbd` recognises every state Tandem reports.

use serde::{Deserialize, Serialize};

/// A node's id within a resource (DRBD's `node-id`), 0..=31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u8);

/// A generation identifier (DRBD's "UUID"): a random 64-bit tag naming one generation of the
/// data. Bit 0 is DRBD's "primary" flag on the current UUID; [`Uuid::value`] masks it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uuid(pub u64);

impl Uuid {
    /// The "no generation" value (fresh meta-data: nothing written yet).
    pub const JUST_CREATED: Uuid = Uuid(4);
    /// An unused slot (bitmap UUID when no bitmap is tracked, empty history slot).
    pub const NONE: Uuid = Uuid(0);

    /// The identifier without DRBD's primary flag bit, as compared by the handshake.
    pub fn value(self) -> u64 {
        self.0 & !1
    }

    /// Whether this is the unused-slot value.
    pub fn is_none(self) -> bool {
        self.value() == 0
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// Number of history UUIDs kept (DRBD 8.4 keeps two).
pub const HISTORY_UUIDS: usize = 2;

/// The generation identifiers of one node's data, as in DRBD: `current` names the data now;
/// `bitmap` names the generation the quick-sync bitmap is relative to (non-zero while the peer is
/// missing changes); `history` lists older generations, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerationIds {
    /// The current data generation.
    pub current: Uuid,
    /// The generation the bitmap counts changes from, or [`Uuid::NONE`].
    pub bitmap: Uuid,
    /// Older generations, newest first; [`Uuid::NONE`] for an empty slot.
    pub history: [Uuid; HISTORY_UUIDS],
}

impl GenerationIds {
    /// The identifiers of freshly created meta-data.
    pub const fn just_created() -> Self {
        GenerationIds {
            current: Uuid::JUST_CREATED,
            bitmap: Uuid::NONE,
            history: [Uuid::NONE; HISTORY_UUIDS],
        }
    }
}

/// Replication protocol (REFERENCE.md): when a write is acknowledged to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Local disk done and the data in the send buffer.
    A,
    /// Local disk done and the peer has received the data.
    B,
    /// Local disk done and the peer's disk write is done (the default).
    C,
}

/// A node's role for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Serves the device to local users (NBD export open).
    Primary,
    /// Receives replication; the export refuses clients.
    Secondary,
    /// The peer's role while not connected.
    Unknown,
}

/// Disk state, DRBD's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiskState {
    /// No backing disk attached.
    Diskless,
    /// Reading meta-data.
    Attaching,
    /// An I/O error took the disk away.
    Failed,
    /// Attached, waiting for the handshake to decide.
    Negotiating,
    /// Data not usable: a sync target mid-sync, or fresh meta-data.
    Inconsistent,
    /// Consistent but known to miss writes the peer has.
    Outdated,
    /// The peer's disk while not connected.
    DUnknown,
    /// Consistent, but whether it is the newest is not known (no peer to ask).
    Consistent,
    /// Consistent and the newest.
    UpToDate,
}

/// Connection state, DRBD's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnState {
    /// Not trying to connect (after `disconnect`, split brain, or a refused handshake).
    StandAlone,
    /// Tearing the connection down.
    Disconnecting,
    /// About to try.
    Unconnected,
    /// Listening and dialling, waiting for the peer.
    WFConnection,
    /// TCP up, exchanging parameters.
    WFReportParams,
    /// Connected, in sync or idle.
    Connected,
    /// About to become sync source.
    StartingSyncS,
    /// About to become sync target.
    StartingSyncT,
    /// Sending the bitmap (as source).
    WFBitMapS,
    /// Receiving the bitmap (as target).
    WFBitMapT,
    /// Sending out-of-sync blocks to the peer.
    SyncSource,
    /// Receiving out-of-sync blocks from the peer.
    SyncTarget,
    /// Sync paused, this side is source.
    PausedSyncS,
    /// Sync paused, this side is target.
    PausedSyncT,
    /// Online verify, this side started it.
    VerifyS,
    /// Online verify, the peer started it.
    VerifyT,
}

macro_rules! display_as_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self, f)
            }
        }
    )*};
}
display_as_debug!(Protocol, Role, DiskState, ConnState);

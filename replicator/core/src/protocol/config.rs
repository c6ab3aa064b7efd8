//! What the state machine needs to know about its resource, and its bounds.

use super::al::AL_EXTENTS_DEFAULT;
use super::rate::RateConfig;
use super::split_brain::AfterSbPolicies;
use super::verify::VerifyAlg;
use crate::types::{NodeId, Protocol};
use std::time::Duration;

/// Bounds of the machine. Each says what happens when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client writes accepted and not yet completed to the client. At the bound
    /// [`super::Replica::write_credit`] is zero: the daemon stops reading requests from NBD
    /// clients (back-pressure) until a write completes; a write submitted anyway fails with
    /// [`super::ClientError::Busy`].
    pub max_writes_in_flight: usize,
    /// Bytes of those writes (the data the machine holds on to). Same behaviour at the bound.
    pub max_write_bytes_in_flight: u64,
    /// Writes completed to the client but not yet settled (durable on both nodes): the
    /// transfer log, which is also what can sit in the send queue under protocol A. At 3/4 of
    /// the bound the machine issues a barrier; at the bound, write credit is zero until a
    /// barrier acknowledgement settles them. This bounds the daemon's send queue too.
    pub max_unsettled_writes: usize,
    /// Bytes of unsettled writes; same behaviour.
    pub max_unsettled_bytes: u64,
    /// Resync bytes sent and not yet confirmed durable by the target (the resync window). At
    /// the bound the source reads no more blocks until an `RsBarrierAck` arrives.
    pub resync_window_bytes: u64,
    /// Longest resync request (contiguous out-of-sync blocks read and sent as one message).
    pub resync_request_bytes: u64,
    /// Verify blocks requested and not yet answered. At the bound the verify source waits.
    pub verify_window_blocks: u64,
    /// Writes received from the peer and not yet on the local disk. A peer exceeding it (it
    /// would have to ignore its own bounds) is dropped with a protocol error.
    pub max_peer_writes_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_writes_in_flight: 1024,
            max_write_bytes_in_flight: 64 << 20,
            max_unsettled_writes: 8192,
            max_unsettled_bytes: 256 << 20,
            resync_window_bytes: 8 << 20,
            resync_request_bytes: 128 << 10,
            verify_window_blocks: 2048,
            max_peer_writes_pending: 16384,
        }
    }
}

/// DRBD's `fencing` policy (drbd.conf(5): `disk { fencing ...; }` in 8.4, `net { }` in 9), as
/// the state machine applies it when a **Secondary** loses its peer. (A Primary that loses its
/// peer stays UpToDate and starts a new data generation under every policy.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fencing {
    /// DRBD's default and 8.4's behaviour: the Secondary keeps `UpToDate` (peer `DUnknown`) and
    /// can be promoted without `--force`, so a cluster manager can fail over after the Primary
    /// dies. If the peer was in fact alive and went on writing, both data sets now have changes:
    /// the generation UUIDs make that a split brain at the reconnect (both StandAlone), never a
    /// silent resync.
    #[default]
    DontCare,
    /// The Secondary drops to `Consistent`: it cannot know whether the peer goes on writing, so
    /// promoting it needs the peer outdated or `--force`.
    ResourceOnly,
    /// As `ResourceOnly` for the Secondary (freezing the Primary's I/O until the peer is fenced
    /// is the fence-peer handler's part).
    ResourceAndStonith,
}

impl Fencing {
    /// Whether a Secondary that loses its peer keeps `UpToDate`.
    pub fn secondary_keeps_up_to_date(self) -> bool {
        self == Fencing::DontCare
    }
}

/// The resource as this node's state machine sees it (from the `.res` file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The peer's id.
    pub peer_node_id: NodeId,
    /// Usable size of the replicated device, bytes (a multiple of 4 KiB).
    pub size_bytes: u64,
    /// Replication protocol.
    pub protocol: Protocol,
    /// `allow-two-primaries` (honoured only with protocol C).
    pub allow_two_primaries: bool,
    /// `after-sb-*pri`.
    pub after_sb: AfterSbPolicies,
    /// `fencing`: what a Secondary that loses its peer believes about its data.
    pub fencing: Fencing,
    /// `verify-alg`, if configured.
    pub verify_alg: Option<VerifyAlg>,
    /// Resync rate settings.
    pub rate: RateConfig,
    /// `al-extents`.
    pub al_extents: u32,
    /// `ping-int`: idle time after which a keep-alive is sent (DRBD default 10 s).
    pub ping_int: Duration,
    /// `ping-timeout`: how long the peer has to answer it (DRBD default 500 ms).
    pub ping_timeout: Duration,
    /// A barrier is issued when writes have stayed unsettled this long (so the activity log
    /// drains on an idle device).
    pub barrier_interval: Duration,
    /// Bounds.
    pub limits: Limits,
    /// A resource with a single node (one `on` section): there is no peer, so nothing is ever
    /// out of sync. Writes take no activity-log extents, mark no bitmap bits and are settled
    /// as soon as they complete; the disk comes up UpToDate when consistent (no peer can hold
    /// newer data); `connect` is refused.
    pub standalone: bool,
}

impl ReplicaConfig {
    /// A configuration with DRBD's defaults for everything but the identity and size.
    pub fn new(node_id: NodeId, peer_node_id: NodeId, size_bytes: u64, protocol: Protocol) -> Self {
        ReplicaConfig {
            node_id,
            peer_node_id,
            size_bytes,
            protocol,
            allow_two_primaries: false,
            after_sb: AfterSbPolicies::default(),
            fencing: Fencing::DontCare,
            verify_alg: None,
            rate: RateConfig::default(),
            al_extents: AL_EXTENTS_DEFAULT,
            ping_int: Duration::from_secs(10),
            ping_timeout: Duration::from_millis(500),
            barrier_interval: Duration::from_millis(100),
            limits: Limits::default(),
            standalone: false,
        }
    }
}

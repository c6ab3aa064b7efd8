//! The connection handshake: parameter checks and the sync decision by generation UUIDs.
//!
//! Both nodes send a [`Hello`] as soon as the connection is up and run the same pure functions on
//! (mine, peer's): [`check_params`] (protocol version, node ids, size, replication protocol,
//! settings that must agree, two Primaries) and [`decide`] (DRBD 8.4's `drbd_uuid_compare` +
//! `drbd_sync_handshake`). Given mirrored inputs (and the tie-breaker flag negated) the two nodes
//! reach mirror-image decisions, which a property test checks. When one side refuses for a
//! reason only it can see (it is Primary and would become SyncTarget), it sends `Refuse` with the
//! reason so that both sides go StandAlone saying why.
//!
//! `drbd_uuid_compare`'s result codes (`hg`), kept for log lines an operator can look up:
//!
//! | hg | meaning |
//! |---|---|
//! | 2 / -2 | SyncSource / SyncTarget, full sync (set the whole bitmap) |
//! | 1 / -1 | SyncSource / SyncTarget, by bitmap |
//! | 0 | no sync |
//! | 100 | split brain with a common ancestor (equal bitmap UUIDs): after-sb policies apply |
//! | -100 | split brain, unresolved (common history only) |
//! | -1000 | unrelated data: refuse |

use super::split_brain::{self, AfterSbPolicies, SbSide, SbVerdict};
use super::uuids::UUID_NEW_BM_OFFSET;
use crate::types::{DiskState, GenerationIds, HISTORY_UUIDS, NodeId, Protocol, Role, Uuid};
use serde::{Deserialize, Serialize};

/// Oldest peer-protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u32 = 1;
/// Newest peer-protocol version this build speaks (see `docs/replication.md`, "Changelog").
pub const PROTOCOL_VERSION_MAX: u32 = 1;

/// The parameters each side reports when the connection comes up (DRBD's P_PROTOCOL, P_UUIDS,
/// P_SIZES and P_STATE in one message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Lowest peer-protocol version the sender speaks.
    pub version_min: u32,
    /// Highest peer-protocol version the sender speaks.
    pub version_max: u32,
    /// The sender's node id.
    pub node_id: NodeId,
    /// The node id the sender expects its peer to have.
    pub peer_node_id: NodeId,
    /// Usable size of the replicated device, bytes.
    pub size_bytes: u64,
    /// Replication protocol (must agree).
    pub protocol: Protocol,
    /// `allow-two-primaries` (must agree).
    pub allow_two_primaries: bool,
    /// After-split-brain policies (must agree).
    pub after_sb: AfterSbPolicies,
    /// The sender's generation identifiers.
    pub uuids: GenerationIds,
    /// Out-of-sync blocks in the sender's bitmap.
    pub bitmap_weight: u64,
    /// The sender's role.
    pub role: Role,
    /// The sender's disk state.
    pub disk: DiskState,
    /// `connect --discard-my-data` was given on the sender.
    pub discard_my_data: bool,
    /// The sender was Primary when it went down uncleanly (its activity log was applied).
    pub crashed_primary: bool,
}

/// Why a connection was refused. Both sides show it (status and logs) and go StandAlone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// No common peer-protocol version.
    #[error(
        "incompatible peer-protocol versions: mine {mine_min}..={mine_max}, peer's {peer_min}..={peer_max}"
    )]
    ProtocolVersion {
        /// Mine, lowest.
        mine_min: u32,
        /// Mine, highest.
        mine_max: u32,
        /// Peer's, lowest.
        peer_min: u32,
        /// Peer's, highest.
        peer_max: u32,
    },
    /// The peer is not the node the configuration names.
    #[error("peer has node-id {got}, the configuration expects node-id {expected}")]
    NodeId {
        /// What the configuration says.
        expected: u8,
        /// What the peer reported.
        got: u8,
    },
    /// The peer expects another node at this end.
    #[error("peer expects node-id {expected} at this end, but this node has node-id {mine}")]
    PeerExpectsOtherNode {
        /// What the peer expects.
        expected: u8,
        /// Mine.
        mine: u8,
    },
    /// Replication protocols differ.
    #[error("replication protocol differs: mine {mine}, peer's {peer}")]
    ReplicationProtocol {
        /// Mine.
        mine: Protocol,
        /// Peer's.
        peer: Protocol,
    },
    /// Device sizes differ.
    #[error("device size differs: mine {mine} bytes, peer's {peer} bytes")]
    Size {
        /// Mine, bytes.
        mine: u64,
        /// Peer's, bytes.
        peer: u64,
    },
    /// `allow-two-primaries` differs.
    #[error("allow-two-primaries differs: mine {mine}, peer's {peer}")]
    AllowTwoPrimaries {
        /// Mine.
        mine: bool,
        /// Peer's.
        peer: bool,
    },
    /// After-split-brain policies differ.
    #[error("after-sb-0pri/1pri/2pri settings differ between the nodes")]
    AfterSbPolicies,
    /// Both nodes are Primary and `allow-two-primaries` is not set.
    #[error("both nodes are Primary and allow-two-primaries is not set")]
    TwoPrimaries,
    /// The generation UUIDs say split brain and no policy resolved it.
    #[error("split brain detected ({}), unresolved: on the victim run `secondary` and `connect --discard-my-data`, on the survivor `connect`", if *.common_ancestor { "common ancestor" } else { "no common bitmap generation" })]
    SplitBrain {
        /// Equal bitmap UUIDs (DRBD rule 90) rather than only common history (rule 100).
        common_ancestor: bool,
    },
    /// No common generation at all.
    #[error("unrelated data: the nodes share no generation UUID; refusing to connect")]
    UnrelatedData,
    /// This node is Primary with consistent data but would have to become SyncTarget
    /// (`rr-conflict disconnect`).
    #[error(
        "this node is Primary but would become SyncTarget; demote it first (rr-conflict disconnect)"
    )]
    PrimaryWouldBeSyncTarget,
    /// This node would be SyncSource but its data is Inconsistent.
    #[error("this node would become SyncSource but its data is Inconsistent")]
    InconsistentSource,
    /// The peer refused, for the reason given.
    #[error("peer refused: {0}")]
    ByPeer(Box<Refusal>),
}

/// Checks the parameters that must agree, before looking at data generations.
pub fn check_params(mine: &Hello, peer: &Hello) -> Result<(), Refusal> {
    if mine.version_max.min(peer.version_max) < mine.version_min.max(peer.version_min) {
        return Err(Refusal::ProtocolVersion {
            mine_min: mine.version_min,
            mine_max: mine.version_max,
            peer_min: peer.version_min,
            peer_max: peer.version_max,
        });
    }
    if peer.node_id != mine.peer_node_id {
        return Err(Refusal::NodeId {
            expected: mine.peer_node_id.0,
            got: peer.node_id.0,
        });
    }
    if peer.peer_node_id != mine.node_id {
        return Err(Refusal::PeerExpectsOtherNode {
            expected: peer.peer_node_id.0,
            mine: mine.node_id.0,
        });
    }
    if mine.protocol != peer.protocol {
        return Err(Refusal::ReplicationProtocol {
            mine: mine.protocol,
            peer: peer.protocol,
        });
    }
    if mine.size_bytes != peer.size_bytes {
        return Err(Refusal::Size {
            mine: mine.size_bytes,
            peer: peer.size_bytes,
        });
    }
    if mine.allow_two_primaries != peer.allow_two_primaries {
        return Err(Refusal::AllowTwoPrimaries {
            mine: mine.allow_two_primaries,
            peer: peer.allow_two_primaries,
        });
    }
    if mine.after_sb != peer.after_sb {
        return Err(Refusal::AfterSbPolicies);
    }
    Ok(())
}

/// Which way a resync goes, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncDirection {
    /// This node sends.
    Source,
    /// This node receives.
    Target,
}

/// The outcome of the sync handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Data identical: Connected, both UpToDate.
    NoSync,
    /// Resync in `direction`; `full` sets every bitmap bit first.
    Resync {
        /// Which side this node is.
        direction: SyncDirection,
        /// Full sync (all blocks) rather than by bitmap.
        full: bool,
        /// A `call-pri-lost-after-sb` policy made this Primary give up its role first.
        demote_first: bool,
    },
    /// Refuse: both sides go StandAlone.
    Refuse(Refusal),
}

/// The decision with what led to it, for logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub decision: Decision,
    /// DRBD's `hg` code after `drbd_uuid_compare` (before disk-state and split-brain handling).
    pub uuid_hg: i32,
    /// DRBD's rule number that produced `uuid_hg`.
    pub rule: u32,
    /// An automatic after-sb policy decided (`Some`), or none applied.
    pub auto_split_brain: Option<SbVerdict>,
    /// My identifiers, corrected when a lost resync-finished or sync-UUID event was detected
    /// (DRBD rules 34 and 71); the machine persists them if they changed.
    pub my_uuids: GenerationIds,
}

/// DRBD's `drbd_uuid_compare` (protocol ≥ 96 semantics), evaluated from the point of view of
/// the node with the lower node id and mirrored on the other, so that the two nodes can never
/// disagree (DRBD's rule order is not symmetric for some impossible-in-practice UUID sets).
/// Returns `(hg, rule, my corrected ids)`. `resolve_conflicts`: this node holds the
/// tie-breaker (rule 40, both crashed Primaries).
pub fn uuid_compare(
    me: &Hello,
    peer: &Hello,
    resolve_conflicts: bool,
) -> (i32, u32, GenerationIds) {
    if me.node_id <= peer.node_id {
        return uuid_compare_drbd(me, peer, resolve_conflicts);
    }
    let (hg, rule, _) = uuid_compare_drbd(peer, me, !resolve_conflicts);
    let mine = match rule {
        // The lower node saw that I missed my resync-finished event (its rule 35): correct myself
        // as DRBD's rule 34 would.
        35 => super::uuids::rotate_bitmap_to_history(me.uuids),
        // The lower node saw that my sync UUID did not get through (its rule 51): undo my start of
        // resync as DRBD's rule 71 would.
        51 => {
            let mut m = me.uuids;
            m.bitmap = m.history[0];
            for i in 0..HISTORY_UUIDS - 1 {
                m.history[i] = m.history[i + 1];
            }
            m.history[HISTORY_UUIDS - 1] = Uuid::NONE;
            m
        }
        _ => me.uuids,
    };
    let mirrored_rule = match rule {
        20 => 30,
        30 => 20,
        34 => 35,
        35 => 34,
        36 => 37,
        37 => 36,
        50 => 70,
        70 => 50,
        51 => 71,
        71 => 51,
        60 => 80,
        80 => 60,
        r => r,
    };
    (if hg.abs() <= 2 { -hg } else { hg }, mirrored_rule, mine)
}

fn uuid_compare_drbd(
    me: &Hello,
    peer: &Hello,
    resolve_conflicts: bool,
) -> (i32, u32, GenerationIds) {
    let jc = Uuid::JUST_CREATED.value();
    let mut mine = me.uuids;
    let theirs = peer.uuids;
    let self_c = mine.current.value();
    let peer_c = theirs.current.value();

    if self_c == jc && peer_c == jc {
        return (0, 10, mine);
    }
    if (self_c == jc || self_c == 0) && peer_c != jc {
        return (-2, 20, mine);
    }
    if self_c != jc && (peer_c == jc || peer_c == 0) {
        return (2, 30, mine);
    }
    if self_c == peer_c {
        if theirs.bitmap.is_none() && !mine.bitmap.is_none() {
            if mine.bitmap.value() == theirs.history[0].value()
                && mine.history[0].value() == theirs.history[1].value()
            {
                // Was SyncSource, missed the resync-finished event: correct myself.
                mine = super::uuids::rotate_bitmap_to_history(mine);
                return (1, 34, mine);
            }
            // Was SyncSource (the peer failed to write the sync UUID).
            return (1, 36, mine);
        }
        if mine.bitmap.is_none() && !theirs.bitmap.is_none() {
            if theirs.bitmap.value() == mine.history[0].value()
                && theirs.history[0].value() == mine.history[1].value()
            {
                return (-1, 35, mine);
            }
            return (-1, 37, mine);
        }
        // Common power failure or a link hiccup: who was a crashed Primary?
        let rct = u8::from(me.crashed_primary) + 2 * u8::from(peer.crashed_primary);
        if rct == 0 {
            return (0, 40, mine);
        }
        if me.role == Role::Primary || peer.role == Role::Primary {
            if me.role == Role::Primary && peer.role == Role::Primary {
                return (-100, 41, mine);
            }
            return (if me.role == Role::Primary { 1 } else { -1 }, 41, mine);
        }
        let hg = match rct {
            1 => 1,
            2 => -1,
            _ => {
                if resolve_conflicts {
                    -1
                } else {
                    1
                }
            }
        };
        return (hg, 40, mine);
    }

    if theirs.bitmap.value() == self_c {
        return (-1, 50, mine);
    }
    if theirs.history[0].value() == self_c
        && theirs.history[0].value().wrapping_add(UUID_NEW_BM_OFFSET) == theirs.bitmap.value()
    {
        // The peer's last sync UUID did not get through: the peer undoes its start of resync as
        // source on its side (rule 71) and we sync from it by bitmap.
        return (-1, 51, mine);
    }
    if theirs.history.iter().any(|h| h.value() == self_c) {
        return (-2, 60, mine);
    }
    if mine.bitmap.value() == peer_c {
        return (1, 70, mine);
    }
    if mine.history[0].value() == peer_c
        && mine.history[0].value().wrapping_add(UUID_NEW_BM_OFFSET) == mine.bitmap.value()
    {
        // My last sync UUID did not get through: undo my start of resync as source.
        mine.bitmap = mine.history[0];
        for i in 0..HISTORY_UUIDS - 1 {
            mine.history[i] = mine.history[i + 1];
        }
        mine.history[HISTORY_UUIDS - 1] = Uuid::NONE;
        return (1, 71, mine);
    }
    if mine.history.iter().any(|h| h.value() == peer_c) {
        return (2, 80, mine);
    }
    if mine.bitmap.value() == theirs.bitmap.value() && !mine.bitmap.is_none() {
        return (100, 90, mine);
    }
    for a in mine.history.iter().filter(|h| !h.is_none()) {
        if theirs.history.iter().any(|b| b.value() == a.value()) {
            return (-100, 100, mine);
        }
    }
    (-1000, 110, mine)
}

/// DRBD's disk-state order (`enum drbd_disk_state`).
pub fn disk_rank(d: DiskState) -> u8 {
    match d {
        DiskState::Diskless => 0,
        DiskState::Attaching => 1,
        DiskState::Failed => 2,
        DiskState::Negotiating => 3,
        DiskState::Inconsistent => 4,
        DiskState::Outdated => 5,
        DiskState::DUnknown => 6,
        DiskState::Consistent => 7,
        DiskState::UpToDate => 8,
    }
}

/// The sync handshake (`drbd_sync_handshake`): the UUID comparison, then disk states, then
/// split-brain policies and `--discard-my-data`, then the refusals. Call only after
/// [`check_params`] passed. `resolve_conflicts` must be true on exactly one of the two nodes.
pub fn decide(me: &Hello, peer: &Hello, resolve_conflicts: bool) -> Verdict {
    let (uuid_hg, rule, my_uuids) = uuid_compare(me, peer, resolve_conflicts);
    let verdict = |decision, auto_split_brain| Verdict {
        decision,
        uuid_hg,
        rule,
        auto_split_brain,
        my_uuids,
    };
    if uuid_hg == -1000 {
        return verdict(Decision::Refuse(Refusal::UnrelatedData), None);
    }
    let mut hg = uuid_hg;
    let inc = disk_rank(DiskState::Inconsistent);
    let (mine_d, peer_d) = (disk_rank(me.disk), disk_rank(peer.disk));
    if (mine_d == inc && peer_d > inc) || (peer_d == inc && mine_d > inc) {
        let full = hg == -100 || hg.abs() == 2;
        hg = if mine_d > inc { 1 } else { -1 };
        if full {
            hg *= 2;
        }
    }
    let mut auto = None;
    let mut demote_first = false;
    if hg == 100 {
        let side = |h: &Hello| SbSide {
            node: h.node_id,
            role: h.role,
            changes: h.bitmap_weight,
            was_primary_at_split: h.uuids.bitmap.0 & 1 == 1,
        };
        let v = split_brain::decide(&me.after_sb, &side(me), &side(peer), resolve_conflicts);
        auto = Some(v);
        hg = match v {
            SbVerdict::Disconnect => -100,
            SbVerdict::KeepMine => 1,
            SbVerdict::DiscardMine { demote_first: d } => {
                demote_first = d;
                -1
            }
        };
    }
    if hg == -100 {
        // Manual recovery: exactly one side said `connect --discard-my-data`. A split brain
        // without a common bitmap generation (rule 100, 41) has no bitmap both sides count from:
        // resync in full there, by bitmap (the union of both bitmaps) otherwise.
        let by = if rule == 90 { 1 } else { 2 };
        if me.discard_my_data && !peer.discard_my_data {
            hg = -by;
        } else if !me.discard_my_data && peer.discard_my_data {
            hg = by;
        }
    }
    if hg.abs() == 100 {
        return verdict(
            Decision::Refuse(Refusal::SplitBrain {
                common_ancestor: rule == 90,
            }),
            auto,
        );
    }
    if hg > 0 && mine_d <= inc {
        return verdict(Decision::Refuse(Refusal::InconsistentSource), auto);
    }
    if hg < 0 && peer_d <= inc {
        // Mirror of the above, so that both sides refuse without waiting for a Refuse message.
        return verdict(
            Decision::Refuse(Refusal::ByPeer(Box::new(Refusal::InconsistentSource))),
            auto,
        );
    }
    if hg < 0
        && me.role == Role::Primary
        && mine_d >= disk_rank(DiskState::Consistent)
        && !demote_first
    {
        return verdict(Decision::Refuse(Refusal::PrimaryWouldBeSyncTarget), auto);
    }
    if hg > 0
        && peer.role == Role::Primary
        && peer_d >= disk_rank(DiskState::Consistent)
        && !peer_demotes(me, peer, resolve_conflicts)
    {
        return verdict(
            Decision::Refuse(Refusal::ByPeer(Box::new(Refusal::PrimaryWouldBeSyncTarget))),
            auto,
        );
    }
    if me.role == Role::Primary
        && peer.role == Role::Primary
        && !me.allow_two_primaries
        && !demote_first
        && !peer_demotes(me, peer, resolve_conflicts)
    {
        // Checked after the UUIDs so that a split brain is reported as one.
        return verdict(Decision::Refuse(Refusal::TwoPrimaries), auto);
    }
    let decision = match hg {
        0 => Decision::NoSync,
        h => Decision::Resync {
            direction: if h > 0 {
                SyncDirection::Source
            } else {
                SyncDirection::Target
            },
            full: h.abs() >= 2,
            demote_first,
        },
    };
    verdict(decision, auto)
}

/// Whether the peer, running [`decide`] on its side, gives up its Primary role first.
fn peer_demotes(me: &Hello, peer: &Hello, resolve_conflicts: bool) -> bool {
    let (hg, _, _) = uuid_compare(peer, me, !resolve_conflicts);
    if hg != 100 {
        return false;
    }
    let side = |h: &Hello| SbSide {
        node: h.node_id,
        role: h.role,
        changes: h.bitmap_weight,
        was_primary_at_split: h.uuids.bitmap.0 & 1 == 1,
    };
    matches!(
        split_brain::decide(&peer.after_sb, &side(peer), &side(me), !resolve_conflicts),
        SbVerdict::DiscardMine { demote_first: true }
    )
}

#[cfg(test)]
mod tests;

//! The superblock: one 4 KiB record, kept in two slots written alternately.
//!
//! ```text
//! off  size  field
//!   0     8  magic "TNDMMETA"
//!   8     4  version (1)
//!  12     4  flags (Flags)
//!  16     8  seq: incremented by every write; the valid slot with the higher seq wins
//!  24     8  md_uuid: random, chosen by create-md; also stamped on AL and bitmap records
//!  32     1  node_id
//!  33     1  placement (0 internal, 1 external flexible, 2 external indexed)
//!  34     2  reserved (0)
//!  36     4  external index (0 unless indexed)
//!  40     8  data_bytes: the exported size
//!  48     8  max_data_bytes: the bitmap's capacity
//!  56     8  current UUID
//!  64     8  bitmap UUID
//!  72    16  history UUIDs (2)
//!  88     4  al_slots
//!  92     4  al_extents (the table size last used)
//!  96     4  bm_pages
//! 100     1  peer_node_id of the bitmap (0xFF: none yet)
//! 101     3  reserved (0)
//! 104     8  al_offset: first activity-log slot (byte offset in the meta-data file)
//! 112     8  bm_offset: first bitmap page (byte offset in the meta-data file)
//! 120  3972  reserved (0)
//! 4092    4  crc32 of bytes 0..4092
//! ```

use serde::Serialize;

use super::layout::Placement;
use super::{BLOCK_LEN, Get, META_BLOCK, MetaError, Put, check_seal, seal};
use crate::types::{GenerationIds, HISTORY_UUIDS, NodeId, Uuid};

/// The superblock magic.
pub const MAGIC: [u8; 8] = *b"TNDMMETA";
/// The superblock version this build writes and reads.
pub const VERSION: u32 = 1;
/// "No peer" in the bitmap's peer slot.
pub const NO_PEER: u8 = 0xFF;

const WHAT: &str = "superblock";
const FIELDS_END: usize = 120;

/// Meta-data flags (DRBD's `MDF_*`, same meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Flags(pub u32);

impl Flags {
    /// The data is consistent (not a resync target midway, not fresh).
    pub const CONSISTENT: u32 = 1 << 0;
    /// The node is Primary (set on promotion, cleared on demotion): found set at attach, it
    /// means the node crashed while Primary.
    pub const PRIMARY_IND: u32 = 1 << 1;
    /// The node was connected to its peer when last written.
    pub const CONNECTED_IND: u32 = 1 << 2;
    /// A full sync is pending (the whole bitmap is set).
    pub const FULL_SYNC: u32 = 1 << 3;
    /// The data was UpToDate when last written.
    pub const WAS_UP_TO_DATE: u32 = 1 << 4;
    /// The peer is known Outdated (fencing succeeded).
    pub const PEER_OUT_DATED: u32 = 1 << 5;
    /// The node crashed while Primary; cleared once the peer resynced the AL extents.
    pub const CRASHED_PRIMARY: u32 = 1 << 6;
    /// Every flag this version knows.
    pub const ALL: u32 = (1 << 7) - 1;

    /// Whether `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// With `bit` set or cleared.
    pub fn with(self, bit: u32, on: bool) -> Flags {
        Flags(if on { self.0 | bit } else { self.0 & !bit })
    }
}

/// The decoded superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Superblock {
    /// Flags.
    pub flags: Flags,
    /// Write sequence.
    pub seq: u64,
    /// Identity of this meta-data (random per create-md).
    pub md_uuid: u64,
    /// This node's id.
    pub node_id: NodeId,
    /// Where the meta-data lives (checked against the configuration at attach).
    pub placement: Placement,
    /// Exported size.
    pub data_bytes: u64,
    /// The bitmap's capacity.
    pub max_data_bytes: u64,
    /// Generation identifiers.
    pub gi: GenerationIds,
    /// Activity-log ring slots.
    pub al_slots: u32,
    /// AL table size last used.
    pub al_extents: u32,
    /// Bitmap pages.
    pub bm_pages: u32,
    /// Node id of the peer the bitmap tracks, if any yet.
    pub peer_node_id: Option<NodeId>,
    /// Byte offset of the first activity-log slot in the meta-data file.
    pub al_offset: u64,
    /// Byte offset of the first bitmap page in the meta-data file.
    pub bm_offset: u64,
}

impl Superblock {
    /// Encodes into one 4 KiB block.
    pub fn encode(&self) -> [u8; BLOCK_LEN] {
        assert!(
            self.flags.0 & !Flags::ALL == 0,
            "unknown flag bits {:x}",
            self.flags.0
        );
        let mut b = [0u8; BLOCK_LEN];
        let (kind, index) = match self.placement {
            Placement::Internal => (0u8, 0u32),
            Placement::External { index: None } => (1, 0),
            Placement::External { index: Some(i) } => (2, i),
        };
        let mut p = Put::new(&mut b);
        p.bytes(&MAGIC)
            .u32(VERSION)
            .u32(self.flags.0)
            .u64(self.seq)
            .u64(self.md_uuid);
        p.u8(self.node_id.0).u8(kind).u16(0).u32(index);
        p.u64(self.data_bytes).u64(self.max_data_bytes);
        p.u64(self.gi.current.0).u64(self.gi.bitmap.0);
        for h in self.gi.history {
            p.u64(h.0);
        }
        p.u32(self.al_slots).u32(self.al_extents).u32(self.bm_pages);
        p.u8(self.peer_node_id.map_or(NO_PEER, |n| n.0))
            .u8(0)
            .u16(0);
        p.u64(self.al_offset).u64(self.bm_offset);
        debug_assert_eq!(p.pos(), FIELDS_END);
        seal(&mut b);
        b
    }

    /// Decodes a 4 KiB block, refusing anything an encoder would not have written.
    pub fn decode(block: &[u8]) -> Result<Superblock, MetaError> {
        if block.len() != BLOCK_LEN {
            return Err(MetaError::Invalid {
                what: WHAT,
                detail: format!("block of {} bytes, expected 4096", block.len()),
            });
        }
        if block[..8] != MAGIC {
            return Err(MetaError::BadMagic { what: WHAT });
        }
        let mut g = Get::new(block);
        g.bytes(8);
        let version = g.u32();
        if version != VERSION {
            return Err(MetaError::Version {
                what: WHAT,
                found: version,
                supported: VERSION,
            });
        }
        check_seal(WHAT, block)?;
        let invalid = |detail: String| MetaError::Invalid { what: WHAT, detail };
        let flags = g.u32();
        let seq = g.u64();
        let md_uuid = g.u64();
        let node_id = g.u8();
        let kind = g.u8();
        let reserved = g.u16();
        let index = g.u32();
        let data_bytes = g.u64();
        let max_data_bytes = g.u64();
        let current = g.u64();
        let bitmap = g.u64();
        let mut history = [Uuid::NONE; HISTORY_UUIDS];
        for h in &mut history {
            *h = Uuid(g.u64());
        }
        let al_slots = g.u32();
        let al_extents = g.u32();
        let bm_pages = g.u32();
        let peer = g.u8();
        let (r1, r2) = (g.u8(), g.u16());
        let al_offset = g.u64();
        let bm_offset = g.u64();
        if flags & !Flags::ALL != 0 {
            return Err(invalid(format!("unknown flag bits {flags:#x}")));
        }
        if node_id > crate::config::build::MAX_NODE_ID
            || (peer != NO_PEER && peer > crate::config::build::MAX_NODE_ID)
        {
            return Err(invalid(format!(
                "node id {node_id} / peer {peer} out of range"
            )));
        }
        let placement = match (kind, index) {
            (0, 0) => Placement::Internal,
            (1, 0) => Placement::External { index: None },
            (2, i) => Placement::External { index: Some(i) },
            _ => return Err(invalid(format!("placement {kind} with index {index}"))),
        };
        if reserved != 0
            || r1 != 0
            || r2 != 0
            || block[FIELDS_END..BLOCK_LEN - 4].iter().any(|b| *b != 0)
        {
            return Err(invalid("reserved bytes are not zero".into()));
        }
        if !al_offset.is_multiple_of(META_BLOCK) || !bm_offset.is_multiple_of(META_BLOCK) {
            return Err(invalid(format!(
                "AL offset {al_offset} / bitmap offset {bm_offset} not 4 KiB aligned"
            )));
        }
        if data_bytes == 0 || !data_bytes.is_multiple_of(META_BLOCK) || data_bytes > max_data_bytes
        {
            return Err(invalid(format!(
                "data size {data_bytes} (capacity {max_data_bytes})"
            )));
        }
        if bm_pages != super::layout::bm_pages_for(max_data_bytes)
            && bm_pages != super::layout::bm_pages_for(max_data_bytes) + 1
        {
            return Err(invalid(format!(
                "{bm_pages} bitmap pages for {max_data_bytes} bytes"
            )));
        }
        if al_slots < super::layout::AL_MIN_SLOTS
            || al_extents == 0
            || al_extents > super::layout::max_al_extents(al_slots)
        {
            return Err(invalid(format!(
                "activity log of {al_slots} slots and {al_extents} extents"
            )));
        }
        Ok(Superblock {
            flags: Flags(flags),
            seq,
            md_uuid,
            node_id: NodeId(node_id),
            placement,
            data_bytes,
            max_data_bytes,
            gi: GenerationIds {
                current: Uuid(current),
                bitmap: Uuid(bitmap),
                history,
            },
            al_slots,
            al_extents,
            bm_pages,
            peer_node_id: (peer != NO_PEER).then_some(NodeId(peer)),
            al_offset,
            bm_offset,
        })
    }

    /// The slot (0 or 1) the next write of this superblock goes to: never the slot holding the
    /// newest valid copy.
    pub fn slot_for_seq(seq: u64) -> usize {
        usize::from(seq % 2 == 1)
    }
}

/// Which of the two slots holds the superblock to use, given what each decoded to. The valid
/// slot with the higher sequence wins; a damaged slot beside a valid one is reported, not
/// fatal (it is the torn or never-written one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The superblock in force.
    pub sb: Superblock,
    /// The slot it came from.
    pub slot: usize,
    /// Why the other slot was not used, if it was not valid.
    pub other: Option<MetaError>,
}

/// Picks the superblock in force from the two slots' decodings; `Err` when neither is valid
/// (the first slot's error, or the second's when the first is merely absent).
pub fn choose(
    a: Result<Superblock, MetaError>,
    b: Result<Superblock, MetaError>,
) -> Result<Chosen, MetaError> {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            if x.md_uuid != y.md_uuid {
                // Both valid but of different create-md runs: cannot happen through our write
                // order (create-md invalidates both first); refuse rather than guess.
                return Err(MetaError::Invalid {
                    what: WHAT,
                    detail: format!(
                        "the two superblock slots belong to different meta-data ({:016x} and {:016x})",
                        x.md_uuid, y.md_uuid
                    ),
                });
            }
            if x.seq >= y.seq {
                Ok(Chosen {
                    sb: x,
                    slot: 0,
                    other: None,
                })
            } else {
                Ok(Chosen {
                    sb: y,
                    slot: 1,
                    other: None,
                })
            }
        }
        (Ok(x), Err(e)) => Ok(Chosen {
            sb: x,
            slot: 0,
            other: Some(e),
        }),
        (Err(e), Ok(y)) => Ok(Chosen {
            sb: y,
            slot: 1,
            other: Some(e),
        }),
        (Err(e1), Err(e2)) => Err(if matches!(e1, MetaError::BadMagic { .. }) {
            e2
        } else {
            e1
        }),
    }
}

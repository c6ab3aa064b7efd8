//! Where the meta-data records go for a given backing file, meta-data device and AL size.

use serde::Serialize;

use super::bmpage::BITS_PER_PAGE;
use super::{META_BLOCK, MetaError};

/// Smallest activity-log ring, in 4 KiB transaction slots (DRBD's default ring is 32 KiB).
pub const AL_MIN_SLOTS: u32 = 8;
/// Size of one slot of an indexed external meta-disk (`meta-disk PATH [N]`), as in DRBD.
pub const INDEXED_SLOT_BYTES: u64 = 128 << 20;
/// Superblock slots.
pub const SB_SLOTS: u64 = 2;

/// Where a volume's meta-data lives relative to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// At the end of the backing file.
    Internal,
    /// In a separate file: the whole file (`index: None`) or its 128 MiB slot number `index`.
    External {
        /// DRBD's `[N]` index.
        index: Option<u32>,
    },
}

/// Byte offsets (absolute, in the file that holds the meta-data) and sizes of every region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Where the meta-data is.
    pub placement: Placement,
    /// Usable (exported) size of the data, a multiple of 4 KiB.
    pub data_bytes: u64,
    /// Largest data size this meta-data area can describe (its bitmap's capacity).
    pub max_data_bytes: u64,
    /// First byte of the meta-data area.
    pub meta_offset: u64,
    /// Size of the meta-data area.
    pub meta_bytes: u64,
    /// The two superblock slots.
    pub sb_offsets: [u64; 2],
    /// First activity-log slot.
    pub al_offset: u64,
    /// Activity-log slots.
    pub al_slots: u32,
    /// First bitmap page.
    pub bm_offset: u64,
    /// Bitmap pages.
    pub bm_pages: u32,
}

/// Activity-log slots needed for `al_extents` hot extents: enough that the newest
/// transactions minus a possibly torn one carry the whole table ([`super::al`]).
pub fn al_slots_for(al_extents: u32) -> u32 {
    let per_tx = super::al::CONTEXT_PER_TX_U32;
    (al_extents.div_ceil(per_tx) + 1).max(AL_MIN_SLOTS)
}

/// Most hot extents a ring of `al_slots` slots can hold (DRBD: "the effective maximum").
pub fn max_al_extents(al_slots: u32) -> u32 {
    (al_slots.saturating_sub(1) * super::al::CONTEXT_PER_TX_U32).min(u32::from(u16::MAX) - 1)
}

/// Bitmap pages needed for `data_bytes`.
pub fn bm_pages_for(data_bytes: u64) -> u32 {
    let blocks = data_bytes.div_ceil(META_BLOCK);
    u32::try_from(blocks.div_ceil(BITS_PER_PAGE)).expect("bitmap page count fits u32 below 1 PiB")
}

fn align_down(v: u64) -> u64 {
    v & !(META_BLOCK - 1)
}

impl Layout {
    /// The two superblock offsets, which depend only on the placement and the file sizes —
    /// so they can be read before anything else is known.
    pub fn superblock_offsets(placement: Placement, backing_bytes: u64) -> [u64; 2] {
        match placement {
            Placement::Internal => {
                let end = align_down(backing_bytes);
                [
                    end.saturating_sub(2 * META_BLOCK),
                    end.saturating_sub(META_BLOCK),
                ]
            }
            Placement::External { index } => {
                let base = u64::from(index.unwrap_or(0)) * INDEXED_SLOT_BYTES;
                [base, base + META_BLOCK]
            }
        }
    }

    /// Computes the layout. `backing_bytes` is the backing file's size; `meta_dev_bytes` the
    /// external meta-data file's size (ignored for internal); `size_limit` the `disk { size }`
    /// option. Errors say what does not fit.
    pub fn compute(
        placement: Placement,
        backing_bytes: u64,
        meta_dev_bytes: u64,
        al_slots: u32,
        size_limit: Option<u64>,
    ) -> Result<Layout, MetaError> {
        if al_slots < AL_MIN_SLOTS {
            return Err(MetaError::Layout(format!(
                "activity log of {al_slots} slots; at least {AL_MIN_SLOTS} are needed"
            )));
        }
        let al_bytes = u64::from(al_slots) * META_BLOCK;
        let fixed = SB_SLOTS * META_BLOCK + al_bytes;
        let backing = align_down(backing_bytes);
        let (mut layout, max_data) = match placement {
            Placement::Internal => {
                // Largest data size whose bitmap fits with it in the backing file: size the
                // bitmap for the whole file (an overestimate), then try one page less.
                let meta_for = |pages: u32| fixed + u64::from(pages) * META_BLOCK;
                let mut pages = bm_pages_for(backing);
                if pages > 1
                    && backing > meta_for(pages - 1)
                    && bm_pages_for(backing - meta_for(pages - 1)) < pages
                {
                    pages -= 1;
                }
                let data = match backing.checked_sub(meta_for(pages)) {
                    Some(d) if d >= META_BLOCK => d,
                    _ => {
                        return Err(MetaError::Layout(format!(
                            "backing file of {backing_bytes} bytes is too small for internal meta-data ({} bytes) and at least 4 KiB of data",
                            meta_for(pages)
                        )));
                    }
                };
                let meta_bytes = fixed + u64::from(pages) * META_BLOCK;
                let meta_offset = backing - meta_bytes;
                let bm_offset = meta_offset;
                let al_offset = bm_offset + u64::from(pages) * META_BLOCK;
                let sb = Self::superblock_offsets(placement, backing_bytes);
                debug_assert_eq!(sb[0], al_offset + al_bytes);
                let l = Layout {
                    placement,
                    data_bytes: data,
                    max_data_bytes: data,
                    meta_offset,
                    meta_bytes,
                    sb_offsets: sb,
                    al_offset,
                    al_slots,
                    bm_offset,
                    bm_pages: pages,
                };
                (l, data)
            }
            Placement::External { index } => {
                if backing < META_BLOCK {
                    return Err(MetaError::Layout(format!(
                        "backing file of {backing_bytes} bytes holds no 4 KiB block of data"
                    )));
                }
                let pages = bm_pages_for(backing);
                let meta_bytes = fixed + u64::from(pages) * META_BLOCK;
                let [s0, s1] = Self::superblock_offsets(placement, backing_bytes);
                let limit = match index {
                    Some(i) => {
                        if meta_bytes > INDEXED_SLOT_BYTES {
                            return Err(MetaError::Layout(format!(
                                "an indexed meta-disk slot holds 128 MiB; {backing_bytes} bytes of data need {meta_bytes} bytes of meta-data: use a flexible external meta-disk (meta-disk PATH;)"
                            )));
                        }
                        (u64::from(i) + 1) * INDEXED_SLOT_BYTES
                    }
                    None => meta_bytes,
                };
                if meta_dev_bytes < limit {
                    return Err(MetaError::Layout(format!(
                        "the meta-data file has {meta_dev_bytes} bytes; this volume needs {limit} (meta-data of {meta_bytes} bytes{})",
                        index.map(|i| format!(" in slot {i}")).unwrap_or_default()
                    )));
                }
                let al_offset = s1 + META_BLOCK;
                let l = Layout {
                    placement,
                    data_bytes: backing,
                    max_data_bytes: backing,
                    meta_offset: s0,
                    meta_bytes,
                    sb_offsets: [s0, s1],
                    al_offset,
                    al_slots,
                    bm_offset: al_offset + al_bytes,
                    bm_pages: pages,
                };
                (l, backing)
            }
        };
        if let Some(limit) = size_limit {
            let limit = align_down(limit);
            if limit > max_data || limit == 0 {
                return Err(MetaError::Layout(format!(
                    "disk {{ size }} asks for {limit} bytes but the backing file provides {max_data} bytes of data"
                )));
            }
            layout.data_bytes = limit;
        }
        Ok(layout)
    }

    /// Offset of activity-log ring slot `i`.
    pub fn al_slot_offset(&self, i: u32) -> u64 {
        assert!(i < self.al_slots, "AL slot {i} of {}", self.al_slots);
        self.al_offset + u64::from(i) * META_BLOCK
    }

    /// Offset of bitmap page `p`.
    pub fn bm_page_offset(&self, p: u32) -> u64 {
        assert!(p < self.bm_pages, "bitmap page {p} of {}", self.bm_pages);
        self.bm_offset + u64::from(p) * META_BLOCK
    }

    /// Bitmap pages in use for the current data size (the rest of the area stays zero).
    pub fn bm_pages_used(&self) -> u32 {
        bm_pages_for(self.data_bytes)
    }
}

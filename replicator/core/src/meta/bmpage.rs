//! Bitmap pages: the persistent quick-sync bitmap, one bit per 4 KiB block of data.
//!
//! ```text
//! off   size  field
//!    0  4064  bits: 508 little-endian u64 words = 32512 blocks (127 MiB of data) per page
//! 4064     4  magic "TBMP"
//! 4068     4  page index
//! 4072     8  md_uuid (the superblock's)
//! 4080    12  reserved (0)
//! 4092     4  crc32 of bytes 0..4092
//! ```
//!
//! A page holds whole `u64` words, so page `p` is exactly words `p*508 .. (p+1)*508` of the
//! in-memory [`Bitmap`].

use super::{BLOCK_LEN, Get, MetaError, Put, check_seal, seal};
use crate::bitmap::Bitmap;

/// u64 words of bits per page.
pub const WORDS_PER_PAGE: usize = 508;
/// Blocks (bits) per page.
pub const BITS_PER_PAGE: u64 = WORDS_PER_PAGE as u64 * 64;
/// The page magic.
pub const MAGIC: [u8; 4] = *b"TBMP";

const WHAT: &str = "bitmap page";
const BITS_BYTES: usize = WORDS_PER_PAGE * 8;

/// The page holding block `b`.
pub fn page_of_block(b: u64) -> u32 {
    u32::try_from(b / BITS_PER_PAGE).expect("page index fits u32")
}

/// Encodes page `index` of `bm` (words past the bitmap's end are zero).
pub fn encode(bm: &Bitmap, index: u32, md_uuid: u64) -> [u8; BLOCK_LEN] {
    let mut b = [0u8; BLOCK_LEN];
    let words = bm.words();
    let first = index as usize * WORDS_PER_PAGE;
    let mut p = Put::new(&mut b);
    for i in 0..WORDS_PER_PAGE {
        p.u64(words.get(first + i).copied().unwrap_or(0));
    }
    p.bytes(&MAGIC).u32(index).u64(md_uuid);
    seal(&mut b);
    b
}

/// Decodes page `index` of a bitmap of `blocks` blocks into its words; refuses a page of
/// another index or meta-data, a bad checksum, or bits set past the last block.
pub fn decode(block: &[u8], index: u32, md_uuid: u64, blocks: u64) -> Result<Vec<u64>, MetaError> {
    if block.len() != BLOCK_LEN {
        return Err(MetaError::Invalid {
            what: WHAT,
            detail: format!("block of {} bytes", block.len()),
        });
    }
    if block[BITS_BYTES..BITS_BYTES + 4] != MAGIC {
        return Err(MetaError::BadMagic { what: WHAT });
    }
    check_seal(WHAT, block)?;
    let mut g = Get::new(block);
    let words: Vec<u64> = (0..WORDS_PER_PAGE).map(|_| g.u64()).collect();
    g.bytes(4);
    let (idx, uuid) = (g.u32(), g.u64());
    let invalid = |detail: String| MetaError::Invalid { what: WHAT, detail };
    if idx != index {
        return Err(invalid(format!(
            "page {idx} found where page {index} belongs"
        )));
    }
    if uuid != md_uuid {
        return Err(invalid(format!(
            "page of other meta-data ({uuid:016x}, expected {md_uuid:016x})"
        )));
    }
    if block[4080..4092].iter().any(|b| *b != 0) {
        return Err(invalid("reserved bytes are not zero".into()));
    }
    // Bits past the end of the device must be clear.
    let first_block = u64::from(index) * BITS_PER_PAGE;
    for (i, w) in words.iter().enumerate() {
        let start = first_block + i as u64 * 64;
        let valid = blocks.saturating_sub(start).min(64);
        let mask = if valid == 64 {
            u64::MAX
        } else {
            (1u64 << valid) - 1
        };
        if w & !mask != 0 {
            return Err(invalid(format!("bits set past the last block ({blocks})")));
        }
    }
    Ok(words)
}

/// Reassembles a bitmap of `blocks` blocks from its decoded pages (page 0 first). A page that
/// failed to decode is passed as `None` and comes back all-set: a torn page means a longer
/// resync, never a missed block.
pub fn assemble(pages: Vec<Option<Vec<u64>>>, blocks: u64) -> Bitmap {
    let nwords = usize::try_from(blocks.div_ceil(64)).expect("bitmap fits in memory");
    let mut words = Vec::with_capacity(nwords);
    for (p, page) in pages.into_iter().enumerate() {
        match page {
            Some(w) => words.extend(w),
            None => {
                let first_block = p as u64 * BITS_PER_PAGE;
                for i in 0..WORDS_PER_PAGE as u64 {
                    let start = first_block + i * 64;
                    let valid = blocks.saturating_sub(start).min(64);
                    words.push(if valid == 64 {
                        u64::MAX
                    } else {
                        (1u64 << valid) - 1
                    });
                }
            }
        }
    }
    words.truncate(nwords);
    words.resize(nwords, 0);
    Bitmap::from_words(words, blocks).expect("pages were checked for bits past the end")
}

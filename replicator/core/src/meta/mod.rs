//! The on-disk meta-data of a replicated volume, as bytes: encoders, decoders and the rules
//! that keep it consistent across a crash at any point. No I/O here: the daemon reads and
//! writes the 4 KiB blocks these functions produce and checks.
//!
//! ## Layout
//!
//! Every record is one 4 KiB block carrying a magic, a version and a crc32 over the block; a
//! decoder refuses any block whose bytes differ in any way from what an encoder writes.
//!
//! ```text
//! internal (meta-disk internal): the end of the backing file, aligned down to 4 KiB
//!   | data area (the exported device) | bitmap pages | AL ring | superblock A | superblock B |
//!                                                                              ^ end of file
//! external (meta-disk PATH, or PATH [N] = the N-th 128 MiB slot of PATH)
//!   | superblock A | superblock B | AL ring | bitmap pages |
//! ```
//!
//! - [`superblock`]: magic, version, flags, node id, device size, generation UUIDs, the
//!   positions and sizes of the AL and the bitmap, a sequence number and a checksum.
//! - [`bmpage`]: the quick-sync bitmap, one bit per 4 KiB of data, in self-checking pages.
//! - [`al`]: the activity log ring: transactions with sequence numbers and checksums recording
//!   which 4 MiB extents may have writes in flight; [`activity`] is the in-memory log that
//!   produces them.
//! - [`layout`]: where everything goes for a given backing size.
//! - [`probe`]: recognising a filesystem in the data area before `create-md`.
//!
//! ## Crash safety
//!
//! - **Superblocks** are written alternately to slot A and slot B with a sequence number one
//!   higher each time; a reader takes the valid slot with the higher sequence. A torn write
//!   leaves the other slot, the previous state, intact. `create-md` first invalidates both slots,
//!   then writes the bitmap and the AL, then the first superblock: until that last write lands,
//!   the volume has no meta-data at all (never half of one).
//! - **Activity log**: before the first write to a 4 MiB extent not in the log, a transaction
//!   naming it is written and flushed; only then does the data write start. An extent leaves
//!   the log only after the bitmap pages covering it were flushed. After a crash of a Primary,
//!   the extents of the newest valid chain of transactions are marked out of sync: a superset
//!   of everything that may have been written but not replicated.
//! - **Bitmap pages** are written in place; a torn page fails its checksum and is read back as
//!   all-set (a longer resync, never a missed block).

pub mod activity;
pub mod al;
pub mod bmpage;
pub mod layout;
pub mod probe;
pub mod superblock;

pub use activity::{ActivityLog, Begin};
pub use al::{AlRecovery, AlTransaction};
pub use layout::{Layout, Placement};
pub use superblock::{Flags, Superblock};

/// Size of every meta-data record and the alignment of every meta-data offset.
pub const META_BLOCK: u64 = BLOCK_LEN as u64;
/// [`META_BLOCK`] as a buffer length.
pub const BLOCK_LEN: usize = 4096;
/// Size of one activity-log extent (DRBD's AL extent: 4 MiB).
pub const AL_EXTENT_BYTES: u64 = 4 << 20;

/// What is wrong with meta-data bytes or with a requested layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The block does not start with the expected magic (no meta-data, or not this kind).
    #[error("no {what} here (bad magic)")]
    BadMagic {
        /// Which record was expected.
        what: &'static str,
    },
    /// A version this build does not read.
    #[error("{what} version {found} is not supported (this build reads version {supported})")]
    Version {
        /// Which record.
        what: &'static str,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The checksum does not match: a torn or corrupted write.
    #[error(
        "{what} checksum mismatch (stored {stored:08x}, computed {computed:08x}): torn or corrupted"
    )]
    Checksum {
        /// Which record.
        what: &'static str,
        /// Stored crc32.
        stored: u32,
        /// Computed crc32.
        computed: u32,
    },
    /// A field has a value no encoder writes.
    #[error("{what}: {detail}")]
    Invalid {
        /// Which record.
        what: &'static str,
        /// What is inconsistent.
        detail: String,
    },
    /// The backing or meta-data device cannot hold what is asked.
    #[error("{0}")]
    Layout(String),
}

/// Little-endian field writer over a block buffer.
pub(crate) struct Put<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Put<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Put { buf, at: 0 }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
        self
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn pos(&self) -> usize {
        self.at
    }
}

/// Little-endian field reader over a block buffer.
pub(crate) struct Get<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Get<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Get { buf, at: 0 }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        b
    }
    pub(crate) fn u8(&mut self) -> u8 {
        self.bytes(1)[0]
    }
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes(2).try_into().expect("2 bytes"))
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes(4).try_into().expect("4 bytes"))
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }
}

/// crc32 (IEEE) of `block[..len-4]` stored in its last 4 bytes; checks a block written by
/// [`seal`].
pub(crate) fn check_seal(what: &'static str, block: &[u8]) -> Result<(), MetaError> {
    let n = block.len() - 4;
    let stored = u32::from_le_bytes(block[n..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&block[..n]);
    if stored != computed {
        return Err(MetaError::Checksum {
            what,
            stored,
            computed,
        });
    }
    Ok(())
}

/// Stores the crc32 of `block[..len-4]` in its last 4 bytes.
pub(crate) fn seal(block: &mut [u8]) {
    let n = block.len() - 4;
    let crc = crc32fast::hash(&block[..n]);
    block[n..].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests;

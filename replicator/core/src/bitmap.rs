//! The quick-sync bitmap in memory: one bit per 4 KiB block, set while that block may differ
//! from the peer. The meta-data module persists it; the protocol plans resync from it.

use serde::{Deserialize, Serialize};

/// Bytes covered by one bit.
pub const BLOCK_SIZE: u64 = 4096;

/// A fixed-size set of out-of-sync 4 KiB blocks, with a running count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitmap {
    words: Vec<u64>,
    blocks: u64,
    set: u64,
}

impl Bitmap {
    /// An all-clear bitmap covering `device_bytes` (rounded up to whole blocks).
    pub fn new(device_bytes: u64) -> Self {
        let blocks = device_bytes.div_ceil(BLOCK_SIZE);
        let words = usize::try_from(blocks.div_ceil(64)).expect("bitmap fits in memory");
        Bitmap {
            words: vec![0; words],
            blocks,
            set: 0,
        }
    }

    /// Rebuilds a bitmap from its little-endian words (as persisted); bits past `blocks` must be
    /// clear, else `None` (a corrupt or mismatched bitmap).
    pub fn from_words(words: Vec<u64>, blocks: u64) -> Option<Self> {
        if words.len() as u64 != blocks.div_ceil(64) {
            return None;
        }
        let tail = blocks % 64;
        if tail != 0 && words.last().is_some_and(|w| w >> tail != 0) {
            return None;
        }
        let set = words.iter().map(|w| u64::from(w.count_ones())).sum();
        Some(Bitmap { words, blocks, set })
    }

    /// The words, for persisting.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Number of blocks covered.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Number of blocks marked out of sync.
    pub fn count(&self) -> u64 {
        self.set
    }

    /// Whether block `b` is marked.
    pub fn get(&self, b: u64) -> bool {
        assert!(
            b < self.blocks,
            "block {b} past the bitmap ({} blocks)",
            self.blocks
        );
        self.words[word(b)] & bit(b) != 0
    }

    /// Marks block `b`; returns whether it changed.
    pub fn set(&mut self, b: u64) -> bool {
        assert!(
            b < self.blocks,
            "block {b} past the bitmap ({} blocks)",
            self.blocks
        );
        let w = &mut self.words[word(b)];
        let changed = *w & bit(b) == 0;
        *w |= bit(b);
        self.set += u64::from(changed);
        changed
    }

    /// Clears block `b`; returns whether it changed.
    pub fn clear(&mut self, b: u64) -> bool {
        assert!(
            b < self.blocks,
            "block {b} past the bitmap ({} blocks)",
            self.blocks
        );
        let w = &mut self.words[word(b)];
        let changed = *w & bit(b) != 0;
        *w &= !bit(b);
        self.set -= u64::from(changed);
        changed
    }

    /// Marks every block touched by the byte range `[offset, offset + len)`.
    pub fn set_range(&mut self, offset: u64, len: u64) {
        for b in blocks_of(offset, len) {
            self.set(b);
        }
    }

    /// Marks every block.
    pub fn set_all(&mut self) {
        for b in 0..self.blocks {
            self.set(b);
        }
    }

    /// Clears every block.
    pub fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.set = 0;
    }

    /// The first marked block at or after `from`.
    pub fn next_set(&self, from: u64) -> Option<u64> {
        if from >= self.blocks {
            return None;
        }
        let mut i = word(from);
        let mut w = self.words[i] & (!0u64 << (from % 64));
        loop {
            if w != 0 {
                let b = (i as u64) * 64 + u64::from(w.trailing_zeros());
                return (b < self.blocks).then_some(b);
            }
            i += 1;
            if i >= self.words.len() {
                return None;
            }
            w = self.words[i];
        }
    }

    /// Merges `other` into `self` (union), e.g. both sides' bitmaps after a split brain.
    pub fn union(&mut self, other: &Bitmap) {
        assert_eq!(self.blocks, other.blocks, "bitmaps of different sizes");
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
        self.set = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }
}

/// The 4 KiB blocks touched by the byte range `[offset, offset + len)`.
pub fn blocks_of(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    let first = offset / BLOCK_SIZE;
    let last = (offset + len - 1) / BLOCK_SIZE;
    first..last + 1
}

fn word(b: u64) -> usize {
    usize::try_from(b / 64).expect("bitmap index fits usize")
}

fn bit(b: u64) -> u64 {
    1u64 << (b % 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_cover_partial_blocks() {
        assert_eq!(blocks_of(0, 4096), 0..1);
        assert_eq!(blocks_of(4095, 2), 0..2);
        assert_eq!(blocks_of(8192, 1), 2..3);
        assert_eq!(blocks_of(100, 0), 0..0);
    }

    #[test]
    fn words_reject_bits_past_the_end() {
        assert!(Bitmap::from_words(vec![1 << 10], 10).is_none());
        assert_eq!(
            Bitmap::from_words(vec![1 << 9], 10).map(|b| b.count()),
            Some(1)
        );
        assert!(Bitmap::from_words(vec![0, 0], 10).is_none());
    }

    proptest! {
        /// The bitmap agrees with a `Vec<bool>` oracle under any sequence of set/clear.
        #[test]
        fn matches_oracle(blocks in 1u64..300, ops in proptest::collection::vec((any::<bool>(), 0u64..300), 0..200)) {
            let mut bm = Bitmap::new(blocks * BLOCK_SIZE);
            let mut oracle = vec![false; usize::try_from(blocks).unwrap()];
            for (set, b) in ops {
                let b = b % blocks;
                let i = usize::try_from(b).unwrap();
                let changed = if set { bm.set(b) } else { bm.clear(b) };
                prop_assert_eq!(changed, oracle[i] != set);
                oracle[i] = set;
            }
            prop_assert_eq!(bm.count(), oracle.iter().filter(|x| **x).count() as u64);
            let mut from = 0;
            let mut seen = vec![];
            while let Some(b) = bm.next_set(from) { seen.push(b); from = b + 1; }
            let want: Vec<u64> = oracle.iter().enumerate().filter(|(_, x)| **x).map(|(i, _)| i as u64).collect();
            prop_assert_eq!(seen, want);
            let again = Bitmap::from_words(bm.words().to_vec(), blocks).unwrap();
            prop_assert_eq!(again, bm);
        }
    }
}

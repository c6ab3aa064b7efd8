//! The bitmap exchange of the sync handshake (DRBD's WFBitMapS/T): each side sends its
//! quick-sync bitmap and ORs the peer's into its own, so both agree on what is out of sync (the
//! union: after a split brain, blocks changed on either side). The encoding skips all-zero words
//! and collapses all-one words into runs, so a clean bitmap costs one message and a full-sync
//! bitmap a few bytes; a message carries at most [`MAX_WORDS_PER_PART`] literal words.

use crate::bitmap::Bitmap;
use serde::{Deserialize, Serialize};

/// Literal 64-bit words per message (64 KiB of bitmap = 2 GiB of device).
pub const MAX_WORDS_PER_PART: usize = 8192;
/// Runs per message.
pub const MAX_RUNS_PER_PART: usize = 4096;

/// A stretch of bitmap words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitmapRun {
    /// Literal words starting at word index `start`.
    Words {
        /// First word index.
        start: u64,
        /// The words.
        words: Vec<u64>,
    },
    /// `count` words of all ones starting at word index `start`.
    Ones {
        /// First word index.
        start: u64,
        /// Number of words.
        count: u64,
    },
}

/// Encodes `bm` into message-sized parts (at least one, possibly empty).
pub fn encode(bm: &Bitmap) -> Vec<Vec<BitmapRun>> {
    let words = bm.words();
    let mut parts = vec![];
    let mut part: Vec<BitmapRun> = vec![];
    let mut literal_in_part = 0usize;
    let mut i = 0usize;
    while i < words.len() {
        if words[i] == 0 {
            i += 1;
            continue;
        }
        if part.len() >= MAX_RUNS_PER_PART || literal_in_part >= MAX_WORDS_PER_PART {
            parts.push(std::mem::take(&mut part));
            literal_in_part = 0;
        }
        if words[i] == u64::MAX {
            let start = i;
            while i < words.len() && words[i] == u64::MAX {
                i += 1;
            }
            part.push(BitmapRun::Ones {
                start: start as u64,
                count: (i - start) as u64,
            });
        } else {
            let start = i;
            let room = MAX_WORDS_PER_PART - literal_in_part;
            while i < words.len() && words[i] != 0 && words[i] != u64::MAX && i - start < room {
                i += 1;
            }
            literal_in_part += i - start;
            part.push(BitmapRun::Words {
                start: start as u64,
                words: words[start..i].to_vec(),
            });
        }
    }
    parts.push(part);
    parts
}

/// Why a received bitmap part was rejected (the connection is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitmapXferError {
    /// A run reaches past the end of the bitmap.
    #[error("bitmap run at word {start} (+{len}) is past the end of the {words}-word bitmap")]
    OutOfRange {
        /// First word.
        start: u64,
        /// Words.
        len: u64,
        /// Words in the bitmap.
        words: u64,
    },
}

/// ORs `runs` into `bm`; returns the blocks that became set (to persist as out of sync).
pub fn apply(bm: &mut Bitmap, runs: &[BitmapRun]) -> Result<Vec<u64>, BitmapXferError> {
    let n_words = bm.words().len() as u64;
    let blocks = bm.blocks();
    for run in runs {
        let (start, len) = match run {
            BitmapRun::Words { start, words } => (*start, words.len() as u64),
            BitmapRun::Ones { start, count } => (*start, *count),
        };
        if start.checked_add(len).is_none_or(|end| end > n_words) {
            return Err(BitmapXferError::OutOfRange {
                start,
                len,
                words: n_words,
            });
        }
    }
    let mut newly = vec![];
    let mut set_word = |bm: &mut Bitmap, idx: u64, w: u64| {
        let mut w = w;
        while w != 0 {
            let bit = u64::from(w.trailing_zeros());
            w &= w - 1;
            let b = idx * 64 + bit;
            if b < blocks && bm.set(b) {
                newly.push(b);
            }
        }
    };
    for run in runs {
        match run {
            BitmapRun::Words { start, words } => {
                for (k, w) in words.iter().enumerate() {
                    set_word(bm, start + k as u64, *w);
                }
            }
            BitmapRun::Ones { start, count } => {
                for k in 0..*count {
                    set_word(bm, start + k, u64::MAX);
                }
            }
        }
    }
    Ok(newly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitmap::BLOCK_SIZE;
    use proptest::prelude::*;

    #[test]
    fn clean_bitmap_is_one_empty_part() {
        assert_eq!(encode(&Bitmap::new(1 << 30)), vec![vec![]]);
    }

    #[test]
    fn full_bitmap_is_one_run() {
        let mut bm = Bitmap::new(64 * 100 * BLOCK_SIZE);
        bm.set_all();
        assert_eq!(
            encode(&bm),
            vec![vec![BitmapRun::Ones {
                start: 0,
                count: 100
            }]]
        );
    }

    #[test]
    fn rejects_runs_past_the_end() {
        let mut bm = Bitmap::new(64 * BLOCK_SIZE);
        assert!(apply(&mut bm, &[BitmapRun::Ones { start: 0, count: 2 }]).is_err());
        assert!(
            apply(
                &mut bm,
                &[BitmapRun::Ones {
                    start: u64::MAX,
                    count: 2
                }]
            )
            .is_err()
        );
    }

    proptest! {
        /// Sending a bitmap into another yields the union, and reports exactly the new bits.
        #[test]
        fn transfer_is_union(blocks in 1u64..40_000, a in proptest::collection::vec(0u64..40_000, 0..300),
                             b in proptest::collection::vec(0u64..40_000, 0..300), full_range in proptest::option::of((0u64..40_000, 0u64..20_000))) {
            let mut src = Bitmap::new(blocks * BLOCK_SIZE);
            let mut dst = Bitmap::new(blocks * BLOCK_SIZE);
            for x in a { src.set(x % blocks); }
            for x in b { dst.set(x % blocks); }
            if let Some((s, l)) = full_range { for x in s..(s + l).min(blocks) { src.set(x); } }
            let mut want = dst.clone();
            want.union(&src);
            let before = dst.clone();
            let mut newly = vec![];
            for part in encode(&src) {
                prop_assert!(part.len() <= MAX_RUNS_PER_PART);
                newly.extend(apply(&mut dst, &part).unwrap());
            }
            prop_assert_eq!(&dst, &want);
            newly.sort_unstable();
            let expect: Vec<u64> = (0..blocks).filter(|x| want.get(*x) && !before.get(*x)).collect();
            prop_assert_eq!(newly, expect);
        }
    }
}

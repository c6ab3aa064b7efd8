//! Fuzzes the meta-data decoders: no input panics them, and whatever they accept is exactly
//! what the encoders write (decode(bytes) = Ok(v) implies encode(v) == bytes), so no corrupted
//! record can pass for a valid one. Also runs activity-log recovery over rings of fuzzed blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replicator_core::meta::al::{self, AlTransaction};
use replicator_core::meta::{BLOCK_LEN, Superblock, bmpage};

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; BLOCK_LEN];
    let n = data.len().min(BLOCK_LEN);
    block[..n].copy_from_slice(&data[..n]);
    let md_uuid = u64::from_le_bytes(block[8..16].try_into().expect("8 bytes"));
    if let Ok(sb) = Superblock::decode(&block) {
        assert_eq!(
            sb.encode(),
            block,
            "superblock decode accepted a non-canonical block"
        );
    }
    if let Ok(t) = AlTransaction::decode(&block, md_uuid) {
        assert_eq!(
            t.encode(),
            block,
            "AL decode accepted a non-canonical block"
        );
    }
    let index = u32::from_le_bytes(block[4068..4072].try_into().expect("4 bytes"));
    let page_uuid = u64::from_le_bytes(block[4072..4080].try_into().expect("8 bytes"));
    let blocks = 1 + u64::from(u32::from_le_bytes(block[0..4].try_into().expect("4 bytes")));
    if let Ok(words) = bmpage::decode(&block, index, page_uuid, blocks) {
        assert_eq!(words.len(), bmpage::WORDS_PER_PAGE);
    }
    // A ring made of the input cut into blocks (beyond the first).
    let ring: Vec<_> = data
        .chunks(BLOCK_LEN)
        .take(16)
        .map(|c| {
            let mut b = [0u8; BLOCK_LEN];
            b[..c.len()].copy_from_slice(c);
            AlTransaction::decode(&b, md_uuid)
        })
        .collect();
    if !ring.is_empty() {
        let rec = al::recover(&ring);
        assert!(rec.extents.windows(2).all(|w| w[0] < w[1]));
    }
});

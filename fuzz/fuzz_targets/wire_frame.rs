//! Fuzzes the peer wire decoder: no input panics it, and whatever it accepts re-encodes to a
//! frame that decodes to the same message. Half the inputs are wrapped in a valid header (magic,
//! version, length, both CRC-32s) so that the fuzzer reaches the bincode payload decoder and the
//! message bounds checks, which the checksums would otherwise guard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replicator_core::wire::{self, HEADER_BYTES};

fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HEADER_BYTES];
    f[0..4].copy_from_slice(b"TNDR");
    f[4..6].copy_from_slice(&1u16.to_le_bytes());
    f[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f[12..16].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let h = crc32fast::hash(&f[0..16]);
    f[16..20].copy_from_slice(&h.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((flag, rest)) if flag & 1 == 1 => wrap(rest),
        _ => data.to_vec(),
    };
    if let Some(h) = bytes.first_chunk::<HEADER_BYTES>() {
        let _ = wire::decode_header(h);
    }
    if let Ok(Some((msg, used))) = wire::decode(&bytes) {
        assert!(used <= bytes.len());
        let again = wire::encode(&msg);
        let (back, n) = wire::decode(&again).expect("re-encoded frame decodes").expect("whole frame");
        assert_eq!(n, again.len());
        assert_eq!(back, msg);
    }
});

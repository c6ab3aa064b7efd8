//! Fuzzes the clusterctl ↔ clusterd control-frame decoder: no input panics it, and whatever
//! decodes re-encodes to a frame that decodes to the same message. Half the inputs get a valid
//! header (magic, version, length, CRC-32) so the fuzzer reaches the JSON payload decoder.
#![no_main]

use clusterd_core::control::{self, HEADER_BYTES, PROTOCOL_VERSION, Request, Response};
use libfuzzer_sys::fuzz_target;

fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_BYTES + payload.len());
    f.extend_from_slice(&control::FRAME_MAGIC);
    f.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((flag, rest)) if flag & 1 == 1 => wrap(rest),
        _ => data.to_vec(),
    };
    if let Some(h) = bytes.first_chunk::<HEADER_BYTES>() {
        let _ = control::decode_header(h);
    }
    if let Ok(req) = control::decode::<Request>(&bytes) {
        let again: Request = control::decode(&control::encode(&req)).expect("re-encoded request");
        assert_eq!(again, req);
    }
    if let Ok(resp) = control::decode::<Response>(&bytes) {
        let again: Response =
            control::decode(&control::encode(&resp)).expect("re-encoded response");
        assert_eq!(again, resp);
    }
});

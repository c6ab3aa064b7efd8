//! Frames of data messages without copying the data.
//!
//! A `Data` or `RsData` frame is mostly its data (4 KiB to 8 MiB). [`encode_parts`] gives the
//! frame as three pieces — header and the fields before the data, the data itself (the same
//! shared buffer the message holds), the fields after it — for a vectored write; the checksum
//! is computed over the pieces in order. [`decode_shared`] decodes a payload held in a shared
//! buffer and, for data messages, hands out the data as a slice of that buffer. Both produce
//! and accept exactly the bytes of [`super::encode`] / [`super::decode_payload`] (checked
//! against them by property tests below), so the wire format is unchanged.
//!
//! bincode 2's standard configuration, as used by the frames: an enum is its variant index as
//! a varint, then its fields in order; a `u64` is a varint (`< 251`: one byte; then 251 + u16,
//! 252 + u32, 253 + u64, little-endian); a byte string is its length as a varint, then the
//! bytes; a `bool` is one byte, 0 or 1.

use bytes::Bytes;

use super::frame::{FRAME_VERSION, FrameHeader, HEADER_BYTES, MAGIC, WireError, decode_payload};
use super::message::Message;

/// Variant index of `Message::Data` (the order of the enum).
const DATA: u64 = 3;
/// Variant index of `Message::RsData`.
const RS_DATA: u64 = 10;

/// A frame as pieces for a vectored write: `head` (frame header and the fields before the
/// data), `data` (shared, not copied), `tail` (the fields after the data).
#[derive(Debug, Clone)]
pub struct FrameParts {
    /// Header and leading fields.
    pub head: Vec<u8>,
    /// The data, when the message carries any.
    pub data: Option<Bytes>,
    /// Trailing fields.
    pub tail: Vec<u8>,
}

impl FrameParts {
    /// Total length.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.as_ref().map_or(0, Bytes::len) + self.tail.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one buffer (for tests and callers without vectored writes).
    pub fn concat(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        if let Some(d) = &self.data {
            v.extend_from_slice(d);
        }
        v.extend_from_slice(&self.tail);
        v
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(u8::try_from(v).expect("below 251"));
    } else if let Ok(x) = u16::try_from(v) {
        out.push(251);
        out.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(x) = u32::try_from(v) {
        out.push(252);
        out.extend_from_slice(&x.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads a varint as bincode does (it also accepts a value written with more bytes than it
/// needs); `None` if truncated or the first byte is not a varint marker.
fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    let (v, n) = match first {
        0..=250 => (u64::from(first), 1),
        251 => (
            u64::from(u16::from_le_bytes(
                b.get(*at + 1..*at + 3)?.try_into().ok()?,
            )),
            3,
        ),
        252 => (
            u64::from(u32::from_le_bytes(
                b.get(*at + 1..*at + 5)?.try_into().ok()?,
            )),
            5,
        ),
        253 => (
            u64::from_le_bytes(b.get(*at + 1..*at + 9)?.try_into().ok()?),
            9,
        ),
        _ => return None,
    };
    *at += n;
    Some(v)
}

fn header(payload_len: usize, crc: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    let len = u32::try_from(payload_len).expect("payload fits u32");
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[0..16]);
    h[16..20].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// Encodes `msg` as frame pieces; the data of `Data` and `RsData` is not copied.
pub fn encode_parts(msg: &Message) -> FrameParts {
    let (variant, seq, offset, data, fua) = match msg {
        Message::Data {
            seq,
            offset,
            data,
            fua,
        } => (DATA, *seq, *offset, data, Some(*fua)),
        Message::RsData { seq, offset, data } => (RS_DATA, *seq, *offset, data, None),
        other => {
            return FrameParts {
                head: super::encode(other),
                data: None,
                tail: Vec::new(),
            };
        }
    };
    let mut lead = Vec::with_capacity(32);
    put_varint(&mut lead, variant);
    put_varint(&mut lead, seq);
    put_varint(&mut lead, offset);
    put_varint(&mut lead, data.len() as u64);
    let tail: Vec<u8> = fua.map(|f| vec![u8::from(f)]).unwrap_or_default();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lead);
    crc.update(data);
    crc.update(&tail);
    let payload_len = lead.len() + data.len() + tail.len();
    let mut head = Vec::with_capacity(HEADER_BYTES + lead.len());
    head.extend_from_slice(&header(payload_len, crc.finalize()));
    head.extend_from_slice(&lead);
    FrameParts {
        head,
        data: Some(data.clone()),
        tail,
    }
}

/// Decodes the payload of a frame whose header was `header`, held in a shared buffer: like
/// [`decode_payload`], but the data of `Data` and `RsData` is a slice of `payload` (no copy).
pub fn decode_shared(header: &FrameHeader, payload: Bytes) -> Result<Message, WireError> {
    assert_eq!(
        payload.len(),
        header.payload_len,
        "payload length differs from the header's"
    );
    let b = &payload[..];
    let mut at = 0;
    // The variant index is a u32: a u64-sized varint is for the codec to refuse.
    let variant = get_varint(b, &mut at).filter(|_| b[0] < 253);
    if variant != Some(DATA) && variant != Some(RS_DATA) {
        return decode_payload(header, b);
    }
    if crc32fast::hash(b) != header.payload_crc {
        return Err(WireError::PayloadChecksum);
    }
    let bad = |what: &str| WireError::Decode(format!("{what} of a data message"));
    let seq = get_varint(b, &mut at).ok_or_else(|| bad("sequence number"))?;
    let offset = get_varint(b, &mut at).ok_or_else(|| bad("offset"))?;
    let len = get_varint(b, &mut at).ok_or_else(|| bad("length"))?;
    let len = usize::try_from(len).map_err(|_| bad("length"))?;
    let end = at
        .checked_add(len)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| bad("data"))?;
    let data = payload.slice(at..end);
    at = end;
    let msg = if variant == Some(DATA) {
        let fua = match b.get(at) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(bad("fua flag")),
        };
        at += 1;
        Message::Data {
            seq,
            offset,
            data,
            fua,
        }
    } else {
        Message::RsData { seq, offset, data }
    };
    if at != b.len() {
        return Err(WireError::Trailing(b.len() - at));
    }
    msg.validate().map_err(WireError::Invalid)?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::super::{decode_header, encode};
    use super::*;
    use proptest::prelude::*;

    fn data_msg() -> impl Strategy<Value = Message> {
        let lens = prop_oneof![
            1usize..300,
            Just(250),
            Just(251),
            Just(65535),
            Just(65536),
            Just(70_000)
        ];
        (
            any::<u64>(),
            any::<u64>(),
            lens,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(seq, offset, len, fua, rs)| {
                let data = Bytes::from(
                    (0..len)
                        .map(|i| u8::try_from(i % 251).unwrap())
                        .collect::<Vec<_>>(),
                );
                if rs {
                    Message::RsData { seq, offset, data }
                } else {
                    Message::Data {
                        seq,
                        offset,
                        data,
                        fua,
                    }
                }
            })
    }

    fn split(frame: &[u8]) -> (FrameHeader, Bytes) {
        let h = decode_header(frame[..HEADER_BYTES].try_into().unwrap()).unwrap();
        (h, Bytes::copy_from_slice(&frame[HEADER_BYTES..]))
    }

    #[test]
    fn the_data_is_shared_not_copied() {
        let data = Bytes::from(vec![7u8; 4096]);
        let msg = Message::Data {
            seq: 9,
            offset: 8192,
            data: data.clone(),
            fua: true,
        };
        let parts = encode_parts(&msg);
        assert_eq!(parts.data.as_ref().unwrap().as_ptr(), data.as_ptr());
        assert_eq!(parts.tail, vec![1]);
        let frame = parts.concat();
        let (h, payload) = split(&frame);
        let back = decode_shared(&h, payload.clone()).unwrap();
        let Message::Data { data: got, .. } = &back else {
            panic!("{back:?}")
        };
        let inside = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
        assert!(
            inside.contains(&(got.as_ptr() as usize)),
            "a slice of the payload"
        );
        assert_eq!(back, msg);
    }

    #[test]
    fn non_canonical_varints_are_treated_as_the_codec_treats_them() {
        // Data, seq 5 written as 251 + u16 (non-canonical), offset 0, 1 byte of data, fua 0.
        for payload in [
            vec![3u8, 251, 5, 0, 0, 1, 9, 0],
            vec![3u8, 5, 252, 1, 0, 0, 0, 1, 9, 0],
            vec![3u8, 5, 0, 1, 9, 2],
            vec![10u8, 5, 0, 2, 9],
            vec![253u8, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1, 9, 0],
            vec![251u8, 3, 0, 5, 0, 1, 9, 0],
        ] {
            let h = FrameHeader {
                payload_len: payload.len(),
                payload_crc: crc32fast::hash(&payload),
            };
            let codec = decode_payload(&h, &payload);
            let shared = decode_shared(&h, Bytes::from(payload.clone()));
            assert_eq!(
                codec.is_ok(),
                shared.is_ok(),
                "{payload:?}: {codec:?} / {shared:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parts_are_exactly_the_frame(msg in data_msg()) {
            prop_assert_eq!(encode_parts(&msg).concat(), encode(&msg));
        }

        #[test]
        fn shared_decoding_agrees_with_the_codec(msg in data_msg()) {
            let frame = encode(&msg);
            let (h, payload) = split(&frame);
            prop_assert_eq!(decode_shared(&h, payload).unwrap(), msg);
        }

        #[test]
        fn shared_decoding_refuses_what_the_codec_refuses(
            msg in data_msg(),
            cut in 0usize..40,
            patch in proptest::collection::vec((0usize..40, any::<u8>()), 0..3),
        ) {
            let frame = encode(&msg);
            let mut payload = frame[HEADER_BYTES..].to_vec();
            for (at, v) in patch {
                if at < payload.len() { payload[at] = v; }
            }
            let keep = payload.len().saturating_sub(cut % 3);
            payload.truncate(keep);
            let h = FrameHeader { payload_len: payload.len(), payload_crc: crc32fast::hash(&payload) };
            let codec = decode_payload(&h, &payload);
            let shared = decode_shared(&h, Bytes::from(payload));
            prop_assert_eq!(codec.is_ok(), shared.is_ok(), "codec {:?} shared {:?}", codec, shared);
            if let (Ok(a), Ok(b)) = (codec, shared) {
                prop_assert_eq!(a, b);
            }
        }
    }
}

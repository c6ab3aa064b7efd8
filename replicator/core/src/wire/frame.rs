//! Frames: a fixed 20-byte header, then a bincode-2 payload holding one [`Message`].
//!
//! ```text
//!  0       4       6       8          12           16           20
//!  +-------+-------+-------+----------+------------+------------+----------------+
//!  | magic |version| flags | pay. len | pay. crc32 | hdr. crc32 | payload ...    |
//!  +-------+-------+-------+----------+------------+------------+----------------+
//!   "TNDR"   u16 LE  0      u32 LE     u32 LE       over 0..16
//! ```
//!
//! The header has its own checksum, so a corrupt length is caught before the reader waits for
//! (or allocates) a payload that never comes; the payload length is capped at
//! [`MAX_PAYLOAD_BYTES`]. Decoding is total: any bytes give a [`Message`] or a [`WireError`],
//! never a panic (fuzzed: `fuzz/fuzz_targets/wire_frame.rs`).

use super::message::{MAX_DATA_BYTES, Message};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"TNDR";
/// Frame format version (the header layout; message changes go by the peer-protocol version).
pub const FRAME_VERSION: u16 = 1;
/// Header length.
pub const HEADER_BYTES: usize = 20;
/// Largest payload accepted: one full data message plus room for its fields.
pub const MAX_PAYLOAD_BYTES: usize = MAX_DATA_BYTES + 4096;

/// Why bytes are not a valid frame. Any of these drops the connection (and so forces a resync
/// of what was in flight).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first four bytes are not [`MAGIC`].
    #[error("bad frame magic {0:02x?}")]
    Magic([u8; 4]),
    /// The header checksum does not match.
    #[error("frame header checksum mismatch")]
    HeaderChecksum,
    /// Unknown frame version.
    #[error("unsupported frame version {0} (this build speaks {FRAME_VERSION})")]
    Version(u16),
    /// Reserved flags are not zero.
    #[error("reserved frame flags {0:#06x} set")]
    Flags(u16),
    /// Payload longer than [`MAX_PAYLOAD_BYTES`].
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLong(u32),
    /// The payload checksum does not match.
    #[error("frame payload checksum mismatch")]
    PayloadChecksum,
    /// The payload is not a valid message.
    #[error("undecodable message: {0}")]
    Decode(String),
    /// The payload has bytes after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// The message breaks a bound.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Payload CRC-32.
    pub payload_crc: u32,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_PAYLOAD_BYTES>()
}

/// Encodes `msg` as one frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_BYTES];
    // Encoding into a Vec cannot fail for our types except past the size limit, which the
    // state machine never produces (it bounds every message it builds).
    let payload = bincode::serde::encode_to_vec(msg, config())
        .expect("message encodes within the payload limit");
    let len = u32::try_from(payload.len()).expect("payload fits u32");
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&0u16.to_le_bytes());
    out[8..12].copy_from_slice(&len.to_le_bytes());
    out[12..16].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let hcrc = crc32fast::hash(&out[0..16]);
    out[16..20].copy_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks a frame header (the first [`HEADER_BYTES`] of a frame).
pub fn decode_header(h: &[u8; HEADER_BYTES]) -> Result<FrameHeader, WireError> {
    let magic = [h[0], h[1], h[2], h[3]];
    if magic != MAGIC {
        return Err(WireError::Magic(magic));
    }
    if crc32fast::hash(&h[0..16]) != le32(&h[16..20]) {
        return Err(WireError::HeaderChecksum);
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != FRAME_VERSION {
        return Err(WireError::Version(version));
    }
    let flags = u16::from_le_bytes([h[6], h[7]]);
    if flags != 0 {
        return Err(WireError::Flags(flags));
    }
    let len = le32(&h[8..12]);
    if len as usize > MAX_PAYLOAD_BYTES {
        return Err(WireError::TooLong(len));
    }
    Ok(FrameHeader {
        payload_len: len as usize,
        payload_crc: le32(&h[12..16]),
    })
}

/// Decodes the payload that follows `header` (exactly `header.payload_len` bytes).
pub fn decode_payload(header: &FrameHeader, payload: &[u8]) -> Result<Message, WireError> {
    assert_eq!(
        payload.len(),
        header.payload_len,
        "payload length differs from the header's"
    );
    if crc32fast::hash(payload) != header.payload_crc {
        return Err(WireError::PayloadChecksum);
    }
    let (msg, used): (Message, usize) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Trailing(payload.len() - used));
    }
    msg.validate().map_err(WireError::Invalid)?;
    Ok(msg)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// message and the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    let Some(h) = buf.first_chunk::<HEADER_BYTES>() else {
        return Ok(None);
    };
    let header = decode_header(h)?;
    let end = HEADER_BYTES + header.payload_len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        decode_payload(&header, &buf[HEADER_BYTES..end])?,
        end,
    )))
}

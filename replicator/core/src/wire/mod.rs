//! The peer wire format: frames with magic, version, length and CRC-32 checksums around a
//! bincode-2 encoded [`Message`]. Untrusted bytes are parsed here, once, into typed messages; the
//! state machine never sees raw bytes. The daemon reads a [`frame::HEADER_BYTES`] header, checks
//! it with [`decode_header`], reads exactly the payload it announces and decodes it with
//! [`decode_payload`] (or uses [`decode`] on a buffer). Any [`WireError`] drops the connection.
//! Before the first frame, [`preamble`] settles which of two crossing TCP connections is used.
//! [`shared`] writes and reads data frames without copying their data (same bytes on the wire).

pub mod frame;
pub mod message;
pub mod preamble;
pub mod shared;

pub use frame::{
    FrameHeader, HEADER_BYTES, MAX_PAYLOAD_BYTES, WireError, decode, decode_header, decode_payload,
    encode,
};
pub use message::Message;

#[cfg(test)]
mod tests;

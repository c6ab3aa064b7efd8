//! Transmission-phase replies: simple (16 bytes), structured chunks (20-byte header) and extended
//! chunks (32-byte header), chosen by the session's [`ReplyMode`]. The functions append the
//! header (and any small payload) to a buffer; a READ's data is sent after it as a separate
//! slice, so the data is never copied.

use crate::handshake::truncate_str;
use crate::proto::*;
use crate::session::ReplyMode;

/// One `base:allocation` extent: `len` bytes with `flags` (`STATE_HOLE`, `STATE_ZERO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (nonzero).
    pub len: u64,
    /// Status flags.
    pub flags: u32,
}

/// Most extents one BLOCK_STATUS reply carries (the spec asks for at most 2^20; clients come
/// back for the rest). Keeps one reply under 16 KiB.
pub const MAX_EXTENTS: usize = 1024;

fn simple(out: &mut Vec<u8>, cookie: u64, error: u32) {
    out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
}

/// Appends a structured or extended chunk header.
fn chunk(
    out: &mut Vec<u8>,
    mode: ReplyMode,
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u64,
) {
    match mode {
        ReplyMode::Simple => unreachable!("chunks need structured replies"),
        ReplyMode::Structured => {
            out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&cookie.to_be_bytes());
            let len = u32::try_from(len)
                .expect("structured chunk payloads are bounded by the max payload");
            out.extend_from_slice(&len.to_be_bytes());
        }
        ReplyMode::Extended => {
            out.extend_from_slice(&EXTENDED_REPLY_MAGIC.to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&cookie.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Success with no data (everything but READ and BLOCK_STATUS).
pub fn encode_ok(out: &mut Vec<u8>, mode: ReplyMode, cookie: u64, offset: u64) {
    match mode {
        ReplyMode::Simple | ReplyMode::Structured => simple(out, cookie, 0),
        ReplyMode::Extended => chunk(
            out,
            mode,
            REPLY_FLAG_DONE,
            REPLY_TYPE_NONE,
            cookie,
            offset,
            0,
        ),
    }
}

/// An error. Simple replies carry only the errno; chunks also carry `message` (cut to the
/// spec's 4096-byte string limit). A READ under structured replies must get a chunk, never a
/// simple reply, so chunks are used for every error once negotiated.
pub fn encode_error(
    out: &mut Vec<u8>,
    mode: ReplyMode,
    cookie: u64,
    offset: u64,
    error: Errno,
    message: &str,
) {
    match mode {
        ReplyMode::Simple => simple(out, cookie, error.code()),
        ReplyMode::Structured | ReplyMode::Extended => {
            let msg = truncate_str(message, MAX_STRING_LEN);
            chunk(
                out,
                mode,
                REPLY_FLAG_DONE,
                REPLY_TYPE_ERROR,
                cookie,
                offset,
                6 + msg.len() as u64,
            );
            out.extend_from_slice(&error.code().to_be_bytes());
            out.extend_from_slice(
                &u16::try_from(msg.len())
                    .expect("≤ 4096 bytes")
                    .to_be_bytes(),
            );
            out.extend_from_slice(msg.as_bytes());
        }
    }
}

/// The header of a successful READ of `len` bytes at `offset`; the data follows it. With
/// chunks this is one `OFFSET_DATA` chunk marked DONE: the data is fully read before anything is
/// sent, so no error can follow (and `NBD_CMD_FLAG_DF` is honoured trivially).
pub fn encode_read(out: &mut Vec<u8>, mode: ReplyMode, cookie: u64, offset: u64, len: u32) {
    match mode {
        ReplyMode::Simple => simple(out, cookie, 0),
        ReplyMode::Structured | ReplyMode::Extended => {
            if len == 0 {
                // Nothing to describe: a zero-length read is an empty success.
                return chunk(
                    out,
                    mode,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_NONE,
                    cookie,
                    offset,
                    0,
                );
            }
            chunk(
                out,
                mode,
                REPLY_FLAG_DONE,
                REPLY_TYPE_OFFSET_DATA,
                cookie,
                offset,
                8 + u64::from(len),
            );
            out.extend_from_slice(&offset.to_be_bytes());
        }
    }
}

/// A BLOCK_STATUS reply for one context. Compact chunks under structured replies (extent
/// lengths must then fit 32 bits; the caller caps them), 64-bit `BLOCK_STATUS_EXT` under
/// extended headers.
pub fn encode_block_status(
    out: &mut Vec<u8>,
    mode: ReplyMode,
    cookie: u64,
    offset: u64,
    context: u32,
    extents: &[Extent],
) {
    assert!(
        !extents.is_empty(),
        "a block status reply carries at least one extent"
    );
    match mode {
        ReplyMode::Simple => unreachable!("block status needs structured replies"),
        ReplyMode::Structured => {
            let len = 4 + 8 * extents.len() as u64;
            chunk(
                out,
                mode,
                REPLY_FLAG_DONE,
                REPLY_TYPE_BLOCK_STATUS,
                cookie,
                offset,
                len,
            );
            out.extend_from_slice(&context.to_be_bytes());
            for e in extents {
                let l = u32::try_from(e.len)
                    .expect("compact extents are capped to 32 bits by the caller");
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&e.flags.to_be_bytes());
            }
        }
        ReplyMode::Extended => {
            let len = 8 + 16 * extents.len() as u64;
            chunk(
                out,
                mode,
                REPLY_FLAG_DONE,
                REPLY_TYPE_BLOCK_STATUS_EXT,
                cookie,
                offset,
                len,
            );
            out.extend_from_slice(&context.to_be_bytes());
            out.extend_from_slice(
                &u32::try_from(extents.len())
                    .expect("≤ MAX_EXTENTS")
                    .to_be_bytes(),
            );
            for e in extents {
                out.extend_from_slice(&e.len.to_be_bytes());
                out.extend_from_slice(&u64::from(e.flags).to_be_bytes());
            }
        }
    }
}

/// Normalises a backend's extents for the wire: drops empty ones, merges neighbours with equal
/// flags, clips the total to `len`, splits compact extents to fit 32 bits (keeping 512-byte
/// alignment), keeps one extent for `req_one`, and caps the count at [`MAX_EXTENTS`].
/// Returns an empty vector only if `extents` described nothing.
pub fn clip_extents(extents: &[Extent], len: u64, req_one: bool, mode: ReplyMode) -> Vec<Extent> {
    let limit = if mode == ReplyMode::Extended {
        u64::MAX
    } else {
        u64::from(u32::MAX) & !511
    };
    let mut out: Vec<Extent> = Vec::new();
    let mut total = 0u64;
    for e in extents.iter().filter(|e| e.len > 0) {
        if total >= len {
            break;
        }
        let take = e.len.min(len - total);
        total += take;
        match out.last_mut() {
            Some(last) if last.flags == e.flags && last.len.saturating_add(take) <= limit => {
                last.len += take
            }
            _ => out.push(Extent {
                len: take,
                flags: e.flags,
            }),
        }
    }
    let mut split = Vec::with_capacity(out.len());
    for e in out {
        let mut rest = e.len;
        while rest > 0 {
            let l = rest.min(limit);
            split.push(Extent {
                len: l,
                flags: e.flags,
            });
            rest -= l;
            if split.len() >= MAX_EXTENTS {
                break;
            }
        }
        if split.len() >= MAX_EXTENTS {
            break;
        }
    }
    if req_one {
        split.truncate(1);
    }
    split
}

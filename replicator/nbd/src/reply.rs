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
/// Returns an empty vector only if `extents` described nothing. For an export whose minimum
/// block size is 1; see [`clip_extents_aligned`].
pub fn clip_extents(extents: &[Extent], len: u64, req_one: bool, mode: ReplyMode) -> Vec<Extent> {
    clip_extents_aligned(extents, len, req_one, mode, 1)
}

/// [`clip_extents`] for an export with minimum block size `min_block` (a power of two): the
/// spec (`NBD_CMD_BLOCK_STATUS`) says every descriptor length MUST be a multiple of it. A
/// block that straddles a boundary between backend extents gets the flags every extent in it
/// shares (a block is a hole only if all of it is; zero only if all of it reads zero; status 0
/// is always safe), and a partial block at the end of what the backend described is left out
/// (the client asks again from there). `len` is the request's length, already a multiple of
/// `min_block` (the decoder rejects unaligned requests). Returns an empty vector only if
/// `extents` described nothing; if they describe less than one block, the answer is one
/// block of status 0.
pub fn clip_extents_aligned(
    extents: &[Extent],
    len: u64,
    req_one: bool,
    mode: ReplyMode,
    min_block: u32,
) -> Vec<Extent> {
    assert!(
        min_block.is_power_of_two(),
        "the minimum block size is a power of two"
    );
    let min = u64::from(min_block);
    let align = min.max(512);
    let limit = if mode == ReplyMode::Extended {
        !(min - 1)
    } else {
        u64::from(u32::MAX) & !(align - 1)
    };
    // 1. Clip to `len`, dropping empty extents.
    let mut clipped: Vec<Extent> = Vec::new();
    let mut total = 0u64;
    for e in extents.iter().filter(|e| e.len > 0) {
        if total >= len {
            break;
        }
        let take = e.len.min(len - total);
        total += take;
        clipped.push(Extent {
            len: take,
            flags: e.flags,
        });
    }
    if clipped.is_empty() {
        return Vec::new();
    }
    // 2. Align to the minimum block, merging neighbours with equal flags.
    let mut out: Vec<Extent> = Vec::new();
    let push = |out: &mut Vec<Extent>, l: u64, flags: u32| match out.last_mut() {
        Some(last) if last.flags == flags && last.len.saturating_add(l) <= limit => last.len += l,
        _ => out.push(Extent { len: l, flags }),
    };
    let (mut i, mut start_i, mut cur) = (0usize, 0u64, 0u64); // extent i spans [start_i, start_i+len)
    while cur < total && out.len() <= MAX_EXTENTS {
        while cur >= start_i + clipped[i].len {
            start_i += clipped[i].len;
            i += 1;
        }
        let end_i = start_i + clipped[i].len;
        let whole = (end_i - cur) / min * min;
        if whole > 0 {
            push(&mut out, whole, clipped[i].flags);
            cur += whole;
            continue;
        }
        // A block straddling extent boundaries: the flags all of it shares.
        if cur + min > total {
            break; // the backend described only part of this block
        }
        let (mut flags, mut j, mut start_j) = (clipped[i].flags, i, start_i);
        while start_j + clipped[j].len < cur + min {
            start_j += clipped[j].len;
            j += 1;
            flags &= clipped[j].flags;
        }
        push(&mut out, min, flags);
        cur += min;
    }
    if out.is_empty() {
        // Less than one block described: one block of "unknown" status, always correct.
        out.push(Extent {
            len: min.min(len),
            flags: 0,
        });
    }
    // 3. Split what does not fit the descriptor's length field; bound the count.
    let mut split = Vec::with_capacity(out.len());
    'outer: for e in out {
        let mut rest = e.len;
        while rest > 0 {
            let l = rest.min(limit);
            split.push(Extent {
                len: l,
                flags: e.flags,
            });
            rest -= l;
            if split.len() >= MAX_EXTENTS {
                break 'outer;
            }
        }
    }
    if req_one {
        split.truncate(1);
    }
    split
}

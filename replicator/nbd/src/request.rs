//! Transmission-phase requests, parsed once at the edge into typed commands.
//!
//! Two steps, both pure:
//! 1. [`RequestHeader::parse`] reads the fixed header (28 bytes compact, 32 extended) and checks
//!    the magic — a wrong magic means the stream is out of sync: hard disconnect.
//! 2. [`Session::decode`] checks every field against what was negotiated and yields either a
//!    typed [`Request`], a [`Rejection`] (answer this cookie with an error, maybe after
//!    discarding a payload, and go on), `Disconnect` (`NBD_CMD_DISC`), or a [`Violation`]
//!    (hard disconnect). The payload length is checked against the cap *before* the caller
//!    allocates or reads anything.

use crate::proto::*;
use crate::session::{DEFAULT_MAX_PAYLOAD, ReplyMode, Session};

/// A request header as it came off the wire (magic already checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags.
    pub flags: u16,
    /// Command type.
    pub kind: u16,
    /// Opaque cookie (handle) echoed in the reply.
    pub cookie: u64,
    /// Offset into the export.
    pub offset: u64,
    /// Length: 32-bit in compact headers; 64-bit effect or payload length in extended ones.
    pub length: u64,
    /// Whether the header was extended (32 bytes).
    pub extended: bool,
}

/// Protocol violations that end the connection (hard disconnect).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The header magic is wrong: the byte stream is out of sync.
    #[error("request magic {got:#010x}, expected {expected:#010x}; the stream is out of sync")]
    BadMagic { got: u32, expected: u32 },
    /// A payload larger than we will read (the spec allows a hard disconnect for this).
    #[error("{command} carries a {len}-byte payload, more than the {max}-byte maximum")]
    PayloadTooLarge {
        command: &'static str,
        len: u64,
        max: u32,
    },
}

impl RequestHeader {
    /// Parses a header of `session`'s size (`buf.len()` must equal it).
    pub fn parse(buf: &[u8], extended: bool) -> Result<Self, Violation> {
        let need = if extended {
            EXTENDED_REQUEST_HEADER_LEN
        } else {
            REQUEST_HEADER_LEN
        };
        assert_eq!(buf.len(), need, "caller reads exactly one header");
        let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let be64 = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let expected = if extended {
            EXTENDED_REQUEST_MAGIC
        } else {
            REQUEST_MAGIC
        };
        let got = be32(0);
        if got != expected {
            return Err(Violation::BadMagic { got, expected });
        }
        let length = if extended {
            be64(24)
        } else {
            u64::from(be32(24))
        };
        Ok(Self {
            flags: be16(4),
            kind: be16(6),
            cookie: be64(8),
            offset: be64(16),
            length,
            extended,
        })
    }

    /// Encodes the header (the inverse of [`parse`](Self::parse); used by tests and clients).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(EXTENDED_REQUEST_HEADER_LEN);
        let magic = if self.extended {
            EXTENDED_REQUEST_MAGIC
        } else {
            REQUEST_MAGIC
        };
        v.extend_from_slice(&magic.to_be_bytes());
        v.extend_from_slice(&self.flags.to_be_bytes());
        v.extend_from_slice(&self.kind.to_be_bytes());
        v.extend_from_slice(&self.cookie.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        if self.extended {
            v.extend_from_slice(&self.length.to_be_bytes());
        } else {
            let len = u32::try_from(self.length).expect("compact headers carry 32-bit lengths");
            v.extend_from_slice(&len.to_be_bytes());
        }
        v
    }
}

/// Flags of `NBD_CMD_WRITE_ZEROES`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeroFlags {
    /// Persist before replying.
    pub fua: bool,
    /// The area must stay allocated (no hole punched).
    pub no_hole: bool,
    /// Fail with `NBD_ENOTSUP` unless zeroing is faster than writing.
    pub fast: bool,
}

/// A validated command. Offsets and lengths are within the export and aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read `len` bytes (≤ max payload).
    Read { offset: u64, len: u32 },
    /// Write `len` bytes that follow the header (≤ max payload).
    Write { offset: u64, len: u32, fua: bool },
    /// Persist every completed write.
    Flush,
    /// Discard a range (a hint).
    Trim { offset: u64, len: u64, fua: bool },
    /// Prefetch a range.
    Cache { offset: u64, len: u64 },
    /// Zero a range.
    WriteZeroes {
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    },
    /// `base:allocation` extents from `offset`, at most `len` bytes worth; one if `req_one`.
    BlockStatus {
        offset: u64,
        len: u64,
        req_one: bool,
        context: u32,
    },
}

impl Command {
    /// Name as the spec writes it.
    pub fn name(&self) -> &'static str {
        command_name(match self {
            Self::Read { .. } => CMD_READ,
            Self::Write { .. } => CMD_WRITE,
            Self::Flush => CMD_FLUSH,
            Self::Trim { .. } => CMD_TRIM,
            Self::Cache { .. } => CMD_CACHE,
            Self::WriteZeroes { .. } => CMD_WRITE_ZEROES,
            Self::BlockStatus { .. } => CMD_BLOCK_STATUS,
        })
    }

    /// Bytes of payload that follow the header on the wire.
    pub fn payload_len(&self) -> u32 {
        match self {
            Self::Write { len, .. } => *len,
            _ => 0,
        }
    }

    /// Bytes of reply payload this command may make us hold (for the in-flight byte budget).
    pub fn buffer_len(&self) -> u32 {
        match self {
            Self::Read { len, .. } | Self::Write { len, .. } => *len,
            _ => 0,
        }
    }
}

/// A request ready to execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Cookie to echo.
    pub cookie: u64,
    /// The request's offset, echoed in extended reply headers.
    pub offset: u64,
    /// What to do.
    pub command: Command,
}

/// A request answered with an error without touching the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Cookie to echo.
    pub cookie: u64,
    /// Request offset (echoed in extended headers).
    pub offset: u64,
    /// Command code as sent.
    pub kind: u16,
    /// Error to reply.
    pub error: Errno,
    /// Payload bytes to read and throw away before replying, so the stream stays in sync.
    pub discard: u64,
    /// What was wrong (sent in structured error chunks and logged).
    pub reason: String,
}

/// The decoder's verdict on one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Execute it.
    Request(Request),
    /// Answer with an error and go on.
    Reject(Rejection),
    /// `NBD_CMD_DISC`: finish in-flight requests, then close.
    Disconnect,
}

/// Flags each command accepts (FUA is accepted on every command when advertised, as the spec
/// requires, and ignored where it means nothing).
fn allowed_flags(kind: u16, s: &Session) -> u16 {
    let fua = if s.has(TFLAG_SEND_FUA) {
        CMD_FLAG_FUA
    } else {
        0
    };
    let payload = if s.mode == ReplyMode::Extended && kind == CMD_WRITE {
        CMD_FLAG_PAYLOAD_LEN
    } else {
        0
    };
    fua | payload
        | match kind {
            CMD_READ if s.has(TFLAG_SEND_DF) => CMD_FLAG_DF,
            CMD_WRITE_ZEROES => {
                CMD_FLAG_NO_HOLE
                    | if s.has(TFLAG_SEND_FAST_ZERO) {
                        CMD_FLAG_FAST_ZERO
                    } else {
                        0
                    }
            }
            CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
            _ => 0,
        }
}

impl Session {
    /// Checks a header against the session. `Err` means hard disconnect.
    pub fn decode(&self, h: &RequestHeader) -> Result<Decoded, Violation> {
        let max = self.block.maximum;
        // 1. Work out how many payload bytes follow, and refuse to read an oversized one.
        // A WRITE's length is always its payload length (qemu does not set PAYLOAD_LEN on
        // writes; the flag is ignored there). Under extended headers any other command with
        // PAYLOAD_LEN also carries that many bytes, which we must consume to stay in sync.
        let payload: u64 =
            if h.kind == CMD_WRITE || (h.extended && h.flags & CMD_FLAG_PAYLOAD_LEN != 0) {
                h.length
            } else {
                0
            };
        // A payload above the maximum block size is refused, and read only to be thrown
        // away; only one so large that reading it is a denial of service ends the connection.
        // The spec: a length below 2^25 SHOULD NOT be taken for one, whatever maximum was
        // advertised (a client that did not ask for block sizes may send up to 32 MiB).
        let disconnect_above = max.max(DEFAULT_MAX_PAYLOAD);
        if payload > u64::from(disconnect_above) {
            return Err(Violation::PayloadTooLarge {
                command: command_name(h.kind),
                len: payload,
                max: disconnect_above,
            });
        }
        let reject = |error: Errno, reason: String| {
            Ok(Decoded::Reject(Rejection {
                cookie: h.cookie,
                offset: h.offset,
                kind: h.kind,
                error,
                discard: payload,
                reason,
            }))
        };
        let name = command_name(h.kind);

        // 2. The command must exist and have been advertised.
        let advertised = match h.kind {
            CMD_READ | CMD_WRITE => true,
            CMD_DISC => return Ok(Decoded::Disconnect),
            CMD_FLUSH => self.has(TFLAG_SEND_FLUSH),
            CMD_TRIM => self.has(TFLAG_SEND_TRIM),
            CMD_CACHE => self.has(TFLAG_SEND_CACHE),
            CMD_WRITE_ZEROES => self.has(TFLAG_SEND_WRITE_ZEROES),
            CMD_BLOCK_STATUS => self.base_allocation.is_some(),
            other => return reject(Errno::Inval, format!("unknown command {other}")),
        };
        if !advertised {
            let why = if h.kind == CMD_BLOCK_STATUS {
                "NBD_CMD_BLOCK_STATUS without a metadata context selected for this export"
                    .to_owned()
            } else {
                format!("{name} was not advertised for this export")
            };
            // Writes and zeroing on a read-only export are EPERM, as the spec asks.
            let err = if self.has(TFLAG_READ_ONLY) && matches!(h.kind, CMD_TRIM | CMD_WRITE_ZEROES)
            {
                Errno::Perm
            } else {
                Errno::Inval
            };
            return reject(err, why);
        }

        // 3. Flags.
        let unknown = h.flags & !allowed_flags(h.kind, self);
        if unknown != 0 {
            return reject(
                Errno::Inval,
                format!("{name} with flags {unknown:#06x} not valid for it"),
            );
        }
        let fua = h.flags & CMD_FLAG_FUA != 0;

        // 4. Read-only exports refuse writes.
        if self.has(TFLAG_READ_ONLY) && matches!(h.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES) {
            return reject(Errno::Perm, format!("{name} on a read-only export"));
        }

        // 5. Range checks. FLUSH must be all-zero; everything else must lie inside the export.
        if h.kind == CMD_FLUSH {
            if h.offset != 0 || h.length != 0 {
                return reject(
                    Errno::Inval,
                    "NBD_CMD_FLUSH with nonzero offset or length".into(),
                );
            }
            return Ok(Decoded::Request(Request {
                cookie: h.cookie,
                offset: 0,
                command: Command::Flush,
            }));
        }
        let end = h.offset.checked_add(h.length);
        if end.is_none_or(|e| e > self.size) {
            // The spec's choice of errno: ENOSPC for writes, EINVAL for the rest.
            let err = if matches!(h.kind, CMD_WRITE | CMD_WRITE_ZEROES) {
                Errno::NoSpc
            } else {
                Errno::Inval
            };
            return reject(
                err,
                format!(
                    "{name} of {} bytes at offset {} runs past the end of the {}-byte export",
                    h.length, h.offset, self.size
                ),
            );
        }
        let min = u64::from(self.block.minimum);
        if !h.offset.is_multiple_of(min) || !h.length.is_multiple_of(min) {
            return reject(
                Errno::Inval,
                format!(
                    "{name} at offset {} length {} is not aligned to the {min}-byte minimum block size",
                    h.offset, h.length
                ),
            );
        }
        let command = match h.kind {
            CMD_READ | CMD_WRITE => {
                if h.length > u64::from(max) {
                    return reject(
                        Errno::Inval,
                        format!(
                            "{name} of {} bytes exceeds the {max}-byte maximum",
                            h.length
                        ),
                    );
                }
                let len = u32::try_from(h.length).expect("≤ max, checked just above");
                if h.kind == CMD_READ {
                    Command::Read {
                        offset: h.offset,
                        len,
                    }
                } else {
                    Command::Write {
                        offset: h.offset,
                        len,
                        fua,
                    }
                }
            }
            CMD_TRIM => Command::Trim {
                offset: h.offset,
                len: h.length,
                fua,
            },
            CMD_CACHE => Command::Cache {
                offset: h.offset,
                len: h.length,
            },
            CMD_WRITE_ZEROES => Command::WriteZeroes {
                offset: h.offset,
                len: h.length,
                flags: ZeroFlags {
                    fua,
                    no_hole: h.flags & CMD_FLAG_NO_HOLE != 0,
                    fast: h.flags & CMD_FLAG_FAST_ZERO != 0,
                },
            },
            CMD_BLOCK_STATUS => {
                if h.length == 0 {
                    return reject(Errno::Inval, "NBD_CMD_BLOCK_STATUS of length 0".into());
                }
                let Some(context) = self.base_allocation else {
                    unreachable!("checked as advertised")
                };
                Command::BlockStatus {
                    offset: h.offset,
                    len: h.length,
                    req_one: h.flags & CMD_FLAG_REQ_ONE != 0,
                    context,
                }
            }
            _ => unreachable!("unknown kinds were rejected above"),
        };
        Ok(Decoded::Request(Request {
            cookie: h.cookie,
            offset: h.offset,
            command,
        }))
    }
}

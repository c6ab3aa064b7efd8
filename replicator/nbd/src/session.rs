//! What a handshake agrees on: the export's description ([`ExportInfo`]: size, capabilities,
//! block sizes) and the per-connection result ([`Session`]: reply style, transmission flags,
//! selected metadata context). Pure data; the request decoder checks every request against it.

use crate::proto::*;

/// How replies are framed in the transmission phase, as negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplyMode {
    /// No `NBD_OPT_STRUCTURED_REPLY`: 16-byte simple replies only (the kernel's nbd-client).
    Simple,
    /// `NBD_OPT_STRUCTURED_REPLY`: 20-byte chunks (libnbd tools, older qemu).
    Structured,
    /// `NBD_OPT_EXTENDED_HEADERS`: 32-byte requests and 32-byte reply chunks (qemu ≥ 8.2).
    Extended,
}

/// What an export can do; the transmission flags are derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes, trims and zeroing fail with `NBD_EPERM`; `NBD_FLAG_READ_ONLY` is set.
    pub read_only: bool,
    /// `NBD_CMD_FLUSH` and `NBD_CMD_FLAG_FUA` are honoured (data reaches stable storage).
    pub flush: bool,
    /// `NBD_CMD_TRIM` is understood (a hint; the backend may ignore it).
    pub trim: bool,
    /// `NBD_CMD_WRITE_ZEROES` (with `NO_HOLE`) is understood.
    pub write_zeroes: bool,
    /// `NBD_CMD_FLAG_FAST_ZERO` is understood (a backend answers `NBD_ENOTSUP` when it cannot zero
    /// faster than it writes).
    pub fast_zero: bool,
    /// `NBD_CMD_CACHE` is understood.
    pub cache: bool,
    /// `base:allocation` can be answered (`NBD_CMD_BLOCK_STATUS`).
    pub block_status: bool,
    /// One shared cache for every connection, so FLUSH/FUA on one covers all
    /// (`NBD_FLAG_CAN_MULTI_CONN`).
    pub multi_conn: bool,
    /// The medium is rotational (`NBD_FLAG_ROTATIONAL`, a scheduling hint).
    pub rotational: bool,
}

impl Capabilities {
    /// Everything a file or block device on Linux can do.
    pub const FULL: Self = Self {
        read_only: false,
        flush: true,
        trim: true,
        write_zeroes: true,
        fast_zero: true,
        cache: true,
        block_status: true,
        multi_conn: true,
        rotational: false,
    };
}

/// Block size constraints (`NBD_INFO_BLOCK_SIZE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    /// Smallest addressable unit; a power of two ≤ 64 KiB. Requests must be aligned to it.
    pub minimum: u32,
    /// Size below which I/O gets slow (read-modify-write); a power of two ≥ 512.
    pub preferred: u32,
    /// Largest READ/WRITE payload; also the cap on what one request may make us allocate.
    pub maximum: u32,
}

/// The default cap on one request's payload: 32 MiB, the spec's portable limit and nbdkit's.
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 * 1024 * 1024;

impl Default for BlockSizes {
    fn default() -> Self {
        Self {
            minimum: 1,
            preferred: 4096,
            maximum: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl BlockSizes {
    /// Whether these are the spec's default constraints for an export of `size` bytes (minimum
    /// 1, preferred 4096, maximum "effectively unlimited": 0xffffffff or the export size if
    /// smaller), which a client may assume without being told.
    pub fn are_default_for(&self, size: u64) -> bool {
        let unlimited = u32::try_from(size).unwrap_or(u32::MAX);
        self.minimum == 1 && self.preferred == 4096 && self.maximum >= unlimited
    }

    /// Checks the spec's rules for an advertised triple; `Err` names the rule broken.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !self.minimum.is_power_of_two() || self.minimum > 65_536 {
            return Err("minimum block size must be a power of two no larger than 64 KiB");
        }
        if !self.preferred.is_power_of_two() || self.preferred < self.minimum.max(512) {
            return Err("preferred block size must be a power of two, at least max(minimum, 512)");
        }
        if !self.maximum.is_multiple_of(self.minimum) || self.maximum < self.preferred {
            return Err(
                "maximum block size must be a multiple of the minimum and at least the preferred size",
            );
        }
        Ok(())
    }
}

/// Everything the handshake needs to know about one export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    /// Canonical name (what `NBD_OPT_LIST` shows and `NBD_INFO_NAME` returns).
    pub name: String,
    /// Free text for `NBD_INFO_DESCRIPTION`.
    pub description: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// What the backend can do.
    pub caps: Capabilities,
    /// Block size constraints.
    pub block: BlockSizes,
}

impl ExportInfo {
    /// The transmission flags for a connection in `mode`.
    pub fn transmission_flags(&self, mode: ReplyMode) -> u16 {
        let c = &self.caps;
        let mut f = TFLAG_HAS_FLAGS;
        let set = |f: &mut u16, cond: bool, bit: u16| {
            if cond {
                *f |= bit;
            }
        };
        set(&mut f, c.read_only, TFLAG_READ_ONLY);
        set(&mut f, c.flush, TFLAG_SEND_FLUSH | TFLAG_SEND_FUA);
        set(&mut f, c.rotational, TFLAG_ROTATIONAL);
        set(&mut f, c.trim && !c.read_only, TFLAG_SEND_TRIM);
        set(
            &mut f,
            c.write_zeroes && !c.read_only,
            TFLAG_SEND_WRITE_ZEROES,
        );
        set(
            &mut f,
            c.write_zeroes && c.fast_zero && !c.read_only,
            TFLAG_SEND_FAST_ZERO,
        );
        // We never fragment a read reply, so "don't fragment" is always honoured; the flag only
        // exists once chunks do.
        set(&mut f, mode >= ReplyMode::Structured, TFLAG_SEND_DF);
        set(&mut f, c.multi_conn, TFLAG_CAN_MULTI_CONN);
        set(&mut f, c.cache, TFLAG_SEND_CACHE);
        f
    }
}

/// The metadata context id we hand out for `base:allocation`.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// The outcome of a successful handshake: everything the request decoder checks against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Reply framing.
    pub mode: ReplyMode,
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags sent to the client.
    pub flags: u16,
    /// Block size constraints in force.
    pub block: BlockSizes,
    /// Context id of `base:allocation` if the client selected it for this export.
    pub base_allocation: Option<u32>,
}

impl Session {
    /// Whether a transmission flag was advertised.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Length of a request header in this session.
    pub fn request_header_len(&self) -> usize {
        if self.mode == ReplyMode::Extended {
            EXTENDED_REQUEST_HEADER_LEN
        } else {
            REQUEST_HEADER_LEN
        }
    }
}

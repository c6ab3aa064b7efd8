//! Wire constants of the NBD protocol (`doc/proto.md`, "Values", plus the extended-headers
//! extension that qemu 8.2+ and nbdkit 1.36+ speak). Every number here is quoted from the spec;
//! nothing else in the crate writes a magic or a flag bit by hand.

// ---- Magics ----------------------------------------------------------------------------------
/// `NBDMAGIC`, first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle greeting magic, and the magic of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Compact (28-byte) request header.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Extended (32-byte) request header.
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
/// Simple (16-byte) reply header.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Structured (20-byte) reply chunk header.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Extended (32-byte) reply chunk header.
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

// ---- Handshake flags (server, 16 bits) and client flags (32 bits) ---------------------------
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// ---- Option types ----------------------------------------------------------------------------
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_PEEK_EXPORT: u32 = 4;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// ---- Option reply types ----------------------------------------------------------------------
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_PLATFORM: u32 = REP_ERR | 4;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR | 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR | 8;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;
pub const REP_ERR_EXT_HEADER_REQD: u32 = REP_ERR | 10;

// ---- NBD_REP_INFO types ----------------------------------------------------------------------
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// ---- Transmission flags (16 bits) ------------------------------------------------------------
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_ROTATIONAL: u16 = 1 << 4;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_SEND_DF: u16 = 1 << 7;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TFLAG_SEND_RESIZE: u16 = 1 << 9;
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;
pub const TFLAG_BLOCK_STAT_PAYLOAD: u16 = 1 << 12;

// ---- Commands ------------------------------------------------------------------------------
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_RESIZE: u16 = 8;

// ---- Command flags ---------------------------------------------------------------------------
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
pub const CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

// ---- Structured / extended reply flags and types --------------------------------------------
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_BLOCK_STATUS_EXT: u16 = 6;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) | 2;

// ---- base:allocation status flags ------------------------------------------------------------
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context this server offers.
pub const BASE_ALLOCATION: &str = "base:allocation";

// ---- Sizes -----------------------------------------------------------------------------------
/// Server greeting: NBDMAGIC, IHAVEOPT, handshake flags.
pub const GREETING_LEN: usize = 18;
/// Option request header: IHAVEOPT, option, length.
pub const OPTION_HEADER_LEN: usize = 16;
/// Compact request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Extended request header.
pub const EXTENDED_REQUEST_HEADER_LEN: usize = 32;
/// Longest string the spec allows (export names, messages, context names).
pub const MAX_STRING_LEN: usize = 4096;

/// Error values of the transmission phase ("Error values"). Only these go on the wire; any
/// other errno a backend reports is mapped onto one of them (see [`Errno::from_os`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Errno {
    /// `NBD_EPERM`: write or trim on a read-only export.
    Perm = 1,
    /// `NBD_EIO`.
    Io = 5,
    /// `NBD_ENOMEM`.
    NoMem = 12,
    /// `NBD_EINVAL`: bad flags, unknown command, request past the end (read/trim/status).
    Inval = 22,
    /// `NBD_ENOSPC`: write past the end, or the backing store is full.
    NoSpc = 28,
    /// `NBD_EOVERFLOW`.
    Overflow = 75,
    /// `NBD_ENOTSUP`: a FAST_ZERO request that would not be fast.
    NotSup = 95,
    /// `NBD_ESHUTDOWN`: the server (or this export) is shutting down.
    Shutdown = 108,
}

impl Errno {
    /// The value on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a wire value; unknown values are `None`.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Perm,
            5 => Self::Io,
            12 => Self::NoMem,
            22 => Self::Inval,
            28 => Self::NoSpc,
            75 => Self::Overflow,
            95 => Self::NotSup,
            108 => Self::Shutdown,
            _ => return None,
        })
    }

    /// Maps an OS errno to the NBD error the spec says to use for it (EDQUOT and EFBIG become
    /// ENOSPC; EROFS and EACCES become EPERM; anything unknown is EIO).
    pub fn from_os(errno: i32) -> Self {
        match errno {
            1 | 13 | 30 => Self::Perm,    // EPERM, EACCES, EROFS
            12 => Self::NoMem,            // ENOMEM
            22 => Self::Inval,            // EINVAL
            27 | 28 | 122 => Self::NoSpc, // EFBIG, ENOSPC, EDQUOT
            75 => Self::Overflow,         // EOVERFLOW
            95 => Self::NotSup,           // EOPNOTSUPP / ENOTSUP
            108 => Self::Shutdown,        // ESHUTDOWN
            _ => Self::Io,
        }
    }

    /// Name as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Perm => "NBD_EPERM",
            Self::Io => "NBD_EIO",
            Self::NoMem => "NBD_ENOMEM",
            Self::Inval => "NBD_EINVAL",
            Self::NoSpc => "NBD_ENOSPC",
            Self::Overflow => "NBD_EOVERFLOW",
            Self::NotSup => "NBD_ENOTSUP",
            Self::Shutdown => "NBD_ESHUTDOWN",
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Human name of an option code, for log lines.
pub fn option_name(code: u32) -> &'static str {
    match code {
        OPT_EXPORT_NAME => "NBD_OPT_EXPORT_NAME",
        OPT_ABORT => "NBD_OPT_ABORT",
        OPT_LIST => "NBD_OPT_LIST",
        OPT_PEEK_EXPORT => "NBD_OPT_PEEK_EXPORT",
        OPT_STARTTLS => "NBD_OPT_STARTTLS",
        OPT_INFO => "NBD_OPT_INFO",
        OPT_GO => "NBD_OPT_GO",
        OPT_STRUCTURED_REPLY => "NBD_OPT_STRUCTURED_REPLY",
        OPT_LIST_META_CONTEXT => "NBD_OPT_LIST_META_CONTEXT",
        OPT_SET_META_CONTEXT => "NBD_OPT_SET_META_CONTEXT",
        OPT_EXTENDED_HEADERS => "NBD_OPT_EXTENDED_HEADERS",
        _ => "unknown option",
    }
}

/// Human name of a command code, for log lines.
pub fn command_name(code: u16) -> &'static str {
    match code {
        CMD_READ => "NBD_CMD_READ",
        CMD_WRITE => "NBD_CMD_WRITE",
        CMD_DISC => "NBD_CMD_DISC",
        CMD_FLUSH => "NBD_CMD_FLUSH",
        CMD_TRIM => "NBD_CMD_TRIM",
        CMD_CACHE => "NBD_CMD_CACHE",
        CMD_WRITE_ZEROES => "NBD_CMD_WRITE_ZEROES",
        CMD_BLOCK_STATUS => "NBD_CMD_BLOCK_STATUS",
        CMD_RESIZE => "NBD_CMD_RESIZE",
        _ => "unknown command",
    }
}

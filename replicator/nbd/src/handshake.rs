//! The fixed newstyle handshake, as pure code.
//!
//! The driver (the server's connection task, or a test, or the fuzz target) moves bytes; this
//! module decides. Its loop:
//!
//! ```text
//!   S: greeting()                                   NBDMAGIC IHAVEOPT flags
//!   C: 4 bytes   → parse_client_flags()             unknown bit → hard disconnect
//!   loop {
//!     C: 16 bytes → parse_option_header()           wrong magic / oversized → hard disconnect
//!     C: payload  → parse_option()                  → Result<ClientOption, OptionError>
//!     driver: option.need() → look the export up (async, outside this module)
//!     Negotiator::step(option, lookup) → Step       bytes to send, and what happens next
//!   }
//! ```
//!
//! Every option the spec defines is parsed here into a typed [`ClientOption`]; an option this
//! server does not know gets `NBD_REP_ERR_UNSUP` and haggling goes on, as the spec requires.

use crate::proto::*;
use crate::session::{BASE_ALLOCATION_ID, ExportInfo, ReplyMode, Session};
use crate::wire::Cursor;

/// Longest option payload we read. Real options are a few hundred bytes (an export name is at
/// most 4 KiB); a longer one is treated as a denial-of-service attempt and the connection is
/// dropped (the spec allows a hard disconnect there) rather than buffered.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;

/// Options one connection may send before entering transmission. Clients send fewer than ten;
/// past this bound the connection is dropped, so a client cannot haggle forever.
pub const MAX_OPTIONS: u32 = 1024;

/// Most queries one `NBD_OPT_*_META_CONTEXT` may carry; more gets `NBD_REP_ERR_TOO_BIG`.
pub const MAX_META_QUERIES: u32 = 128;

/// Handshake failures that end the connection without a reply (a hard disconnect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The client set a flag we did not advertise or do not know.
    #[error("client flags {0:#010x} carry unknown bits (only FIXED_NEWSTYLE and NO_ZEROES exist)")]
    UnknownClientFlags(u32),
    /// An option header did not start with IHAVEOPT.
    #[error("option header magic is {0:#018x}, expected IHAVEOPT (0x49484156454f5054)")]
    BadOptionMagic(u64),
    /// An option announced more data than we are willing to read.
    #[error("option {code} announces {len} bytes of data, more than the {max}-byte limit")]
    OptionTooLong { code: u32, len: u32, max: u32 },
}

/// The server greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags (fixed newstyle, no zeroes).
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    g[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    g
}

/// Flags the client answered the greeting with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientFlags {
    /// `NBD_FLAG_C_FIXED_NEWSTYLE`. We honour fixed newstyle even without it (the spec allows).
    pub fixed_newstyle: bool,
    /// `NBD_FLAG_C_NO_ZEROES`: no 124 zero bytes after an `NBD_OPT_EXPORT_NAME` reply.
    pub no_zeroes: bool,
}

/// Parses the client's 32-bit flags; any unknown bit is fatal (the spec says MUST drop).
pub fn parse_client_flags(raw: [u8; 4]) -> Result<ClientFlags, HandshakeError> {
    let v = u32::from_be_bytes(raw);
    if v & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::UnknownClientFlags(v));
    }
    Ok(ClientFlags {
        fixed_newstyle: v & FLAG_C_FIXED_NEWSTYLE != 0,
        no_zeroes: v & FLAG_C_NO_ZEROES != 0,
    })
}

/// An option request header: option code and payload length (already capped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    /// `NBD_OPT_*` code.
    pub code: u32,
    /// Payload length, ≤ [`MAX_OPTION_LEN`].
    pub len: u32,
}

/// Parses an option header, checking the magic and capping the length before anything is read.
pub fn parse_option_header(raw: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, HandshakeError> {
    let mut c = Cursor::new(raw);
    let (magic, code, len) = (c.u64(), c.u32(), c.u32());
    let (Some(magic), Some(code), Some(len)) = (magic, code, len) else {
        unreachable!("16 bytes hold a u64 and two u32")
    };
    if magic != IHAVEOPT {
        return Err(HandshakeError::BadOptionMagic(magic));
    }
    if len > MAX_OPTION_LEN {
        return Err(HandshakeError::OptionTooLong {
            code,
            len,
            max: MAX_OPTION_LEN,
        });
    }
    Ok(OptionHeader { code, len })
}

/// The data of `NBD_OPT_INFO` and `NBD_OPT_GO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoRequest {
    /// Export name ("" is the default export).
    pub name: String,
    /// Information requests (`NBD_INFO_*`), in the client's order.
    pub info: Vec<u16>,
}

/// The data of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRequest {
    /// Export the contexts are for.
    pub export: String,
    /// Queries such as `base:allocation` or `base:`.
    pub queries: Vec<String>,
}

/// A parsed, well-formed option request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOption {
    /// `NBD_OPT_EXPORT_NAME`: enter transmission, no error possible.
    ExportName(String),
    /// `NBD_OPT_ABORT`.
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_STARTTLS` (refused: this server does not do TLS; it listens on unix sockets and
    /// on loopback or a replication network).
    StartTls,
    /// `NBD_OPT_INFO`.
    Info(GoRequest),
    /// `NBD_OPT_GO`.
    Go(GoRequest),
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT`.
    ListMetaContext(MetaRequest),
    /// `NBD_OPT_SET_META_CONTEXT`.
    SetMetaContext(MetaRequest),
    /// `NBD_OPT_EXTENDED_HEADERS`.
    ExtendedHeaders,
    /// Any other code: answered with `NBD_REP_ERR_UNSUP`.
    Unknown(u32),
}

/// A syntactically invalid option: answered with `reply` (an `NBD_REP_ERR_*`) and `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionError {
    /// Option code the error answers.
    pub code: u32,
    /// `NBD_REP_ERR_INVALID` or `NBD_REP_ERR_TOO_BIG`.
    pub reply: u32,
    /// What was wrong, for the client and the log.
    pub message: String,
}

fn invalid(code: u32, message: impl Into<String>) -> OptionError {
    OptionError {
        code,
        reply: REP_ERR_INVALID,
        message: message.into(),
    }
}

fn read_string(
    c: &mut Cursor<'_>,
    len: usize,
    code: u32,
    what: &str,
) -> Result<String, OptionError> {
    if len > MAX_STRING_LEN {
        return Err(invalid(
            code,
            format!("{what} is {len} bytes, longer than the 4096-byte limit"),
        ));
    }
    let bytes = c.take(len).ok_or_else(|| {
        invalid(
            code,
            format!("{what} length {len} runs past the end of the option data"),
        )
    })?;
    let s = std::str::from_utf8(bytes)
        .map_err(|_| invalid(code, format!("{what} is not valid UTF-8")))?;
    if s.contains('\0') {
        return Err(invalid(code, format!("{what} contains a NUL character")));
    }
    Ok(s.to_owned())
}

fn parse_go(code: u32, payload: &[u8]) -> Result<GoRequest, OptionError> {
    let mut c = Cursor::new(payload);
    let name_len = c
        .u32()
        .ok_or_else(|| invalid(code, "option data shorter than the 4-byte name length"))?;
    let name_len = usize::try_from(name_len).unwrap_or(usize::MAX);
    if name_len.saturating_add(2) > c.remaining() {
        return Err(invalid(
            code,
            format!("name length {name_len} leaves no room for the information request count"),
        ));
    }
    let name = read_string(&mut c, name_len, code, "export name")?;
    let Some(n) = c.u16() else {
        unreachable!("room checked above")
    };
    let n = usize::from(n);
    if c.remaining() != 2 * n {
        return Err(invalid(
            code,
            format!(
                "{n} information requests need {} bytes but {} remain",
                2 * n,
                c.remaining()
            ),
        ));
    }
    let info = (0..n).map(|_| c.u16().unwrap_or_default()).collect();
    Ok(GoRequest { name, info })
}

fn parse_meta(code: u32, payload: &[u8]) -> Result<MetaRequest, OptionError> {
    let mut c = Cursor::new(payload);
    let name_len = c.u32().ok_or_else(|| {
        invalid(
            code,
            "option data shorter than the 4-byte export name length",
        )
    })?;
    let export = read_string(
        &mut c,
        usize::try_from(name_len).unwrap_or(usize::MAX),
        code,
        "export name",
    )?;
    let n = c
        .u32()
        .ok_or_else(|| invalid(code, "option data ends before the query count"))?;
    if n > MAX_META_QUERIES {
        return Err(OptionError {
            code,
            reply: REP_ERR_TOO_BIG,
            message: format!(
                "{n} metadata context queries, more than the {MAX_META_QUERIES} accepted"
            ),
        });
    }
    let mut queries = Vec::with_capacity(n as usize);
    for i in 0..n {
        let len = c.u32().ok_or_else(|| {
            invalid(
                code,
                format!("option data ends before the length of query {i}"),
            )
        })?;
        queries.push(read_string(
            &mut c,
            usize::try_from(len).unwrap_or(usize::MAX),
            code,
            "query",
        )?);
    }
    if c.remaining() != 0 {
        return Err(invalid(
            code,
            format!("{} bytes of trailing data after the queries", c.remaining()),
        ));
    }
    Ok(MetaRequest { export, queries })
}

fn expect_empty(code: u32, payload: &[u8]) -> Result<(), OptionError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            code,
            format!(
                "{} takes no data, got {} bytes",
                option_name(code),
                payload.len()
            ),
        ))
    }
}

/// Parses one option's payload into a typed value, checking every length against the data.
pub fn parse_option(header: OptionHeader, payload: &[u8]) -> Result<ClientOption, OptionError> {
    let code = header.code;
    debug_assert_eq!(payload.len(), header.len as usize);
    Ok(match code {
        OPT_EXPORT_NAME => {
            let mut c = Cursor::new(payload);
            ClientOption::ExportName(read_string(&mut c, payload.len(), code, "export name")?)
        }
        // The spec asks servers to ignore data sent with ABORT.
        OPT_ABORT => ClientOption::Abort,
        OPT_LIST => {
            expect_empty(code, payload)?;
            ClientOption::List
        }
        OPT_STARTTLS => {
            expect_empty(code, payload)?;
            ClientOption::StartTls
        }
        OPT_INFO => ClientOption::Info(parse_go(code, payload)?),
        OPT_GO => ClientOption::Go(parse_go(code, payload)?),
        OPT_STRUCTURED_REPLY => {
            expect_empty(code, payload)?;
            ClientOption::StructuredReply
        }
        OPT_LIST_META_CONTEXT => ClientOption::ListMetaContext(parse_meta(code, payload)?),
        OPT_SET_META_CONTEXT => ClientOption::SetMetaContext(parse_meta(code, payload)?),
        OPT_EXTENDED_HEADERS => {
            expect_empty(code, payload)?;
            ClientOption::ExtendedHeaders
        }
        other => ClientOption::Unknown(other),
    })
}

/// What the driver must look up before [`Negotiator::step`] can answer an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Nothing: answer right away.
    Nothing,
    /// The export of that name.
    Export(&'a str),
    /// The list of exports.
    List,
}

impl ClientOption {
    /// What this option needs looked up.
    pub fn need(&self) -> Need<'_> {
        match self {
            Self::ExportName(n) => Need::Export(n),
            Self::Info(g) | Self::Go(g) => Need::Export(&g.name),
            Self::ListMetaContext(m) | Self::SetMetaContext(m) => Need::Export(&m.export),
            Self::List => Need::List,
            _ => Need::Nothing,
        }
    }
}

/// Why an export lookup refused a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// No such export (`NBD_REP_ERR_UNKNOWN`).
    Unknown,
    /// It exists but is not served now, e.g. the resource is Secondary (`NBD_REP_ERR_POLICY`).
    Policy,
    /// The server or export is shutting down (`NBD_REP_ERR_SHUTDOWN`).
    Shutdown,
}

/// A refusal from the export lookup, with a message for the client's user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Which error reply to send.
    pub kind: RefusalKind,
    /// Message shown to the user (nbdinfo and qemu print it).
    pub message: String,
}

impl Refusal {
    /// `NBD_REP_ERR_UNKNOWN` with a message.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Unknown,
            message: message.into(),
        }
    }

    /// `NBD_REP_ERR_POLICY` with a message.
    pub fn policy(message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Policy,
            message: message.into(),
        }
    }

    fn reply_type(&self) -> u32 {
        match self.kind {
            RefusalKind::Unknown => REP_ERR_UNKNOWN,
            RefusalKind::Policy => REP_ERR_POLICY,
            RefusalKind::Shutdown => REP_ERR_SHUTDOWN,
        }
    }
}

/// One line of an `NBD_OPT_LIST` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportListing {
    /// Export name.
    pub name: String,
    /// Optional description (sent after the name, as the spec allows).
    pub description: Option<String>,
}

/// The result of the lookup [`ClientOption::need`] asked for.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Nothing was needed.
    None,
    /// The export, or why not.
    Export(Result<ExportInfo, Refusal>),
    /// The export list.
    List(Vec<ExportListing>),
}

/// What the driver does after an option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and read the next option.
    Reply(Vec<u8>),
    /// Send these bytes (the `NBD_OPT_ABORT` acknowledgement) and close.
    Abort(Vec<u8>),
    /// Send these bytes and enter transmission on `export` with `session`.
    Transmission {
        /// Final handshake bytes.
        reply: Vec<u8>,
        /// The negotiated session.
        session: Session,
        /// Name the client asked for (the lookup key).
        export: String,
    },
    /// Close without sending anything (a hard disconnect), for the reason given.
    Disconnect(String),
}

/// Appends one option reply to `out`.
pub fn push_option_reply(out: &mut Vec<u8>, code: u32, reply_type: u32, data: &[u8]) {
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    let len = u32::try_from(data.len()).expect("option replies are built from bounded strings");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

fn error_reply(code: u32, reply_type: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let msg = truncate_str(message, MAX_STRING_LEN);
    push_option_reply(&mut out, code, reply_type, msg.as_bytes());
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Server-side policy for the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiatorConfig {
    /// Accept `NBD_OPT_EXTENDED_HEADERS` (otherwise `NBD_REP_ERR_UNSUP`, and qemu falls back to
    /// structured replies).
    pub extended_headers: bool,
}

impl Default for NegotiatorConfig {
    fn default() -> Self {
        Self {
            extended_headers: true,
        }
    }
}

/// Which contexts a `SET_META_CONTEXT` selected, and for which export.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MetaSelection {
    export: String,
    base_allocation: bool,
}

/// The handshake state of one connection after the client flags.
#[derive(Clone, Debug)]
pub struct Negotiator {
    config: NegotiatorConfig,
    client: ClientFlags,
    mode: ReplyMode,
    meta: Option<MetaSelection>,
    options: u32,
}

impl Negotiator {
    /// Starts option haggling for a client that sent `client` flags.
    pub fn new(config: NegotiatorConfig, client: ClientFlags) -> Self {
        Self {
            config,
            client,
            mode: ReplyMode::Simple,
            meta: None,
            options: 0,
        }
    }

    /// The reply framing negotiated so far.
    pub fn mode(&self) -> ReplyMode {
        self.mode
    }

    /// The answer to any option but ABORT while the server shuts down.
    pub fn shutting_down(code: u32) -> Step {
        if code == OPT_ABORT {
            let mut out = Vec::new();
            push_option_reply(&mut out, code, REP_ACK, &[]);
            return Step::Abort(out);
        }
        if code == OPT_EXPORT_NAME {
            return Step::Disconnect("NBD_OPT_EXPORT_NAME while the server shuts down".into());
        }
        Step::Reply(error_reply(
            code,
            REP_ERR_SHUTDOWN,
            "the server is shutting down",
        ))
    }

    /// Answers one option. `option` is what [`parse_option`] returned for an option with
    /// `code`; `lookup` is what [`ClientOption::need`] asked for.
    pub fn step(
        &mut self,
        code: u32,
        option: Result<ClientOption, OptionError>,
        lookup: Lookup,
    ) -> Step {
        self.options += 1;
        if self.options > MAX_OPTIONS {
            return Step::Disconnect(format!(
                "more than {MAX_OPTIONS} options during the handshake"
            ));
        }
        let option = match option {
            Ok(o) => o,
            Err(e) if code == OPT_EXPORT_NAME => {
                // EXPORT_NAME cannot carry an error reply: the spec mandates a hard disconnect.
                return Step::Disconnect(format!("invalid NBD_OPT_EXPORT_NAME: {}", e.message));
            }
            Err(e) => return Step::Reply(error_reply(code, e.reply, &e.message)),
        };
        match option {
            ClientOption::ExportName(name) => self.export_name(name, lookup),
            ClientOption::Abort => {
                let mut out = Vec::new();
                push_option_reply(&mut out, code, REP_ACK, &[]);
                Step::Abort(out)
            }
            ClientOption::List => {
                let Lookup::List(list) = lookup else {
                    panic!("NBD_OPT_LIST needs Lookup::List")
                };
                let mut out = Vec::new();
                for e in &list {
                    let name = truncate_str(&e.name, MAX_STRING_LEN);
                    let mut data = Vec::with_capacity(4 + name.len());
                    data.extend_from_slice(
                        &u32::try_from(name.len())
                            .expect("≤ 4096 bytes")
                            .to_be_bytes(),
                    );
                    data.extend_from_slice(name.as_bytes());
                    if let Some(d) = &e.description {
                        data.extend_from_slice(truncate_str(d, MAX_STRING_LEN).as_bytes());
                    }
                    push_option_reply(&mut out, code, REP_SERVER, &data);
                }
                push_option_reply(&mut out, code, REP_ACK, &[]);
                Step::Reply(out)
            }
            ClientOption::StartTls => Step::Reply(error_reply(
                code,
                REP_ERR_UNSUP,
                "TLS is not supported by this server",
            )),
            ClientOption::StructuredReply => {
                if self.mode == ReplyMode::Extended {
                    return Step::Reply(error_reply(
                        code,
                        REP_ERR_EXT_HEADER_REQD,
                        "extended headers are already negotiated and take precedence",
                    ));
                }
                self.mode = ReplyMode::Structured;
                let mut out = Vec::new();
                push_option_reply(&mut out, code, REP_ACK, &[]);
                Step::Reply(out)
            }
            ClientOption::ExtendedHeaders => {
                if !self.config.extended_headers {
                    return Step::Reply(error_reply(
                        code,
                        REP_ERR_UNSUP,
                        "extended headers are disabled on this server",
                    ));
                }
                self.mode = ReplyMode::Extended;
                let mut out = Vec::new();
                push_option_reply(&mut out, code, REP_ACK, &[]);
                Step::Reply(out)
            }
            ClientOption::Info(go) => self.info_or_go(code, go, lookup, false),
            ClientOption::Go(go) => self.info_or_go(code, go, lookup, true),
            ClientOption::ListMetaContext(m) => self.meta_context(code, m, lookup, false),
            ClientOption::SetMetaContext(m) => self.meta_context(code, m, lookup, true),
            ClientOption::Unknown(c) => Step::Reply(error_reply(
                c,
                REP_ERR_UNSUP,
                &format!("option {c} is not supported by this server"),
            )),
        }
    }

    fn session_for(&self, requested: &str, info: &ExportInfo) -> Session {
        let base_allocation = match &self.meta {
            Some(m) if m.base_allocation && m.export == requested && info.caps.block_status => {
                Some(BASE_ALLOCATION_ID)
            }
            _ => None,
        };
        Session {
            mode: self.mode,
            size: info.size,
            flags: info.transmission_flags(self.mode),
            block: info.block,
            base_allocation,
        }
    }

    fn export_name(&mut self, name: String, lookup: Lookup) -> Step {
        if self.mode == ReplyMode::Extended {
            return Step::Disconnect(
                "NBD_OPT_EXPORT_NAME after extended headers were negotiated".into(),
            );
        }
        let Lookup::Export(found) = lookup else {
            panic!("NBD_OPT_EXPORT_NAME needs Lookup::Export")
        };
        let info = match found {
            Ok(i) => i,
            Err(r) => {
                return Step::Disconnect(format!(
                    "NBD_OPT_EXPORT_NAME {name:?} refused: {}",
                    r.message
                ));
            }
        };
        let session = self.session_for(&name, &info);
        let mut out = Vec::with_capacity(134);
        out.extend_from_slice(&info.size.to_be_bytes());
        out.extend_from_slice(&session.flags.to_be_bytes());
        if !self.client.no_zeroes {
            out.extend_from_slice(&[0u8; 124]);
        }
        Step::Transmission {
            reply: out,
            session,
            export: name,
        }
    }

    fn info_or_go(&mut self, code: u32, go: GoRequest, lookup: Lookup, enter: bool) -> Step {
        let Lookup::Export(found) = lookup else {
            panic!("NBD_OPT_INFO/GO needs Lookup::Export")
        };
        let info = match found {
            Ok(i) => i,
            Err(r) => return Step::Reply(error_reply(code, r.reply_type(), &r.message)),
        };
        let session = self.session_for(&go.name, &info);
        let mut out = Vec::new();
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        data.extend_from_slice(&info.size.to_be_bytes());
        data.extend_from_slice(&session.flags.to_be_bytes());
        push_option_reply(&mut out, code, REP_INFO, &data);
        let mut sent = vec![INFO_EXPORT];
        for &req in &go.info {
            if sent.contains(&req) {
                continue;
            }
            let mut data = req.to_be_bytes().to_vec();
            match req {
                INFO_NAME => {
                    data.extend_from_slice(truncate_str(&info.name, MAX_STRING_LEN).as_bytes())
                }
                INFO_DESCRIPTION => match &info.description {
                    Some(d) => data.extend_from_slice(truncate_str(d, MAX_STRING_LEN).as_bytes()),
                    None => continue,
                },
                INFO_BLOCK_SIZE => {
                    data.extend_from_slice(&info.block.minimum.to_be_bytes());
                    data.extend_from_slice(&info.block.preferred.to_be_bytes());
                    data.extend_from_slice(&info.block.maximum.to_be_bytes());
                }
                _ => continue, // the spec: ignore information requests we do not understand
            }
            sent.push(req);
            push_option_reply(&mut out, code, REP_INFO, &data);
        }
        // The spec ("Block size constraints"): a server whose constraints differ from the
        // defaults MUST advertise them in reply to INFO/GO, requested or not; ours cap a READ
        // or WRITE at 32 MiB where the default maximum is unlimited.
        if !sent.contains(&INFO_BLOCK_SIZE) && !info.block.are_default_for(info.size) {
            let mut data = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
            data.extend_from_slice(&info.block.minimum.to_be_bytes());
            data.extend_from_slice(&info.block.preferred.to_be_bytes());
            data.extend_from_slice(&info.block.maximum.to_be_bytes());
            push_option_reply(&mut out, code, REP_INFO, &data);
        }
        push_option_reply(&mut out, code, REP_ACK, &[]);
        if enter {
            Step::Transmission {
                reply: out,
                session,
                export: go.name,
            }
        } else {
            Step::Reply(out)
        }
    }

    fn meta_context(&mut self, code: u32, m: MetaRequest, lookup: Lookup, set: bool) -> Step {
        if set {
            // The spec: SET replaces the selection, even when it then fails.
            self.meta = None;
        }
        if self.mode == ReplyMode::Simple {
            return Step::Reply(error_reply(
                code,
                REP_ERR_INVALID,
                "metadata contexts need NBD_OPT_STRUCTURED_REPLY (or extended headers) first",
            ));
        }
        let Lookup::Export(found) = lookup else {
            panic!("meta context options need Lookup::Export")
        };
        let info = match found {
            Ok(i) => i,
            Err(r) => return Step::Reply(error_reply(code, r.reply_type(), &r.message)),
        };
        for q in &m.queries {
            if !q.contains(':') {
                return Step::Reply(error_reply(
                    code,
                    REP_ERR_INVALID,
                    &format!("query {q:?} lacks the namespace colon"),
                ));
            }
        }
        let offered = info.caps.block_status;
        let matches = if set {
            // SET: only the exact name selects; "base:" and unknown leaves are ignored.
            offered && m.queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            // LIST: no query lists everything; "base:" is a wildcard over our namespace.
            offered
                && (m.queries.is_empty()
                    || m.queries
                        .iter()
                        .any(|q| q == "base:" || q == BASE_ALLOCATION))
        };
        let mut out = Vec::new();
        if matches {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut data = id.to_be_bytes().to_vec();
            data.extend_from_slice(BASE_ALLOCATION.as_bytes());
            push_option_reply(&mut out, code, REP_META_CONTEXT, &data);
        }
        push_option_reply(&mut out, code, REP_ACK, &[]);
        if set {
            self.meta = Some(MetaSelection {
                export: m.export,
                base_allocation: matches,
            });
        }
        Step::Reply(out)
    }
}

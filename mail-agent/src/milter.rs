//! A milter client (the MTA side of the Sendmail milter protocol, version 6), enough to check
//! from the monitor that each milter answers and that OpenDKIM really signs: the monitor talks
//! to the milter the way Postfix does and looks for the `DKIM-Signature` header it adds.
//!
//! The codec ([`encode`], [`Decoder`]) is pure; [`Session`] drives it over a unix socket with
//! a deadline on every read and write.
//!
//! Packets are `u32` big-endian length (of command byte + data), one command byte, data.
//! Numbers in the protocol are big-endian `u32`; strings are NUL-terminated.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Protocol version we speak (Postfix speaks 6).
pub const VERSION: u32 = 6;
/// Largest packet accepted from a milter; a longer length is a protocol error (libmilter's
/// own limit is about 64 KiB for most packets; headers a milter adds are far smaller).
pub const MAX_PACKET: usize = 1 << 20;

/// Commands (MTA → milter).
pub mod cmd {
    /// Abort the current message.
    pub const ABORT: u8 = b'A';
    /// Body chunk.
    pub const BODY: u8 = b'B';
    /// Connection information.
    pub const CONNECT: u8 = b'C';
    /// Macros for the next command.
    pub const MACRO: u8 = b'D';
    /// End of body.
    pub const BODYEOB: u8 = b'E';
    /// HELO/EHLO.
    pub const HELO: u8 = b'H';
    /// One header.
    pub const HEADER: u8 = b'L';
    /// MAIL FROM.
    pub const MAIL: u8 = b'M';
    /// End of headers.
    pub const EOH: u8 = b'N';
    /// Option negotiation.
    pub const OPTNEG: u8 = b'O';
    /// Quit.
    pub const QUIT: u8 = b'Q';
    /// RCPT TO.
    pub const RCPT: u8 = b'R';
    /// DATA.
    pub const DATA: u8 = b'T';
}

/// Protocol flags the milter may set in its OPTNEG reply (SMFIP_*).
pub mod proto {
    /// Do not send connect.
    pub const NOCONNECT: u32 = 0x1;
    /// Do not send HELO.
    pub const NOHELO: u32 = 0x2;
    /// Do not send MAIL.
    pub const NOMAIL: u32 = 0x4;
    /// Do not send RCPT.
    pub const NORCPT: u32 = 0x8;
    /// Do not send the body.
    pub const NOBODY: u32 = 0x10;
    /// Do not send headers.
    pub const NOHDRS: u32 = 0x20;
    /// Do not send end of headers.
    pub const NOEOH: u32 = 0x40;
    /// No reply to headers.
    pub const NR_HDR: u32 = 0x80;
    /// Do not send DATA.
    pub const NODATA: u32 = 0x200;
    /// No reply to connect.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x10000;
    /// No reply to end of headers.
    pub const NR_EOH: u32 = 0x40000;
    /// No reply to body chunks.
    pub const NR_BODY: u32 = 0x80000;
    /// Every step and no-reply flag we handle (offered in our OPTNEG).
    pub const ALL_WE_HANDLE: u32 = 0x1F_FFFF;
}

/// Every action we accept from a milter (SMFIF_*): add/change headers, body, recipients...
pub const ALL_ACTIONS: u32 = 0x1FF;

/// Encodes one packet.
pub fn encode(command: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).expect("milter packets we send are small");
    let mut v = Vec::with_capacity(data.len() + 5);
    v.extend_from_slice(&len.to_be_bytes());
    v.push(command);
    v.extend_from_slice(data);
    v
}

/// NUL-terminated strings, concatenated.
pub fn strings(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// A reply from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// OPTNEG: version, actions, protocol flags.
    OptNeg {
        /// Milter protocol version.
        version: u32,
        /// Actions it may take.
        actions: u32,
        /// Steps it skips / does not answer.
        protocol: u32,
    },
    /// Go on.
    Continue,
    /// Accept the message; no more callbacks.
    Accept,
    /// Reject.
    Reject,
    /// Temporary failure.
    Tempfail,
    /// Discard silently.
    Discard,
    /// An SMTP reply, e.g. `550 5.7.1 ...`.
    ReplyCode(String),
    /// Still working.
    Progress,
    /// Add a header at the end.
    AddHeader {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Insert a header at an index.
    InsHeader {
        /// Position.
        index: u32,
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Another modification (change header, body, recipients...), by its command byte.
    Modification(u8),
}

impl Reply {
    /// Whether this reply ends the exchange for the current command.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Reply::OptNeg { .. }
                | Reply::Continue
                | Reply::Accept
                | Reply::Reject
                | Reply::Tempfail
                | Reply::Discard
                | Reply::ReplyCode(_)
        )
    }
}

/// Why a reply could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Length 0 or above [`MAX_PACKET`].
    #[error("milter packet length {0} is out of range")]
    Length(usize),
    /// A known command with a malformed payload.
    #[error("malformed milter reply {0:?}")]
    Malformed(char),
    /// A command byte we do not know.
    #[error("unknown milter reply {0:?}")]
    Unknown(char),
}

/// The NUL-terminated strings in `data` (an unterminated tail is dropped).
fn nul_strings(data: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = data
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.pop();
    v
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Decodes one packet's command and data into a [`Reply`].
pub fn decode(command: u8, data: &[u8]) -> Result<Reply, DecodeError> {
    let bad = || DecodeError::Malformed(command as char);
    Ok(match command {
        b'O' => Reply::OptNeg {
            version: be32(data).ok_or_else(bad)?,
            actions: be32(data.get(4..).ok_or_else(bad)?).ok_or_else(bad)?,
            protocol: be32(data.get(8..).ok_or_else(bad)?).ok_or_else(bad)?,
        },
        b'c' => Reply::Continue,
        b'a' => Reply::Accept,
        b'r' => Reply::Reject,
        b't' => Reply::Tempfail,
        b'd' => Reply::Discard,
        b'p' => Reply::Progress,
        b'y' => Reply::ReplyCode(nul_strings(data).into_iter().next().unwrap_or_default()),
        b'h' => {
            let s = nul_strings(data);
            if s.len() < 2 {
                return Err(bad());
            }
            Reply::AddHeader {
                name: s[0].clone(),
                value: s[1].clone(),
            }
        }
        b'i' => {
            let index = be32(data).ok_or_else(bad)?;
            let s = nul_strings(&data[4..]);
            if s.len() < 2 {
                return Err(bad());
            }
            Reply::InsHeader {
                index,
                name: s[0].clone(),
                value: s[1].clone(),
            }
        }
        b'+' | b'-' | b'2' | b'b' | b'e' | b'm' | b'q' | b'l' | b's' | b'f' | b'4' => {
            Reply::Modification(command)
        }
        other => return Err(DecodeError::Unknown(other as char)),
    })
}

/// Splits a byte stream into packets.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete packet's reply, if one is buffered.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, DecodeError> {
        let Some(len) = be32(&self.buf) else {
            return Ok(None);
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_PACKET {
            return Err(DecodeError::Length(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let packet: Vec<u8> = self.buf.drain(..4 + len).collect();
        decode(packet[4], &packet[5..]).map(Some)
    }
}

/// Errors of a milter session.
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    /// I/O (including a timeout).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A malformed reply.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The milter closed the connection.
    #[error("the milter closed the connection")]
    Closed,
    /// An unexpected reply.
    #[error("unexpected reply: {0:?}")]
    Unexpected(Reply),
}

/// A connection to a milter, negotiated.
#[derive(Debug)]
pub struct Session {
    stream: UnixStream,
    dec: Decoder,
    /// What the milter negotiated.
    pub protocol: u32,
}

/// The result of sending a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The final reply to end-of-body (or to an earlier step that ended the exchange).
    pub last: Reply,
    /// Headers the milter added or inserted (name, value).
    pub added_headers: Vec<(String, String)>,
}

/// A message for [`Session::send_message`].
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The name this MTA calls itself (`j` macro).
    pub mta_name: &'a str,
    /// Client address (connect).
    pub client_addr: &'a str,
    /// HELO name.
    pub helo: &'a str,
    /// Envelope sender, without brackets.
    pub from: &'a str,
    /// Envelope recipient.
    pub rcpt: &'a str,
    /// Queue id (`i` macro).
    pub queue_id: &'a str,
    /// Headers.
    pub headers: Vec<(&'a str, String)>,
    /// Body, CRLF line endings.
    pub body: &'a str,
}

impl Session {
    /// Connects to `socket` and negotiates; every I/O is bounded by `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Session, MilterError> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut s = Session {
            stream,
            dec: Decoder::default(),
            protocol: 0,
        };
        let mut data = Vec::new();
        data.extend_from_slice(&VERSION.to_be_bytes());
        data.extend_from_slice(&ALL_ACTIONS.to_be_bytes());
        data.extend_from_slice(&proto::ALL_WE_HANDLE.to_be_bytes());
        s.send(cmd::OPTNEG, &data)?;
        match s.read_final()?.0 {
            Reply::OptNeg { protocol, .. } => s.protocol = protocol,
            other => return Err(MilterError::Unexpected(other)),
        }
        Ok(s)
    }

    fn send(&mut self, command: u8, data: &[u8]) -> Result<(), MilterError> {
        self.stream.write_all(&encode(command, data))?;
        Ok(())
    }

    fn read_reply(&mut self) -> Result<Reply, MilterError> {
        loop {
            if let Some(r) = self.dec.next_reply()? {
                return Ok(r);
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(MilterError::Closed);
            }
            self.dec.push(&buf[..n]);
        }
    }

    /// Reads replies up to a final one, collecting added headers.
    fn read_final(&mut self) -> Result<(Reply, Vec<(String, String)>), MilterError> {
        let mut added = Vec::new();
        loop {
            match self.read_reply()? {
                Reply::Progress => continue,
                Reply::AddHeader { name, value } | Reply::InsHeader { name, value, .. } => {
                    added.push((name, value))
                }
                Reply::Modification(_) => continue,
                r => return Ok((r, added)),
            }
        }
    }

    /// Sends a step and, unless the milter said it does not reply to it, reads the reply.
    /// Returns `Some(final reply)` when the milter ended the exchange early.
    fn step(
        &mut self,
        command: u8,
        data: &[u8],
        skip: u32,
        no_reply: u32,
    ) -> Result<Option<Reply>, MilterError> {
        if self.protocol & skip != 0 {
            return Ok(None);
        }
        self.send(command, data)?;
        if self.protocol & no_reply != 0 {
            return Ok(None);
        }
        let (r, _) = self.read_final()?;
        Ok(match r {
            Reply::Continue => None,
            other => Some(other),
        })
    }

    fn macros(&mut self, for_cmd: u8, pairs: &[(&str, &str)]) -> Result<(), MilterError> {
        let mut data = vec![for_cmd];
        for (k, v) in pairs {
            data.extend_from_slice(&strings(&[k, v]));
        }
        self.send(cmd::MACRO, &data)
    }

    /// Sends one whole message the way Postfix does and returns the milter's verdict.
    pub fn send_message(&mut self, m: &Message<'_>) -> Result<Verdict, MilterError> {
        let done = |last: Reply| {
            Ok(Verdict {
                last,
                added_headers: Vec::new(),
            })
        };
        self.macros(
            cmd::CONNECT,
            &[
                ("j", m.mta_name),
                ("{daemon_name}", "tandem-monitor"),
                ("_", "localhost"),
            ],
        )?;
        let mut connect = strings(&["localhost"]);
        connect.push(b'4');
        connect.extend_from_slice(&0u16.to_be_bytes());
        connect.extend_from_slice(&strings(&[m.client_addr]));
        if let Some(r) = self.step(cmd::CONNECT, &connect, proto::NOCONNECT, proto::NR_CONN)? {
            return done(r);
        }
        if let Some(r) = self.step(
            cmd::HELO,
            &strings(&[m.helo]),
            proto::NOHELO,
            proto::NR_HELO,
        )? {
            return done(r);
        }
        let from = format!("<{}>", m.from);
        self.macros(cmd::MAIL, &[("i", m.queue_id), ("{mail_addr}", m.from)])?;
        if let Some(r) = self.step(cmd::MAIL, &strings(&[&from]), proto::NOMAIL, proto::NR_MAIL)? {
            return done(r);
        }
        let rcpt = format!("<{}>", m.rcpt);
        self.macros(cmd::RCPT, &[("{rcpt_addr}", m.rcpt)])?;
        if let Some(r) = self.step(cmd::RCPT, &strings(&[&rcpt]), proto::NORCPT, proto::NR_RCPT)? {
            return done(r);
        }
        if let Some(r) = self.step(cmd::DATA, &[], proto::NODATA, proto::NR_DATA)? {
            return done(r);
        }
        for (name, value) in &m.headers {
            if let Some(r) = self.step(
                cmd::HEADER,
                &strings(&[name, value]),
                proto::NOHDRS,
                proto::NR_HDR,
            )? {
                return done(r);
            }
        }
        if let Some(r) = self.step(cmd::EOH, &[], proto::NOEOH, proto::NR_EOH)? {
            return done(r);
        }
        if let Some(r) = self.step(cmd::BODY, m.body.as_bytes(), proto::NOBODY, proto::NR_BODY)? {
            return done(r);
        }
        self.macros(cmd::BODYEOB, &[("i", m.queue_id)])?;
        self.send(cmd::BODYEOB, &[])?;
        let (last, added_headers) = self.read_final()?;
        Ok(Verdict {
            last,
            added_headers,
        })
    }

    /// Ends the session.
    pub fn quit(mut self) {
        let _ = self.send(cmd::QUIT, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_length_command_and_data() {
        assert_eq!(encode(b'Q', &[]), vec![0, 0, 0, 1, b'Q']);
        assert_eq!(
            encode(b'H', &strings(&["x"])),
            vec![0, 0, 0, 3, b'H', b'x', 0]
        );
    }

    #[test]
    fn decodes_replies_split_across_reads() {
        let mut d = Decoder::default();
        let mut bytes = encode(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x10, 0, 0]);
        bytes.extend(encode(b'p', &[]));
        let mut ins = vec![0, 0, 0, 0];
        ins.extend(strings(&["DKIM-Signature", "v=1; d=example.com"]));
        bytes.extend(encode(b'i', &ins));
        bytes.extend(encode(b'a', &[]));
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            d.push(chunk);
            while let Some(r) = d.next_reply().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(
            got,
            vec![
                Reply::OptNeg {
                    version: 6,
                    actions: 0x1ff,
                    protocol: 0x10_0000
                },
                Reply::Progress,
                Reply::InsHeader {
                    index: 0,
                    name: "DKIM-Signature".into(),
                    value: "v=1; d=example.com".into()
                },
                Reply::Accept,
            ]
        );
    }

    #[test]
    fn refuses_bad_packets() {
        let mut d = Decoder::default();
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_reply(), Err(DecodeError::Length(0)));
        let mut d = Decoder::default();
        d.push(&[0x7f, 0, 0, 0, b'c']);
        assert!(matches!(d.next_reply(), Err(DecodeError::Length(_))));
        assert_eq!(decode(b'O', &[0, 0]), Err(DecodeError::Malformed('O')));
        assert_eq!(
            decode(b'h', &strings(&["only-name"])),
            Err(DecodeError::Malformed('h'))
        );
        assert_eq!(decode(b'Z', &[]), Err(DecodeError::Unknown('Z')));
        assert_eq!(
            decode(b'y', &strings(&["550 5.7.1 no"])),
            Ok(Reply::ReplyCode("550 5.7.1 no".into()))
        );
    }

    proptest::proptest! {
        /// The decoder never panics on arbitrary bytes, and never yields a packet it did not
        /// receive in full.
        #[test]
        fn decoder_survives_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut d = Decoder::default();
            d.push(&bytes);
            for _ in 0..50 {
                match d.next_reply() {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

//! The attachment filter: a milter Postfix calls for every message it receives over SMTP
//! (first in `smtpd_milters`), which refuses at the end of DATA — so the sender sees why — a
//! message carrying an attachment whose *decoded* name has a blocked extension (Zimbra's 27 by
//! default; [`crate::mime`] does the decoding). Postfix's `mime_header_checks` sees only the
//! raw header and was evaded by any encoded file name.
//!
//! [`Conn`] is the protocol, pure: packets in, replies out. [`run`] is the thin driver: a unix
//! socket, one thread per Postfix connection (at most [`MAX_CONNECTIONS`]), privileges dropped
//! to Postfix's user once the socket exists.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::milter::{MAX_PACKET, VERSION, cmd};
use crate::mime::{Scanner, Verdict};

/// Connections served at once. Postfix holds one per smtpd process (100 by default); above
/// the bound a connection is closed at once and Postfix applies `milter_default_action`
/// (tempfail: the sender retries later), so nothing passes unchecked.
pub const MAX_CONNECTIONS: usize = 128;

/// A connection silent this long is closed (Postfix's own milter timeouts are shorter; this
/// only reaps connections whose smtpd went away without a word).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the filter enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Blocked extensions, lower case, without dots.
    pub blocked: Vec<String>,
    /// Named in the refusal ("the mail policy of DOMAIN").
    pub domain: String,
}

/// What to do after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (one reply packet).
    Reply(Vec<u8>),
    /// Nothing to send (macros, abort).
    Nothing,
    /// Close the connection (quit, or a command we do not know: Postfix then applies its
    /// default action, tempfail).
    Close,
}

fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    crate::milter::encode(command, data)
}

fn cont() -> Action {
    Action::Reply(packet(b'c', &[]))
}

/// One Postfix connection's protocol state.
#[derive(Debug)]
pub struct Conn {
    policy: Arc<Policy>,
    scanner: Option<Scanner>,
}

/// Text safe inside an SMTP reply: printable ASCII, no quotes, at most `max` characters.
fn reply_safe(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

/// The SMTP reply for a verdict, or `None` to let the message pass.
pub fn refusal(v: &Verdict, domain: &str) -> Option<String> {
    match v {
        Verdict::Clean => None,
        Verdict::Blocked { name, extension } => Some(format!(
            "550 5.7.1 Attachment \"{}\" refused: files of this type (.{}) are blocked by the mail policy of {domain}",
            reply_safe(name, 100),
            reply_safe(extension, 16)
        )),
        Verdict::Unverifiable(why) => Some(format!(
            "550 5.7.1 Message refused: its attachments cannot be checked ({})",
            reply_safe(why, 100)
        )),
    }
}

fn nul_fields(data: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = data
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if data.last() == Some(&0) {
        v.pop();
    }
    v
}

impl Conn {
    /// A connection enforcing `policy`.
    pub fn new(policy: Arc<Policy>) -> Conn {
        Conn {
            policy,
            scanner: None,
        }
    }

    fn scanner(&mut self) -> &mut Scanner {
        let blocked = &self.policy.blocked;
        self.scanner.get_or_insert_with(|| Scanner::new(blocked))
    }

    /// Handles one packet from Postfix.
    pub fn handle(&mut self, command: u8, data: &[u8]) -> Action {
        match command {
            cmd::OPTNEG => {
                // Version 6, no modifications, every step sent and answered.
                let mut d = Vec::with_capacity(12);
                d.extend_from_slice(&VERSION.to_be_bytes());
                d.extend_from_slice(&0u32.to_be_bytes());
                d.extend_from_slice(&0u32.to_be_bytes());
                Action::Reply(packet(cmd::OPTNEG, &d))
            }
            cmd::MACRO => Action::Nothing,
            cmd::MAIL => {
                self.scanner = None;
                cont()
            }
            cmd::CONNECT | cmd::HELO | cmd::RCPT | cmd::DATA | b'U' => cont(),
            cmd::HEADER => {
                let f = nul_fields(data);
                let (name, value) = (
                    f.first().map_or("", String::as_str),
                    f.get(1).map_or("", String::as_str),
                );
                self.scanner().header(name, value);
                cont()
            }
            cmd::EOH => {
                self.scanner().end_of_headers();
                cont()
            }
            cmd::BODY => {
                self.scanner().body(data);
                cont()
            }
            cmd::BODYEOB => {
                let mut s = self
                    .scanner
                    .take()
                    .unwrap_or_else(|| Scanner::new(&self.policy.blocked));
                s.body(data);
                match refusal(&s.finish(), &self.policy.domain) {
                    None => cont(),
                    Some(text) => {
                        let mut d = text.into_bytes();
                        d.push(0);
                        Action::Reply(packet(b'y', &d))
                    }
                }
            }
            cmd::ABORT | b'K' => {
                self.scanner = None;
                Action::Nothing
            }
            _ => Action::Close, // QUIT, or a command we do not know
        }
    }
}

/// Serves one connection until Postfix closes it.
fn serve(mut stream: UnixStream, policy: Arc<Policy>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut conn = Conn::new(policy);
    let mut len = [0u8; 4];
    loop {
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if n == 0 || n > MAX_PACKET {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("milter packet length {n} out of range"),
            ));
        }
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf)?;
        match conn.handle(buf[0], &buf[1..]) {
            Action::Reply(bytes) => stream.write_all(&bytes)?,
            Action::Nothing => {}
            Action::Close => return Ok(()),
        }
    }
}

/// Runs the filter on `socket` until killed: binds it (0660, owned by `uid`:`gid`, Postfix's),
/// drops privileges to them, then serves.
pub fn run(socket: &Path, policy: Policy, uid: u32, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    nix::unistd::chown(
        socket,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )?;
    if nix::unistd::Uid::effective().is_root() {
        nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(gid)])?;
        nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
    }
    crate::note!(
        "attachment-filter: listening on {} ({} blocked extensions)",
        socket.display(),
        policy.blocked.len()
    );
    let policy = Arc::new(policy);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                crate::note!("attachment-filter: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            crate::note!("attachment-filter: {MAX_CONNECTIONS} connections busy; refusing one");
            continue; // dropped: Postfix tempfails that message
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (p, a) = (Arc::clone(&policy), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("milter-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, p) {
                    crate::note!("attachment-filter: connection: {e}");
                }
                a.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            crate::note!("attachment-filter: cannot start a thread: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::{self, Message, Session};

    fn policy() -> Arc<Policy> {
        Arc::new(Policy {
            blocked: vec!["exe".into(), "js".into()],
            domain: "example.com".into(),
        })
    }

    fn reply_of(a: Action) -> milter::Reply {
        let Action::Reply(b) = a else {
            panic!("no reply: {a:?}")
        };
        milter::decode(b[4], &b[5..]).unwrap()
    }

    #[test]
    fn a_blocked_attachment_is_refused_at_the_end_of_the_message() {
        let mut c = Conn::new(policy());
        assert!(matches!(
            reply_of(c.handle(
                cmd::OPTNEG,
                &[0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]
            )),
            milter::Reply::OptNeg {
                version: 6,
                actions: 0,
                protocol: 0
            }
        ));
        assert_eq!(
            c.handle(cmd::MACRO, b"Cj\0mail.example.com\0"),
            Action::Nothing
        );
        assert_eq!(
            reply_of(c.handle(cmd::MAIL, b"<a@example.net>\0")),
            milter::Reply::Continue
        );
        let h = milter::strings(&["Content-Type", "multipart/mixed; boundary=\"b\""]);
        assert_eq!(reply_of(c.handle(cmd::HEADER, &h)), milter::Reply::Continue);
        assert_eq!(reply_of(c.handle(cmd::EOH, &[])), milter::Reply::Continue);
        let body = "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''setup%2Eexe\r\n\r\nTVqQ\r\n--b--\r\n";
        for chunk in body.as_bytes().chunks(7) {
            assert_eq!(
                reply_of(c.handle(cmd::BODY, chunk)),
                milter::Reply::Continue
            );
        }
        assert_eq!(
            reply_of(c.handle(cmd::BODYEOB, &[])),
            milter::Reply::ReplyCode(
                "550 5.7.1 Attachment \"setup.exe\" refused: files of this type (.exe) are blocked by the mail policy of example.com".into()
            )
        );
        // The next message on the same connection starts clean.
        c.handle(cmd::MAIL, b"<a@example.net>\0");
        c.handle(cmd::EOH, &[]);
        c.handle(cmd::BODY, b"hello\r\n");
        assert_eq!(
            reply_of(c.handle(cmd::BODYEOB, &[])),
            milter::Reply::Continue
        );
        assert_eq!(c.handle(cmd::QUIT, &[]), Action::Close);
        assert_eq!(Conn::new(policy()).handle(b'?', &[]), Action::Close);
    }

    #[test]
    fn replies_carry_no_control_characters_or_quotes() {
        let v = Verdict::Blocked {
            name: "a\"b\r\n550 x.exe".into(),
            extension: "exe".into(),
        };
        let r = refusal(&v, "example.com").unwrap();
        assert!(
            r.starts_with("550 5.7.1 Attachment \"a?b??550 x.exe\" refused"),
            "{r}"
        );
        assert_eq!(refusal(&Verdict::Clean, "example.com"), None);
    }

    #[test]
    fn serves_the_milter_protocol_over_a_socket() {
        // Our own milter client (the monitor's) plays Postfix.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("m.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let p = policy();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (s, _) = listener.accept().unwrap();
                serve(s, Arc::clone(&p)).unwrap();
            }
        });
        for (name, refused) in [("=?UTF-8?B?cnVuLmpz?=", true), ("notes.txt", false)] {
            let mut s = Session::connect(&sock, Duration::from_secs(10)).unwrap();
            let v = s
                .send_message(&Message {
                    mta_name: "mail.example.com",
                    client_addr: "10.0.0.9",
                    helo: "client.example.net",
                    from: "bob@example.net",
                    rcpt: "alice@example.com",
                    queue_id: "Q1",
                    headers: vec![
                        ("From", "<bob@example.net>".into()),
                        (
                            "Content-Type",
                            format!("application/octet-stream; name=\"{name}\""),
                        ),
                    ],
                    body: "TVqQ\r\n",
                })
                .unwrap();
            s.quit();
            let got = matches!(&v.last, milter::Reply::ReplyCode(t) if t.contains("run.js"));
            assert_eq!(got, refused, "{name}: {:?}", v.last);
        }
        server.join().unwrap();
    }
}

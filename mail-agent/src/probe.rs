//! Small protocol probes used by the supervisor (readiness) and by `monitor` (depths 10 and
//! 20): an SMTP banner and EHLO, IMAP and LMTP greetings, clamd's and spamd's PING, an HTTP
//! GET, LMTP delivery and an IMAP read-back. Every read and write has a deadline; every
//! answer is parsed into what the check needs, and a failure says which step failed and what
//! the server said.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A probe failure: what was being checked and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ProbeError {
    /// The check.
    pub what: String,
    /// What went wrong.
    pub why: String,
}

fn err(what: &str, why: impl std::fmt::Display) -> ProbeError {
    ProbeError {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

/// Longest line a probe reads; a server sending more without a newline is refused.
pub const MAX_LINE: usize = 64 * 1024;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A line-oriented connection with deadlines.
pub struct Conn {
    r: BufReader<Box<dyn Stream>>,
    what: String,
}

impl Conn {
    /// Connects over TCP, optionally binding the source address first.
    pub fn tcp(
        addr: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
        what: &str,
    ) -> Result<Conn, ProbeError> {
        let s = match source {
            None => TcpStream::connect_timeout(&addr, timeout)
                .map_err(|e| err(what, format!("connect {addr}: {e}")))?,
            Some(src) => connect_from(src, addr)
                .map_err(|e| err(what, format!("connect {addr} from {src}: {e}")))?,
        };
        s.set_read_timeout(Some(timeout))
            .map_err(|e| err(what, e))?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| err(what, e))?;
        Ok(Conn {
            r: BufReader::new(Box::new(s)),
            what: what.to_owned(),
        })
    }

    /// Connects to a unix socket.
    pub fn unix(path: &Path, timeout: Duration, what: &str) -> Result<Conn, ProbeError> {
        let s = UnixStream::connect(path)
            .map_err(|e| err(what, format!("connect {}: {e}", path.display())))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| err(what, e))?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| err(what, e))?;
        Ok(Conn {
            r: BufReader::new(Box::new(s)),
            what: what.to_owned(),
        })
    }

    /// Sends bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
        self.r
            .get_mut()
            .write_all(bytes)
            .map_err(|e| err(&self.what, format!("write: {e}")))
    }

    /// Reads one line (without CRLF).
    pub fn line(&mut self) -> Result<String, ProbeError> {
        let mut buf = Vec::new();
        let n = (&mut self.r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .map_err(|e| err(&self.what, format!("read: {e}")))?;
        if n == 0 {
            return Err(err(&self.what, "connection closed"));
        }
        if !buf.ends_with(b"\n") {
            return Err(err(&self.what, "line too long or truncated"));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_owned())
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<Vec<u8>, ProbeError> {
        let mut v = vec![0; n];
        self.r
            .read_exact(&mut v)
            .map_err(|e| err(&self.what, format!("read: {e}")))?;
        Ok(v)
    }

    /// Reads an SMTP/LMTP reply (multi-line `250-...` up to `250 ...`): code and lines.
    pub fn smtp_reply(&mut self) -> Result<(u16, Vec<String>), ProbeError> {
        let mut lines = Vec::new();
        loop {
            let l = self.line()?;
            let code: u16 = l
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| err(&self.what, format!("not an SMTP reply: {l:?}")))?;
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok((code, lines));
            }
            if lines.len() > 200 {
                return Err(err(&self.what, "reply with too many lines"));
            }
        }
    }

    /// Sends a command line and expects a reply with code `want`.
    pub fn smtp_cmd(&mut self, line: &str, want: u16) -> Result<Vec<String>, ProbeError> {
        self.send(format!("{line}\r\n").as_bytes())?;
        let (code, lines) = self.smtp_reply()?;
        if code != want {
            return Err(err(
                &self.what,
                format!("{line:?} answered {code} {}", lines.join(" / ")),
            ));
        }
        Ok(lines)
    }
}

fn connect_from(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket,
    };
    let family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(dst),
    )?;
    Ok(TcpStream::from(fd))
}

/// What an SMTP server offers after EHLO, before TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpOffer {
    /// The 220 banner text.
    pub banner: String,
    /// STARTTLS is offered.
    pub starttls: bool,
    /// AUTH is offered (it must not be, before TLS).
    pub auth: bool,
}

/// Reads the banner, says EHLO, and quits.
pub fn smtp_ehlo(addr: SocketAddr, timeout: Duration) -> Result<SmtpOffer, ProbeError> {
    let what = format!("SMTP on {addr}");
    let mut c = Conn::tcp(addr, None, timeout, &what)?;
    let (code, banner) = c.smtp_reply()?;
    if code != 220 {
        return Err(err(&what, format!("banner {code} {}", banner.join(" "))));
    }
    let ext = c.smtp_cmd("EHLO tandem-monitor.invalid", 250)?;
    let _ = c.smtp_cmd("QUIT", 221);
    let has = |k: &str| {
        ext.iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(k))
        })
    };
    Ok(SmtpOffer {
        banner: banner.join(" "),
        starttls: has("STARTTLS"),
        auth: has("AUTH"),
    })
}

/// Reads an SMTP banner only.
pub fn smtp_banner(addr: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let what = format!("SMTP on {addr}");
    let mut c = Conn::tcp(addr, None, timeout, &what)?;
    let (code, banner) = c.smtp_reply()?;
    if code != 220 {
        return Err(err(&what, format!("banner {code} {}", banner.join(" "))));
    }
    let _ = c.send(b"QUIT\r\n");
    Ok(banner.join(" "))
}

/// Reads the IMAP greeting (`* OK ...`).
pub fn imap_greeting(addr: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let what = format!("IMAP on {addr}");
    let mut c = Conn::tcp(addr, None, timeout, &what)?;
    let g = c.line()?;
    if !g.starts_with("* OK") {
        return Err(err(&what, format!("greeting {g:?}")));
    }
    let _ = c.send(b"z LOGOUT\r\n");
    Ok(g)
}

/// Reads the LMTP greeting on a unix socket.
pub fn lmtp_greeting(socket: &Path, timeout: Duration) -> Result<String, ProbeError> {
    let mut c = Conn::unix(socket, timeout, "LMTP")?;
    let (code, g) = c.smtp_reply()?;
    if code != 220 {
        return Err(err("LMTP", format!("greeting {code}")));
    }
    let _ = c.send(b"QUIT\r\n");
    Ok(g.join(" "))
}

/// clamd's `PING` → `PONG`.
pub fn clamd_ping(socket: &Path, timeout: Duration) -> Result<(), ProbeError> {
    let mut c = Conn::unix(socket, timeout, "clamd")?;
    c.send(b"nPING\n")?;
    let l = c.line()?;
    if l.trim() != "PONG" {
        return Err(err("clamd", format!("PING answered {l:?}")));
    }
    Ok(())
}

/// spamd's `PING` → `SPAMD/1.5 0 PONG`.
pub fn spamd_ping(socket: &Path, timeout: Duration) -> Result<(), ProbeError> {
    let mut c = Conn::unix(socket, timeout, "spamd")?;
    c.send(b"PING SPAMC/1.5\r\n\r\n")?;
    let l = c.line()?;
    if !(l.starts_with("SPAMD/") && l.ends_with("PONG")) {
        return Err(err("spamd", format!("PING answered {l:?}")));
    }
    Ok(())
}

/// A milter answers option negotiation.
pub fn milter_optneg(socket: &Path, timeout: Duration, name: &str) -> Result<(), ProbeError> {
    let s = crate::milter::Session::connect(socket, timeout).map_err(|e| err(name, e))?;
    s.quit();
    Ok(())
}

/// `GET path` over HTTP/1.1; returns status and body (bounded).
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), ProbeError> {
    let what = format!("HTTP on {addr}");
    let mut c = Conn::tcp(addr, None, timeout, &what)?;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let status_line = c.line()?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(&what, format!("bad status line {status_line:?}")))?;
    let mut len = None;
    loop {
        let h = c.line()?;
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let body = match len {
        Some(n) if n <= MAX_LINE => String::from_utf8_lossy(&c.bytes(n)?).into_owned(),
        _ => String::new(),
    };
    Ok((status, body))
}

/// Delivers `message` (CRLF lines, no dot-stuffing needed: probe messages have no line
/// starting with a dot) to `rcpt` over LMTP.
pub fn lmtp_deliver(
    socket: &Path,
    rcpt: &str,
    message: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let mut c = Conn::unix(socket, timeout, "LMTP delivery")?;
    let (code, _) = c.smtp_reply()?;
    if code != 220 {
        return Err(err("LMTP delivery", format!("greeting {code}")));
    }
    c.smtp_cmd("LHLO tandem-monitor", 250)?;
    c.smtp_cmd("MAIL FROM:<>", 250)?;
    c.smtp_cmd(&format!("RCPT TO:<{rcpt}>"), 250)?;
    c.smtp_cmd("DATA", 354)?;
    let mut body = message.to_owned();
    body.push_str(".\r\n");
    c.send(body.as_bytes())?;
    let (code, lines) = c.smtp_reply()?;
    if code != 250 {
        return Err(err(
            "LMTP delivery",
            format!("DATA answered {code} {}", lines.join(" ")),
        ));
    }
    let _ = c.smtp_cmd("QUIT", 221);
    Ok(())
}

/// A minimal IMAP client: tagged commands, untagged lines and literals.
pub struct Imap {
    c: Conn,
    tag: u32,
}

/// Quotes an IMAP string.
pub fn imap_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Imap {
    /// Connects (binding `source` if given) and reads the greeting.
    pub fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Imap, ProbeError> {
        let mut c = Conn::tcp(addr, source, timeout, "IMAP")?;
        let g = c.line()?;
        if !g.starts_with("* OK") {
            return Err(err("IMAP", format!("greeting {g:?}")));
        }
        Ok(Imap { c, tag: 0 })
    }

    /// Runs a command; returns the untagged response text (literals inlined) or an error
    /// quoting the tagged NO/BAD.
    pub fn cmd(&mut self, command: &str) -> Result<String, ProbeError> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.c.send(format!("{tag} {command}\r\n").as_bytes())?;
        let mut out = String::new();
        let shown = command.split_whitespace().next().unwrap_or("").to_owned();
        loop {
            let line = self.c.line()?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok(out);
                }
                return Err(err("IMAP", format!("{shown} answered {rest}")));
            }
            out.push_str(&line);
            out.push('\n');
            // A literal {n} at the end of the line: read n bytes, then the rest of the line.
            if let Some(n) = line
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                if n > 16 * 1024 * 1024 {
                    return Err(err("IMAP", "literal too large"));
                }
                let lit = self.c.bytes(n)?;
                out.push_str(&String::from_utf8_lossy(&lit));
            }
            if out.len() > 32 * 1024 * 1024 {
                return Err(err("IMAP", "response too large"));
            }
        }
    }

    /// LOGIN.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ProbeError> {
        self.cmd(&format!(
            "LOGIN {} {}",
            imap_quote(user),
            imap_quote(password)
        ))
        .map(|_| ())
    }

    /// LOGOUT (errors ignored).
    pub fn logout(mut self) {
        let _ = self.cmd("LOGOUT");
    }
}

/// Numbers from an untagged `* SEARCH 1 2 3` response.
pub fn search_results(untagged: &str) -> Vec<u32> {
    untagged
        .lines()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .flat_map(|r| {
            r.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_and_quote() {
        assert_eq!(search_results("* SEARCH 3 17\n"), vec![3, 17]);
        assert_eq!(search_results("* SEARCH\n"), Vec::<u32>::new());
        assert_eq!(imap_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn smtp_probe_against_a_scripted_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"220 mx ESMTP\r\n").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("EHLO"));
            s.write_all(b"250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            s.write_all(b"221 bye\r\n").unwrap();
        });
        let offer = smtp_ehlo(addr, Duration::from_secs(5)).unwrap();
        assert_eq!(
            offer,
            SmtpOffer {
                banner: "mx ESMTP".into(),
                starttls: true,
                auth: false
            }
        );
        t.join().unwrap();
    }
}

//! Finding the names of a message's attachments as a mail client would show them (pure,
//! streaming): the blocked-extension policy needs the *decoded* name, and a pattern over the
//! raw MIME header is trivially evaded — `filename="=?UTF-8?B?cmVwb3J0LmV4ZQ==?="` (RFC 2047,
//! which every common client decodes in parameters), `filename*=UTF-8''report%2Eexe` and
//! `filename*0="report."; filename*1="exe"` (RFC 2231), `filename = "report.e\xe"` (spaces,
//! quoted pairs), `report.exe.` (Windows drops trailing dots), uuencoded `begin 644 x.exe`.
//!
//! [`Scanner`] is fed the top-level headers and then the body in chunks of any size; it follows
//! the MIME structure (multipart boundaries at any depth, embedded `message/rfc822` messages,
//! also base64 or quoted-printable encoded ones), decodes every `name`/`filename` parameter of
//! every part every way a client might read it, and reports the first whose extension is
//! blocked. Where an interpretation is ambiguous, every candidate is checked: the policy errs
//! on the side of blocking.
//!
//! Memory is bounded whatever the input: one line and one header of at most
//! [`MAX_HEADER_BYTES`] each, and at most [`MAX_DEPTH`] nested levels. A message that cannot be
//! checked within those bounds (a `Content-*` header longer than that, deeper nesting) is
//! reported as [`Verdict::Unverifiable`] — refused, rather than let through unchecked.

use std::collections::BTreeSet;

/// Longest line or unfolded header kept (Postfix's own `header_size_limit` is 100 KiB). A
/// longer `Content-Type`/`Content-Disposition` header makes the message unverifiable; other
/// headers are only truncated (their content does not matter here).
pub const MAX_HEADER_BYTES: usize = 128 * 1024;

/// Deepest nesting of multiparts and embedded messages followed (Postfix's
/// `mime_nesting_limit` is 100 too). Deeper is unverifiable.
pub const MAX_DEPTH: usize = 100;

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No blocked attachment.
    Clean,
    /// An attachment whose decoded name has a blocked extension.
    Blocked {
        /// The name as a client would show it (control characters replaced).
        name: String,
        /// The extension, lower case, without the dot.
        extension: String,
    },
    /// The message cannot be checked within the bounds (see the module documentation).
    Unverifiable(String),
}

/// The extension of a decoded file name as Windows would take it (trailing dots, spaces and
/// NULs ignored), lower case; `None` without one.
pub fn extension(name: &str) -> Option<String> {
    let trimmed = name.trim_end_matches(['.', ' ', '\t', '\0']);
    let (_, ext) = trimmed.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// A header's parameters (`; name=value`), names lower case, values unquoted (quoted pairs
/// resolved). Tolerant: spaces around `=`, missing quotes, comments.
pub fn params(value: &str) -> Vec<(String, String)> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Skip the main value (up to the first `;` outside quotes).
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => i += 1,
            b';' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    while i < b.len() {
        // At a `;` (or the end of the previous parameter).
        while i < b.len() && (b[i] == b';' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' {
            i += 1;
        }
        let name = String::from_utf8_lossy(&b[start..i])
            .trim()
            .to_ascii_lowercase();
        if i >= b.len() || b[i] == b';' {
            continue;
        }
        i += 1; // '='
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let mut v = Vec::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                v.push(b[i]);
                i += 1;
            }
            i += 1; // closing quote
            while i < b.len() && b[i] != b';' {
                i += 1;
            }
        } else {
            while i < b.len() && b[i] != b';' {
                v.push(b[i]);
                i += 1;
            }
            while v.last().is_some_and(u8::is_ascii_whitespace) {
                v.pop();
            }
        }
        if !name.is_empty() {
            out.push((name, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    out
}

/// The main value of a header (before the first `;`), lower case, trimmed.
pub fn main_value(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` decoding (RFC 2231 extended values); a malformed escape is kept as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Base64 decoding that skips what is not in the alphabet and ignores missing padding.
pub fn base64_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

/// Quoted-printable decoding (`=XX`, soft line breaks); `underscore_space` for RFC 2047's Q.
pub fn qp_decode(s: &[u8], underscore_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'=' => {
                if let (Some(h), Some(l)) = (
                    s.get(i + 1).copied().and_then(hex),
                    s.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                // Soft line break (`=` at the end of a line) or a stray `=`.
                i += 1;
                while i < s.len() && (s[i] == b'\r' || s[i] == b'\n') {
                    i += 1;
                }
                continue;
            }
            b'_' if underscore_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Text from bytes in `charset`: UTF-16 variants decoded as such (a client would), anything
/// else as UTF-8 with Latin-1 fallback (extensions are ASCII in every such charset).
fn charset_text(bytes: &[u8], charset: &str) -> String {
    let cs = charset.to_ascii_lowercase();
    if cs.starts_with("utf-16") || cs == "ucs-2" {
        let le = cs.ends_with("le") || bytes.starts_with(&[0xff, 0xfe]);
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        return String::from_utf16_lossy(&units)
            .trim_start_matches('\u{feff}')
            .to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) anywhere in `s`; whitespace between
/// two encoded words is dropped, as the RFC says.
pub fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((text, used)) = encoded_word(rest) {
            if !last_was_word {
                out.push_str(&pending_ws);
            }
            pending_ws.clear();
            out.push_str(&text);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        let ch = rest.chars().next().expect("rest is not empty");
        if ch.is_whitespace() {
            pending_ws.push(ch);
        } else {
            out.push_str(&pending_ws);
            pending_ws.clear();
            out.push(ch);
            last_was_word = false;
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push_str(&pending_ws);
    out
}

/// One encoded word at the start of `s`: its text and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, after) = body.split_once('?')?;
    let (enc, after) = after.split_once('?')?;
    let end = after.find("?=")?;
    let text = &after[..end];
    if charset.is_empty() || charset.contains(char::is_whitespace) || text.contains(' ') {
        return None;
    }
    let used = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
    let charset = charset.split('*').next().unwrap_or(charset); // RFC 2231 language
    let bytes = match enc {
        "B" | "b" => base64_decode(text.as_bytes()),
        "Q" | "q" => qp_decode(text.as_bytes(), true),
        _ => return None,
    };
    Some((charset_text(&bytes, charset), used))
}

/// Every name a client might show for parameter `base` (`name` or `filename`) among `ps`:
/// the plain value, its RFC 2047 decoding, the RFC 2231 extended value and the concatenation
/// of RFC 2231 continuations (with and without their encodings).
pub fn names(ps: &[(String, String)], base: &str) -> Vec<String> {
    let mut out = Vec::new();
    let star = format!("{base}*");
    let mut segments: Vec<(u32, bool, &str)> = Vec::new();
    for (n, v) in ps {
        if n == base {
            out.push(v.clone());
            out.push(decode_words(v));
        } else if n == &star {
            out.push(extended(v));
            out.push(v.clone());
        } else if let Some(rest) = n.strip_prefix(&star) {
            let (idx, encoded) = match rest.strip_suffix('*') {
                Some(i) => (i, true),
                None => (rest, false),
            };
            if let Ok(i) = idx.parse::<u32>() {
                segments.push((i, encoded, v));
            }
        }
    }
    if !segments.is_empty() {
        segments.sort_by_key(|s| s.0);
        let mut raw = String::new();
        let mut bytes = Vec::new();
        let mut charset = String::new();
        for (k, (i, encoded, v)) in segments.iter().enumerate() {
            raw.push_str(v);
            if *encoded {
                let mut v: &str = v;
                if k == 0 && *i == 0 {
                    // charset'language'value
                    let mut parts = v.splitn(3, '\'');
                    if let (Some(cs), Some(_), Some(val)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        charset = cs.to_owned();
                        v = val;
                    }
                }
                bytes.extend(percent_decode(v));
            } else {
                bytes.extend_from_slice(v.as_bytes());
            }
        }
        let text = charset_text(&bytes, &charset);
        out.push(decode_words(&text));
        out.push(text);
        out.push(raw);
    }
    out
}

/// An RFC 2231 extended value `charset'language'%XX...`.
fn extended(v: &str) -> String {
    let mut parts = v.splitn(3, '\'');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(cs), Some(_), Some(val)) => charset_text(&percent_decode(val), cs),
        _ => charset_text(&percent_decode(v), ""),
    }
}

/// How a part's content is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Base64,
    QuotedPrintable,
}

/// What one header block (a message's or a part's) says about what follows it.
#[derive(Debug, Default)]
struct Block {
    boundary: Option<Vec<u8>>,
    message: bool,
    encoding: Option<Encoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Headers,
    Body,
}

/// An embedded message encoded as base64 or quoted-printable: decoded and scanned by a child.
#[derive(Debug)]
struct Embedded {
    encoding: Encoding,
    /// Undecoded base64 characters carried to the next line (kept to a multiple of 4).
    carry: Vec<u8>,
    scanner: Box<Scanner>,
}

/// The streaming scanner. Feed [`Scanner::header`] for each top-level header, then
/// [`Scanner::end_of_headers`], then [`Scanner::body`] chunks, then [`Scanner::finish`].
#[derive(Debug)]
pub struct Scanner {
    blocked: BTreeSet<String>,
    depth: usize,
    line: Vec<u8>,
    line_truncated: bool,
    mode: Mode,
    header: Vec<u8>,
    header_truncated: bool,
    block: Block,
    /// Boundaries of the multiparts we are inside, outermost first.
    boundaries: Vec<Vec<u8>>,
    embedded: Option<Embedded>,
    verdict: Verdict,
}

impl Scanner {
    /// A scanner for `blocked` extensions (lower case, without dots).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(blocked: I) -> Scanner {
        Scanner::at_depth(
            blocked
                .into_iter()
                .map(|s| s.as_ref().to_ascii_lowercase())
                .collect(),
            0,
        )
    }

    fn at_depth(blocked: BTreeSet<String>, depth: usize) -> Scanner {
        Scanner {
            blocked,
            depth,
            line: Vec::new(),
            line_truncated: false,
            mode: Mode::Headers,
            header: Vec::new(),
            header_truncated: false,
            block: Block::default(),
            boundaries: Vec::new(),
            embedded: None,
            verdict: Verdict::Clean,
        }
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    fn done(&self) -> bool {
        self.verdict != Verdict::Clean
    }

    /// One top-level header (as the MTA passes it: name and value, maybe folded).
    pub fn header(&mut self, name: &str, value: &str) {
        if self.done() {
            return;
        }
        let mut h = Vec::with_capacity(name.len() + value.len() + 2);
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b": ");
        h.extend(value.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        let truncated = h.len() > MAX_HEADER_BYTES;
        h.truncate(MAX_HEADER_BYTES);
        self.header = h;
        self.header_truncated = truncated;
        self.end_header();
    }

    /// The end of the top-level headers: the body follows.
    pub fn end_of_headers(&mut self) {
        if self.done() {
            return;
        }
        self.end_block();
    }

    /// A chunk of the body (CRLF or LF line ends; split anywhere).
    pub fn body(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.done() {
                return;
            }
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let truncated = std::mem::replace(&mut self.line_truncated, false);
                self.process_line(&line, truncated);
                line.clear();
                if self.line.is_empty() {
                    self.line = line; // keep the allocation
                }
            } else if self.line.len() < MAX_HEADER_BYTES {
                self.line.push(b);
            } else {
                self.line_truncated = true;
            }
        }
    }

    /// The end of the message: the verdict.
    pub fn finish(mut self) -> Verdict {
        if !self.done() && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let truncated = self.line_truncated;
            self.process_line(&line, truncated);
        }
        if !self.done() {
            if self.mode == Mode::Headers {
                self.end_header();
                self.end_block();
            }
            if let Some(e) = self.embedded.take() {
                self.verdict = e.finish();
            }
        }
        self.verdict
    }

    fn check_name(&mut self, candidate: &str) {
        if self.done() {
            return;
        }
        if let Some(ext) = extension(candidate)
            && self.blocked.contains(&ext)
        {
            let name: String = candidate
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .take(200)
                .collect();
            self.verdict = Verdict::Blocked {
                name,
                extension: ext,
            };
        }
    }

    /// A complete (unfolded) header of the current block.
    fn end_header(&mut self) {
        let h = std::mem::take(&mut self.header);
        let truncated = std::mem::replace(&mut self.header_truncated, false);
        if h.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&h);
        let Some((name, value)) = text.split_once(':') else {
            return;
        };
        let name = name.trim().to_ascii_lowercase();
        if !name.starts_with("content-") {
            return;
        }
        if truncated && (name == "content-type" || name == "content-disposition") {
            self.verdict = Verdict::Unverifiable(format!(
                "a {name} header longer than {MAX_HEADER_BYTES} bytes"
            ));
            return;
        }
        let ps = params(value);
        match name.as_str() {
            "content-type" => {
                let mv = main_value(value);
                if mv.starts_with("multipart/")
                    && let Some((_, b)) = ps.iter().find(|(n, _)| n == "boundary")
                    && !b.is_empty()
                {
                    self.block.boundary = Some(b.trim().as_bytes().to_vec());
                }
                if mv == "message/rfc822" || mv == "message/global" {
                    self.block.message = true;
                }
                for n in names(&ps, "name") {
                    self.check_name(&n);
                }
            }
            "content-disposition" => {
                for base in ["filename", "name"] {
                    for n in names(&ps, base) {
                        self.check_name(&n);
                    }
                }
            }
            "content-transfer-encoding" => {
                self.block.encoding = Some(match main_value(value).as_str() {
                    "base64" => Encoding::Base64,
                    "quoted-printable" => Encoding::QuotedPrintable,
                    _ => Encoding::Identity,
                });
            }
            _ => {}
        }
    }

    /// The end of a header block: what follows is a multipart's preamble, an embedded message's
    /// headers, or content.
    fn end_block(&mut self) {
        let block = std::mem::take(&mut self.block);
        if let Some(b) = block.boundary {
            if self.depth + self.boundaries.len() >= MAX_DEPTH {
                self.verdict =
                    Verdict::Unverifiable(format!("MIME nesting deeper than {MAX_DEPTH} levels"));
                return;
            }
            self.boundaries.push(b);
            self.mode = Mode::Body;
            return;
        }
        if block.message {
            let encoding = block.encoding.unwrap_or(Encoding::Identity);
            if encoding == Encoding::Identity {
                // The embedded message's own headers follow directly.
                if self.depth + self.boundaries.len() >= MAX_DEPTH {
                    self.verdict = Verdict::Unverifiable(format!(
                        "MIME nesting deeper than {MAX_DEPTH} levels"
                    ));
                    return;
                }
                self.mode = Mode::Headers;
                return;
            }
            let depth = self.depth + self.boundaries.len() + 1;
            if depth >= MAX_DEPTH {
                self.verdict =
                    Verdict::Unverifiable(format!("MIME nesting deeper than {MAX_DEPTH} levels"));
                return;
            }
            self.embedded = Some(Embedded {
                encoding,
                carry: Vec::new(),
                scanner: Box::new(Scanner::at_depth(self.blocked.clone(), depth)),
            });
        }
        self.mode = Mode::Body;
    }

    /// Which boundary of the stack `line` delimits, and whether it closes it.
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?;
        for (i, b) in self.boundaries.iter().enumerate().rev() {
            if let Some(after) = rest.strip_prefix(b.as_slice()) {
                if let Some(tail) = after.strip_prefix(b"--")
                    && tail.iter().all(u8::is_ascii_whitespace)
                {
                    return Some((i, true));
                }
                if after.iter().all(u8::is_ascii_whitespace) {
                    return Some((i, false));
                }
            }
        }
        None
    }

    /// One line of the body (without its line end); `truncated` when it was longer than kept.
    fn process_line(&mut self, line: &[u8], truncated: bool) {
        if let Some((i, close)) = self.delimiter(line) {
            if self.mode == Mode::Headers {
                self.end_header();
                if self.done() {
                    return;
                }
                self.block = Block::default(); // a part cut short: no content follows
            }
            if let Some(e) = self.embedded.take() {
                let v = e.finish();
                if v != Verdict::Clean {
                    self.verdict = v;
                    return;
                }
            }
            if close {
                self.boundaries.truncate(i);
                self.mode = Mode::Body;
            } else {
                self.boundaries.truncate(i + 1);
                self.mode = Mode::Headers;
            }
            return;
        }
        match self.mode {
            Mode::Headers => {
                if line.is_empty() {
                    self.end_header();
                    if !self.done() {
                        self.end_block();
                    }
                } else if line[0] == b' ' || line[0] == b'\t' {
                    if truncated || self.header.len() + line.len() > MAX_HEADER_BYTES {
                        self.header_truncated = true;
                    } else {
                        self.header.extend_from_slice(line);
                    }
                } else {
                    self.end_header();
                    self.header.extend_from_slice(line);
                    self.header_truncated = truncated;
                }
            }
            Mode::Body => {
                if let Some(e) = &mut self.embedded {
                    e.line(line);
                    if e.scanner.verdict() != &Verdict::Clean {
                        self.verdict = e.scanner.verdict().clone();
                    }
                    return;
                }
                // uuencoded content inside a text part: `begin MODE NAME`.
                if let Some(rest) = line
                    .strip_prefix(b"begin ")
                    .or_else(|| line.strip_prefix(b"begin-base64 "))
                    && let Some(sp) = rest.iter().position(|&b| b == b' ')
                    && sp >= 3
                    && rest[..sp].iter().all(|b| (b'0'..=b'7').contains(b))
                {
                    let name = String::from_utf8_lossy(&rest[sp + 1..]).into_owned();
                    self.check_name(&name);
                }
            }
        }
    }
}

impl Embedded {
    fn line(&mut self, line: &[u8]) {
        match self.encoding {
            Encoding::Base64 => {
                self.carry
                    .extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
                let whole = self.carry.len() / 4 * 4;
                let chunk: Vec<u8> = self.carry.drain(..whole).collect();
                let bytes = base64_decode(&chunk);
                self.scanner.body(&bytes);
            }
            Encoding::QuotedPrintable => {
                let mut bytes = qp_decode(line, false);
                if !line.ends_with(b"=") {
                    bytes.extend_from_slice(b"\r\n");
                }
                self.scanner.body(&bytes);
            }
            Encoding::Identity => {
                self.scanner.body(line);
                self.scanner.body(b"\r\n");
            }
        }
    }

    fn finish(mut self) -> Verdict {
        if !self.carry.is_empty() {
            let bytes = base64_decode(&self.carry);
            self.scanner.body(&bytes);
        }
        self.scanner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKED: [&str; 3] = ["exe", "js", "bat"];

    fn scan_message(raw: &str) -> Verdict {
        // Top-level headers as the MTA passes them, then the body.
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut s = Scanner::new(BLOCKED);
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
        for h in unfolded.split("\r\n") {
            if let Some((n, v)) = h.split_once(':') {
                s.header(n, v.trim_start());
            }
        }
        s.end_of_headers();
        s.body(body.as_bytes());
        s.finish()
    }

    fn with_part(part_headers: &str) -> String {
        format!(
            "From: a@example.net\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\n{part_headers}\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n"
        )
    }

    fn blocked(v: &Verdict) -> Option<&str> {
        match v {
            Verdict::Blocked { extension, .. } => Some(extension),
            _ => None,
        }
    }

    #[test]
    fn every_evasion_form_is_decoded() {
        // (part headers, blocked?)
        let table: &[(&str, bool)] = &[
            (
                "Content-Type: application/octet-stream; name=\"report.exe\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?cmVwb3J0LmV4ZQ==?=\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?utf-8?b?cmVwb3J0LmV4ZQ?=\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?report=2Eexe?=\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?report?= =?UTF-8?B?LmV4ZQ==?=\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''report%2Eexe",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8'en'report.%65%78%65",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=\"report.\"; filename*1=\"exe\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*1=\"exe\"; filename*0=\"report.\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0*=UTF-8''report%2E;\r\n filename*1*=e%78e",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.exe.\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.exe  \"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename = \"report.exe\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.e\\xe\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; FILENAME=\"REPORT.EXE\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n\tfilename=report.exe",
                true,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?UTF-16?B?AHIAZQBwAG8AcgB0AC4AZQB4AGU=?=\"",
                true,
            ),
            (
                "Content-Type: application/octet-stream; name=report.txt\r\nContent-Disposition: attachment; filename=\"notes.js\"",
                true,
            ),
            // Allowed: other extensions, encoded too (an accented name is common).
            ("Content-Type: application/pdf; name=\"report.pdf\"", false),
            (
                "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?informe_a=C3=B1o.pdf?=\"",
                false,
            ),
            (
                "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''informe%20a%C3%B1o.pdf",
                false,
            ),
            ("Content-Type: text/plain; name=\"exe\"", false),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.exe.txt\"",
                false,
            ),
            (
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"setup.executable\"",
                false,
            ),
        ];
        for (headers, want) in table {
            let v = scan_message(&with_part(headers));
            assert_eq!(blocked(&v).is_some(), *want, "{headers:?}: {v:?}");
        }
    }

    #[test]
    fn the_verdict_names_the_file_as_a_client_shows_it() {
        let v = scan_message(&with_part(
            "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?cmVwb3J0LmV4ZQ==?=\"",
        ));
        assert_eq!(
            v,
            Verdict::Blocked {
                name: "report.exe".into(),
                extension: "exe".into()
            }
        );
    }

    #[test]
    fn nested_multiparts_and_embedded_messages_are_followed() {
        let inner = "From: x@example.net\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: application/octet-stream; name=\"a.bat\"\r\n\r\nxx\r\n--in--\r\n";
        let nested = format!(
            "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\nx\r\n--alt--\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n{inner}--out--\r\n"
        );
        assert_eq!(blocked(&scan_message(&nested)), Some("bat"));
        // The same embedded message, base64-encoded (not allowed by RFC 2046, done anyway).
        let b64 = base64_encode(inner.as_bytes());
        let encoded = format!(
            "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--out--\r\n"
        );
        assert_eq!(blocked(&scan_message(&encoded)), Some("bat"));
        // An outer boundary closes inner parts too.
        let cut = "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nx\r\n--out\r\nContent-Type: application/octet-stream; name=z.js\r\n\r\nx\r\n--out--\r\n";
        assert_eq!(blocked(&scan_message(cut)), Some("js"));
        // A single-part message that is itself the attachment.
        let single = "Content-Type: application/octet-stream; name=\"run.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQ\r\n";
        assert_eq!(blocked(&scan_message(single)), Some("exe"));
    }

    #[test]
    fn uuencoded_files_are_checked() {
        let m = "Content-Type: text/plain\r\n\r\nsee attached\r\nbegin 644 tool.exe\r\nM9&%T80``\r\nend\r\n";
        assert_eq!(blocked(&scan_message(m)), Some("exe"));
        let m = "Content-Type: text/plain\r\n\r\nbegin the meeting at 10\r\n";
        assert_eq!(scan_message(m), Verdict::Clean);
    }

    #[test]
    fn what_cannot_be_checked_is_unverifiable() {
        let long = format!(
            "Content-Type: application/octet-stream; x=\"{}\"; name=\"a.exe\"",
            "y".repeat(MAX_HEADER_BYTES)
        );
        assert!(matches!(
            scan_message(&with_part(&long)),
            Verdict::Unverifiable(_)
        ));
        let mut deep = String::from("Content-Type: multipart/mixed; boundary=b0\r\n\r\n");
        for i in 1..=MAX_DEPTH + 1 {
            deep.push_str(&format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n",
                i - 1
            ));
        }
        assert!(matches!(scan_message(&deep), Verdict::Unverifiable(_)));
        // A long header that is not Content-* is only truncated.
        let m = format!(
            "Subject: {}\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
            "s".repeat(MAX_HEADER_BYTES * 2)
        );
        assert_eq!(scan_message(&m), Verdict::Clean);
    }

    #[test]
    fn parameters_and_encodings() {
        assert_eq!(
            params("attachment; filename=\"a;b.txt\"; size = 3 ;x"),
            vec![
                ("filename".to_owned(), "a;b.txt".to_owned()),
                ("size".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(decode_words("=?UTF-8?Q?a?= =?UTF-8?Q?b?= c"), "ab c");
        assert_eq!(decode_words("x =?ISO-8859-1?Q?=E9t=E9?="), "x été");
        assert_eq!(extension("a.tar.GZ"), Some("gz".into()));
        assert_eq!(extension("a. . ."), None);
        assert_eq!(extension("noext"), None);
        assert_eq!(base64_decode(b"cmVwb3J0LmV4ZQ"), b"report.exe");
        assert_eq!(qp_decode(b"a=2Eb_c", true), b"a.b c");
    }

    fn base64_encode(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (i, c) in b.chunks(3).enumerate() {
            if i > 0 && i % 19 == 0 {
                out.push_str("\r\n");
            }
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                if k <= c.len() {
                    out.push(char::from(A[(n >> (18 - 6 * k) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    proptest::proptest! {
        /// The verdict does not depend on how the body is cut into chunks.
        #[test]
        fn chunking_does_not_matter(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let m = with_part("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=\"re\";\r\n filename*1=\"port.e\"; filename*2=\"xe\"");
            let (_, body) = m.split_once("\r\n\r\n").unwrap();
            let mut s = Scanner::new(BLOCKED);
            s.header("Content-Type", "multipart/mixed; boundary=\"b1\"");
            s.end_of_headers();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts {
                s.body(&body.as_bytes()[at..c]);
                at = c;
            }
            s.body(&body.as_bytes()[at..]);
            let v = s.finish();
            proptest::prop_assert_eq!(blocked(&v), Some("exe"));
        }

        /// Never panics, whatever the bytes.
        #[test]
        fn never_panics(headers in proptest::collection::vec((".{0,20}", ".{0,200}"), 0..5),
                        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let mut s = Scanner::new(BLOCKED);
            for (n, v) in &headers {
                s.header(n, v);
            }
            s.end_of_headers();
            s.body(&body);
            let _ = s.finish();
        }

        /// Bodies made of MIME-looking lines never panic either.
        #[test]
        fn mime_like_lines_never_panic(lines in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::Just("--b".to_owned()),
            proptest::prelude::Just("--b--".to_owned()),
            proptest::prelude::Just("".to_owned()),
            proptest::prelude::Just("Content-Type: multipart/mixed; boundary=b".to_owned()),
            proptest::prelude::Just("Content-Type: message/rfc822".to_owned()),
            proptest::prelude::Just("Content-Transfer-Encoding: base64".to_owned()),
            proptest::prelude::Just(" filename*0*=utf-8''%2".to_owned()),
            "[ -~]{0,40}",
        ], 0..80)) {
            let mut s = Scanner::new(BLOCKED);
            s.header("Content-Type", "multipart/mixed; boundary=b");
            s.end_of_headers();
            s.body(lines.join("\r\n").as_bytes());
            let _ = s.finish();
        }
    }
}

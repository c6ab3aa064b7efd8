//! The values with inner structure: `device` (kernel names and NBD URIs), `meta-disk`,
//! `address` and connection `host` lines. Each is parsed in one place from the statement's
//! words into a typed value, or refused with the position of the word at fault.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{ConfigError, Pos};
use super::lexer::Token;
use super::model::*;
use super::syntax::Stmt;

/// Highest DRBD minor number.
pub const MAX_MINOR: u32 = (1 << 20) - 1;
/// Longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// A `host NAME [address ...|port P];` line of a connection, before the host is looked up.
pub(super) struct RawEndpoint {
    pub host: String,
    pub address: Option<Address>,
    pub port: Option<u16>,
    pub pos: Pos,
}

/// `device /dev/drbdN | drbdN | minor N | /dev/drbd_NAME minor N | NBD-URI`.
pub(super) fn parse_device(st: &Stmt) -> Result<Device, ConfigError> {
    let args = st.args();
    let usage = "device /dev/drbdN; | device minor N; | device nbd+unix:///NAME?socket=PATH; | device nbd://HOST:PORT/NAME;";
    let minor_of = |t: &Token| -> Result<u32, ConfigError> {
        t.text()
            .expect("word")
            .parse::<u32>()
            .ok()
            .filter(|m| *m <= MAX_MINOR)
            .ok_or_else(|| {
                ConfigError::new(
                    &t.pos,
                    format!("minor {} is not 0..{MAX_MINOR}", t.describe()),
                )
            })
    };
    match args {
        [] => Err(ConfigError::new(
            st.pos(),
            format!("'device' needs a value: {usage}"),
        )),
        [kw, n] if kw.text() == Some("minor") => {
            let m = minor_of(n)?;
            Ok(Device::Kernel {
                path: format!("/dev/drbd{m}"),
                minor: m,
            })
        }
        [t] => {
            let w = t.text().expect("word");
            if let Some(rest) = w.strip_prefix("nbd+unix://") {
                parse_nbd_unix(rest)
                    .map_err(|e| ConfigError::new(&t.pos, format!("device '{w}': {e}")))
            } else if let Some(rest) = w.strip_prefix("nbd://") {
                parse_nbd_tcp(rest)
                    .map_err(|e| ConfigError::new(&t.pos, format!("device '{w}': {e}")))
            } else if w.starts_with("nbds") || w.starts_with("nbd+") {
                Err(ConfigError::new(
                    &t.pos,
                    format!(
                        "device '{w}': only nbd+unix:// and nbd:// URIs are supported (no TLS or vsock)"
                    ),
                ))
            } else {
                let path = kernel_path(w).ok_or_else(|| {
                    ConfigError::new(
                        &t.pos,
                        format!("device '{w}' is not a DRBD device name or an NBD URI ({usage})"),
                    )
                })?;
                let minor = path["/dev/drbd".len()..]
                    .parse::<u32>()
                    .ok()
                    .filter(|m| *m <= MAX_MINOR)
                    .ok_or_else(|| {
                        ConfigError::new(
                            &t.pos,
                            format!(
                                "device '{w}' has no minor number: write 'device {path} minor N;'"
                            ),
                        )
                    })?;
                Ok(Device::Kernel { path, minor })
            }
        }
        [t, kw, n] if kw.text() == Some("minor") => {
            let w = t.text().expect("word");
            let path = kernel_path(w).ok_or_else(|| {
                ConfigError::new(
                    &t.pos,
                    format!(
                        "device '{w}' is not a DRBD device name (/dev/drbdN or /dev/drbd_NAME)"
                    ),
                )
            })?;
            let m = minor_of(n)?;
            let tail = &path["/dev/drbd".len()..];
            if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
                if tail.parse::<u32>().ok() != Some(m) {
                    return Err(ConfigError::new(
                        &n.pos,
                        format!("minor {m} does not match device name {path}"),
                    ));
                }
            } else if !tail.starts_with('_') {
                return Err(ConfigError::new(
                    &t.pos,
                    format!("arbitrary device names must start with /dev/drbd_ (got '{w}')"),
                ));
            }
            Ok(Device::Kernel { path, minor: m })
        }
        [_, extra, ..] => Err(ConfigError::new(
            &extra.pos,
            format!("unexpected {} ({usage})", extra.describe()),
        )),
    }
}

/// `/dev/drbd...` or `drbd...` → `/dev/drbd...`.
fn kernel_path(w: &str) -> Option<String> {
    if w.starts_with("/dev/drbd") {
        Some(w.to_owned())
    } else if w.starts_with("drbd") {
        Some(format!("/dev/{w}"))
    } else {
        None
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape '%{hex}'"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not decode to UTF-8".to_owned())
}

/// The part after `nbd+unix://`: `/EXPORT?socket=PATH`.
fn parse_nbd_unix(rest: &str) -> Result<Device, String> {
    let (path, query) = rest
        .split_once('?')
        .ok_or("a unix socket URI needs '?socket=PATH'")?;
    if !path.is_empty() && !path.starts_with('/') {
        return Err("a unix socket URI has no host part: nbd+unix:///EXPORT?socket=PATH".into());
    }
    let export = percent_decode(path.strip_prefix('/').unwrap_or(path))?;
    let mut socket = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("socket", v)) => socket = Some(percent_decode(v)?),
            _ => return Err(format!("unknown URI parameter '{kv}' (only socket=PATH)")),
        }
    }
    let socket = socket.ok_or("a unix socket URI needs '?socket=PATH'")?;
    if !socket.starts_with('/') {
        return Err(format!("socket path '{socket}' must be absolute"));
    }
    if socket.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path is {} bytes; unix sockets allow {MAX_SOCKET_PATH}",
            socket.len()
        ));
    }
    check_export_name(&export)?;
    Ok(Device::NbdUnix { export, socket })
}

/// The part after `nbd://`: `HOST[:PORT][/EXPORT]`.
fn parse_nbd_tcp(rest: &str) -> Result<Device, String> {
    if rest.contains('?') {
        return Err("nbd:// URIs take no parameters here".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        h.parse::<Ipv6Addr>()
            .map_err(|_| format!("'{h}' is not an IPv6 address"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("the URI has no host".into());
    }
    let port = match port {
        None | Some("") => NBD_DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(format!("port '{p}' is not 1..65535"))?,
    };
    let export = percent_decode(path)?;
    check_export_name(&export)?;
    Ok(Device::NbdTcp { host, port, export })
}

fn check_export_name(name: &str) -> Result<(), String> {
    // NBD export names are at most 4096 bytes (proto.md, "Export names").
    if name.len() > 4096 {
        return Err("export name longer than 4096 bytes".into());
    }
    Ok(())
}

/// `meta-disk internal | PATH | PATH [N]`.
pub(super) fn parse_meta_disk(st: &Stmt) -> Result<MetaDisk, ConfigError> {
    let args = st.args();
    let Some(first) = args.first() else {
        return Err(ConfigError::new(
            st.pos(),
            "'meta-disk' needs a value: meta-disk internal; | meta-disk PATH; | meta-disk PATH [N];",
        ));
    };
    let path = first.text().expect("word");
    if args.len() == 1 {
        return Ok(if path == "internal" {
            MetaDisk::Internal
        } else {
            MetaDisk::External {
                path: path.to_owned(),
                index: None,
            }
        });
    }
    if path == "internal" {
        return Err(ConfigError::new(
            &args[1].pos,
            format!(
                "unexpected {} after 'meta-disk internal'",
                args[1].describe()
            ),
        ));
    }
    let rest: String = args[1..].iter().map(|t| t.text().expect("word")).collect();
    let index = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| {
            ConfigError::new(
                &args[1].pos,
                format!("expected an index like [0] after the meta-disk path, got '{rest}'"),
            )
        })?;
    Ok(MetaDisk::External {
        path: path.to_owned(),
        index: Some(index),
    })
}

/// `[ipv4|ipv6] ADDR:PORT` (IPv6 in brackets), from the words after `address`.
pub(super) fn parse_address(args: &[Token], at: &Pos) -> Result<Address, ConfigError> {
    let first = args
        .first()
        .ok_or_else(|| ConfigError::new(at, "an address is missing: [ipv4|ipv6] ADDR:PORT"))?;
    let (family, rest_tokens) = match first.text().expect("word") {
        "ipv4" => (Some(Family::Ipv4), &args[1..]),
        "ipv6" => (Some(Family::Ipv6), &args[1..]),
        af @ ("ssocks" | "sdp" | "sci") => {
            return Err(ConfigError::new(
                &first.pos,
                format!(
                    "address family '{af}' is not supported by replicatord (ipv4 and ipv6 only)"
                ),
            ));
        }
        _ => (None, args),
    };
    let Some(start) = rest_tokens.first() else {
        return Err(ConfigError::new(
            &first.pos,
            "an address is missing after the family: ipv4 ADDR:PORT or ipv6 [ADDR]:PORT",
        ));
    };
    let text: String = rest_tokens
        .iter()
        .map(|t| t.text().expect("word"))
        .collect();
    let pos = &start.pos;
    let family = family.unwrap_or(if text.starts_with('[') {
        Family::Ipv6
    } else {
        Family::Ipv4
    });
    let (ip, port) = match family {
        Family::Ipv6 => {
            let inner = text.strip_prefix('[').ok_or_else(|| {
                ConfigError::new(
                    pos,
                    format!("an IPv6 address goes in brackets: ipv6 [ADDR]:PORT, got '{text}'"),
                )
            })?;
            let (a, p) = inner.split_once("]:").ok_or_else(|| {
                ConfigError::new(pos, format!("expected [ADDR]:PORT, got '{text}'"))
            })?;
            let ip = a
                .parse::<Ipv6Addr>()
                .map_err(|_| ConfigError::new(pos, format!("'{a}' is not an IPv6 address")))?;
            (IpAddr::V6(ip), p)
        }
        Family::Ipv4 => {
            let (a, p) = text.rsplit_once(':').ok_or_else(|| {
                ConfigError::new(pos, format!("expected ADDR:PORT, got '{text}'"))
            })?;
            if a.starts_with('[') {
                return Err(ConfigError::new(
                    pos,
                    format!("'{text}' is an IPv6 address: write 'ipv6 {text}'"),
                ));
            }
            let ip = a
                .parse::<Ipv4Addr>()
                .map_err(|_| ConfigError::new(pos, format!("'{a}' is not an IPv4 address (replicatord needs an IP address, not a host name)")))?;
            (IpAddr::V4(ip), p)
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::new(pos, format!("port '{port}' is not 1..65535")))?;
    Ok(Address { family, ip, port })
}

/// `host NAME [address [AF] ADDR:PORT] [port PORT];`
pub(super) fn parse_endpoint(st: &Stmt) -> Result<RawEndpoint, ConfigError> {
    let args = st.args();
    let name = args.first().ok_or_else(|| {
        ConfigError::new(
            st.pos(),
            "'host' needs a host name: host NAME [address ADDR:PORT | port PORT];",
        )
    })?;
    let mut ep = RawEndpoint {
        host: name.text().expect("word").to_owned(),
        address: None,
        port: None,
        pos: name.pos.clone(),
    };
    match args.get(1).and_then(Token::text) {
        None => {}
        Some("address") => {
            if let Some(v) = args.iter().skip(2).find(|t| t.text() == Some("via")) {
                return Err(ConfigError::new(
                    &v.pos,
                    "'via proxy' (DRBD Proxy) is not supported by replicatord",
                ));
            }
            ep.address = Some(parse_address(&args[2..], &args[1].pos)?);
        }
        Some("port") => {
            let t = args
                .get(2)
                .ok_or_else(|| ConfigError::new(&args[1].pos, "'port' needs a number"))?;
            let p = t
                .text()
                .expect("word")
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    ConfigError::new(&t.pos, format!("port {} is not 1..65535", t.describe()))
                })?;
            if let Some(extra) = args.get(3) {
                return Err(ConfigError::new(
                    &extra.pos,
                    format!("unexpected {} after the port", extra.describe()),
                ));
            }
            ep.port = Some(p);
        }
        Some("via") => {
            return Err(ConfigError::new(
                &args[1].pos,
                "'via proxy' (DRBD Proxy) is not supported by replicatord",
            ));
        }
        Some(_) => {
            return Err(ConfigError::new(
                &args[1].pos,
                format!(
                    "unexpected {} (host NAME [address ADDR:PORT | port PORT];)",
                    args[1].describe()
                ),
            ));
        }
    }
    Ok(ep)
}

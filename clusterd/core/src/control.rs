//! The control protocol between `clusterctl` and `clusterd`, over `STATE_DIR/control.sock`
//! (a unix stream socket).
//!
//! # Framing
//! Each message is one frame: `b"TCTL"`, protocol version (u16 BE), payload length (u32 BE),
//! CRC-32 of the payload (u32 BE), then the payload: a JSON [`Request`] or [`Response`].
//! A frame longer than [`MAX_FRAME_BYTES`] is refused (the reader closes the connection with an
//! error response) — a CIB of thousands of resources is a few MiB, far below the bound.
//! One request, one response, then either side may close; a client may send several requests
//! on one connection, in sequence.
//!
//! # Versions
//! - 1: GetCib, PushCib, Status, Cleanup, SetNodeAttribute, Ping.
//!
//! A server answers a frame of a newer version with `Response::Error { kind: Unsupported }`
//! written in its own version, so an old daemon tells a new clusterctl what is wrong.
//!
//! # Semantics the daemon implements
//! - `GetCib` → `Cib(cib)`.
//! - `PushCib { cib, expected }` → the daemon calls [`accept_push`], persists the result
//!   atomically, and answers `Pushed { version }`, or `Error { kind: Stale }`.
//! - `Status` → `Status { cib, status, transition }`, the status at the time of the request and
//!   the transition in progress (if any); clusterctl renders it ([`crate::report`]).
//! - `Cleanup { resource, node }` → forgets failures ([`ClusterStatus::cleanup`]), re-plans,
//!   `Ok`.
//! - `SetNodeAttribute { node, name, value }` → sets (`Some`) or deletes (`None`) a transient
//!   node attribute; promotion scores are `master-RSC` attributes (the `crm_master` mechanism),
//!   `Ok`.
//! - Standby/unstandby and every configuration change go through `GetCib` + `PushCib`.

use crate::cib::{Cib, CibVersion};
use crate::status::ClusterStatus;
use crate::transition::Transition;
use serde::{Deserialize, Serialize};

/// Socket file name inside the state dir.
pub const SOCKET_NAME: &str = "control.sock";
pub const FRAME_MAGIC: [u8; 4] = *b"TCTL";
pub const PROTOCOL_VERSION: u16 = 1;
/// Header: magic (4) + version (2) + length (4) + crc (4).
pub const HEADER_BYTES: usize = 14;
/// Largest payload accepted. At the bound the reader answers `Error { kind: TooLarge }`.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon there? → `Pong { node, version }`.
    Ping,
    GetCib,
    /// Replace the configuration. `expected`: the version the edit was based on (from
    /// `cluster cib FILE`); the push is refused if the cluster moved on since.
    PushCib {
        cib: Cib,
        expected: Option<CibVersion>,
    },
    Status,
    /// Forget failures of `resource` (all when `None`) on `node` (all when `None`).
    Cleanup {
        resource: Option<String>,
        node: Option<String>,
    },
    /// Set (`Some`) or delete (`None`) a transient node attribute.
    SetNodeAttribute {
        node: String,
        name: String,
        value: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Pong {
        node: String,
        version: String,
    },
    Cib {
        cib: Cib,
    },
    Pushed {
        version: CibVersion,
    },
    Status {
        cib: Cib,
        status: ClusterStatus,
        transition: Option<Transition>,
    },
    Ok,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A push based on an older configuration.
    Stale,
    /// The CIB failed validation; the message names what.
    Invalid,
    /// No such resource or node.
    NotFound,
    /// Frame or request the server does not understand (version, JSON).
    Unsupported,
    TooLarge,
    Internal,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad magic {0:?}: not a clusterd control frame")]
    BadMagic([u8; 4]),
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(u32),
    #[error("checksum mismatch: frame damaged")]
    Checksum,
    #[error("bad payload: {0}")]
    Payload(String),
    #[error("truncated frame")]
    Truncated,
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let payload = serde_json::to_vec(msg).expect("control messages always serialise");
    let len = u32::try_from(payload.len()).expect("control payload below 4 GiB");
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parsed frame header: how many payload bytes to read next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub len: u32,
    pub crc: u32,
}

/// Checks a 14-byte header.
pub fn decode_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, FrameError> {
    let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    let len = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(bytes[10..14].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    Ok(Header { version, len, crc })
}

/// Checks and parses a payload read after `header`.
pub fn decode_payload<T: for<'de> Deserialize<'de>>(
    header: &Header,
    payload: &[u8],
) -> Result<T, FrameError> {
    if payload.len() != header.len as usize {
        return Err(FrameError::Truncated);
    }
    if crc32fast::hash(payload) != header.crc {
        return Err(FrameError::Checksum);
    }
    serde_json::from_slice(payload).map_err(|e| FrameError::Payload(e.to_string()))
}

/// Decodes one whole frame from a buffer (header + payload).
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FrameError> {
    let head: &[u8; HEADER_BYTES] = bytes
        .get(..HEADER_BYTES)
        .ok_or(FrameError::Truncated)?
        .try_into()
        .expect("len checked");
    let header = decode_header(head)?;
    decode_payload(&header, &bytes[HEADER_BYTES..])
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error(
        "the cluster configuration changed since this file was fetched (file based on {expected}, cluster now at {current}); run `clusterctl cluster cib FILE` again and redo the edit"
    )]
    Stale {
        expected: CibVersion,
        current: CibVersion,
    },
    #[error(
        "the pushed configuration (version {pushed}) is not newer than the cluster's ({current})"
    )]
    Older {
        pushed: CibVersion,
        current: CibVersion,
    },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] crate::cib::ValidationError),
}

/// The daemon's rule for `PushCib`: with `expected`, the cluster must still be at exactly that
/// version; without it, the pushed version must be newer (Pacemaker's rule for `cibadmin
/// --replace`). The stored CIB gets a version newer than both.
pub fn accept_push(
    current: &Cib,
    pushed: Cib,
    expected: Option<CibVersion>,
) -> Result<Cib, PushError> {
    pushed.validate()?;
    match expected {
        Some(e) if e != current.version => {
            return Err(PushError::Stale {
                expected: e,
                current: current.version,
            });
        }
        None if pushed.version <= current.version => {
            return Err(PushError::Older {
                pushed: pushed.version,
                current: current.version,
            });
        }
        _ => {}
    }
    let mut out = pushed;
    let admin_epoch = out.version.admin_epoch.max(current.version.admin_epoch);
    let epoch = if admin_epoch == current.version.admin_epoch {
        out.version.epoch.max(current.version.epoch + 1)
    } else {
        out.version.epoch
    };
    out.version = CibVersion {
        admin_epoch,
        epoch,
        num_updates: 0,
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_damage() {
        let req = Request::Cleanup {
            resource: Some("A".into()),
            node: None,
        };
        let bytes = encode(&req);
        assert_eq!(decode::<Request>(&bytes), Ok(req));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode::<Request>(&bad), Err(FrameError::Checksum));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode::<Request>(&bad),
            Err(FrameError::BadMagic(_))
        ));
        let mut bad = bytes.clone();
        bad[5] = 9;
        assert_eq!(decode::<Request>(&bad), Err(FrameError::Version(9)));
        assert_eq!(
            decode::<Request>(&bytes[..bytes.len() - 1]),
            Err(FrameError::Truncated)
        );
        let mut big = bytes;
        big[6..10].copy_from_slice(&(MAX_FRAME_BYTES + 1).to_be_bytes());
        assert_eq!(
            decode::<Request>(&big),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }

    #[test]
    fn push_rules() {
        let current = Cib {
            version: CibVersion {
                admin_epoch: 0,
                epoch: 5,
                num_updates: 3,
            },
            ..Default::default()
        };
        let mut pushed = current.clone();
        pushed.version.epoch = 7;
        let ok = accept_push(&current, pushed.clone(), Some(current.version)).unwrap();
        assert_eq!(
            ok.version,
            CibVersion {
                admin_epoch: 0,
                epoch: 7,
                num_updates: 0
            }
        );
        let stale = CibVersion {
            admin_epoch: 0,
            epoch: 4,
            num_updates: 0,
        };
        assert!(matches!(
            accept_push(&current, pushed.clone(), Some(stale)),
            Err(PushError::Stale { .. })
        ));
        let mut older = current.clone();
        older.version.epoch = 5;
        older.version.num_updates = 0;
        assert!(matches!(
            accept_push(&current, older.clone(), None),
            Err(PushError::Older { .. })
        ));
        // With an exact expected version, an unbumped file still yields a newer version.
        let ok = accept_push(&current, older, Some(current.version)).unwrap();
        assert_eq!(ok.version.epoch, 6);
    }
}

//! The control protocol between `replicatorctl` and `replicatord`, over the unix socket
//! `STATE_DIR/control.sock` (mode 0600).
//!
//! Each message is a frame: a 4-byte big-endian length, then that many bytes of JSON. The
//! client sends one [`Request`] and reads one [`Response`] per frame, any number of times on
//! one connection. Every message carries [`PROTOCOL_VERSION`]; a daemon answers a request of
//! another version, or one that does not parse, with an error response (exit code 30) and
//! keeps running.
//!
//! Changelog: version 1 — up, down, primary, secondary, status; then (still version 1: verbs
//! and status fields were only added) connect, disconnect, invalidate, verify, and the status
//! fields `sync`, `counters`, `refusal`, `split_brain`, `last_verify`, `link`.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exit::Exit;
use crate::status::ResourceStatus;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame accepted (a status of many resources fits easily); a larger length prefix is
/// answered with an error and the connection is closed without reading the body.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Name of the control socket in the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What to do.
    pub command: Command,
}

/// The commands the daemon executes (the offline verbs `create-md`, `dump` and `show-gi` are
/// `replicatorctl`'s own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Attach the resource's disk (re-reading the configuration file).
    Up {
        /// Resource name.
        resource: String,
    },
    /// Demote if Primary, then detach.
    Down {
        /// Resource name.
        resource: String,
    },
    /// Become Primary (and open the NBD export).
    Primary {
        /// Resource name.
        resource: String,
        /// Promote a disk that is not UpToDate (`primary --force`).
        #[serde(default)]
        force: bool,
    },
    /// Become Secondary (closing the NBD export).
    Secondary {
        /// Resource name.
        resource: String,
    },
    /// Connect to the peer (StandAlone → WFConnection).
    Connect {
        /// Resource name.
        resource: String,
        /// This node is the split-brain victim: its changes are discarded.
        #[serde(default)]
        discard_my_data: bool,
    },
    /// Drop the connection and stay StandAlone.
    Disconnect {
        /// Resource name.
        resource: String,
    },
    /// Discard the local data and take the peer's (full resync as SyncTarget).
    Invalidate {
        /// Resource name.
        resource: String,
    },
    /// Online verify against the peer.
    Verify {
        /// Resource name.
        resource: String,
        /// Answer only when the verify has finished (with its result).
        #[serde(default)]
        wait: bool,
    },
    /// Report state; every resource of this node when `resource` is absent.
    Status {
        /// Resource name.
        #[serde(default)]
        resource: Option<String>,
    },
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The exit code `replicatorctl` should end with.
    pub exit: Exit,
    /// What happened, for the operator (empty on plain success).
    pub message: String,
    /// Notices (e.g. configuration warnings when `up` re-read the file).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// For `status`.
    #[serde(default)]
    pub status: Vec<ResourceStatus>,
}

impl Response {
    /// A success with a message.
    pub fn ok(message: impl Into<String>) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            exit: Exit::Ok,
            message: message.into(),
            warnings: Vec::new(),
            status: Vec::new(),
        }
    }

    /// A failure.
    pub fn err(exit: Exit, message: impl Into<String>) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            exit,
            message: message.into(),
            warnings: Vec::new(),
            status: Vec::new(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix exceeds [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// The connection closed in the middle of a frame of this length.
    #[error("connection closed in the middle of a {0}-byte frame")]
    Truncated(usize),
    /// I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated(len)
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    assert!(
        body.len() <= MAX_FRAME_BYTES,
        "frame of {} bytes",
        body.len()
    );
    let len = u32::try_from(body.len()).expect("bounded by MAX_FRAME_BYTES");
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

/// Parses a request frame, or says (as a response) what is wrong with it.
pub fn parse_request(frame: &[u8]) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_slice(frame)
        .map_err(|e| Response::err(Exit::Protocol, format!("bad request: not JSON: {e}")))?;
    if let Some(v) = value.get("version")
        && v.as_u64() != Some(u64::from(PROTOCOL_VERSION))
    {
        return Err(Response::err(
            Exit::Protocol,
            format!("bad request: protocol version {v} (this daemon speaks {PROTOCOL_VERSION})"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Response::err(Exit::Protocol, format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_explained() {
        let r = Request {
            version: 1,
            command: Command::Primary {
                resource: "r0".into(),
                force: true,
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"command":{"verb":"primary","resource":"r0","force":true}}"#
        );
        assert_eq!(parse_request(text.as_bytes()), Ok(r));
        let bad = |s: &str| parse_request(s.as_bytes()).unwrap_err();
        assert_eq!(bad("nope").exit, Exit::Protocol);
        assert!(bad("nope").message.starts_with("bad request: not JSON"));
        assert!(
            bad(r#"{"version":2,"command":{"verb":"up","resource":"r"}}"#)
                .message
                .contains("protocol version 2")
        );
        assert!(
            bad(r#"{"version":1,"command":{"verb":"explode","resource":"r"}}"#)
                .message
                .contains("unknown variant `explode`")
        );
        assert!(
            bad(r#"{"version":1,"command":{"verb":"up"}}"#)
                .message
                .contains("missing field `resource`")
        );
        assert!(
            bad(r#"{"version":1,"command":{"verb":"up","resource":"r","x":1}}"#)
                .message
                .contains("unknown field `x`")
        );
        assert!(
            bad(r#"{"version":1}"#)
                .message
                .contains("missing field `command`")
        );
    }

    #[tokio::test]
    async fn frames_are_length_prefixed_and_bounded() {
        let (mut a, mut b) = tokio::io::duplex(64);
        write_frame(&mut a, b"{}").await.unwrap();
        assert_eq!(read_frame(&mut b).await.unwrap(), b"{}");
        a.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));
        drop(a);
        assert!(matches!(read_frame(&mut b).await, Err(FrameError::Closed)));
    }
}

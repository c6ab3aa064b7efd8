//! A blocking client of the control socket: one request, one response.

use clusterd_core::control::{self, HEADER_BYTES, Request, Response};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long clusterctl waits for clusterd's answer (a transition is not waited for; only the
/// request itself). At the bound the command fails with exit code 3.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach clusterd at {path}: {source} (is clusterd running? use --state-dir or -f FILE)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to clusterd: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad reply from clusterd: {0}")]
    Frame(#[from] control::FrameError),
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(control::SOCKET_NAME)
}

/// Sends one request and reads the response.
pub fn call(state_dir: &Path, req: &Request) -> Result<Response, ClientError> {
    let path = socket_path(state_dir);
    let mut s = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))?;
    s.write_all(&control::encode(req))?;
    let mut head = [0u8; HEADER_BYTES];
    s.read_exact(&mut head)?;
    let header = control::decode_header(&head)?;
    let mut payload = vec![0u8; header.len as usize];
    s.read_exact(&mut payload)?;
    Ok(control::decode_payload(&header, &payload)?)
}

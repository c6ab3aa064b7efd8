//! The control socket: `STATE_DIR/control.sock`, mode 0600, speaking
//! `clusterd_core::control` frames. Each connection is a task that decodes requests (parse
//! once, at the edge: a bad frame gets an `Error` response and the connection is closed) and
//! hands them to the event loop, which alone touches the state.

use std::path::Path;
use std::sync::Arc;

use clusterd_core::control::{self, ErrorKind, FrameError, HEADER_BYTES, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::daemon::Event;

/// Connections served at once; further clients wait in the listen backlog until one closes.
pub const MAX_CONTROL_CLIENTS: usize = 32;

/// Binds the socket (replacing a stale one), mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Created under a umask that leaves no group/other bits, then made exactly 0600.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts connections forever, forwarding requests to `events`.
pub async fn serve(listener: UnixListener, events: mpsc::Sender<Event>) {
    let slots = Arc::new(Semaphore::new(MAX_CONTROL_CLIENTS));
    loop {
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        match listener.accept().await {
            Ok((stream, _)) => {
                let events = events.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, events).await {
                        debug!(error = %e, "control connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "accept on the control socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(mut s: UnixStream, events: mpsc::Sender<Event>) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; HEADER_BYTES];
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let header = match control::decode_header(&head) {
            Ok(h) => h,
            Err(e) => {
                let kind = match e {
                    FrameError::TooLarge(_) => ErrorKind::TooLarge,
                    _ => ErrorKind::Unsupported,
                };
                reply(
                    &mut s,
                    &Response::Error {
                        kind,
                        message: e.to_string(),
                    },
                )
                .await?;
                return Ok(());
            }
        };
        let mut payload = vec![0u8; header.len as usize];
        s.read_exact(&mut payload).await?;
        let req: Request = match control::decode_payload(&header, &payload) {
            Ok(r) => r,
            Err(e) => {
                reply(
                    &mut s,
                    &Response::Error {
                        kind: ErrorKind::Unsupported,
                        message: e.to_string(),
                    },
                )
                .await?;
                return Ok(());
            }
        };
        let (tx, rx) = oneshot::channel();
        if events.send(Event::Control(req, tx)).await.is_err() {
            return Ok(());
        }
        let resp = rx.await.unwrap_or(Response::Error {
            kind: ErrorKind::Internal,
            message: "clusterd is shutting down".into(),
        });
        reply(&mut s, &resp).await?;
    }
}

async fn reply(s: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    s.write_all(&control::encode(resp)).await?;
    s.flush().await
}

/// A blocking client for one request (the shims and tests use it).
pub fn request_blocking(socket: &Path, req: &Request) -> Result<Response, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to clusterd at {}: {e}", socket.display()))?;
    s.write_all(&control::encode(req))
        .map_err(|e| format!("sending to clusterd: {e}"))?;
    let mut head = [0u8; HEADER_BYTES];
    s.read_exact(&mut head)
        .map_err(|e| format!("reading clusterd's answer: {e}"))?;
    let header = control::decode_header(&head).map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; header.len as usize];
    s.read_exact(&mut payload)
        .map_err(|e| format!("reading clusterd's answer: {e}"))?;
    control::decode_payload(&header, &payload).map_err(|e| e.to_string())
}

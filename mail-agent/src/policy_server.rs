//! The auth-policy HTTP service Dovecot calls (`auth_policy_server_url`): a thin driver
//! around [`crate::policy`]. It listens on loopback only and answers only requests carrying
//! the API key Dovecot is configured with (`X-Tandem-Key`), so a local user cannot clear a
//! lockout by posting fake successes.
//!
//! State lives in files on the mount (`state/accounts/lockout.json`, `accounts.json`): each
//! request takes the accounts lock, reads them, decides, writes the lockout book back if it
//! changed, and releases the lock. The `account` command uses the same lock, so an `unlock`
//! while the service runs is never lost, and a lock survives a restart or failover. The
//! configuration is re-read when `mail.toml` changes (an account added by `account add`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::accounts;
use crate::config::MailConfig;
use crate::layout::Layout;
use crate::policy::{self, Answer, Request};

/// Largest request body accepted (Dovecot's are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

struct Inner {
    config_path: PathBuf,
    layout: Layout,
    key: String,
    cfg: MailConfig,
    cfg_mtime: Option<SystemTime>,
}

type Shared = Arc<Mutex<Inner>>;

/// What Dovecot asks (`?command=`), parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Before (and after) the password check: may this login go on?
    Allow,
    /// After the login: how did it end?
    Report,
}

#[derive(Deserialize)]
struct Cmd {
    command: Option<String>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Inner {
    fn refresh_config(&mut self) {
        let m = mtime(&self.config_path);
        if m == self.cfg_mtime {
            return;
        }
        match crate::config::load(&self.config_path) {
            Ok(c) => {
                self.cfg = c;
                self.cfg_mtime = m;
                crate::note!(
                    "policy: configuration re-read ({} accounts)",
                    self.cfg.accounts.len()
                );
            }
            Err(e) => crate::note!("policy: keeping the previous configuration: {e}"),
        }
    }

    fn handle(&mut self, command: Command, req: &Request) -> Result<Answer, String> {
        self.refresh_config();
        let _lock = accounts::lock(&self.layout).map_err(|e| e.to_string())?;
        let now = now_s();
        let mut book = accounts::read_lockouts(&self.layout).map_err(|e| e.to_string())?;
        match command {
            Command::Allow => {
                let recs = accounts::read_accounts(&self.layout).map_err(|e| e.to_string())?;
                let ans = policy::allow(req, &self.cfg, &recs, &book, now);
                let stage = if req.authenticated == "yes" {
                    "after password"
                } else {
                    "before password"
                };
                if ans.refuses() {
                    crate::note!(
                        "policy: refuse login={:?} protocol={} remote={} ({stage}): {}",
                        req.login,
                        req.protocol,
                        req.remote,
                        ans.msg
                    );
                }
                Ok(ans)
            }
            Command::Report => {
                let before = book.clone();
                if let Some(out) = policy::report(req, &self.cfg, &mut book, now) {
                    crate::note!(
                        "policy: failed login={:?} protocol={} remote={}: {out:?}",
                        req.login,
                        req.protocol,
                        req.remote
                    );
                }
                book.prune(now, crate::lockout::Rules::from(&self.cfg.policy));
                if book != before {
                    accounts::write_lockouts(&self.layout, &book).map_err(|e| e.to_string())?;
                }
                Ok(Answer {
                    status: 0,
                    msg: String::new(),
                })
            }
        }
    }
}

async fn decide(
    State(shared): State<Shared>,
    Query(cmd): Query<Cmd>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Answer>, (StatusCode, String)> {
    let mut inner = shared
        .lock()
        .expect("the policy state lock is never poisoned: handlers do not panic");
    let key_ok = headers
        .get("x-tandem-key")
        .is_some_and(|v| same_secret(v.as_bytes(), inner.key.as_bytes()));
    if !key_ok {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Tandem-Key".into(),
        ));
    }
    let req: Request = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?;
    let command = match cmd.command.as_deref().unwrap_or_default() {
        "allow" => Command::Allow,
        "report" => Command::Report,
        // The client's mistake, not ours (a 400, not a 500): Dovecot only sends these two.
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("unknown command {other:?} (expected allow or report)"),
            ));
        }
    };
    inner.handle(command, &req).map(Json).map_err(|e| {
        crate::note!("policy: error: {e}");
        (StatusCode::INTERNAL_SERVER_ERROR, e)
    })
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Builds the router (public for tests).
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", post(decide))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Runs the service until SIGTERM.
pub fn run(config_path: &Path, layout: &Layout) -> anyhow::Result<()> {
    let cfg = crate::config::load(config_path)?;
    let key = crate::setup::secrets(layout)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .policy_key;
    let addr: SocketAddr = cfg.policy.listen;
    let shared = Arc::new(Mutex::new(Inner {
        config_path: config_path.to_path_buf(),
        layout: layout.clone(),
        key,
        cfg_mtime: mtime(config_path),
        cfg,
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        crate::note!("policy: listening on {addr}");
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
        };
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(shutdown)
            .await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn serves_decisions_and_persists_lockouts() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let cfg_path = dir.path().join("mail.toml");
        std::fs::write(
            &cfg_path,
            "hostname = \"mail.example.com\"\ndomains = [\"example.com\"]\nlisten = \"10.0.0.5\"\n[policy]\nlockout_failures = 2\n[[account]]\naddress = \"a@example.com\"\nclass = \"general\"\n",
        )
        .unwrap();
        let shared = Arc::new(Mutex::new(Inner {
            config_path: cfg_path.clone(),
            layout: layout.clone(),
            key: "K".into(),
            cfg: crate::config::load(&cfg_path).unwrap(),
            cfg_mtime: mtime(&cfg_path),
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router(shared)).await.unwrap() });
            let post = |cmd: &'static str, key: &'static str, body: &'static str| async move {
                tokio::task::spawn_blocking(move || {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    write!(
                        s,
                        "POST /?command={cmd} HTTP/1.1\r\nHost: x\r\nX-Tandem-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out
                })
                .await
                .unwrap()
            };
            let r = post("allow", "wrong", r#"{"login":"a@example.com","protocol":"imap"}"#).await;
            assert!(r.starts_with("HTTP/1.1 401"), "{r}");
            let r = post("allow", "K", r#"{"login":"a@example.com","protocol":"imap","authenticated":""}"#).await;
            assert!(r.starts_with("HTTP/1.1 200") && r.ends_with(r#"{"status":0,"msg":""}"#), "{r}");
            for _ in 0..2 {
                post("report", "K", r#"{"login":"a@example.com","protocol":"imap","success":false,"policy_reject":false}"#).await;
            }
            let r = post("allow", "K", r#"{"login":"a@example.com","protocol":"imap"}"#).await;
            assert!(r.contains(r#""status":-1"#) && r.contains("account locked"), "{r}");
            // Bad requests get a 4xx naming what is wrong, and the service keeps answering.
            let big = format!("{{\"login\":\"{}\"}}", "a".repeat(MAX_BODY_BYTES));
            let big: &'static str = Box::leak(big.into_boxed_str());
            let deep: &'static str = Box::leak(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_boxed_str());
            for (cmd, body, want) in [
                ("allow", "not json", "HTTP/1.1 400"),
                ("allow", r#"{"login":5}"#, "HTTP/1.1 400"),
                ("report", r#"{"login":"a@example.com","success":"yes"}"#, "HTTP/1.1 400"),
                ("allow", deep, "HTTP/1.1 400"),
                ("allow", big, "HTTP/1.1 413"),
                ("bogus", "{}", "HTTP/1.1 400"),
                ("", "{}", "HTTP/1.1 400"),
            ] {
                let r = post(cmd, "K", body).await;
                assert!(r.starts_with(want), "{cmd} {:.40}: {r}", body);
            }
            let r = post("bogus", "K", "{}").await;
            assert!(r.contains("unknown command \"bogus\""), "{r}");
            let r = post("allow", "K", r#"{"login":"a@example.com","protocol":"imap"}"#).await;
            assert!(r.starts_with("HTTP/1.1 200") && r.contains("account locked"), "{r}");
        });
        let book = accounts::read_lockouts(&layout).unwrap();
        assert!(
            book.locked_until("a@example.com", now_s()).is_some(),
            "the lock is on disk"
        );
    }
}

//! Helpers for replicatord's system tests: a node (config, state dir, daemon) in a temp dir,
//! `replicatorctl` runs, and JSON status. Everything is removed on drop (the daemon is a
//! `tandem_testkit::proc::Daemon`, killed with its process group).

#![allow(dead_code)]

pub mod pair;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tandem_testkit::proc::Daemon;
use tandem_testkit::wait;

pub const REPLICATORD: &str = env!("CARGO_BIN_EXE_replicatord");
pub const REPLICATORCTL: &str = env!("CARGO_BIN_EXE_replicatorctl");

/// The result of one command.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle) || self.stdout.contains(needle),
            "expected {needle:?} in:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(program);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// One node: a work directory with its configuration, state directory and (maybe) a daemon.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub config: PathBuf,
    pub state: PathBuf,
    pub daemon: Option<Daemon>,
    /// The network namespace the daemon runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Extra environment of the daemon (e.g. `REPLICATORD_ACK_SPIN_US`).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// A node `name` whose configuration is `config` (written to `DIR/r.res`; `@DIR@` in it is
    /// replaced by the work directory).
    pub fn new(name: &str, config: &str) -> Self {
        Self::new_in("/tmp", name, config)
    }

    /// As [`Node::new`], with the work directory under `base` (e.g. tmpfs).
    pub fn new_in(base: &str, name: &str, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rt")
            .tempdir_in(base)
            .expect("tempdir");
        let text = config.replace("@DIR@", &dir.path().to_string_lossy());
        let path = dir.path().join("r.res");
        std::fs::write(&path, text).expect("write config");
        let state = dir.path().join("st");
        Node {
            name: name.to_owned(),
            config: path,
            state,
            dir,
            daemon: None,
            netns: None,
            env: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates a sparse backing file.
    pub fn file(&self, rel: &str, bytes: u64) -> PathBuf {
        let p = self.path(rel);
        let f = std::fs::File::create(&p).expect("create backing file");
        f.set_len(bytes).expect("size backing file");
        p
    }

    /// `replicatorctl` with this node's config, node name and state dir.
    pub fn ctl(&self, args: &[&str]) -> Out {
        let mut all: Vec<&str> = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--node",
            &self.name,
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run(REPLICATORCTL, &all, &[])
    }

    /// Starts the daemon and waits for its control socket.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let mut c = match &self.netns {
            Some(ns) => {
                // nsenter --net, not ip netns exec: no private copy of the mount table that
                // would keep other tests' mounts (and loop devices) busy (tests/src/netns.rs).
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(REPLICATORD);
                c
            }
            None => Command::new(REPLICATORD),
        };
        c.args([
            "--config",
            self.config.to_str().unwrap(),
            "--node",
            &self.name,
            "--state-dir",
            self.state.to_str().unwrap(),
        ]);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.env(
            "RUST_LOG",
            std::env::var("REPLICATOR_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let log = self.path(&format!("replicatord-{}.log", self.name));
        let d = Daemon::spawn("replicatord", c, &log);
        self.daemon = Some(d);
        let sock = self.state.join("control.sock");
        let log2 = log.clone();
        wait::until(
            &format!("replicatord's control socket (log {})", log2.display()),
            Duration::from_secs(20),
            || sock.exists() && self.ctl(&["status"]).code == 0,
        );
    }

    /// SIGTERM and wait for a clean exit; returns its exit code.
    pub fn stop(&mut self) -> i32 {
        let mut d = self.daemon.take().expect("daemon running");
        let status = d
            .stop(Duration::from_secs(30))
            .expect("replicatord exits by itself on SIGTERM");
        status.code().unwrap_or(-1)
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        let mut d = self.daemon.take().expect("daemon running");
        d.kill9();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path(&format!("replicatord-{}.log", self.name)))
            .unwrap_or_default()
    }

    /// `status --json RES` as JSON.
    pub fn status(&self, res: &str) -> serde_json::Value {
        let o = self.ctl(&["status", "--json", res]);
        o.ok();
        serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", o.stdout))
    }

    /// The export URI from `status`.
    pub fn uri(&self, res: &str) -> String {
        self.status(res)["export"]["uri"]
            .as_str()
            .expect("uri")
            .to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
            if std::thread::panicking() {
                eprintln!("---- replicatord log of {} ----\n{}", self.name, self.log());
            }
        }
    }
}

/// `PATH` with Debian's tools first (nbdsh needs Debian's python3).
pub fn debian_env() -> Vec<(&'static str, String)> {
    vec![("PATH", tandem_testkit::debian_path())]
}

/// A standalone resource `r0` on node `n1` over `DIR/data.img` with internal meta-data.
pub const STANDALONE: &str = "resource r0 {
  device /dev/drbd0;
  disk @DIR@/data.img;
  meta-disk internal;
  on n1 { }
}
";

/// Runs `program` with Debian's PATH.
pub fn run_debian(program: &str, args: &[&str]) -> Out {
    let path = tandem_testkit::debian_path();
    run(program, args, &[("PATH", &path)])
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

impl Node {
    /// Another node of the same configuration (same files, written into its own work dir with
    /// `@DIR@` pointing at `first`'s work dir), with its own state dir.
    pub fn sibling(first: &Node, name: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("rt")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let path = dir.path().join("r.res");
        std::fs::copy(&first.config, &path).expect("copy config");
        let state = dir.path().join("st");
        Node {
            name: name.to_owned(),
            config: path,
            state,
            dir,
            daemon: None,
            netns: None,
            env: Vec::new(),
        }
    }
}

/// Sends raw bytes to a control socket and returns what came back (until EOF or a 2 s read
/// timeout): for testing malformed requests.
pub fn raw_control(state: &Path, bytes: &[u8], close_write: bool) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(state.join("control.sock")).expect("connect control socket");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(bytes).expect("send");
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Frames `body` for the control protocol.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (u32::try_from(body.len()).unwrap()).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Decodes response frames.
pub fn responses(mut bytes: &[u8]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let body = &bytes[4..4 + len];
        out.push(serde_json::from_slice(body).expect("response is JSON"));
        bytes = &bytes[4 + len..];
    }
    out
}

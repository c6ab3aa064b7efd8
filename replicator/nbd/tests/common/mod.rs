//! Test harness: an in-process server on a unix socket in a temp dir, a raw NBD client for
//! byte-exact probes, and helpers to run the real clients.
#![allow(dead_code, clippy::cast_possible_truncation)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tandem_nbd::proto::*;
use tandem_nbd::{
    Export, ExportLookup, Exports, FileBackend, FileOptions, Listener, Server, ServerConfig,
};

/// Everything the server logs, for assertions on log lines (nextest runs one test per process).
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let make = move || LogWriter(w.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("tandem_nbd=debug")
            .with_ansi(false)
            .with_writer(make)
            .try_init();
        buf
    })
    .clone()
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running in-process server.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub img: PathBuf,
    pub exports: Arc<Exports>,
    pub export: Arc<Export>,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub const EXPORT: &str = "disk";

impl TestServer {
    /// Serves a fresh sparse file of `size` bytes as export "disk" (also the default export).
    pub fn start(size: u64) -> Self {
        Self::start_with(size, FileOptions::default(), ServerConfig::default())
    }

    pub fn start_with(size: u64, opts: FileOptions, config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let backend = FileBackend::open(&img, opts).expect("open backend");
        let export = Export::with_description(EXPORT, Some("test disk".into()), Arc::new(backend));
        let exports = Exports::new();
        exports.insert(export.clone());
        exports.set_default(Some(EXPORT));
        let mut me = Self::serve(dir, img, exports.clone(), config);
        me.export = export;
        me
    }

    /// Serves with a custom lookup (the file is still created, unused unless the lookup uses it).
    pub fn start_lookup(lookup: Arc<dyn ExportLookup>, config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("disk.img");
        let exports = Exports::new();
        let mut me = Self::serve_lookup(dir, img, lookup, config);
        me.exports = exports;
        me
    }

    fn serve(
        dir: tempfile::TempDir,
        img: PathBuf,
        exports: Arc<Exports>,
        config: ServerConfig,
    ) -> Self {
        let mut me = Self::serve_lookup(dir, img, exports.clone(), config);
        me.exports = exports;
        me
    }

    fn serve_lookup(
        dir: tempfile::TempDir,
        img: PathBuf,
        lookup: Arc<dyn ExportLookup>,
        config: ServerConfig,
    ) -> Self {
        logs();
        let sock = dir.path().join("nbd.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = {
            let _g = rt.enter();
            Listener::bind_unix(&sock).expect("bind")
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(lookup, config);
        let done = rt.spawn(async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
        });
        let placeholder = Export::new("unused", Arc::new(NullBackend));
        Self {
            dir,
            sock,
            img,
            exports: Exports::new(),
            export: placeholder,
            rt: Some(rt),
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// `nbd+unix:///NAME?socket=...` for the export.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///{EXPORT}?socket={}", self.sock.display())
    }

    pub fn uri_for(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock.display())
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().unwrap()
    }

    /// Stops the server gracefully and waits for `serve` to return.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
            let done = self.done.take().unwrap();
            let r = self
                .runtime()
                .block_on(async { tokio::time::timeout(Duration::from_secs(60), done).await });
            r.expect("server did not stop within 60 s")
                .expect("serve task panicked")
                .expect("serve failed");
        }
    }

    /// Whether `serve` is still running.
    pub fn is_serving(&self) -> bool {
        self.done.as_ref().is_some_and(|d| !d.is_finished())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A backend that is never used (placeholder).
struct NullBackend;
impl tandem_nbd::Backend for NullBackend {
    fn size(&self) -> u64 {
        0
    }
    fn capabilities(&self) -> tandem_nbd::Capabilities {
        tandem_nbd::Capabilities::FULL
    }
    fn read(&self, _: u64, _: u32) -> tandem_nbd::BoxFuture<'_, std::io::Result<Vec<u8>>> {
        Box::pin(async { Err(std::io::Error::other("null")) })
    }
    fn write(
        &self,
        _: u64,
        _: tandem_nbd::Bytes,
        _: bool,
    ) -> tandem_nbd::BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Err(std::io::Error::other("null")) })
    }
    fn flush(&self) -> tandem_nbd::BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn write_zeroes(
        &self,
        _: u64,
        _: u64,
        _: tandem_nbd::ZeroFlags,
    ) -> tandem_nbd::BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Err(std::io::Error::other("null")) })
    }
}

/// Runs a command with a bounded time; returns (exit code, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(program)
        .args(args)
        .env("PATH", tandem_testkit::debian_path());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns stdout.
pub fn ok(program: &str, args: &[&str]) -> String {
    let (code, out, err) = run(program, args);
    assert_eq!(
        code,
        0,
        "{program} {args:?} failed ({code}):\nstdout: {out}\nstderr: {err}\n--- server log ---\n{}",
        log_text()
    );
    out
}

pub fn sha256(path: &Path) -> String {
    ok("sha256sum", &[&path.to_string_lossy()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A raw NBD client over a blocking unix socket, for byte-exact protocol probes.
pub struct Raw {
    pub s: UnixStream,
}

impl Raw {
    pub fn connect(sock: &Path) -> Self {
        let s = UnixStream::connect(sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { s }
    }

    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).expect("read from server");
        b
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write to server");
    }

    /// Reads the greeting and answers with `flags`.
    pub fn hello(&mut self, flags: u32) {
        let g = self.read_n(18);
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        self.send(&flags.to_be_bytes());
    }

    pub fn option(&mut self, code: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }

    /// One option reply: (option, reply type, data).
    pub fn reply(&mut self) -> (u32, u32, Vec<u8>) {
        let h = self.read_n(20);
        assert_eq!(
            u64::from_be_bytes(h[..8].try_into().unwrap()),
            OPTION_REPLY_MAGIC,
            "option reply magic"
        );
        let code = u32::from_be_bytes(h[8..12].try_into().unwrap());
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        (code, kind, self.read_n(len as usize))
    }

    pub fn go_data(name: &str, info: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(info.len() as u16).to_be_bytes());
        for i in info {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    /// Sends GO and reads replies until the final one; returns (size, flags, final reply type,
    /// final data).
    pub fn go(&mut self, name: &str, info: &[u16]) -> (u64, u16, u32, Vec<u8>) {
        self.option(OPT_GO, &Self::go_data(name, info));
        let (mut size, mut flags) = (0, 0);
        loop {
            let (_, kind, data) = self.reply();
            if kind == REP_INFO && u16::from_be_bytes([data[0], data[1]]) == INFO_EXPORT {
                size = u64::from_be_bytes(data[2..10].try_into().unwrap());
                flags = u16::from_be_bytes(data[10..12].try_into().unwrap());
            }
            if kind != REP_INFO {
                return (size, flags, kind, data);
            }
        }
    }

    /// A full handshake to transmission: fixed newstyle, optional structured replies, GO.
    pub fn connect_go(sock: &Path, structured: bool) -> (Self, u64, u16) {
        let mut r = Self::connect(sock);
        r.hello(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if structured {
            r.option(OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(r.reply().1, REP_ACK);
        }
        let (size, flags, kind, _) = r.go(EXPORT, &[]);
        assert_eq!(kind, REP_ACK);
        (r, size, flags)
    }

    pub fn request(
        &mut self,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.send(&b);
    }

    /// A simple reply: (error, cookie).
    pub fn simple_reply(&mut self) -> (u32, u64) {
        let h = self.read_n(16);
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC,
            "simple reply magic"
        );
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    /// A structured chunk: (flags, type, cookie, payload).
    pub fn chunk(&mut self) -> (u16, u16, u64, Vec<u8>) {
        let h = self.read_n(20);
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            STRUCTURED_REPLY_MAGIC,
            "structured reply magic"
        );
        let flags = u16::from_be_bytes(h[4..6].try_into().unwrap());
        let kind = u16::from_be_bytes(h[6..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        (flags, kind, cookie, self.read_n(len as usize))
    }

    /// Whether the server closed the connection (EOF within the read timeout).
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue, // drain anything still queued (e.g. a last reply)
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false, // timed out: still open
            }
        }
    }
}

//! Regression tests of the server's bounds and what happens at each, with backends that hold
//! their completions until the test lets them go: no sleeps decide the outcome, so each test
//! fails (hangs, then the socket read times out) when its fix is undone.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tandem_nbd::proto::*;
use tandem_nbd::{
    Backend, BlockSizes, BoxFuture, Bytes, Capabilities, Export, Extent, FileBackend, FileOptions,
    ServerConfig, ZeroFlags,
};

const MIB: u64 = 1 << 20;

/// A file backend whose writes wait at a gate the test opens, counting arrivals; its block
/// sizes and extents can be set.
struct Gated {
    file: FileBackend,
    arrived: Mutex<u32>,
    gate: tokio::sync::Semaphore,
    block: BlockSizes,
    extents: Option<Vec<Extent>>,
}

impl Gated {
    fn new(file: FileBackend, closed: bool) -> Self {
        let gate = tokio::sync::Semaphore::new(if closed { 0 } else { 1 << 20 });
        Self {
            file,
            arrived: Mutex::new(0),
            gate,
            block: BlockSizes::default(),
            extents: None,
        }
    }
    fn arrived(&self) -> u32 {
        *self.arrived.lock().unwrap()
    }
    fn open(&self) {
        self.gate.add_permits(1 << 20);
    }
}

impl Backend for Gated {
    fn size(&self) -> u64 {
        Backend::size(&self.file)
    }
    fn capabilities(&self) -> Capabilities {
        self.file.capabilities()
    }
    fn block_sizes(&self) -> BlockSizes {
        self.block
    }
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, std::io::Result<Vec<u8>>> {
        self.file.read(offset, len)
    }
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, std::io::Result<()>> {
        *self.arrived.lock().unwrap() += 1;
        Box::pin(async move {
            let _pass = self.gate.acquire().await.expect("gate never closed");
            self.file.write_at(offset, data, fua).await
        })
    }
    fn flush(&self) -> BoxFuture<'_, std::io::Result<()>> {
        self.file.flush()
    }
    fn write_zeroes(&self, o: u64, l: u64, f: ZeroFlags) -> BoxFuture<'_, std::io::Result<()>> {
        self.file.write_zeroes(o, l, f)
    }
    fn block_status(&self, offset: u64, len: u64) -> BoxFuture<'_, std::io::Result<Vec<Extent>>> {
        match &self.extents {
            Some(e) => {
                let e = e.clone();
                Box::pin(async move { Ok(e) })
            }
            None => self.file.block_status(offset, len),
        }
    }
}

fn serve_gated(
    size: u64,
    config: ServerConfig,
    setup: impl FnOnce(&mut Gated),
    closed: bool,
) -> (TestServer, Arc<Gated>) {
    let mut srv = TestServer::start_with(size, FileOptions::default(), config);
    let file = FileBackend::open(&srv.img, FileOptions::default()).unwrap();
    let mut g = Gated::new(file, closed);
    setup(&mut g);
    let g = Arc::new(g);
    let export = Export::new(EXPORT, g.clone());
    srv.exports.insert(export.clone());
    srv.export = export;
    (srv, g)
}

fn write_header(cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut h = REQUEST_MAGIC.to_be_bytes().to_vec();
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&CMD_WRITE.to_be_bytes());
    h.extend_from_slice(&cookie.to_be_bytes());
    h.extend_from_slice(&offset.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// The byte-budget deadlock (fixed in ee5f2e9, tested here deterministically): the reader
/// waiting for budget must keep driving the requests in flight, whose replies free it. The
/// budget (32 MiB) fills with 32 writes held at the gate; the 33rd waits for budget; only then
/// does the gate open. Without the fix nothing polls the 32 writes any more: no reply ever.
#[test]
fn waiting_for_byte_budget_keeps_driving_requests_in_flight() {
    let config = ServerConfig {
        max_in_flight_bytes: 32 << 20,
        ..ServerConfig::default()
    };
    let (srv, gate) = serve_gated(64 * MIB, config, |_| {}, true);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    let n = 33u64;
    let mut w = c.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            let mut h = write_header(i, i * MIB, MIB as u32);
            h.extend(std::iter::repeat_n(i as u8 + 1, MIB as usize));
            std::io::Write::write_all(&mut w, &h).unwrap();
        }
    });
    tandem_testkit::wait::until(
        "32 writes at the gate and the reader waiting for budget",
        Duration::from_secs(30),
        || gate.arrived() == 32 && log_text().contains("byte budget exhausted"),
    );
    gate.open();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let (err, cookie) = c.simple_reply();
        assert_eq!(err, 0);
        assert!(seen.insert(cookie), "cookie {cookie} answered twice");
    }
    sender.join().unwrap();
    assert_eq!(gate.arrived(), 33);
    let data = std::fs::read(&srv.img).unwrap();
    for i in [0usize, 31, 32] {
        assert!(
            data[i << 20..(i + 1) << 20]
                .iter()
                .all(|&b| b == i as u8 + 1),
            "MiB {i}"
        );
    }
}

/// A backend may advertise a maximum block size above the connection's byte budget; a request
/// that large once waited forever for more budget than exists. It now takes the whole budget.
#[test]
fn a_request_larger_than_the_whole_byte_budget_is_served() {
    let config = ServerConfig {
        max_in_flight_bytes: 32 << 20,
        ..ServerConfig::default()
    };
    let (srv, _gate) = serve_gated(
        64 * MIB,
        config,
        |g| {
            g.block = BlockSizes {
                minimum: 1,
                preferred: 4096,
                maximum: 48 << 20,
            }
        },
        false,
    );
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    let len = 40 * MIB as usize;
    let payload: Vec<u8> = (0..len).map(|i| (i / 4096) as u8).collect();
    c.request(0, CMD_WRITE, 1, MIB, len as u32, &payload);
    assert_eq!(c.simple_reply(), (0, 1));
    c.request(0, CMD_READ, 2, MIB, len as u32, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    assert!(c.read_n(len) == payload, "40 MiB read back differs");
}

/// Whether the server closed its end of `c`'s socket (POLLHUP), without reading anything.
fn hung_up(c: &Raw) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: c.s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLHUP != 0
}

/// Bytes waiting in `c`'s receive queue.
fn pending(c: &Raw) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(c.s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD");
    usize::try_from(n).unwrap_or(0)
}

/// Sends READs whose replies (20 MiB) cannot fit the socket buffers, and never reads them;
/// returns once replies have started to arrive (the server's writer is then stuck in the
/// middle of a 1 MiB reply).
fn stall(srv: &TestServer) -> Raw {
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    for i in 0..20 {
        c.request(0, CMD_READ, i, i * MIB, MIB as u32, &[]);
    }
    tandem_testkit::wait::until("replies to start arriving", Duration::from_secs(30), || {
        pending(&c) >= 16 * 1024
    });
    c
}

/// A client that stops reading replies (hung, SIGSTOPped) once kept its connection — the
/// writer task, the socket, the buffers, the export — forever after the export closed or the
/// server shut down: the writer waited on a socket nobody read, and survived even the abort of
/// its connection task. Now the last replies get `shutdown_grace`, then the connection closes.
#[test]
fn a_client_that_stops_reading_is_closed_after_the_grace_period() {
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let mut srv = TestServer::start_with(32 * MIB, FileOptions::default(), config);
    // Demotion: the export closes under a stalled client.
    let c = stall(&srv);
    srv.export.close();
    tandem_testkit::wait::until(
        "the server to close the stalled client's connection after the export closed",
        Duration::from_secs(30),
        || hung_up(&c),
    );
    assert!(log_text().contains("client does not read its last replies"));
    // Shutdown: a fresh export, another stalled client; serve() returns and the socket closes.
    let backend = FileBackend::open(&srv.img, FileOptions::default()).unwrap();
    srv.exports.insert(Export::new(EXPORT, Arc::new(backend)));
    let d = stall(&srv);
    srv.shutdown();
    tandem_testkit::wait::until(
        "the server to close the stalled client's connection after shutdown",
        Duration::from_secs(30),
        || hung_up(&d),
    );
}

/// Descriptors of a BLOCK_STATUS reply MUST be multiples of the advertised minimum block size,
/// whatever extents the backend reports (here unaligned ones under a 4 KiB minimum).
#[test]
fn block_status_descriptors_are_multiples_of_the_minimum_block_size() {
    const H: u32 = STATE_HOLE | STATE_ZERO;
    let (srv, _gate) = serve_gated(
        MIB,
        ServerConfig::default(),
        |g| {
            g.block = BlockSizes {
                minimum: 4096,
                preferred: 4096,
                maximum: 32 << 20,
            };
            g.extents = Some(vec![
                Extent {
                    len: 1000,
                    flags: 0,
                },
                Extent {
                    len: 7192,
                    flags: H,
                },
                Extent {
                    len: 8192,
                    flags: 0,
                },
                Extent { len: 100, flags: H },
            ]);
        },
        false,
    );
    let mut c = Raw::connect(&srv.sock);
    c.hello(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.reply().1, REP_ACK);
    let mut meta = (EXPORT.len() as u32).to_be_bytes().to_vec();
    meta.extend_from_slice(EXPORT.as_bytes());
    meta.extend_from_slice(&1u32.to_be_bytes());
    meta.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
    meta.extend_from_slice(BASE_ALLOCATION.as_bytes());
    c.option(OPT_SET_META_CONTEXT, &meta);
    let (_, kind, data) = c.reply();
    assert_eq!(kind, REP_META_CONTEXT);
    let id = u32::from_be_bytes(data[..4].try_into().unwrap());
    assert_eq!(c.reply().1, REP_ACK);
    let (_, _, kind, _) = c.go(EXPORT, &[INFO_BLOCK_SIZE]);
    assert_eq!(kind, REP_ACK);
    c.request(0, CMD_BLOCK_STATUS, 9, 0, 65536, &[]);
    let (flags, kind, cookie, payload) = c.chunk();
    assert_eq!(
        (flags, kind, cookie),
        (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 9)
    );
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), id);
    let descriptors: Vec<(u32, u32)> = payload[4..]
        .chunks(8)
        .map(|d| {
            (
                u32::from_be_bytes(d[..4].try_into().unwrap()),
                u32::from_be_bytes(d[4..].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(descriptors, [(4096, 0), (4096, H), (8192, 0)]);
    // The connection is still in sync.
    c.request(0, CMD_READ, 10, 0, 4096, &[]);
    let (_, kind, cookie, _) = c.chunk();
    assert_eq!((kind, cookie), (REPLY_TYPE_OFFSET_DATA, 10));
}

/// A backend future dropped in the middle of a WRITE (the shutdown grace ran out while the
/// write waited, as a replicated write waits for its peer): the client never gets a reply for
/// it — it is not acknowledged — and what was written and acknowledged before is intact.
#[test]
fn a_write_dropped_at_the_end_of_the_shutdown_grace_is_never_acknowledged() {
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (mut srv, gate) = serve_gated(8 * MIB, config, |_| {}, false);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.request(0, CMD_WRITE, 1, 0, 4096, &[0x11; 4096]);
    assert_eq!(c.simple_reply(), (0, 1));
    c.request(0, CMD_FLUSH, 2, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    // From now on writes wait at the gate for good.
    gate.gate.forget_permits(1 << 20);
    c.request(0, CMD_WRITE, 3, 0, 4096, &[0x22; 4096]);
    tandem_testkit::wait::until(
        "the write to reach the backend",
        Duration::from_secs(30),
        || gate.arrived() == 2,
    );
    srv.shutdown();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut c.s, &mut rest).expect("the server closes the connection");
    assert!(rest.is_empty(), "no reply to the held write: got {rest:?}");
    let data = std::fs::read(&srv.img).unwrap();
    assert!(
        data[..4096].iter().all(|&b| b == 0x11),
        "the acknowledged write is intact"
    );
}

//! Bad input and rude clients: each gets the protocol's error reply or a clean disconnect with a
//! log line that says what was wrong; the server keeps serving everyone else; nothing written
//! before is lost.
#![allow(clippy::cast_possible_truncation)] // test values are small by construction

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_nbd::proto::*;
use tandem_nbd::{BoxFuture, Export, ExportListing, ExportLookup, Refusal, ServerConfig};

const MIB: u64 = 1 << 20;

/// Writes a known pattern, so later checks can prove it survived.
fn seed(srv: &TestServer) -> Vec<u8> {
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 253) as u8).collect();
    c.request(CMD_FLAG_FUA, CMD_WRITE, 1, 0, 65536, &data);
    assert_eq!(c.simple_reply(), (0, 1));
    data
}

/// The server still answers a fresh client, and the seeded data is intact.
fn still_serving(srv: &TestServer, data: &[u8]) {
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.request(0, CMD_READ, 99, 0, data.len() as u32, &[]);
    assert_eq!(c.simple_reply(), (0, 99));
    assert_eq!(
        c.read_n(data.len()),
        data,
        "data written before the bad client is intact"
    );
    assert!(srv.is_serving());
}

fn assert_logged(needle: &str) {
    let log = log_text();
    assert!(
        log.contains(needle),
        "the log should say {needle:?}:\n{log}"
    );
}

#[test]
fn unknown_client_flags_are_a_clean_disconnect() {
    let srv = TestServer::start(MIB);
    let data = seed(&srv);
    let mut c = Raw::connect(&srv.sock);
    c.hello(0x10);
    assert!(c.closed_by_server());
    assert_logged("client flags 0x00000010 carry unknown bits");
    still_serving(&srv, &data);
}

#[test]
fn wrong_option_magic_is_a_clean_disconnect() {
    let srv = TestServer::start(MIB);
    let data = seed(&srv);
    let mut c = Raw::connect(&srv.sock);
    c.hello(FLAG_C_FIXED_NEWSTYLE);
    c.send(b"GARBAGE!\0\0\0\x07\0\0\0\0");
    assert!(c.closed_by_server());
    assert_logged("option header magic is 0x4741524241474521");
    still_serving(&srv, &data);
}

#[test]
fn oversized_option_is_never_buffered() {
    let srv = TestServer::start(MIB);
    let mut c = Raw::connect(&srv.sock);
    c.hello(FLAG_C_FIXED_NEWSTYLE);
    let mut h = IHAVEOPT.to_be_bytes().to_vec();
    h.extend_from_slice(&OPT_GO.to_be_bytes());
    h.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&h);
    assert!(c.closed_by_server());
    assert_logged("announces 4294967295 bytes of data, more than the 65536-byte limit");
}

#[test]
fn unknown_and_malformed_options_get_errors_and_haggling_goes_on() {
    let srv = TestServer::start(MIB);
    let mut c = Raw::connect(&srv.sock);
    c.hello(FLAG_C_FIXED_NEWSTYLE);
    c.option(1234, b"payload to skip");
    assert_eq!(c.reply().1, REP_ERR_UNSUP);
    // GO whose name length runs past the data.
    c.option(OPT_GO, &[0, 0, 1, 0, b'x', 0, 0]);
    let (_, kind, msg) = c.reply();
    assert_eq!(kind, REP_ERR_INVALID);
    assert!(
        String::from_utf8_lossy(&msg).contains("name length 256"),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    // A GO for an export that does not exist names it.
    let (_, _, kind, msg) = c.go("nope", &[]);
    assert_eq!(kind, REP_ERR_UNKNOWN);
    assert_eq!(
        String::from_utf8_lossy(&msg),
        "there is no export named \"nope\" on this server"
    );
    // Then a good GO still works on the same connection.
    let (size, _, kind, _) = c.go(EXPORT, &[]);
    assert_eq!((size, kind), (MIB, REP_ACK));
    c.request(0, CMD_READ, 5, 0, 4, &[]);
    assert_eq!(c.simple_reply(), (0, 5));
    // ABORT gets an ACK and a close.
    let mut c = Raw::connect(&srv.sock);
    c.hello(FLAG_C_FIXED_NEWSTYLE);
    c.option(OPT_ABORT, &[]);
    assert_eq!(c.reply().1, REP_ACK);
    assert!(c.closed_by_server());
}

/// replicatord's Secondary: GO gets NBD_REP_ERR_POLICY with the reason, which nbdinfo prints.
#[test]
fn a_refusing_lookup_reaches_the_user_with_its_message() {
    struct Secondary;
    impl ExportLookup for Secondary {
        fn lookup<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Arc<Export>, Refusal>> {
            Box::pin(async {
                Err(Refusal::policy(
                    "resource r0 is Secondary on node n1; the export is only served while Primary",
                ))
            })
        }
        fn list(&self) -> BoxFuture<'_, Vec<ExportListing>> {
            Box::pin(async {
                vec![ExportListing {
                    name: "r0".into(),
                    description: Some("Secondary".into()),
                }]
            })
        }
    }
    let srv = TestServer::start_lookup(Arc::new(Secondary), ServerConfig::default());
    // libnbd 1.14 reports the refusal (its message only in debug output).
    let (code, out, err) = run("nbdinfo", &[&srv.uri_for("r0")]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("server replied with error to opt_go request"),
        "{err}"
    );
    let script = format!(
        "import os\ntry:\n    h.connect_uri('{}')\nexcept nbd.Error as e:\n    print('refused:', e.string)",
        srv.uri_for("r0")
    );
    let (_, out, err) = run("env", &["LIBNBD_DEBUG=1", "nbdsh", "-c", &script]);
    assert!(out.contains("refused:"), "{out}{err}");
    assert!(
        err.contains(
            "resource r0 is Secondary on node n1; the export is only served while Primary"
        ),
        "{err}"
    );
    assert_logged("export refused");
    // qemu prints the server's message.
    let (code, _, err) = run(
        "qemu-io",
        &["-f", "raw", "-c", "read 0 512", &srv.uri_for("r0")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("only served while Primary"), "{err}");
}

#[test]
fn bad_requests_get_errors_and_the_stream_stays_in_sync() {
    let srv = TestServer::start(MIB);
    let data = seed(&srv);
    for structured in [false, true] {
        let (mut c, _, _) = Raw::connect_go(&srv.sock, structured);
        let expect_err = |c: &mut Raw, cookie: u64, errno: u32| {
            if structured {
                let (flags, kind, ck, payload) = c.chunk();
                assert_eq!(
                    (flags, kind, ck),
                    (REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie)
                );
                assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), errno);
                let n = u16::from_be_bytes([payload[4], payload[5]]) as usize;
                assert!(
                    n > 0 && payload.len() == 6 + n,
                    "error chunks carry a message"
                );
            } else {
                assert_eq!(c.simple_reply(), (errno, cookie));
            }
        };
        // Unknown command.
        c.request(0, 77, 1, 0, 0, &[]);
        expect_err(&mut c, 1, 22);
        // Unknown flag on a read.
        c.request(1 << 12, CMD_READ, 2, 0, 512, &[]);
        expect_err(&mut c, 2, 22);
        // Write past the end: ENOSPC, and its payload is consumed, not parsed as a header.
        c.request(0, CMD_WRITE, 3, MIB - 10, 100, &[0x25; 100]);
        expect_err(&mut c, 3, 28);
        // Read past the end: EINVAL.
        c.request(0, CMD_READ, 4, MIB, 1, &[]);
        expect_err(&mut c, 4, 22);
        // Oversized read: EINVAL, nothing allocated.
        c.request(0, CMD_READ, 5, 0, u32::MAX, &[]);
        expect_err(&mut c, 5, 22);
        // The connection is still in sync.
        c.request(0, CMD_READ, 6, 0, 8, &[]);
        if structured {
            let (_, kind, ck, payload) = c.chunk();
            assert_eq!((kind, ck), (REPLY_TYPE_OFFSET_DATA, 6));
            assert_eq!(&payload[8..], &data[..8]);
        } else {
            assert_eq!(c.simple_reply(), (0, 6));
            assert_eq!(c.read_n(8), data[..8]);
        }
    }
    assert_logged(
        "NBD_CMD_WRITE of 100 bytes at offset 1048566 runs past the end of the 1048576-byte export",
    );
    assert_logged("unknown command 77");
    still_serving(&srv, &data);
}

#[test]
fn oversized_write_and_wrong_request_magic_are_clean_disconnects() {
    let srv = TestServer::start(64 * MIB);
    let data = seed(&srv);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.request(0, CMD_WRITE, 1, 0, 64 << 20, &[]); // 64 MiB payload announced, never read
    assert!(c.closed_by_server());
    assert_logged(
        "NBD_CMD_WRITE carries a 67108864-byte payload, more than the 33554432-byte maximum",
    );
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.send(&[0xde; 28]);
    assert!(c.closed_by_server());
    assert_logged("request magic 0xdededede, expected 0x25609513");
    still_serving(&srv, &data);
}

/// A client that dies in the middle of a WRITE payload: the partial payload is never written.
#[test]
fn a_write_cut_short_is_not_applied() {
    let srv = TestServer::start(MIB);
    let data = seed(&srv);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    let mut h = REQUEST_MAGIC.to_be_bytes().to_vec();
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&CMD_WRITE.to_be_bytes());
    h.extend_from_slice(&7u64.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&65536u32.to_be_bytes());
    h.extend_from_slice(&[0xff; 30000]); // less than announced
    c.send(&h);
    drop(c);
    still_serving(&srv, &data);
}

/// The kill test: `timeout -s KILL 0.05 nbdcopy` readers and writers killed mid-transfer, in a
/// loop, while another client keeps reading and checking; the server survives (nbdkit 1.32
/// aborts here) and the seeded data is intact.
#[test]
fn clients_killed_mid_transfer_do_not_hurt_the_server() {
    let srv = TestServer::start(64 * MIB);
    let data = seed(&srv);
    let src = srv.dir.path().join("src.img");
    std::fs::write(&src, vec![0x42u8; 32 << 20]).unwrap();
    // A second export over the same backend region is not needed: writers target the upper
    // half through a sub-range copy (nbdcopy writes the whole destination, so it gets its own
    // export image to keep the seeded range untouched).
    let victim = srv.dir.path().join("victim.img");
    std::fs::File::create(&victim)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let backend =
        tandem_nbd::FileBackend::open(&victim, tandem_nbd::FileOptions::default()).unwrap();
    srv.exports.insert(Export::new("victim", Arc::new(backend)));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let stop = stop.clone();
        let sock = srv.sock.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            let (mut c, _, _) = Raw::connect_go(&sock, true);
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                c.request(0, CMD_READ, rounds, 0, 65536, &[]);
                let (_, kind, ck, payload) = c.chunk();
                assert_eq!((kind, ck), (REPLY_TYPE_OFFSET_DATA, rounds));
                assert_eq!(&payload[8..], &data[..], "round {rounds}");
                rounds += 1;
            }
            rounds
        })
    };
    let path = tandem_testkit::debian_path();
    let victim_uri = srv.uri_for("victim");
    let mut killed = 0;
    for i in 0..30 {
        // Readers of the big export, and writers into the victim export.
        let args: Vec<String> = if i % 2 == 0 {
            vec![srv.uri(), "null:".into()]
        } else {
            vec![src.to_string_lossy().into_owned(), victim_uri.clone()]
        };
        let status = Command::new("timeout")
            .args(["-s", "KILL", "0.05", "nbdcopy"])
            .args(&args)
            .env("PATH", &path)
            .status()
            .expect("run timeout nbdcopy");
        // Killed (137) or finished in time (0): both fine; anything else is a client error.
        assert!(
            matches!(status.code(), Some(0) | Some(137) | None),
            "nbdcopy {args:?}: {status}"
        );
        killed += usize::from(status.code() != Some(0));
    }
    assert!(
        killed >= 10,
        "most copies must be killed mid-transfer ({killed} of 30 were)"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = checker.join().expect("the checking client saw a bad reply");
    assert!(rounds > 0);
    still_serving(&srv, &data);
    // The victim export still works end to end.
    ok("nbdcopy", &[&src.to_string_lossy(), &victim_uri]);
    assert_eq!(sha256(&victim), sha256(&src));
}

#[test]
fn connections_beyond_the_limit_are_closed_and_the_rest_keep_working() {
    let srv = TestServer::start_with(
        MIB,
        tandem_nbd::FileOptions::default(),
        ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        },
    );
    let (mut a, _, _) = Raw::connect_go(&srv.sock, false);
    let (mut b, _, _) = Raw::connect_go(&srv.sock, false);
    let mut c = Raw::connect(&srv.sock);
    assert!(
        c.closed_by_server(),
        "the third connection is over the limit"
    );
    assert_logged("too many connections; closing this one");
    a.request(0, CMD_READ, 1, 0, 4, &[]);
    assert_eq!(a.simple_reply(), (0, 1));
    b.request(0, CMD_DISC, 2, 0, 0, &[]);
    assert!(b.closed_by_server());
    // A slot is free again (the server notices the closed connection).
    tandem_testkit::wait::until("a free connection slot", Duration::from_secs(20), || {
        let mut c = Raw::connect(&srv.sock);
        let mut g = [0u8; 18];
        std::io::Read::read_exact(&mut c.s, &mut g).is_ok()
    });
}

#[test]
fn closing_an_export_and_shutting_down_are_graceful() {
    let mut srv = TestServer::start(MIB);
    let data = seed(&srv);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.request(0, CMD_READ, 1, 0, 4, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    // Demotion: the export closes; its client is disconnected, new GOs are refused.
    srv.export.close();
    assert!(c.closed_by_server());
    let mut d = Raw::connect(&srv.sock);
    d.hello(FLAG_C_FIXED_NEWSTYLE);
    let (_, _, kind, msg) = d.go(EXPORT, &[]);
    assert_eq!(kind, REP_ERR_SHUTDOWN);
    assert!(String::from_utf8_lossy(&msg).contains("closing"));
    // A fresh export under the same name serves again (replicatord promoted once more).
    let backend =
        tandem_nbd::FileBackend::open(&srv.img, tandem_nbd::FileOptions::default()).unwrap();
    srv.exports.insert(Export::new(EXPORT, Arc::new(backend)));
    let (mut e, _, _) = Raw::connect_go(&srv.sock, false);
    e.request(0, CMD_READ, 2, 0, 65536, &[]);
    assert_eq!(e.simple_reply(), (0, 2));
    assert_eq!(e.read_n(65536), data);
    // Server shutdown: the client in transmission is closed and serve() returns.
    srv.shutdown();
    assert!(e.closed_by_server());
    assert!(!srv.is_serving());
}

//! Real NBD clients (nbdinfo, nbdsh, qemu-io, nbdcopy, fio) against an in-process server on a
//! unix socket, serving a file.
#![allow(clippy::cast_possible_truncation)] // test values are small by construction

mod common;

use common::*;
use std::time::Duration;
use tandem_nbd::proto::*;

use tandem_nbd::{FileOptions, ServerConfig};

const MIB: u64 = 1 << 20;

#[test]
fn nbdinfo_sees_every_capability_and_the_block_sizes() {
    let srv = TestServer::start(64 * MIB);
    for cap in [
        "flush",
        "fua",
        "trim",
        "zero",
        "fast-zero",
        "cache",
        "multi-conn",
        "df",
    ] {
        let (code, out, err) = run("nbdinfo", &["--can", cap, &srv.uri()]);
        assert_eq!(code, 0, "nbdinfo --can {cap} should be true: {out}{err}");
    }
    let (code, _, _) = run("nbdinfo", &["--is", "read-only", &srv.uri()]);
    assert_eq!(code, 2, "a writable export is not read-only");
    let out = ok("nbdinfo", &["--json", &srv.uri()]);
    for want in [
        "\"export-size\": 67108864",
        "\"block_size_minimum\": 1",
        "\"block_size_preferred\": 4096",
        "\"block_size_maximum\": 33554432",
        "\"base:allocation\"",
    ] {
        assert!(out.contains(want), "nbdinfo --json lacks {want}:\n{out}");
    }
    // NBD_INFO_NAME and NBD_INFO_DESCRIPTION when asked for.
    let script = format!(
        "h = nbd.NBD(); h.set_full_info(True); h.connect_uri('{}'); print(h.get_canonical_export_name(), '/', h.get_export_description())",
        srv.uri()
    );
    assert_eq!(ok("nbdsh", &["-c", &script]).trim(), "disk / test disk");
    // NBD_OPT_LIST
    let list = ok(
        "nbdinfo",
        &[
            "--list",
            &format!("nbd+unix://?socket={}", srv.sock.display()),
        ],
    );
    assert!(list.contains("export=\"disk\""), "{list}");
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let srv = TestServer::start_with(
        8 * MIB,
        FileOptions {
            read_only: true,
            ..FileOptions::default()
        },
        ServerConfig::default(),
    );
    assert_eq!(run("nbdinfo", &["--is", "read-only", &srv.uri()]).0, 0);
    assert_eq!(run("nbdinfo", &["--can", "trim", &srv.uri()]).0, 2);
    let (code, _, err) = run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 1 0 4k", &srv.uri()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("Operation not permitted")
            || err.contains("read-only")
            || err.contains("Permission"),
        "{err}"
    );
}

#[test]
fn nbdinfo_map_reports_holes_and_data() {
    let srv = TestServer::start(8 * MIB);
    ok(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x5a 2M 1M", &srv.uri()],
    );
    let map = ok("nbdinfo", &["--map", &srv.uri()]);
    let rows: Vec<(u64, u64, String)> = map
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3..].join(" "),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, 2 * MIB, "hole,zero".to_owned()),
            (2 * MIB, MIB, "data".to_owned()),
            (3 * MIB, 5 * MIB, "hole,zero".to_owned())
        ],
        "{map}"
    );
    // --totals agrees.
    let totals = ok("nbdinfo", &["--map", "--totals", &srv.uri()]);
    assert!(
        totals
            .lines()
            .any(|l| l.contains("1048576") && l.contains("12.5%") && l.ends_with("data")),
        "{totals}"
    );
}

fn qemu_io_session(srv: &TestServer) {
    let uri = srv.uri();
    let out = ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0xcd 1M 64k",
            "-c",
            "write -P 0xef -f 2M 4k", // FUA
            "-c",
            "read -P 0xab 0 1M",
            "-c",
            "read -P 0xcd 1M 64k",
            "-c",
            "read -P 0xef 2M 4k",
            "-c",
            "discard 0 64k",
            "-c",
            "read -P 0 0 64k",
            "-c",
            "write -z 4M 1M",
            "-c",
            "read -P 0 4M 1M",
            "-c",
            "write -z -u 6M 1M",
            "-c",
            "read -P 0 6M 1M",
            "-c",
            "flush",
            &uri,
        ],
    );
    assert!(
        !out.contains("fail") && !out.contains("Pattern verification failed"),
        "{out}"
    );
    // The file holds what qemu wrote.
    let data = std::fs::read(&srv.img).unwrap();
    assert!(data[64 << 10..MIB as usize].iter().all(|&b| b == 0xab));
    assert!(
        data[MIB as usize..(MIB + 65536) as usize]
            .iter()
            .all(|&b| b == 0xcd)
    );
    assert!(
        data[..65536].iter().all(|&b| b == 0),
        "discarded range reads back as zeroes"
    );
}

#[test]
fn qemu_io_patterns_discard_and_zeroes_over_extended_headers() {
    let srv = TestServer::start(8 * MIB);
    qemu_io_session(&srv);
    let log = log_text();
    assert!(
        log.contains("mode=Extended"),
        "qemu 10 should have negotiated extended headers:\n{log}"
    );
}

#[test]
fn qemu_io_falls_back_to_structured_replies_when_extended_headers_are_refused() {
    let srv = TestServer::start_with(
        8 * MIB,
        FileOptions::default(),
        ServerConfig {
            extended_headers: false,
            ..ServerConfig::default()
        },
    );
    qemu_io_session(&srv);
    let log = log_text();
    assert!(
        log.contains("mode=Structured") && !log.contains("mode=Extended"),
        "{log}"
    );
}

#[test]
fn nbdcopy_image_in_and_out_keeps_checksums() {
    let srv = TestServer::start(32 * MIB);
    let src = srv.dir.path().join("src.img");
    // Half random data, half zeroes (nbdcopy zeroes holes with WRITE_ZEROES).
    let mut data = vec![0u8; 32 * MIB as usize];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut data[..16 * MIB as usize]).unwrap();
    std::fs::write(&src, &data).unwrap();
    ok("nbdcopy", &["--flush", &src.to_string_lossy(), &srv.uri()]);
    assert_eq!(sha256(&srv.img), sha256(&src));
    let out = srv.dir.path().join("out.img");
    ok("nbdcopy", &[&srv.uri(), &out.to_string_lossy()]);
    assert_eq!(sha256(&out), sha256(&src));
    // Several connections at once (nbdcopy uses multi-conn when advertised).
    let out2 = srv.dir.path().join("out2.img");
    ok(
        "nbdcopy",
        &[
            "--connections=4",
            "--requests=32",
            &srv.uri(),
            &out2.to_string_lossy(),
        ],
    );
    assert_eq!(sha256(&out2), sha256(&src));
}

#[test]
fn fio_verifies_crc32c_over_several_jobs_and_connections() {
    let srv = TestServer::start(64 * MIB);
    let uri = srv.uri();
    let out = ok(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bsrange=4k-256k",
            "--iodepth=16",
            "--numjobs=4",
            "--size=16M",
            "--offset_increment=16M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            // No local-verify-N-verify.state files left in the crate directory.
            "--verify_state_save=0",
            "--group_reporting",
        ],
    );
    assert!(out.contains("err= 0"), "{out}");
    // A second pass reads everything back on fresh connections.
    let out = ok(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bsrange=4k-256k",
            "--iodepth=16",
            "--numjobs=4",
            "--size=16M",
            "--offset_increment=16M",
            "--verify=crc32c",
            "--verify_only",
            "--verify_fatal=1",
            // No local-verify-N-verify.state files left in the crate directory.
            "--verify_state_save=0",
            "--group_reporting",
        ],
    );
    assert!(out.contains("err= 0"), "{out}");
}

/// Precise probes through libnbd's Python binding: errors come back with the right errno and
/// the connection stays usable afterwards.
#[test]
fn nbdsh_probes_errors_and_the_connection_survives() {
    let srv = TestServer::start(MIB);
    let script = r#"
import errno, nbd
h.set_strict_mode(0)   # let bad requests reach the server
def fails(f, want):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == want, (e.errnum, e.string)
        return e.string
    raise AssertionError("should have failed")
size = h.get_size()
assert size == 1048576
# Past the end: EINVAL for reads, ENOSPC for writes; the connection keeps working.
print(fails(lambda: h.pread(512, size - 256), errno.EINVAL))
print(fails(lambda: h.pwrite(b"x" * 512, size - 256), errno.ENOSPC))
print(fails(lambda: h.trim(4096, size), errno.EINVAL))
h.pwrite(b"y" * 4096, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 4096) == b"y" * 4096
# Zero-length requests are harmless.
h.pwrite(b"", 0)
h.flush()
h.zero(4096, 4096, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 4096) == bytes(4096)
h.cache(0, size)
# Block status with REQ_ONE returns exactly one extent within the request.
seen = []
h.block_status(65536, 0, lambda ctx, off, ents, err: seen.append(list(ents)), nbd.CMD_FLAG_REQ_ONE)
assert len(seen) == 1 and len(seen[0]) == 2 and seen[0][0] <= 65536, seen
# Unknown command flags: EINVAL, connection fine.
print(fails(lambda: h.pread(512, 0, 1 << 7), errno.EINVAL))
assert h.pread(4096, 4096) == bytes(4096)
print("OK")
"#;
    let out = ok(
        "nbdsh",
        &["--base-allocation", "-u", &srv.uri(), "-c", script],
    );
    assert!(out.trim_end().ends_with("OK"), "{out}");
    // The structured error chunk carried the reason; the server logged it too.
    assert!(log_text().contains("runs past the end of the 1048576-byte export"));
}

/// What the kernel's nbd-client does: NBD_OPT_GO with no information requests and no
/// structured replies; every reply must then be simple. Also the old NBD_OPT_EXPORT_NAME path.
#[test]
fn kernel_style_client_gets_simple_replies() {
    let srv = TestServer::start(MIB);
    let (mut c, size, flags) = Raw::connect_go(&srv.sock, false);
    assert_eq!(size, MIB);
    assert_eq!(flags & TFLAG_SEND_DF, 0, "no DF without structured replies");
    assert_ne!(flags & TFLAG_CAN_MULTI_CONN, 0);
    let payload: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    c.request(0, CMD_WRITE, 1, 8192, 4096, &payload);
    assert_eq!(c.simple_reply(), (0, 1));
    c.request(0, CMD_READ, 2, 8192, 4096, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    assert_eq!(c.read_n(4096), payload);
    c.request(0, CMD_FLUSH, 3, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 3));
    // An error in simple mode carries no payload; the stream stays in sync.
    c.request(0, CMD_READ, 4, MIB, 1, &[]);
    assert_eq!(c.simple_reply(), (22, 4));
    c.request(0, CMD_READ, 5, 8192, 16, &[]);
    assert_eq!(c.simple_reply(), (0, 5));
    assert_eq!(c.read_n(16), payload[..16]);
    c.request(0, CMD_DISC, 6, 0, 0, &[]);
    assert!(c.closed_by_server());

    // NBD_OPT_EXPORT_NAME, with and without the 124 zero bytes.
    for no_zeroes in [false, true] {
        let mut c = Raw::connect(&srv.sock);
        c.hello(FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 });
        c.option(OPT_EXPORT_NAME, EXPORT.as_bytes());
        let r = c.read_n(if no_zeroes { 10 } else { 134 });
        assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), MIB);
        c.request(0, CMD_READ, 9, 8192, 8, &[]);
        assert_eq!(c.simple_reply(), (0, 9));
        assert_eq!(c.read_n(8), payload[..8]);
    }
}

/// Many requests in flight on one connection, answered out of order where the backend allows,
/// every cookie exactly once.
#[test]
fn pipelined_requests_all_get_their_own_reply() {
    let srv = TestServer::start(4 * MIB);
    let (mut c, _, _) = Raw::connect_go(&srv.sock, true);
    let n = 200u64;
    let mut batch = Vec::new();
    for i in 0..n {
        let mut h = REQUEST_MAGIC.to_be_bytes().to_vec();
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&CMD_WRITE.to_be_bytes());
        h.extend_from_slice(&i.to_be_bytes());
        h.extend_from_slice(&(i * 4096).to_be_bytes());
        h.extend_from_slice(&4096u32.to_be_bytes());
        h.extend(std::iter::repeat_n(i as u8, 4096));
        batch.extend(h);
    }
    // The reply side is read on this thread after sending: the socket buffers and the server's
    // bounded in-flight window must not deadlock (the server keeps draining replies).
    let mut w = c.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut w, &batch).unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let (err, cookie) = c.simple_reply();
        assert_eq!(err, 0);
        assert!(seen.insert(cookie), "cookie {cookie} answered twice");
    }
    sender.join().unwrap();
    assert_eq!(seen.len() as u64, n);
    let data = std::fs::read(&srv.img).unwrap();
    for i in 0..n as usize {
        assert!(
            data[i * 4096..(i + 1) * 4096].iter().all(|&b| b == i as u8),
            "block {i}"
        );
    }
}

/// `ServerConfig::thread_per_connection` (a thread and a runtime per client, the file's I/O
/// done right there): real clients see the same server — qemu-io patterns, nbdcopy over 4
/// connections with checksums, fio's crc32c verification — and a shutdown ends every thread.
#[test]
fn a_thread_per_connection_serves_real_clients() {
    let mut srv = TestServer::start_with(
        32 * MIB,
        FileOptions::default(),
        ServerConfig {
            thread_per_connection: true,
            ..ServerConfig::default()
        },
    );
    qemu_io_session(&srv);
    let src = srv.dir.path().join("src.img");
    let mut data = vec![0u8; 32 * MIB as usize];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut data[..24 * MIB as usize]).unwrap();
    std::fs::write(&src, &data).unwrap();
    ok(
        "nbdcopy",
        &[
            "--flush",
            "--connections=4",
            &src.to_string_lossy(),
            &srv.uri(),
        ],
    );
    assert_eq!(sha256(&srv.img), sha256(&src));
    let out = ok(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", srv.uri()),
            "--rw=randwrite",
            "--bsrange=4k-256k",
            "--iodepth=16",
            "--numjobs=2",
            "--size=8M",
            "--offset_increment=8M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--group_reporting",
        ],
    );
    assert!(out.contains("err= 0"), "{out}");
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("nbd-conn-"))
            })
            .count()
    };
    let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
    c.request(0, CMD_READ, 1, 0, 4096, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    tandem_testkit::wait::until(
        "one connection thread, for the one client still connected",
        Duration::from_secs(30),
        || threads() == 1,
    );
    srv.shutdown();
    assert!(c.closed_by_server());
    tandem_testkit::wait::until("connection threads to end", Duration::from_secs(30), || {
        threads() == 0
    });
}

/// READs of every size the server treats differently — small ones read into reused buffers,
/// 64 KiB–1 MiB ones spliced from the file through a pipe (aligned or not; an unaligned 1 MiB
/// READ does not fit a pipe and is read), larger ones read — return exactly the file's bytes,
/// pipelined, on a shared runtime and with a thread per connection; and a READ after a WRITE
/// to the same range sees the WRITE.
#[test]
fn reads_of_every_size_return_the_file_bytes_on_both_runtimes() {
    for thread_per_connection in [false, true] {
        let srv = TestServer::start_with(
            8 * MIB,
            FileOptions::default(),
            ServerConfig {
                thread_per_connection,
                ..ServerConfig::default()
            },
        );
        let mut data = vec![0u8; 8 * MIB as usize];
        let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
        std::io::Read::read_exact(&mut rnd, &mut data).unwrap();
        std::fs::write(&srv.img, &data).unwrap();
        let reads: [(u64, u32); 9] = [
            (0, 4096),
            (777, 65_535),
            (4096, 65_536),
            (12_345, 200_000),
            (MIB, MIB as u32),
            (3 * MIB + 512, MIB as u32),
            (5 * MIB - 1, 300_000),
            (2 * MIB, 2 * MIB as u32),
            (8 * MIB - 65_536, 65_536),
        ];
        let (mut c, _, _) = Raw::connect_go(&srv.sock, false);
        for round in 0..3u64 {
            for (i, (offset, len)) in reads.iter().enumerate() {
                c.request(0, CMD_READ, 100 * round + i as u64, *offset, *len, &[]);
            }
            // Replies come in completion order: match them by cookie.
            for _ in 0..reads.len() {
                let (error, cookie) = c.simple_reply();
                assert_eq!(error, 0);
                let (offset, len) = reads[(cookie - 100 * round) as usize];
                let got = c.read_n(len as usize);
                let want = &data[offset as usize..(offset + u64::from(len)) as usize];
                assert!(
                    got == want,
                    "READ of {len} at {offset} (thread per connection: {thread_per_connection})"
                );
            }
        }
        let new = vec![0x5Au8; 200_000];
        c.request(0, CMD_WRITE, 7, 12_345, 200_000, &new);
        assert_eq!(c.simple_reply(), (0, 7));
        c.request(0, CMD_READ, 8, 12_345, 200_000, &[]);
        assert_eq!(c.simple_reply(), (0, 8));
        assert!(c.read_n(200_000) == new, "a READ after a WRITE sees it");
    }
}

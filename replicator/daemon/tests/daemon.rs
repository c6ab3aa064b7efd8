//! replicatord end to end, as root, with real NBD clients (nbdinfo, qemu-io, nbdcopy, fio) and a
//! real ext4 filesystem on the export (nbdfuse + losetup): promotion rules, the export refusing
//! clients while Secondary or down, data and meta-data across restarts and crashes, malformed
//! control requests, several daemons on one machine.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::pair::Pair;
use common::{Node, STANDALONE, frame, raw_control, responses, run};
use tandem_testkit::blockdev::{Mount, NbdLoop};
use tandem_testkit::require_root;

const MIB: u64 = 1 << 20;

fn ready(n: &mut Node, res: &str, size: u64) {
    n.file("data.img", size);
    n.ctl(&["create-md", res]).ok();
    n.start();
    n.ctl(&["up", res]).ok();
}

#[test]
fn promotion_rules_export_and_status() {
    require_root();
    let mut n = Node::new("n1", STANDALONE);
    n.file("data.img", 64 * MIB);
    n.ctl(&["create-md", "r0"]).ok();
    n.start();
    let mode = std::fs::metadata(n.state.join("control.sock"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    let mode = std::fs::metadata(n.state.join("r0.nbd.sock"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "NBD socket mode: whoever connects can write the device"
    );
    let mode = std::fs::metadata(&n.state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "state directory mode");
    // Down: status says so and the export refuses with the reason.
    let s = n.status("r0");
    assert_eq!(
        (
            s["up"].as_bool(),
            s["role"].as_str(),
            s["disk_state"].as_str()
        ),
        (Some(false), Some("Secondary"), Some("Diskless"))
    );
    let uri = s["export"]["uri"].as_str().unwrap().to_owned();
    assert_eq!(
        uri,
        format!("nbd+unix:///r0?socket={}/r0.nbd.sock", n.state.display())
    );
    let o = run("qemu-io", &["-f", "raw", &uri, "-c", "read 0 512"], &[]);
    assert!(
        o.stderr.contains("resource r0 is down on node n1"),
        "{}",
        o.stderr
    );
    n.ctl(&["primary", "r0"])
        .fails(10, "resource r0 is down: bring it up first");
    // Up: fresh meta-data is Inconsistent; only --force promotes it.
    let o = n.ctl(&["up", "r0"]);
    o.ok();
    assert!(o.stdout.contains("disk Inconsistent"), "{}", o.stdout);
    assert!(
        o.stderr
            .contains("device /dev/drbd0 is a DRBD kernel device name"),
        "the notice is shown at up: {}",
        o.stderr
    );
    n.ctl(&["up", "r0"]).ok();
    n.ctl(&["primary", "r0"])
        .fails(10, "refusing to become Primary: the disk is Inconsistent");
    let o = run("qemu-io", &["-f", "raw", &uri, "-c", "read 0 512"], &[]);
    assert!(
        o.stderr.contains(
            "resource r0 is Secondary on node n1; the export is only served while Primary"
        ),
        "{}",
        o.stderr
    );
    n.ctl(&["primary", "--force", "r0"]).ok();
    n.ctl(&["primary", "r0"]).ok();
    let s = n.status("r0");
    assert_eq!(s["role"], "Primary");
    assert_eq!(s["disk_state"], "UpToDate");
    assert_eq!(s["connection_state"], "StandAlone");
    assert_eq!(s["export"]["open"], true);
    assert_eq!(s["size_bytes"], 64 * MIB - 44 * 1024);
    assert_eq!(s["peers"].as_array().unwrap().len(), 0);
    assert_ne!(
        s["generation"]["current"], "0000000000000004",
        "primary --force starts a new data generation"
    );
    // Real clients see every capability.
    for can in ["flush", "fua", "trim", "zero", "multi-conn"] {
        run("nbdinfo", &["--can", can, &uri], &[]).ok();
    }
    let o = run("nbdinfo", &["--size", &uri], &[]);
    assert_eq!(o.stdout.trim(), (64 * MIB - 44 * 1024).to_string());
    // qemu-io patterns, discard and write-zeroes through the event loop.
    let o = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &uri,
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0xcd 30M 64k",
            "-c",
            "discard 0 64k",
            "-c",
            "write -z 1M 1M",
            "-c",
            "read -P 0 0 64k",
            "-c",
            "read -P 0xab 64k 960k",
            "-c",
            "read -P 0 1M 1M",
            "-c",
            "read -P 0xcd 30M 64k",
        ],
        &[],
    );
    o.ok();
    assert!(
        !o.stdout.contains("Pattern verification failed"),
        "{}",
        o.stdout
    );
    let s = n.status("r0");
    assert_eq!(
        (
            s["activity_log"]["active_extents"].as_u64(),
            s["io"]["al_transactions"].as_u64(),
            s["out_of_sync_bytes"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "a standalone resource has no peer to resync after a crash: no activity log, no bitmap"
    );
    assert_eq!(
        s["io"]["written_bytes"],
        2 * MIB + 128 * 1024,
        "writes, discard and write-zeroes"
    );
    // Secondary closes the export and says why to new clients.
    n.ctl(&["secondary", "r0"]).ok();
    let o = run("nbdinfo", &[&uri], &[("LIBNBD_DEBUG", "1")]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("server error message: resource r0 is Secondary on node n1"),
        "{}",
        o.stderr
    );
    // Down and up again: the data is UpToDate now, no --force needed.
    n.ctl(&["down", "r0"]).ok();
    n.ctl(&["up", "r0"]).ok();
    assert_eq!(n.status("r0")["disk_state"], "UpToDate");
    n.ctl(&["primary", "r0"]).ok();
    run(
        "qemu-io",
        &["-f", "raw", &uri, "-c", "read -P 0xcd 30M 64k"],
        &[],
    )
    .ok();
    n.ctl(&["status", "r9"])
        .fails(20, "no resource 'r9' for node n1");
    assert_eq!(n.stop(), 0, "clean exit on SIGTERM");
    // The shutdown demoted cleanly: not a crashed Primary.
    let gi: serde_json::Value =
        serde_json::from_str(&n.ctl(&["show-gi", "--json", "r0"]).stdout).unwrap();
    assert_eq!(
        (
            gi["flags"]["primary"].as_bool(),
            gi["flags"]["consistent"].as_bool(),
            gi["flags"]["was_up_to_date"].as_bool()
        ),
        (Some(false), Some(true), Some(true))
    );
}

#[test]
fn ext4_on_the_export_survives_a_daemon_restart() {
    require_root();
    let mut n = Node::new("n1", STANDALONE);
    ready(&mut n, "r0", 128 * MIB);
    n.ctl(&["primary", "--force", "r0"]).ok();
    let uri = n.uri("r0");
    let mnt = n.path("mnt");
    let mut sums = Vec::new();
    {
        let mut dev = NbdLoop::attach(&uri, n.dir.path(), 1);
        run("mkfs.ext4", &["-q", "-F", &dev.loopdev], &[]).ok();
        let mut m = Mount::new(&dev.loopdev, &mnt, Some("ext4"));
        for i in 0..5 {
            let p = mnt.join(format!("file{i}"));
            run(
                "dd",
                &[
                    "if=/dev/urandom",
                    &format!("of={}", p.display()),
                    "bs=64k",
                    &format!("count={}", 4 + i * 8),
                    "status=none",
                ],
                &[],
            )
            .ok();
            sums.push(
                run("md5sum", &[p.to_str().unwrap()], &[])
                    .stdout
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        std::fs::write(mnt.join("hello.txt"), "replicated by replicatord\n").unwrap();
        m.unmount();
        settle_and_detach(&mut dev);
    }
    let before = n.status("r0")["generation"].clone();
    assert_eq!(n.stop(), 0);
    n.start();
    n.ctl(&["up", "r0"]).ok();
    assert_eq!(n.status("r0")["disk_state"], "UpToDate");
    n.ctl(&["primary", "r0"]).ok();
    assert_eq!(
        n.status("r0")["generation"],
        before,
        "meta-data intact: same generation identifiers and flags"
    );
    let mut dev = NbdLoop::attach(&uri, n.dir.path(), 2);
    run("e2fsck", &["-n", "-f", &dev.loopdev], &[]).ok();
    let mut m = Mount::new(&dev.loopdev, &mnt, Some("ext4"));
    for (i, want) in sums.iter().enumerate() {
        let p = mnt.join(format!("file{i}"));
        let got = run("md5sum", &[p.to_str().unwrap()], &[]).stdout;
        assert!(
            got.starts_with(want.as_str()),
            "file{i} changed across the restart"
        );
    }
    assert_eq!(
        std::fs::read_to_string(mnt.join("hello.txt")).unwrap(),
        "replicated by replicatord\n"
    );
    m.unmount();
    settle_and_detach(&mut dev);
}

/// Writes back what the FUSE file still caches, then detaches. (`NbdLoop::detach` stops
/// nbdfuse even when `fusermount3 -u` fails because the loop device is still being released,
/// which loses the loop device's writes still cached in the FUSE file.)
fn settle_and_detach(dev: &mut NbdLoop) {
    run("sync", &[], &[]).ok();
    dev.detach();
}

#[test]
fn nbdcopy_and_fio_verify_through_the_event_loop_and_killed_clients() {
    require_root();
    let mut n = Node::new("n1", STANDALONE);
    ready(&mut n, "r0", 64 * MIB);
    n.ctl(&["primary", "--force", "r0"]).ok();
    let uri = n.uri("r0");
    // An image in and out through nbdcopy: same checksum.
    let size = n.status("r0")["size_bytes"].as_u64().unwrap();
    let img = n.path("in.img");
    run(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", img.display()),
            "bs=4096",
            &format!("count={}", size / 4096),
            "status=none",
        ],
        &[],
    )
    .ok();
    run("nbdcopy", &[img.to_str().unwrap(), &uri], &[]).ok();
    let out = n.path("out.img");
    run("nbdcopy", &[&uri, out.to_str().unwrap()], &[]).ok();
    let sum = |p: &std::path::Path| {
        run("md5sum", &[p.to_str().unwrap()], &[])
            .stdout
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(sum(&img), sum(&out));
    // fio with crc32c verification, two jobs on two connections.
    let o = run(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=16M",
            "--numjobs=2",
            "--offset_increment=24M",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
            "--group_reporting",
            "--output-format=terse",
        ],
        &[],
    );
    o.ok();
    assert!(
        !o.stderr.contains("verify"),
        "fio verification failed: {}",
        o.stderr
    );
    // Clients killed in the middle of reads and writes.
    for _ in 0..15 {
        let _ = run(
            "timeout",
            &["-s", "KILL", "0.05", "nbdcopy", &uri, "null:"],
            &[],
        );
        let _ = run(
            "timeout",
            &["-s", "KILL", "0.05", "nbdcopy", img.to_str().unwrap(), &uri],
            &[],
        );
    }
    // The daemon still serves, and its in-flight accounting drained: it can demote.
    run("nbdinfo", &["--size", &uri], &[]).ok();
    n.ctl(&["secondary", "r0"]).ok();
    assert_eq!(n.status("r0")["io"]["in_flight"], 0);
    assert!(n.daemon.as_mut().unwrap().is_running());
}

#[test]
fn malformed_control_requests_get_errors_and_the_daemon_keeps_running() {
    require_root();
    let mut n = Node::new("n1", STANDALONE);
    ready(&mut n, "r0", 16 * MIB);
    let ask = |body: &[u8]| {
        let r = responses(&raw_control(&n.state, &frame(body), true));
        assert_eq!(
            r.len(),
            1,
            "one response to {:?}",
            String::from_utf8_lossy(body)
        );
        r.into_iter().next().unwrap()
    };
    let r = ask(b"this is not json");
    assert_eq!(
        (r["exit"].as_u64(), r["version"].as_u64()),
        (Some(30), Some(1))
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("bad request: not JSON"),
        "{r}"
    );
    let r = ask(br#"{"version":7,"command":{"verb":"up","resource":"r0"}}"#);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("protocol version 7 (this daemon speaks 1)"),
        "{r}"
    );
    let r = ask(br#"{"version":1,"command":{"verb":"format-disk","resource":"r0"}}"#);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `format-disk`"),
        "{r}"
    );
    let r = ask(br#"{"version":1,"command":{"verb":"primary"}}"#);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("missing field `resource`"),
        "{r}"
    );
    let r = ask(br#"{"version":1,"command":{"verb":"primary","resource":"r0","force":"yes"}}"#);
    assert_eq!(r["exit"], 30, "{r}");
    // An oversized length prefix: answered, connection closed, body never read.
    let r = responses(&raw_control(&n.state, &u32::MAX.to_be_bytes(), false));
    assert!(
        r[0]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the 1048576-byte limit"),
        "{r:?}"
    );
    // A frame cut short, and a client that connects and leaves.
    let r = responses(&raw_control(&n.state, &[0, 0, 0, 50, b'{'], true));
    assert!(
        r[0]["message"]
            .as_str()
            .unwrap()
            .contains("connection closed in the middle of a 50-byte frame"),
        "{r:?}"
    );
    assert!(raw_control(&n.state, &[], true).is_empty());
    // Several requests on one connection are all answered.
    let two = [
        frame(br#"{"version":1,"command":{"verb":"status"}}"#),
        frame(br#"{"version":1,"command":{"verb":"status","resource":"r0"}}"#),
    ]
    .concat();
    let r = responses(&raw_control(&n.state, &two, true));
    assert_eq!(r.len(), 2);
    assert_eq!(r[1]["status"][0]["up"], true);
    // Still running and serving.
    assert!(n.daemon.as_mut().unwrap().is_running());
    n.ctl(&["primary", "--force", "r0"]).ok();
    assert_eq!(n.status("r0")["role"], "Primary");
}

#[test]
fn several_daemons_on_one_machine_and_one_per_state_dir() {
    // Two nodes of a two-node resource, each daemon in its own network namespace; n2's
    // resource stays down, so n1 works alone.
    let mut p = Pair::new("C", "", 32 * MIB);
    p.n[0].start();
    p.n[1].start();
    p.ctl(0, &["up", "r0"]).ok();
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    let (ua, ub) = (p.uri(0), p.uri(1));
    assert_ne!(ua, ub, "each node exports its own device");
    run(
        "qemu-io",
        &["-f", "raw", &ua, "-c", "write -P 0x5a 0 256k"],
        &[],
    )
    .ok();
    let o = run("qemu-io", &["-f", "raw", &ub, "-c", "read 0 512"], &[]);
    assert!(
        o.stderr.contains("resource r0 is down on node n2"),
        "{}",
        o.stderr
    );
    // n1 writes while its peer is away: the bitmap counts what n2 misses.
    let s = p.status(0);
    assert_eq!(s["out_of_sync_bytes"], 256 * 1024);
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        (
            peers[0]["node"].as_str(),
            peers[0]["connection_state"].as_str(),
            peers[0]["role"].as_str(),
            peers[0]["disk_state"].as_str()
        ),
        (
            Some("n2"),
            Some("WFConnection"),
            Some("Unknown"),
            Some("DUnknown")
        )
    );
    // A second daemon on a state dir in use is refused and the first keeps running.
    let a = &p.n[0];
    let o = run(
        common::REPLICATORD,
        &[
            "--config",
            a.config.to_str().unwrap(),
            "--node",
            "n1",
            "--state-dir",
            a.state.to_str().unwrap(),
        ],
        &[],
    );
    o.fails(10, "another replicatord holds");
    // A state directory others may write into is refused, and left as it is.
    let open_dir = a.path("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(
        common::REPLICATORD,
        &[
            "--config",
            a.config.to_str().unwrap(),
            "--node",
            "n1",
            "--state-dir",
            open_dir.to_str().unwrap(),
        ],
        &[],
    );
    o.fails(
        10,
        "is writable by group or others (mode 777): use a private directory",
    );
    assert_eq!(
        std::fs::metadata(&open_dir).unwrap().permissions().mode() & 0o777,
        0o777
    );
    assert_eq!(p.status(0)["role"], "Primary");
    // The bitmap survives a clean restart.
    assert_eq!(p.n[0].stop(), 0);
    p.n[0].start();
    p.ctl(0, &["up", "r0"]).ok();
    assert_eq!(p.status(0)["out_of_sync_bytes"], 256 * 1024);
}

#[test]
fn a_crash_while_primary_marks_the_activity_log_out_of_sync() {
    let mut p = Pair::new("C", "", 64 * MIB);
    p.n[0].start();
    p.ctl(0, &["up", "r0"]).ok();
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    let uri = p.uri(0);
    // Writes into extents 0, 2 and 5 (4 MiB each).
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &uri,
            "-c",
            "write -P 0x11 0 4k",
            "-c",
            "write -P 0x22 8M 64k",
            "-c",
            "write -P 0x33 20M 1M",
        ],
        &[],
    )
    .ok();
    let s = p.status(0);
    assert_eq!(s["activity_log"]["active_extents"], 3);
    assert!(s["io"]["al_transactions"].as_u64().unwrap() >= 1);
    p.n[0].kill9();
    let gi: serde_json::Value =
        serde_json::from_str(&p.ctl(0, &["show-gi", "--json", "r0"]).stdout).unwrap();
    assert_eq!(
        gi["flags"]["primary"], true,
        "the crash left the Primary flag"
    );
    p.n[0].start();
    let o = p.ctl(0, &["up", "r0"]);
    o.ok();
    assert!(
        o.stderr
            .contains("the node crashed while Primary: 3 activity-log extents marked out of sync"),
        "{}",
        o.stderr
    );
    let s = p.status(0);
    assert_eq!(
        s["out_of_sync_bytes"],
        3 * 4 * MIB,
        "exactly the three hot extents"
    );
    assert_eq!(
        s["disk_state"], "Consistent",
        "without its peer a node does not know its data is the newest"
    );
    let gi: serde_json::Value =
        serde_json::from_str(&p.ctl(0, &["show-gi", "--json", "r0"]).stdout).unwrap();
    assert_eq!(
        (
            gi["flags"]["primary"].as_bool(),
            gi["flags"]["crashed_primary"].as_bool()
        ),
        (Some(false), Some(true))
    );
    // The data written before the crash is there.
    p.ctl(0, &["primary", "r0"])
        .fails(10, "refusing to become Primary: the disk is Consistent");
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &uri,
            "-c",
            "read -P 0x11 0 4k",
            "-c",
            "read -P 0x22 8M 64k",
            "-c",
            "read -P 0x33 20M 1M",
        ],
        &[],
    )
    .ok();
}

#[test]
fn up_refuses_missing_or_foreign_meta_data_and_broken_configuration() {
    require_root();
    let mut n = Node::new("n1", STANDALONE);
    n.file("data.img", 16 * MIB);
    n.start();
    n.ctl(&["up", "r0"]).fails(
        11,
        "no meta-data found: create it with 'replicatorctl create-md'",
    );
    n.ctl(&["create-md", "r0"]).ok();
    // The configuration now gives this node another id than the meta-data has.
    let good = std::fs::read_to_string(&n.config).unwrap();
    std::fs::write(&n.config, good.replace("on n1 { }", "on n1 { node-id 5; }")).unwrap();
    n.ctl(&["up", "r0"]).fails(
        11,
        "meta-data belongs to node id 0, the configuration gives this node id 5",
    );
    // A configuration that no longer parses: `up` says where, the daemon carries on.
    std::fs::write(
        &n.config,
        good.replace("meta-disk internal;", "meta-disk internal"),
    )
    .unwrap();
    n.ctl(&["up", "r0"]).fails(
        20,
        "r.res:5:3: missing ';' before 'on' (after 'meta-disk' ...)",
    );
    std::fs::write(&n.config, &good).unwrap();
    n.ctl(&["up", "r0"]).ok();
    assert_eq!(n.status("r0")["disk_state"], "Inconsistent");
    // The backing file grew: internal meta-data is no longer at its end.
    n.ctl(&["down", "r0"]).ok();
    std::fs::OpenOptions::new()
        .write(true)
        .open(n.path("data.img"))
        .unwrap()
        .set_len(20 * MIB)
        .unwrap();
    n.ctl(&["up", "r0"]).fails(11, "no meta-data found");
    assert!(n.daemon.as_mut().unwrap().is_running());
}

//! Replication between two real replicatord processes, each in its own network namespace on a
//! LAN (`tandem_testkit::netns::Lan`), with real NBD clients (fio, qemu-io, python3-libnbd):
//! the thesis's chapter-5 flow (create-md, up, primary --force, full sync, switchover), a link
//! cut during writes (only dirty blocks resynced), `kill -9` of the Primary under protocol C
//! (no acknowledged write lost), the split-brain recovery sequence, and clear refusals of a
//! protocol mismatch and of unrelated data. Protocols C, B and A each carry one scenario.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::pair::{Pair, STATE_TIMEOUT};
use common::{Out, run, run_debian};
use tandem_testkit::proc::Daemon;
use tandem_testkit::wait;

const MIB: u64 = 1 << 20;

fn lines(path: &std::path::Path) -> usize {
    std::fs::File::open(path)
        .map(|f| std::io::BufReader::new(f).lines().count())
        .unwrap_or(0)
}

#[track_caller]
fn fio_ok(o: &Out) {
    o.ok();
    assert!(
        !o.stderr.contains("verify:") && !o.stderr.contains("bad magic"),
        "fio verification failed: {}",
        o.stderr
    );
}

#[test]
fn thesis_flow_full_sync_fio_verify_and_switchover_under_protocol_c() {
    let mut p = Pair::new("C", "", 48 * MIB);
    p.up();
    // Connected, Secondary/Secondary, Inconsistent/Inconsistent (the thesis, chapter 5).
    for i in 0..2 {
        let s = p.wait(i, "Connected", |s| s["connection_state"] == "Connected");
        assert_eq!(
            (
                s["role"].as_str(),
                s["disk_state"].as_str(),
                s["peers"][0]["role"].as_str(),
                s["peers"][0]["disk_state"].as_str()
            ),
            (
                Some("Secondary"),
                Some("Inconsistent"),
                Some("Secondary"),
                Some("Inconsistent")
            )
        );
    }
    let text = p.ctl(0, &["status", "r0"]);
    assert!(
        text.stdout
            .contains("n2 connection:Connected role:Secondary")
            && text.stdout.contains("peer-disk:Inconsistent"),
        "{}",
        text.stdout
    );
    p.ctl(0, &["primary", "r0"])
        .fails(10, "refusing to become Primary: the disk is Inconsistent");
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    p.wait_in_sync();
    let size = p.status(0)["size_bytes"].as_u64().unwrap();
    assert_eq!(
        p.counter(1, "resync_received_bytes"),
        size,
        "the initial sync is a full sync"
    );
    assert!(p.data_equal(), "the full sync made the data areas equal");
    // fio with verification on the Primary; every write replicated before its ack.
    fio_ok(&p.fio(
        0,
        &[
            "--name=thesis",
            "--rw=randwrite",
            "--bs=4k",
            "--size=24M",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
        ],
    ));
    let s0 = p.status(0);
    assert_eq!(s0["out_of_sync_bytes"], 0);
    assert!(s0["counters"]["data_sent_bytes"].as_u64().unwrap() >= 24 * MIB);
    // Switch roles: the export closes on n1, opens on n2 without --force (UpToDate).
    p.ctl(0, &["secondary", "r0"]).ok();
    p.ctl(1, &["primary", "r0"]).ok();
    let o = run(
        "qemu-io",
        &["-f", "raw", &p.uri(0), "-c", "read 0 512"],
        &[],
    );
    assert!(
        o.stderr.contains("resource r0 is Secondary on node n1"),
        "{}",
        o.stderr
    );
    fio_ok(&p.fio(
        1,
        &[
            "--name=thesis",
            "--rw=randwrite",
            "--bs=4k",
            "--size=24M",
            "--iodepth=16",
            "--verify=crc32c",
            "--verify_only",
        ],
    ));
    p.wait_in_sync();
    assert!(p.data_equal());
    let o = p.ctl(1, &["verify", "--wait", "r0"]);
    o.ok();
    assert!(o.stdout.contains(", 0 out of sync"), "{}", o.stdout);
}

#[test]
fn a_link_cut_during_writes_resyncs_only_the_dirty_blocks_under_protocol_b() {
    let mut p = Pair::new("B", "", 48 * MIB);
    p.up();
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    p.wait_in_sync();
    let uri = p.uri(0);
    let writer = std::thread::spawn(move || {
        run(
            "fio",
            &[
                "--name=cut",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=4k",
                "--size=40M",
                "--iodepth=8",
                "--rate_iops=1500",
                "--time_based",
                "--runtime=5",
                "--output-format=terse",
            ],
            &[],
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    p.lan.set_link(1, false);
    p.wait(0, "the Primary to notice the cut", |s| {
        s["connection_state"] == "WFConnection"
    });
    writer.join().unwrap().ok();
    let before = p.status(0);
    let dirty = before["out_of_sync_bytes"].as_u64().unwrap();
    assert!(
        dirty > 0 && dirty < 40 * MIB,
        "writes during the cut are marked: {dirty}"
    );
    let sent_before = p.counter(0, "resync_sent_bytes");
    let received_before = p.counter(1, "resync_received_bytes");
    p.lan.set_link(1, true);
    p.wait_in_sync();
    assert_eq!(
        p.counter(0, "resync_sent_bytes") - sent_before,
        dirty,
        "exactly the dirty 4 KiB blocks were sent"
    );
    assert_eq!(
        p.counter(1, "resync_received_bytes") - received_before,
        dirty
    );
    let o = p.ctl(0, &["verify", "--wait", "r0"]);
    o.ok();
    assert!(o.stdout.contains(", 0 out of sync"), "{}", o.stdout);
    assert_eq!(p.status(1)["last_verify"]["mismatched_blocks"], 0);
    assert!(p.data_equal(), "the backing files' data areas are equal");
    // The text status shows the counters like /proc/drbd.
    let t = p.ctl(0, &["status", "r0"]).stdout;
    assert!(t.contains(" ns:") && t.contains(" oos:0"), "{t}");
}

#[test]
fn kill_9_of_the_primary_loses_no_acknowledged_write_under_protocol_c() {
    let mut p = Pair::new("C", "", 32 * MIB);
    // The Primary polls for acknowledgements (the opt-in latency mode): the writes it
    // acknowledges that way must be on the peer just the same.
    p.n[0]
        .env
        .push(("REPLICATORD_ACK_SPIN_US".into(), "200".into()));
    p.up();
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    p.wait_in_sync();
    let log = p.n[0].path("acked.log");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/acked_writes.py");
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.args([script, "write", &p.uri(0), log.to_str().unwrap(), "8"]);
    cmd.env("PATH", tandem_testkit::debian_path());
    let mut writer = Daemon::spawn("acked_writes", cmd, &p.n[0].path("writer.log"));
    wait::until("400 acknowledged writes", STATE_TIMEOUT, || {
        lines(&log) >= 400
    });
    p.n[0].kill9();
    wait::until("the writer to notice", Duration::from_secs(30), || {
        !writer.is_running()
    });
    let acked = lines(&log);
    // n2 sees its peer gone and keeps UpToDate (fencing dont-care, the default): the failover
    // needs no --force.
    p.wait(1, "n2 to lose its peer", |s| {
        s["connection_state"] == "WFConnection"
    });
    p.ctl(1, &["primary", "r0"]).ok();
    let o = run_debian(
        "/usr/bin/python3",
        &[script, "check", &p.uri(1), log.to_str().unwrap()],
    );
    o.ok();
    assert!(
        o.stdout
            .contains(&format!("{acked} acknowledged writes present")),
        "{}",
        o.stdout
    );
    // The crashed node comes back, is resynced from the new Primary (its activity log and the
    // new Primary's bitmap), and the nodes agree again.
    p.n[0].start();
    let o = p.ctl(0, &["up", "r0"]);
    o.ok();
    assert!(
        o.stderr.contains("the node crashed while Primary"),
        "{}",
        o.stderr
    );
    p.wait_in_sync();
    assert_eq!(p.status(0)["role"], "Secondary");
    assert!(p.data_equal());
}

#[test]
fn split_brain_recovery_as_in_the_thesis_resyncs_the_victim_by_bitmap_under_protocol_a() {
    let mut p = Pair::new("A", "", 32 * MIB);
    p.up();
    p.ctl(0, &["primary", "--force", "r0"]).ok();
    p.wait_in_sync();
    // Cut the link and promote the other node too: a split brain.
    p.lan.set_link(0, false);
    for i in 0..2 {
        p.wait(i, "the cut to be noticed", |s| {
            s["connection_state"] == "WFConnection"
        });
    }
    // Under fencing dont-care (the default) the cut-off node is still UpToDate: no --force.
    p.ctl(1, &["primary", "r0"]).ok();
    run(
        "qemu-io",
        &["-f", "raw", &p.uri(0), "-c", "write -P 0x11 0 1M"],
        &[],
    )
    .ok();
    run(
        "qemu-io",
        &["-f", "raw", &p.uri(1), "-c", "write -P 0x22 8M 512k"],
        &[],
    )
    .ok();
    p.lan.set_link(0, true);
    for i in 0..2 {
        let s = p.wait(i, "StandAlone after the split brain", |s| {
            s["connection_state"] == "StandAlone"
        });
        assert_eq!(s["split_brain"], true, "{s:#}");
        assert!(
            s["refusal"]
                .as_str()
                .unwrap()
                .contains("split brain detected"),
            "{s:#}"
        );
        let text = p.ctl(i, &["status", "r0"]).stdout;
        assert!(text.contains("StandAlone (split brain)"), "{text}");
        assert!(
            p.n[i]
                .log()
                .contains("Split-Brain detected, dropping connection!"),
            "n{} says so in its log",
            i + 1
        );
    }
    // The split-brain handler ran on both nodes with DRBD's environment.
    for (i, me, peer) in [(0, "n1", "n2"), (1, "n2", "n1")] {
        let peer_id = p.status(i)["peers"][0]["node_id"].as_u64().unwrap();
        let f = p.n[0].path(&format!("split-brain.{me}"));
        wait::until("the split-brain handler", Duration::from_secs(10), || {
            f.exists()
        });
        assert_eq!(
            std::fs::read_to_string(&f).unwrap().trim(),
            format!("r0 peer={peer} peer-id={peer_id}")
        );
    }
    // Recovery (thesis): victim secondary + connect --discard-my-data; survivor connect.
    let sent_before = p.counter(0, "resync_sent_bytes");
    p.ctl(0, &["disconnect", "r0"]).ok();
    p.ctl(1, &["disconnect", "r0"]).ok();
    p.ctl(1, &["secondary", "r0"]).ok();
    p.ctl(1, &["connect", "--discard-my-data", "r0"]).ok();
    p.ctl(0, &["connect", "r0"]).ok();
    p.wait_in_sync();
    assert_eq!(
        p.counter(0, "resync_sent_bytes") - sent_before,
        MIB + 512 * 1024,
        "the victim is resynced by bitmap: the union of both sides' changes, not the device"
    );
    assert_eq!(p.status(1)["role"], "Secondary");
    assert!(p.data_equal(), "the victim took the survivor's data");
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &p.uri(0),
            "-c",
            "read -P 0x11 0 1M",
            "-c",
            "read -P 0 8M 512k",
        ],
        &[],
    )
    .ok();
}

#[test]
fn a_protocol_mismatch_and_unrelated_data_are_refused_clearly_on_both_sides() {
    let mut p = Pair::new("C", "", 16 * MIB);
    let good = std::fs::read_to_string(&p.n[1].config).unwrap();
    std::fs::write(&p.n[1].config, good.replace("protocol C;", "protocol A;")).unwrap();
    p.up();
    for (i, mine, theirs) in [(0, "C", "A"), (1, "A", "C")] {
        let s = p.wait(i, "StandAlone after the refusal", |s| {
            s["connection_state"] == "StandAlone"
        });
        let why = s["refusal"].as_str().unwrap().to_owned();
        assert!(
            why.contains(&format!(
                "replication protocol differs: mine {mine}, peer's {theirs}"
            )),
            "{why}"
        );
        assert_eq!(s["split_brain"], false);
        assert!(
            p.n[i]
                .log()
                .contains("connection refused, StandAlone: replication protocol differs"),
            "n{} logs the refusal",
            i + 1
        );
    }
    // Unrelated data: two nodes whose generations share nothing.
    std::fs::write(&p.n[1].config, &good).unwrap();
    for i in 0..2 {
        p.ctl(i, &["down", "r0"]).ok();
    }
    p.ctl(0, &["set-gi", "r0", "1234567800000000:0:0:0"]).ok();
    p.ctl(1, &["set-gi", "r0", "ABCDEF0000000000:0:0:0"]).ok();
    for i in 0..2 {
        p.ctl(i, &["up", "r0"]).ok();
    }
    for i in 0..2 {
        let s = p.wait(i, "StandAlone after the refusal", |s| {
            s["connection_state"] == "StandAlone" && s["refusal"].is_string()
        });
        assert!(
            s["refusal"]
                .as_str()
                .unwrap()
                .contains("unrelated data: the nodes share no generation UUID"),
            "{s:#}"
        );
    }
    assert!(
        p.ctl(0, &["primary", "--force", "r0"]).code == 0,
        "a refused node still works on its own"
    );
}

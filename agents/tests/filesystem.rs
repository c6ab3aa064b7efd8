//! System tests of `ocf:tandem:Filesystem` on real NBD exports (nbdkit serving an ext4 image
//! over a unix socket; attached with nbdfuse + a loop device as these kernels have no nbd
//! module): mount, write, stop while processes hold the filesystem (one ignoring SIGTERM),
//! remount, data intact, nothing left behind; monitor depths; and ocf-tester.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{LoopDev, expect_rc, ocf_tester, run_agent, run_agent_without};
use tandem_testkit::proc::Daemon;
use tandem_testkit::{run, wait};

const BIN: &str = "tandem-filesystem";

/// nbdkit serving a fresh 64 MiB ext4 image on a unix socket in `dir`.
struct Export {
    _nbdkit: Daemon,
    uri: String,
    socket: PathBuf,
}

fn nbdkit_ext4(dir: &Path) -> Export {
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", &img.to_string_lossy()]);
    let socket = dir.join("nbd.sock");
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-f", "--unix"])
        .arg(&socket)
        .arg("file")
        .arg(&img);
    let d = Daemon::spawn("nbdkit", cmd, &dir.join("nbdkit.log"));
    wait::until("nbdkit to listen", Duration::from_secs(20), || {
        socket.exists()
    });
    Export {
        _nbdkit: d,
        uri: format!("nbd+unix:///?socket={}", socket.display()),
        socket,
    }
}

struct Fs {
    params: Vec<(String, String)>,
    state_dir: PathBuf,
    mnt: PathBuf,
}

impl Fs {
    fn new(dir: &Path, device: &str) -> Fs {
        let mnt = dir.join("mnt");
        let state_dir = dir.join("state");
        let params = vec![
            ("device".to_owned(), device.to_owned()),
            ("directory".to_owned(), mnt.to_string_lossy().into_owned()),
            ("fstype".to_owned(), "ext4".to_owned()),
            (
                "state_dir".to_owned(),
                state_dir.to_string_lossy().into_owned(),
            ),
        ];
        Fs {
            params,
            state_dir,
            mnt,
        }
    }

    fn p(&self) -> Vec<(&str, &str)> {
        self.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn run(&self, action: &str, depth: &str) -> common::Outcome {
        run_agent(
            None,
            BIN,
            action,
            "fs",
            &self.p(),
            &[
                ("OCF_RESKEY_CRM_meta_timeout", "30000"),
                ("OCF_CHECK_LEVEL", depth),
            ],
        )
    }

    fn mounted(&self) -> bool {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*self.mnt.to_string_lossy()))
    }

    /// Asserts nothing the agent attached is left: no loop device over a file in its state
    /// dir, no FUSE mount there, no nbdfuse serving our socket, no state file.
    fn assert_nothing_left(&self, socket: &Path) {
        assert!(!self.mounted(), "still mounted");
        let state = self.state_dir.to_string_lossy().into_owned();
        let loops = run("losetup", &["-a"]);
        assert!(!loops.contains(&state), "loop device left behind:\n{loops}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&state),
            "FUSE mount left behind:\n{mounts}"
        );
        let (_, ps) = tandem_testkit::run_status("pgrep", &["-af", "nbdfuse"]);
        assert!(
            !ps.contains(&*socket.to_string_lossy()),
            "nbdfuse left running:\n{ps}"
        );
        let files: Vec<_> = std::fs::read_dir(&self.state_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "state left behind: {files:?}");
    }
}

#[test]
fn ext4_on_nbd_export_survives_stop_with_holders_and_remount() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let export = nbdkit_ext4(dir.path());
    let fs = Fs::new(dir.path(), &export.uri);

    expect_rc(&fs.run("monitor", "0"), 7, "probe before start");
    expect_rc(&fs.run("start", "0"), 0, "start");
    assert!(fs.mounted());
    expect_rc(&fs.run("start", "0"), 0, "second start");
    for depth in ["0", "10", "20"] {
        expect_rc(
            &fs.run("monitor", depth),
            0,
            &format!("monitor depth {depth}"),
        );
    }
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(fs.mnt.join("data.bin"), &data).unwrap();

    // Two holders: one with an open file, one with its cwd inside that ignores SIGTERM.
    let log = dir.path().join("holders.log");
    let mut reader = Command::new("sh");
    reader.args([
        "-c",
        &format!("exec 3<{}/data.bin; exec sleep 600", fs.mnt.display()),
    ]);
    let mut reader = Daemon::spawn("reader", reader, &log);
    let mut stubborn = Command::new("sh");
    stubborn
        .args(["-c", "trap '' TERM; exec sleep 600"])
        .current_dir(&fs.mnt);
    let mut stubborn = Daemon::spawn("stubborn", stubborn, &log);
    // Both have exec'd sleep (so the trap is set and the file is open) once their cmdline says so.
    let execd = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x00600"))
    };
    wait::until("the holders to start", Duration::from_secs(10), || {
        execd(reader.pid()) && execd(stubborn.pid())
    });

    let o = fs.run("stop", "20");
    expect_rc(&o, 0, "stop with holders");
    assert!(o.output.contains("sent SIGTERM"), "{}", o.output);
    assert!(
        o.output.contains("sent SIGKILL"),
        "the TERM-ignoring holder must be killed:\n{}",
        o.output
    );
    assert!(
        !reader.is_running(),
        "the process with an open file was killed"
    );
    assert!(
        !stubborn.is_running(),
        "the process ignoring TERM was killed"
    );
    fs.assert_nothing_left(&export.socket);
    expect_rc(&fs.run("monitor", "0"), 7, "monitor after stop");
    expect_rc(&fs.run("stop", "0"), 0, "second stop");

    expect_rc(&fs.run("start", "0"), 0, "restart");
    assert_eq!(
        std::fs::read(fs.mnt.join("data.bin")).unwrap(),
        data,
        "data intact after remount"
    );
    expect_rc(&fs.run("stop", "0"), 0, "final stop");
    fs.assert_nothing_left(&export.socket);
}

#[test]
fn force_unmount_false_fails_the_stop_instead_of_killing() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let export = nbdkit_ext4(dir.path());
    let mut fs = Fs::new(dir.path(), &export.uri);
    fs.params.push(("force_unmount".into(), "false".into()));
    expect_rc(&fs.run("start", "0"), 0, "start");
    let mut holder = Command::new("sleep");
    holder.arg("600").current_dir(&fs.mnt);
    let mut holder = Daemon::spawn("holder", holder, &dir.path().join("holder.log"));
    wait::until("the holder to start", Duration::from_secs(10), || {
        holder.is_running()
    });
    std::thread::sleep(Duration::from_millis(100));
    let o = run_agent(
        None,
        BIN,
        "stop",
        "fs",
        &fs.p(),
        &[("OCF_RESKEY_CRM_meta_timeout", "8000")],
    );
    expect_rc(&o, 1, "stop with a holder and force_unmount=false");
    assert!(o.output.contains("force_unmount=false"), "{}", o.output);
    assert!(holder.is_running(), "the holder was not killed");
    holder.kill9();
    expect_rc(&fs.run("stop", "0"), 0, "stop once the holder is gone");
    fs.assert_nothing_left(&export.socket);
}

#[test]
fn a_failed_start_leaves_nothing_attached() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    // An export without a filesystem on it.
    let socket = dir.path().join("blank.sock");
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-f", "--unix"])
        .arg(&socket)
        .args(["memory", "16M"]);
    let _blank = Daemon::spawn("nbdkit", cmd, &dir.path().join("nbdkit.log"));
    wait::until("nbdkit to listen", Duration::from_secs(20), || {
        socket.exists()
    });
    let mut fs = Fs::new(
        dir.path(),
        &format!("nbd+unix:///?socket={}", socket.display()),
    );
    fs.params.retain(|(k, _)| k != "fstype");
    let o = fs.run("start", "0");
    expect_rc(&o, 1, "start on an export without a filesystem");
    assert!(o.output.contains("no filesystem found"), "{}", o.output);
    fs.assert_nothing_left(&socket);
    let o = run_agent(
        None,
        BIN,
        "start",
        "fs",
        &[("device", "relative/path"), ("directory", "/mnt/x")],
        &[],
    );
    expect_rc(&o, 6, "a relative device");
    assert!(
        o.output
            .contains("parameter device: invalid value \"relative/path\""),
        "{}",
        o.output
    );
}

#[test]
fn ocf_tester_passes_for_filesystem() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    // ocf-tester checks the agent runs as nobody for meta-data; the temp dir stays private.
    let export = nbdkit_ext4(dir.path());
    let fs = Fs::new(dir.path(), &export.uri);
    ocf_tester(None, BIN, "fs", &fs.p(), &[]);
    fs.assert_nothing_left(&export.socket);
}

/// An ext4 image in `dir` named `name`, with a file `marker` holding `name`, as a loop device.
fn ext4_loop(dir: &Path, name: &str) -> LoopDev {
    let img = dir.join(format!("{name}.img"));
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", &img.to_string_lossy()]);
    let lo = LoopDev::new(&img);
    let m = dir.join(format!("{name}.mnt"));
    let mut mount = tandem_testkit::blockdev::Mount::new(&lo.0, &m, Some("ext4"));
    std::fs::write(m.join("marker"), name).unwrap();
    mount.unmount();
    lo
}

/// Regression: with fast_stop (TERM phase 3 s) and a short stop timeout, the TERM phase
/// outlasted the time left to unmount: a holder ignoring TERM was never sent KILL and the stop
/// failed (a failed stop gets the node fenced). KILL must come within the timeout.
#[test]
fn a_holder_ignoring_term_is_killed_within_a_short_stop_timeout() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let lo = ext4_loop(dir.path(), "plain");
    let fs = Fs::new(dir.path(), &lo.0);
    expect_rc(&fs.run("start", "0"), 0, "start");
    let mut stubborn = Command::new("sh");
    stubborn
        .args(["-c", "trap '' TERM; exec sleep 600"])
        .current_dir(&fs.mnt);
    let mut stubborn = Daemon::spawn("stubborn", stubborn, &dir.path().join("holder.log"));
    let execd = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x00600"))
    };
    wait::until("the holder to start", Duration::from_secs(10), || {
        execd(stubborn.pid())
    });
    // 4 s: 1 s kept for detaching, 3 s to unmount — no more than fast_stop's TERM phase.
    let o = run_agent(
        None,
        BIN,
        "stop",
        "fs",
        &fs.p(),
        &[("OCF_RESKEY_CRM_meta_timeout", "4000")],
    );
    expect_rc(&o, 0, "stop with a TERM-ignoring holder and a 4 s timeout");
    assert!(o.output.contains("sent SIGKILL"), "{}", o.output);
    assert!(!stubborn.is_running(), "the holder was killed");
    assert!(!fs.mounted());
}

/// A node without the tools (util-linux's losetup, fuse3, libnbd-bin...): a probe finds the
/// filesystem not running and a stop succeeds — both used to fail with OCF_ERR_INSTALLED, and
/// a failed stop gets the node fenced. A start still says what is missing.
#[test]
fn probe_and_stop_answer_without_the_tools() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::new(
        dir.path(),
        &format!(
            "nbd+unix:///?socket={}",
            dir.path().join("none.sock").display()
        ),
    );
    let hide = [
        "nbdfuse",
        "losetup",
        "fusermount3",
        "fsck",
        "mount",
        "umount",
    ];
    let run = |action: &str, interval: &str| {
        run_agent_without(
            None,
            &hide,
            BIN,
            action,
            "fs",
            &fs.p(),
            &[("OCF_RESKEY_CRM_meta_interval", interval)],
        )
    };
    expect_rc(&run("monitor", "0"), 7, "probe without the tools");
    expect_rc(&run("monitor", "20000"), 7, "monitor without the tools");
    expect_rc(&run("stop", "0"), 0, "stop without the tools");
    let o = run("start", "0");
    expect_rc(&o, 5, "start without the tools");
    assert!(o.output.contains("not found"), "{}", o.output);
}

/// Regression: start trusted the loop device its state file listed. After a crash (or a
/// reboot with a state_dir on disk) that device may be somebody else's: start mounted *their*
/// filesystem. Now a listed device no longer over this resource's nbdfuse file is left alone
/// and the export is attached afresh.
#[test]
fn a_stale_state_file_never_mounts_a_foreign_device() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let export = nbdkit_ext4(dir.path());
    let foreign = ext4_loop(dir.path(), "foreign");
    let fs = Fs::new(dir.path(), &export.uri);
    // What a crashed start would have left: the export's URI and a loop device, now foreign.
    std::fs::create_dir_all(&fs.state_dir).unwrap();
    let state = serde_json::json!({
        "device": export.uri,
        "fuse_dir": fs.state_dir.join("gone.fuse"),
        "nbdfuse_pid": null,
        "loopdev": foreign.0,
        "nbddev": null,
    });
    let path = tandem_agents::attach::state_path(&fs.state_dir, &fs.mnt);
    std::fs::write(&path, state.to_string()).unwrap();
    expect_rc(&fs.run("start", "0"), 0, "start over a stale state file");
    assert!(
        !fs.mnt.join("marker").exists(),
        "the foreign filesystem was mounted"
    );
    expect_rc(&fs.run("stop", "0"), 0, "stop");
    fs.assert_nothing_left(&export.socket);
    let still = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        foreign.0.trim_start_matches("/dev/")
    ))
    .unwrap_or_default();
    assert!(
        still.contains("foreign.img"),
        "the foreign loop device was detached"
    );
}

/// Regression: the agent killed between `losetup` making the loop device and the state file
/// recording it left stop unable to detach: nbdfuse's file was still in use by the unrecorded
/// loop device. Stop now finds every loop device over that file.
#[test]
fn stop_detaches_a_loop_device_the_state_file_missed() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let export = nbdkit_ext4(dir.path());
    let fs = Fs::new(dir.path(), &export.uri);
    expect_rc(&fs.run("start", "0"), 0, "start");
    let path = tandem_agents::attach::state_path(&fs.state_dir, &fs.mnt);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(state["loopdev"].is_string(), "{state}");
    state["loopdev"] = serde_json::Value::Null;
    std::fs::write(&path, state.to_string()).unwrap();
    expect_rc(
        &fs.run("stop", "0"),
        0,
        "stop with the loop device unrecorded",
    );
    fs.assert_nothing_left(&export.socket);
}

/// Regression: mount (and fsck, blkid, nbd-client) ran without a limit, so a start on an
/// export that stopped answering (here every read takes 20 s) hung past the op timeout until
/// the cluster manager killed the agent. Start now fails within its timeout, saying which
/// tool did not finish, and a stop afterwards leaves nothing behind.
#[test]
fn a_start_on_an_export_that_stopped_answering_fails_within_its_timeout() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("slow.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", &img.to_string_lossy()]);
    let socket = dir.path().join("slow.sock");
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-f", "--unix"])
        .arg(&socket)
        .args(["--filter=delay", "file"])
        .arg(&img)
        .arg("delay-read=20");
    let mut nbdkit = Daemon::spawn("nbdkit", cmd, &dir.path().join("nbdkit.log"));
    wait::until("nbdkit to listen", Duration::from_secs(20), || {
        socket.exists()
    });
    let mut fs = Fs::new(
        dir.path(),
        &format!("nbd+unix:///?socket={}", socket.display()),
    );
    fs.params.push(("run_fsck".into(), "no".into()));
    // The manager would kill the agent at 8 s; this outer bound only catches a hang.
    let mut start = Command::new("timeout");
    start.arg("60").arg(common::agent_bin(BIN)).arg("start");
    start
        .env("PATH", tandem_testkit::debian_path())
        .env("OCF_RESOURCE_INSTANCE", "fs")
        .env("OCF_RESKEY_CRM_meta_timeout", "8000");
    for (k, v) in fs.p() {
        start.env(format!("OCF_RESKEY_{k}"), v);
    }
    let out = start.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "start on a stalled export:\n{text}"
    );
    assert!(
        text.contains("did not finish within the op timeout"),
        "{text}"
    );
    // The export goes away for good: the stuck reads fail, and stop cleans up.
    nbdkit.kill9();
    let o = run_agent(
        None,
        BIN,
        "stop",
        "fs",
        &fs.p(),
        &[("OCF_RESKEY_CRM_meta_timeout", "60000")],
    );
    expect_rc(&o, 0, "stop after the failed start");
    fs.assert_nothing_left(&socket);
}

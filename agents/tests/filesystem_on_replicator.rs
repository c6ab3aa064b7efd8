//! `ocf:tandem:Filesystem` on a replicatord export (the stack's real device, not nbdkit):
//! ext4 mounted, written, unmounted while a process holds a file open (it is killed, the
//! unmount succeeds), remounted with the data intact, and nothing left behind; the writes
//! went through replicatord; a start on a Secondary's export fails cleanly; an export that
//! vanishes under the mount is reported by monitor and cleaned up by stop. The replicator is
//! driven by its own agent, so this is the thesis's pair `mailData` + `ZimbraFS` run by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Outcome, expect_rc, run_agent};
use tandem_testkit::proc::Daemon;
use tandem_testkit::stack::{Replicator, loops_under, mounts_under, processes_mentioning};
use tandem_testkit::wait;

struct Fs {
    params: Vec<(String, String)>,
    state_dir: PathBuf,
    mnt: PathBuf,
}

impl Fs {
    fn new(dir: &Path, device: &str) -> Fs {
        let mnt = dir.join("mnt");
        let state_dir = dir.join("fs-state");
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

    fn run(&self, action: &str, depth: &str) -> Outcome {
        let p: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_agent(
            None,
            "tandem-filesystem",
            action,
            "ZimbraFS",
            &p,
            &[
                ("OCF_RESKEY_CRM_meta_timeout", "30000"),
                ("OCF_CHECK_LEVEL", depth),
            ],
        )
    }

    fn mounted(&self) -> bool {
        !mounts_under(None, &self.mnt).is_empty()
    }

    /// Nothing the agent attached is left: no mount, no loop device over a file in its state
    /// dir, no FUSE mount there, no nbdfuse serving the export, no state file.
    fn assert_nothing_left(&self, socket: &str) {
        assert!(!self.mounted(), "still mounted");
        assert_eq!(
            loops_under(&self.state_dir),
            Vec::<String>::new(),
            "loop device left"
        );
        assert_eq!(
            mounts_under(None, &self.state_dir),
            Vec::<String>::new(),
            "FUSE mount left"
        );
        let left: Vec<String> = processes_mentioning(socket)
            .into_iter()
            .filter(|p| p.contains("nbdfuse"))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "nbdfuse left running");
        let files: Vec<_> = std::fs::read_dir(&self.state_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "state left behind: {files:?}");
    }
}

fn replicator_agent(r: &Replicator, action: &str) -> Outcome {
    let config = r.config.to_string_lossy().into_owned();
    let state = r.state_dir.to_string_lossy().into_owned();
    run_agent(
        None,
        "tandem-replicator",
        action,
        "mailData:0",
        &[
            ("drbd_resource", &r.resource),
            ("config", &config),
            ("state_dir", &state),
        ],
        &[("OCF_RESKEY_CRM_meta_promoted_max", "1")],
    )
}

fn written_bytes(r: &Replicator) -> u64 {
    let json = r.ctl(&["status", "--json", &r.resource]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["io"]["written_bytes"].as_u64().expect("io.written_bytes")
}

#[test]
fn ext4_on_a_replicatord_export_survives_stop_with_a_holder_and_remount() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let _sweep = tandem_testkit::stack::Sweep::new(dir.path());
    let r = Replicator::create(dir.path(), None, "n1", "zimbradata", 64);
    r.first_promotion_with_ext4();
    let uri = r.export_uri();
    let socket = uri.split("socket=").nth(1).unwrap().to_owned();
    let fs = Fs::new(dir.path(), &uri);

    // The thesis's device="/dev/drbd1" does not exist here: the error says what to give.
    let drbd = Fs::new(dir.path(), "/dev/drbd1");
    let o = drbd.run("start", "0");
    expect_rc(&o, 5, "start on /dev/drbd1");
    assert!(o.output.contains("replicatorctl status"), "{}", o.output);

    // The replicator is up but Secondary: its export refuses clients, so the filesystem
    // cannot start (this is what the order constraint prevents) and leaves nothing attached.
    expect_rc(&replicator_agent(&r, "start"), 0, "replicator start");
    let o = fs.run("start", "0");
    expect_rc(&o, 1, "filesystem start on a Secondary's export");
    assert!(
        o.output.contains("nbdfuse could not attach"),
        "{}",
        o.output
    );
    fs.assert_nothing_left(&socket);

    expect_rc(&replicator_agent(&r, "promote"), 0, "replicator promote");
    expect_rc(&fs.run("monitor", "0"), 7, "probe before start");
    expect_rc(&fs.run("start", "0"), 0, "filesystem start");
    assert!(fs.mounted());
    for depth in ["0", "10", "20"] {
        expect_rc(
            &fs.run("monitor", depth),
            0,
            &format!("monitor depth {depth}"),
        );
    }
    let before = written_bytes(&r);
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(fs.mnt.join("mailbox.bin"), &data).unwrap();
    tandem_testkit::run(
        "sync",
        &["-f", &fs.mnt.join("mailbox.bin").to_string_lossy()],
    );
    assert!(
        written_bytes(&r) >= before + data.len() as u64,
        "the file's bytes went through replicatord"
    );

    // A process keeps the file open: stop kills it and unmounts.
    let mut holder = Command::new("sh");
    holder.args([
        "-c",
        &format!("exec 3<{}/mailbox.bin; exec sleep 600", fs.mnt.display()),
    ]);
    let mut holder = Daemon::spawn("holder", holder, &dir.path().join("holder.log"));
    wait::until(
        "the holder to open the file",
        Duration::from_secs(10),
        || {
            std::fs::read(format!("/proc/{}/cmdline", holder.pid()))
                .is_ok_and(|c| c.starts_with(b"sleep\x00600"))
        },
    );
    let o = fs.run("stop", "20");
    expect_rc(&o, 0, "stop with a holder");
    assert!(o.output.contains("sent SIGTERM"), "{}", o.output);
    assert!(!holder.is_running(), "the holder was killed");
    fs.assert_nothing_left(&socket);
    expect_rc(&fs.run("monitor", "0"), 7, "monitor after stop");
    expect_rc(&fs.run("stop", "0"), 0, "second stop");

    // Remount: the data is intact.
    expect_rc(&fs.run("start", "0"), 0, "restart");
    assert_eq!(
        std::fs::read(fs.mnt.join("mailbox.bin")).unwrap(),
        data,
        "data intact after remount"
    );

    // The export goes away behind the filesystem's back (someone demotes the replicator by
    // hand; replicatord disconnects the client): monitor reports the error, stop still
    // unmounts and detaches everything, and after the promotion the data is intact.
    r.ctl(&["secondary", &r.resource]);
    expect_rc(
        &fs.run("monitor", "10"),
        1,
        "monitor depth 10 without the export",
    );
    expect_rc(&fs.run("stop", "0"), 0, "stop without the export");
    fs.assert_nothing_left(&socket);
    expect_rc(
        &replicator_agent(&r, "promote"),
        0,
        "replicator promoted again",
    );
    expect_rc(&fs.run("start", "0"), 0, "start after the promotion");
    assert_eq!(
        std::fs::read(fs.mnt.join("mailbox.bin")).unwrap(),
        data,
        "data intact after losing the export"
    );
    expect_rc(&fs.run("stop", "0"), 0, "final stop");
    fs.assert_nothing_left(&socket);

    // The replicator goes down in the reverse order; its data stays UpToDate.
    expect_rc(&replicator_agent(&r, "demote"), 0, "replicator demote");
    expect_rc(&replicator_agent(&r, "stop"), 0, "replicator stop");
    r.ctl(&["up", &r.resource]);
    assert_eq!(r.state(), (true, "Secondary".into(), "UpToDate".into()));
    r.ctl(&["down", &r.resource]);
}

//! clusterd running the agents the thesis used, for real: Debian's `ocf:heartbeat:IPaddr2` and
//! Tandem's `ocf:tandem:IPaddr` on a test host's interface, Debian's `ocf:heartbeat:Filesystem`
//! mounting ext4 from a loop device. Failures made behind the agents' backs are noticed and
//! repaired; stopping really removes addresses and unmounts (killing a process that holds the
//! mount).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterd_core::cib::{Group, Resource};
use clusterd_core::status::RunState;
use common::*;
use tandem_testkit::netns::Lan;
use tandem_testkit::{run, run_status};

fn set_base(cib: &mut clusterd_core::cib::Cib) {
    cib.properties
        .insert("stonith-enabled".into(), "false".into());
}

#[test]
fn ipaddr2_and_tandem_ipaddr_in_a_namespace() {
    let lan = Lan::new(1);
    let host = lan.hosts[0].clone();
    let n = Node::start_in(Some(&host));
    let vip = format!("{}.100", lan.subnet);
    let vip2 = format!("{}.101", lan.subnet);
    let params = |ip: &str| {
        vec![
            ("ip", ip.to_owned()),
            ("cidr_netmask", "24".to_owned()),
            ("nic", "eth0".to_owned()),
        ]
    };
    n.edit(|cib| {
        set_base(cib);
        cib.resources.push(Resource::Group(Group {
            id: "ips".into(),
            meta: Default::default(),
            members: vec![
                primitive(
                    "vip",
                    "heartbeat",
                    "IPaddr2",
                    &params(&vip),
                    vec![op("monitor", 1_000, None, None)],
                ),
                primitive(
                    "vip2",
                    "tandem",
                    "IPaddr",
                    &params(&vip2),
                    vec![op("monitor", 1_000, None, None)],
                ),
            ],
        }));
    });
    let addrs = || host.run("ip", &["-4", "-o", "addr", "show", "dev", "eth0"]);
    n.wait_for("both addresses up", |s| {
        history_state(s, "vip", "n1", false) == started()
            && history_state(s, "vip2", "n1", false) == started()
    });
    let a = addrs();
    assert!(
        a.contains(&format!("{vip}/24")) && a.contains(&format!("{vip2}/24")),
        "{a}"
    );
    // The address answers from another namespace's point of view: a ping to it from the host
    // namespace itself goes over loopback, so ask the kernel where it routes instead.
    assert!(host.run("ip", &["route", "get", &vip]).contains("local"));
    n.settle();

    // Someone removes the address by hand: IPaddr2's monitor notices, it is added back.
    host.run("ip", &["addr", "del", &format!("{vip}/24"), "dev", "eth0"]);
    let s = n.wait_for("vip recovered", |s| {
        fail_count(s, "vip") == 1 && history_state(s, "vip", "n1", false) == started()
    });
    assert!(
        ops(&s, "vip", "n1")
            .iter()
            .any(|o| o.failed() && o.op == "monitor" && o.rc == 7),
        "{:?}",
        ops(&s, "vip", "n1")
    );
    n.wait_for("vip back on eth0", |_| {
        addrs().contains(&format!("{vip}/24"))
    });
    n.settle();

    // Standby: both addresses go, in reverse order.
    n.ctl(&["node", "standby", "n1"]);
    let s = n.wait_for("both stopped", |s| {
        history_state(s, "vip", "n1", false) == RunState::Stopped
            && history_state(s, "vip2", "n1", false) == RunState::Stopped
    });
    assert!(call_of(&s, "vip2", "stop") < call_of(&s, "vip", "stop"));
    let a = addrs();
    assert!(!a.contains(&vip) && !a.contains(&vip2), "{a}");
}

/// A loop device over a file, detached on drop (after a lazy unmount of `mnt` if still mounted).
struct LoopDisk {
    dev: String,
    mnt: PathBuf,
}

impl LoopDisk {
    fn new(dir: &Path) -> LoopDisk {
        let img = dir.join("disk.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 << 20).unwrap();
        let dev = run("losetup", &["-f", "--show", &img.to_string_lossy()])
            .trim()
            .to_owned();
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let disk = LoopDisk { dev, mnt };
        run("mkfs.ext4", &["-q", "-F", &disk.dev]);
        disk
    }

    fn mounted(&self) -> bool {
        let m = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let dir = self.mnt.to_string_lossy().into_owned();
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(dir.as_str()))
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        if self.mounted() {
            let _ = run_status("umount", &["-l", &self.mnt.to_string_lossy()]);
        }
        let _ = run_status("losetup", &["-d", &self.dev]);
    }
}

#[test]
fn filesystem_agent_mounts_recovers_and_force_unmounts() {
    let n = Node::start();
    let disk = LoopDisk::new(n.dir.path());
    let mnt = disk.mnt.to_string_lossy().into_owned();
    n.edit(|cib| {
        set_base(cib);
        cib.resources.push(Resource::Primitive(primitive(
            "fs",
            "heartbeat",
            "Filesystem",
            &[
                ("device", disk.dev.clone()),
                ("directory", mnt.clone()),
                ("fstype", "ext4".into()),
            ],
            vec![
                op("monitor", 1_000, Some(40_000), None),
                op("stop", 0, Some(60_000), None),
            ],
        )));
    });
    n.wait_for("fs mounted", |s| {
        history_state(s, "fs", "n1", false) == started()
    });
    assert!(disk.mounted());
    std::fs::write(disk.mnt.join("mail.txt"), "hello").unwrap();
    n.settle();

    // Unmounted behind the cluster's back: the monitor notices, Filesystem mounts it again.
    run("umount", &[&mnt]);
    n.wait_for("fs recovered", |s| {
        fail_count(s, "fs") == 1 && history_state(s, "fs", "n1", false) == started()
    });
    assert!(disk.mounted());
    assert_eq!(
        std::fs::read_to_string(disk.mnt.join("mail.txt")).unwrap(),
        "hello"
    );
    n.settle();

    // A process keeps a file open on the mount: stop kills it (force_unmount) and unmounts.
    let mut holder = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<{}/mail.txt; exec sleep 300", mnt))
            .spawn()
            .unwrap(),
    );
    let holder = &mut holder.0;
    n.ctl(&["resource", "disable", "fs"]);
    n.wait_for("fs stopped", |s| {
        history_state(s, "fs", "n1", false) == RunState::Stopped
    });
    assert!(!disk.mounted());
    let mut status = None;
    tandem_testkit::wait::until("the holder to be killed by Filesystem's stop", WAIT, || {
        status = holder.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success(), "killed, not exited: {status:?}");
}

/// A child killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

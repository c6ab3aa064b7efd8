//! The thesis's resource stack on one node, under clusterd, configured with the thesis's pcs
//! command sequence (chapters 4.2, 5.4 and 6.2) run through `clusterctl`, with Tandem's agents
//! in place of `ocf:linbit:drbd`, `ocf:heartbeat:Filesystem` and `IPaddr2`:
//!
//! - the operator's part first, as the thesis does by hand before handing DRBD to Pacemaker:
//!   `create-md`, replicatord running, `up`, `primary --force` (fresh meta-data), `mkfs.ext4`
//!   on the export, `secondary`, `down`;
//! - `cluster cib drbd_cfg` → `-f drbd_cfg resource create mailData ocf:tandem:replicator
//!   drbd_resource=zimbradata ...` → `resource master mailDataClone ... notify=true` →
//!   `cluster cib-push`: the replicator is promoted;
//! - `cluster cib fs_cfg` → ZimbraFS (ext4 on the replicator's export), colocated with the
//!   Promoted instance and ordered after the promotion; ClusterIP colocated with ZimbraFS →
//!   `cluster cib-push`: the filesystem is mounted after the promote, the IP is on the same
//!   node and answers on the LAN; `clusterctl status` reads like `pcs status`;
//! - `node standby` takes it all down in reverse order (IP, filesystem unmounted and detached,
//!   replicator demoted and stopped) and nothing is left; `node unstandby` brings it back with
//!   the data intact; clusterd's SIGTERM takes it down again, leaving nothing.
//!
//! Everything runs in network namespaces of the test's own (the virtual IP lives there; the
//! agents' mounts live in clusterd's mount namespace, reached through `/proc/PID/root`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_testkit::netns::{Host, Lan};
use tandem_testkit::stack::{
    Clusterd, Replicator, Sweep, loops_under, mounts_under, processes_mentioning,
};
use tandem_testkit::{require_root, wait};

const NODE: &str = "mercurio";
const WAIT: Duration = Duration::from_secs(90);

/// `clusterctl status` with runs of blanks (pcs-style tab alignment) collapsed to one space.
fn status(c: &Clusterd) -> String {
    c.ctl(&["status"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `clusterctl status` contains every line of `want` and shows neither failed
/// nor pending actions.
fn wait_status(c: &Clusterd, what: &str, want: &[&str]) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status(c);
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        if want.iter().all(|w| lines.contains(w)) && !s.contains("Failed") && !s.contains("Pending")
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; status:\n{s}\nclusterd log:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Index of `(primitive, action)` among clusterd's finished operations from `from` on.
fn position(ops: &[(String, String)], from: usize, primitive: &str, action: &str) -> usize {
    ops.iter()
        .skip(from)
        .position(|(p, a)| p == primitive && a == action)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no {primitive} {action} after #{from} in {ops:?}"))
}

fn assert_in_order(ops: &[(String, String)], from: usize, steps: &[(&str, &str)]) {
    let at: Vec<usize> = steps
        .iter()
        .map(|(p, a)| position(ops, from, p, a))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "expected {steps:?} in this order, got positions {at:?} in {ops:?}"
    );
}

fn vip_present(host: &Host, vip: &str) -> bool {
    host.run("ip", &["-4", "-o", "addr", "show", "dev", &host.ifname])
        .contains(&format!("inet {vip}/24"))
}

/// Nothing of the stack left: no mount under the test directory in clusterd's mount
/// namespace (if it still runs), no loop device over a file there, no nbdfuse serving the
/// export, no virtual IP, the replicated resource down.
fn assert_nothing_left(
    dir: &Path,
    clusterd_pid: Option<u32>,
    socket: &str,
    host: &Host,
    vip: &str,
    r: &Replicator,
) {
    if let Some(pid) = clusterd_pid {
        assert_eq!(
            mounts_under(Some(pid), dir),
            Vec::<String>::new(),
            "mounts left in clusterd's namespace"
        );
    }
    assert_eq!(mounts_under(None, dir), Vec::<String>::new(), "mounts left");
    assert_eq!(loops_under(dir), Vec::<String>::new(), "loop devices left");
    let nbdfuse: Vec<String> = processes_mentioning(socket)
        .into_iter()
        .filter(|p| p.contains("nbdfuse"))
        .collect();
    assert_eq!(nbdfuse, Vec::<String>::new(), "nbdfuse left running");
    assert!(
        !vip_present(host, vip),
        "virtual IP {vip} left on {}",
        host.ns
    );
    assert!(
        !r.state().0,
        "replicated resource still up:\n{}",
        r.status()
    );
}

#[test]
fn thesis_stack_on_one_node_under_clusterd() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let _sweep = Sweep::new(work);
    let lan = Lan::new(2);
    let (host, client) = (lan.hosts[0].clone(), lan.hosts[1].clone());
    let vip = format!("{}.50", lan.subnet);

    // The operator's part (thesis 5.3-5.4, by hand before Pacemaker takes over).
    let r = Replicator::create(work, Some(&host), NODE, "zimbradata", 64);
    r.first_promotion_with_ext4();
    let uri = r.export_uri();
    let socket = uri.split("socket=").nth(1).unwrap().to_owned();
    let mnt: PathBuf = work.join("opt/zimbra");
    let fs_state = work.join("fs-state");

    let mut c = Clusterd::start(work, Some(&host), "cloffimedicas", NODE);
    c.ctl(&["property", "set", "stonith-enabled=false"]);

    // Chapter 5.4: the replicated device as a promotable clone.
    let drbd_cfg = work.join("drbd_cfg").to_string_lossy().into_owned();
    let config = format!("config={}", r.config.display());
    let state_dir = format!("state_dir={}", r.state_dir.display());
    c.ctl(&["cluster", "cib", &drbd_cfg]);
    c.ctl(&[
        "-f",
        &drbd_cfg,
        "resource",
        "create",
        "mailData",
        "ocf:tandem:replicator",
        "drbd_resource=zimbradata",
        &config,
        &state_dir,
        "op",
        "monitor",
        "interval=60s",
    ]);
    c.ctl(&[
        "-f",
        &drbd_cfg,
        "resource",
        "master",
        "mailDataClone",
        "mailData",
        "master-max=1",
        "master-node-max=1",
        "clone-max=2",
        "clone-node-max=1",
        "notify=true",
    ]);
    let show = c.ctl(&["-f", &drbd_cfg, "resource", "show"]);
    assert!(show.contains("mailDataClone [mailData]"), "{show}");
    c.ctl(&["cluster", "cib-push", &drbd_cfg]);
    wait_status(
        &c,
        "the replicator promoted",
        &[
            "* Clone Set: mailDataClone [mailData] (promotable):",
            &format!("* Promoted: [ {NODE} ]"),
        ],
    );
    assert_eq!(r.state(), (true, "Primary".into(), "UpToDate".into()));
    // The agent's promotion score (UpToDate, standalone), set through clusterd's crm_master.
    assert_eq!(c.promotion_score("mailData:0").as_deref(), Some("10000"));

    // Chapter 5.4 (fs_cfg) and 4.2: the filesystem on the Promoted instance, after the
    // promotion; the virtual IP with the filesystem.
    let fs_cfg = work.join("fs_cfg").to_string_lossy().into_owned();
    c.ctl(&["cluster", "cib", &fs_cfg]);
    c.ctl(&[
        "-f",
        &fs_cfg,
        "resource",
        "create",
        "ZimbraFS",
        "ocf:tandem:Filesystem",
        &format!("device={uri}"),
        &format!("directory={}", mnt.display()),
        "fstype=ext4",
        &format!("state_dir={}", fs_state.display()),
    ]);
    c.ctl(&[
        "-f",
        &fs_cfg,
        "constraint",
        "colocation",
        "add",
        "ZimbraFS",
        "with",
        "mailDataClone",
        "INFINITY",
        "with-rsc-role=Master",
    ]);
    c.ctl(&[
        "-f",
        &fs_cfg,
        "constraint",
        "order",
        "promote",
        "mailDataClone",
        "then",
        "start",
        "ZimbraFS",
    ]);
    c.ctl(&[
        "-f",
        &fs_cfg,
        "resource",
        "create",
        "ClusterIP",
        "ocf:tandem:IPaddr",
        &format!("ip={vip}"),
        "cidr_netmask=24",
        "op",
        "monitor",
        "interval=30s",
    ]);
    c.ctl(&[
        "-f",
        &fs_cfg,
        "constraint",
        "colocation",
        "add",
        "ClusterIP",
        "with",
        "ZimbraFS",
        "INFINITY",
    ]);
    c.ctl(&["cluster", "cib-push", &fs_cfg]);

    // As pcs status shows it in the thesis (Masters → Promoted in today's words).
    let s = wait_status(
        &c,
        "the whole stack started",
        &[
            "Cluster name: cloffimedicas",
            &format!("* Online: [ {NODE} ]"),
            "* Clone Set: mailDataClone [mailData] (promotable):",
            &format!("* Promoted: [ {NODE} ]"),
            &format!("* ZimbraFS (ocf:tandem:Filesystem): Started {NODE}"),
            &format!("* ClusterIP (ocf:tandem:IPaddr): Started {NODE}"),
        ],
    );
    assert!(s.contains("4 resource instances configured"), "{s}");
    let ops = c.operations();
    assert_in_order(
        &ops,
        0,
        &[
            ("mailData", "start"),
            ("mailData", "promote"),
            ("ZimbraFS", "start"),
            ("ClusterIP", "start"),
        ],
    );

    // The filesystem is mounted (in clusterd's mount namespace) on the replicator's export,
    // writable, and its writes go through replicatord; the IP answers on the LAN.
    let pid = c.pid();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mnt_s = mnt.to_string_lossy();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*mnt_s) && l.contains(" - ext4 /dev/loop")),
        "ZimbraFS not mounted:\n{mounts}"
    );
    let inside = |p: &Path| PathBuf::from(format!("/proc/{pid}/root{}", p.display()));
    let mail: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(inside(&mnt.join("mailbox.bin")), &mail).unwrap();
    tandem_testkit::run(
        "sync",
        &["-f", &inside(&mnt.join("mailbox.bin")).to_string_lossy()],
    );
    assert!(vip_present(&host, &vip));
    client.run("ping", &["-c", "1", "-W", "5", &vip]);

    // pcs node standby: everything down in reverse order, nothing left.
    let from = c.operations().len();
    c.ctl(&["node", "standby", NODE]);
    wait_status(
        &c,
        "everything stopped on the standby node",
        &[
            &format!("* Standby: [ {NODE} ]"),
            "* ZimbraFS (ocf:tandem:Filesystem): Stopped",
            "* ClusterIP (ocf:tandem:IPaddr): Stopped",
            &format!("* Stopped: [ {NODE} ]"),
        ],
    );
    wait::until("the replicator to be down", WAIT, || !r.state().0);
    let ops = c.operations();
    assert_in_order(
        &ops,
        from,
        &[
            ("ClusterIP", "stop"),
            ("ZimbraFS", "stop"),
            ("mailData", "demote"),
            ("mailData", "stop"),
        ],
    );
    assert_nothing_left(work, Some(pid), &socket, &host, &vip, &r);
    assert_eq!(
        c.promotion_score("mailData:0"),
        None,
        "score left after stop"
    );
    let (code, _) = client.run_status("ping", &["-c", "1", "-W", "1", &vip]);
    assert_ne!(code, 0, "the virtual IP still answers after standby");

    // pcs node unstandby: back up, the mail data intact.
    c.ctl(&["node", "unstandby", NODE]);
    wait_status(
        &c,
        "the stack back after unstandby",
        &[
            &format!("* Online: [ {NODE} ]"),
            &format!("* Promoted: [ {NODE} ]"),
            &format!("* ZimbraFS (ocf:tandem:Filesystem): Started {NODE}"),
            &format!("* ClusterIP (ocf:tandem:IPaddr): Started {NODE}"),
        ],
    );
    assert_eq!(
        std::fs::read(inside(&mnt.join("mailbox.bin"))).unwrap(),
        mail,
        "mail data intact"
    );
    client.run("ping", &["-c", "1", "-W", "5", &vip]);

    // clusterd's shutdown stops every resource of the node, then exits.
    assert!(
        c.stop(WAIT),
        "clusterd did not exit after SIGTERM:\n{}",
        c.log()
    );
    assert_nothing_left(work, None, &socket, &host, &vip, &r);
    // The data stays UpToDate for the next start.
    r.ctl(&["up", "zimbradata"]);
    assert_eq!(r.state(), (true, "Secondary".into(), "UpToDate".into()));
    r.ctl(&["down", "zimbradata"]);
}

//! The Pacemaker commands agents call, answered by a running clusterd: `crm_master`,
//! `crm_attribute --promotion`, ocf-shellfuncs' own `ocf_promotion_score`, `crm_node`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn shim(n: &Node, prog: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(n.state.join("sbin").join(prog));
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CLUSTERD_CONTROL", n.socket())
        .env("CLUSTERD_NODE", "n1")
        .env("OCF_RESOURCE_INSTANCE", "db:0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn transient(n: &Node, name: &str) -> Option<String> {
    n.status().nodes["n1"].attributes.get(name).cloned()
}

#[test]
fn promotion_score_commands_set_and_read_the_score() {
    let n = Node::start();
    // crm_master, as ocf_promotion_score and Tandem's agents call it.
    let o = shim(&n, "crm_master", &["-Q", "-l", "reboot", "-v", "100"], &[]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(transient(&n, "master-db").as_deref(), Some("100"));
    let o = shim(&n, "crm_master", &["-q", "-l", "reboot", "-G"], &[]);
    assert_eq!((o.status.code(), text(&o)), (Some(0), "100\n".to_owned()));
    // crm_attribute --promotion, as Debian's Stateful calls it.
    assert!(
        shim(&n, "crm_attribute", &["--promotion", "-v", "5"], &[])
            .status
            .success()
    );
    assert_eq!(transient(&n, "master-db").as_deref(), Some("5"));
    let o = shim(&n, "crm_attribute", &["-p", "-G"], &[]);
    assert_eq!(text(&o), "scope=status  name=master-db value=5\n");
    assert!(
        shim(&n, "crm_attribute", &["--promotion", "-D"], &[])
            .status
            .success()
    );
    assert_eq!(transient(&n, "master-db"), None);
    let o = shim(&n, "crm_master", &["-l", "reboot", "-G"], &[]);
    assert_eq!(
        o.status.code(),
        Some(105),
        "a missing score is CRM_EX_NOSUCH"
    );
    // Bad arguments are refused with the option named, and nothing changes.
    let o = shim(&n, "crm_master", &["-l", "reboot", "-v", "lots"], &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`lots`"));
    assert_eq!(transient(&n, "master-db"), None);
}

#[test]
fn ocf_shellfuncs_promotion_score_and_crm_node_work_under_clusterd() {
    let n = Node::start();
    let sbin = n.state.join("sbin");
    // A shell "agent" using ocf-shellfuncs, in both branches of ocf_promotion_score: with
    // Pacemaker's feature set (crm_attribute -p) and without one (crm_master -l reboot).
    let script = n.path("agent.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nOCF_ROOT=/usr/lib/ocf\n. /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs\nocf_promotion_score -v \"$1\"\necho \"node=$(ocf_local_nodename)\"\n",
    )
    .unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", sbin.display());
    let run = |score: &str, feature_set: Option<&str>| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(&script)
            .arg(score)
            .env_clear()
            .env("PATH", &path)
            .env("HA_SBIN_DIR", &sbin)
            .env("CLUSTERD_CONTROL", n.socket())
            .env("CLUSTERD_NODE", "n1")
            .env("OCF_RESOURCE_INSTANCE", "drbd0:1");
        if let Some(f) = feature_set {
            cmd.env("OCF_RESKEY_crm_feature_set", f);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{o:?}");
        text(&o)
    };
    let out = run("1000", Some("3.16.2"));
    assert_eq!(transient(&n, "master-drbd0").as_deref(), Some("1000"));
    assert_eq!(
        out, "node=n1\n",
        "ocf_local_nodename goes through crm_node -n"
    );
    run("10", None);
    assert_eq!(transient(&n, "master-drbd0").as_deref(), Some("10"));

    // crm_node's other forms.
    let o = shim(&n, "crm_node", &["-l"], &[]);
    assert_eq!(text(&o), "1 n1 member\n");
    assert_eq!(text(&shim(&n, "crm_node", &["-q"], &[])), "1\n");
    assert_eq!(text(&shim(&n, "crm_node", &["-p"], &[])), "n1\n");

    // A permanent node attribute goes into the CIB (and survives a restart of clusterd).
    let o = shim(
        &n,
        "crm_attribute",
        &["-N", "n1", "-n", "site", "-v", "north", "-l", "forever"],
        &[],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        n.cib()
            .node("n1")
            .unwrap()
            .attributes
            .get("site")
            .map(String::as_str),
        Some("north")
    );
    assert!(Path::new(&n.state.join("cib.json")).exists());
}

#[test]
fn shims_outside_clusterd_say_why_they_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("crm_master");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_clusterd"), &link).unwrap();
    let o = Command::new(&link)
        .args(["-l", "reboot", "-v", "1"])
        .env_clear()
        .env("OCF_RESOURCE_INSTANCE", "x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CLUSTERD_CONTROL is not set"),
        "{o:?}"
    );
    let o = Command::new(&link)
        .args(["-l", "reboot", "-v", "1"])
        .env_clear()
        .env("OCF_RESOURCE_INSTANCE", "x")
        .env("CLUSTERD_NODE", "n1")
        .env("CLUSTERD_CONTROL", dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot connect to clusterd"),
        "{o:?}"
    );
}

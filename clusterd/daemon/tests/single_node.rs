//! A single-node clusterd running a real configuration end to end with Debian's agents:
//! `ocf:heartbeat:Dummy`, `ocf:pacemaker:Stateful` promoted, a group, an order/colocation chain;
//! a resource that dies is noticed by its monitor, restarted, counted, banned at its
//! migration-threshold and brought back by cleanup; standby stops everything in reverse order;
//! a hung monitor is killed at its timeout.

mod common;

use std::collections::BTreeMap;

use clusterd_core::cib::{Group, Resource, Role};
use clusterd_core::status::{OpStatus, RunState};
use common::*;

fn base(cib: &mut clusterd_core::cib::Cib) {
    cib.properties
        .insert("stonith-enabled".into(), "false".into());
}

#[test]
fn dummy_stateful_group_chain_monitor_failure_ban_cleanup_standby() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();

    // The socket is the operator's only door: 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(n.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The configuration, written with clusterctl as an operator would with pcs. Stateful is
    // promotable with a monitor per role; the group runs where Stateful is promoted, after
    // the promotion (the thesis's chain); d1 comes first of all.
    let state = |name: &str| format!("state={}", d.join(format!("{name}.state")).display());
    let envfile = format!("envfile={}", d.join("st.env").display());
    let (s_d1, s_st, s_g1, s_web) = (state("d1"), state("st"), state("g1"), state("web"));
    let commands: Vec<Vec<&str>> = vec![
        vec!["property", "set", "stonith-enabled=false"],
        vec![
            "resource",
            "create",
            "d1",
            "ocf:heartbeat:Dummy",
            &s_d1,
            "op",
            "monitor",
            "interval=1s",
        ],
        vec![
            "resource",
            "create",
            "st",
            "ocf:pacemaker:Stateful",
            &s_st,
            &envfile,
            "op",
            "monitor",
            "interval=1s",
            "role=Promoted",
            "op",
            "monitor",
            "interval=1500ms",
            "role=Unpromoted",
            "meta",
            "resource-stickiness=50",
        ],
        vec![
            "resource",
            "promotable",
            "st",
            "promoted-max=1",
            "clone-max=1",
            "notify=true",
        ],
        vec![
            "resource",
            "create",
            "g1",
            "ocf:heartbeat:Dummy",
            &s_g1,
            "op",
            "monitor",
            "interval=1s",
            "--group",
            "g",
        ],
        vec![
            "resource",
            "create",
            "web",
            "ocf:heartbeat:Dummy",
            &s_web,
            "op",
            "monitor",
            "interval=500ms",
            "meta",
            "migration-threshold=2",
            "--group",
            "g",
        ],
        vec![
            "constraint",
            "colocation",
            "add",
            "g",
            "with",
            "st-clone",
            "INFINITY",
            "with-rsc-role=Promoted",
        ],
        vec![
            "constraint",
            "order",
            "promote",
            "st-clone",
            "then",
            "start",
            "g",
        ],
        vec![
            "constraint",
            "order",
            "start",
            "d1",
            "then",
            "start",
            "st-clone",
        ],
    ];
    // As the thesis does with pcs: edit a copy offline, push it whole, so nothing starts
    // before its constraints exist.
    let file = d.join("cib.edit");
    let file_s = file.to_string_lossy().into_owned();
    n.ctl(&["cluster", "cib", &file_s]);
    for cmd in &commands {
        let mut args = vec!["-f", file_s.as_str()];
        args.extend(cmd.iter().copied());
        n.ctl(&args);
    }
    n.ctl(&["cluster", "cib-push", &file_s]);

    // Everything runs; Stateful promoted through its own crm_attribute --promotion call.
    let s = n.wait_for("d1, st promoted, g1, web running", |s| {
        history_state(s, "d1", "n1", false) == started()
            && history_state(s, "st", "n1", true)
                == RunState::Active {
                    role: Role::Promoted,
                    failed: false,
                }
            && history_state(s, "g1", "n1", false) == started()
            && history_state(s, "web", "n1", false) == started()
    });
    assert_eq!(
        std::fs::read_to_string(d.join("st.state")).unwrap().trim(),
        "Promoted"
    );
    assert_eq!(
        s.nodes["n1"]
            .attributes
            .get("master-st")
            .map(String::as_str),
        Some("10"),
        "{s:#?}"
    );
    assert!(
        call_of(&s, "d1", "start") < call_of(&s, "st", "start"),
        "order d1 then st"
    );
    assert!(
        call_of(&s, "st", "promote") < call_of(&s, "g1", "start"),
        "order promote st then start g"
    );
    assert!(
        call_of(&s, "g1", "start") < call_of(&s, "web", "start"),
        "group order"
    );
    for f in ["d1", "g1", "web"] {
        assert!(d.join(format!("{f}.state")).exists(), "{f} state file");
    }
    // Stateful dumped its environment at every call: the promote's pre-notification carried
    // the clone and notification variables.
    let dump = std::fs::read_to_string(d.join("st.env")).unwrap();
    let pre_promote = dump
        .split("###")
        .find(|call| {
            call.contains("OCF_RESKEY_CRM_meta_notify_type=pre")
                && call.contains("OCF_RESKEY_CRM_meta_notify_operation=promote")
        })
        .unwrap_or_else(|| panic!("no pre-promote notification in:\n{dump}"));
    for want in [
        "OCF_RESOURCE_INSTANCE=st:0",
        "OCF_RESKEY_CRM_meta_notify_promote_uname=n1",
        "OCF_RESKEY_CRM_meta_notify_promote_resource=st:0",
        "OCF_RESKEY_CRM_meta_clone_max=1",
        "OCF_RESKEY_CRM_meta_promoted_max=1",
        "OCF_RESKEY_CRM_meta_notify=true",
        "CLUSTERD_NODE=n1",
        // The resource's own meta attributes come through too.
        "OCF_RESKEY_CRM_meta_resource_stickiness=50",
    ] {
        assert!(
            pre_promote.contains(want),
            "missing {want} in:\n{pre_promote}"
        );
    }
    n.settle();

    // web's state file vanishes: the monitor notices (rc 7 with Dummy's reason), web is
    // recovered in place, its fail count is 1.
    std::fs::remove_file(d.join("web.state")).unwrap();
    let s = n.wait_for("web recovered after one failure", |s| {
        fail_count(s, "web") == 1 && history_state(s, "web", "n1", false) == started() && !n.busy()
    });
    let failure = ops(&s, "web", "n1")
        .into_iter()
        .find(|o| o.failed())
        .expect("the failed monitor is kept");
    assert_eq!(
        (failure.op.as_str(), failure.interval_ms, failure.rc),
        ("monitor", 500, 7)
    );
    assert_eq!(
        failure.exit_reason.as_deref(),
        Some("No process state file found")
    );
    assert!(d.join("web.state").exists(), "restarted");
    let text = n.ctl(&["status"]);
    assert!(text.contains("Failed Resource Actions"), "{text}");
    // As pcs status (crm_mon) words it.
    assert!(
        text.contains(
            "web 500ms-interval monitor on n1 returned 'not running' (No process state file found) at "
        ),
        "{text}"
    );
    let full = n.ctl(&["status", "--full"]);
    assert!(
        full.contains("web_monitor_500 on n1 'not running' (7): call="),
        "{full}"
    );
    assert!(full.contains("Operations:\n  * Node: n1:"), "{full}");

    // Second failure reaches migration-threshold=2: web is banned from n1 (the only node), so
    // it stays stopped; g1 before it keeps running.
    n.settle();
    std::fs::remove_file(d.join("web.state")).unwrap();
    let s = n.wait_for("web banned after its second failure", |s| {
        fail_count(s, "web") == 2 && history_state(s, "web", "n1", false) == RunState::Stopped
    });
    assert_eq!(history_state(&s, "g1", "n1", false), started());
    n.settle();
    assert!(!d.join("web.state").exists());
    assert_eq!(
        history_state(&n.status(), "web", "n1", false),
        RunState::Stopped,
        "the ban holds"
    );

    // cleanup forgets the failures: web is probed again and started.
    n.ctl(&["resource", "cleanup", "web"]);
    let s = n.wait_for("web running after cleanup", |s| {
        fail_count(s, "web") == 0 && history_state(s, "web", "n1", false) == started()
    });
    assert!(
        ops(&s, "web", "n1").iter().all(|o| !o.failed()),
        "cleanup removed the failed actions"
    );
    assert!(d.join("web.state").exists());
    n.settle();

    // Standby: everything stops, in the reverse of the start order.
    n.ctl(&["node", "standby", "n1"]);
    let s = n.wait_for("everything stopped in standby", |s| {
        ["d1", "g1", "web"]
            .iter()
            .all(|r| history_state(s, r, "n1", false) == RunState::Stopped)
            && history_state(s, "st", "n1", true) == RunState::Stopped
    });
    let stop = |r: &str| call_of(&s, r, "stop");
    assert!(stop("web") < stop("g1"), "group stops in reverse");
    assert!(
        stop("g1") < call_of(&s, "st", "demote"),
        "g stops before st is demoted"
    );
    assert!(call_of(&s, "st", "demote") < stop("st"));
    assert!(
        stop("st") < stop("d1"),
        "st stops before d1 (symmetrical order)"
    );
    for f in ["d1", "g1", "web", "st"] {
        assert!(!d.join(format!("{f}.state")).exists(), "{f} stopped");
    }
    // Stateful's stop deleted its promotion score (crm_attribute --promotion -D).
    assert_eq!(s.nodes["n1"].attributes.get("master-st"), None);
}

/// ocf:pacemaker:Dummy's monitor at OCF_CHECK_LEVEL 10 sleeps 30 s: with a 1 s timeout the
/// executor kills it, the monitor fails as timed out, and with migration-threshold=1 the
/// resource is stopped and banned.
#[test]
fn hung_monitor_is_killed_at_its_timeout_and_fails() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    let mut mon = op("monitor", 1_000, Some(1_000), None);
    mon.extra.insert("OCF_CHECK_LEVEL".into(), "10".into());
    let mut slow = primitive(
        "slow",
        "pacemaker",
        "Dummy",
        &[("state", d.join("slow.state").to_string_lossy().into_owned())],
        vec![mon],
    );
    slow.meta.insert("migration-threshold".into(), "1".into());
    n.edit(|cib| {
        base(cib);
        cib.resources.push(Resource::Primitive(slow));
    });
    let s = n.wait_for("slow's monitor timed out and slow banned", |s| {
        fail_count(s, "slow") == 1 && history_state(s, "slow", "n1", false) == RunState::Stopped
    });
    let failure = ops(&s, "slow", "n1")
        .into_iter()
        .find(|o| o.failed())
        .expect("failure kept");
    assert_eq!(
        (failure.op.as_str(), failure.status),
        ("monitor", OpStatus::Timeout)
    );
    assert!(
        failure
            .exit_reason
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1000 ms"),
        "{failure:?}"
    );
    n.settle();
    // Nothing of the agent is left: its `sleep 30` went with its process group.
    let sock = format!("CLUSTERD_CONTROL={}", n.socket().display());
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let env = std::fs::read(e.path().join("environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
            let has = |v: &str| vars.contains(&v.as_bytes());
            (has(&sock) && has("OCF_RESOURCE_INSTANCE=slow"))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    assert!(leftovers.is_empty(), "agent processes left: {leftovers:?}");
}

/// A group member whose start fails: the transition is aborted before the next member starts,
/// the failure is INFINITY (start-failure-is-fatal), and the group stops there.
#[test]
fn failed_start_aborts_the_transition_and_bans() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    // Dummy's start is `touch STATE`: a state file in a missing directory cannot be made.
    let bad = primitive(
        "bad",
        "heartbeat",
        "Dummy",
        &[(
            "state",
            d.join("missing-dir/bad.state")
                .to_string_lossy()
                .into_owned(),
        )],
        vec![op("monitor", 1_000, None, None)],
    );
    n.edit(|cib| {
        base(cib);
        cib.resources.push(Resource::Group(Group {
            id: "g".into(),
            meta: BTreeMap::new(),
            members: vec![bad, dummy("after", &d, 1_000)],
        }));
    });
    let s = n.wait_for("bad's start failed and bad is stopped", |s| {
        fail_count(s, "bad") == 1_000_000
            && history_state(s, "bad", "n1", false) == RunState::Stopped
    });
    let failure = ops(&s, "bad", "n1")
        .into_iter()
        .find(|o| o.failed())
        .expect("failure kept");
    assert_eq!((failure.op.as_str(), failure.rc), ("start", 1));
    n.settle();
    let s = n.status();
    assert!(
        ops(&s, "after", "n1").iter().all(|o| o.op != "start"),
        "after never started: {:?}",
        ops(&s, "after", "n1")
    );
    assert!(!d.join("after.state").exists());
    assert!(
        n.log().contains("aborted=true"),
        "the transition was aborted\n{}",
        n.log()
    );
}

/// `maintenance-mode=true`: the cluster keeps its hands off — a resource that dies is not
/// noticed (no monitor runs); when maintenance ends, monitoring resumes, notices, recovers.
#[test]
fn maintenance_mode_pauses_monitors() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    n.edit(|cib| {
        base(cib);
        cib.resources
            .push(Resource::Primitive(dummy("m1", &d, 300)));
    });
    n.wait_for("m1 started", |s| {
        history_state(s, "m1", "n1", false) == started()
    });
    n.ctl(&["property", "set", "maintenance-mode=true"]);
    // Let a monitor that was already queued finish, then pull the rug.
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::remove_file(d.join("m1.state")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let s = n.status();
    assert_eq!(
        fail_count(&s, "m1"),
        0,
        "no monitor ran in maintenance:\n{}",
        n.log()
    );
    assert!(
        !d.join("m1.state").exists(),
        "nothing was recovered in maintenance"
    );
    n.ctl(&["property", "set", "maintenance-mode=false"]);
    n.wait_for("m1 noticed and recovered after maintenance", |s| {
        fail_count(s, "m1") == 1 && history_state(s, "m1", "n1", false) == started()
    });
    assert!(d.join("m1.state").exists());
}

/// `failure-timeout`: a resource banned by `migration-threshold=1` comes back by itself once
/// its failure expires — clusterd re-plans at the expiry, nothing else happens meanwhile.
#[test]
fn failure_timeout_expiry_lifts_the_ban() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    let mut r = dummy("ft", &d, 300);
    r.meta.insert("migration-threshold".into(), "1".into());
    r.meta.insert("failure-timeout".into(), "3s".into());
    n.edit(|cib| {
        base(cib);
        cib.resources.push(Resource::Primitive(r));
    });
    n.wait_for("ft started", |s| {
        history_state(s, "ft", "n1", false) == started()
    });
    n.settle();
    std::fs::remove_file(d.join("ft.state")).unwrap();
    let s = n.wait_for("ft banned after one failure", |s| {
        fail_count(s, "ft") == 1 && history_state(s, "ft", "n1", false) == RunState::Stopped
    });
    let stopped_at = call_of(&s, "ft", "stop");
    n.wait_for("ft started again once its failure expired", |s| {
        history_state(s, "ft", "n1", false) == started()
            && ops(s, "ft", "n1")
                .iter()
                .any(|o| o.op == "start" && o.call_id > stopped_at && !o.failed())
    });
    assert!(d.join("ft.state").exists());
}

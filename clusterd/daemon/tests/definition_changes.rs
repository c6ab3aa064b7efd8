//! A running resource whose definition changes, end to end on a single-node clusterd with
//! Debian's agents: a reloadable parameter reloads it in place (Dummy's OCF 1.0 `reload`,
//! Stateful's OCF 1.1 `reload-agent`), any other parameter restarts it, a changed monitor runs
//! again; the exported CIB, history and digests included, is one `crm_simulate` has nothing
//! to do on; maintenance cancels the monitors through the transition.

mod common;

use clusterd_core::status::{OpRecord, OpStatus};
use common::*;
use std::process::Command;

fn keys(st: &clusterd_core::status::ClusterStatus, p: &str) -> Vec<String> {
    ops(st, p, "n1").iter().map(OpRecord::key).collect()
}

/// `crm_simulate -S` on the cluster as `clusterctl cib export --pacemaker` writes it: the
/// transition summary and executed actions it reports.
fn crm_simulate_on_export(n: &Node) -> Vec<String> {
    let xml = n.ctl(&["cib", "export", "--pacemaker"]);
    let f = n.path("export.xml");
    std::fs::write(&f, xml).unwrap();
    let out = Command::new("crm_simulate")
        .arg("-x")
        .arg(&f)
        .arg("-S")
        .output()
        .expect("crm_simulate (pacemaker-cli-utils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let section = text.split("Transition Summary:").nth(1).unwrap_or("");
    section
        .split("Revised Cluster Status")
        .next()
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("* "))
        .map(String::from)
        .collect()
}

#[test]
fn parameter_changes_reload_or_restart_and_the_export_needs_nothing() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    let state = |x: &str| format!("state={}", d.join(x).display());
    let (r_state, s_state) = (state("r.state"), state("s.state"));
    let envfile = format!("envfile={}", d.join("env1").display());
    n.ctl(&["property", "set", "stonith-enabled=false"]);
    n.ctl(&[
        "resource",
        "create",
        "r",
        "ocf:heartbeat:Dummy",
        &r_state,
        "fake=x",
        "op",
        "monitor",
        "interval=1s",
    ]);
    n.ctl(&[
        "resource",
        "create",
        "s",
        "ocf:pacemaker:Stateful",
        &s_state,
        &envfile,
        "op",
        "monitor",
        "interval=1s",
        "role=Promoted",
        "op",
        "monitor",
        "interval=2s",
        "role=Unpromoted",
        "promotable",
        "clone-max=1",
    ]);
    n.wait_for("r started, s promoted", |s| {
        history_state(s, "r", "n1", false) == started()
            && history_state(s, "s", "n1", true)
                == clusterd_core::status::RunState::Active {
                    role: clusterd_core::cib::Role::Promoted,
                    failed: false,
                }
    });
    n.settle();

    // Pacemaker reads clusterd's digests as its own: nothing to restart after a round trip.
    assert_eq!(crm_simulate_on_export(&n), Vec::<String>::new());

    // A reloadable parameter: reloaded in place, recorded as the start it stands for.
    let before = n.status();
    let r_start = call_of(&before, "r", "start");
    let s_start = call_of(&before, "s", "start");
    n.ctl(&["resource", "update", "r", "fake=y"]);
    let envfile2 = format!("envfile={}", d.join("env2").display());
    n.ctl(&["resource", "update", "s", &envfile2]);
    let st = n.wait_for("both reloaded", |s| {
        call_of(s, "r", "start") > r_start && call_of(s, "s", "start") > s_start
    });
    n.settle();
    let st = {
        let _ = st;
        n.status()
    };
    for p in ["r", "s"] {
        assert!(
            !keys(&st, p).contains(&"stop_0".to_string()),
            "{p} was reloaded, not restarted: {:?}",
            ops(&st, p, "n1")
        );
    }
    let log = n.log();
    assert!(
        log.contains("action=reload ") || log.contains("action=reload\n"),
        "{log}"
    );
    assert!(log.contains("action=reload-agent"), "{log}");
    assert!(d.join("r.state").exists());
    assert_eq!(crm_simulate_on_export(&n), Vec::<String>::new());

    // A parameter that is not reloadable (Dummy's state file is unique): a restart.
    let r2 = state("r2.state");
    n.ctl(&["resource", "update", "r", &r2]);
    let st = n.wait_for("r restarted on its new state file", |s| {
        let done = |op: &str| {
            ops(s, "r", "n1")
                .iter()
                .filter(|o| o.op == op && o.interval_ms == 0 && o.status == OpStatus::Done)
                .map(|o| o.call_id)
                .max()
        };
        done("stop").is_some() && done("start") > done("stop")
    });
    assert!(d.join("r2.state").exists(), "{:?}", ops(&st, "r", "n1"));
    assert!(!d.join("r.state").exists());

    // A monitor's timeout changed: the monitor is re-armed, nothing restarts.
    n.settle();
    let st = n.status();
    let stops = call_of(&st, "r", "stop");
    n.ctl(&[
        "resource",
        "update",
        "r",
        "op",
        "monitor",
        "interval=1s",
        "timeout=30s",
    ]);
    n.settle();
    let st = n.status();
    assert_eq!(
        call_of(&st, "r", "stop"),
        stops,
        "{:?}",
        ops(&st, "r", "n1")
    );
    let mon = ops(&st, "r", "n1")
        .into_iter()
        .find(|o| o.key() == "monitor_1000" && o.status == OpStatus::Done)
        .expect("monitor recorded");
    let cib = n.cib();
    let p = cib
        .primitives()
        .into_iter()
        .find(|p| p.primitive.id == "r")
        .unwrap();
    assert_eq!(
        mon.op_digest,
        Some(clusterd_core::digest::for_op(&cib, p.primitive, "monitor", 1000).op_digest()),
        "the re-armed monitor runs with the new timeout"
    );
    assert_eq!(crm_simulate_on_export(&n), Vec::<String>::new());
}

/// Maintenance: the transition cancels every recurring monitor (what crm_simulate does too),
/// and the export of the cluster in maintenance needs nothing more.
#[test]
fn maintenance_cancels_monitors_through_the_transition() {
    let n = Node::start();
    let d = n.dir.path().to_path_buf();
    let state = format!("state={}", d.join("m.state").display());
    n.ctl(&["property", "set", "stonith-enabled=false"]);
    n.ctl(&[
        "resource",
        "create",
        "m",
        "ocf:heartbeat:Dummy",
        &state,
        "op",
        "monitor",
        "interval=1s",
    ]);
    n.wait_for("m started", |s| {
        history_state(s, "m", "n1", false) == started()
    });
    n.settle();
    n.ctl(&["property", "set", "maintenance-mode=true"]);
    let st = n.wait_for("the monitor cancelled", |s| {
        ops(s, "m", "n1")
            .iter()
            .any(|o| o.interval_ms == 1000 && o.status == OpStatus::Cancelled)
    });
    // Only the transition's cancel action writes that record.
    assert!(!st.history["m"]["n1"].is_empty());
    n.settle();
    assert_eq!(crm_simulate_on_export(&n), Vec::<String>::new());
    n.ctl(&["property", "set", "maintenance-mode=false"]);
    n.wait_for("the monitor re-armed", |s| {
        ops(s, "m", "n1")
            .iter()
            .any(|o| o.key() == "monitor_1000" && o.status == OpStatus::Done)
    });
}

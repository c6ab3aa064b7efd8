//! Changed definitions of running resources, checked against `crm_simulate`: a status whose
//! records carry clusterd's operation digests is exported to Pacemaker XML and both schedulers
//! run on it. Their transition summaries and their actions (clone instance numbers aside) must
//! be the same: nothing at all for an unchanged cluster (Pacemaker reads our digests as its
//! own), a restart or a reload for changed parameters, a re-run monitor for a changed monitor,
//! cancels for orphaned monitors and for maintenance.

mod common;

use clusterd_core::cib::{Cib, Role};
use clusterd_core::digest::for_op;
use clusterd_core::sched::analyse;
use clusterd_core::status::{ClusterStatus, OpRecord, OpStatus, ReloadDigest};
use clusterd_core::transition::ActionKind;
use clusterd_core::xml;
use common::oracle::normalize;
use std::collections::BTreeSet;
use std::process::Command;

const NOW: u64 = 1_700_000_000;

/// Records `op` of `rsc` on `node` as clusterd's executor records it under `cib`.
#[allow(clippy::too_many_arguments)]
fn ran(
    st: &mut ClusterStatus,
    cib: &Cib,
    rsc: &str,
    node: &str,
    op: &str,
    interval_ms: u64,
    rc: i32,
    reload: Option<&[&str]>,
) {
    let p = cib
        .primitives()
        .into_iter()
        .find(|p| p.primitive.id == rsc)
        .expect("primitive");
    let input = for_op(cib, p.primitive, op, interval_ms);
    let call_id = st.next_call_id(node);
    st.record(
        rsc,
        node,
        OpRecord {
            op: op.into(),
            interval_ms,
            call_id,
            rc,
            status: OpStatus::Done,
            last_rc_change_s: NOW - 100,
            exec_time_ms: 10,
            exit_reason: None,
            op_digest: Some(input.op_digest()),
            reload: reload.map(|list| {
                let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
                ReloadDigest {
                    restart_digest: input.restart_digest(&list),
                    force_restart: list,
                }
            }),
        },
    );
}

/// `rsc` runs on `node` in `role` with the monitors of that role; probed elsewhere.
fn running(st: &mut ClusterStatus, cib: &Cib, rsc: &str, node: &str, role: Role, reload: bool) {
    let rl: Option<&[&str]> = reload.then_some(&["state"]);
    ran(st, cib, rsc, node, "monitor", 0, 7, rl);
    ran(st, cib, rsc, node, "start", 0, 0, rl);
    if role == Role::Promoted {
        ran(st, cib, rsc, node, "promote", 0, 0, rl);
    }
    let p = cib
        .primitives()
        .into_iter()
        .find(|p| p.primitive.id == rsc)
        .expect("primitive");
    for o in &p.primitive.ops {
        let applies = match o.role {
            None => true,
            Some(r) => r == role,
        };
        if o.name == "monitor" && o.interval_ms > 0 && applies {
            let rc = if role == Role::Promoted { 8 } else { 0 };
            ran(st, cib, rsc, node, "monitor", o.interval_ms, rc, None);
        }
    }
}

/// Every primitive without history on a node gets a "not running" probe there.
fn probed(st: &mut ClusterStatus, cib: &Cib) {
    let nodes: Vec<String> = st.nodes.keys().cloned().collect();
    for p in cib.primitives() {
        for n in &nodes {
            if st
                .history
                .get(&p.primitive.id)
                .and_then(|h| h.get(n))
                .is_none()
            {
                ran(st, cib, &p.primitive.id, n, "monitor", 0, 7, None);
            }
        }
    }
}

/// `rsc task[=interval] node` lines, clone instance numbers removed, sorted.
fn ours_actions(cib: &Cib, st: &ClusterStatus) -> (Vec<String>, BTreeSet<String>) {
    let a = analyse(cib, st, NOW);
    let summary = normalize(&a.summary().join("\n"));
    let actions = a
        .transition
        .actions
        .iter()
        .map(|x| {
            let task = match x.kind {
                ActionKind::Monitor { interval_ms: 0 } => "monitor".to_string(),
                ActionKind::Monitor { interval_ms } => format!("monitor={interval_ms}"),
                ActionKind::Cancel { interval_ms } => format!("cancel={interval_ms}"),
                ActionKind::Notify { .. } => "notify".into(),
                k => k.agent_action().into(),
            };
            format!("{} {task} {}", base(&x.resource), x.node)
        })
        .collect();
    (summary, actions)
}

fn base(r: &str) -> &str {
    r.split(':').next().unwrap_or(r)
}

fn theirs_actions(cib: &Cib, st: &ClusterStatus) -> (Vec<String>, BTreeSet<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    std::fs::write(&f, xml::export(cib, Some(st))).unwrap();
    let out = Command::new("crm_simulate")
        .arg("-x")
        .arg(&f)
        .arg("-S")
        .output()
        .expect("crm_simulate (Debian pacemaker-cli-utils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "crm_simulate failed: {text}");
    let section = text.split("Transition Summary:").nth(1).unwrap_or("");
    let (summary, rest) = section
        .split_once("Executing Cluster Transition")
        .unwrap_or((section, ""));
    let exec = rest.split("Revised Cluster Status").next().unwrap_or("");
    let mut actions: BTreeSet<String> = exec
        .lines()
        .filter_map(|l| l.trim().strip_prefix("* Resource action:"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "RSC TASK on NODE"
            format!("{} {} {}", base(w[0]), w[1], w[3])
        })
        .collect();
    // "clear_failcount for RSC on NODE"
    actions.extend(
        exec.lines()
            .filter_map(|l| l.trim().strip_prefix("* Cluster action:"))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"clear_failcount"))
                    .then(|| format!("{} clear_failcount {}", base(w[2]), w[4]))
            }),
    );
    (normalize(summary), actions, text)
}

fn agree(name: &str, cib: &Cib, st: &ClusterStatus) -> (Vec<String>, BTreeSet<String>) {
    let ours = ours_actions(cib, st);
    let (summary, actions, text) = theirs_actions(cib, st);
    assert_eq!(
        ours,
        (summary, actions),
        "{name}: ours (left) and crm_simulate's (right) differ\n{text}"
    );
    ours
}

const BASE: &str = "
    resource create A ocf:heartbeat:Dummy fake=x op monitor interval=10s timeout=20s
    resource create B ocf:heartbeat:Dummy op monitor interval=10s OCF_CHECK_LEVEL=10
    resource create S ocf:pacemaker:Stateful op monitor interval=10s role=Promoted op monitor interval=11s role=Unpromoted
    resource promotable S S-clone promoted-max=1
    resource create g1 ocf:heartbeat:Dummy --group G
    resource create g2 ocf:heartbeat:Dummy --group G";

fn steady(commands: &str) -> (Cib, ClusterStatus) {
    let cib = common::cib(&["n1", "n2"], commands);
    let mut st = ClusterStatus::all_online(&["n1", "n2"]);
    running(&mut st, &cib, "A", "n1", Role::Started, false);
    running(&mut st, &cib, "B", "n2", Role::Started, false);
    running(&mut st, &cib, "S", "n1", Role::Promoted, false);
    running(&mut st, &cib, "S", "n2", Role::Unpromoted, false);
    running(&mut st, &cib, "g1", "n2", Role::Started, false);
    running(&mut st, &cib, "g2", "n2", Role::Started, false);
    for (n, v) in [("n1", "10"), ("n2", "5")] {
        st.nodes
            .get_mut(n)
            .unwrap()
            .attributes
            .insert("master-S".into(), v.into());
    }
    probed(&mut st, &cib);
    (cib, st)
}

/// Edits `cib` with clusterctl command lines, keeping the status.
fn edit(cib: &mut Cib, commands: &str) {
    for line in commands.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let clusterd_core::pcs::Command::Edit(edits) = clusterd_core::pcs::parse(&args).unwrap()
        else {
            panic!("{line}: not an edit")
        };
        clusterd_core::pcs::apply(cib, &edits, &|_| None).unwrap();
    }
}

/// Regression: exported history without digests made crm_simulate restart every running
/// resource ("due to resource definition change").
#[test]
fn an_unchanged_running_cluster_round_trips_without_restarts() {
    let (cib, st) = steady(BASE);
    let (summary, actions) = agree("steady", &cib, &st);
    assert!(
        summary.is_empty() && actions.is_empty(),
        "{summary:?} {actions:?}"
    );
    // And through our own import of the exported XML.
    let back = xml::import(&xml::export(&cib, Some(&st))).unwrap();
    let digests = |s: &ClusterStatus| -> Vec<Option<String>> {
        s.history
            .values()
            .flat_map(|m| m.values().flatten().map(|o| o.op_digest.clone()))
            .collect()
    };
    assert_eq!(digests(&back.status), digests(&st));
    assert!(analyse(&back.cib, &back.status, NOW).transition.is_empty());
}

#[test]
fn a_changed_parameter_restarts_the_resource() {
    let (mut cib, st) = steady(BASE);
    edit(&mut cib, "resource update A fake=y");
    let (summary, actions) = agree("param", &cib, &st);
    assert_eq!(summary, vec!["Restart A ( n1 )".to_string()]);
    assert!(actions.contains("A stop n1") && actions.contains("A start n1"));
}

#[test]
fn a_changed_parameter_of_a_promoted_instance_restarts_it_promoted() {
    let (mut cib, st) = steady(BASE);
    edit(&mut cib, "resource update S envfile=/tmp/x");
    agree("promotable", &cib, &st);
}

/// A failure of an operation whose definition then changed is forgotten (Pacemaker's
/// `clear_failcount`), and the resource is recovered with the new definition.
#[test]
fn a_redefined_failed_resource_gets_its_fail_count_cleared() {
    let (mut cib, mut st) = steady(BASE);
    ran(&mut st, &cib, "A", "n1", "monitor", 10_000, 7, None);
    st.record_failure("n1", "A", "monitor", 10_000, NOW - 50, false);
    edit(&mut cib, "resource update A fake=z");
    let (_, actions) = agree("failed", &cib, &st);
    assert!(actions.contains("A clear_failcount n1"), "{actions:?}");
}

#[test]
fn reloadable_parameters_reload_and_the_others_restart() {
    let cib = common::cib(
        &["n1"],
        "resource create A ocf:heartbeat:Dummy fake=x state=/tmp/a",
    );
    let mut st = ClusterStatus::all_online(&["n1"]);
    running(&mut st, &cib, "A", "n1", Role::Started, true);
    let mut reload = cib.clone();
    edit(&mut reload, "resource update A fake=y");
    let (summary, actions) = agree("reload", &reload, &st);
    assert_eq!(summary, vec!["Reload A ( n1 )".to_string()]);
    assert!(actions.contains("A reload-agent n1"), "{actions:?}");
    let mut restart = cib.clone();
    edit(&mut restart, "resource update A state=/tmp/b");
    let (summary, _) = agree("restart", &restart, &st);
    assert_eq!(summary, vec!["Restart A ( n1 )".to_string()]);
}

#[test]
fn a_changed_monitor_runs_again_and_an_orphaned_one_is_cancelled() {
    let (mut cib, st) = steady(BASE);
    edit(
        &mut cib,
        "resource update A op monitor interval=10s timeout=30s
         resource update B op monitor interval=20s OCF_CHECK_LEVEL=10",
    );
    let (summary, actions) = agree("monitors", &cib, &st);
    assert!(summary.is_empty(), "{summary:?}");
    for a in [
        "A monitor=10000 n1",
        "B cancel=10000 n2",
        "B monitor=20000 n2",
    ] {
        assert!(actions.contains(a), "{a} in {actions:?}");
    }
}

#[test]
fn maintenance_cancels_recurring_monitors() {
    for (name, commands) in [
        ("cluster", "property set maintenance-mode=true"),
        ("node", "node maintenance n2"),
        ("resource", "resource meta A maintenance=true"),
    ] {
        let (mut cib, st) = steady(BASE);
        edit(&mut cib, commands);
        let (summary, actions) = agree(name, &cib, &st);
        assert!(summary.is_empty(), "{name}: {summary:?}");
        assert!(
            !actions.is_empty() && actions.iter().all(|a| a.contains(" cancel=")),
            "{name}: {actions:?}"
        );
    }
}

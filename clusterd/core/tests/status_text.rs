//! `clusterctl status` prints failed actions as `pcs status` does: pcs shows `crm_mon`'s
//! output, so `crm_mon --one-shot` (and `--show-detail`, what `pcs status --full` adds) run on
//! our export of the same cluster is the oracle, line for line. `status --json` carries each
//! resource's operations.

mod common;

use clusterd_core::report::{ctime, readable_interval, status_report, status_text_with};
use clusterd_core::status::{ClusterStatus, OpRecord, OpStatus};
use clusterd_core::xml;
use std::process::Command;

const NOW: u64 = 1_700_000_500;

fn rec(op: &str, interval_ms: u64, call_id: u64, rc: i32, status: OpStatus) -> OpRecord {
    OpRecord {
        op: op.into(),
        interval_ms,
        call_id,
        rc,
        status,
        last_rc_change_s: 1_700_000_000 + call_id,
        exec_time_ms: 0,
        exit_reason: None,
        op_digest: Some(clusterd_core::digest::digest_of([])),
        reload: None,
    }
}

fn failed_cluster() -> (clusterd_core::cib::Cib, ClusterStatus) {
    let cib = common::cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy op monitor interval=10s
         resource create B ocf:heartbeat:Dummy op monitor interval=90s",
    );
    let mut st = ClusterStatus::all_online(&["n1", "n2"]);
    st.record("A", "n1", rec("monitor", 0, 1, 7, OpStatus::Done));
    st.record("A", "n1", rec("start", 0, 2, 0, OpStatus::Done));
    let mut m = rec("monitor", 10_000, 3, 7, OpStatus::Done);
    m.exit_reason = Some("state file vanished".into());
    m.exec_time_ms = 1500;
    st.record("A", "n1", m);
    st.record_failure("n1", "A", "monitor", 10_000, 1_700_000_003, false);
    let mut t = rec("start", 0, 4, 1, OpStatus::Timeout);
    t.exit_reason = Some("B start timed out after 20000 ms (agent killed)".into());
    t.exec_time_ms = 20_000;
    st.record("B", "n2", rec("monitor", 0, 3, 7, OpStatus::Done));
    st.record("B", "n2", t);
    st.record("B", "n1", rec("monitor", 0, 5, 5, OpStatus::Done));
    st.record("A", "n2", rec("monitor", 0, 6, 1, OpStatus::Done));
    (cib, st)
}

fn section(text: &str) -> Vec<String> {
    text.split("Failed Resource Actions:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with("* "))
        .map(String::from)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn failed_actions_read_as_crm_mon_prints_them() {
    let (cib, st) = failed_cluster();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    std::fs::write(&f, xml::export(&cib, Some(&st))).unwrap();
    for (full, args) in [(false, vec!["-1"]), (true, vec!["-1", "--show-detail"])] {
        let out = Command::new("crm_mon")
            .args(&args)
            .env("CIB_file", &f)
            .env("TZ", "UTC")
            .output()
            .expect("crm_mon (pacemaker-cli-utils)");
        let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours = status_text_with(&cib, &st, None, NOW, full);
        assert_eq!(
            sorted(section(&ours)),
            sorted(section(&theirs)),
            "full={full}\nours:\n{ours}\ncrm_mon:\n{theirs}"
        );
        assert_eq!(section(&ours).len(), 3, "{ours}");
    }
}

#[test]
fn status_json_carries_each_resource_s_operations() {
    let (cib, st) = failed_cluster();
    let rep = status_report(&cib, &st, None, NOW);
    let a = rep.resources.iter().find(|r| r.resource == "A").unwrap();
    let ops: Vec<(String, String, u64, i32)> = a
        .operations
        .iter()
        .map(|o| (o.node.clone(), o.action.clone(), o.interval_ms, o.rc))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("n1".into(), "monitor".into(), 0, 7),
            ("n1".into(), "start".into(), 0, 0),
            ("n1".into(), "monitor".into(), 10_000, 7),
            ("n2".into(), "monitor".into(), 0, 1),
        ]
    );
    let mon = &a.operations[2];
    assert_eq!(mon.exit_reason.as_deref(), Some("state file vanished"));
    assert_eq!((mon.exec_time_ms, mon.failed), (1500, true));
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(
        json["resources"][0]["operations"][2]["exit_reason"],
        "state file vanished"
    );
    assert_eq!(json["failed_actions"][0]["status"], "done");
}

#[test]
fn full_status_lists_operations_and_node_attributes() {
    let (cib, mut st) = failed_cluster();
    st.nodes
        .get_mut("n1")
        .unwrap()
        .attributes
        .insert("master-S".into(), "10".into());
    let text = status_text_with(&cib, &st, None, NOW, true);
    assert!(
        text.contains("Node Attributes:\n  * Node: n1:\n    * master-S"),
        "{text}"
    );
    assert!(
        text.contains("    * A: migration-threshold=INFINITY fail-count=1 last-failure='Tue Nov 14 22:13:23 2023':"),
        "{text}"
    );
    assert!(
        text.contains("      * (3) monitor: interval=\"10000ms\" last-rc-change=\"Tue Nov 14 22:13:23 2023\" exec-time=\"1500ms\" queue-time=\"0ms\" rc=7 (not running)"),
        "{text}"
    );
}

#[test]
fn pacemaker_time_and_interval_words() {
    assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    assert_eq!(ctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
    assert_eq!(ctime(1_795_958_945), "Sun Nov 29 13:29:05 2026");
    for (ms, s) in [
        (10_000, "10s"),
        (1000, "1000ms"),
        (1500, "1.500s"),
        (60_000, "60s"),
        (90_000, "1m30s"),
        (120_000, "2m"),
        (0, "0s"),
    ] {
        assert_eq!(readable_interval(ms), s);
    }
}

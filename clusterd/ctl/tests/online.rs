//! clusterctl against a running single-node clusterd: online edits, `cluster cib` →
//! `-f` edits → `cluster cib-push`, a stale push refused, standby, cleanup, status --json.
//! Needs root and the workspace's `clusterd` binary (built by the workspace test run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tandem_testkit::proc::Daemon;
use tandem_testkit::wait;

const WAIT: Duration = Duration::from_secs(60);

fn ctl(state: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_clusterctl"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("run clusterctl");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(state: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(state, args);
    assert_eq!(code, 0, "clusterctl {args:?}:\n{out}\n{err}");
    out
}

fn started(state: &Path, rsc: &str) -> Option<String> {
    let (code, out, _) = ctl(state, &["status", "--json"]);
    if code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["resources"]
        .as_array()?
        .iter()
        .find(|r| r["resource"] == rsc && r["role"] == "Started")
        .and_then(|r| r["node"].as_str().map(String::from))
}

#[test]
fn online_edits_push_and_standby() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    let config = dir.path().join("clusterd.toml");
    std::fs::write(
        &config,
        "cluster_name = \"ctltest\"\n\n[[node]]\nname = \"n1\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(tandem_testkit::bins::bin("clusterd"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--node")
        .arg("n1")
        .arg("--state-dir")
        .arg(&state);
    let _daemon = Daemon::spawn("clusterd", cmd, &dir.path().join("clusterd.log"));
    wait::until("clusterd answers", WAIT, || ctl(&state, &["status"]).0 == 0);

    ok(&state, &["property", "set", "stonith-enabled=false"]);
    let a_state = format!("state={}/A.state", dir.path().display());
    ok(
        &state,
        &[
            "resource",
            "create",
            "A",
            "ocf:heartbeat:Dummy",
            &a_state,
            "op",
            "monitor",
            "interval=5s",
        ],
    );
    wait::until("A started on n1", WAIT, || {
        started(&state, "A").as_deref() == Some("n1")
    });

    // The thesis's workflow: fetch, edit offline, push.
    let file = dir.path().join("cfg");
    let f = file.to_str().unwrap();
    ok(&state, &["cluster", "cib", f]);
    let b_state = format!("state={}/B.state", dir.path().display());
    ok(
        &state,
        &[
            "-f",
            f,
            "resource",
            "create",
            "B",
            "ocf:heartbeat:Dummy",
            &b_state,
        ],
    );
    ok(
        &state,
        &[
            "-f",
            f,
            "constraint",
            "colocation",
            "add",
            "B",
            "with",
            "A",
            "INFINITY",
        ],
    );
    ok(&state, &["cluster", "cib-push", f]);
    wait::until("B started with A", WAIT, || {
        started(&state, "B").as_deref() == Some("n1")
    });

    // The file is now stale: the cluster moved on (the push and one more edit).
    ok(&state, &["resource", "meta", "A", "priority=1"]);
    let (code, _, err) = ctl(&state, &["cluster", "cib-push", f]);
    assert_eq!(code, 1, "a stale push must be refused: {err}");
    assert!(err.contains("changed since"), "{err}");

    let text = ok(&state, &["status"]);
    assert!(
        text.contains("Cluster name: ctltest") && text.contains("Online: [ n1 ]"),
        "{text}"
    );
    ok(&state, &["resource", "cleanup", "A"]);

    ok(&state, &["node", "standby", "n1"]);
    wait::until("everything stopped on standby", WAIT, || {
        started(&state, "A").is_none() && started(&state, "B").is_none()
    });
    ok(&state, &["node", "unstandby", "n1"]);
    wait::until("A back", WAIT, || {
        started(&state, "A").as_deref() == Some("n1")
    });
    let why = ok(&state, &["why", "B"]);
    assert!(why.contains("Started on n1"), "{why}");
}

/// `resource restart`: the resource and what depends on it stop (dependents first) and start
/// again, with a new start in the history; `target-role` is what it was before.
#[test]
fn resource_restart_stops_and_starts_it_with_its_dependents() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    let config = dir.path().join("clusterd.toml");
    std::fs::write(
        &config,
        "cluster_name = \"rs\"\n\n[[node]]\nname = \"n1\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(tandem_testkit::bins::bin("clusterd"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--node")
        .arg("n1")
        .arg("--state-dir")
        .arg(&state);
    let _daemon = Daemon::spawn("clusterd", cmd, &dir.path().join("clusterd.log"));
    wait::until("clusterd answers", WAIT, || ctl(&state, &["status"]).0 == 0);
    ok(&state, &["property", "set", "stonith-enabled=false"]);
    for r in ["A", "B"] {
        let st = format!("state={}/{r}.state", dir.path().display());
        ok(
            &state,
            &["resource", "create", r, "ocf:heartbeat:Dummy", &st],
        );
    }
    ok(
        &state,
        &["constraint", "order", "start", "A", "then", "start", "B"],
    );
    wait::until("A and B started", WAIT, || {
        started(&state, "A").is_some() && started(&state, "B").is_some()
    });
    let calls = |rsc: &str| -> Vec<(String, u64)> {
        let out = ok(&state, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["resource"] == rsc)
            .flat_map(|r| r["operations"].as_array().unwrap().clone())
            .filter(|o| o["interval_ms"] == 0)
            .map(|o| {
                (
                    o["action"].as_str().unwrap().to_string(),
                    o["call_id"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before = calls("A");
    let out = ok(&state, &["resource", "restart", "A", "--wait=30"]);
    assert!(out.contains("A successfully restarted"), "{out}");
    let (a, b) = (calls("A"), calls("B"));
    let call = |v: &[(String, u64)], op: &str| v.iter().find(|(o, _)| o == op).map(|(_, c)| *c);
    assert!(
        call(&a, "start") > call(&before, "start"),
        "{before:?} -> {a:?}"
    );
    // B depends on A (the order): it stopped before A stopped and started after A started.
    assert!(call(&b, "stop") < call(&a, "stop"), "{a:?} {b:?}");
    assert!(call(&b, "start") > call(&a, "start"), "{a:?} {b:?}");
    let config = ok(&state, &["resource", "config", "A"]);
    assert!(!config.contains("target-role"), "{config}");
    let (code, _, err) = ctl(&state, &["resource", "restart", "Nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("'Nope' does not exist"), "{err}");
}

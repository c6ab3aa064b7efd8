//! System tests of `ocf:tandem:replicator` against a real replicatord (a standalone resource
//! on a file, its own configuration and state directory): the whole life cycle with the
//! promotion scores a fake `crm_master` on PATH records, a fresh resource refused promotion
//! until the operator's `primary --force`, notifications, replicatord down or not knowing the
//! resource, the agent's defaults against replicatord's, and ocf-tester.

mod common;

use std::process::Command;

use common::{FakeCrmMaster, Outcome, expect_rc, ocf_tester, run_agent, run_agent_without};
use tandem_agents::replicator::{DEFAULT_CONFIG, DEFAULT_STATE_DIR};
use tandem_testkit::stack::Replicator;

const BIN: &str = "tandem-replicator";
const INSTANCE: &str = "mailData:0";

struct Agent {
    config: String,
    state_dir: String,
    crm: FakeCrmMaster,
    resource: String,
}

impl Agent {
    fn new(r: &Replicator) -> Agent {
        Agent {
            config: r.config.to_string_lossy().into_owned(),
            state_dir: r.state_dir.to_string_lossy().into_owned(),
            crm: FakeCrmMaster::new(),
            resource: r.resource.clone(),
        }
    }

    /// Runs `action` as Pacemaker would for a promotable clone instance, with the thesis's
    /// `drbd_resource` parameter name; `extra` adds or overrides variables.
    fn run(&self, action: &str, extra: &[(&str, &str)]) -> Outcome {
        let path = self.crm.path_var();
        let mut env = vec![
            ("PATH", path.as_str()),
            ("OCF_RESKEY_CRM_meta_interval", "0"),
            ("OCF_RESKEY_CRM_meta_timeout", "20000"),
            ("OCF_RESKEY_CRM_meta_clone", "0"),
            ("OCF_RESKEY_CRM_meta_clone_max", "2"),
            ("OCF_RESKEY_CRM_meta_clone_node_max", "1"),
            ("OCF_RESKEY_CRM_meta_master_max", "1"),
            ("OCF_RESKEY_CRM_meta_master_node_max", "1"),
            ("OCF_RESKEY_CRM_meta_notify", "true"),
        ];
        env.extend_from_slice(extra);
        run_agent(
            None,
            BIN,
            action,
            INSTANCE,
            &[
                ("drbd_resource", &self.resource),
                ("config", &self.config),
                ("state_dir", &self.state_dir),
            ],
            &env,
        )
    }

    fn monitor(&self) -> Outcome {
        self.run("monitor", &[("OCF_RESKEY_CRM_meta_interval", "31000")])
    }

    fn scores(&self) -> Vec<String> {
        self.crm.take()
    }
}

fn set(n: i64) -> String {
    format!("{INSTANCE} -Q -l reboot -v {n}")
}

fn removed() -> String {
    format!("{INSTANCE} -l reboot -D")
}

fn nbdinfo(uri: &str) -> (i32, String) {
    let out = Command::new("nbdinfo")
        .arg(uri)
        .env("PATH", tandem_testkit::debian_path())
        .output()
        .expect("nbdinfo (libnbd-bin)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn fresh_resource_through_its_whole_life_cycle() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let r = Replicator::create(dir.path(), None, "n1", "zimbradata", 64);
    let a = Agent::new(&r);

    // Probe before anything: stopped, and a probe of a stopped resource leaves scores alone.
    expect_rc(&a.run("monitor", &[]), 7, "probe of a down resource");
    assert_eq!(a.scores(), Vec::<String>::new());

    // start = up as Secondary. Fresh meta-data is Inconsistent: no promotion score.
    expect_rc(&a.run("start", &[]), 0, "start");
    assert_eq!(r.state(), (true, "Secondary".into(), "Inconsistent".into()));
    assert_eq!(a.scores(), [removed()]);
    expect_rc(&a.monitor(), 0, "monitor of an Inconsistent Secondary");
    expect_rc(&a.run("start", &[]), 0, "second start");
    a.scores();

    // Promote cannot succeed on Inconsistent data: it fails at once (not after its timeout)
    // and tells the operator what to do.
    let o = a.run("promote", &[("OCF_RESKEY_CRM_meta_timeout", "90000")]);
    expect_rc(&o, 1, "promote of Inconsistent data");
    assert!(
        o.output.contains("primary --force zimbradata") && o.output.contains("Inconsistent"),
        "{}",
        o.output
    );
    assert_eq!(r.state().1, "Secondary");

    // The operator's one-time step (the thesis's drbdadm primary --force), then back to
    // Secondary: the data is UpToDate now and monitor offers it for promotion.
    r.ctl(&["primary", "--force", "zimbradata"]);
    r.ctl(&["secondary", "zimbradata"]);
    a.scores();
    expect_rc(&a.monitor(), 0, "monitor of an UpToDate Secondary");
    assert_eq!(a.scores(), [set(10000)]);

    // Notifications: pre-* prepare nothing; post-* refresh the score.
    let pre = [
        ("OCF_RESKEY_CRM_meta_notify_type", "pre"),
        ("OCF_RESKEY_CRM_meta_notify_operation", "promote"),
        ("OCF_RESKEY_CRM_meta_notify_promote_uname", "n1"),
    ];
    expect_rc(&a.run("notify", &pre), 0, "pre-promote notification");
    assert_eq!(a.scores(), Vec::<String>::new());

    // promote = Primary: the export opens to real clients; monitor says 8.
    let uri = r.export_uri();
    let (code, out) = nbdinfo(&uri);
    assert_ne!(code, 0, "a Secondary's export must refuse clients:\n{out}");
    expect_rc(&a.run("promote", &[]), 0, "promote");
    assert_eq!(r.state(), (true, "Primary".into(), "UpToDate".into()));
    let (code, out) = nbdinfo(&uri);
    assert_eq!(code, 0, "nbdinfo {uri} on the Primary:\n{out}");
    expect_rc(&a.run("promote", &[]), 0, "second promote");
    a.scores();
    expect_rc(&a.monitor(), 8, "monitor of the Primary");
    assert_eq!(a.scores(), [set(10000)]);
    let post = [
        ("OCF_RESKEY_CRM_meta_notify_type", "post"),
        ("OCF_RESKEY_CRM_meta_notify_operation", "promote"),
        ("OCF_RESKEY_CRM_meta_notify_promote_uname", "n1"),
        ("OCF_RESKEY_CRM_meta_notify_master_uname", "n1"),
    ];
    expect_rc(&a.run("notify", &post), 0, "post-promote notification");
    assert_eq!(a.scores(), [set(10000)]);

    // demote = Secondary: the export refuses clients again.
    expect_rc(&a.run("demote", &[]), 0, "demote");
    assert_eq!(r.state(), (true, "Secondary".into(), "UpToDate".into()));
    assert_ne!(nbdinfo(&uri).0, 0, "export refused after demote");
    expect_rc(&a.run("demote", &[]), 0, "second demote");
    expect_rc(&a.monitor(), 0, "monitor after demote");

    // A start that finds the resource Primary (promoted by hand) leaves it unpromoted.
    r.ctl(&["primary", "zimbradata"]);
    expect_rc(&a.run("start", &[]), 0, "start of a Primary");
    assert_eq!(r.state().1, "Secondary");

    // stop = down, score removed; stopping twice is fine.
    a.scores();
    expect_rc(&a.run("stop", &[]), 0, "stop");
    assert!(!r.state().0, "down after stop:\n{}", r.status());
    assert_eq!(a.scores(), [removed()]);
    expect_rc(&a.monitor(), 7, "monitor after stop");
    expect_rc(&a.run("stop", &[]), 0, "second stop");
    // A Primary at stop is demoted and taken down.
    expect_rc(&a.run("start", &[]), 0, "start again");
    expect_rc(&a.run("promote", &[]), 0, "promote again");
    expect_rc(&a.run("stop", &[]), 0, "stop of the Primary");
    assert!(!r.state().0);
}

#[test]
fn replicatord_down_or_not_knowing_the_resource() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replicator::create(dir.path(), None, "n1", "r0", 16);
    let a = Agent::new(&r);
    expect_rc(&a.run("start", &[]), 0, "start");

    // A resource replicatord does not know (e.g. a node whose configuration lacks it): probes
    // say "not running", stop succeeds (nothing can run), anything else is not installed here.
    let mut b = Agent::new(&r);
    b.resource = "elsewhere".into();
    expect_rc(&b.run("monitor", &[]), 7, "probe of an unknown resource");
    expect_rc(&b.run("stop", &[]), 0, "stop of an unknown resource");
    let o = b.run("start", &[]);
    expect_rc(&o, 5, "start of a resource not in the configuration");
    assert!(o.output.contains("elsewhere"), "{}", o.output);
    expect_rc(&b.monitor(), 5, "recurring monitor of an unknown resource");
    // A configuration file that is not there.
    let o = run_agent(
        None,
        BIN,
        "start",
        "x",
        &[("resource", "r0"), ("config", "/nonexistent/r.res")],
        &[],
    );
    expect_rc(&o, 5, "start with a missing configuration");
    assert!(o.output.contains("/nonexistent/r.res"), "{}", o.output);
    let o = run_agent(
        None,
        BIN,
        "validate-all",
        "x",
        &[("resource", "r0"), ("state_dir", "relative")],
        &[],
    );
    expect_rc(&o, 6, "relative state_dir");
    assert!(o.output.contains("state_dir"), "{}", o.output);
    // A promotable clone configured beyond what replication supports.
    let o = a.run("start", &[("OCF_RESKEY_CRM_meta_clone_node_max", "2")]);
    expect_rc(&o, 6, "clone-node-max=2");
    assert!(o.output.contains("clone-node-max"), "{}", o.output);
    let o = a.run("start", &[("OCF_RESKEY_CRM_meta_master_max", "2")]);
    expect_rc(&o, 6, "master-max=2 without allow-two-primaries");
    assert!(o.output.contains("allow-two-primaries"), "{}", o.output);

    // replicatord stops (SIGTERM takes its resources down): the resource is not running, a
    // stop succeeds, a start fails saying why (the cluster retries or moves it).
    r.stop_daemon();
    a.scores();
    expect_rc(&a.monitor(), 7, "monitor without replicatord");
    assert_eq!(a.scores(), [removed()]);
    expect_rc(&a.run("monitor", &[]), 7, "probe without replicatord");
    expect_rc(&a.run("stop", &[]), 0, "stop without replicatord");
    let o = a.run("start", &[]);
    expect_rc(&o, 1, "start without replicatord");
    assert!(
        o.output.contains("replicatord is not running"),
        "{}",
        o.output
    );

    // Back: start brings the resource up again.
    r.start_daemon();
    expect_rc(&a.run("start", &[]), 0, "start once replicatord is back");
    expect_rc(&a.monitor(), 0, "monitor");

    // replicatord crashes: its control socket is left behind but refuses connections
    // (replicatorctl exit 3); that is "not running" too, and stop succeeds.
    r.kill9();
    assert!(r.state_dir.join("control.sock").exists());
    expect_rc(&a.monitor(), 7, "monitor after replicatord crashed");
    expect_rc(&a.run("stop", &[]), 0, "stop after replicatord crashed");
    let o = a.run("start", &[]);
    expect_rc(&o, 1, "start while replicatord is down");
    assert!(o.output.contains("not running"), "{}", o.output);
    r.start_daemon();
    expect_rc(
        &a.run("monitor", &[]),
        7,
        "probe after replicatord restarted",
    );
    expect_rc(&a.run("start", &[]), 0, "start after replicatord restarted");
    expect_rc(&a.run("stop", &[]), 0, "stop");
}

#[test]
fn defaults_are_replicatords() {
    for bin in ["replicatorctl", "replicatord"] {
        let out = Command::new(tandem_testkit::bins::bin(bin))
            .arg("--help")
            .env_remove("REPLICATOR_STATE_DIR")
            .env_remove("REPLICATOR_CONFIG")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for default in [DEFAULT_STATE_DIR, DEFAULT_CONFIG] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{bin}'s defaults differ from the agent's {default}:\n{help}"
            );
        }
    }
    let out = Command::new(common::agent_bin(BIN))
        .arg("meta-data")
        .output()
        .unwrap();
    let meta = String::from_utf8_lossy(&out.stdout);
    for default in [DEFAULT_STATE_DIR, DEFAULT_CONFIG] {
        assert!(meta.contains(&format!("default=\"{default}\"")), "{meta}");
    }
}

#[test]
fn ocf_tester_passes_for_replicator() {
    tandem_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let r = Replicator::create(dir.path(), None, "n1", "r0", 16);
    // ocf-tester promotes: the data must be UpToDate (the operator's first primary --force).
    r.ctl(&["up", "r0"]);
    r.ctl(&["primary", "--force", "r0"]);
    r.ctl(&["down", "r0"]);
    let crm = FakeCrmMaster::new();
    let config = r.config.to_string_lossy().into_owned();
    let state = r.state_dir.to_string_lossy().into_owned();
    let path = crm.path_var();
    ocf_tester(
        None,
        BIN,
        "r0",
        &[
            ("drbd_resource", "r0"),
            ("config", &config),
            ("state_dir", &state),
        ],
        &[("PATH", &path)],
    );
    assert!(
        !r.state().0,
        "ocf-tester leaves it stopped:\n{}",
        r.status()
    );
    let calls = crm.take();
    assert!(
        calls.contains(&"r0 -Q -l reboot -v 10000".to_owned())
            && calls.last() == Some(&"r0 -l reboot -D".to_owned()),
        "{calls:?}"
    );
}

/// Regression: `replicatorctl` waits for replicatord's answer without a limit, so a replicatord
/// that accepts on its control socket but never answers (hung, stopped with SIGSTOP) left the
/// agent hanging past its op timeout, killed by the cluster manager (a stop timing out gets
/// the node fenced). The agent now gives replicatorctl until shortly before its own timeout
/// and fails with a reason of its own.
#[test]
fn a_replicatord_that_never_answers_fails_the_action_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    // Listening, never accepting: connect and the request succeed, the answer never comes.
    let _hung = std::os::unix::net::UnixListener::bind(state_dir.join("control.sock")).unwrap();
    // The cluster manager would kill the agent at 4 s; this bound only catches a hang.
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(common::agent_bin(BIN))
        .arg("monitor")
        .env("PATH", tandem_testkit::debian_path())
        .env("OCF_RESOURCE_INSTANCE", INSTANCE)
        .env("OCF_RESKEY_drbd_resource", "r0")
        .env("OCF_RESKEY_config", dir.path().join("r0.res"))
        .env("OCF_RESKEY_state_dir", &state_dir)
        .env("OCF_RESKEY_CRM_meta_interval", "31000")
        .env("OCF_RESKEY_CRM_meta_timeout", "4000");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "monitor against a replicatord that never answers:\n{text}"
    );
    assert!(
        text.contains("did not finish within the op timeout"),
        "{text}"
    );
}

/// A node without replicatorctl (and so without a running replicatord: no control socket):
/// nothing of the resource can run there, so a probe answers 7 and a stop succeeds — both used
/// to fail with OCF_ERR_INSTALLED. A start still says what is missing.
#[test]
fn probe_and_stop_answer_without_replicatorctl() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let config = dir.path().join("r0.res");
    let state = state_dir.to_string_lossy().into_owned();
    let conf = config.to_string_lossy().into_owned();
    let beside = common::agent_bin("replicatorctl");
    let hide = ["replicatorctl", beside.to_str().unwrap()];
    let hide: Vec<&str> = hide
        .into_iter()
        .filter(|t| t.starts_with('/') || !common::tool_files(t).is_empty())
        .collect();
    let run = |action: &str| {
        run_agent_without(
            None,
            &hide,
            BIN,
            action,
            INSTANCE,
            &[("resource", "r0"), ("config", &conf), ("state_dir", &state)],
            &[("OCF_RESKEY_CRM_meta_interval", "0")],
        )
    };
    expect_rc(&run("monitor"), 7, "probe without replicatorctl");
    expect_rc(&run("stop"), 0, "stop without replicatorctl");
    let o = run("start");
    expect_rc(&o, 5, "start without replicatorctl");
    assert!(o.output.contains("replicatorctl"), "{}", o.output);
}

//! The executor on its own, with Debian's real agents (`resource-agents`,
//! `pacemaker-resource-agents`): environment, exit codes and reasons, timeouts that kill the
//! agent's whole process group.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clusterd::agent::{Action, AgentResolver, OcfRc};
use clusterd::exec::{ExecEnv, ExecStatus, OpRequest, OpResult, run_op};

fn env(dir: &Path) -> (ExecEnv, AgentResolver) {
    let shim_dir = dir.join("sbin");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let env = ExecEnv {
        ocf_root: "/usr/lib/ocf".into(),
        shim_dir,
        control_socket: dir.join("control.sock"),
        node: "n1".into(),
        base_path: ExecEnv::default_base_path(None),
        extra: [("HA_RSCTMP".to_owned(), dir.to_string_lossy().into_owned())].into(),
    };
    (env, AgentResolver::new("/usr/lib/ocf".into()))
}

fn op(rsc: &str, agent: &str, action: Action, params: &[(&str, String)]) -> OpRequest {
    OpRequest {
        resource: rsc.into(),
        agent: agent.parse().unwrap(),
        action,
        interval_ms: 0,
        timeout_ms: 20_000,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        meta: BTreeMap::new(),
        check_level: None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(e: &ExecEnv, r: &AgentResolver, req: &OpRequest) -> OpResult {
    rt().block_on(run_op(e, r, req))
}

#[test]
fn heartbeat_dummy_lifecycle_and_exit_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (e, r) = env(dir.path());
    let state = dir.path().join("dummy.state");
    let params = [("state", state.to_string_lossy().into_owned())];
    let probe = run(
        &e,
        &r,
        &op("d1", "ocf:heartbeat:Dummy", Action::Monitor, &params),
    );
    assert_eq!(probe.rc, OcfRc::NotRunning, "{probe:?}");
    // A probe does not set an exit reason (ocf_is_probe).
    assert_eq!(probe.exit_reason, None);
    let start = run(
        &e,
        &r,
        &op("d1", "ocf:heartbeat:Dummy", Action::Start, &params),
    );
    assert_eq!(
        (start.rc, &start.status),
        (OcfRc::Success, &ExecStatus::Done),
        "{start:?}"
    );
    assert!(state.exists());
    let mut mon = op("d1", "ocf:heartbeat:Dummy", Action::Monitor, &params);
    mon.interval_ms = 10_000;
    assert_eq!(run(&e, &r, &mon).rc, OcfRc::Success);
    std::fs::remove_file(&state).unwrap();
    let failed = run(&e, &r, &mon);
    assert_eq!(failed.rc, OcfRc::NotRunning);
    assert_eq!(
        failed.exit_reason.as_deref(),
        Some("No process state file found")
    );
    let stop = run(
        &e,
        &r,
        &op("d1", "ocf:heartbeat:Dummy", Action::Stop, &params),
    );
    assert_eq!(stop.rc, OcfRc::Success);
    let md = run(
        &e,
        &r,
        &op("d1", "ocf:heartbeat:Dummy", Action::MetaData, &[]),
    );
    assert_eq!(md.rc, OcfRc::Success);
    assert!(
        md.stdout.contains("<resource-agent name=\"Dummy\""),
        "{}",
        md.stdout
    );
}

#[test]
fn agent_sees_the_full_ocf_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (e, r) = env(dir.path());
    let envfile = dir.path().join("env.txt");
    let state = dir.path().join("st.state");
    let mut req = op(
        "db:1",
        "ocf:pacemaker:Stateful",
        Action::Notify,
        &[
            ("state", state.to_string_lossy().into_owned()),
            ("envfile", envfile.to_string_lossy().into_owned()),
        ],
    );
    req.timeout_ms = 5_000;
    req.meta = [
        ("clone-max", "2"),
        ("clone-node-max", "1"),
        ("promoted-max", "1"),
        ("notify", "true"),
        ("notify_type", "pre"),
        ("notify_operation", "promote"),
        ("notify_promote_uname", "n1"),
        ("notify_active_uname", "n1 n2"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let res = run(&e, &r, &req);
    assert_eq!(res.rc, OcfRc::Success, "{res:?}");
    let dump = std::fs::read_to_string(&envfile).unwrap();
    for want in [
        "OCF_ROOT=/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE=db:1",
        "OCF_RESKEY_CRM_meta_clone_max=2",
        "OCF_RESKEY_CRM_meta_clone_node_max=1",
        "OCF_RESKEY_CRM_meta_promoted_max=1",
        "OCF_RESKEY_CRM_meta_notify_type=pre",
        "OCF_RESKEY_CRM_meta_notify_operation=promote",
        "OCF_RESKEY_CRM_meta_notify_active_uname=n1 n2",
        "OCF_RESKEY_CRM_meta_timeout=5000",
        "OCF_RESKEY_CRM_meta_interval=0",
        "CLUSTERD_NODE=n1",
        &format!("HA_SBIN_DIR={}", e.shim_dir.display()),
        &format!("CLUSTERD_CONTROL={}", e.control_socket.display()),
        &format!("PATH={}:", e.shim_dir.display()),
    ] {
        assert!(dump.contains(want), "missing {want:?} in:\n{dump}");
    }
}

fn pids_in_group(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2].parse() == Ok(pgid) && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// A start that sleeps 60 s with a 1.5 s timeout: the op fails as timed out and no process of
/// the agent's group is left (the shell and its `sleep`).
#[test]
fn hung_agent_is_killed_with_its_group_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (e, r) = env(dir.path());
    let state = dir.path().join("hang.state");
    let pidfile = dir.path().join("agent.pid");
    // A wrapper agent in a private OCF root: records its pgid, then execs pacemaker's Dummy,
    // whose op_sleep makes start sleep.
    let root = dir.path().join("ocf");
    let prov = root.join("resource.d/test");
    std::fs::create_dir_all(&prov).unwrap();
    std::os::unix::fs::symlink("/usr/lib/ocf/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/ocf/resource.d/heartbeat",
        root.join("resource.d/heartbeat"),
    )
    .unwrap();
    let agent = prov.join("Hang");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\nps -o pgid= -p $$ > {pf}.tmp && mv {pf}.tmp {pf}\nexec /usr/lib/ocf/resource.d/pacemaker/Dummy \"$@\"\n",
            pf = pidfile.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = ExecEnv {
        ocf_root: root.clone(),
        ..e
    };
    let r = AgentResolver {
        ocf_root: root,
        ..r
    };
    let mut req = op(
        "hang",
        "ocf:test:Hang",
        Action::Start,
        &[
            ("state", state.to_string_lossy().into_owned()),
            ("op_sleep", "60".into()),
        ],
    );
    req.timeout_ms = 1_500;
    let res = run(&e, &r, &req);
    assert_eq!(res.status, ExecStatus::TimedOut, "{res:?}");
    assert_eq!(res.rc, OcfRc::ErrGeneric);
    assert_eq!(
        res.exit_reason.as_deref(),
        Some("hang start timed out after 1500 ms (agent killed)")
    );
    let pgid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // killpg is synchronous for delivery; give the kernel a bounded moment to reap.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pids_in_group(pgid).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "group {pgid} still alive: {:?}",
            pids_in_group(pgid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn missing_agent_fails_as_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let (e, r) = env(dir.path());
    let res = run(
        &e,
        &r,
        &op("x", "ocf:heartbeat:NoSuchAgent", Action::Start, &[]),
    );
    assert_eq!(
        (res.rc, res.status),
        (OcfRc::ErrInstalled, ExecStatus::Error)
    );
    let reason = res.exit_reason.unwrap();
    assert!(
        reason.contains("/usr/lib/ocf/resource.d/heartbeat/NoSuchAgent"),
        "{reason}"
    );
}

/// `ocf:tandem:IPaddr` is Tandem's binary next to clusterd (here: the build directory), with
/// no install step; its exit reason comes through like any agent's.
#[test]
fn tandem_agents_run_from_the_build_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = env(dir.path());
    let bin = tandem_testkit::bins::bin("tandem-ipaddr");
    let r = AgentResolver {
        ocf_root: "/usr/lib/ocf".into(),
        tandem_bin_dir: bin.parent().unwrap().to_path_buf(),
    };
    let md = run(
        &e,
        &r,
        &op("vip", "ocf:tandem:IPaddr", Action::MetaData, &[]),
    );
    assert_eq!(md.rc, OcfRc::Success, "{md:?}");
    assert!(
        md.stdout.contains("<resource-agent name=\"IPaddr\""),
        "{}",
        md.stdout
    );
    let bad = run(
        &e,
        &r,
        &op(
            "vip",
            "ocf:tandem:IPaddr",
            Action::ValidateAll,
            &[("ip", "not-an-ip".into())],
        ),
    );
    assert_eq!(bad.rc, OcfRc::ErrConfigured, "{bad:?}");
    assert!(bad.exit_reason.unwrap_or_default().contains("not-an-ip"));
}

/// An agent in a private OCF root (`ocf:test:NAME`) with the given shell body.
fn private_agent(dir: &Path, name: &str, body: &str) -> (ExecEnv, AgentResolver) {
    let (e, r) = env(dir);
    let root = dir.join("ocf");
    let prov = root.join("resource.d/test");
    std::fs::create_dir_all(&prov).unwrap();
    let agent = prov.join(name);
    std::fs::write(&agent, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    (
        ExecEnv {
            ocf_root: root.clone(),
            ..e
        },
        AgentResolver {
            ocf_root: root,
            ..r
        },
    )
}

/// A chatty agent's output is capped (its tail kept, where the errors are).
#[test]
fn agent_output_is_bounded_to_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (e, r) = private_agent(
        dir.path(),
        "Chatty",
        "yes line | head -n 200000; echo LAST; echo ocf-exit-reason:done >&2; exit 1",
    );
    let res = run(&e, &r, &op("c", "ocf:test:Chatty", Action::Start, &[]));
    assert_eq!(res.rc, OcfRc::ErrGeneric);
    assert_eq!(res.stdout.len(), clusterd::exec::OUTPUT_MAX_BYTES);
    assert!(res.stdout.ends_with("line\nLAST\n"));
    assert_eq!(res.exit_reason.as_deref(), Some("done"));
}

/// An agent whose start leaves a daemon holding stdout open still completes (the pipes are
/// drained for a bounded time), and the daemon it started keeps running.
#[test]
fn a_daemon_started_by_the_agent_does_not_hold_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let (e, r) = private_agent(
        dir.path(),
        "Spawner",
        &format!(
            "sleep 300 &\necho $! > {}\necho started\nexit 0",
            pidfile.display()
        ),
    );
    let mut req = op("s", "ocf:test:Spawner", Action::Start, &[]);
    req.timeout_ms = 600_000;
    let res = run(&e, &r, &req);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(
        (res.rc, &res.status),
        (OcfRc::Success, &ExecStatus::Done),
        "{res:?}"
    );
    assert!(alive, "the agent's daemon survived the operation");
}

//! clusterd's own life: a restart adopts what still runs (probes, no restart of resources),
//! SIGTERM stops everything before exiting, the CIB survives, and bad requests get clear
//! errors while the daemon keeps running.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use clusterd_core::cib::{Clone, CloneChild, Group, Resource, Role};
use clusterd_core::control::{self, ErrorKind, Request, Response};
use clusterd_core::status::RunState;
use common::*;

#[test]
fn restart_adopts_running_resources_and_sigterm_stops_them() {
    let mut n = Node::start();
    let d = n.dir.path().to_path_buf();
    let st = primitive(
        "st",
        "pacemaker",
        "Stateful",
        &[("state", d.join("st.state").to_string_lossy().into_owned())],
        vec![
            op("monitor", 1_000, None, Some(Role::Promoted)),
            op("monitor", 1_100, None, Some(Role::Unpromoted)),
        ],
    );
    n.edit(|cib| {
        cib.properties
            .insert("stonith-enabled".into(), "false".into());
        cib.resources
            .push(Resource::Primitive(dummy("d1", &d, 1_000)));
        cib.resources.push(Resource::Clone(Clone {
            id: "st-clone".into(),
            promotable: true,
            meta: [("clone-max".to_owned(), "1".to_owned())].into(),
            child: CloneChild::Primitive(st),
        }));
    });
    n.wait_for("d1 started and st promoted", |s| {
        history_state(s, "d1", "n1", false) == started()
            && history_state(s, "st", "n1", true)
                == RunState::Active {
                    role: Role::Promoted,
                    failed: false,
                }
    });
    n.settle();
    let version = n.cib().version;

    // clusterd dies; the resources do not (agents run in their own process groups).
    n.daemon.take().unwrap().kill9();
    assert!(d.join("d1.state").exists() && d.join("st.state").exists());
    n.spawn();
    assert_eq!(
        n.cib().version,
        version,
        "the CIB was loaded from the state dir"
    );
    n.settle();
    let s = n.status();
    assert_eq!(history_state(&s, "d1", "n1", false), started());
    assert_eq!(
        history_state(&s, "st", "n1", true),
        RunState::Active {
            role: Role::Promoted,
            failed: false
        }
    );
    // Found by probes, not restarted: no start or promote in the new daemon's history.
    for (p, found) in [("d1", 0), ("st", 8)] {
        let ops = ops(&s, p, "n1");
        assert!(
            ops.iter()
                .any(|o| o.op == "monitor" && o.interval_ms == 0 && o.rc == found),
            "{p}: {ops:?}"
        );
        assert!(
            ops.iter().all(|o| o.op != "start" && o.op != "promote"),
            "{p}: {ops:?}"
        );
        assert!(
            ops.iter().any(|o| o.op == "monitor" && o.interval_ms > 0),
            "{p} monitored again: {ops:?}"
        );
    }
    // Stateful's probe restored its promotion score.
    assert_eq!(
        s.nodes["n1"]
            .attributes
            .get("master-st")
            .map(String::as_str),
        Some("10")
    );

    // SIGTERM: everything is stopped, then clusterd exits 0.
    let status = n
        .daemon
        .take()
        .unwrap()
        .stop(Duration::from_secs(60))
        .expect("exited by itself");
    assert!(status.success(), "{status:?}\n{}", n.log());
    assert!(
        !d.join("d1.state").exists(),
        "d1 stopped on shutdown\n{}",
        n.log()
    );
    assert!(
        !d.join("st.state").exists(),
        "st stopped on shutdown\n{}",
        n.log()
    );
    assert!(n.log().contains("shutdown complete"));
}

fn raw(n: &Node, bytes: &[u8]) -> Response {
    let mut s = std::os::unix::net::UnixStream::connect(n.socket()).unwrap();
    s.write_all(bytes).unwrap();
    let mut head = [0u8; control::HEADER_BYTES];
    s.read_exact(&mut head).unwrap();
    let h = control::decode_header(&head).unwrap();
    let mut payload = vec![0u8; h.len as usize];
    s.read_exact(&mut payload).unwrap();
    control::decode_payload(&h, &payload).unwrap()
}

fn error_kind(r: Response) -> (ErrorKind, String) {
    match r {
        Response::Error { kind, message } => (kind, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_daemon_keeps_running() {
    let n = Node::start();
    // Not a frame at all.
    let (kind, msg) = error_kind(raw(&n, b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!(kind, ErrorKind::Unsupported);
    assert!(msg.contains("magic"), "{msg}");
    // A frame whose payload is damaged.
    let mut frame = control::encode(&Request::Ping);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    assert!(error_kind(raw(&n, &frame)).1.contains("checksum"));
    // A frame of a request that does not exist.
    let bogus = control::encode(&serde_json::json!({"request": "format_disk"}));
    assert_eq!(error_kind(raw(&n, &bogus)).0, ErrorKind::Unsupported);
    // A configuration that does not validate: refused, naming what is wrong; nothing changes.
    let before = n.cib();
    let mut bad = before.clone();
    bad.resources.push(Resource::Group(Group {
        id: "empty".into(),
        meta: Default::default(),
        members: vec![],
    }));
    bad.bump_epoch();
    let (kind, msg) = error_kind(n.req(&Request::PushCib {
        cib: bad,
        expected: Some(before.version),
    }));
    assert_eq!(kind, ErrorKind::Invalid);
    assert!(msg.contains("empty"), "{msg}");
    // A push based on an older configuration.
    let mut ok = before.clone();
    ok.properties
        .insert("stonith-enabled".into(), "false".into());
    ok.bump_epoch();
    assert!(matches!(
        n.req(&Request::PushCib {
            cib: ok.clone(),
            expected: Some(before.version)
        }),
        Response::Pushed { .. }
    ));
    let (kind, msg) = error_kind(n.req(&Request::PushCib {
        cib: ok,
        expected: Some(before.version),
    }));
    assert_eq!(kind, ErrorKind::Stale);
    assert!(msg.contains("changed since"), "{msg}");
    // Unknown names.
    assert_eq!(
        error_kind(n.req(&Request::Cleanup {
            resource: Some("nope".into()),
            node: None
        }))
        .0,
        ErrorKind::NotFound
    );
    let set = Request::SetNodeAttribute {
        node: "n9".into(),
        name: "x".into(),
        value: Some("1".into()),
    };
    assert_eq!(error_kind(n.req(&set)).0, ErrorKind::NotFound);
    // Still there, and the saved CIB is the last accepted one.
    assert!(matches!(n.req(&Request::Ping), Response::Pong { .. }));
    let saved =
        clusterd_core::cib::Cib::from_file_bytes(&std::fs::read(n.state.join("cib.json")).unwrap())
            .unwrap();
    assert_eq!(saved, n.cib());
    assert_eq!(
        saved.properties.get("stonith-enabled").map(String::as_str),
        Some("false")
    );
}

#[test]
fn bad_configuration_is_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "cluster_name = \"x\"\n[[node]]\nname = \"a\"\nbogus = 1\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_clusterd"))
        .args([
            "--config",
            &cfg.to_string_lossy(),
            "--node",
            "a",
            "--state-dir",
            &dir.path().join("s").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("c.toml") && err.contains("bogus"), "{err}");
}

/// With `max_concurrent_ops = 1` no two agents ever run at once: every agent run appends
/// `begin` and `end` lines to one log (through a wrapper in a private OCF root), and the log
/// alternates strictly.
#[test]
fn concurrency_bound_holds_for_real_agents() {
    let n = Node::start_with(None, |dir| {
        let root = dir.join("ocf");
        let log = dir.join("runs.log");
        std::fs::create_dir_all(root.join("resource.d/test")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/ocf/lib", root.join("lib")).unwrap();
        let wrapper = root.join("resource.d/test/Logged");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"begin $OCF_RESOURCE_INSTANCE $1\" >> {log}\nsleep 0.05\n\
                 /usr/lib/ocf/resource.d/heartbeat/Dummy \"$@\"\nrc=$?\n\
                 echo \"end $OCF_RESOURCE_INSTANCE $1\" >> {log}\nexit $rc\n",
                log = log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        format!(
            "[executor]\nmax_concurrent_ops = 1\nocf_root = \"{}\"\n",
            root.display()
        )
    });
    let log = n.dir.path().join("runs.log");
    let d = n.dir.path().to_path_buf();
    n.edit(|cib| {
        cib.properties
            .insert("stonith-enabled".into(), "false".into());
        for i in 0..4 {
            let id = format!("r{i}");
            let p = primitive(
                &id,
                "test",
                "Logged",
                &[(
                    "state",
                    d.join(format!("{id}.state")).to_string_lossy().into_owned(),
                )],
                vec![op("monitor", 300, None, None)],
            );
            cib.resources.push(Resource::Primitive(p));
        }
    });
    n.wait_for("all four started", |s| {
        (0..4).all(|i| history_state(s, &format!("r{i}"), "n1", false) == started())
    });
    n.settle();
    let runs = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = runs.lines().collect();
    // A monitor may be running right now: its `end` is not written yet.
    if lines.len() % 2 == 1 && lines.last().is_some_and(|l| l.starts_with("begin ")) {
        lines.pop();
    }
    assert!(
        lines.len() >= 4 * 2 * 3,
        "probes, starts and monitors of 4 resources:\n{runs}"
    );
    for pair in lines.chunks(2) {
        let (b, e) = (pair[0], pair.get(1).copied().unwrap_or(""));
        assert!(
            b.starts_with("begin ") && e.starts_with("end ") && b[6..] == e[4..],
            "two agents overlapped: {b:?} then {e:?} in\n{runs}"
        );
    }
}

/// A second clusterd on the same state dir refuses to start and leaves the first alone.
#[test]
fn second_daemon_on_one_state_dir_is_refused() {
    let n = Node::start();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_clusterd"))
        .arg("--config")
        .arg(n.dir.path().join("clusterd.toml"))
        .args(["--node", "n1", "--state-dir"])
        .arg(&n.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another clusterd is running"),
        "{o:?}"
    );
    assert!(
        matches!(n.req(&Request::Ping), Response::Pong { .. }),
        "the first one still answers"
    );
}

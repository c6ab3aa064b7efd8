//! A single-node clusterd for system tests: its own state dir and config in a temp dir, the
//! real binary, driven over the real control socket; killed (with its agents' process groups
//! left to the test's guards) on drop.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clusterd::server::request_blocking;
use clusterd_core::cib::{Agent, Cib, Op, Primitive, Role};
use clusterd_core::control::{Request, Response};
use clusterd_core::status::{ClusterStatus, OpRecord, RunState, derive_state};
use tandem_testkit::netns::Host;
use tandem_testkit::proc::Daemon;
use tandem_testkit::wait;

/// Generous bound for anything the cluster does in these tests (agents take milliseconds).
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Node {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub name: String,
    pub daemon: Option<Daemon>,
    pub host: Option<Host>,
}

impl Node {
    /// Starts clusterd as node `n1` of a one-node cluster.
    pub fn start() -> Node {
        Self::start_in(None)
    }

    /// Starts clusterd as node `n1`, inside the network namespace of `host` if given (its
    /// agents then configure that host's interfaces).
    pub fn start_in(host: Option<&Host>) -> Node {
        Self::start_with(host, |_| String::new())
    }

    /// Starts clusterd after `prepare` ran on the (empty) test directory; what `prepare`
    /// returns is appended to the config file.
    pub fn start_with(host: Option<&Host>, prepare: impl FnOnce(&Path) -> String) -> Node {
        tandem_testkit::require_root();
        let dir = tempfile::tempdir().unwrap();
        let extra = prepare(dir.path());
        let state = dir.path().join("state");
        let config = dir.path().join("clusterd.toml");
        std::fs::write(
            &config,
            format!("cluster_name = \"test\"\n\n[[node]]\nname = \"n1\"\n{extra}"),
        )
        .unwrap();
        let mut n = Node {
            dir,
            state,
            name: "n1".into(),
            daemon: None,
            host: host.cloned(),
        };
        n.spawn();
        n
    }

    pub fn spawn(&mut self) {
        let mut cmd = match &self.host {
            Some(h) => h.command(env!("CARGO_BIN_EXE_clusterd")),
            None => Command::new(env!("CARGO_BIN_EXE_clusterd")),
        };
        cmd.arg("--config")
            .arg(self.dir.path().join("clusterd.toml"))
            .arg("--node")
            .arg(&self.name)
            .arg("--state-dir")
            .arg(&self.state)
            .env("RUST_LOG", "clusterd=debug");
        let log = self.dir.path().join("clusterd.log");
        self.daemon = Some(Daemon::spawn("clusterd", cmd, &log));
        let sock = self.socket();
        wait::until("clusterd's control socket", WAIT, || {
            request_blocking(&sock, &Request::Ping).is_ok()
        });
    }

    pub fn socket(&self) -> PathBuf {
        self.state.join("control.sock")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clusterd.log")).unwrap_or_default()
    }

    pub fn req(&self, r: &Request) -> Response {
        request_blocking(&self.socket(), r).unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()))
    }

    pub fn cib(&self) -> Cib {
        match self.req(&Request::GetCib) {
            Response::Cib { cib } => cib,
            other => panic!("GetCib: {other:?}"),
        }
    }

    pub fn status(&self) -> ClusterStatus {
        match self.req(&Request::Status) {
            Response::Status { status, .. } => status,
            other => panic!("Status: {other:?}"),
        }
    }

    /// Whether a transition is in progress.
    pub fn busy(&self) -> bool {
        match self.req(&Request::Status) {
            Response::Status { transition, .. } => transition.is_some(),
            other => panic!("Status: {other:?}"),
        }
    }

    /// Runs `clusterctl --state-dir STATE ARGS...`, panicking (with clusterd's log) unless it
    /// succeeds; returns its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = Command::new(tandem_testkit::bins::bin("clusterctl"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "clusterctl {args:?} failed ({}):\n{}{}\nclusterd log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Applies `edit` to the current CIB and pushes it (as `clusterctl cluster cib-push`).
    pub fn edit(&self, edit: impl FnOnce(&mut Cib)) {
        let mut cib = self.cib();
        let expected = cib.version;
        edit(&mut cib);
        cib.bump_epoch();
        match self.req(&Request::PushCib {
            cib,
            expected: Some(expected),
        }) {
            Response::Pushed { .. } => {}
            other => panic!("PushCib: {other:?}"),
        }
    }

    /// The state of `primitive` on this node, from the history clusterd reports.
    pub fn state_of(&self, primitive: &str, promotable: bool) -> RunState {
        history_state(&self.status(), primitive, &self.name, promotable)
    }

    /// Waits until `cond(status)` holds and no transition is running.
    pub fn wait_for(
        &self,
        what: &str,
        mut cond: impl FnMut(&ClusterStatus) -> bool,
    ) -> ClusterStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let st = self.status();
            if cond(&st) {
                return st;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\nstatus: {st:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until no transition runs and the scheduler has nothing more to do.
    pub fn settle(&self) {
        // Quiet for a few consecutive polls: no transition, nothing changed.
        let mut quiet = 0;
        let mut prev = None;
        let deadline = std::time::Instant::now() + WAIT;
        while quiet < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "cluster never settled\nlog:\n{}",
                self.log()
            );
            let (busy, st) = match self.req(&Request::Status) {
                Response::Status {
                    status, transition, ..
                } => (transition.is_some(), status),
                other => panic!("{other:?}"),
            };
            // What matters is which operations ran with which result, not how long a
            // repeated monitor took (updated in place at every run).
            let snapshot: Vec<(String, String, String, u64, i32)> = st
                .history
                .iter()
                .flat_map(|(p, per_node)| {
                    per_node.iter().flat_map(move |(node, ops)| {
                        ops.iter()
                            .map(move |o| (p.clone(), node.clone(), o.key(), o.call_id, o.rc))
                    })
                })
                .collect();
            if !busy && prev.as_ref() == Some(&snapshot) {
                quiet += 1;
            } else {
                quiet = 0;
            }
            prev = Some(snapshot);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(20));
            if std::thread::panicking() {
                eprintln!("---- clusterd log ----\n{}", self.log());
            }
        }
    }
}

/// The state of `primitive` on `node` from its completed operations (a pending start does not
/// count as started here: tests wait for results).
pub fn history_state(
    st: &ClusterStatus,
    primitive: &str,
    node: &str,
    promotable: bool,
) -> RunState {
    let mut ops = st
        .history
        .get(primitive)
        .and_then(|m| m.get(node))
        .cloned()
        .unwrap_or_default();
    ops.retain(|o| o.status != clusterd_core::status::OpStatus::Pending);
    derive_state(&ops, promotable, 0, 0).state
}

pub fn started() -> RunState {
    RunState::Active {
        role: Role::Started,
        failed: false,
    }
}

/// The successful operations of `primitive` on `node`, as `(call_id, "op_interval")`.
pub fn ops(st: &ClusterStatus, primitive: &str, node: &str) -> Vec<OpRecord> {
    st.history
        .get(primitive)
        .and_then(|m| m.get(node))
        .cloned()
        .unwrap_or_default()
}

/// Call id of the latest successful `op` (interval 0) of `primitive`.
pub fn call_of(st: &ClusterStatus, primitive: &str, op: &str) -> u64 {
    ops(st, primitive, "n1")
        .iter()
        .filter(|o| o.op == op && o.interval_ms == 0 && !o.failed())
        .map(|o| o.call_id)
        .max()
        .unwrap_or_else(|| {
            panic!(
                "no successful {op} of {primitive} in {:?}",
                ops(st, primitive, "n1")
            )
        })
}

pub fn fail_count(st: &ClusterStatus, primitive: &str) -> u32 {
    st.fail_count("n1", primitive, 0, 0)
}

pub fn op(name: &str, interval_ms: u64, timeout_ms: Option<u64>, role: Option<Role>) -> Op {
    Op {
        id: String::new(),
        name: name.into(),
        interval_ms,
        timeout_ms,
        role,
        extra: BTreeMap::new(),
    }
}

pub fn primitive(
    id: &str,
    provider: &str,
    kind: &str,
    params: &[(&str, String)],
    ops: Vec<Op>,
) -> Primitive {
    Primitive {
        id: id.into(),
        agent: Agent::ocf(provider, kind),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        meta: BTreeMap::new(),
        ops,
    }
}

/// A Dummy whose state file lives in `dir`.
pub fn dummy(id: &str, dir: &Path, monitor_ms: u64) -> Primitive {
    primitive(
        id,
        "heartbeat",
        "Dummy",
        &[(
            "state",
            dir.join(format!("{id}.state"))
                .to_string_lossy()
                .into_owned(),
        )],
        vec![op("monitor", monitor_ms, Some(20_000), None)],
    )
}

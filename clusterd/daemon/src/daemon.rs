//! The event loop: one owner of the configuration, the status, the running transition, the
//! operation queue and the recurring monitors.
//!
//! ```text
//!            control socket ──Control(req, reply)──┐
//!   agent tasks (exec::run_op) ──OpDone(token)─────┤
//!   monitor deadlines, re-plan / recheck ──Timer───┼──► select() ──► apply(event) ──► pump()
//!   SIGTERM/SIGINT ──Shutdown──────────────────────┘
//! ```
//!
//! `select` is the only `await`; `apply` and `pump` are plain code. `pump` moves everything
//! forward after each event: starts queued operations up to the concurrency bound (one at a
//! time per resource instance), dispatches transition actions whose dependencies completed,
//! finishes a transition, and asks the scheduler for the next one when nothing is in flight.
//!
//! Planning (this node is the DC while membership does not exist): probes first — every
//! primitive without history on this node is probed (start-up, a new resource, after a
//! cleanup) and no transition is computed until they are in; then
//! `clusterd_core::sched::schedule(cib, status, now)` → transition → execute in dependency
//! order; a failed action (or a failed recurring monitor, or a probe that finds something
//! unexpected) aborts it: running actions finish, nothing new starts, and the scheduler is
//! asked again with the new history. A transition only ever runs actions on this node; actions
//! for another node fail the transition until membership carries them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clusterd_core::agent_meta::AgentMeta;
use clusterd_core::cib::{Cib, Node, PrimitiveRef};
use clusterd_core::control::{ErrorKind, Request, Response, accept_push};
use clusterd_core::status::{ClusterStatus, NodeState, rc};
use clusterd_core::transition::{ActionKind, Transition};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::agent::{Action, AgentRef, AgentResolver, OcfRc};
use crate::config::DaemonConfig;
use crate::exec::{ExecEnv, ExecStatus, OpRequest, OpResult, run_op};
use crate::history;
use crate::lrm::{Monitors, Op, OpQueue, Origin};
use crate::meta;
use crate::store::StateDir;

/// Events queued for the loop. Senders wait when it is full (agent tasks and control
/// connections are few and bounded), so no event is ever dropped.
pub const EVENT_QUEUE: usize = 256;

/// After an aborted transition the next one is computed no sooner than this, so an action
/// that fails at once cannot spin the loop (Pacemaker bans it after enough failures anyway).
pub const REPLAN_AFTER_ABORT_MS: u64 = 300;

/// A transition that comes back identical this many times in a row after succeeding means
/// the scheduler and the history disagree (a bug): from then on re-planning waits
/// [`REPEAT_BACKOFF_MS`] so the node is not kept busy running the same actions.
pub const REPEAT_LIMIT: u32 = 3;

/// Delay between identical transitions past [`REPEAT_LIMIT`].
pub const REPEAT_BACKOFF_MS: u64 = 5_000;

/// Transient attributes one node may hold (promotion scores, agents' own); a request past the
/// bound is refused with an error naming it, nothing is evicted.
pub const MAX_NODE_ATTRIBUTES: usize = 4096;

/// Longest transient attribute name or value.
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// Without failures to expire, the scheduler is still consulted this often (Pacemaker's
/// `cluster-recheck-interval`, 15 minutes).
pub const RECHECK_INTERVAL_MS: u64 = 15 * 60 * 1000;

/// Longest graceful shutdown: stopping every resource before exit gives up after this.
pub const SHUTDOWN_MAX_MS: u64 = 120_000;

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    /// A control request and where to send the answer.
    Control(Request, oneshot::Sender<Response>),
    /// An agent finished; with the agent's meta-data when the task had to read it first.
    OpDone(u64, OpResult, Option<AgentMeta>),
    /// A deadline passed (monitor due, re-plan, recheck).
    Timer,
    /// SIGTERM/SIGINT: stop resources on this node, then exit. A second one exits at once.
    Shutdown,
}

/// Where one transition action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActState {
    Waiting,
    Running,
    Done,
    Failed,
}

#[derive(Debug)]
struct Running {
    seq: u64,
    t: Transition,
    state: Vec<ActState>,
    aborted: bool,
}

/// The scheduler: configuration + status + now (unix seconds) → transition. The binary passes
/// `clusterd_core::sched::schedule`; it is an argument so the loop does not care which.
pub type Planner = fn(&Cib, &ClusterStatus, u64) -> Transition;

/// The daemon's state. Built by [`Daemon::new`], run by [`Daemon::run`].
pub struct Daemon {
    planner: Planner,
    node: String,
    cfg: DaemonConfig,
    dir: StateDir,
    cib: Cib,
    status: ClusterStatus,
    env: Arc<ExecEnv>,
    resolver: Arc<AgentResolver>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    queue: OpQueue,
    monitors: Monitors,
    transition: Option<Running>,
    transition_seq: u64,
    next_token: u64,
    /// The scheduler should be consulted when nothing is in flight.
    replan: bool,
    /// Not before this instant (after an abort).
    replan_not_before: Option<Instant>,
    /// Next periodic recheck (failure-timeout expiry or the recheck interval).
    recheck_at: Instant,
    /// `Some(deadline)` once a graceful shutdown began.
    shutdown: Option<Instant>,
    /// The last transition summary logged (to log only changes).
    last_summary: Vec<String>,
    /// Action keys of the last transition, and how many times in a row it came back the same.
    last_keys: Vec<String>,
    repeats: u32,
    /// Agents' meta-data (what reloads), by agent name, read once per agent: before its
    /// first one-shot operation (Pacemaker's controller caches it the same way).
    meta_cache: BTreeMap<String, Arc<AgentMeta>>,
    /// Per resource instance, the parameters of its last successful start, reload or
    /// monitor: what its stop runs with.
    stop_params: BTreeMap<String, BTreeMap<String, String>>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Daemon {
    /// Loads (or creates) the CIB and prepares the state dir; binds nothing yet.
    pub fn new(
        cfg: DaemonConfig,
        node: String,
        dir: StateDir,
        env: ExecEnv,
        resolver: AgentResolver,
        planner: Planner,
    ) -> anyhow::Result<Self> {
        let mut cib = dir.load_cib()?.unwrap_or_default();
        let mut changed = false;
        if cib.cluster_name.is_none() {
            cib.cluster_name = Some(cfg.cluster_name.clone());
            changed = true;
        }
        for n in &cfg.nodes {
            if cib.node(&n.name).is_none() {
                cib.nodes.push(Node {
                    name: n.name.clone(),
                    ..Node::default()
                });
                changed = true;
            }
        }
        if changed {
            cib.bump_epoch();
            dir.save_cib(&cib)?;
        }
        let mut status = ClusterStatus {
            has_quorum: true,
            dc: Some(node.clone()),
            ..ClusterStatus::default()
        };
        for n in &cfg.nodes {
            status.nodes.insert(
                n.name.clone(),
                NodeState {
                    online: n.name == node,
                    ..NodeState::default()
                },
            );
        }
        // Until membership exists only this node is online. Quorum as corosync's votequorum
        // computes it: a majority, or either node of a two-node cluster (two_node).
        status.has_quorum = cfg.nodes.len() <= 2;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        Ok(Daemon {
            planner,
            queue: OpQueue::new(cfg.executor.max_concurrent_ops),
            node,
            cfg,
            dir,
            cib,
            status,
            env: Arc::new(env),
            resolver: Arc::new(resolver),
            tx,
            rx,
            monitors: Monitors::default(),
            transition: None,
            transition_seq: 0,
            next_token: 1,
            replan: true,
            replan_not_before: None,
            recheck_at: Instant::now() + Duration::from_millis(RECHECK_INTERVAL_MS),
            shutdown: None,
            last_summary: Vec::new(),
            last_keys: Vec::new(),
            repeats: 0,
            meta_cache: BTreeMap::new(),
            stop_params: BTreeMap::new(),
        })
    }

    /// A sender for events (the control server and signal handlers use it).
    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.tx.clone()
    }

    /// Runs until a shutdown completes.
    pub async fn run(mut self) {
        info!(node = %self.node, cluster = %self.cfg.cluster_name, cib = %self.cib.version, "clusterd running");
        self.probe_unknown();
        self.pump();
        loop {
            let ev = self.select().await;
            if matches!(ev, Event::Shutdown) && self.shutdown.is_some() {
                warn!(node = %self.node, "second shutdown request: exiting without stopping resources");
                return;
            }
            self.apply(ev);
            self.pump();
            if self.shutdown_complete() {
                info!(node = %self.node, "shutdown complete");
                return;
            }
        }
    }

    async fn select(&mut self) -> Event {
        let deadline = self.next_deadline();
        tokio::select! {
            ev = self.rx.recv() => ev.unwrap_or(Event::Shutdown),
            () = tokio::time::sleep_until(deadline.into()) => Event::Timer,
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self.recheck_at;
        if let Some(m) = self.monitors.next_deadline() {
            d = d.min(m);
        }
        if self.replan
            && let Some(t) = self.replan_not_before
        {
            d = d.min(t);
        }
        if let Some(s) = self.shutdown {
            d = d.min(s);
        }
        d
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Control(req, reply) => {
                let resp = self.control(req);
                let _ = reply.send(resp);
            }
            Event::OpDone(token, result, meta) => self.op_done(token, result, meta),
            Event::Timer => self.timer(),
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    // ---------------------------------------------------------------- control requests

    fn control(&mut self, req: Request) -> Response {
        match req {
            Request::Ping => Response::Pong {
                node: self.node.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            Request::GetCib => Response::Cib {
                cib: self.cib.clone(),
            },
            Request::Status => Response::Status {
                cib: self.cib.clone(),
                status: self.status.clone(),
                transition: self.transition.as_ref().map(|r| r.t.clone()),
            },
            Request::PushCib { cib, expected } => match accept_push(&self.cib, cib, expected) {
                Ok(new) => {
                    if let Err(e) = self.dir.save_cib(&new) {
                        error!(node = %self.node, error = %e, "cannot save the CIB");
                        return Response::Error {
                            kind: ErrorKind::Internal,
                            message: format!("cannot save the CIB: {e}"),
                        };
                    }
                    info!(node = %self.node, version = %new.version, "configuration replaced");
                    let version = new.version;
                    self.cib = new;
                    self.forget_removed();
                    self.probe_unknown();
                    self.request_replan(true);
                    Response::Pushed { version }
                }
                Err(e) => {
                    let kind = match e {
                        clusterd_core::control::PushError::Invalid(_) => ErrorKind::Invalid,
                        _ => ErrorKind::Stale,
                    };
                    Response::Error {
                        kind,
                        message: e.to_string(),
                    }
                }
            },
            Request::Cleanup { resource, node } => {
                self.cleanup(resource.as_deref(), node.as_deref())
            }
            Request::SetNodeAttribute { node, name, value } => {
                let Some(st) = self.status.nodes.get_mut(&node) else {
                    return Response::Error {
                        kind: ErrorKind::NotFound,
                        message: format!("no node named {node}"),
                    };
                };
                if value.is_some()
                    && !st.attributes.contains_key(&name)
                    && st.attributes.len() >= MAX_NODE_ATTRIBUTES
                {
                    return Response::Error {
                        kind: ErrorKind::Invalid,
                        message: format!(
                            "node {node} already has {MAX_NODE_ATTRIBUTES} transient attributes; delete some first"
                        ),
                    };
                }
                if name.is_empty()
                    || name.len() > MAX_ATTRIBUTE_BYTES
                    || value
                        .as_ref()
                        .is_some_and(|v| v.len() > MAX_ATTRIBUTE_BYTES)
                {
                    return Response::Error {
                        kind: ErrorKind::Invalid,
                        message: format!(
                            "attribute names and values must be 1 to {MAX_ATTRIBUTE_BYTES} bytes"
                        ),
                    };
                }
                let changed = match &value {
                    Some(v) => st.attributes.insert(name.clone(), v.clone()).as_ref() != Some(v),
                    None => st.attributes.remove(&name).is_some(),
                };
                if changed {
                    debug!(node = %node, attribute = %name, value = ?value, "node attribute");
                    self.request_replan(false);
                }
                Response::Ok
            }
        }
    }

    fn cleanup(&mut self, resource: Option<&str>, node: Option<&str>) -> Response {
        if let Some(n) = node
            && self.cib.node(n).is_none()
            && !self.status.nodes.contains_key(n)
        {
            return Response::Error {
                kind: ErrorKind::NotFound,
                message: format!("no node named {n}"),
            };
        }
        let primitives: Vec<String> = match resource {
            None => self
                .status
                .history
                .keys()
                .cloned()
                .chain(self.cib.primitives().iter().map(|p| p.primitive.id.clone()))
                .collect(),
            Some(r) => match self.cib.find(r) {
                Some(found) => {
                    let id = found.id().to_owned();
                    self.cib
                        .primitives()
                        .iter()
                        .filter(|p| {
                            p.primitive.id == id
                                || p.group.is_some_and(|g| g.id == id)
                                || p.clone.is_some_and(|c| c.id == id)
                        })
                        .map(|p| p.primitive.id.clone())
                        .collect()
                }
                None if self.status.history.contains_key(r) => vec![r.to_owned()],
                None => {
                    return Response::Error {
                        kind: ErrorKind::NotFound,
                        message: format!("no resource named {r}"),
                    };
                }
            },
        };
        let mut primitives = primitives;
        primitives.sort();
        primitives.dedup();
        for p in &primitives {
            self.status.cleanup(Some(p), node);
            // As crm_resource --cleanup does: forget this node's history and probe again, so
            // the scheduler works from what the agent reports now.
            if node.is_none_or(|n| n == self.node) {
                if let Some(per_node) = self.status.history.get_mut(p) {
                    per_node.remove(&self.node);
                }
                self.status.history.retain(|_, m| !m.is_empty());
                self.monitors.cancel_primitive(p);
            }
        }
        info!(node = %self.node, resources = ?primitives, "cleanup");
        self.probe_unknown();
        self.request_replan(true);
        Response::Ok
    }

    /// Drops monitors and history of primitives no longer configured (a resource deleted from
    /// the CIB was stopped by the scheduler first when it was still running: Pacemaker's
    /// "orphan" handling lives in the scheduler).
    fn forget_removed(&mut self) {
        let present: Vec<String> = self
            .cib
            .primitives()
            .iter()
            .map(|p| p.primitive.id.clone())
            .collect();
        let gone: Vec<String> = self
            .monitors
            .iter()
            .map(|r| r.primitive.clone())
            .filter(|p| !present.contains(p))
            .collect();
        for p in gone {
            self.monitors.cancel_primitive(&p);
        }
    }

    // ---------------------------------------------------------------- operations

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn enqueue(&mut self, primitive: &str, req: OpRequest, origin: Origin) -> bool {
        let token = self.token();
        self.queue.push(Op {
            token,
            primitive: primitive.to_owned(),
            req,
            origin,
        })
    }

    fn start_ready(&mut self) {
        for op in self.queue.start_ready() {
            debug!(node = %self.node, resource = %op.req.resource, action = %op.req.action, interval_ms = op.req.interval_ms, "running agent");
            let (env, resolver, tx, token) = (
                Arc::clone(&self.env),
                Arc::clone(&self.resolver),
                self.tx.clone(),
                op.token,
            );
            // One-shot operations record what the agent can reload: read its meta-data
            // first if it is not known yet.
            let needs_meta = op.req.interval_ms == 0
                && !matches!(op.req.action, Action::Notify | Action::MetaData)
                && !self.meta_cache.contains_key(&op.req.agent.to_string());
            let mut req = op.req;
            tokio::spawn(async move {
                let meta = if needs_meta {
                    Some(read_meta(&env, &resolver, &req).await)
                } else {
                    None
                };
                if req.action == Action::Reload && meta.as_ref().is_some_and(|m| m.reload_agent) {
                    req.action = Action::ReloadAgent;
                }
                let result = run_op(&env, &resolver, &req).await;
                let _ = tx.send(Event::OpDone(token, result, meta)).await;
            });
        }
    }

    /// Probes every configured primitive that has no history on this node.
    fn probe_unknown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let node_count = self.cfg.nodes.len();
        let mut probes = Vec::new();
        for p in self.cib.primitives() {
            let id = &p.primitive.id;
            let known = self
                .status
                .history
                .get(id)
                .is_some_and(|m| m.contains_key(&self.node));
            let instance = if p.clone.is_some() {
                format!("{id}:0")
            } else {
                id.clone()
            };
            if known || self.queue.has(&instance, Action::Monitor, 0) {
                continue;
            }
            match self.request_for(&p, &instance, Action::Monitor, 0, node_count) {
                Ok(req) => probes.push((id.clone(), req)),
                Err(e) => warn!(node = %self.node, resource = %id, error = %e, "cannot probe"),
            }
        }
        for (id, req) in probes {
            info!(node = %self.node, resource = %id, "probe");
            self.enqueue(&id, req, Origin::Probe);
        }
    }

    /// An operation on a primitive outside a transition (probes).
    fn request_for(
        &self,
        p: &PrimitiveRef<'_>,
        instance: &str,
        action: Action,
        interval_ms: u64,
        node_count: usize,
    ) -> Result<OpRequest, String> {
        let agent = agent_ref(&p.primitive.agent)?;
        let timeout_ms = if action == Action::Monitor && interval_ms == 0 {
            // A probe uses the monitor's timeout (Pacemaker: the shortest monitor's), else the default.
            p.primitive
                .ops
                .iter()
                .filter(|o| o.name == "monitor")
                .filter_map(|o| o.timeout_ms)
                .min()
                .unwrap_or(self.cfg.executor.probe_timeout_ms)
        } else {
            self.cib
                .op_timeout_ms(p.primitive, action.as_str(), interval_ms)
        };
        let number = instance
            .rsplit_once(':')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        Ok(OpRequest {
            resource: instance.to_owned(),
            agent,
            action,
            interval_ms,
            timeout_ms,
            params: p.primitive.params.clone(),
            meta: meta::probe_meta(&self.cib, p, number, node_count),
            check_level: None,
        })
    }

    fn op_done(&mut self, token: u64, result: OpResult, meta: Option<AgentMeta>) {
        if let Some(m) = meta
            && let Some(op) = self.queue.running_op(token)
        {
            self.meta_cache
                .insert(op.req.agent.to_string(), Arc::new(m));
        }
        let Some(op) = self.queue.finish(token) else {
            warn!(node = %self.node, token, "completion of an unknown operation");
            return;
        };
        if op.origin == Origin::Recurring
            && self
                .monitors
                .get_mut(&op.req.resource, op.req.interval_ms)
                .is_none()
        {
            // Cancelled while it ran (a transition's cancel, a cleanup, shutdown): its result
            // is stale and must not re-arm the monitor in the history; Pacemaker drops it too.
            debug!(node = %self.node, resource = %op.req.resource, interval_ms = op.req.interval_ms, "result of a cancelled monitor dropped");
            return;
        }
        let now = now_s();
        let req = &op.req;
        let is_probe = req.action == Action::Monitor && req.interval_ms == 0;
        let op_name = req.action.as_str();
        let record_it = req.action != Action::Notify;
        let is_reload = matches!(req.action, Action::Reload | Action::ReloadAgent);
        // As Pacemaker's controller does: a successful reload is recorded as the start it
        // now stands for (with the new digests), a failed one as a one-shot monitor.
        let record_name = match (
            is_reload,
            result.status == ExecStatus::Done && result.rc == OcfRc::Success,
        ) {
            (true, true) => "start",
            (true, false) => "monitor",
            (false, _) => op_name,
        };
        let digests = history::digests_of(
            req,
            self.meta_cache.get(&req.agent.to_string()).map(|m| &**m),
        );
        let mut rec = history::record_of(
            record_name,
            req.interval_ms,
            self.status.next_call_id(&self.node),
            &result,
            now,
            digests,
        );
        let mut failed = rec.failed();

        // A recurring monitor's healthy result is learnt from its first run; a later run
        // returning the other healthy code means the role changed behind our back.
        if op.origin == Origin::Recurring
            && !failed
            && let Some(m) = self.monitors.get_mut(&req.resource, req.interval_ms)
        {
            let healthy = |c: i32| {
                if c == rc::DEGRADED {
                    rc::OK
                } else if c == rc::DEGRADED_PROMOTED {
                    rc::RUNNING_PROMOTED
                } else {
                    c
                }
            };
            match m.expected_rc {
                None => m.expected_rc = Some(healthy(rec.rc)),
                Some(exp) if exp != healthy(rec.rc) => {
                    failed = true;
                    if rec.rc == rc::OK {
                        // Expected promoted, found unpromoted: Pacemaker reports it as a failure.
                        rec.rc = rc::ERR_GENERIC;
                    }
                    rec.exit_reason.get_or_insert_with(|| {
                        "the resource changed role outside the cluster's control".into()
                    });
                }
                Some(_) => {}
            }
        }
        if failed {
            warn!(
                node = %self.node, resource = %req.resource, action = %req.action, interval_ms = req.interval_ms,
                rc = rec.rc, status = ?result.status, reason = result.exit_reason.as_deref().unwrap_or(""),
                "operation failed"
            );
            let tail = stderr_tail(&result.stderr);
            if !tail.is_empty() {
                warn!(node = %self.node, resource = %req.resource, action = %req.action, "agent stderr: {tail}");
            }
        } else {
            info!(node = %self.node, resource = %req.resource, action = %req.action, interval_ms = req.interval_ms, rc = %result.rc, "operation done");
        }
        if record_it {
            history::record(&mut self.status, &op.primitive, &self.node, rec);
        }
        if !failed {
            match req.action {
                Action::Start | Action::Reload | Action::ReloadAgent | Action::Monitor => {
                    self.stop_params
                        .insert(req.resource.clone(), req.params.clone());
                }
                Action::Stop => {
                    self.stop_params.remove(&req.resource);
                }
                _ => {}
            }
        }
        // Probe failures count too, except "not installed" (the resource just cannot run
        // here; the scheduler bans the node for it) — as Pacemaker does.
        let counted = !(is_probe && result.rc == OcfRc::ErrInstalled);
        if failed && counted && req.action != Action::Notify {
            let fatal = req.action == Action::Start && self.cib.start_failure_is_fatal();
            self.status.record_failure(
                &self.node,
                &op.primitive,
                op_name,
                req.interval_ms,
                now,
                fatal,
            );
        }

        // Recurring monitors: keep, suspend, or drop.
        match (&op.origin, req.action) {
            (_, Action::Stop) if !failed => {
                self.monitors.cancel_all(&req.resource);
            }
            (Origin::Recurring, _) => {
                if failed {
                    if let Some(m) = self.monitors.get_mut(&req.resource, req.interval_ms) {
                        m.suspended = true;
                    }
                } else {
                    self.monitors
                        .reschedule(&req.resource, req.interval_ms, Instant::now());
                }
            }
            (Origin::Transition { .. }, Action::Monitor) if req.interval_ms > 0 => {
                if let Some(m) = self.monitors.get_mut(&req.resource, req.interval_ms) {
                    if failed {
                        m.suspended = true;
                    } else {
                        m.expected_rc = Some(
                            if result.rc == OcfRc::RunningPromoted
                                || result.rc == OcfRc::DegradedPromoted
                            {
                                rc::RUNNING_PROMOTED
                            } else {
                                rc::OK
                            },
                        );
                        m.next_due = None;
                    }
                }
                if !failed {
                    self.monitors
                        .reschedule(&req.resource, req.interval_ms, Instant::now());
                }
            }
            _ => {}
        }

        match op.origin {
            Origin::Transition { seq, index } => {
                let notify = req.action == Action::Notify;
                if let Some(run) = self.transition.as_mut().filter(|r| r.seq == seq) {
                    let surprise = is_probe && result.rc != OcfRc::NotRunning;
                    if failed && !notify {
                        run.state[index] = ActState::Failed;
                        run.aborted = true;
                    } else {
                        if failed {
                            warn!(node = %self.node, resource = %req.resource, "notification failed; continuing as Pacemaker does");
                        }
                        run.state[index] = ActState::Done;
                        if surprise {
                            info!(node = %self.node, resource = %req.resource, rc = %result.rc, "probe found the resource active: re-planning");
                            run.aborted = true;
                        }
                    }
                }
            }
            Origin::Recurring => {
                if failed {
                    if let Some(run) = self.transition.as_mut() {
                        run.aborted = true;
                    }
                    self.request_replan(false);
                }
            }
            Origin::Probe => self.request_replan(false),
        }
    }

    fn timer(&mut self) {
        let now = Instant::now();
        if now >= self.recheck_at {
            self.recheck_at = now + Duration::from_millis(RECHECK_INTERVAL_MS);
            self.request_replan(false);
        }
        if self.shutdown.is_none() {
            // Maintenance needs nothing here: the scheduler cancels the monitors of what is
            // in maintenance (the transition's cancel actions) and re-arms them after it.
            for m in self.monitors.take_due(now) {
                if self
                    .queue
                    .has(&m.req.resource, Action::Monitor, m.req.interval_ms)
                    || !self.enqueue(&m.primitive.clone(), m.req.clone(), Origin::Recurring)
                {
                    // Already queued, or the queue is at its bound: try at the next interval.
                    self.monitors
                        .reschedule(&m.req.resource, m.req.interval_ms, now);
                }
            }
        }
    }

    // ---------------------------------------------------------------- transitions

    fn request_replan(&mut self, immediate: bool) {
        self.replan = true;
        if immediate {
            self.replan_not_before = None;
        }
    }

    /// Moves everything forward: transition actions, queued operations, re-planning.
    fn pump(&mut self) {
        loop {
            self.advance_transition();
            self.start_ready();
            if self.transition.is_none() && self.replan && self.ready_to_plan() {
                self.replan = false;
                self.replan_not_before = None;
                if self.plan() {
                    continue;
                }
            }
            break;
        }
    }

    fn ready_to_plan(&self) -> bool {
        if self.replan_not_before.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        // Probes outstanding, or anything of a finished transition still running.
        !self
            .queue
            .any(|o| matches!(o.origin, Origin::Probe | Origin::Transition { .. }))
    }

    /// Computes the next transition; true if one was started.
    fn plan(&mut self) -> bool {
        let now = now_s();
        let mut cib = self.cib.clone();
        if self.shutdown.is_some() {
            // Shutting down: plan as if this node were in standby, so everything stops here
            // (in reverse order) and, with membership, moves elsewhere.
            cib.node_mut(&self.node)
                .attributes
                .insert("standby".into(), "on".into());
        }
        let t = (self.planner)(&cib, &self.status, now);
        self.schedule_recheck(now);
        let summary = t.summary();
        if summary != self.last_summary || !t.is_empty() {
            if t.is_empty() {
                info!(node = %self.node, "transition: nothing to do");
            } else {
                for line in &summary {
                    info!(node = %self.node, "transition: {line}");
                }
            }
            self.last_summary = summary;
        }
        if t.is_empty() {
            return false;
        }
        debug_assert!(
            t.is_topologically_ordered(),
            "the scheduler lists dependencies first"
        );
        let keys: Vec<String> = t.actions.iter().map(|a| a.key()).collect();
        if keys == self.last_keys {
            self.repeats += 1;
            if self.repeats == REPEAT_LIMIT {
                warn!(
                    node = %self.node, actions = ?keys,
                    "the same transition keeps coming back after succeeding; slowing down re-planning (a scheduler or agent bug)"
                );
            }
        } else {
            self.repeats = 0;
            self.last_keys = keys;
        }
        self.transition_seq += 1;
        let n = t.actions.len();
        self.transition = Some(Running {
            seq: self.transition_seq,
            t,
            state: vec![ActState::Waiting; n],
            aborted: false,
        });
        true
    }

    /// Sets `recheck_at` to the next failure-timeout expiry, or the recheck interval.
    fn schedule_recheck(&mut self, now: u64) {
        let mut next_s: Option<u64> = None;
        for st in self.status.nodes.values() {
            for fc in &st.fail_counts {
                let Some(r) = self.cib.find(&fc.rsc) else {
                    continue;
                };
                let timeout = self.cib.failure_timeout_s(&r);
                if timeout == 0 {
                    continue;
                }
                let expiry = fc.last_failure_s.saturating_add(timeout);
                if expiry >= now {
                    next_s = Some(next_s.map_or(expiry, |n: u64| n.min(expiry)));
                }
            }
        }
        let interval = Duration::from_millis(RECHECK_INTERVAL_MS);
        let wait = next_s.map_or(interval, |s| {
            Duration::from_secs(s.saturating_sub(now) + 1).min(interval)
        });
        self.recheck_at = Instant::now() + wait;
    }

    fn advance_transition(&mut self) {
        let Some(run) = self.transition.as_mut() else {
            return;
        };
        let mut to_start: Vec<usize> = Vec::new();
        let mut remote_failure = false;
        if !run.aborted {
            for (i, a) in run.t.actions.iter().enumerate() {
                if run.state[i] != ActState::Waiting {
                    continue;
                }
                if !a
                    .after
                    .iter()
                    .all(|d| run.state[d.0 as usize] == ActState::Done)
                {
                    continue;
                }
                if a.node != self.node {
                    error!(node = %self.node, action = %a.key(), "action for another node: membership does not exist yet");
                    run.state[i] = ActState::Failed;
                    remote_failure = true;
                    continue;
                }
                to_start.push(i);
            }
        }
        if remote_failure {
            run.aborted = true;
            to_start.clear();
        }
        for i in to_start {
            self.start_action(i);
        }
        let run = self.transition.as_ref().expect("still there");
        let running = run.state.contains(&ActState::Running);
        let waiting = run.state.contains(&ActState::Waiting);
        if !running && (run.aborted || !waiting) {
            let aborted = run.aborted;
            let done = run.state.iter().filter(|s| **s == ActState::Done).count();
            info!(node = %self.node, seq = run.seq, actions = run.state.len(), done, aborted, "transition finished");
            self.transition = None;
            self.replan = true;
            let delay_ms = if self.repeats >= REPEAT_LIMIT {
                REPEAT_BACKOFF_MS
            } else if aborted {
                REPLAN_AFTER_ABORT_MS
            } else {
                0
            };
            self.replan_not_before =
                (delay_ms > 0).then(|| Instant::now() + Duration::from_millis(delay_ms));
        }
    }

    fn start_action(&mut self, i: usize) {
        let run = self.transition.as_mut().expect("a transition runs");
        let seq = run.seq;
        let a = run.t.actions[i].clone();
        run.state[i] = ActState::Running;
        let agent = match agent_ref(&a.agent) {
            Ok(x) => x,
            Err(e) => {
                // Recorded like an agent that is not installed, so the scheduler bans it here
                // instead of retrying it forever.
                error!(node = %self.node, action = %a.key(), error = %e, "cannot run action");
                run.state[i] = ActState::Failed;
                run.aborted = true;
                let now = now_s();
                let rec = clusterd_core::status::OpRecord {
                    op: a.kind.agent_action().to_owned(),
                    interval_ms: a.kind.interval_ms(),
                    call_id: self.status.next_call_id(&self.node),
                    rc: rc::ERR_INSTALLED,
                    status: clusterd_core::status::OpStatus::Error,
                    last_rc_change_s: now,
                    exec_time_ms: 0,
                    exit_reason: Some(e),
                    op_digest: None,
                    reload: None,
                };
                history::record(&mut self.status, &a.primitive, &self.node, rec);
                self.status.record_failure(
                    &self.node,
                    &a.primitive,
                    a.kind.agent_action(),
                    a.kind.interval_ms(),
                    now,
                    false,
                );
                return;
            }
        };
        let action = match a.kind {
            ActionKind::Stop => Action::Stop,
            ActionKind::Start => Action::Start,
            ActionKind::Demote => Action::Demote,
            ActionKind::Promote => Action::Promote,
            ActionKind::Reload => match self.meta_cache.get(&agent.to_string()) {
                Some(m) if m.reload_agent => Action::ReloadAgent,
                // Unknown yet: the agent task reads the meta-data and picks.
                _ => Action::Reload,
            },
            ActionKind::Monitor { .. } => Action::Monitor,
            ActionKind::Notify { .. } => Action::Notify,
            ActionKind::ClearFailcount => {
                if let Some(st) = self.status.nodes.get_mut(&self.node) {
                    st.fail_counts.retain(|f| f.rsc != a.primitive);
                }
                info!(node = %self.node, resource = %a.primitive, "fail count cleared: its operation definition changed");
                run.state[i] = ActState::Done;
                return;
            }
            ActionKind::Cancel { interval_ms } => {
                // By primitive: this node runs one instance of it, whatever number the
                // transition that armed the monitor gave that instance.
                for instance in self.monitors.instances_of(&a.primitive, interval_ms) {
                    self.monitors.cancel(&instance, interval_ms);
                    self.queue.drop_queued_recurring(&instance);
                }
                let call_id = self.status.next_call_id(&self.node);
                history::record_cancel(
                    &mut self.status,
                    &a.primitive,
                    &self.node,
                    interval_ms,
                    call_id,
                    now_s(),
                );
                run.state[i] = ActState::Done;
                return;
            }
        };
        // The resource's own meta attributes (inherited from its group, clone and
        // rsc_defaults, as Pacemaker passes them), under what the scheduler set.
        let number = a
            .resource
            .rsplit_once(':')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        let mut meta = self
            .cib
            .primitives()
            .iter()
            .find(|p| p.primitive.id == a.primitive)
            .map(|p| meta::probe_meta(&self.cib, p, number, self.cfg.nodes.len()))
            .unwrap_or_default();
        meta.extend(a.meta.clone());
        if let ActionKind::Notify { .. } = a.kind {
            meta::fill_notify_meta(&mut meta, &run.t, &a.primitive, a.kind);
        }
        let check_level = ["OCF_CHECK_LEVEL", "depth"]
            .iter()
            .find_map(|k| meta.remove(*k))
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| self.configured_check_level(&a.primitive, a.kind));
        // A stop runs with the parameters the resource was started with (Pacemaker's
        // `stop_params`): after `resource update` changed an address or a path, the stop
        // must undo the old one, not the new.
        let params = match a.kind {
            ActionKind::Stop => self
                .stop_params
                .get(&a.resource)
                .cloned()
                .unwrap_or_else(|| a.params.clone()),
            _ => a.params.clone(),
        };
        let req = OpRequest {
            resource: a.resource.clone(),
            agent,
            action,
            interval_ms: a.kind.interval_ms(),
            timeout_ms: a.timeout_ms,
            params,
            meta,
            check_level,
        };
        if let ActionKind::Monitor { interval_ms } = a.kind
            && interval_ms > 0
        {
            // Arm the recurring monitor; this first run is the transition's action.
            self.monitors.arm(&a.primitive, req.clone(), Instant::now());
            if let Some(m) = self.monitors.get_mut(&a.resource, interval_ms) {
                m.next_due = None;
            }
            self.queue.drop_queued_recurring(&a.resource);
        }
        if matches!(
            a.kind,
            ActionKind::Start | ActionKind::Stop | ActionKind::Promote | ActionKind::Demote
        ) {
            // Pacemaker's record-pending: status shows "Starting", "Stopping"... while the
            // agent runs; the result supersedes this record.
            let rec = clusterd_core::status::OpRecord {
                op: a.kind.agent_action().to_owned(),
                interval_ms: 0,
                call_id: self.status.next_call_id(&self.node),
                rc: rc::OK,
                status: clusterd_core::status::OpStatus::Pending,
                last_rc_change_s: now_s(),
                exec_time_ms: 0,
                exit_reason: None,
                op_digest: None,
                reload: None,
            };
            history::record(&mut self.status, &a.primitive, &self.node, rec);
        }
        self.enqueue(&a.primitive, req, Origin::Transition { seq, index: i });
    }

    /// `OCF_CHECK_LEVEL` (or `depth`) of the configured operation an action runs.
    fn configured_check_level(&self, primitive: &str, kind: ActionKind) -> Option<u32> {
        let ActionKind::Monitor { interval_ms } = kind else {
            return None;
        };
        let found = self.cib.find(primitive)?;
        let clusterd_core::cib::ResourceRef::Primitive(p) = found else {
            return None;
        };
        let op = p
            .primitive
            .ops
            .iter()
            .find(|o| o.name == "monitor" && o.interval_ms == interval_ms)?;
        ["OCF_CHECK_LEVEL", "depth"]
            .iter()
            .find_map(|k| op.extra.get(*k))
            .and_then(|v| v.trim().parse().ok())
    }

    // ---------------------------------------------------------------- shutdown

    fn begin_shutdown(&mut self) {
        info!(node = %self.node, "shutdown requested: stopping resources on this node");
        self.shutdown = Some(Instant::now() + Duration::from_millis(SHUTDOWN_MAX_MS));
        for m in self
            .monitors
            .iter()
            .map(|m| m.req.resource.clone())
            .collect::<Vec<_>>()
        {
            self.monitors.cancel_all(&m);
        }
        if let Some(run) = self.transition.as_mut() {
            run.aborted = true;
        }
        self.request_replan(true);
    }

    fn shutdown_complete(&self) -> bool {
        let Some(deadline) = self.shutdown else {
            return false;
        };
        if Instant::now() >= deadline {
            warn!(node = %self.node, "shutdown: giving up waiting for resources to stop");
            return true;
        }
        self.transition.is_none()
            && !self.replan
            && self.queue.running() == 0
            && self.queue.queued() == 0
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Status snapshot (tests, diagnostics).
    pub fn status(&self) -> &ClusterStatus {
        &self.status
    }

    /// Operation counts, for diagnostics: (running, queued, armed monitors).
    pub fn op_counts(&self) -> (usize, usize, usize) {
        (
            self.queue.running(),
            self.queue.queued(),
            self.monitors.iter().count(),
        )
    }

    /// The recurring monitors armed, as `(instance, interval_ms)`.
    pub fn armed_monitors(&self) -> BTreeMap<String, Vec<u64>> {
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for m in self.monitors.iter() {
            out.entry(m.req.resource.clone())
                .or_default()
                .push(m.req.interval_ms);
        }
        out
    }
}

/// Longest wait for an agent's `meta-data`.
pub const META_DATA_TIMEOUT_MS: u64 = 10_000;

/// Reads and parses `req`'s agent's meta-data. An agent whose meta-data cannot be read or
/// parsed is taken as one that cannot reload (every parameter change restarts it).
async fn read_meta(env: &ExecEnv, resolver: &AgentResolver, req: &OpRequest) -> AgentMeta {
    let md = OpRequest {
        resource: req.resource.clone(),
        agent: req.agent.clone(),
        action: Action::MetaData,
        interval_ms: 0,
        timeout_ms: META_DATA_TIMEOUT_MS,
        params: BTreeMap::new(),
        meta: BTreeMap::new(),
        check_level: None,
    };
    let result = run_op(env, resolver, &md).await;
    if result.rc != OcfRc::Success {
        debug!(agent = %req.agent, rc = %result.rc, "meta-data failed: the agent is taken as not reloadable");
        return AgentMeta::default();
    }
    AgentMeta::parse(&result.stdout).unwrap_or_else(|e| {
        warn!(agent = %req.agent, error = %e, "unreadable meta-data: the agent is taken as not reloadable");
        AgentMeta::default()
    })
}

/// Bytes of an agent's stderr logged with its failure.
pub const STDERR_LOG_BYTES: usize = 1024;

/// The last [`STDERR_LOG_BYTES`] of `stderr`, on whole lines, trimmed.
fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim_end();
    if t.len() <= STDERR_LOG_BYTES {
        return t.to_owned();
    }
    let mut cut = t.len() - STDERR_LOG_BYTES;
    while !t.is_char_boundary(cut) {
        cut += 1;
    }
    let tail = &t[cut..];
    tail.split_once('\n')
        .map_or(tail, |(_, rest)| rest)
        .to_owned()
}

/// The executor's agent name from the CIB's.
pub fn agent_ref(a: &clusterd_core::cib::Agent) -> Result<AgentRef, String> {
    if !a.class.eq_ignore_ascii_case("ocf") {
        return Err(format!(
            "agent {a}: class {} is not supported; clusterd runs OCF agents only",
            a.class
        ));
    }
    let provider = a
        .provider
        .as_deref()
        .ok_or_else(|| format!("agent {a}: an OCF agent needs a provider"))?;
    format!("ocf:{provider}:{}", a.kind)
        .parse()
        .map_err(|e: crate::agent::AgentError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_whole_last_lines() {
        assert_eq!(stderr_tail("a\nb\n"), "a\nb");
        let long = format!("{}\nlast line\n", "x".repeat(3000));
        assert_eq!(stderr_tail(&long), "last line");
        let many: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let t = stderr_tail(&many);
        assert!(
            t.len() <= STDERR_LOG_BYTES && t.starts_with("line ") && t.ends_with("line 499"),
            "{t}"
        );
    }

    #[test]
    fn only_ocf_agents_run() {
        use clusterd_core::cib::Agent;
        assert_eq!(
            agent_ref(&Agent::ocf("heartbeat", "Dummy"))
                .unwrap()
                .to_string(),
            "ocf:heartbeat:Dummy"
        );
        let sysd = Agent {
            class: "systemd".into(),
            provider: None,
            kind: "postfix".into(),
        };
        assert_eq!(
            agent_ref(&sysd).unwrap_err(),
            "agent systemd:postfix: class systemd is not supported; clusterd runs OCF agents only"
        );
        let no_provider = Agent {
            class: "ocf".into(),
            provider: None,
            kind: "Dummy".into(),
        };
        assert!(
            agent_ref(&no_provider)
                .unwrap_err()
                .contains("needs a provider")
        );
    }
}

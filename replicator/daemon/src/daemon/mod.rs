//! `replicatord`: one event loop that owns every resource of this node.
//!
//! ```text
//!  control socket (0600) ─┐                              ┌─► disk work (inline when the page
//!  NBD lookups ───────────┤                              │    cache takes it, else a task)
//!  peer readers, dials ───┼─► mpsc<Event> ──┐            ├─► meta-data jobs (one at a time)
//!  disk completions ──────┤   (bounded)     ├─► loop ────┼─► peer writers (frames)
//!  tick (1 s), signals ───┘                 │   apply    └─► replies to NBD and control
//!  NBD data requests ─► one mpsc per resource┘  (read only while the replication machine
//!                        (bounded)               gives write credit)
//! ```
//!
//! `let ev = select().await; apply(ev);` — only waiting is async; `apply` is plain code that
//! feeds the resource's replication machine (`replicator_core::protocol::Replica`, the one
//! owner of role, disk state, connection state, bitmap and activity log) and carries its
//! outputs out in order (`drive.rs`). After each wake-up the loop takes every event already
//! queued (up to [`BATCH`]) before it sleeps again, so a burst of completions and
//! acknowledgements costs one wake-up. The machines' timers come from `poll_timeout()`.

pub mod backend;
pub mod drive;
pub mod event;
pub mod io_path;
pub mod meta_io;
pub mod peer;
pub mod replica_cfg;
pub mod resource;
pub mod status_of;
pub mod up;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tandem_nbd::{ExportListing, Listener, Refusal, Server, ServerConfig};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use replicator_core::protocol::AdminCommand;

use self::backend::LoopLookup;
use self::event::{Disk, EVENT_QUEUE, Event, Nbd, NbdReq, Peer};
use self::resource::{Res, listener_key};
use self::up::Ctx;
use crate::control::{self, Command, Response};
use crate::exit::{Exit, Failure};

/// How often [`Event::Tick`] arrives.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a shutdown waits for resources to demote and detach before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Control connections served at once; more are closed at accept.
pub const MAX_CONTROL_CONNECTIONS: usize = 32;
/// A control connection idle this long between requests is closed.
pub const CONTROL_IDLE: Duration = Duration::from_secs(60);
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/replicatord";
/// Events the loop takes per wake-up before it looks at its timers again.
pub const BATCH: usize = 256;
/// How long the loop keeps polling, instead of sleeping, while a few client writes wait only
/// for the peer's acknowledgement (see [`ack_spin`]). Default of `REPLICATORD_ACK_SPIN_US`:
/// off, because on one machine (the benchmark's) the polling Primary can take the CPU its own
/// peer needs, which costs more than it saves (docs/replication.md §12).
pub const ACK_SPIN_DEFAULT: Duration = Duration::ZERO;
/// The loop polls for acknowledgements only while at most this many client writes wait for
/// them: a latency-bound client (QD1, a database's log writes). With more, the CPU is better
/// left to the others (the NBD clients, the kernel's TCP, on one box the peer).
pub const ACK_SPIN_MAX_WRITES: usize = 2;

/// The acknowledgement poll window: `REPLICATORD_ACK_SPIN_US` (default and 0: off), at most
/// 1 ms.
///
/// Why: a replicated write under protocol B or C waits one TCP round trip for the peer's
/// acknowledgement, and the thread sleeps meanwhile; waking a sleeping thread on an idle CPU
/// costs tens of microseconds on virtual machines (measured here: a TCP round trip between
/// two processes takes 21 us on one CPU, 125 us across two — docs/replication.md §12). Polling
/// the sockets for up to this long after a write went out catches the acknowledgement without
/// that wake-up, as the kernel's own busy polling (`net.core.busy_poll`) does for NICs. Only a
/// few writes in flight (a latency-bound client) are worth the CPU. Each round yields the CPU
/// (`sched_yield`) to whatever else is runnable there.
pub fn ack_spin() -> Duration {
    std::env::var("REPLICATORD_ACK_SPIN_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(ACK_SPIN_DEFAULT, |us| Duration::from_micros(us.min(1000)))
}

/// What `replicatord` runs with.
#[derive(Debug, Clone)]
pub struct Args {
    /// The configuration file.
    pub config: PathBuf,
    /// This node's name (as in `on NAME`).
    pub node: String,
    /// The state directory (control socket, default NBD sockets, lock).
    pub state_dir: PathBuf,
}

struct Daemon {
    args: Args,
    state_dir: String,
    events: mpsc::Sender<Event>,
    resources: BTreeMap<String, Res>,
    listeners: BTreeMap<String, watch::Sender<bool>>,
    server_stop: watch::Receiver<bool>,
    shutting_down: bool,
    origin: Instant,
}

/// What woke the loop.
enum Woke {
    Event(Event),
    Nbd(String, NbdReq),
    Timer,
    Closed,
}

/// Runs the daemon until SIGTERM/SIGINT; resources come up only when told (`replicatorctl up`).
pub async fn run(args: Args) -> Result<(), Failure> {
    let state_dir = args
        .state_dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned();
    prepare_state_dir(&args.state_dir)?;
    let _lock = lock_state_dir(&args.state_dir)?;
    let loaded = crate::source::load(&args.config.to_string_lossy())
        .map_err(|e| Failure::new(Exit::Config, e.to_string()))?;
    for w in &loaded.warnings {
        warn!(node = %args.node, "{w}");
    }
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut d = Daemon {
        state_dir: state_dir.clone(),
        args: args.clone(),
        events: tx.clone(),
        resources: BTreeMap::new(),
        listeners: BTreeMap::new(),
        server_stop: stop_rx,
        shutting_down: false,
        origin: Instant::now(),
    };
    let mine: Vec<_> = loaded
        .config
        .resources
        .iter()
        .filter_map(|r| r.host(&args.node).map(|h| (r.clone(), h.clone())))
        .collect();
    if mine.is_empty() {
        warn!(node = %args.node, config = %args.config.display(), "no resource of the configuration has an 'on {}' section", args.node);
    }
    for (r, h) in mine {
        let res = Res::new(r, h, &state_dir, &args.config.to_string_lossy());
        if let Err(e) = d.ensure_listener(&res) {
            error!(resource = %res.name, node = %args.node, "{}", e.message);
        }
        d.resources.insert(res.cfg.name.clone(), res);
    }
    let control_path = args.state_dir.join(control::SOCKET_NAME);
    let control = bind_control(&control_path)?;
    tokio::spawn(serve_control(control, tx.clone()));
    tokio::spawn(ticker(tx.clone()));
    tokio::spawn(signals(tx.clone()));
    info!(node = %args.node, state_dir = %state_dir, control = %control_path.display(), resources = d.resources.len(), "replicatord running");
    let mut deadline: Option<tokio::time::Instant> = None;
    let spin = ack_spin();
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        let next = d.timers();
        let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let wake = match deadline {
            Some(t) => wake.min(t.into_std()),
            None => wake,
        };
        sleep.as_mut().reset(tokio::time::Instant::from_std(wake));
        let spin_until = (!spin.is_zero() && d.spin_wanted()).then(|| Instant::now() + spin);
        let mut poll_once = |cx: &mut std::task::Context<'_>| {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(ev)) => return Poll::Ready(Woke::Event(ev)),
                Poll::Ready(None) => return Poll::Ready(Woke::Closed),
                Poll::Pending => {}
            }
            for (name, r) in d.resources.iter_mut() {
                if let Some(up) = r.up_mut()
                    && up.accepting_nbd()
                    && let Poll::Ready(Some(req)) = up.nbd_rx.poll_recv(cx)
                {
                    return Poll::Ready(Woke::Nbd(name.clone(), req));
                }
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Timer);
            }
            Poll::Pending
        };
        let woke = match spin_until {
            None => std::future::poll_fn(&mut poll_once).await,
            Some(until) => loop {
                // Poll without sleeping: each yield lets the runtime poll the sockets (a
                // zero-timeout epoll_wait) and run the tasks that became ready.
                if let Poll::Ready(w) = std::future::poll_fn(|cx| Poll::Ready(poll_once(cx))).await
                {
                    break w;
                }
                if Instant::now() >= until {
                    break std::future::poll_fn(&mut poll_once).await;
                }
                // Give the CPU to whatever else is runnable on it (on one machine, possibly
                // the peer that is to answer), then poll again.
                std::thread::yield_now();
                tokio::task::yield_now().await;
            },
        };
        match woke {
            Woke::Closed => break,
            Woke::Timer => {}
            Woke::Event(ev) => {
                if matches!(ev, Event::Shutdown) && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                d.apply(ev);
            }
            Woke::Nbd(name, req) => d.nbd_data(&name, req),
        }
        // Take what is already queued before sleeping again: one wake-up per burst.
        for _ in 0..BATCH {
            match rx.try_recv() {
                Ok(ev) => {
                    if matches!(ev, Event::Shutdown) && deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                    }
                    d.apply(ev);
                }
                Err(_) => break,
            }
        }
        d.drain_nbd(BATCH);
        if d.shutting_down && d.resources.values().all(Res::is_down) {
            break;
        }
        if deadline.is_some_and(|t| t <= tokio::time::Instant::now()) {
            error!(node = %args.node, "resources did not go down within {SHUTDOWN_GRACE:?}; exiting anyway");
            break;
        }
    }
    stop_tx.send_replace(true);
    for l in d.listeners.values() {
        l.send_replace(true);
    }
    let _ = std::fs::remove_file(&control_path);
    info!(node = %args.node, "replicatord stopped");
    Ok(())
}

impl Daemon {
    fn ctx(&self) -> (mpsc::Sender<Event>, String) {
        (self.events.clone(), self.args.node.clone())
    }

    /// Runs due timers of every resource; returns when the next one is due.
    fn timers(&mut self) -> Option<Instant> {
        let (events, node) = self.ctx();
        let ctx = Ctx {
            events: &events,
            node: &node,
            origin: self.origin,
        };
        let mut next: Option<Instant> = None;
        for r in self.resources.values_mut() {
            if let Some(t) = r.timers(&ctx) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Whether the loop should poll for a peer's acknowledgement rather than sleep: some
    /// resource has 1 to [`ACK_SPIN_MAX_WRITES`] client writes waiting only for it.
    fn spin_wanted(&self) -> bool {
        self.resources.values().any(|r| {
            r.up_ref()
                .is_some_and(|up| (1..=ACK_SPIN_MAX_WRITES).contains(&up.awaiting_peer()))
        })
    }

    /// Takes NBD data requests already queued, while their resources give credit.
    fn drain_nbd(&mut self, max: usize) {
        let (events, node) = self.ctx();
        let ctx = Ctx {
            events: &events,
            node: &node,
            origin: self.origin,
        };
        let mut n = 0;
        for r in self.resources.values_mut() {
            let name = r.name.clone();
            let Some(up) = r.up_mut() else { continue };
            while n < max && up.accepting_nbd() {
                let Ok(req) = up.nbd_rx.try_recv() else { break };
                up.nbd_request(req, &name, &ctx);
                n += 1;
            }
            r.advance(&ctx);
        }
    }

    fn nbd_data(&mut self, name: &str, req: NbdReq) {
        let (events, node) = self.ctx();
        let ctx = Ctx {
            events: &events,
            node: &node,
            origin: self.origin,
        };
        if let Some(r) = self.resources.get_mut(name) {
            let rname = r.name.clone();
            if let Some(up) = r.up_mut() {
                up.nbd_request(req, &rname, &ctx);
            }
            r.advance(&ctx);
        }
    }

    fn apply(&mut self, ev: Event) {
        let (events, node) = self.ctx();
        let ctx = Ctx {
            events: &events,
            node: &node,
            origin: self.origin,
        };
        match ev {
            Event::Control(cmd, reply) => self.control(&ctx, cmd, reply),
            Event::Nbd(n) => self.nbd(&ctx, n),
            Event::Disk(d) => self.disk(&ctx, d),
            Event::Peer(p) => {
                let name = match &p {
                    Peer::Offered { resource, .. }
                    | Peer::Dialed { resource, .. }
                    | Peer::ListenFailed { resource, .. }
                    | Peer::Message { resource, .. }
                    | Peer::Closed { resource, .. } => resource.clone(),
                };
                if let Some(r) = self.resources.get_mut(&*name) {
                    r.peer(&ctx, p);
                }
            }
            Event::Tick => {
                for r in self.resources.values_mut() {
                    r.tick(&ctx);
                }
            }
            Event::Shutdown => {
                if !self.shutting_down {
                    info!(node = %node, "shutting down: demoting and detaching every resource");
                    self.shutting_down = true;
                    for r in self.resources.values_mut() {
                        r.down(&ctx, None);
                    }
                }
            }
        }
    }

    fn control(&mut self, ctx: &Ctx, cmd: Command, reply: oneshot::Sender<Response>) {
        if self.shutting_down && !matches!(cmd, Command::Status { .. }) {
            let _ = reply.send(Response::err(Exit::Refused, "replicatord is shutting down"));
            return;
        }
        match cmd {
            Command::Status { resource } => {
                let all: Vec<_> = match &resource {
                    Some(n) => match self.resources.get(n) {
                        Some(r) => vec![r.status(ctx.node, ctx.now())],
                        None => {
                            let _ = reply.send(self.unknown(n));
                            return;
                        }
                    },
                    None => self
                        .resources
                        .values()
                        .map(|r| r.status(ctx.node, ctx.now()))
                        .collect(),
                };
                let mut r = Response::ok("");
                r.status = all;
                let _ = reply.send(r);
            }
            Command::Up { resource } => self.up(ctx, resource, reply),
            Command::Down { resource } => match self.resources.get_mut(&resource) {
                Some(r) => r.down(ctx, Some(reply)),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Primary { resource, force } => match self.resources.get_mut(&resource) {
                Some(r) => r.primary(ctx, force, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Secondary { resource } => match self.resources.get_mut(&resource) {
                Some(r) => r.secondary(ctx, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Connect {
                resource,
                discard_my_data,
            } => match self.resources.get_mut(&resource) {
                Some(r) => r.connect(ctx, discard_my_data, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Disconnect { resource } => match self.resources.get_mut(&resource) {
                Some(r) => r.simple_verb(ctx, AdminCommand::Disconnect, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Invalidate { resource } => match self.resources.get_mut(&resource) {
                Some(r) => r.simple_verb(ctx, AdminCommand::Invalidate, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
            Command::Verify { resource, wait } => match self.resources.get_mut(&resource) {
                Some(r) => r.verify(ctx, wait, reply),
                None => {
                    let _ = reply.send(self.unknown(&resource));
                }
            },
        }
    }

    fn unknown(&self, name: &str) -> Response {
        let known: Vec<&str> = self.resources.keys().map(String::as_str).collect();
        Response::err(
            Exit::Config,
            format!(
                "no resource '{name}' for node {} in {} (resources here: {})",
                self.args.node,
                self.args.config.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
    }

    /// `up`: re-reads the configuration (as drbdadm reads it for every command), then attaches.
    fn up(&mut self, ctx: &Ctx, name: String, reply: oneshot::Sender<Response>) {
        let config = self.args.config.to_string_lossy().into_owned();
        let loaded = match crate::source::load(&config) {
            Ok(l) => l,
            Err(e) => {
                let _ = reply.send(Response::err(Exit::Config, e.to_string()));
                return;
            }
        };
        let warnings: Vec<String> = loaded
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.pos, w.message))
            .collect();
        let Some(res_cfg) = loaded.config.resource(&name) else {
            let _ = reply.send(Response::err(
                Exit::Config,
                format!("no resource '{name}' in {config}"),
            ));
            return;
        };
        let Some(host) = res_cfg.host(ctx.node) else {
            let _ = reply.send(Response::err(
                Exit::Config,
                format!(
                    "resource '{name}' in {config} has no 'on {}' section",
                    ctx.node
                ),
            ));
            return;
        };
        match self.resources.get_mut(&name) {
            Some(r) if !r.is_down() => {
                r.up(ctx, reply, warnings);
                return;
            }
            _ => {}
        }
        // Down or new: take the configuration as it is now.
        let fresh = Res::new(
            res_cfg.clone(),
            host.clone(),
            &self.state_dir,
            &self.args.config.to_string_lossy(),
        );
        if let Some(old) = self.resources.get(&name)
            && old.listener != fresh.listener
        {
            info!(resource = %name, node = %ctx.node, "export moved from {} to {}", old.listener, fresh.listener);
        }
        if let Err(f) = self.ensure_listener(&fresh) {
            let _ = reply.send(Response::err(
                f.exit,
                format!("resource {name}: {}", f.message),
            ));
            return;
        }
        self.resources.insert(name.clone(), fresh);
        let r = self.resources.get_mut(&name).expect("just inserted");
        r.up(ctx, reply, warnings);
    }

    fn nbd(&mut self, ctx: &Ctx, n: Nbd) {
        match n {
            Nbd::Lookup {
                listener,
                name,
                reply,
            } => {
                let on_listener: Vec<&Res> = self
                    .resources
                    .values()
                    .filter(|r| *r.listener == *listener)
                    .collect();
                let found = on_listener.iter().find(|r| r.export.name() == name).or(
                    if name.is_empty() && on_listener.len() == 1 {
                        on_listener.first()
                    } else {
                        None
                    },
                );
                let answer = match found {
                    Some(r) => r.lookup(ctx.node),
                    None => {
                        let names: Vec<&str> =
                            on_listener.iter().map(|r| r.export.name()).collect();
                        Err(Refusal::unknown(format!(
                            "no export named {name:?} here (exports on this socket: {})",
                            names.join(", ")
                        )))
                    }
                };
                if let Err(r) = &answer {
                    info!(node = %ctx.node, listener = %listener, export = %name, reason = %r.message, "NBD client refused");
                }
                let _ = reply.send(answer);
            }
            Nbd::List { listener, reply } => {
                let open = self
                    .resources
                    .values()
                    .filter(|r| *r.listener == *listener)
                    .filter_map(|r| {
                        r.open_export().map(|e| ExportListing {
                            name: e.name().to_owned(),
                            description: e.info().description,
                        })
                    })
                    .collect();
                let _ = reply.send(open);
            }
        }
    }

    fn disk(&mut self, ctx: &Ctx, d: Disk) {
        let name: String = match &d {
            Disk::Attached { resource, .. } => resource.clone(),
            Disk::Io { resource, .. } | Disk::MetaDone { resource, .. } => resource.to_string(),
        };
        let attach = matches!(d, Disk::Attached { .. });
        if let Some(r) = self.resources.get_mut(&name) {
            r.disk(ctx, d);
            if attach && self.shutting_down {
                // It was attaching when the shutdown began: take it down now.
                r.down(ctx, None);
            }
        }
    }

    /// Binds the listener of `res`'s export unless one is bound for that address already.
    fn ensure_listener(&mut self, res: &Res) -> Result<(), Failure> {
        let key = listener_key(&res.export);
        if self.listeners.contains_key(&key) {
            return Ok(());
        }
        let listener = match &res.export {
            replicator_core::config::Export::Unix { socket, .. } => {
                let p = Path::new(socket);
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let l = Listener::bind_unix(p).map_err(|e| {
                    Failure::new(Exit::Failed, format!("cannot listen on {socket}: {e}"))
                })?;
                // Whoever connects can write the device: root only.
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Failure::new(Exit::Failed, format!("chmod {socket}: {e}")))?;
                l
            }
            replicator_core::config::Export::Tcp { host, port, .. } => {
                let l = std::net::TcpListener::bind((host.as_str(), *port)).map_err(|e| {
                    Failure::new(Exit::Failed, format!("cannot listen on {host}:{port}: {e}"))
                })?;
                l.set_nonblocking(true)
                    .map_err(|e| Failure::new(Exit::Failed, format!("{host}:{port}: {e}")))?;
                Listener::Tcp(
                    tokio::net::TcpListener::from_std(l)
                        .map_err(|e| Failure::new(Exit::Failed, format!("{host}:{port}: {e}")))?,
                )
            }
        };
        let key_arc: Arc<str> = Arc::from(key.as_str());
        let server = Server::new(
            Arc::new(LoopLookup::new(key_arc.clone(), self.events.clone())),
            ServerConfig::default(),
        );
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let mut global = self.server_stop.clone();
        let node = self.args.node.clone();
        info!(node = %node, listener = %key, "NBD listener bound");
        tokio::spawn(async move {
            let stop = async move {
                tokio::select! {
                    _ = stop_rx.wait_for(|v| *v) => {}
                    _ = global.wait_for(|v| *v) => {}
                }
            };
            if let Err(e) = server.serve(listener, stop).await {
                error!(node = %node, listener = %key_arc, error = %e, "NBD listener failed");
            }
        });
        self.listeners.insert(key, stop_tx);
        Ok(())
    }
}

/// Creates the state directory (mode 0700) or checks an existing one: it holds the sockets
/// that control the daemon and serve the devices, so nobody else may write in it. An existing
/// directory is never chmod-ed (`--state-dir /tmp` must not change /tmp); one writable by
/// group or others is refused.
fn prepare_state_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Failure::new(
                    Exit::Failed,
                    format!("cannot create state directory {shown}: {e}"),
                )
            }),
        Err(e) => Err(Failure::new(
            Exit::Failed,
            format!("state directory {shown}: {e}"),
        )),
        Ok(m) if !m.is_dir() => Err(Failure::new(
            Exit::Failed,
            format!("state directory {shown} is not a directory"),
        )),
        Ok(m) if m.mode() & 0o022 != 0 => Err(Failure::new(
            Exit::Refused,
            format!(
                "state directory {shown} is writable by group or others (mode {:o}): use a private directory",
                m.mode() & 0o7777
            ),
        )),
        Ok(_) => Ok(()),
    }
}

/// Holds the state directory's lock for the daemon's life: two daemons on one state directory
/// would fight over its sockets.
fn lock_state_dir(dir: &Path) -> Result<Flock<std::fs::File>, Failure> {
    let path = dir.join("replicatord.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot open {}: {e}", path.display())))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        Failure::new(
            Exit::Refused,
            format!(
                "another replicatord holds {} ({e}): use a different --state-dir",
                path.display()
            ),
        )
    })
}

fn bind_control(path: &Path) -> Result<UnixListener, Failure> {
    let _ = std::fs::remove_file(path);
    // Created under a restrictive umask so the socket is never briefly open to others.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot bind the control socket {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Failure::new(Exit::Failed, format!("chmod {}: {e}", path.display())))?;
    Ok(l)
}

async fn serve_control(l: UnixListener, events: mpsc::Sender<Event>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        let (stream, _) = match l.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "control accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!("too many control connections; closing one");
            continue;
        };
        let events = events.clone();
        tokio::spawn(async move {
            control_connection(stream, events).await;
            drop(permit);
        });
    }
}

async fn control_connection(mut stream: tokio::net::UnixStream, events: mpsc::Sender<Event>) {
    loop {
        let frame = match tokio::time::timeout(CONTROL_IDLE, control::read_frame(&mut stream)).await
        {
            Err(_) | Ok(Err(control::FrameError::Closed)) => return,
            Ok(Err(e)) => {
                warn!(error = %e, "bad control frame");
                let resp = Response::err(Exit::Protocol, format!("bad request: {e}"));
                let _ = control::write_frame(
                    &mut stream,
                    &serde_json::to_vec(&resp).expect("serialisable"),
                )
                .await;
                return;
            }
            Ok(Ok(f)) => f,
        };
        let resp = match control::parse_request(&frame) {
            Err(resp) => {
                warn!(reason = %resp.message, "bad control request");
                resp
            }
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if events.send(Event::Control(req.command, tx)).await.is_err() {
                    return;
                }
                rx.await.unwrap_or_else(|_| {
                    Response::err(Exit::Failed, "replicatord stopped before answering")
                })
            }
        };
        if control::write_frame(
            &mut stream,
            &serde_json::to_vec(&resp).expect("serialisable"),
        )
        .await
        .is_err()
        {
            return;
        }
    }
}

async fn ticker(events: mpsc::Sender<Event>) {
    let mut t = tokio::time::interval(TICK);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        t.tick().await;
        if events.send(Event::Tick).await.is_err() {
            return;
        }
    }
}

async fn signals(events: mpsc::Sender<Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if events.send(Event::Shutdown).await.is_err() {
            return;
        }
    }
}

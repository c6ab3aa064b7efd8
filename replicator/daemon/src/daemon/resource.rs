//! One resource as the event loop sees it: its configuration, its state (down, attaching, up),
//! and the handlers the loop calls. Plain synchronous code: every piece of I/O is spawned and
//! comes back as an event.
//!
//! ```text
//!             up                 attached
//!   Down ───────────► Attaching ──────────► Up(Secondary) ──primary──► Up(Primary)
//!    ▲                   │ error                │    ▲                     │
//!    └───────────────────┘                      │    └──── secondary ──────┘
//!    ▲                          down (detach)   │        (close export, drain writes,
//!    └──────────────────────────────────────────┘         flush data, bitmap, superblock)
//! ```
//!
//! The write path of a Primary is in [`super::io_path`]; the status report in
//! [`super::status_of`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::Arc;

use replicator_core::bitmap::Bitmap;
use replicator_core::config::{Export as ExportAddr, Fencing, Host, Resource};
use replicator_core::meta::superblock::Flags;
use replicator_core::meta::{ActivityLog, Layout, Superblock};
use replicator_core::protocol::uuids;
use replicator_core::types::{ConnState, DiskState, Role};
use tandem_nbd::{Export, FileBackend, FileOptions, Refusal};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::backend::ReplicatedBackend;
use super::event::{DataOp, Disk, Event};
use super::io_path::take_dirty_pages;
use super::meta_io::{Done, Job, MetaQueue};
use crate::control::Response;
use crate::exit::{Exit, Failure};
use crate::md;
use crate::status::IoStatus;
use crate::volume::Attached;

/// Bitmap pages written back per tick when idle (a bound on one write-back job).
pub const WRITEBACK_PAGES_PER_TICK: usize = 64;

/// What handlers need from the daemon.
pub struct Ctx<'a> {
    /// The event queue (for completions of spawned work).
    pub events: &'a mpsc::Sender<Event>,
    /// This node's name.
    pub node: &'a str,
}

type Reply = oneshot::Sender<Response>;
pub(super) type IoReply = oneshot::Sender<io::Result<()>>;

/// A data operation waiting to start.
#[derive(Debug)]
pub struct Pending {
    pub(super) offset: u64,
    pub(super) op: DataOp,
    pub(super) reply: IoReply,
    pub(super) extents: Option<(u32, u32)>,
    pub(super) wait_seq: u64,
}

/// A data operation running on the file.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) extents: Option<(u32, u32)>,
    pub(super) len: u64,
    pub(super) reply: IoReply,
}

/// A control transition in progress (one at a time per resource).
#[derive(Debug)]
pub(super) enum Step {
    /// Waiting for the superblock that records the promotion.
    Promoting {
        reply: Reply,
        sb: Superblock,
        forced: bool,
    },
    /// Demoting: draining writes, then flushing data, then the superblock.
    Demoting {
        reply: Option<Reply>,
        then_down: bool,
        stage: Demote,
    },
    /// Writing the last bitmap pages and superblock before closing the files.
    Detaching {
        reply: Option<Reply>,
        sb: Superblock,
    },
}

#[derive(Debug)]
pub(super) enum Demote {
    Draining,
    Syncing,
    Writing(Superblock),
}

/// An attached volume and its state.
pub struct Up {
    pub(super) data: FileBackend,
    pub(super) layout: Layout,
    pub(super) sb: Superblock,
    pub(super) bitmap: Bitmap,
    pub(super) dirty: BTreeSet<u32>,
    pub(super) al: ActivityLog,
    pub(super) al_enabled: bool,
    pub(super) meta: MetaQueue,
    pub(super) role: Role,
    pub(super) disk: DiskState,
    pub(super) conn: ConnState,
    pub(super) export: Option<Arc<Export>>,
    pub(super) next_id: u64,
    pub(super) running: BTreeMap<u64, Running>,
    /// Operations that finished inline, to complete before the handler returns.
    pub(super) completed: Vec<(u64, io::Result<()>)>,
    pub(super) waiting: Vec<Pending>,
    pub(super) parked: VecDeque<Pending>,
    pub(super) step: Option<Step>,
    pub(super) io: IoStatus,
}

/// The resource's state.
pub enum State {
    /// Not attached.
    Down,
    /// `up` is reading the meta-data.
    Attaching(Reply, Vec<String>),
    /// Attached.
    Up(Box<Up>),
}

/// A resource of this node.
pub struct Res {
    /// Its name.
    pub name: Arc<str>,
    /// Its configuration (as of the last `up`, or daemon start).
    pub cfg: Resource,
    /// This node's section.
    pub host: Host,
    /// Where it is exported.
    pub export: ExportAddr,
    /// The listener key of the export (socket path or host:port).
    pub listener: Arc<str>,
    /// Its state.
    pub state: State,
}

pub(super) fn err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn busy(name: &str) -> Response {
    Response::err(
        Exit::Refused,
        format!("resource {name}: another command is in progress; try again"),
    )
}

/// The listener key of an export: its socket path or `host:port`.
pub fn listener_key(e: &ExportAddr) -> String {
    match e {
        ExportAddr::Unix { socket, .. } => socket.clone(),
        ExportAddr::Tcp { host, port, .. } => format!("{host}:{port}"),
    }
}

impl Res {
    /// A down resource.
    pub fn new(cfg: Resource, host: Host, state_dir: &str) -> Self {
        let export = host.device.export(&cfg.name, state_dir);
        let listener = Arc::from(listener_key(&export));
        Res {
            name: Arc::from(cfg.name.as_str()),
            cfg,
            host,
            export,
            listener,
            state: State::Down,
        }
    }

    pub(super) fn up_mut(&mut self) -> Option<&mut Up> {
        match &mut self.state {
            State::Up(u) => Some(u),
            _ => None,
        }
    }

    /// Whether the resource is down (nothing attached, nothing in progress).
    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Down)
    }

    /// `up`: attach on a blocking thread (`cfg`/`host` were just re-read by the daemon).
    pub fn up(&mut self, ctx: &Ctx, reply: Reply, warnings: Vec<String>) {
        match &self.state {
            State::Up(_) => {
                let mut r = Response::ok(format!("resource {} is already up", self.name));
                r.warnings = warnings;
                let _ = reply.send(r);
                return;
            }
            State::Attaching(..) => {
                let _ = reply.send(busy(&self.name));
                return;
            }
            State::Down => {}
        }
        info!(resource = %self.name, node = %ctx.node, "attaching");
        self.state = State::Attaching(reply, warnings);
        let (cfg, host, events, name) = (
            self.cfg.clone(),
            self.host.clone(),
            ctx.events.clone(),
            self.name.to_string(),
        );
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                crate::volume::attach(&cfg, &host).map(Box::new)
            })
            .await
            .unwrap_or_else(|e| Err(Failure::new(Exit::Failed, format!("attach failed: {e}"))));
            let _ = events
                .send(Event::Disk(Disk::Attached {
                    resource: name,
                    result,
                }))
                .await;
        });
    }

    /// The attach finished.
    pub fn attached(&mut self, ctx: &Ctx, result: Result<Box<Attached>, Failure>) {
        let State::Attaching(reply, mut warnings) = std::mem::replace(&mut self.state, State::Down)
        else {
            panic!(
                "attach result for resource {} that is not attaching",
                self.name
            );
        };
        let att = match result {
            Ok(a) => a,
            Err(f) => {
                warn!(resource = %self.name, node = %ctx.node, error = %f.message, "up failed");
                let mut r = Response::err(f.exit, format!("resource {}: {}", self.name, f.message));
                r.warnings = warnings;
                let _ = reply.send(r);
                return;
            }
        };
        let opts = FileOptions {
            size: Some(att.layout.data_bytes),
            ..FileOptions::default()
        };
        let data = match FileBackend::open(&att.disks.backing_path, opts) {
            Ok(d) => d,
            Err(e) => {
                let _ = reply.send(Response::err(
                    Exit::Failed,
                    format!(
                        "resource {}: cannot open {}: {e}",
                        self.name,
                        att.disks.backing_path.display()
                    ),
                ));
                return;
            }
        };
        for n in &att.notes {
            warn!(resource = %self.name, node = %ctx.node, "{n}");
            warnings.push(n.clone());
        }
        let fencing_off = self
            .cfg
            .connections_of(self.host.name())
            .all(|c| c.net.fencing == Fencing::DontCare);
        let disk = att
            .sb
            .attach_disk_state(fencing_off, self.cfg.is_standalone());
        let Attached {
            disks,
            layout,
            sb,
            bitmap,
            al,
            ..
        } = *att;
        let dirty = BTreeSet::new();
        let up = Up {
            data,
            layout,
            sb,
            bitmap,
            dirty,
            al,
            al_enabled: self.host.disk_options.al_updates,
            meta: MetaQueue::new(Arc::new(disks.meta), self.host.disk_options.md_flushes),
            role: Role::Secondary,
            disk,
            conn: ConnState::StandAlone,
            export: None,
            next_id: 1,
            running: BTreeMap::new(),
            completed: Vec::new(),
            waiting: Vec::new(),
            parked: VecDeque::new(),
            step: None,
            io: IoStatus::default(),
        };
        let size = up.layout.data_bytes;
        info!(resource = %self.name, node = %ctx.node, disk = %disk, size_bytes = size, current_uuid = %up.sb.gi.current, "up");
        self.state = State::Up(Box::new(up));
        let mut r = Response::ok(format!(
            "resource {} is up: disk {disk}, {} bytes",
            self.name, size
        ));
        r.warnings = warnings;
        let _ = reply.send(r);
    }

    /// `primary [--force]`.
    pub fn primary(&mut self, ctx: &Ctx, force: bool, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Response::err(
                Exit::Refused,
                format!("resource {name} is down: bring it up first (replicatorctl up {name})"),
            ));
            return;
        };
        if up.step.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        if up.role == Role::Primary {
            let _ = reply.send(Response::ok(format!("resource {name} is already Primary")));
            return;
        }
        let forced = match up.disk {
            DiskState::UpToDate => false,
            DiskState::Inconsistent | DiskState::Outdated | DiskState::Consistent if force => true,
            DiskState::Inconsistent | DiskState::Outdated | DiskState::Consistent => {
                let _ = reply.send(Response::err(Exit::Refused, format!(
                    "resource {name}: refusing to become Primary: the disk is {} (only UpToDate data may be Primary; 'replicatorctl primary --force {name}' declares this node's data good)",
                    up.disk
                )));
                return;
            }
            other => {
                let _ = reply.send(Response::err(
                    Exit::Refused,
                    format!("resource {name}: cannot become Primary with disk {other}"),
                ));
                return;
            }
        };
        let mut sb = up.sb;
        sb.gi = if uuids::needs_new_current(&sb.gi) {
            uuids::new_current(sb.gi, md::random_u64(), true)
        } else {
            uuids::with_primary_flag(sb.gi, true)
        };
        sb.flags = sb.flags.with(
            Flags::CONSISTENT | Flags::WAS_UP_TO_DATE | Flags::PRIMARY_IND,
            true,
        );
        sb.seq += 1;
        up.meta.push(Job {
            pages: Vec::new(),
            records: vec![sb_record(&up.layout, &sb)],
            done: vec![Done::Superblock(sb.seq)],
        });
        up.meta.kick(&name, ctx.events);
        up.step = Some(Step::Promoting { reply, sb, forced });
    }

    /// `secondary`.
    pub fn secondary(&mut self, ctx: &Ctx, reply: Reply) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Response::ok(format!("resource {name} is down (Secondary)")));
            return;
        };
        if up.step.is_some() {
            let _ = reply.send(busy(&name));
            return;
        }
        if up.role != Role::Primary {
            let _ = reply.send(Response::ok(format!(
                "resource {name} is already Secondary"
            )));
            return;
        }
        self.start_demote(ctx, Some(reply), false);
    }

    /// `down` (and daemon shutdown, with no reply): demote if Primary, then detach.
    pub fn down(&mut self, ctx: &Ctx, reply: Option<Reply>) {
        let name = self.name.clone();
        match &mut self.state {
            State::Down => {
                if let Some(r) = reply {
                    let _ = r.send(Response::ok(format!("resource {name} is already down")));
                }
            }
            State::Attaching(..) => {
                if let Some(r) = reply {
                    let _ = r.send(busy(&name));
                }
            }
            State::Up(up) => {
                if up.step.is_some() {
                    if let Some(r) = reply {
                        let _ = r.send(busy(&name));
                    }
                    return;
                }
                if up.role == Role::Primary {
                    self.start_demote(ctx, reply, true);
                } else {
                    self.start_detach(ctx, reply);
                }
            }
        }
    }

    fn start_demote(&mut self, ctx: &Ctx, reply: Option<Reply>, then_down: bool) {
        let name = self.name.clone();
        let up = self.up_mut().expect("demote of an up resource");
        info!(resource = %name, node = %ctx.node, "demoting: closing the export");
        if let Some(e) = &up.export {
            e.close();
        }
        up.step = Some(Step::Demoting {
            reply,
            then_down,
            stage: Demote::Draining,
        });
        self.advance_demote(ctx);
    }

    pub(super) fn advance_demote(&mut self, ctx: &Ctx) {
        let name = self.name.clone();
        let up = self.up_mut().expect("up");
        let Some(Step::Demoting {
            stage: Demote::Draining,
            ..
        }) = &up.step
        else {
            return;
        };
        if !(up.running.is_empty() && up.waiting.is_empty() && up.parked.is_empty()) {
            return;
        }
        if let Some(Step::Demoting { stage, .. }) = &mut up.step {
            *stage = Demote::Syncing;
        }
        let (data, events, flush) = (up.data.clone(), ctx.events.clone(), true);
        tokio::spawn(async move {
            let result = if flush { data.sync().await } else { Ok(()) };
            let _ = events
                .send(Event::Disk(Disk::Synced {
                    resource: name,
                    result,
                }))
                .await;
        });
    }

    /// The data file was flushed (demotion).
    pub fn synced(&mut self, ctx: &Ctx, result: io::Result<()>) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        if let Err(e) = result {
            error!(resource = %name, node = %ctx.node, error = %e, "flushing the data failed");
            up.disk = DiskState::Failed;
        }
        let mut sb = up.sb;
        sb.gi = uuids::with_primary_flag(sb.gi, false);
        sb.flags = sb.flags.with(Flags::PRIMARY_IND, false);
        sb.seq += 1;
        let pages = take_dirty_pages(up, usize::MAX);
        up.meta.push(Job {
            pages,
            records: vec![sb_record(&up.layout, &sb)],
            done: vec![Done::Superblock(sb.seq)],
        });
        up.meta.kick(&name, ctx.events);
        if let Some(Step::Demoting { stage, .. }) = &mut up.step {
            *stage = Demote::Writing(sb);
        }
    }

    fn start_detach(&mut self, ctx: &Ctx, reply: Option<Reply>) {
        let name = self.name.clone();
        let up = self.up_mut().expect("detach of an up resource");
        let mut sb = up.sb;
        sb.seq += 1;
        let pages = take_dirty_pages(up, usize::MAX);
        up.meta.push(Job {
            pages,
            records: vec![sb_record(&up.layout, &sb)],
            done: vec![Done::Superblock(sb.seq)],
        });
        up.meta.kick(&name, ctx.events);
        up.step = Some(Step::Detaching { reply, sb });
    }

    /// Whether a client asking for this export is served, or why not.
    pub fn lookup(&self, node: &str) -> Result<Arc<Export>, Refusal> {
        let name = &self.name;
        match &self.state {
            State::Up(up) => match (&up.export, up.role) {
                (Some(e), Role::Primary) if !e.is_closed() => Ok(e.clone()),
                (_, Role::Primary) => Err(Refusal::policy(format!(
                    "resource {name} is being demoted on node {node}; the export is only served while Primary"
                ))),
                _ => Err(Refusal::policy(format!(
                    "resource {name} is Secondary on node {node}; the export is only served while Primary (replicatorctl primary {name})"
                ))),
            },
            State::Attaching(..) => Err(Refusal::policy(format!(
                "resource {name} is coming up on node {node}; the export is only served while Primary"
            ))),
            State::Down => Err(Refusal::policy(format!(
                "resource {name} is down on node {node}; the export is only served while Primary (replicatorctl up {name}; replicatorctl primary {name})"
            ))),
        }
    }

    /// The export, when open.
    pub fn open_export(&self) -> Option<&Arc<Export>> {
        match &self.state {
            State::Up(up) if up.role == Role::Primary => {
                up.export.as_ref().filter(|e| !e.is_closed())
            }
            _ => None,
        }
    }

    /// Makes the export for a promoted resource.
    fn make_export(
        &self,
        events: &mpsc::Sender<Event>,
        data: FileBackend,
        node: &str,
    ) -> Arc<Export> {
        let backend = ReplicatedBackend::new(self.name.clone(), data, events.clone());
        let desc = format!("replicatord resource {} on node {node}", self.name);
        Export::with_description(self.export.name(), Some(desc), Arc::new(backend))
    }

    /// Completes a step whose superblock is now durable; returns whether the resource went down.
    pub(super) fn finish_steps(&mut self, ctx: &Ctx) -> bool {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else {
            return false;
        };
        let written = up.sb.seq;
        match up.step.take() {
            Some(Step::Promoting { reply, sb, forced }) if sb.seq == written => {
                let data = up.data.clone();
                let export = self.make_export(ctx.events, data, ctx.node);
                let up = self.up_mut().expect("up");
                up.export = Some(export);
                up.role = Role::Primary;
                up.disk = DiskState::UpToDate;
                if forced {
                    warn!(resource = %name, node = %ctx.node, "forced to consider the local data UpToDate");
                }
                info!(resource = %name, node = %ctx.node, current_uuid = %up.sb.gi.current, "Primary; export open");
                let _ = reply.send(Response::ok(format!("resource {name} is Primary")));
                false
            }
            Some(Step::Demoting {
                reply,
                then_down,
                stage: Demote::Writing(sb),
            }) if sb.seq == written => {
                up.role = Role::Secondary;
                up.export = None;
                info!(resource = %name, node = %ctx.node, "Secondary; export closed");
                if then_down {
                    self.start_detach(ctx, reply);
                } else if let Some(r) = reply {
                    let _ = r.send(Response::ok(format!("resource {name} is Secondary")));
                }
                false
            }
            Some(Step::Detaching { reply, sb }) if sb.seq == written => {
                info!(resource = %name, node = %ctx.node, "down");
                self.state = State::Down;
                if let Some(r) = reply {
                    let _ = r.send(Response::ok(format!("resource {name} is down")));
                }
                true
            }
            other => {
                up.step = other;
                false
            }
        }
    }
}

fn sb_record(layout: &Layout, sb: &Superblock) -> (u64, Vec<u8>) {
    (
        layout.sb_offsets[Superblock::slot_for_seq(sb.seq)],
        sb.encode().to_vec(),
    )
}

impl Up {
    /// A superblock of sequence `seq` was written (or failed).
    pub(super) fn superblock_written(
        &mut self,
        name: &str,
        ctx: &Ctx,
        seq: u64,
        result: &io::Result<()>,
    ) {
        let pending = match &self.step {
            Some(Step::Promoting { sb, .. })
            | Some(Step::Demoting {
                stage: Demote::Writing(sb),
                ..
            })
            | Some(Step::Detaching { sb, .. })
                if sb.seq == seq =>
            {
                *sb
            }
            _ => return,
        };
        if let Err(e) = result {
            let msg = format!("resource {name}: writing the superblock failed: {e}");
            error!(resource = %name, node = %ctx.node, "{msg}");
            match self.step.take() {
                Some(Step::Promoting { reply, .. }) => {
                    let _ = reply.send(Response::err(Exit::Failed, msg));
                }
                Some(Step::Demoting { reply: Some(r), .. })
                | Some(Step::Detaching { reply: Some(r), .. }) => {
                    // The state is unchanged on disk; report and stay as we are.
                    let _ = r.send(Response::err(Exit::Failed, msg));
                }
                _ => {}
            }
            return;
        }
        self.sb = pending;
    }
}

/// Runs a handler command line as DRBD does: `/bin/sh -c CMD`, with the resource in
/// `DRBD_RESOURCE`; logs how it ended.
pub(super) fn run_handler(resource: &str, which: &'static str, cmd: String) {
    let resource = resource.to_owned();
    tokio::spawn(async move {
        let status = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .env("DRBD_RESOURCE", &resource)
            .status()
            .await;
        match status {
            Ok(s) => info!(resource = %resource, handler = which, status = %s, "handler finished"),
            Err(e) => {
                error!(resource = %resource, handler = which, error = %e, "handler could not run")
            }
        }
    });
}

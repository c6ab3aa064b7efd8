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
//! The write path of a Primary: the activity log makes the touched 4 MiB extents hot (writing
//! a transaction first when one was not), the bitmap marks the blocks the peer will miss, the
//! data write runs on the file, and its completion releases the extents and answers the client.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::sync::Arc;

use replicator_core::bitmap::Bitmap;
use replicator_core::config::{Export as ExportAddr, Fencing, Host, Resource};
use replicator_core::meta::activity::extents_of;
use replicator_core::meta::superblock::Flags;
use replicator_core::meta::{
    AL_EXTENT_BYTES, ActivityLog, Begin, Layout, META_BLOCK, Superblock, bmpage,
};
use replicator_core::protocol::uuids;
use replicator_core::types::{ConnState, DiskState, Role};
use tandem_nbd::{Backend, Export, FileBackend, FileOptions, Refusal};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::backend::ReplicatedBackend;
use super::event::{DataOp, Disk, Event};
use super::meta_io::{Done, Job, MetaQueue};
use crate::control::Response;
use crate::exit::{Exit, Failure};
use crate::md;
use crate::status::{
    AlStatus, ExportStatus, GenerationStatus, IoStatus, PeerStatus, ResourceStatus,
};
use crate::volume::{Attached, pages_of};

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
type IoReply = oneshot::Sender<io::Result<()>>;

/// A data operation waiting to start.
#[derive(Debug)]
pub struct Pending {
    offset: u64,
    op: DataOp,
    reply: IoReply,
    extents: Option<(u32, u32)>,
    wait_seq: u64,
}

/// A data operation running on the file.
#[derive(Debug)]
struct Running {
    extents: Option<(u32, u32)>,
    len: u64,
    reply: IoReply,
}

/// A control transition in progress (one at a time per resource).
#[derive(Debug)]
enum Step {
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
enum Demote {
    Draining,
    Syncing,
    Writing(Superblock),
}

/// An attached volume and its state.
pub struct Up {
    data: FileBackend,
    layout: Layout,
    sb: Superblock,
    bitmap: Bitmap,
    dirty: BTreeSet<u32>,
    al: ActivityLog,
    al_enabled: bool,
    meta: MetaQueue,
    role: Role,
    disk: DiskState,
    conn: ConnState,
    export: Option<Arc<Export>>,
    next_id: u64,
    running: BTreeMap<u64, Running>,
    /// Operations that finished inline, to complete before the handler returns.
    completed: Vec<(u64, io::Result<()>)>,
    waiting: Vec<Pending>,
    parked: VecDeque<Pending>,
    step: Option<Step>,
    io: IoStatus,
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

fn err(e: i32) -> io::Error {
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

    fn up_mut(&mut self) -> Option<&mut Up> {
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

    fn advance_demote(&mut self, ctx: &Ctx) {
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

    /// A WRITE, TRIM or WRITE_ZEROES from the export.
    pub fn data(&mut self, ctx: &Ctx, offset: u64, op: DataOp, reply: IoReply) {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Err(err(libc::ESHUTDOWN)));
            return;
        };
        let accepting = up.role == Role::Primary
            && matches!(
                up.step,
                None | Some(Step::Demoting {
                    stage: Demote::Draining,
                    ..
                })
            );
        if !accepting {
            let _ = reply.send(Err(err(libc::EROFS)));
            return;
        }
        if up.disk == DiskState::Failed {
            let _ = reply.send(Err(io::Error::other(format!(
                "resource {name}: the disk failed"
            ))));
            return;
        }
        let extents = if up.al_enabled {
            extents_of(offset, op.len())
        } else {
            None
        };
        let p = Pending {
            offset,
            op,
            reply,
            extents,
            wait_seq: 0,
        };
        up.admit(&name, ctx, p, standalone);
        self.settle(ctx);
    }

    /// A FLUSH from the export.
    pub fn flush(&mut self, ctx: &Ctx, reply: IoReply) {
        let disk_flushes = self.host.disk_options.disk_flushes;
        let Some(up) = self.up_mut() else {
            let _ = reply.send(Err(err(libc::ESHUTDOWN)));
            return;
        };
        up.io.flushes += 1;
        let data = up.data.clone();
        let _ = ctx;
        tokio::spawn(async move {
            let r = if disk_flushes {
                data.sync().await
            } else {
                Ok(())
            };
            let _ = reply.send(r);
        });
    }

    /// A data operation finished on the file (in its own task).
    pub fn data_done(&mut self, ctx: &Ctx, id: u64, result: io::Result<()>) {
        self.complete(ctx, id, result);
        self.settle(ctx);
    }

    /// Completes the data operations that finished inline, until none is left (completing one
    /// may start parked ones, which may finish inline too).
    fn settle(&mut self, ctx: &Ctx) {
        loop {
            let Some(up) = self.up_mut() else { return };
            let Some((id, result)) = up.completed.pop() else {
                break;
            };
            self.complete(ctx, id, result);
        }
        self.advance_demote(ctx);
    }

    /// A data operation finished: release its extents, answer the client, admit parked writes.
    fn complete(&mut self, ctx: &Ctx, id: u64, result: io::Result<()>) {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let on_io_error_cmd = self.cfg.handlers.local_io_error.clone();
        let Some(up) = self.up_mut() else { return };
        let r = up
            .running
            .remove(&id)
            .expect("completion of a known data operation");
        if let Some((f, l)) = r.extents {
            up.al.end(f, l);
        }
        match &result {
            Ok(()) => {
                up.io.writes += 1;
                up.io.written_bytes += r.len;
            }
            Err(e) => {
                error!(resource = %name, node = %ctx.node, error = %e, "write to the backing file failed; detaching the disk (on-io-error)");
                up.disk = DiskState::Failed;
                if let Some(cmd) = on_io_error_cmd {
                    run_handler(&name, "local-io-error", cmd);
                }
            }
        }
        let _ = r.reply.send(result);
        // Writes that waited for a free activity-log slot.
        while let Some(p) = up.parked.pop_front() {
            let before = up.parked.len();
            up.admit(&name, ctx, p, standalone);
            if up.parked.len() > before {
                break;
            }
        }
    }

    /// A meta-data job finished; returns whether the resource went down with it.
    pub fn meta_done(&mut self, ctx: &Ctx, done: Vec<Done>, result: io::Result<()>) -> bool {
        let name = self.name.clone();
        let standalone = self.cfg.is_standalone();
        let Some(up) = self.up_mut() else {
            return false;
        };
        up.meta.completed();
        if let Err(e) = &result {
            error!(resource = %name, node = %ctx.node, error = %e, "meta-data write failed; the disk is Failed");
            up.disk = DiskState::Failed;
            for p in up.waiting.drain(..).chain(up.parked.drain(..)) {
                let _ = p
                    .reply
                    .send(Err(io::Error::other("meta-data write failed")));
            }
        }
        for d in done {
            match d {
                Done::Al(seq) if result.is_ok() => {
                    up.al.committed(seq);
                    up.io.al_transactions += 1;
                }
                Done::Al(_) | Done::Pages => {}
                Done::Superblock(seq) => up.superblock_written(&name, ctx, seq, &result),
            }
        }
        // Writes whose activity-log transactions are now durable.
        let durable = up.al.durable_seq();
        let (ready, still): (Vec<Pending>, Vec<Pending>) =
            up.waiting.drain(..).partition(|p| p.wait_seq <= durable);
        up.waiting = still;
        for p in ready {
            up.start(&name, ctx, p, standalone);
        }
        up.meta.kick(&name, ctx.events);
        self.settle(ctx);
        self.finish_steps(ctx)
    }

    /// The periodic tick: write back some dirty bitmap pages when idle.
    pub fn tick(&mut self, ctx: &Ctx) {
        let name = self.name.clone();
        let Some(up) = self.up_mut() else { return };
        if up.step.is_some() || !up.meta.idle() || up.dirty.is_empty() {
            return;
        }
        let pages = take_dirty_pages(up, WRITEBACK_PAGES_PER_TICK);
        up.meta.push(Job {
            pages,
            records: Vec::new(),
            done: vec![Done::Pages],
        });
        up.meta.kick(&name, ctx.events);
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

    /// The resource's status.
    pub fn status(&self, node: &str) -> ResourceStatus {
        let host_name = self.host.name();
        let peers_cfg: Vec<_> = self
            .cfg
            .connections_of(host_name)
            .filter_map(|c| c.ends(host_name).map(|(_, p)| (p.clone(), c.net.protocol)))
            .collect();
        let conn = match &self.state {
            State::Up(up) => up.conn,
            _ => ConnState::StandAlone,
        };
        let peers = peers_cfg
            .iter()
            .map(|(p, proto)| PeerStatus {
                node: p.host.clone(),
                node_id: p.node_id.0,
                address: p.address.to_string(),
                connection_state: conn.to_string(),
                role: Role::Unknown.to_string(),
                disk_state: DiskState::DUnknown.to_string(),
                protocol: proto.to_string(),
            })
            .collect();
        let refusal = self.lookup(node).err().map(|r| r.message);
        let export = ExportStatus {
            uri: self.export.uri(),
            open: refusal.is_none(),
            refusal,
        };
        let protocol = self
            .cfg
            .connections_of(host_name)
            .next()
            .map_or(self.cfg.net.protocol, |c| c.net.protocol)
            .to_string();
        let base = ResourceStatus {
            name: self.name.to_string(),
            node: node.to_owned(),
            node_id: self.host.node_id.0,
            up: false,
            role: Role::Secondary.to_string(),
            disk_state: DiskState::Diskless.to_string(),
            connection_state: conn.to_string(),
            export,
            size_bytes: 0,
            protocol,
            generation: None,
            out_of_sync_bytes: 0,
            activity_log: None,
            io: IoStatus::default(),
            peers,
        };
        match &self.state {
            State::Up(up) => ResourceStatus {
                up: true,
                role: up.role.to_string(),
                disk_state: up.disk.to_string(),
                size_bytes: up.layout.data_bytes,
                generation: Some(GenerationStatus {
                    current: up.sb.gi.current.to_string(),
                    bitmap: up.sb.gi.bitmap.to_string(),
                    history: up.sb.gi.history.iter().map(ToString::to_string).collect(),
                    flags: up.sb.flags.0,
                }),
                out_of_sync_bytes: up.bitmap.count() * META_BLOCK,
                activity_log: Some(AlStatus {
                    active_extents: u32::try_from(up.al.active().len()).expect("fits"),
                    al_extents: up.al.table_size(),
                    enabled: up.al_enabled,
                }),
                io: IoStatus {
                    in_flight: u64::try_from(up.running.len() + up.waiting.len() + up.parked.len())
                        .expect("fits"),
                    ..up.io.clone()
                },
                ..base
            },
            _ => base,
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
    fn finish_steps(&mut self, ctx: &Ctx) -> bool {
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

impl Up {
    /// Admits a data operation: makes its extents hot (or parks it when the log is full of
    /// busy extents), then starts it once its transaction is durable.
    fn admit(&mut self, name: &Arc<str>, ctx: &Ctx, mut p: Pending, standalone: bool) {
        let Some((first, last)) = p.extents else {
            self.start(name, ctx, p, standalone);
            return;
        };
        let Some(b) = self.al.begin(first, last) else {
            self.parked.push_back(p);
            return;
        };
        let Begin {
            transaction,
            evicted,
            wait_for_seq,
        } = b;
        if let Some(t) = transaction {
            // The bits of extents leaving the log must be on disk before the transaction.
            let mut pages = Vec::new();
            for e in evicted {
                let start = u64::from(e) * AL_EXTENT_BYTES;
                let len = AL_EXTENT_BYTES.min(self.layout.data_bytes.saturating_sub(start));
                if len == 0 {
                    continue;
                }
                for pg in pages_of(start, len) {
                    if self.dirty.remove(&pg) {
                        pages.push((
                            self.layout.bm_page_offset(pg),
                            bmpage::encode(&self.bitmap, pg, self.sb.md_uuid).to_vec(),
                        ));
                    }
                }
            }
            let rec = (
                self.layout
                    .al_slot_offset(t.ring_slot(self.layout.al_slots)),
                t.encode().to_vec(),
            );
            self.meta.push(Job {
                pages,
                records: vec![rec],
                done: vec![Done::Al(t.seq)],
            });
            self.meta.kick(name, ctx.events);
        }
        if wait_for_seq == 0 {
            self.start(name, ctx, p, standalone);
        } else {
            p.wait_seq = wait_for_seq;
            self.waiting.push(p);
        }
    }

    /// Starts a data operation on the file.
    fn start(&mut self, name: &Arc<str>, ctx: &Ctx, p: Pending, standalone: bool) {
        let len = p.op.len();
        // The peer misses this write until replication sends it: mark it out of sync.
        if !standalone && self.conn != ConnState::Connected && len > 0 {
            self.bitmap.set_range(p.offset, len);
            self.dirty.extend(pages_of(p.offset, len));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.running.insert(
            id,
            Running {
                extents: p.extents,
                len,
                reply: p.reply,
            },
        );
        let (data, offset) = (self.data.clone(), p.offset);
        let mut io = Box::pin(async move {
            match p.op {
                DataOp::Write { data: bytes, fua } => data.write_at(offset, bytes, fua).await,
                DataOp::Trim { len, fua } => data.trim(offset, len, fua).await,
                DataOp::Zero { len, flags } => data.write_zeroes(offset, len, flags).await,
            }
        });
        // Fast path: a buffered write the page cache takes at once (the file backend's
        // non-blocking RWF_NOWAIT attempt) completes on this first poll, without a task or an
        // event; anything that would block (FUA, trim, a write needing the blocking pool) is
        // still pending here and finishes in its own task, reporting back as an event.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match io.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => self.completed.push((id, result)),
            std::task::Poll::Pending => {
                let (events, resource) = (ctx.events.clone(), name.clone());
                tokio::spawn(async move {
                    let result = io.await;
                    let _ = events
                        .send(Event::Disk(Disk::DataDone {
                            resource,
                            id,
                            result,
                        }))
                        .await;
                });
            }
        }
    }

    /// A superblock of sequence `seq` was written (or failed).
    fn superblock_written(&mut self, name: &str, ctx: &Ctx, seq: u64, result: &io::Result<()>) {
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

fn sb_record(layout: &Layout, sb: &Superblock) -> (u64, Vec<u8>) {
    (
        layout.sb_offsets[Superblock::slot_for_seq(sb.seq)],
        sb.encode().to_vec(),
    )
}

/// Up to `max` dirty bitmap pages, encoded, removed from the dirty set.
fn take_dirty_pages(up: &mut Up, max: usize) -> Vec<(u64, Vec<u8>)> {
    let pages: Vec<u32> = up.dirty.iter().copied().take(max).collect();
    pages
        .into_iter()
        .map(|p| {
            up.dirty.remove(&p);
            (
                up.layout.bm_page_offset(p),
                bmpage::encode(&up.bitmap, p, up.sb.md_uuid).to_vec(),
            )
        })
        .collect()
}

/// Runs a handler command line as DRBD does: `/bin/sh -c CMD`, with the resource in
/// `DRBD_RESOURCE`; logs how it ended.
fn run_handler(resource: &str, which: &'static str, cmd: String) {
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

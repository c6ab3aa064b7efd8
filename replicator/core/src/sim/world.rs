//! The simulated world: two nodes, a link, an operator, clients and the oracle.

// The simulated device is 16 MiB: sector and block numbers always fit in usize.
#![allow(clippy::cast_possible_truncation)]

use super::disk::{self, Disk, SECTOR};
use super::rng::Rng;
use crate::bitmap::{BLOCK_SIZE, Bitmap};
use crate::protocol::handshake::SyncDirection;
use crate::protocol::verify::digest;
use crate::protocol::*;
use crate::types::{ConnState, DiskState, GenerationIds, NodeId, Protocol, Role};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Replication protocol; `None` picks one from the seed.
    pub protocol: Option<Protocol>,
    /// Operator/client actions in the chaos phase.
    pub actions: u64,
    /// Inject faults (crashes, cuts, corrupt frames, forced failovers).
    pub faults: bool,
    /// The `fencing` policy of both nodes; `None` picks one from the seed ([`fencing_of`]).
    pub fencing: Option<Fencing>,
}

/// The `fencing` policy a seed runs under when none is given: half the seeds `dont-care`
/// (DRBD's default), a quarter each `resource-only` and `resource-and-stonith`. CI's seeds per
/// protocol are `3k + salt`, so consecutive k cover every policy.
pub fn fencing_of(seed: u64) -> Fencing {
    match (seed / 3) % 4 {
        0 | 2 => Fencing::DontCare,
        1 => Fencing::ResourceOnly,
        _ => Fencing::ResourceAndStonith,
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            protocol: None,
            actions: 1000,
            faults: true,
            fencing: None,
        }
    }
}

/// What a run did (for the soak script's summary and to make sure runs are not vacuous).
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Protocol used.
    pub protocol: Option<Protocol>,
    /// Fencing policy used.
    pub fencing: Option<Fencing>,
    /// Client writes acknowledged.
    pub writes_acked: u64,
    /// Client reads checked against the oracle.
    pub reads_checked: u64,
    /// Client flushes acknowledged.
    pub flushes_acked: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Link cuts and resets.
    pub link_faults: u64,
    /// Frames corrupted on the wire (each must drop the connection).
    pub frames_corrupted: u64,
    /// Resyncs completed (as source).
    pub resyncs: u64,
    /// Forced promotions.
    pub forced_promotions: u64,
    /// Promotions without `--force` of a node cut off from its peer (`fencing dont-care`):
    /// each starts a data line of its own, and any divergence must be detected.
    pub unfenced_promotions: u64,
    /// Switchovers (demote + promote without force).
    pub switchovers: u64,
    /// Split brains detected and recovered by hand.
    pub split_brains: u64,
    /// Verify runs completed.
    pub verifies: u64,
    /// Simulated time at the end.
    pub sim_time: Duration,
}

const SIZE: u64 = 16 << 20;
const SECTORS: u64 = SIZE / SECTOR;
/// Events kept for the failure report (`TANDEM_SIM_TRACE` overrides).
const TRACE: usize = 60;

#[derive(Debug, Clone)]
enum DiskOp {
    Write {
        first: u64,
        tags: Vec<u64>,
        fua: bool,
    },
    Read {
        first: u64,
        n: u64,
    },
    Flush {
        sectors: Vec<u64>,
    },
    Digests {
        first_block: u64,
        blocks: u64,
        alg: crate::protocol::verify::VerifyAlg,
    },
}

#[derive(Debug, Clone)]
enum Ev {
    Disk {
        node: usize,
        inc: u64,
        io: IoId,
        op: DiskOp,
    },
    Deliver {
        to: usize,
        conn: ConnId,
        frame: Vec<u8>,
    },
    PeerDown {
        node: usize,
        conn: ConnId,
    },
    Connect,
    Restart {
        node: usize,
    },
}

#[derive(Debug, Clone)]
enum Req {
    Write {
        first: u64,
        n: u64,
        tag: u64,
        fua: bool,
        eligible: Option<(u64, u64)>,
    },
    Read {
        first: u64,
        n: u64,
        min: Vec<u64>,
    },
    /// Marks in the node's and (when in sync) the peer's must-journal.
    Flush {
        mark_self: u64,
        mark_peer: Option<(u64, u64, u64)>,
    },
}

#[derive(Debug, Clone)]
struct Meta {
    uuids: GenerationIds,
    flags: MdFlags,
    al: BTreeSet<u64>,
    bitmap: Bitmap,
}

struct Node {
    replica: Option<Replica>,
    inc: u64,
    disk: Disk,
    meta: Meta,
    mem_bitmap: Bitmap,
    reqs: BTreeMap<u64, Req>,
    busy: BTreeSet<u64>,
    must: Vec<u64>,
    must_durable: Vec<u64>,
    /// Every raise of `must`, in order, so that a flush can make durable exactly what was
    /// acknowledged before it was issued: entry k has index `journal_base + k`.
    journal: Vec<(u64, u64)>,
    journal_base: u64,
    era: usize,
    stop_clients: bool,
    down: bool,
    /// A promotion waits for the peer (`forced` as the oracle sees it).
    pending_promotion: Option<bool>,
    /// Writes this node acknowledged while not connected in sync with the peer (sector →
    /// newest such write): what the peer's data line lacks. A resync that makes this node
    /// its target would overwrite them, which is only allowed when the operator said so
    /// (`connect --discard-my-data`, `invalidate`). Cleared once the two data lines are one
    /// again (a resync finished, or both Connected and UpToDate); after a crash only the
    /// durable ones remain.
    solo: BTreeMap<u64, u64>,
    /// The operator discarded this node's data (`--discard-my-data` or `invalidate`) and the
    /// resync that carries that out has not finished.
    discarding: bool,
}

#[derive(Debug, Clone)]
struct Link {
    conn: ConnId,
    generation: u64,
    broken: bool,
    notified: [bool; 2],
    last: [Time; 2],
}

struct World {
    rng: Rng,
    seed: u64,
    protocol: Protocol,
    fencing: Fencing,
    now: Time,
    cfgs: [ReplicaConfig; 2],
    nodes: [Node; 2],
    queue: BTreeMap<(Time, u64), Ev>,
    qseq: u64,
    link: Option<Link>,
    link_generation: u64,
    connect_pending: bool,
    next_conn: u64,
    next_tag: u64,
    next_req: u64,
    eras: Vec<Vec<u64>>,
    trace: VecDeque<String>,
    report: SimReport,
    faults: bool,
    healing: bool,
    pending_switchover: Option<usize>,
    sb_victim: Option<usize>,
    trace_len: usize,
    watch: Option<u64>,
}

/// Runs one seed. Panics (with the seed and a trace) when a check fails.
pub fn run(seed: u64, opts: &SimOptions) -> SimReport {
    let mut w = World::new(seed, opts);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run(opts)));
    match outcome {
        Ok(()) => {
            if std::env::var_os("TANDEM_SIM_DUMP").is_some() {
                eprintln!(
                    "seed {seed} trace:\n  {}",
                    w.trace.iter().cloned().collect::<Vec<_>>().join("\n  ")
                );
            }
            w.report.clone()
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let trace: Vec<String> = w.trace.iter().cloned().collect();
            panic!(
                "simulation failed: seed {seed} (protocol {:?}, fencing {:?}) at {}: {msg}\nlast events:\n  {}\nreplay: TANDEM_SIM_SEED={seed} cargo nextest run -p replicator-core --test sim --no-capture",
                w.protocol,
                w.fencing,
                w.now,
                trace.join("\n  ")
            );
        }
    }
}

fn fresh_node() -> Node {
    Node {
        replica: None,
        inc: 0,
        disk: Disk::new(SECTORS),
        meta: Meta {
            uuids: GenerationIds::just_created(),
            flags: MdFlags::default(),
            al: BTreeSet::new(),
            bitmap: Bitmap::new(SIZE),
        },
        mem_bitmap: Bitmap::new(SIZE),
        reqs: BTreeMap::new(),
        busy: BTreeSet::new(),
        must: vec![0; SECTORS as usize],
        must_durable: vec![0; SECTORS as usize],
        journal: vec![],
        journal_base: 0,
        era: 0,
        stop_clients: false,
        down: false,
        pending_promotion: None,
        solo: BTreeMap::new(),
        discarding: false,
    }
}

impl Node {
    /// The node must hold `tag` (or newer) in sector `s` while it does not crash.
    fn raise(&mut self, s: u64, tag: u64) {
        self.must[s as usize] = tag;
        self.journal.push((s, tag));
    }

    fn journal_mark(&self) -> u64 {
        self.journal_base + self.journal.len() as u64
    }

    /// A flush issued at `mark` completed: what was owed before it is now durable.
    fn make_durable(&mut self, mark: u64) {
        if mark <= self.journal_base {
            return;
        }
        let upto = usize::try_from(mark - self.journal_base)
            .expect("mark")
            .min(self.journal.len());
        for (s, t) in self.journal.drain(..upto) {
            let d = &mut self.must_durable[s as usize];
            *d = (*d).max(t);
        }
        self.journal_base += upto as u64;
    }

    fn reset_journal(&mut self) {
        self.journal_base += self.journal.len() as u64;
        self.journal.clear();
    }
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn us(x: u64) -> Duration {
    Duration::from_micros(x)
}

impl World {
    fn new(seed: u64, opts: &SimOptions) -> World {
        let mut rng = Rng::new(seed);
        let protocol = opts
            .protocol
            .unwrap_or_else(|| [Protocol::A, Protocol::B, Protocol::C][rng.below(3) as usize]);
        let fencing = opts.fencing.unwrap_or_else(|| fencing_of(seed));
        let mk = |node: u8, rng: &mut Rng| {
            let mut c = ReplicaConfig::new(NodeId(node), NodeId(1 - node), SIZE, protocol);
            c.fencing = fencing;
            c.verify_alg = Some(if rng.chance(100) {
                crate::protocol::verify::VerifyAlg::Sha1
            } else {
                crate::protocol::verify::VerifyAlg::Crc32c
            });
            c.ping_int = ms(1000);
            c.ping_timeout = ms(500);
            c.al_extents = 3;
            c.rate.c_plan_ahead_ds = if rng.chance(500) { 0 } else { 20 };
            c.rate.resync_rate_kib_s = 200_000;
            c.rate.c_max_rate_kib_s = 200_000;
            c.rate.c_fill_target_sectors = 2048;
            c.limits.resync_window_bytes = 256 << 10;
            c.limits.resync_request_bytes = [4096, 32 << 10, 128 << 10][rng.below(3) as usize];
            c.limits.max_writes_in_flight = 8 + rng.below(24) as usize;
            c.limits.max_unsettled_writes = 16 + rng.below(64) as usize;
            c.limits.verify_window_blocks = 256;
            c
        };
        let c0 = mk(0, &mut rng);
        let c1 = mk(1, &mut rng);
        World {
            rng,
            seed,
            protocol,
            fencing,
            now: Time::ZERO,
            cfgs: [c0, c1],
            nodes: [fresh_node(), fresh_node()],
            queue: BTreeMap::new(),
            qseq: 0,
            link: None,
            link_generation: 0,
            connect_pending: false,
            next_conn: 0,
            next_tag: 0,
            next_req: 0,
            eras: vec![vec![0; SECTORS as usize]],
            trace: VecDeque::new(),
            report: SimReport {
                seed,
                protocol: Some(protocol),
                fencing: Some(fencing),
                ..Default::default()
            },
            faults: opts.faults,
            healing: false,
            pending_switchover: None,
            sb_victim: None,
            trace_len: std::env::var("TANDEM_SIM_TRACE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(TRACE),
            watch: std::env::var("TANDEM_SIM_WATCH")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    fn log(&mut self, s: String) {
        if self.trace.len() >= self.trace_len {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{} {s}", self.now));
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.qseq += 1;
        self.queue.insert((at, self.qseq), ev);
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some()
    }

    fn st(&self, i: usize) -> Option<Status> {
        self.nodes[i].replica.as_ref().map(|r| r.status())
    }

    fn run(&mut self, opts: &SimOptions) {
        // Set-up as an operator would: create-md and up on both, primary --force on node 0.
        for i in 0..2 {
            self.start_node(i);
        }
        self.admin(0, AdminCommand::Primary { force: true })
            .expect("first primary --force");
        self.report.forced_promotions = 0;
        self.eras.push(self.nodes[0].must.clone());
        self.nodes[0].era = 1;
        self.nodes[1].era = 1;
        for _ in 0..opts.actions {
            self.advance();
            self.action();
        }
        self.heal();
    }

    /// Processes everything due before the next action time.
    fn advance(&mut self) {
        let until = self.now + us(self.rng.range(0, 6000));
        loop {
            let next_q = self.queue.keys().next().map(|(t, _)| *t);
            let next_t = (0..2)
                .filter_map(|i| {
                    self.nodes[i]
                        .replica
                        .as_ref()
                        .and_then(|r| r.poll_timeout())
                })
                .min();
            let next = [next_q, next_t].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    if next_q == Some(t) {
                        let (k, ev) = self.queue.pop_first().expect("event");
                        let _ = k;
                        self.event(ev);
                    } else {
                        for i in 0..2 {
                            if self.nodes[i]
                                .replica
                                .as_ref()
                                .and_then(|r| r.poll_timeout())
                                .is_some_and(|x| x <= self.now)
                            {
                                let now = self.now;
                                self.nodes[i]
                                    .replica
                                    .as_mut()
                                    .expect("alive")
                                    .handle_timeout(now);
                                self.drive(i);
                            }
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.maybe_connect();
        self.global_checks();
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Disk { node, inc, io, op } => {
                if self.nodes[node].inc != inc || !self.alive(node) {
                    return;
                }
                if self.rng.chance(100) {
                    let pick = self.rng.next_u64();
                    self.nodes[node].disk.write_back_one(pick);
                }
                let now = self.now;
                let n = &mut self.nodes[node];
                let event = match op {
                    DiskOp::Write { first, tags, fua } => {
                        n.disk.write(first, &tags, fua);
                        Event::DiskWriteDone { io, result: Ok(()) }
                    }
                    DiskOp::Read { first, n: count } => Event::DiskReadDone {
                        io,
                        result: Ok(disk::encode(first, &n.disk.read(first, count))),
                    },
                    DiskOp::Flush { sectors } => {
                        n.disk.flush(&sectors);
                        Event::DiskFlushDone { io, result: Ok(()) }
                    }
                    DiskOp::Digests {
                        first_block,
                        blocks,
                        alg,
                    } => {
                        let spb = BLOCK_SIZE / SECTOR;
                        let d = (first_block..first_block + blocks)
                            .map(|b| {
                                digest(alg, &disk::encode(b * spb, &n.disk.read(b * spb, spb)))
                            })
                            .collect();
                        Event::DigestsDone { io, result: Ok(d) }
                    }
                };
                n.replica.as_mut().expect("alive").handle(now, event);
                self.drive(node);
            }
            Ev::Deliver { to, conn, frame } => {
                let ok = self
                    .link
                    .as_ref()
                    .is_some_and(|l| l.conn == conn && !l.broken && !l.notified[to]);
                if !ok || !self.alive(to) {
                    return;
                }
                match crate::wire::decode(&frame) {
                    Ok(Some((msg, used))) => {
                        assert_eq!(used, frame.len(), "one frame per delivery");
                        let now = self.now;
                        self.nodes[to]
                            .replica
                            .as_mut()
                            .expect("alive")
                            .handle(now, Event::PeerMessage { conn, msg });
                        self.drive(to);
                    }
                    Ok(None) => panic!("a whole frame decoded as incomplete"),
                    Err(e) => {
                        // The daemon drops the connection on a bad frame.
                        self.log(format!("n{to} bad frame: {e}"));
                        self.notify_down(to, conn, LinkLoss::BadFrame(e.to_string()));
                        self.close_end(to, conn);
                    }
                }
            }
            Ev::PeerDown { node, conn } => self.notify_down(
                node,
                conn,
                LinkLoss::Closed("connection closed by peer".into()),
            ),
            Ev::Connect => {
                self.connect_pending = false;
                let both = (0..2).all(|i| {
                    self.st(i)
                        .is_some_and(|s| s.conn == ConnState::WFConnection)
                });
                if both && self.link.is_none() {
                    self.next_conn += 1;
                    self.link_generation += 1;
                    let conn = ConnId(self.next_conn);
                    self.link = Some(Link {
                        conn,
                        generation: self.link_generation,
                        broken: false,
                        notified: [false; 2],
                        last: [self.now; 2],
                    });
                    self.log(format!("link {conn:?} up"));
                    for i in 0..2 {
                        let now = self.now;
                        self.nodes[i]
                            .replica
                            .as_mut()
                            .expect("alive")
                            .handle(now, Event::PeerConnected { conn });
                    }
                    self.drive(0);
                    self.drive(1);
                }
            }
            Ev::Restart { node } => {
                if !self.alive(node) {
                    self.start_node(node);
                }
            }
        }
    }

    fn notify_down(&mut self, node: usize, conn: ConnId, reason: LinkLoss) {
        let Some(l) = self.link.as_mut() else { return };
        if l.conn != conn || l.notified[node] {
            return;
        }
        l.notified[node] = true;
        if l.notified == [true, true] {
            self.link = None;
        }
        if self.alive(node) {
            let now = self.now;
            self.nodes[node]
                .replica
                .as_mut()
                .expect("alive")
                .handle(now, Event::PeerDisconnected { conn, reason });
            self.drive(node);
        }
    }

    /// Node `i` closed its end: the peer sees the close after what is already in flight, unless
    /// the link is silently cut.
    fn close_end(&mut self, i: usize, conn: ConnId) {
        let Some(l) = self.link.as_mut() else { return };
        if l.conn != conn {
            return;
        }
        l.notified[i] = true;
        let (broken, at) = (l.broken, l.last[i] + us(1));
        if l.notified == [true, true] {
            self.link = None;
        } else if !broken {
            let at = at.max(self.now + us(10));
            self.schedule(at, Ev::PeerDown { node: 1 - i, conn });
        }
    }

    fn maybe_connect(&mut self) {
        let both = (0..2).all(|i| {
            self.st(i)
                .is_some_and(|s| s.conn == ConnState::WFConnection)
        });
        if both && self.link.is_none() && !self.connect_pending {
            self.connect_pending = true;
            let at = self.now + ms(self.rng.range(1, 50));
            self.schedule(at, Ev::Connect);
        }
    }

    fn start_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.inc += 1;
        n.down = false;
        n.mem_bitmap = n.meta.bitmap.clone();
        let persisted = Persisted {
            uuids: n.meta.uuids,
            flags: n.meta.flags,
            bitmap: n.meta.bitmap.clone(),
            al: n.meta.al.iter().copied().collect(),
        };
        let seed = self
            .seed
            .wrapping_mul(31)
            .wrapping_add(n.inc * 2 + i as u64);
        n.replica = Some(Replica::new(
            self.cfgs[i].clone(),
            persisted,
            seed,
            self.now,
        ));
        self.log(format!("n{i} started (incarnation {})", self.nodes[i].inc));
        self.drive(i);
        let _ = self.admin(
            i,
            AdminCommand::Connect {
                discard_my_data: false,
            },
        );
    }

    fn crash(&mut self, i: usize) {
        self.report.crashes += 1;
        if let Some(w) = self.watch {
            let n = &self.nodes[i];
            let msg = format!(
                "n{i} WATCH at crash: visible {} durable {} must {} must_durable {}",
                n.disk.visible(w),
                n.disk.durable()[w as usize],
                n.must[w as usize],
                n.must_durable[w as usize]
            );
            self.log(msg);
        }
        self.log(format!("n{i} CRASH"));
        let n = &mut self.nodes[i];
        n.replica = None;
        n.down = true;
        n.pending_promotion = None;
        n.inc += 1;
        n.disk.crash();
        n.mem_bitmap = n.meta.bitmap.clone();
        n.reqs.clear();
        n.busy.clear();
        n.must = n.must_durable.clone();
        n.reset_journal();
        let durable = &n.must_durable;
        n.solo.retain(|s, t| durable[*s as usize] >= *t);
        if self.pending_switchover == Some(i) {
            self.pending_switchover = None;
        }
        if let Some(l) = self.link.clone() {
            let power_loss = self.rng.chance(500);
            let conn = l.conn;
            if let Some(l) = self.link.as_mut() {
                l.notified[i] = true;
                if l.notified == [true, true] {
                    self.link = None;
                } else if !power_loss && !l.broken {
                    let at = self.now + ms(self.rng.range(0, 5));
                    self.schedule(at, Ev::PeerDown { node: 1 - i, conn });
                }
            }
        }
        let at = self.now + ms(self.rng.range(20, 800));
        self.schedule(at, Ev::Restart { node: i });
    }

    fn admin(&mut self, i: usize, cmd: AdminCommand) -> Result<(), AdminError> {
        let now = self.now;
        let before = self.st(i).expect("admin on a live node");
        let r = self.nodes[i]
            .replica
            .as_mut()
            .expect("alive")
            .admin(now, cmd);
        self.log(format!("n{i} admin {cmd:?} -> {r:?}"));
        if let (Ok(done), AdminCommand::Primary { force }) = (&r, cmd)
            && before.role != Role::Primary
        {
            let forced = force || before.disk != DiskState::UpToDate;
            // Under dont-care a node can be promoted without --force while it cannot reach its
            // peer: it is not known to hold the newest data, so the oracle treats it as the
            // start of a data line of its own (checked: nothing acknowledged in sync is
            // missing, and any divergence is detected at the reconnect).
            let unfenced = !forced
                && self.fencing == Fencing::DontCare
                && matches!(before.conn, ConnState::StandAlone | ConnState::WFConnection);
            match done {
                AdminDone::Done if unfenced => self.promoted_unfenced(i),
                AdminDone::Done => self.promoted(i, forced),
                AdminDone::Pending => self.nodes[i].pending_promotion = Some(forced),
            }
        }
        if r.is_ok() {
            match cmd {
                AdminCommand::Connect {
                    discard_my_data: true,
                }
                | AdminCommand::Invalidate => self.nodes[i].discarding = true,
                _ => {}
            }
        }
        self.drive(i);
        r.map(|_| ())
    }

    /// The oracle's view of a promotion.
    fn promoted(&mut self, i: usize, forced: bool) {
        if forced {
            self.report.forced_promotions += 1;
            self.eras.push(self.nodes[i].must.clone());
            self.nodes[i].era = self.eras.len() - 1;
        } else {
            // Never stale without --force: the node must hold whatever any node of its data line
            // is known to hold (acknowledged writes, less what crashes legitimately lost: writes
            // neither flushed nor on a surviving peer). Raise what it must hold, and read the whole
            // device to check at once.
            let era = self.nodes[i].era;
            for j in 0..2 {
                if j != i && self.nodes[j].era == era {
                    for s in 0..SECTORS as usize {
                        let a = self.nodes[j].must[s];
                        if a > self.nodes[i].must[s] {
                            self.nodes[i].raise(s as u64, a);
                        }
                    }
                }
            }
            self.read_whole_device(i);
        }
    }

    /// The oracle's view of an unfenced promotion (see `admin`): a new data line, and the node
    /// must hold everything it was owed — under protocols B and C every write the old Primary
    /// acknowledged while this node was connected and in sync (so a failover after a Primary
    /// crash loses no acknowledged write), checked by reading the whole device at once.
    fn promoted_unfenced(&mut self, i: usize) {
        self.report.unfenced_promotions += 1;
        self.eras.push(self.nodes[i].must.clone());
        self.nodes[i].era = self.eras.len() - 1;
        self.read_whole_device(i);
    }

    /// Reads every sector of node `i` (two requests), checking each holds at least what the
    /// oracle says it must.
    fn read_whole_device(&mut self, i: usize) {
        let half = SECTORS / 2;
        for first in [0, half] {
            let min = self.nodes[i].must[first as usize..(first + half) as usize].to_vec();
            self.submit(
                i,
                Req::Read {
                    first,
                    n: half,
                    min,
                },
            );
        }
    }

    /// Node `i` becomes the target of a resync: it is about to lose what the peer lacks.
    /// Divergence must be detected (a split brain, StandAlone) unless the operator discarded
    /// this node's data.
    fn resync_target_starts(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.discarding {
            return;
        }
        if let Some((s, t)) = n.solo.iter().next() {
            panic!(
                "n{i} became SyncTarget while it holds write {t} (sector {s}) that it acknowledged while cut off from its peer, and nobody said --discard-my-data: a split brain was not detected and the resync overwrites acknowledged writes"
            );
        }
    }

    /// The two data lines are one again.
    fn lines_merged(&mut self) {
        for n in &mut self.nodes {
            n.solo.clear();
        }
    }

    /// Carries out node `i`'s outputs.
    fn drive(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].replica.as_mut().and_then(|r| r.poll_output()) {
            self.output(i, o);
        }
        if let Some(r) = &self.nodes[i].replica {
            assert_eq!(
                &self.nodes[i].mem_bitmap,
                r.bitmap(),
                "n{i}: the daemon's bitmap differs from the machine's"
            );
        }
    }

    fn disk_latency(&mut self) -> Duration {
        us(self.rng.range(5, 800))
    }

    fn output(&mut self, i: usize, o: Output) {
        let inc = self.nodes[i].inc;
        match o {
            Output::Send { conn, msg } => {
                let intact = self.link.as_ref().is_some_and(|l| {
                    l.conn == conn && !l.broken && !l.notified[0] && !l.notified[1]
                });
                if !intact {
                    return;
                }
                let mut frame = crate::wire::encode(&msg);
                if self.faults && !self.healing && self.rng.below(5000) == 0 {
                    let at = self.rng.below(frame.len() as u64) as usize;
                    frame[at] ^= 1 << self.rng.below(8);
                    self.report.frames_corrupted += 1;
                    self.log(format!("n{i} frame {} corrupted at byte {at}", msg.kind()));
                }
                let lat = us(self.rng.range(20, 400));
                let l = self.link.as_mut().expect("link");
                let at = l.last[i].max(self.now + lat);
                l.last[i] = at;
                self.schedule(
                    at,
                    Ev::Deliver {
                        to: 1 - i,
                        conn,
                        frame,
                    },
                );
            }
            Output::CloseConnection { conn, reason } => {
                self.log(format!("n{i} closes {conn:?}: {reason}"));
                self.close_end(i, conn);
            }
            Output::DiskWrite {
                io,
                offset,
                data,
                fua,
            } => {
                assert_eq!(offset % SECTOR, 0, "unaligned disk write");
                let op = DiskOp::Write {
                    first: offset / SECTOR,
                    tags: disk::decode(offset / SECTOR, &data),
                    fua,
                };
                if let (Some(w), DiskOp::Write { first, tags, .. }) = (self.watch, &op)
                    && (*first..*first + tags.len() as u64).contains(&w)
                {
                    let t = tags[(w - first) as usize];
                    self.log(format!("n{i} WATCH disk write {t} issued {io:?} fua {fua}"));
                }
                let at = self.now + self.disk_latency();
                self.schedule(
                    at,
                    Ev::Disk {
                        node: i,
                        inc,
                        io,
                        op,
                    },
                );
            }
            Output::DiskRead { io, offset, len } => {
                assert_eq!(
                    (offset % SECTOR, len % SECTOR),
                    (0, 0),
                    "unaligned disk read"
                );
                let at = self.now + self.disk_latency();
                self.schedule(
                    at,
                    Ev::Disk {
                        node: i,
                        inc,
                        io,
                        op: DiskOp::Read {
                            first: offset / SECTOR,
                            n: len / SECTOR,
                        },
                    },
                );
            }
            Output::DiskFlush { io } => {
                let sectors = self.nodes[i].disk.flush_set();
                let at = self.now + self.disk_latency() + self.disk_latency();
                self.schedule(
                    at,
                    Ev::Disk {
                        node: i,
                        inc,
                        io,
                        op: DiskOp::Flush { sectors },
                    },
                );
            }
            Output::ComputeDigests {
                io,
                first_block,
                blocks,
                alg,
            } => {
                let at = self.now + self.disk_latency();
                self.schedule(
                    at,
                    Ev::Disk {
                        node: i,
                        inc,
                        io,
                        op: DiskOp::Digests {
                            first_block,
                            blocks,
                            alg,
                        },
                    },
                );
            }
            Output::ClientDone { id, result } => self.client_done(i, id.0, result.map(|_| None)),
            Output::ClientReadDone { id, result } => self.client_done(i, id.0, result.map(Some)),
            Output::PersistUuids(u) => {
                let n = &mut self.nodes[i];
                n.meta.bitmap = n.mem_bitmap.clone();
                n.meta.uuids = u;
            }
            Output::PersistFlags(f) => {
                let n = &mut self.nodes[i];
                n.meta.bitmap = n.mem_bitmap.clone();
                n.meta.flags = f;
            }
            Output::AlUpdate { activate, evict } => {
                let n = &mut self.nodes[i];
                n.meta.bitmap = n.mem_bitmap.clone();
                for e in evict {
                    n.meta.al.remove(&e);
                }
                n.meta.al.extend(activate);
            }
            Output::MarkOutOfSync {
                first_block,
                blocks,
            } => {
                for b in first_block..first_block + blocks {
                    self.nodes[i].mem_bitmap.set(b);
                }
                self.lazy_bitmap(i);
            }
            Output::MarkInSync {
                first_block,
                blocks,
            } => {
                for b in first_block..first_block + blocks {
                    self.nodes[i].mem_bitmap.clear(b);
                }
                self.lazy_bitmap(i);
            }
            Output::CallHandler(h) => self.log(format!("n{i} handler {h:?}")),
            Output::AdminResult { cmd, result } => {
                self.log(format!("n{i} admin {cmd:?} finished: {result:?}"));
                let pending = self.nodes[i].pending_promotion.take();
                if let (Ok(()), Some(forced)) = (result, pending) {
                    self.promoted(i, forced);
                }
            }
            Output::Notice(n) => self.notice(i, n),
        }
    }

    fn lazy_bitmap(&mut self, i: usize) {
        if self.rng.chance(50) {
            let n = &mut self.nodes[i];
            n.meta.bitmap = n.mem_bitmap.clone();
        }
    }

    fn notice(&mut self, i: usize, n: Notice) {
        match &n {
            Notice::ResyncStarted {
                direction: SyncDirection::Target,
                ..
            } => self.resync_target_starts(i),
            Notice::ResyncFinished {
                direction: SyncDirection::Target,
                ..
            } => {
                // The target now holds the source's data line.
                let j = 1 - i;
                self.nodes[i].era = self.nodes[j].era;
                self.nodes[i].must = self.nodes[j].must.clone();
                self.nodes[i].must_durable = vec![0; SECTORS as usize];
                self.nodes[i].reset_journal();
                self.nodes[i].discarding = false;
                self.lines_merged();
            }
            Notice::ResyncFinished {
                direction: SyncDirection::Source,
                ..
            } => self.report.resyncs += 1,
            Notice::VerifyFinished {
                complete: true,
                mismatched,
                ..
            } => {
                assert_eq!(
                    *mismatched, 0,
                    "n{i}: online verify found blocks that differ between the replicas"
                );
                self.report.verifies += 1;
            }
            Notice::Refused(Refusal::SplitBrain { .. }) if i == 0 => self.report.split_brains += 1,
            _ => {}
        }
        if !matches!(n, Notice::Peer { .. }) {
            self.log(format!("n{i} {n:?}"));
        }
    }

    // ---- clients ----

    fn submit(&mut self, i: usize, req: Req) {
        self.next_req += 1;
        let id = ClientId(self.next_req);
        let ev = match &req {
            Req::Write {
                first, n, tag, fua, ..
            } => {
                for s in *first..first + n {
                    self.nodes[i].busy.insert(s);
                }
                Event::ClientWrite {
                    id,
                    offset: first * SECTOR,
                    data: disk::encode(*first, &vec![*tag; *n as usize]),
                    fua: *fua,
                }
            }
            Req::Read { first, n, .. } => Event::ClientRead {
                id,
                offset: first * SECTOR,
                len: n * SECTOR,
            },
            Req::Flush { .. } => Event::ClientFlush { id },
        };
        self.nodes[i].reqs.insert(id.0, req);
        let now = self.now;
        self.nodes[i]
            .replica
            .as_mut()
            .expect("alive")
            .handle(now, ev);
        self.drive(i);
    }

    /// Whether node `i`'s peer is connected, in sync and replicating now: (link generation,
    /// peer incarnation).
    fn in_sync_peer(&self, i: usize) -> Option<(u64, u64)> {
        let st = self.st(i)?;
        let l = self.link.as_ref()?;
        let intact = !l.broken && !l.notified[0] && !l.notified[1];
        let ok = intact
            && matches!(
                st.conn,
                ConnState::Connected | ConnState::VerifyS | ConnState::VerifyT
            )
            && st.peer_disk == DiskState::UpToDate
            && self.alive(1 - i);
        ok.then_some((l.generation, self.nodes[1 - i].inc))
    }

    fn still_in_sync(&self, i: usize, e: Option<(u64, u64)>) -> bool {
        let Some((generation, inc)) = e else {
            return false;
        };
        self.protocol != Protocol::A
            && self
                .in_sync_peer(i)
                .is_some_and(|(g, n)| g == generation && n == inc)
    }

    fn client_done(
        &mut self,
        i: usize,
        id: u64,
        result: Result<Option<bytes::Bytes>, ClientError>,
    ) {
        let Some(req) = self.nodes[i].reqs.remove(&id) else {
            return;
        };
        match (req, result) {
            (
                Req::Write {
                    first,
                    n,
                    tag,
                    fua,
                    eligible,
                },
                Ok(_),
            ) => {
                self.report.writes_acked += 1;
                if self.watch.is_some_and(|w| (first..first + n).contains(&w)) {
                    let peer_ok = self.still_in_sync(i, eligible);
                    self.log(format!(
                        "n{i} WATCH write {tag} acked (fua {fua}, peer guaranteed {peer_ok})"
                    ));
                }
                let peer_ok = self.still_in_sync(i, eligible);
                // As the node itself sees it: a write acknowledged while it believed it was
                // linked went to the peer (under A it is lost with this node's crash, as DRBD's
                // protocol A; if the link fails first, the node marks it and starts a new data
                // generation). One acknowledged while it knew it was alone is the peer's gap.
                let alone = self.st(i).is_some_and(|st| {
                    matches!(
                        st.conn,
                        ConnState::StandAlone | ConnState::WFConnection | ConnState::Disconnecting
                    )
                });
                if alone {
                    for s in first..first + n {
                        self.nodes[i].solo.insert(s, tag);
                    }
                }
                for s in first..first + n {
                    let s = s as usize;
                    self.nodes[i].busy.remove(&(s as u64));
                    self.nodes[i].raise(s as u64, tag);
                    if fua {
                        self.nodes[i].must_durable[s] = tag;
                    }
                    if peer_ok {
                        self.nodes[1 - i].raise(s as u64, tag);
                        if fua {
                            self.nodes[1 - i].must_durable[s] = tag;
                        }
                    }
                }
            }
            (Req::Write { first, n, .. }, Err(e)) => {
                assert!(
                    matches!(e, ClientError::NotPrimary | ClientError::Busy),
                    "n{i}: write failed: {e}"
                );
                for s in first..first + n {
                    self.nodes[i].busy.remove(&s);
                }
            }
            (Req::Read { first, n, min }, Ok(Some(data))) => {
                self.report.reads_checked += 1;
                let tags = disk::decode(first, &data);
                assert_eq!(tags.len() as u64, n, "read length");
                for (k, t) in tags.iter().enumerate() {
                    let s = first + k as u64;
                    assert!(
                        *t >= min[k],
                        "n{i}: read of sector {s} returned write {t}, but write {} was acknowledged (or was there when it became Primary): lost or stale data",
                        min[k]
                    );
                }
            }
            (Req::Read { .. }, Err(e)) => assert!(
                matches!(e, ClientError::NotPrimary),
                "n{i}: read failed: {e}"
            ),
            (
                Req::Flush {
                    mark_self,
                    mark_peer,
                },
                Ok(_),
            ) => {
                self.report.flushes_acked += 1;
                self.nodes[i].make_durable(mark_self);
                if let Some((mark, generation, inc)) = mark_peer
                    && self.still_in_sync(i, Some((generation, inc)))
                {
                    self.nodes[1 - i].make_durable(mark);
                }
                if let Some(w) = self.watch {
                    let msg = format!(
                        "n{i} WATCH flush acked: must_durable n0 {} n1 {}",
                        self.nodes[0].must_durable[w as usize],
                        self.nodes[1].must_durable[w as usize]
                    );
                    self.log(msg);
                }
            }
            (Req::Flush { .. }, Err(e)) => assert!(
                matches!(e, ClientError::NotPrimary),
                "n{i}: flush failed: {e}"
            ),
            (Req::Read { .. }, Ok(None)) => unreachable!("read without data"),
        }
    }

    fn workload(&mut self, i: usize) {
        if self.nodes[i].stop_clients || !self.st(i).is_some_and(|s| s.role == Role::Primary) {
            return;
        }
        let credit = self.nodes[i]
            .replica
            .as_ref()
            .expect("alive")
            .write_credit();
        let roll = self.rng.below(100);
        if roll < 65 {
            let n = if self.rng.chance(300) {
                self.rng.range(1, 7)
            } else {
                8 * self.rng.range(1, 8)
            };
            let hot = self.rng.chance(700);
            let span = if hot { SECTORS / 64 } else { SECTORS };
            let base = if hot && self.rng.chance(500) {
                SECTORS / 2
            } else {
                0
            };
            let first = (base + self.rng.below(span - n)) & !if n % 8 == 0 { 7 } else { 0 };
            if credit.writes == 0
                || credit.bytes < n * SECTOR
                || (first..first + n).any(|s| self.nodes[i].busy.contains(&s))
            {
                return;
            }
            self.next_tag += 1;
            let fua = self.rng.chance(80);
            let eligible = self.in_sync_peer(i);
            self.submit(
                i,
                Req::Write {
                    first,
                    n,
                    tag: self.next_tag,
                    fua,
                    eligible,
                },
            );
        } else if roll < 90 {
            let n = self.rng.range(1, 64);
            let first = self.rng.below(SECTORS - n);
            let min = self.nodes[i].must[first as usize..(first + n) as usize].to_vec();
            self.submit(i, Req::Read { first, n, min });
        } else {
            let mark_self = self.nodes[i].journal_mark();
            let mark_peer = self
                .in_sync_peer(i)
                .map(|(g, inc)| (self.nodes[1 - i].journal_mark(), g, inc));
            self.submit(
                i,
                Req::Flush {
                    mark_self,
                    mark_peer,
                },
            );
        }
    }

    // ---- the operator ----

    fn action(&mut self) {
        for i in 0..2 {
            if self.alive(i) {
                for _ in 0..self.rng.range(0, 3) {
                    self.workload(i);
                }
            }
        }
        self.operator_chores();
        if !self.faults || self.healing {
            return;
        }
        match self.rng.below(1000) {
            0..=1 => {
                let i = self.rng.below(2) as usize;
                if self.alive(i) && (self.alive(1 - i) || self.rng.chance(200)) {
                    self.crash(i);
                }
            }
            3..=4 => {
                if let Some(l) = self.link.as_mut() {
                    self.report.link_faults += 1;
                    if self.rng.chance(500) {
                        l.broken = true;
                        self.log("link silently cut".into());
                    } else {
                        let conn = l.conn;
                        self.log("link reset".into());
                        for i in 0..2 {
                            let at = self.now + us(self.rng.range(0, 2000));
                            self.schedule(at, Ev::PeerDown { node: i, conn });
                        }
                    }
                }
            }
            8..=9 => {
                let i = self.rng.below(2) as usize;
                if self.alive(i) {
                    let _ = self.admin(i, AdminCommand::Disconnect);
                }
            }
            11..=30 => self.try_switchover(),
            31..=130 => {
                // Failover: no node serves (the Primary crashed or was demoted); promote a
                // survivor: without --force if its data is UpToDate, else with it.
                let serving = (0..2).any(|j| self.st(j).is_some_and(|s| s.role == Role::Primary));
                if !serving {
                    let order = if self.rng.chance(500) { [0, 1] } else { [1, 0] };
                    for i in order {
                        let ok = self.st(i).is_some_and(|s| {
                            s.disk != DiskState::Inconsistent
                                && !matches!(
                                    s.conn,
                                    ConnState::SyncTarget
                                        | ConnState::WFBitMapT
                                        | ConnState::WFReportParams
                                )
                        });
                        if ok {
                            let force = self.st(i).is_some_and(|s| s.disk != DiskState::UpToDate);
                            self.nodes[i].stop_clients = false;
                            if self.admin(i, AdminCommand::Primary { force }).is_ok() {
                                break;
                            }
                        }
                    }
                }
            }
            131..=133 => {
                // An operator promotes a node cut off from a live Primary: a split brain.
                for i in 0..2 {
                    let cut_off = self.st(i).is_some_and(|s| {
                        s.role == Role::Secondary
                            && s.peer_role == Role::Unknown
                            && s.disk != DiskState::Inconsistent
                            && s.conn == ConnState::WFConnection
                    });
                    if cut_off && self.st(1 - i).is_some_and(|s| s.role == Role::Primary) {
                        // Under dont-care the cut-off node is still UpToDate: no --force
                        // needed, which is how DRBD 8.4's split brains start.
                        let force = self.st(i).is_some_and(|s| s.disk != DiskState::UpToDate);
                        let _ = self.admin(i, AdminCommand::Primary { force });
                        break;
                    }
                }
            }
            134..=143 => {
                let i = self.rng.below(2) as usize;
                if self.st(i).is_some_and(|s| {
                    s.conn == ConnState::Connected
                        && s.disk == DiskState::UpToDate
                        && s.peer_disk == DiskState::UpToDate
                }) {
                    let _ = self.admin(i, AdminCommand::Verify);
                }
            }
            144..=145 => {
                let i = self.rng.below(2) as usize;
                if self
                    .st(i)
                    .is_some_and(|s| s.role == Role::Secondary && s.conn == ConnState::Connected)
                {
                    let _ = self.admin(i, AdminCommand::Invalidate);
                }
            }
            _ => {}
        }
    }

    fn try_switchover(&mut self) {
        if self.pending_switchover.is_some() {
            return;
        }
        for i in 0..2 {
            let ok = self.st(i).is_some_and(|s| {
                s.role == Role::Primary
                    && s.conn == ConnState::Connected
                    && s.peer_disk == DiskState::UpToDate
            });
            if ok {
                self.pending_switchover = Some(i);
                self.nodes[i].stop_clients = true;
                return;
            }
        }
    }

    /// What an operator keeps doing: reconnect what was disconnected, finish switchovers,
    /// recover split brains, demote a Primary that would have to become SyncTarget.
    fn operator_chores(&mut self) {
        if let Some(i) = self.pending_switchover {
            if !self.alive(i) || self.st(i).is_some_and(|s| s.role != Role::Primary) {
                self.pending_switchover = None;
                self.nodes[i].stop_clients = false;
            } else if self.nodes[i].reqs.is_empty() {
                self.pending_switchover = None;
                self.nodes[i].stop_clients = false;
                if self.admin(i, AdminCommand::Secondary).is_ok() {
                    let j = 1 - i;
                    if self.alive(j)
                        && self
                            .admin(j, AdminCommand::Primary { force: false })
                            .is_ok()
                    {
                        self.report.switchovers += 1;
                    }
                }
            }
        }
        for i in 0..2 {
            let Some(st) = self.st(i) else { continue };
            if st.conn != ConnState::StandAlone {
                continue;
            }
            match st.refusal {
                None => {
                    if self.rng.chance(if self.healing { 1000 } else { 100 }) {
                        let _ = self.admin(
                            i,
                            AdminCommand::Connect {
                                discard_my_data: false,
                            },
                        );
                    }
                }
                Some(Refusal::SplitBrain { .. }) => self.recover_split_brain(),
                Some(Refusal::PrimaryWouldBeSyncTarget)
                | Some(Refusal::ByPeer(_))
                | Some(Refusal::InconsistentSource)
                | Some(Refusal::TwoPrimaries) => {
                    // The data of this node lost: demote it if Primary, then reconnect.
                    if st.role == Role::Primary {
                        self.nodes[i].stop_clients = true;
                        if !self.nodes[i].reqs.is_empty() {
                            continue;
                        }
                        if self.admin(i, AdminCommand::Secondary).is_err() {
                            continue;
                        }
                        self.nodes[i].stop_clients = false;
                    }
                    if self.rng.chance(300) || self.healing {
                        let _ = self.admin(
                            i,
                            AdminCommand::Connect {
                                discard_my_data: false,
                            },
                        );
                    }
                }
                Some(other) => panic!("n{i} refused the peer: {other}"),
            }
        }
    }

    /// The thesis's manual recovery: the victim demotes and connects with --discard-my-data;
    /// the survivor connects.
    fn recover_split_brain(&mut self) {
        if !(self.alive(0) && self.alive(1)) {
            return;
        }
        let victim = *self
            .sb_victim
            .get_or_insert_with(|| self.rng.below(2) as usize);
        let survivor = 1 - victim;
        let vs = self.st(victim).expect("alive");
        if vs.role == Role::Primary {
            self.nodes[victim].stop_clients = true;
            if !self.nodes[victim].reqs.is_empty()
                || self.admin(victim, AdminCommand::Secondary).is_err()
            {
                return;
            }
            self.nodes[victim].stop_clients = false;
        }
        for (node, discard) in [(victim, true), (survivor, false)] {
            if self
                .st(node)
                .is_some_and(|s| s.conn != ConnState::StandAlone)
            {
                let _ = self.admin(node, AdminCommand::Disconnect);
            }
            let _ = self.admin(
                node,
                AdminCommand::Connect {
                    discard_my_data: discard,
                },
            );
        }
        self.sb_victim = None;
    }

    fn global_checks(&mut self) {
        if let (Some(a), Some(b)) = (self.st(0), self.st(1)) {
            let synced = |s: &Status| {
                matches!(
                    s.conn,
                    ConnState::Connected | ConnState::VerifyS | ConnState::VerifyT
                ) && s.disk == DiskState::UpToDate
            };
            if synced(&a) && synced(&b) {
                assert_eq!(
                    self.nodes[0].era, self.nodes[1].era,
                    "nodes Connected and UpToDate on different data lines (eras)"
                );
                self.lines_merged();
            }
            assert!(
                !(a.role == Role::Primary
                    && b.role == Role::Primary
                    && a.peer_role == Role::Primary),
                "two Primaries connected"
            );
        }
    }

    // ---- the end ----

    fn heal(&mut self) {
        self.healing = true;
        self.log("HEAL".into());
        let deadline = self.now + Duration::from_secs(900);
        let mut stopped = false;
        loop {
            assert!(
                self.now < deadline,
                "did not converge within 900 s of simulated time after the faults stopped: {:?} / {:?}\n n0: {}\n n1: {}",
                self.st(0),
                self.st(1),
                self.nodes[0]
                    .replica
                    .as_ref()
                    .map(|r| r.debug_in_flight())
                    .unwrap_or_default(),
                self.nodes[1]
                    .replica
                    .as_ref()
                    .map(|r| r.debug_in_flight())
                    .unwrap_or_default(),
            );
            for i in 0..2 {
                if !self.alive(i)
                    && !self
                        .queue
                        .values()
                        .any(|e| matches!(e, Ev::Restart { node } if *node == i))
                {
                    self.start_node(i);
                }
            }
            if self.st(0).is_some_and(|s| s.role == Role::Secondary)
                && self.st(1).is_some_and(|s| s.role == Role::Secondary)
            {
                // Someone has to serve: the node with UpToDate data, or force the better one.
                let rank = |d: DiskState| crate::protocol::handshake::disk_rank(d);
                let best = (0..2)
                    .max_by_key(|i| self.st(*i).map_or(0, |s| rank(s.disk)))
                    .expect("two nodes");
                let st = self.st(best).expect("alive");
                let force = st.disk != DiskState::UpToDate;
                if !force
                    || !matches!(
                        st.conn,
                        ConnState::SyncTarget
                            | ConnState::WFBitMapT
                            | ConnState::WFReportParams
                            | ConnState::WFBitMapS
                    )
                {
                    let _ = self.admin(best, AdminCommand::Primary { force });
                }
            }
            let converged = (0..2).all(|i| {
                self.st(i).is_some_and(|s| {
                    s.conn == ConnState::Connected
                        && s.disk == DiskState::UpToDate
                        && s.peer_disk == DiskState::UpToDate
                })
            });
            if converged && !stopped {
                stopped = true;
                self.nodes[0].stop_clients = true;
                self.nodes[1].stop_clients = true;
            }
            let idle = stopped
                && converged
                && (0..2).all(|i| {
                    self.nodes[i].reqs.is_empty()
                        && self.nodes[i]
                            .replica
                            .as_ref()
                            .is_some_and(|r| r.is_quiescent())
                })
                && !self.queue.values().any(|e| matches!(e, Ev::Disk { .. }));
            if idle {
                break;
            }
            if !converged {
                stopped = false;
                self.nodes[0].stop_clients = false;
                self.nodes[1].stop_clients = false;
            }
            self.advance();
            self.action();
        }
        let img = [self.nodes[0].disk.image(), self.nodes[1].disk.image()];
        if let Some(s) = (0..SECTORS as usize).find(|s| img[0][*s] != img[1][*s]) {
            panic!(
                "after resync the disks differ: sector {s} holds write {} on n0 and {} on n1",
                img[0][s], img[1][s]
            );
        }
        for (i, image) in img.iter().enumerate() {
            for (s, (held, must)) in image.iter().zip(&self.nodes[i].must).enumerate() {
                assert!(
                    held >= must,
                    "n{i} lost write {must} in sector {s} (holds {held})"
                );
            }
            let st = self.st(i).expect("alive");
            assert_eq!(
                st.out_of_sync_blocks, 0,
                "n{i} still has out-of-sync blocks"
            );
        }
        self.report.sim_time = Duration::from_nanos(self.now.as_nanos());
    }
}

//! The replication link of one resource: a listener at this node's `.res` address, dialling
//! the peer's, and the reader and writer tasks of the one connection in use.
//!
//! ```text
//!   listener task ──accept──► preamble (5 s) ──Peer::Offered──►┐
//!   dial task ──connect, preamble, verdict──Peer::Dialed──────►├─► loop: PeerLink decides
//!                                                              │   (wire::preamble rules),
//!   reader task ──frames──► Peer::Message / Peer::Closed ─────►┘   hands the Replica
//!   writer task ◄── Message (unbounded, byte-counted) ◄───────────  PeerConnected / Message
//! ```
//!
//! Either node dials while its machine is `WFConnection`; exactly one connection survives a
//! crossing because the node with the lower id arbitrates (see `replicator_core::wire::preamble`).
//! Dials are one at a time, spaced by a bounded exponential back-off (from
//! [`DIAL_BACKOFF_MIN`] up to `connect-int`) with jitter from a seeded generator, so two nodes
//! never storm each other. Frames are encoded by the writer task (the loop only hands it the
//! message, whose data buffer is shared, and the frame goes out with one vectored write per
//! batch — the data is never copied in user space), decoded by the reader task into slices of
//! its read buffer: untrusted bytes become typed messages there, once; a bad frame closes the
//! connection.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use replicator_core::protocol::{ConnId, LinkLoss};
use replicator_core::types::NodeId;
use replicator_core::wire::preamble::{
    OfferContext, PREAMBLE_BYTES, Preamble, VERDICT_BYTES, Verdict, decide_offer, decode_verdict,
    encode_verdict,
};
use replicator_core::wire::shared::{FrameParts, decode_shared, encode_parts};
use replicator_core::wire::{self, HEADER_BYTES, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::event::{Event, Peer};

/// First delay between dial attempts; doubled after each failure up to `connect-int`.
pub const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How long a new connection has to present its preamble, or a dial to get its verdict.
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Accepted connections still presenting their preamble at once; more are closed at accept
/// (a misbehaving client cannot tie up the daemon with half-open connections).
pub const MAX_PENDING_ACCEPTS: usize = 4;
/// Bytes queued for the writer task. The replication machine bounds what it sends (unsettled
/// writes 256 MiB, resync window 8 MiB, verify window, acknowledgements of the peer's bounded
/// writes), so this is reached only if the socket stops draining while those bounds are larger
/// than the machine's defaults; at the bound the connection is dropped as a lost link (the
/// machine then marks what was in flight out of sync).
pub const MAX_SEND_QUEUE_BYTES: u64 = 768 << 20;
/// Read buffer of a connection's reader.
const READ_BUFFER: usize = 256 << 10;
/// Frames the writer gathers into one vectored write.
const WRITE_BATCH: usize = 64;

/// The connection in use.
struct Conn {
    id: ConnId,
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<AtomicU64>,
    reader: AbortHandle,
    since: Instant,
}

/// A dial in progress.
struct Dial {
    attempt: u64,
    task: AbortHandle,
}

/// Counters of the link (since the resource came up).
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCounters {
    /// Connections established.
    pub connections: u64,
    /// Dial attempts.
    pub dials: u64,
    /// Frame bytes handed to writers.
    pub frame_bytes_sent: u64,
}

/// The link of one two-node resource.
pub struct PeerLink {
    resource: Arc<str>,
    me: NodeId,
    peer: NodeId,
    peer_name: String,
    local: SocketAddr,
    remote: SocketAddr,
    connect_int: Duration,
    connect_timeout: Duration,
    sndbuf: u32,
    rcvbuf: u32,
    listener: Option<AbortHandle>,
    listen_generation: u64,
    listen_error: Option<String>,
    listen_retry: Option<Instant>,
    dial: Option<Dial>,
    next_attempt: u64,
    next_dial: Instant,
    backoff: Duration,
    /// Jitter generator (SplitMix64), seeded once at start-up.
    rng: u64,
    conn: Option<Conn>,
    next_conn: u64,
    failures_logged: bool,
    /// Counters.
    pub counters: LinkCounters,
}

/// What the loop must do after a link event.
#[derive(Debug)]
pub enum LinkAction {
    /// Nothing for the machine.
    None,
    /// A connection is in use: tell the machine `PeerConnected`.
    Connected(ConnId),
    /// The connection in use ended: tell the machine `PeerDisconnected`.
    Lost(ConnId, LinkLoss),
}

/// Settings of a link from the configuration.
pub struct LinkConfig {
    /// Resource name.
    pub resource: Arc<str>,
    /// This node's id.
    pub me: NodeId,
    /// The peer's id.
    pub peer: NodeId,
    /// The peer's name.
    pub peer_name: String,
    /// This node's address (listen; source of dials).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// `connect-int`: the longest pause between dial attempts.
    pub connect_int: Duration,
    /// `timeout`: how long a dial may take.
    pub connect_timeout: Duration,
    /// `sndbuf-size` (0: kernel default).
    pub sndbuf: u32,
    /// `rcvbuf-size` (0: kernel default).
    pub rcvbuf: u32,
    /// Jitter seed.
    pub seed: u64,
}

impl PeerLink {
    /// A link that is not listening or dialling yet.
    pub fn new(c: LinkConfig) -> Self {
        PeerLink {
            resource: c.resource,
            me: c.me,
            peer: c.peer,
            peer_name: c.peer_name,
            local: c.local,
            remote: c.remote,
            connect_int: c.connect_int.max(DIAL_BACKOFF_MIN),
            connect_timeout: c.connect_timeout.max(Duration::from_millis(500)),
            sndbuf: c.sndbuf,
            rcvbuf: c.rcvbuf,
            listener: None,
            listen_generation: 0,
            listen_error: None,
            listen_retry: None,
            dial: None,
            next_attempt: 0,
            next_dial: Instant::now(),
            backoff: DIAL_BACKOFF_MIN,
            rng: c.seed,
            conn: None,
            next_conn: 0,
            failures_logged: false,
            counters: LinkCounters::default(),
        }
    }

    /// The peer's name.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// This node's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Why the listener is not bound, if it is not.
    pub fn listen_error(&self) -> Option<&str> {
        self.listen_error.as_deref()
    }

    /// The connection in use.
    pub fn conn(&self) -> Option<ConnId> {
        self.conn.as_ref().map(|c| c.id)
    }

    /// Bytes waiting in the writer's queue.
    pub fn send_queue_bytes(&self) -> u64 {
        self.conn
            .as_ref()
            .map_or(0, |c| c.queued.load(Ordering::Relaxed))
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let half = d / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(z % nanos)
    }

    fn schedule_retry(&mut self) {
        let d = self.jitter(self.backoff);
        self.next_dial = Instant::now() + d;
        self.backoff = (self.backoff * 2).min(self.connect_int);
    }

    /// Starts listening (idempotent).
    pub fn listen(&mut self, events: &mpsc::Sender<Event>) {
        if self.listener.is_some() {
            return;
        }
        self.listen_generation += 1;
        let generation = self.listen_generation;
        let (resource, local, events) = (self.resource.clone(), self.local, events.clone());
        let task = tokio::spawn(accept_loop(resource, local, generation, events));
        self.listener = Some(task.abort_handle());
        self.listen_retry = None;
    }

    /// The listener failed to bind: retry after `connect-int`.
    pub fn listen_failed(&mut self, generation: u64, error: String) {
        if generation != self.listen_generation {
            return;
        }
        if self.listen_error.as_deref() != Some(error.as_str()) {
            warn!(resource = %self.resource, address = %self.local, error = %error, "cannot listen for the peer; retrying every connect-int");
        }
        self.listener = None;
        self.listen_error = Some(error);
        self.listen_retry = Some(Instant::now() + self.connect_int);
    }

    /// Stops everything: listener, dial, connection (on `down`).
    pub fn stop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.listen_retry = None;
        if let Some(d) = self.dial.take() {
            d.task.abort();
        }
        if let Some(c) = self.conn.take() {
            drop(c.tx);
            c.reader.abort();
        }
    }

    /// Timer work: retry the listener, dial when `wanting` (the machine is WFConnection) and
    /// nothing is in use or in progress.
    pub fn poll(&mut self, wanting: bool, events: &mpsc::Sender<Event>) {
        let now = Instant::now();
        if self.listener.is_none() && self.listen_retry.is_some_and(|t| t <= now) {
            self.listen(events);
        }
        if !wanting || self.conn.is_some() || self.dial.is_some() || now < self.next_dial {
            return;
        }
        self.next_attempt += 1;
        self.counters.dials += 1;
        let attempt = self.next_attempt;
        let pre = Preamble {
            resource: self.resource.to_string(),
            from: self.me,
            to: self.peer,
        }
        .encode()
        .expect("resource names are checked at up");
        let (resource, events) = (self.resource.clone(), events.clone());
        let (local, remote, timeout) = (self.local.ip(), self.remote, self.connect_timeout);
        let (sndbuf, rcvbuf) = (self.sndbuf, self.rcvbuf);
        let task = tokio::spawn(async move {
            let result = dial(local, remote, pre, timeout, sndbuf, rcvbuf).await;
            let _ = events
                .send(Event::Peer(Peer::Dialed {
                    resource,
                    attempt,
                    result,
                }))
                .await;
        });
        self.dial = Some(Dial {
            attempt,
            task: task.abort_handle(),
        });
    }

    /// When [`Self::poll`] next has work.
    pub fn deadline(&self, wanting: bool) -> Option<Instant> {
        let dial =
            (wanting && self.conn.is_none() && self.dial.is_none()).then_some(self.next_dial);
        match (dial, self.listen_retry.filter(|_| self.listener.is_none())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A connection presented its preamble. `wanting`: the machine is WFConnection.
    pub fn offered(
        &mut self,
        stream: TcpStream,
        p: Preamble,
        from: SocketAddr,
        wanting: bool,
        events: &mpsc::Sender<Event>,
    ) -> LinkAction {
        let ctx = OfferContext {
            me: self.me,
            peer: self.peer,
            resource_matches: *p.resource == *self.resource,
            wanting,
            connected: self.conn.is_some(),
            dialling: self.dial.is_some(),
        };
        let (verdict, drop_own_dial) = decide_offer(&ctx, &p);
        match verdict {
            Verdict::UnknownResource => {
                warn!(resource = %self.resource, from = %from, asked = %p.resource, "connection for another resource on this address; refused")
            }
            Verdict::WrongNode => {
                warn!(resource = %self.resource, from = %from, peer_says_it_is = p.from.0, peer_expects = p.to.0, "connection with node ids that do not match the configuration (node-id {} expected from {}, this node is {}); refused", self.peer.0, self.peer_name, self.me.0)
            }
            Verdict::Busy | Verdict::Accepted => {}
        }
        if drop_own_dial && let Some(d) = self.dial.take() {
            // The lower node id arbitrates a crossing: the peer's dial wins, ours is dropped.
            d.task.abort();
        }
        if verdict != Verdict::Accepted {
            debug!(resource = %self.resource, from = %from, verdict = %verdict, "offered connection refused");
            tokio::spawn(async move {
                let mut s = stream;
                let _ = tokio::time::timeout(PREAMBLE_TIMEOUT, async {
                    let _ = s.write_all(&encode_verdict(verdict)).await;
                    let _ = s.shutdown().await;
                })
                .await;
            });
            return LinkAction::None;
        }
        self.use_stream(
            stream,
            Some(encode_verdict(Verdict::Accepted)),
            events,
            from,
        )
    }

    /// A dial finished.
    pub fn dialed(
        &mut self,
        attempt: u64,
        result: Result<(TcpStream, Verdict), String>,
        wanting: bool,
        events: &mpsc::Sender<Event>,
    ) -> LinkAction {
        if self.dial.as_ref().is_none_or(|d| d.attempt != attempt) {
            return LinkAction::None; // abandoned: the peer's connection won
        }
        self.dial = None;
        match result {
            Ok((stream, Verdict::Accepted)) if wanting && self.conn.is_none() => {
                let to = self.remote;
                self.use_stream(stream, None, events, to)
            }
            Ok((_, Verdict::Accepted)) => LinkAction::None,
            Ok((_, v)) => {
                match v {
                    Verdict::Busy => {
                        debug!(resource = %self.resource, peer = %self.peer_name, "peer busy; retrying")
                    }
                    other => {
                        warn!(resource = %self.resource, peer = %self.peer_name, address = %self.remote, "peer refused the connection: {other}")
                    }
                }
                self.schedule_retry();
                LinkAction::None
            }
            Err(e) => {
                if !self.failures_logged {
                    info!(resource = %self.resource, peer = %self.peer_name, address = %self.remote, error = %e, "cannot reach the peer; retrying with back-off (up to connect-int)");
                    self.failures_logged = true;
                } else {
                    debug!(resource = %self.resource, peer = %self.peer_name, error = %e, "dial failed");
                }
                self.schedule_retry();
                LinkAction::None
            }
        }
    }

    fn use_stream(
        &mut self,
        stream: TcpStream,
        first: Option<[u8; VERDICT_BYTES]>,
        events: &mpsc::Sender<Event>,
        addr: SocketAddr,
    ) -> LinkAction {
        let _ = stream.set_nodelay(true);
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_loop(rd, id, self.resource.clone(), events.clone()));
        tokio::spawn(write_loop(
            wr,
            rx,
            first,
            queued.clone(),
            id,
            self.resource.clone(),
            events.clone(),
        ));
        self.conn = Some(Conn {
            id,
            tx,
            queued,
            reader: reader.abort_handle(),
            since: Instant::now(),
        });
        self.backoff = DIAL_BACKOFF_MIN;
        self.failures_logged = false;
        self.counters.connections += 1;
        info!(resource = %self.resource, peer = %self.peer_name, address = %addr, conn = id.0, "connection to the peer established");
        LinkAction::Connected(id)
    }

    /// Queues `msg` on connection `conn` (dropped if that connection is gone). Returns the
    /// connection to drop when the send queue is over its bound.
    pub fn send(&mut self, conn: ConnId, msg: Message) -> LinkAction {
        let Some(c) = self.conn.as_ref().filter(|c| c.id == conn) else {
            return LinkAction::None;
        };
        let bytes = approx_frame_bytes(&msg);
        self.counters.frame_bytes_sent += bytes;
        let q = c.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if q > MAX_SEND_QUEUE_BYTES {
            warn!(resource = %self.resource, peer = %self.peer_name, queued_bytes = q, "send queue over its bound; dropping the connection");
            self.close(conn);
            return LinkAction::Lost(
                conn,
                LinkLoss::Closed("send queue over its bound (the peer stopped reading)".into()),
            );
        }
        if c.tx.send(msg).is_err() {
            // The writer ended; its Closed event is on its way.
        }
        LinkAction::None
    }

    /// Closes `conn` after what was queued is written (a `Refuse` reaches the peer).
    pub fn close(&mut self, conn: ConnId) {
        if self.conn.as_ref().is_some_and(|c| c.id == conn) {
            let c = self.conn.take().expect("checked");
            drop(c.tx);
            c.reader.abort();
            debug!(resource = %self.resource, conn = conn.0, up_for = ?c.since.elapsed(), "connection closed");
            // A link that was in use may come back at once (a renegotiation after `primary
            // --force` or `invalidate`, a peer restart): the first retry is immediate, the
            // following ones back off.
            self.next_dial = Instant::now();
            self.backoff = DIAL_BACKOFF_MIN;
        }
    }

    /// The reader or writer of `conn` ended.
    pub fn closed(&mut self, conn: ConnId, reason: LinkLoss) -> LinkAction {
        if self.conn.as_ref().is_none_or(|c| c.id != conn) {
            return LinkAction::None;
        }
        self.close(conn);
        LinkAction::Lost(conn, reason)
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Roughly what a message costs on the wire (its data plus a header), for the send-queue bound.
fn approx_frame_bytes(msg: &Message) -> u64 {
    let data = match msg {
        Message::Data { data, .. } | Message::RsData { data, .. } => data.len(),
        Message::BitmapPart { runs, .. } => runs.len() * 16,
        Message::VerifyRequest { digests, .. } => digests.len() * 24,
        _ => 0,
    };
    (data + HEADER_BYTES + 48) as u64
}

async fn dial(
    local: IpAddr,
    remote: SocketAddr,
    pre: [u8; PREAMBLE_BYTES],
    timeout: Duration,
    sndbuf: u32,
    rcvbuf: u32,
) -> Result<(TcpStream, Verdict), String> {
    let sock = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    set_buffers(&sock, sndbuf, rcvbuf);
    // Dial from this node's configured address, so the peer sees the address it expects.
    sock.bind(SocketAddr::new(local, 0))
        .map_err(|e| format!("bind {local}: {e}"))?;
    let mut s = tokio::time::timeout(timeout, sock.connect(remote))
        .await
        .map_err(|_| format!("connect to {remote} timed out after {timeout:?}"))?
        .map_err(|e| format!("connect to {remote}: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut v = [0u8; VERDICT_BYTES];
    tokio::time::timeout(PREAMBLE_TIMEOUT, async {
        s.write_all(&pre).await?;
        s.read_exact(&mut v).await.map(|_| ())
    })
    .await
    .map_err(|_| format!("{remote} sent no verdict within {PREAMBLE_TIMEOUT:?}"))?
    .map_err(|e| format!("preamble exchange with {remote}: {e}"))?;
    let verdict = decode_verdict(&v).map_err(|e| format!("{remote}: {e}"))?;
    Ok((s, verdict))
}

fn set_buffers(sock: &TcpSocket, sndbuf: u32, rcvbuf: u32) {
    if sndbuf > 0 {
        let _ = sock.set_send_buffer_size(sndbuf);
    }
    if rcvbuf > 0 {
        let _ = sock.set_recv_buffer_size(rcvbuf);
    }
}

async fn accept_loop(
    resource: Arc<str>,
    local: SocketAddr,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let bound = (|| {
        let sock = if local.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        sock.set_reuseaddr(true)?;
        sock.bind(local)?;
        sock.listen(16)
    })();
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = events
                .send(Event::Peer(Peer::ListenFailed {
                    resource,
                    generation,
                    error: format!("cannot listen on {local}: {e}"),
                }))
                .await;
            return;
        }
    };
    info!(resource = %resource, address = %local, "listening for the peer");
    let pending = Arc::new(Semaphore::new(MAX_PENDING_ACCEPTS));
    loop {
        let (mut s, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(resource = %resource, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            debug!(resource = %resource, from = %from, "too many connections presenting preambles; closed");
            continue;
        };
        let (resource, events) = (resource.clone(), events.clone());
        tokio::spawn(async move {
            let mut b = [0u8; PREAMBLE_BYTES];
            let read = tokio::time::timeout(PREAMBLE_TIMEOUT, s.read_exact(&mut b)).await;
            drop(permit);
            match read {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(resource = %resource, from = %from, error = %e, "connection closed before its preamble");
                    return;
                }
                Err(_) => {
                    warn!(resource = %resource, from = %from, "no preamble within {PREAMBLE_TIMEOUT:?}; closed");
                    return;
                }
            }
            match Preamble::decode(&b) {
                Ok(preamble) => {
                    let _ = events
                        .send(Event::Peer(Peer::Offered {
                            resource,
                            stream: s,
                            preamble,
                            from,
                        }))
                        .await;
                }
                Err(e) => {
                    warn!(resource = %resource, from = %from, error = %e, "not a replicatord peer; closed")
                }
            }
        });
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut BytesMut, n: usize) -> Result<(), LinkLoss> {
    while buf.len() < n {
        if buf.capacity() == buf.len() {
            buf.reserve((n - buf.len()).max(READ_BUFFER));
        }
        match rd.read_buf(buf).await {
            Ok(0) => {
                return Err(LinkLoss::Closed(
                    "the peer closed the connection".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(LinkLoss::Closed(format!("receive: {e}"))),
        }
    }
    Ok(())
}

/// Reads frames into one growing buffer; each frame is split off it, so the data of a `Data`
/// or `RsData` message is a slice of what was read (no copy, no zeroed allocation per frame).
async fn read_loop(
    mut rd: OwnedReadHalf,
    conn: ConnId,
    resource: Arc<str>,
    events: mpsc::Sender<Event>,
) {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let reason = loop {
        if let Err(r) = fill(&mut rd, &mut buf, HEADER_BYTES).await {
            break r;
        }
        let h: [u8; HEADER_BYTES] = buf[..HEADER_BYTES].try_into().expect("filled");
        let header = match wire::decode_header(&h) {
            Ok(h) => h,
            Err(e) => break LinkLoss::BadFrame(e.to_string()),
        };
        let total = HEADER_BYTES + header.payload_len;
        if buf.capacity() < total {
            buf.reserve(total - buf.len());
        }
        if let Err(r) = fill(&mut rd, &mut buf, total).await {
            break r;
        }
        let frame = buf.split_to(total).freeze();
        let msg = match decode_shared(&header, frame.slice(HEADER_BYTES..)) {
            Ok(m) => m,
            Err(e) => break LinkLoss::BadFrame(e.to_string()),
        };
        let ev = Event::Peer(Peer::Message {
            resource: resource.clone(),
            conn,
            msg,
        });
        if events.send(ev).await.is_err() {
            return;
        }
    };
    let _ = events
        .send(Event::Peer(Peer::Closed {
            resource,
            conn,
            reason,
        }))
        .await;
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Message>,
    first: Option<[u8; VERDICT_BYTES]>,
    queued: Arc<AtomicU64>,
    conn: ConnId,
    resource: Arc<str>,
    events: mpsc::Sender<Event>,
) {
    let result: std::io::Result<()> = async {
        if let Some(v) = first {
            wr.write_all(&v).await?;
        }
        let mut batch: Vec<FrameParts> = Vec::with_capacity(WRITE_BATCH);
        while let Some(msg) = rx.recv().await {
            let mut accounted = approx_frame_bytes(&msg);
            batch.push(encode_parts(&msg));
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(m) => {
                        accounted += approx_frame_bytes(&m);
                        batch.push(encode_parts(&m));
                    }
                    Err(_) => break,
                }
            }
            let pieces: Vec<&[u8]> = batch
                .iter()
                .flat_map(|p| [&p.head[..], p.data.as_deref().unwrap_or(&[]), &p.tail[..]])
                .filter(|b| !b.is_empty())
                .collect();
            write_all_vectored(&mut wr, &pieces).await?;
            batch.clear();
            queued.fetch_sub(accounted, Ordering::Relaxed);
        }
        // The loop closed the connection: what was queued is written; say goodbye.
        wr.shutdown().await
    }
    .await;
    if let Err(e) = result {
        let _ = events
            .send(Event::Peer(Peer::Closed {
                resource,
                conn,
                reason: LinkLoss::Closed(format!("send: {e}")),
            }))
            .await;
    }
}

/// Most pieces handed to one `writev` (IOV_MAX is 1024).
const MAX_IOV: usize = 256;

async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &[&[u8]]) -> std::io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    while i < bufs.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&bufs[i][off..]))
            .chain(bufs[i + 1..].iter().map(|b| IoSlice::new(b)))
            .take(MAX_IOV)
            .collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && i < bufs.len() {
            let rest = bufs[i].len() - off;
            if n >= rest {
                n -= rest;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

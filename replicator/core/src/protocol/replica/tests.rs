//! Exact-output tests of the state machine: the ack rule of each protocol, flushes, UUID
//! updates, refusals, and a small in-memory pair for handshakes that resync.
#![allow(clippy::cast_possible_truncation)] // test sizes are small constants

use super::*;
use crate::bitmap::BLOCK_SIZE;
use crate::protocol::Fencing;
use crate::protocol::handshake::SyncDirection;
use crate::types::{NodeId, Protocol, Uuid};
use crate::wire::Message;

const SIZE: u64 = 64 * BLOCK_SIZE * 16; // 4 MiB: 1024 blocks, one AL extent
const T0: Time = Time::ZERO;

fn cfg(node: u8, protocol: Protocol) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(NodeId(node), NodeId(1 - node), SIZE, protocol);
    c.verify_alg = Some(crate::protocol::verify::VerifyAlg::Crc32c);
    c.rate.c_plan_ahead_ds = 0;
    c.rate.resync_rate_kib_s = 1 << 20;
    c
}

fn ids(c: u64, b: u64) -> GenerationIds {
    GenerationIds {
        current: Uuid(c),
        bitmap: Uuid(b),
        history: [Uuid::NONE; 2],
    }
}

fn persisted(uuids: GenerationIds, consistent: bool) -> Persisted {
    Persisted {
        uuids,
        flags: MdFlags {
            consistent,
            ..Default::default()
        },
        bitmap: Bitmap::new(SIZE),
        al: vec![],
    }
}

fn drain(r: &mut Replica) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// Only what goes to the peer.
fn sent(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| {
            if let Output::Send { msg, .. } = o {
                Some(msg.clone())
            } else {
                None
            }
        })
        .collect()
}

/// Delivers every message in `out` to `to` on connection `conn`.
fn deliver(to: &mut Replica, conn: ConnId, out: &[Output]) {
    for m in sent(out) {
        to.handle(T0, Event::PeerMessage { conn, msg: m });
    }
}

/// Two nodes, connected and in sync, node 0 Primary; outputs drained.
fn connected_pair(protocol: Protocol) -> (Replica, Replica) {
    connected_pair_fencing(protocol, Fencing::DontCare)
}

/// The same under a `fencing` policy.
fn connected_pair_fencing(protocol: Protocol, fencing: Fencing) -> (Replica, Replica) {
    let mk = |node| ReplicaConfig {
        fencing,
        ..cfg(node, protocol)
    };
    let mut a = Replica::new(mk(0), persisted(ids(0xA0, 0), true), 1, T0);
    let mut b = Replica::new(mk(1), persisted(ids(0xA0, 0), true), 2, T0);
    a.admin(
        T0,
        AdminCommand::Connect {
            discard_my_data: false,
        },
    )
    .unwrap();
    b.admin(
        T0,
        AdminCommand::Connect {
            discard_my_data: false,
        },
    )
    .unwrap();
    a.handle(T0, Event::PeerConnected { conn: ConnId(1) });
    b.handle(T0, Event::PeerConnected { conn: ConnId(1) });
    let oa = drain(&mut a);
    let ob = drain(&mut b);
    deliver(&mut b, ConnId(1), &oa);
    deliver(&mut a, ConnId(1), &ob);
    assert_eq!(
        (a.status().conn, a.status().disk, a.status().peer_disk),
        (
            ConnState::Connected,
            DiskState::UpToDate,
            DiskState::UpToDate
        )
    );
    assert_eq!(
        (b.status().conn, b.status().disk),
        (ConnState::Connected, DiskState::UpToDate)
    );
    let oa = drain(&mut a);
    deliver(&mut b, ConnId(1), &oa);
    let ob = drain(&mut b);
    deliver(&mut a, ConnId(1), &ob);
    drain(&mut a);
    // While connected, promotion is a cluster-wide state change: the peer must agree.
    assert_eq!(
        a.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Pending)
    );
    let oa = drain(&mut a);
    assert_eq!(sent(&oa), vec![Message::PromoteRequest]);
    deliver(&mut b, ConnId(1), &oa);
    let ob = drain(&mut b);
    assert_eq!(sent(&ob), vec![Message::PromoteReply { ok: true }]);
    assert_eq!(b.status().peer_role, Role::Primary);
    deliver(&mut a, ConnId(1), &ob);
    let oa = drain(&mut a);
    assert!(oa.contains(&Output::AdminResult {
        cmd: AdminCommand::Primary { force: false },
        result: Ok(())
    }));
    assert_eq!(a.status().role, Role::Primary);
    deliver(&mut b, ConnId(1), &oa);
    drain(&mut b);
    (a, b)
}

fn write(r: &mut Replica, id: u64, offset: u64, len: usize, fua: bool) -> Vec<Output> {
    r.handle(
        T0,
        Event::ClientWrite {
            id: ClientId(id),
            offset,
            data: Bytes::from(vec![id as u8; len]),
            fua,
        },
    );
    drain(r)
}

fn io_of(out: &[Output]) -> IoId {
    out.iter()
        .find_map(|o| match o {
            Output::DiskWrite { io, .. }
            | Output::DiskFlush { io }
            | Output::DiskRead { io, .. } => Some(*io),
            _ => None,
        })
        .expect("an I/O output")
}

fn done(id: u64) -> Output {
    Output::ClientDone {
        id: ClientId(id),
        result: Ok(()),
    }
}

#[test]
fn protocol_c_acks_after_local_and_peer_disk() {
    let (mut p, _s) = connected_pair(Protocol::C);
    let out = write(&mut p, 7, 4096, 4096, false);
    let io = io_of(&out);
    assert_eq!(
        out,
        vec![
            Output::AlUpdate {
                activate: vec![0],
                evict: vec![]
            },
            Output::DiskWrite {
                io,
                offset: 4096,
                data: Bytes::from(vec![7u8; 4096]),
                fua: false
            },
            Output::Send {
                conn: ConnId(1),
                msg: Message::Data {
                    seq: 1,
                    offset: 4096,
                    data: Bytes::from(vec![7u8; 4096]),
                    fua: false
                }
            },
        ]
    );
    p.handle(T0, Event::DiskWriteDone { io, result: Ok(()) });
    assert_eq!(
        drain(&mut p),
        vec![],
        "local completion alone does not ack under C"
    );
    // RecvAck means nothing under C.
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::RecvAck { seq: 1 },
        },
    );
    assert_eq!(drain(&mut p), vec![]);
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::WriteAck { seq: 1 },
        },
    );
    assert_eq!(drain(&mut p), vec![done(7)]);
}

#[test]
fn protocol_c_peer_ack_before_local_completion() {
    let (mut p, _s) = connected_pair(Protocol::C);
    let out = write(&mut p, 1, 0, 4096, false);
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::WriteAck { seq: 1 },
        },
    );
    assert_eq!(drain(&mut p), vec![]);
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    assert_eq!(drain(&mut p), vec![done(1)]);
}

#[test]
fn protocol_b_acks_on_receipt_but_fua_waits_for_the_peer_disk() {
    let (mut p, _s) = connected_pair(Protocol::B);
    let out = write(&mut p, 1, 0, 4096, false);
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    assert_eq!(drain(&mut p), vec![]);
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::RecvAck { seq: 1 },
        },
    );
    assert_eq!(drain(&mut p), vec![done(1)]);
    let out = write(&mut p, 2, 8192, 4096, true);
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::RecvAck { seq: 2 },
        },
    );
    assert_eq!(
        drain(&mut p),
        vec![],
        "FUA under B waits for the peer's disk"
    );
    p.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::WriteAck { seq: 2 },
        },
    );
    assert_eq!(drain(&mut p), vec![done(2)]);
}

#[test]
fn protocol_a_acks_on_local_completion() {
    let (mut p, _s) = connected_pair(Protocol::A);
    let out = write(&mut p, 1, 0, 4096, false);
    assert!(matches!(sent(&out)[..], [Message::Data { seq: 1, .. }]));
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    assert_eq!(drain(&mut p), vec![done(1)]);
}

#[test]
fn secondary_acks_per_protocol() {
    for (protocol, fua, before, after) in [
        (Protocol::A, false, vec![], vec![]),
        (
            Protocol::B,
            false,
            vec![Message::RecvAck { seq: 5 }],
            vec![],
        ),
        (
            Protocol::B,
            true,
            vec![Message::RecvAck { seq: 5 }],
            vec![Message::WriteAck { seq: 5 }],
        ),
        (
            Protocol::C,
            false,
            vec![],
            vec![Message::WriteAck { seq: 5 }],
        ),
        (
            Protocol::A,
            true,
            vec![],
            vec![Message::WriteAck { seq: 5 }],
        ),
    ] {
        let (_p, mut s) = connected_pair(protocol);
        s.handle(
            T0,
            Event::PeerMessage {
                conn: ConnId(1),
                msg: Message::Data {
                    seq: 5,
                    offset: 0,
                    data: Bytes::from_static(&[1; 512]),
                    fua,
                },
            },
        );
        let out = drain(&mut s);
        let io = io_of(&out);
        assert!(out.contains(&Output::DiskWrite {
            io,
            offset: 0,
            data: Bytes::from_static(&[1; 512]),
            fua
        }));
        assert_eq!(sent(&out), before, "{protocol} fua={fua}");
        s.handle(T0, Event::DiskWriteDone { io, result: Ok(()) });
        assert_eq!(sent(&drain(&mut s)), after, "{protocol} fua={fua}");
    }
}

#[test]
fn flush_keeps_its_promise_on_both_nodes_under_b_and_c() {
    for protocol in [Protocol::A, Protocol::B, Protocol::C] {
        let (mut p, mut s) = connected_pair(protocol);
        p.handle(T0, Event::ClientFlush { id: ClientId(9) });
        let out = drain(&mut p);
        let io = io_of(&out);
        assert_eq!(
            out,
            vec![
                Output::DiskFlush { io },
                Output::Send {
                    conn: ConnId(1),
                    msg: Message::Barrier { seq: 1 }
                }
            ]
        );
        p.handle(T0, Event::DiskFlushDone { io, result: Ok(()) });
        let after_local = drain(&mut p);
        if protocol == Protocol::A {
            assert_eq!(after_local, vec![done(9)]);
            continue;
        }
        assert_eq!(after_local, vec![]);
        // The secondary flushes, then acknowledges.
        deliver(&mut s, ConnId(1), &out);
        let so = drain(&mut s);
        let sio = io_of(&so);
        assert_eq!(so, vec![Output::DiskFlush { io: sio }]);
        s.handle(
            T0,
            Event::DiskFlushDone {
                io: sio,
                result: Ok(()),
            },
        );
        let so = drain(&mut s);
        assert_eq!(sent(&so), vec![Message::BarrierAck { seq: 1 }]);
        deliver(&mut p, ConnId(1), &so);
        assert_eq!(drain(&mut p), vec![done(9)], "{protocol}");
    }
}

#[test]
fn secondary_barrier_waits_for_earlier_writes() {
    let (_p, mut s) = connected_pair(Protocol::B);
    s.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::Data {
                seq: 1,
                offset: 0,
                data: Bytes::from_static(&[1; 512]),
                fua: false,
            },
        },
    );
    let io = io_of(&drain(&mut s));
    s.handle(
        T0,
        Event::PeerMessage {
            conn: ConnId(1),
            msg: Message::Barrier { seq: 2 },
        },
    );
    assert_eq!(drain(&mut s), vec![], "no flush before the write is done");
    s.handle(T0, Event::DiskWriteDone { io, result: Ok(()) });
    assert!(matches!(drain(&mut s)[..], [Output::DiskFlush { .. }]));
}

#[test]
fn secondary_refuses_client_io() {
    let (_p, mut s) = connected_pair(Protocol::C);
    assert_eq!(
        write(&mut s, 1, 0, 512, false),
        vec![Output::ClientDone {
            id: ClientId(1),
            result: Err(ClientError::NotPrimary)
        }]
    );
    s.handle(
        T0,
        Event::ClientRead {
            id: ClientId(2),
            offset: 0,
            len: 512,
        },
    );
    assert_eq!(
        drain(&mut s),
        vec![Output::ClientReadDone {
            id: ClientId(2),
            result: Err(ClientError::NotPrimary)
        }]
    );
}

#[test]
fn requests_past_the_end_are_refused() {
    let (mut p, _s) = connected_pair(Protocol::C);
    assert_eq!(
        write(&mut p, 1, SIZE - 512, 1024, false),
        vec![Output::ClientDone {
            id: ClientId(1),
            result: Err(ClientError::OutOfRange {
                offset: SIZE - 512,
                len: 1024,
                size: SIZE
            })
        }]
    );
}

#[test]
fn primary_losing_its_peer_starts_a_new_generation_and_marks_in_flight_writes() {
    let (mut p, mut s) = connected_pair_fencing(Protocol::C, Fencing::ResourceOnly);
    let out = write(&mut p, 1, 8192, 4096, false);
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    drain(&mut p);
    let before = p.status().uuids;
    p.handle(
        T0,
        Event::PeerDisconnected {
            conn: ConnId(1),
            reason: LinkLoss::Closed("reset".into()),
        },
    );
    let out = drain(&mut p);
    assert!(out.contains(&Output::MarkOutOfSync {
        first_block: 2,
        blocks: 1
    }));
    assert!(
        out.contains(&done(1)),
        "the write completes, tracked by the bitmap"
    );
    let after = p.status().uuids;
    assert_eq!(after.bitmap.value(), before.current.value());
    assert_ne!(after.current.value(), before.current.value());
    assert_eq!(after.current.0 & 1, 1, "Primary flag on the current UUID");
    assert!(out.contains(&Output::PersistUuids(after)));
    // The new generation is a sync point before the write completes to its client (and the
    // mark before it), so a crash after the answer cannot come back on the old generation.
    let pos = |o: &Output| out.iter().position(|x| x == o).expect("emitted");
    assert!(
        pos(&Output::MarkOutOfSync {
            first_block: 2,
            blocks: 1
        }) < pos(&Output::PersistUuids(after))
    );
    assert!(pos(&Output::PersistUuids(after)) < pos(&done(1)));
    assert_eq!(p.status().disk, DiskState::UpToDate);
    // Under resource-only, the Secondary keeps its UUIDs but no longer knows it is the newest.
    s.handle(
        T0,
        Event::PeerDisconnected {
            conn: ConnId(1),
            reason: LinkLoss::Closed("reset".into()),
        },
    );
    drain(&mut s);
    assert_eq!(
        (s.status().disk, s.status().uuids.current.value()),
        (DiskState::Consistent, 0xA0)
    );
    assert_eq!(
        s.admin(T0, AdminCommand::Primary { force: false }),
        Err(AdminError::NoUpToDateData(DiskState::Consistent))
    );
    // A write while disconnected marks the bitmap and completes on the local disk alone.
    let out = write(&mut p, 2, 0, 4096, false);
    assert!(out.contains(&Output::MarkOutOfSync {
        first_block: 0,
        blocks: 1
    }));
    assert!(sent(&out).is_empty());
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    assert_eq!(drain(&mut p), vec![done(2)]);
}

#[test]
fn forced_promotion_alone_starts_a_new_generation() {
    let mut r = Replica::new(cfg(0, Protocol::C), Persisted::fresh(SIZE), 3, T0);
    drain(&mut r);
    assert_eq!(
        r.admin(T0, AdminCommand::Primary { force: false }),
        Err(AdminError::NoUpToDateData(DiskState::Inconsistent))
    );
    r.admin(T0, AdminCommand::Primary { force: true }).unwrap();
    let st = r.status();
    assert_eq!((st.role, st.disk), (Role::Primary, DiskState::UpToDate));
    assert_eq!(st.uuids.bitmap, Uuid::JUST_CREATED);
    let out = drain(&mut r);
    assert_eq!(
        out[0],
        Output::PersistFlags(MdFlags {
            consistent: false,
            outdated: false,
            primary: true
        })
    );
    assert!(out.contains(&Output::PersistFlags(MdFlags {
        consistent: true,
        outdated: false,
        primary: true
    })));
    assert!(out.contains(&Output::PersistUuids(st.uuids)));
}

#[test]
fn promotion_fails_if_the_link_drops_before_the_peer_agrees() {
    let (mut p, mut s) = connected_pair_fencing(Protocol::C, Fencing::ResourceOnly);
    p.admin(T0, AdminCommand::Secondary).unwrap();
    deliver(&mut s, ConnId(1), &drain(&mut p));
    assert_eq!(
        s.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Pending)
    );
    drain(&mut s);
    // The request never arrives; the link is declared dead.
    s.handle(
        T0,
        Event::PeerDisconnected {
            conn: ConnId(1),
            reason: LinkLoss::Closed("ping timeout".into()),
        },
    );
    let out = drain(&mut s);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::AdminResult {
            result: Err(AdminError::WrongState { .. }),
            ..
        }
    )));
    assert_eq!(
        (s.status().role, s.status().disk),
        (Role::Secondary, DiskState::Consistent)
    );
}

#[test]
fn concurrent_promotions_the_lower_node_id_wins() {
    let (mut p, mut s) = connected_pair(Protocol::C);
    p.admin(T0, AdminCommand::Secondary).unwrap();
    deliver(&mut s, ConnId(1), &drain(&mut p));
    assert_eq!(
        p.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Pending)
    );
    assert_eq!(
        s.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Pending)
    );
    let op = drain(&mut p);
    let os = drain(&mut s);
    deliver(&mut s, ConnId(1), &op);
    deliver(&mut p, ConnId(1), &os);
    let os2 = drain(&mut s);
    let op2 = drain(&mut p);
    assert!(os2.contains(&Output::AdminResult {
        cmd: AdminCommand::Primary { force: false },
        result: Err(AdminError::PeerIsPrimary)
    }));
    assert_eq!(sent(&os2), vec![Message::PromoteReply { ok: true }]);
    assert_eq!(sent(&op2), vec![Message::PromoteReply { ok: false }]);
    deliver(&mut p, ConnId(1), &os2);
    deliver(&mut s, ConnId(1), &op2);
    drain(&mut p);
    drain(&mut s);
    assert_eq!(
        (p.status().role, s.status().role),
        (Role::Primary, Role::Secondary)
    );
}

#[test]
fn demote_needs_an_idle_device() {
    let (mut p, _s) = connected_pair(Protocol::C);
    write(&mut p, 1, 0, 512, false);
    assert_eq!(
        p.admin(T0, AdminCommand::Secondary),
        Err(AdminError::Busy(1))
    );
}

#[test]
fn two_primaries_refused_without_allow_two_primaries() {
    let (_p, mut s) = connected_pair(Protocol::C);
    assert_eq!(
        s.admin(T0, AdminCommand::Primary { force: false }),
        Err(AdminError::PeerIsPrimary)
    );
}

#[test]
fn checksum_failure_drops_the_link_and_marks_in_flight_writes() {
    let (mut p, _s) = connected_pair(Protocol::C);
    let out = write(&mut p, 1, 0, 4096, false);
    // The daemon found a bad frame and closed the connection.
    p.handle(
        T0,
        Event::PeerDisconnected {
            conn: ConnId(1),
            reason: LinkLoss::BadFrame("frame payload checksum mismatch".into()),
        },
    );
    let after = drain(&mut p);
    assert!(after.contains(&Output::MarkOutOfSync {
        first_block: 0,
        blocks: 1
    }));
    assert_eq!(p.status().conn, ConnState::WFConnection);
    p.handle(
        T0,
        Event::DiskWriteDone {
            io: io_of(&out),
            result: Ok(()),
        },
    );
    assert_eq!(drain(&mut p), vec![done(1)]);
}

#[test]
fn mismatched_size_is_refused_on_both_sides() {
    let mut a = Replica::new(cfg(0, Protocol::C), persisted(ids(0xA0, 0), true), 1, T0);
    let mut cb = cfg(1, Protocol::C);
    cb.size_bytes = SIZE / 2;
    let mut pb = persisted(ids(0xA0, 0), true);
    pb.bitmap = Bitmap::new(SIZE / 2);
    let mut b = Replica::new(cb, pb, 2, T0);
    for r in [&mut a, &mut b] {
        r.admin(
            T0,
            AdminCommand::Connect {
                discard_my_data: false,
            },
        )
        .unwrap();
        r.handle(T0, Event::PeerConnected { conn: ConnId(4) });
    }
    let oa = drain(&mut a);
    let ob = drain(&mut b);
    deliver(&mut b, ConnId(4), &oa);
    deliver(&mut a, ConnId(4), &ob);
    let want_a = Refusal::Size {
        mine: SIZE,
        peer: SIZE / 2,
    };
    assert_eq!(
        (a.status().conn, a.status().refusal),
        (ConnState::StandAlone, Some(want_a))
    );
    assert_eq!(b.status().conn, ConnState::StandAlone);
    assert_eq!(
        b.status().refusal,
        Some(Refusal::Size {
            mine: SIZE / 2,
            peer: SIZE
        })
    );
}

/// A pair of replicas over in-memory disks with instant, in-order I/O and an in-order link.
struct Pair {
    r: [Replica; 2],
    disk: [Vec<u8>; 2],
    queue: [VecDeque<Output>; 2],
    conn: ConnId,
    pending_client: usize,
}

impl Pair {
    fn new(r: [Replica; 2]) -> Pair {
        Pair {
            r,
            disk: [vec![0; SIZE as usize], vec![0; SIZE as usize]],
            queue: [VecDeque::new(), VecDeque::new()],
            conn: ConnId(1),
            pending_client: 0,
        }
    }

    fn connect(&mut self) {
        self.conn = ConnId(self.conn.0 + 1);
        for i in 0..2 {
            let _ = self.r[i].admin(
                T0,
                AdminCommand::Connect {
                    discard_my_data: false,
                },
            );
            self.r[i].handle(T0, Event::PeerConnected { conn: self.conn });
        }
        self.run();
    }

    fn disconnect(&mut self) {
        for i in 0..2 {
            self.r[i].handle(
                T0,
                Event::PeerDisconnected {
                    conn: self.conn,
                    reason: LinkLoss::Closed("cut".into()),
                },
            );
        }
        self.run();
    }

    /// Runs outputs until nothing is left (timers included).
    fn run(&mut self) {
        let mut now = T0;
        for _ in 0..100_000 {
            let mut progressed = false;
            for i in 0..2 {
                while let Some(o) = self.r[i].poll_output() {
                    self.queue[i].push_back(o);
                }
                while let Some(o) = self.queue[i].pop_front() {
                    progressed = true;
                    self.exec(i, o, now);
                }
            }
            if !progressed {
                let next = [self.r[0].poll_timeout(), self.r[1].poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t)
                        if self.r.iter().any(|r| {
                            r.status().resync.is_some()
                                || r.status().verify.is_some()
                                || r.status().unsettled_writes > 0
                        }) =>
                    {
                        now = now.max(t);
                        for r in &mut self.r {
                            r.handle_timeout(now);
                        }
                    }
                    _ => return,
                }
            }
        }
        panic!("pair did not settle");
    }

    fn exec(&mut self, i: usize, o: Output, now: Time) {
        let r = &mut self.r[i];
        match o {
            Output::Send { conn, msg } if conn == self.conn => {
                // Through the real codec.
                let (msg, _) = crate::wire::decode(&crate::wire::encode(&msg))
                    .unwrap()
                    .unwrap();
                self.r[1 - i].handle(now, Event::PeerMessage { conn, msg });
            }
            Output::DiskWrite {
                io, offset, data, ..
            } => {
                self.disk[i][offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                r.handle(now, Event::DiskWriteDone { io, result: Ok(()) });
            }
            Output::DiskRead { io, offset, len } => {
                let d =
                    Bytes::copy_from_slice(&self.disk[i][offset as usize..(offset + len) as usize]);
                r.handle(now, Event::DiskReadDone { io, result: Ok(d) });
            }
            Output::DiskFlush { io } => r.handle(now, Event::DiskFlushDone { io, result: Ok(()) }),
            Output::ComputeDigests {
                io,
                first_block,
                blocks,
                alg,
            } => {
                let d = (first_block..first_block + blocks)
                    .map(|b| {
                        crate::protocol::verify::digest(
                            alg,
                            &self.disk[i]
                                [(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize],
                        )
                    })
                    .collect();
                r.handle(now, Event::DigestsDone { io, result: Ok(d) });
            }
            Output::CloseConnection { conn, .. } if conn == self.conn => {
                self.r[1 - i].handle(
                    now,
                    Event::PeerDisconnected {
                        conn,
                        reason: LinkLoss::Closed("closed by peer".into()),
                    },
                );
            }
            Output::ClientDone { .. } | Output::ClientReadDone { .. } => self.pending_client -= 1,
            _ => {}
        }
    }

    fn write(&mut self, i: usize, offset: u64, byte: u8, len: usize) {
        self.pending_client += 1;
        self.r[i].handle(
            T0,
            Event::ClientWrite {
                id: ClientId(offset),
                offset,
                data: Bytes::from(vec![byte; len]),
                fua: false,
            },
        );
        self.run();
    }
}

#[test]
fn reconnect_resyncs_only_dirty_blocks() {
    let (a, b) = connected_pair(Protocol::C);
    let mut pair = Pair::new([a, b]);
    pair.conn = ConnId(1);
    pair.write(0, 0, 1, 4096);
    assert_eq!(pair.disk[0], pair.disk[1]);
    pair.disconnect();
    for k in [3u64, 4, 100, 101, 102, 900] {
        pair.write(0, k * BLOCK_SIZE, k as u8, 4096);
    }
    // A sub-block write marks its whole block.
    pair.write(0, 500 * BLOCK_SIZE + 100, 0xEE, 10);
    assert_eq!(pair.r[0].status().out_of_sync_blocks, 7);
    let sent_before = pair.r[0].stats().resync_bytes_sent;
    pair.connect();
    assert_eq!(
        pair.r[0].stats().resync_bytes_sent - sent_before,
        7 * BLOCK_SIZE,
        "only the dirty blocks"
    );
    assert_eq!(pair.disk[0], pair.disk[1]);
    for r in &pair.r {
        let st = r.status();
        assert_eq!(
            (st.conn, st.disk, st.out_of_sync_blocks),
            (ConnState::Connected, DiskState::UpToDate, 0)
        );
    }
    assert_eq!(
        pair.r[0].status().uuids.current.value(),
        pair.r[1].status().uuids.current.value()
    );
    assert_eq!(pair.r[0].status().uuids.bitmap, Uuid::NONE);
    assert_eq!(
        pair.r[1].status().uuids.history,
        pair.r[0].status().uuids.history
    );
    assert_eq!(pair.pending_client, 0);
}

#[test]
fn initial_full_sync_after_primary_force() {
    let a = Replica::new(cfg(0, Protocol::C), Persisted::fresh(SIZE), 1, T0);
    let b = Replica::new(cfg(1, Protocol::C), Persisted::fresh(SIZE), 2, T0);
    let mut pair = Pair::new([a, b]);
    pair.connect();
    assert_eq!(pair.r[0].status().conn, ConnState::Connected);
    assert_eq!(pair.r[0].status().disk, DiskState::Inconsistent);
    pair.disk[0][12345] = 9;
    pair.r[0]
        .admin(T0, AdminCommand::Primary { force: true })
        .unwrap();
    pair.run();
    // The forced primary renegotiated: the daemon reconnects.
    pair.connect();
    assert_eq!(pair.r[0].stats().resync_bytes_sent, SIZE);
    assert_eq!(pair.disk[0], pair.disk[1]);
    assert_eq!(
        (pair.r[1].status().disk, pair.r[1].status().conn),
        (DiskState::UpToDate, ConnState::Connected)
    );
}

#[test]
fn split_brain_detected_and_recovered_by_bitmap() {
    let (a, b) = connected_pair(Protocol::C);
    let mut pair = Pair::new([a, b]);
    pair.write(0, 0, 1, 4096);
    pair.disconnect();
    pair.write(0, 8 * BLOCK_SIZE, 2, 4096);
    pair.r[1]
        .admin(T0, AdminCommand::Primary { force: true })
        .unwrap();
    pair.write(1, 16 * BLOCK_SIZE, 3, 8192);
    pair.connect();
    for r in &pair.r {
        let st = r.status();
        assert_eq!(st.conn, ConnState::StandAlone);
        assert_eq!(
            st.refusal,
            Some(Refusal::SplitBrain {
                common_ancestor: true
            })
        );
    }
    // Manual recovery: node 1 is the victim.
    pair.r[1].admin(T0, AdminCommand::Secondary).unwrap();
    pair.run();
    pair.r[1]
        .admin(
            T0,
            AdminCommand::Connect {
                discard_my_data: true,
            },
        )
        .unwrap();
    pair.r[0]
        .admin(
            T0,
            AdminCommand::Connect {
                discard_my_data: false,
            },
        )
        .unwrap();
    pair.conn = ConnId(pair.conn.0 + 1);
    for r in &mut pair.r {
        r.handle(T0, Event::PeerConnected { conn: pair.conn });
    }
    pair.run();
    // The union of both bitmaps: node 0's block 8 and node 1's blocks 16, 17.
    assert_eq!(pair.r[0].stats().resync_bytes_sent, 3 * BLOCK_SIZE);
    assert_eq!(pair.disk[0], pair.disk[1]);
    assert_eq!(pair.r[1].status().disk, DiskState::UpToDate);
}

#[test]
fn verify_finds_and_marks_differences() {
    let (a, b) = connected_pair(Protocol::C);
    let mut pair = Pair::new([a, b]);
    pair.disk[1][5 * BLOCK_SIZE as usize] ^= 1;
    pair.disk[1][700 * BLOCK_SIZE as usize + 17] ^= 1;
    pair.r[0].admin(T0, AdminCommand::Verify).unwrap();
    pair.run();
    assert_eq!(pair.r[0].stats().last_verify_mismatches, 2);
    for r in &pair.r {
        assert_eq!(r.status().out_of_sync_blocks, 2);
        assert!(r.bitmap().get(5) && r.bitmap().get(700));
        assert_eq!(r.status().conn, ConnState::Connected);
    }
    // disconnect + connect resyncs them, from the Primary.
    pair.disconnect();
    pair.connect();
    assert_eq!(pair.disk[0], pair.disk[1]);
}

#[test]
fn crashed_primary_resyncs_its_activity_log_only() {
    let (a, b) = connected_pair(Protocol::C);
    let mut pair = Pair::new([a, b]);
    pair.write(0, 0, 1, 4096);
    // Node 0 "crashes": restart it from what it persisted (AL extent 0 hot, primary flag).
    let al = pair.r[0].al_extents();
    assert_eq!(al, vec![0]);
    let p = Persisted {
        uuids: pair.r[0].status().uuids,
        flags: MdFlags {
            consistent: true,
            outdated: false,
            primary: true,
        },
        bitmap: Bitmap::new(SIZE),
        al,
    };
    pair.r[1].handle(
        T0,
        Event::PeerDisconnected {
            conn: pair.conn,
            reason: LinkLoss::Closed("peer died".into()),
        },
    );
    pair.r[0] = Replica::new(cfg(0, Protocol::C), p, 9, T0);
    pair.run();
    assert_eq!(
        pair.r[0].status().out_of_sync_blocks,
        1024,
        "the whole 4 MiB extent"
    );
    pair.disk[0][100] = 0x55; // a write that never reached the peer
    pair.connect();
    assert_eq!(pair.disk[0], pair.disk[1]);
    assert_eq!(pair.r[0].stats().resync_bytes_sent, SIZE);
    assert!(matches!(pair.r[0].status().conn, ConnState::Connected));
    let _ = SyncDirection::Source;
}

#[test]
fn standalone_writes_take_no_activity_log_and_mark_nothing() {
    let mut c = cfg(0, Protocol::C);
    c.standalone = true;
    let mut r = Replica::new(c, persisted(ids(0xA0, 0), true), 1, T0);
    assert_eq!(
        r.status().disk,
        DiskState::UpToDate,
        "no peer can hold newer data"
    );
    assert_eq!(
        r.admin(
            T0,
            AdminCommand::Connect {
                discard_my_data: false
            }
        ),
        Err(AdminError::WrongState {
            conn: ConnState::StandAlone,
            disk: DiskState::UpToDate,
            why: "a standalone resource (one 'on' section) has no peer"
        })
    );
    assert_eq!(
        r.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Done)
    );
    drain(&mut r);
    let out = write(&mut r, 7, 8192, 4096, false);
    assert_eq!(
        out,
        vec![Output::DiskWrite {
            io: IoId(1),
            offset: 8192,
            data: Bytes::from(vec![7u8; 4096]),
            fua: false
        }],
        "no AlUpdate, no MarkOutOfSync"
    );
    r.handle(
        T0,
        Event::DiskWriteDone {
            io: IoId(1),
            result: Ok(()),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![Output::ClientDone {
            id: ClientId(7),
            result: Ok(())
        }]
    );
    let s = r.status();
    assert_eq!(
        (s.out_of_sync_blocks, s.unsettled_writes, s.al_extents),
        (0, 0, 0)
    );
    assert_eq!(
        r.poll_timeout(),
        None,
        "no barrier timer: nothing unsettled"
    );
    assert!(r.is_quiescent());
}

fn lose_link(r: &mut Replica, conn: ConnId) -> Vec<Output> {
    r.handle(
        T0,
        Event::PeerDisconnected {
            conn,
            reason: LinkLoss::Closed("peer died".into()),
        },
    );
    drain(r)
}

#[test]
fn secondary_losing_its_peer_under_dont_care_stays_up_to_date_and_promotes_without_force() {
    let (_p, mut s) = connected_pair_fencing(Protocol::C, Fencing::DontCare);
    let out = lose_link(&mut s, ConnId(1));
    let st = s.status();
    assert_eq!(
        (st.role, st.conn, st.disk, st.peer_disk, st.peer_role),
        (
            Role::Secondary,
            ConnState::WFConnection,
            DiskState::UpToDate,
            DiskState::DUnknown,
            Role::Unknown
        )
    );
    assert_eq!(st.uuids, ids(0xA0, 0), "a Secondary keeps its generation");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::PersistUuids(_) | Output::PersistFlags(_))),
        "nothing to persist: {out:?}"
    );
    // Failover: promotion without --force, alone, starts a new data generation.
    assert_eq!(
        s.admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Done)
    );
    let st = s.status();
    assert_eq!((st.role, st.disk), (Role::Primary, DiskState::UpToDate));
    assert_eq!(st.uuids.bitmap.value(), 0xA0, "old current → bitmap UUID");
    assert_ne!(st.uuids.current.value(), 0xA0);
    assert_eq!(st.uuids.current.0 & 1, 1, "Primary flag");
    let out = drain(&mut s);
    assert!(out.contains(&Output::PersistUuids(st.uuids)));
    assert!(out.contains(&Output::PersistFlags(MdFlags {
        consistent: true,
        outdated: false,
        primary: true
    })));
}

#[test]
fn secondary_losing_its_peer_under_resource_only_needs_force() {
    for fencing in [Fencing::ResourceOnly, Fencing::ResourceAndStonith] {
        let (_p, mut s) = connected_pair_fencing(Protocol::C, fencing);
        lose_link(&mut s, ConnId(1));
        let st = s.status();
        assert_eq!(
            (st.disk, st.peer_disk, st.uuids),
            (DiskState::Consistent, DiskState::DUnknown, ids(0xA0, 0)),
            "{fencing:?}"
        );
        assert_eq!(
            s.admin(T0, AdminCommand::Primary { force: false }),
            Err(AdminError::NoUpToDateData(DiskState::Consistent)),
            "{fencing:?}"
        );
        assert_eq!(
            s.admin(T0, AdminCommand::Primary { force: true }),
            Ok(AdminDone::Done),
            "{fencing:?}"
        );
        assert_eq!(s.status().uuids.bitmap.value(), 0xA0, "{fencing:?}");
    }
}

#[test]
fn primary_losing_its_peer_stays_up_to_date_under_every_policy() {
    for fencing in [
        Fencing::DontCare,
        Fencing::ResourceOnly,
        Fencing::ResourceAndStonith,
    ] {
        let (mut p, _s) = connected_pair_fencing(Protocol::C, fencing);
        lose_link(&mut p, ConnId(1));
        let st = p.status();
        assert_eq!((st.role, st.disk), (Role::Primary, DiskState::UpToDate));
        assert_eq!(st.uuids.bitmap.value(), 0xA0, "{fencing:?}: new generation");
    }
}

#[test]
fn a_node_restarted_alone_starts_consistent_under_every_policy() {
    for fencing in [
        Fencing::DontCare,
        Fencing::ResourceOnly,
        Fencing::ResourceAndStonith,
    ] {
        for was_primary in [false, true] {
            let c = ReplicaConfig {
                fencing,
                ..cfg(1, Protocol::C)
            };
            let mut p = persisted(ids(0xA0, 0), true);
            p.flags.primary = was_primary;
            let mut r = Replica::new(c, p, 7, T0);
            drain(&mut r);
            r.admin(
                T0,
                AdminCommand::Connect {
                    discard_my_data: false,
                },
            )
            .unwrap();
            assert_eq!(r.status().disk, DiskState::Consistent, "{fencing:?}");
            assert_eq!(
                r.admin(T0, AdminCommand::Primary { force: false }),
                Err(AdminError::NoUpToDateData(DiskState::Consistent)),
                "{fencing:?}, crashed Primary {was_primary}: only the peer or --force says it is the newest"
            );
        }
    }
}

#[test]
fn unfenced_promotion_while_the_old_primary_goes_on_writing_is_a_split_brain() {
    // The link is cut but both nodes live: the Primary goes on writing, the Secondary keeps
    // UpToDate (dont-care) and is promoted without --force. At the reconnect both have
    // changes: StandAlone on both sides, the split-brain handler, no resync either way.
    let (a, b) = connected_pair_fencing(Protocol::C, Fencing::DontCare);
    let mut pair = Pair::new([a, b]);
    pair.write(0, 0, 1, 4096);
    pair.disconnect();
    pair.write(0, 8 * BLOCK_SIZE, 2, 4096);
    assert_eq!(
        pair.r[1].admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Done)
    );
    pair.run();
    pair.write(1, 16 * BLOCK_SIZE, 3, 4096);
    let before = pair.disk.clone();
    pair.conn = ConnId(pair.conn.0 + 1);
    let mut handlers = vec![];
    for i in 0..2 {
        pair.r[i].handle(T0, Event::PeerConnected { conn: pair.conn });
    }
    for _ in 0..4 {
        for i in 0..2 {
            let out = drain(&mut pair.r[i]);
            handlers.extend(out.iter().filter_map(|o| match o {
                Output::CallHandler(h) => Some((i, *h)),
                _ => None,
            }));
            for o in out {
                pair.exec(i, o, T0);
            }
        }
    }
    for r in &pair.r {
        let st = r.status();
        assert_eq!(
            (st.conn, st.refusal, st.role, st.disk),
            (
                ConnState::StandAlone,
                Some(Refusal::SplitBrain {
                    common_ancestor: true
                }),
                Role::Primary,
                DiskState::UpToDate
            )
        );
        assert_eq!(r.stats().resync_bytes_sent, 0);
    }
    // Node 1 decides first (it receives node 0's Hello in the first round).
    assert_eq!(
        handlers,
        vec![
            (1, Handler::InitialSplitBrain),
            (1, Handler::SplitBrain),
            (0, Handler::InitialSplitBrain),
            (0, Handler::SplitBrain)
        ]
    );
    assert_eq!(pair.disk, before, "neither side's writes were touched");
}

#[test]
fn unfenced_promotion_of_an_idle_pair_is_a_split_brain_once_both_write() {
    // Both Secondary when the link is cut; each is promoted alone (dont-care) and writes.
    let (a, b) = connected_pair_fencing(Protocol::C, Fencing::DontCare);
    let mut pair = Pair::new([a, b]);
    pair.write(0, 0, 1, 4096);
    pair.r[0].admin(T0, AdminCommand::Secondary).unwrap();
    pair.run();
    pair.disconnect();
    for i in 0..2 {
        assert_eq!(pair.r[i].status().disk, DiskState::UpToDate);
        assert_eq!(
            pair.r[i].admin(T0, AdminCommand::Primary { force: false }),
            Ok(AdminDone::Done)
        );
        pair.run();
        pair.write(i, (8 + 8 * i as u64) * BLOCK_SIZE, 2 + i as u8, 4096);
    }
    pair.connect();
    for r in &pair.r {
        assert_eq!(
            (r.status().conn, r.status().refusal),
            (
                ConnState::StandAlone,
                Some(Refusal::SplitBrain {
                    common_ancestor: true
                })
            )
        );
    }
}

#[test]
fn failover_after_a_primary_crash_under_dont_care_resyncs_the_old_primary_from_the_survivor() {
    // The Primary dies (no link loss processed, as a power cut); the survivor keeps UpToDate,
    // is promoted without --force and writes; the old Primary comes back and becomes the
    // SyncTarget by bitmap (its activity log, and the survivor's new writes).
    let (a, b) = connected_pair_fencing(Protocol::C, Fencing::DontCare);
    let mut pair = Pair::new([a, b]);
    pair.write(0, 0, 1, 4096);
    let p = Persisted {
        uuids: pair.r[0].status().uuids,
        flags: MdFlags {
            consistent: true,
            outdated: false,
            primary: true,
        },
        bitmap: Bitmap::new(SIZE),
        al: pair.r[0].al_extents(),
    };
    lose_link(&mut pair.r[1], pair.conn);
    assert_eq!(pair.r[1].status().disk, DiskState::UpToDate);
    assert_eq!(
        pair.r[1].admin(T0, AdminCommand::Primary { force: false }),
        Ok(AdminDone::Done)
    );
    pair.run();
    pair.write(1, 8 * BLOCK_SIZE, 2, 4096);
    pair.r[0] = Replica::new(
        ReplicaConfig {
            fencing: Fencing::DontCare,
            ..cfg(0, Protocol::C)
        },
        p,
        9,
        T0,
    );
    pair.run();
    assert_eq!(pair.r[0].status().disk, DiskState::Consistent);
    pair.disk[0][100] = 0x55; // a write the dead Primary never acknowledged
    pair.connect();
    assert_eq!(pair.disk[0], pair.disk[1]);
    let (s0, s1) = (pair.r[0].status(), pair.r[1].status());
    assert_eq!(
        (s0.conn, s0.role, s0.disk, s1.role, s1.disk),
        (
            ConnState::Connected,
            Role::Secondary,
            DiskState::UpToDate,
            Role::Primary,
            DiskState::UpToDate
        )
    );
    assert_eq!(
        pair.r[1].stats().resync_bytes_sent,
        SIZE,
        "the old Primary's hot extent (the whole 4 MiB device here)"
    );
}

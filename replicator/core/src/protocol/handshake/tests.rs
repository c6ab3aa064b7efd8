use super::*;
use proptest::prelude::*;

fn ids(c: u64, b: u64, h0: u64, h1: u64) -> GenerationIds {
    GenerationIds {
        current: Uuid(c),
        bitmap: Uuid(b),
        history: [Uuid(h0), Uuid(h1)],
    }
}

fn hello(node: u8, uuids: GenerationIds) -> Hello {
    Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION_MAX,
        node_id: NodeId(node),
        peer_node_id: NodeId(1 - node),
        size_bytes: 1 << 20,
        protocol: Protocol::C,
        allow_two_primaries: false,
        after_sb: AfterSbPolicies::default(),
        uuids,
        bitmap_weight: 0,
        role: Role::Secondary,
        disk: DiskState::Consistent,
        discard_my_data: false,
        crashed_primary: false,
    }
}

fn resync(direction: SyncDirection, full: bool) -> Decision {
    Decision::Resync {
        direction,
        full,
        demote_first: false,
    }
}

#[test]
fn no_sync_when_currents_equal() {
    let v = decide(
        &hello(0, ids(0xA0, 0, 0x90, 0)),
        &hello(1, ids(0xA0, 0, 0x90, 0)),
        true,
    );
    assert_eq!((v.decision, v.uuid_hg, v.rule), (Decision::NoSync, 0, 40));
}

#[test]
fn bitmap_resync_as_source_when_my_bitmap_is_peers_current() {
    // I was Primary and lost the peer: new current B0, bitmap A0; the peer stayed at A0.
    let v = decide(
        &hello(0, ids(0xB1, 0xA0, 0x90, 0)),
        &hello(1, ids(0xA0, 0, 0x90, 0)),
        true,
    );
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (resync(SyncDirection::Source, false), 1, 70)
    );
}

#[test]
fn bitmap_resync_as_target_when_peers_bitmap_is_my_current() {
    let v = decide(
        &hello(0, ids(0xA0, 0, 0x90, 0)),
        &hello(1, ids(0xB1, 0xA0, 0x90, 0)),
        false,
    );
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (resync(SyncDirection::Target, false), -1, 50)
    );
}

#[test]
fn full_sync_when_my_current_is_in_peers_history() {
    let v = decide(
        &hello(0, ids(0x90, 0, 0x80, 0)),
        &hello(1, ids(0xB0, 0xA0, 0x90, 0x80)),
        true,
    );
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (resync(SyncDirection::Target, true), -2, 60)
    );
    let v = decide(
        &hello(1, ids(0xB0, 0xA0, 0x90, 0x80)),
        &hello(0, ids(0x90, 0, 0x80, 0)),
        false,
    );
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (resync(SyncDirection::Source, true), 2, 80)
    );
}

#[test]
fn fresh_pair_after_primary_force_is_full_sync() {
    let mut forced = hello(0, ids(0xC1, Uuid::JUST_CREATED.0, 0, 0));
    forced.disk = DiskState::UpToDate;
    forced.role = Role::Primary;
    let mut fresh = hello(1, GenerationIds::just_created());
    fresh.disk = DiskState::Inconsistent;
    let v = decide(&forced, &fresh, true);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Source, true), 30)
    );
    let v = decide(&fresh, &forced, false);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Target, true), 20)
    );
}

#[test]
fn fresh_pair_connects_without_sync() {
    let mut a = hello(0, GenerationIds::just_created());
    a.disk = DiskState::Inconsistent;
    let mut b = hello(1, GenerationIds::just_created());
    b.disk = DiskState::Inconsistent;
    assert_eq!(decide(&a, &b, true).decision, Decision::NoSync);
}

#[test]
fn split_brain_with_common_ancestor_refuses() {
    let a = hello(0, ids(0xB1, 0xA1, 0x90, 0));
    let b = hello(1, ids(0xC1, 0xA0, 0x90, 0));
    let v = decide(&a, &b, true);
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (
            Decision::Refuse(Refusal::SplitBrain {
                common_ancestor: true
            }),
            100,
            90
        )
    );
    assert_eq!(v.auto_split_brain, Some(SbVerdict::Disconnect));
}

#[test]
fn split_brain_manual_recovery_is_bitmap_resync() {
    let mut victim = hello(0, ids(0xB0, 0xA1, 0x90, 0));
    victim.discard_my_data = true;
    let mut survivor = hello(1, ids(0xC1, 0xA0, 0x90, 0));
    survivor.role = Role::Primary;
    survivor.disk = DiskState::UpToDate;
    assert_eq!(
        decide(&victim, &survivor, true).decision,
        resync(SyncDirection::Target, false)
    );
    assert_eq!(
        decide(&survivor, &victim, false).decision,
        resync(SyncDirection::Source, false)
    );
}

#[test]
fn split_brain_without_common_bitmap_refuses_and_manual_is_full() {
    let a = hello(0, ids(0xB0, 0xD0, 0x90, 0));
    let mut b = hello(1, ids(0xC0, 0xE0, 0x90, 0));
    let v = decide(&a, &b, true);
    assert_eq!(
        (v.decision, v.rule),
        (
            Decision::Refuse(Refusal::SplitBrain {
                common_ancestor: false
            }),
            100
        )
    );
    b.discard_my_data = true;
    assert_eq!(
        decide(&a, &b, true).decision,
        resync(SyncDirection::Source, true)
    );
}

#[test]
fn unrelated_data_refuses() {
    let v = decide(
        &hello(0, ids(0xB0, 0, 0x70, 0)),
        &hello(1, ids(0xC0, 0, 0x60, 0)),
        true,
    );
    assert_eq!(
        (v.decision, v.uuid_hg, v.rule),
        (Decision::Refuse(Refusal::UnrelatedData), -1000, 110)
    );
}

#[test]
fn crashed_primary_resyncs_its_activity_log() {
    let mut crashed = hello(0, ids(0xA1, 0, 0, 0));
    crashed.crashed_primary = true;
    let other = hello(1, ids(0xA0, 0, 0, 0));
    let v = decide(&crashed, &other, true);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Source, false), 40)
    );
    assert_eq!(
        decide(&other, &crashed, false).decision,
        resync(SyncDirection::Target, false)
    );
}

#[test]
fn primary_never_becomes_sync_target() {
    let mut pri = hello(0, ids(0xA1, 0, 0x90, 0));
    pri.role = Role::Primary;
    pri.disk = DiskState::UpToDate;
    let other = hello(1, ids(0xB0, 0xA0, 0x90, 0));
    assert_eq!(
        decide(&pri, &other, true).decision,
        Decision::Refuse(Refusal::PrimaryWouldBeSyncTarget)
    );
    assert_eq!(
        decide(&other, &pri, false).decision,
        Decision::Refuse(Refusal::ByPeer(Box::new(Refusal::PrimaryWouldBeSyncTarget)))
    );
}

#[test]
fn inconsistent_side_becomes_target_and_never_source() {
    // Interrupted resync: the target's current is the source's sync UUID.
    let mut target = hello(0, ids(0xA0 + UUID_NEW_BM_OFFSET, 0, 0x90, 0));
    target.disk = DiskState::Inconsistent;
    let source = hello(1, ids(0xB0, 0xA0 + UUID_NEW_BM_OFFSET, 0x90, 0));
    assert_eq!(
        decide(&target, &source, true).decision,
        resync(SyncDirection::Target, false)
    );
    // An Inconsistent node whose UUIDs say "source" refuses.
    let mut odd = hello(0, ids(0xB0, 0xA0, 0, 0));
    odd.disk = DiskState::Inconsistent;
    let mut peer = hello(1, ids(0xA0, 0, 0, 0));
    peer.disk = DiskState::Inconsistent;
    assert_eq!(
        decide(&odd, &peer, true).decision,
        Decision::Refuse(Refusal::InconsistentSource)
    );
}

#[test]
fn lost_resync_finished_event_is_corrected() {
    // Source crashed after the target adopted its UUIDs but before rotating its own (rule 34).
    let source = hello(0, ids(0xB0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0, 0x90));
    let target = hello(1, ids(0xB0, 0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0));
    let v = decide(&source, &target, true);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Source, false), 34)
    );
    assert_eq!(v.my_uuids, ids(0xB0, 0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0));
    // The same seen from the higher node id (evaluated by the lower one and mirrored).
    let mut s1 = source.clone();
    s1.node_id = NodeId(1);
    s1.peer_node_id = NodeId(0);
    let mut t0 = target.clone();
    t0.node_id = NodeId(0);
    t0.peer_node_id = NodeId(1);
    let v = decide(&s1, &t0, false);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Source, false), 34)
    );
    assert_eq!(v.my_uuids, ids(0xB0, 0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0));
}

#[test]
fn lost_sync_uuid_is_undone() {
    // The source started a resync (bitmap A0 -> A0+offset, A0 into history) but the target
    // never got the SyncUuid: its current is still A0... of the previous attempt's sync UUID.
    let source = hello(0, ids(0xB0, 0xA0 + UUID_NEW_BM_OFFSET, 0xA0, 0x90));
    let target = hello(1, ids(0xA0, 0, 0x90, 0));
    let v = decide(&source, &target, true);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Source, false), 71)
    );
    assert_eq!(v.my_uuids, ids(0xB0, 0xA0, 0x90, 0));
    let v = decide(&target, &source, false);
    assert_eq!(
        (v.decision, v.rule),
        (resync(SyncDirection::Target, false), 51)
    );
}

#[test]
fn params_mismatches_refuse() {
    let a = hello(0, ids(0xA0, 0, 0, 0));
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    assert_eq!(check_params(&a, &b), Ok(()));
    b.size_bytes += 4096;
    assert_eq!(
        check_params(&a, &b),
        Err(Refusal::Size {
            mine: 1 << 20,
            peer: (1 << 20) + 4096
        })
    );
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.protocol = Protocol::A;
    assert_eq!(
        check_params(&a, &b),
        Err(Refusal::ReplicationProtocol {
            mine: Protocol::C,
            peer: Protocol::A
        })
    );
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.node_id = NodeId(7);
    assert_eq!(
        check_params(&a, &b),
        Err(Refusal::NodeId {
            expected: 1,
            got: 7
        })
    );
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.peer_node_id = NodeId(5);
    assert_eq!(
        check_params(&a, &b),
        Err(Refusal::PeerExpectsOtherNode {
            expected: 5,
            mine: 0
        })
    );
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.version_min = 2;
    b.version_max = 3;
    assert!(matches!(
        check_params(&a, &b),
        Err(Refusal::ProtocolVersion { .. })
    ));
    let mut a2 = a.clone();
    a2.role = Role::Primary;
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.role = Role::Primary;
    a2.disk = DiskState::UpToDate;
    b.disk = DiskState::UpToDate;
    assert_eq!(check_params(&a2, &b), Ok(()));
    assert_eq!(
        decide(&a2, &b, true).decision,
        Decision::Refuse(Refusal::TwoPrimaries)
    );
    a2.allow_two_primaries = true;
    b.allow_two_primaries = true;
    assert_eq!(check_params(&a2, &b), Ok(()));
    assert_eq!(decide(&a2, &b, true).decision, Decision::NoSync);
    let mut b = hello(1, ids(0xA0, 0, 0, 0));
    b.after_sb.zero_pri = split_brain::AfterSb0Pri::DiscardZeroChanges;
    assert_eq!(check_params(&a, &b), Err(Refusal::AfterSbPolicies));
}

/// The REFERENCE.md table, for inputs without crashed Primaries, lost events or disk-state
/// overrides: equal current → no sync; my bitmap = peer's current → source by bitmap (and the
/// mirror); a current in the other's history → full sync; equal bitmap UUIDs → split brain with a
/// common ancestor; shared history → split brain; nothing → unrelated.
fn reference(a: &GenerationIds, b: &GenerationIds) -> Decision {
    let v = |u: Uuid| u.value();
    if v(a.current) == v(b.current) {
        return Decision::NoSync;
    }
    if v(b.bitmap) == v(a.current) {
        return resync(SyncDirection::Target, false);
    }
    if b.history.iter().any(|h| v(*h) == v(a.current)) {
        return resync(SyncDirection::Target, true);
    }
    if v(a.bitmap) == v(b.current) {
        return resync(SyncDirection::Source, false);
    }
    if a.history.iter().any(|h| v(*h) == v(b.current)) {
        return resync(SyncDirection::Source, true);
    }
    if v(a.bitmap) != 0 && v(a.bitmap) == v(b.bitmap) {
        return Decision::Refuse(Refusal::SplitBrain {
            common_ancestor: true,
        });
    }
    if a.history
        .iter()
        .any(|x| v(*x) != 0 && b.history.iter().any(|y| v(*y) == v(*x)))
    {
        return Decision::Refuse(Refusal::SplitBrain {
            common_ancestor: false,
        });
    }
    Decision::Refuse(Refusal::UnrelatedData)
}

/// UUIDs from a small pool so that matches are frequent; never JUST_CREATED.
fn arb_ids() -> impl Strategy<Value = GenerationIds> {
    let u = prop_oneof![Just(0u64), 0x10u64..0x16].prop_map(|x| x * 0x10);
    let c = (0x10u64..0x16).prop_map(|x| x * 0x10);
    (c, u.clone(), u.clone(), u).prop_map(|(c, b, h0, h1)| ids(c, b, h0, h1))
}

fn mirror(d: &Decision) -> Decision {
    match d {
        Decision::NoSync => Decision::NoSync,
        Decision::Resync {
            direction, full, ..
        } => Decision::Resync {
            direction: match direction {
                SyncDirection::Source => SyncDirection::Target,
                SyncDirection::Target => SyncDirection::Source,
            },
            full: *full,
            demote_first: false,
        },
        Decision::Refuse(_) => Decision::Refuse(Refusal::UnrelatedData),
    }
}

fn normalise(d: &Decision) -> Decision {
    match d {
        Decision::Refuse(_) => Decision::Refuse(Refusal::UnrelatedData),
        Decision::Resync {
            direction, full, ..
        } => resync(*direction, *full),
        Decision::NoSync => Decision::NoSync,
    }
}

fn arb_disk() -> impl Strategy<Value = DiskState> {
    prop_oneof![
        Just(DiskState::Inconsistent),
        Just(DiskState::Outdated),
        Just(DiskState::Consistent),
        Just(DiskState::UpToDate)
    ]
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Secondary)]
}

proptest! {
    /// Against the reference table, where the table applies.
    #[test]
    fn matches_reference_table(a in arb_ids(), b in arb_ids()) {
        let v = decide(&hello(0, a), &hello(1, b), true);
        prop_assume!(![34, 35, 36, 37, 51, 71].contains(&v.rule));
        prop_assert_eq!(v.decision, reference(&a, &b), "rule {}", v.rule);
    }

    /// Whatever the input, the two sides reach mirror-image decisions.
    #[test]
    fn both_sides_agree(a in arb_ids(), b in arb_ids(), da in arb_disk(), db in arb_disk(),
                        ra in arb_role(), rb in arb_role(), ca: bool, cb: bool, xa: bool, xb: bool, wa in 0u64..3, wb in 0u64..3,
                        z in 0usize..5) {
        let zero_pri = [split_brain::AfterSb0Pri::Disconnect, split_brain::AfterSb0Pri::DiscardZeroChanges,
                        split_brain::AfterSb0Pri::DiscardLeastChanges, split_brain::AfterSb0Pri::DiscardYoungerPrimary,
                        split_brain::AfterSb0Pri::DiscardNode(NodeId(1))][z];
        let mk = |node, ids, disk, role, crashed, discard, weight| {
            let mut h = hello(node, ids);
            h.disk = disk; h.role = role; h.crashed_primary = crashed; h.discard_my_data = discard; h.bitmap_weight = weight;
            h.after_sb.zero_pri = zero_pri;
            h.after_sb.one_pri = split_brain::AfterSb1Pri::DiscardSecondary;
            h
        };
        let ha = mk(0, a, da, ra, ca, xa, wa);
        let hb = mk(1, b, db, rb, cb, xb, wb);
        let va = decide(&ha, &hb, true);
        let vb = decide(&hb, &ha, false);
        prop_assert_eq!(mirror(&va.decision), normalise(&vb.decision), "a={:?} b={:?} va={:?} vb={:?}", ha, hb, va, vb);
        // A Primary with consistent data never becomes SyncTarget unless it demotes first.
        if let Decision::Resync { direction: SyncDirection::Target, demote_first, .. } = va.decision {
            prop_assert!(ra != Role::Primary || disk_rank(da) < disk_rank(DiskState::Consistent) || demote_first);
        }
        // An Inconsistent node is never SyncSource.
        if let Decision::Resync { direction: SyncDirection::Source, .. } = va.decision {
            prop_assert!(da != DiskState::Inconsistent);
        }
    }
}

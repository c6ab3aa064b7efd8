//! The split-brain decision (DRBD's `after-sb-0pri`, `after-sb-1pri`, `after-sb-2pri`), as a pure
//! function of the policies and what each side reported in its handshake.
//!
//! It runs only when the generation UUIDs say "split brain with a common ancestor" (both bitmap
//! UUIDs equal, currents differ: REFERENCE.md). The default everywhere is `disconnect`: both
//! sides go StandAlone and the operator recovers by hand (victim `secondary` +
//! `connect --discard-my-data`, survivor `connect`). The automatic policies follow
//! `drbd_asb_recover_{0,1,2}p` of DRBD 8.4 (drbd_receiver.c) and drbd.conf(5).

use crate::types::{NodeId, Role};
use serde::{Deserialize, Serialize};

/// `after-sb-0pri`: split brain, neither node Primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AfterSb0Pri {
    /// Go StandAlone; the operator decides.
    #[default]
    Disconnect,
    /// Sync from the node that was Primary before the split brain.
    DiscardYoungerPrimary,
    /// Sync from the node that became Primary during the split brain.
    DiscardOlderPrimary,
    /// If only one side wrote, sync from it; if neither wrote, either (tie-break).
    DiscardZeroChanges,
    /// Sync from the side with more changed blocks.
    DiscardLeastChanges,
    /// Always discard this node's data (`discard-node-NAME`, resolved to its id).
    DiscardNode(NodeId),
}

/// `after-sb-1pri`: split brain, one node Primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AfterSb1Pri {
    /// Go StandAlone.
    #[default]
    Disconnect,
    /// Apply `after-sb-0pri`; accept its verdict only if it discards the Secondary.
    Consensus,
    /// Apply `after-sb-0pri` whatever it says (may roll back the Primary's data).
    ViolentlyAs0p,
    /// Discard the Secondary's data.
    DiscardSecondary,
    /// Apply `after-sb-0pri`; a Primary that loses gives up its role (or, if it cannot, the
    /// `pri-lost-after-sb` handler is called).
    CallPriLostAfterSb,
}

/// `after-sb-2pri`: split brain, both nodes Primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AfterSb2Pri {
    /// Go StandAlone.
    #[default]
    Disconnect,
    /// Apply `after-sb-0pri` whatever it says.
    ViolentlyAs0p,
    /// Apply `after-sb-0pri`; the losing Primary gives up its role or its handler is called.
    CallPriLostAfterSb,
}

/// The three policies of a resource (`net { after-sb-0pri ...; }`). Both nodes must agree on
/// them; the handshake refuses a peer with different ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct AfterSbPolicies {
    /// No Primary.
    pub zero_pri: AfterSb0Pri,
    /// One Primary.
    pub one_pri: AfterSb1Pri,
    /// Two Primaries.
    pub two_pri: AfterSb2Pri,
}

/// What one side of a split brain reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbSide {
    /// Node id.
    pub node: NodeId,
    /// Role at the handshake.
    pub role: Role,
    /// Blocks changed since the split (the bitmap weight).
    pub changes: u64,
    /// Bit 0 of the bitmap UUID: set when this node was already Primary when it lost the peer
    /// (its old current UUID carried the Primary flag), clear when it was promoted later.
    pub was_primary_at_split: bool,
}

/// The verdict, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbVerdict {
    /// Unresolved: both go StandAlone.
    Disconnect,
    /// This node's data survives: it becomes SyncSource.
    KeepMine,
    /// This node's data is discarded: it becomes SyncTarget. `demote_first` is set when this
    /// node is Primary and a `call-pri-lost-after-sb` policy makes it give up the role first.
    DiscardMine {
        /// Give up the Primary role before syncing.
        demote_first: bool,
    },
}

/// Decides an automatic split-brain recovery. `resolve_conflicts` is the tie-breaker flag that
/// exactly one of the two nodes holds (in Tandem: the node with the lower node id); it must be
/// the negation on the peer so that both reach mirror-image verdicts.
pub fn decide(
    policies: &AfterSbPolicies,
    me: &SbSide,
    peer: &SbSide,
    resolve_conflicts: bool,
) -> SbVerdict {
    let primaries = u8::from(me.role == Role::Primary) + u8::from(peer.role == Role::Primary);
    match primaries {
        0 => recover_0p(policies.zero_pri, me, peer, resolve_conflicts),
        1 => match policies.one_pri {
            AfterSb1Pri::Disconnect => SbVerdict::Disconnect,
            AfterSb1Pri::Consensus => {
                match recover_0p(policies.zero_pri, me, peer, resolve_conflicts) {
                    SbVerdict::DiscardMine { .. } if me.role == Role::Secondary => {
                        SbVerdict::DiscardMine {
                            demote_first: false,
                        }
                    }
                    SbVerdict::KeepMine if me.role == Role::Primary => SbVerdict::KeepMine,
                    _ => SbVerdict::Disconnect,
                }
            }
            AfterSb1Pri::ViolentlyAs0p => {
                recover_0p(policies.zero_pri, me, peer, resolve_conflicts)
            }
            AfterSb1Pri::DiscardSecondary => {
                if me.role == Role::Primary {
                    SbVerdict::KeepMine
                } else {
                    SbVerdict::DiscardMine {
                        demote_first: false,
                    }
                }
            }
            AfterSb1Pri::CallPriLostAfterSb => pri_lost(
                recover_0p(policies.zero_pri, me, peer, resolve_conflicts),
                me,
            ),
        },
        _ => match policies.two_pri {
            AfterSb2Pri::Disconnect => SbVerdict::Disconnect,
            AfterSb2Pri::ViolentlyAs0p => {
                recover_0p(policies.zero_pri, me, peer, resolve_conflicts)
            }
            AfterSb2Pri::CallPriLostAfterSb => pri_lost(
                recover_0p(policies.zero_pri, me, peer, resolve_conflicts),
                me,
            ),
        },
    }
}

fn pri_lost(v: SbVerdict, me: &SbSide) -> SbVerdict {
    match v {
        SbVerdict::DiscardMine { .. } => SbVerdict::DiscardMine {
            demote_first: me.role == Role::Primary,
        },
        other => other,
    }
}

/// `drbd_asb_recover_0p`, including DRBD's fall-through from the younger/older-primary
/// policies to zero-changes and then least-changes when they cannot decide.
fn recover_0p(
    policy: AfterSb0Pri,
    me: &SbSide,
    peer: &SbSide,
    resolve_conflicts: bool,
) -> SbVerdict {
    let tie = || {
        if resolve_conflicts {
            SbVerdict::DiscardMine {
                demote_first: false,
            }
        } else {
            SbVerdict::KeepMine
        }
    };
    let discard = SbVerdict::DiscardMine {
        demote_first: false,
    };
    let least_changes = || match me.changes.cmp(&peer.changes) {
        std::cmp::Ordering::Less => discard,
        std::cmp::Ordering::Greater => SbVerdict::KeepMine,
        std::cmp::Ordering::Equal => tie(),
    };
    let zero_changes = |then_least: bool| {
        if me.changes == 0 && peer.changes == 0 {
            tie()
        } else if peer.changes == 0 {
            SbVerdict::KeepMine
        } else if me.changes == 0 {
            discard
        } else if then_least {
            least_changes()
        } else {
            SbVerdict::Disconnect
        }
    };
    let by_age = |discard_younger: bool| match (me.was_primary_at_split, peer.was_primary_at_split)
    {
        // I was the old Primary, the peer was promoted during the split: the peer is "younger".
        (true, false) => Some(if discard_younger {
            SbVerdict::KeepMine
        } else {
            discard
        }),
        (false, true) => Some(if discard_younger {
            discard
        } else {
            SbVerdict::KeepMine
        }),
        _ => None,
    };
    match policy {
        AfterSb0Pri::Disconnect => SbVerdict::Disconnect,
        AfterSb0Pri::DiscardYoungerPrimary => by_age(true).unwrap_or_else(|| zero_changes(true)),
        AfterSb0Pri::DiscardOlderPrimary => by_age(false).unwrap_or_else(|| zero_changes(true)),
        AfterSb0Pri::DiscardZeroChanges => zero_changes(false),
        AfterSb0Pri::DiscardLeastChanges => least_changes(),
        AfterSb0Pri::DiscardNode(n) => {
            if n == me.node {
                discard
            } else if n == peer.node {
                SbVerdict::KeepMine
            } else {
                SbVerdict::Disconnect
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(node: u8, role: Role, changes: u64, old_pri: bool) -> SbSide {
        SbSide {
            node: NodeId(node),
            role,
            changes,
            was_primary_at_split: old_pri,
        }
    }

    fn mirror(v: SbVerdict) -> SbVerdict {
        match v {
            SbVerdict::Disconnect => SbVerdict::Disconnect,
            SbVerdict::KeepMine => SbVerdict::DiscardMine {
                demote_first: false,
            },
            SbVerdict::DiscardMine { .. } => SbVerdict::KeepMine,
        }
    }

    #[test]
    fn default_policies_always_disconnect() {
        let p = AfterSbPolicies::default();
        for (r1, r2) in [
            (Role::Secondary, Role::Secondary),
            (Role::Primary, Role::Secondary),
            (Role::Primary, Role::Primary),
        ] {
            assert_eq!(
                decide(&p, &side(0, r1, 5, true), &side(1, r2, 0, false), true),
                SbVerdict::Disconnect
            );
        }
    }

    #[test]
    fn zero_pri_policies() {
        let sec = Role::Secondary;
        let p = |zero_pri| AfterSbPolicies {
            zero_pri,
            ..Default::default()
        };
        let discard = SbVerdict::DiscardMine {
            demote_first: false,
        };
        // discard-zero-changes: only I wrote -> keep mine; both wrote -> disconnect.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardZeroChanges),
                &side(0, sec, 3, false),
                &side(1, sec, 0, false),
                false
            ),
            SbVerdict::KeepMine
        );
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardZeroChanges),
                &side(0, sec, 3, false),
                &side(1, sec, 2, false),
                false
            ),
            SbVerdict::Disconnect
        );
        // neither wrote: the resolve-conflicts holder yields.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardZeroChanges),
                &side(0, sec, 0, false),
                &side(1, sec, 0, false),
                true
            ),
            discard
        );
        // discard-least-changes.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardLeastChanges),
                &side(0, sec, 1, false),
                &side(1, sec, 2, false),
                false
            ),
            discard
        );
        // discard-younger-primary: I was Primary at the split, the peer was promoted later.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardYoungerPrimary),
                &side(0, sec, 1, true),
                &side(1, sec, 9, false),
                false
            ),
            SbVerdict::KeepMine
        );
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardOlderPrimary),
                &side(0, sec, 1, true),
                &side(1, sec, 9, false),
                false
            ),
            discard
        );
        // undecided by age: falls through to least changes.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardOlderPrimary),
                &side(0, sec, 1, false),
                &side(1, sec, 9, false),
                false
            ),
            discard
        );
        // discard-node-N.
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardNode(NodeId(1))),
                &side(0, sec, 1, false),
                &side(1, sec, 9, false),
                false
            ),
            SbVerdict::KeepMine
        );
        assert_eq!(
            decide(
                &p(AfterSb0Pri::DiscardNode(NodeId(0))),
                &side(0, sec, 1, false),
                &side(1, sec, 9, false),
                false
            ),
            discard
        );
    }

    #[test]
    fn one_pri_policies() {
        let zero_pri = AfterSb0Pri::DiscardLeastChanges;
        let p = |one_pri| AfterSbPolicies {
            zero_pri,
            one_pri,
            ..Default::default()
        };
        let pri = side(0, Role::Primary, 1, false);
        let sec = side(1, Role::Secondary, 5, false);
        assert_eq!(
            decide(&p(AfterSb1Pri::DiscardSecondary), &pri, &sec, false),
            SbVerdict::KeepMine
        );
        assert_eq!(
            decide(&p(AfterSb1Pri::DiscardSecondary), &sec, &pri, true),
            SbVerdict::DiscardMine {
                demote_first: false
            }
        );
        // consensus: 0pri says discard the Primary (fewer changes): no consensus.
        assert_eq!(
            decide(&p(AfterSb1Pri::Consensus), &pri, &sec, false),
            SbVerdict::Disconnect
        );
        assert_eq!(
            decide(&p(AfterSb1Pri::Consensus), &sec, &pri, true),
            SbVerdict::Disconnect
        );
        // violently: the Primary's data is discarded.
        assert_eq!(
            decide(&p(AfterSb1Pri::ViolentlyAs0p), &pri, &sec, false),
            SbVerdict::DiscardMine {
                demote_first: false
            }
        );
        // call-pri-lost-after-sb: the losing Primary demotes first.
        assert_eq!(
            decide(&p(AfterSb1Pri::CallPriLostAfterSb), &pri, &sec, false),
            SbVerdict::DiscardMine { demote_first: true }
        );
    }

    /// Both sides reach mirror-image verdicts for every policy and input.
    #[test]
    fn verdicts_mirror() {
        let zero = [
            AfterSb0Pri::Disconnect,
            AfterSb0Pri::DiscardYoungerPrimary,
            AfterSb0Pri::DiscardOlderPrimary,
            AfterSb0Pri::DiscardZeroChanges,
            AfterSb0Pri::DiscardLeastChanges,
            AfterSb0Pri::DiscardNode(NodeId(0)),
            AfterSb0Pri::DiscardNode(NodeId(1)),
        ];
        let one = [
            AfterSb1Pri::Disconnect,
            AfterSb1Pri::Consensus,
            AfterSb1Pri::ViolentlyAs0p,
            AfterSb1Pri::DiscardSecondary,
            AfterSb1Pri::CallPriLostAfterSb,
        ];
        let two = [
            AfterSb2Pri::Disconnect,
            AfterSb2Pri::ViolentlyAs0p,
            AfterSb2Pri::CallPriLostAfterSb,
        ];
        let roles = [Role::Primary, Role::Secondary];
        for z in zero {
            for o in one {
                for t in two {
                    let p = AfterSbPolicies {
                        zero_pri: z,
                        one_pri: o,
                        two_pri: t,
                    };
                    for r1 in roles {
                        for r2 in roles {
                            for (c1, c2) in [(0, 0), (0, 3), (3, 0), (2, 5), (4, 4)] {
                                for (a1, a2) in
                                    [(false, false), (true, false), (false, true), (true, true)]
                                {
                                    let a = side(0, r1, c1, a1);
                                    let b = side(1, r2, c2, a2);
                                    let va = decide(&p, &a, &b, true);
                                    let vb = decide(&p, &b, &a, false);
                                    assert_eq!(
                                        mirror(va),
                                        match vb {
                                            SbVerdict::DiscardMine { .. } =>
                                                SbVerdict::DiscardMine {
                                                    demote_first: false
                                                },
                                            v => v,
                                        },
                                        "{p:?} {a:?} {b:?}"
                                    );
                                    assert_eq!(
                                        mirror(vb),
                                        match va {
                                            SbVerdict::DiscardMine { .. } =>
                                                SbVerdict::DiscardMine {
                                                    demote_first: false
                                                },
                                            v => v,
                                        }
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

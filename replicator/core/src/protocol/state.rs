//! The checked state transitions: every change of connection state, disk state or role goes
//! through one function per enum that panics on an edge that does not exist (a programmer error,
//! never an operating one). The diagrams are the specification; `docs/replication.md` repeats
//! them.

use crate::types::{ConnState, DiskState, Role};

/// Connection state edges.
///
/// ```text
///             connect                    TCP up                 handshake
///  StandAlone ───────▶ WFConnection ──────────▶ WFReportParams ──────────▶ Connected ◀─────────┐
///     ▲  ▲                 ▲   ▲                 │   │    │  refused        │  │  verify       │
///     │  │   disconnect    │   │  link lost      │   │    └──▶ StandAlone   │  └▶ VerifyS/T ───┤
///     │  └── Disconnecting ◀── any connected ────┘   │                      │                  │
///     │                        state (link lost:     ▼ sync needed          ▼ (renegotiate:    │
///     │                        WFConnection)      WFBitMapS ──▶ SyncSource ─┤  link lost)      │
///     │ refused/split brain                       WFBitMapT ──▶ SyncTarget ─┴── done ──────────┘
///     └──────────────── from WFReportParams or a WFBitMap state (peer's Refuse)
/// ```
///
/// Every state from WFReportParams on can also fall back to WFConnection (the link is lost) or go
/// to Disconnecting (admin `disconnect`); Disconnecting ends in StandAlone.
pub fn conn_allowed(prev: ConnState, next: ConnState) -> bool {
    use ConnState::*;
    let connected = |s: ConnState| {
        matches!(
            s,
            WFReportParams
                | Connected
                | WFBitMapS
                | WFBitMapT
                | SyncSource
                | SyncTarget
                | VerifyS
                | VerifyT
        )
    };
    match (prev, next) {
        (StandAlone, WFConnection) => true,
        (WFConnection, WFReportParams) => true,
        (WFConnection, Disconnecting) => true,
        (WFReportParams, Connected | WFBitMapS | WFBitMapT | StandAlone) => true,
        (WFBitMapS, SyncSource | StandAlone) => true,
        (WFBitMapT, SyncTarget | StandAlone) => true,
        (SyncSource | SyncTarget, Connected) => true,
        (Connected, VerifyS | VerifyT) => true,
        (VerifyS | VerifyT, Connected) => true,
        (s, WFConnection | Disconnecting) if connected(s) => true,
        (Disconnecting, StandAlone) => true,
        _ => false,
    }
}

/// Moves `state` to `next`, panicking on an edge that does not exist.
pub fn conn_transition(state: &mut ConnState, next: ConnState) {
    assert!(
        conn_allowed(*state, next),
        "connection state edge {state} -> {next} does not exist"
    );
    *state = next;
}

/// Disk state edges (the local disk; the peer's is recorded as reported).
///
/// ```text
///                 primary --force / sync done (as target)
///  Inconsistent ─────────────────────────────────────────────▶ UpToDate
///      ▲  ▲  sync starts (target)                               │  ▲  │
///      │  └──────────────────── Outdated ◀── handshake: target ─┤  │  │ peer lost while
///      │     invalidate          │   ▲                          │  │  ▼ Secondary
///      └─────────────────────────┼───┼──────────── Consistent ◀─┘  │ Consistent
///                                │   └── handshake: target ──┘ │   │
///                                └─ primary --force ───────────┴───┘ handshake: no sync / source
/// ```
///
/// i.e. Inconsistent → UpToDate | Consistent (sync done from a Consistent source);
/// Outdated → Inconsistent | UpToDate (`--force`) | Consistent (peer lost before sync);
/// Consistent → UpToDate | Outdated | Inconsistent; UpToDate → Consistent | Outdated | Inconsistent.
pub fn disk_allowed(prev: DiskState, next: DiskState) -> bool {
    use DiskState::*;
    matches!(
        (prev, next),
        (Inconsistent, UpToDate | Consistent)
            | (Outdated, Inconsistent | UpToDate | Consistent)
            | (Consistent, UpToDate | Outdated | Inconsistent)
            | (UpToDate, Consistent | Outdated | Inconsistent)
    )
}

/// Moves `state` to `next`, panicking on an edge that does not exist.
pub fn disk_transition(state: &mut DiskState, next: DiskState) {
    assert!(
        disk_allowed(*state, next),
        "disk state edge {state} -> {next} does not exist"
    );
    *state = next;
}

/// Role edges of the local node: Secondary ⇄ Primary (Unknown is only ever the peer's role).
///
/// ```text
///  Secondary ──primary──▶ Primary ──secondary──▶ Secondary
/// ```
pub fn role_allowed(prev: Role, next: Role) -> bool {
    matches!(
        (prev, next),
        (Role::Secondary, Role::Primary) | (Role::Primary, Role::Secondary)
    )
}

/// Moves `state` to `next`, panicking on an edge that does not exist.
pub fn role_transition(state: &mut Role, next: Role) {
    assert!(
        role_allowed(*state, next),
        "role edge {state} -> {next} does not exist"
    );
    *state = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_paths_exist() {
        use ConnState::*;
        let mut s = StandAlone;
        for next in [
            WFConnection,
            WFReportParams,
            WFBitMapS,
            SyncSource,
            Connected,
            VerifyS,
            Connected,
            WFConnection,
            Disconnecting,
            StandAlone,
        ] {
            conn_transition(&mut s, next);
        }
        let mut d = DiskState::Consistent;
        for next in [
            DiskState::Outdated,
            DiskState::Inconsistent,
            DiskState::UpToDate,
            DiskState::Consistent,
        ] {
            disk_transition(&mut d, next);
        }
        let mut r = Role::Secondary;
        role_transition(&mut r, Role::Primary);
        role_transition(&mut r, Role::Secondary);
    }

    #[test]
    #[should_panic(expected = "connection state edge StandAlone -> Connected does not exist")]
    fn standalone_cannot_jump_to_connected() {
        conn_transition(&mut ConnState::StandAlone, ConnState::Connected);
    }

    #[test]
    #[should_panic(expected = "connection state edge WFBitMapT -> SyncSource does not exist")]
    fn target_cannot_become_source_mid_handshake() {
        conn_transition(&mut ConnState::WFBitMapT, ConnState::SyncSource);
    }

    #[test]
    #[should_panic(expected = "disk state edge Inconsistent -> Outdated does not exist")]
    fn inconsistent_is_not_outdated() {
        disk_transition(&mut DiskState::Inconsistent, DiskState::Outdated);
    }

    #[test]
    #[should_panic(expected = "role edge Primary -> Primary does not exist")]
    fn no_self_edges_for_roles() {
        role_transition(&mut Role::Primary, Role::Primary);
    }

    #[test]
    fn no_self_edges_at_all() {
        use ConnState::*;
        for s in [
            StandAlone,
            Disconnecting,
            Unconnected,
            WFConnection,
            WFReportParams,
            Connected,
            StartingSyncS,
            StartingSyncT,
            WFBitMapS,
            WFBitMapT,
            SyncSource,
            SyncTarget,
            PausedSyncS,
            PausedSyncT,
            VerifyS,
            VerifyT,
        ] {
            assert!(!conn_allowed(s, s), "{s}");
        }
    }
}

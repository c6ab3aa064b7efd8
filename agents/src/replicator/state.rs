//! What the agent knows about a resource: `replicatorctl status --json RES` parsed once into
//! typed values ([`parse_status`]), and the DRBD agent's promotion-score rules over them
//! ([`score`]). Pure: no processes, no files.

use serde::Deserialize;

/// Disk states (DRBD's names, as replicatord reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    /// Diskless (replicatord: the resource is down).
    Diskless,
    /// Attaching.
    Attaching,
    /// Detaching.
    Detaching,
    /// Failed (an I/O error took the disk away).
    Failed,
    /// Negotiating.
    Negotiating,
    /// Inconsistent (fresh meta-data, or a sync target).
    Inconsistent,
    /// Outdated.
    Outdated,
    /// Unknown (a peer's, when not connected).
    DUnknown,
    /// Consistent.
    Consistent,
    /// UpToDate.
    UpToDate,
}

impl Disk {
    /// Parses a state name (case-insensitive).
    pub fn parse(s: &str) -> Option<Disk> {
        Some(match s.to_ascii_lowercase().as_str() {
            "diskless" => Disk::Diskless,
            "attaching" => Disk::Attaching,
            "detaching" => Disk::Detaching,
            "failed" => Disk::Failed,
            "negotiating" => Disk::Negotiating,
            "inconsistent" => Disk::Inconsistent,
            "outdated" => Disk::Outdated,
            "dunknown" | "unknown" => Disk::DUnknown,
            "consistent" => Disk::Consistent,
            "uptodate" => Disk::UpToDate,
            _ => return None,
        })
    }
}

/// One resource as replicatord reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResState {
    /// Known to replicatord but not up (`"up": false`; role Secondary, disk Diskless).
    Down,
    /// Up (disk attached).
    Up {
        /// Primary?
        primary: bool,
        /// Local disk.
        disk: Disk,
        /// The peers' disks (empty for a standalone resource).
        peer_disks: Vec<Disk>,
    },
}

/// The fields of `replicatorctl status --json RES` the agent uses (docs/replicator.md,
/// "Status"); others are ignored so that a newer replicatord adding fields stays readable.
#[derive(Debug, Deserialize)]
struct StatusJson {
    name: String,
    up: bool,
    role: String,
    disk_state: String,
    #[serde(default)]
    peers: Vec<PeerJson>,
}

#[derive(Debug, Deserialize)]
struct PeerJson {
    disk_state: String,
}

/// Parses `replicatorctl status --json RES` (one object, since RES is given) for resource
/// `name`.
pub fn parse_status(json: &str, name: &str) -> Result<ResState, String> {
    let s: StatusJson =
        serde_json::from_str(json).map_err(|e| format!("unexpected status JSON: {e}"))?;
    if s.name != name {
        return Err(format!(
            "status answered for resource {:?}, not {name:?}",
            s.name
        ));
    }
    if !s.up {
        return Ok(ResState::Down);
    }
    let primary = match s.role.as_str() {
        "Primary" => true,
        "Secondary" => false,
        other => return Err(format!("unknown role {other:?}")),
    };
    let disk = Disk::parse(&s.disk_state)
        .ok_or_else(|| format!("unknown disk state {:?}", s.disk_state))?;
    let peer_disks = s
        .peers
        .iter()
        .map(|p| {
            Disk::parse(&p.disk_state)
                .ok_or_else(|| format!("unknown peer disk state {:?}", p.disk_state))
        })
        .collect::<Result<_, _>>()?;
    Ok(ResState::Up {
        primary,
        disk,
        peer_disks,
    })
}

/// What to do with the promotion score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreChange {
    /// Set it.
    Set(i64),
    /// Delete it (no promotion here).
    Remove,
    /// Leave it (a transitional disk state).
    Keep,
}

/// The DRBD agent's `drbd_update_master_score` for one volume: `adjust` is
/// (only_consistent, only_remote, local_ok, as_good_as_it_gets).
pub fn score(state: &ResState, adjust: [i64; 4]) -> ScoreChange {
    let [only_consistent, only_remote, local_ok, best] = adjust;
    let ResState::Up {
        primary,
        disk,
        peer_disks,
    } = state
    else {
        return ScoreChange::Remove;
    };
    let peers_all_up_to_date =
        !peer_disks.is_empty() && peer_disks.iter().all(|d| *d == Disk::UpToDate);
    let any_peer_unknown = peer_disks.contains(&Disk::DUnknown);
    match disk {
        Disk::UpToDate if *primary || !any_peer_unknown => ScoreChange::Set(best),
        Disk::UpToDate => ScoreChange::Set(local_ok),
        _ if peers_all_up_to_date => ScoreChange::Set(only_remote),
        Disk::Attaching | Disk::Negotiating => ScoreChange::Keep,
        Disk::Consistent => ScoreChange::Set(only_consistent),
        _ => ScoreChange::Remove,
    }
}

/// Whether this node can reach good data at all: its disk is UpToDate or Consistent, or every
/// peer's is UpToDate. Without, `replicatorctl primary` is refused for good (waiting does not
/// help; only an operator's `primary --force` does), so promote fails at once instead of
/// retrying until its timeout.
pub fn has_good_data(state: &ResState) -> bool {
    match state {
        ResState::Down => false,
        ResState::Up {
            disk, peer_disks, ..
        } => {
            matches!(disk, Disk::UpToDate | Disk::Consistent)
                || (!peer_disks.is_empty() && peer_disks.iter().all(|d| *d == Disk::UpToDate))
        }
    }
}

/// Parses `adjust_master_score`.
pub fn parse_adjust(s: &str) -> Result<[i64; 4], String> {
    let v: Vec<i64> = s
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| "expected four integers")?;
    let a: [i64; 4] = v.try_into().map_err(|_| "expected exactly four integers")?;
    if a.windows(2).any(|w| w[0] > w[1]) {
        return Err("the four scores must not decrease".into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: [i64; 4] = [0, 10, 1000, 10000];

    fn up(primary: bool, disk: Disk, peers: &[Disk]) -> ResState {
        ResState::Up {
            primary,
            disk,
            peer_disks: peers.to_vec(),
        }
    }

    #[test]
    fn scores_follow_the_drbd_agent() {
        use Disk::*;
        let cases = [
            (up(true, UpToDate, &[DUnknown]), ScoreChange::Set(10000)),
            (up(false, UpToDate, &[UpToDate]), ScoreChange::Set(10000)),
            // SyncSource.
            (
                up(false, UpToDate, &[Inconsistent]),
                ScoreChange::Set(10000),
            ),
            // Standalone.
            (up(false, UpToDate, &[]), ScoreChange::Set(10000)),
            (up(false, UpToDate, &[DUnknown]), ScoreChange::Set(1000)),
            // SyncTarget.
            (up(false, Inconsistent, &[UpToDate]), ScoreChange::Set(10)),
            (up(false, Outdated, &[UpToDate]), ScoreChange::Set(10)),
            (up(false, Consistent, &[DUnknown]), ScoreChange::Set(0)),
            (up(false, Outdated, &[DUnknown]), ScoreChange::Remove),
            (up(false, Inconsistent, &[]), ScoreChange::Remove),
            (up(false, Failed, &[DUnknown]), ScoreChange::Remove),
            (up(false, Attaching, &[DUnknown]), ScoreChange::Keep),
            (ResState::Down, ScoreChange::Remove),
        ];
        for (state, want) in cases {
            assert_eq!(score(&state, DEF), want, "{state:?}");
        }
        assert_eq!(
            score(&up(false, Consistent, &[]), [5, 10, 1000, 10000]),
            ScoreChange::Set(5)
        );
    }

    #[test]
    fn good_data_is_local_uptodate_or_consistent_or_every_peer_uptodate() {
        use Disk::*;
        assert!(has_good_data(&up(false, UpToDate, &[])));
        assert!(has_good_data(&up(false, Consistent, &[DUnknown])));
        assert!(has_good_data(&up(false, Inconsistent, &[UpToDate])));
        assert!(!has_good_data(&up(false, Inconsistent, &[])));
        assert!(!has_good_data(&up(false, Outdated, &[DUnknown])));
        assert!(!has_good_data(&ResState::Down));
    }

    /// What replicatord 0.1 prints for a standalone resource, down and then Primary (captured
    /// from `replicatorctl status --json r0`).
    const REAL_DOWN: &str = r#"{
      "name": "r0", "node": "n1", "node_id": 0, "up": false, "role": "Secondary",
      "disk_state": "Diskless", "connection_state": "StandAlone",
      "export": {"uri": "nbd+unix:///r0?socket=/tmp/s/r0.nbd.sock", "open": false,
                 "refusal": "resource r0 is down on node n1"},
      "size_bytes": 0, "protocol": "C", "generation": null, "out_of_sync_bytes": 0,
      "activity_log": null,
      "io": {"written_bytes": 0, "writes": 0, "flushes": 0, "al_transactions": 0, "in_flight": 0},
      "peers": []
    }"#;
    const REAL_PRIMARY_WITH_PEER: &str = r#"{
      "name": "r0", "node": "n1", "node_id": 0, "up": true, "role": "Primary",
      "disk_state": "UpToDate", "connection_state": "StandAlone",
      "export": {"uri": "nbd+unix:///r0?socket=/tmp/s/r0.nbd.sock", "open": true, "refusal": null},
      "size_bytes": 67063808, "protocol": "C",
      "generation": {"current": "A1", "bitmap": "0", "history": ["0", "0"], "flags": 3},
      "out_of_sync_bytes": 0,
      "activity_log": {"active_extents": 0, "al_extents": 1237, "enabled": true},
      "io": {"written_bytes": 0, "writes": 0, "flushes": 0, "al_transactions": 0, "in_flight": 0},
      "peers": [{"node": "n2", "node_id": 1, "address": "10.0.0.2:7789",
                 "connection_state": "StandAlone", "role": "Unknown", "disk_state": "DUnknown",
                 "protocol": "C"}]
    }"#;

    #[test]
    fn replicatords_status_json_parses() {
        assert_eq!(parse_status(REAL_DOWN, "r0"), Ok(ResState::Down));
        assert_eq!(
            parse_status(REAL_PRIMARY_WITH_PEER, "r0"),
            Ok(up(true, Disk::UpToDate, &[Disk::DUnknown]))
        );
        let secondary = REAL_PRIMARY_WITH_PEER
            .replace("\"Primary\"", "\"Secondary\"")
            .replace("\"UpToDate\"", "\"Inconsistent\"");
        assert_eq!(
            parse_status(&secondary, "r0"),
            Ok(up(false, Disk::Inconsistent, &[Disk::DUnknown]))
        );
    }

    #[test]
    fn unexpected_status_is_an_error_naming_what() {
        let e = parse_status(REAL_DOWN, "r1").unwrap_err();
        assert!(e.contains("\"r0\"") && e.contains("r1"), "{e}");
        let bad_role = REAL_PRIMARY_WITH_PEER.replace("\"Primary\"", "\"Boss\"");
        assert!(parse_status(&bad_role, "r0").unwrap_err().contains("Boss"));
        let bad_disk = REAL_PRIMARY_WITH_PEER.replace("\"UpToDate\"", "\"Shiny\"");
        assert!(parse_status(&bad_disk, "r0").unwrap_err().contains("Shiny"));
        let bad_peer = REAL_PRIMARY_WITH_PEER.replace("\"DUnknown\"", "\"Lost\"");
        assert!(parse_status(&bad_peer, "r0").unwrap_err().contains("Lost"));
        assert!(
            parse_status(r#"{"name":"r0","role":"Primary"}"#, "r0")
                .unwrap_err()
                .contains("missing field")
        );
        assert!(parse_status("nope", "r0").is_err());
    }

    #[test]
    fn adjust_scores_parse() {
        assert_eq!(parse_adjust("0 10 1000 10000"), Ok(DEF));
        assert!(parse_adjust("0 10 1000").is_err());
        assert!(parse_adjust("0 10 x 10000").is_err());
        assert!(
            parse_adjust("0 1000 10 10000")
                .unwrap_err()
                .contains("decrease")
        );
    }
}

//! What `status` reports, as JSON (`replicatorctl status --json`) and as text in the style of
//! `drbdadm status`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One resource on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// Resource name.
    pub name: String,
    /// This node's name.
    pub node: String,
    /// This node's id.
    pub node_id: u8,
    /// Whether the resource is up (disk attached).
    pub up: bool,
    /// Role: Primary, Secondary (Secondary while down).
    pub role: String,
    /// Disk state (DRBD's words; Diskless while down).
    pub disk_state: String,
    /// State of the replication link(s) as a whole: StandAlone for a standalone resource.
    pub connection_state: String,
    /// The NBD export.
    pub export: ExportStatus,
    /// Exported size in bytes (0 while down).
    pub size_bytes: u64,
    /// Replication protocol.
    pub protocol: String,
    /// Generation identifiers (while up).
    pub generation: Option<GenerationStatus>,
    /// Blocks the peer misses, in bytes (bitmap).
    pub out_of_sync_bytes: u64,
    /// Activity log: extents hot now, and the table size.
    pub activity_log: Option<AlStatus>,
    /// Write counters since up.
    pub io: IoStatus,
    /// The peers, one per connection.
    pub peers: Vec<PeerStatus>,
    /// A resync or online verify in progress (`/proc/drbd`'s progress line).
    #[serde(default)]
    pub sync: Option<SyncStatus>,
    /// `/proc/drbd`'s counters (while up).
    #[serde(default)]
    pub counters: Option<Counters>,
    /// Why the resource is StandAlone, when a handshake refused the peer (split brain,
    /// unrelated data, protocol mismatch, ...).
    #[serde(default)]
    pub refusal: Option<String>,
    /// The last refusal was a split brain (both nodes hold changes the other lacks).
    #[serde(default)]
    pub split_brain: bool,
    /// The last online verify seen on this node.
    #[serde(default)]
    pub last_verify: Option<VerifyStatus>,
    /// The replication link: this node's address and what is wrong with it.
    #[serde(default)]
    pub link: Option<LinkStatus>,
    /// The last resync that finished on this node.
    #[serde(default)]
    pub last_resync: Option<ResyncStatus>,
}

/// A finished resync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncStatus {
    /// Bytes transferred.
    pub bytes: u64,
    /// From its start until the last block was durable on the target.
    pub seconds: f64,
    /// `SyncSource` or `SyncTarget`.
    pub role: String,
}

/// A resync or verify in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// `resync` or `verify`.
    pub kind: String,
    /// This node's side: `SyncSource`, `SyncTarget`, `VerifyS`, `VerifyT`.
    pub state: String,
    /// Done, percent (0..100).
    pub percent: f64,
    /// Bytes done.
    pub done_bytes: u64,
    /// Bytes to do at the start.
    pub total_bytes: u64,
    /// Bytes still to do.
    pub remaining_bytes: u64,
    /// Recent speed, KiB/s.
    pub speed_kib_s: u64,
    /// The rate controller's target, KiB/s (0 when not known here).
    pub want_kib_s: u64,
    /// Estimated time to finish, seconds (none while the speed is unknown).
    pub eta_seconds: Option<u64>,
    /// Blocks found different so far (verify).
    pub mismatched_blocks: u64,
}

/// The counters `/proc/drbd` shows (KiB, as there; counts for al and bm), and exact bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Network send: replicated and resync data sent, KiB.
    pub ns: u64,
    /// Network receive, KiB.
    pub nr: u64,
    /// Disk write, KiB.
    pub dw: u64,
    /// Disk read (resync, verify), KiB.
    pub dr: u64,
    /// Activity-log transactions.
    pub al: u64,
    /// Bitmap pages written.
    pub bm: u64,
    /// Local I/O in flight.
    pub lo: u64,
    /// Application requests in flight.
    pub ap: u64,
    /// Writes completed but not yet known durable on both nodes.
    pub ua: u64,
    /// Out of sync, KiB.
    pub oos: u64,
    /// Replicated application data sent, bytes.
    pub data_sent_bytes: u64,
    /// Replicated application data received, bytes.
    pub data_received_bytes: u64,
    /// Resync data sent, bytes.
    pub resync_sent_bytes: u64,
    /// Resync data received, bytes.
    pub resync_received_bytes: u64,
    /// Bytes written to the local disk.
    pub disk_written_bytes: u64,
    /// Bytes read from the local disk for replication.
    pub disk_read_bytes: u64,
    /// Bytes waiting in the send queue.
    pub send_queue_bytes: u64,
    /// Connections established since up.
    pub connections: u64,
    /// Disk writes carried out on the loop's thread (page cache, no thread hop).
    #[serde(default)]
    pub inline_writes: u64,
    /// Disk writes handed to the blocking pool.
    #[serde(default)]
    pub pooled_writes: u64,
    /// Inline writes that had to sleep (writes then went to the pool for a second).
    #[serde(default)]
    pub slow_inline_writes: u64,
}

/// The last online verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyStatus {
    /// Blocks (4 KiB) compared.
    pub checked_blocks: u64,
    /// Blocks found different (marked out of sync).
    pub mismatched_blocks: u64,
    /// It ran to the end.
    pub complete: bool,
    /// Verifies finished since up.
    pub runs: u64,
}

/// The replication link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// This node's replication address.
    pub address: String,
    /// Why the address cannot be listened on, if it cannot.
    pub listen_error: Option<String>,
}

/// The NBD export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    /// `nbd+unix:///NAME?socket=PATH` or `nbd://HOST:PORT/NAME`.
    pub uri: String,
    /// Whether clients are served (only while Primary).
    pub open: bool,
    /// Why clients are refused, when they are.
    pub refusal: Option<String>,
}

/// Generation identifiers, as `show-gi` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationStatus {
    /// Current UUID (hex).
    pub current: String,
    /// Bitmap UUID (hex).
    pub bitmap: String,
    /// History UUIDs (hex), newest first.
    pub history: Vec<String>,
    /// Meta-data flags (`Flags` bits).
    pub flags: u32,
}

/// Activity log state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlStatus {
    /// Extents in the log now.
    pub active_extents: u32,
    /// `al-extents` in use.
    pub al_extents: u32,
    /// Whether the log is kept (`al-updates`).
    pub enabled: bool,
}

/// Counters since the resource came up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStatus {
    /// Bytes written through the export.
    pub written_bytes: u64,
    /// Write requests (WRITE, TRIM, WRITE_ZEROES).
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// Activity-log transactions written.
    pub al_transactions: u64,
    /// Writes in flight now.
    pub in_flight: u64,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Peer node name.
    pub node: String,
    /// Peer node id.
    pub node_id: u8,
    /// The peer's replication address.
    pub address: String,
    /// Connection state (StandAlone until replication connects).
    pub connection_state: String,
    /// The peer's role (Unknown while not connected).
    pub role: String,
    /// The peer's disk (DUnknown while not connected).
    pub disk_state: String,
    /// Replication protocol of this link.
    pub protocol: String,
}

/// `/proc/drbd`'s progress bar and line, e.g.
/// `[==>.................] sync'ed: 18.6% (833/1024)M finish: 0:01:02 speed: 12,345 (10,000) K/sec`.
pub fn progress_line(s: &SyncStatus) -> String {
    const WIDTH: usize = 20;
    // 0..=20 after the clamp: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let filled = ((s.percent.clamp(0.0, 100.0) / 100.0) * WIDTH as f64) as usize;
    let mut bar = String::with_capacity(WIDTH + 2);
    bar.push('[');
    for i in 0..WIDTH {
        bar.push(if i + 1 < filled {
            '='
        } else if i + 1 == filled {
            '>'
        } else {
            '.'
        });
    }
    bar.push(']');
    let what = if s.kind == "verify" {
        "verified"
    } else {
        "sync'ed"
    };
    let (left, total, unit) = if s.total_bytes >= 10 << 20 {
        (s.remaining_bytes >> 20, s.total_bytes >> 20, 'M')
    } else {
        (s.remaining_bytes >> 10, s.total_bytes >> 10, 'K')
    };
    let finish = match s.eta_seconds {
        Some(t) => format!("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60),
        None => "-:--:--".to_owned(),
    };
    format!(
        "{bar} {what}: {:.1}% ({left}/{total}){unit} finish: {finish} speed: {} ({}) K/sec",
        (s.percent * 10.0).floor() / 10.0,
        thousands(s.speed_kib_s),
        thousands(s.want_kib_s)
    )
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `drbdadm status`-style text, with `/proc/drbd`'s progress line during a resync or verify
/// and its counters.
pub fn render_text(all: &[ResourceStatus]) -> String {
    let mut out = String::new();
    for s in all {
        if !s.up {
            let _ = writeln!(out, "{} role:{} (down)", s.name, s.role);
            let _ = writeln!(out, "  disk:{}", s.disk_state);
            let _ = writeln!(
                out,
                "  export:{} (refused: {})",
                s.export.uri,
                s.export.refusal.as_deref().unwrap_or("down")
            );
            continue;
        }
        let _ = writeln!(out, "{} role:{}", s.name, s.role);
        let oos = if s.out_of_sync_bytes > 0 {
            format!(" out-of-sync:{}KiB", s.out_of_sync_bytes / 1024)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  disk:{} size:{}KiB{oos}",
            s.disk_state,
            s.size_bytes / 1024
        );
        let state = if s.export.open {
            "open".to_owned()
        } else {
            format!("refused: {}", s.export.refusal.as_deref().unwrap_or(""))
        };
        let _ = writeln!(out, "  export:{} ({state})", s.export.uri);
        for p in &s.peers {
            let _ = writeln!(
                out,
                "  {} connection:{} role:{}",
                p.node, p.connection_state, p.role
            );
            let _ = writeln!(
                out,
                "    peer-disk:{} protocol:{}",
                p.disk_state, p.protocol
            );
            if let Some(sync) = &s.sync {
                let _ = writeln!(out, "    {}", progress_line(sync));
            }
        }
        if let Some(r) = &s.refusal {
            let what = if s.split_brain {
                "split brain"
            } else {
                "refused"
            };
            let _ = writeln!(out, "  StandAlone ({what}): {r}");
        }
        if let Some(l) = &s.link
            && let Some(e) = &l.listen_error
        {
            let _ = writeln!(out, "  link: {e}");
        }
        if let Some(v) = &s.last_verify {
            let _ = writeln!(
                out,
                "  last verify: {} blocks checked, {} out of sync{}",
                v.checked_blocks,
                v.mismatched_blocks,
                if v.complete { "" } else { " (cut short)" }
            );
        }
        if let Some(c) = &s.counters {
            let _ = writeln!(
                out,
                "    ns:{} nr:{} dw:{} dr:{} al:{} bm:{} lo:{} ap:{} ua:{} oos:{}",
                c.ns, c.nr, c.dw, c.dr, c.al, c.bm, c.lo, c.ap, c.ua, c.oos
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_looks_like_proc_drbd() {
        let s = SyncStatus {
            kind: "resync".into(),
            state: "SyncSource".into(),
            percent: 18.65,
            done_bytes: 191 << 20,
            total_bytes: 1024 << 20,
            remaining_bytes: 833 << 20,
            speed_kib_s: 12_345,
            want_kib_s: 10_000,
            eta_seconds: Some(62),
            mismatched_blocks: 0,
        };
        assert_eq!(
            progress_line(&s),
            "[==>.................] sync'ed: 18.6% (833/1024)M finish: 0:01:02 speed: 12,345 (10,000) K/sec"
        );
        let v = SyncStatus {
            kind: "verify".into(),
            state: "VerifyS".into(),
            percent: 100.0,
            done_bytes: 4096,
            total_bytes: 4096,
            remaining_bytes: 0,
            speed_kib_s: 0,
            want_kib_s: 0,
            eta_seconds: None,
            mismatched_blocks: 0,
        };
        assert_eq!(
            progress_line(&v),
            "[===================>] verified: 100.0% (0/4)K finish: -:--:-- speed: 0 (0) K/sec"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}

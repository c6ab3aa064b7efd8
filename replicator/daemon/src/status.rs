//! What `status` reports, as JSON (`replicatorctl status --json`) and as text in the style of
//! `drbdadm status`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// `drbdadm status`-style text.
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
        }
    }
    out
}

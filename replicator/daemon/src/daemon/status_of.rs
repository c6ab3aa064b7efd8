//! A resource's status, as `replicatorctl status` shows it: the replication machine's snapshot
//! (roles, disk and connection states of both nodes, progress) and the daemon's counters.

use replicator_core::bitmap::BLOCK_SIZE;
use replicator_core::protocol::handshake::Refusal;
use replicator_core::protocol::{Progress, Time};
use replicator_core::types::{ConnState, DiskState, Role};

use super::resource::{Res, State};
use super::up::{ClientOp, Up};
use crate::status::{
    AlStatus, Counters, ExportStatus, GenerationStatus, IoStatus, LinkStatus, PeerStatus,
    ResourceStatus, ResyncStatus, SyncStatus, VerifyStatus,
};

fn split_brain(r: &Refusal) -> bool {
    match r {
        Refusal::SplitBrain { .. } => true,
        Refusal::ByPeer(inner) => split_brain(inner),
        _ => false,
    }
}

fn sync_of(kind: &str, state: ConnState, p: &Progress, mismatched: u64, now: Time) -> SyncStatus {
    let total = p.total_blocks.max(p.remaining_blocks);
    let done = total - p.remaining_blocks;
    let percent = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    let elapsed = now.since(p.started).as_secs();
    // The controller's recent rate, or the average since the start.
    let speed = if p.rate_kib_s > 0 {
        p.rate_kib_s
    } else {
        (done * BLOCK_SIZE / 1024).checked_div(elapsed).unwrap_or(0)
    };
    let remaining_kib = p.remaining_blocks * BLOCK_SIZE / 1024;
    SyncStatus {
        kind: kind.to_owned(),
        state: state.to_string(),
        percent,
        done_bytes: done * BLOCK_SIZE,
        total_bytes: total * BLOCK_SIZE,
        remaining_bytes: p.remaining_blocks * BLOCK_SIZE,
        speed_kib_s: speed,
        want_kib_s: p.want_kib_s,
        eta_seconds: remaining_kib.checked_div(speed),
        mismatched_blocks: mismatched,
    }
}

impl Res {
    /// The resource's status.
    pub fn status(&self, node: &str, now: Time) -> ResourceStatus {
        let host_name = self.host.name();
        let peers_cfg: Vec<_> = self
            .cfg
            .connections_of(host_name)
            .filter_map(|c| c.ends(host_name).map(|(_, p)| (p.clone(), c.net.protocol)))
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
        let up = match &self.state {
            State::Up(up) => Some(&**up),
            _ => None,
        };
        let st = up.map(|u| u.replica.status());
        let conn = st.as_ref().map_or(ConnState::StandAlone, |s| s.conn);
        let peers = peers_cfg
            .iter()
            .map(|(p, proto)| PeerStatus {
                node: p.host.clone(),
                node_id: p.node_id.0,
                address: p.address.to_string(),
                connection_state: conn.to_string(),
                role: st
                    .as_ref()
                    .map_or(Role::Unknown, |s| s.peer_role)
                    .to_string(),
                disk_state: st
                    .as_ref()
                    .map_or(DiskState::DUnknown, |s| s.peer_disk)
                    .to_string(),
                protocol: proto.to_string(),
            })
            .collect();
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
            sync: None,
            counters: None,
            refusal: None,
            split_brain: false,
            last_verify: None,
            link: None,
            last_resync: None,
        };
        let (Some(up), Some(st)) = (up, st) else {
            return base;
        };
        let sync = if let Some(p) = &st.resync {
            Some(sync_of("resync", st.conn, p, 0, now))
        } else {
            st.verify
                .as_ref()
                .map(|(p, m)| sync_of("verify", st.conn, p, *m, now))
        };
        ResourceStatus {
            up: true,
            role: st.role.to_string(),
            disk_state: if up.failed.is_some() {
                DiskState::Failed.to_string()
            } else {
                st.disk.to_string()
            },
            size_bytes: up.data.len(),
            generation: Some(GenerationStatus {
                current: st.uuids.current.to_string(),
                bitmap: st.uuids.bitmap.to_string(),
                history: st.uuids.history.iter().map(ToString::to_string).collect(),
                flags: up.sb.flags.0,
            }),
            out_of_sync_bytes: st.out_of_sync_blocks * BLOCK_SIZE,
            activity_log: Some(AlStatus {
                active_extents: u32::try_from(st.al_extents).unwrap_or(u32::MAX),
                al_extents: up.al.table_size(),
                enabled: up.al_enabled,
            }),
            io: IoStatus {
                in_flight: client_in_flight(up),
                ..up.io.clone()
            },
            sync,
            counters: Some(counters(up, &st)),
            split_brain: st.refusal.as_ref().is_some_and(split_brain),
            refusal: st.refusal.as_ref().map(ToString::to_string),
            last_verify: up.last_verify.map(|v| VerifyStatus {
                checked_blocks: v.checked,
                mismatched_blocks: v.mismatched,
                complete: v.complete,
                runs: up.verifies,
            }),
            link: up.link.as_ref().map(|l| LinkStatus {
                address: l.local().to_string(),
                listen_error: l.listen_error().map(str::to_owned),
            }),
            last_resync: up.last_resync.map(|r| ResyncStatus {
                bytes: r.bytes,
                seconds: r.seconds,
                role: if r.source { "SyncSource" } else { "SyncTarget" }.to_owned(),
            }),
            ..base
        }
    }
}

fn client_in_flight(up: &Up) -> u64 {
    let flushes = up
        .clients
        .values()
        .filter(|c| matches!(c, ClientOp::Flush(_)))
        .count();
    (up.ops.len() + flushes + up.held.len()) as u64
}

fn counters(up: &Up, st: &replicator_core::protocol::Status) -> Counters {
    let c = &up.counters;
    let kib = |b: u64| b / 1024;
    Counters {
        ns: kib(c.net_sent),
        nr: kib(c.net_received),
        dw: kib(c.disk_written),
        dr: kib(c.disk_read),
        al: up.io.al_transactions,
        bm: c.bitmap_writes,
        lo: up.local_in_flight,
        ap: client_in_flight(up),
        ua: st.unsettled_writes as u64,
        oos: kib(st.out_of_sync_blocks * BLOCK_SIZE),
        data_sent_bytes: c.data_sent,
        data_received_bytes: c.data_received,
        resync_sent_bytes: c.resync_sent,
        resync_received_bytes: c.resync_received,
        disk_written_bytes: c.disk_written,
        disk_read_bytes: c.disk_read,
        send_queue_bytes: up.link.as_ref().map_or(0, |l| l.send_queue_bytes()),
        connections: up.link.as_ref().map_or(0, |l| l.counters.connections),
        inline_writes: up.inline.inline,
        pooled_writes: up.inline.pooled,
        slow_inline_writes: up.inline.slow,
    }
}

//! A resource's status, as `replicatorctl status` shows it.

use replicator_core::meta::META_BLOCK;
use replicator_core::types::{ConnState, DiskState, Role};

use super::resource::{Res, State};
use crate::status::{
    AlStatus, ExportStatus, GenerationStatus, IoStatus, PeerStatus, ResourceStatus,
};

impl Res {
    /// The resource's status.
    pub fn status(&self, node: &str) -> ResourceStatus {
        let host_name = self.host.name();
        let peers_cfg: Vec<_> = self
            .cfg
            .connections_of(host_name)
            .filter_map(|c| c.ends(host_name).map(|(_, p)| (p.clone(), c.net.protocol)))
            .collect();
        let conn = match &self.state {
            State::Up(up) => up.conn,
            _ => ConnState::StandAlone,
        };
        let peers = peers_cfg
            .iter()
            .map(|(p, proto)| PeerStatus {
                node: p.host.clone(),
                node_id: p.node_id.0,
                address: p.address.to_string(),
                connection_state: conn.to_string(),
                role: Role::Unknown.to_string(),
                disk_state: DiskState::DUnknown.to_string(),
                protocol: proto.to_string(),
            })
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
        };
        match &self.state {
            State::Up(up) => ResourceStatus {
                up: true,
                role: up.role.to_string(),
                disk_state: up.disk.to_string(),
                size_bytes: up.layout.data_bytes,
                generation: Some(GenerationStatus {
                    current: up.sb.gi.current.to_string(),
                    bitmap: up.sb.gi.bitmap.to_string(),
                    history: up.sb.gi.history.iter().map(ToString::to_string).collect(),
                    flags: up.sb.flags.0,
                }),
                out_of_sync_bytes: up.bitmap.count() * META_BLOCK,
                activity_log: Some(AlStatus {
                    active_extents: u32::try_from(up.al.active().len()).expect("fits"),
                    al_extents: up.al.table_size(),
                    enabled: up.al_enabled,
                }),
                io: IoStatus {
                    in_flight: u64::try_from(up.running.len() + up.waiting.len() + up.parked.len())
                        .expect("fits"),
                    ..up.io.clone()
                },
                ..base
            },
            _ => base,
        }
    }
}

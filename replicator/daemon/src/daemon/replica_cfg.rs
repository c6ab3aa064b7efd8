//! The `.res` configuration of one resource, as this node's replication state machine sees it
//! (`replicator_core::protocol::ReplicaConfig`), and the link settings of its connection.

use std::time::Duration;

use replicator_core::config::{
    AfterSb0Pri as CfgSb0, AfterSb1Pri as CfgSb1, AfterSb2Pri as CfgSb2, Connection, DigestAlg,
    Fencing as CfgFencing, Host, Resource,
};
use replicator_core::protocol::rate::RateConfig;
use replicator_core::protocol::split_brain::{
    AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, AfterSbPolicies,
};
use replicator_core::protocol::verify::VerifyAlg;
use replicator_core::protocol::{Fencing, ReplicaConfig};
use replicator_core::types::NodeId;
use replicator_core::wire::preamble::MAX_NAME_BYTES;

/// The connection of `host` in `res` (two-node resources have exactly one).
pub fn connection<'a>(res: &'a Resource, host: &'a Host) -> Option<&'a Connection> {
    res.connections_of(host.name()).next()
}

/// Builds the machine's configuration. `size_bytes` is the usable data size (a multiple of
/// 4 KiB), `al_extents` the activity-log size actually in use (clamped to the meta-data's ring).
/// Errors name what cannot be replicated.
pub fn replica_config(
    res: &Resource,
    host: &Host,
    size_bytes: u64,
    al_extents: u32,
) -> Result<ReplicaConfig, String> {
    if res.name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "resource name of {} bytes is longer than the {MAX_NAME_BYTES} bytes replication supports",
            res.name.len()
        ));
    }
    let conn = connection(res, host);
    let (peer_id, net, resync) = match conn {
        Some(c) => {
            let (_, peer) = c.ends(host.name()).expect("connection of this host");
            (peer.node_id, c.net.clone(), c.resync.clone())
        }
        None => (
            NodeId(if host.node_id.0 == 0 { 1 } else { 0 }),
            res.net.clone(),
            host.resync.clone(),
        ),
    };
    let mut cfg = ReplicaConfig::new(host.node_id, peer_id, size_bytes, net.protocol);
    cfg.standalone = conn.is_none();
    cfg.allow_two_primaries = net.allow_two_primaries;
    cfg.fencing = match net.fencing {
        CfgFencing::DontCare => Fencing::DontCare,
        CfgFencing::ResourceOnly => Fencing::ResourceOnly,
        CfgFencing::ResourceAndStonith => Fencing::ResourceAndStonith,
    };
    cfg.verify_alg = match net.verify_alg {
        None => None,
        Some(DigestAlg::Crc32c) => Some(VerifyAlg::Crc32c),
        Some(DigestAlg::Sha1) => Some(VerifyAlg::Sha1),
        Some(other) => {
            return Err(format!(
                "verify-alg {} is not implemented (use crc32c or sha1)",
                other.word()
            ));
        }
    };
    let name_to_id = |name: &str| -> Result<NodeId, String> {
        res.hosts
            .iter()
            .find(|h| h.matches(name))
            .map(|h| h.node_id)
            .ok_or_else(|| format!("after-sb-0pri discard-node-{name}: no such host"))
    };
    let zero_pri = match &net.after_sb_0pri {
        CfgSb0::Disconnect => AfterSb0Pri::Disconnect,
        CfgSb0::DiscardYoungerPrimary => AfterSb0Pri::DiscardYoungerPrimary,
        CfgSb0::DiscardOlderPrimary => AfterSb0Pri::DiscardOlderPrimary,
        CfgSb0::DiscardZeroChanges => AfterSb0Pri::DiscardZeroChanges,
        CfgSb0::DiscardLeastChanges => AfterSb0Pri::DiscardLeastChanges,
        // drbdadm's per-node spellings: as policies both nodes must agree on, they become the
        // node they name (discard-local on A and discard-remote on B both mean "discard A").
        CfgSb0::DiscardLocal => AfterSb0Pri::DiscardNode(host.node_id),
        CfgSb0::DiscardRemote => AfterSb0Pri::DiscardNode(peer_id),
        CfgSb0::DiscardNode(n) => AfterSb0Pri::DiscardNode(name_to_id(n)?),
    };
    let one_pri = match net.after_sb_1pri {
        CfgSb1::Disconnect => AfterSb1Pri::Disconnect,
        CfgSb1::Consensus => AfterSb1Pri::Consensus,
        CfgSb1::DiscardSecondary => AfterSb1Pri::DiscardSecondary,
        CfgSb1::CallPriLostAfterSb => AfterSb1Pri::CallPriLostAfterSb,
        CfgSb1::ViolentlyAs0p => AfterSb1Pri::ViolentlyAs0p,
    };
    let two_pri = match net.after_sb_2pri {
        CfgSb2::Disconnect => AfterSb2Pri::Disconnect,
        CfgSb2::CallPriLostAfterSb => AfterSb2Pri::CallPriLostAfterSb,
        CfgSb2::ViolentlyAs0p => AfterSb2Pri::ViolentlyAs0p,
    };
    cfg.after_sb = AfterSbPolicies {
        zero_pri,
        one_pri,
        two_pri,
    };
    cfg.rate = RateConfig {
        resync_rate_kib_s: resync.resync_rate_kib_s,
        c_plan_ahead_ds: resync.c_plan_ahead_ms / 100,
        c_fill_target_sectors: u32::try_from(resync.c_fill_target_bytes / 512).unwrap_or(u32::MAX),
        c_delay_target_ds: resync.c_delay_target_ms / 100,
        c_max_rate_kib_s: if resync.c_max_rate_kib_s == 0 {
            u32::MAX / 4
        } else {
            resync.c_max_rate_kib_s
        },
        c_min_rate_kib_s: resync.c_min_rate_kib_s,
    };
    cfg.al_extents = al_extents;
    // DRBD's max-buffers (pages of 4 KiB on the receiving side, 2048 = 8 MiB by default) bounds
    // what a resync keeps in flight: the resync window.
    cfg.limits.resync_window_bytes = u64::from(net.max_buffers.max(32)) * 4096;
    cfg.ping_int = Duration::from_millis(u64::from(net.ping_int_ms.max(100)));
    cfg.ping_timeout = Duration::from_millis(u64::from(net.ping_timeout_ms.max(100)));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicator_core::types::Protocol;

    fn load(text: &str) -> replicator_core::config::Config {
        replicator_core::config::parse_str("r.res", text)
            .expect("parses")
            .config
    }

    #[test]
    fn two_nodes_map_every_replication_setting() {
        let c = load(
            "resource r0 {
               protocol B;
               net { allow-two-primaries no; verify-alg sha1; after-sb-0pri discard-node-b;
                     after-sb-1pri discard-secondary; ping-int 2; ping-timeout 7; }
               disk { resync-rate 10M; c-plan-ahead 0; c-max-rate 200M; c-min-rate 1M; al-extents 500; }
               device /dev/drbd0; meta-disk internal;
               on a { node-id 0; disk /a.img; address 10.0.0.1:7789; }
               on b { node-id 1; disk /b.img; address 10.0.0.2:7789; }
             }",
        );
        let r = &c.resources[0];
        let cfg = replica_config(r, r.host("b").unwrap(), 1 << 30, 500).unwrap();
        assert_eq!((cfg.node_id, cfg.peer_node_id), (NodeId(1), NodeId(0)));
        assert_eq!(cfg.protocol, Protocol::B);
        assert!(!cfg.standalone);
        assert_eq!(cfg.verify_alg, Some(VerifyAlg::Sha1));
        assert_eq!(cfg.after_sb.zero_pri, AfterSb0Pri::DiscardNode(NodeId(1)));
        assert_eq!(cfg.after_sb.one_pri, AfterSb1Pri::DiscardSecondary);
        assert_eq!(cfg.fencing, Fencing::DontCare, "DRBD's default");
        assert_eq!(
            (
                cfg.rate.resync_rate_kib_s,
                cfg.rate.c_plan_ahead_ds,
                cfg.rate.c_max_rate_kib_s,
                cfg.rate.c_min_rate_kib_s
            ),
            (10240, 0, 204_800, 1024)
        );
        assert_eq!(
            (cfg.ping_int, cfg.ping_timeout),
            (Duration::from_secs(2), Duration::from_millis(700))
        );
        assert_eq!(cfg.al_extents, 500);
        assert_eq!(
            cfg.limits.resync_window_bytes,
            8 << 20,
            "max-buffers 2048 pages"
        );
    }

    #[test]
    fn one_node_is_standalone_and_unsupported_digests_are_named() {
        let c =
            load("resource r0 { device /dev/drbd0; disk /a.img; meta-disk internal; on a { } }");
        let r = &c.resources[0];
        let cfg = replica_config(r, r.host("a").unwrap(), 1 << 20, 1237).unwrap();
        assert!(cfg.standalone);
        let c = load(
            "resource r0 { disk { fencing resource-only; } device /dev/drbd0; meta-disk internal;
               on a { disk /a.img; address 10.0.0.1:7789; } on b { disk /b.img; address 10.0.0.2:7789; } }",
        );
        let r = &c.resources[0];
        let cfg = replica_config(r, r.host("a").unwrap(), 1 << 20, 1237).unwrap();
        assert_eq!(cfg.fencing, Fencing::ResourceOnly);
        let c = load(
            "resource r0 { net { verify-alg md5; } device /dev/drbd0; meta-disk internal;
               on a { disk /a.img; address 10.0.0.1:7789; } on b { disk /b.img; address 10.0.0.2:7789; } }",
        );
        let r = &c.resources[0];
        assert_eq!(
            replica_config(r, r.host("a").unwrap(), 1 << 20, 1237).unwrap_err(),
            "verify-alg md5 is not implemented (use crc32c or sha1)"
        );
    }
}

//! Resolution of one parsed resource: volume inheritance into `on` sections, node ids,
//! connections (explicit, meshes, or implicit between two hosts), typed options, and the
//! checks that span resources. drbdadm's `post_parse` and `expand_common` are the model.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::build::{RawRes, RawVol};
use super::error::{ConfigError, Pos, Warning};
use super::model::*;
use super::options::Value;
use super::typed::{disk_options, handlers, net_options, resync_options};
use crate::types::{NodeId, Protocol};

/// Resolves one resource: inheritance, volumes, node ids, connections, typed options.
pub(super) fn finish(
    warnings: &mut Vec<Warning>,
    mut raw: RawRes,
    common: &Sections,
) -> Result<Resource, ConfigError> {
    let name = raw.name.clone();
    if raw.hosts.is_empty() {
        return Err(ConfigError::new(
            &raw.pos,
            format!("resource '{name}' has no 'on HOSTNAME {{ ... }}' section"),
        ));
    }
    raw.sections.inherit(common);

    // Volumes: replicatord serves one volume per resource.
    let vnr = resolve_volume_number(&raw)?;
    let res_vol = pick_volume(&raw.vol, &raw.volumes, vnr);

    let mut hosts: Vec<Host> = Vec::with_capacity(raw.hosts.len());
    for (i, h) in raw.hosts.iter().enumerate() {
        for earlier in &raw.hosts[..i] {
            for n in &h.names {
                if earlier.names.iter().any(|e| hostnames_equal(e, n)) {
                    return Err(ConfigError::new(
                        &h.pos,
                        format!(
                            "host '{n}' has two sections in resource '{name}' (the first at {})",
                            earlier.pos
                        ),
                    ));
                }
            }
        }
        let hv = pick_volume(&h.vol, &h.volumes, vnr);
        let here = format!("'on {}' of resource '{name}'", h.names.join(" "));
        let (device, device_pos) = hv
            .device
            .clone()
            .or_else(|| res_vol.device.clone())
            .ok_or_else(|| {
                ConfigError::new(
                    &h.pos,
                    format!("{here}: 'device' missing (set it in the resource or in this section)"),
                )
            })?;
        let (disk, _) = hv
            .disk
            .clone()
            .or_else(|| res_vol.disk.clone())
            .ok_or_else(|| {
                ConfigError::new(
                    &h.pos,
                    format!("{here}: 'disk' missing (set it in the resource or in this section)"),
                )
            })?;
        let meta_disk = match (&disk, hv.meta.clone().or_else(|| res_vol.meta.clone())) {
            (_, Some((m, _))) => m,
            (Disk::None, None) => MetaDisk::Internal,
            (Disk::Path(_), None) => {
                return Err(ConfigError::new(
                    &h.pos,
                    format!("{here}: 'meta-disk' missing (meta-disk internal; or meta-disk PATH;)"),
                ));
            }
        };
        // Disk options: host volume < resource volume < resource (incl. common).
        let mut opts = hv.opts.clone();
        opts.inherit(&res_vol.opts);
        let mut disk_map = opts.disk.clone();
        inherit(&mut disk_map, &raw.sections.disk);
        let mut pd_map = opts.peer_device.clone();
        inherit(&mut pd_map, &raw.sections.peer_device);
        let mut disk_settings = disk_map.clone();
        disk_settings.extend(pd_map.iter().map(|(k, v)| (*k, v.clone())));
        hosts.push(Host {
            names: h.names.clone(),
            floating: h.floating,
            node_id: NodeId(0),
            node_id_implicit: false,
            address: h.address.as_ref().map(|(a, _)| *a),
            device,
            disk,
            meta_disk,
            disk_options: disk_options(&disk_map),
            resync: resync_options(&pd_map),
            disk_settings,
            pos: h.pos.clone(),
            device_pos,
        });
    }
    assign_node_ids(&raw, &mut hosts)?;

    // Connections: explicit, from meshes, or implicit between two hosts.
    let res_net = net_options(&raw.sections.net);
    let mut connections = Vec::new();
    for c in &raw.conns {
        let mut eps = Vec::with_capacity(2);
        for e in &c.endpoints {
            let host = hosts
                .iter()
                .find(|h| h.names.iter().any(|n| hostnames_equal(n, &e.host)))
                .ok_or_else(|| ConfigError::new(&e.pos, format!("connection names host '{}', which has no 'on' section in resource '{name}'", e.host)))?;
            let mut address = e.address.or(host.address).ok_or_else(|| {
                ConfigError::new(
                    &e.pos,
                    format!(
                        "no address for host '{}': give 'address' in its 'on' section or here",
                        e.host
                    ),
                )
            })?;
            if let Some(p) = e.port {
                address.port = p;
            }
            eps.push(Endpoint {
                host: host.name().to_owned(),
                node_id: host.node_id,
                address,
            });
        }
        let [a, b]: [Endpoint; 2] = eps.try_into().expect("two endpoints checked at parse");
        if a.host == b.host {
            return Err(ConfigError::new(
                &c.pos,
                format!("both ends of this connection are host '{}'", a.host),
            ));
        }
        let mut net = c.opts.net.clone();
        inherit(&mut net, &raw.sections.net);
        let mut pd = c.opts.peer_device.clone();
        inherit(&mut pd, &raw.sections.peer_device);
        connections.push(Connection {
            endpoints: [a, b],
            net: net_options(&net),
            resync: resync_options(&pd),
            implicit: false,
            net_settings: c.opts.net.clone(),
            peer_device_settings: c.opts.peer_device.clone(),
            pos: c.pos.clone(),
        });
    }
    for m in &raw.meshes {
        let mut members: Vec<&Host> = Vec::new();
        for (n, p) in &m.hosts {
            let h = hosts
                .iter()
                .find(|h| h.names.iter().any(|x| hostnames_equal(x, n)))
                .ok_or_else(|| ConfigError::new(p, format!("connection-mesh names host '{n}', which has no 'on' section in resource '{name}'")))?;
            members.push(h);
        }
        for i in 0..members.len() {
            for j in i + 1..members.len() {
                let (a, b) = (members[i], members[j]);
                if a.name() == b.name()
                    || connections.iter().any(|c: &Connection| {
                        c.ends(a.name()).is_some_and(|(_, o)| o.host == b.name())
                    })
                {
                    continue;
                }
                let mut net = m.net.clone();
                inherit(&mut net, &raw.sections.net);
                connections.push(Connection {
                    endpoints: [endpoint_of(a, &m.pos)?, endpoint_of(b, &m.pos)?],
                    net: net_options(&net),
                    resync: resync_options(&raw.sections.peer_device),
                    implicit: true,
                    net_settings: m.net.clone(),
                    peer_device_settings: OptionMap::new(),
                    pos: m.pos.clone(),
                });
            }
        }
    }
    if raw.conns.is_empty() && raw.meshes.is_empty() {
        match hosts.len() {
            1 => {}
            2 => connections.push(Connection {
                endpoints: [
                    endpoint_of(&hosts[0], &hosts[0].pos)?,
                    endpoint_of(&hosts[1], &hosts[1].pos)?,
                ],
                net: res_net.clone(),
                resync: resync_options(&raw.sections.peer_device),
                implicit: true,
                net_settings: OptionMap::new(),
                peer_device_settings: OptionMap::new(),
                pos: raw.pos.clone(),
            }),
            n => {
                return Err(ConfigError::new(
                    &raw.pos,
                    format!(
                        "resource '{name}' has {n} 'on' sections: say which hosts replicate with 'connection-mesh {{ hosts ...; }}' or 'connection' sections"
                    ),
                ));
            }
        }
    }
    for c in &connections {
        if c.endpoints[0].address == c.endpoints[1].address {
            return Err(ConfigError::new(
                &c.pos,
                format!(
                    "hosts '{}' and '{}' have the same address {}",
                    c.endpoints[0].host, c.endpoints[1].host, c.endpoints[0].address
                ),
            ));
        }
    }

    // Policies that name or constrain things.
    for (map, label) in std::iter::once((&raw.sections.net, "resource"))
        .chain(raw.conns.iter().map(|c| (&c.opts.net, "connection")))
    {
        if let Some(Setting {
            value: Value::Text(v),
            pos,
        }) = map.get("after-sb-0pri")
            && let Some(node) = v.strip_prefix("discard-node-")
            && !hosts
                .iter()
                .any(|h| h.names.iter().any(|n| hostnames_equal(n, node)))
        {
            return Err(ConfigError::new(
                pos,
                format!(
                    "after-sb-0pri names node '{node}', which has no 'on' section in resource '{name}' ({label} level)"
                ),
            ));
        }
    }
    for c in &connections {
        if c.net.allow_two_primaries && c.net.protocol != Protocol::C {
            let at = c
                .net_settings
                .get("allow-two-primaries")
                .or_else(|| raw.sections.net.get("allow-two-primaries"))
                .map_or(&c.pos, |s| &s.pos);
            return Err(ConfigError::new(
                at,
                format!(
                    "allow-two-primaries needs protocol C; the link {} - {} uses protocol {}",
                    c.endpoints[0].host, c.endpoints[1].host, c.net.protocol
                ),
            ));
        }
    }

    // Kernel device names map to the default NBD socket: say so once per statement.
    let mut told: Vec<Pos> = Vec::new();
    for h in &hosts {
        if let Device::Kernel { path, .. } = &h.device
            && !told.contains(&h.device_pos)
        {
            told.push(h.device_pos.clone());
            let uri = h.device.export(&name, "STATE_DIR").uri();
            warnings.push(Warning { pos: h.device_pos.clone(), message: format!(
                    "device {path} is a DRBD kernel device name; replicatord has no kernel device and exports resource '{name}' over NBD at {uri} (STATE_DIR is the daemon's --state-dir, /run/replicatord by default)"
                ) });
        }
    }

    Ok(Resource {
        name,
        volume: vnr,
        hosts,
        connections,
        net: res_net,
        handlers: handlers(&raw.sections.handlers),
        settings: raw.sections,
        pos: raw.pos,
    })
}

/// Checks across resources: one device per minor or export and one resource per address on
/// each host.
pub(super) fn cross_checks(resources: &[Resource]) -> Result<(), ConfigError> {
    let mut addrs: BTreeMap<(IpAddr, u16), (&str, &Pos)> = BTreeMap::new();
    let mut devices: Vec<(&str, &Host, &Resource)> = Vec::new();
    for r in resources {
        for h in &r.hosts {
            if let Some(a) = h.address {
                match addrs.get(&(a.ip, a.port)) {
                    Some((other, p)) if *other != r.name => {
                        return Err(ConfigError::new(
                            &h.pos,
                            format!(
                                "address {a} of resource '{}' is also used by resource '{other}' ({p})",
                                r.name
                            ),
                        ));
                    }
                    _ => {
                        addrs.insert((a.ip, a.port), (&r.name, &h.pos));
                    }
                }
            }
            for (other_name, oh, or) in &devices {
                if !h
                    .names
                    .iter()
                    .any(|n| oh.names.iter().any(|o| hostnames_equal(n, o)))
                {
                    continue;
                }
                let clash = match (&h.device, &oh.device) {
                    (Device::Kernel { minor: a, .. }, Device::Kernel { minor: b, .. }) => a == b,
                    (
                        a @ (Device::NbdUnix { .. } | Device::NbdTcp { .. }),
                        b @ (Device::NbdUnix { .. } | Device::NbdTcp { .. }),
                    ) => a.export(&r.name, "") == b.export(&or.name, ""),
                    _ => false,
                };
                if clash {
                    return Err(ConfigError::new(
                        &h.device_pos,
                        format!(
                            "device {} of resource '{}' on '{}' is also the device of resource '{other_name}' ({})",
                            h.device.render(),
                            r.name,
                            h.name(),
                            oh.device_pos
                        ),
                    ));
                }
            }
        }
        for h in &r.hosts {
            devices.push((&r.name, h, r));
        }
    }
    Ok(())
}

fn endpoint_of(h: &Host, at: &Pos) -> Result<Endpoint, ConfigError> {
    let address = h.address.ok_or_else(|| {
        ConfigError::new(
            if h.pos.line > 0 { &h.pos } else { at },
            format!(
                "host '{}' has no 'address' (needed to replicate with its peers)",
                h.name()
            ),
        )
    })?;
    Ok(Endpoint {
        host: h.name().to_owned(),
        node_id: h.node_id,
        address,
    })
}

/// The one volume number of the resource (0 when only implicit volumes are used).
fn resolve_volume_number(raw: &RawRes) -> Result<u32, ConfigError> {
    let mut seen: BTreeMap<u32, Pos> = BTreeMap::new();
    let levels = std::iter::once((&raw.vol, &raw.volumes[..], &raw.pos))
        .chain(raw.hosts.iter().map(|h| (&h.vol, &h.volumes[..], &h.pos)));
    for (vol, volumes, at) in levels {
        if vol.used && !volumes.is_empty() {
            return Err(ConfigError::new(
                &volumes[0].2,
                "explicit 'volume N { }' sections and implicit volume statements (device/disk/meta-disk outside a volume) cannot be mixed in one section",
            ));
        }
        if vol.used {
            seen.entry(0).or_insert_with(|| at.clone());
        }
        for (i, (n, _, p)) in volumes.iter().enumerate() {
            if let Some((_, _, first)) = volumes[..i].iter().find(|(m, _, _)| m == n) {
                return Err(ConfigError::new(
                    p,
                    format!("volume {n} is defined twice in one section (first at {first})"),
                ));
            }
            seen.entry(*n).or_insert_with(|| p.clone());
        }
    }
    if seen.len() > 1 {
        let list: Vec<String> = seen.keys().map(u32::to_string).collect();
        let (_, p) = seen.iter().nth(1).expect("two entries");
        return Err(ConfigError::new(
            p,
            format!(
                "resource '{}' has volumes {}: replicatord serves one volume per resource (make each volume a resource of its own)",
                raw.name,
                list.join(", ")
            ),
        ));
    }
    Ok(seen.keys().next().copied().unwrap_or(0))
}

/// The settings of volume `vnr` at one level (implicit or explicit).
fn pick_volume(vol: &RawVol, volumes: &[(u32, RawVol, Pos)], vnr: u32) -> RawVol {
    if vol.used || volumes.is_empty() {
        // Implicit (or only options): resource-level `disk { }` options live in Sections.
        return vol.clone();
    }
    volumes
        .iter()
        .find(|(n, _, _)| *n == vnr)
        .map(|(_, v, _)| v.clone())
        .unwrap_or_default()
}

/// drbd-utils' crc32c: reflected Castagnoli polynomial, `seed` as the initial value and no
/// final inversion (`crc32c(seed, buf)` in drbdtool_common.c). Used only to assign node ids
/// exactly as drbdadm does; a bitwise loop is enough for a few bytes.
fn crc32c_drbd(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Explicit node ids, or — for exactly two hosts without any — the ids drbdadm assigns
/// (DRBD 8.4 compatibility): the host whose address hashes higher (crc32c of the address
/// text, seed 0x1a656f21, compared as signed) gets 0. A single host defaults to 0.
fn assign_node_ids(raw: &RawRes, hosts: &mut [Host]) -> Result<(), ConfigError> {
    let explicit: Vec<Option<u8>> = raw
        .hosts
        .iter()
        .map(|h| h.node_id.as_ref().map(|(n, _)| *n))
        .collect();
    if explicit.iter().all(Option::is_some) {
        for (h, id) in hosts.iter_mut().zip(&explicit) {
            h.node_id = NodeId(id.expect("all explicit"));
        }
    } else if explicit.iter().all(Option::is_none) && hosts.len() <= 2 {
        if hosts.len() == 1 {
            hosts[0].node_id = NodeId(0);
        } else {
            let hash = |h: &Host| -> Result<i32, ConfigError> {
                let a = h.address.ok_or_else(|| {
                    ConfigError::new(
                        &h.pos,
                        format!(
                            "host '{}' has no 'address' (needed to replicate with its peer)",
                            h.name()
                        ),
                    )
                })?;
                let text = a.ip.to_string();
                Ok(i32::from_ne_bytes(
                    crc32c_drbd(0x1a65_6f21, text.as_bytes()).to_ne_bytes(),
                ))
            };
            let (h0, h1) = (hash(&hosts[0])?, hash(&hosts[1])?);
            if h0 == h1 {
                return Err(ConfigError::new(
                    &raw.pos,
                    "cannot assign node ids (equal address hashes): give each 'on' section a 'node-id'",
                ));
            }
            let (a, b) = if h0 > h1 { (0, 1) } else { (1, 0) };
            hosts[0].node_id = NodeId(a);
            hosts[1].node_id = NodeId(b);
        }
        for h in hosts.iter_mut() {
            h.node_id_implicit = true;
        }
    } else {
        let missing = raw
            .hosts
            .iter()
            .find(|h| h.node_id.is_none())
            .expect("some missing");
        return Err(ConfigError::new(
            &missing.pos,
            format!(
                "'on {}' has no 'node-id' (needed when any host has one, or with more than two hosts)",
                missing.names.join(" ")
            ),
        ));
    }
    for (i, h) in raw.hosts.iter().enumerate() {
        if let Some((id, p)) = &h.node_id
            && let Some(o) = raw.hosts[..i]
                .iter()
                .find(|o| o.node_id.as_ref().map(|(n, _)| *n) == Some(*id))
        {
            return Err(ConfigError::new(
                p,
                format!(
                    "node-id {id} is also the node id of 'on {}'",
                    o.names.join(" ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_drbd_utils_node_id_choice() {
        // Pairs observed with drbdadm 9.22 (`drbdadm -c FILE dump` without node-ids):
        // (first address, second address, node id of the first).
        let cases = [
            ("192.168.99.1", "192.168.99.2", 1),
            ("10.0.0.1", "10.0.0.2", 0),
            ("10.0.0.2", "10.0.0.1", 1),
            ("10.0.0.1", "10.0.0.3", 1),
            ("10.0.0.5", "10.0.0.6", 0),
            ("192.168.99.3", "192.168.99.2", 0),
        ];
        for (a, b, want) in cases {
            let h =
                |s: &str| i32::from_ne_bytes(crc32c_drbd(0x1a65_6f21, s.as_bytes()).to_ne_bytes());
            let first = if h(a) > h(b) { 0 } else { 1 };
            assert_eq!(first, want, "{a} vs {b}");
        }
    }
}

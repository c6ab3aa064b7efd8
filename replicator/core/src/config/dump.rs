//! The normalised dump: the configuration written back in `.res` syntax, `common` merged into
//! each resource, node ids and addresses made explicit, numbers in their default units. It
//! reads back in replicatord and — when devices are kernel names — in drbdadm, giving the
//! same resources (tests check that with `drbdadm -d up`).

use std::fmt::Write;

use super::model::{Config, Connection, Host, OptionMap, Resource};

const IND: &str = "    ";

/// Renders `config`; `state_dir`, when given, resolves each resource's NBD export in a comment.
pub fn render(config: &Config, state_dir: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", header(config));
    if !config.global.is_empty() {
        out.push_str("\nglobal {\n");
        section_body(&mut out, &config.global, IND);
        out.push_str("}\n");
    }
    for r in &config.resources {
        out.push('\n');
        resource(&mut out, r, state_dir);
    }
    out
}

/// Renders one resource only.
pub fn render_resource(r: &Resource, state_dir: Option<&str>) -> String {
    let mut out = String::new();
    resource(&mut out, r, state_dir);
    out
}

fn header(config: &Config) -> String {
    match config.files.as_slice() {
        [] => "normalised configuration".to_owned(),
        [main] => format!("normalised from {main}"),
        [main, rest @ ..] => format!("normalised from {main} and {} included file(s)", rest.len()),
    }
}

fn resource(out: &mut String, r: &Resource, state_dir: Option<&str>) {
    let _ = writeln!(out, "# defined at {}", r.pos);
    if let Some(dir) = state_dir {
        let mut exports: Vec<String> = r
            .hosts
            .iter()
            .map(|h| format!("{}: {}", h.name(), h.device.export(&r.name, dir).uri()))
            .collect();
        exports.dedup();
        for e in exports {
            let _ = writeln!(out, "# export on {e}");
        }
    }
    let _ = writeln!(out, "resource {} {{", r.name);
    let s = &r.settings;
    named_section(out, "options", &s.options, IND);
    named_section(out, "net", &s.net, IND);
    let mut disk = s.disk.clone();
    disk.extend(s.peer_device.iter().map(|(k, v)| (*k, v.clone())));
    named_section(out, "disk", &disk, IND);
    named_section(out, "startup", &s.startup, IND);
    named_section(out, "handlers", &s.handlers, IND);
    // Explicit `volume N { }` blocks (in every host, as drbdadm wants them consistent) when
    // needed: a volume number other than 0, or host-specific disk options — drbdadm allows
    // `disk PATH;` and `disk { }` together only inside a volume block.
    let explicit = r.volume != 0 || r.hosts.iter().any(|h| !own_disk_settings(r, h).is_empty());
    for h in &r.hosts {
        host(out, r, h, explicit);
    }
    let derived = r.hosts.len() == 2
        && r.connections.len() == 1
        && r.connections[0].implicit
        && r.connections[0].net_settings.is_empty();
    if !derived {
        for c in &r.connections {
            connection(out, c);
        }
    }
    out.push_str("}\n");
}

fn host(out: &mut String, r: &Resource, h: &Host, explicit_volumes: bool) {
    if h.floating {
        let a = h.address.expect("floating sections have an address");
        let _ = writeln!(out, "{IND}floating {a} {{");
    } else {
        let names: Vec<String> = h
            .names
            .iter()
            .map(|n| super::options::quote_if_needed(n))
            .collect();
        let _ = writeln!(out, "{IND}on {} {{", names.join(" "));
    }
    let i2 = format!("{IND}{IND}");
    let _ = writeln!(out, "{i2}node-id {};", h.node_id.0);
    if let (Some(a), false) = (h.address, h.floating) {
        let _ = writeln!(out, "{i2}address {a};");
    }
    let own = own_disk_settings(r, h);
    let (vol_ind, close) = if explicit_volumes {
        let _ = writeln!(out, "{i2}volume {} {{", r.volume);
        (format!("{i2}{IND}"), true)
    } else {
        (i2.clone(), false)
    };
    let _ = writeln!(out, "{vol_ind}device {};", h.device.render());
    match &h.disk {
        super::model::Disk::Path(p) => {
            let _ = writeln!(out, "{vol_ind}disk {};", super::options::quote_if_needed(p));
            let _ = writeln!(out, "{vol_ind}meta-disk {};", h.meta_disk);
        }
        super::model::Disk::None => {
            let _ = writeln!(out, "{vol_ind}disk none;");
        }
    }
    named_section(out, "disk", &own, &vol_ind);
    if close {
        let _ = writeln!(out, "{i2}}}");
    }
    let _ = writeln!(out, "{IND}}}");
}

/// Disk settings of host `h` that differ from the resource's.
fn own_disk_settings(r: &Resource, h: &Host) -> OptionMap {
    let mut own = OptionMap::new();
    for (k, v) in &h.disk_settings {
        let res = r
            .settings
            .disk
            .get(k)
            .or_else(|| r.settings.peer_device.get(k));
        if res.map(|s| &s.value) != Some(&v.value) {
            own.insert(k, v.clone());
        }
    }
    own
}

fn connection(out: &mut String, c: &Connection) {
    let _ = writeln!(out, "{IND}connection {{");
    for e in &c.endpoints {
        let _ = writeln!(
            out,
            "{IND}{IND}host {} address {};",
            super::options::quote_if_needed(&e.host),
            e.address
        );
    }
    named_section(out, "net", &c.net_settings, &format!("{IND}{IND}"));
    named_section(out, "disk", &c.peer_device_settings, &format!("{IND}{IND}"));
    let _ = writeln!(out, "{IND}}}");
}

fn named_section(out: &mut String, name: &str, map: &OptionMap, ind: &str) {
    if map.is_empty() {
        return;
    }
    let _ = writeln!(out, "{ind}{name} {{");
    section_body(out, map, &format!("{ind}{IND}"));
    let _ = writeln!(out, "{ind}}}");
}

fn section_body(out: &mut String, map: &OptionMap, ind: &str) {
    for (k, v) in map {
        let _ = writeln!(out, "{ind}{k} {};", v.value.render());
    }
}

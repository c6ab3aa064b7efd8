//! The sections of a resource (or `common`): the resource body, `on`/`floating` hosts,
//! `volume` blocks, `connection` and `connection-mesh`, as drbd.conf(5) defines them. Each
//! statement is checked here and recorded, unresolved, in the `Raw*` structures that
//! [`super::resolve`] turns into the typed configuration.

use std::net::IpAddr;

use super::build::{
    Builder, CONNECTION_KEYWORDS, HOST_KEYWORDS, MAX_NODE_ID, RESOURCE_KEYWORDS, RawConn, RawHost,
    RawMesh, RawRes, RawVol, VOLUME_KEYWORDS, insert_setting, need_block, no_args, no_block,
    one_arg, unknown,
};
use super::error::{ConfigError, Pos};
use super::model::*;
use super::options::{self, Section};
use super::syntax::{Block, Stmt};
use super::values::{parse_address, parse_device, parse_endpoint, parse_meta_disk};

impl Builder {
    /// Parses the body of `resource NAME { }` or `common { }`.
    pub(super) fn resource_body(
        &mut self,
        name: &str,
        pos: &Pos,
        block: &Block,
        is_common: bool,
    ) -> Result<RawRes, ConfigError> {
        let mut raw = RawRes {
            name: name.to_owned(),
            pos: pos.clone(),
            sections: Sections::default(),
            vol: RawVol::default(),
            volumes: Vec::new(),
            hosts: Vec::new(),
            conns: Vec::new(),
            meshes: Vec::new(),
        };
        let here = if is_common {
            "common".to_owned()
        } else {
            format!("resource '{name}'")
        };
        for st in &block.stmts {
            let kw = st.keyword();
            if is_common
                && matches!(
                    kw,
                    "on" | "floating"
                        | "device"
                        | "meta-disk"
                        | "flexible-meta-disk"
                        | "volume"
                        | "connection"
                        | "connection-mesh"
                )
                || is_common && kw == "disk" && st.block.is_none()
            {
                return Err(ConfigError::new(
                    st.pos(),
                    format!(
                        "'{kw}' is not allowed in common: only option sections are inherited by resources"
                    ),
                ));
            }
            match kw {
                "skip" => {}
                "protocol" => {
                    no_block(st)?;
                    let def =
                        options::find(&[Section::Net], "protocol").expect("protocol is known");
                    let words: Vec<(&str, &Pos)> = st
                        .args()
                        .iter()
                        .map(|t| (t.text().expect("word"), &t.pos))
                        .collect();
                    let v = options::parse_value(def, false, &words, st.pos())?;
                    insert_setting(
                        &mut raw.sections.net,
                        def,
                        Setting {
                            value: v.value,
                            pos: st.pos().clone(),
                        },
                        &here,
                    )?;
                }
                "net" => {
                    no_args(st, 0)?;
                    self.options_block(
                        need_block(st, "net")?,
                        &[Section::Net],
                        &mut raw.sections,
                        None,
                        &format!("the net section of {here}"),
                    )?;
                }
                "syncer" => {
                    no_args(st, 0)?;
                    let allowed = [
                        Section::Net,
                        Section::Disk,
                        Section::PeerDevice,
                        Section::Options,
                    ];
                    self.options_block(
                        need_block(st, "syncer")?,
                        &allowed,
                        &mut raw.sections,
                        None,
                        &format!("the syncer section of {here}"),
                    )?;
                }
                "startup" => {
                    no_args(st, 0)?;
                    self.options_block(
                        need_block(st, "startup")?,
                        &[Section::Startup],
                        &mut raw.sections,
                        None,
                        &format!("the startup section of {here}"),
                    )?;
                }
                "handlers" => {
                    no_args(st, 0)?;
                    self.options_block(
                        need_block(st, "handlers")?,
                        &[Section::Handlers],
                        &mut raw.sections,
                        None,
                        &format!("the handlers section of {here}"),
                    )?;
                }
                "options" => {
                    no_args(st, 0)?;
                    self.options_block(
                        need_block(st, "options")?,
                        &[Section::Options],
                        &mut raw.sections,
                        None,
                        &format!("the options section of {here}"),
                    )?;
                }
                "disk" if st.block.is_some() => {
                    no_args(st, 0)?;
                    let b = st.block.as_ref().expect("checked");
                    self.options_block(
                        b,
                        &[Section::Disk, Section::PeerDevice],
                        &mut raw.sections,
                        None,
                        &format!("the disk section of {here}"),
                    )?;
                }
                "device" | "disk" | "meta-disk" | "flexible-meta-disk" => {
                    self.volume_stmt(st, &mut raw.vol, &here)?;
                    raw.vol.used = true;
                }
                "volume" => raw.volumes.push(self.volume_block(st, &here)?),
                "on" => raw.hosts.push(self.host_section(st, &raw.name, false)?),
                "floating" => raw.hosts.push(self.host_section(st, &raw.name, true)?),
                "connection" => raw.conns.push(self.connection(st, &here)?),
                "connection-mesh" => raw.meshes.push(self.mesh(st, &here)?),
                "stacked-on-top-of" => {
                    return Err(ConfigError::new(
                        st.pos(),
                        "'stacked-on-top-of' is not supported by replicatord (stacking is deprecated since DRBD 9): replicate between the nodes of one resource",
                    ));
                }
                "proxy" => {
                    return Err(ConfigError::new(
                        st.pos(),
                        "'proxy' (DRBD Proxy) is not supported by replicatord",
                    ));
                }
                "template-file" => {
                    return Err(ConfigError::new(
                        st.pos(),
                        "'template-file' is not supported by replicatord: put shared options in 'common'",
                    ));
                }
                "include" => {
                    return Err(ConfigError::new(
                        st.pos(),
                        "'include' is only allowed at top level, outside sections",
                    ));
                }
                other => return Err(unknown(st, other, RESOURCE_KEYWORDS, &format!("in {here}"))),
            }
        }
        Ok(raw)
    }

    /// `device`, `disk PATH`, `disk { }`, `meta-disk`, `flexible-meta-disk` of a volume level.
    fn volume_stmt(&mut self, st: &Stmt, vol: &mut RawVol, here: &str) -> Result<(), ConfigError> {
        let kw = st.keyword();
        if kw == "disk"
            && let Some(b) = &st.block
        {
            no_args(st, 0)?;
            if let Some(o) = b
                .stmts
                .iter()
                .find(|o| options::DISK_84_NET.contains(&o.keyword()))
            {
                return Err(ConfigError::new(
                    o.pos(),
                    format!(
                        "'{}' is a resource-wide policy: set it in the disk or net section of the resource or of 'common', not in the disk section of {here}",
                        o.keyword()
                    ),
                ));
            }
            return self.options_block(
                b,
                &[Section::Disk, Section::PeerDevice],
                &mut vol.opts,
                None,
                &format!("the disk section of {here}"),
            );
        }
        no_block(st)?;
        let dup = |what: &str, first: &Pos| {
            ConfigError::new(
                st.pos(),
                format!("'{what}' is set twice in {here} (first at {first})"),
            )
        };
        match kw {
            "device" => {
                if let Some((_, p)) = &vol.device {
                    return Err(dup("device", p));
                }
                vol.device = Some((parse_device(st)?, st.pos().clone()));
            }
            "disk" => {
                if let Some((_, p)) = &vol.disk {
                    return Err(dup("disk", p));
                }
                let arg = one_arg(st, "disk PATH; or disk none;")?;
                let d = match arg.text().expect("word") {
                    "none" => Disk::None,
                    path => Disk::Path(path.to_owned()),
                };
                vol.disk = Some((d, st.pos().clone()));
            }
            "meta-disk" => {
                if let Some((_, p)) = &vol.meta {
                    return Err(dup("meta-disk", p));
                }
                vol.meta = Some((parse_meta_disk(st)?, st.pos().clone()));
            }
            "flexible-meta-disk" => {
                if let Some((_, p)) = &vol.meta {
                    return Err(dup("meta-disk", p));
                }
                let arg = one_arg(st, "flexible-meta-disk internal | PATH;")?;
                let m = match arg.text().expect("word") {
                    "internal" => MetaDisk::Internal,
                    path => MetaDisk::External {
                        path: path.to_owned(),
                        index: None,
                    },
                };
                vol.meta = Some((m, st.pos().clone()));
            }
            _ => unreachable!("caller passes volume keywords only"),
        }
        Ok(())
    }

    /// `volume N { ... }`.
    fn volume_block(&mut self, st: &Stmt, here: &str) -> Result<(u32, RawVol, Pos), ConfigError> {
        let block = need_block(st, "volume")?;
        let n = one_arg(st, "volume NUMBER { ... }")?;
        let vnr: u32 = n
            .text()
            .expect("word")
            .parse()
            .ok()
            .filter(|v| *v <= 65535)
            .ok_or_else(|| {
                ConfigError::new(
                    &n.pos,
                    format!("volume number {} is not 0..65535", n.describe()),
                )
            })?;
        let here = format!("volume {vnr} of {here}");
        let mut vol = RawVol::default();
        for s in &block.stmts {
            match s.keyword() {
                "skip" => {}
                "device" | "disk" | "meta-disk" | "flexible-meta-disk" => {
                    self.volume_stmt(s, &mut vol, &here)?
                }
                other => return Err(unknown(s, other, VOLUME_KEYWORDS, &format!("in {here}"))),
            }
        }
        Ok((vnr, vol, st.pos().clone()))
    }

    /// `on NAME... { }` or `floating [AF] ADDR:PORT { }`.
    fn host_section(
        &mut self,
        st: &Stmt,
        res: &str,
        floating: bool,
    ) -> Result<RawHost, ConfigError> {
        let mut host = RawHost {
            names: Vec::new(),
            floating,
            address: None,
            node_id: None,
            vol: RawVol::default(),
            volumes: Vec::new(),
            pos: st.pos().clone(),
        };
        if floating {
            if st.args().is_empty() {
                return Err(ConfigError::new(
                    st.pos(),
                    "'floating' needs an address: floating [ipv4|ipv6] ADDR:PORT { ... }",
                ));
            }
            let a = parse_address(st.args(), st.pos())?;
            host.names.push(match a.ip {
                IpAddr::V4(ip) => format!("{ip}:{}", a.port),
                IpAddr::V6(ip) => format!("[{ip}]:{}", a.port),
            });
            host.address = Some((a, st.pos().clone()));
        } else {
            if st.args().is_empty() {
                return Err(ConfigError::new(
                    st.pos(),
                    "'on' needs a host name: on HOSTNAME { ... }",
                ));
            }
            for t in st.args() {
                let n = t.text().expect("word");
                if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ConfigError::new(
                        &t.pos,
                        format!("{} is not a host name", t.describe()),
                    ));
                }
                host.names.push(n.to_owned());
            }
        }
        let Some(block) = &st.block else {
            if floating {
                return Ok(host);
            }
            return Err(ConfigError::new(
                st.pos(),
                "'on' needs a section: on HOSTNAME { ... }",
            ));
        };
        let here = format!(
            "'{} {}' of resource '{res}'",
            if floating { "floating" } else { "on" },
            host.names.join(" ")
        );
        for s in &block.stmts {
            match s.keyword() {
                "skip" => {}
                "device" | "disk" | "meta-disk" | "flexible-meta-disk" => {
                    self.volume_stmt(s, &mut host.vol, &here)?;
                    host.vol.used = true;
                }
                "volume" => host.volumes.push(self.volume_block(s, &here)?),
                "address" => {
                    no_block(s)?;
                    if floating {
                        return Err(ConfigError::new(
                            s.pos(),
                            "'address' is not allowed in a floating section: its address is the section's",
                        ));
                    }
                    if let Some((_, p)) = &host.address {
                        return Err(ConfigError::new(
                            s.pos(),
                            format!("'address' is set twice in {here} (first at {p})"),
                        ));
                    }
                    if s.args().is_empty() {
                        return Err(ConfigError::new(
                            s.pos(),
                            "'address' needs a value: address [ipv4|ipv6] ADDR:PORT;",
                        ));
                    }
                    host.address = Some((parse_address(s.args(), s.pos())?, s.pos().clone()));
                }
                "node-id" => {
                    no_block(s)?;
                    if let Some((_, p)) = &host.node_id {
                        return Err(ConfigError::new(
                            s.pos(),
                            format!("'node-id' is set twice in {here} (first at {p})"),
                        ));
                    }
                    let t = one_arg(s, "node-id N;")?;
                    let id = t
                        .text()
                        .expect("word")
                        .parse::<u8>()
                        .ok()
                        .filter(|v| *v <= MAX_NODE_ID)
                        .ok_or_else(|| {
                            ConfigError::new(
                                &t.pos,
                                format!("node-id {} is not 0..{MAX_NODE_ID}", t.describe()),
                            )
                        })?;
                    host.node_id = Some((id, s.pos().clone()));
                }
                "options" => {
                    return Err(ConfigError::new(
                        s.pos(),
                        format!(
                            "'options' inside {here} is not supported: put resource options in the resource"
                        ),
                    ));
                }
                "proxy" => {
                    return Err(ConfigError::new(
                        s.pos(),
                        "'proxy' (DRBD Proxy) is not supported by replicatord",
                    ));
                }
                other => return Err(unknown(s, other, HOST_KEYWORDS, &format!("in {here}"))),
            }
        }
        Ok(host)
    }

    /// `connection [NAME] { host A [address ...|port P]; host B ...; net { } disk { } }`.
    fn connection(&mut self, st: &Stmt, res_here: &str) -> Result<RawConn, ConfigError> {
        let block = need_block(st, "connection")?;
        if st.args().len() > 1 {
            let t = &st.args()[1];
            return Err(ConfigError::new(
                &t.pos,
                format!("unexpected {} after the connection name", t.describe()),
            ));
        }
        let here = format!("a connection of {res_here}");
        let mut conn = RawConn {
            endpoints: Vec::new(),
            opts: Sections::default(),
            pos: st.pos().clone(),
        };
        let mut had_path = false;
        for s in &block.stmts {
            match s.keyword() {
                "skip" => {}
                "host" => {
                    no_block(s)?;
                    conn.endpoints.push(parse_endpoint(s)?);
                }
                "net" => {
                    no_args(s, 0)?;
                    self.options_block(
                        need_block(s, "net")?,
                        &[Section::Net],
                        &mut conn.opts,
                        None,
                        &format!("the net section of {here}"),
                    )?;
                }
                "disk" => {
                    no_args(s, 0)?;
                    self.options_block(
                        need_block(s, "disk")?,
                        &[Section::PeerDevice],
                        &mut conn.opts,
                        None,
                        &format!("the disk section of {here}"),
                    )?;
                }
                "volume" => {
                    let b = need_block(s, "volume")?;
                    one_arg(s, "volume NUMBER { disk { ... } }")?;
                    for v in &b.stmts {
                        match v.keyword() {
                            "skip" => {}
                            "disk" => {
                                no_args(v, 0)?;
                                self.options_block(
                                    need_block(v, "disk")?,
                                    &[Section::PeerDevice],
                                    &mut conn.opts,
                                    None,
                                    &format!("a volume of {here}"),
                                )?;
                            }
                            other => {
                                return Err(unknown(
                                    v,
                                    other,
                                    &["disk", "skip"],
                                    &format!("in a volume of {here}"),
                                ));
                            }
                        }
                    }
                }
                "path" => {
                    let b = need_block(s, "path")?;
                    no_args(s, 0)?;
                    if had_path || !conn.endpoints.is_empty() {
                        self.warn(
                            s.pos(),
                            "replicatord uses one path per connection; this path is ignored".into(),
                        );
                        continue;
                    }
                    had_path = true;
                    for h in &b.stmts {
                        match h.keyword() {
                            "skip" => {}
                            "host" => {
                                no_block(h)?;
                                conn.endpoints.push(parse_endpoint(h)?);
                            }
                            other => {
                                return Err(unknown(
                                    h,
                                    other,
                                    &["host", "skip"],
                                    &format!("in a path of {here}"),
                                ));
                            }
                        }
                    }
                }
                "address" => {
                    return Err(ConfigError::new(
                        s.pos(),
                        "name the host of each end: host NAME [address [ipv4|ipv6] ADDR:PORT | port PORT];",
                    ));
                }
                other => {
                    return Err(unknown(
                        s,
                        other,
                        CONNECTION_KEYWORDS,
                        &format!("in {here}"),
                    ));
                }
            }
        }
        if conn.endpoints.len() != 2 {
            return Err(ConfigError::new(
                st.pos(),
                format!(
                    "a connection needs exactly two 'host' statements, this one has {}",
                    conn.endpoints.len()
                ),
            ));
        }
        Ok(conn)
    }

    /// `connection-mesh { hosts A B ...; net { } }`.
    fn mesh(&mut self, st: &Stmt, res_here: &str) -> Result<RawMesh, ConfigError> {
        let block = need_block(st, "connection-mesh")?;
        no_args(st, 0)?;
        let mut mesh = RawMesh {
            hosts: Vec::new(),
            net: OptionMap::new(),
            pos: st.pos().clone(),
        };
        let here = format!("the connection-mesh of {res_here}");
        let mut opts = Sections::default();
        for s in &block.stmts {
            match s.keyword() {
                "skip" => {}
                "hosts" => {
                    no_block(s)?;
                    if !mesh.hosts.is_empty() {
                        return Err(ConfigError::new(
                            s.pos(),
                            "'hosts' is set twice in a connection-mesh",
                        ));
                    }
                    if s.args().len() < 2 {
                        return Err(ConfigError::new(
                            s.pos(),
                            "'hosts' needs at least two host names",
                        ));
                    }
                    mesh.hosts = s
                        .args()
                        .iter()
                        .map(|t| (t.text().expect("word").to_owned(), t.pos.clone()))
                        .collect();
                }
                "net" => {
                    no_args(s, 0)?;
                    self.options_block(
                        need_block(s, "net")?,
                        &[Section::Net],
                        &mut opts,
                        None,
                        &format!("the net section of {here}"),
                    )?;
                }
                other => {
                    return Err(unknown(
                        s,
                        other,
                        &["hosts", "net", "skip"],
                        &format!("in {here}"),
                    ));
                }
            }
        }
        if mesh.hosts.is_empty() {
            return Err(ConfigError::new(
                st.pos(),
                "a connection-mesh needs 'hosts NAME NAME ...;'",
            ));
        }
        mesh.net = opts.net;
        Ok(mesh)
    }
}

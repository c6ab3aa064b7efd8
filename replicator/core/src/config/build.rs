//! Gives each statement of the syntax tree its meaning (drbd.conf(5)) and resolves the
//! configuration the way drbdadm does: `common` inherited into resources, resource-level
//! volume settings inherited into `on` sections, implicit connections between two hosts,
//! node ids assigned for two hosts without them. Every error points at the token at fault.

use std::net::IpAddr;

use super::error::{ConfigError, Pos, Warning, did_you_mean};
use super::lexer::Token;
use super::model::*;
use super::options::{self, OptDef, Section, Support};
use super::resolve;
use super::syntax::{Block, Stmt};
use super::values::{RawEndpoint, parse_address, parse_device, parse_endpoint, parse_meta_disk};

/// Highest node id (DRBD 9 allows 32 nodes per resource).
pub const MAX_NODE_ID: u8 = 31;
/// Longest resource name (it names sockets and NBD exports).
pub const MAX_RESOURCE_NAME: usize = 64;

const TOP_KEYWORDS: &[&str] = &["global", "common", "resource", "include", "skip"];
const RESOURCE_KEYWORDS: &[&str] = &[
    "protocol",
    "on",
    "floating",
    "device",
    "disk",
    "meta-disk",
    "flexible-meta-disk",
    "volume",
    "net",
    "syncer",
    "startup",
    "handlers",
    "options",
    "connection",
    "connection-mesh",
    "skip",
];
const HOST_KEYWORDS: &[&str] = &[
    "device",
    "disk",
    "meta-disk",
    "flexible-meta-disk",
    "address",
    "node-id",
    "volume",
    "skip",
];
const VOLUME_KEYWORDS: &[&str] = &["device", "disk", "meta-disk", "flexible-meta-disk", "skip"];
const CONNECTION_KEYWORDS: &[&str] = &["host", "net", "disk", "volume", "path", "skip"];

/// Builds the typed configuration from the top-level statements of all files.
pub fn build(stmts: &[Stmt], files: Vec<String>) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut b = Builder {
        warnings: Vec::new(),
    };
    let mut global: Option<(OptionMap, Pos)> = None;
    let mut common: Option<(RawRes, Pos)> = None;
    let mut raws: Vec<RawRes> = Vec::new();
    for st in stmts {
        match st.keyword() {
            "skip" => {}
            "global" => {
                let block = need_block(st, "global")?;
                no_args(st, 0)?;
                if let Some((_, first)) = &global {
                    return Err(ConfigError::new(
                        st.pos(),
                        format!("a second 'global' section (the first is at {first})"),
                    ));
                }
                let mut map = OptionMap::new();
                let mut sections = Sections::default();
                b.options_block(
                    block,
                    &[Section::Global],
                    &mut sections,
                    Some(&mut map),
                    "global",
                )?;
                global = Some((map, st.pos().clone()));
            }
            "common" => {
                let block = need_block(st, "common")?;
                no_args(st, 0)?;
                if let Some((_, first)) = &common {
                    return Err(ConfigError::new(
                        st.pos(),
                        format!("a second 'common' section (the first is at {first})"),
                    ));
                }
                let raw = b.resource_body("common", st.pos(), block, true)?;
                common = Some((raw, st.pos().clone()));
            }
            "resource" => {
                let block = need_block(st, "resource")?;
                let name = match st.args() {
                    [n] => n,
                    [] => {
                        return Err(ConfigError::new(
                            st.pos(),
                            "'resource' needs a name: resource NAME { ... }",
                        ));
                    }
                    [_, extra, ..] => {
                        return Err(ConfigError::new(
                            &extra.pos,
                            format!("unexpected {} after the resource name", extra.describe()),
                        ));
                    }
                };
                let text = name.text().expect("word");
                check_resource_name(text, &name.pos)?;
                if let Some(first) = raws.iter().find(|r| r.name == text) {
                    return Err(ConfigError::new(
                        &name.pos,
                        format!(
                            "resource '{text}' is defined twice (first at {})",
                            first.pos
                        ),
                    ));
                }
                raws.push(b.resource_body(text, st.pos(), block, false)?);
            }
            kw if kw.starts_with("require-drbd-module-version-") => {
                b.warn(
                    st.pos(),
                    format!("'{kw}' is ignored: replicatord does not use the DRBD kernel module"),
                );
            }
            "include" => unreachable!("top-level includes are expanded by the syntax pass"),
            other => return Err(unknown(st, other, TOP_KEYWORDS, "at top level")),
        }
    }
    let common_sections = common.map(|(c, _)| c.sections).unwrap_or_default();
    let mut resources = Vec::with_capacity(raws.len());
    for raw in raws {
        resources.push(resolve::finish(&mut b.warnings, raw, &common_sections)?);
    }
    resolve::cross_checks(&resources)?;
    let config = Config {
        files,
        global: global.map(|(m, _)| m).unwrap_or_default(),
        resources,
    };
    Ok((config, b.warnings))
}

/// A resource (or `common`) as written, before inheritance.
pub(super) struct RawRes {
    pub(super) name: String,
    pub(super) pos: Pos,
    pub(super) sections: Sections,
    pub(super) vol: RawVol,
    pub(super) volumes: Vec<(u32, RawVol, Pos)>,
    pub(super) hosts: Vec<RawHost>,
    pub(super) conns: Vec<RawConn>,
    pub(super) meshes: Vec<RawMesh>,
}

/// Volume settings of one level.
#[derive(Default, Clone)]
pub(super) struct RawVol {
    pub(super) device: Option<(Device, Pos)>,
    pub(super) disk: Option<(Disk, Pos)>,
    pub(super) meta: Option<(MetaDisk, Pos)>,
    pub(super) opts: Sections,
    /// Whether any statement used the implicit volume 0 at this level.
    pub(super) used: bool,
}

pub(super) struct RawHost {
    pub(super) names: Vec<String>,
    pub(super) floating: bool,
    pub(super) address: Option<(Address, Pos)>,
    pub(super) node_id: Option<(u8, Pos)>,
    pub(super) vol: RawVol,
    pub(super) volumes: Vec<(u32, RawVol, Pos)>,
    pub(super) pos: Pos,
}

pub(super) struct RawConn {
    pub(super) endpoints: Vec<RawEndpoint>,
    pub(super) opts: Sections,
    pub(super) pos: Pos,
}

pub(super) struct RawMesh {
    pub(super) hosts: Vec<(String, Pos)>,
    pub(super) net: OptionMap,
    pub(super) pos: Pos,
}

struct Builder {
    warnings: Vec<Warning>,
}

impl Builder {
    fn warn(&mut self, pos: &Pos, message: String) {
        self.warnings.push(Warning {
            pos: pos.clone(),
            message,
        });
    }

    /// Parses an options block (`net { }`, `disk { }`, ...) into `into` (or `global`).
    fn options_block(
        &mut self,
        block: &Block,
        allowed: &[Section],
        into: &mut Sections,
        mut global: Option<&mut OptionMap>,
        here: &str,
    ) -> Result<(), ConfigError> {
        for st in &block.stmts {
            let kw = st.keyword();
            if kw == "skip" {
                continue;
            }
            if allowed.contains(&Section::Startup) && kw == "become-primary-on" {
                self.warn(st.pos(), "'become-primary-on' is ignored (drbdadm ignores it too): promote with 'replicatorctl primary' or a cluster manager".into());
                continue;
            }
            if let Some(b) = &st.block {
                let _ = b;
                return Err(ConfigError::new(
                    st.pos(),
                    format!("'{kw}' opens a section inside {here}, where only options are allowed"),
                ));
            }
            let (def, negated) = match options::find(allowed, kw) {
                Some(d) => (d, false),
                None => match kw
                    .strip_prefix("no-")
                    .and_then(|rest| options::find(allowed, rest))
                {
                    Some(d) => (d, true),
                    None => return Err(unknown_option(st, allowed, here)),
                },
            };
            let words: Vec<(&str, &Pos)> = st
                .args()
                .iter()
                .map(|t| (t.text().expect("word"), &t.pos))
                .collect();
            let parsed = options::parse_value(def, negated, &words, st.pos())?;
            if let Some(note) = parsed.note {
                self.warn(st.pos(), note);
            }
            if let Support::Ignored(why) = def.support {
                self.warn(
                    st.pos(),
                    format!(
                        "'{}' is accepted but not implemented by replicatord: {why}",
                        def.name
                    ),
                );
            }
            let setting = Setting {
                value: parsed.value,
                pos: st.pos().clone(),
            };
            let map = match (def.section, global.as_deref_mut()) {
                (Section::Global, Some(g)) => g,
                (s, _) => into.map_mut(s),
            };
            insert_setting(map, def, setting, here)?;
        }
        Ok(())
    }

    /// Parses the body of `resource NAME { }` or `common { }`.
    fn resource_body(
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

fn insert_setting(
    map: &mut OptionMap,
    def: &OptDef,
    setting: Setting,
    here: &str,
) -> Result<(), ConfigError> {
    if let Some(first) = map.get(def.name) {
        return Err(ConfigError::new(
            &setting.pos,
            format!(
                "'{}' is set twice in {here} (first at {})",
                def.name, first.pos
            ),
        ));
    }
    map.insert(def.name, setting);
    Ok(())
}

fn unknown(st: &Stmt, kw: &str, expected: &[&str], here: &str) -> ConfigError {
    let hint = did_you_mean(kw, expected.iter().copied())
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default();
    ConfigError::new(
        st.pos(),
        format!(
            "unknown keyword '{kw}' {here} (expected {}){hint}",
            expected.join(", ")
        ),
    )
}

fn unknown_option(st: &Stmt, allowed: &[Section], here: &str) -> ConfigError {
    let kw = st.keyword();
    let all = [
        Section::Net,
        Section::Disk,
        Section::PeerDevice,
        Section::Options,
        Section::Startup,
        Section::Handlers,
    ];
    let bare = kw.strip_prefix("no-").unwrap_or(kw);
    if let Some(def) = options::find(&all, kw).or_else(|| options::find(&all, bare)) {
        return ConfigError::new(
            st.pos(),
            format!(
                "option '{}' belongs in a {} section, not in {here}",
                def.name,
                def.section.keyword()
            ),
        );
    }
    let hint = did_you_mean(kw, options::names(allowed))
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default();
    ConfigError::new(st.pos(), format!("unknown option '{kw}' in {here}{hint}"))
}

fn need_block<'a>(st: &'a Stmt, what: &str) -> Result<&'a Block, ConfigError> {
    st.block.as_ref().ok_or_else(|| {
        ConfigError::new(
            st.pos(),
            format!("'{what}' is a section: {what} ... {{ ... }}"),
        )
    })
}

fn no_block(st: &Stmt) -> Result<(), ConfigError> {
    let Some(b) = &st.block else { return Ok(()) };
    // `meta-disk internal  on n1 { ... }`: a forgotten ';' glued the next section on. Point
    // at the word that starts it.
    let starts_section = |w: &str| {
        RESOURCE_KEYWORDS.contains(&w)
            || HOST_KEYWORDS.contains(&w)
            || CONNECTION_KEYWORDS.contains(&w)
            || TOP_KEYWORDS.contains(&w)
    };
    if let Some(t) = st.args().iter().find(|t| {
        matches!(t.kind, super::lexer::TokenKind::Word(_)) && t.text().is_some_and(starts_section)
    }) {
        return Err(ConfigError::new(
            &t.pos,
            format!(
                "missing ';' before {} (after '{}' ...)",
                t.describe(),
                st.keyword()
            ),
        ));
    }
    Err(ConfigError::new(
        &b.open,
        format!("'{}' takes values, not a {{ }} section", st.keyword()),
    ))
}

fn no_args(st: &Stmt, n: usize) -> Result<(), ConfigError> {
    match st.args().get(n) {
        Some(t) => Err(ConfigError::new(
            &t.pos,
            format!("unexpected {} after '{}'", t.describe(), st.keyword()),
        )),
        None => Ok(()),
    }
}

fn one_arg<'a>(st: &'a Stmt, usage: &str) -> Result<&'a Token, ConfigError> {
    match st.args() {
        [t] => Ok(t),
        [] => Err(ConfigError::new(
            st.pos(),
            format!("'{}' needs a value: {usage}", st.keyword()),
        )),
        [_, extra, ..] => Err(ConfigError::new(
            &extra.pos,
            format!("unexpected {} ({usage})", extra.describe()),
        )),
    }
}

fn check_resource_name(name: &str, pos: &Pos) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RESOURCE_NAME
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            pos,
            format!(
                "resource name '{name}' must be 1..{MAX_RESOURCE_NAME} characters of A-Z a-z 0-9 _ - . + not starting with '.' or '-' (it names sockets and NBD exports)"
            ),
        ))
    }
}

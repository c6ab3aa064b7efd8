//! Gives each statement of the syntax tree its meaning (drbd.conf(5)) and resolves the
//! configuration the way drbdadm does: `common` inherited into resources, resource-level
//! volume settings inherited into `on` sections, implicit connections between two hosts,
//! node ids assigned for two hosts without them. Every error points at the token at fault.

use super::error::{ConfigError, Pos, Warning, did_you_mean};
use super::lexer::Token;
use super::model::*;
use super::options::{self, OptDef, Section, Support};
use super::resolve;
use super::syntax::{Block, Stmt};
use super::values::RawEndpoint;

/// Highest node id (DRBD 9 allows 32 nodes per resource).
pub const MAX_NODE_ID: u8 = 31;
/// Longest resource name (it names sockets and NBD exports).
pub const MAX_RESOURCE_NAME: usize = 64;

pub(super) const TOP_KEYWORDS: &[&str] = &["global", "common", "resource", "include", "skip"];
pub(super) const RESOURCE_KEYWORDS: &[&str] = &[
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
pub(super) const HOST_KEYWORDS: &[&str] = &[
    "device",
    "disk",
    "meta-disk",
    "flexible-meta-disk",
    "address",
    "node-id",
    "volume",
    "skip",
];
pub(super) const VOLUME_KEYWORDS: &[&str] =
    &["device", "disk", "meta-disk", "flexible-meta-disk", "skip"];
pub(super) const CONNECTION_KEYWORDS: &[&str] = &["host", "net", "disk", "volume", "path", "skip"];

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

pub(super) struct Builder {
    pub(super) warnings: Vec<Warning>,
}

impl Builder {
    pub(super) fn warn(&mut self, pos: &Pos, message: String) {
        self.warnings.push(Warning {
            pos: pos.clone(),
            message,
        });
    }

    /// Parses an options block (`net { }`, `disk { }`, ...) into `into` (or `global`).
    pub(super) fn options_block(
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
            let found =
                options::find(allowed, kw).or_else(|| options::find_84_in_disk(allowed, kw));
            let (def, negated) = match found {
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
}

pub(super) fn insert_setting(
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

pub(super) fn unknown(st: &Stmt, kw: &str, expected: &[&str], here: &str) -> ConfigError {
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

pub(super) fn need_block<'a>(st: &'a Stmt, what: &str) -> Result<&'a Block, ConfigError> {
    st.block.as_ref().ok_or_else(|| {
        ConfigError::new(
            st.pos(),
            format!("'{what}' is a section: {what} ... {{ ... }}"),
        )
    })
}

pub(super) fn no_block(st: &Stmt) -> Result<(), ConfigError> {
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

pub(super) fn no_args(st: &Stmt, n: usize) -> Result<(), ConfigError> {
    match st.args().get(n) {
        Some(t) => Err(ConfigError::new(
            &t.pos,
            format!("unexpected {} after '{}'", t.describe(), st.keyword()),
        )),
        None => Ok(()),
    }
}

pub(super) fn one_arg<'a>(st: &'a Stmt, usage: &str) -> Result<&'a Token, ConfigError> {
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

//! Parameter definitions, and the typed values parsed from `OCF_RESKEY_*` against them.
//!
//! One [`ParamDef`] list per agent is the single source of both the `meta-data` XML
//! ([`crate::Metadata::to_xml`]) and the parsing ([`Params::parse`]), so the two cannot drift.

use std::collections::BTreeMap;

use crate::{Env, OcfError};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any string (an empty value counts as "not given").
    String,
    /// A signed integer within `[min, max]`.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// `1/yes/true/on/y` or `0/no/false/off/n`, in any case (as `ocf_is_true` reads them).
    Boolean,
    /// One of a fixed list of words. Written as `type="string"` in the meta-data, with the
    /// choices listed in the long description, because Debian's `ra-api-1.dtd` (which
    /// `ocf-tester` validates against) has no `select` type.
    Select(&'static [&'static str]),
}

impl ParamType {
    /// The OCF `content type` written to the meta-data.
    pub fn xml_type(self) -> &'static str {
        match self {
            ParamType::String | ParamType::Select(_) => "string",
            ParamType::Integer { .. } => "integer",
            ParamType::Boolean => "boolean",
        }
    }
}

/// One parameter of an agent: its name, type, whether it is required or unique, its default,
/// its descriptions for the meta-data, and older names it also answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    /// The name: the value comes from `OCF_RESKEY_<name>`.
    pub name: &'static str,
    /// Value type.
    pub kind: ParamType,
    /// The action fails with `OCF_ERR_CONFIGURED` when neither it nor an alias is given.
    pub required: bool,
    /// No two resources of this agent may share the value (e.g. the virtual IP).
    pub unique: bool,
    /// The value used when it is not given (parsed like a given value).
    pub default: Option<&'static str>,
    /// One line for tables.
    pub shortdesc: &'static str,
    /// The full description.
    pub longdesc: &'static str,
    /// Other names accepted for the same parameter (e.g. `drbd_resource` for `resource`), so
    /// configurations written for the agent Tandem replaces work unchanged. Each appears in
    /// the meta-data as its own optional parameter, described as an alias.
    pub aliases: &'static [&'static str],
}

impl ParamDef {
    const fn base(
        name: &'static str,
        kind: ParamType,
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Self {
        ParamDef {
            name,
            kind,
            required: false,
            unique: false,
            default: None,
            shortdesc,
            longdesc,
            aliases: &[],
        }
    }

    /// A string parameter.
    pub const fn string(
        name: &'static str,
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Self {
        Self::base(name, ParamType::String, shortdesc, longdesc)
    }

    /// An integer parameter within `[min, max]`.
    pub const fn integer(
        name: &'static str,
        min: i64,
        max: i64,
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Self {
        Self::base(name, ParamType::Integer { min, max }, shortdesc, longdesc)
    }

    /// A boolean parameter (false unless a default says otherwise).
    pub const fn boolean(
        name: &'static str,
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Self {
        Self::base(name, ParamType::Boolean, shortdesc, longdesc)
    }

    /// A parameter taking one of `choices`.
    pub const fn select(
        name: &'static str,
        choices: &'static [&'static str],
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Self {
        Self::base(name, ParamType::Select(choices), shortdesc, longdesc)
    }

    /// Marks it required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks it unique across resources of this agent.
    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Sets the default value.
    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// Sets the aliases.
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }
}

/// Reads a boolean the way `ocf_is_true` does, plus the usual false words; `None` if it is
/// neither.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" | "y" => Some(true),
        "0" | "no" | "false" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// The parameters of one invocation, checked against the agent's [`ParamDef`]s: every
/// required one present, every value of its type. Getters take the parameter's name; asking
/// for a name the agent did not define, or with the wrong type, is a programming error and
/// panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<&'static str, Value>,
    given: Vec<&'static str>,
    defs: Vec<ParamDef>,
}

impl Params {
    /// Parses the instance parameters in `env` against `defs`. Errors are `OCF_ERR_CONFIGURED`
    /// and name the parameter and its bad value. Variables that no definition names (e.g. the
    /// `crm_feature_set` Pacemaker passes) are ignored.
    pub fn parse(defs: &[ParamDef], env: &Env) -> Result<Params, OcfError> {
        let mut values = BTreeMap::new();
        let mut given = Vec::new();
        for def in defs {
            let mut found: Option<(&str, &str)> = None;
            for name in std::iter::once(&def.name).chain(def.aliases.iter()) {
                let Some(v) = env
                    .reskeys
                    .get(*name)
                    .map(String::as_str)
                    .filter(|v| !v.is_empty())
                else {
                    continue;
                };
                match found {
                    Some((first, fv)) if fv != v => {
                        return Err(OcfError::configured(format!(
                            "parameters {first}={fv:?} and {name}={v:?} name the same setting with different values; give only one"
                        )));
                    }
                    Some(_) => {}
                    None => found = Some((name, v)),
                }
            }
            let raw = match (found, def.default) {
                (Some((name, v)), _) => {
                    given.push(def.name);
                    Some((name, v))
                }
                (None, Some(d)) => Some((def.name, d)),
                (None, None) if def.required => return Err(OcfError::missing_param(def.name)),
                (None, None) => None,
            };
            let value = match raw {
                Some((name, v)) => parse_value(def.kind, name, v)?,
                None if def.kind == ParamType::Boolean => Value::Bool(false),
                None => continue,
            };
            values.insert(def.name, value);
        }
        Ok(Params {
            values,
            given,
            defs: defs.to_vec(),
        })
    }

    fn def(&self, name: &str) -> &ParamDef {
        self.defs
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("agent asked for parameter {name}, which it does not define"))
    }

    /// A string or select parameter's value (given or default), `None` if neither.
    pub fn str(&self, name: &str) -> Option<&str> {
        let def = self.def(name);
        assert!(
            matches!(def.kind, ParamType::String | ParamType::Select(_)),
            "parameter {name} is not a string"
        );
        match self.values.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A required string parameter's value (panics if the definition does not require it or
    /// give a default, since then it may be absent).
    pub fn required_str(&self, name: &str) -> &str {
        let def = self.def(name);
        assert!(
            def.required || def.default.is_some(),
            "parameter {name} may be absent; use str()"
        );
        self.str(name).expect("checked by parse")
    }

    /// An integer parameter's value (given or default).
    pub fn int(&self, name: &str) -> Option<i64> {
        let def = self.def(name);
        assert!(
            matches!(def.kind, ParamType::Integer { .. }),
            "parameter {name} is not an integer"
        );
        match self.values.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A boolean parameter's value (given, else default, else false).
    pub fn bool(&self, name: &str) -> bool {
        let def = self.def(name);
        assert_eq!(
            def.kind,
            ParamType::Boolean,
            "parameter {name} is not a boolean"
        );
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    /// Whether the user gave the parameter (or an alias), as opposed to its default.
    pub fn is_given(&self, name: &str) -> bool {
        self.def(name);
        self.given.contains(&name)
    }
}

fn parse_value(kind: ParamType, name: &str, v: &str) -> Result<Value, OcfError> {
    match kind {
        ParamType::String => Ok(Value::Str(v.to_owned())),
        ParamType::Select(choices) => {
            if choices.contains(&v) {
                Ok(Value::Str(v.to_owned()))
            } else {
                Err(OcfError::bad_param(
                    name,
                    v,
                    format!("expected one of {}", choices.join(", ")),
                ))
            }
        }
        ParamType::Integer { min, max } => {
            let i: i64 = v
                .trim()
                .parse()
                .map_err(|_| OcfError::bad_param(name, v, "expected an integer"))?;
            if i < min || i > max {
                return Err(OcfError::bad_param(
                    name,
                    v,
                    format!("expected an integer from {min} to {max}"),
                ));
            }
            Ok(Value::Int(i))
        }
        ParamType::Boolean => parse_bool(v).map(Value::Bool).ok_or_else(|| {
            OcfError::bad_param(
                name,
                v,
                "expected a boolean (yes/no, true/false, 1/0, on/off)",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    const DEFS: &[ParamDef] = &[
        ParamDef::string("ip", "IP", "The address.")
            .required()
            .unique(),
        ParamDef::integer("arp_count", 0, 100, "ARPs", "How many.").default("5"),
        ParamDef::boolean("run_fsck", "fsck", "Whether.").default("yes"),
        ParamDef::boolean("force", "force", "Whether."),
        ParamDef::select("mode", &["fast", "slow"], "mode", "Mode."),
        ParamDef::string("resource", "res", "Resource.").aliases(&["drbd_resource"]),
    ];

    fn parse(vars: &[(&str, &str)]) -> Result<Params, OcfError> {
        let env =
            Env::from_vars(vars.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), *v))).unwrap();
        Params::parse(DEFS, &env)
    }

    #[test]
    fn typed_values_defaults_and_given() {
        let p = parse(&[
            ("ip", "10.0.0.1"),
            ("force", "on"),
            ("mode", "slow"),
            ("crm_feature_set", "3.16"),
        ])
        .unwrap();
        assert_eq!(p.str("ip"), Some("10.0.0.1"));
        assert_eq!(p.required_str("ip"), "10.0.0.1");
        assert_eq!(p.int("arp_count"), Some(5));
        assert!(p.bool("run_fsck") && p.bool("force"));
        assert_eq!(p.str("mode"), Some("slow"));
        assert_eq!(p.str("resource"), None);
        assert!(p.is_given("ip") && !p.is_given("arp_count"));
    }

    #[test]
    fn missing_required_names_the_parameter() {
        let e = parse(&[("ip", "")]).unwrap_err();
        assert_eq!(e.status, Status::ErrConfigured);
        assert_eq!(
            e.reason,
            "parameter ip is required but was not given (OCF_RESKEY_ip)"
        );
    }

    #[test]
    fn bad_values_name_parameter_and_value() {
        let e = parse(&[("ip", "x"), ("arp_count", "lots")]).unwrap_err();
        assert_eq!(
            e.reason,
            r#"parameter arp_count: invalid value "lots": expected an integer"#
        );
        let e = parse(&[("ip", "x"), ("arp_count", "101")]).unwrap_err();
        assert_eq!(
            e.reason,
            r#"parameter arp_count: invalid value "101": expected an integer from 0 to 100"#
        );
        let e = parse(&[("ip", "x"), ("force", "maybe")]).unwrap_err();
        assert!(
            e.reason
                .starts_with(r#"parameter force: invalid value "maybe": expected a boolean"#),
            "{e}"
        );
        let e = parse(&[("ip", "x"), ("mode", "medium")]).unwrap_err();
        assert_eq!(
            e.reason,
            r#"parameter mode: invalid value "medium": expected one of fast, slow"#
        );
        assert_eq!(e.status, Status::ErrConfigured);
    }

    #[test]
    fn aliases_are_accepted_and_conflicts_refused() {
        let p = parse(&[("ip", "x"), ("drbd_resource", "zimbradata")]).unwrap();
        assert_eq!(p.str("resource"), Some("zimbradata"));
        assert!(p.is_given("resource"));
        let p = parse(&[("ip", "x"), ("drbd_resource", "r0"), ("resource", "r0")]).unwrap();
        assert_eq!(p.str("resource"), Some("r0"));
        let e = parse(&[("ip", "x"), ("drbd_resource", "r0"), ("resource", "r1")]).unwrap_err();
        assert_eq!(e.status, Status::ErrConfigured);
        assert!(
            e.reason.contains("resource=\"r1\"") && e.reason.contains("drbd_resource=\"r0\""),
            "{e}"
        );
    }

    #[test]
    fn booleans_like_ocf_is_true() {
        for t in ["1", "yes", "TRUE", "On", "y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "no", "False", "OFF", "n"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("2"), None);
    }

    #[test]
    #[should_panic(expected = "does not define")]
    fn asking_for_an_undefined_parameter_is_a_bug() {
        let p = parse(&[("ip", "x")]).unwrap();
        let _ = p.str("nic");
    }
}

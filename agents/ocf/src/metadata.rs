//! Actions and the `meta-data` XML, generated from the agent's definitions.
//!
//! The XML is valid against both schemas a user's tools check: Debian resource-agents'
//! `ra-api-1.dtd` (what `ocf-tester` validates with `xmllint --valid`) and its OCF 1.1 RELAX NG
//! `metadata.rng` — i.e. only what both allow: `content` types string/integer/boolean,
//! parameters with `required`/`unique`, roles `Promoted`/`Unpromoted`. The `agents/ocf` tests
//! validate every shape this module can produce against both with `xmllint`.

use std::fmt::Write as _;

use crate::ParamDef;

/// An OCF action, the agent's only argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start the resource (unpromoted, for a promotable one).
    Start,
    /// Stop it; succeeding on a stopped resource.
    Stop,
    /// Report its state (0, 7, 8, or an error); a probe when the interval is 0.
    Monitor,
    /// Print the meta-data XML.
    MetaData,
    /// Check the configuration without touching the resource.
    ValidateAll,
    /// Promote (promotable resources).
    Promote,
    /// Demote (promotable resources).
    Demote,
    /// Clone notification (pre/post start, stop, promote, demote).
    Notify,
    /// Apply changed parameters without a restart.
    Reload,
}

impl Action {
    /// Every action, in the order the meta-data lists them.
    pub const ALL: [Action; 9] = [
        Action::Start,
        Action::Stop,
        Action::Monitor,
        Action::Promote,
        Action::Demote,
        Action::Notify,
        Action::Reload,
        Action::MetaData,
        Action::ValidateAll,
    ];

    /// The action's name on the command line and in the meta-data.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::Reload => "reload",
        }
    }

    /// The action named `s`, if it is one this library knows.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// The role an operation applies to (for the `monitor` of a promotable resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The promoted instance (Pacemaker's older word: Master).
    Promoted,
    /// An unpromoted instance (older: Slave).
    Unpromoted,
}

/// An action as advertised in the meta-data, with its default timeout (and interval/depth/role
/// for monitors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionDef {
    /// Which action.
    pub action: Action,
    /// Default timeout, in seconds.
    pub timeout_s: u32,
    /// Default interval, in seconds (recurring monitors).
    pub interval_s: Option<u32>,
    /// `OCF_CHECK_LEVEL` this monitor runs at.
    pub depth: Option<u32>,
    /// The role this monitor applies to.
    pub role: Option<Role>,
}

impl ActionDef {
    /// An action with a default timeout in seconds.
    pub const fn new(action: Action, timeout_s: u32) -> Self {
        ActionDef {
            action,
            timeout_s,
            interval_s: None,
            depth: None,
            role: None,
        }
    }

    /// A recurring monitor.
    pub const fn monitor(timeout_s: u32, interval_s: u32) -> Self {
        ActionDef {
            action: Action::Monitor,
            timeout_s,
            interval_s: Some(interval_s),
            depth: None,
            role: None,
        }
    }

    /// Sets the depth.
    pub const fn depth(mut self, depth: u32) -> Self {
        self.depth = Some(depth);
        self
    }

    /// Sets the role.
    pub const fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }
}

/// Everything the meta-data says about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// The agent's type name (`IPaddr`, `Filesystem`, `replicator`, `mail`).
    pub name: &'static str,
    /// The agent's own version.
    pub version: &'static str,
    /// One line.
    pub shortdesc: &'static str,
    /// Full description.
    pub longdesc: &'static str,
    /// Its parameters (at least one: both schemas require it).
    pub params: &'static [ParamDef],
    /// Its actions (must include start, stop, monitor, meta-data).
    pub actions: &'static [ActionDef],
}

/// The OCF API version the meta-data declares.
pub const OCF_VERSION: &str = "1.1";

impl Metadata {
    /// Whether the agent implements `action`.
    pub fn supports(&self, action: Action) -> bool {
        self.actions.iter().any(|a| a.action == action)
    }

    /// The default timeout of `action` from the meta-data (the first entry for it), in seconds.
    pub fn default_timeout_s(&self, action: Action) -> Option<u32> {
        self.actions
            .iter()
            .find(|a| a.action == action)
            .map(|a| a.timeout_s)
    }

    /// The meta-data XML document.
    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        x.push_str("<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n");
        let _ = writeln!(
            x,
            "<resource-agent name=\"{}\" version=\"{}\">",
            esc(self.name),
            esc(self.version)
        );
        let _ = writeln!(x, "<version>{OCF_VERSION}</version>");
        let _ = writeln!(
            x,
            "<longdesc lang=\"en\">\n{}\n</longdesc>",
            esc(self.longdesc.trim())
        );
        let _ = writeln!(
            x,
            "<shortdesc lang=\"en\">{}</shortdesc>",
            esc(self.shortdesc.trim())
        );
        x.push_str("<parameters>\n");
        for p in self.params {
            write_param(&mut x, p, p.name, None);
            for alias in p.aliases {
                write_param(&mut x, p, alias, Some(p.name));
            }
        }
        x.push_str("</parameters>\n<actions>\n");
        for a in self.actions {
            let _ = write!(
                x,
                "<action name=\"{}\" timeout=\"{}s\"",
                a.action.name(),
                a.timeout_s
            );
            if let Some(i) = a.interval_s {
                let _ = write!(x, " interval=\"{i}s\"");
            }
            if let Some(d) = a.depth {
                let _ = write!(x, " depth=\"{d}\"");
            }
            if let Some(r) = a.role {
                let _ = write!(
                    x,
                    " role=\"{}\"",
                    if r == Role::Promoted {
                        "Promoted"
                    } else {
                        "Unpromoted"
                    }
                );
            }
            x.push_str(" />\n");
        }
        x.push_str("</actions>\n</resource-agent>\n");
        x
    }
}

/// Writes one `<parameter>`; an alias (`alias_of` set) is never required, has no default,
/// and says which parameter it stands for.
fn write_param(x: &mut String, p: &ParamDef, name: &str, alias_of: Option<&str>) {
    // A parameter with aliases is enforced as required by `Params::parse` but not marked
    // required here: a configuration that gives only the alias (e.g. the thesis's
    // `drbd_resource=...`) must not be refused by tools that check required parameters.
    let required = alias_of.is_none() && p.required && p.aliases.is_empty();
    let unique = alias_of.is_none() && p.unique;
    let _ = writeln!(
        x,
        "<parameter name=\"{}\" unique=\"{}\" required=\"{}\">",
        esc(name),
        u8::from(unique),
        u8::from(required)
    );
    let mut long = String::new();
    if let Some(target) = alias_of {
        let _ = write!(
            long,
            "Alias of {target} (accepted so that existing configurations work unchanged). "
        );
    }
    long.push_str(p.longdesc.trim());
    if let crate::ParamType::Select(choices) = p.kind {
        let _ = write!(long, "\nOne of: {}.", choices.join(", "));
    }
    if alias_of.is_none() && p.required && !p.aliases.is_empty() {
        let _ = write!(
            long,
            "\nRequired: give it or its alias {}.",
            p.aliases.join(" or ")
        );
    }
    let short = match alias_of {
        Some(target) => format!("alias of {target}"),
        None => p.shortdesc.trim().to_owned(),
    };
    let _ = writeln!(x, "<longdesc lang=\"en\">\n{}\n</longdesc>", esc(&long));
    let _ = writeln!(x, "<shortdesc lang=\"en\">{}</shortdesc>", esc(&short));
    let _ = write!(x, "<content type=\"{}\"", p.kind.xml_type());
    if let (Some(d), None) = (p.default, alias_of) {
        let _ = write!(x, " default=\"{}\"", esc(d));
    }
    x.push_str(" />\n</parameter>\n");
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[ParamDef] = &[
        ParamDef::string("resource", "res", "The <resource> & more.")
            .required()
            .aliases(&["drbd_resource"]),
        ParamDef::select("mode", &["a", "b"], "mode", "Mode.").default("a"),
        ParamDef::integer("n", 0, 9, "n", "N.").unique(),
    ];
    const ACTIONS: &[ActionDef] = &[
        ActionDef::new(Action::Start, 20),
        ActionDef::monitor(20, 10).role(Role::Promoted).depth(0),
        ActionDef::new(Action::MetaData, 5),
    ];
    const MD: Metadata = Metadata {
        name: "t",
        version: "0.1",
        shortdesc: "Test",
        longdesc: "A test agent.",
        params: PARAMS,
        actions: ACTIONS,
    };

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(a));
        }
        assert_eq!(Action::parse("migrate_to"), None);
        assert!(MD.supports(Action::Start) && !MD.supports(Action::Promote));
        assert_eq!(MD.default_timeout_s(Action::Monitor), Some(20));
    }

    #[test]
    fn xml_has_escaped_text_aliases_and_select_choices() {
        let x = MD.to_xml();
        assert!(x.starts_with(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">"
        ));
        assert!(x.contains("The &lt;resource&gt; &amp; more."));
        assert!(x.contains("<parameter name=\"resource\" unique=\"0\" required=\"0\">"));
        assert!(x.contains("Required: give it or its alias drbd_resource."));
        assert!(x.contains("<parameter name=\"drbd_resource\" unique=\"0\" required=\"0\">"));
        assert!(x.contains("<shortdesc lang=\"en\">alias of resource</shortdesc>"));
        assert!(x.contains("One of: a, b.\n</longdesc>"));
        assert!(x.contains("<content type=\"string\" default=\"a\" />"));
        assert!(x.contains("<parameter name=\"n\" unique=\"1\" required=\"0\">"));
        assert!(x.contains("<action name=\"monitor\" timeout=\"20s\" interval=\"10s\" depth=\"0\" role=\"Promoted\" />"));
    }
}

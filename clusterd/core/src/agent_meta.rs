//! What an OCF agent's `meta-data` says about reloading (OCF 1.1 §5 "Metadata"): whether it
//! can reload its parameters in place, and which parameters still need a restart.
//!
//! - `reload-agent` in the actions (OCF 1.1): parameters marked `reloadable="1"` can be
//!   reloaded; every other parameter forces a restart.
//! - only `reload` (OCF 1.0 agents, e.g. Debian's `ocf:heartbeat:Dummy`): Pacemaker's old
//!   convention — parameters marked `unique="1"` force a restart, the others can be reloaded.
//! - neither: any change restarts the resource.
//!
//! The executor records the resulting list with each one-shot operation (Pacemaker's
//! `op-force-restart`), so the scheduler can tell a reload from a restart ([`crate::digest`]).

use crate::xml::XmlError;
use crate::xml::dom::parse;

/// One declared parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamMeta {
    pub name: String,
    pub unique: bool,
    pub reloadable: bool,
}

/// The parts of an agent's meta-data clusterd uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentMeta {
    /// Advertises `reload-agent` (OCF 1.1).
    pub reload_agent: bool,
    /// Advertises `reload` (OCF 1.0).
    pub legacy_reload: bool,
    pub params: Vec<ParamMeta>,
}

fn flag(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

impl AgentMeta {
    /// Parses `meta-data` output (`<resource-agent>` XML).
    pub fn parse(text: &str) -> Result<AgentMeta, XmlError> {
        let root = parse(text.trim_start())?;
        if root.name != "resource-agent" {
            return Err(root.err(format!(
                "root element is <{}>, expected <resource-agent>",
                root.name
            )));
        }
        let mut out = AgentMeta::default();
        if let Some(actions) = root.child("actions") {
            for a in actions.children_named("action") {
                match a.attr("name") {
                    Some("reload-agent") => out.reload_agent = true,
                    Some("reload") => out.legacy_reload = true,
                    _ => {}
                }
            }
        }
        if let Some(params) = root.child("parameters") {
            for p in params.children_named("parameter") {
                out.params.push(ParamMeta {
                    name: p.req("name")?.to_string(),
                    unique: flag(p.attr("unique")),
                    reloadable: flag(p.attr("reloadable")),
                });
            }
        }
        Ok(out)
    }

    /// Can the agent reload at all?
    pub fn supports_reload(&self) -> bool {
        self.reload_agent || self.legacy_reload
    }

    /// The action the executor runs for a reload: `reload-agent`, else `reload`.
    pub fn reload_action(&self) -> Option<&'static str> {
        if self.reload_agent {
            Some("reload-agent")
        } else if self.legacy_reload {
            Some("reload")
        } else {
            None
        }
    }

    /// The parameters whose change needs a restart (Pacemaker's `op-force-restart`), or `None`
    /// when the agent cannot reload.
    pub fn force_restart(&self) -> Option<Vec<String>> {
        let list = if self.reload_agent {
            self.params
                .iter()
                .filter(|p| !p.reloadable)
                .map(|p| p.name.clone())
                .collect()
        } else if self.legacy_reload {
            self.params
                .iter()
                .filter(|p| p.unique)
                .map(|p| p.name.clone())
                .collect()
        } else {
            return None;
        };
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocf_1_1_and_1_0_reload() {
        let new = AgentMeta::parse(
            r#"<?xml version="1.0"?>
<resource-agent name="Stateful" version="1.1">
  <parameters>
    <parameter name="state" unique-group="state"><content type="string"/></parameter>
    <parameter name="envfile" reloadable="1"><content type="string"/></parameter>
  </parameters>
  <actions><action name="start" timeout="20s"/><action name="reload-agent" timeout="10s"/></actions>
</resource-agent>"#,
        )
        .unwrap();
        assert_eq!(new.reload_action(), Some("reload-agent"));
        assert_eq!(new.force_restart(), Some(vec!["state".to_string()]));
        let old = AgentMeta::parse(
            r#"<resource-agent name="Dummy"><parameters>
<parameter name="state" unique="1"/><parameter name="fake" unique="0"/></parameters>
<actions><action name="reload"/></actions></resource-agent>"#,
        )
        .unwrap();
        assert_eq!(old.reload_action(), Some("reload"));
        assert_eq!(old.force_restart(), Some(vec!["state".to_string()]));
        let none = AgentMeta::parse("<resource-agent><actions/></resource-agent>").unwrap();
        assert_eq!(none.force_restart(), None);
        assert!(AgentMeta::parse("<nope/>").is_err());
        assert!(AgentMeta::parse("not xml <").is_err());
    }
}

//! Structural validation of a CIB: what must hold for the scheduler to read it at all.
//! (What is legal but probably wrong is the linter's business: `crate::lint`.)

use super::*;
use std::collections::BTreeSet;

/// A CIB that cannot be used, with the offending id or value named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "'{0}' is not a valid id (letters, digits, '_', '-', '.', not starting with a digit, '-' or '.')"
    )]
    BadId(String),
    #[error("id '{0}' is used twice")]
    DuplicateId(String),
    #[error("group '{0}' has no members")]
    EmptyGroup(String),
    #[error("resource '{rsc}': agent '{agent}': {reason}")]
    BadAgent {
        rsc: String,
        agent: String,
        reason: String,
    },
    #[error("resource '{rsc}': operation '{op}': {reason}")]
    BadOp {
        rsc: String,
        op: String,
        reason: String,
    },
    #[error("resource '{rsc}': meta attribute {name}='{value}': {reason}")]
    BadMeta {
        rsc: String,
        name: String,
        value: String,
        reason: String,
    },
    #[error("constraint '{id}': {reason}")]
    BadConstraint { id: String, reason: String },
    #[error("node '{0}' is listed twice")]
    DuplicateNode(String),
    #[error("property {name}='{value}': {reason}")]
    BadProperty {
        name: String,
        value: String,
        reason: String,
    },
}

/// XML NCName-like ids, as Pacemaker's schema requires (`[A-Za-z_][A-Za-z0-9_.-]*`, plus the
/// `:` Pacemaker tolerates in older CIBs is refused here because it names clone instances).
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Cib {
    /// Checks the structural invariants listed in the module docs.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut ids = BTreeSet::new();
        let mut claim = |id: &str| -> Result<(), ValidationError> {
            if !is_valid_id(id) {
                return Err(ValidationError::BadId(id.to_string()));
            }
            if !ids.insert(id.to_string()) {
                return Err(ValidationError::DuplicateId(id.to_string()));
            }
            Ok(())
        };
        for id in self.resource_ids() {
            claim(id)?;
        }
        for c in &self.constraints {
            claim(c.id())?;
        }
        let mut nodes = BTreeSet::new();
        for n in &self.nodes {
            if n.name.is_empty() || n.name.chars().any(|c| c.is_whitespace()) {
                return Err(ValidationError::BadId(n.name.clone()));
            }
            if !nodes.insert(n.name.as_str()) {
                return Err(ValidationError::DuplicateNode(n.name.clone()));
            }
        }
        for r in &self.resources {
            match r {
                Resource::Group(g) if g.members.is_empty() => {
                    return Err(ValidationError::EmptyGroup(g.id.clone()));
                }
                Resource::Clone(c) => {
                    if let CloneChild::Group(g) = &c.child
                        && g.members.is_empty()
                    {
                        return Err(ValidationError::EmptyGroup(g.id.clone()));
                    }
                    for name in [
                        "clone-max",
                        "clone-node-max",
                        "promoted-max",
                        "promoted-node-max",
                    ] {
                        if let Some(v) = lookup_meta(&c.meta, name)
                            && v.trim().parse::<u32>().is_err()
                        {
                            return Err(ValidationError::BadMeta {
                                rsc: c.id.clone(),
                                name: name.into(),
                                value: v.clone(),
                                reason: "expected a non-negative integer".into(),
                            });
                        }
                    }
                    if c.clone_node_max() > 1 {
                        return Err(ValidationError::BadMeta {
                            rsc: c.id.clone(),
                            name: "clone-node-max".into(),
                            value: c.clone_node_max().to_string(),
                            reason: "clusterd runs at most one instance of a clone per node (clone-node-max=1)".into(),
                        });
                    }
                    if c.globally_unique() {
                        return Err(ValidationError::BadMeta {
                            rsc: c.id.clone(),
                            name: "globally-unique".into(),
                            value: "true".into(),
                            reason: "globally unique clones are not supported by clusterd; use anonymous clones".into(),
                        });
                    }
                }
                _ => {}
            }
        }
        for p in self.primitives() {
            let p = p.primitive;
            if p.agent.kind.is_empty() || (p.agent.class == "ocf" && p.agent.provider.is_none()) {
                return Err(ValidationError::BadAgent {
                    rsc: p.id.clone(),
                    agent: p.agent.to_string(),
                    reason: "an ocf agent needs a provider and a type (ocf:PROVIDER:TYPE)".into(),
                });
            }
            for o in &p.ops {
                if o.name.is_empty() {
                    return Err(ValidationError::BadOp {
                        rsc: p.id.clone(),
                        op: o.name.clone(),
                        reason: "empty name".into(),
                    });
                }
                if o.interval_ms > 0 && o.name != "monitor" {
                    return Err(ValidationError::BadOp {
                        rsc: p.id.clone(),
                        op: o.name.clone(),
                        reason: "only monitor may be recurring (interval > 0)".into(),
                    });
                }
            }
            let mut seen = BTreeSet::new();
            for o in p
                .ops
                .iter()
                .filter(|o| o.name == "monitor" && o.interval_ms > 0)
            {
                if !seen.insert(o.interval_ms) {
                    return Err(ValidationError::BadOp {
                        rsc: p.id.clone(),
                        op: "monitor".into(),
                        reason: format!(
                            "two monitors with interval {}; Pacemaker needs distinct intervals per resource",
                            format_duration_ms(o.interval_ms)
                        ),
                    });
                }
            }
        }
        for c in &self.constraints {
            if let Constraint::Colocation(col) = c
                && col.rsc == col.with_rsc
            {
                return Err(ValidationError::BadConstraint {
                    id: col.id.clone(),
                    reason: format!("'{}' cannot be colocated with itself", col.rsc),
                });
            }
            if let Constraint::Order(o) = c
                && o.first == o.then
            {
                return Err(ValidationError::BadConstraint {
                    id: o.id.clone(),
                    reason: format!("'{}' cannot be ordered after itself", o.first),
                });
            }
        }
        for (name, value) in &self.properties {
            let boolean = matches!(
                name.as_str(),
                "stonith-enabled"
                    | "symmetric-cluster"
                    | "maintenance-mode"
                    | "stop-all-resources"
                    | "start-failure-is-fatal"
            );
            let ok_bool = [
                "true", "false", "on", "off", "yes", "no", "y", "n", "1", "0",
            ]
            .contains(&value.to_ascii_lowercase().as_str());
            if boolean && !ok_bool {
                return Err(ValidationError::BadProperty {
                    name: name.clone(),
                    value: value.clone(),
                    reason: "expected true or false".into(),
                });
            }
            if name == "no-quorum-policy"
                && !["stop", "ignore", "freeze", "demote", "suicide"]
                    .contains(&value.to_ascii_lowercase().as_str())
            {
                return Err(ValidationError::BadProperty {
                    name: name.clone(),
                    value: value.clone(),
                    reason: "expected stop, ignore, freeze, demote or suicide".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("ClusterIP"));
        assert!(is_valid_id("mail_data-1.x"));
        assert!(!is_valid_id("1abc"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a:0"));
        assert!(!is_valid_id(""));
    }
}

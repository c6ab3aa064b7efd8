//! `clusterctl simulate`: the transition summary and the resulting placement, as text (in the
//! shape of `crm_simulate -S`) or JSON.

use crate::cib::Role;
use crate::transition::{ActionKind, Placement, Transition};
use serde::Serialize;

/// One changing resource, in crm_simulate's words.
fn change(p: &Placement, t: &Transition) -> Option<(&'static str, String)> {
    let acted = |k: ActionKind| {
        t.actions
            .iter()
            .any(|a| a.resource == p.resource && a.kind == k)
    };
    let role_word = |r: Role| r.as_str();
    match (&p.current_node, &p.node) {
        (None, None) => p.blocked_on.as_ref().map(|n| match p.blocked_role {
            Some(Role::Promoted) => ("Promote", format!("Stopped -> Promoted {n}")),
            _ => ("Start", n.clone()),
        }),
        (None, Some(n)) => match p.role {
            Role::Promoted => Some(("Promote", format!("Stopped -> Promoted {n}"))),
            _ => Some(("Start", n.clone())),
        },
        (Some(c), None) => match p.current_role {
            Role::Promoted | Role::Unpromoted if p.current_role == Role::Promoted => {
                Some(("Stop", format!("{} {c}", role_word(p.current_role))))
            }
            _ => Some(("Stop", c.clone())),
        },
        (Some(c), Some(n)) if c != n => {
            if p.current_role == Role::Promoted || p.role == Role::Promoted {
                Some((
                    "Move",
                    format!(
                        "{} {c} -> {} {n}",
                        role_word(p.current_role),
                        role_word(p.role)
                    ),
                ))
            } else if p.failed {
                Some(("Recover", format!("{c} -> {n}")))
            } else {
                Some(("Move", format!("{c} -> {n}")))
            }
        }
        (Some(_), Some(n)) => {
            let restarted = acted(ActionKind::Stop) && acted(ActionKind::Start);
            let verb_role = |verb| {
                Some((
                    verb,
                    format!("{} -> {} {n}", role_word(p.current_role), role_word(p.role)),
                ))
            };
            match (p.current_role, p.role) {
                (Role::Unpromoted, Role::Promoted) if p.failed || restarted => Some((
                    "Recover",
                    format!("{} -> {} {n}", role_word(p.current_role), role_word(p.role)),
                )),
                (Role::Promoted, Role::Unpromoted) if p.failed || restarted => Some((
                    "Recover",
                    format!("{} -> {} {n}", role_word(p.current_role), role_word(p.role)),
                )),
                (Role::Unpromoted, Role::Promoted) => verb_role("Promote"),
                (Role::Promoted, Role::Unpromoted) => verb_role("Demote"),
                (Role::Promoted, Role::Promoted) if p.failed => {
                    Some(("Recover", format!("Promoted {n}")))
                }
                (Role::Promoted, Role::Promoted) if restarted => {
                    Some(("Restart", format!("Promoted {n}")))
                }
                _ if p.failed => Some(("Recover", n.clone())),
                _ if restarted => Some(("Restart", n.clone())),
                _ => None,
            }
        }
    }
}

/// `  * Start      ClusterIP     ( hermes )` lines, sorted as the placements are.
pub fn summary_lines(t: &Transition) -> Vec<String> {
    let changes: Vec<(&str, &str, String)> = t
        .placements
        .iter()
        .filter(|p| !p.unmanaged)
        .filter_map(|p| change(p, t).map(|(v, d)| (v, p.resource.as_str(), d)))
        .collect();
    let width = changes.iter().map(|(_, r, _)| r.len()).max().unwrap_or(0);
    changes
        .into_iter()
        .map(|(verb, rsc, detail)| {
            let blocked = t
                .placements
                .iter()
                .find(|p| p.resource == rsc && p.node.is_none() && p.blocked_on.is_some())
                .map(|p| {
                    format!(
                        "  due to {} (blocked)",
                        p.blocked_reason.as_deref().unwrap_or("an order")
                    )
                })
                .unwrap_or_default();
            format!("  * {verb:<10} {rsc:<width$} ( {detail} ){blocked}")
        })
        .collect()
}

/// `--json` output: every resource instance with where it ends and in which role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JsonResource {
    pub resource: String,
    pub node: Option<String>,
    pub role: Role,
}

/// The resulting placement, one entry per resource instance.
pub fn json_placement(t: &Transition) -> Vec<JsonResource> {
    t.placements
        .iter()
        .map(|p| JsonResource {
            resource: p.resource.clone(),
            node: p.node.clone(),
            role: if p.node.is_none() {
                Role::Stopped
            } else {
                p.role
            },
        })
        .collect()
}

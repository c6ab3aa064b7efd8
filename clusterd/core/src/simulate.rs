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
        (None, None) => None,
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
    summary_lines_with(t, &[])
}

/// Summary lines plus Pacemaker's "(blocked)" lines for starts an order prevents.
pub fn summary_lines_with(t: &Transition, blocked: &[crate::sched::BlockedStart]) -> Vec<String> {
    let changes: Vec<(&str, &str, String, Option<&str>)> = t
        .placements
        .iter()
        .filter(|p| !p.unmanaged)
        .filter_map(|p| {
            if let Some(b) = blocked.iter().find(|b| b.resource == p.resource) {
                let (verb, detail) = match b.role {
                    Role::Promoted => ("Promote", format!("Stopped -> Promoted {}", b.node)),
                    _ => ("Start", b.node.clone()),
                };
                return Some((verb, p.resource.as_str(), detail, Some(b.reason.as_str())));
            }
            change(p, t).map(|(v, d)| (v, p.resource.as_str(), d, None))
        })
        .collect();
    let width = changes
        .iter()
        .map(|(_, r, _, _)| r.len())
        .max()
        .unwrap_or(0);
    changes
        .into_iter()
        .map(|(verb, rsc, detail, why)| {
            let blocked = why
                .map(|w| format!("  due to {w} (blocked)"))
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

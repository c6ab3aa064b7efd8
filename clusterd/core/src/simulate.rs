//! `clusterctl simulate`: the transition summary and the resulting placement, as text (in the
//! shape of `crm_simulate -S`) or JSON.

use crate::cib::Role;
use crate::transition::{ActionKind, Placement, Transition};
use serde::Serialize;

/// The part in parentheses, as Pacemaker 2.1.5 words it (`rsc_action_item`): roles are shown
/// when the resource is or becomes more than Started/Unpromoted.
fn details(p: &Placement) -> String {
    let cur = if p.current_node.is_some() {
        p.current_role
    } else {
        Role::Stopped
    };
    let next = if p.node.is_some() {
        p.role
    } else {
        Role::Stopped
    };
    let need_role = cur > Role::Started || next > Role::Unpromoted;
    let same_role = cur == next;
    match (&p.current_node, &p.node) {
        (None, Some(d)) if need_role => format!("{cur} -> {next} {d}"),
        (None, Some(d)) => d.clone(),
        (Some(o), None) if need_role => format!("{cur} {o}"),
        (Some(o), None) => o.clone(),
        (Some(o), Some(d)) if o == d && same_role && need_role => format!("{cur} {o}"),
        (Some(o), Some(d)) if o == d && same_role => o.clone(),
        (Some(o), Some(d)) if same_role && need_role => format!("{o} -> {d} {cur}"),
        (Some(o), Some(d)) if same_role => format!("{o} -> {d}"),
        (Some(o), Some(d)) if o == d => format!("{cur} -> {next} {o}"),
        (Some(o), Some(d)) => format!("{cur} {o} -> {next} {d}"),
        (None, None) => String::new(),
    }
}

/// One changing resource, in crm_simulate's words: the verb and the details.
fn change(p: &Placement, t: &Transition) -> Option<(&'static str, String)> {
    let acted = |k: ActionKind| {
        t.actions
            .iter()
            .any(|a| a.resource == p.resource && a.kind == k)
    };
    let verb = match (&p.current_node, &p.node) {
        (None, None) => return None,
        (None, Some(_)) if p.role == Role::Promoted => "Promote",
        (None, Some(_)) => "Start",
        (Some(_), None) => "Stop",
        (Some(c), Some(n)) if c != n => {
            if p.failed && p.current_role != Role::Promoted && p.role != Role::Promoted {
                "Recover"
            } else {
                "Move"
            }
        }
        (Some(_), Some(_)) => {
            let restarted = acted(ActionKind::Stop) && acted(ActionKind::Start);
            match (p.current_role, p.role) {
                (Role::Unpromoted, Role::Promoted) | (Role::Promoted, Role::Unpromoted)
                    if p.failed =>
                {
                    "Recover"
                }
                (Role::Unpromoted, Role::Promoted) | (Role::Promoted, Role::Unpromoted)
                    if restarted =>
                {
                    "Restart"
                }
                (Role::Unpromoted, Role::Promoted) => "Promote",
                (Role::Promoted, Role::Unpromoted) => "Demote",
                _ if p.failed => "Recover",
                _ if restarted => "Restart",
                _ if acted(ActionKind::Reload) => "Reload",
                _ => return None,
            }
        }
    };
    Some((verb, details(p)))
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
    let reason_of = |rsc: &str, verb: &str| {
        t.placements
            .iter()
            .find(|p| p.resource == rsc)
            .and_then(|p| p.reason.as_deref())
            .filter(|_| matches!(verb, "Restart" | "Reload"))
    };
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
                .or_else(|| {
                    reason_of(rsc, verb)
                        .filter(|_| verb == "Restart")
                        .map(|r| format!("  due to {r}"))
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

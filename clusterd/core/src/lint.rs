//! The linter: configurations that are valid but cannot do what the user meant.
//!
//! Each warning names the constraint or setting, says why it cannot work, and proposes the
//! likely fix. The two mistakes of the thesis this project rebuilds are the first two checks:
//! `colocation add ZimbraService with ZimbraFS INFINITY with-rsc-role=Master` (ZimbraFS is not
//! promotable, so the role never matches and the colocation is ignored) and
//! `order promote ZimbraFS then start ZimbraService` (a primitive is never promoted, so the
//! order never applies).

use crate::cib::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A lint finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable identifier of the check (`role-never-matches`, `order-action-never-happens`,
    /// `missing-resource`, `order-cycle`, `colocation-cycle`, `contradictory-scores`,
    /// `clone-child-referenced`, `stonith-without-device`).
    pub code: &'static str,
    /// The constraint (or setting) concerned.
    pub subject: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {}: {}\n  fix: {}",
            self.subject, self.message, self.fix
        )
    }
}

fn is_promotable(cib: &Cib, id: &str) -> Option<bool> {
    cib.find(id).map(|r| r.is_promotable())
}

fn kind_of(cib: &Cib, id: &str) -> &'static str {
    cib.find(id).map_or("resource", |r| r.kind_name())
}

/// Finds cycles in a directed graph; returns each cycle once (as a node list).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut seen_sets: BTreeSet<Vec<String>> = BTreeSet::new();
    // Bounded DFS from every node: configurations are small, and each node starts one walk.
    for start in edges.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut visited: BTreeSet<String> = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut key = path.clone();
                    key.sort();
                    if seen_sets.insert(key) {
                        out.push(path.clone());
                    }
                } else if !path.contains(next) && visited.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    out
}

/// The top-level resource an id belongs to (orders and colocations on members act on it).
fn top(cib: &Cib, id: &str) -> String {
    cib.top_level_of(id)
        .map_or_else(|| id.to_string(), |r| r.id().to_string())
}

/// All warnings for a configuration, in a stable order.
pub fn lint(cib: &Cib) -> Vec<Warning> {
    let mut out = Vec::new();
    for c in &cib.constraints {
        for r in c.resources() {
            if !cib.contains(r) {
                out.push(Warning {
                    code: "missing-resource",
                    subject: format!("constraint '{}'", c.id()),
                    message: format!("names '{r}', which does not exist, so the constraint does nothing"),
                    fix: format!("create '{r}', correct the name, or remove it: clusterctl constraint remove {}", c.id()),
                });
            }
        }
        match c {
            Constraint::Colocation(col) => {
                for (rsc, role, side) in [
                    (&col.with_rsc, col.with_rsc_role, "with-rsc-role"),
                    (&col.rsc, col.rsc_role, "rsc-role"),
                ] {
                    let Some(role @ (Role::Promoted | Role::Unpromoted)) = role else {
                        continue;
                    };
                    if is_promotable(cib, rsc) == Some(false) {
                        out.push(Warning {
                            code: "role-never-matches",
                            subject: format!("colocation '{}' ({} with {})", col.id, col.rsc, col.with_rsc),
                            message: format!(
                                "{side}={} can never match: '{rsc}' is a {}, not a promotable clone, so it is never {}; the colocation is ignored and '{}' may run anywhere",
                                role.legacy_name(),
                                kind_of(cib, rsc),
                                role.as_str(),
                                col.rsc
                            ),
                            fix: format!(
                                "colocate with the resource itself (drop {side}): clusterctl constraint colocation add {} with {} {}",
                                col.rsc, col.with_rsc, col.score
                            ),
                        });
                    }
                }
                for r in [&col.rsc, &col.with_rsc] {
                    clone_child_warning(cib, c.id(), r, &mut out);
                }
            }
            Constraint::Order(o) => {
                for (rsc, action) in [(&o.first, o.first_action), (&o.then, o.then_action)] {
                    if matches!(action, OrderAction::Promote | OrderAction::Demote)
                        && is_promotable(cib, rsc) == Some(false)
                    {
                        let first_side = rsc == &o.first;
                        let consequence = if first_side
                            && action == OrderAction::Promote
                            && o.kind == OrderKind::Mandatory
                        {
                            format!(
                                "so '{} {}' waits for something that never happens: '{}' will never {}",
                                o.then_action, o.then, o.then, o.then_action
                            )
                        } else {
                            "so this order never applies".to_string()
                        };
                        out.push(Warning {
                            code: "order-action-never-happens",
                            subject: format!(
                                "order '{}' ({} {} then {} {})",
                                o.id, o.first_action, o.first, o.then_action, o.then
                            ),
                            message: format!(
                                "'{rsc}' is a {} and is never {}d, {consequence}",
                                kind_of(cib, rsc),
                                action
                            ),
                            fix: format!(
                                "order on start instead: clusterctl constraint order {} {} then {} {}",
                                if first_side { OrderAction::Start } else { o.first_action },
                                o.first,
                                if first_side { o.then_action } else { OrderAction::Start },
                                o.then
                            ),
                        });
                    }
                }
                for r in [&o.first, &o.then] {
                    clone_child_warning(cib, c.id(), r, &mut out);
                }
            }
            Constraint::Location(l) => clone_child_warning(cib, c.id(), &l.rsc, &mut out),
        }
    }
    // Cycles among mandatory orders (between top-level resources).
    let mut order_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &cib.constraints {
        if let Constraint::Order(o) = c
            && o.kind == OrderKind::Mandatory
            && cib.contains(&o.first)
            && cib.contains(&o.then)
        {
            let (a, b) = (top(cib, &o.first), top(cib, &o.then));
            if a != b {
                order_edges.entry(a).or_default().insert(b);
            }
        }
    }
    for cyc in cycles(&order_edges) {
        out.push(Warning {
            code: "order-cycle",
            subject: format!("orders {}", cyc.join(" → ")),
            message: format!(
                "mandatory orders form a cycle ({} → {}): none of these can start first",
                cyc.join(" → "),
                cyc[0]
            ),
            fix:
                "remove one of the orders in the cycle (clusterctl constraint list shows their ids)"
                    .into(),
        });
    }
    // Cycles among colocations (dependent → primary).
    let mut col_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &cib.constraints {
        if let Constraint::Colocation(col) = c
            && cib.contains(&col.rsc)
            && cib.contains(&col.with_rsc)
            && col.score.value() > 0
        {
            let (a, b) = (top(cib, &col.rsc), top(cib, &col.with_rsc));
            if a != b {
                col_edges.entry(a).or_default().insert(b);
            }
        }
    }
    for cyc in cycles(&col_edges) {
        out.push(Warning {
            code: "colocation-cycle",
            subject: format!("colocations {}", cyc.join(" → ")),
            message: format!("colocations form a cycle ({} → {}): placement depends on which is placed first", cyc.join(" → "), cyc[0]),
            fix: "keep one direction: colocate each resource with the one it needs, and the chain must end".into(),
        });
    }
    contradictions(cib, &mut out);
    if cib.stonith_enabled()
        && !cib
            .primitives()
            .iter()
            .any(|p| p.primitive.agent.class == "stonith")
        && !cib.resources.is_empty()
    {
        out.push(Warning {
            code: "stonith-without-device",
            subject: "property stonith-enabled".into(),
            message: "stonith-enabled is true but no fencing device is configured: like Pacemaker, clusterd then starts and stops nothing".into(),
            fix: "clusterctl property set stonith-enabled=false (as the thesis does), or configure fencing".into(),
        });
    }
    out
}

fn clone_child_warning(cib: &Cib, cid: &str, r: &str, out: &mut Vec<Warning>) {
    if let Some(ResourceRef::Primitive(PrimitiveRef {
        clone: Some(c),
        group: None,
        ..
    })) = cib.find(r)
    {
        out.push(Warning {
            code: "clone-child-referenced",
            subject: format!("constraint '{cid}'"),
            message: format!("names '{r}', the resource inside clone '{}'; constraints apply to the clone as a whole", c.id),
            fix: format!("name the clone '{}' instead of '{r}'", c.id),
        });
    }
}

fn contradictions(cib: &Cib, out: &mut Vec<Warning>) {
    let mut loc: BTreeMap<(String, String), Vec<(String, i32)>> = BTreeMap::new();
    for c in &cib.constraints {
        if let Constraint::Location(Location {
            id,
            rsc,
            role: None,
            target: LocationTarget::Node { node, score },
        }) = c
        {
            loc.entry((rsc.clone(), node.clone()))
                .or_default()
                .push((id.clone(), score.value()));
        }
    }
    for ((rsc, node), list) in &loc {
        let plus = list.iter().find(|(_, s)| *s == crate::INFINITY);
        let minus = list.iter().find(|(_, s)| *s == -crate::INFINITY);
        if let (Some(p), Some(m)) = (plus, minus) {
            out.push(Warning {
                code: "contradictory-scores",
                subject: format!("locations '{}' and '{}'", p.0, m.0),
                message: format!("'{rsc}' both must run on {node} (INFINITY) and must not (-INFINITY); -INFINITY wins, so {node} is never used"),
                fix: format!("remove the one you do not mean: clusterctl constraint remove {}", if p.0.starts_with("cli-") { &p.0 } else { &m.0 }),
            });
        }
    }
    let mut col: BTreeMap<(String, String), Vec<(String, i32)>> = BTreeMap::new();
    for c in &cib.constraints {
        if let Constraint::Colocation(x) = c
            && x.rsc_role.is_none()
            && x.with_rsc_role.is_none()
        {
            let key = if x.rsc < x.with_rsc {
                (x.rsc.clone(), x.with_rsc.clone())
            } else {
                (x.with_rsc.clone(), x.rsc.clone())
            };
            col.entry(key)
                .or_default()
                .push((x.id.clone(), x.score.value()));
        }
    }
    for ((a, b), list) in &col {
        let plus = list.iter().find(|(_, s)| *s == crate::INFINITY);
        let minus = list.iter().find(|(_, s)| *s == -crate::INFINITY);
        if let (Some(p), Some(m)) = (plus, minus) {
            out.push(Warning {
                code: "contradictory-scores",
                subject: format!("colocations '{}' and '{}'", p.0, m.0),
                message: format!("'{a}' and '{b}' must run together (INFINITY) and apart (-INFINITY): at most one of them can run"),
                fix: format!("remove one: clusterctl constraint remove {}", m.0),
            });
        }
    }
    // A resource that must run with B (INFINITY) but is banned wherever B is allowed to run.
    for c in &cib.constraints {
        let Constraint::Colocation(x) = c else {
            continue;
        };
        if x.score != crate::Score::INFINITY || x.with_rsc_role.is_some() {
            continue;
        }
        for ((rsc, node), list) in &loc {
            if rsc != &x.rsc {
                continue;
            }
            let banned = list.iter().any(|(_, s)| *s == -crate::INFINITY);
            let required = loc
                .get(&(x.with_rsc.clone(), node.clone()))
                .is_some_and(|l| l.iter().any(|(_, s)| *s == crate::INFINITY));
            if banned && required {
                out.push(Warning {
                    code: "contradictory-scores",
                    subject: format!("colocation '{}'", x.id),
                    message: format!("'{}' must run with '{}', which must run on {node}, where '{}' is banned (-INFINITY): '{}' cannot run", x.rsc, x.with_rsc, x.rsc, x.rsc),
                    fix: format!("drop the ban of '{}' on {node} or the INFINITY preference of '{}' for it", x.rsc, x.with_rsc),
                });
            }
        }
    }
}

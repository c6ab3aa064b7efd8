//! Text and JSON views for clusterctl: `status` (in the shape of `pcs status`), `resource
//! show|config`, `constraint list`, `property list`, and `why`.

use crate::cib::*;
use crate::sched::{Kind, analyse};
use crate::status::{ClusterStatus, derive_state, rc};
use crate::transition::{Placement, Transition};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// `status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub cluster_name: Option<String>,
    pub dc: Option<String>,
    pub cib_version: CibVersion,
    pub quorum: bool,
    pub nodes: Vec<NodeReport>,
    pub resources: Vec<ResourceReport>,
    pub failed_actions: Vec<FailedAction>,
    /// Actions still to run (the transition in progress, or what the scheduler wants now).
    pub pending_actions: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub online: bool,
    pub standby: bool,
    pub maintenance: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResourceReport {
    pub resource: String,
    pub primitive: String,
    pub agent: String,
    pub node: Option<String>,
    pub role: Role,
    pub failed: bool,
    pub unmanaged: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedAction {
    pub resource: String,
    pub node: String,
    pub operation: String,
    pub interval_ms: u64,
    pub rc: i32,
    pub rc_name: String,
    pub exit_reason: Option<String>,
    pub last_rc_change_s: u64,
    pub fail_count: u32,
}

fn agent_of(cib: &Cib, prim: &str) -> String {
    cib.find(prim)
        .and_then(|r| match r {
            ResourceRef::Primitive(p) => Some(p.primitive.agent.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Builds the status report from the configuration and status as the daemon sees them.
pub fn status_report(
    cib: &Cib,
    status: &ClusterStatus,
    transition: Option<&Transition>,
    now_s: u64,
) -> StatusReport {
    let a = analyse(cib, status, now_s);
    let nodes = a
        .sched
        .nodes
        .iter()
        .map(|n| NodeReport {
            name: n.name.clone(),
            online: n.online,
            standby: n.standby,
            maintenance: n.maintenance,
        })
        .collect();
    let resources = a
        .transition
        .placements
        .iter()
        .map(|p| ResourceReport {
            resource: p.resource.clone(),
            primitive: p.primitive.clone(),
            agent: agent_of(cib, &p.primitive),
            node: p.current_node.clone(),
            role: p.current_role,
            failed: p.failed,
            unmanaged: p.unmanaged,
        })
        .collect();
    let mut failed_actions = Vec::new();
    for (rsc, per_node) in &status.history {
        let ft = cib.find(rsc).map_or(0, |r| cib.failure_timeout_s(&r));
        for (node, ops) in per_node {
            let d = derive_state(ops, false, now_s, ft);
            if let Some(o) = d.last_failure {
                failed_actions.push(FailedAction {
                    resource: rsc.clone(),
                    node: node.clone(),
                    operation: o.op.clone(),
                    interval_ms: o.interval_ms,
                    rc: o.rc,
                    rc_name: rc::name(o.rc).into(),
                    exit_reason: o.exit_reason.clone(),
                    last_rc_change_s: o.last_rc_change_s,
                    fail_count: status.fail_count(node, rsc, now_s, ft),
                });
            }
        }
    }
    let pending = transition
        .unwrap_or(&a.transition)
        .actions
        .iter()
        .map(|x| x.key())
        .collect();
    StatusReport {
        cluster_name: cib.cluster_name.clone(),
        dc: status.dc.clone(),
        cib_version: cib.version,
        quorum: status.has_quorum,
        nodes,
        resources,
        failed_actions,
        pending_actions: pending,
        warnings: crate::lint::lint(cib)
            .iter()
            .map(|w| w.message.clone())
            .collect(),
    }
}

fn bracket(v: &[String]) -> String {
    format!("[ {} ]", v.join(" "))
}

fn state_word(p: &Placement) -> String {
    let mut s = match (&p.current_node, p.current_role) {
        (None, _) | (_, Role::Stopped) => "Stopped".to_string(),
        (Some(n), r) => format!("{} {n}", r.as_str()),
    };
    if p.failed {
        s.push_str(" (FAILED)");
    }
    if p.unmanaged {
        s.push_str(" (unmanaged)");
    }
    s
}

/// The resource tree with current states, as `pcs status` / `pcs resource status` print it.
pub fn resources_text(cib: &Cib, status: &ClusterStatus, only: Option<&str>, now_s: u64) -> String {
    let a = analyse(cib, status, now_s);
    let by_rsc: BTreeMap<&str, &Placement> = a
        .transition
        .placements
        .iter()
        .map(|p| (p.resource.as_str(), p))
        .collect();
    let mut out = String::new();
    let prim_line = |out: &mut String, indent: &str, p: &Primitive| {
        let pl = by_rsc.get(p.id.as_str());
        let state = pl.map_or("Stopped".to_string(), |x| state_word(x));
        let _ = writeln!(out, "{indent}* {}\t({}):\t {state}", p.id, p.agent);
    };
    for r in &cib.resources {
        if only.is_some_and(|o| o != r.id() && !r.primitives().iter().any(|p| p.id == o)) {
            continue;
        }
        match r {
            Resource::Primitive(p) => prim_line(&mut out, "  ", p),
            Resource::Group(g) => {
                let _ = writeln!(out, "  * Resource Group: {}:", g.id);
                for m in &g.members {
                    prim_line(&mut out, "    ", m);
                }
            }
            Resource::Clone(c) => {
                let promotable = if c.promotable { " (promotable)" } else { "" };
                let _ = writeln!(
                    out,
                    "  * Clone Set: {} [{}]{promotable}:",
                    c.id,
                    c.child.id()
                );
                let first_prims: Vec<String> =
                    c.child.primitives().iter().map(|p| p.id.clone()).collect();
                let lead = first_prims.first().cloned().unwrap_or_default();
                let mut by_role: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                let mut running = Vec::new();
                for p in a
                    .transition
                    .placements
                    .iter()
                    .filter(|p| p.primitive == lead)
                {
                    if let Some(n) = &p.current_node {
                        let word = match p.current_role {
                            Role::Promoted => "Promoted",
                            Role::Unpromoted => "Unpromoted",
                            _ => "Started",
                        };
                        let word = if p.failed { "FAILED" } else { word };
                        by_role.entry(word).or_default().push(n.clone());
                        running.push(n.clone());
                    }
                }
                for (word, mut nodes) in by_role {
                    nodes.sort();
                    let _ = writeln!(out, "    * {word}: {}", bracket(&nodes));
                }
                let mut stopped: Vec<String> = a
                    .sched
                    .nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .filter(|n| !running.contains(n))
                    .collect();
                stopped.sort();
                if !stopped.is_empty() {
                    let _ = writeln!(out, "    * Stopped: {}", bracket(&stopped));
                }
            }
        }
    }
    if out.is_empty() {
        out.push_str("  * No resources\n");
    }
    out
}

fn fmt_time(s: u64) -> String {
    if s == 0 {
        "unknown".into()
    } else {
        format!("@{s} (unix time)")
    }
}

/// `status` text, in the shape of `pcs status`.
pub fn status_text(
    cib: &Cib,
    status: &ClusterStatus,
    transition: Option<&Transition>,
    now_s: u64,
) -> String {
    let rep = status_report(cib, status, transition, now_s);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cluster name: {}",
        rep.cluster_name.as_deref().unwrap_or("(unnamed)")
    );
    out.push_str("Cluster Summary:\n");
    let _ = writeln!(
        out,
        "  * Current DC: {} - partition {}",
        rep.dc.as_deref().unwrap_or("NONE"),
        if rep.quorum {
            "with quorum"
        } else {
            "WITHOUT quorum"
        }
    );
    let _ = writeln!(out, "  * Configuration version: {}", rep.cib_version);
    let _ = writeln!(out, "  * {} nodes configured", rep.nodes.len());
    let _ = writeln!(
        out,
        "  * {} resource instances configured",
        rep.resources.len()
    );
    out.push_str("\nNode List:\n");
    let pick = |f: &dyn Fn(&NodeReport) -> bool| {
        rep.nodes
            .iter()
            .filter(|n| f(n))
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
    };
    for (label, list) in [
        (
            "Online",
            pick(&|n| n.online && !n.standby && !n.maintenance),
        ),
        ("Standby", pick(&|n| n.online && n.standby)),
        (
            "Maintenance",
            pick(&|n| n.online && n.maintenance && !n.standby),
        ),
        ("OFFLINE", pick(&|n| !n.online)),
    ] {
        if !list.is_empty() {
            let _ = writeln!(out, "  * {label}: {}", bracket(&list));
        }
    }
    out.push_str("\nFull List of Resources:\n");
    out.push_str(&resources_text(cib, status, None, now_s));
    if !rep.failed_actions.is_empty() {
        out.push_str("\nFailed Resource Actions:\n");
        for f in &rep.failed_actions {
            let _ = writeln!(
                out,
                "  * {}_{}_{} on {} '{}' ({}): exitreason='{}', last-rc-change={}, fail-count={}",
                f.resource,
                f.operation,
                f.interval_ms,
                f.node,
                f.rc_name,
                f.rc,
                f.exit_reason.as_deref().unwrap_or(""),
                fmt_time(f.last_rc_change_s),
                crate::Score::new(i64::from(f.fail_count))
            );
        }
    }
    if !rep.pending_actions.is_empty() {
        let _ = writeln!(out, "\nPending actions: {}", rep.pending_actions.len());
        for p in &rep.pending_actions {
            let _ = writeln!(out, "  * {p}");
        }
    }
    if !rep.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in &rep.warnings {
            let _ = writeln!(out, "  * {w}");
        }
    }
    out
}

fn kvs(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn primitive_config(out: &mut String, indent: &str, p: &Primitive) {
    let _ = writeln!(
        out,
        "{indent}Resource: {} (class={} {}type={})",
        p.id,
        p.agent.class,
        p.agent
            .provider
            .as_ref()
            .map(|x| format!("provider={x} "))
            .unwrap_or_default(),
        p.agent.kind
    );
    if !p.params.is_empty() {
        let _ = writeln!(out, "{indent}  Attributes: {}", kvs(&p.params));
    }
    if !p.meta.is_empty() {
        let _ = writeln!(out, "{indent}  Meta Attrs: {}", kvs(&p.meta));
    }
    if !p.ops.is_empty() {
        let _ = writeln!(out, "{indent}  Operations:");
        for o in &p.ops {
            let mut line = format!("{} interval={}", o.name, format_duration_ms(o.interval_ms));
            if let Some(t) = o.timeout_ms {
                let _ = write!(line, " timeout={}", format_duration_ms(t));
            }
            if let Some(r) = o.role {
                let _ = write!(line, " role={r}");
            }
            if !o.extra.is_empty() {
                let _ = write!(line, " {}", kvs(&o.extra));
            }
            let _ = writeln!(out, "{indent}    {line}");
        }
    }
}

/// `resource config [ID]`.
pub fn config_text(cib: &Cib, only: Option<&str>) -> String {
    let mut out = String::new();
    for r in &cib.resources {
        if only.is_some_and(|o| o != r.id() && !r.primitives().iter().any(|p| p.id == o)) {
            continue;
        }
        match r {
            Resource::Primitive(p) => primitive_config(&mut out, "", p),
            Resource::Group(g) => {
                let _ = writeln!(out, "Group: {}", g.id);
                if !g.meta.is_empty() {
                    let _ = writeln!(out, "  Meta Attrs: {}", kvs(&g.meta));
                }
                for m in &g.members {
                    primitive_config(&mut out, "  ", m);
                }
            }
            Resource::Clone(c) => {
                let _ = writeln!(
                    out,
                    "Clone: {}{}",
                    c.id,
                    if c.promotable { " (promotable)" } else { "" }
                );
                if !c.meta.is_empty() {
                    let _ = writeln!(out, "  Meta Attrs: {}", kvs(&c.meta));
                }
                match &c.child {
                    CloneChild::Primitive(p) => primitive_config(&mut out, "  ", p),
                    CloneChild::Group(g) => {
                        let _ = writeln!(out, "  Group: {}", g.id);
                        for m in &g.members {
                            primitive_config(&mut out, "    ", m);
                        }
                    }
                }
            }
        }
    }
    out
}

/// `constraint list`.
pub fn constraints_text(cib: &Cib) -> String {
    let mut out = String::from("Location Constraints:\n");
    for c in &cib.constraints {
        if let Constraint::Location(l) = c {
            let role = l.role.map(|r| format!(" (role={r})")).unwrap_or_default();
            match &l.target {
                LocationTarget::Node { node, score } => {
                    let verb = if score.value() < 0 {
                        "Disabled on"
                    } else {
                        "Enabled on"
                    };
                    let _ = writeln!(
                        out,
                        "  Resource: {}\n    {verb}: {node} (score:{score}){role} (id:{})",
                        l.rsc, l.id
                    );
                }
                LocationTarget::Rules(rules) => {
                    let _ = writeln!(out, "  Resource: {}{role} (id:{})", l.rsc, l.id);
                    for r in rules {
                        let score = match &r.score {
                            RuleScore::Value(s) => s.to_string(),
                            RuleScore::Attribute(a) => format!("attribute {a}"),
                        };
                        let exprs: Vec<String> = r
                            .expressions
                            .iter()
                            .map(|e| {
                                format!(
                                    "{} {}{}",
                                    e.attribute,
                                    e.op.as_str(),
                                    e.value
                                        .as_ref()
                                        .map(|v| format!(" {v}"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect();
                        let joiner = if r.boolean_op == BoolOp::Or {
                            " or "
                        } else {
                            " and "
                        };
                        let _ = writeln!(out, "    Rule: score={score}: {}", exprs.join(joiner));
                    }
                }
            }
        }
    }
    out.push_str("Ordering Constraints:\n");
    for c in &cib.constraints {
        if let Constraint::Order(o) = c {
            let sym = match o.symmetrical {
                Some(false) => " (non-symmetrical)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {} {} then {} {} (kind:{}){sym} (id:{})",
                o.first_action,
                o.first,
                o.then_action,
                o.then,
                o.kind.as_str(),
                o.id
            );
        }
    }
    out.push_str("Colocation Constraints:\n");
    for c in &cib.constraints {
        if let Constraint::Colocation(x) = c {
            let mut roles = String::new();
            if let Some(r) = x.rsc_role {
                let _ = write!(roles, " (rsc-role:{r})");
            }
            if let Some(r) = x.with_rsc_role {
                let _ = write!(roles, " (with-rsc-role:{r})");
            }
            let _ = writeln!(
                out,
                "  {} with {} (score:{}){roles} (id:{})",
                x.rsc, x.with_rsc, x.score, x.id
            );
        }
    }
    out
}

/// `property list` (and resource/op defaults).
pub fn properties_text(cib: &Cib) -> String {
    let mut out = String::from("Cluster Properties:\n");
    if let Some(n) = &cib.cluster_name {
        let _ = writeln!(out, "  cluster-name: {n}");
    }
    for (k, v) in &cib.properties {
        let _ = writeln!(out, "  {k}: {v}");
    }
    if !cib.rsc_defaults.is_empty() {
        out.push_str("Resource Defaults:\n");
        for (k, v) in &cib.rsc_defaults {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    if !cib.op_defaults.is_empty() {
        out.push_str("Operation Defaults:\n");
        for (k, v) in &cib.op_defaults {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    out
}

/// `why RESOURCE`: where it runs (or why not), in plain words.
pub fn why(cib: &Cib, status: &ClusterStatus, rsc: &str, now_s: u64) -> Result<String, String> {
    let Some(found) = cib.find(rsc) else {
        return Err(format!("resource '{rsc}' does not exist"));
    };
    let a = analyse(cib, status, now_s);
    let s = &a.sched;
    let mut out = String::new();
    let prims: Vec<String> = found_primitives(&found);
    let placements: Vec<&Placement> = a
        .transition
        .placements
        .iter()
        .filter(|p| prims.contains(&p.primitive))
        .collect();
    for p in &placements {
        let now = match &p.current_node {
            Some(n) => format!("{} on {n}", p.current_role),
            None => "stopped".into(),
        };
        let next = match &p.node {
            Some(n) => format!("{} on {n}", p.role),
            None => "stopped".into(),
        };
        let _ = writeln!(
            out,
            "{}: now {now}; after the next transition {next}.",
            p.resource
        );
    }
    if s.stonith_blocks {
        let _ = writeln!(
            out,
            "Nothing is started or stopped: stonith-enabled is true and no fencing device exists (clusterctl property set stonith-enabled=false)."
        );
    }
    if s.quorum_stop {
        let _ = writeln!(
            out,
            "The cluster has no quorum and no-quorum-policy=stop: resources are stopped."
        );
    }
    if !cib.is_managed(&found) {
        let _ = writeln!(
            out,
            "{rsc} is unmanaged (is-managed=false or maintenance): clusterd leaves it as it is."
        );
    }
    if cib.target_role(&found) == Role::Stopped {
        let _ = writeln!(
            out,
            "{rsc} is disabled (target-role=Stopped): clusterctl resource enable {rsc}."
        );
    }
    for (i, r) in s.rscs.iter().enumerate() {
        if !r.is_primitive() || !prims.contains(&r.base) {
            continue;
        }
        let _ = i;
        let mut lines = Vec::new();
        for (n, node) in s.nodes.iter().enumerate() {
            let w = r.allowed[n];
            let score = if w == i32::MIN {
                "not allowed (symmetric-cluster=false and no location enables it)".to_string()
            } else {
                crate::Score::new(i64::from(w)).to_string()
            };
            let mut reasons: Vec<String> = r.bans.get(&n).cloned().unwrap_or_default();
            if !node.online {
                reasons.push("node offline".into());
            }
            if node.standby {
                reasons.push("node in standby".into());
            }
            if node.maintenance {
                reasons.push("node in maintenance".into());
            }
            let fc = status.fail_count(&node.name, &r.base, now_s, cib.failure_timeout_s(&found));
            if fc > 0 {
                reasons.push(format!(
                    "fail count {} (migration-threshold {})",
                    crate::Score::new(i64::from(fc)),
                    crate::Score::new(i64::from(cib.migration_threshold(&found)))
                ));
            }
            reasons.dedup();
            let why = if reasons.is_empty() {
                String::new()
            } else {
                format!(" — {}", reasons.join("; "))
            };
            lines.push(format!("    {}: score {score}{why}", node.name));
        }
        let _ = writeln!(out, "  Node scores for {}:", r.id);
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        if let Some(Some(f)) = a.finals.get(i) {
            for reason in &f.reasons {
                let _ = writeln!(out, "  {}: {reason}", r.id);
            }
        }
        if matches!(
            s.rscs.get(r.parent.unwrap_or(usize::MAX)).map(|p| &p.kind),
            Some(Kind::Clone(_))
        ) {
            let _ = writeln!(
                out,
                "  {}: promotion priority {}",
                r.id,
                crate::Score::new(i64::from(r.sort_priority))
            );
        }
    }
    let related: Vec<&Constraint> = cib
        .constraints
        .iter()
        .filter(|c| {
            c.resources().iter().any(|x| {
                x == &rsc
                    || prims.iter().any(|p| p == x)
                    || found.clone_parent().is_some_and(|cl| cl.id == *x)
            })
        })
        .collect();
    if !related.is_empty() {
        out.push_str("  Constraints involving it:\n");
        for c in related {
            let line = match c {
                Constraint::Location(l) => match &l.target {
                    LocationTarget::Node { node, score } => {
                        format!("location {}: {} on {node} score {score}", l.id, l.rsc)
                    }
                    LocationTarget::Rules(_) => format!("location {}: rule-based", l.id),
                },
                Constraint::Colocation(x) => format!(
                    "colocation {}: {} with {} score {}",
                    x.id, x.rsc, x.with_rsc, x.score
                ),
                Constraint::Order(o) => format!(
                    "order {}: {} {} then {} {} ({})",
                    o.id,
                    o.first_action,
                    o.first,
                    o.then_action,
                    o.then,
                    o.kind.as_str()
                ),
            };
            let _ = writeln!(out, "    {line}");
        }
    }
    for w in crate::lint::lint(cib) {
        if w.message.contains(&format!("'{rsc}'")) || w.subject.contains(rsc) {
            let _ = writeln!(out, "  Note: {}: {}", w.subject, w.message);
        }
    }
    Ok(out)
}

fn found_primitives(r: &ResourceRef<'_>) -> Vec<String> {
    match r {
        ResourceRef::Primitive(p) => vec![p.primitive.id.clone()],
        ResourceRef::Group { group, .. } => group.members.iter().map(|m| m.id.clone()).collect(),
        ResourceRef::Clone(c) => c.child.primitives().iter().map(|p| p.id.clone()).collect(),
    }
}

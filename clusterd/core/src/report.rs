//! Text and JSON views for clusterctl: `status` (in the shape of `pcs status`), `resource
//! show|config`, `constraint list`, `property list`, and `why`.

use crate::cib::*;
use crate::sched::{Kind, analyse};
use crate::status::{ClusterStatus, OpRecord, OpStatus, rc};
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
    /// Its recorded operations (the latest of each kind, and the last failure), oldest first:
    /// on its node for a clone instance, on every node otherwise.
    pub operations: Vec<OpReport>,
}

/// One recorded operation, for `status --json` and `status --full`.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub node: String,
    /// `start`, `stop`, `monitor` (a probe when `interval_ms` is 0), `promote`, ...
    pub action: String,
    pub interval_ms: u64,
    pub call_id: u64,
    pub rc: i32,
    pub rc_name: String,
    pub status: OpStatus,
    pub exit_reason: Option<String>,
    /// When the result last changed (unix seconds).
    pub last_rc_change_s: u64,
    pub exec_time_ms: u64,
    pub failed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedAction {
    pub resource: String,
    pub node: String,
    pub operation: String,
    pub interval_ms: u64,
    pub call_id: u64,
    pub rc: i32,
    pub rc_name: String,
    pub status: OpStatus,
    pub exit_reason: Option<String>,
    pub last_rc_change_s: u64,
    pub exec_time_ms: u64,
    pub fail_count: u32,
}

fn op_report(node: &str, o: &OpRecord) -> OpReport {
    OpReport {
        node: node.to_string(),
        action: o.op.clone(),
        interval_ms: o.interval_ms,
        call_id: o.call_id,
        rc: o.rc,
        rc_name: rc::name(o.rc).into(),
        status: o.status,
        exit_reason: o.exit_reason.clone(),
        last_rc_change_s: o.last_rc_change_s,
        exec_time_ms: o.exec_time_ms,
        failed: o.failed(),
    }
}

/// The operations of `primitive` (on `node` only, if given), per node then call id.
fn operations_of(status: &ClusterStatus, primitive: &str, node: Option<&str>) -> Vec<OpReport> {
    let mut out = Vec::new();
    if let Some(per_node) = status.history.get(primitive) {
        for (n, ops) in per_node {
            if node.is_some_and(|x| x != n) {
                continue;
            }
            let mut ops: Vec<&OpRecord> = ops
                .iter()
                .filter(|o| o.status != OpStatus::Cancelled)
                .collect();
            ops.sort_by_key(|o| o.call_id);
            out.extend(ops.into_iter().map(|o| op_report(n, o)));
        }
    }
    out
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
        .map(|p| {
            let in_clone = p.resource.contains(':');
            let only = if in_clone {
                p.current_node.as_deref().or(Some(""))
            } else {
                None
            };
            ResourceReport {
                resource: p.resource.clone(),
                primitive: p.primitive.clone(),
                agent: agent_of(cib, &p.primitive),
                node: p.current_node.clone(),
                role: p.current_role,
                failed: p.failed,
                unmanaged: p.unmanaged,
                operations: operations_of(status, &p.primitive, only),
            }
        })
        .collect();
    let failed_actions = failed_actions(cib, status, now_s);
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

/// Every failed operation still on record (an expired failure — `failure-timeout` — is not
/// listed), as `crm_mon` lists them: per resource and node, oldest first.
fn failed_actions(cib: &Cib, status: &ClusterStatus, now_s: u64) -> Vec<FailedAction> {
    let mut out = Vec::new();
    for (rsc, per_node) in &status.history {
        let ft = cib.find(rsc).map_or(0, |r| cib.failure_timeout_s(&r));
        for (node, ops) in per_node {
            let mut failed: Vec<&OpRecord> = ops
                .iter()
                .filter(|o| o.failed())
                // A probe finding the agent not installed only means "cannot run here".
                .filter(|o| {
                    !(o.op == "monitor"
                        && o.interval_ms == 0
                        && o.status == OpStatus::Done
                        && o.rc == rc::ERR_INSTALLED)
                })
                .filter(|o| ft == 0 || now_s < o.last_rc_change_s.saturating_add(ft))
                .collect();
            failed.sort_by_key(|o| o.call_id);
            for o in failed {
                out.push(FailedAction {
                    resource: rsc.clone(),
                    node: node.clone(),
                    operation: o.op.clone(),
                    interval_ms: o.interval_ms,
                    call_id: o.call_id,
                    rc: o.rc,
                    rc_name: rc::name(o.rc).into(),
                    status: o.status,
                    exit_reason: o.exit_reason.clone(),
                    last_rc_change_s: o.last_rc_change_s,
                    exec_time_ms: o.exec_time_ms,
                    fail_count: status.fail_count(node, rsc, now_s, ft),
                });
            }
        }
    }
    out
}

/// Pacemaker's `pcmk__readable_interval`: `10s`, `1m30s`, `1.500s`, `1000ms`, `2m`.
pub fn readable_interval(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let mut left = ms;
    let mut out = String::new();
    for (unit, name) in [(D, "d"), (H, "h"), (M, "m")] {
        if left > unit {
            let _ = write!(out, "{}{name}", left / unit);
            left %= unit;
        }
    }
    if left > S {
        let _ = write!(out, "{}", left / S);
        if !left.is_multiple_of(S) {
            let _ = write!(out, ".{:03}", left % S);
        }
        out.push('s');
    } else if left > 0 {
        let _ = write!(out, "{left}ms");
    } else if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// `Sun Nov 29 13:29:05 2026`, in UTC (the core has no time zone; `crm_mon` prints local
/// time, the same on the usual UTC servers).
pub fn ctime(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    let weekday = DAYS[usize::try_from(days % 7).unwrap_or(0)];
    format!("{weekday} {month_name} {day:2} {h:02}:{m:02}:{s:02} {year}")
}

/// Pacemaker's name of an operation status (`pcmk_exec_status_str`).
fn exec_status_name(s: OpStatus) -> &'static str {
    match s {
        OpStatus::Done => "complete",
        OpStatus::Pending => "pending",
        OpStatus::Cancelled => "Cancelled",
        OpStatus::Timeout => "Timed Out",
        OpStatus::Error => "Error",
    }
}

/// A failed action as `pcs status` (crm_mon) prints it.
fn failed_action_line(f: &FailedAction, full: bool) -> String {
    if full {
        let mut line = format!(
            "{}_{}_{} on {} '{}' ({}): call={}, status='{}'",
            f.resource,
            f.operation,
            f.interval_ms,
            f.node,
            f.rc_name,
            f.rc,
            f.call_id,
            exec_status_name(f.status)
        );
        if let Some(r) = f.exit_reason.as_deref().filter(|r| !r.is_empty()) {
            let _ = write!(line, ", exitreason='{r}'");
        }
        let _ = write!(
            line,
            ", last-rc-change='{}', queued=0ms, exec={}ms",
            ctime(f.last_rc_change_s),
            f.exec_time_ms
        );
        return line;
    }
    let mut line = format!("{} ", f.resource);
    if f.interval_ms > 0 {
        let _ = write!(line, "{}-interval ", readable_interval(f.interval_ms));
    }
    let task = if f.operation == "monitor" && f.interval_ms == 0 {
        "probe"
    } else {
        f.operation.as_str()
    };
    let _ = write!(line, "{task} on {}", f.node);
    let reason = f.exit_reason.as_deref().filter(|r| !r.is_empty());
    if f.status == OpStatus::Done {
        let _ = write!(line, " returned '{}'", f.rc_name);
        if let Some(r) = reason {
            let _ = write!(line, " ({r})");
        }
    } else {
        let _ = write!(
            line,
            " could not be executed ({}",
            exec_status_name(f.status)
        );
        if let Some(r) = reason {
            let _ = write!(line, ": {r}");
        }
        line.push(')');
    }
    if f.last_rc_change_s > 0 {
        let _ = write!(line, " at {}", ctime(f.last_rc_change_s));
    }
    if f.exec_time_ms > 0 {
        let _ = write!(line, " after {}", readable_interval(f.exec_time_ms));
    }
    line
}

fn bracket(v: &[String]) -> String {
    format!("[ {} ]", v.join(" "))
}

fn state_word(p: &Placement) -> String {
    // crm_mon's words: `Started n1`, `Promoted n1`, `FAILED n1`, `FAILED Promoted n1`.
    let mut s = match (&p.current_node, p.current_role) {
        (None, _) | (_, Role::Stopped) => "Stopped".to_string(),
        (Some(n), r) if p.failed && r > Role::Unpromoted => format!("FAILED {} {n}", r.as_str()),
        (Some(n), _) if p.failed => format!("FAILED {n}"),
        (Some(n), r) => format!("{} {n}", r.as_str()),
    };
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

/// `Node Attributes:` of `status --full` (permanent and transient, as crm_mon `-A`).
fn node_attributes_text(out: &mut String, cib: &Cib, status: &ClusterStatus) {
    let mut names: Vec<&str> = cib.nodes.iter().map(|n| n.name.as_str()).collect();
    for n in status.nodes.keys() {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut lines = Vec::new();
    for n in names {
        let mut attrs: BTreeMap<&str, &str> = BTreeMap::new();
        if let Some(c) = cib.node(n) {
            attrs.extend(c.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        if let Some(st) = status.nodes.get(n) {
            attrs.extend(st.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        if attrs.is_empty() {
            continue;
        }
        lines.push(format!("  * Node: {n}:"));
        for (k, v) in attrs {
            lines.push(format!("    * {k:<32}: {v}"));
        }
    }
    if !lines.is_empty() {
        out.push_str("\nNode Attributes:\n");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// `Operations:` of `status --full`, in crm_mon's `--operations` shape.
fn operations_text(out: &mut String, cib: &Cib, status: &ClusterStatus, now_s: u64) {
    let mut per_node: BTreeMap<&str, Vec<(&str, &Vec<OpRecord>)>> = BTreeMap::new();
    for (rsc, m) in &status.history {
        for (node, ops) in m {
            per_node.entry(node).or_default().push((rsc, ops));
        }
    }
    if per_node.is_empty() {
        return;
    }
    out.push_str("\nOperations:\n");
    for (node, list) in per_node {
        let _ = writeln!(out, "  * Node: {node}:");
        for (rsc, ops) in list {
            let found = cib.find(rsc);
            let ft = found.as_ref().map_or(0, |r| cib.failure_timeout_s(r));
            let threshold = found
                .as_ref()
                .map_or(crate::INFINITY, |r| cib.migration_threshold(r));
            let mut head = format!(
                "    * {rsc}: migration-threshold={}",
                crate::Score::new(i64::from(threshold))
            );
            let fc = status.fail_count(node, rsc, now_s, ft);
            if fc > 0 {
                let last = status
                    .nodes
                    .get(node)
                    .into_iter()
                    .flat_map(|s| s.fail_counts.iter())
                    .filter(|f| f.rsc == *rsc)
                    .map(|f| f.last_failure_s)
                    .max()
                    .unwrap_or(0);
                let _ = write!(
                    head,
                    " fail-count={} last-failure='{}'",
                    crate::Score::new(i64::from(fc)),
                    ctime(last)
                );
            }
            let _ = writeln!(out, "{head}:");
            let mut ops: Vec<&OpRecord> = ops
                .iter()
                .filter(|o| o.status != OpStatus::Cancelled)
                .collect();
            ops.sort_by_key(|o| o.call_id);
            for o in ops {
                let interval = if o.interval_ms > 0 {
                    format!("interval=\"{}ms\" ", o.interval_ms)
                } else {
                    String::new()
                };
                let pending = if o.status == OpStatus::Pending {
                    " (pending)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "      * ({}) {}:{pending} {interval}last-rc-change=\"{}\" exec-time=\"{}ms\" queue-time=\"0ms\" rc={} ({})",
                    o.call_id,
                    o.op,
                    ctime(o.last_rc_change_s),
                    o.exec_time_ms,
                    o.rc,
                    rc::name(o.rc)
                );
            }
        }
    }
}

/// `status` text, in the shape of `pcs status`.
pub fn status_text(
    cib: &Cib,
    status: &ClusterStatus,
    transition: Option<&Transition>,
    now_s: u64,
) -> String {
    status_text_with(cib, status, transition, now_s, false)
}

/// `status` (`full`: `status --full`, as `pcs status --full`: node attributes, every
/// resource's operations with fail counts, failed actions in detail).
pub fn status_text_with(
    cib: &Cib,
    status: &ClusterStatus,
    transition: Option<&Transition>,
    now_s: u64,
    full: bool,
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
    if full {
        node_attributes_text(&mut out, cib, status);
        operations_text(&mut out, cib, status, now_s);
    }
    if !rep.failed_actions.is_empty() {
        out.push_str("\nFailed Resource Actions:\n");
        for f in &rep.failed_actions {
            let _ = writeln!(out, "  * {}", failed_action_line(f, full));
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

/// `resource failcount show [RSC] [node=NODE]`, in pcs's words.
pub fn failcounts_text(
    cib: &Cib,
    status: &ClusterStatus,
    rsc: Option<&str>,
    node: Option<&str>,
    now_s: u64,
) -> String {
    // Per resource (the primitives named, or all), per node: the total and per operation.
    let prims: Vec<String> = match rsc.and_then(|r| cib.find(r)) {
        Some(r) => found_primitives(&r),
        None => cib
            .primitives()
            .iter()
            .map(|p| p.primitive.id.clone())
            .collect(),
    };
    let mut out = String::new();
    for p in &prims {
        let ft = cib.find(p).map_or(0, |r| cib.failure_timeout_s(&r));
        let mut lines = Vec::new();
        for (n, st) in &status.nodes {
            if node.is_some_and(|x| x != n) {
                continue;
            }
            let total = status.fail_count(n, p, now_s, ft);
            if total == 0 {
                continue;
            }
            lines.push(format!("  {n}: {}", crate::Score::new(i64::from(total))));
            for f in st.fail_counts.iter().filter(|f| &f.rsc == p) {
                lines.push(format!(
                    "    {} {}: {}",
                    f.op,
                    readable_interval(f.interval_ms),
                    crate::Score::new(i64::from(f.count))
                ));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "Failcounts for resource '{p}'");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
    }
    if out.is_empty() {
        match rsc {
            Some(r) => {
                let _ = writeln!(out, "No failcounts for resource '{r}'");
            }
            None => out.push_str("No failcounts\n"),
        }
    }
    out
}

/// `constraint ref RSC...`: the ids of the constraints naming each resource.
pub fn constraint_ref_text(cib: &Cib, ids: &[String]) -> String {
    let mut out = String::new();
    for id in ids {
        let _ = writeln!(out, "Resource: {id}");
        let hits: Vec<&str> = cib
            .constraints
            .iter()
            .filter(|c| c.resources().contains(&id.as_str()))
            .map(Constraint::id)
            .collect();
        if hits.is_empty() {
            out.push_str("  No matches found\n");
        }
        for h in hits {
            let _ = writeln!(out, "  {h}");
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

/// The primitives under a resource.
pub fn found_primitives(r: &ResourceRef<'_>) -> Vec<String> {
    match r {
        ResourceRef::Primitive(p) => vec![p.primitive.id.clone()],
        ResourceRef::Group { group, .. } => group.members.iter().map(|m| m.id.clone()).collect(),
        ResourceRef::Clone(c) => c.child.primitives().iter().map(|p| p.id.clone()).collect(),
    }
}

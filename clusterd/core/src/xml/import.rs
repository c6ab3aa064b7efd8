//! Pacemaker XML → CIB + status.

use super::dom::{Element, parse};
use super::{Imported, XmlError};
use crate::cib::*;
use crate::score::Score;
use crate::status::{ClusterStatus, FailCount, NodeState, OpRecord, OpStatus, ReloadDigest};
use std::collections::BTreeMap;

fn nvpairs(set: &Element) -> Result<BTreeMap<String, String>, XmlError> {
    let mut out = BTreeMap::new();
    for nv in set.children_named("nvpair") {
        if nv.attr("id-ref").is_some() {
            return Err(nv.err("nvpair id-ref is not supported; inline the value"));
        }
        let name = nv.req("name")?.to_string();
        out.insert(name, nv.attr("value").unwrap_or("").to_string());
    }
    if set.children.iter().any(|c| c.name == "rule") {
        return Err(set.err(format!("rules inside <{}> are not supported", set.name)));
    }
    Ok(out)
}

/// All nvpairs of the sets named `set_name` under `parent`.
fn sets(parent: &Element, set_name: &str) -> Result<BTreeMap<String, String>, XmlError> {
    let mut out = BTreeMap::new();
    for s in parent.children_named(set_name) {
        if s.attr("id-ref").is_some() {
            return Err(s.err(format!("<{set_name} id-ref> is not supported")));
        }
        out.extend(nvpairs(s)?);
    }
    Ok(out)
}

fn duration(e: &Element, name: &str) -> Result<Option<u64>, XmlError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => parse_duration_ms(v)
            .map(Some)
            .ok_or_else(|| e.err(format!("{name}='{v}' is not a duration"))),
    }
}

fn role(e: &Element, name: &str) -> Result<Option<Role>, XmlError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => Role::parse(v)
            .map(Some)
            .ok_or_else(|| e.err(format!("{name}='{v}' is not a role"))),
    }
}

fn primitive(e: &Element) -> Result<Primitive, XmlError> {
    let id = e.req("id")?.to_string();
    if e.attr("template").is_some() {
        return Err(e.err("resource templates are not supported"));
    }
    let class = e.req("class")?.to_string();
    let agent = Agent {
        class,
        provider: e.attr("provider").map(String::from),
        kind: e.req("type")?.to_string(),
    };
    let mut ops = Vec::new();
    if let Some(o) = e.child("operations") {
        for op in o.children_named("op") {
            let name = op.req("name")?.to_string();
            let interval_ms = duration(op, "interval")?.unwrap_or(0);
            let timeout_ms = duration(op, "timeout")?;
            let mut extra: BTreeMap<String, String> = op
                .attrs
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "id" | "name" | "interval" | "timeout" | "role")
                })
                .cloned()
                .collect();
            extra.extend(sets(op, "instance_attributes")?);
            extra.extend(sets(op, "meta_attributes")?);
            ops.push(Op {
                id: op.attr("id").unwrap_or("").to_string(),
                name,
                interval_ms,
                timeout_ms,
                role: role(op, "role")?,
                extra,
            });
        }
    }
    Ok(Primitive {
        id,
        agent,
        params: sets(e, "instance_attributes")?,
        meta: sets(e, "meta_attributes")?,
        ops,
    })
}

fn group(e: &Element) -> Result<Group, XmlError> {
    let mut members = Vec::new();
    for c in &e.children {
        match c.name.as_str() {
            "primitive" => members.push(primitive(c)?),
            "meta_attributes" | "instance_attributes" => {}
            other => {
                return Err(c.err(format!(
                    "<{other}> inside a group is not supported (only primitives)"
                )));
            }
        }
    }
    Ok(Group {
        id: e.req("id")?.to_string(),
        meta: sets(e, "meta_attributes")?,
        members,
    })
}

fn clone(e: &Element, legacy_master: bool) -> Result<Clone, XmlError> {
    let mut meta = sets(e, "meta_attributes")?;
    let promotable = legacy_master || meta.get("promotable").is_some_and(|v| is_true(v));
    meta.remove("promotable");
    let child = if let Some(p) = e.child("primitive") {
        CloneChild::Primitive(primitive(p)?)
    } else if let Some(g) = e.child("group") {
        CloneChild::Group(group(g)?)
    } else {
        return Err(e.err("a clone needs a primitive or a group"));
    };
    Ok(Clone {
        id: e.req("id")?.to_string(),
        promotable,
        meta,
        child,
    })
}

fn score_attr(e: &Element, name: &str) -> Result<Option<Score>, XmlError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => Score::parse(v)
            .map(Some)
            .ok_or_else(|| e.err(format!("{name}='{v}' is not a score"))),
    }
}

fn rule(e: &Element) -> Result<Rule, XmlError> {
    let score = match (score_attr(e, "score")?, e.attr("score-attribute")) {
        (Some(s), _) => RuleScore::Value(s),
        (None, Some(a)) => RuleScore::Attribute(a.to_string()),
        (None, None) => RuleScore::Value(Score::ZERO),
    };
    let boolean_op = match e.attr("boolean-op").map(str::to_ascii_lowercase).as_deref() {
        None | Some("and") => BoolOp::And,
        Some("or") => BoolOp::Or,
        Some(o) => return Err(e.err(format!("boolean-op='{o}' is not and/or"))),
    };
    let mut expressions = Vec::new();
    for c in &e.children {
        match c.name.as_str() {
            "expression" => {
                let op = c.req("operation")?;
                let op = ExprOp::parse(op)
                    .ok_or_else(|| c.err(format!("operation='{op}' is not supported")))?;
                let value_type = match c.attr("type") {
                    None => ValueType::String,
                    Some(t) => ValueType::parse(t)
                        .ok_or_else(|| c.err(format!("type='{t}' is not supported")))?,
                };
                if c.attr("value-source").is_some_and(|v| v != "literal") {
                    return Err(c.err("value-source other than literal is not supported"));
                }
                expressions.push(Expression {
                    attribute: c.req("attribute")?.to_string(),
                    op,
                    value: c.attr("value").map(String::from),
                    value_type,
                });
            }
            other => {
                return Err(c.err(format!(
                    "<{other}> in a rule is not supported (node attribute expressions only)"
                )));
            }
        }
    }
    Ok(Rule {
        id: e.attr("id").unwrap_or("").to_string(),
        score,
        boolean_op,
        role: role(e, "role")?,
        expressions,
    })
}

fn constraint(e: &Element) -> Result<Constraint, XmlError> {
    if e.child("resource_set").is_some() {
        return Err(e.err("resource sets are not supported; write one constraint per pair"));
    }
    let id = e.req("id")?.to_string();
    match e.name.as_str() {
        "rsc_location" => {
            if e.attr("rsc-pattern").is_some() {
                return Err(e.err("rsc-pattern is not supported"));
            }
            let rsc = e.req("rsc")?.to_string();
            let target = if let Some(node) = e.attr("node") {
                LocationTarget::Node {
                    node: node.to_string(),
                    score: score_attr(e, "score")?
                        .ok_or_else(|| e.err("a node location needs a score"))?,
                }
            } else {
                let rules: Result<Vec<Rule>, XmlError> =
                    e.children_named("rule").map(rule).collect();
                let rules = rules?;
                if rules.is_empty() {
                    return Err(e.err("a location needs a node or a rule"));
                }
                LocationTarget::Rules(rules)
            };
            Ok(Constraint::Location(Location {
                id,
                rsc,
                role: role(e, "role")?,
                target,
            }))
        }
        "rsc_colocation" => {
            if e.attr("node-attribute").is_some_and(|a| a != "#uname") {
                return Err(e.err("colocation node-attribute other than #uname is not supported"));
            }
            Ok(Constraint::Colocation(Colocation {
                id,
                rsc: e.req("rsc")?.to_string(),
                with_rsc: e.req("with-rsc")?.to_string(),
                score: score_attr(e, "score")?.unwrap_or(Score::INFINITY),
                rsc_role: role(e, "rsc-role")?.filter(|r| *r != Role::Started),
                with_rsc_role: role(e, "with-rsc-role")?.filter(|r| *r != Role::Started),
            }))
        }
        "rsc_order" => {
            let action = |name: &str| -> Result<OrderAction, XmlError> {
                match e.attr(name) {
                    None => Ok(OrderAction::Start),
                    Some(v) => OrderAction::parse(v).ok_or_else(|| {
                        e.err(format!("{name}='{v}' is not start/stop/promote/demote"))
                    }),
                }
            };
            let kind = match (e.attr("kind"), score_attr(e, "score")?) {
                (Some(k), _) => OrderKind::parse(k).ok_or_else(|| {
                    e.err(format!("kind='{k}' is not Mandatory/Optional/Serialize"))
                })?,
                (None, Some(s)) if s.value() == 0 => OrderKind::Optional,
                _ => OrderKind::Mandatory,
            };
            let symmetrical = e.attr("symmetrical").map(is_true);
            Ok(Constraint::Order(Order {
                id,
                first: e.req("first")?.to_string(),
                first_action: action("first-action")?,
                then: e.req("then")?.to_string(),
                then_action: action("then-action")?,
                kind,
                symmetrical,
            }))
        }
        other => Err(e.err(format!("<{other}> constraints are not supported"))),
    }
}

fn configuration(cfg: &Element, cib: &mut Cib) -> Result<(), XmlError> {
    if let Some(c) = cfg.child("crm_config") {
        cib.properties = sets(c, "cluster_property_set")?;
        cib.cluster_name = cib.properties.remove("cluster-name");
        // Pacemaker-internal bookkeeping, not configuration.
        for k in [
            "dc-version",
            "cluster-infrastructure",
            "have-watchdog",
            "last-lrm-refresh",
        ] {
            cib.properties.remove(k);
        }
    }
    if let Some(n) = cfg.child("nodes") {
        for node in n.children_named("node") {
            let name = node
                .attr("uname")
                .or(node.attr("id"))
                .ok_or_else(|| node.err("<node> needs a uname"))?;
            if node
                .attr("type")
                .is_some_and(|t| t != "member" && t != "normal")
            {
                return Err(
                    node.err("only cluster member nodes are supported (no remote or ping nodes)")
                );
            }
            cib.nodes.push(Node {
                name: name.to_string(),
                id: node.attr("id").map(String::from),
                attributes: sets(node, "instance_attributes")?,
            });
        }
    }
    if let Some(r) = cfg.child("resources") {
        for e in &r.children {
            let res = match e.name.as_str() {
                "primitive" => Resource::Primitive(primitive(e)?),
                "group" => Resource::Group(group(e)?),
                "clone" => Resource::Clone(clone(e, false)?),
                "master" => Resource::Clone(clone(e, true)?),
                other => return Err(e.err(format!("<{other}> resources are not supported"))),
            };
            cib.resources.push(res);
        }
    }
    if let Some(c) = cfg.child("constraints") {
        for e in &c.children {
            cib.constraints.push(constraint(e)?);
        }
    }
    if let Some(d) = cfg.child("rsc_defaults") {
        cib.rsc_defaults = sets(d, "meta_attributes")?;
    }
    if let Some(d) = cfg.child("op_defaults") {
        cib.op_defaults = sets(d, "meta_attributes")?;
    }
    Ok(())
}

fn num<T: std::str::FromStr>(e: &Element, name: &str) -> Result<Option<T>, XmlError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| e.err(format!("{name}='{v}' is not a number"))),
    }
}

fn op_status(code: i32) -> OpStatus {
    match code {
        -1 => OpStatus::Pending,
        0 => OpStatus::Done,
        1 => OpStatus::Cancelled,
        2 => OpStatus::Timeout,
        _ => OpStatus::Error,
    }
}

fn status_section(st: &Element, status: &mut ClusterStatus) -> Result<(), XmlError> {
    for ns in st.children_named("node_state") {
        let name = ns
            .attr("uname")
            .or(ns.attr("id"))
            .ok_or_else(|| ns.err("<node_state> needs a uname"))?
            .to_string();
        let in_ccm = ns
            .attr("in_ccm")
            .is_some_and(|v| is_true(v) || v.parse::<u64>().is_ok_and(|t| t > 1));
        let crmd = ns
            .attr("crmd")
            .is_some_and(|v| v == "online" || v.parse::<u64>().is_ok_and(|t| t > 0));
        let join = ns.attr("join").is_none_or(|j| j == "member");
        let mut node = NodeState {
            online: in_ccm && crmd && join,
            ..Default::default()
        };
        if let Some(t) = ns.child("transient_attributes") {
            let attrs = sets(t, "instance_attributes")?;
            let mut fails: BTreeMap<(String, String, u64), FailCount> = BTreeMap::new();
            for (k, v) in attrs {
                if let Some(rest) = k.strip_prefix("fail-count-") {
                    let (rsc, op, interval) = split_fail_key(rest);
                    let count = Score::parse(&v).map_or(0, |s| s.value().max(0));
                    let e = fails
                        .entry((rsc.clone(), op.clone(), interval))
                        .or_insert(FailCount {
                            rsc,
                            op,
                            interval_ms: interval,
                            count: 0,
                            last_failure_s: 0,
                        });
                    e.count = u32::try_from(count).unwrap_or(0);
                } else if let Some(rest) = k.strip_prefix("last-failure-") {
                    let (rsc, op, interval) = split_fail_key(rest);
                    let e = fails
                        .entry((rsc.clone(), op.clone(), interval))
                        .or_insert(FailCount {
                            rsc,
                            op,
                            interval_ms: interval,
                            count: 0,
                            last_failure_s: 0,
                        });
                    e.last_failure_s = v.trim().parse().unwrap_or(0);
                } else {
                    node.attributes.insert(k, v);
                }
            }
            node.fail_counts = fails.into_values().filter(|f| f.count > 0).collect();
        }
        if let Some(lrm) = ns.child("lrm").and_then(|l| l.child("lrm_resources")) {
            // Anonymous clone instances may be recorded under several ids (RSC, RSC:0, RSC:1)
            // on one node, each with its own call-id sequence. History is per primitive, so
            // entries are merged: inactive ones first, then active ones, call ids renumbered
            // in that order, so the merged history ends in the state of the active entry.
            let mut entries: BTreeMap<String, Vec<Vec<OpRecord>>> = BTreeMap::new();
            for r in lrm.children_named("lrm_resource") {
                let id = r.req("id")?;
                let base = id.split(':').next().unwrap_or(id).to_string();
                let mut ops = Vec::new();
                for op in r.children_named("lrm_rsc_op") {
                    let rec = OpRecord {
                        op: op.req("operation")?.to_string(),
                        interval_ms: num::<u64>(op, "interval")?.unwrap_or(0),
                        call_id: num::<i64>(op, "call-id")?
                            .unwrap_or(0)
                            .max(0)
                            .unsigned_abs(),
                        rc: num::<i32>(op, "rc-code")?.unwrap_or(0),
                        status: op_status(num::<i32>(op, "op-status")?.unwrap_or(0)),
                        last_rc_change_s: num::<u64>(op, "last-rc-change")?
                            .or(num::<u64>(op, "last-run")?)
                            .unwrap_or(0),
                        exec_time_ms: num::<u64>(op, "exec-time")?.unwrap_or(0),
                        exit_reason: op
                            .attr("exit-reason")
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                        op_digest: op.attr("op-digest").map(String::from),
                        reload: match (op.attr("op-force-restart"), op.attr("op-restart-digest")) {
                            (Some(list), Some(d)) => Some(ReloadDigest {
                                force_restart: list.split_whitespace().map(String::from).collect(),
                                restart_digest: d.to_string(),
                            }),
                            _ => None,
                        },
                    };
                    if rec.op == "migrate_to" || rec.op == "migrate_from" {
                        return Err(op.err("live migration history is not supported"));
                    }
                    // `RSC_last_failure_0` repeats a failure already kept as `RSC_last_0` or
                    // `RSC_monitor_N`; keep it only when it is the only record of that call.
                    ops.push(rec);
                }
                ops.sort_by_key(|o| o.call_id);
                ops.dedup_by(|a, b| {
                    a.call_id == b.call_id && a.op == b.op && a.interval_ms == b.interval_ms
                });
                entries.entry(base).or_default().push(ops);
            }
            for (base, mut list) in entries {
                if list.len() > 1 {
                    list.sort_by_key(|ops| {
                        crate::status::derive_state(ops, false, 0, 0)
                            .state
                            .is_active()
                    });
                }
                let mut next = 1u64;
                for ops in list {
                    for mut o in ops {
                        o.call_id = next;
                        next += 1;
                        status.record(&base, &name, o);
                    }
                }
            }
        }
        status.nodes.insert(name, node);
    }
    Ok(())
}

/// `RSC#OP_INTERVAL` → (RSC, OP, INTERVAL); Pacemaker 1.x's plain `RSC` counts as all ops.
fn split_fail_key(rest: &str) -> (String, String, u64) {
    match rest.split_once('#') {
        Some((rsc, op)) => {
            let (name, interval) = op.rsplit_once('_').unwrap_or((op, "0"));
            (
                rsc.split(':').next().unwrap_or(rsc).to_string(),
                name.to_string(),
                interval.parse().unwrap_or(0),
            )
        }
        None => (
            rest.split(':').next().unwrap_or(rest).to_string(),
            "any".to_string(),
            0,
        ),
    }
}

/// Reads a Pacemaker CIB document.
pub fn import(xml: &str) -> Result<Imported, XmlError> {
    let root = parse(xml)?;
    if root.name != "cib" {
        return Err(root.err(format!("root element is <{}>, expected <cib>", root.name)));
    }
    let mut cib = Cib {
        version: CibVersion {
            admin_epoch: num(&root, "admin_epoch")?.unwrap_or(0),
            epoch: num(&root, "epoch")?.unwrap_or(0),
            num_updates: num(&root, "num_updates")?.unwrap_or(0),
        },
        ..Default::default()
    };
    let cfg = root
        .child("configuration")
        .ok_or_else(|| root.err("no <configuration> section"))?;
    configuration(cfg, &mut cib)?;
    let mut status = ClusterStatus {
        has_quorum: root.attr("have-quorum").is_none_or(is_true),
        ..Default::default()
    };
    if let Some(st) = root.child("status") {
        status_section(st, &mut status)?;
    }
    if let Some(dc) = root.attr("dc-uuid") {
        status.dc = cib
            .nodes
            .iter()
            .find(|n| n.id.as_deref() == Some(dc))
            .map(|n| n.name.clone())
            .or(Some(dc.to_string()));
    }
    // Node ids of configured nodes name the node_state entries too.
    let ids: BTreeMap<String, String> = cib
        .nodes
        .iter()
        .filter_map(|n| n.id.clone().map(|i| (i, n.name.clone())))
        .collect();
    let renamed: Vec<(String, String)> = status
        .nodes
        .keys()
        .filter_map(|k| ids.get(k).map(|v| (k.clone(), v.clone())))
        .filter(|(a, b)| a != b)
        .collect();
    for (from, to) in renamed {
        if let Some(v) = status.nodes.remove(&from) {
            status.nodes.insert(to.clone(), v);
        }
        for per_node in status.history.values_mut() {
            if let Some(v) = per_node.remove(&from) {
                per_node.insert(to.clone(), v);
            }
        }
    }
    Ok(Imported { cib, status })
}

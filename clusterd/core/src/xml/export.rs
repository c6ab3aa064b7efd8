//! CIB (+ status) → Pacemaker XML that Pacemaker 2.1 accepts (`crm_simulate`, `crm_verify`).

use super::dom::esc;
use crate::cib::*;
use crate::status::{ClusterStatus, OpStatus};
use std::collections::BTreeMap;
use std::fmt::Write;

fn nvset(out: &mut String, indent: &str, tag: &str, id: &str, pairs: &BTreeMap<String, String>) {
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}<{tag} id=\"{}\">", esc(id));
    for (k, v) in pairs {
        let _ = writeln!(
            out,
            "{indent}  <nvpair id=\"{}\" name=\"{}\" value=\"{}\"/>",
            esc(&format!("{id}-{k}")),
            esc(k),
            esc(v)
        );
    }
    let _ = writeln!(out, "{indent}</{tag}>");
}

fn primitive(out: &mut String, indent: &str, p: &Primitive) {
    let provider = p
        .agent
        .provider
        .as_ref()
        .map(|pr| format!(" provider=\"{}\"", esc(pr)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{indent}<primitive id=\"{}\" class=\"{}\"{provider} type=\"{}\">",
        esc(&p.id),
        esc(&p.agent.class),
        esc(&p.agent.kind)
    );
    let inner = format!("{indent}  ");
    nvset(
        out,
        &inner,
        "instance_attributes",
        &format!("{}-instance_attributes", p.id),
        &p.params,
    );
    nvset(
        out,
        &inner,
        "meta_attributes",
        &format!("{}-meta_attributes", p.id),
        &p.meta,
    );
    if !p.ops.is_empty() {
        let _ = writeln!(out, "{inner}<operations>");
        for o in &p.ops {
            let id = if o.id.is_empty() {
                format!(
                    "{}-{}-interval-{}",
                    p.id,
                    o.name,
                    format_duration_ms(o.interval_ms)
                )
            } else {
                o.id.clone()
            };
            let mut attrs = format!(
                "id=\"{}\" name=\"{}\" interval=\"{}\"",
                esc(&id),
                esc(&o.name),
                format_duration_ms(o.interval_ms)
            );
            if let Some(t) = o.timeout_ms {
                let _ = write!(attrs, " timeout=\"{}\"", format_duration_ms(t));
            }
            if let Some(r) = o.role {
                let _ = write!(attrs, " role=\"{}\"", r.legacy_name());
            }
            let (inst, plain): (BTreeMap<String, String>, BTreeMap<String, String>) = o
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .partition(|(k, _)| k == "OCF_CHECK_LEVEL");
            for (k, v) in &plain {
                let _ = write!(attrs, " {}=\"{}\"", esc(k), esc(v));
            }
            if inst.is_empty() {
                let _ = writeln!(out, "{inner}  <op {attrs}/>");
            } else {
                let _ = writeln!(out, "{inner}  <op {attrs}>");
                nvset(
                    out,
                    &format!("{inner}    "),
                    "instance_attributes",
                    &format!("{id}-instance_attributes"),
                    &inst,
                );
                let _ = writeln!(out, "{inner}  </op>");
            }
        }
        let _ = writeln!(out, "{inner}</operations>");
    }
    let _ = writeln!(out, "{indent}</primitive>");
}

fn group(out: &mut String, indent: &str, g: &Group) {
    let _ = writeln!(out, "{indent}<group id=\"{}\">", esc(&g.id));
    nvset(
        out,
        &format!("{indent}  "),
        "meta_attributes",
        &format!("{}-meta_attributes", g.id),
        &g.meta,
    );
    for m in &g.members {
        primitive(out, &format!("{indent}  "), m);
    }
    let _ = writeln!(out, "{indent}</group>");
}

fn rule(out: &mut String, indent: &str, r: &Rule, fallback_id: &str) {
    let id = if r.id.is_empty() {
        fallback_id.to_string()
    } else {
        r.id.clone()
    };
    let score = match &r.score {
        RuleScore::Value(s) => format!("score=\"{s}\""),
        RuleScore::Attribute(a) => format!("score-attribute=\"{}\"", esc(a)),
    };
    let op = match r.boolean_op {
        BoolOp::And => "and",
        BoolOp::Or => "or",
    };
    let role = r
        .role
        .map(|x| format!(" role=\"{}\"", x.legacy_name()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{indent}<rule id=\"{}\" {score} boolean-op=\"{op}\"{role}>",
        esc(&id)
    );
    for (k, e) in r.expressions.iter().enumerate() {
        let value = e
            .value
            .as_ref()
            .map(|v| format!(" value=\"{}\"", esc(v)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}  <expression id=\"{}-expr-{k}\" attribute=\"{}\" operation=\"{}\"{value} type=\"{}\"/>",
            esc(&id),
            esc(&e.attribute),
            e.op.as_str(),
            e.value_type.as_str()
        );
    }
    let _ = writeln!(out, "{indent}</rule>");
}

fn constraint(out: &mut String, c: &Constraint) {
    let i = "      ";
    match c {
        Constraint::Location(l) => {
            let role = l
                .role
                .map(|x| format!(" role=\"{}\"", x.legacy_name()))
                .unwrap_or_default();
            match &l.target {
                LocationTarget::Node { node, score } => {
                    let _ = writeln!(
                        out,
                        "{i}<rsc_location id=\"{}\" rsc=\"{}\" node=\"{}\" score=\"{score}\"{role}/>",
                        esc(&l.id),
                        esc(&l.rsc),
                        esc(node)
                    );
                }
                LocationTarget::Rules(rules) => {
                    // Pacemaker reads a rule's role from the <rule> element, not from
                    // <rsc_location>: put it there.
                    let _ = writeln!(
                        out,
                        "{i}<rsc_location id=\"{}\" rsc=\"{}\">",
                        esc(&l.id),
                        esc(&l.rsc)
                    );
                    for (k, r) in rules.iter().enumerate() {
                        let mut r = r.clone();
                        r.role = r.role.or(l.role);
                        rule(out, &format!("{i}  "), &r, &format!("{}-rule-{k}", l.id));
                    }
                    let _ = writeln!(out, "{i}</rsc_location>");
                }
            }
        }
        Constraint::Colocation(c) => {
            let mut roles = String::new();
            if let Some(r) = c.rsc_role {
                let _ = write!(roles, " rsc-role=\"{}\"", r.legacy_name());
            }
            if let Some(r) = c.with_rsc_role {
                let _ = write!(roles, " with-rsc-role=\"{}\"", r.legacy_name());
            }
            let _ = writeln!(
                out,
                "{i}<rsc_colocation id=\"{}\" rsc=\"{}\" with-rsc=\"{}\" score=\"{}\"{roles}/>",
                esc(&c.id),
                esc(&c.rsc),
                esc(&c.with_rsc),
                c.score
            );
        }
        Constraint::Order(o) => {
            let sym = o
                .symmetrical
                .map(|s| format!(" symmetrical=\"{s}\""))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{i}<rsc_order id=\"{}\" first=\"{}\" first-action=\"{}\" then=\"{}\" then-action=\"{}\" kind=\"{}\"{sym}/>",
                esc(&o.id),
                esc(&o.first),
                o.first_action,
                esc(&o.then),
                o.then_action,
                o.kind.as_str()
            );
        }
    }
}

/// Node ids: the configured id, else the position (1-based) in the node list.
fn node_ids(cib: &Cib, status: Option<&ClusterStatus>) -> Vec<(String, String)> {
    let mut names: Vec<String> = cib.nodes.iter().map(|n| n.name.clone()).collect();
    if let Some(s) = status {
        for n in s.nodes.keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            (
                n.clone(),
                cib.node(n)
                    .and_then(|x| x.id.clone())
                    .unwrap_or_else(|| (k + 1).to_string()),
            )
        })
        .collect()
}

fn status_code(s: OpStatus) -> i32 {
    match s {
        OpStatus::Pending => -1,
        OpStatus::Done => 0,
        OpStatus::Cancelled => 1,
        OpStatus::Timeout => 2,
        OpStatus::Error => 4,
    }
}

/// The optional attributes of an `lrm_rsc_op`: exit reason and digests.
fn op_extras(op: &crate::status::OpRecord) -> String {
    let mut out = String::new();
    if let Some(r) = &op.exit_reason {
        let _ = write!(out, " exit-reason=\"{}\"", esc(r));
    }
    if let Some(d) = &op.op_digest {
        let _ = write!(out, " op-digest=\"{}\"", esc(d));
    }
    if let Some(r) = &op.reload {
        // Pacemaker's list form: names between spaces, so " NAME " finds one.
        let list = if r.force_restart.is_empty() {
            String::new()
        } else {
            format!(" {} ", r.force_restart.join(" "))
        };
        let _ = write!(
            out,
            " op-force-restart=\"{}\" op-restart-digest=\"{}\"",
            esc(&list),
            esc(&r.restart_digest)
        );
    }
    out
}

/// Writes a whole `<cib>`; with `status`, the `<status>` section too.
pub fn export(cib: &Cib, status: Option<&ClusterStatus>) -> String {
    let ids = node_ids(cib, status);
    let id_of = |name: &str| {
        ids.iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let mut out = String::new();
    let v = cib.version;
    let quorum = status.is_none_or(|s| s.has_quorum);
    let dc = status
        .and_then(|s| s.dc.as_deref())
        .map(|d| format!(" dc-uuid=\"{}\"", esc(&id_of(d))))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<cib crm_feature_set=\"3.16.1\" validate-with=\"pacemaker-3.9\" admin_epoch=\"{}\" epoch=\"{}\" num_updates=\"{}\" have-quorum=\"{}\"{dc}>",
        v.admin_epoch,
        v.epoch,
        v.num_updates,
        u8::from(quorum)
    );
    out.push_str("  <configuration>\n    <crm_config>\n");
    let mut props = cib.properties.clone();
    if let Some(n) = &cib.cluster_name {
        props.insert("cluster-name".into(), n.clone());
    }
    nvset(
        &mut out,
        "      ",
        "cluster_property_set",
        "cib-bootstrap-options",
        &props,
    );
    out.push_str("    </crm_config>\n    <nodes>\n");
    for n in &cib.nodes {
        let id = id_of(&n.name);
        if n.attributes.is_empty() {
            let _ = writeln!(
                out,
                "      <node id=\"{}\" uname=\"{}\"/>",
                esc(&id),
                esc(&n.name)
            );
        } else {
            let _ = writeln!(
                out,
                "      <node id=\"{}\" uname=\"{}\">",
                esc(&id),
                esc(&n.name)
            );
            nvset(
                &mut out,
                "        ",
                "instance_attributes",
                &format!("nodes-{id}"),
                &n.attributes,
            );
            out.push_str("      </node>\n");
        }
    }
    if let Some(s) = status {
        for name in s.nodes.keys().filter(|n| cib.node(n).is_none()) {
            let _ = writeln!(
                out,
                "      <node id=\"{}\" uname=\"{}\"/>",
                esc(&id_of(name)),
                esc(name)
            );
        }
    }
    out.push_str("    </nodes>\n    <resources>\n");
    for r in &cib.resources {
        match r {
            Resource::Primitive(p) => primitive(&mut out, "      ", p),
            Resource::Group(g) => group(&mut out, "      ", g),
            Resource::Clone(c) => {
                let _ = writeln!(out, "      <clone id=\"{}\">", esc(&c.id));
                let mut meta = c.meta.clone();
                if c.promotable {
                    meta.insert("promotable".into(), "true".into());
                }
                nvset(
                    &mut out,
                    "        ",
                    "meta_attributes",
                    &format!("{}-meta_attributes", c.id),
                    &meta,
                );
                match &c.child {
                    CloneChild::Primitive(p) => primitive(&mut out, "        ", p),
                    CloneChild::Group(g) => group(&mut out, "        ", g),
                }
                out.push_str("      </clone>\n");
            }
        }
    }
    out.push_str("    </resources>\n    <constraints>\n");
    for c in &cib.constraints {
        constraint(&mut out, c);
    }
    out.push_str("    </constraints>\n");
    if !cib.rsc_defaults.is_empty() {
        out.push_str("    <rsc_defaults>\n");
        nvset(
            &mut out,
            "      ",
            "meta_attributes",
            "rsc_defaults-options",
            &cib.rsc_defaults,
        );
        out.push_str("    </rsc_defaults>\n");
    }
    if !cib.op_defaults.is_empty() {
        out.push_str("    <op_defaults>\n");
        nvset(
            &mut out,
            "      ",
            "meta_attributes",
            "op_defaults-options",
            &cib.op_defaults,
        );
        out.push_str("    </op_defaults>\n");
    }
    out.push_str("  </configuration>\n");
    match status {
        None => out.push_str("  <status/>\n"),
        Some(s) => export_status(&mut out, cib, s, &id_of),
    }
    out.push_str("</cib>\n");
    out
}

fn export_status(out: &mut String, cib: &Cib, s: &ClusterStatus, id_of: &dyn Fn(&str) -> String) {
    out.push_str("  <status>\n");
    for (name, st) in &s.nodes {
        let id = id_of(name);
        let (ccm, crmd, join) = if st.online {
            ("true", "online", "member")
        } else {
            ("false", "offline", "down")
        };
        let _ = writeln!(
            out,
            "    <node_state id=\"{}\" uname=\"{}\" in_ccm=\"{ccm}\" crmd=\"{crmd}\" join=\"{join}\" expected=\"{join}\">",
            esc(&id),
            esc(name)
        );
        let mut attrs = st.attributes.clone();
        for f in &st.fail_counts {
            let key = format!("{}#{}_{}", f.rsc, f.op, f.interval_ms);
            let count = if i64::from(f.count) >= i64::from(crate::score::INFINITY) {
                "INFINITY".to_string()
            } else {
                f.count.to_string()
            };
            attrs.insert(format!("fail-count-{key}"), count);
            attrs.insert(format!("last-failure-{key}"), f.last_failure_s.to_string());
        }
        if !attrs.is_empty() {
            let _ = writeln!(out, "      <transient_attributes id=\"{}\">", esc(&id));
            nvset(
                out,
                "        ",
                "instance_attributes",
                &format!("status-{id}"),
                &attrs,
            );
            out.push_str("      </transient_attributes>\n");
        }
        let _ = writeln!(
            out,
            "      <lrm id=\"{}\">\n        <lrm_resources>",
            esc(&id)
        );
        for (rsc, per_node) in &s.history {
            let Some(ops) = per_node.get(name) else {
                continue;
            };
            let Some(p) = cib
                .primitives()
                .into_iter()
                .find(|p| &p.primitive.id == rsc)
            else {
                continue;
            };
            let agent = &p.primitive.agent;
            let provider = agent
                .provider
                .as_ref()
                .map(|pr| format!(" provider=\"{}\"", esc(pr)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "          <lrm_resource id=\"{}\" class=\"{}\"{provider} type=\"{}\">",
                esc(rsc),
                esc(&agent.class),
                esc(&agent.kind)
            );
            // A cancelled monitor is no longer history in Pacemaker's sense (its entry is
            // deleted there): it is not written.
            for (k, op) in ops
                .iter()
                .enumerate()
                .filter(|(_, o)| o.status != OpStatus::Cancelled)
            {
                let key = format!("{rsc}_{}_{}", op.op, op.interval_ms);
                let target = if op.failed() { 0 } else { op.rc };
                let _ = writeln!(
                    out,
                    "            <lrm_rsc_op id=\"{}\" operation_key=\"{}\" operation=\"{}\" crm-debug-origin=\"tandem\" crm_feature_set=\"3.16.1\" transition-key=\"{}:1:{target}:00000000-0000-4000-8000-000000000000\" transition-magic=\"{}:{};{}:1:{target}:00000000-0000-4000-8000-000000000000\" call-id=\"{}\" rc-code=\"{}\" op-status=\"{}\" interval=\"{}\" last-rc-change=\"{}\" exec-time=\"{}\" queue-time=\"0\" on_node=\"{}\"{}/>",
                    esc(&format!("{key}_{k}")),
                    esc(&key),
                    esc(&op.op),
                    op.call_id,
                    status_code(op.status),
                    op.rc,
                    op.call_id,
                    op.call_id,
                    op.rc,
                    status_code(op.status),
                    op.interval_ms,
                    op.last_rc_change_s,
                    op.exec_time_ms,
                    esc(name),
                    op_extras(op)
                );
            }
            out.push_str("          </lrm_resource>\n");
        }
        out.push_str("        </lrm_resources>\n      </lrm>\n    </node_state>\n");
    }
    out.push_str("  </status>\n");
}

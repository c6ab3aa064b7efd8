//! `OCF_RESKEY_CRM_meta_*` values the daemon computes itself: those of probes (which the
//! scheduler does not plan) and the clone notification lists (`notify_start_uname`, ...) when
//! a transition's notify action does not carry them.

use std::collections::BTreeMap;

use clusterd_core::cib::{Cib, PrimitiveRef, Role};
use clusterd_core::transition::{ActionKind, Transition};

/// Meta values of a primitive (instance `instance` of its clone, if any) outside a transition:
/// its own meta attributes with inheritance, and the clone's `clone_max`, `clone_node_max`,
/// `promoted_max`, ... as Pacemaker passes them.
pub fn probe_meta(
    cib: &Cib,
    p: &PrimitiveRef<'_>,
    instance: u32,
    node_count: usize,
) -> BTreeMap<String, String> {
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &cib.rsc_defaults {
        meta.insert(k.clone(), v.clone());
    }
    if let Some(c) = p.clone {
        for (k, v) in &c.meta {
            meta.insert(k.clone(), v.clone());
        }
    }
    if let Some(g) = p.group {
        for (k, v) in &g.meta {
            meta.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &p.primitive.meta {
        meta.insert(k.clone(), v.clone());
    }
    if let Some(c) = p.clone {
        let mut set = |k: &str, v: String| {
            meta.insert(k.to_owned(), v);
        };
        set("clone", instance.to_string());
        set("clone_max", c.clone_max(node_count).to_string());
        set("clone_node_max", c.clone_node_max().to_string());
        set("globally_unique", c.globally_unique().to_string());
        set("notify", c.notify().to_string());
        if c.promotable {
            set("promotable", "true".into());
            set("promoted_max", c.promoted_max().to_string());
            set("promoted_node_max", c.promoted_node_max().to_string());
            // The pre-2.0 names, still read by agents such as ocf:linbit:drbd.
            set("master_max", c.promoted_max().to_string());
            set("master_node_max", c.promoted_node_max().to_string());
        }
    }
    meta
}

/// Fills the notification variables of a notify action on `primitive` from the transition:
/// which instances start, stop, promote, demote (and where), and which are active, promoted
/// and unpromoted now. Values the scheduler already set are kept.
pub fn fill_notify_meta(
    meta: &mut BTreeMap<String, String>,
    t: &Transition,
    primitive: &str,
    kind: ActionKind,
) {
    let ActionKind::Notify { phase, op } = kind else {
        return;
    };
    let mut lists: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for a in t.actions.iter().filter(|a| a.primitive == primitive) {
        let which = match a.kind {
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Promote => "promote",
            ActionKind::Demote => "demote",
            _ => continue,
        };
        let e = lists.entry(which).or_default();
        e.0.push(a.resource.clone());
        e.1.push(a.node.clone());
    }
    for p in t.placements.iter().filter(|p| p.primitive == primitive) {
        let Some(node) = &p.current_node else {
            continue;
        };
        let mut add = |which: &'static str| {
            let e = lists.entry(which).or_default();
            e.0.push(p.resource.clone());
            e.1.push(node.clone());
        };
        if p.current_role != Role::Stopped {
            add("active");
        }
        match p.current_role {
            Role::Promoted => {
                add("promoted");
                add("master");
            }
            Role::Unpromoted => {
                add("unpromoted");
                add("slave");
            }
            _ => {}
        }
        // Pacemaker 1.x's "inactive" list: instances not running.
    }
    let mut set = |k: String, v: String| {
        meta.entry(k).or_insert(v);
    };
    set("notify_type".into(), phase.as_str().into());
    set("notify_operation".into(), op.as_str().into());
    for which in [
        "start",
        "stop",
        "promote",
        "demote",
        "active",
        "promoted",
        "unpromoted",
        "master",
        "slave",
    ] {
        let (rscs, nodes) = lists.remove(which).unwrap_or_default();
        set(format!("notify_{which}_resource"), rscs.join(" "));
        set(format!("notify_{which}_uname"), nodes.join(" "));
    }
    let all: Vec<String> = {
        let mut v: Vec<String> = t
            .placements
            .iter()
            .filter_map(|p| p.current_node.clone().or(p.node.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    set("notify_all_uname".into(), all.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterd_core::cib::{Agent, OrderAction};
    use clusterd_core::transition::{Action, ActionId, NotifyPhase, Placement};

    fn action(id: u32, rsc: &str, kind: ActionKind, node: &str) -> Action {
        Action {
            id: ActionId(id),
            resource: rsc.into(),
            primitive: "db".into(),
            kind,
            node: node.into(),
            timeout_ms: 1000,
            after: vec![],
            agent: Agent::ocf("pacemaker", "Stateful"),
            params: BTreeMap::new(),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn notify_lists_come_from_the_transition() {
        let t = Transition {
            actions: vec![
                action(0, "db:0", ActionKind::Promote, "n1"),
                action(1, "db:1", ActionKind::Start, "n2"),
            ],
            placements: vec![
                Placement {
                    resource: "db:0".into(),
                    primitive: "db".into(),
                    current_node: Some("n1".into()),
                    current_role: Role::Unpromoted,
                    node: Some("n1".into()),
                    role: Role::Promoted,
                    unmanaged: false,
                    failed: false,
                    reason: None,
                },
                Placement {
                    resource: "db:1".into(),
                    primitive: "db".into(),
                    current_node: None,
                    current_role: Role::Stopped,
                    node: Some("n2".into()),
                    role: Role::Unpromoted,
                    unmanaged: false,
                    failed: false,
                    reason: None,
                },
            ],
        };
        let mut meta = BTreeMap::new();
        meta.insert("notify_type".to_owned(), "post".to_owned());
        fill_notify_meta(
            &mut meta,
            &t,
            "db",
            ActionKind::Notify {
                phase: NotifyPhase::Pre,
                op: OrderAction::Promote,
            },
        );
        let get = |k: &str| meta.get(k).map(String::as_str);
        assert_eq!(
            get("notify_type"),
            Some("post"),
            "the scheduler's value is kept"
        );
        assert_eq!(get("notify_operation"), Some("promote"));
        assert_eq!(get("notify_promote_uname"), Some("n1"));
        assert_eq!(get("notify_promote_resource"), Some("db:0"));
        assert_eq!(get("notify_start_uname"), Some("n2"));
        assert_eq!(get("notify_active_uname"), Some("n1"));
        assert_eq!(get("notify_unpromoted_uname"), Some("n1"));
        assert_eq!(get("notify_slave_resource"), Some("db:0"));
        assert_eq!(get("notify_promoted_uname"), Some(""));
        assert_eq!(get("notify_all_uname"), Some("n1 n2"));
    }
}

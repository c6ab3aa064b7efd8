//! Helpers for scheduler tests: configurations written as clusterctl commands, status as
//! "what runs where".
#![allow(dead_code)]

pub mod oracle;

use clusterd_core::cib::{Cib, Role};
use clusterd_core::pcs;
use clusterd_core::status::{ClusterStatus, OpRecord, OpStatus};
use clusterd_core::transition::Transition;

/// Builds a CIB from clusterctl command lines (one per line), stonith disabled.
pub fn cib(nodes: &[&str], commands: &str) -> Cib {
    let mut cib = pcs::new_configuration();
    let mut lines = vec![
        format!("cluster setup test {}", nodes.join(" ")),
        "property set stonith-enabled=false".to_string(),
    ];
    lines.extend(
        commands
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from),
    );
    for line in lines {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let pcs::Command::Edit(edits) = pcs::parse(&args).unwrap_or_else(|e| panic!("{line}: {e}"))
        else {
            panic!("{line}: not an edit")
        };
        pcs::apply(&mut cib, &edits, &|_| None).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    cib
}

pub fn op(op: &str, interval_ms: u64, call_id: u64, rc: i32, t: u64) -> OpRecord {
    OpRecord {
        op: op.into(),
        interval_ms,
        call_id,
        rc,
        status: OpStatus::Done,
        last_rc_change_s: t,
        exec_time_ms: 10,
        exit_reason: None,
        // What clusterd records for a resource without parameters (the tests' Dummy), with the
        // default 20 s timeout of recurring operations.
        op_digest: Some(if interval_ms == 0 {
            clusterd_core::digest::digest_of([])
        } else {
            clusterd_core::digest::digest_of([("CRM_meta_timeout", "20000")])
        }),
        reload: None,
    }
}

/// Marks `rsc` running on `node` in `role` (probes elsewhere say "not running").
pub fn running(st: &mut ClusterStatus, rsc: &str, node: &str, role: Role) {
    let call = st.next_call_id(node);
    st.record(rsc, node, op("start", 0, call, 0, 100));
    if role == Role::Promoted {
        st.record(rsc, node, op("promote", 0, call + 1, 0, 100));
    }
}

/// Records a "not running" probe for every resource on every node where it has no history.
pub fn probed(st: &mut ClusterStatus, cib: &Cib) {
    let nodes: Vec<String> = st.nodes.keys().cloned().collect();
    for p in cib.primitives() {
        for n in &nodes {
            let has = st
                .history
                .get(&p.primitive.id)
                .and_then(|h| h.get(n))
                .is_some();
            if !has {
                let call = st.next_call_id(n);
                st.record(&p.primitive.id, n, op("monitor", 0, call, 7, 50));
            }
        }
    }
}

pub fn online(nodes: &[&str]) -> ClusterStatus {
    ClusterStatus::all_online(nodes)
}

/// `RESOURCE=NODE:ROLE` for every instance, sorted, `-` for stopped.
pub fn placement(t: &Transition) -> Vec<String> {
    let mut v: Vec<String> = t
        .placements
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p.resource,
                p.node
                    .as_ref()
                    .map_or("-".to_string(), |n| format!("{n}:{}", p.role))
            )
        })
        .collect();
    v.sort();
    v
}

/// Position of the first action with this key prefix (`A_start_0 n1`).
pub fn pos(t: &Transition, key: &str) -> usize {
    t.actions
        .iter()
        .position(|a| a.key() == key)
        .unwrap_or_else(|| {
            panic!(
                "no action {key} in {:#?}",
                t.actions.iter().map(|a| a.key()).collect::<Vec<_>>()
            )
        })
}

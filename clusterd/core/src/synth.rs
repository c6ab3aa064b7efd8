//! Synthetic configurations for benchmarks and scale tests: seeded, deterministic.
//!
//! [`large`] builds the benchmark shape: `resources` primitives on `nodes` nodes with
//! `constraints` constraints — 60 % locations, 20 % colocations (chains of five, each
//! resource with the one before, INFINITY; plus finite anti-colocations between chain heads),
//! 20 % orders along the chains — and a status where about half the resources already run.

use crate::cib::*;
use crate::score::Score;
use crate::status::{ClusterStatus, OpRecord, OpStatus};
use std::collections::BTreeMap;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).expect("below n")
    }
}

/// A large configuration and status (see the module docs).
pub fn large(
    resources: usize,
    nodes: usize,
    constraints: usize,
    seed: u64,
) -> (Cib, ClusterStatus) {
    let mut r = Rng(seed | 1);
    let node_names: Vec<String> = (1..=nodes).map(|k| format!("node{k:02}")).collect();
    let mut cib = Cib {
        cluster_name: Some("bench".into()),
        nodes: node_names
            .iter()
            .map(|n| Node {
                name: n.clone(),
                id: None,
                attributes: BTreeMap::new(),
            })
            .collect(),
        ..Default::default()
    };
    cib.properties
        .insert("stonith-enabled".into(), "false".into());
    cib.rsc_defaults
        .insert("resource-stickiness".into(), "1".into());
    let ids: Vec<String> = (0..resources).map(|k| format!("rsc{k:04}")).collect();
    for id in &ids {
        cib.resources.push(Resource::Primitive(Primitive {
            id: id.clone(),
            agent: Agent::ocf("heartbeat", "Dummy"),
            params: BTreeMap::new(),
            meta: BTreeMap::new(),
            ops: vec![Op {
                id: format!("{id}-monitor-interval-10s"),
                name: "monitor".into(),
                interval_ms: 10_000,
                timeout_ms: Some(20_000),
                role: None,
                extra: BTreeMap::new(),
            }],
        }));
    }
    let n_loc = constraints * 6 / 10;
    let n_col = constraints * 2 / 10;
    let n_ord = constraints - n_loc - n_col;
    let scores = [-1_000_000i64, -100, -10, 10, 50, 100, 1_000_000];
    for k in 0..n_loc {
        let rsc = ids[r.below(resources)].clone();
        let node = node_names[r.below(nodes)].clone();
        let score = Score::new(scores[r.below(scores.len())]);
        cib.constraints.push(Constraint::Location(Location {
            id: format!("loc{k}"),
            rsc,
            role: None,
            target: LocationTarget::Node { node, score },
        }));
    }
    // Chains of five: rsc(5c+i) with rsc(5c+i-1).
    let mut k = 0;
    'chains: for c in 0..resources / 5 {
        for i in 1..5 {
            if k >= n_col * 4 / 5 {
                break 'chains;
            }
            let (dep, prim) = (ids[c * 5 + i].clone(), ids[c * 5 + i - 1].clone());
            cib.constraints.push(Constraint::Colocation(Colocation {
                id: format!("col{k}"),
                rsc: dep,
                with_rsc: prim,
                score: Score::INFINITY,
                rsc_role: None,
                with_rsc_role: None,
            }));
            k += 1;
        }
    }
    while k < n_col {
        let a = r.below(resources / 5) * 5;
        let b = r.below(resources / 5) * 5;
        if a > b {
            cib.constraints.push(Constraint::Colocation(Colocation {
                id: format!("col{k}"),
                rsc: ids[a].clone(),
                with_rsc: ids[b].clone(),
                score: Score::new(-20),
                rsc_role: None,
                with_rsc_role: None,
            }));
            k += 1;
        }
    }
    for o in 0..n_ord {
        let c = r.below(resources / 5);
        let i = 1 + r.below(4);
        cib.constraints.push(Constraint::Order(Order {
            id: format!("ord{o}"),
            first: ids[c * 5 + i - 1].clone(),
            first_action: OrderAction::Start,
            then: ids[c * 5 + i].clone(),
            then_action: OrderAction::Start,
            kind: if o % 4 == 0 {
                OrderKind::Optional
            } else {
                OrderKind::Mandatory
            },
            symmetrical: None,
        }));
    }
    let mut status = ClusterStatus::all_online(&node_names);
    let mut calls = vec![0u64; nodes];
    for (k, id) in ids.iter().enumerate() {
        for (n, node) in node_names.iter().enumerate() {
            calls[n] += 1;
            let running = k % 2 == 0 && n == (k / 2) % nodes;
            let op = if running { "start" } else { "monitor" };
            let rc = if running { 0 } else { 7 };
            let call_id = calls[n];
            let prim = match &cib.resources[k] {
                Resource::Primitive(p) => p,
                _ => unreachable!("synth makes primitives only"),
            };
            let digest = crate::digest::for_op(&cib, prim, "start", 0).op_digest();
            status.record(
                id,
                node,
                OpRecord {
                    op: op.into(),
                    interval_ms: 0,
                    call_id,
                    rc,
                    status: OpStatus::Done,
                    last_rc_change_s: 1,
                    exec_time_ms: 1,
                    exit_reason: None,
                    op_digest: Some(digest),
                    reload: None,
                },
            );
        }
    }
    (cib, status)
}

//! Differential test against Pacemaker's own scheduler: generated configurations (seeded) are
//! exported to Pacemaker XML, a current state is injected with `crm_simulate --op-inject` (so
//! the history carries Pacemaker's own digests), then `crm_simulate -S -O` runs Pacemaker's
//! transition and we read the resulting state back. Our placement and roles must agree, per
//! primitive, as multisets of (node, role) — clone instance numbers may differ.
//!
//! `TANDEM_DIFF_CASES=N` sets the number of cases (default 30; `benches/scripts/differential`
//! runs 500). A failure prints the seed and both placements; `TANDEM_DIFF_SEED=S` replays one.

// The test RNG yields u64s that index small vectors.
#![allow(clippy::cast_possible_truncation)]

mod common;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic per seed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

use clusterd_core::cib::Role;
use common::oracle::Case;

fn generate(seed: u64) -> Case {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n_nodes = 2 + r.below(3) as usize;
    let nodes: Vec<String> = (1..=n_nodes).map(|k| format!("n{k}")).collect();
    let mut commands = Vec::new();
    let mut prims: Vec<String> = Vec::new();
    let mut tops: Vec<String> = Vec::new();
    let mut running = Vec::new();
    let mut master_scores = Vec::new();
    let scores = ["-INFINITY", "-50", "10", "50", "100", "INFINITY"];
    commands.push(format!(
        "resource defaults resource-stickiness={}",
        r.pick(&["0", "1", "100"])
    ));
    let asymmetric = r.chance(15);
    if asymmetric {
        commands.push("property set symmetric-cluster=false".into());
    }
    let n_prims = 2 + r.below(4) as usize;
    for k in 0..n_prims {
        let id = format!("r{k}");
        commands.push(format!("resource create {id} ocf:heartbeat:Dummy"));
        prims.push(id.clone());
        tops.push(id.clone());
        if r.chance(40) {
            let node = r.pick(&nodes).clone();
            running.push((id.clone(), node, Role::Started));
        }
        if r.chance(50) {
            commands.push(format!(
                "constraint location {id} prefers {}={}",
                r.pick(&nodes),
                r.pick(&scores)
            ));
        }
    }
    if r.chance(40) {
        // A group of two fresh members.
        commands.push("resource create g1 ocf:heartbeat:Dummy --group G".into());
        commands.push("resource create g2 ocf:heartbeat:Dummy --group G".into());
        tops.push("G".into());
        if r.chance(50) {
            let node = r.pick(&nodes).clone();
            running.push(("g1".into(), node.clone(), Role::Started));
            running.push(("g2".into(), node, Role::Started));
        }
        if r.chance(50) {
            commands.push(format!(
                "constraint location G prefers {}={}",
                r.pick(&nodes),
                r.pick(&scores)
            ));
        }
    }
    if r.chance(20) {
        // A clone of a group.
        commands.push("resource create c1 ocf:heartbeat:Dummy --group CG".into());
        commands.push("resource create c2 ocf:heartbeat:Dummy --group CG".into());
        commands.push(format!(
            "resource clone CG CG-clone clone-max={}",
            1 + r.below(n_nodes as u64)
        ));
        tops.push("CG-clone".into());
        let mut inst = 0;
        for n in &nodes {
            if r.chance(30) {
                running.push((format!("c1:{inst}"), n.clone(), Role::Started));
                running.push((format!("c2:{inst}"), n.clone(), Role::Started));
                inst += 1;
            }
        }
    }
    if r.chance(50) {
        let promotable = r.chance(60);
        let clone_max = 1 + r.below(n_nodes as u64);
        if promotable {
            commands.push("resource create S ocf:pacemaker:Stateful".into());
            commands.push(format!(
                "resource promotable S S-clone clone-max={clone_max} promoted-max=1"
            ));
            for n in &nodes {
                if r.chance(70) {
                    master_scores.push(("S".into(), n.clone(), *r.pick(&[1, 5, 10, 100])));
                }
            }
        } else {
            commands.push("resource create S ocf:heartbeat:Dummy".into());
            commands.push(format!("resource clone S S-clone clone-max={clone_max}"));
        }
        tops.push("S-clone".into());
        let mut inst = 0;
        for n in &nodes {
            if inst < clone_max && r.chance(40) {
                let role = if promotable && inst == 0 && r.chance(50) {
                    Role::Promoted
                } else if promotable {
                    Role::Unpromoted
                } else {
                    Role::Started
                };
                running.push((format!("S:{inst}"), n.clone(), role));
                inst += 1;
            }
        }
    }
    // Colocations from later to earlier top-level resources (no cycles).
    for k in 1..tops.len() {
        if r.chance(35) {
            let with = tops[r.below(k as u64) as usize].clone();
            let score = r.pick(&["INFINITY", "-INFINITY", "20", "-20"]);
            let role = if with == "S-clone"
                && commands.iter().any(|c| c.contains("promotable"))
                && r.chance(50)
            {
                " with-rsc-role=Promoted"
            } else {
                ""
            };
            if tops[k] != with {
                commands.push(format!(
                    "constraint colocation add {} with {with} {score}{role}",
                    tops[k]
                ));
            }
        }
    }
    if r.chance(25) {
        commands.push(format!("node standby {}", r.pick(&nodes)));
    }
    // Orders between top-level resources (earlier first, so no cycles).
    let promotable = commands.iter().any(|c| c.contains("resource promotable"));
    for k in 1..tops.len() {
        if r.chance(25) {
            let first = tops[r.below(k as u64) as usize].clone();
            let first_action = if first == "S-clone" && promotable && r.chance(60) {
                "promote"
            } else {
                "start"
            };
            let kind = if r.chance(25) { " kind=Optional" } else { "" };
            commands.push(format!(
                "constraint order {first_action} {first} then start {}{kind}",
                tops[k]
            ));
        }
    }
    if r.chance(15) {
        commands.push(format!("resource disable {}", r.pick(&tops)));
    }
    if r.chance(15) {
        commands.push(format!(
            "resource meta {} priority={}",
            r.pick(&tops),
            r.below(20)
        ));
    }
    if r.chance(15) {
        commands.push(format!(
            "resource meta {} migration-threshold=2",
            r.pick(&prims)
        ));
    }
    if promotable && r.chance(30) {
        let dep = r.pick(&prims).clone();
        if !commands
            .iter()
            .any(|c| c.starts_with(&format!("constraint colocation add {dep} ")))
        {
            commands.push(format!(
                "constraint colocation add {dep} with S-clone {} with-rsc-role=Promoted",
                r.pick(&["INFINITY", "50", "-INFINITY"])
            ));
        }
    }
    if promotable && r.chance(20) {
        let primary = r.pick(&prims).clone();
        commands.push(format!(
            "constraint colocation add Promoted S-clone with {primary} {}",
            r.pick(&["INFINITY", "100", "-INFINITY"])
        ));
    }
    if asymmetric {
        for t in &tops {
            for n in &nodes {
                if r.chance(60) {
                    commands.push(format!(
                        "constraint location {t} prefers {n}={}",
                        r.pick(&["0", "10", "100"])
                    ));
                }
            }
        }
    }
    if promotable && r.chance(20) {
        commands.push(format!(
            "constraint location S-clone rule role=Promoted score={} #uname eq {}",
            r.pick(&["50", "200", "-INFINITY"]),
            r.pick(&nodes)
        ));
    }
    // Failures: a failed recurring monitor on a running primitive, and fail counts.
    let mut failures = Vec::new();
    for (rsc, node, _) in &running {
        if prims.contains(rsc) && r.chance(20) {
            failures.push((rsc.clone(), node.clone(), *r.pick(&[1u32, 2, 3])));
        }
    }
    // One case in four is a fresh cluster, where the transition summaries are compared too.
    if seed.is_multiple_of(4) {
        running.clear();
        failures.clear();
    }
    Case {
        nodes,
        commands,
        running,
        master_scores,
        failures,
    }
}

fn run_case(seed: u64, dir: &std::path::Path) -> Result<(), String> {
    common::oracle::check(&generate(seed), seed, dir)
}

#[test]
fn placement_agrees_with_crm_simulate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = std::env::var("TANDEM_DIFF_KEEP")
        .ok()
        .map(std::path::PathBuf::from);
    let seeds: Vec<u64> = match std::env::var("TANDEM_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("TANDEM_DIFF_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("TANDEM_DIFF_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            (1..=n).collect()
        }
    };
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|&s| run_case(s, keep.as_deref().unwrap_or(dir.path())).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}

//! Pacemaker as the oracle: a case (configuration commands + what runs where) goes through
//! `crm_simulate --op-inject` (so the history carries Pacemaker's own records) and
//! `crm_simulate -S -O`; our scheduler reads the same injected CIB. Both placements are returned
//! as per-primitive sorted lists of `node:Role`.
#![allow(dead_code)]

use clusterd_core::cib::{Cib, Role};
use clusterd_core::sched::schedule;
use clusterd_core::status::{ClusterStatus, RunState, derive_state};
use clusterd_core::xml;
use std::collections::BTreeMap;
use std::process::Command;

/// A configuration and the state to inject.
pub struct Case {
    pub nodes: Vec<String>,
    pub commands: Vec<String>,
    /// (primitive or clone instance id `RSC:N`, node, role) running now.
    pub running: Vec<(String, String, Role)>,
    /// (primitive, node, score): `master-RSC` node attributes.
    pub master_scores: Vec<(String, String, i32)>,
    /// (primitive, node, failures): a failed 10 s monitor that many times.
    pub failures: Vec<(String, String, u32)>,
}

impl Case {
    pub fn new(nodes: &[&str], commands: &str) -> Case {
        Case {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            commands: commands
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            running: vec![],
            master_scores: vec![],
            failures: vec![],
        }
    }
    pub fn run(mut self, rsc: &str, node: &str, role: Role) -> Case {
        self.running.push((rsc.into(), node.into(), role));
        self
    }
    pub fn master(mut self, rsc: &str, node: &str, score: i32) -> Case {
        self.master_scores.push((rsc.into(), node.into(), score));
        self
    }
    pub fn fail(mut self, rsc: &str, node: &str, times: u32) -> Case {
        self.failures.push((rsc.into(), node.into(), times));
        self
    }
}

pub type Placement = BTreeMap<String, Vec<String>>;

pub fn crm_simulate(args: &[&str]) -> String {
    let out = Command::new("crm_simulate")
        .args(args)
        .output()
        .expect("crm_simulate is installed (Debian pacemaker-cli-utils)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crm_simulate {args:?} failed:\n{text}"
    );
    text
}

/// Per primitive: sorted list of "node:role".
pub fn ours(cib: &Cib, status: &ClusterStatus, now: u64) -> BTreeMap<String, Vec<String>> {
    let t = schedule(cib, status, now);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in t.placements {
        if let Some(n) = p.node {
            out.entry(p.primitive)
                .or_default()
                .push(format!("{n}:{}", p.role));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

pub fn theirs(cib: &Cib, status: &ClusterStatus) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rsc, per_node) in &status.history {
        let promotable = cib.find(rsc).is_some_and(|r| r.is_promotable());
        for (node, ops) in per_node {
            if let RunState::Active { role, .. } = derive_state(ops, promotable, 0, 0).state {
                out.entry(rsc.clone())
                    .or_default()
                    .push(format!("{node}:{role}"));
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Runs a case through both schedulers; `Err` describes a disagreement.
pub fn check(case: &Case, seed: u64, dir: &std::path::Path) -> Result<(), String> {
    let cib = super::cib(
        &case.nodes.iter().map(String::as_str).collect::<Vec<_>>(),
        &case.commands.join("\n"),
    );
    let mut status = ClusterStatus::all_online(&case.nodes);
    for (rsc, node, score) in &case.master_scores {
        status
            .nodes
            .get_mut(node)
            .expect("node")
            .attributes
            .insert(format!("master-{rsc}"), score.to_string());
    }
    let base = dir.join(format!("case-{seed}.xml"));
    let injected = dir.join(format!("case-{seed}-injected.xml"));
    let result = dir.join(format!("case-{seed}-result.xml"));
    // Node states come from our export (with transient attributes); history from injection.
    std::fs::write(&base, xml::export(&cib, Some(&status))).expect("write");
    let mut args: Vec<String> = vec![
        "-x".into(),
        base.display().to_string(),
        "-O".into(),
        injected.display().to_string(),
    ];
    let base_id = |i: &str| i.split(':').next().unwrap_or(i).to_string();
    for p in cib.primitives() {
        let id = &p.primitive.id;
        for n in &case.nodes {
            let here: Vec<&(String, String, Role)> = case
                .running
                .iter()
                .filter(|(r, node, _)| &base_id(r) == id && node == n)
                .collect();
            match here.first() {
                None => {
                    let inst = if p.clone.is_some() {
                        format!("{id}:0")
                    } else {
                        id.clone()
                    };
                    args.extend(["-i".into(), format!("{inst}_monitor_0@{n}=7")]);
                }
                Some((inst, _, role)) => {
                    args.extend(["-i".into(), format!("{inst}_start_0@{n}=0")]);
                    if *role == Role::Promoted {
                        args.extend(["-i".into(), format!("{inst}_promote_0@{n}=0")]);
                    }
                    // Each injected failure raises the fail count by one (crm_simulate does it).
                    if let Some((_, _, count)) = case
                        .failures
                        .iter()
                        .find(|(r, node, _)| r == id && node == n)
                    {
                        for _ in 0..*count {
                            args.extend(["-i".into(), format!("{inst}_monitor_10000@{n}=1")]);
                        }
                    }
                }
            }
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    crm_simulate(&argv);
    let injected_text = std::fs::read_to_string(&injected).expect("injected CIB");
    let imported = xml::import(&injected_text)
        .map_err(|e| format!("seed {seed}: our import of crm_simulate's CIB failed: {e}"))?;
    let result_arg = result.display().to_string();
    let injected_arg = injected.display().to_string();
    let out = Command::new("crm_simulate")
        .args(["-x", &injected_arg, "-S", "-O", &result_arg])
        .output()
        .expect("crm_simulate is installed (Debian pacemaker-cli-utils)");
    let summary =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if summary.contains("An invalid transition was produced") {
            // Pacemaker's own graph was invalid (its bug): no verdict for this case.
            eprintln!("seed {seed}: skipped: crm_simulate produced an invalid transition");
            return Ok(());
        }
        panic!("crm_simulate -S failed on seed {seed}:\n{summary}");
    }
    let after = xml::import(&std::fs::read_to_string(&result).expect("result CIB"))
        .map_err(|e| format!("seed {seed}: import result: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let a = ours(&imported.cib, &imported.status, now);
    let b = theirs(&after.cib, &after.status);
    if a != b && violates_one_per_node(case, &summary) {
        // crm_simulate itself put two instances of one clone on one node (clone-node-max=1):
        // the oracle broke its own rule, so this case cannot judge us.
        eprintln!("seed {seed}: skipped: crm_simulate places two instances of a clone on one node");
        return Ok(());
    }
    if a != b {
        let t = schedule(&imported.cib, &imported.status, now);
        return Err(format!(
            "seed {seed}: placements differ\n  commands:\n    {}\n  running: {:?}\n  master scores: {:?}\n  failures: {:?}\n  ours:   {a:?}\n  theirs: {b:?}\n  our summary: {:#?}\n  crm_simulate:\n{summary}",
            case.commands.join("\n    "),
            case.running,
            case.master_scores,
            case.failures,
            t.summary()
        ));
    }
    // On a fresh cluster (nothing running, so no "resource definition change" restarts from
    // injected history) the transition summaries must agree too, line for line, up to clone
    // instance numbers and column widths.
    if std::env::var("TANDEM_DIFF_ALL_SUMMARIES").is_ok()
        || (case.running.is_empty() && case.failures.is_empty())
    {
        let analysis = clusterd_core::sched::analyse(&imported.cib, &imported.status, now);
        let ours = normalize(&analysis.summary().join("\n"));
        let section = summary.split("Transition Summary:").nth(1).unwrap_or("");
        let section = section
            .split("Executing Cluster Transition")
            .next()
            .unwrap_or("");
        let theirs = normalize(section);
        if ours != theirs {
            return Err(format!(
                "seed {seed}: transition summaries differ\n  commands:\n    {}\n  master scores: {:?}\n  ours:   {ours:#?}\n  theirs: {theirs:#?}",
                case.commands.join("\n    "),
                case.master_scores,
            ));
        }
    }
    Ok(())
}

/// Replays crm_simulate's transition summary over the injected clone instances and tells
/// whether two instances of one clone end on the same node.
fn violates_one_per_node(case: &Case, summary: &str) -> bool {
    let mut at: BTreeMap<String, String> = case
        .running
        .iter()
        .filter(|(r, _, _)| r.contains(':'))
        .map(|(r, n, _)| (r.clone(), n.clone()))
        .collect();
    let section = summary.split("Transition Summary:").nth(1).unwrap_or("");
    for line in section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("* "))
    {
        let words: Vec<&str> = line[2..].split_whitespace().collect();
        let (Some(verb), Some(rsc)) = (words.first(), words.get(1)) else {
            continue;
        };
        if !rsc.contains(':') {
            continue;
        }
        let inner: Vec<&str> = line
            .split('(')
            .nth(1)
            .and_then(|x| x.split(')').next())
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let target = inner.last().map(|s| s.to_string());
        match *verb {
            "Stop" => {
                at.remove(*rsc);
            }
            "Start" | "Move" | "Promote" | "Recover" => {
                if let Some(t) = target {
                    at.insert(rsc.to_string(), t);
                }
            }
            _ => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    at.iter()
        .any(|(r, n)| !seen.insert((r.split(':').next().unwrap_or(r).to_string(), n.clone())))
}

/// Summary lines as sorted `verb rsc (detail)` with clone instance numbers and spacing removed.
pub fn normalize(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("* "))
        .map(|l| {
            let words: Vec<String> = l[2..]
                .split_whitespace()
                .map(|w| match w.split_once(':') {
                    Some((base, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                        base.to_string()
                    }
                    _ => w.to_string(),
                })
                .collect();
            // Keep `verb rsc ( detail )`, and whether the start is blocked; reasons are
            // worded differently.
            let mut line = words.join(" ");
            let blocked = line.ends_with("blocked)") || line.ends_with(" blocked");
            if let Some(end) = line.find(" )") {
                line.truncate(end + 2);
            }
            if blocked {
                line.push_str(" (blocked)");
            }
            line
        })
        .collect();
    out.sort();
    out
}

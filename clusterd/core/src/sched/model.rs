//! The scheduler's working model: nodes and a resource tree with clone instances expanded,
//! built once from the CIB and the status ("unpack" in Pacemaker's words).

use crate::cib::{self, Cib, CloneChild, Constraint, LocationTarget, Primitive, Resource, Role};
use crate::score::{INFINITY, Score};
use crate::status::{ClusterStatus, DerivedState, RunState, derive_state};
use std::collections::BTreeMap;

/// Absent from a resource's allowed nodes (asymmetric clusters): treated as -INFINITY, but
/// distinguishable for stickiness.
pub const ABSENT: i32 = i32::MIN;
/// Pacemaker's INFINITY_HACK: a node made unusable while merging positive-only scores.
pub const UNUSABLE: i32 = -100 * INFINITY;

#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub online: bool,
    pub standby: bool,
    pub maintenance: bool,
    /// Permanent + transient attributes, plus `#uname`.
    pub attrs: BTreeMap<String, String>,
    /// Resources assigned so far (load balancing tie-break).
    pub num_resources: u32,
}

impl NodeInfo {
    /// Can this node run resources at all (online, not standby, not maintenance)?
    pub fn available(&self) -> bool {
        self.online && !self.standby && !self.maintenance
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Primitive,
    Group { children: Vec<usize> },
    Clone(CloneInfo),
}

#[derive(Clone, Debug)]
pub struct CloneInfo {
    pub children: Vec<usize>,
    pub promotable: bool,
    pub clone_max: u32,
    pub clone_node_max: u32,
    pub promoted_max: u32,
    pub promoted_node_max: u32,
    pub notify: bool,
    pub interleave: bool,
}

/// One resource of the working tree: a primitive, a group, a clone, or a clone instance
/// (a primitive or group with a `:N` id).
#[derive(Clone, Debug)]
pub struct Rsc {
    /// Instance id (`mailData:0`) or configured id.
    pub id: String,
    /// Configured id (`mailData`).
    pub base: String,
    pub kind: Kind,
    pub parent: Option<usize>,
    /// The configured primitive (primitives only).
    pub prim: Option<Primitive>,
    /// Node weights, indexed like `Sched::nodes`; `ABSENT` when not allowed.
    pub allowed: Vec<i32>,
    /// Colocations where this resource is the dependent / the primary.
    pub this_with: Vec<usize>,
    pub with_this: Vec<usize>,
    /// Where it is active now (primitives), with the derived state.
    pub current: Vec<(usize, DerivedState)>,
    pub provisional: bool,
    pub allocating: bool,
    pub merging: bool,
    pub assigned: Option<usize>,
    pub next_role: Role,
    /// Promotion priority (promotable clone instances).
    pub priority: i32,
    pub sort_priority: i32,
    pub managed: bool,
    pub target_role: Role,
    pub stickiness: i32,
    /// An instance beyond clone-max found active: it is stopped.
    pub orphan: bool,
    /// Nodes where the primitive has any history (it was probed there).
    pub seen_on: Vec<usize>,
    /// Why the resource cannot run on a node (for `why`): node → reasons.
    pub bans: BTreeMap<usize, Vec<String>>,
    /// Definition changes found in its history where it runs: node → what to do.
    pub changes: Vec<(usize, ConfigChange)>,
}

/// What a running resource's history says about its current definition on one node
/// (Pacemaker's `pcmk__check_action_config` and the maintenance cancels beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// A parameter changed that the agent cannot reload (or it cannot reload at all).
    Restart,
    /// Only reloadable parameters changed.
    Reload,
    /// A recurring monitor's parameters or timeout changed: run it again with the new ones.
    Reschedule(u64),
    /// A recurring monitor must stop: the resource or node is in maintenance, or the monitor
    /// is no longer configured.
    Cancel { interval_ms: u64, maintenance: bool },
    /// Something changed and the resource has failures on the node: they are forgotten.
    ClearFailcount,
}

impl Rsc {
    pub fn is_primitive(&self) -> bool {
        matches!(self.kind, Kind::Primitive)
    }
    pub fn children(&self) -> &[usize] {
        match &self.kind {
            Kind::Primitive => &[],
            Kind::Group { children } => children,
            Kind::Clone(c) => &c.children,
        }
    }
    /// The node it runs on now (first active node), for primitives.
    pub fn current_node(&self) -> Option<usize> {
        self.current.first().map(|(n, _)| *n)
    }
    pub fn current_role(&self) -> Role {
        match self.current.first().map(|(_, d)| d.state) {
            Some(RunState::Active { role, .. }) => role,
            Some(RunState::StopFailed) => Role::Started,
            _ => Role::Stopped,
        }
    }
    pub fn failed(&self) -> bool {
        self.current
            .iter()
            .any(|(_, d)| matches!(d.state, RunState::Active { failed: true, .. }))
    }
    pub fn blocked(&self) -> bool {
        self.current
            .iter()
            .any(|(_, d)| matches!(d.state, RunState::StopFailed))
    }
}

/// A colocation between two working resources.
#[derive(Clone, Debug)]
pub struct Coloc {
    pub id: String,
    pub dependent: usize,
    pub primary: usize,
    pub score: i32,
    pub dependent_role: Option<Role>,
    pub primary_role: Option<Role>,
}

/// An order between two working resources (configured ids resolved).
#[derive(Clone, Debug)]
pub struct Ord_ {
    pub id: String,
    pub first: usize,
    pub first_action: cib::OrderAction,
    pub then: usize,
    pub then_action: cib::OrderAction,
    pub kind: cib::OrderKind,
    pub symmetrical: bool,
}

pub struct Sched<'a> {
    pub cib: &'a Cib,
    pub status: &'a ClusterStatus,
    pub now_s: u64,
    pub nodes: Vec<NodeInfo>,
    pub rscs: Vec<Rsc>,
    /// Top-level resources in configuration order.
    pub top: Vec<usize>,
    pub colocs: Vec<Coloc>,
    pub orders: Vec<Ord_>,
    /// Location constraints with a role (applied at promotion): (rsc, node, score).
    pub role_locations: Vec<(usize, Role, usize, i32)>,
    pub by_id: BTreeMap<String, usize>,
    /// Resources stay where they are (no quorum and no-quorum-policy=freeze), or stop.
    pub quorum_stop: bool,
    pub quorum_freeze: bool,
    pub stonith_blocks: bool,
    /// Configuration look-up by id (built once).
    pub index: std::collections::HashMap<&'a str, cib::ResourceRef<'a>>,
}

impl<'a> Sched<'a> {
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
    }

    pub fn build(cib: &'a Cib, status: &'a ClusterStatus, now_s: u64) -> Sched<'a> {
        let mut names: Vec<String> = cib.nodes.iter().map(|n| n.name.clone()).collect();
        names.extend(status.nodes.keys().cloned());
        names.sort();
        names.dedup();
        let nodes = names
            .iter()
            .map(|name| {
                let mut attrs = BTreeMap::new();
                if let Some(n) = cib.node(name) {
                    attrs.extend(n.attributes.clone());
                }
                let st = status.nodes.get(name);
                if let Some(st) = st {
                    attrs.extend(st.attributes.clone());
                }
                attrs.insert("#uname".into(), name.clone());
                let flag = |k: &str| attrs.get(k).is_some_and(|v| cib::is_true(v));
                NodeInfo {
                    name: name.clone(),
                    online: st.is_some_and(|s| s.online),
                    standby: flag("standby"),
                    maintenance: flag("maintenance"),
                    attrs,
                    num_resources: 0,
                }
            })
            .collect::<Vec<_>>();
        let quorum = status.has_quorum;
        let policy = cib.no_quorum_policy();
        let mut s = Sched {
            cib,
            status,
            now_s,
            nodes,
            rscs: Vec::new(),
            top: Vec::new(),
            colocs: Vec::new(),
            orders: Vec::new(),
            role_locations: Vec::new(),
            by_id: BTreeMap::new(),
            quorum_stop: !quorum
                && matches!(
                    policy,
                    cib::NoQuorumPolicy::Stop | cib::NoQuorumPolicy::Suicide
                ),
            quorum_freeze: !quorum && policy == cib::NoQuorumPolicy::Freeze,
            stonith_blocks: false,
            index: cib.index(),
        };
        for r in &cib.resources {
            let idx = s.add_resource(r);
            s.top.push(idx);
        }
        // Pacemaker refuses to manage resources while fencing is enabled but impossible.
        let has_stonith = cib
            .primitives()
            .iter()
            .any(|p| p.primitive.agent.class == "stonith");
        s.stonith_blocks = cib.stonith_enabled() && !has_stonith;
        s.unpack_current();
        s.check_config_changes();
        s.unpack_constraints();
        s.apply_stickiness_and_failures();
        s.add_promotion_scores();
        s
    }

    /// Pacemaker's pcmk__add_promotion_scores: a positive promotion score (`master-RSC`) on an
    /// available node is added to the instances' scores there, so instances go where they can
    /// be promoted.
    fn add_promotion_scores(&mut self) {
        for i in 0..self.rscs.len() {
            if !self.rscs[i].is_primitive() || self.instance_number(i).is_none() {
                continue;
            }
            let Some((ci, _)) = self.instance_number(i) else {
                continue;
            };
            if !matches!(&self.rscs[ci].kind, Kind::Clone(c) if c.promotable) {
                continue;
            }
            for n in 0..self.nodes.len() {
                if !self.nodes[n].available() || self.rscs[i].allowed[n] == ABSENT {
                    continue;
                }
                let Some(score) = self.primitive_promotion_score(i, n) else {
                    continue;
                };
                if score > 0 {
                    self.rscs[i].allowed[n] = Score::new(i64::from(self.rscs[i].allowed[n]))
                        .add(Score::new(i64::from(score)))
                        .value();
                }
            }
        }
    }

    /// The `master-BASE` attribute of primitive instance `i` on node `n`, when it counts for
    /// this instance there (Pacemaker's promotion_score_applies): the instance runs there; or
    /// no instance runs there and the resource was probed there; or the instance runs nowhere
    /// and was never seen anywhere (cluster start); or the instance is known there. Anonymous
    /// clone history without an active instance belongs to the first instance that runs
    /// nowhere, as Pacemaker attributes it.
    /// Nodes where anonymous clone instance `k` has history, as Pacemaker attributes it when it
    /// unpacks the status node by node (in name order): history on a node where an instance is
    /// active belongs to that instance; other history belongs to the first instance not yet
    /// found active on an earlier node.
    fn known_on(&self, children: &[usize], i: usize, k: usize) -> Vec<usize> {
        let mut active_so_far: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for &n in &self.rscs[i].seen_on {
            let owner = match children
                .iter()
                .position(|&c| self.instance_current(c) == Some(n))
            {
                Some(a) => {
                    active_so_far.push(a);
                    Some(a)
                }
                None => (0..children.len()).find(|c| !active_so_far.contains(c)),
            };
            if owner == Some(k) {
                out.push(n);
            }
        }
        out
    }

    pub fn primitive_promotion_score(&self, i: usize, n: usize) -> Option<i32> {
        let value = self.nodes[n]
            .attrs
            .get(&format!("master-{}", self.rscs[i].base))
            .and_then(|v| Score::parse(v))?;
        let (ci, k) = self.instance_number(i)?;
        let Kind::Clone(info) = &self.rscs[ci].kind else {
            return None;
        };
        let current = |c: usize| self.instance_current(c);
        let active_here = info.children.iter().position(|&c| current(c) == Some(n));
        let applies = if active_here == Some(k)
            || (active_here.is_none() && self.rscs[i].seen_on.contains(&n))
        {
            true
        } else {
            let running = current(info.children[k]);
            let known = self.known_on(&info.children, i, k);
            (running.is_none() && known.is_empty()) || known.contains(&n)
        };
        let allowed = |r: usize| self.rscs[r].allowed[n] != ABSENT && self.rscs[r].allowed[n] >= 0;
        (applies && allowed(i)).then_some(value.value())
    }

    fn push(&mut self, r: Rsc) -> usize {
        let i = self.rscs.len();
        self.by_id.entry(r.id.clone()).or_insert(i);
        self.rscs.push(r);
        i
    }

    fn new_rsc(
        &self,
        id: String,
        base: String,
        kind: Kind,
        parent: Option<usize>,
        prim: Option<Primitive>,
    ) -> Rsc {
        let init = if self.cib.symmetric_cluster() {
            0
        } else {
            ABSENT
        };
        Rsc {
            id,
            base,
            kind,
            parent,
            prim,
            allowed: vec![init; self.nodes.len()],
            this_with: Vec::new(),
            with_this: Vec::new(),
            current: Vec::new(),
            provisional: true,
            allocating: false,
            merging: false,
            assigned: None,
            next_role: Role::Stopped,
            priority: 0,
            sort_priority: 0,
            managed: true,
            target_role: Role::Started,
            stickiness: 0,
            orphan: false,
            seen_on: Vec::new(),
            bans: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    fn add_primitive(&mut self, p: &Primitive, suffix: &str, parent: Option<usize>) -> usize {
        let r = self.new_rsc(
            format!("{}{suffix}", p.id),
            p.id.clone(),
            Kind::Primitive,
            parent,
            Some(p.clone()),
        );
        self.push(r)
    }

    fn add_group(&mut self, g: &cib::Group, suffix: &str, parent: Option<usize>) -> usize {
        let r = self.new_rsc(
            format!("{}{suffix}", g.id),
            g.id.clone(),
            Kind::Group { children: vec![] },
            parent,
            None,
        );
        let gi = self.push(r);
        let kids: Vec<usize> = g
            .members
            .iter()
            .map(|m| self.add_primitive(m, suffix, Some(gi)))
            .collect();
        // Members: each colocated with the one before (INFINITY) and ordered after it.
        for w in kids.windows(2) {
            self.colocs.push(Coloc {
                id: format!("{}-internal", g.id),
                dependent: w[1],
                primary: w[0],
                score: INFINITY,
                dependent_role: None,
                primary_role: None,
            });
            self.orders.push(Ord_ {
                id: format!("{}-internal", g.id),
                first: w[0],
                first_action: cib::OrderAction::Start,
                then: w[1],
                then_action: cib::OrderAction::Start,
                kind: cib::OrderKind::Mandatory,
                symmetrical: true,
            });
        }
        self.rscs[gi].kind = Kind::Group { children: kids };
        gi
    }

    fn add_resource(&mut self, r: &Resource) -> usize {
        match r {
            Resource::Primitive(p) => self.add_primitive(p, "", None),
            Resource::Group(g) => self.add_group(g, "", None),
            Resource::Clone(c) => {
                let node_count = self.nodes.len();
                let info = CloneInfo {
                    children: vec![],
                    promotable: c.promotable,
                    clone_max: c.clone_max(node_count),
                    clone_node_max: c.clone_node_max().max(1),
                    promoted_max: c.promoted_max(),
                    promoted_node_max: c.promoted_node_max().max(1),
                    notify: c.notify(),
                    interleave: c.interleave(),
                };
                let rc = self.new_rsc(c.id.clone(), c.id.clone(), Kind::Clone(info), None, None);
                let ci = self.push(rc);
                // Map the child's configured id to the clone: constraints naming it mean the clone.
                self.by_id.insert(c.child.id().to_string(), ci);
                if let CloneChild::Group(g) = &c.child {
                    for m in &g.members {
                        self.by_id.entry(m.id.clone()).or_insert(ci);
                    }
                }
                // Instances: clone-max, plus extra ones for nodes where more copies are active.
                let active_nodes = self.active_nodes_of_clone(&c.child);
                let clone_max = match &self.rscs[ci].kind {
                    Kind::Clone(i) => i.clone_max as usize,
                    _ => unreachable!(),
                };
                let count = clone_max.max(active_nodes.len());
                let mut kids = Vec::with_capacity(count);
                for k in 0..count {
                    let suffix = format!(":{k}");
                    let child = match &c.child {
                        CloneChild::Primitive(p) => self.add_primitive(p, &suffix, Some(ci)),
                        CloneChild::Group(g) => self.add_group(g, &suffix, Some(ci)),
                    };
                    if k >= clone_max {
                        self.mark_orphan(child);
                    }
                    kids.push(child);
                }
                if let Kind::Clone(i) = &mut self.rscs[ci].kind {
                    i.children = kids;
                }
                ci
            }
        }
    }

    fn mark_orphan(&mut self, i: usize) {
        self.rscs[i].orphan = true;
        let kids = self.rscs[i].children().to_vec();
        for k in kids {
            self.mark_orphan(k);
        }
    }

    /// Nodes where any primitive of a clone child is active, in node order.
    fn active_nodes_of_clone(&self, child: &CloneChild) -> Vec<usize> {
        let mut out = Vec::new();
        for p in child.primitives() {
            if let Some(per_node) = self.status.history.get(&p.id) {
                for (node, ops) in per_node {
                    if let Some(ni) = self.node_index(node)
                        && derive_state(ops, false, self.now_s, 0).state.is_active()
                        && !out.contains(&ni)
                    {
                        out.push(ni);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Fills `current` of every primitive from the history (Pacemaker's unpack_lrm_resources).
    fn unpack_current(&mut self) {
        let cib = self.cib;
        for i in 0..self.rscs.len() {
            if !self.rscs[i].is_primitive() {
                continue;
            }
            let base = self.rscs[i].base.clone();
            let Some(rref) = self.index.get(base.as_str()).copied() else {
                continue;
            };
            let promotable = rref.is_promotable();
            let ft = cib.failure_timeout_s(&rref);
            let mut found: Vec<(usize, DerivedState)> = Vec::new();
            if let Some(per_node) = self.status.history.get(&base) {
                for (node, ops) in per_node {
                    let Some(ni) = self.node_index(node) else {
                        continue;
                    };
                    if !ops.is_empty() {
                        self.rscs[i].seen_on.push(ni);
                    }
                    let d = derive_state(ops, promotable, self.now_s, ft);
                    found.push((ni, d));
                }
            }
            // Clone instance k takes the k-th node where the clone is active.
            let instance = self.instance_number(i);
            let (active, inactive): (Vec<_>, Vec<_>) =
                found.into_iter().partition(|(_, d)| d.state.is_active());
            let mine: Vec<(usize, DerivedState)> = match instance {
                None => active,
                Some((clone_idx, k)) => {
                    let clone_nodes = self.clone_active_nodes(clone_idx);
                    match clone_nodes.get(k) {
                        Some(&n) => active.into_iter().filter(|(ni, _)| *ni == n).collect(),
                        None => Vec::new(),
                    }
                }
            };
            self.rscs[i].current = mine;
            // Bans from hard errors, kept on the top-level resource (Pacemaker bans uber_parent).
            let top = self.top_of(i);
            for (ni, d) in active_and(&self.rscs[i].current, &inactive) {
                if d.hard_error {
                    let reason = format!(
                        "hard error ({}) on {}",
                        failure_text(&d),
                        self.nodes[ni].name
                    );
                    self.ban(top, ni, reason);
                }
                if d.not_installed {
                    let reason = format!("agent not installed on {}", self.nodes[ni].name);
                    self.ban(top, ni, reason);
                }
                if d.fatal_error {
                    for n in 0..self.nodes.len() {
                        let reason = format!(
                            "fatal error ({}) on {}: banned everywhere",
                            failure_text(&d),
                            self.nodes[ni].name
                        );
                        self.ban(top, n, reason);
                    }
                }
            }
        }
        for i in 0..self.rscs.len() {
            if let Some(p) = self.rscs[i].prim.clone() {
                let Some(rref) = self.index.get(p.id.as_str()).copied() else {
                    continue;
                };
                self.rscs[i].managed = cib.is_managed(&rref);
                self.rscs[i].target_role = cib.target_role(&rref);
                self.rscs[i].stickiness = cib.stickiness(&rref).value();
            } else if let Some(rref) = self.index.get(self.rscs[i].base.as_str()).copied() {
                self.rscs[i].target_role = cib.target_role(&rref);
                self.rscs[i].managed = cib.is_managed(&rref);
            }
            // Resources on maintenance nodes are left alone.
            if self.rscs[i]
                .current
                .iter()
                .any(|(n, _)| self.nodes[*n].maintenance)
            {
                self.rscs[i].managed = false;
            }
        }
    }

    /// (clone index, instance number) when `i` is (inside) a clone instance.
    pub fn instance_number(&self, i: usize) -> Option<(usize, usize)> {
        let mut child = i;
        let mut cur = self.rscs[i].parent;
        while let Some(p) = cur {
            if let Kind::Clone(c) = &self.rscs[p].kind {
                let k = c.children.iter().position(|&x| x == child)?;
                return Some((p, k));
            }
            child = p;
            cur = self.rscs[p].parent;
        }
        None
    }

    fn clone_active_nodes(&self, clone_idx: usize) -> Vec<usize> {
        let base = &self.rscs[clone_idx].base;
        let c = self.cib.resources.iter().find_map(|r| match r {
            Resource::Clone(c) if &c.id == base => Some(c),
            _ => None,
        });
        c.map(|c| self.active_nodes_of_clone(&c.child))
            .unwrap_or_default()
    }

    pub fn top_of(&self, mut i: usize) -> usize {
        while let Some(p) = self.rscs[i].parent {
            i = p;
        }
        i
    }

    /// Sets -INFINITY on `node` for `i` and everything below it.
    pub fn ban(&mut self, i: usize, node: usize, reason: String) {
        self.rscs[i].allowed[node] = -INFINITY;
        self.rscs[i]
            .bans
            .entry(node)
            .or_default()
            .push(reason.clone());
        let kids = self.rscs[i].children().to_vec();
        for k in kids {
            self.ban(k, node, reason.clone());
        }
    }

    /// Adds a location score to `i` and its descendants. In a group only the first member gets
    /// the score (the others follow it through the group's colocations); the later members
    /// only become allowed on that node (score 0), as Pacemaker's group location does.
    fn add_location(&mut self, i: usize, node: usize, score: i32, why: &str) {
        let cur = self.rscs[i].allowed[node];
        let base = if cur == ABSENT { 0 } else { cur };
        self.rscs[i].allowed[node] = Score::new(i64::from(base))
            .add(Score::new(i64::from(score)))
            .value();
        if score < 0 {
            self.rscs[i]
                .bans
                .entry(node)
                .or_default()
                .push(format!("{why} ({})", Score::new(i64::from(score))));
        }
        let is_group = matches!(self.rscs[i].kind, Kind::Group { .. });
        let kids = self.rscs[i].children().to_vec();
        for (k, kid) in kids.into_iter().enumerate() {
            if is_group && k > 0 {
                if self.rscs[kid].allowed[node] == ABSENT {
                    self.rscs[kid].allowed[node] = 0;
                }
                continue;
            }
            self.add_location(kid, node, score, why);
        }
    }

    fn unpack_constraints(&mut self) {
        let cib = self.cib;
        for c in &cib.constraints {
            match c {
                Constraint::Location(l) => {
                    let Some(&ri) = self.by_id.get(&l.rsc) else {
                        continue;
                    };
                    let scores: Vec<(usize, i32)> = match &l.target {
                        LocationTarget::Node { node, score } => self
                            .node_index(node)
                            .map(|n| vec![(n, score.value())])
                            .unwrap_or_default(),
                        LocationTarget::Rules(rules) => {
                            let mut out = Vec::new();
                            for rule in rules {
                                for (ni, n) in self.nodes.iter().enumerate() {
                                    if let Some(s) = super::rules::rule_score(rule, &n.attrs) {
                                        out.push((ni, s.value()));
                                    }
                                }
                            }
                            out
                        }
                    };
                    let role = l.role.or(match &l.target {
                        LocationTarget::Rules(r) => r.iter().find_map(|x| x.role),
                        _ => None,
                    });
                    for (n, s) in scores {
                        match role {
                            Some(r @ (Role::Promoted | Role::Unpromoted)) => {
                                self.role_locations.push((ri, r, n, s))
                            }
                            _ => self.add_location(
                                ri,
                                n,
                                s,
                                &format!("location constraint '{}'", l.id),
                            ),
                        }
                    }
                }
                Constraint::Colocation(col) => {
                    let (Some(&d), Some(&p)) =
                        (self.by_id.get(&col.rsc), self.by_id.get(&col.with_rsc))
                    else {
                        continue;
                    };
                    if d == p {
                        continue;
                    }
                    let norm = |r: Option<Role>| {
                        r.filter(|r| matches!(r, Role::Promoted | Role::Unpromoted))
                    };
                    self.colocs.push(Coloc {
                        id: col.id.clone(),
                        dependent: d,
                        primary: p,
                        score: col.score.value(),
                        dependent_role: norm(col.rsc_role),
                        primary_role: norm(col.with_rsc_role),
                    });
                }
                Constraint::Order(o) => {
                    let (Some(&f), Some(&t)) = (self.by_id.get(&o.first), self.by_id.get(&o.then))
                    else {
                        continue;
                    };
                    if f == t {
                        continue;
                    }
                    self.orders.push(Ord_ {
                        id: o.id.clone(),
                        first: f,
                        first_action: o.first_action,
                        then: t,
                        then_action: o.then_action,
                        kind: o.kind,
                        symmetrical: o.is_symmetrical(),
                    });
                }
            }
        }
        // Colocation lists. A group keeps its own: they act through its first member (as
        // dependent) and last member (as primary) once its assignment starts (see
        // `effective_this_with`).
        for ci in 0..self.colocs.len() {
            let (d, p) = (self.colocs[ci].dependent, self.colocs[ci].primary);
            self.rscs[d].this_with.push(ci);
            self.rscs[p].with_this.push(ci);
        }
        // Pacemaker keeps each list sorted by the other resource: higher `priority` first,
        // then clones before groups before primitives, promotable clones first, then by id.
        let key = |s: &Self, other: usize| {
            let r = &s.rscs[other];
            let prio = s
                .index
                .get(r.base.as_str())
                .map_or(0, |x| s.cib.priority(x));
            let (variant, promotable) = match &r.kind {
                Kind::Primitive => (0, false),
                Kind::Group { .. } => (1, false),
                Kind::Clone(c) => (2, c.promotable),
            };
            (
                std::cmp::Reverse(prio),
                std::cmp::Reverse(variant),
                std::cmp::Reverse(promotable),
                r.id.clone(),
            )
        };
        for r in 0..self.rscs.len() {
            let mut tw = std::mem::take(&mut self.rscs[r].this_with);
            tw.sort_by_cached_key(|&c| key(self, self.colocs[c].primary));
            self.rscs[r].this_with = tw;
            let mut wt = std::mem::take(&mut self.rscs[r].with_this);
            wt.sort_by_cached_key(|&c| key(self, self.colocs[c].dependent));
            self.rscs[r].with_this = wt;
        }
    }

    /// Pacemaker's check of running resources against their definition (done for each node
    /// that can run resources, or is in maintenance): the operations since the last start are
    /// compared with what the configuration would run now ([`crate::digest`]).
    fn check_config_changes(&mut self) {
        let cib = self.cib;
        for i in 0..self.rscs.len() {
            let Some(p) = self.rscs[i].prim.clone() else {
                continue;
            };
            let Some(rref) = self.index.get(p.id.as_str()).copied() else {
                continue;
            };
            let rsc_maintenance = cib.in_maintenance(&rref);
            let mut changes = Vec::new();
            for (n, _) in self.rscs[i].current.clone() {
                let node = &self.nodes[n];
                if !node.online || !(node.available() || node.maintenance) {
                    continue;
                }
                let Some(ops) = self
                    .status
                    .history
                    .get(&p.id)
                    .and_then(|h| h.get(&node.name))
                else {
                    continue;
                };
                for c in definition_changes(cib, &p, ops, rsc_maintenance || node.maintenance) {
                    if !changes.contains(&(n, c)) {
                        changes.push((n, c));
                    }
                }
            }
            // A restart makes a reload pointless.
            let restarts: Vec<usize> = changes
                .iter()
                .filter(|(_, c)| *c == ConfigChange::Restart)
                .map(|(n, _)| *n)
                .collect();
            changes.retain(|(n, c)| *c != ConfigChange::Reload || !restarts.contains(n));
            // Pacemaker clears the fail count of a resource whose operation definition changed
            // where it runs (maintenance cancels are not a change of definition).
            let ft = cib.failure_timeout_s(&rref);
            let mut clears = Vec::new();
            for (n, c) in &changes {
                let redefined = !matches!(
                    c,
                    ConfigChange::Cancel {
                        maintenance: true,
                        ..
                    }
                );
                if redefined
                    && !clears.contains(&(*n, ConfigChange::ClearFailcount))
                    && self
                        .status
                        .fail_count(&self.nodes[*n].name, &p.id, self.now_s, ft)
                        > 0
                {
                    clears.push((*n, ConfigChange::ClearFailcount));
                }
            }
            changes.extend(clears);
            self.rscs[i].changes = changes;
        }
    }

    fn apply_stickiness_and_failures(&mut self) {
        let cib = self.cib;
        let symmetric = cib.symmetric_cluster();
        for i in 0..self.rscs.len() {
            if !self.rscs[i].is_primitive() {
                continue;
            }
            let r = &self.rscs[i];
            if r.managed && r.stickiness > 0 && r.current.len() == 1 {
                let n = r.current[0].0;
                if symmetric || r.allowed[n] != ABSENT {
                    let cur = r.allowed[n];
                    let base = if cur == ABSENT { 0 } else { cur };
                    self.rscs[i].allowed[n] = Score::new(i64::from(base))
                        .add(Score::new(i64::from(r.stickiness)))
                        .value();
                }
            }
            // migration-threshold: ban where the fail count reached it.
            let base = self.rscs[i].base.clone();
            let Some(rref) = self.index.get(base.as_str()).copied() else {
                continue;
            };
            let threshold = cib.migration_threshold(&rref);
            if threshold <= 0 {
                continue;
            }
            let ft = cib.failure_timeout_s(&rref);
            let in_clone = rref.clone_parent().is_some();
            for ni in 0..self.nodes.len() {
                let fc = self
                    .status
                    .fail_count(&self.nodes[ni].name, &base, self.now_s, ft);
                if fc > 0 && i64::from(fc) >= i64::from(threshold) {
                    let reason = format!(
                        "fail count {} reached migration-threshold {} on {}",
                        Score::new(i64::from(fc)),
                        Score::new(i64::from(threshold)),
                        self.nodes[ni].name
                    );
                    // Anonymous clone instances are interchangeable: ban the whole clone there.
                    let target = if in_clone { self.top_of(i) } else { i };
                    self.ban(target, ni, reason);
                }
            }
        }
    }
}

/// The definition changes in one resource's history on one node (see
/// [`Sched::check_config_changes`]): operations replayed by call id from the last start
/// (Pacemaker's `calculate_active_ops`), nothing when a stop came after it.
pub fn definition_changes(
    cib: &Cib,
    p: &Primitive,
    ops: &[crate::status::OpRecord],
    maintenance: bool,
) -> Vec<ConfigChange> {
    use crate::digest::{DigestVerdict, compare, for_op};
    use crate::status::OpStatus;
    // A cancelled monitor's records are gone in Pacemaker's history (the cancel deletes them);
    // here a cancel marker hides the records of that interval made before it.
    let cancelled_at = |iv: u64| {
        ops.iter()
            .filter(|o| o.status == OpStatus::Cancelled && o.interval_ms == iv)
            .map(|o| o.call_id)
            .max()
    };
    let mut sorted: Vec<&crate::status::OpRecord> = ops
        .iter()
        .filter(|o| !matches!(o.status, OpStatus::Cancelled | OpStatus::Pending))
        .filter(|o| o.interval_ms == 0 || cancelled_at(o.interval_ms).is_none_or(|c| o.call_id > c))
        .collect();
    sorted.sort_by_key(|o| o.call_id);
    let (mut start, mut stop, mut implied_monitor, mut implied_clone) = (None, None, None, None);
    for (k, o) in sorted.iter().enumerate() {
        match o.op.as_str() {
            "stop" if o.status == OpStatus::Done => stop = Some(k),
            "start" => start = Some(k),
            "monitor" if implied_monitor <= stop && matches!(o.rc, 0 | 8) => {
                implied_monitor = Some(k)
            }
            "promote" | "demote" => implied_clone = Some(k),
            _ => {}
        }
    }
    let start = start.or(implied_clone).or(implied_monitor);
    if start < stop {
        return Vec::new();
    }
    let mut out = Vec::new();
    for o in sorted.iter().skip(start.unwrap_or(0)) {
        if o.interval_ms > 0 {
            let configured = p.ops.iter().any(|c| {
                c.name == o.op
                    && c.interval_ms == o.interval_ms
                    && c.extra
                        .get("enabled")
                        .is_none_or(|v| crate::cib::is_true(v))
            });
            let change = if maintenance || !configured {
                Some(ConfigChange::Cancel {
                    interval_ms: o.interval_ms,
                    maintenance,
                })
            } else {
                let now = for_op(cib, p, &o.op, o.interval_ms);
                (compare(o, &now) != DigestVerdict::Match)
                    .then_some(ConfigChange::Reschedule(o.interval_ms))
            };
            out.extend(change);
        } else if matches!(o.op.as_str(), "monitor" | "start" | "promote") {
            let now = for_op(cib, p, &o.op, 0);
            match compare(o, &now) {
                DigestVerdict::Match => {}
                DigestVerdict::Restart => out.push(ConfigChange::Restart),
                DigestVerdict::Changed | DigestVerdict::Unknown => {
                    out.push(if o.reload.is_some() {
                        ConfigChange::Reload
                    } else {
                        ConfigChange::Restart
                    })
                }
            }
        }
    }
    out
}

fn active_and<'x>(
    a: &'x [(usize, DerivedState)],
    b: &'x [(usize, DerivedState)],
) -> Vec<(usize, DerivedState)> {
    a.iter().chain(b.iter()).cloned().collect()
}

fn failure_text(d: &DerivedState) -> String {
    match &d.last_failure {
        Some(o) => format!(
            "{} returned {} ({})",
            o.op,
            o.rc,
            crate::status::rc::name(o.rc)
        ),
        None => "failure".into(),
    }
}

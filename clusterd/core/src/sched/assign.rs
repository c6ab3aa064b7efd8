//! Placement: which node each resource (clone instances separately) runs on, and in which role.
//!
//! This follows Pacemaker's assignment algorithm (Pacemaker Explained, "Resource Placement",
//! and the behaviour `crm_simulate` shows), step by step:
//! 1. Top-level resources are assigned in order of `priority`, then of their score on the node
//!    where they run now, then of their best score on any node (a stable sort: ties keep
//!    configuration order).
//! 2. Assigning a resource first assigns every resource it is colocated *with* (its
//!    primaries), and applies those colocations to its node scores: INFINITY leaves only the
//!    primary's node, -INFINITY forbids it, finite scores add; an optional colocation that
//!    would leave no node is rolled back.
//! 3. Then the scores of resources colocated with *it* (its dependents) are merged in, scaled
//!    by `score / INFINITY` and recursively along their own dependents, rolled back if they
//!    would leave no node — so a group moves as a whole and a dependent pulls its primary.
//! 4. The node with the highest score wins; ties go to the node with fewer resources, then to
//!    the node where the resource already runs, then to the lowest node name. A node with a
//!    negative score, offline, in standby or in maintenance is never chosen.
//! 5. Clones place instances where they already run first (at most `clone-max / nodes` per
//!    node in that pass), then the others, never more than `clone-node-max` per node.
//!    Promotable clones then promote the instances with the highest promotion score
//!    (`master-RSC` node attribute, `role=Promoted` locations, colocations with the Promoted
//!    role), at most `promoted-max` in all and `promoted-node-max` per node; an instance with no
//!    promotion score at all is never promoted.

// Node-indexed score tables read best with explicit node indices.
#![allow(clippy::needless_range_loop)]

use super::model::*;
use crate::cib::Role;
use crate::score::{INFINITY, Score};
use std::cmp::Ordering;

fn add(a: i32, b: i32) -> i32 {
    Score::new(i64::from(a))
        .add(Score::new(i64::from(b)))
        .value()
}

impl Sched<'_> {
    pub fn available(&self, n: usize) -> bool {
        self.nodes[n].available()
    }

    /// Is there a node with a non-negative score that can run resources?
    pub fn any_available(&self, work: &[i32]) -> bool {
        work.iter()
            .enumerate()
            .any(|(n, &w)| w != ABSENT && w >= 0 && self.available(n))
    }

    /// Nodes of a weight table in Pacemaker's preference order (absent nodes left out).
    pub fn sorted_nodes(&self, weights: &[i32], preferred: Option<usize>) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| weights[n] != ABSENT)
            .collect();
        let score = |n: usize| {
            if self.available(n) {
                weights[n]
            } else {
                -INFINITY
            }
        };
        v.sort_by(|&a, &b| {
            score(b)
                .cmp(&score(a))
                .then(
                    self.nodes[a]
                        .num_resources
                        .cmp(&self.nodes[b].num_resources),
                )
                .then_with(|| match preferred {
                    Some(p) if p == a => Ordering::Less,
                    Some(p) if p == b => Ordering::Greater,
                    _ => Ordering::Equal,
                })
                // Nodes are indexed in name order: the index comparison is the name comparison.
                .then(a.cmp(&b))
        });
        v
    }

    /// The colocations a resource takes part in as dependent, including those it inherits
    /// as the first member of a group or as a clone instance.
    pub fn effective_this_with(&self, i: usize) -> Vec<usize> {
        let mut out = self.rscs[i].this_with.clone();
        if let Some(p) = self.rscs[i].parent {
            match &self.rscs[p].kind {
                // A group's own colocations move to its first member (as dependent) and last
                // member (as primary) when the group's assignment starts, as in Pacemaker;
                // merges done before that do not see them through the members.
                Kind::Group { children }
                    if children.first() == Some(&i) && self.group_started(p) =>
                {
                    out.extend(self.effective_this_with(p))
                }
                Kind::Clone(_) => {
                    // Pacemaker inserts the clone's colocations into the instance's (sorted)
                    // list; an instance has none of its own, so the clone's order stands.
                    let all = self.all_coloc(p);
                    let mut inherited: Vec<usize> = self.rscs[p]
                        .this_with
                        .iter()
                        .copied()
                        .filter(|&c| {
                            let s = self.colocs[c].score;
                            all || !(0..INFINITY).contains(&s)
                        })
                        .collect();
                    inherited.extend(out);
                    out = inherited;
                }
                _ => {}
            }
        }
        out
    }

    /// The colocations a resource takes part in as primary, including inherited ones.
    pub fn effective_with_this(&self, i: usize) -> Vec<usize> {
        let mut out = self.rscs[i].with_this.clone();
        if let Some(p) = self.rscs[i].parent {
            match &self.rscs[p].kind {
                Kind::Group { children }
                    if children.last() == Some(&i) && self.group_started(p) =>
                {
                    out.extend(self.effective_with_this(p))
                }
                Kind::Clone(_) => {
                    let all = self.all_coloc(p);
                    let mut inherited: Vec<usize> = self.rscs[p]
                        .with_this
                        .iter()
                        .copied()
                        .filter(|&c| all || self.colocs[c].score < 0)
                        .collect();
                    inherited.extend(out);
                    out = inherited;
                }
                _ => {}
            }
        }
        out
    }

    /// Has the group's assignment begun (so its colocations act through its members)?
    fn group_started(&self, g: usize) -> bool {
        self.rscs[g].allocating || !self.rscs[g].provisional
    }

    /// Fewer instances than available nodes: every dependent preference matters.
    fn all_coloc(&self, clone: usize) -> bool {
        let Kind::Clone(info) = &self.rscs[clone].kind else {
            return false;
        };
        let avail = (0..self.nodes.len())
            .filter(|&n| self.available(n) && self.rscs[clone].allowed[n] != ABSENT)
            .count();
        (info.clone_max as usize) < avail
    }

    /// Pacemaker's add_node_scores_matching_attr (node attribute `#uname`).
    fn add_matching(&self, work: &mut [i32], rsc: usize, factor: f64, only_positive: bool) {
        for n in 0..work.len() {
            if work[n] == ABSENT {
                continue;
            }
            let own = self.rscs[rsc].allowed[n];
            let score = if own == ABSENT || !self.available(n) {
                -INFINITY
            } else {
                own
            };
            if factor < 0.0 && score < 0 {
                continue;
            }
            if work[n] == UNUSABLE {
                continue;
            }
            let wf = factor * f64::from(score);
            #[allow(clippy::cast_possible_truncation)]
            let mut w = if wf < 0.0 {
                (wf - 0.5) as i64
            } else {
                (wf + 0.5) as i64
            };
            if w == 0 && score != 0 {
                w = if factor > 0.0 {
                    1
                } else if factor < 0.0 {
                    -1
                } else {
                    0
                };
            }
            let new = Score::new(w).add(Score::new(i64::from(work[n]))).value();
            if only_positive && new < 0 && work[n] > 0 {
                work[n] = UNUSABLE;
                continue;
            }
            if only_positive && new < 0 && work[n] == 0 {
                continue;
            }
            work[n] = new;
        }
    }

    /// Pacemaker's add_colocated_node_scores: merges `rsc`'s scores (scaled by `factor`) into
    /// `nodes` and recurses along its colocations (`this_with`: towards primaries, else towards
    /// dependents). `rollback`: return `nodes` unchanged if the result leaves no node.
    pub fn merge_scores(
        &mut self,
        rsc: usize,
        nodes: Option<&[i32]>,
        factor: f64,
        this_with: bool,
        rollback: bool,
        positive: bool,
    ) -> Vec<i32> {
        if self.rscs[rsc].merging {
            return nodes.map_or_else(|| self.rscs[rsc].allowed.clone(), <[i32]>::to_vec);
        }
        self.rscs[rsc].merging = true;
        let mut work = match nodes {
            None => self.rscs[rsc].allowed.clone(),
            Some(n) => {
                let mut w = n.to_vec();
                self.add_matching(&mut w, rsc, factor, positive);
                w
            }
        };
        if self.any_available(&work) {
            let list = if this_with {
                self.effective_this_with(rsc)
            } else {
                self.effective_with_this(rsc)
            };
            for c in list {
                let col = self.colocs[c].clone();
                let other = if this_with {
                    col.primary
                } else {
                    col.dependent
                };
                // Pacemaker 2.1.5 scales each hop by the sign of the factor so far, not by the
                // product of factors.
                let sign = if factor < 0.0 { -1.0 } else { 1.0 };
                let f = sign * f64::from(col.score) / f64::from(INFINITY);
                let other = self.merge_target(other);
                work = self.merge_scores(other, Some(&work), f, this_with, true, positive);
            }
        } else if rollback && nodes.is_some() {
            self.rscs[rsc].merging = false;
            return nodes.expect("checked").to_vec();
        }
        if positive {
            for w in work.iter_mut() {
                if *w == UNUSABLE {
                    *w = 1;
                }
            }
        }
        self.rscs[rsc].merging = false;
        work
    }

    /// A group merges through its first member (which reaches the others along the group's
    /// internal colocations).
    fn merge_target(&self, r: usize) -> usize {
        match &self.rscs[r].kind {
            Kind::Group { children } => children[0],
            _ => r,
        }
    }

    /// Assigns a resource (and what it depends on) to a node; returns the node.
    pub fn assign(&mut self, i: usize, prefer: Option<usize>) -> Option<usize> {
        if let Some(p) = self.rscs[i].parent
            && !self.rscs[p].allocating
            && self.rscs[p].provisional
        {
            self.assign(p, prefer);
        }
        match self.rscs[i].kind.clone() {
            Kind::Primitive => self.assign_primitive(i, prefer),
            Kind::Group { children } => {
                if !self.rscs[i].provisional {
                    return self.rscs[i].assigned;
                }
                if self.rscs[i].allocating {
                    return None;
                }
                self.rscs[i].allocating = true;
                let mut first = None;
                for (k, c) in children.iter().enumerate() {
                    let n = self.assign(*c, prefer);
                    if k == 0 {
                        first = n;
                    }
                }
                self.rscs[i].assigned = first;
                self.rscs[i].next_role = if first.is_some() {
                    Role::Started
                } else {
                    Role::Stopped
                };
                self.rscs[i].provisional = false;
                self.rscs[i].allocating = false;
                first
            }
            Kind::Clone(_) => {
                self.assign_clone(i);
                None
            }
        }
    }

    fn assign_primitive(&mut self, i: usize, prefer: Option<usize>) -> Option<usize> {
        if !self.rscs[i].provisional {
            return self.rscs[i].assigned;
        }
        if self.rscs[i].allocating {
            return None;
        }
        self.rscs[i].allocating = true;
        for c in self.effective_this_with(i) {
            let col = self.colocs[c].clone();
            let archive = (col.dependent_role == Some(Role::Promoted)
                || (col.score < 0 && col.score > -INFINITY))
                .then(|| self.rscs[i].allowed.clone());
            self.assign(col.primary, None);
            self.apply_colocation(i, &col);
            if let Some(a) = archive
                && !self.any_available(&self.rscs[i].allowed)
            {
                self.rscs[i].allowed = a;
            }
        }
        for c in self.effective_with_this(i) {
            let col = self.colocs[c].clone();
            let dep = self.merge_target(col.dependent);
            let current = self.rscs[i].allowed.clone();
            self.rscs[i].allowed = self.merge_scores(
                dep,
                Some(&current),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                true,
                false,
            );
        }
        let r = &self.rscs[i];
        let stopped_by_target = r.target_role == Role::Stopped;
        if stopped_by_target {
            for n in 0..self.nodes.len() {
                self.rscs[i].allowed[n] = -INFINITY;
            }
        }
        let r = &self.rscs[i];
        if !r.managed || self.stonith_blocks || (self.quorum_freeze && !r.current.is_empty()) {
            // Unmanaged: stays wherever it is.
            let n = r.current_node();
            self.set_assigned(i, n);
        } else if self.quorum_freeze
            || self.quorum_stop
            || self.cib.stop_all_resources()
            || r.orphan
        {
            self.set_assigned(i, None);
        } else {
            let n = self.choose_node(i, prefer);
            self.set_assigned(i, n);
        }
        self.rscs[i].allocating = false;
        self.rscs[i].assigned
    }

    fn set_assigned(&mut self, i: usize, n: Option<usize>) {
        self.rscs[i].assigned = n;
        self.rscs[i].provisional = false;
        self.rscs[i].next_role = if n.is_some() {
            Role::Started
        } else {
            Role::Stopped
        };
        if let Some(n) = n {
            self.nodes[n].num_resources += 1;
        }
    }

    fn unassign(&mut self, i: usize) {
        if let Some(n) = self.rscs[i].assigned.take() {
            self.nodes[n].num_resources = self.nodes[n].num_resources.saturating_sub(1);
        }
        self.rscs[i].provisional = true;
        self.rscs[i].next_role = Role::Stopped;
        for k in self.rscs[i].children().to_vec() {
            self.unassign(k);
        }
    }

    /// Pacemaker's native_choose_node.
    fn choose_node(&self, i: usize, prefer: Option<usize>) -> Option<usize> {
        let r = &self.rscs[i];
        let current = r.current_node();
        let sorted = self.sorted_nodes(&r.allowed, current);
        let best = *sorted.first()?;
        let w = |n: usize| r.allowed[n];
        let usable = |n: usize| self.available(n) && w(n) >= 0 && w(n) != ABSENT;
        if let Some(p) = prefer
            && r.allowed[p] != ABSENT
            && w(p) >= w(best)
            && usable(p)
        {
            return Some(p);
        }
        let mut chosen = best;
        let in_unique_clone = false;
        if !in_unique_clone
            && w(chosen) > 0
            && self.available(chosen)
            && let Some(run) = current
            && usable(run)
        {
            for &n in &sorted[1..] {
                if w(n) != w(chosen) {
                    break;
                }
                if n == run {
                    chosen = n;
                }
            }
        }
        usable(chosen).then_some(chosen)
    }

    /// Applies colocation `col` to dependent `d` (whose primary is assigned already).
    pub fn apply_colocation(&mut self, d: usize, col: &Coloc) {
        let p = col.primary;
        match self.rscs[p].kind.clone() {
            Kind::Primitive => self.apply_with_primitive(d, p, col),
            Kind::Group { children } => {
                let member = if col.score >= INFINITY {
                    *children.last().expect("group")
                } else {
                    children[0]
                };
                self.apply_with_primitive(d, member, col)
            }
            Kind::Clone(info) => {
                if !self.rscs[d].provisional {
                    return;
                }
                if let (true, Some(role)) = (info.promotable, col.primary_role) {
                    let mut affected = Vec::new();
                    for &k in &info.children {
                        if let Some(n) = self.rscs[k].assigned
                            && self.rscs[k].next_role == role
                        {
                            if col.score < INFINITY {
                                let cur = self.rscs[d].allowed[n];
                                if cur != ABSENT {
                                    self.rscs[d].allowed[n] = add(cur, col.score);
                                }
                            }
                            affected.push(n);
                        }
                    }
                    if col.dependent_role != Some(Role::Promoted) && col.score >= INFINITY {
                        self.exclude_except(
                            d,
                            &affected,
                            &format!(
                                "colocated with the {} instance of {}",
                                role, self.rscs[p].id
                            ),
                        );
                    }
                    return;
                }
                if col.score >= INFINITY {
                    let nodes: Vec<usize> = info
                        .children
                        .iter()
                        .filter_map(|&k| self.rscs[k].assigned.filter(|_| !self.rscs[k].blocked()))
                        .collect();
                    self.exclude_except(
                        d,
                        &nodes,
                        &format!("colocated (INFINITY) with clone {}", self.rscs[p].id),
                    );
                    return;
                }
                for &k in &info.children {
                    let target = self.merge_target(k);
                    let target = match &self.rscs[k].kind {
                        Kind::Group { children } => *children.last().unwrap_or(&target),
                        _ => target,
                    };
                    self.apply_with_primitive(d, target, col);
                }
            }
        }
    }

    fn exclude_except(&mut self, d: usize, keep: &[usize], why: &str) {
        for n in 0..self.nodes.len() {
            if !keep.contains(&n) && self.rscs[d].allowed[n] != ABSENT {
                if self.rscs[d].allowed[n] > -INFINITY {
                    self.rscs[d]
                        .bans
                        .entry(n)
                        .or_default()
                        .push(why.to_string());
                }
                self.rscs[d].allowed[n] = -INFINITY;
            }
        }
    }

    fn apply_with_primitive(&mut self, d: usize, p: usize, col: &Coloc) {
        if self.rscs[p].provisional {
            return;
        }
        if !self.rscs[d].provisional {
            return;
        }
        // Role filters only limit positive colocations (Pacemaker 2.1.5's
        // filter_colocation_constraint): a negative one keeps the dependent away whatever the
        // roles. A positive role-limited dependent is decided at promotion time.
        if col.score > 0 {
            if col.dependent_role.is_some() && col.dependent_role != Some(self.rscs[d].next_role) {
                return;
            }
            if col
                .primary_role
                .is_some_and(|role| role != self.rscs[p].next_role)
            {
                return;
            }
        }
        let mut work = self.rscs[d].allowed.clone();
        let primary_node = self.rscs[p].assigned;
        let mut reasons = Vec::new();
        for n in 0..work.len() {
            if work[n] == ABSENT {
                continue;
            }
            match primary_node {
                None => {
                    if col.score < 0 {
                        continue;
                    }
                    let before = work[n];
                    work[n] = add(-col.score, work[n]);
                    if work[n] == -INFINITY && before > -INFINITY {
                        reasons.push((
                            n,
                            format!(
                                "colocated with {} which is not running (colocation '{}')",
                                self.rscs[p].id, col.id
                            ),
                        ));
                    }
                }
                Some(pn) if pn == n => {
                    if col.score < INFINITY {
                        let before = work[n];
                        work[n] = add(col.score, work[n]);
                        if work[n] == -INFINITY && before > -INFINITY {
                            reasons.push((
                                n,
                                format!(
                                    "must not run with {} (colocation '{}', {})",
                                    self.rscs[p].id,
                                    col.id,
                                    Score::new(i64::from(col.score))
                                ),
                            ));
                        }
                    }
                }
                Some(pn) => {
                    if col.score >= INFINITY {
                        if work[n] > -INFINITY {
                            reasons.push((
                                n,
                                format!(
                                    "must run with {} which runs on {} (colocation '{}')",
                                    self.rscs[p].id, self.nodes[pn].name, col.id
                                ),
                            ));
                        }
                        work[n] = -INFINITY;
                    }
                }
            }
        }
        if col.score <= -INFINITY || col.score >= INFINITY || self.any_available(&work) {
            self.rscs[d].allowed = work;
            for (n, r) in reasons {
                self.rscs[d].bans.entry(n).or_default().push(r);
            }
        }
    }

    fn assign_clone(&mut self, ci: usize) {
        if !self.rscs[ci].provisional || self.rscs[ci].allocating {
            return;
        }
        self.rscs[ci].allocating = true;
        let Kind::Clone(info) = self.rscs[ci].kind.clone() else {
            unreachable!("clone")
        };
        for c in self.rscs[ci].this_with.clone() {
            let p = self.colocs[c].primary;
            self.assign(p, None);
        }
        for c in self.rscs[ci].with_this.clone() {
            let col = self.colocs[c].clone();
            let dep = self.merge_target(col.dependent);
            let cur = self.rscs[ci].allowed.clone();
            self.rscs[ci].allowed = self.merge_scores(
                dep,
                Some(&cur),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                true,
                true,
            );
        }
        let available_nodes = (0..self.nodes.len())
            .filter(|&n| self.available(n) && self.rscs[ci].allowed[n] != ABSENT)
            .count();
        let max = info.clone_max as usize;
        let loop_max =
            u32::try_from(max.checked_div(available_nodes).unwrap_or(1).max(1)).unwrap_or(u32::MAX);
        let mut count = vec![0u32; self.nodes.len()];
        let mut allocated = 0usize;
        // Instances running now come first (they keep their node if it is still good).
        let mut order: Vec<usize> = info.children.clone();
        self.sort_instances(ci, &mut order);
        for &k in &order {
            if allocated >= max {
                break;
            }
            let Some(cn) = self.instance_current(k) else {
                continue;
            };
            if !self.rscs[k].provisional || self.instance_failed(k) || self.rscs[k].orphan {
                continue;
            }
            if !self.available(cn) || count[cn] >= loop_max {
                continue;
            }
            if self.assign_instance(ci, k, Some(cn), info.clone_node_max, &mut count) {
                allocated += 1;
            }
        }
        for &k in &order {
            if !self.rscs[k].provisional {
                continue;
            }
            if allocated >= max || self.rscs[k].orphan {
                self.stop_subtree(k);
                continue;
            }
            if self.assign_instance(ci, k, None, info.clone_node_max, &mut count) {
                allocated += 1;
            }
        }
        if info.promotable {
            self.set_promotable_roles(ci, &info);
        }
        self.rscs[ci].provisional = false;
        self.rscs[ci].allocating = false;
        self.rscs[ci].next_role = if allocated > 0 {
            Role::Started
        } else {
            Role::Stopped
        };
    }

    fn stop_subtree(&mut self, k: usize) {
        for n in 0..self.nodes.len() {
            self.rscs[k].allowed[n] = -INFINITY;
        }
        for c in self.rscs[k].children().to_vec() {
            self.stop_subtree(c);
        }
        if self.rscs[k].provisional {
            self.rscs[k].assigned = None;
            self.rscs[k].provisional = false;
            self.rscs[k].next_role = Role::Stopped;
        }
    }

    /// Pacemaker's instance order (pcmk__cmp_instance), a stable sort from instance number
    /// order: not active on a node it may no longer use; higher priority (for promotable clones,
    /// the best promotion score that applies to it); active before inactive; current node
    /// available; clone allowed there; not failed; higher colocation score on its current
    /// node; lower instance number.
    fn sort_instances(&mut self, ci: usize, order: &mut [usize]) {
        // (disallowed, -priority, inactive, node unavailable, clone not allowed, failed, -colocation)
        type Key = (bool, i32, bool, bool, bool, bool, i32);
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for &k in order.iter() {
            let cur = self.instance_current(k);
            let lead = self.primitives_under(k).first().copied().unwrap_or(k);
            let disallowed = cur.is_some_and(|n| {
                let w = self.rscs[lead].allowed[n];
                w == ABSENT || w < 0
            });
            let prio = self.instance_priority(ci, k);
            let (avail, parent_ok, colo) = match cur {
                Some(n) if !disallowed => (
                    self.available(n),
                    self.rscs[ci].allowed[n] != ABSENT,
                    self.colocation_score_at(ci, n),
                ),
                _ => (false, false, 0),
            };
            let active = cur.is_some() && !disallowed;
            keys.push((
                k,
                (
                    disallowed,
                    -prio,
                    !active,
                    !avail,
                    !parent_ok,
                    self.instance_failed(k),
                    -colo,
                ),
            ));
        }
        order.sort_by(|&a, &b| {
            let ka = &keys.iter().find(|(x, _)| *x == a).expect("keyed").1;
            let kb = &keys.iter().find(|(x, _)| *x == b).expect("keyed").1;
            // Two inactive instances compare equal from the activity test on.
            if ka.0 == kb.0 && ka.1 == kb.1 && ka.2 && kb.2 {
                return Ordering::Equal;
            }
            ka.cmp(kb)
        });
    }

    /// An instance's priority for ordering: the resource's `priority`, raised to its best
    /// applicable promotion score for promotable clones (Pacemaker's add_promotion_scores).
    fn instance_priority(&self, ci: usize, k: usize) -> i32 {
        let base = self
            .index
            .get(self.rscs[ci].base.as_str())
            .map_or(0, |r| self.cib.priority(r));
        let Kind::Clone(info) = &self.rscs[ci].kind else {
            return base;
        };
        if !info.promotable {
            return base;
        }
        (0..self.nodes.len())
            .filter(|&n| self.available(n))
            .filter_map(|n| self.promotion_score(k, n))
            .fold(base, i32::max)
    }

    /// The cumulative colocation score of the clone's colocations on node `n` (Pacemaker's
    /// cmp_instance_by_colocation): the primaries' scores (and their dependents'), then the
    /// dependents' non-negative scores, on a table holding only `n`.
    fn colocation_score_at(&mut self, ci: usize, n: usize) -> i32 {
        let mut work = vec![ABSENT; self.nodes.len()];
        work[n] = 0;
        for c in self.rscs[ci].this_with.clone() {
            let col = self.colocs[c].clone();
            let other = self.merge_target(col.primary);
            work = self.merge_scores(
                other,
                Some(&work),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                false,
                false,
            );
        }
        for c in self.rscs[ci].with_this.clone() {
            let col = self.colocs[c].clone();
            let other = self.merge_target(col.dependent);
            work = self.merge_scores(
                other,
                Some(&work),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                false,
                true,
            );
        }
        work[n]
    }

    /// Where an instance (primitive or group) runs now.
    pub fn instance_current(&self, k: usize) -> Option<usize> {
        match &self.rscs[k].kind {
            Kind::Primitive => self.rscs[k].current_node(),
            Kind::Group { children } => children.iter().find_map(|&c| self.rscs[c].current_node()),
            Kind::Clone(_) => None,
        }
    }

    fn instance_failed(&self, k: usize) -> bool {
        match &self.rscs[k].kind {
            Kind::Primitive => self.rscs[k].failed(),
            Kind::Group { children } => children.iter().any(|&c| self.rscs[c].failed()),
            Kind::Clone(_) => false,
        }
    }

    fn snapshot(&self, k: usize, out: &mut Vec<(usize, Vec<i32>)>) {
        out.push((k, self.rscs[k].allowed.clone()));
        for &c in self.rscs[k].children() {
            self.snapshot(c, out);
        }
    }

    fn ban_node_subtree(&mut self, k: usize, n: usize) {
        self.rscs[k].allowed[n] = -INFINITY;
        for c in self.rscs[k].children().to_vec() {
            self.ban_node_subtree(c, n);
        }
    }

    fn assign_instance(
        &mut self,
        ci: usize,
        k: usize,
        prefer: Option<usize>,
        limit: u32,
        count: &mut [u32],
    ) -> bool {
        if !self.rscs[k].provisional {
            return self.rscs[k].assigned.is_some();
        }
        if self.rscs[k].allocating {
            return false;
        }
        if let Some(p) = prefer {
            let w = self.rscs[k].allowed[p];
            if w == ABSENT || w < 0 {
                return false;
            }
        }
        for n in 0..self.nodes.len() {
            let parent_w = self.rscs[ci].allowed[n];
            let ok = self.available(n) && parent_w != ABSENT && parent_w >= 0 && count[n] < limit;
            if !ok && self.rscs[k].allowed[n] != ABSENT {
                self.ban_node_subtree(k, n);
            }
        }
        let mut backup = Vec::new();
        self.snapshot(k, &mut backup);
        let chosen = self.assign(k, prefer);
        if let (Some(c), Some(p)) = (chosen, prefer)
            && c != p
        {
            self.unassign(k);
            for (r, a) in backup {
                self.rscs[r].allowed = a;
            }
            return false;
        }
        if let Some(c) = chosen {
            count[c] += 1;
        }
        chosen.is_some()
    }

    /// The promotion score of an instance on a node: `master-BASE` attributes (summed over a
    /// group's members), or `None` when no member has one.
    fn promotion_score(&self, k: usize, n: usize) -> Option<i32> {
        match &self.rscs[k].kind {
            Kind::Primitive => self.primitive_promotion_score(k, n),
            Kind::Group { children } => {
                let scores: Vec<i32> = children
                    .iter()
                    .filter_map(|&c| self.primitive_promotion_score(c, n))
                    .collect();
                if scores.is_empty() {
                    None
                } else {
                    Some(scores.into_iter().fold(0, add))
                }
            }
            Kind::Clone(_) => None,
        }
    }

    fn set_promotable_roles(&mut self, ci: usize, info: &CloneInfo) {
        let clone_base = self.rscs[ci].base.clone();
        let child_base: Vec<String> = info
            .children
            .first()
            .map(|&k| vec![self.rscs[k].base.clone()])
            .unwrap_or_default();
        let no_promote = matches!(self.rscs[ci].target_role, Role::Unpromoted | Role::Stopped)
            || (!self.status.has_quorum
                && self.cib.no_quorum_policy() == crate::cib::NoQuorumPolicy::Demote);
        for &k in &info.children {
            let Some(n) = self.rscs[k].assigned else {
                self.rscs[k].priority = -INFINITY;
                continue;
            };
            let mut prio = self.promotion_score(k, n).unwrap_or(-1);
            for &(r, role, node, s) in &self.role_locations {
                let rb = &self.rscs[r].base;
                if role == Role::Promoted
                    && node == n
                    && (rb == &clone_base || child_base.contains(rb))
                {
                    prio = add(prio, s);
                }
            }
            for c in self.effective_this_with(k) {
                let col = self.colocs[c].clone();
                if col.dependent_role.is_none() {
                    continue;
                }
                let p = col.primary;
                let pnode = match &self.rscs[p].kind {
                    Kind::Clone(_) => None,
                    _ => self.rscs[p].assigned,
                };
                let Some(pn) = pnode else { continue };
                if pn != n {
                    if col.score >= INFINITY && col.dependent_role == Some(Role::Promoted) {
                        prio = -INFINITY;
                    }
                    continue;
                }
                if let Some(role) = col.primary_role
                    && role != self.rscs[p].next_role
                {
                    continue;
                }
                let mult = if col.dependent_role == Some(Role::Unpromoted) {
                    -1
                } else {
                    1
                };
                prio = add(mult * col.score, prio);
            }
            self.rscs[k].priority = prio;
        }
        let mut weights = self.rscs[ci].allowed.clone();
        for &k in &info.children {
            if let Some(n) = self.rscs[k].assigned
                && self.rscs[k].priority >= 0
                && weights[n] != ABSENT
            {
                weights[n] = add(self.rscs[k].priority, weights[n]);
            }
        }
        // The clone is "merging" while its own colocations feed back into it.
        self.rscs[ci].merging = true;
        // "Promoted clone with X": X's node scores (and its dependents') count for promotion.
        for c in self.rscs[ci].this_with.clone() {
            let col = self.colocs[c].clone();
            if col.dependent_role != Some(Role::Promoted) {
                continue;
            }
            let primary = self.merge_target(col.primary);
            weights = self.merge_scores(
                primary,
                Some(&weights),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                col.score < INFINITY,
                false,
            );
        }
        // "X with the Promoted clone": X's preferences pull the promotion.
        for c in self.rscs[ci].with_this.clone() {
            let col = self.colocs[c].clone();
            if col.primary_role != Some(Role::Promoted) {
                continue;
            }
            let dep = self.merge_target(col.dependent);
            weights = self.merge_scores(
                dep,
                Some(&weights),
                f64::from(col.score) / f64::from(INFINITY),
                false,
                true,
                true,
            );
        }
        self.rscs[ci].merging = false;
        // Pacemaker 2.1.5 (sort_promotable_instances) does this on the clone's own node
        // scores: they keep the promotion priorities from now on, so a resource that merges
        // the clone's scores later (through a colocation chain) sees them — e.g. a resource
        // kept off the Promoted instance's node also leans away from the likely next ones.
        self.rscs[ci].allowed = weights.clone();
        for &k in &info.children {
            let currently_promoted = self.instance_role_now(k) == Role::Promoted;
            if !self.rscs[k].managed && currently_promoted {
                self.rscs[k].sort_priority = INFINITY;
            } else if let Some(n) = self.rscs[k].assigned.filter(|_| self.rscs[k].priority >= 0) {
                self.rscs[k].sort_priority = if weights[n] == ABSENT {
                    self.rscs[k].priority
                } else {
                    weights[n]
                };
            } else {
                self.rscs[k].sort_priority = self.rscs[k].priority;
            }
        }
        let mut order = info.children.clone();
        // By promotion priority, then current role, then the instance order (Pacemaker's
        // cmp_promotable_instance).
        self.sort_instances(ci, &mut order);
        let rank: Vec<(usize, usize)> = order.iter().enumerate().map(|(r, &k)| (k, r)).collect();
        let rank_of = |k: usize| {
            rank.iter()
                .find(|(x, _)| *x == k)
                .map_or(usize::MAX, |(_, r)| *r)
        };
        let role_rank = |k: usize| match self.instance_role_now(k) {
            Role::Promoted => 2,
            Role::Unpromoted | Role::Started => 1,
            Role::Stopped => 0,
        };
        order.sort_by(|&a, &b| {
            self.rscs[b]
                .sort_priority
                .cmp(&self.rscs[a].sort_priority)
                .then(role_rank(b).cmp(&role_rank(a)))
                .then(rank_of(a).cmp(&rank_of(b)))
        });
        let mut promoted = 0u32;
        let mut per_node = vec![0u32; self.nodes.len()];
        for k in order {
            let Some(n) = self.rscs[k].assigned else {
                continue;
            };
            let unmanaged =
                !self.rscs[k].managed || self.stonith_blocks || self.subtree_unmanaged(k);
            let role = if unmanaged {
                match self.instance_role_now(k) {
                    Role::Promoted => Role::Promoted,
                    _ => Role::Unpromoted,
                }
            } else if no_promote
                || self.rscs[k].sort_priority < 0
                || self.rscs[k].priority < 0
                || promoted >= info.promoted_max
                || per_node[n] >= info.promoted_node_max
            {
                Role::Unpromoted
            } else {
                Role::Promoted
            };
            if role == Role::Promoted {
                promoted += 1;
                per_node[n] += 1;
            }
            self.set_role_subtree(k, role);
        }
    }

    fn subtree_unmanaged(&self, k: usize) -> bool {
        !self.rscs[k].managed
            || self.rscs[k]
                .children()
                .iter()
                .any(|&c| self.subtree_unmanaged(c))
    }

    pub fn instance_role_now(&self, k: usize) -> Role {
        match &self.rscs[k].kind {
            Kind::Primitive => self.rscs[k].current_role(),
            Kind::Group { children } => children
                .first()
                .map_or(Role::Stopped, |&c| self.rscs[c].current_role()),
            Kind::Clone(_) => Role::Stopped,
        }
    }

    fn set_role_subtree(&mut self, k: usize, role: Role) {
        self.rscs[k].next_role = role;
        for c in self.rscs[k].children().to_vec() {
            if self.rscs[c].assigned.is_some() {
                self.set_role_subtree(c, role);
            }
        }
    }

    /// The order top-level resources are assigned in: by `priority`, ties in configuration
    /// order — what Pacemaker 2.1.5 (the oracle this is tested against) does.
    pub fn assignment_order(&mut self) -> Vec<usize> {
        let mut keyed: Vec<(i32, usize)> = self
            .top
            .iter()
            .map(|&t| {
                (
                    self.cib
                        .find(&self.rscs[t].base)
                        .map_or(0, |r| self.cib.priority(&r)),
                    t,
                )
            })
            .collect();
        keyed.sort_by_key(|k| std::cmp::Reverse(k.0));
        keyed.into_iter().map(|(_, t)| t).collect()
    }

    /// Assigns everything.
    pub fn assign_all(&mut self) {
        for t in self.assignment_order() {
            self.assign(t, None);
        }
    }
}

//! From placement to actions: what must stop, start, demote, promote, be probed or monitored,
//! who is notified, and in which order.
//!
//! Rules (Pacemaker's):
//! - A resource that moves stops on the old node before it starts on the new one; a failed
//!   resource is recovered (stopped, then started) even when it stays; a resource active on
//!   several nodes is stopped everywhere and started once.
//! - Promoted instances are demoted before they stop; a promote comes after the start.
//!   Within a clone every demote precedes every stop, every stop precedes every start and
//!   every start precedes every promote.
//! - Mandatory orders: `then` waits for `first`; if `first` cannot run (or, for
//!   `promote X then ...`, has no promoted instance), `then` cannot start (it is stopped if
//!   it runs); if `first` restarts, `then` restarts around it. Symmetrical orders also order
//!   the inverse actions in reverse (`stop then` before `stop first`). Optional orders only
//!   order actions that happen anyway; Serialize keeps them apart.
//! - Probes (one-shot monitors) run on every online node where a resource was never seen,
//!   before it starts anywhere; recurring monitors start after the action that gives the
//!   resource its final role; role-specific monitors are cancelled before a role change.
//! - Clones with `notify=true` get pre- and post-notifications around each kind of change.

// Resource-indexed tables read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use super::model::*;
use crate::cib::{OrderAction, OrderKind, Role};
use crate::status::RunState;
use crate::transition::{Action, ActionId, ActionKind, NotifyPhase, Placement, Transition};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Pacemaker's reason for a restart or reload caused by a changed definition.
pub const DEFINITION_CHANGE: &str = "resource definition change";

/// The end state of one primitive (clone instances separately).
#[derive(Clone, Debug)]
pub struct Final {
    pub node: Option<usize>,
    /// The node (and role) placement chose when an order then blocked the start.
    pub blocked_on: Option<usize>,
    pub blocked_role: Option<Role>,
    pub role: Role,
    /// Must be stopped and started again where it is (failure, or a restart of what it is
    /// ordered after).
    pub restart: bool,
    pub reasons: Vec<String>,
}

struct Builder {
    actions: Vec<Action>,
    /// Actions of each primitive (by working index).
    by_rsc: HashMap<usize, Vec<usize>>,
    index: HashMap<(usize, ActionKind, usize), usize>,
    rsc_of: Vec<usize>,
    edges: BTreeSet<(usize, usize)>,
}

impl Builder {
    fn edge(&mut self, before: usize, after: usize) {
        if before != after {
            self.edges.insert((before, after));
        }
    }
}

impl Sched<'_> {
    /// Is `i` (a primitive) left alone by the scheduler?
    pub fn untouchable(&self, i: usize) -> bool {
        let r = &self.rscs[i];
        // A blocked resource (failed stop) stays as it is until cleanup: without fencing there
        // is no safe way to move it.
        !r.managed || self.stonith_blocks || r.blocked()
    }

    /// The role a primitive will end in when assigned.
    fn assigned_role(&self, i: usize) -> Role {
        let r = &self.rscs[i];
        if r.assigned.is_none() {
            return Role::Stopped;
        }
        let promotable = self.is_promotable_member(i);
        match r.next_role {
            Role::Promoted => Role::Promoted,
            _ if promotable => Role::Unpromoted,
            _ => Role::Started,
        }
    }

    pub fn is_promotable_member(&self, mut i: usize) -> bool {
        loop {
            if let Kind::Clone(c) = &self.rscs[i].kind {
                return c.promotable;
            }
            match self.rscs[i].parent {
                Some(p) => i = p,
                None => return false,
            }
        }
    }

    /// Primitives under `r` (itself for a primitive).
    pub fn primitives_under(&self, r: usize) -> Vec<usize> {
        if self.rscs[r].is_primitive() {
            return vec![r];
        }
        self.rscs[r]
            .children()
            .iter()
            .flat_map(|&c| self.primitives_under(c))
            .collect()
    }

    /// Final states after placement and order runnability.
    pub fn finals(&self) -> Vec<Option<Final>> {
        let mut fin: Vec<Option<Final>> = (0..self.rscs.len())
            .map(|i| {
                self.rscs[i].is_primitive().then(|| {
                    if self.untouchable(i) {
                        Final {
                            blocked_on: None,
                            blocked_role: None,
                            node: self.rscs[i].current_node(),
                            role: self.rscs[i].current_role(),
                            restart: false,
                            reasons: vec![],
                        }
                    } else {
                        let node = self.rscs[i].assigned;
                        let redefined = node.is_some_and(|n| {
                            self.rscs[i].changes.contains(&(n, ConfigChange::Restart))
                        }) && !self.rscs[i].failed();
                        Final {
                            blocked_on: None,
                            blocked_role: None,
                            node,
                            role: self.assigned_role(i),
                            restart: self.rscs[i].failed() || redefined,
                            reasons: if redefined {
                                vec![DEFINITION_CHANGE.into()]
                            } else {
                                vec![]
                            },
                        }
                    }
                })
            })
            .collect();
        // Mandatory orders: a `then` that depends on something that will not happen cannot start.
        let will_do = |fin: &Vec<Option<Final>>, r: usize, action: OrderAction| -> Option<bool> {
            let prims = self.primitives_under(r);
            let is_clone = matches!(self.rscs[r].kind, Kind::Clone(_));
            match action {
                OrderAction::Start => {
                    let active = |p: &usize| fin[*p].as_ref().is_some_and(|f| f.node.is_some());
                    Some(if is_clone {
                        prims.iter().any(active)
                    } else {
                        prims.iter().all(active)
                    })
                }
                OrderAction::Promote => {
                    // A resource that is not promotable is never promoted: in Pacemaker 2.1.5
                    // a mandatory order on its promotion blocks `then` for good (the linter
                    // warns about it).
                    if !self.is_promotable_member(prims[0]) {
                        return Some(false);
                    }
                    Some(
                        prims
                            .iter()
                            .any(|p| fin[*p].as_ref().is_some_and(|f| f.role == Role::Promoted)),
                    )
                }
                _ => None,
            }
        };
        let mut changed = true;
        let mut rounds = 0;
        while changed && rounds <= self.orders.len() + self.colocs.len() + 1 {
            changed = false;
            rounds += 1;
            for o in &self.orders {
                if o.kind != OrderKind::Mandatory {
                    continue;
                }
                let Some(ok) = will_do(&fin, o.first, o.first_action) else {
                    continue;
                };
                if ok {
                    continue;
                }
                for p in self.primitives_under(o.then) {
                    if self.untouchable(p) {
                        continue;
                    }
                    let Some(f) = fin[p].as_mut() else { continue };
                    let why = format!(
                        "order '{}': {} {} cannot happen",
                        o.id, o.first_action, self.rscs[o.first].id
                    );
                    match o.then_action {
                        OrderAction::Start if f.node.is_some() => {
                            f.blocked_on = f.node;
                            f.blocked_role = Some(f.role);
                            f.node = None;
                            f.role = Role::Stopped;
                            f.reasons.push(why);
                            changed = true;
                        }
                        OrderAction::Promote if f.role == Role::Promoted => {
                            f.role = Role::Unpromoted;
                            f.reasons.push(why);
                            changed = true;
                        }
                        _ => {}
                    }
                }
            }
            // A resource that must run with (INFINITY) something whose start is blocked cannot
            // start either (Pacemaker blocks colocation dependents of unrunnable starts).
            for col in &self.colocs {
                if col.score < crate::score::INFINITY || col.dependent_role.is_some() {
                    continue;
                }
                let prims = self.primitives_under(col.primary);
                let is_clone = matches!(self.rscs[col.primary].kind, Kind::Clone(_));
                let up = |p: &usize| match col.primary_role {
                    Some(role) => fin[*p]
                        .as_ref()
                        .is_some_and(|f| f.node.is_some() && f.role == role),
                    None => fin[*p].as_ref().is_some_and(|f| f.node.is_some()),
                };
                let primary_ok = if is_clone || col.primary_role.is_some() {
                    prims.iter().any(up)
                } else {
                    prims.iter().all(up)
                };
                // Pacemaker blocks the dependents of an unrunnable start. A primary has a start
                // when it was placed (and then an order blocked it), or when an order names
                // its start — Pacemaker creates that action while unpacking the order, and it
                // turns unrunnable when the primary cannot be placed. A never-placed primary
                // without such an order has no start to block (its dependents were kept off
                // every node anyway, unless a dependency loop placed them first).
                let primary_blocked = prims
                    .iter()
                    .any(|p| fin[*p].as_ref().is_some_and(|f| f.blocked_on.is_some()))
                    || (!is_clone
                        && prims
                            .iter()
                            .all(|p| fin[*p].as_ref().is_some_and(|f| f.node.is_none()))
                        && self.start_is_ordered(col.primary));
                if primary_ok || !primary_blocked {
                    continue;
                }
                for p in self.primitives_under(col.dependent) {
                    if self.untouchable(p) {
                        continue;
                    }
                    let Some(f) = fin[p].as_mut() else { continue };
                    if f.node.is_some() {
                        f.blocked_on = f.node;
                        f.blocked_role = Some(f.role);
                        f.node = None;
                        f.role = Role::Stopped;
                        f.reasons.push(format!(
                            "colocation '{}': {} cannot run",
                            col.id, self.rscs[col.primary].id
                        ));
                        changed = true;
                    }
                }
            }
        }
        // Restarts propagate along mandatory orders.
        let mut changed = true;
        let mut rounds = 0;
        while changed && rounds <= self.orders.len() + 1 {
            changed = false;
            rounds += 1;
            for o in &self.orders {
                if o.kind != OrderKind::Mandatory
                    || !matches!(o.first_action, OrderAction::Start | OrderAction::Promote)
                {
                    continue;
                }
                let first_interrupted =
                    self.primitives_under(o.first)
                        .iter()
                        .any(|&p| match o.first_action {
                            OrderAction::Start => self.stops_planned(p, fin[p].as_ref()),
                            _ => self.demote_planned(p, fin[p].as_ref()),
                        });
                if !first_interrupted {
                    continue;
                }
                for p in self.primitives_under(o.then) {
                    if self.untouchable(p) {
                        continue;
                    }
                    let cur = self.rscs[p].current_node();
                    let Some(f) = fin[p].as_mut() else { continue };
                    if cur.is_some() && f.node == cur && !f.restart {
                        f.restart = true;
                        f.reasons.push(format!(
                            "restarts because {} is interrupted (order '{}')",
                            self.rscs[o.first].id, o.id
                        ));
                        changed = true;
                    }
                }
            }
        }
        fin
    }

    /// Does an order name the start of `r` (so Pacemaker has a start action for it even when
    /// it is never placed)?
    fn start_is_ordered(&self, r: usize) -> bool {
        self.orders.iter().any(|o| {
            (o.first == r && o.first_action == OrderAction::Start)
                || (o.then == r && o.then_action == OrderAction::Start)
        })
    }

    fn stops_planned(&self, p: usize, f: Option<&Final>) -> bool {
        let Some(f) = f else { return false };
        if self.untouchable(p) {
            return false;
        }
        let cur = &self.rscs[p].current;
        !cur.is_empty() && (f.restart || cur.len() > 1 || f.node != Some(cur[0].0))
    }

    fn demote_planned(&self, p: usize, f: Option<&Final>) -> bool {
        let Some(f) = f else { return false };
        self.rscs[p].current_role() == Role::Promoted
            && (f.role != Role::Promoted || self.stops_planned(p, Some(f)))
    }

    fn action_meta(
        &self,
        i: usize,
        kind: ActionKind,
        node: usize,
        timeout_ms: u64,
    ) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("timeout".into(), timeout_ms.to_string());
        m.insert("interval".into(), kind.interval_ms().to_string());
        m.insert("name".into(), kind.agent_action().into());
        m.insert("on_node".into(), self.nodes[node].name.clone());
        if let Some((ci, k)) = self.instance_number(i)
            && let Kind::Clone(info) = &self.rscs[ci].kind
        {
            m.insert("clone".into(), k.to_string());
            m.insert("clone_max".into(), info.clone_max.to_string());
            m.insert("clone_node_max".into(), info.clone_node_max.to_string());
            m.insert("notify".into(), info.notify.to_string());
            m.insert("globally_unique".into(), "false".into());
            if info.promotable {
                for (new, old, v) in [
                    ("promoted_max", "master_max", info.promoted_max),
                    (
                        "promoted_node_max",
                        "master_node_max",
                        info.promoted_node_max,
                    ),
                ] {
                    m.insert(new.into(), v.to_string());
                    m.insert(old.into(), v.to_string());
                }
            }
        }
        if let (ActionKind::Monitor { interval_ms }, Some(p)) = (kind, &self.rscs[i].prim)
            && let Some(op) = p
                .ops
                .iter()
                .find(|o| o.name == "monitor" && o.interval_ms == interval_ms)
        {
            if let Some(r) = op.role {
                m.insert("role".into(), r.as_str().into());
            }
            for (k, v) in &op.extra {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }

    fn add_action(&self, b: &mut Builder, i: usize, kind: ActionKind, node: usize) -> usize {
        if let Some(&a) = b.index.get(&(i, kind, node)) {
            return a;
        }
        let prim = self.rscs[i]
            .prim
            .as_ref()
            .expect("actions are on primitives");
        let timeout_ms = match kind {
            ActionKind::Monitor { interval_ms } => {
                self.cib.op_timeout_ms(prim, "monitor", interval_ms)
            }
            ActionKind::Cancel { .. } | ActionKind::ClearFailcount => 0,
            ActionKind::Notify { .. } => self.cib.op_timeout_ms(prim, "notify", 0),
            k => self.cib.op_timeout_ms(prim, k.agent_action(), 0),
        };
        let id = b.actions.len();
        b.actions.push(Action {
            id: ActionId(u32::try_from(id).expect("fewer than 4G actions")),
            resource: self.rscs[i].id.clone(),
            primitive: self.rscs[i].base.clone(),
            kind,
            node: self.nodes[node].name.clone(),
            timeout_ms,
            after: Vec::new(),
            agent: prim.agent.clone(),
            params: prim.params.clone(),
            meta: self.action_meta(i, kind, node, timeout_ms),
        });
        b.rsc_of.push(i);
        b.by_rsc.entry(i).or_default().push(id);
        b.index.insert((i, kind, node), id);
        id
    }

    /// Monitors that apply to a role: role-less ones always, role-specific ones in that role.
    fn monitors_for(&self, i: usize, role: Role) -> Vec<u64> {
        let Some(p) = &self.rscs[i].prim else {
            return vec![];
        };
        let promotable = self.is_promotable_member(i);
        p.ops
            .iter()
            .filter(|o| o.name == "monitor" && o.interval_ms > 0)
            .filter(|o| match o.role {
                None => true,
                Some(Role::Promoted) => role == Role::Promoted,
                Some(Role::Unpromoted) => {
                    role == Role::Unpromoted || (!promotable && role == Role::Started)
                }
                Some(Role::Started) => role != Role::Stopped,
                Some(Role::Stopped) => false,
            })
            .map(|o| o.interval_ms)
            .collect()
    }

    /// Builds the transition from the assignment.
    pub fn build_transition(&self) -> (Transition, Vec<Option<Final>>) {
        let fin = self.finals();
        let mut b = Builder {
            actions: Vec::new(),
            by_rsc: HashMap::new(),
            index: HashMap::new(),
            rsc_of: Vec::new(),
            edges: BTreeSet::new(),
        };
        let mut probes_of_base: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        // Probes.
        let mut probed: BTreeSet<(String, usize)> = BTreeSet::new();
        for i in 0..self.rscs.len() {
            if !self.rscs[i].is_primitive() || self.rscs[i].orphan {
                continue;
            }
            let base = self.rscs[i].base.clone();
            for n in 0..self.nodes.len() {
                let node = &self.nodes[n];
                if !node.online || node.maintenance || !self.rscs[i].managed || self.stonith_blocks
                {
                    continue;
                }
                let seen = self.rscs[i].seen_on.contains(&n);
                if seen || !probed.insert((base.clone(), n)) {
                    continue;
                }
                let a = self.add_action(&mut b, i, ActionKind::Monitor { interval_ms: 0 }, n);
                probes_of_base.entry(base.clone()).or_default().push(a);
            }
        }
        // Per-resource actions.
        for i in 0..self.rscs.len() {
            let Some(f) = &fin[i] else { continue };
            // Maintenance cancels the recurring monitors even of what it leaves alone.
            for &(n, c) in &self.rscs[i].changes {
                if let ConfigChange::Cancel {
                    interval_ms,
                    maintenance: true,
                } = c
                {
                    self.add_action(&mut b, i, ActionKind::Cancel { interval_ms }, n);
                }
            }
            if self.untouchable(i) {
                continue;
            }
            for &(n, c) in &self.rscs[i].changes {
                if c == ConfigChange::ClearFailcount {
                    self.add_action(&mut b, i, ActionKind::ClearFailcount, n);
                }
            }
            let r = &self.rscs[i];
            let cur = r.current.clone();
            let mut stops = Vec::new();
            let mut demotes = Vec::new();
            let mut kept = None;
            for (n, d) in &cur {
                let RunState::Active { role, failed } = d.state else {
                    continue;
                };
                let keep = f.node == Some(*n) && !failed && cur.len() == 1 && !f.restart;
                if role == Role::Promoted && (!keep || f.role != Role::Promoted) {
                    for iv in self.monitors_for(i, Role::Promoted) {
                        if d.active_monitors.contains(&iv) && keep {
                            let c = self.add_action(
                                &mut b,
                                i,
                                ActionKind::Cancel { interval_ms: iv },
                                *n,
                            );
                            demotes.push(c);
                        }
                    }
                    if !failed || keep {
                        let dm = self.add_action(&mut b, i, ActionKind::Demote, *n);
                        for &c in &demotes {
                            b.edge(c, dm);
                        }
                        demotes.push(dm);
                    }
                }
                if keep {
                    kept = Some((*n, role, d.active_monitors.clone()));
                } else {
                    let s = self.add_action(&mut b, i, ActionKind::Stop, *n);
                    for &dm in &demotes {
                        b.edge(dm, s);
                    }
                    stops.push(s);
                }
            }
            let Some(target) = f.node else { continue };
            let mut last = None;
            // Definition changes where it stays: reload, monitors run again, orphans cancelled.
            let mut rerun: Vec<u64> = Vec::new();
            let mut reload = None;
            if let Some((n, _, _)) = &kept
                && *n == target
            {
                for &(cn, c) in &r.changes {
                    if cn != target {
                        continue;
                    }
                    match c {
                        ConfigChange::Reload => {
                            reload = Some(self.add_action(&mut b, i, ActionKind::Reload, target));
                        }
                        ConfigChange::Reschedule(iv) => rerun.push(iv),
                        ConfigChange::Cancel {
                            interval_ms,
                            maintenance: false,
                        } => {
                            self.add_action(&mut b, i, ActionKind::Cancel { interval_ms }, target);
                        }
                        _ => {}
                    }
                }
            }
            let (now_role, mut live_monitors) = match &kept {
                Some((n, role, mons)) if *n == target => (
                    *role,
                    mons.iter()
                        .copied()
                        .filter(|iv| !rerun.contains(iv) && reload.is_none())
                        .collect::<Vec<u64>>(),
                ),
                _ => {
                    let s = self.add_action(&mut b, i, ActionKind::Start, target);
                    for &st in &stops {
                        b.edge(st, s);
                    }
                    for p in probes_of_base.get(&r.base).into_iter().flatten() {
                        b.edge(*p, s);
                    }
                    last = Some(s);
                    let base_role = if self.is_promotable_member(i) {
                        Role::Unpromoted
                    } else {
                        Role::Started
                    };
                    (base_role, Vec::new())
                }
            };
            if f.role == Role::Promoted && now_role != Role::Promoted {
                let mut cancels = Vec::new();
                for iv in live_monitors.clone() {
                    if !self.monitors_for(i, Role::Promoted).contains(&iv) {
                        cancels.push(self.add_action(
                            &mut b,
                            i,
                            ActionKind::Cancel { interval_ms: iv },
                            target,
                        ));
                        live_monitors.retain(|&x| x != iv);
                    }
                }
                let p = self.add_action(&mut b, i, ActionKind::Promote, target);
                if let Some(l) = last {
                    b.edge(l, p);
                }
                for c in cancels {
                    b.edge(c, p);
                }
                last = Some(p);
            } else if f.role == Role::Unpromoted && now_role == Role::Promoted {
                // Demoted in place above; its new monitors follow the demote.
                last = demotes.last().copied();
                live_monitors.retain(|iv| self.monitors_for(i, Role::Unpromoted).contains(iv));
            }
            for iv in self.monitors_for(i, f.role) {
                if last.is_none() && live_monitors.contains(&iv) {
                    continue;
                }
                let m = self.add_action(&mut b, i, ActionKind::Monitor { interval_ms: iv }, target);
                if let Some(l) = last.or(reload) {
                    b.edge(l, m);
                }
            }
        }
        self.clone_internal_edges(&mut b);
        self.order_edges(&mut b);
        self.notifications(&mut b);
        let actions = topo_sort(b);
        let placements = self.placements(&fin);
        (
            Transition {
                actions,
                placements,
            },
            fin,
        )
    }

    fn actions_of(&self, b: &Builder, r: usize, what: OrderAction) -> Vec<usize> {
        let kind = match what {
            OrderAction::Start => ActionKind::Start,
            OrderAction::Stop => ActionKind::Stop,
            OrderAction::Promote => ActionKind::Promote,
            OrderAction::Demote => ActionKind::Demote,
        };
        let mut out: Vec<usize> = self
            .primitives_under(r)
            .into_iter()
            .flat_map(|p| b.by_rsc.get(&p).into_iter().flatten().copied())
            .filter(|&a| b.actions[a].kind == kind)
            .collect();
        out.sort_unstable();
        out
    }

    fn clone_internal_edges(&self, b: &mut Builder) {
        for ci in 0..self.rscs.len() {
            if !matches!(self.rscs[ci].kind, Kind::Clone(_)) {
                continue;
            }
            let seq = [
                OrderAction::Demote,
                OrderAction::Stop,
                OrderAction::Start,
                OrderAction::Promote,
            ];
            for w in seq.windows(2) {
                let before = self.actions_of(b, ci, w[0]);
                let after = self.actions_of(b, ci, w[1]);
                for &x in &before {
                    for &y in &after {
                        if b.rsc_of[x] != b.rsc_of[y] || w[0] != OrderAction::Demote {
                            b.edge(x, y);
                        }
                    }
                }
            }
        }
    }

    fn order_edges(&self, b: &mut Builder) {
        for o in &self.orders {
            let interleave = matches!((&self.rscs[o.first].kind, &self.rscs[o.then].kind), (Kind::Clone(_), Kind::Clone(t)) if t.interleave);
            let mut pairs = vec![(o.first, o.first_action, o.then, o.then_action)];
            if o.symmetrical && o.kind != OrderKind::Serialize {
                pairs.push((
                    o.then,
                    o.then_action.inverse(),
                    o.first,
                    o.first_action.inverse(),
                ));
            }
            for (f, fa, t, ta) in pairs {
                let firsts = self.actions_of(b, f, fa);
                let thens = self.actions_of(b, t, ta);
                for &x in &firsts {
                    for &y in &thens {
                        if interleave && b.actions[x].node != b.actions[y].node {
                            continue;
                        }
                        b.edge(x, y);
                    }
                }
            }
        }
    }

    fn notifications(&self, b: &mut Builder) {
        for ci in 0..self.rscs.len() {
            let Kind::Clone(info) = &self.rscs[ci].kind else {
                continue;
            };
            if !info.notify {
                continue;
            }
            let prims = self.primitives_under(ci);
            let ops = [
                OrderAction::Demote,
                OrderAction::Stop,
                OrderAction::Start,
                OrderAction::Promote,
            ];
            let mut acts: BTreeMap<OrderAction, Vec<usize>> = BTreeMap::new();
            for &op in &ops {
                let a = self.actions_of(b, ci, op);
                if !a.is_empty() {
                    acts.insert(op, a);
                }
            }
            if acts.is_empty() {
                continue;
            }
            let names = |list: &[usize]| -> (String, String) {
                let r: Vec<String> = list
                    .iter()
                    .map(|&a| b.actions[a].resource.clone())
                    .collect();
                let n: Vec<String> = list.iter().map(|&a| b.actions[a].node.clone()).collect();
                (r.join(" "), n.join(" "))
            };
            let mut env = BTreeMap::new();
            for &op in &ops {
                let (r, n) = names(acts.get(&op).map(Vec::as_slice).unwrap_or(&[]));
                env.insert(format!("notify_{}_resource", op), r);
                env.insert(format!("notify_{}_uname", op), n);
            }
            let mut active = Vec::new();
            let mut promoted = Vec::new();
            let mut unpromoted = Vec::new();
            let mut inactive = Vec::new();
            for &p in &prims {
                match self.rscs[p].current.first() {
                    Some((n, d)) => {
                        let e = (self.rscs[p].id.clone(), self.nodes[*n].name.clone());
                        active.push(e.clone());
                        match d.state {
                            RunState::Active {
                                role: Role::Promoted,
                                ..
                            } => promoted.push(e),
                            _ => unpromoted.push(e),
                        }
                    }
                    None => inactive.push(self.rscs[p].id.clone()),
                }
            }
            let join = |v: &[(String, String)]| {
                (
                    v.iter().map(|x| x.0.clone()).collect::<Vec<_>>().join(" "),
                    v.iter().map(|x| x.1.clone()).collect::<Vec<_>>().join(" "),
                )
            };
            for (key, list) in [
                ("active", &active),
                ("promoted", &promoted),
                ("master", &promoted),
                ("unpromoted", &unpromoted),
                ("slave", &unpromoted),
            ] {
                let (r, n) = join(list);
                env.insert(format!("notify_{key}_resource"), r);
                env.insert(format!("notify_{key}_uname"), n);
            }
            env.insert("notify_inactive_resource".into(), inactive.join(" "));
            let all: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.online)
                .map(|n| n.name.clone())
                .collect();
            env.insert("notify_all_uname".into(), all.join(" "));
            let avail: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.available())
                .map(|n| n.name.clone())
                .collect();
            env.insert("notify_available_uname".into(), avail.join(" "));

            // Who is up before each phase and after it.
            let mut up: BTreeSet<(usize, usize)> = prims
                .iter()
                .filter_map(|&p| self.rscs[p].current_node().map(|n| (p, n)))
                .collect();
            let mut prev_posts: Vec<usize> = Vec::new();
            for &op in &ops {
                let Some(list) = acts.get(&op).cloned() else {
                    continue;
                };
                let pre_targets: Vec<(usize, usize)> = up.iter().copied().collect();
                for &a in &list {
                    let p = b.rsc_of[a];
                    let n = self.node_index(&b.actions[a].node).expect("known node");
                    match op {
                        OrderAction::Stop => {
                            up.remove(&(p, n));
                        }
                        OrderAction::Start => {
                            up.insert((p, n));
                        }
                        _ => {}
                    }
                }
                let post_targets: Vec<(usize, usize)> = up.iter().copied().collect();
                let mut pres = Vec::new();
                for (p, n) in pre_targets {
                    let a = self.add_action(
                        b,
                        p,
                        ActionKind::Notify {
                            phase: NotifyPhase::Pre,
                            op,
                        },
                        n,
                    );
                    pres.push(a);
                }
                let mut posts = Vec::new();
                for (p, n) in post_targets {
                    let a = self.add_action(
                        b,
                        p,
                        ActionKind::Notify {
                            phase: NotifyPhase::Post,
                            op,
                        },
                        n,
                    );
                    posts.push(a);
                }
                for &x in pres.iter().chain(posts.iter()) {
                    let phase = match b.actions[x].kind {
                        ActionKind::Notify { phase, .. } => phase,
                        _ => unreachable!(),
                    };
                    let m = &mut b.actions[x].meta;
                    m.extend(env.clone());
                    m.insert("notify_type".into(), phase.as_str().into());
                    m.insert("notify_operation".into(), op.as_str().into());
                }
                for &pre in &pres {
                    for &pp in &prev_posts {
                        b.edge(pp, pre);
                    }
                    for &a in &list {
                        b.edge(pre, a);
                    }
                }
                for &post in &posts {
                    for &a in &list {
                        b.edge(a, post);
                    }
                }
                if pres.is_empty() {
                    for &pp in &prev_posts {
                        for &a in &list {
                            b.edge(pp, a);
                        }
                    }
                }
                prev_posts = posts;
            }
        }
    }

    fn placements(&self, fin: &[Option<Final>]) -> Vec<Placement> {
        let mut out = Vec::new();
        for i in 0..self.rscs.len() {
            let Some(f) = &fin[i] else { continue };
            let r = &self.rscs[i];
            if r.orphan && r.current.is_empty() {
                continue;
            }
            out.push(Placement {
                resource: r.id.clone(),
                primitive: r.base.clone(),
                current_node: r.current_node().map(|n| self.nodes[n].name.clone()),
                current_role: r.current_role(),
                node: f.node.map(|n| self.nodes[n].name.clone()),
                role: if f.node.is_some() {
                    f.role
                } else {
                    Role::Stopped
                },
                unmanaged: self.untouchable(i),
                failed: r.failed(),
                reason: (f.reasons.iter().any(|x| x == DEFINITION_CHANGE)
                    || r.changes
                        .iter()
                        .any(|(n, c)| Some(*n) == f.node && *c == ConfigChange::Reload))
                .then(|| DEFINITION_CHANGE.to_string()),
            });
        }
        out
    }
}

/// Orders actions so every dependency comes first; among ready actions, demotes, stops,
/// starts, promotes, then monitors, each in creation order. A cycle (contradictory orders)
/// is broken by dropping the edges that close it, which the linter reports beforehand.
fn topo_sort(b: Builder) -> Vec<Action> {
    let n = b.actions.len();
    let mut indeg = vec![0usize; n];
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(x, y) in &b.edges {
        out_edges[x].push(y);
        indeg[y] += 1;
    }
    let rank = |a: &Action| -> u8 {
        match a.kind {
            ActionKind::Monitor { interval_ms: 0 } => 0,
            ActionKind::Cancel { .. } | ActionKind::ClearFailcount => 1,
            ActionKind::Notify {
                phase: NotifyPhase::Pre,
                ..
            } => 2,
            ActionKind::Demote => 3,
            ActionKind::Stop => 4,
            ActionKind::Start => 5,
            ActionKind::Promote => 6,
            ActionKind::Reload => 6,
            ActionKind::Notify {
                phase: NotifyPhase::Post,
                ..
            } => 7,
            ActionKind::Monitor { .. } => 8,
        }
    };
    let mut ready: BTreeSet<(u8, usize)> = (0..n)
        .filter(|&i| indeg[i] == 0)
        .map(|i| (rank(&b.actions[i]), i))
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while order.len() < n {
        let next = match ready.pop_first() {
            Some((_, i)) => i,
            None => {
                // Cycle: take the lowest remaining action and ignore its unmet dependencies.
                (0..n)
                    .filter(|&i| !done[i])
                    .min_by_key(|&i| (rank(&b.actions[i]), i))
                    .expect("some left")
            }
        };
        if done[next] {
            continue;
        }
        done[next] = true;
        order.push(next);
        for &y in &out_edges[next] {
            indeg[y] = indeg[y].saturating_sub(1);
            if indeg[y] == 0 && !done[y] {
                ready.insert((rank(&b.actions[y]), y));
            }
        }
    }
    let mut new_id = vec![0u32; n];
    for (pos, &old) in order.iter().enumerate() {
        new_id[old] = u32::try_from(pos).expect("fewer than 4G actions");
    }
    let mut deps: Vec<Vec<ActionId>> = vec![Vec::new(); n];
    for &(x, y) in &b.edges {
        if new_id[x] < new_id[y] {
            deps[y].push(ActionId(new_id[x]));
        }
    }
    let mut actions = b.actions;
    let mut out = Vec::with_capacity(n);
    let mut taken: Vec<Option<Action>> = actions.drain(..).map(Some).collect();
    for &old in &order {
        let mut a = taken[old].take().expect("each once");
        a.id = ActionId(new_id[old]);
        let mut d = std::mem::take(&mut deps[old]);
        d.sort();
        d.dedup();
        a.after = d;
        out.push(a);
    }
    out
}

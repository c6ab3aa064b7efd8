//! Applying edits to a CIB, pcs-style: generated ids like pcs's, references checked, the
//! result validated, the epoch bumped, the linter's new warnings returned.

use super::parse::{Edit, OpSpec, ParseError, op_times};
use crate::cib::*;
use crate::lint::{Warning, lint};
use crate::score::Score;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("resource '{0}' does not exist")]
    NoSuchResource(String),
    #[error("'{0}' already exists")]
    Exists(String),
    #[error("constraint '{0}' does not exist")]
    NoSuchConstraint(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// A new, empty configuration as pcs creates one: `resource-stickiness=1` in `rsc_defaults`
/// (pcs writes it so that resources do not move back after a failover).
pub fn new_configuration() -> Cib {
    let mut cib = Cib::default();
    cib.rsc_defaults
        .insert("resource-stickiness".into(), "1".into());
    cib
}

fn unique_id(cib: &Cib, base: &str) -> String {
    let taken = |id: &str| cib.contains(id) || cib.constraints.iter().any(|c| c.id() == id);
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|k| format!("{base}-{k}"))
        .find(|id| !taken(id))
        .expect("some suffix is free")
}

fn exists(cib: &Cib, id: &str) -> Result<(), EditError> {
    if cib.contains(id) {
        Ok(())
    } else {
        Err(EditError::NoSuchResource(id.to_string()))
    }
}

fn ops_from(id: &str, specs: &[OpSpec]) -> Result<Vec<Op>, EditError> {
    let mut ops = Vec::new();
    for s in specs {
        let (interval_ms, timeout_ms) = op_times(s)?;
        let role = match s.attrs.get("role") {
            None => None,
            Some(r) => Some(Role::parse(r).ok_or_else(|| ParseError {
                message: format!("op {}: role='{r}' is not a role", s.name),
            })?),
        };
        let extra: BTreeMap<String, String> = s
            .attrs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "interval" | "timeout" | "role" | "id"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let op_id = s.attrs.get("id").cloned().unwrap_or_else(|| {
            format!(
                "{id}-{}-interval-{}",
                s.name,
                format_duration_ms(interval_ms)
            )
        });
        ops.push(Op {
            id: op_id,
            name: s.name.clone(),
            interval_ms,
            timeout_ms,
            role,
            extra,
        });
    }
    Ok(ops)
}

/// Takes a top-level primitive out of the resource list.
fn take_primitive(cib: &mut Cib, id: &str) -> Result<Primitive, EditError> {
    let pos = cib.resources.iter().position(|r| r.id() == id);
    match pos.map(|p| cib.resources.remove(p)) {
        Some(Resource::Primitive(p)) => Ok(p),
        Some(other) => {
            let kind = match &other {
                Resource::Group(_) => "a group",
                _ => "a clone",
            };
            cib.resources.insert(pos.expect("found"), other);
            Err(EditError::Refused(format!(
                "'{id}' is {kind}; only a primitive can join a group"
            )))
        }
        None if cib.contains(id) => Err(EditError::Refused(format!(
            "'{id}' is already inside a group or clone"
        ))),
        None => Err(EditError::NoSuchResource(id.to_string())),
    }
}

fn make_clone(
    cib: &mut Cib,
    rsc: &str,
    clone_id: Option<String>,
    promotable: bool,
    mut meta: BTreeMap<String, String>,
) -> Result<(), EditError> {
    exists(cib, rsc)?;
    let pos = cib
        .resources
        .iter()
        .position(|r| r.id() == rsc)
        .ok_or_else(|| {
            EditError::Refused(format!(
                "'{rsc}' is inside a group or clone; clone the group instead"
            ))
        })?;
    let clone_id = clone_id.unwrap_or_else(|| format!("{rsc}-clone"));
    if cib.contains(&clone_id) {
        return Err(EditError::Exists(clone_id));
    }
    if meta.remove("promotable").is_some_and(|v| is_true(&v)) {
        // `resource clone X promotable=true` is the same as `resource promotable X`.
        return make_clone(cib, rsc, Some(clone_id), true, meta);
    }
    for (k, v) in &meta {
        if matches!(
            k.as_str(),
            "clone-max"
                | "clone-node-max"
                | "promoted-max"
                | "promoted-node-max"
                | "master-max"
                | "master-node-max"
        ) && v.trim().parse::<u32>().is_err()
        {
            return Err(EditError::Refused(format!(
                "'{k}={v}': expected a non-negative integer"
            )));
        }
    }
    let child = match cib.resources.remove(pos) {
        Resource::Primitive(p) => CloneChild::Primitive(p),
        Resource::Group(g) => CloneChild::Group(g),
        c @ Resource::Clone(_) => {
            cib.resources.insert(pos, c);
            return Err(EditError::Refused(format!("'{rsc}' is already a clone")));
        }
    };
    cib.resources.insert(
        pos,
        Resource::Clone(Clone {
            id: clone_id,
            promotable,
            meta,
            child,
        }),
    );
    Ok(())
}

fn set_or_remove(map: &mut BTreeMap<String, String>, name: &str, value: Option<&String>) {
    match value {
        Some(v) if !v.is_empty() => {
            map.insert(name.to_string(), v.clone());
        }
        _ => {
            map.remove(name);
        }
    }
}

fn apply_one(
    cib: &mut Cib,
    edit: &Edit,
    resolve: &dyn Fn(&str) -> Option<Agent>,
) -> Result<(), EditError> {
    match edit {
        Edit::ResourceCreate {
            id,
            agent,
            params,
            meta,
            ops,
            clone,
            group,
            disabled,
        } => {
            if !is_valid_id(id) {
                return Err(EditError::Refused(format!(
                    "'{id}' is not a valid resource name (letters, digits, '_', '-', '.', starting with a letter or '_')"
                )));
            }
            if cib.contains(id) {
                return Err(EditError::Exists(id.clone()));
            }
            let agent = super::parse::parse_agent(agent, resolve)?;
            let mut op_list = ops_from(id, ops)?;
            if !op_list.iter().any(|o| o.name == "monitor") {
                // pcs adds the agent's default monitor; 10 s is the OCF agents' usual default.
                op_list.insert(
                    0,
                    Op {
                        id: format!("{id}-monitor-interval-10s"),
                        name: "monitor".into(),
                        interval_ms: 10_000,
                        timeout_ms: Some(20_000),
                        role: None,
                        extra: BTreeMap::new(),
                    },
                );
            }
            let mut meta = meta.clone();
            if *disabled {
                meta.insert("target-role".into(), "Stopped".into());
            }
            let p = Primitive {
                id: id.clone(),
                agent,
                params: params.clone(),
                meta,
                ops: op_list,
            };
            match group {
                Some(g) => {
                    cib.resources.push(Resource::Primitive(p));
                    apply_one(
                        cib,
                        &Edit::GroupAdd {
                            group: g.clone(),
                            members: vec![id.clone()],
                            before: None,
                            after: None,
                        },
                        resolve,
                    )?;
                }
                None => cib.resources.push(Resource::Primitive(p)),
            }
            if let Some((promotable, cmeta)) = clone {
                make_clone(cib, id, None, *promotable, cmeta.clone())?;
            }
        }
        Edit::MakeClone {
            rsc,
            clone_id,
            promotable,
            meta,
        } => make_clone(cib, rsc, clone_id.clone(), *promotable, meta.clone())?,
        Edit::GroupAdd {
            group,
            members,
            before,
            after,
        } => {
            if !is_valid_id(group) {
                return Err(EditError::Refused(format!(
                    "'{group}' is not a valid group name"
                )));
            }
            let existing = cib.resources.iter().position(|r| r.id() == group);
            if existing.is_none() && cib.contains(group) {
                return Err(EditError::Refused(format!(
                    "'{group}' exists and is not a top-level group"
                )));
            }
            if let Some(pos) = existing
                && !matches!(cib.resources[pos], Resource::Group(_))
            {
                return Err(EditError::Refused(format!("'{group}' is not a group")));
            }
            let mut taken = Vec::new();
            for m in members {
                if m == group {
                    return Err(EditError::Refused(format!(
                        "'{m}' cannot be a member of itself"
                    )));
                }
                taken.push(take_primitive(cib, m)?);
            }
            let pos = cib.resources.iter().position(|r| r.id() == group);
            let g = match pos {
                Some(p) => match &mut cib.resources[p] {
                    Resource::Group(g) => g,
                    _ => unreachable!("checked above"),
                },
                None => {
                    cib.resources.push(Resource::Group(Group {
                        id: group.clone(),
                        meta: BTreeMap::new(),
                        members: vec![],
                    }));
                    match cib.resources.last_mut() {
                        Some(Resource::Group(g)) => g,
                        _ => unreachable!("just pushed"),
                    }
                }
            };
            let at = match (before, after) {
                (Some(b), _) => g
                    .members
                    .iter()
                    .position(|m| &m.id == b)
                    .ok_or_else(|| EditError::NoSuchResource(b.clone()))?,
                (None, Some(a)) => {
                    g.members
                        .iter()
                        .position(|m| &m.id == a)
                        .ok_or_else(|| EditError::NoSuchResource(a.clone()))?
                        + 1
                }
                (None, None) => g.members.len(),
            };
            for (k, p) in taken.into_iter().enumerate() {
                g.members.insert(at + k, p);
            }
        }
        Edit::GroupRemove { group, members } => {
            let pos = cib
                .resources
                .iter()
                .position(|r| r.id() == group && matches!(r, Resource::Group(_)))
                .ok_or_else(|| EditError::NoSuchResource(group.clone()))?;
            let Resource::Group(g) = &mut cib.resources[pos] else {
                unreachable!()
            };
            let out: Vec<Primitive> = if members.is_empty() {
                std::mem::take(&mut g.members)
            } else {
                let mut out = Vec::new();
                for m in members {
                    let i = g.members.iter().position(|p| &p.id == m).ok_or_else(|| {
                        EditError::Refused(format!("'{m}' is not in group '{group}'"))
                    })?;
                    out.push(g.members.remove(i));
                }
                out
            };
            if g.members.is_empty() {
                cib.resources.remove(pos);
                cib.constraints
                    .retain(|c| !c.resources().contains(&group.as_str()));
            }
            cib.resources
                .extend(out.into_iter().map(Resource::Primitive));
        }
        Edit::ResourceDelete { id } => {
            exists(cib, id)?;
            let removed: Vec<String> = cib
                .find(id)
                .map(|r| match r {
                    ResourceRef::Primitive(p) => vec![p.primitive.id.clone()],
                    ResourceRef::Group { group, .. } => std::iter::once(group.id.clone())
                        .chain(group.members.iter().map(|m| m.id.clone()))
                        .collect(),
                    ResourceRef::Clone(c) => std::iter::once(c.id.clone())
                        .chain(std::iter::once(c.child.id().to_string()))
                        .chain(c.child.primitives().iter().map(|p| p.id.clone()))
                        .collect(),
                })
                .unwrap_or_default();
            if let Some(pos) = cib.resources.iter().position(|r| r.id() == id) {
                cib.resources.remove(pos);
            } else {
                for r in &mut cib.resources {
                    match r {
                        Resource::Group(g) => g.members.retain(|m| &m.id != id),
                        Resource::Clone(c) => {
                            if let CloneChild::Group(g) = &mut c.child {
                                if g.members.len() == 1 && g.members[0].id == *id {
                                    return Err(EditError::Refused(format!(
                                        "'{id}' is the last member of '{}'; delete the clone",
                                        c.id
                                    )));
                                }
                                g.members.retain(|m| &m.id != id);
                            } else if c.child.id() == id {
                                return Err(EditError::Refused(format!(
                                    "'{id}' is cloned; delete the clone '{}'",
                                    c.id
                                )));
                            }
                        }
                        Resource::Primitive(_) => {}
                    }
                }
                cib.resources
                    .retain(|r| !matches!(r, Resource::Group(g) if g.members.is_empty()));
            }
            cib.constraints
                .retain(|c| !c.resources().iter().any(|r| removed.iter().any(|x| x == r)));
        }
        Edit::ResourceUpdate {
            id,
            params,
            meta,
            ops,
        } => {
            exists(cib, id)?;
            let new_ops = ops_from(id, ops)?;
            match cib.primitive_mut(id) {
                Some(p) => {
                    for (k, v) in params {
                        set_or_remove(&mut p.params, k, Some(v));
                    }
                    for (k, v) in meta {
                        set_or_remove(&mut p.meta, k, Some(v));
                    }
                    for o in new_ops {
                        p.ops.retain(|x| {
                            x.name != o.name
                                || (o.name == "monitor"
                                    && x.interval_ms != o.interval_ms
                                    && x.role != o.role)
                        });
                        p.ops.push(o);
                    }
                }
                None if params.is_empty() && ops.is_empty() => {
                    let m = cib
                        .meta_mut(id)
                        .ok_or_else(|| EditError::NoSuchResource(id.clone()))?;
                    for (k, v) in meta {
                        set_or_remove(m, k, Some(v));
                    }
                }
                None => {
                    return Err(EditError::Refused(format!(
                        "'{id}' is a group or clone: only meta attributes can be updated"
                    )));
                }
            }
        }
        Edit::ResourceMeta { id, meta } => {
            let m = cib
                .meta_mut(id)
                .ok_or_else(|| EditError::NoSuchResource(id.clone()))?;
            for (k, v) in meta {
                set_or_remove(m, k, Some(v));
            }
        }
        Edit::OpAdd { id, op } => {
            exists(cib, id)?;
            let new = ops_from(id, std::slice::from_ref(op))?
                .pop()
                .expect("one op in, one out");
            let p = cib.primitive_mut(id).ok_or_else(|| {
                EditError::Refused(format!(
                    "'{id}' is a group or clone: operations belong to its primitives"
                ))
            })?;
            if p.ops
                .iter()
                .any(|o| o.name == new.name && o.interval_ms == new.interval_ms)
            {
                return Err(EditError::Refused(format!(
                    "'{id}' already has a {} operation with interval {}; use 'resource update {id} op {} ...' to change it",
                    new.name,
                    format_duration_ms(new.interval_ms),
                    new.name
                )));
            }
            p.ops.push(new);
        }
        Edit::OpRemove { id, op } => {
            let removed = match id {
                // `resource op remove OP_ID`
                None => {
                    let mut hit = false;
                    for r in &mut cib.resources {
                        let prims: Vec<&mut Primitive> = match r {
                            Resource::Primitive(p) => vec![p],
                            Resource::Group(g) => g.members.iter_mut().collect(),
                            Resource::Clone(c) => match &mut c.child {
                                CloneChild::Primitive(p) => vec![p],
                                CloneChild::Group(g) => g.members.iter_mut().collect(),
                            },
                        };
                        for p in prims {
                            let before = p.ops.len();
                            p.ops.retain(|o| o.id != op.name);
                            hit |= p.ops.len() != before;
                        }
                    }
                    hit
                }
                Some(id) => {
                    exists(cib, id)?;
                    let (interval, timeout) = op_times(op)?;
                    let p = cib.primitive_mut(id).ok_or_else(|| {
                        EditError::Refused(format!(
                            "'{id}' is a group or clone: operations belong to its primitives"
                        ))
                    })?;
                    let before = p.ops.len();
                    p.ops.retain(|o| {
                        let matches = o.name == op.name
                            && (!op.attrs.contains_key("interval") || o.interval_ms == interval)
                            && (!op.attrs.contains_key("timeout") || o.timeout_ms == timeout)
                            && op.attrs.iter().all(|(k, v)| match k.as_str() {
                                "interval" | "timeout" => true,
                                "role" => {
                                    o.role.map(Role::as_str) == Role::parse(v).map(Role::as_str)
                                }
                                "id" => &o.id == v,
                                _ => o.extra.get(k) == Some(v),
                            });
                        !matches
                    });
                    p.ops.len() != before
                }
            };
            if !removed {
                return Err(EditError::Refused(match id {
                    None => format!("no operation with id '{}'", op.name),
                    Some(id) => format!("'{id}' has no matching {} operation", op.name),
                }));
            }
        }
        Edit::Manage { ids, managed } => {
            for id in ids {
                let m = cib
                    .meta_mut(id)
                    .ok_or_else(|| EditError::NoSuchResource(id.clone()))?;
                if *managed {
                    m.remove("is-managed");
                    m.remove("is_managed");
                } else {
                    m.insert("is-managed".into(), "false".into());
                }
            }
        }
        Edit::Enable { ids } | Edit::Disable { ids } => {
            let enable = matches!(edit, Edit::Enable { .. });
            for id in ids {
                let m = cib
                    .meta_mut(id)
                    .ok_or_else(|| EditError::NoSuchResource(id.clone()))?;
                if enable {
                    m.remove("target-role");
                } else {
                    m.insert("target-role".into(), "Stopped".into());
                }
            }
        }
        Edit::Move { id, node } | Edit::Ban { id, node } => {
            exists(cib, id)?;
            let (cid, score) = match edit {
                Edit::Move { .. } => (format!("cli-prefer-{id}"), Score::INFINITY),
                _ => (format!("cli-ban-{id}-on-{node}"), Score::MINUS_INFINITY),
            };
            if matches!(edit, Edit::Move { .. }) {
                cib.constraints.retain(|c| c.id() != cid);
            } else {
                cib.constraints
                    .retain(|c| c.id() != cid && c.id() != format!("cli-prefer-{id}"));
            }
            cib.constraints.push(Constraint::Location(Location {
                id: cid,
                rsc: id.clone(),
                role: None,
                target: LocationTarget::Node {
                    node: node.clone(),
                    score,
                },
            }));
        }
        Edit::Clear { id, node } => {
            exists(cib, id)?;
            let prefer = format!("cli-prefer-{id}");
            let ban_prefix = format!("cli-ban-{id}-on-");
            cib.constraints.retain(|c| {
                let cid = c.id();
                let ban_match = cid
                    .strip_prefix(&ban_prefix)
                    .is_some_and(|n| node.as_ref().is_none_or(|x| x == n));
                !(cid == prefer || ban_match)
            });
        }
        Edit::Colocation {
            id,
            rsc,
            rsc_role,
            with,
            with_role,
            score,
        } => {
            exists(cib, rsc)?;
            exists(cib, with)?;
            if rsc == with {
                return Err(EditError::Refused(format!(
                    "'{rsc}' cannot be colocated with itself"
                )));
            }
            let id = match id {
                Some(i) => {
                    if cib.constraints.iter().any(|c| c.id() == i) || cib.contains(i) {
                        return Err(EditError::Exists(i.clone()));
                    }
                    i.clone()
                }
                None => unique_id(cib, &format!("colocation-{rsc}-{with}-{score}")),
            };
            cib.constraints.push(Constraint::Colocation(Colocation {
                id,
                rsc: rsc.clone(),
                with_rsc: with.clone(),
                score: *score,
                rsc_role: *rsc_role,
                with_rsc_role: *with_role,
            }));
        }
        Edit::Order {
            id,
            first_action,
            first,
            then_action,
            then,
            kind,
            symmetrical,
        } => {
            exists(cib, first)?;
            exists(cib, then)?;
            if first == then {
                return Err(EditError::Refused(format!(
                    "'{first}' cannot be ordered after itself"
                )));
            }
            let id = match id {
                Some(i) => {
                    if cib.constraints.iter().any(|c| c.id() == i) || cib.contains(i) {
                        return Err(EditError::Exists(i.clone()));
                    }
                    i.clone()
                }
                None => unique_id(
                    cib,
                    &format!(
                        "order-{first}-{then}-{}",
                        kind.as_str().to_ascii_lowercase()
                    ),
                ),
            };
            cib.constraints.push(Constraint::Order(Order {
                id,
                first: first.clone(),
                first_action: *first_action,
                then: then.clone(),
                then_action: *then_action,
                kind: *kind,
                symmetrical: *symmetrical,
            }));
        }
        Edit::LocationScores { rsc, scores } => {
            exists(cib, rsc)?;
            for (node, score) in scores {
                // pcs replaces an earlier location of the same resource on the same node.
                cib.constraints.retain(|c| !matches!(c, Constraint::Location(l) if &l.rsc == rsc && l.role.is_none() && matches!(&l.target, LocationTarget::Node { node: n, .. } if n == node) && l.id.starts_with("location-")));
                let id = unique_id(cib, &format!("location-{rsc}-{node}-{score}"));
                cib.constraints.push(Constraint::Location(Location {
                    id,
                    rsc: rsc.clone(),
                    role: None,
                    target: LocationTarget::Node {
                        node: node.clone(),
                        score: *score,
                    },
                }));
            }
        }
        Edit::LocationRule {
            rsc,
            id,
            role,
            score,
            boolean_op,
            expressions,
        } => {
            exists(cib, rsc)?;
            let id = id
                .clone()
                .unwrap_or_else(|| unique_id(cib, &format!("location-{rsc}")));
            if cib.constraints.iter().any(|c| c.id() == id) {
                return Err(EditError::Exists(id));
            }
            let rule = Rule {
                id: format!("{id}-rule"),
                score: RuleScore::Value(*score),
                boolean_op: *boolean_op,
                role: None,
                expressions: expressions.clone(),
            };
            cib.constraints.push(Constraint::Location(Location {
                id,
                rsc: rsc.clone(),
                role: *role,
                target: LocationTarget::Rules(vec![rule]),
            }));
        }
        Edit::ConstraintRemove { ids } => {
            for id in ids {
                let before = cib.constraints.len();
                cib.constraints.retain(|c| c.id() != id);
                if cib.constraints.len() == before {
                    return Err(EditError::NoSuchConstraint(id.clone()));
                }
            }
        }
        Edit::ColocationRemove { rsc, with } => {
            let before = cib.constraints.len();
            cib.constraints.retain(
                |c| !matches!(c, Constraint::Colocation(x) if &x.rsc == rsc && &x.with_rsc == with),
            );
            if cib.constraints.len() == before {
                return Err(EditError::NoSuchConstraint(format!(
                    "colocation {rsc} with {with}"
                )));
            }
        }
        Edit::Standby { node, on } | Edit::Maintenance { node, on } => {
            let attr = if matches!(edit, Edit::Standby { .. }) {
                "standby"
            } else {
                "maintenance"
            };
            let names: Vec<String> = match node {
                Some(n) => vec![n.clone()],
                None => cib.nodes.iter().map(|n| n.name.clone()).collect(),
            };
            if names.is_empty() {
                return Err(EditError::Refused(
                    "no nodes are configured (use 'cluster setup NAME NODE...' or name the node)"
                        .into(),
                ));
            }
            for n in names {
                let node = cib.node_mut(&n);
                if *on {
                    node.attributes.insert(attr.into(), "on".into());
                } else {
                    node.attributes.remove(attr);
                }
            }
        }
        Edit::NodeAttribute { node, name, value } => {
            let n = cib.node_mut(node);
            set_or_remove(&mut n.attributes, name, value.as_ref());
        }
        Edit::Property { name, value } => {
            if name == "cluster-name" {
                cib.cluster_name = value.clone();
            } else {
                set_or_remove(&mut cib.properties, name, value.as_ref());
            }
        }
        Edit::RscDefault { name, value } => {
            set_or_remove(&mut cib.rsc_defaults, name, value.as_ref())
        }
        Edit::OpDefault { name, value } => {
            set_or_remove(&mut cib.op_defaults, name, value.as_ref())
        }
        Edit::Setup { name, nodes } => {
            cib.cluster_name = Some(name.clone());
            for n in nodes {
                cib.node_mut(n);
            }
        }
    }
    Ok(())
}

/// Applies edits atomically (all or nothing), validates, bumps the epoch, and returns the
/// linter warnings the edits introduced.
pub fn apply(
    cib: &mut Cib,
    edits: &[Edit],
    resolve: &dyn Fn(&str) -> Option<Agent>,
) -> Result<Vec<Warning>, EditError> {
    let before = lint(cib);
    let mut work = cib.clone();
    for e in edits {
        apply_one(&mut work, e, resolve)?;
    }
    work.validate()?;
    work.bump_epoch();
    let after = lint(&work);
    *cib = work;
    Ok(after.into_iter().filter(|w| !before.contains(w)).collect())
}

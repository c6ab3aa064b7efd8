//! Argument lists → commands.

use crate::cib::{
    Agent, BoolOp, ExprOp, Expression, OrderAction, OrderKind, Role, ValueType, parse_duration_ms,
};
use crate::score::Score;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        message: message.into(),
    })
}

/// An `op NAME k=v ...` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
}

/// What `resource show|config|status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceView {
    Status,
    Config,
}

/// A configuration edit (works offline with `-f FILE` and online through the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    ResourceCreate {
        id: String,
        agent: String,
        params: BTreeMap<String, String>,
        meta: BTreeMap<String, String>,
        ops: Vec<OpSpec>,
        clone: Option<(bool, BTreeMap<String, String>)>,
        group: Option<String>,
        disabled: bool,
    },
    /// `resource promotable|clone NAME [CLONE_ID] k=v` and old `resource master [CLONE] NAME k=v`.
    MakeClone {
        rsc: String,
        clone_id: Option<String>,
        promotable: bool,
        meta: BTreeMap<String, String>,
    },
    GroupAdd {
        group: String,
        members: Vec<String>,
        before: Option<String>,
        after: Option<String>,
    },
    GroupRemove {
        group: String,
        members: Vec<String>,
    },
    ResourceDelete {
        id: String,
    },
    ResourceUpdate {
        id: String,
        params: BTreeMap<String, String>,
        meta: BTreeMap<String, String>,
        ops: Vec<OpSpec>,
    },
    ResourceMeta {
        id: String,
        meta: BTreeMap<String, String>,
    },
    /// `resource op add RSC OP k=v...`: one more operation (an existing one with the same
    /// name and interval is refused).
    OpAdd {
        id: String,
        op: OpSpec,
    },
    /// `resource op remove|delete RSC OP [k=v...]` (the operations of that name matching every
    /// given attribute), or `resource op remove OP_ID`.
    OpRemove {
        id: Option<String>,
        op: OpSpec,
    },
    /// `resource manage|unmanage RSC...` (`is-managed`).
    Manage {
        ids: Vec<String>,
        managed: bool,
    },
    Enable {
        ids: Vec<String>,
    },
    Disable {
        ids: Vec<String>,
    },
    Move {
        id: String,
        node: String,
    },
    Ban {
        id: String,
        node: String,
    },
    Clear {
        id: String,
        node: Option<String>,
    },
    Colocation {
        id: Option<String>,
        rsc: String,
        rsc_role: Option<Role>,
        with: String,
        with_role: Option<Role>,
        score: Score,
    },
    Order {
        id: Option<String>,
        first_action: OrderAction,
        first: String,
        then_action: OrderAction,
        then: String,
        kind: OrderKind,
        symmetrical: Option<bool>,
    },
    LocationScores {
        rsc: String,
        scores: Vec<(String, Score)>,
    },
    LocationRule {
        rsc: String,
        id: Option<String>,
        role: Option<Role>,
        score: Score,
        boolean_op: BoolOp,
        expressions: Vec<Expression>,
    },
    ConstraintRemove {
        ids: Vec<String>,
    },
    ColocationRemove {
        rsc: String,
        with: String,
    },
    Standby {
        node: Option<String>,
        on: bool,
    },
    Maintenance {
        node: Option<String>,
        on: bool,
    },
    NodeAttribute {
        node: String,
        name: String,
        value: Option<String>,
    },
    Property {
        name: String,
        value: Option<String>,
    },
    RscDefault {
        name: String,
        value: Option<String>,
    },
    OpDefault {
        name: String,
        value: Option<String>,
    },
    Setup {
        name: String,
        nodes: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Edit(Vec<Edit>),
    ClusterCib {
        file: Option<String>,
    },
    ClusterCibPush {
        file: String,
    },
    /// `cluster auth`: nothing to do (the control socket is local and root-only).
    Auth,
    Status {
        json: bool,
        /// `--full`: node attributes, operation history, failed actions in detail.
        full: bool,
    },
    Resources {
        id: Option<String>,
        view: ResourceView,
    },
    Constraints,
    Properties,
    Cleanup {
        resource: Option<String>,
        node: Option<String>,
    },
    Lint,
    Simulate {
        xml: Option<String>,
        json: bool,
    },
    Why {
        resource: String,
    },
    /// `resource restart RSC [--wait=SECONDS]`: stop it (and what depends on it), then start
    /// it again, as `crm_resource --restart` does.
    Restart {
        resource: String,
        wait_s: u64,
    },
    /// `resource failcount show [RSC] [node=NODE]`.
    FailCounts {
        resource: Option<String>,
        node: Option<String>,
    },
    /// `constraint ref RSC...`: the constraints naming these resources.
    ConstraintRef {
        ids: Vec<String>,
    },
    CibExport {
        pacemaker: bool,
    },
    CibImport {
        file: String,
    },
}

fn kv(token: &str) -> Option<(String, String)> {
    let (k, v) = token.split_once('=')?;
    if k.is_empty() {
        return None;
    }
    Some((k.to_string(), v.to_string()))
}

fn role_word(t: &str) -> Option<Role> {
    match t.to_ascii_lowercase().as_str() {
        "master" | "promoted" => Some(Role::Promoted),
        "slave" | "unpromoted" => Some(Role::Unpromoted),
        "started" => Some(Role::Started),
        _ => None,
    }
}

/// `ocf:PROVIDER:TYPE`, `CLASS:TYPE`, or a bare TYPE resolved by `resolve` (the ctl looks in
/// the OCF root) and otherwise taken as `ocf:heartbeat:TYPE`, as pcs does.
pub fn parse_agent(
    spec: &str,
    resolve: &dyn Fn(&str) -> Option<Agent>,
) -> Result<Agent, ParseError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = |why: &str| err(format!("agent '{spec}': {why}"));
    match parts.as_slice() {
        [t] if !t.is_empty() => Ok(resolve(t).unwrap_or_else(|| Agent::ocf("heartbeat", t))),
        ["ocf", p, t] if !p.is_empty() && !t.is_empty() => Ok(Agent::ocf(p, t)),
        ["ocf", ..] => bad("an ocf agent is ocf:PROVIDER:TYPE"),
        [c, t] if !c.is_empty() && !t.is_empty() => Ok(Agent {
            class: c.to_string(),
            provider: None,
            kind: t.to_string(),
        }),
        [c, p, t] if !c.is_empty() && !p.is_empty() && !t.is_empty() => Ok(Agent {
            class: c.to_string(),
            provider: Some(p.to_string()),
            kind: t.to_string(),
        }),
        _ => bad("expected CLASS:PROVIDER:TYPE, CLASS:TYPE or TYPE"),
    }
}

/// Splits `k=v` tokens from the others; a token that is neither is an error naming it.
fn all_kv(tokens: &[String], what: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut out = BTreeMap::new();
    for t in tokens {
        match kv(t) {
            Some((k, v)) => {
                out.insert(k, v);
            }
            None => return err(format!("'{t}': expected NAME=VALUE for {what}")),
        }
    }
    Ok(out)
}

struct Sections {
    params: Vec<String>,
    ops: Vec<OpSpec>,
    meta: Vec<String>,
    clone: Option<(bool, Vec<String>)>,
}

/// Splits `k=v... op NAME k=v... meta k=v... clone|promotable k=v...`.
fn sections(tokens: &[String]) -> Result<Sections, ParseError> {
    let mut s = Sections {
        params: vec![],
        ops: vec![],
        meta: vec![],
        clone: None,
    };
    #[derive(PartialEq)]
    enum Where {
        Params,
        Op,
        Meta,
        Clone,
    }
    let mut at = Where::Params;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t.as_str() {
            "op" => {
                let name = tokens.get(i + 1).ok_or(ParseError {
                    message: "'op' needs an operation name (op monitor interval=30s)".into(),
                })?;
                if name.contains('=') {
                    return err(format!(
                        "'op {name}': expected an operation name after 'op'"
                    ));
                }
                s.ops.push(OpSpec {
                    name: name.clone(),
                    attrs: BTreeMap::new(),
                });
                at = Where::Op;
                i += 2;
                continue;
            }
            "meta" => at = Where::Meta,
            "clone" => {
                s.clone = Some((false, vec![]));
                at = Where::Clone;
            }
            "promotable" | "master" | "--master" => {
                s.clone = Some((true, vec![]));
                at = Where::Clone;
            }
            _ => {
                if kv(t).is_none() {
                    return err(format!(
                        "'{t}': expected NAME=VALUE, 'op', 'meta', 'clone' or 'promotable'"
                    ));
                }
                match at {
                    Where::Params => s.params.push(t.clone()),
                    Where::Meta => s.meta.push(t.clone()),
                    Where::Clone => s.clone.as_mut().expect("clone section").1.push(t.clone()),
                    Where::Op => {
                        let (k, v) = kv(t).expect("checked");
                        s.ops.last_mut().expect("op section").attrs.insert(k, v);
                    }
                }
            }
        }
        i += 1;
    }
    Ok(s)
}

/// Takes `--flag VALUE` / `--flag=VALUE` out of an argument list.
fn take_flag_value(args: &mut Vec<String>, flag: &str) -> Result<Option<String>, ParseError> {
    if let Some(pos) = args.iter().position(|a| a == flag) {
        if pos + 1 >= args.len() {
            return err(format!("'{flag}' needs a value"));
        }
        let v = args.remove(pos + 1);
        args.remove(pos);
        return Ok(Some(v));
    }
    let prefix = format!("{flag}=");
    if let Some(pos) = args.iter().position(|a| a.starts_with(&prefix)) {
        let v = args.remove(pos)[prefix.len()..].to_string();
        return Ok(Some(v));
    }
    Ok(None)
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    if let Some(pos) = args.iter().position(|a| a == flag) {
        args.remove(pos);
        true
    } else {
        false
    }
}

fn need<'a>(args: &'a [String], i: usize, what: &str) -> Result<&'a String, ParseError> {
    args.get(i).ok_or(ParseError {
        message: format!("missing {what}"),
    })
}

fn score_token(t: &str) -> Result<Score, ParseError> {
    Score::parse(t).ok_or(ParseError {
        message: format!("'{t}' is not a score (an integer, INFINITY or -INFINITY)"),
    })
}

fn no_more(args: &[String], from: usize) -> Result<(), ParseError> {
    match args.get(from) {
        Some(t) => err(format!("unexpected argument '{t}'")),
        None => Ok(()),
    }
}

/// Parses a clusterctl argument list (after global options like `-f FILE`).
pub fn parse(args: &[String]) -> Result<Command, ParseError> {
    let mut args: Vec<String> = args.to_vec();
    let json = take_flag(&mut args, "--json");
    // `status --full` (`resource show --full` keeps its own meaning).
    let full = args.first().is_some_and(|a| a == "status") && take_flag(&mut args, "--full");
    let Some(first) = args.first().cloned() else {
        return err(
            "missing command (resource, constraint, property, node, cluster, status, lint, simulate, why, cib)",
        );
    };
    let rest: Vec<String> = args[1..].to_vec();
    match first.as_str() {
        "resource" => parse_resource(rest),
        "constraint" => parse_constraint(rest),
        "property" => parse_property(rest),
        "node" => parse_node(rest),
        "cluster" => parse_cluster(rest),
        "status" => match rest.first().map(String::as_str) {
            None | Some("status") | Some("cluster") => Ok(Command::Status { json, full }),
            Some("resources") => Ok(Command::Resources {
                id: None,
                view: ResourceView::Status,
            }),
            Some(other) => err(format!(
                "'status {other}': expected nothing, 'resources' or --json"
            )),
        },
        "lint" => {
            no_more(&rest, 0)?;
            Ok(Command::Lint)
        }
        "simulate" => {
            let mut r = rest;
            let xml = take_flag_value(&mut r, "-x")?.or(take_flag_value(&mut r, "--xml-file")?);
            no_more(&r, 0)?;
            Ok(Command::Simulate { xml, json })
        }
        "why" => {
            let rsc = need(&rest, 0, "resource name (why RESOURCE)")?.clone();
            no_more(&rest, 1)?;
            Ok(Command::Why { resource: rsc })
        }
        "cib" => match rest.first().map(String::as_str) {
            Some("export") => {
                let mut r = rest[1..].to_vec();
                let pacemaker = take_flag(&mut r, "--pacemaker");
                no_more(&r, 0)?;
                Ok(Command::CibExport { pacemaker })
            }
            Some("import") => {
                let f = need(&rest, 1, "file (cib import FILE)")?.clone();
                no_more(&rest, 2)?;
                Ok(Command::CibImport { file: f })
            }
            Some(o) => err(format!("'cib {o}': expected export or import")),
            None => err("'cib': expected export or import"),
        },
        "stonith" => err(
            "'stonith': fencing devices are not supported yet by clusterd (set stonith-enabled=false)",
        ),
        other => err(format!(
            "'{other}': unknown command (resource, constraint, property, node, cluster, status, lint, simulate, why, cib)"
        )),
    }
}

fn parse_resource(args: Vec<String>) -> Result<Command, ParseError> {
    let Some(sub) = args.first().cloned() else {
        return Ok(Command::Resources {
            id: None,
            view: ResourceView::Status,
        });
    };
    let mut rest: Vec<String> = args[1..].to_vec();
    let one = |what: &str, rest: &[String]| -> Result<String, ParseError> {
        Ok(need(rest, 0, what)?.clone())
    };
    let edit = |e: Edit| Ok(Command::Edit(vec![e]));
    match sub.as_str() {
        "create" => {
            let group = take_flag_value(&mut rest, "--group")?;
            let disabled = take_flag(&mut rest, "--disabled");
            let master = take_flag(&mut rest, "--master");
            let _ = take_flag(&mut rest, "--force");
            let id = one("resource name (resource create NAME AGENT ...)", &rest)?;
            let agent = need(&rest, 1, "resource agent (resource create NAME AGENT ...)")?.clone();
            if agent.contains('=') {
                return err(format!(
                    "'{agent}': expected the resource agent (e.g. ocf:heartbeat:IPaddr2) before parameters"
                ));
            }
            let s = sections(&rest[2..])?;
            let mut clone = match s.clone {
                Some((p, kvs)) => Some((p, all_kv(&kvs, "clone options")?)),
                None => None,
            };
            if master {
                clone = Some((true, clone.map(|c| c.1).unwrap_or_default()));
            }
            edit(Edit::ResourceCreate {
                id,
                agent,
                params: all_kv(&s.params, "resource parameters")?,
                meta: all_kv(&s.meta, "meta attributes")?,
                ops: s.ops,
                clone,
                group,
                disabled,
            })
        }
        "promotable" | "clone" | "master" => {
            let promotable = sub != "clone";
            let names: Vec<String> = rest.iter().filter(|t| !t.contains('=')).cloned().collect();
            let meta = all_kv(
                &rest
                    .iter()
                    .filter(|t| t.contains('='))
                    .cloned()
                    .collect::<Vec<_>>(),
                "clone options",
            )?;
            let (rsc, clone_id) = match (sub.as_str(), names.as_slice()) {
                (_, []) => return err(format!("'resource {sub}' needs a resource name")),
                ("master", [clone_id, rsc]) => (rsc.clone(), Some(clone_id.clone())),
                (_, [rsc]) => (rsc.clone(), None),
                (_, [rsc, clone_id]) => (rsc.clone(), Some(clone_id.clone())),
                (_, [_, _, extra, ..]) => return err(format!("unexpected argument '{extra}'")),
            };
            edit(Edit::MakeClone {
                rsc,
                clone_id,
                promotable,
                meta,
            })
        }
        "group" => match rest.first().map(String::as_str) {
            Some("add") => {
                let mut r = rest[1..].to_vec();
                let before = take_flag_value(&mut r, "--before")?;
                let after = take_flag_value(&mut r, "--after")?;
                let group = one("group name (resource group add GROUP RSC...)", &r)?;
                if r.len() < 2 {
                    return err("'resource group add GROUP RSC...' needs at least one resource");
                }
                edit(Edit::GroupAdd {
                    group,
                    members: r[1..].to_vec(),
                    before,
                    after,
                })
            }
            Some("remove") | Some("delete") => {
                let group = one("group name", &rest[1..])?;
                edit(Edit::GroupRemove {
                    group,
                    members: rest[2..].to_vec(),
                })
            }
            Some("list") | None => Ok(Command::Resources {
                id: None,
                view: ResourceView::Config,
            }),
            Some(o) => err(format!(
                "'resource group {o}': expected add, remove or list"
            )),
        },
        "show" | "status" => Ok(Command::Resources {
            id: rest.first().cloned(),
            view: if rest.iter().any(|a| a == "--full") {
                ResourceView::Config
            } else {
                ResourceView::Status
            },
        }),
        "config" => Ok(Command::Resources {
            id: rest.first().cloned(),
            view: ResourceView::Config,
        }),
        "enable" => {
            if rest.is_empty() {
                return err("'resource enable' needs resource names");
            }
            edit(Edit::Enable { ids: rest })
        }
        "disable" => {
            if rest.is_empty() {
                return err("'resource disable' needs resource names");
            }
            edit(Edit::Disable { ids: rest })
        }
        "delete" | "remove" => {
            let id = one("resource name", &rest)?;
            no_more(&rest, 1)?;
            edit(Edit::ResourceDelete { id })
        }
        "update" => {
            let id = one("resource name", &rest)?;
            let s = sections(&rest[1..])?;
            if s.clone.is_some() {
                return err(
                    "'resource update' cannot make a clone; use 'resource clone' or 'resource promotable'",
                );
            }
            edit(Edit::ResourceUpdate {
                id,
                params: all_kv(&s.params, "resource parameters")?,
                meta: all_kv(&s.meta, "meta attributes")?,
                ops: s.ops,
            })
        }
        "meta" => {
            let id = one("resource name", &rest)?;
            edit(Edit::ResourceMeta {
                id,
                meta: all_kv(&rest[1..], "meta attributes")?,
            })
        }
        "manage" | "unmanage" => {
            if rest.is_empty() {
                return err(format!("'resource {sub}' needs resource names"));
            }
            edit(Edit::Manage {
                ids: rest,
                managed: sub == "manage",
            })
        }
        "restart" => {
            let wait = take_flag_value(&mut rest, "--wait")?;
            let resource = one("resource name (resource restart RSC)", &rest)?;
            if let Some(extra) = rest.get(1) {
                return err(format!(
                    "'{extra}': restarting on one node is not supported; 'resource restart {resource}' restarts it everywhere"
                ));
            }
            let wait_s = match wait {
                None => DEFAULT_RESTART_WAIT_S,
                Some(w) => parse_duration_ms(&w)
                    .map(|ms| ms / 1000)
                    .ok_or(ParseError {
                        message: format!("--wait='{w}' is not a duration (e.g. 60, 2min)"),
                    })?,
            };
            Ok(Command::Restart { resource, wait_s })
        }
        "failcount" => {
            let r: Vec<String> = if rest.first().is_some_and(|a| a == "show") {
                rest[1..].to_vec()
            } else {
                rest
            };
            let mut node = None;
            let mut resource = None;
            for t in &r {
                match kv(t) {
                    Some((k, v)) if k == "node" => node = Some(v),
                    Some(_) => return err(format!("'{t}': expected a resource name or node=NODE")),
                    None if t == "--full" => {}
                    None if resource.is_none() => resource = Some(t.clone()),
                    None => return err(format!("unexpected argument '{t}'")),
                }
            }
            Ok(Command::FailCounts { resource, node })
        }
        "cleanup" | "refresh" => {
            let node_flag = take_flag_value(&mut rest, "--node")?;
            let mut node = node_flag;
            let mut resource = None;
            for t in &rest {
                match kv(t) {
                    Some((k, v)) if k == "node" => node = Some(v),
                    Some(_) => return err(format!("'{t}': expected a resource name or node=NODE")),
                    None if resource.is_none() => resource = Some(t.clone()),
                    None => return err(format!("unexpected argument '{t}'")),
                }
            }
            Ok(Command::Cleanup { resource, node })
        }
        "move" | "ban" => {
            let id = one("resource name", &rest)?;
            let node = need(&rest, 1, &format!("node (resource {sub} RESOURCE NODE)"))?.clone();
            no_more(&rest, 2)?;
            if sub == "move" {
                edit(Edit::Move { id, node })
            } else {
                edit(Edit::Ban { id, node })
            }
        }
        "clear" => {
            let id = one("resource name", &rest)?;
            let node = rest.get(1).cloned();
            no_more(&rest, 2)?;
            edit(Edit::Clear { id, node })
        }
        "defaults" => {
            let r: Vec<String> = if rest.first().is_some_and(|a| a == "update") {
                rest[1..].to_vec()
            } else {
                rest
            };
            if r.is_empty() {
                return Ok(Command::Properties);
            }
            let kvs = all_kv(&r, "resource defaults")?;
            Ok(Command::Edit(
                kvs.into_iter()
                    .map(|(k, v)| Edit::RscDefault {
                        name: k,
                        value: (!v.is_empty()).then_some(v),
                    })
                    .collect(),
            ))
        }
        "op" => match rest.first().map(String::as_str) {
            Some("add") => {
                let id = need(&rest, 1, "resource name (resource op add RSC OP k=v...)")?.clone();
                let name = need(
                    &rest,
                    2,
                    "operation name (resource op add RSC monitor interval=30s)",
                )?
                .clone();
                if name.contains('=') {
                    return err(format!("'{name}': expected an operation name"));
                }
                let op = OpSpec {
                    name,
                    attrs: all_kv(&rest[3..], "operation options")?,
                };
                op_times(&op)?;
                edit(Edit::OpAdd { id, op })
            }
            Some("remove") | Some("delete") => {
                let first = need(&rest, 1, "resource name or operation id")?.clone();
                match rest.get(2) {
                    None => edit(Edit::OpRemove {
                        id: None,
                        op: OpSpec {
                            name: first,
                            attrs: BTreeMap::new(),
                        },
                    }),
                    Some(name) => {
                        let op = OpSpec {
                            name: name.clone(),
                            attrs: all_kv(&rest[3..], "operation options")?,
                        };
                        op_times(&op)?;
                        edit(Edit::OpRemove {
                            id: Some(first),
                            op,
                        })
                    }
                }
            }
            Some("defaults") => {
                let r: Vec<String> = if rest.get(1).is_some_and(|a| a == "update") {
                    rest[2..].to_vec()
                } else {
                    rest[1..].to_vec()
                };
                if r.is_empty() {
                    return Ok(Command::Properties);
                }
                let kvs = all_kv(&r, "operation defaults")?;
                Ok(Command::Edit(
                    kvs.into_iter()
                        .map(|(k, v)| Edit::OpDefault {
                            name: k,
                            value: (!v.is_empty()).then_some(v),
                        })
                        .collect(),
                ))
            }
            _ => err("'resource op': expected add, remove or defaults"),
        },
        other => err(format!(
            "'resource {other}': unknown subcommand (create, promotable, master, clone, group, show, config, enable, disable, manage, unmanage, restart, delete, update, meta, op, cleanup, failcount, move, ban, clear, defaults)"
        )),
    }
}

fn parse_constraint(args: Vec<String>) -> Result<Command, ParseError> {
    let Some(sub) = args.first().cloned() else {
        return Ok(Command::Constraints);
    };
    let rest: Vec<String> = args[1..].to_vec();
    match sub.as_str() {
        "list" | "show" | "config" => Ok(Command::Constraints),
        "ref" => {
            if rest.is_empty() {
                return err("'constraint ref' needs resource names");
            }
            Ok(Command::ConstraintRef { ids: rest })
        }
        "remove" | "delete" => {
            if rest.is_empty() {
                return err("'constraint remove' needs constraint ids");
            }
            Ok(Command::Edit(vec![Edit::ConstraintRemove { ids: rest }]))
        }
        "colocation" => {
            match rest.first().map(String::as_str) {
                Some("add") => {}
                Some("remove") | Some("delete") => {
                    let a = need(&rest, 1, "resource")?.clone();
                    let b = need(&rest, 2, "resource")?.clone();
                    return Ok(Command::Edit(vec![Edit::ColocationRemove {
                        rsc: a,
                        with: b,
                    }]));
                }
                Some(o) => {
                    return err(format!(
                        "'constraint colocation {o}': expected add or remove"
                    ));
                }
                None => return Ok(Command::Constraints),
            }
            let mut t: Vec<String> = rest[1..].to_vec();
            let mut rsc_role = None;
            if let Some(r) = t.first().and_then(|x| role_word(x))
                && t.len() > 1
                && t[1] != "with"
            {
                rsc_role = Some(r);
                t.remove(0);
            }
            let rsc = need(
                &t,
                0,
                "resource (constraint colocation add A with B [SCORE])",
            )?
            .clone();
            match t.get(1).map(String::as_str) {
                Some("with") => {}
                Some(o) => {
                    return err(format!(
                        "'{o}': expected 'with' (constraint colocation add A with B [SCORE])"
                    ));
                }
                None => return err("missing 'with' (constraint colocation add A with B [SCORE])"),
            }
            let mut i = 2;
            let mut with_role = None;
            if let Some(r) = t.get(i).and_then(|x| role_word(x))
                && t.get(i + 1)
                    .is_some_and(|x| !x.contains('=') && Score::parse(x).is_none())
            {
                with_role = Some(r);
                i += 1;
            }
            let with = need(&t, i, "resource after 'with'")?.clone();
            i += 1;
            let mut score = Score::INFINITY;
            let mut id = None;
            for tok in &t[i..] {
                if let Some((k, v)) = kv(tok) {
                    match k.as_str() {
                        "with-rsc-role" => with_role = Some(Role::parse(&v).ok_or(ParseError { message: format!("'{tok}': '{v}' is not a role (Promoted, Unpromoted, Started; Master, Slave)") })?),
                        "rsc-role" => rsc_role = Some(Role::parse(&v).ok_or(ParseError { message: format!("'{tok}': '{v}' is not a role (Promoted, Unpromoted, Started; Master, Slave)") })?),
                        "id" => id = Some(v),
                        "score" => score = score_token(&v)?,
                        _ => return err(format!("'{tok}': unknown colocation option (with-rsc-role, rsc-role, id, score)")),
                    }
                } else {
                    score = score_token(tok)?;
                }
            }
            let norm = |r: Option<Role>| r.filter(|r| *r != Role::Started);
            Ok(Command::Edit(vec![Edit::Colocation {
                id,
                rsc,
                rsc_role: norm(rsc_role),
                with,
                with_role: norm(with_role),
                score,
            }]))
        }
        "order" => {
            let mut t: Vec<String> = rest.clone();
            if t.first().is_some_and(|x| x == "add") {
                t.remove(0);
            }
            if t.first().is_some_and(|x| x == "remove" || x == "delete") {
                return err(
                    "'constraint order remove': use 'constraint remove ID' (see 'constraint list')",
                );
            }
            let mut i = 0;
            let mut first_action = OrderAction::Start;
            if let Some(a) = t.first().and_then(|x| OrderAction::parse(x))
                && t.get(1).is_some_and(|x| x != "then")
            {
                first_action = a;
                i = 1;
            }
            let first = need(
                &t,
                i,
                "resource (constraint order [ACTION] A then [ACTION] B)",
            )?
            .clone();
            i += 1;
            match t.get(i).map(String::as_str) {
                Some("then") => i += 1,
                Some(o) => {
                    return err(format!(
                        "'{o}': expected 'then' (constraint order [ACTION] A then [ACTION] B)"
                    ));
                }
                None => return err("missing 'then' (constraint order [ACTION] A then [ACTION] B)"),
            }
            let mut then_action = OrderAction::Start;
            if let Some(a) = t.get(i).and_then(|x| OrderAction::parse(x))
                && t.get(i + 1).is_some_and(|x| !x.contains('='))
            {
                then_action = a;
                i += 1;
            }
            let then = need(&t, i, "resource after 'then'")?.clone();
            i += 1;
            let mut kind = OrderKind::Mandatory;
            let mut symmetrical = None;
            let mut id = None;
            for tok in &t[i..] {
                let Some((k, v)) = kv(tok) else {
                    return err(format!(
                        "unexpected argument '{tok}' (options: kind=, symmetrical=, id=)"
                    ));
                };
                match k.as_str() {
                    "kind" => {
                        kind = OrderKind::parse(&v).ok_or(ParseError {
                            message: format!("'{tok}': kind is Mandatory, Optional or Serialize"),
                        })?
                    }
                    "symmetrical" => symmetrical = Some(crate::cib::is_true(&v)),
                    "id" => id = Some(v),
                    "score" => {
                        kind = if score_token(&v)?.value() == 0 {
                            OrderKind::Optional
                        } else {
                            OrderKind::Mandatory
                        }
                    }
                    _ => {
                        return err(format!(
                            "'{tok}': unknown order option (kind, symmetrical, id)"
                        ));
                    }
                }
            }
            Ok(Command::Edit(vec![Edit::Order {
                id,
                first_action,
                first,
                then_action,
                then,
                kind,
                symmetrical,
            }]))
        }
        "location" => {
            let rsc = need(
                &rest,
                0,
                "resource (constraint location RSC prefers|avoids NODE[=SCORE])",
            )?
            .clone();
            let how = need(&rest, 1, "'prefers', 'avoids' or 'rule'")?.clone();
            match how.as_str() {
                "prefers" | "avoids" => {
                    if rest.len() < 3 {
                        return err(format!(
                            "'constraint location {rsc} {how}' needs at least one NODE[=SCORE]"
                        ));
                    }
                    let mut scores = Vec::new();
                    for tok in &rest[2..] {
                        let (node, score) = match tok.split_once('=') {
                            Some((n, s)) => (n.to_string(), score_token(s)?),
                            None => (tok.clone(), Score::INFINITY),
                        };
                        if node.is_empty() {
                            return err(format!("'{tok}': missing node name"));
                        }
                        let score = if how == "avoids" {
                            Score::new(-i64::from(score.value()))
                        } else {
                            score
                        };
                        scores.push((node, score));
                    }
                    Ok(Command::Edit(vec![Edit::LocationScores { rsc, scores }]))
                }
                "rule" => parse_rule(rsc, &rest[2..]),
                o => err(format!("'{o}': expected 'prefers', 'avoids' or 'rule'")),
            }
        }
        o => err(format!(
            "'constraint {o}': unknown subcommand (colocation, order, location, list, ref, remove)"
        )),
    }
}

/// `constraint location RSC rule [id=ID] [role=ROLE] [score=S|score-attribute=A] EXPR [and|or EXPR]...`
/// with `EXPR` = `ATTR defined|not_defined` or `ATTR OP [TYPE] VALUE`.
fn parse_rule(rsc: String, t: &[String]) -> Result<Command, ParseError> {
    let mut i = 0;
    let mut id = None;
    let mut role = None;
    let mut score = Score::INFINITY;
    while let Some((k, v)) = t.get(i).and_then(|x| kv(x)) {
        match k.as_str() {
            "id" | "constraint-id" => id = Some(v),
            "role" => {
                role = Some(Role::parse(&v).ok_or(ParseError {
                    message: format!("'{}': not a role", t[i]),
                })?)
            }
            "score" => score = score_token(&v)?,
            "score-attribute" => {
                return err(format!(
                    "'{}': score-attribute rules are accepted in imported XML only",
                    t[i]
                ));
            }
            _ => return err(format!("'{}': unknown rule option (id, role, score)", t[i])),
        }
        i += 1;
    }
    let mut exprs = Vec::new();
    let mut boolean_op = None;
    while i < t.len() {
        let attr = t[i].clone();
        let op_tok = need(
            t,
            i + 1,
            &format!("operator after '{attr}' (eq, ne, lt, gt, lte, gte, defined, not_defined)"),
        )?;
        let op = ExprOp::parse(op_tok).ok_or(ParseError {
            message: format!(
                "'{op_tok}' is not an operator (eq, ne, lt, gt, lte, gte, defined, not_defined)"
            ),
        })?;
        i += 2;
        let (value, value_type) = if matches!(op, ExprOp::Defined | ExprOp::NotDefined) {
            (None, ValueType::String)
        } else {
            let mut vt = ValueType::String;
            if let Some(ty) = t.get(i).and_then(|x| ValueType::parse(x))
                && t.get(i + 1).is_some()
            {
                vt = ty;
                i += 1;
            }
            let v = need(t, i, &format!("value after '{attr} {op_tok}'"))?.clone();
            i += 1;
            if vt == ValueType::String
                && v.parse::<i64>().is_ok()
                && matches!(op, ExprOp::Lt | ExprOp::Gt | ExprOp::Lte | ExprOp::Gte)
            {
                vt = ValueType::Integer;
            }
            (Some(v), vt)
        };
        exprs.push(Expression {
            attribute: attr,
            op,
            value,
            value_type,
        });
        if i < t.len() {
            let b = match t[i].as_str() {
                "and" => BoolOp::And,
                "or" => BoolOp::Or,
                o => return err(format!("'{o}': expected 'and' or 'or' between expressions")),
            };
            if boolean_op.is_some_and(|x| x != b) {
                return err(format!(
                    "'{}': mixing 'and' and 'or' in one rule is not supported",
                    t[i]
                ));
            }
            boolean_op = Some(b);
            i += 1;
            if i >= t.len() {
                return err("missing expression after 'and'/'or'");
            }
        }
    }
    if exprs.is_empty() {
        return err("a rule needs an expression (e.g. '#uname eq node1' or 'ssd defined')");
    }
    Ok(Command::Edit(vec![Edit::LocationRule {
        rsc,
        id,
        role,
        score,
        boolean_op: boolean_op.unwrap_or_default(),
        expressions: exprs,
    }]))
}

fn parse_property(args: Vec<String>) -> Result<Command, ParseError> {
    match args.first().map(String::as_str) {
        None | Some("list") | Some("show") | Some("config") => Ok(Command::Properties),
        Some("set") => {
            if args.len() < 2 {
                return err("'property set' needs NAME=VALUE");
            }
            let kvs = all_kv(
                &args[1..]
                    .iter()
                    .filter(|a| *a != "--force")
                    .cloned()
                    .collect::<Vec<_>>(),
                "properties",
            )?;
            Ok(Command::Edit(
                kvs.into_iter()
                    .map(|(k, v)| Edit::Property {
                        name: k,
                        value: (!v.is_empty()).then_some(v),
                    })
                    .collect(),
            ))
        }
        Some("unset") => {
            if args.len() < 2 {
                return err("'property unset' needs a NAME");
            }
            Ok(Command::Edit(
                args[1..]
                    .iter()
                    .map(|k| Edit::Property {
                        name: k.clone(),
                        value: None,
                    })
                    .collect(),
            ))
        }
        Some(o) => err(format!("'property {o}': expected set, unset or list")),
    }
}

fn node_target(args: &[String]) -> Result<Option<String>, ParseError> {
    match args {
        [] => err("which node? (a node name or --all)"),
        [a] if a == "--all" => Ok(None),
        [n] => Ok(Some(n.clone())),
        [_, extra, ..] => err(format!("unexpected argument '{extra}'")),
    }
}

fn parse_node(args: Vec<String>) -> Result<Command, ParseError> {
    let Some(sub) = args.first() else {
        return err("'node': expected standby, unstandby, maintenance, unmaintenance or attribute");
    };
    let rest = &args[1..];
    match sub.as_str() {
        "standby" | "unstandby" => Ok(Command::Edit(vec![Edit::Standby {
            node: node_target(rest)?,
            on: sub == "standby",
        }])),
        "maintenance" | "unmaintenance" => Ok(Command::Edit(vec![Edit::Maintenance {
            node: node_target(rest)?,
            on: sub == "maintenance",
        }])),
        "attribute" => {
            let node = need(rest, 0, "node (node attribute NODE NAME=VALUE)")?.clone();
            let kvs = all_kv(&rest[1..], "node attributes")?;
            if kvs.is_empty() {
                return err("'node attribute NODE' needs NAME=VALUE (NAME= deletes)");
            }
            Ok(Command::Edit(
                kvs.into_iter()
                    .map(|(k, v)| Edit::NodeAttribute {
                        node: node.clone(),
                        name: k,
                        value: (!v.is_empty()).then_some(v),
                    })
                    .collect(),
            ))
        }
        o => err(format!(
            "'node {o}': expected standby, unstandby, maintenance, unmaintenance or attribute"
        )),
    }
}

fn parse_cluster(args: Vec<String>) -> Result<Command, ParseError> {
    let Some(sub) = args.first() else {
        return Ok(Command::Status {
            json: false,
            full: false,
        });
    };
    let rest: Vec<String> = args[1..].to_vec();
    match sub.as_str() {
        "cib" => {
            no_more(&rest, 1)?;
            Ok(Command::ClusterCib {
                file: rest.first().cloned(),
            })
        }
        "cib-push" => {
            let mut r = rest;
            let _ = take_flag(&mut r, "--config");
            let file = need(&r, 0, "file (cluster cib-push FILE)")?.clone();
            no_more(&r, 1)?;
            Ok(Command::ClusterCibPush { file })
        }
        "standby" | "unstandby" => Ok(Command::Edit(vec![Edit::Standby {
            node: node_target(&rest)?,
            on: sub == "standby",
        }])),
        "status" => Ok(Command::Status {
            json: false,
            full: false,
        }),
        "auth" => Ok(Command::Auth),
        "setup" => {
            let mut r = rest;
            let name = match take_flag_value(&mut r, "--name")? {
                Some(n) => n,
                None => {
                    if r.is_empty() {
                        return err(
                            "'cluster setup' needs a cluster name (cluster setup NAME NODE...)",
                        );
                    }
                    r.remove(0)
                }
            };
            let _ = take_flag(&mut r, "--start");
            let _ = take_flag(&mut r, "--enable");
            if r.is_empty() {
                return err("'cluster setup' needs node names");
            }
            for n in &r {
                if n.starts_with('-') || n.contains('=') {
                    return err(format!("'{n}': expected a node name"));
                }
            }
            Ok(Command::Edit(vec![Edit::Setup { name, nodes: r }]))
        }
        o => err(format!(
            "'cluster {o}': expected cib, cib-push, standby, unstandby, setup, auth or status"
        )),
    }
}

/// How long `resource restart` waits for the stop, then for the start, by default.
pub const DEFAULT_RESTART_WAIT_S: u64 = 60;

/// Interval and timeout of an op spec, checked.
pub(crate) fn op_times(op: &OpSpec) -> Result<(u64, Option<u64>), ParseError> {
    let interval = match op.attrs.get("interval") {
        None => 0,
        Some(v) => parse_duration_ms(v).ok_or(ParseError {
            message: format!(
                "op {}: interval='{v}' is not a duration (e.g. 30s, 2min)",
                op.name
            ),
        })?,
    };
    let timeout = match op.attrs.get("timeout") {
        None => None,
        Some(v) => Some(parse_duration_ms(v).ok_or(ParseError {
            message: format!("op {}: timeout='{v}' is not a duration (e.g. 20s)", op.name),
        })?),
    };
    Ok((interval, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn thesis_commands_parse() {
        assert!(matches!(
            p(
                "resource create ClusterIP ocf:heartbeat:IPAddr2 ip=10.131.210.50 cidr_netmask=24 op monitor interval=30s"
            ),
            Ok(Command::Edit(_))
        ));
        let c = p("resource master mailDataClone mailData master-max=1 master-node-max=1 clone-max=2 clone-node-max=1 notify=true").unwrap();
        let Command::Edit(e) = c else { panic!() };
        assert!(
            matches!(&e[0], Edit::MakeClone { rsc, clone_id: Some(c), promotable: true, .. } if rsc == "mailData" && c == "mailDataClone")
        );
        let Command::Edit(e) = p(
            "constraint colocation add ZimbraFS with mailDataClone INFINITY with-rsc-role=Master",
        )
        .unwrap() else {
            panic!()
        };
        assert!(
            matches!(&e[0], Edit::Colocation { with_role: Some(Role::Promoted), score, .. } if *score == Score::INFINITY)
        );
        let Command::Edit(e) =
            p("constraint order promote mailDataClone then start ZimbraFS").unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            &e[0],
            Edit::Order {
                first_action: OrderAction::Promote,
                then_action: OrderAction::Start,
                ..
            }
        ));
        assert!(matches!(
            p("cluster standby mercurio"),
            Ok(Command::Edit(_))
        ));
        assert_eq!(
            p("cluster cib drbd_cfg"),
            Ok(Command::ClusterCib {
                file: Some("drbd_cfg".into())
            })
        );
        assert_eq!(
            p("cluster cib-push drbd_cfg"),
            Ok(Command::ClusterCibPush {
                file: "drbd_cfg".into()
            })
        );
    }

    #[test]
    fn errors_name_the_token() {
        assert!(
            p("constraint colocation add A with B INFINTY")
                .unwrap_err()
                .message
                .contains("'INFINTY'")
        );
        assert!(
            p("resource create X ocf:heartbeat:Dummy op monitor interval")
                .unwrap_err()
                .message
                .contains("'interval'")
        );
        assert!(
            p("constraint order start A thne B")
                .unwrap_err()
                .message
                .contains("'thne'")
        );
        assert!(
            p("resource frobnicate")
                .unwrap_err()
                .message
                .contains("'resource frobnicate'")
        );
        assert!(
            p("constraint colocation add A with B with-rsc-role=Boss")
                .unwrap_err()
                .message
                .contains("Boss")
        );
        assert!(
            p("constraint location A prefers n1=lots")
                .unwrap_err()
                .message
                .contains("'lots'")
        );
    }

    #[test]
    fn modern_forms() {
        let Command::Edit(e) = p("constraint colocation add Promoted A with Started B 50").unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            &e[0],
            Edit::Colocation {
                rsc_role: Some(Role::Promoted),
                with_role: None,
                ..
            }
        ));
        let Command::Edit(e) =
            p("constraint location A rule score=50 #uname eq n1 or ssd defined").unwrap()
        else {
            panic!()
        };
        assert!(
            matches!(&e[0], Edit::LocationRule { boolean_op: BoolOp::Or, expressions, .. } if expressions.len() == 2)
        );
        assert_eq!(
            p("simulate -x f.xml --json"),
            Ok(Command::Simulate {
                xml: Some("f.xml".into()),
                json: true
            })
        );
        assert_eq!(
            p("resource cleanup A node=n1"),
            Ok(Command::Cleanup {
                resource: Some("A".into()),
                node: Some("n1".into())
            })
        );
    }
}

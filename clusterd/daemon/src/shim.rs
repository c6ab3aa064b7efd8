//! `crm_attribute`, `crm_master` and `crm_node` as agents call them, answered by clusterd.
//!
//! Agents written for Pacemaker ask to be promoted by setting a node attribute named
//! `master-RSC` (Debian's `Stateful`: `${HA_SBIN_DIR}/crm_attribute --promotion -v 10`;
//! ocf-shellfuncs' `ocf_promotion_score`: `crm_master -l reboot -v N` or `crm_attribute -p -v N`),
//! and find their node with `crm_node -n`. clusterd links these three names to its own binary
//! in `STATE_DIR/sbin`, which agents get as `HA_SBIN_DIR` and first on `PATH`; the binary,
//! started under one of these names, parses the arguments here into an [`AttrRequest`] and
//! sends it to the control socket named by `CLUSTERD_CONTROL`.
//!
//! Exit codes follow Pacemaker's `crm_exit_t`: 0 ok, 64 usage, 69 clusterd unreachable,
//! 105 no such attribute.

use serde::{Deserialize, Serialize};

/// `CRM_EX_USAGE`.
pub const EXIT_USAGE: i32 = 64;
/// `CRM_EX_UNAVAILABLE`: clusterd's socket cannot be reached.
pub const EXIT_UNAVAILABLE: i32 = 69;
/// `CRM_EX_NOSUCH`: the attribute does not exist.
pub const EXIT_NOSUCH: i32 = 105;

/// The names under which the clusterd binary acts as a shim.
/// `pacemakerd` only answers `--version`: ocf-shellfuncs' `ocf_local_nodename` asks it before
/// it trusts `crm_node -n` (and falls back to `uname -n`, wrong for several nodes on one host).
pub const SHIM_NAMES: &[&str] = &["crm_attribute", "crm_master", "crm_node", "pacemakerd"];

/// What the shims report as their Pacemaker version (that of Debian 12).
pub const PACEMAKER_VERSION: &str = "2.1.5";

/// How long an attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifetime {
    /// Until the node (clusterd) restarts: Pacemaker's transient `status` attributes.
    Reboot,
    /// Kept in the configuration: Pacemaker's permanent `nodes` attributes.
    Forever,
}

/// What an agent asked of clusterd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum AttrRequest {
    /// Set a node attribute.
    Set {
        /// The node (`None`: the node the agent runs on).
        node: Option<String>,
        /// Attribute name, e.g. `master-db`.
        name: String,
        /// Its value.
        value: String,
        /// Transient or permanent.
        lifetime: Lifetime,
    },
    /// Delete a node attribute (deleting a missing one succeeds, as in Pacemaker).
    Delete {
        /// The node (`None`: local).
        node: Option<String>,
        /// Attribute name.
        name: String,
        /// Transient or permanent.
        lifetime: Lifetime,
    },
    /// Read a node attribute.
    Query {
        /// The node (`None`: local).
        node: Option<String>,
        /// Attribute name.
        name: String,
        /// Transient or permanent.
        lifetime: Lifetime,
    },
    /// The cluster's nodes (`crm_node -l`/`-p`/`-q`).
    Nodes,
}

/// clusterd's answer to an [`AttrRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum AttrResponse {
    /// Done (set, delete).
    Ok,
    /// The value of a queried attribute (`None`: it does not exist).
    Value {
        /// The value.
        value: Option<String>,
    },
    /// The node list.
    Nodes {
        /// `(id, name, online)` per configured node.
        nodes: Vec<(u32, String, bool)>,
        /// Whether this partition has quorum.
        quorate: bool,
    },
    /// Refused, with the reason.
    Error {
        /// Why.
        message: String,
    },
}

/// What the shim does once its arguments are parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimCommand {
    /// Send a request; print per [`Output`].
    Request(AttrRequest, Output),
    /// `crm_node -n`: print the local node name (from `CLUSTERD_NODE`, no socket needed).
    PrintNodeName,
    /// `--help`, `--version`: print this text.
    Print(String),
}

/// How to print the answer of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nothing.
    Silent,
    /// `scope=status  name=N value=V` (or just `V` when quiet), with a default when missing.
    Value {
        /// `-q`.
        quiet: bool,
        /// `-d VALUE`.
        default: Option<String>,
        /// Scope word printed (`status` / `nodes`).
        scope: &'static str,
        /// The attribute name.
        name: String,
    },
    /// `crm_node -l`: `ID NAME member|lost` lines.
    NodeList,
    /// `crm_node -p`: the online members on one line.
    Partition,
    /// `crm_node -q`: `1` or `0`.
    Quorum,
    /// `crm_node -i`: this node's id.
    NodeId(String),
}

/// The environment the shim reads (passed in so parsing stays pure).
#[derive(Debug, Clone, Default)]
pub struct ShimEnv {
    /// `OCF_RESOURCE_INSTANCE`.
    pub resource_instance: Option<String>,
    /// `OCF_RESKEY_CRM_meta_globally_unique`.
    pub globally_unique: bool,
    /// `CLUSTERD_NODE`.
    pub node: Option<String>,
}

impl ShimEnv {
    /// Reads the variables from the process environment.
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ShimEnv {
            resource_instance: get("OCF_RESOURCE_INSTANCE"),
            globally_unique: get("OCF_RESKEY_CRM_meta_globally_unique")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1")),
            node: get("CLUSTERD_NODE"),
        }
    }
}

/// The promotion-score attribute of a resource instance: `master-RSC`, with the clone
/// instance suffix (`:N`) removed unless the clone is globally unique (as Pacemaker does).
pub fn promotion_attr(instance: &str, globally_unique: bool) -> String {
    let base = match instance.rsplit_once(':') {
        Some((base, n))
            if !globally_unique && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) =>
        {
            base
        }
        _ => instance,
    };
    format!("master-{base}")
}

/// A usage error: the message and exit code [`EXIT_USAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Splits `--opt=value`, `-xVALUE` and `-x VALUE` forms into (flag, inline value).
fn split_opt(arg: &str) -> (String, Option<String>) {
    if let Some(long) = arg.strip_prefix("--") {
        match long.split_once('=') {
            Some((k, v)) => (format!("--{k}"), Some(v.to_owned())),
            None => (arg.to_owned(), None),
        }
    } else if arg.len() > 2 && arg.starts_with('-') {
        (arg[..2].to_owned(), Some(arg[2..].to_owned()))
    } else {
        (arg.to_owned(), None)
    }
}

struct ArgIter<'a> {
    args: &'a [String],
    i: usize,
    prog: &'a str,
}

impl ArgIter<'_> {
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, UsageError> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .args
            .get(self.i)
            .ok_or_else(|| UsageError(format!("{}: option {flag} needs a value", self.prog)))?;
        self.i += 1;
        Ok(v.clone())
    }
}

fn parse_lifetime(prog: &str, v: &str) -> Result<Lifetime, UsageError> {
    match v {
        "reboot" | "status" => Ok(Lifetime::Reboot),
        "forever" | "nodes" => Ok(Lifetime::Forever),
        other => Err(UsageError(format!(
            "{prog}: invalid lifetime `{other}` (expected reboot or forever)"
        ))),
    }
}

#[derive(Default)]
struct AttrArgs {
    name: Option<String>,
    value: Option<String>,
    delete: bool,
    query: bool,
    quiet: bool,
    node: Option<String>,
    lifetime: Option<Lifetime>,
    promotion: Option<Option<String>>,
    default: Option<String>,
}

const ATTRIBUTE_HELP: &str = "\
crm_attribute (clusterd shim): read and write node attributes in clusterd
  -n, --name=NAME        attribute name
  -v, --update=VALUE     set the attribute
  -D, --delete           delete the attribute
  -G, --query            print the attribute
  -q, --quiet            print only the value
  -N, --node=NODE        node (default: this node)
  -l, --lifetime=reboot|forever
  -t, --type=status|nodes
  -p, --promotion[=RSC]  the promotion score of RSC (default $OCF_RESOURCE_INSTANCE)
  -d, --default=VALUE    value printed by -G when the attribute is missing
";

const MASTER_HELP: &str = "\
crm_master (clusterd shim): set this resource's promotion score on this node
  -v, --update=SCORE  -D, --delete  -G, --query  -q, --quiet  -l, --lifetime=reboot|forever
  -N, --node=NODE     -r, --resource=RSC (default $OCF_RESOURCE_INSTANCE)
";

const NODE_HELP: &str = "\
crm_node (clusterd shim): cluster membership as clusterd sees it
  -n, --name       this node's name      -l, --list       ID NAME member|lost lines
  -p, --partition  members, one line     -q, --quorum     1 if quorate, else 0
  -i, --cluster-id this node's id
";

/// Parses a shim invocation: `prog` is the name it was started as (`crm_attribute`, ...).
pub fn parse(prog: &str, args: &[String], env: &ShimEnv) -> Result<ShimCommand, UsageError> {
    match prog {
        "crm_node" => parse_node(args, env),
        "crm_master" | "crm_attribute" => parse_attribute(prog, args, env),
        "pacemakerd" => match args.first().map(String::as_str) {
            Some("-$" | "--version") => Ok(ShimCommand::Print(format!("Pacemaker {PACEMAKER_VERSION}\n"))),
            _ => Err(UsageError(
                "pacemakerd: this is clusterd's shim; it only answers --version (clusterd is the cluster manager here)".into(),
            )),
        },
        other => Err(UsageError(format!("{other}: not a clusterd shim name"))),
    }
}

fn parse_node(args: &[String], env: &ShimEnv) -> Result<ShimCommand, UsageError> {
    let mut what: Option<&str> = None;
    for a in args {
        let w = match a.as_str() {
            "-n" | "--name" => "name",
            "-l" | "--list" => "list",
            "-p" | "--partition" => "partition",
            "-q" | "--quorum" => "quorum",
            "-i" | "--cluster-id" => "id",
            "-h" | "--help" | "-?" => return Ok(ShimCommand::Print(NODE_HELP.into())),
            "--version" | "-$" => {
                return Ok(ShimCommand::Print(format!(
                    "Pacemaker {PACEMAKER_VERSION} (clusterd shim)\n"
                )));
            }
            "-V" | "--verbose" | "-Q" | "--quiet" => continue,
            other => {
                return Err(UsageError(format!(
                    "crm_node: unknown option `{other}`\n{NODE_HELP}"
                )));
            }
        };
        if what.replace(w).is_some_and(|prev| prev != w) {
            return Err(UsageError(
                "crm_node: give only one of -n, -l, -p, -q, -i".into(),
            ));
        }
    }
    let node = || {
        env.node
            .clone()
            .ok_or_else(|| UsageError("crm_node: CLUSTERD_NODE is not set".into()))
    };
    Ok(match what {
        Some("name") => ShimCommand::PrintNodeName,
        Some("list") => ShimCommand::Request(AttrRequest::Nodes, Output::NodeList),
        Some("partition") => ShimCommand::Request(AttrRequest::Nodes, Output::Partition),
        Some("quorum") => ShimCommand::Request(AttrRequest::Nodes, Output::Quorum),
        Some(_) => ShimCommand::Request(AttrRequest::Nodes, Output::NodeId(node()?)),
        None => return Err(UsageError(format!("crm_node: nothing to do\n{NODE_HELP}"))),
    })
}

fn parse_attribute(prog: &str, args: &[String], env: &ShimEnv) -> Result<ShimCommand, UsageError> {
    let is_master = prog == "crm_master";
    let mut a = AttrArgs::default();
    let mut it = ArgIter { args, i: 0, prog };
    while it.i < args.len() {
        let raw = &args[it.i];
        it.i += 1;
        let (flag, inline) = split_opt(raw);
        match flag.as_str() {
            "-n" | "--name" | "--attr-name" if !is_master => {
                a.name = Some(it.value(&flag, inline)?)
            }
            "-v" | "--update" | "--value" => a.value = Some(it.value(&flag, inline)?),
            "-D" | "--delete" | "--delete-attr" => a.delete = true,
            "-G" | "--query" | "--get-value" => a.query = true,
            "-q" | "--quiet" => a.quiet = true,
            "-Q" => a.quiet = true,
            "-N" | "--node" | "-U" | "--node-uname" => a.node = Some(it.value(&flag, inline)?),
            "-l" | "--lifetime" => {
                a.lifetime = Some(parse_lifetime(prog, &it.value(&flag, inline)?)?)
            }
            "-t" | "--type" if !is_master => {
                let t = it.value(&flag, inline)?;
                a.lifetime = Some(match t.as_str() {
                    "status" => Lifetime::Reboot,
                    "nodes" => Lifetime::Forever,
                    other => {
                        return Err(UsageError(format!(
                            "{prog}: --type {other} is not served to agents under clusterd \
                             (only node attributes: status or nodes); use clusterctl property set"
                        )));
                    }
                });
            }
            // Optional argument: `-p`, `-pRSC`, `--promotion`, `--promotion=RSC`.
            "-p" | "--promotion" if !is_master => a.promotion = Some(inline),
            "-r" | "--resource" if is_master => a.promotion = Some(Some(it.value(&flag, inline)?)),
            "-d" | "--default" => a.default = Some(it.value(&flag, inline)?),
            "-i" | "--id" | "--attr-id" | "-s" | "--set-name" => {
                let _ = it.value(&flag, inline)?;
            }
            "-V" | "--verbose" => {}
            "-h" | "--help" | "-?" => {
                return Ok(ShimCommand::Print(
                    if is_master {
                        MASTER_HELP
                    } else {
                        ATTRIBUTE_HELP
                    }
                    .into(),
                ));
            }
            "--version" | "-$" => {
                return Ok(ShimCommand::Print(format!(
                    "Pacemaker {PACEMAKER_VERSION} (clusterd shim)\n"
                )));
            }
            _ => {
                let help = if is_master {
                    MASTER_HELP
                } else {
                    ATTRIBUTE_HELP
                };
                return Err(UsageError(format!(
                    "{prog}: unknown option `{raw}`\n{help}"
                )));
            }
        }
    }
    if is_master && a.promotion.is_none() {
        a.promotion = Some(None);
    }
    let promotion = a.promotion.is_some();
    let name = match a.promotion {
        Some(rsc) => {
            let rsc = rsc.or_else(|| env.resource_instance.clone()).ok_or_else(|| {
                UsageError(format!(
                    "{prog}: no resource: OCF_RESOURCE_INSTANCE is not set (run from an agent, or pass {})",
                    if is_master { "-r RSC" } else { "--promotion=RSC" }
                ))
            })?;
            promotion_attr(&rsc, env.globally_unique)
        }
        None => a
            .name
            .ok_or_else(|| UsageError(format!("{prog}: no attribute name (-n NAME)")))?,
    };
    if name.is_empty() || name.contains(['\n', '\0']) {
        return Err(UsageError(format!(
            "{prog}: invalid attribute name {name:?}"
        )));
    }
    // Promotion scores are transient unless told otherwise (Pacemaker's --promotion default).
    let lifetime = a.lifetime.unwrap_or(if promotion {
        Lifetime::Reboot
    } else {
        Lifetime::Forever
    });
    let node = a.node;
    let n_ops = usize::from(a.value.is_some()) + usize::from(a.delete) + usize::from(a.query);
    if n_ops > 1 {
        return Err(UsageError(format!("{prog}: give only one of -v, -D, -G")));
    }
    let scope = match lifetime {
        Lifetime::Reboot => "status",
        Lifetime::Forever => "nodes",
    };
    Ok(if let Some(value) = a.value {
        if promotion && !valid_score(&value) {
            return Err(UsageError(format!(
                "{prog}: promotion score `{value}` is not an integer or ±INFINITY"
            )));
        }
        ShimCommand::Request(
            AttrRequest::Set {
                node,
                name,
                value,
                lifetime,
            },
            Output::Silent,
        )
    } else if a.delete {
        ShimCommand::Request(
            AttrRequest::Delete {
                node,
                name,
                lifetime,
            },
            Output::Silent,
        )
    } else {
        // Pacemaker's default action is a query.
        let out = Output::Value {
            quiet: a.quiet,
            default: a.default,
            scope,
            name: name.clone(),
        };
        ShimCommand::Request(
            AttrRequest::Query {
                node,
                name,
                lifetime,
            },
            out,
        )
    })
}

/// An integer score or `INFINITY`, `+INFINITY`, `-INFINITY` (case-insensitive).
pub fn valid_score(v: &str) -> bool {
    let t = v.trim();
    let u = t.trim_start_matches(['+', '-']);
    u.eq_ignore_ascii_case("INFINITY") || t.parse::<i64>().is_ok()
}

/// Renders a response for the user; returns (stdout text, stderr text, exit code).
pub fn render(
    out: &Output,
    resp: &AttrResponse,
    local_node: Option<&str>,
) -> (String, String, i32) {
    if let AttrResponse::Error { message } = resp {
        return (
            String::new(),
            format!("Error performing operation: {message}\n"),
            1,
        );
    }
    match (out, resp) {
        (Output::Silent, _) => (String::new(), String::new(), 0),
        (
            Output::Value {
                quiet,
                default,
                scope,
                name,
            },
            AttrResponse::Value { value },
        ) => match value.as_ref().or(default.as_ref()) {
            Some(v) if *quiet => (format!("{v}\n"), String::new(), 0),
            Some(v) => (
                format!("scope={scope}  name={name} value={v}\n"),
                String::new(),
                0,
            ),
            None => (
                String::new(),
                "Error performing operation: No such device or address\n".into(),
                EXIT_NOSUCH,
            ),
        },
        (Output::NodeList, AttrResponse::Nodes { nodes, .. }) => {
            let s: String = nodes
                .iter()
                .map(|(id, n, up)| format!("{id} {n} {}\n", if *up { "member" } else { "lost" }))
                .collect();
            (s, String::new(), 0)
        }
        (Output::Partition, AttrResponse::Nodes { nodes, .. }) => {
            let up: Vec<&str> = nodes.iter().filter(|n| n.2).map(|n| n.1.as_str()).collect();
            (format!("{}\n", up.join(" ")), String::new(), 0)
        }
        (Output::Quorum, AttrResponse::Nodes { quorate, .. }) => {
            (format!("{}\n", u8::from(*quorate)), String::new(), 0)
        }
        (Output::NodeId(me), AttrResponse::Nodes { nodes, .. }) => {
            let me = local_node.unwrap_or(me);
            match nodes.iter().find(|n| n.1 == me) {
                Some((id, ..)) => (format!("{id}\n"), String::new(), 0),
                None => (
                    String::new(),
                    format!("crm_node: node {me} is not in the cluster\n"),
                    EXIT_NOSUCH,
                ),
            }
        }
        (_, other) => (
            String::new(),
            format!("unexpected answer from clusterd: {other:?}\n"),
            1,
        ),
    }
}

/// Runs a shim invocation against clusterd's control socket (`CLUSTERD_CONTROL`); returns the
/// exit code after printing what the real tool prints.
pub fn run(prog: &str, args: &[String]) -> i32 {
    let env = ShimEnv::from_process();
    let cmd = match parse(prog, args, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    let (req, out) = match cmd {
        ShimCommand::Print(text) => {
            print!("{text}");
            return 0;
        }
        ShimCommand::PrintNodeName => match &env.node {
            Some(n) => {
                println!("{n}");
                return 0;
            }
            None => {
                eprintln!("{prog}: CLUSTERD_NODE is not set (not running under clusterd)");
                return EXIT_UNAVAILABLE;
            }
        },
        ShimCommand::Request(req, out) => (req, out),
    };
    let Some(socket) = std::env::var_os("CLUSTERD_CONTROL").filter(|s| !s.is_empty()) else {
        eprintln!("{prog}: CLUSTERD_CONTROL is not set (not running under clusterd)");
        return EXIT_UNAVAILABLE;
    };
    let socket = std::path::PathBuf::from(socket);
    match execute(&socket, env.node.as_deref(), req) {
        Ok(resp) => {
            let (stdout, stderr, code) = render(&out, &resp, env.node.as_deref());
            print!("{stdout}");
            eprint!("{stderr}");
            code
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            EXIT_UNAVAILABLE
        }
    }
}

/// How many times a permanent-attribute edit is retried when the configuration changed
/// between reading and pushing it.
const PUSH_RETRIES: usize = 5;

/// Carries out `req` over the control protocol.
pub fn execute(
    socket: &std::path::Path,
    local: Option<&str>,
    req: AttrRequest,
) -> Result<AttrResponse, String> {
    use clusterd_core::control::{Request, Response};
    let local_node = || {
        local
            .map(str::to_owned)
            .ok_or_else(|| "CLUSTERD_NODE is not set and no -N NODE given".to_owned())
    };
    let call = |r: &Request| crate::server::request_blocking(socket, r);
    let status = || match call(&Request::Status)? {
        Response::Status { cib, status, .. } => Ok((cib, status)),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    };
    match req {
        AttrRequest::Set {
            node,
            name,
            value,
            lifetime: Lifetime::Reboot,
        } => {
            let node = node.map_or_else(local_node, Ok)?;
            simple(call(&Request::SetNodeAttribute {
                node,
                name,
                value: Some(value),
            })?)
        }
        AttrRequest::Delete {
            node,
            name,
            lifetime: Lifetime::Reboot,
        } => {
            let node = node.map_or_else(local_node, Ok)?;
            simple(call(&Request::SetNodeAttribute {
                node,
                name,
                value: None,
            })?)
        }
        AttrRequest::Set {
            node,
            name,
            value,
            lifetime: Lifetime::Forever,
        } => {
            let node = node.map_or_else(local_node, Ok)?;
            edit_permanent(socket, &node, &name, Some(value))
        }
        AttrRequest::Delete {
            node,
            name,
            lifetime: Lifetime::Forever,
        } => {
            let node = node.map_or_else(local_node, Ok)?;
            edit_permanent(socket, &node, &name, None)
        }
        AttrRequest::Query {
            node,
            name,
            lifetime,
        } => {
            let node = node.map_or_else(local_node, Ok)?;
            let (cib, st) = status()?;
            let value = match lifetime {
                Lifetime::Reboot => st
                    .nodes
                    .get(&node)
                    .and_then(|n| n.attributes.get(&name))
                    .cloned(),
                Lifetime::Forever => cib
                    .node(&node)
                    .and_then(|n| n.attributes.get(&name))
                    .cloned(),
            };
            Ok(AttrResponse::Value { value })
        }
        AttrRequest::Nodes => {
            let (cib, st) = status()?;
            let mut nodes = Vec::new();
            for (i, n) in cib.nodes.iter().enumerate() {
                let id =
                    n.id.as_deref()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| u32::try_from(i + 1).unwrap_or(u32::MAX));
                nodes.push((
                    id,
                    n.name.clone(),
                    st.nodes.get(&n.name).is_some_and(|s| s.online),
                ));
            }
            Ok(AttrResponse::Nodes {
                nodes,
                quorate: st.has_quorum,
            })
        }
    }
}

fn simple(resp: clusterd_core::control::Response) -> Result<AttrResponse, String> {
    use clusterd_core::control::Response;
    Ok(match resp {
        Response::Ok | Response::Pushed { .. } => AttrResponse::Ok,
        Response::Error { message, .. } => AttrResponse::Error { message },
        other => AttrResponse::Error {
            message: format!("unexpected answer {other:?}"),
        },
    })
}

fn edit_permanent(
    socket: &std::path::Path,
    node: &str,
    name: &str,
    value: Option<String>,
) -> Result<AttrResponse, String> {
    use clusterd_core::control::{ErrorKind, Request, Response};
    for _ in 0..PUSH_RETRIES {
        let mut cib = match crate::server::request_blocking(socket, &Request::GetCib)? {
            Response::Cib { cib } => cib,
            other => return simple(other),
        };
        if cib.node(node).is_none() {
            return Ok(AttrResponse::Error {
                message: format!("no node named {node}"),
            });
        }
        let expected = cib.version;
        let attrs = &mut cib.node_mut(node).attributes;
        match &value {
            Some(v) => {
                attrs.insert(name.to_owned(), v.clone());
            }
            None => {
                attrs.remove(name);
            }
        }
        cib.bump_epoch();
        match crate::server::request_blocking(
            socket,
            &Request::PushCib {
                cib,
                expected: Some(expected),
            },
        )? {
            Response::Error {
                kind: ErrorKind::Stale,
                ..
            } => continue,
            other => return simple(other),
        }
    }
    Ok(AttrResponse::Error {
        message: "the configuration kept changing; try again".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ShimEnv {
        ShimEnv {
            resource_instance: Some("db:1".into()),
            globally_unique: false,
            node: Some("n1".into()),
        }
    }

    fn p(prog: &str, args: &[&str]) -> Result<ShimCommand, UsageError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse(prog, &args, &env())
    }

    fn set(name: &str, value: &str, lifetime: Lifetime) -> ShimCommand {
        ShimCommand::Request(
            AttrRequest::Set {
                node: None,
                name: name.into(),
                value: value.into(),
                lifetime,
            },
            Output::Silent,
        )
    }

    #[test]
    fn stateful_and_ocf_promotion_score_forms() {
        // Debian's Stateful.
        assert_eq!(
            p("crm_attribute", &["--promotion", "-v", "10"]).unwrap(),
            set("master-db", "10", Lifetime::Reboot)
        );
        assert_eq!(
            p("crm_attribute", &["--promotion", "-D"]).unwrap(),
            ShimCommand::Request(
                AttrRequest::Delete {
                    node: None,
                    name: "master-db".into(),
                    lifetime: Lifetime::Reboot
                },
                Output::Silent
            )
        );
        // ocf_promotion_score, both branches.
        assert_eq!(
            p("crm_attribute", &["-p", "-v", "5"]).unwrap(),
            set("master-db", "5", Lifetime::Reboot)
        );
        assert_eq!(
            p("crm_master", &["-l", "reboot", "-v", "100"]).unwrap(),
            set("master-db", "100", Lifetime::Reboot)
        );
        assert_eq!(
            p("crm_master", &["-l", "reboot", "-v", "-INFINITY"]).unwrap(),
            set("master-db", "-INFINITY", Lifetime::Reboot)
        );
        // Explicit resource, inline values.
        assert_eq!(
            p("crm_attribute", &["--promotion=web", "--update=7"]).unwrap(),
            set("master-web", "7", Lifetime::Reboot)
        );
        assert_eq!(
            p("crm_master", &["-r", "web", "-v7"]).unwrap(),
            set("master-web", "7", Lifetime::Reboot)
        );
    }

    #[test]
    fn plain_attributes_and_queries() {
        assert_eq!(
            p(
                "crm_attribute",
                &["-N", "n2", "-n", "site", "-v", "a", "-l", "forever"]
            )
            .unwrap(),
            ShimCommand::Request(
                AttrRequest::Set {
                    node: Some("n2".into()),
                    name: "site".into(),
                    value: "a".into(),
                    lifetime: Lifetime::Forever
                },
                Output::Silent
            )
        );
        assert_eq!(
            p("crm_master", &["-G", "-q", "-l", "reboot"]).unwrap(),
            ShimCommand::Request(
                AttrRequest::Query {
                    node: None,
                    name: "master-db".into(),
                    lifetime: Lifetime::Reboot
                },
                Output::Value {
                    quiet: true,
                    default: None,
                    scope: "status",
                    name: "master-db".into()
                }
            )
        );
        // Default action is a query.
        assert!(matches!(
            p("crm_attribute", &["-n", "x", "-t", "status"]).unwrap(),
            ShimCommand::Request(AttrRequest::Query { .. }, _)
        ));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        assert_eq!(
            p("crm_attribute", &["-v", "1"]).unwrap_err().0,
            "crm_attribute: no attribute name (-n NAME)"
        );
        assert!(
            p("crm_attribute", &["--bogus"])
                .unwrap_err()
                .0
                .starts_with("crm_attribute: unknown option `--bogus`")
        );
        assert_eq!(
            p("crm_master", &["-v"]).unwrap_err().0,
            "crm_master: option -v needs a value"
        );
        assert_eq!(
            p("crm_master", &["-v", "lots"]).unwrap_err().0,
            "crm_master: promotion score `lots` is not an integer or ±INFINITY"
        );
        assert!(
            p("crm_attribute", &["-n", "x", "-t", "crm_config"])
                .unwrap_err()
                .0
                .contains("crm_config")
        );
        let no_env = ShimEnv::default();
        let err = parse("crm_master", &["-v".into(), "1".into()], &no_env).unwrap_err();
        assert!(err.0.contains("OCF_RESOURCE_INSTANCE"), "{err}");
    }

    /// The forms Debian's other agents use (rabbitmq-server-ha, SAPInstance, redis).
    #[test]
    fn long_forms_of_debian_agents() {
        assert_eq!(
            p(
                "crm_attribute",
                &[
                    "--lifetime=reboot",
                    "--name=rabbit-master",
                    "--node=n2",
                    "--query"
                ]
            )
            .unwrap(),
            ShimCommand::Request(
                AttrRequest::Query {
                    node: Some("n2".into()),
                    name: "rabbit-master".into(),
                    lifetime: Lifetime::Reboot
                },
                Output::Value {
                    quiet: false,
                    default: None,
                    scope: "status",
                    name: "rabbit-master".into()
                }
            )
        );
        assert_eq!(
            p(
                "crm_attribute",
                &["-N", "n1", "-l", "reboot", "--name", "x", "--delete"]
            )
            .unwrap(),
            ShimCommand::Request(
                AttrRequest::Delete {
                    node: Some("n1".into()),
                    name: "x".into(),
                    lifetime: Lifetime::Reboot
                },
                Output::Silent
            )
        );
        assert_eq!(
            p("crm_master", &["-v", "50", "-l", "reboot"]).unwrap(),
            set("master-db", "50", Lifetime::Reboot)
        );
        assert!(p("crm_attribute", &["-n", "x", "-s", "set1", "-v", "1"]).is_ok());
    }

    #[test]
    fn clone_suffix_is_stripped_unless_globally_unique() {
        assert_eq!(promotion_attr("db:0", false), "master-db");
        assert_eq!(promotion_attr("db:0", true), "master-db:0");
        assert_eq!(promotion_attr("db", false), "master-db");
        assert_eq!(promotion_attr("a:b", false), "master-a:b");
    }

    #[test]
    fn pacemakerd_only_tells_its_version() {
        assert_eq!(
            p("pacemakerd", &["-$"]).unwrap(),
            ShimCommand::Print("Pacemaker 2.1.5\n".into())
        );
        assert!(p("pacemakerd", &[]).is_err());
    }

    #[test]
    fn crm_node_forms() {
        assert_eq!(p("crm_node", &["-n"]).unwrap(), ShimCommand::PrintNodeName);
        assert_eq!(
            p("crm_node", &["-l"]).unwrap(),
            ShimCommand::Request(AttrRequest::Nodes, Output::NodeList)
        );
        assert!(p("crm_node", &["-n", "-l"]).is_err());
        let nodes = AttrResponse::Nodes {
            nodes: vec![(1, "n1".into(), true), (2, "n2".into(), false)],
            quorate: true,
        };
        assert_eq!(
            render(&Output::NodeList, &nodes, None).0,
            "1 n1 member\n2 n2 lost\n"
        );
        assert_eq!(render(&Output::Partition, &nodes, None).0, "n1\n");
        assert_eq!(render(&Output::Quorum, &nodes, None).0, "1\n");
        assert_eq!(render(&Output::NodeId("n2".into()), &nodes, None).0, "2\n");
    }

    #[test]
    fn query_rendering_matches_crm_attribute() {
        let out = Output::Value {
            quiet: false,
            default: None,
            scope: "status",
            name: "master-db".into(),
        };
        let v = AttrResponse::Value {
            value: Some("10".into()),
        };
        assert_eq!(
            render(&out, &v, None),
            (
                "scope=status  name=master-db value=10\n".into(),
                String::new(),
                0
            )
        );
        let none = AttrResponse::Value { value: None };
        assert_eq!(render(&out, &none, None).2, EXIT_NOSUCH);
        let with_default = Output::Value {
            quiet: true,
            default: Some("0".into()),
            scope: "status",
            name: "x".into(),
        };
        assert_eq!(render(&with_default, &none, None).0, "0\n");
    }
}

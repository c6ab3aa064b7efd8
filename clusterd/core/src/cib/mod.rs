//! The CIB (cluster information base): the typed, versioned cluster configuration.
//!
//! The model mirrors Pacemaker's `<configuration>` section so that import and export of
//! Pacemaker XML are loss-free for everything we support: nodes with permanent attributes,
//! primitives, groups, clones and promotable clones, location / colocation / order constraints,
//! cluster properties, `rsc_defaults` and `op_defaults`. Meta attributes stay string maps (as in
//! Pacemaker, unknown ones are kept and passed to agents); typed accessors read the ones the
//! scheduler understands, with Pacemaker's defaults.
//!
//! Invariants (checked by [`Cib::validate`], which every edit and load runs):
//! - every resource id (primitive, group, clone) is unique and a valid XML id;
//! - constraint ids are unique; constraints name resources that exist (the linter reports those
//!   that do not; validation refuses them only for new edits — see `pcs`).

mod accessors;
mod file;
mod validate;

pub use accessors::*;
pub use file::{CIB_FILE_FORMAT, CIB_FILE_FORMAT_VERSION, CibFile, CibFormat, FileError};
pub use validate::{ValidationError, is_valid_id};

use crate::score::Score;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Pacemaker's configuration version tuple. Ordered lexicographically: the highest wins when
/// nodes join, and a push whose version is not newer than the cluster's is refused as stale.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct CibVersion {
    pub admin_epoch: u64,
    pub epoch: u64,
    pub num_updates: u64,
}

impl fmt::Display for CibVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.admin_epoch, self.epoch, self.num_updates
        )
    }
}

/// A whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cib {
    pub version: CibVersion,
    /// `cluster-name` as `pcs status` prints it (also kept as a property in Pacemaker XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// `crm_config` cluster properties (`stonith-enabled`, `no-quorum-policy`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `rsc_defaults` meta attributes (`resource-stickiness`, `migration-threshold`, ...).
    #[serde(default)]
    pub rsc_defaults: BTreeMap<String, String>,
    /// `op_defaults` (`timeout`, ...).
    #[serde(default)]
    pub op_defaults: BTreeMap<String, String>,
}

/// A configured node with its permanent attributes (`standby`, `maintenance`, user attributes
/// used by location rules).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Pacemaker's node id (corosync nodeid); kept for XML round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A resource agent: `ocf:PROVIDER:TYPE`, `systemd:UNIT`, `lsb:NAME`, `stonith:TYPE`...
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Agent {
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Agent {
    pub fn ocf(provider: &str, kind: &str) -> Agent {
        Agent {
            class: "ocf".into(),
            provider: Some(provider.into()),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(p) => write!(f, "{}:{}:{}", self.class, p, self.kind),
            None => write!(f, "{}:{}", self.class, self.kind),
        }
    }
}

/// An operation definition (`op monitor interval=30s timeout=20s role=Promoted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `start`, `stop`, `monitor`, `promote`, `demote`, `notify`, ...
    pub name: String,
    pub interval_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Any other attribute (`on-fail`, `OCF_CHECK_LEVEL`, `start-delay`, ...), kept verbatim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// A primitive resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primitive {
    pub id: String,
    pub agent: Agent,
    /// Instance attributes, passed to the agent as `OCF_RESKEY_<name>`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Meta attributes (`target-role`, `resource-stickiness`, ...).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub ops: Vec<Op>,
}

/// A group: members start in order and are colocated with INFINITY, each with the one before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub members: Vec<Primitive>,
}

/// What a clone clones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneChild {
    Primitive(Primitive),
    Group(Group),
}

impl CloneChild {
    pub fn id(&self) -> &str {
        match self {
            CloneChild::Primitive(p) => &p.id,
            CloneChild::Group(g) => &g.id,
        }
    }
    pub fn primitives(&self) -> Vec<&Primitive> {
        match self {
            CloneChild::Primitive(p) => vec![p],
            CloneChild::Group(g) => g.members.iter().collect(),
        }
    }
}

/// A clone; `promotable` makes it a promotable clone (Pacemaker's old master/slave resource).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clone {
    pub id: String,
    #[serde(default)]
    pub promotable: bool,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub child: CloneChild,
}

/// A top-level resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Primitive(Primitive),
    Group(Group),
    Clone(Clone),
}

impl Resource {
    pub fn id(&self) -> &str {
        match self {
            Resource::Primitive(p) => &p.id,
            Resource::Group(g) => &g.id,
            Resource::Clone(c) => &c.id,
        }
    }
    pub fn meta(&self) -> &BTreeMap<String, String> {
        match self {
            Resource::Primitive(p) => &p.meta,
            Resource::Group(g) => &g.meta,
            Resource::Clone(c) => &c.meta,
        }
    }
    pub fn meta_mut(&mut self) -> &mut BTreeMap<String, String> {
        match self {
            Resource::Primitive(p) => &mut p.meta,
            Resource::Group(g) => &mut g.meta,
            Resource::Clone(c) => &mut c.meta,
        }
    }
    /// Every primitive inside this resource, in configuration order.
    pub fn primitives(&self) -> Vec<&Primitive> {
        match self {
            Resource::Primitive(p) => vec![p],
            Resource::Group(g) => g.members.iter().collect(),
            Resource::Clone(c) => c.child.primitives(),
        }
    }
}

/// A resource role, with Pacemaker's current names; the old names (`Master`, `Slave`) parse too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Stopped,
    Started,
    Unpromoted,
    Promoted,
}

impl Role {
    /// Parses `Stopped`, `Started`, `Unpromoted`/`Slave`, `Promoted`/`Master` (any case).
    pub fn parse(text: &str) -> Option<Role> {
        match text.to_ascii_lowercase().as_str() {
            "stopped" => Some(Role::Stopped),
            "started" => Some(Role::Started),
            "unpromoted" | "slave" => Some(Role::Unpromoted),
            "promoted" | "master" => Some(Role::Promoted),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stopped => "Stopped",
            Role::Started => "Started",
            Role::Unpromoted => "Unpromoted",
            Role::Promoted => "Promoted",
        }
    }
    /// The name Pacemaker 2.1 writes in XML (`Master`/`Slave` are still what 2.1 emits).
    pub fn legacy_name(self) -> &'static str {
        match self {
            Role::Unpromoted => "Slave",
            Role::Promoted => "Master",
            r => r.as_str(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action named in an order constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderAction {
    Start,
    Stop,
    Promote,
    Demote,
}

impl OrderAction {
    pub fn parse(text: &str) -> Option<OrderAction> {
        match text.to_ascii_lowercase().as_str() {
            "start" => Some(OrderAction::Start),
            "stop" => Some(OrderAction::Stop),
            "promote" => Some(OrderAction::Promote),
            "demote" => Some(OrderAction::Demote),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::Start => "start",
            OrderAction::Stop => "stop",
            OrderAction::Promote => "promote",
            OrderAction::Demote => "demote",
        }
    }
    /// The action that undoes this one (symmetrical orders apply to the inverses in reverse).
    pub fn inverse(self) -> OrderAction {
        match self {
            OrderAction::Start => OrderAction::Stop,
            OrderAction::Stop => OrderAction::Start,
            OrderAction::Promote => OrderAction::Demote,
            OrderAction::Demote => OrderAction::Promote,
        }
    }
}

impl fmt::Display for OrderAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Order kinds (Pacemaker Explained, "Ordering Constraints").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderKind {
    /// `then` happens only after `first` completed; if `first` must stop, `then` stops first.
    #[default]
    Mandatory,
    /// Applies only when both actions are in the same transition.
    Optional,
    /// The two never run at the same time, in either order.
    Serialize,
}

impl OrderKind {
    pub fn parse(text: &str) -> Option<OrderKind> {
        match text.to_ascii_lowercase().as_str() {
            "mandatory" => Some(OrderKind::Mandatory),
            "optional" | "advisory" => Some(OrderKind::Optional),
            "serialize" => Some(OrderKind::Serialize),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Mandatory => "Mandatory",
            OrderKind::Optional => "Optional",
            OrderKind::Serialize => "Serialize",
        }
    }
}

/// A location constraint: a score for one node, or rules over node attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub id: String,
    pub rsc: String,
    /// Only instances in this role are affected (promotable clones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub target: LocationTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationTarget {
    Node { node: String, score: Score },
    Rules(Vec<Rule>),
}

/// A location rule: `score` applies on every node where the expressions hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub score: RuleScore,
    #[serde(default)]
    pub boolean_op: BoolOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub expressions: Vec<Expression>,
}

/// A rule's score: a constant or the value of a node attribute (`score-attribute`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScore {
    Value(Score),
    Attribute(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoolOp {
    #[default]
    And,
    Or,
}

/// A node-attribute expression (`#uname eq node1`, `ssd defined`, `cores gt 4`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expression {
    pub attribute: String,
    pub op: ExprOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub value_type: ValueType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExprOp {
    Lt,
    Gt,
    Lte,
    Gte,
    Eq,
    Ne,
    Defined,
    NotDefined,
}

impl ExprOp {
    pub fn parse(text: &str) -> Option<ExprOp> {
        match text.to_ascii_lowercase().as_str() {
            "lt" => Some(ExprOp::Lt),
            "gt" => Some(ExprOp::Gt),
            "lte" => Some(ExprOp::Lte),
            "gte" => Some(ExprOp::Gte),
            "eq" => Some(ExprOp::Eq),
            "ne" => Some(ExprOp::Ne),
            "defined" => Some(ExprOp::Defined),
            "not_defined" => Some(ExprOp::NotDefined),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ExprOp::Lt => "lt",
            ExprOp::Gt => "gt",
            ExprOp::Lte => "lte",
            ExprOp::Gte => "gte",
            ExprOp::Eq => "eq",
            ExprOp::Ne => "ne",
            ExprOp::Defined => "defined",
            ExprOp::NotDefined => "not_defined",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    #[default]
    String,
    Integer,
    Number,
    Version,
}

impl ValueType {
    pub fn parse(text: &str) -> Option<ValueType> {
        match text.to_ascii_lowercase().as_str() {
            "string" => Some(ValueType::String),
            "integer" | "int" => Some(ValueType::Integer),
            "number" => Some(ValueType::Number),
            "version" => Some(ValueType::Version),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Number => "number",
            ValueType::Version => "version",
        }
    }
}

/// `rsc with with_rsc`: place `rsc` relative to `with_rsc` (which is placed first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Colocation {
    pub id: String,
    pub rsc: String,
    pub with_rsc: String,
    pub score: Score,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsc_role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_rsc_role: Option<Role>,
}

/// `first_action first then then_action then`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub first: String,
    pub first_action: OrderAction,
    pub then: String,
    pub then_action: OrderAction,
    #[serde(default)]
    pub kind: OrderKind,
    /// Unset means Pacemaker's default: true, except for Serialize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetrical: Option<bool>,
}

impl Order {
    pub fn is_symmetrical(&self) -> bool {
        self.symmetrical
            .unwrap_or(self.kind != OrderKind::Serialize)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Constraint {
    Location(Location),
    Colocation(Colocation),
    Order(Order),
}

impl Constraint {
    pub fn id(&self) -> &str {
        match self {
            Constraint::Location(c) => &c.id,
            Constraint::Colocation(c) => &c.id,
            Constraint::Order(c) => &c.id,
        }
    }
    /// The resources this constraint names.
    pub fn resources(&self) -> Vec<&str> {
        match self {
            Constraint::Location(c) => vec![c.rsc.as_str()],
            Constraint::Colocation(c) => vec![c.rsc.as_str(), c.with_rsc.as_str()],
            Constraint::Order(c) => vec![c.first.as_str(), c.then.as_str()],
        }
    }
}

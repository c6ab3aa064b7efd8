//! Look-ups and typed views of the CIB: finding resources, meta attributes with Pacemaker's
//! inheritance (primitive → group → clone → `rsc_defaults`) and defaults, cluster properties.

use super::*;
use crate::score::{INFINITY, Score};

/// Where a primitive sits in the resource tree.
#[derive(Clone, Copy, Debug)]
pub struct PrimitiveRef<'a> {
    pub primitive: &'a Primitive,
    pub group: Option<&'a Group>,
    pub clone: Option<&'a Clone>,
}

/// Any resource found by id.
#[derive(Clone, Copy, Debug)]
pub enum ResourceRef<'a> {
    Primitive(PrimitiveRef<'a>),
    Group {
        group: &'a Group,
        clone: Option<&'a Clone>,
    },
    Clone(&'a Clone),
}

impl<'a> ResourceRef<'a> {
    pub fn id(&self) -> &'a str {
        match self {
            ResourceRef::Primitive(p) => &p.primitive.id,
            ResourceRef::Group { group, .. } => &group.id,
            ResourceRef::Clone(c) => &c.id,
        }
    }
    /// The clone this resource is, or is inside of.
    pub fn clone_parent(&self) -> Option<&'a Clone> {
        match self {
            ResourceRef::Primitive(p) => p.clone,
            ResourceRef::Group { clone, .. } => *clone,
            ResourceRef::Clone(c) => Some(c),
        }
    }
    /// True for a promotable clone and everything inside one.
    pub fn is_promotable(&self) -> bool {
        self.clone_parent().is_some_and(|c| c.promotable)
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            ResourceRef::Primitive(_) => "primitive",
            ResourceRef::Group { .. } => "group",
            ResourceRef::Clone(c) if c.promotable => "promotable clone",
            ResourceRef::Clone(_) => "clone",
        }
    }
    /// Meta attribute chain, innermost first.
    fn metas(&self) -> Vec<&'a BTreeMap<String, String>> {
        let mut out = Vec::new();
        match self {
            ResourceRef::Primitive(p) => {
                out.push(&p.primitive.meta);
                if let Some(g) = p.group {
                    out.push(&g.meta);
                }
                if let Some(c) = p.clone {
                    out.push(&c.meta);
                }
            }
            ResourceRef::Group { group, clone } => {
                out.push(&group.meta);
                if let Some(c) = clone {
                    out.push(&c.meta);
                }
            }
            ResourceRef::Clone(c) => out.push(&c.meta),
        }
        out
    }
}

/// Pacemaker's boolean spelling (`crm_is_true`).
pub fn is_true(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "y" | "1"
    )
}

/// Parses a Pacemaker duration: `30`, `30s`, `2min`, `500ms`, `1h`, `PT30S`; seconds by default.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix("PT").or_else(|| t.strip_prefix("pt")) {
        return parse_iso_time(iso);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1000,
        "ms" | "msec" | "msecs" => 1,
        "us" | "usec" => return Some(n / 1000),
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_iso_time(iso: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in iso.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let mult = match c.to_ascii_uppercase() {
            'H' => 3_600_000,
            'M' => 60_000,
            'S' => 1000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    if num.is_empty() { Some(total) } else { None }
}

/// Formats milliseconds the way pcs prints intervals (`30s`, `2min`, `500ms`).
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(60_000) && ms >= 120_000 {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `no-quorum-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoQuorumPolicy {
    Stop,
    Ignore,
    Freeze,
    Demote,
    Suicide,
}

impl Cib {
    /// Finds any resource (primitive, group or clone) by id.
    pub fn find(&self, id: &str) -> Option<ResourceRef<'_>> {
        self.find_uncached(id)
    }

    fn find_uncached(&self, id: &str) -> Option<ResourceRef<'_>> {
        for r in &self.resources {
            match r {
                Resource::Primitive(p) => {
                    if p.id == id {
                        return Some(ResourceRef::Primitive(PrimitiveRef {
                            primitive: p,
                            group: None,
                            clone: None,
                        }));
                    }
                }
                Resource::Group(g) => {
                    if g.id == id {
                        return Some(ResourceRef::Group {
                            group: g,
                            clone: None,
                        });
                    }
                    if let Some(p) = g.members.iter().find(|p| p.id == id) {
                        return Some(ResourceRef::Primitive(PrimitiveRef {
                            primitive: p,
                            group: Some(g),
                            clone: None,
                        }));
                    }
                }
                Resource::Clone(c) => {
                    if c.id == id {
                        return Some(ResourceRef::Clone(c));
                    }
                    match &c.child {
                        CloneChild::Primitive(p) => {
                            if p.id == id {
                                return Some(ResourceRef::Primitive(PrimitiveRef {
                                    primitive: p,
                                    group: None,
                                    clone: Some(c),
                                }));
                            }
                        }
                        CloneChild::Group(g) => {
                            if g.id == id {
                                return Some(ResourceRef::Group {
                                    group: g,
                                    clone: Some(c),
                                });
                            }
                            if let Some(p) = g.members.iter().find(|p| p.id == id) {
                                return Some(ResourceRef::Primitive(PrimitiveRef {
                                    primitive: p,
                                    group: Some(g),
                                    clone: Some(c),
                                }));
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// Every resource by id, for callers that look up many ids (one pass instead of one scan
    /// per look-up).
    pub fn index(&self) -> std::collections::HashMap<&str, ResourceRef<'_>> {
        let mut out = std::collections::HashMap::new();
        for r in &self.resources {
            match r {
                Resource::Primitive(p) => {
                    out.entry(p.id.as_str())
                        .or_insert(ResourceRef::Primitive(PrimitiveRef {
                            primitive: p,
                            group: None,
                            clone: None,
                        }));
                }
                Resource::Group(g) => {
                    out.entry(g.id.as_str()).or_insert(ResourceRef::Group {
                        group: g,
                        clone: None,
                    });
                    for p in &g.members {
                        out.entry(p.id.as_str())
                            .or_insert(ResourceRef::Primitive(PrimitiveRef {
                                primitive: p,
                                group: Some(g),
                                clone: None,
                            }));
                    }
                }
                Resource::Clone(c) => {
                    out.entry(c.id.as_str()).or_insert(ResourceRef::Clone(c));
                    match &c.child {
                        CloneChild::Primitive(p) => {
                            out.entry(p.id.as_str()).or_insert(ResourceRef::Primitive(
                                PrimitiveRef {
                                    primitive: p,
                                    group: None,
                                    clone: Some(c),
                                },
                            ));
                        }
                        CloneChild::Group(g) => {
                            out.entry(g.id.as_str()).or_insert(ResourceRef::Group {
                                group: g,
                                clone: Some(c),
                            });
                            for p in &g.members {
                                out.entry(p.id.as_str()).or_insert(ResourceRef::Primitive(
                                    PrimitiveRef {
                                        primitive: p,
                                        group: Some(g),
                                        clone: Some(c),
                                    },
                                ));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Every primitive with its place in the tree, in configuration order.
    pub fn primitives(&self) -> Vec<PrimitiveRef<'_>> {
        let mut out = Vec::new();
        for r in &self.resources {
            match r {
                Resource::Primitive(p) => out.push(PrimitiveRef {
                    primitive: p,
                    group: None,
                    clone: None,
                }),
                Resource::Group(g) => out.extend(g.members.iter().map(|p| PrimitiveRef {
                    primitive: p,
                    group: Some(g),
                    clone: None,
                })),
                Resource::Clone(c) => match &c.child {
                    CloneChild::Primitive(p) => out.push(PrimitiveRef {
                        primitive: p,
                        group: None,
                        clone: Some(c),
                    }),
                    CloneChild::Group(g) => out.extend(g.members.iter().map(|p| PrimitiveRef {
                        primitive: p,
                        group: Some(g),
                        clone: Some(c),
                    })),
                },
            }
        }
        out
    }

    /// Every resource id (clones, groups, primitives), in configuration order.
    pub fn resource_ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for r in &self.resources {
            out.push(r.id());
            match r {
                Resource::Primitive(_) => {}
                Resource::Group(g) => out.extend(g.members.iter().map(|p| p.id.as_str())),
                Resource::Clone(c) => {
                    out.push(c.child.id());
                    if let CloneChild::Group(g) = &c.child {
                        out.extend(g.members.iter().map(|p| p.id.as_str()));
                    }
                }
            }
        }
        out
    }

    /// The top-level resource holding `id`.
    pub fn top_level_of(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| {
            r.id() == id
                || r.primitives().iter().any(|p| p.id == id)
                || matches!(r, Resource::Clone(c) if c.child.id() == id)
        })
    }

    /// A meta attribute with inheritance: the resource, its group, its clone, then `rsc_defaults`.
    pub fn meta_of(&self, r: &ResourceRef<'_>, name: &str) -> Option<String> {
        for m in r.metas() {
            if let Some(v) = lookup_meta(m, name) {
                return Some(v.clone());
            }
        }
        lookup_meta(&self.rsc_defaults, name).cloned()
    }

    pub fn meta(&self, id: &str, name: &str) -> Option<String> {
        self.find(id).and_then(|r| self.meta_of(&r, name))
    }

    /// `resource-stickiness` (default 0).
    pub fn stickiness(&self, r: &ResourceRef<'_>) -> Score {
        self.meta_of(r, "resource-stickiness")
            .and_then(|v| Score::parse(&v))
            .unwrap_or(Score::ZERO)
    }

    /// `migration-threshold` (default INFINITY; 0 disables it).
    pub fn migration_threshold(&self, r: &ResourceRef<'_>) -> i32 {
        self.meta_of(r, "migration-threshold")
            .and_then(|v| Score::parse(&v))
            .map_or(INFINITY, |s| s.value())
    }

    /// `failure-timeout` in seconds (default 0: failures never expire).
    pub fn failure_timeout_s(&self, r: &ResourceRef<'_>) -> u64 {
        self.meta_of(r, "failure-timeout")
            .and_then(|v| parse_duration_ms(&v))
            .map_or(0, |ms| ms / 1000)
    }

    /// `priority` (default 0).
    pub fn priority(&self, r: &ResourceRef<'_>) -> i32 {
        self.meta_of(r, "priority")
            .and_then(|v| Score::parse(&v))
            .map_or(0, |s| s.value())
    }

    /// `target-role` (default Started, i.e. no limit).
    pub fn target_role(&self, r: &ResourceRef<'_>) -> Role {
        self.meta_of(r, "target-role")
            .and_then(|v| Role::parse(&v))
            .unwrap_or(Role::Started)
    }

    /// In maintenance: `maintenance-mode`, or the resource's (inherited) `maintenance` meta
    /// attribute. Nothing is done to it, its recurring monitors included.
    pub fn in_maintenance(&self, r: &ResourceRef<'_>) -> bool {
        self.maintenance_mode() || self.meta_of(r, "maintenance").is_some_and(|v| is_true(&v))
    }

    /// `is-managed` (default true), and false everywhere under `maintenance-mode`.
    pub fn is_managed(&self, r: &ResourceRef<'_>) -> bool {
        if self.maintenance_mode() {
            return false;
        }
        if self.meta_of(r, "maintenance").is_some_and(|v| is_true(&v)) {
            return false;
        }
        self.meta_of(r, "is-managed").is_none_or(|v| is_true(&v))
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        lookup_meta(&self.properties, name).map(String::as_str)
    }

    fn bool_property(&self, name: &str, default: bool) -> bool {
        self.property(name).map_or(default, is_true)
    }

    pub fn stonith_enabled(&self) -> bool {
        self.bool_property("stonith-enabled", true)
    }
    pub fn symmetric_cluster(&self) -> bool {
        self.bool_property("symmetric-cluster", true)
    }
    pub fn maintenance_mode(&self) -> bool {
        self.bool_property("maintenance-mode", false)
    }
    pub fn stop_all_resources(&self) -> bool {
        self.bool_property("stop-all-resources", false)
    }
    pub fn start_failure_is_fatal(&self) -> bool {
        self.bool_property("start-failure-is-fatal", true)
    }
    pub fn no_quorum_policy(&self) -> NoQuorumPolicy {
        match self
            .property("no-quorum-policy")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("ignore") => NoQuorumPolicy::Ignore,
            Some("freeze") => NoQuorumPolicy::Freeze,
            Some("demote") => NoQuorumPolicy::Demote,
            Some("suicide") => NoQuorumPolicy::Suicide,
            _ => NoQuorumPolicy::Stop,
        }
    }

    /// The configured node of that name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node's config entry, created when missing (`node standby` on a node never seen).
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        if let Some(i) = self.nodes.iter().position(|n| n.name == name) {
            &mut self.nodes[i]
        } else {
            self.nodes.push(Node {
                name: name.to_string(),
                id: None,
                attributes: BTreeMap::new(),
            });
            self.nodes.last_mut().expect("just pushed")
        }
    }

    /// The operation timeout for `op` (interval 0 for non-monitors) of a primitive: the op's own
    /// timeout, else `op_defaults timeout`, else Pacemaker's 20 s.
    pub fn op_timeout_ms(&self, p: &Primitive, op: &str, interval_ms: u64) -> u64 {
        p.ops
            .iter()
            .find(|o| o.name == op && o.interval_ms == interval_ms)
            .or_else(|| p.ops.iter().find(|o| o.name == op))
            .and_then(|o| o.timeout_ms)
            .or_else(|| {
                self.op_defaults
                    .get("timeout")
                    .and_then(|v| parse_duration_ms(v))
            })
            .unwrap_or(20_000)
    }

    /// Bumps the epoch after a configuration change (as `cibadmin` does): epoch + 1, updates 0.
    pub fn bump_epoch(&mut self) {
        self.version.epoch += 1;
        self.version.num_updates = 0;
    }

    /// Finds a primitive for mutation anywhere in the tree.
    pub fn primitive_mut(&mut self, id: &str) -> Option<&mut Primitive> {
        for r in &mut self.resources {
            let found = match r {
                Resource::Primitive(p) => (p.id == id).then_some(p),
                Resource::Group(g) => g.members.iter_mut().find(|p| p.id == id),
                Resource::Clone(c) => match &mut c.child {
                    CloneChild::Primitive(p) => (p.id == id).then_some(p),
                    CloneChild::Group(g) => g.members.iter_mut().find(|p| p.id == id),
                },
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Meta attributes of any resource for mutation.
    pub fn meta_mut(&mut self, id: &str) -> Option<&mut BTreeMap<String, String>> {
        for r in &mut self.resources {
            if r.id() == id {
                return Some(r.meta_mut());
            }
            match r {
                Resource::Primitive(_) => {}
                Resource::Group(g) => {
                    if let Some(p) = g.members.iter_mut().find(|p| p.id == id) {
                        return Some(&mut p.meta);
                    }
                }
                Resource::Clone(c) => match &mut c.child {
                    CloneChild::Primitive(p) => {
                        if p.id == id {
                            return Some(&mut p.meta);
                        }
                    }
                    CloneChild::Group(g) => {
                        if g.id == id {
                            return Some(&mut g.meta);
                        }
                        if let Some(p) = g.members.iter_mut().find(|p| p.id == id) {
                            return Some(&mut p.meta);
                        }
                    }
                },
            }
        }
        None
    }
}

/// Meta names are matched with `-` and `_` treated alike (Pacemaker accepts both spellings),
/// and the old `master-*` names for the `promoted-*` ones.
pub fn lookup_meta<'m>(meta: &'m BTreeMap<String, String>, name: &str) -> Option<&'m String> {
    if let Some(v) = meta.get(name) {
        return Some(v);
    }
    let alt = name.replace('-', "_");
    if let Some(v) = meta.get(&alt) {
        return Some(v);
    }
    let legacy = match name {
        "promoted-max" => Some("master-max"),
        "promoted-node-max" => Some("master-node-max"),
        _ => None,
    };
    legacy.and_then(|l| meta.get(l).or_else(|| meta.get(&l.replace('-', "_"))))
}

impl Clone {
    fn int_meta(&self, name: &str) -> Option<u32> {
        lookup_meta(&self.meta, name).and_then(|v| v.trim().parse::<u32>().ok())
    }
    /// `clone-max` (default: the number of nodes).
    pub fn clone_max(&self, node_count: usize) -> u32 {
        self.int_meta("clone-max")
            .unwrap_or(u32::try_from(node_count).unwrap_or(u32::MAX))
    }
    pub fn clone_node_max(&self) -> u32 {
        self.int_meta("clone-node-max").unwrap_or(1)
    }
    pub fn promoted_max(&self) -> u32 {
        self.int_meta("promoted-max").unwrap_or(1)
    }
    pub fn promoted_node_max(&self) -> u32 {
        self.int_meta("promoted-node-max").unwrap_or(1)
    }
    pub fn notify(&self) -> bool {
        lookup_meta(&self.meta, "notify").is_some_and(|v| is_true(v))
    }
    pub fn interleave(&self) -> bool {
        lookup_meta(&self.meta, "interleave").is_some_and(|v| is_true(v))
    }
    pub fn ordered(&self) -> bool {
        lookup_meta(&self.meta, "ordered").is_some_and(|v| is_true(v))
    }
    pub fn globally_unique(&self) -> bool {
        lookup_meta(&self.meta, "globally-unique").is_some_and(|v| is_true(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("30"), Some(30_000));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("PT1M30S"), Some(90_000));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("10x"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(format_duration_ms(120_000), "2min");
        assert_eq!(format_duration_ms(30_000), "30s");
        assert_eq!(format_duration_ms(60_000), "60s");
    }

    #[test]
    fn legacy_meta_names() {
        let mut m = BTreeMap::new();
        m.insert("master-max".to_string(), "2".to_string());
        assert_eq!(lookup_meta(&m, "promoted-max"), Some(&"2".to_string()));
    }
}

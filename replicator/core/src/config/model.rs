//! The configuration as typed values: what [`super::load`] hands the daemon and the CLI.
//!
//! Numbers carry their unit in their name (`timeout_ms`, `resync_rate_kib_s`); policies are
//! enums named with DRBD's words. Options are resolved the way drbdadm resolves them:
//! `common` < `resource` < `volume` / `on` / `connection`, the most specific setting winning.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Serialize, Serializer};

use super::error::Pos;
use super::options::{Section, Value};
use crate::types::{NodeId, Protocol};

/// Explicit settings of one level (name → value and where it was set), for the normalised
/// dump and for later lookups.
pub type OptionMap = BTreeMap<&'static str, Setting>;

/// One explicit setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The value, in the option's default unit.
    pub value: Value,
    /// Where it was set.
    #[serde(skip)]
    pub pos: Pos,
}

/// The option sections of one level (common, resource, connection...), explicit settings only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sections {
    /// `net { }` (and a resource-level `protocol`).
    pub net: OptionMap,
    /// `disk { }`: backing-device options.
    pub disk: OptionMap,
    /// `disk { }`: resync controller options.
    pub peer_device: OptionMap,
    /// `options { }`.
    pub options: OptionMap,
    /// `startup { }`.
    pub startup: OptionMap,
    /// `handlers { }`.
    pub handlers: OptionMap,
}

impl Sections {
    /// The map of `section`.
    pub fn map_mut(&mut self, section: Section) -> &mut OptionMap {
        match section {
            Section::Net => &mut self.net,
            Section::Disk => &mut self.disk,
            Section::PeerDevice => &mut self.peer_device,
            Section::Options => &mut self.options,
            Section::Startup => &mut self.startup,
            Section::Handlers => &mut self.handlers,
            Section::Global => unreachable!("global options live in Config::global"),
        }
    }

    /// Fills every option not set here from `parent` (drbdadm's `expand_opts`).
    pub fn inherit(&mut self, parent: &Sections) {
        inherit(&mut self.net, &parent.net);
        inherit(&mut self.disk, &parent.disk);
        inherit(&mut self.peer_device, &parent.peer_device);
        inherit(&mut self.options, &parent.options);
        inherit(&mut self.startup, &parent.startup);
        inherit(&mut self.handlers, &parent.handlers);
    }
}

/// Fills every option of `child` not set there from `parent`.
pub fn inherit(child: &mut OptionMap, parent: &OptionMap) {
    for (k, v) in parent {
        child.entry(k).or_insert_with(|| v.clone());
    }
}

/// Defines an enum of DRBD policy words, serialised and displayed as the word.
macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $w:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// The word in a `.res` file.
            pub fn word(self) -> &'static str { match self { $($name::$v => $w,)* } }
            /// Parses the word (already validated by the option table).
            pub fn from_word(w: &str) -> Option<Self> { match w { $($w => Some($name::$v),)* _ => None } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.word()) }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.word()) }
        }
    };
}

word_enum!(
    /// `after-sb-1pri`: split brain found with one node Primary.
    AfterSb1Pri {
        /// Do not resync; disconnect.
        Disconnect = "disconnect",
        /// Discard the Secondary's data if the after-sb-0pri policy would too.
        Consensus = "consensus",
        /// Discard the Secondary's data.
        DiscardSecondary = "discard-secondary",
        /// Follow after-sb-0pri; call pri-lost-after-sb on a losing Primary.
        CallPriLostAfterSb = "call-pri-lost-after-sb",
        /// Always follow after-sb-0pri.
        ViolentlyAs0p = "violently-as0p",
    }
);

word_enum!(
    /// `after-sb-2pri`: split brain found with both nodes Primary.
    AfterSb2Pri {
        /// Do not resync; disconnect.
        Disconnect = "disconnect",
        /// Follow after-sb-0pri; call pri-lost-after-sb on the losing Primary.
        CallPriLostAfterSb = "call-pri-lost-after-sb",
        /// Always follow after-sb-0pri.
        ViolentlyAs0p = "violently-as0p",
    }
);

word_enum!(
    /// `rr-conflict`: the resync decision contradicts the roles.
    RrConflict {
        /// Disconnect.
        Disconnect = "disconnect",
        /// Call the pri-lost handler.
        CallPriLost = "call-pri-lost",
        /// Resync to the Primary anyway.
        Violently = "violently",
        /// Disconnect and reconnect.
        RetryConnect = "retry-connect",
        /// Reverse the resync direction (protocol A only).
        AutoDiscard = "auto-discard",
    }
);

word_enum!(
    /// `fencing`: what a Primary that loses its peer does.
    Fencing {
        /// Nothing.
        DontCare = "dont-care",
        /// Call fence-peer.
        ResourceOnly = "resource-only",
        /// Freeze I/O and call fence-peer.
        ResourceAndStonith = "resource-and-stonith",
    }
);

word_enum!(
    /// A digest algorithm for online verify and checksum-based resync.
    DigestAlg {
        /// CRC32C (Castagnoli).
        Crc32c = "crc32c",
        /// MD5.
        Md5 = "md5",
        /// SHA-1.
        Sha1 = "sha1",
        /// SHA-256.
        Sha256 = "sha256",
    }
);

word_enum!(
    /// `on-io-error`: what an I/O error on the backing disk does.
    OnIoError {
        /// Mark the block out of sync and serve it from the peer.
        PassOn = "pass_on",
        /// Run the local-io-error handler.
        CallLocalIoError = "call-local-io-error",
        /// Detach the disk (Diskless; DRBD's default).
        Detach = "detach",
    }
);

/// `after-sb-0pri`: split brain found with no node Primary.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AfterSb0Pri {
    /// Do not resync; disconnect.
    Disconnect,
    /// Resync from the node that became Primary first.
    DiscardYoungerPrimary,
    /// Resync from the node that became Primary last.
    DiscardOlderPrimary,
    /// Resync from the only node that wrote, else disconnect.
    DiscardZeroChanges,
    /// Resync from the node with more changed blocks.
    DiscardLeastChanges,
    /// Discard this node's data (drbdadm's form of `discard-node-THIS`).
    DiscardLocal,
    /// Discard the peer's data.
    DiscardRemote,
    /// Always discard the named node's data.
    DiscardNode(String),
}

impl AfterSb0Pri {
    /// Parses a validated policy word.
    pub fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "disconnect" => Self::Disconnect,
            "discard-younger-primary" => Self::DiscardYoungerPrimary,
            "discard-older-primary" => Self::DiscardOlderPrimary,
            "discard-zero-changes" => Self::DiscardZeroChanges,
            "discard-least-changes" => Self::DiscardLeastChanges,
            "discard-local" => Self::DiscardLocal,
            "discard-remote" => Self::DiscardRemote,
            other => Self::DiscardNode(other.strip_prefix("discard-node-")?.to_owned()),
        })
    }
}

impl fmt::Display for AfterSb0Pri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnect => f.write_str("disconnect"),
            Self::DiscardYoungerPrimary => f.write_str("discard-younger-primary"),
            Self::DiscardOlderPrimary => f.write_str("discard-older-primary"),
            Self::DiscardZeroChanges => f.write_str("discard-zero-changes"),
            Self::DiscardLeastChanges => f.write_str("discard-least-changes"),
            Self::DiscardLocal => f.write_str("discard-local"),
            Self::DiscardRemote => f.write_str("discard-remote"),
            Self::DiscardNode(n) => write!(f, "discard-node-{n}"),
        }
    }
}

impl Serialize for AfterSb0Pri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Typed `net { }` options of a connection (or of a resource, before connections).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetOptions {
    /// When a write is acknowledged (A, B, C; default C).
    pub protocol: Protocol,
    /// Whether both nodes may be Primary (protocol C only).
    pub allow_two_primaries: bool,
    /// Split-brain policy, no Primary.
    pub after_sb_0pri: AfterSb0Pri,
    /// Split-brain policy, one Primary.
    pub after_sb_1pri: AfterSb1Pri,
    /// Split-brain policy, two Primaries.
    pub after_sb_2pri: AfterSb2Pri,
    /// Resync direction contradicting roles.
    pub rr_conflict: RrConflict,
    /// Fencing policy.
    pub fencing: Fencing,
    /// Online verify digest; `None` disables verify.
    pub verify_alg: Option<DigestAlg>,
    /// Checksum-based resync digest; `None` sends every out-of-sync block.
    pub csums_alg: Option<DigestAlg>,
    /// Reply timeout.
    pub timeout_ms: u32,
    /// Delay between connection attempts.
    pub connect_int_ms: u32,
    /// Keep-alive interval on an idle link.
    pub ping_int_ms: u32,
    /// Keep-alive reply timeout.
    pub ping_timeout_ms: u32,
    /// Missed `timeout`s before the peer is dropped (0: never).
    pub ko_count: u32,
    /// Bound on receive-side buffers, in 4 KiB pages.
    pub max_buffers: u32,
    /// TCP send buffer (0: kernel autotuning).
    pub sndbuf_size_bytes: u32,
    /// TCP receive buffer (0: kernel autotuning).
    pub rcvbuf_size_bytes: u32,
}

/// Typed backing-disk options (`disk { }`) of one node's volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskOptions {
    /// What an I/O error does.
    pub on_io_error: OnIoError,
    /// Most 4 MiB extents the activity log keeps hot.
    pub al_extents: u32,
    /// Whether the activity log is kept at all (without it a Primary crash means full resync).
    pub al_updates: bool,
    /// Whether FLUSH requests reach the backing file (fdatasync).
    pub disk_flushes: bool,
    /// Whether meta-data writes are followed by fdatasync.
    pub md_flushes: bool,
    /// Usable size limit (`size`); `None` uses the whole backing file.
    pub size_bytes: Option<u64>,
}

/// Typed resync controller options (DRBD's peer-device options in `disk { }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResyncOptions {
    /// Fixed resync rate (used when `c_plan_ahead_ms` is 0).
    pub resync_rate_kib_s: u32,
    /// Dynamic controller look-ahead; 0 selects the fixed rate.
    pub c_plan_ahead_ms: u32,
    /// Dynamic controller delay target (used when `c_fill_target_bytes` is 0).
    pub c_delay_target_ms: u32,
    /// Dynamic controller in-flight target.
    pub c_fill_target_bytes: u64,
    /// Dynamic controller ceiling (0: unlimited).
    pub c_max_rate_kib_s: u32,
    /// Resync rate below which application I/O is not throttled for resync.
    pub c_min_rate_kib_s: u32,
}

/// Handler command lines (`handlers { }`); `None` when not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Handlers {
    /// Fence the peer (exit 3..7 as DRBD defines).
    pub fence_peer: Option<String>,
    /// Lift fencing.
    pub unfence_peer: Option<String>,
    /// Split brain needs manual recovery.
    pub split_brain: Option<String>,
    /// Split brain detected (also when auto-resolved).
    pub initial_split_brain: Option<String>,
    /// This Primary lost the after-split-brain decision.
    pub pri_lost_after_sb: Option<String>,
    /// This Primary should become sync target.
    pub pri_lost: Option<String>,
    /// Before this node becomes sync target.
    pub before_resync_target: Option<String>,
    /// After this node was sync target.
    pub after_resync_target: Option<String>,
    /// Before this node becomes sync source.
    pub before_resync_source: Option<String>,
    /// Verify found out-of-sync blocks.
    pub out_of_sync: Option<String>,
    /// The connection to a peer went down.
    pub disconnected: Option<String>,
    /// The backing disk failed an I/O.
    pub local_io_error: Option<String>,
    /// Primary with no UpToDate disk anywhere.
    pub pri_on_incon_degr: Option<String>,
    /// Quorum lost.
    pub quorum_lost: Option<String>,
}

/// Where the replicated device is exported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Device {
    /// A DRBD kernel device name (`/dev/drbdN`, `drbdN`, `minor N`, `/dev/drbd_NAME minor N`):
    /// replicatord has no kernel device, and exports the resource at its default unix socket.
    Kernel {
        /// The device path as DRBD would create it.
        path: String,
        /// The minor number.
        minor: u32,
    },
    /// `nbd+unix:///EXPORT?socket=PATH`.
    NbdUnix {
        /// The NBD export name.
        export: String,
        /// The unix socket path.
        socket: String,
    },
    /// `nbd://HOST[:PORT]/EXPORT`.
    NbdTcp {
        /// Address or name to listen on.
        host: String,
        /// TCP port (10809 when not given).
        port: u16,
        /// The NBD export name.
        export: String,
    },
}

/// The NBD port IANA assigned.
pub const NBD_DEFAULT_PORT: u16 = 10809;

/// A resolved NBD export: where clients connect and with which export name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Export {
    /// A unix socket.
    Unix {
        /// Socket path.
        socket: String,
        /// Export name.
        name: String,
    },
    /// A TCP listener.
    Tcp {
        /// Host to listen on.
        host: String,
        /// Port.
        port: u16,
        /// Export name.
        name: String,
    },
}

impl Export {
    /// The export name clients ask for.
    pub fn name(&self) -> &str {
        match self {
            Export::Unix { name, .. } | Export::Tcp { name, .. } => name,
        }
    }

    /// The libnbd URI of the export (`nbd+unix:///NAME?socket=PATH`, `nbd://HOST:PORT/NAME`).
    pub fn uri(&self) -> String {
        match self {
            Export::Unix { socket, name } => format!(
                "nbd+unix:///{}?socket={}",
                uri_escape(name),
                uri_escape_path(socket)
            ),
            Export::Tcp { host, port, name } => {
                let h = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("nbd://{h}:{port}/{}", uri_escape(name))
            }
        }
    }
}

fn uri_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn uri_escape_path(s: &str) -> String {
    s.split('/').map(uri_escape).collect::<Vec<_>>().join("/")
}

/// The default unix socket of a resource whose `device` is a kernel name:
/// `STATE_DIR/RESOURCE.nbd.sock`.
pub fn default_socket(state_dir: &str, resource: &str) -> String {
    format!("{}/{resource}.nbd.sock", state_dir.trim_end_matches('/'))
}

impl Device {
    /// Where this device is exported, for resource `resource` of a daemon with state dir
    /// `state_dir`. The export name of a kernel-named device is the resource name.
    pub fn export(&self, resource: &str, state_dir: &str) -> Export {
        match self {
            Device::Kernel { .. } => Export::Unix {
                socket: default_socket(state_dir, resource),
                name: resource.to_owned(),
            },
            Device::NbdUnix { export, socket } => Export::Unix {
                socket: socket.clone(),
                name: export.clone(),
            },
            Device::NbdTcp { host, port, export } => Export::Tcp {
                host: host.clone(),
                port: *port,
                name: export.clone(),
            },
        }
    }

    /// The `device` statement's value as written in a normalised dump.
    pub fn render(&self) -> String {
        match self {
            Device::Kernel { path, minor } => format!("{path} minor {minor}"),
            other => super::options::quote_if_needed(&other.export("", "").uri()),
        }
    }
}

/// The lower-level disk of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "kebab-case")]
pub enum Disk {
    /// A backing file or block device.
    Path(String),
    /// `disk none`: a diskless node.
    None,
}

/// Where a node's meta-data lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MetaDisk {
    /// At the end of the backing disk; the usable size shrinks accordingly.
    Internal,
    /// In a separate file or device; `index` selects a 128 MiB slot of a shared one.
    External {
        /// The meta-data file or device.
        path: String,
        /// DRBD's `[N]` index form, or `None` for flexible (the whole file).
        index: Option<u32>,
    },
}

impl fmt::Display for MetaDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaDisk::Internal => f.write_str("internal"),
            MetaDisk::External { path, index: None } => {
                f.write_str(&super::options::quote_if_needed(path))
            }
            MetaDisk::External {
                path,
                index: Some(i),
            } => write!(f, "{} [{i}]", super::options::quote_if_needed(path)),
        }
    }
}

/// An address family replicatord replicates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// A replication endpoint: `address [ipv4|ipv6] ADDR:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    /// The family.
    pub family: Family,
    /// The IP address.
    pub ip: IpAddr,
    /// The TCP port.
    pub port: u16,
}

impl Address {
    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "ipv4 {ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "ipv6 [{ip}]:{}", self.port),
        }
    }
}

/// One node's part of a resource: an `on HOST` (or `floating ADDR`) section, with the volume
/// settings it inherits from the resource already filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// The host names of the `on` section (a `floating` section is named by its address).
    pub names: Vec<String>,
    /// Whether this is a `floating ADDR:PORT` section (matched by address, not name).
    pub floating: bool,
    /// The node id (explicit, or assigned as drbdadm does for two hosts without one).
    pub node_id: NodeId,
    /// Whether `node_id` was assigned rather than written.
    pub node_id_implicit: bool,
    /// The replication endpoint.
    pub address: Option<Address>,
    /// The exported device.
    pub device: Device,
    /// The backing disk.
    pub disk: Disk,
    /// Where the meta-data lives.
    pub meta_disk: MetaDisk,
    /// Effective backing-disk options.
    pub disk_options: DiskOptions,
    /// Effective resync options (before per-connection overrides).
    pub resync: ResyncOptions,
    /// Explicit disk and resync settings that apply to this host (inherited ones included),
    /// for the normalised dump.
    #[serde(skip)]
    pub disk_settings: OptionMap,
    /// Where the section starts.
    #[serde(skip)]
    pub pos: Pos,
    /// Where `device` was set.
    #[serde(skip)]
    pub device_pos: Pos,
}

impl Host {
    /// The first host name (the one used in messages and connection names).
    pub fn name(&self) -> &str {
        &self.names[0]
    }

    /// Whether node name `node` (what `--node` or `uname -n` gives) selects this section:
    /// host names compare as drbdadm does (case-insensitive; a short name matches the first
    /// label of a fully qualified one); a floating section matches its address, with or
    /// without the port.
    pub fn matches(&self, node: &str) -> bool {
        if self.floating {
            return self.names.iter().any(|n| n == node)
                || self.address.is_some_and(|a| {
                    a.ip.to_string() == node || a.socket_addr().to_string() == node
                });
        }
        self.names.iter().any(|n| hostnames_equal(n, node))
    }
}

/// drbdadm's host name comparison: two fully qualified names compare whole; otherwise the
/// first labels compare. Case-insensitive.
pub fn hostnames_equal(a: &str, b: &str) -> bool {
    match (a.find('.'), b.find('.')) {
        (Some(_), Some(_)) => a.eq_ignore_ascii_case(b),
        (da, db) => {
            let sa = &a[..da.unwrap_or(a.len())];
            let sb = &b[..db.unwrap_or(b.len())];
            sa.eq_ignore_ascii_case(sb)
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The host (its first name).
    pub host: String,
    /// Its node id.
    pub node_id: NodeId,
    /// The address it listens on / is dialled at for this connection.
    pub address: Address,
}

/// A replication link between two hosts of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// The two endpoints.
    pub endpoints: [Endpoint; 2],
    /// Effective `net` options of this link.
    pub net: NetOptions,
    /// Effective resync options of this link.
    pub resync: ResyncOptions,
    /// Whether it was derived (two `on` sections, or a `connection-mesh`) rather than written.
    pub implicit: bool,
    /// Explicit `net` settings of the connection itself (not inherited), for the dump.
    #[serde(skip)]
    pub net_settings: OptionMap,
    /// Explicit `disk` settings of the connection itself, for the dump.
    #[serde(skip)]
    pub peer_device_settings: OptionMap,
    /// Where the section starts (the resource for implicit ones).
    #[serde(skip)]
    pub pos: Pos,
}

impl Connection {
    /// The endpoint of `host` and the other one, if `host` is an end of this link.
    pub fn ends(&self, host: &str) -> Option<(&Endpoint, &Endpoint)> {
        let [a, b] = &self.endpoints;
        if a.host == host {
            Some((a, b))
        } else if b.host == host {
            Some((b, a))
        } else {
            None
        }
    }
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// The resource name (also the NBD export name of a kernel-named device).
    pub name: String,
    /// The volume number (replicatord serves one volume per resource).
    pub volume: u32,
    /// Its hosts.
    pub hosts: Vec<Host>,
    /// Its replication links (none for a standalone resource).
    pub connections: Vec<Connection>,
    /// Resource-level `net` options (common and resource; connections may override).
    pub net: NetOptions,
    /// Handlers.
    pub handlers: Handlers,
    /// Explicit settings of the resource after inheriting `common`, for the dump.
    #[serde(skip)]
    pub settings: Sections,
    /// Where the resource is defined.
    #[serde(skip)]
    pub pos: Pos,
}

impl Resource {
    /// The host section selecting node `node`, if any.
    pub fn host(&self, node: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.matches(node))
    }

    /// Whether the resource has a single host (no replication).
    pub fn is_standalone(&self) -> bool {
        self.hosts.len() == 1
    }

    /// The connections that host `host` (by first name) is an end of.
    pub fn connections_of<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = &'a Connection> + 'a {
        self.connections
            .iter()
            .filter(move |c| c.ends(host).is_some())
    }
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The files read, main file first.
    pub files: Vec<String>,
    /// `global { }` settings (none has an effect on replicatord).
    pub global: OptionMap,
    /// The resources, in file order.
    pub resources: Vec<Resource>,
}

impl Config {
    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_compare_like_drbdadm() {
        assert!(hostnames_equal("alice", "ALICE"));
        assert!(hostnames_equal("alice.example.com", "alice"));
        assert!(hostnames_equal("alice", "alice.example.com"));
        assert!(!hostnames_equal("alice.example.com", "alice.example.org"));
        assert!(!hostnames_equal("alice", "alicex"));
    }

    #[test]
    fn export_uris() {
        let d = Device::Kernel {
            path: "/dev/drbd1".into(),
            minor: 1,
        };
        assert_eq!(
            d.export("zimbradata", "/run/replicatord/").uri(),
            "nbd+unix:///zimbradata?socket=/run/replicatord/zimbradata.nbd.sock"
        );
        let d = Device::NbdTcp {
            host: "::1".into(),
            port: 10809,
            export: "a b".into(),
        };
        assert_eq!(d.export("r", "/x").uri(), "nbd://[::1]:10809/a%20b");
        assert_eq!(d.render(), "\"nbd://[::1]:10809/a%20b\"");
    }
}

//! The options drbd.conf(5) knows, per section, with their value kinds, ranges and default
//! units as drbd-utils 9 defines them (`drbdsetup xml-help new-peer|attach|
//! peer-device-options|resource-options`), and what replicatord does with each.
//!
//! An option name not in this table is an error that names it (with a "did you mean");
//! an option in the table that replicatord does not implement is accepted with a warning
//! that says so, because an operator who copies a working DRBD configuration should learn
//! what will not happen rather than be refused.

use serde::Serialize;

use super::error::{ConfigError, Pos};

/// Which section an option belongs to. `disk { }` holds both [`Section::Disk`] and
/// [`Section::PeerDevice`] options, as in DRBD 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Section {
    /// `global { }`
    Global,
    /// `net { }`
    Net,
    /// `disk { }`: options of the local backing device.
    Disk,
    /// `disk { }`: resync rate controller options (DRBD's peer-device options).
    PeerDevice,
    /// `options { }`
    Options,
    /// `startup { }`
    Startup,
    /// `handlers { }`
    Handlers,
}

impl Section {
    /// The section keyword in a `.res` file.
    pub fn keyword(self) -> &'static str {
        match self {
            Section::Global => "global",
            Section::Net => "net",
            Section::Disk | Section::PeerDevice => "disk",
            Section::Options => "options",
            Section::Startup => "startup",
            Section::Handlers => "handlers",
        }
    }
}

/// DRBD's default unit for a plain number (a suffix K, M, G or s overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Plain count (or the option's own unit, e.g. tenths of a second).
    One,
    /// KiB (`resync-rate`, `c-max-rate`, `c-min-rate`).
    Kib,
    /// 512-byte sectors (`size`, `c-fill-target`, `congestion-fill`, `peer-ack-window`).
    Sectors,
}

/// The kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `yes` | `no`; the bare keyword means yes, `no-KEYWORD` means no.
    Bool,
    /// A number in `scale` units, with an optional K/M/G/s suffix, within `[min, max]`;
    /// `clamp` brings out-of-range values into range (with a warning) as DRBD does.
    Num {
        scale: Scale,
        min: u64,
        max: u64,
        clamp: bool,
    },
    /// One of the listed words (case-insensitive when `nocase`).
    Enum {
        values: &'static [&'static str],
        nocase: bool,
    },
    /// `off` | `majority` | `all` | 1..=32.
    Quorum,
    /// An `after-sb-0pri` policy, including `discard-node-NAME`.
    AfterSb0,
    /// A digest algorithm replicatord can compute.
    Digest,
    /// Free text up to `max_len` characters.
    Text { max_len: usize },
    /// A handler command line.
    Command,
}

/// What replicatord does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured on every node.
    Used,
    /// Honoured by replication between nodes (typed into the configuration for it).
    Replication,
    /// Accepted and ignored; the text says why, and is shown as a warning.
    Ignored(&'static str),
}

/// One known option.
#[derive(Debug, Clone, Copy)]
pub struct OptDef {
    /// The section it belongs to.
    pub section: Section,
    /// Its keyword.
    pub name: &'static str,
    /// Its value kind.
    pub kind: Kind,
    /// What replicatord does with it.
    pub support: Support,
}

/// Digest algorithms replicatord computes for `verify-alg` and `csums-alg`.
pub const DIGESTS: &[&str] = &["crc32c", "md5", "sha1", "sha256"];

const fn num(min: u64, max: u64) -> Kind {
    Kind::Num {
        scale: Scale::One,
        min,
        max,
        clamp: false,
    }
}

const fn num_s(scale: Scale, min: u64, max: u64) -> Kind {
    Kind::Num {
        scale,
        min,
        max,
        clamp: false,
    }
}

const fn en(values: &'static [&'static str]) -> Kind {
    Kind::Enum {
        values,
        nocase: false,
    }
}

const TEXT: Kind = Kind::Text { max_len: 255 };
const NO_EFFECT_GLOBAL: Support =
    Support::Ignored("global options of drbdadm have no effect on replicatord");
const STARTUP: Support = Support::Ignored(
    "startup options tune DRBD's init script; replicatord does not wait for peers when a resource comes up",
);
const QUORUM: Support =
    Support::Ignored("quorum is not implemented; two-node resources rely on fencing");
const KERNEL: Support =
    Support::Ignored("a DRBD kernel tuning knob with no counterpart in replicatord");

use Section::*;
use Support::*;

#[rustfmt::skip]
/// Every option replicatord accepts, by section (drbd-utils 9.22's lists, plus DRBD 8's
/// `disconnected` handler).
pub static OPTIONS: &[OptDef] = &[
    // global { }
    OptDef { section: Global, name: "usage-count", kind: en(&["yes", "no", "ask"]), support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "minor-count", kind: num(1, 255), support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "dialog-refresh", kind: num(0, 600), support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "disable-ip-verification", kind: Kind::Bool, support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "udev-always-use-vnr", kind: Kind::Bool, support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "cmd-timeout-short", kind: num(0, 900), support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "cmd-timeout-medium", kind: num(0, 900), support: NO_EFFECT_GLOBAL },
    OptDef { section: Global, name: "cmd-timeout-long", kind: num(0, 900), support: NO_EFFECT_GLOBAL },
    // net { }
    OptDef { section: Net, name: "protocol", kind: Kind::Enum { values: &["A", "B", "C"], nocase: true }, support: Replication },
    OptDef { section: Net, name: "transport", kind: en(&["tcp", "rdma"]), support: Ignored("replicatord always replicates over TCP") },
    OptDef { section: Net, name: "timeout", kind: num(1, 600), support: Replication },
    OptDef { section: Net, name: "max-epoch-size", kind: num(1, 20000), support: KERNEL },
    OptDef { section: Net, name: "connect-int", kind: num(1, 120), support: Replication },
    OptDef { section: Net, name: "ping-int", kind: num(1, 120), support: Replication },
    OptDef { section: Net, name: "sndbuf-size", kind: num(0, 10 << 20), support: Replication },
    OptDef { section: Net, name: "rcvbuf-size", kind: num(0, 10 << 20), support: Replication },
    OptDef { section: Net, name: "ko-count", kind: num(0, 200), support: Replication },
    OptDef { section: Net, name: "allow-two-primaries", kind: Kind::Bool, support: Replication },
    OptDef { section: Net, name: "cram-hmac-alg", kind: TEXT, support: Ignored("peer authentication is not implemented: keep the replication link on a private network") },
    OptDef { section: Net, name: "shared-secret", kind: Kind::Text { max_len: 63 }, support: Ignored("peer authentication is not implemented: keep the replication link on a private network") },
    OptDef { section: Net, name: "after-sb-0pri", kind: Kind::AfterSb0, support: Replication },
    OptDef { section: Net, name: "after-sb-1pri", kind: en(&["disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb", "violently-as0p"]), support: Replication },
    OptDef { section: Net, name: "after-sb-2pri", kind: en(&["disconnect", "call-pri-lost-after-sb", "violently-as0p"]), support: Replication },
    OptDef { section: Net, name: "always-asbp", kind: Kind::Bool, support: Ignored("replicatord applies after-sb policies only to related data sets") },
    OptDef { section: Net, name: "rr-conflict", kind: en(&["disconnect", "call-pri-lost", "violently", "retry-connect", "auto-discard"]), support: Replication },
    OptDef { section: Net, name: "ping-timeout", kind: num(1, 300), support: Replication },
    OptDef { section: Net, name: "data-integrity-alg", kind: TEXT, support: Ignored("every replication frame already carries a crc32 checksum; no second digest is computed") },
    OptDef { section: Net, name: "tcp-cork", kind: Kind::Bool, support: KERNEL },
    OptDef { section: Net, name: "on-congestion", kind: en(&["block", "pull-ahead", "disconnect"]), support: Ignored("replicatord always blocks when the send window is full") },
    OptDef { section: Net, name: "congestion-fill", kind: num_s(Scale::Sectors, 0, 20 << 20), support: Ignored("replicatord always blocks when the send window is full") },
    OptDef { section: Net, name: "congestion-extents", kind: num(67, 65534), support: Ignored("replicatord always blocks when the send window is full") },
    OptDef { section: Net, name: "csums-alg", kind: Kind::Digest, support: Replication },
    OptDef { section: Net, name: "csums-after-crash-only", kind: Kind::Bool, support: Ignored("csums-alg, when set, is used for every resync") },
    OptDef { section: Net, name: "verify-alg", kind: Kind::Digest, support: Replication },
    OptDef { section: Net, name: "use-rle", kind: Kind::Bool, support: Ignored("the bitmap is always sent run-length encoded") },
    OptDef { section: Net, name: "socket-check-timeout", kind: num(0, 300), support: KERNEL },
    OptDef { section: Net, name: "fencing", kind: en(&["dont-care", "resource-only", "resource-and-stonith"]), support: Replication },
    OptDef { section: Net, name: "max-buffers", kind: num(32, 131072), support: Replication },
    OptDef { section: Net, name: "allow-remote-read", kind: Kind::Bool, support: Ignored("replicatord never reads from the peer") },
    // disk { } — the backing device
    OptDef { section: Disk, name: "size", kind: num_s(Scale::Sectors, 0, 1 << 41), support: Used },
    OptDef { section: Disk, name: "on-io-error", kind: en(&["pass_on", "call-local-io-error", "detach"]), support: Used },
    OptDef { section: Disk, name: "disk-barrier", kind: Kind::Bool, support: KERNEL },
    OptDef { section: Disk, name: "disk-flushes", kind: Kind::Bool, support: Used },
    OptDef { section: Disk, name: "disk-drain", kind: Kind::Bool, support: KERNEL },
    OptDef { section: Disk, name: "md-flushes", kind: Kind::Bool, support: Used },
    OptDef { section: Disk, name: "resync-after", kind: TEXT, support: Ignored("resources resync independently") },
    OptDef { section: Disk, name: "al-extents", kind: Kind::Num { scale: Scale::One, min: 67, max: 65534, clamp: true }, support: Used },
    OptDef { section: Disk, name: "al-updates", kind: Kind::Bool, support: Used },
    OptDef { section: Disk, name: "discard-zeroes-if-aligned", kind: Kind::Bool, support: KERNEL },
    OptDef { section: Disk, name: "disable-write-same", kind: Kind::Bool, support: KERNEL },
    OptDef { section: Disk, name: "disk-timeout", kind: num(0, 6000), support: KERNEL },
    OptDef { section: Disk, name: "read-balancing", kind: en(&["prefer-local", "prefer-remote", "round-robin", "least-pending", "when-congested-remote", "32K-striping", "64K-striping", "128K-striping", "256K-striping", "512K-striping", "1M-striping"]), support: Ignored("replicatord always reads from the local disk") },
    OptDef { section: Disk, name: "rs-discard-granularity", kind: num(0, 1 << 20), support: KERNEL },
    // disk { } — the resync controller (DRBD's peer-device options)
    OptDef { section: PeerDevice, name: "resync-rate", kind: num_s(Scale::Kib, 1, 8 << 20), support: Replication },
    OptDef { section: PeerDevice, name: "c-plan-ahead", kind: num(0, 300), support: Replication },
    OptDef { section: PeerDevice, name: "c-delay-target", kind: num(1, 100), support: Replication },
    OptDef { section: PeerDevice, name: "c-fill-target", kind: num_s(Scale::Sectors, 0, 1 << 20), support: Replication },
    OptDef { section: PeerDevice, name: "c-max-rate", kind: num_s(Scale::Kib, 0, 4 << 20), support: Replication },
    OptDef { section: PeerDevice, name: "c-min-rate", kind: num_s(Scale::Kib, 0, 4 << 20), support: Replication },
    OptDef { section: PeerDevice, name: "bitmap", kind: Kind::Bool, support: Ignored("every peer of a resource has a bitmap") },
    // options { }
    OptDef { section: Options, name: "cpu-mask", kind: TEXT, support: KERNEL },
    OptDef { section: Options, name: "on-no-data-accessible", kind: en(&["io-error", "suspend-io"]), support: Ignored("without data, replicatord fails I/O with EIO") },
    OptDef { section: Options, name: "auto-promote", kind: Kind::Bool, support: Ignored("replicatord never promotes on open: promote with 'replicatorctl primary'") },
    OptDef { section: Options, name: "peer-ack-window", kind: num_s(Scale::Sectors, 2048, 204800), support: KERNEL },
    OptDef { section: Options, name: "peer-ack-delay", kind: num(1, 10000), support: KERNEL },
    OptDef { section: Options, name: "twopc-timeout", kind: num(50, 600), support: KERNEL },
    OptDef { section: Options, name: "twopc-retry-timeout", kind: num(1, 50), support: KERNEL },
    OptDef { section: Options, name: "auto-promote-timeout", kind: num(0, 600), support: KERNEL },
    OptDef { section: Options, name: "max-io-depth", kind: num(4, 4294967295), support: KERNEL },
    OptDef { section: Options, name: "quorum", kind: Kind::Quorum, support: QUORUM },
    OptDef { section: Options, name: "on-no-quorum", kind: en(&["io-error", "suspend-io"]), support: QUORUM },
    OptDef { section: Options, name: "quorum-minimum-redundancy", kind: Kind::Quorum, support: QUORUM },
    OptDef { section: Options, name: "on-suspended-primary-outdated", kind: en(&["disconnect", "force-secondary"]), support: QUORUM },
    // startup { }
    OptDef { section: Startup, name: "wfc-timeout", kind: num(0, 300000), support: STARTUP },
    OptDef { section: Startup, name: "degr-wfc-timeout", kind: num(0, 300000), support: STARTUP },
    OptDef { section: Startup, name: "outdated-wfc-timeout", kind: num(0, 300000), support: STARTUP },
    OptDef { section: Startup, name: "wait-after-sb", kind: Kind::Bool, support: STARTUP },
    OptDef { section: Startup, name: "stacked-timeouts", kind: Kind::Bool, support: STARTUP },
    // handlers { }
    OptDef { section: Handlers, name: "fence-peer", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "unfence-peer", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "split-brain", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "initial-split-brain", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "pri-lost-after-sb", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "pri-lost", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "before-resync-target", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "after-resync-target", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "before-resync-source", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "out-of-sync", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "disconnected", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "local-io-error", kind: Kind::Command, support: Used },
    OptDef { section: Handlers, name: "pri-on-incon-degr", kind: Kind::Command, support: Replication },
    OptDef { section: Handlers, name: "quorum-lost", kind: Kind::Command, support: QUORUM },
];

/// Net options DRBD 8.4 reads in `disk { }` (drbd.conf(5) of 8.4: `fencing`; DRBD 9 moved it to
/// `net { }`). In a resource's or `common`'s disk section they are read into its net options;
/// a volume's or host's disk section refuses them (they are resource-wide).
pub const DISK_84_NET: &[&str] = &["fencing"];

/// `name` in a `disk { }` section that also takes DRBD 8.4's net options ([`DISK_84_NET`]).
pub fn find_84_in_disk(sections: &[Section], name: &str) -> Option<&'static OptDef> {
    (sections.contains(&Section::Disk) && DISK_84_NET.contains(&name))
        .then(|| find(&[Section::Net], name))
        .flatten()
}

/// Deprecated names drbdadm still reads, and what they mean now.
pub const ALIASES: &[(&str, &str)] = &[
    ("rate", "resync-rate"),
    ("after", "resync-after"),
    ("outdate-peer", "fence-peer"),
];

/// The option `name` in one of `sections`, after resolving deprecated aliases.
pub fn find(sections: &[Section], name: &str) -> Option<&'static OptDef> {
    let name = ALIASES
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| new);
    OPTIONS
        .iter()
        .find(|o| o.name == name && sections.contains(&o.section))
}

/// All option names of `sections` (for "did you mean" and "expected one of").
pub fn names(sections: &[Section]) -> impl Iterator<Item = &'static str> + '_ {
    OPTIONS
        .iter()
        .filter(move |o| sections.contains(&o.section))
        .map(|o| o.name)
}

/// A parsed option value, in the option's default unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// yes / no.
    Bool(bool),
    /// A number in the option's default unit (e.g. KiB/s for `resync-rate`, sectors for
    /// `c-fill-target`, tenths of a second for `timeout`).
    Num(u64),
    /// An enum word, digest name, text or command line.
    Text(String),
}

impl Value {
    /// The value as it is written in a normalised dump.
    pub fn render(&self) -> String {
        match self {
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
            Value::Num(n) => n.to_string(),
            Value::Text(s) => quote_if_needed(s),
        }
    }
}

/// `s` as a single `.res` token: bare when it is a plain word, double-quoted otherwise.
pub fn quote_if_needed(s: &str) -> String {
    // drbdadm's unquoted STRING token: [a-zA-Z0-9/._-]; anything else is quoted so that the
    // dump reads back in drbdadm as well as in replicatord.
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if plain {
        s.to_owned()
    } else {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

/// The outcome of parsing a value: the value, and a warning when it was clamped.
pub struct Parsed {
    /// The value.
    pub value: Value,
    /// A note for the operator (value clamped into range).
    pub note: Option<String>,
}

/// Parses the words after an option keyword. `negated` is true for the `no-KEYWORD` form.
/// `words` are the argument texts with their positions; `kw_pos` is the keyword's.
pub fn parse_value(
    def: &OptDef,
    negated: bool,
    words: &[(&str, &Pos)],
    kw_pos: &Pos,
) -> Result<Parsed, ConfigError> {
    let name = def.name;
    let ok = |value| Ok(Parsed { value, note: None });
    if negated {
        if def.kind != Kind::Bool {
            return Err(ConfigError::new(
                kw_pos,
                format!("'no-{name}': only yes/no options have a 'no-' form"),
            ));
        }
        if let Some((w, p)) = words.first() {
            return Err(ConfigError::new(
                p,
                format!("'no-{name}' takes no value, got '{w}'"),
            ));
        }
        return ok(Value::Bool(false));
    }
    if def.kind == Kind::Bool && words.is_empty() {
        return ok(Value::Bool(true));
    }
    let (word, pos) = match words {
        [] => {
            return Err(ConfigError::new(
                kw_pos,
                format!("'{name}' needs a value ({})", expect(def)),
            ));
        }
        [one] => *one,
        [_, (w, p), ..] => {
            let hint = if def.kind == Kind::Command {
                " (quote a command line with arguments)"
            } else {
                ""
            };
            return Err(ConfigError::new(
                p,
                format!("'{name}' takes one value; unexpected '{w}'{hint}"),
            ));
        }
    };
    let bad = |why: String| Err(ConfigError::new(pos, format!("'{name}': {why}")));
    match def.kind {
        Kind::Bool => match word {
            "yes" => ok(Value::Bool(true)),
            "no" => ok(Value::Bool(false)),
            _ => bad(format!("'{word}' is not 'yes' or 'no'")),
        },
        Kind::Num {
            scale,
            min,
            max,
            clamp,
        } => {
            let n = match parse_number(word, scale) {
                Ok(n) => n,
                Err(why) => return bad(format!("'{word}' {why}")),
            };
            if n < min || n > max {
                let range = format!("{min}..{max}{}", scale_suffix(scale));
                if clamp {
                    let c = n.clamp(min, max);
                    return Ok(Parsed {
                        value: Value::Num(c),
                        note: Some(format!("'{name} {word}' is outside {range}; using {c}")),
                    });
                }
                return bad(format!("'{word}' is out of range {range}"));
            }
            ok(Value::Num(n))
        }
        Kind::Enum { values, nocase } => {
            let hit = values.iter().find(|v| {
                if nocase {
                    v.eq_ignore_ascii_case(word)
                } else {
                    **v == word
                }
            });
            match hit {
                Some(v) => ok(Value::Text((*v).to_owned())),
                None => bad(format!("'{word}' is not one of {}", values.join(" | "))),
            }
        }
        Kind::Quorum => {
            if matches!(word, "off" | "majority" | "all") {
                return ok(Value::Text(word.to_owned()));
            }
            match word.parse::<u64>() {
                Ok(n) if (1..=32).contains(&n) => ok(Value::Text(n.to_string())),
                _ => bad(format!("'{word}' is not off | majority | all | 1..32")),
            }
        }
        Kind::AfterSb0 => {
            const P: &[&str] = &[
                "disconnect",
                "discard-younger-primary",
                "discard-older-primary",
                "discard-zero-changes",
                "discard-least-changes",
                "discard-local",
                "discard-remote",
            ];
            if P.contains(&word)
                || word
                    .strip_prefix("discard-node-")
                    .is_some_and(|n| !n.is_empty())
            {
                ok(Value::Text(word.to_owned()))
            } else {
                bad(format!(
                    "'{word}' is not one of {} | discard-node-NODENAME",
                    P.join(" | ")
                ))
            }
        }
        Kind::Digest => {
            if DIGESTS.contains(&word) {
                ok(Value::Text(word.to_owned()))
            } else {
                bad(format!(
                    "'{word}' is not a digest replicatord computes (supported: {})",
                    DIGESTS.join(", ")
                ))
            }
        }
        Kind::Text { max_len } => {
            if word.chars().count() > max_len {
                bad(format!("longer than {max_len} characters"))
            } else {
                ok(Value::Text(word.to_owned()))
            }
        }
        Kind::Command => {
            if word.trim().is_empty() {
                bad("empty command".to_owned())
            } else {
                ok(Value::Text(word.to_owned()))
            }
        }
    }
}

fn expect(def: &OptDef) -> String {
    match def.kind {
        Kind::Bool => "yes | no".into(),
        Kind::Num {
            min, max, scale, ..
        } => format!("a number {min}..{max}{}", scale_suffix(scale)),
        Kind::Enum { values, .. } => values.join(" | "),
        Kind::Quorum => "off | majority | all | 1..32".into(),
        Kind::AfterSb0 => "a split-brain policy".into(),
        Kind::Digest => DIGESTS.join(" | "),
        Kind::Text { .. } => "a string".into(),
        Kind::Command => "a command line".into(),
    }
}

fn scale_suffix(scale: Scale) -> &'static str {
    match scale {
        Scale::One => "",
        Scale::Kib => " KiB",
        Scale::Sectors => " sectors",
    }
}

/// A number as drbdadm reads it (`new_strtoll`): digits with an optional suffix K, M, G (powers
/// of 1024) or s (512-byte sectors), converted into the option's default unit; conversions to
/// a coarser unit round up.
pub fn parse_number(word: &str, scale: Scale) -> Result<u64, &'static str> {
    let digits_end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    if digits_end == 0 {
        return Err("is not a number");
    }
    let n: u64 = word[..digits_end].parse().map_err(|_| "is too large")?;
    let suffix = &word[digits_end..];
    let unit_shift: i32 = match suffix {
        "" => return Ok(n),
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "s" => 9,
        _ => return Err("has an unknown unit suffix (K, M, G or s)"),
    };
    let base_shift: i32 = match scale {
        Scale::One => 0,
        Scale::Kib => 10,
        Scale::Sectors => 9,
    };
    let shift = unit_shift - base_shift;
    if shift >= 0 {
        let shift = u32::try_from(shift).expect("small shift");
        if n > (u64::MAX >> shift) {
            return Err("is too large");
        }
        Ok(n << shift)
    } else {
        let shift = u32::try_from(-shift).expect("small shift");
        Ok(n.div_ceil(1u64 << shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn p() -> Pos {
        Pos {
            file: Arc::from("t"),
            line: 1,
            col: 1,
        }
    }

    fn val(name: &str, words: &[&str]) -> Result<Value, String> {
        let def = find(
            &[Net, Disk, PeerDevice, Options, Startup, Handlers, Global],
            name,
        )
        .unwrap();
        let pos = p();
        let w: Vec<(&str, &Pos)> = words.iter().map(|w| (*w, &pos)).collect();
        parse_value(def, false, &w, &pos)
            .map(|p| p.value)
            .map_err(|e| e.message)
    }

    #[test]
    fn numbers_follow_drbdadm_units() {
        assert_eq!(parse_number("40M", Scale::Kib), Ok(40 * 1024));
        assert_eq!(parse_number("250", Scale::Kib), Ok(250));
        assert_eq!(parse_number("100k", Scale::Sectors), Ok(200));
        assert_eq!(parse_number("1M", Scale::Sectors), Ok(2048));
        assert_eq!(
            parse_number("3s", Scale::Kib),
            Ok(2),
            "rounds up like drbdadm"
        );
        assert_eq!(parse_number("2s", Scale::One), Ok(1024));
        assert_eq!(parse_number("1G", Scale::One), Ok(1 << 30));
        assert!(parse_number("M", Scale::One).is_err());
        assert!(parse_number("10X", Scale::One).is_err());
        assert!(parse_number("10MM", Scale::One).is_err());
        assert!(parse_number("99999999999999999999999", Scale::One).is_err());
        assert!(parse_number("17179869184G", Scale::One).is_err());
    }

    #[test]
    fn values_are_checked_against_their_kind() {
        assert_eq!(val("resync-rate", &["40M"]), Ok(Value::Num(40960)));
        assert_eq!(
            val("resync-rate", &["9G"]).unwrap_err(),
            "'resync-rate': '9G' is out of range 1..8388608 KiB"
        );
        assert_eq!(val("protocol", &["c"]), Ok(Value::Text("C".into())));
        assert_eq!(val("allow-two-primaries", &[]), Ok(Value::Bool(true)));
        assert_eq!(
            val("allow-two-primaries", &["maybe"]).unwrap_err(),
            "'allow-two-primaries': 'maybe' is not 'yes' or 'no'"
        );
        assert_eq!(val("verify-alg", &["sha1"]), Ok(Value::Text("sha1".into())));
        assert!(
            val("verify-alg", &["md4"])
                .unwrap_err()
                .contains("supported: crc32c, md5, sha1, sha256")
        );
        assert_eq!(
            val("after-sb-0pri", &["discard-node-alice"]),
            Ok(Value::Text("discard-node-alice".into()))
        );
        assert!(val("after-sb-1pri", &["discard-node-alice"]).is_err());
        assert_eq!(
            val("quorum", &["majority"]),
            Ok(Value::Text("majority".into()))
        );
        assert!(val("quorum", &["33"]).is_err());
        assert_eq!(
            val("rate", &["10M"]),
            Ok(Value::Num(10240)),
            "deprecated alias"
        );
        assert!(
            val("timeout", &["1", "2"])
                .unwrap_err()
                .contains("takes one value")
        );
        assert!(val("timeout", &[]).unwrap_err().contains("needs a value"));
        assert!(
            val("split-brain", &["/bin/x", "root"])
                .unwrap_err()
                .contains("quote")
        );
    }

    #[test]
    fn al_extents_are_clamped_like_drbd() {
        let def = find(&[Disk], "al-extents").unwrap();
        let pos = p();
        let got = parse_value(def, false, &[("7", &pos)], &pos).unwrap();
        assert_eq!(got.value, Value::Num(67));
        assert!(got.note.unwrap().contains("using 67"));
    }

    #[test]
    fn negated_form_is_only_for_bools() {
        let pos = p();
        let def = find(&[Disk], "disk-flushes").unwrap();
        assert_eq!(
            parse_value(def, true, &[], &pos).unwrap().value,
            Value::Bool(false)
        );
        assert!(parse_value(def, true, &[("yes", &pos)], &pos).is_err());
        let def = find(&[Disk], "al-extents").unwrap();
        assert!(parse_value(def, true, &[], &pos).is_err());
    }

    #[test]
    fn every_option_is_unique_per_section() {
        let mut seen = std::collections::BTreeSet::new();
        for o in OPTIONS {
            assert!(
                seen.insert((o.section.keyword(), o.name)),
                "{} twice",
                o.name
            );
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_if_needed("/dev/drbd1"), "/dev/drbd1");
        assert_eq!(quote_if_needed("a b"), "\"a b\"");
        assert_eq!(quote_if_needed("x\"y\\"), "\"x\\\"y\\\\\"");
        assert_eq!(quote_if_needed(""), "\"\"");
    }
}

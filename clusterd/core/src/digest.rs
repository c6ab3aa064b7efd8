//! Operation digests, as Pacemaker computes them: how the scheduler notices that a running
//! resource's parameters changed (Pacemaker Explained, "Reloading Services After a Definition
//! Change").
//!
//! Every recorded operation carries `op-digest`: the MD5 of its parameters rendered as XML.
//! The scheduler computes the same digest from the current configuration and compares: a
//! mismatch on the start (or probe, or promote) means the resource runs with old parameters and
//! must be restarted — or reloaded, when the agent advertises `reload-agent` (OCF 1.1) or
//! `reload` (OCF 1.0) and only reloadable parameters changed; a mismatch on a recurring monitor
//! re-schedules that monitor. Whether only reloadable parameters changed is told by a second
//! digest, `op-restart-digest`, over the parameters that force a restart (`op-force-restart`),
//! recorded by the executor from the agent's meta-data.
//!
//! The text digested is Pacemaker 2.1.5's "v1" form, byte for byte, so that digests written by
//! clusterd and by Pacemaker compare equal (checked against `crm_simulate`, which records its
//! own digests, in the tests): a space, `<parameters` with every parameter as ` name="value"`
//! in byte order of the names, `/>`, a newline. `CRM_meta_*` and a few bookkeeping names are
//! left out, except the timeout of a recurring operation (`CRM_meta_timeout`, in ms). Values are
//! escaped as Pacemaker 2.1.5's `crm_xml_escape` does, including its quirk of leaving the rest
//! of a value unescaped after the first two-byte non-ASCII sequence.

use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// Parameter names Pacemaker leaves out of digests (besides every `CRM_meta_*`).
const FILTERED: &[&str] = &[
    "id",
    "crm_feature_set",
    "op-digest",
    "on_node",
    "on_node_uuid",
    "pcmk_external_ip",
];

/// The meta attribute naming an operation's timeout, kept in recurring digests.
const TIMEOUT_META: &str = "CRM_meta_timeout";

/// Escapes an attribute value as Pacemaker 2.1.5's `crm_xml_escape`.
pub fn pacemaker_escape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b & 0x80 != 0 && bytes.get(i + 1).is_some_and(|n| n & 0x80 != 0) {
            // Pacemaker 2.1.5 stops escaping at the first two-byte sequence with the high
            // bit set and copies the rest as it is.
            out.extend_from_slice(&bytes[i..]);
            break;
        }
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'\t' => out.extend_from_slice(b"    "),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if !(b' '..=b'~').contains(&b) => {
                // A C `char` is signed: bytes above 0x7f print as a negative number in octal.
                let c = i32::from(b as i8);
                out.extend_from_slice(format!("\\{:03o}", c as u32).as_bytes());
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The MD5 (lower-case hex) of a parameter set in Pacemaker's v1 digest form. `params` are
/// taken as they are (no filtering); they are sorted by name here.
pub fn digest_of<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::from(" <parameters");
    for (k, v) in sorted {
        text.push(' ');
        text.push_str(k);
        text.push_str("=\"");
        text.push_str(&pacemaker_escape(v));
        text.push('"');
    }
    text.push_str("/>\n");
    let sum = Md5::digest(text.as_bytes());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// Does Pacemaker keep this parameter name in digests?
fn kept(name: &str) -> bool {
    !name.starts_with("CRM_meta_") && !FILTERED.contains(&name)
}

/// What an operation ran with, as far as digests care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestInput<'a> {
    /// The resource's instance attributes (`OCF_RESKEY_<name>`).
    pub params: &'a BTreeMap<String, String>,
    /// The operation's own instance attributes (`OCF_CHECK_LEVEL` of a monitor).
    pub op_params: BTreeMap<String, String>,
    pub interval_ms: u64,
    /// The operation's timeout; it counts for recurring operations only.
    pub timeout_ms: u64,
}

impl DigestInput<'_> {
    /// Every parameter that goes into the main digest.
    fn all(&self) -> Vec<(&str, String)> {
        let mut out: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in self.params.iter().chain(self.op_params.iter()) {
            if kept(k) {
                out.insert(k.as_str(), v.clone());
            }
        }
        let mut v: Vec<(&str, String)> = out.into_iter().collect();
        if self.interval_ms > 0 {
            v.push((TIMEOUT_META, self.timeout_ms.to_string()));
        }
        v
    }

    /// `op-digest`.
    pub fn op_digest(&self) -> String {
        let all = self.all();
        digest_of(all.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// `op-restart-digest`: the digest of the parameters named in `force_restart` that are
    /// set (what the executor records when the agent supports reload).
    pub fn restart_digest(&self, force_restart: &[String]) -> String {
        let all = self.all();
        digest_of(
            all.iter()
                .filter(|(k, _)| force_restart.iter().any(|f| f == k))
                .map(|(k, v)| (*k, v.as_str())),
        )
    }
}

/// The monitor depth an operation asks for: its `OCF_CHECK_LEVEL` instance attribute (or the
/// `depth` attribute some configurations use), the only operation-level parameter agents see.
pub fn check_level(op: &crate::cib::Op) -> Option<u32> {
    ["OCF_CHECK_LEVEL", "depth"]
        .iter()
        .find_map(|k| op.extra.get(*k))
        .and_then(|v| v.trim().parse().ok())
}

/// The operation-level parameters of an operation with this check level.
pub fn op_params(check_level: Option<u32>) -> BTreeMap<String, String> {
    check_level
        .map(|l| ("OCF_CHECK_LEVEL".to_string(), l.to_string()))
        .into_iter()
        .collect()
}

/// The digest input of `op` (interval `interval_ms`) of primitive `p` under configuration
/// `cib`: the parameters and timeout the scheduler would give that operation now.
pub fn for_op<'a>(
    cib: &crate::cib::Cib,
    p: &'a crate::cib::Primitive,
    op: &str,
    interval_ms: u64,
) -> DigestInput<'a> {
    let configured = p
        .ops
        .iter()
        .find(|o| o.name == op && o.interval_ms == interval_ms);
    DigestInput {
        params: &p.params,
        op_params: op_params(configured.and_then(check_level)),
        interval_ms,
        timeout_ms: cib.op_timeout_ms(p, op, interval_ms),
    }
}

/// What a recorded operation's digests say about the current configuration (Pacemaker's
/// `rsc_action_digest_cmp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestVerdict {
    /// Same parameters.
    Match,
    /// Only parameters the agent can reload changed (or the digest is unknown and the agent
    /// can reload): reload, or re-run a recurring monitor.
    Changed,
    /// A parameter that forces a restart changed.
    Restart,
    /// The record has no digest (written by a tool that did not compute one): Pacemaker treats
    /// it as changed.
    Unknown,
}

/// Compares a recorded operation with the digests of `now`.
pub fn compare(rec: &crate::status::OpRecord, now: &DigestInput<'_>) -> DigestVerdict {
    if let Some(r) = &rec.reload
        && now.restart_digest(&r.force_restart) != r.restart_digest
    {
        return DigestVerdict::Restart;
    }
    match &rec.op_digest {
        None => DigestVerdict::Unknown,
        Some(d) if *d != now.op_digest() => {
            // A one-shot operation with its own parameters is restarted rather than reloaded,
            // so those parameters are applied (Pacemaker 2.1.5).
            if now.interval_ms == 0 && !now.op_params.is_empty() {
                DigestVerdict::Restart
            } else {
                DigestVerdict::Changed
            }
        }
        Some(_) => DigestVerdict::Match,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The values below were written by crm_simulate 2.1.5 (Debian 12) into its results.
    #[test]
    fn digests_match_pacemaker() {
        let p = params(&[("fake", "x"), ("a", "1")]);
        let start = DigestInput {
            params: &p,
            op_params: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: 20_000,
        };
        assert_eq!(start.op_digest(), "68269232c2329f7d28e82c1e83ac54fa");
        let monitor = DigestInput {
            interval_ms: 10_000,
            ..start.clone()
        };
        assert_eq!(monitor.op_digest(), "b948b126fae512b5de38d3118b808121");
        let none = BTreeMap::new();
        let empty = DigestInput {
            params: &none,
            op_params: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: 20_000,
        };
        assert_eq!(
            empty.restart_digest(&[]),
            "f2317cad3d54cec5d7d7aa7d0bf35cf8"
        );
        assert_eq!(
            empty.restart_digest(&["state".into()]),
            "f2317cad3d54cec5d7d7aa7d0bf35cf8"
        );
    }

    #[test]
    fn escaping_matches_pacemaker() {
        let one = |v: &str| digest_of([("x", v)]);
        assert_eq!(one("a&b<c>'d\""), "a31b0f3cd2dad64601111912fd41f0dc");
        assert_eq!(one("tab\there"), "af29a0eea498046b62cb2f7658db4697");
        assert_eq!(one("caf\u{e9}x"), "b839b907896944343dd7596213310b94");
        assert_eq!(one("a~\u{7f}x"), "40239fe0825d0c7df3b604b68f2450db");
        assert_eq!(pacemaker_escape("nl\nx"), "nl\\nx");
        assert_eq!(pacemaker_escape("\u{e9}&x"), "\u{e9}&x");
    }

    #[test]
    fn meta_and_bookkeeping_names_are_left_out() {
        let p = params(&[("a", "1"), ("CRM_meta_interval", "0"), ("id", "x")]);
        let i = DigestInput {
            params: &p,
            op_params: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: 1,
        };
        assert_eq!(i.op_digest(), digest_of([("a", "1")]));
    }
}

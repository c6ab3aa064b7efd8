//! `drbdadm` (drbd-utils 9) as an oracle for the `.res` parser. For each fixture and each host,
//! `drbdadm -d up` (with `__DRBD_NODE__` naming the host) prints the drbdsetup commands DRBD
//! would run: node ids, minors, disks, meta-disks, addresses and every effective option after
//! inheritance. We check that
//! 1. `replicatorctl dump --json` has the same values for everything both express, warns about
//!    every option DRBD applies that replicatord ignores, and sets nothing DRBD would not; and
//! 2. `replicatorctl dump RES` (the normalised text) fed back into drbdadm gives the very same
//!    drbdsetup commands as the original file.
//!
//! Units are converted here with drbd-utils' rules (K/M/G/s suffixes, each option's default
//! unit) independently of the parser under test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{REPLICATORCTL, run};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle")
}

/// (config file, resource, hosts) to check.
fn cases() -> Vec<(PathBuf, &'static str, Vec<&'static str>)> {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/zimbradata.res");
    vec![
        (
            seed,
            "zimbradata",
            vec!["mercurio.offimedicas.com", "hermes.offimedicas.com"],
        ),
        (fixtures().join("inc/main.conf"), "r0", vec!["alice", "bob"]),
        (
            fixtures().join("inc/main.conf"),
            "r1",
            vec!["carol.example.com", "dave.example.com"],
        ),
        (fixtures().join("edge.res"), "e1", vec!["x1", "x2", "x3"]),
        (fixtures().join("edge.res"), "e2", vec!["y1", "y2"]),
    ]
}

/// One drbdsetup command: verb, positional arguments, options (canonical values).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cmd {
    verb: String,
    args: Vec<String>,
    opts: BTreeMap<String, String>,
}

/// Splits a shell-escaped drbdsetup line (drbdadm escapes with backslashes).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// An option's default unit in drbd-utils (`drbdsetup xml-help`): 'k' KiB, 's' sectors.
fn scale(opt: &str) -> char {
    match opt {
        "resync-rate" | "c-max-rate" | "c-min-rate" => 'k',
        "c-fill-target" | "size" | "congestion-fill" | "peer-ack-window" => 's',
        _ => '1',
    }
}

/// A value in the option's default unit when it is a number; lowercased text otherwise.
fn canonical(opt: &str, v: &str) -> String {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    if digits == 0 {
        return v.to_lowercase();
    }
    let n: u128 = v[..digits].parse().unwrap();
    let bytes_per = |c: char| -> u128 {
        match c {
            'k' | 'K' => 1024,
            'm' | 'M' => 1 << 20,
            'g' | 'G' => 1 << 30,
            's' => 512,
            '1' => 1,
            other => panic!("unit {other} in {opt}={v}"),
        }
    };
    let unit = v[digits..].chars().next();
    match unit {
        None => n.to_string(),
        Some(u) => {
            let (num, den) = (n * bytes_per(u), bytes_per(scale(opt)));
            num.div_ceil(den).to_string()
        }
    }
}

/// `drbdadm -c FILE -d up RES` as host `node`.
fn drbdadm_up(file: &Path, res: &str, node: &str) -> Vec<Cmd> {
    let o = run(
        "drbdadm",
        &["-c", file.to_str().unwrap(), "-d", "up", res],
        &[("__DRBD_NODE__", node)],
    );
    assert_eq!(
        o.code,
        0,
        "drbdadm refused {}: {}",
        file.display(),
        o.stderr
    );
    let mut cmds: Vec<Cmd> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("drbdsetup "))
        .map(|l| {
            let w = words(l);
            let mut cmd = Cmd {
                verb: w[1].clone(),
                args: Vec::new(),
                opts: BTreeMap::new(),
            };
            for x in &w[2..] {
                match x.strip_prefix("--").and_then(|o| o.split_once('=')) {
                    Some((k, v)) => {
                        cmd.opts.insert(k.to_owned(), canonical(k, v));
                    }
                    None => cmd.args.push(x.clone()),
                }
            }
            cmd
        })
        .collect();
    cmds.sort();
    cmds
}

fn ctl(file: &Path, args: &[&str]) -> common::Out {
    let mut all = vec![
        "--config",
        file.to_str().unwrap(),
        "--state-dir",
        "/run/oracle",
    ];
    all.extend_from_slice(args);
    run(REPLICATORCTL, &all, &[])
}

/// Where an option DRBD applies lives in our typed JSON, and how its DRBD value converts:
/// (section, field, multiplier from DRBD's unit). `None`: replicatord does not implement it.
fn typed(opt: &str) -> Option<(&'static str, &'static str, u64)> {
    Some(match opt {
        "protocol" => ("net", "protocol", 0),
        "allow-two-primaries" => ("net", "allow_two_primaries", 0),
        "after-sb-0pri" => ("net", "after_sb_0pri", 0),
        "after-sb-1pri" => ("net", "after_sb_1pri", 0),
        "after-sb-2pri" => ("net", "after_sb_2pri", 0),
        "rr-conflict" => ("net", "rr_conflict", 0),
        "fencing" => ("net", "fencing", 0),
        "verify-alg" => ("net", "verify_alg", 0),
        "csums-alg" => ("net", "csums_alg", 0),
        "timeout" => ("net", "timeout_ms", 100),
        "connect-int" => ("net", "connect_int_ms", 1000),
        "ping-int" => ("net", "ping_int_ms", 1000),
        "ping-timeout" => ("net", "ping_timeout_ms", 100),
        "ko-count" => ("net", "ko_count", 1),
        "max-buffers" => ("net", "max_buffers", 1),
        "sndbuf-size" => ("net", "sndbuf_size_bytes", 1),
        "rcvbuf-size" => ("net", "rcvbuf_size_bytes", 1),
        "resync-rate" => ("resync", "resync_rate_kib_s", 1),
        "c-plan-ahead" => ("resync", "c_plan_ahead_ms", 100),
        "c-delay-target" => ("resync", "c_delay_target_ms", 100),
        "c-fill-target" => ("resync", "c_fill_target_bytes", 512),
        "c-max-rate" => ("resync", "c_max_rate_kib_s", 1),
        "c-min-rate" => ("resync", "c_min_rate_kib_s", 1),
        "on-io-error" => ("disk_options", "on_io_error", 0),
        "al-extents" => ("disk_options", "al_extents", 1),
        "al-updates" => ("disk_options", "al_updates", 0),
        "disk-flushes" => ("disk_options", "disk_flushes", 0),
        "md-flushes" => ("disk_options", "md_flushes", 0),
        "size" => ("disk_options", "size_bytes", 512),
        _ => return None,
    })
}

/// DRBD's defaults of the typed fields (drbd.conf(5)), to check we set nothing DRBD does not.
fn default_of(section: &str, field: &str) -> Value {
    serde_json::json!(match (section, field) {
        ("net", "protocol") => "C",
        ("net", "allow_two_primaries")
        | ("disk_options", "al_updates" | "disk_flushes" | "md_flushes") =>
            return Value::Bool(section == "disk_options"),
        ("net", "after_sb_0pri" | "after_sb_1pri" | "after_sb_2pri" | "rr_conflict") =>
            "disconnect",
        ("net", "fencing") => "dont-care",
        ("net", "verify_alg" | "csums_alg") | ("disk_options", "size_bytes") => return Value::Null,
        ("net", "timeout_ms") => return 6000.into(),
        ("net", "connect_int_ms" | "ping_int_ms") => return 10_000.into(),
        ("net", "ping_timeout_ms") => return 500.into(),
        ("net", "ko_count") => return 7.into(),
        ("net", "max_buffers") => return 2048.into(),
        ("net", "sndbuf_size_bytes" | "rcvbuf_size_bytes") => return 0.into(),
        ("resync", "resync_rate_kib_s" | "c_min_rate_kib_s") => return 250.into(),
        ("resync", "c_plan_ahead_ms") => return 2000.into(),
        ("resync", "c_delay_target_ms") => return 1000.into(),
        ("resync", "c_fill_target_bytes") => return 51_200.into(),
        ("resync", "c_max_rate_kib_s") => return 102_400.into(),
        ("disk_options", "on_io_error") => "detach",
        ("disk_options", "al_extents") => return 1237.into(),
        other => panic!("no default for {other:?}"),
    })
}

/// Our value of a typed option, in DRBD's terms.
fn ours(obj: &Value, opt: &str, drbd_value: &str) -> (Value, Value) {
    let (section, field, mult) = typed(opt).expect("typed");
    let got = obj[section][field].clone();
    let want = match mult {
        0 => match drbd_value {
            "yes" => Value::Bool(true),
            "no" => Value::Bool(false),
            v if opt == "protocol" => Value::String(v.to_uppercase()),
            v => Value::String(v.to_owned()),
        },
        m => {
            let mut n: u64 = drbd_value.parse().unwrap();
            if opt == "al-extents" {
                n = n.max(67); // DRBD clamps too
            }
            Value::from(n * m)
        }
    };
    (got, want)
}

/// Our address as drbdsetup writes it: `ipv4:10.0.0.1:7000`, `ipv6:[fd00::1]:7000`.
fn address(a: &Value) -> String {
    let ip = a["ip"].as_str().unwrap();
    match a["family"].as_str().unwrap() {
        "ipv6" => format!("ipv6:[{ip}]:{}", a["port"]),
        fam => format!("{fam}:{ip}:{}", a["port"]),
    }
}

/// Checks DRBD's options of one command against `obj`; returns the typed fields it covered.
fn check_opts(
    here: &str,
    opts: &BTreeMap<String, String>,
    obj: &Value,
    sections: &[&str],
    warned: &dyn Fn(&str) -> bool,
) -> std::collections::BTreeSet<(&'static str, &'static str)> {
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in opts {
        if k == "_name" {
            continue;
        }
        match typed(k) {
            Some((section, field, _)) => {
                assert!(
                    sections.contains(&section),
                    "{here}: {k} in an unexpected command"
                );
                let (got, want) = ours(obj, k, v);
                assert_eq!(got, want, "{here}: option {k}={v}");
                seen.insert((section, field));
            }
            None => assert!(
                warned(k),
                "{here}: DRBD applies {k}={v}; replicatord must warn that it ignores it"
            ),
        }
    }
    seen
}

fn check_semantics(file: &Path, res: &str, host: &str, cmds: &[Cmd], dump: &Value) {
    let here = format!("{} {res} on {host}", file.display());
    let r = dump["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == res)
        .unwrap_or_else(|| panic!("{here}: not in our dump"));
    let h = r["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["names"].as_array().unwrap().iter().any(|n| n == host))
        .unwrap();
    let warnings: Vec<&str> = dump["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let warned = |opt: &str| {
        warnings
            .iter()
            .any(|w| w.contains(&format!("'{opt}' is accepted but not implemented")))
    };
    let by = |verb: &'static str| cmds.iter().filter(move |c| c.verb == verb);
    let nr = by("new-resource").next().unwrap();
    assert_eq!(
        nr.args,
        [res.to_owned(), h["node_id"].to_string()],
        "{here}: node id"
    );
    check_opts(&here, &nr.opts, r, &[], &warned);
    let minor = h["device"]["minor"].to_string();
    let nm = by("new-minor").next().unwrap();
    assert_eq!(
        nm.args,
        [res.to_owned(), minor.clone(), r["volume"].to_string()],
        "{here}: minor and volume"
    );
    let at = by("attach").next().unwrap();
    let disk = h["disk"]["path"].as_str().unwrap();
    let (meta, idx) = match h["meta_disk"]["kind"].as_str().unwrap() {
        "internal" => (disk.to_owned(), "internal".to_owned()),
        _ => (
            h["meta_disk"]["path"].as_str().unwrap().to_owned(),
            h["meta_disk"]["index"]
                .as_u64()
                .map_or("flexible".to_owned(), |i| i.to_string()),
        ),
    };
    assert_eq!(
        at.args,
        [minor, disk.to_owned(), meta, idx],
        "{here}: attach"
    );
    let seen = check_opts(&here, &at.opts, h, &["disk_options"], &warned);
    for d in [
        "on_io_error",
        "al_extents",
        "al_updates",
        "disk_flushes",
        "md_flushes",
        "size_bytes",
    ] {
        if !seen.contains(&("disk_options", d)) {
            assert_eq!(
                h["disk_options"][d],
                default_of("disk_options", d),
                "{here}: we set {d} but DRBD does not"
            );
        }
    }
    // One new-peer, new-path and peer-device-options per connection.
    let conns: Vec<&Value> = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["host"] == host)
        })
        .collect();
    assert_eq!(by("new-peer").count(), conns.len(), "{here}: connections");
    for np in by("new-peer") {
        let peer = np.opts["_name"].clone();
        let c = conns
            .iter()
            .find(|c| {
                c["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["host"] == peer)
            })
            .unwrap_or_else(|| panic!("{here}: no connection to {peer}"));
        let eps = c["endpoints"].as_array().unwrap();
        let (me, them) = if eps[0]["host"] == host {
            (&eps[0], &eps[1])
        } else {
            (&eps[1], &eps[0])
        };
        assert_eq!(
            np.args[1],
            them["node_id"].to_string(),
            "{here}: peer {peer} node id"
        );
        let mut seen = check_opts(&here, &np.opts, c, &["net"], &warned);
        let path = by("new-path").find(|p| p.args[1] == np.args[1]).unwrap();
        assert_eq!(
            path.args[2..],
            [address(&me["address"]), address(&them["address"])],
            "{here}: path to {peer}"
        );
        if let Some(pd) = by("peer-device-options").find(|p| p.args[1] == np.args[1]) {
            seen.extend(check_opts(&here, &pd.opts, c, &["resync"], &warned));
        }
        for (section, fields) in [
            (
                "net",
                &[
                    "protocol",
                    "allow_two_primaries",
                    "after_sb_0pri",
                    "after_sb_1pri",
                    "after_sb_2pri",
                    "rr_conflict",
                    "fencing",
                    "verify_alg",
                    "csums_alg",
                    "timeout_ms",
                    "connect_int_ms",
                    "ping_int_ms",
                    "ping_timeout_ms",
                    "ko_count",
                    "max_buffers",
                    "sndbuf_size_bytes",
                    "rcvbuf_size_bytes",
                ][..],
            ),
            (
                "resync",
                &[
                    "resync_rate_kib_s",
                    "c_plan_ahead_ms",
                    "c_delay_target_ms",
                    "c_fill_target_bytes",
                    "c_max_rate_kib_s",
                    "c_min_rate_kib_s",
                ][..],
            ),
        ] {
            for f in fields {
                if !seen.contains(&(section, *f)) {
                    assert_eq!(
                        c[section][*f],
                        default_of(section, f),
                        "{here}: we set {section}.{f} on the link to {peer} but DRBD does not"
                    );
                }
            }
        }
    }
}

#[test]
fn drbdadm_agrees_with_our_parse_and_with_our_normalised_dump() {
    let tmp = tempfile::tempdir().unwrap();
    for (file, res, hosts) in cases() {
        let o = ctl(&file, &["dump", "--json"]);
        o.ok();
        let dump: Value = serde_json::from_str(&o.stdout).unwrap();
        // Our normalised text, fed back to drbdadm.
        let text = ctl(&file, &["dump", res]);
        text.ok();
        let normalised = tmp.path().join(format!("{res}.res"));
        std::fs::write(&normalised, &text.stdout).unwrap();
        for host in hosts {
            let original = drbdadm_up(&file, res, host);
            assert!(
                !original.is_empty(),
                "drbdadm produced no commands for {res} on {host}"
            );
            check_semantics(&file, res, host, &original, &dump);
            let again = drbdadm_up(&normalised, res, host);
            assert_eq!(
                again, original,
                "drbdadm reads our dump of {res} differently (as {host}):\n{}",
                text.stdout
            );
        }
    }
}

#[test]
fn drbdadm_and_we_refuse_the_seed_with_its_stray_brace() {
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/zimbradata-seed.res");
    let o = run("drbdadm", &["-c", seed.to_str().unwrap(), "dump"], &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains(":20: Parse error"), "{}", o.stderr);
    ctl(&seed, &["dump"]).fails(
        20,
        &format!("{}:20:1: unexpected '}}' at top level", seed.display()),
    );
}

#[test]
fn unit_conversion_follows_drbd_utils() {
    assert_eq!(canonical("resync-rate", "40M"), "40960");
    assert_eq!(canonical("c-fill-target", "100k"), "200");
    assert_eq!(canonical("timeout", "50"), "50");
    assert_eq!(canonical("protocol", "C"), "c");
    assert_eq!(
        words(r"a ipv6:\[fd00::1\]:7000 --x=y\ z"),
        ["a", "ipv6:[fd00::1]:7000", "--x=y z"]
    );
}

//! Every agent binary's `meta-data` validates against Debian resource-agents' `ra-api-1.dtd`
//! (ocf-tester's check) and OCF 1.1 `metadata.rng`, and the dispatcher's argument rules hold
//! for the real binaries.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

const AGENTS: [(&str, &str); 3] = [
    ("tandem-ipaddr", "IPaddr"),
    ("tandem-filesystem", "Filesystem"),
    ("tandem-replicator", "replicator"),
];

fn xmllint(xml: &[u8], args: &[&str]) -> (bool, String) {
    let mut child = Command::new("xmllint")
        .arg("--noout")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint (libxml2-utils)");
    child.stdin.take().unwrap().write_all(xml).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_agents_meta_data_is_valid_against_both_schemas() {
    for (bin, name) in AGENTS {
        let out = Command::new(common::agent_bin(bin))
            .arg("meta-data")
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} meta-data failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("<resource-agent name=\"{name}\"")),
            "{text}"
        );
        let (ok, err) = xmllint(
            &out.stdout,
            &["--dtdvalid", "/usr/share/resource-agents/ra-api-1.dtd"],
        );
        assert!(ok, "{bin}: DTD: {err}");
        let (ok, err) = xmllint(
            &out.stdout,
            &["--relaxng", "/usr/share/resource-agents/metadata.rng"],
        );
        assert!(ok, "{bin}: RELAX NG: {err}");
    }
}

#[test]
fn argument_rules_of_every_agent() {
    for (bin, _) in AGENTS {
        let path = common::agent_bin(bin);
        let rc = |args: &[&str]| {
            Command::new(&path)
                .args(args)
                .env_clear()
                .output()
                .unwrap()
                .status
                .code()
        };
        assert_eq!(rc(&[]), Some(2), "{bin} without an action");
        assert_eq!(rc(&["start", "extra"]), Some(2), "{bin} with two arguments");
        assert_eq!(rc(&["frobnicate"]), Some(3), "{bin} with an unknown action");
        assert_eq!(rc(&["usage"]), Some(0), "{bin} usage");
        assert_eq!(
            rc(&["validate-all"]),
            Some(6),
            "{bin} validate-all without its required parameters"
        );
    }
}

#[test]
fn replicator_accepts_the_drbd_parameter_name() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("r.res");
    std::fs::write(&conf, "resource zimbradata {}\n").unwrap();
    // replicatorctl may not be installed: then validation stops at that, after the parameters.
    let o = common::run_agent(
        None,
        "tandem-replicator",
        "validate-all",
        "zd",
        &[
            ("drbd_resource", "zimbradata"),
            ("config", conf.to_str().unwrap()),
        ],
        &[],
    );
    assert!(
        !o.output.contains("parameter resource is required"),
        "{}",
        o.output
    );
    let o = common::run_agent(
        None,
        "tandem-replicator",
        "validate-all",
        "zd",
        &[("drbd_resource", "a"), ("resource", "b")],
        &[],
    );
    assert_eq!(o.rc, 6, "{}", o.output);
    assert!(o.output.contains("give only one"), "{}", o.output);
}

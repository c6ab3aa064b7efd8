//! Fuzzes clusterctl's pcs-syntax parser and the edits it produces: the input is split into
//! arguments (NUL- or whitespace-separated, so both token soup and single odd tokens occur); no
//! argument list panics the parser, and every edit either applies to a small configuration
//! and leaves it valid, or is refused with an error.
#![no_main]

use clusterd_core::pcs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = if text.contains('\0') {
        text.split('\0').map(String::from).collect()
    } else {
        text.split_whitespace().map(String::from).collect()
    };
    if args.len() > 64 {
        return;
    }
    let Ok(pcs::Command::Edit(edits)) = pcs::parse(&args) else {
        return;
    };
    let mut cib = pcs::new_configuration();
    for line in [
        "cluster setup c n1 n2",
        "resource create A ocf:heartbeat:Dummy",
        "resource create B ocf:pacemaker:Stateful promotable",
        "resource create C ocf:heartbeat:Dummy --group G",
    ] {
        let a: Vec<String> = line.split_whitespace().map(String::from).collect();
        let Ok(pcs::Command::Edit(e)) = pcs::parse(&a) else {
            unreachable!("fixed command parses")
        };
        pcs::apply(&mut cib, &e, &|_| None).expect("fixed edit applies");
    }
    if pcs::apply(&mut cib, &edits, &|_| None).is_ok() {
        cib.validate().expect("an applied edit leaves a valid configuration");
    }
});

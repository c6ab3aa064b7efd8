//! Fuzzes the `.res` parser: any text either parses or fails with a located error — never a
//! panic — and the normalised dump of anything accepted parses back to as many resources.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replicator_core::config::{MemSource, dump, load, parse_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Files for `include` statements to find (relative and glob includes resolve against /etc).
    let src = MemSource::new()
        .with("/etc/main.res", text)
        .with(
            "/etc/inc/common.conf",
            "common { net { protocol B; } disk { resync-rate 10M; } }",
        )
        .with(
            "/etc/inc/r9.res",
            "resource r9 { device minor 9; disk /d9; meta-disk internal; on h9 { } }",
        );
    match load("/etc/main.res", &src) {
        Ok(l) => {
            let d = dump::render(&l.config, Some("/run/fuzz"));
            let again = parse_str("dump.res", &d)
                .unwrap_or_else(|e| panic!("dump does not parse back: {e}\n{d}"));
            assert_eq!(again.config.resources.len(), l.config.resources.len());
        }
        Err(e) => assert!(
            e.pos.line >= 1 && e.pos.col >= 1 || e.pos.line == 0,
            "error without position: {e}"
        ),
    }
});

//! Fuzzes the NBD handshake: client flags, option headers, every option parser and the
//! Negotiator, fed as one byte stream the way a client would send it. Checks that nothing
//! panics, that every reply is well framed, and that a session only starts on a looked-up export.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_nbd::handshake::*;
use tandem_nbd::proto::*;
use tandem_nbd::session::*;

fn export(size: u64) -> ExportInfo {
    ExportInfo { name: "r0".into(), description: Some("d".into()), size, caps: Capabilities::FULL, block: BlockSizes::default() }
}

/// Every reply is a sequence of well-framed option replies answering `code`.
fn check_replies(mut b: &[u8], code: u32) {
    while !b.is_empty() {
        assert!(b.len() >= 20, "truncated option reply");
        assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), OPTION_REPLY_MAGIC);
        let c = u32::from_be_bytes(b[8..12].try_into().unwrap());
        assert!(c == code || code == OPT_ABORT, "reply to {c} for option {code}");
        let len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        assert!(len <= 4 + 2 * MAX_STRING_LEN + 14, "reply payload {len} too large");
        b = &b[20 + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let config = NegotiatorConfig { extended_headers: data[0] & 1 == 1 };
    let Ok(flags) = parse_client_flags(data[1..5].try_into().unwrap()) else { return };
    let mut n = Negotiator::new(config, flags);
    let mut rest = &data[5..];
    while rest.len() >= OPTION_HEADER_LEN {
        let (h, tail) = rest.split_at(OPTION_HEADER_LEN);
        let Ok(header) = parse_option_header(h.try_into().unwrap()) else { return };
        let len = header.len as usize;
        if tail.len() < len {
            return;
        }
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let option = parse_option(header, payload);
        let size = 1 << 20;
        let lookup = match option.as_ref().map(|o| o.need()) {
            Ok(Need::Export(name)) if name.len() % 2 == 0 => Lookup::Export(Ok(export(size))),
            Ok(Need::Export(_)) => Lookup::Export(Err(Refusal::policy("resource is Secondary"))),
            Ok(Need::List) => Lookup::List(vec![ExportListing { name: "r0".into(), description: None }]),
            _ => Lookup::None,
        };
        match n.step(header.code, option, lookup) {
            Step::Reply(b) => check_replies(&b, header.code),
            Step::Abort(b) => {
                check_replies(&b, header.code);
                return;
            }
            Step::Transmission { session, .. } => {
                assert_eq!(session.size, size);
                assert_ne!(session.flags & TFLAG_HAS_FLAGS, 0);
                assert!(session.base_allocation.is_none() || session.mode != ReplyMode::Simple);
                return;
            }
            Step::Disconnect(reason) => {
                assert!(!reason.is_empty());
                return;
            }
        }
    }
});

//! Unit and property tests of the pure codec: exact bytes for every reply we build, and every
//! malformed input rejected with the right error.
#![allow(clippy::cast_possible_truncation)] // test values are small by construction

use proptest::prelude::*;
use tandem_nbd::handshake::*;
use tandem_nbd::proto::*;
use tandem_nbd::reply::*;
use tandem_nbd::request::*;
use tandem_nbd::session::*;
use tandem_nbd::{Capabilities, ExportInfo};

fn info(size: u64) -> ExportInfo {
    ExportInfo {
        name: "r0".into(),
        description: Some("resource r0".into()),
        size,
        caps: Capabilities::FULL,
        block: BlockSizes::default(),
    }
}

fn opt_reply(code: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    push_option_reply(&mut v, code, kind, data);
    v
}

fn go_payload(name: &str, info: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(info.len() as u16).to_be_bytes());
    for i in info {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

fn meta_payload(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (export.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

fn parse(code: u32, payload: &[u8]) -> Result<ClientOption, OptionError> {
    parse_option(
        OptionHeader {
            code,
            len: payload.len() as u32,
        },
        payload,
    )
}

fn neg() -> Negotiator {
    Negotiator::new(
        NegotiatorConfig::default(),
        ClientFlags {
            fixed_newstyle: true,
            no_zeroes: true,
        },
    )
}

/// Feeds one option through parse + step with the export "r0" of `size` bytes.
fn step(n: &mut Negotiator, code: u32, payload: &[u8]) -> Step {
    let opt = parse(code, payload);
    let lookup = match opt.as_ref().map(|o| o.need()) {
        Ok(Need::Export(name)) if name == "r0" || name.is_empty() => {
            Lookup::Export(Ok(info(1 << 20)))
        }
        Ok(Need::Export(name)) => {
            Lookup::Export(Err(Refusal::unknown(format!("no export {name:?}"))))
        }
        Ok(Need::List) => Lookup::List(vec![ExportListing {
            name: "r0".into(),
            description: None,
        }]),
        _ => Lookup::None,
    };
    n.step(code, opt, lookup)
}

#[test]
fn greeting_is_nbdmagic_ihaveopt_fixed_newstyle_no_zeroes() {
    let g = greeting();
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    assert_eq!(&g[16..], &[0, 3]);
}

#[test]
fn client_flags_with_unknown_bits_are_fatal() {
    assert_eq!(
        parse_client_flags([0, 0, 0, 3]).unwrap(),
        ClientFlags {
            fixed_newstyle: true,
            no_zeroes: true
        }
    );
    assert_eq!(
        parse_client_flags([0, 0, 0, 0]).unwrap(),
        ClientFlags::default()
    );
    assert_eq!(
        parse_client_flags([0, 0, 0, 4]),
        Err(HandshakeError::UnknownClientFlags(4))
    );
    assert_eq!(
        parse_client_flags([0x80, 0, 0, 1]),
        Err(HandshakeError::UnknownClientFlags(0x8000_0001))
    );
}

#[test]
fn option_header_checks_magic_and_caps_length_before_reading() {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
    h[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
    h[12..16].copy_from_slice(&20u32.to_be_bytes());
    assert_eq!(
        parse_option_header(&h),
        Ok(OptionHeader {
            code: OPT_GO,
            len: 20
        })
    );
    h[12..16].copy_from_slice(&(MAX_OPTION_LEN + 1).to_be_bytes());
    assert_eq!(
        parse_option_header(&h),
        Err(HandshakeError::OptionTooLong {
            code: OPT_GO,
            len: MAX_OPTION_LEN + 1,
            max: MAX_OPTION_LEN
        })
    );
    h[..8].copy_from_slice(b"IHAVEOPX");
    assert!(matches!(
        parse_option_header(&h),
        Err(HandshakeError::BadOptionMagic(_))
    ));
}

#[test]
fn go_and_info_payloads_parse_exactly() {
    let p = go_payload("r0", &[INFO_BLOCK_SIZE, INFO_NAME]);
    assert_eq!(
        parse(OPT_GO, &p),
        Ok(ClientOption::Go(GoRequest {
            name: "r0".into(),
            info: vec![3, 1]
        }))
    );
    assert_eq!(
        parse(OPT_INFO, &go_payload("", &[])),
        Ok(ClientOption::Info(GoRequest {
            name: "".into(),
            info: vec![]
        }))
    );
}

#[test]
fn malformed_options_get_err_invalid_naming_the_problem() {
    let bad = |code, payload: &[u8], needle: &str| {
        let e = parse(code, payload).expect_err("must be rejected");
        assert_eq!(e.reply, REP_ERR_INVALID, "{e:?}");
        assert!(
            e.message.contains(needle),
            "{:?} should mention {needle:?}",
            e.message
        );
    };
    // Name length runs past the data.
    let mut p = go_payload("r0", &[]);
    p[3] = 200;
    bad(OPT_GO, &p, "name length 200");
    // Trailing garbage after the info requests.
    let mut p = go_payload("r0", &[INFO_NAME]);
    p.push(0);
    bad(OPT_GO, &p, "information requests need 2 bytes but 3 remain");
    // Too short to hold the name length.
    bad(OPT_INFO, &[0, 0], "shorter than the 4-byte name length");
    // Not UTF-8.
    let mut p = vec![0, 0, 0, 2, 0xff, 0xfe, 0, 0];
    bad(OPT_GO, &p, "not valid UTF-8");
    // NUL inside a name.
    p[4] = b'a';
    p[5] = 0;
    bad(OPT_GO, &p, "NUL");
    // Options that take no data.
    bad(OPT_LIST, &[1], "takes no data");
    bad(OPT_STRUCTURED_REPLY, &[1, 2], "takes no data");
    bad(OPT_EXTENDED_HEADERS, &[0], "takes no data");
    bad(OPT_STARTTLS, &[0], "takes no data");
    // Meta context: query length past the end, trailing bytes.
    let mut p = meta_payload("r0", &["base:allocation"]);
    p.truncate(p.len() - 1);
    bad(OPT_SET_META_CONTEXT, &p, "runs past the end");
    let mut p = meta_payload("r0", &["base:allocation"]);
    p.push(b'x');
    bad(OPT_LIST_META_CONTEXT, &p, "trailing data");
    // Too many queries is TOO_BIG, not INVALID.
    let mut p = meta_payload("r0", &[]);
    let n = p.len() - 4;
    p[n..].copy_from_slice(&(MAX_META_QUERIES + 1).to_be_bytes());
    assert_eq!(
        parse(OPT_SET_META_CONTEXT, &p).unwrap_err().reply,
        REP_ERR_TOO_BIG
    );
    // ABORT ignores data (the spec says so); unknown options parse as Unknown.
    assert_eq!(parse(OPT_ABORT, &[1, 2, 3]), Ok(ClientOption::Abort));
    assert_eq!(parse(42, &[9; 10]), Ok(ClientOption::Unknown(42)));
}

#[test]
fn go_answers_info_export_then_requested_info_then_ack_and_enters_transmission() {
    let mut n = neg();
    let Step::Transmission {
        reply,
        session,
        export,
    } = step(
        &mut n,
        OPT_GO,
        &go_payload("r0", &[INFO_BLOCK_SIZE, INFO_DESCRIPTION, INFO_NAME, 99]),
    )
    else {
        panic!("GO must enter transmission")
    };
    assert_eq!(export, "r0");
    let flags = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_SEND_FAST_ZERO
        | TFLAG_CAN_MULTI_CONN
        | TFLAG_SEND_CACHE;
    let mut want = Vec::new();
    let mut d = INFO_EXPORT.to_be_bytes().to_vec();
    d.extend_from_slice(&(1u64 << 20).to_be_bytes());
    d.extend_from_slice(&flags.to_be_bytes());
    push_option_reply(&mut want, OPT_GO, REP_INFO, &d);
    let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&4096u32.to_be_bytes());
    d.extend_from_slice(&(32u32 << 20).to_be_bytes());
    push_option_reply(&mut want, OPT_GO, REP_INFO, &d);
    let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
    d.extend_from_slice(b"resource r0");
    push_option_reply(&mut want, OPT_GO, REP_INFO, &d);
    let mut d = INFO_NAME.to_be_bytes().to_vec();
    d.extend_from_slice(b"r0");
    push_option_reply(&mut want, OPT_GO, REP_INFO, &d);
    push_option_reply(&mut want, OPT_GO, REP_ACK, &[]);
    assert_eq!(reply, want);
    assert_eq!(
        session,
        Session {
            mode: ReplyMode::Simple,
            size: 1 << 20,
            flags,
            block: BlockSizes::default(),
            base_allocation: None
        }
    );
}

#[test]
fn refusals_carry_the_lookup_message() {
    let mut n = neg();
    let msg = "resource r0 is Secondary on node n1; the export is only served while Primary";
    let opt = parse(OPT_GO, &go_payload("r0", &[]));
    let s = n.step(OPT_GO, opt, Lookup::Export(Err(Refusal::policy(msg))));
    assert_eq!(
        s,
        Step::Reply(opt_reply(OPT_GO, REP_ERR_POLICY, msg.as_bytes()))
    );
    // Unknown export: ERR_UNKNOWN, and haggling continues.
    let s = step(&mut n, OPT_INFO, &go_payload("nope", &[]));
    assert_eq!(
        s,
        Step::Reply(opt_reply(OPT_INFO, REP_ERR_UNKNOWN, b"no export \"nope\""))
    );
    // EXPORT_NAME cannot carry an error: hard disconnect.
    let s = step(&mut n, OPT_EXPORT_NAME, b"nope");
    assert!(matches!(s, Step::Disconnect(r) if r.contains("nope")));
}

#[test]
fn export_name_sends_size_flags_and_zeroes_unless_no_zeroes() {
    let mut n = Negotiator::new(
        NegotiatorConfig::default(),
        ClientFlags {
            fixed_newstyle: true,
            no_zeroes: false,
        },
    );
    let Step::Transmission { reply, .. } = step(&mut n, OPT_EXPORT_NAME, b"r0") else {
        panic!()
    };
    assert_eq!(reply.len(), 8 + 2 + 124);
    assert_eq!(&reply[..8], &(1u64 << 20).to_be_bytes());
    assert!(reply[10..].iter().all(|&b| b == 0));
    let mut n = neg();
    let Step::Transmission { reply, .. } = step(&mut n, OPT_EXPORT_NAME, b"") else {
        panic!()
    };
    assert_eq!(reply.len(), 10);
}

#[test]
fn structured_replies_and_extended_headers_negotiation() {
    let ack = |code| Step::Reply(opt_reply(code, REP_ACK, &[]));
    let mut n = neg();
    assert_eq!(
        step(&mut n, OPT_STRUCTURED_REPLY, &[]),
        ack(OPT_STRUCTURED_REPLY)
    );
    assert_eq!(n.mode(), ReplyMode::Structured);
    assert_eq!(
        step(&mut n, OPT_EXTENDED_HEADERS, &[]),
        ack(OPT_EXTENDED_HEADERS)
    );
    assert_eq!(n.mode(), ReplyMode::Extended);
    // Structured after extended: refused, extended stays.
    let Step::Reply(r) = step(&mut n, OPT_STRUCTURED_REPLY, &[]) else {
        panic!()
    };
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_EXT_HEADER_REQD
    );
    assert_eq!(n.mode(), ReplyMode::Extended);
    // EXPORT_NAME is forbidden once extended headers are on.
    assert!(matches!(
        step(&mut n, OPT_EXPORT_NAME, b"r0"),
        Step::Disconnect(_)
    ));
    // A server that disables extended headers answers UNSUP and qemu falls back.
    let mut n = Negotiator::new(
        NegotiatorConfig {
            extended_headers: false,
        },
        ClientFlags::default(),
    );
    let Step::Reply(r) = step(&mut n, OPT_EXTENDED_HEADERS, &[]) else {
        panic!()
    };
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_UNSUP
    );
    assert_eq!(n.mode(), ReplyMode::Simple);
}

#[test]
fn meta_context_selection_needs_structured_replies_and_the_same_export() {
    let mut n = neg();
    let Step::Reply(r) = step(
        &mut n,
        OPT_SET_META_CONTEXT,
        &meta_payload("r0", &["base:allocation"]),
    ) else {
        panic!()
    };
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_INVALID,
        "before STRUCTURED_REPLY"
    );
    step(&mut n, OPT_STRUCTURED_REPLY, &[]);
    // LIST with no query and with the "base:" wildcard lists base:allocation with id 0.
    let mut ctx = 0u32.to_be_bytes().to_vec();
    ctx.extend_from_slice(b"base:allocation");
    let mut want = opt_reply(OPT_LIST_META_CONTEXT, REP_META_CONTEXT, &ctx);
    want.extend(opt_reply(OPT_LIST_META_CONTEXT, REP_ACK, &[]));
    assert_eq!(
        step(&mut n, OPT_LIST_META_CONTEXT, &meta_payload("r0", &[])),
        Step::Reply(want.clone())
    );
    assert_eq!(
        step(
            &mut n,
            OPT_LIST_META_CONTEXT,
            &meta_payload("r0", &["base:"])
        ),
        Step::Reply(want)
    );
    // Unknown namespaces are ignored (just ACK); a query without a colon is invalid.
    assert_eq!(
        step(
            &mut n,
            OPT_LIST_META_CONTEXT,
            &meta_payload("r0", &["qemu:dirty-bitmap:x"])
        ),
        Step::Reply(opt_reply(OPT_LIST_META_CONTEXT, REP_ACK, &[]))
    );
    let Step::Reply(r) = step(
        &mut n,
        OPT_SET_META_CONTEXT,
        &meta_payload("r0", &["nocolon"]),
    ) else {
        panic!()
    };
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_INVALID
    );
    // SET selects with id 1.
    let mut ctx = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    ctx.extend_from_slice(b"base:allocation");
    let mut want = opt_reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, &ctx);
    want.extend(opt_reply(OPT_SET_META_CONTEXT, REP_ACK, &[]));
    assert_eq!(
        step(
            &mut n,
            OPT_SET_META_CONTEXT,
            &meta_payload("r0", &["base:allocation"])
        ),
        Step::Reply(want)
    );
    // GO to the same export: BLOCK_STATUS allowed.
    let mut n2 = n.clone();
    let Step::Transmission { session, .. } = step(&mut n2, OPT_GO, &go_payload("r0", &[])) else {
        panic!()
    };
    assert_eq!(session.base_allocation, Some(BASE_ALLOCATION_ID));
    assert!(session.has(TFLAG_SEND_DF));
    // GO to another name (the default export): the selection does not carry over.
    let Step::Transmission { session, .. } = step(&mut n, OPT_GO, &go_payload("", &[])) else {
        panic!()
    };
    assert_eq!(session.base_allocation, None);
}

#[test]
fn unknown_options_get_unsup_and_abort_gets_ack() {
    let mut n = neg();
    let Step::Reply(r) = step(&mut n, 77, b"whatever") else {
        panic!()
    };
    assert_eq!(u32::from_be_bytes(r[8..12].try_into().unwrap()), 77);
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_UNSUP
    );
    let Step::Reply(r) = step(&mut n, OPT_STARTTLS, &[]) else {
        panic!()
    };
    assert_eq!(
        u32::from_be_bytes(r[12..16].try_into().unwrap()),
        REP_ERR_UNSUP
    );
    let mut want = opt_reply(OPT_LIST, REP_SERVER, &[0, 0, 0, 2, b'r', b'0']);
    want.extend(opt_reply(OPT_LIST, REP_ACK, &[]));
    assert_eq!(step(&mut n, OPT_LIST, &[]), Step::Reply(want));
    assert_eq!(
        step(&mut n, OPT_ABORT, &[]),
        Step::Abort(opt_reply(OPT_ABORT, REP_ACK, &[]))
    );
}

#[test]
fn a_client_cannot_haggle_forever() {
    let mut n = neg();
    for _ in 0..MAX_OPTIONS {
        assert!(matches!(step(&mut n, 77, &[]), Step::Reply(_)));
    }
    assert!(matches!(step(&mut n, 77, &[]), Step::Disconnect(_)));
}

// ---- Transmission ---------------------------------------------------------------------------

const SIZE: u64 = 1 << 20;

fn session(mode: ReplyMode, caps: Capabilities) -> Session {
    let i = ExportInfo { caps, ..info(SIZE) };
    Session {
        mode,
        size: SIZE,
        flags: i.transmission_flags(mode),
        block: BlockSizes::default(),
        base_allocation: (mode != ReplyMode::Simple).then_some(BASE_ALLOCATION_ID),
    }
}

fn hdr(kind: u16, flags: u16, offset: u64, length: u64) -> RequestHeader {
    RequestHeader {
        flags,
        kind,
        cookie: 0xc0ffee,
        offset,
        length,
        extended: false,
    }
}

fn decode(s: &Session, h: RequestHeader) -> Decoded {
    let raw = h.encode();
    let parsed = RequestHeader::parse(&raw, h.extended).unwrap();
    assert_eq!(parsed, h);
    s.decode(&parsed).unwrap()
}

fn rejected(d: Decoded) -> (Errno, u64, String) {
    match d {
        Decoded::Reject(r) => (r.error, r.discard, r.reason),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn valid_requests_decode_to_typed_commands() {
    let s = session(ReplyMode::Structured, Capabilities::FULL);
    let req = |d: Decoded| match d {
        Decoded::Request(r) => r.command,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        req(decode(&s, hdr(CMD_READ, CMD_FLAG_DF, 512, 4096))),
        Command::Read {
            offset: 512,
            len: 4096
        }
    );
    assert_eq!(
        req(decode(&s, hdr(CMD_WRITE, CMD_FLAG_FUA, 0, 10))),
        Command::Write {
            offset: 0,
            len: 10,
            fua: true
        }
    );
    assert_eq!(req(decode(&s, hdr(CMD_FLUSH, 0, 0, 0))), Command::Flush);
    assert_eq!(
        req(decode(&s, hdr(CMD_TRIM, 0, 4096, 4096))),
        Command::Trim {
            offset: 4096,
            len: 4096,
            fua: false
        }
    );
    assert_eq!(
        req(decode(&s, hdr(CMD_CACHE, 0, 0, SIZE))),
        Command::Cache {
            offset: 0,
            len: SIZE
        }
    );
    assert_eq!(
        req(decode(
            &s,
            hdr(
                CMD_WRITE_ZEROES,
                CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
                0,
                SIZE
            )
        )),
        Command::WriteZeroes {
            offset: 0,
            len: SIZE,
            flags: ZeroFlags {
                fua: false,
                no_hole: true,
                fast: true
            }
        }
    );
    assert_eq!(
        req(decode(&s, hdr(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 0, SIZE))),
        Command::BlockStatus {
            offset: 0,
            len: SIZE,
            req_one: true,
            context: BASE_ALLOCATION_ID
        }
    );
    assert_eq!(decode(&s, hdr(CMD_DISC, 0, 0, 0)), Decoded::Disconnect);
    // FUA is accepted (and ignored) on every command, as the spec requires.
    assert_eq!(
        req(decode(&s, hdr(CMD_READ, CMD_FLAG_FUA, 0, 1))),
        Command::Read { offset: 0, len: 1 }
    );
}

#[test]
fn bad_requests_get_the_specs_errno() {
    let s = session(ReplyMode::Structured, Capabilities::FULL);
    // Past the end: EINVAL for reads/trims/status, ENOSPC for writes and zeroing.
    assert_eq!(
        rejected(decode(&s, hdr(CMD_READ, 0, SIZE - 1, 2))).0,
        Errno::Inval
    );
    assert_eq!(
        rejected(decode(&s, hdr(CMD_TRIM, 0, SIZE, 1))).0,
        Errno::Inval
    );
    assert_eq!(
        rejected(decode(&s, hdr(CMD_BLOCK_STATUS, 0, SIZE, 1))).0,
        Errno::Inval
    );
    assert_eq!(
        rejected(decode(&s, hdr(CMD_WRITE_ZEROES, 0, SIZE, 1))).0,
        Errno::NoSpc
    );
    let (e, discard, why) = rejected(decode(&s, hdr(CMD_WRITE, 0, SIZE - 100, 200)));
    assert_eq!(
        (e, discard),
        (Errno::NoSpc, 200),
        "the payload must be read and thrown away"
    );
    assert!(why.contains("past the end"), "{why}");
    // Offset + length overflowing u64.
    assert_eq!(
        rejected(decode(&s, hdr(CMD_READ, 0, u64::MAX, 1))).0,
        Errno::Inval
    );
    // Unknown command and unknown flags.
    assert_eq!(rejected(decode(&s, hdr(42, 0, 0, 0))).0, Errno::Inval);
    assert_eq!(
        rejected(decode(&s, hdr(CMD_WRITE, 1 << 9, 0, 4))),
        (
            Errno::Inval,
            4,
            "NBD_CMD_WRITE with flags 0x0200 not valid for it".into()
        )
    );
    assert_eq!(
        rejected(decode(&s, hdr(CMD_READ, CMD_FLAG_NO_HOLE, 0, 4))).0,
        Errno::Inval
    );
    assert_eq!(
        rejected(decode(&s, hdr(CMD_TRIM, CMD_FLAG_FAST_ZERO, 0, 4))).0,
        Errno::Inval
    );
    // FLUSH must be all-zero.
    assert_eq!(
        rejected(decode(&s, hdr(CMD_FLUSH, 0, 0, 1))).0,
        Errno::Inval
    );
    // Zero-length block status.
    assert_eq!(
        rejected(decode(&s, hdr(CMD_BLOCK_STATUS, 0, 0, 0))).0,
        Errno::Inval
    );
    // A READ above the maximum payload is refused, not honoured.
    let big = session(ReplyMode::Structured, Capabilities::FULL);
    let big = Session {
        size: u64::MAX,
        ..big
    };
    assert_eq!(
        rejected(decode(
            &big,
            hdr(CMD_READ, 0, 0, u64::from(DEFAULT_MAX_PAYLOAD) + 1)
        ))
        .0,
        Errno::Inval
    );
    // A WRITE payload above the maximum is never read: hard disconnect.
    assert_eq!(
        big.decode(&hdr(CMD_WRITE, 0, 0, u64::from(DEFAULT_MAX_PAYLOAD) + 1)),
        Err(Violation::PayloadTooLarge {
            command: "NBD_CMD_WRITE",
            len: u64::from(DEFAULT_MAX_PAYLOAD) + 1,
            max: DEFAULT_MAX_PAYLOAD
        })
    );
}

#[test]
fn what_was_not_negotiated_is_refused() {
    // Simple mode: no DF, no block status.
    let s = session(ReplyMode::Simple, Capabilities::FULL);
    assert_eq!(
        rejected(decode(&s, hdr(CMD_READ, CMD_FLAG_DF, 0, 1))).0,
        Errno::Inval
    );
    let (e, _, why) = rejected(decode(&s, hdr(CMD_BLOCK_STATUS, 0, 0, 1)));
    assert_eq!(e, Errno::Inval);
    assert!(why.contains("metadata context"), "{why}");
    // Read-only: writes are EPERM.
    let ro = session(
        ReplyMode::Structured,
        Capabilities {
            read_only: true,
            ..Capabilities::FULL
        },
    );
    assert!(
        ro.has(TFLAG_READ_ONLY) && !ro.has(TFLAG_SEND_TRIM) && !ro.has(TFLAG_SEND_WRITE_ZEROES)
    );
    assert_eq!(
        rejected(decode(&ro, hdr(CMD_WRITE, 0, 0, 8))),
        (Errno::Perm, 8, "NBD_CMD_WRITE on a read-only export".into())
    );
    assert_eq!(rejected(decode(&ro, hdr(CMD_TRIM, 0, 0, 8))).0, Errno::Perm);
    assert_eq!(
        rejected(decode(&ro, hdr(CMD_WRITE_ZEROES, 0, 0, 8))).0,
        Errno::Perm
    );
    // No FAST_ZERO advertised: the flag is EINVAL.
    let nofast = session(
        ReplyMode::Structured,
        Capabilities {
            fast_zero: false,
            ..Capabilities::FULL
        },
    );
    assert_eq!(
        rejected(decode(
            &nofast,
            hdr(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 0, 8)
        ))
        .0,
        Errno::Inval
    );
    // Alignment to a minimum block size.
    let aligned = Session {
        block: BlockSizes {
            minimum: 512,
            preferred: 4096,
            maximum: 1 << 25,
        },
        ..s
    };
    assert_eq!(
        rejected(decode(&aligned, hdr(CMD_READ, 0, 100, 512))).0,
        Errno::Inval
    );
}

#[test]
fn extended_headers_carry_64_bit_lengths_and_payload_len() {
    let s = session(ReplyMode::Extended, Capabilities::FULL);
    let big = Session {
        size: 1 << 40,
        ..s.clone()
    };
    let h = RequestHeader {
        extended: true,
        ..hdr(CMD_TRIM, 0, 0, 1 << 35)
    };
    assert!(
        matches!(decode(&big, h), Decoded::Request(Request { command: Command::Trim { len, .. }, .. }) if len == 1 << 35)
    );
    // A WRITE's length is its payload, with or without PAYLOAD_LEN.
    for f in [0, CMD_FLAG_PAYLOAD_LEN] {
        let h = RequestHeader {
            extended: true,
            ..hdr(CMD_WRITE, f, 0, 512)
        };
        assert_eq!(
            decode(&s, h).clone(),
            Decoded::Request(Request {
                cookie: 0xc0ffee,
                offset: 0,
                command: Command::Write {
                    offset: 0,
                    len: 512,
                    fua: false
                }
            })
        );
    }
    // Another command with a payload: rejected, payload discarded to stay in sync.
    let h = RequestHeader {
        extended: true,
        ..hdr(CMD_READ, CMD_FLAG_PAYLOAD_LEN, 0, 300)
    };
    assert_eq!(rejected(decode(&s, h)).1, 300);
    // The compact magic is wrong once extended headers are negotiated.
    let raw = hdr(CMD_READ, 0, 0, 1).encode();
    let mut padded = raw.clone();
    padded.extend_from_slice(&[0; 4]);
    assert!(matches!(
        RequestHeader::parse(&padded, true),
        Err(Violation::BadMagic { .. })
    ));
    assert!(matches!(
        RequestHeader::parse(&[0u8; 28], false),
        Err(Violation::BadMagic { got: 0, .. })
    ));
}

#[test]
fn reply_encodings_are_exact() {
    let mut v = Vec::new();
    encode_ok(&mut v, ReplyMode::Simple, 7, 0);
    assert_eq!(
        v,
        [
            &SIMPLE_REPLY_MAGIC.to_be_bytes()[..],
            &[0; 4],
            &7u64.to_be_bytes()
        ]
        .concat()
    );
    v.clear();
    encode_error(
        &mut v,
        ReplyMode::Simple,
        7,
        0,
        Errno::NoSpc,
        "ignored in simple replies",
    );
    assert_eq!(
        v,
        [
            &SIMPLE_REPLY_MAGIC.to_be_bytes()[..],
            &28u32.to_be_bytes(),
            &7u64.to_be_bytes()
        ]
        .concat()
    );
    v.clear();
    encode_error(&mut v, ReplyMode::Structured, 7, 0, Errno::Inval, "bad");
    let want = [
        &STRUCTURED_REPLY_MAGIC.to_be_bytes()[..],
        &REPLY_FLAG_DONE.to_be_bytes(),
        &REPLY_TYPE_ERROR.to_be_bytes(),
        &7u64.to_be_bytes(),
        &9u32.to_be_bytes(),
        &22u32.to_be_bytes(),
        &3u16.to_be_bytes(),
        b"bad",
    ]
    .concat();
    assert_eq!(v, want);
    v.clear();
    encode_read(&mut v, ReplyMode::Structured, 7, 4096, 512);
    let want = [
        &STRUCTURED_REPLY_MAGIC.to_be_bytes()[..],
        &REPLY_FLAG_DONE.to_be_bytes(),
        &REPLY_TYPE_OFFSET_DATA.to_be_bytes(),
        &7u64.to_be_bytes(),
        &520u32.to_be_bytes(),
        &4096u64.to_be_bytes(),
    ]
    .concat();
    assert_eq!(v, want);
    v.clear();
    encode_read(&mut v, ReplyMode::Extended, 7, 4096, 512);
    let want = [
        &EXTENDED_REPLY_MAGIC.to_be_bytes()[..],
        &REPLY_FLAG_DONE.to_be_bytes(),
        &REPLY_TYPE_OFFSET_DATA.to_be_bytes(),
        &7u64.to_be_bytes(),
        &4096u64.to_be_bytes(),
        &520u64.to_be_bytes(),
        &4096u64.to_be_bytes(),
    ]
    .concat();
    assert_eq!(v, want);
    v.clear();
    encode_ok(&mut v, ReplyMode::Extended, 7, 99);
    assert_eq!(v.len(), 32, "extended replies never use the simple form");
    assert_eq!(&v[6..8], &REPLY_TYPE_NONE.to_be_bytes());
    v.clear();
    let ext = [
        Extent {
            len: 4096,
            flags: STATE_HOLE | STATE_ZERO,
        },
        Extent { len: 512, flags: 0 },
    ];
    encode_block_status(&mut v, ReplyMode::Structured, 7, 0, 1, &ext);
    let want = [
        &STRUCTURED_REPLY_MAGIC.to_be_bytes()[..],
        &REPLY_FLAG_DONE.to_be_bytes(),
        &REPLY_TYPE_BLOCK_STATUS.to_be_bytes(),
        &7u64.to_be_bytes(),
        &20u32.to_be_bytes(),
        &1u32.to_be_bytes(),
        &4096u32.to_be_bytes(),
        &3u32.to_be_bytes(),
        &512u32.to_be_bytes(),
        &0u32.to_be_bytes(),
    ]
    .concat();
    assert_eq!(v, want);
    v.clear();
    encode_block_status(&mut v, ReplyMode::Extended, 7, 0, 1, &ext);
    assert_eq!(v.len(), 32 + 8 + 2 * 16);
    assert_eq!(&v[6..8], &REPLY_TYPE_BLOCK_STATUS_EXT.to_be_bytes());
    assert_eq!(&v[36..40], &2u32.to_be_bytes(), "descriptor count");
}

#[test]
fn errno_mapping_follows_the_spec() {
    assert_eq!(Errno::from_os(libc_errno::EDQUOT), Errno::NoSpc);
    assert_eq!(Errno::from_os(libc_errno::EFBIG), Errno::NoSpc);
    assert_eq!(Errno::from_os(libc_errno::EROFS), Errno::Perm);
    assert_eq!(Errno::from_os(libc_errno::EOPNOTSUPP), Errno::NotSup);
    assert_eq!(Errno::from_os(libc_errno::EBADF), Errno::Io);
    for e in [
        Errno::Perm,
        Errno::Io,
        Errno::NoMem,
        Errno::Inval,
        Errno::NoSpc,
        Errno::Overflow,
        Errno::NotSup,
        Errno::Shutdown,
    ] {
        assert_eq!(Errno::from_code(e.code()), Some(e));
    }
}

mod libc_errno {
    pub const EBADF: i32 = 9;
    pub const EFBIG: i32 = 27;
    pub const EROFS: i32 = 30;
    pub const EOPNOTSUPP: i32 = 95;
    pub const EDQUOT: i32 = 122;
}

/// Regression: an export larger than 32 MiB has non-default constraints (the default maximum
/// is unlimited, ours 32 MiB), which the spec says a server MUST advertise in reply to INFO and
/// GO even when the client did not ask — the kernel's nbd-client never asks.
#[test]
fn info_and_go_advertise_non_default_block_sizes_unasked() {
    let block_info = |min: u32, pref: u32, max: u32| {
        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [min, pref, max] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d
    };
    let replies = |reply: &[u8]| {
        // (type, data) of every option reply in `reply`.
        let mut out = Vec::new();
        let mut rest = reply;
        while !rest.is_empty() {
            let kind = u32::from_be_bytes(rest[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(rest[16..20].try_into().unwrap()) as usize;
            out.push((kind, rest[20..20 + len].to_vec()));
            rest = &rest[20 + len..];
        }
        out
    };
    for code in [OPT_INFO, OPT_GO] {
        let mut n = neg();
        let opt = parse(code, &go_payload("r0", &[]));
        let step = n.step(code, opt, Lookup::Export(Ok(info(1 << 30))));
        let (Step::Reply(reply) | Step::Transmission { reply, .. }) = step else {
            panic!("INFO/GO of a known export succeeds")
        };
        let got = replies(&reply);
        assert_eq!(got.len(), 3, "INFO_EXPORT, INFO_BLOCK_SIZE, ACK: {got:?}");
        assert_eq!(got[0].0, REP_INFO);
        assert_eq!(&got[0].1[..2], &INFO_EXPORT.to_be_bytes());
        assert_eq!(got[1], (REP_INFO, block_info(1, 4096, 32 << 20)));
        assert_eq!(got[2], (REP_ACK, Vec::new()));
        // Asked for: sent once, not twice.
        let mut n = neg();
        let opt = parse(code, &go_payload("r0", &[INFO_BLOCK_SIZE]));
        let (Step::Reply(reply) | Step::Transmission { reply, .. }) =
            n.step(code, opt, Lookup::Export(Ok(info(1 << 30))))
        else {
            panic!()
        };
        let n_block = replies(&reply)
            .iter()
            .filter(|(k, d)| *k == REP_INFO && d[..2] == INFO_BLOCK_SIZE.to_be_bytes())
            .count();
        assert_eq!(n_block, 1);
    }
    // A 1 MiB export: 32 MiB is no limit at all, the defaults hold, nothing extra is sent.
    let mut n = neg();
    let Step::Transmission { reply, .. } = step(&mut n, OPT_GO, &go_payload("r0", &[])) else {
        panic!()
    };
    assert_eq!(replies(&reply).len(), 2);
    // A minimum block size is never a default.
    let big_min = ExportInfo {
        block: BlockSizes {
            minimum: 512,
            preferred: 4096,
            maximum: 32 << 20,
        },
        ..info(1 << 20)
    };
    let mut n = neg();
    let opt = parse(OPT_GO, &go_payload("r0", &[]));
    let Step::Transmission { reply, .. } = n.step(OPT_GO, opt, Lookup::Export(Ok(big_min))) else {
        panic!()
    };
    assert_eq!(
        replies(&reply)[1],
        (REP_INFO, block_info(512, 4096, 32 << 20))
    );
}

/// Regression: with a maximum block size below 32 MiB, a WRITE between the maximum and
/// 32 MiB was a hard disconnect; the spec says such a length SHOULD NOT be taken for a denial
/// of service. It is refused with EINVAL and its payload skipped; only one above 32 MiB (or the
/// maximum, if larger) ends the connection.
#[test]
fn write_above_a_small_maximum_is_refused_not_disconnected() {
    let s = Session {
        size: 1 << 30,
        block: BlockSizes {
            minimum: 1,
            preferred: 4096,
            maximum: 1 << 20,
        },
        ..session(ReplyMode::Structured, Capabilities::FULL)
    };
    let (err, discard, reason) = rejected(decode(&s, hdr(CMD_WRITE, 0, 0, 2 << 20)));
    assert_eq!((err, discard), (Errno::Inval, 2 << 20));
    assert!(
        reason.contains("exceeds the 1048576-byte maximum"),
        "{reason}"
    );
    let just_32 = u64::from(DEFAULT_MAX_PAYLOAD);
    assert_eq!(
        rejected(decode(&s, hdr(CMD_WRITE, 0, 0, just_32))).1,
        just_32
    );
    assert_eq!(
        s.decode(&hdr(CMD_WRITE, 0, 0, just_32 + 1)),
        Err(Violation::PayloadTooLarge {
            command: "NBD_CMD_WRITE",
            len: just_32 + 1,
            max: DEFAULT_MAX_PAYLOAD
        })
    );
}

/// Regression: descriptor lengths MUST be multiples of the minimum block size. Backend extents
/// that do not fall on block boundaries are merged: a straddling block gets the flags all of
/// it shares; a partial block at the end is left for the client's next request.
#[test]
fn block_status_descriptors_are_whole_minimum_blocks() {
    const H: u32 = STATE_HOLE | STATE_ZERO;
    let e = |len: u64, flags: u32| Extent { len, flags };
    let clip =
        |v: &[Extent], len: u64| clip_extents_aligned(v, len, false, ReplyMode::Structured, 4096);
    // 1000 data + 7192 hole + 8192 data: the first block is part data → data; then one whole
    // hole block; then the data.
    assert_eq!(
        clip(&[e(1000, 0), e(7192, H), e(8192, 0)], 16384),
        [e(4096, 0), e(4096, H), e(8192, 0)]
    );
    // Hole, then a block half hole half zero-but-allocated: only ZERO is shared.
    assert_eq!(
        clip(&[e(6144, H), e(6144, STATE_ZERO)], 12288),
        [e(4096, H), e(8192, STATE_ZERO)]
    );
    // The backend described 5000 bytes: one block, the partial one left out.
    assert_eq!(clip(&[e(5000, H)], 65536), [e(4096, H)]);
    // Less than one block described: one block of status 0 (always true).
    assert_eq!(clip(&[e(100, H)], 65536), [e(4096, 0)]);
    // The 32-bit split point is itself a multiple of a 64 KiB minimum.
    let out = clip_extents_aligned(
        &[e(1 << 33, H)],
        1 << 33,
        false,
        ReplyMode::Structured,
        65536,
    );
    assert!(
        out.iter()
            .all(|x| x.len % 65536 == 0 && x.len <= u64::from(u32::MAX)),
        "{out:?}"
    );
    assert_eq!(out.iter().map(|x| x.len).sum::<u64>(), 1 << 33);
    // A minimum of 1 is the old behaviour exactly.
    assert_eq!(
        clip_extents_aligned(
            &[e(1000, 0), e(7192, H)],
            8192,
            false,
            ReplyMode::Structured,
            1
        ),
        clip_extents(
            &[e(1000, 0), e(7192, H)],
            8192,
            false,
            ReplyMode::Structured
        )
    );
}

proptest! {
    /// Header encode/parse round-trips for both header sizes.
    #[test]
    fn request_header_round_trip(flags: u16, kind: u16, cookie: u64, offset: u64, len32: u32, len64: u64, extended: bool) {
        let h = RequestHeader { flags, kind, cookie, offset, length: if extended { len64 } else { u64::from(len32) }, extended };
        let raw = h.encode();
        prop_assert_eq!(raw.len(), if extended { 32 } else { 28 });
        prop_assert_eq!(RequestHeader::parse(&raw, extended).unwrap(), h);
    }

    /// Against a simple oracle: a flagless READ/WRITE/TRIM within bounds is accepted with its
    /// exact fields, past the end it is rejected with EINVAL (ENOSPC for WRITE), and a WRITE
    /// payload is always accounted for.
    #[test]
    fn range_checks_match_the_oracle(kind in prop_oneof![Just(CMD_READ), Just(CMD_WRITE), Just(CMD_TRIM)], offset in 0u64..2 * SIZE, len in 0u32..(1 << 17)) {
        let s = session(ReplyMode::Structured, Capabilities::FULL);
        let d = s.decode(&hdr(kind, 0, offset, u64::from(len))).unwrap();
        let inside = offset + u64::from(len) <= SIZE;
        match d {
            Decoded::Request(r) => {
                prop_assert!(inside);
                prop_assert_eq!(r.cookie, 0xc0ffee);
                let want = match kind {
                    CMD_READ => Command::Read { offset, len },
                    CMD_WRITE => Command::Write { offset, len, fua: false },
                    _ => Command::Trim { offset, len: u64::from(len), fua: false },
                };
                prop_assert_eq!(r.command, want);
            }
            Decoded::Reject(r) => {
                prop_assert!(!inside);
                prop_assert_eq!(r.error, if kind == CMD_WRITE { Errno::NoSpc } else { Errno::Inval });
                prop_assert_eq!(r.discard, if kind == CMD_WRITE { u64::from(len) } else { 0 });
            }
            Decoded::Disconnect => prop_assert!(false, "not a DISC"),
        }
    }

    /// Any header decodes without panicking, and anything accepted lies inside the export.
    #[test]
    fn any_header_is_judged_safely(flags: u16, kind in 0u16..12, offset: u64, length: u64, extended: bool, mode in 0u8..3) {
        let mode = [ReplyMode::Simple, ReplyMode::Structured, ReplyMode::Extended][mode as usize];
        let s = session(mode, Capabilities::FULL);
        let length = if extended { length } else { length & 0xffff_ffff };
        let h = RequestHeader { flags, kind, cookie: 1, offset, length, extended };
        match s.decode(&h) {
            Ok(Decoded::Request(r)) => {
                let (off, len) = match r.command {
                    Command::Read { offset, len } | Command::Write { offset, len, .. } => (offset, u64::from(len)),
                    Command::Trim { offset, len, .. } | Command::Cache { offset, len } | Command::WriteZeroes { offset, len, .. } | Command::BlockStatus { offset, len, .. } => (offset, len),
                    Command::Flush => (0, 0),
                };
                prop_assert!(off + len <= SIZE);
                prop_assert!(r.command.payload_len() <= DEFAULT_MAX_PAYLOAD);
            }
            Ok(Decoded::Reject(r)) => prop_assert!(r.discard <= u64::from(DEFAULT_MAX_PAYLOAD)),
            Ok(Decoded::Disconnect) => prop_assert_eq!(kind, CMD_DISC),
            Err(Violation::PayloadTooLarge { len, .. }) => prop_assert!(len > u64::from(DEFAULT_MAX_PAYLOAD)),
            Err(Violation::BadMagic { .. }) => prop_assert!(false, "magic was right"),
        }
    }

    /// Aligned extents: every descriptor a whole number of minimum blocks, total ≤ requested,
    /// at least one, and each block's flags a subset of the flags of every input byte in it.
    #[test]
    fn aligned_extents_are_whole_blocks_with_shared_flags(raw in prop::collection::vec((0u64..20_000, 0u32..4), 1..40), blocks in 1u64..64, shift in 0u32..17, req_one: bool, ext: bool) {
        let min = 1u64 << shift;
        let len = blocks * min;
        let mode = if ext { ReplyMode::Extended } else { ReplyMode::Structured };
        let input: Vec<Extent> = raw.iter().map(|&(l, f)| Extent { len: l, flags: f }).collect();
        let out = clip_extents_aligned(&input, len, req_one, mode, min as u32);
        let total_in: u64 = input.iter().map(|e| e.len).sum();
        if total_in == 0 { prop_assert!(out.is_empty()); return Ok(()); }
        prop_assert!(!out.is_empty());
        prop_assert!(out.iter().all(|e| e.len > 0 && e.len % min == 0));
        prop_assert!(out.iter().map(|e| e.len).sum::<u64>() <= len);
        if req_one { prop_assert_eq!(out.len(), 1); }
        let flag_at = |pos: u64| { let mut p = 0; for e in &input { if pos < p + e.len { return Some(e.flags) } p += e.len; } None };
        let mut pos = 0;
        for e in &out {
            // Sample the block edges and middle: the output's flags hold for every input byte.
            for probe in [pos, pos + e.len / 2, pos + e.len - 1] {
                if let Some(f) = flag_at(probe) { prop_assert_eq!(e.flags & !f, 0, "flags {:#x} at {} not in input {:#x}", e.flags, probe, f); }
            }
            pos += e.len;
        }
    }

    /// Extents on the wire: no empty extent, total ≤ requested, compact ones fit 32 bits,
    /// REQ_ONE gives one, bounded count, and merging keeps the covered prefix intact.
    #[test]
    fn clipped_extents_are_well_formed(raw in prop::collection::vec((0u64..(1 << 34), 0u32..4), 1..50), len in 1u64..(1 << 36), req_one: bool, ext: bool) {
        let mode = if ext { ReplyMode::Extended } else { ReplyMode::Structured };
        let input: Vec<Extent> = raw.iter().map(|&(l, f)| Extent { len: l, flags: f }).collect();
        let out = clip_extents(&input, len, req_one, mode);
        let total_in: u64 = input.iter().map(|e| e.len).sum();
        let total_out: u64 = out.iter().map(|e| e.len).sum();
        prop_assert!(out.iter().all(|e| e.len > 0));
        prop_assert!(total_out <= len);
        prop_assert!(out.len() <= MAX_EXTENTS);
        if !ext { prop_assert!(out.iter().all(|e| e.len <= u64::from(u32::MAX))); }
        if req_one { prop_assert!(out.len() <= 1); }
        if !req_one && out.len() < MAX_EXTENTS && total_in > 0 {
            prop_assert_eq!(total_out, total_in.min(len));
        }
        // The flags at every covered byte match the input's.
        let flag_at = |v: &[Extent], pos: u64| { let mut p = 0; for e in v { if pos < p + e.len { return Some(e.flags) } p += e.len; } None };
        let mut pos = 0;
        for e in &out {
            prop_assert_eq!(flag_at(&input, pos), Some(e.flags));
            prop_assert_eq!(flag_at(&input, pos + e.len - 1), Some(e.flags));
            pos += e.len;
        }
    }
}

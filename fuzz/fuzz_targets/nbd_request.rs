//! Fuzzes transmission-phase request decoding: headers (compact and extended) parsed and judged
//! against sessions of every reply mode and capability set. Checks that nothing panics, that an
//! accepted request lies inside the export and never makes us allocate more than the maximum
//! payload, and that reply encoding of whatever was decided is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_nbd::proto::*;
use tandem_nbd::reply::*;
use tandem_nbd::request::*;
use tandem_nbd::session::*;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mode = [ReplyMode::Simple, ReplyMode::Structured, ReplyMode::Extended][usize::from(data[0] % 3)];
    let caps = Capabilities {
        read_only: data[1] & 1 != 0,
        flush: data[1] & 2 != 0,
        trim: data[1] & 4 != 0,
        write_zeroes: data[1] & 8 != 0,
        fast_zero: data[1] & 16 != 0,
        cache: data[1] & 32 != 0,
        block_status: data[1] & 64 != 0,
        multi_conn: data[1] & 128 != 0,
        rotational: false,
    };
    let size = u64::from_be_bytes(data[1..9].try_into().unwrap()) >> (data[2] % 64);
    let min = 1u32 << (data[3] % 13);
    let block = BlockSizes { minimum: min, preferred: 4096.max(min), maximum: DEFAULT_MAX_PAYLOAD };
    let info = ExportInfo { name: "r0".into(), description: None, size, caps, block };
    let session = Session {
        mode,
        size,
        flags: info.transmission_flags(mode),
        block,
        base_allocation: (mode != ReplyMode::Simple && caps.block_status).then_some(BASE_ALLOCATION_ID),
    };
    let extended = mode == ReplyMode::Extended;
    let hlen = session.request_header_len();
    let mut out = Vec::new();
    for raw in data[9..].chunks_exact(hlen) {
        let h = match RequestHeader::parse(raw, extended) {
            Ok(h) => h,
            Err(Violation::BadMagic { .. }) => continue,
            Err(e) => panic!("parse can only fail on the magic: {e}"),
        };
        assert_eq!(RequestHeader::parse(&h.encode(), extended), Ok(h));
        out.clear();
        match session.decode(&h) {
            Ok(Decoded::Request(r)) => {
                let (off, len) = match r.command {
                    Command::Read { offset, len } | Command::Write { offset, len, .. } => (offset, u64::from(len)),
                    Command::Trim { offset, len, .. }
                    | Command::Cache { offset, len }
                    | Command::WriteZeroes { offset, len, .. }
                    | Command::BlockStatus { offset, len, .. } => (offset, len),
                    Command::Flush => (0, 0),
                };
                assert!(off.checked_add(len).is_some_and(|e| e <= size));
                assert!(off % u64::from(min) == 0 && len % u64::from(min) == 0);
                assert!(r.command.buffer_len() <= DEFAULT_MAX_PAYLOAD);
                if caps.read_only {
                    assert!(!matches!(r.command, Command::Write { .. } | Command::Trim { .. } | Command::WriteZeroes { .. }));
                }
                match r.command {
                    Command::Read { len, .. } => encode_read(&mut out, mode, r.cookie, r.offset, len),
                    Command::BlockStatus { len, req_one, context, .. } => {
                        let e = clip_extents(&[Extent { len: len.max(1), flags: STATE_HOLE }], len, req_one, mode);
                        encode_block_status(&mut out, mode, r.cookie, r.offset, context, &e);
                    }
                    _ => encode_ok(&mut out, mode, r.cookie, r.offset),
                }
            }
            Ok(Decoded::Reject(r)) => {
                assert!(r.discard <= u64::from(DEFAULT_MAX_PAYLOAD));
                assert!(!r.reason.is_empty());
                encode_error(&mut out, mode, r.cookie, r.offset, r.error, &r.reason);
            }
            Ok(Decoded::Disconnect) => assert_eq!(h.kind, CMD_DISC),
            Err(Violation::PayloadTooLarge { len, max, .. }) => assert!(len > u64::from(max)),
            Err(Violation::BadMagic { .. }) => unreachable!("magic was checked"),
        }
        if !out.is_empty() {
            let magic = u32::from_be_bytes(out[..4].try_into().unwrap());
            assert!([SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, EXTENDED_REPLY_MAGIC].contains(&magic));
            if extended {
                assert_eq!(magic, EXTENDED_REPLY_MAGIC, "no simple replies under extended headers");
            }
        }
    }
});

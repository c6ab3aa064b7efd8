#![allow(clippy::cast_possible_truncation)] // test sizes are small constants

use super::*;
use crate::protocol::bitmap_xfer::BitmapRun;
use crate::protocol::handshake::{Hello, Refusal};
use crate::protocol::split_brain::AfterSbPolicies;
use crate::protocol::verify::{VerifyAlg, digest};
use crate::types::{DiskState, GenerationIds, NodeId, Protocol, Role, Uuid};
use bytes::Bytes;
use proptest::prelude::*;

fn arb_uuids() -> impl Strategy<Value = GenerationIds> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(c, b, h0, h1)| {
        GenerationIds {
            current: Uuid(c),
            bitmap: Uuid(b),
            history: [Uuid(h0), Uuid(h1)],
        }
    })
}

fn arb_disk() -> impl Strategy<Value = DiskState> {
    prop_oneof![
        Just(DiskState::Inconsistent),
        Just(DiskState::UpToDate),
        Just(DiskState::Consistent),
        Just(DiskState::Outdated)
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let data = proptest::collection::vec(any::<u8>(), 1..600).prop_map(Bytes::from);
    prop_oneof![
        (
            arb_uuids(),
            any::<u64>(),
            any::<u64>(),
            arb_disk(),
            any::<bool>()
        )
            .prop_map(|(uuids, size, w, disk, f)| Message::Hello(Hello {
                version_min: 1,
                version_max: 1,
                node_id: NodeId(0),
                peer_node_id: NodeId(1),
                size_bytes: size,
                protocol: Protocol::B,
                allow_two_primaries: f,
                after_sb: AfterSbPolicies::default(),
                uuids,
                bitmap_weight: w,
                role: Role::Primary,
                disk,
                discard_my_data: !f,
                crashed_primary: f,
            })),
        Just(Message::Refuse {
            reason: Refusal::ByPeer(Box::new(Refusal::Size { mine: 1, peer: 2 }))
        }),
        (arb_disk()).prop_map(|disk| Message::State {
            role: Role::Secondary,
            disk
        }),
        (any::<u64>(), 0u64..1 << 40, data.clone(), any::<bool>()).prop_map(
            |(seq, offset, data, fua)| Message::Data {
                seq,
                offset,
                data,
                fua
            }
        ),
        any::<u64>().prop_map(|seq| Message::RecvAck { seq }),
        any::<u64>().prop_map(|seq| Message::WriteAck { seq }),
        any::<u64>().prop_map(|seq| Message::Barrier { seq }),
        any::<u64>().prop_map(|seq| Message::BarrierAck { seq }),
        (
            proptest::collection::vec(
                (
                    any::<u64>(),
                    proptest::collection::vec(any::<u64>(), 0..20),
                    any::<bool>()
                ),
                0..10
            ),
            any::<bool>()
        )
            .prop_map(|(runs, last)| Message::BitmapPart {
                runs: runs
                    .into_iter()
                    .map(|(start, words, ones)| if ones {
                        BitmapRun::Ones {
                            start,
                            count: words.len() as u64,
                        }
                    } else {
                        BitmapRun::Words { start, words }
                    })
                    .collect(),
                last
            }),
        any::<u64>().prop_map(|u| Message::SyncUuid { uuid: Uuid(u) }),
        (any::<u64>(), 0u64..1 << 40, data).prop_map(|(seq, offset, data)| Message::RsData {
            seq,
            offset,
            data
        }),
        any::<u64>().prop_map(|seq| Message::RsBarrier { seq }),
        any::<u64>().prop_map(|seq| Message::RsBarrierAck { seq }),
        (arb_uuids(), arb_disk()).prop_map(|(uuids, disk)| Message::ResyncDone { uuids, disk }),
        any::<u64>().prop_map(|start_block| Message::VerifyStart {
            alg: VerifyAlg::Sha1,
            start_block
        }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<Vec<u8>>(), 1..8)
        )
            .prop_map(|(seq, start_block, blocks)| Message::VerifyRequest {
                seq,
                start_block,
                digests: blocks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| digest(
                        if i % 2 == 0 {
                            VerifyAlg::Crc32c
                        } else {
                            VerifyAlg::Sha1
                        },
                        b
                    ))
                    .collect()
            }),
        (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..8))
            .prop_map(|(seq, mismatched)| Message::VerifyReply { seq, mismatched }),
        Just(Message::VerifyDone),
        Just(Message::PromoteRequest),
        any::<bool>().prop_map(|ok| Message::PromoteReply { ok }),
        Just(Message::VerifyAsk {
            alg: VerifyAlg::Crc32c
        }),
        Just(Message::Ping),
        Just(Message::PingAck),
    ]
}

#[test]
fn header_layout() {
    let f = encode(&Message::Ping);
    assert_eq!(&f[0..4], b"TNDR");
    assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1);
    assert_eq!(
        u32::from_le_bytes([f[8], f[9], f[10], f[11]]) as usize,
        f.len() - HEADER_BYTES
    );
}

#[test]
fn oversized_length_is_refused_before_reading_the_payload() {
    let mut f = encode(&Message::Ping);
    f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let hcrc = crc32fast::hash(&f[0..16]);
    f[16..20].copy_from_slice(&hcrc.to_le_bytes());
    assert_eq!(decode(&f), Err(WireError::TooLong(u32::MAX)));
}

#[test]
fn trailing_bytes_and_invalid_messages_are_refused() {
    let payload =
        bincode::serde::encode_to_vec(&Message::Ping, bincode::config::standard()).unwrap();
    let mut p2 = payload.clone();
    p2.push(0);
    let h = FrameHeader {
        payload_len: p2.len(),
        payload_crc: crc32fast::hash(&p2),
    };
    assert_eq!(decode_payload(&h, &p2), Err(WireError::Trailing(1)));
    let empty = Message::Data {
        seq: 1,
        offset: 0,
        data: Bytes::new(),
        fua: false,
    };
    let f = encode(&empty);
    assert_eq!(decode(&f), Err(WireError::Invalid("empty data")));
    let wrap = Message::Data {
        seq: 1,
        offset: u64::MAX,
        data: Bytes::from_static(b"x"),
        fua: false,
    };
    assert_eq!(
        decode(&encode(&wrap)),
        Err(WireError::Invalid("offset + length overflows"))
    );
}

proptest! {
    #[test]
    fn round_trip(msg in arb_message()) {
        let f = encode(&msg);
        let (back, used) = decode(&f).unwrap().unwrap();
        prop_assert_eq!(used, f.len());
        prop_assert_eq!(back, msg);
    }

    /// Two frames back to back come apart; every strict prefix asks for more bytes.
    #[test]
    fn streams_and_prefixes(a in arb_message(), b in arb_message()) {
        let mut buf = encode(&a);
        let first = buf.len();
        buf.extend(encode(&b));
        let (m1, n1) = decode(&buf).unwrap().unwrap();
        prop_assert_eq!((m1, n1), (a, first));
        let (m2, _) = decode(&buf[n1..]).unwrap().unwrap();
        prop_assert_eq!(m2, b);
        for cut in [0, 1, HEADER_BYTES - 1, HEADER_BYTES, first - 1] {
            prop_assert_eq!(decode(&buf[..cut]), Ok(None));
        }
    }

    /// Any corruption of one to four bytes is detected (CRC-32 catches every burst up to 32 bits).
    #[test]
    fn corruption_is_detected(msg in arb_message(), pos in any::<prop::sample::Index>(), flip in 1u32..u32::MAX, width in 1usize..=4) {
        let mut f = encode(&msg);
        let at = pos.index(f.len() - width + 1);
        for (k, byte) in f[at..at + width].iter_mut().enumerate() {
            *byte ^= (flip >> (8 * k)) as u8;
        }
        // A flip of zero in every byte changes nothing: skip that case.
        prop_assume!(f != encode(&msg));
        prop_assert!(decode(&f).is_err(), "corruption at {at} not detected");
    }

    /// Decoding never panics, whatever the bytes.
    #[test]
    fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..200), fix_header: bool) {
        let mut bytes = bytes;
        if fix_header && bytes.len() >= HEADER_BYTES {
            // A valid header over garbage, to reach the payload decoder.
            let len = (bytes.len() - HEADER_BYTES) as u32;
            bytes[0..4].copy_from_slice(b"TNDR");
            bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
            bytes[6..8].copy_from_slice(&[0, 0]);
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            let pcrc = crc32fast::hash(&bytes[HEADER_BYTES..]);
            bytes[12..16].copy_from_slice(&pcrc.to_le_bytes());
            let hcrc = crc32fast::hash(&bytes[0..16]);
            bytes[16..20].copy_from_slice(&hcrc.to_le_bytes());
        }
        let _ = decode(&bytes);
    }
}

//! The messages two replicatord nodes exchange, one per frame. The enum is the protocol: its
//! variants and fields only ever change together with [`crate::protocol::PROTOCOL_VERSION_MAX`]
//! and the changelog in `docs/replication.md`.
//!
//! Sequence numbers: the sender numbers every `Data`, `Barrier`, `RsData` and `RsBarrier` from
//! one counter per connection (`seq`); acknowledgements name the `seq` they answer.

use crate::protocol::bitmap_xfer::BitmapRun;
use crate::protocol::handshake::{Hello, Refusal};
use crate::protocol::verify::{Digest, VerifyAlg};
use crate::types::{DiskState, GenerationIds, Role, Uuid};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most bytes of data one `Data` or `RsData` message carries.
// 8 MiB fits every usize this code targets (the gate's limit is a small constant).
#[allow(clippy::cast_possible_truncation)]
pub const MAX_DATA_BYTES: usize = crate::protocol::gate::MAX_OP_BYTES as usize;
/// Most digests in one `VerifyRequest`.
pub const MAX_DIGESTS: usize = 256;
/// Most block numbers in one `VerifyReply`.
pub const MAX_MISMATCHES: usize = MAX_DIGESTS;

/// One peer-protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Handshake parameters, sent by both sides as soon as the connection is up.
    Hello(Hello),
    /// The sender refuses the connection for `reason` and closes it.
    Refuse {
        /// Why.
        reason: Refusal,
    },
    /// The sender's role or disk state changed while connected.
    State {
        /// New role.
        role: Role,
        /// New disk state.
        disk: DiskState,
    },
    /// An application write, replicated (Primary → peer).
    Data {
        /// Sequence number.
        seq: u64,
        /// Byte offset on the device.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// Force unit access: the peer writes it durably before acknowledging.
        fua: bool,
    },
    /// Protocol B: `Data` `seq` was received.
    RecvAck {
        /// The write.
        seq: u64,
    },
    /// Protocol C (and FUA writes): `Data` `seq` is on the peer's disk.
    WriteAck {
        /// The write.
        seq: u64,
    },
    /// Flush everything received before this, then answer `BarrierAck`.
    Barrier {
        /// Sequence number.
        seq: u64,
    },
    /// Every write sent before `Barrier` `seq` is durable on the peer.
    BarrierAck {
        /// The barrier.
        seq: u64,
    },
    /// Part of the sender's bitmap (WFBitMapS/T).
    BitmapPart {
        /// The runs.
        runs: Vec<BitmapRun>,
        /// Last part.
        last: bool,
    },
    /// SyncSource → SyncTarget: the sync UUID; the target takes it as its current UUID.
    SyncUuid {
        /// The sync UUID.
        uuid: Uuid,
    },
    /// Resync data (SyncSource → SyncTarget), whole 4 KiB blocks.
    RsData {
        /// Sequence number.
        seq: u64,
        /// Byte offset (block-aligned).
        offset: u64,
        /// The blocks.
        data: Bytes,
    },
    /// Flush all resync data received before this, then answer `RsBarrierAck`.
    RsBarrier {
        /// Sequence number.
        seq: u64,
    },
    /// All resync data sent before `RsBarrier` `seq` is durable on the target.
    RsBarrierAck {
        /// The barrier.
        seq: u64,
    },
    /// The resync finished; the target takes these identifiers and the disk state.
    ResyncDone {
        /// The source's identifiers after the resync.
        uuids: GenerationIds,
        /// The source's disk state (the target becomes the same).
        disk: DiskState,
    },
    /// Please drive an online verify (a Secondary asks its Primary: the node the application
    /// writes come from must drive, so that its digests and its writes are ordered).
    VerifyAsk {
        /// Digest algorithm.
        alg: VerifyAlg,
    },
    /// Online verify begins (VerifyS → VerifyT).
    VerifyStart {
        /// Digest algorithm.
        alg: VerifyAlg,
        /// First block.
        start_block: u64,
    },
    /// Digests of consecutive blocks from `start_block` (VerifyS → VerifyT).
    VerifyRequest {
        /// Request number.
        seq: u64,
        /// First block.
        start_block: u64,
        /// One digest per block.
        digests: Vec<Digest>,
    },
    /// The blocks of request `seq` whose digests differed (VerifyT → VerifyS).
    VerifyReply {
        /// Request number.
        seq: u64,
        /// Differing blocks (absolute block numbers).
        mismatched: Vec<u64>,
    },
    /// Online verify ended (either side; the other returns to Connected).
    VerifyDone,
    /// The sender wants to become Primary (a cluster-wide state change); answer `PromoteReply`.
    PromoteRequest,
    /// Whether the receiver of `PromoteRequest` agrees (it is not, and will not become, Primary).
    PromoteReply {
        /// Agreed.
        ok: bool,
    },
    /// Keep-alive request.
    Ping,
    /// Keep-alive answer.
    PingAck,
}

impl Message {
    /// Checks the bounds a decoded message must respect, beyond what its type says.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Message::Data { offset, data, .. } | Message::RsData { offset, data, .. } => {
                if data.is_empty() {
                    return Err("empty data");
                }
                if data.len() > MAX_DATA_BYTES {
                    return Err("data longer than MAX_DATA_BYTES");
                }
                if offset.checked_add(data.len() as u64).is_none() {
                    return Err("offset + length overflows");
                }
            }
            Message::BitmapPart { runs, .. } => {
                if runs.len() > crate::protocol::bitmap_xfer::MAX_RUNS_PER_PART {
                    return Err("too many bitmap runs");
                }
                let words: usize = runs
                    .iter()
                    .map(|r| {
                        if let BitmapRun::Words { words, .. } = r {
                            words.len()
                        } else {
                            0
                        }
                    })
                    .sum();
                if words > crate::protocol::bitmap_xfer::MAX_WORDS_PER_PART {
                    return Err("too many bitmap words");
                }
            }
            Message::VerifyRequest { digests, .. }
                if (digests.is_empty() || digests.len() > MAX_DIGESTS) =>
            {
                return Err("digest count out of range");
            }
            Message::VerifyReply { mismatched, .. } if mismatched.len() > MAX_MISMATCHES => {
                return Err("too many mismatches");
            }
            _ => {}
        }
        Ok(())
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Refuse { .. } => "Refuse",
            Message::State { .. } => "State",
            Message::Data { .. } => "Data",
            Message::RecvAck { .. } => "RecvAck",
            Message::WriteAck { .. } => "WriteAck",
            Message::Barrier { .. } => "Barrier",
            Message::BarrierAck { .. } => "BarrierAck",
            Message::BitmapPart { .. } => "BitmapPart",
            Message::SyncUuid { .. } => "SyncUuid",
            Message::RsData { .. } => "RsData",
            Message::RsBarrier { .. } => "RsBarrier",
            Message::RsBarrierAck { .. } => "RsBarrierAck",
            Message::ResyncDone { .. } => "ResyncDone",
            Message::VerifyAsk { .. } => "VerifyAsk",
            Message::VerifyStart { .. } => "VerifyStart",
            Message::VerifyRequest { .. } => "VerifyRequest",
            Message::VerifyReply { .. } => "VerifyReply",
            Message::VerifyDone => "VerifyDone",
            Message::PromoteRequest => "PromoteRequest",
            Message::PromoteReply { .. } => "PromoteReply",
            Message::Ping => "Ping",
            Message::PingAck => "PingAck",
        }
    }
}

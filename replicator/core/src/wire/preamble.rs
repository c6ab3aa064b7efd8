//! The connection preamble: how two replicatord nodes agree on *one* TCP connection.
//!
//! Either node may dial the other (both listen at their `.res` `address` and both dial while
//! `WFConnection`), so two connections can cross. Before any [`super::Message`] flows, the
//! dialer sends a [`Preamble`] (which resource, which node to which) and the acceptor answers
//! with a [`Verdict`]. The daemon accepts a connection only when it has none in use, and the
//! node with the **lower node id arbitrates** a crossing:
//!
//! - the lower id accepts an offered connection whenever it has none confirmed (and drops its
//!   own dial in progress);
//! - the higher id accepts one only when it has none confirmed **and** no dial of its own in
//!   progress (that dial will reach the lower id, which accepts it).
//!
//! So when both dial at once exactly one connection survives, and a node that restarted is
//! accepted as soon as the other has noticed the old connection died (EOF or keep-alive).
//!
//! ```text
//!  preamble (144 bytes)                          verdict (12 bytes)
//!  0     4       6      8    9    10     12    140   144     0     4       6       7    8      12
//!  +-----+-------+------+----+----+------+------+-----+      +-----+-------+-------+----+------+
//!  |magic|version|flags |from| to |n.len | name | crc |      |magic|version|verdict| 0  | crc  |
//!  +-----+-------+------+----+----+------+------+-----+      +-----+-------+-------+----+------+
//!  "TNDC"  u16 LE  0     u8   u8  u16 LE 128 B   crc32        "TNDA" u16 LE  u8           crc32
//!                                        zero-padded  of 0..140                         of 0..8
//! ```
//!
//! Decoding is total: any bytes give a value or a [`PreambleError`] (property-tested below).

use crate::types::NodeId;

/// First bytes of a preamble.
pub const PREAMBLE_MAGIC: [u8; 4] = *b"TNDC";
/// First bytes of a verdict.
pub const VERDICT_MAGIC: [u8; 4] = *b"TNDA";
/// Preamble format version.
pub const PREAMBLE_VERSION: u16 = 1;
/// Longest resource name a preamble carries.
pub const MAX_NAME_BYTES: usize = 128;
/// Length of an encoded preamble.
pub const PREAMBLE_BYTES: usize = 12 + MAX_NAME_BYTES + 4;
/// Length of an encoded verdict.
pub const VERDICT_BYTES: usize = 12;

/// What a dialer says first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preamble {
    /// The resource this connection replicates.
    pub resource: String,
    /// The dialer's node id.
    pub from: NodeId,
    /// The node id the dialer expects at the other end.
    pub to: NodeId,
}

/// The acceptor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// This connection is the one: replication messages follow.
    Accepted,
    /// Not now: the acceptor has a connection in use, a dial of its own in progress, or is not
    /// connecting (StandAlone, down). The dialer backs off and tries again.
    Busy,
    /// The acceptor does not have this resource on this address.
    UnknownResource,
    /// The node ids do not match the acceptor's configuration.
    WrongNode,
}

impl Verdict {
    fn code(self) -> u8 {
        match self {
            Verdict::Accepted => 0,
            Verdict::Busy => 1,
            Verdict::UnknownResource => 2,
            Verdict::WrongNode => 3,
        }
    }

    fn from_code(c: u8) -> Option<Verdict> {
        Some(match c {
            0 => Verdict::Accepted,
            1 => Verdict::Busy,
            2 => Verdict::UnknownResource,
            3 => Verdict::WrongNode,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accepted => "accepted",
            Verdict::Busy => {
                "busy (the peer has a connection in use, is dialling itself, or is not connecting)"
            }
            Verdict::UnknownResource => "the peer has no such resource at this address",
            Verdict::WrongNode => "the node ids do not match the peer's configuration",
        })
    }
}

/// Why bytes are not a valid preamble or verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// Not a replicatord connection (or not this version of one).
    #[error("bad magic {0:02x?}: not a replicatord peer")]
    Magic([u8; 4]),
    /// Checksum mismatch.
    #[error("checksum mismatch")]
    Checksum,
    /// Another preamble version.
    #[error("unsupported preamble version {0} (this build speaks {PREAMBLE_VERSION})")]
    Version(u16),
    /// A field holds a value no encoder writes.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// The resource name does not fit.
    #[error("resource name of {0} bytes exceeds {MAX_NAME_BYTES} bytes")]
    NameTooLong(usize),
}

fn crc_of(b: &[u8]) -> [u8; 4] {
    crc32fast::hash(b).to_le_bytes()
}

impl Preamble {
    /// Encodes the preamble; fails only when the resource name is longer than
    /// [`MAX_NAME_BYTES`].
    pub fn encode(&self) -> Result<[u8; PREAMBLE_BYTES], PreambleError> {
        let name = self.resource.as_bytes();
        if name.len() > MAX_NAME_BYTES {
            return Err(PreambleError::NameTooLong(name.len()));
        }
        let mut b = [0u8; PREAMBLE_BYTES];
        b[0..4].copy_from_slice(&PREAMBLE_MAGIC);
        b[4..6].copy_from_slice(&PREAMBLE_VERSION.to_le_bytes());
        b[8] = self.from.0;
        b[9] = self.to.0;
        let len = u16::try_from(name.len()).expect("bounded by MAX_NAME_BYTES");
        b[10..12].copy_from_slice(&len.to_le_bytes());
        b[12..12 + name.len()].copy_from_slice(name);
        let crc = crc_of(&b[..PREAMBLE_BYTES - 4]);
        b[PREAMBLE_BYTES - 4..].copy_from_slice(&crc);
        Ok(b)
    }

    /// Decodes and checks a preamble.
    pub fn decode(b: &[u8; PREAMBLE_BYTES]) -> Result<Preamble, PreambleError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != PREAMBLE_MAGIC {
            return Err(PreambleError::Magic(magic));
        }
        if crc_of(&b[..PREAMBLE_BYTES - 4]) != b[PREAMBLE_BYTES - 4..] {
            return Err(PreambleError::Checksum);
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PREAMBLE_VERSION {
            return Err(PreambleError::Version(version));
        }
        if b[6..8] != [0, 0] {
            return Err(PreambleError::Invalid("reserved flags set"));
        }
        let len = usize::from(u16::from_le_bytes([b[10], b[11]]));
        if len > MAX_NAME_BYTES {
            return Err(PreambleError::NameTooLong(len));
        }
        if b[12 + len..PREAMBLE_BYTES - 4].iter().any(|x| *x != 0) {
            return Err(PreambleError::Invalid("name padding not zero"));
        }
        let resource = std::str::from_utf8(&b[12..12 + len])
            .map_err(|_| PreambleError::Invalid("resource name is not UTF-8"))?
            .to_owned();
        if b[8] > 31 || b[9] > 31 {
            return Err(PreambleError::Invalid("node id above 31"));
        }
        Ok(Preamble {
            resource,
            from: NodeId(b[8]),
            to: NodeId(b[9]),
        })
    }
}

/// Encodes a verdict.
pub fn encode_verdict(v: Verdict) -> [u8; VERDICT_BYTES] {
    let mut b = [0u8; VERDICT_BYTES];
    b[0..4].copy_from_slice(&VERDICT_MAGIC);
    b[4..6].copy_from_slice(&PREAMBLE_VERSION.to_le_bytes());
    b[6] = v.code();
    let crc = crc_of(&b[..8]);
    b[8..].copy_from_slice(&crc);
    b
}

/// Decodes and checks a verdict.
pub fn decode_verdict(b: &[u8; VERDICT_BYTES]) -> Result<Verdict, PreambleError> {
    let magic = [b[0], b[1], b[2], b[3]];
    if magic != VERDICT_MAGIC {
        return Err(PreambleError::Magic(magic));
    }
    if crc_of(&b[..8]) != b[8..] {
        return Err(PreambleError::Checksum);
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != PREAMBLE_VERSION {
        return Err(PreambleError::Version(version));
    }
    if b[7] != 0 {
        return Err(PreambleError::Invalid("reserved byte set"));
    }
    Verdict::from_code(b[6]).ok_or(PreambleError::Invalid("unknown verdict"))
}

/// Whether the node `me` arbitrates crossing connections with `peer` (the lower id does).
pub fn arbitrates(me: NodeId, peer: NodeId) -> bool {
    me < peer
}

/// What the acceptor of a connection knows when its preamble arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferContext {
    /// This node's id.
    pub me: NodeId,
    /// The configured peer's id.
    pub peer: NodeId,
    /// The resource asked for is the one on this address.
    pub resource_matches: bool,
    /// The replication machine is waiting for a connection (`WFConnection`).
    pub wanting: bool,
    /// A connection is in use already.
    pub connected: bool,
    /// This node's own dial is in progress.
    pub dialling: bool,
}

/// The verdict for a connection offered with `p`, and whether this node drops its own dial in
/// progress (the arbiter does, when it accepts the peer's). The rules of the module's doc.
pub fn decide_offer(c: &OfferContext, p: &Preamble) -> (Verdict, bool) {
    if !c.resource_matches {
        return (Verdict::UnknownResource, false);
    }
    if p.from != c.peer || p.to != c.me {
        return (Verdict::WrongNode, false);
    }
    if !c.wanting || c.connected {
        return (Verdict::Busy, false);
    }
    if arbitrates(c.me, c.peer) {
        (Verdict::Accepted, c.dialling)
    } else if c.dialling {
        (Verdict::Busy, false)
    } else {
        (Verdict::Accepted, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_exact_bytes() {
        let p = Preamble {
            resource: "zimbradata".into(),
            from: NodeId(1),
            to: NodeId(0),
        };
        let b = p.encode().unwrap();
        assert_eq!(&b[0..12], b"TNDC\x01\x00\x00\x00\x01\x00\x0a\x00");
        assert_eq!(&b[12..22], b"zimbradata");
        assert_eq!(Preamble::decode(&b), Ok(p));
        for v in [
            Verdict::Accepted,
            Verdict::Busy,
            Verdict::UnknownResource,
            Verdict::WrongNode,
        ] {
            assert_eq!(decode_verdict(&encode_verdict(v)), Ok(v));
        }
        assert_eq!(&encode_verdict(Verdict::Busy)[..8], b"TNDA\x01\x00\x01\x00");
    }

    #[test]
    fn refuses_what_an_encoder_never_writes() {
        let long = Preamble {
            resource: "x".repeat(129),
            from: NodeId(0),
            to: NodeId(1),
        };
        assert_eq!(long.encode(), Err(PreambleError::NameTooLong(129)));
        let good = Preamble {
            resource: "r0".into(),
            from: NodeId(0),
            to: NodeId(1),
        }
        .encode()
        .unwrap();
        let reseal = |mut b: [u8; PREAMBLE_BYTES]| {
            let crc = crc_of(&b[..PREAMBLE_BYTES - 4]);
            b[PREAMBLE_BYTES - 4..].copy_from_slice(&crc);
            b
        };
        let mut b = good;
        b[0] = b'X';
        assert!(matches!(Preamble::decode(&b), Err(PreambleError::Magic(_))));
        let mut b = good;
        b[13] ^= 1;
        assert_eq!(Preamble::decode(&b), Err(PreambleError::Checksum));
        let mut b = good;
        b[4] = 2;
        assert_eq!(Preamble::decode(&reseal(b)), Err(PreambleError::Version(2)));
        let mut b = good;
        b[20] = 1;
        assert_eq!(
            Preamble::decode(&reseal(b)),
            Err(PreambleError::Invalid("name padding not zero"))
        );
        let mut b = good;
        b[9] = 32;
        assert_eq!(
            Preamble::decode(&reseal(b)),
            Err(PreambleError::Invalid("node id above 31"))
        );
        let mut v = encode_verdict(Verdict::Accepted);
        v[6] = 9;
        let crc = crc_of(&v[..8]);
        v[8..].copy_from_slice(&crc);
        assert_eq!(
            decode_verdict(&v),
            Err(PreambleError::Invalid("unknown verdict"))
        );
    }

    #[test]
    fn the_lower_node_id_arbitrates() {
        assert!(arbitrates(NodeId(0), NodeId(1)));
        assert!(!arbitrates(NodeId(1), NodeId(0)));
    }

    fn ctx(me: u8, wanting: bool, connected: bool, dialling: bool) -> OfferContext {
        OfferContext {
            me: NodeId(me),
            peer: NodeId(1 - me),
            resource_matches: true,
            wanting,
            connected,
            dialling,
        }
    }

    fn from(peer: u8) -> Preamble {
        Preamble {
            resource: "r0".into(),
            from: NodeId(peer),
            to: NodeId(1 - peer),
        }
    }

    #[test]
    fn offers_are_decided_exactly() {
        // The arbiter (id 0) accepts the peer's dial and drops its own.
        assert_eq!(
            decide_offer(&ctx(0, true, false, true), &from(1)),
            (Verdict::Accepted, true)
        );
        assert_eq!(
            decide_offer(&ctx(0, true, false, false), &from(1)),
            (Verdict::Accepted, false)
        );
        // The other node refuses while its own dial (towards the arbiter) is in flight.
        assert_eq!(
            decide_offer(&ctx(1, true, false, true), &from(0)),
            (Verdict::Busy, false)
        );
        assert_eq!(
            decide_offer(&ctx(1, true, false, false), &from(0)),
            (Verdict::Accepted, false)
        );
        // Nobody accepts a second connection, or one while not connecting.
        assert_eq!(
            decide_offer(&ctx(0, true, true, false), &from(1)),
            (Verdict::Busy, false)
        );
        assert_eq!(
            decide_offer(&ctx(1, false, false, false), &from(0)),
            (Verdict::Busy, false)
        );
        // Wrong ends and wrong resources are named.
        assert_eq!(
            decide_offer(&ctx(0, true, false, false), &from(0)).0,
            Verdict::WrongNode
        );
        let mut c = ctx(0, true, false, false);
        c.resource_matches = false;
        assert_eq!(decide_offer(&c, &from(1)).0, Verdict::UnknownResource);
    }

    /// Both nodes dial at once and each sees the other's preamble, in any order relative to its
    /// own dial's verdict: exactly one connection is accepted by both of its ends.
    #[test]
    fn crossing_dials_leave_exactly_one_connection() {
        // Connection X: dialled by node 0, decided by node 1. Connection Y: dialled by node 1,
        // decided by node 0. Each acceptor decides while its own dial is in flight (both dial at
        // once); a dial whose verdict is Accepted is used by its dialer unless it dropped it.
        let (x, _) = decide_offer(&ctx(1, true, false, true), &from(0));
        let (y, drop0) = decide_offer(&ctx(0, true, false, true), &from(1));
        let used_x = x == Verdict::Accepted && !drop0;
        let used_y = y == Verdict::Accepted;
        assert!(
            used_x ^ used_y,
            "exactly one of the crossing connections is used"
        );
        assert!(used_y, "the arbiter's choice: the peer's dial");
    }

    proptest! {
        #[test]
        fn decoding_is_total(bytes in proptest::collection::vec(any::<u8>(), PREAMBLE_BYTES)) {
            let b: [u8; PREAMBLE_BYTES] = bytes.try_into().unwrap();
            if let Ok(p) = Preamble::decode(&b) {
                prop_assert_eq!(p.encode().unwrap(), b);
            }
            let v: [u8; VERDICT_BYTES] = b[..VERDICT_BYTES].try_into().unwrap();
            if let Ok(d) = decode_verdict(&v) {
                prop_assert_eq!(encode_verdict(d), v);
            }
        }

        #[test]
        fn any_preamble_round_trips(name in "[a-zA-Z0-9_.-]{0,128}", from in 0u8..32, to in 0u8..32) {
            let p = Preamble { resource: name, from: NodeId(from), to: NodeId(to) };
            prop_assert_eq!(Preamble::decode(&p.encode().unwrap()), Ok(p));
        }
    }
}

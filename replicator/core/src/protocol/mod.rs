//! The replication protocol: a pure state machine per resource and node ([`Replica`]), and the
//! pure decisions it is built from: the handshake ([`handshake`]), the split-brain policies
//! ([`split_brain`]), generation-UUID updates ([`uuids`]), the resync rate controller
//! ([`rate`]), the activity log ([`al`]), the conflict gate ([`gate`]), the bitmap exchange
//! ([`bitmap_xfer`]) and online-verify digests ([`verify`]). The wire format is in
//! [`crate::wire`]; `docs/replication.md` describes the protocol message by message.

pub mod al;
pub mod bitmap_xfer;
pub mod config;
pub mod gate;
pub mod handshake;
pub mod io;
pub mod rate;
pub mod replica;
pub mod split_brain;
pub mod state;
pub mod time;
pub mod uuids;
pub mod verify;

pub use config::{Fencing, Limits, ReplicaConfig};
pub use handshake::{Hello, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, Refusal, SyncDirection};
pub use io::*;
pub use replica::{Replica, Stats};
pub use time::Time;

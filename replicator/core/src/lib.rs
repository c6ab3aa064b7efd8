//! Pure core of replicatord.
//!
//! Everything in this crate is deterministic and free of I/O: no sockets, no files, no clock, no
//! unseeded randomness. Cargo keeps it that way: the crate does not depend on tokio. The daemon
//! crate (`replicator/daemon`) owns the disks and sockets and feeds events in.
//!
//! Modules:
//! - [`types`]: DRBD's vocabulary — roles, disk and connection states, protocols, generation UUIDs.
//! - [`bitmap`]: the quick-sync bitmap in memory (1 bit = 4 KiB).
//! - [`config`]: DRBD-style `.res` files parsed into typed values (reads through a trait).
//! - [`meta`]: the on-disk meta-data — superblocks, activity log, bitmap pages — as bytes, with
//!   the crash-safe update rules.
//! - [`protocol`]: the replication state machine ([`protocol::Replica`]) and its pure decisions
//!   (handshake, split brain, UUIDs, resync rate, activity log, verify).
//! - [`wire`]: the peer wire format (frames with magic, version, length, CRC-32; bincode payload).
//! - [`sim`]: a seeded, deterministic simulation of two nodes with disks, network, crashes and
//!   clients, checking the protocol's promises after every step.

pub mod bitmap;
pub mod config;
pub mod meta;
pub mod protocol;
pub mod sim;
pub mod types;
pub mod wire;

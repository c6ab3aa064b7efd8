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

pub mod bitmap;
pub mod config;
pub mod meta;
pub mod types;

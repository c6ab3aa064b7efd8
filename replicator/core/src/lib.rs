//! Pure core of replicatord.
//!
//! Everything in this crate is deterministic and free of I/O: no sockets, no files, no clock, no
//! unseeded randomness. Cargo keeps it that way: the crate does not depend on tokio. The daemon
//! crate (`replicator/daemon`) owns the disks and sockets and feeds events in.

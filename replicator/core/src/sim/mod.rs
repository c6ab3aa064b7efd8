//! A seeded, deterministic simulation of two replicatord nodes: the real [`Replica`] state
//! machines driven by simulated disks (with a volatile write cache lost on crash unless flushed,
//! completions in random order), a simulated TCP link (delays, no reordering within a
//! connection, resets, silent cuts, corrupted frames through the real wire codec), crashes and
//! restarts from the persisted meta-data, an operator (switchover, `primary --force` failover,
//! split-brain recovery, verify, invalidate, disconnect/connect) and client workloads.
//!
//! After every step it checks: the machine's invariants; the daemon's bitmap equals the
//! machine's; every client read returns at least what the oracle says the node must hold
//! (acknowledged writes, and across crashes only what a flush or FUA made durable); under
//! protocols B and C a Secondary that stayed connected and in sync holds every write the
//! Primary acknowledged (so `primary --force` after a Primary crash loses none); a node promoted
//! *without* `--force` holds every acknowledged write of its data line (never stale); two nodes
//! Connected and UpToDate are on the same data line. At the end it heals everything and checks
//! that both disks are byte-identical and that the nodes converged within a bounded time.
//!
//! A failure panics with the seed and the last events; `TANDEM_SIM_SEED=N` replays seed N (see
//! `replicator/core/tests/sim.rs` and `scripts/sim-soak`).

pub mod disk;
pub mod rng;
mod world;

pub use world::{SimOptions, SimReport, fencing_of, run};

#[cfg(doc)]
use crate::protocol::Replica;

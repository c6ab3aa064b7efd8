//! Tandem's OCF resource agents: `ocf:tandem:IPaddr` ([`ipaddr`]), `ocf:tandem:Filesystem`
//! ([`filesystem`]) and `ocf:tandem:replicator` ([`replicator`]), built as the binaries
//! `tandem-ipaddr`, `tandem-filesystem` and `tandem-replicator`. Each binary is
//! `ocf::run(&Agent)`: the action is its only argument, parameters come from `OCF_RESKEY_*`.
//!
//! The agents hold no state in memory between actions (each action is a short-lived
//! process); what must survive from `start` to `stop` (which devices the Filesystem agent
//! attached) is in a state file under `/run/tandem/`.

pub mod announce;
pub mod attach;
pub mod filesystem;
pub mod ipaddr;
pub mod iproute;
pub mod mounts;
pub mod replicator;

//! clusterd: the resource manager daemon — executor of OCF agents, control socket, transitions.
//!
//! Modules:
//! - [`agent`]: `ocf:PROVIDER:TYPE` names, where each agent's executable is, OCF exit codes.
//! - [`exec`]: one operation — environment, own process group, timeout kill, captured output.
//! - [`shim`]: `crm_attribute` / `crm_master` / `crm_node` as agents call them.

pub mod agent;
pub mod config;
pub mod daemon;
pub mod exec;
pub mod history;
pub mod lrm;
pub mod meta;
pub mod server;
pub mod shim;
pub mod store;

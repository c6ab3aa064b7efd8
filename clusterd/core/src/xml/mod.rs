//! Pacemaker CIB XML import and export (Pacemaker Explained: "Configuration Layout",
//! "Resources", "Constraints", "Status"). Import reads the `<status>` section too, so
//! `clusterctl simulate -x FILE` answers what `crm_simulate -x FILE -S` answers; export writes
//! a CIB that `crm_simulate`, `crm_verify` and `cibadmin --replace` accept.
//!
//! Unsupported Pacemaker features (resource sets, bundles, tickets, templates, `id-ref`,
//! date expressions, colocation `node-attribute`) are refused with the line that uses them,
//! never silently dropped.

pub(crate) mod dom;
mod export;
mod import;

use crate::cib::Cib;
use crate::status::ClusterStatus;

pub use export::export;
pub use import::import;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("line {line}: {message}")]
    At { line: usize, message: String },
}

/// A Pacemaker CIB read from XML: configuration and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub cib: Cib,
    pub status: ClusterStatus,
}

//! Pure core of clusterd: the CIB model, pcs command parsing, Pacemaker XML import/export, the
//! linter and the scheduler. No I/O: no tokio, no files, no clock (time is an argument). The
//! daemon crate (`clusterd/daemon`) runs agents and sockets; `clusterctl` (`clusterd/ctl`) is the
//! command line.
//!
//! The shapes other crates use:
//! - [`cib::Cib`]: the configuration, with [`cib::CibFile`] for files (native JSON with a
//!   checksum, or Pacemaker XML) and [`cib::Cib::to_file_bytes`] / [`cib::Cib::from_file_bytes`].
//! - [`status::ClusterStatus`]: nodes, transient attributes, operation history, fail counts.
//! - [`transition::Transition`]: the actions the scheduler wants, with their dependencies.
//! - [`control`]: the clusterctl ↔ clusterd protocol (frames, requests, responses, push rule).

pub mod agent_meta;
pub mod cib;
pub mod control;
pub mod digest;
pub mod lint;
pub mod pcs;
pub mod report;
pub mod sched;
pub mod score;
pub mod simulate;
pub mod status;
pub mod synth;
pub mod transition;
pub mod xml;

pub use cib::Cib;
pub use score::{INFINITY, Score};
pub use status::ClusterStatus;
pub use transition::Transition;

//! DRBD-style `.res` configuration (drbd.conf(5)), parsed from text into typed values.
//!
//! Pure: files are read through a [`Source`] the caller provides (the daemon's reads the
//! filesystem and expands `include` globs; tests use [`MemSource`]), so this module never
//! touches the disk.
//!
//! The pipeline:
//! 1. [`lexer`] splits text into words, quoted strings and `{ } ;`, with line:column.
//! 2. [`syntax`] builds the statement tree of every file and expands top-level `include`s.
//! 3. [`build`] (top level, option sections) and [`sections`] (resources, hosts, volumes,
//!    connections) give statements their meaning, with [`values`] for devices, addresses and
//!    meta-disks and [`options`] for the option table; [`resolve`] then applies inheritance
//!    (`common` → resource → volume/`on`/`connection`), assigns node ids and connections as
//!    drbdadm does and checks what spans resources; [`typed`] gives options their types.
//! 4. [`dump`] writes the normalised result back as `.res` text.
//!
//! Errors ([`ConfigError`]) carry file:line:column and name the offending token; options DRBD
//! knows but replicatord does not implement are accepted with a [`Warning`].

pub mod build;
pub mod dump;
pub mod error;
pub mod lexer;
pub mod model;
pub mod options;
pub mod resolve;
pub mod sections;
pub mod syntax;
pub mod typed;
pub mod values;

pub use error::{ConfigError, Pos, Warning};
pub use model::*;
pub use syntax::{MemSource, Source};

/// A configuration and what the operator should be told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Accepted-but-ignored options, kernel device names mapped to NBD sockets, clamped values.
    pub warnings: Vec<Warning>,
}

/// Reads `path` and the files it includes through `source`, and builds the configuration.
pub fn load(path: &str, source: &dyn Source) -> Result<Loaded, ConfigError> {
    let (stmts, files) = syntax::parse_files_listed(path, source)?;
    let (config, warnings) = build::build(&stmts, files)?;
    Ok(Loaded { config, warnings })
}

/// Builds the configuration from one text named `name` (its includes can only refer to itself).
pub fn parse_str(name: &str, text: &str) -> Result<Loaded, ConfigError> {
    load(name, &MemSource::new().with(name, text))
}

#[cfg(test)]
mod tests;

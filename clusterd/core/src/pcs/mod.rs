//! pcs command syntax: parsing `clusterctl` arguments (pcs-style, older aliases included) into
//! typed [`Command`]s, and applying configuration edits to a CIB.
//!
//! Parsing is pure and total: every argument list gives a command or a [`ParseError`] that
//! names the bad token. Applying an [`Edit`] checks the references it makes (the error names the
//! missing resource), validates the result, bumps the epoch, and returns the linter's warnings
//! about what the edit introduced.

mod apply;
mod parse;

pub use apply::{EditError, apply, new_configuration};
pub use parse::{Command, Edit, OpSpec, ParseError, ResourceView, parse, parse_agent};

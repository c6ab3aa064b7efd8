//! Exit codes of `replicatord` and `replicatorctl` (documented in docs/replicator.md, modelled
//! on drbdadm's: small numbers for usage and runtime errors, 10s for refusals, 20 for
//! configuration errors).

use serde::{Deserialize, Serialize};

/// A documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// A runtime failure: I/O error on the backing file, the daemon failed the command.
    Failed = 1,
    /// Bad command-line arguments (clap's code).
    Usage = 2,
    /// The daemon is not running or its control socket cannot be reached.
    NoDaemon = 3,
    /// The resource's state refuses the command (Primary without an UpToDate disk, create-md over
    /// valid meta-data without --force, a command while another one runs, ...).
    Refused = 10,
    /// No valid meta-data, or meta-data that does not match the configuration.
    MetaData = 11,
    /// The configuration does not parse, or does not define the resource for this node.
    Config = 20,
    /// A malformed or incompatible control request or response.
    Protocol = 30,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for u8 {
    fn from(e: Exit) -> u8 {
        e.code()
    }
}

impl TryFrom<u8> for Exit {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Ok(match v {
            0 => Exit::Ok,
            1 => Exit::Failed,
            2 => Exit::Usage,
            3 => Exit::NoDaemon,
            10 => Exit::Refused,
            11 => Exit::MetaData,
            20 => Exit::Config,
            30 => Exit::Protocol,
            other => return Err(format!("unknown exit code {other}")),
        })
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, for the operator.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

//! OCF exit codes (OCF 1.1 resource-agent API, "Return codes") as a typed enum.

use std::fmt;

/// What an action reports to the cluster manager, as its process exit code.
///
/// Pacemaker treats 1–5 as *hard* errors for the node (the resource is banned from it until
/// cleaned up) and 6 (`ErrConfigured`) as *fatal* (banned from every node): pick them with care.
/// 7–9 are answers of `monitor`, not failures of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// `OCF_SUCCESS`: the action succeeded; for `monitor`, the resource runs (unpromoted).
    Success = 0,
    /// `OCF_ERR_GENERIC`: the action failed for a reason none of the others describes.
    ErrGeneric = 1,
    /// `OCF_ERR_ARGS`: the agent was called wrongly (wrong number of arguments).
    ErrArgs = 2,
    /// `OCF_ERR_UNIMPLEMENTED`: the action is not one this agent implements.
    ErrUnimplemented = 3,
    /// `OCF_ERR_PERM`: the agent lacks a permission it needs (e.g. not root).
    ErrPerm = 4,
    /// `OCF_ERR_INSTALLED`: a tool or file the agent needs is missing on this node.
    ErrInstalled = 5,
    /// `OCF_ERR_CONFIGURED`: a parameter is missing or has a bad value (wrong on every node).
    ErrConfigured = 6,
    /// `OCF_NOT_RUNNING`: `monitor` found the resource cleanly stopped.
    NotRunning = 7,
    /// `OCF_RUNNING_PROMOTED` (`OCF_RUNNING_MASTER`): `monitor` found it running promoted.
    RunningPromoted = 8,
    /// `OCF_FAILED_PROMOTED` (`OCF_FAILED_MASTER`): it is promoted but has failed.
    FailedPromoted = 9,
    /// `OCF_DEGRADED` (Pacemaker 190): running, unpromoted, but degraded.
    Degraded = 190,
    /// `OCF_DEGRADED_PROMOTED` (Pacemaker 191): running promoted, but degraded.
    DegradedPromoted = 191,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 12] = [
        Status::Success,
        Status::ErrGeneric,
        Status::ErrArgs,
        Status::ErrUnimplemented,
        Status::ErrPerm,
        Status::ErrInstalled,
        Status::ErrConfigured,
        Status::NotRunning,
        Status::RunningPromoted,
        Status::FailedPromoted,
        Status::Degraded,
        Status::DegradedPromoted,
    ];

    /// The numeric exit code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status for an exit code, if it is one the OCF API defines.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| i32::from(s.code()) == code)
    }

    /// The name shell agents use (`OCF_SUCCESS`, `OCF_RUNNING_PROMOTED`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Status::Success => "OCF_SUCCESS",
            Status::ErrGeneric => "OCF_ERR_GENERIC",
            Status::ErrArgs => "OCF_ERR_ARGS",
            Status::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED",
            Status::ErrPerm => "OCF_ERR_PERM",
            Status::ErrInstalled => "OCF_ERR_INSTALLED",
            Status::ErrConfigured => "OCF_ERR_CONFIGURED",
            Status::NotRunning => "OCF_NOT_RUNNING",
            Status::RunningPromoted => "OCF_RUNNING_PROMOTED",
            Status::FailedPromoted => "OCF_FAILED_PROMOTED",
            Status::Degraded => "OCF_DEGRADED",
            Status::DegradedPromoted => "OCF_DEGRADED_PROMOTED",
        }
    }

    /// Whether this code reports a failure of the agent or the resource (1–6, 9) rather than
    /// a state (0, 7, 8, 190, 191).
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Status::ErrGeneric
                | Status::ErrArgs
                | Status::ErrUnimplemented
                | Status::ErrPerm
                | Status::ErrInstalled
                | Status::ErrConfigured
                | Status::FailedPromoted
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl From<Status> for std::process::ExitCode {
    fn from(s: Status) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_those_of_ocf_1_1() {
        let codes: Vec<u8> = Status::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191]);
    }

    #[test]
    fn from_code_round_trips_and_rejects_unknown() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(i32::from(s.code())), Some(s));
        }
        assert_eq!(Status::from_code(10), None);
        assert_eq!(Status::from_code(-1), None);
        assert_eq!(Status::from_code(255), None);
    }

    #[test]
    fn display_names_the_code() {
        assert_eq!(
            Status::RunningPromoted.to_string(),
            "OCF_RUNNING_PROMOTED (8)"
        );
        assert!(Status::ErrConfigured.is_error());
        assert!(!Status::NotRunning.is_error());
    }
}

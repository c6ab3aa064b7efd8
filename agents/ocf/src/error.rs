//! The error an action returns: an OCF status plus a reason a user can act on.

use std::fmt;

use crate::Status;

/// A failed action: the exit code to return and the reason, printed to stderr as
/// `ocf-exit-reason:REASON` (which Pacemaker shows in `pcs status` / `crm_mon` next to the
/// failed action) and logged as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct OcfError {
    /// The exit code; never `Success`.
    pub status: Status,
    /// What went wrong, in words a sysadmin can act on.
    pub reason: String,
}

impl OcfError {
    /// An error with an explicit status. Panics if `status` is `Success`, which is not an
    /// error (a programming mistake).
    pub fn new(status: Status, reason: impl Into<String>) -> Self {
        assert_ne!(status, Status::Success, "OCF_SUCCESS is not an error");
        OcfError {
            status,
            reason: reason.into(),
        }
    }

    /// `OCF_ERR_GENERIC`.
    pub fn generic(reason: impl Into<String>) -> Self {
        Self::new(Status::ErrGeneric, reason)
    }

    /// `OCF_ERR_CONFIGURED` with a free-form reason.
    pub fn configured(reason: impl Into<String>) -> Self {
        Self::new(Status::ErrConfigured, reason)
    }

    /// `OCF_ERR_CONFIGURED` naming the parameter, its bad value and why it is bad:
    /// `parameter arp_count: invalid value "x": expected an integer`.
    pub fn bad_param(name: &str, value: &str, why: impl fmt::Display) -> Self {
        Self::configured(format!("parameter {name}: invalid value {value:?}: {why}"))
    }

    /// `OCF_ERR_CONFIGURED` for a required parameter that was not given.
    pub fn missing_param(name: &str) -> Self {
        Self::configured(format!(
            "parameter {name} is required but was not given (OCF_RESKEY_{name})"
        ))
    }

    /// `OCF_ERR_INSTALLED` naming the missing tool and, if known, the package that ships it.
    pub fn not_installed(tool: &str, package: Option<&str>) -> Self {
        let reason = match package {
            Some(p) => format!("required tool {tool} not found (install the Debian package {p})"),
            None => format!("required tool {tool} not found in PATH"),
        };
        Self::new(Status::ErrInstalled, reason)
    }

    /// `OCF_ERR_PERM`.
    pub fn perm(reason: impl Into<String>) -> Self {
        Self::new(Status::ErrPerm, reason)
    }

    /// `OCF_ERR_ARGS`.
    pub fn args(reason: impl Into<String>) -> Self {
        Self::new(Status::ErrArgs, reason)
    }

    /// `OCF_ERR_UNIMPLEMENTED`.
    pub fn unimplemented(reason: impl Into<String>) -> Self {
        Self::new(Status::ErrUnimplemented, reason)
    }

    /// `OCF_FAILED_PROMOTED`: the resource is promoted but broken.
    pub fn failed_promoted(reason: impl Into<String>) -> Self {
        Self::new(Status::FailedPromoted, reason)
    }

    /// The same error with `context: ` put before its reason.
    pub fn context(self, context: impl fmt::Display) -> Self {
        OcfError {
            status: self.status,
            reason: format!("{context}: {}", self.reason),
        }
    }
}

/// What every action returns: a status (0, 7, 8, 190, 191 are answers, not errors), or an
/// error carrying its status and reason.
pub type OcfResult = Result<Status, OcfError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_wrong() {
        let e = OcfError::bad_param("arp_count", "many", "expected an integer");
        assert_eq!(e.status, Status::ErrConfigured);
        assert_eq!(
            e.to_string(),
            r#"parameter arp_count: invalid value "many": expected an integer"#
        );
        let e = OcfError::not_installed("arping", Some("iputils-arping"));
        assert_eq!(e.status, Status::ErrInstalled);
        assert_eq!(
            e.to_string(),
            "required tool arping not found (install the Debian package iputils-arping)"
        );
        let e = OcfError::missing_param("ip");
        assert_eq!(
            e.to_string(),
            "parameter ip is required but was not given (OCF_RESKEY_ip)"
        );
        assert_eq!(
            OcfError::generic("boom").context("start").to_string(),
            "start: boom"
        );
    }

    #[test]
    #[should_panic(expected = "not an error")]
    fn success_is_not_an_error() {
        let _ = OcfError::new(Status::Success, "x");
    }
}

//! Finding the external tools an agent drives, and running them with errors that say what
//! failed. A missing tool is `OCF_ERR_INSTALLED` naming it (and its Debian package); a tool
//! that fails is `OCF_ERR_GENERIC` with its exit status and stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::OcfError;

/// Directories searched after `PATH`: cluster managers often start agents with a short PATH
/// that lacks the sbin directories where `ip`, `mount` and `losetup` live.
pub const FALLBACK_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The path of executable `name` (a bare name searched in `PATH` then [`FALLBACK_DIRS`], or
/// a path taken as is), if it exists and is executable.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Like [`find_tool`], but a missing tool is `OCF_ERR_INSTALLED` naming it and `package`.
pub fn require_tool(name: &str, package: Option<&str>) -> Result<PathBuf, OcfError> {
    find_tool(name).ok_or_else(|| OcfError::not_installed(name, package))
}

/// Renders a command line for messages: `ip addr add 10.0.0.5/24 dev eth0`.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed, capturing its output; fails only if it cannot
/// be started (not found: `OCF_ERR_INSTALLED`; otherwise `OCF_ERR_GENERIC`).
pub fn output(cmd: &mut Command) -> Result<Output, OcfError> {
    crate::debug!("running {}", describe(cmd));
    cmd.stdin(Stdio::null()).output().map_err(|e| {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        if e.kind() == std::io::ErrorKind::NotFound {
            OcfError::not_installed(&prog, None)
        } else {
            OcfError::generic(format!("cannot run {}: {e}", describe(cmd)))
        }
    })
}

/// Runs `cmd` and returns its stdout; a non-zero exit is `OCF_ERR_GENERIC` quoting the
/// command, its exit status and its stderr.
pub fn checked(cmd: &mut Command) -> Result<String, OcfError> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(OcfError::generic(format!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `Command::new(program).args(args)`, for short call sites.
pub fn command<I, S>(program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn finds_sh_and_reports_missing_tools() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("/bin/sh").is_some());
        assert!(find_tool("/nonexistent/sh").is_none());
        let e = require_tool("no-such-tool-tandem", Some("tandem-nothing")).unwrap_err();
        assert_eq!(e.status, Status::ErrInstalled);
        assert!(e.reason.contains("no-such-tool-tandem") && e.reason.contains("tandem-nothing"));
    }

    #[test]
    fn checked_quotes_command_and_stderr() {
        assert_eq!(
            checked(&mut command("sh", ["-c", "echo hi"])).unwrap(),
            "hi\n"
        );
        let e = checked(&mut command("sh", ["-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert_eq!(e.status, Status::ErrGeneric);
        assert!(
            e.reason
                .starts_with("sh -c echo oops >&2; exit 3 failed (exit status: 3): oops"),
            "{e}"
        );
        let e = output(&mut command("no-such-tool-tandem", [""; 0])).unwrap_err();
        assert_eq!(e.status, Status::ErrInstalled);
    }
}

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

/// Like [`output`], but gives up at `deadline`: the tool is killed and the result is
/// `OCF_ERR_GENERIC` saying it did not finish in time. An action calls tools this way so that
/// it answers within its op timeout even when a tool hangs (a daemon that accepts but never
/// replies, a disk that stopped answering), instead of being killed by the cluster manager.
/// A tool stuck in the kernel (state D) cannot die: it is left behind, never waited for.
pub fn output_until(cmd: &mut Command, deadline: std::time::Instant) -> Result<Output, OcfError> {
    use std::io::Read;
    use std::time::{Duration, Instant};
    crate::debug!("running {} (until the op deadline)", describe(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let prog = cmd.get_program().to_string_lossy().into_owned();
            if e.kind() == std::io::ErrorKind::NotFound {
                OcfError::not_installed(&prog, None)
            } else {
                OcfError::generic(format!("cannot run {}: {e}", describe(cmd)))
            }
        })?;
    // Drain both pipes on threads of their own, so a chatty tool never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                });
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                // Reap it if it died at once; otherwise leave it (and its pipes) behind.
                std::thread::sleep(Duration::from_millis(50));
                let _ = child.try_wait();
                return Err(OcfError::generic(format!(
                    "{} did not finish within the op timeout; killed",
                    describe(cmd)
                )));
            }
            Err(e) => {
                return Err(OcfError::generic(format!(
                    "cannot wait for {}: {e}",
                    describe(cmd)
                )));
            }
        }
    }
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

/// [`checked`] bounded by `deadline` (see [`output_until`]).
pub fn checked_until(cmd: &mut Command, deadline: std::time::Instant) -> Result<String, OcfError> {
    let out = output_until(cmd, deadline)?;
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
    fn output_until_kills_a_tool_that_outlives_the_deadline() {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_millis(300);
        let e = output_until(&mut command("sleep", ["600"]), deadline).unwrap_err();
        assert_eq!(e.status, Status::ErrGeneric);
        assert!(
            e.reason.contains("did not finish within the op timeout"),
            "{e}"
        );
        let out = output_until(
            &mut command("sh", ["-c", "echo out; echo err >&2; exit 4"]),
            Instant::now() + Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
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

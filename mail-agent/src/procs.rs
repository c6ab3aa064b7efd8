//! Finding and killing whatever still runs for a directory: the last step of `stop`, so that
//! stop leaves nothing running even when the supervisor itself was killed or crashed and its
//! daemons were orphaned.
//!
//! A process belongs to the directory when it is one of the suite's programs (or one of our
//! own long-running subcommands) and its command line names the directory, or its working
//! directory, root or an open file is under it. Other programs are never touched: an
//! administrator's shell or editor in the directory, or the cluster manager that runs the
//! agent with the directory among its arguments, are not ours to kill.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Program paths of the suite (prefixes), for the open-file rule.
pub const KNOWN_PROGRAMS: &[&str] = &[
    "/usr/lib/postfix/",
    "/usr/sbin/postfix",
    "/usr/sbin/dovecot",
    "/usr/lib/dovecot/",
    "/usr/bin/doveadm",
    "/usr/sbin/clamd",
    "/usr/sbin/clamav-milter",
    "/usr/sbin/spamass-milter",
    "/usr/sbin/opendkim",
    "/usr/bin/spamc",
    "/usr/bin/perl",
];

fn under(p: &str, dir: &str) -> bool {
    p == dir || (p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Our own subcommands that run for long and hold the directory.
pub const OUR_DAEMON_SUBCOMMANDS: &[&str] = &[
    "supervise",
    "policy-server",
    "attachment-filter",
    "train",
    "import",
];

/// What this binary executes to run itself again (the agent its supervisor, the supervisor
/// its own daemons): the very image this process runs. `std::env::current_exe()` names the
/// file, which a package upgrade or a rebuild may have replaced since — the kernel then reports
/// "PATH (deleted)" and the exec fails with "No such file or directory". `argv[0]` still names
/// the file, for `ps`.
pub const SELF_EXE: &str = "/proc/self/exe";

/// The name to give `argv[0]` when executing [`SELF_EXE`]: the file this process was started
/// from (without the kernel's " (deleted)").
pub fn self_name() -> String {
    std::env::current_exe()
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
        .unwrap_or_else(|_| "tandem-mail".to_owned())
}

/// Pids (other than ours and `exclude`) that belong to `dir`.
pub fn holders(dir: &Path, exclude: &[u32]) -> Vec<u32> {
    let dir = dir.to_string_lossy().trim_end_matches('/').to_owned();
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || exclude.contains(&pid) {
            continue;
        }
        let base = format!("/proc/{pid}");
        let Ok(cmdline) = std::fs::read(format!("{base}/cmdline")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue; // kernel thread or zombie
        }
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = std::fs::read_link(format!("{base}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ours = exe
            .rsplit('/')
            .next()
            .is_some_and(|n| n == "tandem-mail" || n == "tandem-mail (deleted)")
            && args
                .iter()
                .any(|a| OUR_DAEMON_SUBCOMMANDS.contains(&a.as_str()));
        if !ours && !KNOWN_PROGRAMS.iter().any(|k| exe.starts_with(k)) {
            continue;
        }
        let names_dir = args
            .iter()
            .any(|a| a.contains(&dir) && (a.ends_with(&dir) || a.contains(&format!("{dir}/"))));
        if names_dir {
            out.push(pid);
            continue;
        }
        let link_under = |l: &str| {
            std::fs::read_link(format!("{base}/{l}"))
                .is_ok_and(|p| under(&p.to_string_lossy(), &dir))
        };
        let fd_under = std::fs::read_dir(format!("{base}/fd"))
            .map(|fds| {
                fds.filter_map(Result::ok).any(|f| {
                    std::fs::read_link(f.path()).is_ok_and(|p| under(&p.to_string_lossy(), &dir))
                })
            })
            .unwrap_or(false);
        if link_under("cwd") || link_under("root") || fd_under {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs every holder of `dir` until none is left or `timeout` passes; returns those left.
pub fn kill_holders(dir: &Path, exclude: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = holders(dir, exclude);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        for pid in &left {
            if let Ok(p) = i32::try_from(*pid) {
                let p = Pid::from_raw(p);
                // A daemon's workers share its process group (spamd's children, Postfix's and
                // Dovecot's services) and do not name the directory: the group goes with it.
                if nix::unistd::getpgid(Some(p)) == Ok(p) {
                    let _ = nix::sys::signal::killpg(p, Signal::SIGKILL);
                }
                let _ = kill(p, Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_rule() {
        assert!(under("/srv/mail", "/srv/mail"));
        assert!(under("/srv/mail/run/x", "/srv/mail"));
        assert!(!under("/srv/mail2/x", "/srv/mail"));
    }

    #[test]
    fn finds_a_process_naming_the_directory_and_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("mnt");
        std::fs::create_dir(&d).unwrap();
        // A Perl (one of the suite's programs: spamd, sa-learn) naming a path under the
        // directory; a shell doing the same is not ours.
        let mut shell = std::process::Command::new("sh")
            .arg("-c")
            .arg("read x; : \"$0\"")
            .arg(d.join("x"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = std::process::Command::new("/usr/bin/perl")
            .arg("-e")
            .arg("<STDIN>")
            .arg(d.join("x"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, it is still a copy of this test binary.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !holders(&d, &[]).contains(&pid) {
            assert!(
                Instant::now() < deadline,
                "perl naming the directory not found"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!holders(&d, &[]).contains(&shell.id()));
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(!holders(&d, &[pid]).contains(&pid));
        assert!(kill_holders(&d, &[], Duration::from_secs(5)).is_empty());
        let _ = child.wait();
        assert!(!holders(&d, &[]).contains(&pid));
    }
}

//! Helpers shared by the agents' system tests: running an agent binary (in a namespace or
//! not) with an OCF environment, and ocf-tester.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use tandem_testkit::netns::Host;

/// The agent binary `name` (e.g. `tandem-ipaddr`), built by `cargo nextest run`.
pub fn agent_bin(name: &str) -> PathBuf {
    tandem_testkit::bins::bin(name)
}

/// The result of one agent invocation.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub rc: i32,
    /// stdout + stderr.
    pub output: String,
}

fn finish(mut cmd: Command, what: &str) -> Outcome {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Outcome {
        rc: out.status.code().unwrap_or(-1),
        output,
    }
}

/// Runs `bin action` with `OCF_RESKEY_k=v` for each param (and `OCF_RESOURCE_INSTANCE`), in
/// `host`'s namespace if given. `extra` are further variables set verbatim.
pub fn run_agent(
    host: Option<&Host>,
    bin: &str,
    action: &str,
    instance: &str,
    params: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Outcome {
    let path = agent_bin(bin);
    let mut cmd = match host {
        Some(h) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &h.ns]).arg(&path);
            c
        }
        None => Command::new(&path),
    };
    cmd.arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", instance);
    cmd.env("PATH", tandem_testkit::debian_path());
    for (k, v) in params {
        cmd.env(format!("OCF_RESKEY_{k}"), v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    finish(cmd, &format!("{bin} {action}"))
}

/// Asserts an agent invocation returned `rc`, showing its output otherwise.
#[track_caller]
pub fn expect_rc(o: &Outcome, rc: i32, what: &str) {
    assert_eq!(
        o.rc, rc,
        "{what}: expected exit {rc}, got {}\n{}",
        o.rc, o.output
    );
}

/// Runs Debian's `ocf-tester -n NAME -o k=v... AGENT` (in `host`'s namespace if given) and
/// asserts it passes. `OCF_ROOT` is the system's, as ocf-tester expects.
#[track_caller]
pub fn ocf_tester(
    host: Option<&Host>,
    bin: &str,
    name: &str,
    params: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> String {
    let path = agent_bin(bin);
    let mut cmd = match host {
        Some(h) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &h.ns, "ocf-tester"]);
            c
        }
        None => Command::new("ocf-tester"),
    };
    cmd.args(["-v", "-n", name]);
    for (k, v) in params {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    cmd.arg(&path)
        .env("PATH", tandem_testkit::debian_path())
        .env("OCF_ROOT", "/usr/lib/ocf");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let o = finish(cmd, "ocf-tester");
    assert!(
        o.rc == 0 && o.output.contains("passed all tests"),
        "ocf-tester failed for {bin} (exit {}):\n{}",
        o.rc,
        o.output
    );
    o.output
}

/// A fake `crm_master` in a directory of its own that appends `INSTANCE ARGS...` to a log
/// for each call: put [`FakeCrmMaster::path_var`] first in `PATH` and the agent's promotion
/// scores land in [`FakeCrmMaster::calls`] (as `crm_master` would get them from Pacemaker's
/// ocf-shellfuncs or clusterd's shim).
pub struct FakeCrmMaster {
    dir: tempfile::TempDir,
}

impl FakeCrmMaster {
    pub fn new() -> FakeCrmMaster {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("crm_master");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$OCF_RESOURCE_INSTANCE $*\" >> {}\n",
                dir.path().join("calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeCrmMaster { dir }
    }

    /// `PATH` with the fake first.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            tandem_testkit::debian_path()
        )
    }

    /// The calls since the last `take`, one `INSTANCE ARGS...` per call.
    pub fn take(&self) -> Vec<String> {
        let log = self.dir.path().join("calls");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        calls.lines().map(str::to_owned).collect()
    }
}

/// Every file the agents could find as `tool` (PATH and ocf's fallback directories), resolved
/// to the real file.
pub fn tool_files(tool: &str) -> Vec<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(ocf::tools::FALLBACK_DIRS.iter().map(PathBuf::from));
    dirs.extend(tandem_testkit::debian_path().split(':').map(PathBuf::from));
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(tool))
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Like [`run_agent`], on a node where `tools` are not installed: the agent runs in a mount
/// namespace of its own (`unshare -m`) where each of their files is covered by /dev/null (a
/// character device, which the agents do not take for a program). `hide` may also name
/// absolute paths.
pub fn run_agent_without(
    host: Option<&Host>,
    hide: &[&str],
    bin: &str,
    action: &str,
    instance: &str,
    params: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Outcome {
    let mut files: Vec<PathBuf> = Vec::new();
    for t in hide {
        if t.starts_with('/') {
            files.push(PathBuf::from(t));
        } else {
            let found = tool_files(t);
            assert!(!found.is_empty(), "{t} is not installed here to be hidden");
            files.extend(found);
        }
    }
    // `mount` itself, if hidden, is covered last.
    let mount_files = tool_files("mount");
    files.sort_by_key(|f| mount_files.contains(f));
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!("mount --bind /dev/null '{}' && ", f.display()));
    }
    script.push_str(&format!("exec '{}' {action}", agent_bin(bin).display()));
    let mut cmd = match host {
        Some(h) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &h.ns, "unshare"]);
            c
        }
        None => Command::new("unshare"),
    };
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", instance)
        .env("PATH", tandem_testkit::debian_path());
    for (k, v) in params {
        cmd.env(format!("OCF_RESKEY_{k}"), v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    finish(cmd, &format!("{bin} {action} without {hide:?}"))
}

/// A loop device over a file, detached on drop.
pub struct LoopDev(pub String);

impl LoopDev {
    pub fn new(file: &std::path::Path) -> Self {
        LoopDev(
            tandem_testkit::run("losetup", &["-f", "--show", &file.to_string_lossy()])
                .trim()
                .to_owned(),
        )
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = tandem_testkit::run_status("losetup", &["-d", &self.0]);
    }
}

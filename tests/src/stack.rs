//! The thesis's stack for system tests: a replicatord with one resource on a file (its own
//! configuration and state directory in the test's directory), the operator's first steps on
//! it (`create-md`, `up`, `primary --force`, an ext4 filesystem), and checks that nothing the
//! stack made is left behind (mounts, loop devices, nbdfuse, addresses) plus a [`Sweep`] guard
//! that removes such leftovers when a test fails half-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::blockdev::NbdLoop;
use crate::netns::Host;
use crate::proc::Daemon;
use crate::{bins, run, run_status, wait};

/// One replicatord (in a namespace or not) serving one resource on a file.
#[derive(Debug)]
pub struct Replicator {
    /// The resource name.
    pub resource: String,
    /// This node's name (`on NAME` in the configuration, `--node`).
    pub node: String,
    /// The `.res` configuration file.
    pub config: PathBuf,
    /// replicatord's state directory.
    pub state_dir: PathBuf,
    /// The backing file.
    pub disk: PathBuf,
    work: PathBuf,
    host: Option<Host>,
    daemon: Option<Daemon>,
}

impl Replicator {
    /// Writes a thesis-style `.res` (protocol C, internal meta-data, `device /dev/drbd1`,
    /// `verify-alg sha1`) for a standalone `resource` on `node` over a `size_mib` file in
    /// `work`, runs `create-md`, and starts replicatord (in `host`'s namespace if given).
    /// The replication address is a loopback address of its own (`127.X.Y.1:7789`, from the
    /// pid and a counter): a standalone resource does not listen on it today, and tests
    /// running side by side must not share one if it ever does.
    pub fn create(
        work: &Path,
        host: Option<&Host>,
        node: &str,
        resource: &str,
        size_mib: u64,
    ) -> Self {
        crate::require_root();
        let disk = work.join(format!("{resource}.img"));
        std::fs::File::create(&disk)
            .expect("create backing file")
            .set_len(size_mib << 20)
            .expect("size backing file");
        let config = work.join(format!("{resource}.res"));
        let address = {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            format!("127.{}.{}.1:7789", 1 + std::process::id() % 250, n % 250)
        };
        std::fs::write(
            &config,
            format!(
                "resource {resource} {{\n  protocol C;\n  meta-disk internal;\n  device /dev/drbd1;\n  \
                 syncer {{ verify-alg sha1; }}\n  on {node} {{\n    disk {};\n    address {address};\n  }}\n}}\n",
                disk.display()
            ),
        )
        .expect("write .res");
        let mut r = Replicator {
            resource: resource.to_owned(),
            node: node.to_owned(),
            config,
            state_dir: work.join("replicatord"),
            disk,
            work: work.to_path_buf(),
            host: host.cloned(),
            daemon: None,
        };
        r.ctl(&["create-md", resource]);
        r.start_daemon();
        r
    }

    /// Starts replicatord and waits for its control socket.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "replicatord already runs");
        let bin = bins::bin("replicatord");
        let mut cmd = match &self.host {
            Some(h) => h.command(&bin.to_string_lossy()),
            None => Command::new(&bin),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--node")
            .arg(&self.node)
            .arg("--state-dir")
            .arg(&self.state_dir);
        let log = self.work.join("replicatord.log");
        self.daemon = Some(Daemon::spawn("replicatord", cmd, &log));
        let sock = self.state_dir.join("control.sock");
        wait::until(
            "replicatord's control socket",
            Duration::from_secs(30),
            || sock.exists() && self.ctl_status(&["status", &self.resource]).0 == 0,
        );
    }

    /// Stops replicatord (SIGTERM: it demotes and detaches its resources), waiting for it.
    pub fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(25));
        }
    }

    /// SIGKILLs replicatord (a crash: its control socket stays behind, refusing connections).
    pub fn kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
    }

    /// `replicatorctl --config C --node N --state-dir S ARGS...`; returns exit code and
    /// combined output.
    pub fn ctl_status(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(bins::bin("replicatorctl"))
            .arg("--config")
            .arg(&self.config)
            .arg("--node")
            .arg(&self.node)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .expect("run replicatorctl");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Like [`Self::ctl_status`], panicking (with replicatord's log) unless it succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let (code, out) = self.ctl_status(args);
        assert_eq!(
            code,
            0,
            "replicatorctl {args:?} failed:\n{out}\nreplicatord log:\n{}",
            self.log()
        );
        out
    }

    /// replicatord's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("replicatord.log")).unwrap_or_default()
    }

    /// `replicatorctl status RES` (text): `RES role:R` then `  disk:D ...`.
    pub fn status(&self) -> String {
        self.ctl(&["status", &self.resource])
    }

    /// (up, role, disk) from the text status, e.g. `(true, "Primary", "UpToDate")`.
    pub fn state(&self) -> (bool, String, String) {
        let s = self.status();
        let first = s.lines().next().unwrap_or_default();
        let role = first
            .split("role:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        let disk = s
            .split("disk:")
            .nth(1)
            .and_then(|d| d.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        (!first.contains("(down)"), role, disk)
    }

    /// The resource's NBD export URI, as `status` shows it.
    pub fn export_uri(&self) -> String {
        let s = self.status();
        let uri = s
            .split("export:")
            .nth(1)
            .and_then(|e| e.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            uri.starts_with("nbd+unix://"),
            "no export URI in status:\n{s}"
        );
        uri
    }

    /// What the thesis does by hand before handing the device to the cluster: `up`,
    /// `primary --force` (fresh meta-data is Inconsistent), `mkfs.ext4` on the export
    /// (through nbdfuse + a loop device), then `secondary` and `down` so that the cluster
    /// starts from a resource whose data is UpToDate.
    pub fn first_promotion_with_ext4(&self) {
        self.ctl(&["up", &self.resource]);
        self.ctl(&["primary", "--force", &self.resource]);
        {
            let mut dev = NbdLoop::attach(&self.export_uri(), &self.work, 1);
            run(
                "mkfs.ext4",
                &["-q", "-F", "-L", &self.resource, &dev.loopdev],
            );
            dev.detach();
        }
        self.ctl(&["secondary", &self.resource]);
        self.ctl(&["down", &self.resource]);
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop_daemon();
    }
}

/// A single-node clusterd (in a namespace or not) with its own configuration and state
/// directory in the test's directory, driven with `clusterctl` as an operator would.
#[derive(Debug)]
pub struct Clusterd {
    /// This node's name.
    pub node: String,
    /// clusterd's state directory (`clusterctl --state-dir`).
    pub state_dir: PathBuf,
    work: PathBuf,
    daemon: Option<Daemon>,
}

impl Clusterd {
    /// Writes a one-node configuration for cluster `cluster_name` and starts clusterd as
    /// `node` (in `host`'s namespace if given: its agents then act on that host's interfaces
    /// and mount in that namespace's mount namespace); waits until `clusterctl status` answers.
    pub fn start(work: &Path, host: Option<&Host>, cluster_name: &str, node: &str) -> Self {
        crate::require_root();
        let config = work.join("clusterd.toml");
        std::fs::write(
            &config,
            format!("cluster_name = \"{cluster_name}\"\n\n[[node]]\nname = \"{node}\"\n"),
        )
        .expect("write clusterd.toml");
        let bin = bins::bin("clusterd");
        let mut cmd = match host {
            Some(h) => h.command(&bin.to_string_lossy()),
            None => Command::new(&bin),
        };
        let state_dir = work.join("clusterd");
        cmd.arg("--config")
            .arg(&config)
            .arg("--node")
            .arg(node)
            .arg("--state-dir")
            .arg(&state_dir);
        let daemon = Daemon::spawn("clusterd", cmd, &work.join("clusterd.log"));
        let c = Clusterd {
            node: node.to_owned(),
            state_dir,
            work: work.to_path_buf(),
            daemon: Some(daemon),
        };
        wait::until(
            "clusterd to answer clusterctl",
            Duration::from_secs(30),
            || c.ctl_status(&["status"]).0 == 0,
        );
        c
    }

    /// `clusterctl --state-dir S ARGS...`: exit code and combined output.
    pub fn ctl_status(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(bins::bin("clusterctl"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .expect("run clusterctl");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Like [`Self::ctl_status`], panicking (with clusterd's log) unless it succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let (code, out) = self.ctl_status(args);
        assert_eq!(
            code,
            0,
            "clusterctl {args:?} failed:\n{out}\nclusterd log:\n{}",
            self.log()
        );
        out
    }

    /// clusterd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("clusterd.log")).unwrap_or_default()
    }

    /// clusterd's pid (its agents run in its namespaces: `/proc/PID/root` reaches its mounts).
    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().map(Daemon::pid).unwrap_or(0)
    }

    /// The operations clusterd finished, in order, as `(primitive, action)` (clone instance
    /// suffixes dropped), from its log's `operation done` lines with their stable `resource`
    /// and `action` fields; probes, recurring monitors and notifications left out.
    pub fn operations(&self) -> Vec<(String, String)> {
        let field = |line: &str, name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
        };
        self.log()
            .lines()
            .filter(|l| l.contains("operation done"))
            .filter_map(|l| {
                let rsc = field(l, "resource=")?;
                let action = field(l, "action=")?;
                let primitive = rsc.split(':').next().unwrap_or(&rsc).to_owned();
                (!matches!(action.as_str(), "monitor" | "notify")).then_some((primitive, action))
            })
            .collect()
    }

    /// The promotion score of `instance` on this node, as an agent reads it through
    /// clusterd's `crm_master` shim (`crm_master -q -l reboot -G`); `None` when it has none.
    pub fn promotion_score(&self, instance: &str) -> Option<String> {
        let out = Command::new(self.state_dir.join("sbin/crm_master"))
            .args(["-q", "-l", "reboot", "-G"])
            .env("CLUSTERD_CONTROL", self.state_dir.join("control.sock"))
            .env("CLUSTERD_NODE", &self.node)
            .env("OCF_RESOURCE_INSTANCE", instance)
            .output()
            .expect("run clusterd's crm_master shim");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// SIGTERM: clusterd stops every resource of this node, then exits (waited for up to
    /// `grace`). Returns whether it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.daemon.take().and_then(|mut d| d.stop(grace)).is_some()
    }
}

impl Drop for Clusterd {
    fn drop(&mut self) {
        // Give it time to stop its resources (a filesystem, a replicated device) cleanly.
        self.stop(Duration::from_secs(30));
    }
}

/// Mount points (field 5 of mountinfo) under `dir` in the mount namespace of process `pid`
/// (`None`: this process's).
pub fn mounts_under(pid: Option<u32>, dir: &Path) -> Vec<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/mountinfo"),
        None => "/proc/self/mountinfo".to_owned(),
    };
    let dir = dir.to_string_lossy();
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&*dir))
        .map(str::to_owned)
        .collect()
}

/// Loop devices whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file"))
            && b.trim().starts_with(&*dir)
        {
            found.push(format!("/dev/{name}"));
        }
    }
    found
}

/// Processes whose command line mentions `needle` (e.g. an nbdfuse serving a socket under the
/// test's directory), as `pid cmdline`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&c).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{pid} {}", cmd.trim()));
            }
        }
    }
    found
}

/// On drop, removes what a failed test may have left under `dir`: processes mentioning it
/// (nbdfuse, holders) are killed, mounts under it in this namespace lazily unmounted, loop
/// devices backed by files under it detached. Declare it before the guards of the daemons so
/// that it runs after them.
#[derive(Debug)]
pub struct Sweep {
    dir: PathBuf,
}

impl Sweep {
    /// A sweep of `dir`.
    pub fn new(dir: &Path) -> Self {
        Sweep {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let d = self.dir.to_string_lossy().into_owned();
        for p in processes_mentioning(&d) {
            if let Some(pid) = p.split_whitespace().next() {
                let _ = run_status("kill", &["-9", pid]);
            }
        }
        let mut mounts = mounts_under(None, &self.dir);
        mounts.reverse();
        for m in mounts {
            let _ = run_status("umount", &["-l", &m]);
        }
        for l in loops_under(&self.dir) {
            let _ = run_status("losetup", &["-d", &l]);
        }
    }
}

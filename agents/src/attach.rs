//! Turning the Filesystem agent's `device` into a block device, and undoing it.
//!
//! A block device path is used as is. An NBD URI is attached:
//! - where the kernel has the nbd driver (`/sys/block/nbd0` exists) with `nbd-client` on a
//!   free `/dev/nbdN`;
//! - otherwise (these test machines) with `nbdfuse`, which exposes the export as a file in a
//!   FUSE mount, and `losetup`, which makes a loop device of that file.
//!
//! Each action is a short-lived process, so what was attached is written to a state file
//! (`STATE_DIR/<escaped directory>.json`) *before* each step completes, and `stop` detaches
//! exactly what the file lists — also after a `start` that failed half-way or an agent killed
//! at its timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ocf::{OcfError, tools};
use serde::{Deserialize, Serialize};

/// Where an NBD export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdTarget {
    /// `nbd+unix:///EXPORT?socket=PATH`.
    Unix {
        /// Socket path.
        socket: String,
        /// Export name (may be empty).
        export: String,
    },
    /// `nbd://HOST[:PORT]/EXPORT`.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port (default 10809).
        port: u16,
        /// Export name.
        export: String,
    },
}

/// The `device` parameter, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A block device (or image) path.
    Path(PathBuf),
    /// An NBD URI and where it points.
    Nbd {
        /// The URI as given (nbdfuse takes it as is).
        uri: String,
        /// Parsed, for the kernel's nbd-client.
        target: NbdTarget,
    },
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes are not UTF-8".to_owned())
}

/// Parses the `device` parameter: an absolute path, or an NBD URI (`nbd://HOST[:PORT]/EXPORT`,
/// `nbd+unix:///EXPORT?socket=PATH`, libnbd's syntax). TLS URIs (`nbds`) are refused: the
/// export Tandem's replicator offers is local.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    if s.starts_with('/') {
        return Ok(DeviceSpec::Path(PathBuf::from(s)));
    }
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("expected an absolute device path or an NBD URI (nbd://..., nbd+unix://...)")?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = (
        &rest[..cut],
        rest[cut..].strip_prefix('/').unwrap_or(&rest[cut..]),
    );
    let (path, query) = path_query
        .split_once('?')
        .map_or((path_query, ""), |(p, q)| (p, q));
    let export = percent_decode(path)?;
    let target = match scheme {
        "nbd+unix" => {
            if !authority.is_empty() {
                return Err(
                    "nbd+unix:// URIs have no host: write nbd+unix:///EXPORT?socket=PATH".into(),
                );
            }
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))
                .ok_or("nbd+unix:// URI without ?socket=PATH")?;
            let socket = percent_decode(socket)?;
            if !socket.starts_with('/') {
                return Err("the socket path must be absolute".into());
            }
            NbdTarget::Unix { socket, export }
        }
        "nbd" => {
            if authority.is_empty() {
                return Err("nbd:// URI without a host".into());
            }
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
                    h.to_owned(),
                    p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
                ),
                _ => (authority.to_owned(), 10809),
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            NbdTarget::Tcp { host, port, export }
        }
        "nbds" | "nbds+unix" => return Err("TLS NBD URIs (nbds) are not supported".into()),
        other => {
            return Err(format!(
                "unknown URI scheme {other:?}: expected nbd or nbd+unix"
            ));
        }
    };
    Ok(DeviceSpec::Nbd {
        uri: s.to_owned(),
        target,
    })
}

/// What one `start` attached, recorded for `stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The `device` parameter it was attached for.
    pub device: String,
    /// nbdfuse's FUSE mount directory, once created.
    pub fuse_dir: Option<PathBuf>,
    /// nbdfuse's pid, once it serves.
    pub nbdfuse_pid: Option<i32>,
    /// The loop device over the FUSE file.
    pub loopdev: Option<String>,
    /// The kernel NBD device attached with nbd-client.
    pub nbddev: Option<String>,
}

impl State {
    /// The block device to mount, once attached.
    pub fn block_device(&self) -> Option<&str> {
        self.loopdev.as_deref().or(self.nbddev.as_deref())
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.fuse_dir.is_none()
            && self.nbdfuse_pid.is_none()
            && self.loopdev.is_none()
            && self.nbddev.is_none()
    }
}

/// The state file of the resource mounted at `directory`.
pub fn state_path(state_dir: &Path, directory: &Path) -> PathBuf {
    let mut name = String::new();
    for b in directory.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    state_dir.join(format!("{name}.json"))
}

/// Reads the state file (an absent file is an empty state).
pub fn load(path: &Path) -> Result<State, OcfError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            OcfError::generic(format!(
                "state file {} is damaged ({e}); remove it after checking `losetup -a` and mounts",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(OcfError::generic(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the state file atomically (temp file, fsync, rename); removes it when empty.
pub fn save(path: &Path, state: &State) -> Result<(), OcfError> {
    let err = |e: std::io::Error| {
        OcfError::generic(format!("cannot write state file {}: {e}", path.display()))
    };
    if state.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Whether the kernel has the nbd driver.
pub fn kernel_nbd() -> bool {
    Path::new("/sys/block/nbd0").exists()
}

/// The `nbd-client` arguments that connect `target` to `dev`.
pub fn nbd_client_args(target: &NbdTarget, dev: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match target {
        NbdTarget::Unix { socket, export } => {
            a.extend(["-unix".into(), socket.clone()]);
            a.extend(["-N".into(), export.clone()]);
        }
        NbdTarget::Tcp { host, port, export } => {
            a.extend(["-N".into(), export.clone(), host.clone(), port.to_string()]);
        }
    }
    a.push(dev.to_owned());
    a
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`...) and the command name, if the
/// process exists.
fn proc_state(pid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses `PID (COMM) STATE ...`; COMM may itself contain `)` and spaces.
fn parse_stat(stat: &str) -> Option<(char, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let state = stat
        .get(close + 1..)?
        .split_whitespace()
        .next()?
        .chars()
        .next()?;
    Some((state, comm))
}

/// Whether `pid` is a running nbdfuse. A zombie is not (nbdfuse may die while the agent that
/// started it is long gone, and nobody reaps it at once: `kill(pid, 0)` would still
/// succeed), nor is another program that reused the pid (it must never be signalled).
fn nbdfuse_running(pid: i32) -> bool {
    // Reap it first if it is our own child (nbdfuse started by this same process, during a
    // start that is cleaning up after itself).
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    proc_state(pid)
        .is_some_and(|(state, comm)| !matches!(state, 'Z' | 'X' | 'x') && comm == "nbdfuse")
}

/// Whether nbdfuse (as recorded) still runs.
pub fn nbdfuse_alive(state: &State) -> bool {
    state.nbdfuse_pid.is_some_and(nbdfuse_running)
}

fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Attaches `uri` and returns the block device; every step is recorded in `path` first.
pub fn attach(
    spec: &DeviceSpec,
    state_file: &Path,
    state: &mut State,
    deadline: Instant,
) -> Result<String, OcfError> {
    let DeviceSpec::Nbd { uri, target } = spec else {
        let DeviceSpec::Path(p) = spec else {
            unreachable!()
        };
        return Ok(p.to_string_lossy().into_owned());
    };
    state.device = uri.clone();
    if let Some(dev) = state.block_device() {
        // What the state file lists must still be ours: after a crash or a reboot with a
        // persistent state_dir, /dev/loop3 may be somebody else's device now, and mounting it
        // would mount their filesystem.
        if still_attached(state) {
            return Ok(dev.to_owned());
        }
        ocf::warn!(
            "{} lists {dev}, which is no longer attached to {uri}; attaching afresh",
            state_file.display()
        );
        detach(state_file, state, deadline)?;
        state.device = uri.clone();
    }
    if kernel_nbd() {
        let client = tools::require_tool("nbd-client", Some("nbd-client"))?;
        let dev = (0..256)
            .map(|i| format!("nbd{i}"))
            .find(|n| {
                Path::new("/sys/block").join(n).exists()
                    && !Path::new("/sys/block").join(n).join("pid").exists()
            })
            .ok_or_else(|| OcfError::generic("no free /dev/nbdN device"))?;
        let dev = format!("/dev/{dev}");
        state.nbddev = Some(dev.clone());
        save(state_file, state)?;
        tools::checked_until(
            Command::new(client).args(nbd_client_args(target, &dev)),
            deadline,
        )?;
        ocf::info!("attached {uri} as {dev} (nbd-client)");
        return Ok(dev);
    }
    let nbdfuse = tools::require_tool("nbdfuse", Some("libnbd-bin"))?;
    let losetup = tools::require_tool("losetup", Some("util-linux"))?;
    let fuse_dir = state_file.with_extension("fuse");
    let pidfile = state_file.with_extension("nbdfuse.pid");
    let log = state_file.with_extension("nbdfuse.log");
    std::fs::create_dir_all(&fuse_dir)
        .map_err(|e| OcfError::generic(format!("mkdir {}: {e}", fuse_dir.display())))?;
    let _ = std::fs::remove_file(&pidfile);
    state.fuse_dir = Some(fuse_dir.clone());
    save(state_file, state)?;
    let out = std::fs::File::create(&log)
        .map_err(|e| OcfError::generic(format!("cannot create {}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| OcfError::generic(e.to_string()))?;
    let mut cmd = Command::new(nbdfuse);
    cmd.arg("-P").arg(&pidfile).arg(&fuse_dir).arg(uri);
    // Its own process group, stdio away from ours: it must outlive this short-lived agent
    // (and a manager that kills the agent's group), and must not hold the manager's pipes.
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| OcfError::generic(format!("cannot start nbdfuse: {e}")))?;
    let pid = i32::try_from(child.id()).expect("pids fit i32");
    state.nbdfuse_pid = Some(pid);
    save(state_file, state)?;
    let ready = wait_until(deadline, || {
        pidfile.exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ready || matches!(child.try_wait(), Ok(Some(_))) {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(OcfError::generic(format!(
            "nbdfuse could not attach {uri}: {}",
            said.trim()
        )));
    }
    let file = fuse_dir.join("nbd");
    let loopdev = tools::checked_until(
        Command::new(losetup).arg("-f").arg("--show").arg(&file),
        deadline,
    )?
    .trim()
    .to_owned();
    state.loopdev = Some(loopdev.clone());
    save(state_file, state)?;
    ocf::info!("attached {uri} as {loopdev} (nbdfuse + loop device)");
    Ok(loopdev)
}

/// The backing file of a loop device, if it is bound.
fn loop_backing(loopdev: &str) -> Option<String> {
    let name = Path::new(loopdev).file_name()?.to_str()?;
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The file nbdfuse serves the export as, for a state with a FUSE directory.
fn fuse_file(state: &State) -> Option<String> {
    state
        .fuse_dir
        .as_ref()
        .map(|d| d.join("nbd").to_string_lossy().into_owned())
}

/// Every loop device bound to `file` (found in /sys, whatever the state file says: the agent
/// may have been killed between `losetup` creating one and the state file recording it).
fn loops_over(file: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with("loop"))
        .map(|n| format!("/dev/{n}"))
        .filter(|d| loop_backing(d).as_deref() == Some(file))
        .collect()
}

/// Whether the block device `state` lists is still the export it attached: a kernel NBD
/// device still connected, or a loop device still over nbdfuse's file with nbdfuse running.
fn still_attached(state: &State) -> bool {
    if let Some(dev) = &state.nbddev {
        let name = Path::new(dev)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        return Path::new("/sys/block").join(name).join("pid").exists();
    }
    match (&state.loopdev, fuse_file(state)) {
        (Some(l), Some(f)) => loop_backing(l).as_deref() == Some(&f) && nbdfuse_alive(state),
        _ => false,
    }
}

/// Detaches everything `state` lists, in reverse order, recording progress; errors if
/// something stays attached by `deadline`.
pub fn detach(state_file: &Path, state: &mut State, deadline: Instant) -> Result<(), OcfError> {
    if let Some(dev) = state.nbddev.clone() {
        let client = tools::require_tool("nbd-client", Some("nbd-client"))?;
        tools::checked(Command::new(client).args(["-d", &dev]))?;
        ocf::info!("detached {dev} (nbd-client -d)");
        state.nbddev = None;
        save(state_file, state)?;
    }
    // Our loop devices: the one recorded, and any other over nbdfuse's file (one the agent
    // made but did not get to record). A recorded one over anything else is not ours.
    let mut ours: Vec<String> = fuse_file(state).map(|f| loops_over(&f)).unwrap_or_default();
    if let Some(l) = &state.loopdev
        && !ours.contains(l)
    {
        ocf::warn!("{l} is not over this resource's nbdfuse file any more; leaving it alone");
    }
    ours.sort();
    let file = fuse_file(state);
    for loopdev in ours {
        let losetup = tools::require_tool("losetup", Some("util-linux"))?;
        let mut cmd = Command::new(losetup);
        cmd.args(["-d", &loopdev]);
        let out = tools::output(&mut cmd)?;
        // A device that came off by itself meanwhile (autoclear, set by an earlier -d while
        // it was busy) is what we wanted.
        if !out.status.success() && loop_backing(&loopdev) == file {
            return Err(OcfError::generic(format!(
                "{} failed ({}): {}",
                tools::describe(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Done once the device no longer serves our file: the kernel may hand the freed
        // device to another user (another loop mount on this node) the moment it clears.
        if !wait_until(deadline, || loop_backing(&loopdev) != file) {
            return Err(OcfError::generic(format!(
                "loop device {loopdev} is still in use after losetup -d"
            )));
        }
        ocf::info!("detached loop device {loopdev}");
    }
    if state.loopdev.take().is_some() {
        save(state_file, state)?;
    }
    if let Some(dir) = state.fuse_dir.clone() {
        let fuse_mounted =
            crate::mounts::mounted_at(&dir).is_some_and(|m| m.fstype.starts_with("fuse"));
        if fuse_mounted {
            let fusermount = tools::require_tool("fusermount3", Some("fuse3"))?;
            tools::checked(Command::new(fusermount).arg("-u").arg(&dir))?;
        }
        if let Some(pid) = state.nbdfuse_pid {
            // nbdfuse exits by itself once unmounted; a TERM is the fallback for one stuck
            // before it mounted.
            let soon = (Instant::now() + Duration::from_secs(5)).min(deadline);
            if !wait_until(soon, || !nbdfuse_running(pid)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                if !wait_until(deadline, || !nbdfuse_running(pid)) {
                    return Err(OcfError::generic(format!(
                        "nbdfuse (pid {pid}) does not exit"
                    )));
                }
            }
        }
        state.nbdfuse_pid = None;
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_file(state_file.with_extension("nbdfuse.pid"));
        let _ = std::fs::remove_file(state_file.with_extension("nbdfuse.log"));
        state.fuse_dir = None;
        ocf::info!("stopped nbdfuse");
    } else if let Some(pid) = state.nbdfuse_pid.take()
        && nbdfuse_running(pid)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    save(state_file, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths_and_nbd_uris() {
        assert_eq!(
            parse_device("/dev/sdb1"),
            Ok(DeviceSpec::Path("/dev/sdb1".into()))
        );
        let d = parse_device("nbd+unix:///zimbradata?socket=/run/tandem/r%20x.sock").unwrap();
        let DeviceSpec::Nbd { target, .. } = d else {
            panic!()
        };
        assert_eq!(
            target,
            NbdTarget::Unix {
                socket: "/run/tandem/r x.sock".into(),
                export: "zimbradata".into()
            }
        );
        let DeviceSpec::Nbd { target, .. } = parse_device("nbd://10.0.0.1:10810/r0").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            target,
            NbdTarget::Tcp {
                host: "10.0.0.1".into(),
                port: 10810,
                export: "r0".into()
            }
        );
        let DeviceSpec::Nbd { target, .. } = parse_device("nbd://[fd00::1]/r0").unwrap() else {
            panic!()
        };
        assert_eq!(
            target,
            NbdTarget::Tcp {
                host: "fd00::1".into(),
                port: 10809,
                export: "r0".into()
            }
        );
        let DeviceSpec::Nbd { target, .. } = parse_device("nbd+unix://?socket=/s").unwrap() else {
            panic!()
        };
        assert_eq!(
            target,
            NbdTarget::Unix {
                socket: "/s".into(),
                export: String::new()
            }
        );
    }

    #[test]
    fn bad_devices_say_why() {
        assert!(
            parse_device("sdb1")
                .unwrap_err()
                .contains("absolute device path or an NBD URI")
        );
        assert!(
            parse_device("nbd+unix:///x")
                .unwrap_err()
                .contains("socket")
        );
        assert!(
            parse_device("nbd+unix:///x?socket=rel")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            parse_device("nbd://h:port/x")
                .unwrap_err()
                .contains("bad port")
        );
        assert!(parse_device("nbds://h/x").unwrap_err().contains("TLS"));
        assert!(
            parse_device("iscsi://h/x")
                .unwrap_err()
                .contains("unknown URI scheme")
        );
        assert!(
            parse_device("nbd:///x")
                .unwrap_err()
                .contains("without a host")
        );
    }

    #[test]
    fn nbd_client_command_lines() {
        let u = NbdTarget::Unix {
            socket: "/run/s".into(),
            export: "r0".into(),
        };
        assert_eq!(
            nbd_client_args(&u, "/dev/nbd1"),
            ["-unix", "/run/s", "-N", "r0", "/dev/nbd1"]
        );
        let t = NbdTarget::Tcp {
            host: "h".into(),
            port: 10809,
            export: "r0".into(),
        };
        assert_eq!(
            nbd_client_args(&t, "/dev/nbd0"),
            ["-N", "r0", "h", "10809", "/dev/nbd0"]
        );
    }

    #[test]
    fn proc_stat_state_and_command_name() {
        assert_eq!(
            parse_stat("4242 (nbdfuse) S 1 4242 4242 0 -1"),
            Some(('S', "nbdfuse".to_owned()))
        );
        assert_eq!(
            parse_stat("4242 (nbdfuse) Z 1 4242"),
            Some(('Z', "nbdfuse".to_owned()))
        );
        assert_eq!(parse_stat("7 (a) b) R 1"), Some(('R', "a) b".to_owned())));
        assert_eq!(parse_stat("garbage"), None);
        assert!(!nbdfuse_running(i32::MAX));
        // This test process is alive but not nbdfuse: never taken for it.
        assert!(!nbdfuse_running(i32::try_from(std::process::id()).unwrap()));
    }

    #[test]
    fn state_round_trips_and_empty_state_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), Path::new("/srv/mail data"));
        assert_eq!(path.file_name().unwrap(), "_2fsrv_2fmail_20data.json");
        assert_eq!(load(&path).unwrap(), State::default());
        let s = State {
            device: "nbd://h/x".into(),
            loopdev: Some("/dev/loop3".into()),
            ..State::default()
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        save(&path, &State::default()).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path).unwrap_err().reason.contains("damaged"));
    }
}

//! `ocf:tandem:Filesystem`: a filesystem on a block device or an NBD export (the replicator's),
//! with the heartbeat Filesystem agent's parameters and behaviour.
//!
//! - start: attaches the export if `device` is an NBD URI ([`crate::attach`]), runs fsck as
//!   `run_fsck` says, mounts. A failure after attaching detaches again.
//! - stop: unmounts; while the filesystem is busy and `force_unmount` allows, signals the
//!   processes holding it ([`crate::mounts::holders`]) — TERM first, KILL later, within the op
//!   timeout — then detaches everything the state file lists.
//! - monitor: depth 0 mounted (and nbdfuse alive); 10 also reads 64 KiB of the device with
//!   O_DIRECT (and of the export itself, through nbdfuse's file); 20 also writes and reads
//!   back a status file with O_DIRECT|O_DSYNC.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ocf::{
    Action, ActionDef, Agent, CheckLevel, Context, Metadata, OcfError, OcfResult, ParamDef, Status,
    tools,
};

use crate::attach::{self, DeviceSpec};
use crate::mounts;

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "device",
        "Block device or NBD URI",
        "The block device to mount (an absolute path such as /dev/sdb1), or an NBD export given as a URI: \
         nbd+unix:///EXPORT?socket=PATH (what replicatorctl status shows as the export of a Primary) or \
         nbd://HOST[:PORT]/EXPORT. An export is attached with nbd-client where the kernel has the nbd driver, \
         otherwise with nbdfuse and a loop device.",
    )
    .required(),
    ParamDef::string("directory", "Mount point", "The absolute path to mount the filesystem on; created if missing.")
        .required()
        .unique(),
    ParamDef::string(
        "fstype",
        "Filesystem type",
        "The filesystem type (ext4, xfs, ...), passed to mount -t and used to choose fsck. When not given, it is \
         detected with blkid.",
    ),
    ParamDef::string("options", "Mount options", "Options for mount -o, e.g. noatime,data=ordered."),
    ParamDef::select(
        "run_fsck",
        &["auto", "force", "no"],
        "When to run fsck",
        "auto: fsck -p (preen) before mounting ext2/ext3/ext4, which returns at once on a clean filesystem and \
         repairs what is safe otherwise; force: fsck -f -p whatever the type; no: never.",
    )
    .default("auto"),
    ParamDef::select(
        "force_unmount",
        &["true", "safe", "false"],
        "Kill processes that hold the filesystem",
        "true or safe: when the filesystem is busy at stop, signal the processes that hold it (found by walking \
         /proc, which never blocks: so true and safe behave alike) with TERM, then KILL, within the stop timeout; \
         false: never kill, fail the stop instead.",
    )
    .default("true"),
    ParamDef::boolean(
        "fast_stop",
        "Escalate to KILL quickly",
        "true: processes holding the filesystem get 3 seconds after TERM before KILL; false: half of the stop \
         timeout.",
    )
    .default("true"),
    ParamDef::string(
        "statusfile_prefix",
        "Status file prefix",
        "Where monitor at depth 20 writes its status file, relative to the mount point; the node name is appended.",
    )
    .default(".Filesystem_status/"),
    ParamDef::string(
        "state_dir",
        "State directory",
        "Where the agent records what it attached (state file, nbdfuse's FUSE directory and log), so that stop \
         can detach it. Must be node-local; it is cleared at boot when under /run.",
    )
    .default("/run/tandem/Filesystem"),
];

const ACTIONS: &[ActionDef] = &[
    ActionDef::new(Action::Start, 60),
    ActionDef::new(Action::Stop, 60),
    ActionDef::monitor(40, 20),
    ActionDef::monitor(40, 60).depth(10),
    ActionDef::new(Action::MetaData, 5),
    ActionDef::new(Action::ValidateAll, 10),
];

const META: Metadata = Metadata {
    name: "Filesystem",
    version: "1.0",
    shortdesc: "Manages a filesystem on a block device or an NBD export",
    longdesc: "Tandem's filesystem agent, like ocf:heartbeat:Filesystem, that also attaches an NBD export (such as \
               the replicator's) before mounting it and detaches it after unmounting. At stop it kills processes \
               holding the filesystem (TERM, then KILL) within the timeout, and leaves no loop device, FUSE mount or \
               NBD client behind.",
    params: PARAMS,
    actions: ACTIONS,
};

/// Time kept at the end of stop for detaching.
const DETACH_RESERVE: Duration = Duration::from_secs(5);
/// TERM phase with `fast_stop`.
const FAST_TERM_PHASE: Duration = Duration::from_secs(3);

/// The `ocf:tandem:Filesystem` agent.
#[derive(Debug, Default)]
pub struct FilesystemAgent;

/// The checked parameters.
#[derive(Debug, Clone)]
pub struct Spec {
    device: DeviceSpec,
    raw_device: String,
    directory: PathBuf,
    fstype: Option<String>,
    options: Option<String>,
    run_fsck: String,
    force_unmount: bool,
    fast_stop: bool,
    statusfile_prefix: String,
    state_file: PathBuf,
}

impl Spec {
    fn from_ctx(ctx: &Context) -> Result<Spec, OcfError> {
        let p = &ctx.params;
        let raw_device = p.required_str("device").to_owned();
        let device = attach::parse_device(&raw_device)
            .map_err(|why| OcfError::bad_param("device", &raw_device, why))?;
        let dir = p.required_str("directory");
        if !dir.starts_with('/')
            || dir.trim_end_matches('/').is_empty()
            || dir.split('/').any(|c| c == "..")
        {
            return Err(OcfError::bad_param(
                "directory",
                dir,
                "must be an absolute path other than / without ..",
            ));
        }
        let directory = PathBuf::from(dir.trim_end_matches('/'));
        let fstype = p.str("fstype").map(str::to_owned);
        if let Some(t) = &fstype
            && !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(OcfError::bad_param(
                "fstype",
                t,
                "not a filesystem type name",
            ));
        }
        let state_dir = p.required_str("state_dir");
        if !state_dir.starts_with('/') {
            return Err(OcfError::bad_param(
                "state_dir",
                state_dir,
                "must be an absolute path",
            ));
        }
        let prefix = p.required_str("statusfile_prefix");
        if prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
            return Err(OcfError::bad_param(
                "statusfile_prefix",
                prefix,
                "must be relative to the mount point, without ..",
            ));
        }
        Ok(Spec {
            device,
            raw_device: raw_device.clone(),
            state_file: attach::state_path(Path::new(state_dir), &directory),
            directory,
            fstype,
            options: p.str("options").map(str::to_owned),
            run_fsck: p.required_str("run_fsck").to_owned(),
            force_unmount: p.required_str("force_unmount") != "false",
            fast_stop: p.bool("fast_stop"),
            statusfile_prefix: prefix.to_owned(),
        })
    }
}

fn same_device(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.rdev() != 0 && x.rdev() == y.rdev(),
        _ => false,
    }
}

fn detect_fstype(dev: &str, deadline: Instant) -> Option<String> {
    let blkid = tools::find_tool("blkid")?;
    let out = tools::output_until(
        Command::new(blkid).args(["-p", "-o", "value", "-s", "TYPE", dev]),
        deadline,
    )
    .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !t.is_empty()).then_some(t)
}

fn fsck(spec: &Spec, dev: &str, fstype: Option<&str>, deadline: Instant) -> Result<(), OcfError> {
    let wanted = match (spec.run_fsck.as_str(), fstype) {
        ("no", _) => false,
        ("force", _) => true,
        (_, Some("ext2" | "ext3" | "ext4")) => true,
        _ => false,
    };
    if !wanted {
        return Ok(());
    }
    let fsck = tools::require_tool("fsck", Some("util-linux"))?;
    let mut cmd = Command::new(fsck);
    if let Some(t) = fstype {
        cmd.args(["-t", t]);
    }
    if spec.run_fsck == "force" {
        cmd.arg("-f");
    }
    cmd.args(["-p", dev]);
    let out = tools::output_until(&mut cmd, deadline)?;
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1 | 2) => {
            ocf::warn!(
                "fsck repaired {dev} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            );
            Ok(())
        }
        _ => Err(OcfError::generic(format!(
            "fsck of {dev} failed ({}); repair it by hand: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// An aligned buffer for O_DIRECT I/O.
#[repr(align(4096))]
struct Aligned([u8; 65536]);

fn read_direct(dev: &str) -> Result<(), OcfError> {
    use std::io::Read;
    let mut buf = Box::new(Aligned([0; 65536]));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| OcfError::generic(format!("cannot open {dev} for reading: {e}")))?;
    f.read(&mut buf.0)
        .map_err(|e| OcfError::generic(format!("cannot read {dev}: {e}")))?;
    Ok(())
}

fn write_read_status(path: &Path, content: &str) -> Result<(), OcfError> {
    use std::io::{Read, Seek, Write};
    let err = |what: &str, e: std::io::Error| {
        OcfError::generic(format!("status file {}: {what}: {e}", path.display()))
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| err("mkdir", e))?;
    }
    let mut block = Box::new(Aligned([0; 65536]));
    let n = content.len().min(4096);
    block.0[..n].copy_from_slice(&content.as_bytes()[..n]);
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path);
    let mut f = match direct {
        Ok(f) => f,
        // A filesystem without O_DIRECT: buffered I/O with fsync instead.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            std::fs::write(path, &block.0[..4096]).map_err(|e| err("write", e))?;
            std::fs::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| err("fsync", e))?;
            let back = std::fs::read(path).map_err(|e| err("read", e))?;
            return if back.get(..4096) == Some(&block.0[..4096]) {
                Ok(())
            } else {
                Err(OcfError::generic("status file read back differs"))
            };
        }
        Err(e) => return Err(err("open", e)),
    };
    f.write_all(&block.0[..4096]).map_err(|e| err("write", e))?;
    f.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| err("seek", e))?;
    let mut back = Box::new(Aligned([0; 65536]));
    f.read_exact(&mut back.0[..4096])
        .map_err(|e| err("read", e))?;
    if back.0[..4096] != block.0[..4096] {
        return Err(OcfError::generic(format!(
            "status file {} read back differs from what was written",
            path.display()
        )));
    }
    Ok(())
}

fn node_name(ctx: &Context) -> String {
    ctx.env.on_node.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// How long holders get after TERM before KILL, when `available` is the time left to unmount:
/// 3 s with `fast_stop` (half of `available` if that is less, so that KILL always comes
/// before the deadline — a short stop timeout once meant TERM only and a failed stop), else
/// half of `available`.
pub fn term_phase(fast_stop: bool, available: Duration) -> Duration {
    if fast_stop {
        FAST_TERM_PHASE.min(available / 2)
    } else {
        available / 2
    }
}

impl FilesystemAgent {
    /// Unmounts `dir`, signalling holders while busy (if allowed) until `deadline`.
    fn unmount(spec: &Spec, ctx: &Context, deadline: Instant) -> Result<(), OcfError> {
        if mounts::mounted_at(&spec.directory).is_none() {
            return Ok(()); // nothing to do, whatever tools this node has
        }
        let umount = tools::require_tool("umount", Some("util-linux"))?;
        let start = Instant::now();
        let term_phase = term_phase(spec.fast_stop, deadline.saturating_duration_since(start));
        let mut last_error = String::from("no time left to try");
        let mut last_signal: Option<(Instant, nix::sys::signal::Signal)> = None;
        loop {
            let Some(m) = mounts::mounted_at(&spec.directory) else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                break;
            }
            match tools::output_until(Command::new(&umount).arg(&spec.directory), deadline) {
                Ok(out) if out.status.success() => {
                    ocf::info!("unmounted {}", spec.directory.display());
                    continue; // another filesystem may be stacked at the same place
                }
                Ok(out) => last_error = String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => {
                    last_error = e.reason; // umount itself hung (a dead device)
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            let sig = if start.elapsed() < term_phase {
                nix::sys::signal::Signal::SIGTERM
            } else {
                nix::sys::signal::Signal::SIGKILL
            };
            // Signal once a second — and at once when the TERM phase ends.
            if spec.force_unmount
                && last_signal
                    .is_none_or(|(t, s)| t.elapsed() >= Duration::from_secs(1) || s != sig)
            {
                let pids = mounts::holders(m.dev);
                for pid in &pids {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|b| {
                            String::from_utf8_lossy(&b)
                                .replace('\0', " ")
                                .trim()
                                .to_owned()
                        })
                        .unwrap_or_default();
                    if mounts::signal_holder(*pid, m.dev, sig) {
                        ocf::info!(
                            "sent {sig} to {pid} ({cmdline}), which holds {}",
                            spec.directory.display()
                        );
                    }
                }
                last_signal = Some((Instant::now(), sig));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = ctx;
        Err(OcfError::generic(format!(
            "cannot unmount {} within the stop timeout: {last_error}{}",
            spec.directory.display(),
            if spec.force_unmount {
                ""
            } else {
                " (force_unmount=false: holders were not killed)"
            }
        )))
    }
}

impl Agent for FilesystemAgent {
    fn metadata(&self) -> &Metadata {
        &META
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let spec = Spec::from_ctx(ctx)?;
        // The tools are needed to start. A stop or a probe must answer whatever is installed:
        // a filesystem that is not mounted is stopped (a stop that fails gets the node
        // fenced); tools a mounted one needs are looked for when they are used.
        if !matches!(ctx.action, Action::Start | Action::ValidateAll) {
            return Ok(());
        }
        tools::require_tool("mount", Some("util-linux"))?;
        tools::require_tool("umount", Some("util-linux"))?;
        if matches!(spec.device, DeviceSpec::Nbd { .. }) {
            if attach::kernel_nbd() {
                tools::require_tool("nbd-client", Some("nbd-client"))?;
            } else {
                tools::require_tool("nbdfuse", Some("libnbd-bin"))?;
                tools::require_tool("losetup", Some("util-linux"))?;
                tools::require_tool("fusermount3", Some("fuse3"))?;
            }
        }
        if spec.run_fsck != "no" {
            tools::require_tool("fsck", Some("util-linux"))?;
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        let mut state = attach::load(&spec.state_file)?;
        if !state.is_empty() && state.device != spec.raw_device {
            return Err(OcfError::generic(format!(
                "{} records an attachment of {}, not {}: stop the old resource first",
                spec.state_file.display(),
                state.device,
                spec.raw_device
            )));
        }
        if let Some(m) = mounts::mounted_at(&spec.directory) {
            let expected = match &spec.device {
                DeviceSpec::Path(p) => Some(p.to_string_lossy().into_owned()),
                DeviceSpec::Nbd { .. } => state.block_device().map(str::to_owned),
            };
            if expected
                .as_deref()
                .is_some_and(|e| same_device(e, &m.source))
            {
                ocf::info!("{} is already mounted", spec.directory.display());
                return Ok(Status::Success);
            }
            return Err(OcfError::generic(format!(
                "{} is already a mount point of {}",
                spec.directory.display(),
                m.source
            )));
        }
        if let DeviceSpec::Path(p) = &spec.device
            && !p.exists()
        {
            return Err(OcfError::new(
                Status::ErrInstalled,
                format!(
                    "device {} does not exist on this node{}",
                    p.display(),
                    if p.to_string_lossy().starts_with("/dev/drbd") {
                        " (Tandem's replicator has no kernel device: give its NBD export, the URI \
                         `replicatorctl status RES` shows, e.g. nbd+unix:///RES?socket=/run/replicatord/RES.nbd.sock)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let deadline = ctx.deadline() - Duration::from_secs(2).min(ctx.timeout / 4);
        let result = (|| {
            let dev = attach::attach(&spec.device, &spec.state_file, &mut state, deadline)?;
            let fstype = spec
                .fstype
                .clone()
                .or_else(|| detect_fstype(&dev, deadline));
            if fstype.is_none() {
                return Err(OcfError::generic(format!(
                    "no filesystem found on {dev} (make one with mkfs, or give fstype)"
                )));
            }
            fsck(&spec, &dev, fstype.as_deref(), deadline)?;
            std::fs::create_dir_all(&spec.directory).map_err(|e| {
                OcfError::generic(format!("cannot create {}: {e}", spec.directory.display()))
            })?;
            let mut cmd = Command::new(tools::require_tool("mount", Some("util-linux"))?);
            if let Some(t) = &spec.fstype {
                cmd.args(["-t", t]);
            }
            if let Some(o) = &spec.options {
                cmd.args(["-o", o]);
            }
            cmd.arg(&dev).arg(&spec.directory);
            // Bounded: a mount reading from an export that stopped answering must not outlive
            // the op timeout.
            tools::checked_until(&mut cmd, deadline)?;
            ocf::info!("mounted {dev} on {}", spec.directory.display());
            Ok(Status::Success)
        })();
        if result.is_err() && !state.is_empty() {
            // Leave nothing attached behind a failed start.
            if let Err(e) = attach::detach(&spec.state_file, &mut state, ctx.deadline()) {
                ocf::error!("cleanup after the failed start: {e}");
            }
        }
        result
    }

    fn stop(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        let mut state = attach::load(&spec.state_file)?;
        let unmount_deadline = ctx
            .deadline()
            .checked_sub(DETACH_RESERVE.min(ctx.timeout / 4))
            .unwrap_or_else(Instant::now);
        if ctx.env.check_level >= CheckLevel::Write && mounts::mounted_at(&spec.directory).is_some()
        {
            let _ = std::fs::remove_file(
                spec.directory
                    .join(&spec.statusfile_prefix)
                    .join(node_name(ctx)),
            );
        }
        Self::unmount(&spec, ctx, unmount_deadline)?;
        attach::detach(&spec.state_file, &mut state, ctx.deadline())?;
        Ok(Status::Success)
    }

    fn monitor(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        let state = attach::load(&spec.state_file)?;
        let Some(m) = mounts::mounted_at(&spec.directory) else {
            if !state.is_empty() {
                ocf::warn!(
                    "not mounted, but {} lists attachments; stop will detach them",
                    spec.state_file.display()
                );
            }
            return Ok(Status::NotRunning);
        };
        if state.fuse_dir.is_some() && !attach::nbdfuse_alive(&state) {
            return Err(OcfError::generic(format!(
                "{} is mounted but its NBD client (nbdfuse) is gone: I/O on it fails",
                spec.directory.display()
            )));
        }
        if ctx.env.check_level >= CheckLevel::Read {
            read_direct(&m.source)?;
            // The loop device reads its backing file through the page cache, so the read above
            // can be served from memory after the export went away; nbdfuse's file read with
            // O_DIRECT goes to the NBD server.
            if let Some(dir) = &state.fuse_dir {
                read_direct(&dir.join("nbd").to_string_lossy())?;
            }
        }
        if ctx.env.check_level >= CheckLevel::Write {
            if m.read_only() {
                ocf::debug!("mounted read-only: no status file written");
            } else {
                let path = spec
                    .directory
                    .join(&spec.statusfile_prefix)
                    .join(node_name(ctx));
                let content = format!(
                    "{} {} {:?}\n",
                    ctx.env.instance,
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                );
                write_read_status(&path, &content)?;
            }
        }
        Ok(Status::Success)
    }
}

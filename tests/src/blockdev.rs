//! Block devices for system tests: an NBD export as a loop device (`nbdfuse` + `losetup`, since
//! these kernels have no nbd module) and mounts, each removed on drop in reverse order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::proc::Daemon;
use crate::{run, run_status, wait};

/// An NBD export exposed as a file by `nbdfuse`, and a loop device over that file.
#[derive(Debug)]
pub struct NbdLoop {
    /// The loop device, e.g. `/dev/loop3`.
    pub loopdev: String,
    fuse_dir: PathBuf,
    nbdfuse: Option<Daemon>,
}

impl NbdLoop {
    /// Attaches `uri` under `work/fuse` and makes a loop device of it. `connections` is passed
    /// to `nbdfuse -C` (1 disables multi-conn).
    pub fn attach(uri: &str, work: &Path, connections: u32) -> Self {
        crate::require_root();
        let fuse_dir = work.join(format!("fuse-{}", crate::unique_name("")));
        std::fs::create_dir_all(&fuse_dir).expect("mkdir fuse dir");
        let pidfile = work.join(format!(
            "{}.pid",
            fuse_dir.file_name().unwrap().to_string_lossy()
        ));
        let mut cmd = Command::new("nbdfuse");
        cmd.arg("-C")
            .arg(connections.to_string())
            .arg("-P")
            .arg(&pidfile)
            .arg(&fuse_dir)
            .arg(uri);
        let log = work.join("nbdfuse.log");
        let daemon = Daemon::spawn("nbdfuse", cmd, &log);
        let mut me = NbdLoop {
            loopdev: String::new(),
            fuse_dir,
            nbdfuse: Some(daemon),
        };
        wait::until("nbdfuse to serve", Duration::from_secs(20), || {
            pidfile.exists()
        });
        let file = me.fuse_dir.join("nbd");
        me.loopdev = run("losetup", &["-f", "--show", &file.to_string_lossy()])
            .trim()
            .to_owned();
        me
    }

    /// Detaches the loop device and unmounts the FUSE file; idempotent.
    pub fn detach(&mut self) {
        if !self.loopdev.is_empty() {
            let _ = run_status("losetup", &["-d", &self.loopdev]);
            self.loopdev.clear();
        }
        if let Some(mut d) = self.nbdfuse.take() {
            let _ = run_status("fusermount3", &["-u", &self.fuse_dir.to_string_lossy()]);
            d.stop(Duration::from_secs(5));
            let _ = std::fs::remove_dir(&self.fuse_dir);
        }
    }
}

impl Drop for NbdLoop {
    fn drop(&mut self) {
        self.detach();
    }
}

/// A mounted filesystem, lazily unmounted on drop if still mounted.
#[derive(Debug)]
pub struct Mount {
    /// The mount point.
    pub dir: PathBuf,
    mounted: bool,
}

impl Mount {
    /// `mount [-t fstype] device dir` (creating `dir`).
    pub fn new(device: &str, dir: &Path, fstype: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let d = dir.to_string_lossy();
        match fstype {
            Some(t) => run("mount", &["-t", t, device, &d]),
            None => run("mount", &[device, &d]),
        };
        Mount {
            dir: dir.to_path_buf(),
            mounted: true,
        }
    }

    /// Unmounts (panicking if that fails).
    pub fn unmount(&mut self) {
        if self.mounted {
            run("umount", &[&self.dir.to_string_lossy()]);
            self.mounted = false;
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let d = self.dir.to_string_lossy().into_owned();
            if run_status("umount", &[&d]).0 != 0 {
                let _ = run_status("umount", &["-l", &d]);
            }
        }
    }
}

//! The state directory: the CIB persisted atomically, the control socket, the shim links.
//!
//! ```text
//! STATE_DIR/
//!   cib.json        the configuration (clusterd-core's checksummed envelope)
//!   control.sock    the control socket (0600)
//!   sbin/           crm_attribute, crm_master, crm_node → the clusterd binary (HA_SBIN_DIR)
//! ```
//!
//! A save writes `cib.json.tmp`, fsyncs it, renames it over `cib.json` and fsyncs the
//! directory: after a crash at any point the file is the old CIB or the new one, never a mix,
//! and the checksum refuses a file damaged some other way.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clusterd_core::cib::Cib;

use crate::shim::SHIM_NAMES;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/clusterd";

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The directory.
    pub root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (created, mode 0700, if missing).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// Takes the state dir's lock (`STATE_DIR/lock`, `flock`), held as long as the returned
    /// file lives: two clusterd on one state dir would fight over the socket and the CIB.
    pub fn lock(&self) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(anyhow::anyhow!(
                "another clusterd is running with state dir {} (it holds {})",
                self.root.display(),
                path.display()
            )),
            Err((_, e)) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
        }
    }

    /// `cib.json`.
    pub fn cib_path(&self) -> PathBuf {
        self.root.join("cib.json")
    }

    /// `control.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// `sbin/`, the shim directory.
    pub fn shim_dir(&self) -> PathBuf {
        self.root.join("sbin")
    }

    /// Loads the CIB; `Ok(None)` when none was saved yet.
    pub fn load_cib(&self) -> anyhow::Result<Option<Cib>> {
        let path = self.cib_path();
        match std::fs::read(&path) {
            Ok(bytes) => Cib::from_file_bytes(&bytes)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Saves the CIB atomically (temp file + fsync + rename + fsync of the directory).
    pub fn save_cib(&self, cib: &Cib) -> std::io::Result<()> {
        write_atomic(&self.cib_path(), &cib.to_file_bytes())
    }

    /// (Re)creates `sbin/` with the shim names linked to `exe` (the clusterd binary).
    pub fn install_shims(&self, exe: &Path) -> std::io::Result<()> {
        let dir = self.shim_dir();
        std::fs::create_dir_all(&dir)?;
        for name in SHIM_NAMES {
            let link = dir.join(name);
            match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::os::unix::fs::symlink(exe, &link)?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cib_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&dir.path().join("state")).unwrap();
        assert!(sd.load_cib().unwrap().is_none());
        let mut cib = Cib {
            cluster_name: Some("mail".into()),
            ..Cib::default()
        };
        cib.properties
            .insert("stonith-enabled".into(), "false".into());
        sd.save_cib(&cib).unwrap();
        assert_eq!(sd.load_cib().unwrap(), Some(cib.clone()));
        assert!(!sd.cib_path().with_extension("tmp").exists());
        // Flip a value behind the checksum's back.
        let text = std::fs::read_to_string(sd.cib_path())
            .unwrap()
            .replace("\"false\"", "\"true\"");
        std::fs::write(sd.cib_path(), text).unwrap();
        let err = sd.load_cib().unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn one_daemon_per_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        let held = sd.lock().unwrap();
        let err = sd.lock().unwrap_err().to_string();
        assert!(err.contains("another clusterd is running"), "{err}");
        drop(held);
        assert!(sd.lock().is_ok());
    }

    #[test]
    fn shims_link_to_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        sd.install_shims(Path::new("/bin/true")).unwrap();
        sd.install_shims(Path::new("/bin/true")).unwrap();
        for n in SHIM_NAMES {
            assert_eq!(
                std::fs::read_link(sd.shim_dir().join(n)).unwrap(),
                Path::new("/bin/true")
            );
        }
    }
}

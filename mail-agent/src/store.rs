//! State files on the replicated mount: JSON inside an envelope with a magic, a version and a
//! CRC-32 of the body, written atomically (temporary file, fsync, rename, fsync of the
//! directory), read back with every field checked. A torn or edited file is refused with a
//! message naming it rather than silently taken as empty.
//!
//! Writers and readers that must see a consistent pair of files (accounts and lockouts) take
//! the directory's lock file with `flock` ([`StateLock`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Errors reading or writing a state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not what it claims to be.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    magic: String,
    version: u32,
    crc32: u32,
    data: serde_json::Value,
}

/// Reads the state file at `path` written with `magic` and `version`; `Ok(None)` if it does
/// not exist.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    magic: &str,
    version: u32,
) -> Result<Option<T>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.display().to_string(),
        message,
    };
    let env: Envelope =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("not a state file: {e}")))?;
    if env.magic != magic {
        return Err(corrupt(format!(
            "magic is {:?}, expected {magic:?}",
            env.magic
        )));
    }
    if env.version != version {
        return Err(corrupt(format!(
            "version {} is not the supported version {version}",
            env.version
        )));
    }
    let body = serde_json::to_string(&env.data).map_err(|e| corrupt(e.to_string()))?;
    let crc = crc32fast::hash(body.as_bytes());
    if crc != env.crc32 {
        return Err(corrupt(format!(
            "checksum mismatch (stored {:08x}, computed {crc:08x})",
            env.crc32
        )));
    }
    let value =
        serde_json::from_value(env.data).map_err(|e| corrupt(format!("bad contents: {e}")))?;
    Ok(Some(value))
}

/// Writes `value` to `path` atomically with `mode` permissions.
pub fn write<T: Serialize>(
    path: &Path,
    magic: &str,
    version: u32,
    value: &T,
    mode: u32,
) -> Result<(), StoreError> {
    let data = serde_json::to_value(value).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    // serde_json's Value keeps maps sorted (no preserve_order feature), so the body's text —
    // and its CRC — is the same whenever it is serialised.
    let body = serde_json::to_string(&data).expect("a Value serialises");
    let env = Envelope {
        magic: magic.to_owned(),
        version,
        crc32: crc32fast::hash(body.as_bytes()),
        data,
    };
    let mut text = serde_json::to_string_pretty(&env).expect("an envelope serialises");
    text.push('\n');
    write_atomic(path, text.as_bytes(), mode)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    publish(&tmp, path)
}

/// Renames the durable file `tmp` (already fsynced) to `path` and makes the rename durable:
/// after a crash `path` holds the old contents or the new ones, never a torn or empty file.
pub fn publish(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    std::fs::rename(tmp, path).map_err(|e| io(path, e))?;
    if let Ok(d) = File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<File>,
}

impl StateLock {
    /// Takes the lock on `path` (creating the file), waiting for other holders.
    pub fn acquire(path: &Path) -> Result<StateLock, StoreError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io(path, e))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(path, std::io::Error::from(e)))?;
        Ok(StateLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        assert!(read::<BTreeMap<String, u32>>(&p, "m", 1).unwrap().is_none());
        let mut v = BTreeMap::new();
        v.insert("b".to_owned(), 2u32);
        v.insert("a".to_owned(), 1u32);
        write(&p, "m", 1, &v, 0o600).unwrap();
        assert_eq!(read::<BTreeMap<String, u32>>(&p, "m", 1).unwrap(), Some(v));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("\"b\": 2", "\"b\": 3")).unwrap();
        let e = read::<BTreeMap<String, u32>>(&p, "m", 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        std::fs::write(&p, &text).unwrap();
        assert!(
            read::<BTreeMap<String, u32>>(&p, "other", 1)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(
            read::<BTreeMap<String, u32>>(&p, "m", 2)
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        assert!(read::<BTreeMap<String, u32>>(&p, "m", 1).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let l = StateLock::acquire(&p).unwrap();
        let f = File::open(&p).unwrap();
        assert!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err());
        drop(l);
        let f = File::open(&p).unwrap();
        assert!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok());
    }
}

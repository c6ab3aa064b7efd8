//! Mount table and the processes holding a filesystem, read from `/proc`.
//!
//! [`parse_mountinfo`] is pure and unit-tested; [`holders`] scans `/proc/PID/{cwd,root,exe,fd,maps}`
//! for anything on a given device, like `fuser -m` but without its habit of hanging on dead
//! network filesystems (we only `stat` what `/proc` links to, and compare device numbers).

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted filesystem.
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Mount options (`rw,relatime`).
    pub options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (`/dev/loop3`, `nbdfuse`...).
    pub source: String,
}

impl MountEntry {
    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Undoes the octal escapes (`\040` for space) the kernel puts in mountinfo paths.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = oct {
            let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (maj, min) = l.get(2)?.split_once(':')?;
            Some(MountEntry {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mount_point: PathBuf::from(unescape(l.get(4)?)),
                options: (*l.get(5)?).to_owned(),
                fstype: (*r.first()?).to_owned(),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

/// The mount table of this process's namespace.
pub fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The topmost mount at `dir`, if any.
pub fn mounted_at(dir: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.mount_point == dir)
}

/// `major:minor` as the kernel packs it in `st_dev`.
pub fn split_dev(dev: u64) -> (u32, u32) {
    let part = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (
        part(nix::sys::stat::major(dev)),
        part(nix::sys::stat::minor(dev)),
    )
}

/// Whether a `/proc/PID/maps` text maps any file on device `dev` (the maps device field is
/// `major:minor` in hex).
pub fn maps_use_device(maps: &str, dev: (u32, u32)) -> bool {
    maps.lines().any(|l| {
        let Some(field) = l.split_whitespace().nth(3) else {
            return false;
        };
        let Some((ma, mi)) = field.split_once(':') else {
            return false;
        };
        u32::from_str_radix(ma, 16).ok() == Some(dev.0)
            && u32::from_str_radix(mi, 16).ok() == Some(dev.1)
            && dev != (0, 0)
    })
}

/// The device of what `path` (a `/proc` magic link) points to, from cached attributes only.
///
/// `stat` would ask the filesystem the file lives on to revalidate them — for a file on a dead
/// NFS server, another process's business entirely, that hangs, and a hung stop gets the node
/// fenced. `statx(AT_STATX_DONT_SYNC)` answers from the cache, which is enough for `st_dev`.
fn cached_dev(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is a plain C struct for which all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `stx` a live statx buffer, both valid for the
    // duration of the call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_DONT_SYNC | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS,
            &raw mut stx,
        )
    };
    (r == 0).then_some((stx.stx_dev_major, stx.stx_dev_minor))
}

/// Whether process `pid` (not ours) has a cwd, root, executable, open file or mapping on the
/// filesystem whose device is `dev`.
pub fn holds(pid: i32, dev: (u32, u32)) -> bool {
    if u32::try_from(pid).ok() == Some(std::process::id()) {
        return false;
    }
    let base = PathBuf::from(format!("/proc/{pid}"));
    let on_dev = |p: &Path| cached_dev(p) == Some(dev);
    if ["cwd", "root", "exe"].iter().any(|l| on_dev(&base.join(l))) {
        return true;
    }
    if let Ok(fds) = std::fs::read_dir(base.join("fd"))
        && fds.flatten().any(|fd| on_dev(&fd.path()))
    {
        return true;
    }
    std::fs::read_to_string(base.join("maps")).is_ok_and(|maps| maps_use_device(&maps, dev))
}

/// Pids (other than ours) with a cwd, root, executable, open file or mapping on the
/// filesystem whose device is `dev`.
pub fn holders(dev: (u32, u32)) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| holds(pid, dev))
        .collect()
}

/// Sends `sig` to `pid` if — at the moment of sending — it still holds the filesystem on
/// `dev`. The process is pinned with a pidfd first and checked again after: a holder that
/// exited since it was found, its pid reused by an unrelated process, is never signalled.
/// Returns whether the signal was sent.
pub fn signal_holder(pid: i32, dev: (u32, u32), sig: nix::sys::signal::Signal) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = i32::try_from(fd) else {
        return false;
    };
    if fd < 0 {
        return false; // gone already
    }
    // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if !holds(pid, dev) {
        return false;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes the pidfd, a signal number, a null siginfo (meaning
    // "as kill(2) would") and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const INFO: &str = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
        95 22 0:50 / /run/tandem/fs/x.fuse rw,nosuid,nodev,relatime shared:50 - fuse.nbdfuse nbdfuse rw,user_id=0\n\
        97 22 7:3 / /srv/mail\\040data rw,relatime shared:52 - ext4 /dev/loop3 rw\n\
        98 97 7:4 / /srv/mail\\040data ro,relatime shared:53 - xfs /dev/loop4 ro\n";

    #[test]
    fn parses_mountinfo_with_escapes_and_optional_fields() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].fstype, "fuse.nbdfuse");
        assert_eq!(m[2].mount_point, PathBuf::from("/srv/mail data"));
        assert_eq!(
            (m[2].dev, m[2].source.as_str(), m[2].read_only()),
            ((7, 3), "/dev/loop3", false)
        );
        assert!(m[3].read_only());
        assert_eq!(unescape("a\\011b\\\\c"), "a\tb\\\\c");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn maps_device_matching_is_hex() {
        let maps = "7f0000-7f1000 r--p 00000000 07:0a 12 /srv/x/lib.so\n7f2000-7f3000 rw-p 00000000 00:00 0 [heap]\n";
        assert!(maps_use_device(maps, (7, 10)));
        assert!(!maps_use_device(maps, (7, 11)));
        assert!(!maps_use_device(maps, (0, 0)));
    }

    #[test]
    fn finds_a_process_holding_a_directory_by_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let dev = split_dev(std::fs::metadata(dir.path()).unwrap().dev());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let found = holders(dev);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&pid), "{pid} not in {found:?}");
        assert!(!found.contains(&i32::try_from(std::process::id()).unwrap()));
    }
}

//! System users and groups of the daemons, and keeping file ownership right across nodes.
//!
//! Debian allocates the daemons' users (postfix, clamav, debian-spamd, ...) dynamically at
//! package install, so two nodes may give `postfix` different uids. Each start records the
//! ids it used in `state/owners.json`; when the next start (maybe on the other node) finds
//! different ids, it re-owns every file under `state/` from the old id to the new one, as
//! Zimbra's and Postfix's own `set-permissions` steps do. Mail itself is owned by Debian's
//! `mail` user, whose id (8) is fixed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The daemons' users, and the Debian package that creates each.
pub const USERS: &[(&str, &str)] = &[
    ("postfix", "postfix"),
    ("dovecot", "dovecot-core"),
    ("dovenull", "dovecot-core"),
    ("clamav", "clamav-daemon"),
    ("debian-spamd", "spamd"),
    ("spamass-milter", "spamass-milter"),
    ("opendkim", "opendkim"),
];

/// The daemons' groups.
pub const GROUPS: &[(&str, &str)] = &[
    ("postfix", "postfix"),
    ("postdrop", "postfix"),
    ("dovecot", "dovecot-core"),
    ("dovenull", "dovecot-core"),
    ("clamav", "clamav-daemon"),
    ("debian-spamd", "spamd"),
    ("spamass-milter", "spamass-milter"),
    ("opendkim", "opendkim"),
];

/// Ids by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owners {
    /// uid by user name.
    pub users: BTreeMap<String, u32>,
    /// gid by group name.
    pub groups: BTreeMap<String, u32>,
}

/// Magic of `owners.json`.
pub const OWNERS_MAGIC: &str = "tandem-mail/owners";

impl Owners {
    /// The ids on this node; a missing user or group names the package that creates it.
    pub fn current() -> Result<Owners, (String, &'static str)> {
        let mut o = Owners::default();
        for (u, pkg) in USERS {
            let user = nix::unistd::User::from_name(u)
                .ok()
                .flatten()
                .ok_or_else(|| (format!("user {u}"), *pkg))?;
            o.users.insert((*u).to_owned(), user.uid.as_raw());
        }
        for (g, pkg) in GROUPS {
            let group = nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| (format!("group {g}"), *pkg))?;
            o.groups.insert((*g).to_owned(), group.gid.as_raw());
        }
        Ok(o)
    }

    /// uid of `name` (one of [`USERS`]).
    pub fn uid(&self, name: &str) -> u32 {
        self.users[name]
    }

    /// gid of `name` (one of [`GROUPS`]).
    pub fn gid(&self, name: &str) -> u32 {
        self.groups[name]
    }
}

/// First of the temporary ids a re-own passes through (far above the ids Debian allocates).
pub const TEMP_ID_BASE: u32 = 0x7ffe_0000;

/// Magic of the re-own journal.
pub const JOURNAL_MAGIC: &str = "tandem-mail/owners-journal";

/// A re-own in progress, kept in `state/owners-remap.json` until it is done.
///
/// Re-owning in one pass (old id → new id) is not safe to repeat after an interruption when
/// ids were swapped between nodes (postfix 100 → 101, clamav 101 → 100): files already moved
/// would be moved again. So it goes through temporary ids, one phase at a time, each phase
/// idempotent: phase 1 moves `from` ids to temporary ones, phase 2 temporary ones to this
/// node's. A start that finds the journal resumes at its phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The ids the files had.
    pub from: Owners,
    /// Users whose files are moved.
    pub users: Vec<String>,
    /// Groups whose files are moved.
    pub groups: Vec<String>,
    /// 1: moving `from` ids to temporary ones; 2: temporary ones to this node's.
    pub phase: u8,
}

/// The temporary id of user (`USERS`) or group (`GROUPS`) `name`.
pub fn temp_id(list: &[(&str, &str)], name: &str) -> u32 {
    let i = list
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(list.len());
    TEMP_ID_BASE + u32::try_from(i).unwrap_or(0)
}

/// Old id → new id, for the names whose id changed. Pure.
pub fn remap(old: &BTreeMap<String, u32>, new: &BTreeMap<String, u32>) -> BTreeMap<u32, u32> {
    old.iter()
        .filter_map(|(name, &o)| new.get(name).filter(|&&n| n != o).map(|&n| (o, n)))
        .collect()
}

/// Re-owns every file under `root` (not following symlinks) whose uid or gid is a key of the
/// maps. Returns how many entries changed.
pub fn remap_tree(
    root: &Path,
    uids: &BTreeMap<u32, u32>,
    gids: &BTreeMap<u32, u32>,
) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    if uids.is_empty() && gids.is_empty() {
        return Ok(0);
    }
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let nu = uids.get(&md.uid()).copied();
        let ng = gids.get(&md.gid()).copied();
        if nu.is_some() || ng.is_some() {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p,
                nu.map(nix::unistd::Uid::from_raw),
                ng.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(std::io::Error::from)?;
            changed += 1;
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_lists_only_changed_ids() {
        let old: BTreeMap<String, u32> = [
            ("postfix".into(), 105),
            ("clamav".into(), 110),
            ("gone".into(), 7),
        ]
        .into();
        let new: BTreeMap<String, u32> = [("postfix".into(), 120), ("clamav".into(), 110)].into();
        assert_eq!(remap(&old, &new), [(105, 120)].into());
    }

    #[test]
    fn remap_tree_changes_matching_owners_only() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            return; // chown needs root; CI runs as root
        }
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("f"), b"x").unwrap();
        std::fs::write(dir.path().join("g"), b"y").unwrap();
        nix::unistd::chown(
            &a.join("f"),
            Some(nix::unistd::Uid::from_raw(4242)),
            Some(nix::unistd::Gid::from_raw(4343)),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.join("l")).unwrap();
        let n = remap_tree(dir.path(), &[(4242, 4244)].into(), &[(4343, 4345)].into()).unwrap();
        assert_eq!(n, 1);
        let md = std::fs::metadata(a.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (4244, 4345));
        assert_eq!(std::fs::metadata(dir.path().join("g")).unwrap().uid(), 0);
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().uid(),
            0,
            "symlink target untouched"
        );
    }
}

//! Accounts: which exist and their class is declared in `mail.toml`; their secrets and status
//! (password hash, when it was set, whether the administrator locked it) live in
//! `state/accounts/accounts.json` on the mount. From both, this module writes the two files
//! Dovecot reads (a passdb with the hashes and a userdb with every mailbox's home); Dovecot
//! re-reads them when they change.
//!
//! Hashes are Argon2id in the PHC format, stored with Dovecot's `{ARGON2ID}` scheme prefix so
//! that Dovecot verifies them itself (Debian's Dovecot is built with libsodium).

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use serde::{Deserialize, Serialize};

use crate::config::MailConfig;
use crate::layout::{Layout, s};
use crate::lockout;
use crate::store::{self, StateLock, StoreError};

/// Magic of `accounts.json`.
pub const ACCOUNTS_MAGIC: &str = "tandem-mail/accounts";
/// Magic of `lockout.json`.
pub const LOCKOUT_MAGIC: &str = "tandem-mail/lockout";
/// Version of both files.
pub const STATE_VERSION: u32 = 1;

/// The local part of the monitor's probe mailbox, in the first domain. Reserved: no account may
/// take it, and Postfix does not accept mail for it from outside.
pub const PROBE_LOCAL: &str = "tandem-probe";

/// Debian's `mail` user and group (fixed ids from base-passwd, the same on every node), which
/// own every mailbox.
pub const MAIL_UID: u32 = 8;
/// See [`MAIL_UID`].
pub const MAIL_GID: u32 = 8;

/// The Dovecot scheme prefix of our hashes.
pub const SCHEME: &str = "{ARGON2ID}";

/// One account's secret and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// `{ARGON2ID}$argon2id$v=19$...`.
    pub hash: String,
    /// When the password was set (Unix seconds); 0 forces it expired.
    pub password_changed: u64,
    /// Locked by the administrator.
    pub locked: bool,
}

/// Every account's record, by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    /// Records by address.
    pub accounts: BTreeMap<String, AccountRecord>,
}

/// Errors of the account commands.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The state files.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request that breaks a rule; the message says which.
    #[error("{0}")]
    Refused(String),
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The probe mailbox's address.
pub fn probe_address(cfg: &MailConfig) -> String {
    format!("{PROBE_LOCAL}@{}", cfg.domains[0])
}

/// Hashes `password` for Dovecot.
pub fn hash_password(password: &str) -> String {
    let h = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters hashes any password");
    format!("{SCHEME}{h}")
}

/// Whether `password` matches `hash` (as Dovecot would decide).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Some(phc) = hash.strip_prefix(SCHEME) else {
        return false;
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Reads both state files under the lock the caller holds.
pub fn read_accounts(layout: &Layout) -> Result<Accounts, StoreError> {
    Ok(store::read(&layout.accounts_file(), ACCOUNTS_MAGIC, STATE_VERSION)?.unwrap_or_default())
}

/// Writes the accounts file.
pub fn write_accounts(layout: &Layout, a: &Accounts) -> Result<(), StoreError> {
    store::write(
        &layout.accounts_file(),
        ACCOUNTS_MAGIC,
        STATE_VERSION,
        a,
        0o600,
    )
}

/// Reads the lockout book.
pub fn read_lockouts(layout: &Layout) -> Result<lockout::Book, StoreError> {
    Ok(store::read(&layout.lockout_file(), LOCKOUT_MAGIC, STATE_VERSION)?.unwrap_or_default())
}

/// Writes the lockout book.
pub fn write_lockouts(layout: &Layout, b: &lockout::Book) -> Result<(), StoreError> {
    store::write(
        &layout.lockout_file(),
        LOCKOUT_MAGIC,
        STATE_VERSION,
        b,
        0o600,
    )
}

/// Takes the accounts lock (creating the directory).
pub fn lock(layout: &Layout) -> Result<StateLock, StoreError> {
    std::fs::create_dir_all(layout.accounts_dir()).map_err(|e| StoreError::Io {
        path: s(&layout.accounts_dir()),
        source: e,
    })?;
    StateLock::acquire(&layout.accounts_lock())
}

/// Every mailbox that exists: declared accounts, the two training mailboxes and the probe.
pub fn mailboxes(cfg: &MailConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg.accounts.iter().map(|a| a.address.clone()).collect();
    v.push(cfg.spam.training_spam.clone());
    v.push(cfg.spam.training_ham.clone());
    v.push(probe_address(cfg));
    v
}

/// Writes Dovecot's passdb and userdb from the configuration and the records. The passdb
/// lists declared accounts that have a password (plus the probe, with `probe_hash`); the
/// userdb lists every mailbox. Both are 0640 root:dovecot.
pub fn write_dovecot_files(
    layout: &Layout,
    cfg: &MailConfig,
    accounts: &Accounts,
    probe_hash: Option<&str>,
    dovecot_gid: Option<u32>,
) -> Result<(), StoreError> {
    let mut passdb = String::new();
    for a in &cfg.accounts {
        if let Some(r) = accounts.accounts.get(&a.address) {
            passdb.push_str(&format!(
                "{}:{}::::::tandem_authenticated=yes\n",
                a.address, r.hash
            ));
        }
    }
    if let Some(h) = probe_hash {
        passdb.push_str(&format!(
            "{}:{h}::::::tandem_authenticated=yes\n",
            probe_address(cfg)
        ));
    }
    let mut userdb = String::new();
    for m in mailboxes(cfg) {
        userdb.push_str(&format!(
            "{m}::{MAIL_UID}:{MAIL_GID}::{}::\n",
            s(&layout.home(&m))
        ));
    }
    for (path, text) in [
        (layout.passdb_file(), passdb),
        (layout.userdb_file(), userdb),
    ] {
        store::write_atomic(&path, text.as_bytes(), 0o640)?;
        if let Some(gid) = dovecot_gid {
            let _ = nix::unistd::chown(
                &path,
                Some(nix::unistd::Uid::from_raw(0)),
                Some(nix::unistd::Gid::from_raw(gid)),
            );
        }
    }
    Ok(())
}

/// The status of one account, for `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountStatus {
    /// Address.
    pub address: String,
    /// Class of service.
    pub class: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// A password is set.
    pub has_password: bool,
    /// When it was set (Unix seconds).
    pub password_changed: Option<u64>,
    /// When it expires (Unix seconds), if it does.
    pub password_expires: Option<u64>,
    /// It has expired.
    pub expired: bool,
    /// Locked by the administrator.
    pub locked: bool,
    /// Locked by the failed-login policy until then (Unix seconds).
    pub locked_until: Option<u64>,
    /// Failed logins counted in the current window.
    pub failures: u32,
}

/// Whether a password set at `changed` has expired at `now` under `max_age_s` (0: never).
pub fn expired(changed: u64, max_age_s: u64, now: u64) -> bool {
    changed == 0 || (max_age_s > 0 && now >= changed.saturating_add(max_age_s))
}

/// The status of every declared account.
pub fn list(
    cfg: &MailConfig,
    accounts: &Accounts,
    book: &lockout::Book,
    now: u64,
) -> Vec<AccountStatus> {
    let rules = lockout::Rules::from(&cfg.policy);
    cfg.accounts
        .iter()
        .map(|a| {
            let class = &cfg.classes[&a.class];
            let rec = accounts.accounts.get(&a.address);
            let max_age = class.password.max_age.secs;
            AccountStatus {
                address: a.address.clone(),
                class: a.class.clone(),
                aliases: a.aliases.clone(),
                has_password: rec.is_some(),
                password_changed: rec.map(|r| r.password_changed),
                password_expires: rec
                    .filter(|_| max_age > 0)
                    .map(|r| r.password_changed.saturating_add(max_age)),
                expired: rec.is_some_and(|r| expired(r.password_changed, max_age, now)),
                locked: rec.is_some_and(|r| r.locked),
                locked_until: book.locked_until(&a.address, now),
                failures: book.failures(&a.address, now, rules),
            }
        })
        .collect()
}

/// Checks `password` against the rules of `address`'s class.
pub fn check_password(cfg: &MailConfig, class: &str, password: &str) -> Result<(), AccountError> {
    let rules = &cfg
        .classes
        .get(class)
        .ok_or_else(|| AccountError::Refused(format!("unknown class {class:?}")))?
        .password;
    crate::password::check(password, rules).map_err(|broken| {
        AccountError::Refused(format!(
            "password refused by the rules of class {class:?}: it {}",
            broken.join("; it ")
        ))
    })
}

/// Adds `[[account]] address, class` to the configuration text, keeping its comments and
/// layout; the result is validated before it is returned.
pub fn add_to_config_text(text: &str, address: &str, class: &str) -> Result<String, AccountError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        AccountError::Refused(format!("cannot edit the configuration: {e}"))
    })?;
    let entry = doc
        .entry("account")
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ));
    let Some(arr) = entry.as_array_of_tables_mut() else {
        return Err(AccountError::Refused(
            "`account` in the configuration is not an array of tables ([[account]])".into(),
        ));
    };
    let mut t = toml_edit::Table::new();
    t["address"] = toml_edit::value(address);
    t["class"] = toml_edit::value(class);
    arr.push(t);
    let out = doc.to_string();
    crate::config::parse(&out)?;
    Ok(out)
}

/// Creates the home directory of `address` (owned by mail:mail, 0700).
pub fn ensure_home(layout: &Layout, address: &str) -> std::io::Result<()> {
    let home = layout.home(address);
    let domain_dir = home.parent().expect("home has a domain directory");
    for d in [layout.mail_root().as_path(), domain_dir, home.as_path()] {
        if !d.exists() {
            std::fs::create_dir_all(d)?;
            chown_mail(d)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                d,
                std::fs::Permissions::from_mode(if d == home { 0o700 } else { 0o755 }),
            )?;
        }
    }
    Ok(())
}

fn chown_mail(p: &Path) -> std::io::Result<()> {
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(MAIL_UID)),
        Some(nix::unistd::Gid::from_raw(MAIL_GID)),
    )
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"# the company's mail
hostname = "mail.example.com"
domains = ["example.com"]
listen = "10.0.0.50"

[[account]]
address = "alice@example.com"
class = "general"   # ordinary staff
"#;

    #[test]
    fn hashes_verify_and_carry_the_dovecot_scheme() {
        let h = hash_password("Secret1");
        assert!(h.starts_with("{ARGON2ID}$argon2id$v=19$"), "{h}");
        assert!(verify_password("Secret1", &h));
        assert!(!verify_password("secret1", &h));
        assert_ne!(h, hash_password("Secret1"), "salted");
        assert!(!verify_password("Secret1", "{SHA512-CRYPT}x"));
    }

    #[test]
    fn adding_to_the_config_keeps_comments_and_validates() {
        let out = add_to_config_text(CFG, "bob@example.com", "admin").unwrap();
        assert!(out.contains("# the company's mail") && out.contains("# ordinary staff"));
        let cfg = crate::config::parse(&out).unwrap();
        assert_eq!(cfg.accounts.len(), 2);
        assert_eq!(cfg.account("bob@example.com").unwrap().class, "admin");
        let e = add_to_config_text(CFG, "alice@example.com", "general")
            .unwrap_err()
            .to_string();
        assert!(e.contains("account[1].address"), "{e}");
        assert!(add_to_config_text(CFG, "carol@example.com", "boss").is_err());
        assert!(
            add_to_config_text("", "x@example.com", "general").is_err(),
            "hostname missing"
        );
    }

    #[test]
    fn weak_passwords_are_refused_with_every_reason() {
        let cfg = crate::config::parse(CFG).unwrap();
        let e = check_password(&cfg, "general", "abc")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at least 6 characters") && e.contains("upper-case") && e.contains("digit"),
            "{e}"
        );
        assert!(check_password(&cfg, "general", "Abcde1").is_ok());
        assert!(check_password(&cfg, "admin", "Abcde1").is_err());
    }

    #[test]
    fn expiry_rules() {
        assert!(!expired(1000, 30 * 86400, 1000 + 30 * 86400 - 1));
        assert!(expired(1000, 30 * 86400, 1000 + 30 * 86400));
        assert!(!expired(1000, 0, u64::MAX));
        assert!(expired(0, 0, 5), "0 means forced expiry");
    }

    #[test]
    fn dovecot_files_list_passwords_and_mailboxes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.accounts_dir()).unwrap();
        let cfg =
            crate::config::parse(&add_to_config_text(CFG, "bob@example.com", "general").unwrap())
                .unwrap();
        let mut a = Accounts::default();
        a.accounts.insert(
            "alice@example.com".into(),
            AccountRecord {
                hash: "{ARGON2ID}h".into(),
                password_changed: 1,
                locked: false,
            },
        );
        a.accounts.insert(
            "gone@example.com".into(),
            AccountRecord {
                hash: "{ARGON2ID}g".into(),
                password_changed: 1,
                locked: false,
            },
        );
        write_dovecot_files(&layout, &cfg, &a, Some("{ARGON2ID}p"), None).unwrap();
        let passdb = std::fs::read_to_string(layout.passdb_file()).unwrap();
        assert_eq!(
            passdb,
            "alice@example.com:{ARGON2ID}h::::::tandem_authenticated=yes\ntandem-probe@example.com:{ARGON2ID}p::::::tandem_authenticated=yes\n"
        );
        let userdb = std::fs::read_to_string(layout.userdb_file()).unwrap();
        let home = layout.home("bob@example.com");
        assert!(
            userdb.contains(&format!("bob@example.com::8:8::{}::\n", home.display())),
            "{userdb}"
        );
        assert!(userdb.contains("spam.training@example.com::8:8::"));
        assert!(!userdb.contains("gone@"));
    }
}

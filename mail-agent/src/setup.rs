//! Preparing the directory for a start: tools present, ownership fixed for this node's ids,
//! directories with the right owners and modes, secrets, TLS certificate, DKIM keys, Dovecot's
//! account files, and every rendered configuration. Idempotent; run by `start` before the
//! supervisor, and (the parts they need) by the admin commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::accounts;
use crate::config::{ConfigError, MailConfig};
use crate::layout::{Layout, s};
use crate::owners::{self, Owners};
use crate::render::{self, DkimKey, Group, Secrets};
use crate::store;

/// Why preparing failed, classed the way OCF wants it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A tool or system user is missing: `OCF_ERR_INSTALLED`.
    #[error("{what} not found (install the Debian package {package})")]
    NotInstalled {
        /// What is missing.
        what: String,
        /// The package that provides it.
        package: &'static str,
    },
    /// The configuration is unusable: `OCF_ERR_CONFIGURED`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else: `OCF_ERR_GENERIC`.
    #[error("{0}")]
    Other(String),
}

fn other(what: impl std::fmt::Display, e: impl std::fmt::Display) -> SetupError {
    SetupError::Other(format!("{what}: {e}"))
}

/// The external programs the suite runs, and their packages.
pub const TOOLS: &[(&str, &str)] = &[
    ("/usr/lib/postfix/sbin/master", "postfix"),
    ("/usr/sbin/postfix", "postfix"),
    ("/usr/lib/postfix/sbin/smtpd", "postfix"),
    ("/usr/lib/postfix/sbin/lmtp", "postfix"),
    ("/usr/sbin/dovecot", "dovecot-core"),
    ("/usr/bin/doveadm", "dovecot-core"),
    ("/usr/lib/dovecot/imap", "dovecot-imapd"),
    ("/usr/lib/dovecot/pop3", "dovecot-pop3d"),
    ("/usr/lib/dovecot/lmtp", "dovecot-lmtpd"),
    ("/usr/bin/sievec", "dovecot-sieve"),
    ("/usr/sbin/spamd", "spamd"),
    ("/usr/bin/sa-learn", "spamassassin"),
    ("/usr/bin/spamc", "spamc"),
    ("/usr/sbin/spamass-milter", "spamass-milter"),
    ("/usr/sbin/clamd", "clamav-daemon"),
    ("/usr/sbin/clamav-milter", "clamav-milter"),
    ("/usr/sbin/opendkim", "opendkim"),
    ("/usr/sbin/opendkim-genkey", "opendkim-tools"),
    ("/usr/bin/openssl", "openssl"),
];

/// Checks every tool and system user is present.
pub fn check_installed() -> Result<Owners, SetupError> {
    for (path, package) in TOOLS {
        if !Path::new(path).exists() {
            return Err(SetupError::NotInstalled {
                what: (*path).to_owned(),
                package,
            });
        }
    }
    Owners::current().map_err(|(what, package)| SetupError::NotInstalled { what, package })
}

/// What a start needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// This node's ids.
    pub owners: Owners,
    /// Secrets.
    pub secrets: Secrets,
    /// TLS certificate and key in use.
    pub tls: (PathBuf, PathBuf),
    /// ClamAV databases.
    pub clamav_db: PathBuf,
    /// DKIM keys.
    pub dkim_keys: Vec<DkimKey>,
}

fn mkdir(p: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), SetupError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p).map_err(|e| other(s(p), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| other(s(p), e))?;
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| other(s(p), e))
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<(), SetupError> {
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| other(s(p), e))
}

/// Random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the kernel's random source is available");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn secret(dir: &Path, name: &str) -> Result<String, SetupError> {
    let p = dir.join(name);
    match std::fs::read_to_string(&p) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) | Err(_) => {
            let v = random_hex(24);
            store::write_atomic(&p, format!("{v}\n").as_bytes(), 0o600)
                .map_err(|e| other(s(&p), e))?;
            Ok(v)
        }
    }
}

/// Loads the secrets (creating them on first use).
pub fn secrets(layout: &Layout) -> Result<Secrets, SetupError> {
    let dir = layout.secrets_dir();
    mkdir(&dir, 0o700, 0, 0)?;
    Ok(Secrets {
        policy_key: secret(&dir, "policy.key")?,
        policy_nonce: secret(&dir, "policy.nonce")?,
        probe_password: secret(&dir, "probe.password")?,
    })
}

fn run(cmd: &mut Command) -> Result<String, SetupError> {
    let out = cmd.output().map_err(|e| other(format!("{cmd:?}"), e))?;
    if !out.status.success() {
        return Err(SetupError::Other(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The certificate and key in use, generating a self-signed pair when none is configured.
pub fn tls(cfg: &MailConfig, layout: &Layout) -> Result<(PathBuf, PathBuf), SetupError> {
    if let (Some(c), Some(k)) = (&cfg.tls_cert, &cfg.tls_key) {
        for (field, p) in [("tls.cert", c), ("tls.key", k)] {
            if std::fs::File::open(p).is_err() {
                return Err(ConfigError::Field {
                    field: field.into(),
                    message: format!("{} cannot be read", p.display()),
                }
                .into());
            }
        }
        return Ok((c.clone(), k.clone()));
    }
    let dir = layout.tls_dir();
    mkdir(&dir, 0o755, 0, 0)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let names = cert_names(cfg);
    // A generated certificate follows the configuration: when the hostname or the domains
    // change, clients would otherwise be shown a certificate for the old names.
    let current = cert.exists() && key.exists() && generated_names(&cert).as_ref() == Some(&names);
    if !current {
        let san = format!(
            "subjectAltName={}",
            names
                .iter()
                .map(|n| format!("DNS:{n}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        // Generated beside, made durable, then renamed: after a crash the replica holds the
        // old pair or the new one, never an empty or torn file.
        let (cert_tmp, key_tmp) = (dir.join("cert.pem.new"), dir.join("key.pem.new"));
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
            ])
            .arg(format!("/CN={}", cfg.hostname))
            .args(["-addext", &san, "-keyout"])
            .arg(&key_tmp)
            .arg("-out")
            .arg(&cert_tmp))?;
        durable_rename(&key_tmp, &key)?;
        durable_rename(&cert_tmp, &cert)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| other(s(&key), e))?;
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| other(s(&cert), e))?;
    Ok((cert, key))
}

/// Makes `from` (a file another program wrote) durable, then publishes it as `to`.
fn durable_rename(from: &Path, to: &Path) -> Result<(), SetupError> {
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .map_err(|e| other(s(from), e))?;
    store::publish(from, to).map_err(|e| other(s(to), e))
}

/// The names a generated certificate carries: the hostname (also its subject's CN), then the
/// mail domains (clients configured with the bare domain as their server).
pub fn cert_names(cfg: &MailConfig) -> Vec<String> {
    let mut v = vec![cfg.hostname.clone()];
    v.extend(cfg.domains.iter().filter(|d| **d != cfg.hostname).cloned());
    v
}

/// The DNS names of a certificate's subjectAltName, in order, as `openssl x509` prints them;
/// `None` when it cannot be read.
fn generated_names(cert: &Path) -> Option<Vec<String>> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(cert)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_san(&String::from_utf8_lossy(&out.stdout)))
}

/// `DNS:` entries of `openssl x509 -ext subjectAltName` output. Pure.
pub fn parse_san(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .skip(1)
        .flat_map(|l| l.split(','))
        .filter_map(|e| e.trim().strip_prefix("DNS:"))
        .map(str::to_owned)
        .collect()
}

/// The first ancestor of `path` that other users can write to, if any. OpenDKIM refuses a key
/// below one ("key data is not secure") and then sends mail unsigned, so `start` refuses it
/// first, naming the directory.
pub fn unsafe_ancestor(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .find(|a| {
            std::fs::metadata(a)
                .is_ok_and(|m| m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != 0))
        })
        .map(Path::to_path_buf)
}

/// The DKIM keys of every domain, generating missing ones with `opendkim-genkey`.
pub fn dkim_keys(
    cfg: &MailConfig,
    layout: &Layout,
    owners: &Owners,
) -> Result<Vec<DkimKey>, SetupError> {
    if let Some(a) = unsafe_ancestor(&layout.root) {
        return Err(ConfigError::Field {
            field: "directory".into(),
            message: format!(
                "{} lies under {}, which other users can write to: OpenDKIM refuses keys there",
                layout.root.display(),
                a.display()
            ),
        }
        .into());
    }
    let (uid, gid) = (owners.uid("opendkim"), owners.gid("opendkim"));
    mkdir(&layout.dkim_root(), 0o755, 0, 0)?;
    let mut keys = Vec::new();
    for d in &cfg.domains {
        let dir = layout.dkim_dir(d);
        mkdir(&dir, 0o700, uid, gid)?;
        let key = dir.join(format!("{}.private", cfg.dkim.selector));
        if !key.exists() {
            // Generated in a scratch directory, made durable, then renamed into place (the
            // record first, the key last: the key's presence means both are there). Written in
            // place, a crash within the page cache's write-back delay left the replica an empty
            // key, and OpenDKIM then refused every message.
            let scratch = dir.join(".genkey");
            let _ = std::fs::remove_dir_all(&scratch);
            mkdir(&scratch, 0o700, 0, 0)?;
            run(Command::new("opendkim-genkey")
                .args([
                    "-b",
                    &cfg.dkim.key_bits.to_string(),
                    "-d",
                    d,
                    "-s",
                    &cfg.dkim.selector,
                    "-D",
                ])
                .arg(&scratch))?;
            let txt = format!("{}.txt", cfg.dkim.selector);
            durable_rename(&scratch.join(&txt), &dir.join(&txt))?;
            durable_rename(
                &scratch.join(format!("{}.private", cfg.dkim.selector)),
                &key,
            )?;
            let _ = std::fs::remove_dir(&scratch);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| other(s(&key), e))?;
        chown(&key, uid, gid)?;
        keys.push(DkimKey {
            domain: d.clone(),
            selector: cfg.dkim.selector.clone(),
            key: s(&key),
        });
    }
    Ok(keys)
}

/// The public DKIM record (`v=DKIM1; k=rsa; p=...`) of `domain`, from the `.txt` file
/// `opendkim-genkey` wrote beside the key.
pub fn dkim_record(cfg: &MailConfig, layout: &Layout, domain: &str) -> Result<String, SetupError> {
    let p = layout
        .dkim_dir(domain)
        .join(format!("{}.txt", cfg.dkim.selector));
    let text = std::fs::read_to_string(&p).map_err(|e| other(s(&p), e))?;
    let joined: String = text
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, part)| part)
        .collect();
    if !joined.contains("p=") {
        return Err(SetupError::Other(format!("{}: no public key found", s(&p))));
    }
    Ok(joined)
}

const DB_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "hdb", "hsb", "mdb", "msb", "ndb", "ldb", "cdb", "fp", "sfp", "ign2",
    "pdb", "wdb", "yar", "yara", "cbc", "ndu", "ldu", "idb", "crb", "hdu", "hsu", "mdu", "msu",
];

/// The ClamAV database directory, checked to hold at least one signature database.
pub fn clamav_db(
    cfg: &MailConfig,
    layout: &Layout,
    owners: &Owners,
) -> Result<PathBuf, SetupError> {
    let (dir, field_configured) = match &cfg.clamav_database_directory {
        Some(d) => (d.clone(), true),
        None => (layout.clamav_db_default(), false),
    };
    if !field_configured {
        mkdir(&dir, 0o755, owners.uid("clamav"), owners.gid("clamav"))?;
    }
    if !has_clamav_db(&dir) {
        return Err(no_clamav_db(&dir).into());
    }
    Ok(dir)
}

/// Read-only checks `validate-all` can make before anything is created: the directory is not
/// below a directory others can write to (OpenDKIM would refuse its keys), and the ClamAV
/// databases are there.
pub fn check_directory_use(cfg: &MailConfig, layout: &Layout) -> Result<(), SetupError> {
    if let Some(a) = unsafe_ancestor(&layout.root) {
        return Err(ConfigError::Field {
            field: "directory".into(),
            message: format!(
                "{} lies under {}, which other users can write to: OpenDKIM refuses keys there",
                layout.root.display(),
                a.display()
            ),
        }
        .into());
    }
    let dir = cfg
        .clamav_database_directory
        .clone()
        .unwrap_or_else(|| layout.clamav_db_default());
    if !has_clamav_db(&dir) {
        return Err(no_clamav_db(&dir).into());
    }
    Ok(())
}

fn has_clamav_db(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                e.path()
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| DB_EXTENSIONS.contains(&x))
            })
        })
        .unwrap_or(false)
}

fn no_clamav_db(dir: &Path) -> ConfigError {
    ConfigError::Field {
        field: "antivirus.database_directory".into(),
        message: format!(
            "{} holds no ClamAV signature database: run freshclam with DatabaseDirectory there, or copy /var/lib/clamav/*.cvd into it",
            dir.display()
        ),
    }
}

/// Re-owns `state/` from the ids of the last start to this node's, through temporary ids and
/// a journal so that a start interrupted halfway resumes correctly (see [`owners::Journal`]).
pub fn fix_owners(layout: &Layout, now: &Owners) -> Result<u64, SetupError> {
    fix_owners_until(layout, now, false)
}

/// [`fix_owners`], stopping after the first phase when `interrupt` (tests: a crash halfway).
fn fix_owners_until(layout: &Layout, now: &Owners, interrupt: bool) -> Result<u64, SetupError> {
    use owners::{GROUPS, USERS, temp_id};
    let path = layout.owners_file();
    let jpath = layout.state().join("owners-remap.json");
    let ow = |e| other("owners", e);
    let recorded: Option<Owners> = store::read(&path, owners::OWNERS_MAGIC, 1).map_err(ow)?;
    let journal: Option<owners::Journal> =
        store::read(&jpath, owners::JOURNAL_MAGIC, 1).map_err(ow)?;
    let moved = |a: &std::collections::BTreeMap<String, u32>,
                 b: &std::collections::BTreeMap<String, u32>| {
        a.iter()
            .filter(|(n, id)| b.get(*n).is_some_and(|x| x != *id))
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    };
    let journal = journal.or_else(|| {
        recorded
            .filter(|old| old != now)
            .map(|old| owners::Journal {
                users: moved(&old.users, &now.users),
                groups: moved(&old.groups, &now.groups),
                from: old,
                phase: 1,
            })
    });
    let mut changed = 0;
    if let Some(mut j) = journal {
        let all_ids = j.from.users.values().chain(now.users.values());
        if all_ids
            .chain(j.from.groups.values())
            .chain(now.groups.values())
            .any(|&id| id >= owners::TEMP_ID_BASE)
        {
            return Err(SetupError::Other(format!(
                "a daemon's id is at or above {}: the temporary ids of re-owning would collide",
                owners::TEMP_ID_BASE
            )));
        }
        let remap = |uids, gids| {
            owners::remap_tree(&layout.state(), &uids, &gids)
                .map_err(|e| other("re-owning state", e))
        };
        if j.phase == 1 {
            store::write(&jpath, owners::JOURNAL_MAGIC, 1, &j, 0o644).map_err(ow)?;
            let uids = j
                .users
                .iter()
                .map(|n| (j.from.users[n], temp_id(USERS, n)))
                .collect();
            let gids = j
                .groups
                .iter()
                .map(|n| (j.from.groups[n], temp_id(GROUPS, n)))
                .collect();
            changed += remap(uids, gids)?;
            j.phase = 2;
            store::write(&jpath, owners::JOURNAL_MAGIC, 1, &j, 0o644).map_err(ow)?;
            if interrupt {
                return Ok(changed);
            }
        }
        // This node's ids, which may differ from those of the start that was interrupted.
        let uids = j
            .users
            .iter()
            .filter_map(|n| now.users.get(n).map(|&id| (temp_id(USERS, n), id)))
            .collect();
        let gids = j
            .groups
            .iter()
            .filter_map(|n| now.groups.get(n).map(|&id| (temp_id(GROUPS, n), id)))
            .collect();
        changed += remap(uids, gids)?;
        store::write(&path, owners::OWNERS_MAGIC, 1, now, 0o644).map_err(ow)?;
        std::fs::remove_file(&jpath).map_err(|e| other(s(&jpath), e))?;
        return Ok(changed);
    }
    store::write(&path, owners::OWNERS_MAGIC, 1, now, 0o644).map_err(ow)?;
    Ok(changed)
}

/// Creates the directory tree with its owners and modes (all but `run/`, see [`prepare_run`]).
pub fn make_tree(layout: &Layout, o: &Owners) -> Result<(), SetupError> {
    let postfix = (o.uid("postfix"), o.gid("postfix"));
    mkdir(&layout.root, 0o755, 0, 0)?;
    mkdir(&layout.state(), 0o755, 0, 0)?;
    mkdir(&layout.postfix_queue(), 0o755, 0, 0)?;
    mkdir(&layout.postfix_data(), 0o700, postfix.0, postfix.1)?;
    mkdir(&layout.dovecot_state(), 0o755, 0, 0)?;
    mkdir(&layout.accounts_dir(), 0o750, 0, o.gid("dovecot"))?;
    mkdir(
        &layout.bayes_dir(),
        0o700,
        o.uid("debian-spamd"),
        o.gid("debian-spamd"),
    )?;
    mkdir(&layout.mail_root(), 0o755, 0, 0)?;
    mkdir(&layout.log_dir(), 0o755, 0, 0)?;
    Ok(())
}

/// Recreates `run/` (stale sockets and pid files go) with each daemon's directory.
pub fn prepare_run(layout: &Layout, o: &Owners) -> Result<(), SetupError> {
    let run = layout.run();
    if run.exists() {
        std::fs::remove_dir_all(&run).map_err(|e| other(s(&run), e))?;
    }
    mkdir(&run, 0o755, 0, 0)?;
    mkdir(&layout.conf(), 0o755, 0, 0)?;
    mkdir(&layout.dovecot_base(), 0o755, 0, 0)?;
    mkdir(&layout.clamd_dir(), 0o750, o.uid("clamav"), o.gid("clamav"))?;
    mkdir(&layout.spamd_dir(), 0o755, 0, 0)?;
    mkdir(&layout.run_file("milter"), 0o755, 0, 0)?;
    let pg = o.gid("postfix");
    mkdir(&layout.milter_dir("clamav"), 0o750, o.uid("clamav"), pg)?;
    mkdir(
        &layout.milter_dir("spamass"),
        0o750,
        o.uid("spamass-milter"),
        pg,
    )?;
    mkdir(&layout.milter_dir("opendkim"), 0o750, o.uid("opendkim"), pg)?;
    mkdir(&layout.milter_dir("tandem"), 0o750, 0, pg)?;
    Ok(())
}

/// The probe password's hash, kept beside it (hashing is deliberately slow; the probe password
/// only changes when its file is removed).
fn probe_hash(layout: &Layout, password: &str) -> Result<String, SetupError> {
    let p = layout.secrets_dir().join("probe.hash");
    if let Ok(h) = std::fs::read_to_string(&p)
        && accounts::verify_password(password, h.trim())
    {
        return Ok(h.trim().to_owned());
    }
    let h = accounts::hash_password(password);
    store::write_atomic(&p, format!("{h}\n").as_bytes(), 0o600).map_err(|e| other(s(&p), e))?;
    Ok(h)
}

/// Writes Dovecot's account files (with the probe mailbox) and creates every mailbox's home.
pub fn write_accounts(
    cfg: &MailConfig,
    layout: &Layout,
    o: &Owners,
    secrets: &Secrets,
) -> Result<(), SetupError> {
    let _lock = accounts::lock(layout).map_err(|e| other("accounts", e))?;
    let recs = accounts::read_accounts(layout).map_err(|e| other("accounts", e))?;
    let probe_hash = probe_hash(layout, &secrets.probe_password)?;
    accounts::write_dovecot_files(
        layout,
        cfg,
        &recs,
        Some(&probe_hash),
        Some(o.gid("dovecot")),
    )
    .map_err(|e| other("accounts", e))?;
    for m in accounts::mailboxes(cfg) {
        accounts::ensure_home(layout, &m).map_err(|e| other(format!("home of {m}"), e))?;
    }
    Ok(())
}

/// Renders and writes every configuration, SpamAssassin's plugin list, and the compiled Sieve
/// script.
pub fn write_configs(
    cfg: &MailConfig,
    layout: &Layout,
    config_path: &Path,
    p: &Prepared,
) -> Result<(), SetupError> {
    let inputs = render::Inputs {
        cfg,
        layout,
        config_path,
        secrets: &p.secrets,
        tls_cert: p.tls.0.clone(),
        tls_key: p.tls.1.clone(),
        clamav_db: p.clamav_db.clone(),
        dkim_keys: p.dkim_keys.clone(),
    };
    let files = render::render(&inputs).map_err(|e| other("rendering", e))?;
    let o = &p.owners;
    let gid_of = |g: Group| match g {
        Group::Root => 0,
        Group::Dovecot => o.gid("dovecot"),
        Group::Spamd => o.gid("debian-spamd"),
    };
    render::write(layout, &files, &gid_of).map_err(|e| other("writing configuration", e))?;
    // SpamAssassin loads its plugins from *.pre files in the site configuration directory,
    // which spamd --siteconfigpath replaces: take the package's.
    if let Ok(rd) = std::fs::read_dir("/etc/spamassassin") {
        for e in rd.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "pre") {
                let to = layout.spamassassin_conf().join(e.file_name());
                std::fs::copy(&path, &to).map_err(|e| other(s(&to), e))?;
            }
        }
    }
    let sieve = layout.conf_file("dovecot/spam-to-junk.sieve");
    run(Command::new("sievec").arg(&sieve))?;
    Ok(())
}

/// Everything before the supervisor starts: returns what the daemons need.
pub fn prepare(
    cfg: &MailConfig,
    layout: &Layout,
    config_path: &Path,
) -> Result<Prepared, SetupError> {
    let owners = check_installed()?;
    make_tree(layout, &owners)?;
    fix_owners(layout, &owners)?;
    prepare_run(layout, &owners)?;
    let prepared = Prepared {
        secrets: secrets(layout)?,
        tls: tls(cfg, layout)?,
        clamav_db: clamav_db(cfg, layout, &owners)?,
        dkim_keys: dkim_keys(cfg, layout, &owners)?,
        owners,
    };
    write_accounts(cfg, layout, &prepared.owners, &prepared.secrets)?;
    write_configs(cfg, layout, config_path, &prepared)?;
    // Postfix creates its queue directories and checks its configuration.
    run(Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(layout.postfix_conf())
        .arg("check"))?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_re_own_with_swapped_ids_resumes_correctly() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            return; // chown needs root; CI runs as root
        }
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let q = layout.state().join("q");
        std::fs::create_dir_all(&q).unwrap();
        let owned = |name: &str, id: u32| {
            let p = q.join(name);
            std::fs::write(&p, name).unwrap();
            chown(&p, id, id).unwrap();
            p
        };
        let ids = |postfix: u32, clamav: u32| Owners {
            users: [("postfix".into(), postfix), ("clamav".into(), clamav)].into(),
            groups: [("postfix".into(), postfix), ("clamav".into(), clamav)].into(),
        };
        // The other node gave postfix and clamav each other's ids.
        let (queue_file, database) = (owned("queue", 4100), owned("db", 4101));
        store::write(
            &layout.owners_file(),
            owners::OWNERS_MAGIC,
            1,
            &ids(4100, 4101),
            0o644,
        )
        .unwrap();
        let here = ids(4101, 4100);
        fix_owners_until(&layout, &here, true).unwrap(); // the start dies halfway
        fix_owners(&layout, &here).unwrap(); // the next start
        let md = |p: &std::path::Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(
            md(&queue_file),
            (4101, 4101),
            "postfix's file has postfix's id here"
        );
        assert_eq!(
            md(&database),
            (4100, 4100),
            "clamav's file has clamav's id here"
        );
        assert!(!layout.state().join("owners-remap.json").exists());
        assert_eq!(fix_owners(&layout, &here).unwrap(), 0, "nothing left to do");
    }

    #[test]
    fn san_output_is_parsed() {
        let out = "X509v3 Subject Alternative Name: \n    DNS:mail.example.com, DNS:example.com\n";
        assert_eq!(parse_san(out), vec!["mail.example.com", "example.com"]);
        assert!(parse_san("").is_empty());
    }

    #[test]
    fn the_generated_certificate_follows_the_hostname() {
        if !nix::unistd::Uid::effective().is_root() {
            return; // chown needs root; CI runs as root
        }
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let text = |host: &str| {
            format!("hostname = \"{host}\"\ndomains = [\"example.com\"]\nlisten = \"10.0.0.5\"\n")
        };
        let cfg = crate::config::parse(&text("mail.example.com")).unwrap();
        let (cert, _) = tls(&cfg, &layout).unwrap();
        assert_eq!(
            generated_names(&cert).unwrap(),
            vec!["mail.example.com", "example.com"]
        );
        let first = std::fs::read(&cert).unwrap();
        tls(&cfg, &layout).unwrap();
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            first,
            "kept while the names hold"
        );
        let cfg = crate::config::parse(&text("mx.example.com")).unwrap();
        tls(&cfg, &layout).unwrap();
        assert_eq!(
            generated_names(&cert).unwrap(),
            vec!["mx.example.com", "example.com"],
            "regenerated for the new hostname"
        );
    }
}

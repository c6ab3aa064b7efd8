//! The administrator's commands on accounts (`account add|passwd|lock|unlock|expire|list`)
//! and `status`. They edit the state under the accounts lock, then bring the running daemons
//! up to date: Dovecot re-reads its passwd-files by itself, the policy service re-reads
//! `mail.toml` when it changes, and Postfix gets its maps re-rendered and a reload.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::accounts::{self, AccountError, AccountRecord};
use crate::config::{self, MailConfig};
use crate::layout::Layout;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a password: the first line of `file`, or a prompt without echo (twice) on a
/// terminal, or the first line of standard input. Never from the command line.
pub fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)?;
        return Ok(text.lines().next().unwrap_or("").to_owned());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let a = prompt_noecho("New password: ")?;
        let b = prompt_noecho("Again: ")?;
        if a != b {
            anyhow::bail!("the two passwords differ");
        }
        return Ok(a);
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn prompt_noecho(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut t = saved.clone();
    t.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    tcsetattr(&stdin, SetArg::TCSANOW, &t)?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Brings Dovecot's files and, if the suite runs, Postfix's maps up to date.
pub fn refresh(cfg: &MailConfig, layout: &Layout, config_path: &Path) -> anyhow::Result<()> {
    let owners = crate::setup::check_installed()?;
    let secrets = crate::setup::secrets(layout)?;
    crate::setup::write_accounts(cfg, layout, &owners, &secrets)?;
    if crate::supervisor::running_pid(layout).is_some() {
        let prepared = crate::setup::Prepared {
            tls: crate::setup::tls(cfg, layout)?,
            clamav_db: crate::setup::clamav_db(cfg, layout, &owners)?,
            dkim_keys: crate::setup::dkim_keys(cfg, layout, &owners)?,
            secrets,
            owners,
        };
        crate::setup::write_configs(cfg, layout, config_path, &prepared)?;
        let out = std::process::Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(layout.postfix_conf())
            .arg("reload")
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "postfix reload failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// `account add`: declares the account in `mail.toml` and sets its password.
pub fn add(
    config_path: &Path,
    layout: &Layout,
    address: &str,
    class: &str,
    password: &str,
) -> anyhow::Result<()> {
    let address = address.to_ascii_lowercase();
    let cfg = config::load(config_path)?;
    if cfg.account(&address).is_some() {
        return Err(AccountError::Refused(format!("{address} already exists")).into());
    }
    accounts::check_password(&cfg, class, password)?;
    let text = std::fs::read_to_string(config_path)?;
    let new_text = accounts::add_to_config_text(&text, &address, class)?;
    let hash = accounts::hash_password(password);
    {
        let _lock = accounts::lock(layout)?;
        let mut recs = accounts::read_accounts(layout)?;
        recs.accounts.insert(
            address.clone(),
            AccountRecord {
                hash,
                password_changed: now_s(),
                locked: false,
            },
        );
        accounts::write_accounts(layout, &recs)?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config_path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        crate::store::write_atomic(config_path, new_text.as_bytes(), mode)?;
    }
    let cfg = config::load(config_path)?;
    refresh(&cfg, layout, config_path)
}

/// `account passwd`: a new password (checked against the class's rules).
pub fn passwd(
    config_path: &Path,
    layout: &Layout,
    address: &str,
    password: &str,
) -> anyhow::Result<()> {
    let address = address.to_ascii_lowercase();
    let cfg = config::load(config_path)?;
    let entry = cfg.account(&address).ok_or_else(|| {
        AccountError::Refused(format!(
            "{address} is not an account of {}",
            config_path.display()
        ))
    })?;
    accounts::check_password(&cfg, &entry.class, password)?;
    let hash = accounts::hash_password(password);
    {
        let _lock = accounts::lock(layout)?;
        let mut recs = accounts::read_accounts(layout)?;
        let locked = recs.accounts.get(&address).is_some_and(|r| r.locked);
        recs.accounts.insert(
            address,
            AccountRecord {
                hash,
                password_changed: now_s(),
                locked,
            },
        );
        accounts::write_accounts(layout, &recs)?;
    }
    refresh(&cfg, layout, config_path)
}

/// What `set_flag` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Lock the account.
    Lock,
    /// Unlock it, and lift a failed-login lockout.
    Unlock,
    /// Mark the password expired (the user must get a new one).
    Expire,
}

/// `account lock|unlock|expire`.
pub fn set_flag(
    config_path: &Path,
    layout: &Layout,
    address: &str,
    flag: Flag,
) -> anyhow::Result<()> {
    let address = address.to_ascii_lowercase();
    let cfg = config::load(config_path)?;
    if cfg.account(&address).is_none() {
        return Err(AccountError::Refused(format!(
            "{address} is not an account of {}",
            config_path.display()
        ))
        .into());
    }
    let _lock = accounts::lock(layout)?;
    let mut recs = accounts::read_accounts(layout)?;
    match flag {
        Flag::Unlock => {
            if let Some(r) = recs.accounts.get_mut(&address) {
                r.locked = false;
            }
            let mut book = accounts::read_lockouts(layout)?;
            if book.unlock(&address) {
                accounts::write_lockouts(layout, &book)?;
            }
        }
        Flag::Lock | Flag::Expire => {
            let r = recs.accounts.get_mut(&address).ok_or_else(|| {
                AccountError::Refused(format!("{address} has no password yet (account passwd)"))
            })?;
            if flag == Flag::Lock {
                r.locked = true;
            } else {
                r.password_changed = 0;
            }
        }
    }
    accounts::write_accounts(layout, &recs)?;
    Ok(())
}

/// `account list`.
pub fn list(config_path: &Path, layout: &Layout) -> anyhow::Result<Vec<accounts::AccountStatus>> {
    let cfg = config::load(config_path)?;
    let _lock = accounts::lock(layout)?;
    let recs = accounts::read_accounts(layout)?;
    let book = accounts::read_lockouts(layout)?;
    Ok(accounts::list(&cfg, &recs, &book, now_s()))
}

/// Formats `account list` for people.
pub fn list_text(rows: &[accounts::AccountStatus], now: u64) -> String {
    let mut s = format!(
        "{:<32} {:<10} {:<10} {}\n",
        "ADDRESS", "CLASS", "PASSWORD", "STATE"
    );
    for r in rows {
        let pw = match (r.has_password, r.expired) {
            (false, _) => "unset".to_owned(),
            (true, true) => "expired".to_owned(),
            (true, false) => match r.password_expires {
                Some(t) => format!("{}d left", t.saturating_sub(now).div_ceil(86_400)),
                None => "set".to_owned(),
            },
        };
        let mut state = Vec::new();
        if r.locked {
            state.push("locked by admin".to_owned());
        }
        if let Some(u) = r.locked_until {
            state.push(format!("locked out for {}s", u.saturating_sub(now)));
        } else if r.failures > 0 {
            state.push(format!("{} failed logins", r.failures));
        }
        if state.is_empty() {
            state.push("active".into());
        }
        s.push_str(&format!(
            "{:<32} {:<10} {:<10} {}\n",
            r.address,
            r.class,
            pw,
            state.join(", ")
        ));
    }
    s
}

/// The configuration path given, or `DIRECTORY/mail.toml`.
pub fn config_path(config: Option<PathBuf>, layout: &Layout) -> PathBuf {
    config.unwrap_or_else(|| layout.default_config())
}

/// Current time, for formatting.
pub fn now() -> u64 {
    now_s()
}

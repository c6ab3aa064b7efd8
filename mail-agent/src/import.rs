//! `import`: copies every mailbox of an account on an existing IMAP server into a local
//! account, the step the thesis left "pending". Dovecot's own `dsync` does the copying,
//! reading the old server through its `imapc` storage (`doveadm sync -1 -R ... imapc:`): a
//! one-way pull that never deletes local mail and so is resumable: run it again after an
//! interruption, or later to pick up what arrived meanwhile, and only what is missing is
//! copied. A progress bar follows the local message count against the remote total.
//!
//! Messages are matched by a hash of their `Date` and `Message-ID` headers, which dsync
//! computes on both sides whenever the remote side has no GUIDs. We deliberately do not ask
//! imapc to invent GUIDs from the headers (`imapc_features = guid-forced`): those GUIDs live
//! only in the local `dovecot-uidlist`, which Maildir writes *after* moving a committed batch
//! of messages from `tmp/` into `new/`. An import killed between the two (a crash, a
//! failover, a `kill -9`) left up to a whole batch (100 messages) in `new/` with GUIDs taken
//! from their file names; the resumed run saw them as local mail, matched nothing, and copied
//! the batch again (300 messages became 400). Header hashes are recomputed from the files
//! themselves, so a resumed run recognises those messages whatever moment the first run died.
//!
//! One run at a time per account: `doveadm sync -l` takes Dovecot's per-user dsync lock, and
//! the `doveadm` child gets SIGTERM (a clean stop at its next safe point) if this command
//! dies, so an interrupted import leaves nothing importing behind the operator's back.
//!
//! The remote password never appears on a command line: it goes into a 0600 configuration
//! file that includes the running instance's and is removed afterwards.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::layout::{Layout, s};

/// How the old server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tls {
    /// IMAP over TLS (port 993).
    Imaps,
    /// STARTTLS on the plain port (143).
    Starttls,
    /// No TLS (only on a trusted network).
    None,
}

/// One account to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Local address.
    pub local: String,
    /// Login on the old server.
    pub remote_user: String,
    /// Its password.
    pub password: String,
}

/// The old server.
#[derive(Debug, Clone)]
pub struct Source {
    /// Host name or address.
    pub host: String,
    /// Port (default by TLS mode).
    pub port: Option<u16>,
    /// TLS mode.
    pub tls: Tls,
    /// Accept any certificate.
    pub insecure: bool,
}

/// Parses a batch file: one `LOCAL REMOTE_USER PASSWORD` per line; `#` comments. Pure.
pub fn parse_batch(text: &str) -> Result<Vec<Job>, String> {
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(l), Some(r), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "line {}: expected LOCAL REMOTE_USER PASSWORD",
                i + 1
            ));
        };
        v.push(Job {
            local: l.to_ascii_lowercase(),
            remote_user: r.to_owned(),
            password: p.trim().to_owned(),
        });
    }
    Ok(v)
}

/// The override configuration for one job (0600, removed after the run). Pure.
pub fn imapc_conf(main_conf: &Path, src: &Source, job: &Job) -> String {
    let (ssl, default_port) = match src.tls {
        Tls::Imaps => ("imaps", 993),
        Tls::Starttls => ("starttls", 143),
        Tls::None => ("no", 143),
    };
    let q = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    format!(
        "!include {}\nimapc_host = {}\nimapc_port = {}\nimapc_ssl = {ssl}\nimapc_ssl_verify = {}\nimapc_user = {}\nimapc_password = {}\nimapc_features = rfc822.size fetch-headers\nmail_prefetch_count = 20\n",
        s(main_conf),
        src.host,
        src.port.unwrap_or(default_port),
        if src.insecure { "no" } else { "yes" },
        q(&job.remote_user),
        q(&job.password),
    )
}

/// How long a run waits for Dovecot's dsync lock of the account (held by another import of
/// the same account, or by the `doveadm` of an interrupted one finishing its stop) before
/// giving up with an error; the operator runs the command again.
pub const SYNC_LOCK_WAIT_S: u32 = 60;

/// How many times `doveadm sync` runs when it exits 2 ("done without errors, but the
/// mailboxes changed meanwhile: run again", doveadm-sync(1)). At the bound the import fails
/// with dsync's message, and running it again resumes.
pub const MAX_SYNC_RUNS: u32 = 3;

/// doveadm-sync(1)'s exit status for "synchronised without errors, not perfectly: run again".
const DSYNC_EXIT_RUN_AGAIN: i32 = 2;

fn doveadm(conf: &Path) -> Command {
    let mut c = Command::new("/usr/bin/doveadm");
    c.arg("-c").arg(conf);
    c
}

/// Total messages in every mailbox of `user` (`doveadm mailbox status -t messages '*'`).
fn count(conf: &Path, user: &str, imapc: bool) -> anyhow::Result<u64> {
    let mut c = doveadm(conf);
    if imapc {
        c.args(["-o", "mail_location=imapc:"]);
    }
    let out = c
        .args(["mailbox", "status", "-u", user, "-t", "messages", "*"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "counting {}messages of {user} failed: {}",
            if imapc { "remote " } else { "" },
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    text.trim()
        .strip_prefix("messages=")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected doveadm output {text:?}"))
}

/// Removes override files (they hold a password) left by imports that were killed.
fn remove_stale_confs(layout: &Layout) {
    let Ok(rd) = std::fs::read_dir(layout.run()) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("import-")
            .and_then(|r| r.strip_suffix(".conf"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Imports one job; returns (remote total, local messages added by this run).
pub fn import_one(
    layout: &Layout,
    src: &Source,
    job: &Job,
    show_bar: bool,
) -> anyhow::Result<(u64, u64)> {
    let main_conf = layout.dovecot_conf();
    if !main_conf.exists() {
        anyhow::bail!(
            "{} does not exist: start the mail resource first",
            main_conf.display()
        );
    }
    remove_stale_confs(layout);
    let tmp: PathBuf = layout.run_file(&format!("import-{}.conf", std::process::id()));
    crate::store::write_atomic(&tmp, imapc_conf(&main_conf, src, job).as_bytes(), 0o600)?;
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _guard = Remove(tmp.clone());

    let total = count(&tmp, &job.local, true)?;
    let before = count(&main_conf, &job.local, false)?;
    let bar = if show_bar {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} messages ({eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix(job.local.clone());
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let mut runs = 0;
    let (status, err) = loop {
        runs += 1;
        let (status, err) = sync_once(&tmp, &main_conf, &job.local, before, total, bar.as_ref())?;
        if status.code() != Some(DSYNC_EXIT_RUN_AGAIN) || runs >= MAX_SYNC_RUNS {
            break (status, err);
        }
    };
    let after = count(&main_conf, &job.local, false)?;
    if let Some(b) = &bar {
        b.set_position(after.saturating_sub(before).min(total));
        b.finish();
    }
    if !status.success() {
        anyhow::bail!(
            "doveadm sync for {} failed ({status}, {runs} run{}) after {:?}: {}",
            job.local,
            if runs == 1 { "" } else { "s" },
            started.elapsed(),
            err.trim()
        );
    }
    Ok((total, after.saturating_sub(before)))
}

/// One `doveadm sync` run; returns its status and what it wrote on stderr.
fn sync_once(
    conf: &Path,
    main_conf: &Path,
    local: &str,
    before: u64,
    total: u64,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let mut cmd = doveadm(conf);
    cmd.args([
        "sync",
        "-1",
        "-R",
        "-l",
        &SYNC_LOCK_WAIT_S.to_string(),
        "-u",
        local,
        "imapc:",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe and uses nothing allocated after the fork.
    // doveadm stops cleanly on SIGTERM; without this, killing the import left it running,
    // and the operator's resumed run raced it.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    // stderr is read on a thread: a chatty dsync must not fill the pipe and stall.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut err = String::new();
            let _ = e.read_to_string(&mut err);
            err
        })
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(b) = bar
            && let Ok(now) = count(main_conf, local, false)
        {
            b.set_position(now.saturating_sub(before).min(total));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok((status, err))
}

/// Imports every job; prints a line per account.
pub fn run(
    layout: &Layout,
    cfg: &crate::config::MailConfig,
    src: &Source,
    jobs: &[Job],
) -> anyhow::Result<()> {
    for j in jobs {
        if cfg.account(&j.local).is_none() {
            anyhow::bail!(
                "{} is not an account of mail.toml: add it first (tandem-mail account add)",
                j.local
            );
        }
    }
    let tty = std::io::stderr().is_terminal();
    let mut failed = 0;
    for j in jobs {
        match import_one(layout, src, j, tty) {
            Ok((total, added)) => println!(
                "{}: {added} messages copied ({total} on the old server)",
                j.local
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", j.local);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} accounts failed; run the same command again to resume",
            jobs.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines() {
        let jobs = parse_batch(
            "# old server\nAlice@example.com alice s3cr3t with space\n\nbob@example.com bob pw\n",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0],
            Job {
                local: "alice@example.com".into(),
                remote_user: "alice".into(),
                password: "s3cr3t with space".into()
            }
        );
        assert!(
            parse_batch("only-two fields\n")
                .unwrap_err()
                .contains("line 1")
        );
    }

    #[test]
    fn conf_quotes_credentials_and_picks_ports() {
        let src = Source {
            host: "old.example.com".into(),
            port: None,
            tls: Tls::Imaps,
            insecure: false,
        };
        let job = Job {
            local: "a@example.com".into(),
            remote_user: "a".into(),
            password: "p\"w\\".into(),
        };
        let c = imapc_conf(
            Path::new("/srv/mail/run/conf/dovecot/dovecot.conf"),
            &src,
            &job,
        );
        assert!(c.starts_with("!include /srv/mail/run/conf/dovecot/dovecot.conf\n"));
        assert!(c.contains("imapc_port = 993\nimapc_ssl = imaps\nimapc_ssl_verify = yes\n"));
        // Header hashes, not imapc's invented GUIDs: see the module's documentation.
        assert!(
            c.contains("imapc_features = rfc822.size fetch-headers\n"),
            "{c}"
        );
        assert!(c.contains("imapc_password = \"p\\\"w\\\\\"\n"), "{c}");
        let src = Source {
            tls: Tls::None,
            port: Some(1143),
            insecure: true,
            ..src
        };
        let c = imapc_conf(Path::new("/x"), &src, &job);
        assert!(c.contains("imapc_port = 1143\nimapc_ssl = no\nimapc_ssl_verify = no\n"));
    }
}

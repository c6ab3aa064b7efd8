//! `ocf:tandem:mail`: the resource agent, on the shared `ocf` library.
//!
//! - `start`: validate, prepare the directory (ownership, keys, rendered configs), launch the
//!   supervisor detached in its own session, and wait until every daemon answers.
//! - `stop`: SIGTERM the supervisor (it stops the daemons in reverse order), wait, then kill
//!   whatever is left — the supervisor, the daemons' process groups, and any process still
//!   holding the directory — so nothing keeps the mount busy.
//! - `monitor`: depth 0 the supervisor and every daemon alive; depth 10 each protocol
//!   answers (SMTP banner and EHLO with STARTTLS and without AUTH before TLS, IMAP and POP3
//!   greetings, LMTP, clamd and spamd PING, every milter negotiates, the policy service);
//!   depth 20 a probe message delivered over LMTP and read back over IMAP, and OpenDKIM
//!   really signing a message (it silently sends unsigned mail when it cannot load a key).
//!
//! A probe on a node where the directory is not mounted finds no configuration: that is "not
//! running", never a configuration error (which would ban the resource everywhere), so deep
//! configuration checks run only for `start` and `validate-all`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ocf::{Action, ActionDef, Agent, Context, Metadata, OcfError, OcfResult, ParamDef, Status};

use crate::config::{self, ConfigError, MailConfig};
use crate::layout::Layout;
use crate::setup::SetupError;
use crate::supervisor::{self, Phase, State};

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "directory",
        "Directory holding all state (the replicated mount)",
        "The mount point of the replicated filesystem. Queues, mailboxes, accounts, lockouts, keys, Bayes data, rendered configurations, sockets and logs all live under it, so the node that mounts it next carries on.",
    )
    .required()
    .unique(),
    ParamDef::string(
        "config",
        "The declarative configuration file",
        "Path of mail.toml (domains, listen address, accounts, policy). Default: DIRECTORY/mail.toml.",
    ),
];

const ACTIONS: &[ActionDef] = &[
    ActionDef::new(Action::Start, 300),
    ActionDef::new(Action::Stop, 120),
    ActionDef::monitor(30, 30),
    ActionDef::monitor(60, 120).depth(10),
    ActionDef::monitor(90, 600).depth(20),
    ActionDef::new(Action::MetaData, 5),
    ActionDef::new(Action::ValidateAll, 30),
];

const META: Metadata = Metadata {
    name: "mail",
    version: "1.0",
    shortdesc: "Postfix, Dovecot, SpamAssassin, ClamAV and OpenDKIM with all state on one directory",
    longdesc: "Runs a complete mail server (Debian's Postfix, Dovecot, SpamAssassin, ClamAV and OpenDKIM) rendered from one declarative file, with every byte of state under the given directory so that it fails over with the replicated filesystem. Replaces Zimbra and its ocf:btactic:zimbra agent.",
    params: PARAMS,
    actions: ACTIONS,
};

/// Margin kept before the manager's timeout: the agent reports its own error rather than
/// being killed.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Timeout of one protocol check in `monitor`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent.
#[derive(Debug, Default)]
pub struct MailAgent;

/// The directory and configuration path from the parameters.
pub fn paths(ctx: &Context) -> (Layout, PathBuf) {
    let dir = PathBuf::from(ctx.params.required_str("directory"));
    let cfg = match ctx.params.str("config") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => dir.join("mail.toml"),
    };
    (Layout::new(dir), cfg)
}

fn config_err(e: ConfigError) -> OcfError {
    OcfError::configured(format!("configuration: {e}"))
}

fn setup_err(e: SetupError) -> OcfError {
    match e {
        SetupError::NotInstalled { .. } => OcfError::new(Status::ErrInstalled, e.to_string()),
        SetupError::Config(c) => config_err(c),
        SetupError::Other(m) => OcfError::generic(m),
    }
}

/// Loads and validates everything `start` needs, mapping errors to OCF codes.
pub fn load(layout: &Layout, config_path: &Path) -> Result<MailConfig, OcfError> {
    config::check_directory(&layout.root)
        .map_err(|e| OcfError::bad_param("directory", &layout.root.to_string_lossy(), e))?;
    let cfg = config::load(config_path).map_err(config_err)?;
    crate::setup::check_installed().map_err(setup_err)?;
    crate::setup::check_directory_use(&cfg, layout).map_err(setup_err)?;
    Ok(cfg)
}

impl Agent for MailAgent {
    fn metadata(&self) -> &Metadata {
        &META
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let (layout, cfg_path) = paths(ctx);
        config::check_directory(&layout.root)
            .map_err(|e| OcfError::bad_param("directory", &layout.root.to_string_lossy(), e))?;
        if matches!(ctx.action, Action::Start | Action::ValidateAll) {
            if !layout.root.is_dir() {
                return Err(OcfError::configured(format!(
                    "directory {} does not exist (is the filesystem mounted?)",
                    layout.root.display()
                )));
            }
            load(&layout, &cfg_path)?;
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> OcfResult {
        let (layout, cfg_path) = paths(ctx);
        if depth0(&layout).is_ok_and(|s| s == Status::Success) {
            ocf::info!("already running");
            return Ok(Status::Success);
        }
        // Leftovers of a crashed supervisor would hold sockets and ports.
        cleanup(
            &layout,
            ctx.remaining()
                .saturating_sub(TIMEOUT_MARGIN)
                .min(Duration::from_secs(30)),
        )?;
        let cfg = load(&layout, &cfg_path)?;
        crate::setup::prepare(&cfg, &layout, &cfg_path).map_err(setup_err)?;
        let exe = Path::new(crate::procs::SELF_EXE);
        let mut child = spawn_supervisor(exe, &layout, &cfg_path)?;
        // What is left of the manager's timeout is split: waiting for the daemons, then, if
        // they did not all answer, stopping what was started — both before the manager kills
        // the agent.
        let (wait, stop_budget) = start_budget(ctx.remaining());
        let deadline = Instant::now() + wait;
        let mut last = String::new();
        loop {
            if let Some(st) = supervisor::read_status(&layout) {
                if st.phase == Phase::Running {
                    ocf::info!("every daemon answers");
                    return Ok(Status::Success);
                }
                if let Some(f) = st.daemons.iter().find(|d| d.state == State::Failed) {
                    let why = format!("{} failed: {}", f.name, f.message);
                    let _ = stop_within(&layout, stop_budget);
                    return Err(OcfError::generic(format!(
                        "{why} (see {})",
                        layout.log(&f.name).display()
                    )));
                }
                last = supervisor::not_ready(&st)
                    .into_iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            if let Ok(Some(status)) = child.try_wait() {
                let _ = cleanup(&layout, stop_budget);
                return Err(OcfError::generic(format!(
                    "the supervisor exited ({status}; see {})",
                    layout.log("supervisor").display()
                )));
            }
            if Instant::now() >= deadline {
                let _ = stop_within(&layout, stop_budget);
                return Err(OcfError::generic(format!(
                    "not every daemon answered in time: {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&self, ctx: &Context) -> OcfResult {
        let (layout, _) = paths(ctx);
        stop_within(&layout, ctx.remaining().saturating_sub(TIMEOUT_MARGIN))
    }

    fn monitor(&self, ctx: &Context) -> OcfResult {
        let (layout, cfg_path) = paths(ctx);
        let st = depth0(&layout)?;
        if st != Status::Success || ctx.env.check_level.depth() < 10 {
            return Ok(st);
        }
        let cfg = config::load(&cfg_path).map_err(|e| {
            OcfError::generic(format!(
                "running, but the configuration cannot be read: {e}"
            ))
        })?;
        depth10(&cfg, &layout)?;
        if ctx.env.check_level.depth() >= 20 {
            depth20(&cfg, &layout)?;
        }
        Ok(Status::Success)
    }
}

/// The most a failed start spends stopping what it started (the manager's stop that follows
/// has its own budget).
pub const STOP_AFTER_FAILED_START: Duration = Duration::from_secs(20);

/// The most `stop` keeps for its final clean-up (SIGKILL to whatever is left).
pub const CLEANUP_MAX: Duration = Duration::from_secs(8);

/// How a start spends `remaining` (the manager's timeout less what preparing took): waiting for
/// the daemons, then stopping them if they did not all answer; together they leave
/// [`TIMEOUT_MARGIN`] before the manager's deadline. Pure.
pub fn start_budget(remaining: Duration) -> (Duration, Duration) {
    let usable = remaining.saturating_sub(TIMEOUT_MARGIN);
    let stop = STOP_AFTER_FAILED_START.min(usable / 4);
    (usable - stop, stop)
}

/// How a stop spends `budget`: waiting for the supervisor's graceful stop, then the clean-up.
/// Pure.
pub fn stop_split(budget: Duration) -> (Duration, Duration) {
    let cleanup = CLEANUP_MAX.min(budget / 2);
    (budget - cleanup, cleanup)
}

/// Stops the supervisor gracefully within `budget` (less the final clean-up's time), then kills
/// whatever is left.
pub fn stop_within(layout: &Layout, budget: Duration) -> OcfResult {
    let (wait, cleanup_time) = stop_split(budget);
    if let Some(pid) = supervisor::find(layout) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid_i32(pid)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + wait;
        while supervisor::is_supervisor(pid, layout) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if supervisor::is_supervisor(pid, layout) {
            ocf::warn!("the supervisor did not stop within {wait:?}; killing what is left");
        }
    }
    cleanup(layout, cleanup_time)?;
    Ok(Status::Success)
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// Starts the supervisor in its own session. The agent exits soon after; dropping the handle
/// neither waits for nor kills the supervisor (init, or the manager's subreaper, reaps it).
fn spawn_supervisor(
    exe: &Path,
    layout: &Layout,
    cfg_path: &Path,
) -> Result<std::process::Child, OcfError> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log("supervisor"))
        .map_err(|e| OcfError::generic(format!("supervisor log: {e}")))?;
    let err = log
        .try_clone()
        .map_err(|e| OcfError::generic(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.arg0(crate::procs::self_name())
        .arg("supervise")
        .arg("--config")
        .arg(cfg_path)
        .arg("--directory")
        .arg(&layout.root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe; the supervisor leaves the agent's session so the
    // manager's killing of a timed-out agent's group does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| OcfError::generic(format!("cannot start the supervisor: {e}")))
}

/// Kills whatever is left: the supervisor, the daemons' groups, and holders of the directory.
pub fn cleanup(layout: &Layout, timeout: Duration) -> Result<(), OcfError> {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = supervisor::find(layout) {
        let _ = kill(Pid::from_raw(pid_i32(pid)), Signal::SIGKILL);
    }
    if let Some(st) = supervisor::read_status(layout) {
        for d in &st.daemons {
            if let Some(p) = d.pid {
                let _ = killpg(Pid::from_raw(pid_i32(p)), Signal::SIGKILL);
            }
        }
    }
    // Also when the directory is gone (unmounted under the running suite): the suite's
    // processes are found by their command lines, which name it.
    let left = crate::procs::kill_holders(&layout.root, &[], timeout);
    if !left.is_empty() {
        return Err(OcfError::generic(format!(
            "processes still hold {}: {left:?}",
            layout.root.display()
        )));
    }
    let _ = std::fs::remove_file(layout.supervisor_pid());
    let _ = std::fs::remove_file(layout.supervisor_status());
    Ok(())
}

/// Depth 0: the supervisor and every daemon alive.
///
/// The directory must still be the one the suite runs on, and writable: a filesystem that
/// turned read-only after an I/O error (ext4 `errors=remount-ro`), or a mount that vanished
/// under the running daemons, is a failure — never "not running" while daemons still run.
pub fn depth0(layout: &Layout) -> OcfResult {
    let Some(pid) = supervisor::find(layout) else {
        let orphans = crate::procs::holders(&layout.root, &[]);
        if !orphans.is_empty() {
            return Err(OcfError::generic(format!(
                "daemons run without their supervisor (pids {orphans:?})"
            )));
        }
        return Ok(Status::NotRunning);
    };
    if supervisor::running_pid(layout) != Some(pid) {
        return Err(OcfError::generic(format!(
            "the supervisor (pid {pid}) runs but {} no longer holds its files: the filesystem was unmounted or replaced under the running suite",
            layout.root.display()
        )));
    }
    check_writable(layout)?;
    let st = supervisor::read_status(layout)
        .ok_or_else(|| OcfError::generic("the supervisor runs but has no status file"))?;
    if st.phase != Phase::Running {
        return Err(OcfError::generic(format!(
            "the supervisor is {:?}",
            st.phase
        )));
    }
    let mut bad = Vec::new();
    for d in &st.daemons {
        match d.state {
            State::Ready => {
                let alive = d.pid.is_some_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid_i32(p)), None).is_ok()
                });
                if !alive {
                    bad.push(format!("{} is not running", d.name));
                }
            }
            // Restarting after a crash: the supervisor handles it, within its limits.
            State::Starting | State::Backoff => ocf::warn!(
                "{} is restarting ({} restarts): {}",
                d.name,
                d.restarts,
                d.message
            ),
            _ => bad.push(format!("{} {:?}: {}", d.name, d.state, d.message)),
        }
    }
    if bad.is_empty() {
        Ok(Status::Success)
    } else {
        Err(OcfError::generic(bad.join("; ")))
    }
}

/// The directory takes writes: a file is created in `run/` and removed (nothing is synced).
pub fn check_writable(layout: &Layout) -> Result<(), OcfError> {
    let probe = layout.run_file(&format!(".monitor-{}", std::process::id()));
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|f| {
            drop(f);
            std::fs::remove_file(&probe)
        });
    r.map_err(|e| {
        let _ = std::fs::remove_file(&probe);
        OcfError::generic(format!(
            "{} is not writable ({e}): the filesystem may have turned read-only after an I/O error",
            layout.root.display()
        ))
    })
}

fn check(what: &str, r: Result<(), impl std::fmt::Display>) -> Result<(), OcfError> {
    r.map_err(|e| OcfError::generic(format!("{what}: {e}")))
}

/// Depth 10: every protocol answers.
pub fn depth10(cfg: &MailConfig, layout: &Layout) -> Result<(), OcfError> {
    let t = CHECK_TIMEOUT;
    for port in [cfg.ports.smtp, cfg.ports.submission]
        .into_iter()
        .filter(|&p| p != 0)
    {
        let offer = crate::probe::smtp_ehlo(SocketAddr::new(cfg.listen, port), t)
            .map_err(|e| OcfError::generic(e.to_string()))?;
        if !offer.starttls {
            return Err(OcfError::generic(format!(
                "SMTP port {port} does not offer STARTTLS"
            )));
        }
        if offer.auth {
            return Err(OcfError::generic(format!(
                "SMTP port {port} offers AUTH before TLS"
            )));
        }
    }
    check(
        "IMAP",
        crate::probe::imap_greeting(SocketAddr::new(cfg.listen, cfg.ports.imap), t).map(|_| ()),
    )?;
    if cfg.ports.pop3 != 0 {
        let mut c =
            crate::probe::Conn::tcp(SocketAddr::new(cfg.listen, cfg.ports.pop3), None, t, "POP3")
                .map_err(|e| OcfError::generic(e.to_string()))?;
        let g = c.line().map_err(|e| OcfError::generic(e.to_string()))?;
        if !g.starts_with("+OK") {
            return Err(OcfError::generic(format!("POP3 greeting {g:?}")));
        }
        let _ = c.send(b"QUIT\r\n");
    }
    check(
        "LMTP",
        crate::probe::lmtp_greeting(&layout.lmtp_socket(), t).map(|_| ()),
    )?;
    check("clamd", crate::probe::clamd_ping(&layout.clamd_socket(), t))?;
    check("spamd", crate::probe::spamd_ping(&layout.spamd_socket(), t))?;
    for (name, sock) in [
        ("attachment filter", layout.attachment_filter_socket()),
        ("clamav-milter", layout.clamav_milter_socket()),
        ("spamass-milter", layout.spamass_milter_socket()),
        ("opendkim", layout.opendkim_socket()),
    ] {
        check(name, crate::probe::milter_optneg(&sock, t, name))?;
    }
    let (status, body) = crate::probe::http_get(cfg.policy.listen, "/health", t)
        .map_err(|e| OcfError::generic(e.to_string()))?;
    if status != 200 {
        return Err(OcfError::generic(format!(
            "policy service answered {status} {body}"
        )));
    }
    Ok(())
}

/// Depth 20: a message through LMTP read back over IMAP; OpenDKIM signs.
pub fn depth20(cfg: &MailConfig, layout: &Layout) -> Result<(), OcfError> {
    let t = CHECK_TIMEOUT;
    let token = crate::setup::random_hex(8);
    let probe = crate::accounts::probe_address(cfg);
    let msgid = format!("<{token}@tandem-monitor.invalid>");
    let date = httpdate();
    let message = format!(
        "From: <{probe}>\r\nTo: <{probe}>\r\nSubject: tandem-mail monitor probe {token}\r\nDate: {date}\r\nMessage-ID: {msgid}\r\n\r\nProbe message of the depth-20 monitor.\r\n"
    );
    check(
        "LMTP probe delivery",
        crate::probe::lmtp_deliver(&layout.lmtp_socket(), &probe, &message, t),
    )?;
    let secrets = crate::setup::secrets(layout).map_err(setup_err)?;
    let imap_addr = SocketAddr::new(cfg.listen, cfg.ports.imap);
    let read_back = || -> Result<(), crate::probe::ProbeError> {
        let mut imap = crate::probe::Imap::connect(imap_addr, Some(cfg.listen), t)?;
        imap.login(&probe, &secrets.probe_password)?;
        imap.cmd("SELECT INBOX")?;
        let found = crate::probe::search_results(&imap.cmd(&format!(
            "UID SEARCH HEADER Message-ID {}",
            crate::probe::imap_quote(&msgid)
        ))?);
        let Some(uid) = found.first() else {
            return Err(crate::probe::ProbeError {
                what: "IMAP read-back".into(),
                why: format!("probe {msgid} not found"),
            });
        };
        let fetched = imap.cmd(&format!(
            "UID FETCH {uid} BODY.PEEK[HEADER.FIELDS (SUBJECT)]"
        ))?;
        if !fetched.contains(&token) {
            return Err(crate::probe::ProbeError {
                what: "IMAP read-back".into(),
                why: "the fetched probe is not the one delivered".into(),
            });
        }
        // Remove every probe (also those a failed earlier monitor left).
        imap.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        imap.cmd("EXPUNGE")?;
        imap.logout();
        Ok(())
    };
    check("IMAP read-back", read_back())?;
    dkim_signs(cfg, layout, &token)
}

/// OpenDKIM adds a DKIM-Signature for our first domain to a message from it.
pub fn dkim_signs(cfg: &MailConfig, layout: &Layout, token: &str) -> Result<(), OcfError> {
    let domain = &cfg.domains[0];
    let from = format!("{}@{domain}", crate::accounts::PROBE_LOCAL);
    let mut s = crate::milter::Session::connect(&layout.opendkim_socket(), CHECK_TIMEOUT)
        .map_err(|e| OcfError::generic(format!("opendkim: {e}")))?;
    let msg = crate::milter::Message {
        mta_name: &cfg.hostname,
        client_addr: "127.0.0.1",
        helo: &cfg.hostname,
        from: &from,
        rcpt: &from,
        queue_id: token,
        headers: vec![
            ("From", format!("<{from}>")),
            ("To", format!("<{from}>")),
            ("Subject", format!("tandem-mail DKIM probe {token}")),
            ("Date", httpdate()),
            (
                "Message-ID",
                format!("<{token}.dkim@tandem-monitor.invalid>"),
            ),
        ],
        body: "DKIM probe.\r\n",
    };
    let v = s
        .send_message(&msg)
        .map_err(|e| OcfError::generic(format!("opendkim: {e}")))?;
    s.quit();
    let signed = v.added_headers.iter().any(|(n, val)| {
        n.eq_ignore_ascii_case("DKIM-Signature") && val.contains(&format!("d={domain}"))
    });
    if !signed {
        return Err(OcfError::generic(format!(
            "opendkim did not sign a message from {domain} (reply {:?}): check the key under {}",
            v.last,
            layout.dkim_dir(domain).display()
        )));
    }
    Ok(())
}

/// The current time as an RFC 5322 date (UTC).
pub fn httpdate() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc5322_date(secs)
}

/// `secs` since the epoch as `Thu, 01 Jan 1970 00:00:00 +0000`. Pure.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = DAYS[usize::try_from(days % 7).unwrap_or(0)];
    let mon = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_lists_params_and_depths() {
        let x = META.to_xml();
        assert!(
            x.contains("<parameter name=\"directory\" unique=\"1\" required=\"1\">")
                || x.contains("name=\"directory\""),
            "{x}"
        );
        assert!(x.contains("name=\"config\""));
        assert!(x.contains("depth=\"20\""));
    }

    #[test]
    fn a_start_and_the_stop_after_it_fail_fit_in_the_timeout() {
        for secs in [0u64, 1, 5, 6, 10, 20, 30, 60, 120, 300, 3600] {
            let remaining = Duration::from_secs(secs);
            let (wait, stop) = start_budget(remaining);
            let (stop_wait, cleanup) = stop_split(stop);
            assert!(
                wait + stop_wait + cleanup + TIMEOUT_MARGIN <= remaining.max(TIMEOUT_MARGIN),
                "{secs}s: wait {wait:?} + stop {stop_wait:?} + cleanup {cleanup:?}"
            );
            assert!(stop <= STOP_AFTER_FAILED_START && cleanup <= CLEANUP_MAX);
        }
        // The thesis's timeouts: 300 s for start leaves the daemons 275 s and the stop 20 s.
        assert_eq!(
            start_budget(Duration::from_secs(300)),
            (Duration::from_secs(275), Duration::from_secs(20))
        );
        assert_eq!(
            stop_split(Duration::from_secs(20)),
            (Duration::from_secs(12), Duration::from_secs(8))
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }
}

//! The supervisor: one small process per running resource that starts the daemons in
//! dependency order, keeps them running, and stops them in reverse order. OCF actions are
//! short-lived; this process is what stays.
//!
//! One loop owns all state: it waits on a signalfd (SIGCHLD, SIGTERM, SIGINT) with a short
//! timeout, reaps exited children, starts daemons whose dependencies answer, checks the
//! readiness of those starting, restarts crashed ones with back-off, and writes its status to
//! `run/supervisor.json` whenever it changes. A daemon that crashes more than
//! [`MAX_RESTARTS`] times within [`RESTART_WINDOW`] is left `failed`: the monitor then reports
//! an error and the cluster recovers the resource (restart or failover), rather than this
//! process hiding a flapping service forever.
//!
//! Each daemon state, and the edges between them:
//!
//! ```text
//!   Waiting ──deps ready──▶ Starting ──answers──▶ Ready
//!                              │ ▲                  │
//!                exit/timeout  ▼ │ back-off over    │ exit
//!                            Backoff ◀──────────────┘
//!                              │ too many restarts
//!                              ▼
//!                            Failed
//!   (any) ──stop──▶ Stopping ──exit──▶ Stopped
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::config::MailConfig;
use crate::daemons::Spec;
use crate::layout::Layout;

/// Crashes tolerated within [`RESTART_WINDOW`] before a daemon is left failed.
pub const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(600);
/// First restart delay; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM before SIGKILL (its spec may give less).
pub const STOP_GRACE: Duration = Duration::from_secs(20);
/// The loop's longest sleep.
pub const TICK: Duration = Duration::from_millis(200);
/// Timeout of one readiness probe (the loop blocks on it).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A log above this size is copied to `NAME.log.1` and truncated (checked every minute).
pub const LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A daemon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its dependencies.
    Waiting,
    /// Started, not answering yet.
    Starting,
    /// Answering.
    Ready,
    /// Exited; will be restarted.
    Backoff,
    /// Exited too often; left down.
    Failed,
    /// Being stopped.
    Stopping,
    /// Stopped.
    Stopped,
}

impl State {
    /// Whether `self → next` is an edge of the diagram above.
    pub fn can_go_to(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Waiting, Starting)
                | (Waiting, Backoff)
                | (Waiting, Failed)
                | (Starting, Ready)
                | (Starting, Backoff)
                | (Ready, Backoff)
                | (Backoff, Starting)
                | (Backoff, Failed)
                | (Starting, Failed)
                | (Ready, Failed)
                | (_, Stopping)
                | (Stopping, Stopped)
        )
    }
}

/// The restart decision after an exit at `now`, given earlier exits (pruned to the window and
/// appended to). Pure: `Some(delay)` to restart after `delay`, `None` to give up.
pub fn after_exit(exits: &mut Vec<Instant>, now: Instant) -> Option<Duration> {
    exits.retain(|&t| now.duration_since(t) < RESTART_WINDOW);
    exits.push(now);
    if exits.len() > MAX_RESTARTS {
        return None;
    }
    let shift = u32::try_from(exits.len() - 1).unwrap_or(u32::MAX).min(5);
    Some((BACKOFF_START * 2u32.pow(shift)).min(BACKOFF_MAX))
}

/// One daemon in the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Name.
    pub name: String,
    /// State.
    pub state: State,
    /// Its pid (also its process group), while it runs.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// The last exit or probe failure.
    pub message: String,
}

/// The supervisor's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Starting daemons.
    Starting,
    /// Every daemon answered once; running.
    Running,
    /// Stopping.
    Stopping,
}

/// `run/supervisor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor's pid.
    pub pid: u32,
    /// Phase.
    pub phase: Phase,
    /// Daemons in start order.
    pub daemons: Vec<DaemonStatus>,
}

/// Magic of the status file.
pub const STATUS_MAGIC: &str = "tandem-mail/supervisor";

/// Reads the status file.
pub fn read_status(layout: &Layout) -> Option<Status> {
    crate::store::read(&layout.supervisor_status(), STATUS_MAGIC, 1)
        .ok()
        .flatten()
}

struct Daemon {
    spec: Spec,
    state: State,
    pid: Option<Pid>,
    /// When the current state began; in `Backoff`, when the restart is due.
    since: Instant,
    exits: Vec<Instant>,
    restarts: u32,
    message: String,
    log: PathBuf,
}

impl Daemon {
    fn go(&mut self, next: State, now: Instant) {
        assert!(
            self.state.can_go_to(next),
            "{}: no edge {:?} → {:?}",
            self.spec.name,
            self.state,
            next
        );
        self.state = next;
        self.since = now;
    }
}

/// Opens a log for appending (0640, root).
fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn spawn(spec: &Spec, log: &Path) -> std::io::Result<Pid> {
    use std::os::unix::process::CommandExt;
    let out = open_log(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&spec.argv[0]);
    if spec.argv[0] == crate::procs::SELF_EXE {
        cmd.arg0(crate::procs::self_name());
    }
    cmd.args(&spec.argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir("/");
    if !spec.own_session {
        cmd.process_group(0);
    }
    let umask = spec.umask;
    let run_as = spec.run_as.clone();
    let groups: Vec<nix::unistd::Gid> = run_as
        .iter()
        .flat_map(|r| r.groups.iter().map(|&g| nix::unistd::Gid::from_raw(g)))
        .collect();
    // SAFETY: only async-signal-safe calls (sigprocmask, umask, setgroups, setgid, setuid)
    // between fork and exec; everything they use was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)?;
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
            if let Some(r) = &run_as {
                nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(r.gid))
                    .map_err(std::io::Error::from)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(r.uid))
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Reaped by the loop's waitpid(-1); the Child handle is not waited on.
    Ok(Pid::from_raw(
        i32::try_from(child.id()).expect("pid fits i32"),
    ))
}

fn stamp(msg: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("[{t}] supervisor: {msg}")
}

/// Runs the supervisor until SIGTERM/SIGINT; returns when every daemon has stopped.
pub fn run(cfg: &MailConfig, layout: &Layout, config_path: &Path) -> anyhow::Result<()> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;

    let owners = crate::owners::Owners::current()
        .map_err(|(w, p)| anyhow::anyhow!("{w} missing (package {p})"))?;
    let exe = std::path::PathBuf::from(crate::procs::SELF_EXE);
    let specs = crate::daemons::specs(cfg, layout, config_path, &exe, &owners);
    let now = Instant::now();
    let mut daemons: Vec<Daemon> = specs
        .into_iter()
        .map(|spec| Daemon {
            log: layout.log(spec.name),
            spec,
            state: State::Waiting,
            pid: None,
            since: now,
            exits: Vec::new(),
            restarts: 0,
            message: String::new(),
        })
        .collect();
    let me = std::process::id();
    crate::store::write_atomic(
        &layout.supervisor_pid(),
        format!("{me}\n").as_bytes(),
        0o644,
    )?;
    let mut phase = Phase::Starting;
    let mut last_status: Option<Status> = None;
    let mut status_error = false;
    let mut trainer: Option<Pid> = None;
    let mut next_training = Instant::now() + cfg.spam.train_interval.as_duration();
    let mut next_log_check = Instant::now() + Duration::from_secs(60);
    crate::note!(
        "{}",
        stamp(&format!("started (pid {me}) for {}", layout.root.display()))
    );

    loop {
        // 1. Signals.
        let mut stop = false;
        while let Ok(Some(si)) = sfd.read_signal() {
            let signo = i32::try_from(si.ssi_signo).unwrap_or(0);
            if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                stop = true;
            }
        }
        let now = Instant::now();
        // 2. Reap.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    let (pid, how) = match ws {
                        WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}")),
                        WaitStatus::Signaled(pid, sig, _) => (pid, format!("killed by {sig}")),
                        _ => unreachable!("matched above"),
                    };
                    if trainer == Some(pid) {
                        trainer = None;
                        continue;
                    }
                    if let Some(d) = daemons.iter_mut().find(|d| d.pid == Some(pid)) {
                        // Kill what the daemon left in its group (e.g. workers).
                        let _ = killpg(pid, Signal::SIGKILL);
                        d.pid = None;
                        d.message = format!("exited ({how})");
                        crate::note!("{}", stamp(&format!("{} {}", d.spec.name, d.message)));
                        if matches!(d.state, State::Starting | State::Ready) {
                            match after_exit(&mut d.exits, now) {
                                Some(delay) => {
                                    d.go(State::Backoff, now + delay);
                                }
                                None => {
                                    d.message = format!(
                                        "{}; gave up after {MAX_RESTARTS} restarts within {}s",
                                        d.message,
                                        RESTART_WINDOW.as_secs()
                                    );
                                    d.go(State::Failed, now);
                                }
                            }
                        }
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        if stop {
            break;
        }
        // 3. Start, check, restart.
        let ready: Vec<&'static str> = daemons
            .iter()
            .filter(|d| d.state == State::Ready)
            .map(|d| d.spec.name)
            .collect();
        for d in daemons.iter_mut() {
            match d.state {
                State::Waiting if d.spec.deps.iter().all(|x| ready.contains(x)) => {
                    start_one(d, now)
                }
                State::Backoff if now >= d.since => {
                    d.restarts += 1;
                    start_one(d, now);
                }
                State::Starting => match d.spec.ready.check(d.spec.name, PROBE_TIMEOUT) {
                    Ok(()) => {
                        d.message.clear();
                        crate::note!("{}", stamp(&format!("{} is ready", d.spec.name)));
                        d.go(State::Ready, now);
                    }
                    Err(e) if now.duration_since(d.since) > d.spec.start_timeout => {
                        d.message = format!(
                            "did not answer within {}s: {e}",
                            d.spec.start_timeout.as_secs()
                        );
                        crate::note!("{}", stamp(&format!("{} {}", d.spec.name, d.message)));
                        if let Some(pid) = d.pid {
                            let _ = killpg(pid, Signal::SIGKILL);
                        }
                        // The reap above moves it on when it exits.
                    }
                    Err(e) => d.message = e.to_string(),
                },
                _ => {}
            }
        }
        if phase == Phase::Starting && daemons.iter().all(|d| d.state == State::Ready) {
            phase = Phase::Running;
            crate::note!("{}", stamp("every daemon answers"));
        }
        // 4. Periodic work: Bayes training, log size.
        if now >= next_training && trainer.is_none() && phase == Phase::Running {
            next_training = now + cfg.spam.train_interval.as_duration();
            trainer = spawn_trainer(&exe, layout, config_path).ok();
        }
        if now >= next_log_check {
            next_log_check = now + Duration::from_secs(60);
            rotate_logs(layout);
        }
        // 5. Status. A failed write (the mount turned read-only, or is gone) is not a reason
        // to die and orphan the daemons: it is retried at the next tick, and the monitor,
        // which checks that the directory is writable, reports the failure.
        let status = status_of(me, phase, &daemons);
        if last_status.as_ref() != Some(&status) {
            match crate::store::write(&layout.supervisor_status(), STATUS_MAGIC, 1, &status, 0o644)
            {
                Ok(()) => {
                    last_status = Some(status);
                    status_error = false;
                }
                Err(e) => {
                    if !status_error {
                        crate::note!("{}", stamp(&format!("cannot write the status: {e}")));
                    }
                    status_error = true;
                }
            }
        }
        // 6. Sleep until a signal or the tick.
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&sfd),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(TICK).unwrap_or(nix::poll::PollTimeout::NONE),
        );
    }

    // Stop, in reverse order.
    crate::note!("{}", stamp("stopping"));
    let now = Instant::now();
    for d in daemons.iter_mut() {
        d.go(State::Stopping, now);
    }
    let status = status_of(me, Phase::Stopping, &daemons);
    let _ = crate::store::write(&layout.supervisor_status(), STATUS_MAGIC, 1, &status, 0o644);
    if let Some(t) = trainer.take() {
        let _ = killpg(t, Signal::SIGKILL);
        let _ = waitpid(t, None);
    }
    // Postfix first (it stops taking mail and finishes its deliveries), then the rest together,
    // each within its own grace.
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..daemons.len())
        .rev()
        .partition(|&i| daemons[i].spec.name == "postfix");
    for group in [first, rest] {
        let pids: Vec<(Pid, Duration)> = group
            .iter()
            .filter_map(|&i| daemons[i].pid.map(|p| (p, daemons[i].spec.stop_grace)))
            .collect();
        for (pid, how) in stop_all(&pids) {
            if let Some(d) = daemons.iter().find(|d| d.pid == Some(pid)) {
                crate::note!("{}", stamp(&format!("{} stopped ({how})", d.spec.name)));
            }
        }
        for &i in &group {
            daemons[i].pid = None;
            daemons[i].go(State::Stopped, Instant::now());
        }
    }
    let _ = std::fs::remove_file(layout.supervisor_pid());
    let _ = std::fs::remove_file(layout.supervisor_status());
    crate::note!("{}", stamp("stopped"));
    Ok(())
}

fn start_one(d: &mut Daemon, now: Instant) {
    match spawn(&d.spec, &d.log) {
        Ok(pid) => {
            crate::note!("{}", stamp(&format!("{} started (pid {pid})", d.spec.name)));
            d.pid = Some(pid);
            d.go(State::Starting, now);
        }
        Err(e) => {
            d.message = format!("cannot start {}: {e}", d.spec.argv[0]);
            crate::note!("{}", stamp(&d.message));
            match after_exit(&mut d.exits, now) {
                Some(delay) => d.go(State::Backoff, now + delay),
                None => d.go(State::Failed, now),
            }
        }
    }
}

/// SIGTERM to each group, wait for each up to its grace, then SIGKILL it; reaps. Says how each
/// ended.
pub fn stop_all(pids: &[(Pid, Duration)]) -> Vec<(Pid, &'static str)> {
    for &(pid, _) in pids {
        let _ = killpg(pid, Signal::SIGTERM);
    }
    let start = Instant::now();
    let mut left: Vec<(Pid, Duration)> = pids.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let now = Instant::now();
        left.retain(
            |&(pid, grace)| match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if now.duration_since(start) < grace => true,
                Ok(WaitStatus::StillAlive) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    out.push((pid, "killed after the grace period"));
                    false
                }
                Ok(_) | Err(_) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    out.push((pid, "exited after SIGTERM"));
                    false
                }
            },
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

fn spawn_trainer(exe: &Path, layout: &Layout, config_path: &Path) -> std::io::Result<Pid> {
    let spec = Spec {
        name: "train",
        argv: vec![
            exe.to_string_lossy().into_owned(),
            "train".into(),
            "--config".into(),
            config_path.to_string_lossy().into_owned(),
            "--directory".into(),
            layout.root.to_string_lossy().into_owned(),
        ],
        run_as: None,
        umask: 0o077,
        own_session: false,
        deps: &[],
        ready: crate::daemons::Ready::Smtp("127.0.0.1:1".parse().expect("literal")),
        start_timeout: Duration::ZERO,
        stop_grace: STOP_GRACE,
    };
    spawn(&spec, &layout.log("train"))
}

fn rotate_logs(layout: &Layout) {
    let Ok(rd) = std::fs::read_dir(layout.log_dir()) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log")
            && e.metadata().is_ok_and(|m| m.len() > LOG_MAX_BYTES)
        {
            let mut old = p.clone().into_os_string();
            old.push(".1");
            // Copy then truncate: the daemons keep their O_APPEND descriptors.
            if std::fs::copy(&p, &old).is_ok()
                && let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p)
            {
                let _ = f.set_len(0);
            }
        }
    }
}

fn status_of(pid: u32, phase: Phase, daemons: &[Daemon]) -> Status {
    Status {
        pid,
        phase,
        daemons: daemons
            .iter()
            .map(|d| DaemonStatus {
                name: d.spec.name.to_owned(),
                state: d.state,
                pid: d.pid.and_then(|p| u32::try_from(p.as_raw()).ok()),
                restarts: d.restarts,
                message: d.message.clone(),
            })
            .collect(),
    }
}

/// Whether `pid` is a live supervisor for `layout` (guards against pid reuse: the command line
/// must be ours and name the directory).
pub fn is_supervisor(pid: u32, layout: &Layout) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let dir = layout.root.to_string_lossy();
    args.iter().any(|a| a == "supervise")
        && args.iter().any(|a| *a == *dir)
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The live supervisor of `layout`, from its pid file or, when that cannot be read (the
/// directory was unmounted or replaced under it), by its command line among all processes.
pub fn find(layout: &Layout) -> Option<u32> {
    running_pid(layout).or_else(|| {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| pid != std::process::id() && is_supervisor(pid, layout))
    })
}

/// The live supervisor's pid, if any.
pub fn running_pid(layout: &Layout) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(layout.supervisor_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_supervisor(pid, layout).then_some(pid)
}

/// Names of daemons not ready, with why.
pub fn not_ready(status: &Status) -> BTreeMap<String, String> {
    status
        .daemons
        .iter()
        .filter(|d| d.state != State::Ready)
        .map(|d| {
            (
                d.name.clone(),
                format!(
                    "{:?}{}",
                    d.state,
                    if d.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", d.message)
                    }
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_then_gives_up() {
        let t0 = Instant::now();
        let mut exits = Vec::new();
        let delays: Vec<Option<Duration>> = (0..6)
            .map(|i| after_exit(&mut exits, t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                Some(Duration::from_secs(16)),
                None
            ]
        );
    }

    #[test]
    fn exits_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut exits = Vec::new();
        for i in 0..5 {
            after_exit(&mut exits, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            after_exit(&mut exits, t0 + RESTART_WINDOW + Duration::from_secs(10)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_daemon_ignoring_sigterm_is_killed_after_its_own_grace() {
        use std::os::unix::process::CommandExt;
        // Reaped by stop_all's waitpid, as the supervisor reaps its daemons.
        #[allow(clippy::zombie_processes)]
        let spawn = |script: &str| {
            let c = Command::new("sh")
                .args(["-c", script])
                .process_group(0)
                .spawn()
                .unwrap();
            Pid::from_raw(i32::try_from(c.id()).unwrap())
        };
        let stubborn = spawn("trap '' TERM; while :; do sleep 0.05; done");
        let polite = spawn("exec sleep 30");
        std::thread::sleep(Duration::from_millis(200)); // the trap is set
        let mut out = stop_all(&[
            (stubborn, Duration::from_millis(300)),
            (polite, Duration::from_secs(30)),
        ]);
        out.sort();
        let mut want = vec![
            (stubborn, "killed after the grace period"),
            (polite, "exited after SIGTERM"),
        ];
        want.sort();
        assert_eq!(out, want);
        assert!(nix::sys::signal::kill(stubborn, None).is_err(), "reaped");
    }

    #[test]
    fn state_edges() {
        use State::*;
        assert!(Waiting.can_go_to(Starting));
        assert!(!Waiting.can_go_to(Ready));
        assert!(!Failed.can_go_to(Starting));
        assert!(Failed.can_go_to(Stopping));
        assert!(!Stopped.can_go_to(Starting));
        assert!(Ready.can_go_to(Stopping) && Stopping.can_go_to(Stopped));
    }
}

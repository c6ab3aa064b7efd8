//! The daemons of the suite: how each is run in the foreground, as which user, what it
//! waits for, and how the supervisor knows it is ready (it answers its protocol).
//!
//! Start order follows the dependencies (a daemon starts once those it needs answer); stop
//! order is the reverse of [`Spec`] order, so Postfix stops taking mail first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::MailConfig;
use crate::layout::{Layout, s};
use crate::owners::Owners;
use crate::probe::{self, ProbeError};

/// How readiness is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// `GET /health` answers 200.
    Http(SocketAddr),
    /// The IMAP greeting on the address and the LMTP greeting on the socket.
    Dovecot {
        /// IMAP address.
        imap: SocketAddr,
        /// LMTP socket.
        lmtp: PathBuf,
    },
    /// clamd's PING.
    Clamd(PathBuf),
    /// spamd's PING.
    Spamd(PathBuf),
    /// Milter option negotiation.
    Milter(PathBuf),
    /// The SMTP banner.
    Smtp(SocketAddr),
}

impl Ready {
    /// Runs the check.
    pub fn check(&self, name: &str, timeout: Duration) -> Result<(), ProbeError> {
        match self {
            Ready::Http(a) => {
                let (status, body) = probe::http_get(*a, "/health", timeout)?;
                if status != 200 {
                    return Err(ProbeError {
                        what: name.into(),
                        why: format!("health answered {status} {body}"),
                    });
                }
                Ok(())
            }
            Ready::Dovecot { imap, lmtp } => {
                probe::imap_greeting(*imap, timeout)?;
                probe::lmtp_greeting(lmtp, timeout).map(|_| ())
            }
            Ready::Clamd(p) => probe::clamd_ping(p, timeout),
            Ready::Spamd(p) => probe::spamd_ping(p, timeout),
            Ready::Milter(p) => probe::milter_optneg(p, timeout, name),
            Ready::Smtp(a) => probe::smtp_banner(*a, timeout).map(|_| ()),
        }
    }
}

/// Credentials a daemon is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group (the group of the sockets it creates).
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// One daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Short name (also its log file's name).
    pub name: &'static str,
    /// Program and arguments; it stays in the foreground.
    pub argv: Vec<String>,
    /// Run as this user (for daemons that do not drop privileges themselves).
    pub run_as: Option<RunAs>,
    /// The umask it starts with.
    pub umask: u32,
    /// It makes its own session (`setsid`), so it must not be made a process group leader
    /// first (setsid fails for a group leader). Its group is its pid either way.
    pub own_session: bool,
    /// Daemons that must answer before this one starts.
    pub deps: &'static [&'static str],
    /// The readiness check.
    pub ready: Ready,
    /// How long it may take to become ready (ClamAV loading a full database takes a while).
    pub start_timeout: Duration,
    /// How long it gets to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

/// The stop grace of libmilter's milters (clamav-milter, spamass-milter, OpenDKIM): libmilter
/// looks at its stop flag only every 5 s, and they hold no state — once Postfix has stopped
/// (it stops first) they have no session left, so waiting for them only delays a failover.
pub const MILTER_STOP_GRACE: Duration = Duration::from_secs(1);

/// spamass-milter's reject threshold: it takes whole points, so the kill score is rounded up
/// (75 % → 15).
pub fn spamass_reject_points(cfg: &MailConfig) -> u32 {
    cfg.spam.kill_tenths().div_ceil(10)
}

/// The suite, in start order.
pub fn specs(
    cfg: &MailConfig,
    layout: &Layout,
    config_path: &Path,
    exe: &Path,
    o: &Owners,
) -> Vec<Spec> {
    let listen = cfg.listen;
    let secs = Duration::from_secs;
    vec![
        Spec {
            name: "policy",
            argv: vec![
                s(exe),
                "policy-server".into(),
                "--config".into(),
                s(config_path),
                "--directory".into(),
                s(&layout.root),
            ],
            run_as: None,
            umask: 0o077,
            own_session: false,
            deps: &[],
            ready: Ready::Http(cfg.policy.listen),
            start_timeout: secs(30),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
        Spec {
            name: "dovecot",
            argv: vec![
                "/usr/sbin/dovecot".into(),
                "-F".into(),
                "-c".into(),
                s(&layout.dovecot_conf()),
            ],
            run_as: None,
            umask: 0o022,
            own_session: false,
            deps: &["policy"],
            ready: Ready::Dovecot {
                imap: SocketAddr::new(listen, cfg.ports.imap),
                lmtp: layout.lmtp_socket(),
            },
            start_timeout: secs(60),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
        Spec {
            name: "clamd",
            argv: vec![
                "/usr/sbin/clamd".into(),
                "--foreground".into(),
                format!(
                    "--config-file={}",
                    s(&layout.conf_file("clamav/clamd.conf"))
                ),
            ],
            run_as: None,
            umask: 0o022,
            own_session: false,
            deps: &[],
            ready: Ready::Clamd(layout.clamd_socket()),
            start_timeout: secs(300),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
        Spec {
            name: "spamd",
            argv: vec![
                "/usr/sbin/spamd".into(),
                format!("--socketpath={}", s(&layout.spamd_socket())),
                "--socketowner=debian-spamd".into(),
                "--socketgroup=spamass-milter".into(),
                "--socketmode=0660".into(),
                "--username=debian-spamd".into(),
                "--groupname=debian-spamd".into(),
                "--nouser-config".into(),
                format!("--siteconfigpath={}", s(&layout.spamassassin_conf())),
                format!("--helper-home-dir={}", s(&layout.bayes_dir())),
                format!("--pidfile={}", s(&layout.spamd_dir().join("spamd.pid"))),
                "--min-children=1".into(),
                "--max-children=4".into(),
                "--syslog=stderr".into(),
            ],
            run_as: None,
            umask: 0o022,
            own_session: false,
            deps: &[],
            ready: Ready::Spamd(layout.spamd_socket()),
            start_timeout: secs(120),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
        Spec {
            name: "clamav-milter",
            argv: vec![
                "/usr/sbin/clamav-milter".into(),
                format!(
                    "--config-file={}",
                    s(&layout.conf_file("clamav/clamav-milter.conf"))
                ),
            ],
            run_as: None,
            umask: 0o007,
            own_session: false,
            deps: &["clamd"],
            ready: Ready::Milter(layout.clamav_milter_socket()),
            start_timeout: secs(60),
            stop_grace: MILTER_STOP_GRACE,
        },
        Spec {
            name: "spamass-milter",
            argv: vec![
                "/usr/sbin/spamass-milter".into(),
                "-p".into(),
                s(&layout.spamass_milter_socket()),
                "-m".into(),
                "-r".into(),
                spamass_reject_points(cfg).to_string(),
                "-R".into(),
                format!(
                    "Message refused as spam (score {} or more)",
                    spamass_reject_points(cfg)
                ),
                "--".into(),
                "-U".into(),
                s(&layout.spamd_socket()),
            ],
            // Its socket must be Postfix's (primary group postfix); spamd's socket is group
            // spamass-milter (supplementary).
            run_as: Some(RunAs {
                uid: o.uid("spamass-milter"),
                gid: o.gid("postfix"),
                groups: vec![o.gid("spamass-milter")],
            }),
            umask: 0o007,
            own_session: false,
            deps: &["spamd"],
            ready: Ready::Milter(layout.spamass_milter_socket()),
            start_timeout: secs(60),
            stop_grace: MILTER_STOP_GRACE,
        },
        Spec {
            name: "attachments",
            argv: vec![
                s(exe),
                "attachment-filter".into(),
                "--config".into(),
                s(config_path),
                "--directory".into(),
                s(&layout.root),
            ],
            // Binds its socket as root, then drops to Postfix's user itself.
            run_as: None,
            umask: 0o077,
            own_session: false,
            deps: &[],
            ready: Ready::Milter(layout.attachment_filter_socket()),
            start_timeout: secs(30),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
        Spec {
            name: "opendkim",
            argv: vec![
                "/usr/sbin/opendkim".into(),
                "-f".into(),
                "-x".into(),
                s(&layout.conf_file("opendkim/opendkim.conf")),
            ],
            run_as: None,
            umask: 0o007,
            own_session: false,
            deps: &[],
            ready: Ready::Milter(layout.opendkim_socket()),
            start_timeout: secs(60),
            stop_grace: MILTER_STOP_GRACE,
        },
        Spec {
            name: "postfix",
            argv: vec![
                "/usr/lib/postfix/sbin/master".into(),
                "-c".into(),
                s(&layout.postfix_conf()),
                "-s".into(),
            ],
            run_as: None,
            umask: 0o022,
            own_session: true,
            deps: &[
                "dovecot",
                "attachments",
                "clamav-milter",
                "spamass-milter",
                "opendkim",
            ],
            ready: Ready::Smtp(SocketAddr::new(listen, cfg.ports.smtp)),
            start_timeout: secs(60),
            stop_grace: crate::supervisor::STOP_GRACE,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_earlier_in_the_list() {
        let cfg = crate::config::parse(
            "hostname = \"m.example.com\"\ndomains = [\"example.com\"]\nlisten = \"10.1.1.1\"\n",
        )
        .unwrap();
        let o = Owners {
            users: crate::owners::USERS
                .iter()
                .map(|(u, _)| ((*u).to_owned(), 100))
                .collect(),
            groups: crate::owners::GROUPS
                .iter()
                .map(|(g, _)| ((*g).to_owned(), 100))
                .collect(),
        };
        let v = specs(
            &cfg,
            &Layout::new("/srv/m"),
            Path::new("/srv/m/mail.toml"),
            Path::new("/usr/bin/tandem-mail"),
            &o,
        );
        for (i, sp) in v.iter().enumerate() {
            for d in sp.deps {
                let j = v
                    .iter()
                    .position(|x| x.name == *d)
                    .expect("dependency exists");
                assert!(j < i, "{} depends on later {d}", sp.name);
            }
        }
        assert_eq!(spamass_reject_points(&cfg), 15);
        for sp in &v {
            let libmilter = ["clamav-milter", "spamass-milter", "opendkim"].contains(&sp.name);
            assert_eq!(
                sp.stop_grace,
                if libmilter {
                    MILTER_STOP_GRACE
                } else {
                    crate::supervisor::STOP_GRACE
                },
                "{}",
                sp.name
            );
        }
        assert_eq!(v.last().unwrap().name, "postfix");
    }
}

//! Where everything lives under `directory`, the replicated mount. Nothing the suite writes
//! goes anywhere else, so the node that mounts the directory next carries on:
//!
//! ```text
//! DIRECTORY/
//!   mail.toml                 the declarative file (default location)
//!   run/                      recreated at every start: rendered configs, sockets, pid files
//!     conf/{postfix,dovecot,spamassassin}/, clamd.conf, clamav-milter.conf, opendkim.conf
//!     supervisor.pid, supervisor.json, *.sock, dovecot/ (Dovecot's base_dir)
//!   state/                    kept: the data that must survive a failover
//!     postfix/spool           queue_directory (queued mail)
//!     postfix/data            data_directory
//!     dovecot/                Dovecot's state_dir
//!     accounts/               accounts.json, lockout.json, dovecot passwd/users files
//!     spamassassin/           Bayes database
//!     clamav/                 signature databases (unless configured elsewhere)
//!     dkim/DOMAIN/            DKIM keys
//!     tls/                    certificate and key (generated when not configured)
//!     secrets/                policy API key and hash nonce, probe password
//!     owners.json             the user/group ids the files were last owned by
//!   mail/DOMAIN/LOCAL/Maildir delivered mail
//!   log/                      one log per daemon
//! ```

use std::path::{Path, PathBuf};

/// Paths under one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory itself.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Default location of the declarative file.
    pub fn default_config(&self) -> PathBuf {
        self.p("mail.toml")
    }
    /// Run directory (recreated at start).
    pub fn run(&self) -> PathBuf {
        self.p("run")
    }
    /// Rendered configurations.
    pub fn conf(&self) -> PathBuf {
        self.p("run/conf")
    }
    /// Postfix's `config_directory`.
    pub fn postfix_conf(&self) -> PathBuf {
        self.p("run/conf/postfix")
    }
    /// Dovecot's configuration file.
    pub fn dovecot_conf(&self) -> PathBuf {
        self.p("run/conf/dovecot/dovecot.conf")
    }
    /// Dovecot's `base_dir`.
    pub fn dovecot_base(&self) -> PathBuf {
        self.p("run/dovecot")
    }
    /// SpamAssassin's site configuration directory.
    pub fn spamassassin_conf(&self) -> PathBuf {
        self.p("run/conf/spamassassin")
    }
    /// A file under `run/conf`.
    pub fn conf_file(&self, name: &str) -> PathBuf {
        self.conf().join(name)
    }
    /// A socket or pid file under `run/`.
    pub fn run_file(&self, name: &str) -> PathBuf {
        self.run().join(name)
    }
    /// The supervisor's pid file.
    pub fn supervisor_pid(&self) -> PathBuf {
        self.run_file("supervisor.pid")
    }
    /// The supervisor's status file.
    pub fn supervisor_status(&self) -> PathBuf {
        self.run_file("supervisor.json")
    }
    /// Dovecot's LMTP socket (Postfix delivers here).
    pub fn lmtp_socket(&self) -> PathBuf {
        self.run_file("lmtp.sock")
    }
    /// Dovecot's SASL socket for Postfix.
    pub fn sasl_socket(&self) -> PathBuf {
        self.run_file("sasl.sock")
    }
    /// clamd's run directory (owned by clamav).
    pub fn clamd_dir(&self) -> PathBuf {
        self.p("run/clamd")
    }
    /// clamd's socket.
    pub fn clamd_socket(&self) -> PathBuf {
        self.p("run/clamd/clamd.sock")
    }
    /// spamd's run directory.
    pub fn spamd_dir(&self) -> PathBuf {
        self.p("run/spamd")
    }
    /// spamd's socket.
    pub fn spamd_socket(&self) -> PathBuf {
        self.p("run/spamd/spamd.sock")
    }
    /// The run directory of milter `name` (`clamav`, `spamass`, `opendkim`), owned by the
    /// milter's user and group postfix, so Postfix can reach the socket inside.
    pub fn milter_dir(&self, name: &str) -> PathBuf {
        self.p("run/milter").join(name)
    }
    /// clamav-milter's socket.
    pub fn clamav_milter_socket(&self) -> PathBuf {
        self.p("run/milter/clamav/milter.sock")
    }
    /// spamass-milter's socket.
    pub fn spamass_milter_socket(&self) -> PathBuf {
        self.p("run/milter/spamass/milter.sock")
    }
    /// OpenDKIM's socket.
    pub fn opendkim_socket(&self) -> PathBuf {
        self.p("run/milter/opendkim/milter.sock")
    }
    /// The attachment filter's socket (`tandem-mail attachment-filter`).
    pub fn attachment_filter_socket(&self) -> PathBuf {
        self.p("run/milter/tandem/milter.sock")
    }

    /// Kept state.
    pub fn state(&self) -> PathBuf {
        self.p("state")
    }
    /// Postfix's queue directory.
    pub fn postfix_queue(&self) -> PathBuf {
        self.p("state/postfix/spool")
    }
    /// Postfix's data directory.
    pub fn postfix_data(&self) -> PathBuf {
        self.p("state/postfix/data")
    }
    /// Dovecot's state directory.
    pub fn dovecot_state(&self) -> PathBuf {
        self.p("state/dovecot")
    }
    /// Accounts, lockouts and the files Dovecot reads them from.
    pub fn accounts_dir(&self) -> PathBuf {
        self.p("state/accounts")
    }
    /// The accounts' secrets and status.
    pub fn accounts_file(&self) -> PathBuf {
        self.p("state/accounts/accounts.json")
    }
    /// The lockout book.
    pub fn lockout_file(&self) -> PathBuf {
        self.p("state/accounts/lockout.json")
    }
    /// The lock taken around changes to the two files above.
    pub fn accounts_lock(&self) -> PathBuf {
        self.p("state/accounts/.lock")
    }
    /// Dovecot's passdb (passwd-file: login name and hash).
    pub fn passdb_file(&self) -> PathBuf {
        self.p("state/accounts/passdb")
    }
    /// Dovecot's userdb (passwd-file: every mailbox and its home).
    pub fn userdb_file(&self) -> PathBuf {
        self.p("state/accounts/userdb")
    }
    /// The Bayes database directory.
    pub fn bayes_dir(&self) -> PathBuf {
        self.p("state/spamassassin")
    }
    /// Default ClamAV database directory.
    pub fn clamav_db_default(&self) -> PathBuf {
        self.p("state/clamav")
    }
    /// DKIM keys of `domain`.
    pub fn dkim_dir(&self, domain: &str) -> PathBuf {
        self.p("state/dkim").join(domain)
    }
    /// All DKIM keys.
    pub fn dkim_root(&self) -> PathBuf {
        self.p("state/dkim")
    }
    /// Generated TLS certificate and key.
    pub fn tls_dir(&self) -> PathBuf {
        self.p("state/tls")
    }
    /// Secrets shared by the daemons and the agent.
    pub fn secrets_dir(&self) -> PathBuf {
        self.p("state/secrets")
    }
    /// The uid/gid map of the last start.
    pub fn owners_file(&self) -> PathBuf {
        self.p("state/owners.json")
    }
    /// Delivered mail.
    pub fn mail_root(&self) -> PathBuf {
        self.p("mail")
    }
    /// The home of mailbox `address` (`mail/DOMAIN/LOCAL`).
    pub fn home(&self, address: &str) -> PathBuf {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, "_"));
        self.mail_root().join(domain).join(local)
    }
    /// Logs.
    pub fn log_dir(&self) -> PathBuf {
        self.p("log")
    }
    /// The log of daemon `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }
}

/// `path` as a string for a configuration file (the directory was checked to need no quoting).
pub fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

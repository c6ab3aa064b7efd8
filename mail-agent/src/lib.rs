//! `ocf:tandem:mail`: the mail suite of the thesis (Zimbra on DRBD + Pacemaker) rebuilt from
//! Debian's Postfix, Dovecot, SpamAssassin, ClamAV and OpenDKIM, with every byte of state under
//! one directory — the replicated mount — so that the node that mounts it next carries on.
//!
//! How the pieces fit:
//! - [`config`] parses the one declarative file (`mail.toml`) into a validated
//!   [`config::MailConfig`]; every error names its field (→ `OCF_ERR_CONFIGURED`).
//! - [`render`] turns it into every daemon's configuration from the templates in
//!   `mail-agent/templates/` (pure); [`setup`] prepares the directory (owners for this node's
//!   ids, keys, certificate, secrets) and writes them under `run/conf`.
//! - [`agent`] is the OCF agent: `start` launches the [`supervisor`] (one small process that
//!   runs the daemons of [`daemons`] in dependency order and restarts crashes within limits),
//!   `stop` stops it and kills anything left holding the directory ([`procs`]), `monitor`
//!   checks depths 0/10/20 with the [`probe`]s and a [`milter`] client.
//! - What Postfix and Dovecot lack is the auth-policy service: [`policy`] decides (pure:
//!   lockout from [`lockout`], password expiry, per-class protocol blocks for IMAP, POP3 and
//!   SMTP AUTH), [`policy_server`] serves it to Dovecot over HTTP with its state on the mount.
//! - [`accounts`] and [`admin`] are the account command (password rules from [`password`],
//!   Argon2id hashes Dovecot verifies); [`dns`] prints the records to publish; [`train`]
//!   feeds the Bayes filter from the training mailboxes; [`import`] pulls mailboxes from an
//!   old IMAP server with Dovecot's dsync.
//! - State files carry magic, version and CRC ([`store`]); [`layout`] says where everything is.

/// One line to standard error that never panics (`eprintln!` panics when the write fails, and
/// the long-running processes log to files on the mount, which can turn read-only under them:
/// they must keep running — and stop cleanly — rather than die on a log line).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod accounts;
pub mod admin;
pub mod agent;
pub mod attachment_filter;
pub mod config;
pub mod daemons;
pub mod dns;
pub mod duration;
pub mod import;
pub mod layout;
pub mod lockout;
pub mod milter;
pub mod mime;
pub mod owners;
pub mod password;
pub mod policy;
pub mod policy_server;
pub mod probe;
pub mod procs;
pub mod render;
pub mod setup;
pub mod store;
pub mod supervisor;
pub mod train;

//! The auth-policy decisions (pure): what Dovecot's auth-policy hook is answered, for IMAP,
//! POP3 and SMTP AUTH alike (Postfix authenticates through Dovecot).
//!
//! Dovecot asks three times per login ([Dovecot's auth-policy support], `auth-policy.c`):
//! `command=allow` before checking the password, `command=allow` again after a successful
//! check (`auth_policy_check_after_auth`), and `command=report` at the end with `success` and
//! `policy_reject`. The attributes are ours to choose (`auth_policy_request_attributes`); we
//! send `authenticated=%{passdb:tandem_authenticated}`, which is empty before the password
//! check and `yes` after a successful one, because the passdb entries carry that extra field.
//!
//! - before the password check: refuse a login locked by the failed-login policy or by the
//!   administrator (the sixth attempt after five failures is refused even with the right
//!   password);
//! - after a successful check: refuse a protocol the class of service does not allow and an
//!   expired password (only after the password is known good, so neither reveals anything to
//!   someone guessing);
//! - report: count a failure that was not the policy's own refusal; clear the failures on
//!   success. Only failures for declared accounts are counted: a name that is no account
//!   cannot log in anyway, and counting it would let a flood of made-up names fill the book
//!   (evicting a real account's count, and rewriting the file on the mount for every guess).
//!
//! The monitor's probe mailbox is never locked out and logs in only from this host: otherwise
//! five wrong passwords from anywhere would fail the depth-20 monitor, and anyone outside could
//! make the cluster restart or move the service at will.
//!
//! Answers are `{"status":0}` (go on) or `{"status":-1,"msg":...}` (refuse).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::accounts::{self, Accounts};
use crate::config::MailConfig;
use crate::lockout::{self, Book, Outcome};

/// The protocol a login is for (Dovecot's `%s`, the service name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IMAP.
    Imap,
    /// POP3.
    Pop3,
    /// SMTP AUTH (Postfix's SASL service is `smtp`; `submission` for Dovecot's own).
    Smtp,
    /// Anything else (e.g. `doveadm`): refused after authentication.
    Other,
}

impl Protocol {
    /// From Dovecot's service name.
    pub fn parse(service: &str) -> Protocol {
        match service {
            "imap" => Protocol::Imap,
            "pop3" => Protocol::Pop3,
            "smtp" | "submission" => Protocol::Smtp,
            _ => Protocol::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Smtp => "SMTP AUTH",
            Protocol::Other => "this service",
        }
    }
}

/// The JSON Dovecot posts (the attributes we configure, plus `success` and `policy_reject` on
/// reports). Unknown fields are ignored; every field is bounded by the HTTP body limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Request {
    /// The name the client gave.
    #[serde(default)]
    pub login: String,
    /// Dovecot's service name.
    #[serde(default)]
    pub protocol: String,
    /// The client's address.
    #[serde(default)]
    pub remote: String,
    /// `yes` after a successful password check, empty before.
    #[serde(default)]
    pub authenticated: String,
    /// On reports: the login succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// On reports: the policy refused it.
    #[serde(default)]
    pub policy_reject: Option<bool>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// 0 allow, -1 refuse.
    pub status: i32,
    /// Why (logged by Dovecot).
    pub msg: String,
}

impl Answer {
    fn allow() -> Answer {
        Answer {
            status: 0,
            msg: String::new(),
        }
    }
    fn refuse(msg: impl Into<String>) -> Answer {
        Answer {
            status: -1,
            msg: msg.into(),
        }
    }
    /// Whether this answer refuses.
    pub fn refuses(&self) -> bool {
        self.status < 0
    }
}

/// Answers `command=allow` at `now` (Unix seconds).
pub fn allow(
    req: &Request,
    cfg: &MailConfig,
    accounts: &Accounts,
    book: &Book,
    now: u64,
) -> Answer {
    let login = lockout::key(&req.login);
    let protocol = Protocol::parse(&req.protocol);
    if login == accounts::probe_address(cfg) {
        return probe(req, cfg, protocol);
    }
    if let Some(until) = book.locked_until(&login, now) {
        return Answer::refuse(format!(
            "account locked after {} failed logins for {} more seconds",
            cfg.policy.lockout_failures,
            until - now
        ));
    }
    let record = accounts.accounts.get(&login);
    if record.is_some_and(|r| r.locked) {
        return Answer::refuse("account locked by the administrator");
    }
    if req.authenticated != "yes" {
        return Answer::allow();
    }
    let Some(entry) = cfg.account(&login) else {
        return Answer::refuse("no such account in the configuration");
    };
    let class = &cfg.classes[&entry.class];
    let allowed = match protocol {
        Protocol::Imap => class.imap,
        Protocol::Pop3 => class.pop3,
        Protocol::Smtp => class.smtp_auth,
        Protocol::Other => false,
    };
    if !allowed {
        return Answer::refuse(format!(
            "{} is not enabled for class of service {}",
            protocol.name(),
            entry.class
        ));
    }
    let Some(record) = record else {
        return Answer::refuse("no password is set");
    };
    if accounts::expired(record.password_changed, class.password.max_age.secs, now) {
        return Answer::refuse("password expired: ask the administrator for a new one");
    }
    Answer::allow()
}

/// The probe mailbox: from this host only (the monitor connects from the listen address),
/// IMAP only, never locked.
fn probe(req: &Request, cfg: &MailConfig, protocol: Protocol) -> Answer {
    let local = req
        .remote
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == cfg.listen || ip.is_loopback());
    if !local {
        return Answer::refuse("the probe mailbox logs in only from this host");
    }
    if req.authenticated == "yes" && protocol != Protocol::Imap {
        return Answer::refuse("the probe mailbox is IMAP only");
    }
    Answer::allow()
}

/// Handles `command=report` at `now`: updates `book`, returns what happened (for the log),
/// or `None` when there was nothing to record (a success, the policy's own refusal, or a
/// login that is no declared account — the probe mailbox is none).
pub fn report(req: &Request, cfg: &MailConfig, book: &mut Book, now: u64) -> Option<Outcome> {
    let login = lockout::key(&req.login);
    // Only declared accounts are counted (see the module's documentation).
    cfg.account(&login)?;
    match (req.success, req.policy_reject) {
        (Some(true), _) => {
            book.record_success(&login, now);
            None
        }
        // Refused by us (locked, blocked protocol, expired): not a password failure.
        (Some(false), Some(true)) => None,
        (Some(false), _) => {
            Some(book.record_failure(&login, now, lockout::Rules::from(&cfg.policy)))
        }
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountRecord;

    const CFG: &str = r#"
hostname = "mail.example.com"
domains = ["example.com"]
listen = "10.0.0.50"
[[account]]
address = "gen@example.com"
class = "general"
[[account]]
address = "adm@example.com"
class = "admin"
[[account]]
address = "nopw@example.com"
class = "admin"
"#;

    const NOW: u64 = 1_700_000_000;

    fn setup() -> (MailConfig, Accounts) {
        let cfg = crate::config::parse(CFG).unwrap();
        let mut a = Accounts::default();
        for addr in ["gen@example.com", "adm@example.com"] {
            a.accounts.insert(
                addr.into(),
                AccountRecord {
                    hash: "{ARGON2ID}x".into(),
                    password_changed: NOW - 86400,
                    locked: false,
                },
            );
        }
        (cfg, a)
    }

    fn req(login: &str, protocol: &str, authenticated: bool) -> Request {
        Request {
            login: login.into(),
            protocol: protocol.into(),
            remote: "10.0.0.9".into(),
            authenticated: if authenticated {
                "yes".into()
            } else {
                String::new()
            },
            ..Request::default()
        }
    }

    fn reported(login: &str, success: bool, policy_reject: bool) -> Request {
        Request {
            success: Some(success),
            policy_reject: Some(policy_reject),
            ..req(login, "imap", false)
        }
    }

    #[test]
    fn protocol_table_per_class() {
        let (cfg, a) = setup();
        let book = Book::default();
        // (login, service, allowed after authentication)
        let table = [
            ("gen@example.com", "imap", true),
            ("gen@example.com", "pop3", false),
            ("gen@example.com", "smtp", true),
            ("gen@example.com", "doveadm", false),
            ("adm@example.com", "imap", true),
            ("adm@example.com", "pop3", true),
            ("adm@example.com", "smtp", true),
            ("stranger@example.com", "imap", false),
            ("nopw@example.com", "imap", false),
        ];
        for (login, svc, ok) in table {
            // Before the password check nothing is revealed.
            assert!(
                !allow(&req(login, svc, false), &cfg, &a, &book, NOW).refuses(),
                "{login} {svc} before auth"
            );
            let ans = allow(&req(login, svc, true), &cfg, &a, &book, NOW);
            assert_eq!(!ans.refuses(), ok, "{login} {svc}: {ans:?}");
        }
        let ans = allow(&req("gen@example.com", "pop3", true), &cfg, &a, &book, NOW);
        assert_eq!(ans.msg, "POP3 is not enabled for class of service general");
    }

    #[test]
    fn sixth_login_after_five_failures_is_refused_until_the_lock_ends() {
        let (cfg, a) = setup();
        let mut book = Book::default();
        for i in 0..5 {
            assert!(
                !allow(
                    &req("gen@example.com", "imap", false),
                    &cfg,
                    &a,
                    &book,
                    NOW + i
                )
                .refuses()
            );
            report(
                &reported("GEN@example.com", false, false),
                &cfg,
                &mut book,
                NOW + i,
            );
        }
        let ans = allow(
            &req("gen@example.com", "smtp", false),
            &cfg,
            &a,
            &book,
            NOW + 10,
        );
        assert!(ans.refuses());
        assert!(
            ans.msg.starts_with("account locked after 5 failed logins"),
            "{}",
            ans.msg
        );
        // The refused attempt's report does not count.
        assert_eq!(
            report(
                &reported("gen@example.com", false, true),
                &cfg,
                &mut book,
                NOW + 10
            ),
            None
        );
        assert!(
            !allow(
                &req("gen@example.com", "imap", false),
                &cfg,
                &a,
                &book,
                NOW + 4 + 3600
            )
            .refuses()
        );
    }

    #[test]
    fn the_probe_logs_in_only_from_this_host_and_is_never_locked() {
        let (cfg, a) = setup();
        let mut book = Book::default();
        let probe = "tandem-probe@example.com";
        let from = |remote: &str, svc: &str, authenticated: bool| Request {
            remote: remote.into(),
            ..req(probe, svc, authenticated)
        };
        for local in ["10.0.0.50", "127.0.0.1", "::1"] {
            for stage in [false, true] {
                let ans = allow(&from(local, "imap", stage), &cfg, &a, &book, NOW);
                assert!(!ans.refuses(), "from {local}: {ans:?}");
            }
            let ans = allow(&from(local, "smtp", true), &cfg, &a, &book, NOW);
            assert_eq!(ans.msg, "the probe mailbox is IMAP only");
        }
        // From outside: refused before the password is even checked.
        let ans = allow(&from("10.0.0.9", "imap", false), &cfg, &a, &book, NOW);
        assert_eq!(ans.msg, "the probe mailbox logs in only from this host");
        // Wrong passwords, from anywhere, never lock it: the monitor must keep working.
        for i in 0..20 {
            let r = Request {
                success: Some(false),
                policy_reject: Some(false),
                ..from(
                    if i % 2 == 0 { "10.0.0.9" } else { "10.0.0.50" },
                    "imap",
                    false,
                )
            };
            assert_eq!(report(&r, &cfg, &mut book, NOW + i), None);
        }
        assert_eq!(book, Book::default());
        let ans = allow(&from("10.0.0.50", "imap", false), &cfg, &a, &book, NOW + 30);
        assert!(!ans.refuses(), "{ans:?}");
    }

    #[test]
    fn failures_of_names_that_are_no_account_are_not_counted() {
        let (cfg, _) = setup();
        let mut book = Book::default();
        for login in [
            "stranger@example.com",
            "gen",
            "gen@example.org",
            "",
            "x@y@z",
        ] {
            assert_eq!(
                report(&reported(login, false, false), &cfg, &mut book, NOW),
                None,
                "{login:?}"
            );
        }
        assert_eq!(book, Book::default(), "nothing written for made-up names");
        // A flood of made-up names between guesses cannot evict a real account's count.
        for i in 0..4 {
            report(
                &reported("gen@example.com", false, false),
                &cfg,
                &mut book,
                NOW + i,
            );
        }
        for i in 0..(crate::lockout::MAX_LOGINS_TRACKED + 10) {
            report(
                &reported(&format!("junk{i}@example.com"), false, false),
                &cfg,
                &mut book,
                NOW + 5,
            );
        }
        let rules = lockout::Rules::from(&cfg.policy);
        assert_eq!(book.failures("gen@example.com", NOW + 6, rules), 4);
        assert_eq!(
            report(
                &reported("GEN@example.com", false, false),
                &cfg,
                &mut book,
                NOW + 6
            ),
            Some(Outcome::Locked(NOW + 6 + 3600))
        );
    }

    #[test]
    fn success_resets_the_count() {
        let (cfg, _) = setup();
        let mut book = Book::default();
        for i in 0..4 {
            report(
                &reported("gen@example.com", false, false),
                &cfg,
                &mut book,
                NOW + i,
            );
        }
        report(
            &reported("gen@example.com", true, false),
            &cfg,
            &mut book,
            NOW + 5,
        );
        let out = report(
            &reported("gen@example.com", false, false),
            &cfg,
            &mut book,
            NOW + 6,
        );
        assert_eq!(out, Some(Outcome::Counted(1)));
    }

    #[test]
    fn expired_and_admin_locked() {
        let (cfg, mut a) = setup();
        let book = Book::default();
        a.accounts
            .get_mut("gen@example.com")
            .unwrap()
            .password_changed = NOW - 30 * 86400;
        let ans = allow(&req("gen@example.com", "imap", true), &cfg, &a, &book, NOW);
        assert_eq!(
            ans.msg,
            "password expired: ask the administrator for a new one"
        );
        assert!(!allow(&req("gen@example.com", "imap", false), &cfg, &a, &book, NOW).refuses());
        a.accounts.get_mut("adm@example.com").unwrap().locked = true;
        let ans = allow(&req("adm@example.com", "imap", false), &cfg, &a, &book, NOW);
        assert_eq!(ans.msg, "account locked by the administrator");
    }
}

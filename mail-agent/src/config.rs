//! The one declarative file (`mail.toml`): parsed once, at the edge, into a validated
//! [`MailConfig`]. Every error names the field it is about (`smtp.blocked_extensions[3]`,
//! `account[2].class`), and the agent turns it into `OCF_ERR_CONFIGURED`.
//!
//! Defaults reproduce the thesis's security policy (chapter 7): classes of service `general`
//! and `admin`, lockout after 5 failures in 1 h for 1 h, Zimbra's 27 blocked extensions, spam
//! tag 33 % / kill 75 %, SMTP AUTH only after TLS, HELO/sender/client checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::Span;

/// Zimbra's default blocked attachment extensions (27), as the thesis blocked them.
pub const ZIMBRA_BLOCKED_EXTENSIONS: [&str; 27] = [
    "asd", "bat", "chm", "cmd", "com", "dll", "do", "exe", "hlp", "hta", "js", "jse", "lnk", "ocx",
    "pif", "reg", "scr", "shb", "shm", "shs", "vbe", "vbs", "vbx", "vxd", "wsf", "wsh", "xl",
];

/// Spam scores run from 0 to this many points for Zimbra's percentages: tag 33 % → 6.6,
/// kill 75 % → 15.
pub const SPAM_PERCENT_RANGE_POINTS: u32 = 20;

/// The longest `directory` path accepted: daemons put unix sockets under `directory/run/...`
/// and a socket path must fit in 107 bytes (`sun_path`), with room for Dovecot's own names.
pub const DIRECTORY_MAX_LEN: usize = 60;

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// TOML syntax, a wrong type, or an unknown key (the message has the line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("field `{field}`: {message}")]
    Field {
        /// Dotted path of the field, e.g. `classes.admin.password_min_length`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Ports the daemons listen on at the listen address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    /// SMTP (MX), STARTTLS offered, AUTH only after TLS.
    pub smtp: u16,
    /// Submission: TLS required before anything else.
    pub submission: u16,
    /// SMTP over implicit TLS (0 disables it).
    pub smtps: u16,
    /// IMAP with STARTTLS.
    pub imap: u16,
    /// IMAP over implicit TLS.
    pub imaps: u16,
    /// POP3 with STARTTLS.
    pub pop3: u16,
    /// POP3 over implicit TLS.
    pub pop3s: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            smtp: 25,
            submission: 587,
            smtps: 465,
            imap: 143,
            imaps: 993,
            pop3: 110,
            pop3s: 995,
        }
    }
}

/// The password rules of one class of service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordRules {
    /// Minimum length in characters.
    pub min_length: u32,
    /// Maximum length in characters.
    pub max_length: u32,
    /// Minimum number of upper-case letters.
    pub min_upper: u32,
    /// Minimum number of lower-case letters.
    pub min_lower: u32,
    /// Minimum number of digits.
    pub min_digit: u32,
    /// Minimum number of punctuation symbols.
    pub min_punct: u32,
    /// A password older than this is refused at login (0: never expires).
    pub max_age: Span,
}

/// A class of service: which protocols its accounts may use and its password rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassOfService {
    /// IMAP access.
    pub imap: bool,
    /// POP3 access.
    pub pop3: bool,
    /// SMTP AUTH (sending through this server).
    pub smtp_auth: bool,
    /// Password rules.
    pub password: PasswordRules,
}

impl ClassOfService {
    /// The thesis's `general`: POP3 off, IMAP on; ≥ 6 characters with ≥ 1 upper, ≥ 1 lower,
    /// ≥ 1 digit; at most 64; expires after 30 days.
    pub fn thesis_general() -> Self {
        ClassOfService {
            imap: true,
            pop3: false,
            smtp_auth: true,
            password: PasswordRules {
                min_length: 6,
                max_length: 64,
                min_upper: 1,
                min_lower: 1,
                min_digit: 1,
                min_punct: 0,
                max_age: Span::days(30),
            },
        }
    }

    /// The thesis's `admin`: POP3 on; ≥ 10 characters mixing upper, lower, digits and
    /// punctuation; expires after 30 days.
    pub fn thesis_admin() -> Self {
        ClassOfService {
            imap: true,
            pop3: true,
            smtp_auth: true,
            password: PasswordRules {
                min_length: 10,
                max_length: 64,
                min_upper: 1,
                min_lower: 1,
                min_digit: 1,
                min_punct: 1,
                max_age: Span::days(30),
            },
        }
    }
}

/// The failed-login lockout and the policy service's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Where the auth-policy service listens (loopback only; Dovecot's HTTP client has no
    /// unix-socket support for this hook).
    pub listen: SocketAddr,
    /// Failures within `lockout_window` that lock the account (0 disables lockout).
    pub lockout_failures: u32,
    /// The window in which the failures must occur.
    pub lockout_window: Span,
    /// How long the account stays locked.
    pub lockout_duration: Span,
}

/// SMTP policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Smtp {
    /// Attachment extensions rejected (lower case, without the dot).
    pub blocked_extensions: Vec<String>,
    /// DNS block lists checked for connecting clients (`reject_rbl_client`).
    pub rbls: Vec<String>,
    /// `reject_invalid_helo_hostname`, `reject_non_fqdn_helo_hostname`.
    pub helo_checks: bool,
    /// `reject_non_fqdn_sender`, `reject_unknown_sender_domain`, and refusing unauthenticated
    /// mail that claims one of our domains as sender.
    pub sender_checks: bool,
    /// `reject_unknown_client_hostname`, `reject_unknown_reverse_client_hostname`.
    pub client_checks: bool,
    /// Largest message accepted, in MiB.
    pub max_message_size_mib: u32,
}

/// Spam filtering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spam {
    /// Messages at or above this percentage are marked spam and filed into Junk.
    pub tag_percent: u32,
    /// Messages at or above this percentage are rejected.
    pub kill_percent: u32,
    /// The mailbox users send spam to, for Bayes training.
    pub training_spam: String,
    /// The mailbox users send wrongly marked mail (ham) to.
    pub training_ham: String,
    /// How often the training mailboxes are learned from.
    pub train_interval: Span,
    /// Extra SpamAssassin rules, appended to the rendered `local.cf`.
    pub local_rules: String,
}

impl Spam {
    /// The tag threshold in tenths of a SpamAssassin point (33 % → 66, i.e. 6.6).
    pub fn tag_tenths(&self) -> u32 {
        self.tag_percent * SPAM_PERCENT_RANGE_POINTS / 10
    }
    /// The kill threshold in tenths of a point (75 % → 150, i.e. 15.0).
    pub fn kill_tenths(&self) -> u32 {
        self.kill_percent * SPAM_PERCENT_RANGE_POINTS / 10
    }
}

/// DKIM signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dkim {
    /// The selector (`SELECTOR._domainkey.DOMAIN`).
    pub selector: String,
    /// RSA key size for generated keys.
    pub key_bits: u32,
}

/// One account in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountEntry {
    /// `local@domain`, lower case.
    pub address: String,
    /// Its class of service.
    pub class: String,
    /// Other addresses delivered to it.
    pub aliases: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailConfig {
    /// The server's name (banner, HELO, certificate, MX target).
    pub hostname: String,
    /// Mail domains served.
    pub domains: Vec<String>,
    /// The address the services listen on: the cluster's virtual IP.
    pub listen: IpAddr,
    /// Networks allowed to relay without authentication (default: loopback only).
    pub mynetworks: Vec<String>,
    /// The account that receives `postmaster@` and `abuse@` of every domain, if any.
    pub postmaster: Option<String>,
    /// Ports.
    pub ports: Ports,
    /// TLS certificate and key (PEM); a self-signed pair is generated when absent.
    pub tls_cert: Option<PathBuf>,
    /// See `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Lockout and the policy service.
    pub policy: Policy,
    /// Classes of service by name.
    pub classes: BTreeMap<String, ClassOfService>,
    /// SMTP policy.
    pub smtp: Smtp,
    /// Spam filtering.
    pub spam: Spam,
    /// ClamAV signature directory (default: `DIRECTORY/state/clamav`).
    pub clamav_database_directory: Option<PathBuf>,
    /// DKIM.
    pub dkim: Dkim,
    /// Accounts.
    pub accounts: Vec<AccountEntry>,
}

// ---- raw (serde) form: every field optional, unknown keys refused ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    hostname: Option<String>,
    domains: Option<Vec<String>>,
    listen: Option<String>,
    mynetworks: Option<Vec<String>>,
    postmaster: Option<String>,
    #[serde(default)]
    ports: Ports,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    classes: BTreeMap<String, RawClass>,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    spam: RawSpam,
    #[serde(default)]
    antivirus: RawAntivirus,
    #[serde(default)]
    dkim: RawDkim,
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    listen: Option<String>,
    lockout_failures: Option<u32>,
    lockout_window: Option<Span>,
    lockout_duration: Option<Span>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    imap: Option<bool>,
    pop3: Option<bool>,
    smtp_auth: Option<bool>,
    password_min_length: Option<u32>,
    password_max_length: Option<u32>,
    password_min_upper: Option<u32>,
    password_min_lower: Option<u32>,
    password_min_digit: Option<u32>,
    password_min_punct: Option<u32>,
    password_max_age: Option<Span>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    blocked_extensions: Option<Vec<String>>,
    rbls: Option<Vec<String>>,
    helo_checks: Option<bool>,
    sender_checks: Option<bool>,
    client_checks: Option<bool>,
    max_message_size_mib: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpam {
    tag_percent: Option<u32>,
    kill_percent: Option<u32>,
    training_spam: Option<String>,
    training_ham: Option<String>,
    train_interval: Option<Span>,
    local_rules: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAntivirus {
    database_directory: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    selector: Option<String>,
    key_bits: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    address: String,
    class: String,
    #[serde(default)]
    aliases: Vec<String>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<MailConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Syntax { message, .. } => ConfigError::Syntax {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
}

/// Parses and validates a configuration text.
pub fn parse(text: &str) -> Result<MailConfig, ConfigError> {
    let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: "mail.toml".into(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    validate(raw)
}

fn validate(raw: Raw) -> Result<MailConfig, ConfigError> {
    let hostname = raw
        .hostname
        .ok_or_else(|| {
            ConfigError::field(
                "hostname",
                "is required (the server's FQDN, e.g. mail.example.com)",
            )
        })?
        .to_ascii_lowercase();
    check_fqdn(&hostname).map_err(|m| ConfigError::field("hostname", m))?;

    let domains: Vec<String> = raw
        .domains
        .ok_or_else(|| ConfigError::field("domains", "is required (the mail domains served)"))?
        .into_iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    if domains.is_empty() {
        return Err(ConfigError::field(
            "domains",
            "must name at least one domain",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, d) in domains.iter().enumerate() {
        check_fqdn(d).map_err(|m| ConfigError::field(format!("domains[{i}]"), m))?;
        if !seen.insert(d.clone()) {
            return Err(ConfigError::field(
                format!("domains[{i}]"),
                format!("{d} is listed twice"),
            ));
        }
    }

    let listen_s = raw.listen.ok_or_else(|| {
        ConfigError::field(
            "listen",
            "is required (the virtual IP the services listen on)",
        )
    })?;
    let listen: IpAddr = listen_s
        .parse()
        .map_err(|_| ConfigError::field("listen", format!("{listen_s:?} is not an IP address")))?;
    if listen.is_unspecified() {
        return Err(ConfigError::field(
            "listen",
            "must be the virtual IP, not a wildcard address",
        ));
    }

    let mynetworks = raw
        .mynetworks
        .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "[::1]/128".into()]);
    for (i, n) in mynetworks.iter().enumerate() {
        check_cidr(n).map_err(|m| ConfigError::field(format!("mynetworks[{i}]"), m))?;
    }

    let ports = raw.ports;
    let named = [
        ("ports.smtp", ports.smtp),
        ("ports.submission", ports.submission),
        ("ports.smtps", ports.smtps),
        ("ports.imap", ports.imap),
        ("ports.imaps", ports.imaps),
        ("ports.pop3", ports.pop3),
        ("ports.pop3s", ports.pop3s),
    ];
    let mut used = BTreeMap::new();
    for (name, p) in named {
        if p == 0 {
            if name == "ports.smtps"
                || name == "ports.pop3s"
                || name == "ports.pop3"
                || name == "ports.submission"
            {
                continue; // optional services
            }
            return Err(ConfigError::field(name, "must not be 0"));
        }
        if let Some(other) = used.insert(p, name) {
            return Err(ConfigError::field(
                name,
                format!("port {p} is also used by {other}"),
            ));
        }
    }

    if raw.tls.cert.is_some() != raw.tls.key.is_some() {
        return Err(ConfigError::field(
            "tls",
            "give both `cert` and `key`, or neither (a self-signed pair is then generated)",
        ));
    }
    for (name, p) in [("tls.cert", &raw.tls.cert), ("tls.key", &raw.tls.key)] {
        if let Some(p) = p
            && !p.is_absolute()
        {
            return Err(ConfigError::field(
                name,
                format!("{} must be an absolute path", p.display()),
            ));
        }
    }

    let policy = {
        let r = raw.policy;
        let listen_s = r.listen.unwrap_or_else(|| "127.0.0.1:10089".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            ConfigError::field("policy.listen", format!("{listen_s:?} is not ADDRESS:PORT"))
        })?;
        if !listen.ip().is_loopback() || listen.port() == 0 {
            return Err(ConfigError::field(
                "policy.listen",
                "must be a loopback address with a port, e.g. 127.0.0.1:10089",
            ));
        }
        let p = Policy {
            listen,
            lockout_failures: r.lockout_failures.unwrap_or(5),
            lockout_window: r.lockout_window.unwrap_or(Span::hours(1)),
            lockout_duration: r.lockout_duration.unwrap_or(Span::hours(1)),
        };
        if p.lockout_failures > 0 && p.lockout_window.secs == 0 {
            return Err(ConfigError::field(
                "policy.lockout_window",
                "must be longer than 0s",
            ));
        }
        if p.lockout_failures > 0 && p.lockout_duration.secs == 0 {
            return Err(ConfigError::field(
                "policy.lockout_duration",
                "must be longer than 0s",
            ));
        }
        if p.lockout_failures > crate::lockout::MAX_FAILURES_TRACKED {
            return Err(ConfigError::field(
                "policy.lockout_failures",
                format!(
                    "at most {} failures can be counted",
                    crate::lockout::MAX_FAILURES_TRACKED
                ),
            ));
        }
        p
    };

    let mut classes = BTreeMap::new();
    classes.insert("general".to_owned(), ClassOfService::thesis_general());
    classes.insert("admin".to_owned(), ClassOfService::thesis_admin());
    for (name, rc) in raw.classes {
        if !is_word(&name) {
            return Err(ConfigError::field(
                format!("classes.{name}"),
                "a class name is letters, digits, '-' and '_'",
            ));
        }
        let base = classes
            .get(&name)
            .cloned()
            .unwrap_or_else(ClassOfService::thesis_general);
        let c = ClassOfService {
            imap: rc.imap.unwrap_or(base.imap),
            pop3: rc.pop3.unwrap_or(base.pop3),
            smtp_auth: rc.smtp_auth.unwrap_or(base.smtp_auth),
            password: PasswordRules {
                min_length: rc.password_min_length.unwrap_or(base.password.min_length),
                max_length: rc.password_max_length.unwrap_or(base.password.max_length),
                min_upper: rc.password_min_upper.unwrap_or(base.password.min_upper),
                min_lower: rc.password_min_lower.unwrap_or(base.password.min_lower),
                min_digit: rc.password_min_digit.unwrap_or(base.password.min_digit),
                min_punct: rc.password_min_punct.unwrap_or(base.password.min_punct),
                max_age: rc.password_max_age.unwrap_or(base.password.max_age),
            },
        };
        let pw = &c.password;
        let f = |k: &str| format!("classes.{name}.{k}");
        if pw.min_length == 0 {
            return Err(ConfigError::field(
                f("password_min_length"),
                "must be at least 1",
            ));
        }
        if pw.max_length < pw.min_length || pw.max_length > 1024 {
            return Err(ConfigError::field(
                f("password_max_length"),
                format!(
                    "must be between password_min_length ({}) and 1024",
                    pw.min_length
                ),
            ));
        }
        let required = pw.min_upper + pw.min_lower + pw.min_digit + pw.min_punct;
        if required > pw.max_length {
            return Err(ConfigError::field(
                f("password_max_length"),
                format!(
                    "{} is shorter than the {required} characters the other rules require",
                    pw.max_length
                ),
            ));
        }
        classes.insert(name, c);
    }

    let smtp = {
        let r = raw.smtp;
        let exts: Vec<String> = r
            .blocked_extensions
            .unwrap_or_else(|| {
                ZIMBRA_BLOCKED_EXTENSIONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
            .into_iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();
        for (i, e) in exts.iter().enumerate() {
            if e.is_empty() || e.len() > 16 || !e.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ConfigError::field(
                    format!("smtp.blocked_extensions[{i}]"),
                    format!("{e:?} is not a file extension (letters and digits, up to 16)"),
                ));
            }
        }
        let rbls = r.rbls.unwrap_or_default();
        for (i, z) in rbls.iter().enumerate() {
            check_fqdn(z).map_err(|m| ConfigError::field(format!("smtp.rbls[{i}]"), m))?;
        }
        let max = r.max_message_size_mib.unwrap_or(50);
        if max == 0 || max > 2048 {
            return Err(ConfigError::field(
                "smtp.max_message_size_mib",
                "must be between 1 and 2048",
            ));
        }
        Smtp {
            blocked_extensions: exts,
            rbls,
            helo_checks: r.helo_checks.unwrap_or(true),
            sender_checks: r.sender_checks.unwrap_or(true),
            client_checks: r.client_checks.unwrap_or(true),
            max_message_size_mib: max,
        }
    };

    let first = domains[0].clone();
    let spam = {
        let r = raw.spam;
        let s = Spam {
            tag_percent: r.tag_percent.unwrap_or(33),
            kill_percent: r.kill_percent.unwrap_or(75),
            training_spam: r
                .training_spam
                .unwrap_or_else(|| format!("spam.training@{first}"))
                .to_ascii_lowercase(),
            training_ham: r
                .training_ham
                .unwrap_or_else(|| format!("ham.training@{first}"))
                .to_ascii_lowercase(),
            train_interval: r.train_interval.unwrap_or(Span::hours(1)),
            local_rules: r.local_rules.unwrap_or_default(),
        };
        if s.tag_percent == 0 || s.tag_percent > 100 {
            return Err(ConfigError::field(
                "spam.tag_percent",
                "must be between 1 and 100",
            ));
        }
        if s.kill_percent <= s.tag_percent || s.kill_percent > 100 {
            return Err(ConfigError::field(
                "spam.kill_percent",
                format!(
                    "must be above tag_percent ({}) and at most 100",
                    s.tag_percent
                ),
            ));
        }
        if s.train_interval.secs < 60 {
            return Err(ConfigError::field(
                "spam.train_interval",
                "must be at least 1m",
            ));
        }
        for (k, a) in [
            ("spam.training_spam", &s.training_spam),
            ("spam.training_ham", &s.training_ham),
        ] {
            check_address(a, &domains).map_err(|m| ConfigError::field(k, m))?;
        }
        if s.training_spam == s.training_ham {
            return Err(ConfigError::field(
                "spam.training_ham",
                "must differ from training_spam",
            ));
        }
        s
    };

    let clamav_database_directory = raw.antivirus.database_directory;
    if let Some(p) = &clamav_database_directory
        && !p.is_absolute()
    {
        return Err(ConfigError::field(
            "antivirus.database_directory",
            "must be an absolute path",
        ));
    }

    let dkim = Dkim {
        selector: raw.dkim.selector.unwrap_or_else(|| "tandem".into()),
        key_bits: raw.dkim.key_bits.unwrap_or(2048),
    };
    if !is_label(&dkim.selector) {
        return Err(ConfigError::field(
            "dkim.selector",
            format!("{:?} is not a DNS label", dkim.selector),
        ));
    }
    if ![1024, 2048, 3072, 4096].contains(&dkim.key_bits) {
        return Err(ConfigError::field(
            "dkim.key_bits",
            "must be 1024, 2048, 3072 or 4096",
        ));
    }

    let mut accounts = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for reserved in [&spam.training_spam, &spam.training_ham] {
        taken.insert(reserved.clone(), "a spam training mailbox".into());
    }
    for (i, a) in raw.account.into_iter().enumerate() {
        let address = a.address.to_ascii_lowercase();
        check_address(&address, &domains)
            .map_err(|m| ConfigError::field(format!("account[{i}].address"), m))?;
        if let Some(what) = taken.insert(address.clone(), format!("account[{i}]")) {
            return Err(ConfigError::field(
                format!("account[{i}].address"),
                format!("{address} is already {what}"),
            ));
        }
        if !classes.contains_key(&a.class) {
            let known: Vec<&str> = classes.keys().map(String::as_str).collect();
            return Err(ConfigError::field(
                format!("account[{i}].class"),
                format!(
                    "unknown class {:?} (classes: {})",
                    a.class,
                    known.join(", ")
                ),
            ));
        }
        let mut aliases = Vec::new();
        for (j, al) in a.aliases.into_iter().enumerate() {
            let al = al.to_ascii_lowercase();
            let field = format!("account[{i}].aliases[{j}]");
            check_address(&al, &domains).map_err(|m| ConfigError::field(&field, m))?;
            if let Some(what) = taken.insert(al.clone(), format!("an alias of account[{i}]")) {
                return Err(ConfigError::field(field, format!("{al} is already {what}")));
            }
            aliases.push(al);
        }
        accounts.push(AccountEntry {
            address,
            class: a.class,
            aliases,
        });
    }
    // Aliases may not shadow accounts declared after them either.
    let postmaster = match raw.postmaster {
        None => None,
        Some(p) => {
            let p = p.to_ascii_lowercase();
            if !accounts.iter().any(|a| a.address == p) {
                return Err(ConfigError::field(
                    "postmaster",
                    format!("{p} is not one of the accounts"),
                ));
            }
            Some(p)
        }
    };

    Ok(MailConfig {
        hostname,
        domains,
        listen,
        mynetworks,
        postmaster,
        ports,
        tls_cert: raw.tls.cert,
        tls_key: raw.tls.key,
        policy,
        classes,
        smtp,
        spam,
        clamav_database_directory,
        dkim,
        accounts,
    })
}

impl MailConfig {
    /// The account entry for `address`, if declared.
    pub fn account(&self, address: &str) -> Option<&AccountEntry> {
        self.accounts.iter().find(|a| a.address == address)
    }

    /// The class of service of `address`, if it is a declared account.
    pub fn class_of(&self, address: &str) -> Option<&ClassOfService> {
        self.account(address)
            .and_then(|a| self.classes.get(&a.class))
    }

    /// The domain part of `address` is one of ours.
    pub fn is_our_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

/// Checks that `directory` can hold the daemons' unix sockets and is absolute.
pub fn check_directory(dir: &Path) -> Result<(), ConfigError> {
    let s = dir.to_string_lossy();
    if !dir.is_absolute() {
        return Err(ConfigError::field(
            "directory",
            format!("{s} must be an absolute path"),
        ));
    }
    if s.len() > DIRECTORY_MAX_LEN {
        return Err(ConfigError::field(
            "directory",
            format!(
                "{s} is longer than {DIRECTORY_MAX_LEN} bytes: the unix sockets under it would not fit in sun_path"
            ),
        ));
    }
    if s.contains(char::is_whitespace) || s.contains(['"', '\'', '\\', '$', '%']) {
        return Err(ConfigError::field(
            "directory",
            format!("{s:?} has characters the daemons' configurations cannot quote"),
        ));
    }
    Ok(())
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fully qualified domain name: two or more DNS labels.
pub fn check_fqdn(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("{s:?} is longer than 253 characters"));
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{s:?} is not a fully qualified domain name"));
    }
    if let Some(bad) = labels.iter().find(|l| !is_label(l)) {
        return Err(format!("{s:?} has an invalid label {bad:?}"));
    }
    Ok(())
}

/// An address `local@domain` with a plain local part, in one of `domains`. The local part
/// takes the characters Dovecot accepts in a login (`auth_username_chars`), less `+`: that is
/// the recipient delimiter (`alice+news@` is delivered to `alice@`), and Dovecot refuses it in
/// user names, so an account with one could receive mail but never log in.
pub fn check_address(a: &str, domains: &[String]) -> Result<(), String> {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err(format!("{a:?} is not an address (local@domain)"));
    };
    if local.is_empty()
        || local.len() > 64
        || !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(format!(
            "{a:?}: the local part may hold letters, digits and . _ - only ('+' starts an address extension)"
        ));
    }
    if !domains.iter().any(|d| d == domain) {
        return Err(format!(
            "{a:?}: {domain} is not one of the configured domains"
        ));
    }
    Ok(())
}

fn check_cidr(s: &str) -> Result<(), String> {
    let inner = s
        .strip_prefix('[')
        .map(|r| r.replacen(']', "", 1))
        .unwrap_or_else(|| s.to_owned());
    let (addr, len) = inner
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a network (ADDRESS/LENGTH)"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("{s:?}: bad prefix length"))?;
    let (max, min) = if ip.is_ipv4() { (32, 8) } else { (128, 16) };
    if len > max {
        return Err(format!("{s:?}: prefix length above {max}"));
    }
    // mynetworks may relay without authentication: a network this wide makes an open relay.
    if len < min {
        return Err(format!(
            "{s:?}: a /{len} network may relay mail unauthenticated: that is an open relay (at least /{min})"
        ));
    }
    if ip.is_ipv6() && !s.starts_with('[') {
        return Err(format!("{s:?}: write IPv6 networks as [ADDRESS]/LENGTH"));
    }
    Ok(())
}

impl fmt::Display for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) on {}",
            self.hostname,
            self.domains.join(", "),
            self.listen
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
hostname = "mail.example.com"
domains = ["example.com"]
listen = "10.0.0.50"
"#;

    fn err(extra: &str) -> ConfigError {
        parse(&format!("{MINIMAL}{extra}")).unwrap_err()
    }

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn minimal_file_gets_the_thesis_policy() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.smtp.blocked_extensions.len(), 27);
        assert_eq!(c.spam.tag_tenths(), 66);
        assert_eq!(c.spam.kill_tenths(), 150);
        assert_eq!(c.policy.lockout_failures, 5);
        assert_eq!(c.policy.lockout_window, Span::hours(1));
        assert_eq!(c.policy.lockout_duration, Span::hours(1));
        let g = &c.classes["general"];
        assert!(g.imap && !g.pop3);
        assert_eq!(
            (
                g.password.min_length,
                g.password.min_upper,
                g.password.min_lower,
                g.password.min_digit
            ),
            (6, 1, 1, 1)
        );
        assert_eq!(g.password.max_age, Span::days(30));
        let a = &c.classes["admin"];
        assert!(a.pop3);
        assert_eq!((a.password.min_length, a.password.min_punct), (10, 1));
        assert_eq!(c.spam.training_spam, "spam.training@example.com");
        assert_eq!(c.dkim.selector, "tandem");
    }

    #[test]
    fn overriding_one_field_of_a_builtin_class_keeps_the_rest() {
        let c = parse(&format!(
            "{MINIMAL}[classes.admin]\npassword_min_length = 12\n[classes.staff]\npop3 = true\n"
        ))
        .unwrap();
        assert_eq!(c.classes["admin"].password.min_length, 12);
        assert_eq!(c.classes["admin"].password.min_punct, 1);
        assert!(c.classes["staff"].pop3);
        assert_eq!(c.classes["staff"].password.min_length, 6);
    }

    #[test]
    fn every_bad_value_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[smtp]\nblocked_extensions = [\"exe\", \"e x e\"]\n",
                "smtp.blocked_extensions[1]",
            ),
            (
                "[spam]\ntag_percent = 80\nkill_percent = 70\n",
                "spam.kill_percent",
            ),
            ("[spam]\ntag_percent = 0\n", "spam.tag_percent"),
            ("[policy]\nlisten = \"10.0.0.1:80\"\n", "policy.listen"),
            (
                "[policy]\nlockout_window = \"0s\"\n",
                "policy.lockout_window",
            ),
            (
                "[classes.general]\npassword_min_length = 0\n",
                "classes.general.password_min_length",
            ),
            (
                "[classes.admin]\npassword_max_length = 3\n",
                "classes.admin.password_max_length",
            ),
            (
                "[[account]]\naddress = \"bob@elsewhere.org\"\nclass = \"general\"\n",
                "account[0].address",
            ),
            (
                "[[account]]\naddress = \"bob@example.com\"\nclass = \"boss\"\n",
                "account[0].class",
            ),
            (
                "[[account]]\naddress = \"a@example.com\"\nclass = \"general\"\n[[account]]\naddress = \"b@example.com\"\nclass = \"admin\"\naliases = [\"a@example.com\"]\n",
                "account[1].aliases[0]",
            ),
            ("[dkim]\nselector = \"bad selector\"\n", "dkim.selector"),
            ("[dkim]\nkey_bits = 512\n", "dkim.key_bits"),
            ("[tls]\ncert = \"/etc/ssl/x.pem\"\n", "tls"),
            ("[ports]\nimap = 25\n", "ports.imap"),
            ("mynetworks = [\"10.0.0.0/33\"]\n", "mynetworks[0]"),
            (
                "mynetworks = [\"127.0.0.0/8\", \"0.0.0.0/0\"]\n",
                "mynetworks[1]",
            ),
            ("mynetworks = [\"[::]/0\"]\n", "mynetworks[0]"),
            ("postmaster = \"nobody@example.com\"\n", "postmaster"),
            (
                "[spam]\ntraining_spam = \"x@example.com\"\ntraining_ham = \"x@example.com\"\n",
                "spam.training_ham",
            ),
        ];
        for (extra, field) in cases {
            assert_eq!(&field_of(err(extra)), field, "for {extra:?}");
        }
        for (text, field) in [
            (
                "domains = [\"example.com\"]\nlisten = \"10.0.0.5\"\n",
                "hostname",
            ),
            (
                "hostname = \"mail\"\ndomains = [\"example.com\"]\nlisten = \"10.0.0.5\"\n",
                "hostname",
            ),
            (
                "hostname = \"mail.example.com\"\ndomains = []\nlisten = \"10.0.0.5\"\n",
                "domains",
            ),
            (
                "hostname = \"mail.example.com\"\ndomains = [\"example.com\"]\nlisten = \"0.0.0.0\"\n",
                "listen",
            ),
            (
                "hostname = \"mail.example.com\"\ndomains = [\"example.com\"]\nlisten = \"ten\"\n",
                "listen",
            ),
        ] {
            assert_eq!(field_of(parse(text).unwrap_err()), field, "for {text:?}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_syntax_errors_with_a_line() {
        let e = err("[smtp]\nblocked_extension = [\"exe\"]\n");
        let ConfigError::Syntax { message, .. } = e else {
            panic!("{e:?}")
        };
        assert!(
            message.contains("blocked_extension") && message.contains("line"),
            "{message}"
        );
        let e = err("[policy]\nlockout_failures = \"five\"\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn directory_must_fit_socket_paths() {
        assert!(check_directory(Path::new("/srv/mail")).is_ok());
        assert!(check_directory(Path::new("srv/mail")).is_err());
        assert!(check_directory(&PathBuf::from(format!("/{}", "x".repeat(70)))).is_err());
        assert!(check_directory(Path::new("/srv/my mail")).is_err());
    }

    #[test]
    fn address_rules() {
        let d = vec!["example.com".to_owned()];
        assert!(check_address("alice@example.com", &d).is_ok());
        assert!(check_address("a.b-c_d@example.com", &d).is_ok());
        for bad in [
            "alice",
            "@example.com",
            "al ice@example.com",
            "a%b@example.com",
            "a!b@example.com",
            ".a@example.com",
            "a..b@example.com",
            "\"a\"@example.com",
            "dan+x@example.com",
        ] {
            assert!(check_address(bad, &d).is_err(), "{bad}");
        }
    }
}

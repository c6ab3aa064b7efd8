//! Rendering every daemon's configuration from the one declarative file.
//!
//! The templates live in `mail-agent/templates/` (compiled into the binary); [`render`] is
//! pure: configuration + paths + secrets in, a list of files out. [`write`] puts them under
//! `DIRECTORY/run/conf`, which is recreated at every start, so nothing there is ever edited by
//! hand and a changed `mail.toml` takes effect at the next start.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::accounts::{MAIL_GID, MAIL_UID};
use crate::config::MailConfig;
use crate::layout::{Layout, s};

/// A template: its path under `templates/` (and under `run/conf/`), and its text.
struct Template {
    name: &'static str,
    text: &'static str,
    mode: u32,
    group: Group,
}

/// Which group owns a rendered file (its user is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// root.
    Root,
    /// dovecot (the file holds the policy service's key).
    Dovecot,
    /// debian-spamd.
    Spamd,
}

macro_rules! t {
    ($name:literal, $mode:literal, $group:expr) => {
        Template {
            name: $name,
            text: include_str!(concat!("../templates/", $name)),
            mode: $mode,
            group: $group,
        }
    };
}

const TEMPLATES: &[Template] = &[
    t!("postfix/main.cf", 0o644, Group::Root),
    t!("postfix/master.cf", 0o644, Group::Root),
    t!("postfix/virtual_mailboxes", 0o644, Group::Root),
    t!("postfix/virtual_aliases", 0o644, Group::Root),
    t!("postfix/sender_logins", 0o644, Group::Root),
    t!("postfix/local_sender_domains", 0o644, Group::Root),
    t!("postfix/restricted_recipients", 0o644, Group::Root),
    t!("postfix/local_recipients", 0o644, Group::Root),
    t!("dovecot/dovecot.conf", 0o640, Group::Dovecot),
    t!("dovecot/spam-to-junk.sieve", 0o644, Group::Root),
    t!("spamassassin/local.cf", 0o644, Group::Spamd),
    t!("clamav/clamd.conf", 0o644, Group::Root),
    t!("clamav/clamav-milter.conf", 0o644, Group::Root),
    t!("opendkim/opendkim.conf", 0o644, Group::Root),
    t!("opendkim/KeyTable", 0o644, Group::Root),
    t!("opendkim/SigningTable", 0o644, Group::Root),
    t!("opendkim/InternalHosts", 0o644, Group::Root),
];

/// Secrets shared by the daemons and the agent, kept under `state/secrets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// The auth-policy service's API key (Dovecot sends it as `X-Tandem-Key`).
    pub policy_key: String,
    /// Dovecot's `auth_policy_hash_nonce`.
    pub policy_nonce: String,
    /// The monitor's probe mailbox password.
    pub probe_password: String,
}

/// A DKIM key in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkimKey {
    /// Signing domain.
    pub domain: String,
    /// Selector.
    pub selector: String,
    /// Private key file.
    pub key: String,
}

/// Everything a rendering needs besides the configuration.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The configuration.
    pub cfg: &'a MailConfig,
    /// The paths.
    pub layout: &'a Layout,
    /// Where the configuration was read from (named in every file's header).
    pub config_path: &'a Path,
    /// Secrets.
    pub secrets: &'a Secrets,
    /// TLS certificate in use.
    pub tls_cert: PathBuf,
    /// TLS key in use.
    pub tls_key: PathBuf,
    /// ClamAV databases.
    pub clamav_db: PathBuf,
    /// DKIM keys.
    pub dkim_keys: Vec<DkimKey>,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Path relative to `run/conf`.
    pub rel: &'static str,
    /// Contents.
    pub text: String,
    /// Permissions.
    pub mode: u32,
    /// Group.
    pub group: Group,
}

#[derive(Serialize)]
struct Pair {
    from: String,
    to: String,
}

#[derive(Serialize)]
struct Context<'a> {
    config_path: String,
    directory: String,
    hostname: &'a str,
    domains: &'a [String],
    listen: String,
    listen_host: String,
    listen_v6: bool,
    mynetworks: &'a [String],
    internal_hosts: Vec<String>,
    ports: &'a crate::config::Ports,
    message_size_limit: u64,
    postfix_conf: String,
    postfix_queue: String,
    postfix_data: String,
    lmtp_socket: String,
    sasl_socket: String,
    clamd_socket: String,
    clamav_milter_socket: String,
    spamass_milter_socket: String,
    opendkim_socket: String,
    attachment_filter_socket: String,
    tls_cert: String,
    tls_key: String,
    client_checks: bool,
    helo_checks: bool,
    sender_checks: bool,
    rbls: &'a [String],
    blocked_extensions: Vec<String>,
    accepting_mailboxes: Vec<String>,
    aliases: Vec<Pair>,
    sender_logins: Vec<Pair>,
    sender_hosts: Vec<String>,
    training_spam: &'a str,
    training_ham: &'a str,
    dovecot_base: String,
    dovecot_state: String,
    policy_listen: String,
    policy_key: &'a str,
    policy_nonce: &'a str,
    passdb: String,
    userdb: String,
    mail_uid: u32,
    mail_gid: u32,
    sieve_before: String,
    spam_tag: String,
    spam_kill: String,
    spam_tag_percent: u32,
    spam_kill_percent: u32,
    spam_range: u32,
    bayes_dir: String,
    local_rules: &'a str,
    run: String,
    conf: String,
    clamav_db: String,
    dkim_keys: &'a [DkimKey],
}

/// Tenths of a point as `6.6`.
pub fn tenths(t: u32) -> String {
    format!("{}.{}", t / 10, t % 10)
}

/// Renders every template. Pure.
pub fn render(i: &Inputs<'_>) -> Result<Vec<Rendered>, minijinja::Error> {
    let cfg = i.cfg;
    let l = i.layout;
    let listen = cfg.listen.to_string();
    let listen_v6 = cfg.listen.is_ipv6();
    let mut aliases = Vec::new();
    for a in &cfg.accounts {
        for al in &a.aliases {
            aliases.push(Pair {
                from: al.clone(),
                to: a.address.clone(),
            });
        }
    }
    if let Some(pm) = &cfg.postmaster {
        for d in &cfg.domains {
            for local in ["postmaster", "abuse"] {
                let from = format!("{local}@{d}");
                if cfg.account(&from).is_none() && !aliases.iter().any(|p| p.from == from) {
                    aliases.push(Pair {
                        from,
                        to: pm.clone(),
                    });
                }
            }
        }
    }
    let mut sender_logins: Vec<Pair> = cfg
        .accounts
        .iter()
        .map(|a| Pair {
            from: a.address.clone(),
            to: a.address.clone(),
        })
        .collect();
    for a in &cfg.accounts {
        for al in &a.aliases {
            sender_logins.push(Pair {
                from: al.clone(),
                to: a.address.clone(),
            });
        }
    }
    let mut accepting: Vec<String> = cfg.accounts.iter().map(|a| a.address.clone()).collect();
    accepting.push(cfg.spam.training_spam.clone());
    accepting.push(cfg.spam.training_ham.clone());
    // This host as a sender domain: its name (unless it is one of the domains, listed
    // already) and its address literal as Postfix spells it in lookups.
    let mut sender_hosts = Vec::new();
    if !cfg.domains.contains(&cfg.hostname) {
        sender_hosts.push(cfg.hostname.clone());
    }
    sender_hosts.push(match cfg.listen {
        std::net::IpAddr::V4(a) => format!("[{a}]"),
        std::net::IpAddr::V6(a) => format!("[ipv6:{a}]"),
    });
    let internal_hosts = cfg
        .mynetworks
        .iter()
        .map(|n| n.replace(['[', ']'], ""))
        .collect();
    let ctx = Context {
        config_path: s(i.config_path),
        directory: s(&l.root),
        hostname: &cfg.hostname,
        domains: &cfg.domains,
        listen_host: if listen_v6 {
            format!("[{listen}]")
        } else {
            listen.clone()
        },
        listen,
        listen_v6,
        mynetworks: &cfg.mynetworks,
        internal_hosts,
        ports: &cfg.ports,
        message_size_limit: u64::from(cfg.smtp.max_message_size_mib) * 1024 * 1024,
        postfix_conf: s(&l.postfix_conf()),
        postfix_queue: s(&l.postfix_queue()),
        postfix_data: s(&l.postfix_data()),
        lmtp_socket: s(&l.lmtp_socket()),
        sasl_socket: s(&l.sasl_socket()),
        clamd_socket: s(&l.clamd_socket()),
        clamav_milter_socket: s(&l.clamav_milter_socket()),
        spamass_milter_socket: s(&l.spamass_milter_socket()),
        opendkim_socket: s(&l.opendkim_socket()),
        attachment_filter_socket: s(&l.attachment_filter_socket()),
        tls_cert: s(&i.tls_cert),
        tls_key: s(&i.tls_key),
        client_checks: cfg.smtp.client_checks,
        helo_checks: cfg.smtp.helo_checks,
        sender_checks: cfg.smtp.sender_checks,
        rbls: &cfg.smtp.rbls,
        blocked_extensions: cfg.smtp.blocked_extensions.clone(),
        accepting_mailboxes: accepting,
        aliases,
        sender_logins,
        sender_hosts,
        training_spam: &cfg.spam.training_spam,
        training_ham: &cfg.spam.training_ham,
        dovecot_base: s(&l.dovecot_base()),
        dovecot_state: s(&l.dovecot_state()),
        policy_listen: cfg.policy.listen.to_string(),
        policy_key: &i.secrets.policy_key,
        policy_nonce: &i.secrets.policy_nonce,
        passdb: s(&l.passdb_file()),
        userdb: s(&l.userdb_file()),
        mail_uid: MAIL_UID,
        mail_gid: MAIL_GID,
        sieve_before: s(&l.conf_file("dovecot/spam-to-junk.sieve")),
        spam_tag: tenths(cfg.spam.tag_tenths()),
        spam_kill: tenths(cfg.spam.kill_tenths()),
        spam_tag_percent: cfg.spam.tag_percent,
        spam_kill_percent: cfg.spam.kill_percent,
        spam_range: crate::config::SPAM_PERCENT_RANGE_POINTS,
        bayes_dir: s(&l.bayes_dir()),
        local_rules: &cfg.spam.local_rules,
        run: s(&l.run()),
        conf: s(&l.conf()),
        clamav_db: s(&i.clamav_db),
        dkim_keys: &i.dkim_keys,
    };
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for t in TEMPLATES {
        env.add_template(t.name, t.text)?;
    }
    let mut out = Vec::new();
    for t in TEMPLATES {
        let text = env
            .get_template(t.name)?
            .render(minijinja::value::Serde(&ctx))?;
        out.push(Rendered {
            rel: t.name,
            text,
            mode: t.mode,
            group: t.group,
        });
    }
    // The probe mailbox (accounts::PROBE_LOCAL) is deliberately absent from Postfix's maps.
    Ok(out)
}

/// Writes rendered files under `run/conf` with their modes and groups; `gid_of` resolves a
/// group to its id on this node.
pub fn write(
    layout: &Layout,
    files: &[Rendered],
    gid_of: &dyn Fn(Group) -> u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for f in files {
        let path = layout.conf().join(f.rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &f.text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(gid_of(f.group))),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CFG: &str = r#"
hostname = "mail.example.com"
domains = ["example.com", "example.org"]
listen = "10.0.0.50"
postmaster = "boss@example.com"
[smtp]
rbls = ["zen.example.net"]
[[account]]
address = "boss@example.com"
class = "admin"
aliases = ["info@example.org"]
"#;

    fn rendered(cfg: &MailConfig) -> Vec<Rendered> {
        let layout = Layout::new("/srv/mail");
        let secrets = Secrets {
            policy_key: "KEY".into(),
            policy_nonce: "NONCE".into(),
            probe_password: "P".into(),
        };
        let inputs = Inputs {
            cfg,
            layout: &layout,
            config_path: Path::new("/srv/mail/mail.toml"),
            secrets: &secrets,
            tls_cert: "/srv/mail/state/tls/cert.pem".into(),
            tls_key: "/srv/mail/state/tls/key.pem".into(),
            clamav_db: "/srv/mail/state/clamav".into(),
            dkim_keys: vec![DkimKey {
                domain: "example.com".into(),
                selector: "tandem".into(),
                key: "/k".into(),
            }],
        };
        render(&inputs).unwrap()
    }

    fn file<'a>(files: &'a [Rendered], rel: &str) -> &'a str {
        &files.iter().find(|f| f.rel == rel).unwrap().text
    }

    #[test]
    fn main_cf_carries_the_thesis_policy() {
        let cfg = crate::config::parse(CFG).unwrap();
        let files = rendered(&cfg);
        let main = file(&files, "postfix/main.cf");
        for line in [
            "queue_directory = /srv/mail/state/postfix/spool",
            "smtpd_tls_auth_only = yes",
            "allow_percent_hack = no",
            "swap_bangpath = no",
            "virtual_mailbox_domains = example.com example.org",
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_client_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unknown_reverse_client_hostname, reject_unknown_client_hostname, reject_rbl_client zen.example.net",
            "smtpd_helo_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
            "smtp_bind_address = 10.0.0.50",
            "virtual_transport = lmtp:unix:/srv/mail/run/lmtp.sock",
        ] {
            assert!(
                main.lines().any(|l| l == line),
                "missing {line:?} in\n{main}"
            );
        }
        assert!(
            main.contains("reject_non_fqdn_sender")
                && main.contains("reject_unknown_sender_domain")
        );
        let master = file(&files, "postfix/master.cf");
        assert!(master.contains("10.0.0.50:25  inet"));
        assert!(
            master.contains("10.0.0.50:587  inet")
                && master.contains("smtpd_tls_security_level=encrypt")
        );
        assert!(!master.contains(" y "), "nothing chrooted");
    }

    #[test]
    fn maps_list_mailboxes_aliases_and_postmaster() {
        let cfg = crate::config::parse(CFG).unwrap();
        let files = rendered(&cfg);
        let mb = file(&files, "postfix/virtual_mailboxes");
        assert!(mb.contains("boss@example.com boss@example.com\n"));
        assert!(mb.contains("spam.training@example.com spam.training@example.com\n"));
        assert!(
            !mb.contains("tandem-probe"),
            "the probe takes no mail from outside"
        );
        let al = file(&files, "postfix/virtual_aliases");
        for l in [
            "info@example.org boss@example.com",
            "postmaster@example.org boss@example.com",
            "abuse@example.com boss@example.com",
        ] {
            assert!(al.contains(l), "{al}");
        }
        let sl = file(&files, "postfix/sender_logins");
        assert!(sl.contains("info@example.org boss@example.com"));
        let rr = file(&files, "postfix/restricted_recipients");
        assert!(rr.contains("ham.training@example.com authenticated_only"));
    }

    #[test]
    fn this_host_as_sender_needs_authentication() {
        let cfg =
            crate::config::parse(&CFG.replace("mail.example.com", "mx.provider.net")).unwrap();
        let lsd = file(&rendered(&cfg), "postfix/local_sender_domains").to_owned();
        for key in [
            "example.com",
            "example.org",
            "mx.provider.net",
            "[10.0.0.50]",
        ] {
            assert!(
                lsd.lines()
                    .any(|l| l.starts_with(&format!("{key} REJECT "))),
                "{key} missing in\n{lsd}"
            );
        }
        let cfg = crate::config::parse(&CFG.replace("10.0.0.50", "fd00::50")).unwrap();
        let lsd = file(&rendered(&cfg), "postfix/local_sender_domains").to_owned();
        assert!(lsd.contains("\n[ipv6:fd00::50] REJECT "), "{lsd}");
    }

    #[test]
    fn the_attachment_filter_comes_first_for_mail_from_outside_only() {
        let cfg = crate::config::parse(CFG).unwrap();
        let main = file(&rendered(&cfg), "postfix/main.cf").to_owned();
        let line = |k: &str| {
            main.lines()
                .find(|l| l.starts_with(&format!("{k} = ")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            line("smtpd_milters")
                .starts_with("smtpd_milters = unix:/srv/mail/run/milter/tandem/milter.sock, "),
            "{main}"
        );
        assert!(!line("non_smtpd_milters").contains("tandem"), "{main}");
        assert!(
            !main.contains("mime_header_checks"),
            "one check, in one place"
        );
    }

    #[test]
    fn spam_scores_follow_zimbra_percentages() {
        let cfg = crate::config::parse(CFG).unwrap();
        let files = rendered(&cfg);
        let lc = file(&files, "spamassassin/local.cf");
        assert!(lc.lines().any(|l| l == "required_score 6.6"), "{lc}");
        assert!(lc.contains("bayes_path /srv/mail/state/spamassassin/bayes"));
        assert_eq!(tenths(150), "15.0");
    }

    #[test]
    fn dovecot_points_at_the_policy_service_and_the_mount() {
        let cfg = crate::config::parse(CFG).unwrap();
        let files = rendered(&cfg);
        let d = file(&files, "dovecot/dovecot.conf");
        for line in [
            "auth_policy_server_url = http://127.0.0.1:10089/",
            "auth_policy_server_api_header = X-Tandem-Key:KEY",
            "auth_policy_hash_nonce = NONCE",
            "auth_policy_reject_on_fail = yes",
            "base_dir = /srv/mail/run/dovecot",
            "state_dir = /srv/mail/state/dovecot",
            "ssl = required",
            "listen = 10.0.0.50",
        ] {
            assert!(d.lines().any(|l| l == line), "missing {line:?}");
        }
        assert!(d.contains("authenticated=%{passdb:tandem_authenticated}"));
        let dk = file(&files, "opendkim/KeyTable");
        assert_eq!(dk, "tandem._domainkey.example.com example.com:tandem:/k\n");
    }

    #[test]
    fn ipv6_listen_addresses_are_bracketed_for_postfix() {
        let cfg = crate::config::parse(&CFG.replace("10.0.0.50", "fd00::50")).unwrap();
        let files = rendered(&cfg);
        assert!(file(&files, "postfix/master.cf").contains("[fd00::50]:25  inet"));
        assert!(file(&files, "postfix/main.cf").contains("smtp_bind_address6 = fd00::50"));
    }
}

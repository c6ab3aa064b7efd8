//! Bayes training from the two training mailboxes, as Zimbra's `zmtrainsa` did: users send
//! (or forward as attachment) spam to `spam.training@` and wrongly marked mail to
//! `ham.training@`; the supervisor runs this every `spam.train_interval`, or the administrator
//! runs `tandem-mail train`. Learned messages are removed from the training mailbox.
//!
//! A message that carries `message/rfc822` attachments is learned as those attachments (the
//! forwarded originals), otherwise as itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::config::MailConfig;
use crate::layout::{Layout, s};

/// Most messages learned per mailbox per run; the rest wait for the next run (bounds the run's
/// time and its temporary space).
pub const MAX_PER_RUN: usize = 5000;

/// What a run learned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Messages learned as spam.
    pub spam: usize,
    /// Messages learned as ham.
    pub ham: usize,
}

/// The header block and body of a message or part (split at the first empty line).
fn split_head(msg: &[u8]) -> (&[u8], &[u8]) {
    for (i, w) in msg.windows(2).enumerate() {
        if w == b"\n\n" {
            return (&msg[..i + 1], &msg[i + 2..]);
        }
        if i + 3 < msg.len() && &msg[i..i + 4] == b"\r\n\r\n" {
            return (&msg[..i + 2], &msg[i + 4..]);
        }
    }
    (msg, &[])
}

/// The value of header `name` (unfolded), if present.
fn header(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            return value;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    let i = lower.find("boundary=")?;
    let rest = &content_type[i + "boundary=".len()..];
    let b = if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()?
    } else {
        rest.split([';', ' ', '\t']).next()?
    };
    (!b.is_empty()).then(|| b.to_owned())
}

/// The messages to learn from one training message: its `message/rfc822` parts (searched
/// through nested multiparts), or the message itself when it has none. Pure.
pub fn messages_to_learn(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    collect_rfc822(msg, 0, &mut found);
    if found.is_empty() {
        vec![msg.to_vec()]
    } else {
        found
    }
}

fn collect_rfc822(entity: &[u8], depth: usize, out: &mut Vec<Vec<u8>>) {
    if depth > 8 {
        return;
    }
    let (head, body) = split_head(entity);
    let Some(ct) = header(head, "Content-Type") else {
        return;
    };
    let Some(b) = boundary(&ct) else { return };
    let delim = format!("--{b}");
    let text = body;
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(text.len(), |i| pos + i + 1);
        let line = &text[pos..end];
        let trimmed = String::from_utf8_lossy(line);
        let trimmed = trimmed.trim_end();
        if trimmed == delim || trimmed == format!("{delim}--") {
            if let Some(s) = start {
                parts.push(&text[s..pos]);
            }
            if trimmed.ends_with("--") && trimmed != delim {
                break;
            }
            start = Some(end);
        }
        pos = end;
    }
    for p in parts {
        let (ph, pb) = split_head(p);
        let pct = header(ph, "Content-Type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if pct.starts_with("message/rfc822") {
            out.push(pb.to_vec());
        } else if pct.starts_with("multipart/") {
            collect_rfc822(p, depth + 1, out);
        }
    }
}

fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            v.extend(
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    v.sort();
    v.truncate(MAX_PER_RUN);
    v
}

/// Learns from both training mailboxes.
pub fn train(cfg: &MailConfig, layout: &Layout) -> anyhow::Result<Report> {
    let owners = crate::owners::Owners::current()
        .map_err(|(w, p)| anyhow::anyhow!("{w} missing (package {p})"))?;
    let (uid, gid) = (owners.uid("debian-spamd"), owners.gid("debian-spamd"));
    let mut report = Report::default();
    for (mailbox, flag) in [
        (&cfg.spam.training_spam, "--spam"),
        (&cfg.spam.training_ham, "--ham"),
    ] {
        let maildir = layout.home(mailbox).join("Maildir");
        let files = maildir_files(&maildir);
        if files.is_empty() {
            continue;
        }
        // The messages go to a temporary directory sa-learn (as debian-spamd) can read.
        let tmp = tempdir_for(uid, gid)?;
        let mut n = 0usize;
        for f in &files {
            let raw = std::fs::read(f)?;
            for m in messages_to_learn(&raw) {
                let p = tmp.join(format!("{n}.eml"));
                std::fs::write(&p, m)?;
                nix::unistd::chown(
                    &p,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )?;
                n += 1;
            }
        }
        let out = Command::new("/usr/bin/sa-learn")
            .arg(flag)
            .arg(format!(
                "--siteconfigpath={}",
                s(&layout.spamassassin_conf())
            ))
            .arg(&tmp)
            .uid(uid)
            .gid(gid)
            .env("HOME", s(&layout.bayes_dir()))
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&tmp);
        let out = out?;
        if !out.status.success() {
            anyhow::bail!(
                "sa-learn {flag} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        eprintln!(
            "train: {mailbox}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        for f in &files {
            std::fs::remove_file(f)?;
        }
        if flag == "--spam" {
            report.spam += n;
        } else {
            report.ham += n;
        }
    }
    Ok(report)
}

use std::os::unix::process::CommandExt;

fn tempdir_for(uid: u32, gid: u32) -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!(
        "tandem-mail-train-{}-{}",
        std::process::id(),
        crate::setup::random_hex(4)
    ));
    std::fs::create_dir(&p)?;
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )?;
    Ok(p)
}

/// The Bayes database's counts (`sa-learn --dump magic`): (spam, ham) learned.
pub fn bayes_counts(layout: &Layout) -> anyhow::Result<(u64, u64)> {
    let owners = crate::owners::Owners::current()
        .map_err(|(w, p)| anyhow::anyhow!("{w} missing (package {p})"))?;
    let out = Command::new("/usr/bin/sa-learn")
        .arg("--dump")
        .arg("magic")
        .arg(format!(
            "--siteconfigpath={}",
            s(&layout.spamassassin_conf())
        ))
        .uid(owners.uid("debian-spamd"))
        .gid(owners.gid("debian-spamd"))
        .env("HOME", s(&layout.bayes_dir()))
        .current_dir("/")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find(|l| l.contains(&format!("non-token data: {key}")))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
    };
    match (get("nspam"), get("nham")) {
        (Some(s), Some(h)) => Ok((s, h)),
        _ => anyhow::bail!(
            "no Bayes database yet ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_is_learned_as_itself() {
        let m = b"From: a@b\nSubject: buy\n\nbody\n";
        assert_eq!(messages_to_learn(m), vec![m.to_vec()]);
    }

    #[test]
    fn forwarded_attachments_are_learned_instead() {
        let m = b"From: user@example.com\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nthis is spam\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: spammer@x\r\nSubject: pills\r\n\r\nbuy now\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: message/rfc822; name=x.eml\r\n\r\nFrom: s2@x\r\n\r\nmore\r\n--YY--\r\n--XX--\r\n";
        let got = messages_to_learn(m);
        assert_eq!(got.len(), 2);
        assert!(
            got[0].starts_with(b"From: spammer@x\r\nSubject: pills"),
            "{}",
            String::from_utf8_lossy(&got[0])
        );
        assert!(got[1].starts_with(b"From: s2@x"));
    }

    #[test]
    fn header_and_boundary_parsing() {
        let head = b"Content-Type: multipart/mixed;\n\tboundary=abc\nX: y\n";
        assert_eq!(
            header(head, "content-type").as_deref(),
            Some("multipart/mixed; boundary=abc")
        );
        assert_eq!(
            boundary("multipart/mixed; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("text/plain; boundary=abc"), None);
        assert_eq!(
            boundary("multipart/mixed; boundary=\"a b\""),
            Some("a b".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = messages_to_learn(&bytes);
        }
    }
}

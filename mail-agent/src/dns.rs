//! `dns-records`: the records to publish so that other servers deliver to us and trust what
//! we send: A of the host name, MX, SPF, DKIM, DMARC, and the PTR to ask for. Pure, given the
//! DKIM public records.

use std::net::IpAddr;

use serde::Serialize;

use crate::config::MailConfig;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Owner name, fully qualified, with the trailing dot.
    pub name: String,
    /// Type: A, AAAA, MX, TXT, PTR.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Data as it appears in a zone file (TXT split into quoted strings of at most 255 bytes).
    pub data: String,
    /// The unsplit text of a TXT record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What it is for.
    pub comment: String,
}

/// Splits `text` into quoted strings of at most 255 bytes (RFC 1035 character-strings).
pub fn txt_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    bytes
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reverse-lookup name of `ip`.
pub fn ptr_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

fn txt(name: String, text: String, comment: &str) -> Record {
    Record {
        name,
        rtype: "TXT".into(),
        data: txt_strings(&text),
        text: Some(text),
        comment: comment.into(),
    }
}

/// Every record, given each domain's DKIM public record (`v=DKIM1; k=rsa; p=...`).
pub fn records(cfg: &MailConfig, dkim: &[(String, String)]) -> Vec<Record> {
    let host = format!("{}.", cfg.hostname);
    let mut v = vec![Record {
        name: host.clone(),
        rtype: if cfg.listen.is_ipv4() { "A" } else { "AAAA" }.into(),
        data: cfg.listen.to_string(),
        text: None,
        comment: "the server (the cluster's virtual IP)".into(),
    }];
    for d in &cfg.domains {
        let zone = format!("{d}.");
        v.push(Record {
            name: zone.clone(),
            rtype: "MX".into(),
            data: format!("10 {host}"),
            text: None,
            comment: format!("mail for {d} goes to {}", cfg.hostname),
        });
        v.push(txt(
            zone.clone(),
            "v=spf1 mx -all".into(),
            "SPF: only our MX sends for the domain",
        ));
        if let Some((_, rec)) = dkim.iter().find(|(dom, _)| dom == d) {
            v.push(txt(
                format!("{}._domainkey.{zone}", cfg.dkim.selector),
                rec.clone(),
                "DKIM public key (OpenDKIM signs with its private half)",
            ));
        }
        let rua = match &cfg.postmaster {
            Some(_) => format!("; rua=mailto:postmaster@{d}"),
            None => String::new(),
        };
        v.push(txt(
            format!("_dmarc.{zone}"),
            format!("v=DMARC1; p=quarantine; adkim=r; aspf=r{rua}"),
            "DMARC: unauthenticated mail claiming the domain is quarantined",
        ));
    }
    v.push(Record {
        name: ptr_name(cfg.listen),
        rtype: "PTR".into(),
        data: host,
        text: None,
        comment: "reverse DNS: ask whoever owns the address block".into(),
    });
    v
}

/// Zone-file text.
pub fn zone_text(records: &[Record]) -> String {
    let width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for r in records {
        s.push_str(&format!(
            "; {}\n{:width$}  IN {:<4} {}\n",
            r.comment, r.name, r.rtype, r.data
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_for_a_domain() {
        let cfg = crate::config::parse("hostname = \"mail.example.com\"\ndomains = [\"example.com\"]\nlisten = \"10.0.0.50\"\n").unwrap();
        let key = format!("v=DKIM1; h=sha256; k=rsa; p={}", "A".repeat(400));
        let r = records(&cfg, &[("example.com".into(), key.clone())]);
        let get = |name: &str, t: &str| {
            r.iter()
                .find(|x| x.name == name && x.rtype == t)
                .unwrap_or_else(|| panic!("{name} {t}"))
        };
        assert_eq!(get("mail.example.com.", "A").data, "10.0.0.50");
        assert_eq!(get("example.com.", "MX").data, "10 mail.example.com.");
        assert_eq!(get("example.com.", "TXT").data, "\"v=spf1 mx -all\"");
        let dk = get("tandem._domainkey.example.com.", "TXT");
        assert_eq!(dk.text.as_deref(), Some(key.as_str()));
        assert!(
            dk.data.starts_with("\"v=DKIM1") && dk.data.contains("\" \""),
            "split into strings"
        );
        assert!(
            get("_dmarc.example.com.", "TXT")
                .data
                .contains("p=quarantine")
        );
        assert_eq!(
            get("50.0.0.10.in-addr.arpa.", "PTR").data,
            "mail.example.com."
        );
        assert!(zone_text(&r).contains("IN MX   10 mail.example.com."));
    }

    #[test]
    fn ipv6_ptr() {
        assert_eq!(
            ptr_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[test]
    fn txt_strings_are_at_most_255_bytes() {
        let s = txt_strings(&"x".repeat(600));
        let parts: Vec<&str> = s.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 257);
    }
}

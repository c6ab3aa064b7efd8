//! Soak (ignored by default; `mail-agent/scripts/soak` runs it): a load of messages through
//! the whole filter chain (ClamAV, SpamAssassin, OpenDKIM) with Postfix's own `smtp-source`,
//! every one delivered, then repeated stop/start cycles with nothing lost. Prints throughput
//! figures; asserts only on correctness.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_testkit::wait;

fn inbox_count(agent: &Agent, user: &str) -> u64 {
    let conf = agent.dir.join("run/conf/dovecot/dovecot.conf");
    let (_, out) = agent.mx.run_status(
        "doveadm",
        &[
            "-c",
            &conf.to_string_lossy(),
            "mailbox",
            "status",
            "-u",
            user,
            "messages",
            "INBOX",
        ],
    );
    // "INBOX messages=N" (stderr, merged in, may hold warnings)
    out.lines()
        .find_map(|l| l.strip_prefix("INBOX messages="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "soak: run with mail-agent/scripts/soak"]
fn soak_load_and_restarts() {
    let messages: u64 = std::env::var("SOAK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sessions: u64 = std::env::var("SOAK_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let cycles: u32 = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut w = World::new();
    w.start_dns(&[]);
    let dir = test_dir("k");
    let d = dir.path().to_path_buf();
    prepare_directory(&d, &config(&w.mx.addr, "1h"), w.work.path());
    let mut agent = Agent::new(&w.mx, &d);
    agent.add_account("alice@example.com", "general", "Alice1");
    let t = Instant::now();
    agent.start();
    eprintln!("start: {:.1}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (code, out) = w.client.host.run_status(
        "smtp-source",
        &[
            "-c",
            "-m",
            &messages.to_string(),
            "-s",
            &sessions.to_string(),
            "-l",
            "4096",
            "-M",
            "client.example.net",
            "-f",
            "bob@example.net",
            "-t",
            "alice@example.com",
            "-S",
            "soak message",
            &format!("{}:25", w.mx.addr),
        ],
    );
    assert_eq!(code, 0, "smtp-source: {out}");
    let accepted = t.elapsed();
    wait::until("every message delivered", Duration::from_secs(900), || {
        inbox_count(&agent, "alice@example.com") >= messages
    });
    let delivered = t.elapsed();
    assert_eq!(
        inbox_count(&agent, "alice@example.com"),
        messages,
        "exactly once"
    );
    eprintln!(
        "load: {messages} messages of 4 KiB over {sessions} sessions accepted in {:.1}s ({:.1} msg/s), delivered through ClamAV, SpamAssassin and OpenDKIM in {:.1}s ({:.1} msg/s)",
        accepted.as_secs_f64(),
        messages as f64 / accepted.as_secs_f64(),
        delivered.as_secs_f64(),
        messages as f64 / delivered.as_secs_f64()
    );

    for i in 0..cycles {
        let t = Instant::now();
        agent.stop();
        let stopped = t.elapsed();
        assert!(
            tandem_mail::procs::holders(&d, &[]).is_empty(),
            "cycle {i}: processes left"
        );
        let t = Instant::now();
        agent.start();
        let started = t.elapsed();
        let (code, out) = agent.ocf("monitor", 20);
        assert_eq!(code, 0, "cycle {i}: {out}");
        assert_eq!(
            inbox_count(&agent, "alice@example.com"),
            messages,
            "cycle {i}: mail kept"
        );
        eprintln!(
            "cycle {i}: stop {:.1}s, start {:.1}s",
            stopped.as_secs_f64(),
            started.as_secs_f64()
        );
    }
    agent.stop();
}

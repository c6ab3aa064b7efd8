//! The agent as a cluster manager sees it: `ocf-tester` (resource-agents) passes; bad
//! configurations are `OCF_ERR_CONFIGURED` naming the field; a probe where the filesystem is
//! not mounted is "not running"; a crashed daemon is restarted by the supervisor; a killed
//! supervisor is reported and cleaned up by `stop`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tandem_testkit::wait;

fn ocf(action: &str, vars: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env_remove("OCF_RESKEY_directory")
        .env_remove("OCF_RESKEY_config");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bad_configurations_are_err_configured_naming_the_field() {
    let dir = test_dir("v");
    let d = dir.path();
    let work = tempfile::tempdir().unwrap();
    let base = config("10.1.2.3", "1h");
    prepare_directory(d, &base, work.path());
    let ds = d.to_string_lossy().into_owned();
    let dir_var = ("OCF_RESKEY_directory", ds.as_str());
    assert_eq!(
        ocf("validate-all", &[dir_var]).0,
        0,
        "{}",
        ocf("validate-all", &[dir_var]).1
    );

    // (mail.toml text, what the exit reason must name)
    let table: Vec<(String, &str)> = vec![
        (
            base.replace("listen = \"10.1.2.3\"", "listen = \"10.1.2\""),
            "field `listen`",
        ),
        (
            format!("{base}\n[smtp]\nblocked_extensions = [\"exe\", \"e x e\"]\n"),
            "field `smtp.blocked_extensions[1]`",
        ),
        (
            format!("{base}\n[dkim]\nkey_bits = 512\n"),
            "field `dkim.key_bits`",
        ),
        (
            base.replace("lockout_duration = \"1h\"", "lockout_duration = \"0s\""),
            "field `policy.lockout_duration`",
        ),
        (
            format!("{base}\n[[account]]\naddress = \"x@example.com\"\nclass = \"boss\"\n"),
            "field `account[1].class`",
        ),
        (
            base.replace("[policy]", "[policy]\nlisten = \"0.0.0.0:80\""),
            "field `policy.listen`",
        ),
        (
            format!("{base}\nfrobnicate = true\n"),
            "unknown field `frobnicate`",
        ),
        (
            base.replace("hostname = \"mail.example.com\"", ""),
            "field `hostname`",
        ),
    ];
    for (text, want) in &table {
        std::fs::write(d.join("mail.toml"), text).unwrap();
        for action in ["validate-all", "start"] {
            let (code, out) = ocf(action, &[dir_var]);
            assert_eq!(code, 6, "{action} with {want}: {out}");
            assert!(
                out.contains("ocf-exit-reason:") && out.contains(want),
                "{action}: reason should name {want}: {out}"
            );
        }
    }
    std::fs::write(d.join("mail.toml"), &base).unwrap();

    // Parameters.
    let (code, out) = ocf("validate-all", &[]);
    assert!(
        code == 6 && out.contains("parameter directory is required"),
        "{out}"
    );
    let (code, out) = ocf("validate-all", &[("OCF_RESKEY_directory", "relative/dir")]);
    assert!(code == 6 && out.contains("parameter directory"), "{out}");
    let (code, out) = ocf(
        "validate-all",
        &[dir_var, ("OCF_RESKEY_config", "/nonexistent/mail.toml")],
    );
    assert!(code == 6 && out.contains("/nonexistent/mail.toml"), "{out}");

    // No ClamAV database.
    std::fs::remove_file(d.join("state/clamav/tandem-test.hdb")).unwrap();
    let (code, out) = ocf("validate-all", &[dir_var]);
    assert!(
        code == 6 && out.contains("antivirus.database_directory"),
        "{out}"
    );

    // A directory below a world-writable one: OpenDKIM would refuse its keys.
    let unsafe_dir = tempfile::tempdir().unwrap();
    prepare_directory(unsafe_dir.path(), &base, work.path());
    let us = unsafe_dir.path().to_string_lossy().into_owned();
    let (code, out) = ocf("validate-all", &[("OCF_RESKEY_directory", &us)]);
    assert!(
        code == 6 && out.contains("field `directory`") && out.contains("OpenDKIM"),
        "{out}"
    );

    // The filesystem is not mounted here (a probe on the passive node): not running, and stop
    // succeeds; neither is a configuration error.
    let absent = [("OCF_RESKEY_directory", "/run/tandem-mail-tests/not-mounted")];
    assert_eq!(ocf("monitor", &absent).0, 7);
    assert_eq!(ocf("stop", &absent).0, 0);

    // meta-data is valid against the OCF DTD.
    let (code, xml) = ocf("meta-data", &[]);
    assert_eq!(code, 0);
    let f = work.path().join("meta.xml");
    std::fs::write(&f, xml).unwrap();
    let out = Command::new("xmllint")
        .args([
            "--noout",
            "--dtdvalid",
            "/usr/share/resource-agents/ra-api-1.dtd",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ocf_tester_passes_and_crashes_are_recovered() {
    let mut w = World::new();
    // A mail server needs a resolver that answers (SpamAssassin, Postfix and Dovecot look names
    // up at start; an unanswered resolver costs them seconds per lookup).
    w.start_dns(&[]);
    let dir = test_dir("o");
    let d = dir.path().to_path_buf();
    prepare_directory(&d, &config(&w.mx.addr, "1h"), w.work.path());
    let mut agent = Agent::new(&w.mx, &d);

    // ocf-tester: meta-data, validate-all, probes, start twice, monitor, stop twice. It
    // gives every action 20 s unless told otherwise; the agent advertises (and a cluster
    // configures) 300 s for start, as ClamAV and SpamAssassin load slowly on a busy machine.
    let (code, out) = w.mx.run_status(
        "ocf-tester",
        &[
            "-n",
            "mail",
            "-o",
            &format!("directory={}", d.display()),
            "-o",
            &format!("config={}", d.join("mail.toml").display()),
            "-o",
            "CRM_meta_timeout=300000",
            BIN,
        ],
    );
    assert!(
        code == 0 && out.contains("passed all tests"),
        "ocf-tester ({code}):\n{out}\n{}",
        agent.logs()
    );
    assert!(
        tandem_mail::procs::holders(&d, &[]).is_empty(),
        "ocf-tester left processes"
    );

    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
    agent.start();
    step("started");
    // A crashed daemon is restarted by the supervisor.
    let status = || -> serde_json::Value {
        let (code, out) = agent.admin(&["status", "--json"], "");
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(&out).unwrap()
    };
    let clamd_pid = status()["daemons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "clamd")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(clamd_pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait::until("clamd restarted and ready", Duration::from_secs(60), || {
        let s = status();
        let c = s["daemons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "clamd")
            .unwrap()
            .clone();
        c["restarts"] == 1 && c["state"] == "ready" && c["pid"].as_i64() != Some(clamd_pid)
    });
    step("clamd restarted");
    let (code, out) = agent.ocf("monitor", 10);
    assert_eq!(code, 0, "monitor after the restart: {out}");
    step("monitored");

    // A killed supervisor leaves orphans: monitor reports an error, stop cleans up.
    let sup: i32 = std::fs::read_to_string(d.join("run/supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait::until("the supervisor to be gone", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{sup}/cmdline")).exists()
            || std::fs::read(format!("/proc/{sup}/cmdline"))
                .map(|c| c.is_empty())
                .unwrap_or(true)
    });
    let (code, out) = agent.ocf("monitor", 0);
    assert!(
        code == 1 && out.contains("without their supervisor"),
        "monitor with orphans: {code} {out}"
    );
    step("orphans reported");
    agent.stop();
    step("stopped");
    assert!(
        tandem_mail::procs::holders(&d, &[]).is_empty(),
        "stop left processes"
    );
    let (code, _) = agent.ocf("monitor", 0);
    assert_eq!(code, 7);
    // And it starts again cleanly.
    agent.start();
    step("started again");
    let (code, out) = agent.ocf("monitor", 20);
    assert_eq!(code, 0, "{out}");
    step("monitored at depth 20");
    agent.stop();
    step("stopped again");
}

/// A start slower than its timeout (ClamAV's database is a FIFO nobody writes, so clamd blocks
/// loading it, as a huge database on a slow disk would): the agent gives up on its own, before
/// the manager's timeout (`timeout -s KILL` plays the manager), names the daemon that did not
/// answer, and leaves nothing running.
#[test]
fn a_start_slower_than_its_timeout_fails_in_time_and_leaves_nothing() {
    let mut w = World::new();
    let _reaper = NsReaper(w.mx.ns.clone());
    w.start_dns(&[]);
    let dir = test_dir("t");
    let d = dir.path().to_path_buf();
    prepare_directory(&d, &config(&w.mx.addr, "1h"), w.work.path());
    std::fs::remove_file(d.join("state/clamav/tandem-test.hdb")).unwrap();
    nix::unistd::mkfifo(
        &d.join("state/clamav/slow.hdb"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let timeout_s = 20;
    let out =
        w.mx.command("timeout")
            .args(["-s", "KILL", &timeout_s.to_string(), BIN, "start"])
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "mail")
            .env("OCF_RESKEY_directory", &d)
            .env(
                "OCF_RESKEY_CRM_meta_timeout",
                (timeout_s * 1000).to_string(),
            )
            .output()
            .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "start must fail by itself within {timeout_s}s (137: killed at the timeout): {text}"
    );
    assert!(
        text.contains("not every daemon answered in time") && text.contains("clamd"),
        "{text}"
    );
    let left = ns_pids(&w.mx.ns);
    assert!(
        left.is_empty(),
        "processes left after the failed start: {left:?}"
    );
    let (code, out) = Agent::new(&w.mx, &d).ocf("stop", 0);
    assert_eq!(code, 0, "{out}");
}

//! State on the mount: the agent runs on an ext4 filesystem (a loop-mounted image stands in
//! for the replicated device), is stopped, the filesystem is unmounted — which only works if
//! nothing holds it — and mounted at another path the way the other node would mount it, with
//! the daemons' user ids changed as another node's may be; started there, queued and delivered
//! mail, accounts, lockouts and Bayes data are all still there.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use tandem_testkit::blockdev::Mount;
use tandem_testkit::{run, wait};

const ALICE: (&str, &str) = ("alice@example.com", "Alice1");
const CAROL: (&str, &str) = ("carol@example.com", "Carol1x");

fn queue_ids(agent: &Agent) -> Vec<String> {
    let conf = agent.dir.join("run/conf/postfix");
    let (_, out) = agent
        .mx
        .run_status("postqueue", &["-c", &conf.to_string_lossy(), "-j"]);
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["queue_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn bayes(agent: &Agent) -> (u64, u64) {
    tandem_mail::train::bayes_counts(&tandem_mail::layout::Layout::new(&agent.dir))
        .expect("Bayes counts")
}

#[test]
fn state_survives_a_remount_at_another_path() {
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
    let mut w = World::new();
    let net = w.net().to_owned();
    // Mail for unreachable.test has an MX nobody answers for: it stays queued.
    w.start_dns(&[
        format!("--host-record=mx.unreachable.test,{net}.9"),
        "--mx-host=unreachable.test,mx.unreachable.test,10".to_string(),
    ]);
    let mx = w.mx.clone();
    let client = &w.client;
    let work = &w.work;
    let image = work.path().join("mail.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(384 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()]);
    let points = test_dir("f");
    let (a, b) = (points.path().join("a"), points.path().join("b"));
    let mut mount_a = Mount::new(&image.to_string_lossy(), &a, Some("ext4"));
    std::fs::set_permissions(&a, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // --- node 1, directory at a ---
    prepare_directory(&a, &config(&mx.addr, "1h"), work.path());
    let mut agent = Agent::new(&mx, &a);
    agent.add_account(ALICE.0, "general", ALICE.1);
    agent.add_account(CAROL.0, "general", CAROL.1);
    agent.start();
    let m = mx.addr.clone();
    step("started on a");
    for i in 0..2 {
        let (code, t) = client.submit(
            &m,
            "client.example.net",
            ALICE,
            ALICE.0,
            ALICE.0,
            &["--h-Subject", &format!("kept-{i}")],
        );
        assert_eq!(code, 0, "{t}");
    }
    let (code, t) = client.submit(
        &m,
        "client.example.net",
        ALICE,
        ALICE.0,
        "far@unreachable.test",
        &["--h-Subject", "queued"],
    );
    assert_eq!(code, 0, "{t}");
    let (code, t) = client.submit(
        &m,
        "client.example.net",
        ALICE,
        ALICE.0,
        "spam.training@example.com",
        &[
            "--h-Subject",
            "cheap pills",
            "--body",
            "cheap pills watches casino",
        ],
    );
    assert_eq!(code, 0, "{t}");
    wait::until(
        "two messages in alice's INBOX",
        Duration::from_secs(30),
        || {
            client
                .imap_fetch(&m, ALICE.0, ALICE.1, "INBOX")
                .is_ok_and(|v| v.len() == 2)
        },
    );
    wait::until(
        "the remote message deferred in the queue",
        Duration::from_secs(30),
        || queue_ids(&agent).len() == 1,
    );
    let queued = queue_ids(&agent);
    step("delivered and queued");
    wait::until(
        "Bayes learned the training message",
        Duration::from_secs(30),
        || {
            let (code, out) = agent.admin(&["train"], "");
            assert_eq!(code, 0, "{out}");
            tandem_mail::train::bayes_counts(&tandem_mail::layout::Layout::new(&a))
                .is_ok_and(|(s, _)| s >= 1)
        },
    );
    // Five failures at once (each costs Dovecot's 2 s delay), from addresses of their own.
    std::thread::scope(|s| {
        for i in 0..5 {
            let (m, net) = (&m, &net);
            s.spawn(move || {
                let src = format!("{net}.{}", 20 + i);
                assert!(
                    client
                        .imap_login(m, CAROL.0, "Wrong-pass-1", Some(&src))
                        .is_err()
                );
            });
        }
    });
    let r = client.imap_login(&m, CAROL.0, CAROL.1, Some(&format!("{net}.25")));
    assert!(r.as_ref().is_err_and(|e| e.contains("locked")), "{r:?}");
    let bayes_before = bayes(&agent);
    step("trained and locked out");

    // --- failover: stop, nothing left, unmount, mount elsewhere ---
    agent.stop();
    assert!(
        tandem_mail::procs::holders(&a, &[]).is_empty(),
        "processes left after stop"
    );
    let (code, out) = agent.ocf("monitor", 0);
    assert_eq!(code, 7, "monitor after stop: {out}");
    drop(agent);
    mount_a.unmount();
    step("stopped on a");
    let _mount_b = Mount::new(&image.to_string_lossy(), &b, Some("ext4"));

    // The other node's postfix and clamav users have other ids: pretend the files were owned by
    // ids that differ from this node's, as owners.json records them.
    let layout = tandem_mail::layout::Layout::new(&b);
    let mut recorded: tandem_mail::owners::Owners =
        tandem_mail::store::read(&layout.owners_file(), tandem_mail::owners::OWNERS_MAGIC, 1)
            .unwrap()
            .unwrap();
    let real_postfix = recorded.users["postfix"];
    let real_clamav = recorded.users["clamav"];
    let (fake_postfix, fake_clamav) = (54321u32, 54322u32);
    recorded.users.insert("postfix".into(), fake_postfix);
    recorded.users.insert("clamav".into(), fake_clamav);
    tandem_mail::store::write(
        &layout.owners_file(),
        tandem_mail::owners::OWNERS_MAGIC,
        1,
        &recorded,
        0o644,
    )
    .unwrap();
    let map = [(real_postfix, fake_postfix), (real_clamav, fake_clamav)].into();
    let moved =
        tandem_mail::owners::remap_tree(&layout.state(), &map, &Default::default()).unwrap();
    assert!(moved > 10, "only {moved} files re-owned for the simulation");

    // --- node 2, directory at b ---
    let mut agent = Agent::new(&mx, &b);
    agent.start();
    let spool_file = walk_first(&layout.postfix_queue().join("deferred"));
    step("started on b");
    assert_eq!(
        std::fs::metadata(&spool_file).unwrap().uid(),
        real_postfix,
        "queue file re-owned for this node"
    );
    for depth in [0, 10, 20] {
        let (code, out) = agent.ocf("monitor", depth);
        assert_eq!(code, 0, "monitor {depth} after failover: {out}");
    }
    step("monitored on b");
    let inbox = client
        .imap_fetch(&m, ALICE.0, ALICE.1, "INBOX")
        .expect("alice's mail after failover");
    assert_eq!(inbox.len(), 2, "delivered mail kept");
    assert!(inbox.iter().any(|x| x.contains("kept-1")));
    assert_eq!(queue_ids(&agent), queued, "queued mail kept");
    let r = client.imap_login(&m, CAROL.0, CAROL.1, Some(&format!("{net}.25")));
    assert!(
        r.as_ref().is_err_and(|e| e.contains("locked")),
        "lockout kept: {r:?}"
    );
    let (code, list) = agent.admin(&["account", "list"], "");
    assert!(
        code == 0 && list.contains("alice@example.com") && list.contains("locked out"),
        "{list}"
    );
    assert_eq!(bayes(&agent), bayes_before, "Bayes data kept");
    client
        .imap_login(&m, ALICE.0, ALICE.1, None)
        .expect("accounts kept");
    agent.stop();
    assert!(
        tandem_mail::procs::holders(&b, &[]).is_empty(),
        "processes left after stop"
    );
}

fn walk_first(dir: &Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                return path;
            }
        }
    }
    panic!("no file under {}", dir.display());
}

/// The filesystem goes bad under the running suite: it turns read-only after an I/O error (ext4
/// `errors=remount-ro`, the error injected through `/sys/fs/ext4/DEV/trigger_fs_error`), or the
/// mount vanishes (lazily unmounted and its mount point removed). The monitor must report a
/// failure — never success, and never "not running" while daemons still run, which would let
/// the cluster start the suite on the other node beside them — and stop must leave nothing
/// running even though the directory no longer holds the supervisor's files.
#[test]
fn a_read_only_or_vanished_directory_fails_the_monitor_and_stop_leaves_nothing() {
    let mut w = World::new();
    let reaper = NsReaper(w.mx.ns.clone());
    w.start_dns(&[]);
    let mx = w.mx.clone();
    let points = test_dir("g");
    for (i, how) in ["read-only", "vanished"].into_iter().enumerate() {
        let image = w.work.path().join(format!("{how}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()]);
        let dir = points.path().join(format!("m{i}"));
        let _mount = Mount::new(&image.to_string_lossy(), &dir, Some("ext4"));
        let d = dir.to_string_lossy().into_owned();
        run("mount", &["-o", "remount,errors=remount-ro", &d]);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        prepare_directory(&dir, &config(&mx.addr, "1h"), w.work.path());
        let mut agent = Agent::new(&mx, &dir);
        agent.start();
        let (code, out) = agent.ocf("monitor", 0);
        assert_eq!(code, 0, "{how}: monitor before: {out}");
        if how == "read-only" {
            let dev = run("findmnt", &["-n", "-o", "SOURCE", &d]);
            let name = dev.trim().rsplit('/').next().unwrap().to_owned();
            std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1")
                .expect("inject an ext4 error");
            let (code, out) = agent.ocf("monitor", 0);
            assert!(
                code == 1 && out.contains("not writable"),
                "read-only: monitor {code}: {out}"
            );
        } else {
            run("umount", &["-l", &d]);
            std::fs::remove_dir(&dir).unwrap();
            let (code, out) = agent.ocf("monitor", 0);
            assert!(
                code == 1 && out.contains("unmounted or replaced"),
                "vanished: monitor {code}: {out}"
            );
        }
        agent.stop();
        let left = ns_pids(&reaper.0);
        assert!(
            left.is_empty(),
            "{how}: processes left after stop: {left:?}"
        );
        let (code, out) = agent.ocf("monitor", 0);
        assert_eq!(code, 7, "{how}: monitor after stop: {out}");
    }
}

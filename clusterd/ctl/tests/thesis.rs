//! The thesis's command sequences (chapters 4.2, 5.4, 6.2), with `pcs` replaced by
//! `clusterctl`, accepted verbatim offline with `-f FILE`; the two mistakes are warned about.

use std::process::Command;

fn clusterctl(dir: &std::path::Path, line: &str) -> (i32, String, String) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(env!("CARGO_BIN_EXE_clusterctl"))
        .current_dir(dir)
        .env("OCF_ROOT", "/nonexistent")
        .args(&args)
        .output()
        .expect("run clusterctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn thesis_sequence_is_accepted_and_its_mistakes_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |line: &str| {
        let (code, out, err) = clusterctl(d, line);
        assert_eq!(code, 0, "{line}\n{out}\n{err}");
        (out, err)
    };
    ok("-f drbd_cfg cluster setup --name cloffimedicas mercurio hermes");
    ok(
        "-f drbd_cfg resource create ClusterIP ocf:heartbeat:IPAddr2 ip=10.131.210.50 cidr_netmask=24 op monitor interval=30s",
    );
    ok("-f drbd_cfg property set stonith-enabled=false");
    ok(
        "-f drbd_cfg resource create mailData ocf:tandem:replicator drbd_resource=zimbradata op monitor interval=60s",
    );
    ok(
        "-f drbd_cfg resource master mailDataClone mailData master-max=1 master-node-max=1 clone-max=2 clone-node-max=1 notify=true",
    );
    let (out, _) = ok("-f drbd_cfg resource show");
    assert!(
        out.contains("Clone Set: mailDataClone [mailData] (promotable)"),
        "{out}"
    );
    ok(
        "-f drbd_cfg resource create ZimbraFS Filesystem device=/dev/drbd1 directory=/opt/zimbra fstype=xfs",
    );
    ok(
        "-f drbd_cfg constraint colocation add ZimbraFS with mailDataClone INFINITY with-rsc-role=Master",
    );
    ok("-f drbd_cfg constraint order promote mailDataClone then start ZimbraFS");
    ok("-f drbd_cfg constraint colocation add ClusterIP with ZimbraFS INFINITY");
    ok(
        "-f drbd_cfg resource create ZimbraService ocf:btactic:zimbra op monitor interval=2min timeout=40s op start interval=0s timeout=360s op stop interval=0s timeout=360s",
    );
    let (_, err) = ok(
        "-f drbd_cfg constraint colocation add ZimbraService with ZimbraFS INFINITY with-rsc-role=Master",
    );
    assert!(
        err.contains("can never match") && err.contains("fix:"),
        "{err}"
    );
    let (_, err) = ok("-f drbd_cfg constraint order promote ZimbraFS then start ZimbraService");
    assert!(err.contains("never promoted"), "{err}");
    ok("-f drbd_cfg cluster standby mercurio");
    ok("-f drbd_cfg cluster unstandby mercurio");
    let (out, _) = ok("-f drbd_cfg lint");
    assert!(
        out.contains("role-never-matches") || out.contains("can never match"),
        "{out}"
    );
    let (out, _) = ok("-f drbd_cfg cib export --pacemaker");
    std::fs::write(d.join("cib.xml"), &out).unwrap();
    let verify = Command::new("crm_verify")
        .arg("-x")
        .arg(d.join("cib.xml"))
        .output()
        .expect("crm_verify (pacemaker-cli-utils)");
    assert!(
        verify.status.success(),
        "crm_verify refused our export:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let (code, _, err) = clusterctl(
        d,
        "-f drbd_cfg constraint colocation add ZimbraFS with NoSuch INFINITY",
    );
    assert_eq!(code, 1);
    assert!(err.contains("'NoSuch'"), "{err}");
    let (code, _, err) = clusterctl(d, "-f drbd_cfg constraint colocation add A with B INFINTY");
    assert_eq!(code, 2);
    assert!(err.contains("'INFINTY'"), "{err}");
    let (code, _, err) = clusterctl(d, "--state-dir /nonexistent status");
    assert_eq!(code, 3, "{err}");
}

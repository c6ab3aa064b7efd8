//! `scripts/install-ocf-agents` puts the agents where Pacemaker looks for them, idempotently.

mod common;

use std::path::Path;
use std::process::Command;

fn install(root: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-ocf-agents");
    let from = tandem_testkit::bins::profile_dir();
    let out = Command::new(script)
        .arg("--from")
        .arg(&from)
        .arg("--ocf-root")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_copies_each_agent_under_its_ocf_type_and_is_idempotent() {
    common::agent_bin("tandem-ipaddr");
    let root = tempfile::tempdir().unwrap();
    let first = install(root.path());
    for ty in ["IPaddr", "Filesystem", "replicator"] {
        assert!(
            first.contains(&format!("installed  ocf:tandem:{ty}")),
            "{first}"
        );
        let path = root.path().join("resource.d/tandem").join(ty);
        let out = Command::new(&path).arg("meta-data").output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("<resource-agent name=\"{ty}\""))
        );
    }
    let second = install(root.path());
    assert!(
        second.contains("unchanged  ocf:tandem:IPaddr") && !second.contains("installed "),
        "{second}"
    );
}

//! replicatorctl's offline verbs (dump, create-md, show-gi) and its handling of bad input:
//! exit codes and messages as docs/replicator.md documents them.

mod common;

use common::{Node, REPLICATORCTL, STANDALONE, run};

const SEED: &str = include_str!("../../core/tests/fixtures/zimbradata.res");
const SEED_STRAY: &str = include_str!("../../core/tests/fixtures/zimbradata-seed.res");

#[test]
fn dump_normalises_the_seed_and_names_the_stray_brace() {
    let n = Node::new("mercurio.offimedicas.com", SEED);
    let o = n.ctl(&["dump", "zimbradata"]);
    o.ok();
    assert!(o.stdout.contains("resource zimbradata {"), "{}", o.stdout);
    assert!(
        o.stdout.contains("node-id 1;") && o.stdout.contains("address ipv4 192.168.99.1:7789;"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("verify-alg sha1;")
            && o.stdout.contains("allow-two-primaries yes;")
            && o.stdout.contains("protocol C;")
    );
    let socket = n.state.join("zimbradata.nbd.sock");
    assert!(
        o.stdout.contains(&format!(
            "nbd+unix:///zimbradata?socket={}",
            socket.display()
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stderr
            .contains("warning: device /dev/drbd1 is a DRBD kernel device name"),
        "{}",
        o.stderr
    );
    // JSON: typed values.
    let o = n.ctl(&["dump", "--json"]);
    o.ok();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let r = &v["resources"][0];
    assert_eq!(r["name"], "zimbradata");
    assert_eq!(r["net"]["protocol"], "C");
    assert_eq!(r["net"]["verify_alg"], "sha1");
    assert_eq!(r["hosts"][0]["device"]["kind"], "kernel");
    assert_eq!(r["hosts"][1]["node_id"], 0);
    assert_eq!(
        r["exports"]["hermes.offimedicas.com"],
        format!("nbd+unix:///zimbradata?socket={}", socket.display())
    );
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    // The seed exactly as printed, stray brace included.
    std::fs::write(&n.config, SEED_STRAY).unwrap();
    n.ctl(&["dump"]).fails(
        20,
        &format!("{}:20:1: unexpected '}}' at top level", n.config.display()),
    );
}

#[test]
fn create_md_writes_checks_and_refuses_to_overwrite() {
    let n = Node::new("n1", STANDALONE);
    n.file("data.img", 64 << 20);
    let o = n.ctl(&["create-md", "r0"]);
    o.ok();
    assert!(o.stdout.contains("67063808 bytes of data"), "{}", o.stdout);
    // show-gi: fresh meta-data — the "just created" UUID, nothing consistent.
    let o = n.ctl(&["show-gi", "r0"]);
    o.ok();
    assert!(
        o.stdout.contains(
            "0000000000000004:0000000000000000:0000000000000000:0000000000000000:0:0:0:0:0:0:0"
        ),
        "{}",
        o.stdout
    );
    let gi: serde_json::Value =
        serde_json::from_str(&n.ctl(&["show-gi", "--json", "r0"]).stdout).unwrap();
    assert_eq!(gi["current"], "0000000000000004");
    assert_eq!(gi["flags"]["consistent"], false);
    assert_eq!(gi["seq"], 1);
    // A second create-md refuses; --force overwrites with new meta-data.
    n.ctl(&["create-md", "r0"])
        .fails(10, "already holds valid meta-data");
    let before = gi["md_uuid"].clone();
    n.ctl(&["create-md", "--force", "r0"]).ok();
    let gi: serde_json::Value =
        serde_json::from_str(&n.ctl(&["show-gi", "--json", "r0"]).stdout).unwrap();
    assert_ne!(gi["md_uuid"], before);
}

#[test]
fn create_md_refuses_internal_meta_data_over_a_filesystem() {
    let n = Node::new("n1", STANDALONE);
    let img = n.file("data.img", 64 << 20);
    run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()], &[]).ok();
    n.ctl(&["create-md", "r0"]).fails(10, "seems to hold a ext2/ext3/ext4 filesystem; internal meta-data would overwrite its last 44 KiB");
    n.ctl(&["show-gi", "r0"]).fails(
        11,
        "no meta-data found: create it with 'replicatorctl create-md'",
    );
    // External meta-data leaves the filesystem alone: a warning only.
    let ext = STANDALONE.replace("meta-disk internal;", "meta-disk @DIR@/meta.img;");
    let n2 = Node::new("n1", &ext);
    let img2 = n2.file("data.img", 64 << 20);
    n2.file("meta.img", 1 << 20);
    run("mkfs.ext4", &["-q", "-F", img2.to_str().unwrap()], &[]).ok();
    let o = n2.ctl(&["create-md", "r0"]);
    o.ok();
    assert!(
        o.stderr
            .contains("seems to hold a ext2/ext3/ext4 filesystem; it is kept (external meta-data)"),
        "{}",
        o.stderr
    );
    assert!(
        o.stdout.contains("67108864 bytes of data"),
        "external meta-data keeps the whole file: {}",
        o.stdout
    );
    run("e2fsck", &["-n", "-f", img2.to_str().unwrap()], &[]).ok();
}

#[test]
fn bad_arguments_and_configurations_get_clear_errors() {
    let n = Node::new("n1", STANDALONE);
    // clap's usage errors: exit 2, naming what is wrong.
    run(REPLICATORCTL, &["primary"], &[]).fails(2, "<RESOURCE>");
    run(REPLICATORCTL, &["explode", "r0"], &[]).fails(2, "unrecognized subcommand 'explode'");
    run(REPLICATORCTL, &["status", "--bogus"], &[]).fails(2, "unexpected argument '--bogus'");
    // Configuration problems: exit 20.
    n.ctl(&["create-md", "r9"]).fails(20, "no resource 'r9'");
    let other = Node::new("elsewhere", STANDALONE);
    other.ctl(&["create-md", "r0"]).fails(
        20,
        "resource 'r0' has no 'on elsewhere' section (it has: n1); give --node",
    );
    std::fs::write(&n.config, "resource r0 {\n  protcol C;\n}\n").unwrap();
    n.ctl(&["dump"])
        .fails(20, ":2:3: unknown keyword 'protcol' in resource 'r0'");
    std::fs::write(&n.config, "resource r0 { on n1 { } }\n").unwrap();
    n.ctl(&["dump"]).fails(20, "'device' missing");
    run(
        REPLICATORCTL,
        &["--config", "/nonexistent/x.res", "dump"],
        &[],
    )
    .fails(
        20,
        "/nonexistent/x.res: cannot read configuration file: No such file or directory",
    );
    // Online verbs without a daemon: exit 3.
    n.ctl(&["status"]).fails(3, "replicatord is not running");
    n.ctl(&["up", "r0"]).fails(3, "cannot reach replicatord");
    // A missing backing file.
    std::fs::write(
        &n.config,
        STANDALONE.replace("@DIR@", &n.dir.path().to_string_lossy()),
    )
    .unwrap();
    n.ctl(&["create-md", "r0"])
        .fails(1, "cannot open backing file");
}

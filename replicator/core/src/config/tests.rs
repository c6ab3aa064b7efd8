//! Exact-output tests of the `.res` parser: the seed's file, inheritance, node ids, devices,
//! and one test per class of mistake an operator makes (each error's text is pinned).

use super::*;
use crate::types::{NodeId, Protocol};

const SEED: &str = include_str!("../../tests/fixtures/zimbradata.res");
const SEED_STRAY: &str = include_str!("../../tests/fixtures/zimbradata-seed.res");

fn ok(text: &str) -> Loaded {
    parse_str("t.res", text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    parse_str("t.res", text).unwrap_err().to_string()
}

const TWO: &str = "resource r {
  device /dev/drbd1; disk /d; meta-disk internal;
  on a { address 10.0.0.1:7000; node-id 0; }
  on b { address 10.0.0.2:7000; node-id 1; }
}";

#[test]
fn seed_file_parses_into_typed_values() {
    let l = parse_str("zimbradata.res", SEED).unwrap();
    let r = l.config.resource("zimbradata").unwrap();
    assert_eq!(r.net.protocol, Protocol::C);
    assert!(r.net.allow_two_primaries);
    assert_eq!(r.net.verify_alg, Some(DigestAlg::Sha1));
    assert_eq!(r.hosts.len(), 2);
    let m = r.host("mercurio.offimedicas.com").unwrap();
    assert_eq!(
        m.disk,
        Disk::Path("/dev/centos_mercurio/drbd-zimbra".into())
    );
    assert_eq!(m.meta_disk, MetaDisk::Internal);
    assert_eq!(
        m.device,
        Device::Kernel {
            path: "/dev/drbd1".into(),
            minor: 1
        }
    );
    assert_eq!(m.address.unwrap().to_string(), "ipv4 192.168.99.1:7789");
    // drbdadm 9.22 assigns mercurio node-id 1 and hermes 0 for this file.
    assert_eq!((m.node_id, m.node_id_implicit), (NodeId(1), true));
    assert_eq!(r.host("hermes").unwrap().node_id, NodeId(0));
    assert!(
        r.host("mercurio").is_some(),
        "short names match FQDN sections, as in drbdadm"
    );
    assert_eq!(r.connections.len(), 1);
    assert!(r.connections[0].implicit);
    assert_eq!(r.connections[0].net.protocol, Protocol::C);
    // One notice: the kernel device is exported over NBD.
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(
        l.warnings[0].to_string(),
        "zimbradata.res:4:1: warning: device /dev/drbd1 is a DRBD kernel device name; replicatord has no kernel device and exports resource 'zimbradata' over NBD at nbd+unix:///zimbradata?socket=STATE_DIR/zimbradata.nbd.sock (STATE_DIR is the daemon's --state-dir, /run/replicatord by default)"
    );
}

#[test]
fn seed_file_with_its_stray_brace_fails_at_the_brace() {
    assert_eq!(
        parse_str("zimbradata.res", SEED_STRAY)
            .unwrap_err()
            .to_string(),
        "zimbradata.res:20:1: unexpected '}' at top level: no section is open here (a stray closing brace?)"
    );
}

#[test]
fn common_is_inherited_and_resource_wins() {
    let l = ok("common {
          net { protocol A; after-sb-0pri discard-zero-changes; }
          disk { al-extents 3389; resync-rate 40M; c-plan-ahead 0; }
          handlers { split-brain \"/usr/lib/drbd/notify-split-brain.sh root\"; }
        }
        resource r {
          net { protocol C; verify-alg crc32c; }
          disk { resync-rate 10M; }
          device minor 3; disk /d; meta-disk internal;
          on a { address 10.0.0.1:7000; disk { al-extents 100; } }
          on b { address 10.0.0.2:7000; }
        }");
    let r = &l.config.resources[0];
    assert_eq!(r.net.protocol, Protocol::C);
    assert_eq!(r.net.after_sb_0pri, AfterSb0Pri::DiscardZeroChanges);
    assert_eq!(r.net.verify_alg, Some(DigestAlg::Crc32c));
    assert_eq!(
        r.handlers.split_brain.as_deref(),
        Some("/usr/lib/drbd/notify-split-brain.sh root")
    );
    let a = r.host("a").unwrap();
    let b = r.host("b").unwrap();
    assert_eq!(
        a.disk_options.al_extents, 100,
        "host-level disk section wins"
    );
    assert_eq!(b.disk_options.al_extents, 3389, "common inherited");
    assert_eq!(
        b.resync.resync_rate_kib_s,
        10 * 1024,
        "resource wins over common"
    );
    assert_eq!(b.resync.c_plan_ahead_ms, 0);
    assert_eq!(b.resync.c_fill_target_bytes, 100 * 512, "default");
    assert_eq!(r.connections[0].resync.resync_rate_kib_s, 10 * 1024);
    assert_eq!(
        a.device,
        Device::Kernel {
            path: "/dev/drbd3".into(),
            minor: 3
        }
    );
}

#[test]
fn defaults_are_drbds() {
    let l = ok(TWO);
    let r = &l.config.resources[0];
    let n = &r.net;
    assert_eq!(
        (n.protocol, n.allow_two_primaries, n.fencing),
        (Protocol::C, false, Fencing::DontCare)
    );
    assert_eq!(
        (
            n.timeout_ms,
            n.connect_int_ms,
            n.ping_int_ms,
            n.ping_timeout_ms
        ),
        (6000, 10_000, 10_000, 500)
    );
    assert_eq!((n.ko_count, n.max_buffers), (7, 2048));
    let d = &r.hosts[0].disk_options;
    assert_eq!(
        (
            d.al_extents,
            d.al_updates,
            d.disk_flushes,
            d.md_flushes,
            d.size_bytes
        ),
        (1237, true, true, true, None)
    );
    assert_eq!(d.on_io_error, OnIoError::Detach);
    let s = &r.hosts[0].resync;
    assert_eq!(s.resync_rate_kib_s, 250);
    assert_eq!(
        (
            s.c_plan_ahead_ms,
            s.c_delay_target_ms,
            s.c_max_rate_kib_s,
            s.c_min_rate_kib_s
        ),
        (2000, 1000, 102_400, 250)
    );
}

#[test]
fn single_on_section_is_standalone_and_needs_no_node_id_or_address() {
    let l = ok(
        "resource solo { device \"nbd+unix:///solo?socket=/run/x/solo.sock\"; disk /var/lib/solo.img; meta-disk /var/lib/solo.md; on vm { } }",
    );
    let r = &l.config.resources[0];
    assert!(r.is_standalone());
    assert!(r.connections.is_empty());
    let h = r.host("vm").unwrap();
    assert_eq!(h.node_id, NodeId(0));
    assert_eq!(
        h.meta_disk,
        MetaDisk::External {
            path: "/var/lib/solo.md".into(),
            index: None
        }
    );
    assert_eq!(
        h.device.export("solo", "/ignored").uri(),
        "nbd+unix:///solo?socket=/run/x/solo.sock"
    );
    assert!(
        l.warnings.is_empty(),
        "an NBD URI needs no notice: {:?}",
        l.warnings
    );
}

#[test]
fn includes_with_globs_relative_to_the_including_file() {
    let src = MemSource::new()
        .with(
            "/etc/drbd.conf",
            "include \"drbd.d/global_common.conf\";\ninclude \"drbd.d/*.res\";\n",
        )
        .with(
            "/etc/drbd.d/global_common.conf",
            "global { usage-count no; } common { net { protocol B; } }",
        )
        .with("/etc/drbd.d/r0.res", TWO)
        .with(
            "/etc/drbd.d/r1.res",
            &TWO.replace("resource r ", "resource r1 ")
                .replace("drbd1", "drbd2")
                .replace(":7000", ":7001"),
        );
    let l = load("/etc/drbd.conf", &src).unwrap();
    assert_eq!(
        l.config.files,
        [
            "/etc/drbd.conf",
            "/etc/drbd.d/global_common.conf",
            "/etc/drbd.d/r0.res",
            "/etc/drbd.d/r1.res"
        ]
    );
    assert_eq!(
        l.config
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["r", "r1"]
    );
    assert!(
        l.config
            .resources
            .iter()
            .all(|r| r.net.protocol == Protocol::B)
    );
    assert!(l.warnings.iter().any(|w| {
        w.message
            .contains("'usage-count' is accepted but not implemented")
    }));
    let w = l
        .warnings
        .iter()
        .find(|w| w.message.contains("/dev/drbd2"))
        .unwrap();
    assert_eq!(w.pos.to_string(), "/etc/drbd.d/r1.res:2:3");
}

#[test]
fn unknown_keywords_are_errors_that_name_them() {
    assert_eq!(
        err("resource r {\n  protcol C;\n}"),
        "t.res:2:3: unknown keyword 'protcol' in resource 'r' (expected protocol, on, floating, device, disk, meta-disk, flexible-meta-disk, volume, net, syncer, startup, handlers, options, connection, connection-mesh, skip); did you mean 'protocol'?"
    );
    assert_eq!(
        err("resource r { net {\n alow-two-primaries; } }"),
        "t.res:2:2: unknown option 'alow-two-primaries' in the net section of resource 'r'; did you mean 'allow-two-primaries'?"
    );
    assert_eq!(
        err("resource r { net { al-extents 100; } }"),
        "t.res:1:20: option 'al-extents' belongs in a disk section, not in the net section of resource 'r'"
    );
    assert_eq!(
        err("resurce r { }"),
        "t.res:1:1: unknown keyword 'resurce' at top level (expected global, common, resource, include, skip); did you mean 'resource'?"
    );
    assert_eq!(
        err("resource r { on a { adress 1.2.3.4:5; } }"),
        "t.res:1:21: unknown keyword 'adress' in 'on a' of resource 'r' (expected device, disk, meta-disk, flexible-meta-disk, address, node-id, volume, skip); did you mean 'address'?"
    );
}

#[test]
fn known_but_unimplemented_options_warn() {
    let text = TWO.replace("device /dev/drbd1;", "device /dev/drbd1; net { cram-hmac-alg sha1; shared-secret \"x y\"; } options { quorum majority; }");
    let l = ok(&text);
    let msgs: Vec<&str> = l.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.starts_with(
            "'cram-hmac-alg' is accepted but not implemented by replicatord: peer authentication"
        )),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("'quorum' is accepted but not implemented")),
        "{msgs:?}"
    );
}

#[test]
fn values_are_checked() {
    assert_eq!(
        err("resource r { net { protocol D; } }"),
        "t.res:1:29: 'protocol': 'D' is not one of A | B | C"
    );
    assert_eq!(
        err("resource r { disk { resync-rate 9G; } }"),
        "t.res:1:33: 'resync-rate': '9G' is out of range 1..8388608 KiB"
    );
    assert_eq!(
        err("resource r { net { verify-alg md4; } }"),
        "t.res:1:31: 'verify-alg': 'md4' is not a digest replicatord computes (supported: crc32c, md5, sha1, sha256)"
    );
    assert_eq!(
        err("resource r { net { protocol C; } protocol A; }"),
        "t.res:1:34: 'protocol' is set twice in resource 'r' (first at t.res:1:20)"
    );
    let clamped = ok(&TWO.replace(
        "meta-disk internal;",
        "meta-disk internal; disk { al-extents 7; }",
    ));
    assert_eq!(
        clamped.config.resources[0].hosts[0].disk_options.al_extents,
        67
    );
    assert!(
        clamped
            .warnings
            .iter()
            .any(|w| w.message == "'al-extents 7' is outside 67..65534; using 67")
    );
}

#[test]
fn devices() {
    let dev = |d: &str| {
        let text = format!("resource r {{ device {d}; disk /d; meta-disk internal; on a {{ }} }}");
        parse_str("t.res", &text)
            .map(|l| l.config.resources[0].hosts[0].device.clone())
            .map_err(|e| e.message)
    };
    assert_eq!(
        dev("/dev/drbd7"),
        Ok(Device::Kernel {
            path: "/dev/drbd7".into(),
            minor: 7
        })
    );
    assert_eq!(
        dev("drbd7"),
        Ok(Device::Kernel {
            path: "/dev/drbd7".into(),
            minor: 7
        })
    );
    assert_eq!(
        dev("minor 9"),
        Ok(Device::Kernel {
            path: "/dev/drbd9".into(),
            minor: 9
        })
    );
    assert_eq!(
        dev("/dev/drbd_data minor 4"),
        Ok(Device::Kernel {
            path: "/dev/drbd_data".into(),
            minor: 4
        })
    );
    assert_eq!(
        dev("/dev/drbd1 minor 2"),
        Err("minor 2 does not match device name /dev/drbd1".into())
    );
    assert_eq!(
        dev("/dev/drbd_x"),
        Err("device '/dev/drbd_x' has no minor number: write 'device /dev/drbd_x minor N;'".into())
    );
    assert_eq!(
        dev("nbd+unix:///data?socket=/run/r/data.sock"),
        Ok(Device::NbdUnix {
            export: "data".into(),
            socket: "/run/r/data.sock".into()
        })
    );
    assert_eq!(
        dev("nbd+unix:///a%20b?socket=/run/r/x%2Ey"),
        Ok(Device::NbdUnix {
            export: "a b".into(),
            socket: "/run/r/x.y".into()
        })
    );
    assert_eq!(
        dev("nbd://127.0.0.1:10900/data"),
        Ok(Device::NbdTcp {
            host: "127.0.0.1".into(),
            port: 10900,
            export: "data".into()
        })
    );
    assert_eq!(
        dev("nbd://[::1]/x"),
        Ok(Device::NbdTcp {
            host: "::1".into(),
            port: 10809,
            export: "x".into()
        })
    );
    assert!(
        dev("nbd+unix:///x")
            .unwrap_err()
            .contains("needs '?socket=PATH'")
    );
    assert!(
        dev("nbd+unix:///x?socket=rel/x")
            .unwrap_err()
            .contains("must be absolute")
    );
    assert!(
        dev(&format!("nbd+unix:///x?socket=/{}", "a".repeat(120)))
            .unwrap_err()
            .contains("unix sockets allow 107")
    );
    assert!(dev("nbds://h/x").unwrap_err().contains("no TLS"));
    assert!(
        dev("/dev/sda")
            .unwrap_err()
            .contains("is not a DRBD device name or an NBD URI")
    );
}

#[test]
fn addresses() {
    let addr = |a: &str| {
        let text = format!(
            "resource r {{ device minor 1; disk /d; meta-disk internal; on a {{ address {a}; }} }}"
        );
        parse_str("t.res", &text)
            .map(|l| l.config.resources[0].hosts[0].address.unwrap().to_string())
            .map_err(|e| e.message)
    };
    assert_eq!(addr("10.0.0.1:7789"), Ok("ipv4 10.0.0.1:7789".into()));
    assert_eq!(addr("ipv4 10.0.0.1:7789"), Ok("ipv4 10.0.0.1:7789".into()));
    assert_eq!(
        addr("ipv6 [fd00::1]:7000"),
        Ok("ipv6 [fd00::1]:7000".into())
    );
    assert_eq!(addr("[fd00::1]:7000"), Ok("ipv6 [fd00::1]:7000".into()));
    assert_eq!(
        addr("mercurio:7789"),
        Err(
            "'mercurio' is not an IPv4 address (replicatord needs an IP address, not a host name)"
                .into()
        )
    );
    assert_eq!(addr("10.0.0.1:0"), Err("port '0' is not 1..65535".into()));
    assert_eq!(
        addr("sdp 10.0.0.1:7789"),
        Err("address family 'sdp' is not supported by replicatord (ipv4 and ipv6 only)".into())
    );
}

#[test]
fn meta_disk_forms() {
    let md = |m: &str| {
        let text = format!("resource r {{ device minor 1; disk /d; meta-disk {m}; on a {{ }} }}");
        parse_str("t.res", &text)
            .map(|l| l.config.resources[0].hosts[0].meta_disk.clone())
            .map_err(|e| e.message)
    };
    assert_eq!(md("internal"), Ok(MetaDisk::Internal));
    assert_eq!(
        md("/dev/md0 [2]"),
        Ok(MetaDisk::External {
            path: "/dev/md0".into(),
            index: Some(2)
        })
    );
    assert_eq!(
        md("/dev/md0 [ 2 ]"),
        Ok(MetaDisk::External {
            path: "/dev/md0".into(),
            index: Some(2)
        })
    );
    assert_eq!(
        md("/dev/md0 2"),
        Err("expected an index like [0] after the meta-disk path, got '2'".into())
    );
}

#[test]
fn structural_errors() {
    assert_eq!(
        err("resource r { device minor 1; disk /d; }"),
        "t.res:1:1: resource 'r' has no 'on HOSTNAME { ... }' section"
    );
    assert_eq!(
        err("resource r { disk /d; meta-disk internal; on a { } }"),
        "t.res:1:43: 'on a' of resource 'r': 'device' missing (set it in the resource or in this section)"
    );
    assert_eq!(
        err("resource r { device minor 1; disk /d; on a { } }"),
        "t.res:1:39: 'on a' of resource 'r': 'meta-disk' missing (meta-disk internal; or meta-disk PATH;)"
    );
    assert_eq!(
        err(
            "resource r { device minor 1; disk /d; meta-disk internal; on a { address 10.0.0.1:1; } on b { address 10.0.0.2:1; } on c { address 10.0.0.3:1; } }"
        ),
        "t.res:1:59: 'on a' has no 'node-id' (needed when any host has one, or with more than two hosts)"
    );
    assert_eq!(
        err(&TWO.replace("node-id 1;", "node-id 0;")),
        "t.res:4:33: node-id 0 is also the node id of 'on a'"
    );
    assert_eq!(
        err(&TWO.replace("on b", "on A")),
        "t.res:4:3: host 'A' has two sections in resource 'r' (the first at t.res:3:3)"
    );
    assert_eq!(
        err(&format!("{TWO}\n{TWO}")),
        "t.res:6:10: resource 'r' is defined twice (first at t.res:1:1)"
    );
    assert_eq!(
        err("resource r/x { }"),
        "t.res:1:10: resource name 'r/x' must be 1..64 characters of A-Z a-z 0-9 _ - . + not starting with '.' or '-' (it names sockets and NBD exports)"
    );
    assert_eq!(
        err("common { on a { } }"),
        "t.res:1:10: 'on' is not allowed in common: only option sections are inherited by resources"
    );
    assert_eq!(
        err("resource r { net { include \"x\"; } }"),
        "t.res:1:20: unknown option 'include' in the net section of resource 'r'"
    );
    assert_eq!(
        err("resource r { include \"x\"; }"),
        "t.res:1:14: 'include' is only allowed at top level, outside sections"
    );
    assert!(err("resource r { stacked-on-top-of x { } }").contains("not supported by replicatord"));
    assert_eq!(
        err("resource r { device minor 1; disk /d; meta-disk internal\n  on a { } }"),
        "t.res:2:3: missing ';' before 'on' (after 'meta-disk' ...)"
    );
    assert_eq!(
        err("resource r { device minor 1 { } }"),
        "t.res:1:29: 'device' takes values, not a { } section"
    );
    assert!(
        err(&TWO.replace("10.0.0.2", "10.0.0.1"))
            .contains("have the same address ipv4 10.0.0.1:7000")
    );
}

#[test]
fn one_volume_per_resource() {
    let l = ok("resource r { volume 5 { device minor 1; disk /d; meta-disk internal; } on a { } }");
    assert_eq!(l.config.resources[0].volume, 5);
    assert_eq!(
        err(
            "resource r { volume 0 { device minor 1; disk /d; meta-disk internal; } volume 1 { device minor 2; disk /e; meta-disk internal; } on a { } }"
        ),
        "t.res:1:72: resource 'r' has volumes 0, 1: replicatord serves one volume per resource (make each volume a resource of its own)"
    );
    assert!(
        err("resource r { device minor 1; volume 0 { disk /d; } on a { } }")
            .contains("cannot be mixed")
    );
    // Host-level volumes inherit the resource-level volume of the same number.
    let l = ok("resource r { volume 3 { device minor 1; meta-disk internal; }
        on a { address 10.0.0.1:1; volume 3 { disk /a; } } on b { address 10.0.0.2:1; volume 3 { disk /b; } } }");
    let r = &l.config.resources[0];
    assert_eq!(r.host("b").unwrap().disk, Disk::Path("/b".into()));
    assert_eq!(
        r.host("b").unwrap().device,
        Device::Kernel {
            path: "/dev/drbd1".into(),
            minor: 1
        }
    );
}

#[test]
fn connections_explicit_mesh_and_policies() {
    let l = ok("resource r { device minor 1; disk /d; meta-disk internal;
        on a { address 10.0.0.1:7000; node-id 0; }
        on b { address 10.0.0.2:7000; node-id 1; }
        on c { address 10.0.0.3:7000; node-id 2; }
        connection-mesh { hosts a b c; net { protocol A; } }
        connection { host a port 7100; host b address 10.0.1.2:7100; net { protocol B; } }
    }");
    let r = &l.config.resources[0];
    assert_eq!(r.connections.len(), 3);
    let ab = &r.connections[0];
    assert_eq!((ab.net.protocol, ab.implicit), (Protocol::B, false));
    assert_eq!(ab.endpoints[0].address.to_string(), "ipv4 10.0.0.1:7100");
    assert_eq!(ab.endpoints[1].address.to_string(), "ipv4 10.0.1.2:7100");
    assert!(
        r.connections[1..]
            .iter()
            .all(|c| c.net.protocol == Protocol::A && c.implicit)
    );
    assert_eq!(r.connections_of("c").count(), 2);
    assert_eq!(
        err(&TWO.replace(
            "device /dev/drbd1;",
            "device /dev/drbd1; net { protocol A; allow-two-primaries; }"
        )),
        "t.res:2:40: allow-two-primaries needs protocol C; the link a - b uses protocol A"
    );
    assert_eq!(
        err(&TWO.replace(
            "device /dev/drbd1;",
            "device /dev/drbd1; net { after-sb-0pri discard-node-c; }"
        )),
        "t.res:2:28: after-sb-0pri names node 'c', which has no 'on' section in resource 'r' (resource level)"
    );
    assert!(
        ok(&TWO.replace(
            "device /dev/drbd1;",
            "device /dev/drbd1; net { after-sb-0pri discard-node-b; }"
        ))
        .config
        .resources[0]
            .net
            .after_sb_0pri
            == AfterSb0Pri::DiscardNode("b".into())
    );
    assert!(err("resource r { device minor 1; disk /d; meta-disk internal; on a { address 10.0.0.1:1; node-id 0; } on b { address 10.0.0.2:1; node-id 1; } on c { address 10.0.0.3:1; node-id 2; } }").contains("connection-mesh"));
}

#[test]
fn cross_resource_clashes() {
    let r2 = TWO.replace("resource r ", "resource r2 ");
    assert!(
        err(&format!("{TWO}\n{}", r2.replace("drbd1", "drbd2")))
            .contains("is also used by resource 'r'")
    );
    assert!(
        err(&format!("{TWO}\n{}", r2.replace(":7000", ":7001")))
            .contains("is also the device of resource 'r'")
    );
}

#[test]
fn syncer_section_distributes_like_drbdadm() {
    let l = ok(&TWO.replace(
        "device /dev/drbd1;",
        "device /dev/drbd1; syncer { verify-alg md5; al-extents 257; rate 10M; cpu-mask ff; }",
    ));
    let r = &l.config.resources[0];
    assert_eq!(r.net.verify_alg, Some(DigestAlg::Md5));
    assert_eq!(r.hosts[0].disk_options.al_extents, 257);
    assert_eq!(r.hosts[0].resync.resync_rate_kib_s, 10240);
}

#[test]
fn skip_and_floating_and_flags() {
    let l = ok("skip resource old { garbage here; }
        resource r { skip { x } device minor 1; disk /d; meta-disk internal;
          disk { no-disk-flushes; md-flushes no; size 1G; }
          floating 10.0.0.1:7000 { node-id 3; }
          floating ipv6 [fd00::2]:7000 { node-id 4; }
        }");
    let r = &l.config.resources[0];
    assert_eq!(r.hosts[0].names, ["10.0.0.1:7000"]);
    assert!(r.host("10.0.0.1").is_some());
    assert!(r.host("[fd00::2]:7000").is_some());
    let d = &r.hosts[0].disk_options;
    assert_eq!(
        (d.disk_flushes, d.md_flushes, d.size_bytes),
        (false, false, Some(1 << 30))
    );
    assert_eq!(r.connections.len(), 1);
}

#[test]
fn dump_reads_back_to_the_same_configuration() {
    for text in [SEED.to_owned(), TWO.to_owned(), "common { disk { resync-rate 33M; } net { protocol A; } }
        resource r { net { ping-int 3; } device \"nbd+unix:///r?socket=/run/r.sock\"; disk \"/a b\"; meta-disk /m [1];
          handlers { fence-peer \"/bin/fence x\"; } on a { disk { al-extents 500; } } }".to_owned(),
        "resource r { volume 2 { device minor 1; disk /d; meta-disk internal; }
          on a { address 10.0.0.1:1; node-id 0; } on b { address 10.0.0.2:1; node-id 1; } on c { address 10.0.0.3:1; node-id 2; }
          connection-mesh { hosts a b c; } connection { host a; host b port 9; net { protocol B; } disk { c-max-rate 1M; } } }".to_owned()]
    {
        let first = ok(&text).config;
        let dumped = dump::render(&first, Some("/run/replicatord"));
        let second = parse_str("dump.res", &dumped).unwrap_or_else(|e| panic!("{e}\n{dumped}")).config;
        assert_eq!(strip(&first), strip(&second), "{dumped}");
        // And the dump of the dump is the same text (a fixed point, apart from positions).
        let again = dump::render(&second, Some("/run/replicatord"));
        assert_eq!(skip_comments(&dumped), skip_comments(&again));
    }
}

/// The configuration without what legitimately changes in a dump: positions, file names,
/// and the derived/explicit status of connections and node ids.
fn strip(c: &Config) -> String {
    let mut c = c.clone();
    c.files.clear();
    for r in &mut c.resources {
        for h in &mut r.hosts {
            h.node_id_implicit = false;
        }
        for x in &mut r.connections {
            x.implicit = false;
        }
    }
    // Serialising drops positions (serde(skip)) and keeps every typed value.
    format!("{:?}", serde_json_like(&c))
}

fn serde_json_like(c: &Config) -> Vec<String> {
    c.resources
        .iter()
        .map(|r| {
            let hosts: Vec<String> = r
                .hosts
                .iter()
                .map(|h| {
                    format!(
                        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                        h.names,
                        h.floating,
                        h.node_id,
                        h.address,
                        h.device,
                        h.disk,
                        h.meta_disk,
                        h.disk_options,
                        h.resync
                    )
                })
                .collect();
            let conns: Vec<String> = r
                .connections
                .iter()
                .map(|x| format!("{:?} {:?} {:?}", x.endpoints, x.net, x.resync))
                .collect();
            format!(
                "{} {} {:?} {:?} {:?} {:?}",
                r.name, r.volume, hosts, conns, r.net, r.handlers
            )
        })
        .collect()
}

fn skip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tiny deterministic generator for configuration texts (xorshift64*), so a failing case is
/// replayed by its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A valid value text for option `def`.
fn gen_value(g: &mut Gen, def: &options::OptDef) -> String {
    use options::Kind;
    match def.kind {
        Kind::Bool => g.pick(&["yes", "no", ""]).to_string(),
        Kind::Num { min, max, .. } => (min + g.below(max - min + 1)).to_string(),
        Kind::Enum { values, .. } => g.pick(values).to_string(),
        Kind::Quorum => g.pick(&["off", "majority", "all", "2"]).to_string(),
        Kind::AfterSb0 => g
            .pick(&[
                "disconnect",
                "discard-younger-primary",
                "discard-zero-changes",
                "discard-least-changes",
            ])
            .to_string(),
        Kind::Digest => g.pick(options::DIGESTS).to_string(),
        Kind::Text { .. } => g.pick(&["abc", "\"a b\"", "ff"]).to_string(),
        Kind::Command => g
            .pick(&["/bin/true", "\"/usr/lib/drbd/notify.sh root\""])
            .to_string(),
    }
}

fn gen_section(g: &mut Gen, out: &mut String, keyword: &str, sections: &[options::Section]) {
    let defs: Vec<&options::OptDef> = options::OPTIONS
        .iter()
        .filter(|o| sections.contains(&o.section))
        .collect();
    let n = g.below(5);
    let mut used = std::collections::BTreeSet::new();
    let mut body = String::new();
    for _ in 0..n {
        let d = *g.pick(&defs);
        if d.name == "allow-two-primaries" || d.name == "protocol" || !used.insert(d.name) {
            continue; // protocol and two primaries are set below, consistently
        }
        body.push_str(&format!(" {} {};", d.name, gen_value(g, d)));
    }
    if !body.is_empty() {
        out.push_str(&format!(" {keyword} {{{body} }}"));
    }
}

/// A random valid configuration: common, 1..3 resources of 1 or 2 hosts, every device and
/// meta-disk form, options drawn from the whole table.
fn gen_config(seed: u64) -> String {
    let mut g = Gen(seed | 1);
    let mut out = String::new();
    if g.chance(50) {
        out.push_str("common {");
        gen_section(&mut g, &mut out, "net", &[options::Section::Net]);
        gen_section(
            &mut g,
            &mut out,
            "disk",
            &[options::Section::Disk, options::Section::PeerDevice],
        );
        gen_section(&mut g, &mut out, "handlers", &[options::Section::Handlers]);
        out.push_str(" }\n");
    }
    for r in 0..1 + g.below(3) {
        out.push_str(&format!("resource r{r} {{"));
        let proto = *g.pick(&["A", "B", "C", ""]);
        if !proto.is_empty() {
            out.push_str(&format!(" protocol {proto};"));
            if proto == "C" && g.chance(30) {
                out.push_str(" net { allow-two-primaries; }");
            }
        }
        gen_section(
            &mut g,
            &mut out,
            "disk",
            &[options::Section::Disk, options::Section::PeerDevice],
        );
        gen_section(&mut g, &mut out, "options", &[options::Section::Options]);
        gen_section(&mut g, &mut out, "startup", &[options::Section::Startup]);
        let device = match g.below(4) {
            0 => format!("/dev/drbd{r}"),
            1 => format!("minor {r}"),
            2 => format!("nbd+unix:///r{r}?socket=/run/t/r{r}.sock"),
            _ => format!("nbd://127.0.0.1:{}/r{r}", 10000 + r),
        };
        let meta = match g.below(3) {
            0 => "internal".to_owned(),
            1 => format!("/var/lib/md{r}"),
            _ => format!("/dev/md{r} [3]"),
        };
        out.push_str(&format!(" device {device}; meta-disk {meta};"));
        let hosts = 1 + g.below(2);
        let explicit_ids = g.chance(50);
        for h in 0..hosts {
            out.push_str(&format!(" on host{h} {{ disk /d{r}{h};"));
            if hosts > 1 || g.chance(50) {
                out.push_str(&format!(" address 10.{r}.0.{}:{};", h + 1, 7000 + r));
            }
            if explicit_ids {
                out.push_str(&format!(" node-id {};", h + 5));
            }
            gen_section(&mut g, &mut out, "disk", &[options::Section::Disk]);
            out.push_str(" }");
        }
        out.push_str(" }\n");
    }
    out
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Every generated configuration parses, and its dump parses back to the same typed
        /// configuration.
        #[test]
        fn generated_configs_round_trip_through_the_dump(seed in any::<u64>()) {
            let text = gen_config(seed);
            let first = parse_str("g.res", &text).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}\n{text}")))?.config;
            let dumped = dump::render(&first, None);
            let second = parse_str("d.res", &dumped).map_err(|e| TestCaseError::fail(format!("seed {seed}: dump: {e}\n{dumped}")))?.config;
            prop_assert_eq!(strip(&first), strip(&second), "seed {}\n{}\n{}", seed, text, dumped);
        }

        /// Mangled configurations (bytes deleted, duplicated or replaced by grammar characters)
        /// never panic the parser; they either parse or fail with a located error.
        #[test]
        fn mangled_input_never_panics(seed in any::<u64>(), edits in proptest::collection::vec((any::<u16>(), 0u8..3, 0usize..8), 1..8)) {
            let mut text: Vec<char> = gen_config(seed).chars().collect();
            let alphabet = ['{', '}', ';', '"', '#', '\n', ' ', 'x'];
            for (at, op, c) in edits {
                if text.is_empty() { break; }
                let i = usize::from(at) % text.len();
                match op {
                    0 => { text.remove(i); }
                    1 => { let ch = text[i]; text.insert(i, ch); }
                    _ => text[i] = alphabet[c],
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(e) = parse_str("m.res", &text) {
                prop_assert!(e.pos.line >= 1 && e.pos.col >= 1, "unlocated error {} for\n{}", e, text);
            }
        }
    }
}

#[test]
fn fencing_is_read_from_disk_as_in_drbd_84_and_from_net_as_in_drbd_9() {
    let with = |sections: &str| {
        ok(&format!(
            "{sections}
             resource r {{ device /dev/drbd1; disk /d; meta-disk internal;
               on a {{ address 10.0.0.1:7000; node-id 0; }} on b {{ address 10.0.0.2:7000; node-id 1; }} }}"
        ))
        .config
    };
    let fencing = |c: &Config| {
        let r = &c.resources[0];
        assert_eq!(
            r.connections[0].net.fencing, r.net.fencing,
            "the connection inherits it"
        );
        r.net.fencing
    };
    // DRBD 8.4's place, in the resource and in common; DRBD 9's place; the default.
    let c = ok(
        "resource r { disk { fencing resource-only; } device /dev/drbd1; disk /d; meta-disk internal;
           on a { address 10.0.0.1:7000; node-id 0; } on b { address 10.0.0.2:7000; node-id 1; } }",
    )
    .config;
    assert_eq!(fencing(&c), Fencing::ResourceOnly);
    let c = with("common { disk { fencing resource-and-stonith; } }");
    assert_eq!(fencing(&c), Fencing::ResourceAndStonith);
    let c = with("common { net { fencing resource-only; } }");
    assert_eq!(fencing(&c), Fencing::ResourceOnly);
    assert_eq!(fencing(&ok(TWO).config), Fencing::DontCare);
    let c = ok(
        "common { disk { fencing resource-only; } }
         resource r { net { fencing dont-care; } device /dev/drbd1; disk /d; meta-disk internal;
           on a { address 10.0.0.1:7000; node-id 0; } on b { address 10.0.0.2:7000; node-id 1; } }",
    )
    .config;
    assert_eq!(
        fencing(&c),
        Fencing::DontCare,
        "the resource wins over common"
    );
    // The dump normalises it into net { } (DRBD 9's place), which reads back the same.
    let c = with("common { disk { fencing resource-only; } }");
    let dumped = dump::render(&c, None);
    assert!(dumped.contains("fencing resource-only;"), "{dumped}");
    let net_at = dumped.find("net {").expect("a net section");
    assert!(
        dumped[net_at..].contains("fencing resource-only;"),
        "{dumped}"
    );
    assert_eq!(fencing(&ok(&dumped).config), Fencing::ResourceOnly);
}

#[test]
fn fencing_mistakes_are_named() {
    assert_eq!(
        err("resource r { disk { fencing resource-ony; } device /dev/drbd1; disk /d; meta-disk internal;
           on a { address 10.0.0.1:7000; node-id 0; } on b { address 10.0.0.2:7000; node-id 1; } }"),
        "t.res:1:29: 'fencing': 'resource-ony' is not one of dont-care | resource-only | resource-and-stonith"
    );
    assert_eq!(
        err("resource r { disk { fencing resource-only; } net { fencing dont-care; } device /dev/drbd1; disk /d; meta-disk internal;
           on a { address 10.0.0.1:7000; node-id 0; } on b { address 10.0.0.2:7000; node-id 1; } }"),
        "t.res:1:52: 'fencing' is set twice in the net section of resource 'r' (first at t.res:1:21)"
    );
    assert_eq!(
        err("resource r { device /dev/drbd1; disk /d; meta-disk internal;
           on a { address 10.0.0.1:7000; node-id 0; disk { fencing resource-only; } } on b { address 10.0.0.2:7000; node-id 1; } }"),
        "t.res:2:60: 'fencing' is a resource-wide policy: set it in the disk or net section of the resource or of 'common', not in the disk section of 'on a' of resource 'r'"
    );
}

//! Self-tests of the system-test kit: a LAN of namespaces really connects, and is gone after drop.

use std::time::Duration;

use tandem_testkit::netns::Lan;
use tandem_testkit::{require_root, run};

fn namespaces() -> String {
    run("ip", &["netns", "list"])
}

#[test]
fn lan_hosts_reach_each_other_and_vanish_on_drop() {
    require_root();
    let names: Vec<String>;
    {
        let lan = Lan::new(2);
        names = lan.hosts.iter().map(|h| h.ns.clone()).collect();
        let (a, b) = (&lan.hosts[0], &lan.hosts[1]);
        a.run("ping", &["-c", "1", "-W", "2", &b.addr]);
        // Cutting b's cable makes it unreachable; restoring it brings it back.
        lan.set_link(1, false);
        let (code, _) = a.run_status("ping", &["-c", "1", "-W", "1", &b.addr]);
        assert_ne!(code, 0, "ping must fail while the link is down");
        lan.set_link(1, true);
        tandem_testkit::wait::until("link back", Duration::from_secs(5), || {
            a.run_status("ping", &["-c", "1", "-W", "1", &b.addr]).0 == 0
        });
        assert!(names.iter().all(|n| namespaces().contains(n.as_str())));
    }
    let after = namespaces();
    for n in &names {
        assert!(!after.contains(n.as_str()), "namespace {n} left behind");
    }
}

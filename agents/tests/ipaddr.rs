//! System tests of `ocf:tandem:IPaddr` in network namespaces (three hosts on one bridge):
//! a TCP service on the virtual IP reached from a neighbour, the IP moved between hosts with
//! the neighbour's ARP/NDP entry following, monitor noticing an address removed or a link cut
//! behind its back, IPv6, and Debian's ocf-tester.

mod common;

use std::time::Duration;

use common::{expect_rc, ocf_tester, run_agent, run_agent_without};
use tandem_testkit::netns::{Host, Lan};
use tandem_testkit::proc::Daemon;
use tandem_testkit::wait;

const BIN: &str = "tandem-ipaddr";

fn ipaddr(h: &Host, action: &str, params: &[(&str, &str)]) -> common::Outcome {
    run_agent(
        Some(h),
        BIN,
        action,
        "vip",
        params,
        &[("OCF_RESKEY_CRM_meta_timeout", "20000")],
    )
}

fn mac_of(h: &Host) -> String {
    let out = h.run("ip", &["-j", "link", "show", "dev", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}

/// The neighbour's cache entry for `ip`: its lladdr, if it has one.
fn neigh_lladdr(h: &Host, ip: &str) -> Option<String> {
    let out = h.run("ip", &["-j", "neigh", "show", "to", ip]);
    let v: serde_json::Value =
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
    v.as_array()?
        .first()?
        .get("lladdr")?
        .as_str()
        .map(str::to_owned)
}

/// A one-file HTTP service bound to `ip:port` in `h`, answering `/whoami` with `name`.
fn http_service(h: &Host, ip: &str, port: u16, name: &str, dir: &std::path::Path) -> Daemon {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("whoami"), name).unwrap();
    let mut cmd = h.command("/usr/bin/python3");
    cmd.args([
        "-m",
        "http.server",
        "--bind",
        ip,
        &port.to_string(),
        "--directory",
    ])
    .arg(&root);
    Daemon::spawn(
        &format!("http-{name}"),
        cmd,
        &dir.join(format!("http-{name}.log")),
    )
}

/// GET http://ip:port/whoami from `h`; None if it fails.
fn whoami(h: &Host, ip: &str, port: u16) -> Option<String> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let script = format!(
        "import urllib.request;print(urllib.request.urlopen('http://{host}:{port}/whoami', timeout=2).read().decode())"
    );
    let (rc, out) = h.run_status("/usr/bin/python3", &["-c", &script]);
    (rc == 0).then(|| out.trim().to_owned())
}

/// IPv6 addresses for the LAN's hosts (`fd00:SUBNET::N/64`, no DAD wait), so that a /64
/// route exists for the VIP.
fn add_ipv6(lan: &Lan) -> String {
    let net = format!("fd00:{}::", lan.subnet.replace('.', ":"));
    for (i, h) in lan.hosts.iter().enumerate() {
        h.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{net}{}/64", i + 1),
                "dev",
                "eth0",
                "nodad",
            ],
        );
    }
    net
}

/// Starts the VIP on host 0, serves TCP on it, moves it to host 1; host 2 is the neighbour.
fn move_between_hosts(lan: &Lan, ip: &str, ping: &str) {
    let (a, b, client) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    let dir = tempfile::tempdir().unwrap();
    let params = [("ip", ip)];

    expect_rc(&ipaddr(a, "monitor", &params), 7, "probe before start");
    expect_rc(&ipaddr(a, "start", &params), 0, "start on A");
    expect_rc(&ipaddr(a, "monitor", &params), 0, "monitor on A");
    let svc_a = http_service(a, ip, 8080, "host-a", dir.path());
    wait::until(
        "the service on A to answer the neighbour",
        Duration::from_secs(20),
        || whoami(client, ip, 8080).as_deref() == Some("host-a"),
    );
    client.run(ping, &["-c", "1", "-W", "2", ip]);
    assert_eq!(
        neigh_lladdr(client, ip),
        Some(mac_of(a)),
        "the neighbour learnt A's MAC for the VIP"
    );

    drop(svc_a);
    expect_rc(&ipaddr(a, "stop", &params), 0, "stop on A");
    expect_rc(&ipaddr(a, "monitor", &params), 7, "monitor on A after stop");
    expect_rc(&ipaddr(b, "start", &params), 0, "start on B");
    expect_rc(&ipaddr(b, "monitor", &params), 0, "monitor on B");
    // No traffic from the neighbour in between: only B's announcements can change its entry.
    let mac_b = mac_of(b);
    assert_ne!(mac_of(a), mac_b);
    wait::until(
        "the neighbour's cache entry to follow the VIP to B",
        Duration::from_secs(10),
        || neigh_lladdr(client, ip).as_deref() == Some(mac_b.as_str()),
    );
    let _svc_b = http_service(b, ip, 8080, "host-b", dir.path());
    wait::until(
        "the service on B to answer the neighbour",
        Duration::from_secs(20),
        || whoami(client, ip, 8080).as_deref() == Some("host-b"),
    );
    expect_rc(&ipaddr(b, "stop", &params), 0, "stop on B");
    expect_rc(&ipaddr(b, "monitor", &params), 7, "monitor on B after stop");
}

#[test]
fn ipv4_vip_serves_tcp_and_moves_with_the_neighbours_arp_entry() {
    let lan = Lan::new(3);
    let vip = format!("{}.200", lan.subnet);
    move_between_hosts(&lan, &vip, "ping");
}

#[test]
fn ipv6_vip_serves_tcp_and_moves_with_the_neighbours_ndp_entry() {
    let lan = Lan::new(3);
    let net = add_ipv6(&lan);
    let vip = format!("{net}200");
    move_between_hosts(&lan, &vip, "ping");
}

#[test]
fn monitor_notices_an_address_removed_or_a_link_cut_behind_its_back() {
    let lan = Lan::new(1);
    let h = &lan.hosts[0];
    let vip = format!("{}.201", lan.subnet);
    let params = [
        ("ip", vip.as_str()),
        ("cidr_netmask", "24"),
        ("iflabel", "vip"),
    ];
    expect_rc(&ipaddr(h, "start", &params), 0, "start");
    let shown = h.run("ip", &["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        shown.contains(&format!("{vip}/24")) && shown.contains("eth0:vip"),
        "address with label:\n{shown}"
    );
    expect_rc(&ipaddr(h, "start", &params), 0, "second start");
    expect_rc(&ipaddr(h, "monitor", &params), 0, "monitor");

    h.run("ip", &["addr", "del", &format!("{vip}/24"), "dev", "eth0"]);
    expect_rc(
        &ipaddr(h, "monitor", &params),
        7,
        "monitor after the address was removed by hand",
    );

    expect_rc(&ipaddr(h, "start", &params), 0, "restart");
    lan.set_link(0, false);
    wait::until("eth0 to lose its carrier", Duration::from_secs(10), || {
        !h.run("ip", &["-o", "link", "show", "dev", "eth0"])
            .contains("LOWER_UP")
    });
    expect_rc(
        &ipaddr(h, "monitor", &params),
        7,
        "monitor with the link cut",
    );
    lan.set_link(0, true);
    wait::until(
        "eth0 to regain its carrier",
        Duration::from_secs(10),
        || {
            h.run("ip", &["-o", "link", "show", "dev", "eth0"])
                .contains("LOWER_UP")
        },
    );
    expect_rc(
        &ipaddr(h, "monitor", &params),
        0,
        "monitor with the link back",
    );
    expect_rc(&ipaddr(h, "stop", &params), 0, "stop");
    expect_rc(&ipaddr(h, "stop", &params), 0, "second stop");
    expect_rc(&ipaddr(h, "monitor", &params), 7, "monitor after stop");
}

#[test]
fn bad_parameters_are_refused_with_the_parameter_named() {
    let lan = Lan::new(1);
    let h = &lan.hosts[0];
    let o = ipaddr(h, "validate-all", &[("ip", "10.1.2.3/24")]);
    expect_rc(&o, 6, "ip with a prefix");
    assert!(
        o.output
            .contains("ocf-exit-reason:validate-all: parameter ip: invalid value \"10.1.2.3/24\""),
        "{}",
        o.output
    );
    let o = ipaddr(h, "start", &[("ip", "192.0.2.1")]);
    expect_rc(&o, 6, "an address in no connected network, without nic");
    assert!(
        o.output
            .contains("no directly connected route contains 192.0.2.1"),
        "{}",
        o.output
    );
    let o = ipaddr(
        h,
        "validate-all",
        &[("ip", &format!("{}.9", lan.subnet)), ("nic", "eth7")],
    );
    expect_rc(&o, 6, "unknown nic");
    assert!(
        o.output
            .contains("parameter nic: invalid value \"eth7\": no such interface"),
        "{}",
        o.output
    );
    expect_rc(
        &ipaddr(h, "validate-all", &[("ip", &format!("{}.9", lan.subnet))]),
        0,
        "good configuration",
    );
    expect_rc(
        &ipaddr(h, "promote", &[("ip", &format!("{}.9", lan.subnet))]),
        3,
        "promote is not implemented",
    );
    expect_rc(&ipaddr(h, "start", &[]), 6, "missing ip");
}

#[test]
fn ocf_tester_passes_for_ipaddr() {
    let lan = Lan::new(1);
    let vip = format!("{}.202", lan.subnet);
    ocf_tester(Some(&lan.hosts[0]), BIN, "vip", &[("ip", &vip)], &[]);
}

/// A node without iproute2: a probe or monitor answers from getifaddrs(3) (7 while the address
/// is absent, 0 while it is present with its link up) and a stop of an absent address succeeds;
/// all of them used to fail with OCF_ERR_INSTALLED (a failed stop gets the node fenced). A stop
/// that would have to remove a present address, and a start, say what is missing.
#[test]
fn probe_monitor_and_stop_answer_without_iproute2() {
    let lan = Lan::new(1);
    let h = &lan.hosts[0];
    let vip = format!("{}.202", lan.subnet);
    let params = [("ip", vip.as_str()), ("cidr_netmask", "24")];
    let without = |action: &str, interval: &str| {
        run_agent_without(
            Some(h),
            &["ip"],
            BIN,
            action,
            "vip",
            &params,
            &[("OCF_RESKEY_CRM_meta_interval", interval)],
        )
    };
    expect_rc(&without("monitor", "0"), 7, "probe without ip");
    expect_rc(
        &without("stop", "0"),
        0,
        "stop of an absent address without ip",
    );
    let o = without("start", "0");
    expect_rc(&o, 5, "start without ip");
    assert!(o.output.contains("iproute2"), "{}", o.output);
    expect_rc(&ipaddr(h, "start", &params), 0, "start with ip");
    expect_rc(
        &without("monitor", "10000"),
        0,
        "monitor of a present address without ip",
    );
    let o = without("stop", "0");
    expect_rc(&o, 5, "stop of a present address without ip");
    assert!(o.output.contains("cannot be removed"), "{}", o.output);
    expect_rc(&ipaddr(h, "stop", &params), 0, "stop with ip");
    expect_rc(
        &without("monitor", "10000"),
        7,
        "monitor after stop, without ip",
    );
}

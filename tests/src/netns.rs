//! Network namespaces as test hosts.
//!
//! [`Lan`] makes a bridge in its own namespace and any number of [`Host`] namespaces, each
//! attached to the bridge by a veth pair with an address in a private /24. Dropping the `Lan`
//! deletes every namespace it made (which deletes their veths and the bridge with them).

use std::process::Command;

use crate::{run, run_status, unique_name};

/// One test host: a network namespace with one interface (`eth0`) on the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name (unique per test run).
    pub ns: String,
    /// Address of `eth0`, without prefix length.
    pub addr: String,
    /// Interface name inside the namespace.
    pub ifname: String,
}

impl Host {
    /// A `Command` that runs `program` inside this host's network namespace.
    ///
    /// `nsenter --net`, not `ip netns exec`: the latter also gives the process a mount namespace
    /// of its own, a copy of every mount of the moment (mounts here are private, so later
    /// unmounts do not reach the copy). A daemon started that way keeps another test's ext4 or
    /// FUSE mount, and its loop device, busy until it exits. `/sys` stays the host's: nothing
    /// we run reads `/sys/class/net`.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(self.netns_arg()).arg(program);
        cmd
    }

    /// `--net=/run/netns/NAME`, for `nsenter`.
    pub fn netns_arg(&self) -> String {
        format!("--net=/run/netns/{}", self.ns)
    }

    /// Runs `program args` in the namespace, panicking on failure; returns stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let net = self.netns_arg();
        let mut full = vec![net.as_str(), program];
        full.extend_from_slice(args);
        run("nsenter", &full)
    }

    /// Runs `program args` in the namespace; returns exit code and combined output.
    pub fn run_status(&self, program: &str, args: &[&str]) -> (i32, String) {
        let net = self.netns_arg();
        let mut full = vec![net.as_str(), program];
        full.extend_from_slice(args);
        run_status("nsenter", &full)
    }
}

/// A bridge namespace plus hosts attached to it; everything is deleted on drop.
#[derive(Debug)]
pub struct Lan {
    bridge_ns: String,
    /// The hosts, in creation order.
    pub hosts: Vec<Host>,
    /// The first three octets of the LAN's /24, e.g. `10.77.3`.
    pub subnet: String,
    namespaces: Vec<String>,
}

impl Lan {
    /// Creates a LAN `10.X.Y.0/24` (X, Y derived from the pid and a counter) with `n` hosts at
    /// `.1`, `.2`, ... named `eth0` inside their namespaces.
    pub fn new(n: usize) -> Self {
        crate::require_root();
        let bridge_ns = unique_name("tbr");
        let mut lan = Lan {
            bridge_ns: bridge_ns.clone(),
            hosts: Vec::new(),
            subnet: String::new(),
            namespaces: Vec::new(),
        };
        run("ip", &["netns", "add", &bridge_ns]);
        lan.namespaces.push(bridge_ns.clone());
        let seed = std::process::id() as usize * 31 + lan_counter();
        lan.subnet = format!("10.{}.{}", 100 + seed % 150, (seed / 150) % 250);
        run(
            "ip",
            &["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bridge_ns, "link", "set", "br0", "up"]);
        run("ip", &["-n", &bridge_ns, "link", "set", "lo", "up"]);
        for i in 0..n {
            lan.add_host_at(i + 1);
        }
        lan
    }

    /// Adds a host with address `SUBNET.octet`.
    pub fn add_host_at(&mut self, octet: usize) -> Host {
        let ns = unique_name("th");
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let outer = format!("v{}", &ns[2..]);
        let outer = if outer.len() > 15 {
            outer[..15].to_owned()
        } else {
            outer
        };
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        run("ip", &["link", "set", &outer, "netns", &self.bridge_ns]);
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &outer,
                "master",
                "br0",
                "up",
            ],
        );
        let addr = format!("{}.{}", self.subnet, octet);
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let host = Host {
            ns,
            addr,
            ifname: "eth0".into(),
        };
        self.hosts.push(host.clone());
        host
    }

    /// Cuts (`up = false`) or restores the link of host `i` at the bridge, like pulling a cable.
    pub fn set_link(&self, i: usize, up: bool) {
        let ns = &self.hosts[i].ns;
        let outer = format!("v{}", &ns[2..]);
        let outer = if outer.len() > 15 {
            outer[..15].to_owned()
        } else {
            outer
        };
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &outer,
                if up { "up" } else { "down" },
            ],
        );
    }
}

fn lan_counter() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            // Kill anything still running in the namespace, then delete it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

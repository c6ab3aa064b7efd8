//! Reading and changing addresses with iproute2's `ip -j` (JSON output), parsed into typed
//! values. Parsing is pure and unit-tested on captured output.

use std::net::IpAddr;
use std::process::Command;

use ocf::{OcfError, tools};
use serde::Deserialize;

/// One address of an interface (`addr_info` entry).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AddrInfo {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address.
    pub local: String,
    /// Prefix length.
    pub prefixlen: u8,
    /// Label (IPv4), e.g. `eth0:vip`.
    #[serde(default)]
    pub label: Option<String>,
    /// IPv6 duplicate address detection still running.
    #[serde(default)]
    pub tentative: bool,
    /// IPv6 duplicate address detection failed.
    #[serde(default)]
    pub dadfailed: bool,
}

/// One interface with its addresses (`ip -j addr show`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Name.
    pub ifname: String,
    /// Flags such as `UP`, `LOWER_UP`.
    #[serde(default)]
    pub flags: Vec<String>,
    /// `UP`, `DOWN`, `LOWERLAYERDOWN`, `UNKNOWN`...
    #[serde(default)]
    pub operstate: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub address: Option<String>,
    /// Addresses.
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

impl Link {
    /// Administratively up and carrier present (`UP` and `LOWER_UP`).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP") && self.flags.iter().any(|f| f == "LOWER_UP")
    }

    /// The entry for `ip`, if configured here.
    pub fn find(&self, ip: IpAddr) -> Option<&AddrInfo> {
        self.addr_info
            .iter()
            .find(|a| a.local.parse::<IpAddr>().ok() == Some(ip))
    }
}

/// One route (`ip -j route list`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Route {
    /// `default` or `NET/LEN` (or a bare address for a host route).
    pub dst: String,
    /// Output interface.
    #[serde(default)]
    pub dev: Option<String>,
    /// Next hop (absent for directly connected networks).
    #[serde(default)]
    pub gateway: Option<String>,
}

/// Parses `ip -j addr show` / `ip -j link show` output.
pub fn parse_links(json: &str) -> Result<Vec<Link>, OcfError> {
    // `ip -j` prints nothing at all (not `[]`) for some empty results.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json)
        .map_err(|e| OcfError::generic(format!("cannot parse `ip -j` output: {e}")))
}

/// Parses `ip -j route list` output.
pub fn parse_routes(json: &str) -> Result<Vec<Route>, OcfError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json)
        .map_err(|e| OcfError::generic(format!("cannot parse `ip -j route` output: {e}")))
}

/// Like IPaddr2's `findif`: the interface and prefix length of the most specific directly
/// connected route (no gateway, not `default`) that contains `ip`.
pub fn find_interface(routes: &[Route], ip: IpAddr) -> Option<(String, u8)> {
    routes
        .iter()
        .filter(|r| r.gateway.is_none() && r.dst != "default")
        .filter_map(|r| {
            let (net, len) = match r.dst.split_once('/') {
                Some((n, l)) => (n.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
                None => {
                    let n: IpAddr = r.dst.parse().ok()?;
                    (n, if n.is_ipv4() { 32 } else { 128 })
                }
            };
            if contains(net, len, ip) {
                Some((r.dev.clone()?, len))
            } else {
                None
            }
        })
        .max_by_key(|(_, len)| *len)
}

/// Whether `ip` is in `net/len`.
pub fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Runs `ip ARGS` and returns stdout.
pub fn ip(args: &[&str]) -> Result<String, OcfError> {
    let prog = tools::require_tool("ip", Some("iproute2"))?;
    tools::checked(Command::new(prog).args(args))
}

/// All interfaces with their addresses.
pub fn links() -> Result<Vec<Link>, OcfError> {
    parse_links(&ip(&["-j", "addr", "show"])?)
}

/// Interfaces holding `ip`.
pub fn holders(ip_addr: IpAddr) -> Result<Vec<Link>, OcfError> {
    Ok(links()?
        .into_iter()
        .filter(|l| l.find(ip_addr).is_some())
        .collect())
}

/// One interface, `None` if it does not exist.
pub fn link(name: &str) -> Result<Option<Link>, OcfError> {
    Ok(links()?.into_iter().find(|l| l.ifname == name))
}

/// Directly connected routes that match `ip` (main table).
pub fn routes_to(ip_addr: IpAddr) -> Result<Vec<Route>, OcfError> {
    let family = if ip_addr.is_ipv4() { "-4" } else { "-6" };
    parse_routes(&ip(&[
        "-j",
        family,
        "route",
        "list",
        "match",
        &ip_addr.to_string(),
    ])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = r#"[{"ifindex":3,"link":"d1","ifname":"d0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"operstate":"UP","address":"c2:97:4b:6f:6e:64","addr_info":[{"family":"inet","local":"10.9.9.1","prefixlen":24,"scope":"global","label":"d0","valid_life_time":4294967295},{"family":"inet6","local":"fd00::5","prefixlen":64,"scope":"global","tentative":true},{"family":"inet6","local":"fe80::c097:4bff:fe6f:6e64","prefixlen":64,"scope":"link"}]},
    {"ifindex":4,"ifname":"d2","flags":["BROADCAST","MULTICAST","UP"],"operstate":"LOWERLAYERDOWN","addr_info":[]}]"#;

    #[test]
    fn parses_links_and_finds_addresses_in_any_spelling() {
        let links = parse_links(ADDR).unwrap();
        assert_eq!(links.len(), 2);
        assert!(links[0].is_up());
        assert!(
            !links[1].is_up(),
            "UP without LOWER_UP is a link without carrier"
        );
        let v6 = links[0].find("fd00:0:0::5".parse().unwrap()).unwrap();
        assert!(v6.tentative && !v6.dadfailed);
        assert_eq!(
            links[0]
                .find("10.9.9.1".parse().unwrap())
                .unwrap()
                .prefixlen,
            24
        );
        assert!(links[0].find("10.9.9.2".parse().unwrap()).is_none());
        assert!(parse_links("").unwrap().is_empty());
        assert!(parse_links("not json").is_err());
    }

    #[test]
    fn findif_takes_the_most_specific_connected_route() {
        let routes = parse_routes(
            r#"[{"dst":"default","gateway":"10.9.0.1","dev":"eth1"},{"dst":"10.9.0.0/16","dev":"eth1"},
                {"dst":"10.9.9.0/24","dev":"eth0","protocol":"kernel","prefsrc":"10.9.9.1","flags":[]},
                {"dst":"10.9.9.0/25","gateway":"10.9.9.254","dev":"eth2"}]"#,
        )
        .unwrap();
        assert_eq!(
            find_interface(&routes, "10.9.9.7".parse().unwrap()),
            Some(("eth0".into(), 24))
        );
        assert_eq!(
            find_interface(&routes, "10.9.1.7".parse().unwrap()),
            Some(("eth1".into(), 16))
        );
        assert_eq!(
            find_interface(&routes, "192.168.1.1".parse().unwrap()),
            None
        );
        let v6 = parse_routes(r#"[{"dst":"fd00::/64","dev":"d0","metric":256}]"#).unwrap();
        assert_eq!(
            find_interface(&v6, "fd00::9".parse().unwrap()),
            Some(("d0".into(), 64))
        );
    }

    #[test]
    fn prefix_containment() {
        let n = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(n("10.0.0.0"), 8, n("10.255.1.1")));
        assert!(!contains(n("10.0.0.0"), 9, n("10.255.1.1")));
        assert!(contains(n("0.0.0.0"), 0, n("1.2.3.4")));
        assert!(contains(n("fd00::"), 64, n("fd00::1:2")));
        assert!(!contains(n("fd00::"), 64, n("fd01::1")));
        assert!(!contains(n("fd00::"), 64, n("10.0.0.1")));
    }
}

//! `ocf:tandem:IPaddr`: a virtual IP address, with IPaddr2's parameters and behaviour.
//!
//! - start: finds the interface and prefix (from `nic`/`cidr_netmask`, else like IPaddr2's
//!   `findif`: the most specific directly connected route containing the address), refuses a
//!   link without carrier, adds the address (`ip addr add`, broadcast and label for IPv4), waits
//!   out IPv6 duplicate address detection, then announces it `arp_count` times,
//!   `arp_interval` ms apart, so neighbours update their caches at once (see [`crate::announce`]).
//! - stop: removes the address from every interface holding it (only `nic` if given).
//! - monitor: 0 while the address is present and its link is up (UP and LOWER_UP), 7 otherwise.

use std::net::IpAddr;
use std::time::Duration;

use ocf::{Action, ActionDef, Agent, Context, Metadata, OcfError, OcfResult, ParamDef, Status};

use crate::announce;
use crate::iproute::{self, Link};

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "ip",
        "IPv4 or IPv6 address",
        "The virtual IP address to manage, e.g. 192.168.1.10 or fd00::10 (no prefix length here; see cidr_netmask).",
    )
    .required()
    .unique(),
    ParamDef::string(
        "nic",
        "Network interface",
        "The interface to put the address on, e.g. eth0. When not given, it is the interface of the most specific \
         directly connected route that contains the address (as IPaddr2's findif does).",
    ),
    ParamDef::string(
        "cidr_netmask",
        "Prefix length",
        "The prefix length (e.g. 24 or 64), or for IPv4 a dotted netmask (255.255.255.0). When not given, it is taken \
         from the route found for the address.",
    ),
    ParamDef::string(
        "broadcast",
        "Broadcast address (IPv4)",
        "The broadcast address to set with the IPv4 address; by default it is computed from the prefix (`brd +`).",
    ),
    ParamDef::string(
        "iflabel",
        "Interface label (IPv4)",
        "A label for the address: it shows as NIC:LABEL in `ip addr` and ifconfig. NIC:LABEL must fit in 15 characters.",
    ),
    ParamDef::integer(
        "arp_count",
        0,
        1000,
        "Announcements to send",
        "How many gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6) to send after adding the address.",
    )
    .default("5"),
    ParamDef::integer(
        "arp_interval",
        0,
        10_000,
        "Milliseconds between announcements",
        "The interval between announcements, in milliseconds.",
    )
    .default("200"),
    ParamDef::string(
        "preferred_lft",
        "IPv6 preferred lifetime",
        "The preferred lifetime of an IPv6 address: `forever`, or 0 so that it is not used as a source address \
         for outgoing connections.",
    )
    .default("forever"),
];

const ACTIONS: &[ActionDef] = &[
    ActionDef::new(Action::Start, 20),
    ActionDef::new(Action::Stop, 20),
    ActionDef::monitor(20, 10),
    ActionDef::new(Action::MetaData, 5),
    ActionDef::new(Action::ValidateAll, 20),
];

const META: Metadata = Metadata {
    name: "IPaddr",
    version: "1.0",
    shortdesc: "Manages a virtual IPv4 or IPv6 address",
    longdesc: "Tandem's virtual IP agent, a drop-in for ocf:heartbeat:IPaddr2: it adds the address to an interface \
               and announces it with gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6) so that \
               neighbours send to this node at once; monitor reports it running only while the address is present \
               and the link has carrier.",
    params: PARAMS,
    actions: ACTIONS,
};

/// The `ocf:tandem:IPaddr` agent.
#[derive(Debug, Default)]
pub struct IpAddrAgent;

/// The checked parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The address.
    pub ip: IpAddr,
    /// The interface, if given.
    pub nic: Option<String>,
    /// The prefix length, if given.
    pub prefix: Option<u8>,
    /// IPv4 broadcast, if given.
    pub broadcast: Option<String>,
    /// Full label `NIC:LABEL` needs the nic, so only the suffix here.
    pub iflabel: Option<String>,
    /// Announcements.
    pub arp_count: u32,
    /// Between announcements.
    pub arp_interval: Duration,
    /// IPv6 preferred lifetime.
    pub preferred_lft: String,
}

/// Parses a prefix length or (IPv4) dotted netmask.
pub fn parse_netmask(s: &str, ipv4: bool) -> Result<u8, String> {
    let max = if ipv4 { 32 } else { 128 };
    if let Ok(n) = s.parse::<u8>() {
        return if n <= max {
            Ok(n)
        } else {
            Err(format!("a prefix length must be at most {max}"))
        };
    }
    if ipv4 && let Ok(mask) = s.parse::<std::net::Ipv4Addr>() {
        let bits = u32::from(mask);
        let ones = bits.leading_ones();
        if bits.checked_shl(ones).unwrap_or(0) == 0 {
            return u8::try_from(ones).map_err(|_| "impossible".to_owned());
        }
        return Err("the netmask's one bits must be contiguous".into());
    }
    Err(format!(
        "expected a prefix length (0-{max}){}",
        if ipv4 { " or a dotted netmask" } else { "" }
    ))
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && !s.contains(['/', ' ', ':']) && s != "." && s != ".."
}

impl Spec {
    /// Checks the parameters (no system access).
    pub fn from_ctx(ctx: &Context) -> Result<Spec, OcfError> {
        let p = &ctx.params;
        let raw_ip = p.required_str("ip");
        let ip: IpAddr = raw_ip.parse().map_err(|_| {
            OcfError::bad_param(
                "ip",
                raw_ip,
                "not an IPv4 or IPv6 address (give the prefix in cidr_netmask)",
            )
        })?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(OcfError::bad_param("ip", raw_ip, "not a unicast address"));
        }
        let nic = p.str("nic").map(str::to_owned);
        if let Some(n) = &nic
            && !valid_ifname(n)
        {
            return Err(OcfError::bad_param(
                "nic",
                n,
                "not an interface name (at most 15 characters, no '/', ':' or space)",
            ));
        }
        let prefix = match p.str("cidr_netmask") {
            Some(m) => Some(
                parse_netmask(m, ip.is_ipv4())
                    .map_err(|why| OcfError::bad_param("cidr_netmask", m, why))?,
            ),
            None => None,
        };
        let broadcast = p.str("broadcast").map(str::to_owned);
        if let Some(b) = &broadcast {
            if !ip.is_ipv4() {
                return Err(OcfError::bad_param(
                    "broadcast",
                    b,
                    "IPv6 has no broadcast addresses",
                ));
            }
            if b != "+" && b != "-" && b.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(OcfError::bad_param("broadcast", b, "not an IPv4 address"));
            }
        }
        let iflabel = p.str("iflabel").map(str::to_owned);
        if let Some(l) = &iflabel {
            if !ip.is_ipv4() {
                return Err(OcfError::bad_param(
                    "iflabel",
                    l,
                    "labels exist only for IPv4 addresses",
                ));
            }
            if l.contains([' ', '/']) {
                return Err(OcfError::bad_param(
                    "iflabel",
                    l,
                    "no spaces or '/' allowed",
                ));
            }
            if let Some(n) = &nic
                && n.len() + 1 + l.len() > 15
            {
                return Err(OcfError::bad_param(
                    "iflabel",
                    l,
                    format!("{n}:{l} is longer than 15 characters"),
                ));
            }
        }
        let preferred_lft = p.required_str("preferred_lft").to_owned();
        if preferred_lft != "forever" && preferred_lft.parse::<u32>().is_err() {
            return Err(OcfError::bad_param(
                "preferred_lft",
                &preferred_lft,
                "expected `forever` or a number of seconds",
            ));
        }
        let int = |name| u32::try_from(p.int(name).unwrap_or(0)).unwrap_or(0);
        Ok(Spec {
            ip,
            nic,
            prefix,
            broadcast,
            iflabel,
            arp_count: int("arp_count"),
            arp_interval: Duration::from_millis(u64::from(int("arp_interval"))),
            preferred_lft,
        })
    }

    /// The interface and prefix to use: given, else found from the routing table.
    pub fn resolve(&self) -> Result<(String, u8), OcfError> {
        let found = match (&self.nic, self.prefix) {
            (Some(n), Some(p)) => return Ok((n.clone(), p)),
            _ => iproute::find_interface(&iproute::routes_to(self.ip)?, self.ip),
        };
        let nic = self
            .nic
            .clone()
            .or_else(|| found.as_ref().map(|f| f.0.clone()));
        let prefix = self.prefix.or_else(|| found.as_ref().map(|f| f.1));
        match (nic, prefix) {
            (Some(n), Some(p)) => Ok((n, p)),
            _ => Err(OcfError::configured(format!(
                "no directly connected route contains {}: give nic and cidr_netmask, or add an address in that network \
                 to an interface",
                self.ip
            ))),
        }
    }

    /// Where the address is, read with getifaddrs(3) instead of `ip`: `(interface, up with
    /// carrier)` for each interface holding it (only `nic`, if given). What stop and monitor
    /// fall back to on a node without iproute2: they must still answer.
    fn holders_without_ip(&self) -> Vec<(String, bool)> {
        use nix::net::if_::InterfaceFlags as F;
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        addrs
            .filter(|a| self.nic.as_ref().is_none_or(|n| *n == a.interface_name))
            .filter(|a| {
                let Some(addr) = a.address.as_ref() else {
                    return false;
                };
                match self.ip {
                    IpAddr::V4(v4) => addr.as_sockaddr_in().is_some_and(|s| s.ip() == v4),
                    IpAddr::V6(v6) => addr.as_sockaddr_in6().is_some_and(|s| s.ip() == v6),
                }
            })
            .map(|a| {
                let up = a.flags.contains(F::IFF_UP) && a.flags.contains(F::IFF_LOWER_UP);
                (a.interface_name, up)
            })
            .collect()
    }

    /// The interfaces holding the address (only `nic`, if given).
    fn holders(&self) -> Result<Vec<Link>, OcfError> {
        let mut h = iproute::holders(self.ip)?;
        if let Some(n) = &self.nic {
            h.retain(|l| &l.ifname == n);
        }
        Ok(h)
    }
}

impl IpAddrAgent {
    fn announce(spec: &Spec, link: &Link, ctx: &Context) {
        let Some(mac) = link.address.as_deref().and_then(announce::parse_mac) else {
            ocf::warn!(
                "{} has no MAC address; not announcing {}",
                link.ifname,
                spec.ip
            );
            return;
        };
        let mut sent = 0;
        for i in 0..spec.arp_count {
            if i > 0 {
                if ctx.remaining() < spec.arp_interval + Duration::from_secs(1) {
                    ocf::warn!("stopping announcements after {i}: the start timeout is near");
                    break;
                }
                std::thread::sleep(spec.arp_interval);
            }
            let r = match spec.ip {
                IpAddr::V4(v4) => announce::send_garp(link.ifindex, mac, v4),
                IpAddr::V6(v6) => announce::send_unsolicited_na(link.ifindex, mac, v6),
            };
            match r {
                Ok(()) => sent += 1,
                Err(e) => ocf::warn!("cannot announce {} on {}: {e}", spec.ip, link.ifname),
            }
        }
        let what = if spec.ip.is_ipv4() {
            "gratuitous ARPs"
        } else {
            "unsolicited neighbour advertisements"
        };
        ocf::info!("sent {sent} {what} for {} on {}", spec.ip, link.ifname);
    }

    /// Waits until IPv6 duplicate address detection is over.
    fn wait_dad(spec: &Spec, nic: &str, ctx: &Context) -> Result<Link, OcfError> {
        loop {
            let link = iproute::link(nic)?
                .ok_or_else(|| OcfError::generic(format!("interface {nic} disappeared")))?;
            match link.find(spec.ip) {
                None => {
                    return Err(OcfError::generic(format!(
                        "{} vanished from {nic} during start",
                        spec.ip
                    )));
                }
                Some(a) if a.dadfailed => {
                    let _ = iproute::ip(&[
                        "addr",
                        "del",
                        &format!("{}/{}", spec.ip, a.prefixlen),
                        "dev",
                        nic,
                    ]);
                    return Err(OcfError::generic(format!(
                        "{} is already in use on the network (IPv6 duplicate address detection failed on {nic})",
                        spec.ip
                    )));
                }
                Some(a) if !a.tentative => return Ok(link),
                Some(_) => {}
            }
            if ctx.remaining() < Duration::from_secs(1) {
                return Err(OcfError::generic(format!(
                    "{} still tentative (duplicate address detection) on {nic}",
                    spec.ip
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Agent for IpAddrAgent {
    fn metadata(&self) -> &Metadata {
        &META
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let spec = Spec::from_ctx(ctx)?;
        // Stop and monitor answer without iproute2 when they can (see holders_without_ip).
        if matches!(ctx.action, Action::Stop | Action::Monitor) {
            return Ok(());
        }
        ocf::tools::require_tool("ip", Some("iproute2"))?;
        if ctx.action == Action::ValidateAll {
            let (nic, _) = spec.resolve()?;
            if iproute::link(&nic)?.is_none() {
                return Err(OcfError::bad_param(
                    "nic",
                    &nic,
                    "no such interface on this node",
                ));
            }
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        let (nic, prefix) = spec.resolve()?;
        let Some(link) = iproute::link(&nic)? else {
            return Err(OcfError::bad_param(
                "nic",
                &nic,
                "no such interface on this node",
            ));
        };
        if link.find(spec.ip).is_some() && link.is_up() {
            ocf::info!("{} is already on {nic}", spec.ip);
            return Ok(Status::Success);
        }
        if let Some(other) = spec.holders()?.into_iter().find(|l| l.ifname != nic) {
            return Err(OcfError::generic(format!(
                "{} is already on another interface, {}",
                spec.ip, other.ifname
            )));
        }
        if !link.flags.iter().any(|f| f == "UP") {
            iproute::ip(&["link", "set", &nic, "up"])?;
        }
        let cidr = format!("{}/{prefix}", spec.ip);
        let mut args: Vec<String> =
            vec!["addr".into(), "add".into(), cidr, "dev".into(), nic.clone()];
        if spec.ip.is_ipv4() {
            args.extend([
                "brd".into(),
                spec.broadcast.clone().unwrap_or_else(|| "+".into()),
            ]);
            if let Some(l) = &spec.iflabel {
                let label = format!("{nic}:{l}");
                if label.len() > 15 {
                    return Err(OcfError::bad_param(
                        "iflabel",
                        l,
                        format!("{label} is longer than 15 characters"),
                    ));
                }
                args.extend(["label".into(), label]);
            }
        } else {
            args.extend(["preferred_lft".into(), spec.preferred_lft.clone()]);
        }
        if link.find(spec.ip).is_none() {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            iproute::ip(&refs)?;
            ocf::info!("added {}/{prefix} to {nic}", spec.ip);
        }
        let link = if spec.ip.is_ipv6() {
            Self::wait_dad(&spec, &nic, ctx)?
        } else {
            iproute::link(&nic)?.unwrap_or(link)
        };
        if !link.is_up() {
            return Err(OcfError::generic(format!(
                "link {nic} has no carrier (flags {})",
                link.flags.join(",")
            )));
        }
        Self::announce(&spec, &link, ctx);
        Ok(Status::Success)
    }

    fn stop(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        if ocf::tools::find_tool("ip").is_none() {
            // Without iproute2 the address cannot have been added by this agent; if it is
            // there anyway, it cannot be removed: say why (the node will be fenced).
            return match spec.holders_without_ip().first() {
                None => Ok(Status::Success),
                Some((nic, _)) => Err(OcfError::not_installed("ip", Some("iproute2"))
                    .context(format!("{} is on {nic} and cannot be removed", spec.ip))),
            };
        }
        for link in spec.holders()? {
            if let Some(a) = link.find(spec.ip) {
                iproute::ip(&[
                    "addr",
                    "del",
                    &format!("{}/{}", spec.ip, a.prefixlen),
                    "dev",
                    &link.ifname,
                ])?;
                ocf::info!("removed {} from {}", spec.ip, link.ifname);
            }
        }
        if let Some(l) = spec.holders()?.first() {
            return Err(OcfError::generic(format!(
                "{} is still on {} after removal",
                spec.ip, l.ifname
            )));
        }
        Ok(Status::Success)
    }

    fn monitor(&self, ctx: &Context) -> OcfResult {
        let spec = Spec::from_ctx(ctx)?;
        if ocf::tools::find_tool("ip").is_none() {
            ocf::warn!(
                "ip (iproute2) is missing: checking {} with getifaddrs",
                spec.ip
            );
            return Ok(match spec.holders_without_ip().first() {
                Some((_, true)) => Status::Success,
                _ => Status::NotRunning,
            });
        }
        let holders = spec.holders()?;
        let Some(link) = holders.first() else {
            return Ok(Status::NotRunning);
        };
        let addr = link.find(spec.ip).expect("holders hold the address");
        if !link.is_up() {
            ocf::warn!(
                "{} is on {} but the link is down (flags {})",
                spec.ip,
                link.ifname,
                link.flags.join(",")
            );
            return Ok(Status::NotRunning);
        }
        if addr.dadfailed {
            ocf::warn!(
                "{} on {}: duplicate address detection failed",
                spec.ip,
                link.ifname
            );
            return Ok(Status::NotRunning);
        }
        Ok(Status::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocf::{Env, Params};

    fn ctx(vars: &[(&str, &str)]) -> Result<Context, OcfError> {
        let env = Env::from_vars(vars.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), *v)))?;
        let params = Params::parse(PARAMS, &env)?;
        Ok(Context::new(Action::Start, env, params, &META))
    }

    fn spec(vars: &[(&str, &str)]) -> Result<Spec, OcfError> {
        Spec::from_ctx(&ctx(vars)?)
    }

    #[test]
    fn netmasks_as_lengths_or_dotted() {
        assert_eq!(parse_netmask("24", true), Ok(24));
        assert_eq!(parse_netmask("255.255.255.0", true), Ok(24));
        assert_eq!(parse_netmask("255.255.255.255", true), Ok(32));
        assert_eq!(parse_netmask("0.0.0.0", true), Ok(0));
        assert!(
            parse_netmask("255.0.255.0", true)
                .unwrap_err()
                .contains("contiguous")
        );
        assert!(parse_netmask("33", true).is_err());
        assert_eq!(parse_netmask("64", false), Ok(64));
        assert!(parse_netmask("255.255.255.0", false).is_err());
    }

    #[test]
    fn parameters_are_checked_with_named_errors() {
        let s = spec(&[
            ("ip", "10.1.2.3"),
            ("cidr_netmask", "255.255.0.0"),
            ("nic", "eth0"),
            ("iflabel", "vip"),
        ])
        .unwrap();
        assert_eq!(
            (s.prefix, s.arp_count, s.arp_interval),
            (Some(16), 5, Duration::from_millis(200))
        );
        let e = spec(&[("ip", "10.1.2.3/24")]).unwrap_err();
        assert_eq!(e.status, Status::ErrConfigured);
        assert!(
            e.reason
                .starts_with("parameter ip: invalid value \"10.1.2.3/24\""),
            "{e}"
        );
        let e = spec(&[("ip", "10.1.2.3"), ("cidr_netmask", "40")]).unwrap_err();
        assert!(
            e.reason
                .starts_with("parameter cidr_netmask: invalid value \"40\""),
            "{e}"
        );
        let e = spec(&[("ip", "fd00::1"), ("broadcast", "10.0.0.255")]).unwrap_err();
        assert!(e.reason.contains("IPv6 has no broadcast"), "{e}");
        let e = spec(&[
            ("ip", "10.1.2.3"),
            ("nic", "eth0"),
            ("iflabel", "averyverylonglabel"),
        ])
        .unwrap_err();
        assert!(e.reason.contains("longer than 15"), "{e}");
        let e = spec(&[("ip", "10.1.2.3"), ("nic", "a/b")]).unwrap_err();
        assert!(e.reason.starts_with("parameter nic"), "{e}");
        let e = spec(&[("ip", "224.0.0.1")]).unwrap_err();
        assert!(e.reason.contains("unicast"), "{e}");
        let e = spec(&[("ip", "10.1.2.3"), ("arp_count", "-1")]).unwrap_err();
        assert!(e.reason.starts_with("parameter arp_count"), "{e}");
        let e = spec(&[("ip", "fd00::1"), ("preferred_lft", "later")]).unwrap_err();
        assert!(e.reason.starts_with("parameter preferred_lft"), "{e}");
        assert!(
            spec(&[])
                .unwrap_err()
                .reason
                .contains("parameter ip is required")
        );
    }
}

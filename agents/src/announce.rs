//! Telling the neighbours that an address moved: gratuitous ARP (IPv4) and unsolicited
//! Neighbour Advertisement (IPv6), sent from our own sockets.
//!
//! Why not Debian's `arping -U`: iputils' arping (20221126) takes whole-second intervals
//! and every invocation blocks for at least one second, so IPaddr2's `arp_interval` (in ms,
//! default 200) cannot be honoured, and there is no arping for IPv6 at all. The frames here are
//! exactly what `arping -U` and IPaddr2's `send_arp`/`send_ua` send: an ARP request with sender
//! and target protocol address both the virtual IP (an RFC 5227 announcement, which Linux
//! neighbours apply at once, regardless of `locktime`), and an ICMPv6 Neighbour Advertisement
//! to all-nodes with the Override flag and our link-layer address. The frame builders are pure
//! and unit-tested byte for byte; the two send functions are the only `unsafe` in the agents.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A MAC address.
pub type Mac = [u8; 6];

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;

/// The 28-byte ARP payload of a gratuitous ARP request announcing `ip` at `mac`.
pub fn garp_payload(mac: Mac, ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    p[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes()); // protocol type: IPv4
    p[4] = 6; // hardware address length
    p[5] = 4; // protocol address length
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    p[8..14].copy_from_slice(&mac); // sender hardware address
    p[14..18].copy_from_slice(&ip.octets()); // sender protocol address
    // target hardware address: zero (RFC 5227 announcement)
    p[24..28].copy_from_slice(&ip.octets()); // target protocol address = sender's
    p
}

/// The 32-byte ICMPv6 Neighbour Advertisement announcing `ip` at `mac` (checksum left zero:
/// the kernel fills it in for ICMPv6 raw sockets, RFC 3542 §3.1).
pub fn unsolicited_na(mac: Mac, ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // type: Neighbor Advertisement
    p[1] = 0; // code
    p[4] = 0x20; // flags: Override (not Router, not Solicited)
    p[8..24].copy_from_slice(&ip.octets()); // target address
    p[24] = 2; // option: Target Link-Layer Address
    p[25] = 1; // option length, in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn check_len(rc: isize) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `size_of::<T>()` as a `socklen_t` (socket structs are far below 4 GiB).
fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).expect("socket structs are small")
}

/// An address family constant as the `sa_family_t` field type (they are all small).
fn family(af: libc::c_int) -> libc::sa_family_t {
    libc::sa_family_t::try_from(af).expect("address families fit sa_family_t")
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by socket(2), is valid, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Broadcasts one gratuitous ARP for `ip` out of interface `ifindex` (whose MAC is `mac`).
pub fn send_garp(ifindex: u32, mac: Mac, ip: Ipv4Addr) -> io::Result<()> {
    let payload = garp_payload(mac, ip);
    // SAFETY: plain socket(2) call; the result is checked and owned by `owned`.
    let fd = owned(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    })?;
    // SAFETY: sockaddr_ll is a plain C struct for which all-zero bytes are a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = family(libc::AF_PACKET);
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::other("interface index out of range"))?;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and address point to live values of the lengths given; sendto(2)
    // only reads them.
    check_len(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&raw const sll).cast(),
            socklen::<libc::sockaddr_ll>(),
        )
    })?;
    Ok(())
}

/// Sends one unsolicited Neighbour Advertisement for `ip` (which must be configured and past
/// duplicate address detection) to all nodes on interface `ifindex`.
pub fn send_unsolicited_na(ifindex: u32, mac: Mac, ip: Ipv6Addr) -> io::Result<()> {
    let payload = unsolicited_na(mac, ip);
    // SAFETY: plain socket(2) call; the result is checked and owned by `owned`.
    let fd = owned(unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    })?;
    let hops: libc::c_int = 255; // RFC 4861 §7.1.2: receivers drop NAs with another hop limit
    let ifidx = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::other("interface index out of range"))?;
    for (opt, val) in [
        (libc::IPV6_MULTICAST_HOPS, hops),
        (libc::IPV6_MULTICAST_IF, ifidx),
    ] {
        // SAFETY: `val` is a live c_int and the length given is its size.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&raw const val).cast(),
                socklen::<libc::c_int>(),
            )
        })?;
    }
    // SAFETY: sockaddr_in6 is a plain C struct for which all-zero bytes are a valid value.
    let mut src: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    src.sin6_family = family(libc::AF_INET6);
    src.sin6_addr.s6_addr = ip.octets();
    if ip.is_unicast_link_local() {
        src.sin6_scope_id = ifindex;
    }
    let mut dst = src;
    dst.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    dst.sin6_scope_id = ifindex;
    let len = socklen::<libc::sockaddr_in6>();
    // SAFETY: `src` is a live sockaddr_in6 of the length given.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const src).cast(), len) })?;
    // SAFETY: the buffer and address point to live values of the lengths given.
    check_len(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&raw const dst).cast(),
            len,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_is_an_announcement_request() {
        let p = garp_payload([0x02, 0, 0, 0, 0, 0x01], Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet/IPv4, request
                2, 0, 0, 0, 0, 1, 10, 1, 2, 3, // sender
                0, 0, 0, 0, 0, 0, 10, 1, 2, 3, // target
            ]
        );
    }

    #[test]
    fn na_has_override_flag_target_and_lladdr_option() {
        let ip: Ipv6Addr = "fd00::5".parse().unwrap();
        let p = unsolicited_na([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], ip);
        assert_eq!(&p[..8], &[136, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..], &[2, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("c2:97:4b:6f:6e:64"),
            Some([0xc2, 0x97, 0x4b, 0x6f, 0x6e, 0x64])
        );
        assert_eq!(parse_mac("c2:97:4b:6f:6e"), None);
        assert_eq!(parse_mac("c2:97:4b:6f:6e:64:00"), None);
        assert_eq!(parse_mac("zz:97:4b:6f:6e:64"), None);
    }
}

//! `OutboundGuard`: which addresses the registry may send requests to (webhooks,
//! upstreams). Loopback, link-local (the cloud metadata address 169.254.169.254
//! included), private, shared (CGNAT), unspecified, multicast, broadcast and
//! documentation ranges are refused unless the operator allows a network that holds
//! the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{RegistryError, Result};

/// The operator's leave to reach internal networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundGuard {
    allowed: Vec<IpNet>,
}

impl OutboundGuard {
    /// A guard that allows the internal networks in `allowed` (e.g. `127.0.0.0/8`).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        OutboundGuard { allowed }
    }

    /// Parses a comma-separated list of networks (`10.0.0.0/8,::1/128`); a bare
    /// address is a network of one.
    pub fn parse_allowed(list: &str) -> Result<Vec<IpNet>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| RegistryError::Unsupported(format!("not a network: {s:?}")))
            })
            .collect()
    }

    /// `Ok` when `ip` is public or allowed; otherwise `OutboundRefused` naming the range.
    pub fn check(&self, ip: IpAddr) -> Result<()> {
        let ip = canonical(ip);
        match internal_range(ip) {
            Some(range) if !self.allowed.iter().any(|n| n.contains(&ip)) => {
                Err(RegistryError::OutboundRefused(format!(
                    "{ip} is a {range} address; an operator can allow it (REGISTRY_OUTBOUND_ALLOW)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Checks a URL's scheme (http or https); the host is checked once resolved.
    pub fn check_scheme(url: &url::Url) -> Result<()> {
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(()),
            "http" | "https" => Err(RegistryError::OutboundRefused(format!("{url} has no host"))),
            other => Err(RegistryError::OutboundRefused(format!(
                "scheme {other:?} is not allowed; use http or https"
            ))),
        }
    }
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The name of the internal range that holds `ip`, or `None` for a public address.
pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() || (o[0] == 198 && (o[1] & 0xfe) == 18) {
        Some("documentation or benchmarking")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else {
        None
    }
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation or benchmarking")
    } else if s[0] == 0x0064 && s[1] == 0xff9b {
        // NAT64 carries an IPv4 address in its last 32 bits: judge that one.
        v4_range(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &OutboundGuard, ip: &str) -> bool {
        guard.check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let g = OutboundGuard::default();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
        ] {
            assert!(refused(&g, ip), "{ip} should be refused");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "100.128.0.1",
        ] {
            assert!(!refused(&g, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn the_error_names_the_range() {
        let e = OutboundGuard::default()
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert!(matches!(&e, RegistryError::OutboundRefused(m) if m.contains("link-local")));
    }

    #[test]
    fn allowed_networks_open_only_themselves() {
        let g = OutboundGuard::new(OutboundGuard::parse_allowed("127.0.0.0/8, ::1").unwrap());
        assert!(!refused(&g, "127.0.0.1"));
        assert!(!refused(&g, "::1"));
        assert!(!refused(&g, "::ffff:127.0.0.1"));
        assert!(refused(&g, "169.254.169.254"));
        assert!(refused(&g, "10.0.0.1"));
        assert!(OutboundGuard::parse_allowed("10.0.0.0/33").is_err());
        assert!(OutboundGuard::parse_allowed("example.com").is_err());
        assert_eq!(OutboundGuard::parse_allowed("").unwrap(), vec![]);
    }

    #[test]
    fn only_http_and_https_schemes() {
        let ok = |u: &str| OutboundGuard::check_scheme(&url::Url::parse(u).unwrap()).is_ok();
        assert!(ok("http://example.com/hook"));
        assert!(ok("https://example.com/hook"));
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("gopher://example.com/"));
    }
}

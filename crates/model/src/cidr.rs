//! The one reading of an address or network string, for every field that holds one:
//! `ip_filter`, VPC `network_cidr`, `peer_cidrs`, `privatelink_cidrs`, node addresses,
//! management gateways and test sources, whether they come from a file, the API or the
//! CLI's `-c ip_filter=[...]`.
//!
//! Key decision: refuse, never normalise. A string that two tools could read differently
//! is refused with a hint giving the one reading fleetwall would use, so that what the
//! user wrote, what the platform stores and what the firewall matches cannot drift
//! apart: surrounding whitespace (once trimmed silently), leading zeros in an IPv4
//! octet (decimal to Rust's `ipnet`, octal to `inet_aton`), a prefix length written
//! with leading zeros, and IPv4-mapped IPv6 networks (`::ffff:10.0.0.1`), which land
//! in an IPv6 set where no IPv4 packet can ever match them.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// Why a string is not an address or network fleetwall accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not an address or network at all.
    Malformed,
    /// An address with bits set after the prefix length; holds the network.
    HostBits(IpNet),
    /// Readable, but not only one way.
    Ambiguous(Ambiguity),
}

/// A spelling that tools read differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    /// Whitespace before or after; holds the trimmed text.
    Whitespace(String),
    /// A leading zero in an IPv4 octet or the prefix length; holds the decimal reading,
    /// when it is a valid network.
    LeadingZeros(Option<String>),
    /// An IPv4-mapped IPv6 network (prefix length 96 or more); holds the IPv4 network
    /// it maps.
    Ipv4Mapped(Ipv4Net),
}

/// Parses a CIDR as the platform accepts it: a network, or a bare address as a host route.
pub fn parse_network(s: &str) -> Result<IpNet, CidrError> {
    unambiguous(s)?;
    let (addr, len) = match s.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| CidrError::Malformed)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        // `u8::from_str` takes a `+` sign; a prefix length is digits only.
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse().map_err(|_| CidrError::Malformed)?
        }
        Some(_) => return Err(CidrError::Malformed),
    };
    let net = IpNet::new(addr, len).map_err(|_| CidrError::Malformed)?;
    if let IpNet::V6(v6) = net {
        if let Some(v4) = mapped(v6) {
            return Err(CidrError::Ambiguous(Ambiguity::Ipv4Mapped(v4)));
        }
    }
    if net.trunc() != net {
        return Err(CidrError::HostBits(net.trunc()));
    }
    Ok(net)
}

/// Parses a single address (no prefix length).
pub fn parse_address(s: &str) -> Result<IpAddr, CidrError> {
    unambiguous(s)?;
    let addr: IpAddr = s.parse().map_err(|_| CidrError::Malformed)?;
    match addr {
        IpAddr::V6(v6) => match mapped(Ipv6Net::from(v6)) {
            Some(v4) => Err(CidrError::Ambiguous(Ambiguity::Ipv4Mapped(v4))),
            None => Ok(addr),
        },
        IpAddr::V4(_) => Ok(addr),
    }
}

/// Refuses the spellings that tools read differently: whitespace and leading zeros.
fn unambiguous(s: &str) -> Result<(), CidrError> {
    if s.trim() != s {
        return Err(CidrError::Ambiguous(Ambiguity::Whitespace(s.trim().to_string())));
    }
    let (addr, len) = match s.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (s, None),
    };
    // An IPv4 address, or the dotted tail of an IPv6 one (`::ffff:10.0.0.1`).
    let (head, dotted) = addr.rfind(':').map_or(("", addr), |i| addr.split_at(i + 1));
    let octets: Vec<&str> = dotted.split('.').collect();
    let numbers = |parts: &[&str]| parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let octets = (octets.len() == 4 && numbers(&octets)).then_some(octets);
    let len = len.filter(|l| numbers(&[l]));
    let padded = |p: &&str| p.len() > 1 && p.starts_with('0');
    if !octets.iter().flatten().any(padded) && !len.iter().any(padded) {
        return Ok(());
    }
    let decimal = |p: &str| match p.trim_start_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    let dotted = match octets {
        Some(o) => o.iter().map(|p| decimal(p)).collect::<Vec<_>>().join("."),
        None => dotted.to_string(),
    };
    let reading = match len {
        Some(l) => format!("{head}{dotted}/{}", decimal(l)),
        None => format!("{head}{dotted}"),
    };
    // Octets over 255 in decimal (`0300` is 192 in octal) have no decimal reading.
    let valid = if s.contains('/') { reading.parse::<IpNet>().is_ok() } else { reading.parse::<IpAddr>().is_ok() };
    Err(CidrError::Ambiguous(Ambiguity::LeadingZeros(valid.then_some(reading))))
}

/// The IPv4 network an IPv4-mapped IPv6 network (`::ffff:0:0/96` and inside) stands for.
fn mapped(net: Ipv6Net) -> Option<Ipv4Net> {
    let v4 = net.addr().to_ipv4_mapped()?;
    let len = net.prefix_len().checked_sub(96)?;
    Ipv4Net::new(v4, len).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_networks_and_addresses_are_read() {
        assert_eq!(parse_network("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_network("198.51.100.7"), Ok(net("198.51.100.7/32")));
        assert_eq!(parse_network("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_network("2001:0db8::/32"), Ok(net("2001:db8::/32")), "IPv6 groups may be padded");
        assert_eq!(parse_network("::/0"), Ok(net("::/0")), "contains the mapped range, is not in it");
        assert_eq!(parse_network("::fffe:0:0/95"), Ok(net("::fffe:0:0/95")), "contains the mapped range");
        assert_eq!(parse_address("2001:db8::10"), Ok("2001:db8::10".parse().unwrap()));
        assert_eq!(parse_address("10.0.0.10"), Ok("10.0.0.10".parse().unwrap()));
    }

    /// The ambiguity `parse_network` finds in `s`.
    fn network(s: &str) -> Ambiguity {
        match parse_network(s) {
            Err(CidrError::Ambiguous(a)) => a,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    /// The ambiguity `parse_address` finds in `s`.
    fn address(s: &str) -> Ambiguity {
        match parse_address(s) {
            Err(CidrError::Ambiguous(a)) => a,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn surrounding_whitespace_is_refused_not_trimmed() {
        let trimmed = Ambiguity::Whitespace("10.0.0.0/8".into());
        assert_eq!(network(" 10.0.0.0/8"), trimmed);
        assert_eq!(network("10.0.0.0/8\n"), trimmed);
        assert_eq!(address("1.2.3.4\t"), Ambiguity::Whitespace("1.2.3.4".into()));
    }

    #[test]
    fn leading_zeros_were_read_as_decimal() {
        // ipnet read `010.1.2.0/24` as 10.1.2.0/24; inet_aton reads it as 8.1.2.0/24.
        let zeros = |s: &str| Ambiguity::LeadingZeros(Some(s.into()));
        assert_eq!(network("010.1.2.0/24"), zeros("10.1.2.0/24"));
        assert_eq!(network("01.2.3.4/32"), zeros("1.2.3.4/32"));
        assert_eq!(network("010.1.2.3"), zeros("10.1.2.3"));
        assert_eq!(network("10.0.0.0/08"), zeros("10.0.0.0/8"));
        assert_eq!(network("2001:db8::/032"), zeros("2001:db8::/32"));
        assert_eq!(network("::ffff:010.0.0.1"), zeros("::ffff:10.0.0.1"));
        assert_eq!(address("00.0.0.1"), zeros("0.0.0.1"));
        assert_eq!(network("0300.1.2.3"), Ambiguity::LeadingZeros(None), "192 in octal, no decimal reading");
    }

    #[test]
    fn ipv4_mapped_networks_landed_in_ipv6_sets() {
        let v4 = |s: &str| Ambiguity::Ipv4Mapped(s.parse().unwrap());
        assert_eq!(network("::ffff:10.0.0.1/128"), v4("10.0.0.1/32"));
        assert_eq!(network("::ffff:10.0.0.1"), v4("10.0.0.1/32"));
        assert_eq!(network("::ffff:a00:0/104"), v4("10.0.0.0/8"));
        assert_eq!(network("::ffff:10.0.0.5/120"), v4("10.0.0.0/24"), "host bits go with the mapping");
        assert_eq!(network("::ffff:0:0/96"), v4("0.0.0.0/0"));
        assert_eq!(address("::ffff:203.0.113.5"), v4("203.0.113.5/32"));
    }

    #[test]
    fn other_malformed_strings() {
        for s in ["", "/8", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/33", "1.2.3", "0x1.2.3.4", "1.2.3.4%eth0", "a\0b"] {
            assert_eq!(parse_network(s), Err(CidrError::Malformed), "{s:?}");
        }
        assert_eq!(parse_network("10.0.0.5/8"), Err(CidrError::HostBits(net("10.0.0.0/8"))));
        assert_eq!(parse_address("10.0.0.5/32"), Err(CidrError::Malformed));
    }
}

//! Which client sources matter for a fleet, and an address to stand for each.
//!
//! For every service: an address inside each `ip_filter` entry (a few per family) and
//! one outside all of them; for VPC services also one in the VPC but outside ip_filter,
//! one in each peering, one in the private-link CIDRs; the Azure platform address when
//! a service runs on Azure; and a node of another service when the fleet has only one.
//! Addresses never collide with the fleet's own.

use fleetwall_model::Fleet;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// A client source: why it matters, and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A label for reports ("in ip_filter 198.51.100.0/24 'office' of p/s").
    pub label: String,
    /// Its address.
    pub addr: IpAddr,
}

const PREFERRED: [&str; 6] =
    ["198.51.100.77", "192.0.2.77", "203.0.113.77", "2001:db8:77::77", "10.99.0.77", "172.16.99.77"];
const OUTSIDE: [&str; 8] = [
    "203.0.113.199",
    "192.0.2.199",
    "198.51.100.199",
    "100.64.9.9",
    "10.254.9.9",
    "2001:db8:bad::1",
    "fd99::1",
    "2001:db8:ffff:bad::1",
];
/// Entries per family that get their own "inside" source.
const INSIDE_PER_FAMILY: usize = 3;

fn usable(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_unspecified()
                || v.is_loopback()
                || v.is_multicast()
                || v.is_broadcast()
                || v.octets()[0] == 0
                || v.is_link_local())
        }
        IpAddr::V6(v) => {
            !(v.is_unspecified() || v.is_loopback() || v.is_multicast() || (v.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Picks addresses that are not already taken.
struct Picker {
    used: BTreeSet<IpAddr>,
}

impl Picker {
    fn take(&mut self, a: IpAddr) -> Option<IpAddr> {
        (usable(&a) && self.used.insert(a)).then_some(a)
    }

    /// A free address inside `net`, preferring documentation addresses.
    fn inside(&mut self, net: &IpNet) -> Option<IpAddr> {
        for p in PREFERRED {
            let a: IpAddr = p.parse().expect("literal");
            if net.contains(&a) && !self.used.contains(&a) && usable(&a) {
                return self.take(a);
            }
        }
        for h in net.hosts().skip(6).step_by(2).take(64) {
            if let Some(a) = self.take(h) {
                return Some(a);
            }
        }
        net.hosts().find(|h| usable(h) && !self.used.contains(h)).and_then(|h| self.take(h))
    }

    /// A free address of `family_of`'s family outside every net of `nets`.
    fn outside(&mut self, nets: &[IpNet], v4: bool) -> Option<IpAddr> {
        OUTSIDE
            .iter()
            .map(|s| s.parse::<IpAddr>().expect("literal"))
            .filter(|a| a.is_ipv4() == v4 && !nets.iter().any(|n| n.contains(a)))
            .find_map(|a| self.take(a))
    }
}

/// The client sources of `fleet` (gateways and nodes are hosts of their own).
pub fn sources(fleet: &Fleet) -> Vec<Source> {
    let mut used: BTreeSet<IpAddr> = fleet.platform.management_gateways.iter().copied().collect();
    for (_, _, n) in fleet.nodes() {
        used.extend(n.private.iter().chain(&n.public));
    }
    let mut pick = Picker { used };
    let mut out = Vec::new();
    let mut push = |label: String, a: Option<IpAddr>| {
        if let Some(addr) = a {
            out.push(Source { label, addr });
        }
    };
    for (p, s) in fleet.services() {
        let q = format!("{}/{}", p.name, s.name);
        let filter: Vec<IpNet> = s.ip_filter.iter().map(|e| e.network).collect();
        for v4 in [true, false] {
            for e in s.ip_filter.iter().filter(|e| e.network.addr().is_ipv4() == v4).take(INSIDE_PER_FAMILY) {
                let desc = e.description.as_ref().map(|d| format!(" '{d}'")).unwrap_or_default();
                push(format!("in ip_filter {}{desc} of {q}", e.network), pick.inside(&e.network));
            }
            push(format!("outside ip_filter of {q}"), pick.outside(&filter, v4));
        }
        if let Some(v) = s.vpc.as_deref().and_then(|v| p.vpc(v)) {
            if let Some(a) = pick.inside(&v.network_cidr).filter(|a| !filter.iter().any(|n| n.contains(a))) {
                push(format!("in VPC {}, outside ip_filter of {q}", v.name), Some(a));
            }
            for peering in &v.peerings {
                for c in &peering.peer_cidrs {
                    push(format!("in peering {} ({c})", peering.peer_vpc), pick.inside(c));
                }
            }
            for c in &v.privatelink_cidrs {
                push(format!("in private-link CIDR {c} of VPC {}", v.name), pick.inside(c));
            }
        }
    }
    // S7: inside and outside the BYOC subnets and customer networks.
    for p in &fleet.projects {
        let Some(b) = &p.byoc else { continue };
        push(
            format!("in bastion subnet {} of {} (not a bastion)", b.bastion_subnet, p.name),
            pick.inside(&b.bastion_subnet),
        );
        push(
            format!("in workload subnet {} of {} (not a node)", b.workload_subnet, p.name),
            pick.inside(&b.workload_subnet),
        );
        for c in &b.customer_networks {
            push(format!("in customer network {c} of {}", p.name), pick.inside(c));
        }
    }
    if fleet.services().any(|(_, s)| s.cloud.provider == fleetwall_model::Provider::Azure) {
        push("Azure platform address".into(), pick.take(fleetwall_compile::AZURE_PLATFORM));
    }
    if fleet.services().count() == 1 {
        let v4: IpNet = "192.0.2.240/28".parse().expect("literal");
        push("a node of another service".into(), pick.inside(&v4));
        let v6: IpNet = "2001:db8:f0::/64".parse().expect("literal");
        push("a node of another service".into(), pick.inside(&v6));
    }
    out
}

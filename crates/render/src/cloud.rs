//! The cloud layer: the rules a cloud enforces in front of the nodes (AWS security groups,
//! GCP VPC firewall rules, Azure network security groups), rendered from the same Intent
//! as the node firewalls.
//!
//! [`lower`] turns a service's flows into [`CloudRule`]s, the shape all three clouds share:
//! allow rules per direction and family, a protocol, port ranges and a peer (anywhere, a
//! list of networks, or the service's own nodes). What a cloud enforces by its own nature
//! is left out: it tracks connections (established, related, invalid), it denies what no
//! rule allows (the final rejects) and it never filters loopback or neighbour discovery.
//! Where the cloud is coarser than the node (the node's own address class, ICMP types on
//! clouds that cannot name them), the group carries a note: the node firewall keeps the
//! finer match, so the two layers together are exactly the contract.
//!
//! Each cloud declares its [`Limit`]s; a group that does not fit is a [`CloudError`]
//! naming the object and the limit, never a silently truncated rule set.

use fleetwall_intent::{Intent, Local, Peer, ServiceIntent, Stage, Traffic};
use fleetwall_ir::{Direction, Family, Verdict};
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;

/// A limit a cloud imposes, with where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// What is limited ("inbound rules per security group").
    pub what: &'static str,
    /// The most it allows.
    pub max: usize,
    /// Where the number comes from ("AWS default quota, adjustable").
    pub source: &'static str,
}

/// A group (or one of its parts) that a cloud cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudError {
    /// The cloud backend.
    pub backend: &'static str,
    /// The object that does not fit (`acme-prod/pg-main inbound rules`).
    pub object: String,
    /// How much of it there is.
    pub needed: usize,
    /// The limit it exceeds.
    pub limit: Limit,
    /// What makes it that big (`ip_filter: 120 networks x 2 ports`).
    pub because: String,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} where at most {} fit: {} ({}; {})",
            self.backend, self.object, self.needed, self.limit.max, self.limit.what, self.limit.source, self.because
        )
    }
}

/// A cloud rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// Every protocol.
    All,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// IPsec ESP.
    Esp,
    /// ICMP of the rule's family, one type (`None`: every type).
    Icmp(Option<u8>),
}

/// The remote side of a cloud rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudPeer {
    /// Every address of the rule's family.
    Anywhere,
    /// These networks (aggregated: no network inside another, neighbours merged).
    Networks {
        /// The Intent group's name (`acme-prod/pg-main ip_filter`).
        group: String,
        /// The networks.
        nets: Vec<IpNet>,
    },
    /// The other nodes of the same service (a cloud that can refer to its own group does).
    OwnNodes {
        /// Their addresses of the rule's family.
        nets: Vec<IpNet>,
    },
}

impl CloudPeer {
    /// The networks the peer stands for, in the rule's family.
    pub fn nets(&self, family: Family) -> Vec<IpNet> {
        match self {
            CloudPeer::Anywhere => vec![everything(family)],
            CloudPeer::Networks { nets, .. } | CloudPeer::OwnNodes { nets } => nets.clone(),
        }
    }
}

/// `0.0.0.0/0` or `::/0`.
pub fn everything(family: Family) -> IpNet {
    match family {
        Family::V4 => "0.0.0.0/0".parse().expect("a valid network"),
        Family::V6 => "::/0".parse().expect("a valid network"),
    }
}

/// One allow rule of the cloud layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudRule {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The family of its addresses (clouds keep IPv4 and IPv6 ranges apart).
    pub family: Family,
    /// The protocol.
    pub proto: Proto,
    /// Destination port ranges, inclusive (empty: every port, or none for port-less protocols).
    pub ports: Vec<(u16, u16)>,
    /// The remote side.
    pub peer: CloudPeer,
    /// The flow it comes from (its rule id on the node).
    pub flow: String,
    /// Why (the flow's reason).
    pub reason: String,
}

/// One service's cloud-layer group: what the cloud lets through to and from its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudGroup {
    /// `project/service`.
    pub service: String,
    /// A name every cloud accepts: `fw-<project>-<service>`, lower case, `[a-z0-9-]`.
    pub name: String,
    /// The cloud (`aws-eu-west-1`).
    pub cloud: String,
    /// The fleet's name of its VPC, if any.
    pub vpc: Option<String>,
    /// Its nodes' names (the instances the group is attached to).
    pub nodes: Vec<String>,
    /// Every address of its nodes (what the group applies to, for an SDN in front).
    pub addresses: Vec<std::net::IpAddr>,
    /// The rules, inbound first, in flow order.
    pub rules: Vec<CloudRule>,
    /// Where the node firewall is finer than this layer (one line each).
    pub coarser: Vec<String>,
}

/// The port ranges of a list of ports: sorted, consecutive ports merged.
pub fn port_ranges(ports: &[u16]) -> Vec<(u16, u16)> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match out.last_mut() {
            Some((_, hi)) if u32::from(*hi) + 1 == u32::from(p) => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// `name` cut to what every cloud's names accept: lower case letters, digits and `-`,
/// starting with a letter, at most `max` bytes; a cut name ends in a hash of the whole
/// so that two long names stay apart.
pub fn object_name(name: &str, max: usize) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "fw-");
    }
    if s.len() > max {
        let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
        s.truncate(max - hash.len() - 1);
        while s.ends_with('-') {
            s.pop();
        }
        s.push('-');
        s.push_str(&hash);
    }
    s
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A name for the part of flow `flow` in `family`: the flow's id, with `-v4`/`-v6` added
/// unless the id already ends in it.
pub fn flow_name(flow: &str, family: Family) -> String {
    let tag = match family {
        Family::V4 => "-v4",
        Family::V6 => "-v6",
    };
    if flow.ends_with(tag) {
        flow.to_string()
    } else {
        format!("{flow}{tag}")
    }
}

/// Free text a cloud's description fields take: the characters in `allowed` (plus ASCII
/// letters, digits and space) kept, anything else a space, at most `max` bytes.
pub fn description(text: &str, allowed: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == ' ' || allowed.contains(c) { c } else { ' ' })
        .collect();
    if s.len() > max {
        s.truncate(max.saturating_sub(3));
        s.push_str("...");
    }
    s
}

/// The cloud-layer groups of the services whose cloud starts with `provider` (`aws-`;
/// `""`: every service, for the lab's SDN). Where the cloud cannot name ICMP types of a
/// family ([`icmp_types`]), an ICMP rule allows every type (and the group notes it).
pub fn lower(intent: &Intent, provider: &str) -> Vec<CloudGroup> {
    intent
        .services
        .iter()
        .filter(|s| s.cloud.starts_with(provider))
        .map(|s| lower_service(intent, s, cloud_name(provider), icmp_types(provider)))
        .collect()
}

/// For which families the cloud layer of `provider` names ICMP types: security groups for
/// ICMP (ICMPv6 only as a whole), GCP and Azure for neither; the SDN's nftables for both.
pub fn icmp_types(provider: &str) -> fn(Family) -> bool {
    match provider {
        "aws-" => |f| f == Family::V4,
        "google-" | "azure-" => |_| false,
        _ => |_| true,
    }
}

fn cloud_name(provider: &str) -> &'static str {
    match provider {
        "aws-" => "AWS",
        "google-" => "GCP",
        "azure-" => "Azure",
        _ => "the cloud",
    }
}

fn note(coarser: &mut Vec<String>, line: String) {
    if !coarser.contains(&line) {
        coarser.push(line);
    }
}

fn lower_service(intent: &Intent, s: &ServiceIntent, cloud: &str, icmp_types: fn(Family) -> bool) -> CloudGroup {
    let mut rules = Vec::new();
    let mut coarser = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        for f in s.flows.iter().filter(|f| f.direction == dir) {
            // The cloud's nature: stateful, deny by default, blind to loopback and to
            // neighbour discovery; a refusal in the middle is refused by check_intent.
            if f.stage == Stage::Base || f.ct.is_some() || f.loopback || f.verdict != Verdict::Accept {
                continue;
            }
            if let Local::Addresses(class) = f.local {
                let class = match class {
                    fleetwall_intent::AddressClass::Private => "private",
                    fleetwall_intent::AddressClass::Public => "public",
                };
                note(
                    &mut coarser,
                    format!(
                        "flows to the nodes' {class} addresses apply to all of an instance's addresses here; the node firewall matches the address"
                    ),
                );
            }
            let families: &[Family] = match f.family {
                Some(Family::V4) => &[Family::V4],
                Some(Family::V6) => &[Family::V6],
                None => &[Family::V4, Family::V6],
            };
            for &family in families {
                let peer = match f.peer {
                    Peer::Any => CloudPeer::Anywhere,
                    Peer::Group { group, except_self: _ } => {
                        let g = intent.group(group);
                        let members: Vec<_> = g.of_family(family).collect();
                        if members.is_empty() {
                            continue;
                        }
                        let nets = IpNet::aggregate(&members.iter().map(|m| m.net).collect::<Vec<_>>());
                        if members.iter().all(|m| m.node.is_some()) {
                            CloudPeer::OwnNodes { nets }
                        } else if nets.iter().any(|n| n.prefix_len() == 0) {
                            CloudPeer::Anywhere
                        } else {
                            CloudPeer::Networks { group: g.name.clone(), nets }
                        }
                    }
                };
                let (protos, ports): (Vec<Proto>, Vec<(u16, u16)>) = match &f.traffic {
                    Traffic::Any => (vec![Proto::All], vec![]),
                    Traffic::Tcp(p) => (vec![Proto::Tcp], port_ranges(p)),
                    Traffic::Udp(p) => (vec![Proto::Udp], port_ranges(p)),
                    Traffic::Esp => (vec![Proto::Esp], vec![]),
                    Traffic::Icmp(types) if icmp_types(family) => {
                        (types.iter().map(|t| Proto::Icmp(Some(t.number(family)))).collect(), vec![])
                    }
                    Traffic::Icmp(_) => {
                        let name = if family == Family::V4 { "ICMP" } else { "ICMPv6" };
                        note(
                            &mut coarser,
                            format!("{cloud} cannot match {name} types: its {name} rules allow every type; the node firewall keeps the types"),
                        );
                        (vec![Proto::Icmp(None)], vec![])
                    }
                };
                for proto in protos {
                    // The same rule twice (two ICMP types that became one) is one rule.
                    let same = |r: &CloudRule| {
                        r.direction == dir
                            && r.family == family
                            && r.proto == proto
                            && r.ports == ports
                            && r.peer == peer
                    };
                    if rules.iter().any(same) {
                        continue;
                    }
                    rules.push(CloudRule {
                        direction: dir,
                        family,
                        proto,
                        ports: ports.clone(),
                        peer: peer.clone(),
                        flow: f.id.clone(),
                        reason: f.reason.clone(),
                    });
                }
            }
        }
    }
    CloudGroup {
        service: s.qualified.clone(),
        name: object_name(&format!("fw-{}", s.qualified.replace('/', "-")), 63),
        cloud: s.cloud.clone(),
        vpc: s.vpc.clone(),
        nodes: s.nodes.iter().map(|n| n.name.clone()).collect(),
        addresses: s.nodes.iter().flat_map(|n| n.private.iter().chain(&n.public).copied()).collect(),
        rules,
        coarser,
    }
}

/// Whether `rules` (one direction) accept everything: then the cloud's own default
/// (AWS, GCP, Azure all allow every outbound connection) already says it.
pub fn allows_everything(rules: &[&CloudRule]) -> bool {
    [Family::V4, Family::V6]
        .iter()
        .all(|fam| rules.iter().any(|r| r.family == *fam && r.proto == Proto::All && r.peer == CloudPeer::Anywhere))
}

/// What the cloud layers express: allow rules only (the cloud denies the rest and tracks
/// connections itself), no loopback, no match on the node's own addresses. Their limits
/// on networks are counted after aggregation and prefix lists, by each backend against
/// its [`Limit`]s, not on the Intent's raw groups.
pub fn capabilities(backend: &str) -> crate::Capabilities {
    let base = crate::Capabilities {
        rejects: &[],
        drop: false,
        conntrack: true,
        icmp_types: true,
        loopback: false,
        egress: true,
        address_sets: false,
        destination_match: false,
        ordered: false,
        max_rules: None,
        max_set_entries: None,
    };
    match backend {
        "aws" => crate::Capabilities { address_sets: true, max_rules: Some(crate::aws::RULES_PER_GROUP.max), ..base },
        "gcp" => crate::Capabilities { icmp_types: false, ..base },
        _ => crate::Capabilities { icmp_types: false, max_rules: Some(crate::azure_nsg::RULES_PER_GROUP.max), ..base },
    }
}

/// The services of `intent` on another provider, for the "not rendered" note.
pub fn elsewhere<'i>(intent: &'i Intent, provider: &str) -> Vec<&'i ServiceIntent> {
    intent.services.iter().filter(|s| !s.cloud.starts_with(provider)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_merge_into_ranges() {
        assert_eq!(port_ranges(&[9000, 9002, 9001, 22, 22, 65535]), vec![(22, 22), (9000, 9002), (65535, 65535)]);
        assert!(port_ranges(&[]).is_empty());
    }

    #[test]
    fn names_fit_every_cloud() {
        assert_eq!(object_name("fw-Acme_Prod/pg--main", 63), "fw-acme-prod-pg-main");
        assert_eq!(object_name("9lives", 63), "fw-9lives");
        let long = object_name(&format!("fw-{}", "x".repeat(100)), 63);
        assert_eq!(long.len(), 63);
        assert_ne!(long, object_name(&format!("fw-{}", "x".repeat(101)), 63));
        assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn descriptions_keep_only_what_the_cloud_takes() {
        assert_eq!(description("ip_filter entry 'office' ü", "._-:/()", 255), "ip_filter entry  office   ");
        assert_eq!(description(&"a".repeat(300), "", 10), "aaaaaaa...");
    }
}

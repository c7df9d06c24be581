//! The neutral per-node ruleset (`NodeRuleset`): what the compiler produces and what
//! every renderer, the evaluator and the agent consume.
//!
//! It knows nothing of fleets or services: only address sets, ordered rules and verdicts.
//! Each rule carries a stable `id` (a slug derived from what it is for, not from its
//! position, so ids survive unrelated edits) and a `reason` naming the model object
//! behind it; each set element carries the reason it is there, so a verdict can be traced
//! back to "ip_filter entry 198.51.100.0/24 'office' of acme-prod/pg-main".
//! Sets are shared (`Arc`) between the nodes of a service: 10,000 nodes cost one copy of
//! each service's allowlist.
//!
//! A ruleset crosses a trust boundary (server → agent), so identifiers that renderers write
//! as syntax are validated types (`SetName`), and `NodeRuleset::validate` checks everything
//! else a renderer prints (names, ids, free text without control characters, references
//! that resolve) before anything is rendered from it.

mod validate;

pub use validate::{is_valid_node_name, Invalid, InvalidKind, SetName};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of a network.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// `v4` or `v6`, as used in ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// One element of a set and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The network as the model gave it (before aggregation).
    pub net: IpNet,
    /// Why it is in the set ("ip_filter entry 198.51.100.0/24 'office' of acme-prod/pg-main").
    pub reason: String,
}

/// A named set of networks of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrSet {
    /// The set's name, unique within a ruleset (`ipf4`, `mgmt6`).
    pub name: SetName,
    /// The family of every element.
    pub family: Family,
    /// What the set is ("ip_filter of acme-prod/pg-main").
    pub reason: String,
    /// The aggregated, sorted, non-overlapping networks the kernel matches.
    pub elements: Vec<IpNet>,
    /// The networks as the model gave them, with their reasons (for tracing).
    pub members: Vec<Member>,
}

impl AddrSet {
    /// Builds a set: elements are the members aggregated (adjacent and covered networks merged).
    pub fn new(name: SetName, family: Family, reason: impl Into<String>, members: Vec<Member>) -> AddrSet {
        let nets: Vec<IpNet> = members.iter().map(|m| m.net).filter(|n| Family::of(n) == family).collect();
        AddrSet { name, family, reason: reason.into(), elements: IpNet::aggregate(&nets), members }
    }

    /// Whether an address is in the set.
    pub fn contains(&self, addr: &std::net::IpAddr) -> bool {
        let i = self.elements.partition_point(|n| n.network() <= *addr);
        i > 0 && self.elements[i - 1].contains(addr)
    }
}

/// Where addresses of a match come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addrs {
    /// A named set of the ruleset.
    Set(SetName),
    /// A short literal list (the node's own addresses, a platform address).
    List(Vec<IpNet>),
}

/// ICMP and ICMPv6 message types the rules name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IcmpType {
    /// Echo request (ping).
    EchoRequest,
    /// Destination unreachable.
    DestinationUnreachable,
    /// Time exceeded.
    TimeExceeded,
    /// Parameter problem.
    ParameterProblem,
    /// ICMPv6 packet too big (path MTU discovery).
    PacketTooBig,
    /// ICMPv6 router advertisement.
    NdRouterAdvert,
    /// ICMPv6 neighbour solicitation.
    NdNeighborSolicit,
    /// ICMPv6 neighbour advertisement.
    NdNeighborAdvert,
}

impl IcmpType {
    /// The name nftables uses (`echo-request`, `nd-neighbor-solicit`, ...).
    pub fn nft_name(self) -> &'static str {
        match self {
            IcmpType::EchoRequest => "echo-request",
            IcmpType::DestinationUnreachable => "destination-unreachable",
            IcmpType::TimeExceeded => "time-exceeded",
            IcmpType::ParameterProblem => "parameter-problem",
            IcmpType::PacketTooBig => "packet-too-big",
            IcmpType::NdRouterAdvert => "nd-router-advert",
            IcmpType::NdNeighborSolicit => "nd-neighbor-solicit",
            IcmpType::NdNeighborAdvert => "nd-neighbor-advert",
        }
    }

    /// Whether the family's ICMP has this type (packet-too-big and neighbour discovery
    /// are ICMPv6 only).
    pub fn exists_in(self, family: Family) -> bool {
        family == Family::V6
            || !matches!(
                self,
                IcmpType::PacketTooBig
                    | IcmpType::NdRouterAdvert
                    | IcmpType::NdNeighborSolicit
                    | IcmpType::NdNeighborAdvert
            )
    }

    /// The ICMP (v4) or ICMPv6 type number.
    pub fn number(self, family: Family) -> u8 {
        match (self, family) {
            (IcmpType::EchoRequest, Family::V4) => 8,
            (IcmpType::EchoRequest, Family::V6) => 128,
            (IcmpType::DestinationUnreachable, Family::V4) => 3,
            (IcmpType::DestinationUnreachable, Family::V6) => 1,
            (IcmpType::TimeExceeded, Family::V4) => 11,
            (IcmpType::TimeExceeded, Family::V6) => 3,
            (IcmpType::ParameterProblem, Family::V4) => 12,
            (IcmpType::ParameterProblem, Family::V6) => 4,
            (IcmpType::PacketTooBig, _) => 2,
            (IcmpType::NdRouterAdvert, _) => 134,
            (IcmpType::NdNeighborSolicit, _) => 135,
            (IcmpType::NdNeighborAdvert, _) => 136,
        }
    }
}

/// The transport part of a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "proto", content = "ports")]
pub enum L4 {
    /// TCP to one of these destination ports (empty: any port).
    Tcp(Vec<u16>),
    /// UDP to one of these destination ports (empty: any port).
    Udp(Vec<u16>),
    /// IPsec ESP (IP protocol 50).
    Esp,
    /// ICMP or ICMPv6 (by the rule's family) of these types.
    Icmp(Vec<IcmpType>),
}

/// Conntrack state matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CtState {
    /// Packets of established connections and related ICMP errors.
    EstablishedRelated,
    /// Packets conntrack cannot place.
    Invalid,
}

/// What a rule matches; every present field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Match {
    /// Arrived on the loopback interface.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loopback: bool,
    /// Conntrack state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct: Option<CtState>,
    /// Address family (required when addresses or ICMP types are matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// Source addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saddr: Option<Addrs>,
    /// Destination addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daddr: Option<Addrs>,
    /// Transport protocol and ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4: Option<L4>,
}

/// How a packet is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reject {
    /// A TCP reset.
    TcpReset,
    /// ICMP(v6) port unreachable.
    PortUnreachable,
    /// ICMP(v6) administratively prohibited.
    AdminProhibited,
}

/// What happens to a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "with")]
pub enum Verdict {
    /// Let it through.
    Accept,
    /// Discard silently (conntrack-invalid only).
    Drop,
    /// Refuse it so the client fails fast.
    Reject(Reject),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// A stable id: the same purpose always gets the same id (`client-pg-dynamic-v4`).
    pub id: String,
    /// Why the rule exists, naming the model object behind it.
    pub reason: String,
    /// What it matches.
    #[serde(rename = "match")]
    pub matches: Match,
    /// What it does.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The firewall of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRuleset {
    /// The node's name.
    pub node: String,
    /// What the node is, for headers ("acme-prod/pg-main (pg)").
    pub description: String,
    /// The node's own addresses (what "inbound" means for conntrack and traces).
    pub addresses: Vec<std::net::IpAddr>,
    /// The sets the rules refer to, sorted by name.
    pub sets: Vec<Arc<AddrSet>>,
    /// Inbound rules, in order; the last ones reject everything.
    pub input: Vec<Rule>,
    /// Outbound rules, in order.
    pub output: Vec<Rule>,
}

impl NodeRuleset {
    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&AddrSet> {
        self.sets.iter().find(|s| s.name.as_str() == name).map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(s: &str) -> Member {
        Member { net: s.parse().unwrap(), reason: s.into() }
    }

    #[test]
    fn sets_aggregate_and_keep_their_members() {
        let s = AddrSet::new(
            SetName::new("ipf4").unwrap(),
            Family::V4,
            "test",
            vec![member("10.0.0.0/25"), member("10.0.0.128/25"), member("10.0.0.7/32"), member("192.0.2.0/24")],
        );
        assert_eq!(s.elements, vec!["10.0.0.0/24".parse::<IpNet>().unwrap(), "192.0.2.0/24".parse().unwrap()]);
        assert_eq!(s.members.len(), 4);
        assert!(s.contains(&"10.0.0.200".parse().unwrap()));
        assert!(s.contains(&"192.0.2.255".parse().unwrap()));
        assert!(!s.contains(&"10.0.1.0".parse().unwrap()));
        assert!(!s.contains(&"9.255.255.255".parse().unwrap()));
    }
}

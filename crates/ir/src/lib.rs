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

mod hash;
mod validate;

pub use hash::{HASH_VERSION, RULE_HASH_LEN};
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

/// Which chain a packet meets: inbound to the node, or outbound from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Arriving at the node (the input chain): `dst` is one of the node's addresses.
    Ingress,
    /// Leaving the node (the output chain): `src` is one of the node's addresses.
    Egress,
}

impl Direction {
    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The chain of `rs` packets of this direction meet.
    pub fn chain(self, rs: &NodeRuleset) -> &[Rule] {
        match self {
            Direction::Ingress => &rs.input,
            Direction::Egress => &rs.output,
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
    /// The type's name in the IR and in messages (`echo-request`, `nd-neighbor-solicit`, ...).
    pub fn name(self) -> &'static str {
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

/// The transport part of a match that names one address family (ICMP types exist only
/// per family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "proto", content = "ports")]
pub enum L4 {
    /// TCP to one of these destination ports (empty: any port).
    Tcp(Vec<u16>),
    /// UDP to one of these destination ports (empty: any port).
    Udp(Vec<u16>),
    /// IPsec ESP (IP protocol 50).
    Esp,
    /// ICMP or ICMPv6 (by the match's family) of these types.
    Icmp(Vec<IcmpType>),
}

/// The transport part of a match for either family: everything but ICMP types, which
/// need a family to mean anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    /// TCP to one of these destination ports (empty: any port).
    Tcp(Vec<u16>),
    /// UDP to one of these destination ports (empty: any port).
    Udp(Vec<u16>),
    /// IPsec ESP.
    Esp,
}

impl From<Proto> for L4 {
    fn from(p: Proto) -> L4 {
        match p {
            Proto::Tcp(p) => L4::Tcp(p),
            Proto::Udp(p) => L4::Udp(p),
            Proto::Esp => L4::Esp,
        }
    }
}

/// A borrowed view of a match's transport part, whichever kind of match holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Ref<'a> {
    /// TCP to these ports (empty: any).
    Tcp(&'a [u16]),
    /// UDP to these ports (empty: any).
    Udp(&'a [u16]),
    /// IPsec ESP.
    Esp,
    /// ICMP types of the match's family.
    Icmp(&'a [IcmpType]),
}

impl L4 {
    /// A borrowed view.
    pub fn as_ref(&self) -> L4Ref<'_> {
        match self {
            L4::Tcp(p) => L4Ref::Tcp(p),
            L4::Udp(p) => L4Ref::Udp(p),
            L4::Esp => L4Ref::Esp,
            L4::Icmp(t) => L4Ref::Icmp(t),
        }
    }
}

impl Proto {
    /// A borrowed view.
    pub fn as_ref(&self) -> L4Ref<'_> {
        match self {
            Proto::Tcp(p) => L4Ref::Tcp(p),
            Proto::Udp(p) => L4Ref::Udp(p),
            Proto::Esp => L4Ref::Esp,
        }
    }
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

/// The address part of a match: of one family, with optional source and destination
/// addresses and a transport part that may name ICMP types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMatch {
    /// The family every address and ICMP type here belongs to.
    pub family: Family,
    /// Source addresses.
    pub saddr: Option<Addrs>,
    /// Destination addresses.
    pub daddr: Option<Addrs>,
    /// Transport protocol and ports or ICMP types.
    pub l4: Option<L4>,
}

impl IpMatch {
    /// Packets of `family`.
    pub fn new(family: Family) -> IpMatch {
        IpMatch { family, saddr: None, daddr: None, l4: None }
    }
    /// From these source addresses.
    pub fn from(mut self, a: Addrs) -> IpMatch {
        self.saddr = Some(a);
        self
    }
    /// To these destination addresses.
    pub fn to(mut self, a: Addrs) -> IpMatch {
        self.daddr = Some(a);
        self
    }
    /// Of this transport.
    pub fn l4(mut self, l4: L4) -> IpMatch {
        self.l4 = Some(l4);
        self
    }
}

/// The network part of a match: either family (then no addresses and no ICMP types can
/// be named), or one family. An address or ICMP match without a family cannot be built,
/// so no backend can silently drop one that the evaluator applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L3 {
    /// Packets of either family, optionally of one transport.
    Any(Option<Proto>),
    /// Packets of one family.
    Ip(IpMatch),
}

impl Default for L3 {
    fn default() -> L3 {
        L3::Any(None)
    }
}

/// What a rule matches; every present part must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "MatchRepr", into = "MatchRepr")]
pub struct Match {
    /// Arrived on (inbound) or leaves by (outbound) the loopback interface.
    pub loopback: bool,
    /// Conntrack state.
    pub ct: Option<CtState>,
    /// Family, addresses and transport.
    pub l3: L3,
}

impl Match {
    /// Loopback traffic.
    pub fn loopback() -> Match {
        Match { loopback: true, ..Match::default() }
    }
    /// Packets in this conntrack state.
    pub fn ct(state: CtState) -> Match {
        Match { ct: Some(state), ..Match::default() }
    }
    /// Packets of either family of this transport.
    pub fn proto(p: Proto) -> Match {
        Match { l3: L3::Any(Some(p)), ..Match::default() }
    }
    /// The family the match is limited to.
    pub fn family(&self) -> Option<Family> {
        match &self.l3 {
            L3::Any(_) => None,
            L3::Ip(m) => Some(m.family),
        }
    }
    /// Source addresses, if matched.
    pub fn saddr(&self) -> Option<&Addrs> {
        match &self.l3 {
            L3::Any(_) => None,
            L3::Ip(m) => m.saddr.as_ref(),
        }
    }
    /// Destination addresses, if matched.
    pub fn daddr(&self) -> Option<&Addrs> {
        match &self.l3 {
            L3::Any(_) => None,
            L3::Ip(m) => m.daddr.as_ref(),
        }
    }
    /// The transport part, if matched.
    pub fn l4(&self) -> Option<L4Ref<'_>> {
        match &self.l3 {
            L3::Any(p) => p.as_ref().map(Proto::as_ref),
            L3::Ip(m) => m.l4.as_ref().map(L4::as_ref),
        }
    }
    /// The address part, mutably (tests that break rulesets on purpose use it).
    pub fn ip_mut(&mut self) -> Option<&mut IpMatch> {
        match &mut self.l3 {
            L3::Any(_) => None,
            L3::Ip(m) => Some(m),
        }
    }
}

impl From<IpMatch> for Match {
    fn from(m: IpMatch) -> Match {
        Match { l3: L3::Ip(m), ..Match::default() }
    }
}

/// The wire and file form of a match: flat, as it has always been serialised.
#[derive(Serialize, Deserialize)]
struct MatchRepr {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    loopback: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ct: Option<CtState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    saddr: Option<Addrs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daddr: Option<Addrs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l4: Option<L4>,
}

impl TryFrom<MatchRepr> for Match {
    type Error = String;
    fn try_from(r: MatchRepr) -> Result<Match, String> {
        let l3 = match r.family {
            Some(family) => L3::Ip(IpMatch { family, saddr: r.saddr, daddr: r.daddr, l4: r.l4 }),
            None if r.saddr.is_some() || r.daddr.is_some() => {
                return Err("a match on addresses needs a family".into());
            }
            None => L3::Any(match r.l4 {
                None => None,
                Some(L4::Tcp(p)) => Some(Proto::Tcp(p)),
                Some(L4::Udp(p)) => Some(Proto::Udp(p)),
                Some(L4::Esp) => Some(Proto::Esp),
                Some(L4::Icmp(_)) => return Err("a match on ICMP types needs a family".into()),
            }),
        };
        Ok(Match { loopback: r.loopback, ct: r.ct, l3 })
    }
}

impl From<Match> for MatchRepr {
    fn from(m: Match) -> MatchRepr {
        let (family, saddr, daddr, l4) = match m.l3 {
            L3::Any(p) => (None, None, None, p.map(L4::from)),
            L3::Ip(i) => (Some(i.family), i.saddr, i.daddr, i.l4),
        };
        MatchRepr { loopback: m.loopback, ct: m.ct, family, saddr, daddr, l4 }
    }
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

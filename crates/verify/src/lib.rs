//! The evaluator: what a `NodeRuleset` does with one packet, and which rule decided.
//!
//! It walks the input chain in order exactly as the kernel does (first match wins; no
//! match means the chain's accept policy), so trace, tests, diffs, lint and the agent's
//! revoke all share one interpretation of the IR — and the lab checks this
//! interpretation against real probes.

pub mod assertions;
pub mod check;
pub mod cidr;
pub mod diff;
pub mod proof;
pub mod trace;

use fleetwall_ir::{Addrs, CtState, Family, NodeRuleset, Rule, Verdict, L4};
use std::net::IpAddr;

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP to a destination port.
    Tcp(u16),
    /// UDP to a destination port.
    Udp(u16),
    /// ICMP or ICMPv6 (by the address family) of a type number.
    Icmp(u8),
    /// IPsec ESP.
    Esp,
    /// Any other IP protocol number.
    Other(u8),
}

/// The conntrack view of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// The first packet of a connection.
    New,
    /// A packet of an established connection (or a related ICMP error).
    Established,
    /// A packet conntrack cannot place.
    Invalid,
}

/// An inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (one of the node's).
    pub dst: IpAddr,
    /// Protocol and port.
    pub transport: Transport,
    /// Conntrack state.
    pub conn: Conn,
    /// Arrived on loopback.
    pub loopback: bool,
}

impl Packet {
    /// A new connection's first packet from `src` to `dst`.
    pub fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Packet {
        Packet { src, dst, transport, conn: Conn::New, loopback: false }
    }

    fn family(&self) -> Family {
        if self.src.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// What the ruleset does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The verdict.
    pub verdict: Verdict,
    /// The deciding rule and its index, or `None` when the chain policy (accept) applied.
    pub rule: Option<(usize, &'a Rule)>,
}

pub(crate) fn addrs_match(rs: &NodeRuleset, a: &Addrs, ip: &IpAddr) -> bool {
    match a {
        Addrs::Set(name) => rs.set(name).is_some_and(|s| s.contains(ip)),
        Addrs::List(nets) => nets.iter().any(|n| n.contains(ip)),
    }
}

/// Whether `rule` matches `p`.
pub fn matches(rs: &NodeRuleset, rule: &Rule, p: &Packet) -> bool {
    let m = &rule.matches;
    if m.loopback && !p.loopback {
        return false;
    }
    match m.ct {
        Some(CtState::EstablishedRelated) if p.conn != Conn::Established => return false,
        Some(CtState::Invalid) if p.conn != Conn::Invalid => return false,
        _ => {}
    }
    let fam = p.family();
    if m.family.is_some_and(|f| f != fam) {
        return false;
    }
    if m.saddr.as_ref().is_some_and(|a| !addrs_match(rs, a, &p.src)) {
        return false;
    }
    if m.daddr.as_ref().is_some_and(|a| !addrs_match(rs, a, &p.dst)) {
        return false;
    }
    match (&m.l4, p.transport) {
        (None, _) => true,
        (Some(L4::Tcp(ports)), Transport::Tcp(port)) | (Some(L4::Udp(ports)), Transport::Udp(port)) => {
            ports.is_empty() || ports.contains(&port)
        }
        (Some(L4::Esp), Transport::Esp) => true,
        (Some(L4::Icmp(types)), Transport::Icmp(t)) => types.iter().any(|x| x.number(fam) == t),
        _ => false,
    }
}

/// Evaluates an inbound packet against the input chain.
pub fn evaluate<'a>(rs: &'a NodeRuleset, p: &Packet) -> Decision<'a> {
    for (i, r) in rs.input.iter().enumerate() {
        if matches(rs, r, p) {
            return Decision { verdict: r.verdict, rule: Some((i, r)) };
        }
    }
    Decision { verdict: Verdict::Accept, rule: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_ir::{AddrSet, Match, Member, Reject, SetName};
    use std::sync::Arc;

    fn ruleset() -> NodeRuleset {
        let set = AddrSet::new(
            SetName::new("ipf4").unwrap(),
            Family::V4,
            "ip_filter",
            vec![Member { net: "198.51.100.0/24".parse().unwrap(), reason: "office".into() }],
        );
        let rule = |id: &str, m: Match, v: Verdict| Rule { id: id.into(), reason: id.into(), matches: m, verdict: v };
        NodeRuleset {
            node: "n".into(),
            description: "d".into(),
            addresses: vec!["203.0.113.5".parse().unwrap()],
            sets: vec![Arc::new(set)],
            input: vec![
                rule("est", Match { ct: Some(CtState::EstablishedRelated), ..Match::default() }, Verdict::Accept),
                rule(
                    "pg",
                    Match {
                        family: Some(Family::V4),
                        saddr: Some(Addrs::Set(SetName::new("ipf4").unwrap())),
                        daddr: Some(Addrs::List(vec!["203.0.113.5/32".parse().unwrap()])),
                        l4: Some(L4::Tcp(vec![12691])),
                        ..Match::default()
                    },
                    Verdict::Accept,
                ),
                rule("rt", Match { l4: Some(L4::Tcp(vec![])), ..Match::default() }, Verdict::Reject(Reject::TcpReset)),
            ],
            output: vec![],
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let rs = ruleset();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let d = evaluate(&rs, &Packet::new(ip("198.51.100.7"), ip("203.0.113.5"), Transport::Tcp(12691)));
        assert_eq!((d.verdict, d.rule.unwrap().1.id.as_str()), (Verdict::Accept, "pg"));
        let d = evaluate(&rs, &Packet::new(ip("192.0.2.7"), ip("203.0.113.5"), Transport::Tcp(12691)));
        assert_eq!(d.rule.unwrap().1.id, "rt");
        let d = evaluate(&rs, &Packet::new(ip("198.51.100.7"), ip("203.0.113.6"), Transport::Tcp(12691)));
        assert_eq!(d.rule.unwrap().1.id, "rt", "destination address is matched too");
        let mut p = Packet::new(ip("192.0.2.7"), ip("203.0.113.5"), Transport::Tcp(1));
        p.conn = Conn::Established;
        assert_eq!(evaluate(&rs, &p).rule.unwrap().1.id, "est");
        let d = evaluate(&rs, &Packet::new(ip("192.0.2.7"), ip("203.0.113.5"), Transport::Udp(1)));
        assert!(d.rule.is_none(), "no match: the chain policy");
    }
}

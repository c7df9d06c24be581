//! The one evaluator: what a `NodeRuleset` does with one packet, in either direction,
//! and which rule decided; and all CIDR algebra (`cidr`).
//!
//! It sees the IR only, never the fleet. It walks a chain in order exactly as the kernel
//! does (first match wins; no match means the chain's accept policy), so trace, the
//! fleet's tests, diffs, the management proof, the lab's oracle and the agent's
//! conntrack revoke all share one interpretation of the IR — and the lab checks this
//! interpretation against real probes, inbound and outbound.

pub mod cidr;
pub mod trace;

pub use fleetwall_ir::Direction;
use fleetwall_ir::{Addrs, CtState, Family, L4Ref, NodeRuleset, Rule, Verdict};
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

/// A packet, inbound or outbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol and port.
    pub transport: Transport,
    /// Conntrack state.
    pub conn: Conn,
    /// Arrived on (inbound) or leaves by (outbound) loopback.
    pub loopback: bool,
}

impl Packet {
    /// A new connection's first packet from `src` to `dst`.
    pub fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Packet {
        Packet { src, dst, transport, conn: Conn::New, loopback: false }
    }

    /// The packet's address family (of its source).
    pub fn family(&self) -> Family {
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

/// Whether `ip` is in `a` (a set of `rs`, or a literal list).
pub fn addrs_match(rs: &NodeRuleset, a: &Addrs, ip: &IpAddr) -> bool {
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
    if m.family().is_some_and(|f| f != fam) {
        return false;
    }
    if m.saddr().is_some_and(|a| !addrs_match(rs, a, &p.src)) {
        return false;
    }
    if m.daddr().is_some_and(|a| !addrs_match(rs, a, &p.dst)) {
        return false;
    }
    transport_matches(m.l4(), p.transport, fam)
}

/// Whether a rule's transport part admits `t` (of family `fam`).
pub fn transport_matches(l4: Option<L4Ref<'_>>, t: Transport, fam: Family) -> bool {
    match (l4, t) {
        (None, _) => true,
        (Some(L4Ref::Tcp(ports)), Transport::Tcp(port)) | (Some(L4Ref::Udp(ports)), Transport::Udp(port)) => {
            ports.is_empty() || ports.contains(&port)
        }
        (Some(L4Ref::Esp), Transport::Esp) => true,
        (Some(L4Ref::Icmp(types)), Transport::Icmp(t)) => types.iter().any(|x| x.number(fam) == t),
        _ => false,
    }
}

/// Evaluates a packet against the chain of its direction.
pub fn evaluate_in<'a>(rs: &'a NodeRuleset, dir: Direction, p: &Packet) -> Decision<'a> {
    for (i, r) in dir.chain(rs).iter().enumerate() {
        if matches(rs, r, p) {
            return Decision { verdict: r.verdict, rule: Some((i, r)) };
        }
    }
    Decision { verdict: Verdict::Accept, rule: None }
}

/// Evaluates an inbound packet against the input chain.
pub fn evaluate<'a>(rs: &'a NodeRuleset, p: &Packet) -> Decision<'a> {
    evaluate_in(rs, Direction::Ingress, p)
}

/// Evaluates an outbound packet (from one of the node's addresses) against the output chain.
pub fn evaluate_egress<'a>(rs: &'a NodeRuleset, p: &Packet) -> Decision<'a> {
    evaluate_in(rs, Direction::Egress, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_ir::{AddrSet, IpMatch, Match, Member, Proto, Reject, SetName, L4};
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
                rule("est", Match::ct(CtState::EstablishedRelated), Verdict::Accept),
                rule(
                    "pg",
                    IpMatch::new(Family::V4)
                        .from(Addrs::Set(SetName::new("ipf4").unwrap()))
                        .to(Addrs::List(vec!["203.0.113.5/32".parse().unwrap()]))
                        .l4(L4::Tcp(vec![12691]))
                        .into(),
                    Verdict::Accept,
                ),
                rule("rt", Match::proto(Proto::Tcp(vec![])), Verdict::Reject(Reject::TcpReset)),
            ],
            output: vec![
                rule(
                    "dns",
                    IpMatch::new(Family::V4)
                        .to(Addrs::List(vec!["192.0.2.53/32".parse().unwrap()]))
                        .l4(L4::Udp(vec![53]))
                        .into(),
                    Verdict::Accept,
                ),
                rule("deny", Match::default(), Verdict::Reject(Reject::AdminProhibited)),
            ],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_matching_rule_decides() {
        let rs = ruleset();
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

    #[test]
    fn egress_walks_the_output_chain_only() {
        let rs = ruleset();
        let out = |dst: &str, t| evaluate_egress(&rs, &Packet::new(ip("203.0.113.5"), ip(dst), t));
        assert_eq!(out("192.0.2.53", Transport::Udp(53)).rule.unwrap().1.id, "dns");
        let d = out("192.0.2.54", Transport::Udp(53));
        assert_eq!((d.verdict, d.rule.unwrap().1.id.as_str()), (Verdict::Reject(Reject::AdminProhibited), "deny"));
        // The input chain's rules do not apply outbound, nor the output chain's inbound.
        assert_eq!(out("198.51.100.7", Transport::Tcp(12691)).rule.unwrap().1.id, "deny");
        let d = evaluate(&rs, &Packet::new(ip("192.0.2.53"), ip("203.0.113.5"), Transport::Udp(53)));
        assert!(d.rule.is_none());
    }
}

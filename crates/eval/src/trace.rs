//! `trace`: the verdict for one packet, inbound or outbound, the rule that decided, and
//! the reasons behind it back to the model; for a refusal, the rules that would have
//! accepted that port and what the packet lacked for each.

use crate::{addrs_match, evaluate_in, matches, Direction, Packet, Transport};
use fleetwall_ir::{Addrs, L4Ref, NodeRuleset, Reject, Rule, Verdict};
use serde::Serialize;
use std::net::IpAddr;

/// Why a packet got its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The node.
    pub node: String,
    /// `ingress` (the input chain) or `egress` (the output chain).
    pub direction: Direction,
    /// `accept`, `drop`, or `reject with tcp-reset` / `port-unreachable` / `admin-prohibited`.
    pub verdict: String,
    /// The deciding rule's id (`policy` when no rule matched).
    pub rule: String,
    /// Its reason.
    pub reason: String,
    /// The set members that admitted the remote address, and other facts on the way.
    pub because: Vec<String>,
    /// For a refusal: rules that accept this port and protocol, and what was missing.
    pub near_misses: Vec<String>,
}

impl Trace {
    /// The packet was accepted.
    pub fn accepted(&self) -> bool {
        self.verdict == "accept"
    }
}

/// Names a verdict the way the CLI prints it.
pub fn verdict_name(v: Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject(Reject::TcpReset) => "reject with tcp-reset".into(),
        Verdict::Reject(Reject::PortUnreachable) => "reject with port-unreachable".into(),
        Verdict::Reject(Reject::AdminProhibited) => "reject with admin-prohibited".into(),
    }
}

/// The reasons of the members of `a` that hold `ip`.
fn member_reasons(rs: &NodeRuleset, a: Option<&Addrs>, ip: &IpAddr, what: &str) -> Vec<String> {
    match a {
        Some(Addrs::Set(name)) => match rs.set(name) {
            Some(set) => {
                let mut v: Vec<String> =
                    set.members.iter().filter(|m| m.net.contains(ip)).map(|m| m.reason.clone()).collect();
                v.dedup();
                v
            }
            None => vec![],
        },
        Some(Addrs::List(nets)) => nets.iter().filter(|n| n.contains(ip)).map(|n| format!("{what} {n}")).collect(),
        None => vec![],
    }
}

fn port_matches(l4: Option<L4Ref<'_>>, t: Transport) -> bool {
    match (l4, t) {
        (Some(L4Ref::Tcp(ports)), Transport::Tcp(p)) | (Some(L4Ref::Udp(ports)), Transport::Udp(p)) => {
            ports.contains(&p)
        }
        _ => false,
    }
}

fn describe_addrs(rs: &NodeRuleset, a: &Addrs) -> String {
    match a {
        Addrs::Set(name) => rs.set(name).map_or(format!("@{name}"), |s| s.reason.clone()),
        // A single address as itself, a network with its prefix length.
        Addrs::List(n) => n
            .iter()
            .map(|x| if x.prefix_len() == x.max_prefix_len() { x.addr().to_string() } else { x.to_string() })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Traces one inbound packet through a node's input chain.
pub fn trace(rs: &NodeRuleset, p: &Packet) -> Trace {
    trace_in(rs, Direction::Ingress, p)
}

/// Traces one packet through the chain of its direction. Outbound, the remote side is
/// the destination: `because` names what admitted it, and a near miss says the
/// destination was not in a rule's addresses.
pub fn trace_in(rs: &NodeRuleset, dir: Direction, p: &Packet) -> Trace {
    let d = evaluate_in(rs, dir, p);
    let (rule, reason, because) = match d.rule {
        Some((_, r)) => {
            let because = match dir {
                Direction::Ingress => member_reasons(rs, r.matches.saddr(), &p.src, "source"),
                Direction::Egress => member_reasons(rs, r.matches.daddr(), &p.dst, "destination"),
            };
            (r.id.clone(), r.reason.clone(), because)
        }
        None => ("policy".into(), "no rule matched: the chain policy accepts".into(), vec![]),
    };
    let mut near_misses = Vec::new();
    if d.verdict != Verdict::Accept {
        let accepting = |r: &&Rule| r.verdict == Verdict::Accept && port_matches(r.matches.l4(), p.transport);
        for r in dir.chain(rs).iter().filter(accepting) {
            if matches(rs, r, p) || r.matches.family().is_some_and(|f| f != p.family()) {
                continue;
            }
            let mut lacks = Vec::new();
            if let Some(a) = r.matches.saddr() {
                if !addrs_match(rs, a, &p.src) {
                    lacks.push(match dir {
                        Direction::Ingress => format!("the source is not in {}", describe_addrs(rs, a)),
                        Direction::Egress => format!("it applies from {} only", describe_addrs(rs, a)),
                    });
                }
            }
            if let Some(a) = r.matches.daddr() {
                if !addrs_match(rs, a, &p.dst) {
                    lacks.push(match dir {
                        Direction::Ingress => format!("it listens on {} only", describe_addrs(rs, a)),
                        Direction::Egress => format!("the destination is not in {}", describe_addrs(rs, a)),
                    });
                }
            }
            near_misses.push(format!("{} ({}): {}", r.id, r.reason, lacks.join("; ")));
        }
    }
    Trace {
        node: rs.node.clone(),
        direction: dir,
        verdict: verdict_name(d.verdict),
        rule,
        reason,
        because,
        near_misses,
    }
}

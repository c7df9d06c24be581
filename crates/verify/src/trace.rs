//! `trace`: the verdict for one packet, the rule that decided, and the reasons behind it
//! back to the model; for a refusal, the rules that would have accepted that port and
//! what the packet lacked for each.

use crate::{addrs_match, evaluate, matches, Packet, Transport};
use fleetwall_ir::{Addrs, NodeRuleset, Reject, Rule, Verdict, L4};
use serde::Serialize;

/// Why a packet got its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The node.
    pub node: String,
    /// `accept`, `drop`, or `reject with tcp-reset` / `port-unreachable` / `admin-prohibited`.
    pub verdict: String,
    /// The deciding rule's id (`policy` when no rule matched).
    pub rule: String,
    /// Its reason.
    pub reason: String,
    /// The set members that admitted the source, and other facts on the way.
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

fn source_reasons(rs: &NodeRuleset, rule: &Rule, p: &Packet) -> Vec<String> {
    match &rule.matches.saddr {
        Some(Addrs::Set(name)) => match rs.set(name) {
            Some(set) => {
                let mut v: Vec<String> =
                    set.members.iter().filter(|m| m.net.contains(&p.src)).map(|m| m.reason.clone()).collect();
                v.dedup();
                v
            }
            None => vec![],
        },
        Some(Addrs::List(nets)) => nets.iter().filter(|n| n.contains(&p.src)).map(|n| format!("source {n}")).collect(),
        None => vec![],
    }
}

fn port_matches(l4: &Option<L4>, t: Transport) -> bool {
    match (l4, t) {
        (Some(L4::Tcp(ports)), Transport::Tcp(p)) | (Some(L4::Udp(ports)), Transport::Udp(p)) => ports.contains(&p),
        _ => false,
    }
}

fn describe_addrs(rs: &NodeRuleset, a: &Addrs) -> String {
    match a {
        Addrs::Set(name) => rs.set(name).map_or(format!("@{name}"), |s| s.reason.clone()),
        Addrs::List(n) => n.iter().map(|x| x.addr().to_string()).collect::<Vec<_>>().join(", "),
    }
}

/// Traces one packet through a node's ruleset.
pub fn trace(rs: &NodeRuleset, p: &Packet) -> Trace {
    let d = evaluate(rs, p);
    let (rule, reason, because) = match d.rule {
        Some((_, r)) => (r.id.clone(), r.reason.clone(), source_reasons(rs, r, p)),
        None => ("policy".into(), "no rule matched: the chain policy accepts".into(), vec![]),
    };
    let mut near_misses = Vec::new();
    if d.verdict != Verdict::Accept {
        for r in rs.input.iter().filter(|r| r.verdict == Verdict::Accept && port_matches(&r.matches.l4, p.transport)) {
            if matches(rs, r, p) {
                continue;
            }
            let fam_ok = r
                .matches
                .family
                .is_none_or(|f| f == if p.src.is_ipv4() { fleetwall_ir::Family::V4 } else { fleetwall_ir::Family::V6 });
            if !fam_ok {
                continue;
            }
            let mut lacks = Vec::new();
            if let Some(a) = &r.matches.saddr {
                if !addrs_match(rs, a, &p.src) {
                    lacks.push(format!("the source is not in {}", describe_addrs(rs, a)));
                }
            }
            if let Some(a) = &r.matches.daddr {
                if !addrs_match(rs, a, &p.dst) {
                    lacks.push(format!("it listens on {} only", describe_addrs(rs, a)));
                }
            }
            near_misses.push(format!("{} ({}): {}", r.id, r.reason, lacks.join("; ")));
        }
    }
    Trace { node: rs.node.clone(), verdict: verdict_name(d.verdict), rule, reason, because, near_misses }
}

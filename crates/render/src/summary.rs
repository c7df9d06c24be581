//! A readable summary of what a node opens to whom, and what it may reach outbound
//! (`fleetwall plan` without a format).
//!
//! Built from the IR like every other renderer, so it shows what the kernel will do,
//! not what the model meant.

use fleetwall_ir::{Addrs, L4Ref, NodeRuleset, Verdict};
use std::fmt::Write as _;

fn ports(l4: Option<L4Ref<'_>>) -> String {
    let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    match l4 {
        None => "any".into(),
        Some(L4Ref::Tcp([])) => "tcp".into(),
        Some(L4Ref::Tcp(p)) => format!("tcp/{}", list(p)),
        Some(L4Ref::Udp([])) => "udp".into(),
        Some(L4Ref::Udp(p)) => format!("udp/{}", list(p)),
        Some(L4Ref::Esp) => "esp".into(),
        Some(L4Ref::Icmp(t)) => t.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
    }
}

/// Renders the summary of one node.
pub fn render(rs: &NodeRuleset) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}  {}", rs.node, rs.description);
    for r in &rs.input {
        if r.verdict != Verdict::Accept || r.matches.saddr().is_none() {
            continue;
        }
        let to = match r.matches.daddr() {
            None => "any address".to_string(),
            Some(Addrs::List(n)) => n.iter().map(|n| n.addr().to_string()).collect::<Vec<_>>().join(","),
            Some(Addrs::Set(s)) => format!("@{s}"),
        };
        let from = match r.matches.saddr() {
            Some(Addrs::Set(name)) => match rs.set(name) {
                Some(s) if s.elements.len() == 1 => format!("{} ({})", s.reason, s.elements[0]),
                Some(s) => format!("{} ({} entries)", s.reason, s.members.len()),
                None => format!("@{name}"),
            },
            Some(Addrs::List(n)) => n.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            None => unreachable!("filtered above"),
        };
        let _ = writeln!(o, "  {:<18} on {:<28} from {from}  [{}]", ports(r.matches.l4()), to, r.id);
    }
    o.push_str("  everything else rejected (TCP reset, UDP port unreachable, other admin prohibited)\n");
    // Outbound, rule by rule (standard deployments: one accept of everything).
    for r in &rs.output {
        let to = match r.matches.daddr() {
            None => "anywhere".to_string(),
            Some(Addrs::List(n)) => n.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            Some(Addrs::Set(name)) => rs.set(name.as_str()).map_or(format!("@{name}"), |s| s.reason.clone()),
        };
        let verdict = match r.verdict {
            Verdict::Accept => "accepted",
            Verdict::Drop => "dropped",
            Verdict::Reject(_) => "rejected",
        };
        let _ = writeln!(o, "  outbound {:<9} {verdict} to {to}: {}  [{}]", ports(r.matches.l4()), r.reason, r.id);
    }
    o
}

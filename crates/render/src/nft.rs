//! nftables text: one `table inet fleetwall`, nothing outside it.
//!
//! The file starts by creating and deleting the table, then declares it whole: loaded
//! with `nft -f` it replaces our table in one transaction (atomic, idempotent) and never
//! touches another table. Address sets are interval sets; every rule carries a comment
//! `hash id: reason` (its own short hash, Felix-style, so a kernel's rules can be checked
//! one by one; nftables keeps at most 128 bytes of a comment).

use crate::{comment, one_line};
use fleetwall_ir::{AddrSet, Addrs, CtState, Family, L4Ref, Match, NodeRuleset, Reject, Rule, Verdict, L3, L4};
use std::fmt::Write as _;

/// The table every fleetwall ruleset owns.
pub const TABLE: &str = "fleetwall";

/// nftables' limit on a rule comment.
const COMMENT_MAX: usize = 127;

/// Renders a ruleset as an `nft -f` file.
pub fn render(rs: &NodeRuleset) -> String {
    render_with(rs, true)
}

/// The file as renderers wrote it before rule comments carried their hash: what the
/// previous version's servers hashed (the agent accepts that hash for one version).
pub fn render_before_rule_hashes(rs: &NodeRuleset) -> String {
    render_with(rs, false)
}

fn render_with(rs: &NodeRuleset, rule_hashes: bool) -> String {
    let mut o = String::with_capacity(4096 + rs.sets.iter().map(|s| s.elements.len() * 24).sum::<usize>());
    let _ = writeln!(o, "# fleetwall ruleset for node {}: {}", one_line(&rs.node), one_line(&rs.description));
    let _ = writeln!(o, "# generated; load with `nft -f`: it replaces table inet {TABLE} and nothing else");
    let _ = writeln!(o, "table inet {TABLE}");
    let _ = writeln!(o, "delete table inet {TABLE}");
    let _ = writeln!(o, "table inet {TABLE} {{");
    for s in &rs.sets {
        set(&mut o, s);
    }
    chain(&mut o, "input", "input", &rs.input, rule_hashes);
    chain(&mut o, "output", "output", &rs.output, rule_hashes);
    o.push_str("}\n");
    o
}

fn set(o: &mut String, s: &AddrSet) {
    let ty = match s.family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    let _ = writeln!(o, "\t# {}", one_line(&s.reason));
    let _ = writeln!(o, "\tset {} {{", s.name);
    let _ = writeln!(o, "\t\ttype {ty}");
    o.push_str("\t\tflags interval\n");
    if !s.elements.is_empty() {
        o.push_str("\t\telements = {");
        for (i, e) in s.elements.iter().enumerate() {
            o.push_str(if i == 0 {
                " "
            } else if i % 8 == 0 {
                ",\n\t\t\t"
            } else {
                ", "
            });
            net(o, e);
        }
        o.push_str(" }\n");
    }
    o.push_str("\t}\n");
}

fn net(o: &mut String, n: &ipnet::IpNet) {
    if n.prefix_len() == n.max_prefix_len() {
        let _ = write!(o, "{}", n.addr());
    } else {
        let _ = write!(o, "{n}");
    }
}

fn chain(o: &mut String, name: &str, hook: &str, rules: &[Rule], rule_hashes: bool) {
    let _ = writeln!(o, "\tchain {name} {{");
    let _ = writeln!(o, "\t\ttype filter hook {hook} priority filter; policy accept;");
    for r in rules {
        o.push_str("\t\t");
        rule(o, hook, r, rule_hashes);
        o.push('\n');
    }
    o.push_str("\t}\n");
}

fn addr_match(o: &mut String, fam: Family, dir: &str, a: &Addrs) {
    let kw = match fam {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    match a {
        Addrs::Set(name) => {
            let _ = write!(o, "{kw} {dir} @{name} ");
        }
        Addrs::List(nets) if nets.len() == 1 => {
            let _ = write!(o, "{kw} {dir} ");
            net(o, &nets[0]);
            o.push(' ');
        }
        Addrs::List(nets) => {
            let _ = write!(o, "{kw} {dir} {{ ");
            for (i, n) in nets.iter().enumerate() {
                if i > 0 {
                    o.push_str(", ");
                }
                net(o, n);
            }
            o.push_str(" } ");
        }
    }
}

fn ports(o: &mut String, proto: &str, p: &[u16]) {
    match p {
        [] => {
            let _ = write!(o, "meta l4proto {proto} ");
        }
        [one] => {
            let _ = write!(o, "{proto} dport {one} ");
        }
        many => {
            let list: Vec<String> = many.iter().map(u16::to_string).collect();
            let _ = write!(o, "{proto} dport {{ {} }} ", list.join(", "));
        }
    }
}

fn transport(o: &mut String, fam: Option<Family>, l4: Option<L4Ref<'_>>) {
    match l4 {
        None => {}
        Some(L4Ref::Tcp(p)) => ports(o, "tcp", p),
        Some(L4Ref::Udp(p)) => ports(o, "udp", p),
        Some(L4Ref::Esp) => match fam {
            Some(Family::V4) => o.push_str("ip protocol esp "),
            Some(Family::V6) => o.push_str("ip6 nexthdr esp "),
            None => o.push_str("meta l4proto esp "),
        },
        Some(L4Ref::Icmp(types)) => {
            // The IR cannot hold ICMP types without a family.
            let kw = if fam == Some(Family::V6) { "icmpv6" } else { "icmp" };
            // The IR's names are nftables' own.
            let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
            if names.len() == 1 {
                let _ = write!(o, "{kw} type {} ", names[0]);
            } else {
                let _ = write!(o, "{kw} type {{ {} }} ", names.join(", "));
            }
        }
    }
}

fn matches(o: &mut String, hook: &str, m: &Match) {
    if m.loopback {
        o.push_str(if hook == "output" { "oif \"lo\" " } else { "iif \"lo\" " });
    }
    match m.ct {
        Some(CtState::EstablishedRelated) => o.push_str("ct state established,related "),
        Some(CtState::Invalid) => o.push_str("ct state invalid "),
        None => {}
    }
    match &m.l3 {
        L3::Any(_) => {}
        L3::Ip(ip) => {
            if let Some(a) = &ip.saddr {
                addr_match(o, ip.family, "saddr", a);
            }
            if let Some(a) = &ip.daddr {
                addr_match(o, ip.family, "daddr", a);
            }
            if ip.saddr.is_none() && ip.daddr.is_none() && !matches!(ip.l4, Some(L4::Icmp(_)) | Some(L4::Esp)) {
                // A family match with no address: say the family, or nft would match both.
                o.push_str(if ip.family == Family::V4 { "meta nfproto ipv4 " } else { "meta nfproto ipv6 " });
            }
        }
    }
    transport(o, m.family(), m.l4());
}

fn rule(o: &mut String, hook: &str, r: &Rule, rule_hashes: bool) {
    matches(o, hook, &r.matches);
    match r.verdict {
        Verdict::Accept => o.push_str("accept"),
        Verdict::Drop => o.push_str("drop"),
        Verdict::Reject(Reject::TcpReset) => o.push_str("reject with tcp reset"),
        Verdict::Reject(Reject::PortUnreachable) => o.push_str("reject with icmpx type port-unreachable"),
        Verdict::Reject(Reject::AdminProhibited) => o.push_str("reject with icmpx type admin-prohibited"),
    }
    let c = if rule_hashes { comment(r, COMMENT_MAX) } else { crate::comment_without_hash(r, COMMENT_MAX) };
    let _ = write!(o, " comment \"{c}\"");
}

//! iptables-restore (IPv4 and IPv6) plus an `ipset restore` file, for legacy hosts.
//!
//! On such hosts fleetwall owns the `filter` table: the files declare it whole, so
//! `iptables-restore` replaces it atomically, with our rules in chains `fleetwall-input`
//! and `fleetwall-output` jumped to from `INPUT` and `OUTPUT`. Address sets become
//! `hash:net` ipsets named `fw-<set>`; ipset cannot hold a /0, so 0.0.0.0/0 and ::/0 are
//! written as their two halves. Load order: `ipset restore -exist`, then the two tables.

use crate::{comment, one_line};
use fleetwall_ir::{Addrs, CtState, Family, IcmpType, L4Ref, NodeRuleset, Reject, Rule, Verdict};
use ipnet::IpNet;
use std::fmt::Write as _;

/// The three files of one node.
pub struct Rendered {
    /// `ipset restore` input.
    pub ipset: String,
    /// `iptables-restore` input.
    pub v4: String,
    /// `ip6tables-restore` input.
    pub v6: String,
}

/// The prefix of every ipset fleetwall creates.
pub const IPSET_PREFIX: &str = "fw-";
/// The chain the input rules live in.
pub const INPUT_CHAIN: &str = "fleetwall-input";
/// The chain the output rules live in.
pub const OUTPUT_CHAIN: &str = "fleetwall-output";

const COMMENT_MAX: usize = 255;
/// The most entries one ipset holds (`maxelem`).
pub const IPSET_MAXELEM: usize = 65536;
/// `-m multiport` takes at most 15 ports.
const MULTIPORT_MAX: usize = 15;

/// Renders a ruleset for iptables.
pub fn render(rs: &NodeRuleset) -> Rendered {
    let mut ipset = String::new();
    let _ = writeln!(ipset, "# fleetwall ipsets for node {}: {}", one_line(&rs.node), one_line(&rs.description));
    let _ = writeln!(ipset, "# load with `ipset restore -exist` before the iptables files");
    for s in &rs.sets {
        let fam = match s.family {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        };
        let name = format!("{IPSET_PREFIX}{}", s.name);
        let _ = writeln!(ipset, "create {name} hash:net family {fam} hashsize 1024 maxelem {IPSET_MAXELEM}");
        let _ = writeln!(ipset, "flush {name}");
        for e in &s.elements {
            for half in split_default(e) {
                let _ = writeln!(ipset, "add {name} {half}");
            }
        }
    }
    // Each rule's comment (with its hash) once, for both tables.
    let comments: Vec<String> = rs.input.iter().chain(&rs.output).map(|r| comment(r, COMMENT_MAX)).collect();
    Rendered { ipset, v4: table(rs, Family::V4, &comments), v6: table(rs, Family::V6, &comments) }
}

/// ipset `hash:net` rejects prefix length 0: write a /0 as two /1s.
fn split_default(n: &IpNet) -> Vec<IpNet> {
    if n.prefix_len() == 0 {
        n.subnets(1).expect("/1 is a valid prefix").collect()
    } else {
        vec![*n]
    }
}

/// One family's table; `comments` holds the comment of every rule, input then output.
fn table(rs: &NodeRuleset, fam: Family, comments: &[String]) -> String {
    let tool = if fam == Family::V4 { "iptables-restore" } else { "ip6tables-restore" };
    let mut o = String::with_capacity(4096);
    let _ = writeln!(o, "# fleetwall {tool} input for node {}: {}", one_line(&rs.node), one_line(&rs.description));
    let _ = writeln!(o, "# replaces the filter table; our rules live in {INPUT_CHAIN} and {OUTPUT_CHAIN}");
    o.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let _ = writeln!(o, ":{INPUT_CHAIN} - [0:0]\n:{OUTPUT_CHAIN} - [0:0]");
    let _ = writeln!(o, "-A INPUT -j {INPUT_CHAIN}\n-A OUTPUT -j {OUTPUT_CHAIN}");
    let (input, output) = comments.split_at(rs.input.len());
    for (r, c) in rs.input.iter().zip(input) {
        rule(&mut o, INPUT_CHAIN, fam, r, c);
    }
    for (r, c) in rs.output.iter().zip(output) {
        rule(&mut o, OUTPUT_CHAIN, fam, r, c);
    }
    o.push_str("COMMIT\n");
    o
}

fn addrs(flag: &str, dir: &str, a: &Addrs) -> String {
    match a {
        Addrs::Set(name) => format!("-m set --match-set {IPSET_PREFIX}{name} {dir} "),
        Addrs::List(nets) => {
            let list: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
            format!("{flag} {} ", list.join(","))
        }
    }
}

fn icmp_name(t: IcmpType, fam: Family) -> &'static str {
    match (t, fam) {
        (IcmpType::NdRouterAdvert, _) => "router-advertisement",
        (IcmpType::NdNeighborSolicit, _) => "neighbour-solicitation",
        (IcmpType::NdNeighborAdvert, _) => "neighbour-advertisement",
        (t, _) => t.name(),
    }
}

fn rule(o: &mut String, chain: &str, fam: Family, r: &Rule, c: &str) {
    let m = &r.matches;
    if m.family().is_some_and(|f| f != fam) {
        return;
    }
    let mut head = String::new();
    if m.loopback {
        head.push_str(if chain == OUTPUT_CHAIN { "-o lo " } else { "-i lo " });
    }
    match m.ct {
        Some(CtState::EstablishedRelated) => head.push_str("-m conntrack --ctstate RELATED,ESTABLISHED "),
        Some(CtState::Invalid) => head.push_str("-m conntrack --ctstate INVALID "),
        None => {}
    }
    if let Some(a) = m.saddr() {
        head.push_str(&addrs("-s", "src", a));
    }
    if let Some(a) = m.daddr() {
        head.push_str(&addrs("-d", "dst", a));
    }
    let v6 = fam == Family::V6;
    let protos: Vec<String> = match m.l4() {
        None => vec![String::new()],
        Some(L4Ref::Tcp(p)) => port_matches("tcp", p),
        Some(L4Ref::Udp(p)) => port_matches("udp", p),
        Some(L4Ref::Esp) => vec!["-p esp ".into()],
        Some(L4Ref::Icmp(types)) => types
            .iter()
            .map(|t| match fam {
                Family::V4 => format!("-p icmp --icmp-type {} ", icmp_name(*t, fam)),
                Family::V6 => format!("-p ipv6-icmp --icmpv6-type {} ", icmp_name(*t, fam)),
            })
            .collect(),
    };
    let target = match r.verdict {
        Verdict::Accept => "-j ACCEPT".to_string(),
        Verdict::Drop => "-j DROP".to_string(),
        Verdict::Reject(Reject::TcpReset) => "-j REJECT --reject-with tcp-reset".into(),
        Verdict::Reject(Reject::PortUnreachable) if v6 => "-j REJECT --reject-with icmp6-port-unreachable".into(),
        Verdict::Reject(Reject::PortUnreachable) => "-j REJECT --reject-with icmp-port-unreachable".into(),
        Verdict::Reject(Reject::AdminProhibited) if v6 => "-j REJECT --reject-with icmp6-adm-prohibited".into(),
        Verdict::Reject(Reject::AdminProhibited) => "-j REJECT --reject-with icmp-admin-prohibited".into(),
    };
    for p in protos {
        let _ = writeln!(o, "-A {chain} {head}{p}-m comment --comment \"{c}\" {target}");
    }
}

fn port_matches(proto: &str, ports: &[u16]) -> Vec<String> {
    match ports {
        [] => vec![format!("-p {proto} ")],
        [one] => vec![format!("-p {proto} --dport {one} ")],
        many => many
            .chunks(MULTIPORT_MAX)
            .map(|c| {
                let list: Vec<String> = c.iter().map(u16::to_string).collect();
                format!("-p {proto} -m multiport --dports {} ", list.join(","))
            })
            .collect(),
    }
}

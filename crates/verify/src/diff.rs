//! `diff`: which flows a fleet change opens and closes, node by node, in words a
//! reviewer can read, with loud warnings for the changes that deserve a second look.
//!
//! A flow is (direction, node address, protocol, port) → the remote networks its accept
//! rules admit (sources inbound, destinations outbound). Opened = new − old, closed =
//! old − new, as CIDR set differences, so narrowing 10.0.0.0/8 to 10.0.0.0/9 reports
//! exactly 10.128.0.0/9 closed. It compares two sets of compiled rulesets; it never
//! compiles a fleet itself.

use crate::cidr::{is_everything, subtract};
use fleetwall_ir::{Addrs, Direction, Family, L4Ref, NodeRuleset, SetName, Verdict};
use fleetwall_model::Fleet;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Where a flow goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FlowKey {
    /// `ingress` or `egress`.
    pub direction: Direction,
    /// Node address.
    pub dst: IpAddr,
    /// `tcp`, `udp`, `esp` or `icmp echo-request`.
    pub proto: String,
    /// Destination port (none for esp/icmp or "any port").
    pub port: Option<u16>,
}

/// A flow that opens or closes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Where.
    #[serde(flatten)]
    pub key: FlowKey,
    /// The remote networks newly admitted (opened) or no longer admitted (closed).
    pub sources: Vec<IpNet>,
    /// Everything the flow admits after the change (before it, for a closed flow).
    pub admitted: Vec<IpNet>,
    /// The rules behind it (`id: reason`).
    pub rules: Vec<String>,
    /// The model entries behind the networks (set member reasons).
    pub why: Vec<String>,
}

/// The changes of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDiff {
    /// The node.
    pub node: String,
    /// `changed`, `added` or `removed`.
    pub status: &'static str,
    /// Flows newly open.
    pub opened: Vec<Change>,
    /// Flows closed.
    pub closed: Vec<Change>,
}

/// The whole diff.
#[derive(Debug, Clone, Serialize)]
pub struct FleetDiff {
    /// Loud warnings.
    pub warnings: Vec<String>,
    /// Nodes with changes, in name order.
    pub nodes: Vec<NodeDiff>,
}

#[derive(Default)]
struct Flow {
    sources: Vec<IpNet>,
    rules: BTreeSet<String>,
    sets: BTreeSet<SetName>,
}

fn flows(rs: &NodeRuleset) -> BTreeMap<FlowKey, Flow> {
    let mut out: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    for direction in [Direction::Ingress, Direction::Egress] {
        for r in direction.chain(rs).iter().filter(|r| r.verdict == Verdict::Accept) {
            if r.matches.loopback || r.matches.ct.is_some() {
                continue;
            }
            let (remote, local) = match direction {
                Direction::Ingress => (r.matches.saddr(), r.matches.daddr()),
                Direction::Egress => (r.matches.daddr(), r.matches.saddr()),
            };
            let fam = r.matches.family();
            // Inbound, only rules naming their sources count as flows (the base rules are
            // the same on every node); outbound, an accept of anything is a flow to everyone.
            let remotes: Vec<IpNet> = match (remote, direction) {
                (Some(Addrs::Set(name)), _) => rs.set(name.as_str()).map(|s| s.elements.clone()).unwrap_or_default(),
                (Some(Addrs::List(n)), _) => n.clone(),
                (None, Direction::Ingress) => continue,
                (None, Direction::Egress) => match fam {
                    Some(Family::V4) => vec!["0.0.0.0/0".parse().expect("literal")],
                    Some(Family::V6) => vec!["::/0".parse().expect("literal")],
                    None => vec!["0.0.0.0/0".parse().expect("literal"), "::/0".parse().expect("literal")],
                },
            };
            let locals: Vec<IpAddr> = match local {
                Some(Addrs::List(n)) => n.iter().map(|x| x.addr()).collect(),
                _ => rs
                    .addresses
                    .iter()
                    .filter(|a| fam.is_none_or(|f| (f == Family::V4) == a.is_ipv4()))
                    .copied()
                    .collect(),
            };
            let protos: Vec<(String, Option<u16>)> = match r.matches.l4() {
                None => vec![("any".into(), None)],
                Some(L4Ref::Tcp([])) => vec![("tcp".into(), None)],
                Some(L4Ref::Udp([])) => vec![("udp".into(), None)],
                Some(L4Ref::Tcp(p)) => p.iter().map(|x| ("tcp".to_string(), Some(*x))).collect(),
                Some(L4Ref::Udp(p)) => p.iter().map(|x| ("udp".to_string(), Some(*x))).collect(),
                Some(L4Ref::Esp) => vec![("esp".into(), None)],
                Some(L4Ref::Icmp(t)) => {
                    vec![(format!("icmp {}", t.iter().map(|x| x.name()).collect::<Vec<_>>().join(",")), None)]
                }
            };
            for dst in locals {
                for (proto, port) in &protos {
                    let e = out.entry(FlowKey { direction, dst, proto: proto.clone(), port: *port }).or_default();
                    if let Some(Addrs::Set(name)) = remote {
                        e.sets.insert(name.clone());
                    }
                    // Only the remotes of this node address's family.
                    e.sources.extend(remotes.iter().filter(|n| n.addr().is_ipv4() == dst.is_ipv4()).copied());
                    e.sources = IpNet::aggregate(&e.sources);
                    e.rules.insert(format!("{}: {}", r.id, r.reason));
                }
            }
        }
    }
    out
}

fn why(rs: &NodeRuleset, flow: &Flow, nets: &[IpNet]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .sets
        .iter()
        .filter(|s| flow.sets.contains(&s.name))
        .flat_map(|s| s.members.iter())
        .filter(|m| nets.iter().any(|n| n.contains(&m.net) || m.net.contains(n)))
        .map(|m| m.reason.clone())
        .collect();
    v.sort();
    v.dedup();
    v.truncate(8);
    v
}

/// What `to` admits that `from` did not, as a change explained from `to`'s ruleset.
fn gained(key: &FlowKey, from: &Flow, to: &Flow, to_rs: Option<&NodeRuleset>) -> Option<Change> {
    let sources = subtract(&to.sources, &from.sources);
    (!sources.is_empty()).then(|| Change {
        key: key.clone(),
        why: to_rs.map(|rs| why(rs, to, &sources)).unwrap_or_default(),
        sources,
        admitted: to.sources.clone(),
        rules: to.rules.iter().cloned().collect(),
    })
}

fn compare(node: &str, status: &'static str, old: Option<&NodeRuleset>, new: Option<&NodeRuleset>) -> NodeDiff {
    let (fo, fnew) = (old.map(flows).unwrap_or_default(), new.map(flows).unwrap_or_default());
    let keys: BTreeSet<&FlowKey> = fo.keys().chain(fnew.keys()).collect();
    let (mut opened, mut closed) = (Vec::new(), Vec::new());
    let empty = Flow::default();
    for k in keys {
        let (a, b) = (fo.get(k).unwrap_or(&empty), fnew.get(k).unwrap_or(&empty));
        opened.extend(gained(k, a, b, new));
        closed.extend(gained(k, b, a, old));
    }
    NodeDiff { node: node.to_string(), status, opened, closed }
}

/// Diffs two fleets by their compiled rulesets (`old_rs` of `old`, `new_rs` of `new`):
/// the rulesets' flows, plus the warnings only the fleets can give.
pub fn diff(old: &Fleet, old_rs: &[NodeRuleset], new: &Fleet, new_rs: &[NodeRuleset]) -> FleetDiff {
    let mut d = diff_rulesets(old_rs, new_rs);
    for (p, s) in new.services() {
        let was = old.services().find(|(op, os)| op.name == p.name && os.name == s.name);
        if let Some((_, os)) = was {
            if !os.ip_filter.is_empty() && s.ip_filter.is_empty() {
                d.warnings.push(format!("{}/{}: ip_filter is now empty: every client is locked out", p.name, s.name));
            }
        }
    }
    d
}

/// Diffs two sets of rulesets, node by node (by name).
pub fn diff_rulesets(ro: &[NodeRuleset], rn: &[NodeRuleset]) -> FleetDiff {
    fn by(v: &[NodeRuleset]) -> BTreeMap<&str, &NodeRuleset> {
        v.iter().map(|r| (r.node.as_str(), r)).collect()
    }
    let (mo, mn) = (by(ro), by(rn));
    let names: BTreeSet<&str> = mo.keys().chain(mn.keys()).copied().collect();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        let (o, n) = (mo.get(name).copied(), mn.get(name).copied());
        let status = match (o, n) {
            (Some(_), Some(_)) => "changed",
            (None, _) => "added",
            (_, None) => "removed",
        };
        let d = compare(name, status, o, n);
        for c in &d.opened {
            // Newly open to everyone: it admits a /0 now and did not before.
            if c.key.direction == Direction::Ingress && is_everything(&c.admitted) {
                let was_everything =
                    o.map(flows).and_then(|f| f.get(&c.key).map(|x| is_everything(&x.sources))).unwrap_or(false);
                if !was_everything {
                    let port = c.key.port.map(|p| format!("/{p}")).unwrap_or_default();
                    let all = if c.key.dst.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
                    warnings.push(format!("{name}: {}{port} on {} is newly open to {all}", c.key.proto, c.key.dst));
                }
            }
        }
        if let (Some(o), Some(n)) = (o, n) {
            let public = |rs: &NodeRuleset| -> BTreeSet<String> {
                rs.input
                    .iter()
                    .filter(|r| r.id.starts_with("client-") && r.id.contains("-public-"))
                    .map(|r| r.id.split('-').nth(1).unwrap_or_default().to_string())
                    .collect()
            };
            for c in public(n).difference(&public(o)) {
                warnings.push(format!("{name}: component {c} is newly exposed on its public route"));
            }
        }
        if !d.opened.is_empty() || !d.closed.is_empty() || status != "changed" {
            nodes.push(d);
        }
    }
    FleetDiff { warnings, nodes }
}

/// Renders a diff for a reviewer.
pub fn render(d: &FleetDiff) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for w in &d.warnings {
        let _ = writeln!(o, "!! WARNING: {w}");
    }
    if !d.warnings.is_empty() {
        o.push('\n');
    }
    if d.nodes.is_empty() {
        o.push_str("no flow opens or closes\n");
    }
    for n in &d.nodes {
        let _ = writeln!(o, "{} ({})", n.node, n.status);
        for (sign, verb, list) in [("+", "opens ", &n.opened), ("-", "closes", &n.closed)] {
            for c in list {
                let port = c.key.port.map(|p| format!("/{p}")).unwrap_or_default();
                let nets: Vec<String> = c.sources.iter().map(ToString::to_string).collect();
                let who = if nets.len() <= 4 {
                    nets.join(", ")
                } else {
                    let all: Vec<String> = c.admitted.iter().take(4).map(ToString::to_string).collect();
                    let verb = if sign == "+" { "now admitted" } else { "admitted before" };
                    format!(
                        "{} networks ({verb}: {}{})",
                        nets.len(),
                        all.join(", "),
                        if c.admitted.len() > 4 { ", ..." } else { "" }
                    )
                };
                match c.key.direction {
                    Direction::Ingress => {
                        let _ = writeln!(o, "  {sign} {verb} {}{port} on {} to {who}", c.key.proto, c.key.dst);
                    }
                    Direction::Egress => {
                        let _ = writeln!(o, "  {sign} {verb} egress {}{port} from {} to {who}", c.key.proto, c.key.dst);
                    }
                }
                for r in &c.rules {
                    let _ = writeln!(o, "      rule: {r}");
                }
                for w in &c.why {
                    let _ = writeln!(o, "      from: {w}");
                }
            }
        }
    }
    o
}

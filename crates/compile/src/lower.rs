//! Intent → `NodeRuleset`, per node. Pure: the same Intent always lowers to the same rulesets.

use fleetwall_intent::{Flow, GroupId, Intent, Local, NodeIntent, Peer, ServiceIntent, Traffic};
use fleetwall_ir::{
    AddrSet, Addrs, Direction, Family, IpMatch, Match, Member, NodeRuleset, Proto, Rule, SetName, L3, L4,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Sets lowered from groups that do not depend on the node, shared across nodes.
type SetCache = HashMap<(GroupId, Family), Option<Arc<AddrSet>>>;

/// Lowers every node of the Intent, in Intent order.
pub fn lower(intent: &Intent) -> Vec<NodeRuleset> {
    let mut cache = SetCache::new();
    let mut out = Vec::with_capacity(intent.services.iter().map(|s| s.nodes.len()).sum());
    for s in &intent.services {
        out.extend(lower_with(intent, s, &mut cache));
    }
    out
}

/// Lowers the nodes of one service.
pub fn lower_service(intent: &Intent, service: &ServiceIntent) -> Vec<NodeRuleset> {
    lower_with(intent, service, &mut SetCache::new())
}

fn lower_with(intent: &Intent, service: &ServiceIntent, cache: &mut SetCache) -> Vec<NodeRuleset> {
    service.nodes.iter().map(|n| lower_node(intent, service, n, cache)).collect()
}

fn set_name(stem: &str, fam: Family) -> SetName {
    let suffix = if fam == Family::V4 { "4" } else { "6" };
    SetName::new(format!("{stem}{suffix}")).expect("the Intent's set stems are slugs")
}

/// The addresses of a peer group of one family, as seen from `node`: `None` when the
/// group has no member of that family there (the flow yields no rule).
fn peer_addrs(
    intent: &Intent,
    group: GroupId,
    except_self: bool,
    fam: Family,
    node: &NodeIntent,
    cache: &mut SetCache,
    sets: &mut BTreeMap<SetName, Arc<AddrSet>>,
) -> Option<Addrs> {
    let g = intent.group(group);
    if g.inline {
        let nets: Vec<IpNet> = g.of_family(fam).map(|m| m.net).collect();
        return (!nets.is_empty()).then_some(Addrs::List(nets));
    }
    let build = |skip: Option<&str>, reason: &str| {
        let members: Vec<Member> = g
            .of_family(fam)
            .filter(|m| skip.is_none() || m.node.as_deref() != skip)
            .map(|m| Member { net: m.net, reason: m.reason.clone() })
            .collect();
        (!members.is_empty()).then(|| Arc::new(AddrSet::new(set_name(&g.set, fam), fam, reason, members)))
    };
    let set = if except_self {
        build(Some(&node.name), g.reason_others.as_deref().unwrap_or(&g.reason))
    } else {
        cache.entry((group, fam)).or_insert_with(|| build(None, &g.reason)).clone()
    }?;
    let name = set.name.clone();
    sets.entry(name.clone()).or_insert(set);
    Some(Addrs::Set(name))
}

fn proto(t: &Traffic, id: &str) -> Option<Proto> {
    match t {
        Traffic::Any => None,
        Traffic::Tcp(p) => Some(Proto::Tcp(p.clone())),
        Traffic::Udp(p) => Some(Proto::Udp(p.clone())),
        Traffic::Esp => Some(Proto::Esp),
        Traffic::Icmp(_) => panic!("flow {id}: ICMP types need a family (a bug in the module that contributed it)"),
    }
}

fn l4(t: &Traffic) -> Option<L4> {
    match t {
        Traffic::Any => None,
        Traffic::Tcp(p) => Some(L4::Tcp(p.clone())),
        Traffic::Udp(p) => Some(L4::Udp(p.clone())),
        Traffic::Esp => Some(L4::Esp),
        Traffic::Icmp(types) => Some(L4::Icmp(types.clone())),
    }
}

/// One flow on one node: at most one rule.
fn lower_flow(
    intent: &Intent,
    flow: &Flow,
    node: &NodeIntent,
    cache: &mut SetCache,
    sets: &mut BTreeMap<SetName, Arc<AddrSet>>,
) -> Option<Rule> {
    let l3 = match flow.family {
        None => {
            assert!(
                flow.peer == Peer::Any && flow.local == Local::Any,
                "flow {}: addresses need a family (a bug in the module that contributed it)",
                flow.id
            );
            L3::Any(proto(&flow.traffic, &flow.id))
        }
        Some(fam) => {
            let remote = match flow.peer {
                Peer::Any => None,
                Peer::Group { group, except_self } => {
                    Some(peer_addrs(intent, group, except_self, fam, node, cache, sets)?)
                }
            };
            let local = match flow.local {
                Local::Any => None,
                Local::Addresses(class) => {
                    let nets: Vec<IpNet> = node
                        .addresses(class)
                        .iter()
                        .map(|a| IpNet::from(*a))
                        .filter(|n| Family::of(n) == fam)
                        .collect();
                    if nets.is_empty() {
                        return None;
                    }
                    Some(Addrs::List(nets))
                }
            };
            let (saddr, daddr) = match flow.direction {
                Direction::Ingress => (remote, local),
                Direction::Egress => (local, remote),
            };
            L3::Ip(IpMatch { family: fam, saddr, daddr, l4: l4(&flow.traffic) })
        }
    };
    Some(Rule {
        id: flow.id.clone(),
        reason: flow.reason.clone(),
        matches: Match { loopback: flow.loopback, ct: flow.ct, l3 },
        verdict: flow.verdict,
    })
}

fn lower_node(intent: &Intent, service: &ServiceIntent, node: &NodeIntent, cache: &mut SetCache) -> NodeRuleset {
    let mut sets = BTreeMap::new();
    let (mut input, mut output) = (Vec::new(), Vec::new());
    for flow in &service.flows {
        if let Some(rule) = lower_flow(intent, flow, node, cache, &mut sets) {
            match flow.direction {
                Direction::Ingress => input.push(rule),
                Direction::Egress => output.push(rule),
            }
        }
    }
    NodeRuleset {
        node: node.name.clone(),
        description: service.description.clone(),
        addresses: node.private.iter().chain(&node.public).copied().collect(),
        sets: sets.into_values().collect(),
        input,
        output,
    }
}

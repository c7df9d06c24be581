//! The fail-closed baseline: what a node enforces when it has nothing better — our table is
//! gone (a reboot), there is no usable last good ruleset and the server cannot be reached.
//!
//! It is an ordinary `NodeRuleset`, so it goes through the same renderer, kernel path and
//! drift repair as a real one. It keeps the node manageable and nothing else: loopback,
//! established connections, neighbour discovery and ICMP errors (path MTU), echo and
//! management (SSH, the platform port) from the management gateways; the rest is refused
//! the way the compiled rulesets refuse it. The gateways and ports come from the agent's
//! `--gateway` flags or from the last real ruleset (`Management::of`, kept on disk).

use fleetwall_ir::{
    AddrSet, Addrs, CtState, Family, IcmpType, IpMatch, L4Ref, Match, Member, NodeRuleset, Proto, Reject, Rule,
    SetName, Verdict, L4,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The compiler's names for the management gateway sets (`fleetwall_compile`'s
/// `management_sets`: prefix `mgmt`, one set per family).
const MANAGEMENT_SETS: [(&str, Family); 2] = [("mgmt4", Family::V4), ("mgmt6", Family::V6)];

/// SSH and the platform port: the model's defaults, for when no ruleset ever said otherwise.
pub const DEFAULT_MANAGEMENT_PORTS: [u16; 2] = [22, 30287];

/// Why every baseline rule is there.
const WHY: &str = "fail-closed baseline: no ruleset from the server and no usable last good one";

/// Who manages the node, and on which TCP ports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Management {
    /// The management gateways.
    pub gateways: Vec<IpNet>,
    /// The TCP ports they reach (SSH, the platform port).
    pub ports: Vec<u16>,
}

impl Management {
    /// Read off a compiled ruleset: the elements of its management sets and the TCP
    /// ports its rules accept from them.
    pub fn of(rs: &NodeRuleset) -> Management {
        let names: Vec<&str> = MANAGEMENT_SETS.iter().map(|(n, _)| *n).collect();
        let gateways = rs.sets.iter().filter(|s| names.contains(&s.name.as_str())).flat_map(|s| s.elements.clone());
        let mut ports: Vec<u16> = rs
            .input
            .iter()
            .filter(|r| r.verdict == Verdict::Accept)
            .filter(|r| matches!(r.matches.saddr(), Some(Addrs::Set(n)) if names.contains(&n.as_str())))
            .filter_map(|r| match r.matches.l4() {
                Some(L4Ref::Tcp(p)) => Some(p.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        ports.sort_unstable();
        ports.dedup();
        Management { gateways: gateways.collect(), ports }
    }
}

/// The baseline for `node`, reachable for management from `mgmt.gateways` on
/// `mgmt.ports` (the defaults when empty). With no gateway, only loopback reaches it.
pub fn baseline(node: &str, mgmt: &Management) -> NodeRuleset {
    let ports = if mgmt.ports.is_empty() { DEFAULT_MANAGEMENT_PORTS.to_vec() } else { mgmt.ports.clone() };
    let rule = |id: &str, matches: Match, verdict: Verdict| Rule {
        id: format!("baseline-{id}"),
        reason: format!("{WHY} ({id})"),
        matches,
        verdict,
    };
    let icmp = |family: Family, types: Vec<IcmpType>| Match::from(IpMatch::new(family).l4(L4::Icmp(types)));
    use IcmpType::*;
    let mut sets = Vec::new();
    let mut input = vec![
        rule("loopback", Match::loopback(), Verdict::Accept),
        rule("established", Match::ct(CtState::EstablishedRelated), Verdict::Accept),
        // Neighbour discovery before the invalid drop: the kernel may see it as invalid.
        rule(
            "icmp-nd-v6",
            icmp(Family::V6, vec![NdRouterAdvert, NdNeighborSolicit, NdNeighborAdvert]),
            Verdict::Accept,
        ),
        rule("invalid", Match::ct(CtState::Invalid), Verdict::Drop),
        rule(
            "icmp-errors-v4",
            icmp(Family::V4, vec![DestinationUnreachable, TimeExceeded, ParameterProblem]),
            Verdict::Accept,
        ),
        rule(
            "icmp-errors-v6",
            icmp(Family::V6, vec![DestinationUnreachable, PacketTooBig, TimeExceeded, ParameterProblem]),
            Verdict::Accept,
        ),
    ];
    for (name, family) in MANAGEMENT_SETS {
        let members: Vec<Member> = mgmt
            .gateways
            .iter()
            .filter(|g| Family::of(g) == family)
            .map(|g| Member { net: *g, reason: format!("management gateway {g}") })
            .collect();
        if members.is_empty() {
            continue;
        }
        let name = SetName::new(name).expect("the management set names are slugs");
        sets.push(Arc::new(AddrSet::new(name.clone(), family, format!("management gateways ({WHY})"), members)));
        let from = |l4: L4| Match::from(IpMatch::new(family).from(Addrs::Set(name.clone())).l4(l4));
        let f = family.as_str();
        input.push(rule(&format!("echo-mgmt-{f}"), from(L4::Icmp(vec![EchoRequest])), Verdict::Accept));
        input.push(rule(&format!("mgmt-{f}"), from(L4::Tcp(ports.clone())), Verdict::Accept));
    }
    input.extend([
        rule("reject-tcp", Match::proto(Proto::Tcp(vec![])), Verdict::Reject(Reject::TcpReset)),
        rule("reject-udp", Match::proto(Proto::Udp(vec![])), Verdict::Reject(Reject::PortUnreachable)),
        rule("reject-other", Match::default(), Verdict::Reject(Reject::AdminProhibited)),
    ]);
    NodeRuleset {
        node: node.into(),
        description: WHY.into(),
        addresses: Vec::new(),
        sets,
        input,
        output: vec![rule("egress-accept", Match::default(), Verdict::Accept)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_eval::{evaluate, Packet, Transport};

    fn verdict(rs: &NodeRuleset, src: &str, port: u16) -> Verdict {
        evaluate(rs, &Packet::new(src.parse().unwrap(), "10.0.0.1".parse().unwrap(), Transport::Tcp(port))).verdict
    }

    #[test]
    fn the_baseline_admits_management_from_the_gateways_only() {
        let mgmt = Management { gateways: vec!["198.51.100.0/28".parse().unwrap()], ports: vec![] };
        let rs = baseline("n1", &mgmt);
        assert!(rs.input.iter().chain(&rs.output).all(|r| r.id.starts_with("baseline-") && r.reason.contains(WHY)));
        assert_eq!(verdict(&rs, "198.51.100.3", 22), Verdict::Accept);
        assert_eq!(verdict(&rs, "198.51.100.3", 30287), Verdict::Accept);
        assert_eq!(verdict(&rs, "198.51.100.3", 5432), Verdict::Reject(Reject::TcpReset));
        assert_eq!(verdict(&rs, "192.0.2.1", 22), Verdict::Reject(Reject::TcpReset));
        // What it learnt it keeps: the same gateways and ports come back out of it.
        assert_eq!(Management::of(&rs), Management { ports: DEFAULT_MANAGEMENT_PORTS.to_vec(), ..mgmt });
    }

    #[test]
    fn without_a_gateway_the_baseline_still_refuses_everything() {
        let rs = baseline("n1", &Management::default());
        assert!(rs.sets.is_empty());
        assert_eq!(verdict(&rs, "198.51.100.3", 22), Verdict::Reject(Reject::TcpReset));
    }

    #[test]
    fn the_gateways_and_ports_of_a_compiled_ruleset_are_learnt() {
        // The set names are the compiler's: this breaks if it renames them.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/public-pg.yaml");
        let (fleet, diags) =
            fleetwall_model::load(&std::fs::read_to_string(path).unwrap(), &fleetwall_model::Catalog::builtin());
        let fleet = fleet.unwrap_or_else(|| panic!("{:#?}", diags.items));
        let rs = fleetwall_compile::compile_node(&fleet, "pg-main-1").unwrap();
        let want: Vec<IpNet> = fleet.platform.management_gateways.iter().map(|a| IpNet::from(*a)).collect();
        let mut got = Management::of(&rs);
        got.gateways.sort();
        let mut want = IpNet::aggregate(&want);
        want.sort();
        assert_eq!(got, Management { gateways: want, ports: DEFAULT_MANAGEMENT_PORTS.to_vec() });
    }
}

//! Contract point 9, proven on the compiled rulesets: management can never be locked
//! out, and only the management gateways get in.
//!
//! Both halves are finite checks, so they are proofs, not samples: every gateway ×
//! every node address of its family × both management ports is evaluated and must be
//! accepted; and every rule that could accept a new TCP connection to a management port
//! must admit gateway addresses only.

use crate::{evaluate, Packet, Transport};
use fleetwall_ir::{Addrs, L4Ref, NodeRuleset, Verdict};
use fleetwall_model::{Fleet, Role};
use ipnet::IpNet;

/// Problems found; empty means the invariant holds on every node.
pub fn management(fleet: &Fleet, rulesets: &[NodeRuleset]) -> Vec<String> {
    let p = &fleet.platform;
    let ports = [p.ssh_port, p.platform_port];
    let gateway_nets: Vec<IpNet> = p.management_gateways.iter().map(|g| IpNet::from(*g)).collect();
    // A BYOC workload is managed from its bastion subnet (through the bastions), never
    // from the gateways directly: that subnet is its management source.
    let mut byoc: std::collections::HashMap<&str, (Vec<IpNet>, Vec<std::net::IpAddr>)> = Default::default();
    for (project, service) in fleet.services() {
        if let (Role::Workload, Some(b)) = (service.role, &project.byoc) {
            let bastions = project
                .services
                .iter()
                .filter(|s| s.role == Role::Bastion)
                .flat_map(|s| s.nodes.iter().flat_map(|n| n.private.iter().copied()))
                .collect::<Vec<_>>();
            for n in &service.nodes {
                byoc.insert(n.name.as_str(), (vec![b.bastion_subnet], bastions.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    // A deployment's servers are not platform-managed: their operators come in by the
    // deployment's own flows (`fleetwall_intent::zones`), so point 9 is not theirs.
    let servers: std::collections::HashSet<&str> = fleet.servers().map(|(_, _, s)| s.name.as_str()).collect();
    for rs in rulesets.iter().filter(|rs| !servers.contains(rs.node.as_str())) {
        let (gateways, sources) = match byoc.get(rs.node.as_str()) {
            Some((nets, addrs)) => (nets.clone(), addrs.clone()),
            None => (gateway_nets.clone(), p.management_gateways.clone()),
        };
        let who = if byoc.contains_key(rs.node.as_str()) { "bastion" } else { "gateway" };
        for g in &sources {
            for d in rs.addresses.iter().filter(|d| d.is_ipv4() == g.is_ipv4()) {
                for port in ports {
                    let v = evaluate(rs, &Packet::new(*g, *d, Transport::Tcp(port))).verdict;
                    if v != Verdict::Accept {
                        problems.push(format!("{}: {who} {g} cannot reach {d}:{port}/tcp", rs.node));
                    }
                }
            }
        }
        for r in
            rs.input.iter().filter(|r| r.verdict == Verdict::Accept && !r.matches.loopback && r.matches.ct.is_none())
        {
            let reaches = match r.matches.l4() {
                None => true,
                Some(L4Ref::Tcp(list)) => list.is_empty() || ports.iter().any(|p| list.contains(p)),
                _ => false,
            };
            if !reaches {
                continue;
            }
            let sources: Vec<IpNet> = match r.matches.saddr() {
                None => vec!["0.0.0.0/0".parse().expect("literal"), "::/0".parse().expect("literal")],
                Some(Addrs::List(n)) => n.clone(),
                Some(Addrs::Set(name)) => rs.set(name.as_str()).map(|s| s.elements.clone()).unwrap_or_default(),
            };
            let outside = crate::cidr::subtract(&sources, &gateways);
            if !outside.is_empty() {
                problems.push(format!(
                    "{}: rule {} accepts a management port from {} (not a {who})",
                    rs.node, r.id, outside[0]
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_model::{load, Catalog};

    #[test]
    fn a_rule_opening_ssh_to_clients_is_caught() {
        let src = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects:\n  p:\n    services:\n      s:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes: { n-1: { public: 203.0.113.5 } }\n";
        let fleet = load(src, &Catalog::builtin()).0.unwrap();
        let mut rs = fleetwall_compile::compile(&fleet);
        assert!(management(&fleet, &rs).is_empty());
        // A client rule widened to port 22: exclusivity fails.
        let client = rs[0].input.iter_mut().find(|r| r.id == "client-pg-dynamic-v4").unwrap();
        client.matches.ip_mut().unwrap().l4 = Some(fleetwall_ir::L4::Tcp(vec![22, 12000]));
        let problems = management(&fleet, &rs);
        assert_eq!(
            problems,
            ["n-1: rule client-pg-dynamic-v4 accepts a management port from 0.0.0.0/1 (not a gateway)"]
        );
        // The management rule removed: lockout is caught.
        rs[0].input.retain(|r| !r.id.starts_with("mgmt-") && r.id != "client-pg-dynamic-v4");
        assert_eq!(
            management(&fleet, &rs),
            [
                "n-1: gateway 198.51.100.10 cannot reach 203.0.113.5:22/tcp",
                "n-1: gateway 198.51.100.10 cannot reach 203.0.113.5:30287/tcp"
            ]
        );
    }
}

//! The `tests:` section of a fleet file: each assertion checked with the evaluator and
//! explained with a trace.
//!
//! `accept: [X]` holds when a new connection from `from` to X succeeds somewhere: for a
//! component, on one of its listeners (of the route, when `to` names one); for a
//! `port/proto`, on one of the node's (route's) addresses. `deny: [X]` holds when every
//! try is refused: every port of the component, or the port, on every address of the
//! node (route). Only addresses of the source's family are tried.

use crate::trace::{trace, Trace};
use crate::{Packet, Transport};
use fleetwall_intent::{node_listeners, route_addresses, Route};
use fleetwall_ir::NodeRuleset;
use fleetwall_model::{Fleet, Probe, Protocol};
use serde::Serialize;
use std::net::IpAddr;

/// One checked item of one assertion.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The test's position in `tests:` (0-based).
    pub test: usize,
    /// Source as written: an address (ingress) or a node (egress).
    pub from: String,
    /// Destination as written (`node` or `node.route`; an address for egress).
    pub to: String,
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// `accept` or `deny`.
    pub expect: &'static str,
    /// The component or `port/proto`.
    pub what: String,
    /// Whether it holds.
    pub passed: bool,
    /// Every destination tried, with its trace.
    pub traces: Vec<Traced>,
}

/// One destination of an outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Traced {
    /// Node address.
    pub dst: IpAddr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The trace.
    pub trace: Trace,
}

/// Runs every assertion of the fleet against its compiled rulesets.
pub fn run(fleet: &Fleet, rulesets: &[NodeRuleset]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (i, t) in fleet.tests.iter().enumerate() {
        let Some(rs) = rulesets.iter().find(|r| r.node == t.to) else { continue };
        if t.egress {
            // Egress tests go from a node of a service (validation refuses other senders).
            if let Some((_, _, node)) = fleet.nodes().find(|(_, _, n)| n.name == t.to) {
                out.extend(egress(i, t, node, rs));
            }
            continue;
        }
        let route = t.route.as_deref().and_then(Route::parse);
        // A node of a service, or a server of a deployment (probed by port, on every address).
        let (all_listeners, route_addrs) = match fleet.nodes().find(|(_, _, n)| n.name == t.to) {
            Some((project, service, node)) => {
                (node_listeners(fleet, project, service, node), route_addresses(node, service.private_home(), route))
            }
            None => match fleet.servers().find(|(_, _, s)| s.name == t.to) {
                Some((_, _, server)) => (Vec::new(), server.addresses.clone()),
                None => continue,
            },
        };
        let listeners: Vec<_> = all_listeners.iter().filter(|l| route.is_none_or(|r| l.route == r)).collect();
        let to = match &t.route {
            Some(r) => format!("{}.{r}", t.to),
            None => t.to.clone(),
        };
        let items = t.accept.iter().map(|p| ("accept", p)).chain(t.deny.iter().map(|p| ("deny", p)));
        for (expect, probe) in items {
            let (what, candidates): (String, Vec<(IpAddr, u16, Protocol)>) = match probe {
                // Accept: some listener of the component (on the route) takes it.
                Probe::Component(c) if expect == "accept" => (
                    c.clone(),
                    listeners
                        .iter()
                        .filter(|l| &l.component == c)
                        .flat_map(|l| l.addresses.iter().map(move |a| (*a, l.port, l.protocol)))
                        .collect(),
                ),
                // Deny: every port of the component is refused on every address of the route.
                Probe::Component(c) => {
                    let mut ports: Vec<(u16, Protocol)> =
                        all_listeners.iter().filter(|l| &l.component == c).map(|l| (l.port, l.protocol)).collect();
                    ports.sort();
                    ports.dedup();
                    (
                        c.clone(),
                        route_addrs.iter().flat_map(|a| ports.iter().map(move |(p, pr)| (*a, *p, *pr))).collect(),
                    )
                }
                Probe::Port(port, proto) => {
                    (format!("{port}/{}", proto.as_str()), route_addrs.iter().map(|a| (*a, *port, *proto)).collect())
                }
            };
            let traces: Vec<Traced> = candidates
                .into_iter()
                .filter(|(a, _, _)| a.is_ipv4() == t.from.is_ipv4())
                .map(|(dst, port, protocol)| {
                    let transport = match protocol {
                        Protocol::Tcp => Transport::Tcp(port),
                        Protocol::Udp => Transport::Udp(port),
                    };
                    Traced { dst, port, protocol, trace: trace(rs, &Packet::new(t.from, dst, transport)) }
                })
                .collect();
            let passed = match expect {
                "accept" => traces.iter().any(|x| x.trace.accepted()),
                _ => !traces.is_empty() && traces.iter().all(|x| !x.trace.accepted()),
            };
            out.push(Outcome {
                test: i,
                from: t.from.to_string(),
                to: to.clone(),
                direction: "ingress",
                expect,
                what,
                passed,
                traces,
            });
        }
    }
    out
}

/// An egress test: each `port/proto` from every address of the node of the destination's
/// family, through the node's output chain. `accept` holds when one address gets out,
/// `deny` when none does.
fn egress(i: usize, t: &fleetwall_model::Test, node: &fleetwall_model::Node, rs: &NodeRuleset) -> Vec<Outcome> {
    let items = t.accept.iter().map(|p| ("accept", p)).chain(t.deny.iter().map(|p| ("deny", p)));
    let mut out = Vec::new();
    for (expect, probe) in items {
        let Probe::Port(port, protocol) = probe else { continue };
        let transport = match protocol {
            Protocol::Tcp => Transport::Tcp(*port),
            Protocol::Udp => Transport::Udp(*port),
        };
        let traces: Vec<Traced> = node
            .private
            .iter()
            .chain(&node.public)
            .filter(|a| a.is_ipv4() == t.from.is_ipv4())
            .map(|src| Traced {
                dst: t.from,
                port: *port,
                protocol: *protocol,
                trace: crate::trace::trace_in(
                    rs,
                    fleetwall_ir::Direction::Egress,
                    &Packet::new(*src, t.from, transport),
                ),
            })
            .collect();
        let passed = match expect {
            "accept" => traces.iter().any(|x| x.trace.accepted()),
            _ => !traces.is_empty() && traces.iter().all(|x| !x.trace.accepted()),
        };
        out.push(Outcome {
            test: i,
            from: t.to.clone(),
            to: t.from.to_string(),
            direction: "egress",
            expect,
            what: format!("{port}/{}", protocol.as_str()),
            passed,
            traces,
        });
    }
    out
}

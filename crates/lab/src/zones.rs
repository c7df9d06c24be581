//! Deployments (zones, subsystems, clusters) in the lab: which client sources matter,
//! which ports every server listens on, and what a connection to a server should do.
//!
//! The expectation is a second, direct reading of the deployment catalog over the model
//! (not the Intent): a new connection from `src` to server `dst` gets through when the
//! source's output chain (if the source is a server) and the destination's input chain
//! both have a flow for it. A chain's own server is on a side of a flow only by its
//! subsystem; the other end by its address (a zone's networks, anywhere, or a server of
//! the side's subsystems); and a server of the same subsystem as the chain's is a peer
//! only in the same cluster — whichever side it would match.

use crate::sources::Source;
use fleetwall_model::deployment::{Cluster, Deployment, Endpoint, FlowDef, FlowProtocol};
use fleetwall_model::{Fleet, Protocol};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The deployment, cluster and name of the server that has `a`.
fn server_at(fleet: &Fleet, a: IpAddr) -> Option<(&Deployment, &Cluster, &str)> {
    fleet.servers().find(|(_, _, s)| s.addresses.contains(&a)).map(|(d, c, s)| (d, c, s.name.as_str()))
}

/// Whether the other end `peer` is on side `e`, seen from a server of cluster `home`.
fn peer_on(d: &Deployment, e: &Endpoint, peer: IpAddr, home: &Cluster, fleet: &Fleet) -> bool {
    let peer_server = server_at(fleet, peer).filter(|(pd, _, _)| pd.name == d.name).map(|(_, c, _)| c);
    // A server of another cluster of the home's subsystem is never a peer.
    if peer_server.is_some_and(|c| c.subsystem == home.subsystem && c.name != home.name) {
        return false;
    }
    match e {
        Endpoint::Anywhere => true,
        Endpoint::Zone(z) => d.zone(z).is_some_and(|z| z.networks.iter().any(|n| n.contains(&peer))),
        Endpoint::Subsystems(list) => peer_server.is_some_and(|c| list.contains(&c.subsystem)),
    }
}

fn carries(d: &Deployment, f: &FlowDef, port: u16, proto: Protocol) -> bool {
    match (d.protocol(f), proto) {
        (FlowProtocol::Any, _) => true,
        (FlowProtocol::Tcp | FlowProtocol::TcpUdp, Protocol::Tcp)
        | (FlowProtocol::Udp | FlowProtocol::TcpUdp, Protocol::Udp) => d.ports(f).contains(&port),
        _ => false,
    }
}

/// Whether the chain of the server of cluster `home` lets the connection pass: inbound
/// (`own_is_to`) when some flow has `home`'s subsystem on its `to` side and `peer` on its
/// `from` side, outbound the other way round; bidirectional flows both ways.
fn chain_allows(
    d: &Deployment,
    home: &Cluster,
    peer: IpAddr,
    own_is_to: bool,
    port: u16,
    proto: Protocol,
    fleet: &Fleet,
) -> bool {
    d.kind.flows.iter().filter(|f| carries(d, f, port, proto)).any(|f| {
        let mut ways = vec![(&f.from, &f.to)];
        if f.bidirectional {
            ways.push((&f.to, &f.from));
        }
        ways.into_iter().any(|(from, to)| {
            let (own, other) = if own_is_to { (to, from) } else { (from, to) };
            own.has_subsystem(&home.subsystem) && peer_on(d, other, peer, home, fleet)
        })
    })
}

/// Whether a new connection from `src` to server address `dst` on `port/proto` gets
/// through the source's output chain (when it is a server) and the destination's input.
pub fn accepts(fleet: &Fleet, src: IpAddr, dst: IpAddr, port: u16, proto: Protocol) -> bool {
    let Some((d, home, _)) = server_at(fleet, dst) else { return false };
    let inbound = chain_allows(d, home, src, true, port, proto, fleet);
    let outbound = match server_at(fleet, src) {
        Some((sd, sc, _)) => chain_allows(sd, sc, dst, false, port, proto, fleet),
        None => true,
    };
    inbound && outbound
}

/// The ports every server of `d` listens on: every port of every flow, both protocols,
/// and an unused one.
pub fn ports(d: &Deployment) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = d.kind.flows.iter().flat_map(|f| d.ports(f)).collect();
    ports.extend([80, 7000]);
    ports.into_iter().collect()
}

/// A client in each zone network of every deployment (an address the fleet does not
/// use), labelled by its zone.
pub fn sources(fleet: &Fleet, taken: &BTreeSet<IpAddr>) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    let mut used = taken.clone();
    for d in &fleet.deployments {
        for z in &d.zones {
            let outside = d.kind.zone(&z.name).is_some_and(|k| k.outside);
            for net in &z.networks {
                let candidates: Vec<IpAddr> = if outside {
                    // The internet: an address in no other zone.
                    ["203.0.113.77", "198.18.0.77", "2001:db8:77::77", "2001:db8:78::77"]
                        .iter()
                        .map(|a| a.parse().expect("literal"))
                        .filter(|a: &IpAddr| net.contains(a))
                        .filter(|a| {
                            !d.zones
                                .iter()
                                .filter(|o| o.name != z.name)
                                .any(|o| o.networks.iter().any(|n| n.contains(a)))
                        })
                        .collect()
                } else {
                    (0x77u32..0x7f).filter_map(|i| nth(net, i)).collect()
                };
                if let Some(a) = candidates.into_iter().find(|a| !used.contains(a)) {
                    used.insert(a);
                    out.push(Source { label: format!("zone {} of {} ({net})", z.name, d.name), addr: a });
                }
            }
        }
    }
    out
}

/// The `i`-th address of a network, when it has one.
fn nth(net: &IpNet, i: u32) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let a = u32::from(n.network()).checked_add(i)?;
            let a = std::net::Ipv4Addr::from(a);
            n.contains(&a).then_some(IpAddr::V4(a))
        }
        IpNet::V6(n) => {
            let a = u128::from(n.network()).checked_add(u128::from(i))?;
            let a = std::net::Ipv6Addr::from(a);
            n.contains(&a).then_some(IpAddr::V6(a))
        }
    }
}

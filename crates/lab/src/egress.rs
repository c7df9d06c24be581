//! Outbound probes: connections from inside node namespaces to the lab's other hosts
//! (clients and gateways), through the node's output chain, so the evaluator's egress
//! answer can be compared with what the kernel does.

use crate::probe::{self, Listeners, Observed};
use crate::topo::Role;
use crate::{netns, Error, Lab};
use fleetwall_model::Protocol;
use serde::Serialize;
use std::net::IpAddr;

/// One outbound probe and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct EgressRow {
    /// The node it left.
    pub node: String,
    /// The node address it left from.
    pub src: IpAddr,
    /// The remote address.
    pub dst: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// What happened.
    pub observed: Observed,
    /// Attempts made.
    pub attempts: u8,
}

/// Starts echo listeners on `tcp`/`udp` in every host that is not a fleet node, then
/// probes from every node address to every such host's addresses of its family, at most
/// `limit` probes per node (the first ones in host order). Listeners stop on return.
pub fn probe_egress(lab: &Lab<'_>, tcp: &[u16], udp: &[u16], limit: usize) -> Result<Vec<EgressRow>, Error> {
    let remotes: Vec<_> = lab.topo.hosts.iter().filter(|h| !matches!(h.role, Role::Node(_))).collect();
    let mut listeners = Vec::new();
    for h in &remotes {
        listeners
            .push(Listeners::start(&h.netns, tcp, udp).map_err(|e| Error(format!("listeners on {}: {e}", h.netns)))?);
    }
    let nodes: Vec<_> = lab.topo.hosts.iter().filter(|h| matches!(h.role, Role::Node(_))).collect();
    let mut rows = Vec::new();
    std::thread::scope(|scope| -> Result<(), Error> {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                let remotes = &remotes;
                scope.spawn(move || -> Result<Vec<EgressRow>, Error> {
                    let Role::Node(name) = &node.role else { unreachable!("filtered to nodes") };
                    netns::enter(&node.netns).map_err(|e| Error(format!("enter {}: {e}", node.netns)))?;
                    let mut out = Vec::new();
                    'all: for r in remotes.iter() {
                        for dst in &r.addrs {
                            for src in node.addrs.iter().filter(|a| a.is_ipv4() == dst.is_ipv4()) {
                                let ports = tcp
                                    .iter()
                                    .map(|p| (*p, Protocol::Tcp))
                                    .chain(udp.iter().map(|p| (*p, Protocol::Udp)));
                                for (port, protocol) in ports {
                                    if out.len() >= limit {
                                        break 'all;
                                    }
                                    let (observed, _, attempts) = probe::probe(*src, *dst, port, protocol);
                                    out.push(EgressRow {
                                        node: name.clone(),
                                        src: *src,
                                        dst: *dst,
                                        port,
                                        protocol,
                                        observed,
                                        attempts,
                                    });
                                }
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        for h in handles {
            rows.extend(h.join().expect("egress probe thread")?);
        }
        Ok(())
    })?;
    drop(listeners);
    Ok(rows)
}

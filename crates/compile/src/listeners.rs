//! Which listeners a node has: component × route (and cluster listeners), on which of
//! its addresses, on which port.
//!
//! `fleetwall ports` prints exactly these, and the compiler turns exactly these into
//! client and cluster rules, so the port table and the firewall cannot disagree.

use fleetwall_model::{Fleet, ListenerKey, Node, Project, Protocol, Service, Vpc};
use serde::Serialize;
use std::net::IpAddr;

/// How a listener is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The default route: public addresses outside a VPC, private ones inside.
    Dynamic,
    /// Public addresses of a VPC service (`public_access.<component>`).
    Public,
    /// The private-link route (`privatelink_access.<component>`).
    Privatelink,
    /// Peer-only listeners between the nodes of a service.
    Cluster,
}

impl Route {
    /// The route called `name` (`dynamic`, `public`, `privatelink`, `cluster`).
    pub fn parse(name: &str) -> Option<Route> {
        [Route::Dynamic, Route::Public, Route::Privatelink, Route::Cluster].into_iter().find(|r| r.as_str() == name)
    }

    /// The route's name as the platform writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Dynamic => "dynamic",
            Route::Public => "public",
            Route::Privatelink => "privatelink",
            Route::Cluster => "cluster",
        }
    }
}

/// One listener of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// The component (client routes) or cluster listener name.
    pub component: String,
    /// How it is reached.
    pub route: Route,
    /// The node addresses it accepts on.
    pub addresses: Vec<IpAddr>,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Whether it is a web UI on `web_port`.
    pub web: bool,
}

/// The addresses cluster listeners and the dynamic route use: private in a VPC, public otherwise.
pub fn home_addresses<'n>(node: &'n Node, vpc: Option<&Vpc>) -> &'n [IpAddr] {
    if vpc.is_some() {
        &node.private
    } else {
        &node.public
    }
}

/// The node addresses a route listens on; every address of the node when `route` is `None`.
pub fn route_addresses(node: &Node, in_vpc: bool, route: Option<Route>) -> Vec<IpAddr> {
    match route {
        None => node.private.iter().chain(&node.public).copied().collect(),
        Some(Route::Public) => node.public.clone(),
        Some(Route::Privatelink) => node.private.clone(),
        Some(Route::Dynamic | Route::Cluster) if in_vpc => node.private.clone(),
        Some(Route::Dynamic | Route::Cluster) => node.public.clone(),
    }
}

/// The listeners of `node` (a node of `service` in `project`), components in catalog
/// order with their routes in route order, then cluster listeners.
pub fn node_listeners(fleet: &Fleet, project: &Project, service: &Service, node: &Node) -> Vec<Listener> {
    let vpc = service.vpc.as_deref().and_then(|v| project.vpc(v));
    let web_port = fleet.platform.web_port;
    let home = home_addresses(node, vpc);
    let mut out = Vec::new();
    for c in &service.service_type.components {
        let main = match c.web {
            true => web_port,
            false => service.ports[&ListenerKey::Component(c.name.clone())],
        };
        let mut push = |route: Route, addresses: &[IpAddr], port: u16| {
            if !addresses.is_empty() {
                out.push(Listener {
                    component: c.name.clone(),
                    route,
                    addresses: addresses.to_vec(),
                    port,
                    protocol: Protocol::Tcp,
                    web: c.web,
                });
            }
        };
        push(Route::Dynamic, home, main);
        if vpc.is_some() && service.public_access.contains(&c.name) {
            push(Route::Public, &node.public, main);
        }
        if vpc.is_some() && service.privatelink.is_some() && service.privatelink_access.contains(&c.name) {
            let port = service.ports.get(&ListenerKey::ComponentPrivatelink(c.name.clone())).copied().unwrap_or(main);
            push(Route::Privatelink, &node.private, port);
        }
    }
    for l in &service.service_type.cluster {
        let port = service.ports[&ListenerKey::Cluster(l.name.clone())];
        for p in &l.protocols {
            if !home.is_empty() {
                out.push(Listener {
                    component: l.name.clone(),
                    route: Route::Cluster,
                    addresses: home.to_vec(),
                    port,
                    protocol: *p,
                    web: false,
                });
            }
        }
    }
    out
}

/// One row of `fleetwall ports`: a listener on one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRow {
    /// The project.
    pub project: String,
    /// The service.
    pub service: String,
    /// The node.
    pub node: String,
    /// The component or cluster listener.
    pub component: String,
    /// The route.
    pub route: Route,
    /// The address it listens on.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// Every listener of the fleet, one row per address, in fleet order.
pub fn port_table(fleet: &Fleet) -> Vec<PortRow> {
    let mut rows = Vec::new();
    for (p, s, n) in fleet.nodes() {
        for l in node_listeners(fleet, p, s, n) {
            for a in &l.addresses {
                rows.push(PortRow {
                    project: p.name.clone(),
                    service: s.name.clone(),
                    node: n.name.clone(),
                    component: l.component.clone(),
                    route: l.route,
                    address: *a,
                    port: l.port,
                    protocol: l.protocol,
                });
            }
        }
    }
    rows
}

//! Which listeners a node has: component × route (and cluster listeners), on which of
//! its addresses, on which port.
//!
//! `fleetwall ports` prints exactly these, and the standard service module turns exactly
//! these into client and cluster flows, so the port table and the firewall cannot disagree.

use crate::AddressClass;
use fleetwall_model::{Fleet, ListenerKey, Node, Project, Protocol, Service};
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
    /// The private-link connection whose own port this is (Kafka brokers), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

impl Route {
    /// The class of node addresses the route listens on.
    pub fn class(self, in_vpc: bool) -> AddressClass {
        match self {
            Route::Public => AddressClass::Public,
            Route::Privatelink => AddressClass::Private,
            Route::Dynamic | Route::Cluster if in_vpc => AddressClass::Private,
            Route::Dynamic | Route::Cluster => AddressClass::Public,
        }
    }
}

/// The node addresses a route listens on; every address of the node when `route` is `None`.
pub fn route_addresses(node: &Node, in_vpc: bool, route: Option<Route>) -> Vec<IpAddr> {
    match route.map(|r| r.class(in_vpc)) {
        None => node.private.iter().chain(&node.public).copied().collect(),
        Some(AddressClass::Public) => node.public.clone(),
        Some(AddressClass::Private) => node.private.clone(),
    }
}

/// The listeners every node of `service` has where it has addresses of the route's
/// class (`addresses` left empty): components in catalog order with their routes in
/// route order, then cluster listeners.
pub fn service_listeners(fleet: &Fleet, project: &Project, service: &Service) -> Vec<Listener> {
    let in_vpc = service.vpc.as_deref().and_then(|v| project.vpc(v)).is_some();
    let web_port = fleet.platform.web_port;
    let mut out = Vec::new();
    let mut push =
        |component: &str, route: Route, port: u16, protocol: Protocol, web: bool, connection: Option<&str>| {
            out.push(Listener {
                component: component.to_string(),
                route,
                addresses: Vec::new(),
                port,
                protocol,
                web,
                connection: connection.map(str::to_string),
            })
        };
    for c in &service.service_type.components {
        let main = match c.web {
            true => web_port,
            false => service.ports[&ListenerKey::Component(c.name.clone())],
        };
        push(&c.name, Route::Dynamic, main, Protocol::Tcp, c.web, None);
        if in_vpc && service.public_access.contains(&c.name) {
            push(&c.name, Route::Public, main, Protocol::Tcp, c.web, None);
        }
        if in_vpc && service.privatelink.is_some() && service.privatelink_access.contains(&c.name) {
            let port = service.ports.get(&ListenerKey::ComponentPrivatelink(c.name.clone())).copied().unwrap_or(main);
            push(&c.name, Route::Privatelink, port, Protocol::Tcp, c.web, None);
            // Each approved connection reaches the brokers on ports of its own.
            let connections = service.privatelink.iter().flat_map(|l| &l.connections);
            for conn in connections.filter(|conn| conn.state.opens()) {
                if let Some(&port) = conn.ports.get(&c.name) {
                    push(&c.name, Route::Privatelink, port, Protocol::Tcp, c.web, Some(&conn.id));
                }
            }
        }
    }
    for l in &service.service_type.cluster {
        let port = service.ports[&ListenerKey::Cluster(l.name.clone())];
        for p in &l.protocols {
            push(&l.name, Route::Cluster, port, *p, false, None);
        }
    }
    out
}

/// The listeners of `node` (a node of `service` in `project`): the service's listeners
/// on the node's addresses of each route's class, leaving out routes it has no address for.
pub fn node_listeners(fleet: &Fleet, project: &Project, service: &Service, node: &Node) -> Vec<Listener> {
    let in_vpc = service.private_home();
    service_listeners(fleet, project, service)
        .into_iter()
        .filter_map(|mut l| {
            l.addresses = route_addresses(node, in_vpc, Some(l.route));
            (!l.addresses.is_empty()).then_some(l)
        })
        .collect()
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

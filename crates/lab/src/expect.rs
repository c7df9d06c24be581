//! What the fleet implies, from the firewall contract itself.
//!
//! Deliberately a second, direct reading of MISSION.md's contract over the model (not the
//! IR), so the lab checks the compiler and renderers against the specification rather
//! than against themselves. Only the listener table is shared with the compiler: it is
//! the specification of which ports exist.

use fleetwall_compile::{node_listeners, Listener, Route, AZURE_PLATFORM};
use fleetwall_model::{Fleet, Node, Project, Protocol, Provider, Service, Vpc, IPSEC_PORTS};
use std::net::IpAddr;

/// One node and what it serves.
pub struct Target<'f> {
    /// The fleet.
    pub fleet: &'f Fleet,
    /// Its project.
    pub project: &'f Project,
    /// Its service.
    pub service: &'f Service,
    /// The node.
    pub node: &'f Node,
    /// Its listeners.
    pub listeners: Vec<Listener>,
}

impl<'f> Target<'f> {
    /// The target for a node of the fleet.
    pub fn new(fleet: &'f Fleet, project: &'f Project, service: &'f Service, node: &'f Node) -> Target<'f> {
        Target { fleet, project, service, node, listeners: node_listeners(fleet, project, service, node) }
    }

    fn vpc(&self) -> Option<&'f Vpc> {
        self.service.vpc.as_deref().and_then(|v| self.project.vpc(v))
    }

    fn home(&self, n: &'f Node) -> &'f [IpAddr] {
        if self.vpc().is_some() {
            &n.private
        } else {
            &n.public
        }
    }

    fn is_peer(&self, src: &IpAddr) -> bool {
        self.service.nodes.iter().filter(|n| n.name != self.node.name).any(|n| self.home(n).contains(src))
    }

    fn in_ip_filter(&self, src: &IpAddr) -> bool {
        self.service.ip_filter.iter().any(|e| e.network.contains(src))
    }

    /// Whether `src` may use a listener of `route` (contract point 4 and 5).
    fn route_admits(&self, route: Route, src: &IpAddr) -> bool {
        match (route, self.vpc()) {
            (Route::Cluster, _) => self.is_peer(src),
            (Route::Dynamic, None) | (Route::Public, _) => self.in_ip_filter(src),
            (Route::Dynamic, Some(v)) => {
                self.in_ip_filter(src)
                    && (v.network_cidr.contains(src)
                        || v.peerings.iter().flat_map(|p| &p.peer_cidrs).any(|c| c.contains(src)))
            }
            (Route::Privatelink, Some(v)) => v.privatelink_cidrs.iter().any(|c| c.contains(src)),
            (Route::Privatelink, None) => false,
        }
    }

    /// Whether a new connection from `src` to `dst:port/proto` is accepted.
    pub fn accepts(&self, src: IpAddr, dst: IpAddr, port: u16, proto: Protocol) -> bool {
        let p = &self.fleet.platform;
        // 3. Management, from the gateways only, on any address.
        if proto == Protocol::Tcp && (port == p.ssh_port || port == p.platform_port) {
            return p.management_gateways.contains(&src);
        }
        // 4 and 5. Listeners, on their route's addresses, from their route's sources.
        let served = self.listeners.iter().any(|l| {
            l.port == port && l.protocol == proto && l.addresses.contains(&dst) && self.route_admits(l.route, &src)
        });
        // 4. IPsec between peers, on the cluster addresses.
        let ipsec = p.ipsec
            && proto == Protocol::Udp
            && IPSEC_PORTS.contains(&port)
            && self.home(self.node).contains(&dst)
            && self.is_peer(&src);
        // 6. Azure's platform address: DHCP, DNS, health probes of client listeners.
        let azure = self.service.cloud.provider == Provider::Azure
            && src == AZURE_PLATFORM
            && match proto {
                Protocol::Udp => [53, 67, 68].contains(&port),
                Protocol::Tcp => {
                    port == 53 || self.listeners.iter().any(|l| l.route != Route::Cluster && l.port == port)
                }
            };
        served || ipsec || azure
    }
}

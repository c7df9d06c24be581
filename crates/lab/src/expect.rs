//! What the fleet implies, from the firewall contract itself.
//!
//! Deliberately a second, direct reading of MISSION.md's contract over the model (not the
//! IR), so the lab checks the compiler and renderers against the specification rather
//! than against themselves. Only the listener table is shared with the compiler: it is
//! the specification of which ports exist.

use fleetwall_compile::{node_listeners, Listener, Route, AZURE_PLATFORM};
use fleetwall_model::{Fleet, Node, Project, Protocol, Provider, Role, Service, Vpc, IPSEC_PORTS};
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
        if self.vpc().is_some() || self.service.role == Role::Workload {
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
        if let (Route::Dynamic, Role::Workload, Some(b)) = (route, self.service.role, &self.project.byoc) {
            // S7: a BYOC workload's clients are its ip_filter within the customer networks.
            return self.in_ip_filter(src) && b.customer_networks.iter().any(|c| c.contains(src));
        }
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
        let role = self.service.role;
        // 3. Management, from the gateways only, on any address; S7: a bastion also takes
        // its tunnel port from them, a BYOC workload takes management from the bastion
        // subnet only; a bastion takes nothing else.
        let tunnel = role == Role::Bastion && port == p.bastion_proxy_port;
        if proto == Protocol::Tcp && (port == p.ssh_port || port == p.platform_port || tunnel) {
            return match (role, &self.project.byoc) {
                (Role::Workload, Some(b)) => b.bastion_subnet.contains(&src),
                _ => p.management_gateways.contains(&src),
            };
        }
        if role == Role::Bastion {
            return self.service.cloud.provider == Provider::Azure
                && src == AZURE_PLATFORM
                && proto == Protocol::Udp
                && [53, 67, 68].contains(&port);
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

/// Whether a node of `service` may open a connection to `dst:port/proto` (contract point
/// 8): anything in a standard deployment; in ECE only the VPC, its peerings, the proxy,
/// the management gateways and the metadata DNS/NTP; in BYOC (S7) a workload only the
/// workload and bastion subnets, the customer networks and `egress`, a bastion only the
/// workloads' management ports and `egress`.
pub fn sends(fleet: &Fleet, project: &Project, service: &Service, dst: IpAddr, port: u16, proto: Protocol) -> bool {
    let p = &fleet.platform;
    let within = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&dst));
    if let Some(proxy) = &project.ece {
        let vpc = service.vpc.as_deref().and_then(|v| project.vpc(v));
        let in_vpc =
            vpc.is_some_and(|v| v.network_cidr.contains(&dst) || v.peerings.iter().any(|pe| within(&pe.peer_cidrs)));
        let metadata = dst == IpAddr::from([169, 254, 169, 254])
            && match proto {
                Protocol::Udp => port == 53 || port == 123,
                Protocol::Tcp => port == 53,
            };
        return in_vpc
            || (dst == proxy.address && proto == Protocol::Tcp && port == proxy.port)
            || p.management_gateways.contains(&dst)
            || metadata;
    }
    match (service.role, &project.byoc) {
        (Role::Workload, Some(b)) => {
            b.workload_subnet.contains(&dst)
                || b.bastion_subnet.contains(&dst)
                || within(&b.customer_networks)
                || within(&b.egress)
        }
        (Role::Bastion, Some(b)) => {
            (b.workload_subnet.contains(&dst)
                && proto == Protocol::Tcp
                && (port == p.ssh_port || port == p.platform_port))
                || within(&b.egress)
        }
        _ => true,
    }
}

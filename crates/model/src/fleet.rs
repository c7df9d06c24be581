//! The validated fleet: what the compiler consumes.
//!
//! Nothing here can be built except by `validate`, so every address parses, every CIDR
//! is a network, every component exists in its type, and every listener has a port.

use crate::catalog::{Protocol, ServiceType};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// The whole fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Platform-wide settings.
    pub platform: Platform,
    /// Projects, sorted by name; shared, so a changed fleet copies only what changed.
    pub projects: Vec<Arc<Project>>,
    /// `tests:` assertions, in file order.
    pub tests: Vec<Test>,
    /// Deployments of zones, subsystems and clusters, sorted by name.
    pub deployments: Vec<Arc<crate::deployment::Deployment>>,
}

/// Platform-wide settings.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Where management (SSH, platform port) may come from.
    pub management_gateways: Vec<IpAddr>,
    /// Management SSH port (22).
    pub ssh_port: u16,
    /// Platform management port (30287).
    pub platform_port: u16,
    /// Port of the web UIs (443).
    pub web_port: u16,
    /// IPsec between the nodes of a service.
    pub ipsec: bool,
    /// The BYOC bastion's encrypted tunnel to the workloads (443).
    pub bastion_proxy_port: u16,
}

/// The UDP ports of IPsec (IKE, NAT-T); fixed by the protocol.
pub const IPSEC_PORTS: [u16; 2] = [500, 4500];

/// A project: the unit of ownership, base port and VPCs.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project's name.
    pub name: String,
    /// The base port of its services, when set.
    pub base_port: Option<u16>,
    /// Its VPCs, sorted by name.
    pub vpcs: Vec<Vpc>,
    /// Its services, sorted by name; shared like the projects. A BYOC project's bastions
    /// are its service [`BASTION_SERVICE`] (role [`Role::Bastion`]).
    pub services: Vec<Arc<Service>>,
    /// Bring your own cloud: the customer's network the project's workloads run in.
    pub byoc: Option<Byoc>,
    /// Enhanced compliance (`compliance: ece`): the only way out is this proxy.
    pub ece: Option<Socks5Proxy>,
}

/// The name of a BYOC project's bastion service.
pub const BASTION_SERVICE: &str = "bastion";

/// A BYOC project's network in the customer's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Byoc {
    /// The customer's cloud region.
    pub cloud: Cloud,
    /// The whole network.
    pub network_cidr: IpNet,
    /// Where the bastions are.
    pub bastion_subnet: IpNet,
    /// Where the workloads (service nodes) are.
    pub workload_subnet: IpNet,
    /// Where the customer's applications connect from.
    pub customer_networks: Vec<IpNet>,
    /// Where workloads and bastions may connect out to (management, CDN, DNS, NTP).
    pub egress: Vec<IpNet>,
}

/// The SOCKS5 proxy of an ECE project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Proxy {
    /// Its address (inside the project's VPCs).
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// The destinations it relays to; everything else it refuses.
    pub allow: Vec<ProxyAllow>,
}

/// One destination a SOCKS5 proxy relays to: a network or a host name, all ports or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAllow {
    /// A network (`198.51.100.0/24`), or
    pub network: Option<IpNet>,
    /// a host name (`pkg.example.org`).
    pub host: Option<String>,
    /// One port, or every port.
    pub port: Option<u16>,
}

impl std::fmt::Display for ProxyAllow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.network, &self.host) {
            (Some(n), _) => write!(f, "{n}")?,
            (None, Some(h)) => write!(f, "{h}")?,
            (None, None) => write!(f, "?")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// What a service's nodes are to their project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A managed service (the standard contract).
    #[default]
    Service,
    /// A BYOC workload: managed through the bastion, reached from the customer's networks.
    Workload,
    /// A BYOC bastion: the management gateways' way in.
    Bastion,
}

impl Project {
    /// The VPC called `name`.
    pub fn vpc(&self, name: &str) -> Option<&Vpc> {
        self.vpcs.iter().find(|v| v.name == name)
    }
}

/// A cloud provider, from the prefix of a cloud name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `aws-`
    Aws,
    /// `google-`
    Google,
    /// `azure-`
    Azure,
    /// `do-`
    Do,
    /// `upcloud-`
    Upcloud,
}

impl Provider {
    /// Every provider with its cloud-name prefix.
    pub const PREFIXES: [(&'static str, Provider); 5] = [
        ("aws-", Provider::Aws),
        ("google-", Provider::Google),
        ("azure-", Provider::Azure),
        ("do-", Provider::Do),
        ("upcloud-", Provider::Upcloud),
    ];

    /// The provider's name as used for private-link resources (`aws`, `azure`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Google => "google",
            Provider::Azure => "azure",
            Provider::Do => "do",
            Provider::Upcloud => "upcloud",
        }
    }
}

/// A cloud region such as `aws-eu-west-1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// The full name.
    pub name: String,
    /// Its provider.
    pub provider: Provider,
}

/// A project VPC.
#[derive(Debug, Clone)]
pub struct Vpc {
    /// The VPC's name.
    pub name: String,
    /// Its cloud.
    pub cloud: Cloud,
    /// Its network.
    pub network_cidr: IpNet,
    /// Where private-link connections arrive from (default: `network_cidr`).
    pub privatelink_cidrs: Vec<IpNet>,
    /// Peerings with customer VPCs.
    pub peerings: Vec<Peering>,
}

/// A peering between a project VPC and a customer VPC.
#[derive(Debug, Clone)]
pub struct Peering {
    /// The customer's VPC id.
    pub peer_vpc: String,
    /// The customer's CIDRs routed over the peering.
    pub peer_cidrs: Vec<IpNet>,
}

/// One `ip_filter` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFilterEntry {
    /// The network (a bare address becomes a /32 or /128).
    pub network: IpNet,
    /// The user's description.
    pub description: Option<String>,
}

/// The `ip_filter` default: every client.
pub fn default_ip_filter() -> Vec<IpFilterEntry> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|n| IpFilterEntry { network: n.parse().expect("literal"), description: None })
        .collect()
}

/// A node (one VM) of a service.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name, unique in the fleet.
    pub name: String,
    /// Private addresses (v4 and/or v6).
    pub private: Vec<IpAddr>,
    /// Public addresses (v4 and/or v6).
    pub public: Vec<IpAddr>,
}

/// A private-link resource of a service.
#[derive(Debug, Clone)]
pub struct Privatelink {
    /// The provider it lives in.
    pub provider: Provider,
    /// Who may connect an endpoint.
    pub principals: Vec<String>,
    /// The endpoints the cloud side registered, in id order.
    pub connections: Vec<Connection>,
}

/// One private-link connection: an endpoint in the customer's account, with a host of its
/// own and, for Kafka, broker ports of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its id (`[a-z0-9-]`, as the cloud side registered it).
    pub id: String,
    /// Its host name (`privatelink-N-<service>-<project>…`).
    pub host: String,
    /// Where it is in its approval.
    pub state: ConnectionState,
    /// Its own port per component (Kafka brokers), from the pool 10000–31000.
    pub ports: BTreeMap<String, u16>,
}

/// The states of a private-link connection, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectionState {
    /// Registered; Azure and Google wait for the user's approval.
    PendingUserApproval,
    /// The user approved it (with the endpoint's address).
    UserApproved,
    /// The platform accepted the endpoint.
    Connected,
    /// Every node enforces its ports.
    Active,
}

impl ConnectionState {
    /// Every state, in order.
    pub const ALL: [ConnectionState; 4] = [
        ConnectionState::PendingUserApproval,
        ConnectionState::UserApproved,
        ConnectionState::Connected,
        ConnectionState::Active,
    ];

    /// The state as written (`pending-user-approval`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::PendingUserApproval => "pending-user-approval",
            ConnectionState::UserApproved => "user-approved",
            ConnectionState::Connected => "connected",
            ConnectionState::Active => "active",
        }
    }

    /// The state written as `text`.
    pub fn parse(text: &str) -> Option<ConnectionState> {
        ConnectionState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the nodes open the connection's ports: once the user approved it.
    pub fn opens(self) -> bool {
        self != ConnectionState::PendingUserApproval
    }
}

/// The kind of listener a port belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerKey {
    /// A client component's port (dynamic and public routes; private-link too unless it has its own).
    Component(String),
    /// A component's separate private-link port.
    ComponentPrivatelink(String),
    /// A cluster listener.
    Cluster(String),
}

impl ListenerKey {
    /// The key as written in `ports:` pins.
    pub fn pin_name(&self) -> String {
        match self {
            ListenerKey::Component(c) | ListenerKey::Cluster(c) => c.clone(),
            ListenerKey::ComponentPrivatelink(c) => format!("{c}.privatelink"),
        }
    }
}

/// A service: a cluster of nodes of one type.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's name, unique in its project.
    pub name: String,
    /// Its type, from the catalog.
    pub service_type: Arc<ServiceType>,
    /// Its cloud.
    pub cloud: Cloud,
    /// Its VPC in the project, if any.
    pub vpc: Option<String>,
    /// Its nodes, in file order.
    pub nodes: Vec<Node>,
    /// Who may connect (default: everyone).
    pub ip_filter: Vec<IpFilterEntry>,
    /// Components opened on the public route (VPC services).
    pub public_access: BTreeSet<String>,
    /// Components opened on the private-link route.
    pub privatelink_access: BTreeSet<String>,
    /// The private-link resource.
    pub privatelink: Option<Privatelink>,
    /// The port of every allocated listener (web components use `web_port` and are absent).
    pub ports: BTreeMap<ListenerKey, u16>,
    /// The listeners the user pinned.
    pub pinned: BTreeSet<ListenerKey>,
    /// What its nodes are to the project.
    pub role: Role,
}

impl Service {
    /// Whether its cluster listeners and dynamic route are on private addresses: in a
    /// VPC, or a BYOC workload (in the customer's network).
    pub fn private_home(&self) -> bool {
        self.vpc.is_some() || self.role == Role::Workload
    }
}

/// What a test expects at a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A component of the destination's service, on its route.
    Component(String),
    /// A port and protocol.
    Port(u16, Protocol),
}

/// A `tests:` assertion.
#[derive(Debug, Clone)]
pub struct Test {
    /// The remote address: the source of an ingress test, the destination of an egress one.
    pub from: IpAddr,
    /// The node: the destination of an ingress test, the sender of an egress one.
    pub to: String,
    /// `direction: egress`: the node's outbound connections to the address are tested.
    pub egress: bool,
    /// The destination route, when given as `node.route`.
    pub route: Option<String>,
    /// What must connect.
    pub accept: Vec<Probe>,
    /// What must be rejected.
    pub deny: Vec<Probe>,
    /// Where the test was written.
    pub span: crate::yaml::Span,
}

impl Fleet {
    /// Every service with its project.
    pub fn services(&self) -> impl Iterator<Item = (&Project, &Service)> {
        self.projects.iter().flat_map(|p| p.services.iter().map(move |s| (&**p, &**s)))
    }

    /// Every server of a deployment with its deployment and cluster.
    pub fn servers(
        &self,
    ) -> impl Iterator<Item = (&crate::deployment::Deployment, &crate::deployment::Cluster, &crate::deployment::Server)>
    {
        self.deployments.iter().flat_map(|d| d.servers().map(move |(c, s)| (&**d, c, s)))
    }

    /// Every node with its project and service.
    pub fn nodes(&self) -> impl Iterator<Item = (&Project, &Service, &Node)> {
        self.services().flat_map(|(p, s)| s.nodes.iter().map(move |n| (p, s, n)))
    }
}

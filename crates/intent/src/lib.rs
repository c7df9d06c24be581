//! The Intent stage: what a fleet means for its firewalls, before any node's ruleset.
//!
//! `build(fleet)` turns a validated `Fleet` into named **address groups** (the management
//! gateways, a service's nodes by address class, its ip_filter, its ip_filter scoped to a
//! VPC and its peerings, a VPC's private-link CIDRs, the Azure platform address, ...) and,
//! per service, ordered **flows** `{peer group, local addresses, traffic, direction,
//! verdict, reason}`. Each deployment concern is one module contributing flows
//! ([`CONCERNS`]): the standard managed service (contract points 1–7 and 9), cloud quirks
//! (Azure), egress (point 8). New deployment kinds (BYOC, ECE, zones, operator access)
//! are new modules here; nothing below this stage knows about them.
//!
//! Lowering an Intent to per-node `NodeRuleset`s is a separate, pure step
//! (`fleetwall_compile::lower`); group backends (security groups, NetworkPolicy) read the
//! Intent directly, since a group and a flow are exactly what they express.
//!
//! Flows are ordered by [`Stage`] (stable within a stage, in module order), so the rule
//! order of the firewall contract is a property of the stages, not of one function:
//! management comes before anything derived from user input, and the final reject last.

pub mod azure;
pub mod byoc;
pub use azure::AZURE_PLATFORM;
pub mod ece;
pub mod egress;
pub mod listeners;
pub mod standard;
pub mod zones;

pub use fleetwall_ir::Direction;
use fleetwall_ir::{CtState, Family, IcmpType, Verdict};
use fleetwall_model::{Fleet, Project, Service, Vpc};
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

pub use listeners::{node_listeners, port_table, route_addresses, service_listeners, Listener, PortRow, Route};

/// A group's index in [`Intent::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupId(pub usize);

/// One network of a group and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    /// The network.
    pub net: IpNet,
    /// Why ("ip_filter entry 198.51.100.0/24 'office' of acme-prod/pg-main").
    pub reason: String,
    /// The node it belongs to, for groups of nodes (so a node's view can leave itself out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A named group of networks, of either family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// A stable, readable name ("management-gateways", "acme-prod/pg-main/ip_filter").
    pub name: String,
    /// The name stem of the sets lowered from it (`ipf` → `ipf4`, `ipf6`).
    pub set: String,
    /// What the group is ("ip_filter of acme-prod/pg-main").
    pub reason: String,
    /// What the group is seen from one of its own nodes, leaving that node out
    /// ("public addresses of the other nodes of acme-prod/pg-main"); groups of nodes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_others: Option<String>,
    /// Written out as a literal address list rather than a named set (a platform address).
    pub inline: bool,
    /// The networks.
    pub members: Vec<GroupMember>,
}

impl Group {
    /// The members of one family.
    pub fn of_family(&self, fam: Family) -> impl Iterator<Item = &GroupMember> {
        self.members.iter().filter(move |m| Family::of(&m.net) == fam)
    }
}

/// The remote side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Anyone.
    Any,
    /// The members of a group; with `except_self`, a node's own addresses are left out.
    Group {
        /// The group.
        group: GroupId,
        /// Leave out the members of the node the rule is for.
        except_self: bool,
    },
}

/// A class of a node's own addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressClass {
    /// Private (VPC) addresses.
    Private,
    /// Public addresses.
    Public,
}

/// The node's side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Local {
    /// Any address of the node.
    Any,
    /// Only the node's addresses of this class (a node without such addresses gets no rule).
    Addresses(AddressClass),
}

/// What traffic a flow is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "proto", content = "ports")]
pub enum Traffic {
    /// Everything.
    Any,
    /// TCP to these ports (empty: any port).
    Tcp(Vec<u16>),
    /// UDP to these ports (empty: any port).
    Udp(Vec<u16>),
    /// IPsec ESP.
    Esp,
    /// ICMP types (a flow of one family only).
    Icmp(Vec<IcmpType>),
}

/// Where in a chain a flow's rule goes. The order of the stages is the firewall
/// contract's rule order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Loopback, established, neighbour discovery, invalid, ICMP errors.
    Base,
    /// Echo requests from management and peers.
    Icmp,
    /// Management from the gateways: before anything a user writes (point 9).
    Management,
    /// Between the nodes of a service.
    Cluster,
    /// Client routes (what ip_filter, VPCs and private links open).
    Clients,
    /// Cloud platform addresses.
    Cloud,
    /// Everything else, refused.
    Reject,
}

/// One flow: a rule-to-be, on every node of its service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// The rule id it lowers to (stable, a slug: `mgmt-ssh-v4`).
    pub id: String,
    /// Ingress (input chain) or egress (output chain).
    pub direction: Direction,
    /// Its place in the chain.
    pub stage: Stage,
    /// The family it is limited to; `None` for both.
    pub family: Option<Family>,
    /// Loopback traffic only.
    pub loopback: bool,
    /// A conntrack state it is limited to.
    pub ct: Option<CtState>,
    /// The remote side.
    pub peer: Peer,
    /// The node's side.
    pub local: Local,
    /// What traffic.
    pub traffic: Traffic,
    /// What happens to it.
    pub verdict: Verdict,
    /// Why, naming the model object.
    pub reason: String,
}

impl Flow {
    /// An inbound flow from anyone to any of the node's addresses, of both families.
    pub fn ingress(id: impl Into<String>, stage: Stage, reason: impl Into<String>, verdict: Verdict) -> Flow {
        Flow {
            id: id.into(),
            direction: Direction::Ingress,
            stage,
            family: None,
            loopback: false,
            ct: None,
            peer: Peer::Any,
            local: Local::Any,
            traffic: Traffic::Any,
            verdict,
            reason: reason.into(),
        }
    }
    /// The same flow outbound.
    pub fn egress(id: impl Into<String>, stage: Stage, reason: impl Into<String>, verdict: Verdict) -> Flow {
        Flow { direction: Direction::Egress, ..Flow::ingress(id, stage, reason, verdict) }
    }
    /// Limited to one family.
    pub fn family(mut self, f: Family) -> Flow {
        self.family = Some(f);
        self
    }
    /// From (ingress) or to (egress) a group.
    pub fn peer(mut self, group: GroupId, except_self: bool) -> Flow {
        self.peer = Peer::Group { group, except_self };
        self
    }
    /// On the node's addresses of one class only.
    pub fn local(mut self, class: AddressClass) -> Flow {
        self.local = Local::Addresses(class);
        self
    }
    /// Of this traffic.
    pub fn traffic(mut self, t: Traffic) -> Flow {
        self.traffic = t;
        self
    }
    /// Loopback only.
    pub fn loopback(mut self) -> Flow {
        self.loopback = true;
        self
    }
    /// In this conntrack state only.
    pub fn ct(mut self, s: CtState) -> Flow {
        self.ct = Some(s);
        self
    }
}

/// One node as the Intent sees it: a name and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeIntent {
    /// The node's name.
    pub name: String,
    /// Private addresses.
    pub private: Vec<IpAddr>,
    /// Public addresses.
    pub public: Vec<IpAddr>,
}

impl NodeIntent {
    /// The node's addresses of a class.
    pub fn addresses(&self, class: AddressClass) -> &[IpAddr] {
        match class {
            AddressClass::Private => &self.private,
            AddressClass::Public => &self.public,
        }
    }
}

/// One service's nodes and flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceIntent {
    /// `project/service`.
    pub qualified: String,
    /// What its nodes are, for ruleset headers ("acme-prod/pg-main (pg, aws-eu-west-1)").
    pub description: String,
    /// The cloud it runs in (`aws-eu-west-1`): which cloud-layer backend renders it.
    pub cloud: String,
    /// The VPC it sits in, if any (the fleet's name for it).
    pub vpc: Option<String>,
    /// Its nodes, in fleet order.
    pub nodes: Vec<NodeIntent>,
    /// Its flows, ordered by direction and stage.
    pub flows: Vec<Flow>,
}

/// The fleet's intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intent {
    /// Every address group; flows refer to them by index.
    pub groups: Vec<Group>,
    /// Every service, in fleet order.
    pub services: Vec<ServiceIntent>,
}

impl Intent {
    /// The group `id` names.
    pub fn group(&self, id: GroupId) -> &Group {
        &self.groups[id.0]
    }
}

/// What a module sees of one service.
pub struct ServiceCx<'a> {
    /// The fleet.
    pub fleet: &'a Fleet,
    /// The service's project.
    pub project: &'a Project,
    /// The service.
    pub service: &'a Service,
    /// Its VPC, if any.
    pub vpc: Option<&'a Vpc>,
    /// `project/service`.
    pub qualified: String,
    /// The group of the management gateways (fleet-wide).
    pub management: GroupId,
}

impl ServiceCx<'_> {
    /// The class of the addresses cluster listeners and the dynamic route use: private
    /// in a VPC or a BYOC network, public otherwise.
    pub fn home(&self) -> AddressClass {
        if self.service.private_home() {
            AddressClass::Private
        } else {
            AddressClass::Public
        }
    }
}

/// Where a module puts its groups and flows.
pub struct Contribution<'i> {
    groups: &'i mut Vec<Group>,
    flows: Vec<Flow>,
}

impl Contribution<'_> {
    /// Adds a group; returns its id.
    pub fn group(&mut self, g: Group) -> GroupId {
        self.groups.push(g);
        GroupId(self.groups.len() - 1)
    }
    /// Adds a flow.
    pub fn flow(&mut self, f: Flow) {
        self.flows.push(f);
    }
    /// The members of a group added earlier (to skip a flow when it is empty).
    pub fn members(&self, id: GroupId) -> &[GroupMember] {
        &self.groups[id.0].members
    }
}

/// A deployment concern: contributes groups and flows for one service.
/// IPv6 neighbour discovery, which every node accepts in both directions.
pub const ND_TYPES: [IcmpType; 3] = [IcmpType::NdRouterAdvert, IcmpType::NdNeighborSolicit, IcmpType::NdNeighborAdvert];
/// The ICMP errors every node accepts (path MTU discovery and failing fast).
pub const ICMP_ERRORS_V4: [IcmpType; 3] =
    [IcmpType::DestinationUnreachable, IcmpType::TimeExceeded, IcmpType::ParameterProblem];
/// The ICMPv6 errors every node accepts.
pub const ICMP_ERRORS_V6: [IcmpType; 4] =
    [IcmpType::DestinationUnreachable, IcmpType::PacketTooBig, IcmpType::TimeExceeded, IcmpType::ParameterProblem];

pub type Concern = fn(&ServiceCx<'_>, &mut Contribution<'_>);

/// Every concern, in the order their flows are listed within a stage.
pub const CONCERNS: &[(&str, Concern)] = &[
    ("standard", standard::contribute),
    ("byoc", byoc::contribute),
    ("azure", azure::contribute),
    ("ece", ece::contribute),
    ("egress", egress::contribute),
];

fn management_group(fleet: &Fleet) -> Group {
    Group {
        name: "management-gateways".into(),
        set: "mgmt".into(),
        reason: "management gateways".into(),
        reason_others: None,
        inline: false,
        members: fleet
            .platform
            .management_gateways
            .iter()
            .map(|a| GroupMember { net: IpNet::from(*a), reason: format!("management gateway {a}"), node: None })
            .collect(),
    }
}

/// The intent of a whole fleet: its services, then its deployments' clusters.
pub fn build(fleet: &Fleet) -> Intent {
    let mut intent = build_services(fleet, |_, _| true);
    let clusters = zones::build(fleet, &mut intent.groups, |_| true);
    intent.services.extend(clusters);
    intent
}

/// The intent of the deployments `keep` selects (zones, subsystems and clusters; see
/// [`zones`]), without the fleet's services.
pub fn build_deployments(fleet: &Fleet, keep: impl Fn(&fleetwall_model::deployment::Deployment) -> bool) -> Intent {
    let mut groups = vec![management_group(fleet)];
    let services = zones::build(fleet, &mut groups, keep);
    Intent { groups, services }
}

/// The intent of the services `keep` selects (the platform's groups are always there).
pub fn build_services(fleet: &Fleet, keep: impl Fn(&Project, &Service) -> bool) -> Intent {
    let mut groups = vec![management_group(fleet)];
    let management = GroupId(0);
    let mut services = Vec::new();
    for (project, service) in fleet.services().filter(|(p, s)| keep(p, s)) {
        let cx = ServiceCx {
            fleet,
            project,
            service,
            vpc: service.vpc.as_deref().and_then(|v| project.vpc(v)),
            qualified: format!("{}/{}", project.name, service.name),
            management,
        };
        let mut c = Contribution { groups: &mut groups, flows: Vec::new() };
        for (_, concern) in CONCERNS {
            concern(&cx, &mut c);
        }
        let mut flows = c.flows;
        flows.sort_by_key(|f| (f.direction, f.stage));
        services.push(ServiceIntent {
            description: format!("{} ({}, {})", cx.qualified, service.service_type.name, service.cloud.name),
            qualified: cx.qualified,
            cloud: service.cloud.name.clone(),
            // A BYOC network is the customer's VPC: the cloud layer's groups belong to it.
            vpc: cx
                .vpc
                .map(|v| v.name.clone())
                .or_else(|| project.byoc.as_ref().map(|_| format!("{}-byoc", project.name))),
            nodes: service
                .nodes
                .iter()
                .map(|n| NodeIntent { name: n.name.clone(), private: n.private.clone(), public: n.public.clone() })
                .collect(),
            flows,
        });
    }
    Intent { groups, services }
}

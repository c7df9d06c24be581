//! Fleet → `NodeRuleset` for every node: the firewall contract, points 1–7 and 9.
//!
//! Sets that do not depend on the node (management gateways, a service's ip_filter, its
//! VPC scope, its private-link CIDRs) are built once and shared by `Arc`, so compiling a
//! service with an 8,000-entry ip_filter costs one aggregation, not one per node. The rule
//! order is fixed: loopback, established, neighbour discovery, invalid, ICMP, management,
//! cluster, clients, cloud, reject — management comes before anything a user writes and
//! nothing a user writes can reach it (point 9).

use crate::listeners::{home_addresses, node_listeners, Listener, Route};
use fleetwall_ir::{
    AddrSet, Addrs, CtState, Family, IcmpType, Match, Member, NodeRuleset, Reject, Rule, SetName, Verdict, L4,
};
use fleetwall_model::{Fleet, IpFilterEntry, Node, Project, Protocol, Provider, Service, Vpc, IPSEC_PORTS};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Azure's platform address: DHCP, DNS and load-balancer health probes come from it.
pub const AZURE_PLATFORM: IpAddr = IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16));

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// Compiles every node of the fleet, in fleet order.
pub fn compile(fleet: &Fleet) -> Vec<NodeRuleset> {
    let mgmt = management_sets(fleet);
    let mut out = Vec::with_capacity(fleet.nodes().count());
    for (project, service) in fleet.services() {
        let shared = ServiceSets::new(project, service);
        for node in &service.nodes {
            out.push(compile_node_with(fleet, &mgmt, &shared, project, service, node));
        }
    }
    out
}

/// Compiles one node by name.
pub fn compile_node(fleet: &Fleet, name: &str) -> Option<NodeRuleset> {
    let (project, service, node) = fleet.nodes().find(|(_, _, n)| n.name == name)?;
    let mgmt = management_sets(fleet);
    let shared = ServiceSets::new(project, service);
    Some(compile_node_with(fleet, &mgmt, &shared, project, service, node))
}

fn by_family(nets: impl IntoIterator<Item = Member>) -> [Vec<Member>; 2] {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for m in nets {
        match Family::of(&m.net) {
            Family::V4 => v4.push(m),
            Family::V6 => v6.push(m),
        }
    }
    [v4, v6]
}

/// A pair of sets (v4, v6); a family with no members has no set.
type SetPair = [Option<Arc<AddrSet>>; 2];

fn set_pair(prefix: &str, reason: &str, members: impl IntoIterator<Item = Member>) -> SetPair {
    let [v4, v6] = by_family(members);
    let make = |fam: Family, m: Vec<Member>| {
        (!m.is_empty()).then(|| {
            let suffix = if fam == Family::V4 { "4" } else { "6" };
            let name = SetName::new(format!("{prefix}{suffix}")).expect("the compiler's set names are slugs");
            Arc::new(AddrSet::new(name, fam, reason, m))
        })
    };
    [make(Family::V4, v4), make(Family::V6, v6)]
}

fn idx(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

fn management_sets(fleet: &Fleet) -> SetPair {
    set_pair(
        "mgmt",
        "management gateways",
        fleet
            .platform
            .management_gateways
            .iter()
            .map(|a| Member { net: IpNet::from(*a), reason: format!("management gateway {a}") }),
    )
}

fn describe_entry(e: &IpFilterEntry, svc: &str) -> String {
    match &e.description {
        Some(d) => format!("ip_filter entry {} '{d}' of {svc}", e.network),
        None => format!("ip_filter entry {} of {svc}", e.network),
    }
}

/// The intersection of two networks (prefix networks either nest or are disjoint).
pub fn intersect(a: &IpNet, b: &IpNet) -> Option<IpNet> {
    if Family::of(a) != Family::of(b) {
        None
    } else if a.contains(b) {
        Some(*b)
    } else if b.contains(a) {
        Some(*a)
    } else {
        None
    }
}

/// Where a VPC service's dynamic route may be reached from: the VPC and its peerings.
pub fn vpc_scope(vpc: &Vpc) -> Vec<(IpNet, String)> {
    let mut scope = vec![(vpc.network_cidr, format!("VPC {} network {}", vpc.name, vpc.network_cidr))];
    for p in &vpc.peerings {
        for c in &p.peer_cidrs {
            scope.push((*c, format!("peering {} of VPC {} ({c})", p.peer_vpc, vpc.name)));
        }
    }
    scope
}

/// The sets every node of one service shares.
struct ServiceSets {
    qualified: String,
    ip_filter: SetPair,
    vpc_filter: SetPair,
    privatelink: SetPair,
}

impl ServiceSets {
    fn new(project: &Project, service: &Service) -> ServiceSets {
        let q = format!("{}/{}", project.name, service.name);
        let vpc = service.vpc.as_deref().and_then(|v| project.vpc(v));
        let ip_filter = set_pair(
            "ipf",
            &format!("ip_filter of {q}"),
            service.ip_filter.iter().map(|e| Member { net: e.network, reason: describe_entry(e, &q) }),
        );
        let (vpc_filter, privatelink) = match vpc {
            None => ([None, None], [None, None]),
            Some(v) => {
                let scope = vpc_scope(v);
                let members = service.ip_filter.iter().flat_map(|e| {
                    let entry = describe_entry(e, &q);
                    scope.iter().filter_map(move |(net, why)| {
                        intersect(&e.network, net).map(|n| Member { net: n, reason: format!("{entry} ∩ {why}") })
                    })
                });
                let vf = set_pair("vpcf", &format!("ip_filter of {q} within VPC {} and its peerings", v.name), members);
                let pl = set_pair(
                    "pl",
                    &format!("private-link CIDRs of VPC {}", v.name),
                    v.privatelink_cidrs
                        .iter()
                        .map(|c| Member { net: *c, reason: format!("private-link CIDR {c} of VPC {}", v.name) }),
                );
                (vf, pl)
            }
        };
        ServiceSets { qualified: q, ip_filter, vpc_filter, privatelink }
    }
}

/// Builds one ruleset; collects the sets its rules use.
struct Builder {
    sets: BTreeMap<SetName, Arc<AddrSet>>,
    input: Vec<Rule>,
}

impl Builder {
    fn rule(&mut self, id: impl Into<String>, reason: impl Into<String>, matches: Match, verdict: Verdict) {
        self.input.push(Rule { id: id.into(), reason: reason.into(), matches, verdict });
    }

    /// References a set from a rule, registering it in the ruleset.
    fn use_set(&mut self, set: &Arc<AddrSet>) -> Addrs {
        self.sets.entry(set.name.clone()).or_insert_with(|| set.clone());
        Addrs::Set(set.name.clone())
    }
}

fn addrs_of(addrs: &[IpAddr], fam: Family) -> Vec<IpNet> {
    addrs.iter().map(|a| IpNet::from(*a)).filter(|n| Family::of(n) == fam).collect()
}

fn l4(protocol: Protocol, ports: Vec<u16>) -> L4 {
    match protocol {
        Protocol::Tcp => L4::Tcp(ports),
        Protocol::Udp => L4::Udp(ports),
    }
}

fn compile_node_with(
    fleet: &Fleet,
    mgmt: &SetPair,
    shared: &ServiceSets,
    project: &Project,
    service: &Service,
    node: &Node,
) -> NodeRuleset {
    let platform = &fleet.platform;
    let vpc = service.vpc.as_deref().and_then(|v| project.vpc(v));
    let q = &shared.qualified;
    let mut b = Builder { sets: BTreeMap::new(), input: Vec::new() };
    let accept = Verdict::Accept;

    // 1. Loopback, established, invalid (neighbour discovery first: the kernel may see it as invalid).
    b.rule("base-loopback", "loopback traffic", Match { loopback: true, ..Match::default() }, accept);
    b.rule(
        "base-established",
        "packets of established connections and related ICMP errors",
        Match { ct: Some(CtState::EstablishedRelated), ..Match::default() },
        accept,
    );
    b.rule(
        "icmp-nd-v6",
        "IPv6 neighbour discovery",
        Match {
            family: Some(Family::V6),
            l4: Some(L4::Icmp(vec![IcmpType::NdRouterAdvert, IcmpType::NdNeighborSolicit, IcmpType::NdNeighborAdvert])),
            ..Match::default()
        },
        accept,
    );
    b.rule(
        "base-invalid",
        "conntrack-invalid packets (the only drop)",
        Match { ct: Some(CtState::Invalid), ..Match::default() },
        Verdict::Drop,
    );

    // 2. ICMP errors (path MTU discovery), echo from management and peers.
    b.rule(
        "icmp-errors-v4",
        "ICMP errors (unreachable, time exceeded, parameter problem)",
        Match {
            family: Some(Family::V4),
            l4: Some(L4::Icmp(vec![
                IcmpType::DestinationUnreachable,
                IcmpType::TimeExceeded,
                IcmpType::ParameterProblem,
            ])),
            ..Match::default()
        },
        accept,
    );
    b.rule(
        "icmp-errors-v6",
        "ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem)",
        Match {
            family: Some(Family::V6),
            l4: Some(L4::Icmp(vec![
                IcmpType::DestinationUnreachable,
                IcmpType::PacketTooBig,
                IcmpType::TimeExceeded,
                IcmpType::ParameterProblem,
            ])),
            ..Match::default()
        },
        accept,
    );
    let cluster_kind = if vpc.is_some() { "private" } else { "public" };
    let peers = set_pair(
        "peers",
        &format!("{cluster_kind} addresses of the other nodes of {q}"),
        service.nodes.iter().filter(|n| n.name != node.name).flat_map(|n| {
            home_addresses(n, vpc)
                .iter()
                .map(move |a| Member { net: IpNet::from(*a), reason: format!("peer node {} of {q}", n.name) })
        }),
    );
    for fam in FAMILIES {
        let f = fam.as_str();
        if let Some(set) = &mgmt[idx(fam)] {
            let src = b.use_set(set);
            b.rule(
                format!("echo-mgmt-{f}"),
                "echo requests from the management gateways",
                Match {
                    family: Some(fam),
                    saddr: Some(src),
                    l4: Some(L4::Icmp(vec![IcmpType::EchoRequest])),
                    ..Match::default()
                },
                accept,
            );
        }
        if let Some(set) = &peers[idx(fam)] {
            let src = b.use_set(set);
            b.rule(
                format!("echo-peers-{f}"),
                format!("echo requests from the other nodes of {q}"),
                Match {
                    family: Some(fam),
                    saddr: Some(src),
                    l4: Some(L4::Icmp(vec![IcmpType::EchoRequest])),
                    ..Match::default()
                },
                accept,
            );
        }
    }

    // 3. Management, from the gateways only; before anything derived from user input.
    for fam in FAMILIES {
        let Some(set) = &mgmt[idx(fam)] else { continue };
        let f = fam.as_str();
        for (id, port, what) in [
            ("ssh", platform.ssh_port, "management SSH"),
            ("platform", platform.platform_port, "platform management port"),
        ] {
            let src = b.use_set(set);
            b.rule(
                format!("mgmt-{id}-{f}"),
                format!("{what} from the management gateways"),
                Match { family: Some(fam), saddr: Some(src), l4: Some(L4::Tcp(vec![port])), ..Match::default() },
                accept,
            );
        }
    }

    // 4. Cluster listeners and IPsec, from the peers' own addresses.
    let listeners = node_listeners(fleet, project, service, node);
    for fam in FAMILIES {
        let Some(set) = &peers[idx(fam)] else { continue };
        let f = fam.as_str();
        let home = addrs_of(home_addresses(node, vpc), fam);
        if home.is_empty() {
            continue;
        }
        for l in listeners.iter().filter(|l| l.route == Route::Cluster) {
            let src = b.use_set(set);
            b.rule(
                format!("cluster-{}-{}-{f}", l.component, l.protocol.as_str()),
                format!("cluster listener {} of {q} from its other nodes", l.component),
                Match {
                    family: Some(fam),
                    saddr: Some(src),
                    daddr: Some(Addrs::List(home.clone())),
                    l4: Some(l4(l.protocol, vec![l.port])),
                    ..Match::default()
                },
                accept,
            );
        }
        if platform.ipsec {
            let src = b.use_set(set);
            b.rule(
                format!("cluster-ipsec-ike-{f}"),
                format!("IPsec IKE and NAT-T between the nodes of {q}"),
                Match {
                    family: Some(fam),
                    saddr: Some(src.clone()),
                    daddr: Some(Addrs::List(home.clone())),
                    l4: Some(L4::Udp(IPSEC_PORTS.to_vec())),
                    ..Match::default()
                },
                accept,
            );
            b.rule(
                format!("cluster-ipsec-esp-{f}"),
                format!("IPsec ESP between the nodes of {q}"),
                Match {
                    family: Some(fam),
                    saddr: Some(src),
                    daddr: Some(Addrs::List(home.clone())),
                    l4: Some(L4::Esp),
                    ..Match::default()
                },
                accept,
            );
        }
    }

    // 5. Client components, per route, on the route's own addresses only.
    for l in listeners.iter().filter(|l| l.route != Route::Cluster) {
        let (sources, what) = match l.route {
            Route::Dynamic if vpc.is_some() => (&shared.vpc_filter, "its ip_filter within the VPC and peerings"),
            Route::Dynamic | Route::Public => (&shared.ip_filter, "its ip_filter"),
            Route::Privatelink => (&shared.privatelink, "the VPC's private-link CIDRs"),
            Route::Cluster => unreachable!("filtered out"),
        };
        for fam in FAMILIES {
            let (Some(set), dst) = (&sources[idx(fam)], addrs_of(&l.addresses, fam)) else { continue };
            if dst.is_empty() {
                continue;
            }
            let src = b.use_set(set);
            let web = if l.web { " (web UI)" } else { "" };
            b.rule(
                client_rule_id(l, fam),
                format!("{} route of component {}{web} of {q}, from {what}", l.route.as_str(), l.component),
                Match {
                    family: Some(fam),
                    saddr: Some(src),
                    daddr: Some(Addrs::List(dst)),
                    l4: Some(L4::Tcp(vec![l.port])),
                    ..Match::default()
                },
                accept,
            );
        }
    }

    // 6. Cloud platform addresses.
    if service.cloud.provider == Provider::Azure {
        let azure = Some(Addrs::List(vec![IpNet::from(AZURE_PLATFORM)]));
        let m = |l4: L4| Match { family: Some(Family::V4), saddr: azure.clone(), l4: Some(l4), ..Match::default() };
        b.rule(
            "azure-dhcp-dns-udp",
            "Azure platform address 168.63.129.16: DHCP and DNS",
            m(L4::Udp(vec![53, 67, 68])),
            accept,
        );
        b.rule("azure-dns-tcp", "Azure platform address 168.63.129.16: DNS", m(L4::Tcp(vec![53])), accept);
        let mut ports: Vec<u16> = listeners.iter().filter(|l| l.route != Route::Cluster).map(|l| l.port).collect();
        ports.sort_unstable();
        ports.dedup();
        if !ports.is_empty() {
            b.rule(
                "azure-health-probes",
                "Azure platform address 168.63.129.16: load-balancer health probes",
                m(L4::Tcp(ports)),
                accept,
            );
        }
    }

    // 7. Everything else: refused, so clients fail fast.
    b.rule(
        "reject-tcp",
        "not allowed: TCP is reset",
        Match { l4: Some(L4::Tcp(vec![])), ..Match::default() },
        Verdict::Reject(Reject::TcpReset),
    );
    b.rule(
        "reject-udp",
        "not allowed: UDP gets port unreachable",
        Match { l4: Some(L4::Udp(vec![])), ..Match::default() },
        Verdict::Reject(Reject::PortUnreachable),
    );
    b.rule(
        "reject-other",
        "not allowed: other protocols get admin prohibited",
        Match::default(),
        Verdict::Reject(Reject::AdminProhibited),
    );

    NodeRuleset {
        node: node.name.clone(),
        description: format!("{q} ({}, {})", service.service_type.name, service.cloud.name),
        addresses: node.private.iter().chain(&node.public).copied().collect(),
        sets: b.sets.into_values().collect(),
        input: b.input,
        output: vec![Rule {
            id: "egress-accept".into(),
            reason: "egress is accepted in standard deployments".into(),
            matches: Match::default(),
            verdict: Verdict::Accept,
        }],
    }
}

fn client_rule_id(l: &Listener, fam: Family) -> String {
    format!("client-{}-{}-{}", l.component, l.route.as_str(), fam.as_str())
}

//! The standard managed service: contract points 1–7 and 9.
//!
//! Base rules (loopback, established, neighbour discovery, the one drop of invalid
//! packets, ICMP errors), echo from management and peers, management from the gateways
//! only, cluster listeners and IPsec between the service's own nodes, one flow per
//! client listener × route from the sources the route admits (ip_filter, ip_filter within
//! the VPC and its peerings, the VPC's private-link CIDRs), and the final rejects.

use crate::{
    service_listeners, AddressClass, Contribution, Flow, Group, GroupMember, Route, ServiceCx, Stage, Traffic,
};
use fleetwall_eval::cidr::intersect;
use fleetwall_ir::{CtState, Direction, Family, IcmpType, Reject, Verdict};
use fleetwall_model::{IpFilterEntry, Protocol, Role, Vpc, IPSEC_PORTS};
use ipnet::IpNet;

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn describe_entry(e: &IpFilterEntry, svc: &str) -> String {
    match &e.description {
        Some(d) => format!("ip_filter entry {} '{d}' of {svc}", e.network),
        None => format!("ip_filter entry {} of {svc}", e.network),
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

pub(crate) fn group(name: String, set: &str, reason: String, members: Vec<GroupMember>) -> Group {
    Group { name, set: set.into(), reason, reason_others: None, inline: false, members }
}

pub(crate) fn member(net: IpNet, reason: String) -> GroupMember {
    GroupMember { net, reason, node: None }
}

fn traffic(protocol: Protocol, ports: Vec<u16>) -> Traffic {
    match protocol {
        Protocol::Tcp => Traffic::Tcp(ports),
        Protocol::Udp => Traffic::Udp(ports),
    }
}

/// Contributes the standard service's groups and flows.
pub fn contribute(cx: &ServiceCx<'_>, c: &mut Contribution<'_>) {
    let q = &cx.qualified;
    let service = cx.service;
    let platform = &cx.fleet.platform;
    let accept = Verdict::Accept;
    let home = cx.home();

    // A BYOC bastion is not a service: the byoc module writes its whole contract.
    if service.role == Role::Bastion {
        return;
    }
    // Groups: the service's nodes (by their home address class), its ip_filter, and in a
    // VPC its ip_filter within the VPC and peerings, and the VPC's private-link CIDRs.
    let class = if home == AddressClass::Private { "private" } else { "public" };
    let nodes = c.group(Group {
        name: format!("{q}/nodes"),
        set: "peers".into(),
        reason: format!("{class} addresses of the nodes of {q}"),
        reason_others: Some(format!("{class} addresses of the other nodes of {q}")),
        inline: false,
        members: service
            .nodes
            .iter()
            .flat_map(|n| {
                let addrs = if home == AddressClass::Private { &n.private } else { &n.public };
                addrs.iter().map(move |a| GroupMember {
                    net: IpNet::from(*a),
                    reason: format!("peer node {} of {q}", n.name),
                    node: Some(n.name.clone()),
                })
            })
            .collect(),
    });
    let ip_filter = c.group(group(
        format!("{q}/ip_filter"),
        "ipf",
        format!("ip_filter of {q}"),
        service.ip_filter.iter().map(|e| member(e.network, describe_entry(e, q))).collect(),
    ));
    // A BYOC workload: its clients are its ip_filter within the customer's networks.
    let byoc = cx.project.byoc.as_ref().filter(|_| service.role == Role::Workload);
    let customer = byoc.map(|b| {
        let members = service
            .ip_filter
            .iter()
            .flat_map(|e| {
                let entry = describe_entry(e, q);
                b.customer_networks.iter().filter_map(move |net| {
                    intersect(&e.network, net).map(|n| member(n, format!("{entry} ∩ customer network {net}")))
                })
            })
            .collect();
        c.group(group(
            format!("{q}/ip_filter-in-customer-networks"),
            "cnet",
            format!("ip_filter of {q} within the customer networks of BYOC project {}", cx.project.name),
            members,
        ))
    });
    let scoped = cx.vpc.map(|v| {
        let scope = vpc_scope(v);
        let members = service
            .ip_filter
            .iter()
            .flat_map(|e| {
                let entry = describe_entry(e, q);
                scope.iter().filter_map(move |(net, why)| {
                    intersect(&e.network, net).map(|n| member(n, format!("{entry} ∩ {why}")))
                })
            })
            .collect();
        let vpc_filter = c.group(group(
            format!("{q}/ip_filter-in-vpc"),
            "vpcf",
            format!("ip_filter of {q} within VPC {} and its peerings", v.name),
            members,
        ));
        let privatelink = c.group(group(
            format!("{q}/privatelink-cidrs"),
            "pl",
            format!("private-link CIDRs of VPC {}", v.name),
            v.privatelink_cidrs
                .iter()
                .map(|n| member(*n, format!("private-link CIDR {n} of VPC {}", v.name)))
                .collect(),
        ));
        (vpc_filter, privatelink)
    });

    base(c);
    // 2. Echo from management and peers (a BYOC workload's management is its bastion subnet).
    let (mgmt, from) = match byoc {
        Some(b) => (crate::byoc::bastion_subnet(cx, c, b), "the BYOC bastion subnet"),
        None => (cx.management, "the management gateways"),
    };
    for fam in FAMILIES {
        let f = fam.as_str();
        c.flow(
            Flow::ingress(format!("echo-mgmt-{f}"), Stage::Icmp, format!("echo requests from {from}"), accept)
                .family(fam)
                .peer(mgmt, false)
                .traffic(Traffic::Icmp(vec![IcmpType::EchoRequest])),
        );
        c.flow(
            Flow::ingress(
                format!("echo-peers-{f}"),
                Stage::Icmp,
                format!("echo requests from the other nodes of {q}"),
                accept,
            )
            .family(fam)
            .peer(nodes, true)
            .traffic(Traffic::Icmp(vec![IcmpType::EchoRequest])),
        );
    }

    // 3. Management, from the gateways only (a BYOC workload: from its bastion subnet);
    // before anything derived from user input.
    for fam in FAMILIES {
        let f = fam.as_str();
        for (id, port, what) in [
            ("ssh", platform.ssh_port, "management SSH"),
            ("platform", platform.platform_port, "platform management port"),
        ] {
            c.flow(
                Flow::ingress(format!("mgmt-{id}-{f}"), Stage::Management, format!("{what} from {from}"), accept)
                    .family(fam)
                    .peer(mgmt, false)
                    .traffic(Traffic::Tcp(vec![port])),
            );
        }
    }

    // 4. Cluster listeners and IPsec, from the peers' own addresses to the node's home addresses.
    let listeners = service_listeners(cx.fleet, cx.project, service);
    for fam in FAMILIES {
        let f = fam.as_str();
        let cluster = |id: String, reason: String, t: Traffic| {
            Flow::ingress(id, Stage::Cluster, reason, accept).family(fam).peer(nodes, true).local(home).traffic(t)
        };
        for l in listeners.iter().filter(|l| l.route == Route::Cluster) {
            c.flow(cluster(
                format!("cluster-{}-{}-{f}", l.component, l.protocol.as_str()),
                format!("cluster listener {} of {q} from its other nodes", l.component),
                traffic(l.protocol, vec![l.port]),
            ));
        }
        if platform.ipsec {
            c.flow(cluster(
                format!("cluster-ipsec-ike-{f}"),
                format!("IPsec IKE and NAT-T between the nodes of {q}"),
                Traffic::Udp(IPSEC_PORTS.to_vec()),
            ));
            c.flow(cluster(
                format!("cluster-ipsec-esp-{f}"),
                format!("IPsec ESP between the nodes of {q}"),
                Traffic::Esp,
            ));
        }
    }

    // 5. Client components, per route, on the route's own addresses only.
    for l in listeners.iter().filter(|l| l.route != Route::Cluster) {
        let (sources, what) = match (l.route, scoped) {
            (Route::Dynamic, _) if customer.is_some() => {
                (customer.expect("checked"), "its ip_filter within the customer networks")
            }
            (Route::Dynamic, Some((vpc_filter, _))) => (vpc_filter, "its ip_filter within the VPC and peerings"),
            (Route::Dynamic | Route::Public, _) => (ip_filter, "its ip_filter"),
            (Route::Privatelink, Some((_, privatelink))) => (privatelink, "the VPC's private-link CIDRs"),
            (Route::Privatelink, None) | (Route::Cluster, _) => continue,
        };
        let web = if l.web { " (web UI)" } else { "" };
        let (id_part, of) = match &l.connection {
            Some(conn) => (format!("-{conn}"), format!(" for private-link connection {conn}")),
            None => (String::new(), String::new()),
        };
        for fam in FAMILIES {
            c.flow(
                Flow::ingress(
                    format!("client-{}-{}{id_part}-{}", l.component, l.route.as_str(), fam.as_str()),
                    Stage::Clients,
                    format!("{} route of component {}{web} of {q}{of}, from {what}", l.route.as_str(), l.component),
                    accept,
                )
                .family(fam)
                .peer(sources, false)
                .local(l.route.class(service.private_home()))
                .traffic(Traffic::Tcp(vec![l.port])),
            );
        }
    }

    rejects(c, Direction::Ingress);
}

/// Contract point 1 (and the ICMP errors of point 2): loopback, established, neighbour
/// discovery, the one drop of invalid packets.
pub(crate) fn base(c: &mut Contribution<'_>) {
    let accept = Verdict::Accept;
    // 1. Loopback, established, invalid (neighbour discovery first: the kernel may see it as invalid).
    c.flow(Flow::ingress("base-loopback", Stage::Base, "loopback traffic", accept).loopback());
    c.flow(
        Flow::ingress(
            "base-established",
            Stage::Base,
            "packets of established connections and related ICMP errors",
            accept,
        )
        .ct(CtState::EstablishedRelated),
    );
    c.flow(
        Flow::ingress("icmp-nd-v6", Stage::Base, "IPv6 neighbour discovery", accept)
            .family(Family::V6)
            .traffic(Traffic::Icmp(crate::ND_TYPES.to_vec())),
    );
    c.flow(
        Flow::ingress("base-invalid", Stage::Base, "conntrack-invalid packets (the only drop)", Verdict::Drop)
            .ct(CtState::Invalid),
    );

    // 2. ICMP errors (path MTU discovery).
    c.flow(
        Flow::ingress(
            "icmp-errors-v4",
            Stage::Base,
            "ICMP errors (unreachable, time exceeded, parameter problem)",
            accept,
        )
        .family(Family::V4)
        .traffic(Traffic::Icmp(crate::ICMP_ERRORS_V4.to_vec())),
    );
    c.flow(
        Flow::ingress(
            "icmp-errors-v6",
            Stage::Base,
            "ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem)",
            accept,
        )
        .family(Family::V6)
        .traffic(Traffic::Icmp(crate::ICMP_ERRORS_V6.to_vec())),
    );
}

/// Contract point 7 in one direction: everything else refused, so peers fail fast.
pub(crate) fn rejects(c: &mut Contribution<'_>, direction: Direction) {
    let reject = |id: &str, reason: &str, t: Traffic, r: Reject| {
        let id = match direction {
            Direction::Ingress => id.to_string(),
            Direction::Egress => format!("egress-{id}"),
        };
        Flow { direction, ..Flow::ingress(id, Stage::Reject, reason, Verdict::Reject(r)) }.traffic(t)
    };
    c.flow(reject("reject-tcp", "not allowed: TCP is reset", Traffic::Tcp(vec![]), Reject::TcpReset));
    c.flow(reject(
        "reject-udp",
        "not allowed: UDP gets port unreachable",
        Traffic::Udp(vec![]),
        Reject::PortUnreachable,
    ));
    c.flow(reject(
        "reject-other",
        "not allowed: other protocols get admin prohibited",
        Traffic::Any,
        Reject::AdminProhibited,
    ));
}

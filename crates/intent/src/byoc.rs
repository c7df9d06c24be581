//! BYOC (S7): bastion and workload subnets in the customer's account.
//!
//! The bastion takes management (`ssh_port`, `platform_port`) and the encrypted tunnel
//! (`bastion_proxy_port`) from the management gateways only, and nothing else; it reaches
//! out to the workloads' management ports and to the project's `egress` networks. A
//! workload (a service node with `byoc: true`) is managed from the bastion subnet only
//! (the standard module writes that, with the bastion subnet as its management source),
//! is reached from its ip_filter within the customer networks, and reaches out only to the
//! workload and bastion subnets, the customer networks and `egress`.

use crate::standard::{base, group, member, rejects};
use crate::{Contribution, Flow, GroupId, ServiceCx, Stage, Traffic};
use fleetwall_ir::{CtState, Direction, Family, IcmpType, Verdict};
use fleetwall_model::{Byoc, Role};
use ipnet::IpNet;

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// The group of a BYOC project's bastion subnet (the workloads' management source).
pub(crate) fn bastion_subnet(cx: &ServiceCx<'_>, c: &mut Contribution<'_>, b: &Byoc) -> GroupId {
    let why = format!("bastion subnet {} of BYOC project {}", b.bastion_subnet, cx.project.name);
    c.group(inline(format!("{}/byoc-bastion-subnet", cx.qualified), "bsub", why.clone(), vec![(b.bastion_subnet, why)]))
}

fn inline(name: String, set: &str, reason: String, nets: Vec<(IpNet, String)>) -> crate::Group {
    crate::Group { inline: true, ..group(name, set, reason, nets.into_iter().map(|(n, r)| member(n, r)).collect()) }
}

/// Contributes a bastion's whole contract, and a workload's egress.
pub fn contribute(cx: &ServiceCx<'_>, c: &mut Contribution<'_>) {
    let Some(b) = &cx.project.byoc else { return };
    match cx.service.role {
        Role::Bastion => bastion(cx, c, b),
        Role::Workload => workload_egress(cx, c, b),
        Role::Service => {}
    }
}

fn bastion(cx: &ServiceCx<'_>, c: &mut Contribution<'_>, b: &Byoc) {
    let p = &cx.fleet.platform;
    let accept = Verdict::Accept;
    base(c);
    for fam in FAMILIES {
        let f = fam.as_str();
        c.flow(
            Flow::ingress(format!("echo-mgmt-{f}"), Stage::Icmp, "echo requests from the management gateways", accept)
                .family(fam)
                .peer(cx.management, false)
                .traffic(Traffic::Icmp(vec![IcmpType::EchoRequest])),
        );
        for (id, port, what) in [
            ("ssh", p.ssh_port, "management SSH to the bastion"),
            ("platform", p.platform_port, "platform management port of the bastion"),
            ("tunnel", p.bastion_proxy_port, "the bastion's encrypted tunnel to the workloads"),
        ] {
            c.flow(
                Flow::ingress(
                    format!("mgmt-{id}-{f}"),
                    Stage::Management,
                    format!("{what}, from the management gateways"),
                    accept,
                )
                .family(fam)
                .peer(cx.management, false)
                .traffic(Traffic::Tcp(vec![port])),
            );
        }
    }
    rejects(c, Direction::Ingress);

    egress_base(c);
    let why = format!("workload subnet {} of BYOC project {}", b.workload_subnet, cx.project.name);
    let workloads = c.group(inline(
        format!("{}/byoc-workload-subnet", cx.qualified),
        "wsub",
        why.clone(),
        vec![(b.workload_subnet, why)],
    ));
    per_family(
        c,
        Flow::egress(
            "egress-workloads-mgmt",
            Stage::Management,
            "the bastion manages the workloads: SSH and platform port in the workload subnet",
            accept,
        )
        .peer(workloads, false)
        .traffic(Traffic::Tcp(vec![p.ssh_port, p.platform_port])),
    );
    egress_listed(cx, c, b);
    rejects(c, Direction::Egress);
}

fn workload_egress(cx: &ServiceCx<'_>, c: &mut Contribution<'_>, b: &Byoc) {
    egress_base(c);
    let project = &cx.project.name;
    let mut nets = vec![
        (b.workload_subnet, format!("workload subnet {} of BYOC project {project}", b.workload_subnet)),
        (b.bastion_subnet, format!("bastion subnet {} of BYOC project {project}", b.bastion_subnet)),
    ];
    nets.extend(b.customer_networks.iter().map(|n| (*n, format!("customer network {n} of BYOC project {project}"))));
    let inside = c.group(inline(
        format!("{}/byoc-network", cx.qualified),
        "bnet",
        format!("the subnets and customer networks of BYOC project {project}"),
        nets,
    ));
    per_family(
        c,
        Flow::egress(
            "egress-byoc-network",
            Stage::Cluster,
            "to the workload and bastion subnets and the customer networks",
            Verdict::Accept,
        )
        .peer(inside, false),
    );
    egress_listed(cx, c, b);
    rejects(c, Direction::Egress);
}

/// The `egress` networks of the project (default everything: management and CDN move).
fn egress_listed(cx: &ServiceCx<'_>, c: &mut Contribution<'_>, b: &Byoc) {
    if b.egress.is_empty() {
        return;
    }
    let project = &cx.project.name;
    let listed = c.group(group(
        format!("{}/byoc-egress", cx.qualified),
        "begr",
        format!("the egress networks of BYOC project {project}"),
        b.egress.iter().map(|n| member(*n, format!("egress network {n} of BYOC project {project}"))).collect(),
    ));
    per_family(
        c,
        Flow::egress("egress-listed", Stage::Clients, "to the project's `egress` networks", Verdict::Accept)
            .peer(listed, false),
    );
}

/// Adds `f` once per family (a flow with addresses needs one), its id ending in the family.
pub(crate) fn per_family(c: &mut Contribution<'_>, f: Flow) {
    for fam in FAMILIES {
        c.flow(Flow { id: format!("{}-{}", f.id, fam.as_str()), ..f.clone() }.family(fam));
    }
}

/// What every node whose egress is restricted still sends: loopback, replies and errors
/// of its own connections, and IPv6 neighbour discovery.
pub(crate) fn egress_base(c: &mut Contribution<'_>) {
    let accept = Verdict::Accept;
    c.flow(Flow::egress("egress-loopback", Stage::Base, "loopback traffic", accept).loopback());
    c.flow(
        Flow::egress(
            "egress-established",
            Stage::Base,
            "replies of established connections and related ICMP errors",
            accept,
        )
        .ct(CtState::EstablishedRelated),
    );
    c.flow(
        Flow::egress("egress-nd-v6", Stage::Base, "IPv6 neighbour discovery", accept)
            .family(Family::V6)
            .traffic(Traffic::Icmp(crate::ND_TYPES.to_vec())),
    );
}

//! ECE (S8, contract point 8): a node of an enhanced-compliance project sends only to its
//! VPC, the VPC's peerings, the project's SOCKS5 proxy, the management gateways and the
//! cloud's metadata DNS and NTP (169.254.169.254); everything else is rejected, so the
//! only way to the internet is through the proxy, which relays to its `allow` list only.
//! (Validation has already refused public access and ip_filter entries outside the VPC.)

use crate::byoc::{egress_base, per_family};
use crate::standard::{group, member, rejects, vpc_scope};
use crate::{Contribution, Flow, Group, ServiceCx, Stage, Traffic};
use fleetwall_ir::{Direction, Family, Verdict};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// The cloud metadata service (DNS, NTP).
pub const METADATA: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));

/// Contributes the restricted egress of an ECE project's services.
pub fn contribute(cx: &ServiceCx<'_>, c: &mut Contribution<'_>) {
    let Some(proxy) = &cx.project.ece else { return };
    let accept = Verdict::Accept;
    let q = &cx.qualified;
    egress_base(c);
    if let Some(v) = cx.vpc {
        let scope = c.group(group(
            format!("{q}/ece-vpc"),
            "ecev",
            format!("VPC {} and its peerings", v.name),
            vpc_scope(v).into_iter().map(|(n, why)| member(n, why)).collect(),
        ));
        per_family(
            c,
            Flow::egress("egress-vpc", Stage::Cluster, format!("to VPC {} and its peerings (ECE)", v.name), accept)
                .peer(scope, false),
        );
    }
    let why = format!("SOCKS5 proxy {}:{} of ECE project {}", proxy.address, proxy.port, cx.project.name);
    let proxy_group = c.group(Group {
        inline: true,
        ..group(format!("{q}/ece-proxy"), "ecep", why.clone(), vec![member(IpNet::from(proxy.address), why.clone())])
    });
    per_family(
        c,
        Flow::egress("egress-socks5-proxy", Stage::Cluster, format!("to the {why}: the only way out"), accept)
            .peer(proxy_group, false)
            .traffic(Traffic::Tcp(vec![proxy.port])),
    );
    per_family(
        c,
        Flow::egress("egress-mgmt", Stage::Management, "to the management gateways (ECE)", accept)
            .peer(cx.management, false),
    );
    let meta = "cloud metadata service 169.254.169.254";
    let metadata = c.group(Group {
        inline: true,
        ..group(format!("{q}/ece-metadata"), "ecem", meta.into(), vec![member(IpNet::from(METADATA), meta.into())])
    });
    for (id, t, what) in [
        ("egress-metadata-dns-udp", Traffic::Udp(vec![53]), "DNS"),
        ("egress-metadata-dns-tcp", Traffic::Tcp(vec![53]), "DNS"),
        ("egress-metadata-ntp", Traffic::Udp(vec![123]), "NTP"),
    ] {
        c.flow(
            Flow::egress(id, Stage::Cloud, format!("{what} of the {meta} (ECE)"), accept)
                .family(Family::V4)
                .peer(metadata, false)
                .traffic(t),
        );
    }
    rejects(c, Direction::Egress);
}

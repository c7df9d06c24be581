//! Azure's platform address (contract point 6): DHCP, DNS and load-balancer health
//! probes come from 168.63.129.16, which no ip_filter names.

use crate::{service_listeners, Contribution, Flow, Group, GroupMember, Route, ServiceCx, Stage, Traffic};
use fleetwall_ir::{Family, Verdict};
use fleetwall_model::Provider;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// Azure's platform address.
pub const AZURE_PLATFORM: IpAddr = IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16));

/// Contributes the Azure flows for services on Azure.
pub fn contribute(cx: &ServiceCx<'_>, c: &mut Contribution<'_>) {
    if cx.service.cloud.provider != Provider::Azure {
        return;
    }
    let platform = c.group(Group {
        name: "azure-platform".into(),
        set: "azure".into(),
        reason: "Azure platform address 168.63.129.16".into(),
        reason_others: None,
        inline: true,
        members: vec![GroupMember {
            net: IpNet::from(AZURE_PLATFORM),
            reason: "Azure platform address 168.63.129.16".into(),
            node: None,
        }],
    });
    let flow = |id: &str, reason: &str, t: Traffic| {
        Flow::ingress(id, Stage::Cloud, reason, Verdict::Accept).family(Family::V4).peer(platform, false).traffic(t)
    };
    c.flow(flow(
        "azure-dhcp-dns-udp",
        "Azure platform address 168.63.129.16: DHCP and DNS",
        Traffic::Udp(vec![53, 67, 68]),
    ));
    c.flow(flow("azure-dns-tcp", "Azure platform address 168.63.129.16: DNS", Traffic::Tcp(vec![53])));
    let mut ports: Vec<u16> = service_listeners(cx.fleet, cx.project, cx.service)
        .iter()
        .filter(|l| l.route != Route::Cluster)
        .map(|l| l.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if !ports.is_empty() {
        c.flow(flow(
            "azure-health-probes",
            "Azure platform address 168.63.129.16: load-balancer health probes",
            Traffic::Tcp(ports),
        ));
    }
}

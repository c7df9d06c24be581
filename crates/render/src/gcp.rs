//! GCP VPC firewall rules from the cloud layer: the Compute API's `firewalls.insert`
//! request bodies, one per flow, family and direction.
//!
//! A rule targets the service's nodes by a network tag (`targetTags`, the group's name:
//! the instances must carry it). GCP keeps IPv4 and IPv6 ranges in separate rules and
//! takes at most [`RANGES_PER_RULE`] ranges in one; a longer list is split over rules.
//! GCP denies every inbound connection and allows every outbound one by default; when the
//! Intent's egress is narrower, a deny-all egress rule at a lower priority closes the rest.
//! GCP cannot name ICMP types: an ICMP rule allows the whole protocol (a note says so;
//! the node firewall keeps the types).

use crate::cloud::{self, CloudError, CloudGroup, CloudRule, Limit, Proto};
use fleetwall_intent::Intent;
use fleetwall_ir::{Direction, Family};
use serde_json::{json, Value};

/// Source (or destination) ranges of one rule.
pub const RANGES_PER_RULE: Limit =
    Limit { what: "source or destination ranges per firewall rule", max: 5000, source: "GCP VPC firewall limit" };
/// The allow rules' priority; the deny-all egress sits below it.
pub const PRIORITY: u32 = 1000;
const DENY_PRIORITY: u32 = 65000;

/// The firewall rules of one service.
fn rules(g: &CloudGroup) -> Vec<Value> {
    let network =
        format!("global/networks/{}", g.vpc.as_deref().map_or("default".to_string(), |v| cloud::object_name(v, 63)));
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let egress: Vec<&CloudRule> = g.rules.iter().filter(|r| r.direction == Direction::Egress).collect();
    let egress_open = cloud::allows_everything(&egress);
    for r in &g.rules {
        if r.direction == Direction::Egress && egress_open {
            continue;
        }
        let nets = r.peer.nets(r.family);
        let parts = nets.chunks(RANGES_PER_RULE.max).count();
        for (i, part) in nets.chunks(RANGES_PER_RULE.max).enumerate() {
            let flow = cloud::flow_name(&r.flow, r.family);
            let suffix = if parts > 1 { format!("-{}", i + 1) } else { String::new() };
            let mut name = cloud::object_name(&format!("{}-{flow}{suffix}", g.name), 63);
            // Cloud rules of one flow and family (a UDP and a TCP one) share a name: number them.
            let mut n = 2;
            while names.contains(&name) {
                name = cloud::object_name(&format!("{}-{flow}{suffix}-{n}", g.name), 63);
                n += 1;
            }
            names.push(name.clone());
            let ranges: Vec<String> = part.iter().map(|n| n.to_string()).collect();
            let mut allowed = json!({ "IPProtocol": ip_protocol(r.proto, r.family) });
            if !r.ports.is_empty() {
                allowed["ports"] = json!(r
                    .ports
                    .iter()
                    .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
                    .collect::<Vec<_>>());
            }
            let mut body = json!({
                "name": name,
                "description": cloud::description(&format!("fleetwall {}: {}", r.flow, r.reason), "._-:/()#,@[]+=&;{}!$*'", 2048),
                "network": network,
                "priority": PRIORITY,
                "direction": match r.direction { Direction::Ingress => "INGRESS", Direction::Egress => "EGRESS" },
                "targetTags": [g.name],
                "allowed": [allowed],
            });
            let key = match r.direction {
                Direction::Ingress => "sourceRanges",
                Direction::Egress => "destinationRanges",
            };
            body[key] = json!(ranges);
            out.push(body);
        }
    }
    if !egress_open {
        for fam in [Family::V4, Family::V6] {
            let tag = if fam == Family::V4 { "v4" } else { "v6" };
            out.push(json!({
                "name": cloud::object_name(&format!("{}-egress-deny-{tag}", g.name), 63),
                "description": format!("fleetwall: every other outbound connection of {} is refused", g.service),
                "network": network,
                "priority": DENY_PRIORITY,
                "direction": "EGRESS",
                "targetTags": [g.name],
                "denied": [{ "IPProtocol": "all" }],
                "destinationRanges": [cloud::everything(fam).to_string()],
            }));
        }
    }
    out
}

fn ip_protocol(p: Proto, family: Family) -> &'static str {
    match (p, family) {
        (Proto::All, _) => "all",
        (Proto::Tcp, _) => "tcp",
        (Proto::Udp, _) => "udp",
        (Proto::Esp, _) => "esp",
        (Proto::Icmp(_), Family::V4) => "icmp",
        // GCP names ICMPv6 by its number.
        (Proto::Icmp(_), Family::V6) => "58",
    }
}

/// The GCP rendering of a whole Intent.
pub struct GcpOutput {
    /// `firewalls.insert` bodies, in order.
    pub firewalls: Vec<Value>,
    /// Where the node firewall is finer (one line each, with the service).
    pub notes: Vec<String>,
}

/// Renders the GCP services (`google-*` clouds) of `intent`. GCP splits what does not fit
/// one rule over several, so nothing here exceeds a limit; the error is for symmetry with
/// the other clouds and future quotas.
pub fn render(intent: &Intent) -> Result<GcpOutput, Vec<CloudError>> {
    let mut firewalls = Vec::new();
    let mut notes = Vec::new();
    for g in cloud::lower(intent, "google-") {
        firewalls.extend(rules(&g));
        notes.extend(g.coarser.iter().map(|n| format!("{}: {n}", g.service)));
    }
    Ok(GcpOutput { firewalls, notes })
}

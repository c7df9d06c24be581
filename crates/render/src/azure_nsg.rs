//! Azure network security groups from the cloud layer, as an ARM template: one
//! `Microsoft.Network/networkSecurityGroups` per service, to attach to its nodes' NICs.
//!
//! Azure's default rules allow the whole virtual network in and out and the internet out,
//! so every group ends in an explicit deny-all inbound (and, when the Intent's egress is
//! narrower than everything, outbound) at the last priority. Azure limits a group to
//! [`RULES_PER_GROUP`] rules and [`PREFIXES_PER_GROUP`] addresses over all its rules;
//! a service beyond either is an error naming it. Azure cannot name ICMP types: an ICMP
//! rule allows the protocol (a note says so; the node firewall keeps the types).

use crate::cloud::{self, CloudError, CloudGroup, CloudRule, Limit, Proto};
use fleetwall_intent::Intent;
use fleetwall_ir::{Direction, Family};
use serde_json::{json, Map, Value};

/// Security rules of one network security group.
pub const RULES_PER_GROUP: Limit =
    Limit { what: "security rules per network security group", max: 1000, source: "Azure limit" };
/// Source and destination addresses and prefixes over all rules of one group.
pub const PREFIXES_PER_GROUP: Limit = Limit {
    what: "source/destination addresses and prefixes per network security group",
    max: 4000,
    source: "Azure limit",
};
/// The first priority the allow rules take.
const FIRST_PRIORITY: u32 = 100;
/// The last priority a user rule may take: the deny-all rules sit there.
const LAST_PRIORITY: u32 = 4096;
/// The template's API version of the resource.
pub const API_VERSION: &str = "2023-09-01";

fn protocol(p: Proto) -> &'static str {
    match p {
        Proto::All => "*",
        Proto::Tcp => "Tcp",
        Proto::Udp => "Udp",
        Proto::Esp => "Esp",
        Proto::Icmp(_) => "Icmp",
    }
}

/// A rule name: letters, digits, `-`, `.`, `_`, at most 80, from the flow's id.
fn rule_name(flow: &str, family: Family, n: usize) -> String {
    cloud::object_name(&format!("{}-{n}", cloud::flow_name(flow, family)), 80)
}

fn group(g: &CloudGroup) -> Result<Value, Vec<CloudError>> {
    let egress: Vec<&CloudRule> = g.rules.iter().filter(|r| r.direction == Direction::Egress).collect();
    let egress_open = cloud::allows_everything(&egress);
    let mut rules = Vec::new();
    let mut prefixes = 0;
    let mut priority = [FIRST_PRIORITY, FIRST_PRIORITY];
    for r in &g.rules {
        if r.direction == Direction::Egress && egress_open {
            continue;
        }
        let slot = usize::from(r.direction == Direction::Egress);
        let nets: Vec<String> = r.peer.nets(r.family).iter().map(|n| n.to_string()).collect();
        prefixes += nets.len();
        let mut p = Map::new();
        p.insert(
            "description".into(),
            json!(cloud::description(&format!("{}: {}", r.flow, r.reason), "._-:/()#,@[]+=&;{}!$*'", 140)),
        );
        p.insert("protocol".into(), json!(protocol(r.proto)));
        p.insert("sourcePortRange".into(), json!("*"));
        let ports: Vec<String> =
            r.ports.iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
        match ports.as_slice() {
            [] => {
                p.insert("destinationPortRange".into(), json!("*"));
            }
            [one] => {
                p.insert("destinationPortRange".into(), json!(one));
            }
            many => {
                p.insert("destinationPortRanges".into(), json!(many));
            }
        }
        let (remote, local) = match r.direction {
            Direction::Ingress => ("sourceAddressPrefix", "destinationAddressPrefix"),
            Direction::Egress => ("destinationAddressPrefix", "sourceAddressPrefix"),
        };
        match nets.as_slice() {
            [one] => {
                p.insert(remote.into(), json!(one));
            }
            many => {
                p.insert(format!("{remote}es"), json!(many));
            }
        }
        p.insert(local.into(), json!("*"));
        p.insert("access".into(), json!("Allow"));
        p.insert("priority".into(), json!(priority[slot]));
        p.insert(
            "direction".into(),
            json!(match r.direction {
                Direction::Ingress => "Inbound",
                Direction::Egress => "Outbound",
            }),
        );
        rules.push(json!({ "name": rule_name(&r.flow, r.family, (priority[slot] - FIRST_PRIORITY + 1) as usize), "properties": p }));
        priority[slot] += 1;
    }
    let deny = |direction: &str, name: &str| {
        json!({
            "name": name,
            "properties": {
                "description": format!("fleetwall: everything else is refused (Azure's defaults would allow the virtual network)"),
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": "*",
                "destinationAddressPrefix": "*",
                "access": "Deny",
                "priority": LAST_PRIORITY,
                "direction": direction,
            },
        })
    };
    rules.push(deny("Inbound", "deny-all-inbound"));
    if !egress_open {
        rules.push(deny("Outbound", "deny-all-outbound"));
    }
    let mut errors = Vec::new();
    let most = priority.iter().map(|p| (p - FIRST_PRIORITY) as usize).max().unwrap_or(0);
    let room = (LAST_PRIORITY - FIRST_PRIORITY) as usize;
    if rules.len() > RULES_PER_GROUP.max || most > room {
        errors.push(CloudError {
            backend: "azure",
            object: format!("{} security rules", g.service),
            needed: rules.len(),
            limit: if most > room {
                Limit { what: "rules of one direction (priorities 100 to 4095)", max: room, source: "Azure limit" }
            } else {
                RULES_PER_GROUP
            },
            because: "one rule per flow, family and protocol, and the deny-all rules".into(),
        });
    }
    if prefixes > PREFIXES_PER_GROUP.max {
        errors.push(CloudError {
            backend: "azure",
            object: format!("{} address prefixes", g.service),
            needed: prefixes,
            limit: PREFIXES_PER_GROUP,
            because: "every network of every rule counts (a big ip_filter on several ports counts once per port rule)"
                .into(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(json!({
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": API_VERSION,
        "name": g.name,
        "location": "[resourceGroup().location]",
        "tags": { "fleetwall-service": g.service, "fleetwall-nodes": g.nodes.join(" ") },
        "properties": { "securityRules": rules },
    }))
}

/// The Azure rendering of a whole Intent.
pub struct AzureOutput {
    /// The ARM template.
    pub template: Value,
    /// How many network security groups.
    pub groups: usize,
    /// Where the node firewall is finer (one line each, with the service).
    pub notes: Vec<String>,
}

/// Renders the Azure services (`azure-*` clouds) of `intent`, or every limit they exceed.
pub fn render(intent: &Intent) -> Result<AzureOutput, Vec<CloudError>> {
    let mut resources = Vec::new();
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for g in cloud::lower(intent, "azure-") {
        match group(&g) {
            Ok(v) => resources.push(v),
            Err(e) => errors.extend(e),
        }
        notes.extend(g.coarser.iter().map(|n| format!("{}: {n}", g.service)));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AzureOutput {
        groups: resources.len(),
        template: json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": resources,
        }),
        notes,
    })
}

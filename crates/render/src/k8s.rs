//! Kubernetes NetworkPolicy for deployments (zones, subsystems, clusters) that name a
//! `kubernetes.namespace`: a group target, rendered from the Intent of each cluster.
//!
//! One policy per cluster (a subsystem's policy set is its clusters' policies), selecting
//! its pods by the labels the deployment catalog names for the subsystem plus
//! `fleetwall.io/cluster`, with ingress and egress rules for exactly the cluster's flows:
//! a peer group of servers becomes pod selectors of their clusters, a zone (or
//! "anywhere") an `ipBlock` with the other clusters of the subsystem as `except`. Every
//! pod also gets DNS and NTP egress, which a pod cannot live without; where the node
//! firewall does not allow that, or anything else NetworkPolicy cannot say (it drops what
//! it does not allow, and cannot match ICMP types), [`Rendered::warnings`] says so.
//!
//! Output is YAML built by hand with every string double-quoted (JSON escaping is valid
//! YAML), in Intent order: byte-stable.

use crate::caps::{check_intent, Capabilities, Unsupported};
use fleetwall_intent::{Direction, Flow, Intent, Peer, ServiceIntent, Stage, Traffic};
use fleetwall_ir::Family;
use fleetwall_model::deployment::Deployment;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// What NetworkPolicy expresses: allows only, in both directions, with no order; what it
/// does not allow is dropped (never rejected); no ICMP types, no loopback, no conntrack
/// state (replies of an allowed connection are allowed by its nature).
pub const CAPABILITIES: Capabilities = Capabilities {
    rejects: &[],
    drop: false,
    conntrack: false,
    icmp_types: false,
    loopback: false,
    egress: true,
    address_sets: false,
    destination_match: false,
    ordered: false,
    max_rules: None,
    max_set_entries: None,
};

/// The label every policy adds to its pod selector: the cluster of the pod.
pub const CLUSTER_LABEL: &str = "fleetwall.io/cluster";

/// The DNS and NTP egress every pod gets (port, protocol).
pub const POD_ESSENTIALS: [(u16, &str); 3] = [(53, "UDP"), (53, "TCP"), (123, "UDP")];

/// The manifests and what they cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One YAML stream per deployment with a namespace: (deployment, manifests).
    pub manifests: Vec<(String, String)>,
    /// Where the node firewall is stricter than the policies.
    pub warnings: Vec<String>,
    /// What NetworkPolicy cannot express (ICMP types, rejects), per flow.
    pub unsupported: Vec<Unsupported>,
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One rule of a policy, before writing: peers and ports, and why.
#[derive(PartialEq, Eq)]
struct PolicyRule {
    peers: Option<Vec<String>>,
    ports: Vec<(String, Option<u16>)>,
    why: String,
}

fn ports_of(t: &Traffic) -> Option<Vec<(String, Option<u16>)>> {
    match t {
        Traffic::Any => Some(Vec::new()),
        Traffic::Tcp(p) => Some(p.iter().map(|p| ("TCP".to_string(), Some(*p))).collect()),
        Traffic::Udp(p) => Some(p.iter().map(|p| ("UDP".to_string(), Some(*p))).collect()),
        Traffic::Esp | Traffic::Icmp(_) => None,
    }
}

struct Cx<'a> {
    d: &'a Deployment,
    intent: &'a Intent,
}

impl Cx<'_> {
    fn selector(&self, cluster: &str, indent: &str) -> String {
        let c = self.d.clusters.iter().find(|c| c.name == cluster).expect("a cluster of the deployment");
        let mut labels: BTreeMap<String, String> =
            self.d.kind.subsystem(&c.subsystem).map(|s| s.labels.clone()).unwrap_or_default();
        labels.insert(CLUSTER_LABEL.to_string(), c.name.clone());
        let mut out = format!("{indent}matchLabels:\n");
        for (k, v) in labels {
            let _ = writeln!(out, "{indent}  {}: {}", q(&k), q(&v));
        }
        out
    }

    fn cluster_of(&self, server: &str) -> Option<&str> {
        self.d.servers().find(|(_, s)| s.name == server).map(|(c, _)| c.name.as_str())
    }

    /// The peers of a flow of cluster `home`, as YAML list items (`None`: anyone; empty:
    /// nobody of the flow's family).
    fn peers(&self, f: &Flow, home: &str) -> Option<Vec<String>> {
        let Peer::Group { group, .. } = f.peer else { return None };
        let g = self.intent.group(group);
        let fam = f.family.unwrap_or(Family::V4);
        if g.of_family(fam).next().is_none() {
            return Some(Vec::new());
        }
        let mut clusters: Vec<&str> =
            g.members.iter().filter_map(|m| m.node.as_deref()).filter_map(|n| self.cluster_of(n)).collect();
        clusters.dedup();
        if !clusters.is_empty() {
            let mut items: Vec<String> =
                clusters.iter().map(|c| format!("podSelector:\n{}", self.selector(c, "    "))).collect();
            items.dedup();
            return Some(items);
        }
        // A zone, or anywhere, without the other clusters of the home's subsystem.
        let zone = g.name.rsplit_once("/zones/").map(|(_, z)| z)?;
        let nets: Vec<IpNet> = match zone {
            "*" => vec![if fam == Family::V4 { "0.0.0.0/0" } else { "::/0" }.parse().expect("literal")],
            z => self.d.zone(z)?.networks.iter().filter(|n| Family::of(n) == fam).copied().collect(),
        };
        let subsystem = self.d.clusters.iter().find(|c| c.name == home).map(|c| c.subsystem.as_str());
        let strangers: Vec<IpNet> = self
            .d
            .clusters
            .iter()
            .filter(|c| Some(c.subsystem.as_str()) == subsystem && c.name != home)
            .flat_map(|c| c.servers.iter().flat_map(|s| s.addresses.iter().map(|a| IpNet::from(*a))))
            .collect();
        Some(
            nets.iter()
                .map(|n| {
                    let except: Vec<String> = strangers
                        .iter()
                        .filter(|s| n.contains(&s.addr()) && *s != n)
                        .map(|s| q(&s.to_string()))
                        .collect();
                    let mut item = format!("ipBlock:\n    cidr: {}\n", q(&n.to_string()));
                    if !except.is_empty() {
                        let _ = writeln!(item, "    except: [{}]", except.join(", "));
                    }
                    item
                })
                .collect(),
        )
    }

    fn rules(&self, s: &ServiceIntent, home: &str, dir: Direction) -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = Vec::new();
        for f in s.flows.iter().filter(|f| f.direction == dir && f.stage == Stage::Clients) {
            let Some(ports) = ports_of(&f.traffic) else { continue };
            let peers = self.peers(f, home);
            // A group without a member of the flow's family opens nothing (as on a node);
            // an empty `from`/`to` would mean everyone.
            if peers.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            let r = PolicyRule { peers, ports, why: f.reason.clone() };
            // The v4 and v6 flows of a selector peer are one rule.
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

fn write_rules(out: &mut String, key: &str, peer_key: &str, rules: &[PolicyRule]) {
    if rules.is_empty() {
        let _ = writeln!(out, "  {key}: []");
        return;
    }
    let _ = writeln!(out, "  {key}:");
    for r in rules {
        let _ = writeln!(out, "    # {}", crate::one_line(&r.why));
        let mut first = true;
        let mut lead = || {
            let l = if first { "    - " } else { "      " };
            first = false;
            l
        };
        if let Some(peers) = &r.peers {
            let _ = writeln!(out, "{}{peer_key}:", lead());
            for p in peers {
                for (i, line) in p.lines().enumerate() {
                    let mark = if i == 0 { "- " } else { "  " };
                    let _ = writeln!(out, "        {mark}{line}");
                }
            }
        }
        if !r.ports.is_empty() {
            let _ = writeln!(out, "{}ports:", lead());
            for (proto, port) in &r.ports {
                match port {
                    Some(p) => {
                        let _ = writeln!(out, "        - {{ protocol: {proto}, port: {p} }}");
                    }
                    None => {
                        let _ = writeln!(out, "        - {{ protocol: {proto} }}");
                    }
                }
            }
        }
        if r.peers.is_none() && r.ports.is_empty() {
            let _ = writeln!(out, "{}{{}}", lead());
        }
    }
}

/// Whether the cluster's node firewall lets its servers send `port/proto` anywhere.
fn node_allows_anywhere(s: &ServiceIntent, port: u16, proto: &str) -> bool {
    s.flows.iter().any(|f| {
        f.direction == Direction::Egress
            && f.stage == Stage::Clients
            && f.peer == Peer::Any
            && match (&f.traffic, proto) {
                (Traffic::Tcp(p), "TCP") | (Traffic::Udp(p), "UDP") => p.contains(&port),
                (Traffic::Any, _) => true,
                _ => false,
            }
    })
}

/// The NetworkPolicy of every deployment that names a namespace.
pub fn render(deployments: &[Arc<Deployment>], intent: &Intent) -> Rendered {
    let mut manifests = Vec::new();
    let mut warnings = Vec::new();
    for d in deployments {
        let Some(ns) = &d.namespace else { continue };
        let cx = Cx { d, intent };
        let mut out = format!(
            "# fleetwall NetworkPolicy of deployment {} ({}) in namespace {ns}: one policy per cluster.\n\
             # NetworkPolicy drops what it does not allow (the node firewall rejects it), and cannot match ICMP types.\n",
            d.name, d.kind.name
        );
        for c in &d.clusters {
            let qualified = format!("{}/{}", d.name, c.name);
            let Some(s) = intent.services.iter().find(|s| s.qualified == qualified) else { continue };
            let _ = write!(
                out,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    \"app.kubernetes.io/managed-by\": \"fleetwall\"\nspec:\n  podSelector:\n{}  policyTypes: [\"Ingress\", \"Egress\"]\n",
                q(&format!("{}-{}", d.name, c.name)),
                q(ns),
                cx.selector(&c.name, "    ")
            );
            write_rules(&mut out, "ingress", "from", &cx.rules(s, &c.name, Direction::Ingress));
            let mut egress = cx.rules(s, &c.name, Direction::Egress);
            egress.push(PolicyRule {
                peers: None,
                ports: POD_ESSENTIALS.iter().map(|(p, proto)| (proto.to_string(), Some(*p))).collect(),
                why: "DNS and NTP: every pod resolves names and keeps time".into(),
            });
            write_rules(&mut out, "egress", "to", &egress);
            let stricter: Vec<String> = POD_ESSENTIALS
                .iter()
                .filter(|(port, proto)| !node_allows_anywhere(s, *port, proto))
                .map(|(port, proto)| format!("{port}/{}", proto.to_lowercase()))
                .collect();
            if !stricter.is_empty() {
                warnings.push(format!(
                    "{qualified}: the node firewall is stricter: it rejects the DNS/NTP egress ({}) that the NetworkPolicy allows every pod",
                    stricter.join(", ")
                ));
            }
        }
        manifests.push((d.name.clone(), out));
    }
    // What the policies cannot say, from the flows (the rejects and connection tracking
    // are NetworkPolicy's nature; loopback it never filters).
    let names: Vec<String> = deployments.iter().filter(|d| d.namespace.is_some()).map(|d| d.name.clone()).collect();
    let relevant = Intent {
        groups: intent.groups.clone(),
        services: intent
            .services
            .iter()
            .filter(|s| names.iter().any(|n| s.qualified.split('/').next() == Some(n.as_str())))
            .map(|s| ServiceIntent { flows: s.flows.iter().filter(|f| !f.loopback).cloned().collect(), ..s.clone() })
            .collect(),
    };
    let mut unsupported = check_intent("k8s", &CAPABILITIES, &relevant);
    for s in &relevant.services {
        if let Some(f) = s.flows.iter().find(|f| f.direction == Direction::Ingress && f.stage == Stage::Reject) {
            unsupported.push(Unsupported {
                backend: "k8s",
                feature: "a reject (NetworkPolicy drops: clients time out instead of failing fast)".into(),
                at: format!("{} flow {}", s.qualified, f.id),
                because: f.reason.clone(),
            });
        }
    }
    Rendered { manifests, warnings, unsupported }
}

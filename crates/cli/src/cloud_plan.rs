//! `plan --format aws|gcp|azure`: the cloud layer of a fleet's services on that cloud,
//! rendered from the Intent; every limit exceeded is an error and nothing is written.

use crate::commands::{load_valid_for, Outcome};
use crate::FleetArgs;
use anyhow::{Context, Result};
use fleetwall_render::{aws, azure_nsg, cloud, gcp};
use serde_json::{json, Value};
use std::path::Path;

/// A cloud the cloud layer renders for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
}

impl Cloud {
    fn backend(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
        }
    }

    /// The fleet's cloud-name prefix of the provider.
    fn prefix(self) -> &'static str {
        match self {
            Cloud::Aws => "aws-",
            Cloud::Gcp => "google-",
            Cloud::Azure => "azure-",
        }
    }

    /// The cloud-layer backend of a provider, if it has one.
    fn of(provider: fleetwall_model::Provider) -> Option<Cloud> {
        match provider {
            fleetwall_model::Provider::Aws => Some(Cloud::Aws),
            fleetwall_model::Provider::Google => Some(Cloud::Gcp),
            fleetwall_model::Provider::Azure => Some(Cloud::Azure),
            _ => None,
        }
    }
}

/// Refuses `--node` for a format that is not per node: `what` says what it is per.
fn without_node(node: Option<&str>, format: &str, what: &str) -> Option<Outcome> {
    node.map(|_| {
        eprintln!("fleetwall: --node does not apply to --format {format}: {what} (leave --node out)");
        Outcome::Invalid
    })
}

struct Rendered {
    /// What stdout gets without --out.
    stdout: Value,
    /// The files --out writes.
    files: Vec<(&'static str, Value)>,
    summary: String,
    notes: Vec<String>,
}

pub fn plan(args: &FleetArgs, node: Option<&str>, target: Cloud, out: Option<&Path>) -> Result<Outcome> {
    let backend = target.backend();
    if let Some(o) = without_node(node, backend, "the cloud layer is one group per service") {
        return Ok(o);
    }
    let (_, fleet) = match load_valid_for(args, None)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let intent = fleetwall_intent::build(&fleet);
    let here = intent.services.iter().filter(|s| s.cloud.starts_with(target.prefix())).count();
    if here == 0 {
        let clouds: std::collections::BTreeSet<&str> = intent.services.iter().map(|s| s.cloud.as_str()).collect();
        eprintln!(
            "fleetwall: no service of this fleet runs on {backend} (clouds `{}*`); its services are on: {}",
            target.prefix(),
            clouds.into_iter().collect::<Vec<_>>().join(", ")
        );
        return Ok(Outcome::Invalid);
    }
    // What the cloud cannot express at all refuses the fleet; what it expresses more
    // coarsely than the node (ICMP types) is a note: the node firewall behind it is finer.
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    let caps = cloud::capabilities(backend);
    for u in fleetwall_render::check_intent(backend, &caps, &intent) {
        let on_here = intent
            .services
            .iter()
            .any(|s| s.cloud.starts_with(target.prefix()) && u.at.starts_with(&format!("{} ", s.qualified)));
        if !on_here {
            continue;
        }
        if u.feature == "ICMP types" {
            continue; // the backend notes it once per service
        }
        refused.push(u.to_string());
    }
    let rendered = match render(target, &intent) {
        Ok(r) if refused.is_empty() => r,
        result => {
            for r in &refused {
                eprintln!("error[unsupported]: {r}");
            }
            if let Err(errors) = result {
                for e in errors {
                    eprintln!("error[limit]: {e}");
                }
            }
            eprintln!("fleetwall: nothing rendered: the {backend} cloud layer cannot hold this fleet as it is");
            return Ok(Outcome::Invalid);
        }
    };
    notes.extend(rendered.notes);
    for s in cloud::elsewhere(&intent, target.prefix()) {
        notes.push(format!("{}: not on {backend} ({}), not rendered here", s.qualified, s.cloud));
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, v) in &rendered.files {
                let path = dir.join(name);
                std::fs::write(&path, pretty(v)).with_context(|| format!("cannot write {}", path.display()))?;
            }
            let names: Vec<&str> = rendered.files.iter().map(|(n, _)| *n).collect();
            eprintln!("{}; wrote {} to {}", rendered.summary, names.join(", "), dir.display());
        }
        None => {
            print!("{}", pretty(&rendered.stdout));
            eprintln!("{}", rendered.summary);
        }
    }
    Ok(Outcome::Ok)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON serializes");
    s.push('\n');
    s
}

fn render(target: Cloud, intent: &fleetwall_intent::Intent) -> Result<Rendered, Vec<cloud::CloudError>> {
    let services = |p: &str| intent.services.iter().filter(|s| s.cloud.starts_with(p)).count();
    Ok(match target {
        Cloud::Aws => {
            let o = aws::render(intent)?;
            Rendered {
                stdout: json!({ "ec2_requests": o.requests, "cloudformation": o.template }),
                files: vec![("aws-ec2-requests.json", o.requests), ("aws-cloudformation.json", o.template)],
                summary: format!(
                    "aws: {} security group(s) and {} managed prefix list(s) for {} service(s)",
                    o.groups,
                    o.prefix_lists,
                    services("aws-")
                ),
                notes: o.notes,
            }
        }
        Cloud::Gcp => {
            let o = gcp::render(intent)?;
            let n = o.firewalls.len();
            let v = json!({ "firewalls": o.firewalls });
            Rendered {
                stdout: v.clone(),
                files: vec![("gcp-firewalls.json", v)],
                summary: format!("gcp: {n} VPC firewall rule(s) for {} service(s)", services("google-")),
                notes: o.notes,
            }
        }
        Cloud::Azure => {
            let o = azure_nsg::render(intent)?;
            Rendered {
                stdout: o.template.clone(),
                files: vec![("azure-nsg.json", o.template)],
                summary: format!("azure: {} network security group(s) for {} service(s)", o.groups, services("azure-")),
                notes: o.notes,
            }
        }
    })
}

/// `plan --format dante`: every ECE project's proxy policy as a `danted.conf`.
pub fn dante(args: &FleetArgs, node: Option<&str>, out: Option<&Path>) -> Result<Outcome> {
    if let Some(o) = without_node(node, "dante", "the proxy is one per ECE project") {
        return Ok(o);
    }
    let (_, fleet) = match load_valid_for(args, None)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let confs: Vec<(&str, String)> = fleet
        .projects
        .iter()
        .filter_map(|p| fleetwall_render::dante::danted_conf(p).map(|c| (p.name.as_str(), c)))
        .collect();
    if confs.is_empty() {
        eprintln!(
            "fleetwall: no ECE project in this fleet (`compliance: ece` with a `socks5_proxy`): no proxy to render"
        );
        return Ok(Outcome::Invalid);
    }
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (p, conf) in &confs {
                let path = dir.join(format!("{p}-danted.conf"));
                std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
            }
            eprintln!("wrote {} danted.conf file(s) to {}", confs.len(), dir.display());
        }
        None => {
            let all: Vec<&str> = confs.iter().map(|(_, c)| c.as_str()).collect();
            print!("{}", all.join("\n"));
        }
    }
    Ok(Outcome::Ok)
}

/// `byoc rules FLEET PROJECT`: the cloud layer of one BYOC project as a table.
pub fn byoc_rules(args: &FleetArgs, project: &str, format: crate::TableFormat) -> Result<Outcome> {
    let (_, fleet) = match load_valid_for(args, None)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let Some(p) = fleet.projects.iter().find(|p| p.name == project) else {
        let byoc: Vec<&str> = fleet.projects.iter().filter(|p| p.byoc.is_some()).map(|p| p.name.as_str()).collect();
        eprintln!(
            "fleetwall: no project `{project}` in the fleet (BYOC projects: {})",
            if byoc.is_empty() { "none".to_string() } else { byoc.join(", ") }
        );
        return Ok(Outcome::Invalid);
    };
    let Some(b) = &p.byoc else {
        eprintln!(
            "fleetwall: project {project} is not BYOC (it has no `byoc:`): its cloud layer is the platform's own"
        );
        return Ok(Outcome::Invalid);
    };
    let intent = fleetwall_intent::build_services(&fleet, |proj, _| proj.name == project);
    let Some(target) = Cloud::of(b.cloud.provider) else {
        eprintln!(
            "fleetwall: no cloud-layer backend for {} (BYOC in aws-, google- or azure- clouds)",
            b.cloud.provider.as_str()
        );
        return Ok(Outcome::Invalid);
    };
    let groups = cloud::lower(&intent, target.prefix());
    let mut rows = Vec::new();
    for g in &groups {
        let subnet = if g.service.ends_with(&format!("/{}", fleetwall_model::BASTION_SERVICE)) {
            format!("bastion subnet {}", b.bastion_subnet)
        } else {
            format!("workload subnet {}", b.workload_subnet)
        };
        for r in &g.rules {
            let proto = match r.proto {
                cloud::Proto::All => "all".to_string(),
                cloud::Proto::Tcp => "tcp".into(),
                cloud::Proto::Udp => "udp".into(),
                cloud::Proto::Esp => "esp".into(),
                cloud::Proto::Icmp(Some(t)) => format!("icmp type {t}"),
                cloud::Proto::Icmp(None) => "icmp".into(),
            };
            let ports = if r.ports.is_empty() {
                "all".to_string()
            } else {
                r.ports
                    .iter()
                    .map(|(a, z)| if a == z { a.to_string() } else { format!("{a}-{z}") })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let peer = match &r.peer {
                cloud::CloudPeer::OwnNodes { nets } => {
                    format!("the group itself ({})", nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","))
                }
                other => other.nets(r.family).iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            };
            let dir = match r.direction {
                fleetwall_ir::Direction::Ingress => "inbound",
                fleetwall_ir::Direction::Egress => "outbound",
            };
            rows.push([g.name.clone(), subnet.clone(), dir.into(), proto, ports, peer, r.reason.clone()]);
        }
    }
    match format {
        crate::TableFormat::Json => {
            let keys = ["group", "applies_to", "direction", "protocol", "ports", "peer", "reason"];
            let v: Vec<Value> = rows
                .iter()
                .map(|r| Value::Object(keys.iter().zip(r).map(|(k, c)| (k.to_string(), json!(c))).collect()))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "project": project, "cloud": b.cloud.name, "rules": v }))?
            );
        }
        crate::TableFormat::Table => {
            let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.to_vec()).collect();
            print!(
                "{}",
                crate::table::render(
                    &["GROUP", "APPLIES TO", "DIRECTION", "PROTOCOL", "PORTS", "PEER", "REASON"],
                    &rows
                )
            );
            eprintln!(
                "{} rule(s) in {} group(s) for {} in {}; everything else is denied; `plan --format {}` gives them as API bodies",
                rows.len(),
                groups.len(),
                project,
                b.cloud.name,
                target.backend()
            );
        }
    }
    Ok(Outcome::Ok)
}

/// `plan --format sdn`: the cloud layer of every service (whatever its cloud) as the
/// nftables ruleset of a router in front of the nodes.
pub fn sdn(args: &FleetArgs, node: Option<&str>, out: Option<&Path>) -> Result<Outcome> {
    if let Some(o) = without_node(node, "sdn", "the router holds every service's group") {
        return Ok(o);
    }
    let (_, fleet) = match load_valid_for(args, None)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let text = fleetwall_render::sdn::render(&sdn_groups(&fleet));
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("sdn.nft");
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(Outcome::Ok)
}

/// Every service's cloud-layer group, with the ICMP types the SDN (nftables) can name.
pub fn sdn_groups(fleet: &fleetwall_model::Fleet) -> Vec<cloud::CloudGroup> {
    cloud::lower(&fleetwall_intent::build(fleet), "")
}

//! `deployments:` → validated `Deployment`s, checked against the deployment catalog.
//!
//! A child of `validate` so it shares the validator's located errors, its address and
//! CIDR checks and its fleet-wide indexes: a server name or address is unique among the
//! nodes of services and the servers of deployments alike. Servers must sit inside their
//! cluster's zone, zones (but the one standing for the internet) may not overlap, and
//! every name refers to something the catalog kind has, with a "did you mean".

use super::Validator;
use crate::deployment::*;
use crate::diag::DiagCode;
use crate::raw::Spanned;
use crate::yaml::Span;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A Kubernetes namespace name (an RFC 1123 label).
fn is_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Validator<'_> {
    pub(super) fn deployments(&mut self, raw: &[(Spanned<String>, RawDeployment)]) -> Vec<Arc<Deployment>> {
        let mut out: Vec<Arc<Deployment>> =
            raw.iter().filter_map(|(n, d)| self.zoned_deployment(n, d)).map(Arc::new).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn zoned_deployment(&mut self, name: &Spanned<String>, raw: &RawDeployment) -> Option<Deployment> {
        self.name(name, "deployment");
        let what = format!("deployment {}", name.value);
        let kind = match &raw.kind {
            None => {
                self.err(DiagCode::Missing, raw.span, format!("{what}: no `kind`"))
                    .hint("name a deployment catalog entry: `kind: api_connect`");
                return None;
            }
            Some(k) => match self.catalog.deployments.kinds.get(&k.value) {
                Some(kind) => kind.clone(),
                None => {
                    let names = self.catalog.deployments.kinds.keys().map(String::as_str);
                    let hint = suggest(&k.value, names, "kinds");
                    self.err(DiagCode::UnknownDeploymentKind, k.span, "unknown deployment kind")
                        .value(k.value.clone())
                        .hint(hint);
                    return None;
                }
            },
        };
        let zones = self.zones(&what, raw, &kind);
        let options = self.options(raw, &kind);
        let mut clusters: Vec<Cluster> =
            raw.clusters.iter().filter_map(|(n, c)| self.cluster(n, c, &kind, &zones)).collect();
        if raw.clusters.is_empty() {
            self.err(DiagCode::EmptyCluster, raw.span, format!("{what}: no `clusters`"))
                .hint("a deployment has at least one cluster: `clusters: { gw-a: { subsystem: gateway, zone: gateway, servers: { gw-a-1: 10.2.0.11 } } }`");
        }
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let namespace = raw.kubernetes.as_ref().and_then(|k| match &k.namespace {
            None => {
                self.err(DiagCode::Missing, k.span, "kubernetes: no `namespace`")
                    .hint("name the namespace the NetworkPolicy goes to: `kubernetes: { namespace: apic }`");
                None
            }
            Some(n) if !is_namespace(&n.value) => {
                self.err(DiagCode::Type, n.span, "kubernetes.namespace: not a Kubernetes namespace name")
                    .value(n.value.clone())
                    .hint("lower-case letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters");
                None
            }
            Some(n) => Some(n.value.clone()),
        });
        let zones = kind
            .zones
            .iter()
            .filter_map(|z| zones.get(&z.name).map(|(nets, _)| Zone { name: z.name.clone(), networks: nets.clone() }))
            .collect();
        Some(Deployment { name: name.value.clone(), kind, zones, clusters, options, namespace })
    }

    /// The deployment's zones: name → (networks, where written).
    fn zones(
        &mut self,
        what: &str,
        raw: &RawDeployment,
        kind: &DeploymentKind,
    ) -> BTreeMap<String, (Vec<IpNet>, Span)> {
        let mut zones: BTreeMap<String, (Vec<IpNet>, Span)> = BTreeMap::new();
        // Every network of a zone that may not overlap, with its zone and place.
        let mut seen: Vec<(IpNet, String, Span)> = Vec::new();
        for (zname, nets) in &raw.zones {
            let Some(def) = kind.zone(&zname.value) else {
                let hint = suggest(&zname.value, kind.zones.iter().map(|z| z.name.as_str()), "zones");
                self.err(DiagCode::UnknownZone, zname.span, format!("{} has no zone `{}`", kind.name, zname.value))
                    .value(zname.value.clone())
                    .hint(hint);
                continue;
            };
            if nets.is_empty() {
                self.err(DiagCode::Missing, zname.span, format!("zone {} has no networks", zname.value))
                    .hint("list the zone's networks: `protected: [10.1.0.0/16]`");
            }
            let mut parsed = Vec::new();
            for n in nets {
                let Some(net) = self.cidr(n, &format!("zone {}", zname.value)) else { continue };
                if !def.outside {
                    if let Some((other, oz, ospan)) = seen.iter().find(|(o, _, _)| overlaps(o, &net)) {
                        let place = self.place(*ospan);
                        let (other, oz) = (*other, oz.clone());
                        self.err(
                            DiagCode::ZoneOverlap,
                            n.span,
                            format!("zone {} overlaps zone {oz} ({other})", zname.value),
                        )
                        .value(n.value.clone())
                        .hint(format!(
                            "a server's zone must be unambiguous; {other} of zone {oz} is written at {place}"
                        ));
                    }
                    seen.push((net, zname.value.clone(), n.span));
                }
                parsed.push(net);
            }
            zones.insert(zname.value.clone(), (parsed, zname.span));
        }
        for z in kind.zones.iter().filter(|z| z.required && !zones.contains_key(&z.name)) {
            self.err(DiagCode::Missing, raw.span, format!("{what}: zone `{}` ({}) has no networks", z.name, z.title))
                .hint(format!("{} deployments declare the zones {}", kind.name, required_zones(kind)));
        }
        zones
    }

    fn options(&mut self, raw: &RawDeployment, kind: &DeploymentKind) -> BTreeMap<String, OptionValue> {
        let mut out: BTreeMap<String, OptionValue> =
            kind.options.iter().map(|o| (o.name.clone(), o.default.clone())).collect();
        for (oname, v) in &raw.options {
            let Some(def) = kind.option(&oname.value) else {
                let hint = suggest(&oname.value, kind.options.iter().map(|o| o.name.as_str()), "options");
                self.err(DiagCode::UnknownOption, oname.span, format!("{} has no option `{}`", kind.name, oname.value))
                    .value(oname.value.clone())
                    .hint(hint);
                continue;
            };
            let port = |v: &mut Self, p: i64, span: Span| -> Option<u16> {
                match u16::try_from(p) {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        v.err(DiagCode::PortRange, span, format!("options.{}: not a TCP/UDP port", oname.value))
                            .value(p.to_string())
                            .hint("ports are 1–65535");
                        None
                    }
                }
            };
            let value = match (&def.default, &v.value) {
                (OptionValue::Port(_), RawOption::Int(p)) => port(self, *p, v.span).map(OptionValue::Port),
                (OptionValue::Ports(_), RawOption::Ints(list)) => {
                    let ports: Vec<Option<u16>> = list.iter().map(|p| port(self, p.value, p.span)).collect();
                    ports.into_iter().collect::<Option<Vec<u16>>>().map(OptionValue::Ports)
                }
                (OptionValue::Ports(_), RawOption::Int(p)) => {
                    port(self, *p, v.span).map(|p| OptionValue::Ports(vec![p]))
                }
                (OptionValue::Protocol(_), RawOption::Text(t)) => match t.as_str() {
                    "tcp" => Some(OptionValue::Protocol(FlowProtocol::Tcp)),
                    "udp" => Some(OptionValue::Protocol(FlowProtocol::Udp)),
                    "tcp+udp" => Some(OptionValue::Protocol(FlowProtocol::TcpUdp)),
                    // The offload plugins speak these over TCP.
                    "http" | "https" | "kafka" => Some(OptionValue::Protocol(FlowProtocol::Tcp)),
                    _ => {
                        self.err(DiagCode::Type, v.span, format!("options.{}: not a protocol", oname.value))
                            .value(t.clone())
                            .hint("write tcp, udp or tcp+udp (http, https and kafka are tcp)");
                        None
                    }
                },
                (d, _) => {
                    let expected = match d {
                        OptionValue::Port(_) => "a port such as 3000",
                        OptionValue::Ports(_) => "a list of ports such as [5000, 5001]",
                        OptionValue::Protocol(_) => "tcp, udp or tcp+udp",
                    };
                    let value = match &v.value {
                        RawOption::Int(i) => i.to_string(),
                        RawOption::Ints(l) => format!("a list of {}", l.len()),
                        RawOption::Text(t) => t.clone(),
                    };
                    self.err(DiagCode::Type, v.span, format!("options.{}: expected {expected}", oname.value))
                        .value(value)
                        .hint(format!("{}: {}", def.name, def.description));
                    None
                }
            };
            if let Some(value) = value {
                out.insert(def.name.clone(), value);
            }
        }
        out
    }

    fn cluster(
        &mut self,
        name: &Spanned<String>,
        raw: &RawCluster,
        kind: &DeploymentKind,
        zones: &BTreeMap<String, (Vec<IpNet>, Span)>,
    ) -> Option<Cluster> {
        self.name(name, "cluster");
        let subsystem =
            match &raw.subsystem {
                None => {
                    let names: Vec<&str> = kind.subsystems.iter().map(|s| s.name.as_str()).collect();
                    self.err(DiagCode::Missing, raw.span, format!("cluster {}: no `subsystem`", name.value))
                        .hint(format!("name one of the subsystems of {}: {}", kind.name, names.join(", ")));
                    None
                }
                Some(s) => match kind.subsystem(&s.value) {
                    Some(def) => Some(def),
                    None => {
                        let hint = suggest(&s.value, kind.subsystems.iter().map(|s| s.name.as_str()), "subsystems");
                        self.err(
                            DiagCode::UnknownSubsystem,
                            s.span,
                            format!("{} has no subsystem `{}`", kind.name, s.value),
                        )
                        .value(s.value.clone())
                        .hint(hint);
                        None
                    }
                },
            };
        let zone = match (&raw.zone, subsystem) {
            (Some(z), _) => {
                if kind.zone(&z.value).is_none() {
                    let hint = suggest(&z.value, kind.zones.iter().map(|z| z.name.as_str()), "zones");
                    self.err(DiagCode::UnknownZone, z.span, format!("{} has no zone `{}`", kind.name, z.value))
                        .value(z.value.clone())
                        .hint(hint);
                    None
                } else if !zones.contains_key(&z.value) {
                    self.err(
                        DiagCode::UnknownZone,
                        z.span,
                        format!("zone `{}` has no networks in this deployment", z.value),
                    )
                    .value(z.value.clone())
                    .hint(format!("add it to `zones:`: `{}: [10.2.0.0/24]`", z.value));
                    None
                } else {
                    Some(z.value.clone())
                }
            }
            // Without `zone:`, the subsystem's usual zone.
            (None, Some(s)) if zones.contains_key(&s.zone) => Some(s.zone.clone()),
            (None, Some(s)) => {
                self.err(DiagCode::Missing, raw.span, format!("cluster {}: no `zone`", name.value)).hint(format!(
                    "{} servers usually sit in zone {}; give it networks or name the cluster's zone",
                    s.title, s.zone
                ));
                None
            }
            (None, None) => None,
        };
        if raw.servers.is_empty() {
            self.err(DiagCode::EmptyCluster, raw.span, format!("cluster {} has no servers", name.value))
                .hint("list its servers and their addresses: `servers: { gw-a-1: 10.2.0.11 }`");
        }
        let nets = zone.as_ref().and_then(|z| zones.get(z)).map(|(n, _)| n.clone()).unwrap_or_default();
        let mut servers = Vec::new();
        for (sname, addrs) in &raw.servers {
            self.name(sname, "server");
            if let Some(first) = self.node_names.get(&sname.value).copied() {
                let first = self.on(first);
                self.err(DiagCode::DuplicateNode, sname.span, "server name used twice in the fleet")
                    .value(sname.value.clone())
                    .hint(format!("server and node names are unique across the fleet; it is first declared {first}"));
            } else {
                self.node_names.insert(sname.value.clone(), sname.span);
            }
            if addrs.is_empty() {
                self.err(DiagCode::NodeAddresses, sname.span, format!("server {} has no address", sname.value))
                    .hint("give the server its address: `gw-a-1: 10.2.0.11`");
            }
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                let Some(ip) = self.address(a, &format!("address of server {}", sname.value)) else { continue };
                if let Some(owner) = self.addresses.get(&ip).cloned() {
                    self.err(DiagCode::DuplicateAddress, a.span, "address used twice in the fleet")
                        .value(a.value.clone())
                        .hint(format!("already the address of {owner}"));
                } else {
                    self.addresses.insert(ip, sname.value.clone());
                }
                if let Some(z) = &zone {
                    let same_family: Vec<&IpNet> = nets.iter().filter(|n| n.addr().is_ipv4() == ip.is_ipv4()).collect();
                    if !same_family.iter().any(|n| n.contains(&ip)) {
                        let list: Vec<String> = nets.iter().map(IpNet::to_string).collect();
                        self.err(
                            DiagCode::ServerOutsideZone,
                            a.span,
                            format!("server {} of cluster {} is outside its zone {z}", sname.value, name.value),
                        )
                        .value(a.value.clone())
                        .hint(format!(
                            "zone {z} is {}; move the server or the cluster to the zone it is in",
                            list.join(", ")
                        ));
                    }
                }
                ips.push(ip);
            }
            self.servers.insert(sname.value.clone());
            servers.push(Server { name: sname.value.clone(), addresses: ips });
        }
        let (subsystem, zone) = (subsystem?, zone?);
        (!servers.is_empty()).then(|| Cluster {
            name: name.value.clone(),
            subsystem: subsystem.name.clone(),
            zone,
            servers,
        })
    }
}

fn required_zones(kind: &DeploymentKind) -> String {
    kind.zones.iter().filter(|z| z.required).map(|z| z.name.as_str()).collect::<Vec<_>>().join(", ")
}

impl Validator<'_> {
    /// A `tests:` entry to a deployment server: ports only (a server has no components).
    pub(super) fn server_test(
        &mut self,
        raw: &crate::raw::RawTest,
        from: Option<IpAddr>,
        to: &Spanned<String>,
        node: String,
        route: Option<String>,
    ) -> Option<crate::fleet::Test> {
        if route.is_some() {
            self.err(DiagCode::Test, to.span, "a deployment server has no routes")
                .value(to.value.clone())
                .hint(format!("name the server alone: `to: {node}`"));
            return None;
        }
        let probes = |v: &mut Self, list: &[Spanned<String>]| -> Vec<crate::fleet::Probe> {
            let mut out = Vec::new();
            for p in list {
                let parsed = p.value.split_once('/').and_then(|(port, proto)| {
                    let proto = match proto {
                        "tcp" => crate::Protocol::Tcp,
                        "udp" => crate::Protocol::Udp,
                        _ => return None,
                    };
                    port.parse::<u16>().ok().filter(|p| *p > 0).map(|p| (p, proto))
                });
                match parsed {
                    Some((port, proto)) => out.push(crate::fleet::Probe::Port(port, proto)),
                    None => {
                        v.err(DiagCode::Test, p.span, "not a `port/protocol`")
                            .value(p.value.clone())
                            .hint("a deployment server is probed by port: write e.g. `443/tcp` or `161/udp`");
                    }
                }
            }
            out
        };
        let accept = probes(self, &raw.accept);
        let deny = probes(self, &raw.deny);
        Some(crate::fleet::Test { from: from?, to: node, egress: false, route: None, accept, deny, span: raw.span })
    }
}

//! Raw fleet → validated `Fleet`, with every problem reported at once.
//!
//! Each check pushes a located diagnostic and validation goes on with what it has, so a
//! file with ten mistakes gets ten messages. A `Fleet` is returned only when there is no
//! error (warnings are fine).

use crate::catalog::{Catalog, Protocol};
use crate::cidr::{parse_address, parse_network, Ambiguity, CidrError};
use crate::diag::{did_you_mean, DiagCode, Diagnostic, Diagnostics};
use crate::doc::PathTable;
use crate::fleet::*;
use crate::ports::{allocate, service_base, CONNECTION_PORT_MAX, CONNECTION_PORT_MIN, PORT_MAX, PORT_MIN};
use crate::raw::*;
use crate::yaml::Span;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

#[path = "validate_deployments.rs"]
mod deployments;

/// The most `ip_filter` entries a service may have.
pub const MAX_IP_FILTER: usize = 8000;
/// The longest `network` string of an `ip_filter` entry.
pub const MAX_NETWORK_LEN: usize = 43;
/// The longest `description` of an `ip_filter` entry.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// Validates a decoded fleet against the catalog.
pub fn validate(raw: &RawFleet, catalog: &Catalog, diags: &mut Diagnostics) -> Option<Fleet> {
    validate_located(raw, catalog, None, diags)
}

/// `validate` for a fleet decoded from a document (`doc::FleetDoc::to_node`): hints say
/// where something else is by its path in `paths`, not by its line.
pub fn validate_located(
    raw: &RawFleet,
    catalog: &Catalog,
    paths: Option<&PathTable>,
    diags: &mut Diagnostics,
) -> Option<Fleet> {
    let before = diags.errors();
    let mut v = Validator::new(diags, catalog, paths, None);
    v.version(raw);
    let platform = v.platform(&raw.platform);
    v.gateways.clone_from(&platform.management_gateways);
    let mut projects: Vec<Arc<Project>> =
        raw.projects.iter().filter_map(|(n, p)| v.project(n, p, &platform)).map(Arc::new).collect();
    projects.sort_by(|a, b| a.name.cmp(&b.name));
    let deployments = v.deployments(&raw.deployments);
    let tests = {
        let by_node: HashMap<&str, &Service> = projects
            .iter()
            .flat_map(|p| &p.services)
            .flat_map(|s| s.nodes.iter().map(move |n| (n.name.as_str(), &**s)))
            .collect();
        let find = |n: &str| by_node.get(n).copied();
        let names = || by_node.keys().map(|k| k.to_string()).collect();
        raw.tests.iter().filter_map(|t| v.test(t, &find, &names)).collect()
    };
    (diags.errors() == before).then_some(Fleet { platform, projects, tests, deployments })
}

/// What the rest of a fleet holds, when only a part of it is validated (a control-plane
/// write revalidates what it touched): the fleet-wide constraints are checked against it.
pub trait Elsewhere {
    /// Where node `name` is declared outside the part (a document path), if it is.
    fn node(&self, name: &str) -> Option<String>;
    /// The node outside the part that has address `ip`, if one has.
    fn address(&self, ip: &IpAddr) -> Option<String>;
}

/// Validates part of a fleet: the platform and the projects of `raw` (each with only the
/// services to revalidate; its VPCs whole), with node names and addresses also checked
/// against `elsewhere`. `raw.tests` are not read: [`validate_tests`] checks them once the
/// part is in the fleet. Returns the platform and the projects when there is no error.
pub fn validate_part(
    raw: &RawFleet,
    catalog: &Catalog,
    paths: &PathTable,
    elsewhere: &dyn Elsewhere,
    diags: &mut Diagnostics,
) -> Option<(Platform, Vec<Project>)> {
    let before = diags.errors();
    let mut v = Validator::new(diags, catalog, Some(paths), Some(elsewhere));
    v.version(raw);
    let platform = v.platform(&raw.platform);
    v.gateways.clone_from(&platform.management_gateways);
    let mut projects: Vec<Project> = raw.projects.iter().filter_map(|(n, p)| v.project(n, p, &platform)).collect();
    projects.sort_by(|a, b| a.name.cmp(&b.name));
    (diags.errors() == before).then_some((platform, projects))
}

/// Validates `raw.tests` against a fleet: `find` gives the service of a node, `names`
/// every node name (only for a "did you mean" hint); the servers of `raw.deployments`
/// are known by name.
pub fn validate_tests<'s>(
    raw: &RawFleet,
    catalog: &Catalog,
    paths: &PathTable,
    find: &dyn Fn(&str) -> Option<&'s Service>,
    names: &dyn Fn() -> Vec<String>,
    diags: &mut Diagnostics,
) -> Option<Vec<Test>> {
    let before = diags.errors();
    let mut v = Validator::new(diags, catalog, Some(paths), None);
    // Tests may probe the servers of `raw.deployments` (by port).
    v.servers = raw
        .deployments
        .iter()
        .flat_map(|(_, d)| &d.clusters)
        .flat_map(|(_, c)| &c.servers)
        .map(|(s, _)| s.value.clone())
        .collect();
    let tests = raw.tests.iter().filter_map(|t| v.test(t, find, names)).collect();
    (diags.errors() == before).then_some(tests)
}

/// What a project's deployment kind asks of its services.
struct Kind<'b> {
    /// The project's BYOC network, when it validated.
    byoc: Option<&'b Byoc>,
    /// Whether the project has `byoc:` at all (valid or not).
    byoc_written: bool,
    /// Whether it is an ECE project.
    ece: bool,
}

/// Where a list of nodes takes its addresses from.
#[derive(Clone, Copy)]
enum Home<'v> {
    /// A VPC: private addresses inside its network.
    Vpc(&'v Vpc),
    /// A VPC that does not exist (reported already).
    UnknownVpc,
    /// A BYOC subnet (`None`: it did not validate): private addresses inside it.
    Subnet { net: Option<IpNet>, name: &'static str },
    /// The internet: public addresses.
    Public,
}

/// One `socks5_proxy.allow` entry: `network`, `network:port`, `[v6-network]:port`, `host:port`.
fn parse_allow(s: &str) -> Result<ProxyAllow, String> {
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{p}` is not a port (1–65535)"))
    };
    if let Ok(n) = parse_network(s) {
        return Ok(ProxyAllow { network: Some(n), host: None, port: None });
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (net, p) = rest.split_once("]:").ok_or("a bracketed IPv6 network is followed by `:port`")?;
        let n = parse_network(net).map_err(|_| format!("`{net}` is not a network"))?;
        return Ok(ProxyAllow { network: Some(n), host: None, port: Some(port(p)?) });
    }
    let (head, p) = s.rsplit_once(':').ok_or("not a network, and no `:port` after a host name")?;
    let p = port(p)?;
    if head.contains(':') {
        return Err("an IPv6 network with a port is written `[network]:port`".into());
    }
    if let Ok(n) = parse_network(head) {
        return Ok(ProxyAllow { network: Some(n), host: None, port: Some(p) });
    }
    let host_ok = !head.is_empty()
        && head.len() <= 253
        && head.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        })
        && !head.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !host_ok {
        return Err(format!("`{head}` is neither a network nor a host name"));
    }
    Ok(ProxyAllow { network: None, host: Some(head.to_ascii_lowercase()), port: Some(p) })
}

trait SpanExt {
    fn with_line(self, line: u32) -> Span;
}

impl SpanExt for Span {
    fn with_line(mut self, line: u32) -> Span {
        self.start.line = line;
        self.start.col = 1;
        self.end = self.start;
        self
    }
}

/// An error just recorded, still taking its value and hint.
struct Pending<'d>(&'d mut Diagnostic);

impl Pending<'_> {
    fn value(self, v: impl Into<String>) -> Self {
        self.0.value = Some(v.into());
        self
    }

    fn hint(self, h: impl Into<String>) -> Self {
        self.0.hint = Some(h.into());
        self
    }
}

struct Validator<'a> {
    diags: &'a mut Diagnostics,
    catalog: &'a Catalog,
    /// Node name → where it was first declared.
    node_names: HashMap<String, Span>,
    /// Address → the node that has it.
    addresses: HashMap<IpAddr, String>,
    /// The management gateways, once the platform is read.
    gateways: Vec<IpAddr>,
    /// The paths of a document's values (None: a fleet file, located by line).
    paths: Option<&'a PathTable>,
    /// The rest of the fleet, when only a part is validated.
    elsewhere: Option<&'a dyn Elsewhere>,
    /// The names of the deployments' servers (tests may probe them).
    servers: std::collections::HashSet<String>,
}

/// Whether `id` may name a private-link connection: 1 to 40 lower-case letters, digits and
/// dashes (it becomes part of rule ids).
pub fn is_connection_id(id: &str) -> bool {
    (1..=40).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The one name rule for projects, VPCs, services and nodes, wherever a name comes from
/// (a fleet file, `PUT /v1/fleet`, a `POST` of the API); see [`NAME_RULE`].
/// (`fleetwall_ir::is_valid_node_name` checks the same rule on rulesets the agent receives.)
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The name rule in words, for messages.
pub const NAME_RULE: &str =
    "names use letters, digits, `-`, `_` and `.`, start with a letter or digit, and have at most 63 characters";

impl<'a> Validator<'a> {
    fn new(
        diags: &'a mut Diagnostics,
        catalog: &'a Catalog,
        paths: Option<&'a PathTable>,
        elsewhere: Option<&'a dyn Elsewhere>,
    ) -> Self {
        Validator {
            diags,
            catalog,
            node_names: HashMap::new(),
            addresses: HashMap::new(),
            gateways: Vec::new(),
            paths,
            elsewhere,
            servers: Default::default(),
        }
    }

    /// Where `span` is, after "on" or "at": `line 7` in a file, the path in a document.
    fn on(&self, span: Span) -> String {
        match self.paths {
            Some(t) => format!("at {}", t.path(span)),
            None => format!("on line {}", span.start.line),
        }
    }

    /// Where `span` is, standing alone: `line 7` or the path.
    fn place(&self, span: Span) -> String {
        match self.paths {
            Some(t) => t.path(span).to_string(),
            None => format!("line {}", span.start.line),
        }
    }

    fn version(&mut self, raw: &RawFleet) {
        match &raw.version {
            None => self.diags.push(
                Diagnostic::error(DiagCode::Missing, "the fleet file has no `version`")
                    .at(Span::default().with_line(1))
                    .hint("add `version: 1` at the top"),
            ),
            Some(ver) if ver.value != 1 => self.diags.push(
                Diagnostic::error(DiagCode::Version, "unsupported fleet file version")
                    .at(ver.span)
                    .value(ver.value.to_string())
                    .hint("this fleetwall reads `version: 1`"),
            ),
            Some(_) => {}
        }
    }

    fn err(&mut self, code: DiagCode, span: Span, msg: impl Into<String>) -> Pending<'_> {
        self.diags.push(Diagnostic::error(code, msg).at(span));
        Pending(self.diags.items.last_mut().expect("just pushed"))
    }

    fn name(&mut self, n: &Spanned<String>, what: &str) {
        if !is_valid_name(&n.value) {
            self.err(DiagCode::Type, n.span, format!("invalid {what} name")).value(n.value.clone()).hint(NAME_RULE);
        }
    }

    fn cidr(&mut self, s: &Spanned<String>, what: &str) -> Option<IpNet> {
        match parse_network(&s.value) {
            Ok(n) => Some(n),
            Err(CidrError::Malformed) => {
                self.err(DiagCode::InvalidCidr, s.span, format!("{what}: not a valid CIDR"))
                    .value(s.value.clone())
                    .hint("write an IPv4 or IPv6 network such as 198.51.100.0/24 or 2001:db8::/32");
                None
            }
            Err(CidrError::HostBits(net)) => {
                self.err(
                    DiagCode::HostBits,
                    s.span,
                    format!("{what}: the address has bits set after the prefix length"),
                )
                .value(s.value.clone())
                .hint(format!("did you mean the network {net}?"));
                None
            }
            Err(CidrError::Ambiguous(a)) => {
                self.ambiguous(s, what, "network", a);
                None
            }
        }
    }

    fn address(&mut self, s: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match parse_address(&s.value) {
            Ok(a) => Some(a),
            Err(CidrError::Malformed | CidrError::HostBits(_)) => {
                let hint = if s.value.contains('/') {
                    "write a single address, without a prefix length"
                } else {
                    "write an IPv4 or IPv6 address such as 198.51.100.10 or 2001:db8::10"
                };
                self.err(DiagCode::InvalidAddress, s.span, format!("{what}: not a valid IP address"))
                    .value(s.value.clone())
                    .hint(hint);
                None
            }
            Err(CidrError::Ambiguous(a)) => {
                self.ambiguous(s, what, "address", a);
                None
            }
        }
    }

    /// The errors of a string that tools could read differently; `noun` is "network" or
    /// "address".
    fn ambiguous(&mut self, s: &Spanned<String>, what: &str, noun: &str, a: Ambiguity) {
        match a {
            Ambiguity::Whitespace(trimmed) => {
                // Escaped, or a newline would break the rendered line.
                self.err(
                    DiagCode::SurroundingWhitespace,
                    s.span,
                    format!("{what}: the {noun} has leading or trailing whitespace"),
                )
                .value(s.value.escape_debug().to_string())
                .hint(format!("did you mean '{trimmed}'?"));
            }
            Ambiguity::LeadingZeros(reading) => {
                self.err(
                    DiagCode::LeadingZeros,
                    s.span,
                    format!("{what}: the {noun} has leading zeros, which some tools read as octal"),
                )
                .value(s.value.clone())
                .hint(match reading {
                    Some(r) => format!("did you mean {r}, its decimal reading?"),
                    None => "write each number in decimal, without leading zeros".to_string(),
                });
            }
            Ambiguity::Ipv4Mapped(v4) => {
                let written = if noun == "address" { v4.addr().to_string() } else { v4.to_string() };
                self.err(
                    DiagCode::Ipv4Mapped,
                    s.span,
                    format!("{what}: an IPv4-mapped IPv6 {noun} never matches IPv4 traffic"),
                )
                .value(s.value.clone())
                .hint(format!("write it as the IPv4 {noun} {written}"));
            }
        }
    }

    fn cloud(&mut self, s: &Spanned<String>) -> Option<Cloud> {
        for (prefix, provider) in Provider::PREFIXES {
            if s.value.starts_with(prefix) && s.value.len() > prefix.len() {
                let region = &s.value[prefix.len()..];
                if !crate::regions::is_known(provider, region) {
                    let known: Vec<String> =
                        crate::regions::regions(provider).iter().map(|r| format!("{prefix}{r}")).collect();
                    let hint = match did_you_mean(&s.value, known.iter().map(String::as_str)) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => format!("known {} regions: {}", provider.as_str(), known.join(", ")),
                    };
                    self.diags.push(
                        Diagnostic::warning(DiagCode::UnknownRegion, format!("unknown {} region", provider.as_str()))
                            .at(s.span)
                            .value(s.value.clone())
                            .hint(hint),
                    );
                }
                return Some(Cloud { name: s.value.clone(), provider });
            }
        }
        let prefixes: Vec<&str> = Provider::PREFIXES.iter().map(|(p, _)| *p).collect();
        let head = s.value.split('-').next().unwrap_or_default().to_string() + "-";
        let hint = match did_you_mean(&head, prefixes.iter().copied()) {
            Some(p) => format!("did you mean the prefix `{p}`? (known: {})", prefixes.join(", ")),
            None => format!("a cloud name starts with a provider prefix: {}", prefixes.join(", ")),
        };
        self.err(DiagCode::UnknownCloud, s.span, "unknown cloud provider").value(s.value.clone()).hint(hint);
        None
    }

    fn port(&mut self, v: &Option<Spanned<i64>>, what: &str, default: u16) -> u16 {
        match v {
            None => default,
            Some(p) if (1..=65535).contains(&p.value) => p.value as u16,
            Some(p) => {
                self.err(DiagCode::PortRange, p.span, format!("{what}: not a TCP/UDP port"))
                    .value(p.value.to_string())
                    .hint("ports are 1–65535");
                default
            }
        }
    }

    fn platform(&mut self, raw: &RawPlatform) -> Platform {
        let at = raw.span.unwrap_or(Span::default().with_line(1));
        let mut gateways = Vec::new();
        match &raw.management_gateways {
            None => {
                self.err(DiagCode::Platform, at, "`platform.management_gateways` is required")
                    .hint("list the management gateway addresses: management access (SSH, platform port) is only accepted from them");
            }
            Some(list) if list.is_empty() => {
                self.err(DiagCode::Platform, at, "`platform.management_gateways` is empty")
                    .hint("at least one gateway is needed, or no node could ever be managed");
            }
            Some(list) => {
                for g in list {
                    if let Some(a) = self.address(g, "management gateway") {
                        if gateways.contains(&a) {
                            self.err(DiagCode::DuplicateAddress, g.span, "management gateway listed twice")
                                .value(g.value.clone());
                        } else {
                            gateways.push(a);
                        }
                    }
                }
            }
        }
        let p = Platform {
            management_gateways: gateways,
            ssh_port: self.port(&raw.ssh_port, "platform.ssh_port", 22),
            platform_port: self.port(&raw.platform_port, "platform.platform_port", 30287),
            web_port: self.port(&raw.web_port, "platform.web_port", 443),
            ipsec: raw.ipsec.as_ref().is_none_or(|b| b.value),
            bastion_proxy_port: self.port(&raw.bastion_proxy_port, "platform.bastion_proxy_port", 443),
        };
        let named = [
            ("ssh_port", p.ssh_port, &raw.ssh_port),
            ("platform_port", p.platform_port, &raw.platform_port),
            ("web_port", p.web_port, &raw.web_port),
        ];
        for (i, (a, pa, _)) in named.iter().enumerate() {
            for (b, pb, span) in &named[i + 1..] {
                if pa == pb {
                    let span = span.as_ref().map_or(at, |s| s.span);
                    self.err(DiagCode::Platform, span, format!("platform.{b} is the same port as platform.{a}"))
                        .value(pb.to_string())
                        .hint("management, platform and web ports must differ");
                }
            }
        }
        p
    }

    fn project(&mut self, name: &Spanned<String>, raw: &RawProject, platform: &Platform) -> Option<Project> {
        self.name(name, "project");
        let base_port = match &raw.base_port {
            None => None,
            Some(b) if (i64::from(PORT_MIN)..=i64::from(PORT_MAX)).contains(&b.value) => Some(b.value as u16),
            Some(b) => {
                self.err(DiagCode::BasePortRange, b.span, "base_port is outside 10000–30000")
                    .value(b.value.to_string())
                    .hint("service ports are offsets of base_port inside 10000–30000; pick a base in that range, or omit it for a random one");
                None
            }
        };
        let mut vpcs: Vec<Vpc> = raw.vpcs.iter().filter_map(|(n, v)| self.vpc(n, v)).collect();
        vpcs.sort_by(|a, b| a.name.cmp(&b.name));
        let vpc_names: Vec<&str> = raw.vpcs.iter().map(|(n, _)| n.value.as_str()).collect();
        let byoc = raw.byoc.as_ref().and_then(|b| self.byoc(&name.value, b));
        let ece = self.ece(&name.value, raw, &vpcs);
        let kind = Kind { byoc: byoc.as_ref().map(|(b, _)| b), byoc_written: raw.byoc.is_some(), ece: ece.is_some() };
        let mut services = Vec::new();
        for (sname, s) in &raw.services {
            if let Some(svc) = self.service(&name.value, base_port, sname, s, &vpcs, &vpc_names, platform, &kind) {
                services.push(Arc::new(svc));
            }
        }
        if let Some((_, bastion)) = &byoc {
            if let Some((sname, _)) = raw.services.iter().find(|(n, _)| n.value == BASTION_SERVICE) {
                self.err(
                    DiagCode::Byoc,
                    sname.span,
                    format!("a BYOC project's bastions are its service `{BASTION_SERVICE}`"),
                )
                .value(sname.value.clone())
                .hint("rename this service");
            }
            services.push(Arc::new(bastion.clone()));
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let byoc = byoc.map(|(b, _)| b);
        if raw.byoc.is_some() && byoc.is_none() {
            return None;
        }
        Some(Project { name: name.value.clone(), base_port, vpcs, services, byoc, ece })
    }

    /// A project's `byoc:`: the network, its subnets and customer networks, and the
    /// bastion service made of its `bastions`.
    fn byoc(&mut self, project: &str, raw: &RawByoc) -> Option<(Byoc, Service)> {
        let what = format!("project {project}: byoc");
        let need = |v: &mut Self, field: &Option<Spanned<String>>, key: &str, example: &str| -> Option<IpNet> {
            match field {
                Some(c) => v.cidr(c, &format!("byoc.{key}")),
                None => {
                    v.err(DiagCode::Missing, raw.span, format!("{what}: `{key}` is required"))
                        .hint(format!("for example `{key}: {example}`"));
                    None
                }
            }
        };
        let network = need(self, &raw.network_cidr, "network_cidr", "10.50.0.0/16");
        let bastion_subnet = need(self, &raw.bastion_subnet, "bastion_subnet", "10.50.0.0/24");
        let workload_subnet = need(self, &raw.workload_subnet, "workload_subnet", "10.50.16.0/20");
        let cloud = match &raw.cloud {
            Some(c) => self.cloud(c),
            None => {
                self.err(DiagCode::Missing, raw.span, format!("{what}: `cloud` is required"))
                    .hint("the customer's cloud region, for example `cloud: aws-eu-west-1`");
                None
            }
        };
        if let Some(n) = network {
            for (sub, field) in [(bastion_subnet, &raw.bastion_subnet), (workload_subnet, &raw.workload_subnet)] {
                if let (Some(sub), Some(f)) = (sub, field) {
                    if !n.contains(&sub) {
                        self.err(DiagCode::Byoc, f.span, format!("{sub} is not inside the BYOC network {n}"))
                            .value(f.value.clone())
                            .hint(format!("the bastion and workload subnets are parts of network_cidr {n}"));
                    }
                }
            }
        }
        if let (Some(b), Some(w), Some(f)) = (bastion_subnet, workload_subnet, &raw.workload_subnet) {
            if b.contains(&w) || w.contains(&b) {
                self.err(DiagCode::Byoc, f.span, format!("workload_subnet {w} overlaps bastion_subnet {b}"))
                    .value(f.value.clone())
                    .hint(
                        "bastions and workloads sit in separate subnets: that is what keeps gateways off the workloads",
                    );
            }
        }
        let mut customer_networks = Vec::new();
        for c in raw.customer_networks.iter().flatten() {
            let Some(net) = self.cidr(c, "byoc.customer_networks") else { continue };
            if let Some(n) = network.filter(|n| n.contains(&net) || net.contains(n)) {
                self.err(DiagCode::Byoc, c.span, format!("customer network {net} overlaps the BYOC network {n}"))
                    .value(c.value.clone())
                    .hint(format!("list where the customer's applications are, outside {n}"));
            }
            customer_networks.push(net);
        }
        let egress = match &raw.egress {
            None => vec!["0.0.0.0/0".parse().expect("literal"), "::/0".parse().expect("literal")],
            Some(list) => list.iter().filter_map(|c| self.cidr(c, "byoc.egress")).collect(),
        };
        if raw.bastions.is_empty() {
            self.err(DiagCode::Byoc, raw.span, format!("{what}: no `bastions`"))
                .hint("the management gateways reach the workloads only through a bastion: `bastions: { my-bastion-1: { private: 10.50.0.10, public: 203.0.113.90 } }`");
        }
        let nodes = self.nodes(
            &format!("{what}.bastions"),
            raw.span,
            &raw.bastions,
            Home::Subnet { net: bastion_subnet, name: "bastion_subnet" },
        );
        let (cloud, network, bastion_subnet, workload_subnet) = (cloud?, network?, bastion_subnet?, workload_subnet?);
        let bastion = Service {
            name: BASTION_SERVICE.to_string(),
            service_type: Arc::new(crate::catalog::ServiceType {
                name: BASTION_SERVICE.to_string(),
                components: Vec::new(),
                cluster: Vec::new(),
            }),
            cloud: cloud.clone(),
            vpc: None,
            nodes,
            ip_filter: Vec::new(),
            public_access: BTreeSet::new(),
            privatelink_access: BTreeSet::new(),
            privatelink: None,
            ports: BTreeMap::new(),
            pinned: BTreeSet::new(),
            role: Role::Bastion,
        };
        Some((
            Byoc { cloud, network_cidr: network, bastion_subnet, workload_subnet, customer_networks, egress },
            bastion,
        ))
    }

    /// A project's `compliance:` and `socks5_proxy:`: the proxy of an ECE project.
    fn ece(&mut self, project: &str, raw: &RawProject, vpcs: &[Vpc]) -> Option<Socks5Proxy> {
        let ece = match &raw.compliance {
            None => false,
            Some(c) if c.value == "ece" => true,
            Some(c) => {
                self.err(DiagCode::Ece, c.span, "unknown compliance level").value(c.value.clone()).hint(
                    "the one compliance level is `ece` (enhanced compliance: VPC only, egress through a SOCKS5 proxy)",
                );
                false
            }
        };
        let Some(p) = &raw.socks5_proxy else {
            if ece {
                let span = raw.compliance.as_ref().map_or(Span::default(), |c| c.span);
                self.err(DiagCode::Ece, span, format!("project {project}: an ECE project needs a `socks5_proxy`"))
                    .hint("its nodes reach the outside only through it: `socks5_proxy: { address: 10.70.0.5, port: 1080, allow: [...] }`");
            }
            return None;
        };
        if !ece {
            self.err(DiagCode::Ece, p.span, "socks5_proxy only applies to an ECE project")
                .hint("add `compliance: ece` to the project, or remove the proxy");
            return None;
        }
        let address = match &p.address {
            Some(a) => self.address(a, "socks5_proxy.address"),
            None => {
                self.err(DiagCode::Missing, p.span, "socks5_proxy: `address` is required")
                    .hint("the proxy's address inside the project's VPC, for example `address: 10.70.0.5`");
                None
            }
        };
        if let (Some(a), Some(s)) = (address, &p.address) {
            if !vpcs.iter().any(|v| v.network_cidr.contains(&a)) {
                let nets: Vec<String> = vpcs.iter().map(|v| v.network_cidr.to_string()).collect();
                self.err(DiagCode::Ece, s.span, "the SOCKS5 proxy is outside the project's VPCs")
                    .value(s.value.clone())
                    .hint(if nets.is_empty() {
                        "an ECE project's services and proxy sit in its VPCs; declare `vpcs`".to_string()
                    } else {
                        format!("put it inside {}", nets.join(" or "))
                    });
            }
        }
        let port = self.port(&p.port, "socks5_proxy.port", 1080);
        let mut allow = Vec::new();
        for a in &p.allow {
            match parse_allow(&a.value) {
                Ok(x) => allow.push(x),
                Err(why) => {
                    self.err(DiagCode::Ece, a.span, format!("socks5_proxy.allow: {why}")).value(a.value.clone()).hint(
                        "write a network (`198.51.100.0/24`), `network:port`, `host:port` or `[ipv6-network]:port`",
                    );
                }
            }
        }
        Some(Socks5Proxy { address: address?, port, allow })
    }

    fn vpc(&mut self, name: &Spanned<String>, raw: &RawVpc) -> Option<Vpc> {
        self.name(name, "VPC");
        let cloud = match &raw.cloud {
            Some(c) => self.cloud(c),
            None => {
                self.err(DiagCode::Missing, raw.span, format!("vpc {}: `cloud` is required", name.value))
                    .hint("for example `cloud: aws-eu-west-1`");
                None
            }
        };
        let network = match &raw.network_cidr {
            Some(c) => self.cidr(c, "network_cidr"),
            None => {
                self.err(DiagCode::Missing, raw.span, format!("vpc {}: `network_cidr` is required", name.value))
                    .hint("for example `network_cidr: 10.10.0.0/20`");
                None
            }
        };
        let privatelink_cidrs: Option<Vec<IpNet>> = raw
            .privatelink_cidrs
            .as_ref()
            .map(|l| l.iter().filter_map(|c| self.cidr(c, "privatelink_cidrs")).collect());
        let mut peerings = Vec::new();
        for p in &raw.peerings {
            let peer_vpc = match &p.peer_vpc {
                Some(v) => v.value.clone(),
                None => {
                    self.err(DiagCode::Missing, p.span, "peering without `peer_vpc`")
                        .hint("name the customer's VPC, e.g. `peer_vpc: vpc-0abc`");
                    String::new()
                }
            };
            if p.peer_cidrs.is_empty() {
                self.err(DiagCode::Missing, p.span, "peering without `peer_cidrs`")
                    .hint("list the customer CIDRs routed over the peering");
            }
            let mut peer_cidrs = Vec::new();
            for c in &p.peer_cidrs {
                let Some(net) = self.cidr(c, "peer_cidrs") else { continue };
                // A peering routes another network: one inside the VPC's own range never
                // reaches the VPC over the peering, and widens its ip_filter scope silently.
                if let Some(own) = network.filter(|n| n.contains(&net) || net.contains(n)) {
                    self.err(
                        DiagCode::PeeringOverlap,
                        c.span,
                        format!("peer_cidrs: {net} overlaps the VPC's own network {own}"),
                    )
                    .value(c.value.clone())
                    .hint(format!("list the customer's networks behind the peering, outside {own}"));
                }
                peer_cidrs.push(net);
            }
            peerings.push(Peering { peer_vpc, peer_cidrs });
        }
        if let (Some(n), Some(span)) = (network, raw.network_cidr.as_ref().map(|c| c.span)) {
            if let Some(g) = self.gateways.iter().find(|g| n.contains(*g)) {
                self.diags.push(
                    Diagnostic::warning(
                        DiagCode::GatewayAddress,
                        format!("network_cidr {n} covers management gateway {g}"),
                    )
                    .at(span)
                    .hint(
                        "the platform's gateways are outside customer networks; a VPC over them shadows their routes",
                    ),
                );
            }
        }
        let (cloud, network) = (cloud?, network?);
        Some(Vpc {
            name: name.value.clone(),
            cloud,
            network_cidr: network,
            privatelink_cidrs: privatelink_cidrs.unwrap_or_else(|| vec![network]),
            peerings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn service(
        &mut self,
        project: &str,
        base_port: Option<u16>,
        name: &Spanned<String>,
        raw: &RawService,
        vpcs: &[Vpc],
        vpc_names: &[&str],
        platform: &Platform,
        kind: &Kind<'_>,
    ) -> Option<Service> {
        self.name(name, "service");
        let what = format!("service {}", name.value);
        let role = if raw.byoc.as_ref().is_some_and(|b| b.value) { Role::Workload } else { Role::Service };
        self.deployment(&what, raw, role, kind);
        let ty = match &raw.service_type {
            None => {
                let known = self.catalog.types.keys().cloned().collect::<Vec<_>>().join(", ");
                self.err(DiagCode::Missing, raw.span, format!("{what}: `type` is required"))
                    .hint(format!("one of: {known}"));
                None
            }
            Some(t) => match self.catalog.types.get(&t.value) {
                Some(ty) => Some(Arc::new(ty.clone())),
                None => {
                    let known: Vec<&str> = self.catalog.types.keys().map(String::as_str).collect();
                    let hint = match did_you_mean(&t.value, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("known types: {}", known.join(", ")),
                    };
                    self.err(DiagCode::UnknownServiceType, t.span, "unknown service type")
                        .value(t.value.clone())
                        .hint(hint);
                    None
                }
            },
        };
        let cloud = match &raw.cloud {
            Some(c) => self.cloud(c),
            None => {
                self.err(DiagCode::Missing, raw.span, format!("{what}: `cloud` is required"))
                    .hint("for example `cloud: aws-eu-west-1`");
                None
            }
        };
        let vpc: Option<&Vpc> = match &raw.vpc {
            None => None,
            Some(v) => match vpcs.iter().find(|x| x.name == v.value) {
                Some(found) => {
                    if let (Some(c), Some(vc)) = (&cloud, Some(&found.cloud)) {
                        if c != vc {
                            let span = raw.cloud.as_ref().map_or(v.span, |c| c.span);
                            self.err(
                                DiagCode::CloudMismatch,
                                span,
                                format!("{what} is in cloud {} but its VPC {} is in {}", c.name, found.name, vc.name),
                            )
                            .value(c.name.clone())
                            .hint(format!("a service runs in its VPC's cloud: use `cloud: {}`", vc.name));
                        }
                    }
                    Some(found)
                }
                None => {
                    // A VPC that exists but failed validation has its own diagnostics already.
                    if !vpc_names.contains(&v.value.as_str()) {
                        let hint = match did_you_mean(&v.value, vpc_names.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None if vpc_names.is_empty() => {
                                "the project has no `vpcs`; declare the VPC there".to_string()
                            }
                            None => format!("the project's VPCs: {}", vpc_names.join(", ")),
                        };
                        self.err(DiagCode::UnknownVpc, v.span, "unknown VPC").value(v.value.clone()).hint(hint);
                    }
                    None
                }
            },
        };
        let home = match (vpc, &raw.vpc, kind.byoc) {
            (Some(v), _, _) => Home::Vpc(v),
            (None, Some(_), _) => Home::UnknownVpc,
            // In a BYOC project every service is a workload (one without the flag is
            // refused above; its nodes are still read as workloads, for one message).
            (None, None, Some(b)) if role == Role::Workload || kind.byoc_written => {
                Home::Subnet { net: Some(b.workload_subnet), name: "workload_subnet" }
            }
            (None, None, _) if role == Role::Workload || kind.byoc_written => {
                Home::Subnet { net: None, name: "workload_subnet" }
            }
            (None, None, _) => Home::Public,
        };
        let nodes = self.nodes(&what, raw.span, &raw.nodes, home);
        let (ip_filter, spans) = self.ip_filter(&what, raw);
        if kind.ece {
            self.ece_ip_filter(&what, &ip_filter, &spans, vpc);
        }
        if let (Role::Workload, Some(b)) = (role, kind.byoc) {
            if let (Some(c), Some(cs)) = (&cloud, &raw.cloud) {
                if c != &b.cloud {
                    self.err(
                        DiagCode::CloudMismatch,
                        cs.span,
                        format!(
                            "{what} is a BYOC workload in {} but its project's BYOC network is in {}",
                            c.name, b.cloud.name
                        ),
                    )
                    .value(c.name.clone())
                    .hint(format!("use `cloud: {}`", b.cloud.name));
                }
            }
        }
        self.lint_ip_filter(&ip_filter, &spans, vpc, !raw.user_config.public_access.iter().all(|(_, b)| !b.value));
        let (public_access, privatelink_access) = match &ty {
            Some(ty) => (
                self.access(&raw.user_config.public_access, ty, "public_access", |c| c.public),
                self.access(&raw.user_config.privatelink_access, ty, "privatelink_access", |c| c.privatelink),
            ),
            None => Default::default(),
        };
        for (c, _) in &raw.user_config.private_access {
            if let Some(ty) = &ty {
                if ty.component(&c.value).is_none() {
                    self.unknown_component(c, ty, "private_access", |_| true);
                }
            }
        }
        // public_access needs a public address on every node.
        if !public_access.is_empty() {
            let first =
                raw.user_config.public_access.iter().find(|(_, b)| b.value).map(|(k, _)| k.span).unwrap_or(raw.span);
            for (nname, n) in &raw.nodes {
                if n.public.is_empty() {
                    self.err(
                        DiagCode::PublicAccessWithoutPublicAddress,
                        first,
                        format!("public_access is on, but node {} has no public address", nname.value),
                    )
                    .value(nname.value.clone())
                    .hint("give every node of the service a `public:` address, or turn public_access off");
                }
            }
            if vpc.is_none() && raw.vpc.is_none() {
                self.diags.push(
                    Diagnostic::warning(
                        DiagCode::PublicAccessWithoutPublicAddress,
                        format!("{what}: public_access has no effect outside a VPC"),
                    )
                    .at(first)
                    .hint("a service without `vpc` is already reached on its public addresses (route `dynamic`)"),
                );
            }
        }
        let privatelink = self.privatelink(&what, raw, cloud.as_ref());
        if !privatelink_access.is_empty() && privatelink.is_none() && raw.privatelink.is_empty() {
            let span =
                raw.user_config.privatelink_access.iter().find(|(_, b)| b.value).map_or(raw.span, |(k, _)| k.span);
            self.err(
                DiagCode::Privatelink,
                span,
                format!("{what}: privatelink_access without a `privatelink` resource"),
            )
            .hint("create the private link first: add `privatelink: { aws: { principals: [...] } }` to the service");
        }
        let (ports, pinned) = match &ty {
            Some(ty) => self.ports(project, base_port, &name.value, raw, ty, platform),
            None => Default::default(),
        };
        if let Some(ty) = &ty {
            self.connection_ports(&what, raw, ty, &ports, platform);
        }
        Some(Service {
            name: name.value.clone(),
            service_type: ty?,
            cloud: cloud?,
            vpc: vpc.map(|v| v.name.clone()),
            nodes,
            ip_filter,
            public_access,
            privatelink_access,
            privatelink,
            ports,
            pinned,
            role,
        })
    }

    /// What a service may be in its project's deployment kind (BYOC, ECE).
    fn deployment(&mut self, what: &str, raw: &RawService, role: Role, kind: &Kind<'_>) {
        let flag = raw.byoc.as_ref().map_or(raw.span, |b| b.span);
        match role {
            Role::Workload if !kind.byoc_written => {
                self.err(DiagCode::Byoc, flag, format!("{what} is `byoc: true` but its project has no `byoc` network"))
                    .hint("declare the project's `byoc:` (network_cidr, bastion_subnet, workload_subnet, bastions), or remove `byoc: true`");
            }
            Role::Workload => {
                if let Some(v) = &raw.vpc {
                    self.err(
                        DiagCode::Byoc,
                        v.span,
                        format!("{what}: a BYOC workload is in its project's BYOC network, not a VPC"),
                    )
                    .value(v.value.clone())
                    .hint("remove `vpc:`");
                }
                for (k, on) in raw.user_config.public_access.iter().chain(&raw.user_config.privatelink_access) {
                    if on.value {
                        self.err(DiagCode::Byoc, k.span, format!("{what}: a BYOC workload is reached from the customer's networks only"))
                            .value(k.value.clone())
                            .hint("BYOC clients connect from `byoc.customer_networks`; turn public and private-link access off");
                    }
                }
            }
            _ if kind.byoc_written => {
                self.err(DiagCode::Byoc, raw.span, format!("{what} is in a BYOC project but not `byoc: true`"))
                    .hint("every service of a BYOC project runs in the customer's network: add `byoc: true`");
            }
            _ => {}
        }
        if kind.ece {
            if raw.vpc.is_none() {
                self.err(DiagCode::Ece, raw.span, format!("{what}: an ECE service sits in a VPC"))
                    .hint("add `vpc:` naming one of the project's VPCs: ECE exposes nothing to the internet");
            }
            for (k, on) in &raw.user_config.public_access {
                if on.value {
                    self.err(DiagCode::Ece, k.span, format!("{what}: public access is not allowed in ECE"))
                        .value(k.value.clone())
                        .hint("ECE services are reached inside their VPC and its peerings only; remove it");
                }
            }
        }
    }

    /// ECE: every written ip_filter entry lies within the VPC and its peerings.
    fn ece_ip_filter(&mut self, what: &str, entries: &[IpFilterEntry], spans: &[Span], vpc: Option<&Vpc>) {
        let Some(v) = vpc else { return };
        let scope: Vec<IpNet> = std::iter::once(v.network_cidr)
            .chain(v.peerings.iter().flat_map(|p| p.peer_cidrs.iter().copied()))
            .collect();
        // The default ip_filter has no spans: only its part inside the VPC ever applies.
        for (e, span) in entries.iter().zip(spans) {
            if !scope.iter().any(|s| s.contains(&e.network)) {
                let list: Vec<String> = scope.iter().map(|n| n.to_string()).collect();
                self.err(
                    DiagCode::Ece,
                    *span,
                    format!("{what}: ip_filter entry {} is outside the VPC and its peerings", e.network),
                )
                .value(e.network.to_string())
                .hint(format!("ECE exposes nothing beyond {}; narrow the entry to that", list.join(", ")));
            }
        }
    }

    fn nodes(&mut self, what: &str, span: Span, nodes: &[(Spanned<String>, RawNode)], home: Home<'_>) -> Vec<Node> {
        if nodes.is_empty() && !matches!(home, Home::Subnet { name: "bastion_subnet", .. }) {
            self.err(DiagCode::Missing, span, format!("{what}: no `nodes`"))
                .hint("a service has at least one node: `nodes: { my-node-1: { public: 203.0.113.5 } }`");
        }
        let mut out = Vec::new();
        for (nname, n) in nodes {
            self.name(nname, "node");
            let first = match self.node_names.get(&nname.value) {
                Some(first) => Some(self.on(*first)),
                None => self.elsewhere.and_then(|e| e.node(&nname.value)).map(|p| format!("at {p}")),
            };
            if let Some(first) = first {
                self.err(DiagCode::DuplicateNode, nname.span, "node name used twice in the fleet")
                    .value(nname.value.clone())
                    .hint(format!("node names are unique across the fleet; it is first declared {first}"));
            } else {
                self.node_names.insert(nname.value.clone(), nname.span);
            }
            let addrs = |v: &mut Self, list: &[Spanned<String>], kind: &str| -> Vec<IpAddr> {
                let mut out = Vec::new();
                for a in list {
                    let Some(ip) = v.address(a, &format!("{kind} address of {}", nname.value)) else { continue };
                    if v.gateways.contains(&ip) {
                        v.err(DiagCode::GatewayAddress, a.span, "address of a management gateway")
                            .value(a.value.clone())
                            .hint("a node cannot have a gateway's address: the platform's management traffic would come from the node itself");
                    }
                    let owner = v.addresses.get(&ip).cloned().or_else(|| v.elsewhere.and_then(|e| e.address(&ip)));
                    if let Some(owner) = owner {
                        let hint = if owner == nname.value {
                            "listed twice on this node".to_string()
                        } else {
                            format!("already the address of node {owner}")
                        };
                        v.err(DiagCode::DuplicateAddress, a.span, "address used twice in the fleet")
                            .value(a.value.clone())
                            .hint(hint);
                    } else {
                        v.addresses.insert(ip, nname.value.clone());
                    }
                    out.push(ip);
                }
                out
            };
            let private = addrs(self, &n.private, "private");
            let public = addrs(self, &n.public, "public");
            match home {
                Home::Subnet { net, name } => {
                    if n.private.is_empty() {
                        self.err(
                            DiagCode::NodeAddresses,
                            n.span,
                            format!("node {} has no private address", nname.value),
                        )
                        .hint(format!("BYOC nodes take their private addresses from the project's {name}"));
                    }
                    for (ip, a) in private.iter().zip(&n.private) {
                        if let Some(net) = net.filter(|net| net.addr().is_ipv4() == ip.is_ipv4() && !net.contains(ip)) {
                            self.err(
                                DiagCode::Byoc,
                                a.span,
                                format!("private address of {} is outside the project's {name} {net}", nname.value),
                            )
                            .value(a.value.clone())
                            .hint(format!("put it inside {net}"));
                        }
                    }
                }
                Home::Vpc(v) => {
                    if n.private.is_empty() {
                        self.err(
                            DiagCode::NodeAddresses,
                            n.span,
                            format!("node {} is in VPC {} but has no private address", nname.value, v.name),
                        )
                        .hint(format!("add `private:` with an address inside {}", v.network_cidr));
                    }
                    for (ip, a) in private.iter().zip(&n.private) {
                        if ip.is_ipv4() == v.network_cidr.addr().is_ipv4() && !v.network_cidr.contains(ip) {
                            self.err(
                                DiagCode::AddressOutsideVpc,
                                a.span,
                                format!(
                                    "private address of {} is outside its VPC's network {}",
                                    nname.value, v.network_cidr
                                ),
                            )
                            .value(a.value.clone())
                            .hint(format!("VPC nodes take their private addresses from {}", v.network_cidr));
                        }
                    }
                }
                Home::Public if n.public.is_empty() => {
                    self.err(DiagCode::NodeAddresses, n.span, format!("node {} has no public address, and its service is not in a VPC", nname.value))
                        .hint("a service outside a VPC is reached on its nodes' public addresses: add `public:`, or put the service in a VPC");
                }
                Home::Public | Home::UnknownVpc => {}
            }
            out.push(Node { name: nname.value.clone(), private, public });
        }
        out
    }

    /// Warnings for entries covered by another entry and for entries a VPC service can
    /// never be reached from (outside the VPC and its peerings, with no public route).
    fn lint_ip_filter(&mut self, entries: &[IpFilterEntry], spans: &[Span], vpc: Option<&Vpc>, public: bool) {
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|i| {
            (entries[*i].network.addr().is_ipv6(), entries[*i].network.network(), entries[*i].network.prefix_len())
        });
        let mut open: Vec<usize> = Vec::new();
        for i in order {
            let net = entries[i].network;
            while open.last().is_some_and(|top| !entries[*top].network.contains(&net)) {
                open.pop();
            }
            if let Some(top) = open.last() {
                let other = entries[*top].network;
                let msg = if other == net {
                    format!("ip_filter entry {net} is listed twice (also {})", self.on(spans[*top]))
                } else {
                    format!("ip_filter entry {net} is covered by {other} ({})", self.place(spans[*top]))
                };
                self.diags.push(
                    Diagnostic::warning(DiagCode::CoveredEntry, msg)
                        .at(spans[i])
                        .value(net.to_string())
                        .hint("remove it: the wider entry already admits these clients"),
                );
            }
            open.push(i);
        }
        let Some(v) = vpc else { return };
        if public {
            return;
        }
        let scope: Vec<IpNet> = std::iter::once(v.network_cidr)
            .chain(v.peerings.iter().flat_map(|p| p.peer_cidrs.iter().copied()))
            .collect();
        for (e, span) in entries.iter().zip(spans) {
            if !scope.iter().any(|s| s.contains(&e.network) || e.network.contains(s)) {
                self.diags.push(
                    Diagnostic::warning(
                        DiagCode::UnreachableEntry,
                        format!("ip_filter entry {} can never reach the service: it lies outside VPC {} and its peerings", e.network, v.name),
                    )
                    .at(*span)
                    .value(e.network.to_string())
                    .hint("clients reach a VPC service only from the VPC and peered networks; add a peering, or enable public_access"),
                );
            }
        }
    }

    fn ip_filter(&mut self, what: &str, raw: &RawService) -> (Vec<IpFilterEntry>, Vec<Span>) {
        let Some(list) = &raw.user_config.ip_filter else {
            return (default_ip_filter(), Vec::new());
        };
        if list.value.is_empty() {
            self.diags.push(
                Diagnostic::warning(
                    DiagCode::EmptyIpFilter,
                    format!("{what}: ip_filter is empty, so every client is locked out"),
                )
                .at(list.span)
                .value("[]")
                .hint("list the client networks that may connect, or remove ip_filter for the default 0.0.0.0/0, ::/0"),
            );
        }
        if list.value.len() > MAX_IP_FILTER {
            self.err(
                DiagCode::IpFilterTooLong,
                list.span,
                format!("{what}: ip_filter has more than {MAX_IP_FILTER} entries"),
            )
            .value(format!("{} entries", list.value.len()))
            .hint("aggregate adjacent networks into wider CIDRs");
        }
        let mut out = Vec::with_capacity(list.value.len());
        let mut spans = Vec::with_capacity(list.value.len());
        for e in &list.value {
            if e.network.value.len() > MAX_NETWORK_LEN {
                self.err(
                    DiagCode::FieldTooLong,
                    e.network.span,
                    format!("ip_filter network is longer than {MAX_NETWORK_LEN} characters"),
                )
                .value(e.network.value.clone())
                .hint("write the CIDR in its short form");
                continue;
            }
            if let Some(d) = &e.description {
                if d.value.chars().count() > MAX_DESCRIPTION_LEN {
                    self.err(
                        DiagCode::FieldTooLong,
                        d.span,
                        format!("ip_filter description is longer than {MAX_DESCRIPTION_LEN} characters"),
                    )
                    .value(format!("{} characters", d.value.chars().count()))
                    .hint("shorten the description");
                }
                if d.value.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
                    self.err(
                        DiagCode::ControlCharacter,
                        d.span,
                        "ip_filter description holds a control character (a line break, tab or similar)",
                    )
                    .value(format!("{:?}", d.value))
                    .hint("write the description on one line, without control characters");
                }
            }
            if let Some(network) = self.cidr(&e.network, "ip_filter") {
                out.push(IpFilterEntry { network, description: e.description.as_ref().map(|d| d.value.clone()) });
                spans.push(e.network.span);
            }
        }
        (out, spans)
    }

    fn unknown_component(
        &mut self,
        c: &Spanned<String>,
        ty: &crate::catalog::ServiceType,
        key: &str,
        allowed: impl Fn(&crate::catalog::Component) -> bool,
    ) {
        let names: Vec<&str> = ty.components.iter().filter(|x| allowed(x)).map(|x| x.name.as_str()).collect();
        if ty.component(&c.value).is_some() {
            self.err(
                DiagCode::UnknownComponent,
                c.span,
                format!("component {} of {} cannot be opened with {key}", c.value, ty.name),
            )
            .value(c.value.clone())
            .hint(if names.is_empty() {
                format!("{} has no {key} components", ty.name)
            } else {
                format!("{key} components of {}: {}", ty.name, names.join(", "))
            });
            return;
        }
        let hint = match did_you_mean(&c.value, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("{key} components of {}: {}", ty.name, names.join(", ")),
        };
        self.err(DiagCode::UnknownComponent, c.span, format!("{} has no component {}", ty.name, c.value))
            .value(c.value.clone())
            .hint(hint);
    }

    fn access(
        &mut self,
        flags: &[(Spanned<String>, Spanned<bool>)],
        ty: &crate::catalog::ServiceType,
        key: &str,
        allowed: impl Fn(&crate::catalog::Component) -> bool + Copy,
    ) -> BTreeSet<String> {
        let mut on = BTreeSet::new();
        for (c, b) in flags {
            match ty.component(&c.value) {
                Some(comp) if allowed(comp) => {
                    if b.value {
                        on.insert(c.value.clone());
                    }
                }
                _ => self.unknown_component(c, ty, key, allowed),
            }
        }
        on
    }

    fn privatelink(&mut self, what: &str, raw: &RawService, cloud: Option<&Cloud>) -> Option<Privatelink> {
        let mut out = None;
        for (i, (kind, res)) in raw.privatelink.iter().enumerate() {
            if i > 0 {
                self.err(DiagCode::Privatelink, kind.span, format!("{what}: more than one privatelink resource"))
                    .value(kind.value.clone())
                    .hint("a service has one private-link endpoint service, in its own cloud");
                continue;
            }
            if raw.vpc.is_none() {
                self.err(
                    DiagCode::Privatelink,
                    kind.span,
                    format!("{what}: a private link needs the service in a project VPC"),
                )
                .hint("add `vpc:` to the service");
                continue;
            }
            let provider = Provider::PREFIXES
                .iter()
                .map(|(_, p)| *p)
                .find(|p| p.as_str() == kind.value)
                .expect("decoder only accepts aws, azure, google");
            if let Some(c) = cloud {
                if c.provider != provider {
                    self.err(
                        DiagCode::Privatelink,
                        kind.span,
                        format!("{what}: a {} private link on a service in {}", kind.value, c.name),
                    )
                    .value(kind.value.clone())
                    .hint(format!("use `privatelink: {{ {}: ... }}`", c.provider.as_str()));
                    continue;
                }
            }
            // Google's connections are approved one by one; AWS and Azure name who may connect.
            if res.principals.is_empty() && provider != Provider::Google {
                self.err(DiagCode::Privatelink, kind.span, format!("{what}: a private link without principals")).hint(
                    "list who may connect an endpoint, e.g. `principals: [\"arn:aws:iam::012345678901:user/mwf\"]`",
                );
            }
            for p in &res.principals {
                if provider == Provider::Aws && !p.value.starts_with("arn:") {
                    self.err(DiagCode::Privatelink, p.span, "AWS principals are IAM ARNs")
                        .value(p.value.clone())
                        .hint("write `arn:aws:iam::<account>:<user|role|root>...`");
                }
            }
            let connections = res.connections.iter().filter_map(|(id, c)| self.connection(what, id, c)).collect();
            out = Some(Privatelink {
                provider,
                principals: res.principals.iter().map(|p| p.value.clone()).collect(),
                connections,
            });
        }
        out
    }

    /// One connection of a private link: its id, host, state and addresses (its ports are
    /// checked with the service's listeners, in [`Self::connection_ports`]).
    fn connection(&mut self, what: &str, id: &Spanned<String>, c: &RawConnection) -> Option<Connection> {
        let mut ok = true;
        if !is_connection_id(&id.value) {
            self.err(DiagCode::Privatelink, id.span, format!("{what}: invalid private-link connection id"))
                .value(id.value.clone())
                .hint("a connection id is 1 to 40 lower-case letters, digits and dashes");
            ok = false;
        }
        let state = match &c.state {
            None => {
                self.err(DiagCode::Missing, c.span, format!("{what}: connection {} has no `state`", id.value))
                    .hint("one of pending-user-approval, user-approved, connected, active");
                None
            }
            Some(st) => {
                let parsed = ConnectionState::parse(&st.value);
                if parsed.is_none() {
                    let names = ConnectionState::ALL.map(ConnectionState::as_str);
                    let hint = match did_you_mean(&st.value, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("one of {}", names.join(", ")),
                    };
                    self.err(DiagCode::Privatelink, st.span, format!("{what}: unknown connection state"))
                        .value(st.value.clone())
                        .hint(hint);
                }
                parsed
            }
        };
        let host = match &c.host {
            Some(h)
                if !h.value.is_empty() && h.value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) =>
            {
                Some(h.value.clone())
            }
            Some(h) => {
                self.err(DiagCode::Privatelink, h.span, format!("{what}: connection {}: not a host name", id.value))
                    .value(h.value.clone())
                    .hint("letters, digits, dashes and dots, e.g. privatelink-1-kafka-events-acme-stream");
                None
            }
            None => {
                self.err(DiagCode::Missing, c.span, format!("{what}: connection {} has no `host`", id.value))
                    .hint("e.g. `host: privatelink-1-kafka-events-acme-stream`");
                None
            }
        };
        for a in [&c.address, &c.user_ip_address].into_iter().flatten() {
            ok &= self.address(a, &format!("{what}: connection {}", id.value)).is_some();
        }
        let mut ports = BTreeMap::new();
        for (k, v) in &c.ports {
            match u16::try_from(v.value) {
                Ok(p) if (CONNECTION_PORT_MIN..=CONNECTION_PORT_MAX).contains(&p) => {
                    ports.insert(k.value.clone(), p);
                }
                _ => {
                    self.err(
                        DiagCode::PortRange,
                        v.span,
                        format!("{what}: port of connection {} is outside 10000–31000", id.value),
                    )
                    .value(v.value.to_string())
                    .hint("private-link connection ports come from the pool 10000–31000");
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        Some(Connection { id: id.value.clone(), host: host?, state: state?, ports })
    }

    /// A connection's ports: one per component with a private-link port of its own
    /// (Kafka brokers), none of them taken by another listener of the node, the other
    /// connections or the management and web ports.
    fn connection_ports(
        &mut self,
        what: &str,
        raw: &RawService,
        ty: &crate::catalog::ServiceType,
        ports: &BTreeMap<ListenerKey, u16>,
        platform: &Platform,
    ) {
        let mut taken: BTreeMap<u16, String> = ports.iter().map(|(k, p)| (*p, k.pin_name())).collect();
        for (name, p) in [("ssh_port", platform.ssh_port), ("platform_port", platform.platform_port)] {
            taken.insert(p, format!("platform.{name}"));
        }
        taken.insert(platform.web_port, "platform.web_port".into());
        for (_, res) in &raw.privatelink {
            for (id, c) in &res.connections {
                for (k, v) in &c.ports {
                    let with_own = ty.component(&k.value).filter(|c| c.privatelink_offset.is_some());
                    if with_own.is_none() {
                        let own: Vec<&str> = ty
                            .components
                            .iter()
                            .filter(|c| c.privatelink_offset.is_some())
                            .map(|c| c.name.as_str())
                            .collect();
                        let hint = match own.as_slice() {
                            [] => format!("the connections of a {} service share its privatelink port", ty.name),
                            list => format!("components with ports of their own per connection: {}", list.join(", ")),
                        };
                        self.err(
                            DiagCode::UnknownListener,
                            k.span,
                            format!("{what}: connection {}: no component `{}` with its own port", id.value, k.value),
                        )
                        .value(k.value.clone())
                        .hint(hint);
                        continue;
                    }
                    let Ok(port) = u16::try_from(v.value) else { continue };
                    let me = format!("connection {} {}", id.value, k.value);
                    if let Some(other) = taken.get(&port) {
                        self.err(
                            DiagCode::PortCollision,
                            v.span,
                            format!("{what}: port of connection {} collides with {other}", id.value),
                        )
                        .value(port.to_string())
                        .hint("a connection's port is its own: give it a free port of 10000–31000");
                        continue;
                    }
                    taken.insert(port, me);
                }
            }
        }
    }

    fn ports(
        &mut self,
        project: &str,
        base_port: Option<u16>,
        service: &str,
        raw: &RawService,
        ty: &crate::catalog::ServiceType,
        platform: &Platform,
    ) -> (BTreeMap<ListenerKey, u16>, BTreeSet<ListenerKey>) {
        let mut ports = allocate(ty, service_base(base_port, project, service));
        let mut pinned = BTreeSet::new();
        let mut pin_spans: BTreeMap<ListenerKey, Span> = BTreeMap::new();
        let known: Vec<ListenerKey> = ports.keys().cloned().collect();
        let names: Vec<String> = known.iter().map(ListenerKey::pin_name).collect();
        for (key, value) in &raw.ports {
            let Some(lk) =
                known.iter().find(|k| k.pin_name() == key.value || (key.value == format!("{}.dynamic", k.pin_name())))
            else {
                let web = ty
                    .components
                    .iter()
                    .find(|c| c.web && (key.value == c.name || key.value.starts_with(&format!("{}.", c.name))));
                let hint = if let Some(w) = web {
                    format!("{} is a web component: it listens on platform.web_port ({})", w.name, platform.web_port)
                } else {
                    match did_you_mean(&key.value, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("listeners of {}: {}", ty.name, names.join(", ")),
                    }
                };
                self.err(
                    DiagCode::UnknownListener,
                    key.span,
                    format!("no listener `{}` to pin in a {} service", key.value, ty.name),
                )
                .value(key.value.clone())
                .hint(hint);
                continue;
            };
            if !(i64::from(PORT_MIN)..=i64::from(PORT_MAX)).contains(&value.value) {
                self.err(
                    DiagCode::PortRange,
                    value.span,
                    format!("pinned port of {} is outside 10000–30000", key.value),
                )
                .value(value.value.to_string())
                .hint("service ports live in 10000–30000");
                continue;
            }
            ports.insert(lk.clone(), value.value as u16);
            pinned.insert(lk.clone());
            pin_spans.insert(lk.clone(), value.span);
        }
        // Two listeners of one node on one port: only a pin can cause it (offsets are unique).
        let mut by_port: BTreeMap<u16, Vec<&ListenerKey>> = BTreeMap::new();
        for (k, p) in &ports {
            by_port.entry(*p).or_default().push(k);
        }
        for (port, keys) in by_port.iter().filter(|(_, k)| k.len() > 1) {
            for k in keys.iter().filter(|k| pinned.contains(**k)) {
                let others: Vec<String> = keys.iter().filter(|o| *o != k).map(|o| o.pin_name()).collect();
                self.err(
                    DiagCode::PortCollision,
                    pin_spans[*k],
                    format!("pinned port of {} collides with {}", k.pin_name(), others.join(", ")),
                )
                .value(port.to_string())
                .hint("the listeners of one node need distinct ports: pin a free port, or drop the pin");
            }
        }
        (ports, pinned)
    }

    fn test<'s>(
        &mut self,
        raw: &RawTest,
        find: &dyn Fn(&str) -> Option<&'s Service>,
        names: &dyn Fn() -> Vec<String>,
    ) -> Option<Test> {
        let egress = match &raw.direction {
            None => false,
            Some(d) if d.value == "ingress" => false,
            Some(d) if d.value == "egress" => true,
            Some(d) => {
                self.err(DiagCode::Test, d.span, "unknown test direction")
                    .value(d.value.clone())
                    .hint("`ingress` (the default: from an address to a node) or `egress` (from a node to an address)");
                return None;
            }
        };
        if egress {
            return self.egress_test(raw, find, names);
        }
        let from = match &raw.from {
            Some(f) => self.address(f, "test `from`"),
            None => {
                self.err(DiagCode::Test, raw.span, "test without `from`")
                    .hint("give the source address: `from: 198.51.100.7`");
                None
            }
        };
        let Some(to) = &raw.to else {
            self.err(DiagCode::Test, raw.span, "test without `to`").hint("name the destination node: `to: pg-main-1`");
            return None;
        };
        let (node, route) = match to.value.split_once('.') {
            Some((n, r)) if ["dynamic", "public", "privatelink", "cluster"].contains(&r) => {
                (n.to_string(), Some(r.to_string()))
            }
            _ => (to.value.clone(), None),
        };
        if self.servers.contains(&node) {
            return self.server_test(raw, from, to, node, route);
        }
        let Some(svc) = find(&node) else {
            let all = names();
            let hint = match did_you_mean(&node, all.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "name a node of the fleet, optionally with `.dynamic`, `.public` or `.privatelink`".into(),
            };
            if !self.node_names.contains_key(&node) {
                self.err(DiagCode::Test, to.span, "test names an unknown node").value(to.value.clone()).hint(hint);
            }
            return None;
        };
        let probes = |v: &mut Self, list: &[Spanned<String>]| -> Vec<Probe> {
            let mut out = Vec::new();
            for p in list {
                if let Some((port, proto)) = p.value.split_once('/') {
                    let proto = match proto {
                        "tcp" => Some(Protocol::Tcp),
                        "udp" => Some(Protocol::Udp),
                        _ => None,
                    };
                    match (port.parse::<u16>(), proto) {
                        (Ok(port), Some(proto)) if port > 0 => out.push(Probe::Port(port, proto)),
                        _ => {
                            v.err(DiagCode::Test, p.span, "not a `port/protocol`")
                                .value(p.value.clone())
                                .hint("write e.g. `22/tcp` or `500/udp`");
                        }
                    }
                } else if svc.service_type.component(&p.value).is_some() {
                    out.push(Probe::Component(p.value.clone()));
                } else {
                    let names: Vec<&str> = svc.service_type.components.iter().map(|c| c.name.as_str()).collect();
                    let hint = match did_you_mean(&p.value, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "components of {}: {}; or write `port/tcp`",
                            svc.service_type.name,
                            names.join(", ")
                        ),
                    };
                    v.err(DiagCode::Test, p.span, format!("{} has no component {}", svc.service_type.name, p.value))
                        .value(p.value.clone())
                        .hint(hint);
                }
            }
            out
        };
        let accept = probes(self, &raw.accept);
        let deny = probes(self, &raw.deny);
        Some(Test { from: from?, to: node, egress: false, route, accept, deny, span: raw.span })
    }

    /// `direction: egress`: `from` a node, `to` an address, `port/proto` probes only.
    fn egress_test<'s>(
        &mut self,
        raw: &RawTest,
        find: &dyn Fn(&str) -> Option<&'s Service>,
        names: &dyn Fn() -> Vec<String>,
    ) -> Option<Test> {
        let Some(from) = &raw.from else {
            self.err(DiagCode::Test, raw.span, "egress test without `from`")
                .hint("name the sending node: `from: pg-main-1`");
            return None;
        };
        if find(&from.value).is_none() {
            if !self.node_names.contains_key(&from.value) {
                let all = names();
                let hint = match did_you_mean(&from.value, all.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "an egress test goes `from` a node of the fleet `to` an address".into(),
                };
                self.err(DiagCode::Test, from.span, "egress test from an unknown node")
                    .value(from.value.clone())
                    .hint(hint);
            }
            return None;
        }
        let to = match &raw.to {
            Some(t) => self.address(t, "egress test `to`"),
            None => {
                self.err(DiagCode::Test, raw.span, "egress test without `to`")
                    .hint("give the destination address: `to: 192.0.2.80`");
                None
            }
        };
        let probe = |v: &mut Self, list: &[Spanned<String>]| -> Vec<Probe> {
            let mut out = Vec::new();
            for p in list {
                let parsed = p.value.split_once('/').and_then(|(port, proto)| {
                    let proto = match proto {
                        "tcp" => Protocol::Tcp,
                        "udp" => Protocol::Udp,
                        _ => return None,
                    };
                    port.parse::<u16>().ok().filter(|p| *p > 0).map(|port| Probe::Port(port, proto))
                });
                match parsed {
                    Some(x) => out.push(x),
                    None => {
                        v.err(DiagCode::Test, p.span, "an egress test takes `port/protocol`")
                            .value(p.value.clone())
                            .hint("write e.g. `443/tcp` or `53/udp` (components belong to the destination of an ingress test)");
                    }
                }
            }
            out
        };
        let accept = probe(self, &raw.accept);
        let deny = probe(self, &raw.deny);
        Some(Test { from: to?, to: from.value.clone(), egress: true, route: None, accept, deny, span: raw.span })
    }
}

//! The fleet file as written: every value still a string or number with its span.
//!
//! This is the first of two steps (ripgrep's lowargs → hiargs): `decode` only checks the
//! *shape* (known keys, value types) and keeps going after a problem; `validate` then
//! turns these raw values into the typed `Fleet`. Keys mirror the managed-platform
//! interface and are never renamed.

use crate::diag::{did_you_mean, DiagCode, Diagnostic, Diagnostics};
use crate::yaml::{Node, NodeKind, Span};
use schemars::JsonSchema;
use std::collections::BTreeMap;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

/// The whole file.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "FleetFile")]
pub struct RawFleet {
    /// `version:` (must be 1).
    #[schemars(with = "i64", range(min = 1, max = 1))]
    pub version: Option<Spanned<i64>>,
    /// `platform:`.
    #[schemars(required)]
    pub platform: RawPlatform,
    /// `projects:` in file order.
    #[schemars(with = "Option<BTreeMap<String, RawProject>>")]
    pub projects: Vec<(Spanned<String>, RawProject)>,
    /// `tests:`.
    #[schemars(with = "Option<Vec<RawTest>>")]
    pub tests: Vec<RawTest>,
    /// `deployments:` in file order (zones, subsystems and clusters; `crate::deployment`).
    #[schemars(with = "Option<BTreeMap<String, crate::deployment::RawDeployment>>")]
    pub deployments: Vec<(Spanned<String>, crate::deployment::RawDeployment)>,
}

/// `platform:`.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Platform")]
pub struct RawPlatform {
    /// Where the `platform` mapping was written (for "missing" messages).
    #[schemars(skip)]
    pub span: Option<Span>,
    /// Management gateway addresses.
    #[schemars(with = "Vec<String>")]
    pub management_gateways: Option<Vec<Spanned<String>>>,
    /// Management SSH port.
    pub ssh_port: Option<Spanned<i64>>,
    /// Platform management port.
    pub platform_port: Option<Spanned<i64>>,
    /// Port of the web UIs.
    pub web_port: Option<Spanned<i64>>,
    /// IPsec between nodes.
    pub ipsec: Option<Spanned<bool>>,
    /// The BYOC bastion's tunnel port to the workloads.
    pub bastion_proxy_port: Option<Spanned<i64>>,
}

/// One project.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Project")]
pub struct RawProject {
    /// `base_port:`.
    pub base_port: Option<Spanned<i64>>,
    /// `vpcs:` in file order.
    #[schemars(with = "Option<BTreeMap<String, RawVpc>>")]
    pub vpcs: Vec<(Spanned<String>, RawVpc)>,
    /// `services:` in file order.
    #[schemars(with = "Option<BTreeMap<String, RawService>>")]
    pub services: Vec<(Spanned<String>, RawService)>,
    /// `byoc:` (bring your own cloud: bastion and workload subnets in the customer's account).
    #[schemars(with = "Option<RawByoc>")]
    pub byoc: Option<RawByoc>,
    /// `compliance:` (`ece`: enhanced compliance).
    #[schemars(with = "Option<String>")]
    pub compliance: Option<Spanned<String>>,
    /// `socks5_proxy:` (ECE: the only way out).
    #[schemars(with = "Option<RawSocks5Proxy>")]
    pub socks5_proxy: Option<RawSocks5Proxy>,
}

/// `byoc:` of a project.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Byoc")]
pub struct RawByoc {
    /// The mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `cloud:`.
    #[schemars(with = "String")]
    pub cloud: Option<Spanned<String>>,
    /// `network_cidr:` (the customer's network the platform runs in).
    #[schemars(with = "String")]
    pub network_cidr: Option<Spanned<String>>,
    /// `bastion_subnet:`.
    #[schemars(with = "String")]
    pub bastion_subnet: Option<Spanned<String>>,
    /// `workload_subnet:`.
    #[schemars(with = "String")]
    pub workload_subnet: Option<Spanned<String>>,
    /// `bastions:` in file order.
    #[schemars(with = "BTreeMap<String, RawNode>")]
    pub bastions: Vec<(Spanned<String>, RawNode)>,
    /// `customer_networks:`.
    #[schemars(with = "Option<Vec<String>>")]
    pub customer_networks: Option<Vec<Spanned<String>>>,
    /// `egress:` (default everything).
    #[schemars(with = "Option<Vec<String>>")]
    pub egress: Option<Vec<Spanned<String>>>,
}

/// `socks5_proxy:` of an ECE project.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Socks5Proxy")]
pub struct RawSocks5Proxy {
    /// The mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `address:`.
    #[schemars(with = "String")]
    pub address: Option<Spanned<String>>,
    /// `port:`.
    #[schemars(with = "u16")]
    pub port: Option<Spanned<i64>>,
    /// `allow:` (networks, `host:port` or `network:port`).
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
}

/// One project VPC.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Vpc")]
pub struct RawVpc {
    /// The VPC's mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `cloud:`.
    #[schemars(with = "String")]
    pub cloud: Option<Spanned<String>>,
    #[schemars(with = "String")]
    /// `network_cidr:`.
    pub network_cidr: Option<Spanned<String>>,
    /// `privatelink_cidrs:`.
    pub privatelink_cidrs: Option<Vec<Spanned<String>>>,
    /// `peerings:`.
    #[schemars(with = "Option<Vec<RawPeering>>")]
    pub peerings: Vec<RawPeering>,
}

/// One VPC peering.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Peering")]
pub struct RawPeering {
    /// The peering's mapping.
    #[schemars(skip)]
    pub span: Span,
    #[schemars(with = "String")]
    /// `peer_vpc:` (the customer's VPC id).
    pub peer_vpc: Option<Spanned<String>>,
    /// `peer_cidrs:`.
    pub peer_cidrs: Vec<Spanned<String>>,
}

/// One service.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Service")]
pub struct RawService {
    /// The service's mapping.
    #[schemars(skip)]
    pub span: Span,
    #[schemars(rename = "type", with = "String")]
    /// `type:`.
    pub service_type: Option<Spanned<String>>,
    /// `cloud:`.
    #[schemars(with = "String")]
    pub cloud: Option<Spanned<String>>,
    /// `vpc:`.
    pub vpc: Option<Spanned<String>>,
    /// `nodes:` in file order.
    #[schemars(with = "BTreeMap<String, RawNode>")]
    pub nodes: Vec<(Spanned<String>, RawNode)>,
    /// `user_config:`.
    #[schemars(with = "Option<RawUserConfig>")]
    pub user_config: RawUserConfig,
    /// `privatelink:` resources by cloud kind (`aws`, `azure`, `google`).
    #[schemars(with = "Option<BTreeMap<String, RawPrivatelink>>")]
    pub privatelink: Vec<(Spanned<String>, RawPrivatelink)>,
    /// `ports:` pins.
    #[schemars(with = "Option<BTreeMap<String, u16>>")]
    pub ports: Vec<(Spanned<String>, Spanned<i64>)>,
    /// `byoc: true`: the service's nodes are workloads of its project's BYOC network.
    #[schemars(with = "Option<bool>")]
    pub byoc: Option<Spanned<bool>>,
}

/// One node's addresses.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Node")]
pub struct RawNode {
    /// The node's mapping.
    #[schemars(skip)]
    pub span: Span,
    #[schemars(with = "Option<crate::schema::OneOrMany>")]
    /// `private:` addresses.
    pub private: Vec<Spanned<String>>,
    #[schemars(with = "Option<crate::schema::OneOrMany>")]
    /// `public:` addresses.
    pub public: Vec<Spanned<String>>,
}

/// `user_config:` (the keys that shape the firewall).
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "UserConfig")]
pub struct RawUserConfig {
    /// `ip_filter:` and where the list was written; `None` when absent (then the default).
    pub ip_filter: Option<Spanned<Vec<RawIpFilterEntry>>>,
    /// `public_access.<component>`.
    #[schemars(with = "Option<BTreeMap<String, bool>>")]
    pub public_access: Vec<(Spanned<String>, Spanned<bool>)>,
    /// `private_access.<component>` (accepted for compatibility; not a firewall route).
    #[schemars(with = "Option<BTreeMap<String, bool>>")]
    pub private_access: Vec<(Spanned<String>, Spanned<bool>)>,
    /// `privatelink_access.<component>`.
    #[schemars(with = "Option<BTreeMap<String, bool>>")]
    pub privatelink_access: Vec<(Spanned<String>, Spanned<bool>)>,
    /// `static_ips:`.
    pub static_ips: Option<Spanned<bool>>,
}

/// One `ip_filter` entry: a CIDR string or `{network, description}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawIpFilterEntry {
    /// The network as written.
    pub network: Spanned<String>,
    /// The description, if any.
    pub description: Option<Spanned<String>>,
}

/// A private-link resource.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Privatelink")]
pub struct RawPrivatelink {
    /// `principals:`.
    #[schemars(with = "Option<Vec<String>>")]
    pub principals: Vec<Spanned<String>>,
    /// `connections:` by connection id: the endpoints the cloud side registered.
    #[schemars(with = "Option<BTreeMap<String, RawConnection>>")]
    pub connections: Vec<(Spanned<String>, RawConnection)>,
}

/// One private-link connection (an endpoint in the customer's account).
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "PrivatelinkConnection")]
pub struct RawConnection {
    /// The entry's mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `host:` (`privatelink-N-<service>-<project>…`).
    #[schemars(with = "String")]
    pub host: Option<Spanned<String>>,
    /// `endpoint_id:` the endpoint's id in the customer's cloud.
    #[schemars(with = "Option<String>")]
    pub endpoint_id: Option<Spanned<String>>,
    /// `dns_name:` of the endpoint.
    #[schemars(with = "Option<String>")]
    pub dns_name: Option<Spanned<String>>,
    /// `address:` the endpoint's client-facing address.
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// `state:` (`pending-user-approval`, `user-approved`, `connected`, `active`).
    #[schemars(with = "String")]
    pub state: Option<Spanned<String>>,
    /// `user_ip_address:` the address the user approved the endpoint with (Azure, Google).
    #[schemars(with = "Option<String>")]
    pub user_ip_address: Option<Spanned<String>>,
    /// `ports:` the connection's own port per component (Kafka brokers).
    #[schemars(with = "Option<BTreeMap<String, u16>>")]
    pub ports: Vec<(Spanned<String>, Spanned<i64>)>,
}

/// One `tests:` assertion.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Test")]
pub struct RawTest {
    /// The entry's mapping.
    #[schemars(skip)]
    pub span: Span,
    #[schemars(with = "String")]
    /// `from:` (an address).
    pub from: Option<Spanned<String>>,
    #[schemars(with = "String")]
    /// `to:` (a node, optionally `.route`).
    pub to: Option<Spanned<String>>,
    /// `accept:` (components or `port/proto`).
    #[schemars(with = "Option<Vec<String>>")]
    pub accept: Vec<Spanned<String>>,
    /// `deny:` (components or `port/proto`).
    #[schemars(with = "Option<Vec<String>>")]
    pub deny: Vec<Spanned<String>>,
    /// `direction:` (`ingress`, the default, or `egress`: `from` a node `to` an address).
    #[schemars(with = "Option<String>")]
    pub direction: Option<Spanned<String>>,
}

/// Decodes a parsed document, recording every shape problem in `diags`.
pub fn decode(root: &Node, diags: &mut Diagnostics) -> RawFleet {
    let mut d = Decoder { diags };
    d.fleet(root)
}

/// One part of a fleet, decoded on its own (a control-plane write's body): the same
/// shape checks as in a whole fleet file.
pub enum Part<'a> {
    /// `platform:`.
    Platform,
    /// A project called this.
    Project(&'a str),
    /// A VPC called this.
    Vpc(&'a str),
    /// One peering of a VPC.
    Peering,
    /// A service called this.
    Service(&'a str),
    /// A node called this.
    Node(&'a str),
    /// A service's `user_config`.
    UserConfig,
}

/// A decoded part (the variant of the `Part` asked for).
pub enum RawPart {
    /// `platform:`.
    Platform(RawPlatform),
    /// A project.
    Project(RawProject),
    /// A VPC.
    Vpc(RawVpc),
    /// A peering.
    Peering(RawPeering),
    /// A service.
    Service(RawService),
    /// A node.
    Node(RawNode),
    /// A `user_config`.
    UserConfig(RawUserConfig),
}

/// Decodes one part of a fleet, recording every shape problem in `diags`.
pub fn decode_part(part: Part<'_>, node: &Node, diags: &mut Diagnostics) -> RawPart {
    let mut d = Decoder { diags };
    match part {
        Part::Platform => RawPart::Platform(d.platform(node)),
        Part::Project(n) => RawPart::Project(d.project(node, n)),
        Part::Vpc(n) => RawPart::Vpc(d.vpc(node, n)),
        Part::Peering => RawPart::Peering(d.peering(node)),
        Part::Service(n) => RawPart::Service(d.service(node, n)),
        Part::Node(n) => RawPart::Node(d.node(node, n)),
        Part::UserConfig => RawPart::UserConfig(d.user_config(node)),
    }
}

pub(crate) struct Decoder<'a> {
    pub(crate) diags: &'a mut Diagnostics,
}

/// The checked keys of one mapping.
pub(crate) struct Fields<'n> {
    pub(crate) pairs: Vec<(&'static str, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl Decoder<'_> {
    fn type_error(&mut self, node: &Node, expected: &str, what: &str) {
        self.diags.push(
            Diagnostic::error(DiagCode::Type, format!("{what}: expected {expected}, found {}", node.kind_name()))
                .at(node.span)
                .value(node.display_value()),
        );
    }

    /// The pairs of a mapping with free keys (names of projects, nodes, ...).
    pub(crate) fn entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(Spanned<String>, &'n Node)> {
        match &node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Map(pairs) => {
                let mut out: Vec<(Spanned<String>, &'n Node)> = Vec::new();
                for (k, v) in pairs {
                    let Some(key) = self.string(k, what) else { continue };
                    if out.iter().any(|(seen, _)| seen.value == key.value) {
                        self.diags.push(
                            Diagnostic::error(
                                DiagCode::DuplicateKey,
                                format!("{what}: `{}` is written twice", key.value),
                            )
                            .at(key.span)
                            .value(key.value.clone())
                            .hint("each name may appear once; merge the two entries"),
                        );
                        continue;
                    }
                    out.push((key, v));
                }
                out
            }
            _ => {
                self.type_error(node, "a mapping", what);
                Vec::new()
            }
        }
    }

    /// A mapping with a fixed set of keys; unknown keys are reported with a suggestion.
    pub(crate) fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&'static str]) -> Option<Fields<'n>> {
        if node.kind == NodeKind::Null {
            return Some(Fields { pairs: Vec::new() });
        }
        if !matches!(node.kind, NodeKind::Map(_)) {
            self.type_error(node, "a mapping", what);
            return None;
        }
        let mut pairs = Vec::new();
        for (key, value) in self.entries(node, what) {
            if let Some(k) = known.iter().find(|k| **k == key.value) {
                pairs.push((*k, value));
            } else {
                let mut d = Diagnostic::error(DiagCode::UnknownKey, format!("{what}: unknown key `{}`", key.value))
                    .at(key.span)
                    .value(key.value.clone());
                d = match did_you_mean(&key.value, known.iter().copied()) {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint(format!("known keys: {}", known.join(", "))),
                };
                self.diags.push(d);
            }
        }
        Some(Fields { pairs })
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar { text, .. } => Some(Spanned { value: text.clone(), span: node.span }),
            _ => {
                self.type_error(node, "a string", what);
                None
            }
        }
    }

    pub(crate) fn int(&mut self, node: &Node, what: &str) -> Option<Spanned<i64>> {
        if let NodeKind::Scalar { text, plain: true } = &node.kind {
            if let Ok(v) = text.parse::<i64>() {
                return Some(Spanned { value: v, span: node.span });
            }
        }
        self.type_error(node, "an integer", what);
        None
    }

    pub(crate) fn boolean(&mut self, node: &Node, what: &str) -> Option<Spanned<bool>> {
        if let NodeKind::Scalar { text, plain: true } = &node.kind {
            match text.as_str() {
                "true" => return Some(Spanned { value: true, span: node.span }),
                "false" => return Some(Spanned { value: false, span: node.span }),
                _ => {}
            }
        }
        self.type_error(node, "true or false", what);
        None
    }

    pub(crate) fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(items) => items,
            NodeKind::Null => &[],
            _ => {
                self.type_error(node, "a list", what);
                &[]
            }
        }
    }

    pub(crate) fn strings(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        self.list(node, what).iter().filter_map(|n| self.string(n, what)).collect()
    }

    /// One address or a list of them.
    fn one_or_many(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Seq(_) => self.strings(node, what),
            NodeKind::Null => Vec::new(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    fn flags(&mut self, node: &Node, what: &str) -> Vec<(Spanned<String>, Spanned<bool>)> {
        self.entries(node, what)
            .into_iter()
            .filter_map(|(k, v)| self.boolean(v, &format!("{what}.{}", k.value)).map(|b| (k, b)))
            .collect()
    }

    fn fleet(&mut self, root: &Node) -> RawFleet {
        let mut fleet = RawFleet::default();
        let Some(f) = self.fields(root, "fleet file", &["version", "platform", "projects", "tests", "deployments"])
        else {
            return fleet;
        };
        fleet.version = f.get("version").and_then(|n| self.int(n, "version"));
        if let Some(p) = f.get("platform") {
            fleet.platform = self.platform(p);
        }
        if let Some(p) = f.get("projects") {
            for (name, node) in self.entries(p, "projects") {
                let project = self.project(node, &name.value);
                fleet.projects.push((name, project));
            }
        }
        if let Some(t) = f.get("tests") {
            for node in self.list(t, "tests") {
                fleet.tests.push(self.test(node));
            }
        }
        if let Some(d) = f.get("deployments") {
            fleet.deployments = self.deployments(d);
        }
        fleet
    }

    fn platform(&mut self, node: &Node) -> RawPlatform {
        let mut p = RawPlatform { span: Some(node.span), ..RawPlatform::default() };
        let known = ["management_gateways", "ssh_port", "platform_port", "web_port", "ipsec", "bastion_proxy_port"];
        let Some(f) = self.fields(node, "platform", &known) else { return p };
        p.management_gateways = f.get("management_gateways").map(|n| self.strings(n, "platform.management_gateways"));
        p.ssh_port = f.get("ssh_port").and_then(|n| self.int(n, "platform.ssh_port"));
        p.platform_port = f.get("platform_port").and_then(|n| self.int(n, "platform.platform_port"));
        p.web_port = f.get("web_port").and_then(|n| self.int(n, "platform.web_port"));
        p.ipsec = f.get("ipsec").and_then(|n| self.boolean(n, "platform.ipsec"));
        p.bastion_proxy_port = f.get("bastion_proxy_port").and_then(|n| self.int(n, "platform.bastion_proxy_port"));
        p
    }

    fn project(&mut self, node: &Node, name: &str) -> RawProject {
        let mut p = RawProject::default();
        let what = format!("project {name}");
        let known = ["base_port", "vpcs", "services", "byoc", "compliance", "socks5_proxy"];
        let Some(f) = self.fields(node, &what, &known) else { return p };
        p.byoc = f.get("byoc").map(|n| self.byoc(n));
        p.compliance = f.get("compliance").and_then(|n| self.string(n, "compliance"));
        p.socks5_proxy = f.get("socks5_proxy").map(|n| self.socks5_proxy(n));
        p.base_port = f.get("base_port").and_then(|n| self.int(n, "base_port"));
        if let Some(v) = f.get("vpcs") {
            for (vname, vnode) in self.entries(v, "vpcs") {
                let vpc = self.vpc(vnode, &vname.value);
                p.vpcs.push((vname, vpc));
            }
        }
        if let Some(s) = f.get("services") {
            for (sname, snode) in self.entries(s, "services") {
                let svc = self.service(snode, &sname.value);
                p.services.push((sname, svc));
            }
        }
        p
    }

    fn byoc(&mut self, node: &Node) -> RawByoc {
        let mut b = RawByoc { span: node.span, ..RawByoc::default() };
        let known =
            ["cloud", "network_cidr", "bastion_subnet", "workload_subnet", "bastions", "customer_networks", "egress"];
        let Some(f) = self.fields(node, "byoc", &known) else { return b };
        b.cloud = f.get("cloud").and_then(|n| self.string(n, "byoc.cloud"));
        b.network_cidr = f.get("network_cidr").and_then(|n| self.string(n, "byoc.network_cidr"));
        b.bastion_subnet = f.get("bastion_subnet").and_then(|n| self.string(n, "byoc.bastion_subnet"));
        b.workload_subnet = f.get("workload_subnet").and_then(|n| self.string(n, "byoc.workload_subnet"));
        if let Some(list) = f.get("bastions") {
            for (name, n) in self.entries(list, "byoc.bastions") {
                let raw = self.node(n, &name.value);
                b.bastions.push((name, raw));
            }
        }
        b.customer_networks = f.get("customer_networks").map(|n| self.strings(n, "byoc.customer_networks"));
        b.egress = f.get("egress").map(|n| self.strings(n, "byoc.egress"));
        b
    }

    fn socks5_proxy(&mut self, node: &Node) -> RawSocks5Proxy {
        let mut p = RawSocks5Proxy { span: node.span, ..RawSocks5Proxy::default() };
        let Some(f) = self.fields(node, "socks5_proxy", &["address", "port", "allow"]) else { return p };
        p.address = f.get("address").and_then(|n| self.string(n, "socks5_proxy.address"));
        p.port = f.get("port").and_then(|n| self.int(n, "socks5_proxy.port"));
        p.allow = f.get("allow").map(|n| self.strings(n, "socks5_proxy.allow")).unwrap_or_default();
        p
    }

    fn vpc(&mut self, node: &Node, name: &str) -> RawVpc {
        let mut v = RawVpc { span: node.span, ..RawVpc::default() };
        let what = format!("vpc {name}");
        let known = ["cloud", "network_cidr", "privatelink_cidrs", "peerings"];
        let Some(f) = self.fields(node, &what, &known) else { return v };
        v.cloud = f.get("cloud").and_then(|n| self.string(n, "cloud"));
        v.network_cidr = f.get("network_cidr").and_then(|n| self.string(n, "network_cidr"));
        v.privatelink_cidrs = f.get("privatelink_cidrs").map(|n| self.strings(n, "privatelink_cidrs"));
        if let Some(list) = f.get("peerings") {
            for pn in self.list(list, "peerings") {
                let peering = self.peering(pn);
                v.peerings.push(peering);
            }
        }
        v
    }

    fn service(&mut self, node: &Node, name: &str) -> RawService {
        let mut s = RawService { span: node.span, ..RawService::default() };
        let what = format!("service {name}");
        let known = ["type", "cloud", "vpc", "nodes", "user_config", "privatelink", "ports", "byoc"];
        let Some(f) = self.fields(node, &what, &known) else { return s };
        s.service_type = f.get("type").and_then(|n| self.string(n, "type"));
        s.cloud = f.get("cloud").and_then(|n| self.string(n, "cloud"));
        s.vpc = f.get("vpc").and_then(|n| self.string(n, "vpc"));
        s.byoc = f.get("byoc").and_then(|n| self.boolean(n, "byoc"));
        if let Some(nodes) = f.get("nodes") {
            for (nname, nnode) in self.entries(nodes, "nodes") {
                let raw = self.node(nnode, &nname.value);
                s.nodes.push((nname, raw));
            }
        }
        if let Some(uc) = f.get("user_config") {
            s.user_config = self.user_config(uc);
        }
        if let Some(pl) = f.get("privatelink") {
            if let Some(pf) = self.fields(pl, "privatelink", &["aws", "azure", "google"]) {
                for (kind, res) in pf.pairs {
                    let mut raw = RawPrivatelink::default();
                    let what = format!("privatelink.{kind}");
                    if let Some(rf) = self.fields(res, &what, &["principals", "connections"]) {
                        raw.principals =
                            rf.get("principals").map(|n| self.strings(n, "principals")).unwrap_or_default();
                        if let Some(cs) = rf.get("connections") {
                            for (id, cn) in self.entries(cs, &format!("{what}.connections")) {
                                let conn = self.connection(cn, &id.value);
                                raw.connections.push((id, conn));
                            }
                        }
                    }
                    let key = Spanned { value: kind.to_string(), span: res.span };
                    s.privatelink.push((key, raw));
                }
            }
        }
        if let Some(ports) = f.get("ports") {
            for (k, v) in self.entries(ports, "ports") {
                if let Some(p) = self.int(v, &format!("ports.{}", k.value)) {
                    s.ports.push((k, p));
                }
            }
        }
        s
    }

    fn connection(&mut self, node: &Node, id: &str) -> RawConnection {
        let mut c = RawConnection { span: node.span, ..RawConnection::default() };
        let known = ["host", "endpoint_id", "dns_name", "address", "state", "user_ip_address", "ports"];
        let Some(f) = self.fields(node, &format!("connection {id}"), &known) else { return c };
        c.host = f.get("host").and_then(|n| self.string(n, "host"));
        c.endpoint_id = f.get("endpoint_id").and_then(|n| self.string(n, "endpoint_id"));
        c.dns_name = f.get("dns_name").and_then(|n| self.string(n, "dns_name"));
        c.address = f.get("address").and_then(|n| self.string(n, "address"));
        c.state = f.get("state").and_then(|n| self.string(n, "state"));
        c.user_ip_address = f.get("user_ip_address").and_then(|n| self.string(n, "user_ip_address"));
        if let Some(ports) = f.get("ports") {
            for (k, v) in self.entries(ports, "ports") {
                if let Some(p) = self.int(v, &format!("ports.{}", k.value)) {
                    c.ports.push((k, p));
                }
            }
        }
        c
    }

    fn peering(&mut self, pn: &Node) -> RawPeering {
        let mut peering = RawPeering { span: pn.span, ..RawPeering::default() };
        if let Some(pf) = self.fields(pn, "peering", &["peer_vpc", "peer_cidrs"]) {
            peering.peer_vpc = pf.get("peer_vpc").and_then(|n| self.string(n, "peer_vpc"));
            peering.peer_cidrs = pf.get("peer_cidrs").map(|n| self.strings(n, "peer_cidrs")).unwrap_or_default();
        }
        peering
    }

    fn node(&mut self, nnode: &Node, name: &str) -> RawNode {
        let mut raw = RawNode { span: nnode.span, ..RawNode::default() };
        if let Some(nf) = self.fields(nnode, &format!("node {name}"), &["private", "public"]) {
            raw.private = nf.get("private").map(|n| self.one_or_many(n, "private")).unwrap_or_default();
            raw.public = nf.get("public").map(|n| self.one_or_many(n, "public")).unwrap_or_default();
        }
        raw
    }

    fn user_config(&mut self, node: &Node) -> RawUserConfig {
        let mut uc = RawUserConfig::default();
        let known = ["ip_filter", "public_access", "private_access", "privatelink_access", "static_ips"];
        let Some(f) = self.fields(node, "user_config", &known) else { return uc };
        if let Some(list) = f.get("ip_filter").filter(|n| {
            let is_list = matches!(n.kind, NodeKind::Seq(_));
            if !is_list {
                self.type_error(n, "a list", "ip_filter");
            }
            is_list
        }) {
            let mut entries = Vec::new();
            for item in self.list(list, "ip_filter") {
                match &item.kind {
                    NodeKind::Map(_) => {
                        let Some(ef) = self.fields(item, "ip_filter entry", &["network", "description"]) else {
                            continue;
                        };
                        let description = ef.get("description").and_then(|n| self.string(n, "description"));
                        match ef.get("network").and_then(|n| self.string(n, "network")) {
                            Some(network) => entries.push(RawIpFilterEntry { network, description }),
                            None if ef.get("network").is_none() => self.diags.push(
                                Diagnostic::error(DiagCode::Missing, "ip_filter entry without `network`")
                                    .at(item.span)
                                    .hint("write `{ network: 198.51.100.0/24, description: office }`"),
                            ),
                            None => {}
                        }
                    }
                    _ => {
                        if let Some(network) = self.string(item, "ip_filter entry") {
                            entries.push(RawIpFilterEntry { network, description: None });
                        }
                    }
                }
            }
            uc.ip_filter = Some(Spanned { value: entries, span: list.span });
        }
        uc.public_access = f.get("public_access").map(|n| self.flags(n, "public_access")).unwrap_or_default();
        uc.private_access = f.get("private_access").map(|n| self.flags(n, "private_access")).unwrap_or_default();
        uc.privatelink_access =
            f.get("privatelink_access").map(|n| self.flags(n, "privatelink_access")).unwrap_or_default();
        uc.static_ips = f.get("static_ips").and_then(|n| self.boolean(n, "static_ips"));
        uc
    }

    fn test(&mut self, node: &Node) -> RawTest {
        let mut t = RawTest { span: node.span, ..RawTest::default() };
        let Some(f) = self.fields(node, "test", &["from", "to", "accept", "deny", "direction"]) else { return t };
        t.direction = f.get("direction").and_then(|n| self.string(n, "direction"));
        t.from = f.get("from").and_then(|n| self.string(n, "from"));
        t.to = f.get("to").and_then(|n| self.string(n, "to"));
        t.accept = f.get("accept").map(|n| self.one_or_many(n, "accept")).unwrap_or_default();
        t.deny = f.get("deny").map(|n| self.one_or_many(n, "deny")).unwrap_or_default();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn decode_str(src: &str) -> (RawFleet, Diagnostics) {
        let mut diags = Diagnostics::default();
        let raw = decode(&parse(src).unwrap(), &mut diags);
        (raw, diags)
    }

    #[test]
    fn misspelt_key_gets_a_suggestion_and_decoding_goes_on() {
        let (raw, diags) = decode_str("version: 1\nplatfrom: {}\nprojects:\n  p:\n    base_prot: 12000\n");
        assert_eq!(diags.items.len(), 2);
        assert_eq!(diags.items[0].code, DiagCode::UnknownKey);
        assert_eq!(diags.items[0].hint.as_deref(), Some("did you mean `platform`?"));
        assert_eq!(diags.items[0].span.unwrap().start.line, 2);
        assert_eq!(diags.items[1].hint.as_deref(), Some("did you mean `base_port`?"));
        assert_eq!(raw.projects.len(), 1);
    }

    #[test]
    fn wrong_types_are_reported_with_what_was_found() {
        let (_, diags) = decode_str("version: \"1\"\nplatform: { ipsec: maybe }\n");
        let msgs: Vec<_> = diags.items.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            ["version: expected an integer, found string", "platform.ipsec: expected true or false, found string"]
        );
    }

    #[test]
    fn duplicate_names_are_reported() {
        let (_, diags) = decode_str("projects:\n  a: {}\n  a: {}\n");
        assert_eq!(diags.items[0].code, DiagCode::DuplicateKey);
        assert_eq!(diags.items[0].span.unwrap().start.line, 3);
    }

    #[test]
    fn ip_filter_accepts_strings_and_objects() {
        let (raw, diags) = decode_str(
            "projects:\n  p:\n    services:\n      s:\n        user_config:\n          ip_filter: [10.0.0.0/8, {network: \"::/0\", description: all}]\n",
        );
        assert!(diags.items.is_empty(), "{diags:?}");
        let ipf = raw.projects[0].1.services[0].1.user_config.ip_filter.as_ref().unwrap();
        assert_eq!(ipf.value.len(), 2);
        assert_eq!(ipf.value[1].description.as_ref().unwrap().value, "all");
    }
}

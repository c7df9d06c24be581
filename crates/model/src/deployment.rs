//! Deployments described as zones, subsystems and flows (`deployments:` in a fleet file),
//! and the deployment catalog they are checked against (`catalog/deployments.yaml`).
//!
//! A product such as IBM API Connect is data: its zones, its subsystems, and every
//! allowed connection between them (the numbered flows of its network diagram and its
//! port tables), with the ports its documentation calls configurable as options. A
//! fleet file's deployment only says where things are — each zone's networks, each
//! cluster's subsystem, zone and servers — and which options differ. Keeping the product
//! in the catalog means a new product, or an installation with other ports, is a catalog
//! edit; the compiler (`fleetwall_intent::zones`) knows no product.

use crate::diag::{did_you_mean, DiagCode, Diagnostic, Diagnostics};
use crate::raw::{Decoder, Spanned};
use crate::yaml::{self, Node, NodeKind, Span};
use ipnet::IpNet;
use schemars::JsonSchema;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The deployment catalog compiled into the binary.
pub const DEFAULT_DEPLOYMENT_CATALOG: &str = include_str!("../../../catalog/deployments.yaml");

/// The transport a flow opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowProtocol {
    /// TCP to the flow's ports.
    Tcp,
    /// UDP to the flow's ports.
    Udp,
    /// TCP and UDP to the flow's ports (DNS).
    TcpUdp,
    /// Any traffic (no ports): the members of a cluster.
    Any,
}

impl FlowProtocol {
    /// As written in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowProtocol::Tcp => "tcp",
            FlowProtocol::Udp => "udp",
            FlowProtocol::TcpUdp => "tcp+udp",
            FlowProtocol::Any => "any",
        }
    }

    fn parse(s: &str) -> Option<FlowProtocol> {
        Some(match s {
            "tcp" => FlowProtocol::Tcp,
            "udp" => FlowProtocol::Udp,
            "tcp+udp" => FlowProtocol::TcpUdp,
            "any" => FlowProtocol::Any,
            _ => return None,
        })
    }
}

/// A zone of a deployment kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDef {
    /// The zone's name (`public`, `protected`, ...).
    pub name: String,
    /// What people call it ("Public zone").
    pub title: String,
    /// A deployment must give it networks.
    pub required: bool,
    /// It stands for everyone else (the internet) and may contain other zones.
    pub outside: bool,
}

/// A subsystem of a deployment kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemDef {
    /// The subsystem's name (`gateway`, ...).
    pub name: String,
    /// What people call it ("Gateway Server").
    pub title: String,
    /// The zone its clusters usually sit in.
    pub zone: String,
    /// The pod labels a NetworkPolicy selects its pods by.
    pub labels: BTreeMap<String, String>,
}

/// An option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// One port.
    Port(u16),
    /// A list of ports (may be empty: the flows using it open nothing).
    Ports(Vec<u16>),
    /// A transport protocol.
    Protocol(FlowProtocol),
}

impl OptionValue {
    /// The kind's name, as in the catalog (`port`, `ports`, `protocol`).
    pub fn kind(&self) -> &'static str {
        match self {
            OptionValue::Port(_) => "port",
            OptionValue::Ports(_) => "ports",
            OptionValue::Protocol(_) => "protocol",
        }
    }

    /// As a person reads it: `3000`, `[5000, 5001]`, `tcp`.
    pub fn display(&self) -> String {
        match self {
            OptionValue::Port(p) => p.to_string(),
            OptionValue::Ports(l) => {
                format!("[{}]", l.iter().map(u16::to_string).collect::<Vec<_>>().join(", "))
            }
            OptionValue::Protocol(p) => p.as_str().to_string(),
        }
    }
}

/// A configurable value of a deployment kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDef {
    /// The option's name (`gateway_push_port`).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its default.
    pub default: OptionValue,
}

/// One side of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The networks of a zone (only the other side, a server, gets a rule).
    Zone(String),
    /// The servers of these subsystems.
    Subsystems(Vec<String>),
    /// Any address.
    Anywhere,
}

impl Endpoint {
    /// Whether the servers of `subsystem` are on this side.
    pub fn has_subsystem(&self, subsystem: &str) -> bool {
        matches!(self, Endpoint::Subsystems(l) if l.iter().any(|s| s == subsystem))
    }
}

/// A port of a flow: a number, or an option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// A fixed port.
    Number(u16),
    /// The value of an option of kind `port` or `ports`.
    Option(String),
}

/// The protocol of a flow: fixed, or an option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolRef {
    /// Fixed.
    Fixed(FlowProtocol),
    /// The value of an option of kind `protocol`.
    Option(String),
}

/// Where a flow comes from in the product's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowTable {
    /// The numbered flows of the network diagram (Table 1).
    Diagram,
    /// The ports common to the subsystems (Table 2).
    Common,
    /// The extra ports of each subsystem (Table 3).
    Subsystem,
    /// The rules inside (and from) a cluster.
    Cluster,
}

impl FlowTable {
    /// As written in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowTable::Diagram => "1",
            FlowTable::Common => "2",
            FlowTable::Subsystem => "3",
            FlowTable::Cluster => "cluster",
        }
    }
}

/// One allowed connection of a deployment kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDef {
    /// Its id in the catalog (a slug: `push-configuration`).
    pub id: String,
    /// Its number in the network diagram, for Table 1 flows.
    pub number: Option<u32>,
    /// Where it comes from.
    pub table: FlowTable,
    /// What it is for (the documentation's text).
    pub usage: String,
    /// Its line in a "Ports and description" table.
    pub row: Option<String>,
    /// Who opens the connection.
    pub from: Endpoint,
    /// Who accepts it.
    pub to: Endpoint,
    /// Its ports (none for `any`).
    pub ports: Vec<PortRef>,
    /// Its protocol.
    pub protocol: ProtocolRef,
    /// Both sides may open it.
    pub bidirectional: bool,
}

impl FlowDef {
    /// How a reason names the flow: "flow 7" or "Table 2 (common-ssh)".
    pub fn label(&self) -> String {
        match (self.number, self.table) {
            (Some(n), _) => format!("flow {n}"),
            (None, FlowTable::Cluster) => format!("cluster rule {}", self.id),
            (None, t) => format!("Table {} {}", t.as_str(), self.id),
        }
    }
}

/// One product: its zones, subsystems, options and flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentKind {
    /// The kind's name (`api_connect`).
    pub name: String,
    /// What people call it.
    pub title: String,
    /// Zones in catalog order.
    pub zones: Vec<ZoneDef>,
    /// Subsystems in catalog order.
    pub subsystems: Vec<SubsystemDef>,
    /// Options in catalog order.
    pub options: Vec<OptionDef>,
    /// Flows in catalog order.
    pub flows: Vec<FlowDef>,
}

impl DeploymentKind {
    /// The zone called `name`.
    pub fn zone(&self, name: &str) -> Option<&ZoneDef> {
        self.zones.iter().find(|z| z.name == name)
    }
    /// The subsystem called `name`.
    pub fn subsystem(&self, name: &str) -> Option<&SubsystemDef> {
        self.subsystems.iter().find(|s| s.name == name)
    }
    /// The option called `name`.
    pub fn option(&self, name: &str) -> Option<&OptionDef> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// Every deployment kind, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentCatalog {
    /// Kinds by name.
    pub kinds: BTreeMap<String, Arc<DeploymentKind>>,
}

impl DeploymentCatalog {
    /// The embedded default deployment catalog.
    pub fn builtin() -> DeploymentCatalog {
        let mut diags = Diagnostics::default();
        DeploymentCatalog::parse(DEFAULT_DEPLOYMENT_CATALOG, &mut diags)
            .expect("the embedded deployment catalog is valid (tested)")
    }

    /// Parses and validates a deployment catalog; `None` (with diagnostics) when invalid.
    pub fn parse(src: &str, diags: &mut Diagnostics) -> Option<DeploymentCatalog> {
        let root = match yaml::parse(src) {
            Ok(r) => r,
            Err(d) => {
                diags.push(d);
                return None;
            }
        };
        let before = diags.errors();
        let mut d = Decoder { diags };
        let f = d.fields(&root, "deployment catalog", &["version", "kinds"])?;
        let mut kinds = BTreeMap::new();
        for (name, node) in f.get("kinds").map(|n| d.entries(n, "kinds")).unwrap_or_default() {
            if let Some(k) = kind(&mut d, &name.value, node) {
                kinds.insert(name.value.clone(), Arc::new(k));
            }
        }
        (diags.errors() == before).then_some(DeploymentCatalog { kinds })
    }
}

fn catalog_error(d: &mut Decoder, span: Span, msg: String) -> Diagnostic {
    let diag = Diagnostic::error(DiagCode::Catalog, msg).at(span);
    d.diags.push(diag.clone());
    diag
}

fn text(d: &mut Decoder, f: &crate::raw::Fields, key: &str, what: &str) -> Option<String> {
    f.get(key).and_then(|n| d.string(n, &format!("{what}.{key}"))).map(|s| s.value)
}

fn flag(d: &mut Decoder, f: &crate::raw::Fields, key: &str, default: bool) -> bool {
    f.get(key).and_then(|n| d.boolean(n, key)).map_or(default, |b| b.value)
}

fn port_number(d: &mut Decoder, n: &Node, what: &str) -> Option<u16> {
    let v = d.int(n, what)?;
    match u16::try_from(v.value) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            catalog_error(d, v.span, format!("{what}: {} is not a TCP/UDP port (1–65535)", v.value));
            None
        }
    }
}

fn kind(d: &mut Decoder, name: &str, node: &Node) -> Option<DeploymentKind> {
    let f = d.fields(node, &format!("kind {name}"), &["title", "zones", "subsystems", "options", "flows"])?;
    let mut k = DeploymentKind {
        name: name.to_string(),
        title: text(d, &f, "title", name).unwrap_or_else(|| name.to_string()),
        zones: Vec::new(),
        subsystems: Vec::new(),
        options: Vec::new(),
        flows: Vec::new(),
    };
    for (zname, znode) in f.get("zones").map(|n| d.entries(n, "zones")).unwrap_or_default() {
        let what = format!("{name}.zones.{}", zname.value);
        let Some(zf) = d.fields(znode, &what, &["title", "required", "outside"]) else { continue };
        k.zones.push(ZoneDef {
            name: zname.value.clone(),
            title: text(d, &zf, "title", &what).unwrap_or_else(|| zname.value.clone()),
            required: flag(d, &zf, "required", true),
            outside: flag(d, &zf, "outside", false),
        });
    }
    for (sname, snode) in f.get("subsystems").map(|n| d.entries(n, "subsystems")).unwrap_or_default() {
        let what = format!("{name}.subsystems.{}", sname.value);
        let Some(sf) = d.fields(snode, &what, &["title", "zone", "labels"]) else { continue };
        let zone = sf.get("zone").and_then(|n| d.string(n, "zone"));
        let zone = match zone {
            Some(z) if k.zone(&z.value).is_some() => z.value,
            Some(z) => {
                catalog_error(d, z.span, format!("{what}: unknown zone `{}`", z.value));
                continue;
            }
            None => {
                catalog_error(d, snode.span, format!("{what}: missing `zone`"));
                continue;
            }
        };
        let mut labels = BTreeMap::new();
        for (lk, lv) in sf.get("labels").map(|n| d.entries(n, "labels")).unwrap_or_default() {
            if let Some(v) = d.string(lv, &format!("{what}.labels.{}", lk.value)) {
                labels.insert(lk.value, v.value);
            }
        }
        if labels.is_empty() {
            labels.insert("app.kubernetes.io/component".to_string(), sname.value.clone());
        }
        k.subsystems.push(SubsystemDef {
            name: sname.value.clone(),
            title: text(d, &sf, "title", &what).unwrap_or_else(|| sname.value.clone()),
            zone,
            labels,
        });
    }
    for (oname, onode) in f.get("options").map(|n| d.entries(n, "options")).unwrap_or_default() {
        let what = format!("{name}.options.{}", oname.value);
        let Some(of) = d.fields(onode, &what, &["port", "ports", "protocol", "description"]) else { continue };
        let default = if let Some(n) = of.get("port") {
            port_number(d, n, &what).map(OptionValue::Port)
        } else if let Some(n) = of.get("ports") {
            let items: Vec<Node> = d.list(n, &what).to_vec();
            Some(OptionValue::Ports(items.iter().filter_map(|i| port_number(d, i, &what)).collect()))
        } else if let Some(n) = of.get("protocol") {
            let s = d.string(n, &what)?;
            match FlowProtocol::parse(&s.value) {
                Some(p @ (FlowProtocol::Tcp | FlowProtocol::Udp | FlowProtocol::TcpUdp)) => {
                    Some(OptionValue::Protocol(p))
                }
                _ => {
                    catalog_error(d, s.span, format!("{what}: protocol `{}` is not tcp, udp or tcp+udp", s.value));
                    None
                }
            }
        } else {
            catalog_error(d, onode.span, format!("{what}: give a default as `port`, `ports` or `protocol`"));
            None
        };
        if let Some(default) = default {
            k.options.push(OptionDef {
                name: oname.value.clone(),
                description: text(d, &of, "description", &what).unwrap_or_default(),
                default,
            });
        }
    }
    let mut numbers: BTreeMap<u32, String> = BTreeMap::new();
    for (fname, fnode) in f.get("flows").map(|n| d.entries(n, "flows")).unwrap_or_default() {
        if let Some(flow) = flow_def(d, &k, &fname, fnode) {
            if let Some(n) = flow.number {
                if let Some(other) = numbers.insert(n, flow.id.clone()) {
                    catalog_error(d, fnode.span, format!("{name}: flow number {n} is used by {other} and {}", flow.id));
                }
            }
            k.flows.push(flow);
        }
    }
    Some(k)
}

fn endpoint(d: &mut Decoder, k: &DeploymentKind, node: Option<&Node>, what: &str) -> Option<Endpoint> {
    let Some(node) = node else {
        catalog_error(d, Span::default(), format!("{what}: missing"));
        return None;
    };
    let f = d.fields(node, what, &["zone", "subsystem", "anywhere"])?;
    if let Some(z) = f.get("zone") {
        let z = d.string(z, what)?;
        if k.zone(&z.value).is_none() {
            catalog_error(d, z.span, format!("{what}: unknown zone `{}`", z.value));
            return None;
        }
        return Some(Endpoint::Zone(z.value));
    }
    if let Some(s) = f.get("subsystem") {
        let names = match &s.kind {
            NodeKind::Seq(_) => d.strings(s, what),
            _ => d.string(s, what).into_iter().collect(),
        };
        for n in &names {
            if k.subsystem(&n.value).is_none() {
                catalog_error(d, n.span, format!("{what}: unknown subsystem `{}`", n.value));
                return None;
            }
        }
        return Some(Endpoint::Subsystems(names.into_iter().map(|n| n.value).collect()));
    }
    if f.get("anywhere").is_some() {
        return Some(Endpoint::Anywhere);
    }
    catalog_error(d, node.span, format!("{what}: give `zone`, `subsystem` or `anywhere`"));
    None
}

fn flow_def(d: &mut Decoder, k: &DeploymentKind, id: &Spanned<String>, node: &Node) -> Option<FlowDef> {
    let what = format!("{}.flows.{}", k.name, id.value);
    let known = ["number", "table", "usage", "row", "from", "to", "ports", "protocol", "bidirectional"];
    let f = d.fields(node, &what, &known)?;
    let number = match f.get("number").and_then(|n| d.int(n, "number")) {
        Some(n) if n.value > 0 => Some(n.value as u32),
        Some(n) => {
            catalog_error(d, n.span, format!("{what}: flow numbers start at 1"));
            None
        }
        None => None,
    };
    let table = match f.get("table") {
        None if number.is_some() => FlowTable::Diagram,
        None => {
            catalog_error(d, node.span, format!("{what}: give a `number` (Table 1) or a `table` (2, 3, cluster)"));
            return None;
        }
        Some(n) => {
            let s = d.string(n, "table")?;
            match s.value.as_str() {
                "1" => FlowTable::Diagram,
                "2" => FlowTable::Common,
                "3" => FlowTable::Subsystem,
                "cluster" => FlowTable::Cluster,
                _ => {
                    catalog_error(d, s.span, format!("{what}: table `{}` is not 1, 2, 3 or cluster", s.value));
                    return None;
                }
            }
        }
    };
    let Some(usage) = text(d, &f, "usage", &what) else {
        catalog_error(d, node.span, format!("{what}: missing `usage` (the reason its rules carry)"));
        return None;
    };
    let from = endpoint(d, k, f.get("from"), &format!("{what}.from"));
    let to = endpoint(d, k, f.get("to"), &format!("{what}.to"));
    let (from, to) = (from?, to?);
    if !matches!(from, Endpoint::Subsystems(_)) && !matches!(to, Endpoint::Subsystems(_)) {
        catalog_error(d, node.span, format!("{what}: one side must be a subsystem (a server gets the rules)"));
        return None;
    }
    let protocol = match f.get("protocol") {
        None => ProtocolRef::Fixed(FlowProtocol::Tcp),
        Some(n) => {
            let s = d.string(n, "protocol")?;
            match FlowProtocol::parse(&s.value) {
                Some(p) => ProtocolRef::Fixed(p),
                None => match k.option(&s.value) {
                    Some(o) if matches!(o.default, OptionValue::Protocol(_)) => ProtocolRef::Option(s.value),
                    _ => {
                        catalog_error(
                            d,
                            s.span,
                            format!(
                                "{what}: protocol `{}` is not tcp, udp, tcp+udp, any or a protocol option",
                                s.value
                            ),
                        );
                        return None;
                    }
                },
            }
        }
    };
    let mut ports = Vec::new();
    if let Some(list) = f.get("ports") {
        let items: Vec<Node> = d.list(list, "ports").to_vec();
        for item in &items {
            match &item.kind {
                NodeKind::Scalar { text, plain: true } if text.parse::<i64>().is_ok() => {
                    if let Some(p) = port_number(d, item, &format!("{what}.ports")) {
                        ports.push(PortRef::Number(p));
                    }
                }
                _ => {
                    let s = d.string(item, "ports")?;
                    match k.option(&s.value) {
                        Some(o) if matches!(o.default, OptionValue::Port(_) | OptionValue::Ports(_)) => {
                            ports.push(PortRef::Option(s.value))
                        }
                        _ => {
                            catalog_error(
                                d,
                                s.span,
                                format!("{what}: `{}` is neither a port nor a port option of {}", s.value, k.name),
                            );
                        }
                    }
                }
            }
        }
    }
    match (&protocol, ports.is_empty()) {
        (ProtocolRef::Fixed(FlowProtocol::Any), false) => {
            catalog_error(d, node.span, format!("{what}: protocol `any` takes no ports"));
        }
        (ProtocolRef::Fixed(FlowProtocol::Any), true) => {}
        (_, true) => {
            catalog_error(d, node.span, format!("{what}: a tcp or udp flow needs `ports`"));
        }
        _ => {}
    }
    Some(FlowDef {
        id: id.value.clone(),
        number,
        table,
        usage,
        row: text(d, &f, "row", &what),
        from,
        to,
        ports,
        protocol,
        bidirectional: flag(d, &f, "bidirectional", false),
    })
}

// ---- The fleet file's `deployments:` ----

/// One `deployments:` entry as written.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Deployment")]
pub struct RawDeployment {
    /// The deployment's mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `kind:` (a deployment catalog entry).
    #[schemars(with = "String")]
    pub kind: Option<Spanned<String>>,
    /// `zones:` name → networks, in file order.
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub zones: Vec<(Spanned<String>, Vec<Spanned<String>>)>,
    /// `clusters:` in file order.
    #[schemars(with = "BTreeMap<String, RawCluster>")]
    pub clusters: Vec<(Spanned<String>, RawCluster)>,
    /// `options:` in file order.
    #[schemars(with = "Option<BTreeMap<String, crate::schema::OptionValueSchema>>")]
    pub options: Vec<(Spanned<String>, Spanned<RawOption>)>,
    /// `kubernetes:`.
    #[schemars(with = "Option<RawKubernetes>")]
    pub kubernetes: Option<RawKubernetes>,
}

/// One cluster of a deployment.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Cluster")]
pub struct RawCluster {
    /// The cluster's mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `subsystem:`.
    #[schemars(with = "String")]
    pub subsystem: Option<Spanned<String>>,
    /// `zone:` (default: the subsystem's usual zone).
    #[schemars(with = "Option<String>")]
    pub zone: Option<Spanned<String>>,
    /// `servers:` name → one address or a list, in file order.
    #[schemars(with = "BTreeMap<String, crate::schema::OneOrMany>")]
    pub servers: Vec<(Spanned<String>, Vec<Spanned<String>>)>,
}

/// An option's value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum RawOption {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<Spanned<i64>>),
    /// A string.
    Text(String),
}

/// `kubernetes:` of a deployment.
#[derive(Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Kubernetes")]
pub struct RawKubernetes {
    /// The mapping.
    #[schemars(skip)]
    pub span: Span,
    /// `namespace:`.
    #[schemars(with = "String")]
    pub namespace: Option<Spanned<String>>,
}

impl Decoder<'_> {
    /// `deployments:`.
    pub(crate) fn deployments(&mut self, node: &Node) -> Vec<(Spanned<String>, RawDeployment)> {
        let mut out = Vec::new();
        for (name, dnode) in self.entries(node, "deployments") {
            let d = self.deployment(dnode, &name.value);
            out.push((name, d));
        }
        out
    }

    fn addresses(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Seq(_) => self.strings(node, what),
            NodeKind::Null => Vec::new(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    /// One deployment.
    pub(crate) fn deployment(&mut self, node: &Node, name: &str) -> RawDeployment {
        let mut d = RawDeployment { span: node.span, ..RawDeployment::default() };
        let what = format!("deployment {name}");
        let Some(f) = self.fields(node, &what, &["kind", "zones", "clusters", "options", "kubernetes"]) else {
            return d;
        };
        d.kind = f.get("kind").and_then(|n| self.string(n, "kind"));
        for (z, znode) in f.get("zones").map(|n| self.entries(n, "zones")).unwrap_or_default() {
            let nets = self.addresses(znode, &format!("zones.{}", z.value));
            d.zones.push((z, nets));
        }
        for (c, cnode) in f.get("clusters").map(|n| self.entries(n, "clusters")).unwrap_or_default() {
            let mut raw = RawCluster { span: cnode.span, ..RawCluster::default() };
            if let Some(cf) = self.fields(cnode, &format!("cluster {}", c.value), &["subsystem", "zone", "servers"]) {
                raw.subsystem = cf.get("subsystem").and_then(|n| self.string(n, "subsystem"));
                raw.zone = cf.get("zone").and_then(|n| self.string(n, "zone"));
                for (s, snode) in cf.get("servers").map(|n| self.entries(n, "servers")).unwrap_or_default() {
                    let addrs = self.addresses(snode, &format!("server {}", s.value));
                    raw.servers.push((s, addrs));
                }
            }
            d.clusters.push((c, raw));
        }
        for (o, onode) in f.get("options").map(|n| self.entries(n, "options")).unwrap_or_default() {
            let value = match &onode.kind {
                NodeKind::Scalar { text, plain: true } if text.parse::<i64>().is_ok() => {
                    self.int(onode, &o.value).map(|v| RawOption::Int(v.value))
                }
                NodeKind::Seq(items) => {
                    let items = items.clone();
                    Some(RawOption::Ints(items.iter().filter_map(|i| self.int(i, &o.value)).collect()))
                }
                _ => self.string(onode, &o.value).map(|s| RawOption::Text(s.value)),
            };
            if let Some(value) = value {
                d.options.push((o, Spanned { value, span: onode.span }));
            }
        }
        if let Some(k) = f.get("kubernetes") {
            let mut raw = RawKubernetes { span: k.span, ..RawKubernetes::default() };
            if let Some(kf) = self.fields(k, "kubernetes", &["namespace"]) {
                raw.namespace = kf.get("namespace").and_then(|n| self.string(n, "namespace"));
            }
            d.kubernetes = Some(raw);
        }
        d
    }
}

// ---- The validated deployment ----

/// A zone of a deployment and its networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone's name.
    pub name: String,
    /// Its networks.
    pub networks: Vec<IpNet>,
}

/// A server (one machine or pod address) of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The server's name, unique in the fleet (with the nodes of services).
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// A cluster: servers of one subsystem in one zone that reach each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name.
    pub name: String,
    /// Its subsystem.
    pub subsystem: String,
    /// Its zone.
    pub zone: String,
    /// Its servers, in file order.
    pub servers: Vec<Server>,
}

/// A validated deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment's name.
    pub name: String,
    /// Its kind, from the deployment catalog.
    pub kind: Arc<DeploymentKind>,
    /// Its zones, in catalog order (optional zones it left out are absent).
    pub zones: Vec<Zone>,
    /// Its clusters, sorted by name.
    pub clusters: Vec<Cluster>,
    /// Every option of the kind, set or defaulted.
    pub options: BTreeMap<String, OptionValue>,
    /// The Kubernetes namespace its NetworkPolicy goes to, when it has one.
    pub namespace: Option<String>,
}

impl Deployment {
    /// The zone called `name`, when the deployment declares it.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The ports of a flow, options resolved, sorted and without repeats.
    pub fn ports(&self, flow: &FlowDef) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for p in &flow.ports {
            match p {
                PortRef::Number(n) => out.push(*n),
                PortRef::Option(o) => match self.options.get(o) {
                    Some(OptionValue::Port(n)) => out.push(*n),
                    Some(OptionValue::Ports(l)) => out.extend(l),
                    _ => {}
                },
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The protocol of a flow, options resolved.
    pub fn protocol(&self, flow: &FlowDef) -> FlowProtocol {
        match &flow.protocol {
            ProtocolRef::Fixed(p) => *p,
            ProtocolRef::Option(o) => match self.options.get(o) {
                Some(OptionValue::Protocol(p)) => *p,
                _ => FlowProtocol::Tcp,
            },
        }
    }

    /// Every server with its cluster.
    pub fn servers(&self) -> impl Iterator<Item = (&Cluster, &Server)> {
        self.clusters.iter().flat_map(|c| c.servers.iter().map(move |s| (c, s)))
    }
}

/// The "did you mean" hint for `word` among `names`, or the list of them.
pub(crate) fn suggest<'a>(word: &str, names: impl IntoIterator<Item = &'a str> + Clone, noun: &str) -> String {
    match did_you_mean(word, names.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("known {noun}: {}", names.into_iter().collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_has_api_connect_with_its_sixteen_flows() {
        let c = DeploymentCatalog::builtin();
        let k = &c.kinds["api_connect"];
        let numbers: Vec<u32> = k.flows.iter().filter_map(|f| f.number).collect();
        assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
        let subsystems: Vec<&str> = k.subsystems.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(subsystems, ["gateway", "management", "portal", "analytics"]);
        let seven = k.flows.iter().find(|f| f.number == Some(7)).unwrap();
        assert!(seven.bidirectional);
        assert_eq!(seven.ports, [PortRef::Option("gateway_push_port".into())]);
        assert_eq!(k.option("gateway_push_port").unwrap().default, OptionValue::Port(3000));
        let twelve = k.flows.iter().find(|f| f.number == Some(12)).unwrap();
        assert_eq!(twelve.protocol, ProtocolRef::Option("analytics_offload_protocol".into()));
        assert_eq!(k.option("management_extra_ports").unwrap().default, OptionValue::Ports(vec![]));
        let rows = k.flows.iter().filter(|f| f.table == FlowTable::Common).count();
        assert_eq!(rows, 5, "Table 2 has five ports");
    }

    #[test]
    fn a_flow_naming_an_unknown_option_is_refused_with_its_line() {
        let src = "kinds:\n  k:\n    zones: { z: {} }\n    subsystems: { s: { zone: z } }\n    flows:\n      f:\n        number: 1\n        usage: u\n        from: { zone: z }\n        to: { subsystem: s }\n        ports: [push_port]\n";
        let mut diags = Diagnostics::default();
        assert!(DeploymentCatalog::parse(src, &mut diags).is_none());
        assert_eq!(diags.items[0].message, "k.flows.f: `push_port` is neither a port nor a port option of k");
        assert_eq!(diags.items[0].span.unwrap().start.line, 11);
    }

    #[test]
    fn a_flow_between_two_zones_is_refused() {
        let src = "kinds:\n  k:\n    zones: { a: {}, b: {} }\n    flows:\n      f: { number: 1, usage: u, from: { zone: a }, to: { zone: b }, ports: [1] }\n";
        let mut diags = Diagnostics::default();
        assert!(DeploymentCatalog::parse(src, &mut diags).is_none());
        assert_eq!(diags.items[0].message, "k.flows.f: one side must be a subsystem (a server gets the rules)");
    }
}

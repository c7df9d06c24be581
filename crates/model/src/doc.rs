//! The fleet as a typed document: the serde twin of the raw file types, which the control
//! plane stores, edits with typed operations (`ops`) and serves.
//!
//! Values stay as written (addresses and CIDRs are strings, ports integers): the document
//! is what a fleet file says, not what it means; `validate` decides that. Projects and
//! services are shared (`Arc`), so a changed copy of a 100,000-node document copies only
//! the project and service a write touched.
//!
//! Validation reads a document through the same decoder and validator as a fleet file
//! (`to_node` builds the tree the YAML parser would): every value's span is an entry of a
//! [`PathTable`], so each diagnostic carries the document path of what it is about
//! (`projects.acme.services.pg.user_config.ip_filter[1]`).

use crate::diag::{Diagnostic, Diagnostics};
use crate::raw::*;
use crate::yaml::{Node, NodeKind, Pos, Span};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The whole fleet.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDoc {
    /// `version:` (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `platform:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformDoc>,
    /// `projects:` by name (a persistent map: a changed copy shares all but what changed).
    #[serde(default, skip_serializing_if = "OrdMap::is_empty")]
    pub projects: OrdMap<String, Arc<ProjectDoc>>,
    /// `tests:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestDoc>,
    /// `deployments:` by name (zones, subsystems and clusters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, DeploymentDoc>,
}

/// One deployment of zones, subsystems and clusters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDoc {
    /// `kind:` (a deployment catalog entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `zones:` name → networks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, Vec<String>>,
    /// `clusters:` by name (always written, even empty: a deployment without clusters is
    /// refused with that message).
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterDoc>,
    /// `options:` (a port, a list of ports or a protocol, as written).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, Value>,
    /// `kubernetes:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesDoc>,
}

/// One cluster of a deployment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDoc {
    /// `subsystem:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// `zone:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `servers:` name → addresses (always written, even empty).
    #[serde(default)]
    pub servers: BTreeMap<String, Vec<String>>,
}

/// `kubernetes:` of a deployment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesDoc {
    /// `namespace:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl DeploymentDoc {
    /// The document of a decoded deployment.
    pub fn from_raw(raw: &crate::deployment::RawDeployment) -> DeploymentDoc {
        use crate::deployment::RawOption;
        DeploymentDoc {
            kind: raw.kind.as_ref().map(|v| v.value.clone()),
            zones: raw.zones.iter().map(|(n, l)| (n.value.clone(), strings(l))).collect(),
            clusters: raw
                .clusters
                .iter()
                .map(|(n, c)| {
                    let doc = ClusterDoc {
                        subsystem: c.subsystem.as_ref().map(|v| v.value.clone()),
                        zone: c.zone.as_ref().map(|v| v.value.clone()),
                        servers: c.servers.iter().map(|(s, a)| (s.value.clone(), strings(a))).collect(),
                    };
                    (n.value.clone(), doc)
                })
                .collect(),
            options: raw
                .options
                .iter()
                .map(|(k, v)| {
                    let value = match &v.value {
                        RawOption::Int(i) => Value::from(*i),
                        RawOption::Ints(l) => Value::from(l.iter().map(|i| i.value).collect::<Vec<i64>>()),
                        RawOption::Text(t) => Value::from(t.clone()),
                    };
                    (k.value.clone(), value)
                })
                .collect(),
            kubernetes: raw
                .kubernetes
                .as_ref()
                .map(|k| KubernetesDoc { namespace: k.namespace.as_ref().map(|v| v.value.clone()) }),
        }
    }
}

/// `platform:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformDoc {
    /// Management gateway addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_gateways: Option<Vec<String>>,
    /// Management SSH port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<i64>,
    /// Platform management port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_port: Option<i64>,
    /// Port of the web UIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_port: Option<i64>,
    /// IPsec between nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec: Option<bool>,
    /// The BYOC bastion's tunnel port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion_proxy_port: Option<i64>,
}

/// One project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectDoc {
    /// `base_port:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_port: Option<i64>,
    /// `vpcs:` by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vpcs: BTreeMap<String, VpcDoc>,
    /// `services:` by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Arc<ServiceDoc>>,
    /// `byoc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byoc: Option<ByocDoc>,
    /// `compliance:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<String>,
    /// `socks5_proxy:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks5_proxy: Option<Socks5ProxyDoc>,
}

/// `byoc:` of a project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByocDoc {
    /// `cloud:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// `network_cidr:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_cidr: Option<String>,
    /// `bastion_subnet:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion_subnet: Option<String>,
    /// `workload_subnet:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_subnet: Option<String>,
    /// `bastions:` by name.
    #[serde(default)]
    pub bastions: BTreeMap<String, NodeDoc>,
    /// `customer_networks:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_networks: Option<Vec<String>>,
    /// `egress:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<String>>,
}

/// `socks5_proxy:` of an ECE project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Socks5ProxyDoc {
    /// `address:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `port:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// `allow:`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// One VPC.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcDoc {
    /// `cloud:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// `network_cidr:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_cidr: Option<String>,
    /// `privatelink_cidrs:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privatelink_cidrs: Option<Vec<String>>,
    /// `peerings:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peerings: Vec<PeeringDoc>,
}

/// One VPC peering.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringDoc {
    /// `peer_vpc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_vpc: Option<String>,
    /// `peer_cidrs:`.
    #[serde(default)]
    pub peer_cidrs: Vec<String>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    /// `type:`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// `cloud:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// `vpc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// `nodes:` by name (always written, even empty: a service without nodes is refused
    /// with that message, not with "missing nodes").
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeDoc>,
    /// `user_config:`.
    #[serde(default, skip_serializing_if = "UserConfigDoc::is_empty")]
    pub user_config: UserConfigDoc,
    /// `privatelink:` by cloud kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privatelink: BTreeMap<String, PrivatelinkDoc>,
    /// `ports:` pins by listener.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, i64>,
    /// `byoc:` (a workload of the project's BYOC network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byoc: Option<bool>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDoc {
    /// `private:` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
    /// `public:` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public: Vec<String>,
}

/// `user_config:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfigDoc {
    /// `ip_filter:` (absent: the default, everyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<Vec<IpFilterDoc>>,
    /// `public_access.<component>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub public_access: BTreeMap<String, bool>,
    /// `private_access.<component>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub private_access: BTreeMap<String, bool>,
    /// `privatelink_access.<component>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privatelink_access: BTreeMap<String, bool>,
    /// `static_ips:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ips: Option<bool>,
}

impl UserConfigDoc {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == UserConfigDoc::default()
    }
}

/// One `ip_filter` entry: a CIDR, or `{network, description}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IpFilterDoc {
    /// `"10.0.0.0/8"`.
    Network(String),
    /// `{network: 10.0.0.0/8, description: office}`.
    Entry {
        /// The network.
        network: String,
        /// What it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

/// A private-link resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivatelinkDoc {
    /// `principals:`.
    #[serde(default)]
    pub principals: Vec<String>,
    /// `connections:` by connection id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, ConnectionDoc>,
}

/// One private-link connection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDoc {
    /// `host:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `endpoint_id:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// `dns_name:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// `address:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `state:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `user_ip_address:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ip_address: Option<String>,
    /// `ports:` per component.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, i64>,
}

impl ConnectionDoc {
    /// The document of a decoded connection.
    pub fn from_raw(raw: &RawConnection) -> ConnectionDoc {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.value.clone());
        ConnectionDoc {
            host: text(&raw.host),
            endpoint_id: text(&raw.endpoint_id),
            dns_name: text(&raw.dns_name),
            address: text(&raw.address),
            state: text(&raw.state),
            user_ip_address: text(&raw.user_ip_address),
            ports: raw.ports.iter().map(|(k, v)| (k.value.clone(), v.value)).collect(),
        }
    }
}

/// One `tests:` assertion.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDoc {
    /// `from:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `to:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `accept:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    /// `deny:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// `direction:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
}

fn strings(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|s| s.value.clone()).collect()
}

fn flags(list: &[(Spanned<String>, Spanned<bool>)]) -> BTreeMap<String, bool> {
    list.iter().map(|(k, v)| (k.value.clone(), v.value)).collect()
}

impl FleetDoc {
    /// The document of a decoded fleet file (one that validated: its names are unique).
    pub fn from_raw(raw: &RawFleet) -> FleetDoc {
        let platform = raw.platform.span.is_some().then(|| PlatformDoc::from_raw(&raw.platform));
        FleetDoc {
            version: raw.version.as_ref().map(|v| v.value),
            platform,
            projects: raw.projects.iter().map(|(n, p)| (n.value.clone(), Arc::new(ProjectDoc::from_raw(p)))).collect(),
            tests: raw.tests.iter().map(TestDoc::from_raw).collect(),
            deployments: raw.deployments.iter().map(|(n, d)| (n.value.clone(), DeploymentDoc::from_raw(d))).collect(),
        }
    }

    /// The document as the tree a fleet file parses into, with the path of every value.
    pub fn to_node(&self, paths: &mut PathTable) -> Node {
        let value = serde_json::to_value(self).expect("a fleet document serializes");
        json_to_node(&value, "", paths)
    }

    /// The project `p`.
    pub fn project(&self, p: &str) -> Option<&ProjectDoc> {
        self.projects.get(p).map(|p| &**p)
    }

    /// The service `s` of project `p`.
    pub fn service(&self, p: &str, s: &str) -> Option<&ServiceDoc> {
        self.project(p)?.services.get(s).map(|s| &**s)
    }
}

impl PlatformDoc {
    /// The document of a decoded `platform:`.
    pub fn from_raw(p: &RawPlatform) -> PlatformDoc {
        PlatformDoc {
            management_gateways: p.management_gateways.as_deref().map(strings),
            ssh_port: p.ssh_port.as_ref().map(|v| v.value),
            platform_port: p.platform_port.as_ref().map(|v| v.value),
            web_port: p.web_port.as_ref().map(|v| v.value),
            ipsec: p.ipsec.as_ref().map(|v| v.value),
            bastion_proxy_port: p.bastion_proxy_port.as_ref().map(|v| v.value),
        }
    }
}

impl ProjectDoc {
    /// The document of a decoded project.
    pub fn from_raw(raw: &RawProject) -> ProjectDoc {
        ProjectDoc {
            base_port: raw.base_port.as_ref().map(|v| v.value),
            vpcs: raw.vpcs.iter().map(|(n, v)| (n.value.clone(), VpcDoc::from_raw(v))).collect(),
            services: raw.services.iter().map(|(n, s)| (n.value.clone(), Arc::new(ServiceDoc::from_raw(s)))).collect(),
            byoc: raw.byoc.as_ref().map(|b| ByocDoc {
                cloud: b.cloud.as_ref().map(|v| v.value.clone()),
                network_cidr: b.network_cidr.as_ref().map(|v| v.value.clone()),
                bastion_subnet: b.bastion_subnet.as_ref().map(|v| v.value.clone()),
                workload_subnet: b.workload_subnet.as_ref().map(|v| v.value.clone()),
                bastions: b.bastions.iter().map(|(n, d)| (n.value.clone(), NodeDoc::from_raw(d))).collect(),
                customer_networks: b.customer_networks.as_deref().map(strings),
                egress: b.egress.as_deref().map(strings),
            }),
            compliance: raw.compliance.as_ref().map(|v| v.value.clone()),
            socks5_proxy: raw.socks5_proxy.as_ref().map(|p| Socks5ProxyDoc {
                address: p.address.as_ref().map(|v| v.value.clone()),
                port: p.port.as_ref().map(|v| v.value),
                allow: strings(&p.allow),
            }),
        }
    }
}

impl VpcDoc {
    /// The document of a decoded VPC.
    pub fn from_raw(raw: &RawVpc) -> VpcDoc {
        VpcDoc {
            cloud: raw.cloud.as_ref().map(|v| v.value.clone()),
            network_cidr: raw.network_cidr.as_ref().map(|v| v.value.clone()),
            privatelink_cidrs: raw.privatelink_cidrs.as_deref().map(strings),
            peerings: raw.peerings.iter().map(PeeringDoc::from_raw).collect(),
        }
    }
}

impl PeeringDoc {
    /// The document of a decoded peering.
    pub fn from_raw(p: &RawPeering) -> PeeringDoc {
        PeeringDoc { peer_vpc: p.peer_vpc.as_ref().map(|v| v.value.clone()), peer_cidrs: strings(&p.peer_cidrs) }
    }
}

impl NodeDoc {
    /// The document of a decoded node.
    pub fn from_raw(d: &RawNode) -> NodeDoc {
        NodeDoc { private: strings(&d.private), public: strings(&d.public) }
    }
}

impl UserConfigDoc {
    /// The document of a decoded `user_config`.
    pub fn from_raw(uc: &RawUserConfig) -> UserConfigDoc {
        UserConfigDoc {
            ip_filter: uc.ip_filter.as_ref().map(|l| {
                l.value
                    .iter()
                    .map(|e| match &e.description {
                        None => IpFilterDoc::Network(e.network.value.clone()),
                        Some(d) => {
                            IpFilterDoc::Entry { network: e.network.value.clone(), description: Some(d.value.clone()) }
                        }
                    })
                    .collect()
            }),
            public_access: flags(&uc.public_access),
            private_access: flags(&uc.private_access),
            privatelink_access: flags(&uc.privatelink_access),
            static_ips: uc.static_ips.as_ref().map(|v| v.value),
        }
    }
}

impl ServiceDoc {
    /// The document of a decoded service.
    pub fn from_raw(raw: &RawService) -> ServiceDoc {
        ServiceDoc {
            service_type: raw.service_type.as_ref().map(|v| v.value.clone()),
            cloud: raw.cloud.as_ref().map(|v| v.value.clone()),
            vpc: raw.vpc.as_ref().map(|v| v.value.clone()),
            nodes: raw.nodes.iter().map(|(n, d)| (n.value.clone(), NodeDoc::from_raw(d))).collect(),
            user_config: UserConfigDoc::from_raw(&raw.user_config),
            privatelink: raw
                .privatelink
                .iter()
                .map(|(k, v)| {
                    let connections =
                        v.connections.iter().map(|(id, c)| (id.value.clone(), ConnectionDoc::from_raw(c))).collect();
                    (k.value.clone(), PrivatelinkDoc { principals: strings(&v.principals), connections })
                })
                .collect(),
            ports: raw.ports.iter().map(|(k, v)| (k.value.clone(), v.value)).collect(),
            byoc: raw.byoc.as_ref().map(|v| v.value),
        }
    }
}

impl TestDoc {
    /// The document of a decoded test.
    pub fn from_raw(raw: &RawTest) -> TestDoc {
        TestDoc {
            from: raw.from.as_ref().map(|v| v.value.clone()),
            to: raw.to.as_ref().map(|v| v.value.clone()),
            accept: strings(&raw.accept),
            deny: strings(&raw.deny),
            direction: raw.direction.as_ref().map(|v| v.value.clone()),
        }
    }
}

/// The document path of every value of a tree built by [`json_to_node`]: a value's span
/// starts on "line" `n`, and `paths[n - 1]` is its path.
#[derive(Debug, Default, Clone)]
pub struct PathTable {
    paths: Vec<String>,
}

impl PathTable {
    fn span(&mut self, path: &str) -> Span {
        self.paths.push(path.to_string());
        let line = u32::try_from(self.paths.len()).unwrap_or(u32::MAX);
        Span { start: Pos { line, col: 1 }, end: Pos { line, col: 2 } }
    }

    /// The path of the value at `span` ("" for the document itself).
    pub fn path(&self, span: Span) -> &str {
        self.paths.get(span.start.line.saturating_sub(1) as usize).map(String::as_str).unwrap_or("")
    }

    /// Gives every diagnostic located in this table its path.
    pub fn locate(&self, diags: &mut Diagnostics) {
        for d in &mut diags.items {
            locate_one(self, d);
        }
    }
}

fn locate_one(table: &PathTable, d: &mut Diagnostic) {
    if let Some(s) = d.span {
        d.path = Some(table.path(s).to_string());
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A JSON value as the tree the YAML parser would build for it: JSON strings are quoted
/// scalars (always strings), numbers and booleans plain ones. `path` is the value's
/// document path; every value's span is recorded in `paths`.
pub fn json_to_node(v: &Value, path: &str, paths: &mut PathTable) -> Node {
    let span = paths.span(path);
    let kind = match v {
        Value::Null => NodeKind::Null,
        Value::Bool(b) => NodeKind::Scalar { text: b.to_string(), plain: true },
        Value::Number(n) => NodeKind::Scalar { text: n.to_string(), plain: true },
        Value::String(s) => NodeKind::Scalar { text: s.clone(), plain: false },
        Value::Array(a) => {
            NodeKind::Seq(a.iter().enumerate().map(|(i, c)| json_to_node(c, &format!("{path}[{i}]"), paths)).collect())
        }
        Value::Object(o) => NodeKind::Map(
            o.iter()
                .map(|(k, c)| {
                    let p = join(path, k);
                    let key = Node { span: paths.span(&p), kind: NodeKind::Scalar { text: k.clone(), plain: false } };
                    (key, json_to_node(c, &p, paths))
                })
                .collect(),
        ),
    };
    Node { span, kind }
}

/// Decodes `v`, the JSON of one part of a fleet at document path `path` (a write's body),
/// with the fleet file's own shape checks; the errors are located by path.
pub fn decode_json(part: Part<'_>, v: &Value, path: &str) -> Result<RawPart, Diagnostics> {
    let mut paths = PathTable::default();
    let node = json_to_node(v, path, &mut paths);
    let mut diags = Diagnostics::default();
    let raw = decode_part(part, &node, &mut diags);
    paths.locate(&mut diags);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    const SRC: &str = "version: 1
platform: { management_gateways: [198.51.100.10], ssh_port: 22 }
projects:
  acme:
    base_port: 20000
    vpcs:
      main: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16, peerings: [{ peer_vpc: vpc-1, peer_cidrs: [172.16.0.0/16] }] }
    services:
      pg:
        type: pg
        cloud: aws-eu-west-1
        vpc: main
        nodes: { pg-1: { private: 10.0.0.5, public: [203.0.113.5] } }
        user_config:
          ip_filter: ['10.0.0.0/8', { network: 192.0.2.0/24, description: office }]
          public_access: { pg: true }
        ports: { pg: 20001 }
tests:
  - { from: 10.1.2.3, to: pg-1, accept: [pg] }
";

    #[test]
    fn a_fleet_file_and_its_document_validate_to_the_same_fleet() {
        let cat = Catalog::builtin();
        let root = crate::yaml::parse(SRC).unwrap();
        let mut diags = Diagnostics::default();
        let raw = decode(&root, &mut diags);
        let doc = FleetDoc::from_raw(&raw);
        let json = serde_json::to_string(&doc).unwrap();
        let back: FleetDoc = serde_json::from_str(&json).unwrap();
        assert_eq!(back, doc);
        let (from_file, d1) = crate::load(SRC, &cat);
        let (from_doc, d2) = crate::validate_doc(&doc, &cat);
        assert!(!d1.has_errors() && !d2.has_errors(), "{:?} {:?}", d1.items, d2.items);
        let (a, b) = (from_file.unwrap(), from_doc.unwrap());
        assert_eq!(format!("{:?}", a.projects), format!("{:?}", b.projects));
        assert_eq!(a.tests.len(), b.tests.len());
    }

    #[test]
    fn a_documents_diagnostics_carry_the_path_of_the_value() {
        let cat = Catalog::builtin();
        let (_, diags) = crate::load(SRC, &cat);
        assert!(!diags.has_errors());
        let root = crate::yaml::parse(SRC).unwrap();
        let mut d = Diagnostics::default();
        let mut doc = FleetDoc::from_raw(&decode(&root, &mut d));
        let pg = Arc::make_mut(Arc::make_mut(doc.projects.get_mut("acme").unwrap()).services.get_mut("pg").unwrap());
        pg.user_config.ip_filter.as_mut().unwrap()[1] =
            IpFilterDoc::Entry { network: "192.0.2.1/24".into(), description: None };
        let (fleet, diags) = crate::validate_doc(&doc, &cat);
        assert!(fleet.is_none());
        let e = diags.items.iter().find(|d| d.severity == crate::Severity::Error).unwrap();
        assert_eq!(e.path.as_deref(), Some("projects.acme.services.pg.user_config.ip_filter[1].network"), "{e:?}");
    }
}

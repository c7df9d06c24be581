//! The service catalog: service types as data (`catalog/services.yaml`).
//!
//! Which components a type has, which of them may be opened publicly or over a private
//! link, which are web UIs on `web_port`, and which listeners only the cluster's own
//! nodes reach. Kept as data so adding a type is a catalog edit, not a compiler change;
//! the default catalog is embedded at build time and a user may load their own.

use crate::diag::{DiagCode, Diagnostic, Diagnostics};
use crate::raw::Decoder;
use crate::yaml::{self, Span};
use serde::Serialize;
use std::collections::BTreeMap;

/// The catalog compiled into the binary.
pub const DEFAULT_CATALOG: &str = include_str!("../../../catalog/services.yaml");

/// A transport protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A client-facing component of a service type (`pg`, `kafka_rest`, `grafana`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The component's name, as used in `public_access.<component>`.
    pub name: String,
    /// Port offset from the base port; `None` for web components (they use `web_port`).
    pub offset: Option<u16>,
    /// Listens on `platform.web_port` (Kafka Connect, Flink, Grafana, OpenSearch Dashboards).
    pub web: bool,
    /// May be opened on the public route (`public_access.<component>`).
    pub public: bool,
    /// May be opened on the private-link route (`privatelink_access.<component>`).
    pub privatelink: bool,
    /// A separate port offset for the private-link route (Kafka brokers).
    pub privatelink_offset: Option<u16>,
}

/// A listener only the other nodes of the same service reach (replication, transport, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterListener {
    /// The listener's name.
    pub name: String,
    /// Port offset from the base port.
    pub offset: u16,
    /// The protocols it speaks (same port for each).
    pub protocols: Vec<Protocol>,
}

/// One service type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceType {
    /// The type's name (`pg`, `kafka`, ...).
    pub name: String,
    /// Client components in catalog order.
    pub components: Vec<Component>,
    /// Cluster listeners in catalog order.
    pub cluster: Vec<ClusterListener>,
}

impl ServiceType {
    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// All service types, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Types by name.
    pub types: BTreeMap<String, ServiceType>,
    /// Deployment kinds (zones, subsystems, flows) by name (`catalog/deployments.yaml`).
    pub deployments: crate::deployment::DeploymentCatalog,
}

/// The largest offset a catalog may use: the width of the port range.
pub const MAX_OFFSET: u16 = 20000;

impl Catalog {
    /// The embedded default catalog.
    pub fn builtin() -> Catalog {
        let mut diags = Diagnostics::default();
        Catalog::parse(DEFAULT_CATALOG, &mut diags).expect("the embedded catalog is valid (tested)")
    }

    /// This catalog with the deployment kinds of `src` (a deployment catalog file) instead
    /// of the built-in ones; `None` (with diagnostics) when that file is invalid.
    pub fn with_deployments(self, src: &str, diags: &mut Diagnostics) -> Option<Catalog> {
        let deployments = crate::deployment::DeploymentCatalog::parse(src, diags)?;
        Some(Catalog { deployments, ..self })
    }

    /// Parses and validates a catalog file; `None` (with diagnostics) when invalid.
    pub fn parse(src: &str, diags: &mut Diagnostics) -> Option<Catalog> {
        let root = match yaml::parse(src) {
            Ok(r) => r,
            Err(d) => {
                diags.push(d);
                return None;
            }
        };
        let before = diags.errors();
        let mut d = Decoder { diags };
        let mut types = BTreeMap::new();
        let f = d.fields(&root, "catalog", &["version", "types"])?;
        for (tname, tnode) in f.get("types").map(|n| d.entries(n, "types")).unwrap_or_default() {
            let Some(tf) = d.fields(tnode, &format!("type {}", tname.value), &["components", "cluster"]) else {
                continue;
            };
            let mut ty = ServiceType { name: tname.value.clone(), components: Vec::new(), cluster: Vec::new() };
            let mut used: BTreeMap<(u16, Protocol), (String, Span)> = BTreeMap::new();
            let mut claim = |d: &mut Decoder, offset: u16, proto: Protocol, who: String, span: Span| {
                if offset > MAX_OFFSET {
                    d.diags.push(
                        Diagnostic::error(
                            DiagCode::Catalog,
                            format!("{who}: offset {offset} is larger than {MAX_OFFSET}"),
                        )
                        .at(span),
                    );
                } else if let Some((other, _)) = used.get(&(offset, proto)) {
                    d.diags.push(
                        Diagnostic::error(
                            DiagCode::Catalog,
                            format!("{who}: offset {offset} is already used by {other}"),
                        )
                        .at(span)
                        .hint("offsets must be unique within a type so a node's listeners never collide"),
                    );
                } else {
                    used.insert((offset, proto), (who, span));
                }
            };
            let comp_keys = ["offset", "web", "public", "privatelink", "privatelink_offset"];
            for (cname, cnode) in tf.get("components").map(|n| d.entries(n, "components")).unwrap_or_default() {
                let what = format!("{}.{}", tname.value, cname.value);
                let Some(cf) = d.fields(cnode, &what, &comp_keys) else { continue };
                let int = |d: &mut Decoder, key: &str| {
                    cf.get(key)
                        .and_then(|n| d.int(n, key))
                        .map(|v| (u16::try_from(v.value).unwrap_or(u16::MAX), v.span))
                };
                let offset = int(&mut d, "offset");
                let pl_offset = int(&mut d, "privatelink_offset");
                let flag = |d: &mut Decoder, key: &str, default: bool| {
                    cf.get(key).and_then(|n| d.boolean(n, key)).map_or(default, |b| b.value)
                };
                let web = flag(&mut d, "web", false);
                let comp = Component {
                    name: cname.value.clone(),
                    offset: offset.map(|o| o.0),
                    web,
                    public: flag(&mut d, "public", true),
                    privatelink: flag(&mut d, "privatelink", true),
                    privatelink_offset: pl_offset.map(|o| o.0),
                };
                match (web, offset) {
                    (false, None) => d.diags.push(
                        Diagnostic::error(
                            DiagCode::Catalog,
                            format!("{what}: a component needs an `offset` unless it is `web`"),
                        )
                        .at(cnode.span),
                    ),
                    (true, Some((_, span))) => d.diags.push(
                        Diagnostic::error(
                            DiagCode::Catalog,
                            format!("{what}: a web component listens on web_port and has no `offset`"),
                        )
                        .at(span),
                    ),
                    (false, Some((o, span))) => claim(&mut d, o, Protocol::Tcp, what.clone(), span),
                    (true, None) => {}
                }
                if let Some((o, span)) = pl_offset {
                    claim(&mut d, o, Protocol::Tcp, format!("{what} (privatelink)"), span);
                }
                ty.components.push(comp);
            }
            if ty.components.iter().filter(|c| c.web).count() > 1 {
                d.diags.push(
                    Diagnostic::error(DiagCode::Catalog, format!("type {}: more than one web component", tname.value))
                        .at(tnode.span)
                        .hint("web components share web_port, so a type can have only one"),
                );
            }
            for (lname, lnode) in tf.get("cluster").map(|n| d.entries(n, "cluster")).unwrap_or_default() {
                let what = format!("{}.{}", tname.value, lname.value);
                let Some(lf) = d.fields(lnode, &what, &["offset", "protocols"]) else { continue };
                let Some(offset) = lf.get("offset").and_then(|n| d.int(n, "offset")) else {
                    d.diags
                        .push(Diagnostic::error(DiagCode::Catalog, format!("{what}: missing `offset`")).at(lnode.span));
                    continue;
                };
                let mut protocols = Vec::new();
                match lf.get("protocols") {
                    None => protocols.push(Protocol::Tcp),
                    Some(n) => {
                        for p in d.strings(n, "protocols") {
                            match p.value.as_str() {
                                "tcp" => protocols.push(Protocol::Tcp),
                                "udp" => protocols.push(Protocol::Udp),
                                _ => d.diags.push(
                                    Diagnostic::error(DiagCode::Catalog, format!("{what}: unknown protocol"))
                                        .at(p.span)
                                        .value(p.value.clone())
                                        .hint("use tcp or udp"),
                                ),
                            }
                        }
                    }
                }
                let o = u16::try_from(offset.value).unwrap_or(u16::MAX);
                for p in &protocols {
                    claim(&mut d, o, *p, what.clone(), offset.span);
                }
                ty.cluster.push(ClusterListener { name: lname.value.clone(), offset: o, protocols });
            }
            types.insert(tname.value.clone(), ty);
        }
        (diags.errors() == before)
            .then(|| Catalog { types, deployments: crate::deployment::DeploymentCatalog::builtin() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_platform_components() {
        let c = Catalog::builtin();
        let names: Vec<&str> = c.types.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "clickhouse",
                "flink",
                "grafana",
                "kafka",
                "kafka_connect",
                "kafka_mirrormaker",
                "mysql",
                "opensearch",
                "pg",
                "valkey"
            ]
        );
        let kafka = &c.types["kafka"];
        let public: Vec<&str> = kafka.components.iter().filter(|c| c.public).map(|c| c.name.as_str()).collect();
        assert_eq!(public, ["kafka", "kafka_connect", "kafka_rest", "schema_registry", "prometheus"]);
        assert!(kafka.component("jolokia").unwrap().privatelink);
        assert!(kafka.component("kafka").unwrap().privatelink_offset.is_some());
        let web: Vec<&str> =
            c.types.values().flat_map(|t| t.components.iter().filter(|c| c.web).map(|c| c.name.as_str())).collect();
        assert_eq!(web, ["flink", "grafana", "kafka_connect", "opensearch_dashboards"]);
    }

    #[test]
    fn colliding_offsets_are_rejected() {
        let mut diags = Diagnostics::default();
        let src = "types:\n  t:\n    components:\n      a: { offset: 5 }\n    cluster:\n      r: { offset: 5 }\n";
        assert!(Catalog::parse(src, &mut diags).is_none());
        assert_eq!(diags.items[0].message, "t.r: offset 5 is already used by t.a");
        assert_eq!(diags.items[0].span.unwrap().start.line, 6);
    }
}

//! Typed edits of a fleet document: one operation per control-plane write.
//!
//! `Op::apply` changes a document in place (the caller works on a copy, which is cheap:
//! projects and services are shared) and says what it touched, so the control plane
//! revalidates and recompiles only that: a service's nodes for a service edit, the
//! services of a VPC when its peerings change, everything when the platform changes. An
//! operation refused here (404, 409) changes nothing; the touched part is then validated
//! like any fleet file.

use crate::diag::Diagnostics;
use crate::doc::*;
use crate::edit::Edit;
use crate::raw::{Part, RawPart};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One edit of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Replace the whole fleet.
    Replace(FleetDoc),
    /// Replace `platform:`.
    SetPlatform(PlatformDoc),
    /// Add a project.
    CreateProject(String, ProjectDoc),
    /// Remove a project and everything in it.
    DeleteProject(String),
    /// Add a VPC to a project.
    CreateVpc(String, String, VpcDoc),
    /// Remove a VPC no service uses.
    DeleteVpc(String, String),
    /// Add a peering to a VPC.
    CreatePeering(String, String, PeeringDoc),
    /// Remove the peering with a peer VPC id.
    DeletePeering(String, String, String),
    /// Add a service.
    CreateService(String, String, ServiceDoc),
    /// Remove a service.
    DeleteService(String, String),
    /// `-c`/`--remove-option` edits of a service's `user_config`.
    EditUserConfig(String, String, Vec<Edit>),
    /// Add a node to a service.
    AddNode(String, String, String, NodeDoc),
    /// Remove a node.
    RemoveNode(String, String, String),
    /// Create (`true`) or replace the principals of a service's private link.
    SetPrivatelink { project: String, service: String, provider: String, principals: Vec<String>, create: bool },
    /// Remove a service's private link.
    DeletePrivatelink(String, String, String),
    /// Register or change a connection of a service's private link (project, service,
    /// provider, connection id).
    SetConnection(String, String, String, String, ConnectionDoc),
    /// Remove a connection of a service's private link.
    DeleteConnection(String, String, String, String),
}

/// Why an operation was refused before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpError {
    /// Something named does not exist (404).
    NotFound(String),
    /// It exists already, or something needs it (409).
    Conflict(String),
    /// The edit itself is malformed (400).
    Invalid(String),
    /// The edited part does not have the shape of a fleet file's (400), located by path.
    Shape(Diagnostics),
}

/// How much of a project a write touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The project (its base port, every VPC and service).
    Whole,
    /// The project's VPCs and these services (none: only the VPCs).
    Services(BTreeSet<String>),
}

/// What a write touched: everything, or parts of some projects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Touched {
    /// The platform or the tests changed: every node.
    pub all: bool,
    /// The projects touched, and how much of each.
    pub projects: BTreeMap<String, Reach>,
}

impl Touched {
    /// Everything.
    pub fn all() -> Touched {
        Touched { all: true, projects: BTreeMap::new() }
    }

    fn project(p: &str) -> Touched {
        Touched { all: false, projects: BTreeMap::from([(p.to_string(), Reach::Whole)]) }
    }

    fn services(p: &str, services: impl IntoIterator<Item = String>) -> Touched {
        Touched {
            all: false,
            projects: BTreeMap::from([(p.to_string(), Reach::Services(services.into_iter().collect()))]),
        }
    }

    /// Whether service `s` of project `p` is in what was touched.
    pub fn covers(&self, p: &str, s: &str) -> bool {
        self.all
            || match self.projects.get(p) {
                Some(Reach::Whole) => true,
                Some(Reach::Services(set)) => set.contains(s),
                None => false,
            }
    }
}

/// 404 message of a missing project.
pub fn no_project(p: &str) -> String {
    format!("project '{p}' does not exist")
}

/// 404 message of a missing service.
pub fn no_service(p: &str, s: &str) -> String {
    format!("service '{s}' does not exist in project '{p}'")
}

/// 404 message of a missing VPC.
pub fn no_vpc(p: &str, v: &str) -> String {
    format!("VPC '{v}' does not exist in project '{p}'")
}

fn project_mut<'a>(doc: &'a mut FleetDoc, p: &str) -> Result<&'a mut ProjectDoc, OpError> {
    doc.projects.get_mut(p).map(Arc::make_mut).ok_or_else(|| OpError::NotFound(no_project(p)))
}

fn service_mut<'a>(doc: &'a mut FleetDoc, p: &str, s: &str) -> Result<&'a mut ServiceDoc, OpError> {
    project_mut(doc, p)?.services.get_mut(s).map(Arc::make_mut).ok_or_else(|| OpError::NotFound(no_service(p, s)))
}

fn vpc_mut<'a>(doc: &'a mut FleetDoc, p: &str, v: &str) -> Result<&'a mut VpcDoc, OpError> {
    project_mut(doc, p)?.vpcs.get_mut(v).ok_or_else(|| OpError::NotFound(no_vpc(p, v)))
}

/// "a" or "an" before `word` (`an aws`, `a google`).
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl Op {
    /// Applies the operation to `doc`; on error `doc` may be partly changed (apply to a
    /// copy). Returns what it touched.
    pub fn apply(&self, doc: &mut FleetDoc) -> Result<Touched, OpError> {
        match self {
            Op::Replace(new) => {
                *doc = new.clone();
                Ok(Touched::all())
            }
            Op::SetPlatform(pl) => {
                doc.platform = Some(pl.clone());
                Ok(Touched::all())
            }
            Op::CreateProject(name, pd) => {
                if doc.projects.contains_key(name) {
                    return Err(OpError::Conflict(format!("project '{name}' already exists")));
                }
                doc.projects.insert(name.clone(), Arc::new(pd.clone()));
                Ok(Touched::project(name))
            }
            Op::DeleteProject(name) => {
                doc.projects.remove(name).ok_or_else(|| OpError::NotFound(no_project(name)))?;
                Ok(Touched::project(name))
            }
            Op::CreateVpc(p, name, vd) => {
                let proj = project_mut(doc, p)?;
                if proj.vpcs.contains_key(name) {
                    return Err(OpError::Conflict(format!("VPC '{name}' already exists in project '{p}'")));
                }
                proj.vpcs.insert(name.clone(), vd.clone());
                Ok(Touched::services(p, []))
            }
            Op::DeleteVpc(p, v) => {
                let proj = project_mut(doc, p)?;
                if !proj.vpcs.contains_key(v) {
                    return Err(OpError::NotFound(no_vpc(p, v)));
                }
                // Say who uses it, rather than let validation report the services' `vpc:` as unknown.
                let users: Vec<&str> = proj
                    .services
                    .iter()
                    .filter(|(_, s)| s.vpc.as_deref() == Some(v.as_str()))
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !users.is_empty() {
                    return Err(OpError::Conflict(format!(
                        "VPC '{v}' is in use by service(s) {}: delete them or move them out of the VPC first",
                        users.join(", ")
                    )));
                }
                proj.vpcs.remove(v);
                Ok(Touched::services(p, []))
            }
            Op::CreatePeering(p, v, peering) => {
                let peer = peering.peer_vpc.clone().unwrap_or_default();
                let vpc = vpc_mut(doc, p, v)?;
                if vpc.peerings.iter().any(|x| x.peer_vpc.as_deref() == Some(peer.as_str())) {
                    return Err(OpError::Conflict(format!("VPC '{v}' already peers with '{peer}'")));
                }
                vpc.peerings.push(peering.clone());
                Ok(Touched::services(p, vpc_users(doc, p, v)))
            }
            Op::DeletePeering(p, v, peer) => {
                let vpc = vpc_mut(doc, p, v)?;
                let before = vpc.peerings.len();
                vpc.peerings.retain(|x| x.peer_vpc.as_deref() != Some(peer.as_str()));
                if vpc.peerings.len() == before {
                    return Err(OpError::NotFound(format!("VPC '{v}' has no peering with '{peer}'")));
                }
                Ok(Touched::services(p, vpc_users(doc, p, v)))
            }
            Op::CreateService(p, name, sd) => {
                let proj = project_mut(doc, p)?;
                if proj.services.contains_key(name) {
                    return Err(OpError::Conflict(format!("service '{name}' already exists in project '{p}'")));
                }
                proj.services.insert(name.clone(), Arc::new(sd.clone()));
                Ok(Touched::services(p, [name.clone()]))
            }
            Op::DeleteService(p, s) => {
                project_mut(doc, p)?.services.remove(s).ok_or_else(|| OpError::NotFound(no_service(p, s)))?;
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::EditUserConfig(p, s, edits) => {
                let svc = service_mut(doc, p, s)?;
                let current = serde_json::to_value(&svc.user_config).expect("user_config serializes");
                let next = crate::edit::apply(&current, edits).map_err(OpError::Invalid)?;
                let path = format!("projects.{p}.services.{s}.user_config");
                match decode_json(Part::UserConfig, &next, &path).map_err(OpError::Shape)? {
                    RawPart::UserConfig(uc) => svc.user_config = UserConfigDoc::from_raw(&uc),
                    _ => unreachable!("decoded as asked"),
                }
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::AddNode(p, s, name, nd) => {
                let svc = service_mut(doc, p, s)?;
                if svc.nodes.contains_key(name) {
                    return Err(OpError::Conflict(format!("node '{name}' already exists in service '{s}'")));
                }
                svc.nodes.insert(name.clone(), nd.clone());
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::RemoveNode(p, s, name) => {
                let svc = service_mut(doc, p, s)?;
                if svc.nodes.remove(name).is_none() {
                    return Err(OpError::NotFound(format!("node '{name}' does not exist in service '{s}'")));
                }
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::SetPrivatelink { project: p, service: s, provider, principals, create } => {
                let svc = service_mut(doc, p, s)?;
                if *create {
                    if let Some(have) = svc.privatelink.keys().next() {
                        return Err(OpError::Conflict(format!(
                            "service '{s}' already has {} {have} private link (one endpoint service per service)",
                            article(have)
                        )));
                    }
                } else if !svc.privatelink.contains_key(provider) {
                    return Err(OpError::NotFound(format!("service '{s}' has no {provider} private link")));
                }
                // The principals change; the connections registered stay.
                svc.privatelink.entry(provider.clone()).or_insert_with(PrivatelinkDoc::default).principals =
                    principals.clone();
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::SetConnection(p, s, provider, id, conn) => {
                let svc = service_mut(doc, p, s)?;
                let link = svc
                    .privatelink
                    .get_mut(provider)
                    .ok_or_else(|| OpError::NotFound(format!("service '{s}' has no {provider} private link")))?;
                link.connections.insert(id.clone(), conn.clone());
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::DeleteConnection(p, s, provider, id) => {
                let svc = service_mut(doc, p, s)?;
                let gone = svc.privatelink.get_mut(provider).and_then(|l| l.connections.remove(id));
                if gone.is_none() {
                    return Err(OpError::NotFound(format!(
                        "the {provider} private link of service '{s}' has no connection '{id}'"
                    )));
                }
                Ok(Touched::services(p, [s.clone()]))
            }
            Op::DeletePrivatelink(p, s, provider) => {
                delete_privatelink(doc, p, s, provider)?;
                Ok(Touched::services(p, [s.clone()]))
            }
        }
    }
}

/// The services of project `p` in VPC `v`.
fn vpc_users(doc: &FleetDoc, p: &str, v: &str) -> Vec<String> {
    doc.project(p)
        .map(|proj| proj.services.iter().filter(|(_, s)| s.vpc.as_deref() == Some(v)).map(|(n, _)| n.clone()).collect())
        .unwrap_or_default()
}

/// Removes the private-link resource; refused (409) while something needs it: a fleet
/// test that probes a node of the service on its `privatelink` route, or a component
/// with `privatelink_access` on. The message says which, not "create the private link
/// first" (which is what validating the edited fleet would say).
fn delete_privatelink(doc: &mut FleetDoc, p: &str, s: &str, provider: &str) -> Result<(), OpError> {
    let tests = doc.tests.clone();
    let svc = service_mut(doc, p, s)?;
    if !svc.privatelink.contains_key(provider) {
        return Err(OpError::NotFound(format!("service '{s}' has no {provider} private link")));
    }
    let link = format!("the {provider} private link of service '{s}'");
    // The test's own node and route only: its source may be another tenant's address.
    let needing: Vec<String> = tests
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let to = t.to.as_deref()?;
            let node = to.strip_suffix(".privatelink")?;
            svc.nodes.contains_key(node).then(|| format!("tests[{i}] (to {to})"))
        })
        .collect();
    if !needing.is_empty() {
        return Err(OpError::Conflict(format!(
            "{link} is needed by the fleet's test {}, which probes it; only the platform operator can change the fleet's tests",
            needing.join(", ")
        )));
    }
    let on: Vec<String> = svc
        .user_config
        .privatelink_access
        .iter()
        .filter(|(_, v)| **v)
        .map(|(k, _)| format!("privatelink_access.{k}"))
        .collect();
    if !on.is_empty() {
        return Err(OpError::Conflict(format!(
            "{link} is in use: {} {} on; turn it off first (--remove-option privatelink_access)",
            on.join(", "),
            if on.len() == 1 { "is" } else { "are" }
        )));
    }
    svc.privatelink.remove(provider);
    Ok(())
}

/// Reads a JSON part (a write's body) into its document with the fleet file's shape
/// checks, located at document path `path`.
pub fn part_from_json(part: Part<'_>, v: &Value, path: &str) -> Result<RawPart, OpError> {
    decode_json(part, v, path).map_err(OpError::Shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> FleetDoc {
        let src = "version: 1
platform: { management_gateways: [198.51.100.10] }
projects:
  acme:
    vpcs: { main: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 } }
    services:
      pg: { type: pg, cloud: aws-eu-west-1, vpc: main, nodes: { pg-1: { private: 10.0.0.5 } } }
      kf: { type: kafka, cloud: aws-eu-west-1, nodes: { kf-1: { public: 203.0.113.9 } } }
";
        let root = crate::yaml::parse(src).unwrap();
        FleetDoc::from_raw(&crate::raw::decode(&root, &mut Diagnostics::default()))
    }

    #[test]
    fn each_operation_says_what_it_touched() {
        let mut d = doc();
        let uc =
            Op::EditUserConfig("acme".into(), "pg".into(), vec![Edit::Set("ip_filter".into(), "10.0.0.0/8".into())]);
        let t = uc.apply(&mut d).unwrap();
        assert!(t.covers("acme", "pg") && !t.covers("acme", "kf") && !t.all);
        assert_eq!(
            d.service("acme", "pg").unwrap().user_config.ip_filter,
            Some(vec![IpFilterDoc::Network("10.0.0.0/8".into())])
        );
        let peering = PeeringDoc { peer_vpc: Some("vpc-1".into()), peer_cidrs: vec!["172.16.0.0/16".into()] };
        let t = Op::CreatePeering("acme".into(), "main".into(), peering).apply(&mut d).unwrap();
        assert!(t.covers("acme", "pg") && !t.covers("acme", "kf"), "peering touches the VPC's services: {t:?}");
        assert!(Op::SetPlatform(PlatformDoc::default()).apply(&mut d).unwrap().all);
    }

    #[test]
    fn refused_operations_say_why() {
        let mut d = doc();
        let e = Op::DeleteVpc("acme".into(), "main".into()).apply(&mut d).unwrap_err();
        assert!(matches!(&e, OpError::Conflict(m) if m.contains("in use by service(s) pg")), "{e:?}");
        let e = Op::RemoveNode("acme".into(), "pg".into(), "nope".into()).apply(&mut d).unwrap_err();
        assert!(matches!(e, OpError::NotFound(_)));
        let e = Op::CreateService("acme".into(), "pg".into(), ServiceDoc::default()).apply(&mut d).unwrap_err();
        assert!(matches!(e, OpError::Conflict(_)));
        let bad = Op::EditUserConfig(
            "acme".into(),
            "pg".into(),
            vec![Edit::Set("ip_filter".into(), r#"[{"networkk": "10.0.0.0/8"}]"#.into())],
        );
        match bad.apply(&mut d).unwrap_err() {
            OpError::Shape(diags) => {
                assert_eq!(
                    diags.items[0].path.as_deref(),
                    Some("projects.acme.services.pg.user_config.ip_filter[0].networkk")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_is_read_with_the_fleet_files_shape_checks() {
        let v = serde_json::json!({"tpye": "pg", "cloud": "aws-eu-west-1"});
        match part_from_json(Part::Service("x"), &v, "projects.acme.services.x") {
            Err(OpError::Shape(d)) => {
                assert_eq!(d.items[0].path.as_deref(), Some("projects.acme.services.x.tpye"));
                assert!(d.items[0].hint.as_deref().unwrap_or("").contains("type"), "{:?}", d.items[0]);
            }
            other => panic!("{:?}", other.is_ok()),
        }
    }
}

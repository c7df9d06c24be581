//! A write's body read into its typed operation (`model::ops::Op`), with the fleet
//! file's shape checks located by document path; the control plane applies it.

use crate::ApiError;
use fleetwall_model::doc::{NodeDoc, PeeringDoc, PlatformDoc, ProjectDoc, ServiceDoc, VpcDoc};
use fleetwall_model::ops::{self, Op};
use fleetwall_model::raw::{Part, RawPart};
use serde_json::{Map, Value};

/// The name rule for projects, VPCs, services and nodes: the fleet file's own
/// (`fleetwall_model::is_valid_name`), so a `POST` refuses exactly what `PUT /v1/fleet`
/// refuses.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if fleetwall_model::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!("invalid {what} name '{name}': {}", fleetwall_model::NAME_RULE)))
    }
}

/// 404 for a missing project.
pub fn no_project(p: &str) -> ApiError {
    ApiError::not_found(ops::no_project(p))
}

/// 404 for a missing service.
pub fn no_service(p: &str, s: &str) -> ApiError {
    ApiError::not_found(ops::no_service(p, s))
}

/// 404 for a missing VPC.
pub fn no_vpc(p: &str, v: &str) -> ApiError {
    ApiError::not_found(ops::no_vpc(p, v))
}

fn body_object(body: &Value) -> Result<Map<String, Value>, ApiError> {
    body.as_object().cloned().ok_or_else(|| ApiError::bad("the request body must be a JSON object"))
}

fn take_name(body: &mut Map<String, Value>, what: &str) -> Result<String, ApiError> {
    match body.remove("name") {
        Some(Value::String(s)) => {
            check_name(what, &s)?;
            Ok(s)
        }
        Some(other) => Err(ApiError::bad(format!("'name' must be a string, got {other}"))),
        None => Err(ApiError::bad(format!("missing 'name' of the {what}"))),
    }
}

/// Reads `body` as `part` of the fleet at document path `path`, with the fleet file's shape checks.
fn decode(part: Part<'_>, body: Map<String, Value>, path: &str) -> Result<RawPart, ApiError> {
    ops::part_from_json(part, &Value::Object(body), path).map_err(crate::op_error)
}

/// `PUT /v1/platform`: the new `platform:`.
pub fn put_platform(body: &Value) -> Result<Op, ApiError> {
    match decode(Part::Platform, body_object(body)?, "platform")? {
        RawPart::Platform(raw) => Ok(Op::SetPlatform(PlatformDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Adds a project: `{name, base_port?}`.
pub fn create_project(body: &Value) -> Result<Op, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "project")?;
    match decode(Part::Project(&name), b, &format!("projects.{name}"))? {
        RawPart::Project(raw) => Ok(Op::CreateProject(name, ProjectDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Adds a VPC: `{name, cloud, network_cidr, privatelink_cidrs?, peerings?}`.
pub fn create_vpc(p: &str, body: &Value) -> Result<Op, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "VPC")?;
    match decode(Part::Vpc(&name), b, &format!("projects.{p}.vpcs.{name}"))? {
        RawPart::Vpc(raw) => Ok(Op::CreateVpc(p.into(), name, VpcDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Adds a peering: `{peer_vpc, peer_cidrs}`.
pub fn create_peering(p: &str, v: &str, body: &Value) -> Result<Op, ApiError> {
    let b = body_object(body)?;
    match b.get("peer_vpc") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(ApiError::bad("missing 'peer_vpc' (a string, e.g. vpc-0abc)")),
    }
    match decode(Part::Peering, b, &format!("projects.{p}.vpcs.{v}.peerings[-]"))? {
        RawPart::Peering(raw) => Ok(Op::CreatePeering(p.into(), v.into(), PeeringDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Adds a service: `{name, type, cloud, vpc?, nodes?, user_config?, ...}`.
pub fn create_service(p: &str, body: &Value) -> Result<Op, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "service")?;
    b.entry("nodes").or_insert_with(|| Value::Object(Map::new()));
    match decode(Part::Service(&name), b, &format!("projects.{p}.services.{name}"))? {
        RawPart::Service(raw) => Ok(Op::CreateService(p.into(), name, ServiceDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Adds a node: `{name, private, public?}`.
pub fn add_node(p: &str, s: &str, body: &Value) -> Result<Op, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "node")?;
    match decode(Part::Node(&name), b, &format!("projects.{p}.services.{s}.nodes.{name}"))? {
        RawPart::Node(raw) => Ok(Op::AddNode(p.into(), s.into(), name, NodeDoc::from_raw(&raw))),
        _ => unreachable!("decoded as asked"),
    }
}

/// Reads `{principals: [..]}`.
pub fn principals(body: &Value) -> Result<Vec<String>, ApiError> {
    match body.get("principals") {
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            Ok(a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        }
        Some(_) => Err(ApiError::bad("'principals' must be a list of strings (IAM ARNs, subscription or project ids)")),
        None => Err(ApiError::bad("missing 'principals'")),
    }
}

#[cfg(test)]
mod name_tests {
    /// `POST` and the fleet file agree on every name: what one accepts the other does
    /// (before, `POST` refused `Acme.prod` that `PUT /v1/fleet` stored, and took `_x`
    /// that the fleet file refuses).
    #[test]
    fn post_and_the_fleet_file_share_one_name_rule() {
        let long = "a".repeat(64);
        for name in ["acme", "Acme.prod", "pg-main_2", "_x", "-x", ".x", "a b", "", "ä", long.as_str(), "x\n"] {
            let src = format!(
                "version: 1\nplatform: {{ management_gateways: [198.51.100.10] }}\nprojects:\n  {}: {{}}\n",
                serde_json::to_string(name).unwrap()
            );
            let file_ok = fleetwall_model::load(&src, &fleetwall_model::Catalog::builtin()).0.is_some();
            assert_eq!(super::check_name("project", name).is_ok(), file_ok, "{name:?}");
        }
        assert!(super::check_name("project", "Acme.prod").is_ok());
        let e = super::check_name("project", "_x").unwrap_err();
        assert!(e.message.contains("start with a letter or digit"), "{}", e.message);
    }
}

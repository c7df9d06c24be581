//! Edits of the fleet document, one function per API write. Each works on a copy; the
//! caller validates the result as a whole and stores it only when valid.

use crate::ApiError;
use serde_json::{json, Map, Value};

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

fn obj<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    // A stored document passed validation, where an empty mapping may be written as
    // null (`acme: ~`): that is the only non-object found here.
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    let map = v.as_object_mut().expect("a validated fleet document holds mappings here");
    let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// 404 for a missing project.
pub fn no_project(p: &str) -> ApiError {
    ApiError::not_found(format!("project '{p}' does not exist"))
}

/// 404 for a missing service.
pub fn no_service(p: &str, s: &str) -> ApiError {
    ApiError::not_found(format!("service '{s}' does not exist in project '{p}'"))
}

/// 404 for a missing VPC.
pub fn no_vpc(p: &str, v: &str) -> ApiError {
    ApiError::not_found(format!("VPC '{v}' does not exist in project '{p}'"))
}

/// The project's object, or 404.
pub fn project<'a>(doc: &'a mut Value, p: &str) -> Result<&'a mut Value, ApiError> {
    obj(doc, "projects").get_mut(p).ok_or_else(|| no_project(p))
}

/// The service's object, or 404.
pub fn service<'a>(doc: &'a mut Value, p: &str, s: &str) -> Result<&'a mut Value, ApiError> {
    obj(project(doc, p)?, "services").get_mut(s).ok_or_else(|| no_service(p, s))
}

/// The VPC's object, or 404.
pub fn vpc<'a>(doc: &'a mut Value, p: &str, v: &str) -> Result<&'a mut Value, ApiError> {
    obj(project(doc, p)?, "vpcs").get_mut(v).ok_or_else(|| no_vpc(p, v))
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

/// Adds a project: `{name, base_port?}`.
pub fn create_project(doc: &mut Value, body: &Value) -> Result<String, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "project")?;
    let projects = obj(doc, "projects");
    if projects.contains_key(&name) {
        return Err(ApiError::conflict(format!("project '{name}' already exists")));
    }
    projects.insert(name.clone(), Value::Object(b));
    Ok(name)
}

/// Removes a project and everything in it.
pub fn delete_project(doc: &mut Value, p: &str) -> Result<(), ApiError> {
    project(doc, p)?;
    obj(doc, "projects").remove(p);
    Ok(())
}

/// Adds a VPC: `{name, cloud, network_cidr, privatelink_cidrs?, peerings?}`.
pub fn create_vpc(doc: &mut Value, p: &str, body: &Value) -> Result<String, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "VPC")?;
    let vpcs = obj(project(doc, p)?, "vpcs");
    if vpcs.contains_key(&name) {
        return Err(ApiError::conflict(format!("VPC '{name}' already exists in project '{p}'")));
    }
    vpcs.insert(name.clone(), Value::Object(b));
    Ok(name)
}

/// Removes a VPC (validation refuses it while a service still uses it).
pub fn delete_vpc(doc: &mut Value, p: &str, v: &str) -> Result<(), ApiError> {
    vpc(doc, p, v)?;
    // Say who uses it, rather than let validation report the services' `vpc:` as unknown.
    let users: Vec<String> = obj(project(doc, p)?, "services")
        .iter()
        .filter(|(_, svc)| svc.get("vpc").and_then(Value::as_str) == Some(v))
        .map(|(name, _)| name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "VPC '{v}' is in use by service(s) {}: delete them or move them out of the VPC first",
            users.join(", ")
        )));
    }
    obj(project(doc, p)?, "vpcs").remove(v);
    Ok(())
}

/// Adds a peering: `{peer_vpc, peer_cidrs}`.
pub fn create_peering(doc: &mut Value, p: &str, v: &str, body: &Value) -> Result<String, ApiError> {
    let b = body_object(body)?;
    let peer = match b.get("peer_vpc") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::bad("missing 'peer_vpc' (a string, e.g. vpc-0abc)")),
    };
    let vpc = vpc(doc, p, v)?.as_object_mut().ok_or_else(|| ApiError::bad("the VPC is not an object"))?;
    let list = vpc.entry("peerings").or_insert_with(|| json!([]));
    let arr = list.as_array_mut().ok_or_else(|| ApiError::bad("the VPC's peerings are not a list"))?;
    if arr.iter().any(|x| x.get("peer_vpc") == Some(&Value::String(peer.clone()))) {
        return Err(ApiError::conflict(format!("VPC '{v}' already peers with '{peer}'")));
    }
    arr.push(Value::Object(b));
    Ok(peer)
}

/// Removes the peering with `peer`.
pub fn delete_peering(doc: &mut Value, p: &str, v: &str, peer: &str) -> Result<(), ApiError> {
    let vpc = vpc(doc, p, v)?;
    let arr = vpc.get_mut("peerings").and_then(Value::as_array_mut);
    let Some(arr) = arr else {
        return Err(ApiError::not_found(format!("VPC '{v}' has no peering with '{peer}'")));
    };
    let before = arr.len();
    arr.retain(|x| x.get("peer_vpc").and_then(Value::as_str) != Some(peer));
    if arr.len() == before {
        return Err(ApiError::not_found(format!("VPC '{v}' has no peering with '{peer}'")));
    }
    Ok(())
}

/// Adds a service: `{name, type, cloud, vpc?, nodes?, user_config?, ...}`.
pub fn create_service(doc: &mut Value, p: &str, body: &Value) -> Result<String, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "service")?;
    let services = obj(project(doc, p)?, "services");
    if services.contains_key(&name) {
        return Err(ApiError::conflict(format!("service '{name}' already exists in project '{p}'")));
    }
    b.entry("nodes").or_insert_with(|| json!({}));
    services.insert(name.clone(), Value::Object(b));
    Ok(name)
}

/// Removes a service.
pub fn delete_service(doc: &mut Value, p: &str, s: &str) -> Result<(), ApiError> {
    service(doc, p, s)?;
    obj(project(doc, p)?, "services").remove(s);
    Ok(())
}

/// Applies `-c`/`--remove-option` edits to a service's `user_config`.
pub fn edit_user_config(
    doc: &mut Value,
    p: &str,
    s: &str,
    edits: &[fleetwall_model::edit::Edit],
) -> Result<(), ApiError> {
    let svc = service(doc, p, s)?;
    let current = svc.get("user_config").cloned().unwrap_or_else(|| json!({}));
    let next = fleetwall_model::edit::apply(&current, edits).map_err(ApiError::bad)?;
    svc.as_object_mut()
        .ok_or_else(|| ApiError::bad("the service is not an object"))?
        .insert("user_config".into(), next);
    Ok(())
}

/// Adds a node: `{name, private, public?}`.
pub fn add_node(doc: &mut Value, p: &str, s: &str, body: &Value) -> Result<String, ApiError> {
    let mut b = body_object(body)?;
    let name = take_name(&mut b, "node")?;
    let svc = service(doc, p, s)?;
    let nodes = obj(svc, "nodes");
    if nodes.contains_key(&name) {
        return Err(ApiError::conflict(format!("node '{name}' already exists in service '{s}'")));
    }
    nodes.insert(name.clone(), Value::Object(b));
    Ok(name)
}

/// Removes a node.
pub fn remove_node(doc: &mut Value, p: &str, s: &str, n: &str) -> Result<(), ApiError> {
    let svc = service(doc, p, s)?;
    if obj(svc, "nodes").remove(n).is_none() {
        return Err(ApiError::not_found(format!("node '{n}' does not exist in service '{s}'")));
    }
    Ok(())
}

/// Reads `{principals: [..]}`.
pub fn principals(body: &Value) -> Result<Vec<Value>, ApiError> {
    match body.get("principals") {
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(a.clone()),
        Some(_) => Err(ApiError::bad("'principals' must be a list of strings (IAM ARNs, subscription or project ids)")),
        None => Err(ApiError::bad("missing 'principals'")),
    }
}

/// Creates the service's private-link resource with `principals`.
pub fn create_privatelink(doc: &mut Value, p: &str, s: &str, provider: &str, who: Vec<Value>) -> Result<(), ApiError> {
    let svc = service(doc, p, s)?;
    if let Some(existing) = svc.get("privatelink").and_then(Value::as_object).filter(|o| !o.is_empty()) {
        let have = existing.keys().next().cloned().unwrap_or_default();
        return Err(ApiError::conflict(format!(
            "service '{s}' already has {} {have} private link (one endpoint service per service)",
            article(&have)
        )));
    }
    let o = svc.as_object_mut().ok_or_else(|| ApiError::bad("the service is not an object"))?;
    o.insert("privatelink".into(), json!({ provider: { "principals": who } }));
    Ok(())
}

/// Replaces the principals (the whole list) of the private-link resource.
pub fn update_privatelink(doc: &mut Value, p: &str, s: &str, provider: &str, who: Vec<Value>) -> Result<(), ApiError> {
    let svc = service(doc, p, s)?;
    let pl = svc
        .get_mut("privatelink")
        .and_then(|v| v.get_mut(provider))
        .ok_or_else(|| ApiError::not_found(format!("service '{s}' has no {provider} private link")))?;
    *pl = json!({ "principals": who });
    Ok(())
}

/// Removes the private-link resource; refused (409) while something needs it: a fleet
/// test that probes a node of the service on its `privatelink` route, or a component
/// with `privatelink_access` on. The message says which, not "create the private link
/// first" (which is what validating the edited fleet would say).
pub fn delete_privatelink(doc: &mut Value, p: &str, s: &str, provider: &str) -> Result<(), ApiError> {
    let tests: Vec<Value> = doc.get("tests").and_then(Value::as_array).cloned().unwrap_or_default();
    let svc = service(doc, p, s)?;
    let has = svc.get("privatelink").and_then(|v| v.get(provider)).is_some();
    if !has {
        return Err(ApiError::not_found(format!("service '{s}' has no {provider} private link")));
    }
    let link = format!("the {provider} private link of service '{s}'");
    let nodes: Vec<&String> =
        svc.get("nodes").and_then(Value::as_object).map(|o| o.keys().collect()).unwrap_or_default();
    // The test's own node and route only: its source may be another tenant's address.
    let needing: Vec<String> = tests
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let to = t.get("to").and_then(Value::as_str)?;
            let node = to.strip_suffix(".privatelink")?;
            nodes.iter().any(|n| *n == node).then(|| format!("tests[{i}] (to {to})"))
        })
        .collect();
    if !needing.is_empty() {
        return Err(ApiError::conflict(format!(
            "{link} is needed by the fleet's test {}, which probes it; only the platform operator can change the fleet's tests",
            needing.join(", ")
        )));
    }
    let on: Vec<String> = svc
        .pointer("/user_config/privatelink_access")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| format!("privatelink_access.{k}"))
                .collect()
        })
        .unwrap_or_default();
    if !on.is_empty() {
        return Err(ApiError::conflict(format!(
            "{link} is in use: {} {} on; turn it off first (--remove-option privatelink_access)",
            on.join(", "),
            if on.len() == 1 { "is" } else { "are" }
        )));
    }
    svc.as_object_mut().expect("checked above").remove("privatelink");
    Ok(())
}

/// Replaces the platform section.
pub fn put_platform(doc: &mut Value, body: &Value) -> Result<(), ApiError> {
    let b = body_object(body)?;
    doc.as_object_mut().expect("object").insert("platform".into(), Value::Object(b));
    Ok(())
}

/// "a" or "an" before `word` (`an aws`, `a google`).
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
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

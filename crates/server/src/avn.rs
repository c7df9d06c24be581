//! The managed platform's own API dialect, so that its CLI (`avn`, from the `aiven-client`
//! package) drives `fleetwall serve` unchanged: the paths it calls (`/v1/project/{project}/…`,
//! singular), its `Authorization: aivenv1 TOKEN` scheme, its JSON shapes and its error
//! bodies (`{"message": …, "errors": [{"message", "status"}]}`).
//!
//! Key decision: this module only translates. Every write is one of fleetwall's typed
//! operations (`model::ops::Op`) through [`ControlPlane::write`], so it is validated,
//! audited and compiled exactly like a write of fleetwall's own API, and its refusal carries
//! the same messages. A field of the platform's shapes that fleetwall has no notion of
//! (plans, create times, cloud accounts, service URIs) is `null`, never made up.

use crate::api::{self, body_json, need_project};
use crate::web::{Request, Response};
use crate::{ops, ptr, Actor, ApiError, ControlPlane};
use fleetwall_model::edit::Edit;
use fleetwall_model::ops::Op;
use fleetwall_model::Catalog;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The token of an `Authorization: aivenv1 <token>` header (the platform CLI's scheme;
/// compared case-insensitively, like `Bearer`).
pub fn token(headers: &[(String, String)]) -> Option<&str> {
    let value = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization"))?.1.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("aivenv1") && !token.is_empty()).then_some(token)
}

/// Whether a path is one of this dialect's (`/v1/project/…`, `/v1/service_types`).
pub fn is_avn_path(segs: &[&str]) -> bool {
    matches!(segs, ["v1", "project", ..] | ["v1", "service_types"])
}

/// An error in the platform's shape: the message, and each validation problem as an
/// entry of `errors` (with its document path), or the message alone.
pub fn error_response(e: &ApiError) -> Response {
    let errors: Vec<Value> = if e.diagnostics.is_empty() {
        vec![json!({"message": e.message, "status": e.status})]
    } else {
        e.diagnostics
            .iter()
            .map(|d| {
                let message = crate::with_value(&d.message, d.value.as_deref());
                let message = match &d.hint {
                    Some(h) => format!("{message} ({h})"),
                    None => message,
                };
                json!({"message": message, "path": d.path, "status": e.status})
            })
            .collect()
    };
    Response::json(e.status, &json!({"errors": errors, "message": e.message}))
}

/// Answers a request of this dialect from an authenticated `actor`; every failure is
/// answered in the platform's error shape.
pub fn route(cp: &Arc<ControlPlane>, actor: &Actor, req: &Request, segs: &[&str]) -> Response {
    answer(cp, actor, req, segs).unwrap_or_else(|e| error_response(&e))
}

fn answer(cp: &Arc<ControlPlane>, actor: &Actor, req: &Request, segs: &[&str]) -> Result<Response, ApiError> {
    let m = req.method.as_str();
    if let ["v1", "service_types"] = segs {
        return match m {
            "GET" => Ok(Response::json(200, &json!({"service_types": service_types(&cp.catalog)}))),
            _ => Err(not_allowed(req)),
        };
    }
    let ["v1", "project", p, rest @ ..] = segs else { return Err(no_endpoint(req)) };
    need_project(actor, p)?;
    let snap = cp.snapshot();
    if snap.doc().project(p).is_none() {
        return Err(ops::no_project(p));
    }
    match (m, rest) {
        ("GET", ["service_types"]) => Ok(Response::json(200, &json!({"service_types": service_types(&cp.catalog)}))),
        ("GET", ["service-types", t]) => {
            let ty = cp.catalog.types.get(*t).ok_or_else(|| {
                ApiError::not_found(format!("Service type '{t}' is not known (see GET /v1/project/{p}/service_types)"))
            })?;
            let mut one = service_type(ty);
            one.insert("service_type".into(), json!(t));
            Ok(Response::json(200, &one))
        }
        ("GET", ["service"]) => {
            let listeners = api::listeners_of(&snap, p);
            let proj = snap.doc().project(p).ok_or_else(|| ops::no_project(p))?;
            let services =
                proj.services.keys().map(|s| service_object(cp, &listeners, p, s)).collect::<Result<Vec<_>, _>>()?;
            Ok(Response::json(200, &json!({"services": services})))
        }
        ("GET", ["service", s]) => {
            let svc = service_object(cp, &api::listeners_of(&snap, p), p, s)?;
            Ok(Response::json(200, &json!({"service": svc})))
        }
        ("PUT", ["service", s]) => {
            let edits = service_update(&body_json(req)?)?;
            if !edits.is_empty() {
                let target = format!("/projects/{}/services/{}/user_config", ptr(p), ptr(s));
                let op = Op::EditUserConfig(p.to_string(), s.to_string(), edits);
                cp.edit(actor, "service.update", &target, op)?;
            } else if snap.doc().service(p, s).is_none() {
                return Err(ops::no_service(p, s));
            }
            let svc = service_object(cp, &api::listeners_of(&cp.snapshot(), p), p, s)?;
            Ok(Response::json(200, &json!({"message": "updated", "service": svc})))
        }
        (_, ["service", s, "privatelink", provider, tail @ ..]) => privatelink(cp, actor, req, p, s, provider, tail),
        ("GET", ["vpcs"]) => {
            let proj = snap.doc().project(p).ok_or_else(|| ops::no_project(p))?;
            let vpcs: Vec<Value> = proj.vpcs.iter().map(|(n, v)| vpc_object(n, v)).collect();
            Ok(Response::json(200, &json!({"vpcs": vpcs})))
        }
        ("POST", ["vpcs"]) => {
            let body = body_json(req)?;
            let name = new_vpc_name(snap.doc(), p);
            let mut fleet_body = json!({"name": name});
            for (from, to) in [("cloud_name", "cloud"), ("network_cidr", "network_cidr")] {
                fleet_body[to] = body.get(from).cloned().ok_or_else(|| ApiError::bad(format!("missing '{from}'")))?;
            }
            let peerings = match body.get("peering_connections") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list.iter().map(peering_body).collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(ApiError::bad("'peering_connections' must be a list")),
            };
            if !peerings.is_empty() {
                fleet_body["peerings"] = Value::Array(peerings);
            }
            let target = format!("/projects/{}/vpcs/{}", ptr(p), ptr(&name));
            cp.edit(actor, "vpc.create", &target, ops::create_vpc(p, &fleet_body)?)?;
            Ok(Response::json(201, &vpc_in(cp, p, &name)?))
        }
        ("GET", ["vpcs", v]) => Ok(Response::json(200, &vpc_in(cp, p, v)?)),
        ("DELETE", ["vpcs", v]) => {
            let gone = vpc_in(cp, p, v)?;
            let target = format!("/projects/{}/vpcs/{}", ptr(p), ptr(v));
            cp.edit(actor, "vpc.delete", &target, Op::DeleteVpc(p.to_string(), v.to_string()))?;
            let mut gone = gone;
            gone["state"] = json!("DELETED");
            Ok(Response::json(200, &gone))
        }
        ("POST", ["vpcs", v, "peering-connections"]) => {
            let body = body_json(req)?;
            let fleet_body = peering_body(&body)?;
            let target = format!("/projects/{}/vpcs/{}/peerings", ptr(p), ptr(v));
            cp.edit(actor, "peering.create", &target, ops::create_peering(p, v, &fleet_body)?)?;
            let peer = fleet_body["peer_vpc"].as_str().unwrap_or_default();
            let vpc = vpc_in(cp, p, v)?;
            let made = vpc["peering_connections"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["peer_vpc"] == peer).cloned())
                .ok_or_else(|| ApiError::internal("the new peering is not in the VPC"))?;
            Ok(Response::json(201, &made))
        }
        ("DELETE", ["vpcs", v, "peering-connections", "peer-accounts", _account, tail @ ..]) => {
            let peer = match tail {
                ["peer-vpcs", peer] | ["peer-vpcs", peer, "peer-regions", _] => *peer,
                ["peer-resource-groups", _, "peer-vpcs", peer] => *peer,
                ["peer-resource-groups", _, "peer-vpcs", peer, "peer-regions", _] => *peer,
                _ => return Err(no_endpoint(req)),
            };
            let vpc = vpc_in(cp, p, v)?;
            let mut gone = vpc["peering_connections"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["peer_vpc"] == peer).cloned())
                .ok_or_else(|| ApiError::not_found(format!("VPC '{v}' has no peering connection to '{peer}'")))?;
            let target = format!("/projects/{}/vpcs/{}/peerings", ptr(p), ptr(v));
            let op = Op::DeletePeering(p.to_string(), v.to_string(), peer.to_string());
            cp.edit(actor, "peering.delete", &target, op)?;
            gone["state"] = json!("DELETED");
            Ok(Response::json(200, &gone))
        }
        _ => Err(no_endpoint(req)),
    }
}

fn no_endpoint(req: &Request) -> ApiError {
    ApiError::not_found(format!(
        "fleetwall does not serve {} {} (of the platform's API it serves services, private links, VPCs and peerings)",
        req.method, req.path
    ))
}

fn not_allowed(req: &Request) -> ApiError {
    ApiError::new(405, format!("{} is not allowed on {}", req.method, req.path))
}

/// The `user_config` edits of a `PUT /v1/project/{p}/service/{s}` body. The platform's
/// other settings (plan, cloud, maintenance, …) are not fleetwall's: asking to change one
/// is refused rather than ignored.
fn service_update(body: &Value) -> Result<Vec<Edit>, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::bad("the request body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "user_config") {
        return Err(ApiError::bad(format!(
            "'{k}' is not a setting fleetwall manages (it manages the network settings of user_config)"
        )));
    }
    let uc = match obj.get("user_config") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(uc)) => uc,
        Some(_) => return Err(ApiError::bad("Invalid 'user_config': must be an object")),
    };
    Ok(user_config_edits(uc))
}

/// The platform sends `user_config` as the keys to change (`null` removes one); fleetwall's
/// edits take `KEY=VALUE` text, typed by the key.
fn user_config_edits(uc: &Map<String, Value>) -> Vec<Edit> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut edits = Vec::new();
    for (k, v) in uc {
        match v {
            Value::Null => edits.push(Edit::Remove(k.clone())),
            Value::Object(flags) => {
                for (c, f) in flags {
                    let key = format!("{k}.{c}");
                    edits.push(if f.is_null() { Edit::Remove(key) } else { Edit::Set(key, text(f)) });
                }
            }
            other => edits.push(Edit::Set(k.clone(), text(other))),
        }
    }
    edits
}

/// A service in the platform's shape: its name, type, cloud, VPC, `user_config` and client
/// listeners (`components`); what fleetwall does not track (state, plan, times) is null.
fn service_object(
    cp: &ControlPlane,
    listeners: &[fleetwall_compile::listeners::PortRow],
    p: &str,
    s: &str,
) -> Result<Value, ApiError> {
    let snap = cp.snapshot();
    let svc = snap.doc().service(p, s).ok_or_else(|| ops::no_service(p, s))?;
    // A connection's own ports are listed once, on its own host, as the platform does.
    let connections: Vec<(&String, &fleetwall_model::doc::ConnectionDoc)> =
        svc.privatelink.values().flat_map(|l| &l.connections).collect();
    let own_port = |component: &str, port: u16| {
        connections.iter().any(|(_, c)| c.ports.get(component).is_some_and(|p| *p == i64::from(port)))
    };
    let mut components: Vec<Value> = listeners
        .iter()
        .filter(|r| r.service == s && r.route.as_str() != "cluster")
        .filter(|r| !(r.route.as_str() == "privatelink" && own_port(&r.component, r.port)))
        .map(|r| {
            json!({
                "component": r.component,
                "host": r.address.to_string(),
                "port": r.port,
                "route": r.route.as_str(),
            })
        })
        .collect();
    let open = |c: &fleetwall_model::doc::ConnectionDoc| {
        c.state.as_deref().and_then(fleetwall_model::ConnectionState::parse).is_some_and(|st| st.opens())
    };
    let route_open = |c: &str| svc.user_config.privatelink_access.get(c) == Some(&true);
    for (id, c) in connections.iter().filter(|(_, c)| open(c)) {
        for (component, port) in c.ports.iter().filter(|(component, _)| route_open(component)) {
            components.push(json!({
                "component": component,
                "host": c.host,
                "port": port,
                "privatelink_connection_id": id,
                "route": "privatelink",
            }));
        }
    }
    let user_config = serde_json::to_value(&svc.user_config).map_err(ApiError::internal)?;
    Ok(json!({
        "cloud_name": svc.cloud,
        "components": components,
        "connection_info": {},
        "create_time": null,
        "node_count": svc.nodes.len(),
        "plan": null,
        "project_vpc_id": svc.vpc,
        "service_name": s,
        "service_type": svc.service_type,
        "service_uri": null,
        "state": null,
        "update_time": null,
        "user_config": user_config,
    }))
}

/// Every service type of the catalog with the JSON schema of the `user_config` keys
/// fleetwall knows for it.
pub fn service_types(catalog: &Catalog) -> Map<String, Value> {
    catalog.types.iter().map(|(n, t)| (n.clone(), Value::Object(service_type(t)))).collect()
}

fn service_type(t: &fleetwall_model::catalog::ServiceType) -> Map<String, Value> {
    let flags = |title: &str, pick: &dyn Fn(&fleetwall_model::catalog::Component) -> bool| {
        let props: Map<String, Value> = t
            .components
            .iter()
            .filter(|c| pick(c))
            .map(|c| (c.name.clone(), json!({"type": ["boolean", "null"], "title": format!("{title}: {}", c.name)})))
            .collect();
        json!({"type": "object", "title": title, "additionalProperties": false, "properties": props})
    };
    let schema = json!({
        "type": "object",
        "title": format!("{} settings fleetwall manages", t.name),
        "additionalProperties": false,
        "properties": {
            "ip_filter": {
                "type": ["array", "null"],
                "title": "IP filter",
                "description": "Allow incoming connections from CIDR address block, e.g. '10.20.0.0/16'",
                "maxItems": 8000,
                "default": ["0.0.0.0/0", "::/0"],
                "items": {
                    "type": ["string", "object"],
                    "title": "CIDR address block, either as a string, or in a dict with an optional description field",
                    "properties": {
                        "network": {"type": "string", "title": "CIDR address block"},
                        "description": {"type": "string", "title": "Description for IP filter list entry"}
                    },
                    "required": ["network"]
                }
            },
            "public_access": flags("Allow access to selected service ports from the public Internet", &|c| c.public),
            "private_access": flags("Allow access to selected service ports from private networks", &|_| true),
            "privatelink_access": flags("Allow access to selected service components through Privatelink", &|c| c.privatelink),
            "static_ips": {"type": ["boolean", "null"], "title": "Use static public IP addresses"}
        }
    });
    let mut m = Map::new();
    m.insert("description".into(), json!(format!("{} (fleetwall's service catalog)", t.name)));
    m.insert("user_config_schema".into(), schema);
    m
}

/// The first free `vpc-N` of project `p`: the platform's CLI names no VPC it creates.
fn new_vpc_name(doc: &fleetwall_model::doc::FleetDoc, p: &str) -> String {
    let taken = |n: &str| doc.project(p).is_some_and(|proj| proj.vpcs.contains_key(n));
    (1..).map(|i| format!("vpc-{i}")).find(|n| !taken(n)).expect("a free name")
}

/// A platform peering request read as fleetwall's peering: the peer's VPC id and the
/// networks behind it. fleetwall has no cloud to ask for those networks, so they must be
/// given (`--user-peer-network-cidr`).
fn peering_body(body: &Value) -> Result<Value, ApiError> {
    let peer = match body.get("peer_vpc") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::bad("missing 'peer_vpc' (the peer's VPC id, e.g. vpc-0abc)")),
    };
    let cidrs = match body.get("user_peer_network_cidrs") {
        Some(Value::Array(a)) if !a.is_empty() => Value::Array(a.clone()),
        _ => {
            return Err(ApiError::bad(format!(
                "the peering to '{peer}' needs the peer's network CIDRs (user_peer_network_cidrs, \
                 avn: --user-peer-network-cidr): fleetwall has no cloud account to read them from"
            )))
        }
    };
    Ok(json!({"peer_vpc": peer, "peer_cidrs": cidrs}))
}

fn vpc_in(cp: &ControlPlane, p: &str, v: &str) -> Result<Value, ApiError> {
    let snap = cp.snapshot();
    let proj = snap.doc().project(p).ok_or_else(|| ops::no_project(p))?;
    let vpc = proj.vpcs.get(v).ok_or_else(|| ops::no_vpc(p, v))?;
    Ok(vpc_object(v, vpc))
}

/// A VPC in the platform's shape. Its `project_vpc_id` is fleetwall's VPC name; `ACTIVE`
/// says it is in the fleet and compiled into its services' rulesets.
fn vpc_object(name: &str, v: &fleetwall_model::doc::VpcDoc) -> Value {
    let peerings: Vec<Value> = v
        .peerings
        .iter()
        .map(|pe| {
            json!({
                "create_time": null,
                "peer_cloud_account": null,
                "peer_region": null,
                "peer_resource_group": null,
                "peer_vpc": pe.peer_vpc,
                "state": "ACTIVE",
                "state_info": null,
                "update_time": null,
                "user_peer_network_cidrs": pe.peer_cidrs,
            })
        })
        .collect();
    json!({
        "cloud_name": v.cloud,
        "create_time": null,
        "network_cidr": v.network_cidr,
        "peering_connections": peerings,
        "project_vpc_id": name,
        "state": "ACTIVE",
        "update_time": null,
    })
}

/// `…/service/{s}/privatelink/{aws|azure|google}[/…]` on the same writes and states as
/// fleetwall's own private-link routes. Azure's `user_subscription_ids` are its principals;
/// Google's link has none.
fn privatelink(
    cp: &Arc<ControlPlane>,
    actor: &Actor,
    req: &Request,
    p: &str,
    s: &str,
    provider: &str,
    tail: &[&str],
) -> Result<Response, ApiError> {
    crate::api::known_provider(provider)?;
    let principals = |body: &Value| -> Result<Vec<String>, ApiError> {
        match provider {
            "aws" => ops::principals(body),
            "azure" => match body.get("user_subscription_ids") {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(v) => ops::principals(&json!({"principals": v})),
            },
            _ => Ok(Vec::new()),
        }
    };
    let target = format!("/projects/{}/services/{}/privatelink", ptr(p), ptr(s));
    let set = |create: bool, who: Vec<String>| Op::SetPrivatelink {
        project: p.into(),
        service: s.into(),
        provider: provider.into(),
        principals: who,
        create,
    };
    match (req.method.as_str(), tail) {
        ("POST", []) => {
            let op = set(true, principals(&body_json(req)?)?);
            cp.write(actor, "privatelink.create", &target, op, api::record_privatelink(p, s, provider, "creating"))?;
            Ok(Response::json(200, &privatelink_object(cp, p, s, provider)?))
        }
        ("GET", []) => Ok(Response::json(200, &privatelink_object(cp, p, s, provider)?)),
        ("PUT", []) => {
            let op = set(false, principals(&body_json(req)?)?);
            cp.edit(actor, "privatelink.update", &target, op)?;
            Ok(Response::json(200, &privatelink_object(cp, p, s, provider)?))
        }
        ("DELETE", []) => {
            let mut gone = privatelink_object(cp, p, s, provider)?;
            let op = Op::DeletePrivatelink(p.into(), s.into(), provider.into());
            cp.write(actor, "privatelink.delete", &target, op, api::record_privatelink(p, s, provider, "deleting"))?;
            let state = api::privatelink_state(cp, p, s, false)?.map_or_else(|| "deleted".to_string(), |(st, _)| st);
            gone["state"] = json!(state);
            Ok(Response::json(200, &gone))
        }
        ("POST", ["refresh"]) => {
            let list = crate::connections::refresh(cp, actor, (p, s, provider))?;
            Ok(Response::json(200, &json!({"connections": connection_objects(provider, &list)})))
        }
        ("GET", ["connections"]) => {
            let list = crate::connections::list(cp, p, s, provider)?;
            Ok(Response::json(200, &json!({"connections": connection_objects(provider, &list)})))
        }
        // Azure: `connection update --endpoint-ip-address`, then `connection approve`.
        ("PUT", ["connections", id]) if provider == "azure" => {
            let body = body_json(req)?;
            let ip = body
                .get("user_ip_address")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad("missing 'user_ip_address' (avn: --endpoint-ip-address)"))?;
            let c = crate::connections::set_user_ip(cp, actor, (p, s, provider, id), ip)?;
            Ok(Response::json(200, &connection_object(provider, &c)))
        }
        // Azure sends no body (the address came with `update`); Google sends the address.
        ("POST", ["connections", id, "approve"]) => {
            let body = body_json(req)?;
            let ip = body.get("user_ip_address").and_then(Value::as_str);
            let c = crate::connections::approve(cp, actor, (p, s, provider, id), ip)?;
            Ok(Response::json(200, &connection_object(provider, &c)))
        }
        _ => Err(no_endpoint(req)),
    }
}

/// A connection in the platform's shape for its provider.
fn connection_object(provider: &str, c: &fleetwall_api::PrivatelinkConnection) -> Value {
    match provider {
        "aws" => json!({
            "dns_name": c.dns_name,
            "privatelink_connection_id": c.privatelink_connection_id,
            "state": c.state,
            "vpc_endpoint_id": c.vpc_endpoint_id,
        }),
        "azure" => json!({
            "private_endpoint_id": c.vpc_endpoint_id,
            "privatelink_connection_id": c.privatelink_connection_id,
            "state": c.state,
            "user_ip_address": c.user_ip_address,
        }),
        _ => json!({
            "privatelink_connection_id": c.privatelink_connection_id,
            "psc_connection_id": c.vpc_endpoint_id,
            "state": c.state,
            "user_ip_address": c.user_ip_address,
        }),
    }
}

fn connection_objects(provider: &str, list: &[fleetwall_api::PrivatelinkConnection]) -> Vec<Value> {
    list.iter().map(|c| connection_object(provider, c)).collect()
}

/// A private link in the platform's shape for its provider.
fn privatelink_object(cp: &ControlPlane, p: &str, s: &str, provider: &str) -> Result<Value, ApiError> {
    let svc = api::service_in(cp.snapshot().doc(), p, s)?;
    let pl = api::privatelink_view(cp, p, s, provider, &svc)?;
    Ok(match provider {
        "aws" => json!({
            "aws_service_id": pl.aws_service_id,
            "aws_service_name": pl.aws_service_name,
            "principals": pl.principals,
            "state": pl.state,
        }),
        "azure" => json!({
            "azure_service_alias": null,
            "azure_service_id": null,
            "state": pl.state,
            "user_subscription_ids": pl.principals,
        }),
        _ => json!({"google_service_attachment": null, "state": pl.state}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> Vec<(String, String)> {
        vec![("authorization".into(), v.into())]
    }

    #[test]
    fn the_aivenv1_scheme_gives_the_token_and_nothing_else_does() {
        assert_eq!(token(&headers("aivenv1 fw_abc")), Some("fw_abc"));
        assert_eq!(token(&headers("AIVENV1   fw_abc ")), Some("fw_abc"));
        assert_eq!(token(&headers("Bearer fw_abc")), None);
        assert_eq!(token(&headers("aivenv1")), None);
        assert_eq!(token(&headers("aivenv1 ")), None);
        assert_eq!(token(&[]), None);
    }

    #[test]
    fn the_platforms_user_config_becomes_typed_edits() {
        let uc = json!({
            "ip_filter": ["10.0.0.0/8", {"network": "192.0.2.0/24", "description": "office"}],
            "privatelink_access": {"kafka": true, "kafka_rest": null},
            "static_ips": null,
        });
        let edits = user_config_edits(uc.as_object().unwrap());
        assert_eq!(
            edits,
            vec![
                Edit::Set(
                    "ip_filter".into(),
                    r#"["10.0.0.0/8",{"description":"office","network":"192.0.2.0/24"}]"#.into()
                ),
                Edit::Set("privatelink_access.kafka".into(), "true".into()),
                Edit::Remove("privatelink_access.kafka_rest".into()),
                Edit::Remove("static_ips".into()),
            ]
        );
    }

    #[test]
    fn settings_fleetwall_does_not_manage_are_refused_not_ignored() {
        let e = service_update(&json!({"plan": "business-4", "user_config": {}})).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("'plan' is not a setting fleetwall manages"), "{}", e.message);
        assert!(service_update(&json!({"user_config": {}})).unwrap().is_empty());
    }

    #[test]
    fn the_schema_offers_privatelink_only_where_the_catalog_allows_it() {
        let types = service_types(&Catalog::builtin());
        let kafka = &types["kafka"]["user_config_schema"]["properties"];
        assert_eq!(kafka["privatelink_access"]["properties"]["kafka"]["type"], json!(["boolean", "null"]));
        assert_eq!(kafka["ip_filter"]["type"], json!(["array", "null"]));
        for (name, t) in &Catalog::builtin().types {
            let props = &types[name]["user_config_schema"]["properties"]["privatelink_access"]["properties"];
            for c in &t.components {
                assert_eq!(props.get(&c.name).is_some(), c.privatelink, "{name}.{}", c.name);
            }
        }
    }

    #[test]
    fn a_peering_without_the_peers_networks_says_how_to_give_them() {
        let e = peering_body(&json!({"peer_vpc": "vpc-0abc", "peer_cloud_account": "012345678901"})).unwrap_err();
        assert!(e.message.contains("--user-peer-network-cidr"), "{}", e.message);
        let ok = peering_body(&json!({"peer_vpc": "vpc-0abc", "user_peer_network_cidrs": ["172.31.0.0/16"]})).unwrap();
        assert_eq!(ok, json!({"peer_vpc": "vpc-0abc", "peer_cidrs": ["172.31.0.0/16"]}));
    }
}

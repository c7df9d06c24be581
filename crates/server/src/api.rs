//! The HTTP/JSON API: routing, authorization, and the JSON views. The OpenAPI document
//! (built in `openapi`, served at `/openapi.json`) describes every route listed in `ROUTES`.
//!
//! Callers are authenticated twice over: on the request head, before its body is read
//! ([`admit`], so a stranger cannot make the server buffer a body), and again in the routing.

use crate::web::{Admission, Request, RequestHead, Response};
use crate::{ops, ptr, Actor, ApiError, ControlPlane, Report, Written};
use fleetwall_api as wire;
use fleetwall_model::doc::FleetDoc;
use fleetwall_model::ops::Op;
use serde_json::{json, Value};
use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The OpenAPI 3.1 document, built from the API types on first use (see [`crate::openapi`]);
/// building it panics when a route of [`ROUTES`] has no operation.
pub static OPENAPI: LazyLock<String> = LazyLock::new(crate::openapi::document);

/// Every (method, path template) the API serves; the OpenAPI document lists the same.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/v1/fleet"),
    ("PUT", "/v1/fleet"),
    ("PUT", "/v1/platform"),
    ("GET", "/v1/projects"),
    ("POST", "/v1/projects"),
    ("GET", "/v1/projects/{project}"),
    ("DELETE", "/v1/projects/{project}"),
    ("GET", "/v1/projects/{project}/vpcs"),
    ("POST", "/v1/projects/{project}/vpcs"),
    ("GET", "/v1/projects/{project}/vpcs/{vpc}"),
    ("DELETE", "/v1/projects/{project}/vpcs/{vpc}"),
    ("POST", "/v1/projects/{project}/vpcs/{vpc}/peerings"),
    ("DELETE", "/v1/projects/{project}/vpcs/{vpc}/peerings/{peer_vpc}"),
    ("GET", "/v1/projects/{project}/services"),
    ("POST", "/v1/projects/{project}/services"),
    ("GET", "/v1/projects/{project}/services/{service}"),
    ("DELETE", "/v1/projects/{project}/services/{service}"),
    ("PATCH", "/v1/projects/{project}/services/{service}/user_config"),
    ("POST", "/v1/projects/{project}/services/{service}/nodes"),
    ("DELETE", "/v1/projects/{project}/services/{service}/nodes/{node}"),
    ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}"),
    ("GET", "/v1/projects/{project}/services/{service}/privatelink/{provider}"),
    ("PUT", "/v1/projects/{project}/services/{service}/privatelink/{provider}"),
    ("DELETE", "/v1/projects/{project}/services/{service}/privatelink/{provider}"),
    ("GET", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections"),
    ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections"),
    ("DELETE", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections/{connection}"),
    ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections/{connection}/approve"),
    ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/refresh"),
    ("GET", "/v1/status"),
    ("GET", "/v1/audit"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{id}"),
    ("GET", "/v1/nodes/{node}/ruleset"),
    ("GET", "/v1/nodes/{node}/backup-key"),
    ("GET", "/v1/projects/{project}/services/{service}/backup-key"),
    ("PUT", "/v1/nodes/{node}/status"),
    ("GET", "/v1/nodes/{node}/ssh-trust"),
    ("POST", "/v1/access"),
    ("GET", "/v1/access"),
    ("GET", "/v1/access/settings"),
    ("PUT", "/v1/access/settings"),
    ("GET", "/v1/access/ca"),
    ("POST", "/v1/access/ca"),
    ("DELETE", "/v1/access/ca/{ca}"),
    ("GET", "/v1/access/{id}"),
    ("POST", "/v1/access/{id}/approve"),
    ("POST", "/v1/access/{id}/deny"),
    ("POST", "/v1/access/{id}/revoke"),
    ("GET", "/v1/access/{id}/certificate"),
    ("GET", "/v1/access/{id}/audit"),
];

/// The longest long-poll a caller may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The largest body read from a caller without a valid token: only the public routes
/// (`/healthz`, `/openapi.json`, `/metrics`) are served to one, and none of them takes a body.
pub const UNAUTHENTICATED_MAX_BODY: usize = 4 << 10;

fn error_response(e: &ApiError) -> Response {
    let body = wire::ErrorBody { diagnostics: e.diagnostics.clone(), message: e.message.clone(), status: e.status };
    let r = Response::json(e.status, &body);
    if e.status == 401 {
        r.header("www-authenticate", "Bearer")
    } else {
        r
    }
}

/// Answers one request. A panic while answering is answered (and counted) as a 500 here, so
/// that the metrics see it.
pub fn handle(cp: &Arc<ControlPlane>, req: Request) -> Response {
    answer(cp, &req.method, || route(cp, &req))
}

/// Runs `route`, turns its error or panic into the error response, and counts the status.
fn answer(cp: &ControlPlane, method: &str, route: impl FnOnce() -> Result<Response, ApiError>) -> Response {
    let resp = match catch_unwind(AssertUnwindSafe(route)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&ApiError::internal("internal error")),
    };
    cp.metrics.request(method, resp.status);
    resp
}

/// Decides from a request's head, before its body is read, whether to read it: up to
/// [`UNAUTHENTICATED_MAX_BODY`] for the public routes, up to the server's limit for a caller
/// with a valid token, and for anyone else not at all (401).
pub fn admit(cp: &ControlPlane, head: &RequestHead<'_>) -> Admission {
    let segs: Vec<&str> = head.path.split('/').filter(|s| !s.is_empty()).collect();
    if head.method == "GET" && matches!(segs.as_slice(), ["healthz" | "openapi.json" | "metrics"]) {
        return Admission::Read { max_body: UNAUTHENTICATED_MAX_BODY, caller: None };
    }
    match cp.authenticate(head.bearer().or_else(|| crate::avn::token(head.headers))) {
        // The handler takes the caller from here: one token lookup per request, not two.
        Ok(actor) => Admission::Read { max_body: usize::MAX, caller: Some(actor.name()) },
        Err(e) => {
            cp.metrics.request(head.method, e.status);
            if crate::avn::is_avn_path(&segs) {
                return Admission::Refuse(crate::avn::error_response(&e));
            }
            Admission::Refuse(error_response(&e))
        }
    }
}

/// The query parameter `name` as a whole number in `range`; `None` when it is absent.
fn query_int(req: &Request, name: &str, range: RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
    let Some(text) = req.query(name) else { return Ok(None) };
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad(format!(
            "query parameter '{name}' must be a whole number from {} to {}, got '{text}'",
            range.start(),
            range.end()
        ))),
    }
}

/// The query parameter `name` as a number of seconds from 0 to `max`; `None` when absent.
fn query_seconds(req: &Request, name: &str, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(text) = req.query(name) else { return Ok(None) };
    match text.parse::<f64>() {
        // Rejects NaN and the infinities too, which from_secs_f64 would panic on.
        Ok(secs) if (0.0..=max.as_secs_f64()).contains(&secs) => Ok(Some(Duration::from_secs_f64(secs))),
        _ => Err(ApiError::bad(format!(
            "query parameter '{name}' must be a number of seconds from 0 to {}, got '{text}'",
            max.as_secs_f64()
        ))),
    }
}

pub(crate) fn body_json(req: &Request) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}")))
}

fn need_admin(a: &Actor) -> Result<(), ApiError> {
    match a {
        Actor::Admin(_) => Ok(()),
        other => Err(ApiError::forbidden(format!("{} may not do this (admin only)", other.name()))),
    }
}

pub(crate) fn need_project(a: &Actor, p: &str) -> Result<(), ApiError> {
    if a.may_project(p) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{} may not access project '{p}'", a.name())))
    }
}

/// The project's stored object, as JSON.
fn project_in(doc: &FleetDoc, p: &str) -> Result<Value, ApiError> {
    let pd = doc.project(p).ok_or_else(|| ops::no_project(p))?;
    serde_json::to_value(pd).map_err(ApiError::internal)
}

/// The service's stored object, as JSON.
pub(crate) fn service_in(doc: &FleetDoc, p: &str, s: &str) -> Result<Value, ApiError> {
    doc.project(p).ok_or_else(|| ops::no_project(p))?;
    let sd = doc.service(p, s).ok_or_else(|| ops::no_service(p, s))?;
    serde_json::to_value(sd).map_err(ApiError::internal)
}

fn written(w: Written, status: u16) -> Response {
    Response::json(status, &w)
}

fn route(cp: &Arc<ControlPlane>, req: &Request) -> Result<Response, ApiError> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.as_str();
    match (m, segs.as_slice()) {
        ("GET", ["healthz"]) => {
            let health =
                wire::Health { revision: cp.snapshot().revision, status: "ok".into(), store: cp.db.kind().into() };
            return Ok(Response::json(200, &health));
        }
        ("GET", ["openapi.json"]) => return Ok(Response::new(200, "application/json", OPENAPI.as_str())),
        ("GET", ["metrics"]) => {
            let in_sync = cp.nodes_in_sync();
            return Ok(Response::new(200, "text/plain; version=0.0.4", cp.metrics.render(in_sync, cp.uptime())));
        }
        _ => {}
    }
    let actor = match req.caller.as_deref().and_then(Actor::from_name) {
        Some(actor) => actor,
        None => cp.authenticate(req.bearer().or_else(|| crate::avn::token(&req.headers)))?,
    };
    // Reads on a replica see every committed write (PostgreSQL: another replica's too).
    if m == "GET" && cp.db.kind() == "postgres" && !matches!(segs.as_slice(), ["v1", "nodes", _, "ruleset"]) {
        cp.refresh()?;
    }
    // The managed platform's own dialect (its CLI, `avn`), on the same writes.
    if crate::avn::is_avn_path(&segs) {
        return Ok(crate::avn::route(cp, &actor, req, &segs));
    }
    let snap = cp.snapshot();
    match (m, segs.as_slice()) {
        ("GET", ["v1", "fleet"]) => {
            need_admin(&actor)?;
            let (rev, doc) = match query_int(req, "revision", 1..=i64::MAX)? {
                Some(r) => (r, cp.doc_at_revision(r)?),
                None => (snap.revision, snap.doc().clone()),
            };
            let doc = serde_json::to_value(&doc).map_err(ApiError::internal)?;
            if req.query("format") == Some("yaml") {
                let text = format!("# fleet revision {rev}\n{}", crate::doc::to_yaml(&doc));
                return Ok(Response::new(200, "application/yaml", text).header("x-fleet-revision", &rev.to_string()));
            }
            Ok(Response::json(200, &wire::FleetRevision { fleet: doc, revision: rev }))
        }
        ("PUT", ["v1", "fleet"]) => {
            need_admin(&actor)?;
            let text = std::str::from_utf8(&req.body).map_err(|_| ApiError::bad("the fleet file is not UTF-8"))?;
            let doc = crate::fleet_file(text, &cp.catalog).map_err(|d| crate::file_rejection(&d))?;
            Ok(written(cp.replace(&actor, "fleet.replace", doc)?, 200))
        }
        ("PUT", ["v1", "platform"]) => {
            need_admin(&actor)?;
            let body = body_json(req)?;
            Ok(written(cp.edit(&actor, "platform.update", "/platform", ops::put_platform(&body)?)?, 200))
        }
        ("GET", ["v1", "projects"]) => {
            let mut projects = Vec::new();
            for p in snap.doc().projects.keys().filter(|p| actor.may_project(p)) {
                projects.push(project_view(p, &project_in(snap.doc(), p)?));
            }
            Ok(Response::json(200, &wire::ProjectList { projects }))
        }
        ("POST", ["v1", "projects"]) => {
            need_admin(&actor)?;
            let body = body_json(req)?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let target = format!("/projects/{}", ptr(&name));
            let w = cp.edit(&actor, "project.create", &target, ops::create_project(&body)?)?;
            Ok(written(w, 201))
        }
        ("GET", ["v1", "projects", p]) => {
            need_project(&actor, p)?;
            let v = project_in(snap.doc(), p)?;
            Ok(Response::json(200, &project_view(p, &v)))
        }
        ("DELETE", ["v1", "projects", p]) => {
            need_admin(&actor)?;
            let target = format!("/projects/{}", ptr(p));
            Ok(written(cp.edit(&actor, "project.delete", &target, Op::DeleteProject(p.to_string()))?, 200))
        }
        ("GET", ["v1", "projects", p, "vpcs"]) => {
            need_project(&actor, p)?;
            let proj = project_in(snap.doc(), p)?;
            let vpcs: Vec<wire::Vpc> = proj
                .get("vpcs")
                .and_then(Value::as_object)
                .map(|o| o.iter().map(|(n, v)| wire::Vpc { name: n.clone(), stored: stored(v) }).collect())
                .unwrap_or_default();
            Ok(Response::json(200, &wire::VpcList { vpcs }))
        }
        ("POST", ["v1", "projects", p, "vpcs"]) => {
            need_project(&actor, p)?;
            let body = body_json(req)?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let target = format!("/projects/{}/vpcs/{}", ptr(p), ptr(&name));
            Ok(written(cp.edit(&actor, "vpc.create", &target, ops::create_vpc(p, &body)?)?, 201))
        }
        ("GET", ["v1", "projects", p, "vpcs", v]) => {
            need_project(&actor, p)?;
            let proj = project_in(snap.doc(), p)?;
            let vpc = proj.pointer(&format!("/vpcs/{}", ptr(v))).ok_or_else(|| ops::no_vpc(p, v))?;
            Ok(Response::json(200, &wire::Vpc { name: v.to_string(), stored: stored(vpc) }))
        }
        ("DELETE", ["v1", "projects", p, "vpcs", v]) => {
            need_project(&actor, p)?;
            let target = format!("/projects/{}/vpcs/{}", ptr(p), ptr(v));
            Ok(written(cp.edit(&actor, "vpc.delete", &target, Op::DeleteVpc(p.to_string(), v.to_string()))?, 200))
        }
        ("POST", ["v1", "projects", p, "vpcs", v, "peerings"]) => {
            need_project(&actor, p)?;
            let body = body_json(req)?;
            let target = format!("/projects/{}/vpcs/{}/peerings", ptr(p), ptr(v));
            Ok(written(cp.edit(&actor, "peering.create", &target, ops::create_peering(p, v, &body)?)?, 201))
        }
        ("DELETE", ["v1", "projects", p, "vpcs", v, "peerings", peer]) => {
            need_project(&actor, p)?;
            let target = format!("/projects/{}/vpcs/{}/peerings", ptr(p), ptr(v));
            Ok(written(
                cp.edit(
                    &actor,
                    "peering.delete",
                    &target,
                    Op::DeletePeering(p.to_string(), v.to_string(), peer.to_string()),
                )?,
                200,
            ))
        }
        ("GET", ["v1", "projects", p, "services"]) => {
            need_project(&actor, p)?;
            let proj = project_in(snap.doc(), p)?;
            let listeners = listeners_of(&snap, p);
            let services = proj
                .get("services")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(n, v)| service_view(cp, &listeners, p, n, v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Response::json(200, &wire::ServiceList { services }))
        }
        ("POST", ["v1", "projects", p, "services"]) => {
            need_project(&actor, p)?;
            let body = body_json(req)?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let target = format!("/projects/{}/services/{}", ptr(p), ptr(&name));
            let w = cp.edit(&actor, "service.create", &target, ops::create_service(p, &body)?)?;
            // The service's backup key pair is made with it (after the write: it is slow).
            cp.make_key(&actor, p, &name)?;
            Ok(written(w, 201))
        }
        ("GET", ["v1", "projects", p, "services", s, "backup-key"]) => {
            need_project(&actor, p)?;
            service_in(snap.doc(), p, s)?;
            let private = match req.query("private") {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => {
                    return Err(ApiError::bad(format!("query parameter 'private' must be true or false, got '{v}'")))
                }
            };
            Ok(Response::json(200, &cp.backup_key(&actor, p, s, private)?))
        }
        ("GET", ["v1", "projects", p, "services", s]) => {
            need_project(&actor, p)?;
            let svc = service_in(snap.doc(), p, s)?;
            Ok(Response::json(200, &service_view(cp, &listeners_of(&snap, p), p, s, &svc)?))
        }
        ("DELETE", ["v1", "projects", p, "services", s]) => {
            need_project(&actor, p)?;
            let target = format!("/projects/{}/services/{}", ptr(p), ptr(s));
            Ok(written(
                cp.edit(&actor, "service.delete", &target, Op::DeleteService(p.to_string(), s.to_string()))?,
                200,
            ))
        }
        ("PATCH", ["v1", "projects", p, "services", s, "user_config"]) => {
            need_project(&actor, p)?;
            let body = body_json(req)?;
            let mut edits = Vec::new();
            for c in strings(&body, "config")? {
                edits.push(fleetwall_model::edit::Edit::parse_set(&c).map_err(ApiError::bad)?);
            }
            for r in strings(&body, "remove")? {
                edits.push(fleetwall_model::edit::Edit::Remove(r));
            }
            if edits.is_empty() {
                return Err(ApiError::bad(
                    "nothing to change: give \"config\": [\"KEY=VALUE\", …] and/or \"remove\": [\"KEY\", …]",
                ));
            }
            let target = format!("/projects/{}/services/{}/user_config", ptr(p), ptr(s));
            Ok(written(
                cp.edit(&actor, "service.update", &target, Op::EditUserConfig(p.to_string(), s.to_string(), edits))?,
                200,
            ))
        }
        ("POST", ["v1", "projects", p, "services", s, "nodes"]) => {
            need_project(&actor, p)?;
            let body = body_json(req)?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let target = format!("/projects/{}/services/{}/nodes/{}", ptr(p), ptr(s), ptr(&name));
            Ok(written(cp.edit(&actor, "node.add", &target, ops::add_node(p, s, &body)?)?, 201))
        }
        ("DELETE", ["v1", "projects", p, "services", s, "nodes", n]) => {
            need_project(&actor, p)?;
            let target = format!("/projects/{}/services/{}/nodes/{}", ptr(p), ptr(s), ptr(n));
            Ok(written(
                cp.edit(&actor, "node.remove", &target, Op::RemoveNode(p.to_string(), s.to_string(), n.to_string()))?,
                200,
            ))
        }
        (_, ["v1", "projects", p, "services", s, "privatelink", provider, rest @ ..]) => {
            need_project(&actor, p)?;
            privatelink(cp, &actor, req, p, s, provider, rest)
        }
        ("GET", ["v1", "status"]) => {
            let nodes = cp.status(|d| actor.may_project(&d.project) || matches!(&actor, Actor::Admin(_)))?;
            Ok(Response::json(200, &wire::StatusView { nodes, revision: snap.revision }))
        }
        ("GET", ["v1", "audit"]) => {
            need_admin(&actor)?;
            let limit = query_int(req, "limit", 1..=10_000)?.unwrap_or(100);
            let after = query_int(req, "after", 0..=i64::MAX)?.unwrap_or(0);
            let rows = cp.db.read(|tx| {
                tx.query(
                    &format!("SELECT {} FROM audit WHERE id > ? ORDER BY id LIMIT ?", crate::AUDIT_COLUMNS),
                    &[crate::db::V::I(after), crate::db::V::I(limit)],
                )
            })?;
            let entries: Vec<wire::AuditEntry> = rows.iter().map(|r| crate::audit_entry(r)).collect();
            Ok(Response::json(200, &wire::AuditLog { entries }))
        }
        ("POST", ["v1", "tokens"]) => {
            need_admin(&actor)?;
            let body = body_json(req)?;
            let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
            let scope = match kind {
                "project" => body.get("project"),
                "agent" => body.get("node"),
                _ => body.get("name"),
            }
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad("give {\"kind\": \"project\", \"project\": P}, {\"kind\": \"agent\", \"node\": N} or {\"kind\": \"admin\", \"name\": N}"))?;
            let ttl = match body.get("expires_in_s") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    ApiError::bad(format!("expires_in_s must be a whole number of seconds, got {v}"))
                })?),
            };
            let token = cp.create_token(Some(&actor), kind, scope, ttl)?;
            let id: String = crate::util::sha256_hex(token.as_bytes()).chars().take(12).collect();
            let created = wire::TokenCreated { id, kind: kind.into(), scope: scope.into(), token };
            Ok(Response::json(201, &created))
        }
        ("GET", ["v1", "tokens"]) => {
            need_admin(&actor)?;
            Ok(Response::json(200, &wire::TokenList { tokens: cp.list_tokens()? }))
        }
        ("DELETE", ["v1", "tokens", id]) => {
            need_admin(&actor)?;
            Ok(Response::json(200, &cp.revoke_token(&actor, id)?))
        }
        ("GET", ["v1", "nodes", n, "backup-key"]) => {
            match &actor {
                Actor::Admin(_) => {}
                Actor::Agent(me) if me == n => {}
                other => return Err(ApiError::forbidden(format!("{} may not read node '{n}'", other.name()))),
            }
            let d = snap.nodes().get(*n).ok_or_else(|| ApiError::not_found(format!("no node '{n}'")))?;
            Ok(Response::json(200, &cp.backup_key(&actor, &d.project, &d.service, false)?))
        }
        ("GET", ["v1", "nodes", n, "ruleset"]) => {
            match &actor {
                Actor::Admin(_) => {}
                Actor::Agent(me) if me == n => {}
                other => return Err(ApiError::forbidden(format!("{} may not read node '{n}'", other.name()))),
            }
            let after = query_int(req, "after", -1..=i64::MAX)?.unwrap_or(-1);
            let wait = query_seconds(req, "wait", MAX_WAIT)?.unwrap_or(Duration::ZERO);
            match cp.wait_node(n, after, wait) {
                None => Err(ApiError::not_found(format!(
                    "node '{n}' is not in the fleet (revision {})",
                    cp.snapshot().revision
                ))),
                Some(d) if d.revision <= after => Ok(Response::new(304, "application/json", Vec::new())
                    .header("x-fleet-revision", &d.revision.to_string())),
                Some(d) => {
                    // Straight from the IR, compact: at a platform change every agent fetches
                    // one at once.
                    let body = wire::RulesetResponse {
                        fleet_revision: cp.snapshot().revision,
                        hash: d.hash.clone(),
                        node: n.to_string(),
                        revision: d.revision,
                        ruleset: &*d.ruleset,
                    };
                    Ok(Response::json_compact(200, &body))
                }
            }
        }
        (_, ["v1", "access", ..]) | ("GET", ["v1", "nodes", _, "ssh-trust"]) => access(cp, &actor, req, &segs),
        ("PUT", ["v1", "nodes", n, "status"]) => {
            match &actor {
                Actor::Agent(me) if me == n => {}
                other => return Err(ApiError::forbidden(format!("{} may not report for node '{n}'", other.name()))),
            }
            let r: Report =
                serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("invalid status report: {e}")))?;
            r.validate(snap.revision, crate::util::now_ms()).map_err(ApiError::bad)?;
            cp.report(n, &r)?;
            if let Some(d) = snap.nodes().get(*n) {
                // A private link of this node's service may now be in force everywhere.
                privatelink_state(cp, &d.project, &d.service, true)?;
            }
            Ok(Response::json(200, &wire::Ack { ok: true }))
        }
        _ => {
            let known = ROUTES.iter().any(|(_, t)| template_matches(t, &segs));
            if known {
                Err(ApiError::new(405, format!("{m} is not allowed on {}", req.path)))
            } else {
                Err(ApiError::not_found(format!("no such endpoint: {m} {} (see /openapi.json)", req.path)))
            }
        }
    }
}

/// The operator-access routes (`crate::access`).
fn access(cp: &Arc<ControlPlane>, actor: &Actor, req: &Request, segs: &[&str]) -> Result<Response, ApiError> {
    use crate::access::{parse_id, AccessAsk, AccessDeny, AccessList, AccessSettingsEdit};
    fn typed<T: serde::de::DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
        if req.body.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("invalid request body: {e}")))
    }
    fn ok<T: serde::Serialize>(v: &T) -> Result<Response, ApiError> {
        Ok(Response::json(200, v))
    }
    match (req.method.as_str(), segs) {
        ("GET", ["v1", "nodes", n, "ssh-trust"]) => {
            query_seconds(req, "wait", MAX_WAIT)?;
            let trust = cp.ssh_trust(actor, n)?;
            if req.query("hash") == Some(trust.hash.as_str()) {
                return Ok(Response::new(304, "application/json", Vec::new()));
            }
            ok(&trust)
        }
        ("POST", ["v1", "access"]) => {
            let ask: AccessAsk =
                serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("invalid access request: {e}")))?;
            Ok(Response::json(201, &cp.access_request(actor, &ask)?))
        }
        ("GET", ["v1", "access"]) => {
            let active = match req.query("active") {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => {
                    return Err(ApiError::bad(format!("query parameter 'active' must be true or false, got '{v}'")))
                }
            };
            ok(&AccessList { requests: cp.access_list(actor, active)? })
        }
        ("GET", ["v1", "access", "settings"]) => {
            need_admin(actor).or_else(|e| if matches!(actor, Actor::Security(_)) { Ok(()) } else { Err(e) })?;
            ok(&cp.access_settings()?)
        }
        ("PUT", ["v1", "access", "settings"]) => {
            ok(&cp.set_access_settings(actor, &typed::<AccessSettingsEdit>(req)?)?)
        }
        ("GET", ["v1", "access", "ca"]) => ok(&cp.ssh_ca(actor)?),
        ("POST", ["v1", "access", "ca"]) => Ok(Response::json(201, &cp.ssh_ca_rotate(actor)?)),
        ("DELETE", ["v1", "access", "ca", id]) => {
            let id =
                id.parse::<i64>().map_err(|_| ApiError::bad(format!("an SSH CA key id is a number, got '{id}'")))?;
            ok(&cp.ssh_ca_retire(actor, id)?)
        }
        ("GET", ["v1", "access", id]) => ok(&cp.access_get(actor, parse_id(id)?)?),
        ("POST", ["v1", "access", id, "approve"]) => ok(&cp.access_approve(actor, parse_id(id)?)?),
        ("POST", ["v1", "access", id, "deny"]) => {
            let n = parse_id(id)?;
            let body: AccessDeny = typed(req)?;
            ok(&cp.access_deny(actor, n, body.reason.as_deref())?)
        }
        ("POST", ["v1", "access", id, "revoke"]) => ok(&cp.access_revoke(actor, parse_id(id)?)?),
        ("GET", ["v1", "access", id, "certificate"]) => ok(&cp.access_certificate(actor, parse_id(id)?)?),
        ("GET", ["v1", "access", id, "audit"]) => {
            let n = parse_id(id)?;
            if !matches!(actor, Actor::Admin(_) | Actor::Security(_)) {
                return Err(ApiError::forbidden(format!("{} may not read the audit log", actor.name())));
            }
            ok(&cp.access_story(actor, n)?)
        }
        _ => {
            let known = ROUTES.iter().any(|(_, t)| template_matches(t, segs));
            if known {
                Err(ApiError::new(405, format!("{} is not allowed on {}", req.method, req.path)))
            } else {
                Err(ApiError::not_found(format!("no such endpoint: {} {} (see /openapi.json)", req.method, req.path)))
            }
        }
    }
}

/// Whether a path template (`/v1/projects/{project}`) matches the segments.
pub fn template_matches(template: &str, segs: &[&str]) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    t.len() == segs.len() && t.iter().zip(segs).all(|(a, b)| a.starts_with('{') || a == b)
}

fn strings(body: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    match body.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad(format!("'{key}' must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(ApiError::bad(format!("'{key}' must be a list of strings"))),
    }
}

/// An object of the document as stored (anything else as nothing: the document's
/// objects are objects).
fn stored(v: &Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn project_view(p: &str, v: &Value) -> wire::Project {
    let count = |k: &str| v.get(k).and_then(Value::as_object).map(|o| o.len()).unwrap_or(0);
    wire::Project {
        base_port: v.get("base_port").and_then(Value::as_i64),
        name: p.into(),
        services: count("services"),
        vpcs: count("vpcs"),
    }
}

/// The listeners of project `p`'s services (the port table, computed once per request).
pub(crate) fn listeners_of(snap: &crate::Snapshot, p: &str) -> Vec<fleetwall_compile::listeners::PortRow> {
    let Some(f) = snap.fleet() else { return Vec::new() };
    // The port table of this project alone (a fleet of one project: the rest is shared, not copied).
    let projects: Vec<_> = f.projects.iter().filter(|x| x.name == p).cloned().collect();
    let one =
        fleetwall_model::Fleet { platform: f.platform.clone(), projects, tests: Vec::new(), deployments: Vec::new() };
    fleetwall_compile::listeners::port_table(&one)
}

fn service_view(
    cp: &ControlPlane,
    listeners: &[fleetwall_compile::listeners::PortRow],
    p: &str,
    s: &str,
    v: &Value,
) -> Result<wire::Service, ApiError> {
    let listeners = listeners
        .iter()
        .filter(|r| r.service == s)
        .map(|r| wire::Listener {
            address: r.address.to_string(),
            component: r.component.clone(),
            node: r.node.clone(),
            port: r.port,
            project: r.project.clone(),
            protocol: r.protocol.as_str().into(),
            route: r.route.as_str().into(),
            service: r.service.clone(),
        })
        .collect();
    // A link the fleet file made has no tracked state: it is in force, as `GET
    // .../privatelink/{provider}` says too (`active`).
    let privatelink_state = if v.get("privatelink").and_then(Value::as_object).is_some_and(|pl| !pl.is_empty()) {
        Some(privatelink_state(cp, p, s, false)?.map_or_else(|| "active".to_string(), |(st, _)| st))
    } else {
        None
    };
    Ok(wire::Service { listeners, name: s.into(), privatelink_state, project: p.into(), stored: stored(v) })
}

/// The private-link resource's state; moves `creating` → `active` and finishes `deleting`
/// once every node of the service reports the revision that made the change.
/// Reads never write: with `settle` false a finished transition is only reported; the
/// status-report path (`settle` true) records it.
pub(crate) fn privatelink_state(
    cp: &ControlPlane,
    p: &str,
    s: &str,
    settle: bool,
) -> Result<Option<(String, i64)>, ApiError> {
    use crate::db::V;
    let rows = cp.db.read(|tx| {
        tx.query("SELECT state, revision FROM privatelinks WHERE project = ? AND service = ?", &[p.into(), s.into()])
    })?;
    let Some(row) = rows.first() else { return Ok(None) };
    let (state, rev) = (row[0].text(), row[1].int());
    if state == "active" {
        return Ok(Some((state, rev)));
    }
    let nodes = cp.status(|d| d.project == p && d.service == s)?;
    // The snapshot already holds the change (its revision is at least `rev`), so a node in
    // sync with it enforces the change.
    let done = !nodes.is_empty() && nodes.iter().all(|n| n.state == wire::state::IN_SYNC);
    if !done {
        return Ok(Some((state, rev)));
    }
    if !settle {
        return Ok((state == "creating").then(|| ("active".to_string(), rev)));
    }
    let now = crate::util::rfc3339(crate::util::now_ms());
    if state == "creating" {
        cp.db.write(|tx| {
            tx.exec(
                "UPDATE privatelinks SET state = 'active', updated_at = ? WHERE project = ? AND service = ? AND state = 'creating'",
                &[V::S(now.clone()), p.into(), s.into()],
            )
        })?;
        return Ok(Some(("active".into(), rev)));
    }
    cp.db.write(|tx| {
        tx.exec(
            "DELETE FROM privatelinks WHERE project = ? AND service = ? AND state = 'deleting'",
            &[p.into(), s.into()],
        )
    })?;
    Ok(None)
}

pub(crate) fn privatelink_view(
    cp: &ControlPlane,
    p: &str,
    s: &str,
    provider: &str,
    svc: &Value,
) -> Result<wire::Privatelink, ApiError> {
    let state = privatelink_state(cp, p, s, false)?;
    let principals = svc.pointer(&format!("/privatelink/{}/principals", ptr(provider))).cloned();
    let Some((state, _)) = state.or_else(|| principals.as_ref().map(|_| ("active".to_string(), 0))) else {
        return Err(ApiError::not_found(format!("service '{s}' has no {provider} private link")));
    };
    let id = &crate::util::sha256_hex(format!("{p}/{s}").as_bytes())[..17];
    let region = svc
        .get("cloud")
        .and_then(Value::as_str)
        .and_then(|c| c.split_once('-'))
        .map(|(_, r)| r.to_string())
        .unwrap_or_default();
    let aws = provider == "aws";
    Ok(wire::Privatelink {
        aws_service_id: aws.then(|| format!("vpce-svc-{id}")),
        aws_service_name: aws.then(|| format!("com.amazonaws.vpce.{region}.vpce-svc-{id}")),
        principals: principals.unwrap_or(json!([])),
        project: p.into(),
        provider: provider.into(),
        service: s.into(),
        state,
    })
}

/// The statements a private-link write runs in its transaction: the resource's tracked
/// state (`creating` or `deleting`) as of the write's revision.
pub(crate) fn record_privatelink(
    p: &str,
    s: &str,
    provider: &str,
    state: &'static str,
) -> impl FnOnce(&mut dyn crate::db::Tx, i64) -> Result<(), crate::db::DbError> {
    use crate::db::V;
    let (p, s, provider) = (p.to_string(), s.to_string(), provider.to_string());
    move |tx: &mut dyn crate::db::Tx, rev: i64| {
        tx.exec("DELETE FROM privatelinks WHERE project = ? AND service = ?", &[V::S(p.clone()), V::S(s.clone())])?;
        tx.exec(
            "INSERT INTO privatelinks (project, service, provider, state, revision, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[V::S(p), V::S(s), V::S(provider), state.into(), V::I(rev), V::S(crate::util::rfc3339(crate::util::now_ms()))],
        )?;
        Ok(())
    }
}

/// A private-link provider fleetwall has: `aws`, `azure` or `google`.
pub(crate) fn known_provider(provider: &str) -> Result<(), ApiError> {
    if matches!(provider, "aws" | "azure" | "google") {
        Ok(())
    } else {
        Err(ApiError::bad(format!("unknown private-link provider '{provider}' (aws, azure or google)")))
    }
}

fn privatelink(
    cp: &Arc<ControlPlane>,
    actor: &Actor,
    req: &Request,
    p: &str,
    s: &str,
    provider: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    known_provider(provider)?;
    let target = format!("/projects/{}/services/{}/privatelink", ptr(p), ptr(s));
    let svc_of = |cp: &ControlPlane| service_in(cp.snapshot().doc(), p, s);
    let set_state = |state: &'static str| record_privatelink(p, s, provider, state);
    match (req.method.as_str(), rest) {
        ("POST", []) => {
            let who = ops::principals(&body_json(req)?)?;
            cp.write(
                actor,
                "privatelink.create",
                &target,
                Op::SetPrivatelink {
                    project: p.into(),
                    service: s.into(),
                    provider: provider.into(),
                    principals: who,
                    create: true,
                },
                set_state("creating"),
            )?;
            Ok(Response::json(201, &privatelink_view(cp, p, s, provider, &svc_of(cp)?)?))
        }
        ("GET", []) => Ok(Response::json(200, &privatelink_view(cp, p, s, provider, &svc_of(cp)?)?)),
        ("PUT", []) => {
            let who = ops::principals(&body_json(req)?)?;
            let op = Op::SetPrivatelink {
                project: p.into(),
                service: s.into(),
                provider: provider.into(),
                principals: who,
                create: false,
            };
            cp.edit(actor, "privatelink.update", &target, op)?;
            Ok(Response::json(200, &privatelink_view(cp, p, s, provider, &svc_of(cp)?)?))
        }
        ("DELETE", []) => {
            cp.write(
                actor,
                "privatelink.delete",
                &target,
                Op::DeletePrivatelink(p.into(), s.into(), provider.into()),
                set_state("deleting"),
            )?;
            let state = privatelink_state(cp, p, s, false)?.map_or_else(|| "deleted".to_string(), |(st, _)| st);
            let v =
                wire::PrivatelinkDeletion { project: p.into(), provider: provider.into(), service: s.into(), state };
            Ok(Response::json(200, &v))
        }
        ("GET", ["connections"]) => {
            let connections = crate::connections::list(cp, p, s, provider)?;
            Ok(Response::json(200, &wire::PrivatelinkConnections { connections }))
        }
        ("POST", ["connections"]) => {
            let reg: wire::ConnectionRegistration = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad(format!("invalid connection registration: {e}")))?;
            Ok(Response::json(201, &crate::connections::register(cp, actor, (p, s, provider), &reg)?))
        }
        ("DELETE", ["connections", id]) => {
            Ok(Response::json(200, &crate::connections::remove(cp, actor, (p, s, provider, id))?))
        }
        ("POST", ["connections", id, "approve"]) => {
            let a: wire::ConnectionApproval = if req.body.is_empty() {
                wire::ConnectionApproval { user_ip_address: None }
            } else {
                serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("invalid approval: {e}")))?
            };
            let ip = a.user_ip_address.as_deref();
            Ok(Response::json(200, &crate::connections::approve(cp, actor, (p, s, provider, id), ip)?))
        }
        ("POST", ["refresh"]) => {
            let connections = crate::connections::refresh(cp, actor, (p, s, provider))?;
            Ok(Response::json(200, &wire::PrivatelinkConnections { connections }))
        }
        _ => Err(ApiError::new(405, format!("{} is not allowed on {}", req.method, req.path))),
    }
}

/// The long-poll of `GET /v1/nodes/{node}/ruleset?after=…&wait=…`, as a [`crate::web::Wait`]:
/// on the HTTP runtime, without a thread, it waits on the control plane's revision channel
/// until the node's ruleset is newer than `after` or `wait` has passed, then hands [`route`]
/// the request with `wait=0`, which answers from the snapshot at once. A request that route
/// will refuse (a caller that may not read the node, a malformed `after` or `wait`) does not
/// wait: route answers it as before.
pub fn long_poll(cp: &Arc<ControlPlane>) -> crate::web::Wait {
    let cp = cp.clone();
    Arc::new(move |mut req: Request| {
        let cp = cp.clone();
        Box::pin(async move {
            let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
            if let ["v1", "nodes", node, "ssh-trust"] = segs.as_slice() {
                // The SSH trust files: until their hash differs from the caller's `hash`.
                let allowed = match req.caller.as_deref().and_then(Actor::from_name) {
                    Some(Actor::Admin(_)) => true,
                    Some(Actor::Agent(me)) => me == *node,
                    _ => false,
                };
                let (Some(hash), Ok(Some(wait))) = (req.query("hash"), query_seconds(&req, "wait", MAX_WAIT)) else {
                    return req;
                };
                if allowed && req.method == "GET" && !wait.is_zero() {
                    let hash = hash.to_string();
                    let node = node.to_string();
                    cp.wait_trust_async(&node, &hash, wait).await;
                }
                return req;
            }
            let ["v1", "nodes", node, "ruleset"] = segs.as_slice() else { return req };
            if req.method != "GET" {
                return req;
            }
            let allowed = match req.caller.as_deref().and_then(Actor::from_name) {
                Some(Actor::Admin(_)) => true,
                Some(Actor::Agent(me)) => me == *node,
                _ => false,
            };
            let (Ok(after), Ok(Some(wait))) =
                (query_int(&req, "after", -1..=i64::MAX), query_seconds(&req, "wait", MAX_WAIT))
            else {
                return req;
            };
            if !allowed || wait.is_zero() {
                return req;
            }
            let node = node.to_string();
            cp.wait_node_async(&node, after.unwrap_or(-1), wait).await;
            for (name, value) in &mut req.query {
                if name == "wait" {
                    *value = "0".into();
                }
            }
            req
        })
    })
}

/// The hooks of the API's HTTP server: [`admit`] on the head, [`long_poll`], [`handle`].
pub fn hooks(cp: &Arc<ControlPlane>) -> crate::web::Hooks {
    let (admission, handling) = (cp.clone(), cp.clone());
    crate::web::Hooks {
        handler: Arc::new(move |req| handle(&handling, req)),
        admit: Some(Arc::new(move |head| admit(&admission, head))),
        wait: Some(long_poll(cp)),
    }
}

/// Serves the API on `addr` until the returned server is dropped; callers are [`admit`]ted
/// on the request head.
pub fn serve(
    cp: Arc<ControlPlane>,
    addr: &str,
    tls: Option<&crate::web::TlsFiles>,
) -> Result<crate::web::Server, crate::web::Error> {
    // A route without an operation in the OpenAPI document stops the server here, not at
    // the first `GET /openapi.json`.
    LazyLock::force(&OPENAPI);
    crate::web::Server::bind_with(addr, tls, hooks(&cp), crate::web::Limits::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_answering_is_counted_as_a_500_on_metrics() {
        let dir = std::env::temp_dir().join(format!("fw-api-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cp = ControlPlane::open(&dir.join("fleet.db").display().to_string(), fleetwall_model::Catalog::builtin())
            .unwrap();
        let resp = answer(&cp, "GET", || panic!("a route bug (expected by the test)"));
        assert_eq!(resp.status, 500);
        let metrics = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            caller: None,
        };
        let text = handle(&cp, metrics).text();
        assert!(text.contains("fleetwall_http_requests_total{method=\"GET\",status=\"500\"} 1\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

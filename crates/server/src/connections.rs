//! Private-link connections (S6): the endpoints in customers' accounts that the cloud side
//! registers, each with a host and (Kafka) broker ports of its own, through the states
//! `pending-user-approval` → `user-approved` → `connected` → `active`.
//!
//! Key decision: a connection lives in the fleet document, under its private link, with
//! its host and ports written there when it is registered. So its ports are compiled into
//! every node's ruleset like any listener, never move while it exists (they are stored,
//! not recomputed), are checked against the node's other listeners by validation, and a
//! removed connection's ports close with the write that removes it. Each step is one typed
//! write (`Op::SetConnection`, `Op::DeleteConnection`), validated and audited.

use crate::{ops, ptr, Actor, ApiError, ControlPlane};
use fleetwall_api as wire;
use fleetwall_model::doc::ConnectionDoc;
use fleetwall_model::ops::Op;
use fleetwall_model::ConnectionState;
use std::collections::BTreeMap;

fn target(p: &str, s: &str) -> String {
    format!("/projects/{}/services/{}/privatelink", ptr(p), ptr(s))
}

/// The connections of a service's private link, as stored.
fn stored(cp: &ControlPlane, p: &str, s: &str, provider: &str) -> Result<BTreeMap<String, ConnectionDoc>, ApiError> {
    let snap = cp.snapshot();
    snap.doc().project(p).ok_or_else(|| ops::no_project(p))?;
    let svc = snap.doc().service(p, s).ok_or_else(|| ops::no_service(p, s))?;
    let link = svc
        .privatelink
        .get(provider)
        .ok_or_else(|| ApiError::not_found(format!("service '{s}' has no {provider} private link")))?;
    Ok(link.connections.clone())
}

fn one(cp: &ControlPlane, p: &str, s: &str, provider: &str, id: &str) -> Result<ConnectionDoc, ApiError> {
    stored(cp, p, s, provider)?.remove(id).ok_or_else(|| {
        ApiError::not_found(format!("the {provider} private link of service '{s}' has no connection '{id}'"))
    })
}

/// A stored connection as the API shows it.
pub fn view(id: &str, c: &ConnectionDoc) -> wire::PrivatelinkConnection {
    wire::PrivatelinkConnection {
        address: c.address.clone(),
        dns_name: c.dns_name.clone().unwrap_or_default(),
        host: c.host.clone(),
        ports: c.ports.iter().filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?))).collect(),
        privatelink_connection_id: id.to_string(),
        state: c.state.clone().unwrap_or_default(),
        user_ip_address: c.user_ip_address.clone(),
        vpc_endpoint_id: c.endpoint_id.clone().unwrap_or_default(),
    }
}

/// Every connection of the private link, by id.
pub fn list(cp: &ControlPlane, p: &str, s: &str, provider: &str) -> Result<Vec<wire::PrivatelinkConnection>, ApiError> {
    Ok(stored(cp, p, s, provider)?.iter().map(|(id, c)| view(id, c)).collect())
}

fn write(
    cp: &ControlPlane,
    actor: &Actor,
    action: &str,
    (p, s, provider, id): (&str, &str, &str, &str),
    c: ConnectionDoc,
) -> Result<wire::PrivatelinkConnection, ApiError> {
    let op = Op::SetConnection(p.into(), s.into(), provider.into(), id.into(), c);
    cp.edit(actor, action, &target(p, s), op)?;
    Ok(view(id, &one(cp, p, s, provider, id)?))
}

/// The cloud side reports a new endpoint (admin only): it gets the first free host
/// `privatelink-N-<service>-<project>` and, for Kafka, the lowest free ports of the pool.
/// An AWS endpoint is approved by the principals already (`connected`); Azure and Google
/// wait for the user (`pending-user-approval`).
pub fn register(
    cp: &ControlPlane,
    actor: &Actor,
    (p, s, provider): (&str, &str, &str),
    reg: &wire::ConnectionRegistration,
) -> Result<wire::PrivatelinkConnection, ApiError> {
    if !matches!(actor, Actor::Admin(_)) {
        return Err(ApiError::forbidden(format!(
            "{} may not register a private-link connection (the cloud side does, with an admin token)",
            actor.name()
        )));
    }
    let id = reg.privatelink_connection_id.as_str();
    if !fleetwall_model::validate::is_connection_id(id) {
        return Err(ApiError::bad(format!(
            "invalid privatelink_connection_id '{id}': 1 to 40 lower-case letters, digits and dashes"
        )));
    }
    let existing = stored(cp, p, s, provider)?;
    if existing.contains_key(id) {
        return Err(ApiError::conflict(format!(
            "the {provider} private link of service '{s}' already has connection '{id}'"
        )));
    }
    let snap = cp.snapshot();
    let fleet = snap.fleet().ok_or_else(|| ApiError::internal("no compiled fleet"))?;
    let service = fleet
        .projects
        .iter()
        .filter(|x| x.name == p)
        .flat_map(|x| x.services.iter())
        .find(|x| x.name == s)
        .ok_or_else(|| ops::no_service(p, s))?;
    let ports = fleetwall_model::ports::connection_ports(service, &fleet.platform).ok_or_else(|| {
        ApiError::conflict(format!("no free port left in 10000–31000 for a new connection of service '{s}'"))
    })?;
    let taken = |n: usize| {
        existing.values().any(|c| c.host.as_deref().is_some_and(|h| h.starts_with(&format!("privatelink-{n}-"))))
    };
    let n = (1..).find(|n| !taken(*n)).expect("a free number");
    let host = format!("privatelink-{n}-{s}-{p}").replace('_', "-");
    let state = if provider == "aws" { ConnectionState::Connected } else { ConnectionState::PendingUserApproval };
    let c = ConnectionDoc {
        host: Some(host),
        endpoint_id: Some(reg.vpc_endpoint_id.clone()),
        dns_name: Some(reg.dns_name.clone()),
        address: Some(reg.address.clone()),
        state: Some(state.as_str().into()),
        user_ip_address: None,
        ports: ports.into_iter().map(|(k, v)| (k, i64::from(v))).collect(),
    };
    write(cp, actor, "privatelink.connection.register", (p, s, provider, id), c)
}

/// Sets the address the user's endpoint has (Azure's `connection update`), before approval.
pub fn set_user_ip(
    cp: &ControlPlane,
    actor: &Actor,
    (p, s, provider, id): (&str, &str, &str, &str),
    user_ip: &str,
) -> Result<wire::PrivatelinkConnection, ApiError> {
    let mut c = one(cp, p, s, provider, id)?;
    c.user_ip_address = Some(user_ip.to_string());
    write(cp, actor, "privatelink.connection.update", (p, s, provider, id), c)
}

/// The user approves an Azure or Google connection: `pending-user-approval` → `user-approved`,
/// with the endpoint's address in the user's network; its ports open with this write.
pub fn approve(
    cp: &ControlPlane,
    actor: &Actor,
    (p, s, provider, id): (&str, &str, &str, &str),
    user_ip: Option<&str>,
) -> Result<wire::PrivatelinkConnection, ApiError> {
    if provider == "aws" {
        return Err(ApiError::bad("AWS connections need no approval: the principals allow them"));
    }
    let mut c = one(cp, p, s, provider, id)?;
    let state = c.state.as_deref().and_then(ConnectionState::parse);
    if state != Some(ConnectionState::PendingUserApproval) {
        return Err(ApiError::conflict(format!(
            "connection '{id}' is {}, not pending-user-approval",
            c.state.as_deref().unwrap_or("without a state")
        )));
    }
    if let Some(ip) = user_ip {
        c.user_ip_address = Some(ip.to_string());
    }
    if c.user_ip_address.is_none() {
        return Err(ApiError::bad(format!(
            "approving connection '{id}' needs the endpoint's address in your network (--user-ip-address)"
        )));
    }
    c.state = Some(ConnectionState::UserApproved.as_str().into());
    write(cp, actor, "privatelink.connection.approve", (p, s, provider, id), c)
}

/// Moves every connection on where it can: `user-approved` → `connected`, and `connected`
/// → `active` once every node of the service enforces the current rulesets (its ports).
/// Returns the connections afterwards.
pub fn refresh(
    cp: &ControlPlane,
    actor: &Actor,
    (p, s, provider): (&str, &str, &str),
) -> Result<Vec<wire::PrivatelinkConnection>, ApiError> {
    let nodes = cp.status(|d| d.project == p && d.service == s)?;
    let in_force = !nodes.is_empty() && nodes.iter().all(|n| n.state == wire::state::IN_SYNC);
    for (id, mut c) in stored(cp, p, s, provider)? {
        let next = match c.state.as_deref().and_then(ConnectionState::parse) {
            Some(ConnectionState::UserApproved) => ConnectionState::Connected,
            Some(ConnectionState::Connected) if in_force => ConnectionState::Active,
            _ => continue,
        };
        c.state = Some(next.as_str().into());
        write(cp, actor, "privatelink.connection.refresh", (p, s, provider, &id), c)?;
    }
    list(cp, p, s, provider)
}

/// Removes a connection (admin: the cloud side reports the endpoint gone); its ports close
/// on every node with this write.
pub fn remove(
    cp: &ControlPlane,
    actor: &Actor,
    (p, s, provider, id): (&str, &str, &str, &str),
) -> Result<wire::PrivatelinkConnection, ApiError> {
    if !matches!(actor, Actor::Admin(_)) {
        return Err(ApiError::forbidden(format!(
            "{} may not remove a private-link connection (admin only)",
            actor.name()
        )));
    }
    let gone = one(cp, p, s, provider, id)?;
    let op = Op::DeleteConnection(p.into(), s.into(), provider.into(), id.into());
    cp.edit(actor, "privatelink.connection.remove", &target(p, s), op)?;
    Ok(view(id, &gone))
}

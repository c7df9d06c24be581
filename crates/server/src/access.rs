//! Operator access (S10): an operator asks for SSH access to a node or a service (reason,
//! duration, the operator's SSH public key); someone else with the security role approves
//! (and, for projects that ask for it, the project's customer too); approval issues a
//! short-lived OpenSSH user certificate signed by the control plane's SSH CA
//! (`valid-after`/`valid-before` = the window, `source-address` = the management
//! gateways, key id = the request id, serial = the request's number). Nodes' sshd trust
//! the CA keys and refuse the revoked keys, files their agents keep current
//! (`GET /v1/nodes/{node}/ssh-trust`, a long-poll woken by every change of them).
//!
//! A certificate is for its target only: besides the platform's login names it carries the
//! principal `node:NODE` (or `service:PROJECT/SERVICE` for a whole service), and each
//! node's agent writes `principals/LOGIN` files listing the node's own two, which sshd
//! reads through `AuthorizedPrincipalsFile DIR/principals/%u`. A certificate for node A is
//! therefore refused on node B, and only the platform's login names have files.
//!
//! Every step is an audit entry with target `/access/acc-N`: request, approvals, the
//! issued certificate's serial, deny, revoke, and expiry (of a request nobody approved in
//! time, and of the window). Expiry is noticed lazily: every access verb first sweeps what
//! ran out, and views compute the state from the clock, so they are right before a sweep.
//!
//! A revoke lists the request's public key in the revoked-keys file (OpenSSH's plain list
//! form: a listed key revokes every certificate of that key), so a revoked key is burnt:
//! later requests with it are refused, and the operator makes a new key.
//!
//! The CA keys are ed25519, kept in the store like the backup keys (OpenSSH private-key
//! format). Rotation makes a new key that signs from then on; the old ones stay trusted
//! (overlap) until retired, and a retired key's certificates stop working everywhere.

use crate::db::{DbError, Tx, V};
use crate::{audit, util, Actor, ApiError, ControlPlane};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use ssh_key::{certificate, Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};
use std::io::Read;

/// The longest window unless the platform sets another (`max_duration_s`).
pub const DEFAULT_MAX_DURATION_S: i64 = 8 * 3600;
/// How long a request waits for its approvals unless the platform sets another.
pub const DEFAULT_PENDING_TTL_S: i64 = 3600;
/// The login names certificates are valid for unless the platform sets others.
pub const DEFAULT_PRINCIPALS: &[&str] = &["root"];
/// The hardest limit on any window, whatever the settings say (7 days).
pub const LIMIT_DURATION_S: i64 = 7 * 86_400;
/// The longest reason.
pub const MAX_REASON: usize = 500;

/// One access request, as every verb answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AccessRequest {
    /// `acc-N`: the certificate's key id, and what sshd logs for the session.
    pub id: String,
    /// `pending` (waiting for approvals), `active` (certificate issued, window open),
    /// `denied`, `expired` (not approved in time), `ended` (window over), `revoked`.
    pub state: String,
    /// Who asked (`operator:NAME`).
    pub requester: String,
    /// The target's project.
    pub project: String,
    /// The target's service.
    pub service: String,
    /// The target node (none: every node of the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why.
    pub reason: String,
    /// The window asked for, in seconds.
    pub duration_s: i64,
    /// SHA-256 fingerprint of the operator's public key.
    pub key_fingerprint: String,
    /// When it was asked.
    pub created_at: String,
    /// Until when it may be approved.
    pub approve_by: String,
    /// Whether the project's customer must approve too.
    pub customer_approval: bool,
    /// Who approved for security.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Who approved for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_approved_by: Option<String>,
    /// Who denied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,
    /// The certificate's serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<i64>,
    /// The window's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<String>,
    /// The window's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<String>,
    /// The login names the certificate is valid for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// The certificate's `source-address`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    /// Who revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `GET /v1/access`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessList {
    /// Oldest first.
    pub requests: Vec<AccessRequest>,
}

/// `POST /v1/access`: what an operator asks for.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"node": "pg-main-1", "reason": "INC-4711: replication lag", "duration_s": 7200, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEKEYEXAMPLEKEYEXAMPLEKEYEXAMPLEKEYEX alice@laptop"}))]
pub struct AccessAsk {
    /// One node (give either `node`, or `project` and `service`).
    #[serde(default)]
    pub node: Option<String>,
    /// The service's project.
    #[serde(default)]
    pub project: Option<String>,
    /// Every node of this service.
    #[serde(default)]
    pub service: Option<String>,
    /// Why (shown to the approvers and kept in the audit log).
    pub reason: String,
    /// The window, in seconds (at most the platform's `max_duration_s`).
    pub duration_s: i64,
    /// The operator's SSH public key (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// `POST /v1/access/{id}/deny`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessDeny {
    /// Why not.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /v1/access/{id}/certificate`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessCertificate {
    /// The request id (the certificate's key id).
    pub id: String,
    /// The serial.
    pub serial: i64,
    /// The OpenSSH user certificate, one line (`ssh-ed25519-cert-v01@openssh.com …`):
    /// save it next to the private key as `KEY-cert.pub`.
    pub certificate: String,
    /// The window's start.
    pub valid_after: String,
    /// The window's end.
    pub valid_before: String,
}

/// The platform's access settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AccessSettings {
    /// The login names every certificate is valid for.
    pub principals: Vec<String>,
    /// The longest window, in seconds.
    pub max_duration_s: i64,
    /// How long a request may wait for its approvals, in seconds.
    pub pending_ttl_s: i64,
    /// The projects whose customer must approve too (with the project's token).
    pub customer_approval: Vec<String>,
}

/// `PUT /v1/access/settings`: the settings to change (the others stay).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessSettingsEdit {
    /// New principals.
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    /// New longest window.
    #[serde(default)]
    pub max_duration_s: Option<i64>,
    /// New approval deadline.
    #[serde(default)]
    pub pending_ttl_s: Option<i64>,
    /// The whole list of projects needing customer approval.
    #[serde(default)]
    pub customer_approval: Option<Vec<String>>,
}

/// One SSH CA key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshCaKey {
    /// Its number.
    pub id: i64,
    /// The public key (OpenSSH one line): what `TrustedUserCAKeys` lists.
    pub public_key: String,
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// When it was made.
    pub created_at: String,
    /// Whether it signs new certificates (the newest).
    pub signing: bool,
}

/// `GET /v1/access/ca`: the trusted CA keys.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshCaList {
    /// Oldest first; the last one signs.
    pub keys: Vec<SshCaKey>,
}

/// `GET /v1/nodes/{node}/ssh-trust`: what a node's sshd trusts and refuses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SshTrust {
    /// The `TrustedUserCAKeys` file's text.
    pub trusted_user_ca_keys: String,
    /// The `RevokedKeys` file's text (a plain list of public keys).
    pub revoked_keys: String,
    /// Per login name (`AuthorizedPrincipalsFile DIR/principals/%u`), the principals a
    /// certificate must carry one of on this node: `node:NODE` and `service:PROJECT/SERVICE`.
    /// A certificate for another node or service is refused here.
    pub authorized_principals: std::collections::BTreeMap<String, String>,
    /// SHA-256 of all of them: the `hash` to long-poll with.
    pub hash: String,
}

/// The certificate principal of one node.
pub fn node_principal(node: &str) -> String {
    format!("node:{node}")
}

/// The certificate principal of every node of a service.
pub fn service_principal(project: &str, service: &str) -> String {
    format!("service:{project}/{service}")
}

/// The hash a node's trust is served with: the fleet-wide files' hash, the node and its
/// service (so it can be told without reading the store).
pub fn node_trust_hash(global: &str, node: &str, project: &str, service: &str) -> String {
    util::sha256_hex(format!("{global}\0{node}\0{project}/{service}").as_bytes())
}

/// The id of request number `n`.
pub fn id_of(n: i64) -> String {
    format!("acc-{n}")
}

/// The number in `acc-N` (or a bare `N`).
pub fn parse_id(id: &str) -> Result<i64, ApiError> {
    let digits = id.strip_prefix("acc-").unwrap_or(id);
    match digits.parse::<i64>() {
        Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::bad(format!("an access id is acc-N (see `fleetwall access list`), got '{id}'"))),
    }
}

fn target(n: i64) -> String {
    format!("/access/{}", id_of(n))
}

/// The person behind an operator or security token (their token's name).
fn person(actor: &Actor) -> Option<&str> {
    match actor {
        Actor::Operator(n) | Actor::Security(n) => Some(n),
        _ => None,
    }
}

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).map_err(ApiError::internal)?;
    Ok(buf)
}

/// Free text from a caller: not empty, at most `max` characters, no control characters.
fn text_field(what: &str, s: &str, max: usize) -> Result<String, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ApiError::bad(format!("{what} must not be empty")));
    }
    if s.chars().count() > max {
        return Err(ApiError::bad(format!("{what} has more than {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::bad(format!("{what} must not contain control characters (newlines, tabs)")));
    }
    Ok(s.to_string())
}

/// The operator's public key: one OpenSSH line of an ed25519 key (no certificate, no
/// options), as stored, and its fingerprint.
pub fn parse_public_key(text: &str) -> Result<(String, String), ApiError> {
    let line = text.trim();
    if line.lines().count() != 1 {
        return Err(ApiError::bad("public_key must be one line (the contents of a .pub file)"));
    }
    let key = PublicKey::from_openssh(line).map_err(|e| {
        ApiError::bad(format!(
            "public_key is not an OpenSSH public key ({e}): give the contents of ~/.ssh/id_ed25519.pub"
        ))
    })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(ApiError::bad(format!(
            "public_key must be an ed25519 key (ssh-keygen -t ed25519), got {}",
            key.algorithm().as_str()
        )));
    }
    let mut plain = key.clone();
    plain.set_comment("");
    let stored = plain.to_openssh().map_err(ApiError::internal)?;
    Ok((stored.trim().to_string(), key.fingerprint(HashAlg::Sha256).to_string()))
}

const COLUMNS: &str = "id, requester, project, service, node, reason, duration_s, public_key, key_fp, created_ms, \
     pending_until_ms, customer_approval, approved_by, approved_ms, customer_by, customer_ms, denied_by, denied_ms, \
     serial, valid_after_ms, valid_before_ms, principals, source_addresses, certificate, revoked_by, revoked_ms, state";

/// A request's row, by column.
struct Row(Vec<V>);

impl Row {
    fn n(&self) -> i64 {
        self.0[0].int()
    }
    fn requester(&self) -> String {
        self.0[1].text()
    }
    fn project(&self) -> String {
        self.0[2].text()
    }
    fn public_key(&self) -> String {
        self.0[7].text()
    }
    fn pending_until(&self) -> i64 {
        self.0[10].int()
    }
    fn customer_approval(&self) -> bool {
        self.0[11].int() != 0
    }
    fn approved_by(&self) -> Option<String> {
        self.0[12].opt()
    }
    fn customer_by(&self) -> Option<String> {
        self.0[14].opt()
    }
    fn valid_after(&self) -> Option<i64> {
        self.0[19].opt().map(|_| self.0[19].int())
    }
    fn valid_before(&self) -> Option<i64> {
        self.0[20].opt().map(|_| self.0[20].int())
    }
    fn certificate(&self) -> Option<String> {
        self.0[23].opt()
    }
    fn stored_state(&self) -> String {
        self.0[26].text()
    }
    /// The state as the clock has it: a pending request past its deadline has expired, an
    /// issued one past its window has ended, whether or not a sweep noted it yet.
    fn state(&self, now: i64) -> &'static str {
        match self.stored_state().as_str() {
            "pending" if self.pending_until() <= now => "expired",
            "pending" => "pending",
            "approved" if self.valid_before().is_some_and(|vb| vb <= now) => "ended",
            "approved" => "active",
            "denied" => "denied",
            "expired" => "expired",
            "ended" => "ended",
            _ => "revoked",
        }
    }
    fn view(&self, now: i64) -> AccessRequest {
        let list = |v: &V| -> Vec<String> { serde_json::from_str(&v.text()).unwrap_or_default() };
        AccessRequest {
            id: id_of(self.n()),
            state: self.state(now).into(),
            requester: self.requester(),
            project: self.project(),
            service: self.0[3].text(),
            node: self.0[4].opt(),
            reason: self.0[5].text(),
            duration_s: self.0[6].int(),
            key_fingerprint: self.0[8].text(),
            created_at: util::rfc3339(self.0[9].int()),
            approve_by: util::rfc3339(self.pending_until()),
            customer_approval: self.customer_approval(),
            approved_by: self.approved_by(),
            customer_approved_by: self.customer_by(),
            denied_by: self.0[16].opt(),
            serial: self.0[18].opt().map(|_| self.0[18].int()),
            valid_after: self.valid_after().map(util::rfc3339),
            valid_before: self.valid_before().map(util::rfc3339),
            principals: list(&self.0[21]),
            source_addresses: list(&self.0[22]),
            revoked_by: self.0[24].opt(),
            revoked_at: self.0[25].opt().map(|_| util::rfc3339(self.0[25].int())),
        }
    }
}

fn load(tx: &mut dyn Tx, n: i64) -> Result<Option<Row>, DbError> {
    let rows = tx.query(&format!("SELECT {COLUMNS} FROM access_requests WHERE id = ?"), &[V::I(n)])?;
    Ok(rows.into_iter().next().map(Row))
}

fn setting(tx: &mut dyn Tx, name: &str) -> Result<Option<String>, DbError> {
    let rows = tx.query("SELECT value FROM access_settings WHERE name = ?", &[name.into()])?;
    Ok(rows.first().map(|r| r[0].text()))
}

fn settings_in(tx: &mut dyn Tx) -> Result<AccessSettings, DbError> {
    let principals = match setting(tx, "principals")? {
        Some(v) => serde_json::from_str(&v).unwrap_or_default(),
        None => DEFAULT_PRINCIPALS.iter().map(|s| s.to_string()).collect(),
    };
    let int = |v: Option<String>, d: i64| v.and_then(|v| v.parse().ok()).unwrap_or(d);
    let max_duration_s = int(setting(tx, "max_duration_s")?, DEFAULT_MAX_DURATION_S);
    let pending_ttl_s = int(setting(tx, "pending_ttl_s")?, DEFAULT_PENDING_TTL_S);
    let customer_approval =
        setting(tx, "customer_approval")?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
    Ok(AccessSettings { principals, max_duration_s, pending_ttl_s, customer_approval })
}

fn put_setting(tx: &mut dyn Tx, name: &str, value: String) -> Result<(), DbError> {
    tx.exec("DELETE FROM access_settings WHERE name = ?", &[name.into()])?;
    tx.exec("INSERT INTO access_settings (name, value) VALUES (?, ?)", &[name.into(), V::S(value)])?;
    Ok(())
}

/// The CA keys still trusted, oldest first: (id, private key text, public key, created).
fn ca_keys(tx: &mut dyn Tx) -> Result<Vec<(i64, String, String, i64)>, DbError> {
    let rows = tx.query(
        "SELECT id, private_key, public_key, created_ms FROM ssh_ca WHERE retired_ms IS NULL ORDER BY id",
        &[],
    )?;
    Ok(rows.into_iter().map(|r| (r[0].int(), r[1].text(), r[2].text(), r[3].int())).collect())
}

/// A new CA key pair: (private key in OpenSSH format, public key line).
fn new_ca(n: i64) -> Result<(String, String), ApiError> {
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&random::<32>()?);
    let mut key = PrivateKey::from(pair);
    key.set_comment(format!("fleetwall-ssh-ca-{n}"));
    let private = key.to_openssh(LineEnding::LF).map_err(ApiError::internal)?;
    let public = key.public_key().to_openssh().map_err(ApiError::internal)?;
    Ok((private.to_string(), public))
}

fn insert_ca(tx: &mut dyn Tx, now: i64, pair: &(String, String)) -> Result<i64, DbError> {
    let next = tx.query("SELECT coalesce(max(id), 0) + 1 FROM ssh_ca", &[])?;
    let n = next.first().map(|r| r[0].int()).unwrap_or(1);
    tx.exec(
        "INSERT INTO ssh_ca (id, private_key, public_key, created_ms, retired_ms) VALUES (?, ?, ?, ?, NULL)",
        &[V::I(n), V::S(pair.0.clone()), V::S(pair.1.clone()), V::I(now)],
    )?;
    Ok(n)
}

/// The trust files' texts from the store.
fn trust_in(tx: &mut dyn Tx) -> Result<SshTrust, DbError> {
    let mut trusted = String::new();
    for (_, _, public, _) in ca_keys(tx)? {
        trusted.push_str(public.trim());
        trusted.push('\n');
    }
    let mut revoked =
        String::from("# fleetwall: keys of revoked operator access (every certificate of a listed key is refused)\n");
    let rows = tx.query(
        "SELECT id, public_key FROM access_requests WHERE state = 'revoked' AND serial IS NOT NULL ORDER BY id",
        &[],
    )?;
    for r in rows {
        revoked.push_str(&format!("{} {}\n", r[1].text().trim(), id_of(r[0].int())));
    }
    let logins = settings_in(tx)?.principals;
    let hash = util::sha256_hex(format!("{trusted}\0{revoked}\0{}", logins.join(",")).as_bytes());
    let authorized_principals = logins.into_iter().map(|l| (l, String::new())).collect();
    Ok(SshTrust { trusted_user_ca_keys: trusted, revoked_keys: revoked, authorized_principals, hash })
}

/// Who may see request `row`.
fn may_see(actor: &Actor, row: &Row) -> bool {
    match actor {
        Actor::Admin(_) | Actor::Security(_) => true,
        Actor::Operator(_) => row.requester() == actor.name(),
        Actor::Project(p) => *p == row.project(),
        Actor::Agent(_) => false,
    }
}

/// A refusal inside a write transaction: kept aside, and the transaction rolled back.
struct Refusal(Option<ApiError>);

impl Refusal {
    fn refuse(&mut self, e: ApiError) -> DbError {
        self.0 = Some(e);
        DbError("refused".into())
    }
    fn result<T>(self, r: Result<T, DbError>) -> Result<T, ApiError> {
        match (r, self.0) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e.into()),
            (Ok(v), None) => Ok(v),
        }
    }
}

impl ControlPlane {
    /// The platform's access settings.
    pub fn access_settings(&self) -> Result<AccessSettings, ApiError> {
        Ok(self.db.read(settings_in)?)
    }

    /// Changes the access settings (admin only); audited as `access.settings`.
    pub fn set_access_settings(&self, actor: &Actor, edit: &AccessSettingsEdit) -> Result<AccessSettings, ApiError> {
        need(actor, matches!(actor, Actor::Admin(_)), "change the access settings (admin only)")?;
        if let Some(p) = &edit.principals {
            if p.is_empty() {
                return Err(ApiError::bad("principals must name at least one login"));
            }
            for name in p {
                let ok = !name.is_empty()
                    && name.len() <= 32
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    return Err(ApiError::bad(format!(
                        "principal '{name}' is not a login name (letters, digits, '-', '_', '.'; at most 32)"
                    )));
                }
            }
        }
        if let Some(d) = edit.max_duration_s {
            if !(1..=LIMIT_DURATION_S).contains(&d) {
                return Err(ApiError::bad(format!("max_duration_s must be 1..={LIMIT_DURATION_S}, got {d}")));
            }
        }
        if let Some(d) = edit.pending_ttl_s {
            if !(1..=LIMIT_DURATION_S).contains(&d) {
                return Err(ApiError::bad(format!("pending_ttl_s must be 1..={LIMIT_DURATION_S}, got {d}")));
            }
        }
        if let Some(projects) = &edit.customer_approval {
            for p in projects {
                crate::ops::check_name("project", p)?;
            }
        }
        let now = util::now_ms();
        let written = self.db.write(|tx| {
            let before = settings_in(tx)?;
            if let Some(p) = &edit.principals {
                put_setting(tx, "principals", json!(p).to_string())?;
            }
            if let Some(d) = edit.max_duration_s {
                put_setting(tx, "max_duration_s", d.to_string())?;
            }
            if let Some(d) = edit.pending_ttl_s {
                put_setting(tx, "pending_ttl_s", d.to_string())?;
            }
            if let Some(p) = &edit.customer_approval {
                let mut p = p.clone();
                p.sort();
                p.dedup();
                put_setting(tx, "customer_approval", json!(p).to_string())?;
            }
            let after = settings_in(tx)?;
            let as_json = |s: &AccessSettings| serde_json::to_value(s).unwrap_or(Value::Null);
            audit(tx, None, now, actor, "access.settings", "/access/settings", &as_json(&before), &as_json(&after))?;
            Ok(after)
        });
        // The login names are the principals files' names on every node.
        self.access_trust_changed();
        Ok(written?)
    }

    /// Notes requests whose approval deadline or window has passed (audited as
    /// `access.expire` and `access.end`). Cheap when there is nothing to note.
    pub fn access_sweep(&self) -> Result<usize, ApiError> {
        let now = util::now_ms();
        let due = "(state = 'pending' AND pending_until_ms <= ?) OR (state = 'approved' AND valid_before_ms <= ?)";
        let found = self
            .db
            .read(|tx| tx.query(&format!("SELECT id FROM access_requests WHERE {due}"), &[V::I(now), V::I(now)]))?;
        if found.is_empty() {
            return Ok(0);
        }
        let by = Actor::Admin("access-policy".into());
        Ok(self.db.write(|tx| {
            let rows =
                tx.query(&format!("SELECT {COLUMNS} FROM access_requests WHERE {due}"), &[V::I(now), V::I(now)])?;
            for row in rows.into_iter().map(Row) {
                let (state, action, at) = match row.stored_state().as_str() {
                    "pending" => ("expired", "access.expire", row.pending_until()),
                    _ => ("ended", "access.end", row.valid_before().unwrap_or(now)),
                };
                tx.exec("UPDATE access_requests SET state = ? WHERE id = ?", &[state.into(), V::I(row.n())])?;
                let before = json!({ "state": row.state(at - 1) });
                let after = json!({ "state": state, "at": util::rfc3339(at) });
                audit(tx, None, now, &by, action, &target(row.n()), &before, &after)?;
            }
            Ok(found.len())
        })?)
    }

    /// An operator asks for access; audited as `access.request`.
    pub fn access_request(&self, actor: &Actor, ask: &AccessAsk) -> Result<AccessRequest, ApiError> {
        need(actor, matches!(actor, Actor::Operator(_)), "request operator access (operator tokens only)")?;
        let snap = self.snapshot();
        let (project, service, node) = match (&ask.node, &ask.project, &ask.service) {
            (Some(n), None, None) => {
                let d =
                    snap.nodes().get(n).ok_or_else(|| ApiError::not_found(format!("no node '{n}' in the fleet")))?;
                (d.project.clone(), d.service.clone(), Some(n.clone()))
            }
            (None, Some(p), Some(s)) => {
                snap.doc().project(p).ok_or_else(|| crate::ops::no_project(p))?;
                snap.doc().service(p, s).ok_or_else(|| crate::ops::no_service(p, s))?;
                (p.clone(), s.clone(), None)
            }
            _ => return Err(ApiError::bad("give either \"node\", or \"project\" and \"service\"")),
        };
        let reason = text_field("reason", &ask.reason, MAX_REASON)?;
        let (public_key, fp) = parse_public_key(&ask.public_key)?;
        let now = util::now_ms();
        let mut refusal = Refusal(None);
        let r = self.db.write(|tx| {
            let settings = settings_in(tx)?;
            if !(1..=settings.max_duration_s).contains(&ask.duration_s) {
                return Err(refusal.refuse(ApiError::bad(format!(
                    "duration_s must be 1..={} (the platform's maximum window), got {}",
                    settings.max_duration_s, ask.duration_s
                ))));
            }
            let burnt = tx.query(
                "SELECT id FROM access_requests WHERE key_fp = ? AND state = 'revoked' AND serial IS NOT NULL",
                &[V::S(fp.clone())],
            )?;
            if let Some(b) = burnt.first() {
                return Err(refusal.refuse(ApiError::conflict(format!(
                    "this key was revoked with {}: make a new key (ssh-keygen -t ed25519) and ask with it",
                    id_of(b[0].int())
                ))));
            }
            let next = tx.query("SELECT coalesce(max(id), 0) + 1 FROM access_requests", &[])?;
            let n = next.first().map(|r| r[0].int()).unwrap_or(1);
            let customer = settings.customer_approval.contains(&project);
            tx.exec(
                "INSERT INTO access_requests (id, requester, project, service, node, reason, duration_s, public_key, key_fp, \
                 created_ms, pending_until_ms, customer_approval, principals, source_addresses, state) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]', 'pending')",
                &[
                    V::I(n),
                    V::S(actor.name()),
                    V::S(project.clone()),
                    V::S(service.clone()),
                    V::from(node.clone()),
                    V::S(reason.clone()),
                    V::I(ask.duration_s),
                    V::S(public_key.clone()),
                    V::S(fp.clone()),
                    V::I(now),
                    V::I(now + settings.pending_ttl_s * 1000),
                    V::I(i64::from(customer)),
                ],
            )?;
            let row = load(tx, n)?.ok_or_else(|| DbError("the new request vanished".into()))?;
            let view = row.view(now);
            audit(tx, None, now, actor, "access.request", &target(n), &Value::Null, &json!(view))?;
            Ok(view)
        });
        refusal.result(r)
    }

    /// Requests `actor` may see, oldest first (`active`: only those with a certificate in
    /// force now).
    pub fn access_list(&self, actor: &Actor, active: bool) -> Result<Vec<AccessRequest>, ApiError> {
        need(actor, !matches!(actor, Actor::Agent(_)), "list operator access")?;
        self.access_sweep()?;
        let now = util::now_ms();
        let rows = self.db.read(|tx| tx.query(&format!("SELECT {COLUMNS} FROM access_requests ORDER BY id"), &[]))?;
        Ok(rows
            .into_iter()
            .map(Row)
            .filter(|r| may_see(actor, r))
            .map(|r| r.view(now))
            .filter(|v| !active || v.state == "active")
            .collect())
    }

    fn visible(&self, actor: &Actor, n: i64) -> Result<Row, ApiError> {
        let row = self.db.read(|tx| load(tx, n))?;
        match row {
            Some(r) if may_see(actor, &r) => Ok(r),
            // The same answer whether it does not exist or is someone else's.
            _ => Err(ApiError::not_found(format!("no access request {}", id_of(n)))),
        }
    }

    /// One request.
    pub fn access_get(&self, actor: &Actor, n: i64) -> Result<AccessRequest, ApiError> {
        self.access_sweep()?;
        Ok(self.visible(actor, n)?.view(util::now_ms()))
    }

    /// Approves request `n`: for security (a security token, never the requester) or for
    /// the customer (the project's token, when the project asks for it). Once every
    /// approval it needs is in, the certificate is issued (audited as `access.issue`).
    pub fn access_approve(&self, actor: &Actor, n: i64) -> Result<AccessRequest, ApiError> {
        need(
            actor,
            matches!(actor, Actor::Security(_) | Actor::Project(_)),
            "approve operator access (a security token, or the project's for customer approval)",
        )?;
        self.access_sweep()?;
        let row = self.visible(actor, n)?;
        let role = match actor {
            Actor::Security(_) => "security",
            Actor::Project(_) if row.customer_approval() => "customer",
            Actor::Project(p) => {
                return Err(ApiError::forbidden(format!(
                    "project '{p}' does not ask for customer approval: a security token approves {}",
                    id_of(n)
                )))
            }
            other => {
                return Err(ApiError::forbidden(format!(
                    "{} may not approve operator access (a security token, or the project's for customer approval)",
                    other.name()
                )))
            }
        };
        if person(actor).is_some() && person(actor) == Actor::from_name(&row.requester()).as_ref().and_then(person) {
            return Err(ApiError::forbidden(format!(
                "{} asked for {} and may not approve it: someone else must",
                row.requester(),
                id_of(n)
            )));
        }
        // Checked before anything is stored: an approval that cannot issue stores nothing.
        let snap = self.snapshot();
        let gateways: Vec<String> = snap
            .fleet()
            .map(|f| f.platform.management_gateways.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default();
        if gateways.is_empty() {
            return Err(ApiError::conflict(
                "the fleet has no platform.management_gateways: a certificate would be usable from anywhere",
            ));
        }
        let now = util::now_ms();
        let mut refusal = Refusal(None);
        let mut issued = false;
        let r = self.db.write(|tx| {
            let Some(row) = load(tx, n)? else {
                return Err(refusal.refuse(ApiError::not_found(format!("no access request {}", id_of(n)))));
            };
            let state = row.state(now);
            if state != "pending" {
                return Err(refusal.refuse(ApiError::conflict(format!(
                    "{} is {state}: only a pending request can be approved",
                    id_of(n)
                ))));
            }
            let (col_by, col_ms, already) = match role {
                "security" => ("approved_by", "approved_ms", row.approved_by()),
                _ => ("customer_by", "customer_ms", row.customer_by()),
            };
            if let Some(by) = already {
                return Err(
                    refusal.refuse(ApiError::conflict(format!("{} was already approved for {role} by {by}", id_of(n))))
                );
            }
            tx.exec(
                &format!("UPDATE access_requests SET {col_by} = ?, {col_ms} = ? WHERE id = ?"),
                &[V::S(actor.name()), V::I(now), V::I(n)],
            )?;
            audit(
                tx,
                None,
                now,
                actor,
                "access.approve",
                &target(n),
                &json!({ "state": "pending" }),
                &json!({ "role": role }),
            )?;
            let row = load(tx, n)?.ok_or_else(|| DbError("the request vanished".into()))?;
            let complete = row.approved_by().is_some() && (!row.customer_approval() || row.customer_by().is_some());
            if complete {
                self.issue(tx, &row, now, &gateways).map_err(|e| refusal.refuse(e))?;
                issued = true;
            }
            Ok(())
        });
        refusal.result(r)?;
        if issued {
            self.access_trust_changed();
        }
        self.access_get(actor, n)
    }

    /// Signs request `row`'s certificate with the newest CA key and stores it.
    fn issue(&self, tx: &mut dyn Tx, row: &Row, now: i64, gateways: &[String]) -> Result<(), ApiError> {
        let settings = settings_in(tx)?;
        let mut keys = ca_keys(tx)?;
        if keys.is_empty() {
            let pair = new_ca(1)?;
            let id = insert_ca(tx, now, &pair)?;
            audit(
                tx,
                None,
                now,
                &Actor::Admin("access-policy".into()),
                "access.ca.create",
                &format!("/access/ca/{id}"),
                &Value::Null,
                &json!({ "public_key": pair.1 }),
            )?;
            keys = ca_keys(tx)?;
        }
        let (ca_id, ca_private, ca_public, _) = keys.last().cloned().expect("a CA key was just made");
        let ca = PrivateKey::from_openssh(&ca_private).map_err(ApiError::internal)?;
        let subject = PublicKey::from_openssh(&row.public_key()).map_err(ApiError::internal)?;
        let duration_s = row.0[6].int();
        // The login names, and the target: only its node(s) list that principal.
        let mut principals = settings.principals.clone();
        principals.push(match row.0[4].opt() {
            Some(node) => node_principal(&node),
            None => service_principal(&row.project(), &row.0[3].text()),
        });
        let valid_after = (now / 1000) as u64;
        let valid_before = valid_after + duration_s as u64;
        let id = id_of(row.n());
        let mut b =
            certificate::Builder::new(random::<16>()?.to_vec(), subject.key_data().clone(), valid_after, valid_before)
                .map_err(ApiError::internal)?;
        let sign = || -> Result<certificate::Certificate, ssh_key::Error> {
            b.serial(row.n() as u64)?.key_id(id.clone())?.cert_type(certificate::CertType::User)?;
            for p in &principals {
                b.valid_principal(p.clone())?;
            }
            b.critical_option("source-address", gateways.join(","))?;
            b.extension("permit-pty", "")?;
            b.comment(id.clone())?;
            b.sign(&ca)
        };
        let cert = sign().map_err(ApiError::internal)?;
        let text = cert.to_openssh().map_err(ApiError::internal)?;
        let (va_ms, vb_ms) = (valid_after as i64 * 1000, valid_before as i64 * 1000);
        tx.exec(
            "UPDATE access_requests SET state = 'approved', serial = ?, valid_after_ms = ?, valid_before_ms = ?, \
             principals = ?, source_addresses = ?, certificate = ?, ca_id = ? WHERE id = ?",
            &[
                V::I(row.n()),
                V::I(va_ms),
                V::I(vb_ms),
                V::S(json!(principals).to_string()),
                V::S(json!(gateways).to_string()),
                V::S(text),
                V::I(ca_id),
                V::I(row.n()),
            ],
        )?;
        let ca_fp =
            PublicKey::from_openssh(&ca_public).map(|k| k.fingerprint(HashAlg::Sha256).to_string()).unwrap_or_default();
        let after = json!({
            "state": "active", "serial": row.n(), "key_id": id,
            "valid_after": util::rfc3339(va_ms), "valid_before": util::rfc3339(vb_ms),
            "principals": principals, "source_addresses": gateways, "ca": ca_fp,
        });
        audit(
            tx,
            None,
            now,
            &Actor::Admin("access-policy".into()),
            "access.issue",
            &target(row.n()),
            &json!({ "state": "pending" }),
            &after,
        )?;
        Ok(())
    }

    /// Denies pending request `n` (security, or the project's customer when it approves
    /// too); audited as `access.deny`.
    pub fn access_deny(&self, actor: &Actor, n: i64, reason: Option<&str>) -> Result<AccessRequest, ApiError> {
        self.access_sweep()?;
        let row = self.visible(actor, n)?;
        let allowed =
            matches!(actor, Actor::Security(_)) || (matches!(actor, Actor::Project(_)) && row.customer_approval());
        need(actor, allowed, "deny operator access (a security token, or the project's for customer approval)")?;
        let reason = reason.map(|r| text_field("reason", r, MAX_REASON)).transpose()?;
        let now = util::now_ms();
        let mut refusal = Refusal(None);
        let r = self.db.write(|tx| {
            let row = load(tx, n)?.ok_or_else(|| DbError("the request vanished".into()))?;
            let state = row.state(now);
            if state != "pending" {
                return Err(refusal.refuse(ApiError::conflict(format!(
                    "{} is {state}: only a pending request can be denied",
                    id_of(n)
                ))));
            }
            tx.exec(
                "UPDATE access_requests SET state = 'denied', denied_by = ?, denied_ms = ? WHERE id = ?",
                &[V::S(actor.name()), V::I(now), V::I(n)],
            )?;
            audit(
                tx,
                None,
                now,
                actor,
                "access.deny",
                &target(n),
                &json!({ "state": "pending" }),
                &json!({ "state": "denied", "reason": reason }),
            )
        });
        refusal.result(r)?;
        self.access_get(actor, n)
    }

    /// Revokes request `n`: a pending one is withdrawn, an active one's key goes into every
    /// node's revoked-keys file at once. Security, the admin, the requester, and the
    /// project's customer may; audited as `access.revoke`.
    pub fn access_revoke(&self, actor: &Actor, n: i64) -> Result<AccessRequest, ApiError> {
        self.access_sweep()?;
        // Whoever may see it may revoke it: security, the admin, the requester, the customer.
        self.visible(actor, n)?;
        let now = util::now_ms();
        let mut refusal = Refusal(None);
        let r = self.db.write(|tx| {
            let row = load(tx, n)?.ok_or_else(|| DbError("the request vanished".into()))?;
            let state = row.state(now);
            if !matches!(state, "pending" | "active") {
                return Err(refusal.refuse(ApiError::conflict(format!("{} is {state}: nothing to revoke", id_of(n)))));
            }
            tx.exec(
                "UPDATE access_requests SET state = 'revoked', revoked_by = ?, revoked_ms = ? WHERE id = ?",
                &[V::S(actor.name()), V::I(now), V::I(n)],
            )?;
            audit(
                tx,
                None,
                now,
                actor,
                "access.revoke",
                &target(n),
                &json!({ "state": state }),
                &json!({ "state": "revoked" }),
            )?;
            Ok(row.certificate().is_some())
        });
        if refusal.result(r)? {
            self.access_trust_changed();
        }
        self.access_get(actor, n)
    }

    /// Request `n`'s certificate (the requester, security and the admin).
    pub fn access_certificate(&self, actor: &Actor, n: i64) -> Result<AccessCertificate, ApiError> {
        need(
            actor,
            matches!(actor, Actor::Operator(_) | Actor::Security(_) | Actor::Admin(_)),
            "read an access certificate",
        )?;
        self.access_sweep()?;
        let row = self.visible(actor, n)?;
        let state = row.state(util::now_ms());
        match (row.certificate(), row.valid_after(), row.valid_before()) {
            (Some(certificate), Some(va), Some(vb)) if state == "active" => Ok(AccessCertificate {
                id: id_of(n),
                serial: n,
                certificate,
                valid_after: util::rfc3339(va),
                valid_before: util::rfc3339(vb),
            }),
            _ => Err(ApiError::conflict(format!("{} is {state}: it has no certificate in force", id_of(n)))),
        }
    }

    /// The audit entries of request `n`, in order: its whole story.
    pub fn access_story(&self, actor: &Actor, n: i64) -> Result<fleetwall_api::AuditLog, ApiError> {
        self.access_sweep()?;
        self.visible(actor, n)?;
        let rows = self.db.read(|tx| {
            tx.query(
                &format!("SELECT {} FROM audit WHERE target = ? ORDER BY id", crate::AUDIT_COLUMNS),
                &[V::S(target(n))],
            )
        })?;
        let entries = rows.iter().map(|r| crate::audit_entry(r)).collect();
        Ok(fleetwall_api::AuditLog { entries })
    }

    /// The trusted CA keys (made on first use).
    pub fn ssh_ca(&self, actor: &Actor) -> Result<SshCaList, ApiError> {
        need(actor, !matches!(actor, Actor::Agent(_)), "read the SSH CA keys")?;
        self.ensure_ca()?;
        let keys = self.db.read(ca_keys)?;
        let last = keys.last().map(|k| k.0);
        Ok(SshCaList {
            keys: keys
                .into_iter()
                .map(|(id, _, public, created)| SshCaKey {
                    id,
                    fingerprint: PublicKey::from_openssh(&public)
                        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
                        .unwrap_or_default(),
                    public_key: public,
                    created_at: util::rfc3339(created),
                    signing: Some(id) == last,
                })
                .collect(),
        })
    }

    fn ensure_ca(&self) -> Result<(), ApiError> {
        if !self.db.read(ca_keys)?.is_empty() {
            return Ok(());
        }
        let now = util::now_ms();
        let pair = new_ca(1)?;
        let made = self.db.write(|tx| {
            if !ca_keys(tx)?.is_empty() {
                return Ok(false);
            }
            let id = insert_ca(tx, now, &pair)?;
            let by = Actor::Admin("access-policy".into());
            audit(
                tx,
                None,
                now,
                &by,
                "access.ca.create",
                &format!("/access/ca/{id}"),
                &Value::Null,
                &json!({ "public_key": pair.1 }),
            )?;
            Ok(true)
        })?;
        if made {
            self.access_trust_changed();
        }
        Ok(())
    }

    /// Makes a new CA key that signs from now on; the older ones stay trusted until
    /// retired (admin only; audited as `access.ca.rotate`).
    pub fn ssh_ca_rotate(&self, actor: &Actor) -> Result<SshCaList, ApiError> {
        need(actor, matches!(actor, Actor::Admin(_)), "rotate the SSH CA (admin only)")?;
        self.ensure_ca()?;
        let now = util::now_ms();
        let next = self.db.read(|tx| tx.query("SELECT coalesce(max(id), 0) + 1 FROM ssh_ca", &[]))?;
        let pair = new_ca(next.first().map(|r| r[0].int()).unwrap_or(1))?;
        self.db.write(|tx| {
            let id = insert_ca(tx, now, &pair)?;
            audit(
                tx,
                None,
                now,
                actor,
                "access.ca.rotate",
                &format!("/access/ca/{id}"),
                &Value::Null,
                &json!({ "public_key": pair.1 }),
            )
        })?;
        self.access_trust_changed();
        self.ssh_ca(actor)
    }

    /// Stops trusting CA key `id` (not the one that signs); its certificates stop working
    /// (admin only; audited as `access.ca.retire`).
    pub fn ssh_ca_retire(&self, actor: &Actor, id: i64) -> Result<SshCaList, ApiError> {
        need(actor, matches!(actor, Actor::Admin(_)), "retire an SSH CA key (admin only)")?;
        let now = util::now_ms();
        let mut refusal = Refusal(None);
        let r = self.db.write(|tx| {
            let keys = ca_keys(tx)?;
            match keys.iter().position(|k| k.0 == id) {
                None => Err(refusal.refuse(ApiError::not_found(format!("no trusted SSH CA key {id}")))),
                Some(i) if i + 1 == keys.len() => Err(refusal.refuse(ApiError::conflict(format!(
                    "SSH CA key {id} signs new certificates: rotate first (`fleetwall access ca rotate`), then retire it"
                )))),
                Some(_) => {
                    tx.exec("UPDATE ssh_ca SET retired_ms = ? WHERE id = ?", &[V::I(now), V::I(id)])?;
                    audit(tx, None, now, actor, "access.ca.retire", &format!("/access/ca/{id}"), &json!({ "state": "trusted" }), &json!({ "state": "retired" }))
                }
            }
        });
        refusal.result(r)?;
        self.access_trust_changed();
        self.ssh_ca(actor)
    }

    /// What node `node`'s sshd trusts and refuses (its agent and the admin).
    pub fn ssh_trust(&self, actor: &Actor, node: &str) -> Result<SshTrust, ApiError> {
        match actor {
            Actor::Admin(_) => {}
            Actor::Agent(me) if me == node => {}
            other => return Err(ApiError::forbidden(format!("{} may not read node '{node}'", other.name()))),
        }
        let snap = self.snapshot();
        let Some(d) = snap.nodes().get(node) else {
            return Err(ApiError::not_found(format!("node '{node}' is not in the fleet")));
        };
        self.ensure_ca()?;
        let mut t = self.db.read(trust_in)?;
        let lines = format!("{}\n{}\n", node_principal(node), service_principal(&d.project, &d.service));
        for text in t.authorized_principals.values_mut() {
            text.clone_from(&lines);
        }
        t.hash = node_trust_hash(&t.hash, node, &d.project, &d.service);
        Ok(t)
    }

    /// Wakes the agents' trust long-polls (here, and through NOTIFY on other replicas).
    pub fn access_trust_changed(&self) {
        if self.db.kind() == "postgres" {
            if let Err(e) = self.db.write(|tx| self.db.notify(tx, "access")) {
                eprintln!("fleetwall: telling other replicas of an SSH trust change failed: {e}");
            }
        }
        self.access_trust_refresh();
    }

    /// Reads the trust's hash from the store and wakes this replica's trust long-polls.
    pub fn access_trust_refresh(&self) {
        match self.db.read(trust_in) {
            Ok(t) => {
                self.access_trust.send_replace(t.hash);
            }
            Err(e) => eprintln!("fleetwall: reading the SSH trust failed: {e}"),
        }
    }

    /// Waits until node `node`'s trust hash differs from `hash`, the node is gone, or
    /// `timeout` passes (no thread held, no store read).
    pub async fn wait_trust_async(&self, node: &str, hash: &str, timeout: std::time::Duration) {
        let mut changes = self.access_trust.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let global = changes.borrow_and_update().clone();
            let snap = self.snapshot();
            let Some(d) = snap.nodes().get(node) else { return };
            if node_trust_hash(&global, node, &d.project, &d.service) != hash {
                return;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

fn need(actor: &Actor, allowed: bool, what: &str) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{} may not {what}", actor.name())))
    }
}

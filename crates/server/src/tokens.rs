//! Tokens and the identities they are bound to.
//!
//! A name is not an identity: after project A deletes node `x` and project B creates a
//! node `x`, a token bound to the name `x` would read B's ruleset. So every project and
//! node gets a fresh `uid` each time it is created (kept in `identities`, retired when it
//! is deleted, never reused), and project and agent tokens are bound to that uid. A
//! token dies with its object, at its expiry, or when revoked.
//!
//! Nothing about tokens is cached in memory: every request reads its token row (one
//! primary-key lookup), so a revocation on one replica holds on every replica at once.

use crate::db::{DbError, Tx, V};
use crate::{audit, util, Actor, ApiError, ControlPlane};
pub use fleetwall_api::TokenInfo;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The longest lifetime a token may be given (10 years).
pub const MAX_TTL_S: i64 = 10 * 365 * 86_400;

/// The kinds of object a token can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A project (customer tokens).
    Project,
    /// A node (agent tokens).
    Node,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Node => "node",
        }
    }
}

/// The live uid of `kind` `name`, if it has one.
pub fn live_uid(tx: &mut dyn Tx, kind: Kind, name: &str) -> Result<Option<String>, DbError> {
    let rows = tx.query(
        "SELECT uid FROM identities WHERE kind = ? AND name = ? AND deleted_ms IS NULL",
        &[kind.as_str().into(), name.into()],
    )?;
    Ok(rows.first().map(|r| r[0].text()))
}

/// The live uid of `kind` `name`, created if there is none.
pub fn ensure(tx: &mut dyn Tx, kind: Kind, name: &str, now: i64) -> Result<String, DbError> {
    if let Some(uid) = live_uid(tx, kind, name)? {
        return Ok(uid);
    }
    let uid = util::new_token().map_err(|e| DbError(e.to_string()))?.replacen("fw_", "id_", 1);
    tx.exec(
        "INSERT INTO identities (uid, kind, name, created_ms, deleted_ms) VALUES (?, ?, ?, ?, NULL)",
        &[V::S(uid.clone()), kind.as_str().into(), name.into(), V::I(now)],
    )?;
    Ok(uid)
}

/// Retires the live uid of `kind` `name`: every token bound to it stops working.
pub fn retire(tx: &mut dyn Tx, kind: Kind, name: &str, now: i64) -> Result<(), DbError> {
    tx.exec(
        "UPDATE identities SET deleted_ms = ? WHERE kind = ? AND name = ? AND deleted_ms IS NULL",
        &[V::I(now), kind.as_str().into(), name.into()],
    )?;
    Ok(())
}

/// Brings identities in line with a write: names that appeared get a uid (unless a token
/// was made for them in advance), names that went away are retired.
pub fn follow_write<'a>(
    tx: &mut dyn Tx,
    kind: Kind,
    before: impl IntoIterator<Item = &'a str>,
    after: impl IntoIterator<Item = &'a str>,
    now: i64,
) -> Result<(), DbError> {
    let before: BTreeSet<&str> = before.into_iter().collect();
    let after: BTreeSet<&str> = after.into_iter().collect();
    for gone in before.difference(&after) {
        retire(tx, kind, gone, now)?;
    }
    for new in after.difference(&before) {
        ensure(tx, kind, new, now)?;
    }
    Ok(())
}

/// Gives every name in `names` a uid and binds tokens from before identities existed
/// (no subject) to the object their scope names. Runs once at start.
pub fn adopt<'a>(
    tx: &mut dyn Tx,
    kind: Kind,
    names: impl IntoIterator<Item = &'a str>,
    now: i64,
) -> Result<(), DbError> {
    let live: BTreeSet<String> = tx
        .query("SELECT name FROM identities WHERE kind = ? AND deleted_ms IS NULL", &[kind.as_str().into()])?
        .into_iter()
        .map(|r| r[0].text())
        .collect();
    for name in names.into_iter().filter(|n| !live.contains(*n)) {
        ensure(tx, kind, name, now)?;
    }
    let token_kind = match kind {
        Kind::Project => "project",
        Kind::Node => "agent",
    };
    let legacy =
        tx.query("SELECT token_hash, scope FROM tokens WHERE kind = ? AND subject IS NULL", &[token_kind.into()])?;
    for row in legacy {
        let subject = live_uid(tx, kind, &row[1].text())?.map(V::S).unwrap_or(V::S("none".into()));
        tx.exec("UPDATE tokens SET subject = ? WHERE token_hash = ?", &[subject, row[0].clone()])?;
    }
    Ok(())
}

/// The id `token list` shows for a token hash.
fn id_of(hash: &str) -> String {
    hash.chars().take(12).collect()
}

impl ControlPlane {
    /// Resolves a bearer token: known, not revoked, not expired, and (for project and
    /// agent tokens) bound to a project or node that still exists as the same object.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Actor, ApiError> {
        let Some(token) = token else {
            return Err(ApiError::new(401, "missing bearer token (Authorization: Bearer …; see `fleetwall token`)"));
        };
        let hash = util::sha256_hex(token.as_bytes());
        let now = util::now_ms();
        let row = self.db.read(|tx| {
            let rows = tx.query(
                "SELECT kind, scope, subject, expires_ms, revoked_ms FROM tokens WHERE token_hash = ?",
                &[V::S(hash.clone())],
            )?;
            let Some(r) = rows.into_iter().next() else { return Ok(None) };
            let live = match r[2].opt() {
                Some(uid) => {
                    !tx.query("SELECT 1 FROM identities WHERE uid = ? AND deleted_ms IS NULL", &[V::S(uid)])?.is_empty()
                }
                None => false,
            };
            Ok(Some((r, live)))
        })?;
        let Some((r, live)) = row else { return Err(ApiError::new(401, "unknown token")) };
        if r[4] != V::Null {
            return Err(ApiError::new(401, "this token was revoked"));
        }
        if r[3] != V::Null && r[3].int() <= now {
            return Err(ApiError::new(401, format!("this token expired at {}", util::rfc3339(r[3].int()))));
        }
        let scope = r[1].text();
        match r[0].text().as_str() {
            "admin" => Ok(Actor::Admin(scope)),
            "operator" => Ok(Actor::Operator(scope)),
            "security" => Ok(Actor::Security(scope)),
            "project" if live => Ok(Actor::Project(scope)),
            "agent" if live => Ok(Actor::Agent(scope)),
            "project" => Err(ApiError::new(401, format!("this token's project '{scope}' was deleted"))),
            _ => Err(ApiError::new(401, format!("this token's node '{scope}' was deleted"))),
        }
    }

    /// Stores a new token of `kind` (`admin`, `project`, `agent`) for `scope`, valid for
    /// `ttl_s` seconds (None: until revoked); returns it.
    pub fn create_token(
        &self,
        by: Option<&Actor>,
        kind: &str,
        scope: &str,
        ttl_s: Option<i64>,
    ) -> Result<String, ApiError> {
        if !matches!(kind, "admin" | "project" | "agent" | "operator" | "security") {
            return Err(ApiError::bad(format!(
                "unknown token kind '{kind}' (admin, project, agent, operator or security)"
            )));
        }
        if let Some(t) = ttl_s {
            if !(1..=MAX_TTL_S).contains(&t) {
                return Err(ApiError::bad(format!("expires_in_s must be 1..={MAX_TTL_S} seconds, got {t}")));
            }
        }
        crate::ops::check_name(kind, scope)?;
        let token = util::new_token().map_err(ApiError::internal)?;
        self.insert_token(by, kind, scope, &token, ttl_s)?;
        Ok(token)
    }

    /// Stores `token` (only its hash is kept). A token already stored keeps its row as it
    /// is: registering it again never revives a revoked or expired one.
    pub fn insert_token(
        &self,
        by: Option<&Actor>,
        kind: &str,
        scope: &str,
        token: &str,
        ttl_s: Option<i64>,
    ) -> Result<(), ApiError> {
        let hash = util::sha256_hex(token.as_bytes());
        let now = util::now_ms();
        let by = by.cloned().unwrap_or(Actor::Admin("bootstrap".into()));
        self.db.write(|tx| {
            if !tx.query("SELECT 1 FROM tokens WHERE token_hash = ?", &[V::S(hash.clone())])?.is_empty() {
                return Ok(());
            }
            let subject = match kind {
                "project" => V::S(ensure(tx, Kind::Project, scope, now)?),
                "agent" => V::S(ensure(tx, Kind::Node, scope, now)?),
                _ => V::Null,
            };
            let expires = ttl_s.map(|t| V::I(now + t * 1000)).unwrap_or(V::Null);
            tx.exec(
                "INSERT INTO tokens (token_hash, kind, scope, name, created_at, subject, expires_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                &[
                    V::S(hash.clone()),
                    kind.into(),
                    scope.into(),
                    format!("{kind}:{scope}").into(),
                    V::S(util::rfc3339(now)),
                    subject,
                    expires.clone(),
                ],
            )?;
            let after = json!({
                "id": id_of(&hash), "kind": kind, "scope": scope,
                "expires_at": ttl_s.map(|t| util::rfc3339(now + t * 1000)),
            });
            audit(tx, None, now, &by, "token.create", &format!("/tokens/{}", id_of(&hash)), &Value::Null, &after)
        })?;
        Ok(())
    }

    /// Whether `token` is stored and would authenticate now.
    pub fn token_usable(&self, token: &str) -> bool {
        self.authenticate(Some(token)).is_ok()
    }

    /// Every token (admin only), oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        let now = util::now_ms();
        let rows = self.db.read(|tx| {
            tx.query(
                "SELECT t.token_hash, t.kind, t.scope, t.created_at, t.expires_ms, t.revoked_ms, \
                 (SELECT count(*) FROM identities i WHERE i.uid = t.subject AND i.deleted_ms IS NULL) \
                 FROM tokens t ORDER BY t.created_at, t.token_hash",
                &[],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let kind = r[1].text();
                let state = if r[5] != V::Null {
                    "revoked"
                } else if r[4] != V::Null && r[4].int() <= now {
                    "expired"
                } else if matches!(kind.as_str(), "project" | "agent") && r[6].int() == 0 {
                    "orphaned"
                } else {
                    "active"
                };
                TokenInfo {
                    id: id_of(&r[0].text()),
                    kind,
                    scope: r[2].text(),
                    created_at: r[3].text(),
                    expires_at: (r[4] != V::Null).then(|| util::rfc3339(r[4].int())),
                    revoked_at: (r[5] != V::Null).then(|| util::rfc3339(r[5].int())),
                    state: state.into(),
                }
            })
            .collect())
    }

    /// Revokes the token whose id (hash prefix, at least 8 hex digits) is `id`; effective
    /// at once on every replica. The last active admin token cannot be revoked.
    pub fn revoke_token(&self, by: &Actor, id: &str) -> Result<TokenInfo, ApiError> {
        if id.len() < 8 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad(format!(
                "a token id is 8 to 64 hex digits (see `fleetwall token list`), got '{id}'"
            )));
        }
        let id = id.to_ascii_lowercase();
        let now = util::now_ms();
        let mut refused: Option<ApiError> = None;
        let result = self.db.write(|tx| {
            let rows = tx.query(
                // `id` is hex digits only (checked above), so it holds no LIKE wildcard.
                "SELECT token_hash, kind, revoked_ms, expires_ms FROM tokens WHERE token_hash LIKE ?",
                &[V::S(format!("{id}%"))],
            )?;
            let row = match rows.as_slice() {
                [one] => one.clone(),
                [] => {
                    refused = Some(ApiError::not_found(format!("no token with id '{id}'")));
                    return Err(DbError("refused".into()));
                }
                _ => {
                    refused = Some(ApiError::bad(format!("token id '{id}' is ambiguous: give more digits")));
                    return Err(DbError("refused".into()));
                }
            };
            if row[2] != V::Null {
                return Ok(row[0].text());
            }
            if row[1].text() == "admin" {
                let others = tx.query(
                    "SELECT count(*) FROM tokens WHERE kind = 'admin' AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?) AND token_hash <> ?",
                    &[V::I(now), row[0].clone()],
                )?;
                if others.first().map(|r| r[0].int()).unwrap_or(0) == 0 {
                    refused = Some(ApiError::conflict(
                        "this is the last active admin token: create another admin token first (`fleetwall token create --admin NAME`)",
                    ));
                    return Err(DbError("refused".into()));
                }
            }
            tx.exec("UPDATE tokens SET revoked_ms = ? WHERE token_hash = ?", &[V::I(now), row[0].clone()])?;
            let target = format!("/tokens/{}", id_of(&row[0].text()));
            audit(tx, None, now, by, "token.revoke", &target, &json!({ "state": "active" }), &json!({ "state": "revoked" }))?;
            Ok(row[0].text())
        });
        let hash = match (result, refused) {
            (_, Some(e)) => return Err(e),
            (Err(e), None) => return Err(e.into()),
            (Ok(h), None) => h,
        };
        let short = id_of(&hash);
        self.list_tokens()?
            .into_iter()
            .find(|t| t.id == short)
            .ok_or_else(|| ApiError::internal("the revoked token vanished"))
    }
}

//! The control plane: the fleet held in a store (SQLite by default, PostgreSQL for
//! replicas), changed through an HTTP/JSON API, compiled into every node's ruleset, and
//! served to node agents by long-poll.
//!
//! Every write runs in one database transaction that excludes other writers (also other
//! replicas): read the head revision, edit a copy of the document, validate the whole
//! document with `model::load` (the diagnostics of `fleetwall check`), persist the ports
//! it allocated as pins (a port never moves), compile every node, record which nodes'
//! rulesets changed, append the audit entry, and commit. A rejected write returns before
//! anything is stored. After the commit the in-memory snapshot is replaced and waiting
//! agents wake; other replicas wake through PostgreSQL NOTIFY and rebuild theirs.

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod avn;
pub mod backup_keys;
pub mod connections;
pub mod db;
pub mod doc;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod state;
pub mod store;
pub mod tokens;
pub mod util;
pub mod web;

use db::{Db, DbError, Tx, V};
pub use fleetwall_api::{Diagnostic, NodeStatus, Report, Written, MAX_REPORT_ERROR};
use fleetwall_ir::NodeRuleset;
use fleetwall_model::doc::FleetDoc;
use fleetwall_model::ops::{Op, OpError};
use fleetwall_model::{Catalog, Severity};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// An API failure: an HTTP status, one message, and the validation diagnostics if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// One sentence.
    pub message: String,
    /// Validation problems, each with a path (and line/col for fleet files).
    pub diagnostics: Vec<Diagnostic>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), diagnostics: Vec::new() }
    }
    /// 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    /// 500.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(500, message.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::new(503, e.to_string())
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The operator: everything.
    Admin(String),
    /// A customer: one project.
    Project(String),
    /// A node agent: its own ruleset and status.
    Agent(String),
    /// An operator: asks for SSH access to nodes (`access`), sees its own requests.
    Operator(String),
    /// The security role: approves or denies other people's access requests.
    Security(String),
}

impl Actor {
    /// How the audit log names the caller.
    pub fn name(&self) -> String {
        match self {
            Actor::Admin(n) => format!("admin:{n}"),
            Actor::Project(p) => format!("project:{p}"),
            Actor::Agent(n) => format!("agent:{n}"),
            Actor::Operator(n) => format!("operator:{n}"),
            Actor::Security(n) => format!("security:{n}"),
        }
    }
    /// The actor `name()` gave (`admin:x`, `project:p`, `agent:n`).
    pub fn from_name(name: &str) -> Option<Actor> {
        match name.split_once(':')? {
            ("admin", n) => Some(Actor::Admin(n.into())),
            ("project", p) => Some(Actor::Project(p.into())),
            ("agent", n) => Some(Actor::Agent(n.into())),
            ("operator", n) => Some(Actor::Operator(n.into())),
            ("security", n) => Some(Actor::Security(n.into())),
            _ => None,
        }
    }
    /// May this caller read and write project `p`?
    pub fn may_project(&self, p: &str) -> bool {
        match self {
            Actor::Admin(_) => true,
            Actor::Project(q) => q == p,
            Actor::Agent(_) | Actor::Operator(_) | Actor::Security(_) => false,
        }
    }
}

/// What one node should enforce.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Its project.
    pub project: String,
    /// Its service.
    pub service: String,
    /// The fleet revision at which its ruleset last changed.
    pub revision: i64,
    /// The ruleset's canonical hash (`NodeRuleset::canonical_hash`).
    pub hash: String,
    /// The ruleset.
    pub ruleset: Arc<NodeRuleset>,
}

/// The fleet at one revision, compiled.
pub struct Snapshot {
    /// The fleet revision (0: nothing stored yet).
    pub revision: i64,
    /// When it was committed (ms since the epoch).
    pub created_ms: i64,
    /// The fleet document, the validated fleet and every node's desired ruleset.
    pub state: state::State,
}

impl Snapshot {
    /// The fleet document.
    pub fn doc(&self) -> &FleetDoc {
        &self.state.doc
    }
    /// Every node's desired ruleset.
    pub fn nodes(&self) -> &imbl::OrdMap<String, Desired> {
        &self.state.nodes
    }
    /// The validated fleet (None before anything is stored).
    pub fn fleet(&self) -> Option<&Arc<fleetwall_model::Fleet>> {
        self.state.fleet.as_ref()
    }
}

/// The hash published with a ruleset and reported back by its agent: the canonical hash
/// of the IR, the same whichever renderer (or version of it) the agent uses.
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    rs.canonical_hash()
}

/// The 400 of a rejected write: its errors, each with the document path of what it is
/// about.
pub fn rejection(diags: &fleetwall_model::Diagnostics) -> ApiError {
    let list: Vec<Diagnostic> = diags
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| Diagnostic {
            code: d.code.as_str().into(),
            message: d.message.clone(),
            path: d.path.clone(),
            value: d.value.clone(),
            hint: d.hint.clone(),
            ..Diagnostic::default()
        })
        .collect();
    ApiError { status: 400, message: summarize(&list), diagnostics: list }
}

/// The one-sentence message of a rejected write, in the platform's form, from its
/// diagnostics (the first one speaks; the count of the others follows).
fn summarize(list: &[Diagnostic]) -> String {
    let Some(first) = list.first() else { return "Invalid fleet".into() };
    let path = first.path.clone().unwrap_or_default();
    let msg = with_value(&first.message, first.value.as_deref());
    let hint = first.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
    let message = match user_config_key(&path) {
        Some(key) => {
            let msg = msg.strip_prefix(&format!("{key}: ")).unwrap_or(&msg);
            format!("Invalid 'user_config': Invalid input for {key}: {msg}{hint}")
        }
        None if path.is_empty() => format!("Invalid fleet: {msg}{hint}"),
        None => format!("Invalid fleet: {msg}{hint} at {path}"),
    };
    let more = if list.len() > 1 { format!(" (and {} more)", list.len() - 1) } else { String::new() };
    format!("{message}{more}")
}

/// A rejection as `actor` may see it. A project's caller sees the diagnostics about its
/// own project; a conflict with another tenant's object (an address or node name in
/// use) is reported without naming that object or where it is; any other problem
/// outside the project is one generic line.
pub fn redact(e: ApiError, actor: &Actor) -> ApiError {
    let Actor::Project(p) = actor else { return e };
    if e.diagnostics.is_empty() {
        return e;
    }
    let own = format!("projects.{p}.");
    let mut list = Vec::new();
    let mut elsewhere = false;
    let said = |code: &str, message: String, path: Option<&str>, value: Option<String>| Diagnostic {
        code: code.into(),
        message,
        path: path.map(str::to_string),
        value,
        ..Diagnostic::default()
    };
    for d in &e.diagnostics {
        let path = d.path.as_deref().unwrap_or("");
        let code = d.code.as_str();
        let mine = path.starts_with(&own) || path == own.trim_end_matches('.');
        let in_use = match code {
            "duplicate-address" => Some("address already in use"),
            "duplicate-node" => Some("node name already in use"),
            _ => None,
        };
        if path.starts_with("tests[") {
            // The platform's own assertions: say which one and whose it is, not what it says
            // (it may name other tenants' nodes).
            let test = path.split('.').next().unwrap_or(path);
            list.push(said(
                code,
                format!(
                    "the change fails the platform's fleet test {test}, which only the platform operator can change"
                ),
                Some(test),
                None,
            ));
            continue;
        }
        match (mine, in_use) {
            // The other party of a conflict is not named: neither its node nor its line.
            (true, Some(m)) => list.push(said(code, m.into(), Some(path), d.value.clone())),
            (true, None) => list.push(d.clone()),
            (false, Some(m)) => list.push(said(code, m.into(), None, d.value.clone())),
            (false, None) => elsewhere = true,
        }
    }
    if list.is_empty() && elsewhere {
        list.push(said(
            "outside-project",
            "the change conflicts with configuration outside this project (ask the platform operator)".into(),
            None,
            None,
        ));
    }
    list.dedup();
    ApiError { status: e.status, message: summarize(&list), diagnostics: list }
}

/// A whole fleet file (YAML or JSON text) as a document, or the diagnostics refusing it
/// (located by line and column in `text`).
pub fn fleet_file(text: &str, catalog: &Catalog) -> Result<FleetDoc, fleetwall_model::Diagnostics> {
    let (fleet, diags) = fleetwall_model::load(text, catalog);
    if fleet.is_none() {
        return Err(diags);
    }
    let tree = fleetwall_model::yaml::parse(text).map_err(|d| fleetwall_model::Diagnostics { items: vec![d] })?;
    let mut ignored = fleetwall_model::Diagnostics::default();
    Ok(FleetDoc::from_raw(&fleetwall_model::raw::decode(&tree, &mut ignored)))
}

/// The 400 for a refused fleet file: every error with its line and column.
pub fn file_rejection(diags: &fleetwall_model::Diagnostics) -> ApiError {
    let errors: Vec<_> = diags.items.iter().filter(|d| d.severity == Severity::Error).collect();
    let list: Vec<Diagnostic> = errors
        .iter()
        .map(|d| Diagnostic {
            code: d.code.as_str().into(),
            col: d.span.map(|s| s.start.col),
            file: Some("fleet".into()),
            hint: d.hint.clone(),
            line: d.span.map(|s| s.start.line),
            message: d.message.clone(),
            path: None,
            severity: Some(match d.severity {
                Severity::Error => "error".into(),
                Severity::Warning => "warning".into(),
            }),
            value: d.value.clone(),
        })
        .collect();
    let message = match errors.first() {
        Some(d) => format!(
            "Invalid fleet: {}{}{} ({})",
            with_value(&d.message, d.value.as_deref()),
            d.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(),
            d.span.map(|s| format!(" at line {} column {}", s.start.line, s.start.col)).unwrap_or_default(),
            if list.len() == 1 { "1 error".to_string() } else { format!("{} errors", list.len()) }
        ),
        None => "Invalid fleet".into(),
    };
    ApiError { status: 400, message, diagnostics: list }
}

/// A diagnostic's message with its offending value after it, unless the message
/// already quotes it.
pub fn with_value(message: &str, value: Option<&str>) -> String {
    match value {
        Some(v) if !message.contains(v) => format!("{message} '{v}'"),
        _ => message.to_string(),
    }
}

fn user_config_key(path: &str) -> Option<String> {
    let (_, rest) = path.split_once(".user_config.")?;
    Some(rest.split(['.', '[']).next().unwrap_or(rest).to_string())
}

/// How long `/metrics` reuses its count of nodes in sync.
pub const IN_SYNC_TTL: Duration = Duration::from_secs(1);

/// The control plane.
pub struct ControlPlane {
    /// The store.
    pub db: Db,
    /// The service catalog.
    pub catalog: Catalog,
    snap: Mutex<Arc<Snapshot>>,
    changed: Condvar,
    /// The revision of the snapshot, for long-polls that wait on the HTTP runtime
    /// ([`ControlPlane::wait_node_async`]): a write through this replica, or another
    /// replica's seen through PostgreSQL's NOTIFY, wakes them all without a thread each.
    revision: tokio::sync::watch::Sender<i64>,
    /// Counters and histograms for `/metrics`.
    pub metrics: metrics::Metrics,
    in_sync: Mutex<Option<(Instant, usize)>>,
    started: Instant,
    retention: Mutex<store::Retention>,
    /// The hash of the SSH trust files (`access`), for the agents' trust long-polls.
    access_trust: tokio::sync::watch::Sender<String>,
}

fn node_revisions(tx: &mut dyn Tx) -> Result<HashMap<String, (String, i64)>, DbError> {
    let rows = tx.query("SELECT node, hash, revision FROM node_rulesets", &[])?;
    Ok(rows.into_iter().map(|r| (r[0].text(), (r[1].text(), r[2].int()))).collect())
}

/// The 400 (or 404, 409) of an operation refused before validation.
pub fn op_error(e: OpError) -> ApiError {
    match e {
        OpError::NotFound(m) => ApiError::not_found(m),
        OpError::Conflict(m) => ApiError::conflict(m),
        OpError::Invalid(m) => ApiError::bad(m),
        OpError::Shape(d) => rejection(&d),
    }
}

/// The part of `doc` at JSON pointer `target` (for the audit's before/after), read off
/// the project it is in, not the whole fleet.
pub fn part_at(doc: &FleetDoc, target: &str) -> Value {
    let segs: Vec<String> = target.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let (root, rest) = match segs.as_slice() {
        [] => return serde_json::to_value(doc).unwrap_or(Value::Null),
        [first, p, rest @ ..] if first == "projects" => match doc.projects.get(p) {
            Some(pd) => (serde_json::to_value(&**pd).unwrap_or(Value::Null), rest),
            None => return Value::Null,
        },
        [first, rest @ ..] if first == "platform" => (serde_json::to_value(&doc.platform).unwrap_or(Value::Null), rest),
        _ => return Value::Null,
    };
    let pointer: String = rest.iter().map(|s| format!("/{}", ptr(s))).collect();
    root.pointer(&pointer).cloned().unwrap_or(Value::Null)
}

impl ControlPlane {
    /// Opens the store at `url` and builds the snapshot of its head revision.
    pub fn open(url: &str, catalog: Catalog) -> Result<Arc<ControlPlane>, ApiError> {
        let db = Db::open(url)?;
        let cp = Arc::new(ControlPlane {
            db,
            catalog,
            snap: Mutex::new(Arc::new(Snapshot { revision: 0, created_ms: 0, state: state::State::default() })),
            changed: Condvar::new(),
            revision: tokio::sync::watch::Sender::new(0),
            metrics: metrics::Metrics::default(),
            in_sync: Mutex::new(None),
            started: Instant::now(),
            retention: Mutex::new(store::Retention::default()),
            access_trust: tokio::sync::watch::Sender::new(String::new()),
        });
        cp.refresh()?;
        cp.adopt_identities()?;
        cp.access_trust_refresh();
        let weak = Arc::downgrade(&cp);
        cp.db.listen(move |payload| {
            if let Some(cp) = weak.upgrade() {
                if payload == "access" || payload == "reconnect" {
                    cp.access_trust_refresh();
                }
                if let Err(e) = cp.refresh() {
                    eprintln!("fleetwall: refresh after a change notification failed: {}", e.message);
                }
            }
        });
        Ok(cp)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, s: Snapshot) {
        let mut cur = self.snap.lock().unwrap_or_else(|p| p.into_inner());
        if s.revision > cur.revision || (s.revision == cur.revision && cur.revision == 0) {
            self.metrics.set_revision(s.revision, s.state.nodes.len());
            let revision = s.revision;
            *cur = Arc::new(s);
            self.changed.notify_all();
            self.revision.send_replace(revision);
        }
    }

    /// Sets how much history the store keeps (see [`store::compact`]).
    pub fn set_retention(&self, keep: store::Retention) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = keep;
    }

    /// Drops the revisions outside the retention. Returns how many went.
    pub fn compact(&self) -> Result<usize, ApiError> {
        let keep = *self.retention.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.db.write(|tx| store::compact(tx, keep, util::now_ms()))?)
    }

    /// The document at revision `rev`, or 404 when it is not (or no longer) kept.
    pub fn doc_at_revision(&self, rev: i64) -> Result<FleetDoc, ApiError> {
        let snap = self.snapshot();
        if rev == snap.revision {
            return Ok((*snap.state.doc).clone());
        }
        let found = self.db.read(|tx| Ok((store::doc_at(tx, rev)?, store::oldest(tx)?)))?;
        match found {
            (Some(doc), _) => Ok(doc),
            (None, Some(oldest)) if rev < oldest => Err(ApiError::not_found(format!(
                "revision {rev} is no longer kept (the oldest kept is {oldest}; see `fleetwall serve --keep-revisions`)"
            ))),
            (None, _) => Err(ApiError::not_found(format!("no revision {rev}"))),
        }
    }

    /// Brings the snapshot up to the store's head revision when another replica (or an
    /// earlier run) wrote it. Returns the head revision.
    pub fn refresh(&self) -> Result<i64, ApiError> {
        let cur = self.snapshot();
        // Only the head's number unless it is newer: replicas call this on every read.
        let mut failed = None;
        let loaded = self.db.read(|tx| match self.catch_up(tx, &cur) {
            Ok(l) => Ok(l),
            Err(e) => {
                failed = Some(e);
                Err(DbError("refresh failed".into()))
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        match loaded? {
            Some(snap) => {
                let rev = snap.revision;
                self.publish(snap);
                Ok(rev)
            }
            None => Ok(cur.revision),
        }
    }

    /// The snapshot of the store's head when it is newer than `cur`: `cur` with the deltas
    /// since replayed incrementally when they are few, else the head loaded whole.
    fn catch_up(&self, tx: &mut dyn Tx, cur: &Snapshot) -> Result<Option<Snapshot>, ApiError> {
        let known = cur.revision;
        let Some((newest, created_ms)) = store::head(tx)? else { return Ok(None) };
        if newest <= known {
            return Ok(None);
        }
        if known > 0 && newest - known <= store::SNAPSHOT_EVERY {
            let ds = store::deltas(tx, known, newest)?;
            if ds.iter().all(|(_, _, d)| d.is_some()) {
                let mut st = cur.state.clone();
                for (rev, _, delta) in ds {
                    let delta = delta.expect("checked: only deltas");
                    let mut doc = (*st.doc).clone();
                    delta.apply(&mut doc);
                    st = state::apply(&st, Arc::new(doc), &delta.touched(), &self.catalog, rev)?.0;
                }
                return Ok(Some(Snapshot { revision: newest, created_ms, state: st }));
            }
        }
        let doc = store::doc_at(tx, newest)?.ok_or_else(|| ApiError::internal("the head revision cannot be read"))?;
        let revs = node_revisions(tx)?;
        let since = |n: &str| revs.get(n).cloned();
        let mut st = state::full(Arc::new(doc), &self.catalog, newest, &since, false)?;
        // The store is authoritative for when each node last changed.
        let names: Vec<String> = st.nodes.keys().cloned().collect();
        for name in names {
            if let (Some((_, r)), Some(d)) = (revs.get(&name), st.nodes.get_mut(&name)) {
                d.revision = *r;
            }
        }
        Ok(Some(Snapshot { revision: newest, created_ms, state: st }))
    }

    /// Applies `op` to the fleet as one validated, atomic write by `actor`: only what it
    /// touched is revalidated, recompiled and stored. `target` is the JSON pointer of the
    /// object the write is about (for the audit's before/after).
    pub fn write(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        op: Op,
        extra: impl FnOnce(&mut dyn Tx, i64) -> Result<(), DbError>,
    ) -> Result<Written, ApiError> {
        let mut rejected: Option<ApiError> = None;
        let result = self.db.write(|tx| {
            let head = store::head(tx)?.map(|h| h.0).unwrap_or(0);
            let mut cur = self.snapshot();
            if head != cur.revision {
                // Another replica wrote since: catch up first (inside the lock, so no one else can).
                match self.catch_up(tx, &cur) {
                    Ok(Some(snap)) => cur = Arc::new(snap),
                    Ok(None) => {}
                    Err(e) => {
                        rejected = Some(e);
                        return Err(DbError("rejected".into()));
                    }
                }
            }
            let new_rev = head + 1;
            let mut next = (*cur.state.doc).clone();
            let outcome = op.apply(&mut next).map_err(op_error).and_then(|touched| {
                state::apply(&cur.state, Arc::new(next), &touched, &self.catalog, new_rev).map(|r| (r, touched))
            });
            let ((mut st, changes), touched) = match outcome {
                Ok(n) => n,
                Err(e) => {
                    rejected = Some(e);
                    return Err(DbError("rejected".into()));
                }
            };
            persist_ports(&mut st, &touched);
            let now = util::now_ms();
            let delta = match &op {
                Op::Replace(_) => None,
                _ => Some(store::Delta::of(&st.doc, &touched, matches!(op, Op::SetPlatform(_)))),
            };
            let stored = store::append(tx, new_rev, now, delta.as_ref(), &st.doc)?;
            for name in &changes.changed {
                let d = &st.nodes[name];
                tx.exec(
                    "INSERT INTO node_rulesets (node, hash, revision) VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET hash = excluded.hash, revision = excluded.revision",
                    &[V::S(name.clone()), V::S(d.hash.clone()), V::I(new_rev)],
                )?;
            }
            for gone in &changes.removed {
                tx.exec("DELETE FROM node_rulesets WHERE node = ?", &[V::S(gone.clone())])?;
            }
            tokens::follow_write(
                tx,
                tokens::Kind::Node,
                changes.before.iter().map(String::as_str),
                changes.after.iter().map(String::as_str),
                now,
            )?;
            tokens::follow_write(
                tx,
                tokens::Kind::Project,
                cur.state
                    .doc
                    .projects
                    .keys()
                    .filter(|p| touched.all || touched.projects.contains_key(*p))
                    .map(String::as_str),
                st.doc.projects.keys().filter(|p| touched.all || touched.projects.contains_key(*p)).map(String::as_str),
                now,
            )?;
            let before = if target.is_empty() { Value::Null } else { part_at(&cur.state.doc, target) };
            let after = if target.is_empty() { Value::Null } else { part_at(&st.doc, target) };
            audit(tx, Some(new_rev), now, actor, action, target, &before, &after)?;
            extra(tx, new_rev)?;
            self.db.notify(tx, &new_rev.to_string())?;
            let changed = changes.changed.len() + changes.removed.len();
            Ok((Snapshot { revision: new_rev, created_ms: now, state: st }, changed, after, stored))
        });
        match (result, rejected) {
            (_, Some(e)) => {
                self.metrics.write(false);
                Err(redact(e, actor))
            }
            (Err(e), None) => {
                self.metrics.write(false);
                Err(e.into())
            }
            (Ok((snap, changed, after, stored)), None) => {
                self.metrics.write(true);
                self.metrics.stored(stored);
                let revision = snap.revision;
                self.publish(snap);
                Ok(Written { revision, nodes_changed: changed, after })
            }
        }
    }

    /// `write` without extra statements: the common case.
    pub fn edit(&self, actor: &Actor, action: &str, target: &str, op: Op) -> Result<Written, ApiError> {
        self.write(actor, action, target, op, |_, _| Ok(()))
    }

    /// Replaces the whole fleet document (`fleet_file` reads one from text).
    pub fn replace(&self, actor: &Actor, action: &str, doc: FleetDoc) -> Result<Written, ApiError> {
        self.edit(actor, action, "", Op::Replace(doc))
    }

    /// Waits until node `node`'s desired revision is above `after` (or `timeout` passes).
    /// None when the node is not in the fleet.
    pub fn wait_node(&self, node: &str, after: i64, timeout: Duration) -> Option<Desired> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.snap.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics.watchers(1);
        let out = loop {
            match guard.state.nodes.get(node) {
                None => break None,
                Some(d) if d.revision > after => break Some(d.clone()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Some(d.clone());
                    }
                    guard = self.changed.wait_timeout(guard, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        self.metrics.watchers(-1);
        out
    }

    /// Like [`ControlPlane::wait_node`] without holding a thread: returns once node `node`'s
    /// desired revision is above `after`, the node is not in the fleet, or `timeout` has
    /// passed. The caller reads the outcome from the snapshot (`wait_node` with no wait).
    pub async fn wait_node_async(&self, node: &str, after: i64, timeout: Duration) {
        /// Counts the watcher for as long as it waits (also when the caller goes away).
        struct Watching<'a>(&'a metrics::Metrics);
        impl Drop for Watching<'_> {
            fn drop(&mut self) {
                self.0.watchers(-1);
            }
        }
        // Subscribed before the first look: a change after it is not missed.
        let mut changes = self.revision.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        self.metrics.watchers(1);
        let _watching = Watching(&self.metrics);
        loop {
            match self.snapshot().nodes().get(node) {
                Some(d) if d.revision <= after => {}
                _ => return,
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Gives every project and node of the current fleet an identity (a store from before
    /// identities existed) and binds older tokens to them.
    fn adopt_identities(&self) -> Result<(), ApiError> {
        let snap = self.snapshot();
        let now = util::now_ms();
        self.db.write(|tx| {
            tokens::adopt(tx, tokens::Kind::Project, snap.doc().projects.keys().map(String::as_str), now)?;
            tokens::adopt(tx, tokens::Kind::Node, snap.nodes().keys().map(String::as_str), now)
        })?;
        Ok(())
    }

    /// How many nodes enforce their desired ruleset, for `/metrics`: counted from the
    /// store at most once per `IN_SYNC_TTL`, however often `/metrics` (unauthenticated) is
    /// scraped.
    pub fn nodes_in_sync(&self) -> usize {
        let mut cached = self.in_sync.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, n)) = *cached {
            if at.elapsed() < IN_SYNC_TTL {
                return n;
            }
        }
        let n = self
            .status(|_| true)
            .map(|v| v.iter().filter(|s| s.state == fleetwall_api::state::IN_SYNC).count())
            .unwrap_or(0);
        *cached = Some((Instant::now(), n));
        n
    }

    /// Whether any admin token exists.
    pub fn has_admin(&self) -> Result<bool, ApiError> {
        let rows = self.db.read(|tx| tx.query("SELECT count(*) FROM tokens WHERE kind = 'admin'", &[]))?;
        Ok(rows.first().map(|r| r[0].int()).unwrap_or(0) > 0)
    }

    /// Records what node `node` enforces.
    pub fn report(&self, node: &str, r: &Report) -> Result<(), ApiError> {
        let now = util::now_ms();
        self.db.write(|tx| {
            tx.exec("DELETE FROM node_status WHERE node = ?", &[node.into()])?;
            tx.exec(
                "INSERT INTO node_status (node, revision, hash, applied_at, applied_ms, error, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                &[
                    node.into(),
                    V::I(r.revision),
                    V::S(r.hash.clone()),
                    V::S(util::rfc3339(r.applied_ms)),
                    V::I(r.applied_ms),
                    V::from(r.error.clone()),
                    V::S(util::rfc3339(now)),
                ],
            )?;
            Ok(())
        })?;
        let snap = self.snapshot();
        if let Some(d) = snap.nodes().get(node) {
            if d.hash == r.hash && r.revision == d.revision && r.error.is_none() {
                if let Some(created) = self.revision_created_ms(d.revision)? {
                    self.metrics.propagation((r.applied_ms - created).max(0));
                }
            }
        }
        Ok(())
    }

    fn revision_created_ms(&self, rev: i64) -> Result<Option<i64>, ApiError> {
        let snap = self.snapshot();
        if snap.revision == rev {
            return Ok(Some(snap.created_ms));
        }
        let rows = self.db.read(|tx| tx.query("SELECT created_ms FROM fleet_log WHERE revision = ?", &[V::I(rev)]))?;
        Ok(rows.first().map(|r| r[0].int()))
    }

    /// The rollout view: every node's desired and applied state.
    pub fn status(&self, visible: impl Fn(&Desired) -> bool) -> Result<Vec<NodeStatus>, ApiError> {
        let snap = self.snapshot();
        let rows = self
            .db
            .read(|tx| tx.query("SELECT node, revision, hash, applied_at, applied_ms, error FROM node_status", &[]))?;
        let reported: HashMap<String, &Vec<V>> = rows.iter().map(|r| (r[0].text(), r)).collect();
        let revs: std::collections::BTreeSet<i64> = snap.nodes().values().map(|d| d.revision).collect();
        let mut created = HashMap::new();
        for r in revs {
            if let Some(ms) = self.revision_created_ms(r)? {
                created.insert(r, ms);
            }
        }
        let now = util::now_ms();
        Ok(snap
            .nodes()
            .iter()
            .filter(|(_, d)| visible(d))
            .map(|(name, d)| {
                let rep = reported.get(name);
                let applied_revision = rep.map(|r| r[1].int());
                let applied_hash = rep.map(|r| r[2].text());
                let applied_ms = rep.map(|r| r[4].int());
                let error = rep.and_then(|r| r[5].opt());
                let since = created.get(&d.revision).copied().unwrap_or(now);
                let in_sync = applied_hash.as_deref() == Some(d.hash.as_str()) && applied_revision >= Some(d.revision);
                let (state, lag_ms) = if error.is_some() {
                    (fleetwall_api::state::ERROR, now - since)
                } else if in_sync {
                    (fleetwall_api::state::IN_SYNC, applied_ms.unwrap_or(now) - since)
                } else if rep.is_none() {
                    (fleetwall_api::state::UNKNOWN, now - since)
                } else {
                    (fleetwall_api::state::PENDING, now - since)
                };
                NodeStatus {
                    node: name.clone(),
                    project: d.project.clone(),
                    service: d.service.clone(),
                    desired_revision: d.revision,
                    desired_hash: d.hash.clone(),
                    applied_revision,
                    applied_hash,
                    applied_at: rep.map(|r| r[3].text()),
                    applied_ms,
                    state: state.into(),
                    lag_ms: lag_ms.max(0),
                    error,
                }
            })
            .collect())
    }

    /// Seconds since this server started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The columns of an audit entry, in the order [`audit_entry`] reads them.
pub(crate) const AUDIT_COLUMNS: &str = "id, revision, at, actor, action, target, before, after";

/// One audit row (selected with [`AUDIT_COLUMNS`]) as the wire type.
pub(crate) fn audit_entry(r: &[db::V]) -> fleetwall_api::AuditEntry {
    fleetwall_api::AuditEntry {
        id: r[0].int(),
        revision: r[1].opt().map(|_| r[1].int()),
        at: r[2].text(),
        actor: r[3].text(),
        action: r[4].text(),
        target: r[5].text(),
        before: serde_json::from_str::<Value>(&r[6].text()).unwrap_or(Value::Null),
        after: serde_json::from_str::<Value>(&r[7].text()).unwrap_or(Value::Null),
    }
}

/// Appends one audit entry.
#[allow(clippy::too_many_arguments)]
pub fn audit(
    tx: &mut dyn Tx,
    revision: Option<i64>,
    now: i64,
    actor: &Actor,
    action: &str,
    target: &str,
    before: &Value,
    after: &Value,
) -> Result<(), DbError> {
    let id = tx.query("SELECT coalesce(max(id), 0) + 1 FROM audit", &[])?;
    let id = id.first().map(|r| r[0].int()).unwrap_or(1);
    tx.exec(
        "INSERT INTO audit (id, revision, at, actor, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            V::I(id),
            revision.map(V::I).unwrap_or(V::Null),
            V::S(util::rfc3339(now)),
            V::S(actor.name()),
            action.into(),
            target.into(),
            V::S(before.to_string()),
            V::S(after.to_string()),
        ],
    )?;
    Ok(())
}

/// Writes every allocated port of the touched services into their `ports:` pins, so
/// later writes can never move it.
fn persist_ports(st: &mut state::State, touched: &fleetwall_model::ops::Touched) {
    let Some(fleet) = st.fleet.clone() else { return };
    let doc = Arc::make_mut(&mut st.doc);
    // The touched projects only (all of them when everything was touched).
    let projects: Vec<&Arc<fleetwall_model::Project>> = if touched.all {
        fleet.projects.iter().collect()
    } else {
        let find = |name: &String| fleet.projects.binary_search_by(|p| p.name.as_str().cmp(name)).ok();
        touched.projects.keys().filter_map(find).map(|i| &fleet.projects[i]).collect()
    };
    let services = projects.into_iter().flat_map(|p| p.services.iter().map(move |s| (p, s)));
    for (p, s) in services {
        if s.ports.is_empty() || !touched.covers(&p.name, &s.name) {
            continue;
        }
        let Some(sd) = doc.projects.get(&p.name).and_then(|pd| pd.services.get(&s.name)) else { continue };
        if s.ports.keys().all(|k| sd.ports.contains_key(&k.pin_name())) {
            continue;
        }
        let pd = Arc::make_mut(doc.projects.get_mut(&p.name).expect("found above"));
        let sd = Arc::make_mut(pd.services.get_mut(&s.name).expect("found above"));
        for (key, port) in &s.ports {
            sd.ports.entry(key.pin_name()).or_insert(i64::from(*port));
        }
    }
}

/// Escapes a JSON-pointer segment.
pub fn ptr(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

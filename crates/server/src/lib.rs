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

pub mod api;
pub mod backup_keys;
pub mod db;
pub mod doc;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod tokens;
pub mod util;

use db::{Db, DbError, Tx, V};
pub use fleetwall_api::{Diagnostic, NodeStatus, Report, Written, MAX_REPORT_ERROR};
use fleetwall_ir::NodeRuleset;
use fleetwall_model::{Catalog, Severity};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
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
}

impl Actor {
    /// How the audit log names the caller.
    pub fn name(&self) -> String {
        match self {
            Actor::Admin(n) => format!("admin:{n}"),
            Actor::Project(p) => format!("project:{p}"),
            Actor::Agent(n) => format!("agent:{n}"),
        }
    }
    /// The actor `name()` gave (`admin:x`, `project:p`, `agent:n`).
    pub fn from_name(name: &str) -> Option<Actor> {
        match name.split_once(':')? {
            ("admin", n) => Some(Actor::Admin(n.into())),
            ("project", p) => Some(Actor::Project(p.into())),
            ("agent", n) => Some(Actor::Agent(n.into())),
            _ => None,
        }
    }
    /// May this caller read and write project `p`?
    pub fn may_project(&self, p: &str) -> bool {
        match self {
            Actor::Admin(_) => true,
            Actor::Project(q) => q == p,
            Actor::Agent(_) => false,
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
    /// The fleet document.
    pub doc: Value,
    /// Every node's desired ruleset.
    pub nodes: BTreeMap<String, Desired>,
    /// The validated fleet (None before anything is stored).
    pub fleet: Option<Arc<fleetwall_model::Fleet>>,
}

/// The hash published with a ruleset and reported back by its agent: the canonical hash
/// of the IR, the same whichever renderer (or version of it) the agent uses.
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    rs.canonical_hash()
}

/// The document a fresh store starts from.
pub fn empty_doc() -> Value {
    json!({ "version": 1 })
}

/// Validates `doc`; on success the fleet, on failure the 400 to return.
pub fn validate(doc: &Value, catalog: &Catalog) -> Result<fleetwall_model::Fleet, ApiError> {
    let emitted = doc::to_yaml(doc);
    let (fleet, diags) = fleetwall_model::load(&emitted.text, catalog);
    fleet.ok_or_else(|| rejection(&diags, &emitted))
}

/// What `fleetwall check` adds to validation: the management proof on every node and
/// the fleet's own `tests:`, over the compiled rulesets.
pub fn check(doc: &Value, fleet: &fleetwall_model::Fleet, rulesets: &[NodeRuleset]) -> Result<(), ApiError> {
    let mut diags = fleetwall_model::Diagnostics::default();
    fleetwall_verify::check::check_fleet(fleet, rulesets, &mut diags);
    if diags.has_errors() {
        return Err(rejection(&diags, &doc::to_yaml(doc)));
    }
    Ok(())
}

fn rejection(diags: &fleetwall_model::Diagnostics, emitted: &doc::Emitted) -> ApiError {
    let list: Vec<Diagnostic> = diags
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| Diagnostic {
            code: d.code.as_str().into(),
            message: d.message.clone(),
            path: d.span.map(|s| emitted.path_at(s.start.line).to_string()),
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
pub fn fleet_file(text: &str, catalog: &Catalog) -> Result<Value, fleetwall_model::Diagnostics> {
    let (fleet, diags) = fleetwall_model::load(text, catalog);
    if fleet.is_none() {
        return Err(diags);
    }
    let tree = fleetwall_model::yaml::parse(text).map_err(|d| fleetwall_model::Diagnostics { items: vec![d] })?;
    Ok(doc::from_yaml(&tree))
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

/// A compiled document: the fleet (None when empty) and every node's desired ruleset.
pub type Compiled = (Option<Arc<fleetwall_model::Fleet>>, BTreeMap<String, Desired>);

/// Compiles `doc` into every node's desired ruleset. `since` gives each node's previous
/// (hash, revision); a node whose hash is unchanged keeps its revision.
pub fn compile_doc(
    doc: &Value,
    catalog: &Catalog,
    revision: i64,
    since: &HashMap<String, (String, i64)>,
) -> Result<Compiled, ApiError> {
    if doc.get("projects").is_none() && doc.get("platform").is_none() {
        return Ok((None, BTreeMap::new()));
    }
    compile_fleet(validate(doc, catalog)?, revision, since, None)
}

/// Compiles a validated fleet; with `check_doc`, first runs `check` (the management proof
/// and the fleet's tests) over the rulesets, reporting paths in that document.
fn compile_fleet(
    fleet: fleetwall_model::Fleet,
    revision: i64,
    since: &HashMap<String, (String, i64)>,
    check_doc: Option<&Value>,
) -> Result<Compiled, ApiError> {
    let rulesets = fleetwall_compile::compile(&fleet);
    if let Some(doc) = check_doc {
        check(doc, &fleet, &rulesets)?;
    }
    let mut owner = HashMap::new();
    for (p, s, n) in fleet.nodes() {
        owner.insert(n.name.clone(), (p.name.clone(), s.name.clone()));
    }
    let mut out = BTreeMap::new();
    for rs in rulesets {
        // Agents refuse a ruleset that fails validation: never publish one.
        rs.validate().map_err(|e| {
            ApiError::bad(format!("Invalid fleet: node {} would get a ruleset its agent refuses: {e}", rs.node))
        })?;
        let hash = ruleset_hash(&rs);
        let rev = match since.get(&rs.node) {
            Some((h, r)) if *h == hash => *r,
            _ => revision,
        };
        let (project, service) = owner.get(&rs.node).cloned().unwrap_or_default();
        out.insert(rs.node.clone(), Desired { project, service, revision: rev, hash, ruleset: Arc::new(rs) });
    }
    Ok((Some(Arc::new(fleet)), out))
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
    /// Counters and histograms for `/metrics`.
    pub metrics: metrics::Metrics,
    in_sync: Mutex<Option<(Instant, usize)>>,
    started: Instant,
}

fn head(tx: &mut dyn Tx) -> Result<Option<(i64, i64, String)>, DbError> {
    let rows = tx.query("SELECT revision, created_ms, fleet FROM revisions ORDER BY revision DESC LIMIT 1", &[])?;
    Ok(rows.first().map(|r| (r[0].int(), r[1].int(), r[2].text())))
}

fn node_revisions(tx: &mut dyn Tx) -> Result<HashMap<String, (String, i64)>, DbError> {
    let rows = tx.query("SELECT node, hash, revision FROM node_rulesets", &[])?;
    Ok(rows.into_iter().map(|r| (r[0].text(), (r[1].text(), r[2].int()))).collect())
}

impl ControlPlane {
    /// Opens the store at `url` and builds the snapshot of its head revision.
    pub fn open(url: &str, catalog: Catalog) -> Result<Arc<ControlPlane>, ApiError> {
        let db = Db::open(url)?;
        let cp = Arc::new(ControlPlane {
            db,
            catalog,
            snap: Mutex::new(Arc::new(Snapshot {
                revision: 0,
                created_ms: 0,
                doc: empty_doc(),
                nodes: BTreeMap::new(),
                fleet: None,
            })),
            changed: Condvar::new(),
            metrics: metrics::Metrics::default(),
            in_sync: Mutex::new(None),
            started: Instant::now(),
        });
        cp.refresh()?;
        cp.adopt_identities()?;
        let weak = Arc::downgrade(&cp);
        cp.db.listen(move |_payload| {
            if let Some(cp) = weak.upgrade() {
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
        if s.revision >= cur.revision {
            self.metrics.set_revision(s.revision, s.nodes.len());
            *cur = Arc::new(s);
            self.changed.notify_all();
        }
    }

    /// Reloads the head revision from the store when it is newer than the snapshot (another
    /// replica wrote it). Returns the head revision.
    pub fn refresh(&self) -> Result<i64, ApiError> {
        let known = self.snapshot().revision;
        // Only the head's number unless it is newer: replicas call this on every read.
        let loaded = self.db.read(|tx| {
            let newest = tx.query("SELECT coalesce(max(revision), 0) FROM revisions", &[])?;
            let newest = newest.first().map(|r| r[0].int()).unwrap_or(0);
            if newest <= known {
                return Ok(Err(newest));
            }
            Ok(Ok((head(tx)?, node_revisions(tx)?)))
        })?;
        let (h, revs) = match loaded {
            Ok(l) => l,
            Err(newest) => return Ok(newest),
        };
        let Some((rev, created_ms, text)) = h else { return Ok(0) };
        let doc: Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
        let (fleet, mut nodes) = compile_doc(&doc, &self.catalog, rev, &revs)?;
        // The store is authoritative for when each node last changed.
        for (name, d) in nodes.iter_mut() {
            if let Some((_, r)) = revs.get(name) {
                d.revision = *r;
            }
        }
        self.publish(Snapshot { revision: rev, created_ms, doc, nodes, fleet });
        Ok(rev)
    }

    /// Applies `edit` to the fleet as one validated, atomic write by `actor`. `target` is
    /// the JSON pointer of the object the write is about (for the audit's before/after).
    pub fn write(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        edit: impl FnOnce(&mut Value) -> Result<(), ApiError>,
        extra: impl FnOnce(&mut dyn Tx, i64) -> Result<(), DbError>,
    ) -> Result<Written, ApiError> {
        let mut rejected: Option<ApiError> = None;
        let cur = self.snapshot();
        let result = self.db.write(|tx| {
            let (rev, doc, since) = match head(tx)? {
                Some((rev, _, _)) if rev == cur.revision => {
                    let since = cur.nodes.iter().map(|(n, d)| (n.clone(), (d.hash.clone(), d.revision))).collect();
                    (rev, cur.doc.clone(), since)
                }
                Some((rev, _, text)) => {
                    (rev, serde_json::from_str(&text).map_err(|e| DbError(e.to_string()))?, node_revisions(tx)?)
                }
                None => (0, empty_doc(), HashMap::new()),
            };
            let new_rev = rev + 1;
            let mut next = doc.clone();
            let outcome = edit(&mut next).and_then(|()| {
                let fleet = validate(&next, &self.catalog)?;
                persist_ports(&mut next, &fleet);
                compile_fleet(fleet, new_rev, &since, Some(&next))
            });
            let (fleet, nodes) = match outcome {
                Ok(n) => n,
                Err(e) => {
                    rejected = Some(e);
                    return Err(DbError("rejected".into()));
                }
            };
            let now = util::now_ms();
            let text = serde_json::to_string(&next).map_err(|e| DbError(e.to_string()))?;
            tx.exec(
                "INSERT INTO revisions (revision, fleet, created_at, created_ms) VALUES (?, ?, ?, ?)",
                &[V::I(new_rev), V::S(text), V::S(util::rfc3339(now)), V::I(now)],
            )?;
            let mut changed = 0;
            for (name, d) in &nodes {
                if d.revision == new_rev {
                    changed += 1;
                    tx.exec("DELETE FROM node_rulesets WHERE node = ?", &[V::S(name.clone())])?;
                    tx.exec(
                        "INSERT INTO node_rulesets (node, hash, revision) VALUES (?, ?, ?)",
                        &[V::S(name.clone()), V::S(d.hash.clone()), V::I(new_rev)],
                    )?;
                }
            }
            for gone in since.keys().filter(|n| !nodes.contains_key(*n)) {
                changed += 1;
                tx.exec("DELETE FROM node_rulesets WHERE node = ?", &[V::S(gone.clone())])?;
            }
            tokens::follow_write(
                tx,
                tokens::Kind::Node,
                since.keys().map(String::as_str),
                nodes.keys().map(String::as_str),
                now,
            )?;
            tokens::follow_write(tx, tokens::Kind::Project, project_names(&doc), project_names(&next), now)?;
            let before = doc.pointer(target).cloned().unwrap_or(Value::Null);
            let after = next.pointer(target).cloned().unwrap_or(Value::Null);
            audit(tx, Some(new_rev), now, actor, action, target, &before, &after)?;
            extra(tx, new_rev)?;
            self.db.notify(tx, &new_rev.to_string())?;
            Ok((Snapshot { revision: new_rev, created_ms: now, doc: next, nodes, fleet }, changed, after))
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
            (Ok((snap, changed, after)), None) => {
                self.metrics.write(true);
                let revision = snap.revision;
                self.publish(snap);
                Ok(Written { revision, nodes_changed: changed, after })
            }
        }
    }

    /// `write` without extra statements: the common case.
    pub fn edit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        edit: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        self.write(actor, action, target, edit, |_, _| Ok(()))
    }

    /// Replaces the whole fleet document (`fleet_file` reads one from text).
    pub fn replace(&self, actor: &Actor, action: &str, doc: Value) -> Result<Written, ApiError> {
        let w = self.edit(actor, action, "", |d| {
            *d = doc;
            Ok(())
        })?;
        Ok(Written { after: Value::Null, ..w })
    }

    /// Waits until node `node`'s desired revision is above `after` (or `timeout` passes).
    /// None when the node is not in the fleet.
    pub fn wait_node(&self, node: &str, after: i64, timeout: Duration) -> Option<Desired> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.snap.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics.watchers(1);
        let out = loop {
            match guard.nodes.get(node) {
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

    /// Gives every project and node of the current fleet an identity (a store from before
    /// identities existed) and binds older tokens to them.
    fn adopt_identities(&self) -> Result<(), ApiError> {
        let snap = self.snapshot();
        let now = util::now_ms();
        self.db.write(|tx| {
            tokens::adopt(tx, tokens::Kind::Project, project_names(&snap.doc), now)?;
            tokens::adopt(tx, tokens::Kind::Node, snap.nodes.keys().map(String::as_str), now)
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
        if let Some(d) = snap.nodes.get(node) {
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
        let rows = self.db.read(|tx| tx.query("SELECT created_ms FROM revisions WHERE revision = ?", &[V::I(rev)]))?;
        Ok(rows.first().map(|r| r[0].int()))
    }

    /// The rollout view: every node's desired and applied state.
    pub fn status(&self, visible: impl Fn(&Desired) -> bool) -> Result<Vec<NodeStatus>, ApiError> {
        let snap = self.snapshot();
        let rows = self
            .db
            .read(|tx| tx.query("SELECT node, revision, hash, applied_at, applied_ms, error FROM node_status", &[]))?;
        let reported: HashMap<String, &Vec<V>> = rows.iter().map(|r| (r[0].text(), r)).collect();
        let revs: std::collections::BTreeSet<i64> = snap.nodes.values().map(|d| d.revision).collect();
        let mut created = HashMap::new();
        for r in revs {
            if let Some(ms) = self.revision_created_ms(r)? {
                created.insert(r, ms);
            }
        }
        let now = util::now_ms();
        Ok(snap
            .nodes
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

/// The names of the projects of a fleet document.
fn project_names(doc: &Value) -> impl Iterator<Item = &str> {
    doc.get("projects").and_then(Value::as_object).into_iter().flat_map(|m| m.keys().map(String::as_str))
}

/// Writes every allocated port of every service into its `ports:` pins, so later writes
/// can never move it.
fn persist_ports(doc: &mut Value, fleet: &fleetwall_model::Fleet) {
    for (p, s) in fleet.services() {
        if s.ports.is_empty() {
            continue;
        }
        let Some(svc) = doc.pointer_mut(&format!("/projects/{}/services/{}", ptr(&p.name), ptr(&s.name))) else {
            continue;
        };
        let Some(o) = svc.as_object_mut() else { continue };
        let pins = o.entry("ports").or_insert_with(|| json!({}));
        if let Some(pins) = pins.as_object_mut() {
            for (key, port) in &s.ports {
                pins.entry(key.pin_name()).or_insert_with(|| json!(port));
            }
        }
    }
}

/// Escapes a JSON-pointer segment.
pub fn ptr(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

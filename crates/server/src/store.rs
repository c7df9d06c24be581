//! The fleet's history in the store: each revision keeps what changed (a [`Delta`]),
//! with a whole document (a snapshot) now and then, and old revisions are compacted away.
//!
//! Table `fleet_log`: one row per revision with `delta` (JSON) or `snapshot` (the whole
//! document, JSON), its size in `bytes`, and two running figures copied forward from the
//! previous row: the bytes of the deltas since the last snapshot and that snapshot's size.
//! A write stores a snapshot instead of a delta when the deltas since the last one
//! outweigh it or number [`SNAPSHOT_EVERY`], so a write stores about what it changed and
//! reading any revision replays a bounded number of deltas. [`compact`] drops revisions
//! outside the retention, first turning the oldest one kept into a snapshot.

use crate::db::{DbError, Tx, V};
use fleetwall_model::doc::{FleetDoc, PlatformDoc, ProjectDoc, ServiceDoc, VpcDoc};
use fleetwall_model::ops::{Reach, Touched};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most deltas between two snapshots.
pub const SNAPSHOT_EVERY: i64 = 1000;

/// How long and how much history is kept (both limits apply; the head is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Revisions kept behind the head, the head included.
    pub revisions: i64,
    /// Age beyond which a revision goes (ms).
    pub max_age_ms: i64,
}

impl Default for Retention {
    /// 1,000 revisions, 30 days.
    fn default() -> Self {
        Retention { revisions: 1000, max_age_ms: 30 * 24 * 3600 * 1000 }
    }
}

/// What one write changed in the document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The new `platform:`, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformDoc>,
    /// The projects changed (null: removed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projects: BTreeMap<String, Option<ProjectPatch>>,
}

/// A change of one project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// Its base port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_port: Option<i64>,
    /// All its VPCs.
    #[serde(default)]
    pub vpcs: BTreeMap<String, VpcDoc>,
    /// Whether `services` are all of its services (else only the changed ones).
    #[serde(default)]
    pub whole: bool,
    /// Services set (or removed: null).
    #[serde(default)]
    pub services: BTreeMap<String, Option<Arc<ServiceDoc>>>,
}

impl Delta {
    /// The change a write that touched `touched` made, read off the document after it.
    pub fn of(next: &FleetDoc, touched: &Touched, platform: bool) -> Delta {
        let mut d = Delta { platform: if platform { next.platform.clone() } else { None }, ..Delta::default() };
        for (p, reach) in &touched.projects {
            let patch = next.projects.get(p).map(|pd| {
                let (whole, services) = match reach {
                    Reach::Whole => (true, pd.services.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()),
                    Reach::Services(set) => {
                        (false, set.iter().map(|s| (s.clone(), pd.services.get(s).cloned())).collect())
                    }
                };
                ProjectPatch { base_port: pd.base_port, vpcs: pd.vpcs.clone(), whole, services }
            });
            d.projects.insert(p.clone(), patch);
        }
        d
    }

    /// Replays the change on `doc`.
    pub fn apply(&self, doc: &mut FleetDoc) {
        if let Some(p) = &self.platform {
            doc.platform = Some(p.clone());
        }
        for (name, patch) in &self.projects {
            let Some(patch) = patch else {
                doc.projects.remove(name);
                continue;
            };
            let pd = Arc::make_mut(doc.projects.entry(name.clone()).or_insert_with(|| Arc::new(ProjectDoc::default())));
            pd.base_port = patch.base_port;
            pd.vpcs.clone_from(&patch.vpcs);
            if patch.whole {
                pd.services.clear();
            }
            for (s, sd) in &patch.services {
                match sd {
                    Some(sd) => {
                        pd.services.insert(s.clone(), sd.clone());
                    }
                    None => {
                        pd.services.remove(s);
                    }
                }
            }
        }
    }

    /// What replaying it touches (a replica applies another's writes incrementally).
    pub fn touched(&self) -> Touched {
        let mut t = Touched { all: self.platform.is_some(), ..Touched::default() };
        for (p, patch) in &self.projects {
            let reach = match patch {
                Some(pp) if !pp.whole => Reach::Services(pp.services.keys().cloned().collect()),
                _ => Reach::Whole,
            };
            t.projects.insert(p.clone(), reach);
        }
        t
    }
}

/// One revision's record.
pub enum Record<'a> {
    /// What changed.
    Delta(&'a Delta),
    /// The whole document.
    Snapshot(&'a FleetDoc),
}

/// Reads a stored document: this version's, or one stored before the typed document (the
/// JSON of the fleet file, read through the fleet file's decoder).
pub fn parse_doc(text: &str) -> Result<FleetDoc, DbError> {
    if let Ok(doc) = serde_json::from_str::<FleetDoc>(text) {
        return Ok(doc);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DbError(format!("stored fleet: {e}")))?;
    let mut paths = fleetwall_model::doc::PathTable::default();
    let node = fleetwall_model::doc::json_to_node(&value, "", &mut paths);
    let mut diags = fleetwall_model::Diagnostics::default();
    let raw = fleetwall_model::raw::decode(&node, &mut diags);
    Ok(FleetDoc::from_raw(&raw))
}

/// Appends revision `rev`: `delta`, or the whole `doc` when a snapshot is due (or `delta`
/// is None: the write replaced everything). Returns the bytes stored.
pub fn append(tx: &mut dyn Tx, rev: i64, now: i64, delta: Option<&Delta>, doc: &FleetDoc) -> Result<usize, DbError> {
    let prev = tx.query(
        "SELECT since_snapshot, snapshot_bytes, revision - coalesce((SELECT max(revision) FROM fleet_log WHERE snapshot IS NOT NULL), 0) FROM fleet_log WHERE revision = ?",
        &[V::I(rev - 1)],
    )?;
    let (since, snap_bytes, count) = prev.first().map(|r| (r[0].int(), r[1].int(), r[2].int())).unwrap_or((0, 0, 0));
    let delta_text = match delta {
        Some(d) => Some(serde_json::to_string(d).map_err(|e| DbError(e.to_string()))?),
        None => None,
    };
    let snapshot_due = match &delta_text {
        None => true,
        Some(t) => since + t.len() as i64 > snap_bytes.max(64 << 10) || count >= SNAPSHOT_EVERY,
    };
    let (delta_col, snap_col, bytes, since, snap_bytes) = if snapshot_due {
        let text = serde_json::to_string(doc).map_err(|e| DbError(e.to_string()))?;
        let n = text.len() as i64;
        (V::Null, V::S(text), n, 0, n)
    } else {
        let text = delta_text.unwrap_or_default();
        let n = text.len() as i64;
        (V::S(text), V::Null, n, since + n, snap_bytes)
    };
    tx.exec(
        "INSERT INTO fleet_log (revision, created_at, created_ms, delta, snapshot, bytes, since_snapshot, snapshot_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            V::I(rev),
            V::S(crate::util::rfc3339(now)),
            V::I(now),
            delta_col,
            snap_col,
            V::I(bytes),
            V::I(since),
            V::I(snap_bytes),
        ],
    )?;
    Ok(bytes as usize)
}

/// The head revision and when it was written; None for an empty store.
pub fn head(tx: &mut dyn Tx) -> Result<Option<(i64, i64)>, DbError> {
    let rows = tx.query("SELECT revision, created_ms FROM fleet_log ORDER BY revision DESC LIMIT 1", &[])?;
    Ok(rows.first().map(|r| (r[0].int(), r[1].int())))
}

/// The deltas after `after` up to and including `upto`, in order (None where a revision
/// is a snapshot).
pub fn deltas(tx: &mut dyn Tx, after: i64, upto: i64) -> Result<Vec<(i64, i64, Option<Delta>)>, DbError> {
    let rows = tx.query(
        "SELECT revision, created_ms, delta FROM fleet_log WHERE revision > ? AND revision <= ? ORDER BY revision",
        &[V::I(after), V::I(upto)],
    )?;
    rows.into_iter()
        .map(|r| {
            let delta = match r[2].opt() {
                Some(t) => Some(serde_json::from_str(&t).map_err(|e| DbError(format!("stored delta: {e}")))?),
                None => None,
            };
            Ok((r[0].int(), r[1].int(), delta))
        })
        .collect()
}

/// The document at revision `rev` (the nearest snapshot at or before it, and the deltas
/// after that); None when the revision is not kept.
pub fn doc_at(tx: &mut dyn Tx, rev: i64) -> Result<Option<FleetDoc>, DbError> {
    let snap = tx.query(
        "SELECT revision, snapshot FROM fleet_log WHERE revision = (SELECT max(revision) FROM fleet_log WHERE snapshot IS NOT NULL AND revision <= ?)",
        &[V::I(rev)],
    )?;
    let Some(row) = snap.first() else { return Ok(None) };
    let exists = tx.query("SELECT count(*) FROM fleet_log WHERE revision = ?", &[V::I(rev)])?;
    if exists.first().map(|r| r[0].int()) != Some(1) {
        return Ok(None);
    }
    let mut doc = parse_doc(&row[1].text())?;
    for (_, _, d) in deltas(tx, row[0].int(), rev)? {
        if let Some(d) = d {
            d.apply(&mut doc);
        }
    }
    Ok(Some(doc))
}

/// The oldest revision kept.
pub fn oldest(tx: &mut dyn Tx) -> Result<Option<i64>, DbError> {
    let rows = tx.query("SELECT min(revision) FROM fleet_log", &[])?;
    Ok(rows.first().and_then(|r| r[0].opt()).and_then(|t| t.parse().ok()))
}

/// Drops the revisions outside `keep` (never the head): the oldest one kept becomes a
/// snapshot first, so every kept revision stays readable. Returns how many went.
pub fn compact(tx: &mut dyn Tx, keep: Retention, now: i64) -> Result<usize, DbError> {
    let Some((head, _)) = head(tx)? else { return Ok(0) };
    let by_count = head - keep.revisions.max(1) + 1;
    let young =
        tx.query("SELECT min(revision) FROM fleet_log WHERE created_ms >= ?", &[V::I(now - keep.max_age_ms)])?;
    let by_age = young.first().and_then(|r| r[0].opt()).and_then(|t| t.parse::<i64>().ok()).unwrap_or(head);
    let first_kept = by_count.max(by_age).min(head);
    let Some(oldest) = oldest(tx)? else { return Ok(0) };
    if first_kept <= oldest {
        return Ok(0);
    }
    let has_snapshot =
        tx.query("SELECT count(*) FROM fleet_log WHERE revision = ? AND snapshot IS NOT NULL", &[V::I(first_kept)])?;
    if has_snapshot.first().map(|r| r[0].int()) != Some(1) {
        let doc = doc_at(tx, first_kept)?.ok_or_else(|| DbError(format!("revision {first_kept} cannot be read")))?;
        let text = serde_json::to_string(&doc).map_err(|e| DbError(e.to_string()))?;
        tx.exec("UPDATE fleet_log SET snapshot = ?, delta = NULL WHERE revision = ?", &[V::S(text), V::I(first_kept)])?;
    }
    let gone = tx.exec("DELETE FROM fleet_log WHERE revision < ?", &[V::I(first_kept)])?;
    Ok(gone as usize)
}

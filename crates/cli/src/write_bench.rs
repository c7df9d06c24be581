//! `fleetwall bench --control-plane`: what one write costs the control plane as the fleet
//! grows. For each size, a synthetic fleet is stored in a scratch SQLite store, then
//! one-service `ip_filter` changes are written (each a different service) and timed at the
//! control plane (validation, compilation, proof, storage, commit); the store's growth per
//! write, the server's memory and the startup time from the store are reported too.

use crate::commands::Outcome;
use crate::CheckFormat;
use anyhow::Result;
use fleetwall_model::edit::Edit;
use fleetwall_model::ops::Op;
use fleetwall_server::{Actor, ControlPlane};
use serde::Serialize;
use std::time::Instant;

/// One fleet size's figures.
#[derive(Serialize)]
struct Row {
    nodes: usize,
    writes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    store_bytes_per_write: f64,
    history_bytes_per_write: f64,
    startup_ms: f64,
    rss_mb: f64,
}

/// The store's size with its write-ahead log folded in (a checkpoint first), so the
/// figure is the data kept, not WAL pages waiting to be recycled.
fn store_size(db: &std::path::Path) -> Result<u64> {
    let c = rusqlite::Connection::open(db)?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let pages: u64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: u64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: u64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages - free) * size)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn one(nodes: usize, writes: usize) -> Result<Row> {
    let dir = std::env::temp_dir().join(format!("fw-bench-cp-{nodes}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("fleet.db");
    let url = db.display().to_string();
    let catalog = fleetwall_model::Catalog::builtin();
    let admin = Actor::Admin("bench".into());
    let spec = fleetwall_synth::Spec::fleet(nodes, 20);
    let doc = fleetwall_server::fleet_file(&fleetwall_synth::generate(&spec), &catalog)
        .map_err(|d| anyhow::anyhow!("synthetic fleet refused: {} errors", d.errors()))?;
    let cp = ControlPlane::open(&url, catalog.clone())?;
    cp.replace(&admin, "fleet.replace", doc)?;
    drop(cp);
    let t = Instant::now();
    let cp = ControlPlane::open(&url, catalog)?;
    let startup_ms = t.elapsed().as_secs_f64() * 1e3;
    let services: Vec<(String, String)> = cp
        .snapshot()
        .doc()
        .projects
        .iter()
        .flat_map(|(p, pd)| pd.services.keys().map(move |s| (p.clone(), s.clone())))
        .collect();
    eprintln!(
        "fleetwall bench: {nodes} nodes loaded from the store in {:.1} s; timing {writes} writes…",
        startup_ms / 1e3
    );
    let before = store_size(&db)?;
    let mut lat = Vec::with_capacity(writes);
    let mut history = 0usize;
    for i in 0..writes {
        let (p, s) = &services[(i * 7919) % services.len()];
        let op = Op::EditUserConfig(
            p.clone(),
            s.clone(),
            vec![Edit::Set("ip_filter".into(), format!("192.0.2.{}/32, 198.51.100.0/24", i % 250))],
        );
        let target = format!("/projects/{p}/services/{s}/user_config");
        let t = Instant::now();
        let w = cp.edit(&admin, "service.update", &target, op)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        history += cp.db.read(|tx| {
            let r =
                tx.query("SELECT bytes FROM fleet_log WHERE revision = ?", &[fleetwall_server::db::V::I(w.revision)])?;
            Ok(r.first().map(|r| r[0].int()).unwrap_or(0) as usize)
        })?;
    }
    let after = store_size(&db)?;
    let rss = crate::bench::status_mb("VmRSS:");
    drop(cp);
    let _ = std::fs::remove_dir_all(&dir);
    lat.sort_by(f64::total_cmp);
    Ok(Row {
        nodes,
        writes,
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: *lat.last().unwrap_or(&0.0),
        store_bytes_per_write: after.saturating_sub(before) as f64 / writes as f64,
        history_bytes_per_write: history as f64 / writes as f64,
        startup_ms,
        rss_mb: rss,
    })
}

/// Runs the write benchmark at each fleet size in `sizes`.
pub fn run(sizes: &[usize], writes: usize, format: CheckFormat) -> Result<Outcome> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("fleetwall bench: generating and storing {n} nodes…");
        rows.push(one(n, writes.max(1))?);
    }
    if matches!(format, CheckFormat::Json) {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "{:>8}  {:>6}  {:>8}  {:>8}  {:>8}  {:>12}  {:>12}  {:>10}  {:>8}",
        "nodes", "writes", "p50 ms", "p99 ms", "max ms", "store B/wr", "history B/wr", "startup s", "RSS MB"
    );
    for r in &rows {
        println!(
            "{:>8}  {:>6}  {:>8.2}  {:>8.2}  {:>8.2}  {:>12.0}  {:>12.0}  {:>10.2}  {:>8.0}",
            r.nodes,
            r.writes,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.store_bytes_per_write,
            r.history_bytes_per_write,
            r.startup_ms / 1e3,
            r.rss_mb
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        if rows.len() > 1 {
            println!(
                "p99 at {} nodes is {:.2}x the p99 at {} nodes (same run)",
                last.nodes,
                last.p99_ms / first.p99_ms,
                first.nodes
            );
        }
    }
    Ok(Outcome::Ok)
}

//! The fleet's history in the store: a write stores what it changed, every kept revision
//! reads back as it was, compaction honours the retention, a restart rebuilds the same
//! state, and a store from before the typed document keeps its revisions.

use fleetwall_model::edit::Edit;
use fleetwall_model::ops::Op;
use fleetwall_server::store::Retention;
use fleetwall_server::{Actor, ControlPlane};
use std::path::PathBuf;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("fw-history-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Dir(dir)
}

fn catalog() -> fleetwall_model::Catalog {
    fleetwall_model::Catalog::builtin()
}

fn log_rows(db: &std::path::Path) -> Vec<(i64, bool, i64)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT revision, snapshot IS NOT NULL, bytes FROM fleet_log ORDER BY revision").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn writes_store_deltas_and_every_kept_revision_reads_back() {
    let dir = scratch("deltas");
    let db = dir.0.join("fleet.db");
    let url = db.display().to_string();
    let admin = Actor::Admin("t".into());
    let text = fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(200, 50));
    let doc = fleetwall_server::fleet_file(&text, &catalog()).unwrap();
    let cp = ControlPlane::open(&url, catalog()).unwrap();
    cp.replace(&admin, "fleet.replace", doc).unwrap();
    let mut docs = vec![(1, cp.snapshot().doc().clone())];
    for i in 0..30 {
        let op = Op::EditUserConfig(
            "project-00001".into(),
            "svc-003".into(),
            vec![Edit::Set("ip_filter".into(), format!("192.0.2.{i}/32, 198.51.100.0/24"))],
        );
        let w = cp.edit(&admin, "service.update", "/projects/project-00001/services/svc-003/user_config", op).unwrap();
        assert_eq!(w.nodes_changed, 5, "only the service's five nodes change");
        docs.push((w.revision, cp.snapshot().doc().clone()));
    }
    let rows = log_rows(&db);
    assert_eq!(rows.len(), 31);
    assert!(rows[0].1, "the replaced fleet is a snapshot");
    let full = rows[0].2;
    for (rev, snapshot, bytes) in &rows[1..] {
        assert!(!snapshot, "revision {rev} is a delta");
        assert!(*bytes * 10 < full, "revision {rev} stored {bytes} bytes against a {full}-byte fleet");
    }
    for (rev, doc) in &docs {
        assert_eq!(&cp.doc_at_revision(*rev).unwrap(), doc, "revision {rev}");
    }
    // Compaction keeps the last ten, and they still read back.
    cp.set_retention(Retention { revisions: 10, max_age_ms: i64::MAX / 2 });
    assert_eq!(cp.compact().unwrap(), 21);
    let e = cp.doc_at_revision(5).unwrap_err();
    assert_eq!(e.status, 404);
    assert!(e.message.contains("no longer kept") && e.message.contains("22"), "{}", e.message);
    for (rev, doc) in docs.iter().filter(|(r, _)| *r >= 22) {
        assert_eq!(&cp.doc_at_revision(*rev).unwrap(), doc, "revision {rev} after compaction");
    }
    assert!(log_rows(&db)[0].1, "the oldest kept revision became a snapshot");
    // A restart rebuilds the same state from the store.
    let before: Vec<(String, String, i64)> =
        cp.snapshot().nodes().iter().map(|(n, d)| (n.clone(), d.hash.clone(), d.revision)).collect();
    drop(cp);
    let again = ControlPlane::open(&url, catalog()).unwrap();
    assert_eq!(again.snapshot().revision, 31);
    assert_eq!(again.snapshot().doc(), &docs.last().unwrap().1);
    let after: Vec<(String, String, i64)> =
        again.snapshot().nodes().iter().map(|(n, d)| (n.clone(), d.hash.clone(), d.revision)).collect();
    assert_eq!(before, after);
}

#[test]
fn a_store_from_before_the_typed_document_keeps_its_revisions() {
    let dir = scratch("migrate");
    let db = dir.0.join("fleet.db");
    {
        // Schema 4, as the previous release left it, with two revisions of the old JSON form
        // (a single address as a string, as the YAML had it).
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version BIGINT NOT NULL)").unwrap();
        for (i, m) in fleetwall_server::db::MIGRATIONS[..4].iter().enumerate() {
            c.execute_batch(m).unwrap();
            c.execute("INSERT INTO schema_version (version) VALUES (?1)", [i as i64 + 1]).unwrap();
        }
        let old = |addr: &str| {
            serde_json::json!({"version": 1, "platform": {"management_gateways": ["198.51.100.10"]},
                "projects": {"acme": {"services": {"pg": {"type": "pg", "cloud": "aws-eu-west-1",
                "nodes": {"pg-1": {"public": addr}}}}}}})
            .to_string()
        };
        for (rev, addr) in [(1, "203.0.113.5"), (2, "203.0.113.6")] {
            c.execute(
                "INSERT INTO revisions (revision, fleet, created_at, created_ms) VALUES (?1, ?2, '2026-01-01T00:00:00Z', 1)",
                rusqlite::params![rev, old(addr)],
            )
            .unwrap();
        }
    }
    let cp = ControlPlane::open(&db.display().to_string(), catalog()).unwrap();
    assert_eq!(cp.snapshot().revision, 2);
    assert_eq!(cp.snapshot().doc().service("acme", "pg").unwrap().nodes["pg-1"].public, vec!["203.0.113.6"]);
    assert!(cp.snapshot().nodes().contains_key("pg-1"));
    let first = cp.doc_at_revision(1).unwrap();
    assert_eq!(first.service("acme", "pg").unwrap().nodes["pg-1"].public, vec!["203.0.113.5"]);
    // And it takes writes on top.
    let op = Op::EditUserConfig("acme".into(), "pg".into(), vec![Edit::Set("ip_filter".into(), "10.0.0.0/8".into())]);
    assert_eq!(cp.edit(&Actor::Admin("t".into()), "service.update", "/projects/acme", op).unwrap().revision, 3);
}

#[test]
fn another_replica_catches_up_from_the_deltas_to_the_writers_state() {
    let dir = scratch("replica");
    let url = dir.0.join("fleet.db").display().to_string();
    let admin = Actor::Admin("t".into());
    let text = fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(100, 5));
    let writer = ControlPlane::open(&url, catalog()).unwrap();
    writer.replace(&admin, "fleet.replace", fleetwall_server::fleet_file(&text, &catalog()).unwrap()).unwrap();
    let reader = ControlPlane::open(&url, catalog()).unwrap();
    assert_eq!(reader.snapshot().revision, 1);
    for (i, (p, s)) in [("project-00000", "svc-001"), ("project-00001", "svc-002"), ("project-00000", "svc-001")]
        .into_iter()
        .enumerate()
    {
        let op = Op::EditUserConfig(p.into(), s.into(), vec![Edit::Set("ip_filter".into(), format!("192.0.2.{i}/32"))]);
        writer.edit(&admin, "service.update", "", op).unwrap();
    }
    let op = Op::RemoveNode("project-00001".into(), "svc-000".into(), "p1-s0-n4".into());
    writer.edit(&admin, "node.remove", "", op).unwrap();
    assert_eq!(reader.refresh().unwrap(), 5);
    let view = |cp: &ControlPlane| -> Vec<(String, String, i64)> {
        cp.snapshot().nodes().iter().map(|(n, d)| (n.clone(), d.hash.clone(), d.revision)).collect()
    };
    assert_eq!(view(&reader), view(&writer));
    assert_eq!(reader.snapshot().doc(), writer.snapshot().doc());
    assert!(!reader.snapshot().nodes().contains_key("p1-s0-n4"));
}

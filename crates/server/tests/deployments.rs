//! Deployments (zones, subsystems, clusters) on the control plane: a whole-document
//! replace validates and compiles them (every server gets its ruleset), a write to a
//! service elsewhere keeps them as they are, and a refused deployment changes nothing.

use fleetwall_model::doc::FleetDoc;
use fleetwall_model::edit::Edit;
use fleetwall_model::ops::Op;
use fleetwall_model::Catalog;
use fleetwall_server::state::{self, State};
use std::sync::Arc;

fn fleet_doc() -> (FleetDoc, Catalog) {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let apic = std::fs::read_to_string(format!("{root}/examples/api-connect.yaml")).unwrap();
    let pg = std::fs::read_to_string(format!("{root}/examples/public-pg.yaml")).unwrap();
    // The managed services of public-pg next to the deployment of api-connect, with the
    // tests of both (those of the deployment probe its servers).
    let deployments = &apic[apic.find("deployments:").unwrap()..apic.find("tests:").unwrap()];
    let apic_tests = &apic[apic.find("tests:").unwrap() + "tests:\n".len()..];
    let pg = pg.replace("tests:", &format!("{deployments}tests:")) + apic_tests;
    let catalog = Catalog::builtin();
    let doc = fleetwall_server::fleet_file(&pg, &catalog).unwrap_or_else(|d| panic!("{:#?}", d.items));
    (doc, catalog)
}

fn hashes(s: &State) -> Vec<(String, String)> {
    s.nodes.iter().map(|(k, d)| (k.clone(), d.hash.clone())).collect()
}

#[test]
fn a_whole_fleet_with_a_deployment_compiles_its_servers_and_service_writes_keep_them() {
    let (doc, catalog) = fleet_doc();
    assert_eq!(doc.deployments.len(), 1);
    let full = state::full(Arc::new(doc.clone()), &catalog, 1, &|_| None, true).unwrap_or_else(|e| panic!("{e}"));
    let fleet = full.fleet.clone().unwrap();
    for (_, _, s) in fleet.servers() {
        let d = full.nodes.get(&s.name).unwrap_or_else(|| panic!("server {} has a desired ruleset", s.name));
        let want = fleetwall_compile::compile_node(&fleet, &s.name).unwrap();
        assert_eq!(d.hash, want.canonical_hash(), "{}", s.name);
    }
    assert!(full.nodes.contains_key("pg-main-1") && full.nodes.contains_key("gw-a-1"));
    // A write to the pg service: incremental, the deployment untouched, as a full recompile says.
    let svc = doc.projects.keys().next().unwrap().clone();
    let s = doc.projects[&svc].services.keys().next().unwrap().clone();
    let op = Op::EditUserConfig(svc, s, vec![Edit::Set("ip_filter".into(), "198.51.100.0/24,203.0.113.0/24".into())]);
    let mut next = doc.clone();
    let touched = op.apply(&mut next).unwrap();
    assert!(!touched.all);
    assert!(doc.tests.iter().any(|t| t.to.as_deref() == Some("gw-a-1")), "a test probes a server");
    let next = Arc::new(next);
    let (inc, changes) = state::apply(&full, next.clone(), &touched, &catalog, 2).unwrap_or_else(|e| panic!("{e}"));
    let again =
        state::full(next, &catalog, 2, &|n| full.nodes.get(n).map(|d| (d.hash.clone(), d.revision)), true).unwrap();
    assert_eq!(hashes(&inc), hashes(&again));
    assert_eq!(inc.fleet.as_ref().unwrap().deployments, again.fleet.as_ref().unwrap().deployments);
    assert!(changes.changed.iter().all(|n| n.starts_with("pg-")), "{:?}", changes.changed);
    assert_eq!(inc.nodes["gw-a-1"].revision, 1, "the server's ruleset did not change");
}

#[test]
fn a_replace_with_a_broken_deployment_is_refused_with_its_path() {
    let (mut doc, catalog) = fleet_doc();
    let d = doc.deployments.get_mut("apic-prod").unwrap();
    d.clusters.get_mut("gw-b").unwrap().servers.insert("gw-b-2".into(), vec!["10.3.0.99".into()]);
    let e = state::full(Arc::new(doc), &catalog, 1, &|_| None, true).err().expect("refused");
    assert_eq!(e.status, 400);
    assert!(e.message.contains("outside its zone gateway"), "{}", e.message);
    assert!(e.message.contains("deployments.apic-prod.clusters.gw-b.servers.gw-b-2"), "{}", e.message);
}

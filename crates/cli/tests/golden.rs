//! Golden files: every example, every node, every renderer, plus the port table and the
//! plan summary. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review the
//! diff before committing.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

fn compare(case: &str, produced: BTreeMap<String, String>) {
    let dir = root().join("testdata/golden").join(case);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &produced {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for (name, text) in &produced {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(expected) if &expected == text => {}
            Ok(expected) => {
                let line = expected.lines().zip(text.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
                problems.push(format!("{case}/{name}: differs (first at line {line})"));
            }
            Err(_) => problems.push(format!("{case}/{name}: no golden file")),
        }
    }
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !produced.contains_key(&name) {
            problems.push(format!("{case}/{name}: golden file no longer produced"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nrun `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff",
        problems.join("\n")
    );
}

fn text_of(fleet: &str) -> String {
    std::fs::read_to_string(fleet).unwrap()
}

fn produce(fleet: &Path) -> BTreeMap<String, String> {
    let fleet = fleet.to_str().unwrap();
    let scratch = Scratch::new("golden");
    ok(&["plan", fleet, "--out", scratch.0.to_str().unwrap()]);
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&scratch.0).unwrap() {
        let p = e.unwrap().path();
        files.insert(p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap());
    }
    files.insert("plan.txt".into(), ok(&["plan", fleet]));
    if text_of(fleet).contains("compliance: ece") {
        files.insert("danted.conf".into(), ok(&["plan", fleet, "--format", "dante"]));
    }
    files.insert("ports.txt".into(), ok(&["ports", fleet]));
    files.insert("ports.json".into(), ok(&["ports", fleet, "--format", "json"]));
    // The cloud layer: as a router's nftables (the lab's SDN), and for the example's cloud.
    files.insert("sdn.nft".into(), ok(&["plan", fleet, "--format", "sdn"]));
    let text = std::fs::read_to_string(fleet).unwrap();
    for (format, prefix) in [("aws", "aws-"), ("gcp", "google-"), ("azure", "azure-")] {
        if text.contains(&format!("cloud: {prefix}")) {
            files.insert(format!("cloud-{format}.json"), ok(&["plan", fleet, "--format", format]));
        }
    }
    files
}

#[test]
fn every_example_matches_its_golden_files() {
    for (name, path) in examples() {
        let produced = produce(&path);
        assert!(produced.keys().filter(|k| k.ends_with(".nft")).count() >= 2, "{name}: every node renders");
        compare(&name, produced);
    }
}

#[test]
fn output_is_byte_stable() {
    for (_, path) in examples() {
        assert_eq!(produce(&path), produce(&path));
    }
}

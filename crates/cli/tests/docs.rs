//! `fleetwall docs`: the Markdown tables and Graphviz diagrams of every example, and the
//! NetworkPolicy of the deployment examples, against golden files
//! (`testdata/golden-docs/<example>/`; `UPDATE_GOLDEN=1` rewrites them), and every
//! diagram drawn as SVG by Graphviz.

mod common;
use common::*;
use std::collections::BTreeMap;

fn produce(example: &std::path::Path) -> BTreeMap<String, String> {
    let s = Scratch::new("docs");
    let out = s.0.join("out");
    ok(&["docs", example.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        if let Some(stem) = name.strip_suffix(".svg") {
            // Graphviz's layout is its own (and its version's): the SVG is checked, not kept.
            assert!(text.contains("<svg") && text.contains("</svg>"), "{name}");
            assert!(files.contains_key(&format!("{stem}.dot")) || out.join(format!("{stem}.dot")).exists());
            continue;
        }
        files.insert(name, text);
    }
    let k8s = fleetwall(&["plan", example.to_str().unwrap(), "--format", "k8s"]);
    if k8s.status.success() {
        files.insert("k8s.yaml".into(), String::from_utf8(k8s.stdout).unwrap());
    }
    files
}

#[test]
fn every_example_documents_itself_as_its_golden_files_say() {
    let mut problems = Vec::new();
    for (name, path) in examples() {
        let produced = produce(&path);
        assert!(produced.keys().any(|k| k.ends_with(".md")) && produced.keys().any(|k| k.ends_with(".dot")), "{name}");
        let dir = root().join("testdata/golden-docs").join(&name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (f, text) in &produced {
                std::fs::write(dir.join(f), text).unwrap();
            }
            continue;
        }
        for (f, text) in &produced {
            match std::fs::read_to_string(dir.join(f)) {
                Ok(expected) if &expected == text => {}
                Ok(_) => problems.push(format!("{name}/{f}: differs")),
                Err(_) => problems.push(format!("{name}/{f}: no golden file")),
            }
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let f = e.unwrap().file_name().to_string_lossy().into_owned();
            if !produced.contains_key(&f) {
                problems.push(format!("{name}/{f}: golden file no longer produced"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nrun `UPDATE_GOLDEN=1 cargo test --test docs` and review the diff",
        problems.join("\n")
    );
}

#[test]
fn the_deployment_tables_have_the_seeds_shape_and_the_options_resolved() {
    let s = Scratch::new("docs");
    let src = std::fs::read_to_string(root().join("examples/api-connect.yaml")).unwrap();
    let f = s.0.join("apic.yaml");
    std::fs::write(
        &f,
        src.replace("gateway_push_port: 3000", "gateway_push_port: 443, management_extra_ports: [8443]"),
    )
    .unwrap();
    let out = s.0.join("out");
    ok(&["docs", f.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let md = std::fs::read_to_string(out.join("apic-prod.md")).unwrap();
    assert!(md.contains("|  | Usage description | Default port number |"), "{md}");
    assert!(md.contains("| 7 | Push configuration – Management servers communicate bi-directionally with Gateway servers. | 443 TCP from Management Service servers to and from Gateway Server servers |"), "{md}");
    assert!(md.contains("| Subsystem | Ports and description |"));
    assert!(md.contains("| Management Service | Management Service uses the ports in Table 2 plus: (management_extra_ports): 8443 TCP from"), "{md}");
    let numbered = (1..=16).filter(|n| md.contains(&format!("\n| {n} | "))).count();
    assert_eq!(numbered, 16, "every flow of Table 1");
    let dot = std::fs::read_to_string(out.join("apic-prod.dot")).unwrap();
    assert!(
        dot.contains("\"cluster:gw-a\" -> \"cluster:gw-a\" [label=\"members reach each other\", dir=both]"),
        "{dot}"
    );
    assert!(!dot.contains("\"cluster:gw-a\" -> \"cluster:gw-b\""), "clusters of one subsystem never talk");
    assert!(dot.contains("7: 443 TCP"), "the option's port is drawn");
}

//! The operator's habits (issue 16): warnings scoped to one node, completions, man page,
//! schema, packaging, platform CLI options.

mod common;
use common::*;

/// A synthetic fleet of four services (20 nodes) with warnings in every service.
fn synthetic(s: &Scratch) -> std::path::PathBuf {
    let f = s.0.join("synth.yaml");
    std::fs::write(&f, ok(&["synth", "--nodes", "20", "--ip-filter", "100"])).unwrap();
    f
}

/// The line numbers of every `--> FILE:LINE:COL` in `text`.
fn located_lines(text: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .filter_map(|l| l.rsplit(':').nth(1)?.parse().ok())
        .collect()
}

/// The 1-based line range of service `svc` in the synthetic fleet `src`.
fn service_lines(src: &str, svc: &str, next: &str) -> std::ops::Range<usize> {
    let line = |key: &str| src.lines().position(|l| l.trim() == format!("{key}:")).unwrap() + 1;
    line(svc)..line(next)
}

#[test]
fn plan_node_prints_only_that_nodes_warnings_and_counts_the_others() {
    let s = Scratch::new("opx");
    let f = synthetic(&s);
    let src = std::fs::read_to_string(&f).unwrap();
    let own = service_lines(&src, "svc-000", "svc-001");
    let out = fleetwall(&["plan", f.to_str().unwrap(), "--node", "p0-s0-n0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("table inet fleetwall"));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines = located_lines(&err);
    assert!(!lines.is_empty(), "the node's own warnings are shown: {err}");
    assert!(lines.iter().all(|l| own.contains(l)), "only svc-000's lines {own:?}: {lines:?}");
    let counted = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("... and ")?
                .strip_suffix(" warnings about other nodes than p0-s0-n0 (`--all-warnings` lists them)")
        })
        .unwrap_or_else(|| panic!("no count of the other warnings: {err}"));
    let counted: usize = counted.replace(',', "").parse().unwrap();

    // The count is exactly the warnings outside the node's service.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["check", f.to_str().unwrap(), "--format", "json"])).unwrap();
    let outside = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !own.contains(&(d["line"].as_u64().unwrap() as usize)))
        .count();
    assert_eq!(counted, outside);

    // --all-warnings shows the others again; -q shows none and no count.
    let all = fleetwall(&["plan", f.to_str().unwrap(), "--node", "p0-s0-n0", "--all-warnings"]);
    let all = String::from_utf8(all.stderr).unwrap();
    assert!(located_lines(&all).iter().any(|l| !own.contains(l)));
    assert!(!all.contains("about other nodes"));
    let quiet = fleetwall(&["plan", f.to_str().unwrap(), "--node", "p0-s0-n0", "-q"]);
    let quiet = String::from_utf8(quiet.stderr).unwrap();
    assert!(!quiet.contains("warning[") && !quiet.contains("about other nodes"), "{quiet}");
}

#[test]
fn check_node_scopes_the_warnings_and_refuses_an_unknown_node() {
    let s = Scratch::new("opx");
    let f = synthetic(&s);
    let src = std::fs::read_to_string(&f).unwrap();
    let own = service_lines(&src, "svc-001", "svc-002");
    let out = ok(&["check", f.to_str().unwrap(), "--node", "p0-s1-n3"]);
    assert!(located_lines(&out).iter().all(|l| own.contains(l)), "{out}");
    assert!(out.contains("warnings about other nodes than p0-s1-n3"), "{out}");
    assert!(out.contains(": ok: "), "the summary still covers the whole fleet: {out}");

    let out = fleetwall(&["check", f.to_str().unwrap(), "--node", "p0-s1-n33"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node `p0-s1-n33` in the fleet (did you mean `p0-s1-n3`?)")
    );
}

//! Hostile input: no mutilation of a valid fleet file makes the loader panic, and every
//! rejected file says where.

use fleetwall_model::{load, Catalog};

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    v.push(include_str!("../../../testdata/mission-example.yaml").to_string());
    v
}

fn check(src: &str, catalog: &Catalog) {
    let (fleet, diags) = load(src, catalog);
    if fleet.is_none() {
        assert!(diags.has_errors());
        assert!(diags.items.iter().all(|d| d.span.is_some_and(|s| s.start.line >= 1 && s.start.col >= 1)), "{src}");
    }
}

#[test]
fn truncations_deletions_and_garbage_never_panic() {
    let catalog = Catalog::builtin();
    let garbage = ["", "~", "[", "{a: [", "-1", "99999999999999999999", "\"\\u0000\"", "&a *a", "!!binary x", "[[[]]]"];
    let mut cases = 0;
    for src in examples() {
        for cut in (0..src.len()).step_by(3).filter(|c| src.is_char_boundary(*c)) {
            check(&src[..cut], &catalog);
            cases += 1;
        }
        let lines: Vec<&str> = src.lines().collect();
        for i in 0..lines.len() {
            let mut without = lines.clone();
            without.remove(i);
            check(&without.join("\n"), &catalog);
            for g in garbage {
                let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                if let Some((k, _)) = lines[i].split_once(": ") {
                    changed[i] = format!("{k}: {g}");
                } else {
                    changed[i] = format!("{}{g}", lines[i]);
                }
                check(&changed.join("\n"), &catalog);
                cases += 1;
            }
        }
    }
    assert!(cases > 2000, "{cases}");
}

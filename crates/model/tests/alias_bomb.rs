//! The "billion laughs" regression: a few hundred bytes of nested YAML aliases (seven
//! levels of ten) once expanded to 10^7 nodes and 1.85 GB, aborting `fleetwall check`
//! and the server's `PUT /v1/fleet`.
//!
//! This file is its own test binary so that its counting allocator sees only this test:
//! the peak of live heap bytes during `load` is deterministic, unlike a timing.

use fleetwall_model::{load, Catalog, DiagCode};

mod heap;

#[test]
fn billion_laughs_is_refused_with_less_than_64_mib() {
    let mut src = "version: 1\na: &a [x,x,x,x,x,x,x,x,x,x]\n".to_string();
    for (prev, name) in ["a", "b", "c", "d", "e", "f"].iter().zip(["b", "c", "d", "e", "f", "g"]) {
        src.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(",")));
    }
    let catalog = Catalog::builtin();
    let ((fleet, diags), peak) = heap::peak_during(|| load(&src, &catalog));
    assert!(fleet.is_none());
    assert_eq!(diags.items.len(), 1, "{:#?}", diags.items);
    let d = &diags.items[0];
    assert_eq!(d.code, DiagCode::AliasExpansion);
    assert_eq!(d.span.map(|s| (s.start.line, s.start.col)), Some((5, 29)));
    assert!(peak < 64 << 20, "load peaked at {peak} bytes");
}

//! The lab's matrix for people: per node, rows of `address port/proto`, one column per
//! source, a letter per cell; mismatches listed in full below.

use crate::{ProbeRow, Report};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Renders the report as text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let mut by_node: BTreeMap<&str, Vec<&ProbeRow>> = BTreeMap::new();
    for p in &r.probes {
        by_node.entry(&p.node).or_default().push(p);
    }
    let _ = writeln!(
        o,
        "cells: A accepted as expected, r rejected as expected (by the contract and the evaluator), X mismatch, blank not probed (other family)"
    );
    for (node, rows) in &by_node {
        let mut sources: Vec<(&str, String)> = Vec::new();
        for p in rows {
            let key = (p.source.as_str(), p.src.to_string());
            if !sources.contains(&key) {
                sources.push(key);
            }
        }
        let _ = writeln!(o, "\n{node}");
        for (i, (label, addr)) in sources.iter().enumerate() {
            let _ = writeln!(o, "  S{:<3} {addr:<22} {label}", i + 1);
        }
        let mut lines: BTreeMap<(std::net::IpAddr, &str, u16), Vec<char>> = BTreeMap::new();
        for p in rows {
            let col = sources.iter().position(|(l, a)| *l == p.source && *a == p.src.to_string()).expect("listed");
            let cells = lines.entry((p.dst, p.protocol.as_str(), p.port)).or_insert_with(|| vec![' '; sources.len()]);
            cells[col] = match (p.ok, p.expect_accept) {
                (false, _) => 'X',
                (true, true) => 'A',
                (true, false) => 'r',
            };
        }
        let header: String =
            (1..=sources.len()).map(|i| format!("{:<3}", format!("S{i}"))).collect::<Vec<_>>().join("");
        let _ = writeln!(o, "  {:<36} {header}", "destination");
        for ((dst, proto, port), cells) in lines {
            let row: String = cells.iter().map(|c| format!("{c:<3}")).collect();
            let _ = writeln!(o, "  {:<36} {}", format!("{dst} {port}/{proto}"), row.trim_end());
        }
    }
    let bad: Vec<&ProbeRow> = r.mismatches().collect();
    if !bad.is_empty() {
        let _ = writeln!(o, "\nmismatches:");
        for p in &bad {
            let _ = writeln!(
                o,
                "  {} ({}) -> {} {}:{}/{}: expected {}, observed {:?} after {:.0} ms",
                p.source,
                p.src,
                p.node,
                p.dst,
                p.port,
                p.protocol.as_str(),
                if p.expect_accept { "accept" } else { "reject" },
                p.observed,
                p.ms
            );
            if !p.evaluator_agrees {
                let _ = writeln!(o, "      the evaluator says: {}", p.evaluator);
            }
        }
    }
    let retried = r.probes.iter().filter(|p| p.attempts > 1).count();
    if retried > 0 {
        let _ = writeln!(o, "\n{retried} probe(s) got no answer at first and were sent again");
    }
    let slowest = r.probes.iter().filter(|p| !p.expect_accept).map(|p| p.ms).fold(0.0, f64::max);
    let _ = writeln!(
        o,
        "\n{} probes ({} backend), {} mismatches; {} namespaces; setup {:.0} ms, probing {:.0} ms; slowest reject {:.1} ms",
        r.probes.len(),
        match r.backend {
            crate::Backend::Nft => "nft",
            crate::Backend::Iptables => "iptables",
        },
        bad.len(),
        r.namespaces,
        r.setup_ms,
        r.probe_ms,
        slowest
    );
    o
}

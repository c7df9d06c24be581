//! `fleetwall bench`: check + compile + render nft on synthetic fleets (and, as root, the
//! dataplane row of `dataplane_bench`).
//!
//! Each scenario runs in a child process of this binary, so its peak memory (VmHWM) is
//! its own; within it every phase is timed over several runs and the median reported.
//! The figures are for comparison within one run on one machine, not absolutes.

use crate::commands::Outcome;
use crate::CheckFormat;
use anyhow::{bail, Context, Result};
use fleetwall_model::Catalog;
use fleetwall_synth::{generate, Spec};
use serde::{Deserialize, Serialize};
use std::time::Instant;

struct Scenario {
    name: &'static str,
    spec: Spec,
    quick: bool,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "1k-nodes", spec: Spec::fleet(1_000, 100), quick: true },
        Scenario { name: "10k-nodes", spec: Spec::fleet(10_000, 100), quick: false },
        Scenario {
            name: "8000-entry-ip-filter",
            // A public service (no VPC): every entry is a client network of the node's
            // public addresses, and none covers or touches another, so all 8,000 reach
            // the kernel as set elements.
            spec: Spec {
                services: 1,
                nodes_per_service: 3,
                ip_filter: 8_000,
                services_per_project: 1,
                seed: 7,
                vpcs: false,
                disjoint: true,
            },
            quick: true,
        },
    ]
}

/// The measurements of one scenario.
#[derive(Serialize, Deserialize, Debug)]
pub struct Report {
    scenario: String,
    services: usize,
    nodes: usize,
    ip_filter_entries: usize,
    yaml_bytes: usize,
    nft_bytes: usize,
    /// Client rules (`client-…`) in all nodes' nft output.
    client_rules: usize,
    /// With disjoint entries: how many of them every node's nft holds.
    entries_in_nft: Option<usize>,
    check_ms: f64,
    compile_ms: f64,
    render_ms: f64,
    total_ms: f64,
    peak_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// A memory figure of this process from /proc/self/status (`VmHWM:`, `VmRSS:`), in MB.
pub fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one scenario in this process (the child side).
fn measure(s: &Scenario, runs: usize) -> Result<Report> {
    let catalog = Catalog::builtin();
    let yaml = generate(&s.spec);
    let (mut check, mut compile, mut render, mut total) = (vec![], vec![], vec![], vec![]);
    let mut nodes = 0;
    let mut nft: Vec<String> = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let (fleet, diags) = fleetwall_model::load(&yaml, &catalog);
        let Some(fleet) = fleet else {
            bail!("synthetic fleet is invalid: {:?}", diags.items.first());
        };
        let t1 = Instant::now();
        let rulesets = fleetwall_compile::compile(&fleet);
        let t2 = Instant::now();
        nft = rulesets.iter().map(fleetwall_render::nft::render).collect();
        let t3 = Instant::now();
        nodes = rulesets.len();
        check.push((t1 - t0).as_secs_f64() * 1e3);
        compile.push((t2 - t1).as_secs_f64() * 1e3);
        render.push((t3 - t2).as_secs_f64() * 1e3);
        total.push((t3 - t0).as_secs_f64() * 1e3);
    }
    let (client_rules, entries_in_nft) = output_check(s, &nft)?;
    Ok(Report {
        scenario: s.name.into(),
        services: s.spec.services,
        nodes,
        ip_filter_entries: s.spec.ip_filter,
        yaml_bytes: yaml.len(),
        nft_bytes: nft.iter().map(String::len).sum(),
        client_rules,
        entries_in_nft,
        check_ms: median(check),
        compile_ms: median(compile),
        render_ms: median(render),
        total_ms: median(total),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Refuses a scenario whose output is trivial (it would time nothing): some node must
/// admit clients, and with disjoint entries every node's nft must hold every entry.
/// Returns (client rules, entries found in every node's nft).
fn output_check(s: &Scenario, nft: &[String]) -> Result<(usize, Option<usize>)> {
    // A rule's comment is `"<rule hash> <id>: <reason>"`.
    let is_client = |l: &str| {
        l.split_once("comment \"").is_some_and(|(_, c)| c.split(' ').nth(1).is_some_and(|id| id.starts_with("client-")))
    };
    let client_rules = nft.iter().map(|t| t.lines().filter(|l| is_client(l)).count()).sum();
    if client_rules == 0 {
        bail!("scenario {}: no node's nft has a client rule: it measures nothing", s.name);
    }
    if !s.spec.disjoint {
        return Ok((client_rules, None));
    }
    let entries: Vec<String> = (0..s.spec.ip_filter).map(fleetwall_synth::disjoint_cidr).collect();
    for text in nft {
        let words: std::collections::HashSet<&str> =
            text.split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}').collect();
        let missing: Vec<&String> = entries.iter().filter(|e| !words.contains(e.as_str())).collect();
        if let Some(first) = missing.first() {
            bail!(
                "scenario {}: a node's nft lacks {} of the {} ip_filter entries (first: {first})",
                s.name,
                missing.len(),
                entries.len()
            );
        }
    }
    Ok((client_rules, Some(entries.len())))
}

pub fn run(runs: usize, quick: bool, format: CheckFormat) -> Result<Outcome> {
    // Child side: FLEETWALL_BENCH_SCENARIO names the one scenario to measure.
    if let Ok(name) = std::env::var("FLEETWALL_BENCH_SCENARIO") {
        let s = scenarios().into_iter().find(|s| s.name == name).context("unknown scenario")?;
        println!("{}", serde_json::to_string(&measure(&s, runs)?)?);
        return Ok(Outcome::Ok);
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark with `cargo run --release -- bench`");
    }
    let exe = std::env::current_exe().context("cannot find the fleetwall binary")?;
    let mut reports = Vec::new();
    for s in scenarios().into_iter().filter(|s| !quick || s.quick) {
        eprintln!(
            "bench: {} ({} services × {} nodes, {} ip_filter entries each), {runs} runs ...",
            s.name, s.spec.services, s.spec.nodes_per_service, s.spec.ip_filter
        );
        let out = std::process::Command::new(&exe)
            .args(["bench", "--runs", &runs.to_string()])
            .env("FLEETWALL_BENCH_SCENARIO", s.name)
            .output()
            .context("cannot run the benchmark child")?;
        if !out.status.success() {
            bail!("scenario {} failed: {}", s.name, String::from_utf8_lossy(&out.stderr));
        }
        let r: Report = serde_json::from_slice(&out.stdout).context("bad child report")?;
        reports.push(r);
    }
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        CheckFormat::Text => {
            let rows: Vec<Vec<String>> = reports
                .iter()
                .map(|r| {
                    vec![
                        r.scenario.clone(),
                        r.nodes.to_string(),
                        r.services.to_string(),
                        format!("{:.1}", r.yaml_bytes as f64 / 1e6),
                        format!("{:.0}", r.check_ms),
                        format!("{:.0}", r.compile_ms),
                        format!("{:.0}", r.render_ms),
                        format!("{:.0}", r.total_ms),
                        format!("{:.2}", r.nft_bytes as f64 / 1e6),
                        r.client_rules.to_string(),
                        r.entries_in_nft.map(|n| n.to_string()).unwrap_or_default(),
                        format!("{:.0}", r.peak_rss_mb),
                    ]
                })
                .collect();
            print!(
                "{}",
                crate::table::render(
                    &[
                        "SCENARIO",
                        "NODES",
                        "SERVICES",
                        "YAML_MB",
                        "CHECK_MS",
                        "COMPILE_MS",
                        "RENDER_MS",
                        "TOTAL_MS",
                        "NFT_MB",
                        "CLIENT_RULES",
                        "ENTRIES_IN_NFT",
                        "PEAK_RSS_MB"
                    ],
                    &rows
                )
            );
            // The dataplane row programs a kernel: as root only, in a namespace of its own.
            if unsafe { libc::geteuid() } == 0 {
                crate::dataplane_bench::cleanup_on_signal();
                print!("\n{}", crate::dataplane_bench::render(&crate::dataplane_bench::rows(runs.max(5))?));
            } else {
                eprintln!("bench: not root, so no dataplane row (full replace vs set delta); see bench --dataplane");
            }
        }
    }
    Ok(Outcome::Ok)
}

//! `fleetwall bench` dataplane row: one entry added to (and removed from) an 8,000-entry
//! ip_filter, applied by the drivers the agent uses, as a full replace and as a set
//! delta, both in one run, in a network namespace the benchmark creates and removes.
//!
//! Wall time is what the agent waits for (the `nft` process included). The kernel's own
//! share is the time nft spends in `sendmsg` of its netlink batch (the kernel validates
//! and commits the transaction inside that call), read with `strace -T` when strace is
//! installed; so is the time nft spends in `recvmsg` reading our table back first (for
//! an element change of an interval set, nft 1.0 dumps the whole set into its cache).
//! The rest is nft's userspace.

use crate::commands::Outcome;
use crate::CheckFormat;
use anyhow::{anyhow, bail, Context, Result};
use fleetwall_apply::{delta, run, Dataplane, How, Iptables, Mode, Nft};
use fleetwall_ir::NodeRuleset;
use serde::Serialize;
use std::time::Instant;

/// The ip_filter size measured: the model's limit. The change is between 7,999 entries
/// and 8,000.
pub const ENTRIES: usize = 8_000;

/// One backend's figures (medians, milliseconds).
#[derive(Serialize, Debug)]
pub struct Row {
    backend: &'static str,
    entries: usize,
    full_ms: f64,
    delta_ms: f64,
    /// Time inside the kernel's netlink handling of nft's batch (None: not measurable).
    full_kernel_ms: Option<f64>,
    delta_kernel_ms: Option<f64>,
    /// Time nft spent receiving our table (the set's elements) before a delta batch.
    delta_readback_ms: Option<f64>,
    runs: usize,
}

/// A namespace of the benchmark's own (lab naming, so a killed run's is swept by the
/// next lab), removed on drop.
struct Scratch(String);

impl Scratch {
    fn new() -> Result<Scratch> {
        let name = format!("{}bench", fleetwall_lab::netns::run_prefix());
        fleetwall_lab::netns::create(std::slice::from_ref(&name)).map_err(|e| anyhow!("{e}"))?;
        Ok(Scratch(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = run(None, "ip", &["netns", "del", &self.0], None);
    }
}

/// The ruleset of node pg-1 of a public PostgreSQL service with `entries` separate /32s
/// in its ip_filter (every other address: nothing aggregates), plus `extra`.
pub fn ruleset(entries: usize, extra: Option<&str>) -> Result<NodeRuleset> {
    let mut list: Vec<String> =
        (0..entries).map(|i| format!("\"11.{}.{}.{}\"", (2 * i) >> 16, ((2 * i) >> 8) & 255, (2 * i) & 255)).collect();
    list.extend(extra.map(|e| format!("\"{e}\"")));
    let yaml = format!(
        "version: 1\nplatform:\n  management_gateways: [198.51.100.10, \"2001:db8:ffff::10\"]\nprojects:\n  p:\n    \
         base_port: 12000\n    services:\n      pg:\n        type: pg\n        cloud: aws-eu-west-1\n        \
         nodes:\n          pg-1: {{ public: [203.0.113.5, \"2001:db8:5::5\"] }}\n        user_config:\n          \
         ip_filter: [{}]\n",
        list.join(", ")
    );
    let (fleet, diags) = fleetwall_model::load(&yaml, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.ok_or_else(|| anyhow!("the benchmark fleet is invalid: {:?}", diags.items.first()))?;
    fleetwall_compile::compile(&fleet).into_iter().find(|rs| rs.node == "pg-1").context("node pg-1")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed(f: impl FnOnce() -> Result<Mode>) -> Result<(f64, Mode)> {
    let t = Instant::now();
    let mode = f()?;
    Ok((t.elapsed().as_secs_f64() * 1e3, mode))
}

/// Milliseconds nft spent in `sendmsg` (its batch) and in `recvmsg` (reading the
/// kernel's answers and dumps) loading `text`, from `strace -T`.
fn kernel_ms(ns: &str, text: &str) -> Result<(f64, f64)> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "strace", "-qq", "-T", "-e", "trace=sendmsg,recvmsg", "-o", "/dev/stderr"])
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .context("strace")?;
    let trace = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("strace nft -f: {}", trace.trim());
    }
    let total = |call: &str| -> Vec<f64> {
        trace
            .lines()
            .filter(|l| l.starts_with(call))
            .filter_map(|l| l.rsplit_once('<').and_then(|(_, t)| t.trim_end_matches('>').parse().ok()))
            .collect()
    };
    let sent = total("sendmsg(");
    if sent.is_empty() {
        bail!("no sendmsg in the trace: {}", trace.trim());
    }
    Ok((sent.iter().sum::<f64>() * 1e3, total("recvmsg(").iter().sum::<f64>() * 1e3))
}

fn has_strace() -> bool {
    std::process::Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Measures one driver: `runs` full replaces, then `runs` deltas, alternating between
/// `a` and `b` (one entry apart) so that every load changes the kernel.
fn measure(
    backend: &'static str,
    driver: &dyn Dataplane,
    ns: &str,
    a: &NodeRuleset,
    b: &NodeRuleset,
    runs: usize,
) -> Result<Row> {
    let mut full = Vec::new();
    for i in 0..runs {
        let rs = if i % 2 == 0 { b } else { a };
        let (ms, mode) = timed(|| driver.load(rs, How::Full).map_err(|e| anyhow!("{e}")))?;
        if mode != Mode::Full {
            bail!("{backend}: a full load reported {mode:?}");
        }
        full.push(ms);
    }
    driver.load(a, How::Full).map_err(|e| anyhow!("{e}"))?;
    let mut deltas = Vec::new();
    for i in 0..runs {
        let (rs, want) = if i % 2 == 0 {
            (b, Mode::Delta { added: 1, removed: 0 })
        } else {
            (a, Mode::Delta { added: 0, removed: 1 })
        };
        let (ms, mode) = timed(|| driver.load(rs, How::Auto).map_err(|e| anyhow!("{e}")))?;
        if mode != want {
            bail!("{backend}: a one-entry change was loaded as {mode:?}, not {want:?}");
        }
        deltas.push(ms);
    }
    // The delta must leave what a full load leaves.
    let last = if runs % 2 == 1 { b } else { a };
    let seen = driver.observe().map_err(|e| anyhow!("{e}"))?.context("our table is missing")?;
    if seen.fingerprint != driver.expected(last).map_err(|e| anyhow!("{e}"))? {
        bail!("{backend}: after the deltas the kernel differs from a full load");
    }
    let (mut full_kernel_ms, mut delta_kernel_ms, mut delta_readback_ms) = (None, None, None);
    if backend == "nft" && has_strace() {
        let (ta, tb) = (fleetwall_render::nft::render(a), fleetwall_render::nft::render(b));
        let delta::Plan::Delta(add) = delta::plan(Some(a), b) else { bail!("no delta between the rulesets") };
        let delta::Plan::Delta(del) = delta::plan(Some(b), a) else { bail!("no delta between the rulesets") };
        let (add, del) = (delta::nft_batch("fleetwall", &add), delta::nft_batch("fleetwall", &del));
        let (mut f, mut d, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            f.push(kernel_ms(ns, if i % 2 == 0 { &tb } else { &ta })?.0);
        }
        run(Some(ns), "nft", &["-f", "-"], Some(&ta)).map_err(|e| anyhow!("{e}"))?;
        for i in 0..runs {
            let (sent, received) = kernel_ms(ns, if i % 2 == 0 { &add } else { &del })?;
            d.push(sent);
            r.push(received);
        }
        (full_kernel_ms, delta_kernel_ms, delta_readback_ms) = (Some(median(f)), Some(median(d)), Some(median(r)));
    }
    Ok(Row {
        backend,
        entries: b.set("ipf4").map_or(0, |s| s.elements.len()),
        full_ms: median(full),
        delta_ms: median(deltas),
        full_kernel_ms,
        delta_kernel_ms,
        delta_readback_ms,
        runs,
    })
}

/// Both backends' rows (root only: it programs a namespace's kernel).
pub fn rows(runs: usize) -> Result<Vec<Row>> {
    let a = ruleset(ENTRIES - 1, None)?;
    let b = ruleset(ENTRIES - 1, Some("11.200.0.1"))?;
    let mut rows = Vec::new();
    let ns = Scratch::new()?;
    rows.push(measure("nft", &Nft::new(Some(ns.0.clone())), &ns.0, &a, &b, runs)?);
    let ns = Scratch::new()?;
    rows.push(measure("iptables", &Iptables::new(Some(ns.0.clone())), &ns.0, &a, &b, runs)?);
    Ok(rows)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The rows as text: a table, then the sentence of the issue.
pub fn render(rows: &[Row]) -> String {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.backend.to_string(),
                r.entries.to_string(),
                format!("{:.1}", r.full_ms),
                format!("{:.1}", r.delta_ms),
                ms(r.full_kernel_ms),
                ms(r.delta_kernel_ms),
                ms(r.delta_readback_ms),
            ]
        })
        .collect();
    let mut o = crate::table::render(
        &["DATAPLANE", "IP_FILTER", "FULL_MS", "DELTA_MS", "FULL_KERNEL_MS", "DELTA_KERNEL_MS", "DELTA_READBACK_MS"],
        &table,
    );
    for r in rows {
        o += &format!(
            "{}: one-entry ip_filter change applied, {} entries: full replace {:.1} ms, delta {:.1} ms{}\n",
            r.backend,
            r.entries,
            r.full_ms,
            r.delta_ms,
            match (r.full_kernel_ms, r.delta_kernel_ms, r.delta_readback_ms) {
                (Some(f), Some(d), Some(back)) => format!(
                    " (the transaction in the kernel: {f:.2} ms and {d:.2} ms; before the delta, nft spent \
                     {back:.1} ms receiving the set back)"
                ),
                _ => String::new(),
            }
        );
    }
    o
}

/// Removes this process's benchmark namespace on Ctrl-C (call from the main thread, with
/// no child process running).
pub fn cleanup_on_signal() {
    fleetwall_lab::netns::cleanup_on_signal(format!("{}{}x", fleetwall_lab::netns::PREFIX, std::process::id()));
}

/// `fleetwall bench --dataplane`.
pub fn run_cmd(runs: usize, format: CheckFormat) -> Result<Outcome> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the dataplane benchmark programs a network namespace's kernel: run it as root");
    }
    cleanup_on_signal();
    let rows = rows(runs.max(5))?;
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        CheckFormat::Text => print!("{}", render(&rows)),
    }
    Ok(Outcome::Ok)
}

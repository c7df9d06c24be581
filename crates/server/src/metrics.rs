//! Prometheus text exposition for the server.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the propagation histogram.
pub const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Appends the exposition of `name`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    revision: AtomicI64,
    nodes: AtomicI64,
    writes: AtomicU64,
    stored_bytes: AtomicU64,
    rejected: AtomicU64,
    watchers: AtomicI64,
    requests: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    propagation: Mutex<Histogram>,
}

impl Metrics {
    /// The snapshot changed.
    pub fn set_revision(&self, rev: i64, nodes: usize) {
        self.revision.store(rev, Ordering::Relaxed);
        self.nodes.store(nodes as i64, Ordering::Relaxed);
    }
    /// A write was committed (`true`) or rejected.
    pub fn write(&self, ok: bool) {
        if ok { &self.writes } else { &self.rejected }.fetch_add(1, Ordering::Relaxed);
    }
    /// A committed write stored `bytes` of fleet history.
    pub fn stored(&self, bytes: usize) {
        self.stored_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// A long-poll started (+1) or ended (-1).
    pub fn watchers(&self, d: i64) {
        self.watchers.fetch_add(d, Ordering::Relaxed);
    }
    /// A request was answered.
    pub fn request(&self, method: &str, status: u16) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry((method.to_string(), status)).or_default() += 1;
    }
    /// A node reported applying its desired ruleset `ms` after the revision was committed.
    pub fn propagation(&self, ms: i64) {
        self.propagation.lock().unwrap_or_else(|p| p.into_inner()).observe(ms as f64 / 1000.0);
    }

    /// The exposition text.
    pub fn render(&self, in_sync: usize, uptime: f64) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            &mut out,
            "fleetwall_fleet_revision",
            "The fleet revision this server serves.",
            self.revision.load(Ordering::Relaxed).to_string(),
        );
        gauge(&mut out, "fleetwall_nodes", "Nodes in the fleet.", self.nodes.load(Ordering::Relaxed).to_string());
        gauge(
            &mut out,
            "fleetwall_nodes_in_sync",
            "Nodes whose agent reported the desired ruleset.",
            in_sync.to_string(),
        );
        gauge(
            &mut out,
            "fleetwall_watchers",
            "Agent long-polls waiting now.",
            self.watchers.load(Ordering::Relaxed).to_string(),
        );
        gauge(&mut out, "fleetwall_uptime_seconds", "Seconds since the server started.", format!("{uptime:.3}"));
        counter(&mut out, "fleetwall_writes_total", "Fleet writes committed.", self.writes.load(Ordering::Relaxed));
        counter(
            &mut out,
            "fleetwall_fleet_history_bytes_total",
            "Bytes of fleet history (deltas and snapshots) the committed writes stored.",
            self.stored_bytes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "fleetwall_writes_rejected_total",
            "Fleet writes rejected (validation or conflict).",
            self.rejected.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP fleetwall_http_requests_total HTTP requests answered.\n# TYPE fleetwall_http_requests_total counter");
        for ((m, s), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "fleetwall_http_requests_total{{method=\"{m}\",status=\"{s}\"}} {n}");
        }
        self.propagation.lock().unwrap_or_else(|p| p.into_inner()).render(
            &mut out,
            "fleetwall_propagation_seconds",
            "From a fleet revision's commit to a node's agent applying it.",
        );
        out
    }
}

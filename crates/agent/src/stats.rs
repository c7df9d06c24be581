//! The agent's counters and their Prometheus exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Counters for `/metrics`, shared with the metrics server.
#[derive(Default)]
pub struct Stats {
    /// The revision in force.
    pub applied_revision: AtomicI64,
    /// Successful applies.
    pub applies: AtomicU64,
    /// Successful applies that changed set elements only (one delta transaction).
    pub delta_applies: AtomicU64,
    /// Failed applies.
    pub apply_errors: AtomicU64,
    /// Drift repairs.
    pub drift_repairs: AtomicU64,
    /// Applies of the last good ruleset because the server was unreachable.
    pub fail_static: AtomicU64,
    /// Whether the fail-closed baseline is in force.
    pub baseline_active: AtomicBool,
    /// Applies of the fail-closed baseline (drift repairs of it included).
    pub baseline_applies: AtomicU64,
    /// Whether the last request reached the server.
    pub server_up: AtomicBool,
    /// Duration of the last apply, microseconds.
    pub last_apply_us: AtomicU64,
}

impl Stats {
    /// The Prometheus exposition.
    pub fn render(&self, node: &str) -> String {
        let mut o = String::new();
        let l = format!("{{node=\"{node}\"}}");
        let mut g = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{l} {v}");
        };
        g(
            "fleetwall_agent_applied_revision",
            "gauge",
            "The fleet revision in force.",
            self.applied_revision.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_applies_total",
            "counter",
            "Rulesets applied.",
            self.applies.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_delta_applies_total",
            "counter",
            "Rulesets applied as set element deltas (same rules, only set elements changed).",
            self.delta_applies.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_apply_errors_total",
            "counter",
            "Applies that failed.",
            self.apply_errors.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_drift_repairs_total",
            "counter",
            "Times our table was found changed or missing and restored.",
            self.drift_repairs.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_fail_static_total",
            "counter",
            "Last-good applies while the server was unreachable.",
            self.fail_static.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_baseline_active",
            "gauge",
            "1 while the fail-closed baseline is in force (no ruleset from the server, no usable last good one).",
            u8::from(self.baseline_active.load(Ordering::Relaxed)).to_string(),
        );
        g(
            "fleetwall_agent_baseline_applies_total",
            "counter",
            "Applies of the fail-closed baseline.",
            self.baseline_applies.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_server_up",
            "gauge",
            "1 when the last request reached the server.",
            u8::from(self.server_up.load(Ordering::Relaxed)).to_string(),
        );
        g(
            "fleetwall_agent_last_apply_seconds",
            "gauge",
            "How long the last apply took.",
            format!("{:.6}", self.last_apply_us.load(Ordering::Relaxed) as f64 / 1e6),
        );
        o
    }
}

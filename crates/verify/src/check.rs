//! What `fleetwall check` (and every control-plane write) adds after validation: the
//! management proof (contract point 9) on every node and the fleet's own `tests:`.

use crate::{assertions, proof};
use fleetwall_ir::NodeRuleset;
use fleetwall_model::{DiagCode, Diagnostic, Diagnostics, Fleet};

/// Runs the management proof and the assertions, adding their failures to `diags`.
/// Returns (nodes proven, assertions passed, assertions total).
pub fn check_fleet(fleet: &Fleet, rulesets: &[NodeRuleset], diags: &mut Diagnostics) -> (usize, usize, usize) {
    for p in proof::management(fleet, rulesets) {
        diags
            .push(Diagnostic::error(DiagCode::ManagementInvariant, p).hint(
                "this is a fleetwall bug: management access must hold whatever the fleet says; please report it",
            ));
    }
    let outcomes = assertions::run(fleet, rulesets);
    for o in outcomes.iter().filter(|o| !o.passed) {
        let span = fleet.tests[o.test].span;
        diags.push(
            Diagnostic::error(DiagCode::Test, format!("test fails: {} -> {}: {} {}", o.from, o.to, o.expect, o.what))
                .at(span)
                .hint(failure_hint(o)),
        );
    }
    diags.sort();
    // Deployment servers are not platform-managed: the proof does not count them.
    let servers: std::collections::HashSet<&str> = fleet.servers().map(|(_, _, s)| s.name.as_str()).collect();
    let proven = rulesets.iter().filter(|r| !servers.contains(r.node.as_str())).count();
    (proven, outcomes.iter().filter(|o| o.passed).count(), outcomes.len())
}

fn failure_hint(o: &assertions::Outcome) -> String {
    if o.traces.is_empty() {
        let (node, remote) = if o.direction == "egress" { (&o.from, &o.to) } else { (&o.to, &o.from) };
        let family = if remote.contains(':') { "IPv6" } else { "IPv4" };
        return format!(
            "{node} has no {family} address for it ({} {remote})",
            if o.direction == "egress" { "to" } else { "source" }
        );
    }
    let t = o.traces.iter().find(|t| t.trace.accepted() == (o.expect == "deny")).unwrap_or(&o.traces[0]);
    format!("{}:{}/{} {} by {} ({})", t.dst, t.port, t.protocol.as_str(), t.trace.verdict, t.trace.rule, t.trace.reason)
}

//! Egress (contract point 8): standard deployments accept every outbound connection.
//! Deployment kinds that restrict egress (ECE, BYOC workloads) contribute their own
//! egress flows in earlier stages and a final reject instead.

use crate::{Contribution, Flow, ServiceCx, Stage};
use fleetwall_ir::Verdict;
use fleetwall_model::Role;

/// Contributes the accept-all egress of a standard deployment.
pub fn contribute(cx: &ServiceCx<'_>, c: &mut Contribution<'_>) {
    if cx.service.role != Role::Service || cx.project.ece.is_some() {
        return; // the byoc and ece modules restrict egress
    }
    c.flow(Flow::egress("egress-accept", Stage::Reject, "egress is accepted in standard deployments", Verdict::Accept));
}

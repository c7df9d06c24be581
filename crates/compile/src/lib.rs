//! The compiler: validated `Fleet` → Intent (`fleetwall-intent`) → per-node `NodeRuleset`s.
//!
//! `lower` is the pure step from Intent to rulesets: for each node, its service's flows in
//! order, each lowered to at most one rule (a flow whose group has no member of its family,
//! or whose node has no address of its class, yields none). Sets that do not depend on the
//! node (management gateways, a service's ip_filter, its VPC scope, its private-link CIDRs)
//! are built once per group and family and shared by `Arc`, so compiling a service with an
//! 8,000-entry ip_filter costs one aggregation, not one per node.

mod lower;

pub use fleetwall_eval::cidr::intersect;
pub use fleetwall_intent::listeners;
pub use fleetwall_intent::standard::vpc_scope;
pub use fleetwall_intent::{
    build_deployments, node_listeners, port_table, route_addresses, service_listeners, Listener, PortRow, Route,
    AZURE_PLATFORM,
};
pub use lower::{lower, lower_service};

use fleetwall_ir::NodeRuleset;
use fleetwall_model::Fleet;

/// Compiles every node of the fleet, in fleet order.
pub fn compile(fleet: &Fleet) -> Vec<NodeRuleset> {
    lower(&fleetwall_intent::build(fleet))
}

/// Compiles one node by name (building the Intent of its service only), or one server of
/// a deployment (building its deployment's).
pub fn compile_node(fleet: &Fleet, name: &str) -> Option<NodeRuleset> {
    if let Some((deployment, _, _)) = fleet.servers().find(|(_, _, s)| s.name == name) {
        let intent = fleetwall_intent::build_deployments(fleet, |d| d.name == deployment.name);
        return lower(&intent).into_iter().find(|rs| rs.node == name);
    }
    let (project, service, _) = fleet.nodes().find(|(_, _, n)| n.name == name)?;
    let intent = fleetwall_intent::build_services(fleet, |p, s| p.name == project.name && s.name == service.name);
    lower(&intent).into_iter().find(|rs| rs.node == name)
}

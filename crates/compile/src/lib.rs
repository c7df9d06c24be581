//! The compiler: validated `Fleet` → listeners and per-node `NodeRuleset`s.
//!
//! Pure functions over `&Fleet`: no state, no I/O, nothing mutated. Renderers never see
//! the fleet; they only see what this crate produces.

pub mod listeners;
pub mod rules;

pub use listeners::{node_listeners, port_table, route_addresses, Listener, PortRow, Route};
pub use rules::{compile, compile_node, intersect, vpc_scope, AZURE_PLATFORM};

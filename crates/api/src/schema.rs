//! The OpenAPI schemas of the fields whose Rust type does not say what they carry: the
//! fleet document (a JSON value here, described by the fleet file's JSON Schema) and a
//! node's ruleset (generic here, the IR's `NodeRuleset` on the wire). The server's OpenAPI
//! document defines the components these refer to.

use utoipa::openapi::{Ref, RefOr, Schema};

/// The name of the fleet file's schema among the document's components.
pub const FLEET_FILE: &str = "FleetFile";

/// The name of a node ruleset's schema among the document's components.
pub const NODE_RULESET: &str = "NodeRuleset";

/// A reference to the fleet file's schema.
pub fn fleet_file() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(FLEET_FILE))
}

/// A reference to a node ruleset's schema.
pub fn node_ruleset() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(NODE_RULESET))
}

//! The hashes the agent compares: of a ruleset (with the server's) and of listings.
//! Where rulesets go is `fleetwall_apply::Dataplane`.

use fleetwall_ir::NodeRuleset;
use sha2::{Digest, Sha256};

/// SHA-256 hex of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash the server publishes for a ruleset: its canonical hash (of the IR, not of a rendering).
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    rs.canonical_hash()
}

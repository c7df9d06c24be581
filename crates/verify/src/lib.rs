//! Fleet-level checks over compiled rulesets: the fleet's `tests:`, the management
//! proof, lint (`check`) and `diff`. Every verdict comes from the one evaluator,
//! `fleetwall-eval`; this crate never compiles a fleet itself.

pub mod assertions;
pub mod check;
pub mod diff;
pub mod proof;

pub use fleetwall_eval::{
    cidr, evaluate, evaluate_egress, evaluate_in, matches, trace, Conn, Decision, Direction, Packet, Transport,
};

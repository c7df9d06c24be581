//! A dataplane that only remembers what it was given: unit tests and simulated agents.

use crate::delta::{self, Plan};
use crate::{sha256_hex, Dataplane, Error, How, Mode, Observed};
use fleetwall_ir::NodeRuleset;
use std::sync::Mutex;

/// Holds a ruleset instead of programming a kernel; plans loads like the real drivers,
/// so tests see which loads would have been deltas.
#[derive(Default)]
pub struct Memory {
    held: Mutex<Option<NodeRuleset>>,
    loads: Mutex<Vec<(NodeRuleset, Mode)>>,
}

impl Memory {
    /// Forgets what it holds (simulates someone deleting our table).
    pub fn wipe(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Every load so far, in order, with how it was done.
    pub fn loads(&self) -> Vec<(NodeRuleset, Mode)> {
        self.loads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The memory driver's fingerprint of a ruleset: the hash of its nft text.
fn fingerprint(rs: &NodeRuleset) -> String {
    sha256_hex(fleetwall_render::nft::render(rs).as_bytes())
}

impl Dataplane for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, Error> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let plan = if how == How::Full { Plan::Full } else { delta::plan(held.as_ref(), rs) };
        let mode = match plan {
            Plan::Full => Mode::Full,
            Plan::Delta(d) => {
                let (added, removed) = delta::counts(&d);
                Mode::Delta { added, removed }
            }
        };
        *held = Some(rs.clone());
        self.loads.lock().unwrap_or_else(|p| p.into_inner()).push((rs.clone(), mode));
        Ok(mode)
    }

    fn observe(&self) -> Result<Option<Observed>, Error> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        Ok(held.as_ref().map(|rs| Observed {
            fingerprint: fingerprint(rs),
            rules: rs.input.iter().chain(&rs.output).map(|r| r.hash()).collect(),
        }))
    }

    fn expected(&self, rs: &NodeRuleset) -> Result<String, Error> {
        Ok(fingerprint(rs))
    }

    fn revoke(&self, _rs: &NodeRuleset) -> Result<usize, Error> {
        Ok(0)
    }
}

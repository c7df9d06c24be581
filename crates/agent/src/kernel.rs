//! Where rulesets go: the `Kernel` trait, nftables (in the agent's namespace or a given
//! one) and an in-memory kernel for simulated agents.
//!
//! The key decision: the fingerprint an apply returns is of what the agent wrote — its
//! rendering loaded into an empty private namespace and listed there — never a listing
//! of the live table taken afterwards, which could adopt a rule someone slipped in.

use fleetwall_ir::NodeRuleset;
use fleetwall_render::nft::TABLE;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

/// SHA-256 hex of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash the server publishes for a ruleset: its canonical hash (of the IR, not of a rendering).
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    rs.canonical_hash()
}

/// What an apply put into the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The fingerprint our table has while it holds exactly the ruleset applied.
    pub fingerprint: String,
    /// Something secondary (revoking connections) failed.
    pub warning: Option<String>,
}

/// Where rulesets go.
pub trait Kernel: Send + Sync {
    /// Enforces `rs` atomically.
    fn apply(&self, rs: &NodeRuleset) -> Result<Applied, String>;
    /// A fingerprint of what the kernel holds of ours now (None: our table is missing).
    fn fingerprint(&self) -> Result<Option<String>, String>;
}

/// Loads a ruleset into an empty network namespace of its own and lists it back: the
/// listing our table must have, whatever has happened to the real one since.
const SCRATCH_LISTING: &str = "nft -f - && exec nft -s list table inet fleetwall";

/// nftables, in the agent's own network namespace or (for tests) in `netns`.
pub struct NftKernel {
    netns: Option<String>,
    /// The expected fingerprint of the last ruleset written, by the hash of its text:
    /// drift repairs write the same ruleset again.
    expected: Mutex<Option<(String, String)>>,
}

impl NftKernel {
    /// Programs `netns` (None: the namespace the agent runs in).
    pub fn new(netns: Option<String>) -> NftKernel {
        NftKernel { netns, expected: Mutex::new(None) }
    }

    fn list(&self) -> Result<String, String> {
        // -s: without counters or other state, so traffic does not look like drift.
        fleetwall_apply::run(self.netns.as_deref(), "nft", &["-s", "list", "table", "inet", TABLE], None)
            .map_err(|e| e.to_string())
    }

    fn expected(&self, text: &str) -> Result<String, String> {
        let key = sha256_hex(text.as_bytes());
        let mut cache = self.expected.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, fp)) = cache.as_ref().filter(|(k, _)| *k == key) {
            return Ok(fp.clone());
        }
        let listing = fleetwall_apply::run(None, "unshare", &["--net", "sh", "-c", SCRATCH_LISTING], Some(text))
            .map_err(|e| format!("cannot list the ruleset in a scratch namespace: {e}"))?;
        let fp = sha256_hex(listing.as_bytes());
        *cache = Some((key, fp.clone()));
        Ok(fp)
    }
}

impl Kernel for NftKernel {
    fn apply(&self, rs: &NodeRuleset) -> Result<Applied, String> {
        let ns = self.netns.as_deref();
        let text = fleetwall_render::nft::render(rs);
        fleetwall_apply::run(ns, "nft", &["-f", "-"], Some(&text)).map_err(|e| e.to_string())?;
        let mut warnings = Vec::new();
        // Enforcing the ruleset matters more than watching it: without a scratch listing,
        // the table as found now stands in (and a rule slipped in just now would stay).
        let fingerprint = match self.expected(&text) {
            Ok(fp) => fp,
            Err(e) => {
                warnings.push(format!("{e}; drift is judged against the table as found after the apply"));
                sha256_hex(self.list()?.as_bytes())
            }
        };
        if let Err(e) = fleetwall_apply::revoke(ns, rs) {
            warnings.push(format!("applied, but revoking connections failed: {e}"));
        }
        Ok(Applied { fingerprint, warning: (!warnings.is_empty()).then(|| warnings.join("; ")) })
    }

    fn fingerprint(&self) -> Result<Option<String>, String> {
        let tables = fleetwall_apply::run(self.netns.as_deref(), "nft", &["list", "tables", "inet"], None)
            .map_err(|e| e.to_string())?;
        if !tables.lines().any(|l| l.trim() == format!("table inet {TABLE}")) {
            return Ok(None);
        }
        Ok(Some(sha256_hex(self.list()?.as_bytes())))
    }
}

/// A kernel that only remembers what it was given (simulated agents in benchmarks and tests).
#[derive(Default)]
pub struct MemoryKernel {
    held: Mutex<Option<String>>,
}

impl MemoryKernel {
    /// Forgets what it holds (simulates someone deleting our table).
    pub fn wipe(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Kernel for MemoryKernel {
    fn apply(&self, rs: &NodeRuleset) -> Result<Applied, String> {
        let fingerprint = ruleset_hash(rs);
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint.clone());
        Ok(Applied { fingerprint, warning: None })
    }
    fn fingerprint(&self) -> Result<Option<String>, String> {
        Ok(self.held.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

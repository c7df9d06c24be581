//! nftables: our table `inet fleetwall`, replaced whole in one `nft -f` transaction, or
//! changed by set element deltas in one `nft -f` batch.

use crate::delta;
use crate::{run, sha256_hex, Dataplane, Error, How, Mode, Observed};
use fleetwall_ir::NodeRuleset;
use fleetwall_render::nft::TABLE;
use std::sync::Mutex;

/// Loads a ruleset into an empty network namespace of its own and lists it back: the
/// listing our table must have, whatever has happened to the real one since.
const SCRATCH_LISTING: &str = "nft -f - && exec nft -s list table inet fleetwall";

/// nftables, in a network namespace or (with `None`) wherever the process runs.
pub struct Nft {
    netns: Option<String>,
    /// What this driver last loaded in full or by delta: what our table holds unless
    /// someone changed it since (a drift repair loads with [`How::Full`]).
    loaded: Mutex<Option<NodeRuleset>>,
    /// The expected fingerprint of the last ruleset asked about, by the hash of its
    /// text: drift checks ask about the same ruleset again and again.
    expected: Mutex<Option<(String, String)>>,
}

impl Nft {
    /// Programs `netns` (None: the namespace this process runs in).
    pub fn new(netns: Option<String>) -> Nft {
        Nft { netns, loaded: Mutex::new(None), expected: Mutex::new(None) }
    }

    fn ns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn full(&self, rs: &NodeRuleset) -> Result<(), Error> {
        run(self.ns(), "nft", &["-f", "-"], Some(&fleetwall_render::nft::render(rs))).map(drop)
    }
}

impl Dataplane for Nft {
    fn name(&self) -> &'static str {
        "nft"
    }

    fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, Error> {
        // A refused batch is one transaction: nothing of it was applied (our table or a
        // set is gone, an element was changed by hand), and the whole table puts it right.
        let batch =
            |d: &[delta::SetDelta]| run(self.ns(), "nft", &["-f", "-"], Some(&delta::nft_batch(TABLE, d))).map(drop);
        delta::load(&self.loaded, rs, how, batch, || self.full(rs))
    }

    fn observe(&self) -> Result<Option<Observed>, Error> {
        let tables = run(self.ns(), "nft", &["list", "tables", "inet"], None)?;
        if !tables.lines().any(|l| l.trim() == format!("table inet {TABLE}")) {
            return Ok(None);
        }
        // -s: without counters or other state, so traffic does not look like drift.
        let listing = run(self.ns(), "nft", &["-s", "list", "table", "inet", TABLE], None)?;
        Ok(Some(Observed { fingerprint: sha256_hex(listing.as_bytes()), rules: listed_rule_hashes(&listing) }))
    }

    fn expected(&self, rs: &NodeRuleset) -> Result<String, Error> {
        let text = fleetwall_render::nft::render(rs);
        crate::cached_expected(&self.expected, sha256_hex(text.as_bytes()), || {
            let listing = run(None, "unshare", &["--net", "sh", "-c", SCRATCH_LISTING], Some(&text))
                .map_err(|e| Error { message: format!("cannot list the ruleset in a scratch namespace: {e}"), ..e })?;
            Ok(sha256_hex(listing.as_bytes()))
        })
    }

    fn revoke(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        crate::revoke(self.ns(), rs)
    }
}

/// The rule hashes of the rules of `nft list table` output, chain by chain (input, then
/// output), in order; "" for a rule with no hash comment.
pub fn listed_rule_hashes(listing: &str) -> Vec<String> {
    let mut chains: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in listing.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("chain ").and_then(|l| l.strip_suffix(" {")) {
            chains.push((name.to_string(), Vec::new()));
            current = Some(chains.len() - 1);
        } else if line == "}" {
            current = None;
        } else if let Some(i) = current {
            if line.is_empty() || line.starts_with("type ") || line.starts_with("policy ") {
                continue;
            }
            let hash =
                line.split_once("comment \"").and_then(|(_, c)| crate::comment_hash(c)).unwrap_or_default().to_string();
            chains[i].1.push(hash);
        }
    }
    chains.sort_by_key(|(name, _)| match name.as_str() {
        "input" => 0,
        "output" => 1,
        _ => 2,
    });
    chains.into_iter().flat_map(|(_, rules)| rules).collect()
}

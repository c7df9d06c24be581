//! The node agent: long-polls its node's ruleset from the control plane, applies it as
//! one nftables transaction on our table only, keeps the last good ruleset on disk and
//! re-applies it at start when the server cannot be reached (fail-static: the node keeps
//! enforcing what it last knew, never opens up), repairs drift (someone edited or deleted
//! our table) within its resync interval, and reports revision, hash, applied-at and any
//! error back to the server.
//!
//! Drift is judged against what the agent wrote, never against what it found afterwards:
//! the expected fingerprint is the listing of the rendered ruleset loaded into an empty
//! private namespace, so a rule slipped in right after an apply is repaired, not adopted.
//! With nothing to enforce at start (no table, no usable last good ruleset, no server) the
//! agent applies a fail-closed baseline: loopback, established, ICMP errors and management
//! from the gateways it was given or last knew; everything else is refused.

#![warn(missing_docs)]

mod baseline;
pub mod ssh_trust;
mod stats;

pub use baseline::{baseline, Management, DEFAULT_MANAGEMENT_PORTS};
use fleetwall_api::client::{error_body, Api, CallError};
use fleetwall_api::http::Client;
use fleetwall_api::{Report, RulesetResponse};
pub use fleetwall_apply::sha256_hex;
pub use fleetwall_apply::{Dataplane, How, Iptables, Memory, Mode, Nft};
use fleetwall_ir::NodeRuleset;
use ipnet::IpNet;

/// The hash the server publishes for a ruleset: its canonical hash (of the IR, not of a rendering).
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    rs.canonical_hash()
}
use serde::{Deserialize, Serialize};
pub use stats::Stats;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to run.
pub struct Config {
    /// The control plane's base URL.
    pub server: String,
    /// This node's name in the fleet.
    pub node: String,
    /// The node's agent token.
    pub token: String,
    /// A CA certificate (PEM) for an https server.
    pub ca: Option<PathBuf>,
    /// Where the last good ruleset is kept (None: nowhere; simulated agents).
    pub state_dir: Option<PathBuf>,
    /// How often the kernel is checked for drift.
    pub resync: Duration,
    /// The longest long-poll.
    pub poll: Duration,
    /// Management gateways for the fail-closed baseline (empty: the ones last learnt).
    pub gateways: Vec<IpNet>,
}

/// The last good ruleset, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastGood {
    /// The revision.
    pub revision: i64,
    /// Its hash.
    pub hash: String,
    /// When it was applied (ms since the epoch).
    pub applied_ms: i64,
    /// The ruleset.
    pub ruleset: NodeRuleset,
}

/// Whether `hash`, the one the server published (or a last good file recorded), is the
/// hash of `rs`: its canonical hash, or — from a server (or file) of the version before
/// the canonical hash — SHA-256 of its nft rendering. The agent reports back the hash it
/// was given, so either kind of server sees its own.
pub fn hash_matches(rs: &NodeRuleset, hash: &str) -> bool {
    hash == rs.canonical_hash() || hash == legacy_hash(rs)
}

/// The hash servers published before the canonical one: SHA-256 of the nft rendering as
/// it was then (rule comments without their hash). Accepted for one version, so agents
/// can be upgraded before their server.
fn legacy_hash(rs: &NodeRuleset) -> String {
    sha256_hex(fleetwall_render::nft::render_before_rule_hashes(rs).as_bytes())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What happened, for logs and for tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Applied `revision` (`from_disk`: the last good one, server unreachable).
    Applied {
        /// The revision.
        revision: i64,
        /// Whether it came from disk.
        from_disk: bool,
    },
    /// The fail-closed baseline was applied, admitting management from `gateways`
    /// (empty: from nowhere but loopback).
    Baseline {
        /// The management gateways it admits.
        gateways: Vec<IpNet>,
    },
    /// Our table was changed or missing and was restored; what differed, rule by rule
    /// (by the rule hashes in the comments).
    DriftRepaired(String),
    /// Something failed.
    Error(String),
    /// The server could not be reached.
    Unreachable(String),
}

/// What the kernel was last given.
struct Current {
    lg: LastGood,
    /// What our table lists as while it holds exactly `lg`.
    fingerprint: String,
    /// `lg` is the fail-closed baseline (revision 0), not a ruleset of the server.
    baseline: bool,
}

/// Whether the backend a driver renders with (`nft`, `iptables`) can express `rs`; the
/// first thing it cannot, and how many more, otherwise.
pub fn expressible(driver: &str, rs: &NodeRuleset) -> Result<(), String> {
    let Some(backend) = fleetwall_render::backend(driver) else { return Ok(()) };
    let missing = fleetwall_render::check(backend.name(), &backend.capabilities(), rs);
    match missing.first() {
        None => Ok(()),
        Some(first) if missing.len() == 1 => Err(first.to_string()),
        Some(first) => Err(format!("{first} (and {} more)", missing.len() - 1)),
    }
}

/// The status report's error while the baseline is in force.
const BASELINE_ERROR: &str =
    "the node runs the fail-closed baseline: no ruleset from the server and no usable last good one";

/// The agent.
pub struct Agent {
    cfg: Config,
    api: Api,
    kernel: Box<dyn Dataplane>,
    /// Counters.
    pub stats: Arc<Stats>,
    current: Option<Current>,
    error: Option<String>,
    reported: bool,
    /// Check for drift at the next turn of the loop, not at the next resync.
    check_soon: bool,
    on_event: Box<dyn Fn(&Event) + Send>,
    /// Stop once the token has been refused for this long (None: keep trying).
    give_up_after: Option<Duration>,
    gave_up: Option<String>,
}

impl Agent {
    /// A new agent; `on_event` sees every event (the CLI logs them).
    pub fn new(cfg: Config, kernel: Box<dyn Dataplane>, on_event: Box<dyn Fn(&Event) + Send>) -> Result<Agent, String> {
        let client = Client::new(&cfg.server, cfg.ca.as_deref())
            .map_err(|e| e.to_string())?
            .with_token(&cfg.token)
            .with_timeout(Duration::from_secs(5));
        Ok(Agent {
            cfg,
            api: Api::new(client),
            kernel,
            stats: Arc::new(Stats::default()),
            current: None,
            error: None,
            reported: true,
            check_soon: false,
            on_event,
            give_up_after: None,
            gave_up: None,
        })
    }

    /// Makes `run` return once the server has refused the token for `after` (a revoked
    /// or expired token never heals by retrying); `gave_up` then says why.
    pub fn give_up_on_auth_failure_after(&mut self, after: Duration) {
        self.give_up_after = Some(after);
    }

    /// The dataplane driver's name (`nft`, `iptables`, `memory`).
    pub fn dataplane(&self) -> &'static str {
        self.kernel.name()
    }

    /// Why `run` returned on its own, if it did.
    pub fn gave_up(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    fn last_good_path(&self) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join("last-good.json"))
    }

    /// The last good ruleset on disk, if any.
    pub fn load_last_good(&self) -> Option<LastGood> {
        let text = std::fs::read_to_string(self.last_good_path()?).ok()?;
        let lg: LastGood = serde_json::from_str(&text).ok()?;
        (lg.ruleset.validate().is_ok() && hash_matches(&lg.ruleset, &lg.hash)).then_some(lg)
    }

    fn save_last_good(&self, lg: &LastGood) -> Result<(), String> {
        let Some(path) = self.last_good_path() else { return Ok(()) };
        write_private(&path, &serde_json::to_string(lg).map_err(|e| e.to_string())?)
    }

    fn management_path(&self) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join("management.json"))
    }

    /// Who may manage the node under the baseline: the configured gateways, else the
    /// ones of the last real ruleset; its management ports.
    pub fn management(&self) -> Management {
        let known: Management = self
            .management_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if self.cfg.gateways.is_empty() {
            known
        } else {
            Management { gateways: self.cfg.gateways.clone(), ..known }
        }
    }

    fn save_management(&self, rs: &NodeRuleset) -> Result<(), String> {
        let Some(path) = self.management_path() else { return Ok(()) };
        write_private(&path, &serde_json::to_string(&Management::of(rs)).map_err(|e| e.to_string())?)
    }

    fn emit(&self, e: Event) {
        (self.on_event)(&e);
    }

    fn apply(&mut self, lg: LastGood, from: From) {
        let from_disk = from == From::Disk;
        let baseline =
            from == From::Baseline || (from == From::Drift && self.current.as_ref().is_some_and(|c| c.baseline));
        let start = Instant::now();
        // Only a ruleset of the server's may be a delta on what this driver loaded last:
        // a drift repair, the last good one and the baseline replace whatever is there.
        let how = if from == From::Server { How::Auto } else { How::Full };
        match self.enforce(&lg.ruleset, how) {
            Ok((mode, fingerprint, warning)) => {
                self.stats.last_apply_us.store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                if matches!(mode, Mode::Delta { .. }) {
                    self.stats.delta_applies.fetch_add(1, Ordering::Relaxed);
                }
                self.stats.applies.fetch_add(1, Ordering::Relaxed);
                self.stats.applied_revision.store(lg.revision, Ordering::Relaxed);
                self.stats.baseline_active.store(baseline, Ordering::Relaxed);
                if baseline {
                    self.stats.baseline_applies.fetch_add(1, Ordering::Relaxed);
                }
                if from_disk {
                    self.stats.fail_static.fetch_add(1, Ordering::Relaxed);
                }
                let lg = LastGood { applied_ms: now_ms(), ..lg };
                if from == From::Server {
                    for saved in [self.save_last_good(&lg), self.save_management(&lg.ruleset)] {
                        if let Err(e) = saved {
                            self.emit(Event::Error(e));
                        }
                    }
                }
                if baseline {
                    self.emit(Event::Baseline { gateways: Management::of(&lg.ruleset).gateways });
                } else {
                    self.emit(Event::Applied { revision: lg.revision, from_disk });
                }
                self.error = match (baseline, warning) {
                    (true, Some(w)) => Some(format!("{BASELINE_ERROR}; {w}")),
                    (true, None) => Some(BASELINE_ERROR.into()),
                    (false, w) => w,
                };
                self.current = Some(Current { lg, fingerprint, baseline });
                // Whatever slipped in while connections were revoked is caught right away;
                // not after a repair, which would loop on a table that never matches.
                self.check_soon = from != From::Drift;
            }
            Err(e) => {
                self.stats.apply_errors.fetch_add(1, Ordering::Relaxed);
                self.emit(Event::Error(format!("apply of revision {} failed: {e}", lg.revision)));
                self.error = Some(format!("apply of revision {} failed: {e}", lg.revision));
            }
        }
        self.reported = false;
    }

    /// Loads `rs` (and revokes what it no longer allows); returns how, the fingerprint
    /// our table has while it holds exactly `rs`, and a warning for what failed on the side.
    fn enforce(&self, rs: &NodeRuleset, how: How) -> Result<(Mode, String, Option<String>), String> {
        let applied = self.kernel.apply(rs, how).map_err(|e| e.to_string())?;
        let mut warnings: Vec<String> = applied.warning.into_iter().collect();
        // Enforcing the ruleset matters more than watching it: without a scratch listing,
        // the table as found now stands in (and a rule slipped in just now would stay).
        let fingerprint = match self.kernel.expected(rs) {
            Ok(fp) => fp,
            Err(e) => {
                warnings.push(format!("{e}; drift is judged against the table as found after the apply"));
                let found = self.kernel.observe().map_err(|e| e.to_string())?;
                found.map(|o| o.fingerprint).ok_or("our table is missing right after the apply")?
            }
        };
        Ok((applied.mode, fingerprint, (!warnings.is_empty()).then(|| warnings.join("; "))))
    }

    /// Nothing to enforce at start: with our table gone, the fail-closed baseline; a table
    /// still there (the agent restarted) stays, as the last thing this node enforced.
    fn fail_closed(&mut self) {
        match self.kernel.observe() {
            Ok(Some(_)) => {
                let e = "no ruleset from the server and no usable last good one: our table is kept as found, unwatched";
                self.emit(Event::Error(e.into()));
                self.error = Some(e.into());
                self.reported = false;
                return;
            }
            Ok(None) => {}
            Err(e) => self.emit(Event::Error(format!("cannot read our table: {e}"))),
        }
        let rs = baseline(&self.cfg.node, &self.management());
        let lg = LastGood { revision: 0, hash: ruleset_hash(&rs), applied_ms: 0, ruleset: rs };
        self.apply(lg, From::Baseline);
    }

    fn fetch(&self, after: i64, wait: Duration) -> Result<Option<LastGood>, FetchError> {
        let fetched = self.api.ruleset(&self.cfg.node, after, wait, wait + Duration::from_secs(10));
        if !matches!(fetched, Err(CallError::Transport(_))) {
            self.stats.server_up.store(true, Ordering::Relaxed);
        }
        let f: RulesetResponse<serde_json::Value> = match fetched {
            Ok(None) => return Ok(None),
            Ok(Some(f)) => f,
            Err(CallError::Transport(e)) => return Err(FetchError::Unreachable(e.to_string())),
            Err(CallError::Decode { status: 200, message }) => {
                return Err(FetchError::Refused(format!("refused a ruleset response that does not parse: {message}")))
            }
            Err(e @ CallError::Refused(_)) if matches!(e.status(), Some(401 | 403)) => {
                return Err(FetchError::TokenRefused(e.to_string()))
            }
            Err(e) => return Err(FetchError::Unreachable(e.to_string())),
        };
        // Decoded in a second step, so that a refusal can name the revision it refuses.
        let ruleset: NodeRuleset = serde_json::from_value(f.ruleset)
            .map_err(|e| FetchError::Refused(format!("refused the ruleset of revision {}: {e}", f.revision)))?;
        // Hostile until checked: nothing is rendered from a ruleset that fails validation.
        ruleset
            .validate()
            .map_err(|e| FetchError::Refused(format!("refused the ruleset of revision {}: {e}", f.revision)))?;
        // The central capability check: nothing the node's backend cannot express is loaded.
        expressible(self.kernel.name(), &ruleset)
            .map_err(|e| FetchError::Refused(format!("refused the ruleset of revision {}: {e}", f.revision)))?;
        if ruleset.node != self.cfg.node {
            return Err(FetchError::Refused(format!(
                "refused the ruleset of revision {}: it is for node {:?}, not {}",
                f.revision, ruleset.node, self.cfg.node
            )));
        }
        if !hash_matches(&ruleset, &f.hash) {
            return Err(FetchError::Refused(format!(
                "ruleset of revision {} does not match its hash (got {}, server says {})",
                f.revision,
                ruleset.canonical_hash(),
                f.hash
            )));
        }
        Ok(Some(LastGood { revision: f.revision, hash: f.hash, applied_ms: 0, ruleset }))
    }

    fn report(&mut self) {
        let (revision, hash, applied_ms) = match &self.current {
            Some(c) => (c.lg.revision, c.lg.hash.clone(), c.lg.applied_ms),
            None => (0, String::new(), now_ms()),
        };
        // The server takes at most 4 KiB of error text; nft's own messages can be longer.
        let error = self.error.as_deref().map(|e| {
            let mut cut = e.len().min(2048);
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e[..cut].to_string()
        });
        let body = Report { applied_ms, error, hash, revision };
        let path = fleetwall_api::client::paths::node_status(&self.cfg.node);
        // The answer carries nothing but its status.
        match self.api.http().send_json("PUT", &path, &body) {
            Ok(r) if r.status == 200 => self.reported = true,
            Ok(r) => self.emit(Event::Error(format!(
                "status report refused: {} (status {})",
                error_body(&r).message,
                r.status
            ))),
            Err(e) => self.emit(Event::Unreachable(e.to_string())),
        }
    }

    fn check_drift(&mut self) {
        let Some(current) = &self.current else { return };
        match self.kernel.observe() {
            Ok(Some(now)) if now.fingerprint == current.fingerprint => {}
            found @ Ok(_) => {
                let what = match found {
                    Ok(Some(now)) => fleetwall_apply::rule_drift(&current.lg.ruleset, &now.rules).to_string(),
                    _ => "our table is gone".to_string(),
                };
                let lg = current.lg.clone();
                self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                self.apply(lg, From::Drift);
                self.emit(Event::DriftRepaired(what));
            }
            Err(e) => self.emit(Event::Error(format!("cannot read our table: {e}"))),
        }
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        // Start: the server's ruleset if it answers, else the last good one from disk.
        match self.fetch(-1, Duration::ZERO) {
            Ok(Some(lg)) => self.apply(lg, From::Server),
            Ok(None) => {}
            Err(e) => {
                let refused = match e {
                    FetchError::Unreachable(e) => {
                        self.stats.server_up.store(false, Ordering::Relaxed);
                        self.emit(Event::Unreachable(e));
                        None
                    }
                    FetchError::Refused(e) => {
                        self.emit(Event::Error(e.clone()));
                        Some(e)
                    }
                    FetchError::TokenRefused(e) => {
                        self.emit(Event::Error(format!("the server refused this agent's token: {e}")));
                        None
                    }
                };
                match self.load_last_good() {
                    Some(lg) => self.apply(lg, From::Disk),
                    None => self.fail_closed(),
                }
                if refused.is_some() {
                    self.error = refused;
                    self.reported = false;
                }
            }
        }
        let mut next_resync = Instant::now() + self.cfg.resync;
        let mut backoff = Duration::from_millis(200);
        let mut token_refused_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if !self.reported {
                self.report();
            }
            let now = Instant::now();
            if now >= next_resync || std::mem::take(&mut self.check_soon) {
                self.check_drift();
                next_resync = now + self.cfg.resync;
                continue;
            }
            let wait = (next_resync - now).min(self.cfg.poll);
            // The baseline is no revision of the server's: any revision replaces it.
            let after = self.current.as_ref().filter(|c| !c.baseline).map(|c| c.lg.revision).unwrap_or(-1);
            let fetched = self.fetch(after, wait);
            if !matches!(fetched, Err(FetchError::TokenRefused(_))) {
                token_refused_since = None;
            }
            match fetched {
                Ok(Some(lg)) => {
                    backoff = Duration::from_millis(200);
                    if self.current.as_ref().map(|c| &c.lg.hash) == Some(&lg.hash) {
                        // Same rules under a newer revision: nothing to load.
                        if let Some(c) = self.current.as_mut() {
                            c.lg.revision = lg.revision;
                        }
                        self.stats.applied_revision.store(lg.revision, Ordering::Relaxed);
                        // A refusal of a bad ruleset in between is over.
                        self.error = None;
                        self.reported = false;
                    } else {
                        self.apply(lg, From::Server);
                    }
                }
                Ok(None) => backoff = Duration::from_millis(200),
                Err(e) => {
                    match e {
                        FetchError::Unreachable(e) => {
                            self.stats.server_up.store(false, Ordering::Relaxed);
                            self.emit(Event::Unreachable(e));
                        }
                        FetchError::Refused(e) => {
                            // Keep enforcing what we have (fail-static) and tell the server why.
                            self.stats.apply_errors.fetch_add(1, Ordering::Relaxed);
                            self.emit(Event::Error(e.clone()));
                            self.error = Some(e);
                            self.reported = false;
                        }
                        FetchError::TokenRefused(e) => {
                            // Reachable, but retrying fast cannot help: slow down, and give
                            // up when told to. The rules in force stay (fail-static).
                            let since = *token_refused_since.get_or_insert_with(Instant::now);
                            let msg = format!("the server refused this agent's token: {e}");
                            self.emit(Event::Error(msg.clone()));
                            if self.give_up_after.is_some_and(|limit| since.elapsed() >= limit) {
                                self.gave_up = Some(msg);
                                return;
                            }
                            backoff = backoff.max(Duration::from_secs(5));
                        }
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let cap = if token_refused_since.is_some() { 60 } else { 5 };
                    backoff = (backoff * 2).min(Duration::from_secs(cap));
                }
            }
        }
    }
}

/// Why a fetch brought nothing to apply.
enum FetchError {
    /// The server could not be reached or answered with an error.
    Unreachable(String),
    /// The server answered with a ruleset the agent will not render.
    Refused(String),
    /// The server refused the agent's token (401 or 403).
    TokenRefused(String),
}

/// Where an applied ruleset came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    Server,
    Disk,
    Drift,
    Baseline,
}

/// Writes `text` to `path` whole (tmp, fsync, rename), readable by the owner only, in a
/// state directory only the owner can enter, whatever the umask: the ruleset says who
/// may reach the node.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = path.parent().expect("a file in the state dir");
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot save {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server of the previous version hashed its nft text, whose rule comments had no
    /// hash yet: the agent still recognises that hash (the file is that version's own
    /// rendering of examples/kafka-vpc.yaml's kafka-events-1, with a comment nft cut).
    #[test]
    fn the_previous_versions_hash_of_its_own_nft_text_is_accepted() {
        let old = include_str!("../testdata/previous-version-kafka-events-1.nft");
        let src = include_str!("../../../examples/kafka-vpc.yaml");
        let fleet = fleetwall_model::load(src, &fleetwall_model::Catalog::builtin()).0.unwrap();
        let rs = fleetwall_compile::compile_node(&fleet, "kafka-events-1").unwrap();
        assert!(hash_matches(&rs, &sha256_hex(old.as_bytes())));
        assert!(!hash_matches(&rs, &sha256_hex(fleetwall_render::nft::render(&rs).as_bytes())));
    }

    /// An iptables host refuses a ruleset with a set larger than ipset holds, naming it;
    /// nft takes it.
    #[test]
    fn a_ruleset_the_backend_cannot_express_is_refused_before_loading() {
        let mut rs = ruleset("n1");
        let members = (0..70_000u32)
            .map(|i| fleetwall_ir::Member {
                net: ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + 2 * i))),
                reason: "many".into(),
            })
            .collect();
        let name = fleetwall_ir::SetName::new("ipf4").unwrap();
        rs.sets.push(Arc::new(fleetwall_ir::AddrSet::new(name, fleetwall_ir::Family::V4, "big", members)));
        let e = expressible("iptables", &rs).unwrap_err();
        assert!(e.starts_with("iptables cannot express a set of 70000 entries (at most 65536)"), "{e}");
        assert_eq!(expressible("nft", &rs), Ok(()));
        assert_eq!(expressible("memory", &rs), Ok(()));
    }
    use fleetwall_render::nft::TABLE;
    use fleetwall_server::web::Response;
    use std::path::Path;
    use std::sync::Mutex;

    fn ruleset(node: &str) -> NodeRuleset {
        NodeRuleset {
            node: node.into(),
            description: "test".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            sets: Vec::new(),
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    fn config(server: &str, dir: Option<PathBuf>) -> Config {
        Config {
            server: server.into(),
            node: "n1".into(),
            token: "t".into(),
            ca: None,
            state_dir: dir,
            resync: Duration::from_millis(10),
            poll: Duration::from_millis(10),
            gateways: Vec::new(),
        }
    }

    fn agent(dir: Option<PathBuf>) -> Agent {
        // Nothing listens on port 1 of loopback: every request fails at once.
        Agent::new(config("http://127.0.0.1:1", dir), Box::<Memory>::default(), Box::new(|_| {})).unwrap()
    }

    #[test]
    fn a_refused_token_was_logged_as_an_unreachable_server_and_retried_forever() {
        let handler: fleetwall_server::web::Handler =
            Arc::new(|_| fleetwall_server::web::Response::error(401, "this token was revoked"));
        let server = fleetwall_server::web::Server::bind("127.0.0.1:0", None, handler).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let mut a = Agent::new(
            config(&format!("http://{}", server.local_addr()), None),
            Box::<Memory>::default(),
            Box::new(move |e| seen.lock().unwrap().push(e.clone())),
        )
        .unwrap();
        a.give_up_on_auth_failure_after(Duration::ZERO);
        // Returns by itself: the stop flag is never set.
        a.run(&AtomicBool::new(false));
        assert_eq!(a.gave_up(), Some("the server refused this agent's token: this token was revoked (status 401)"));
        let events = events.lock().unwrap();
        assert!(!events.iter().any(|e| matches!(e, Event::Unreachable(_))), "{events:?}");
        assert!(events.iter().any(|e| matches!(e, Event::Error(m) if m.contains("refused this agent's token"))));
    }

    #[test]
    fn the_last_good_ruleset_survives_on_disk_and_a_tampered_one_is_ignored() {
        let dir = std::env::temp_dir().join(format!("fw-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = agent(Some(dir.clone()));
        let rs = ruleset("n1");
        a.apply(LastGood { revision: 7, hash: ruleset_hash(&rs), applied_ms: 0, ruleset: rs }, From::Server);
        let lg = a.load_last_good().expect("saved");
        assert_eq!(lg.revision, 7);
        // A file whose ruleset does not match its hash is not trusted.
        let path = dir.join("last-good.json");
        let text = std::fs::read_to_string(&path).unwrap().replace(&lg.hash, &"0".repeat(64));
        std::fs::write(&path, text).unwrap();
        assert!(a.load_last_good().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hash_of_the_version_before_the_canonical_one_was_still_understood() {
        let rs = ruleset("n1");
        let (canonical, legacy) = (rs.canonical_hash(), legacy_hash(&rs));
        assert_ne!(canonical, legacy);
        assert!(hash_matches(&rs, &canonical) && hash_matches(&rs, &legacy));
        let mut other = ruleset("n1");
        other.description = "changed".into();
        assert!(!hash_matches(&other, &canonical) && !hash_matches(&other, &legacy));
        // A last good file an agent of that version wrote is still used, and its hash kept.
        let dir = std::env::temp_dir().join(format!("fw-agent-legacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = agent(Some(dir.clone()));
        a.apply(LastGood { revision: 4, hash: legacy.clone(), applied_ms: 0, ruleset: rs }, From::Server);
        assert_eq!(a.load_last_good().map(|lg| lg.hash), Some(legacy));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unreachable_server_at_start_means_the_last_good_ruleset() {
        let dir = std::env::temp_dir().join(format!("fw-agent-start-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rs = ruleset("n1");
        let hash = ruleset_hash(&rs);
        agent(Some(dir.clone()))
            .apply(LastGood { revision: 3, hash: hash.clone(), applied_ms: 0, ruleset: rs }, From::Server);
        let mut a = agent(Some(dir.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = a.stats.clone();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            a.run(&s2);
            a
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let a = t.join().unwrap();
        assert_eq!(stats.fail_static.load(Ordering::Relaxed), 1, "the last good ruleset was applied once at start");
        assert_eq!(stats.applied_revision.load(Ordering::Relaxed), 3);
        assert_eq!(
            a.kernel.observe().unwrap().map(|o| o.fingerprint),
            Some(a.kernel.expected(&ruleset("n1")).unwrap())
        );
        assert!(!stats.server_up.load(Ordering::Relaxed));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn wait(what: &str, until: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !until() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_unreachable_server_and_no_last_good_left_the_node_unfiltered() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = config(&format!("http://127.0.0.1:{port}"), None);
        let gateways: Vec<IpNet> = vec!["198.51.100.10/32".parse().unwrap()];
        cfg.gateways = gateways.clone();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let on_event = Box::new(move |e: &Event| seen.lock().unwrap().push(e.clone()));
        let mut a = Agent::new(cfg, Box::<Memory>::default(), on_event).unwrap();
        let (stats, stop) = (a.stats.clone(), Arc::new(AtomicBool::new(false)));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            a.run(&s2);
            a
        });
        wait("the baseline", || stats.baseline_active.load(Ordering::Relaxed));
        assert!(events.lock().unwrap().contains(&Event::Baseline { gateways }));
        assert_eq!(stats.applied_revision.load(Ordering::Relaxed), 0);
        let metrics = stats.render("n1");
        assert!(metrics.contains("fleetwall_agent_baseline_active{node=\"n1\"} 1"), "{metrics}");
        assert!(metrics.contains("fleetwall_agent_baseline_applies_total{node=\"n1\"} 1"), "{metrics}");

        // The server comes up: the baseline is reported as what it is, then the server's
        // ruleset replaces it.
        let rs = ruleset("n1");
        let hash = ruleset_hash(&rs);
        let reports = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let body = RulesetResponse {
            fleet_revision: 5,
            hash: hash.clone(),
            node: "n1".into(),
            revision: 5,
            ruleset: rs.clone(),
        };
        let got = reports.clone();
        let handler: fleetwall_server::web::Handler = Arc::new(move |req| match req.method.as_str() {
            "PUT" => {
                got.lock().unwrap().push(req.json().unwrap());
                Response::json(200, &fleetwall_api::Ack { ok: true })
            }
            _ if req.query("after") == Some("5") => Response::new(304, "text/plain", ""),
            _ => Response::json(200, &body),
        });
        let server = fleetwall_server::web::Server::bind(&format!("127.0.0.1:{port}"), None, handler).unwrap();
        wait("revision 5 reported", || reports.lock().unwrap().iter().any(|r| r["revision"] == 5));
        stop.store(true, Ordering::Relaxed);
        let a = t.join().unwrap();
        server.shutdown();
        assert!(!stats.baseline_active.load(Ordering::Relaxed));
        assert_eq!(a.kernel.observe().unwrap().map(|o| o.fingerprint), Some(a.kernel.expected(&rs).unwrap()));
        assert_eq!(a.error, None);
        let reports = reports.lock().unwrap();
        let first = &reports[0];
        assert_eq!(first["revision"], 0, "the baseline is no revision of the server's: {first}");
        assert_eq!(first["error"], BASELINE_ERROR, "{first}");
        let baseline_hash = ruleset_hash(&baseline("n1", &a.management()));
        assert_eq!(first["hash"], baseline_hash.as_str(), "{first}");
    }

    #[test]
    fn an_element_change_was_a_delta_and_a_drift_repair_a_full_replace() {
        use fleetwall_ir::{AddrSet, Family, Member, SetName};
        let with = |nets: &[&str]| {
            let members = nets.iter().map(|n| Member { net: n.parse().unwrap(), reason: "entry".into() }).collect();
            let set = AddrSet::new(SetName::new("ipf4").unwrap(), Family::V4, "ip_filter", members);
            NodeRuleset { sets: vec![Arc::new(set)], ..ruleset("n1") }
        };
        let kernel = Arc::new(Memory::default());
        let mut a = Agent::new(config("http://127.0.0.1:1", None), Box::new(kernel.clone()), Box::new(|_| {})).unwrap();
        for (revision, rs) in [(1, with(&["192.0.2.0/24"])), (2, with(&["192.0.2.0/24", "198.51.100.7/32"]))] {
            a.apply(LastGood { revision, hash: ruleset_hash(&rs), applied_ms: 0, ruleset: rs }, From::Server);
        }
        assert_eq!(a.stats.delta_applies.load(Ordering::Relaxed), 1);
        kernel.wipe();
        a.check_drift();
        assert_eq!(a.stats.drift_repairs.load(Ordering::Relaxed), 1);
        let modes: Vec<Mode> = kernel.loads().into_iter().map(|(_, m)| m).collect();
        // The repair reloads revision 2 whole: the kernel may hold anything by then.
        assert_eq!(modes, [Mode::Full, Mode::Delta { added: 1, removed: 0 }, Mode::Full]);
        assert!(a.stats.render("n1").contains("fleetwall_agent_delta_applies_total{node=\"n1\"} 1"));
    }

    #[test]
    fn the_state_files_were_as_open_as_the_umask_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fw-agent-perms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        // SAFETY: umask only changes the mode of files created afterwards.
        let old = unsafe { libc::umask(0) };
        let rs = ruleset("n1");
        agent(Some(state.clone()))
            .apply(LastGood { revision: 1, hash: ruleset_hash(&rs), applied_ms: 0, ruleset: rs }, From::Server);
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("last-good.json")), 0o600);
        assert_eq!(mode(&state.join("management.json")), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A namespace of the test's own, removed on drop.
    struct Netns(String);

    impl Netns {
        /// None when kernel tests cannot run here and FLEETWALL_SKIP_KERNEL_TESTS allows skipping.
        fn new(tag: &str) -> Option<Netns> {
            let name = format!("fw-agent-{}-{tag}", std::process::id());
            match fleetwall_apply::run(None, "ip", &["netns", "add", &name], None) {
                Ok(_) => Some(Netns(name)),
                Err(_) if std::env::var_os("FLEETWALL_SKIP_KERNEL_TESTS").is_some() => None,
                Err(e) => panic!("KERNEL TESTS CANNOT RUN (root, iproute2, nftables needed): {e}"),
            }
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = fleetwall_apply::run(None, "ip", &["netns", "del", &self.0], None);
        }
    }

    /// nftables, plus someone adding a rule to our table right after the first load.
    struct Tampered {
        nft: Nft,
        ns: String,
        done: AtomicBool,
    }

    impl Dataplane for Tampered {
        fn name(&self) -> &'static str {
            "tampered"
        }
        fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, fleetwall_apply::Error> {
            let mode = self.nft.load(rs, how)?;
            if !self.done.swap(true, Ordering::Relaxed) {
                let rule = ["add", "rule", "inet", TABLE, "input", "tcp", "dport", "9999", "accept"];
                fleetwall_apply::run(Some(&self.ns), "nft", &rule, None)?;
            }
            Ok(mode)
        }
        fn observe(&self) -> Result<Option<fleetwall_apply::Observed>, fleetwall_apply::Error> {
            self.nft.observe()
        }
        fn expected(&self, rs: &NodeRuleset) -> Result<String, fleetwall_apply::Error> {
            self.nft.expected(rs)
        }
        fn revoke(&self, rs: &NodeRuleset) -> Result<usize, fleetwall_apply::Error> {
            self.nft.revoke(rs)
        }
    }

    #[test]
    fn a_rule_slipped_in_right_after_an_apply_was_adopted_as_ours() {
        let Some(ns) = Netns::new("drift") else { return };
        let kernel = Tampered { nft: Nft::new(Some(ns.0.clone())), ns: ns.0.clone(), done: AtomicBool::new(false) };
        let mut a = Agent::new(config("http://127.0.0.1:1", None), Box::new(kernel), Box::new(|_| {})).unwrap();
        let rs = baseline("n1", &Management { gateways: vec!["198.51.100.10/32".parse().unwrap()], ports: vec![] });
        a.apply(LastGood { revision: 1, hash: ruleset_hash(&rs), applied_ms: 0, ruleset: rs }, From::Server);
        let list = || fleetwall_apply::run(Some(&ns.0), "nft", &["list", "table", "inet", TABLE], None).unwrap();
        assert!(list().contains("dport 9999"), "the tampering happened: {}", list());
        a.check_drift();
        assert_eq!(a.stats.drift_repairs.load(Ordering::Relaxed), 1);
        assert!(!list().contains("dport 9999"), "the slipped-in rule is gone: {}", list());
        // And the repaired table is what the agent wrote: no repair loop.
        a.check_drift();
        assert_eq!(a.stats.drift_repairs.load(Ordering::Relaxed), 1);
        // A deleted table is drift too, found without reading nft's error message.
        fleetwall_apply::run(Some(&ns.0), "nft", &["delete", "table", "inet", TABLE], None).unwrap();
        assert_eq!(a.kernel.observe().unwrap(), None);
        a.check_drift();
        assert_eq!(a.stats.drift_repairs.load(Ordering::Relaxed), 2);
        assert!(list().contains("baseline-mgmt-v4"));
    }
}

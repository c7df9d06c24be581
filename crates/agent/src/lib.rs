//! The node agent: long-polls its node's ruleset from the control plane, applies it as
//! one nftables transaction on our table only, keeps the last good ruleset on disk and
//! re-applies it at start when the server cannot be reached (fail-static: the node keeps
//! enforcing what it last knew, never opens up), repairs drift (someone edited or deleted
//! our table) within its resync interval, and reports revision, hash, applied-at and any
//! error back to the server.

#![warn(missing_docs)]

use fleetwall_http::{Client, Response};
use fleetwall_ir::NodeRuleset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// SHA-256 hex of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash the server publishes for a ruleset: SHA-256 of its nft rendering.
pub fn ruleset_hash(rs: &NodeRuleset) -> String {
    sha256_hex(fleetwall_render::nft::render(rs).as_bytes())
}

/// Where rulesets go.
pub trait Kernel: Send + Sync {
    /// Enforces `rs` atomically. Ok(Some(msg)) when it applied but something secondary
    /// (revoking connections) failed.
    fn apply(&self, rs: &NodeRuleset) -> Result<Option<String>, String>;
    /// A fingerprint of what the kernel holds of ours now (None: our table is missing).
    fn fingerprint(&self) -> Result<Option<String>, String>;
}

/// nftables, in the agent's own network namespace or (for tests) in `netns`.
pub struct NftKernel {
    /// The namespace to program (None: where the agent runs).
    pub netns: Option<String>,
}

impl Kernel for NftKernel {
    fn apply(&self, rs: &NodeRuleset) -> Result<Option<String>, String> {
        let ns = self.netns.as_deref();
        fleetwall_apply::run(ns, "nft", &["-f", "-"], Some(&fleetwall_render::nft::render(rs)))
            .map_err(|e| e.to_string())?;
        match fleetwall_apply::revoke(ns, rs) {
            Ok(_) => Ok(None),
            Err(e) => Ok(Some(format!("applied, but revoking connections failed: {e}"))),
        }
    }
    fn fingerprint(&self) -> Result<Option<String>, String> {
        // -s: without counters or other state, so traffic does not look like drift.
        match fleetwall_apply::run(self.netns.as_deref(), "nft", &["-s", "list", "table", "inet", "fleetwall"], None) {
            Ok(text) => Ok(Some(sha256_hex(text.as_bytes()))),
            Err(e) if e.message.contains("No such file") || e.message.contains("does not exist") => Ok(None),
            Err(e) => Err(e.to_string()),
        }
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
    fn apply(&self, rs: &NodeRuleset) -> Result<Option<String>, String> {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(ruleset_hash(rs));
        Ok(None)
    }
    fn fingerprint(&self) -> Result<Option<String>, String> {
        Ok(self.held.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

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

/// A ruleset response; the ruleset is decoded in a second step so that a refusal can
/// name the revision it refuses.
#[derive(Deserialize)]
struct Fetched<R = serde_json::Value> {
    revision: i64,
    hash: String,
    ruleset: R,
}

/// Counters for `/metrics`, shared with the metrics server.
#[derive(Default)]
pub struct Stats {
    /// The revision in force.
    pub applied_revision: AtomicI64,
    /// Successful applies.
    pub applies: AtomicU64,
    /// Failed applies.
    pub apply_errors: AtomicU64,
    /// Drift repairs.
    pub drift_repairs: AtomicU64,
    /// Applies of the last good ruleset because the server was unreachable.
    pub fail_static: AtomicU64,
    /// Whether the last request reached the server.
    pub server_up: AtomicBool,
    /// Duration of the last apply, microseconds.
    pub last_apply_us: AtomicU64,
}

impl Stats {
    /// The Prometheus exposition.
    pub fn render(&self, node: &str) -> String {
        let mut o = String::new();
        let l = format!("{{node=\"{node}\"}}");
        let mut g = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{l} {v}");
        };
        g(
            "fleetwall_agent_applied_revision",
            "gauge",
            "The fleet revision in force.",
            self.applied_revision.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_applies_total",
            "counter",
            "Rulesets applied.",
            self.applies.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_apply_errors_total",
            "counter",
            "Applies that failed.",
            self.apply_errors.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_drift_repairs_total",
            "counter",
            "Times our table was found changed or missing and restored.",
            self.drift_repairs.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_fail_static_total",
            "counter",
            "Last-good applies while the server was unreachable.",
            self.fail_static.load(Ordering::Relaxed).to_string(),
        );
        g(
            "fleetwall_agent_server_up",
            "gauge",
            "1 when the last request reached the server.",
            u8::from(self.server_up.load(Ordering::Relaxed)).to_string(),
        );
        g(
            "fleetwall_agent_last_apply_seconds",
            "gauge",
            "How long the last apply took.",
            format!("{:.6}", self.last_apply_us.load(Ordering::Relaxed) as f64 / 1e6),
        );
        o
    }
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
    /// Our table was changed or missing and was restored.
    DriftRepaired,
    /// Something failed.
    Error(String),
    /// The server could not be reached.
    Unreachable(String),
}

/// The agent.
pub struct Agent {
    cfg: Config,
    client: Client,
    kernel: Box<dyn Kernel>,
    /// Counters.
    pub stats: Arc<Stats>,
    current: Option<(LastGood, Option<String>)>,
    error: Option<String>,
    reported: bool,
    on_event: Box<dyn Fn(&Event) + Send>,
}

impl Agent {
    /// A new agent; `on_event` sees every event (the CLI logs them).
    pub fn new(cfg: Config, kernel: Box<dyn Kernel>, on_event: Box<dyn Fn(&Event) + Send>) -> Result<Agent, String> {
        let client = Client::new(&cfg.server, cfg.ca.as_deref())
            .map_err(|e| e.to_string())?
            .with_token(&cfg.token)
            .with_timeout(Duration::from_secs(5));
        Ok(Agent {
            cfg,
            client,
            kernel,
            stats: Arc::new(Stats::default()),
            current: None,
            error: None,
            reported: true,
            on_event,
        })
    }

    fn last_good_path(&self) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join("last-good.json"))
    }

    /// The last good ruleset on disk, if any.
    pub fn load_last_good(&self) -> Option<LastGood> {
        let text = std::fs::read_to_string(self.last_good_path()?).ok()?;
        let lg: LastGood = serde_json::from_str(&text).ok()?;
        (lg.ruleset.validate().is_ok() && ruleset_hash(&lg.ruleset) == lg.hash).then_some(lg)
    }

    fn save_last_good(&self, lg: &LastGood) -> Result<(), String> {
        let Some(path) = self.last_good_path() else { return Ok(()) };
        let dir = path.parent().expect("a file in the state dir");
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string(lg).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot save {}: {e}", path.display()))
    }

    fn emit(&self, e: Event) {
        (self.on_event)(&e);
    }

    fn apply(&mut self, lg: LastGood, from: From) {
        let from_disk = from == From::Disk;
        let start = Instant::now();
        match self.kernel.apply(&lg.ruleset) {
            Ok(warning) => {
                self.stats.last_apply_us.store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.stats.applies.fetch_add(1, Ordering::Relaxed);
                self.stats.applied_revision.store(lg.revision, Ordering::Relaxed);
                if from_disk {
                    self.stats.fail_static.fetch_add(1, Ordering::Relaxed);
                }
                let lg = LastGood { applied_ms: now_ms(), ..lg };
                if from == From::Server {
                    if let Err(e) = self.save_last_good(&lg) {
                        self.emit(Event::Error(e));
                    }
                }
                let fp = self.kernel.fingerprint().ok().flatten();
                self.emit(Event::Applied { revision: lg.revision, from_disk });
                self.error = warning;
                self.current = Some((lg, fp));
            }
            Err(e) => {
                self.stats.apply_errors.fetch_add(1, Ordering::Relaxed);
                self.emit(Event::Error(format!("apply of revision {} failed: {e}", lg.revision)));
                self.error = Some(format!("apply of revision {} failed: {e}", lg.revision));
            }
        }
        self.reported = false;
    }

    fn fetch(&self, after: i64, wait: Duration) -> Result<Option<LastGood>, FetchError> {
        let path = format!(
            "/v1/nodes/{}/ruleset?after={after}&wait={:.3}",
            fleetwall_http::percent_encode(&self.cfg.node),
            wait.as_secs_f64()
        );
        let resp: Response = self
            .client
            .request_with_timeout("GET", &path, None, wait + Duration::from_secs(10))
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        self.stats.server_up.store(true, Ordering::Relaxed);
        match resp.status {
            304 => Ok(None),
            200 => {
                let f: Fetched = resp
                    .json_body()
                    .map_err(|e| FetchError::Refused(format!("refused a ruleset response that does not parse: {e}")))?;
                let ruleset: NodeRuleset = serde_json::from_value(f.ruleset)
                    .map_err(|e| FetchError::Refused(format!("refused the ruleset of revision {}: {e}", f.revision)))?;
                let f: Fetched<NodeRuleset> = Fetched { revision: f.revision, hash: f.hash, ruleset };
                // Hostile until checked: nothing is rendered from a ruleset that fails validation.
                f.ruleset
                    .validate()
                    .map_err(|e| FetchError::Refused(format!("refused the ruleset of revision {}: {e}", f.revision)))?;
                if f.ruleset.node != self.cfg.node {
                    return Err(FetchError::Refused(format!(
                        "refused the ruleset of revision {}: it is for node {:?}, not {}",
                        f.revision, f.ruleset.node, self.cfg.node
                    )));
                }
                let hash = ruleset_hash(&f.ruleset);
                if hash != f.hash {
                    return Err(FetchError::Refused(format!(
                        "ruleset of revision {} does not match its hash (got {hash}, server says {})",
                        f.revision, f.hash
                    )));
                }
                Ok(Some(LastGood { revision: f.revision, hash: f.hash, applied_ms: 0, ruleset: f.ruleset }))
            }
            s => Err(FetchError::Unreachable(format!("{} (status {s})", server_message(&resp)))),
        }
    }

    fn report(&mut self) {
        let (revision, hash, applied_ms) = match &self.current {
            Some((lg, _)) => (lg.revision, lg.hash.clone(), lg.applied_ms),
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
        let body = serde_json::json!({ "revision": revision, "hash": hash, "applied_ms": applied_ms, "error": error });
        let path = format!("/v1/nodes/{}/status", fleetwall_http::percent_encode(&self.cfg.node));
        match self.client.send_json("PUT", &path, &body) {
            Ok(r) if r.status == 200 => self.reported = true,
            Ok(r) => {
                self.emit(Event::Error(format!("status report refused: {} (status {})", server_message(&r), r.status)))
            }
            Err(e) => self.emit(Event::Unreachable(e.to_string())),
        }
    }

    fn check_drift(&mut self) {
        let Some((lg, fp)) = &self.current else { return };
        match self.kernel.fingerprint() {
            Ok(now) if now.is_some() && now == *fp => {}
            Ok(_) => {
                let lg = lg.clone();
                self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                self.apply(lg, From::Drift);
                self.emit(Event::DriftRepaired);
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
                };
                if let Some(lg) = self.load_last_good() {
                    self.apply(lg, From::Disk);
                }
                if refused.is_some() {
                    self.error = refused;
                    self.reported = false;
                }
            }
        }
        let mut next_resync = Instant::now() + self.cfg.resync;
        let mut backoff = Duration::from_millis(200);
        while !stop.load(Ordering::Relaxed) {
            if !self.reported {
                self.report();
            }
            let now = Instant::now();
            if now >= next_resync {
                self.check_drift();
                next_resync = now + self.cfg.resync;
                continue;
            }
            let wait = (next_resync - now).min(self.cfg.poll);
            let after = self.current.as_ref().map(|(lg, _)| lg.revision).unwrap_or(-1);
            match self.fetch(after, wait) {
                Ok(Some(lg)) => {
                    backoff = Duration::from_millis(200);
                    if self.current.as_ref().map(|(c, _)| &c.hash) == Some(&lg.hash) {
                        // Same rules under a newer revision: nothing to load.
                        if let Some((c, _)) = self.current.as_mut() {
                            c.revision = lg.revision;
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
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
}

/// Where an applied ruleset came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    Server,
    Disk,
    Drift,
}

fn server_message(r: &Response) -> String {
    r.json_body::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| r.text().trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn agent(dir: Option<PathBuf>) -> Agent {
        let cfg = Config {
            // Nothing listens on port 1 of loopback: every request fails at once.
            server: "http://127.0.0.1:1".into(),
            node: "n1".into(),
            token: "t".into(),
            ca: None,
            state_dir: dir,
            resync: Duration::from_millis(10),
            poll: Duration::from_millis(10),
        };
        Agent::new(cfg, Box::<MemoryKernel>::default(), Box::new(|_| {})).unwrap()
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
        assert_eq!(a.kernel.fingerprint().unwrap(), Some(hash));
        assert!(!stats.server_up.load(Ordering::Relaxed));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

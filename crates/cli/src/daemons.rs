//! The two long-running commands: `fleetwall serve` (the control plane: store, admin
//! token, TLS off loopback) and `fleetwall agent` (a node's agent, with its token read
//! from a file or the environment, never needed on the command line).

use crate::commands::Outcome;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// `fleetwall serve` options.
#[derive(Args)]
pub struct ServeArgs {
    /// Store: a SQLite file path (default: DATA_DIR/fleet.db) or postgres://user:pass@host/db.
    #[arg(long, env = "FLEETWALL_DB")]
    pub db: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: String,
    /// Directory for the SQLite file and the admin token.
    #[arg(long, default_value = ".fleetwall")]
    pub data_dir: PathBuf,
    /// TLS certificate chain (PEM); with --tls-key, serve https with it. Without them, serve
    /// listens off loopback with a certificate from its own CA in DATA_DIR (ca.pem).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Another name (DNS name or IP address) for the generated server certificate; repeatable.
    #[arg(long = "tls-san", value_name = "NAME", conflicts_with_all = ["tls_cert", "insecure_http"])]
    pub tls_sans: Vec<String>,
    /// Serve plain HTTP off loopback: tokens and the fleet cross the network unencrypted.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_http: bool,
    /// Seed an empty store with this fleet file (ignored when the store has a revision).
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<PathBuf>,
    /// The admin token file: created (mode 0600) with a new token when the store has no
    /// admin token; an existing file's token is registered.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Use this service catalog instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// How to log: text, or one JSON object per line (one line per request).
    #[arg(long, value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub log_format: crate::logs::LogFormat,
    /// Fleet revisions to keep readable (`fleet get --revision`); older ones are compacted
    /// away once a minute. The head is always kept.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..))]
    pub keep_revisions: i64,
    /// Days of fleet history to keep; both limits apply.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=36500))]
    pub keep_days: i64,
}

/// `fleetwall agent` options.
#[derive(Args)]
pub struct AgentArgs {
    // The server, the token and the CA are the global --server, --token and --ca.
    /// This node's name in the fleet.
    #[arg(long)]
    pub node: String,
    /// A file holding the node's agent token, read once at start; it must not be
    /// accessible to group or others (chmod 600).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Where the last good ruleset is kept.
    #[arg(long, default_value = "/var/lib/fleetwall")]
    pub state_dir: PathBuf,
    /// Seconds between drift checks of our nftables table.
    #[arg(long, default_value_t = 10.0)]
    pub resync: f64,
    /// Exit (status 1) once the server has refused the token for this many seconds (a
    /// revoked or expired token); by default the agent keeps its rules and keeps asking.
    #[arg(long, value_name = "SECONDS")]
    pub exit_on_auth_failure: Option<u64>,
    /// Prometheus metrics address, or `off`.
    #[arg(long, default_value = "127.0.0.1:9301")]
    pub metrics_listen: String,
    /// Program the kernel of this network namespace (`ip netns exec`) instead of the agent's own.
    #[arg(long)]
    pub netns: Option<String>,
    /// How rulesets are loaded: nftables (our table `inet fleetwall`), or iptables-restore
    /// and ipset on hosts without nftables (the filter table is ours there).
    #[arg(long, value_enum, default_value_t = crate::LabBackend::Nft)]
    pub backend: crate::LabBackend,
    /// A management gateway (CIDR; repeatable) admitted to SSH and the platform port by
    /// the fail-closed baseline, the ruleset enforced while there is none from the server
    /// and no usable last good one (default: the gateways of the last ruleset applied).
    #[arg(long = "gateway", value_name = "CIDR")]
    pub gateways: Vec<ipnet::IpNet>,
    /// How to log: text, or one JSON object per line (one line per apply).
    #[arg(long, value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub log_format: crate::logs::LogFormat,
    /// Keep sshd's trust files in this directory (operator access): `trusted_user_ca_keys`
    /// for `TrustedUserCAKeys` and `revoked_keys` for `RevokedKeys`, rewritten within a
    /// round trip of a revoke or a CA rotation.
    #[arg(long, value_name = "DIR")]
    pub ssh_trust_dir: Option<PathBuf>,
}

/// The agent's token: from --token-file, else --token or $FLEETWALL_TOKEN.
fn agent_token(a: &AgentArgs, client: &crate::control::ClientArgs) -> Result<String> {
    let token = match (&a.token_file, &client.token) {
        (Some(_), Some(_)) => {
            bail!("give the agent token with --token-file or with --token/$FLEETWALL_TOKEN, not both")
        }
        (Some(path), None) => read_token_file(path)?,
        (None, Some(t)) => t.trim().to_string(),
        (None, None) => bail!("the agent needs its token: --token-file PATH (or $FLEETWALL_TOKEN, or --token)"),
    };
    if token.is_empty() {
        bail!("the agent token is empty");
    }
    Ok(token)
}

/// A token file's token (trimmed); refused when group or others may access the file.
fn read_token_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("{} is accessible to group or others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{} holds no token", path.display());
    }
    Ok(token.to_string())
}

fn load_catalog(path: Option<&Path>) -> Result<fleetwall_model::Catalog> {
    crate::commands::catalog(path)
}

/// `fleetwall serve`.
pub fn serve(a: ServeArgs) -> Result<Outcome> {
    crate::logs::init(a.log_format);
    // glibc gives each of the HTTP server's threads that allocates its own heap arena (up to
    // 8 per core), and each keeps the garbage of the last write it ran (a whole fleet's
    // compile): two arenas held the peak of `bench --crowd` at 10,000 nodes to 1.3 GB
    // instead of 3.2 GB, at no measurable cost in latency.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt before any other thread of this process allocates.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Every agent's long-poll holds a descriptor: the default soft limit (1024) would refuse
    // agents long before the server's connection cap.
    if let Err(e) = fleetwall_server::web::raise_open_files_limit() {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
    let catalog = load_catalog(a.catalog.as_deref())?;
    crate::datadir::private_dir(&a.data_dir)?;
    let tls = serve_tls(&a)?;
    let url = a.db.clone().unwrap_or_else(|| a.data_dir.join("fleet.db").display().to_string());
    let cp = fleetwall_server::ControlPlane::open(&url, catalog)?;
    cp.set_retention(fleetwall_server::store::Retention {
        revisions: a.keep_revisions,
        max_age_ms: a.keep_days * 24 * 3600 * 1000,
    });
    compact_in_background(Arc::downgrade(&cp));
    // The admin token: registered from the file, or created into it.
    let token_file = a.admin_token_file.clone().unwrap_or_else(|| a.data_dir.join("admin.token"));
    crate::datadir::tighten_secret(&token_file)?;
    let from_file = std::fs::read_to_string(&token_file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = &from_file {
        // Registering never revives a revoked or expired token.
        cp.insert_token(None, "admin", "admin", t, None)?;
    }
    let file_usable = from_file.as_deref().is_some_and(|t| cp.token_usable(t));
    match from_file {
        Some(_) if file_usable => {}
        Some(_) => {
            let t = fleetwall_server::util::new_token()?;
            crate::datadir::write_secret(&token_file, &t)?;
            cp.insert_token(None, "admin", "admin", &t, None)?;
            tracing::info!(
                "the admin token in {0} was revoked or has expired; a new one was written to {0}",
                token_file.display()
            );
        }
        None if !cp.has_admin()? => {
            let t = fleetwall_server::util::new_token()?;
            if let Some(dir) = token_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::datadir::create_dir(dir)?;
            }
            crate::datadir::write_secret(&token_file, &t)?;
            cp.insert_token(None, "admin", "admin", &t, None)?;
            tracing::info!("new admin token written to {}", token_file.display());
        }
        None => {}
    }
    if let Some(f) = &a.fleet {
        if cp.snapshot().revision == 0 {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            match fleetwall_server::fleet_file(&text, &cp.catalog) {
                Ok(doc) => {
                    cp.replace(&fleetwall_server::Actor::Admin("seed".into()), "fleet.seed", doc)?;
                }
                Err(diags) => {
                    eprint!("{}", fleetwall_model::diag::render_human(&diags.items, &f.display().to_string(), &text));
                    return Ok(Outcome::Invalid);
                }
            }
        } else {
            tracing::info!(
                "the store already holds revision {}: --fleet {} is ignored (load it with `fleetwall fleet put {0}`)",
                cp.snapshot().revision,
                f.display()
            );
        }
    }
    let server = serve_logged(cp.clone(), &a.listen, tls.as_ref()).map_err(|e| anyhow!("{e}"))?;
    let snap = cp.snapshot();
    tracing::info!(
        "listening on {}://{} (store {} {}, fleet revision {}, {} nodes)",
        if tls.is_some() { "https" } else { "http" },
        server.local_addr(),
        cp.db.kind(),
        fleetwall_server::db::redact(&url),
        snap.revision,
        snap.nodes().len()
    );
    loop {
        std::thread::park();
    }
}

/// `fleetwall_server::api::serve` with one log line per request: answered by the API, or
/// refused on its head (no valid token, too large).
/// Compacts the fleet history, and notes operator access that ran out, once a minute while
/// the control plane lives.
fn compact_in_background(cp: std::sync::Weak<fleetwall_server::ControlPlane>) {
    std::thread::spawn(move || loop {
        let Some(cp) = cp.upgrade() else { return };
        match cp.compact() {
            Ok(0) => {}
            Ok(n) => tracing::info!(revisions = n, "compacted {n} old fleet revisions"),
            Err(e) => tracing::warn!("compacting the fleet history failed: {}", e.message),
        }
        // Operator access that ran out is noted in the audit log even when nobody asks.
        match cp.access_sweep() {
            Ok(0) => {}
            Ok(n) => tracing::info!(requests = n, "noted {n} operator accesses that expired or ended"),
            Err(e) => tracing::warn!("sweeping operator access failed: {}", e.message),
        }
        drop(cp);
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
}

fn serve_logged(
    cp: Arc<fleetwall_server::ControlPlane>,
    addr: &str,
    tls: Option<&fleetwall_server::web::TlsFiles>,
) -> Result<fleetwall_server::web::Server, fleetwall_server::web::Error> {
    // As `api::serve`: a route without an operation in the OpenAPI document stops the
    // server here, not at the first `GET /openapi.json`.
    std::sync::LazyLock::force(&fleetwall_server::api::OPENAPI);
    let admission = cp.clone();
    let admit: fleetwall_server::web::Admit = Arc::new(move |head| {
        let verdict = fleetwall_server::api::admit(&admission, head);
        if let fleetwall_server::web::Admission::Refuse(resp) = &verdict {
            let peer = head.peer.to_string();
            let (method, path, status) = (head.method, head.path, resp.status);
            tracing::info!(method, path, status, peer, "{method} {path} {status} (refused on its head) from {peer}");
        }
        verdict
    });
    let wait = fleetwall_server::api::long_poll(&cp);
    let handler: fleetwall_server::web::Handler = Arc::new(move |req| {
        let started = std::time::Instant::now();
        let (method, path, peer) = (req.method.clone(), req.path.clone(), req.peer.to_string());
        let caller = req.caller.clone().unwrap_or_default();
        let resp = fleetwall_server::api::handle(&cp, req);
        let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
        let status = resp.status;
        tracing::info!(
            method,
            path,
            status,
            caller,
            peer,
            ms,
            "{method} {path} {status} {ms:.1} ms by {caller} from {peer}"
        );
        resp
    });
    let hooks = fleetwall_server::web::Hooks { handler, admit: Some(admit), wait: Some(wait) };
    fleetwall_server::web::Server::bind_with(addr, tls, hooks, fleetwall_server::web::Limits::default())
}

/// What `serve` speaks: TLS with the given certificate; plain HTTP on loopback or when told
/// to; else TLS with a certificate from its own CA, whose fingerprint is printed for those
/// who hand `ca.pem` to agents and the CLI.
fn serve_tls(a: &ServeArgs) -> Result<Option<fleetwall_server::web::TlsFiles>> {
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        return Ok(Some(fleetwall_server::web::TlsFiles { cert: cert.clone(), key: key.clone() }));
    }
    if a.insecure_http {
        return Ok(None);
    }
    if crate::pki::is_loopback(&a.listen) {
        if !a.tls_sans.is_empty() {
            bail!("--tls-san names the certificate serve makes off loopback, but {} is loopback", a.listen);
        }
        return Ok(None);
    }
    let names = crate::pki::names_for(&a.listen, &a.tls_sans)?;
    let tls = crate::pki::ensure(&a.data_dir, &names).with_context(|| {
        format!(
            "cannot set up TLS in {} for --listen {} (give --tls-cert and --tls-key, or --insecure-http to serve plain HTTP off loopback)",
            a.data_dir.display(),
            a.listen
        )
    })?;
    if tls.new_ca {
        tracing::info!("new CA {}", tls.ca.display());
    }
    if tls.issued {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        tracing::info!("new server certificate {} for {}", tls.files.cert.display(), names.join(", "));
    }
    tracing::info!(
        "TLS CA {} with SHA-256 fingerprint {}; give agents and the CLI --ca {}",
        tls.ca.display(),
        tls.fingerprint,
        tls.ca.display()
    );
    Ok(Some(tls.files))
}

/// `fleetwall agent`.
pub fn agent(a: AgentArgs, client: &crate::control::ClientArgs) -> Result<Outcome> {
    crate::logs::init(a.log_format);
    let node = a.node.clone();
    let Some(server) = client.server.clone() else {
        bail!("the agent needs the control plane's URL: --server URL (or $FLEETWALL_SERVER)")
    };
    let cfg = fleetwall_agent::Config {
        server: server.clone(),
        node: a.node.clone(),
        token: agent_token(&a, client)?,
        ca: client.ca.clone(),
        state_dir: Some(a.state_dir.clone()),
        resync: Duration::from_secs_f64(a.resync.max(0.05)),
        poll: Duration::from_secs(30),
        gateways: a.gateways.clone(),
    };
    let log_node = node.clone();
    let log = Box::new(move |e: &fleetwall_agent::Event| {
        let node = log_node.as_str();
        match e {
            fleetwall_agent::Event::Applied { revision, from_disk: true } => {
                tracing::info!(node, revision, "{node}: re-applied the last good ruleset (revision {revision})")
            }
            fleetwall_agent::Event::Applied { revision, .. } => {
                tracing::info!(node, revision, "{node}: applied revision {revision}")
            }
            fleetwall_agent::Event::Baseline { gateways } if gateways.is_empty() => tracing::error!(
                node,
                "{node}: FAIL-CLOSED BASELINE applied WITHOUT ANY MANAGEMENT GATEWAY: no ruleset from the \
                 server, no usable last good one, no --gateway and none learnt; only loopback reaches this node"
            ),
            fleetwall_agent::Event::Baseline { gateways } => {
                let list: Vec<String> = gateways.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    node,
                    "{node}: fail-closed baseline applied (no ruleset from the server, no usable last good \
                     one); management from {}",
                    list.join(", ")
                )
            }
            fleetwall_agent::Event::DriftRepaired(what) => {
                tracing::warn!(node, drift = %what, "{node}: our table had drifted ({what}); restored")
            }
            fleetwall_agent::Event::Error(m) => tracing::error!(node, "{node}: error: {m}"),
            fleetwall_agent::Event::Unreachable(m) => tracing::warn!(node, "{node}: server unreachable: {m}"),
        }
    });
    let kernel: Box<dyn fleetwall_agent::Dataplane> = match a.backend {
        crate::LabBackend::Nft => Box::new(fleetwall_agent::Nft::new(a.netns.clone())),
        crate::LabBackend::Iptables => Box::new(fleetwall_agent::Iptables::new(a.netns.clone())),
    };
    let mut agent = fleetwall_agent::Agent::new(cfg, kernel, log).map_err(|e| anyhow!(e))?;
    let _metrics = if a.metrics_listen != "off" {
        let stats = agent.stats.clone();
        let n = node.clone();
        let h: fleetwall_server::web::Handler = Arc::new(move |req| match req.path.as_str() {
            "/metrics" => fleetwall_server::web::Response::new(200, "text/plain; version=0.0.4", stats.render(&n)),
            _ => fleetwall_server::web::Response::new(404, "text/plain", "see /metrics\n"),
        });
        Some(
            fleetwall_server::web::Server::bind(&a.metrics_listen, None, h)
                .map_err(|e| anyhow!("metrics on {}: {e}", a.metrics_listen))?,
        )
    } else {
        None
    };
    let dataplane = agent.dataplane();
    tracing::info!(
        node,
        server,
        %dataplane,
        "agent: node {node}, server {server}, state {}, dataplane {dataplane}",
        a.state_dir.display()
    );
    if let Some(secs) = a.exit_on_auth_failure {
        agent.give_up_on_auth_failure_after(Duration::from_secs(secs));
    }
    if let Some(dir) = a.ssh_trust_dir.clone() {
        let keeper = fleetwall_agent::ssh_trust::TrustKeeper::new(
            &server,
            client.ca.as_deref(),
            &agent_token(&a, client)?,
            &node,
            dir.clone(),
        )
        .map_err(|e| anyhow!(e))?;
        let n = node.clone();
        std::thread::spawn(move || {
            let node = n.as_str();
            keeper.run(&AtomicBool::new(false), &|r| match r {
                Ok(hash) => tracing::info!(node, hash, "{node}: ssh trust files written in {}", dir.display()),
                Err(e) => tracing::warn!(node, "{node}: {e}"),
            })
        });
    }
    let stop = AtomicBool::new(false);
    agent.run(&stop);
    match agent.gave_up() {
        Some(why) => {
            tracing::error!(node, "agent giving up: {why}; the rules in force stay (create a new token)");
            Ok(Outcome::Invalid)
        }
        None => Ok(Outcome::Ok),
    }
}

//! `fleetwall bench --rollout`: latency from an API write to "applied" on every agent.
//!
//! Simulated: the real server (HTTP, SQLite, compile, long-poll) in this process, and N
//! agents as threads running the real agent loop over real HTTP, with an in-memory kernel.
//! Real (root): the server in a management-gateway namespace, and `fleetwall agent`
//! processes in node namespaces programming nftables; latency from the agents' reports.
//! Each write changes every node's ruleset (a management gateway added or removed), so
//! every agent must fetch, verify and apply.

use crate::commands::Outcome;
use anyhow::{anyhow, bail, Result};
use fleetwall_api::http::Client;
use serde_json::{json, Value};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options.
pub struct Options {
    /// Simulated agents.
    pub agents: usize,
    /// Real agents (0: skip; needs root).
    pub real_agents: usize,
    /// Writes measured per scenario.
    pub writes: usize,
    /// JSON output.
    pub json: bool,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn gateways_write(admin: &Client, k: usize) -> Result<(i64, Instant)> {
    let fleet = admin.get("/v1/fleet").map_err(|e| anyhow!("{e}"))?.json_body::<fleetwall_api::FleetRevision>()?;
    let mut platform = fleet.fleet["platform"].clone();
    let gws = platform["management_gateways"].as_array_mut().ok_or_else(|| anyhow!("no gateways"))?;
    // Alternate between adding and removing a fifth gateway.
    if k.is_multiple_of(2) {
        gws.push(json!(format!("198.51.100.{}", 200 + k % 50)));
    } else {
        gws.pop();
    }
    let t0 = Instant::now();
    let r = admin.send_json("PUT", "/v1/platform", &platform).map_err(|e| anyhow!("{e}"))?;
    if r.status != 200 {
        bail!("write refused: {} (status {})", r.text(), r.status);
    }
    Ok((r.json_body::<fleetwall_api::Written>()?.revision, t0))
}

/// A fresh control plane on SQLite in a scratch directory, with an admin token.
fn control_plane(tag: &str) -> Result<(std::path::PathBuf, Arc<fleetwall_server::ControlPlane>, String)> {
    let dir = std::env::temp_dir().join(format!("fleetwall-rollout-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("fleet.db").display().to_string();
    let cp = fleetwall_server::ControlPlane::open(&db, fleetwall_model::Catalog::builtin())?;
    let admin_token = fleetwall_server::util::new_token()?;
    cp.insert_token(None, "admin", "admin", &admin_token, None)?;
    Ok((dir, cp, admin_token))
}

/// Latencies (ms) of `writes` writes, each awaited on all `n` simulated agents.
fn simulated(n: usize, writes: usize) -> Result<(Vec<f64>, f64)> {
    // Every simulated agent holds a connection, in this process and to it.
    let _ = fleetwall_server::web::raise_open_files_limit();
    let (dir, cp, admin_token) = control_plane("sim")?;
    let server = fleetwall_server::api::serve(cp.clone(), "127.0.0.1:0", None).map_err(|e| anyhow!("{e}"))?;
    let url = format!("http://{}", server.local_addr());
    let admin = Client::new(&url, None)
        .map_err(|e| anyhow!("{e}"))?
        .with_token(&admin_token)
        .with_timeout(Duration::from_secs(60));
    let yaml = fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(n, 20));
    let r =
        admin.request("PUT", "/v1/fleet", Some(("application/yaml", yaml.as_bytes()))).map_err(|e| anyhow!("{e}"))?;
    if r.status != 200 {
        bail!("the synthetic fleet was refused: {}", r.text());
    }
    let nodes: Vec<String> = cp.snapshot().nodes().keys().cloned().collect();
    let (tx, rx) = mpsc::channel::<(i64, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    eprint!("starting {} simulated agents…", nodes.len());
    for node in &nodes {
        let token = cp.create_token(None, "agent", node, None)?;
        let cfg = fleetwall_agent::Config {
            server: url.clone(),
            node: node.clone(),
            token,
            ca: None,
            state_dir: None,
            resync: Duration::from_secs(3600),
            poll: Duration::from_secs(30),
            gateways: Vec::new(),
        };
        let tx = tx.clone();
        let on = Box::new(move |e: &fleetwall_agent::Event| {
            if let fleetwall_agent::Event::Applied { revision, .. } = e {
                let _ = tx.send((*revision, Instant::now()));
            }
        });
        let mut agent =
            fleetwall_agent::Agent::new(cfg, Box::<fleetwall_agent::Memory>::default(), on).map_err(|e| anyhow!(e))?;
        let stop = stop.clone();
        handles.push(std::thread::Builder::new().stack_size(512 * 1024).spawn(move || agent.run(&stop))?);
    }
    // Every agent applies the initial revision first.
    let first = cp.snapshot().revision;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < nodes.len() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((rev, _)) if rev >= first => seen += 1,
            Ok(_) => {}
            Err(_) => bail!("only {seen} of {} agents applied the initial revision", nodes.len()),
        }
    }
    eprintln!(" all applied revision {first}");
    let mut lat = Vec::new();
    let mut wall = Vec::new();
    for k in 0..writes {
        let (rev, t0) = gateways_write(&admin, k)?;
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = t0;
        while got < nodes.len() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((r, at)) if r == rev => {
                    got += 1;
                    lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                    last = last.max(at);
                }
                Ok(_) => {}
                Err(_) => bail!("write {k}: only {got} of {} agents applied revision {rev} within 60 s", nodes.len()),
            }
        }
        wall.push(last.duration_since(t0).as_secs_f64() * 1000.0);
        eprint!("\rwrite {}/{writes}: all {} agents applied in {:.0} ms   ", k + 1, nodes.len(), wall[k]);
    }
    eprintln!();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Agents blocked in a long-poll notice the stop when it ends; do not wait for them.
    drop(handles);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    wall.sort_by(f64::total_cmp);
    Ok((lat, pct(&wall, 0.5)))
}

/// Latencies (ms) of `writes` writes on real agents in network namespaces, one per node
/// of a synthetic fleet of at least `n` nodes; and how many agents that was.
fn real(n: usize, writes: usize) -> Result<(Vec<f64>, usize)> {
    use fleetwall_lab::netns;
    use fleetwall_lab::topo::{Role, Topology};
    let gw_addr = "198.51.100.10";
    let yaml = fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(n, 20));
    let (fleet, _) = fleetwall_model::load(&yaml, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.ok_or_else(|| anyhow!("synthetic fleet invalid"))?;
    // Services have five nodes: 3 asked for are 5 nodes, each with its agent, and "all in
    // sync" means all of them (counting only the n asked for never matched: issue 16).
    let n = fleet.nodes().count();
    let prefix = netns::run_prefix();
    let mut hosts = vec![(Role::Gateway, vec![gw_addr.parse()?])];
    for (_, _, node) in fleet.nodes() {
        hosts.push((Role::Node(node.name.clone()), node.private.iter().chain(&node.public).copied().collect()));
    }
    // The synthetic fleet's gateways must include ours, so agents can reach the server.
    if !yaml.contains(&format!("management_gateways: [{gw_addr},")) {
        bail!("the synthetic fleet's first management gateway is not {gw_addr}");
    }
    let topo = Topology::build(&prefix, hosts).map_err(|e| anyhow!("{e}"))?;
    let gw = topo.hosts[0].netns.clone();
    eprintln!("real: {} namespaces up", topo.hosts.len());
    let (dir, cp, admin_token) = control_plane("real")?;
    // The server's listening socket is made inside the gateway namespace.
    let (cp2, gw2) = (cp.clone(), gw.clone());
    let server = std::thread::spawn(move || {
        netns::enter(&gw2).map_err(|e| anyhow!("{e}"))?;
        fleetwall_server::api::serve(cp2, &format!("{gw_addr}:8181"), None).map_err(|e| anyhow!("{e}"))
    })
    .join()
    .map_err(|_| anyhow!("server thread panicked"))??;
    eprintln!("real: server listening in {gw}");
    let in_gw = |f: Box<dyn FnOnce() -> Result<Value> + Send>| -> Result<Value> {
        let gw = gw.clone();
        std::thread::spawn(move || {
            netns::enter(&gw).map_err(|e| anyhow!("{e}"))?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("panicked"))?
    };
    let url = format!("http://{gw_addr}:8181");
    let (u, t) = (url.clone(), admin_token.clone());
    in_gw(Box::new(move || {
        let c = Client::new(&u, None).map_err(|e| anyhow!("{e}"))?.with_token(&t);
        let r =
            c.request("PUT", "/v1/fleet", Some(("application/yaml", yaml.as_bytes()))).map_err(|e| anyhow!("{e}"))?;
        if r.status != 200 {
            bail!("fleet refused: {}", r.text());
        }
        Ok(Value::Null)
    }))?;
    eprintln!("real: fleet loaded");
    let mut children = Vec::new();
    for h in topo.hosts.iter().skip(1) {
        let Role::Node(name) = &h.role else { continue };
        let token = cp.create_token(None, "agent", name, None)?;
        let state = dir.join(format!("state-{name}"));
        children.push(
            std::process::Command::new("ip")
                .args(["netns", "exec", &h.netns])
                .arg(std::env::current_exe()?)
                .args([
                    "agent",
                    "--server",
                    &url,
                    "--node",
                    name,
                    "--token",
                    &token,
                    "--metrics-listen",
                    "off",
                    "--state-dir",
                ])
                .arg(&state)
                .stderr(std::fs::File::create(dir.join(format!("agent-{name}.log")))?)
                .spawn()?,
        );
    }
    let all_in_sync = |cp: &fleetwall_server::ControlPlane, rev: i64| -> Option<Vec<i64>> {
        let rows = cp.status(|_| true).ok()?;
        (rows.len() == n && rows.iter().all(|r| r.state == "in-sync" && r.applied_revision >= Some(rev)))
            .then(|| rows.iter().filter_map(|r| r.applied_ms).collect())
    };
    let wait = |rev: i64| -> Result<Vec<i64>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = all_in_sync(&cp, rev) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("the real agents did not all apply revision {rev} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let result = (|| -> Result<Vec<f64>> {
        wait(cp.snapshot().revision)?;
        let mut lat = Vec::new();
        for k in 0..writes {
            let (u, t) = (url.clone(), admin_token.clone());
            let t0_ms = fleetwall_server::util::now_ms();
            let v = in_gw(Box::new(move || {
                let c = Client::new(&u, None).map_err(|e| anyhow!("{e}"))?.with_token(&t);
                let (rev, _) = gateways_write(&c, k)?;
                Ok(json!(rev))
            }))?;
            let rev = v.as_i64().unwrap_or(0);
            for applied in wait(rev)? {
                lat.push((applied - t0_ms) as f64);
            }
            eprint!("\rwrite {}/{writes} on {n} real agents   ", k + 1);
        }
        eprintln!();
        Ok(lat)
    })();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    server.shutdown();
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|lat| (lat, n))
}

/// Runs the rollout benchmark.
pub fn run(o: &Options) -> Result<Outcome> {
    let mut out = Vec::new();
    if o.real_agents > 0 {
        let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|x| x.stdout.starts_with(b"0\n"));
        if root {
            let (mut lat, agents) = real(o.real_agents, o.writes)?;
            lat.sort_by(f64::total_cmp);
            out.push(json!({ "scenario": format!("{agents} real agents (nftables in namespaces)"), "agents": agents, "writes": o.writes, "samples": lat.len(), "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) }));
        } else {
            eprintln!("fleetwall bench --rollout: real agents need root (network namespaces); skipped");
        }
    }
    if o.agents > 0 {
        let (mut lat, wall_p50) = simulated(o.agents, o.writes)?;
        lat.sort_by(f64::total_cmp);
        out.push(json!({ "scenario": format!("{} simulated agents (in-process, real server over HTTP)", o.agents), "agents": o.agents, "writes": o.writes, "samples": lat.len(), "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0), "all_applied_p50_ms": wall_p50 }));
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|r| {
                vec![
                    r["scenario"].as_str().unwrap_or("").to_string(),
                    r["samples"].to_string(),
                    format!("{:.0}", r["p50_ms"].as_f64().unwrap_or(f64::NAN)),
                    format!("{:.0}", r["p99_ms"].as_f64().unwrap_or(f64::NAN)),
                    format!("{:.0}", r["max_ms"].as_f64().unwrap_or(f64::NAN)),
                ]
            })
            .collect();
        print!("{}", crate::table::render(&["SCENARIO", "SAMPLES", "P50_MS", "P99_MS", "MAX_MS"], &rows));
        println!("latency: from sending the API write to the agent having applied the new ruleset");
    }
    Ok(Outcome::Ok)
}

//! `fleetwall bench --crowd`: one write → every agent has received its new ruleset, with
//! thousands of simulated agents on real HTTP long-polls against `fleetwall serve`
//! processes (one on SQLite, or several replicas on one PostgreSQL with `--db`).
//!
//! A process may open 20,000 files here, so the agents run in child processes of this
//! binary, at most [`PER_CHILD`] each, every one a task on a small tokio runtime with its
//! own connection: `GET /v1/nodes/{node}/ruleset?after=R&wait=50`, and on a 200 the body is
//! read and parsed whole and its revision becomes the next `after` (no kernel, no rendering:
//! what is measured is the server and the wire). The servers are child processes too, so
//! their memory, threads and descriptors are their own.
//!
//! Two writes, alternating: the platform's management gateways (every node's ruleset
//! changes, so every agent must receive one) and one service's `ip_filter` (only that
//! service's five nodes change). Latency is from sending the write to an agent having the
//! whole new ruleset; the write's own time (compile and commit) is reported beside it.

use crate::commands::Outcome;
use anyhow::{anyhow, bail, Context, Result};
use fleetwall_api::http::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most simulated agents (connections) in one child process.
pub const PER_CHILD: usize = 4_000;

/// Options.
pub struct Options {
    /// Simulated agents: the synthetic fleet has this many nodes (in services of five).
    pub agents: usize,
    /// Writes measured (alternating platform and ip_filter writes).
    pub writes: usize,
    /// `serve` replicas; more than one needs `db`.
    pub replicas: usize,
    /// A PostgreSQL URL for the replicas (an empty database of its own: it is loaded).
    pub db: Option<String>,
    /// JSON output.
    pub json: bool,
}

/// What a child process of agents is told, on its standard input.
#[derive(Serialize, Deserialize)]
struct ChildConfig {
    /// The servers' `host:port`.
    servers: Vec<String>,
    token: String,
    /// (index, node name, which server).
    nodes: Vec<(usize, String, usize)>,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The processes this benchmark started, killed (by PID) and reaped however it ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch directory removed however the benchmark ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Memory, threads and descriptors of a process, from /proc.
fn process_figures(pid: u32) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    json!({
        "rss_mb": field("VmRSS:").map(|kb| (kb / 1024.0).round()),
        "peak_rss_mb": field("VmHWM:").map(|kb| (kb / 1024.0).round()),
        "threads": field("Threads:"),
        "open_descriptors": fds,
    })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (in parentheses, which may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

fn wait_healthy(url: &str, within: Duration) -> Result<()> {
    let c = Client::new(url, None).map_err(|e| anyhow!("{e}"))?.with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + within;
    loop {
        if c.get("/healthz").is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer /healthz within {} s", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn platform_write(admin: &Client, k: usize) -> Result<i64> {
    let fleet = admin.get("/v1/fleet").map_err(|e| anyhow!("{e}"))?.json_body::<fleetwall_api::FleetRevision>()?;
    let mut platform = fleet.fleet["platform"].clone();
    let gws = platform["management_gateways"].as_array_mut().ok_or_else(|| anyhow!("no gateways"))?;
    if gws.len() > 4 {
        gws.pop();
    } else {
        gws.push(json!(format!("198.51.100.{}", 200 + k % 50)));
    }
    let r = admin.send_json("PUT", "/v1/platform", &platform).map_err(|e| anyhow!("{e}"))?;
    if r.status != 200 {
        bail!("the platform write was refused: {} (status {})", r.text(), r.status);
    }
    Ok(r.json_body::<fleetwall_api::Written>()?.revision)
}

fn ip_filter_write(admin: &Client, project: &str, service: &str, k: usize) -> Result<i64> {
    let path = format!(
        "/v1/projects/{}/services/{}/user_config",
        fleetwall_api::http::percent_encode(project),
        fleetwall_api::http::percent_encode(service)
    );
    // Within the service's VPC peering, so that its nodes' rulesets do change.
    let value = format!("ip_filter=['172.16.{}.0/24','10.0.0.0/24']", k % 200);
    let r = admin.send_json("PATCH", &path, &json!({ "config": [value] })).map_err(|e| anyhow!("{e}"))?;
    if r.status != 200 {
        bail!("the ip_filter write was refused: {} (status {})", r.text(), r.status);
    }
    Ok(r.json_body::<fleetwall_api::Written>()?.revision)
}

/// The parent: servers, children, writes, figures.
pub fn run(o: &Options) -> Result<Outcome> {
    if std::env::var_os("FLEETWALL_BENCH_CROWD_CHILD").is_some() {
        return child().map(|()| Outcome::Ok);
    }
    if o.replicas == 0 || (o.replicas > 1 && o.db.is_none()) {
        bail!("--replicas {} needs --db with a PostgreSQL URL (one replica runs on SQLite)", o.replicas);
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark with `cargo run --release -- bench --crowd`");
    }
    let _ = fleetwall_server::web::raise_open_files_limit();
    let exe = std::env::current_exe().context("cannot find the fleetwall binary")?;
    let dir = std::env::temp_dir().join(format!("fleetwall-crowd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch(dir.clone());
    let yaml = fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(o.agents, 20));
    let fleet_file = dir.join("fleet.yaml");
    std::fs::write(&fleet_file, &yaml)?;
    let (fleet, _) = fleetwall_model::load(&yaml, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.ok_or_else(|| anyhow!("the synthetic fleet is invalid"))?;
    let nodes: Vec<String> = fleet.nodes().map(|(_, _, n)| n.name.clone()).collect();
    let (project, service, service_nodes) = {
        let (p, s, _) = fleet.nodes().next().ok_or_else(|| anyhow!("no nodes"))?;
        let names: Vec<String> = fleet
            .nodes()
            .filter(|(p2, s2, _)| p2.name == p.name && s2.name == s.name)
            .map(|(_, _, n)| n.name.clone())
            .collect();
        (p.name.clone(), s.name.clone(), names)
    };
    let token_file = dir.join("admin.token");
    let mut procs = Children::default();
    let mut servers = Vec::new();
    let started = Instant::now();
    for r in 0..o.replicas {
        let port = free_port()?;
        let data = dir.join(format!("replica-{r}"));
        let mut cmd = Command::new(&exe);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .arg("--admin-token-file")
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("serve-{r}.log")))?);
        if r == 0 {
            cmd.arg("--fleet").arg(&fleet_file);
        }
        if let Some(db) = &o.db {
            cmd.args(["--db", db]);
        }
        let child = cmd.spawn().context("cannot start fleetwall serve")?;
        let pid = child.id();
        procs.0.push(child);
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&url, Duration::from_secs(600))?;
        eprintln!("crowd: replica {r} (pid {pid}) serves {url} after {:.1} s", started.elapsed().as_secs_f64());
        servers.push((format!("127.0.0.1:{port}"), pid, url));
    }
    let admin_token = std::fs::read_to_string(&token_file)?.trim().to_string();
    let admin = Client::new(&servers[0].2, None)
        .map_err(|e| anyhow!("{e}"))?
        .with_token(&admin_token)
        .with_timeout(Duration::from_secs(120));
    let idle_figures: Vec<Value> = servers.iter().map(|(_, pid, _)| process_figures(*pid)).collect();

    // The agents, in children of PER_CHILD at most.
    let (tx, rx) = mpsc::channel::<(usize, i64, u64)>();
    let indexed: Vec<(usize, String, usize)> =
        nodes.iter().enumerate().map(|(i, n)| (i, n.clone(), i % servers.len())).collect();
    for chunk in indexed.chunks(PER_CHILD) {
        let config = ChildConfig {
            servers: servers.iter().map(|(a, _, _)| a.clone()).collect(),
            token: admin_token.clone(),
            nodes: chunk.to_vec(),
        };
        let mut child = Command::new(&exe)
            .args(["bench", "--crowd"])
            .env("FLEETWALL_BENCH_CROWD_CHILD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("agents-{}.log", procs.0.len())))?)
            .spawn()
            .context("cannot start a child of simulated agents")?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        serde_json::to_writer(&mut stdin, &config)?;
        drop(stdin);
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut f = line.split(' ');
                let (Some(i), Some(rev), Some(t)) = (f.next(), f.next(), f.next()) else { continue };
                if let (Ok(i), Ok(rev), Ok(t)) = (i.parse(), rev.parse(), t.parse()) {
                    if tx.send((i, rev, t)).is_err() {
                        return;
                    }
                }
            }
        });
        procs.0.push(child);
    }
    drop(tx);
    let n = nodes.len();
    eprint!("crowd: {n} simulated agents in {} processes connecting…", n.div_ceil(PER_CHILD));
    // (node, revision) → when that agent had it.
    let mut seen: HashMap<(usize, i64), u64> = HashMap::new();
    let mut have = vec![false; n];
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((i, rev, t)) => {
                seen.insert((i, rev), t);
                if i < n && !have[i] {
                    have[i] = true;
                    count += 1;
                }
            }
            Err(_) => bail!("only {count} of {n} agents received their first ruleset"),
        }
    }
    eprintln!(" all have their ruleset after {:.1} s", started.elapsed().as_secs_f64());
    // Let the long-polls settle into waiting.
    std::thread::sleep(Duration::from_secs(2));
    let waiting_figures: Vec<Value> = servers.iter().map(|(_, pid, _)| process_figures(*pid)).collect();
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let everyone: Vec<usize> = (0..n).collect();
    let affected: Vec<usize> = service_nodes.iter().filter_map(|s| index.get(s.as_str()).copied()).collect();
    let mut rows = Vec::new();
    let server_pids: Vec<u32> = servers.iter().map(|(_, pid, _)| *pid).collect();
    let agent_pids: Vec<u32> = procs.0.iter().map(Child::id).filter(|p| !server_pids.contains(p)).collect();
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    for (kind, targets) in [("platform", &everyone), ("ip_filter", &affected)] {
        let (server_cpu0, agents_cpu0) = (cpu(&server_pids), cpu(&agent_pids));
        let mut lat = Vec::new();
        let mut write_ms = Vec::new();
        let mut all_ms = Vec::new();
        let mut fanout_ms = Vec::new();
        for k in 0..o.writes {
            let t0 = now_us();
            let rev = match kind {
                "platform" => platform_write(&admin, k)?,
                _ => ip_filter_write(&admin, &project, &service, k)?,
            };
            write_ms.push((now_us() - t0) as f64 / 1000.0);
            let deadline = Instant::now() + Duration::from_secs(120);
            let missing =
                |seen: &HashMap<(usize, i64), u64>| targets.iter().filter(|&&i| !seen.contains_key(&(i, rev))).count();
            while missing(&seen) > 0 {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok((i, r, t)) => {
                        seen.insert((i, r), t);
                    }
                    Err(_) => bail!(
                        "{kind} write {k}: {} of {} agents did not receive revision {rev} within 120 s",
                        missing(&seen),
                        targets.len()
                    ),
                }
            }
            let (mut first, mut last) = (f64::MAX, 0f64);
            for i in targets.iter() {
                let ms = (seen[&(*i, rev)].saturating_sub(t0)) as f64 / 1000.0;
                first = first.min(ms);
                last = last.max(ms);
                lat.push(ms);
            }
            all_ms.push(last);
            fanout_ms.push(last - first);
            eprint!(
                "\rcrowd: {kind} write {}/{}: {} agents had it within {last:.0} ms   ",
                k + 1,
                o.writes,
                targets.len()
            );
        }
        eprintln!();
        lat.sort_by(f64::total_cmp);
        write_ms.sort_by(f64::total_cmp);
        all_ms.sort_by(f64::total_cmp);
        fanout_ms.sort_by(f64::total_cmp);
        rows.push(json!({
            "write": kind,
            "agents": n,
            "replicas": servers.len(),
            "agents_receiving": targets.len(),
            "writes": o.writes,
            "samples": lat.len(),
            "p50_ms": pct(&lat, 0.5),
            "p99_ms": pct(&lat, 0.99),
            "max_ms": pct(&lat, 1.0),
            "write_p50_ms": pct(&write_ms, 0.5),
            "all_received_p50_ms": pct(&all_ms, 0.5),
            // From the first agent having the new ruleset to the last: the fan-out alone,
            // without the write's compile and commit.
            "fanout_p50_ms": pct(&fanout_ms, 0.5),
            "fanout_max_ms": pct(&fanout_ms, 1.0),
            // CPU seconds per write, of the servers and of the simulated agents.
            "server_cpu_s_per_write": (cpu(&server_pids) - server_cpu0) / o.writes as f64,
            "agents_cpu_s_per_write": (cpu(&agent_pids) - agents_cpu0) / o.writes as f64,
        }));
    }
    let after_figures: Vec<Value> = servers.iter().map(|(_, pid, _)| process_figures(*pid)).collect();
    let report = json!({
        "rows": rows,
        "servers": { "before_agents": idle_figures, "agents_waiting": waiting_figures, "after_writes": after_figures },
    });
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let f = |k: &str| format!("{:.0}", r[k].as_f64().unwrap_or(f64::NAN));
                vec![
                    r["write"].as_str().unwrap_or("").to_string(),
                    r["agents"].to_string(),
                    r["replicas"].to_string(),
                    r["agents_receiving"].to_string(),
                    r["samples"].to_string(),
                    f("write_p50_ms"),
                    f("p50_ms"),
                    f("p99_ms"),
                    f("max_ms"),
                    f("fanout_p50_ms"),
                    f("fanout_max_ms"),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::table::render(
                &[
                    "WRITE",
                    "AGENTS",
                    "REPLICAS",
                    "RECEIVING",
                    "SAMPLES",
                    "WRITE_MS",
                    "P50_MS",
                    "P99_MS",
                    "MAX_MS",
                    "FANOUT_P50",
                    "FANOUT_MAX"
                ],
                &table
            )
        );
        println!("latency: from sending the write to a simulated agent having read its new ruleset (WRITE_MS: the write's own answer;");
        println!("FANOUT: from the first agent having it to the last, i.e. without the write's compile and commit)");
        for r in &rows {
            println!(
                "{} write: {:.2} CPU s in the servers and {:.2} in the simulated agents per write",
                r["write"].as_str().unwrap_or(""),
                r["server_cpu_s_per_write"].as_f64().unwrap_or(f64::NAN),
                r["agents_cpu_s_per_write"].as_f64().unwrap_or(f64::NAN)
            );
        }
        for (r, (f0, f1)) in waiting_figures.iter().zip(&after_figures).enumerate() {
            println!(
                "replica {r}: {} descriptors, {} threads, {} MB resident with the agents waiting; {} MB peak after the writes",
                f0["open_descriptors"], f0["threads"], f0["rss_mb"], f1["peak_rss_mb"]
            );
        }
    }
    drop(procs);
    drop(scratch);
    Ok(Outcome::Ok)
}

/// A child: its agents' long-polls, one line `INDEX REVISION UNIX_MICROS` per ruleset received.
fn child() -> Result<()> {
    let config: ChildConfig = serde_json::from_reader(std::io::stdin().lock()).context("bad child configuration")?;
    let limit = fleetwall_server::web::raise_open_files_limit()?;
    if limit < config.nodes.len() as u64 + 64 {
        bail!("{} agents need more descriptors than the limit of {limit}", config.nodes.len());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64, u64)>();
        let servers: Vec<std::net::SocketAddr> =
            config.servers.iter().map(|s| s.parse()).collect::<Result<_, _>>().map_err(|e| anyhow!("{e}"))?;
        let token: std::sync::Arc<str> = config.token.into();
        for (k, (i, node, server)) in config.nodes.into_iter().enumerate() {
            tokio::spawn(agent(i, node, servers[server], token.clone(), tx.clone()));
            if k % 200 == 199 {
                // Not all at once: the listen backlog is finite.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        drop(tx);
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        while let Some((i, rev, t)) = rx.recv().await {
            writeln!(out, "{i} {rev} {t}")?;
            if rx.is_empty() {
                out.flush()?;
            }
        }
        Ok(())
    })
}

/// One simulated agent: long-polls its node's ruleset for ever, reconnecting when needed.
async fn agent(
    i: usize,
    node: String,
    server: std::net::SocketAddr,
    token: std::sync::Arc<str>,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, i64, u64)>,
) {
    use http_body_util::{BodyExt, Empty};
    let mut after = -1i64;
    let host = server.to_string();
    let bearer = format!("Bearer {token}");
    loop {
        let Ok(tcp) = tokio::net::TcpStream::connect(server).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            let path = fleetwall_api::client::paths::ruleset(&node, after, Duration::from_secs(50));
            let Ok(req) = hyper::Request::get(path)
                .header("host", &host)
                .header("authorization", &bearer)
                .body(Empty::<bytes::Bytes>::new())
            else {
                return;
            };
            let Ok(resp) = sender.send_request(req).await else { break };
            let status = resp.status().as_u16();
            let Ok(body) = resp.into_body().collect().await else { break };
            match status {
                200 => {
                    let Ok(r) = serde_json::from_slice::<fleetwall_api::RulesetResponse<Value>>(&body.to_bytes())
                    else {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    };
                    after = r.revision;
                    if tx.send((i, r.revision, now_us())).is_err() {
                        return;
                    }
                }
                304 => {}
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v, 1.0), 100.0);
        assert!(pct(&[], 0.5).is_nan());
    }

    #[test]
    fn process_figures_of_this_process() {
        let f = process_figures(std::process::id());
        assert!(f["rss_mb"].as_f64().unwrap() > 0.0);
        assert!(f["threads"].as_f64().unwrap() >= 1.0);
        assert!(f["open_descriptors"].as_u64().unwrap() >= 3);
        let before = cpu_seconds(std::process::id());
        let mut x = 0u64;
        while cpu_seconds(std::process::id()) <= before {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        assert!(cpu_seconds(std::process::id()) > before, "{x}");
    }

    #[test]
    fn the_child_configuration_round_trips() {
        let c =
            ChildConfig { servers: vec!["127.0.0.1:1".into()], token: "t".into(), nodes: vec![(3, "n a".into(), 0)] };
        let back: ChildConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!((back.nodes[0].0, back.nodes[0].1.as_str()), (3, "n a"));
    }
}

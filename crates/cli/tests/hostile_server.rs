//! Regression for nft injection through the agent (issue 8, finding 1): a hostile control
//! plane, or anyone on the path of a plain-HTTP connection, fed the agent rulesets whose
//! description, set names or reasons carried `flush ruleset`, `delete table …` or
//! `include "/file"`; the agent rendered them into `nft -f` and another tool's table was
//! wiped, or a file came back in the status report.
//!
//! Here a fake server (real HTTP on loopback) feeds each hostile string to a real agent
//! that programs a network namespace this test creates. A foreign `table inet hostfw` in
//! that namespace must survive byte-identical, no table but ours may appear or vanish,
//! refused rulesets must leave the last applied one in force and be reported as refused,
//! and no secret file content may reach the status report.

mod common;

use common::{kernel_available, root, Namespaces, Scratch};
use fleetwall_agent::{Agent, Config, Nft};
use fleetwall_server::web::{Handler, Request, Response, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A namespace of this test, removed on drop (also when the test fails).
struct Ns {
    name: String,
    _all: Namespaces,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let all = Namespaces::new();
        Ns { name: all.create(tag), _all: all }
    }
    fn nft(&self, args: &[&str]) -> String {
        fleetwall_apply::run(Some(&self.name), "nft", args, None).expect("nft in the test namespace")
    }
}

/// Another tool's table, which nothing of ours may touch.
const HOSTFW: &str = "table inet hostfw {
	set keep4 {
		type ipv4_addr
		elements = { 192.0.2.1 }
	}
	chain input {
		type filter hook input priority 10; policy accept;
		tcp dport 4444 accept comment \"theirs\"
	}
}
";

/// What the fake server serves: the revision and the JSON body of the ruleset response.
#[derive(Default)]
struct Fake {
    revision: i64,
    body: Value,
    reports: Vec<Value>,
}

fn fake_server(state: Arc<Mutex<Fake>>) -> Server {
    let handler: Handler = Arc::new(move |req: Request| {
        if req.method == "PUT" && req.path.ends_with("/status") {
            let v: Value = req.json().unwrap_or(Value::Null);
            state.lock().unwrap().reports.push(v);
            return Response::json(200, &json!({}));
        }
        let after: i64 = req.query("after").and_then(|a| a.parse().ok()).unwrap_or(-1);
        let (rev, body) = {
            let s = state.lock().unwrap();
            (s.revision, s.body.clone())
        };
        if rev > after {
            return Response::json(200, &body);
        }
        std::thread::sleep(Duration::from_millis(100));
        Response::new(304, "", "")
    });
    Server::bind("127.0.0.1:0", None, handler).expect("bind the fake server")
}

/// A real node's ruleset, as the real server would send it.
fn benign() -> Value {
    let text = std::fs::read_to_string(root().join("examples/public-pg.yaml")).unwrap();
    let (fleet, diags) = fleetwall_model::load(&text, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.unwrap_or_else(|| panic!("the example loads: {diags:?}"));
    let rs = fleetwall_compile::compile(&fleet).into_iter().find(|r| r.node == "pg-main-1").expect("pg-main-1");
    serde_json::to_value(&rs).unwrap()
}

fn serve(state: &Arc<Mutex<Fake>>, ruleset: Value) -> i64 {
    // A hostile server can always send a hash that matches its own rendering; the agent
    // must not rely on it. Valid rulesets get the real hash so they can apply.
    let hash = serde_json::from_value::<fleetwall_ir::NodeRuleset>(ruleset.clone())
        .map(|rs| fleetwall_agent::ruleset_hash(&rs))
        .unwrap_or_else(|_| "0".repeat(64));
    let mut s = state.lock().unwrap();
    s.revision += 1;
    s.body = json!({ "fleet_revision": s.revision, "node": "pg-main-1", "revision": s.revision, "hash": hash, "ruleset": ruleset });
    s.revision
}

/// Waits for a status report satisfying `ok`; returns it.
fn report_where(state: &Arc<Mutex<Fake>>, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = state.lock().unwrap().reports.iter().rev().find(|r| ok(r)) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no status report {what}; got {:?}", state.lock().unwrap().reports);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tables(ns: &Ns) -> Vec<String> {
    let mut t: Vec<String> = ns.nft(&["list", "tables"]).lines().map(str::to_string).collect();
    t.sort();
    t
}

#[test]
fn a_hostile_server_cannot_touch_another_table_or_read_files() {
    if !kernel_available() {
        return;
    }
    let ns = Ns::new("n");
    fleetwall_apply::run(Some(&ns.name), "nft", &["-f", "-"], Some(HOSTFW)).expect("load the foreign table");
    let foreign = ns.nft(&["list", "table", "inet", "hostfw"]);
    let secret = Scratch::new("hostile");
    let secret_file = secret.0.join("secret.nft");
    std::fs::write(&secret_file, "# TOPSECRET-4711\n").unwrap();
    let secret_path = secret_file.display().to_string();

    let state = Arc::new(Mutex::new(Fake::default()));
    let server = fake_server(state.clone());
    let good = benign();
    let r1 = serve(&state, good.clone());

    let cfg = Config {
        server: format!("http://{}", server.local_addr()),
        node: "pg-main-1".into(),
        token: "fw_fake".into(),
        ca: None,
        state_dir: Some(secret.0.join("agent")),
        resync: Duration::from_secs(3600),
        poll: Duration::from_millis(300),
        gateways: Vec::new(),
    };
    let mut agent = Agent::new(cfg, Box::new(Nft::new(Some(ns.name.clone()))), Box::new(|_| {})).expect("an agent");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let runner = std::thread::spawn(move || agent.run(&stop2));
    report_where(&state, "for the first ruleset", |r| r["revision"] == r1 && r["error"].is_null());
    let ours = ns.nft(&["-s", "list", "table", "inet", "fleetwall"]);
    let expected_tables = tables(&ns);
    assert_eq!(expected_tables, vec!["table inet fleetwall".to_string(), "table inet hostfw".to_string()]);

    let set_name = good["sets"][0]["name"].as_str().unwrap().to_string();
    let rename_set = |new: &str| {
        let text = serde_json::to_string(&good).unwrap().replace(&format!("\"{set_name}\""), &json!(new).to_string());
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let include = format!("x\ninclude \"{secret_path}\"\n");
    let refused: Vec<(&str, Value)> = vec![
        ("a description that flushes the ruleset", with(&|v| v["description"] = json!("x\nflush ruleset\n"))),
        ("a description that includes a file", with(&|v| v["description"] = json!(include))),
        ("a node name with a newline", with(&|v| v["node"] = json!("pg-main-1\nflush ruleset"))),
        (
            "a set name that deletes another table",
            rename_set("ipf4 {\n}\n}\ndelete table inet hostfw\ntable inet fleetwall {\nset ipf4"),
        ),
        ("a set name that includes a file", rename_set(&format!("x {{ }}\ninclude \"{secret_path}\"\nset y"))),
        ("a rule id that ends the comment", with(&|v| v["input"][0]["id"] = json!("x\" ; flush ruleset ; #"))),
        ("a rule reason with a line break", with(&|v| v["input"][0]["reason"] = json!("x\r\nflush ruleset\n"))),
        ("a set reason with a line break", with(&|v| v["sets"][0]["reason"] = json!("x\ndelete table inet hostfw"))),
        (
            "a member reason with a line break",
            with(&|v| v["sets"][0]["members"][0]["reason"] = json!("x\u{2028}flush ruleset")),
        ),
        ("another node's ruleset", with(&|v| v["node"] = json!("pg-main-2"))),
    ];
    let mut in_force = r1;
    for (what, hostile) in refused {
        let rev = serve(&state, hostile);
        let needle = format!("refused the ruleset of revision {rev}");
        let r = report_where(&state, &format!("refusing {what}"), |r| {
            r["error"].as_str().is_some_and(|e| e.contains(&needle))
        });
        assert_eq!(r["revision"], in_force, "{what}: the last applied ruleset stays in force");
        assert!(!r.to_string().contains("TOPSECRET"), "{what}: the report leaks the file: {r}");
        assert_eq!(ns.nft(&["list", "table", "inet", "hostfw"]), foreign, "{what}: the foreign table changed");
        assert_eq!(tables(&ns), expected_tables, "{what}: the set of tables changed");
        assert_eq!(ns.nft(&["-s", "list", "table", "inet", "fleetwall"]), ours, "{what}: our table changed");
        // Back to a good ruleset under a new revision (resets the agent's backoff).
        let back = serve(&state, good.clone());
        report_where(&state, &format!("after {what}"), |r| r["revision"] == back && r["error"].is_null());
        in_force = back;
    }

    // Free text that validation lets through is escaped: a reason full of quotes and
    // semicolons applies as plain comment text.
    let quoted = with(&|v| {
        v["description"] = json!("\"; flush ruleset; # \\\" {}");
        v["input"][0]["reason"] = json!("\" ; delete table inet hostfw ; \"");
    });
    let rev = serve(&state, quoted);
    report_where(&state, "for the quoted ruleset", |r| r["revision"] == rev && r["error"].is_null());
    assert_eq!(ns.nft(&["list", "table", "inet", "hostfw"]), foreign, "the foreign table changed");
    assert_eq!(tables(&ns), expected_tables);
    assert!(ns.nft(&["list", "table", "inet", "fleetwall"]).contains("' ; delete table inet hostfw ; '"));

    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap();
    drop(server);
}

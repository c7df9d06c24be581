//! The CLI as a user meets it: exit codes, messages, JSON shapes.

mod common;
use common::*;

#[test]
fn check_accepts_every_example() {
    for (_, path) in examples() {
        let out = ok(&["check", path.to_str().unwrap()]);
        assert!(out.contains(": ok: "), "{out}");
    }
}

#[test]
fn check_reports_every_problem_with_location_and_exits_1() {
    let s = Scratch::new("cli");
    let f = s.0.join("bad.yaml");
    std::fs::write(
        &f,
        "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects:\n  p:\n    base_port: 99\n    services:\n      db:\n        type: postgress\n        cloud: aws-eu-west-1\n        nodes: { db-1: { public: 203.0.113.5 } }\n        user_config: { ip_filter: [10.0.0.1/8] }\n",
    )
    .unwrap();
    let out = fleetwall(&["check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("error[base-port-range]: base_port is outside 10000–30000"), "{text}");
    assert!(text.contains("bad.yaml:5:16"), "{text}");
    assert!(text.contains("error[host-bits]") && text.contains("did you mean the network 10.0.0.0/8?"), "{text}");
    assert!(text.contains("error[unknown-service-type]"), "{text}");
    assert!(text.trim_end().ends_with("3 errors"), "{text}");

    let json = fleetwall(&["check", f.to_str().unwrap(), "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 3);
    assert_eq!(v["diagnostics"][0]["line"], 5);
    assert_eq!(v["diagnostics"][0]["code"], "base-port-range");
}

#[test]
fn environment_problems_exit_2() {
    let out = fleetwall(&["check", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read fleet file does/not/exist.yaml"));
    assert_eq!(fleetwall(&["plan"]).status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn plan_for_an_unknown_node_suggests_one() {
    let out = fleetwall(&["plan", "examples/public-pg.yaml", "--node", "pg-main-3x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `pg-main-1`?"));
}

#[test]
fn plan_refuses_an_invalid_fleet() {
    let s = Scratch::new("cli");
    let f = s.0.join("bad.yaml");
    std::fs::write(&f, "version: 2\n").unwrap();
    let out = fleetwall(&["plan", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing half-rendered");
}

#[test]
fn ports_json_has_the_stable_keys() {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["ports", "examples/kafka-vpc.yaml", "--format", "json"])).unwrap();
    let rows = v.as_array().unwrap();
    let keys: Vec<&str> = rows[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["address", "component", "node", "port", "project", "protocol", "route", "service"]);
    let routes: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert_eq!(routes.into_iter().collect::<Vec<_>>(), ["cluster", "dynamic", "privatelink", "public"]);
    let kafka_pl = rows.iter().find(|r| r["component"] == "kafka" && r["route"] == "privatelink").unwrap();
    let kafka_dyn = rows.iter().find(|r| r["component"] == "kafka" && r["route"] == "dynamic").unwrap();
    assert_ne!(kafka_pl["port"], kafka_dyn["port"], "Kafka gets its own private-link port");
}

#[test]
fn no_base_port_ports_are_in_range_and_stable() {
    let a = ok(&["ports", "examples/no-base-port.yaml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    for r in v.as_array().unwrap() {
        let p = r["port"].as_u64().unwrap();
        assert!((10000..=30000).contains(&p) || p == 443, "{r}");
    }
    assert_eq!(a, ok(&["ports", "examples/no-base-port.yaml", "--format", "json"]));
}

#[test]
fn check_refuses_an_alias_bomb_within_512_mib_of_address_space() {
    // Seven levels of ten nested aliases (256 bytes here) expanded to 10^7 nodes and
    // 1.85 GB, and aborted `check`; 512 MiB of address space is far below that.
    let s = Scratch::new("cli");
    let f = s.0.join("bomb.yaml");
    let mut src = "a: &a [x,x,x,x,x,x,x,x,x,x]\n".to_string();
    for (prev, name) in ["a", "b", "c", "d", "e", "f"].iter().zip(["b", "c", "d", "e", "f", "g"]) {
        src.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(",")));
    }
    std::fs::write(&f, &src).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwall"));
    cmd.args(["check", f.to_str().unwrap()]).current_dir(root());
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let limit = libc::rlimit { rlim_cur: 512 << 20, rlim_max: 512 << 20 };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text.contains("error[alias-expansion]: YAML aliases expand this document past 10000 nodes"), "{text}");
    assert!(text.contains("bomb.yaml:4:29"), "{text}");
    assert!(text.contains("= hint: write the values out, or use fewer nested aliases"), "{text}");
}

#[test]
fn a_closed_pipe_panicked_with_failed_printing_to_stdout() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["synth", "--nodes", "3000"][..], &["plan", "examples/kafka-vpc.yaml", "--format", "json"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwall"))
            .args(args)
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away at once, like `| head -0`.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        // Ended by SIGPIPE like any Unix tool (or done before it noticed), never a panic (101).
        assert!(out.status.signal() == Some(libc::SIGPIPE) || out.status.success(), "{args:?}: {:?}", out.status);
    }
}

#[test]
fn a_big_fleet_flooded_the_terminal_with_warnings() {
    let s = Scratch::new("flood");
    let f = s.0.join("big.yaml");
    std::fs::write(&f, ok(&["synth", "--nodes", "1000"])).unwrap();
    let path = f.to_str().unwrap();
    let out = fleetwall(&["plan", path, "--node", "p0-s0-n0"]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.lines().count() < 100, "{} lines of warnings for one node", err.lines().count());
    assert!(err.contains("warnings not shown (`--all-warnings` lists them)"), "{err}");
    assert_eq!(err.matches("warning[unreachable-entry]").count(), 5, "the first 5 of a kind in full");
    let all = fleetwall(&["plan", path, "--node", "p0-s0-n0", "--all-warnings"]);
    assert!(String::from_utf8(all.stderr).unwrap().matches("warning[unreachable-entry]").count() > 5);
    let quiet = fleetwall(&["check", path, "-q"]);
    assert_eq!(quiet.status.code(), Some(0));
    let text = String::from_utf8(quiet.stdout).unwrap();
    assert!(!text.contains("warning["), "{text}");
    assert!(text.contains(": ok: "), "the summary stays: {text}");
    assert_eq!(fleetwall(&["check", path, "--deny-warnings", "-q"]).status.code(), Some(1));
    assert_eq!(fleetwall(&["plan", path, "--node", "p0-s0-n0", "--deny-warnings"]).status.code(), Some(1));
}

#[test]
fn plan_json_for_a_whole_fleet_was_not_one_json_document() {
    let out = ok(&["plan", "examples/kafka-vpc.yaml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let nodes: Vec<&str> = v["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["kafka-events-1", "kafka-events-2", "kafka-events-3"]);
}

#[test]
fn check_could_not_read_a_fleet_from_stdin() {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let src = std::fs::read(root().join("examples/public-pg.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(&src).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("<stdin>: ok: "));
}

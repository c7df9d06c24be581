//! Kernel tests of the drivers, each in network namespaces the test creates and removes
//! (also when it fails): a set delta leaves the kernel exactly as a full replace of the
//! same ruleset would, a structure change takes the full path, a refused delta falls back
//! to a full replace, and what the drivers observe after a delta is what they expect.

use fleetwall_apply::{run, Dataplane, How, Iptables, Mode, Nft};
use fleetwall_ir::NodeRuleset;

/// A namespace of the test's own, removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("fw-dp-{}-{tag}", std::process::id());
        let _ = run(None, "ip", &["netns", "del", &name], None);
        run(None, "ip", &["netns", "add", &name], None)
            .unwrap_or_else(|e| panic!("KERNEL TESTS CANNOT RUN (root, iproute2, nftables needed): {e}"));
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(None, "ip", &["netns", "del", &self.0], None);
    }
}

/// The ruleset of node pg-1 of a public PostgreSQL service whose ip_filter is `entries`
/// and whose ports start at `base_port`.
fn ruleset(entries: &[String], base_port: u16) -> NodeRuleset {
    let mut with_v6 = entries.to_vec();
    with_v6.push("2001:db8:1::/48".into());
    ruleset_of(&with_v6, base_port)
}

/// Like [`ruleset`], without the IPv6 entry it adds.
fn ruleset_of(entries: &[String], base_port: u16) -> NodeRuleset {
    let list: Vec<String> = entries.iter().map(|e| format!("\"{e}\"")).collect();
    let yaml = format!(
        "version: 1\nplatform:\n  management_gateways: [198.51.100.10, \"2001:db8:ffff::10\"]\nprojects:\n  p:\n    \
         base_port: {base_port}\n    services:\n      pg:\n        type: pg\n        cloud: aws-eu-west-1\n        \
         nodes:\n          pg-1: {{ public: [203.0.113.5, \"2001:db8:5::5\"] }}\n        user_config:\n          \
         ip_filter: [{}]\n",
        list.join(", ")
    );
    let (fleet, diags) = fleetwall_model::load(&yaml, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.unwrap_or_else(|| panic!("the test fleet is invalid: {:?}", diags.items));
    fleetwall_compile::compile(&fleet).into_iter().find(|rs| rs.node == "pg-1").expect("node pg-1")
}

/// `n` separate /32s (every other address, so nothing aggregates).
fn hosts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("11.0.{}.{}/32", (2 * i) >> 8, (2 * i) & 255)).collect()
}

/// `nft -j list table inet fleetwall` without handles (they count loads, not content).
fn listing(ns: &str) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("handle");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = run(Some(ns), "nft", &["-j", "list", "table", "inet", "fleetwall"], None).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    strip(&mut v);
    v
}

/// The kernel after `steps` loaded in order by one driver, against `last` loaded in full
/// into a fresh namespace.
fn same_as_full(tag: &str, steps: &[(&NodeRuleset, Mode)]) {
    let (delta_ns, full_ns) = (Netns::new(&format!("{tag}d")), Netns::new(&format!("{tag}f")));
    let nft = Nft::new(Some(delta_ns.0.clone()));
    for (i, (rs, mode)) in steps.iter().enumerate() {
        assert_eq!(nft.load(rs, How::Auto).unwrap(), *mode, "step {i}");
    }
    let last = steps.last().unwrap().0;
    assert_eq!(Nft::new(Some(full_ns.0.clone())).load(last, How::Full).unwrap(), Mode::Full);
    assert_eq!(listing(&delta_ns.0), listing(&full_ns.0), "the delta left the kernel as a full replace would");
    let seen = nft.observe().unwrap().expect("our table");
    assert_eq!(seen.fingerprint, nft.expected(last).unwrap(), "no drift is seen after a delta");
}

#[test]
fn a_set_delta_leaves_the_kernel_as_a_full_replace_would() {
    let base = hosts(300);
    let a = ruleset(&base, 12000);
    let mut more = base.clone();
    more.push("11.9.9.9/32".into());
    let b = ruleset(&more, 12000);
    // 11.0.0.1 joins 11.0.0.0 into a /31 (one element out, one in); 11.0.0.4 leaves.
    let mut changed = more.clone();
    changed.push("11.0.0.1/32".into());
    changed.retain(|e| e != "11.0.0.4/32");
    let c = ruleset(&changed, 12000);
    same_as_full(
        "d",
        &[
            (&a, Mode::Full),
            (&b, Mode::Delta { added: 1, removed: 0 }),
            (&c, Mode::Delta { added: 1, removed: 2 }),
            (&c, Mode::Delta { added: 0, removed: 0 }),
        ],
    );
}

#[test]
fn a_structure_change_takes_the_full_path() {
    let a = ruleset(&hosts(50), 12000);
    let moved = ruleset(&hosts(51), 13000);
    assert_ne!(a.input, moved.input, "the ports moved");
    same_as_full("s", &[(&a, Mode::Full), (&moved, Mode::Full)]);
}

#[test]
fn a_refused_delta_falls_back_to_a_full_replace() {
    let ns = Netns::new("r");
    let nft = Nft::new(Some(ns.0.clone()));
    let a = ruleset(&hosts(20), 12000);
    nft.load(&a, How::Auto).unwrap();
    // Someone removes an element by hand; the delta that removes it too is refused whole.
    run(Some(&ns.0), "nft", &["delete", "element", "inet", "fleetwall", "ipf4", "{ 11.0.0.2 }"], None).unwrap();
    let mut fewer = hosts(20);
    fewer.retain(|e| e != "11.0.0.2/32");
    fewer.push("11.9.9.9/32".into());
    let b = ruleset(&fewer, 12000);
    assert_eq!(nft.load(&b, How::Auto).unwrap(), Mode::Full);
    let text = run(Some(&ns.0), "nft", &["list", "set", "inet", "fleetwall", "ipf4"], None).unwrap();
    assert!(text.contains("11.9.9.9") && !text.contains("11.0.0.2,"), "{text}");
    assert_eq!(nft.observe().unwrap().unwrap().fingerprint, nft.expected(&b).unwrap());
}

#[test]
fn iptables_set_deltas_go_to_the_ipsets_and_match_a_full_load() {
    let (ns, full_ns) = (Netns::new("i"), Netns::new("if"));
    let ipt = Iptables::new(Some(ns.0.clone()));
    let a = ruleset(&hosts(100), 12000);
    assert_eq!(ipt.load(&a, How::Auto).unwrap(), Mode::Full);
    assert_eq!(ipt.observe().unwrap().unwrap().fingerprint, ipt.expected(&a).unwrap());
    let mut changed = hosts(100);
    changed.push("11.0.0.1/32".into());
    changed.push("11.9.9.9/32".into());
    let b = ruleset(&changed, 12000);
    assert_eq!(ipt.load(&b, How::Auto).unwrap(), Mode::Delta { added: 2, removed: 1 });
    let full = Iptables::new(Some(full_ns.0.clone()));
    full.load(&b, How::Full).unwrap();
    let (after_delta, after_full) = (ipt.observe().unwrap().unwrap(), full.observe().unwrap().unwrap());
    assert_eq!(after_delta, after_full, "the delta left the kernel as a full load would");
    assert_eq!(after_delta.fingerprint, ipt.expected(&b).unwrap());
    let set = run(Some(&ns.0), "ipset", &["list", "fw-ipf4"], None).unwrap();
    assert!(set.contains("11.0.0.0/31") && set.contains("11.9.9.9") && !set.contains("11.0.0.0\n"), "{set}");
    // A structure change (no IPv6 entry: no ipf6 set, no rules using it) replaces the
    // tables; the set it no longer has is destroyed, so no drift is seen afterwards.
    let v4_only = ruleset_of(&hosts(100), 12000);
    assert!(b.set("ipf6").is_some() && v4_only.set("ipf6").is_none());
    assert_eq!(ipt.load(&v4_only, How::Auto).unwrap(), Mode::Full);
    let sets = run(Some(&ns.0), "ipset", &["list", "-n"], None).unwrap();
    assert!(sets.contains("fw-ipf4") && !sets.contains("fw-ipf6"), "{sets}");
    assert_eq!(ipt.observe().unwrap().unwrap().fingerprint, ipt.expected(&v4_only).unwrap());
}

/// Every rule carries its own hash in its comment, so the drivers see drift rule by rule:
/// a rule deleted by hand is named by its id, a rule added by hand is counted as not ours.
#[test]
fn drift_is_found_rule_by_rule_from_the_hashes_in_the_comments() {
    let rs = ruleset(&hosts(3), 12000);
    for tag in ["rd-nft", "rd-ipt"] {
        let ns = Netns::new(tag);
        let driver: Box<dyn Dataplane> = match tag {
            "rd-nft" => Box::new(Nft::new(Some(ns.0.clone()))),
            _ => Box::new(Iptables::new(Some(ns.0.clone()))),
        };
        driver.load(&rs, How::Full).unwrap();
        let seen = driver.observe().unwrap().expect("our rules are there");
        assert_eq!(fleetwall_apply::rule_drift(&rs, &seen.rules), Default::default(), "{tag}: {:?}", seen.rules);
        // By hand: the management SSH rule of IPv4 goes, a rule of someone else's comes.
        let ssh = rs.input.iter().find(|r| r.id == "mgmt-ssh-v4").unwrap().hash();
        if tag == "rd-nft" {
            let listed = run(Some(&ns.0), "nft", &["-a", "list", "chain", "inet", "fleetwall", "input"], None).unwrap();
            let handle = listed
                .lines()
                .find(|l| l.contains(&ssh))
                .and_then(|l| l.rsplit_once("# handle "))
                .map(|(_, h)| h.trim().to_string())
                .expect("the rule's handle");
            run(Some(&ns.0), "nft", &["delete", "rule", "inet", "fleetwall", "input", "handle", &handle], None)
                .unwrap();
            run(
                Some(&ns.0),
                "nft",
                &["insert", "rule", "inet", "fleetwall", "input", "tcp", "dport", "2222", "accept"],
                None,
            )
            .unwrap();
        } else {
            let save = run(Some(&ns.0), "iptables-save", &["-t", "filter"], None).unwrap();
            let line = save.lines().find(|l| l.contains(&ssh)).expect("the rule in iptables-save").to_string();
            let num = save
                .lines()
                .filter(|l| l.starts_with("-A fleetwall-input "))
                .position(|l| l == line)
                .map(|i| (i + 1).to_string())
                .unwrap();
            run(Some(&ns.0), "iptables", &["-D", "fleetwall-input", &num], None).unwrap();
            run(
                Some(&ns.0),
                "iptables",
                &["-I", "fleetwall-input", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"],
                None,
            )
            .unwrap();
        }
        let seen = driver.observe().unwrap().expect("our table is still there");
        let drift = fleetwall_apply::rule_drift(&rs, &seen.rules);
        assert_eq!(drift.missing, ["mgmt-ssh-v4"], "{tag}");
        assert_eq!(drift.foreign, 1, "{tag}");
        assert_eq!(drift.to_string(), "rules changed or missing: mgmt-ssh-v4; 1 rule(s) not ours");
    }
}

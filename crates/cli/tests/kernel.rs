//! Kernel acceptance: every example node's nft output passes `nft -c -f` and loads (twice:
//! the file replaces our table), and its iptables output passes `iptables-restore
//! --test` / `ip6tables-restore --test` after `ipset restore` — all inside a network
//! namespace this test creates and always removes.
//!
//! Needs root and nftables/iptables/ipset. When it cannot run it fails, loudly; set
//! FLEETWALL_SKIP_KERNEL_TESTS=1 to skip it on a workstation (never honoured in CI).

mod common;
use common::*;
use std::process::Command;

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        sweep_leftovers();
        let name = format!("fw-kt-{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        Netns(name)
    }

    fn run(&self, cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, cmd]).args(args);
        let out = match stdin {
            Some(path) => c.stdin(std::fs::File::open(path).unwrap()).output(),
            None => c.output(),
        }
        .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }
}

/// Removes namespaces of earlier runs of this test whose process is gone (a crash or kill).
fn sweep_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix("fw-kt-") else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn every_example_node_loads_into_a_real_kernel() {
    if !common::kernel_available() {
        return;
    }
    let ns = Netns::new();
    // The namespace is ours and empty: our loads must not touch the host.
    assert_eq!(ns.run("nft", &["list", "ruleset"], None).unwrap().trim(), "");
    let mut checked = 0;
    for (name, path) in examples() {
        let out = Scratch::new("kernel");
        ok(&["plan", path.to_str().unwrap(), "--out", out.0.to_str().unwrap()]);
        let mut nodes: Vec<String> = std::fs::read_dir(&out.0)
            .unwrap()
            .filter_map(|e| e.unwrap().path().to_str().and_then(|p| p.strip_suffix(".nft")).map(String::from))
            .collect();
        nodes.sort();
        assert!(!nodes.is_empty(), "{name}: no nft files");
        for base in nodes {
            let nft = format!("{base}.nft");
            ns.run("nft", &["-c", "-f", &nft], None).unwrap_or_else(|e| panic!("{name}: nft -c rejected {nft}: {e}"));
            ns.run("nft", &["-f", &nft], None).unwrap_or_else(|e| panic!("{name}: nft -f {nft}: {e}"));
            ns.run("nft", &["-f", &nft], None).unwrap_or_else(|e| panic!("{name}: reloading {nft}: {e}"));
            let tables = ns.run("nft", &["list", "tables"], None).unwrap();
            assert_eq!(tables.trim(), "table inet fleetwall", "{name}: one table, ours");
            let listed = ns.run("nft", &["list", "table", "inet", "fleetwall"], None).unwrap();
            assert!(listed.contains("reject with tcp reset"), "{listed}");
            ns.run("ipset", &["restore", "-exist"], Some(&format!("{base}.ipset")))
                .unwrap_or_else(|e| panic!("{name}: ipset restore {base}: {e}"));
            ns.run("iptables-restore", &["--test"], Some(&format!("{base}.ipt4")))
                .unwrap_or_else(|e| panic!("{name}: iptables-restore --test {base}: {e}"));
            ns.run("ip6tables-restore", &["--test"], Some(&format!("{base}.ipt6")))
                .unwrap_or_else(|e| panic!("{name}: ip6tables-restore --test {base}: {e}"));
            ns.run("ipset", &["destroy"], None).ok();
            checked += 1;
        }
    }
    assert!(checked >= 14, "checked {checked} nodes");
}

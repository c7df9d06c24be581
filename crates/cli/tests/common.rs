//! Shared helpers of the integration harness: running the binary, scratch directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every example fleet, by name (file stem).
pub fn examples() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "the examples are missing");
    v
}

/// Runs `fleetwall ARGS` from the repository root.
pub fn fleetwall(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fleetwall")).args(args).current_dir(root()).output().unwrap()
}

/// Runs `fleetwall ARGS`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = fleetwall(args);
    assert!(out.status.success(), "fleetwall {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "fleetwall-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether kernel tests can run here (root and the tools). Fails loudly when they
/// cannot, unless FLEETWALL_SKIP_KERNEL_TESTS is set outside CI.
pub fn kernel_available() -> bool {
    let is_root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = ["nft", "ipset", "iptables-restore", "ip6tables-restore", "ip"].iter().all(|t| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if is_root && tools {
        return true;
    }
    let msg = format!(
        "KERNEL TESTS CANNOT RUN: root={is_root}, tools present={tools}. Run the README's test command as root (it installs nftables, iptables, ipset, iproute2)."
    );
    if std::env::var_os("FLEETWALL_SKIP_KERNEL_TESTS").is_some() && std::env::var_os("CI").is_none() {
        eprintln!("!!!!!!!! {msg} Skipped because FLEETWALL_SKIP_KERNEL_TESTS is set. !!!!!!!!");
        return false;
    }
    panic!("{msg}");
}

/// Network namespaces of one test, named `fwl<pid>x<n>-<tag>` (the lab's prefix, so a
/// crashed run's are swept by the next), all deleted on drop, also when the test fails.
pub struct Namespaces(pub String);

impl Default for Namespaces {
    fn default() -> Namespaces {
        Namespaces(fleetwall_lab::netns::run_prefix())
    }
}

impl Namespaces {
    pub fn new() -> Namespaces {
        Namespaces::default()
    }

    /// Creates the namespace `<prefix><tag>`; returns its name.
    pub fn create(&self, tag: &str) -> String {
        let name = format!("{}{tag}", self.0);
        fleetwall_lab::netns::create(std::slice::from_ref(&name)).expect("create a namespace");
        name
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        fleetwall_lab::netns::delete_all(&self.0);
    }
}

/// A child process (a `fleetwall serve`), killed on drop.
pub struct Serve(pub std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The control plane the namespace tests start, as the gateway namespace reaches it.
pub const LAB_SERVER: &str = "https://198.51.100.10:8181";

/// The fleetwall binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetwall")
}

/// Starts `program ARGS` inside namespace `ns`, its stderr in `log`.
pub fn spawn_in(ns: &str, program: &str, args: &[&str], log: &std::path::Path) -> std::process::Child {
    let f = std::fs::File::create(log).unwrap();
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap()
}

/// Runs the CLI inside the gateway namespace `gw` against [`LAB_SERVER`], trusting `ca`:
/// success, stdout, stderr.
pub fn cli_in(gw: &str, ca: &std::path::Path, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", gw, bin()])
        .args(args)
        .env("FLEETWALL_SERVER", LAB_SERVER)
        .env("FLEETWALL_TOKEN", token)
        .env("FLEETWALL_CA", ca)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

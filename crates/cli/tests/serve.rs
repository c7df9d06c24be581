//! `fleetwall serve`'s trust boundaries, against the real binary: what it keeps on disk is
//! private to it, and off loopback it speaks TLS unless told otherwise.

mod common;

use common::{free_port, Scratch, Serve};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Starts `fleetwall serve ARGS` in `dir`, its stderr going to `dir/serve.log`.
fn serve(dir: &Path, args: &[&str]) -> Serve {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    Serve(
        Command::new(env!("CARGO_BIN_EXE_fleetwall"))
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Runs a client verb in `dir` (so it finds `.fleetwall/`).
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(args)
        .current_dir(dir)
        .env_remove("FLEETWALL_SERVER")
        .env_remove("FLEETWALL_TOKEN")
        .env_remove("FLEETWALL_CA")
        .output()
        .unwrap()
}

/// Waits until `status` with `args` succeeds; panics with the server's log if it does not.
fn wait_until_up(dir: &Path, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(dir, &[&["status"], args].concat());
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not come up: {}\nserve log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secrets_and_the_store_kept_world_readable_modes() {
    let scratch = Scratch::new("serve-modes");
    let data = scratch.0.join(".fleetwall");
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o755);
    std::fs::write(data.join("admin.token"), "fw-preexisting-admin-token\n").unwrap();
    set_mode(&data.join("admin.token"), 0o644);
    // An empty file is an empty SQLite database.
    std::fs::write(data.join("fleet.db"), "").unwrap();
    set_mode(&data.join("fleet.db"), 0o644);
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _serve = serve(&scratch.0, &["--listen", &format!("127.0.0.1:{port}")]);
    // The pre-existing token is still the admin's.
    wait_until_up(&scratch.0, &["--server", &server]);
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("admin.token")), 0o600, "the admin token");
    assert_eq!(mode(&data.join("fleet.db")), 0o600, "the SQLite store");
    assert!(!data.join("ca.pem").exists(), "on loopback serve stays plain HTTP and makes no CA");
    for companion in ["fleet.db-wal", "fleet.db-shm"] {
        let path = data.join(companion);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{companion}");
        }
    }
}

/// The CA fingerprint `serve` printed (the last one, after restarts).
fn printed_fingerprint(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    let line =
        log.lines().rfind(|l| l.contains("SHA-256 fingerprint")).unwrap_or_else(|| panic!("no fingerprint:\n{log}"));
    let (_, rest) = line.split_once("SHA-256 fingerprint ").unwrap();
    rest.split(';').next().unwrap().to_string()
}

#[test]
fn serve_off_loopback_spoke_plain_http() {
    let scratch = Scratch::new("serve-tls");
    let dir = &scratch.0;
    let data = dir.join(".fleetwall");
    let ca = data.join("ca.pem");
    let port = free_port();
    // Bound on every address, reached only through 127.0.0.1.
    let serve_tls = serve(dir, &["--listen", &format!("0.0.0.0:{port}")]);
    let https = format!("https://127.0.0.1:{port}");
    wait_until_up(dir, &["--server", &https, "--ca", ca.to_str().unwrap()]);
    for key in ["ca-key.pem", "server-key.pem"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&ca)
        .output()
        .expect("openssl is needed for this test (scripts/test installs it)");
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    let fingerprint = printed_fingerprint(dir);
    let expected = String::from_utf8(openssl.stdout).unwrap();
    assert_eq!(expected.trim().rsplit_once('=').unwrap().1, fingerprint, "the printed fingerprint is the CA file's");
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("--ca .fleetwall/ca.pem"), "{log}");
    // In the directory serve ran in, an https URL finds the CA by itself.
    let out = run(dir, &["status", "--server", &https]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Plain HTTP gets nowhere.
    let out = run(dir, &["status", "--server", &format!("http://127.0.0.1:{port}")]);
    assert!(!out.status.success(), "plain HTTP to the TLS port must fail");

    // A restart reuses the CA and, for the same names, the server certificate.
    let server_pem = std::fs::read(data.join("server.pem")).unwrap();
    drop(serve_tls);
    let port = free_port();
    let restarted = serve(dir, &["--listen", &format!("0.0.0.0:{port}")]);
    wait_until_up(dir, &["--server", &format!("https://127.0.0.1:{port}")]);
    assert_eq!(printed_fingerprint(dir), fingerprint);
    assert_eq!(std::fs::read(data.join("server.pem")).unwrap(), server_pem);
    drop(restarted);
    // A new name: a new server certificate from the same CA.
    let port = free_port();
    let renamed = serve(dir, &["--listen", &format!("0.0.0.0:{port}"), "--tls-san", "cp.example.net"]);
    wait_until_up(dir, &["--server", &format!("https://127.0.0.1:{port}")]);
    assert_eq!(printed_fingerprint(dir), fingerprint);
    assert_ne!(std::fs::read(data.join("server.pem")).unwrap(), server_pem);
    drop(renamed);

    // Plain HTTP off loopback only when asked for.
    let port = free_port();
    let _plain = serve(dir, &["--listen", &format!("0.0.0.0:{port}"), "--insecure-http"]);
    wait_until_up(dir, &["--server", &format!("http://127.0.0.1:{port}")]);
}

//! `fleetwall backup` end to end: keygen, both formats through files and pipes, the exit
//! codes and messages for a wrong key, a flipped bit, a truncated file and a bad key, and
//! the interop with rohmu itself (installed from PyPI into a private virtualenv): files
//! fleetwall writes in the pghoard format decrypt with rohmu, and files rohmu writes decrypt
//! with fleetwall, byte for byte.

mod common;
#[path = "../src/rohmu_venv.rs"]
mod rohmu_venv;

use common::Scratch;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn fleetwall(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let out = fleetwall(args, stdin);
    assert!(out.status.success(), "fleetwall {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Asserts exit 1 with `message` in stderr.
fn fails(args: &[&str], message: &str) {
    let out = fleetwall(args, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fleetwall {args:?}: {err}");
    assert!(err.contains(message), "fleetwall {args:?}: {err:?} lacks {message:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One key pair for the whole run (RSA-3072 generation takes a moment). A static is
/// never dropped, so it lives under cargo's target tmp directory (one per run, replaced
/// by the next), not in a `Scratch` that would be left behind in /tmp.
fn keys() -> &'static ((), PathBuf, PathBuf) {
    static K: OnceLock<((), PathBuf, PathBuf)> = OnceLock::new();
    K.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("backup-test-keys");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ok(&["backup", "keygen", "--out", s(&dir.join("k"))], None);
        ((), dir.join("k/backup.pem"), dir.join("k/backup.pub.pem"))
    })
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

#[test]
fn keygen_writes_a_0600_private_key_and_refuses_to_overwrite() {
    let (_, private, public) = keys();
    assert_eq!(std::fs::metadata(private).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(private).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(public).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    let out = fleetwall(&["backup", "keygen", "--out", s(private.parent().unwrap())], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists; keys are never overwritten"));
}

#[test]
fn both_formats_round_trip_through_files_and_pipes() {
    let (_, private, public) = keys();
    let dir = Scratch::new("backup-roundtrip");
    let plain = data(3 * 1024 * 1024 + 7, 1);
    let (p, c, d) = (dir.0.join("plain"), dir.0.join("enc"), dir.0.join("dec"));
    std::fs::write(&p, &plain).unwrap();
    for format in ["fleetwall", "pghoard"] {
        ok(&["backup", "encrypt", "--public-key", s(public), "--format", format, s(&p), s(&c)], None);
        ok(&["backup", "decrypt", "--private-key", s(private), s(&c), s(&d)], None);
        assert_eq!(std::fs::read(&d).unwrap(), plain, "{format} file to file");
        let piped = ok(&["backup", "encrypt", "--public-key", s(public), "--format", format, "-", "-"], Some(&plain));
        let flag = if format == "pghoard" { "--unauthenticated-stream" } else { "--format=fleetwall" };
        let out = ok(&["backup", "decrypt", "--private-key", s(private), flag, "-", "-"], Some(&piped.stdout));
        assert_eq!(out.stdout, plain, "{format} pipe to pipe");
        ok(&["backup", "decrypt", "--private-key", s(private), "-", s(&d)], Some(&piped.stdout));
        assert_eq!(std::fs::read(&d).unwrap(), plain, "{format} pipe to file");
        let shown = String::from_utf8(ok(&["backup", "inspect", s(&c)], None).stdout).unwrap();
        assert!(shown.starts_with(&format!("format:     {format}")), "{shown}");
        assert!(shown.contains("rsa key:    3072 bits\n") && shown.contains("plaintext:  3145735 bytes\n"), "{shown}");
    }
}

#[test]
fn a_pghoard_pipe_to_stdout_needs_the_explicit_flag_and_a_bad_tag_still_exits_1() {
    let (_, private, public) = keys();
    let plain = data(100_000, 2);
    let enc =
        ok(&["backup", "encrypt", "--public-key", s(public), "--format", "pghoard", "-", "-"], Some(&plain)).stdout;
    let out = fleetwall(&["backup", "decrypt", "--private-key", s(private), "-", "-"], Some(&enc));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unauthenticated-stream"));
    let mut bad = enc.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    let out = fleetwall(
        &["backup", "decrypt", "--private-key", s(private), "--unauthenticated-stream", "-", "-"],
        Some(&bad),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout.len(), plain.len(), "streamed as asked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT authentic"));
}

#[test]
fn tampering_truncation_and_wrong_keys_exit_1_and_leave_no_output() {
    let (_, private, public) = keys();
    let dir = Scratch::new("backup-bad");
    let (p, c, bad, out) = (dir.0.join("plain"), dir.0.join("enc"), dir.0.join("bad"), dir.0.join("out"));
    std::fs::write(&p, data(2 * 1024 * 1024 + 50, 3)).unwrap();
    for format in ["fleetwall", "pghoard"] {
        ok(&["backup", "encrypt", "--public-key", s(public), "--format", format, s(&p), s(&c)], None);
        let enc = std::fs::read(&c).unwrap();
        let dec = |file: &[u8], key: &Path, message: &str| {
            std::fs::write(&bad, file).unwrap();
            fails(&["backup", "decrypt", "--private-key", s(key), s(&bad), s(&out)], message);
            assert!(!out.exists(), "{format}: no output after {message}");
            let mut left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
            left.sort();
            assert_eq!(left, ["bad", "enc", "plain"], "{format}: no temporary file left after {message}");
        };
        for pos in [0, 9, 200, 430, enc.len() / 2, enc.len() - 40, enc.len() - 1] {
            let mut flipped = enc.clone();
            flipped[pos] ^= 0x10;
            let message = match pos {
                0 => "not an encrypted backup",
                9 | 200 => "wrong key",
                _ => "integrity check failed",
            };
            dec(&flipped, private, message);
        }
        dec(&enc[..enc.len() - 10], private, "truncated");
        dec(&enc[..100], private, "truncated");
        let other = Scratch::new("backup-other-key");
        ok(&["backup", "keygen", "--out", s(&other.0)], None);
        dec(&enc, &other.0.join("backup.pem"), "wrong key: the file key does not unwrap with this private key");
    }
}

#[test]
fn short_and_non_rsa_keys_are_refused_with_exit_1() {
    let dir = Scratch::new("backup-keys-bad");
    let short = dir.0.join("short.pem");
    let gen =
        Command::new("openssl").args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]).output();
    let gen = gen.expect("openssl is needed (scripts/test installs it)");
    std::fs::write(&short, gen.stdout).unwrap();
    let short_pub = dir.0.join("short.pub.pem");
    let out = Command::new("openssl").args(["pkey", "-pubout", "-in", s(&short)]).output().unwrap();
    std::fs::write(&short_pub, out.stdout).unwrap();
    let ec = dir.0.join("ec.pem");
    let out =
        Command::new("openssl").args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]).output();
    std::fs::write(&ec, out.unwrap().stdout).unwrap();
    let p = dir.0.join("p");
    std::fs::write(&p, b"x").unwrap();
    let o = s(&dir.0.join("o")).to_string();
    fails(
        &["backup", "encrypt", "--public-key", s(&short_pub), s(&p), &o],
        "the RSA key has 2048 bits; backups need at least 3072",
    );
    fails(&["backup", "decrypt", "--private-key", s(&short), s(&p), &o], "the RSA key has 2048 bits");
    fails(&["backup", "decrypt", "--private-key", s(&ec), s(&p), &o], "not an unencrypted RSA private key");
    fails(&["backup", "encrypt", "--public-key", s(&p), s(&p), &o], "not an RSA public key");
    let out = fleetwall(&["backup", "encrypt", "--public-key", s(&dir.0.join("missing")), s(&p), &o], None);
    assert_eq!(out.status.code(), Some(2), "a missing key file is the environment's problem");
}

const ROHMU_SIZES: [usize; 7] = [0, 1, 15, 16, 17, (1 << 20) + 3, 64 << 20];

fn rohmu() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::var_os("FLEETWALL_ROHMU_VENV")
            .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("rohmu-venv"), PathBuf::from);
        rohmu_venv::python(&dir).unwrap_or_else(|e| panic!("the rohmu reference is needed for this test: {e:#}"))
    })
}

fn rohmu_run(verb: &str, key: &Path, input: &Path, output: &Path, helper: &Path) {
    let out = Command::new(rohmu()).arg(helper).args([verb, s(key), s(input), s(output)]).output().unwrap();
    assert!(out.status.success(), "rohmu {verb}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fleetwall_pghoard_files_decrypt_with_rohmu_and_rohmu_files_with_fleetwall() {
    let (_, private, public) = keys();
    let dir = Scratch::new("backup-rohmu");
    let helper = dir.0.join("backup_rohmu.py");
    std::fs::write(&helper, rohmu_venv::HELPER).unwrap();
    let (p, c, d) = (dir.0.join("plain"), dir.0.join("enc"), dir.0.join("dec"));
    for len in ROHMU_SIZES {
        let plain = data(len, len as u8);
        std::fs::write(&p, &plain).unwrap();

        ok(&["backup", "encrypt", "--public-key", s(public), "--format", "pghoard", s(&p), s(&c)], None);
        rohmu_run("decrypt", private, &c, &d, &helper);
        assert!(std::fs::read(&d).unwrap() == plain, "fleetwall -> rohmu, {len} bytes");

        rohmu_run("encrypt", public, &p, &c, &helper);
        ok(&["backup", "decrypt", "--private-key", s(private), "--format=pghoard", s(&c), s(&d)], None);
        assert!(std::fs::read(&d).unwrap() == plain, "rohmu -> fleetwall, {len} bytes");
        if len > 0 {
            ok(&["backup", "decrypt", "--private-key", s(private), s(&c), s(&d)], None);
            assert!(std::fs::read(&d).unwrap() == plain, "rohmu -> fleetwall, detected, {len} bytes");
        } else {
            assert_eq!(std::fs::metadata(&c).unwrap().len(), 0, "rohmu writes an empty backup as an empty file");
            fails(&["backup", "decrypt", "--private-key", s(private), s(&c), s(&d)], "name the pghoard format");
        }
    }
}

#[test]
fn rohmu_refuses_a_tampered_fleetwall_pghoard_file_too() {
    let (_, private, public) = keys();
    let dir = Scratch::new("backup-rohmu-bad");
    let helper = dir.0.join("backup_rohmu.py");
    std::fs::write(&helper, rohmu_venv::HELPER).unwrap();
    let (p, c, d) = (dir.0.join("plain"), dir.0.join("enc"), dir.0.join("dec"));
    std::fs::write(&p, data(5000, 4)).unwrap();
    ok(&["backup", "encrypt", "--public-key", s(public), "--format", "pghoard", s(&p), s(&c)], None);
    let mut enc = std::fs::read(&c).unwrap();
    enc[1000] ^= 1;
    std::fs::write(&c, enc).unwrap();
    let out = Command::new(rohmu()).arg(&helper).args(["decrypt", s(private), s(&c), s(&d)]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Integrity check failed"));
}

/// The benchmark end to end on a small file: every contender runs, each row is compared
/// with the floor and (fleetwall's rows) with rohmu, and the goal is judged in the output.
#[test]
fn bench_backup_runs_every_contender_and_prints_the_ratios() {
    let venv = rohmu().parent().unwrap().parent().unwrap().to_path_buf();
    let args = ["bench", "--backup", "--backup-mib", "2", "--runs", "1", "--rohmu-venv", s(&venv)];
    let text = String::from_utf8(ok(&args, None).stdout).unwrap();
    for row in [
        "openssl enc|dgst (floor)",
        "fleetwall encrypt > /dev/null",
        "fleetwall decrypt to file",
        "pghoard decrypt > /dev/null",
        "rohmu encrypt > /dev/null",
        "rohmu decrypt to file",
    ] {
        assert!(text.lines().any(|l| l.starts_with(row)), "no row {row:?} in\n{text}");
    }
    assert!(text.contains("VS_OPENSSL  VS_ROHMU"), "{text}");
    assert!(text.contains("goal >= 0.8x floor and >= 2x rohmu (> /dev/null): encrypt "), "{text}");

    let json = ok(&[&args[..], &["--format", "json"]].concat(), None).stdout;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), 15);
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(row("openssl enc|dgst (floor)")["vs_openssl"], 1.0);
    assert!(row("openssl enc|dgst (floor)")["vs_rohmu"].is_null());
    assert_eq!(row("rohmu encrypt to file")["vs_rohmu"], 1.0);
    let fw = row("fleetwall encrypt > /dev/null");
    assert!(fw["vs_rohmu"].as_f64().unwrap() > 0.0 && fw["cpu_seconds"].as_f64().unwrap() > 0.0, "{fw}");
    assert!(fw["best_mb_per_s"].as_f64().unwrap() >= fw["mb_per_s"].as_f64().unwrap(), "{fw}");
}

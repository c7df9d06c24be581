//! `fleetwall bench --backup`: encrypt and decrypt throughput of a generated file (1 GiB by
//! default) against two references in the same run — the openssl floor (`openssl enc
//! -aes-256-ctr` piped into `openssl dgst -sha256 -hmac`, two processes on two cores) and
//! rohmu itself (pghoard's library, in a private virtualenv) — with fleetwall's peak memory.
//!
//! Every contender runs as a child process timed by wall clock, and its peak RSS comes from
//! `wait4`, so fleetwall's figure is that of the real `backup encrypt`/`decrypt` commands.
//! The openssl floor only computes (its ciphertext goes to the HMAC, not to a file), so
//! fleetwall and rohmu each run twice per verb: output to /dev/null, the floor's job, and
//! to a file (fleetwall: temporary file, fsync, rename; rohmu: no fsync). Each row is
//! compared with rohmu writing to the same kind of sink. "pghoard" rows are fleetwall
//! writing and reading rohmu's format.

use crate::commands::Outcome;
use crate::CheckFormat;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed run.
#[derive(Serialize)]
struct Row {
    name: String,
    seconds: f64,
    mb_per_s: f64,
    peak_rss_mb: f64,
}

/// Removes the scratch directory (a GiB or more) however the benchmark ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to completion; returns wall seconds and the child's peak RSS in MB.
fn timed(cmd: &mut Command) -> Result<(f64, f64)> {
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let child =
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().with_context(|| format!("cannot run {what}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: rusage and status are plain out-parameters; the child is ours and not waited
    // for elsewhere (std's Child is dropped without wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 failed for {what}: {}", std::io::Error::last_os_error());
    }
    let seconds = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{what} failed: {err}");
    }
    // ru_maxrss is in KiB on Linux.
    Ok((seconds, usage.ru_maxrss as f64 / 1024.0))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

pub fn run(venv: &Path, mib: u64, format: CheckFormat) -> Result<Outcome> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark with `cargo run --release -- bench --backup`");
    }
    let exe = std::env::current_exe().context("cannot find the fleetwall binary")?;
    let python = crate::rohmu_venv::python(venv)?;
    let dir = Scratch(std::env::temp_dir().join(format!("fleetwall-bench-backup-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("cannot create {}", dir.0.display()))?;
    let p = |name: &str| dir.0.join(name);
    let bytes = mib << 20;

    eprintln!("bench: generating {mib} MiB of random plaintext and an RSA-3072 key pair ...");
    timed(Command::new("openssl").args(["rand", "-out", s(&p("plain")), &bytes.to_string()]))?;
    let pair = fleetwall_backup::generate_keypair()?;
    std::fs::write(p("key.pem"), &pair.private_pem)?;
    std::fs::write(p("key.pub.pem"), &pair.public_pem)?;
    std::fs::write(p("backup_rohmu.py"), crate::rohmu_venv::HELPER)?;

    let fleetwall = |verb: &str, key: &str, format: &str, input: &str, output: &str| {
        let mut c = Command::new(&exe);
        c.args(["backup", verb, key, s(&p(if verb == "encrypt" { "key.pub.pem" } else { "key.pem" }))]);
        if !format.is_empty() {
            c.args(["--format", format]);
        }
        // "-" writes to stdout, which is /dev/null here: the crypto alone, like the floor.
        c.arg(s(&p(input))).arg(if output == "-" { "-".into() } else { p(output) });
        c
    };
    let rohmu = |verb: &str, input: &str, output: &str| {
        let mut c = Command::new(&python);
        let key = if verb == "encrypt" { "key.pub.pem" } else { "key.pem" };
        c.arg(p("backup_rohmu.py")).args([verb, s(&p(key)), s(&p(input)), s(&p(output))]);
        c
    };
    let openssl = format!(
        "openssl enc -aes-256-ctr -K {} -iv {} -in '{}' | openssl dgst -sha256 -hmac {}",
        "5a".repeat(32),
        "a5".repeat(16),
        s(&p("plain")),
        "k".repeat(64)
    );
    let runs: Vec<(&str, Command)> = vec![
        ("openssl enc|dgst (floor)", {
            let mut c = Command::new("sh");
            c.args(["-c", &openssl]);
            c
        }),
        ("fleetwall encrypt > /dev/null", fleetwall("encrypt", "--public-key", "fleetwall", "plain", "-")),
        ("fleetwall encrypt to file", fleetwall("encrypt", "--public-key", "fleetwall", "plain", "fw")),
        ("fleetwall decrypt > /dev/null", fleetwall("decrypt", "--private-key", "", "fw", "-")),
        ("fleetwall decrypt to file", fleetwall("decrypt", "--private-key", "", "fw", "fw.out")),
        ("pghoard encrypt > /dev/null", fleetwall("encrypt", "--public-key", "pghoard", "plain", "-")),
        ("pghoard encrypt to file", fleetwall("encrypt", "--public-key", "pghoard", "plain", "pg")),
        ("pghoard decrypt > /dev/null", fleetwall("decrypt", "--private-key", "", "pg", "-")),
        ("pghoard decrypt to file", fleetwall("decrypt", "--private-key", "", "pg", "pg.out")),
        ("rohmu encrypt > /dev/null", rohmu("encrypt", "plain", "/dev/null")),
        ("rohmu encrypt to file", rohmu("encrypt", "plain", "rohmu")),
        ("rohmu decrypt > /dev/null", rohmu("decrypt", "rohmu", "/dev/null")),
        ("rohmu decrypt to file", rohmu("decrypt", "rohmu", "rohmu.out")),
    ];
    let mut rows = Vec::new();
    for (name, mut cmd) in runs {
        eprintln!("bench: {name} ...");
        let (seconds, peak) = timed(&mut cmd)?;
        rows.push(Row { name: name.into(), seconds, mb_per_s: bytes as f64 / 1e6 / seconds, peak_rss_mb: peak });
        // Each output must decrypt back to the plaintext, or the figures mean nothing.
        for out in ["fw.out", "pg.out", "rohmu.out"] {
            if p(out).exists() {
                if std::fs::metadata(p(out))?.len() != bytes {
                    bail!("{name}: {out} has the wrong size");
                }
                std::fs::remove_file(p(out))?;
            }
        }
    }
    let rate = |n: &str| rows.iter().find(|r| r.name == n).map_or(f64::NAN, |r| r.mb_per_s);
    let floor = rate("openssl enc|dgst (floor)");
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        CheckFormat::Text => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    // Like with like: rohmu writing where this run writes.
                    let verb = if r.name.contains("decrypt") { "decrypt" } else { "encrypt" };
                    let sink = if r.name.contains("to file") { "to file" } else { "> /dev/null" };
                    let rohmu_rate = rate(&format!("rohmu {verb} {sink}"));
                    vec![
                        r.name.clone(),
                        format!("{:.2}", r.seconds),
                        format!("{:.0}", r.mb_per_s),
                        format!("{:.2}", r.mb_per_s / floor),
                        format!("{:.2}", r.mb_per_s / rohmu_rate),
                        format!("{:.1}", r.peak_rss_mb),
                    ]
                })
                .collect();
            println!("{mib} MiB, wall clock per process; openssl floor: two processes, no output file");
            print!(
                "{}",
                crate::table::render(&["RUN", "SECONDS", "MB_PER_S", "VS_OPENSSL", "VS_ROHMU", "PEAK_RSS_MB"], &table)
            );
        }
    }
    Ok(Outcome::Ok)
}

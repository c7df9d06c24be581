//! `fleetwall bench --backup`: encrypt and decrypt throughput of a generated file (1 GiB by
//! default) against two references in the same run — the openssl floor (`openssl enc
//! -aes-256-ctr` piped into `openssl dgst -sha256 -hmac`, two processes on two cores) and
//! rohmu itself (pghoard's library, in a private virtualenv) — with CPU time and peak memory.
//!
//! Every contender runs as a child process timed by wall clock; its CPU time (user + sys,
//! with its children) and peak RSS come from `wait4`, so fleetwall's figures are those of
//! the real `backup encrypt`/`decrypt` commands. Like with like: every encrypt reads the
//! same plaintext file and every contender's output goes to /dev/null (the floor's HMAC
//! prints a digest only); the "to file" rows write a file instead (fleetwall: temporary
//! file, fsync, rename; rohmu: no fsync) and are compared with rohmu writing a file. The
//! plaintext is written in 1 MiB blocks, like every encrypted file the rows read, so that
//! encrypt and decrypt inputs sit alike in the page cache (a file written 4 KiB at a time,
//! as `openssl rand -out` writes, reads about 1.5x slower on this kernel). "pghoard" rows
//! are fleetwall writing and reading rohmu's format.
//!
//! The contenders run in rounds, one of each per round, so that load from other processes
//! falls on all of them alike; a row reports the median of its runs (and the best). Two
//! single-core openssl rows, AES-256-CTR alone and HMAC-SHA256 alone, show one core's
//! speed at each half of the work (the floor runs at the slower, HMAC, half). A run's CPU
//! seconds give the speed it would reach with its cores to itself, which a shared machine
//! does not always grant: the run prints that ceiling for fleetwall and rohmu too.

use crate::commands::Outcome;
use crate::CheckFormat;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const FLOOR: &str = "openssl enc|dgst (floor)";
const AES_ALONE: &str = "openssl enc -aes-256-ctr alone";
const HMAC_ALONE: &str = "openssl dgst -hmac alone";

/// One contender's figures over its runs.
#[derive(Serialize)]
struct Row {
    name: String,
    runs: usize,
    /// Median wall seconds.
    seconds: f64,
    /// Plaintext MB (10^6 bytes) per second of the median run.
    mb_per_s: f64,
    best_mb_per_s: f64,
    /// Median CPU seconds, user + sys, the process and its children.
    cpu_seconds: f64,
    /// The highest peak RSS of its runs.
    peak_rss_mb: f64,
    vs_openssl: f64,
    /// Against rohmu doing the same verb to the same kind of sink (none for openssl rows).
    vs_rohmu: Option<f64>,
}

/// One timed run.
struct Sample {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
    /// What rohmu's helper timed itself: the work without interpreter start-up and imports.
    own_seconds: Option<f64>,
}

/// Removes the scratch directory (several GiB) however the benchmark ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Runs `cmd` to completion: wall seconds, CPU seconds and peak RSS in MB, and with
/// `own_seconds` the seconds it prints (rohmu's helper; a few bytes, so the pipe never fills
/// before the wait).
fn timed(cmd: &mut Command, own_seconds: bool) -> Result<Sample> {
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let child = cmd
        .stdout(if own_seconds { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: rusage and status are plain out-parameters; the child is ours and not waited
    // for elsewhere (std's Child is dropped without wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 failed for {what}: {}", std::io::Error::last_os_error());
    }
    let wall = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            let _ = e.read_to_string(&mut err);
        }
        bail!("{what} failed: {err}");
    }
    let own_seconds = match child.stdout {
        Some(mut out) => {
            let mut text = String::new();
            out.read_to_string(&mut text)?;
            Some(text.trim().parse().with_context(|| format!("{what} printed {text:?}, not its seconds"))?)
        }
        None => None,
    };
    // wait4 reports the child with the children it waited for (the floor's two openssl
    // processes under sh); ru_maxrss is in KiB on Linux.
    Ok(Sample {
        seconds: wall,
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        own_seconds,
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(s(dir)).context("a NUL in the scratch path")?;
    // SAFETY: statvfs only writes the out-parameter; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        bail!("cannot stat the file system of {}: {}", dir.display(), std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The 1-minute load average, to show how busy the shared machine was.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Writes `bytes` random bytes to `path` in 1 MiB writes (from `openssl rand`).
fn write_plaintext(path: &Path, bytes: u64) -> Result<()> {
    let mut rand = Command::new("openssl")
        .args(["rand", &bytes.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run openssl rand")?;
    let mut src = rand.stdout.take().expect("stdout is piped");
    let mut out = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut block = vec![0; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(block.len(), |l| l.min(block.len()));
        src.read_exact(&mut block[..n]).context("openssl rand ended early")?;
        out.write_all(&block[..n]).with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    if !rand.wait()?.success() {
        bail!("openssl rand failed");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(venv: &Path, mib: u64, runs: usize, format: CheckFormat) -> Result<Outcome> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark with `cargo run --release -- bench --backup`");
    }
    let exe = std::env::current_exe().context("cannot find the fleetwall binary")?;
    let python = crate::rohmu_venv::python(venv)?;
    let bytes = mib << 20;
    let tmp = std::env::temp_dir();
    // The plaintext, three encrypted copies, and an output or a temporary file beside them.
    let need = 5 * bytes + (64 << 20);
    let free = free_bytes(&tmp)?;
    if free < need {
        bail!(
            "the benchmark needs {} MiB free in {} and there are {} MiB: set TMPDIR to a roomier directory \
             (TMPDIR=/dev/shm, a RAM disk, leaves the disk alone; its to-file rows then measure no disk), \
             or use a smaller --backup-mib",
            need >> 20,
            tmp.display(),
            free >> 20
        );
    }
    let dir = Scratch(tmp.join(format!("fleetwall-bench-backup-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("cannot create {}", dir.0.display()))?;
    let p = |name: &str| dir.0.join(name);

    eprintln!("bench: generating {mib} MiB of random plaintext and an RSA-3072 key pair ...");
    write_plaintext(&p("plain"), bytes)?;
    let pair = fleetwall_backup::generate_keypair()?;
    std::fs::write(p("key.pem"), &pair.private_pem)?;
    std::fs::write(p("key.pub.pem"), &pair.public_pem)?;
    std::fs::write(p("backup_rohmu.py"), crate::rohmu_venv::HELPER)?;

    let fleetwall = |verb: &str, format: &str, input: &str, output: &str| {
        let mut c = Command::new(&exe);
        let (flag, key) =
            if verb == "encrypt" { ("--public-key", "key.pub.pem") } else { ("--private-key", "key.pem") };
        c.args(["backup", verb, flag, s(&p(key))]);
        if !format.is_empty() {
            c.args(["--format", format]);
        }
        // "-" writes to stdout, which is /dev/null here, like every contender's sink.
        c.arg(s(&p(input))).arg(if output == "-" { "-".into() } else { p(output) });
        c
    };
    let rohmu = |verb: &str, input: &str, output: &str| {
        let mut c = Command::new(&python);
        let key = if verb == "encrypt" { "key.pub.pem" } else { "key.pem" };
        c.arg(p("backup_rohmu.py")).args([verb, s(&p(key)), s(&p(input)), s(&p(output))]);
        c
    };
    let (aes_key, iv, mac_key) = ("5a".repeat(32), "a5".repeat(16), "k".repeat(64));
    let plain = p("plain");
    let shell = |script: String| {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    let contenders = || -> Vec<(&str, Command)> {
        vec![
            (
                FLOOR,
                shell(format!(
                    "openssl enc -aes-256-ctr -K {aes_key} -iv {iv} -in '{}' | openssl dgst -sha256 -hmac {mac_key}",
                    s(&plain)
                )),
            ),
            (
                AES_ALONE,
                shell(format!("openssl enc -aes-256-ctr -K {aes_key} -iv {iv} -in '{}' -out /dev/null", s(&plain))),
            ),
            (HMAC_ALONE, shell(format!("openssl dgst -sha256 -hmac {mac_key} '{}'", s(&plain)))),
            ("fleetwall encrypt > /dev/null", fleetwall("encrypt", "fleetwall", "plain", "-")),
            ("fleetwall encrypt to file", fleetwall("encrypt", "fleetwall", "plain", "fw")),
            ("fleetwall decrypt > /dev/null", fleetwall("decrypt", "", "fw", "-")),
            ("fleetwall decrypt to file", fleetwall("decrypt", "", "fw", "fw.out")),
            ("pghoard encrypt > /dev/null", fleetwall("encrypt", "pghoard", "plain", "-")),
            ("pghoard encrypt to file", fleetwall("encrypt", "pghoard", "plain", "pg")),
            ("pghoard decrypt > /dev/null", fleetwall("decrypt", "", "pg", "-")),
            ("pghoard decrypt to file", fleetwall("decrypt", "", "pg", "pg.out")),
            ("rohmu encrypt > /dev/null", rohmu("encrypt", "plain", "/dev/null")),
            ("rohmu encrypt to file", rohmu("encrypt", "plain", "rohmu")),
            ("rohmu decrypt > /dev/null", rohmu("decrypt", "rohmu", "/dev/null")),
            ("rohmu decrypt to file", rohmu("decrypt", "rohmu", "rohmu.out")),
        ]
    };
    let load_before = load();
    let mut samples: Vec<(&str, Vec<Sample>)> = contenders().into_iter().map(|(n, _)| (n, Vec::new())).collect();
    for round in 1..=runs {
        for (i, (name, mut cmd)) in contenders().into_iter().enumerate() {
            eprintln!("bench: round {round}/{runs}: {name} ...");
            samples[i].1.push(timed(&mut cmd, name.starts_with("rohmu"))?);
            // Each output must have the plaintext's size, or the figures mean nothing.
            for out in ["fw.out", "pg.out", "rohmu.out"] {
                if p(out).exists() {
                    if std::fs::metadata(p(out))?.len() != bytes {
                        bail!("{name}: {out} has the wrong size");
                    }
                    std::fs::remove_file(p(out))?;
                }
            }
        }
    }
    let load_after = load();

    let rate = |secs: f64| bytes as f64 / 1e6 / secs;
    let medians: Vec<(&str, f64)> =
        samples.iter().map(|(n, v)| (*n, rate(median(v.iter().map(|x| x.seconds).collect())))).collect();
    let median_rate = |n: &str| medians.iter().find(|(m, _)| *m == n).map_or(f64::NAN, |(_, r)| *r);
    let floor = median_rate(FLOOR);
    let rows: Vec<Row> = samples
        .iter()
        .map(|(name, v)| {
            let verb = if name.contains("decrypt") { "decrypt" } else { "encrypt" };
            let sink = if name.contains("to file") { "to file" } else { "> /dev/null" };
            let mb_per_s = median_rate(name);
            Row {
                name: (*name).into(),
                runs: v.len(),
                seconds: median(v.iter().map(|x| x.seconds).collect()),
                mb_per_s,
                best_mb_per_s: v.iter().map(|x| rate(x.seconds)).fold(0.0, f64::max),
                cpu_seconds: median(v.iter().map(|x| x.cpu_seconds).collect()),
                peak_rss_mb: v.iter().map(|x| x.peak_rss_mb).fold(0.0, f64::max),
                vs_openssl: mb_per_s / floor,
                // Like with like: rohmu doing the same verb to the same kind of sink.
                vs_rohmu: (!name.starts_with("openssl"))
                    .then(|| mb_per_s / median_rate(&format!("rohmu {verb} {sink}"))),
            }
        })
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // What a row would reach with the cores it can use to itself, whatever else ran on the
    // machine: MB per CPU second, times the cores (fleetwall) or one (rohmu is one thread).
    let per_cpu_second = |name: &str| {
        let r = rows.iter().find(|r| r.name == name).expect("a fleetwall or rohmu row");
        bytes as f64 / 1e6 / r.cpu_seconds
    };
    let ceiling = |verb: &str| {
        let fw = per_cpu_second(&format!("fleetwall {verb} > /dev/null")) * cpus as f64;
        let rohmu = per_cpu_second(&format!("rohmu {verb} > /dev/null"));
        format!("{verb} {fw:.0} MB/s against rohmu's {rohmu:.0} = {:.2}x", fw / rohmu)
    };
    // rohmu timed by itself, without Python's start-up: the strictest reference.
    let rohmu_own = |verb: &str| {
        let name = format!("rohmu {verb} > /dev/null");
        let v = &samples.iter().find(|(n, _)| *n == name).expect("a rohmu row").1;
        rate(median(v.iter().filter_map(|x| x.own_seconds).collect()))
    };
    let (own_enc, own_dec) = (rohmu_own("encrypt"), rohmu_own("decrypt"));
    let goal = |verb: &str| {
        let r = rows.iter().find(|r| r.name == format!("fleetwall {verb} > /dev/null")).expect("a fleetwall row");
        let vs_rohmu = r.vs_rohmu.unwrap_or(f64::NAN);
        let met = r.vs_openssl >= 0.8 && vs_rohmu >= 2.0;
        format!("{verb} {:.2}x floor, {vs_rohmu:.2}x rohmu: {}", r.vs_openssl, if met { "met" } else { "NOT met" })
    };
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        CheckFormat::Text => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        format!("{:.2}", r.seconds),
                        format!("{:.0}", r.mb_per_s),
                        format!("{:.0}", r.best_mb_per_s),
                        format!("{:.2}", r.cpu_seconds),
                        format!("{:.2}", r.vs_openssl),
                        r.vs_rohmu.map_or_else(String::new, |v| format!("{v:.2}")),
                        format!("{:.1}", r.peak_rss_mb),
                    ]
                })
                .collect();
            println!(
                "{mib} MiB, {runs} round(s), median wall clock per process; {cpus} CPUs, load average {load_before} \
                 before, {load_after} after"
            );
            print!(
                "{}",
                crate::table::render(
                    &["RUN", "SECONDS", "MB_PER_S", "BEST", "CPU_S", "VS_OPENSSL", "VS_ROHMU", "PEAK_RSS_MB"],
                    &table
                )
            );
            println!(
                "CPU-bound ceiling, each with its cores to itself (MB / CPU_S x {cpus} for fleetwall, x 1 for rohmu), \
                 > /dev/null: {}; {}",
                ceiling("encrypt"),
                ceiling("decrypt")
            );
            println!(
                "rohmu timing its own work (no interpreter start-up): encrypt {own_enc:.0} MB/s, decrypt \
                 {own_dec:.0} MB/s; fleetwall > /dev/null against that: encrypt {:.2}x, decrypt {:.2}x",
                median_rate("fleetwall encrypt > /dev/null") / own_enc,
                median_rate("fleetwall decrypt > /dev/null") / own_dec
            );
            println!("goal >= 0.8x floor and >= 2x rohmu (> /dev/null): {}; {}", goal("encrypt"), goal("decrypt"));
        }
    }
    Ok(Outcome::Ok)
}

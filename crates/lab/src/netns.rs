//! Network namespaces the lab owns: created with a per-run prefix, entered per thread,
//! always removed (on drop, on Ctrl-C via `cleanup_on_signal`, and by the next run's
//! sweep if a run was killed).
//!
//! Names are `fwl<pid>x<n>-<tag>`: the pid lets a later run tell a dead run's leftovers
//! from a live parallel run's namespaces; `n` separates labs inside one process.

use fleetwall_apply::{run, Error};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The prefix of every lab namespace.
pub const PREFIX: &str = "fwl";

/// A fresh prefix for one lab run in this process.
pub fn run_prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{PREFIX}{}x{}-", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Every namespace name on the machine.
pub fn list() -> Vec<String> {
    run(None, "ip", &["netns", "list"], None)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Removes lab namespaces whose creating process is gone. Returns how many.
pub fn sweep_leftovers() -> usize {
    let mut n = 0;
    for name in list() {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, _)) = rest.split_once('x') else { continue };
        let dead = pid.chars().all(|c| c.is_ascii_digit()) && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if dead && run(None, "ip", &["netns", "del", &name], None).is_ok() {
            n += 1;
        }
    }
    n
}

/// Deletes every namespace starting with `prefix`.
pub fn delete_all(prefix: &str) {
    for name in list().into_iter().filter(|n| n.starts_with(prefix)) {
        let _ = run(None, "ip", &["netns", "del", &name], None);
    }
}

/// Held while namespaces are being created, and taken for good by the Ctrl-C cleanup: a
/// namespace an `ip -batch` was still adding when the signal came is then listed and
/// removed too, and none is created after the cleanup.
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creates the namespaces (one `ip -batch` call).
pub fn create(names: &[String]) -> Result<(), Error> {
    let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    let batch: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
    run(None, "ip", &["-batch", "-"], Some(&batch)).map(|_| ())
}

/// Moves the calling thread into namespace `name` (for sockets created afterwards).
pub fn enter(name: &str) -> std::io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the Ctrl-C cleanup has started: work failing now fails because its namespaces
/// are being removed, and the process is about to exit 130 (callers wait for that rather
/// than reporting the failure and exiting otherwise).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// On SIGINT, SIGTERM or SIGHUP: delete every namespace of `prefix` and exit 130.
///
/// Call from the main thread before spawning other threads: it blocks those signals in
/// the caller (threads inherit the mask) and waits for them on a thread of its own.
pub fn cleanup_on_signal(prefix: String) {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("\nfleetwall lab: interrupted; removing namespaces {prefix}*");
            let _no_more = CREATING.lock().unwrap_or_else(|p| p.into_inner());
            delete_all(&prefix);
            std::process::exit(130);
        });
    }
}

//! Dataplane drivers: put a `NodeRuleset` into a kernel, watch what is there, and revoke
//! what it no longer allows.
//!
//! Calico Felix's split: the compiler decides *what*, a driver decides *how*. One trait,
//! [`Dataplane`], serves the agent and the lab. The nft driver loads the rendered table in
//! one `nft -f` transaction (our table only: the file creates, deletes and redeclares
//! `inet fleetwall`), or, when only set elements changed since its last load, the element
//! differences as one `nft -f` batch of `delete element` / `add element` lines (one
//! transaction as well). The iptables driver restores the ipsets, then both filter tables;
//! element-only changes go to the ipsets alone. After either, `revoke` deletes the
//! conntrack entries of inbound connections the new ruleset would refuse (contract point
//! 10), so removing a source cuts its established connections too. Every driver can be
//! scoped to a network namespace (`ip netns exec`); the memory driver keeps what it was
//! given, for tests and simulated agents.

pub mod delta;
mod iptables;
mod memory;
mod nft;

pub use iptables::Iptables;
pub use memory::Memory;
pub use nft::Nft;

use fleetwall_eval::{evaluate, Packet, Transport};
use fleetwall_ir::{NodeRuleset, Verdict};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What went wrong while programming the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A tool (nft, iptables-restore, ipset, conntrack) could not be started.
    Spawn,
    /// A tool ran and refused the input or failed.
    Tool,
    /// A tool did not finish within its deadline and was killed.
    Timeout,
}

/// A failed apply; nothing of ours is half-applied when the tool itself is atomic (nft).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What failed, with the tool's own message.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// How long a tool may run before it is killed. nft and conntrack answer in milliseconds;
/// one that hangs (a stuck netlink socket, a lock) must not stall the agent's loop forever.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `program args` (inside `netns` when given), feeding `stdin`; returns stdout.
/// Killed after [`DEADLINE`].
pub fn run(netns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    run_within(netns, program, args, stdin, DEADLINE)
}

/// [`run`] with its own deadline: past it, the tool and whatever it started are killed
/// and the error kind is [`ErrorKind::Timeout`].
pub fn run_within(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    deadline: Duration,
) -> Result<String, Error> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // A group of its own, so a timeout kills what the tool started too (`sh -c`, `unshare`).
    cmd.process_group(0);
    let what = format!("{program} {}", args.join(" "));
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Error { kind: ErrorKind::Spawn, message: format!("{what}: {e}") })?;
    let (input, mut out, mut err) =
        (child.stdin.take(), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    // stdin is written and both outputs read on threads of their own: a tool that answers
    // while it still reads (or fills stderr first) blocks on a full pipe otherwise.
    std::thread::scope(|s| {
        let writer = input.zip(stdin).map(|(mut pipe, text)| s.spawn(move || pipe.write_all(text.as_bytes())));
        let (tx, rx) = mpsc::channel();
        let tx_err = tx.clone();
        s.spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            let _ = tx.send((true, buf));
        });
        s.spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = tx_err.send((false, buf));
        });
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            match rx.recv_timeout(deadline.saturating_sub(started.elapsed())) {
                Ok((true, b)) => stdout = b,
                Ok((false, b)) => stderr = b,
                Err(_) => return Err(kill(&mut child, &what, deadline)),
            }
        }
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Ok(None) => return Err(kill(&mut child, &what, deadline)),
                Err(e) => return Err(Error { kind: ErrorKind::Spawn, message: format!("{what}: {e}") }),
            }
        };
        if !status.success() {
            return Err(Error {
                kind: ErrorKind::Tool,
                message: format!("{what}: {}", String::from_utf8_lossy(&stderr).trim()),
            });
        }
        // A tool that succeeded without reading all its input did not see what we meant.
        if let Some(Err(e)) = writer.map(|w| w.join().expect("the stdin writer does not panic")) {
            return Err(Error { kind: ErrorKind::Tool, message: format!("{what}: {e}") });
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    })
}

fn kill(child: &mut Child, what: &str, deadline: Duration) -> Error {
    // SAFETY: kill(2) on the process group this function created for the child.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
    Error { kind: ErrorKind::Timeout, message: format!("{what}: still running after {deadline:?}; killed") }
}

/// How a load may go about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Set deltas when the structure is unchanged since the last load, else a full replace.
    Auto,
    /// A full replace whatever was loaded before (drift repairs: the kernel may no longer
    /// hold what this driver loaded).
    Full,
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replaced our whole ruleset.
    Full,
    /// Changed set elements only, in one transaction (both zero: nothing to change).
    Delta {
        /// Elements added, over all sets.
        added: usize,
        /// Elements removed, over all sets.
        removed: usize,
    },
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// How the ruleset was loaded.
    pub mode: Mode,
    /// Conntrack entries deleted because the ruleset no longer allows them.
    pub revoked: usize,
    /// Something secondary (revoking connections) failed; the ruleset is enforced.
    pub warning: Option<String>,
}

/// What the kernel holds of ours. The renderers write no counters today, so there are
/// none to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// A hash of our rules and sets as the kernel lists them, without state (counters,
    /// conntrack), so that traffic does not look like drift.
    pub fingerprint: String,
    /// The rule hashes (`Rule::hash`) the kernel's rules of ours carry in their comments
    /// (input chain first); an empty string for a rule without one (added by hand).
    pub rules: Vec<String>,
}

/// How the rules found in the kernel differ from a ruleset, rule by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleDrift {
    /// Ids of the ruleset's rules whose hash is not in the kernel (changed or deleted).
    pub missing: Vec<String>,
    /// Rules in the kernel that are none of the ruleset's (added, or changed by hand).
    pub foreign: usize,
}

impl RuleDrift {
    /// No rule differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.foreign == 0
    }
}

impl std::fmt::Display for RuleDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(5).map(String::as_str).collect();
            let more =
                if self.missing.len() > 5 { format!(" and {} more", self.missing.len() - 5) } else { String::new() };
            parts.push(format!("rules changed or missing: {}{more}", shown.join(", ")));
        }
        if self.foreign > 0 {
            parts.push(format!("{} rule(s) not ours", self.foreign));
        }
        if parts.is_empty() {
            parts.push("every rule as written (the sets, the order or the table itself differ)".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Compares the rule hashes found in the kernel with the ruleset's rules.
pub fn rule_drift(rs: &NodeRuleset, found: &[String]) -> RuleDrift {
    let want: Vec<(String, &str)> = rs.input.iter().chain(&rs.output).map(|r| (r.hash(), r.id.as_str())).collect();
    let found_set: BTreeSet<&str> = found.iter().map(String::as_str).collect();
    let want_set: BTreeSet<&str> = want.iter().map(|(h, _)| h.as_str()).collect();
    let missing: Vec<String> =
        want.iter().filter(|(h, _)| !found_set.contains(h.as_str())).map(|(_, id)| id.to_string()).collect();
    let foreign = found.iter().filter(|h| !want_set.contains(h.as_str())).count();
    RuleDrift { missing, foreign }
}

/// The rule hash at the start of a rule comment (`"0123456789abcdef id: reason"`), if any.
pub fn comment_hash(comment: &str) -> Option<&str> {
    let h = comment.split(' ').next()?;
    (h.len() == fleetwall_ir::RULE_HASH_LEN && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

/// Something that can enforce a ruleset: nftables, iptables + ipset, or memory (tests).
/// The agent and the lab both program kernels through it.
pub trait Dataplane: Send + Sync {
    /// The driver's name (`nft`, `iptables`, `memory`).
    fn name(&self) -> &'static str;
    /// Puts `rs` into the kernel, replacing what this driver loaded before: set element
    /// deltas when `how` allows it and only elements changed, else a full replace. On an
    /// error the previous ruleset is still in force where the tool is atomic (nft).
    fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, Error>;
    /// What the kernel holds of ours now (None: our table or chains are missing).
    fn observe(&self) -> Result<Option<Observed>, Error>;
    /// The fingerprint [`Dataplane::observe`] reports while the kernel holds exactly
    /// `rs`, found without looking at the live kernel (which could hold a rule someone
    /// slipped in since): `rs` loaded alone into an empty private namespace and listed.
    fn expected(&self, rs: &NodeRuleset) -> Result<String, Error>;
    /// Deletes the conntrack entries of inbound connections `rs` would not accept as
    /// new; returns how many.
    fn revoke(&self, rs: &NodeRuleset) -> Result<usize, Error>;
    /// [`Dataplane::load`], then [`Dataplane::revoke`]: a failed revoke is a warning, not
    /// an error, since the ruleset is enforced by then.
    fn apply(&self, rs: &NodeRuleset, how: How) -> Result<Applied, Error> {
        let mode = self.load(rs, how)?;
        let (revoked, warning) = match self.revoke(rs) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(format!("applied, but revoking connections failed: {e}"))),
        };
        Ok(Applied { mode, revoked, warning })
    }
}

/// A shared driver is a driver (tests keep a handle on the one they hand over).
impl<D: Dataplane + ?Sized> Dataplane for std::sync::Arc<D> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, Error> {
        (**self).load(rs, how)
    }
    fn observe(&self) -> Result<Option<Observed>, Error> {
        (**self).observe()
    }
    fn expected(&self, rs: &NodeRuleset) -> Result<String, Error> {
        (**self).expected(rs)
    }
    fn revoke(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        (**self).revoke(rs)
    }
}

/// The expected fingerprint of the ruleset whose rendering hashes to `key`, from the
/// one-entry `cache` or, on a miss, `compute`d (in a scratch namespace) and kept: drift
/// checks ask about the same ruleset again and again.
pub(crate) fn cached_expected(
    cache: &std::sync::Mutex<Option<(String, String)>>,
    key: String,
    compute: impl FnOnce() -> Result<String, Error>,
) -> Result<String, Error> {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, fp)) = cache.as_ref().filter(|(k, _)| *k == key) {
        return Ok(fp.clone());
    }
    let fp = compute()?;
    *cache = Some((key, fp.clone()));
    Ok(fp)
}

/// SHA-256 hex of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// One conntrack entry's original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Who opened it.
    pub src: IpAddr,
    /// Where to.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// Parses `conntrack -L` output (the first tuple of a line is the original direction).
pub fn parse_conntrack(text: &str) -> Vec<Flow> {
    let mut flows = Vec::new();
    for line in text.lines() {
        let proto = line.split_whitespace().next().unwrap_or_default();
        if proto != "tcp" && proto != "udp" {
            continue;
        }
        let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_string);
        let parsed = (|| {
            Some(Flow {
                proto: proto.to_string(),
                src: field("src=")?.parse().ok()?,
                dst: field("dst=")?.parse().ok()?,
                sport: field("sport=")?.parse().ok()?,
                dport: field("dport=")?.parse().ok()?,
            })
        })();
        flows.extend(parsed);
    }
    flows
}

/// Deletes the conntrack entries of inbound connections `rs` would not accept as new.
/// Returns how many were deleted.
///
/// Every `conntrack -D` walks the whole conntrack table, so deletes are grouped by what the
/// verdict depends on (protocol, source, destination, destination port: the source port
/// never matters), one filter per group, all in one `conntrack -R -` batch
/// (conntrack-tools 1.4.7 and later). An older conntrack refuses `-R`; then each group
/// gets a process of its own, one at a time.
pub fn revoke(netns: Option<&str>, rs: &NodeRuleset) -> Result<usize, Error> {
    let mut refused = BTreeSet::new();
    for family in ["ipv4", "ipv6"] {
        let listing = run(netns, "conntrack", &["-L", "-f", family], None)?;
        for flow in parse_conntrack(&listing) {
            if !rs.addresses.contains(&flow.dst) {
                continue; // outbound or loopback: not ours to judge
            }
            let transport = if flow.proto == "tcp" { Transport::Tcp(flow.dport) } else { Transport::Udp(flow.dport) };
            if evaluate(rs, &Packet::new(flow.src, flow.dst, transport)).verdict != Verdict::Accept {
                refused.insert((flow.proto, flow.src, flow.dst, flow.dport));
            }
        }
    }
    if refused.is_empty() {
        return Ok(0);
    }
    let filters: Vec<String> = refused
        .iter()
        .map(|(proto, src, dst, dport)| format!("-D -p {proto} -s {src} -d {dst} --dport {dport}"))
        .collect();
    // conntrack prints each entry it deleted; an entry gone already (timed out) is no error.
    match run(netns, "conntrack", &["-R", "-"], Some(&(filters.join("\n") + "\n"))) {
        Ok(deleted) => Ok(parse_conntrack(&deleted).len()),
        Err(e) if e.kind == ErrorKind::Tool => {
            let mut deleted = 0;
            for filter in &filters {
                let args: Vec<&str> = filter.split(' ').collect();
                deleted += run(netns, "conntrack", &args, None).map(|out| parse_conntrack(&out).len()).unwrap_or(0);
            }
            Ok(deleted)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_listing_is_parsed_by_original_direction() {
        let text = "tcp      6 431999 ESTABLISHED src=198.51.100.7 dst=203.0.113.5 sport=40000 dport=12691 src=203.0.113.5 dst=198.51.100.7 sport=12691 dport=40000 [ASSURED] mark=0 use=1\n\
                    udp      17 29 src=2001:db8::7 dst=2001:db8::5 sport=5000 dport=500 [UNREPLIED] src=2001:db8::5 dst=2001:db8::7 sport=500 dport=5000 mark=0 use=1\n\
                    icmp     1 29 src=198.51.100.7 dst=203.0.113.5 type=8 code=0 id=1 src=203.0.113.5 dst=198.51.100.7 type=0 code=0 id=1 mark=0 use=1\n";
        let flows = parse_conntrack(text);
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].src, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((flows[0].sport, flows[0].dport), (40000, 12691));
        assert_eq!(flows[1].proto, "udp");
        assert_eq!(flows[1].dport, 500);
    }

    #[test]
    fn a_hung_tool_hung_its_caller_forever() {
        let start = Instant::now();
        let e =
            run_within(None, "sh", &["-c", "sleep 30 & exec sleep 30"], None, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(start.elapsed() < Duration::from_secs(5), "killed at its deadline, children too");
    }

    #[test]
    fn a_tool_answering_while_it_reads_deadlocked_on_a_full_pipe() {
        // cat writes as it reads: with 1 MiB, both pipes fill unless stdin and stdout are
        // served at once.
        let input = "x".repeat(1 << 20);
        assert_eq!(run(None, "cat", &[], Some(&input)).unwrap().len(), input.len());
        let e = run(None, "sh", &["-c", "echo refused >&2; exit 3"], None).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Tool, "sh -c echo refused >&2; exit 3: refused"));
    }
}

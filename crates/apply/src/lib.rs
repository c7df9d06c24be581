//! Dataplane drivers: put a `NodeRuleset` into a kernel, and revoke what it no longer allows.
//!
//! Calico Felix's split: the compiler decides *what*, a driver decides *how*. The nft
//! driver loads the rendered table in one `nft -f` transaction (our table only: the file
//! creates, deletes and redeclares `inet fleetwall`); the iptables driver restores the
//! ipsets, then both filter tables. After either, `revoke` deletes the conntrack entries
//! of inbound connections the new ruleset would refuse (contract point 10), so removing a
//! source cuts its established connections too. Every driver can be scoped to a network
//! namespace (`ip netns exec`); the fake driver records what it was given, for tests.

use fleetwall_ir::{NodeRuleset, Verdict};
use fleetwall_verify::{evaluate, Packet, Transport};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// What went wrong while programming the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A tool (nft, iptables-restore, ipset, conntrack) could not be started.
    Spawn,
    /// A tool ran and refused the input or failed.
    Tool,
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

/// Runs `program args` (inside `netns` when given), feeding `stdin`; returns stdout.
pub fn run(netns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
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
    let what = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| Error { kind: ErrorKind::Spawn, message: format!("{what}: {e}") })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(input.as_bytes())
            .map_err(|e| Error { kind: ErrorKind::Tool, message: format!("{what}: {e}") })?;
    }
    let out =
        child.wait_with_output().map_err(|e| Error { kind: ErrorKind::Spawn, message: format!("{what}: {e}") })?;
    if !out.status.success() {
        return Err(Error {
            kind: ErrorKind::Tool,
            message: format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Something that can enforce a ruleset.
pub trait Dataplane {
    /// The driver's name (`nft`, `iptables`, `fake`).
    fn name(&self) -> &'static str;
    /// Enforces `rs`, replacing what this driver applied before, and revokes connections
    /// it no longer allows. Returns how many conntrack entries were revoked.
    fn apply(&self, rs: &NodeRuleset) -> Result<usize, Error>;
}

/// nftables, in a network namespace or (with `None`) wherever the process runs.
pub struct Nft {
    /// The namespace to program.
    pub netns: Option<String>,
}

impl Dataplane for Nft {
    fn name(&self) -> &'static str {
        "nft"
    }
    fn apply(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        run(self.netns.as_deref(), "nft", &["-f", "-"], Some(&fleetwall_render::nft::render(rs)))?;
        revoke(self.netns.as_deref(), rs)
    }
}

/// iptables + ipset, for legacy hosts.
pub struct Iptables {
    /// The namespace to program.
    pub netns: Option<String>,
}

impl Dataplane for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn apply(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        let r = fleetwall_render::iptables::render(rs);
        let ns = self.netns.as_deref();
        run(ns, "ipset", &["restore", "-exist"], Some(&r.ipset))?;
        run(ns, "iptables-restore", &[], Some(&r.v4))?;
        run(ns, "ip6tables-restore", &[], Some(&r.v6))?;
        revoke(ns, rs)
    }
}

/// Records rulesets instead of programming a kernel (unit tests only).
#[derive(Default)]
pub struct Fake {
    /// Every ruleset applied, in order.
    pub applied: Mutex<Vec<NodeRuleset>>,
}

impl Dataplane for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn apply(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        self.applied.lock().expect("not poisoned").push(rs.clone());
        Ok(0)
    }
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
pub fn revoke(netns: Option<&str>, rs: &NodeRuleset) -> Result<usize, Error> {
    let mut deleted = 0;
    for family in ["ipv4", "ipv6"] {
        let listing = run(netns, "conntrack", &["-L", "-f", family], None)?;
        for flow in parse_conntrack(&listing) {
            if !rs.addresses.contains(&flow.dst) {
                continue; // outbound or loopback: not ours to judge
            }
            let transport = if flow.proto == "tcp" { Transport::Tcp(flow.dport) } else { Transport::Udp(flow.dport) };
            if evaluate(rs, &Packet::new(flow.src, flow.dst, transport)).verdict == Verdict::Accept {
                continue;
            }
            let (src, dst, sport, dport) =
                (flow.src.to_string(), flow.dst.to_string(), flow.sport.to_string(), flow.dport.to_string());
            let args = ["-D", "-p", &flow.proto, "-s", &src, "-d", &dst, "--sport", &sport, "--dport", &dport];
            // The entry may be gone already (timed out); that is what we wanted.
            if run(netns, "conntrack", &args, None).is_ok() {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
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
}

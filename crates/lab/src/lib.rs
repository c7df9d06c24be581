//! The lab: a fleet built as network namespaces, every node's compiled ruleset applied
//! in a real kernel, and the connectivity the fleet implies probed with real TCP and UDP.
//!
//! `Lab::up` builds and applies; `Lab::probe` checks every relevant source × node
//! address × port against the contract (`expect`); dropping the lab removes every
//! namespace it made. Nothing is ever created in the machine's own namespace.

pub mod egress;
pub mod expect;
pub mod netns;
pub mod probe;
pub mod report;
pub mod sources;
pub mod topo;
pub mod zones;

use expect::Target;
use fleetwall_apply::{Dataplane, How, Iptables, Nft};
use fleetwall_ir::{NodeRuleset, Reject, Verdict};
use fleetwall_model::{Fleet, Protocol, IPSEC_PORTS};
use probe::{Listeners, Observed};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use topo::{Role, Topology};

/// How rulesets are put into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// nftables (`table inet fleetwall`).
    Nft,
    /// iptables-restore + ipset.
    Iptables,
}

/// Rejects slower than this count as mismatches: clients must fail fast.
pub const REJECT_DEADLINE: Duration = Duration::from_millis(500);

/// Ports probed on every node although no listener is allocated there.
pub const EXTRA_TCP: [u16; 1] = [80];

/// A lab failure that is not a mismatch (setup, apply, sockets).
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<fleetwall_apply::Error> for Error {
    fn from(e: fleetwall_apply::Error) -> Self {
        Error(e.message)
    }
}

/// One probe and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    /// Which source (label).
    pub source: String,
    /// Its address.
    pub src: IpAddr,
    /// The target node.
    pub node: String,
    /// The node address probed.
    pub dst: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// What the contract says: accepted?
    pub expect_accept: bool,
    /// What the evaluator says the applied ruleset does with the packet.
    pub evaluator: String,
    /// Whether the kernel did what the evaluator says (accept ↔ connected, each reject ↔
    /// its answer).
    pub evaluator_agrees: bool,
    /// What happened.
    pub observed: Observed,
    /// How long it took, in milliseconds (the last attempt).
    pub ms: f64,
    /// Attempts made (2 when the first got no answer at all).
    pub attempts: u8,
    /// Whether observation, the contract and the evaluator all agree (rejects also in
    /// time and in kind).
    pub ok: bool,
}

/// A lab that is up: namespaces built, rulesets applied, listeners running.
pub struct Lab<'f> {
    /// The fleet it was built from.
    pub fleet: &'f Fleet,
    /// The backend in use.
    pub backend: Backend,
    // Field order matters: listeners close before the namespaces go.
    listeners: Vec<Listeners>,
    /// The network.
    pub topo: Topology,
    /// The ports probed per node (TCP, UDP).
    ports: BTreeMap<String, (Vec<u16>, Vec<u16>)>,
    /// How long building and applying took.
    pub setup: Duration,
    /// The ruleset last applied to each node (what the evaluator is asked about).
    applied: Mutex<BTreeMap<String, NodeRuleset>>,
}

fn unallocated_port(used: &BTreeSet<u16>) -> u16 {
    (10001..30000).rev().find(|p| !used.contains(p)).expect("a free port")
}

impl<'f> Lab<'f> {
    /// Builds the fleet's network, applies every node's ruleset and starts listeners.
    pub fn up(fleet: &'f Fleet, backend: Backend) -> Result<Lab<'f>, Error> {
        Lab::up_with_prefix(fleet, backend, &netns::run_prefix())
    }

    /// Like `up`, with a chosen namespace prefix (so a signal handler can clean it up).
    pub fn up_with_prefix(fleet: &'f Fleet, backend: Backend, prefix: &str) -> Result<Lab<'f>, Error> {
        Lab::up_with(fleet, backend, prefix, &[])
    }

    /// Like `up_with_prefix`, with extra client sources (property tests add random ones;
    /// addresses already in the lab are skipped).
    pub fn up_with(
        fleet: &'f Fleet,
        backend: Backend,
        prefix: &str,
        extra_sources: &[IpAddr],
    ) -> Result<Lab<'f>, Error> {
        let start = Instant::now();
        netns::sweep_leftovers();
        let mut hosts: Vec<(Role, Vec<IpAddr>)> = Vec::new();
        for (_, _, n) in fleet.nodes() {
            hosts.push((Role::Node(n.name.clone()), n.private.iter().chain(&n.public).copied().collect()));
        }
        for g in &fleet.platform.management_gateways {
            hosts.push((Role::Gateway, vec![*g]));
        }
        for s in sources::sources(fleet) {
            hosts.push((Role::Client(s.label), vec![s.addr]));
        }
        for (_, _, s) in fleet.servers() {
            hosts.push((Role::Node(s.name.clone()), s.addresses.clone()));
        }
        let taken: BTreeSet<IpAddr> = hosts.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        for s in zones::sources(fleet, &taken) {
            hosts.push((Role::Client(s.label), vec![s.addr]));
        }
        for a in extra_sources {
            if !hosts.iter().any(|(_, addrs)| addrs.contains(a)) {
                hosts.push((Role::Client(format!("extra source {a}")), vec![*a]));
            }
        }
        let topo = Topology::build(prefix, hosts)?;
        let mut lab = Lab {
            fleet,
            backend,
            listeners: Vec::new(),
            topo,
            ports: BTreeMap::new(),
            setup: Duration::ZERO,
            applied: Mutex::new(BTreeMap::new()),
        };
        for rs in fleetwall_compile::compile(fleet) {
            lab.apply(&rs)?;
        }
        let p = &fleet.platform;
        for (proj, svc, node) in fleet.nodes() {
            let t = Target::new(fleet, proj, svc, node);
            let mut tcp: BTreeSet<u16> =
                t.listeners.iter().filter(|l| l.protocol == Protocol::Tcp).map(|l| l.port).collect();
            let mut udp: BTreeSet<u16> =
                t.listeners.iter().filter(|l| l.protocol == Protocol::Udp).map(|l| l.port).collect();
            // Over the other protocol: the first client port, by UDP.
            udp.extend(t.listeners.iter().filter(|l| l.protocol == Protocol::Tcp).map(|l| l.port).take(1));
            udp.extend(IPSEC_PORTS);
            let used: BTreeSet<u16> = tcp.union(&udp).copied().collect();
            tcp.extend([p.ssh_port, p.platform_port, unallocated_port(&used)]);
            tcp.extend(EXTRA_TCP);
            let (tcp, udp): (Vec<u16>, Vec<u16>) = (tcp.into_iter().collect(), udp.into_iter().collect());
            let host = lab.topo.node(&node.name).expect("every node has a host");
            let l = Listeners::start(&host.netns, &tcp, &udp)
                .map_err(|e| Error(format!("listeners on {}: {e}", node.name)))?;
            lab.listeners.push(l);
            lab.ports.insert(node.name.clone(), (tcp, udp));
        }
        // Deployment servers: every port of their deployment's flows, TCP and UDP, and SSH.
        for (d, _, server) in fleet.servers() {
            let mut ports = zones::ports(d);
            ports.push(p.ssh_port);
            ports.sort_unstable();
            ports.dedup();
            let host = lab.topo.node(&server.name).expect("every server has a host");
            let l = Listeners::start(&host.netns, &ports, &ports)
                .map_err(|e| Error(format!("listeners on {}: {e}", server.name)))?;
            lab.listeners.push(l);
            lab.ports.insert(server.name.clone(), (ports.clone(), ports));
        }
        lab.setup = start.elapsed();
        Ok(lab)
    }

    /// The namespace of fleet node `name`.
    pub fn netns_of(&self, name: &str) -> Option<&str> {
        self.topo.node(name).map(|h| h.netns.as_str())
    }

    /// The lab backend's dataplane driver for `netns`.
    pub fn driver(backend: Backend, netns: &str) -> Box<dyn Dataplane> {
        match backend {
            Backend::Nft => Box::new(Nft::new(Some(netns.to_string()))),
            Backend::Iptables => Box::new(Iptables::new(Some(netns.to_string()))),
        }
    }

    /// Applies a ruleset to its node with the lab's backend (a full replace); returns
    /// revoked entries. A failed revoke is an error here: the lab checks it.
    pub fn apply(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        let ns = self.netns_of(&rs.node).ok_or_else(|| Error(format!("no host for node {}", rs.node)))?;
        let driver = Lab::driver(self.backend, ns);
        driver.load(rs, How::Full)?;
        let revoked = driver.revoke(rs)?;
        self.applied.lock().expect("applied rulesets").insert(rs.node.clone(), rs.clone());
        Ok(revoked)
    }

    fn is_server(&self, name: &str) -> bool {
        self.fleet.servers().any(|(_, _, s)| s.name == name)
    }

    fn label(&self, host: &topo::Host, target_service: &str) -> String {
        match &host.role {
            Role::Gateway => format!("gateway {}", host.addrs[0]),
            Role::Client(l) => l.clone(),
            Role::Node(n) if self.is_server(n) => format!("server {n}"),
            Role::Node(n) => {
                let (p, s, _) = self.fleet.nodes().find(|(_, _, x)| &x.name == n).expect("node host");
                if s.name == target_service {
                    format!("peer {n}")
                } else {
                    format!("node {n} of {}/{}", p.name, s.name)
                }
            }
        }
    }

    /// Probes every source × node address × probed port, in parallel by source.
    /// `progress` is called with (done, total) as probes complete.
    pub fn probe(&self, progress: &(dyn Fn(usize, usize) + Sync)) -> Vec<ProbeRow> {
        // Plan: for every source host, the probes it sends.
        // Each node's listener table, built once for all sources.
        let targets: Vec<Target> = self.fleet.nodes().map(|(p, s, n)| Target::new(self.fleet, p, s, n)).collect();
        let applied = self.applied.lock().expect("applied rulesets").clone();
        let mut plan: Vec<(&topo::Host, Vec<Planned>)> = Vec::new();
        for host in &self.topo.hosts {
            // A probe from a node leaves through that node's output chain first.
            let (sender, sender_rs) = match &host.role {
                Role::Node(name) => {
                    (self.fleet.nodes().find(|(_, _, n)| &n.name == name).map(|(p, s, _)| (p, s)), applied.get(name))
                }
                _ => (None, None),
            };
            let mut probes = Vec::new();
            for t in &targets {
                let (svc, node) = (t.service, t.node);
                // A server's own output chain decides what it sends: the contract of
                // services reads only the destination, so servers probe servers only.
                if host.role == Role::Node(node.name.clone())
                    || matches!(&host.role, Role::Node(n) if self.is_server(n))
                {
                    continue;
                }
                let (tcp, udp) = &self.ports[&node.name];
                let label = self.label(host, &svc.name);
                for dst in node.private.iter().chain(&node.public) {
                    for src in host.addrs.iter().filter(|a| a.is_ipv4() == dst.is_ipv4()) {
                        let ports =
                            tcp.iter().map(|p| (*p, Protocol::Tcp)).chain(udp.iter().map(|p| (*p, Protocol::Udp)));
                        for (port, proto) in ports {
                            let transport = match proto {
                                Protocol::Tcp => fleetwall_eval::Transport::Tcp(port),
                                Protocol::Udp => fleetwall_eval::Transport::Udp(port),
                            };
                            let packet = fleetwall_eval::Packet::new(*src, *dst, transport);
                            let out = sender_rs.map(|rs| {
                                fleetwall_eval::evaluate_in(rs, fleetwall_ir::Direction::Egress, &packet).verdict
                            });
                            let local = out.is_some_and(|v| v != Verdict::Accept);
                            let eval = match out {
                                Some(v) if v != Verdict::Accept => Some(v),
                                _ => applied.get(&node.name).map(|rs| fleetwall_eval::evaluate(rs, &packet).verdict),
                            };
                            let sends = sender.is_none_or(|(p, s)| expect::sends(self.fleet, p, s, *dst, port, proto));
                            probes.push(Planned {
                                eval,
                                source: label.clone(),
                                src: *src,
                                node: node.name.clone(),
                                dst: *dst,
                                port,
                                protocol: proto,
                                want: sends && t.accepts(*src, *dst, port, proto),
                                local,
                            });
                        }
                    }
                }
            }
            self.plan_servers(host, &applied, &mut probes);
            plan.push((host, probes));
        }
        let total: usize = plan.iter().map(|(_, p)| p.len()).sum();
        let done = AtomicUsize::new(0);
        let mut rows: Vec<ProbeRow> = Vec::with_capacity(total);
        std::thread::scope(|scope| {
            let handles: Vec<_> = plan
                .iter()
                .map(|(host, probes)| {
                    let done = &done;
                    scope.spawn(move || {
                        let mut out = Vec::with_capacity(probes.len());
                        if let Err(e) = netns::enter(&host.netns) {
                            for p in probes {
                                out.push(p.row(Observed::Error(e.to_string()), Duration::ZERO, 0));
                            }
                            return out;
                        }
                        for p in probes {
                            let (seen, took, attempts) = probe::probe(p.src, p.dst, p.port, p.protocol);
                            out.push(p.row(seen, took, attempts));
                            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                        }
                        out
                    })
                })
                .collect();
            for h in handles {
                rows.extend(h.join().expect("probe thread"));
            }
        });
        rows.sort_by(|a, b| {
            (&a.node, a.dst, a.protocol, a.port, a.src).cmp(&(&b.node, b.dst, b.protocol, b.port, b.src))
        });
        rows
    }
}

impl Lab<'_> {
    /// The probes from `host` to every deployment server: the verdict the applied
    /// rulesets give is the source server's output chain's (when the host is a server and
    /// it refuses), else the destination's input chain's.
    fn plan_servers(&self, host: &topo::Host, applied: &BTreeMap<String, NodeRuleset>, probes: &mut Vec<Planned>) {
        let own = match &host.role {
            Role::Node(n) => applied.get(n).filter(|_| self.is_server(n)),
            _ => None,
        };
        for (_, _, server) in self.fleet.servers() {
            if host.role == Role::Node(server.name.clone()) {
                continue;
            }
            let (tcp, udp) = &self.ports[&server.name];
            let label = self.label(host, "");
            for dst in &server.addresses {
                for src in host.addrs.iter().filter(|a| a.is_ipv4() == dst.is_ipv4()) {
                    let ports = tcp.iter().map(|p| (*p, Protocol::Tcp)).chain(udp.iter().map(|p| (*p, Protocol::Udp)));
                    for (port, proto) in ports {
                        let t = match proto {
                            Protocol::Tcp => fleetwall_eval::Transport::Tcp(port),
                            Protocol::Udp => fleetwall_eval::Transport::Udp(port),
                        };
                        let packet = fleetwall_eval::Packet::new(*src, *dst, t);
                        let out = own.map(|rs| fleetwall_eval::evaluate_egress(rs, &packet).verdict);
                        let local = out.is_some_and(|v| v != Verdict::Accept);
                        let eval = match out {
                            Some(v) if v != Verdict::Accept => Some(v),
                            _ => applied.get(&server.name).map(|rs| fleetwall_eval::evaluate(rs, &packet).verdict),
                        };
                        probes.push(Planned {
                            eval,
                            source: label.clone(),
                            src: *src,
                            node: server.name.clone(),
                            dst: *dst,
                            port,
                            protocol: proto,
                            want: zones::accepts(self.fleet, *src, *dst, port, proto),
                            local,
                        });
                    }
                }
            }
        }
    }
}

/// A probe to send, with the contract's expectation.
struct Planned {
    /// The evaluator's verdict (`None` when nothing was applied to the node).
    eval: Option<Verdict>,
    source: String,
    src: IpAddr,
    node: String,
    dst: IpAddr,
    port: u16,
    protocol: Protocol,
    want: bool,
    /// The sender's own output chain refuses it: a UDP refusal there reaches the sending
    /// socket as EPERM at once (the ICMP error never leaves the host), not as an ICMP error.
    local: bool,
}

impl Planned {
    fn row(&self, observed: Observed, took: Duration, attempts: u8) -> ProbeRow {
        let evaluator_agrees = matches!(
            (self.eval, &observed),
            (Some(Verdict::Accept), Observed::Connected)
                | (Some(Verdict::Reject(Reject::TcpReset)), Observed::Reset)
                | (Some(Verdict::Reject(Reject::PortUnreachable)), Observed::PortUnreachable)
                | (Some(Verdict::Reject(Reject::AdminProhibited)), Observed::Unreachable)
                | (Some(Verdict::Drop), Observed::Timeout)
        ) || (self.local
            && matches!((self.eval, &observed), (Some(Verdict::Reject(_)), Observed::Unreachable)));
        let contract = match (self.want, &observed) {
            (true, Observed::Connected) => true,
            (false, Observed::Unreachable) if self.local => took < REJECT_DEADLINE,
            (false, Observed::Reset) => self.protocol == Protocol::Tcp && took < REJECT_DEADLINE,
            (false, Observed::PortUnreachable) => self.protocol == Protocol::Udp && took < REJECT_DEADLINE,
            _ => false,
        };
        let ok = contract && evaluator_agrees;
        ProbeRow {
            source: self.source.clone(),
            src: self.src,
            node: self.node.clone(),
            dst: self.dst,
            port: self.port,
            protocol: self.protocol,
            expect_accept: self.want,
            evaluator: self.eval.map_or("nothing applied".into(), fleetwall_eval::trace::verdict_name),
            evaluator_agrees,
            observed,
            ms: took.as_secs_f64() * 1e3,
            attempts,
            ok,
        }
    }
}

/// The outcome of a whole lab run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The backend used.
    pub backend: Backend,
    /// Namespaces created (hosts and the switch).
    pub namespaces: usize,
    /// Time to build the network, apply rulesets and start listeners (ms).
    pub setup_ms: f64,
    /// Time to probe (ms).
    pub probe_ms: f64,
    /// Every probe.
    pub probes: Vec<ProbeRow>,
}

impl Report {
    /// The probes whose outcome differs from the contract.
    pub fn mismatches(&self) -> impl Iterator<Item = &ProbeRow> {
        self.probes.iter().filter(|r| !r.ok)
    }
}

/// Builds the lab, probes everything, tears it down.
pub fn run(
    fleet: &Fleet,
    backend: Backend,
    prefix: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report, Error> {
    let lab = Lab::up_with_prefix(fleet, backend, prefix)?;
    let start = Instant::now();
    let probes = lab.probe(progress);
    Ok(Report {
        backend,
        namespaces: lab.topo.namespaces(),
        setup_ms: lab.setup.as_secs_f64() * 1e3,
        probe_ms: start.elapsed().as_secs_f64() * 1e3,
        probes,
    })
}

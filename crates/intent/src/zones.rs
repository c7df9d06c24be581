//! Deployments of zones, subsystems and clusters (S9): every server gets inbound and
//! outbound rules for exactly the flows of its deployment kind that start or end at its
//! subsystem, and everything else is rejected in both directions.
//!
//! The flows are data (`fleetwall_model::deployment`, `catalog/deployments.yaml`); this
//! module only places them. One `ServiceIntent` per cluster (`deployment/cluster`), so
//! the lowering, the renderers, the evaluator, trace and diff need no change. The key
//! decision is who a subsystem endpoint means: the servers of those subsystems, except
//! that a server's own subsystem means its own cluster only — so the members of a
//! cluster reach each other, and two clusters of one subsystem never do (the seed's
//! gateway cluster rule), whatever flow would otherwise join them: a zone or "anywhere"
//! seen from a cluster leaves out the servers of its subsystem's other clusters. A zone
//! stands for clients: a server's own side of a flow is only ever its subsystem. Rule reasons name the
//! flow ("flow 7: Push configuration – …"), so a trace or a diff says which flow it is.
//!
//! Unlike a managed service, a deployment server has no platform management access:
//! operators reach it through the flows the product documents (SSH from the protected
//! zone, …), and the management proof does not apply to it.

use crate::{Direction, Flow, Group, GroupId, GroupMember, NodeIntent, ServiceIntent, Stage, Traffic};
use fleetwall_eval::cidr::subtract;
use fleetwall_ir::{CtState, Family, Reject, Verdict};
use fleetwall_model::deployment::{Cluster, Deployment, Endpoint, FlowDef, FlowProtocol, FlowTable};
use fleetwall_model::Fleet;
use ipnet::IpNet;
use std::collections::BTreeMap;

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// A set-name stem: `[a-z0-9_]`, short enough for a family suffix and ipset's 31
/// characters with the iptables renderer's `fw-` prefix.
fn stem(prefix: &str, name: &str) -> String {
    let mut s: String = format!("{prefix}_{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    s.truncate(20);
    s
}

/// A rule-id slug piece.
fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// The groups of one deployment, made on first use (so a node's ruleset has only the
/// sets its flows use), each with a stem unique in the deployment.
struct Groups<'g> {
    groups: &'g mut Vec<Group>,
    by_key: BTreeMap<String, GroupId>,
    stems: BTreeMap<String, usize>,
}

impl Groups<'_> {
    fn unique_stem(&mut self, base: String) -> String {
        let n = self.stems.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            let mut b = base;
            b.truncate(16);
            format!("{b}_{n}")
        }
    }

    /// The addresses of the servers of the other clusters of `home`'s subsystem: never a
    /// peer of `home`, whichever side of a flow they would be on.
    fn strangers(d: &Deployment, home: &Cluster) -> Vec<IpNet> {
        d.clusters
            .iter()
            .filter(|c| c.subsystem == home.subsystem && c.name != home.name)
            .flat_map(|c| c.servers.iter().flat_map(|s| s.addresses.iter().map(|a| IpNet::from(*a))))
            .collect()
    }

    /// Networks (a zone's, or everything) as a group seen from `home`: without the
    /// servers of the other clusters of its subsystem. `None` when nothing is left out
    /// of "everything" (the flow needs no group).
    fn networks(&mut self, d: &Deployment, zone: Option<&str>, home: &Cluster) -> Option<Option<GroupId>> {
        let (nets, title, what) = match zone {
            Some(z) => {
                let nets = d.zone(z)?.networks.clone();
                let title = d.kind.zone(z).map_or(z, |z| z.title.as_str()).to_string();
                (nets, title, format!("zone {z} network"))
            }
            None => {
                let all: Vec<IpNet> = ["0.0.0.0/0", "::/0"].iter().map(|n| n.parse().expect("literal")).collect();
                (all, "anywhere".to_string(), "anywhere:".to_string())
            }
        };
        let strangers: Vec<IpNet> =
            Self::strangers(d, home).into_iter().filter(|a| nets.iter().any(|n| n.contains(&a.addr()))).collect();
        if zone.is_none() && strangers.is_empty() {
            return Some(None);
        }
        let key = format!("zone {} without {strangers:?}", zone.unwrap_or("*"));
        if let Some(id) = self.by_key.get(&key) {
            return Some(Some(*id));
        }
        let (members, reason) = if strangers.is_empty() {
            (nets.clone(), format!("{title} of {}", d.name))
        } else {
            (subtract(&nets, &strangers), format!("{title} of {}, but the other {} clusters", d.name, home.subsystem))
        };
        let set = self.unique_stem(stem("zone", zone.unwrap_or("any")));
        self.groups.push(Group {
            name: format!("{}/zones/{}", d.name, zone.unwrap_or("*")),
            set,
            reason,
            reason_others: None,
            inline: false,
            members: members
                .iter()
                .map(|n| {
                    let from = nets.iter().find(|z| z.contains(&n.addr())).copied().unwrap_or(*n);
                    let why = if *n == from {
                        format!("{what} {n} of {}", d.name)
                    } else {
                        format!("{what} {from} of {} ({n}: without the other {} clusters)", d.name, home.subsystem)
                    };
                    GroupMember { net: *n, reason: why, node: None }
                })
                .collect(),
        });
        let id = GroupId(self.groups.len() - 1);
        self.by_key.insert(key, id);
        Some(Some(id))
    }

    /// The servers of `subsystems` as seen from `home`: its own subsystem is its cluster.
    fn servers(&mut self, d: &Deployment, subsystems: &[String], home: &Cluster) -> Option<GroupId> {
        let clusters: Vec<&Cluster> = d
            .clusters
            .iter()
            .filter(|c| subsystems.contains(&c.subsystem) && (c.subsystem != home.subsystem || c.name == home.name))
            .collect();
        if clusters.is_empty() {
            return None;
        }
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let key = format!("clusters {}", names.join(" "));
        if let Some(id) = self.by_key.get(&key) {
            return Some(*id);
        }
        let (what, base) = match clusters.as_slice() {
            [c] => (format!("servers of cluster {} ({})", c.name, c.subsystem), stem("cl", &c.name)),
            _ => {
                let mut subs: Vec<&str> = clusters.iter().map(|c| c.subsystem.as_str()).collect();
                subs.dedup();
                (format!("servers of clusters {}", names.join(", ")), stem("srv", &subs.join("_")))
            }
        };
        let set = self.unique_stem(base);
        self.groups.push(Group {
            name: format!("{}/{}", d.name, names.join("+")),
            set,
            reason: format!("{what} of {}", d.name),
            reason_others: Some(format!("{what} of {}, but this one", d.name)),
            inline: false,
            members: clusters
                .iter()
                .flat_map(|c| {
                    c.servers.iter().flat_map(move |s| {
                        s.addresses.iter().map(move |a| GroupMember {
                            net: IpNet::from(*a),
                            reason: format!("server {} of cluster {} ({})", s.name, c.name, c.subsystem),
                            node: Some(s.name.clone()),
                        })
                    })
                })
                .collect(),
        });
        let id = GroupId(self.groups.len() - 1);
        self.by_key.insert(key, id);
        Some(id)
    }

    /// The peer group of one side of a flow, seen from `home`; `None`: nobody there.
    fn endpoint(&mut self, d: &Deployment, e: &Endpoint, home: &Cluster) -> Option<Option<GroupId>> {
        match e {
            Endpoint::Anywhere => self.networks(d, None, home),
            Endpoint::Zone(z) => self.networks(d, Some(z), home),
            Endpoint::Subsystems(s) => self.servers(d, s, home).map(Some),
        }
    }
}

fn traffics(p: FlowProtocol, ports: &[u16]) -> Vec<(&'static str, Traffic)> {
    match p {
        FlowProtocol::Tcp => vec![("tcp", Traffic::Tcp(ports.to_vec()))],
        FlowProtocol::Udp => vec![("udp", Traffic::Udp(ports.to_vec()))],
        FlowProtocol::TcpUdp => vec![("tcp", Traffic::Tcp(ports.to_vec())), ("udp", Traffic::Udp(ports.to_vec()))],
        FlowProtocol::Any => vec![("any", Traffic::Any)],
    }
}

fn describe(p: FlowProtocol, ports: &[u16]) -> String {
    let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    match p {
        FlowProtocol::Any => "any traffic".to_string(),
        p => format!("{list}/{}", p.as_str()),
    }
}

/// The flows of one catalog flow on the servers of `home`: inbound where its subsystem
/// accepts, outbound where it opens (and the reverse for bidirectional flows).
fn place(d: &Deployment, f: &FlowDef, home: &Cluster, g: &mut Groups<'_>, out: &mut Vec<Flow>) {
    let protocol = d.protocol(f);
    let ports = d.ports(f);
    // A tcp/udp flow whose ports an option left empty opens nothing (not every port).
    if protocol != FlowProtocol::Any && ports.is_empty() {
        return;
    }
    let label = f.label();
    let id = match f.number {
        Some(n) => format!("f{n}-{}", slug(&f.id)),
        None if f.table == FlowTable::Cluster => format!("cluster-{}", slug(&f.id)),
        None => format!("t{}-{}", f.table.as_str(), slug(&f.id)),
    };
    let what = describe(protocol, &ports);
    let mut sides = vec![(&f.from, &f.to, "")];
    if f.bidirectional && f.from != f.to {
        sides.push((&f.to, &f.from, "-rev"));
    }
    for (from, to, rev) in sides {
        // (this server's side, the peer side, direction)
        for (mine, peer, dir) in [(to, from, Direction::Ingress), (from, to, Direction::Egress)] {
            if !mine.has_subsystem(&home.subsystem) {
                continue;
            }
            let Some(group) = g.endpoint(d, peer, home) else { continue };
            let (tag, towards) = match dir {
                Direction::Ingress => ("in", "from"),
                Direction::Egress => ("out", "to"),
            };
            let reason = format!(
                "{label}: {} ({what} {towards} {}{})",
                f.usage,
                match group {
                    Some(gid) => g.groups[gid.0].reason.clone(),
                    None => "anywhere".to_string(),
                },
                if rev.is_empty() { "" } else { ", the other way" }
            );
            for (proto, traffic) in traffics(protocol, &ports) {
                let base = format!("{id}-{tag}{rev}-{proto}");
                let accept = |id: String| flow(dir, id, Stage::Clients, &reason, Verdict::Accept);
                match group {
                    None => out.push(accept(base).traffic(traffic.clone())),
                    Some(gid) => {
                        // Only a group holding this server's own cluster leaves the server out.
                        let own = peer.has_subsystem(&home.subsystem);
                        for fam in FAMILIES {
                            out.push(
                                accept(format!("{base}-{}", fam.as_str()))
                                    .family(fam)
                                    .peer(gid, own)
                                    .traffic(traffic.clone()),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A flow in direction `dir`, from or to anyone (until narrowed).
fn flow(dir: Direction, id: String, stage: Stage, reason: &str, verdict: Verdict) -> Flow {
    Flow { direction: dir, ..Flow::ingress(id, stage, reason, verdict) }
}

/// Loopback, established, neighbour discovery, ICMP errors and the one drop, both ways.
fn base(out: &mut Vec<Flow>) {
    let accept = Verdict::Accept;
    for dir in [Direction::Ingress, Direction::Egress] {
        let tag = if dir == Direction::Ingress { "in" } else { "out" };
        let f = |id: &str, reason: &str, v: Verdict| flow(dir, format!("base-{id}-{tag}"), Stage::Base, reason, v);
        out.push(f("loopback", "loopback traffic", accept).loopback());
        out.push(
            f("established", "packets of established connections and related ICMP errors", accept)
                .ct(CtState::EstablishedRelated),
        );
        out.push(
            f("nd-v6", "IPv6 neighbour discovery", accept)
                .family(Family::V6)
                .traffic(Traffic::Icmp(crate::ND_TYPES.to_vec())),
        );
        out.push(f("invalid", "conntrack-invalid packets (the only drop)", Verdict::Drop).ct(CtState::Invalid));
        out.push(
            f("icmp-errors-v4", "ICMP errors (unreachable, time exceeded, parameter problem)", accept)
                .family(Family::V4)
                .traffic(Traffic::Icmp(crate::ICMP_ERRORS_V4.to_vec())),
        );
        out.push(
            f(
                "icmp-errors-v6",
                "ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem)",
                accept,
            )
            .family(Family::V6)
            .traffic(Traffic::Icmp(crate::ICMP_ERRORS_V6.to_vec())),
        );
    }
}

/// Everything no flow allows, refused in both directions so both sides fail fast.
fn rejects(out: &mut Vec<Flow>) {
    for dir in [Direction::Ingress, Direction::Egress] {
        let tag = if dir == Direction::Ingress { "in" } else { "out" };
        for (id, reason, t, r) in [
            ("tcp", "not a flow of the deployment: TCP is reset", Traffic::Tcp(vec![]), Reject::TcpReset),
            (
                "udp",
                "not a flow of the deployment: UDP gets port unreachable",
                Traffic::Udp(vec![]),
                Reject::PortUnreachable,
            ),
            (
                "other",
                "not a flow of the deployment: other protocols get admin prohibited",
                Traffic::Any,
                Reject::AdminProhibited,
            ),
        ] {
            out.push(flow(dir, format!("reject-{id}-{tag}"), Stage::Reject, reason, Verdict::Reject(r)).traffic(t));
        }
    }
}

/// The intent of every cluster of the deployments `keep` selects: one `ServiceIntent`
/// per cluster, its groups appended to `groups`.
pub fn build(fleet: &Fleet, groups: &mut Vec<Group>, keep: impl Fn(&Deployment) -> bool) -> Vec<ServiceIntent> {
    let mut out = Vec::new();
    for d in fleet.deployments.iter().filter(|d| keep(d)) {
        let mut g = Groups { groups: &mut *groups, by_key: BTreeMap::new(), stems: BTreeMap::new() };
        for c in &d.clusters {
            let mut flows = Vec::new();
            base(&mut flows);
            for f in &d.kind.flows {
                place(d, f, c, &mut g, &mut flows);
            }
            rejects(&mut flows);
            flows.sort_by_key(|f| (f.direction, f.stage));
            let title = d.kind.subsystem(&c.subsystem).map_or(c.subsystem.as_str(), |s| s.title.as_str());
            out.push(ServiceIntent {
                qualified: format!("{}/{}", d.name, c.name),
                description: format!("{}/{} ({} {title}, zone {})", d.name, c.name, d.kind.name, c.zone),
                // Not a cloud service: no cloud-layer backend renders it.
                cloud: String::new(),
                vpc: None,
                nodes: c
                    .servers
                    .iter()
                    .map(|s| NodeIntent { name: s.name.clone(), private: s.addresses.clone(), public: Vec::new() })
                    .collect(),
                flows,
            });
        }
    }
    out
}

//! The lab's network: one namespace per host on one L2 segment.
//!
//! A bridge lives in a namespace of its own (`<prefix>sw`); every host namespace gets a
//! veth into it, named `eth0`, with its addresses as /32 and /128 and on-link default
//! routes, so hosts of any subnet reach each other directly. Nothing is created in the
//! machine's own namespace. ICMP error rate limits (per peer and the per-namespace
//! token bucket) are lifted so every reject is seen even when all sources probe at once.

use crate::netns;
use fleetwall_apply::{run, Error};
use std::net::IpAddr;

/// What a host stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A fleet node (name).
    Node(String),
    /// A management gateway.
    Gateway,
    /// A client source (why it matters).
    Client(String),
}

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub netns: String,
    /// What it stands for.
    pub role: Role,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
}

/// A built lab network; dropping it removes every namespace.
pub struct Topology {
    /// The run's namespace prefix.
    pub prefix: String,
    /// The hosts, in the order given.
    pub hosts: Vec<Host>,
}

impl Topology {
    /// Builds the network for `hosts` (role and addresses each).
    pub fn build(prefix: &str, hosts: Vec<(Role, Vec<IpAddr>)>) -> Result<Topology, Error> {
        let switch = format!("{prefix}sw");
        let hosts: Vec<Host> = hosts
            .into_iter()
            .enumerate()
            .map(|(i, (role, addrs))| Host { netns: format!("{prefix}h{i}"), role, addrs })
            .collect();
        let mut names = vec![switch.clone()];
        names.extend(hosts.iter().map(|h| h.netns.clone()));
        let topo = Topology { prefix: prefix.to_string(), hosts };
        netns::create(&names)?;
        let mut sw = String::from("link add br0 type bridge mcast_snooping 0\nlink set br0 up\n");
        for (i, h) in topo.hosts.iter().enumerate() {
            sw += &format!("link add v{i} type veth peer name e{i}\nlink set v{i} master br0\nlink set v{i} up\n");
            sw += &format!("link set e{i} netns {}\n", h.netns);
        }
        run(Some(&switch), "ip", &["-batch", "-"], Some(&sw))?;
        for (i, h) in topo.hosts.iter().enumerate() {
            let ns = Some(h.netns.as_str());
            run(
                ns,
                "sysctl",
                &[
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv4.icmp_ratelimit=0",
                    "net.ipv6.icmp.ratelimit=0",
                    "net.ipv4.icmp_msgs_per_sec=1000000",
                    "net.ipv4.icmp_msgs_burst=1000000",
                ],
                None,
            )?;
            let mut b = format!("link set e{i} name eth0\nlink set lo up\nlink set eth0 up\n");
            for a in &h.addrs {
                match a {
                    IpAddr::V4(_) => b += &format!("addr add {a}/32 dev eth0\n"),
                    IpAddr::V6(_) => b += &format!("addr add {a}/128 dev eth0 nodad\n"),
                }
            }
            b += "route add default dev eth0\nroute add ::/0 dev eth0\n";
            run(ns, "ip", &["-batch", "-"], Some(&b))?;
        }
        Ok(topo)
    }

    /// The namespace count (hosts and the switch).
    pub fn namespaces(&self) -> usize {
        self.hosts.len() + 1
    }

    /// The host standing for fleet node `name`.
    pub fn node(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.role == Role::Node(name.to_string()))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        netns::delete_all(&self.prefix);
    }
}

//! Synthetic fleet files: many projects, services and nodes, with ip_filters of a chosen
//! size, written as fleet file v1 text so a benchmark measures the real path
//! (parse → validate → compile → render).
//!
//! Deterministic: the same `Spec` always yields the same bytes. Addresses are unique
//! across the fleet and never used for traffic (the generator is for the compiler).

use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// How many services.
    pub services: usize,
    /// Nodes per service.
    pub nodes_per_service: usize,
    /// `ip_filter` entries per service.
    pub ip_filter: usize,
    /// Services per project.
    pub services_per_project: usize,
    /// PRNG seed.
    pub seed: u64,
    /// Whether even projects deploy into a VPC (odd ones never do).
    pub vpcs: bool,
    /// Whether `ip_filter` entries are disjoint networks with gaps between them (none
    /// covers, overlaps or touches another, so every entry stays its own set element)
    /// instead of random ones.
    pub disjoint: bool,
}

impl Spec {
    /// `nodes` nodes in services of five, each with `ip_filter` entries.
    pub fn fleet(nodes: usize, ip_filter: usize) -> Spec {
        Spec {
            services: nodes.div_ceil(5),
            nodes_per_service: 5,
            ip_filter,
            services_per_project: 10,
            seed: 1,
            vpcs: true,
            disjoint: false,
        }
    }
}

/// SplitMix64: a tiny, good-enough deterministic generator.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const TYPES: [&str; 10] = [
    "pg",
    "kafka",
    "mysql",
    "opensearch",
    "valkey",
    "clickhouse",
    "grafana",
    "flink",
    "kafka_connect",
    "kafka_mirrormaker",
];

fn v4(i: u32) -> String {
    let [a, b, c, d] = i.to_be_bytes();
    format!("{a}.{b}.{c}.{d}")
}

/// A random CIDR string (host bits clear), v4 mostly, v6 one time in eight.
fn random_cidr(rng: &mut Rng) -> String {
    if rng.below(8) == 0 {
        let len = 32 + rng.below(33) as u32;
        let hi = (0x2001_0db8u128 << 96) | (u128::from(rng.next_u64()) << 32);
        let net = hi & (!0u128 << (128 - len));
        format!("{}/{len}", std::net::Ipv6Addr::from(net))
    } else {
        let len = 12 + rng.below(21) as u32;
        let addr = (rng.next_u64() as u32) & (!0u32 << (32 - len));
        format!("{}/{len}", v4(addr))
    }
}

/// Generates a fleet file.
pub fn generate(spec: &Spec) -> String {
    let mut rng = Rng::new(spec.seed);
    let per_project = spec.services_per_project.max(1);
    let projects = spec.services.div_ceil(per_project);
    let mut o = String::with_capacity(spec.services * (spec.nodes_per_service * 80 + spec.ip_filter * 24 + 200) + 1024);
    o.push_str("version: 1\nplatform:\n  management_gateways: [198.51.100.10, 198.51.100.11, 198.51.100.12, 198.51.100.13, \"2001:db8:ffff::10\"]\nprojects:\n");
    let mut node_index: u32 = 0;
    let mut service_index = 0;
    for p in 0..projects {
        let _ = writeln!(o, "  project-{p:05}:");
        if p % 3 != 2 {
            let _ = writeln!(o, "    base_port: {}", 10000 + (p * 97) % 19000);
        }
        // Even projects deploy into a VPC 10.<hi>.<lo>.0/22 with one peering.
        let in_vpc = spec.vpcs && p % 2 == 0;
        let vpc_net = (10u32 << 24) | ((p as u32 & 0x3fff) << 10);
        if in_vpc {
            let _ = writeln!(
                o,
                "    vpcs:\n      vpc-main:\n        cloud: aws-eu-west-1\n        network_cidr: {}/22",
                v4(vpc_net)
            );
            let _ = writeln!(
                o,
                "        peerings:\n          - {{ peer_vpc: vpc-peer-{p}, peer_cidrs: [{}/16] }}",
                v4((172u32 << 24) | (16 << 16) | ((p as u32 % 16) << 16))
            );
        }
        o.push_str("    services:\n");
        let mut vpc_host = 4u32;
        for s in 0..per_project {
            if service_index == spec.services {
                break;
            }
            let ty = TYPES[service_index % TYPES.len()];
            service_index += 1;
            let _ = writeln!(o, "      svc-{s:03}:\n        type: {ty}");
            o.push_str(if in_vpc {
                "        cloud: aws-eu-west-1\n        vpc: vpc-main\n"
            } else {
                "        cloud: google-europe-west1\n"
            });
            o.push_str("        nodes:\n");
            for n in 0..spec.nodes_per_service {
                node_index += 1;
                // Public addresses from 100.64.0.0/10 (never routed: compile-only).
                let public = v4((100u32 << 24) | (64 << 16) | node_index);
                let v6 = format!("2001:db8:{:x}:{:x}::1", node_index >> 16, node_index & 0xffff);
                if in_vpc {
                    let private = v4(vpc_net + vpc_host);
                    vpc_host += 1;
                    let _ =
                        writeln!(o, "          p{p}-s{s}-n{n}: {{ private: {private}, public: [{public}, \"{v6}\"] }}");
                } else {
                    let _ = writeln!(o, "          p{p}-s{s}-n{n}: {{ public: [{public}, \"{v6}\"] }}");
                }
            }
            o.push_str("        user_config:\n          ip_filter:\n");
            for i in 0..spec.ip_filter {
                let c = if spec.disjoint { disjoint_cidr(i) } else { random_cidr(&mut rng) };
                if i % 10 == 0 {
                    let _ = writeln!(o, "            - {{ network: \"{c}\", description: \"client {i}\" }}");
                } else {
                    let _ = writeln!(o, "            - \"{c}\"");
                }
            }
            if in_vpc && ty == "kafka" {
                o.push_str("          public_access: { kafka: true }\n");
            }
        }
    }
    o
}

/// The `i`-th (`i` < 65,536) of a series of networks none of which overlaps or touches
/// another: IPv4 /24s from 11.0.0.0 and IPv6 /48s in 2001:db8::/32, each with a gap
/// after it; written as nft writes them.
pub fn disjoint_cidr(i: usize) -> String {
    assert!(i < 65_536, "disjoint_cidr: at most 65,536 networks");
    let k = (i / 2) as u32;
    if i.is_multiple_of(2) {
        format!("{}/24", v4((11u32 << 24) + k * 512))
    } else {
        format!("{}/48", std::net::Ipv6Addr::new(0x2001, 0xdb8, (k * 2) as u16, 0, 0, 0, 0, 0))
    }
}

/// CIDRs random ip_filters draw from: they overlap the lab's sources in every way
/// (nested, disjoint, everything, IPv6).
const FILTER_POOL: [&str; 12] = [
    "198.51.100.0/24",
    "198.51.100.0/25",
    "198.51.100.128/26",
    "192.0.2.0/24",
    "192.0.2.64/27",
    "10.0.0.0/8",
    "172.31.0.0/16",
    "203.0.113.0/24",
    "0.0.0.0/0",
    "2001:db8:1::/48",
    "2001:db8::/32",
    "::/0",
];

/// A small random but valid fleet for property tests: one project, one or two services
/// of random types, in a VPC (with a peering, maybe a private link and public access)
/// or not, on AWS or Azure, with random v4/v6 addresses and ip_filters (maybe empty);
/// one project in six is BYOC (a bastion, workloads in the workload subnet, customer
/// networks) and one in six ECE (VPC only, ip_filter within it, a SOCKS5 proxy).
pub fn random_fleet(seed: u64) -> String {
    let mut r = Rng::new(seed);
    let mut o = String::from(
        "version: 1\nplatform:\n  management_gateways: [198.51.100.10, 198.51.100.11, \"2001:db8:ffff::10\"]\n",
    );
    if r.below(3) == 0 {
        o.push_str("  ipsec: false\n");
    }
    o.push_str("projects:\n  prop:\n");
    if r.below(2) == 0 {
        let _ = writeln!(o, "    base_port: {}", 10000 + r.below(20001));
    }
    let kind = r.below(6);
    let (byoc, ece) = (kind == 0, kind == 1);
    let in_vpc = !byoc && (ece || r.below(2) == 0);
    let azure = r.below(4) == 0;
    let cloud = if azure { "azure-westeurope" } else { "aws-eu-west-1" };
    if byoc {
        let egress = if r.below(2) == 0 { "\n      egress: [192.0.2.0/24]" } else { "" };
        let _ = writeln!(
            o,
            "    byoc:\n      cloud: {cloud}\n      network_cidr: 10.50.0.0/16\n      bastion_subnet: 10.50.0.0/24\n      workload_subnet: 10.50.16.0/20\n      bastions: {{ prop-bastion: {{ private: 10.50.0.10, public: 203.0.113.90 }} }}\n      customer_networks: [10.60.0.0/16]{egress}"
        );
    }
    if ece {
        o.push_str(
            "    compliance: ece\n    socks5_proxy: { address: 10.20.0.5, port: 1080, allow: [198.51.100.128/25] }\n",
        );
    }
    if in_vpc {
        let _ = writeln!(
            o,
            "    vpcs:\n      v:\n        cloud: {cloud}\n        network_cidr: 10.20.0.0/20\n        privatelink_cidrs: [10.20.15.0/24]\n        peerings: [{{ peer_vpc: vpc-peer, peer_cidrs: [172.31.0.0/16] }}]"
        );
    }
    o.push_str("    services:\n");
    let services = 1 + r.below(2) as usize;
    let mut host = 10u32;
    for s in 0..services {
        let ty = TYPES[r.below(TYPES.len() as u64) as usize];
        let _ = writeln!(o, "      s{s}:\n        type: {ty}\n        cloud: {cloud}");
        if in_vpc {
            o.push_str("        vpc: v\n");
        }
        if byoc {
            o.push_str("        byoc: true\n");
        }
        let public_access = in_vpc && !ece && r.below(2) == 0 && !matches!(ty, "kafka_mirrormaker");
        o.push_str("        nodes:\n");
        for n in 0..1 + r.below(3) {
            host += 1;
            let v6 = r.below(2) == 0;
            let mut line = format!("          s{s}-n{n}: {{ ");
            if byoc {
                line += &if v6 {
                    format!("private: [10.50.16.{host}, \"fd50::{host:x}\"]")
                } else {
                    format!("private: 10.50.16.{host}")
                };
            } else if in_vpc {
                line += &if v6 {
                    format!("private: [10.20.0.{host}, \"fd00:20::{host:x}\"]")
                } else {
                    format!("private: 10.20.0.{host}")
                };
                if public_access || r.below(2) == 0 {
                    line += &format!(", public: 203.0.113.{host}");
                }
            } else if v6 {
                line += &format!("public: [203.0.113.{host}, \"2001:db8:5::{host:x}\"]");
            } else {
                line += &format!("public: 203.0.113.{host}");
            }
            let _ = writeln!(o, "{line} }}");
        }
        o.push_str("        user_config:\n          ip_filter: [");
        let mut picked: Vec<&str> = Vec::new();
        // ECE: ip_filter stays within the VPC and its peering; BYOC clients come from the customer network.
        let pool: &[&str] = match (ece, byoc) {
            (true, _) => &["10.20.0.0/20", "10.20.4.0/24", "172.31.0.0/16", "172.31.8.0/21"],
            (_, true) => &["10.60.0.0/16", "10.60.3.0/24", "10.0.0.0/8", "0.0.0.0/0", "198.51.100.0/24"],
            _ => &FILTER_POOL,
        };
        for _ in 0..r.below(5) {
            let c = pool[r.below(pool.len() as u64) as usize];
            if !picked.contains(&c) {
                picked.push(c);
            }
        }
        let quoted: Vec<String> = picked.iter().map(|c| format!("\"{c}\"")).collect();
        let _ = writeln!(o, "{}]", quoted.join(", "));
        let first_component = match ty {
            "pg" => "pg",
            "kafka" => "kafka",
            "mysql" => "mysql",
            "opensearch" => "opensearch",
            "valkey" => "valkey",
            "clickhouse" => "clickhouse",
            "grafana" => "grafana",
            "flink" => "flink",
            "kafka_connect" => "kafka_connect",
            _ => "",
        };
        if public_access {
            let _ = writeln!(o, "          public_access: {{ {first_component}: true }}");
        }
        if in_vpc && !ece && !azure && !first_component.is_empty() && r.below(2) == 0 {
            let _ = writeln!(o, "          privatelink_access: {{ {first_component}: true }}");
            o.push_str("        privatelink: { aws: { principals: [\"arn:aws:iam::012345678901:root\"] } }\n");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let spec = Spec::fleet(20, 7);
        let a = generate(&spec);
        assert_eq!(a, generate(&spec));
        assert_eq!(a.matches("{ public:").count() + a.matches("{ private:").count(), 20);
        assert_eq!(a.matches("            - ").count(), 4 * 7);
    }

    fn ord(a: std::net::IpAddr) -> u128 {
        match a {
            std::net::IpAddr::V4(x) => u128::from(u32::from(x)),
            std::net::IpAddr::V6(x) => u128::from(x),
        }
    }

    #[test]
    fn disjoint_entries_neither_overlap_nor_touch() {
        let nets: Vec<ipnet::IpNet> = (0..8000).map(|i| disjoint_cidr(i).parse().unwrap()).collect();
        assert_eq!(disjoint_cidr(1), "2001:db8::/48", "canonical, as nft prints it");
        // Within a family, each network ends more than one address before the next starts.
        let v4: Vec<u128> = nets.iter().step_by(2).flat_map(|n| [n.network(), n.broadcast()]).map(ord).collect();
        let v6: Vec<u128> =
            nets.iter().skip(1).step_by(2).flat_map(|n| [n.network(), n.broadcast()]).map(ord).collect();
        for bounds in [v4, v6] {
            assert!(bounds.windows(2).skip(1).step_by(2).all(|w| w[1] > w[0] + 1), "touching or overlapping");
        }
        let spec = Spec { vpcs: false, disjoint: true, ..Spec::fleet(5, 10) };
        let yaml = generate(&spec);
        assert!(!yaml.contains("vpc"), "no VPC");
        assert!(yaml.contains("\"11.0.2.0/24\""), "{yaml}");
    }
}

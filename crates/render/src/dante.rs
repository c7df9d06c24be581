//! The SOCKS5 proxy of an ECE project (S8) as the configuration of Dante (`danted`,
//! Debian's dante-server): it takes clients from the project's VPCs and their peerings
//! only, and relays `connect` requests to the `allow` destinations only; every other
//! client and destination is blocked and logged.

use fleetwall_model::{Project, ProxyAllow};
use ipnet::IpNet;

/// Dante's way of writing a destination: `net`, `net port = P`, `host port = P`.
fn destination(a: &ProxyAllow) -> String {
    let target = match (&a.network, &a.host) {
        (Some(n), _) => n.to_string(),
        (None, Some(h)) => h.clone(),
        (None, None) => unreachable!("validation makes every allow entry a network or a host"),
    };
    match a.port {
        Some(p) => format!("{target} port = {p}"),
        None => target,
    }
}

/// The networks that may use the proxy: the project's VPCs and their peerings.
fn clients(project: &Project) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for v in &project.vpcs {
        out.push(v.network_cidr);
        out.extend(v.peerings.iter().flat_map(|p| p.peer_cidrs.iter().copied()));
    }
    out
}

/// `danted.conf` for the proxy of `project`, or `None` for a project without one.
pub fn danted_conf(project: &Project) -> Option<String> {
    let proxy = project.ece.as_ref()?;
    let mut s = String::new();
    s += &format!("# fleetwall: the SOCKS5 proxy of ECE project {} (danted.conf, Dante 1.4)\n", project.name);
    s += "# Clients: the project's VPCs and their peerings. Destinations: socks5_proxy.allow only.\n";
    s += "logoutput: stderr\n";
    s += &format!("internal: {} port = {}\n", proxy.address, proxy.port);
    s += &format!("external: {}\n", proxy.address);
    s += "socksmethod: none\nclientmethod: none\n";
    s += "user.privileged: root\nuser.unprivileged: nobody\n\n";
    let clients = clients(project);
    // One keyword per line: Dante's parser reads `command: connect log: ...` on one line
    // as more commands.
    let rule = |s: &mut String, kind: &str, from: &str, to: &str, extra: &[&str]| {
        *s += &format!("{kind} {{\n    from: {from} to: {to}\n");
        for e in extra {
            *s += &format!("    {e}\n");
        }
        *s += "}\n";
    };
    for c in &clients {
        rule(&mut s, "client pass", &c.to_string(), "0.0.0.0/0", &["log: error"]);
    }
    for any in ["0.0.0.0/0", "::/0"] {
        rule(&mut s, "client block", any, "0.0.0.0/0", &["log: connect error"]);
    }
    for c in &clients {
        for a in &proxy.allow {
            rule(
                &mut s,
                "socks pass",
                &c.to_string(),
                &destination(a),
                &["command: connect", "log: connect disconnect error"],
            );
        }
    }
    for any in ["0.0.0.0/0", "::/0"] {
        rule(&mut s, "socks block", any, "0.0.0.0/0", &["log: connect error"]);
        rule(&mut s, "socks block", any, "::/0", &["log: connect error"]);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_model::{load, Catalog};

    #[test]
    fn only_the_vpc_uses_the_proxy_and_only_allow_is_relayed() {
        let src = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects:\n  gov:\n    compliance: ece\n    socks5_proxy: { address: 10.70.0.5, port: 1080, allow: [198.51.100.128/25, \"pkg.example.org:443\"] }\n    vpcs: { v: { cloud: aws-eu-west-1, network_cidr: 10.70.0.0/20 } }\n    services:\n      pg: { type: pg, cloud: aws-eu-west-1, vpc: v, nodes: { pg-1: { private: 10.70.0.11 } } }\n";
        let fleet = load(src, &Catalog::builtin()).0.expect("valid");
        let conf = danted_conf(&fleet.projects[0]).expect("an ECE project");
        assert!(conf.contains("internal: 10.70.0.5 port = 1080\n"), "{conf}");
        assert!(conf.contains("client pass {\n    from: 10.70.0.0/20 to: 0.0.0.0/0\n"), "{conf}");
        assert!(
            conf.contains("socks pass {\n    from: 10.70.0.0/20 to: 198.51.100.128/25\n    command: connect\n"),
            "{conf}"
        );
        assert!(conf.contains("to: pkg.example.org port = 443\n    command: connect\n"), "{conf}");
        // Blocks come after every pass: Dante takes the first matching rule.
        let last_pass = conf.rfind("socks pass").unwrap();
        assert!(conf.find("socks block").unwrap() > last_pass);
        assert_eq!(conf.matches("pass {").count(), 3);
    }
}

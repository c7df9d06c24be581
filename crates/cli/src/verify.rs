//! The verification commands: trace, test, diff, and the checks `check` adds after
//! validation (the management proof and the `tests:` assertions).

use crate::commands::{load, load_valid, Outcome};
use crate::{CheckFormat, FleetArgs};
use anyhow::{bail, Result};
use fleetwall_model::{Diagnostics, Fleet, Protocol};
use fleetwall_verify::{assertions, diff as fdiff, trace as ftrace, Direction, Packet, Transport};
use std::net::IpAddr;
use std::path::Path;

/// Runs the management proof and the assertions, adding their failures to `diags`.
/// Returns (nodes proven, assertions passed, assertions total).
pub fn check_fleet(fleet: &Fleet, diags: &mut Diagnostics) -> (usize, usize, usize) {
    let rulesets = fleetwall_compile::compile(fleet);
    fleetwall_verify::check::check_fleet(fleet, &rulesets, diags)
}

fn parse_port(s: &str) -> Result<(u16, Protocol)> {
    let (p, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("unknown protocol `{other}` in --port {s} (use tcp or udp)"),
    };
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok((n, proto)),
        _ => bail!("--port {s}: not a port (write e.g. 12691/tcp)"),
    }
}

/// The node and destination addresses `--to` names.
fn destinations(fleet: &Fleet, to: &str, from: IpAddr) -> Result<(String, Vec<IpAddr>)> {
    if let Some(found) = server_destinations(fleet, to, from) {
        return found;
    }
    if let Ok(addr) = to.parse::<IpAddr>() {
        let Some((_, _, n)) = fleet.nodes().find(|(_, _, n)| n.private.contains(&addr) || n.public.contains(&addr))
        else {
            bail!("no node has the address {addr}");
        };
        return Ok((n.name.clone(), vec![addr]));
    }
    let (name, route) = match to.rsplit_once('.').and_then(|(n, r)| Some((n, fleetwall_compile::Route::parse(r)?))) {
        Some((n, r)) => (n, Some(r)),
        None => (to, None),
    };
    let n = node_named(fleet, name)?;
    let s = fleet.nodes().find(|(_, _, x)| x.name == n.name).map(|(_, s, _)| s).expect("the node's service");
    let addrs = fleetwall_compile::route_addresses(n, s.private_home(), route);
    let addrs: Vec<IpAddr> = addrs.into_iter().filter(|a| a.is_ipv4() == from.is_ipv4()).collect();
    if addrs.is_empty() {
        bail!("{to} has no {} address to trace from {from}", if from.is_ipv4() { "IPv4" } else { "IPv6" });
    }
    Ok((n.name.clone(), addrs))
}

/// `--to` naming a deployment's server, or one of its addresses: the server and its
/// addresses of the source's family (a server has no routes).
fn server_destinations(fleet: &Fleet, to: &str, from: IpAddr) -> Option<Result<(String, Vec<IpAddr>)>> {
    let addr = to.parse::<IpAddr>().ok();
    let (_, _, s) = fleet.servers().find(|(_, _, s)| s.name == to || addr.is_some_and(|a| s.addresses.contains(&a)))?;
    let addrs: Vec<IpAddr> = match addr {
        Some(a) => vec![a],
        None => s.addresses.iter().filter(|a| a.is_ipv4() == from.is_ipv4()).copied().collect(),
    };
    if addrs.is_empty() {
        let fam = if from.is_ipv4() { "IPv4" } else { "IPv6" };
        return Some(Err(anyhow::anyhow!("{to} has no {fam} address to trace from {from}")));
    }
    Some(Ok((s.name.clone(), addrs)))
}

fn node_named<'f>(fleet: &'f Fleet, name: &str) -> Result<&'f fleetwall_model::Node> {
    match fleet.nodes().find(|(_, _, n)| n.name == name) {
        Some((_, _, n)) => Ok(n),
        None => {
            let names: Vec<&str> = fleet
                .nodes()
                .map(|(_, _, n)| n.name.as_str())
                .chain(fleet.servers().map(|(_, _, s)| s.name.as_str()))
                .collect();
            let hint = fleetwall_model::diag::did_you_mean(name, names.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            bail!("no node `{name}` in the fleet{hint}")
        }
    }
}

/// A destination address, port and protocol.
type Probe = (IpAddr, u16, Protocol);

/// The listeners of component `name` on the `--to` node (route, when NODE.ROUTE): each
/// address of the source's family with its port and protocol.
fn component_destinations(fleet: &Fleet, to: &str, from: IpAddr, name: &str) -> Result<(String, Vec<Probe>)> {
    let (node_name, route) = match to.rsplit_once('.').and_then(|(n, r)| Some((n, fleetwall_compile::Route::parse(r)?)))
    {
        Some((n, r)) => (n.to_string(), Some(r)),
        None if to.parse::<IpAddr>().is_ok() => (destinations(fleet, to, from)?.0, None),
        None => (to.to_string(), None),
    };
    let n = node_named(fleet, &node_name)?;
    let (p, s, _) = fleet.nodes().find(|(_, _, x)| x.name == n.name).expect("the node's service");
    let listeners = fleetwall_compile::node_listeners(fleet, p, s, n);
    let mine: Vec<_> = listeners.iter().filter(|l| l.component == name && route.is_none_or(|r| l.route == r)).collect();
    if mine.is_empty() {
        let mut names: Vec<&str> = listeners.iter().map(|l| l.component.as_str()).collect();
        names.dedup();
        let hint = fleetwall_model::diag::did_you_mean(name, names.iter().copied())
            .map(|x| format!("did you mean `{x}`?"))
            .unwrap_or_else(|| format!("its listeners: {}", names.join(", ")));
        let on = route.map(|r| format!(" on its {} route", r.as_str())).unwrap_or_default();
        bail!("--port {name}: {node_name} has no component `{name}`{on} ({hint})");
    }
    let only: Option<IpAddr> = to.parse().ok();
    let probes: Vec<Probe> = mine
        .iter()
        .flat_map(|l| l.addresses.iter().map(move |a| (*a, l.port, l.protocol)))
        .filter(|(a, _, _)| a.is_ipv4() == from.is_ipv4() && only.is_none_or(|o| o == *a))
        .collect();
    if probes.is_empty() {
        bail!("{to} has no {} address for component {name}", if from.is_ipv4() { "IPv4" } else { "IPv6" });
    }
    Ok((n.name.clone(), probes))
}

/// `trace`: inbound when `--from` is an address, outbound when it names a node.
pub fn trace(args: &FleetArgs, from: &str, to: &str, port: &str, format: CheckFormat) -> Result<Outcome> {
    let (_, fleet) = match load_valid(args)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    // `--port kafka`: the component's listeners on the destination (inbound only).
    let component = port.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !port.contains('/');
    let (direction, node, pairs, ports) = match from.parse::<IpAddr>() {
        Ok(src) if component => {
            let (node, probes) = component_destinations(&fleet, to, src, port)?;
            let pairs = probes.iter().map(|(d, _, _)| (src, *d)).collect();
            (Direction::Ingress, node, pairs, probes.into_iter().map(|(_, p, proto)| (p, proto)).collect())
        }
        Ok(src) => {
            let (node, dsts) = destinations(&fleet, to, src)?;
            let p = parse_port(port)?;
            (Direction::Ingress, node, dsts.iter().map(|d| (src, *d)).collect::<Vec<_>>(), vec![p; dsts.len()])
        }
        Err(_) if component => {
            bail!("--port {port}: a component name works inbound only; outbound give a port (443/tcp)")
        }
        Err(_) => {
            let p = parse_port(port)?;
            let Ok(dst) = to.parse::<IpAddr>() else {
                bail!(
                    "--to {to}: tracing outbound from node {from} needs a destination address (e.g. --to 192.0.2.10)"
                );
            };
            let (name, own): (String, Vec<IpAddr>) = match fleet.servers().find(|(_, _, s)| s.name == from) {
                Some((_, _, s)) => (s.name.clone(), s.addresses.clone()),
                None => {
                    let n = node_named(&fleet, from)?;
                    (n.name.clone(), n.private.iter().chain(&n.public).copied().collect())
                }
            };
            let srcs: Vec<IpAddr> = own.into_iter().filter(|a| a.is_ipv4() == dst.is_ipv4()).collect();
            if srcs.is_empty() {
                bail!("{from} has no {} address to reach {dst} from", if dst.is_ipv4() { "IPv4" } else { "IPv6" });
            }
            let n_pairs = srcs.len();
            (Direction::Egress, name, srcs.into_iter().map(|s| (s, dst)).collect(), vec![p; n_pairs])
        }
    };
    let rs = fleetwall_compile::compile_node(&fleet, &node).expect("node exists");
    let traces: Vec<(IpAddr, IpAddr, u16, Protocol, ftrace::Trace)> = pairs
        .iter()
        .zip(&ports)
        .map(|((s, d), (port, proto))| {
            let transport = match proto {
                Protocol::Tcp => Transport::Tcp(*port),
                Protocol::Udp => Transport::Udp(*port),
            };
            (*s, *d, *port, *proto, ftrace::trace_in(&rs, direction, &Packet::new(*s, *d, transport)))
        })
        .collect();
    match format {
        CheckFormat::Json => {
            let doc: Vec<_> = traces
                .iter()
                .map(|(s, d, port, proto, t)| {
                    serde_json::json!({"from": s, "to": d, "port": port, "protocol": proto, "trace": t})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        CheckFormat::Text => {
            for (s, d, port, proto, t) in &traces {
                match direction {
                    Direction::Ingress => println!("{s} -> {node} ({d}) {port}/{}: {}", proto.as_str(), t.verdict),
                    Direction::Egress => {
                        println!("{node} ({s}) -> {d} {port}/{} outbound: {}", proto.as_str(), t.verdict)
                    }
                }
                println!("  rule:     {} — {}", t.rule, t.reason);
                for b in &t.because {
                    println!("  because:  {b}");
                }
                for m in &t.near_misses {
                    println!("  not by:   {m}");
                }
            }
        }
    }
    Ok(if traces.iter().all(|(.., t)| t.verdict == "accept") { Outcome::Ok } else { Outcome::Invalid })
}

pub fn test(args: &FleetArgs, format: CheckFormat, verbose: bool) -> Result<Outcome> {
    let (_, fleet) = match load_valid(args)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let rulesets = fleetwall_compile::compile(&fleet);
    let outcomes = assertions::run(&fleet, &rulesets);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        CheckFormat::Text => {
            for o in &outcomes {
                let tag = if o.passed { "PASS" } else { "FAIL" };
                println!("{tag}  test {}: {} -> {}: {} {}", o.test + 1, o.from, o.to, o.expect, o.what);
                if !o.passed || verbose {
                    if o.traces.is_empty() {
                        println!("        no address of the source's family to try");
                    }
                    for t in &o.traces {
                        println!(
                            "        {}:{}/{} {} by {} ({})",
                            t.dst,
                            t.port,
                            t.protocol.as_str(),
                            t.trace.verdict,
                            t.trace.rule,
                            t.trace.reason
                        );
                        for b in &t.trace.because {
                            println!("          because {b}");
                        }
                    }
                }
            }
            println!("{} passed, {} failed", outcomes.len() - failed, failed);
        }
    }
    Ok(if failed == 0 { Outcome::Ok } else { Outcome::Invalid })
}

pub fn diff(old: &Path, new: &Path, catalog: Option<&Path>, format: CheckFormat, exit_code: bool) -> Result<Outcome> {
    let mut fleets = Vec::new();
    for path in [old, new] {
        let args = FleetArgs::file(path.to_path_buf(), catalog.map(Path::to_path_buf));
        let l = load(&args)?;
        match l.fleet {
            Some(f) => fleets.push(f),
            None => {
                eprint!("{}", fleetwall_model::diag::render_human(&l.diags.items, &l.name, &l.src));
                eprintln!("{}: {}; a diff needs two valid fleets", l.name, crate::commands::errors(l.diags.errors()));
                return Ok(Outcome::Invalid);
            }
        }
    }
    let (ro, rn) = (fleetwall_compile::compile(&fleets[0]), fleetwall_compile::compile(&fleets[1]));
    let d = fdiff::diff(&fleets[0], &ro, &fleets[1], &rn);
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        CheckFormat::Text => {
            // The warnings lead the rendering (once); `--format json` has them as a list.
            print!("{}", fdiff::render(&d));
        }
    }
    let opened = d.nodes.iter().any(|n| !n.opened.is_empty());
    Ok(if exit_code && opened { Outcome::Invalid } else { Outcome::Ok })
}

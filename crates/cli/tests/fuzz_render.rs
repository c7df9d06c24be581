//! A bounded fuzz of the agent's trust boundary, the ruleset it receives: random rulesets
//! (random set names, families, networks, ports, ICMP types, verdicts, and free text full
//! of quotes, braces, line breaks, control and Unicode separator characters) and random
//! mutations of real ones' JSON go through what the agent does — decode, `validate`,
//! render — and every ruleset that validation lets through must pass `nft -c` in a
//! network namespace this test creates and removes. Nothing may panic.
//!
//! By default it runs for 20 seconds or 300 `nft -c` checks, whichever ends first;
//! `FLEETWALL_FUZZ_SECS=600` runs longer, `FLEETWALL_FUZZ_SEED=<n>` replays a run (the
//! seed is printed). A ruleset that fails `nft -c` is written to
//! `$TMPDIR/fleetwall-fuzz-render-<seed>.nft`.

mod common;

use common::{kernel_available, root};
use fleetwall_ir::{
    AddrSet, Addrs, CtState, Family, IcmpType, IpMatch, Match, Member, NodeRuleset, Proto, Reject, Rule, SetName,
    Verdict, L3, L4,
};
use fleetwall_synth::Rng;
use ipnet::IpNet;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NASTY: &[&str] = &[
    "\"",
    "\n",
    "\r\n",
    "}",
    "{",
    ";",
    "#",
    "\\",
    "\u{2028}",
    "\0",
    "\t",
    "include \"/etc/passwd\"",
    "flush ruleset",
    "é",
    "'",
    "@x",
];

fn text(r: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..r.below(8) {
        if r.below(2) == 0 {
            s.push_str(NASTY[r.below(NASTY.len() as u64) as usize]);
        } else {
            s.push_str(["office", "ip_filter of p/s", "mgmt", "x"][r.below(4) as usize]);
        }
    }
    s
}

fn net(r: &mut Rng, fam: Family) -> IpNet {
    match fam {
        Family::V4 => {
            let len = r.below(33) as u8;
            IpNet::new(IpAddr::V4(Ipv4Addr::from(r.next_u64() as u32)), len).unwrap().trunc()
        }
        Family::V6 => {
            let len = r.below(129) as u8;
            let a = (u128::from(r.next_u64()) << 64) | u128::from(r.next_u64());
            IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap().trunc()
        }
    }
}

fn family(r: &mut Rng) -> Family {
    if r.below(2) == 0 {
        Family::V4
    } else {
        Family::V6
    }
}

fn ruleset(r: &mut Rng) -> NodeRuleset {
    let mut sets = Vec::new();
    for i in 0..r.below(5) {
        let fam = family(r);
        let members = (0..r.below(20)).map(|_| Member { net: net(r, fam), reason: text(r) }).collect();
        let name = SetName::new(format!("s{i}_{}", r.below(1000))).unwrap();
        sets.push(Arc::new(AddrSet::new(name, fam, text(r), members)));
    }
    let icmp =
        [IcmpType::EchoRequest, IcmpType::DestinationUnreachable, IcmpType::PacketTooBig, IcmpType::NdNeighborSolicit];
    let rule = |r: &mut Rng, n: usize| {
        let fam = family(r);
        let mut m = Match::default();
        let mut ip = IpMatch::new(fam);
        match r.below(4) {
            0 => m.loopback = true,
            1 => m.ct = Some(if r.below(2) == 0 { CtState::EstablishedRelated } else { CtState::Invalid }),
            _ => {}
        }
        let pick = sets.iter().filter(|s| s.family == fam).nth(r.below(3) as usize).map(|s| s.name.clone());
        if let (Some(name), true) = (pick, r.below(2) == 0) {
            ip.saddr = Some(Addrs::Set(name));
        } else if r.below(2) == 0 {
            ip.saddr = Some(Addrs::List((0..1 + r.below(3)).map(|_| net(r, fam)).collect()));
        }
        if r.below(3) == 0 {
            ip.daddr = Some(Addrs::List(vec![net(r, fam)]));
        }
        let ports = |r: &mut Rng| (0..r.below(4)).map(|_| 1 + r.below(65535) as u16).collect::<Vec<_>>();
        ip.l4 = match r.below(5) {
            0 => Some(L4::Tcp(ports(r))),
            1 => Some(L4::Udp(ports(r))),
            2 => Some(L4::Esp),
            3 => Some(L4::Icmp(icmp[..1 + r.below(icmp.len() as u64) as usize].to_vec())),
            _ => None,
        };
        let tcp = matches!(ip.l4, Some(L4::Tcp(_)));
        // A quarter of the rules name no family (when nothing in them needs one).
        let family_free = ip.saddr.is_none() && ip.daddr.is_none() && !matches!(ip.l4, Some(L4::Icmp(_)));
        m.l3 = if family_free && r.below(2) == 0 {
            L3::Any(match ip.l4 {
                Some(L4::Tcp(p)) => Some(Proto::Tcp(p)),
                Some(L4::Udp(p)) => Some(Proto::Udp(p)),
                Some(L4::Esp) => Some(Proto::Esp),
                _ => None,
            })
        } else {
            L3::Ip(ip)
        };
        let verdict = match r.below(4) {
            0 => Verdict::Accept,
            1 => Verdict::Drop,
            2 if tcp => Verdict::Reject(Reject::TcpReset),
            _ => Verdict::Reject(if r.below(2) == 0 { Reject::PortUnreachable } else { Reject::AdminProhibited }),
        };
        let id = if r.below(10) == 0 { text(r) } else { format!("rule-{n}") };
        Rule { id, reason: text(r), matches: m, verdict }
    };
    let input = (0..r.below(12)).map(|n| rule(r, n as usize)).collect();
    let output = (0..r.below(4)).map(|n| rule(r, 100 + n as usize)).collect();
    let node = if r.below(6) == 0 { text(r) } else { format!("node-{}", r.below(100)) };
    let description = if r.below(2) == 0 { text(r) } else { "p/s (pg)".into() };
    NodeRuleset { node, description, addresses: Vec::new(), sets, input, output }
}

/// One random change to a JSON value (a real ruleset's, as a hostile server would send).
fn mutate(r: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(r.below(m.len() as u64) as usize).unwrap().clone();
            if r.below(4) == 0 {
                m.insert(k, Value::String(text(r)));
            } else {
                mutate(r, m.get_mut(&k).unwrap());
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = r.below(a.len() as u64) as usize;
            match r.below(4) {
                0 => {
                    a.remove(i);
                }
                1 => a.push(a[i].clone()),
                _ => mutate(r, &mut a[i]),
            }
        }
        Value::String(_) => *v = Value::String(text(r)),
        Value::Number(_) => {
            let choices = [
                serde_json::json!(-1),
                serde_json::json!(0),
                serde_json::json!(65536),
                serde_json::json!(u64::MAX),
                serde_json::json!(1.5),
            ];
            *v = choices[r.below(5) as usize].clone();
        }
        _ => *v = Value::String(text(r)),
    }
}

#[test]
fn random_and_mutated_rulesets_never_panic_and_what_validates_passes_nft_check() {
    if !kernel_available() {
        return;
    }
    let secs: u64 = std::env::var("FLEETWALL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let limit = if std::env::var_os("FLEETWALL_FUZZ_SECS").is_some() { usize::MAX } else { 300 };
    let seed: u64 = std::env::var("FLEETWALL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("fuzz_render: seed {seed} (FLEETWALL_FUZZ_SEED={seed} replays it), {secs} s");
    let guard = common::Namespaces::new();
    let ns = guard.create("fuzz");

    let text = std::fs::read_to_string(root().join("examples/kafka-vpc.yaml")).unwrap();
    let fleet = fleetwall_model::load(&text, &fleetwall_model::Catalog::builtin()).0.expect("the example loads");
    let real: Vec<Value> =
        fleetwall_compile::compile(&fleet).iter().map(|rs| serde_json::to_value(rs).unwrap()).collect();

    let mut r = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut cases, mut checked, mut refused) = (0usize, 0usize, 0usize);
    while Instant::now() < deadline && checked < limit {
        cases += 1;
        let candidate: Option<NodeRuleset> = if r.below(2) == 0 {
            Some(ruleset(&mut r))
        } else {
            let mut v = real[r.below(real.len() as u64) as usize].clone();
            for _ in 0..1 + r.below(3) {
                mutate(&mut r, &mut v);
            }
            serde_json::from_value(v).ok()
        };
        let Some(rs) = candidate else {
            refused += 1;
            continue;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| rs.validate().map(|()| fleetwall_render::nft::render(&rs))));
        let rendered = match outcome {
            Err(_) => panic!("seed {seed} case {cases}: validate or render panicked on {rs:?}"),
            Ok(Err(_)) => {
                refused += 1;
                continue;
            }
            Ok(Ok(t)) => t,
        };
        checked += 1;
        if let Err(e) = fleetwall_apply::run(Some(&ns), "nft", &["-c", "-f", "-"], Some(&rendered)) {
            let file = std::env::temp_dir().join(format!("fleetwall-fuzz-render-{seed}.nft"));
            std::fs::write(&file, &rendered).unwrap();
            panic!("seed {seed} case {cases}: a validated ruleset fails `nft -c` ({e}); written to {}", file.display());
        }
        // Only our table, nothing else, may ever be named by what we render.
        for line in rendered.lines().map(str::trim_start) {
            if let Some(rest) = line.strip_prefix("table ").or_else(|| line.strip_prefix("delete table ")) {
                assert!(rest.starts_with("inet fleetwall"), "seed {seed} case {cases}: {line}");
            }
        }
    }
    eprintln!("fuzz_render: {cases} cases, {checked} passed validation and `nft -c`, {refused} refused");
    assert!(checked > 0 && refused > 0, "the fuzz should see both outcomes");
}

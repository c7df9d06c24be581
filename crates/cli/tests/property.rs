//! The evaluator agrees with the kernel: random fleets are built in the lab and every
//! probe's real outcome (connected, reset, port unreachable) is compared with what the
//! evaluator says the compiled ruleset does with that packet.
//!
//! Egress too: after the inbound probes, random output rules (accept or reject, by
//! family, destination, protocol and port; some with no family) are put in front of each
//! node's accept-all egress, applied, and outbound connections from the node namespaces
//! to the lab's other hosts are compared with the evaluator's answer for the output chain.
//!
//! At least 1,000 probes per run (default); FLEETWALL_PROPERTY_PROBES=N asks for more.
//! The seed of every fleet is printed, so a disagreement can be replayed.

mod common;
use common::*;
use fleetwall_eval::{evaluate, evaluate_egress, Packet, Transport};
use fleetwall_ir::{Addrs, Family, IpMatch, Match, NodeRuleset, Proto, Reject, Rule, Verdict, L3, L4};
use fleetwall_lab::probe::Observed;
use fleetwall_lab::{netns, Backend, Lab};
use fleetwall_model::{load, Catalog, Protocol};
use fleetwall_synth::{random_fleet, Rng};
use std::net::IpAddr;

/// Random sources from the ranges random ip_filters draw from.
fn random_sources(rng: &mut Rng) -> Vec<IpAddr> {
    (0..4)
        .map(|i| -> IpAddr {
            let h = 1 + rng.below(250) as u8;
            match (i + rng.below(6)) % 6 {
                0 => [198, 51, 100, h].into(),
                1 => [192, 0, 2, h].into(),
                2 => [10, 1 + rng.below(200) as u8, 0, h].into(),
                3 => [172, 31, rng.below(255) as u8, h].into(),
                4 => format!("2001:db8:1::{h:x}").parse().unwrap(),
                _ => format!("2001:db8:9::{h:x}").parse().unwrap(),
            }
        })
        .collect()
}

const EGRESS_TCP: [u16; 2] = [443, 8080];
const EGRESS_UDP: [u16; 1] = [5353];

/// Random output rules in front of the node's egress: some by destination (a remote's
/// /32 or its /24), some by family only, some of either family; TCP or UDP on the probed
/// ports (never "any port": replies of inbound connections use the output chain too).
fn random_egress(rng: &mut Rng, rs: &mut NodeRuleset, remotes: &[IpAddr]) {
    let mut rules = Vec::new();
    for k in 0..1 + rng.below(4) {
        let fam = if rng.below(2) == 0 { Family::V4 } else { Family::V6 };
        let tcp = rng.below(3) != 0;
        let ports: Vec<u16> = if tcp { EGRESS_TCP[..1 + rng.below(2) as usize].to_vec() } else { EGRESS_UDP.to_vec() };
        let l4 = if tcp { L4::Tcp(ports.clone()) } else { L4::Udp(ports.clone()) };
        let verdict = match rng.below(4) {
            0 => Verdict::Accept,
            1 => Verdict::Reject(Reject::AdminProhibited),
            _ if tcp => Verdict::Reject(Reject::TcpReset),
            _ => Verdict::Reject(Reject::PortUnreachable),
        };
        let of_fam: Vec<&IpAddr> = remotes.iter().filter(|a| a.is_ipv4() == (fam == Family::V4)).collect();
        let matches = match (rng.below(4), of_fam.is_empty()) {
            (0, _) => Match::proto(if tcp { Proto::Tcp(ports) } else { Proto::Udp(ports) }),
            (1, _) | (_, true) => IpMatch::new(fam).l4(l4).into(),
            _ => {
                let a = *of_fam[rng.below(of_fam.len() as u64) as usize];
                let len = match (a.is_ipv4(), rng.below(2)) {
                    (true, 0) => 24,
                    (true, _) => 32,
                    (false, 0) => 64,
                    (false, _) => 128,
                };
                let net = ipnet::IpNet::new(a, len).unwrap().trunc();
                IpMatch::new(fam).to(Addrs::List(vec![net])).l4(l4).into()
            }
        };
        rules.push(Rule { id: format!("egress-test-{k}"), reason: "random egress rule".into(), matches, verdict });
    }
    let keep = rs.output.split_off(0);
    rs.output = rules.into_iter().chain(keep).collect();
    assert!(matches!(rs.output.last().unwrap().matches.l3, L3::Any(None)), "egress-accept stays last");
    rs.validate().expect("random egress rules are valid");
}

fn agrees(verdict: Verdict, observed: &Observed) -> bool {
    matches!(
        (verdict, observed),
        (Verdict::Accept, Observed::Connected)
            | (Verdict::Reject(Reject::TcpReset), Observed::Reset)
            | (Verdict::Reject(Reject::PortUnreachable), Observed::PortUnreachable)
            | (Verdict::Reject(Reject::AdminProhibited), Observed::Unreachable)
    )
}

/// Outbound, a refusal in the output chain stops a locally generated packet before it
/// leaves. A TCP reset reaches the connecting socket as a reset; every other refusal
/// (ICMP port unreachable, admin prohibited, a drop) fails the connect or send at once
/// with EPERM, for nft and iptables alike (measured: seen as `Unreachable`).
fn egress_agrees(verdict: Verdict, observed: &Observed) -> bool {
    matches!(
        (verdict, observed),
        (Verdict::Accept, Observed::Connected)
            | (Verdict::Reject(Reject::TcpReset), Observed::Reset)
            | (
                Verdict::Reject(Reject::PortUnreachable | Reject::AdminProhibited) | Verdict::Drop,
                Observed::Unreachable
            )
    )
}

#[test]
fn random_fleets_and_packets_agree_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let wanted: usize = std::env::var("FLEETWALL_PROPERTY_PROBES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let base_seed: u64 = std::env::var("FLEETWALL_PROPERTY_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let (mut probes, mut fleets, mut accepted, mut retried) = (0usize, 0usize, 0usize, 0usize);
    let (mut egress, mut egress_refused) = (0usize, 0usize);
    let mut seed = base_seed;
    // Every deployment kind is sampled: a standard, a BYOC and an ECE fleet at least.
    let (mut byoc, mut ece) = (0usize, 0usize);
    while probes < wanted || fleets < 3 || byoc == 0 || ece == 0 {
        assert!(fleets < 10_000, "too few probes per fleet");
        let src = random_fleet(seed);
        let (fleet, diags) = load(&src, &Catalog::builtin());
        let fleet = fleet.unwrap_or_else(|| panic!("seed {seed}: generated fleet invalid: {:#?}\n{src}", diags.items));
        byoc += usize::from(fleet.projects.iter().any(|p| p.byoc.is_some()));
        ece += usize::from(fleet.projects.iter().any(|p| p.ece.is_some()));
        let backend = if seed.is_multiple_of(2) { Backend::Nft } else { Backend::Iptables };
        let rulesets = fleetwall_compile::compile(&fleet);
        let mut rng = Rng::new(seed ^ 0xabcdef);
        let lab = Lab::up_with(&fleet, backend, &netns::run_prefix(), &random_sources(&mut rng)).expect("lab up");
        for row in lab.probe(&|_, _| {}) {
            let rs = rulesets.iter().find(|r| r.node == row.node).unwrap();
            let transport = match row.protocol {
                Protocol::Tcp => Transport::Tcp(row.port),
                Protocol::Udp => Transport::Udp(row.port),
            };
            let packet = Packet::new(row.src, row.dst, transport);
            // A probe from a node leaves through its output chain first (BYOC and ECE
            // nodes restrict it); a refusal there is seen by the sending socket itself.
            let refused_out = rulesets
                .iter()
                .find(|r| r.addresses.contains(&row.src))
                .map(|s| evaluate_egress(s, &packet).verdict)
                .filter(|v| *v != Verdict::Accept);
            let verdict = refused_out.unwrap_or_else(|| evaluate(rs, &packet).verdict);
            let agreed = match refused_out {
                Some(v) => egress_agrees(v, &row.observed),
                None => agrees(verdict, &row.observed),
            };
            assert!(
                agreed,
                "seed {seed} ({backend:?}): evaluator says {verdict:?} but the kernel did {:?}: {row:#?}\nfleet:\n{src}",
                row.observed
            );
            accepted += usize::from(verdict == Verdict::Accept);
            retried += usize::from(row.attempts > 1);
            probes += 1;
        }
        // Egress: random output rules on every node, then outbound probes.
        let remotes: Vec<IpAddr> = lab
            .topo
            .hosts
            .iter()
            .filter(|h| !matches!(h.role, fleetwall_lab::topo::Role::Node(_)))
            .flat_map(|h| h.addrs.clone())
            .collect();
        let mut changed = Vec::new();
        for rs in &rulesets {
            let mut rs = rs.clone();
            random_egress(&mut rng, &mut rs, &remotes);
            lab.apply(&rs).unwrap_or_else(|e| panic!("seed {seed}: apply with egress rules: {e:?}"));
            changed.push(rs);
        }
        let rows = fleetwall_lab::egress::probe_egress(&lab, &EGRESS_TCP, &EGRESS_UDP, 60).expect("egress probes");
        assert!(!rows.is_empty(), "seed {seed}: no egress probe ran");
        for row in rows {
            let rs = changed.iter().find(|r| r.node == row.node).unwrap();
            let transport = match row.protocol {
                Protocol::Tcp => Transport::Tcp(row.port),
                Protocol::Udp => Transport::Udp(row.port),
            };
            let d = evaluate_egress(rs, &Packet::new(row.src, row.dst, transport));
            assert!(
                egress_agrees(d.verdict, &row.observed),
                "seed {seed} ({backend:?}): egress: evaluator says {:?} (rule {:?}) but the kernel did {:?}: {row:#?}\noutput chain: {:#?}",
                d.verdict,
                d.rule.map(|(_, r)| &r.id),
                row.observed,
                rs.output
            );
            egress += 1;
            egress_refused += usize::from(d.verdict != Verdict::Accept);
        }
        drop(lab);
        fleets += 1;
        seed += 1;
    }
    assert!(accepted >= 50, "the sample must exercise accepts too ({accepted}/{probes})");
    assert!(
        egress_refused > 0 && egress_refused < egress,
        "egress probes must see both verdicts ({egress_refused}/{egress})"
    );
    eprintln!(
        "property: {probes} inbound probes over {fleets} random fleets ({byoc} BYOC, {ece} ECE; seeds {base_seed}..{seed}), {accepted} accepted, {retried} sent twice; {egress} outbound probes, {egress_refused} refused; 0 disagreements"
    );
}

#[test]
fn random_fleets_are_valid() {
    for seed in 0..300 {
        let src = random_fleet(seed);
        let (fleet, diags) = load(&src, &Catalog::builtin());
        assert!(fleet.is_some(), "seed {seed}: {:#?}\n{src}", diags.items);
    }
    let _ = root();
}

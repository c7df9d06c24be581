//! The evaluator agrees with the kernel: random fleets are built in the lab and every
//! probe's real outcome (connected, reset, port unreachable) is compared with what the
//! evaluator says the compiled ruleset does with that packet.
//!
//! At least 1,000 probes per run (default); FLEETWALL_PROPERTY_PROBES=N asks for more.
//! The seed of every fleet is printed, so a disagreement can be replayed.

mod common;
use common::*;
use fleetwall_ir::{Reject, Verdict};
use fleetwall_lab::probe::Observed;
use fleetwall_lab::{netns, Backend, Lab};
use fleetwall_model::{load, Catalog, Protocol};
use fleetwall_synth::{random_fleet, Rng};
use fleetwall_verify::{evaluate, Packet, Transport};
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

#[test]
fn random_fleets_and_packets_agree_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let wanted: usize = std::env::var("FLEETWALL_PROPERTY_PROBES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let base_seed: u64 = std::env::var("FLEETWALL_PROPERTY_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let (mut probes, mut fleets, mut accepted, mut retried) = (0usize, 0usize, 0usize, 0usize);
    let mut seed = base_seed;
    while probes < wanted || fleets < 3 {
        assert!(fleets < 10_000, "too few probes per fleet");
        let src = random_fleet(seed);
        let (fleet, diags) = load(&src, &Catalog::builtin());
        let fleet = fleet.unwrap_or_else(|| panic!("seed {seed}: generated fleet invalid: {:#?}\n{src}", diags.items));
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
            let verdict = evaluate(rs, &Packet::new(row.src, row.dst, transport)).verdict;
            let agrees = matches!(
                (verdict, &row.observed),
                (Verdict::Accept, Observed::Connected)
                    | (Verdict::Reject(Reject::TcpReset), Observed::Reset)
                    | (Verdict::Reject(Reject::PortUnreachable), Observed::PortUnreachable)
            );
            assert!(
                agrees,
                "seed {seed} ({backend:?}): evaluator says {verdict:?} but the kernel did {:?}: {row:#?}\nfleet:\n{src}",
                row.observed
            );
            accepted += usize::from(verdict == Verdict::Accept);
            retried += usize::from(row.attempts > 1);
            probes += 1;
        }
        drop(lab);
        fleets += 1;
        seed += 1;
    }
    assert!(accepted >= 50, "the sample must exercise accepts too ({accepted}/{probes})");
    eprintln!(
        "property: {probes} probes over {fleets} random fleets (seeds {base_seed}..{seed}), {accepted} accepted, {retried} sent twice, 0 disagreements"
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

//! What a target can express, and the one check that refuses what it cannot.
//!
//! Every backend declares its [`Capabilities`]. Before anything is rendered for a
//! target, [`check`] (node backends, over the IR) or [`check_intent`] (group backends,
//! over the Intent) lists every feature a fleet uses that the target lacks, naming the
//! feature, the node or flow, and the model object behind it (the rule's reason). A
//! renderer therefore never has to drop or approximate a rule silently.

use fleetwall_intent::{Intent, Stage, Traffic};
use fleetwall_ir::{Addrs, CtState, Direction, L4Ref, NodeRuleset, Reject, Verdict};
use serde::Serialize;

/// What a target can express.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The ways it can refuse a packet (empty: it can only allow; everything not allowed
    /// is dropped by the target's own default).
    pub rejects: &'static [Reject],
    /// It can drop explicitly (not only by default).
    pub drop: bool,
    /// It matches conntrack state (established/related, invalid).
    pub conntrack: bool,
    /// It matches ICMP types.
    pub icmp_types: bool,
    /// It matches the loopback interface.
    pub loopback: bool,
    /// It filters outbound traffic.
    pub egress: bool,
    /// It holds named address sets.
    pub address_sets: bool,
    /// It matches destination addresses (not only "this node").
    pub destination_match: bool,
    /// Rules are evaluated in order (first match wins); otherwise only allows combine.
    pub ordered: bool,
    /// The most rules one chain (or group) may hold.
    pub max_rules: Option<usize>,
    /// The most entries one address set (or rule's address list) may hold.
    pub max_set_entries: Option<usize>,
}

impl Capabilities {
    /// Everything: what nftables expresses.
    pub const ALL: Capabilities = Capabilities {
        rejects: &[Reject::TcpReset, Reject::PortUnreachable, Reject::AdminProhibited],
        drop: true,
        conntrack: true,
        icmp_types: true,
        loopback: true,
        egress: true,
        address_sets: true,
        destination_match: true,
        ordered: true,
        max_rules: None,
        max_set_entries: None,
    };
}

/// One thing a target cannot express.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsupported {
    /// The target.
    pub backend: &'static str,
    /// The feature (`egress`, `reject with tcp-reset`, `set entries`, ...).
    pub feature: String,
    /// Where: the node and rule (`pg-main-1 rule client-pg-dynamic-v4`) or the flow.
    pub at: String,
    /// The model object behind it (the rule's or set's reason).
    pub because: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot express {} ({}: {})", self.backend, self.feature, self.at, self.because)
    }
}

fn reject_name(r: Reject) -> &'static str {
    match r {
        Reject::TcpReset => "reject with tcp-reset",
        Reject::PortUnreachable => "reject with port-unreachable",
        Reject::AdminProhibited => "reject with admin-prohibited",
    }
}

/// Every feature of `rs` that a target with `caps` cannot express.
pub fn check(backend: &'static str, caps: &Capabilities, rs: &NodeRuleset) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let mut miss = |feature: String, at: String, because: &str| {
        out.push(Unsupported { backend, feature, at, because: because.to_string() });
    };
    if let Some(max) = caps.max_set_entries {
        for s in rs.sets.iter().filter(|s| s.elements.len() > max) {
            miss(
                format!("a set of {} entries (at most {max})", s.elements.len()),
                format!("{} set {}", rs.node, s.name),
                &s.reason,
            );
        }
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        let chain = dir.chain(rs);
        let at = |id: &str| format!("{} {} rule {id}", rs.node, dir.as_str());
        if let Some(max) = caps.max_rules {
            if chain.len() > max {
                miss(format!("{} rules in one chain (at most {max})", chain.len()), at("*"), "the whole chain");
            }
        }
        let last = chain.len().saturating_sub(1);
        for (i, r) in chain.iter().enumerate() {
            let m = &r.matches;
            if dir == Direction::Egress && !caps.egress && !(r.verdict == Verdict::Accept && m == &Default::default()) {
                miss("egress filtering".into(), at(&r.id), &r.reason);
            }
            match r.verdict {
                Verdict::Reject(x) if !caps.rejects.contains(&x) => miss(reject_name(x).into(), at(&r.id), &r.reason),
                Verdict::Drop if !caps.drop => miss("an explicit drop".into(), at(&r.id), &r.reason),
                _ => {}
            }
            if !caps.ordered && r.verdict != Verdict::Accept && i != last {
                miss("a refusal before later rules (it only combines allows)".into(), at(&r.id), &r.reason);
            }
            if m.ct.is_some() && !caps.conntrack {
                let what = if m.ct == Some(CtState::Invalid) { "conntrack state invalid" } else { "conntrack state" };
                miss(what.into(), at(&r.id), &r.reason);
            }
            if m.loopback && !caps.loopback {
                miss("a loopback match".into(), at(&r.id), &r.reason);
            }
            if matches!(m.l4(), Some(L4Ref::Icmp(_))) && !caps.icmp_types {
                miss("ICMP types".into(), at(&r.id), &r.reason);
            }
            let (local, remote) = match dir {
                Direction::Ingress => (m.daddr(), m.saddr()),
                Direction::Egress => (m.saddr(), m.daddr()),
            };
            if local.is_some() && !caps.destination_match {
                miss("a match on the node's own addresses".into(), at(&r.id), &r.reason);
            }
            for a in [local, remote].into_iter().flatten() {
                match a {
                    Addrs::Set(name) if !caps.address_sets => {
                        miss(format!("an address set (@{name})"), at(&r.id), &r.reason)
                    }
                    Addrs::List(l) if caps.max_set_entries.is_some_and(|max| l.len() > max) => {
                        miss(format!("an address list of {} entries", l.len()), at(&r.id), &r.reason)
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Every flow of `intent` that a group target with `caps` cannot express. Flows of the
/// base stage a group target enforces by its own nature (established, loopback) are the
/// caller's to leave out before calling.
pub fn check_intent(backend: &'static str, caps: &Capabilities, intent: &Intent) -> Vec<Unsupported> {
    let mut out = Vec::new();
    for s in &intent.services {
        for f in &s.flows {
            let at = format!("{} flow {}", s.qualified, f.id);
            let mut miss = |feature: String| {
                out.push(Unsupported { backend, feature, at: at.clone(), because: f.reason.clone() });
            };
            if f.direction == Direction::Egress && !caps.egress {
                miss("egress filtering".into());
            }
            // An unordered target (a security group) denies by default and tracks
            // connections itself: the final rejects and the invalid drop are its nature.
            let by_nature = !caps.ordered && (f.stage == Stage::Reject || f.ct.is_some());
            match f.verdict {
                Verdict::Reject(x) if !caps.rejects.contains(&x) && !by_nature => miss(reject_name(x).into()),
                Verdict::Drop if !caps.drop && !by_nature => miss("an explicit drop".into()),
                _ => {}
            }
            if matches!(f.traffic, Traffic::Icmp(_)) && !caps.icmp_types {
                miss("ICMP types".into());
            }
            if f.ct.is_some() && !caps.conntrack && caps.ordered {
                miss("conntrack state".into());
            }
            if let fleetwall_intent::Peer::Group { group, .. } = f.peer {
                let g = intent.group(group);
                if caps.max_set_entries.is_some_and(|max| g.members.len() > max) {
                    miss(format!("a group of {} networks ({})", g.members.len(), g.name));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_model::{load, Catalog};

    const FLEET: &str = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects:\n  p:\n    services:\n      s:\n        type: pg\n        cloud: aws-eu-west-1\n        user_config: { ip_filter: [192.0.2.0/24, 198.51.100.64/26, 203.0.113.128/25] }\n        nodes: { n-1: { public: 203.0.113.5 } }\n";

    fn fleet() -> fleetwall_model::Fleet {
        load(FLEET, &Catalog::builtin()).0.unwrap()
    }

    #[test]
    fn nft_and_iptables_express_every_compiled_ruleset() {
        let f = fleet();
        for rs in fleetwall_compile::compile(&f) {
            for b in ["nft", "iptables", "json"] {
                let b = crate::backend(b).unwrap();
                assert_eq!(check(b.name(), &b.capabilities(), &rs), vec![], "{}", b.name());
            }
        }
    }

    /// A target that only allows, ingress only, with no sets and small limits: the check
    /// names each feature, where it is used and the model object behind it.
    #[test]
    fn a_limited_target_is_told_exactly_what_it_cannot_express() {
        let caps = Capabilities {
            rejects: &[],
            drop: false,
            conntrack: false,
            icmp_types: false,
            loopback: false,
            egress: false,
            address_sets: false,
            destination_match: true,
            ordered: false,
            max_rules: Some(10),
            max_set_entries: Some(2),
        };
        let f = fleet();
        let rs = fleetwall_compile::compile_node(&f, "n-1").unwrap();
        let found = check("toy", &caps, &rs);
        let has = |feature: &str, at: &str| found.iter().any(|u| u.feature.starts_with(feature) && u.at.ends_with(at));
        assert!(has("a set of 3 entries (at most 2)", "set ipf4"), "{found:#?}");
        assert!(has("conntrack state invalid", "rule base-invalid"), "{found:#?}");
        assert!(has("an explicit drop", "rule base-invalid"));
        assert!(has("a loopback match", "rule base-loopback"));
        assert!(has("ICMP types", "rule icmp-errors-v4"));
        assert!(has("an address set (@ipf4)", "rule client-pg-dynamic-v4"));
        assert!(has("reject with tcp-reset", "rule reject-tcp"));
        assert!(has("a refusal before later rules", "rule reject-tcp"));
        assert!(found.iter().any(|u| u.feature.contains("rules in one chain")));
        let client = found.iter().find(|u| u.at.ends_with("rule client-pg-dynamic-v4")).unwrap();
        assert_eq!(client.because, "dynamic route of component pg of p/s, from its ip_filter");
        // Accept-all egress needs no egress filtering; an egress restriction does.
        assert!(!found.iter().any(|u| u.feature == "egress filtering"));
        let mut restricted = rs.clone();
        restricted.output[0].verdict = Verdict::Reject(Reject::AdminProhibited);
        assert!(check("toy", &caps, &restricted).iter().any(|u| u.feature == "egress filtering"));
        assert_eq!(
            found[0].to_string(),
            format!("toy cannot express {} ({}: {})", found[0].feature, found[0].at, found[0].because)
        );
    }

    #[test]
    fn the_intent_check_names_the_flow_and_group() {
        let caps = Capabilities { icmp_types: false, max_set_entries: Some(2), ..Capabilities::ALL };
        let intent = fleetwall_intent::build(&fleet());
        let found = check_intent("sg", &caps, &intent);
        assert!(found.iter().any(|u| u.feature == "ICMP types" && u.at == "p/s flow icmp-errors-v4"), "{found:#?}");
        assert!(found.iter().any(|u| u.feature.starts_with("a group of 3 networks (p/s/ip_filter)")), "{found:#?}");
        assert!(check_intent("sg", &Capabilities::ALL, &intent).is_empty());
        // An allow-only, unordered target: the final rejects are its default; nothing else refuses.
        let sg = Capabilities { rejects: &[], drop: false, ordered: false, ..Capabilities::ALL };
        assert_eq!(check_intent("sg", &sg, &intent), vec![]);
        let mut refusing = intent.clone();
        refusing.services[0].flows[8].verdict = Verdict::Reject(Reject::AdminProhibited);
        let found = check_intent("sg", &sg, &refusing);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].feature, "reject with admin-prohibited");
    }
}

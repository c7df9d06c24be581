//! The canonical hash of a ruleset: what the control plane publishes with every ruleset
//! and what the agent checks and reports back.
//!
//! It is computed over the IR, never over one renderer's text, so a server and an agent
//! one version apart (a renderer that prints a rule differently, a comment format that
//! changed) still agree as long as the ruleset they mean is the same.
//!
//! # The encoding (version 1)
//!
//! `SHA-256(encoding)` in lower-case hex, where the encoding is the bytes
//! `fleetwall-ir-hash/1\n` followed by a sequence of fields, each in one of three forms:
//!
//! * a string: its length in bytes in decimal, `:`, the UTF-8 bytes, `,` (`2:v4,`);
//! * a number: decimal digits and `,` (`443,`);
//! * a list: its length as a number, then its items.
//!
//! Enum variants are written as fixed strings (`accept`, `tcp-reset`, `echo-request`);
//! an absent optional field is the string `-`, a present one the string `+` and its value.
//! Every field has a fixed place, so the encoding reads back in exactly one way: two
//! rulesets have the same encoding only if they are the same ruleset.
//!
//! What does not change what a node enforces does not change the hash; everything else does:
//!
//! * orderless collections are sorted and duplicates dropped: the node's addresses, each
//!   set's elements and members, address lists, port lists and ICMP types; the sets are
//!   sorted by name (sets of one name, which validation refuses, by their encoding);
//! * rule order is kept (input chain, then output chain): the first match decides;
//! * every rule's id, reason, match and verdict, every set's name, family, reason,
//!   elements and members, the node's name and description count.
//!
//! Adding a field to the IR is a compile error here (every struct is destructured), so it
//! cannot be left out by accident; whoever adds one bumps the version line.

use crate::{AddrSet, Addrs, CtState, Family, IcmpType, IpMatch, L4Ref, Match, NodeRuleset, Reject, Rule, Verdict, L3};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write as _;

/// `write!` into bytes.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The first line of the encoding; changes whenever the encoding does.
pub const HASH_VERSION: &str = "fleetwall-ir-hash/1";

impl NodeRuleset {
    /// SHA-256 (lower-case hex) of [`NodeRuleset::canonical_encoding`].
    pub fn canonical_hash(&self) -> String {
        let mut hex = String::with_capacity(64);
        for b in Sha256::digest(self.canonical_encoding()) {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// The canonical encoding the hash is computed over (see the module documentation).
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let NodeRuleset { node, description, addresses, sets, input, output } = self;
        let mut e = Enc { out: Vec::with_capacity(4096), scratch: String::new() };
        e.out.extend_from_slice(HASH_VERSION.as_bytes());
        e.out.push(b'\n');
        e.str(node);
        e.str(description);
        e.list(&canonical(addresses), |e, a| e.display(a));
        e.num(sets.len() as u64);
        if sets.windows(2).all(|w| w[0].name < w[1].name) {
            for s in sets {
                e.set(s);
            }
        } else {
            // By name; sets of one name (which validation refuses) by their encoding.
            let mut chunks: Vec<(&str, Vec<u8>)> = sets
                .iter()
                .map(|s| {
                    let mut c = Enc { out: Vec::new(), scratch: String::new() };
                    c.set(s);
                    (s.name.as_str(), c.out)
                })
                .collect();
            chunks.sort();
            for (_, c) in chunks {
                e.out.extend_from_slice(&c);
            }
        }
        for chain in [input, output] {
            e.num(chain.len() as u64);
            for r in chain {
                e.rule(r);
            }
        }
        e.out
    }
}

/// The length, in hex digits, of a rule's own hash.
pub const RULE_HASH_LEN: usize = 16;

impl Rule {
    /// The rule's own short hash (the first [`RULE_HASH_LEN`] hex digits of SHA-256 over
    /// the versioned encoding of this rule alone: id, reason, match, verdict). Renderers
    /// stamp it into the rule's comment, so a kernel's rules can be compared with the
    /// ruleset one by one (a rule changed, lost or added by hand is named), as Calico
    /// Felix does with its rule hashes.
    pub fn hash(&self) -> String {
        let mut e = Enc { out: Vec::with_capacity(256), scratch: String::new() };
        e.out.extend_from_slice(HASH_VERSION.as_bytes());
        e.out.extend_from_slice(b" rule\n");
        e.rule(self);
        let mut hex = String::with_capacity(RULE_HASH_LEN);
        for b in &Sha256::digest(&e.out)[..RULE_HASH_LEN / 2] {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

/// Sorted, without duplicates (borrowed when it already is).
fn canonical<T: Ord + Clone>(items: &[T]) -> Cow<'_, [T]> {
    if items.windows(2).all(|w| w[0] < w[1]) {
        return Cow::Borrowed(items);
    }
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    Cow::Owned(v)
}

struct Enc {
    out: Vec<u8>,
    /// Reused for values written as text.
    scratch: String,
}

impl Enc {
    fn str(&mut self, s: &str) {
        let _ = write!(Bytes(&mut self.out), "{}:", s.len());
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(b',');
    }

    /// A value as the string of its `Display` form.
    fn display(&mut self, v: &impl std::fmt::Display) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let _ = write!(text, "{v}");
        self.str(&text);
        self.scratch = text;
    }

    fn num(&mut self, n: u64) {
        let _ = write!(Bytes(&mut self.out), "{n},");
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Enc, &T)) {
        self.num(items.len() as u64);
        for i in items {
            each(self, i);
        }
    }

    fn opt<T>(&mut self, v: &Option<T>, each: impl FnOnce(&mut Enc, &T)) {
        match v {
            None => self.str("-"),
            Some(x) => {
                self.str("+");
                each(self, x);
            }
        }
    }

    fn family(&mut self, f: Family) {
        self.str(f.as_str());
    }

    fn set(&mut self, s: &AddrSet) {
        let AddrSet { name, family, reason, elements, members } = s;
        self.str(name.as_str());
        self.family(*family);
        self.str(reason);
        self.list(&canonical(elements), |e, n| e.display(n));
        let mut members: Vec<(&ipnet::IpNet, &str)> = members
            .iter()
            .map(|m| {
                let crate::Member { net, reason } = m;
                (net, reason.as_str())
            })
            .collect();
        if !members.windows(2).all(|w| w[0] < w[1]) {
            members.sort();
            members.dedup();
        }
        self.list(&members, |e, (net, reason)| {
            e.display(net);
            e.str(reason);
        });
    }

    fn addrs(&mut self, a: &Addrs) {
        match a {
            Addrs::Set(name) => {
                self.str("set");
                self.str(name.as_str());
            }
            Addrs::List(nets) => {
                self.str("list");
                self.list(&canonical(nets), |e, n| e.display(n));
            }
        }
    }

    fn l4(&mut self, l: &L4Ref<'_>) {
        let ports = |e: &mut Enc, p: &[u16]| e.list(&canonical(p), |e, p| e.num(u64::from(*p)));
        match *l {
            L4Ref::Tcp(p) => {
                self.str("tcp");
                ports(self, p);
            }
            L4Ref::Udp(p) => {
                self.str("udp");
                ports(self, p);
            }
            L4Ref::Esp => self.str("esp"),
            L4Ref::Icmp(types) => {
                self.str("icmp");
                self.list(&canonical(types), |e, t: &IcmpType| e.str(t.name()));
            }
        }
    }

    fn rule(&mut self, r: &Rule) {
        let Rule { id, reason, matches, verdict } = r;
        let Match { loopback, ct, l3 } = matches;
        // Flat, as the wire form of a match is: a family, then what needs one.
        let (family, saddr, daddr, l4) = match l3 {
            L3::Any(proto) => (None, None, None, proto.as_ref().map(|p| p.as_ref())),
            L3::Ip(IpMatch { family, saddr, daddr, l4 }) => {
                (Some(*family), saddr.as_ref(), daddr.as_ref(), l4.as_ref().map(|l| l.as_ref()))
            }
        };
        self.str(id);
        self.str(reason);
        self.str(if *loopback { "loopback" } else { "any-interface" });
        self.opt(ct, |e, c| {
            e.str(match c {
                CtState::EstablishedRelated => "established-related",
                CtState::Invalid => "invalid",
            })
        });
        self.opt(&family, |e, f| e.family(*f));
        self.opt(&saddr, |e, a| e.addrs(a));
        self.opt(&daddr, |e, a| e.addrs(a));
        self.opt(&l4, Enc::l4);
        match verdict {
            Verdict::Accept => self.str("accept"),
            Verdict::Drop => self.str("drop"),
            Verdict::Reject(how) => {
                self.str("reject");
                self.str(match how {
                    Reject::TcpReset => "tcp-reset",
                    Reject::PortUnreachable => "port-unreachable",
                    Reject::AdminProhibited => "admin-prohibited",
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, Proto, SetName, L4};
    use std::sync::Arc;

    fn set(name: &str, family: Family, nets: &[&str]) -> Arc<AddrSet> {
        let members = nets.iter().map(|n| Member { net: n.parse().unwrap(), reason: format!("entry {n}") }).collect();
        Arc::new(AddrSet::new(SetName::new(name).unwrap(), family, format!("set {name}"), members))
    }

    fn rule(id: &str, matches: Match, verdict: Verdict) -> Rule {
        Rule { id: id.into(), reason: format!("because {id}"), matches, verdict }
    }

    fn sample() -> NodeRuleset {
        let set_name = |n: &str| Addrs::Set(SetName::new(n).unwrap());
        NodeRuleset {
            node: "pg-1".into(),
            description: "acme/pg (pg)".into(),
            addresses: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            sets: vec![
                set("ipf4", Family::V4, &["198.51.100.0/24", "10.0.0.0/16"]),
                set("mgmt4", Family::V4, &["192.0.2.10/32", "192.0.2.11/32"]),
            ],
            input: vec![
                rule("loopback", Match::loopback(), Verdict::Accept),
                rule("established", Match::ct(CtState::EstablishedRelated), Verdict::Accept),
                rule(
                    "mgmt-v4",
                    IpMatch::new(Family::V4).from(set_name("mgmt4")).l4(L4::Tcp(vec![22, 30287])).into(),
                    Verdict::Accept,
                ),
                rule(
                    "client-pg-v4",
                    IpMatch::new(Family::V4)
                        .from(set_name("ipf4"))
                        .to(Addrs::List(vec!["10.0.0.5/32".parse().unwrap(), "10.0.0.6/32".parse().unwrap()]))
                        .l4(L4::Tcp(vec![12691, 12692]))
                        .into(),
                    Verdict::Accept,
                ),
                rule(
                    "ping",
                    IpMatch::new(Family::V4).l4(L4::Icmp(vec![IcmpType::EchoRequest, IcmpType::TimeExceeded])).into(),
                    Verdict::Accept,
                ),
                rule("reject-tcp", Match::proto(Proto::Tcp(vec![])), Verdict::Reject(Reject::TcpReset)),
                rule("reject", Match::default(), Verdict::Reject(Reject::AdminProhibited)),
            ],
            output: vec![rule("egress", Match::default(), Verdict::Accept)],
        }
    }

    fn set_mut<'a>(rs: &'a mut NodeRuleset, name: &str) -> &'a mut AddrSet {
        Arc::make_mut(rs.sets.iter_mut().find(|s| s.name.as_str() == name).unwrap())
    }

    fn rule_mut<'a>(rs: &'a mut NodeRuleset, id: &str) -> &'a mut Rule {
        rs.input.iter_mut().find(|r| r.id == id).unwrap()
    }

    fn ip_mut<'a>(rs: &'a mut NodeRuleset, id: &str) -> &'a mut IpMatch {
        rule_mut(rs, id).matches.ip_mut().unwrap()
    }

    #[test]
    fn every_rule_has_its_own_short_hash_that_follows_what_it_does() {
        let rs = sample();
        let hashes: Vec<String> = rs.input.iter().map(Rule::hash).collect();
        assert!(hashes.iter().all(|h| h.len() == RULE_HASH_LEN && h.bytes().all(|b| b.is_ascii_hexdigit())));
        let unique: std::collections::BTreeSet<&String> = hashes.iter().collect();
        assert_eq!(unique.len(), hashes.len(), "distinct rules, distinct hashes");
        // Independent of the rule's place and of the other rules.
        let mut moved = sample();
        moved.input.reverse();
        assert_eq!(moved.input.last().unwrap().hash(), hashes[0]);
        // Any change of the rule changes it.
        let mut changed = sample();
        ip_mut(&mut changed, "mgmt-v4").l4 = Some(L4::Tcp(vec![22]));
        assert_ne!(rule_mut(&mut changed, "mgmt-v4").hash(), hashes[2]);
        let mut changed = sample();
        rule_mut(&mut changed, "loopback").verdict = Verdict::Drop;
        assert_ne!(rule_mut(&mut changed, "loopback").hash(), hashes[0]);
    }

    #[test]
    fn the_hash_is_sha256_hex_of_a_versioned_encoding() {
        let rs = sample();
        let h = rs.canonical_hash();
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{h}");
        let enc = rs.canonical_encoding();
        assert!(enc.starts_with(b"fleetwall-ir-hash/1\n4:pg-1,12:acme/pg (pg),2,8:10.0.0.5,7:fd00::5,2,4:ipf4,"));
        assert_eq!(h, rs.clone().canonical_hash(), "deterministic");
    }

    #[test]
    fn a_reordered_but_equal_ruleset_has_the_same_hash() {
        let rs = sample();
        let mut other = sample();
        other.addresses.reverse();
        other.addresses.push(other.addresses[0]);
        other.sets.reverse();
        let s = set_mut(&mut other, "ipf4");
        s.elements.reverse();
        s.members.reverse();
        let m = ip_mut(&mut other, "client-pg-v4");
        if let Some(Addrs::List(l)) = &mut m.daddr {
            l.reverse();
        }
        if let Some(L4::Tcp(p)) = &mut m.l4 {
            p.reverse();
            p.push(12691);
        }
        if let Some(L4::Icmp(t)) = &mut ip_mut(&mut other, "ping").l4 {
            t.reverse();
        }
        assert_ne!(rs, other, "the test changed something");
        assert_eq!(rs.canonical_hash(), other.canonical_hash());
        // And through the wire format (JSON) and back.
        let back: NodeRuleset = serde_json::from_str(&serde_json::to_string(&other).unwrap()).unwrap();
        assert_eq!(rs.canonical_hash(), back.canonical_hash());
    }

    #[test]
    fn any_change_that_matters_changes_the_hash() {
        let base = sample().canonical_hash();
        type Change = (&'static str, Box<dyn Fn(&mut NodeRuleset)>);
        let changes: Vec<Change> = vec![
            ("node", Box::new(|rs| rs.node = "pg-2".into())),
            ("description", Box::new(|rs| rs.description.push('!'))),
            ("address", Box::new(|rs| rs.addresses[0] = "10.0.0.7".parse().unwrap())),
            ("set element", Box::new(|rs| set_mut(rs, "ipf4").elements[0] = "203.0.113.0/24".parse().unwrap())),
            ("set element added", Box::new(|rs| set_mut(rs, "ipf4").elements.push("203.0.113.0/24".parse().unwrap()))),
            ("set member reason", Box::new(|rs| set_mut(rs, "ipf4").members[0].reason = "office".into())),
            ("set reason", Box::new(|rs| set_mut(rs, "ipf4").reason = "other".into())),
            ("set family", Box::new(|rs| set_mut(rs, "ipf4").family = Family::V6)),
            ("set removed", Box::new(|rs| rs.sets.truncate(1))),
            ("rule order", Box::new(|rs| rs.input.swap(2, 3))),
            ("rule order, same verdict", Box::new(|rs| rs.input.swap(0, 1))),
            ("rule moved to output", Box::new(|rs| rs.output.insert(0, rs.input.remove(0)))),
            ("rule removed", Box::new(|rs| drop(rs.input.remove(3)))),
            ("rule id", Box::new(|rs| rule_mut(rs, "ping").id = "pong".into())),
            ("rule reason", Box::new(|rs| rule_mut(rs, "ping").reason = "other".into())),
            ("verdict", Box::new(|rs| rule_mut(rs, "ping").verdict = Verdict::Drop)),
            ("reject kind", Box::new(|rs| rule_mut(rs, "reject").verdict = Verdict::Reject(Reject::PortUnreachable))),
            ("port", Box::new(|rs| ip_mut(rs, "client-pg-v4").l4 = Some(L4::Tcp(vec![12691])))),
            ("protocol", Box::new(|rs| ip_mut(rs, "client-pg-v4").l4 = Some(L4::Udp(vec![12691, 12692])))),
            ("any port", Box::new(|rs| ip_mut(rs, "client-pg-v4").l4 = Some(L4::Tcp(vec![])))),
            ("icmp type", Box::new(|rs| ip_mut(rs, "ping").l4 = Some(L4::Icmp(vec![IcmpType::EchoRequest])))),
            ("loopback", Box::new(|rs| rule_mut(rs, "loopback").matches.loopback = false)),
            ("ct state", Box::new(|rs| rule_mut(rs, "established").matches.ct = Some(CtState::Invalid))),
            ("family", Box::new(|rs| ip_mut(rs, "mgmt-v4").family = Family::V6)),
            (
                "family dropped",
                Box::new(|rs| rule_mut(rs, "mgmt-v4").matches.l3 = L3::Any(Some(Proto::Tcp(vec![22, 30287])))),
            ),
            (
                "any family",
                Box::new(|rs| {
                    rule_mut(rs, "reject-tcp").matches.l3 = L3::Ip(IpMatch::new(Family::V4).l4(L4::Tcp(vec![])))
                }),
            ),
            ("saddr set", Box::new(|rs| ip_mut(rs, "mgmt-v4").saddr = Some(Addrs::Set(SetName::new("ipf4").unwrap())))),
            (
                "saddr as daddr",
                Box::new(|rs| {
                    let m = ip_mut(rs, "mgmt-v4");
                    m.daddr = m.saddr.take();
                }),
            ),
            (
                "daddr list",
                Box::new(|rs| {
                    ip_mut(rs, "client-pg-v4").daddr = Some(Addrs::List(vec!["10.0.0.5/32".parse().unwrap()]))
                }),
            ),
            ("output rule", Box::new(|rs| rs.output[0].verdict = Verdict::Reject(Reject::AdminProhibited))),
        ];
        let mut seen = std::collections::HashSet::from([base.clone()]);
        for (what, change) in &changes {
            let mut rs = sample();
            change(&mut rs);
            let h = rs.canonical_hash();
            assert_ne!(h, base, "{what} did not change the hash");
            assert!(seen.insert(h), "{what} collided with another change");
        }
    }

    #[test]
    fn sets_of_one_name_are_ordered_by_their_content() {
        let mut a = sample();
        a.sets.push(set("ipf4", Family::V4, &["192.0.2.0/24"]));
        let mut b = a.clone();
        b.sets.reverse();
        assert_eq!(a.canonical_hash(), b.canonical_hash());
        b.sets.pop();
        assert_ne!(a.canonical_hash(), b.canonical_hash());
    }

    #[test]
    fn strings_cannot_run_into_each_other() {
        let mut a = sample();
        let mut b = sample();
        a.node = "pg-1,".into();
        a.description = "x".into();
        b.node = "pg-1".into();
        b.description = ",x".into();
        assert_ne!(a.canonical_hash(), b.canonical_hash());
    }
}

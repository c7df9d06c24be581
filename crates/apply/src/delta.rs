//! Set deltas: when a new ruleset differs from the loaded one only in the elements of its
//! address sets, the driver changes those elements instead of replacing the table.
//!
//! "Only in the elements" is decided on the IR: both rulesets with every set emptied
//! (elements and their members' reasons) must be equal — same sets in the same order,
//! same families and set reasons, same rules, same node, description and addresses. Anything else is a structure change
//! and takes the full path.

use fleetwall_ir::NodeRuleset;
use ipnet::IpNet;
use std::collections::BTreeSet;

/// The element changes of one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDelta {
    /// The set's name in the IR.
    pub set: String,
    /// Elements the new ruleset has and the loaded one does not.
    pub added: Vec<IpNet>,
    /// Elements the loaded ruleset has and the new one does not.
    pub removed: Vec<IpNet>,
}

/// How to get from what is loaded to a new ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Replace the whole ruleset (nothing known to be loaded, or the structure changed).
    Full,
    /// Change set elements only; empty when the rulesets are equal for the kernel.
    Delta(Vec<SetDelta>),
}

/// Whether `a` and `b` differ in set elements only (cheap: the sets are shared, their
/// elements are not copied).
fn same_structure(a: &NodeRuleset, b: &NodeRuleset) -> bool {
    let same_sets = a.sets.len() == b.sets.len()
        && a.sets.iter().zip(&b.sets).all(|(x, y)| (&x.name, x.family, &x.reason) == (&y.name, y.family, &y.reason));
    same_sets && NodeRuleset { sets: Vec::new(), ..a.clone() } == NodeRuleset { sets: Vec::new(), ..b.clone() }
}

/// Plans the change from `loaded` (None: unknown) to `new`.
pub fn plan(loaded: Option<&NodeRuleset>, new: &NodeRuleset) -> Plan {
    let Some(old) = loaded else { return Plan::Full };
    if !same_structure(old, new) {
        return Plan::Full;
    }
    let mut deltas = Vec::new();
    for (o, n) in old.sets.iter().zip(&new.sets) {
        let (before, after): (BTreeSet<IpNet>, BTreeSet<IpNet>) =
            (o.elements.iter().copied().collect(), n.elements.iter().copied().collect());
        let added: Vec<IpNet> = after.difference(&before).copied().collect();
        let removed: Vec<IpNet> = before.difference(&after).copied().collect();
        if !added.is_empty() || !removed.is_empty() {
            deltas.push(SetDelta { set: n.name.as_str().to_string(), added, removed });
        }
    }
    Plan::Delta(deltas)
}

/// The load of the kernel drivers, one logic for all: a delta when `how` allows it and
/// only set elements changed since what `loaded` holds, applied by `apply_delta` (one
/// transaction); a delta the kernel refuses (nothing of it applied), or any other change,
/// by `full`. `loaded` holds `rs` afterwards.
pub(crate) fn load(
    loaded: &std::sync::Mutex<Option<NodeRuleset>>,
    rs: &NodeRuleset,
    how: crate::How,
    apply_delta: impl FnOnce(&[SetDelta]) -> Result<(), crate::Error>,
    full: impl FnOnce() -> Result<(), crate::Error>,
) -> Result<crate::Mode, crate::Error> {
    use crate::Mode;
    let mut loaded = loaded.lock().unwrap_or_else(|p| p.into_inner());
    let plan = match how {
        crate::How::Auto => plan(loaded.as_ref(), rs),
        crate::How::Full => Plan::Full,
    };
    let delta = match plan {
        Plan::Delta(d) if d.is_empty() => Some(Mode::Delta { added: 0, removed: 0 }),
        Plan::Delta(d) => {
            let (added, removed) = counts(&d);
            apply_delta(&d).ok().map(|()| Mode::Delta { added, removed })
        }
        Plan::Full => None,
    };
    let mode = match delta {
        Some(mode) => mode,
        None => {
            *loaded = None;
            full()?;
            Mode::Full
        }
    };
    *loaded = Some(rs.clone());
    Ok(mode)
}

/// How many elements a delta adds and removes, over all its sets.
pub fn counts(deltas: &[SetDelta]) -> (usize, usize) {
    deltas.iter().fold((0, 0), |(a, r), d| (a + d.added.len(), r + d.removed.len()))
}

/// A network as nft writes an element: a host without its prefix length.
pub(crate) fn nft_element(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// The delta as one `nft -f` transaction on our table: every set's removals first (an
/// element that grew, 10.0.0.0/32 to 10.0.0.0/31, must leave before its successor may
/// enter an interval set), then its additions. The kernel applies the batch whole or not
/// at all.
pub fn nft_batch(table: &str, deltas: &[SetDelta]) -> String {
    let list = |nets: &[IpNet]| nets.iter().map(nft_element).collect::<Vec<_>>().join(", ");
    let mut o = String::new();
    for d in deltas.iter().filter(|d| !d.removed.is_empty()) {
        o += &format!("delete element inet {table} {} {{ {} }}\n", d.set, list(&d.removed));
    }
    for d in deltas.iter().filter(|d| !d.added.is_empty()) {
        o += &format!("add element inet {table} {} {{ {} }}\n", d.set, list(&d.added));
    }
    o
}

/// ipset `hash:net` cannot hold a /0: it stands as its two halves (as the renderer writes it).
fn ipset_elements(n: &IpNet) -> Vec<IpNet> {
    if n.prefix_len() == 0 {
        n.subnets(1).expect("/1 is a valid prefix").collect()
    } else {
        vec![*n]
    }
}

/// The delta as one `ipset restore -exist` input: every addition first, then the
/// removals. A `hash:net` set may hold overlapping networks, so an address both rulesets
/// admit (10.0.0.0/32 growing into 10.0.0.0/31) is never missing in between.
pub fn ipset_batch(prefix: &str, deltas: &[SetDelta]) -> String {
    let mut o = String::new();
    for d in deltas {
        for n in d.added.iter().flat_map(ipset_elements) {
            o += &format!("add {prefix}{} {n}\n", d.set);
        }
    }
    for d in deltas {
        // A /0 that goes while one of its halves stays (::/0 to ::/1) keeps that half.
        let kept: BTreeSet<IpNet> = d.added.iter().flat_map(ipset_elements).collect();
        for n in d.removed.iter().flat_map(ipset_elements).filter(|n| !kept.contains(n)) {
            o += &format!("del {prefix}{} {n}\n", d.set);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_ir::{AddrSet, Family, Match, Member, Proto, Rule, SetName, Verdict};
    use std::sync::Arc;

    fn ruleset(elements: &[&str]) -> NodeRuleset {
        let members =
            elements.iter().map(|e| Member { net: e.parse().unwrap(), reason: format!("entry {e}") }).collect();
        let set = AddrSet::new(SetName::new("ipf4").unwrap(), Family::V4, "ip_filter", members);
        NodeRuleset {
            node: "n1".into(),
            description: "test".into(),
            addresses: vec!["203.0.113.5".parse().unwrap()],
            sets: vec![Arc::new(set)],
            input: vec![Rule {
                id: "client".into(),
                reason: "clients".into(),
                matches: Match::proto(Proto::Tcp(vec![5432])),
                verdict: Verdict::Accept,
            }],
            output: Vec::new(),
        }
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_element_change_is_a_delta_of_the_aggregated_elements() {
        let old = ruleset(&["10.0.0.0/32", "192.0.2.0/24", "198.51.100.7/32"]);
        // 10.0.0.1 joins 10.0.0.0 into a /31; 198.51.100.7 leaves.
        let new = ruleset(&["10.0.0.0/32", "10.0.0.1/32", "192.0.2.0/24"]);
        let Plan::Delta(d) = plan(Some(&old), &new) else { panic!("a delta was expected") };
        assert_eq!(
            d,
            vec![SetDelta {
                set: "ipf4".into(),
                added: nets(&["10.0.0.0/31"]),
                removed: nets(&["10.0.0.0/32", "198.51.100.7/32"])
            }]
        );
        assert_eq!(counts(&d), (1, 2));
        assert_eq!(
            nft_batch("fleetwall", &d),
            "delete element inet fleetwall ipf4 { 10.0.0.0, 198.51.100.7 }\n\
             add element inet fleetwall ipf4 { 10.0.0.0/31 }\n"
        );
        assert_eq!(
            ipset_batch("fw-", &d),
            "add fw-ipf4 10.0.0.0/31\ndel fw-ipf4 10.0.0.0/32\ndel fw-ipf4 198.51.100.7/32\n"
        );
        assert_eq!(plan(Some(&new), &new), Plan::Delta(Vec::new()), "nothing to change");
    }

    #[test]
    fn a_structure_change_or_nothing_loaded_is_a_full_replace() {
        let old = ruleset(&["10.0.0.0/32"]);
        assert_eq!(plan(None, &old), Plan::Full);
        let mut new = ruleset(&["10.0.0.0/32"]);
        new.input[0].verdict = Verdict::Drop;
        assert_eq!(plan(Some(&old), &new), Plan::Full, "a rule changed");
        let mut new = ruleset(&["10.0.0.0/32"]);
        new.sets.push(Arc::new(AddrSet::new(SetName::new("ipf6").unwrap(), Family::V6, "v6", Vec::new())));
        assert_eq!(plan(Some(&old), &new), Plan::Full, "a set was added");
    }

    #[test]
    fn a_default_route_in_ipset_is_its_two_halves() {
        let d = vec![SetDelta { set: "any".into(), added: nets(&["0.0.0.0/0"]), removed: nets(&["0.0.0.0/1"]) }];
        // 0.0.0.0/1 stays as half of the /0: only additions are written.
        assert_eq!(ipset_batch("fw-", &d), "add fw-any 0.0.0.0/1\nadd fw-any 128.0.0.0/1\n");
    }
}

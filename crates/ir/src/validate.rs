//! What a `NodeRuleset` must satisfy before any renderer sees it.
//!
//! The agent receives rulesets over the network and renders them into `nft -f` input, so
//! a ruleset is hostile until this module has checked it: a set name that renderers write
//! as syntax (`set NAME {`, `@NAME`, `fw-NAME`) is a `SetName`, which can only hold
//! `[a-z0-9_]{1,32}`; the node's name follows the fleet's name rule; rule ids are slugs;
//! every free text (description, reasons) is bounded and free of control characters, so
//! no byte of it can end a comment or a line; every set a rule names exists with the
//! rule's family. The renderers escape free text as well: validation is the gate, the
//! escaping is the second wall.

use crate::{Addrs, Family, IpMatch, NodeRuleset, Rule, L3, L4};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The longest set name.
pub const MAX_SET_NAME: usize = 32;
/// The longest rule id.
pub const MAX_RULE_ID: usize = 128;
/// The longest free text (description, reason) in a ruleset.
pub const MAX_TEXT: usize = 4096;
/// The most rules in one chain.
pub const MAX_RULES: usize = 100_000;

/// What is wrong with a ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// A set name outside `[a-z0-9_]{1,32}`.
    SetName,
    /// A node name outside the fleet's name rule.
    NodeName,
    /// A rule id outside `[a-z0-9_.-]{1,128}`.
    RuleId,
    /// Free text with a control character, or longer than `MAX_TEXT`.
    Text,
    /// Two sets with one name.
    DuplicateSet,
    /// A rule names a set the ruleset does not have, or one of another family.
    UnknownSet,
    /// An address or set whose family differs from the rule's (or the set's).
    Family,
    /// More rules than `MAX_RULES`.
    TooLarge,
}

/// A ruleset (or one name) that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What kind of problem.
    pub kind: InvalidKind,
    /// Where and what, for people (values are quoted with `{:?}`, so they print escaped).
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

fn invalid(kind: InvalidKind, message: String) -> Invalid {
    Invalid { kind, message }
}

/// The name of an address set: `[a-z0-9_]{1,32}`, so it is safe wherever a renderer
/// writes it as syntax. Deserializing checks it too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SetName(String);

impl SetName {
    /// A set name, if `name` is one.
    pub fn new(name: impl Into<String>) -> Result<SetName, Invalid> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= MAX_SET_NAME
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(SetName(name))
        } else {
            Err(invalid(InvalidKind::SetName, format!("set name {name:?} is not [a-z0-9_]{{1,{MAX_SET_NAME}}}")))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SetName {
    type Error = Invalid;
    fn try_from(s: String) -> Result<SetName, Invalid> {
        SetName::new(s)
    }
}

impl From<SetName> for String {
    fn from(n: SetName) -> String {
        n.0
    }
}

impl std::ops::Deref for SetName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SetName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for SetName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// The fleet's name rule for nodes (and projects, services): letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit, at most 63 characters.
pub fn is_valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_rule_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RULE_ID
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

fn text(what: &str, s: &str) -> Result<(), Invalid> {
    if s.len() > MAX_TEXT {
        return Err(invalid(InvalidKind::Text, format!("{what} is longer than {MAX_TEXT} bytes")));
    }
    // Unicode line and paragraph separators too: no reader of our output may see a line end.
    if let Some(c) = s.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(invalid(InvalidKind::Text, format!("{what} {s:?} holds the control character {c:?}")));
    }
    Ok(())
}

impl NodeRuleset {
    /// Checks everything a renderer would print; the first problem found is returned.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_valid_node_name(&self.node) {
            return Err(invalid(InvalidKind::NodeName, format!("node name {:?} is not a valid name", self.node)));
        }
        text("the description", &self.description)?;
        let mut sets: BTreeMap<&str, Family> = BTreeMap::new();
        for s in &self.sets {
            // A deserialized SetName is valid already; a hand-built one is checked again here.
            SetName::new(s.name.as_str())?;
            if sets.insert(s.name.as_str(), s.family).is_some() {
                return Err(invalid(InvalidKind::DuplicateSet, format!("set {:?} is declared twice", s.name.as_str())));
            }
            text(&format!("the reason of set {}", s.name), &s.reason)?;
            if let Some(e) = s.elements.iter().find(|e| Family::of(e) != s.family) {
                return Err(invalid(InvalidKind::Family, format!("set {} holds {e} of the other family", s.name)));
            }
            for m in &s.members {
                text(&format!("a member reason of set {}", s.name), &m.reason)?;
            }
        }
        for (chain, rules) in [("input", &self.input), ("output", &self.output)] {
            if rules.len() > MAX_RULES {
                return Err(invalid(InvalidKind::TooLarge, format!("chain {chain} has more than {MAX_RULES} rules")));
            }
            for r in rules {
                rule(chain, r, &sets)?;
            }
        }
        Ok(())
    }
}

fn rule(chain: &str, r: &Rule, sets: &BTreeMap<&str, Family>) -> Result<(), Invalid> {
    if !is_rule_id(&r.id) {
        return Err(invalid(InvalidKind::RuleId, format!("rule id {:?} in chain {chain} is not a slug", r.id)));
    }
    text(&format!("the reason of rule {}", r.id), &r.reason)?;
    let L3::Ip(IpMatch { family: fam, saddr, daddr, l4 }) = &r.matches.l3 else {
        return Ok(());
    };
    for a in [saddr, daddr].into_iter().flatten() {
        match a {
            Addrs::Set(name) => match sets.get(name.as_str()) {
                Some(f) if f == fam => {}
                Some(_) => {
                    return Err(invalid(
                        InvalidKind::Family,
                        format!("rule {} uses set {name} of the other family", r.id),
                    ))
                }
                None => return Err(invalid(InvalidKind::UnknownSet, format!("rule {} uses unknown set {name}", r.id))),
            },
            Addrs::List(nets) => {
                if nets.is_empty() {
                    return Err(invalid(InvalidKind::Family, format!("rule {} matches an empty address list", r.id)));
                }
                if let Some(n) = nets.iter().find(|n| Family::of(n) != *fam) {
                    return Err(invalid(InvalidKind::Family, format!("rule {} lists {n} of the other family", r.id)));
                }
            }
        }
    }
    if let Some(L4::Icmp(types)) = l4 {
        if types.is_empty() {
            return Err(invalid(InvalidKind::Family, format!("rule {} matches ICMP without a type", r.id)));
        }
        if let Some(t) = types.iter().find(|t| !t.exists_in(*fam)) {
            return Err(invalid(
                InvalidKind::Family,
                format!("rule {} matches {} which {} does not have", r.id, t.name(), fam.as_str()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AddrSet, Member, Verdict};
    use std::sync::Arc;

    fn ruleset() -> NodeRuleset {
        let set = AddrSet::new(
            SetName::new("ipf4").unwrap(),
            Family::V4,
            "ip_filter of p/s",
            vec![Member { net: "10.0.0.0/8".parse().unwrap(), reason: "office 'x'".into() }],
        );
        NodeRuleset {
            node: "n1".into(),
            description: "p/s (pg)".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            sets: vec![Arc::new(set)],
            input: vec![Rule {
                id: "client-pg-dynamic-v4".into(),
                reason: "dynamic route \"quoted\"".into(),
                matches: IpMatch::new(Family::V4)
                    .from(Addrs::Set(SetName::new("ipf4").unwrap()))
                    .l4(L4::Tcp(vec![5432]))
                    .into(),
                verdict: Verdict::Accept,
            }],
            output: Vec::new(),
        }
    }

    #[test]
    fn a_compiled_shape_ruleset_is_valid() {
        assert_eq!(ruleset().validate(), Ok(()));
    }

    /// A family-less address or ICMP match cannot be built in Rust, and the wire form
    /// refuses it too (nft would drop such a match that the evaluator applies).
    #[test]
    fn a_family_less_address_or_icmp_match_does_not_deserialize() {
        let rule = |m: &str| format!(r#"{{"id":"r","reason":"r","match":{m},"verdict":"accept"}}"#);
        for bad in [
            r#"{"saddr":{"list":["10.0.0.0/8"]}}"#,
            r#"{"daddr":{"set":"ipf4"}}"#,
            r#"{"l4":{"proto":"icmp","ports":["echo-request"]}}"#,
        ] {
            let e = serde_json::from_str::<Rule>(&rule(bad)).unwrap_err().to_string();
            assert!(e.contains("needs a family"), "{bad}: {e}");
        }
        let ok: Rule = serde_json::from_str(&rule(
            r#"{"family":"v4","saddr":{"list":["10.0.0.0/8"]},"l4":{"proto":"tcp","ports":[22]}}"#,
        ))
        .unwrap();
        assert_eq!(ok.matches.family(), Some(Family::V4));
        assert_eq!(ok.matches.l4(), Some(crate::L4Ref::Tcp(&[22])));
        let any: Rule = serde_json::from_str(&rule(r#"{"l4":{"proto":"udp","ports":[]}}"#)).unwrap();
        assert_eq!(any.matches.l3, L3::Any(Some(crate::Proto::Udp(vec![]))));
        // And it serialises back to the same flat form.
        assert_eq!(serde_json::to_value(&ok).unwrap()["match"]["family"], "v4");
    }

    #[test]
    fn set_names_are_lowercase_slugs_only() {
        for bad in ["", "IPF4", "ipf4 {", "a\nflush ruleset", "x-y", "@x", &"a".repeat(33)] {
            assert_eq!(SetName::new(bad).unwrap_err().kind, InvalidKind::SetName, "{bad:?}");
        }
        assert!(SetName::new("vpcf4_peers_2").is_ok());
        // Deserializing goes through the same check.
        assert!(serde_json::from_str::<SetName>("\"ipf4\\n}\"").is_err());
        assert_eq!(serde_json::from_str::<SetName>("\"mgmt6\"").unwrap().as_str(), "mgmt6");
    }

    #[test]
    fn hostile_free_text_is_refused() {
        let kinds = |f: &dyn Fn(&mut NodeRuleset)| {
            let mut rs = ruleset();
            f(&mut rs);
            rs.validate().unwrap_err().kind
        };
        assert_eq!(kinds(&|rs| rs.description = "x\nflush ruleset\n".into()), InvalidKind::Text);
        assert_eq!(kinds(&|rs| rs.description = "x\u{2028}y".into()), InvalidKind::Text);
        assert_eq!(kinds(&|rs| rs.description = "x".repeat(MAX_TEXT + 1)), InvalidKind::Text);
        assert_eq!(kinds(&|rs| rs.node = "n1\nflush ruleset".into()), InvalidKind::NodeName);
        assert_eq!(kinds(&|rs| rs.input[0].id = "a\" ; flush ruleset".into()), InvalidKind::RuleId);
        assert_eq!(kinds(&|rs| rs.input[0].reason = "\r\ninclude \"/etc/shadow\"".into()), InvalidKind::Text);
        assert_eq!(kinds(&|rs| Arc::make_mut(&mut rs.sets[0]).reason = "a\0".into()), InvalidKind::Text);
        assert_eq!(kinds(&|rs| Arc::make_mut(&mut rs.sets[0]).members[0].reason = "\n}".into()), InvalidKind::Text);
    }

    #[test]
    fn references_must_resolve_with_the_right_family() {
        let mut rs = ruleset();
        rs.input[0].matches.ip_mut().unwrap().saddr = Some(Addrs::Set(SetName::new("nope").unwrap()));
        assert_eq!(rs.validate().unwrap_err().kind, InvalidKind::UnknownSet);
        let mut rs = ruleset();
        rs.input[0].matches.ip_mut().unwrap().family = Family::V6;
        assert_eq!(rs.validate().unwrap_err().kind, InvalidKind::Family);
        let mut rs = ruleset();
        rs.sets.push(rs.sets[0].clone());
        assert_eq!(rs.validate().unwrap_err().kind, InvalidKind::DuplicateSet);
    }
}

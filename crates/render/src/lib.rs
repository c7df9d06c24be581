//! Renderers: one module per target, all behind `Backend`. They see only the IR.
//!
//! Output is byte-stable: the IR is ordered, nothing here iterates a hash map or prints
//! a time. A backend returns one or more `Artifact`s (iptables needs three files).

pub mod aws;
pub mod azure_nsg;
pub mod caps;
pub mod cloud;
pub mod dante;
pub mod docs;
pub mod gcp;
pub mod iptables;
pub mod k8s;
pub mod nft;
pub mod sdn;
pub mod summary;

pub use caps::{check, check_intent, Capabilities, Unsupported};
use fleetwall_ir::NodeRuleset;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The file suffix (`nft`, `ipt4`, `ipt6`, `ipset`, `json`).
    pub suffix: &'static str,
    /// The content.
    pub text: String,
}

/// A node rendering target: renders the IR of one node.
pub trait Backend {
    /// The target's name as `--format` takes it.
    fn name(&self) -> &'static str;
    /// What it can express; `check` refuses a ruleset that needs more.
    fn capabilities(&self) -> Capabilities;
    /// Renders one node's ruleset.
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact>;
}

/// nftables: one `table inet fleetwall`.
pub struct Nft;
/// iptables-restore (v4 and v6) plus an `ipset restore` file.
pub struct Iptables;
/// The IR as JSON.
pub struct Json;

impl Backend for Nft {
    fn name(&self) -> &'static str {
        "nft"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact> {
        vec![Artifact { suffix: "nft", text: nft::render(rs) }]
    }
}

impl Backend for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn capabilities(&self) -> Capabilities {
        // `ipset` hash:net sets are created with maxelem 65536.
        Capabilities { max_set_entries: Some(iptables::IPSET_MAXELEM), ..Capabilities::ALL }
    }
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact> {
        let r = iptables::render(rs);
        vec![
            Artifact { suffix: "ipset", text: r.ipset },
            Artifact { suffix: "ipt4", text: r.v4 },
            Artifact { suffix: "ipt6", text: r.v6 },
        ]
    }
}

impl Backend for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact> {
        let mut text = serde_json::to_string_pretty(rs).expect("the IR serializes");
        text.push('\n');
        vec![Artifact { suffix: "json", text }]
    }
}

/// A group rendering target (cloud security groups, Kubernetes NetworkPolicy, docs):
/// renders the Intent, since groups and flows are what it expresses.
pub trait GroupBackend {
    /// The target's name.
    fn name(&self) -> &'static str;
    /// What it can express; `check_intent` refuses an Intent that needs more.
    fn capabilities(&self) -> Capabilities;
    /// Renders the whole Intent.
    fn render(&self, intent: &fleetwall_intent::Intent) -> Vec<Artifact>;
}

/// The backend called `name`.
pub fn backend(name: &str) -> Option<&'static dyn Backend> {
    match name {
        "nft" => Some(&Nft),
        "iptables" => Some(&Iptables),
        "json" => Some(&Json),
        _ => None,
    }
}

/// Free text as one line that no reader can take for syntax: every control character
/// (and Unicode's line and paragraph separators) becomes a space, `"` becomes `'` and `\`
/// a space, so the text can end neither a `#` comment, nor a quoted string, nor a line.
/// Validation (`NodeRuleset::validate`) refuses such text already; this is the second wall.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A rule's comment: its own hash (`Rule::hash`, so drift is found rule by rule), its id
/// and reason, made safe inside a double-quoted comment and cut to `max` bytes (the hash
/// and id come first and always survive the cut).
pub(crate) fn comment(r: &fleetwall_ir::Rule, max: usize) -> String {
    comment_text(&format!("{} {}: {}", r.hash(), r.id, r.reason), max)
}

/// `comment` as it was before rules carried their hash (`id: reason`).
pub(crate) fn comment_without_hash(r: &fleetwall_ir::Rule, max: usize) -> String {
    comment_text(&format!("{}: {}", r.id, r.reason), max)
}

pub(crate) fn comment_text(text: &str, max: usize) -> String {
    let mut s = one_line(text);
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetwall_ir::{AddrSet, Addrs, Family, IpMatch, Member, Rule, SetName, Verdict, L4};
    use std::sync::Arc;

    fn ruleset(text: &str) -> NodeRuleset {
        let set = AddrSet::new(
            SetName::new("ipf4").unwrap(),
            Family::V4,
            text,
            vec![Member { net: "192.0.2.0/24".parse().unwrap(), reason: text.into() }],
        );
        NodeRuleset {
            node: text.into(),
            description: text.into(),
            addresses: vec!["192.0.2.1".parse().unwrap()],
            sets: vec![Arc::new(set)],
            input: vec![Rule {
                id: text.into(),
                reason: text.into(),
                matches: IpMatch::new(Family::V4)
                    .from(Addrs::Set(SetName::new("ipf4").unwrap()))
                    .l4(L4::Tcp(vec![22]))
                    .into(),
                verdict: Verdict::Accept,
            }],
            output: Vec::new(),
        }
    }

    /// Even a ruleset that skipped validation cannot smuggle a line or end a string:
    /// hostile text renders to exactly as many lines and quotes as harmless text.
    #[test]
    fn hostile_free_text_cannot_add_a_line_or_end_a_comment() {
        let hostile = "x\"\n}\nflush ruleset\r\ninclude \"/etc/shadow\"\u{2028}\\\" #";
        for backend in ["nft", "iptables"] {
            let render = |t: &str| backend_named(backend, &ruleset(t));
            let (plain, bad) = (render("plain"), render(hostile));
            assert_eq!(plain.lines().count(), bad.lines().count(), "{backend}:\n{bad}");
            assert_eq!(plain.matches('"').count(), bad.matches('"').count(), "{backend}:\n{bad}");
            assert!(!bad.lines().any(|l| l.trim_start().starts_with("flush ruleset")), "{backend}:\n{bad}");
        }
    }

    fn backend_named(name: &str, rs: &NodeRuleset) -> String {
        backend(name).unwrap().render(rs).into_iter().map(|a| a.text).collect()
    }
}

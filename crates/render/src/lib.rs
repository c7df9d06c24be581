//! Renderers: one module per target, all behind `Backend`. They see only the IR.
//!
//! Output is byte-stable: the IR is ordered, nothing here iterates a hash map or prints
//! a time. A backend returns one or more `Artifact`s (iptables needs three files).

pub mod iptables;
pub mod nft;
pub mod summary;

use fleetwall_ir::NodeRuleset;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The file suffix (`nft`, `ipt4`, `ipt6`, `ipset`, `json`).
    pub suffix: &'static str,
    /// The content.
    pub text: String,
}

/// A rendering target.
pub trait Backend {
    /// The target's name as `--format` takes it.
    fn name(&self) -> &'static str;
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
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact> {
        vec![Artifact { suffix: "nft", text: nft::render(rs) }]
    }
}

impl Backend for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
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
    fn render(&self, rs: &NodeRuleset) -> Vec<Artifact> {
        let mut text = serde_json::to_string_pretty(rs).expect("the IR serializes");
        text.push('\n');
        vec![Artifact { suffix: "json", text }]
    }
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

/// Makes a reason safe inside a double-quoted comment and cuts it to `max` bytes.
pub(crate) fn comment(id: &str, reason: &str, max: usize) -> String {
    let mut s: String = format!("{id}: {reason}")
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' | '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect();
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

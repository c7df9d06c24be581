//! A YAML document as a tree of nodes that remember where they stand in the source.
//!
//! Serde deserializers stop at the first problem; `fleetwall check` must report every
//! problem at once with its line and column. So the parser only builds this tree, and
//! `raw` walks it, collecting diagnostics as it goes. Anchors and aliases are resolved
//! here (an alias becomes a copy of its anchor, spanned at the alias). Because copies
//! multiply, the parser is the trust boundary for size: a document may expand to a node
//! budget proportional to its length and nest at most `MAX_DEPTH` levels, and is refused
//! at the alias or collection that goes past either.

use crate::diag::{DiagCode, Diagnostic};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// A position in the source: 1-based line, 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub col: u32,
}

/// A range of the source, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Where the range starts.
    pub start: Pos,
    /// Where the range ends (exclusive).
    pub end: Pos,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null`, `~` or nothing at all.
    Null,
    /// Any other scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        /// The scalar's text after YAML unescaping.
        text: String,
        /// Whether the scalar was written without quotes (only then can it be a number or bool).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; duplicate keys are kept so `raw` can report them.
    Map(Vec<(Node, Node)>),
}

/// One YAML node and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node was written.
    pub span: Span,
    /// What it holds.
    pub kind: NodeKind,
}

impl Node {
    /// A short name of the node's kind, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Scalar { text, plain } => {
                if *plain && (text == "true" || text == "false") {
                    "boolean"
                } else if *plain && text.parse::<i64>().is_ok() {
                    "integer"
                } else {
                    "string"
                }
            }
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "mapping",
        }
    }

    /// The node as the text a user would recognise in a message.
    pub fn display_value(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".into(),
            NodeKind::Scalar { text, .. } => text.clone(),
            NodeKind::Seq(items) => format!("a list of {}", items.len()),
            NodeKind::Map(_) => "a mapping".into(),
        }
    }
}

fn pos(m: &saphyr_parser::Marker) -> Pos {
    Pos { line: m.line() as u32, col: m.col() as u32 + 1 }
}

/// The deepest nesting of collections a document may have. A fleet file nests about ten
/// levels deep; the limit keeps hostile nesting from overflowing the stack (dropping or
/// cloning a tree recurses once per level).
pub const MAX_DEPTH: usize = 64;

/// The fewest nodes any document may expand to, however short.
const MIN_NODE_BUDGET: usize = 10_000;

/// The nodes a document may expand to per byte of its source.
const NODES_PER_BYTE: usize = 16;

/// How many nodes a document of `len` bytes may expand to, aliases included:
/// `max(10,000, 16 × len)`.
///
/// Without aliases a document cannot come near it (every node takes at least a byte of
/// source), so only alias expansion is bounded: a list of 500 described `ip_filter`
/// entries shared by 200 services fits, while a few hundred bytes of nested aliases
/// ("billion laughs") that would expand to gigabytes are refused at the alias that
/// crosses the budget. A node costs about 80 bytes, so a document holds at most about
/// 1.3 KB of tree per byte of source.
pub fn node_budget(len: usize) -> usize {
    MIN_NODE_BUDGET.max(NODES_PER_BYTE.saturating_mul(len))
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(src: &str) -> Result<Node, Diagnostic> {
    build(src, node_budget(src.len()), &mut 0)
}

/// Parses `src`, expanding aliases into at most `budget` nodes; `built` counts the nodes
/// made (aliases count every node they copy).
fn build(src: &str, budget: usize, built: &mut usize) -> Result<Node, Diagnostic> {
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored nodes with their node counts, so that an alias is budgeted in O(1).
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| {
            let p = pos(e.marker());
            Diagnostic::error(DiagCode::Syntax, format!("YAML syntax error: {}", e.info()))
                .at(Span { start: p, end: p })
        })?;
        let sp = Span { start: pos(&span.start), end: pos(&span.end) };
        let finished = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(DiagCode::Syntax, "a fleet file holds exactly one YAML document")
                        .at(sp)
                        .hint("remove the `---` separator and merge the documents"));
                }
                None
            }
            Event::Scalar(text, style, anchor, _) => {
                let plain = matches!(style, ScalarStyle::Plain);
                let kind = if plain && (text.is_empty() || text == "~" || text == "null") {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar { text: text.into_owned(), plain }
                };
                let node = Node { span: sp, kind };
                *built += 1;
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), 1));
                }
                Some((node, 1))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, count)) => {
                    if *built + count > budget {
                        return Err(Diagnostic::error(
                            DiagCode::AliasExpansion,
                            format!("YAML aliases expand this document past {budget} nodes"),
                        )
                        .at(sp)
                        .value(format!("{} nodes", *built + count))
                        .hint("write the values out, or use fewer nested aliases"));
                    }
                    *built += count;
                    Some((Node { span: sp, kind: n.kind.clone() }, *count))
                }
                None => return Err(Diagnostic::error(DiagCode::Syntax, "unknown YAML alias").at(sp)),
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::error(
                        DiagCode::NestingDepth,
                        format!("the document nests more than {MAX_DEPTH} levels deep"),
                    )
                    .at(sp)
                    .value(format!("{} levels", stack.len() + 1))
                    .hint("a fleet file nests about ten levels deep; close the open lists and mappings"));
                }
                let items = match event {
                    Event::SequenceStart(..) => Items::Seq(Vec::new()),
                    _ => Items::Map(Vec::new(), None),
                };
                stack.push(Frame { start: sp, anchor, nodes: 1, items });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack.pop().expect("parser balances collections");
                let span = Span { start: frame.start.start, end: sp.end };
                let kind = match frame.items {
                    Items::Seq(items) => NodeKind::Seq(items),
                    Items::Map(pairs, _) => NodeKind::Map(pairs),
                };
                let node = Node { span, kind };
                *built += 1;
                if frame.anchor > 0 {
                    anchors.insert(frame.anchor, (node.clone(), frame.nodes));
                }
                Some((node, frame.nodes))
            }
            _ => None,
        };
        if let Some((node, count)) = finished {
            match stack.last_mut() {
                Some(parent) => {
                    parent.nodes += count;
                    match &mut parent.items {
                        Items::Seq(items) => items.push(node),
                        Items::Map(pairs, key) => match key.take() {
                            Some(k) => pairs.push((k, node)),
                            None => *key = Some(node),
                        },
                    }
                }
                None => root = Some(node),
            }
        }
    }
    Ok(root.filter(|n| n.kind != NodeKind::Null).unwrap_or(Node {
        span: Span { start: Pos { line: 1, col: 1 }, end: Pos { line: 1, col: 1 } },
        kind: NodeKind::Map(Vec::new()),
    }))
}

/// A collection still open: where it started, its anchor, the nodes in it so far
/// (itself included) and its items.
struct Frame {
    start: Span,
    anchor: usize,
    nodes: usize,
    items: Items,
}

enum Items {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values() {
        let n = parse("a:\n  b: [1, \"x\"]\n").unwrap();
        let NodeKind::Map(pairs) = &n.kind else { panic!("map") };
        let NodeKind::Map(inner) = &pairs[0].1.kind else { panic!("inner map") };
        let NodeKind::Seq(items) = &inner[0].1.kind else { panic!("seq") };
        assert_eq!(items[0].span.start, Pos { line: 2, col: 7 });
        assert_eq!(items[1].span.start, Pos { line: 2, col: 10 });
        assert_eq!(items[1].kind, NodeKind::Scalar { text: "x".into(), plain: false });
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let n = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        let NodeKind::Map(pairs) = &n.kind else { panic!("map") };
        assert_eq!(pairs[0].1.kind, pairs[1].1.kind);
        assert_eq!(pairs[1].1.span.start.line, 2);
    }

    /// Seven levels of ten aliases each: 256 bytes that expanded to 10^7 nodes and 1.85 GB.
    fn billion_laughs() -> String {
        let mut src = "a: &a [x,x,x,x,x,x,x,x,x,x]\n".to_string();
        for (prev, name) in ["a", "b", "c", "d", "e", "f"].iter().zip(["b", "c", "d", "e", "f", "g"]) {
            src.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(",")));
        }
        src
    }

    #[test]
    fn alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() {
        let src = billion_laughs();
        let budget = node_budget(src.len());
        assert_eq!(budget, MIN_NODE_BUDGET, "a short file gets the floor");
        let mut built = 0;
        let e = build(&src, budget, &mut built).unwrap_err();
        assert_eq!(e.code, DiagCode::AliasExpansion);
        assert_eq!(e.message, "YAML aliases expand this document past 10000 nodes");
        // Keys a–d and lists a–c make 1,237 nodes; each copy of c is 1,111 more, so the
        // 8th alias of line 4 crosses 10,000.
        assert_eq!(e.span.unwrap().start, Pos { line: 4, col: 29 });
        assert_eq!(e.value.as_deref(), Some("10125 nodes"));
        assert_eq!(e.hint.as_deref(), Some("write the values out, or use fewer nested aliases"));
        assert!(built <= budget, "built {built} nodes, budget {budget}");
    }

    #[test]
    fn an_ip_filter_list_reused_by_many_services_fits_the_budget() {
        // 500 described entries (5 nodes each), shared by 200 services.
        let mut src = "filters:\n  office: &office\n".to_string();
        for i in 0..500 {
            src.push_str(&format!("    - {{ network: 10.{}.{}.0/24, description: site {i} }}\n", i / 256, i % 256));
        }
        src.push_str("services:\n");
        for i in 0..200 {
            src.push_str(&format!("  svc-{i}:\n    user_config:\n      ip_filter: *office\n"));
        }
        let mut built = 0;
        let tree = build(&src, node_budget(src.len()), &mut built).unwrap();
        let NodeKind::Map(top) = &tree.kind else { panic!("map") };
        let NodeKind::Map(services) = &top[1].1.kind else { panic!("services") };
        assert_eq!(services.len(), 200);
        assert!(built > 500_000 && built <= node_budget(src.len()), "{built}");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_not_a_stack_overflow() {
        // 100,000 nested block lists overflowed the stack.
        let e = parse(&format!("{}x\n", "- ".repeat(100_000))).unwrap_err();
        assert_eq!(e.code, DiagCode::NestingDepth);
        assert_eq!(e.message, "the document nests more than 64 levels deep");
        assert_eq!(e.span.unwrap().start, Pos { line: 1, col: 129 });
        assert_eq!(e.value.as_deref(), Some("65 levels"));
        let flow = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = parse(&flow).unwrap_err();
        assert_eq!((e.code, e.span.unwrap().start), (DiagCode::NestingDepth, Pos { line: 1, col: 65 }));
        // Past 255 open brackets the scanner itself refuses, before any event.
        let e = parse(&"[".repeat(100_000)).unwrap_err();
        assert_eq!((e.code, e.span.unwrap().start), (DiagCode::Syntax, Pos { line: 1, col: 256 }));
        let just_deep_enough = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&just_deep_enough).is_ok());
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.code, DiagCode::Syntax);
        assert!(e.span.is_some());
    }

    #[test]
    fn empty_document_is_an_empty_map() {
        assert_eq!(parse("").unwrap().kind, NodeKind::Map(vec![]));
    }
}

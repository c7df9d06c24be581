//! A YAML document as a tree of nodes that remember where they stand in the source.
//!
//! Serde deserializers stop at the first problem; `fleetwall check` must report every
//! problem at once with its line and column. So the parser only builds this tree, and
//! `raw` walks it, collecting diagnostics as it goes. Anchors and aliases are resolved
//! here (an alias becomes a copy of its anchor, spanned at the alias).

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

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(src: &str) -> Result<Node, Diagnostic> {
    let mut stack: Vec<(Span, Frame)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
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
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => Some(Node { span: sp, kind: n.kind.clone() }),
                None => return Err(Diagnostic::error(DiagCode::Syntax, "unknown YAML alias").at(sp)),
            },
            Event::SequenceStart(anchor, _) => {
                stack.push((sp, Frame::Seq(anchor, Vec::new())));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push((sp, Frame::Map(anchor, Vec::new(), None)));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, frame) = stack.pop().expect("parser balances collections");
                let span = Span { start: start.start, end: sp.end };
                let (anchor, kind) = match frame {
                    Frame::Seq(a, items) => (a, NodeKind::Seq(items)),
                    Frame::Map(a, pairs, _) => (a, NodeKind::Map(pairs)),
                };
                let node = Node { span, kind };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            _ => None,
        };
        if let Some(node) = finished {
            match stack.last_mut() {
                Some((_, Frame::Seq(_, items))) => items.push(node),
                Some((_, Frame::Map(_, pairs, key))) => match key.take() {
                    Some(k) => pairs.push((k, node)),
                    None => *key = Some(node),
                },
                None => root = Some(node),
            }
        }
    }
    Ok(root.filter(|n| n.kind != NodeKind::Null).unwrap_or(Node {
        span: Span { start: Pos { line: 1, col: 1 }, end: Pos { line: 1, col: 1 } },
        kind: NodeKind::Map(Vec::new()),
    }))
}

enum Frame {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Node, Node)>, Option<Node>),
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

//! Which part of a fleet file a diagnostic is about: the fleet as a whole (the platform,
//! the tests, the file itself), one project (its VPCs, its base port) or one service.
//!
//! `plan --node N` and `check --node N` on a 10,000-node fleet should show the warnings
//! of N's own service, project and platform, not the 100,000 about other nodes. The
//! diagnostics only carry a span, so this reads the extent of every project and service
//! from the YAML tree (key through value) and places a span in the innermost one. A file
//! that does not parse has no scopes: every diagnostic then concerns the whole fleet.

use crate::diag::Diagnostic;
use crate::yaml::{self, Node, NodeKind, Pos, Span};

/// What a diagnostic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The platform, the tests, or the file as a whole (also: no location).
    Fleet,
    /// A project outside any of its services.
    Project(&'a str),
    /// A service of a project.
    Service {
        /// The project.
        project: &'a str,
        /// The service.
        service: &'a str,
    },
}

struct Extent {
    name: String,
    start: Pos,
    end: Pos,
}

impl Extent {
    fn holds(&self, p: Pos) -> bool {
        self.start <= p && p < self.end
    }
}

struct ProjectScope {
    extent: Extent,
    services: Vec<(Extent, Vec<String>)>,
}

/// The extents of every project and service of one fleet file, and each service's nodes.
#[derive(Default)]
pub struct Scopes {
    projects: Vec<ProjectScope>,
}

fn entries(node: Option<&Node>) -> impl Iterator<Item = (String, Span, &Node)> {
    let pairs: &[(Node, Node)] = match node.map(|n| &n.kind) {
        Some(NodeKind::Map(pairs)) => pairs,
        _ => &[],
    };
    pairs.iter().filter_map(|(k, v)| match &k.kind {
        NodeKind::Scalar { text, .. } => Some((text.clone(), Span { start: k.span.start, end: v.span.end }, v)),
        _ => None,
    })
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        NodeKind::Map(pairs) => {
            pairs.iter().find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { text, .. } if text == key)).map(|(_, v)| v)
        }
        _ => None,
    }
}

impl Scopes {
    /// The scopes of the fleet file `src` (none when it does not parse).
    pub fn of(src: &str) -> Scopes {
        let Ok(root) = yaml::parse(src) else { return Scopes::default() };
        let projects = entries(get(&root, "projects"))
            .map(|(name, span, p)| ProjectScope {
                extent: Extent { name, start: span.start, end: span.end },
                services: entries(get(p, "services"))
                    .map(|(name, span, s)| {
                        let nodes = entries(get(s, "nodes")).map(|(n, _, _)| n).collect();
                        (Extent { name, start: span.start, end: span.end }, nodes)
                    })
                    .collect(),
            })
            .collect();
        Scopes { projects }
    }

    /// The innermost project or service `span` lies in.
    pub fn owner(&self, span: Option<Span>) -> Owner<'_> {
        let Some(at) = span.map(|s| s.start) else { return Owner::Fleet };
        let Some(p) = self.projects.iter().find(|p| p.extent.holds(at)) else { return Owner::Fleet };
        match p.services.iter().find(|(s, _)| s.holds(at)) {
            Some((s, _)) => Owner::Service { project: &p.extent.name, service: &s.name },
            None => Owner::Project(&p.extent.name),
        }
    }

    /// The project and service that have node `node`, if any does.
    pub fn node(&self, node: &str) -> Option<(&str, &str)> {
        self.projects.iter().find_map(|p| {
            p.services
                .iter()
                .find(|(_, nodes)| nodes.iter().any(|n| n == node))
                .map(|(s, _)| (p.extent.name.as_str(), s.name.as_str()))
        })
    }

    /// Every node name, in file order.
    pub fn node_names(&self) -> Vec<&str> {
        self.projects.iter().flat_map(|p| p.services.iter().flat_map(|(_, n)| n.iter().map(String::as_str))).collect()
    }

    /// Whether `d` concerns node `node`: it is about the fleet as a whole, the node's
    /// project outside its services, or the node's service. An unknown node is concerned
    /// by everything.
    pub fn concerns_node(&self, d: &Diagnostic, node: &str) -> bool {
        let Some((project, service)) = self.node(node) else { return true };
        match self.owner(d.span) {
            Owner::Fleet => true,
            Owner::Project(p) => p == project,
            Owner::Service { project: p, service: s } => p == project && s == service,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::DiagCode;

    const SRC: &str = "\
version: 1
platform: { management_gateways: [198.51.100.10] }
projects:
  p1:
    base_port: 1
    services:
      a: { type: pg, nodes: { a-1: {}, a-2: {} } }
      b:
        type: pg
        nodes:
          b-1: {}
  p2:
    services:
      c: { nodes: { c-1: {} } }
";

    fn at(line: u32, col: u32) -> Option<Span> {
        Some(Span { start: Pos { line, col }, end: Pos { line, col: col + 1 } })
    }

    #[test]
    fn spans_fall_in_the_innermost_project_or_service() {
        let s = Scopes::of(SRC);
        assert_eq!(s.owner(at(2, 40)), Owner::Fleet);
        assert_eq!(s.owner(None), Owner::Fleet);
        assert_eq!(s.owner(at(5, 16)), Owner::Project("p1"));
        assert_eq!(s.owner(at(7, 38)), Owner::Service { project: "p1", service: "a" });
        assert_eq!(s.owner(at(11, 11)), Owner::Service { project: "p1", service: "b" });
        assert_eq!(s.owner(at(14, 7)), Owner::Service { project: "p2", service: "c" });
        assert_eq!(s.node("b-1"), Some(("p1", "b")));
        assert_eq!(s.node("zz"), None);
        assert_eq!(s.node_names(), ["a-1", "a-2", "b-1", "c-1"]);
    }

    #[test]
    fn a_node_is_concerned_by_its_service_its_project_and_the_platform_only() {
        let s = Scopes::of(SRC);
        let d = |line, col| Diagnostic { span: at(line, col), ..Diagnostic::warning(DiagCode::Type, "m") };
        assert!(s.concerns_node(&d(7, 38), "a-2"));
        assert!(!s.concerns_node(&d(11, 11), "a-2"));
        assert!(s.concerns_node(&d(5, 16), "a-2"));
        assert!(!s.concerns_node(&d(14, 7), "a-2"));
        assert!(s.concerns_node(&d(2, 40), "c-1"));
        assert!(s.concerns_node(&d(11, 11), "no-such-node"));
    }
}

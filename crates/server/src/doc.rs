//! The fleet as a document: the fleet file v1 held as JSON, edited by the API, and
//! validated by turning it back into YAML for `model::load` — the one parser and the one
//! validator `fleetwall check` uses. The YAML is emitted one key or item per line, and
//! every line remembers the path of what it holds, so a diagnostic's line becomes a path
//! an API caller can act on (`projects.acme.services.pg.user_config.ip_filter[1]`).

use fleetwall_model::yaml::{Node, NodeKind};
use serde_json::{Map, Value};

/// YAML text and, for every line, the document path it holds.
pub struct Emitted {
    /// The YAML text.
    pub text: String,
    /// `paths[line - 1]` is the path of line `line`.
    pub paths: Vec<String>,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => unreachable!("containers are emitted as blocks"),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn emit(v: &Value, indent: usize, path: &str, out: &mut Emitted) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = join(path, k);
                let key = Value::String(k.clone()).to_string();
                if is_block(child) {
                    out.text.push_str(&format!("{pad}{key}:\n"));
                    out.paths.push(p.clone());
                    emit(child, indent + 2, &p, out);
                } else {
                    out.text.push_str(&format!("{pad}{key}: {}\n", scalar(child)));
                    out.paths.push(p);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match child {
                    Value::Object(o) if !o.is_empty() => {
                        // "- " then the first key on the same line, the rest indented.
                        let mut first = Emitted { text: String::new(), paths: Vec::new() };
                        emit(child, indent + 2, &p, &mut first);
                        let text = first.text.replacen(&format!("{pad}  "), &format!("{pad}- "), 1);
                        out.text.push_str(&text);
                        out.paths.extend(first.paths);
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.text.push_str(&format!("{pad}-\n"));
                        out.paths.push(p.clone());
                        emit(child, indent + 2, &p, out);
                    }
                    _ => {
                        out.text.push_str(&format!("{pad}- {}\n", scalar(child)));
                        out.paths.push(p);
                    }
                }
            }
        }
        other => {
            out.text.push_str(&format!("{pad}{}\n", scalar(other)));
            out.paths.push(path.to_string());
        }
    }
}

/// The document as YAML, with the path of every line.
pub fn to_yaml(doc: &Value) -> Emitted {
    let mut out = Emitted { text: String::new(), paths: Vec::new() };
    emit(doc, 0, "", &mut out);
    out
}

impl Emitted {
    /// The path written on 1-based `line`.
    pub fn path_at(&self, line: u32) -> &str {
        self.paths.get(line.saturating_sub(1) as usize).map(String::as_str).unwrap_or("")
    }
}

/// A YAML tree as JSON: plain scalars that read as integers, booleans or null become
/// those; everything else is a string (the model reads the same text either way).
pub fn from_yaml(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Scalar { text, plain } => {
            if *plain {
                if let Ok(i) = text.parse::<i64>() {
                    return Value::from(i);
                }
                match text.as_str() {
                    "true" | "True" | "TRUE" => return Value::Bool(true),
                    "false" | "False" | "FALSE" => return Value::Bool(false),
                    "null" | "Null" | "NULL" | "~" => return Value::Null,
                    _ => {}
                }
            }
            Value::String(text.clone())
        }
        NodeKind::Seq(items) => Value::Array(items.iter().map(from_yaml).collect()),
        NodeKind::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match &k.kind {
                    NodeKind::Scalar { text, .. } => text.clone(),
                    _ => k.display_value(),
                };
                m.insert(key, from_yaml(v));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_yaml_with_a_path_per_line() {
        let doc = json!({
            "version": 1,
            "projects": {"acme": {"services": {"pg": {
                "user_config": {"ip_filter": ["10.0.0.0/8", {"network": "::/0", "description": "all \"v6\""}], "public_access": {}},
                "nodes": {"n1": {"private": ["10.0.0.5", "fd00::5"]}}
            }}}},
            "empty": [],
            "nested": [[1, 2], []]
        });
        let e = to_yaml(&doc);
        let tree = fleetwall_model::yaml::parse(&e.text).unwrap();
        assert_eq!(from_yaml(&tree), doc, "{}", e.text);
        assert_eq!(e.text.lines().count(), e.paths.len());
        let line = e.text.lines().position(|l| l.contains("description")).unwrap() as u32 + 1;
        assert_eq!(e.path_at(line), "projects.acme.services.pg.user_config.ip_filter[1].description");
        let line = e.text.lines().position(|l| l.contains("10.0.0.0/8")).unwrap() as u32 + 1;
        assert_eq!(e.path_at(line), "projects.acme.services.pg.user_config.ip_filter[0]");
    }
}

//! The fleet document as YAML text, for `GET /v1/fleet?format=yaml`: one key or item per
//! line, every string quoted (a JSON string is a valid YAML double-quoted scalar), so the
//! text reads back as the same document.

use serde_json::Value;

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => unreachable!("containers are emitted as blocks"),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let key = Value::String(k.clone()).to_string();
                if is_block(child) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    emit(child, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(child)));
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                match child {
                    Value::Object(o) if !o.is_empty() => {
                        // "- " then the first key on the same line, the rest indented.
                        let mut first = String::new();
                        emit(child, indent + 2, &mut first);
                        out.push_str(&first.replacen(&format!("{pad}  "), &format!("{pad}- "), 1));
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        emit(child, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(child))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// The document as YAML.
pub fn to_yaml(doc: &Value) -> String {
    let mut out = String::new();
    emit(doc, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_yaml_reads_back_as_the_same_document() {
        let v = serde_json::json!({"version": 1, "platform": {"management_gateways": ["198.51.100.10"]},
            "projects": {"a": {"vpcs": {"v": {"peerings": [{"peer_vpc": "x", "peer_cidrs": ["10.0.0.0/8"]}]}}, "services": {}}}});
        let text = super::to_yaml(&v);
        let tree = fleetwall_model::yaml::parse(&text).unwrap();
        let mut paths = fleetwall_model::doc::PathTable::default();
        let again = fleetwall_model::doc::json_to_node(&v, "", &mut paths);
        fn strip(n: &fleetwall_model::yaml::Node) -> String {
            use fleetwall_model::yaml::NodeKind::*;
            match &n.kind {
                Null => "~".into(),
                Scalar { text, .. } => text.clone(),
                Seq(items) => format!("[{}]", items.iter().map(strip).collect::<Vec<_>>().join(",")),
                Map(e) => format!(
                    "{{{}}}",
                    e.iter().map(|(k, v)| format!("{}:{}", strip(k), strip(v))).collect::<Vec<_>>().join(",")
                ),
            }
        }
        assert_eq!(strip(&tree), strip(&again));
    }
}

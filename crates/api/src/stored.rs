//! Views of objects of the fleet document: the object as stored, printed merged with the
//! fields the server adds, every key in sorted order (as a `serde_json::Value` object
//! prints), and lenient readers of stored values.

use crate::{Service, Vpc};
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// A stored value as text: a string as it is, a number or boolean in JSON, a list as its
/// items joined by commas, nothing (absent or null) as the empty string.
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

/// A stored "one or a list" value as a list of texts.
pub(crate) fn texts(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect(),
        Some(other) => vec![text(Some(other))],
    }
}

/// Serialises `v` as its JSON value: every object with sorted keys.
pub(crate) fn sorted<T: Serialize, S: Serializer>(v: &T, ser: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(v).map_err(S::Error::custom)?.serialize(ser)
}

/// Serialises `stored` and `added` as one object with sorted keys; an added field wins
/// over a stored one of the same name.
fn merged<S: Serializer>(ser: S, stored: &Map<String, Value>, added: Vec<(&str, Value)>) -> Result<S::Ok, S::Error> {
    let mut added = added;
    added.sort_by(|a, b| a.0.cmp(b.0));
    let mut m = ser.serialize_map(None)?;
    let mut next = added.iter().peekable();
    for (k, v) in stored {
        while let Some((ak, av)) = next.next_if(|(ak, _)| *ak < k.as_str()) {
            m.serialize_entry(ak, av)?;
        }
        if next.peek().is_some_and(|(ak, _)| *ak == k.as_str()) {
            continue;
        }
        m.serialize_entry(k, v)?;
    }
    for (ak, av) in next {
        m.serialize_entry(ak, av)?;
    }
    m.end()
}

impl Serialize for Vpc {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        merged(ser, &self.stored, vec![("name", Value::String(self.name.clone()))])
    }
}

impl Serialize for Service {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let listeners = serde_json::to_value(&self.listeners).map_err(S::Error::custom)?;
        let mut added = vec![
            ("listeners", listeners),
            ("name", Value::String(self.name.clone())),
            ("project", Value::String(self.project.clone())),
        ];
        if let Some(state) = &self.privatelink_state {
            added.push(("privatelink_state", Value::String(state.clone())));
        }
        merged(ser, &self.stored, added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_view_prints_as_the_merged_object_would() {
        let stored = json!({ "cloud": "aws-eu-west-1", "vpc": 2024, "nodes": { "n1": { "private": "10.0.0.1" } },
                             "zz": [1], "name": "stored-name-loses" });
        let Value::Object(stored) = stored else { unreachable!() };
        let s = Service {
            listeners: vec![crate::Listener {
                address: "10.0.0.1".into(),
                component: "pg".into(),
                node: "n1".into(),
                port: 12691,
                project: "acme".into(),
                protocol: "tcp".into(),
                route: "dynamic".into(),
                service: "pg".into(),
            }],
            name: "pg".into(),
            privatelink_state: Some("active".into()),
            project: "acme".into(),
            stored: stored.clone(),
        };
        let mut old = Value::Object(stored);
        old["name"] = json!("pg");
        old["project"] = json!("acme");
        old["listeners"] = serde_json::to_value(&s.listeners).unwrap();
        old["privatelink_state"] = json!("active");
        assert_eq!(serde_json::to_string_pretty(&s).unwrap(), serde_json::to_string_pretty(&old).unwrap());
        // And it reads back, stored fields and all.
        let back: Service = serde_json::from_value(old).unwrap();
        assert_eq!(back.vpc(), "2024");
        assert_eq!(back.nodes()[0].1.private, vec!["10.0.0.1".to_string()]);
        assert_eq!(back.privatelink_state.as_deref(), Some("active"));
        assert_eq!(back.listeners, s.listeners);
        assert!(!back.stored.contains_key("name") && !back.stored.contains_key("listeners"));
    }

    #[test]
    fn stored_values_read_leniently() {
        assert_eq!(text(Some(&json!(null))), "");
        assert_eq!(text(Some(&json!(12345))), "12345");
        assert_eq!(text(Some(&json!(["a", 1]))), "a,1");
        assert_eq!(texts(Some(&json!("10.0.0.1"))), vec!["10.0.0.1"]);
        assert_eq!(texts(None), Vec::<String>::new());
    }
}

//! `user_config` edits in the managed platform's CLI style, shared by the control-plane
//! API and the client verbs: `-c KEY=VALUE` (repeatable, dotted keys for nesting),
//! array literals (`['10.0.0.0/8','1.2.3.4/32']`, JSON or comma-separated) and
//! `--remove-option KEY`.
//!
//! Edits are typed by the keys fleetwall knows (a boolean stays a boolean), applied to a
//! copy, and either all succeed or none does; the result is then validated like any fleet
//! file, so an edit can never leave a half-applied or invalid configuration.

use serde_json::{Map, Value};

/// The `user_config` keys an edit may set, and their types.
const KEYS: [(&str, Kind); 5] = [
    ("ip_filter", Kind::List),
    ("public_access", Kind::Flags),
    ("private_access", Kind::Flags),
    ("privatelink_access", Kind::Flags),
    ("static_ips", Kind::Bool),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Flags,
    Bool,
}

/// One edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `-c KEY=VALUE`.
    Set(String, String),
    /// `--remove-option KEY`.
    Remove(String),
}

impl Edit {
    /// Parses a `-c` argument (`KEY=VALUE`).
    pub fn parse_set(arg: &str) -> Result<Edit, String> {
        match arg.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(Edit::Set(k.trim().to_string(), v.to_string())),
            _ => Err(format!("Invalid 'user_config': expected KEY=VALUE, got '{arg}'")),
        }
    }
}

fn error(key: &str, what: impl std::fmt::Display) -> String {
    format!("Invalid 'user_config': Invalid input for {key}: {what}")
}

/// The kind of a dotted key, or an error naming the closest known key.
fn kind_of(key: &str) -> Result<(Kind, Vec<&str>), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let Some((_, kind)) = KEYS.iter().find(|(k, _)| *k == parts[0]) else {
        let hint = crate::diag::did_you_mean(parts[0], KEYS.iter().map(|(k, _)| *k))
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        return Err(format!("Invalid 'user_config': unknown key '{}'{hint}", parts[0]));
    };
    match (kind, parts.len()) {
        (Kind::Flags, 1 | 2) | (Kind::List | Kind::Bool, 1) => Ok((*kind, parts)),
        _ => Err(error(key, "too many levels in the key")),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<Value, String> {
    match v.trim() {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        other => Err(error(key, format!("'{other}' is not true or false"))),
    }
}

/// Parses an array literal: JSON, Python-style single quotes, or comma-separated.
fn parse_list(key: &str, v: &str) -> Result<Value, String> {
    let t = v.trim();
    if t.starts_with('[') {
        if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(t) {
            return Ok(Value::Array(a));
        }
        // Python-style literal: swap the quotes (values are CIDRs and descriptions).
        let swapped: String = t
            .chars()
            .map(|c| match c {
                '\'' => '"',
                '"' => '\'',
                c => c,
            })
            .collect();
        return match serde_json::from_str::<Value>(&swapped) {
            Ok(Value::Array(a)) => Ok(Value::Array(a)),
            _ => Err(error(key, format!("'{t}' is not an array literal"))),
        };
    }
    if t.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    // Spaces around commas belong to the list syntax, as in a YAML flow list; anything
    // else, and everything inside quotes, reaches the validator as written.
    Ok(Value::Array(t.split(',').map(|s| Value::String(s.trim().to_string())).collect()))
}

/// Applies `edits` in order to a copy of `user_config`; all or nothing.
pub fn apply(user_config: &Value, edits: &[Edit]) -> Result<Value, String> {
    let mut uc: Map<String, Value> = match user_config {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err("Invalid 'user_config': not an object".into()),
    };
    for e in edits {
        match e {
            Edit::Set(key, raw) => {
                let (kind, parts) = kind_of(key)?;
                match (kind, parts.as_slice()) {
                    (Kind::List, [k]) => {
                        uc.insert(k.to_string(), parse_list(key, raw)?);
                    }
                    (Kind::Bool, [k]) => {
                        uc.insert(k.to_string(), parse_bool(key, raw)?);
                    }
                    (Kind::Flags, [k, component]) => {
                        let flags = uc.entry(k.to_string()).or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(m) = flags else { return Err(error(key, "not an object")) };
                        m.insert(component.to_string(), parse_bool(key, raw)?);
                    }
                    (Kind::Flags, [k]) => {
                        match serde_json::from_str::<Value>(raw.trim()) {
                            Ok(Value::Object(m)) if m.values().all(Value::is_boolean) => {
                                uc.insert(k.to_string(), Value::Object(m));
                            }
                            _ => return Err(error(
                                key,
                                "expected an object of booleans, or use a dotted key such as public_access.kafka=true",
                            )),
                        }
                    }
                    _ => unreachable!("kind_of checks the depth"),
                }
            }
            Edit::Remove(key) => {
                let (_, parts) = kind_of(key)?;
                let removed = match parts.as_slice() {
                    [k] => uc.remove(*k).is_some(),
                    [k, c] => uc.get_mut(*k).and_then(Value::as_object_mut).and_then(|m| m.remove(*c)).is_some(),
                    _ => false,
                };
                if !removed {
                    return Err(format!("Invalid 'user_config': option '{key}' is not set"));
                }
            }
        }
    }
    Ok(Value::Object(uc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(k: &str, v: &str) -> Edit {
        Edit::Set(k.into(), v.into())
    }

    #[test]
    fn platform_style_edits() {
        let uc = json!({"ip_filter": ["0.0.0.0/0"], "public_access": {"pg": false}});
        let out = apply(
            &uc,
            &[
                set("ip_filter", "['10.0.0.0/8','1.2.3.4/32']"),
                set("public_access.kafka", "true"),
                set("static_ips", "false"),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"ip_filter": ["10.0.0.0/8", "1.2.3.4/32"], "public_access": {"pg": false, "kafka": true}, "static_ips": false})
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter", "10.0.0.0/8, 192.0.2.0/24")]).unwrap()["ip_filter"],
            json!(["10.0.0.0/8", "192.0.2.0/24"])
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter", r#"[{"network": "10.0.0.0/8", "description": "office"}]"#)]).unwrap()
                ["ip_filter"][0]["description"],
            "office"
        );
        assert_eq!(apply(&uc, &[set("ip_filter", "[]")]).unwrap()["ip_filter"], json!([]));
        let removed = apply(&uc, &[Edit::Remove("public_access.pg".into()), Edit::Remove("ip_filter".into())]).unwrap();
        assert_eq!(removed, json!({"public_access": {}}));
    }

    #[test]
    fn edits_hand_networks_to_the_validator_as_written() {
        // The validator refuses these; an edit that trimmed or re-read them would hide that.
        let uc = json!({});
        assert_eq!(
            apply(&uc, &[set("ip_filter", r"[' 10.0.0.0/8', '1.2.3.4\n', '010.1.2.0/24', '::ffff:10.0.0.1/128']")])
                .unwrap()["ip_filter"],
            json!([" 10.0.0.0/8", "1.2.3.4\n", "010.1.2.0/24", "::ffff:10.0.0.1/128"])
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter", r#"[{"network": "10.0.0.0/8\t"}]"#)]).unwrap()["ip_filter"][0]["network"],
            "10.0.0.0/8\t"
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter", "010.1.2.0/24, 01.2.3.4/32")]).unwrap()["ip_filter"],
            json!(["010.1.2.0/24", "01.2.3.4/32"])
        );
    }

    #[test]
    fn bad_edits_change_nothing_and_say_why() {
        let uc = json!({"ip_filter": ["0.0.0.0/0"]});
        assert_eq!(
            apply(&uc, &[set("ip_filter", "['10.0.0.0/8']"), set("ip_filer", "x")]).unwrap_err(),
            "Invalid 'user_config': unknown key 'ip_filer' (did you mean 'ip_filter'?)"
        );
        assert_eq!(
            apply(&uc, &[set("public_access.kafka", "yes")]).unwrap_err(),
            "Invalid 'user_config': Invalid input for public_access.kafka: 'yes' is not true or false"
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter", "['10.0.0.0/8'")]).unwrap_err(),
            "Invalid 'user_config': Invalid input for ip_filter: '['10.0.0.0/8'' is not an array literal"
        );
        assert_eq!(
            apply(&uc, &[set("ip_filter.x", "1")]).unwrap_err(),
            "Invalid 'user_config': Invalid input for ip_filter.x: too many levels in the key"
        );
        assert_eq!(
            apply(&uc, &[Edit::Remove("static_ips".into())]).unwrap_err(),
            "Invalid 'user_config': option 'static_ips' is not set"
        );
        assert_eq!(
            Edit::parse_set("ip_filter").unwrap_err(),
            "Invalid 'user_config': expected KEY=VALUE, got 'ip_filter'"
        );
        assert_eq!(Edit::parse_set("a=b=c").unwrap(), set("a", "b=c"));
    }
}

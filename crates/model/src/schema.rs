//! The JSON Schema of the fleet file (`fleetwall schema`), derived from the raw types
//! in `raw` so it cannot drift from what the decoder reads.
//!
//! The schema is for editors: completion of keys, and a first check as one types. It
//! states the shape (keys, types, what is required, unknown keys refused), not the
//! semantics: whether a CIDR has host bits, a VPC exists or ports collide is
//! `fleetwall check`'s job. The raw types carry spans and keep mappings as ordered
//! lists, so a few shapes are described by hand here: a spanned value is its value, an
//! address field is one address or a list, an `ip_filter` entry is a CIDR or an object.

use crate::raw::{RawFleet, RawIpFilterEntry, Spanned};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// One value or a list of them (`private: 10.0.0.1` or `private: [10.0.0.1, "fd00::1"]`).
pub(crate) struct OneOrMany;

impl JsonSchema for OneOrMany {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "OneOrMany".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
            ]
        })
    }
}

impl JsonSchema for RawIpFilterEntry {
    fn schema_name() -> Cow<'static, str> {
        "IpFilterEntry".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let network =
            json_schema!({ "type": "string", "maxLength": 43, "description": "A CIDR (10.0.0.0/8) or an address." });
        json_schema!({
            "description": "A client network allowed in: a CIDR, or {network, description}.",
            "anyOf": [
                network.clone(),
                {
                    "type": "object",
                    "properties": {
                        "network": network,
                        "description": { "type": "string", "maxLength": 1024 },
                    },
                    "required": ["network"],
                    "additionalProperties": false,
                },
            ]
        })
    }
}

/// The JSON Schema (draft 2020-12) of a fleet file.
pub fn fleet_file_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawFleet).to_value();
    schema["title"] = "fleetwall fleet file v1".into();
    schema
}

/// `fleet_file_schema` as pretty JSON.
pub fn fleet_file_schema_json() -> String {
    serde_json::to_string_pretty(&fleet_file_schema()).expect("a JSON value serializes")
}

/// A deployment option's value: a port, a list of ports, or a protocol name.
pub(crate) struct OptionValueSchema;

impl JsonSchema for OptionValueSchema {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "DeploymentOption".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": 65535 } },
                { "type": "string", "enum": ["tcp", "udp", "tcp+udp"] },
            ]
        })
    }
}

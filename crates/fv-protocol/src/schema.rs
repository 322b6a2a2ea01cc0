//! JSON Schema (draft 2020-12) of both message directions, generated from the Rust types.
//!
//! The committed copy lives at `docs/protocol.schema.json`; a test keeps it in sync.

use crate::client::ClientMessage;
use crate::server::ServerMessage;
use schemars::SchemaGenerator;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

const DESCRIPTION: &str = "Control messages of the fv-stream /v1/stream WebSocket. Validate \
client text frames against #/$defs/ClientMessage and server text frames against \
#/$defs/ServerMessage. Server media travels in binary frames (fragmented MP4) and is not \
described here. Client fields are read leniently (pydantic v2 lax mode): booleans also accept \
\"true\"/\"false\"/\"1\"/\"0\"/\"yes\"/\"no\"/\"on\"/\"off\" (any case) and 0/1; integers also \
accept integral numbers (5.0) and numeric strings (\"5\"); numbers also accept numeric strings. \
Server messages omit optional fields instead of sending null. See docs/protocol.md.";

/// The schema document: `$defs` holds every type; the root accepts any client or server
/// message. Client types use the deserialize contract (what the server accepts), server
/// types the serialize contract (what the server sends). Keys are sorted so the output is
/// stable whatever serde_json features the build enables.
pub fn json_schema() -> Value {
    let client_gen = SchemaSettings::draft2020_12()
        .with(|s| s.contract = Contract::Deserialize)
        .into_generator();
    let server_gen = SchemaSettings::draft2020_12()
        .with(|s| s.contract = Contract::Serialize)
        .into_generator();
    let (client_ref, client_defs) = generate::<ClientMessage>(client_gen);
    let (server_ref, server_defs) = generate::<ServerMessage>(server_gen);
    let mut defs = client_defs;
    for (name, schema) in server_defs {
        // Shared types (ContinuationStateWire) have the same schema under both contracts;
        // the schema test checks that, so keeping the first copy is safe.
        defs.entry(name).or_insert(schema);
    }
    canonical(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fv-stream WebSocket protocol",
        "description": DESCRIPTION,
        "anyOf": [client_ref, server_ref],
        "$defs": defs,
    }))
}

fn generate<T: schemars::JsonSchema>(
    mut generator: SchemaGenerator,
) -> (Value, Map<String, Value>) {
    let reference = generator.subschema_for::<T>().to_value();
    (reference, generator.take_definitions(true))
}

/// Recursively sorts object keys.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Schema definitions generated under both contracts that are not identical; empty when the
/// merge in [`json_schema`] lost nothing.
#[cfg(test)]
fn conflicting_shared_definitions() -> Vec<String> {
    let (_, client) = generate::<ClientMessage>(
        SchemaSettings::draft2020_12()
            .with(|s| s.contract = Contract::Deserialize)
            .into_generator(),
    );
    let (_, server) = generate::<ServerMessage>(
        SchemaSettings::draft2020_12()
            .with(|s| s.contract = Contract::Serialize)
            .into_generator(),
    );
    server
        .iter()
        .filter(|(name, schema)| client.get(*name).is_some_and(|c| c != *schema))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_definitions_agree() {
        assert_eq!(conflicting_shared_definitions(), Vec::<String>::new());
    }

    #[test]
    fn schema_lists_every_message_type() {
        let text = json_schema().to_string();
        for t in ClientMessage::TYPES.iter().chain(ServerMessage::TYPES) {
            assert!(text.contains(&format!("\"{t}\"")), "schema lacks {t}");
        }
    }
}

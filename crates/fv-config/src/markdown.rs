//! The reference table of every key, generated from the same schema the checks use.

use crate::UNUSED;
use crate::walk::*;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A Markdown table of every key of `T`: type, default (read from `defaults`), allowed values,
/// whether it is used, and its doc comment. Blocks are listed through their keys; list items
/// as `key[].item`.
pub fn reference_markdown<T: JsonSchema + Serialize>(defaults: &T) -> String {
    let schema = schemars::schema_for!(T);
    let walk = Walk::new(&schema);
    let defaults = serde_json::to_value(defaults).unwrap_or(Value::Null);
    let mut out = String::from(
        "| key | type | default | allowed | used | description |\n|---|---|---|---|---|---|\n",
    );
    walk.rows(schema.as_value(), "", Some(&defaults), false, &mut out);
    out
}

impl<'a> Walk<'a> {
    fn rows(
        &self,
        schema: &'a Value,
        path: &str,
        defaults: Option<&Value>,
        unused: bool,
        out: &mut String,
    ) {
        let schema = self.resolve(schema);
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, field) in props {
            let field_path = join(path, name);
            let default = defaults.and_then(|d| d.get(name));
            let resolved = self.resolve(field);
            let field_unused = unused
                || field.get(UNUSED) == Some(&Value::Bool(true))
                || resolved.get(UNUSED) == Some(&Value::Bool(true));
            let (alts, nullable) = self.alternatives(field);
            let block = alts
                .iter()
                .find(|a| self.kind_of_type(a) == Kind::Object)
                .copied();
            let list_of_blocks = alts.iter().find_map(|a| {
                let a = self.resolve(a);
                let items = a.get("items")?;
                (self.kind(items) == Kind::Object).then_some(items)
            });
            if let Some(block) = block {
                if nullable {
                    self.row(
                        field,
                        &field_path,
                        default,
                        required.contains(&name.as_str()),
                        field_unused,
                        out,
                    );
                }
                self.rows(
                    block,
                    &field_path,
                    default.filter(|d| d.is_object()),
                    field_unused,
                    out,
                );
            } else if let Some(items) = list_of_blocks {
                self.row(
                    field,
                    &field_path,
                    default,
                    required.contains(&name.as_str()),
                    field_unused,
                    out,
                );
                self.rows(items, &format!("{field_path}[]"), None, field_unused, out);
            } else {
                self.row(
                    field,
                    &field_path,
                    default,
                    required.contains(&name.as_str()),
                    field_unused,
                    out,
                );
            }
        }
    }

    fn row(
        &self,
        field: &'a Value,
        path: &str,
        default: Option<&Value>,
        required: bool,
        unused: bool,
        out: &mut String,
    ) {
        let kind = self.kind(field);
        let (_, nullable) = self.alternatives(field);
        let mut type_text = type_text(&kind);
        if nullable && kind != Kind::Any {
            type_text.push_str(" or null");
        }
        let is_block = matches!(kind, Kind::Object);
        let default_text = if required {
            "required".to_owned()
        } else if is_block && default.is_some_and(Value::is_object) {
            "defaults".to_owned()
        } else {
            match default {
                Some(value) => format!("`{}`", value.to_string().replace('|', "\\|")),
                None => "—".to_owned(),
            }
        };
        let allowed = match &kind {
            Kind::Int { min, max, even } => {
                let range = int_range_text(*min, *max);
                let range = if range.is_empty() {
                    "any".to_owned()
                } else {
                    range
                };
                if *even {
                    format!("{range}, even")
                } else {
                    range
                }
            }
            Kind::Float { min: Some(m) } => format!("finite, >= {m}"),
            Kind::Float { min: None } => "finite".to_owned(),
            Kind::List(item) if matches!(item.as_ref(), Kind::Float { .. }) => "finite".to_owned(),
            Kind::Enum(values) => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        // The field's own doc comment first, else its type's.
        let description = field
            .get("description")
            .or_else(|| self.resolve(field).get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        let (used, doc) = if unused {
            ("no", "FastVideo key; accepted, not used.".to_owned())
        } else {
            ("yes", description)
        };
        out.push_str(&format!(
            "| `{path}` | {type_text} | {default_text} | {allowed} | {used} | {doc} |\n"
        ));
    }
}

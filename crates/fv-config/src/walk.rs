//! Reading a JSON schema as schemars derives it: resolving `$ref`s, telling what a key
//! accepts ([`Kind`]), and checking a document against it, problem by problem.

use crate::{Checked, Problem, UNUSED, describe};
use schemars::Schema;
use serde_json::{Map, Value};

/// The schema of a root type with its `$defs`, and helpers to read it.
pub(crate) struct Walk<'a> {
    pub(crate) defs: Option<&'a Map<String, Value>>,
    pub(crate) root: &'a Value,
}

/// What a (resolved) schema accepts, in the terms messages and docs use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Any,
    Null,
    Bool,
    Str,
    Enum(Vec<String>),
    Int {
        min: i128,
        max: i128,
        even: bool,
    },
    Float {
        min: Option<f64>,
    },
    Map,
    Object,
    List(Box<Kind>),
    /// `anyOf` / `oneOf` alternatives other than null.
    Either(Vec<Kind>),
}

impl<'a> Walk<'a> {
    pub(crate) fn new(root: &'a Schema) -> Self {
        let root = root.as_value();
        Self {
            defs: root.get("$defs").and_then(Value::as_object),
            root,
        }
    }

    /// Follows `$ref`s (`#/$defs/Name`, or `#` for the root).
    pub(crate) fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let next = match reference.strip_prefix("#/$defs/") {
                Some(name) => self.defs.and_then(|d| d.get(name)),
                None if reference == "#" => Some(self.root),
                None => None,
            };
            match next {
                Some(next) => schema = next,
                None => break,
            }
        }
        schema
    }

    /// The non-null alternatives of a schema and whether null is allowed.
    pub(crate) fn alternatives(&self, schema: &'a Value) -> (Vec<&'a Value>, bool) {
        let schema = self.resolve(schema);
        if let Some(list) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
            && !list.iter().all(is_const)
        {
            let mut alts = Vec::new();
            let mut nullable = false;
            for alt in list {
                let (inner, null) = self.alternatives(alt);
                nullable |= null;
                alts.extend(inner);
            }
            return (alts, nullable);
        }
        match schema.get("type") {
            Some(Value::Array(types)) if types.iter().any(|t| t == "null") => {
                let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                if non_null.is_empty() {
                    (Vec::new(), true)
                } else {
                    (vec![schema], true)
                }
            }
            Some(Value::String(t)) if t == "null" => (Vec::new(), true),
            _ => (vec![schema], false),
        }
    }

    /// The kind of one non-null alternative.
    pub(crate) fn kind(&self, schema: &'a Value) -> Kind {
        let schema = self.resolve(schema);
        if schema.as_bool() == Some(true) || schema.as_object().is_some_and(Map::is_empty) {
            return Kind::Any;
        }
        if let Some(values) = enum_values(schema) {
            return Kind::Enum(values);
        }
        let (alts, _) = self.alternatives(schema);
        if alts.len() > 1 {
            return Kind::Either(alts.iter().map(|a| self.kind_of_type(a)).collect());
        }
        self.kind_of_type(alts.first().copied().unwrap_or(schema))
    }

    pub(crate) fn kind_of_type(&self, schema: &'a Value) -> Kind {
        let schema = self.resolve(schema);
        if let Some(values) = enum_values(schema) {
            return Kind::Enum(values);
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ => return Kind::Any,
        };
        match ty {
            "null" => Kind::Null,
            "boolean" => Kind::Bool,
            "string" => Kind::Str,
            "integer" => {
                let (lo, hi) = format_bounds(schema.get("format").and_then(Value::as_str));
                let min = schema
                    .get("minimum")
                    .and_then(Value::as_f64)
                    .map_or(lo, |m| m.ceil() as i128);
                let max = schema
                    .get("maximum")
                    .and_then(Value::as_f64)
                    .map_or(hi, |m| m.floor() as i128);
                let even = schema.get("multipleOf").and_then(Value::as_f64) == Some(2.0);
                Kind::Int { min, max, even }
            }
            "number" => Kind::Float {
                min: schema.get("minimum").and_then(Value::as_f64),
            },
            "object" => {
                if schema.get("properties").is_some() {
                    Kind::Object
                } else {
                    Kind::Map
                }
            }
            "array" => Kind::List(Box::new(
                schema
                    .get("items")
                    .map_or(Kind::Any, |items| self.kind(items)),
            )),
            _ => Kind::Any,
        }
    }

    /// Checks `value` against `schema` at `path`.
    pub(crate) fn value(
        &self,
        schema: &'a Value,
        value: &Value,
        path: &str,
        unused: bool,
        out: &mut Checked,
    ) {
        // The marker may sit beside a `$ref` (a field) or in the definition (a whole type).
        let unused = unused || marked_unused(schema);
        let schema = self.resolve(schema);
        let unused = unused || marked_unused(schema);
        let (alts, nullable) = self.alternatives(schema);
        if value.is_null() {
            if !nullable && !alts.iter().any(|a| self.kind(a) == Kind::Any) {
                out.problems.push(Problem::new(
                    path,
                    format!("expected {}, got null", self.expected(schema)),
                ));
            }
            return;
        }
        // The first alternative whose type fits is the one the value is checked against.
        let fitting = if let Some(values) = enum_values(schema) {
            value
                .as_str()
                .is_some_and(|s| values.iter().any(|v| v == s))
                .then_some(schema)
        } else {
            alts.iter()
                .copied()
                .find(|alt| fits(&self.kind_of_type(alt), value))
        };
        let Some(alt) = fitting else {
            let mut message = format!(
                "expected {}, got {}",
                self.expected(schema),
                describe(value)
            );
            if self.kind(schema) == Kind::Bool
                && value.as_str().is_some_and(|s| {
                    ["yes", "no", "on", "off", "y", "n", "true", "false"]
                        .contains(&s.to_ascii_lowercase().as_str())
                })
            {
                message.push_str(" (write true or false without quotes)");
            }
            out.problems.push(Problem::new(path, message));
            return;
        };
        let alt = self.resolve(alt);
        match (self.kind_of_type(alt), value) {
            (Kind::Object, Value::Object(map)) => self.object(alt, map, path, unused, out),
            (Kind::List(_), Value::Array(items)) => {
                let items_schema = alt.get("items").unwrap_or(&Value::Bool(true));
                let before = out.problems.len();
                for (i, item) in items.iter().enumerate() {
                    self.value(items_schema, item, &format!("{path}[{i}]"), unused, out);
                }
                if unused && out.problems.len() == before {
                    out.ignored.push(path.to_owned());
                }
            }
            (Kind::Int { min, max, even }, v) => {
                let n = int_of(v).unwrap_or_default();
                if n < min || n > max {
                    out.problems.push(Problem::new(
                        path,
                        format!("must be in {min}..={max} (got {n})"),
                    ));
                } else if even && n % 2 != 0 {
                    out.problems
                        .push(Problem::new(path, format!("must be even (got {n})")));
                } else if unused {
                    out.ignored.push(path.to_owned());
                }
            }
            (Kind::Float { min: Some(m) }, v) if v.as_f64().is_some_and(|x| x < m) => {
                let x = v.as_f64().unwrap_or_default();
                out.problems
                    .push(Problem::new(path, format!("must be >= {m} (got {x})")));
            }
            _ => {
                if unused {
                    out.ignored.push(path.to_owned());
                }
            }
        }
    }

    pub(crate) fn object(
        &self,
        schema: &'a Value,
        map: &Map<String, Value>,
        path: &str,
        unused: bool,
        out: &mut Checked,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        if closed {
            for key in map.keys() {
                if !properties.is_some_and(|p| p.contains_key(key)) {
                    let hint = self.suggestion(key, properties);
                    out.problems.push(Problem::new(
                        join(path, key),
                        format!("unknown field{hint}"),
                    ));
                }
            }
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, field) in properties.into_iter().flatten() {
            match map.get(name) {
                Some(v) => self.value(field, v, &join(path, name), unused, out),
                None if required.contains(&name.as_str()) => out
                    .problems
                    .push(Problem::new(join(path, name), "missing required field")),
                None => {}
            }
        }
    }

    /// ` (did you mean X?)` for an unknown key: a close name in the same block, else the same
    /// name in another block (a key put under the wrong section).
    pub(crate) fn suggestion(&self, key: &str, siblings: Option<&Map<String, Value>>) -> String {
        let key = key.to_ascii_lowercase().replace('-', "_");
        let closest = siblings
            .into_iter()
            .flat_map(|s| s.keys())
            .map(|name| (strsim::osa_distance(&key, name), name))
            .min_by_key(|(distance, _)| *distance);
        if let Some((distance, name)) = closest
            && distance <= (name.len() / 4).max(1)
        {
            return format!(" (did you mean {name}?)");
        }
        let mut elsewhere = Vec::new();
        self.paths_named(self.root, "", &key, &mut elsewhere, 0);
        // A name found in many blocks (`enabled`) says nothing about which one was meant.
        if !elsewhere.is_empty() && elsewhere.len() <= 3 {
            return format!(" (did you mean {}?)", elsewhere.join(" or "));
        }
        String::new()
    }

    pub(crate) fn paths_named(
        &self,
        schema: &'a Value,
        path: &str,
        name: &str,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > 16 {
            return;
        }
        let (alts, _) = self.alternatives(schema);
        for alt in alts {
            let alt = self.resolve(alt);
            if let Some(props) = alt.get("properties").and_then(Value::as_object) {
                for (key, field) in props {
                    let field_path = join(path, key);
                    if key == name {
                        out.push(field_path.clone());
                    }
                    self.paths_named(field, &field_path, name, out, depth + 1);
                }
            }
            if let Some(items) = alt.get("items") {
                self.paths_named(items, &format!("{path}[]"), name, out, depth + 1);
            }
        }
    }

    /// What a key accepts, for "expected ..." messages.
    pub(crate) fn expected(&self, schema: &'a Value) -> String {
        let (_, nullable) = self.alternatives(schema);
        let base = kind_text(&self.kind(schema));
        if nullable {
            format!("{base} or null")
        } else {
            base
        }
    }
}

pub(crate) fn marked_unused(schema: &Value) -> bool {
    schema.get(UNUSED) == Some(&Value::Bool(true))
}

/// A schema that allows exactly some strings (`const`, or `enum`).
pub(crate) fn is_const(schema: &Value) -> bool {
    schema.get("const").is_some() || schema.get("enum").is_some()
}

/// The allowed strings of an enum schema: `enum: [..]`, `const`, or a `oneOf`/`anyOf` of those
/// (schemars writes documented variants as separate `const` alternatives).
pub(crate) fn enum_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        );
    }
    if let Some(value) = schema.get("const").and_then(Value::as_str) {
        return Some(vec![value.to_owned()]);
    }
    let list = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    if list.is_empty() || !list.iter().all(is_const) {
        return None;
    }
    Some(list.iter().filter_map(enum_values).flatten().collect())
}

/// The range an integer `format` can hold.
pub(crate) fn format_bounds(format: Option<&str>) -> (i128, i128) {
    match format {
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint") => (0, u64::MAX.into()),
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

pub(crate) fn int_of(value: &Value) -> Option<i128> {
    let n = value.as_number()?;
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Whether `value` has the JSON type `kind` asks for (ranges are checked afterwards).
pub(crate) fn fits(kind: &Kind, value: &Value) -> bool {
    match kind {
        Kind::Any => true,
        Kind::Null => value.is_null(),
        Kind::Bool => value.is_boolean(),
        Kind::Str => value.is_string(),
        Kind::Enum(values) => value
            .as_str()
            .is_some_and(|s| values.iter().any(|v| v == s)),
        Kind::Int { .. } => int_of(value).is_some(),
        Kind::Float { .. } => value.is_number(),
        Kind::Map | Kind::Object => value.is_object(),
        Kind::List(_) => value.is_array(),
        Kind::Either(kinds) => kinds.iter().any(|k| fits(k, value)),
    }
}

/// The allowed values of an integer key, e.g. `1..=1000`, `>= 1`; empty for any.
pub(crate) fn int_range_text(min: i128, max: i128) -> String {
    let full_max = max >= i128::from(i64::MAX);
    if min <= i128::from(i64::MIN) && full_max {
        String::new()
    } else if full_max {
        format!(">= {min}")
    } else {
        format!("{min}..={max}")
    }
}

pub(crate) fn kind_text(kind: &Kind) -> String {
    match kind {
        Kind::Any => "any value".to_owned(),
        Kind::Null => "null".to_owned(),
        Kind::Bool => "a boolean (true or false)".to_owned(),
        Kind::Str => "a string".to_owned(),
        Kind::Enum(values) => format!("one of {}", values.join(", ")),
        Kind::Int { min, max, even } => {
            let range = int_range_text(*min, *max);
            let mut text = "an integer".to_owned();
            if !range.is_empty() {
                text.push_str(&format!(" ({range})"));
            }
            if *even {
                text.push_str(", even");
            }
            text
        }
        Kind::Float { min: Some(m) } => format!("a number >= {m}"),
        Kind::Float { min: None } => "a number".to_owned(),
        Kind::Map | Kind::Object => "a mapping".to_owned(),
        Kind::List(item) => match item.as_ref() {
            Kind::Str => "a list of strings".to_owned(),
            Kind::Int { .. } => "a list of integers".to_owned(),
            Kind::Float { .. } => "a list of numbers".to_owned(),
            Kind::Map | Kind::Object => "a list of mappings".to_owned(),
            _ => "a list".to_owned(),
        },
        Kind::Either(kinds) => kinds.iter().map(kind_text).collect::<Vec<_>>().join(" or "),
    }
}

pub(crate) fn type_text(kind: &Kind) -> String {
    match kind {
        Kind::Any => "any".to_owned(),
        Kind::Null => "null".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::Str => "string".to_owned(),
        Kind::Enum(_) => "enum".to_owned(),
        Kind::Int { .. } => "int".to_owned(),
        Kind::Float { .. } => "float".to_owned(),
        Kind::Map | Kind::Object => "mapping".to_owned(),
        Kind::List(item) => format!("list of {}", plural(item)),
        Kind::Either(kinds) => kinds.iter().map(type_text).collect::<Vec<_>>().join(" or "),
    }
}

pub(crate) fn plural(kind: &Kind) -> String {
    match kind {
        Kind::Str => "strings".to_owned(),
        Kind::Int { .. } => "ints".to_owned(),
        Kind::Float { .. } => "floats".to_owned(),
        Kind::Map | Kind::Object => "mappings".to_owned(),
        other => type_text(other),
    }
}

pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

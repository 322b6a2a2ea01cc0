//! The one config mechanism for every YAML the project reads (its own crate, depending on nothing
//! internal, so every layer — stores, prompts, servers, router — may use it): the config types are plain serde
//! structs that also derive [`schemars::JsonSchema`]; their JSON schema is the single
//! description of every key (type, range, allowed values, default, doc comment), and this
//! module turns it into
//!
//! * [`check`]: every problem of a document at once, each with its key path — unknown keys
//!   with a "did you mean" (a close name in the same block, or the same name in another
//!   block), missing required keys, wrong types, out-of-range numbers, odd values where
//!   `multipleOf: 2` asks for even ones — plus the keys that are accepted but unused;
//! * [`deserialize`]: the typed value (after a clean [`check`], serde cannot disagree);
//! * [`reference_markdown`]: the documentation table of every key, generated from the same
//!   schema (docs/config.md embeds it and a drift test keeps it true).
//!
//! Ranges come from `#[schemars(range(min = .., max = ..))]`, even values from
//! `#[schemars(extend("multipleOf" = 2))]`, and keys a server accepts for compatibility but
//! does not read are marked `#[schemars(extend("x-unused" = true))]` (on a block: every key in
//! it). Cross-field rules stay in code, reported as [`Problem`]s with the same shape.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Server {
//!     /// Port to listen on.
//!     port: u16,
//!     /// Sessions at once.
//!     #[schemars(range(min = 1, max = 100))]
//!     max_sessions: u32,
//! }
//!
//! let doc = serde_json::json!({"prot": 80, "max_sessions": 0});
//! let checked = fv_config::check::<Server>(&doc);
//! let problems: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
//! assert_eq!(problems, [
//!     "prot: unknown field (did you mean port?)",
//!     "port: missing required field",
//!     "max_sessions: must be in 1..=100 (got 0)",
//! ]);
//! ```

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;

/// The marker for keys that are accepted but not used (`#[schemars(extend("x-unused" = true))]`).
pub const UNUSED: &str = "x-unused";

/// One problem in a document, at a dotted key path (`streaming.max_sessions`,
/// `replicas[1].url`; empty for the document itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: the dotted path of the key, `[i]` for list items.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    /// The same problem for a section mounted at `prefix` (`path` becomes `prefix.path`).
    pub fn under(self, prefix: &str) -> Self {
        let path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        Self { path, ..self }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(top level): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Every problem, in document order within each block.
    pub problems: Vec<Problem>,
    /// Keys that are set but marked unused, as dotted paths.
    pub ignored: Vec<String>,
}

/// Checks `value` against `T`'s schema; see the module docs.
pub fn check<T: JsonSchema>(value: &Value) -> Checked {
    let schema = schemars::schema_for!(T);
    check_with(&schema, value)
}

/// Checks `value` against an already generated root schema.
pub fn check_with(root: &Schema, value: &Value) -> Checked {
    let walk = Walk::new(root);
    let mut out = Checked::default();
    walk.value(root.as_value(), value, "", false, &mut out);
    out
}

/// What [`load`] made of a document.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The typed value: always when the document is clean; with problems, the document with
    /// the offending keys dropped (their defaults stand in) when that still deserializes, so
    /// cross-field rules can report their problems in the same run.
    pub value: Option<T>,
    /// What [`check`] found.
    pub problems: Vec<Problem>,
    /// Keys set but marked unused.
    pub ignored: Vec<String>,
}

/// [`check`]s `value` and deserializes it (see [`Loaded::value`] for a document with problems).
pub fn load<T: DeserializeOwned + JsonSchema>(mut value: Value) -> Loaded<T> {
    let Checked { problems, ignored } = check::<T>(&value);
    let usable = problems.is_empty() || problems.iter().all(|p| prune(&mut value, &p.path));
    let value = if usable {
        match deserialize::<T>(value) {
            Ok(v) => Some(v),
            // A clean document that serde refuses means the schema and the types disagree.
            Err(p) if problems.is_empty() => {
                return Loaded {
                    value: None,
                    problems: vec![p],
                    ignored,
                };
            }
            Err(_) => None,
        }
    } else {
        None
    };
    Loaded {
        value,
        problems,
        ignored,
    }
}

/// Removes the key at `path` (`a.b.c`, `a.list[2].d`) so its default stands in; `false` when
/// that is not possible (the document itself, or a list item, whose removal would shift the
/// indices later problems refer to).
fn prune(value: &mut Value, path: &str) -> bool {
    let mut segments = path.split('.').peekable();
    let mut node = value;
    while let Some(segment) = segments.next() {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let last = segments.peek().is_none();
        if last && indices.is_empty() {
            return node
                .as_object_mut()
                .is_some_and(|map| map.remove(key).is_some());
        }
        let Some(next) = node.get_mut(key) else {
            return false;
        };
        node = next;
        for index in indices.split(']').filter(|s| !s.is_empty()) {
            let Some(i) = index.trim_start_matches('[').parse::<usize>().ok() else {
                return false;
            };
            let Some(next) = node.get_mut(i) else {
                return false;
            };
            node = next;
        }
        if last {
            // The path ends at a list item.
            return false;
        }
    }
    false
}

/// Deserializes a document [`check`] found clean; a disagreement between schema and serde is
/// reported with the key path serde stopped at.
pub fn deserialize<T: DeserializeOwned>(value: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        Problem::new(path, e.into_inner().to_string())
    })
}

/// A short description of a value for messages: `integer 3`, `string "abc"`, `a mapping`.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => {
            const SHOWN: usize = 40;
            let mut shown: String = s.chars().take(SHOWN).collect();
            if s.chars().count() > SHOWN {
                shown.push_str("...");
            }
            format!("string {shown:?}")
        }
        Value::Array(items) => format!(
            "a list of {} item{}",
            items.len(),
            if items.len() == 1 { "" } else { "s" }
        ),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// The schema of a root type with its `$defs`, and helpers to read it.
struct Walk<'a> {
    defs: Option<&'a Map<String, Value>>,
    root: &'a Value,
}

/// What a (resolved) schema accepts, in the terms messages and docs use.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
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
    fn new(root: &'a Schema) -> Self {
        let root = root.as_value();
        Self {
            defs: root.get("$defs").and_then(Value::as_object),
            root,
        }
    }

    /// Follows `$ref`s (`#/$defs/Name`, or `#` for the root).
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
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
    fn alternatives(&self, schema: &'a Value) -> (Vec<&'a Value>, bool) {
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
    fn kind(&self, schema: &'a Value) -> Kind {
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

    fn kind_of_type(&self, schema: &'a Value) -> Kind {
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
    fn value(&self, schema: &'a Value, value: &Value, path: &str, unused: bool, out: &mut Checked) {
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

    fn object(
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
    fn suggestion(&self, key: &str, siblings: Option<&Map<String, Value>>) -> String {
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

    fn paths_named(
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
    fn expected(&self, schema: &'a Value) -> String {
        let (_, nullable) = self.alternatives(schema);
        let base = kind_text(&self.kind(schema));
        if nullable {
            format!("{base} or null")
        } else {
            base
        }
    }
}

fn marked_unused(schema: &Value) -> bool {
    schema.get(UNUSED) == Some(&Value::Bool(true))
}

/// A schema that allows exactly some strings (`const`, or `enum`).
fn is_const(schema: &Value) -> bool {
    schema.get("const").is_some() || schema.get("enum").is_some()
}

/// The allowed strings of an enum schema: `enum: [..]`, `const`, or a `oneOf`/`anyOf` of those
/// (schemars writes documented variants as separate `const` alternatives).
fn enum_values(schema: &Value) -> Option<Vec<String>> {
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
fn format_bounds(format: Option<&str>) -> (i128, i128) {
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

fn int_of(value: &Value) -> Option<i128> {
    let n = value.as_number()?;
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Whether `value` has the JSON type `kind` asks for (ranges are checked afterwards).
fn fits(kind: &Kind, value: &Value) -> bool {
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
fn int_range_text(min: i128, max: i128) -> String {
    let full_max = max >= i128::from(i64::MAX);
    if min <= i128::from(i64::MIN) && full_max {
        String::new()
    } else if full_max {
        format!(">= {min}")
    } else {
        format!("{min}..={max}")
    }
}

fn kind_text(kind: &Kind) -> String {
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

fn type_text(kind: &Kind) -> String {
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

fn plural(kind: &Kind) -> String {
    match kind {
        Kind::Str => "strings".to_owned(),
        Kind::Int { .. } => "ints".to_owned(),
        Kind::Float { .. } => "floats".to_owned(),
        Kind::Map | Kind::Object => "mappings".to_owned(),
        other => type_text(other),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    /// `section`.
    #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        /// Whether it is on.
        enabled: bool,
        /// A frame side.
        #[schemars(range(min = 16, max = 4096), extend("multipleOf" = 2))]
        width: u32,
        /// Mode.
        mode: Mode,
        /// Free text or null.
        label: Option<String>,
        /// Weights.
        weights: Vec<f64>,
        /// Strength, at least 0.
        #[schemars(range(min = 0.0))]
        strength: f64,
        /// One or many prompts.
        prompt: Option<StringOrList>,
        /// Items.
        items: Vec<Item>,
        /// Old knob.
        #[schemars(extend("x-unused" = true))]
        legacy: i64,
    }

    #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Fast,
        /// Slow and careful.
        Slow,
    }

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    #[serde(untagged)]
    enum StringOrList {
        One(String),
        Many(Vec<String>),
    }

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Item {
        /// Its name.
        name: String,
    }

    #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[serde(default)]
        section: Section,
        /// Port.
        #[serde(default)]
        port: u16,
    }

    fn problems(doc: Value) -> Vec<String> {
        check::<Root>(&doc)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_clean_document_has_no_problems_and_deserializes() {
        let doc = json!({"section": {"enabled": true, "width": 64, "mode": "slow",
            "label": null, "weights": [1, 2.5], "strength": 0, "prompt": ["a", "b"],
            "items": [{"name": "x"}]}, "port": 80});
        assert_eq!(problems(doc.clone()), Vec::<String>::new());
        let root: Root = deserialize(doc).expect("clean");
        assert_eq!(root.section.width, 64);
        assert!(matches!(root.section.mode, Mode::Slow));
    }

    #[test]
    fn every_kind_of_problem_is_reported_with_its_path() {
        let doc = json!({"sectoin": {}, "section": {"enabled": "yes", "width": 15,
            "mode": "medium", "label": 3, "weights": [1, "x"], "strength": -1,
            "prompt": {"a": 1}, "items": [{"nam": "x"}, 4], "legacy": 2}, "port": 70000});
        assert_eq!(
            problems(doc),
            [
                "sectoin: unknown field (did you mean section?)",
                "section.enabled: expected a boolean (true or false), got string \"yes\" (write true or false without quotes)",
                "section.width: must be in 16..=4096 (got 15)",
                "section.mode: expected one of fast, slow, got string \"medium\"",
                "section.label: expected a string or null, got integer 3",
                "section.weights[1]: expected a number, got string \"x\"",
                "section.strength: must be >= 0 (got -1)",
                "section.prompt: expected a string or a list of strings or null, got a mapping",
                "section.items[0].nam: unknown field (did you mean name?)",
                "section.items[0].name: missing required field",
                "section.items[1]: expected a mapping, got integer 4",
                "port: must be in 0..=65535 (got 70000)",
            ]
        );
        assert_eq!(
            problems(json!({"section": {"width": 65}})),
            ["section.width: must be even (got 65)"]
        );
    }

    #[test]
    fn a_key_in_the_wrong_block_points_to_the_right_one() {
        assert_eq!(
            problems(json!({"enabled": true, "section": {"port": 1}})),
            [
                "enabled: unknown field (did you mean section.enabled?)",
                "section.port: unknown field (did you mean port?)",
            ]
        );
    }

    #[test]
    fn unused_keys_are_collected() {
        let checked = check::<Root>(&json!({"section": {"legacy": 5, "enabled": true}}));
        assert!(checked.problems.is_empty());
        assert_eq!(checked.ignored, ["section.legacy"]);
    }

    #[test]
    fn the_reference_table_lists_every_key_with_its_rules() {
        let table = reference_markdown(&Root::default());
        for row in [
            "| `section.enabled` | bool | `false` |  | yes | Whether it is on. |",
            "| `section.width` | int | `0` | 16..=4096, even | yes | A frame side. |",
            "| `section.mode` | enum | `\"fast\"` | `fast`, `slow` | yes | Mode. |",
            "| `section.label` | string or null | `null` |  | yes | Free text or null. |",
            "| `section.weights` | list of floats | `[]` | finite | yes | Weights. |",
            "| `section.strength` | float | `0.0` | finite, >= 0 | yes | Strength, at least 0. |",
            "| `section.items` | list of mappings | `[]` |  | yes | Items. |",
            "| `section.items[].name` | string | required |  | yes | Its name. |",
            "| `section.legacy` | int | `0` | any | no | FastVideo key; accepted, not used. |",
            "| `port` | int | `0` | 0..=65535 | yes | Port. |",
        ] {
            assert!(table.contains(row), "missing row {row} in\n{table}");
        }
    }

    #[test]
    fn load_still_deserializes_around_wrong_keys() {
        let loaded = load::<Root>(json!({"port": "x", "section": {"width": 64, "bogus": 1}}));
        assert_eq!(loaded.problems.len(), 2);
        let root = loaded.value.expect("the rest deserializes");
        assert_eq!((root.port, root.section.width), (0, 64));
        // A broken list item cannot be pruned without shifting indices.
        let loaded = load::<Root>(json!({"section": {"items": [3]}}));
        assert!(loaded.value.is_none());
        assert_eq!(loaded.problems.len(), 1);
    }

    #[test]
    fn serde_disagreements_name_the_path() {
        let err = deserialize::<Root>(json!({"section": {"width": "x"}})).expect_err("bad type");
        assert_eq!(err.path, "section.width");
    }
}

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
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

mod markdown;
#[cfg(test)]
mod tests;
mod walk;

pub use markdown::reference_markdown;
use walk::Walk;

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

//! Field deserializers with pydantic-v2-style "lax" coercion.
//!
//! Existing clients were written against a pydantic server, which accepts `"true"` for a
//! boolean or `"5"` for an integer. These functions accept exactly that set (see the crate
//! docs) and produce human error messages (`expected an integer, got string "abc"`) that
//! [`crate::ParseError`] prefixes with the field path.
//!
//! Scalars are read as a [`Value`] first and then checked, which keeps every message under
//! our control. Composite values (string lists, the continuation state) use visitors so that
//! `serde_path_to_error` can still report the exact element (`curated_prompts[2]`,
//! `continuation_state.kind`).

use crate::client::ContinuationStateWire;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::Error as _};
use serde_json::{Map, Value};
use std::fmt;

/// Longest string (in characters) quoted back in an error message; longer ones are cut so an
/// error frame never echoes a multi-megabyte prompt.
pub const MAX_ECHO_CHARS: usize = 64;

/// Describes a JSON value for an error message: `string "abc"`, `integer 5`, `an array`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// JSON-quotes `s`, cut to [`MAX_ECHO_CHARS`] characters (an ellipsis marks the cut).
pub(crate) fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    let cut = chars.next().is_some();
    // Quoting a plain string through serde_json cannot fail; fall back to Debug just in case.
    let mut out = serde_json::to_string(&head).unwrap_or_else(|_| format!("{head:?}"));
    if cut {
        out.push('…');
    }
    out
}

fn mismatch(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {}", describe(got))
}

const BOOL: &str = "a boolean";
const INT: &str = "an integer";
const FLOAT: &str = "a number";
const STRING: &str = "a string";

/// Strings pydantic v2 accepts as booleans (compared case-insensitively, after trimming).
const TRUE_WORDS: [&str; 6] = ["true", "1", "yes", "on", "t", "y"];
const FALSE_WORDS: [&str; 6] = ["false", "0", "no", "off", "f", "n"];

fn to_bool(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        // Only the integers 0 and 1; 0.0/1.0 and other numbers are rejected.
        Value::Number(n) => match n.as_u64() {
            Some(0) if !n.is_f64() => Ok(false),
            Some(1) if !n.is_f64() => Ok(true),
            _ => Err(mismatch(BOOL, value)),
        },
        Value::String(s) => {
            let word = s.trim().to_ascii_lowercase();
            if TRUE_WORDS.contains(&word.as_str()) {
                Ok(true)
            } else if FALSE_WORDS.contains(&word.as_str()) {
                Ok(false)
            } else {
                Err(mismatch(BOOL, value))
            }
        }
        _ => Err(mismatch(BOOL, value)),
    }
}

/// Largest float that converts to `i64` without overflow (2^63 is exactly representable).
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn out_of_range(value: &Value) -> String {
    format!("expected a signed 64-bit integer, got {}", describe(value))
}

fn float_to_int(f: f64, value: &Value) -> Result<i64, String> {
    if !f.is_finite() || f.fract() != 0.0 {
        return Err(mismatch(INT, value));
    }
    if !(-I64_LIMIT..I64_LIMIT).contains(&f) {
        return Err(out_of_range(value));
    }
    // Integral and in range, so the cast is exact.
    Ok(f as i64)
}

fn to_int(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.is_u64() {
                Err(out_of_range(value))
            } else {
                float_to_int(n.as_f64().unwrap_or(f64::NAN), value)
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i);
            }
            // Plain decimals only ("5.0"): no exponents, no "inf"/"nan".
            let decimal = !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
            match t.parse::<f64>() {
                Ok(f) if decimal => float_to_int(f, value),
                _ => Err(mismatch(INT, value)),
            }
        }
        _ => Err(mismatch(INT, value)),
    }
}

fn to_float(value: &Value) -> Result<f64, String> {
    let f = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match f {
        // NaN and infinities are rejected: JSON cannot carry them back out.
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(mismatch(FLOAT, value)),
    }
}

fn to_string(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(mismatch(STRING, &other)),
    }
}

/// `null` maps to `None`; anything else goes through `f`, whose error then mentions `null`.
fn optional<T>(
    value: Value,
    expected: &str,
    f: impl FnOnce(Value) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if value.is_null() {
        return Ok(None);
    }
    f(value)
        .map(Some)
        .map_err(|msg| match msg.strip_prefix("expected ") {
            Some(rest) if rest.starts_with(expected) => {
                format!("expected {expected} or null{}", &rest[expected.len()..])
            }
            _ => msg,
        })
}

fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    to_bool(&read(d)?).map_err(D::Error::custom)
}

pub(crate) fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    optional(read(d)?, INT, |v| to_int(&v)).map_err(D::Error::custom)
}

pub(crate) fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    optional(read(d)?, FLOAT, |v| to_float(&v)).map_err(D::Error::custom)
}

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    to_string(read(d)?).map_err(D::Error::custom)
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional(read(d)?, STRING, to_string).map_err(D::Error::custom)
}

/// `initial_image`: an object, or absent. `null` and `{}` both mean "no image" (upstream
/// treats any falsy value that way); any other type is an error.
pub(crate) fn opt_object_falsy_none<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Value>, D::Error> {
    match read(d)? {
        Value::Null => Ok(None),
        Value::Object(map) if map.is_empty() => Ok(None),
        obj @ Value::Object(_) => Ok(Some(obj)),
        other => Err(D::Error::custom(mismatch("an object or null", &other))),
    }
}

/// A string element of a list, strict (numbers are not coerced).
struct StrictString(String);

impl<'de> Deserialize<'de> for StrictString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d).map(StrictString)
    }
}

/// The value of a JSON object member that must itself be an object.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match read(d)? {
            Value::Object(map) => Ok(StrictObject(map)),
            other => Err(D::Error::custom(mismatch("an object", &other))),
        }
    }
}

/// Generates the `visit_*` methods a composite visitor does not accept, each reporting the
/// offending value the same way the scalar checks do.
macro_rules! reject_scalars {
    ($expected:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(E::custom(mismatch($expected, &Value::Bool(v))))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(mismatch($expected, &Value::from(v))))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(E::custom(mismatch($expected, &Value::from(v))))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(mismatch($expected, &Value::from(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(E::custom(mismatch($expected, &Value::from(v))))
        }
    };
}

const STRING_LIST: &str = "a list of strings";

struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(STRING_LIST)
    }

    reject_scalars!(STRING_LIST);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(mismatch(STRING_LIST, &Value::Null)))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(A::Error::custom(mismatch(
            STRING_LIST,
            &Value::Object(Map::new()),
        )))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictString(s)) = seq.next_element()? {
            out.push(s);
        }
        Ok(out)
    }
}

/// A list of strings; a bare string is not wrapped into a list, numbers are not stringified.
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringListVisitor)
}

const STATE: &str = "an object {kind: string, payload: object} or null";

struct StateVisitor;

impl<'de> Visitor<'de> for StateVisitor {
    type Value = Option<ContinuationStateWire>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(STATE)
    }

    reject_scalars!(STATE);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        Err(A::Error::custom(mismatch(STATE, &Value::Array(Vec::new()))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        let mut payload = None;
        let mut any_key = false;
        while let Some(key) = map.next_key::<String>()? {
            any_key = true;
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<StrictString>()?.0),
                "payload" => payload = Some(map.next_value::<StrictObject>()?.0),
                // Extra keys next to kind/payload carry no meaning; ignore them like
                // every other non-init message does.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !any_key {
            // `{}` is falsy upstream: no state, same as null.
            return Ok(None);
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("kind"))?;
        let payload = payload.ok_or_else(|| A::Error::missing_field("payload"))?;
        Ok(Some(ContinuationStateWire { kind, payload }))
    }
}

/// `continuation_state`: `{kind: string, payload: object}`, `null` or `{}`. Unlike upstream,
/// which silently ignored a malformed state, any other shape is an error.
pub(crate) fn opt_continuation_state<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ContinuationStateWire>, D::Error> {
    d.deserialize_any(StateVisitor)
}

/// Strict string enum used on the client side: case-sensitive, no coercion, and an error
/// that lists the allowed values.
pub(crate) trait WireEnum: Sized + 'static {
    /// Every wire spelling, in declaration order.
    const VARIANTS: &'static [&'static str];
    fn from_wire(s: &str) -> Option<Self>;
}

pub(crate) fn wire_enum<'de, D: Deserializer<'de>, T: WireEnum>(d: D) -> Result<T, D::Error> {
    let value = read(d)?;
    if let Value::String(s) = &value
        && let Some(v) = T::from_wire(s)
    {
        return Ok(v);
    }
    let allowed = T::VARIANTS
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(D::Error::custom(mismatch(
        &format!("one of {allowed}"),
        &value,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bool_words_and_ints() {
        for v in [
            json!(true),
            json!("TRUE"),
            json!(" yes "),
            json!("On"),
            json!(1),
            json!("1"),
        ] {
            assert_eq!(to_bool(&v), Ok(true), "{v}");
        }
        for v in [
            json!(false),
            json!("False"),
            json!("no"),
            json!("OFF"),
            json!(0),
            json!("0"),
        ] {
            assert_eq!(to_bool(&v), Ok(false), "{v}");
        }
        for v in [
            json!(2),
            json!(1.5),
            json!("maybe"),
            json!(null),
            json!([]),
            json!({}),
        ] {
            let err = to_bool(&v).unwrap_err();
            assert!(err.starts_with("expected a boolean, got "), "{err}");
        }
    }

    #[test]
    fn ints() {
        assert_eq!(to_int(&json!(5)), Ok(5));
        assert_eq!(to_int(&json!(-5)), Ok(-5));
        assert_eq!(to_int(&json!(5.0)), Ok(5));
        assert_eq!(to_int(&json!("5")), Ok(5));
        assert_eq!(to_int(&json!(" 7 ")), Ok(7));
        assert_eq!(to_int(&json!("5.0")), Ok(5));
        assert_eq!(
            to_int(&json!(true)),
            Err("expected an integer, got boolean true".to_owned())
        );
        assert_eq!(
            to_int(&json!(5.5)),
            Err("expected an integer, got number 5.5".to_owned())
        );
        assert_eq!(
            to_int(&json!("abc")),
            Err("expected an integer, got string \"abc\"".to_owned())
        );
        assert!(
            to_int(&json!(u64::MAX))
                .unwrap_err()
                .contains("signed 64-bit integer")
        );
        assert!(
            to_int(&json!(1e300))
                .unwrap_err()
                .contains("signed 64-bit integer")
        );
        assert!(to_int(&json!("1e3")).is_err());
        assert!(to_int(&json!("inf")).is_err());
        assert_eq!(to_int(&json!(i64::MIN)), Ok(i64::MIN));
    }

    #[test]
    fn floats() {
        assert_eq!(to_float(&json!(2)), Ok(2.0));
        assert_eq!(to_float(&json!(2.5)), Ok(2.5));
        assert_eq!(to_float(&json!("2.5")), Ok(2.5));
        assert!(to_float(&json!(true)).is_err());
        assert!(to_float(&json!("NaN")).is_err());
        assert!(to_float(&json!("inf")).is_err());
        assert!(to_float(&json!("x")).is_err());
    }

    #[test]
    fn optional_mentions_null() {
        assert_eq!(optional(json!(null), INT, |v| to_int(&v)), Ok(None));
        assert_eq!(
            optional(json!("x"), INT, |v| to_int(&v)),
            Err("expected an integer or null, got string \"x\"".to_owned())
        );
    }

    #[test]
    fn long_strings_are_cut() {
        let long = "a".repeat(1000);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_ECHO_CHARS + 3); // two quotes + ellipsis
        assert!(q.ends_with('…'));
        assert_eq!(quote("short"), "\"short\"");
    }
}

//! The crate's error type: why a client frame was rejected, in words a client author can act on.

use crate::client::ClientMessage;
use std::fmt;

/// Why a client text frame could not be parsed.
///
/// `Display` is a complete, human sentence meant for the `message` of an `invalid_message`
/// error frame; it never contains serde internals or JSON line/column positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame is not JSON at all.
    #[error("message is not valid JSON ({detail})")]
    NotJson {
        /// What went wrong, e.g. `syntax error at character 5`.
        detail: String,
    },
    /// The frame is JSON but not an object.
    #[error("message must be a JSON object with a string \"type\", got {got}")]
    NotObject {
        /// Description of the value that was sent, e.g. `an array`.
        got: String,
    },
    /// The object has no `type` key.
    #[error("message has no \"type\" field; expected one of: {}", KnownTypes)]
    MissingType,
    /// `type` is present but not a string.
    #[error("type: expected a string, got {got}; expected one of: {}", KnownTypes)]
    TypeNotString {
        /// Description of the value that was sent.
        got: String,
    },
    /// `type` names no client message.
    #[error("type: unknown message type {got}; expected one of: {}", KnownTypes)]
    UnknownType {
        /// The quoted type that was sent (cut when long).
        got: String,
    },
    /// `type` names no message of the Dreamverse product protocol (`/ws`).
    #[error("type: unknown message type {got}; expected one of: {}", crate::dreamverse::DREAMVERSE_TYPES.join(", "))]
    UnknownProductType {
        /// The quoted type that was sent (cut when long).
        got: String,
    },
    /// A required field is absent.
    #[error("{message_type}: missing required field \"{field}\"")]
    MissingField {
        /// The message `type`.
        message_type: &'static str,
        /// Dotted path of the missing field, e.g. `prompt` or `continuation_state.kind`.
        field: String,
    },
    /// A field has the wrong type or value.
    #[error("{message_type}.{field}: {reason}")]
    InvalidField {
        /// The message `type`.
        message_type: &'static str,
        /// Dotted path of the field, e.g. `seed` or `curated_prompts[2]`.
        field: String,
        /// What was expected and what was sent.
        reason: String,
    },
}

/// Formats [`ClientMessage::TYPES`] for error messages.
struct KnownTypes;

impl fmt::Display for KnownTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ClientMessage::TYPES.join(", "))
    }
}

impl ParseError {
    /// The offending field's path (`type`, `seed`, `continuation_state.kind`,
    /// `curated_prompts[1]`), when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingType
            | Self::TypeNotString { .. }
            | Self::UnknownType { .. }
            | Self::UnknownProductType { .. } => Some("type"),
            Self::MissingField { field, .. } | Self::InvalidField { field, .. } => Some(field),
            Self::NotJson { .. } | Self::NotObject { .. } => None,
        }
    }

    /// The message `type` the frame declared, when it was a known one.
    pub fn message_type(&self) -> Option<&'static str> {
        match self {
            Self::MissingField { message_type, .. } | Self::InvalidField { message_type, .. } => {
                Some(message_type)
            }
            _ => None,
        }
    }

    pub(crate) fn not_json(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match err.classify() {
            Category::Eof => "unexpected end of input",
            // Io cannot happen when parsing from a string; Data cannot happen for `Value`.
            Category::Syntax | Category::Io | Category::Data => "syntax error",
        };
        let detail = match (err.line(), err.column()) {
            (0, _) => what.to_owned(),
            (1, col) => format!("{what} at character {col}"),
            (line, col) => format!("{what} at line {line}, character {col}"),
        };
        Self::NotJson { detail }
    }

    /// Builds the error for a variant body that failed to deserialize from a JSON value.
    pub(crate) fn from_field_error(
        message_type: &'static str,
        err: &serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let path = err.path().to_string();
        // "." is serde_path_to_error's spelling of the root.
        let prefix = if path == "." { None } else { Some(path) };
        let inner = err.inner().to_string();
        if let Some(name) = missing_field_name(&inner) {
            let field = match prefix {
                Some(p) => format!("{p}.{name}"),
                None => name.to_owned(),
            };
            return Self::MissingField {
                message_type,
                field,
            };
        }
        Self::InvalidField {
            message_type,
            // Only a malformed body as a whole has no path; our bodies are objects, so this
            // is a fallback that still reads well.
            field: prefix.unwrap_or_else(|| "(body)".to_owned()),
            reason: humanize(&inner),
        }
    }
}

/// serde's derive reports absent required fields as "missing field `name`".
fn missing_field_name(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Rewrites the few serde-generated messages that can still reach us (our field
/// deserializers write their own) into the crate's "expected X, got Y" form.
fn humanize(msg: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(lead)
            && let Some((got, expected)) = rest.split_once(", expected ")
        {
            let got = match got {
                "map" => "an object".to_owned(),
                "sequence" => "an array".to_owned(),
                "unit value" => "null".to_owned(),
                other => other.replace('`', "").replace("floating point", "number"),
            };
            return format!("expected {expected}, got {got}");
        }
    }
    msg.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_rewrites_serde_type_errors() {
        assert_eq!(
            humanize("invalid type: integer `5`, expected a string"),
            "expected a string, got integer 5"
        );
        assert_eq!(
            humanize("invalid type: map, expected a sequence"),
            "expected a sequence, got an object"
        );
        assert_eq!(humanize("something else"), "something else");
    }

    #[test]
    fn missing_field_pattern() {
        assert_eq!(missing_field_name("missing field `prompt`"), Some("prompt"));
        assert_eq!(missing_field_name("missing prompt"), None);
    }
}

//! Where API keys come from: an injectable environment, so tests never touch the process
//! environment and a key never has to live in a config file.

use std::collections::BTreeMap;
use std::fmt;

/// A source of environment variables. Providers read their API key through one of these at
/// every request (a rotated key is picked up without a restart).
///
/// Implementations must not print values in their `Debug` output: they hold secrets.
pub trait EnvSource: Send + Sync + fmt::Debug {
    /// The value of `name`, or `None` when it is not set (or not valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment (`std::env::var`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables, for tests and for embedding applications that read keys from
/// elsewhere (a secrets manager). `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MapEnv {
    vars: BTreeMap<String, String>,
}

impl MapEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// This environment plus `name=value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl EnvSource for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are secrets: names only.
        f.debug_struct("MapEnv")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn map_env_debug_hides_values() {
        let env = MapEnv::new().with("GROQ_API_KEY", "sk-very-secret");
        let shown = format!("{env:?}");
        assert!(shown.contains("GROQ_API_KEY"), "{shown}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(env.var("GROQ_API_KEY").as_deref(), Some("sk-very-secret"));
        assert_eq!(env.var("OTHER"), None);
    }
}

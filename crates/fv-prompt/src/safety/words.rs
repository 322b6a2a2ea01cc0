//! A configurable list of blocked words and regular expressions.

use super::{Classification, ClassifierError, SafetyClassifier};
use regex::{Regex, RegexBuilder};

/// Largest compiled size of one expression (the `regex` crate's own default is 10 MiB); a
/// word list of a few thousand entries fits easily.
const REGEX_SIZE_LIMIT: usize = 16 * 1024 * 1024;

/// An entry of the list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WordListError {
    /// A blank word.
    #[error("blocked_words[{index}]: blank")]
    BlankWord {
        /// Position in the list.
        index: usize,
    },
    /// A pattern that does not compile.
    #[error("blocked_patterns[{index}]: {message}")]
    BadPattern {
        /// Position in the list.
        index: usize,
        /// The regex error.
        message: String,
    },
    /// The words together are too many to compile.
    #[error("blocked_words: {message}")]
    TooManyWords {
        /// The regex error.
        message: String,
    },
}

/// Blocks a prompt that contains a listed word or phrase (case-insensitive, whole words: a
/// word matches only between non-word characters or the text's ends; spaces inside a phrase
/// match any whitespace) or matches a listed regular expression (`regex` crate syntax, as
/// written: add `(?i)` for case-insensitive).
#[derive(Debug, Clone)]
pub struct WordListClassifier {
    words: Vec<String>,
    word_regex: Option<Regex>,
    patterns: Vec<Regex>,
}

impl WordListClassifier {
    /// A classifier from `words` and `patterns`. Errors name the entry.
    pub fn new(words: &[String], patterns: &[String]) -> Result<Self, WordListError> {
        let mut alternatives = Vec::with_capacity(words.len());
        for (index, word) in words.iter().enumerate() {
            let parts: Vec<String> = word.split_whitespace().map(regex::escape).collect();
            if parts.is_empty() {
                return Err(WordListError::BlankWord { index });
            }
            alternatives.push(parts.join(r"\s+"));
        }
        let word_regex = if alternatives.is_empty() {
            None
        } else {
            // No look-around in `regex`: match the boundary characters themselves.
            let source = format!(r"(?:^|\W)({})(?:\W|$)", alternatives.join("|"));
            let compiled = RegexBuilder::new(&source)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| WordListError::TooManyWords {
                    message: e.to_string(),
                })?;
            Some(compiled)
        };
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                RegexBuilder::new(p)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| WordListError::BadPattern {
                        index,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            words: words.iter().map(|w| w.trim().to_owned()).collect(),
            word_regex,
            patterns,
        })
    }

    /// Number of words and patterns.
    pub fn len(&self) -> usize {
        self.words.len() + self.patterns.len()
    }

    /// Whether the list is empty (it then allows everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SafetyClassifier for WordListClassifier {
    fn name(&self) -> &str {
        "word_list"
    }

    fn classify(&self, text: &str) -> Result<Classification, ClassifierError> {
        if let Some(found) = self
            .word_regex
            .as_ref()
            .and_then(|r| r.captures(text))
            .and_then(|c| c.get(1))
        {
            return Ok(Classification {
                blocked: true,
                label: Some("blocked_word".into()),
                score: None,
                detail: Some(format!("blocked word {:?}", found.as_str())),
            });
        }
        if let Some(index) = self.patterns.iter().position(|p| p.is_match(text)) {
            return Ok(Classification {
                blocked: true,
                label: Some("blocked_pattern".into()),
                score: None,
                detail: Some(format!("blocked_patterns[{index}] matched")),
            });
        }
        Ok(Classification {
            blocked: false,
            label: None,
            score: None,
            detail: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn list(words: &[&str], patterns: &[&str]) -> WordListClassifier {
        let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        WordListClassifier::new(&w, &p).unwrap()
    }

    fn blocked(c: &WordListClassifier, text: &str) -> bool {
        c.classify(text).unwrap().blocked
    }

    #[test]
    fn words_match_whole_words_case_insensitively() {
        let c = list(&["gore", "blow up", "c++"], &[]);
        assert!(blocked(&c, "Gore everywhere"));
        assert!(blocked(&c, "a scene with GORE."));
        assert!(blocked(&c, "they BLOW\n  up the bridge"));
        assert!(blocked(&c, "written in c++"));
        assert!(!blocked(&c, "a gorge at sunset"));
        assert!(!blocked(&c, "the gorey details"));
        assert!(!blocked(&c, "blowup doll"));
        assert!(!blocked(&c, ""));
        let d = c.classify("so much gore").unwrap();
        assert_eq!(d.detail.as_deref(), Some("blocked word \"gore\""));
    }

    #[test]
    fn patterns_match_as_written() {
        let c = list(&[], &[r"(?i)kill\w*", r"\d{3}-\d{4}"]);
        assert!(blocked(&c, "KILLING spree"));
        assert!(blocked(&c, "call 555-1234"));
        assert!(!blocked(&c, "a calm lake"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn bad_entries_are_named() {
        let err = WordListClassifier::new(&["ok".into(), "  ".into()], &[]).unwrap_err();
        assert_eq!(err.to_string(), "blocked_words[1]: blank");
        let err = WordListClassifier::new(&[], &["fine".into(), "(unclosed".into()]).unwrap_err();
        assert!(
            err.to_string().starts_with("blocked_patterns[1]: "),
            "{err}"
        );
        assert!(list(&[], &[]).is_empty());
    }
}

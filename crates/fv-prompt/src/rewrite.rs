//! Turning an LLM's rewrite answer into a list of prompts (protocol-facts §15).

use crate::enhancer::CallOptions;

/// Prompts a rewrite returns when [`RewriteOptions::count`] is not set (FastVideo's default).
pub const DEFAULT_REWRITE_COUNT: usize = 3;

/// Options of [`PromptEnhancer::rewrite`](crate::PromptEnhancer::rewrite).
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteOptions {
    /// Prompts wanted; the answer is cut to `max(1, count)` lines (default 3).
    pub count: usize,
    /// Existing prompts to rewrite with the seed as the instruction (Dreamverse's
    /// `prompt_window_prompts`). Empty: write a new set from the seed alone. Picks the
    /// rewrite-window system prompt instead of the rewrite one.
    pub window: Vec<String>,
    /// Sampling temperature for this call; `None` uses the enhancer's rewrite temperature.
    /// (FastVideo ignores its `RewriteOptions.temperature`; here it is used.)
    pub temperature: Option<f32>,
    /// Try first the providers whose model is this (Dreamverse's per-session
    /// `rewrite_model`); `None` uses the enhancer's rewrite model.
    pub model: Option<String>,
    /// System prompt for this call instead of the configured one (Dreamverse's per-session
    /// `rewrite_*_system_prompt` overrides). Blank counts as unset.
    pub system_prompt: Option<String>,
    /// Latency budget and other per-call settings.
    pub call: CallOptions,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        Self {
            count: DEFAULT_REWRITE_COUNT,
            window: Vec::new(),
            temperature: None,
            model: None,
            system_prompt: None,
            call: CallOptions::default(),
        }
    }
}

impl RewriteOptions {
    /// Options asking for `count` prompts.
    pub fn with_count(count: usize) -> Self {
        Self {
            count,
            ..Self::default()
        }
    }
}

/// Splits an LLM answer into prompts: lines stripped, blank lines dropped, any leading run of
/// bullets (`-`, `*`, `•`) or numbering (`12.`, `12)`) removed with the whitespace after each
/// marker, lines empty after that dropped, the first `max(1, count)` kept.
///
/// The rule is FastVideo's and literal: a line such as `1.5 metres of snow` loses its `1.`.
pub fn split_rewrite(text: &str, count: usize) -> Vec<String> {
    text.split(is_line_break)
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(strip_markers)
        .filter(|line| !line.is_empty())
        .take(count.max(1))
        .map(str::to_owned)
        .collect()
}

/// Python's `str.splitlines` boundaries (`\r\n` yields an extra blank line, dropped anyway).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `line` without its leading run of list markers.
fn strip_markers(line: &str) -> &str {
    let mut rest = line;
    loop {
        let after = if let Some(r) = rest.strip_prefix(['-', '*', '•']) {
            r
        } else {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            match rest[digits..].strip_prefix(['.', ')']) {
                Some(r) if digits > 0 => r,
                _ => return rest,
            }
        };
        rest = after.trim_start();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let text = "\n 1. A fox runs\n\n- 2) The fox jumps \n* • -   \n•The fox sleeps\n12) Dawn\n";
        assert_eq!(
            split_rewrite(text, 3),
            vec!["A fox runs", "The fox jumps", "The fox sleeps"]
        );
        assert_eq!(split_rewrite(text, 10).len(), 4);
        assert_eq!(split_rewrite(text, 0), vec!["A fox runs"]);
        assert_eq!(split_rewrite("", 3), Vec::<String>::new());
        assert_eq!(split_rewrite("- \n 3.\n*", 3), Vec::<String>::new());
        assert_eq!(
            split_rewrite("1.5 metres of snow", 3),
            vec!["5 metres of snow"]
        );
        // A number without a marker, or a marker in the middle, is kept.
        assert_eq!(
            split_rewrite("3 foxes - running\nA.B", 3),
            vec!["3 foxes - running", "A.B"]
        );
        assert_eq!(
            split_rewrite("a\r\nb\rc\u{2028}d", 9),
            vec!["a", "b", "c", "d"]
        );
    }

    /// A line as an LLM might write it (optional markers, text, surrounding spaces), with the
    /// text the split must recover from it.
    fn marked_line() -> impl Strategy<Value = (String, String)> {
        let marker = prop_oneof![
            Just("-".to_owned()),
            Just("*".to_owned()),
            Just("•".to_owned()),
            (0u32..200).prop_map(|n| format!("{n}.")),
            (0u32..200).prop_map(|n| format!("{n})")),
        ];
        (
            " {0,3}",
            prop::collection::vec((marker, " {0,2}"), 0..3),
            "[a-zA-Z][a-zA-Z ,']{0,30}",
            " {0,3}",
        )
            .prop_map(|(lead, markers, body, trail)| {
                let m: String = markers.into_iter().map(|(m, s)| m + &s).collect();
                (format!("{lead}{m}{body}{trail}"), body.trim().to_owned())
            })
    }

    proptest! {
        #[test]
        fn keeps_at_most_max_one_count_non_empty_unmarked_lines(
            text in "(?s).{0,400}",
            count in 0usize..8,
        ) {
            let out = split_rewrite(&text, count);
            prop_assert!(out.len() <= count.max(1));
            for line in &out {
                prop_assert!(!line.is_empty());
                prop_assert_eq!(line.trim(), line.as_str());
                prop_assert!(!line.starts_with(['-', '*', '•']));
                prop_assert_eq!(strip_markers(line), line.as_str());
            }
        }

        #[test]
        fn recovers_the_text_of_marked_lines_in_order(
            lines in prop::collection::vec(marked_line(), 0..10),
            blanks in prop::collection::vec(" {0,4}", 0..10),
            count in 0usize..12,
        ) {
            // Interleave blank lines; they must be dropped.
            let mut text = String::new();
            for (i, (line, _)) in lines.iter().enumerate() {
                text.push_str(line);
                text.push('\n');
                if let Some(b) = blanks.get(i) {
                    text.push_str(b);
                    text.push('\n');
                }
            }
            let expected: Vec<String> = lines
                .iter()
                .map(|(_, body)| body.clone())
                .take(count.max(1))
                .collect();
            prop_assert_eq!(split_rewrite(&text, count), expected);
        }
    }
}

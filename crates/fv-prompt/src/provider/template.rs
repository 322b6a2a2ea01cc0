//! An offline provider: deterministic prompts from templates and the input, no network, no
//! keys. The embedded default, and the last fallback when the LLMs are down.

use super::{CompletionRequest, LlmProvider, ProviderError, Role, Task};
use async_trait::async_trait;

/// Name of [`TemplateProvider`] in results and metrics.
pub const TEMPLATE_PROVIDER_NAME: &str = "template";
/// Model name [`TemplateProvider`] reports.
pub const TEMPLATE_MODEL: &str = "template-v1";

/// Prompts this long (in words) are already detailed; enhance leaves them as they are.
const DETAILED_WORDS: usize = 60;

/// Descriptor sets for [`TemplateProvider::enhance`]; one is picked by a hash of the prompt
/// so different prompts read differently while the same prompt always gets the same set.
const STYLES: [[&str; 4]; 4] = [
    [
        "cinematic shot",
        "soft natural lighting",
        "smooth camera motion",
        "rich fine detail",
    ],
    [
        "wide establishing view",
        "warm golden-hour light",
        "gentle dolly movement",
        "vivid colors",
    ],
    [
        "documentary feel",
        "diffused daylight",
        "steady tracking shot",
        "realistic textures",
    ],
    [
        "dramatic composition",
        "moody volumetric light",
        "slow push-in",
        "high detail",
    ],
];

/// Story beats for [`TemplateProvider::continue_from`], chosen by how many prompts came
/// before, so a story keeps moving.
const BEATS: [&str; 6] = [
    "the camera slowly pushes in as the moment unfolds",
    "the camera pans to reveal more of the surroundings",
    "the light shifts as time moves forward",
    "a closer view picks out the small details",
    "the camera pulls back to a wide view of the scene",
    "the motion carries on from a new angle",
];

/// Shots for a new set of prompts from a seed ([`TemplateProvider::rewrite`]).
const SHOTS: [&str; 6] = [
    "wide establishing shot",
    "medium shot following the action",
    "close-up on the key detail",
    "tracking shot as the scene develops",
    "low-angle view with a sense of scale",
    "final wide shot as the scene resolves",
];

/// The opening used when there is nothing to continue from.
const OPENING: &str = "A slow establishing shot of an open landscape at dawn, soft natural lighting, smooth camera motion";

/// Deterministic offline prompt writer. It answers from [`CompletionRequest::task`]:
/// enhance appends style descriptors, auto-extend continues the last prompt with the next
/// story beat, rewrite writes `count` numbered lines. Same input, same output, always.
#[derive(Debug, Clone, Default)]
pub struct TemplateProvider {
    _private: (),
}

impl TemplateProvider {
    /// The provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// `prompt` with four style descriptors appended (those it already names are skipped);
    /// prompts of 60 words or more are returned cleaned but otherwise unchanged.
    pub fn enhance(prompt: &str) -> String {
        let core = clean(prompt);
        if core.is_empty() {
            return String::new();
        }
        if core.split_whitespace().count() >= DETAILED_WORDS {
            return sentence(&core);
        }
        let lower = core.to_lowercase();
        let style = &STYLES[(fnv1a(&lower) % STYLES.len() as u64) as usize];
        let mut out = core;
        for d in style.iter().filter(|d| !lower.contains(*d)) {
            out.push_str(", ");
            out.push_str(d);
        }
        sentence(&out)
    }

    /// The next prompt after `prior` (oldest first): the subject of the last non-blank prompt
    /// with the story beat for position `prior.len()`. A fixed opening when there is none.
    pub fn continue_from(prior: &[String]) -> String {
        let Some(last) = prior.iter().rev().map(|p| clean(p)).find(|p| !p.is_empty()) else {
            return sentence(OPENING);
        };
        // The first clause is the subject; descriptors after it are dropped so repeated
        // continuations do not grow.
        let subject = last.split(',').next().unwrap_or(&last).trim();
        let beat = BEATS[prior.len() % BEATS.len()];
        sentence(&format!("{subject}, {beat}"))
    }

    /// `count` (at least 1) prompts. With an empty `window`, the seed through a sequence of
    /// shots; otherwise each window prompt (cycling) with the seed applied as an
    /// instruction.
    pub fn rewrite(seed: &str, window: &[String], count: usize) -> Vec<String> {
        let n = count.max(1);
        let instruction = clean(seed);
        let window: Vec<String> = window
            .iter()
            .map(|p| clean(p))
            .filter(|p| !p.is_empty())
            .collect();
        (0..n)
            .map(|i| {
                if window.is_empty() {
                    let shot = SHOTS[i % SHOTS.len()];
                    if i < SHOTS.len() {
                        sentence(&format!("{instruction}, {shot}"))
                    } else {
                        sentence(&format!("{instruction}, {shot}, part {}", i + 1))
                    }
                } else {
                    let base = &window[i % window.len()];
                    if instruction.is_empty()
                        || base.to_lowercase().contains(&instruction.to_lowercase())
                    {
                        sentence(base)
                    } else {
                        sentence(&format!("{base}, {}", lower_first(&instruction)))
                    }
                }
            })
            .collect()
    }
}

#[async_trait]
impl LlmProvider for TemplateProvider {
    fn name(&self) -> &str {
        TEMPLATE_PROVIDER_NAME
    }

    fn model(&self) -> &str {
        TEMPLATE_MODEL
    }

    fn is_offline(&self) -> bool {
        true
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<String, ProviderError> {
        Ok(match &request.task {
            Task::Enhance { prompt } => Self::enhance(prompt),
            Task::AutoExtend { prior_prompts } => Self::continue_from(prior_prompts),
            Task::Rewrite {
                seed,
                window,
                count,
            } => Self::rewrite(seed, window, *count)
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{}. {p}", i + 1))
                .collect::<Vec<_>>()
                .join("\n"),
            // Anything else: treat the last user message as a prompt to enhance.
            _ => {
                let user = request
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.as_str())
                    .unwrap_or("");
                Self::enhance(user)
            }
        })
    }
}

/// Whitespace collapsed, trimmed, without trailing sentence punctuation.
fn clean(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .trim_end_matches(['.', ',', ';', ':', '!'])
        .trim()
        .to_owned()
}

/// Capitalised first letter and a final period.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_lowercase(), chars.as_str()),
        None => String::new(),
    }
}

/// FNV-1a: a stable hash (std's hashers may change between releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enhance_is_deterministic_keeps_the_prompt_and_adds_detail() {
        let a = TemplateProvider::enhance("a red fox in the snow");
        assert_eq!(a, TemplateProvider::enhance("a red fox in the snow"));
        assert!(a.starts_with("A red fox in the snow, "), "{a}");
        assert!(a.ends_with('.'));
        assert!(a.split(", ").count() >= 4, "{a}");
        // Descriptors already present are not repeated.
        let b = TemplateProvider::enhance(
            "cinematic shot, wide establishing view, documentary feel, dramatic composition of a harbor",
        )
        .to_lowercase();
        for d in STYLES.iter().map(|s| s[0]) {
            assert_eq!(b.matches(d).count(), 1, "{b}");
        }
        // Long prompts are left alone.
        let long = vec!["word"; 70].join(" ");
        assert_eq!(TemplateProvider::enhance(&long), sentence(&long));
        assert_eq!(TemplateProvider::enhance("  \n "), "");
    }

    #[test]
    fn continuation_moves_the_story_without_growing() {
        let mut prompts = vec!["A lighthouse on a cliff, stormy sea.".to_owned()];
        for _ in 0..8 {
            let next = TemplateProvider::continue_from(&prompts);
            assert!(next.starts_with("A lighthouse on a cliff, "), "{next}");
            assert!(next.len() < 120, "{next}");
            assert_ne!(Some(&next), prompts.last());
            prompts.push(next);
        }
        assert!(TemplateProvider::continue_from(&[]).starts_with("A slow establishing shot"));
        assert_eq!(
            TemplateProvider::continue_from(&["".into(), "  ".into()]),
            TemplateProvider::continue_from(&[])
        );
    }

    #[test]
    fn rewrite_writes_count_prompts_from_a_seed_or_a_window() {
        let fresh = TemplateProvider::rewrite("a glass whale above a neon forest", &[], 8);
        assert_eq!(fresh.len(), 8);
        assert!(
            fresh
                .iter()
                .all(|p| p.starts_with("A glass whale above a neon forest, "))
        );
        let unique: std::collections::BTreeSet<_> = fresh.iter().collect();
        assert_eq!(unique.len(), 8);
        let window = vec!["A fox runs.".to_owned(), "The fox sleeps.".to_owned()];
        let edited = TemplateProvider::rewrite("Make it night time", &window, 3);
        assert_eq!(
            edited,
            vec![
                "A fox runs, make it night time.",
                "The fox sleeps, make it night time.",
                "A fox runs, make it night time.",
            ]
        );
        assert_eq!(TemplateProvider::rewrite("x", &[], 0).len(), 1);
    }
}

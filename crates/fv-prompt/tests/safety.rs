//! Safety filter: a real fastText model trained here with the same crate that loads it, the
//! word list, the Unavailable policy, `first_blocked`.

#![allow(clippy::unwrap_used)]

use fasttext::FastText;
use fasttext::args::Args;
use fv_prompt::safety::ModelState;
use fv_prompt::{
    FastTextClassifier, PromptSafetyFilter, SafetyClassifier, SafetyConfig, SafetyDecision,
    UnavailablePolicy, WordListClassifier,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const UNSAFE: [&str; 8] = [
    "gore", "blood", "massacre", "kill", "torture", "weapon", "corpse", "violent",
];
const SAFE: [&str; 8] = [
    "sunset",
    "ocean",
    "fox",
    "meadow",
    "flowers",
    "snow",
    "lighthouse",
    "forest",
];
const FILLER: [&str; 8] = [
    "a", "the", "scene", "with", "shot", "of", "camera", "slowly",
];

/// Trains a two-label supervised model (`unsafe` / `safe`) into `dir` and returns its path.
fn train_model(dir: &Path) -> PathBuf {
    let mut lines = String::new();
    for i in 0..300 {
        for (label, words) in [("unsafe", &UNSAFE), ("safe", &SAFE)] {
            lines.push_str(&format!(
                "__label__{label} {} {} {} {} {}\n",
                FILLER[i % 8],
                words[i % 8],
                words[(i * 3 + 1) % 8],
                FILLER[(i + 2) % 8],
                words[(i * 5 + 2) % 8]
            ));
        }
    }
    let input = dir.join("train.txt");
    std::fs::write(&input, lines).unwrap();
    let mut args = Args::default();
    args.apply_supervised_defaults();
    args.input = input;
    args.dim = 8;
    args.epoch = 30;
    args.lr = 0.5;
    args.thread = 1;
    args.verbose = 0;
    let model = FastText::train(args).expect("train");
    let path = dir.join("safety.bin");
    model.save_model(&path).expect("save");
    path
}

fn trained() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = train_model(dir.path());
    (dir, path)
}

fn filter(c: impl SafetyClassifier + 'static, policy: UnavailablePolicy) -> PromptSafetyFilter {
    PromptSafetyFilter::new(vec![Arc::new(c)], policy)
}

#[test]
fn fasttext_blocks_the_unsafe_label_and_allows_the_rest() {
    let (_dir, path) = trained();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 64 * 1024, "tiny model: {size} bytes");
    let f = filter(FastTextClassifier::new(&path), UnavailablePolicy::Allow);
    let v = f.check_blocking("a violent massacre with blood and gore");
    assert_eq!(v.decision, SafetyDecision::Block, "{v:?}");
    assert_eq!(v.classifier.as_deref(), Some("fasttext"));
    // `__label__` is stripped.
    assert_eq!(v.label.as_deref(), Some("unsafe"));
    assert!(v.score.unwrap() >= 0.5);
    assert!(f.blocks(&v));
    let v = f.check_blocking("a fox in the snow at sunset by the lighthouse");
    assert_eq!(v.decision, SafetyDecision::Allow, "{v:?}");
    assert!(!f.blocks(&v));
}

#[test]
fn fasttext_threshold_and_label_are_configurable() {
    let (_dir, path) = trained();
    let text = "the weapon of torture";
    let score = FastTextClassifier::new(&path)
        .classify(text)
        .unwrap()
        .score
        .unwrap();
    let at = FastTextClassifier::new(&path).with_threshold(score);
    assert!(
        at.classify(text).unwrap().blocked,
        "score == threshold blocks"
    );
    let above = FastTextClassifier::new(&path).with_threshold(score + 1e-3);
    assert!(
        !above.classify(text).unwrap().blocked,
        "below the threshold allows"
    );
    // Blocking on the other label flips the decisions.
    let safe_blocks = FastTextClassifier::new(&path).with_unsafe_label("__label__safe");
    assert!(
        safe_blocks
            .classify("ocean meadow flowers")
            .unwrap()
            .blocked
    );
    assert!(!safe_blocks.classify(text).unwrap().blocked);
}

#[test]
fn fasttext_reads_newlines_as_spaces() {
    let (_dir, path) = trained();
    let c = FastTextClassifier::new(&path);
    let one = c.classify("blood and gore in a violent scene").unwrap();
    let many = c
        .classify("blood\nand gore\r\nin a violent\nscene")
        .unwrap();
    assert_eq!(one, many);
    assert!(many.blocked);
    // Nothing to classify: nothing to block.
    let blank = c.classify("\n \n").unwrap();
    assert!(!blank.blocked);
}

#[test]
fn fasttext_loads_lazily_once_and_a_failed_load_is_not_retried() {
    let (dir, path) = trained();
    let lazy = FastTextClassifier::new(&path);
    assert_eq!(lazy.state(), ModelState::NotLoaded);
    assert!(!lazy.is_ready());
    lazy.classify("a fox").unwrap();
    assert_eq!(lazy.state(), ModelState::Loaded);

    let later = dir.path().join("later.bin");
    let c = Arc::new(FastTextClassifier::new(&later));
    let f = PromptSafetyFilter::new(vec![c.clone()], UnavailablePolicy::Allow);
    let v = f.check_blocking("blood and gore");
    assert_eq!(v.decision, SafetyDecision::Unavailable);
    assert!(v.reason.contains("later.bin"), "{}", v.reason);
    assert!(matches!(c.state(), ModelState::Failed(_)));
    // The file appears; the failed load is still not retried.
    std::fs::copy(&path, &later).unwrap();
    assert_eq!(
        f.check_blocking("blood and gore").decision,
        SafetyDecision::Unavailable
    );
    assert!(matches!(c.state(), ModelState::Failed(_)));
}

#[test]
fn fasttext_corrupt_or_truncated_model_is_unavailable_not_a_panic() {
    let (dir, path) = trained();
    let bytes = std::fs::read(&path).unwrap();
    let cases = [
        (
            "garbage.bin",
            b"this is not a fastText model at all".to_vec(),
        ),
        ("truncated.bin", bytes[..bytes.len() / 2].to_vec()),
        ("header-only.bin", bytes[..12].to_vec()),
        ("empty.bin", Vec::new()),
    ];
    for (name, content) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let c = FastTextClassifier::new(&p);
        assert!(c.prepare().is_err(), "{name} loaded");
        let f = filter(c, UnavailablePolicy::Allow);
        assert_eq!(
            f.check_blocking("blood").decision,
            SafetyDecision::Unavailable,
            "{name}"
        );
    }
}

#[test]
fn fasttext_model_without_labels_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "fox snow ocean meadow forest sunset\n".repeat(50)).unwrap();
    // Unsupervised (skip-gram) vectors: a valid fastText file without labels.
    let args = Args {
        input,
        dim: 4,
        epoch: 1,
        min_count: 1,
        bucket: 100,
        thread: 1,
        verbose: 0,
        ..Args::default()
    };
    let path = dir.path().join("vectors.bin");
    FastText::train(args).unwrap().save_model(&path).unwrap();
    let err = FastTextClassifier::new(&path).prepare().unwrap_err();
    assert!(err.0.contains("no labels"), "{err}");
}

#[test]
fn unavailable_policy_allow_or_block() {
    let missing = || FastTextClassifier::new("/nonexistent/fv-prompt/model.bin");
    let allow = filter(missing(), UnavailablePolicy::Allow);
    let v = allow.check_blocking("anything");
    assert_eq!(v.decision, SafetyDecision::Unavailable);
    assert!(!allow.blocks(&v), "FastVideo: unavailable means allow");
    let block = filter(missing(), UnavailablePolicy::Block);
    let v = block.check_blocking("anything");
    assert!(block.blocks(&v), "fail closed");
    let hit = block
        .first_blocked_blocking(&["a".into(), "b".into()])
        .unwrap();
    assert_eq!(hit.index, 0);
}

#[test]
fn disabled_filter_is_unavailable_and_never_blocks() {
    let f = PromptSafetyFilter::disabled();
    assert!(!f.is_enabled());
    let v = f.check_blocking("blood and gore");
    assert_eq!(v.decision, SafetyDecision::Unavailable);
    assert!(!f.blocks(&v));
    let f = PromptSafetyFilter::new(vec![], UnavailablePolicy::Block);
    assert!(!f.blocks(&f.check_blocking("x")));
    assert!(f.first_blocked_blocking(&["x".into()]).is_none());
}

#[test]
fn a_blocking_classifier_wins_over_an_unavailable_one() {
    let words = WordListClassifier::new(&["gore".into()], &[]).unwrap();
    let f = PromptSafetyFilter::new(
        vec![
            Arc::new(FastTextClassifier::new("/nonexistent/model.bin")),
            Arc::new(words),
        ],
        UnavailablePolicy::Allow,
    );
    let v = f.check_blocking("so much gore");
    assert_eq!(v.decision, SafetyDecision::Block);
    assert_eq!(v.classifier.as_deref(), Some("word_list"));
    assert_eq!(
        f.check_blocking("a fox").decision,
        SafetyDecision::Unavailable
    );
}

#[tokio::test]
async fn first_blocked_returns_the_first_blocked_prompt_and_its_index() {
    let (_dir, path) = trained();
    let cfg = SafetyConfig {
        enabled: true,
        classifier_path: Some(path.display().to_string()),
        blocked_words: vec!["nuclear launch".into()],
        ..SafetyConfig::default()
    };
    let f = PromptSafetyFilter::from_config(&cfg).unwrap();
    let prompts: Vec<String> = [
        "a fox in the snow",
        "the NUCLEAR   launch sequence",
        "blood and gore and a corpse",
    ]
    .map(String::from)
    .to_vec();
    let hit = f.first_blocked(&prompts).await.unwrap();
    assert_eq!(
        (hit.index, hit.prompt.as_str()),
        (1, "the NUCLEAR   launch sequence")
    );
    assert_eq!(hit.verdict.classifier.as_deref(), Some("word_list"));
    let hit = f.first_blocked(&prompts[2..]).await.unwrap();
    assert_eq!(hit.index, 0);
    assert_eq!(hit.verdict.classifier.as_deref(), Some("fasttext"));
    assert!(f.first_blocked(&prompts[..1]).await.is_none());
    assert!(f.first_blocked(&[]).await.is_none());
}

#[tokio::test]
async fn async_check_and_preload_load_the_model_off_the_runtime() {
    let (_dir, path) = trained();
    let c = Arc::new(FastTextClassifier::new(&path));
    let f = PromptSafetyFilter::new(vec![c.clone()], UnavailablePolicy::Allow);
    assert_eq!(f.check("a massacre").await.decision, SafetyDecision::Block);
    assert_eq!(c.state(), ModelState::Loaded);

    let c2 = Arc::new(FastTextClassifier::new(&path));
    let f2 = PromptSafetyFilter::new(vec![c2.clone()], UnavailablePolicy::Allow);
    f2.preload().await.unwrap();
    assert_eq!(c2.state(), ModelState::Loaded);
    let bad = PromptSafetyFilter::new(
        vec![Arc::new(FastTextClassifier::new("/nonexistent/x.bin"))],
        UnavailablePolicy::Allow,
    );
    assert!(bad.preload().await.is_err());
}

#[test]
fn concurrent_first_checks_share_one_load() {
    let (_dir, path) = trained();
    let f = filter(FastTextClassifier::new(&path), UnavailablePolicy::Allow);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let f = f.clone();
                s.spawn(move || {
                    let text = if i % 2 == 0 {
                        "gore and blood"
                    } else {
                        "a fox at sunset"
                    };
                    f.check_blocking(text).decision
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let want = if i % 2 == 0 {
                SafetyDecision::Block
            } else {
                SafetyDecision::Allow
            };
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

#[test]
fn safety_decisions_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let words = WordListClassifier::new(&["gore".into()], &[]).unwrap();
        let f = filter(words, UnavailablePolicy::Allow);
        f.check_blocking("gore");
        f.check_blocking("fox");
        f.check_blocking("fox");
        PromptSafetyFilter::disabled().check_blocking("x");
    });
    let text = handle.render();
    for line in [
        r#"fv_prompt_safety_decisions_total{decision="block"} 1"#,
        r#"fv_prompt_safety_decisions_total{decision="allow"} 2"#,
        r#"fv_prompt_safety_decisions_total{decision="unavailable"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

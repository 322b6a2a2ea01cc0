//! System prompts from a directory: defaults, overrides, reload on demand and on change.

#![allow(clippy::unwrap_used)]

mod support;

use fv_prompt::{
    EnhancerSettings, MAX_SYSTEM_PROMPT_BYTES, PromptEnhancer, PromptError, SystemPromptError,
    SystemPromptKind, TemplateProvider,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{Behavior, FakeLlm, within};

fn offline_in(dir: &Path) -> PromptEnhancer {
    PromptEnhancer::with_system_prompt_dir(
        vec![Arc::new(TemplateProvider::new())],
        EnhancerSettings::default(),
        dir,
    )
    .unwrap()
}

fn write(dir: &Path, kind: SystemPromptKind, text: &[u8]) {
    std::fs::write(dir.join(kind.file_name()), text).unwrap();
}

/// Waits (bounded) until the prompt of `kind` reads `want`. A poll may catch a file between
/// truncate and write, so one reload notification is not enough.
async fn wait_for(
    e: &PromptEnhancer,
    reloads: &mut tokio::sync::watch::Receiver<u64>,
    kind: SystemPromptKind,
    want: &str,
) {
    within("reload", async {
        while e.system_prompts().get(kind) != want {
            reloads.changed().await.unwrap();
        }
    })
    .await;
}

#[test]
fn without_a_directory_the_builtin_prompts_are_used() {
    let e = PromptEnhancer::offline();
    for kind in SystemPromptKind::ALL {
        assert_eq!(e.system_prompts().get(kind), kind.default_text());
        assert_eq!(e.system_prompts().source(kind), None);
    }
    // Nothing to re-read.
    e.reload_system_prompts().unwrap();
    assert_eq!(e.reload_count(), 0);
}

#[test]
fn files_override_defaults_and_missing_or_blank_files_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        SystemPromptKind::Enhance,
        b"  Custom enhance rules.\n",
    );
    write(dir.path(), SystemPromptKind::AutoExtend, b" \n\t\n");
    let e = offline_in(dir.path());
    let p = e.system_prompts();
    assert_eq!(p.get(SystemPromptKind::Enhance), "Custom enhance rules.");
    assert_eq!(
        p.source(SystemPromptKind::Enhance),
        Some(dir.path().join("enhance.txt").as_path())
    );
    assert_eq!(
        p.get(SystemPromptKind::AutoExtend),
        SystemPromptKind::AutoExtend.default_text()
    );
    assert_eq!(p.source(SystemPromptKind::AutoExtend), None);
    assert_eq!(
        p.get(SystemPromptKind::Rewrite),
        SystemPromptKind::Rewrite.default_text()
    );
}

#[test]
fn a_missing_directory_or_a_bad_file_is_an_error_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    let err = PromptEnhancer::with_system_prompt_dir(
        vec![Arc::new(TemplateProvider::new())],
        EnhancerSettings::default(),
        dir.path().join("nope"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PromptError::SystemPrompt(SystemPromptError::BadDir { .. })
        ),
        "{err:?}"
    );
    write(dir.path(), SystemPromptKind::Rewrite, &[0xff, 0xfe, b'x']);
    let err = PromptEnhancer::with_system_prompt_dir(
        vec![Arc::new(TemplateProvider::new())],
        EnhancerSettings::default(),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("rewrite.txt"), "{err}");
}

#[test]
fn reload_system_prompts_rereads_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    write(dir.path(), SystemPromptKind::Rewrite, b"Rewrite v2");
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Rewrite),
        SystemPromptKind::Rewrite.default_text(),
        "read at construction only"
    );
    e.reload_system_prompts().unwrap();
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Rewrite),
        "Rewrite v2"
    );
    assert_eq!(e.reload_count(), 1);
    std::fs::remove_file(dir.path().join("rewrite.txt")).unwrap();
    e.reload_system_prompts().unwrap();
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Rewrite),
        SystemPromptKind::Rewrite.default_text()
    );
}

#[test]
fn a_failed_reload_keeps_the_previous_prompts() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SystemPromptKind::Enhance, b"Good prompt");
    let e = offline_in(dir.path());
    // Exactly at the limit is fine; one byte more is not.
    write(
        dir.path(),
        SystemPromptKind::Enhance,
        &vec![b'a'; MAX_SYSTEM_PROMPT_BYTES],
    );
    e.reload_system_prompts().unwrap();
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Enhance).len(),
        MAX_SYSTEM_PROMPT_BYTES
    );
    write(dir.path(), SystemPromptKind::Enhance, b"Good again");
    e.reload_system_prompts().unwrap();
    write(
        dir.path(),
        SystemPromptKind::Enhance,
        &vec![b'a'; MAX_SYSTEM_PROMPT_BYTES + 1],
    );
    let err = e.reload_system_prompts().unwrap_err();
    assert!(
        matches!(
            err,
            PromptError::SystemPrompt(SystemPromptError::TooLarge { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Enhance),
        "Good again"
    );
    write(dir.path(), SystemPromptKind::Enhance, &[b'o', b'k', 0xc3]);
    assert!(e.reload_system_prompts().is_err());
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Enhance),
        "Good again"
    );
}

#[test]
fn check_system_prompts_rereads_only_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    assert!(!e.check_system_prompts().unwrap(), "nothing changed");
    write(dir.path(), SystemPromptKind::AutoExtend, b"Auto v2");
    assert!(e.check_system_prompts().unwrap());
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::AutoExtend),
        "Auto v2"
    );
    assert!(!e.check_system_prompts().unwrap());
    // A broken file is reported once, then left alone until it changes again.
    write(dir.path(), SystemPromptKind::AutoExtend, &[0xff]);
    assert!(e.check_system_prompts().is_err());
    assert!(!e.check_system_prompts().unwrap());
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::AutoExtend),
        "Auto v2"
    );
    write(dir.path(), SystemPromptKind::AutoExtend, b"Auto v3, fixed");
    assert!(e.check_system_prompts().unwrap());
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::AutoExtend),
        "Auto v3, fixed"
    );
}

#[tokio::test]
async fn the_watcher_reloads_changed_files_and_requests_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(Behavior::Reply("ok".into())).await;
    let e = PromptEnhancer::with_system_prompt_dir(
        vec![fake.arc("a", "m")],
        EnhancerSettings::default(),
        dir.path(),
    )
    .unwrap();
    let mut reloads = e.subscribe_reloads();
    let _watcher = e.watch_system_prompts(Duration::from_millis(20)).unwrap();

    write(
        dir.path(),
        SystemPromptKind::Enhance,
        b"Watched enhance prompt",
    );
    wait_for(
        &e,
        &mut reloads,
        SystemPromptKind::Enhance,
        "Watched enhance prompt",
    )
    .await;
    e.enhance("a fox").await.unwrap();
    assert_eq!(fake.requests()[0].messages()[0].1, "Watched enhance prompt");

    std::fs::remove_file(dir.path().join("enhance.txt")).unwrap();
    let default = SystemPromptKind::Enhance.default_text();
    wait_for(&e, &mut reloads, SystemPromptKind::Enhance, default).await;
}

#[tokio::test]
async fn dropping_the_watcher_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    let mut reloads = e.subscribe_reloads();
    let watcher = e.watch_system_prompts(Duration::from_millis(10)).unwrap();
    write(dir.path(), SystemPromptKind::Rewrite, b"one");
    wait_for(&e, &mut reloads, SystemPromptKind::Rewrite, "one").await;
    drop(watcher);
    // A poll already running on the blocking pool finishes; let it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(dir.path(), SystemPromptKind::Rewrite, b"two, longer");
    // Many intervals pass without a reload.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(e.system_prompts().get(SystemPromptKind::Rewrite), "one");
    assert!(
        e.check_system_prompts().unwrap(),
        "the change is still pending"
    );
}

#[tokio::test]
async fn the_watcher_needs_a_directory_and_a_sane_interval() {
    let e = PromptEnhancer::offline();
    assert!(matches!(
        e.watch_system_prompts(Duration::from_secs(1)),
        Err(PromptError::Watch(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    assert!(matches!(
        e.watch_system_prompts(Duration::from_millis(1)),
        Err(PromptError::Watch(_))
    ));
    assert!(
        e.watch_system_prompts(fv_prompt::MIN_WATCH_INTERVAL)
            .is_ok()
    );
}

#[test]
fn the_watcher_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    let err = e.watch_system_prompts(Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[test]
fn reloads_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let dir = tempfile::tempdir().unwrap();
    let e = offline_in(dir.path());
    metrics::with_local_recorder(&recorder, || {
        e.reload_system_prompts().unwrap();
        write(dir.path(), SystemPromptKind::Rewrite, &[0xff]);
        assert!(e.reload_system_prompts().is_err());
    });
    let text = handle.render();
    assert!(
        text.contains(r#"fv_prompt_system_prompt_reloads_total{outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"fv_prompt_system_prompt_reloads_total{outcome="error"} 1"#),
        "{text}"
    );
}

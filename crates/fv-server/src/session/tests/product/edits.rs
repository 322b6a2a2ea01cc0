//! Editing a rollout: appended prompts, rewrites of the seed prompts.

use super::*;

#[test]
fn appended_prompts_are_enhanced_then_go_before_the_seeds() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b"]));
    let append = |id: &str, p: &str| ProductMsg::Append {
        prompt_id: Some(id.into()),
        prompt: p.into(),
    };
    assert_eq!(
        msg(&mut h, append("u1", "a fox")),
        [
            "send prompt_received u1 1",
            "send prompt_enhancing u1",
            "prompt 1 enhance a fox"
        ]
    );
    // The second waits for the first's enhancement.
    assert_eq!(
        msg(&mut h, append("u2", "a hare")),
        ["send prompt_received u2 2"]
    );
    assert_eq!(
        h.answer(1, Ok(vec!["A vivid fox"])),
        [
            "send prompt_ready u1 user_enhanced",
            "send prompt_enhancing u2",
            "prompt 2 enhance a hare"
        ]
    );
    assert_eq!(
        h.answer(2, Err(PromptFailure::Failed("down".into()))),
        [
            "log append_enhancement_failed",
            "send prompt_fallback_used u2"
        ]
    );
    assert_eq!(
        seg_done(&mut h),
        [
            "send segment_prompt_source 2 user_enhanced -",
            "start 1 A vivid fox"
        ]
    );
    assert_eq!(seg_done(&mut h), next_seed(3, 1, "b"));
    // Without enhancement the prompt is ready at once; after a blocked state it resumes.
    assert_eq!(
        msg(&mut h, ProductMsg::SetEnhancement(false)),
        ["send enhancement_updated false"]
    );
    assert_eq!(seg_done(&mut h), ["send prompt_sources_blocked 4"]);
    assert_eq!(
        msg(&mut h, append("u3", "a heron")),
        [
            "send prompt_received u3 1",
            "send prompt_ready u3 user_raw",
            "send prompt_sources_resumed 4 user_raw",
            "send segment_prompt_source 4 user_raw -",
            "start 3 a heron"
        ]
    );
    // Empty prompts are refused.
    assert_eq!(msg(&mut h, append("u4", "  ")), ["error invalid_message"]);
}

#[test]
fn a_rewrite_at_the_cap_starts_a_new_rollout() {
    let mut h = product(2);
    start(&mut h, preset(&["a", "b"]));
    seg_done(&mut h);
    assert_eq!(seg_done(&mut h), ["send stream_complete SegmentCap"]);
    let rewrite = |i: &str, w: &[&str]| ProductMsg::Rewrite {
        instruction: i.into(),
        window: w.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(
        msg(&mut h, rewrite("make it night time", &["a", "b"])),
        [
            "send rewrite_seed_prompts_started",
            "prompt 1 rewrite make it night time 2"
        ]
    );
    assert_eq!(
        msg(&mut h, rewrite("again", &[])),
        ["error invalid_message"],
        "one rewrite at a time"
    );
    let mut want = vec![
        "send seed_prompts_updated rewrite 2 fallback=false".to_owned(),
        "send rewrite_seed_prompts_complete fallback=false error=false".into(),
        "forget_state".into(),
        "send ltx2_stream_start total=2 iter=2 loop=false".into(),
        "send seed_prompts_reset_applied rewrite_rollout iter=2 dropped=0/0".into(),
    ];
    want.extend(next_seed(1, 0, "r1"));
    assert_eq!(rewrite_answer(&mut h, 1, 2), want);
    // The rewrite reset the cap count: two more segments.
    assert_eq!(seg_done(&mut h), next_seed(2, 1, "r2"));
}

#[test]
fn a_rewrite_during_generation_restarts_after_the_segment() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b", "c"]));
    msg(
        &mut h,
        ProductMsg::Rewrite {
            instruction: "night".into(),
            window: vec![],
        },
    );
    // The segment finishes; nothing new starts while the rewrite runs.
    assert!(seg_done(&mut h).is_empty());
    let out = rewrite_answer(&mut h, 1, 3);
    assert_eq!(
        out[5],
        "send seed_prompts_reset_applied rewrite_during_generation iter=2 dropped=0/0"
    );
    // The old rollout carried media: it is completed before the new one starts.
    assert_eq!(out[2], "send stream_complete StopRequested");
}

#[test]
fn a_failed_or_blocked_rewrite_keeps_the_prompts() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b"]));
    h.feed(done(0, None));
    msg(&mut h, ProductMsg::SetPaused(true));
    h.feed(done(0, None));
    msg(
        &mut h,
        ProductMsg::Rewrite {
            instruction: "night".into(),
            window: vec![],
        },
    );
    assert_eq!(
        h.answer(1, Err(PromptFailure::Failed("down".into()))),
        [
            "send seed_prompts_updated rewrite 2 fallback=true",
            "send rewrite_seed_prompts_complete fallback=true error=true"
        ]
    );
    msg(
        &mut h,
        ProductMsg::Rewrite {
            instruction: "night".into(),
            window: vec![],
        },
    );
    assert_eq!(
        h.answer(2, Err(PromptFailure::Blocked(blocked(1).expect("blocked")))),
        [
            "log prompt_blocked",
            "send rewrite_seed_prompts_complete fallback=true error=true"
        ]
    );
}

#[test]
fn rewrites_need_seed_prompts_and_an_instruction() {
    let mut h = product(6);
    start(&mut h, SessionSettings::default());
    let rewrite = |i: &str| ProductMsg::Rewrite {
        instruction: i.into(),
        window: vec!["w".into()],
    };
    assert_eq!(msg(&mut h, rewrite("night")), ["error invalid_message"]);
    let mut h = product(6);
    start(&mut h, preset(&["a"]));
    assert_eq!(msg(&mut h, rewrite(" ")), ["error invalid_message"]);
}

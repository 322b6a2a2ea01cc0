//! `/ws` transcripts: every flow of dreamverse-facts (§5 order, §6 behaviour, §9 reference
//! transcript) through the product director. Segment indices in the lines are the wire's
//! (1-based) for product events and the plan's (0-based, within the rollout) for `start`.

use super::*;
use crate::session::event::{ClientInput, ProductMsg};
use fv_protocol::ParseError;

mod edits;
mod ends;

fn product(cap: u32) -> Harness {
    product_with(cap, config())
}

fn product_with(cap: u32, config: ServeConfig) -> Harness {
    let mut h = harness_mode(cap, config, Mode::Product);
    assert_eq!(h.feed(Input::Opened), ["timer InitWait 10s"]);
    h
}

fn msg(h: &mut Harness, m: ProductMsg) -> Vec<String> {
    h.client(ClientMsg::Product(m), "product")
}

fn preset(prompts: &[&str]) -> SessionSettings {
    SessionSettings {
        preset: Some("glass_whale".into()),
        preset_label: Some("Glass whale".into()),
        curated_prompts: prompts.iter().map(|p| (*p).to_owned()).collect(),
        enhancement_enabled: true,
        ..SessionSettings::default()
    }
}

fn typed(prompt: &str) -> Box<InitRequest> {
    Box::new(InitRequest {
        settings: SessionSettings {
            preset: Some("custom_editable".into()),
            preset_label: Some("Custom rollout".into()),
            enhancement_enabled: true,
            ..SessionSettings::default()
        },
        rollout_prompt: Some(prompt.into()),
        ..InitRequest::default()
    })
}

/// Init with `settings`, applied, worker 0 granted; returns what the grant produced.
fn start(h: &mut Harness, settings: SessionSettings) -> Vec<String> {
    assert_eq!(h.init_with(settings), ["apply_init"]);
    assert_eq!(h.feed(applied()), ["acquire"]);
    h.feed(Input::Acquired(Ok(0)))
}

const GRANTED: [&str; 3] = [
    "send queue_status 0/0",
    "send gpu_assigned 0",
    "timer SessionLimit 300s",
];

fn with_granted(rest: &[&str]) -> Vec<String> {
    GRANTED
        .iter()
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

fn next_seed(n: u32, seed: u32, prompt: &str) -> Vec<String> {
    vec![
        format!("send segment_prompt_source {n} curated {seed}"),
        format!("start {} {prompt}", n - 1),
    ]
}

/// The segment done (its state kept for the next one, its completion sent), then what the
/// director did next.
fn seg_done(h: &mut Harness) -> Vec<String> {
    let mut out = h.feed(done(0, None));
    assert_eq!(
        out.get(..2),
        Some(
            &[
                "keep_state -".to_owned(),
                "send segment_complete".to_owned()
            ][..]
        ),
        "{out:?}"
    );
    out.drain(..2);
    out
}

fn rewrite_answer(h: &mut Harness, id: u64, n: usize) -> Vec<String> {
    let prompts: Vec<String> = (1..=n).map(|i| format!("r{i}")).collect();
    h.answer(id, Ok(prompts.iter().map(String::as_str).collect()))
}

#[test]
fn the_generators_state_carries_to_the_next_segment_of_the_rollout() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b"]));
    let out = h.feed(done(0, Some(state("ltx2.v1"))));
    assert_eq!(out[..2], ["keep_state ltx2.v1", "send segment_complete"]);
    assert_eq!(out[2..], next_seed(2, 1, "b"));
}

#[test]
fn a_preset_runs_its_seed_prompts_in_order_then_reports_blocked() {
    let mut h = product(6);
    let mut want = with_granted(&[
        "send loop_generation_updated false",
        "send generation_paused_updated false",
        "send ltx2_stream_start total=3 iter=1 loop=false",
        "send seed_prompts_updated init 3",
    ]);
    want.extend(next_seed(1, 0, "a"));
    assert_eq!(start(&mut h, preset(&["a", "b", "c"])), want);
    assert_eq!(h.state(), SessionState::Active);
    assert_eq!(seg_done(&mut h), next_seed(2, 1, "b"));
    assert_eq!(seg_done(&mut h), next_seed(3, 2, "c"));
    // Fewer prompts than the cap and nothing else: blocked, not complete (facts §6.2).
    assert_eq!(seg_done(&mut h), ["send prompt_sources_blocked 4"]);
    assert!(!h.machine.ended());
}

#[test]
fn the_cap_completes_the_rollout_and_the_socket_stays_for_a_restart() {
    let mut h = product(2);
    start(&mut h, preset(&["a", "b", "c"]));
    assert_eq!(seg_done(&mut h), next_seed(2, 1, "b"));
    assert_eq!(seg_done(&mut h), ["send stream_complete SegmentCap"]);
    assert!(!h.machine.ended(), "the socket stays open");
    // Waiting for a rewrite: appended prompts are refused, toggles answer.
    assert_eq!(
        msg(
            &mut h,
            ProductMsg::Append {
                prompt_id: Some("u1".into()),
                prompt: "x".into()
            }
        ),
        ["error invalid_message"]
    );
    assert_eq!(
        msg(&mut h, ProductMsg::SetLoop(true)),
        ["send loop_generation_updated true"]
    );
    let mut want = vec![
        "send generation_restarted 2".to_owned(),
        "forget_state".into(),
        "send ltx2_stream_start total=3 iter=2 loop=true".into(),
        "send seed_prompts_reset_applied cap_restart iter=2 dropped=0/0".into(),
    ];
    want.extend(next_seed(1, 0, "a"));
    assert_eq!(msg(&mut h, ProductMsg::Restart), want);
    assert_eq!(seg_done(&mut h), next_seed(2, 1, "b"));
    // The cap counts from the restart; it turns loop off silently.
    assert_eq!(seg_done(&mut h), ["send stream_complete SegmentCap"]);
}

#[test]
fn a_manual_reset_at_the_cap_yields_start_reset_and_complete_again() {
    let mut h = product(1);
    start(&mut h, preset(&["a", "b"]));
    assert_eq!(seg_done(&mut h), ["send stream_complete SegmentCap"]);
    assert_eq!(
        msg(&mut h, ProductMsg::ResetToSeeds),
        [
            "send seed_prompts_reset_pending 2",
            "forget_state",
            "send ltx2_stream_start total=2 iter=2 loop=false",
            "send seed_prompts_reset_applied manual_reset iter=2 dropped=0/0",
            // A manual reset does not reset the cap count (facts §6.2).
            "send stream_complete SegmentCap",
        ]
    );
    assert!(!h.machine.ended());
}

#[test]
fn a_typed_prompt_is_rewritten_into_the_rollout() {
    let mut h = product(6);
    assert_eq!(
        h.client(ClientMsg::Init(typed("A glass whale")), "session_init_v2"),
        ["apply_init"]
    );
    h.feed(applied());
    assert_eq!(
        h.feed(Input::Acquired(Ok(0))),
        with_granted(&[
            "send loop_generation_updated false",
            "send generation_paused_updated true",
            "send rewrite_seed_prompts_started",
            "prompt 1 rewrite A glass whale 6",
        ])
    );
    assert_eq!(h.jobs[0].budget, Duration::from_millis(20_000));
    let mut want = vec![
        "send generation_paused_updated false".to_owned(),
        "send seed_prompts_updated rewrite 6 fallback=false".into(),
        "send rewrite_seed_prompts_complete fallback=false error=false".into(),
        "forget_state".into(),
        "send ltx2_stream_start total=6 iter=1 loop=false".into(),
        "send seed_prompts_reset_applied initial_rewrite iter=1 dropped=0/0".into(),
    ];
    want.extend(next_seed(1, 0, "r1"));
    assert_eq!(rewrite_answer(&mut h, 1, 6), want);
}

#[test]
fn a_failed_initial_rewrite_runs_the_typed_prompt() {
    let mut h = product(6);
    h.client(ClientMsg::Init(typed("A glass whale")), "session_init_v2");
    h.feed(applied());
    h.feed(Input::Acquired(Ok(0)));
    let mut want = vec![
        "send generation_paused_updated false".to_owned(),
        "send seed_prompts_updated rewrite 1 fallback=true".into(),
        "send rewrite_seed_prompts_complete fallback=true error=true".into(),
        "forget_state".into(),
        "send ltx2_stream_start total=1 iter=1 loop=false".into(),
        "send seed_prompts_reset_applied initial_rewrite iter=1 dropped=0/0".into(),
    ];
    want.extend(next_seed(1, 0, "A glass whale"));
    assert_eq!(
        h.answer(1, Err(PromptFailure::OverBudget(Duration::from_secs(20)))),
        want
    );
}

#[test]
fn projects_follow_each_other_on_one_socket() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b"]));
    // The segment in flight finishes first.
    assert!(msg(&mut h, ProductMsg::EndProject).is_empty());
    assert_eq!(
        msg(&mut h, ProductMsg::ProjectInit(typed("x"))),
        ["error invalid_message"],
        "still ending"
    );
    assert_eq!(
        seg_done(&mut h),
        [
            "send stream_complete StopRequested",
            "send project_idle 0/0",
            "forget_state"
        ]
    );
    // Idle: prompts are refused, toggles answer, another end is answered again.
    for m in [
        ProductMsg::Append {
            prompt_id: None,
            prompt: "p".into(),
        },
        ProductMsg::Rewrite {
            instruction: "night".into(),
            window: vec![],
        },
        ProductMsg::ResetToSeeds,
        ProductMsg::Restart,
    ] {
        assert_eq!(msg(&mut h, m), ["error invalid_message"]);
    }
    assert_eq!(
        msg(&mut h, ProductMsg::SetAutoExtension(false)),
        ["send auto_extension_updated false"]
    );
    assert_eq!(
        msg(&mut h, ProductMsg::EndProject),
        ["send project_idle 0/0"]
    );
    // A preset project: no queue_status / gpu_assigned / seed_prompts_updated{init}.
    let init = Box::new(InitRequest {
        settings: preset(&["x", "y"]),
        ..InitRequest::default()
    });
    let mut want = vec![
        "log project_init".to_owned(),
        "forget_state".into(),
        "send ltx2_stream_start total=2 iter=1 loop=false".into(),
        "send seed_prompts_reset_applied project_init iter=1 dropped=0/0".into(),
    ];
    want.extend(next_seed(1, 0, "x"));
    assert_eq!(msg(&mut h, ProductMsg::ProjectInit(init)), want);
    // Then a typed project after this one.
    msg(&mut h, ProductMsg::EndProject);
    seg_done(&mut h);
    assert_eq!(
        msg(&mut h, ProductMsg::ProjectInit(typed("Aurora"))),
        [
            "log project_init",
            "send generation_paused_updated true",
            "send rewrite_seed_prompts_started",
            "prompt 1 rewrite Aurora 6"
        ]
    );
    let out = rewrite_answer(&mut h, 1, 6);
    assert_eq!(
        out[5],
        "send seed_prompts_reset_applied initial_rewrite iter=1 dropped=0/0"
    );
    assert_eq!(out[7], "start 0 r1");
}

#[test]
fn pause_holds_between_segments() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b"]));
    assert_eq!(
        msg(&mut h, ProductMsg::SetPaused(true)),
        ["send generation_paused_updated true"]
    );
    assert!(seg_done(&mut h).is_empty(), "the one in flight finished");
    let mut want = vec!["send generation_paused_updated false".to_owned()];
    want.extend(next_seed(2, 1, "b"));
    assert_eq!(msg(&mut h, ProductMsg::SetPaused(false)), want);
}

#[test]
fn loop_restarts_the_rollout_from_the_seeds() {
    let mut h = product(6);
    let mut s = preset(&["a", "b"]);
    s.loop_generation_enabled = true;
    start(&mut h, s);
    seg_done(&mut h);
    let mut want = vec![
        "send stream_complete StopRequested".to_owned(),
        "forget_state".into(),
        "send ltx2_stream_start total=2 iter=2 loop=true".into(),
        "send loop_restarted iter=2".into(),
    ];
    want.extend(next_seed(1, 0, "a"));
    assert_eq!(seg_done(&mut h), want);
    // The cap still counts across loops (4 of 6 after this).
    assert_eq!(seg_done(&mut h), next_seed(2, 1, "b"));
    // Loop off: the rollout ends in the blocked state.
    msg(&mut h, ProductMsg::SetLoop(false));
    assert_eq!(seg_done(&mut h), ["send prompt_sources_blocked 3"]);
}

#[test]
fn auto_extension_writes_prompts_and_a_failure_waits_for_the_toggle() {
    let mut h = product(6);
    let mut s = preset(&["a"]);
    s.auto_extension_enabled = true;
    start(&mut h, s);
    assert_eq!(seg_done(&mut h), ["prompt 1 auto_extend 1"]);
    assert_eq!(h.jobs[0].budget, Duration::from_millis(3000));
    assert_eq!(
        h.answer(1, Ok(vec!["a, the camera rises"])),
        [
            "send segment_prompt_source 2 auto_llm -",
            "start 1 a, the camera rises"
        ]
    );
    assert_eq!(seg_done(&mut h), ["prompt 2 auto_extend 2"]);
    assert_eq!(
        h.answer(2, Err(PromptFailure::Empty)),
        ["send auto_prompt_failed 3", "send prompt_sources_blocked 3"]
    );
    assert_eq!(
        msg(&mut h, ProductMsg::SetAutoExtension(true)),
        ["send auto_extension_updated true", "prompt 3 auto_extend 2"]
    );
    assert_eq!(
        h.answer(3, Ok(vec!["next"])),
        [
            "send prompt_sources_resumed 3 auto_llm",
            "send segment_prompt_source 3 auto_llm -",
            "start 2 next"
        ]
    );
}

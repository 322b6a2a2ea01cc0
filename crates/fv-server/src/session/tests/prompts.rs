//! `/v1/stream` prompt toggles: enhancement, loop, auto-extension, pause, seeds, safety.
//! Calls to fv-prompt and the safety filter are actions; the test answers them.

use super::*;
use fv_session::Toggle;

fn toggle(h: &mut Harness, t: Toggle) -> Vec<String> {
    h.client(ClientMsg::Toggle(t), "toggle")
}

fn with_safety() -> ServeConfig {
    let mut c = config();
    c.streaming.safety.enabled = true;
    c.streaming.safety.blocked_words = vec!["bad".into()];
    c
}

#[test]
fn enhancement_runs_the_enhanced_prompt() {
    let mut h = harness(6);
    h.active();
    assert!(toggle(&mut h, Toggle::Enhancement(true)).is_empty());
    // The prompt waits for its enhancement (bounded by the call's budget).
    assert_eq!(h.ask("a fox"), ["prompt 1 enhance a fox"]);
    let job = &h.jobs[0];
    assert_eq!(
        job.budget,
        Duration::from_millis(1500),
        "the configured latency budget"
    );
    assert_eq!(
        h.answer(1, Ok(vec!["A fox, cinematic"])),
        ["log prompt_enhanced", "start 0 A fox, cinematic"]
    );
}

#[test]
fn over_budget_or_failed_enhancement_runs_the_raw_prompt_and_logs_it() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::Enhancement(true));
    h.ask("a fox");
    assert_eq!(
        h.answer(
            1,
            Err(PromptFailure::OverBudget(Duration::from_millis(1500)))
        ),
        ["log prompt_enhancement_skipped", "start 0 a fox"]
    );
    h.feed(done(0, None));
    // The next one is enhanced while nothing runs; a provider failure also runs it raw.
    assert_eq!(h.ask("a hare"), ["prompt 2 enhance a hare"]);
    assert_eq!(
        h.answer(
            2,
            Err(PromptFailure::Failed("every provider failed".into()))
        ),
        ["log prompt_enhancement_skipped", "start 1 a hare"]
    );
}

#[test]
fn the_next_prompt_is_enhanced_while_the_segment_runs() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::Enhancement(true));
    h.ask("one");
    h.answer(1, Ok(vec!["ONE"]));
    // Segment 0 runs; the next prompt's call starts at once, not when segment 0 ends.
    assert_eq!(h.ask("two"), ["prompt 2 enhance two"]);
    assert_eq!(h.answer(2, Ok(vec!["TWO"])), ["log prompt_enhanced"]);
    // No wait at the boundary.
    assert_eq!(
        h.feed(done(0, None)),
        ["checkpoint 1 -", "send segment_complete", "start 1 TWO"]
    );
}

#[test]
fn turning_enhancement_off_while_a_call_runs_runs_the_raw_prompt_now() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::Enhancement(true));
    h.ask("a fox");
    assert_eq!(
        toggle(&mut h, Toggle::Enhancement(false)),
        ["start 0 a fox"]
    );
    // The late answer changes nothing.
    assert!(h.answer(1, Ok(vec!["ENHANCED"])).is_empty());
}

#[test]
fn enhancement_is_off_when_the_prompt_service_is_off() {
    let mut c = config();
    c.streaming.prompt.enabled = false;
    let mut h = harness_with(6, c);
    h.active();
    toggle(&mut h, Toggle::Enhancement(true));
    assert_eq!(h.ask("raw"), ["start 0 raw"]);
}

#[test]
fn loop_cycles_the_seed_prompts_up_to_the_cap() {
    let mut h = harness(4);
    h.active();
    toggle(&mut h, Toggle::SeedPrompts(vec!["s1".into(), "s2".into()]));
    // Seeds alone start nothing; loop does.
    assert_eq!(toggle(&mut h, Toggle::LoopGeneration(true)), ["start 0 s1"]);
    assert_eq!(
        h.feed(done(0, None)),
        ["checkpoint 1 -", "send segment_complete", "start 1 s2"]
    );
    // A client prompt goes first.
    assert!(h.ask("mine").is_empty());
    assert_eq!(
        h.feed(done(1, None)),
        ["checkpoint 2 -", "send segment_complete", "start 2 mine"]
    );
    assert_eq!(
        h.feed(done(2, None)),
        ["checkpoint 3 -", "send segment_complete", "start 3 s1"]
    );
    assert_eq!(
        h.feed(done(3, None)),
        [
            "checkpoint 4 -",
            "send segment_complete",
            "send stream_complete SegmentCap",
            "end segment_cap 1000 segment_cap"
        ]
    );
}

#[test]
fn seed_prompts_updated_replaces_the_loop_list() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::SeedPrompts(vec!["old".into()]));
    toggle(&mut h, Toggle::LoopGeneration(true));
    assert_eq!(
        toggle(&mut h, Toggle::SeedPrompts(vec!["n1".into(), "n2".into()])),
        Vec::<String>::new()
    );
    assert_eq!(
        h.feed(done(0, None)),
        ["checkpoint 1 -", "send segment_complete", "start 1 n1"]
    );
    assert_eq!(
        h.feed(done(1, None)),
        ["checkpoint 2 -", "send segment_complete", "start 2 n2"]
    );
}

#[test]
fn auto_extension_writes_the_next_prompt_when_the_queue_runs_dry() {
    let mut h = harness(3);
    h.active();
    assert!(
        toggle(&mut h, Toggle::AutoExtension(true)).is_empty(),
        "nothing to extend yet"
    );
    assert_eq!(h.ask("a fox"), ["start 0 a fox"]);
    assert_eq!(
        h.feed(done(0, None)),
        [
            "checkpoint 1 -",
            "send segment_complete",
            "prompt 1 auto_extend 1"
        ]
    );
    assert_eq!(h.jobs[0].budget, Duration::from_millis(3000));
    assert_eq!(
        h.answer(1, Ok(vec!["a fox, it turns"])),
        ["log auto_extension", "start 1 a fox, it turns"]
    );
    assert_eq!(
        h.feed(done(1, None)),
        [
            "checkpoint 2 -",
            "send segment_complete",
            "prompt 2 auto_extend 2"
        ]
    );
    h.answer(2, Ok(vec!["a fox, it runs"]));
    // Up to the cap.
    assert_eq!(
        h.feed(done(2, None)),
        [
            "checkpoint 3 -",
            "send segment_complete",
            "send stream_complete SegmentCap",
            "end segment_cap 1000 segment_cap"
        ]
    );
}

#[test]
fn a_failed_auto_extension_waits_for_the_client_or_the_toggle() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::AutoExtension(true));
    h.ask("a");
    h.feed(done(0, None));
    assert_eq!(
        h.answer(1, Err(PromptFailure::Empty)),
        ["log auto_extension_failed"]
    );
    // Not retried by itself; the toggle retries.
    assert_eq!(
        toggle(&mut h, Toggle::AutoExtension(true)),
        ["prompt 2 auto_extend 1"]
    );
    h.answer(2, Err(PromptFailure::Failed("down".into())));
    // A client prompt runs, and after it auto-extension may try again.
    assert_eq!(h.ask("b"), ["start 1 b"]);
    assert_eq!(
        h.feed(done(1, None)),
        [
            "checkpoint 2 -",
            "send segment_complete",
            "prompt 3 auto_extend 2"
        ]
    );
}

#[test]
fn loop_goes_before_auto_extension() {
    let mut h = harness(6);
    h.active();
    toggle(&mut h, Toggle::SeedPrompts(vec!["s".into()]));
    toggle(&mut h, Toggle::GenerationPaused(true));
    toggle(&mut h, Toggle::AutoExtension(true));
    toggle(&mut h, Toggle::LoopGeneration(true));
    assert_eq!(
        toggle(&mut h, Toggle::GenerationPaused(false)),
        ["start 0 s"]
    );
}

#[test]
fn pause_lets_the_running_segment_finish_and_starts_nothing() {
    let mut h = harness(6);
    h.active();
    h.ask("one");
    h.ask("two");
    assert!(toggle(&mut h, Toggle::GenerationPaused(true)).is_empty());
    // The running segment completes; the queued one waits.
    assert_eq!(
        h.feed(done(0, None)),
        ["checkpoint 1 -", "send segment_complete"]
    );
    assert!(h.ask("three").is_empty());
    assert_eq!(
        toggle(&mut h, Toggle::GenerationPaused(false)),
        ["start 1 two"]
    );
}

#[test]
fn a_blocked_segment_prompt_is_answered_and_skipped() {
    let mut h = harness_with(6, with_safety());
    h.active();
    assert_eq!(h.ask("bad things"), ["check_safety 1"]);
    assert_eq!(
        h.checked(blocked(0)),
        ["log prompt_blocked", "error prompt_blocked"]
    );
    assert_eq!(h.ask("good things"), ["check_safety 1"]);
    assert_eq!(h.checked(None), ["start 0 good things"]);
    assert_eq!(h.state(), SessionState::Active);
}

#[test]
fn a_blocked_seed_list_is_refused() {
    let mut h = harness_with(6, with_safety());
    h.active();
    assert_eq!(
        toggle(&mut h, Toggle::SeedPrompts(vec!["ok".into(), "bad".into()])),
        ["check_safety 2"]
    );
    assert_eq!(
        h.checked(blocked(1)),
        ["log prompt_blocked", "error prompt_blocked"]
    );
    assert!(h.machine.session().settings().curated_prompts.is_empty());
}

#[test]
fn a_blocked_initial_prompt_closes_1008_before_a_worker_is_taken() {
    let mut h = harness_with(6, with_safety());
    let init = h.init_with(SessionSettings {
        curated_prompts: vec!["fine".into(), "bad".into()],
        ..SessionSettings::default()
    });
    assert_eq!(init, ["check_safety 2"]);
    assert_eq!(
        h.checked(blocked(1)),
        [
            "log prompt_blocked",
            "error prompt_blocked",
            "end prompt_blocked 1008 Prompt blocked"
        ]
    );
    assert_eq!(h.state(), SessionState::Rejected);
}

#[test]
fn clean_initial_prompts_go_on_to_the_init() {
    let mut h = harness_with(6, with_safety());
    h.init_with(SessionSettings {
        curated_prompts: vec!["fine".into()],
        ..SessionSettings::default()
    });
    assert_eq!(h.checked(None), ["apply_init"]);
    assert_eq!(h.feed(applied()), ["acquire"]);
}

//! Empty and bad starts, bad frames, blocked prompts, limits, failures, drain.

use super::*;

#[test]
fn an_empty_init_opens_an_empty_rollout_and_reports_blocked() {
    let mut h = product(6);
    // No init frame within the wait: the session starts with an empty one.
    assert_eq!(
        h.feed(Input::Timer(crate::session::machine::Timer::InitWait)),
        ["apply_init"]
    );
    h.feed(applied());
    assert_eq!(
        h.feed(Input::Acquired(Ok(0))),
        with_granted(&[
            "send loop_generation_updated false",
            "send generation_paused_updated false",
            "send ltx2_stream_start total=0 iter=1 loop=false",
            "send prompt_sources_blocked 1",
        ])
    );
}

#[test]
fn bad_frames_get_error_frames_and_the_session_goes_on() {
    let mut h = product(6);
    let bad = || {
        Input::Client(ClientInput::Invalid(ParseError::UnknownProductType {
            got: "\"nope\"".into(),
        }))
    };
    // Before the init: answered, still waiting for it.
    assert_eq!(h.feed(bad()), ["error invalid_message"]);
    assert_eq!(
        h.client(
            ClientMsg::Product(ProductMsg::EndProject),
            "end_project_keep_session"
        ),
        ["error invalid_message"]
    );
    assert_eq!(
        h.feed(Input::Client(ClientInput::Binary)),
        ["error invalid_message"]
    );
    start(&mut h, preset(&["a"]));
    assert_eq!(h.feed(bad()), ["error invalid_message"]);
    assert_eq!(
        msg(&mut h, ProductMsg::Unsupported("simple_generate")),
        ["error invalid_message"]
    );
    assert_eq!(
        h.init(),
        ["error invalid_message"],
        "a second session_init_v2"
    );
    assert!(!h.machine.ended());
}

#[test]
fn a_blocked_preset_closes_1008_and_a_blocked_append_is_refused() {
    let mut c = config();
    c.streaming.safety.enabled = true;
    let mut h = product_with(6, c.clone());
    assert_eq!(h.init_with(preset(&["ok", "bad"])), ["check_safety 2"]);
    assert_eq!(
        h.checked(blocked(1)),
        [
            "log prompt_blocked",
            "error prompt_blocked",
            "end prompt_blocked 1008 Prompt blocked"
        ]
    );
    let mut h = product_with(6, c);
    h.init_with(preset(&["ok"]));
    h.checked(None);
    h.feed(applied());
    h.feed(Input::Acquired(Ok(0)));
    assert_eq!(
        msg(
            &mut h,
            ProductMsg::Append {
                prompt_id: Some("u".into()),
                prompt: "bad".into()
            }
        ),
        ["check_safety 1"]
    );
    assert_eq!(
        h.checked(blocked(0)),
        ["log prompt_blocked", "error prompt_blocked"]
    );
    assert!(!h.machine.ended());
}

#[test]
fn the_wall_clock_limit_ends_the_session_whatever_the_activity() {
    let mut h = product(6);
    start(&mut h, preset(&["a"]));
    assert_eq!(
        h.feed(Input::Timer(crate::session::machine::Timer::SessionLimit)),
        [
            "send session_timeout 300",
            "cancel",
            "end session_limit 1000 Session timeout"
        ]
    );
}

#[test]
fn failing_segments_are_reported_and_too_many_in_a_row_end_the_session() {
    let mut h = product(6);
    start(&mut h, preset(&["a", "b", "c", "d"]));
    let failed = || {
        Input::SegmentDone(Err(crate::error::Failure::Generate(
            fv_core::GenerateError::Failed("oom".into()),
        )))
    };
    let mut want = vec!["error worker_failed".to_owned()];
    want.extend(next_seed(1, 1, "b"));
    assert_eq!(h.feed(failed()), want);
    h.feed(failed());
    assert_eq!(
        h.feed(failed()),
        [
            "error worker_failed",
            "error worker_failed",
            "end error 1011 worker_failed"
        ]
    );
}

#[test]
fn a_drain_ends_an_idle_project_at_once() {
    let mut h = product(6);
    start(&mut h, preset(&["a"]));
    msg(&mut h, ProductMsg::EndProject);
    seg_done(&mut h);
    assert_eq!(h.feed(Input::Drain), ["end shutdown 1001 server_shutdown"]);
}

#[test]
fn leave_and_drain_end_the_session() {
    let mut h = product(6);
    start(&mut h, preset(&["a"]));
    assert_eq!(
        msg(&mut h, ProductMsg::Leave),
        ["cancel", "end client_left 1000 client_left"]
    );
    let mut h = product(6);
    start(&mut h, preset(&["a"]));
    assert!(
        h.feed(Input::Drain).is_empty(),
        "the segment in flight finishes"
    );
    assert_eq!(
        seg_done(&mut h),
        [
            "send stream_complete StopRequested",
            "end shutdown 1001 server_shutdown"
        ]
    );
}

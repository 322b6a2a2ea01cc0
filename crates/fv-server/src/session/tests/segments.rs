//! Segments: requests, validation, the queue, failures, snapshots, resume.

use super::super::event::{ClientInput, ClientMsg, Event, SegmentAsk};
use super::super::machine::{Action, Applied, Input, Resumed};
use super::*;
use crate::error::Failure;
use fv_session::{Expiry, InitImageError, SessionState, Toggle};
use std::time::Duration;

#[test]
fn a_bad_init_image_rejects_and_a_disk_failure_is_ours() {
    let mut h = harness(6);
    h.init();
    let bad = Failure::BadImage(InitImageError::Empty);
    assert_eq!(
        h.feed(Input::InitApplied(Err(bad))),
        ["error invalid_message", "end rejected 1003 invalid_init"]
    );
    let mut h = harness(6);
    h.init();
    let disk = Failure::Internal("disk full".into());
    assert_eq!(
        h.feed(Input::InitApplied(Err(disk))),
        ["error internal_error", "end error 1011 internal_error"]
    );
}

#[test]
fn timeouts_say_so_and_close_normally() {
    let mut h = harness(6);
    assert_eq!(
        h.feed(Input::Expired(Expiry::InitTimeout(Duration::from_secs(10)))),
        [
            "send session_timeout 10",
            "end init_timeout 1000 session_timeout"
        ]
    );
    assert_eq!(h.state(), SessionState::Timeout);

    let mut h = harness(6);
    h.active();
    assert_eq!(
        h.feed(Input::Expired(Expiry::IdleTimeout(Duration::from_secs(
            120
        )))),
        [
            "send session_timeout 120",
            "send stream_complete StopRequested",
            "end idle_timeout 1000 session_timeout"
        ]
    );
}

#[test]
fn an_init_applied_after_the_init_timeout_fired_ends_the_session() {
    let mut h = harness(6);
    h.init();
    assert!(
        h.machine
            .session()
            .expire_now(Expiry::InitTimeout(Duration::from_secs(10)))
    );
    assert_eq!(
        h.feed(applied()),
        [
            "send session_timeout 10",
            "end init_timeout 1000 session_timeout"
        ]
    );
}

#[test]
fn draining_finishes_the_running_segment_then_closes_1001() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    h.ask("b");
    assert!(
        h.feed(Input::Drain).is_empty(),
        "the running segment goes on"
    );
    assert!(h.ask("c").is_empty(), "no new segment starts");
    assert_eq!(
        h.feed(done(0, None)),
        [
            "checkpoint 1 -",
            "send segment_complete",
            "send stream_complete StopRequested",
            "end shutdown 1001 server_shutdown"
        ]
    );

    // Idle, waiting for a worker, or before init: at once.
    let mut h = harness(6);
    h.active();
    assert_eq!(
        h.feed(Input::Drain),
        [
            "send stream_complete StopRequested",
            "end shutdown 1001 server_shutdown"
        ]
    );
    let mut h = harness(6);
    h.init();
    h.feed(applied());
    assert_eq!(h.feed(Input::Drain).len(), 2);
    assert_eq!(h.state(), SessionState::Complete);
}

#[test]
fn a_hard_stop_cancels_the_running_segment() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    assert_eq!(
        h.feed(Input::HardStop),
        [
            "send stream_complete StopRequested",
            "cancel",
            "end shutdown 1001 server_shutdown"
        ]
    );
}

#[test]
fn snapshots_are_answered_from_the_store() {
    let mut h = harness(6);
    h.active();
    assert_eq!(
        h.client(ClientMsg::Snapshot, "snapshot_state"),
        ["load_snapshot"]
    );
    assert_eq!(
        h.feed(Input::SnapshotLoaded(Ok(None))),
        ["error internal_error"]
    );
    assert_eq!(
        h.feed(Input::SnapshotLoaded(Ok(Some(state("ltx2.v1"))))),
        ["send snapshot"]
    );
}

#[test]
fn toggles_are_stored_and_pause_holds_everything() {
    let mut h = harness(6);
    h.active();
    // Paused first: the other toggles are stored and start nothing (their effects are in
    // tests/prompts.rs).
    for toggle in [
        Toggle::GenerationPaused(true),
        Toggle::SeedPrompts(vec!["x".into()]),
        Toggle::Enhancement(true),
        Toggle::AutoExtension(true),
        Toggle::LoopGeneration(true),
    ] {
        assert!(
            h.client(ClientMsg::Toggle(toggle), "enhancement_updated")
                .is_empty()
        );
    }
    let session = h.machine.session();
    assert_eq!(session.settings().curated_prompts, ["x"]);
    assert!(session.settings().enhancement_enabled);
    assert!(session.settings().auto_extension_enabled);
    assert!(session.settings().loop_generation_enabled);
    assert!(session.generation_paused());
    assert_eq!(session.state(), SessionState::Active);
}

#[test]
fn stream_time_accumulates_in_pts_base() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    h.ask("b");
    let actions = h.feed_actions(done(0, None));
    // Checkpoint, completion, then the next segment.
    let Some(Action::StartSegment(order)) = actions.get(2) else {
        panic!("expected the second segment to start");
    };
    assert_eq!(order.plan.pts_base_ms, 1000.0);
    assert_eq!(order.plan.segment_idx, 1);
}

#[test]
fn the_session_is_busy_while_queued_or_generating() {
    let mut h = harness(6);
    h.init();
    h.feed(applied());
    assert!(h.manager.snapshot()[0].busy, "queued");
    h.feed(Input::Acquired(Ok(0)));
    assert!(!h.manager.snapshot()[0].busy, "bound, idle");
    h.ask("a");
    assert!(h.manager.snapshot()[0].busy, "generating");
    h.feed(done(0, None));
    assert!(!h.manager.snapshot()[0].busy);
}

#[test]
fn a_cap_of_one_ends_after_the_first_segment_even_with_requests_waiting() {
    let mut h = harness(1);
    h.active();
    h.ask("a");
    h.ask("b");
    assert_eq!(
        h.feed(done(0, None)),
        [
            "checkpoint 1 -",
            "send segment_complete",
            "send stream_complete SegmentCap",
            "end segment_cap 1000 segment_cap"
        ]
    );
    assert_eq!(h.machine.session().segment_idx(), 1);
}

#[test]
fn a_resumed_stream_goes_on_with_its_next_segment_and_its_token() {
    let mut h = harness(3);
    h.init();
    let resumed = Input::InitApplied(Ok(Applied {
        resume_token: "feedbeef".into(),
        resumed: Some(Resumed {
            segments: 2,
            stream_time_ms: 2000.0,
        }),
        ..Applied::default()
    }));
    assert_eq!(h.feed(resumed), ["acquire"]);
    let actions = h.feed_actions(Input::Acquired(Ok(0)));
    let token = actions.iter().find_map(|a| match a {
        Action::Send(Event::StreamStart { resume_token, .. }) => resume_token.clone(),
        _ => None,
    });
    assert_eq!(token.as_deref(), Some("feedbeef"));
    let actions = h.feed_actions(Input::Client(ClientInput::Message {
        msg: ClientMsg::Segment(SegmentAsk {
            prompt: "third".into(),
            ..SegmentAsk::default()
        }),
        wire_name: "segment_prompt_source",
    }));
    let Some(Action::StartSegment(order)) = actions.first() else {
        panic!("expected a start");
    };
    assert_eq!(
        (order.plan.segment_idx, order.plan.pts_base_ms),
        (2, 2000.0)
    );
    // The earlier segments count against the cap.
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
fn a_resume_past_the_cap_is_refused() {
    let mut h = harness(2);
    h.init();
    let resumed = Input::InitApplied(Ok(Applied {
        resume_token: "feedbeef".into(),
        resumed: Some(Resumed {
            segments: 3,
            stream_time_ms: 0.0,
        }),
        ..Applied::default()
    }));
    assert_eq!(
        h.feed(resumed),
        ["error invalid_message", "end rejected 1003 invalid_init"]
    );
}

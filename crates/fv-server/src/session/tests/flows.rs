//! Session lifecycles: init, first-frame rules, ends, timeouts, drain.

use super::super::event::{ClientInput, ClientMsg, Event, SegmentAsk};
use super::super::machine::{Action, Input, MAX_PENDING_SEGMENTS};
use super::*;
use crate::error::Failure;
use fv_core::GenerateError;
use fv_pool::{PoolError, QueuePosition};
use fv_session::SessionState;
use std::time::Duration;

#[test]
fn a_session_from_init_to_the_cap() {
    let mut h = harness(2);
    assert_eq!(h.state(), SessionState::Initializing);
    assert_eq!(h.init(), ["apply_init"]);
    assert_eq!(h.feed(applied()), ["acquire"]);
    assert_eq!(h.state(), SessionState::Queued);
    assert_eq!(
        h.feed(Input::Acquired(Ok(3))),
        [
            "send queue_status 0/0",
            "send gpu_assigned 3",
            "send stream_start"
        ]
    );
    assert_eq!(h.state(), SessionState::Active);
    assert_eq!(h.ask("a red fox"), ["start 0 a red fox"]);
    // While a segment runs, the next request waits its turn.
    assert_eq!(h.ask("a blue fox"), Vec::<String>::new());
    assert_eq!(
        h.feed(done(0, None)),
        [
            "checkpoint 1 -",
            "send segment_complete",
            "start 1 a blue fox"
        ]
    );
    assert_eq!(h.manager.snapshot()[0].segment_idx, 1);
    // The cap ends the stream at once, without waiting for the client.
    assert_eq!(
        h.feed(done(1, Some(state("ltx2.v1")))),
        [
            "checkpoint 2 ltx2.v1",
            "send segment_complete",
            "send stream_complete SegmentCap",
            "end segment_cap 1000 segment_cap"
        ]
    );
    assert_eq!(h.state(), SessionState::Complete);
    assert!(h.machine.ended());
    // Nothing happens after the end.
    assert!(h.ask("too late").is_empty());
}

#[test]
fn stream_start_carries_the_preset_and_the_configured_size() {
    let mut h = harness(6);
    h.init();
    h.feed(applied());
    let actions = h.feed_actions(Input::Acquired(Ok(0)));
    let start = actions.iter().find_map(|a| match a {
        Action::Send(Event::StreamStart {
            preset,
            width,
            height,
            fps,
            num_frames,
            ..
        }) => Some((preset.clone(), *width, *height, *fps, *num_frames)),
        _ => None,
    });
    assert_eq!(start, Some((Some("p1".into()), 256, 256, 24, 24)));
    let assigned = actions.iter().find_map(|a| match a {
        Action::Send(Event::GpuAssigned {
            session_timeout, ..
        }) => Some(*session_timeout),
        _ => None,
    });
    assert_eq!(assigned, Some(120));
}

#[test]
fn queue_positions_are_forwarded_and_no_zero_is_invented() {
    let mut h = harness(6);
    h.init();
    h.feed(applied());
    let pos = |position, queue_depth| {
        Input::Queue(QueuePosition {
            position,
            queue_depth,
        })
    };
    assert_eq!(h.feed(pos(2, 2)), ["send queue_status 2/2"]);
    assert_eq!(h.feed(pos(1, 1)), ["send queue_status 1/1"]);
    assert_eq!(h.feed(pos(0, 0)), ["send queue_status 0/0"]);
    assert_eq!(
        h.feed(Input::Acquired(Ok(1))),
        ["send gpu_assigned 1", "send stream_start"]
    );
}

#[test]
fn the_first_frame_must_be_a_valid_init() {
    let mut h = harness(6);
    assert_eq!(
        h.client(ClientMsg::Snapshot, "snapshot_state"),
        [
            "error invalid_message",
            "end rejected 1003 expected_session_init_v2"
        ]
    );
    assert_eq!(h.state(), SessionState::Rejected);

    let mut h = harness(6);
    let err = fv_protocol::parse_client_message("{}").expect_err("no type");
    assert_eq!(
        h.feed(Input::Client(ClientInput::Invalid(err))),
        ["error invalid_message", "end rejected 1003 invalid_init"]
    );

    let mut h = harness(6);
    assert_eq!(
        h.feed(Input::Client(ClientInput::Binary)),
        ["error invalid_message", "end rejected 1003 invalid_init"]
    );
}

#[test]
fn later_bad_frames_are_answered_and_the_session_goes_on() {
    let mut h = harness(6);
    h.active();
    let err = fv_protocol::parse_client_message("[1,2]").expect_err("not an object");
    assert_eq!(
        h.feed(Input::Client(ClientInput::Invalid(err))),
        ["error invalid_message"]
    );
    assert_eq!(
        h.feed(Input::Client(ClientInput::Binary)),
        ["error invalid_message"]
    );
    // A repeated init is valid and ignored.
    assert!(h.init().is_empty());
    assert_eq!(h.ask("still here"), ["start 0 still here"]);
    assert_eq!(h.state(), SessionState::Active);
}

#[test]
fn transport_errors_end_with_their_close_codes() {
    let mut h = harness(6);
    h.active();
    assert_eq!(
        h.feed(Input::Client(ClientInput::TooBig)),
        ["end message_too_big 1009 frame exceeds limit of 16777216 bytes"]
    );
    let mut h = harness(6);
    assert_eq!(
        h.feed(Input::Client(ClientInput::BadUtf8)),
        ["end invalid_utf8 1007 invalid UTF-8 in a text frame"]
    );
    assert_eq!(h.state(), SessionState::Error);
}

#[test]
fn a_client_that_leaves_cancels_its_segment() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    assert_eq!(
        h.feed(Input::Client(ClientInput::Closed)),
        ["cancel", "end client_closed"]
    );
    assert_eq!(h.state(), SessionState::Complete);

    let mut h = harness(6);
    h.active();
    h.ask("a");
    assert_eq!(
        h.feed(Input::SegmentDone(Err(Failure::ClientGone))),
        ["end client_gone"]
    );
}

#[test]
fn requests_are_validated_when_they_arrive() {
    let mut h = harness(6);
    h.active();
    let bad = [
        SegmentAsk {
            num_inference_steps: Some(0),
            ..SegmentAsk::default()
        },
        SegmentAsk {
            num_inference_steps: Some(1001),
            ..SegmentAsk::default()
        },
        SegmentAsk {
            guidance_scale: Some(100.5),
            ..SegmentAsk::default()
        },
        SegmentAsk {
            guidance_scale: Some(-1.0),
            ..SegmentAsk::default()
        },
        SegmentAsk {
            prompt: "x".repeat(16 * 1024 + 1),
            ..SegmentAsk::default()
        },
        SegmentAsk {
            negative_prompt: Some("x".repeat(16 * 1024 + 1)),
            ..SegmentAsk::default()
        },
    ];
    for ask in bad {
        assert_eq!(h.ask_with(ask), ["error invalid_message"]);
    }
    // Defaults fill what the client left out; an empty negative prompt means the default.
    let actions = h.feed_actions(Input::Client(ClientInput::Message {
        msg: ClientMsg::Segment(SegmentAsk {
            prompt: "ok".into(),
            negative_prompt: Some(String::new()),
            ..SegmentAsk::default()
        }),
        wire_name: "segment_prompt_source",
    }));
    let Some(Action::StartSegment(order)) = actions.first() else {
        panic!(
            "expected a start, got {:?}",
            actions.iter().map(line).collect::<Vec<_>>()
        );
    };
    let r = &order.request;
    assert_eq!(
        (
            r.seed,
            r.num_inference_steps,
            r.guidance_scale,
            r.negative_prompt.as_deref()
        ),
        (1024, 1, 1.0, Some("blurry"))
    );
    assert_eq!((r.width, r.height, r.num_frames, r.fps), (256, 256, 24, 24));
    assert_eq!(r.session_id, h.machine.session().id());
    assert!(r.state.is_none(), "the runtime adds the stored state");
}

#[test]
fn the_pending_queue_is_bounded() {
    let mut h = harness(100);
    h.active();
    assert_eq!(h.ask("running"), ["start 0 running"]);
    for i in 0..MAX_PENDING_SEGMENTS {
        assert!(h.ask(&format!("waiting {i}")).is_empty());
    }
    assert_eq!(h.ask("one too many"), ["error invalid_message"]);
    assert_eq!(
        h.feed(done(0, None)),
        [
            "checkpoint 1 -",
            "send segment_complete",
            "start 1 waiting 0"
        ]
    );
    assert!(h.ask("room again").is_empty());
}

#[test]
fn a_failed_segment_is_reported_and_the_next_one_runs_with_the_same_index() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    h.ask("b");
    let failed = Failure::Generate(GenerateError::Failed("out of memory".into()));
    assert_eq!(
        h.feed(Input::SegmentDone(Err(failed))),
        ["error worker_failed", "start 0 b"]
    );
    assert_eq!(h.state(), SessionState::Active);
    assert_eq!(h.machine.session().segment_idx(), 0);
}

#[test]
fn a_worker_that_cannot_run_ends_the_session() {
    let mut h = harness(6);
    h.active();
    h.ask("a");
    let lost = Failure::Run(PoolError::WorkerDead { worker_id: 3 });
    assert_eq!(
        h.feed(Input::SegmentStartFailed(lost)),
        ["error worker_failed", "end error 1011 worker_failed"]
    );
    assert_eq!(h.state(), SessionState::Error);
}

#[test]
fn no_worker_ends_the_session_with_1013() {
    let mut h = harness(6);
    h.init();
    h.feed(applied());
    assert_eq!(
        h.feed(Input::Acquired(Err(PoolError::AcquireTimeout(
            Duration::from_secs(5)
        )))),
        [
            "error gpu_unavailable",
            "end acquire_timeout 1013 gpu_unavailable"
        ]
    );
    assert_eq!(h.state(), SessionState::Timeout);

    let mut h = harness(6);
    h.init();
    h.feed(applied());
    assert_eq!(
        h.feed(Input::Acquired(Err(PoolError::QueueFull { max: 0 }))),
        [
            "error gpu_unavailable",
            "end gpu_unavailable 1013 gpu_unavailable"
        ]
    );
    assert_eq!(h.state(), SessionState::Rejected);
}

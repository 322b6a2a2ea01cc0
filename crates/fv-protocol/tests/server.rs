//! Server messages: exact wire shape, omitted nulls, defaults and round trips.
#![allow(clippy::unwrap_used)]

use fv_protocol::{
    ContinuationStateSnapshot, ContinuationStateWire, ErrorCode, ErrorMessage, GpuAssigned,
    MediaInit, MediaMode, MediaSegmentComplete, QueueStatus, STAGE_DENOISE, SegmentComplete,
    SegmentStart, ServerMessage, SessionTimeout, StepComplete, StreamComplete,
    StreamCompleteReason, StreamStart,
};
use serde_json::{Map, Value, json};

fn wire(msg: &ServerMessage) -> Value {
    serde_json::from_str(&msg.to_json()).unwrap()
}

fn state() -> ContinuationStateWire {
    let mut payload = Map::new();
    payload.insert("schema_version".into(), json!(1));
    ContinuationStateWire {
        kind: "mock.v1".into(),
        payload,
    }
}

fn all_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::queue_status(2, 3),
        ServerMessage::gpu_assigned(1, 300),
        StreamStart {
            preset: Some("fast".into()),
            width: 1024,
            height: 576,
            fps: 24,
            num_frames: 121,
            resume_token: None,
        }
        .into(),
        SegmentStart {
            segment_idx: 0,
            prompt: "a cat".into(),
            total_steps: 8,
        }
        .into(),
        ServerMessage::step_complete(0, 1, 8),
        MediaInit {
            segment_idx: 0,
            mime: r#"video/mp4; codecs="avc1.42c01f""#.into(),
            stream_id: "0123456789abcdef0123456789abcdef".into(),
            mode: MediaMode::AvFmp4,
        }
        .into(),
        MediaSegmentComplete {
            segment_idx: 0,
            stream_id: "0123456789abcdef0123456789abcdef".into(),
            chunks: 11,
            duration_ms: Some(5041.5),
            pts_base_ms: Some(0.0),
        }
        .into(),
        SegmentComplete {
            segment_idx: 0,
            generation_time_ms: 812.25,
            e2e_latency_ms: Some(900.0),
        }
        .into(),
        ServerMessage::stream_complete(StreamCompleteReason::SegmentCap),
        ServerMessage::session_timeout(300),
        ServerMessage::snapshot(state()),
        ServerMessage::error(ErrorCode::WorkerFailed, "boom", true),
    ]
}

#[test]
fn every_message_round_trips_and_names_its_type() {
    let mut names = Vec::new();
    for msg in all_messages() {
        let text = msg.to_json();
        assert_eq!(ServerMessage::from_json(&text).unwrap(), msg, "{text}");
        assert_eq!(wire(&msg)["type"], json!(msg.type_name()));
        names.push(msg.type_name());
    }
    assert_eq!(names, ServerMessage::TYPES);
}

#[test]
fn exact_wire_shapes() {
    let m = all_messages();
    assert_eq!(
        wire(&m[0]),
        json!({"type": "queue_status", "position": 2, "queue_depth": 3})
    );
    assert_eq!(
        wire(&m[1]),
        json!({"type": "gpu_assigned", "gpu_id": 1, "session_timeout": 300})
    );
    assert_eq!(
        wire(&m[2]),
        json!({"type": "ltx2_stream_start", "preset": "fast", "width": 1024, "height": 576,
            "fps": 24, "num_frames": 121})
    );
    assert_eq!(
        wire(&m[3]),
        json!({"type": "ltx2_segment_start", "segment_idx": 0, "prompt": "a cat",
            "total_steps": 8})
    );
    assert_eq!(
        wire(&m[4]),
        json!({"type": "step_complete", "segment_idx": 0, "step": 1, "total_steps": 8,
            "stage": "denoise"})
    );
    assert_eq!(
        wire(&m[5]),
        json!({"type": "media_init", "segment_idx": 0,
            "mime": "video/mp4; codecs=\"avc1.42c01f\"",
            "stream_id": "0123456789abcdef0123456789abcdef", "mode": "av_fmp4"})
    );
    assert_eq!(
        wire(&m[6]),
        json!({"type": "media_segment_complete", "segment_idx": 0,
            "stream_id": "0123456789abcdef0123456789abcdef", "chunks": 11,
            "duration_ms": 5041.5, "pts_base_ms": 0.0})
    );
    assert_eq!(
        wire(&m[7]),
        json!({"type": "ltx2_segment_complete", "segment_idx": 0,
            "generation_time_ms": 812.25, "e2e_latency_ms": 900.0})
    );
    assert_eq!(
        wire(&m[8]),
        json!({"type": "ltx2_stream_complete", "reason": "segment_cap"})
    );
    assert_eq!(
        wire(&m[9]),
        json!({"type": "session_timeout", "timeout_seconds": 300})
    );
    assert_eq!(
        wire(&m[10]),
        json!({"type": "continuation_state_snapshot",
            "state": {"kind": "mock.v1", "payload": {"schema_version": 1}}})
    );
    assert_eq!(
        wire(&m[11]),
        json!({"type": "error", "code": "worker_failed", "message": "boom", "retryable": true})
    );
}

#[test]
fn none_fields_are_omitted_not_null() {
    let start: ServerMessage = StreamStart {
        preset: None,
        width: 8,
        height: 8,
        fps: 8,
        num_frames: 8,
        resume_token: None,
    }
    .into();
    let media: ServerMessage = MediaSegmentComplete {
        segment_idx: 1,
        stream_id: "s".into(),
        chunks: 0,
        duration_ms: None,
        pts_base_ms: None,
    }
    .into();
    let done: ServerMessage = SegmentComplete {
        segment_idx: 1,
        generation_time_ms: 1.0,
        e2e_latency_ms: None,
    }
    .into();
    for msg in [start, media, done] {
        let text = msg.to_json();
        assert!(!text.contains("null"), "{text}");
        assert_eq!(ServerMessage::from_json(&text).unwrap(), msg);
    }
    assert!(!wire(&all_messages()[0]).to_string().contains("null"));
}

#[test]
fn error_codes_are_snake_case() {
    let expected = [
        "session_rejected",
        "invalid_message",
        "gpu_unavailable",
        "worker_failed",
        "internal_error",
        "prompt_blocked",
        "preset_mismatch",
        "upstream_timeout",
    ];
    assert_eq!(ErrorCode::ALL.len(), expected.len());
    for (code, name) in ErrorCode::ALL.into_iter().zip(expected) {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        let msg = ServerMessage::error(code, "m", false);
        assert_eq!(wire(&msg)["code"], json!(name));
    }
}

#[test]
fn stream_complete_reasons_are_exactly_three() {
    for (reason, name) in [
        (StreamCompleteReason::SegmentCap, "segment_cap"),
        (StreamCompleteReason::StopRequested, "stop_requested"),
        (StreamCompleteReason::Error, "error"),
    ] {
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
    }
    assert!(
        ServerMessage::from_json(r#"{"type":"ltx2_stream_complete","reason":"idle_timeout"}"#)
            .is_err()
    );
}

#[test]
fn deserialize_defaults_match_upstream() {
    assert_eq!(
        ServerMessage::from_json(
            r#"{"type":"step_complete","segment_idx":0,"step":1,"total_steps":1}"#
        )
        .unwrap(),
        ServerMessage::StepComplete(StepComplete {
            segment_idx: 0,
            step: 1,
            total_steps: 1,
            stage: STAGE_DENOISE.into(),
        })
    );
    assert_eq!(
        ServerMessage::from_json(r#"{"type":"error","message":"x"}"#).unwrap(),
        ServerMessage::Error(ErrorMessage {
            code: ErrorCode::InternalError,
            message: "x".into(),
            retryable: false,
        })
    );
    assert_eq!(
        ServerMessage::from_json(r#"{"type":"ltx2_stream_complete"}"#).unwrap(),
        ServerMessage::Ltx2StreamComplete(StreamComplete {
            reason: StreamCompleteReason::StopRequested,
        })
    );
    // Upstream's media_init without mode still parses.
    let m = ServerMessage::from_json(
        r#"{"type":"media_init","segment_idx":0,"mime":"video/mp4","stream_id":"s"}"#,
    )
    .unwrap();
    assert!(matches!(
        m,
        ServerMessage::MediaInit(MediaInit {
            mode: MediaMode::AvFmp4,
            ..
        })
    ));
}

#[test]
fn from_impls_pick_the_right_variant() {
    assert!(matches!(
        ServerMessage::from(QueueStatus {
            position: 0,
            queue_depth: 0
        }),
        ServerMessage::QueueStatus(_)
    ));
    assert!(matches!(
        ServerMessage::from(GpuAssigned {
            gpu_id: 0,
            session_timeout: 1
        }),
        ServerMessage::GpuAssigned(_)
    ));
    assert!(matches!(
        ServerMessage::from(SessionTimeout { timeout_seconds: 1 }),
        ServerMessage::SessionTimeout(_)
    ));
    assert!(matches!(
        ServerMessage::from(ContinuationStateSnapshot { state: state() }),
        ServerMessage::ContinuationStateSnapshot(_)
    ));
}

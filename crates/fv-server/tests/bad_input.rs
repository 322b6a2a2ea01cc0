//! Bad input gets an error frame and the right close code, never a dropped socket, and the
//! server keeps serving everyone else (protocol-facts §6, §9; fixes §18.5 and §18.6).

use base64::Engine;
use fv_testkit::{Received, TestServer, test_config};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn first_frame_rejected(
    server: &TestServer,
    frame: &str,
) -> anyhow::Result<(Value, u16, String)> {
    let mut c = server.connect().await?;
    c.send_text(frame).await?;
    let err = c.expect("error").await?;
    let (code, reason) = c.expect_close().await?;
    Ok((err, code, reason))
}

fn assert_human(message: &str) {
    for leak in ["tagged-union", "line 1 column", "invalid type: map"] {
        assert!(!message.contains(leak), "serde internals leaked: {message}");
    }
}

#[tokio::test]
async fn bad_first_frames_get_invalid_message_and_1003() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let cases = [
        ("not json at all", "invalid_init"),
        ("[1, 2]", "invalid_init"),
        (r#"{"no_type": 1}"#, "invalid_init"),
        (r#"{"type": "bogus"}"#, "invalid_init"),
        (
            r#"{"type": "session_init_v2", "stream_mode": "hls"}"#,
            "invalid_init",
        ),
        (
            r#"{"type": "session_init_v2", "curated_prompts": "not a list"}"#,
            "invalid_init",
        ),
        (
            r#"{"type": "session_init_v2", "initial_image": "x"}"#,
            "invalid_init",
        ),
        (
            r#"{"type": "segment_prompt_source", "prompt": "too early"}"#,
            "expected_session_init_v2",
        ),
        (r#"{"type": "snapshot_state"}"#, "expected_session_init_v2"),
    ];
    for (frame, expected_reason) in cases {
        let (err, code, reason) = first_frame_rejected(&server, frame).await?;
        assert_eq!(err["code"], "invalid_message", "{frame}: {err}");
        assert_eq!(err["retryable"], false, "{frame}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty());
        assert_human(message);
        assert_eq!((code, reason.as_str()), (1003, expected_reason), "{frame}");
    }
    // A field-level problem names the field.
    let (err, _, _) = first_frame_rejected(
        &server,
        r#"{"type": "session_init_v2", "stream_mode": "hls"}"#,
    )
    .await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stream_mode"),
        "{err}"
    );
    // The server still serves a well-behaved client.
    let mut ok = server.connect().await?;
    ok.init().await?;
    ok.segment("still alive").await?;
    Ok(())
}

#[tokio::test]
async fn binary_first_frame_is_answered_not_dropped() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.send_binary(vec![1, 2, 3]).await?;
    let err = c.expect("error").await?;
    assert_eq!(err["code"], "invalid_message");
    assert_eq!(c.expect_close().await?, (1003, "invalid_init".to_string()));
    Ok(())
}

#[tokio::test]
async fn bad_later_frames_are_retryable_errors_and_the_session_goes_on() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let cases: [(&str, &str); 6] = [
        ("{not json", ""),
        (r#"{"type": "wat"}"#, "type"),
        (r#"{"type": "segment_prompt_source"}"#, "prompt"),
        (
            r#"{"type": "segment_prompt_source", "prompt": "p", "seed": "abc"}"#,
            "seed",
        ),
        (
            r#"{"type": "enhancement_updated", "enabled": "maybe"}"#,
            "enabled",
        ),
        (
            r#"{"type": "segment_prompt_source", "prompt": "p", "num_inference_steps": 0}"#,
            "num_inference_steps",
        ),
    ];
    for (frame, field) in cases {
        c.send_text(frame).await?;
        let err = c.expect("error").await?;
        assert_eq!(err["code"], "invalid_message", "{frame}");
        assert_eq!(err["retryable"], true, "{frame}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{frame}: {message}");
        assert_human(message);
    }
    c.send_binary(vec![0; 10]).await?;
    let err = c.expect("error").await?;
    assert_eq!(err["retryable"], true);
    // Still open and working.
    c.segment("after the noise").await?;
    Ok(())
}

#[tokio::test]
async fn oversized_frames_close_with_1009() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.max_message_bytes = 64 * 1024;
    let server = TestServer::start(config).await?;
    // As the first frame.
    let mut c = server.connect().await?;
    let big = format!(
        r#"{{"type":"session_init_v2","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    c.send_text(&big).await?;
    let (code, reason) = c.expect_close().await?;
    assert_eq!(code, 1009);
    assert!(reason.contains("65536"), "{reason}");
    // Mid-session.
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_text(&big).await?;
    assert_eq!(c.expect_close().await?.0, 1009);
    // Others are unaffected.
    let mut ok = server.connect().await?;
    ok.init().await?;
    ok.segment("fine").await?;
    Ok(())
}

/// The close frame must reach a client that is still writing: the server reads and discards
/// the rest instead of dropping the socket with unread data (a TCP reset, seen as 1006).
#[tokio::test]
async fn an_oversized_frame_closes_1009_while_the_client_keeps_writing() -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = test_config();
    config.streaming.max_message_bytes = 64 * 1024;
    let server = TestServer::start(config).await?;
    for round in 0..5 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
        // Everything is written before anything is read: the server refuses the first frame
        // at its header, and the rest is still on the wire when the close frame goes out.
        // A reset would fail these writes (and lose the close frame for most clients).
        let frame = "x".repeat(1024 * 1024);
        for i in 0..16 {
            if let Err(e) = ws.send(Message::Text(frame.clone().into())).await {
                anyhow::bail!("round {round}: write {i} failed: {e}");
            }
        }
        let close = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await? {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => anyhow::bail!("round {round}: connection broke: {e}"),
                None => anyhow::bail!("round {round}: connection ended without a close frame"),
            }
        };
        assert_eq!(close, Some(1009), "round {round}");
    }
    Ok(())
}

fn png_bytes() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[0u8; 64]);
    b
}

#[tokio::test]
async fn bad_initial_images_are_rejected_with_an_error_frame() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.max_init_image_bytes = 1024;
    let server = TestServer::start(config).await?;
    let good = B64.encode(png_bytes());
    let cases = [
        (
            json!({"mime": "image/gif", "data": good}),
            "initial_image.mime",
        ),
        (
            json!({"mime": "image/png", "data": "not*base64"}),
            "initial_image.data",
        ),
        (
            json!({"mime": "image/png", "data": format!(" {good}")}),
            "initial_image.data",
        ),
        (
            json!({"mime": "image/png", "data": ""}),
            "initial_image.data",
        ),
        (
            json!({"mime": "image/png", "data": 5}),
            "initial_image.data",
        ),
        (
            json!({"mime": "image/png", "data": B64.encode(vec![0x89; 2048])}),
            "initial_image.data",
        ),
        (
            json!({"mime": "image/jpeg", "data": B64.encode(b"GIF89a is not accepted")}),
            "initial_image.data",
        ),
    ];
    for (image, field) in cases {
        let mut c = server.connect().await?;
        c.send_json(&json!({"type": "session_init_v2", "initial_image": image}))
            .await?;
        let err = anyhow::Context::with_context(c.expect("error").await, || format!("{image}"))?;
        assert_eq!(err["code"], "invalid_message", "{image}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{image}: {message}");
        assert_eq!(c.expect_close().await?, (1003, "invalid_init".to_string()));
    }
    let mut ok = server.connect().await?;
    ok.init().await?;
    Ok(())
}

#[tokio::test]
async fn client_close_mid_session_is_a_clean_end() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.close(1000, "bye").await?;
    match c.recv().await? {
        Received::Close(code, _) => assert_eq!(code, 1000),
        other => panic!("expected the close echo, got {other:?}"),
    }
    let (_, body) = server.get("/health").await?;
    let health: Value = serde_json::from_str(&body)?;
    assert!(health["sessions"].as_u64().is_some());
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_text_closes_1007() -> anyhow::Result<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start(test_config()).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
    let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await?;
    use futures_util::StreamExt;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await?;
    match next {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1007),
        other => panic!("expected close 1007, got {other:?}"),
    }
    Ok(())
}

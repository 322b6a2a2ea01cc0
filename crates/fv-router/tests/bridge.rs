//! The byte-exact bridge: frames, close codes and limits both ways, forwarded upgrade
//! headers, timeouts and peers that vanish.

#![allow(clippy::unwrap_used)]

mod common;

use common::replica_row;
use fv_testkit_router::Client;
use fv_testkit_router::router::{ScriptedReplica, TestRouter, blast_payload, router_config};
use serde_json::json;

#[tokio::test]
async fn replica_close_codes_and_reasons_reach_the_client() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    for (code, reason) in [
        (1003, "invalid_init"),
        (1013, "session_rejected"),
        (1000, "segment_cap"),
        (4000, "custom reason"),
    ] {
        let mut c = router.connect().await.unwrap();
        c.init().await.unwrap();
        c.send_json(
            &json!({"type": "segment_prompt_source", "prompt": format!("close {code} {reason}")}),
        )
        .await
        .unwrap();
        assert_eq!(c.expect_close().await.unwrap(), (code, reason.to_string()));
    }
}

#[tokio::test]
async fn client_close_code_and_reason_reach_the_replica() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    c.close(4001, "bye from the client").await.unwrap();
    // The client's close handshake completes.
    assert_eq!(
        c.expect_close().await.unwrap(),
        (4001, "bye from the client".into())
    );
    assert_eq!(
        replica.wait_client_close().await.unwrap(),
        Some((4001, "bye from the client".into()))
    );
}

#[tokio::test]
async fn replica_vanishing_mid_session_is_a_worker_failed_error() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "drop"}))
        .await
        .unwrap();
    let err = c.recv_json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "worker_failed");
    assert_eq!(err["retryable"], true);
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1011, "worker_failed".into())
    );
}

#[tokio::test]
async fn client_vanishing_drops_the_replica_connection() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let url = replica.url();
    let router = TestRouter::start_ready(router_config(std::slice::from_ref(&url)), 1)
        .await
        .unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    router
        .wait_for("one session", |s| {
            replica_row(s, &url)["active_sessions"] == 1
        })
        .await
        .unwrap();
    c.abort();
    router
        .wait_for("session gone", |s| {
            replica_row(s, &url)["active_sessions"] == 0
        })
        .await
        .unwrap();
    // Like the client, the router left without a close frame.
    assert!(replica.client_closes().is_empty());
}

#[tokio::test]
async fn large_binary_frames_pass_both_ways_unchanged() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let replica = ScriptedReplica::start(1).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    // A raw client without tungstenite's 16 MiB frame default, like a browser.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(router.ws_url(), Some(config), true)
            .await
            .unwrap();
    let next_data = async move |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break Err(t.to_string()),
            Message::Binary(b) => break Ok(b),
            _ => {}
        }
    };
    ws.send(Message::Text(r#"{"type":"session_init_v2"}"#.into()))
        .await
        .unwrap();
    assert!(
        next_data(&mut ws)
            .await
            .unwrap_err()
            .contains("gpu_assigned")
    );
    assert!(
        next_data(&mut ws)
            .await
            .unwrap_err()
            .contains("ltx2_stream_start")
    );
    // Over upstream's 1 MiB backend limit and tungstenite's 16 MiB frame default.
    let size = 20 * 1024 * 1024;
    let blast = format!(r#"{{"type":"segment_prompt_source","prompt":"blast 2 {size}"}}"#);
    ws.send(Message::Text(blast.into())).await.unwrap();
    let want = blast_payload(size);
    for _ in 0..2 {
        let got = next_data(&mut ws).await.unwrap();
        assert!(got.as_ref() == want.as_slice(), "a relayed frame differs");
    }
    assert!(
        next_data(&mut ws)
            .await
            .unwrap_err()
            .contains("ltx2_segment_complete")
    );
    // Client to replica: the replica echoes binary frames.
    let up: Vec<u8> = (0..18_000_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::Binary(up.clone().into())).await.unwrap();
    let echoed = next_data(&mut ws).await.unwrap();
    assert!(echoed.as_ref() == up.as_slice(), "echoed frame differs");
}

#[tokio::test]
async fn client_frame_over_the_limit_closes_both_sides_with_1009() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let mut config = router_config(&[replica.url()]);
    config.max_message_bytes = 64 * 1024;
    let router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    c.send_binary(vec![0; 64 * 1024 + 1]).await.unwrap();
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1009, "frame exceeds limit of 65536 bytes".into())
    );
    assert_eq!(
        replica.wait_client_close().await.unwrap().map(|c| c.0),
        Some(1009)
    );
}

#[tokio::test]
async fn query_and_headers_are_forwarded() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    let url = format!("{}?token=secret", router.ws_url());
    let mut c = Client::connect_with_headers(
        &url,
        &[
            ("authorization", "Bearer t0k"),
            ("origin", "http://app.example"),
        ],
    )
    .await
    .unwrap()
    .unwrap();
    c.init().await.unwrap();
    let head = replica.upgrade_heads().pop().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /v1/stream?token=secret "), "{head}");
    assert!(head.contains("authorization: bearer t0k"), "{head}");
    assert!(head.contains("origin: http://app.example"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
}

#[tokio::test]
async fn no_first_frame_in_time_is_a_session_timeout() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let mut config = router_config(&[replica.url()]);
    config.first_frame_timeout_seconds = 0.2;
    let router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut c = router.connect().await.unwrap();
    let msg = c.recv_json().await.unwrap();
    assert_eq!(
        msg,
        json!({"type": "session_timeout", "timeout_seconds": 1})
    );
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1000, "session_timeout".into())
    );
    assert_eq!(replica.sessions(), 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let url = replica.url();
    let mut config = router_config(std::slice::from_ref(&url));
    config.send_timeout_seconds = 0.3;
    let router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    // 96 MiB: far more than the socket buffers hold while the client reads nothing.
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "blast 96 1048576"}))
        .await
        .unwrap();
    router
        .wait_for("session dropped", |s| {
            replica_row(s, &url)["active_sessions"] == 0
        })
        .await
        .unwrap();
    drop(c);
}

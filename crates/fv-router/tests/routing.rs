//! The router in-process on port 0 in front of real mock servers and scripted replicas.

#![allow(clippy::unwrap_used)]

use fv_testkit::router::{ScriptedReplica, TestRouter, blast_payload, router_config};
use fv_testkit::{Client, Received, TestServer, decode_fmp4, test_config};
use serde_json::{Value, json};
use std::time::Duration;

/// `gpu_id` from the messages `Client::init*` returned (the scripted replicas put their id there).
fn gpu_id(init: &[Value]) -> u64 {
    init.iter()
        .find(|m| m["type"] == "gpu_assigned")
        .and_then(|m| m["gpu_id"].as_u64())
        .expect("gpu_assigned in the init transcript")
}

async fn replica_active(server: &TestServer) -> u64 {
    let (_, body) = server.get("/status").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["active_sessions"].as_u64().unwrap()
}

/// Waits until a mock server reports `n` active sessions.
async fn wait_active(server: &TestServer, n: u64) {
    for _ in 0..500 {
        if replica_active(server).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replica never reached {n} active sessions");
}

/// A mock server with a worker for every session a test holds open (sessions beyond the
/// workers would wait in the replica's queue).
async fn roomy_server() -> TestServer {
    let mut c = test_config();
    c.streaming.pool.num_workers = Some(4);
    TestServer::start(c).await.unwrap()
}

fn replica_row<'a>(status: &'a Value, url: &str) -> &'a Value {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == url)
        .unwrap()
}

#[tokio::test]
async fn balances_sessions_across_two_replicas() {
    let a = roomy_server().await;
    let b = roomy_server().await;
    let urls = vec![format!("http://{}", a.addr), format!("http://{}", b.addr)];
    let router = TestRouter::start_ready(router_config(&urls), 2)
        .await
        .unwrap();
    // Capacity comes from the replicas' /status.
    router
        .wait_for("capacity reported", |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["reported"]["max_sessions"] == 8)
        })
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = router.connect().await.unwrap();
        c.init().await.unwrap();
        clients.push(c);
    }
    wait_active(&a, 3).await;
    wait_active(&b, 3).await;
    let status = router.status().await.unwrap();
    for url in &urls {
        let row = replica_row(&status, url);
        assert_eq!(row["active_sessions"], 3, "{status}");
        assert_eq!(row["sessions_routed"], 3, "{status}");
        assert_eq!(row["free_slots"], 5, "{status}");
    }
    // Sessions work end to end through the router.
    let t = clients[0].segment("a red fox").await.unwrap();
    assert_eq!(decode_fmp4(&t.media()).unwrap().frames, 6);
}

#[tokio::test]
async fn weight_shifts_the_share() {
    let a = ScriptedReplica::start(1).await.unwrap();
    let b = ScriptedReplica::start(2).await.unwrap();
    a.set_capacity(0, 100);
    b.set_capacity(0, 100);
    let mut config = router_config(&[a.url(), b.url()]);
    config.replicas[0].weight = 3.0;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    router
        .wait_for("capacity reported", |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["free_slots"] == 100)
        })
        .await
        .unwrap();
    let mut clients = Vec::new();
    let mut on_a = 0;
    for _ in 0..8 {
        let mut c = router.connect().await.unwrap();
        if gpu_id(&c.init().await.unwrap()) == 1 {
            on_a += 1;
        }
        clients.push(c);
    }
    // Weighted free capacity: 3 x 100 beats 1 x 100 until `a` has given up far more slots.
    assert_eq!(on_a, 8);
}

#[tokio::test]
async fn killed_replica_sends_new_sessions_to_the_survivor() {
    let a = roomy_server().await;
    let b = roomy_server().await;
    let a_url = format!("http://{}", a.addr);
    let urls = vec![a_url.clone(), format!("http://{}", b.addr)];
    let mut config = router_config(&urls);
    // `a` is primary so the first session surely lands there.
    config.replicas[0].primary = true;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    let mut on_a = router.connect().await.unwrap();
    on_a.init().await.unwrap();
    wait_active(&a, 1).await;
    // Kill `a` mid-session: its listener goes away and its sessions are closed by its drain.
    drop(a);
    // The replica's own close code reaches the client.
    let (code, reason) = loop {
        match on_a.recv().await.unwrap() {
            Received::Close(code, reason) => break (code, reason),
            Received::Json(_) | Received::Binary(_) => {}
            Received::Dropped => panic!("expected the replica's close frame"),
        }
    };
    assert_eq!((code, reason.as_str()), (1001, "server_shutdown"));
    // New sessions land on `b`, even before the probes noticed (a refused connect fails over
    // and counts as a failed probe).
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = router.connect().await.unwrap();
        c.init().await.unwrap();
        c.segment("after the crash").await.unwrap();
        clients.push(c);
    }
    wait_active(&b, 3).await;
    // `a` leaves the rotation, and its session is gone once the close handshake is over.
    router
        .wait_for("a unhealthy and empty", |s| {
            let row = replica_row(s, &a_url);
            row["status"] == "unhealthy" && row["active_sessions"] == 0
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn unhealthy_replica_recovers_after_recovery_threshold_successes() {
    let a = ScriptedReplica::start(1).await.unwrap();
    let b = ScriptedReplica::start(2).await.unwrap();
    let mut config = router_config(&[a.url(), b.url()]);
    config.health_check.interval_seconds = 0.2;
    config.health_check.recovery_threshold = 3;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    a.set_health(503);
    router
        .wait_for("a unhealthy", |s| {
            replica_row(s, &a.url())["status"] == "unhealthy"
        })
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = router.connect().await.unwrap();
        assert_eq!(gpu_id(&c.init().await.unwrap()), 2, "only b is healthy");
        held.push(c);
    }
    a.set_health(200);
    // Successes accumulate while `a` is still out of rotation ...
    let still_out = router
        .wait_for("a succeeding but unhealthy", |s| {
            let row = replica_row(s, &a.url());
            row["status"] == "unhealthy" && row["consecutive_successes"].as_u64() >= Some(1)
        })
        .await
        .unwrap();
    assert_eq!(replica_row(&still_out, &a.url())["consecutive_failures"], 0);
    // ... and it is back only with `recovery_threshold` of them.
    let back = router
        .wait_for("a healthy", |s| {
            replica_row(s, &a.url())["status"] == "healthy"
        })
        .await
        .unwrap();
    assert!(replica_row(&back, &a.url())["consecutive_successes"].as_u64() >= Some(3));
    // `b` holds 3 sessions, `a` none: the next session goes to `a`.
    let mut c = router.connect().await.unwrap();
    assert_eq!(gpu_id(&c.init().await.unwrap()), 1);
}

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
async fn real_replica_rejections_pass_through() {
    let server = TestServer::start(test_config()).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[format!("http://{}", server.addr)]), 1)
        .await
        .unwrap();
    // The replica validates the first frame, not the router.
    let mut c = router.connect().await.unwrap();
    c.send_json(&json!({"type": "snapshot_state"}))
        .await
        .unwrap();
    let err = c.recv_json().await.unwrap();
    assert_eq!(err["code"], "invalid_message");
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1003, "expected_session_init_v2".into())
    );
    // Binary first frame: the router relays it, the replica refuses it.
    let mut c = router.connect().await.unwrap();
    c.send_binary(vec![1, 2, 3]).await.unwrap();
    assert_eq!(c.recv_json().await.unwrap()["code"], "invalid_message");
    assert_eq!(c.expect_close().await.unwrap().0, 1003);
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
async fn segments_through_the_router_are_byte_identical_to_direct() {
    let server = TestServer::start(test_config()).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[format!("http://{}", server.addr)]), 1)
        .await
        .unwrap();
    let mut direct = server.connect().await.unwrap();
    direct.init().await.unwrap();
    let want = direct.segment("the same prompt").await.unwrap();
    let mut routed = router.connect().await.unwrap();
    routed.init().await.unwrap();
    let got = routed.segment("the same prompt").await.unwrap();
    assert!(!want.binaries.is_empty());
    assert_eq!(got.binaries.len(), want.binaries.len());
    for (i, (g, w)) in got.binaries.iter().zip(&want.binaries).enumerate() {
        assert!(
            g == w,
            "binary frame {i} differs ({} vs {} bytes)",
            g.len(),
            w.len()
        );
    }
    assert_eq!(got.order, want.order, "same frames, same kinds, same order");
    assert_eq!(decode_fmp4(&got.media()).unwrap().frames, 6);
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
async fn same_client_id_goes_back_to_the_same_replica() {
    let a = ScriptedReplica::start(1).await.unwrap();
    let b = ScriptedReplica::start(2).await.unwrap();
    let router = TestRouter::start_ready(router_config(&[a.url(), b.url()]), 2)
        .await
        .unwrap();
    let mut first = router.connect().await.unwrap();
    let home = gpu_id(
        &first
            .init_with(json!({"client_id": "alice"}))
            .await
            .unwrap(),
    );
    first.close(1000, "").await.unwrap();
    let _ = first.expect_close().await;
    for round in 0..4 {
        // Other clients in between move the round-robin along.
        let mut other = router.connect().await.unwrap();
        other
            .init_with(json!({"client_id": format!("other-{round}")}))
            .await
            .unwrap();
        let mut again = router.connect().await.unwrap();
        let id = gpu_id(
            &again
                .init_with(json!({"client_id": "alice"}))
                .await
                .unwrap(),
        );
        assert_eq!(id, home, "round {round}");
    }
    // Without an id, sessions spread over both replicas.
    let mut seen = std::collections::BTreeSet::new();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = router.connect().await.unwrap();
        seen.insert(gpu_id(&c.init().await.unwrap()));
        held.push(c);
    }
    assert_eq!(seen.len(), 2);
    // When the sticky replica is unhealthy, the client goes elsewhere.
    let (home_replica, other_id) = if home == 1 { (&a, 2) } else { (&b, 1) };
    home_replica.set_health(503);
    let home_url = home_replica.url();
    router
        .wait_for("home unhealthy", |s| {
            replica_row(s, &home_url)["status"] == "unhealthy"
        })
        .await
        .unwrap();
    let mut moved = router.connect().await.unwrap();
    let id = gpu_id(
        &moved
            .init_with(json!({"client_id": "alice"}))
            .await
            .unwrap(),
    );
    assert_eq!(id, other_id);
}

#[tokio::test]
async fn no_healthy_replica_is_gpu_unavailable_and_1013() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    replica.set_health(503);
    let router = TestRouter::start(router_config(&[replica.url()]))
        .await
        .unwrap();
    let url = replica.url();
    router
        .wait_for("unhealthy", |s| {
            replica_row(s, &url)["status"] == "unhealthy"
        })
        .await
        .unwrap();
    let (code, body) = router.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    let mut c = router.connect().await.unwrap();
    c.send_json(&json!({"type": "session_init_v2"}))
        .await
        .unwrap();
    let err = c.recv_json().await.unwrap();
    assert_eq!(
        err,
        json!({"type": "error", "code": "gpu_unavailable",
               "message": "router: no healthy replica available", "retryable": true})
    );
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1013, "no_healthy_replica".into())
    );
    assert_eq!(replica.sessions(), 0);
    let (_, metrics) = router.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("fv_router_rejected_total{reason=\"no_healthy_replica\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_full_replica_is_skipped() {
    // `a` is primary but holds one session at most; the router reads that from its /status.
    let mut small = test_config();
    small.streaming.max_sessions = 1;
    small.streaming.max_sessions_per_ip = 1;
    let a = TestServer::start(small).await.unwrap();
    let b = TestServer::start(test_config()).await.unwrap();
    let a_url = format!("http://{}", a.addr);
    let mut config = router_config(&[a_url.clone(), format!("http://{}", b.addr)]);
    config.replicas[0].primary = true;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    router
        .wait_for("capacity of a", |s| {
            replica_row(s, &a_url)["reported"]["max_sessions"] == 1
        })
        .await
        .unwrap();
    let mut first = router.connect().await.unwrap();
    first.init().await.unwrap();
    wait_active(&a, 1).await;
    let mut second = router.connect().await.unwrap();
    second.init().await.unwrap();
    wait_active(&b, 1).await;
    assert_eq!(replica_active(&a).await, 1);
    let status = router.status().await.unwrap();
    assert_eq!(replica_row(&status, &a_url)["free_slots"], 0);
}

#[tokio::test]
async fn a_rejection_before_the_client_saw_anything_fails_over() {
    // Without /status the router cannot know `a` is full; `a` answers session_rejected and the
    // session moves to `b` without the client noticing.
    let mut small = test_config();
    small.streaming.max_sessions = 1;
    let a = TestServer::start(small).await.unwrap();
    let b = TestServer::start(test_config()).await.unwrap();
    let mut config = router_config(&[format!("http://{}", a.addr), format!("http://{}", b.addr)]);
    config.replicas[0].primary = true;
    config.health_check.status_path = None;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    let mut occupant = a.connect().await.unwrap();
    occupant.init().await.unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    let t = c.segment("moved").await.unwrap();
    assert_eq!(decode_fmp4(&t.media()).unwrap().frames, 6);
    wait_active(&b, 1).await;
    let (_, metrics) = router.get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fv_router_failovers_total")
                && l.contains("reason=\"session_rejected\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_upgrades_fail_over_or_refuse() {
    let a = ScriptedReplica::start(1).await.unwrap();
    let b = ScriptedReplica::start(2).await.unwrap();
    let mut config = router_config(&[a.url(), b.url()]);
    config.replicas[0].primary = true;
    let router = TestRouter::start_ready(config, 2).await.unwrap();
    // 503 from the primary: the session lands on `b`.
    a.set_upgrade_status(Some(503));
    let mut c = router.connect().await.unwrap();
    assert_eq!(gpu_id(&c.init().await.unwrap()), 2);
    // 401 is about the client's credentials: no other replica is tried.
    a.set_upgrade_status(None);
    b.set_upgrade_status(Some(401));
    a.set_reject(true);
    let mut c = router.connect().await.unwrap();
    c.send_json(&json!({"type": "session_init_v2"}))
        .await
        .unwrap();
    // `a` rejects (full) and `b` refuses the upgrade with 401.
    let err = c.recv_json().await.unwrap();
    assert_eq!(err["code"], "worker_failed", "{err}");
    assert_eq!(err["retryable"], false, "{err}");
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1008, "replica_refused".into())
    );
}

#[tokio::test]
async fn the_last_replica_s_rejection_reaches_the_client() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    replica.set_reject(true);
    let router = TestRouter::start_ready(router_config(&[replica.url()]), 1)
        .await
        .unwrap();
    let mut c = router.connect().await.unwrap();
    c.send_json(&json!({"type": "session_init_v2"}))
        .await
        .unwrap();
    assert_eq!(c.recv_json().await.unwrap()["code"], "session_rejected");
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1013, "session_rejected".into())
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

#[tokio::test]
async fn endpoints_report_replicas_and_metrics() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    replica.set_capacity(2, 4);
    let mut config = router_config(&[replica.url()]);
    config.replicas[0].name = Some("gpu-a".into());
    let router = TestRouter::start_ready(config, 1).await.unwrap();
    let (code, body) = router.get("/healthz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = router.get("/readyz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    c.segment("hello").await.unwrap();
    let status = router
        .wait_for("reported", |s| {
            s["replicas"][0]["reported"]["max_sessions"] == 4
        })
        .await
        .unwrap();
    let row = &status["replicas"][0];
    assert_eq!(row["url"], replica.url());
    assert_eq!(row["name"], "gpu-a");
    assert_eq!(row["primary"], false);
    assert_eq!(row["weight"], 1.0);
    assert_eq!(row["status"], "healthy");
    assert_eq!(row["consecutive_failures"], 0);
    assert_eq!(row["active_sessions"], 1);
    assert!(row["last_ok_at"].as_f64().unwrap() > 1.6e9);
    assert!(row["last_latency_ms"].as_f64().unwrap() >= 0.0);
    // The replica reports 2 of 4 (its own number, not counting ours): 1 routed on top.
    assert!(row["free_slots"].as_u64().unwrap() <= 2, "{row}");
    let (code, metrics) = router.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    for name in fv_router::metrics::ALL {
        if name != fv_router::metrics::FAILOVERS_TOTAL && name != fv_router::metrics::REJECTED_TOTAL
        {
            assert!(metrics.contains(name), "{name} missing:\n{metrics}");
        }
    }
    assert!(
        metrics.contains("fv_router_sessions_routed_total{replica=\"gpu-a\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fv_router_replica_up{replica=\"gpu-a\"} 1"),
        "{metrics}"
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with("fv_router_bridge_bytes_total") && l.contains("to_replica"))
        .unwrap();
    let sent: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(sent > 0.0, "{line}");
}

#[tokio::test]
async fn drain_refuses_new_sessions_lets_old_ones_finish_then_closes_1001() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let mut config = router_config(&[replica.url()]);
    config.shutdown_grace_seconds = 1.0;
    let mut router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    let addr = router.addr;
    router.begin_shutdown();
    // Readiness flips and new upgrades are refused with HTTP 503.
    let mut ready = 200;
    for _ in 0..100 {
        ready = fv_testkit::http_get(addr, "/readyz").await.unwrap().0;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready, 503);
    let refused = Client::connect_with_headers(&format!("ws://{addr}/v1/stream"), &[])
        .await
        .unwrap();
    assert_eq!(refused.err(), Some(503));
    // The bridged session keeps working during the grace period ...
    c.segment("still here").await.unwrap();
    // ... and is closed with 1001 on both sides when it is over.
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1001, "server_shutdown".into())
    );
    assert_eq!(
        replica.wait_client_close().await.unwrap(),
        Some((1001, "server_shutdown".into()))
    );
    router.shutdown().await.unwrap();
}

#[tokio::test]
async fn sessions_over_the_router_limit_get_503() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let mut config = router_config(&[replica.url()]);
    config.max_sessions = 1;
    let router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut first = router.connect().await.unwrap();
    first.init().await.unwrap();
    let refused = Client::connect_with_headers(&router.ws_url(), &[])
        .await
        .unwrap();
    assert_eq!(refused.err(), Some(503));
    // Once the first session is gone, there is room again.
    first.close(1000, "").await.unwrap();
    let _ = first.expect_close().await;
    drop(first);
    let url = replica.url();
    router
        .wait_for("no session", |s| {
            replica_row(s, &url)["active_sessions"] == 0
        })
        .await
        .unwrap();
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = Client::connect_with_headers(&router.ws_url(), &[])
            .await
            .unwrap()
        {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again
        .expect("a session after the first one ended")
        .init()
        .await
        .unwrap();
}

#[tokio::test]
async fn drain_finishes_early_when_sessions_end() {
    let replica = ScriptedReplica::start(1).await.unwrap();
    let mut config = router_config(&[replica.url()]);
    // Far longer than the test waits: the router must stop because the session ended.
    config.shutdown_grace_seconds = 600.0;
    let mut router = TestRouter::start_ready(config, 1).await.unwrap();
    let mut c = router.connect().await.unwrap();
    c.init().await.unwrap();
    router.begin_shutdown();
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "close 1000 segment_cap"}))
        .await
        .unwrap();
    assert_eq!(
        c.expect_close().await.unwrap(),
        (1000, "segment_cap".into())
    );
    tokio::time::timeout(Duration::from_secs(30), router.shutdown())
        .await
        .expect("router stops once its sessions are gone")
        .unwrap();
}

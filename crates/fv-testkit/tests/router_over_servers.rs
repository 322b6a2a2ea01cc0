//! The router in front of real streaming servers (mock generator), in-process on port 0.
//!
//! These live here rather than in fv-router's tests because they need the server: fv-router's
//! own tests must not compile it (`cargo xtask check-layers` enforces that).

#![allow(clippy::unwrap_used)]

use fv_testkit::router::{TestRouter, router_config};
use fv_testkit::{Received, TestServer, decode_fmp4, test_config};
use serde_json::{Value, json};
use std::time::Duration;

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
async fn the_product_protocol_goes_through_the_router() {
    let server = roomy_server().await;
    let url = format!("http://{}", server.addr);
    let router = TestRouter::start_ready(router_config(std::slice::from_ref(&url)), 1)
        .await
        .unwrap();
    let mut c = fv_testkit::Client::connect_product(&format!("ws://{}/ws", router.addr))
        .await
        .unwrap();
    c.send_json(
        &json!({"type": "session_init_v2", "preset_id": "p", "preset_label": "P",
        "curated_prompts": ["a whale", "a sky"]}),
    )
    .await
    .unwrap();
    // The replica's /ws answered: product messages, 1-based indices, media.
    c.recv_until("seed_prompts_updated").await.unwrap();
    let source = c.recv_until("segment_prompt_source").await.unwrap();
    assert_eq!(source["segment_idx"], 1);
    let init = c.recv_until("media_init").await.unwrap();
    assert!(init["mime"].as_str().unwrap().contains("mp4a.40.2"));
    assert!(matches!(c.recv().await.unwrap(), Received::Binary(_)));
    c.recv_until("ltx2_segment_complete").await.unwrap();
    // The monitor page's view counts the session.
    let (code, body) = router.get("/router/replicas/sessions").await.unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let row = &v["replicas"][0];
    assert_eq!(row["url"], url);
    assert_eq!(row["healthy"], true);
    assert!(row["active_sessions"].as_u64().is_some(), "{v}");
    assert!(
        row["max_available_sessions"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{v}"
    );
}

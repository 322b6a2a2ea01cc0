//! The router's endpoints, metrics, session limit and graceful drain.

#![allow(clippy::unwrap_used)]

mod common;

use common::replica_row;
use fv_testkit_router::Client;
use fv_testkit_router::router::{ScriptedReplica, TestRouter, router_config};
use serde_json::json;
use std::time::Duration;

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
        ready = fv_testkit_router::http_get(addr, "/readyz")
            .await
            .unwrap()
            .0;
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

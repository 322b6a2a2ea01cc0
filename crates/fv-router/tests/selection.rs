//! The router in-process on port 0 in front of scripted replicas: which replica a session
//! gets (weights, health, stickiness, refusals and failover).

#![allow(clippy::unwrap_used)]

mod common;

use common::{gpu_id, replica_row};
use fv_testkit_router::router::{ScriptedReplica, TestRouter, router_config};
use serde_json::json;

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

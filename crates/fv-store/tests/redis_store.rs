//! Redis stores against a real `redis-server` (one per test, on a free port): conformance,
//! sharing between replicas, TTL on every key, large blobs, index consistency, and outages
//! (stopped, frozen, restarted Redis).
#![cfg(feature = "redis")]

mod support;

use fv_store::{
    BlobLimits, BlobStore, ContinuationStore, RedisBlobStore, RedisConnection, RedisOptions,
    RedisSection, RedisSessionStore, SessionLimits, SessionStore, StoreConfig, StoreError,
    StoreKind,
};
use redis::AsyncCommands;
use std::future::Future;
use std::time::Duration;
use support::conformance as c;
use support::redis_server::RedisServer;

/// Bound on any single call in these tests: far above every op timeout used, so hitting it
/// means a hang, not a slow machine.
const HANG: Duration = Duration::from_secs(30);

async fn no_hang<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG:?}"))
}

fn options(server: &RedisServer, prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.to_string(),
        op_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..RedisOptions::new(server.url())
    }
}

async fn connect(server: &RedisServer, prefix: &str) -> RedisConnection {
    RedisConnection::connect(&options(server, prefix))
        .await
        .expect("connect")
}

fn session_limits(capacity: usize) -> SessionLimits {
    SessionLimits {
        capacity,
        ..SessionLimits::default()
    }
}

fn blob_limits(max_total_bytes: usize, max_blob_bytes: usize, max_blobs: usize) -> BlobLimits {
    BlobLimits {
        max_total_bytes,
        max_blob_bytes,
        max_blobs,
        ..BlobLimits::default()
    }
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn keys(server: &RedisServer, prefix: &str) -> Vec<String> {
    let mut conn = raw(server).await;
    let mut keys: Vec<String> = conn.keys(format!("{prefix}*")).await.expect("KEYS");
    keys.sort();
    keys
}

#[tokio::test]
async fn sessions_conform() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = RedisSessionStore::new(connect(&server, "a:").await, session_limits(8)).expect("new");
    c::session_put_get_replace_drop(&s).await;
    let s = RedisSessionStore::new(connect(&server, "b:").await, session_limits(3)).expect("new");
    c::session_capacity_evicts_least_recently_put(&s).await;
}

#[tokio::test]
async fn blobs_conform() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = |prefix: &'static str, limits: BlobLimits| {
        let server = &server;
        async move { RedisBlobStore::new(connect(server, prefix).await, limits).expect("new") }
    };
    c::blob_put_get_drop(&store("a:", blob_limits(1000, 100, 100)).await).await;
    c::blob_total_bytes_cap(&store("b:", blob_limits(100, 40, 100)).await).await;
    c::blob_count_cap(&store("c:", blob_limits(1000, 100, 3)).await).await;
    c::blob_drop_session(&store("d:", blob_limits(1000, 100, 100)).await).await;
    c::blob_ids_are_checked(&store("e:", blob_limits(1000, 100, 100)).await).await;
    let b = store("f:", blob_limits(1000, 100, 100)).await;
    let id = b.put("owner", vec![1; 7], "image/png").await.expect("put");
    let info = b.blob_info(&id).await.expect("info").expect("live");
    assert_eq!(
        (info.session_id.as_str(), info.mime.as_str(), info.len),
        ("owner", "image/png", 7)
    );
    b.drop_blob(&id).await.expect("drop");
    assert_eq!(b.blob_info(&id).await.expect("info"), None);
}

#[tokio::test]
async fn replicas_on_one_redis_share_states_blobs_and_bounds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (connect(&server, "fv:").await, connect(&server, "fv:").await);
    let sa = RedisSessionStore::new(a.clone(), session_limits(2)).expect("new");
    let sb = RedisSessionStore::new(b.clone(), session_limits(2)).expect("new");
    sa.put_state("s1", c::state(1)).await.expect("put");
    assert_eq!(sb.get_state("s1").await.expect("get"), Some(c::state(1)));
    sb.put_state("s2", c::state(2)).await.expect("put");
    sa.put_state("s3", c::state(3)).await.expect("put");
    assert_eq!(
        sb.get_state("s1").await.expect("get"),
        None,
        "capacity is shared"
    );
    let ba = RedisBlobStore::new(a, blob_limits(1000, 100, 100)).expect("new");
    let bb = RedisBlobStore::new(b, blob_limits(1000, 100, 100)).expect("new");
    let id = ba.put("s1", vec![5; 50], "m").await.expect("put");
    assert_eq!(bb.get(&id).await.expect("get"), vec![5; 50]);
    bb.drop_session("s1").await.expect("drop");
    assert!(ba.get(&id).await.is_err());
    // Another prefix is another namespace.
    let other =
        RedisSessionStore::new(connect(&server, "other:").await, session_limits(2)).expect("new");
    assert_eq!(other.get_state("s3").await.expect("get"), None);
}

async fn stores_with_ttl(
    server: &RedisServer,
    prefix: &str,
    ttl: Duration,
) -> (RedisSessionStore, RedisBlobStore) {
    let conn = connect(server, prefix).await;
    let s = RedisSessionStore::new(
        conn.clone(),
        SessionLimits {
            ttl,
            ..session_limits(8)
        },
    )
    .expect("new");
    let b = RedisBlobStore::new(
        conn,
        BlobLimits {
            ttl,
            ..blob_limits(1000, 100, 100)
        },
    )
    .expect("new");
    (s, b)
}

#[tokio::test]
async fn every_key_has_a_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (s, b) = stores_with_ttl(&server, "ttl:", Duration::from_secs(60)).await;
    s.put_state("s", c::state(0)).await.expect("put");
    let id = b.put("s", vec![1; 10], "m").await.expect("put");
    let all = keys(&server, "ttl:").await;
    assert_eq!(
        all,
        [
            format!("ttl:blob:{id}"),
            format!("ttl:blob:{id}:meta"),
            "ttl:blobs:clock".into(),
            "ttl:blobs:order".into(),
            "ttl:blobs:owner".into(),
            "ttl:blobs:size".into(),
            "ttl:blobs:total".into(),
            "ttl:session-blobs:s".into(),
            "ttl:state:s".into(),
            "ttl:states:clock".into(),
            "ttl:states:order".into(),
        ]
    );
    let mut raw = raw(&server).await;
    for key in &all {
        let pttl: i64 = raw.pttl(key).await.expect("PTTL");
        assert!((1..=60_000).contains(&pttl), "{key} has PTTL {pttl}");
    }
}

#[tokio::test]
async fn everything_expires_after_the_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ttl = Duration::from_millis(300);
    let (s, b) = stores_with_ttl(&server, "exp:", ttl).await;
    s.put_state("s", c::state(0)).await.expect("put");
    let id = b.put("s", vec![1; 10], "m").await.expect("put");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(s.get_state("s").await.expect("get"), None, "state expired");
    assert_eq!(b.get(&id).await.expect_err("expired"), c::not_found(&id));
    assert_eq!(
        keys(&server, "exp:").await,
        Vec::<String>::new(),
        "every key expired"
    );
    // The stores work on after everything expired.
    let id = b.put("s", vec![2; 10], "m").await.expect("put");
    assert_eq!(b.get(&id).await.expect("get"), vec![2; 10]);
    s.put_state("s", c::state(1)).await.expect("put");
    assert_eq!(s.get_state("s").await.expect("get"), Some(c::state(1)));
}

#[tokio::test]
async fn large_blobs_round_trip_and_the_cap_holds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let max = 48 * 1024 * 1024;
    // Moving 48 MiB through a debug build takes longer than the other tests' 500 ms.
    let conn = RedisConnection::connect(&RedisOptions {
        op_timeout: Duration::from_secs(20),
        ..options(&server, "big:")
    })
    .await
    .expect("connect");
    let b = RedisBlobStore::new(conn, blob_limits(2 * max, max, 10)).expect("new");
    let started = std::time::Instant::now();
    let data: Vec<u8> = (0..max).map(|i| (i % 253) as u8).collect();
    let id = b.put("s", data.clone(), "m").await.expect("48 MiB put");
    assert!(b.get(&id).await.expect("48 MiB get") == data);
    eprintln!("48 MiB put + get: {:?}", started.elapsed());
    let err = b
        .put("s", vec![0; max + 1], "m")
        .await
        .expect_err("over the cap");
    assert_eq!(err, StoreError::TooLarge { size: max + 1, max });
    // A third blob of the max size evicts the first (2 × max total).
    let second = b.put("s", vec![1; max], "m").await.expect("put");
    b.put("s", vec![2; max], "m").await.expect("put");
    assert!(b.get(&id).await.is_err());
    assert_eq!(b.get(&second).await.expect("get").len(), max);
}

#[tokio::test]
async fn the_index_matches_the_data_after_puts_drops_and_evictions() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b =
        RedisBlobStore::new(connect(&server, "ix:").await, blob_limits(500, 100, 8)).expect("new");
    for i in 0..40u8 {
        let id = b
            .put(&format!("s{}", i % 3), vec![i; 10 + usize::from(i)], "m")
            .await
            .expect("put");
        if i % 5 == 0 {
            b.drop_blob(&id).await.expect("drop");
        }
        if i % 13 == 0 {
            b.drop_session("s1").await.expect("drop session");
        }
    }
    let mut raw = raw(&server).await;
    let mut live: Vec<String> = raw.keys("ix:blob:*").await.expect("KEYS");
    let metas = live.iter().filter(|k| k.ends_with(":meta")).count();
    live.retain(|k| !k.ends_with(":meta"));
    assert_eq!(metas, live.len(), "one meta key per blob");
    let mut sum = 0usize;
    for key in &live {
        let len: usize = raw.strlen(key).await.expect("STRLEN");
        sum += len;
    }
    let total: usize = raw.get("ix:blobs:total").await.expect("total");
    let count: usize = raw.zcard("ix:blobs:order").await.expect("zcard");
    assert_eq!(total, sum);
    assert_eq!(count, live.len());
    assert!(total <= 500 && count <= 8);
    let sizes: usize = raw.hlen("ix:blobs:size").await.expect("hlen");
    assert_eq!(sizes, count);
}

#[tokio::test]
async fn a_corrupt_state_is_reported() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = RedisSessionStore::new(connect(&server, "c:").await, session_limits(8)).expect("new");
    let mut raw = raw(&server).await;
    let _: () = raw.set("c:state:x", "not json").await.expect("SET");
    let err = s.get_state("x").await.expect_err("corrupt");
    assert_eq!(err.kind(), "corrupt");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_stopped_redis_fails_fast_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let conn = connect(&server, "r:").await;
    let s = RedisSessionStore::new(conn.clone(), session_limits(8)).expect("new");
    let b = RedisBlobStore::new(conn, blob_limits(1000, 100, 100)).expect("new");
    s.put_state("s", c::state(0)).await.expect("put");

    server.stop();
    for _ in 0..3 {
        let err = no_hang("get_state", s.get_state("s"))
            .await
            .expect_err("redis is down");
        assert!(err.is_retryable(), "{err:?}");
        assert!(matches!(err.kind(), "unavailable" | "timeout"), "{err:?}");
        let err = no_hang("put", b.put("s", vec![1], "m"))
            .await
            .expect_err("down");
        assert!(err.is_retryable(), "{err:?}");
    }

    server.restart();
    // The manager reconnects on its own; calls fail cleanly until it has.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match no_hang("put_state", s.put_state("s", c::state(1))).await {
            Ok(()) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(
                    attempts < 100,
                    "no reconnect after {attempts} attempts: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(s.get_state("s").await.expect("get"), Some(c::state(1)));
    let id = b
        .put("s", vec![9; 9], "m")
        .await
        .expect("put after restart");
    assert_eq!(b.get(&id).await.expect("get"), vec![9; 9]);
}

#[tokio::test]
async fn a_frozen_redis_times_out_within_the_op_timeout() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let conn = connect(&server, "p:").await;
    let s = RedisSessionStore::new(conn.clone(), session_limits(8)).expect("new");
    let b = RedisBlobStore::new(conn, blob_limits(1000, 100, 100)).expect("new");
    s.put_state("s", c::state(0)).await.expect("put");
    server.pause();
    let err = no_hang("get_state", s.get_state("s"))
        .await
        .expect_err("frozen");
    assert_eq!(
        err,
        StoreError::Timeout {
            op: "get_state",
            after_ms: 500
        }
    );
    assert_eq!(err.to_string(), "store get_state timed out after 500 ms");
    let err = no_hang("put", b.put("s", vec![1], "m"))
        .await
        .expect_err("frozen");
    assert!(err.is_retryable(), "{err:?}");
    server.resume();
    let mut attempts = 0;
    while no_hang("get_state", s.get_state("s")).await.is_err() {
        attempts += 1;
        assert!(attempts < 100, "no recovery after resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get_state("s").await.expect("get"), Some(c::state(0)));
}

#[tokio::test]
async fn connecting_to_nothing_is_a_clean_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let options = RedisOptions {
        op_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..RedisOptions::new(format!("redis://127.0.0.1:{port}"))
    };
    let err = no_hang("connect", RedisConnection::connect(&options))
        .await
        .expect_err("nothing listens");
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err.kind(), "unavailable" | "timeout"), "{err:?}");
}

#[tokio::test]
async fn the_configured_redis_stores_keep_snapshot_json_small() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = StoreConfig {
        kind: StoreKind::Redis,
        inline_max_bytes: 1024,
        redis: Some(RedisSection {
            key_prefix: "cfg:".into(),
            ..RedisSection::new(server.url())
        }),
        ..StoreConfig::default()
    };
    let stores = config.build().await.expect("build");
    let frames: Vec<serde_json::Value> = (0..9)
        .map(|i| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(vec![i as u8; 4096])
                .into()
        })
        .collect();
    let state = fv_store::ContinuationState {
        kind: "ltx2.v1".into(),
        payload: serde_json::json!({"schema_version": 1, "video": {"frames_b64": frames}})
            .as_object()
            .expect("object")
            .clone(),
    };
    let cs: &ContinuationStore = &stores.continuation;
    let report = cs.save("sess", state.clone()).await.expect("save");
    assert_eq!(report.blob_ids.len(), 1);
    let mut raw = raw(&server).await;
    let stored: Vec<u8> = raw.get("cfg:state:sess").await.expect("GET");
    assert!(stored.len() < 200, "state JSON is {} bytes", stored.len());
    assert_eq!(cs.load("sess").await.expect("load"), Some(state));
    cs.drop_session("sess").await.expect("drop");
    assert_eq!(keys(&server, "cfg:state:").await, Vec::<String>::new());
    assert_eq!(keys(&server, "cfg:blob:").await, Vec::<String>::new());
}

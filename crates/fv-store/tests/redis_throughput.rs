//! Throughput of the Redis stores against plain Redis `SET`/`GET` and the other backends
//! (a benchmark, ignored by default):
//! `cargo test -p fv-store --all-features --release --test redis_throughput -- --ignored --nocapture`
#![cfg(feature = "redis")]

mod support;

use fv_store::{
    BlobLimits, BlobStore, RedisBlobStore, RedisConnection, RedisOptions, RedisSessionStore,
    SessionLimits, SessionStore,
};
use redis::AsyncCommands;
use std::time::Duration;
use support::conformance as c;
use support::redis_server::RedisServer;

/// Sequential latency/throughput of the Redis stores next to plain `SET PX`/`GET` on the same
/// server (the floor any Redis store pays), and of the filesystem and memory stores. Each
/// figure is the best of 3 interleaved rounds, to damp noise from other load on the machine.
/// `cargo test -p fv-store --all-features --release --test redis_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
async fn throughput() {
    use std::collections::BTreeMap;
    use std::time::Instant;
    const BLOB: usize = 4 * 1024 * 1024;
    const BLOBS: usize = 20;
    const STATES: usize = 1000;
    const ROUNDS: usize = 3;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let conn = RedisConnection::connect(&RedisOptions {
        key_prefix: "bench:".into(),
        op_timeout: Duration::from_secs(10),
        ..RedisOptions::new(server.url())
    })
    .await
    .expect("connect");
    let limits = BlobLimits {
        max_total_bytes: 2 * BLOBS * BLOB,
        max_blob_bytes: BLOB,
        max_blobs: 1000,
        ..BlobLimits::default()
    };
    let session_limits = |capacity| SessionLimits {
        capacity,
        ..SessionLimits::default()
    };
    let blob: Vec<u8> = (0..BLOB).map(|i| (i % 251) as u8).collect();
    let state = c::state(7);
    let json = serde_json::to_vec(&state).expect("json");
    let dir = tempfile::tempdir().expect("tmp");
    let fs_opts = |fsync| fv_store::FsOptions {
        fsync,
        ..fv_store::FsOptions::new(dir.path().join(format!("fsync-{fsync}")))
    };
    let rb = RedisBlobStore::new(conn.clone(), limits).expect("new");
    let rs = RedisSessionStore::new(conn, session_limits(1000)).expect("new");
    let fb = |fsync| fv_store::FsBlobStore::open(limits, fs_opts(fsync)).expect("open");
    let fs =
        |fsync| fv_store::FsSessionStore::open(session_limits(1000), fs_opts(fsync)).expect("open");
    let (fb1, fb0, fs1, fs0) = (fb(true), fb(false), fs(true), fs(false));
    let mb = fv_store::MemoryBlobStore::new(fv_store::MemoryBlobConfig {
        max_total_bytes: limits.max_total_bytes,
        max_blob_bytes: BLOB,
        ..Default::default()
    })
    .expect("new");
    let ms = fv_store::MemorySessionStore::default();
    let blob_stores: [(&str, &dyn BlobStore); 4] = [
        ("redis", &rb),
        ("fs fsync", &fb1),
        ("fs no-fsync", &fb0),
        ("memory", &mb),
    ];
    let state_stores: [(&str, &dyn SessionStore); 4] = [
        ("redis", &rs),
        ("fs fsync", &fs1),
        ("fs no-fsync", &fs0),
        ("memory", &ms),
    ];
    let mut raw = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    // (backend, metric) → best seconds per op
    let mut best: BTreeMap<(String, &str), f64> = BTreeMap::new();
    let mut record = |backend: &str, metric: &'static str, secs: f64, n: usize| {
        let per_op = secs / n as f64;
        let slot = best
            .entry((backend.to_string(), metric))
            .or_insert(f64::MAX);
        *slot = slot.min(per_op);
    };
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..BLOBS {
            let _: () = raw
                .pset_ex(format!("raw:b{i}"), &blob, 3_600_000)
                .await
                .expect("SET");
        }
        record("raw SET/GET", "blob put", t.elapsed().as_secs_f64(), BLOBS);
        let t = Instant::now();
        for i in 0..BLOBS {
            let v: Vec<u8> = raw.get(format!("raw:b{i}")).await.expect("GET");
            assert_eq!(v.len(), BLOB);
        }
        record("raw SET/GET", "blob get", t.elapsed().as_secs_f64(), BLOBS);
        let t = Instant::now();
        for i in 0..STATES {
            let _: () = raw
                .pset_ex(format!("raw:s{}", i % 100), &json, 3_600_000)
                .await
                .expect("SET");
        }
        record(
            "raw SET/GET",
            "state put",
            t.elapsed().as_secs_f64(),
            STATES,
        );
        let t = Instant::now();
        for i in 0..STATES {
            let _: Vec<u8> = raw.get(format!("raw:s{}", i % 100)).await.expect("GET");
        }
        record(
            "raw SET/GET",
            "state get",
            t.elapsed().as_secs_f64(),
            STATES,
        );
        for (name, b) in blob_stores {
            let t = Instant::now();
            let mut ids = Vec::new();
            for _ in 0..BLOBS {
                ids.push(b.put("s", blob.clone(), "m").await.expect("put"));
            }
            record(name, "blob put", t.elapsed().as_secs_f64(), BLOBS);
            let t = Instant::now();
            for id in &ids {
                assert_eq!(b.get(id).await.expect("get").len(), BLOB);
            }
            record(name, "blob get", t.elapsed().as_secs_f64(), BLOBS);
        }
        for (name, s) in state_stores {
            let t = Instant::now();
            for i in 0..STATES {
                s.put_state(&format!("s{}", i % 100), state.clone())
                    .await
                    .expect("put");
            }
            record(name, "state put", t.elapsed().as_secs_f64(), STATES);
            let t = Instant::now();
            for i in 0..STATES {
                s.get_state(&format!("s{}", i % 100))
                    .await
                    .expect("get")
                    .expect("some");
            }
            record(name, "state get", t.elapsed().as_secs_f64(), STATES);
        }
    }
    println!(
        "{} B state JSON, {BLOB} B blobs, best of {ROUNDS} rounds, sequential calls",
        json.len()
    );
    for backend in ["raw SET/GET", "redis", "fs fsync", "fs no-fsync", "memory"] {
        let get = |metric| best[&(backend.to_string(), metric)];
        let mbps = |secs: f64| BLOB as f64 / 1e6 / secs;
        println!(
            "{backend:<12} 4 MiB blob put {:8.2} ms ({:5.0} MB/s) get {:7.2} ms ({:5.0} MB/s) | state put {:8.1} µs ({:7.0}/s) get {:7.1} µs ({:7.0}/s)",
            get("blob put") * 1e3,
            mbps(get("blob put")),
            get("blob get") * 1e3,
            mbps(get("blob get")),
            get("state put") * 1e6,
            1.0 / get("state put"),
            get("state get") * 1e6,
            1.0 / get("state get"),
        );
    }
    let ratio =
        |metric| best[&("redis".to_string(), metric)] / best[&("raw SET/GET".to_string(), metric)];
    println!(
        "redis store / raw SET-GET time: blob put {:.2}x, blob get {:.2}x, state put {:.2}x, state get {:.2}x",
        ratio("blob put"),
        ratio("blob get"),
        ratio("state put"),
        ratio("state get")
    );
}

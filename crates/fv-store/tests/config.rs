//! StoreConfig: defaults, strict parsing with key paths, validation, building each backend.

use fv_store::{
    FilesystemSection, RedisSection, StoreConfig, StoreConfigError, StoreError, StoreKind,
};
use serde_json::json;

fn problems(e: &StoreConfigError) -> Vec<String> {
    e.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn defaults_are_memory_and_valid() {
    let d = StoreConfig::default();
    assert_eq!(d.kind, StoreKind::Memory);
    assert_eq!(d.ttl_seconds, 3600);
    assert_eq!(d.inline_max_bytes, 2 * 1024 * 1024);
    assert_eq!(d.sessions.capacity, 1024);
    assert_eq!(d.sessions.max_state_bytes, 8 * 1024 * 1024);
    assert_eq!(d.blobs.max_total_bytes, 256 * 1024 * 1024);
    assert_eq!(d.blobs.max_blob_bytes, 64 * 1024 * 1024);
    assert_eq!(d.blobs.max_blobs, 65_536);
    assert!(d.validate().is_ok());
    assert_eq!(
        StoreConfig::from_value(json!({}), "store").expect("empty"),
        d
    );
}

#[test]
fn a_full_section_parses() {
    let value = json!({
        "kind": "filesystem",
        "ttl_seconds": 600,
        "inline_max_bytes": 1024,
        "sessions": {"capacity": 10, "max_state_bytes": 4096},
        "blobs": {"max_total_bytes": 1_000_000, "max_blob_bytes": 10_000, "max_blobs": 100},
        "filesystem": {"path": "/var/lib/fv", "fsync": false},
        "redis": {"url": "redis://127.0.0.1:6379/1", "key_prefix": "{fv}:"}
    });
    let c = StoreConfig::from_value(value, "store").expect("valid");
    assert_eq!(c.kind, StoreKind::Filesystem);
    let fs = c.filesystem.as_ref().expect("fs");
    assert_eq!(
        (fs.path.as_str(), fs.fsync, fs.sweep_interval_seconds),
        ("/var/lib/fv", false, 60)
    );
    let r = c.redis.as_ref().expect("redis");
    assert_eq!((r.op_timeout_ms, r.connect_timeout_ms), (5000, 2000));
    assert_eq!(r.key_prefix, "{fv}:");
    // Round trip through serde.
    let back = serde_json::to_value(&c).expect("serialize");
    assert_eq!(StoreConfig::from_value(back, "store").expect("again"), c);
}

#[test]
fn parse_errors_name_the_key() {
    let cases = [
        (
            json!({"kind": "s3"}),
            "store.kind: expected one of memory, filesystem, redis, got string \"s3\"",
        ),
        (json!({"ttl": 5}), "store.ttl: unknown field"),
        (
            json!({"redis": {"url": "redis://x", "urll": 1}}),
            "store.redis.urll: unknown field (did you mean url?)",
        ),
        (
            json!({"sessions": {"capacity": "ten"}}),
            "store.sessions.capacity: expected an integer (1..=1000000), got string \"ten\"",
        ),
        (
            json!({"filesystem": {"fsync": true}}),
            "store.filesystem.path: missing required field",
        ),
        (
            json!({"filesystem": {"path": "/x", "fsync": "yes"}}),
            "store.filesystem.fsync: expected a boolean (true or false), got string \"yes\"",
        ),
    ];
    for (value, expected) in cases {
        let err = StoreConfig::from_value(value.clone(), "store").expect_err("invalid");
        let got = problems(&err).join("; ");
        assert!(got.starts_with(expected), "{value}: {got}");
    }
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let mut c = StoreConfig {
        kind: StoreKind::Filesystem,
        ttl_seconds: 0,
        inline_max_bytes: 100,
        ..StoreConfig::default()
    };
    c.sessions.capacity = 0;
    c.blobs.max_total_bytes = 50;
    c.blobs.max_blob_bytes = 60;
    c.blobs.max_blobs = 0;
    c.redis = Some(RedisSection {
        key_prefix: String::new(),
        op_timeout_ms: 0,
        ..RedisSection::new("redis://127.0.0.1")
    });
    let err = c.validate().expect_err("invalid");
    let mut expected = vec![
        "store.ttl_seconds: must be in 1..=2592000 (got 0)",
        "store.sessions.capacity: must be in 1..=1000000 (got 0)",
        "store.blobs.max_blobs: must be in 1..=10000000 (got 0)",
        "store.blobs.max_blob_bytes: must not exceed store.blobs.max_total_bytes (60 > 50)",
        "store.inline_max_bytes: must be below store.blobs.max_blob_bytes (100 >= 60), or no field could ever move",
        "store.filesystem: required when store kind is filesystem",
        "store.redis.key_prefix: must be 1..=64 bytes (got 0)",
        "store.redis.op_timeout_ms: must be in 1..=600000 (got 0)",
    ];
    let mut got = problems(&err);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(
        err.to_string()
            .starts_with("invalid store config:\n  store.")
    );

    // Mounted elsewhere, the paths follow.
    let c = StoreConfig {
        kind: StoreKind::Redis,
        ..StoreConfig::default()
    };
    let err = c
        .validate_at("streaming.store")
        .expect_err("no redis section");
    assert!(
        problems(&err)
            .contains(&"streaming.store.redis: required when store kind is redis".to_string())
    );

    let c = StoreConfig {
        filesystem: Some(FilesystemSection {
            path: " ".into(),
            sweep_interval_seconds: 0,
            fsync: true,
        }),
        ..StoreConfig::default()
    };
    assert_eq!(
        problems(&c.validate().expect_err("blank path")),
        vec![
            "store.filesystem.path: must not be blank",
            "store.filesystem.sweep_interval_seconds: must be in 1..=86400 (got 0)"
        ]
    );
}

#[cfg(feature = "redis")]
#[test]
fn a_bad_redis_url_is_a_config_problem() {
    let c = StoreConfig {
        kind: StoreKind::Redis,
        redis: Some(RedisSection::new("http://user:hunter2@host")),
        ..StoreConfig::default()
    };
    let got = problems(&c.validate().expect_err("bad url")).join("; ");
    assert!(
        got.starts_with("store.redis.url: is not a usable Redis URL"),
        "{got}"
    );
    assert!(!got.contains("hunter2"), "password redacted: {got}");
}

#[cfg(not(feature = "redis"))]
#[tokio::test]
async fn redis_without_the_feature_is_refused() {
    let c = StoreConfig {
        kind: StoreKind::Redis,
        redis: Some(RedisSection::new("redis://127.0.0.1")),
        ..StoreConfig::default()
    };
    let got = problems(&c.validate().expect_err("no feature"));
    assert_eq!(
        got,
        vec!["store.kind: redis needs fv-store built with its `redis` feature"]
    );
    assert_eq!(
        c.build().await.expect_err("no feature").kind(),
        "invalid_config"
    );
}

#[tokio::test]
async fn builds_memory_and_filesystem_stores() {
    let stores = StoreConfig::default().build().await.expect("memory");
    assert!(stores.sweeper.is_none());
    stores
        .sessions
        .put_state(
            "s",
            fv_store::ContinuationState {
                kind: "k".into(),
                payload: Default::default(),
            },
        )
        .await
        .expect("put");
    assert!(stores.continuation.load("s").await.expect("load").is_some());

    let d = tempfile::tempdir().expect("tmp");
    let c = StoreConfig {
        kind: StoreKind::Filesystem,
        filesystem: Some(FilesystemSection::new(d.path().to_string_lossy())),
        ..StoreConfig::default()
    };
    let stores = c.build().await.expect("filesystem");
    assert!(stores.sweeper.is_some());
    let id = stores.blobs.put("s", vec![1; 10], "m").await.expect("put");
    assert_eq!(stores.blobs.get(&id).await.expect("get"), vec![1; 10]);
    assert!(d.path().join("blobs").join(format!("{id}.blob")).is_file());
    assert_eq!(stores.continuation.inline_max_bytes(), 2 * 1024 * 1024);

    let bad = StoreConfig {
        ttl_seconds: 0,
        ..StoreConfig::default()
    };
    let err = bad.build().await.expect_err("invalid");
    assert!(
        matches!(err, StoreError::InvalidConfig { field: "store", .. }),
        "{err:?}"
    );
}

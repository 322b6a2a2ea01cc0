//! Router config loading: every rule fails with its key's path.

#![allow(clippy::unwrap_used)]

use fv_router::config::FileError;
use fv_router::config::{ConfigError, ReplicaConfig, RouterConfig};

fn problems(yaml: &str) -> Vec<String> {
    match RouterConfig::from_yaml_str(yaml) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

/// Asserts exactly one problem, starting with `path: `, containing `words`.
fn one_problem(yaml: &str, path: &str, words: &str) {
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with(&format!("{path}: ")), "{p:#?}");
    assert!(p[0].contains(words), "{p:#?}");
}

const MINIMAL: &str = "router:\n  replicas:\n    - url: http://a:8000\n";

#[test]
fn the_shipped_config_loads() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../configs/router.yaml");
    let c = RouterConfig::load(&path).unwrap();
    assert_eq!(c.port, 9000);
    assert_eq!(c.replicas.len(), 2);
    assert_eq!(c.replicas[0].name.as_deref(), Some("mock-a"));
    assert_eq!(c.health_check.status_path.as_deref(), Some("/status"));
    assert_eq!(c, RouterConfig::from_yaml_str(&c.to_yaml_string()).unwrap());
}

#[test]
fn defaults_match_fastvideo() {
    let c = RouterConfig::from_yaml_str(MINIMAL).unwrap();
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 9000));
    let r = &c.replicas[0];
    assert_eq!(
        (r.url.as_str(), r.name.as_deref(), r.primary, r.weight),
        ("http://a:8000", None, false, 1.0)
    );
    let h = &c.health_check;
    assert_eq!(h.path, "/health");
    assert_eq!((h.interval_seconds, h.timeout_seconds), (5.0, 2.0));
    assert_eq!((h.failure_threshold, h.recovery_threshold), (3, 2));
    assert_eq!(c.shutdown_grace_seconds, 30.0);
    assert_eq!(c.max_message_bytes, 256 * 1024 * 1024);
    assert_eq!(
        c,
        RouterConfig::new(vec![ReplicaConfig::new("http://a:8000")])
    );
}

#[test]
fn a_trailing_slash_is_normalized() {
    let c =
        RouterConfig::from_yaml_str("router:\n  replicas:\n    - url: http://a:8000/\n").unwrap();
    assert_eq!(c.replicas[0].url, "http://a:8000");
    // ... so it counts as a duplicate of the same url without one.
    one_problem(
        "router:\n  replicas:\n    - url: http://a:8000/\n    - url: http://a:8000\n",
        "router.replicas[1].url",
        "duplicate of router.replicas[0].url",
    );
}

#[test]
fn fastvideo_rules_each_name_their_key() {
    one_problem("{}", "router", "required");
    one_problem("router: 5", "router", "expected a mapping");
    one_problem("router:\n  port: 9000\n", "router.replicas", "required");
    one_problem(
        "router:\n  replicas: []\n",
        "router.replicas",
        "at least one",
    );
    one_problem(
        "router:\n  replicas: http://a\n",
        "router.replicas",
        "expected a list",
    );
    one_problem(
        "router:\n  replicas:\n    - http://a\n",
        "router.replicas[0]",
        "expected a mapping",
    );
    one_problem(
        "router:\n  replicas:\n    - name: a\n",
        "router.replicas[0].url",
        "required",
    );
    one_problem(
        "router:\n  replicas:\n    - url: a:8000\n",
        "router.replicas[0].url",
        "must start with http://",
    );
    one_problem(
        "router:\n  replicas:\n    - url: ftp://a\n",
        "router.replicas[0].url",
        "must start with http://",
    );
    one_problem(
        "router:\n  replicas:\n    - url: http://a/v1\n",
        "router.replicas[0].url",
        "must not have a path",
    );
    one_problem(
        "router:\n  replicas:\n    - url: http://a?x=1\n",
        "router.replicas[0].url",
        "query",
    );
    one_problem(
        "router:\n  replicas:\n    - url: http://a#top\n",
        "router.replicas[0].url",
        "fragment",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, primary: true}\n    - {url: http://b, primary: true}\n",
        "router.replicas[1].primary",
        "at most one replica may be primary",
    );
    let hc = |body: &str| format!("{MINIMAL}  health_check:\n    {body}\n");
    one_problem(
        &hc("interval_seconds: 0"),
        "router.health_check.interval_seconds",
        "> 0",
    );
    one_problem(
        &hc("interval_seconds: -1.5"),
        "router.health_check.interval_seconds",
        "> 0",
    );
    one_problem(
        &hc("timeout_seconds: 0"),
        "router.health_check.timeout_seconds",
        "> 0",
    );
    one_problem(
        &hc("failure_threshold: 0"),
        "router.health_check.failure_threshold",
        "from 1",
    );
    one_problem(
        &hc("recovery_threshold: 0"),
        "router.health_check.recovery_threshold",
        "from 1",
    );
}

#[test]
fn our_rules_each_name_their_key() {
    one_problem(
        "router:\n  replicas:\n    - url: https://a\n",
        "router.replicas[0].url",
        "https:// replicas are not supported",
    );
    one_problem(
        "router:\n  replicas:\n    - url: http://a:0\n",
        "router.replicas[0].url",
        "invalid port",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, weight: 0}\n",
        "router.replicas[0].weight",
        "> 0",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, name: x}\n    - {url: http://b, name: x}\n",
        "router.replicas[1].name",
        "duplicate",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, name: ''}\n",
        "router.replicas[0].name",
        "empty",
    );
    one_problem(&format!("{MINIMAL}  host: ''\n"), "router.host", "empty");
    one_problem(
        &format!("{MINIMAL}  port: 70000\n"),
        "router.port",
        "must be in 0..=65535 (got 70000)",
    );
    one_problem(
        &format!("{MINIMAL}  port: '9000'\n"),
        "router.port",
        "got string",
    );
    one_problem(
        &format!("{MINIMAL}  connect_attempts: 0\n"),
        "router.connect_attempts",
        "from 1 to 16",
    );
    one_problem(
        &format!("{MINIMAL}  max_message_bytes: 10\n"),
        "router.max_message_bytes",
        "from 1024",
    );
    one_problem(
        &format!("{MINIMAL}  max_sessions: 0\n"),
        "router.max_sessions",
        "from 1",
    );
    one_problem(
        &format!("{MINIMAL}  shutdown_grace_seconds: -1\n"),
        "router.shutdown_grace_seconds",
        ">= 0",
    );
    one_problem(
        &format!("{MINIMAL}  send_timeout_seconds: 0\n"),
        "router.send_timeout_seconds",
        "> 0",
    );
    one_problem(
        &format!("{MINIMAL}  health_check:\n    path: health\n"),
        "router.health_check.path",
        "must start with /",
    );
    one_problem(
        &format!("{MINIMAL}  stickiness:\n    max_clients: 0\n"),
        "router.stickiness.max_clients",
        "from 1",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, primary: yes}\n",
        "router.replicas[0].primary",
        "true or false",
    );
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    one_problem(
        &format!("{MINIMAL}  helth_check: {{}}\n"),
        "router.helth_check",
        "unknown field (did you mean health_check?)",
    );
    one_problem(
        "routers: {}\nrouter:\n  replicas:\n    - url: http://a\n",
        "routers",
        "unknown field (did you mean router?)",
    );
    one_problem(
        "router:\n  replicas:\n    - {url: http://a, wieght: 2}\n",
        "router.replicas[0].wieght",
        "unknown field (did you mean weight?)",
    );
    one_problem(
        &format!("{MINIMAL}  health_check:\n    intervall: 1\n"),
        "router.health_check.intervall",
        "unknown field",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(
        "router:\n  port: -1\n  replicas:\n    - url: http://a/x\n    - {url: http://b, weight: -2, extra: 1}\n  health_check:\n    timeout_seconds: 0\n",
    );
    let paths: Vec<&str> = p.iter().map(|p| p.split(": ").next().unwrap()).collect();
    for want in [
        "router.port",
        "router.replicas[0].url",
        "router.replicas[1].weight",
        "router.replicas[1].extra",
        "router.health_check.timeout_seconds",
    ] {
        assert!(paths.contains(&want), "{want} missing from {p:#?}");
    }
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn nulls_mean_defaults_and_status_path_null_turns_it_off() {
    let c = RouterConfig::from_yaml_str(
        "router:\n  host: null\n  replicas:\n    - {url: http://a, name: null}\n  health_check:\n    status_path: null\n",
    )
    .unwrap();
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.health_check.status_path, None);
}

#[test]
fn json_loads_too_and_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("router.json");
    std::fs::write(
        &json,
        r#"{"router": {"port": 9100, "replicas": [{"url": "http://a:1/"}]}}"#,
    )
    .unwrap();
    let c = RouterConfig::load(&json).unwrap();
    assert_eq!((c.port, c.replicas[0].url.as_str()), (9100, "http://a:1"));
    let txt = dir.path().join("router.txt");
    std::fs::write(&txt, "").unwrap();
    assert!(matches!(
        RouterConfig::load(&txt),
        Err(ConfigError::File(FileError::UnsupportedExtension(_)))
    ));
    assert!(matches!(
        RouterConfig::load(&dir.path().join("missing.yaml")),
        Err(ConfigError::File(FileError::Io { .. }))
    ));
    let big = "#".repeat(fv_router::config::MAX_CONFIG_BYTES as usize + 1);
    assert!(matches!(
        RouterConfig::from_yaml_str(&big),
        Err(ConfigError::File(FileError::TooLarge { .. }))
    ));
    assert!(matches!(
        RouterConfig::from_yaml_str("router: [unclosed"),
        Err(ConfigError::File(FileError::Parse { .. }))
    ));
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut c = RouterConfig::new(vec![
        ReplicaConfig::new("http://a"),
        ReplicaConfig::new("http://a/"),
    ]);
    c.health_check.interval_seconds = f64::INFINITY;
    let Err(ConfigError::Invalid { problems }) = c.validate() else {
        panic!("expected problems");
    };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("router.replicas[1].url: duplicate"));
    assert!(problems[1].starts_with("router.health_check.interval_seconds: "));
}

#[tokio::test]
async fn bind_refuses_an_invalid_config_before_binding() {
    let c = RouterConfig::new(Vec::new());
    let err = fv_router::Router::bind(c).await.unwrap_err();
    assert!(matches!(err, fv_router::RouterError::Config(_)), "{err}");
}

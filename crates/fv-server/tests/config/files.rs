//! Config files: formats by extension, size cap, missing files, syntax errors, round trips.

use super::*;

// ----- formats and files ---------------------------------------------------------------

#[test]
fn json_and_yml_files_load_by_extension() {
    let doc = json!({
        "generator": {"model_path": "m"},
        "server": {"port": 9001},
        "streaming": {"max_sessions": 3},
        "store": {"sessions": {"capacity": 10}}
    });
    let json_file = TempFile::new("serve.json", doc.to_string().as_bytes());
    let loaded = ServeConfig::load(&json_file.0).unwrap();
    assert_eq!(loaded.config.server.port, 9001);
    assert_eq!(loaded.config.streaming.max_sessions, 3);
    assert_eq!(loaded.config.store.sessions.capacity, 10);
    // JSON follows the same rules.
    let bad = TempFile::new(
        "bad.JSON",
        br#"{"generator": {"model_path": "m"}, "server": {"port": 1.5}}"#,
    );
    let p = problems(ServeConfig::load(&bad.0));
    assert_eq!(
        p,
        ["server.port: expected an integer (0..=65535), got float 1.5"]
    );
    for name in ["serve.yml", "serve.YAML"] {
        let file = TempFile::new(name, b"generator: {model_path: m}\nserver: {port: 9002}\n");
        assert_eq!(
            ServeConfig::load(&file.0).unwrap().config.server.port,
            9002,
            "{name}"
        );
    }
}

#[test]
fn unsupported_extension_is_refused_before_reading() {
    for name in ["serve.toml", "serve", "serve.yaml.bak"] {
        let file = TempFile::new(name, b"generator: {model_path: m}\n");
        match ServeConfig::load(&file.0) {
            Err(ConfigError::File(FileError::UnsupportedExtension(path))) => {
                assert_eq!(path, file.0)
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let err = ServeConfig::load(Path::new("x.ini")).unwrap_err();
    assert!(err.to_string().contains(".yaml, .yml or .json"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_with_the_path() {
    let path = std::env::temp_dir().join("fv-config-test-does-not-exist/serve.yaml");
    match ServeConfig::load(&path) {
        Err(ConfigError::File(FileError::Io { path: p, .. })) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_errors_duplicates_and_bad_utf8_are_parse_errors() {
    for text in [
        "generator: {model_path: m\n",
        "generator:\n  model_path: a\n  model_path: b\n",
        "a: 1\n---\nb: 2\n",
    ] {
        match yaml(text) {
            Err(ConfigError::File(FileError::Parse { message })) => {
                assert!(message.contains("line"), "{message}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert!(matches!(
        ServeConfig::from_json_str("{\"generator\": }"),
        Err(ConfigError::File(FileError::Parse { .. }))
    ));
    let file = TempFile::new("bad.yaml", b"generator: {model_path: \xff}\n");
    match ServeConfig::load(&file.0) {
        Err(ConfigError::File(FileError::Parse { message })) => {
            assert!(message.contains("UTF-8"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_config_is_refused() {
    let limit = usize::try_from(MAX_CONFIG_BYTES).unwrap();
    // A valid document padded with a comment to one byte over the limit.
    let mut text = "generator: {model_path: m}\n#".to_string();
    text.push_str(&"x".repeat(limit - text.len()));
    assert_eq!(text.len(), limit);
    assert!(yaml(&text).is_ok(), "exactly at the limit is fine");
    text.push('x');
    assert!(
        matches!(yaml(&text), Err(ConfigError::File(FileError::TooLarge { len, limit: l })) if len == MAX_CONFIG_BYTES + 1 && l == MAX_CONFIG_BYTES)
    );
    let file = TempFile::new("big.yaml", text.as_bytes());
    assert!(matches!(
        ServeConfig::load(&file.0),
        Err(ConfigError::File(FileError::TooLarge { .. }))
    ));
}

#[test]
fn effective_config_round_trips_through_yaml() {
    let mut config = ServeConfig::new("org/model");
    config.default_request.negative_prompt = Some("yes".into()); // a string YAML must quote
    config.streaming.session_log_dir = Some("logs/sessions".into());
    config.streaming.warmup.prompt = "null".into();
    config.server.host = "::".into();
    let text = config.to_yaml_string();
    assert!(text.contains("max_sessions: 8"), "{text}");
    let loaded = yaml_ok(&text);
    assert_eq!(loaded.config, config);
    assert!(loaded.warnings.is_empty());
}

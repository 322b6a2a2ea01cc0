//! Config file plumbing: pick the format from the file name, read the file under a size cap,
//! parse YAML or JSON into a [`serde_json::Value`]. What the document must contain is the
//! caller's business (fv-server's and fv-router's schemas); their `ConfigError`s convert from
//! [`FileError`] with the same messages.
//!
//! ```
//! use fv_runtime::config::{Format, parse_str};
//! let doc = parse_str("router:\n  port: 9000\n", Format::Yaml, 1024).expect("valid YAML");
//! assert_eq!(doc["router"]["port"], 9000);
//! ```

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What [`parse_str`] calls its text in messages (a file is called by its path).
pub const STRING_ORIGIN: &str = "config";

/// Why a config file or string could not be turned into a document.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading the file failed.
    // The OS error is in the message and deliberately not a `source`: `{e:#}` printers
    // (anyhow, the bins) would otherwise print it twice.
    #[error("cannot read config file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Not UTF-8, or not valid YAML/JSON; the message starts with the file (or
    /// [`STRING_ORIGIN`]) and carries the line and column where the parser knows them.
    #[error("{message}")]
    Parse {
        /// The whole message.
        message: String,
    },
    /// The name does not end in `.yaml`, `.yml` or `.json` (any case).
    #[error("unsupported config file {}: the name must end in .yaml, .yml or .json", .0.display())]
    UnsupportedExtension(PathBuf),
    /// Over the caller's size limit.
    #[error("config is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Bytes seen; a file is read only to one byte past the limit.
        len: u64,
        /// The caller's limit.
        limit: u64,
    },
}

/// How a config document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file name asks for, by its extension in any case.
    pub fn from_path(path: &Path) -> Result<Self, FileError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("yaml" | "yml") => Ok(Self::Yaml),
            Some("json") => Ok(Self::Json),
            _ => Err(FileError::UnsupportedExtension(path.to_path_buf())),
        }
    }
}

/// [`FileError::TooLarge`] when `len` is over `limit`.
pub fn check_size(len: u64, limit: u64) -> Result<(), FileError> {
    if len > limit {
        return Err(FileError::TooLarge { len, limit });
    }
    Ok(())
}

/// Reads a UTF-8 file of at most `limit` bytes. A larger file is refused after reading
/// `limit + 1` bytes, so a wrong path (a video, a log) is never read whole.
pub fn read_capped(path: &Path, limit: u64) -> Result<String, FileError> {
    let io_err = |error| FileError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    check_size(bytes.len() as u64, limit)?;
    String::from_utf8(bytes).map_err(|e| FileError::Parse {
        message: format!(
            "{}: not valid UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Parses `text` as `format`; messages start with `origin` (`origin: invalid YAML: ...`). An
/// empty YAML document is [`Value::Null`].
pub fn parse(text: &str, format: Format, origin: &str) -> Result<Value, FileError> {
    match format {
        Format::Yaml => {
            let mut options = serde_saphyr::Options::default();
            // YAML 1.2 booleans only: `yes`/`on` stay strings and then fail a bool key.
            options.strict_booleans = true;
            // `010` is neither octal nor ten here: keep it a string so the type error is clear.
            options.leading_zero_numbers_as_strings = true;
            // One-line messages ("... at line L, column C") read better in logs.
            options.with_snippet = false;
            serde_saphyr::from_str_with_options(text, options).map_err(|e| FileError::Parse {
                message: format!("{origin}: invalid YAML: {e}"),
            })
        }
        Format::Json => serde_json::from_str(text).map_err(|e| FileError::Parse {
            message: format!("{origin}: invalid JSON: {e}"),
        }),
    }
}

/// Loads a config file: format from the extension (checked before the file is opened), at
/// most `limit` bytes, parsed with the path as origin.
pub fn load(path: &Path, limit: u64) -> Result<Value, FileError> {
    let format = Format::from_path(path)?;
    let text = read_capped(path, limit)?;
    parse(&text, format, &path.display().to_string())
}

/// Parses config text of at most `limit` bytes, with [`STRING_ORIGIN`] as origin.
pub fn parse_str(text: &str, format: Format, limit: u64) -> Result<Value, FileError> {
    check_size(text.len() as u64, limit)?;
    parse(text, format, STRING_ORIGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write config");
        (dir, path)
    }

    #[test]
    fn extension_picks_the_format_in_any_case() {
        assert_eq!(
            Format::from_path(Path::new("a.yaml")).ok(),
            Some(Format::Yaml)
        );
        assert_eq!(
            Format::from_path(Path::new("a.YML")).ok(),
            Some(Format::Yaml)
        );
        assert_eq!(
            Format::from_path(Path::new("a.Json")).ok(),
            Some(Format::Json)
        );
        for bad in ["a.toml", "a", "yaml", "a.yaml.bak"] {
            match Format::from_path(Path::new(bad)) {
                Err(FileError::UnsupportedExtension(p)) => assert_eq!(p, Path::new(bad)),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let msg = Format::from_path(Path::new("c.toml"))
            .expect_err("toml")
            .to_string();
        assert_eq!(
            msg,
            "unsupported config file c.toml: the name must end in .yaml, .yml or .json"
        );
    }

    #[test]
    fn load_checks_the_extension_before_opening() {
        // The file does not exist: the name alone is enough to refuse it.
        let err = load(Path::new("/nonexistent/c.txt"), 10).expect_err("txt");
        assert!(matches!(err, FileError::UnsupportedExtension(_)), "{err:?}");
    }

    #[test]
    fn size_cap_is_exact() {
        assert!(check_size(10, 10).is_ok());
        match check_size(11, 10) {
            Err(FileError::TooLarge { len: 11, limit: 10 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check_size(11, 10).expect_err("over").to_string(),
            "config is 11 bytes, over the 10-byte limit"
        );
        let (_dir, path) = file("c.yaml", b"a: 1234\n");
        assert_eq!(read_capped(&path, 8).expect("8 bytes fit"), "a: 1234\n");
        match read_capped(&path, 7) {
            // Read one byte past the limit, no further.
            Err(FileError::TooLarge { len: 8, limit: 7 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_str("a: 1234\n", Format::Yaml, 7),
            Err(FileError::TooLarge { len: 8, limit: 7 })
        ));
        assert_eq!(
            parse_str("a: 1234\n", Format::Yaml, 8).expect("fits"),
            json!({"a": 1234})
        );
    }

    #[test]
    fn a_big_file_is_not_read_whole() {
        let (_dir, path) = file("big.json", &vec![b' '; 1 << 20]);
        match load(&path, 1000) {
            Err(FileError::TooLarge { len, limit }) => assert_eq!((len, limit), (1001, 1000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.yaml");
        let err = load(&path, 100).expect_err("missing");
        match &err {
            FileError::Io { path: p, error } => {
                assert_eq!(p, &path);
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
                assert!(
                    std::error::Error::source(&err).is_none(),
                    "printed once, not chained"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read config file {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_names_the_byte() {
        let (_dir, path) = file("c.yaml", b"ab\xffcd");
        let err = load(&path, 100).expect_err("not UTF-8").to_string();
        assert_eq!(err, format!("{}: not valid UTF-8 (byte 2)", path.display()));
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = parse("a: 1\nb: [1, 2\n", Format::Yaml, "c.yaml")
            .expect_err("unclosed list")
            .to_string();
        assert!(err.starts_with("c.yaml: invalid YAML: "), "{err}");
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("column"), "{err}");
        assert!(!err.contains('\n'), "one line for logs: {err}");
        let err = parse("a: 1\na: 2\n", Format::Yaml, "c.yaml").expect_err("duplicate key");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let err = parse_str("{\n  \"a\": 1,\n  \"b\" 2\n}", Format::Json, 100)
            .expect_err("missing colon")
            .to_string();
        assert!(err.starts_with("config: invalid JSON: "), "{err}");
        assert!(err.contains("line 3 column"), "{err}");
    }

    #[test]
    fn yaml_is_strict_about_booleans_and_leading_zeros() {
        let doc = parse("a: yes\nb: true\nc: 010\n", Format::Yaml, "c").expect("valid YAML");
        assert_eq!(doc, json!({"a": "yes", "b": true, "c": "010"}));
        assert_eq!(parse("", Format::Yaml, "c").expect("empty"), Value::Null);
    }

    #[test]
    fn load_reads_both_formats() {
        let (_d1, yaml) = file("c.yml", b"x: [1, 2]\n");
        assert_eq!(load(&yaml, 100).expect("yaml"), json!({"x": [1, 2]}));
        let (_d2, json_path) = file("c.JSON", br#"{"x": [1, 2]}"#);
        assert_eq!(load(&json_path, 100).expect("json"), json!({"x": [1, 2]}));
    }
}

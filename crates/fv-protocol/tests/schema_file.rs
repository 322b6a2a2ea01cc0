//! Drift test: docs/protocol.schema.json must equal what the code generates.

use std::path::PathBuf;

fn schema_path() -> PathBuf {
    // The crate sits at crates/fv-protocol; the docs folder is at the workspace root.
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .join("..")
    .join("docs")
    .join("protocol.schema.json")
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = fv_protocol::json_schema();
    let mut pretty = serde_json::to_string_pretty(&generated).expect("a Value always serializes");
    pretty.push('\n');
    let path = schema_path();
    if std::env::var_os("FV_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &pretty)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `FV_BLESS=1 cargo test -p fv-protocol` to create it",
            path.display()
        )
    });
    // Compare as JSON values so formatting differences alone never fail the test.
    let committed_value: serde_json::Value = serde_json::from_str(&committed).unwrap_or_else(|e| {
        panic!(
            "{} is not valid JSON ({e}); run `FV_BLESS=1 cargo test -p fv-protocol` to update it",
            path.display()
        )
    });
    assert!(
        committed_value == generated,
        "{} is out of date with the protocol types; run `FV_BLESS=1 cargo test -p fv-protocol` to update it",
        path.display()
    );
}

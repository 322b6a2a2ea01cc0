//! The mechanism on small derived types: checks, messages, loading around bad keys, docs.

use super::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `section`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct Section {
    /// Whether it is on.
    enabled: bool,
    /// A frame side.
    #[schemars(range(min = 16, max = 4096), extend("multipleOf" = 2))]
    width: u32,
    /// Mode.
    mode: Mode,
    /// Free text or null.
    label: Option<String>,
    /// Weights.
    weights: Vec<f64>,
    /// Strength, at least 0.
    #[schemars(range(min = 0.0))]
    strength: f64,
    /// One or many prompts.
    prompt: Option<StringOrList>,
    /// Items.
    items: Vec<Item>,
    /// Old knob.
    #[schemars(extend("x-unused" = true))]
    legacy: i64,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Fast,
    /// Slow and careful.
    Slow,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Item {
    /// Its name.
    name: String,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Root {
    #[serde(default)]
    section: Section,
    /// Port.
    #[serde(default)]
    port: u16,
}

fn problems(doc: Value) -> Vec<String> {
    check::<Root>(&doc)
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_clean_document_has_no_problems_and_deserializes() {
    let doc = json!({"section": {"enabled": true, "width": 64, "mode": "slow",
        "label": null, "weights": [1, 2.5], "strength": 0, "prompt": ["a", "b"],
        "items": [{"name": "x"}]}, "port": 80});
    assert_eq!(problems(doc.clone()), Vec::<String>::new());
    let root: Root = deserialize(doc).expect("clean");
    assert_eq!(root.section.width, 64);
    assert!(matches!(root.section.mode, Mode::Slow));
}

#[test]
fn every_kind_of_problem_is_reported_with_its_path() {
    let doc = json!({"sectoin": {}, "section": {"enabled": "yes", "width": 15,
        "mode": "medium", "label": 3, "weights": [1, "x"], "strength": -1,
        "prompt": {"a": 1}, "items": [{"nam": "x"}, 4], "legacy": 2}, "port": 70000});
    assert_eq!(
        problems(doc),
        [
            "sectoin: unknown field (did you mean section?)",
            "section.enabled: expected a boolean (true or false), got string \"yes\" (write true or false without quotes)",
            "section.width: must be in 16..=4096 (got 15)",
            "section.mode: expected one of fast, slow, got string \"medium\"",
            "section.label: expected a string or null, got integer 3",
            "section.weights[1]: expected a number, got string \"x\"",
            "section.strength: must be >= 0 (got -1)",
            "section.prompt: expected a string or a list of strings or null, got a mapping",
            "section.items[0].nam: unknown field (did you mean name?)",
            "section.items[0].name: missing required field",
            "section.items[1]: expected a mapping, got integer 4",
            "port: must be in 0..=65535 (got 70000)",
        ]
    );
    assert_eq!(
        problems(json!({"section": {"width": 65}})),
        ["section.width: must be even (got 65)"]
    );
}

#[test]
fn a_key_in_the_wrong_block_points_to_the_right_one() {
    assert_eq!(
        problems(json!({"enabled": true, "section": {"port": 1}})),
        [
            "enabled: unknown field (did you mean section.enabled?)",
            "section.port: unknown field (did you mean port?)",
        ]
    );
}

#[test]
fn unused_keys_are_collected() {
    let checked = check::<Root>(&json!({"section": {"legacy": 5, "enabled": true}}));
    assert!(checked.problems.is_empty());
    assert_eq!(checked.ignored, ["section.legacy"]);
}

#[test]
fn the_reference_table_lists_every_key_with_its_rules() {
    let table = reference_markdown(&Root::default());
    for row in [
        "| `section.enabled` | bool | `false` |  | yes | Whether it is on. |",
        "| `section.width` | int | `0` | 16..=4096, even | yes | A frame side. |",
        "| `section.mode` | enum | `\"fast\"` | `fast`, `slow` | yes | Mode. |",
        "| `section.label` | string or null | `null` |  | yes | Free text or null. |",
        "| `section.weights` | list of floats | `[]` | finite | yes | Weights. |",
        "| `section.strength` | float | `0.0` | finite, >= 0 | yes | Strength, at least 0. |",
        "| `section.items` | list of mappings | `[]` |  | yes | Items. |",
        "| `section.items[].name` | string | required |  | yes | Its name. |",
        "| `section.legacy` | int | `0` | any | no | FastVideo key; accepted, not used. |",
        "| `port` | int | `0` | 0..=65535 | yes | Port. |",
    ] {
        assert!(table.contains(row), "missing row {row} in\n{table}");
    }
}

#[test]
fn load_still_deserializes_around_wrong_keys() {
    let loaded = load::<Root>(json!({"port": "x", "section": {"width": 64, "bogus": 1}}));
    assert_eq!(loaded.problems.len(), 2);
    let root = loaded.value.expect("the rest deserializes");
    assert_eq!((root.port, root.section.width), (0, 64));
    // A broken list item cannot be pruned without shifting indices.
    let loaded = load::<Root>(json!({"section": {"items": [3]}}));
    assert!(loaded.value.is_none());
    assert_eq!(loaded.problems.len(), 1);
}

#[test]
fn serde_disagreements_name_the_path() {
    let err = deserialize::<Root>(json!({"section": {"width": "x"}})).expect_err("bad type");
    assert_eq!(err.path, "section.width");
}

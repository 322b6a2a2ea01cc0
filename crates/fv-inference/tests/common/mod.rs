//! Helpers shared by the parity tests.
#![allow(clippy::unwrap_used, dead_code)]

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
    .join(name)
}

/// Largest absolute element difference of two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A reference fixture: `<stem>.safetensors` (tensors) and `<stem>.json` (the request and
/// scalars), as the scripts under `scripts/` write them. Test files add their own readers.
pub struct Reference {
    pub tensors: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
}

impl Reference {
    pub fn load(stem: &str) -> Self {
        let tensors =
            candle_core::safetensors::load(fixture(&format!("{stem}.safetensors")), &Device::Cpu)
                .unwrap();
        let meta = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{stem}.json"))).unwrap(),
        )
        .unwrap();
        Self { tensors, meta }
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no `{name}`"))
    }
}

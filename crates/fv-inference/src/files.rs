//! Finding, checking and loading weight files (every component).
//!
//! Before any tensor data is read, the safetensors headers (a few KB each) are checked
//! against the model's expected tensors, so a wrong, truncated or mismatched file is named
//! in the error without reading gigabytes first.

use crate::text::{canonical_connector_name, canonical_gemma_name};
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Device};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest safetensors header read (the 12B Gemma's shards have headers of ~100 KB).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Tensor names and shapes in a safetensors file's header.
pub(crate) fn header(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    let bad = |m: String| InferenceError::Config(format!("{}: {m}", path.display()));
    let mut f = std::fs::File::open(path)
        .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "not a safetensors file (header of {n} bytes, at most {MAX_HEADER_BYTES})"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)
        .map_err(|e| bad(format!("truncated safetensors header ({e})")))?;
    let json: serde_json::Value = serde_json::from_slice(&buf)
        .map_err(|e| bad(format!("not a safetensors file (header: {e})")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| bad("not a safetensors file (header is not an object)".into()))?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(format!("tensor `{name}` has no shape")))?;
        out.push((name.clone(), shape));
    }
    Ok(out)
}

/// The safetensors files of a model folder: the shards a `*.safetensors.index.json` lists
/// (each must exist), else every `*.safetensors` directly in `dir`, sorted.
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| InferenceError::Io(format!("cannot read {}: {e}", dir.display()));
    let mut files = Vec::new();
    let mut index = None;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".safetensors.index.json") {
            index = Some(path);
        } else if name.ends_with(".safetensors") {
            files.push(path);
        }
    }
    if let Some(index) = index {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", index.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| InferenceError::Config(format!("{}: {e}", index.display())))?;
        let shards: BTreeSet<String> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| InferenceError::Config(format!("{}: no `weight_map`", index.display())))?
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let listed: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        if let Some(missing) = listed.iter().find(|p| !p.is_file()) {
            return Err(InferenceError::Io(format!(
                "{} lists {}, which is missing",
                index.display(),
                missing.display()
            )));
        }
        return Ok(listed);
    }
    files.sort();
    if files.is_empty() {
        return Err(InferenceError::Config(format!(
            "no .safetensors file in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// Checks the tensors `rename` keeps from `paths` against `expected` (canonical name →
/// shape): every expected tensor present once with its shape, nothing else under the
/// component's names. Errors name the file and the tensor's name in it.
pub(crate) fn check_files(
    paths: &[&Path],
    rename: fn(&str) -> Option<String>,
    expected: &[(String, Vec<usize>)],
    component: &str,
) -> Result<()> {
    let mut found: BTreeMap<String, (String, PathBuf, Vec<usize>)> = BTreeMap::new();
    for path in paths {
        for (name, shape) in header(path)? {
            let Some(canonical) = rename(&name) else {
                continue;
            };
            if let Some((first, first_path, _)) = found.get(&canonical) {
                return Err(InferenceError::DuplicateWeight {
                    canonical,
                    first: format!("{first} in {}", first_path.display()),
                    second: format!("{name} in {}", path.display()),
                });
            }
            found.insert(canonical, (name, path.to_path_buf(), shape));
        }
    }
    let files = || {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, shape) in expected {
        match found.remove(name) {
            None => {
                return Err(InferenceError::MissingWeight(format!(
                    "{component} `{name}` (in none of {})",
                    files()
                )));
            }
            Some((orig, path, got)) if &got != shape => {
                return Err(InferenceError::WeightShape {
                    name: format!("{component} `{orig}` in {}", path.display()),
                    expected: shape.clone(),
                    found: got,
                });
            }
            Some(_) => {}
        }
    }
    if let Some((canonical, (orig, path, _))) = found.into_iter().next() {
        return Err(InferenceError::Config(format!(
            "{}: {component} tensor `{orig}` ({canonical}) is not in the config's model \
             (wrong config for these weights?)",
            path.display()
        )));
    }
    Ok(())
}

/// Checks, then loads the Gemma tensors of `paths` (see [`check_files`]).
pub(crate) fn load_gemma(
    paths: &[&Path],
    expected: &[(String, Vec<usize>)],
    dtype: DType,
    device: &Device,
) -> Result<Weights> {
    check_files(paths, canonical_gemma_name, expected, "Gemma")?;
    Weights::load_named(paths, dtype, device, canonical_gemma_name)
}

/// Checks, then loads the connector tensors of `paths` (see [`check_files`]).
pub(crate) fn load_connectors(
    paths: &[&Path],
    expected: &[(String, Vec<usize>)],
    dtype: DType,
    device: &Device,
) -> Result<Weights> {
    check_files(paths, canonical_connector_name, expected, "connectors")?;
    Weights::load_named(paths, dtype, device, canonical_connector_name)
}

/// A text file's contents, the path named in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))
}

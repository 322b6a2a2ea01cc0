//! Bad files and bad inputs on the text side give clear errors (never a panic), and every
//! limit is enforced where it is documented.
#![allow(clippy::unwrap_used)]

mod common;
use common::fixture;

use candle_core::{DType, Device, Tensor};
use fv_inference::text::{
    ConnectorsConfig, Gemma3TextEncoder, GemmaTokenizer, Ltx2TextConnectors, Ltx2TextEncoder,
    MAX_PROMPT_BYTES, MAX_TEXT_TOKENS,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A writable copy of the tiny pipeline folder.
fn tiny_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pipe");
    copy_dir(&fixture("text_tiny"), &root);
    (dir, root)
}

fn load_err(root: &Path) -> String {
    Ltx2TextEncoder::load(root, &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string()
}

fn gemma_tensors(root: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(root.join("text_encoder/model.safetensors"), &Device::Cpu)
        .unwrap()
}

#[test]
fn bad_gemma_files_are_named() {
    let (_d, root) = tiny_copy();
    let te = root.join("text_encoder");
    let file = te.join("model.safetensors");
    let mut t = gemma_tensors(&root);

    // A tensor of the wrong shape: the error names the file and the tensor.
    let good = t["language_model.model.layers.1.mlp.up_proj.weight"].clone();
    t.insert(
        "language_model.model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((63, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &file).unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("model.safetensors") && err.contains("layers.1.mlp.up_proj"),
        "{err}"
    );

    // A tensor the config does not know (a 4th layer).
    t.insert(
        "language_model.model.layers.1.mlp.up_proj.weight".into(),
        good,
    );
    t.insert(
        "language_model.model.layers.3.mlp.up_proj.weight".into(),
        Tensor::zeros((64, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &file).unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("layers.3.mlp.up_proj") && err.contains("not in the config"),
        "{err}"
    );

    // A missing tensor.
    t.remove("language_model.model.layers.3.mlp.up_proj.weight");
    let norm = t.remove("language_model.model.norm.weight").unwrap();
    candle_core::safetensors::save(&t, &file).unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("norm.weight") && err.contains("model.safetensors"),
        "{err}"
    );

    // The same tensor under two spellings in two shards.
    t.insert("language_model.model.norm.weight".into(), norm.clone());
    candle_core::safetensors::save(&t, &file).unwrap();
    let extra = HashMap::from([("model.language_model.norm.weight".to_string(), norm)]);
    candle_core::safetensors::save(&extra, te.join("model-extra.safetensors")).unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("appears twice") && err.contains("model-extra.safetensors"),
        "{err}"
    );
    std::fs::remove_file(te.join("model-extra.safetensors")).unwrap();

    // A shard the index lists is missing.
    std::fs::write(
        te.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model.safetensors"}}"#,
    )
    .unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("model-00001-of-00002.safetensors") && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_file(te.join("model.safetensors.index.json")).unwrap();

    // Not a safetensors file at all.
    std::fs::write(&file, b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage").unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("model.safetensors") && err.contains("not a safetensors"),
        "{err}"
    );
    std::fs::write(&file, b"\x02\x00\x00\x00\x00\x00\x00\x00[]").unwrap();
    assert!(load_err(&root).contains("not a safetensors"));
}

#[test]
fn bad_configs_and_folders_are_named() {
    let (_d, root) = tiny_copy();
    std::fs::write(
        root.join("connectors/config.json"),
        r#"{"rope_type": "split", "per_modality_projections": true}"#,
    )
    .unwrap();
    let err = load_err(&root);
    assert!(
        err.contains("connectors/config.json") && err.contains("LTX-2.3"),
        "{err}"
    );
    std::fs::write(root.join("text_encoder/config.json"), "{").unwrap();
    let err = load_err(&root);
    assert!(err.contains("text_encoder/config.json"), "{err}");
    std::fs::remove_file(root.join("tokenizer/tokenizer.json")).unwrap();
    let err = load_err(&root);
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::write(root.join("tokenizer/tokenizer.json"), "{}").unwrap();
    assert!(load_err(&root).contains("tokenizer.json"));
    let err = Ltx2TextEncoder::load_parts(
        &fixture("text_tiny/text_encoder"),
        &fixture("text_tiny/tokenizer/tokenizer.json"),
        &root.join("nope"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope"), "{err}");
}

fn encoder() -> Ltx2TextEncoder {
    Ltx2TextEncoder::load(&fixture("text_tiny"), &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn input_limits_are_enforced() {
    let tok = GemmaTokenizer::from_file(&fixture("text_tiny/tokenizer/tokenizer.json")).unwrap();
    let big = "a".repeat(MAX_PROMPT_BYTES + 1);
    assert!(
        tok.encode(&big, 1024)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
    assert!(
        tok.encode(&big[1..], 1024).is_ok(),
        "exactly the limit is accepted"
    );
    assert!(tok.encode("x", 0).is_err());
    assert_eq!(
        tok.encode("a red fox", 2).unwrap().len(),
        2,
        "<bos> + 1 piece"
    );

    let enc = encoder();
    assert_eq!(enc.max_length(), 1024);
    for bad in [0, 18, MAX_TEXT_TOKENS + 4] {
        let e = enc.clone().with_max_length(bad).unwrap_err().to_string();
        assert!(e.contains("text length"), "{bad}: {e}");
    }
    assert!(enc.clone().with_max_length(MAX_TEXT_TOKENS).is_ok());
    assert!(enc.encode(&[]).is_err());

    let g = enc.gemma();
    let input = |e: fv_inference::Result<Vec<Tensor>>| e.unwrap_err().to_string();
    assert!(input(g.hidden_states(&[vec![458]], 0, None)).contains("vocabulary"));
    assert!(input(g.hidden_states(&[vec![2, 3], vec![2]], 0, None)).contains("equal-length"));
    assert!(input(g.hidden_states(&[], 0, None)).contains("non-empty"));
    assert!(input(g.hidden_states(&[vec![2]], MAX_TEXT_TOKENS, None)).contains("positions"));
    assert!(
        g.hidden_states(&[vec![2]], MAX_TEXT_TOKENS - 1, None)
            .is_ok()
    );
    let mask = vec![vec![true]];
    assert!(input(g.hidden_states(&[vec![2, 3]], 0, Some(&mask))).contains("mask"));

    let c = enc.connectors();
    let f = Tensor::zeros((1, 4, 32 * 4), DType::F32, &Device::Cpu).unwrap();
    let m = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let err = |r: fv_inference::Result<fv_inference::CaptionEmbeddings>| r.unwrap_err().to_string();
    assert!(err(c.forward(&f, &m(&[1.0, 1.0, 0.0, 0.0]))).contains("left-padded"));
    assert!(err(c.forward(&f, &m(&[0.0, 0.0, 0.0, 0.0]))).contains("left-padded"));
    assert!(
        err(c.forward(&f.narrow(2, 0, 100).unwrap(), &m(&[0.0, 1.0, 1.0, 1.0])))
            .contains("features")
    );
    let six = Tensor::zeros((1, 6, 32 * 4), DType::F32, &Device::Cpu).unwrap();
    let r = c.forward(&six, &m(&[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]));
    assert!(err(r).contains("multiple of the 4 registers"));
    // Zero features (a constant layer: range 0) stay finite thanks to the epsilon.
    let out = c.forward(&f, &m(&[0.0, 1.0, 1.0, 1.0])).unwrap();
    let v: Vec<f32> = out.video.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
}

#[test]
fn mismatched_pieces_are_rejected() {
    let enc = encoder();
    let mut cfg: ConnectorsConfig = enc.connectors().config().clone();
    cfg.text_proj_in_factor = 5;
    let names = Ltx2TextConnectors::expected_weights(&cfg);
    let tensors = names.into_iter().map(|(n, s)| {
        let t = Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap();
        (n, t)
    });
    let w = fv_inference::Weights::from_named_tensors(
        tensors,
        fv_inference::text::canonical_connector_name,
    )
    .unwrap();
    let c = Ltx2TextConnectors::new(&cfg, &w, &Device::Cpu).unwrap();
    let e = Ltx2TextEncoder::new(enc.tokenizer().clone(), enc.gemma().clone(), c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 hidden states") && e.contains("take 5"), "{e}");
}

/// Tiny CPU timings (printed, not asserted): the pipeline call at the real text length
/// (1024 slots) for a short prompt, against running Gemma over the whole padded sequence.
#[test]
fn tiny_cpu_timings() {
    let enc = encoder();
    let prompt = "a red fox runs across the snowy field at dawn";
    let l = enc.tokenizer().encode(prompt, 1024).unwrap().len();
    let time = |f: &dyn Fn()| {
        f();
        let start = Instant::now();
        for _ in 0..3 {
            f();
        }
        start.elapsed().as_secs_f64() * 1e3 / 3.0
    };
    let encode = time(&|| {
        enc.encode(&[prompt]).unwrap();
    });
    let g: &Gemma3TextEncoder = enc.gemma();
    let batch = enc.tokenizer().encode_padded(&[prompt], 1024).unwrap();
    let padded = time(&|| {
        g.hidden_states(&batch.ids, 0, Some(&batch.mask)).unwrap();
    });
    let ids = enc.tokenizer().encode(prompt, 1024).unwrap();
    let real = time(&|| {
        g.hidden_states(std::slice::from_ref(&ids), 1024 - l, None)
            .unwrap();
    });
    println!(
        "tiny CPU (debug test build): encode 1 prompt ({l} tokens) into 1024 slots {encode:.1} ms; \
         Gemma over the padded 1024 tokens {padded:.1} ms vs the {l} real tokens {real:.2} ms"
    );
}

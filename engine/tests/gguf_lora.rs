//! llama.cpp's LoRA GGUFs (`convert_lora_to_gguf.py`) read as adapters. The files in
//! `tests/fixtures/gguf-lora/` were written by llama.cpp's own converter from fixtures' PEFT
//! adapters (`tests/fixtures/make_gguf_lora.py`); each must load to its PEFT folder's pairs,
//! bit for bit, whatever the converter did to them on the way (q/k rows permuted, Falcon's q/k/v
//! regrouped, Phi-3's stacks). What llama.cpp refuses, or this engine cannot apply, is refused by
//! name.

mod common;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use std::path::{Path, PathBuf};

use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::loader::peft::{AdapterFormat, PeftAdapter};
use dlp_engine::loader::ModelFiles;
use dlp_engine::{HostTensor, ModelConfig};
use writer::{Tensor, Writer, M};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `<fixture>.<adapter>.<type>.gguf` in `tests/fixtures/gguf-lora/`, sorted.
fn converted() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("gguf-lora"))
        .expect("tests/fixtures/gguf-lora")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    v.sort();
    v
}

/// `t`'s values as the converter's `--outtype` stores them.
fn rounded(t: &HostTensor, ty: &str) -> Vec<f32> {
    let v = t.values();
    match ty {
        "f32" => v.to_vec(),
        "f16" => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        "bf16" => v
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect(),
        _ => panic!("no rounding for {ty}"),
    }
}

/// `lora_alpha` of a PEFT folder's config.
fn lora_alpha(peft: &Path) -> f64 {
    let text = std::fs::read_to_string(peft.join("adapter_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["lora_alpha"].as_f64().unwrap()
}

/// The fixture folder `name` names (`compat-<x>`: the shared fixtures' `compat/<x>`) and the
/// model in it (a GGUF fixture's `model.gguf`); `None` where the shared fixtures are absent.
fn fixture(name: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = match name.strip_prefix("compat-") {
        Some(shared) => common::fixture(&format!("compat/{shared}"))?,
        None => fixtures().join(name),
    };
    let gguf = dir.join("model.gguf");
    let model = if gguf.exists() { gguf } else { dir.clone() };
    Some((dir, model))
}

#[test]
fn llama_cpp_converted_adapters_load_as_their_peft_folders() {
    let files = converted();
    assert!(files.len() >= 17, "{files:?}");
    for f in files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let [fixture_name, adapter, ty] = stem.split('.').collect::<Vec<_>>()[..] else {
            panic!("{stem}: expected <fixture>.<adapter>.<type>")
        };
        let Some((dir, model)) = fixture(fixture_name) else {
            continue;
        };
        let cfg = ModelFiles::load(&model).unwrap().config;
        let peft_dir = dir.join("adapters").join(adapter);
        let peft = PeftAdapter::load("p", &peft_dir, &cfg).unwrap();
        let gguf =
            PeftAdapter::load("g", &f, &cfg).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(gguf.format, AdapterFormat::LlamaCppGguf);
        assert_eq!(
            gguf.pairs.keys().collect::<Vec<_>>(),
            peft.pairs.keys().collect::<Vec<_>>(),
            "{stem}"
        );
        // llama.cpp's scale: adapter.lora.alpha (PEFT's lora_alpha, as f32) / each B's rank.
        let alpha = lora_alpha(&peft_dir) as f32 as f64;
        for (k, p) in &peft.pairs {
            let g = &gguf.pairs[k];
            assert_eq!(g.a.shape, p.a.shape, "{stem} {k:?} A");
            assert_eq!(g.b.shape, p.b.shape, "{stem} {k:?} B");
            assert!(g.a.values() == rounded(&p.a, ty), "{stem} {k:?}: A differs");
            assert!(g.b.values() == rounded(&p.b, ty), "{stem} {k:?}: B differs");
            let want = (alpha / p.rank() as f64) as f32;
            assert_eq!(g.scale, want, "{stem} {k:?}: scale");
        }
    }
}

/// `--outtype q8_0`: A in Q8_0 blocks (within a block's step of PEFT's values), B in F16
/// (the converter's fallback for rows of r = 8 values, not a multiple of 32). The file is the
/// GGUF fuzz seed, written by the converter from the shared tiny-llama's `qv_r8`.
#[test]
fn a_q8_0_adapter_loads_within_its_rounding() {
    let Some(dir) = common::fixture("tiny-llama") else {
        return;
    };
    let cfg = ModelFiles::load(&dir).unwrap().config;
    let peft = PeftAdapter::load("p", &dir.join("adapters/qv_r8"), &cfg).unwrap();
    let seed = fixtures().join("../fuzz/corpus/gguf/lora-llama.gguf");
    let q8 = PeftAdapter::load("q", &seed, &cfg).unwrap();
    assert_eq!(q8.pairs.len(), peft.pairs.len());
    for (k, p) in &peft.pairs {
        let g = &q8.pairs[k];
        assert!(g.b.values() == rounded(&p.b, "f16"), "{k:?}: B");
        // Q8_0: 32 values per block scaled by a step of max|x| / 127 (stored in f16): rounding
        // moves each by half a step, the step's own rounding by up to 127 * 2^-11 of one more.
        let a = p.a.values();
        for (i, (&x, &y)) in g.a.values().iter().zip(a.iter()).enumerate() {
            let block = &a[i / 32 * 32..(i / 32 + 1) * 32];
            let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            assert!((x - y).abs() <= step * 0.57, "{k:?} A[{i}]: {x} vs {y}");
        }
        assert!(g.a.values() != a, "{k:?}: A not rounded at all?");
        assert_eq!(g.scale, p.scale);
    }
}

/// A fixture's config and one of its converted adapters as a writer, to change.
fn base_and_lora(stem: &str) -> (ModelConfig, Writer) {
    let cfg = ModelFiles::load(&fixtures().join(stem.split('.').next().unwrap()))
        .unwrap()
        .config;
    let path = fixtures().join(format!("gguf-lora/{stem}.gguf"));
    (cfg, Writer::copy_of(&GgufFile::open(&path).unwrap()))
}

/// Loads `w` written to a file named `name` as an adapter of `cfg`.
fn load(w: &Writer, name: &str, cfg: &ModelConfig) -> Result<PeftAdapter, String> {
    let dir = std::env::temp_dir().join(format!("dlp-gguf-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, w.bytes()).unwrap();
    let r = PeftAdapter::load("a", &path, cfg).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    r
}

fn set(w: &mut Writer, key: &str, v: M) {
    w.kv.retain(|(k, _)| k != key);
    w.kv.push((key.into(), v));
}

fn refused(w: &Writer, cfg: &ModelConfig, want: &[&str]) {
    let Err(e) = load(w, "bad.gguf", cfg) else {
        panic!("loaded; expected a refusal saying {want:?}")
    };
    for s in want {
        assert!(e.contains(s), "{e:?} lacks {s:?}");
    }
}

/// An f32 tensor of `dims` (GGUF order) holding `v` everywhere.
fn filled(name: &str, dims: Vec<u64>, v: f32) -> Tensor {
    let n = dims.iter().product::<u64>() as usize;
    Tensor {
        name: name.into(),
        dims,
        ty: 0,
        data: v.to_le_bytes().repeat(n),
    }
}

#[test]
fn what_llama_cpp_refuses_or_this_engine_cannot_apply_is_refused_by_name() {
    let (cfg, good) = base_and_lora("tiny-arcee.all_r8.f32");
    load(&good, "good.gguf", &cfg).unwrap();
    let with = |f: &dyn Fn(&mut Writer)| {
        let mut w = good.clone();
        f(&mut w);
        w
    };
    // Not an adapter (a model, with or without `general.type`), or not LoRA.
    refused(
        &with(&|w| set(w, "general.type", M::Str("model"))),
        &cfg,
        &["is a model (`general.type` \"model\")", "pass it with -m"],
    );
    refused(
        &with(&|w| w.kv.retain(|(k, _)| k != "general.type")),
        &cfg,
        &[
            "is a model (no `general.type` \"adapter\")",
            "pass it with -m",
        ],
    );
    refused(
        &with(&|w| w.kv.retain(|(k, _)| k != "general.architecture")),
        &cfg,
        &["metadata `general.architecture` is missing"],
    );
    refused(
        &with(&|w| set(w, "adapter.type", M::Str("cvec"))),
        &cfg,
        &["`adapter.type` is \"cvec\", expected \"lora\""],
    );
    // Another family's adapter (llama.cpp: "model arch and LoRA arch mismatch").
    refused(
        &with(&|w| set(w, "general.architecture", M::Str("llama"))),
        &cfg,
        &[
            "an adapter for a `llama` model",
            "the base model is a `arcee` one",
        ],
    );
    // alpha: llama.cpp reads an f32 only.
    refused(
        &with(&|w| set(w, "adapter.lora.alpha", M::U32(16))),
        &cfg,
        &["`adapter.lora.alpha`: expected a finite f32", "U32(16)"],
    );
    refused(
        &with(&|w| set(w, "adapter.lora.alpha", M::F32(f32::NAN))),
        &cfg,
        &["expected a finite f32"],
    );
    refused(
        &with(&|w| set(w, "adapter.lora.alpha", M::F32(1e9))),
        &cfg,
        &["scale of", "expected at most"],
    );
    // Activated LoRA.
    refused(
        &with(&|w| set(w, "adapter.alora.invocation_tokens", M::I32s(vec![5, 6]))),
        &cfg,
        &["activated LoRA", "not supported"],
    );
    // A tensor that is no LoRA half; LoRA on the embeddings; a module that is not linear.
    refused(
        &with(&|w| {
            w.tensors
                .push(filled("blk.0.attn_q.weight", vec![4, 4], 0.0))
        }),
        &cfg,
        &["`blk.0.attn_q.weight` has an unexpected suffix"],
    );
    refused(
        &with(&|w| {
            w.tensors
                .push(filled("token_embd.weight.lora_a", vec![8, 4], 0.0));
            w.tensors
                .push(filled("token_embd.weight.lora_b", vec![4, 8], 0.0));
        }),
        &cfg,
        &["LoRA on the token embeddings or the output head is not supported"],
    );
    refused(
        &with(&|w| {
            w.tensors
                .push(filled("blk.0.attn_k_norm.weight.lora_a", vec![4, 4], 0.0))
        }),
        &cfg,
        &["`blk.0.attn_k_norm.weight` is not a linear module"],
    );
    // A half alone; a layer the model lacks; a module the model lacks (Arcee has no gate).
    refused(
        &with(&|w| {
            w.tensors
                .retain(|t| t.name != "blk.1.ffn_down.weight.lora_b")
        }),
        &cfg,
        &["the LoRA pair of `blk.1.ffn_down.weight` is missing one half"],
    );
    let renamed = |from: &'static str, to: &'static str| {
        with(&move |w: &mut Writer| {
            for t in &mut w.tensors {
                t.name = t.name.replace(from, to);
            }
        })
    };
    refused(
        &renamed("blk.1.", "blk.7."),
        &cfg,
        &["layer 7, but the base model has 2 layers"],
    );
    // Layer numbers as llama.cpp never writes them (they had been read as layer 1).
    for odd in ["blk.01.", "blk.+1."] {
        let w = renamed("blk.1.", odd);
        refused(
            &w,
            &cfg,
            &[
                &format!("tensor `{odd}"),
                "a layer number as llama.cpp never writes it",
            ],
        );
    }
    refused(
        &renamed("blk.1.ffn_up.", "blk.1.ffn_gate."),
        &cfg,
        &["`blk.1.ffn_gate.weight` holds LoRA for gate_proj, which the base model does not have"],
    );
    // Shapes: A and B swapped, or another model's widths.
    refused(
        &with(&|w| {
            for t in &mut w.tensors {
                if t.name.starts_with("blk.0.attn_v.") {
                    t.dims.reverse();
                }
            }
        }),
        &cfg,
        &[
            "`blk.0.attn_v.weight.lora_a` has ne",
            "(GGUF order); the base model needs",
        ],
    );
    // Rank 0 (which scales by alpha / 0).
    refused(
        &with(&|w| {
            for t in &mut w.tensors {
                if t.name.starts_with("blk.0.attn_v.") {
                    let r = match t.name.ends_with("lora_a") {
                        true => 1,
                        false => 0,
                    };
                    t.dims[r] = 0;
                    t.data.clear();
                }
            }
        }),
        &cfg,
        &["`blk.0.attn_v.weight.lora_a` has rank 0"],
    );
    // A non-finite value; a 3-D half.
    refused(
        &with(&|w| {
            let t = w
                .tensors
                .iter_mut()
                .find(|t| t.name.ends_with(".lora_b"))
                .unwrap();
            t.data[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }),
        &cfg,
        &["holds a non-finite value (inf) at flat index 0"],
    );
    refused(
        &with(&|w| {
            let t = w
                .tensors
                .iter_mut()
                .find(|t| t.name.ends_with(".lora_a"))
                .unwrap();
            t.dims.push(2);
            t.data.extend(t.data.clone());
        }),
        &cfg,
        &["has 3 dimensions"],
    );
    // A trailing dimension of 1 (ggml's ne is 4 long; llama.cpp reads the matrix): the same
    // adapter.
    let padded = with(&|w| w.tensors.iter_mut().for_each(|t| t.dims.push(1)));
    let (a, b) = (
        load(&padded, "p.gguf", &cfg).unwrap(),
        load(&good, "g.gguf", &cfg).unwrap(),
    );
    for (k, p) in &b.pairs {
        let q = &a.pairs[k];
        assert!(
            q.a.shape == p.a.shape && q.a.values() == p.a.values(),
            "{k:?} A"
        );
        assert!(
            q.b.shape == p.b.shape && q.b.values() == p.b.values(),
            "{k:?} B"
        );
    }
    // One module adapted twice (a fused q/k/v beside a separate q).
    let (lcfg, llama) = base_and_lora("tiny-arcee.all_r8.f32");
    let mut twice = llama.clone();
    twice.tensors.extend(fused_qkv(&llama, &lcfg, 0));
    refused(
        &twice,
        &lcfg,
        &["`blk.0.attn_q.weight` and `blk.0.attn_qkv.weight` both hold LoRA for layer 0's q_proj"],
    );
}

/// Layer `layer`'s q/k/v LoRA of `w` as one `attn_qkv` pair (llama.cpp's `--fuse-qkv` base
/// takes one): q's A, B stacked [q; k; v] (GGUF rows are ne1).
fn fused_qkv(w: &Writer, cfg: &ModelConfig, layer: usize) -> Vec<Tensor> {
    let get = |n: &str| {
        w.tensors
            .iter()
            .find(|t| t.name == format!("blk.{layer}.{n}"))
            .unwrap()
            .clone()
    };
    let a = get("attn_q.weight.lora_a");
    let mut b = get("attn_q.weight.lora_b");
    for n in ["attn_k.weight.lora_b", "attn_v.weight.lora_b"] {
        let t = get(n);
        b.dims[1] += t.dims[1];
        b.data.extend(t.data);
    }
    let n_out = cfg.module_dims(dlp_engine::LoraModule::Q).1
        + 2 * cfg.module_dims(dlp_engine::LoraModule::K).1;
    assert_eq!(b.dims[1] as usize, n_out);
    vec![
        Tensor {
            name: format!("blk.{layer}.attn_qkv.weight.lora_a"),
            ..a
        },
        Tensor {
            name: format!("blk.{layer}.attn_qkv.weight.lora_b"),
            ..b
        },
    ]
}

#[test]
fn a_fused_qkv_pair_is_its_q_k_v_pairs_with_one_a() {
    let (cfg, w) = base_and_lora("tiny-arcee.all_r8.f32");
    let separate = load(&w, "separate.gguf", &cfg).unwrap();
    let mut fused = w.clone();
    let qkv = fused_qkv(&w, &cfg, 1);
    fused.tensors.retain(|t| {
        !["attn_q", "attn_k", "attn_v"]
            .iter()
            .any(|m| t.name.starts_with(&format!("blk.1.{m}.")))
    });
    fused.tensors.extend(qkv);
    let fused = load(&fused, "fused.gguf", &cfg).unwrap();
    use dlp_engine::LoraModule::*;
    for m in [Q, K, V] {
        let (s, f) = (&separate.pairs[&(1, m)], &fused.pairs[&(1, m)]);
        // One A (q's) for the three; each part's own B rows, un-permuted as separate ones are.
        assert!(
            f.a.values() == separate.pairs[&(1, Q)].a.values(),
            "{m:?} A"
        );
        assert!(f.b.values() == s.b.values(), "{m:?} B");
        assert_eq!(f.scale, s.scale);
    }
    assert!(fused.pairs[&(0, K)].a.values() == separate.pairs[&(0, K)].a.values());
}

#[test]
fn alpha_zero_or_absent_scales_by_one_and_norm_vectors_are_left_out() {
    let (cfg, w) = base_and_lora("tiny-arcee.all_r8.f32");
    for alpha in [Some(0.0), None] {
        let mut w = w.clone();
        w.kv.retain(|(k, _)| k != "adapter.lora.alpha");
        if let Some(a) = alpha {
            set(&mut w, "adapter.lora.alpha", M::F32(a));
        }
        let a = load(&w, "a.gguf", &cfg).unwrap();
        assert!(a.pairs.values().all(|p| p.scale == 1.0), "{alpha:?}");
    }
    // mergekit-extract-lora's norms: skipped, as llama.cpp skips them.
    let mut with_norm = w.clone();
    with_norm.tensors.push(filled(
        "blk.0.attn_norm.weight",
        vec![cfg.hidden_size as u64],
        1.0,
    ));
    let a = load(&with_norm, "n.gguf", &cfg).unwrap();
    let b = load(&w, "w.gguf", &cfg).unwrap();
    assert_eq!(a.num_params(), b.num_params());
}

#[test]
fn an_adapter_gguf_given_as_the_model_says_to_pass_it_with_adapter() {
    let path = fixtures().join("gguf-lora/tiny-arcee.all_r8.f32.gguf");
    let e = ModelFiles::load(&path)
        .err()
        .expect("not a model")
        .to_string();
    assert!(
        e.contains("a llama.cpp LoRA adapter (`general.type` \"adapter\"), not a model: pass it with --adapter NAME=PATH"),
        "{e}"
    ); // Another type than a model's, named.
    let mut w = Writer::copy_of(&GgufFile::open(&path).unwrap());
    set(&mut w, "general.type", M::Str("mmproj"));
    let dir = std::env::temp_dir().join(format!("dlp-gguf-mmproj-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mmproj.gguf"), w.bytes()).unwrap();
    let e = ModelFiles::load(&dir.join("mmproj.gguf"))
        .err()
        .expect("not a model")
        .to_string();
    assert!(
        e.contains("`general.type` is \"mmproj\", not \"model\""),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

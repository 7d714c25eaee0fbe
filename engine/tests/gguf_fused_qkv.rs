//! llama.cpp's `--fuse-qkv` GGUFs: one `attn_qkv` per layer where a family's files otherwise
//! hold `attn_q`, `attn_k` and `attn_v` (llama.cpp's `create_tensor_qkv` prefers it; its
//! `build_qkv` views rows `[0, q)`, `[q, q + k)`, `[q + k, ..)` of the product as Q, K, V).
//! Every GGUF fixture holding separate q/k/v is rewritten so, weights and biases stacked by
//! rows as the file holds them (a `llama` file's q/k rows permuted, as llama.cpp's graph needs
//! them), and must load to the very weights the original loads to, so to its logits, which the
//! golden runs check against transformers. A fused weight beside separate biases (or the
//! reverse), both forms of one layer, and a wrong row count are refused by name.

#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use std::path::{Path, PathBuf};

use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::loader::ModelFiles;
use writer::{Tensor, Writer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A folder of this process's own for `test`, removed when the test passes.
struct Temp(PathBuf);

impl Temp {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dlp-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    /// `w`'s bytes in this folder's file `name`.
    fn write(&self, name: &str, w: &Writer) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, w.bytes()).unwrap();
        p
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How [`rewrite`] treats a layer's q/k/v.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// Weights and biases fused (what llama.cpp's converter writes).
    Fused,
    /// The weights fused, the biases left apart.
    WeightsOnly,
    /// The biases fused, the weights left apart.
    BiasesOnly,
    /// The fused tensors added beside the separate ones.
    Both,
}

/// `src`'s metadata and tensors with each layer's q/k/v (of one ggml type) stacked in
/// `attn_qkv` as `form` says; the number of layers fused.
fn rewrite(src: &Path, form: Form) -> (Writer, usize) {
    let g = GgufFile::open(src).unwrap();
    let mut w = Writer::copy_of(&g);
    let stored = std::mem::take(&mut w.tensors);
    let find = |n: &str| g.tensors.iter().find(|t| t.name == n);
    let copy = |t: &dlp_engine::loader::gguf::GgufTensorInfo| {
        stored.iter().find(|s| s.name == t.name).unwrap().clone()
    };
    let mut tensors = Vec::new();
    let mut fused_layers = std::collections::BTreeSet::new();
    for t in &g.tensors {
        let Some((stem, suffix)) = t.name.split_once(".attn_q.") else {
            if !(t.name.contains(".attn_k.") || t.name.contains(".attn_v.")) {
                tensors.push(copy(t));
            }
            continue;
        };
        let parts: Vec<_> = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .map(|p| find(&format!("{stem}.{p}.{suffix}")).unwrap())
            .collect();
        let fuse = match form {
            Form::Fused | Form::Both => true,
            Form::WeightsOnly => suffix == "weight",
            Form::BiasesOnly => suffix == "bias",
        };
        if !fuse || form == Form::Both {
            tensors.extend(parts.iter().map(|p| copy(p)));
        }
        if fuse {
            let rows: u64 = parts.iter().map(|p| p.dims.last().unwrap()).sum();
            let mut dims = t.dims.clone();
            *dims.last_mut().unwrap() = rows;
            // One type: the blocks as stored (llama.cpp's converter fuses before it quantizes);
            // mixed types (the fixtures' layer 0): the values, in f32.
            let (ty, data) = match parts.iter().all(|p| p.ggml_type == t.ggml_type) {
                true => (
                    t.ggml_type,
                    (parts.iter())
                        .flat_map(|p| g.tensor_bytes(p).unwrap().to_vec())
                        .collect(),
                ),
                false => (
                    0,
                    (parts.iter())
                        .flat_map(|p| g.dequantize(p).unwrap().values().into_owned())
                        .flat_map(f32::to_le_bytes)
                        .collect(),
                ),
            };
            tensors.push(Tensor {
                name: format!("{stem}.attn_qkv.{suffix}"),
                dims,
                ty,
                data,
            });
            fused_layers.insert(stem.to_string());
        }
    }
    w.tensors = tensors;
    (w, fused_layers.len())
}

/// Every tensor of `a` equal, to the bit, to `b`'s: values, and blocks where both keep them.
fn assert_same_weights(a: &mut ModelFiles, b: &mut ModelFiles, what: &str) {
    let mut names: Vec<String> = a.weights.names().map(String::from).collect();
    let mut other: Vec<String> = b.weights.names().map(String::from).collect();
    names.sort();
    other.sort();
    assert_eq!(names, other, "{what}: tensor names");
    for n in &names {
        let x = a.weights.get_mut(n).unwrap().clone();
        let y = b.weights.get_mut(n).unwrap();
        assert_eq!(x.shape, y.shape, "{what}: {n}");
        let bits = |t: &dlp_engine::HostTensor| {
            (t.values().iter().map(|f| f.to_bits())).collect::<Vec<_>>()
        };
        assert_eq!(bits(&x), bits(y), "{what}: {n}");
        // Blocks kept where both files store them so (a fused tensor of mixed parts is f32).
        if let (Some(p), Some(q)) = (&x.packed, &y.packed) {
            assert_eq!((p.kind, &p.bytes), (q.kind, &q.bytes), "{what}: {n}");
        }
    }
}

/// The GGUF fixtures whose files hold separate q/k/v.
fn separate_qkv_fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path().join("model.gguf"))
        .filter(|p| p.exists())
        .filter(|p| {
            let g = GgufFile::open(p).unwrap();
            g.tensors.iter().any(|t| t.name == "blk.0.attn_q.weight")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fused_qkv_files_load_as_the_separate_ones() {
    let files = separate_qkv_fixtures();
    // 22 of the 28 GGUF fixtures at the time of writing (not phi3's three, falcon's, phi2's
    // or chatglm's, which hold attn_qkv).
    assert!(files.len() >= 20, "{files:?}");
    let (mut biased, mut blocks) = (0, 0);
    let temp = Temp::new("fused-qkv");
    for src in &files {
        let family = src.parent().unwrap().file_name().unwrap().to_string_lossy();
        let (w, layers) = rewrite(src, Form::Fused);
        assert!(layers > 0, "{family}: no layer fused");
        biased += w.tensors.iter().any(|t| t.name.ends_with("attn_qkv.bias")) as usize;
        blocks +=
            (w.tensors.iter()).any(|t| t.name.ends_with("attn_qkv.weight") && t.ty != 0) as usize;
        let fused = temp.write(&format!("{family}.gguf"), &w);
        for packed in [false, true] {
            let what = format!("{family} (packed: {packed})");
            let mut a = ModelFiles::load_with(src, packed).unwrap();
            let mut b =
                ModelFiles::load_with(&fused, packed).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                format!("{:?}", a.config),
                format!("{:?}", b.config),
                "{what}"
            );
            assert_same_weights(&mut a, &mut b, &what);
        }
    }
    // qwen2's, apertus's, ... q/k/v biases; quantized blocks split by rows.
    assert!(biased >= 3, "{biased} fixtures with fused biases");
    assert!(
        blocks >= 3,
        "{blocks} fixtures with a fused quantized weight"
    );
}

fn refusal(temp: &Temp, w: &Writer, name: &str) -> String {
    let p = temp.write(name, w);
    match ModelFiles::load_with(&p, false) {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mixed_forms_and_wrong_rows_are_refused_by_name() {
    let temp = Temp::new("fused-qkv-refused");
    let qwen2 = fixtures().join("tiny-qwen2-gguf/model.gguf");
    // llama.cpp reads attn_qkv.bias only beside attn_qkv.weight, and the reverse.
    let e = refusal(&temp, &rewrite(&qwen2, Form::WeightsOnly).0, "w.gguf");
    assert!(
        e.contains("`blk.0.attn_q.bias` beside `blk.0.attn_qkv.weight`")
            && e.contains("llama.cpp reads a fused attn_qkv's bias from attn_qkv.bias"),
        "{e}"
    );
    let e = refusal(&temp, &rewrite(&qwen2, Form::BiasesOnly).0, "b.gguf");
    assert!(
        e.contains("`blk.0.attn_qkv.bias` beside `blk.0.attn_q.weight`"),
        "{e}"
    );
    // Both forms of a layer: llama.cpp makes the fused one and leaves the others over.
    let e = refusal(&temp, &rewrite(&qwen2, Form::Both).0, "both.gguf");
    assert!(
        e.contains("tensor `blk.0.attn_q.weight` beside `blk.0.attn_qkv.weight`: llama.cpp reads one form of a layer's q/k/v only"),
        "{e}"
    );
    // So in a family whose stack the loader splits under HF's names (`glm4`'s optional one).
    let glm4 = fixtures().join("tiny-glm4-gguf/model.gguf");
    let e = refusal(&temp, &rewrite(&glm4, Form::WeightsOnly).0, "glm4-w.gguf");
    assert!(e.contains("beside `blk.0.attn_qkv.weight`"), "{e}");
    // And a `phi3` file's separate gate beside its stacked gate and up.
    let phi3 = GgufFile::open(&fixtures().join("tiny-phi3-gguf/model.gguf")).unwrap();
    let mut w = Writer::copy_of(&phi3);
    let mut gate = (w.tensors.iter())
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap()
        .clone();
    gate.name = "blk.0.ffn_gate.weight".into();
    w.tensors.push(gate);
    let e = refusal(&temp, &w, "phi3-gate.gguf");
    assert!(
        e.contains("both `blk.0.ffn_up.weight`")
            && e.contains("and `blk.0.ffn_gate.weight`")
            && e.contains("llama.cpp's loader reads one of them only"),
        "{e}"
    );
    // A part's bad value named as the part, and the tensor the file holds it in.
    let (mut w, _) = rewrite(&qwen2, Form::Fused);
    let t = (w.tensors.iter_mut())
        .find(|t| t.name == "blk.0.attn_qkv.weight")
        .unwrap();
    assert_eq!(t.ty, 0, "parts of mixed types, fused in f32");
    // The last row: v's.
    let at = 4 * (t.dims[1] as usize - 1) * t.dims[0] as usize;
    t.data[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = refusal(&temp, &w, "nan.gguf");
    assert!(
        e.contains("tensor `blk.0.attn_v.weight` (model.layers.0.self_attn.v_proj.weight) (rows of `blk.0.attn_qkv.weight`) holds a non-finite value"),
        "{e}"
    );
    // A row short: named, with the widths it should stack.
    let llama = fixtures().join("tiny-llama-gguf/model.gguf");
    let (mut w, _) = rewrite(&llama, Form::Fused);
    let t = (w.tensors.iter_mut())
        .find(|t| t.name == "blk.0.attn_qkv.weight")
        .unwrap();
    assert_eq!(t.ty, 0, "parts of mixed types, fused in f32");
    let cols = t.dims[0] as usize;
    t.dims[1] -= 1;
    t.data.truncate(t.data.len() - 4 * cols);
    let e = refusal(&temp, &w, "short.gguf");
    assert!(
        e.contains("tensor `blk.0.attn_qkv.weight` has shape")
            && e.contains("the rows of attn_q, attn_k and attn_v stacked"),
        "{e}"
    );
}

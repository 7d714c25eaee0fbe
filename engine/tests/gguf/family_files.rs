//! Small GGUF files of one family's metadata, read as a model config: what the family tests
//! (`gguf_families.rs`, `gguf_norm_bias.rs`) build and read.

use dlp_engine::config::ModelConfig;
use dlp_engine::loader::gguf::GgufFile;

use super::writer::{Tensor, Writer, M};

/// An `arch` (`gemma2`, `gemma3`, `granite`, `smollm3`, `olmo2`) file's metadata with `extra`
/// keys (and, for `gemma3` and `olmo2`, a layer-0 query norm).
pub fn gguf(
    arch: &'static str,
    layers: u32,
    hidden: u32,
    heads: u32,
    head_dim: u32,
    extra: Vec<(&str, M)>,
) -> Vec<u8> {
    gguf_with(arch, layers, hidden, heads, head_dim, extra, vec![])
}

/// [`gguf`] with `more` tensors.
pub fn gguf_with(
    arch: &'static str,
    layers: u32,
    hidden: u32,
    heads: u32,
    head_dim: u32,
    extra: Vec<(&str, M)>,
    more: Vec<Tensor>,
) -> Vec<u8> {
    let key = |k: &str| format!("{arch}.{k}");
    let mut kv = vec![
        ("general.architecture".to_string(), M::Str(arch)),
        (key("context_length"), M::U32(4096)),
        (key("embedding_length"), M::U32(hidden)),
        (key("feed_forward_length"), M::U32(64)),
        (key("block_count"), M::U32(layers)),
        (key("attention.head_count"), M::U32(heads)),
        (key("attention.head_count_kv"), M::U32(1)),
        (key("attention.key_length"), M::U32(head_dim)),
        (key("attention.layer_norm_rms_epsilon"), M::F32(1e-6)),
        (key("vocab_size"), M::U32(64)),
        (key("rope.freq_base"), M::F32(1e6)),
    ];
    // An `extra` key replaces the default of that name.
    let extra: Vec<(String, M)> = (extra.into_iter())
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    kv.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    kv.extend(extra);
    let norm = Tensor {
        name: "blk.0.attn_q_norm.weight".into(),
        dims: vec![head_dim as u64],
        ty: 0,
        data: vec![0; 4 * head_dim as usize],
    };
    let mut tensors = match arch {
        "gemma3" | "olmo2" | "exaone4" | "apertus" | "hunyuan-dense" => vec![norm],
        _ => vec![],
    };
    tensors.extend(more);
    Writer {
        version: 3,
        kv,
        tensors,
    }
    .bytes()
}

pub fn read(name: &str, bytes: &[u8]) -> dlp_engine::Result<ModelConfig> {
    // A folder per call: tests run in parallel, and two that named their files alike (`s.gguf`
    // for smollm3 and seed_oss) had read each other's.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dlp-gguf-families-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let config = GgufFile::open(&p).and_then(|g| g.config());
    let _ = std::fs::remove_dir_all(&dir);
    config
}

/// Asserts that reading `bytes` (as file `name`) fails with a message containing `want`.
pub fn refused(name: &str, bytes: &[u8], want: &str) {
    let e = read(name, bytes).unwrap_err().to_string();
    assert!(e.contains(want), "{e}");
}

/// A LayerNorm family `arch`'s required eps key (`attention.layer_norm_epsilon`, 1e-5), with
/// `rot` rotated dimensions.
pub fn layernorm_keys(arch: &'static str, rot: u32) -> Vec<(&'static str, M)> {
    let key = |k: &str| -> &'static str { Box::leak(format!("{arch}.{k}").into_boxed_str()) };
    vec![
        (key("attention.layer_norm_epsilon"), M::F32(1e-5)),
        (key("rope.dimension_count"), M::U32(rot)),
    ]
}

/// An F32 tensor `name` of `dims` (GGUF order), all zeros.
pub fn zero_tensor(name: &str, dims: Vec<u64>) -> Tensor {
    let n: u64 = dims.iter().product();
    Tensor {
        name: name.into(),
        dims,
        ty: 0,
        data: vec![0; 4 * n as usize],
    }
}

//! GGUF files of llama.cpp's `qwen2`, `qwen3` and `phi3` architectures: hyper-parameters read
//! under their own prefix, and what does not fit the architecture refused by name. Their
//! logits against transformers: the golden runs' `tiny_qwen2_gguf`, `tiny_qwen3_gguf` and
//! `tiny_phi3_gguf`.

use std::path::{Path, PathBuf};

use dlp_engine::config::Arch;
use dlp_engine::loader::gguf::GgufFile;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
        .join("model.gguf");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `bytes` with every `from` replaced by `to` (same length, so offsets stay valid).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut hits = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0, "{:?} not found", String::from_utf8_lossy(from));
    out
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlp-gguf-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn qwen_configs_read_under_their_prefix() {
    let g = GgufFile::open(&write("q3.gguf", &fixture("tiny-qwen3-gguf"))).unwrap();
    let c = g.config().unwrap();
    assert_eq!(c.arch, Arch::Qwen3);
    assert!(c.qk_norm && !c.qkv_bias && c.tie_word_embeddings);
    // head_dim from qwen3.attention.key_length: 4 heads of 128 over a width of 256.
    let dims = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
    assert_eq!(dims, (256, 4, 2, 128));
    assert_eq!(
        (c.intermediate_size, c.num_layers, c.vocab_size),
        (256, 1, 128)
    );
    assert_eq!(c.rope_theta, 1e6);
    let w = g.load_weights().unwrap();
    assert!(w.contains("model.layers.0.self_attn.q_norm.weight"));
    assert!(w.contains("model.layers.0.self_attn.k_norm.weight"));

    let g = GgufFile::open(&write("q2.gguf", &fixture("tiny-qwen2-gguf"))).unwrap();
    let c = g.config().unwrap();
    assert_eq!(c.arch, Arch::Qwen2);
    assert!(!c.qk_norm && c.qkv_bias && !c.o_bias);
    assert_eq!((c.hidden_size, c.num_heads, c.head_dim), (256, 4, 64));
}

/// What `config()` says of a file holding `bytes`.
fn config_error(name: &str, bytes: &[u8]) -> String {
    let g = GgufFile::open(&write(name, bytes)).unwrap();
    g.config().unwrap_err().to_string()
}

#[test]
fn qk_norms_must_match_the_architecture() {
    // A qwen2 file holding Qwen3's norms, and a qwen3 file without them.
    let q3 = fixture("tiny-qwen3-gguf");
    let e = config_error("q2-norms.gguf", &patched(&q3, b"qwen3", b"qwen2"));
    assert!(
        e.contains("blk.0.attn_q_norm.weight` is present") && e.contains("`qwen2` GGUF"),
        "{e}"
    );
    let e = config_error(
        "q3-bare.gguf",
        &patched(&q3, b"attn_q_norm", b"attn_q_nrom"),
    );
    assert!(
        e.contains("blk.0.attn_q_norm.weight` is missing") && e.contains("`qwen3` GGUF"),
        "{e}"
    );
}

#[test]
fn other_architectures_are_named() {
    let bloom = patched(&fixture("tiny-qwen3-gguf"), b"qwen3", b"bloom");
    let e = config_error("bloom.gguf", &bloom);
    assert!(
        e.contains("`general.architecture` is \"bloom\"") && e.contains("\"gemma3\""),
        "{e}"
    );
}

/// Llama 3.1's RoPE scaling as llama.cpp writes it (`rope_freqs.weight`, one divisor per
/// frequency) is read and checked: `head_dim / 2` finite values > 0.
#[test]
fn rope_freqs_are_read_and_checked() {
    let bytes = fixture("tiny-llama-gguf");
    let g = GgufFile::open(&write("llama31.gguf", &bytes)).unwrap();
    let c = g.config().unwrap();
    let factors = c.rope_freq_factors.clone().expect("rope_freqs read");
    assert_eq!(factors.len(), c.head_dim / 2);
    // Llama 3.1's formula: 1 for the fast frequencies, `factor` (8) for the slow ones.
    assert_eq!((factors[0], factors[factors.len() - 1]), (1.0, 8.0));
    let values: Vec<u8> = factors
        .iter()
        .flat_map(|&f| (f as f32).to_le_bytes())
        .collect();
    // A factor of -1 and a tensor of half the length (the count in its info is patched).
    let at = find(&bytes, &values);
    let mut bad = bytes.clone();
    bad[at + 4..at + 8].copy_from_slice(&(-1.0f32).to_le_bytes());
    let e = config_error("neg.gguf", &bad);
    assert!(e.contains("rope_freqs.weight`: value 1 is -1"), "{e}");
    let dims_at = find(&bytes, b"rope_freqs.weight") + "rope_freqs.weight".len() + 4;
    let mut short = bytes.clone();
    short[dims_at..dims_at + 8].copy_from_slice(&(factors.len() as u64 / 2).to_le_bytes());
    let e = config_error("short.gguf", &short);
    assert!(e.contains("has shape [16]: expected [32]"), "{e}");
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    (0..hay.len())
        .find(|&i| hay[i..].starts_with(needle))
        .expect("present")
}

/// A qwen3 file without `key_length` (its heads are wider than embedding / heads): the message
/// says which key is missing, not that the rotary embedding is partial.
#[test]
fn missing_key_length_is_named() {
    let bytes = fixture("tiny-qwen3-gguf");
    let e = config_error(
        "nokl.gguf",
        &patched(&bytes, b"attention.key_length", b"attention.kez_length"),
    );
    assert!(
        e.contains("no `qwen3.attention.key_length`") && e.contains("= 64 wide"),
        "{e}"
    );
}

/// One shard of a split GGUF is said to be one, with how to merge the shards (its tensors
/// alone would be reported missing one by one).
#[test]
fn a_shard_of_a_split_file_is_named() {
    let mut w = gguf_py_like_split_header();
    w.extend(fixture("tiny-qwen3-gguf")[24..].iter());
    // The second shard: the merge command names the first.
    let e = config_error("m-00002-of-00003.gguf", &w);
    assert!(
        e.contains("shard 2 of 3 of a split GGUF")
            && e.contains("llama-gguf-split --merge m-00001-of-00003.gguf merged.gguf"),
        "{e}"
    );
    // Reading text with it says the same (its vocabulary may be in another shard).
    let g = GgufFile::open(&write("m-00002-of-00003.gguf", &w)).unwrap();
    let e = dlp_engine::tokenizer::TextTokenizer::from_gguf(&g)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shard 2 of 3"), "{e}");
}

/// The fixture's header with three more metadata entries in front of its own: `split.no = 1`
/// and `split.count = 3` (u16, as gguf-split writes them) and `x.y`, whose 17 bytes make the
/// 64 added bytes keep the data section's 32-byte alignment. Magic, version, tensor count,
/// then the entry count raised by three.
fn gguf_py_like_split_header() -> Vec<u8> {
    let bytes = fixture("tiny-qwen3-gguf");
    let mut out = bytes[..16].to_vec();
    let kv = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    out.extend((kv + 3).to_le_bytes());
    for (k, v) in [("split.no", 1u16), ("split.count", 3), ("x.y", 0)] {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend(2u32.to_le_bytes()); // GGUF_TYPE_UINT16
        out.extend(v.to_le_bytes());
    }
    out
}

/// A tensor of the wrong shape is named as the file names it, its shape in the file's order.
#[test]
fn shape_errors_name_the_file_s_tensor() {
    let bytes = fixture("tiny-qwen3-gguf");
    // q_norm's one dimension (128) halved in its tensor info.
    let at = find(&bytes, b"blk.0.attn_q_norm.weight") + "blk.0.attn_q_norm.weight".len() + 4;
    let mut bad = bytes.clone();
    bad[at..at + 8].copy_from_slice(&64u64.to_le_bytes());
    let files = dlp_engine::loader::ModelFiles::load(&write("qnorm.gguf", &bad)).unwrap();
    let backend = dlp_engine::cpu::CpuBackend::new();
    let e = dlp_engine::model::Model::new(backend, files.config, files.weights, 64)
        .err()
        .expect("a q_norm of 64 values for heads of 128")
        .to_string();
    assert!(
        e.contains("tensor `blk.0.attn_q_norm.weight` (model.layers.0.self_attn.q_norm.weight) has shape [64] (GGUF order, ne[0] first), expected [128]"),
        "{e}"
    );
}

#[test]
fn a_missing_embedding_is_named_as_the_file_names_it() {
    let path = write("noembd.gguf", &fixture("tiny-qwen3-gguf"));
    let mut files = dlp_engine::loader::ModelFiles::load(&path).unwrap();
    // A file without it; one with it under another name is refused as it is read (below).
    files.weights.remove("model.embed_tokens.weight").unwrap();
    let backend = dlp_engine::cpu::CpuBackend::new();
    let e = dlp_engine::model::Model::new(backend, files.config, files.weights, 64)
        .err()
        .expect("no embedding")
        .to_string();
    assert!(
        e.contains("missing tensor `token_embd.weight` (model.embed_tokens.weight), and no `output.weight` (lm_head.weight) either"),
        "{e}"
    );
    // A tensor the model does not know, which llama.cpp's loader refuses too.
    let bad = patched(
        &fixture("tiny-qwen3-gguf"),
        b"token_embd.weight",
        b"token_embX.weight",
    );
    let e = dlp_engine::loader::ModelFiles::load(&write("embX.gguf", &bad))
        .err()
        .expect("an unknown tensor")
        .to_string();
    assert!(
        e.contains("tensor `token_embX.weight` is not one this engine reads in a `qwen3` file, nor one llama.cpp's loader makes for it"),
        "{e}"
    );
}

/// A `phi3` file as llama.cpp reads it: its stacked `attn_qkv` and `ffn_up` (gate, then up)
/// split into the model's modules at load, kept in their blocks; its sliding window not
/// applied (llama.cpp turns it off); misshapen LongRoPE factors and a missing stacked tensor
/// named.
#[test]
fn phi3_files_split_their_stacked_matrices() {
    use dlp_engine::loader::ModelFiles;
    use dlp_engine::tensor::PackedKind;
    let bytes = fixture("tiny-phi3-gguf");
    let path = write("phi3.gguf", &bytes);
    let c = GgufFile::open(&path).unwrap().config().unwrap();
    assert_eq!(c.arch, Arch::Phi3);
    assert_eq!(c.attention_window, [None]);
    assert!(!c.tie_word_embeddings && !c.qkv_bias);
    let mut files = ModelFiles::load_with(&path, true).unwrap();
    let w = &mut files.weights;
    for (name, shape, kind) in [
        ("self_attn.q_proj", [256usize, 256], PackedKind::Q4_K),
        ("self_attn.k_proj", [128, 256], PackedKind::Q4_K),
        ("self_attn.v_proj", [128, 256], PackedKind::Q4_K),
        ("mlp.gate_proj", [256, 256], PackedKind::Q5_K),
        ("mlp.up_proj", [256, 256], PackedKind::Q5_K),
    ] {
        let t = w
            .take(&format!("model.layers.0.{name}.weight"), shape.as_slice())
            .unwrap();
        assert_eq!(t.packed.map(|p| p.kind), Some(kind), "{name}");
    }
    assert!(!w.contains("model.layers.0.self_attn.qkv_proj.weight"));
    assert!(!w.contains("model.layers.0.mlp.gate_up_proj.weight"));

    // A LongRoPE file as llama.cpp's converter writes it: the factor tensors and an
    // `attn_factor` (here the window's key renamed, its value 8), which alone is refused as
    // another scaling's.
    let attn = patched(
        &bytes,
        b"phi3.attention.sliding_window",
        b"phi3.rope.scaling.attn_factor",
    );
    let e = config_error("phi3-attn.gguf", &attn);
    assert!(e.contains("`phi3.rope.scaling.attn_factor` 8"), "{e}");
    let long = patched(
        &attn,
        b"blk.0.attn_output.weight",
        b"rope_factors_long.weight",
    );
    let e = config_error("phi3-longrope.gguf", &long);
    assert!(e.contains("tensor `rope_factors_long.weight` has shape [256, 256]: expected [32] (one factor per RoPE frequency)"), "{e}");

    let mut no_qkv = GgufFile::open(&path).unwrap().load_weights().unwrap();
    no_qkv
        .remove("model.layers.0.self_attn.qkv_proj.weight")
        .unwrap();
    let e = dlp_engine::loader::fused::split_stacked(&mut no_qkv, &c)
        .expect_err("no q/k/v")
        .to_string();
    assert!(
        e.contains("missing tensor `blk.0.attn_qkv.weight` (model.layers.0.self_attn.qkv_proj.weight): expected shape [256, 512] (GGUF order, ne[0] first), the rows of q_proj, k_proj, v_proj stacked"),
        "{e}"
    );
}

/// LongRoPE as llama.cpp's converter writes it for Phi-3: both factor tensors, the cos/sin
/// factor and the original context from `phi3.rope.scaling.*`; one set alone is named. Its
/// logits against transformers: the golden runs' `tiny_phi3_longrope_gguf`.
#[test]
fn phi3_longrope_is_read_from_its_tensors_and_keys() {
    use dlp_engine::config::RopeScaling;
    let bytes = fixture("tiny-phi3-longrope-gguf");
    let c = GgufFile::open(&write("phi3-lr.gguf", &bytes))
        .unwrap()
        .config()
        .unwrap();
    let Some(RopeScaling::LongRope(l)) = c.rope_scaling else {
        panic!("{:?}", c.rope_scaling)
    };
    assert_eq!(l.short_factor.len(), 8);
    assert_eq!((l.short_factor[1] as f32, l.long_factor[1]), (1.1, 2.5));
    assert_eq!(l.original_max_position_embeddings, 8.0);
    // sqrt(1 + ln(256 / 8) / ln(8)), as the converter computes it, stored as f32.
    assert!((l.attention_factor - (1.0 + 32f64.ln() / 8f64.ln()).sqrt()).abs() < 1e-6);
    let one = patched(
        &bytes,
        b"rope_factors_short.weight",
        b"rope_factors_shorX.weight",
    );
    let e = config_error("phi3-lr-one.gguf", &one);
    assert!(
        e.contains(
            "tensor `rope_factors_short.weight` is missing: LongRoPE needs both factor sets"
        ),
        "{e}"
    );
}

/// A `phi3` file rotating part of each head (`rope.dimension_count` 12 of 16, as Phi-4-mini's
/// 96 of 128), its LongRoPE factors one per rotated frequency; another architecture's partial
/// rotation is refused. Logits: the golden runs' `tiny_phi3_partial_rotary_gguf`.
#[test]
fn phi3_partial_rotary_is_read() {
    let bytes = fixture("tiny-phi3-partial-gguf");
    let c = GgufFile::open(&write("phi3-part.gguf", &bytes))
        .unwrap()
        .config()
        .unwrap();
    assert_eq!((c.head_dim, c.rotary_dim), (16, 12));
    let mut q3 = fixture("tiny-qwen3-gguf");
    // The u32 after the key's name and value type: 128, now 64.
    let at = find(&q3, b"qwen3.rope.dimension_count") + "qwen3.rope.dimension_count".len() + 4;
    q3[at..at + 4].copy_from_slice(&64u32.to_le_bytes());
    let e = config_error("q3-part.gguf", &q3);
    assert!(
        e.contains("partial rotary embedding (qwen3.rope.dimension_count 64 != head_dim 128; an even part is read for phi3, phi2, stablelm, nemotron, chatglm and glm4 files only)"),
        "{e}"
    );
}

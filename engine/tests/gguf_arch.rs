//! GGUF files of llama.cpp's `qwen2` and `qwen3` architectures: hyper-parameters read under
//! their own prefix, and what does not fit the architecture refused by name. Their logits
//! against transformers: the golden runs' `tiny_qwen2_gguf` and `tiny_qwen3_gguf`.

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
    let phi = patched(&fixture("tiny-qwen3-gguf"), b"qwen3", b"phi_3");
    let e = config_error("phi3.gguf", &phi);
    assert!(
        e.contains("`general.architecture` is \"phi_3\"") && e.contains("\"qwen3\""),
        "{e}"
    );
}

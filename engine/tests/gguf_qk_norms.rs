//! Query/key norms in llama.cpp's files: StableLM 2 12B's (`stablelm`, optional) and Command
//! R+'s (`command-r`, exactly with 64 layers or more) with a weight per head, read as its
//! loaders make them, and HunYuan dense's (`hunyuan-dense`) after RoPE; OLMo's (`olmo`) query,
//! key and value clamp. Their logits against
//! transformers: the golden runs' `tiny_stablelm_gguf`; a converted `hunyuan-dense` file was
//! checked once against llama.cpp and transformers (the note of that change).

#[allow(dead_code)]
#[path = "gguf/family_files.rs"]
mod family_files;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::config::Arch;
use family_files::{gguf, gguf_with, layernorm_keys as keys, read, refused, zero_tensor};
use writer::{Tensor, M};

/// Query/key norms with a weight per head (`attn_q_norm` `[head_dim, heads]`), as llama.cpp's
/// loaders make them: optional in `stablelm` (StableLM 2 12B's), in `command-r` exactly where
/// there are 64 layers or more (its test for Command R+). The logits: `tiny_stablelm_gguf`.
#[test]
fn per_head_qk_norms_read_as_llama_cpp() {
    // Layer `l`'s query (`m` "q", 4 heads) or key ("k", 1 head) norm.
    let norm = |l: usize, m: &str| {
        let heads = if m == "q" { 4 } else { 1 };
        Tensor {
            name: format!("blk.{l}.attn_{m}_norm.weight"),
            dims: vec![16, heads],
            ty: 0,
            data: vec![0; 4 * 16 * heads as usize],
        }
    };
    let stablelm =
        |layers, more| gguf_with("stablelm", layers, 64, 4, 16, keys("stablelm", 4), more);
    let both = vec![norm(0, "q"), norm(0, "k")];
    let c = read("sq.gguf", &stablelm(1, both.clone())).unwrap();
    assert!(c.qk_norm && c.qk_norm_per_head);
    assert_eq!(c.qk_norm_weight_rows(), (4, 1));
    let c = read("s.gguf", &stablelm(1, vec![])).unwrap();
    assert!(!c.qk_norm && !c.qk_norm_per_head);
    // Some norms only (q's without k's; layer 0's without layer 1's): refused by name, where
    // llama.cpp would run the others unnormed.
    let some = "a `stablelm` file with the query/key norms of some layers only";
    refused(
        "sq-only.gguf",
        &stablelm(1, vec![norm(0, "q")]),
        &format!("{some} (`blk.0.attn_k_norm.weight` is missing)"),
    );
    refused(
        "s-layer0.gguf",
        &stablelm(2, both),
        &format!("{some} (`blk.1.attn_q_norm.weight` is missing)"),
    );
    let mut k = keys("command-r", 16);
    k.push(("command-r.logit_scale", M::F32(0.5)));
    let command_r = |layers, more| gguf_with("command-r", layers, 64, 4, 16, k.clone(), more);
    let c = read("r64.gguf", &command_r(64, vec![norm(0, "q")])).unwrap();
    assert!(c.qk_norm && c.qk_norm_per_head && c.rope_interleaved);
    let c = read("r2.gguf", &command_r(2, vec![])).unwrap();
    assert!(!c.qk_norm);
    refused(
        "r2q.gguf",
        &command_r(2, vec![norm(0, "q")]),
        "tensor `blk.0.attn_q_norm.weight` is present: llama.cpp's `command-r` has them exactly where there are 64 layers or more (Command R+), and this file has 2",
    );
    refused(
        "r64b.gguf",
        &command_r(64, vec![]),
        "tensor `blk.0.attn_q_norm.weight` is missing",
    );
}

/// llama.cpp's `hunyuan-dense`: HunYuan dense's query/key norms, one weight for every head,
/// after RoPE; HF's q/k rows (NEOX RoPE, no permutation); the NTK-alpha base as the file's own
/// (its converter writes the stretched base and no scaling). A file without the norms is
/// refused, where llama.cpp's loader requires them.
#[test]
fn hunyuan_dense_norms_after_rope() {
    let base = 1e4 * 1000f64.powf(128.0 / 126.0);
    let keys = vec![
        ("hunyuan-dense.rope.freq_base", M::F32(base as f32)),
        ("hunyuan-dense.rope.scaling.type", M::Str("none")),
        ("hunyuan-dense.rope.scaling.factor", M::F32(1.0)),
    ];
    let c = read("h.gguf", &gguf("hunyuan-dense", 2, 64, 4, 16, keys)).unwrap();
    assert_eq!(c.arch, Arch::Hunyuan);
    assert!(c.qk_norm && !c.qk_norm_per_head && c.arch.qk_norm_after_rope());
    assert!(!c.rope_interleaved && c.rope_scaling.is_none());
    assert_eq!(c.rope_theta, f64::from(base as f32));
    let mut bytes = gguf("hunyuan-dense", 2, 64, 4, 16, vec![]);
    // The same file without its layer-0 query norm: the tensor's name made another's.
    let at = (bytes.windows(24))
        .position(|w| w == b"blk.0.attn_q_norm.weight")
        .unwrap();
    bytes[at..at + 24].copy_from_slice(b"blk.0.attn_x_norm.weight");
    refused(
        "hn.gguf",
        &bytes,
        "tensor `blk.0.attn_q_norm.weight` is missing",
    );
    // A file's `rope.scaling.alpha` > 0 stretches its base as llama.cpp's loader does (its
    // converter writes none); 0 or less leaves it; another architecture's is not read.
    let alpha = |a: f32, arch: &'static str| {
        let name: &'static str = Box::leak(format!("{arch}.rope.scaling.alpha").into_boxed_str());
        read(
            "ha.gguf",
            &gguf(arch, 2, 64, 4, 16, vec![(name, M::F32(a))]),
        )
        .map(|c| c.rope_theta)
    };
    let stretched = 1e6 * 1000f64.powf(16.0 / 14.0);
    assert!((alpha(1000.0, "hunyuan-dense").unwrap() / stretched - 1.0).abs() < 1e-12);
    assert_eq!(alpha(0.0, "hunyuan-dense").unwrap(), 1e6);
    assert_eq!(alpha(-5.0, "hunyuan-dense").unwrap(), 1e6);
    assert_eq!(alpha(1000.0, "llama").unwrap(), 1e6);
    // Biases llama.cpp's graph does not add, and XD-RoPE sections, refused.
    let bias = zero_tensor("blk.1.ffn_down.bias", vec![64]);
    refused(
        "hb.gguf",
        &gguf_with("hunyuan-dense", 2, 64, 4, 16, vec![], vec![bias]),
        "tensor `blk.1.ffn_down.bias`: llama.cpp's `hunyuan-dense` graph adds no o_proj or feed-forward bias",
    );
    let sections = M::I32s(vec![8, 0, 0, 0]);
    refused(
        "hs.gguf",
        &gguf("hunyuan-dense", 2, 64, 4, 16, vec![("hunyuan-dense.rope.dimension_sections", sections)]),
        "`hunyuan-dense.rope.dimension_sections` is [8, 0, 0, 0]: M-RoPE (HunYuan's XD-RoPE sections) is not read",
    );
    let e = alpha(f32::NAN, "hunyuan-dense").unwrap_err().to_string();
    assert!(
        e.contains("`hunyuan-dense.rope.scaling.alpha` is NaN; expected a finite number"),
        "{e}"
    );
}

/// llama.cpp's `olmo` (OLMo's first release): its LayerNorms' epsilon from
/// `attention.layer_norm_epsilon` (required, as llama.cpp requires it), and `clip_qkv` as
/// `attention.clamp_kqv`, a clamp where it is > 0 and finite, none where it is 0 or less,
/// +infinity (which clamps nothing) or absent; a NaN refused. The logits: `tiny_olmo_gguf`.
#[test]
fn olmo_clamp_and_layer_norm_eps() {
    let clamp = |c: Option<M>| {
        let mut k = keys("olmo", 16);
        k.extend(c.map(|c| ("olmo.attention.clamp_kqv", c)));
        read("o.gguf", &gguf("olmo", 2, 64, 4, 16, k))
    };
    let c = clamp(Some(M::F32(8.0))).unwrap();
    assert_eq!(c.arch, Arch::Olmo);
    assert!(c.layer_norms() && c.arch.unweighted_norms() && !c.rope_interleaved);
    assert_eq!((c.clip_qkv, c.rms_norm_eps), (Some(8.0), 1e-5));
    for none in [
        None,
        Some(M::F32(0.0)),
        Some(M::F32(-1.0)),
        Some(M::F32(f32::INFINITY)),
    ] {
        assert_eq!(clamp(none).unwrap().clip_qkv, None);
    }
    let e = clamp(Some(M::F32(f32::NAN))).unwrap_err().to_string();
    assert!(
        e.contains(
            "`olmo.attention.clamp_kqv` is NaN; expected 0 or less (no clamp) or a number > 0"
        ),
        "{e}"
    );
    // The RMS key other families carry is not the one read.
    refused(
        "oe.gguf",
        &gguf("olmo", 2, 64, 4, 16, vec![]),
        "missing metadata `olmo.attention.layer_norm_epsilon`",
    );
    // Another architecture's clamp key is not read.
    let k = vec![("llama.attention.clamp_kqv", M::F32(8.0))];
    assert_eq!(
        read("l.gguf", &gguf("llama", 2, 64, 4, 16, k))
            .unwrap()
            .clip_qkv,
        None
    );
}

//! llama.cpp's `stablelm`, `starcoder2`, `phi2` and `falcon` GGUFs (LayerNorms with biases) as its loader
//! reads their metadata: the eps from `attention.layer_norm_epsilon` (required), RoPE on
//! `rope.dimension_count` dimensions (a part for `stablelm` and `phi2`), `phi2`'s parallel
//! blocks, `stablelm`'s where a layer has no `ffn_norm`, and `starcoder2` with no window (its
//! loader reads none), and `falcon` (always parallel, a norm each where its layers hold
//! `attn_norm_2`). Their logits against transformers: the golden runs' `tiny_phi_gguf`,
//! `tiny_stablelm_gguf`, `tiny_starcoder2_gguf`, `tiny_falcon_gguf`.

#[allow(dead_code)]
#[path = "gguf/family_files.rs"]
mod family_files;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::config::{Activation, Arch};
use family_files::{gguf, gguf_with, read, refused};
use writer::{Tensor, M};

/// `arch`'s required eps key, with `rot` rotated dimensions.
fn keys(arch: &'static str, rot: u32) -> Vec<(&'static str, M)> {
    let key = |k: &str| -> &'static str { Box::leak(format!("{arch}.{k}").into_boxed_str()) };
    vec![
        (key("attention.layer_norm_epsilon"), M::F32(1e-5)),
        (key("rope.dimension_count"), M::U32(rot)),
    ]
}

/// A zero f32 `[64]` tensor named `name`.
fn tensor(name: &str) -> Tensor {
    Tensor {
        name: name.into(),
        dims: vec![64],
        ty: 0,
        data: vec![0; 4 * 64],
    }
}

#[test]
fn layernorm_families_read_as_llama_cpp() {
    let c = read("p.gguf", &gguf("phi2", 2, 64, 4, 16, keys("phi2", 8))).unwrap();
    assert_eq!((c.arch, c.rotary_dim, c.rms_norm_eps), (Arch::Phi, 8, 1e-5));
    assert!(c.layer_norms() && c.parallel_block() && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::GeluTanh);
    // `stablelm`: sequential where its layer has a feed-forward norm, parallel where none has.
    let ffn_norm = tensor("blk.0.ffn_norm.weight");
    let bytes = gguf_with(
        "stablelm",
        1,
        64,
        4,
        16,
        keys("stablelm", 4),
        vec![ffn_norm],
    );
    let c = read("s.gguf", &bytes).unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::StableLm, 4));
    assert!(c.layer_norms() && !c.parallel_block() && c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::Silu);
    let c = read(
        "sp.gguf",
        &gguf("stablelm", 2, 64, 4, 16, keys("stablelm", 4)),
    )
    .unwrap();
    assert!(c.parallel_block());
    // `starcoder2`: whole heads, no window whatever the file says, tied without `output`.
    let mut k = keys("starcoder2", 16);
    k.push(("starcoder2.attention.sliding_window", M::U32(6)));
    let c = read("c.gguf", &gguf("starcoder2", 2, 64, 4, 16, k)).unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Starcoder2, 16));
    assert!(c.tie_word_embeddings && !c.parallel_block() && !c.arch.gated_mlp());
    assert_eq!(c.attention_window, [None, None]);
    // The LayerNorm eps is required (an RMS eps key does not stand in for it); an odd part.
    let mut k = keys("phi2", 8);
    k.remove(0);
    refused(
        "e.gguf",
        &gguf("phi2", 2, 64, 4, 16, k),
        "missing metadata `phi2.attention.layer_norm_epsilon`",
    );
    refused(
        "o.gguf",
        &gguf("stablelm", 2, 64, 4, 16, keys("stablelm", 5)),
        "`stablelm.rope.dimension_count` is 5; expected an even number",
    );
    // `stablelm`: a feed-forward norm in some layers only (llama.cpp would mix parallel and
    // sequential blocks), an o_proj bias (StableLM's has none; llama.cpp reads none).
    let bytes = gguf_with(
        "stablelm",
        2,
        64,
        4,
        16,
        keys("stablelm", 4),
        vec![tensor("blk.1.ffn_norm.weight")],
    );
    refused(
        "m.gguf",
        &bytes,
        "layers with and without `ffn_norm` (blk.1.ffn_norm.weight present, blk.0.ffn_norm.weight missing)",
    );
    let bytes = gguf_with(
        "stablelm",
        2,
        64,
        4,
        16,
        keys("stablelm", 4),
        vec![
            tensor("blk.0.attn_output.bias"),
            tensor("blk.1.attn_output.bias"),
        ],
    );
    refused(
        "b.gguf",
        &bytes,
        "tensor `blk.0.attn_output.bias`: a `stablelm` file's o_proj",
    );
    refused(
        "w.gguf",
        &gguf("phi2", 2, 64, 4, 16, keys("phi2", 20)),
        "`phi2.rope.dimension_count` is 20, more than head_dim 16",
    );
}

/// llama.cpp's `falcon`: parallel blocks, a second norm where every layer has `attn_norm_2`
/// (Falcon-40B's), the checkpoint's exact GELU, no linear biases; a second norm in some layers
/// only and a linear's bias refused.
#[test]
fn falcon_reads_as_llama_cpp() {
    let c = read("f.gguf", &gguf("falcon", 2, 64, 4, 16, keys("falcon", 16))).unwrap();
    assert_eq!(
        (c.arch, c.num_kv_heads, c.rotary_dim),
        (Arch::Falcon, 1, 16)
    );
    assert!(c.layer_norms() && c.parallel_block() && !c.parallel_norms);
    assert!(!c.arch.gated_mlp() && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(c.activation, Activation::GeluErf);
    let norms = |layers: &[usize]| {
        // Each layer's first norm, and the second where `layers` says.
        let more = (0..2)
            .map(|i| tensor(&format!("blk.{i}.attn_norm.weight")))
            .chain(
                layers
                    .iter()
                    .map(|i| tensor(&format!("blk.{i}.attn_norm_2.weight"))),
            )
            .collect();
        gguf_with("falcon", 2, 64, 4, 16, keys("falcon", 16), more)
    };
    let c = read("f40.gguf", &norms(&[0, 1])).unwrap();
    assert!(c.parallel_block() && c.parallel_norms);
    let names = c.norm_names();
    assert_eq!((names.attn_in, names.ffn_in), ("ln_attn", "ln_mlp"));
    refused(
        "m.gguf",
        &norms(&[1]),
        "layers with and without a second norm (blk.1.attn_norm_2.weight present, blk.0.attn_norm_2.weight missing)",
    );
    let bytes = gguf_with(
        "falcon",
        2,
        64,
        4,
        16,
        keys("falcon", 16),
        vec![tensor("blk.1.attn_qkv.bias")],
    );
    refused(
        "b.gguf",
        &bytes,
        "tensor `blk.1.attn_qkv.bias`: a `falcon` file's linears have no biases",
    );
    // llama.cpp's `falcon` rotates whole heads (it asserts n_rot = head_dim).
    refused(
        "r.gguf",
        &gguf("falcon", 2, 64, 4, 16, keys("falcon", 8)),
        "partial rotary embedding (falcon.rope.dimension_count 8 != head_dim 16",
    );
}

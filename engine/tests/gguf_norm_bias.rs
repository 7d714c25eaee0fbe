//! llama.cpp's `stablelm`, `starcoder2` and `phi2` GGUFs (LayerNorms with biases) as its loader
//! reads their metadata: the eps from `attention.layer_norm_epsilon` (required), RoPE on
//! `rope.dimension_count` dimensions (a part for `stablelm` and `phi2`), `phi2`'s parallel
//! blocks, `stablelm`'s where a layer has no `ffn_norm`, and `starcoder2` with no window (its
//! loader reads none). Their logits against transformers: the golden runs' `tiny_phi_gguf`,
//! `tiny_stablelm_gguf`, `tiny_starcoder2_gguf`.

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

#[test]
fn layernorm_families_read_as_llama_cpp() {
    let c = read("p.gguf", &gguf("phi2", 2, 64, 4, 16, keys("phi2", 8))).unwrap();
    assert_eq!((c.arch, c.rotary_dim, c.rms_norm_eps), (Arch::Phi, 8, 1e-5));
    assert!(c.layer_norms() && c.parallel_block() && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::GeluTanh);
    // `stablelm`: sequential where its layer has a feed-forward norm, parallel where none has.
    // A zero f32 `[64]` tensor of that name.
    let tensor = |name: &str| Tensor {
        name: name.into(),
        dims: vec![64],
        ty: 0,
        data: vec![0; 4 * 64],
    };
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

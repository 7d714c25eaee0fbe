//! `gemma3` GGUF hyper-parameters as llama.cpp reads them: which layers slide (the window key
//! present, absent or 0; `sliding_window_pattern` as a period or per-layer flags), the sliding
//! layers' RoPE base (`rope.freq_base_swa`, default 10000), the 27B's attention scale, and
//! soft-capped logits refused (llama.cpp's `gemma3` applies none); `gemma2`'s: the window in
//! every other layer (default 4096), the soft caps (defaults 50 and 30), its 27B's scale. Their
//! logits against transformers: the golden runs' `tiny_gemma3_gguf`, `tiny_gemma2_gguf` and
//! `tiny_gemma_gguf`. `granite`'s multipliers: required, 0 meaning none; RoPE switched off
//! refused; logits: `tiny_granite_gguf`. `smollm3`'s NoPE layers: every fourth, whatever the
//! file holds (llama.cpp has no key for them); logits: `tiny_smollm3_gguf`. `olmo2`: its
//! norms, and OLMo 3's windows where the file has one; logits: `tiny_olmo2_gguf`,
//! `tiny_olmo3_gguf`. `exaone4`: windows and NoPE layers in 64-layer files only; logits:
//! `tiny_exaone4_gguf`. `seed_oss`: an attention scale of its own refused; logits:
//! `tiny_seed_oss_gguf`. `glm4`: RoPE on `rope.dimension_count` dimensions in adjacent pairs,
//! GLM-4V's M-RoPE sections refused; logits: `tiny_glm4_gguf`; `chatglm`: GLM, its q/k/v biases
//! stacked or not; logits: `tiny_glm_chatglm_gguf`. `ernie4_5`: whole heads in
//! adjacent pairs; logits: `tiny_ernie4_5_gguf`.

#[allow(dead_code)]
#[path = "gguf/family_files.rs"]
mod family_files;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::config::ModelConfig;
use family_files::{gguf, gguf_with, read, refused, zero_tensor};
use writer::{Tensor, M};

/// Layers attending to everything (no window).
fn full_layers(c: &ModelConfig) -> Vec<usize> {
    (0..c.num_layers)
        .filter(|&i| c.attention_window[i].is_none())
        .collect()
}

#[test]
fn gemma3_sliding_layers_and_their_rope_base() {
    let window = || ("gemma3.attention.sliding_window", M::U32(512));
    let c = read("w.gguf", &gguf("gemma3", 12, 64, 4, 16, vec![window()])).unwrap();
    assert_eq!(full_layers(&c), [5, 11]);
    assert!(c.attention_window.iter().flatten().all(|&w| w == 512));
    let g = c.gemma.as_ref().unwrap();
    assert_eq!((c.local_rope_theta, c.rope_theta), (Some(10000.0), 1e6));
    assert!(g.sandwich_norms && c.qk_norm && c.tie_word_embeddings);
    // No window, or 0: every layer full, one RoPE table.
    for (name, extra) in [
        ("none.gguf", vec![]),
        (
            "zero.gguf",
            vec![("gemma3.attention.sliding_window", M::U32(0))],
        ),
    ] {
        let c = read(name, &gguf("gemma3", 12, 64, 4, 16, extra)).unwrap();
        assert_eq!(full_layers(&c).len(), 12, "{name}");
        assert_eq!(c.local_rope_theta, None, "{name}");
    }
    // A period of 4, the sliding layers' own base.
    let extra = vec![
        window(),
        ("gemma3.attention.sliding_window_pattern", M::U32(4)),
        ("gemma3.rope.freq_base_swa", M::F32(5000.0)),
    ];
    let c = read("p4.gguf", &gguf("gemma3", 12, 64, 4, 16, extra)).unwrap();
    assert_eq!(full_layers(&c), [3, 7, 11]);
    assert_eq!(c.local_rope_theta, Some(5000.0));
    // One flag per layer; a list of another length is refused, naming the key.
    let flags = |n: usize| M::I32s((0..n).map(|i| (i % 3 != 0) as i32).collect());
    let extra = vec![
        window(),
        ("gemma3.attention.sliding_window_pattern", flags(6)),
    ];
    let c = read("flags.gguf", &gguf("gemma3", 6, 64, 4, 16, extra)).unwrap();
    assert_eq!(full_layers(&c), [0, 3]);
    // A period of 0, or one longer than the model (even u64::MAX): every layer slides.
    for p in [0, 7, u64::MAX] {
        let extra = vec![
            window(),
            ("gemma3.attention.sliding_window_pattern", M::U64(p)),
        ];
        let c = read("p.gguf", &gguf("gemma3", 6, 64, 4, 16, extra)).unwrap();
        assert!(full_layers(&c).is_empty(), "period {p}");
    }
    let extra = vec![
        window(),
        ("gemma3.attention.sliding_window_pattern", flags(5)),
    ];
    refused(
        "flags5.gguf",
        &gguf("gemma3", 6, 64, 4, 16, extra),
        "sliding_window_pattern`: expected a period or 6 per-layer flags",
    );
}

#[test]
fn gemma3_attention_scale_and_refusals() {
    // The 27B (62 layers): (embedding_length / head_count)^-0.5, as llama.cpp; else head_dim's.
    let c = read("27b.gguf", &gguf("gemma3", 62, 5376, 32, 128, vec![])).unwrap();
    assert_eq!(c.gemma.unwrap().query_pre_attn_scalar, 168.0);
    let c = read("26.gguf", &gguf("gemma3", 26, 5376, 32, 128, vec![])).unwrap();
    assert_eq!(c.gemma.unwrap().query_pre_attn_scalar, 128.0);
    refused(
        "27b-bad.gguf",
        &gguf("gemma3", 62, 16, 32, 16, vec![]),
        "gemma3.embedding_length 16 is below",
    );
    let cap = vec![("gemma3.final_logit_softcapping", M::F32(30.0))];
    refused(
        "cap.gguf",
        &gguf("gemma3", 6, 64, 4, 16, cap),
        "applies no soft cap to the logits",
    );
    let base = vec![
        ("gemma3.rope.freq_base_swa", M::F32(-1.0)),
        ("gemma3.attention.sliding_window", M::U32(8)),
    ];
    refused(
        "base.gguf",
        &gguf("gemma3", 6, 64, 4, 16, base),
        "`gemma3.rope.freq_base_swa` is -1",
    );
}

/// llama.cpp's `gemma2`: the window (4096 where the file names none) in layers 0, 2, ...; the
/// caps from the file, else 50 and 30; the 27B (46 layers) scaled by
/// `(embedding_length / head_count)^-0.5`; no local RoPE base; a cap or window of 0 refused.
#[test]
fn gemma2_windows_caps_and_scale() {
    let c = read("g2.gguf", &gguf("gemma2", 6, 64, 4, 16, vec![])).unwrap();
    assert_eq!(full_layers(&c), [1, 3, 5]);
    assert!(c.attention_window.iter().flatten().all(|&w| w == 4096));
    assert_eq!(c.softcaps(), (Some(50.0), Some(30.0)));
    let g = c.gemma.as_ref().unwrap();
    assert!(g.sandwich_norms && !c.qk_norm && c.local_rope_theta.is_none());
    assert_eq!(g.query_pre_attn_scalar, 16.0);
    let extra = vec![
        ("gemma2.attention.sliding_window", M::U32(8)),
        ("gemma2.attn_logit_softcapping", M::F32(4.0)),
        ("gemma2.final_logit_softcapping", M::F32(6.0)),
    ];
    let c = read("g2-keys.gguf", &gguf("gemma2", 4, 64, 4, 16, extra)).unwrap();
    assert_eq!(c.attention_window, [Some(8), None, Some(8), None]);
    assert_eq!(c.softcaps(), (Some(4.0), Some(6.0)));
    let c = read("g2-27b.gguf", &gguf("gemma2", 46, 4608, 32, 128, vec![])).unwrap();
    assert_eq!(c.gemma.unwrap().query_pre_attn_scalar, 144.0);
    for (name, extra, want) in [
        (
            "g2-cap0.gguf",
            vec![("gemma2.attn_logit_softcapping", M::F32(0.0))],
            "`gemma2.attn_logit_softcapping` is 0; expected a soft cap",
        ),
        (
            "g2-capnan.gguf",
            vec![("gemma2.final_logit_softcapping", M::F32(f32::NAN))],
            "`gemma2.final_logit_softcapping` is NaN",
        ),
        (
            "g2-w0.gguf",
            vec![("gemma2.attention.sliding_window", M::U32(0))],
            "`gemma2.attention.sliding_window` is 0",
        ),
    ] {
        let e = read(name, &gguf("gemma2", 4, 64, 4, 16, extra))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}

/// llama.cpp's `granite`: the four multipliers read (0: not applied; the attention's 0:
/// head_dim^-0.5), each required, a negative one refused, and a file that turns RoPE off
/// (`granite.rope.scaling.finetuned` false) refused.
#[test]
fn granite_multipliers() {
    let all = |e: f32, a: f32, r: f32, l: f32| {
        vec![
            ("granite.embedding_scale", M::F32(e)),
            ("granite.attention.scale", M::F32(a)),
            ("granite.residual_scale", M::F32(r)),
            ("granite.logit_scale", M::F32(l)),
        ]
    };
    let c = read(
        "gr.gguf",
        &gguf("granite", 2, 64, 4, 16, all(12.0, 0.125, 0.25, 8.0)),
    )
    .unwrap();
    assert_eq!((c.embed_scale(), c.attention_scale()), (Some(12.0), 0.125));
    assert_eq!(
        (c.residual_scale(), c.logit_divisor()),
        (Some(0.25), Some(8.0))
    );
    assert!(c.gemma.is_none() && c.attention_window.iter().all(Option::is_none));
    let c = read(
        "gr0.gguf",
        &gguf("granite", 2, 64, 4, 16, all(0.0, 0.0, 0.0, 0.0)),
    )
    .unwrap();
    assert_eq!((c.embed_scale(), c.attention_scale()), (None, 0.25));
    assert_eq!((c.residual_scale(), c.logit_divisor()), (None, None));
    let mut missing = all(12.0, 0.125, 0.25, 8.0);
    missing.remove(2);
    refused(
        "gr-miss.gguf",
        &gguf("granite", 2, 64, 4, 16, missing),
        "missing metadata `granite.residual_scale`",
    );
    let negative = gguf("granite", 2, 64, 4, 16, all(12.0, -1.0, 0.25, 8.0));
    refused("gr-neg.gguf", &negative, "`granite.attention.scale` is -1");
    for (name, off) in [
        ("gr-nope.gguf", M::Bool(false)),
        ("gr-nope0.gguf", M::U32(0)),
    ] {
        let mut nope = all(12.0, 0.125, 0.25, 8.0);
        nope.push(("granite.rope.scaling.finetuned", off));
        let nope = gguf("granite", 2, 64, 4, 16, nope);
        refused(name, &nope, "granite.rope.scaling.finetuned");
    }
}

/// llama.cpp's `smollm3`: layers 3, 7, ... are NoPE (its fixed `n_no_rope_layer_step` of 4; a
/// key naming another interval is not read, as llama.cpp reads none), no window; the `llama`
/// file of the same numbers rotates everywhere.
#[test]
fn smollm3_nope_every_fourth_layer() {
    let interval = || vec![("smollm3.no_rope_layer_interval", M::U32(2))];
    let c = read("s.gguf", &gguf("smollm3", 9, 64, 4, 16, interval())).unwrap();
    let nope: Vec<usize> = (0..9).filter(|&i| !c.rope_layers[i]).collect();
    assert_eq!(nope, [3, 7]);
    assert_eq!(full_layers(&c).len(), 9);
    let c = read("l.gguf", &gguf("llama", 9, 64, 4, 16, interval())).unwrap();
    assert!(!c.rope_layers.contains(&false));
    // A corrupt block count is refused, not allocated per layer (2^40 flags had aborted).
    for arch in ["smollm3", "llama"] {
        let key = format!("{arch}.block_count");
        let huge = vec![(key.as_str(), M::U64(1 << 40))];
        refused(
            "huge.gguf",
            &gguf(arch, 4, 64, 4, 16, huge),
            "num_hidden_layers = 1099511627776 exceeds",
        );
    }
}

/// llama.cpp's `olmo2`: no input norms, norms after each sub-block, the query/key norms over
/// whole projections; with `olmo2.attention.sliding_window` > 0 (llama.cpp's OLMo 3 files)
/// that window in three layers of four, rotating at the file's base with no scaling; a
/// window of 0 is OLMo 2's full attention.
#[test]
fn olmo2_norms_and_olmo3_windows() {
    use dlp_engine::config::Arch;
    let c = read("o.gguf", &gguf("olmo2", 2, 64, 4, 16, vec![])).unwrap();
    assert!(c.qk_norm && !c.pre_norms() && c.post_norms());
    assert_eq!(c.qk_norm_widths(), (64, 16));
    assert_eq!((c.arch, c.local_rope_theta), (Arch::Olmo2, None));
    let no_window = vec![("olmo2.attention.sliding_window", M::U32(0))];
    let c = read("o0.gguf", &gguf("olmo2", 2, 64, 4, 16, no_window)).unwrap();
    assert_eq!((c.arch, full_layers(&c)), (Arch::Olmo2, vec![0, 1]));
    let window = || vec![("olmo2.attention.sliding_window", M::U32(4096))];
    let c = read("o3.gguf", &gguf("olmo2", 5, 64, 4, 16, window())).unwrap();
    assert_eq!(c.arch, Arch::Olmo3);
    assert!(c.qk_norm && !c.pre_norms() && c.post_norms());
    assert_eq!(full_layers(&c), vec![3]);
    assert_eq!(c.attention_window[0], Some(4096));
    assert_eq!((c.rope_theta, c.local_rope_theta), (1e6, Some(1e6)));
    // A base of the sliding layers' own is not read.
    let mut swa = window();
    swa.push(("olmo2.rope.freq_base_swa", M::F32(1e4)));
    refused(
        "o3s.gguf",
        &gguf("olmo2", 5, 64, 4, 16, swa),
        "`olmo2.rope.freq_base_swa` 10000 differs",
    );
    // The converter's per-layer flags, as three in four; another pattern is refused.
    let mut pattern = window();
    pattern.push((
        "olmo2.attention.sliding_window_pattern",
        M::I32s(vec![1, 1, 1, 0, 1]),
    ));
    assert!(read("o3p.gguf", &gguf("olmo2", 5, 64, 4, 16, pattern)).is_ok());
    for other in [M::U32(6), M::I32s(vec![1; 5])] {
        let mut pattern = window();
        pattern.push(("olmo2.attention.sliding_window_pattern", other));
        refused(
            "o3q.gguf",
            &gguf("olmo2", 5, 64, 4, 16, pattern),
            "not three sliding layers in four",
        );
    }
}

/// llama.cpp's `exaone4`: OLMo 2's norms with per-head query/key norms; a window only in a
/// 64-layer file (`exaone4.attention.sliding_window`, default 4096, in three layers of four,
/// the others NoPE); any other count attends to everything and rotates in every layer whatever
/// the key says.
#[test]
fn exaone4_windows_only_at_64_layers() {
    use dlp_engine::config::Arch;
    let window = || vec![("exaone4.attention.sliding_window", M::U32(8))];
    let c = read("e3.gguf", &gguf("exaone4", 3, 64, 4, 16, window())).unwrap();
    assert_eq!(c.arch, Arch::Exaone4);
    assert!(c.qk_norm && !c.pre_norms() && c.post_norms());
    assert_eq!(c.qk_norm_widths(), (16, 16));
    assert_eq!(
        (full_layers(&c), c.rope_layers),
        (vec![0, 1, 2], vec![true; 3])
    );
    let c = read("e64.gguf", &gguf("exaone4", 64, 64, 4, 16, vec![])).unwrap();
    assert_eq!(
        c.attention_window[..4],
        [Some(4096), Some(4096), Some(4096), None]
    );
    assert_eq!(c.rope_layers[..4], [true, true, true, false]);
    assert_eq!(full_layers(&c).len(), 16);
    let c = read("e64w.gguf", &gguf("exaone4", 64, 64, 4, 16, window())).unwrap();
    assert_eq!(c.attention_window[0], Some(8));
    let zero = vec![("exaone4.attention.sliding_window", M::U32(0))];
    refused(
        "e64z.gguf",
        &gguf("exaone4", 64, 64, 4, 16, zero),
        "`exaone4.attention.sliding_window` is 0",
    );
    // Next-token-prediction layers (EXAONE 4.5's, GLM-OCR's): llama.cpp loads and does not
    // run them, so the model has the layers before them (a 64 + 1 file has the 64-layer
    // windows); all of them is refused, and so is a count over layers without the prediction
    // layer's `nextn.eh_proj`, as llama.cpp's loader refuses both. Their tensors left unread:
    // `gguf_mtp.rs`.
    let eh_proj = |l: u32| zero_tensor(&format!("blk.{l}.nextn.eh_proj.weight"), vec![128, 64]);
    for arch in ["exaone4", "glm4"] {
        let key: &'static str = Box::leak(format!("{arch}.nextn_predict_layers").into_boxed_str());
        let layers = |all, n, more| {
            let k = vec![(key, M::U32(n))];
            read("mtp.gguf", &gguf_with(arch, all, 64, 4, 16, k, more))
        };
        assert_eq!(layers(3, 1, vec![eh_proj(2)]).unwrap().num_layers, 2);
        assert_eq!(layers(3, 0, vec![]).unwrap().num_layers, 3);
        let e = layers(3, 3, vec![]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("`{key}` is 3, which leaves none of the 3 layers")),
            "{e}"
        );
        let e = layers(3, 2, vec![eh_proj(2)]).unwrap_err().to_string();
        assert!(
            e.contains("but layer 1 of the 3 has no `blk.1.nextn.eh_proj.weight`"),
            "{e}"
        );
    }
    // Another architecture's loader refuses such layers' tensors: so does this.
    let llama = vec![("llama.nextn_predict_layers", M::U32(1))];
    refused(
        "lm.gguf",
        &gguf_with("llama", 3, 64, 4, 16, llama, vec![eh_proj(2)]),
        "`llama.nextn_predict_layers` is 1: next-token-prediction layers are read in `exaone4` and `glm4` files",
    );
    // A 64 + 1 file's windows: its converter's flags (the prediction layer's last), else three
    // layers in four.
    let mut flags = vec![1i32; 65];
    flags[1] = 0;
    let pattern = ("exaone4.attention.sliding_window_pattern", M::I32s(flags));
    let mtp = vec![("exaone4.nextn_predict_layers", M::U32(1)), pattern];
    let c = read(
        "e65f.gguf",
        &gguf_with("exaone4", 65, 64, 4, 16, mtp, vec![eh_proj(64)]),
    )
    .unwrap();
    let w = Some(4096);
    assert_eq!(c.attention_window[..4], [w, None, w, w]);
    assert_eq!(c.attention_window.len(), 64);
    let mtp = vec![("exaone4.nextn_predict_layers", M::U32(1))];
    let c = read(
        "e65.gguf",
        &gguf_with("exaone4", 65, 64, 4, 16, mtp, vec![eh_proj(64)]),
    )
    .unwrap();
    assert_eq!((c.num_layers, c.attention_window[0]), (64, Some(4096)));
}

/// llama.cpp's `seed_oss`: Llama's computation, its biases read from the tensors the file has;
/// an attention scale of its own (`seed_oss.attention.scale`, which its converter does not
/// write) refused.
#[test]
fn seed_oss_attention_scale_refused() {
    use dlp_engine::config::Arch;
    let c = read("s.gguf", &gguf("seed_oss", 2, 64, 4, 16, vec![])).unwrap();
    assert_eq!(c.arch, Arch::SeedOss);
    assert!(c.pre_norms() && !c.qk_norm && !c.qkv_bias);
    assert_eq!(full_layers(&c), vec![0, 1]);
    let zero = vec![("seed_oss.attention.scale", M::F32(0.0))];
    assert!(read("s0.gguf", &gguf("seed_oss", 2, 64, 4, 16, zero)).is_ok());
    let scale = vec![("seed_oss.attention.scale", M::F32(0.5))];
    refused(
        "s1.gguf",
        &gguf("seed_oss", 2, 64, 4, 16, scale),
        "`seed_oss.attention.scale` 0.5",
    );
}

/// llama.cpp's `glm4`: NORM RoPE (adjacent pairs, on HF's rows) over `rope.dimension_count`
/// dimensions (half a head as its converter writes them), norms around both sub-blocks; a
/// GLM-4V file's M-RoPE sections refused (all zero is a text model's); a partial width in a
/// `llama` file still refused. llama.cpp's `ernie4_5`: NORM RoPE over whole heads.
#[test]
fn glm4_and_ernie4_5_rotate_adjacent_pairs() {
    use dlp_engine::config::Arch;
    let half = || ("glm4.rope.dimension_count", M::U32(8));
    let c = read("g.gguf", &gguf("glm4", 2, 64, 4, 16, vec![half()])).unwrap();
    assert_eq!((c.arch, c.head_dim, c.rotary_dim), (Arch::Glm4, 16, 8));
    assert!(c.rope_interleaved && c.pre_norms() && c.post_norms() && !c.qk_norm);
    assert_eq!(c.norm_names().attn_out, "post_self_attn_layernorm");
    let zeros = vec![
        half(),
        ("glm4.rope.dimension_sections", M::I32s(vec![0; 4])),
    ];
    assert!(read("g0.gguf", &gguf("glm4", 2, 64, 4, 16, zeros)).is_ok());
    // GLM-4V's M-RoPE, an odd width, GLM-OCR's appended prediction layer (llama.cpp reads the
    // first and the last).
    let sections = ("glm4.rope.dimension_sections", M::I32s(vec![8, 12, 12, 0]));
    for (name, extra, want) in [
        (
            "gm.gguf",
            vec![half(), sections],
            "`glm4.rope.dimension_sections` is [8, 12, 12, 0]: M-RoPE (GLM-4V's position sections",
        ),
        (
            "go.gguf",
            vec![("glm4.rope.dimension_count", M::U32(7))],
            "`glm4.rope.dimension_count` is 7; expected an even number > 0 and at most head_dim 16",
        ),
        (
            "gn.gguf",
            vec![half(), ("glm4.nextn_predict_layers", M::U32(2))],
            "`glm4.nextn_predict_layers` is 2, which leaves none of the 2 layers",
        ),
    ] {
        refused(name, &gguf("glm4", 2, 64, 4, 16, extra), want);
    }
    // `chatglm` (THUDM's GLM-4-9B-chat and ChatGLM3): GLM without output norms; q/k/v and
    // their biases may be stacked (`attn_qkv`, split at load).
    let bias = Tensor {
        name: "blk.0.attn_qkv.bias".into(),
        dims: vec![96],
        ty: 0,
        data: vec![0; 4 * 96],
    };
    let half = || vec![("chatglm.rope.dimension_count", M::U32(8))];
    let c = read(
        "c.gguf",
        &gguf_with("chatglm", 1, 64, 4, 16, half(), vec![bias]),
    )
    .unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Glm, 8));
    assert!(c.rope_interleaved && c.qkv_bias && !c.o_bias && !c.post_norms());
    // Biases in some layers only (llama.cpp reads each layer's): refused, not dropped.
    let later = zero_tensor("blk.1.attn_q.bias", vec![64]);
    refused(
        "cb.gguf",
        &gguf_with("chatglm", 2, 64, 4, 16, half(), vec![later]),
        "layer 0 has no `attn_q`/`attn_qkv` bias and layer 1 has one",
    );
    let llama = vec![("llama.rope.dimension_count", M::U32(8))];
    refused(
        "lp.gguf",
        &gguf("llama", 2, 64, 4, 16, llama),
        "an even part is read for phi3, phi2, stablelm, nemotron, chatglm and glm4 files only",
    );
    // `ernie4_5`: NORM RoPE over whole heads (llama.cpp asserts n_rot = head_dim).
    let c = read("e.gguf", &gguf("ernie4_5", 2, 64, 4, 16, vec![])).unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Ernie45, 16));
    assert!(c.rope_interleaved && !c.post_norms());
    let part = vec![("ernie4_5.rope.dimension_count", M::U32(8))];
    refused(
        "ep.gguf",
        &gguf("ernie4_5", 2, 64, 4, 16, part),
        "ernie4_5.rope.dimension_count 8 != head_dim 16",
    );
    // Not NORM RoPE for the others: their rows are HF's halves (or un-permuted to them).
    let c = read("s.gguf", &gguf("seed_oss", 2, 64, 4, 16, vec![])).unwrap();
    assert!(!c.rope_interleaved);
}

/// llama.cpp's `exaone` (EXAONE 3 and 3.5): Llama's graph, whole-head RoPE on halves (NEOX:
/// HF's rows, which `tiny-exaone-gguf` checks are not un-permuted as a `llama` file's are), no
/// norms but Llama's; a partial rotation refused.
#[test]
fn exaone_reads_as_llama() {
    use dlp_engine::config::Arch;
    let c = read("e.gguf", &gguf("exaone", 2, 64, 4, 16, vec![])).unwrap();
    assert_eq!((c.arch, c.head_dim, c.rotary_dim), (Arch::Exaone, 16, 16));
    assert!(!c.rope_interleaved && c.pre_norms() && !c.post_norms() && !c.qk_norm);
    refused(
        "ep.gguf",
        &gguf(
            "exaone",
            2,
            64,
            4,
            16,
            vec![("exaone.rope.dimension_count", M::U32(8))],
        ),
        "partial rotary embedding (exaone.rope.dimension_count 8 != head_dim 16",
    );
}

/// llama.cpp's `command-r` and `cohere2` (Cohere, Cohere 2): LayerNorms, parallel blocks, NORM
/// RoPE on HF's rows (adjacent pairs); the eps from `attention.layer_norm_epsilon` and the
/// logits' factor from `logit_scale`, both required (0: no factor); `cohere2`'s window
/// (required) in three layers of four, the only ones that rotate.
#[test]
fn command_r_and_cohere2_read_as_llama_cpp() {
    use dlp_engine::config::Arch;
    let keys = |a: &str, scale: f32| {
        let (eps, logit) = match a {
            "command-r" => (
                "command-r.attention.layer_norm_epsilon",
                "command-r.logit_scale",
            ),
            _ => (
                "cohere2.attention.layer_norm_epsilon",
                "cohere2.logit_scale",
            ),
        };
        vec![(eps, M::F32(1e-5)), (logit, M::F32(scale))]
    };
    let c = read(
        "c.gguf",
        &gguf("command-r", 2, 64, 4, 16, keys("command-r", 0.0625)),
    )
    .unwrap();
    assert_eq!(
        (c.arch, c.logit_scale, c.rms_norm_eps),
        (Arch::Cohere, Some(0.0625), 1e-5)
    );
    assert!(c.layer_norms() && c.parallel_block() && c.rope_interleaved);
    assert_eq!(full_layers(&c).len(), 2);
    let c = read(
        "c0.gguf",
        &gguf("command-r", 2, 64, 4, 16, keys("command-r", 0.0)),
    )
    .unwrap();
    assert_eq!(c.logit_scale, None);
    let mut k2 = keys("cohere2", 0.5);
    k2.push(("cohere2.attention.sliding_window", M::U32(6)));
    let c = read("c2.gguf", &gguf("cohere2", 5, 64, 4, 16, k2)).unwrap();
    assert_eq!(c.arch, Arch::Cohere2);
    assert_eq!(
        c.attention_window,
        [Some(6), Some(6), Some(6), None, Some(6)]
    );
    assert_eq!(c.rope_layers, [true, true, true, false, true]);
    // Each of the three required keys missing in turn.
    refused(
        "n.gguf",
        &gguf("cohere2", 2, 64, 4, 16, keys("cohere2", 0.5)),
        "missing metadata `cohere2.attention.sliding_window`",
    );
    let mut k = keys("command-r", 0.0);
    let scale = k.split_off(1);
    refused(
        "s.gguf",
        &gguf("command-r", 2, 64, 4, 16, k),
        "missing metadata `command-r.logit_scale`",
    );
    refused(
        "e.gguf",
        &gguf("command-r", 2, 64, 4, 16, scale),
        "missing metadata `command-r.attention.layer_norm_epsilon`",
    );
}

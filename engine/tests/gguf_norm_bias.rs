//! llama.cpp's `stablelm`, `starcoder2`, `phi2` and `falcon` GGUFs (LayerNorms with biases) as its loader
//! reads their metadata: the eps from `attention.layer_norm_epsilon` (required), RoPE on
//! `rope.dimension_count` dimensions (a part for `stablelm` and `phi2`), `phi2`'s parallel
//! blocks, `stablelm`'s where a layer has no `ffn_norm`, and `starcoder2` with no window (its
//! loader reads none), and `falcon` (always parallel, a norm each where its layers hold
//! `attn_norm_2`), the squared-ReLU families `nemotron` (LayerNorms, a part rotated) and
//! `arcee` (RMSNorms), `apertus` (xIELU, its constants in metadata) and `jais2` (LayerNorms,
//! the squared ReLU, whole heads rotated). Their logits against
//! transformers: the golden runs' `tiny_phi_gguf`, `tiny_stablelm_gguf`, `tiny_starcoder2_gguf`,
//! `tiny_falcon_gguf`, `tiny_nemotron_gguf`, `tiny_arcee_gguf`, `tiny_apertus_gguf`.

#[allow(dead_code)]
#[path = "gguf/family_files.rs"]
mod family_files;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::config::{Activation, Arch};
use family_files::{gguf, gguf_with, layernorm_keys as keys, read, refused};
use writer::{Tensor, M};

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

/// `nemotron`: LayerNorms (its eps key), RoPE on `rope.dimension_count` of each head, the
/// squared ReLU ungated; `arcee`: RMSNorms, whole heads, the squared ReLU, and the o_proj and
/// feed-forward biases its graph does not add refused.
#[test]
fn relu2_families_read_as_llama_cpp() {
    let c = read(
        "n.gguf",
        &gguf("nemotron", 2, 64, 4, 16, keys("nemotron", 8)),
    )
    .unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Nemotron, 8));
    assert!(c.layer_norms() && !c.parallel_block() && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::Relu2);
    assert!(!c.o_bias && !c.mlp_bias);
    // Minitron's heads, wider than embedding_length / head_count, rotating the file's count
    // (llama.cpp's converter's, from hidden / heads); the biases its graph adds where present.
    let biases = ["attn_output", "ffn_up", "ffn_down"]
        .iter()
        .flat_map(|t| (0..2).map(move |i| tensor(&format!("blk.{i}.{t}.bias"))))
        .collect();
    let wide = gguf_with("nemotron", 2, 64, 4, 24, keys("nemotron", 8), biases);
    let c = read("w.gguf", &wide).unwrap();
    assert_eq!((c.head_dim, c.rotary_dim, c.q_dim()), (24, 8, 96));
    assert!(c.o_bias && c.mlp_bias);
    let rms = || vec![("arcee.attention.layer_norm_rms_epsilon", M::F32(1e-5))];
    let c = read("a.gguf", &gguf("arcee", 2, 64, 4, 16, rms())).unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Arcee, 16));
    assert!(!c.layer_norms() && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::Relu2);
    for t in ["attn_output", "ffn_up", "ffn_down"] {
        let name = format!("blk.1.{t}.bias");
        let bytes = gguf_with("arcee", 2, 64, 4, 16, rms(), vec![tensor(&name)]);
        refused(
            "b.gguf",
            &bytes,
            &format!(
                "tensor `{name}`: llama.cpp's `arcee` graph adds no o_proj or feed-forward bias"
            ),
        );
    }
    let mut partial = rms();
    partial.push(("arcee.rope.dimension_count", M::U32(8)));
    refused(
        "r.gguf",
        &gguf("arcee", 2, 64, 4, 16, partial),
        "partial rotary embedding (arcee.rope.dimension_count 8 != head_dim 16",
    );
}

/// A whole one-layer `arch` file (hidden 64, 4 heads of 16 over one key/value head, a
/// feed-forward of 64 ungated, vocabulary 64; every weight zero) with `more` tensors, loaded
/// into a CPU model: the error of either step, or "".
fn load_whole(arch: &'static str, keys: Vec<(&'static str, M)>, more: &[(&str, u64)]) -> String {
    let t = |name: &str, dims: &[u64]| Tensor {
        name: name.into(),
        dims: dims.to_vec(),
        ty: 0,
        data: vec![0; 4 * dims.iter().product::<u64>() as usize],
    };
    let mut tensors = vec![t("token_embd.weight", &[64, 64])];
    let mut norms = vec!["output_norm", "blk.0.attn_norm", "blk.0.ffn_norm"];
    for (name, dims) in [
        ("attn_q", [64, 64]),
        ("attn_k", [64, 16]),
        ("attn_v", [64, 16]),
        ("attn_output", [64, 64]),
        ("ffn_up", [64, 64]),
        ("ffn_down", [64, 64]),
    ] {
        tensors.push(t(&format!("blk.0.{name}.weight"), &dims));
    }
    for n in norms.drain(..) {
        tensors.push(t(&format!("{n}.weight"), &[64]));
        if arch == "nemotron" {
            tensors.push(t(&format!("{n}.bias"), &[64]));
        }
    }
    tensors.extend(more.iter().map(|(name, n)| t(name, &[*n])));
    let bytes = gguf_with(arch, 1, 64, 4, 16, keys, tensors);
    // A folder per call: tests run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dlp-gguf-whole-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.gguf");
    std::fs::write(&p, bytes).unwrap();
    let made = dlp_engine::loader::ModelFiles::load(&p).and_then(|files| {
        dlp_engine::model::Model::new(
            dlp_engine::cpu::CpuBackend::new(),
            files.config,
            files.weights,
            16,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    made.err().map(|e| e.to_string()).unwrap_or_default()
}

/// A linear bias the configuration leaves unread (one of q/k/v's, one side of the
/// feed-forward's), which llama.cpp's graph would add, is refused by name, not run without.
#[test]
fn a_lone_linear_bias_is_refused() {
    let rms = || vec![("arcee.attention.layer_norm_rms_epsilon", M::F32(1e-5))];
    assert_eq!(load_whole("arcee", rms(), &[]), "", "the whole file loads");
    let e = load_whole("arcee", rms(), &[("blk.0.attn_v.bias", 16)]);
    assert!(
        e.contains("tensor `blk.0.attn_v.bias` (model.layers.0.self_attn.v_proj.bias): a bias this model's configuration does not read"),
        "{e}"
    );
    assert_eq!(load_whole("nemotron", keys("nemotron", 8), &[]), "");
    let e = load_whole(
        "nemotron",
        keys("nemotron", 8),
        &[("blk.0.ffn_up.bias", 64)],
    );
    assert!(e.contains("tensor `blk.0.ffn_up.bias`"), "{e}");
    // Values as wide as keys only.
    let mut v = keys("nemotron", 8);
    v.push(("nemotron.attention.value_length", M::U32(8)));
    refused(
        "v.gguf",
        &gguf("nemotron", 1, 64, 4, 16, v),
        "`nemotron.attention.value_length` 8 differs from the key width 16",
    );
    // llama.cpp's `nemotron` graph reads no frequency factors.
    let e = read(
        "f.gguf",
        &gguf_with(
            "nemotron",
            1,
            64,
            4,
            16,
            keys("nemotron", 8),
            vec![tensor("rope_freqs.weight")],
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "tensor `rope_freqs.weight`: llama.cpp's `nemotron` graph reads no frequency factors"
        ),
        "{e}"
    );
}

/// `apertus`: RMSNorms, per-head query/key norms, whole heads rotated in halves, xIELU; the
/// feed-forward biases its graph does not add and a part rotated (its graph asserts n_rot ==
/// head_dim) refused; a whole file loads with its `xielu.*` constants (no architecture prefix,
/// one per layer) and is refused by the key's name without one.
#[test]
fn apertus_reads_as_llama_cpp() {
    let rms = || vec![("apertus.attention.layer_norm_rms_epsilon", M::F32(1e-5))];
    let c = read("ap.gguf", &gguf("apertus", 2, 64, 4, 16, rms())).unwrap();
    assert_eq!((c.arch, c.rotary_dim), (Arch::Apertus, 16));
    assert_eq!(c.activation, Activation::Xielu);
    assert!(c.qk_norm && !c.rope_interleaved && !c.layer_norms() && !c.arch.gated_mlp());
    for t in ["ffn_up", "ffn_down"] {
        let name = format!("blk.0.{t}.bias");
        let bytes = gguf_with("apertus", 2, 64, 4, 16, rms(), vec![tensor(&name)]);
        let want =
            format!("tensor `{name}`: llama.cpp's `apertus` graph adds no feed-forward bias");
        refused("b.gguf", &bytes, &want);
    }
    let mut partial = rms();
    partial.push(("apertus.rope.dimension_count", M::U32(8)));
    refused(
        "r.gguf",
        &gguf("apertus", 2, 64, 4, 16, partial),
        "partial rotary embedding (apertus.rope.dimension_count 8 != head_dim 16",
    );
    // `gguf_with` writes the query norm of the families that have one.
    let norms = [("blk.0.attn_k_norm.weight", 16)];
    let with = |skip: &str| {
        let mut k = rms();
        for (key, v) in [
            ("xielu.alpha_p", 0.5),
            ("xielu.alpha_n", 0.25),
            ("xielu.beta", 0.5),
            ("xielu.eps", -1e-6),
        ] {
            if key != skip {
                k.push((key, M::F32s(vec![v])));
            }
        }
        k
    };
    assert_eq!(
        load_whole("apertus", with(""), &norms),
        "",
        "the whole file loads"
    );
    let e = load_whole("apertus", with("xielu.beta"), &norms);
    assert!(e.contains("missing metadata `xielu.beta`"), "{e}");
    // llama.cpp loads a query norm's bias and never adds it: left unread here too.
    let norm_bias = [norms[0], ("blk.0.attn_q_norm.bias", 16)];
    assert_eq!(load_whole("apertus", with(""), &norm_bias), "");
}

/// A GGUF's tensors llama.cpp's loader would not make, which it refuses ("wrong number of
/// tensors"): a norm bias of an RMSNorm family, tensors of a layer past `block_count`, an
/// ungated family's gate, any other the model leaves unread; refused by name, not left unread.
#[test]
fn stray_tensors_are_refused() {
    let rms = || vec![("arcee.attention.layer_norm_rms_epsilon", M::F32(1e-5))];
    let e = load_whole("arcee", rms(), &[("blk.0.attn_norm.bias", 64)]);
    let want = "tensor `blk.0.attn_norm.bias` (model.layers.0.input_layernorm.bias): a norm's bias this model's norms do not have";
    assert!(e.contains(want), "{e}");
    for extra in ["blk.1.attn_norm.weight", "blk.1.attn_q.bias"] {
        let e = load_whole("arcee", rms(), &[(extra, 64)]);
        let want = format!("tensor `{extra}` is of layer 1, past `arcee.block_count` 1; llama.cpp refuses such a file");
        assert!(e.contains(&want), "{e}");
    }
    // Norms the family has not (Gemma 2's after attention, which Llama's names would read as
    // its feed-forward norm, and after the feed-forward): refused by name.
    for norm in ["post_attention_norm", "post_ffw_norm"] {
        let name = format!("blk.0.{norm}.weight");
        let e = load_whole("arcee", rms(), &[(&name, 64)]);
        let want = format!("tensor `{name}` is not one this engine reads in a `arcee` file, nor one llama.cpp's loader makes for it");
        assert!(e.contains(&want), "{e}");
    }
    // An ungated family's gate, which llama.cpp's loader does not make.
    for part in ["weight", "bias"] {
        let name = format!("blk.0.ffn_gate.{part}");
        let e = load_whole("arcee", rms(), &[(&name, 64)]);
        let want = format!("tensor `{name}`: a `arcee` model's feed-forward has no gate");
        assert!(e.contains(&want), "{e}");
    }
}

/// A `qwen2` file's optional `output.bias`, which llama.cpp's `qwen2` graph adds to the head's
/// product, is read and added to every row of logits; a `qwen3` file's, which its graph does
/// not add, is refused by name (llama.cpp refuses the file: a tensor it does not make).
#[test]
fn a_qwen2_head_bias_is_added_as_llama_cpp_adds_it() {
    use dlp_engine::generate::{score_batch, ScoreInput, ScoreMode};
    use dlp_engine::loader::gguf::GgufFile;
    use dlp_engine::loader::ModelFiles;
    use dlp_engine::model::Model;
    let dir = std::env::temp_dir().join(format!("dlp-head-bias-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let load = |path: &std::path::Path| {
        let f = ModelFiles::load(path)?;
        Model::new(dlp_engine::cpu::CpuBackend::new(), f.config, f.weights, 64)
    };
    let ids = ScoreInput {
        ids: vec![1, 7, 42, 3, 99],
        segments: vec![],
    };
    for (family, added) in [("qwen2", true), ("qwen3", false)] {
        let src = fixtures.join(format!("tiny-{family}-gguf/model.gguf"));
        let g = GgufFile::open(&src).unwrap();
        let vocab = g.config().unwrap().vocab_size;
        let bias: Vec<f32> = (0..vocab)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 8.0)
            .collect();
        let mut w = writer::Writer::copy_of(&g);
        w.tensors.push(Tensor {
            name: "output.bias".into(),
            dims: vec![vocab as u64],
            ty: 0,
            data: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
        });
        let path = dir.join(format!("{family}.gguf"));
        std::fs::write(&path, w.bytes()).unwrap();
        if !added {
            let e = load(&path).err().expect("refused").to_string();
            assert!(
                e.contains("tensor `output.bias` (lm_head.bias): an output head bias, which llama.cpp's loader makes for `qwen2` and `phi2` files only"),
                "{e}"
            );
            continue;
        }
        assert!(ModelFiles::load(&path).unwrap().config.head_bias);
        let score =
            |m: &Model<_>| score_batch(m, std::slice::from_ref(&ids), ScoreMode::Prefill, 8);
        let plain = score(&load(&src).unwrap()).unwrap().remove(0);
        let biased = score(&load(&path).unwrap()).unwrap().remove(0);
        for (row, (p, b)) in plain.chunks(vocab).zip(biased.chunks(vocab)).enumerate() {
            for (v, ((p, b), want)) in p.iter().zip(b).zip(&bias).enumerate() {
                assert!(
                    (b - p - want).abs() < 1e-4,
                    "row {row}, token {v}: {p} + {want} vs {b}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tensors a family's llama.cpp loader does not make are refused by name, not skipped:
/// `rope_freqs` in a `qwen2` file (llama.cpp reads it in `llama`, `granite`, `arcee`,
/// `exaone`, `exaone4` and `apertus` files only), and a per-tensor scale, which llama.cpp
/// multiplies in and this engine does not.
#[test]
fn tensors_the_family_does_not_have_are_refused() {
    use dlp_engine::loader::gguf::GgufFile;
    let dir = std::env::temp_dir().join(format!("dlp-unread-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    for (family, name, dims, want) in [
        ("qwen2", "rope_freqs.weight", vec![16u64], "tensor `rope_freqs.weight` is not one this engine reads in a `qwen2` file, nor one llama.cpp's loader makes for it"),
        ("llama", "blk.0.attn_q.scale", vec![1], "tensor `blk.0.attn_q.scale` is a per-tensor scale (NVFP4's), which llama.cpp multiplies into its product; not supported"),
    ] {
        let g = GgufFile::open(&fixtures.join(format!("tiny-{family}-gguf/model.gguf"))).unwrap();
        let mut w = writer::Writer::copy_of(&g);
        let n: u64 = dims.iter().product();
        w.tensors.push(Tensor {
            name: name.into(),
            dims,
            ty: 0,
            data: (0..n).flat_map(|_| 1f32.to_le_bytes()).collect(),
        });
        let path = dir.join(format!("{family}.gguf"));
        std::fs::write(&path, w.bytes()).unwrap();
        let e = dlp_engine::loader::ModelFiles::load(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    // A family whose feed-forward input norm is `ffn_norm` (llama.cpp makes no
    // `post_attention_norm` for it): the other name is refused, not read as that norm; the
    // families with post-sub-block norms keep theirs.
    for (family, from, to) in [
        ("llama", ".ffn_norm.", ".post_attention_norm."),
        ("exaone", ".ffn_norm.", ".post_attention_norm."),
        ("qwen2", ".ffn_norm.", ".post_ffw_norm."),
    ] {
        let g = GgufFile::open(&fixtures.join(format!("tiny-{family}-gguf/model.gguf"))).unwrap();
        let mut w = writer::Writer::copy_of(&g);
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name.contains(from))
            .unwrap();
        t.name = t.name.replace(from, to);
        let path = dir.join(format!("{family}-post-norm.gguf"));
        std::fs::write(&path, w.bytes()).unwrap();
        let e = dlp_engine::loader::ModelFiles::load(&path)
            .err()
            .expect("refused")
            .to_string();
        let want = format!("{to}weight` is not one this engine reads in a `{family}` file");
        assert!(e.contains(&want), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `jais2` file (Jais 2: `conversion/jais.py`'s Jais2Model, a TextModel; llama.cpp's
/// src/models/jais2.cpp): LayerNorms with biases from `attention.layer_norm_epsilon`
/// (required), whole heads in halves (NEOX, HF's rows), an ungated squared-ReLU feed-forward,
/// sequential blocks; tied where it has no `output.weight`.
#[test]
fn jais2_reads_as_llama_cpp() {
    let c = read("j.gguf", &gguf("jais2", 2, 64, 4, 16, keys("jais2", 16))).unwrap();
    assert_eq!(
        (c.arch, c.rotary_dim, c.rms_norm_eps),
        (Arch::Jais2, 16, 1e-5)
    );
    assert!(c.layer_norms() && c.arch.norm_bias() && !c.rope_interleaved);
    assert!(!c.parallel_block() && !c.arch.gated_mlp() && c.tie_word_embeddings);
    assert_eq!(c.activation, Activation::Relu2);
    let mut k = keys("jais2", 16);
    k.remove(0);
    refused(
        "je.gguf",
        &gguf("jais2", 2, 64, 4, 16, k),
        "missing metadata `jais2.attention.layer_norm_epsilon`",
    );
}

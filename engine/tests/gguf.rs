//! GGUF reader tests: the SmolLM2 fixture, a synthetic GGUF written here, and corrupt /
//! truncated copies of it.

mod common;
#[path = "gguf/writer.rs"]
mod writer;

use std::path::{Path, PathBuf};

use common::{fixture, scratch, GGUF};
use dlp_engine::loader::gguf::{GgufFile, GgufValue};
use dlp_engine::tokenizer::{ChatMessage, ChatRequest, TextTokenizer};
use writer::{Tensor, Writer, M};

#[test]
fn gguf_smollm2_config_and_weights() {
    let Some(p) = fixture(GGUF) else { return };
    let g = GgufFile::open(&p).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 272);
    let c = g.config().unwrap();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.intermediate_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim
        ),
        (30, 576, 1536, 9, 3, 64)
    );
    assert_eq!((c.vocab_size, c.max_position_embeddings), (49152, 8192));
    assert!(c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!((c.rope_theta, c.rms_norm_eps), (100000.0, 1e-5));
    // End ids: the eos id (<|im_end|>), then <|endoftext|> by its text, as llama.cpp ends.
    let ends = (c.bos_token_id, c.eos_token_ids.as_slice());
    assert_eq!(ends, (Some(1), &[2, 0][..]));
    assert!(g.chat_template().unwrap().contains("<|im_start|>"));
    let s = g.summary();
    for want in [
        "GGUF v3",
        "llama.block_count = 30",
        "Q4_1",
        "Q8_0",
        "tensors: 272",
        "(49152 elements)",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
    assert!(s.lines().count() < 80, "summary must stay short:\n{s}");

    let mut w = g.load_weights().unwrap();
    assert_eq!(w.names().count(), 272);
    let shapes: [(&str, &[usize]); 6] = [
        ("model.embed_tokens.weight", &[49152, 576]),
        ("model.layers.0.self_attn.q_proj.weight", &[576, 576]),
        ("model.layers.0.self_attn.k_proj.weight", &[192, 576]),
        ("model.layers.29.mlp.down_proj.weight", &[576, 1536]),
        ("model.layers.29.mlp.gate_proj.weight", &[1536, 576]),
        ("model.norm.weight", &[576]),
    ];
    for (name, shape) in shapes {
        let t = w.take(name, shape).unwrap();
        let max = t.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        let mean = t.data.iter().map(|x| x.abs() as f64).sum::<f64>() / t.numel() as f64;
        assert!(
            max < 100.0 && mean > 1e-3 && mean < 10.0,
            "{name}: max |x| {max}, mean |x| {mean}"
        );
    }
    assert!(!w.contains("lm_head.weight"), "tied embeddings: no lm_head");
}

// ---------- synthetic GGUF files ----------

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}
/// Q8_0 blocks with d = 1/64 and quants `q(i)`.
fn q8_bytes(n: usize, q: impl Fn(usize) -> i8) -> Vec<u8> {
    let mut b = Vec::new();
    for blk in 0..n / 32 {
        b.extend(half::f16::from_f32(1.0 / 64.0).to_le_bytes());
        b.extend((0..32).map(|j| q(blk * 32 + j) as u8));
    }
    b
}
fn q4_bytes(n: usize, with_min: bool) -> Vec<u8> {
    let mut b = Vec::new();
    for blk in 0..n / 32 {
        b.extend(half::f16::from_f32(0.5).to_le_bytes());
        if with_min {
            b.extend(half::f16::from_f32(-2.0).to_le_bytes());
        }
        b.extend((0..16).map(|j| ((j + blk) % 16) as u8 | (((15 - j) as u8) << 4)));
    }
    b
}

// A one-layer llama: hidden 64, 2 heads / 1 kv head (head_dim 32), ffn 96, vocab 8.
const H: usize = 64;
const F: usize = 96;
const V: usize = 8;

fn q_value(i: usize) -> f32 {
    (i % 251) as f32 / 256.0 - 0.5
}

fn tiny_llama() -> Writer {
    let tokens: Vec<String> = ["<s>", "</s>", "a", "b", "Ġ", "ab", "Ġa", "<|user|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let kv = vec![
        ("general.architecture".into(), M::Str("llama")),
        ("llama.embedding_length".into(), M::U32(H as u32)),
        ("llama.feed_forward_length".into(), M::U32(F as u32)),
        ("llama.block_count".into(), M::U32(1)),
        ("llama.attention.head_count".into(), M::U32(2)),
        ("llama.attention.head_count_kv".into(), M::U32(1)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            M::F32(1e-6),
        ),
        ("llama.context_length".into(), M::U32(128)),
        ("tokenizer.ggml.model".into(), M::Str("gpt2")),
        ("tokenizer.ggml.pre".into(), M::Str("gpt2")),
        ("tokenizer.ggml.tokens".into(), M::Strs(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            M::I32s(vec![3, 3, 1, 1, 1, 1, 1, 4]),
        ),
        (
            "tokenizer.ggml.merges".into(),
            M::Strs(vec!["a b".into(), "Ġ a".into()]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), M::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), M::U32(1)),
        (
            "tokenizer.chat_template".into(),
            M::Str("{% for m in messages %}<|user|>{{ m.content }}{% endfor %}"),
        ),
    ];
    let t = |name: &str, dims: &[usize], ty: u32, data: Vec<u8>| Tensor {
        name: name.into(),
        dims: dims.iter().map(|&d| d as u64).collect(),
        ty,
        data,
    };
    let q: Vec<f32> = (0..H * H).map(q_value).collect();
    let tensors = vec![
        t(
            "token_embd.weight",
            &[H, V],
            1,
            f16_bytes(&(0..H * V).map(|i| i as f32 / 8.0).collect::<Vec<_>>()),
        ),
        t("blk.0.attn_norm.weight", &[H], 0, f32_bytes(&[1.0; H])),
        t("blk.0.attn_q.weight", &[H, H], 0, f32_bytes(&q)),
        t(
            "blk.0.attn_q.bias",
            &[H],
            0,
            f32_bytes(&(0..H).map(|i| i as f32).collect::<Vec<_>>()),
        ),
        t(
            "blk.0.attn_k.weight",
            &[H, 32],
            8,
            q8_bytes(H * 32, |i| ((i % 200) as i32 - 100) as i8),
        ),
        t("blk.0.attn_v.weight", &[H, 32], 2, q4_bytes(H * 32, false)),
        t(
            "blk.0.attn_output.weight",
            &[H, H],
            3,
            q4_bytes(H * H, true),
        ),
        t(
            "blk.0.ffn_gate.weight",
            &[H, F],
            8,
            q8_bytes(H * F, |i| (i % 7) as i8),
        ),
        t(
            "blk.0.ffn_up.weight",
            &[H, F],
            8,
            q8_bytes(H * F, |i| -((i % 5) as i8)),
        ),
        t(
            "blk.0.ffn_down.weight",
            &[F, H],
            8,
            q8_bytes(H * F, |i| (i % 3) as i8),
        ),
        t("blk.0.ffn_norm.weight", &[H], 0, f32_bytes(&[2.0; H])),
        t("output_norm.weight", &[H], 0, f32_bytes(&[1.0; H])),
        t("output.weight", &[H, V], 0, f32_bytes(&vec![0.25; H * V])),
    ];
    Writer {
        version: 3,
        kv,
        tensors,
    }
}

/// A fresh scratch directory for this test.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn open_err(p: &Path) -> String {
    let e = GgufFile::open(p).expect_err("open must fail").to_string();
    assert!(
        e.contains(&p.display().to_string()),
        "error must name the file: {e}"
    );
    e
}

#[test]
fn synthetic_gguf_loads() {
    let dir = scratch("ok");
    let p = write(&dir, "tiny.gguf", &tiny_llama().bytes());
    let g = GgufFile::open(&p).unwrap();
    let c = g.config().unwrap();
    assert_eq!(
        (
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            c.vocab_size
        ),
        (H, 2, 1, 32, V)
    );
    assert!(!c.tie_word_embeddings && c.qkv_bias && !c.o_bias);
    assert_eq!(
        (
            c.rope_theta,
            c.max_position_embeddings,
            c.eos_token_ids.as_slice()
        ),
        (10000.0, 128, &[1][..])
    );
    let mut m = g.load_weights().unwrap();
    let emb = m.take("model.embed_tokens.weight", &[V, H]).unwrap();
    assert_eq!(
        emb.data[3 * H + 5],
        (3 * H + 5) as f32 / 8.0,
        "row-major [vocab, hidden]"
    );
    // q_proj rows come back in HF order: HF row h*32 + j*16 + i is GGUF row h*32 + 2i + j.
    let q = m
        .take("model.layers.0.self_attn.q_proj.weight", &[H, H])
        .unwrap();
    for (h, i, j, col) in [(0, 0, 1, 0), (1, 5, 0, 7), (1, 15, 1, 63)] {
        let (hf_row, gguf_row) = (h * 32 + j * 16 + i, h * 32 + 2 * i + j);
        assert_eq!(q.data[hf_row * H + col], q_value(gguf_row * H + col));
    }
    let qb = m
        .take("model.layers.0.self_attn.q_proj.bias", &[H])
        .unwrap();
    assert_eq!(&qb.data[..4], &[0.0, 2.0, 4.0, 6.0], "bias un-permuted too");
    let k = m
        .take("model.layers.0.self_attn.k_proj.weight", &[32, H])
        .unwrap();
    assert_eq!(
        k.data[H],
        ((2 * H) % 200) as f32 / 64.0 - 100.0 / 64.0,
        "k row 1 = GGUF row 2 (1 kv head)"
    );
    let v = m
        .take("model.layers.0.self_attn.v_proj.weight", &[32, H])
        .unwrap();
    assert_eq!(&v.data[..2], &[-4.0, -3.5]);
    assert_eq!(
        v.data[16],
        (15.0 - 8.0) * 0.5,
        "high nibbles are elements 16..32"
    );
    let o = m
        .take("model.layers.0.self_attn.o_proj.weight", &[H, H])
        .unwrap();
    assert_eq!(&o.data[..2], &[-2.0, -1.5]);
    m.take("model.layers.0.mlp.down_proj.weight", &[H, F])
        .unwrap();
    m.take("model.layers.0.mlp.gate_proj.weight", &[F, H])
        .unwrap();
    m.take("lm_head.weight", &[V, H]).unwrap();
    assert!(g.summary().contains("tensors: 13"));

    // The tokenizer: control and user-defined tokens are matched whole; control ones are
    // special (skipped in output), user-defined ones text.
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.encode("ab a<|user|>b").unwrap(), [5, 6, 7, 3]);
    assert_eq!(tok.decode(&[0, 5, 6, 1], true).unwrap(), "ab a");
    assert_eq!(tok.decode(&[0, 5, 6, 7, 1], true).unwrap(), "ab a<|user|>");
    let mut stream = tok.stream_decoder(true);
    let streamed: String = [0, 5, 7, 1]
        .into_iter()
        .filter_map(|t| stream.push(t).unwrap())
        .collect();
    assert_eq!(streamed, "ab<|user|>");
    assert_eq!(tok.eos_token_ids(), [1]);
    let msgs = [ChatMessage::new("user", "ab")];
    assert_eq!(tok.render_chat(&msgs, true).unwrap(), "<|user|>ab");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn synthetic_gguf_errors() {
    let dir = scratch("err");
    let (bytes, header_len) = tiny_llama().bytes_and_header_len();

    let mut b = bytes.clone();
    b[..4].copy_from_slice(b"GGML");
    assert!(open_err(&write(&dir, "magic.gguf", &b)).contains("bad magic"));

    let mut b = bytes.clone();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(open_err(&write(&dir, "v1.gguf", &b)).contains("version 1"));
    let mut b = bytes.clone();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(open_err(&write(&dir, "be.gguf", &b)).contains("big-endian"));

    // Every truncation is reported (never a panic): each cut in the header, some in the data.
    for cut in (0..header_len + 64).chain((header_len..bytes.len()).step_by(997)) {
        let e = open_err(&write(&dir, "cut.gguf", &bytes[..cut]));
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }

    // Absurd counts and lengths are refused before allocating.
    let mut b = bytes.clone();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    assert!(open_err(&write(&dir, "nkv.gguf", &b)).contains("cannot fit"));
    let mut b = bytes.clone();
    b[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes()); // length of the first key
    assert!(open_err(&write(&dir, "keylen.gguf", &b)).contains("length 1152921504606846976"));
    let mut w = tiny_llama();
    w.kv.push(("x.big".into(), M::Strs(vec![])));
    let mut b = w.bytes();
    let at = find(&b, b"x.big") + 5 + 8; // after key and value type: element type, then count
    b[at..at + 8].copy_from_slice(&3u32.to_le_bytes().repeat(2)); // count = huge
    assert!(open_err(&write(&dir, "arr.gguf", &b)).contains("array of"));

    // Types: IQ2_XXS is parsed but not loaded; an unknown type number likewise.
    let mut w = tiny_llama();
    let down = w
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    (down.ty, down.dims, down.data) = (16, vec![256, H as u64], vec![0; H * 66]);
    let g = GgufFile::open(&write(&dir, "iq2xxs.gguf", &w.bytes())).unwrap();
    let e = g.load_weights().unwrap_err().to_string();
    assert!(
        e.contains("tensor blk.0.ffn_down.weight has type IQ2_XXS, supported: F32, F16"),
        "{e}"
    );
    let mut w = tiny_llama();
    w.tensors[1].ty = 77;
    let e = GgufFile::open(&write(&dir, "t77.gguf", &w.bytes()))
        .unwrap()
        .load_weights()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("blk.0.attn_norm.weight has type unknown (ggml type id 77)"),
        "{e}"
    );

    // Row length not a multiple of the block size.
    let mut w = tiny_llama();
    w.tensors.push(Tensor {
        name: "blk.0.odd.weight".into(),
        dims: vec![48, 2],
        ty: 8,
        data: vec![0; 68],
    });
    assert!(open_err(&write(&dir, "odd.gguf", &w.bytes()))
        .contains("ne[0] = 48 is not divisible by 32"));

    // Tensor data past the end of the file, and a misaligned offset.
    let mut w = tiny_llama();
    w.tensors.last_mut().unwrap().dims = vec![H as u64, 1000];
    assert!(
        open_err(&write(&dir, "past.gguf", &w.bytes())).contains("runs past the end of the file")
    );
    let mut b = bytes.clone();
    let at = find(&b, b"token_embd.weight") + 17 + 4 + 16 + 4;
    b[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
    assert!(open_err(&write(&dir, "align.gguf", &b)).contains("not a multiple of the alignment"));

    // Metadata problems surface in config().
    let mut w = tiny_llama();
    w.kv[0].1 = M::Str("gpt2");
    let e = GgufFile::open(&write(&dir, "arch.gguf", &w.bytes()))
        .unwrap()
        .config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown architecture")
            && e.contains("`general.architecture` is \"gpt2\"")
            && !e.contains("Some("),
        "{e}"
    );
    let mut w = tiny_llama();
    w.tensors.push(Tensor {
        name: "rope_freqs.weight".into(),
        dims: vec![16],
        ty: 0,
        data: f32_bytes(&[1.0; 16]),
    });
    let g = GgufFile::open(&write(&dir, "rope.gguf", &w.bytes())).unwrap();
    assert_eq!(g.config().unwrap().rope_freq_factors, Some(vec![1.0; 16]));
    assert_eq!(
        g.load_weights().unwrap().names().count(),
        13,
        "rope_freqs is skipped"
    );
    let mut w = tiny_llama();
    w.kv.retain(|(k, _)| k != "llama.block_count");
    let e = GgufFile::open(&write(&dir, "nolayers.gguf", &w.bytes()))
        .unwrap()
        .config()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("missing metadata `llama.block_count`"),
        "{e}"
    );
    let mut w = tiny_llama();
    w.kv.retain(|(k, _)| k != "tokenizer.ggml.merges");
    let g = GgufFile::open(&write(&dir, "nomerges.gguf", &w.bytes())).unwrap();
    assert!(TextTokenizer::from_gguf(&g)
        .unwrap_err()
        .to_string()
        .contains("tokenizer.ggml.merges"));
    // A vocabulary of a kind not rebuilt, or none: the weights load without a tokenizer
    // (token ids still work), and reading text says why.
    for (model, why) in [
        (Some("t5"), "GGUF tokenizer model `t5` is not rebuilt"),
        (None, "no `tokenizer.ggml.model` in its metadata"),
    ] {
        let mut w = tiny_llama();
        w.kv.retain(|(k, _)| k != "tokenizer.ggml.model");
        if let Some(m) = model {
            w.kv.push(("tokenizer.ggml.model".into(), M::Str(m)));
        }
        let p = write(&dir, "spm.gguf", &w.bytes());
        let g = GgufFile::open(&p).unwrap();
        let e = TextTokenizer::from_gguf(&g).unwrap_err().to_string();
        assert!(
            e.contains(why) && e.contains("tokenizer.json in the .gguf's folder"),
            "{e}"
        );
        let files = dlp_engine::loader::ModelFiles::load(&p).unwrap();
        assert!(files.tokenizer.is_none());
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in file")
}

#[test]
fn random_corruption_never_panics() {
    use rand::{Rng, SeedableRng};
    let dir = scratch("fuzz");
    let (bytes, header_end) = tiny_llama().bytes_and_header_len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..1500 {
        let mut b = bytes.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..header_end);
            b[at] = rng.random();
        }
        let p = write(&dir, "fuzz.gguf", &b);
        if let Ok(g) = GgufFile::open(&p) {
            let _ = g.config();
            let _ = g.load_weights();
            let _ = g.summary();
            let _ = TextTokenizer::from_gguf(&g);
        } else if i % 100 == 0 {
            // Errors are the common outcome; make sure they stay one line with the path.
            assert!(!open_err(&p).contains('\n'));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gguf_v2_is_read() {
    let dir = scratch("v2");
    let mut w = tiny_llama();
    w.version = 2;
    let g = GgufFile::open(&write(&dir, "v2.gguf", &w.bytes())).unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(
        g.metadata.get("llama.block_count"),
        Some(&GgufValue::U32(1))
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A `tokenizer.ggml.pre` not rebuilt here leaves the GGUF without a tokenizer, saying which
/// (its text would be split wrongly; token ids still work), where it had been read as GPT-2's;
/// llama.cpp's Llama 3 group (lfm2, pixtral, ...) is read as Llama 3's. A
/// `tokenizer.chat_template.tool_use` renders conversations with tools.
#[test]
fn gguf_pre_tokenizers_and_tool_use_template() {
    let dir = scratch("pre");
    let with_pre = |pre: &'static str, name: &str| {
        let mut w = tiny_llama();
        let kv =
            w.kv.iter_mut()
                .find(|(k, _)| k == "tokenizer.ggml.pre")
                .unwrap();
        kv.1 = M::Str(pre);
        GgufFile::open(&write(&dir, name, &w.bytes())).unwrap()
    };
    let g = with_pre("no-such-pre", "unknown.gguf");
    let why = TextTokenizer::gguf_unsupported(&g).unwrap();
    assert!(why.contains("tokenizer.ggml.pre `no-such-pre`"), "{why}");
    let e = TextTokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(
        e.contains("no-such-pre") && e.contains("tokenizer.json"),
        "{e}"
    );
    for pre in [
        "lfm2",
        "pixtral",
        "falcon-h1",
        "midm-2.0",
        "llama-bpe",
        "qwen2",
        "megrez",
        "starcoder",
        "minerva-7b",
        "dbrx",
        "glm4",
        "exaone4",
    ] {
        let g = with_pre(pre, "known.gguf");
        assert_eq!(TextTokenizer::gguf_unsupported(&g), None, "{pre}");
        let tok = TextTokenizer::from_gguf(&g).unwrap();
        assert_eq!(tok.encode("ab").unwrap(), [5], "{pre}");
    }
    let mut w = tiny_llama();
    w.kv.push((
        "tokenizer.chat_template.tool_use".into(),
        M::Str("T{{ tools | length }}"),
    ));
    w.kv.push(("tokenizer.ggml.add_eos_token".into(), M::Bool(true)));
    let g = GgufFile::open(&write(&dir, "tool_use.gguf", &w.bytes())).unwrap();
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    // add_eos: llama.cpp appends EOS (id 1) to a raw prompt.
    assert_eq!(tok.encode_prompt("ab", false).unwrap().0, [5, 1]);
    let req = |tools| ChatRequest {
        messages: vec![ChatMessage::new("user", "ab")],
        tools,
        ..Default::default()
    };
    let tools = Some(serde_json::json!([{"type": "function"}]));
    assert_eq!(tok.render_chat_request(&req(tools)).unwrap(), "T1");
    assert_eq!(tok.render_chat_request(&req(None)).unwrap(), "<|user|>ab");
    // A tokenizer.json without templates beside the GGUF takes both of the GGUF's.
    if let Some(json) = fixture("compat/templates/tokenizer.json") {
        let beside = dir.join("tokenizer.json");
        std::fs::copy(json, &beside).unwrap();
        let mut tok = TextTokenizer::from_file(&beside).unwrap();
        assert_eq!(tok.chat_template(), None);
        tok.adopt_gguf(&g);
        let tools = Some(serde_json::json!([]));
        assert_eq!(tok.render_chat_request(&req(tools)).unwrap(), "T0");
        assert_eq!(tok.render_chat_request(&req(None)).unwrap(), "<|user|>ab");
    }
    let _ = std::fs::remove_dir_all(dir);
}

//! The op-parity table: every op on odd shapes, mixtures with mixed ranks, GQA, decode and
//! prefill steps, several KV slots; each case with a printable id, a seed and an NMSE bound.

use dlp_engine::{AttnShape, NO_ADAPTER};

/// NMSE bound for elementwise ops (embedding, rms_norm, rope, silu_mul, add).
pub const ELEMENTWISE_TOL: f64 = 1e-7;
/// NMSE bound for reductions (matmul, attention, LoRA, logits).
pub const REDUCTION_TOL: f64 = 5e-5;

/// What a case runs, with its shapes.
#[derive(Debug, Clone)]
pub enum Op {
    /// `embedding` of `tokens` ids from a `[vocab, dim]` table.
    Embedding {
        vocab: usize,
        dim: usize,
        tokens: usize,
    },
    /// `rms_norm` over `rows` x `dim`.
    RmsNorm { rows: usize, dim: usize },
    /// `add_rms_norm` (the residual add and the RMSNorm after it) over `rows` x `dim`.
    AddRmsNorm { rows: usize, dim: usize },
    /// `matmul` `[rows, k] @ [n, k]^T`.
    Matmul {
        rows: usize,
        k: usize,
        n: usize,
        bias: bool,
    },
    /// `rope` at the given positions; with `kv_heads`, `rope_qk` on `heads` query heads and
    /// that many key heads.
    Rope {
        heads: usize,
        kv_heads: Option<usize>,
        head_dim: usize,
        positions: Vec<u32>,
    },
    /// `attention`: token `t` at `(kv_slots[t], positions[t])`; the caches start random (the
    /// earlier positions) and are compared after the call as well.
    Attention {
        shape: AttnShape,
        slots: usize,
        kv_slots: Vec<u32>,
        positions: Vec<u32>,
    },
    /// `silu_mul` of `n` values.
    SiluMul { n: usize },
    /// `add` of `n` values.
    Add { n: usize },
    /// `lora_shrink` (`expand: false`) or `lora_expand` over a mixture.
    Lora { mix: Mixture, expand: bool },
    /// `linears`: `rows` x `[rows, k]` through one weight `[n, k]` per entry of `ns` (q/k/v,
    /// gate/up), each with a bias when `bias`, and with `mix` (its `in_dim` = `k`, its
    /// `out_dim` ignored: each job's stack is `[n]` wide) fused when given.
    Linears {
        rows: usize,
        k: usize,
        ns: Vec<usize>,
        bias: bool,
        mix: Option<Mixture>,
    },
    /// `logits` of `rows` of a `[tokens, hidden]` x against a `[vocab, hidden]` head.
    Logits {
        hidden: usize,
        vocab: usize,
        tokens: usize,
        rows: Vec<u32>,
    },
}

/// A LoRA case: slot ranks (0: the slot does not target the module), the token -> segment map
/// and `K` (slot, weight) entries per segment.
#[derive(Debug, Clone)]
pub struct Mixture {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Rank of each slot.
    pub ranks: Vec<u32>,
    /// Segment of each token.
    pub segment_of_token: Vec<u32>,
    /// Entries per segment.
    pub k: usize,
    /// `S * K` slots ([`NO_ADAPTER`] for unused entries).
    pub slots: Vec<u32>,
}

/// One row of the parity table.
#[derive(Debug, Clone)]
pub struct ParityCase {
    /// Printable id, e.g. `matmul(rows=5,k=7,n=11,bias)`.
    pub id: String,
    /// What to run.
    pub op: Op,
    /// NMSE bound.
    pub tol: f64,
    /// RNG seed of the inputs.
    pub seed: u64,
    /// Weights (`upload_weight`'s tensors) drawn as f16 values, for f16-weight backends.
    pub f16_weights: bool,
    /// Weights drawn as bf16 values, for bf16-weight backends.
    pub bf16_weights: bool,
    /// LoRA A and B drawn as bf16 values, for `--cuda-lora-bf16`.
    pub bf16_lora: bool,
    /// The KV cache's earlier positions drawn as bf16 values, for `--cuda-kv-bf16` (the
    /// step's keys and values stay f32: the reference rounds them as the store does).
    pub bf16_kv: bool,
}

fn case(id: String, op: Op, tol: f64) -> ParityCase {
    // The seed comes from the id so that adding a case does not change the others' inputs.
    let seed = id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    ParityCase {
        id,
        op,
        tol,
        seed,
        f16_weights: false,
        bf16_weights: false,
        bf16_lora: false,
        bf16_kv: false,
    }
}

/// The printable id of a matmul case.
fn matmul_id(rows: usize, k: usize, n: usize, bias: bool) -> String {
    let b = if bias { ",bias" } else { "" };
    format!("matmul(rows={rows},k={k},n={n}{b})")
}

fn attn(
    heads: usize,
    kv: usize,
    hd: usize,
    cap: usize,
    slots: usize,
    at: &[(u32, u32)],
) -> ParityCase {
    attn_window(heads, kv, hd, cap, slots, at, 0)
}

/// An attention case with a sliding window (0: none).
fn attn_window(
    heads: usize,
    kv: usize,
    hd: usize,
    cap: usize,
    slots: usize,
    at: &[(u32, u32)],
    window: usize,
) -> ParityCase {
    let shape = AttnShape {
        n_tokens: at.len(),
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: hd,
        capacity: cap,
        window,
    };
    let w = if window > 0 {
        format!(",window={window}")
    } else {
        String::new()
    };
    let id = format!("attention(tokens={},heads={heads},kv_heads={kv},head_dim={hd},cap={cap},slots={slots},at={at:?}{w})", at.len());
    let op = Op::Attention {
        shape,
        slots,
        kv_slots: at.iter().map(|a| a.0).collect(),
        positions: at.iter().map(|a| a.1).collect(),
    };
    case(id, op, REDUCTION_TOL)
}

fn lora(
    in_dim: usize,
    out_dim: usize,
    ranks: &[u32],
    seg: &[u32],
    k: usize,
    slots: &[u32],
) -> Vec<ParityCase> {
    let mix = Mixture {
        in_dim,
        out_dim,
        ranks: ranks.to_vec(),
        segment_of_token: seg.to_vec(),
        k,
        slots: slots.to_vec(),
    };
    let slots_s: Vec<String> = slots
        .iter()
        .map(|&s| {
            if s == NO_ADAPTER {
                "-".into()
            } else {
                s.to_string()
            }
        })
        .collect();
    [false, true]
        .into_iter()
        .map(|expand| {
            let id = format!(
                "lora_{}(tokens={},in={in_dim},out={out_dim},ranks={ranks:?},k={k},segments={},mix=[{}])",
                if expand { "expand" } else { "shrink" },
                seg.len(),
                slots.len() / k,
                slots_s.join(",")
            );
            case(id, Op::Lora { mix: mix.clone(), expand }, REDUCTION_TOL)
        })
        .collect()
}

/// Every case of the table.
pub fn cases() -> Vec<ParityCase> {
    let e = ELEMENTWISE_TOL;
    let r = REDUCTION_TOL;
    let mut v = Vec::new();
    for (vocab, dim, tokens) in [(37, 19, 5), (300, 64, 1), (1000, 7, 33)] {
        let id = format!("embedding(vocab={vocab},dim={dim},tokens={tokens})");
        v.push(case(id, Op::Embedding { vocab, dim, tokens }, e));
    }
    for (rows, dim) in [(5, 19), (1, 576), (3, 1000), (70, 64)] {
        v.push(case(
            format!("rms_norm(rows={rows},dim={dim})"),
            Op::RmsNorm { rows, dim },
            e,
        ));
    }
    for (rows, dim) in [(5, 19), (1, 4096), (3, 1000), (70, 64)] {
        v.push(case(
            format!("add_rms_norm(rows={rows},dim={dim})"),
            Op::AddRmsNorm { rows, dim },
            e,
        ));
    }
    for (rows, k, n, bias) in [
        (1, 7, 11, false),
        (3, 64, 33, true),
        (4, 300, 9, false),
        (5, 7, 11, true),
        (5, 7, 11, false),
        (16, 33, 65, false),
        (17, 64, 130, true),
        (67, 129, 70, false),
        (130, 576, 200, true),
    ] {
        let id = matmul_id(rows, k, n, bias);
        v.push(case(id, Op::Matmul { rows, k, n, bias }, r));
    }
    for (heads, kv_heads, head_dim, positions) in [
        (3, None, 8, vec![0, 3, 7, 2, 9]),
        (9, None, 64, vec![41]),
        (2, None, 6, vec![5, 6, 7]),
        (3, Some(1), 8, vec![0, 3, 7, 2, 9]),
        (9, Some(3), 64, vec![41, 0]),
        (32, Some(8), 128, vec![4000]),
    ] {
        let (name, kv) = match kv_heads {
            Some(k) => ("rope_qk", format!(",kv_heads={k}")),
            None => ("rope", String::new()),
        };
        let id = format!("{name}(heads={heads}{kv},head_dim={head_dim},positions={positions:?})");
        v.push(case(
            id,
            Op::Rope {
                heads,
                kv_heads,
                head_dim,
                positions,
            },
            e,
        ));
    }
    // Decode in two slots, GQA 4/2.
    v.push(attn(4, 2, 16, 80, 2, &[(0, 5), (1, 70)]));
    // Prefill from position 0, GQA 3/1, chunk longer than the shader's 64-position block.
    let prefill: Vec<(u32, u32)> = (0..70).map(|p| (1, p)).collect();
    v.push(attn(3, 1, 64, 96, 2, &prefill));
    // Mixed prefill continuation + decode across three slots, SmolLM2's 9/3 heads.
    v.push(attn(
        9,
        3,
        64,
        200,
        3,
        &[(0, 3), (0, 4), (0, 5), (2, 130), (1, 0)],
    ));
    // Plain MHA, wide heads, odd width.
    v.push(attn(2, 2, 128, 10, 1, &[(0, 9)]));
    v.push(attn(2, 1, 7, 8, 1, &[(0, 0), (0, 1), (0, 2)]));
    // Sliding windows: inside, at and past the context; decode and a prefill chunk.
    v.push(attn_window(4, 2, 16, 80, 2, &[(0, 5), (1, 70)], 6));
    v.push(attn_window(3, 1, 64, 96, 2, &prefill, 5));
    v.push(attn_window(2, 2, 128, 300, 1, &[(0, 299)], 256));
    v.push(attn_window(2, 1, 8, 8, 1, &[(0, 0), (0, 1), (0, 2)], 1));
    for n in [5, 1001, 70000] {
        v.push(case(format!("silu_mul(n={n})"), Op::SiluMul { n }, e));
        v.push(case(format!("add(n={n})"), Op::Add { n }, e));
    }
    const NA: u32 = NO_ADAPTER;
    // Mixed ranks, slot 1 does not target the module, three segments of K=3 with unused entries.
    v.extend(lora(
        19,
        23,
        &[4, 0, 8, 3],
        &[0, 0, 1, 1, 1, 2, 0],
        3,
        &[0, 2, NA, 1, 3, 2, NA, NA, NA],
    ));
    // One decode token, K=2.
    v.extend(lora(64, 64, &[16, 2], &[0], 2, &[1, 0]));
    // Prefill of several sequences, ranks 1..5, K=4 per segment.
    let seg: Vec<u32> = (0..37).map(|t| t / 10).collect();
    v.extend(lora(
        96,
        40,
        &[1, 5, 3, 0, 2],
        &seg,
        4,
        &[0, 1, 2, 3, 4, 4, NA, 1, 2, NA, NA, 0, 3, 3, 3, 3],
    ));
    for (hidden, vocab, tokens, rows) in [
        (19, 37, 5, vec![4, 0, 2]),
        (64, 300, 3, vec![2]),
        (576, 1000, 6, vec![0, 1, 2, 3, 4, 5]),
    ] {
        let id = format!("logits(hidden={hidden},vocab={vocab},tokens={tokens},rows={rows:?})");
        v.push(case(
            id,
            Op::Logits {
                hidden,
                vocab,
                tokens,
                rows,
            },
            r,
        ));
    }
    v
}

/// The f16-weight cases: matmul (gemv and both tiled variants, odd K so rows of f16 straddle
/// 4-byte words, odd sizes so buffers need padding), logits and embedding, weights drawn as f16.
pub fn f16_weight_cases() -> Vec<ParityCase> {
    let f16 = |id: String, op: Op, tol: f64| ParityCase {
        f16_weights: true,
        ..case(format!("f16w {id}"), op, tol)
    };
    let mut v = Vec::new();
    for (vocab, dim, tokens) in [(37, 19, 5), (1001, 7, 33)] {
        let id = format!("embedding(vocab={vocab},dim={dim},tokens={tokens})");
        v.push(f16(
            id,
            Op::Embedding { vocab, dim, tokens },
            ELEMENTWISE_TOL,
        ));
    }
    for (rows, k, n, bias) in [
        (1, 7, 11, false),
        (4, 301, 9, true),
        (5, 7, 11, true),
        (17, 65, 131, false),
        (67, 129, 70, true),
    ] {
        let id = matmul_id(rows, k, n, bias);
        v.push(f16(id, Op::Matmul { rows, k, n, bias }, REDUCTION_TOL));
    }
    for (hidden, vocab, tokens, rows) in [
        (19, 37, 5, vec![4, 0, 2]),
        (64, 301, 3, vec![2]),
        (576, 1001, 6, vec![0, 1, 2, 3, 4, 5]),
    ] {
        let id = format!("logits(hidden={hidden},vocab={vocab},tokens={tokens},rows={rows:?})");
        let op = Op::Logits {
            hidden,
            vocab,
            tokens,
            rows,
        };
        v.push(f16(id, op, REDUCTION_TOL));
    }
    v
}

/// [`f16_weight_cases`] with the weights drawn as bf16 values instead, for a backend that
/// stores weights as bf16 (CUDA's `bf16_weights`): both sides compute on the same values, so
/// the f32 bounds hold.
pub fn bf16_weight_cases() -> Vec<ParityCase> {
    f16_weight_cases()
        .into_iter()
        .map(|c| ParityCase {
            id: c.id.replacen("f16w", "bf16w", 1),
            f16_weights: false,
            bf16_weights: true,
            ..c
        })
        .collect()
}

/// The decode matvec's shapes on bf16 weights (`--cuda-experimental decode-matvec`): every row
/// bucket (1, 2, 3-4, 5-8 rows), widths that are multiples of 8 (its 16-byte loads), odd
/// output counts, with and without bias; q/k/v and gate/up as one launch (`linears`), with
/// and without a fused LoRA mixture; the lm_head. Both sides compute on the same bf16 values.
pub fn decode_matvec_cases() -> Vec<ParityCase> {
    let r = REDUCTION_TOL;
    let bf16 = |id: String, op: Op| ParityCase {
        bf16_weights: true,
        ..case(format!("bf16w {id}"), op, r)
    };
    let mut v = Vec::new();
    for (rows, k, n, bias) in [
        (1, 8, 1, false),
        (1, 576, 1001, true),
        (2, 64, 33, false),
        (3, 1536, 577, true),
        (4, 256, 9, false),
        (5, 64, 130, true),
        (8, 4096, 257, false),
    ] {
        v.push(bf16(
            matmul_id(rows, k, n, bias),
            Op::Matmul { rows, k, n, bias },
        ));
    }
    const NA: u32 = NO_ADAPTER;
    for (rows, k, ns, bias, lora) in [
        (1, 576, vec![576, 192, 192], false, false),
        (2, 64, vec![40, 24, 24], true, true),
        (6, 128, vec![344, 344], false, true),
        (8, 256, vec![72, 8, 8], true, false),
    ] {
        let mix = lora.then(|| Mixture {
            in_dim: k,
            out_dim: 0,
            ranks: vec![4, 0, 8],
            segment_of_token: (0..rows as u32).map(|t| t % 2).collect(),
            k: 2,
            slots: vec![0, 2, 2, NA],
        });
        let id = format!(
            "linears(rows={rows},k={k},ns={ns:?}{}{})",
            if bias { ",bias" } else { "" },
            if lora { ",lora" } else { "" }
        );
        let op = Op::Linears {
            rows,
            k,
            ns,
            bias,
            mix,
        };
        v.push(bf16(id, op));
    }
    for (hidden, vocab, tokens, rows) in [(576, 1001, 3, vec![2]), (64, 300, 8, vec![7, 0, 5])] {
        let id = format!("logits(hidden={hidden},vocab={vocab},tokens={tokens},rows={rows:?})");
        let op = Op::Logits {
            hidden,
            vocab,
            tokens,
            rows,
        };
        v.push(bf16(id, op));
    }
    v
}

/// The attention cases for `--cuda-experimental split-attention` (flash-decoding): every
/// attention case of the table (capacities 8 to 300: 1 to 16 splits, windows, prefill of a
/// few tokens) and long contexts (up to 4,001 positions in 16 splits, GQA, a batch at mixed
/// positions, a window inside a long cache).
pub fn split_attention_cases() -> Vec<ParityCase> {
    let mut v: Vec<ParityCase> = cases()
        .into_iter()
        .filter(|c| matches!(c.op, Op::Attention { .. }))
        .collect();
    v.push(attn(8, 2, 128, 4096, 1, &[(0, 4000)]));
    v.push(attn(4, 4, 64, 2048, 3, &[(0, 2047), (1, 5), (2, 1000)]));
    v.push(attn_window(4, 2, 64, 1024, 1, &[(0, 1000)], 300));
    v
}

/// The LoRA cases for `--cuda-lora-bf16`: every `lora_shrink`/`lora_expand` case of the table
/// and the decode-matvec `linears` cases with LoRA (for `fused-lora`), with A and B drawn as
/// bf16 values so that both sides compute on the same numbers.
pub fn bf16_lora_cases() -> Vec<ParityCase> {
    cases()
        .into_iter()
        .chain(decode_matvec_cases())
        .filter(|c| match &c.op {
            Op::Lora { .. } => true,
            Op::Linears { mix, .. } => mix.is_some(),
            _ => false,
        })
        .map(|c| ParityCase {
            id: format!("bf16 LoRA {}", c.id),
            bf16_lora: true,
            ..c
        })
        .collect()
}

/// The LoRA cases for `--cuda-experimental sgmv` (tiles of 16 tokens, each adapter a tile uses
/// one TF32 GEMM): every `lora_shrink`/`lora_expand` case of the table, and steps shaped for
/// the tiles: a batch of 37 tokens with a mixture each (three tiles, the last partial) over
/// mixed ranks, a prefill of two sentences, a tile with no adapter at all, the largest `K` the
/// kernels take (16) and one past it, a mixture naming one adapter twice, a single decode
/// token, and a stack too wide for the expand's shared memory (the segment kernels then run).
/// Widths are off the mma's multiples of 8 and the expand's 64 columns; input widths take
/// the shrink's 16-byte path whole (4096), with a tail (100 in f32, 136), or not at all.
pub fn sgmv_cases() -> Vec<ParityCase> {
    const NA: u32 = NO_ADAPTER;
    let mut v: Vec<ParityCase> = cases()
        .into_iter()
        .filter(|c| matches!(c.op, Op::Lora { .. }))
        .collect();
    // A pseudo-random mixture of `k` distinct slots out of `n`, some entries unused.
    let mixture = |s: u32, k: usize, n: u32| -> Vec<u32> {
        let mut m: Vec<u32> = Vec::new();
        for i in 0..k as u32 {
            let slot = (s * 7 + i * 3 + s * s) % n;
            m.push(if (s + i) % 5 == 4 || m.contains(&slot) {
                NA
            } else {
                slot
            });
        }
        m
    };
    let ranks = [8, 0, 16, 4, 8, 1, 3, 8, 2, 5];
    let batch: Vec<u32> = (0..37).flat_map(|s| mixture(s, 3, 10)).collect();
    v.extend(lora(
        70,
        100,
        &ranks,
        &(0..37).collect::<Vec<_>>(),
        3,
        &batch,
    ));
    // Two sentences of a prefill: 30 and 20 tokens, each one mixture.
    let seg: Vec<u32> = (0..50).map(|t| u32::from(t >= 30)).collect();
    v.extend(lora(136, 130, &[8, 8, 4], &seg, 2, &[0, 2, 1, NA]));
    // Tokens 16..32 use no adapter (their tile's union is empty); the rest use slot 1.
    let seg: Vec<u32> = (0..40).map(|t| u32::from((16..32).contains(&t))).collect();
    v.extend(lora(100, 17, &[0, 6], &seg, 1, &[1, NA]));
    // K = 16, the most the kernels take, over 20 adapters; and K = 17 (segment kernels).
    for k in [16, 17] {
        let mix: Vec<u32> = (0..5).flat_map(|s| mixture(s, k, 20)).collect();
        let seg: Vec<u32> = (0..19).map(|t| t % 5).collect();
        v.extend(lora(33, 65, &[2; 20], &seg, k, &mix));
    }
    // One adapter named twice in a mixture (each entry applies, as on the CPU).
    v.extend(lora(16, 16, &[4, 4], &[0, 0, 1], 3, &[1, 1, 0, 0, NA, 1]));
    // One decode token.
    v.extend(lora(4096, 64, &[8, 8, 8], &[0], 3, &[2, 0, 1]));
    // 40 adapters of rank 64, two per token: a union bound of 2,048 columns, too wide for the
    // expand's shared memory.
    let mix: Vec<u32> = (0..20).flat_map(|s| [s, s + 20]).collect();
    v.extend(lora(
        16,
        24,
        &[64; 40],
        &(0..20).collect::<Vec<_>>(),
        2,
        &mix,
    ));
    v
}

/// The attention cases for `--cuda-experimental fused-kv-store`, held to bound 0 against the
/// unfused backend: every case of [`split_attention_cases`], decode steps (each token alone in
/// its slot: the fused kernels) and prefills (several tokens in one slot: `kv_store` as before).
pub fn fused_kv_store_cases() -> Vec<ParityCase> {
    let mut v = split_attention_cases();
    // A batch of slots out of order, one at position 0 (only its own key), GQA; and a window
    // of 1 (each token attends to its own key alone, the one the fused kernel reads fresh).
    v.push(attn(
        8,
        2,
        64,
        512,
        4,
        &[(3, 0), (0, 511), (2, 100), (1, 7)],
    ));
    v.push(attn_window(4, 4, 32, 64, 2, &[(1, 40), (0, 3)], 1));
    // Wide heads (every lane's 8 elements in use; head_dim 200 leaves some idle), odd heads
    // (a bf16 cache's words then hold halves of two writers' rows).
    v.push(attn(4, 2, 256, 80, 2, &[(0, 5), (1, 79)]));
    v.push(attn(2, 2, 200, 40, 1, &[(0, 39)]));
    v.push(attn(2, 1, 7, 9, 1, &[(0, 8)]));
    v.push(attn(4, 2, 7, 9, 2, &[(0, 8), (1, 0)]));
    // More tokens than split attention takes (64): one per slot, unsplit.
    let many: Vec<(u32, u32)> = (0..65).map(|i| (i, i % 8)).collect();
    v.push(attn(2, 1, 16, 8, 65, &many));
    v.into_iter()
        .map(|c| ParityCase { tol: 0.0, ..c })
        .collect()
}

/// The attention cases for `--cuda-kv-bf16`: every attention case of the table, the long
/// contexts of [`split_attention_cases`] and a cache of an odd number of values, with the caches' earlier positions drawn as bf16
/// values; run against the CPU with keys and values rounded as they are stored
/// (`CpuProbe::bf16_kv`), so the caches must match exactly where written.
pub fn bf16_kv_cases() -> Vec<ParityCase> {
    let mut v = split_attention_cases();
    // An odd number of cache values (1 x 9 x 7): the last packed word holds one.
    v.push(attn(2, 1, 7, 9, 1, &[(0, 8), (0, 3)]));
    v.into_iter()
        .map(|c| ParityCase {
            id: format!("bf16 KV {}", c.id),
            bf16_kv: true,
            ..c
        })
        .collect()
}

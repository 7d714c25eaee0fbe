//! The op-parity table: every op on odd shapes, mixtures with mixed ranks, GQA, decode and
//! prefill steps, several KV slots; each case with a printable id, a seed and an NMSE bound.

use dlp_engine::backend::ResidualSite;
use dlp_engine::tensor::PackedKind;
use dlp_engine::{AttnShape, NO_ADAPTER};

/// NMSE bound for elementwise ops (embedding, rms_norm, center, add_bias, rope, silu_mul, gelu_mul, gelu, gelu_erf,
/// relu_sq, xielu, scale, softcap, add).
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
    /// `rms_norm` over `rows` x `dim`, its weight `[w_rows, dim]` (row `r` takes weight row
    /// `r % w_rows`: a weight per head where `w_rows` > 1).
    RmsNorm {
        rows: usize,
        dim: usize,
        w_rows: usize,
    },
    /// `add_rms_norm` (the residual add and the RMSNorm after it) over `rows` x `dim`.
    AddRmsNorm { rows: usize, dim: usize },
    /// `center` over `rows` x `dim` in place (rows far from zero on average).
    Center { rows: usize, dim: usize },
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
    /// earlier positions) and are compared after the call as well. With `rope`,
    /// `rope_attention` on a random rope table instead (q and k rotated first; they are not
    /// compared after the call).
    Attention {
        shape: AttnShape,
        slots: usize,
        kv_slots: Vec<u32>,
        positions: Vec<u32>,
        rope: bool,
    },
    /// `silu_mul` of `n` values.
    SiluMul { n: usize },
    /// `gelu_mul` of `n` values.
    GeluMul { n: usize },
    /// `gelu` (ungated) of `n` values.
    Gelu { n: usize },
    /// `gelu_erf` (the exact GELU) of `n` values.
    GeluErf { n: usize },
    /// `relu_sq` (the squared ReLU) of `n` values.
    ReluSq { n: usize },
    /// `xielu` of `n` values spread to +-`spread`, with `eps` as the negative side's clamp.
    Xielu { n: usize, spread: f32, eps: f32 },
    /// `add_bias` of a `[dim]` bias to `rows` x `dim` in place.
    AddBias { rows: usize, dim: usize },
    /// `scale` of `n` values in place.
    Scale { n: usize },
    /// `softcap` of `n` values (to +-20) in place, by `cap`: 3 saturates some of them; a large
    /// one leaves them nearly as they are, which only a tanh accurate relative to its value
    /// near 0 gives.
    Softcap { n: usize, cap: f32 },
    /// `clamp` of `n` values (to +-3) in place to +-1.5: about half of them past a limit, the
    /// first four the limits themselves and the infinities.
    Clamp { n: usize },
    /// `add` of `n` values.
    Add { n: usize },
    /// `lora_shrink` (`expand: false`) or `lora_expand` over a mixture.
    Lora { mix: Mixture, expand: bool },
    /// `linears`: `rows` x `[rows, k]` through one weight `[n, k]` per entry of `ns` (q/k/v,
    /// gate/up), each with a bias when `bias`, and with `mix` (its `in_dim` = `k`, its
    /// `out_dim` ignored: each job's stack is `[n]` wide) fused when given, except on the jobs
    /// listed in `bare` (no stack: an adapter that targets q and v but not k). With `silu`
    /// (`ns`: a gate/up pair of one width), `linears_silu_mul` instead: only its
    /// silu(gate) * up output is compared. With `norm` (`ns`: one module),
    /// `linear_add_rms_norm` at that site instead, on a random residual and norm weight: the
    /// product, the updated residual and the normed rows are compared.
    Linears {
        rows: usize,
        k: usize,
        ns: Vec<usize>,
        bias: bool,
        mix: Option<Mixture>,
        bare: Vec<usize>,
        silu: bool,
        norm: Option<ResidualSite>,
    },
    /// `logits` of `rows` of a `[tokens, hidden]` x against a `[vocab, hidden]` head.
    Logits {
        hidden: usize,
        vocab: usize,
        tokens: usize,
        rows: Vec<u32>,
    },
    /// `argmax` of `rows` logit rows of `vocab`, the rows cycling through the greedy rule's
    /// edges (ties, +inf beside f32::MAX, NaN of either sign, all -inf, -0.0 before +0.0, many
    /// ties, subnormals); exact.
    Argmax { rows: usize, vocab: usize },
    /// `sample` of `rows` logit rows of `vocab`, each at its own temperature and uniform draw
    /// (`StepPlan::pick_args`), the rows cycling through the draw's edges (peaked and flat
    /// rows, temperature 0 and tiny or huge ones, draws at 0 and just below 1, refused rows,
    /// infinities); exact: a pick is right or wrong. Not in [`cases`]: backends without f64
    /// (WGSL) report it unsupported; see [`sample_cases`].
    Sample { rows: usize, vocab: usize },
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
    /// Weights drawn as random blocks of this kind (a GGUF's packed tensors, as the loader
    /// hands them to backends that keep them packed); the reference computes on the same.
    pub quant: Option<PackedKind>,
}

pub(super) fn case(id: String, op: Op, tol: f64) -> ParityCase {
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
        quant: None,
    }
}

/// The printable id of a matmul case.
pub(super) fn matmul_id(rows: usize, k: usize, n: usize, bias: bool) -> String {
    let b = if bias { ",bias" } else { "" };
    format!("matmul(rows={rows},k={k},n={n}{b})")
}

pub(super) fn attn(
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
pub(super) fn attn_window(
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
        scale: AttnShape::head_scale(hd),
        softcap: 0.0,
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
        rope: false,
    };
    case(id, op, REDUCTION_TOL)
}

/// Attention case `c` with Gemma's or Granite's scores: `q.k * scale`, soft-capped by
/// `softcap` where it is > 0 (in place of `head_dim^-0.5`, no cap).
pub(super) fn scored(mut c: ParityCase, scale: f32, softcap: f32) -> ParityCase {
    if let Op::Attention { shape, .. } = &mut c.op {
        (shape.scale, shape.softcap) = (scale, softcap);
        c.id.pop();
        c.id.push_str(&format!(",scale={scale},softcap={softcap})"));
    }
    c
}

pub(super) fn lora(
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
            Op::RmsNorm {
                rows,
                dim,
                w_rows: 1,
            },
            e,
        ));
    }
    // A weight per head (StableLM 2 12B's, Command R+'s query/key norms): 6 tokens x 4 heads of
    // 16, one token's 12 heads of 128.
    for (rows, dim, w_rows) in [(24, 16, 4), (12, 128, 12)] {
        v.push(case(
            format!("rms_norm(rows={rows},dim={dim},w_rows={w_rows})"),
            Op::RmsNorm { rows, dim, w_rows },
            e,
        ));
    }
    for (rows, dim) in [(5, 19), (1, 4096), (3, 1000), (70, 64)] {
        v.push(case(
            format!("center(rows={rows},dim={dim})"),
            Op::Center { rows, dim },
            e,
        ));
    }
    for (rows, dim) in [(5, 19), (1, 4096), (70, 64)] {
        let id = format!("add_bias(rows={rows},dim={dim})");
        v.push(case(id, Op::AddBias { rows, dim }, e));
    }
    // 8,200: past what a block of 1,024 threads keeps in registers on CUDA (8 values each).
    for (rows, dim) in [(5, 19), (1, 4096), (3, 1000), (70, 64), (2, 8200)] {
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
        (2, 40, 70, false),
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
    // Gemma 2's scores (a scale of their own, soft-capped low enough to bite): decode in two
    // slots, a windowed prefill chunk, head_dim 256.
    let two = [(0, 5), (1, 70)];
    v.push(scored(attn(4, 2, 16, 80, 2, &two), 0.25, 1.5));
    v.push(scored(attn_window(3, 1, 64, 96, 2, &prefill, 5), 0.25, 1.5));
    v.push(scored(attn(2, 1, 256, 40, 1, &[(0, 39)]), 0.0625, 2.0));
    // Granite's scale (an attention multiplier, no cap), which every CUDA path must take.
    v.push(scored(attn(4, 2, 16, 80, 2, &two), 0.09, 0.0));
    // A cap so large it barely bites: the scores as they are, to the tanh's relative accuracy.
    v.push(scored(attn(4, 2, 16, 80, 2, &two), 0.25, 1e5));
    for n in [5, 1001, 70000] {
        v.push(case(format!("silu_mul(n={n})"), Op::SiluMul { n }, e));
        v.push(case(format!("add(n={n})"), Op::Add { n }, e));
        v.push(case(format!("gelu_mul(n={n})"), Op::GeluMul { n }, e));
        v.push(case(format!("gelu(n={n})"), Op::Gelu { n }, e));
        // Tighter than the others: the tanh form is within 3e-9 of it on these inputs, so a
        // kernel computing that instead must fail (erf's own error is about 1e-14 here).
        v.push(case(format!("gelu_erf(n={n})"), Op::GeluErf { n }, 1e-11));
        // One rounding of one product, as the CPU's: equal but for a fused neighbour.
        v.push(case(format!("relu_sq(n={n})"), Op::ReluSq { n }, 1e-14));
        // Near 0 (spread 1e-3) with Apertus's eps the negative side is beta * x plus
        // expm1(x) - x = x^2 / 2: an expm1 taken as exp(x) - 1 misses that by 1e-4 of the
        // output there, and fails the bound; eps -0.25 clamps a band of inputs.
        for (spread, eps) in [(1e-3, -1e-6), (4.0, -1e-6), (4.0, -0.25)] {
            let id = format!("xielu(n={n},spread={spread},eps={eps})");
            v.push(case(id, Op::Xielu { n, spread, eps }, 1e-10));
        }
        v.push(case(format!("scale(n={n})"), Op::Scale { n }, e));
        for cap in [3.0, 1e6] {
            let id = format!("softcap(n={n},cap={cap})");
            v.push(case(id, Op::Softcap { n, cap }, e));
        }
        // Comparisons only: equal to the bit (an NMSE of 0), so any rounding fails.
        v.push(case(format!("clamp(n={n})"), Op::Clamp { n }, 0.0));
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
    // Odd widths (one value a load) and multiples of 4 (16-byte loads on CUDA), up to Llama
    // 3's vocabulary; bound 0: a pick is right or wrong.
    for (rows, vocab) in [(10, 37), (10, 1001), (10, 32000), (3, 128256)] {
        let id = format!("argmax(rows={rows},vocab={vocab})");
        v.push(case(id, Op::Argmax { rows, vocab }, 0.0));
    }
    v
}

/// The `sample` cases ([`Op::Sample`]), for backends that have the op (the CPU; CUDA, whose
/// steps use it with `--cuda-experimental device-sampling`); odd widths, a partial block of
/// the draw's f64 sums (50,003) and Llama 3's vocabulary.
pub fn sample_cases() -> Vec<ParityCase> {
    [(16, 37), (16, 1001), (16, 32000), (9, 50_003), (9, 128_256)]
        .into_iter()
        .map(|(rows, vocab)| {
            let id = format!("sample(rows={rows},vocab={vocab})");
            case(id, Op::Sample { rows, vocab }, 0.0)
        })
        .collect()
}

/// Embedding, matmul and logits cases of these shapes (`(vocab, dim, tokens)`,
/// `(rows, k, n, bias)`, `(hidden, vocab, tokens, rows)`), each made by `make(id, op, tol)`:
/// the ops that read `upload_weight`'s tensors, for a weight-storage option's case set.
pub(super) fn weight_cases(
    embeddings: &[(usize, usize, usize)],
    matmuls: &[(usize, usize, usize, bool)],
    logits: &[(usize, usize, usize, &[u32])],
    make: impl Fn(String, Op, f64) -> ParityCase,
) -> Vec<ParityCase> {
    let mut v = Vec::new();
    for &(vocab, dim, tokens) in embeddings {
        let id = format!("embedding(vocab={vocab},dim={dim},tokens={tokens})");
        v.push(make(
            id,
            Op::Embedding { vocab, dim, tokens },
            ELEMENTWISE_TOL,
        ));
    }
    for &(rows, k, n, bias) in matmuls {
        let id = matmul_id(rows, k, n, bias);
        v.push(make(id, Op::Matmul { rows, k, n, bias }, REDUCTION_TOL));
    }
    for &(hidden, vocab, tokens, rows) in logits {
        let id = format!("logits(hidden={hidden},vocab={vocab},tokens={tokens},rows={rows:?})");
        let rows = rows.to_vec();
        let op = Op::Logits {
            hidden,
            vocab,
            tokens,
            rows,
        };
        v.push(make(id, op, REDUCTION_TOL));
    }
    v
}

/// The packed-weight cases (a GGUF's tensors as the loader hands them to a backend that
/// keeps them packed), for each kind, the block-quantised ones and F16/BF16: matmul (gemv at 1
/// and 4 rows, both tiled variants, with and without bias), the embedding lookup and logits,
/// weights drawn as random blocks of the kind (K a multiple of 256, so every kind's blocks
/// fit).
pub fn packed_weight_cases() -> Vec<ParityCase> {
    PackedKind::ALL
        .into_iter()
        .flat_map(|kind| {
            let matmuls = [
                (1, 256, 11, false),
                (4, 512, 9, true),
                (5, 256, 70, true),
                (33, 256, 67, false),
            ];
            let logits: [(usize, usize, usize, &[u32]); 1] = [(256, 301, 3, &[2, 0])];
            weight_cases(&[(37, 256, 5)], &matmuls, &logits, |id, op, tol| {
                ParityCase {
                    quant: Some(kind),
                    ..case(format!("{} {id}", kind.name()), op, tol)
                }
            })
        })
        .collect()
}

//! Op parity after ggml's test-backend-ops: a table of cases (every op, odd shapes, mixtures
//! with mixed ranks, GQA, decode and prefill steps, several KV slots) run on any [`Backend`]
//! against [`CpuBackend`] on seeded random inputs. Outputs are poisoned (NaN) before each run
//! so unwritten elements fail; error = NMSE = sum((a-b)^2) / sum(b^2); NaN or inf fails.
//!
//! [`f16_weight_cases`] are for a backend that stores weights as f16 (wgpu's `f16_weights`):
//! their weights are drawn already rounded to f16, so both sides compute on the same values and
//! the f32 bounds hold (the rounding itself is not the kernel's error; the golden tests bound
//! its effect on logits).

use dlp_engine::cpu::CpuBackend;
use dlp_engine::{AttnShape, Backend, Error, HostTensor, LoraStackHost, StepPlan, NO_ADAPTER};

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
    /// `matmul` `[rows, k] @ [n, k]^T`.
    Matmul {
        rows: usize,
        k: usize,
        n: usize,
        bias: bool,
    },
    /// `rope` at the given positions.
    Rope {
        heads: usize,
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
}

/// The result of one case on one backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Within the bound.
    Pass {
        /// Largest NMSE over the case's outputs.
        nmse: f64,
    },
    /// Over the bound, non-finite, or an error.
    Fail(String),
    /// The backend refused with [`Error::Unsupported`].
    Unsupported(String),
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
    }
}

fn attn(
    heads: usize,
    kv: usize,
    hd: usize,
    cap: usize,
    slots: usize,
    at: &[(u32, u32)],
) -> ParityCase {
    let shape = AttnShape {
        n_tokens: at.len(),
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: hd,
        capacity: cap,
    };
    let id = format!("attention(tokens={},heads={heads},kv_heads={kv},head_dim={hd},cap={cap},slots={slots},at={at:?})", at.len());
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
        let id = format!(
            "matmul(rows={rows},k={k},n={n}{})",
            if bias { ",bias" } else { "" }
        );
        v.push(case(id, Op::Matmul { rows, k, n, bias }, r));
    }
    for (heads, head_dim, positions) in [
        (3, 8, vec![0, 3, 7, 2, 9]),
        (9, 64, vec![41]),
        (2, 6, vec![5, 6, 7]),
    ] {
        let id = format!("rope(heads={heads},head_dim={head_dim},positions={positions:?})");
        v.push(case(
            id,
            Op::Rope {
                heads,
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
        let id = format!(
            "matmul(rows={rows},k={k},n={n}{})",
            if bias { ",bias" } else { "" }
        );
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

/// splitmix64: a seeded generator with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1], never zero.
    fn f(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        let x = 2.0 * u - 1.0;
        if x == 0.0 {
            0.5
        } else {
            x
        }
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn below(&mut self, n: usize) -> u32 {
        (self.next() % n.max(1) as u64) as u32
    }
}

/// One output of a case: name, values, and which of them are defined (None: all).
type Output = (&'static str, Vec<f32>, Option<Vec<bool>>);

fn poisoned<B: Backend>(b: &B, n: usize) -> dlp_engine::Result<B::Buf> {
    b.upload(&vec![f32::NAN; n])
}

fn plan(tokens: usize) -> StepPlan {
    StepPlan {
        token_ids: vec![0; tokens],
        positions: vec![0; tokens],
        kv_slots: vec![0; tokens],
        segment_of_token: vec![0; tokens],
        mix_k: 1,
        mix_slots: vec![NO_ADAPTER],
        mix_weights: vec![0.0],
        logit_rows: Vec::new(),
    }
}

/// Runs one case on `b`, inputs drawn from the case's seed.
fn exec<B: Backend>(b: &B, c: &ParityCase) -> dlp_engine::Result<Vec<Output>> {
    let mut g = Rng(c.seed);
    let f16 = c.f16_weights;
    let w2 = |rows: usize, cols: usize, g: &mut Rng| {
        let mut v = g.vec(rows * cols);
        if f16 {
            v.iter_mut().for_each(|x| *x = dlp_wgpu::round_f16(*x));
        }
        HostTensor::new(vec![rows, cols], v)
    };
    Ok(match &c.op {
        Op::Embedding { vocab, dim, tokens } => {
            let table = b.upload_weight(&w2(*vocab, *dim, &mut g))?;
            let mut p = plan(*tokens);
            p.token_ids = (0..*tokens).map(|_| g.below(*vocab)).collect();
            p.token_ids[0] = (*vocab - 1) as u32;
            let step = b.upload_step(&p, None)?;
            let mut out = poisoned(b, tokens * dim)?;
            b.embedding(&table, &step, *tokens, *dim, &mut out)?;
            vec![("out", b.download(&out, tokens * dim)?, None)]
        }
        Op::RmsNorm { rows, dim } => {
            let x = b.upload(&g.vec(rows * dim))?;
            let w = b.upload(&g.vec(*dim))?;
            let mut out = poisoned(b, rows * dim)?;
            b.rms_norm(&x, &w, *rows, *dim, 1e-5, &mut out)?;
            vec![("out", b.download(&out, rows * dim)?, None)]
        }
        Op::Matmul { rows, k, n, bias } => {
            let x = b.upload(&g.vec(rows * k))?;
            let w = b.upload_weight(&w2(*n, *k, &mut g))?;
            let bias = if *bias {
                Some(b.upload(&g.vec(*n))?)
            } else {
                None
            };
            let mut out = poisoned(b, rows * n)?;
            b.matmul(&x, &w, bias.as_ref(), *rows, *k, *n, &mut out)?;
            vec![("out", b.download(&out, rows * n)?, None)]
        }
        Op::Rope {
            heads,
            head_dim,
            positions,
        } => {
            let t = positions.len();
            let max_pos = *positions.iter().max().unwrap_or(&0) as usize;
            let cs: Vec<f32> = (0..(max_pos + 1) * head_dim / 2)
                .flat_map(|_| {
                    let a = g.f() * 3.0;
                    [a.cos(), a.sin()]
                })
                .collect();
            let mut x = b.upload(&g.vec(t * heads * head_dim))?;
            let cs = b.upload(&cs)?;
            let mut p = plan(t);
            p.positions = positions.clone();
            let step = b.upload_step(&p, None)?;
            b.rope(&mut x, &cs, &step, t, *heads, *head_dim)?;
            vec![("x", b.download(&x, t * heads * head_dim)?, None)]
        }
        Op::Attention {
            shape: s,
            slots,
            kv_slots,
            positions,
        } => {
            let (t, kv_dim, q_dim) = (
                s.n_tokens,
                s.n_kv_heads * s.head_dim,
                s.n_heads * s.head_dim,
            );
            let cache_len = slots * s.capacity * kv_dim;
            let q = b.upload(&g.vec(t * q_dim))?;
            let k = b.upload(&g.vec(t * kv_dim))?;
            let v = b.upload(&g.vec(t * kv_dim))?;
            let mut kc = b.upload(&g.vec(cache_len))?;
            let mut vc = b.upload(&g.vec(cache_len))?;
            let mut p = plan(t);
            p.kv_slots = kv_slots.clone();
            p.positions = positions.clone();
            let step = b.upload_step(&p, None)?;
            let mut out = poisoned(b, t * q_dim)?;
            b.attention(&q, &k, &v, &mut kc, &mut vc, &step, *s, &mut out)?;
            vec![
                ("out", b.download(&out, t * q_dim)?, None),
                ("k_cache", b.download(&kc, cache_len)?, None),
                ("v_cache", b.download(&vc, cache_len)?, None),
            ]
        }
        Op::SiluMul { n } => {
            let gate: Vec<f32> = g.vec(*n).iter().map(|x| x * 8.0).collect();
            let (gate, up) = (b.upload(&gate)?, b.upload(&g.vec(*n))?);
            let mut out = poisoned(b, *n)?;
            b.silu_mul(&gate, &up, *n, &mut out)?;
            vec![("out", b.download(&out, *n)?, None)]
        }
        Op::Add { n } => {
            let (mut dst, src) = (b.upload(&g.vec(*n))?, b.upload(&g.vec(*n))?);
            b.add(&mut dst, &src, *n)?;
            vec![("dst", b.download(&dst, *n)?, None)]
        }
        Op::Lora { mix, expand } => exec_lora(b, mix, *expand, &mut g)?,
        Op::Logits {
            hidden,
            vocab,
            tokens,
            rows,
        } => {
            let x = b.upload(&g.vec(tokens * hidden))?;
            let norm = b.upload(&g.vec(*hidden))?;
            let head = b.upload_weight(&w2(*vocab, *hidden, &mut g))?;
            let mut p = plan(*tokens);
            p.logit_rows = rows.clone();
            let step = b.upload_step(&p, None)?;
            let mut out = poisoned(b, rows.len() * vocab)?;
            b.logits(&x, &norm, 1e-5, &head, &step, *hidden, *vocab, &mut out)?;
            vec![("out", b.download(&out, rows.len() * vocab)?, None)]
        }
    })
}

fn exec_lora<B: Backend>(
    b: &B,
    m: &Mixture,
    expand: bool,
    g: &mut Rng,
) -> dlp_engine::Result<Vec<Output>> {
    let t = m.segment_of_token.len();
    let total: usize = m.ranks.iter().map(|&r| r as usize).sum();
    let max_rank = *m.ranks.iter().max().unwrap_or(&0) as usize;
    let mut offset = Vec::new();
    let mut at = 0u32;
    for &r in &m.ranks {
        offset.push(at);
        at += r;
    }
    let host = LoraStackHost {
        in_dim: m.in_dim,
        out_dim: m.out_dim,
        max_rank,
        a: g.vec(total * m.in_dim),
        bt: g.vec(total * m.out_dim),
        slot_offset: offset,
        slot_rank: m.ranks.clone(),
        slot_scale: m.ranks.iter().map(|_| 0.5 + g.f().abs()).collect(),
    };
    let mut p = plan(t);
    p.segment_of_token = m.segment_of_token.clone();
    p.mix_k = m.k;
    p.mix_slots = m.slots.clone();
    p.mix_weights = m
        .slots
        .iter()
        .map(|&s| if s == NO_ADAPTER { 0.0 } else { g.f() })
        .collect();
    let lora = b.upload_lora(&host)?;
    let step = b.upload_step(&p, None)?;
    let u_len = t * m.k * max_rank;
    if expand {
        let u = b.upload(&g.vec(u_len))?;
        let mut y = b.upload(&g.vec(t * m.out_dim))?;
        b.lora_expand(&u, &lora, &step, t, &mut y)?;
        return Ok(vec![("y", b.download(&y, t * m.out_dim)?, None)]);
    }
    let x = b.upload(&g.vec(t * m.in_dim))?;
    let mut u = poisoned(b, u_len)?;
    b.lora_shrink(&x, &lora, &step, t, &mut u)?;
    // Only u[t, k, j < rank] is defined; the rest may hold anything.
    let mut mask = vec![false; u_len];
    for (ti, &s) in m.segment_of_token.iter().enumerate() {
        for k in 0..m.k {
            let slot = m.slots[s as usize * m.k + k];
            if slot != NO_ADAPTER {
                for j in 0..m.ranks[slot as usize] as usize {
                    mask[(ti * m.k + k) * max_rank + j] = true;
                }
            }
        }
    }
    Ok(vec![("u", b.download(&u, u_len)?, Some(mask))])
}

/// NMSE of `got` against `want` over the defined elements, or why it cannot be computed.
fn nmse(got: &[f32], want: &[f32], mask: Option<&[bool]>) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{} values, reference has {}",
            got.len(),
            want.len()
        ));
    }
    let (mut num, mut den) = (0f64, 0f64);
    for i in 0..got.len() {
        if mask.is_some_and(|m| !m[i]) {
            continue;
        }
        let (a, b) = (got[i] as f64, want[i] as f64);
        if !a.is_finite() {
            return Err(format!("non-finite value {a} at index {i} (reference {b})"));
        }
        if !b.is_finite() {
            return Err(format!("reference is non-finite at index {i}"));
        }
        num += (a - b) * (a - b);
        den += b * b;
    }
    Ok(if den == 0.0 { num } else { num / den })
}

/// Runs `case` on `b` and on the CPU reference and compares every output.
pub fn run_case<B: Backend>(b: &B, case: &ParityCase) -> Outcome {
    let got = match exec(b, case) {
        Ok(o) => o,
        Err(Error::Unsupported(m)) => return Outcome::Unsupported(m),
        Err(e) => return Outcome::Fail(format!("error: {e}")),
    };
    let want = match exec(&CpuBackend::new(), case) {
        Ok(o) => o,
        Err(e) => return Outcome::Fail(format!("CPU reference failed: {e}")),
    };
    let mut worst = 0f64;
    for ((name, g, mask), (_, w, _)) in got.iter().zip(&want) {
        match nmse(g, w, mask.as_deref()) {
            Ok(e) if e <= case.tol => worst = worst.max(e),
            Ok(e) => return Outcome::Fail(format!("{name}: NMSE {e:.3e} > {:.0e}", case.tol)),
            Err(m) => return Outcome::Fail(format!("{name}: {m}")),
        }
    }
    Outcome::Pass { nmse: worst }
}

/// Runs every case on `b`, printing a table; returns each id with its outcome.
pub fn run_all<B: Backend>(b: &B) -> Vec<(String, Outcome)> {
    println!("op parity on {} vs cpu", b.name());
    run_cases(b, cases())
}

/// Runs `cases` on `b`, printing a table; returns each id with its outcome.
pub fn run_cases<B: Backend>(b: &B, cases: Vec<ParityCase>) -> Vec<(String, Outcome)> {
    cases
        .into_iter()
        .map(|c| {
            let o = run_case(b, &c);
            let s = match &o {
                Outcome::Pass { nmse } => format!("ok    nmse {nmse:.2e} (<= {:.0e})", c.tol),
                Outcome::Fail(m) => format!("FAIL  {m}"),
                Outcome::Unsupported(m) => format!("skip  unsupported: {m}"),
            };
            println!("  {:<100} {s}", c.id);
            (c.id, o)
        })
        .collect()
}

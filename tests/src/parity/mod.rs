//! Op parity after ggml's test-backend-ops: a table of cases (every op, odd shapes, mixtures
//! with mixed ranks, GQA, decode and prefill steps, several KV slots) run on any [`Backend`]
//! against [`CpuBackend`] on seeded random inputs. Outputs are poisoned (NaN) before each run
//! so unwritten elements fail; error = NMSE = sum((a-b)^2) / sum(b^2); NaN or inf fails.
//!
//! [`f16_weight_cases`] are for a backend that stores weights as f16 (wgpu's `f16_weights`):
//! their weights are drawn already rounded to f16, so both sides compute on the same values and
//! the f32 bounds hold (the rounding itself is not the kernel's error; the golden tests bound
//! its effect on logits).

use dlp_engine::backend::{LinearJob, ResidualNorm, StepPlan};
use dlp_engine::cpu::CpuBackend;
use dlp_engine::{Backend, Error, HostTensor, NO_ADAPTER};
mod cases;
mod inputs;
mod option_cases;

use inputs::{
    argmax_rows, lora_host, lora_plan, plan, random_blocks, rope_table, sample_rows, Rng,
};

pub use cases::{
    cases, packed_weight_cases, sample_cases, Mixture, Op, ParityCase, ELEMENTWISE_TOL,
    REDUCTION_TOL,
};
pub use option_cases::{
    batch_lora_cases, bf16_kv_cases, bf16_lora_cases, bf16_weight_cases, decode_matvec_cases,
    f16_weight_cases, fused_kv_store_cases, fused_silu_cases, norm_in_matvec_cases,
    rope_in_attention_cases, sgmv_cases, split_attention_cases, tiled_lora_cases,
};

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

/// Output names of a `linears` case, one per job.
const OUT_NAMES: [&str; 4] = ["out0", "out1", "out2", "out3"];

/// One output of a case: name, values, and which of them are defined (None: all).
type Output = (&'static str, Vec<f32>, Option<Vec<bool>>);

fn poisoned<B: Backend>(b: &B, n: usize) -> dlp_engine::Result<B::Buf> {
    b.upload(&vec![f32::NAN; n])
}

/// `data` on the device, written there by a kernel (`add` onto zeros: exact) rather than by an
/// upload. Called right before the op that reads it, so that the op's launch directly follows
/// the kernel that wrote its input, as in the model: a matvec launched as a dependent of that
/// kernel (`--cuda-experimental dependent-launch`; `add` releases it at its start, as the
/// model's norms do) that read its input too early could read zeros.
fn written_by_kernel<B: Backend>(b: &B, data: &[f32]) -> dlp_engine::Result<B::Buf> {
    let src = b.upload(data)?;
    let mut dst = b.upload(&vec![0.0; data.len()])?;
    b.add(&mut dst, &src, data.len())?;
    Ok(dst)
}

/// `p` on the device the way a decode loop uploads its steps: into the buffers of an earlier
/// step of the same lengths but other values (every entry changed: integers with their lowest
/// bit flipped, floats negated less one), which had held an empty step in between. Any array a reused upload did not rewrite, or a view
/// left at the empty step's lengths, then reads wrong values (`packed-upload` puts every array
/// in one buffer; a graph replay reuses the recorded one).
fn uploaded_over_others<B: Backend>(b: &B, p: &StepPlan) -> dlp_engine::Result<B::Step> {
    let mut other = p.clone();
    for v in [
        &mut other.token_ids,
        &mut other.positions,
        &mut other.kv_slots,
        &mut other.segment_of_token,
        &mut other.mix_slots,
        &mut other.logit_rows,
    ] {
        v.iter_mut().for_each(|x| *x ^= 1);
    }
    other.mix_weights.iter_mut().for_each(|w| *w = -*w - 1.0);
    other.pick_args.iter_mut().for_each(|a| *a = -*a - 1.0);
    let earlier = b.upload_step(&other, None)?;
    let empty = b.upload_step(&StepPlan::default(), Some(earlier))?;
    b.upload_step(p, Some(empty))
}

/// A unary op's outputs: `n` inputs drawn from `g` and spread to +-`spread`, written by `op`
/// into a poisoned buffer.
fn unary<B: Backend>(
    b: &B,
    g: &mut Rng,
    n: usize,
    spread: f32,
    op: impl FnOnce(&B::Buf, &mut B::Buf) -> dlp_engine::Result<()>,
) -> dlp_engine::Result<Vec<Output>> {
    let x: Vec<f32> = g.vec(n).iter().map(|x| x * spread).collect();
    let x = b.upload(&x)?;
    let mut out = poisoned(b, n)?;
    op(&x, &mut out)?;
    Ok(vec![("out", b.download(&out, n)?, None)])
}

/// Runs one case on `b`, inputs drawn from the case's seed.
fn exec<B: Backend>(b: &B, c: &ParityCase) -> dlp_engine::Result<Vec<Output>> {
    let mut g = Rng(c.seed);
    let (f16, bf16, c_bf16_kv) = (c.f16_weights, c.bf16_weights, c.bf16_kv);
    let w2 = |rows: usize, cols: usize, g: &mut Rng| {
        if let Some(kind) = c.quant {
            return random_blocks(kind, rows, cols, g);
        }
        let mut v = g.vec(rows * cols);
        if f16 {
            v.iter_mut().for_each(|x| *x = dlp_wgpu::round_f16(*x));
        }
        if bf16 {
            v.iter_mut()
                .for_each(|x| *x = half::bf16::from_f32(*x).to_f32());
        }
        HostTensor::new(vec![rows, cols], v)
    };
    Ok(match &c.op {
        Op::Embedding { vocab, dim, tokens } => {
            let table = b.upload_weight(&w2(*vocab, *dim, &mut g))?;
            let mut p = plan(*tokens);
            p.token_ids = (0..*tokens).map(|_| g.below(*vocab)).collect();
            p.token_ids[0] = (*vocab - 1) as u32;
            let step = uploaded_over_others(b, &p)?;
            let mut out = poisoned(b, tokens * dim)?;
            b.embedding(&table, &step, *tokens, *dim, &mut out)?;
            vec![("out", b.download(&out, tokens * dim)?, None)]
        }
        Op::RmsNorm { rows, dim, w_rows } => {
            let x = b.upload(&g.vec(rows * dim))?;
            let w = b.upload(&g.vec(w_rows * dim))?;
            let mut out = poisoned(b, rows * dim)?;
            b.rms_norm(&x, &w, *rows, *dim, *w_rows, 1e-5, &mut out)?;
            vec![("out", b.download(&out, rows * dim)?, None)]
        }
        Op::Center { rows, dim } => {
            // Offset per row, so that a kernel that did not subtract the mean shows.
            let x: Vec<f32> = (g.vec(rows * dim).iter().enumerate())
                .map(|(i, v)| v + (i / dim) as f32 * 3.0 - 2.0)
                .collect();
            let mut x = b.upload(&x)?;
            b.center(&mut x, *rows, *dim)?;
            vec![("x", b.download(&x, rows * dim)?, None)]
        }
        Op::AddRmsNorm { rows, dim } => {
            let n = rows * dim;
            let mut x = b.upload(&g.vec(n))?;
            let y = b.upload(&g.vec(n))?;
            let w = b.upload(&g.vec(*dim))?;
            let mut out = poisoned(b, n)?;
            b.add_rms_norm(&mut x, &y, &w, *rows, *dim, 1e-5, &mut out)?;
            vec![
                ("x", b.download(&x, n)?, None),
                ("out", b.download(&out, n)?, None),
            ]
        }
        Op::Matmul { rows, k, n, bias } => {
            let x = g.vec(rows * k);
            let w = b.upload_weight(&w2(*n, *k, &mut g))?;
            let bias = if *bias {
                Some(b.upload(&g.vec(*n))?)
            } else {
                None
            };
            let mut out = poisoned(b, rows * n)?;
            let x = written_by_kernel(b, &x)?;
            b.matmul(&x, &w, bias.as_ref(), *rows, *k, *n, &mut out)?;
            vec![("out", b.download(&out, rows * n)?, None)]
        }
        Op::Rope {
            heads,
            kv_heads,
            head_dim,
            positions,
        } => {
            let t = positions.len();
            let cs = rope_table(positions, *head_dim, &mut g);
            let mut x = b.upload(&g.vec(t * heads * head_dim))?;
            let cs = b.upload(&cs)?;
            let mut p = plan(t);
            p.positions = positions.clone();
            let step = uploaded_over_others(b, &p)?;
            match kv_heads {
                None => {
                    b.rope(&mut x, &cs, &step, t, *heads, *head_dim)?;
                    vec![("x", b.download(&x, t * heads * head_dim)?, None)]
                }
                Some(kvh) => {
                    let mut k = b.upload(&g.vec(t * kvh * head_dim))?;
                    b.rope_qk(&mut x, &mut k, &cs, &step, t, (*heads, *kvh), *head_dim)?;
                    vec![
                        ("q", b.download(&x, t * heads * head_dim)?, None),
                        ("k", b.download(&k, t * kvh * head_dim)?, None),
                    ]
                }
            }
        }
        Op::Attention {
            shape: s,
            slots,
            kv_slots,
            positions,
            rope,
        } => {
            let (t, kv_dim, q_dim) = (
                s.n_tokens,
                s.n_kv_heads * s.head_dim,
                s.n_heads * s.head_dim,
            );
            let cache_len = slots * s.capacity * kv_dim;
            let mut q = b.upload(&g.vec(t * q_dim))?;
            let mut k = b.upload(&g.vec(t * kv_dim))?;
            let v = b.upload(&g.vec(t * kv_dim))?;
            // Earlier positions drawn as bf16 values for a bf16 cache, so that both sides
            // start from the same numbers.
            let mut draw_cache = || {
                let mut c = g.vec(cache_len);
                if c_bf16_kv {
                    c.iter_mut()
                        .for_each(|x| *x = half::bf16::from_f32(*x).to_f32());
                }
                c
            };
            let (kc0, vc0) = (draw_cache(), draw_cache());
            let mut kc = b.upload_kv(&kc0)?;
            let mut vc = b.upload_kv(&vc0)?;
            let mut p = plan(t);
            p.kv_slots = kv_slots.clone();
            p.positions = positions.clone();
            let step = uploaded_over_others(b, &p)?;
            let mut out = poisoned(b, t * q_dim)?;
            if *rope {
                let cs = b.upload(&rope_table(positions, s.head_dim, &mut g))?;
                b.rope_attention(
                    &mut q, &mut k, &v, &cs, &mut kc, &mut vc, &step, *s, &mut out,
                )?;
            } else {
                b.attention(&q, &k, &v, &mut kc, &mut vc, &step, *s, &mut out)?;
            }
            vec![
                ("out", b.download(&out, t * q_dim)?, None),
                ("k_cache", b.download_kv(&kc, cache_len)?, None),
                ("v_cache", b.download_kv(&vc, cache_len)?, None),
            ]
        }
        Op::SiluMul { n } => {
            let gate: Vec<f32> = g.vec(*n).iter().map(|x| x * 8.0).collect();
            let (gate, up) = (b.upload(&gate)?, b.upload(&g.vec(*n))?);
            let mut out = poisoned(b, *n)?;
            b.silu_mul(&gate, &up, *n, &mut out)?;
            vec![("out", b.download(&out, *n)?, None)]
        }
        Op::GeluMul { n } => {
            let gate: Vec<f32> = g.vec(*n).iter().map(|x| x * 8.0).collect();
            let (gate, up) = (b.upload(&gate)?, b.upload(&g.vec(*n))?);
            let mut out = poisoned(b, *n)?;
            b.gelu_mul(&gate, &up, *n, &mut out)?;
            vec![("out", b.download(&out, *n)?, None)]
        }
        Op::Gelu { n } => unary(b, &mut g, *n, 8.0, |x, o| b.gelu(x, *n, o))?,
        Op::GeluErf { n } => unary(b, &mut g, *n, 8.0, |x, o| b.gelu_erf(x, *n, o))?,
        Op::ReluSq { n } => unary(b, &mut g, *n, 4.0, |x, o| b.relu_sq(x, *n, o))?,
        Op::Xielu { n, spread, eps } => {
            let p = dlp_engine::Xielu {
                alpha_p: 0.9,
                alpha_n: 1.3,
                beta: 0.4,
                eps: *eps,
            };
            unary(b, &mut g, *n, *spread, |x, o| b.xielu(x, *n, p, o))?
        }
        Op::AddBias { rows, dim } => {
            let mut x = b.upload(&g.vec(rows * dim))?;
            let bias = b.upload(&g.vec(*dim))?;
            b.add_bias(&mut x, &bias, *rows, *dim)?;
            vec![("x", b.download(&x, rows * dim)?, None)]
        }
        Op::Scale { n } => {
            let mut x = b.upload(&g.vec(*n))?;
            b.scale(&mut x, 33.941_124, *n)?;
            vec![("x", b.download(&x, *n)?, None)]
        }
        Op::Softcap { n, cap } => {
            let x: Vec<f32> = g.vec(*n).iter().map(|x| x * 20.0).collect();
            let mut x = b.upload(&x)?;
            b.softcap(&mut x, *cap, *n)?;
            vec![("x", b.download(&x, *n)?, None)]
        }
        Op::Clamp { n } => {
            let mut x: Vec<f32> = g.vec(*n).iter().map(|x| x * 3.0).collect();
            // Both limits exactly, and both infinities (clamped to them).
            let edges = [1.5, -1.5, f32::INFINITY, f32::NEG_INFINITY];
            x.iter_mut().zip(edges).for_each(|(v, e)| *v = e);
            let mut x = b.upload(&x)?;
            b.clamp(&mut x, 1.5, *n)?;
            vec![("x", b.download(&x, *n)?, None)]
        }
        Op::Add { n } => {
            let (mut dst, src) = (b.upload(&g.vec(*n))?, b.upload(&g.vec(*n))?);
            b.add(&mut dst, &src, *n)?;
            vec![("dst", b.download(&dst, *n)?, None)]
        }
        Op::Lora { mix, expand } => exec_lora(b, mix, *expand, c.bf16_lora, &mut g)?,
        Op::Linears {
            rows,
            k,
            ns,
            bias,
            mix,
            bare,
            silu,
            norm,
        } => {
            let x = g.vec(rows * k);
            let mut ws = Vec::new();
            for (i, &n) in ns.iter().enumerate() {
                let w = b.upload_weight(&w2(n, *k, &mut g))?;
                let bias = if *bias {
                    Some(b.upload(&g.vec(n))?)
                } else {
                    None
                };
                let lora = match mix {
                    Some(m) if !bare.contains(&i) => {
                        Some(b.upload_lora(&lora_host(m, n, c.bf16_lora, &mut g))?)
                    }
                    _ => None,
                };
                ws.push((w, bias, lora, poisoned(b, rows * n)?));
            }
            let mut p = match mix {
                Some(m) => lora_plan(m, &mut g),
                None => plan(*rows),
            };
            // A decode step: each token alone in its KV slot (a batch of sequences), the steps
            // `linears` may fuse differently from a prefill's.
            p.kv_slots = (0..*rows as u32).collect();
            let step = uploaded_over_others(b, &p)?;
            let max_rank = mix
                .as_ref()
                .map_or(1, |m| *m.ranks.iter().max().unwrap_or(&1) as usize);
            let mut u = b.alloc(rows * p.mix_k * max_rank)?;
            let mut jobs: Vec<LinearJob<'_, B>> = ws
                .iter_mut()
                .zip(ns)
                .map(|((w, bias, lora, out), &n)| LinearJob {
                    w,
                    bias: bias.as_ref(),
                    n_out: n,
                    lora: lora.as_ref(),
                    out,
                })
                .collect();
            let x = written_by_kernel(b, &x)?;
            if *silu {
                let n = ns[0];
                let mut act = poisoned(b, rows * n)?;
                let mut pair: [LinearJob<'_, B>; 2] = jobs.try_into().map_err(|j: Vec<_>| {
                    Error::invalid(format!("silu: {} linears, not a gate/up pair", j.len()))
                })?;
                b.linears_silu_mul(&x, *rows, *k, &step, &mut pair, &mut u, &mut act)?;
                return Ok(vec![("act", b.download(&act, rows * n)?, None)]);
            }
            if let Some(site) = *norm {
                let n = ns[0];
                let mut one: [LinearJob<'_, B>; 1] = jobs.try_into().map_err(|j: Vec<_>| {
                    Error::invalid(format!("norm: {} linears, not one module", j.len()))
                })?;
                // A residual stream a few times the product's scale, as in a model.
                let res: Vec<f32> = g.vec(rows * n).iter().map(|v| v * 4.0).collect();
                let mut residual = written_by_kernel(b, &res)?;
                let w = b.upload(&g.vec(n))?;
                let mut normed = poisoned(b, rows * n)?;
                let rn = ResidualNorm {
                    residual: &mut residual,
                    w: &w,
                    eps: 1e-5,
                    out: &mut normed,
                    site,
                };
                b.linear_add_rms_norm(&x, *rows, *k, &step, &mut one, &mut u, rn)?;
                return Ok(vec![
                    ("out", b.download(&ws[0].3, rows * n)?, None),
                    ("residual", b.download(&residual, rows * n)?, None),
                    ("normed", b.download(&normed, rows * n)?, None),
                ]);
            }
            b.linears(&x, *rows, *k, &step, &mut jobs, &mut u)?;
            drop(jobs);
            let mut outs = Vec::new();
            for ((_, _, _, out), &n) in ws.iter().zip(ns) {
                outs.push((OUT_NAMES[outs.len()], b.download(out, rows * n)?, None));
            }
            outs
        }
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
            let step = uploaded_over_others(b, &p)?;
            let mut out = poisoned(b, rows.len() * vocab)?;
            b.logits(&x, &norm, 1e-5, &head, &step, *hidden, *vocab, &mut out)?;
            vec![("out", b.download(&out, rows.len() * vocab)?, None)]
        }
        Op::Argmax { rows, vocab } => {
            let logits = b.upload(&argmax_rows(*rows, *vocab, &mut g))?;
            let mut out = poisoned(b, *rows)?;
            b.argmax(&logits, *rows, *vocab, &mut out)?;
            vec![("out", b.download(&out, *rows)?, None)]
        }
        Op::Sample { rows, vocab } => {
            let (logits, args) = sample_rows(*rows, *vocab, &mut g);
            let logits = b.upload(&logits)?;
            let mut p = plan(*rows);
            p.pick_args = args;
            let step = uploaded_over_others(b, &p)?;
            let mut out = poisoned(b, *rows)?;
            b.sample(&logits, *rows, *vocab, &step, &mut out)?;
            vec![("out", b.download(&out, *rows)?, None)]
        }
    })
}

fn exec_lora<B: Backend>(
    b: &B,
    m: &Mixture,
    expand: bool,
    bf16: bool,
    g: &mut Rng,
) -> dlp_engine::Result<Vec<Output>> {
    let t = m.segment_of_token.len();
    let max_rank = *m.ranks.iter().max().unwrap_or(&0) as usize;
    let host = lora_host(m, m.out_dim, bf16, g);
    let p = lora_plan(m, g);
    let lora = b.upload_lora(&host)?;
    let step = uploaded_over_others(b, &p)?;
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
    run_case_against(b, &CpuBackend::new(), case)
}

/// Runs `case` on `b` and on `reference` (a CPU backend that computes what `b` should, e.g.
/// [`crate::cpu_probe::CpuProbe::bf16_inputs`]) and compares every output.
pub fn run_case_against<B: Backend, R: Backend>(
    b: &B,
    reference: &R,
    case: &ParityCase,
) -> Outcome {
    let got = match exec(b, case) {
        Ok(o) => o,
        Err(Error::Unsupported(m)) => return Outcome::Unsupported(m),
        Err(e) => return Outcome::Fail(format!("error: {e}")),
    };
    let want = match exec(reference, case) {
        Ok(o) => o,
        Err(e) => return Outcome::Fail(format!("CPU reference failed: {e}")),
    };
    let mut worst = 0f64;
    for ((name, g, mask), (_, w, _)) in got.iter().zip(&want) {
        // A bf16 cache holds exactly the reference's rounded values (both sides round the same
        // f32 keys and values to nearest even; the seeds are bf16 values already).
        if case.bf16_kv && name.ends_with("_cache") {
            if let Some(i) = (0..g.len().min(w.len())).find(|&i| g[i].to_bits() != w[i].to_bits()) {
                return Outcome::Fail(format!(
                    "{name}[{i}]: {} stored, the rounded reference holds {}",
                    g[i], w[i]
                ));
            }
        }
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
    run_cases_against(b, &CpuBackend::new(), cases)
}

/// As [`run_cases`], against `reference` instead of the plain CPU backend.
pub fn run_cases_against<B: Backend, R: Backend>(
    b: &B,
    reference: &R,
    cases: Vec<ParityCase>,
) -> Vec<(String, Outcome)> {
    cases
        .into_iter()
        .map(|c| {
            let o = run_case_against(b, reference, &c);
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

/// Prints every outcome and fails unless all of them passed ("unsupported" is not a pass).
pub fn assert_all_pass(results: &[(String, Outcome)]) {
    for (id, o) in results {
        println!("  {id:<90} {o:?}");
    }
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Pass { .. }))
        .map(|(id, o)| format!("{id}: {o:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} cases did not pass:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[cfg(test)]
mod tests;

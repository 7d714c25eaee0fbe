//! [`CpuProbe`]: the CPU backend with two test instruments for paths the GPU takes.
//!
//! - **bf16 inputs** ([`CpuProbe::bf16_inputs`]): the CUDA bf16 compute mode
//!   (`--cuda-bf16-compute`) emulated, to measure what its rounding does to the logits. Every
//!   base matmul and the lm_head see their inputs rounded to bf16 (round to nearest even, as
//!   CUDA's `to_bf16` / `round_bf16`), with f32 accumulation; LoRA, attention and norms get the
//!   unrounded values, as on the GPU. Used with weights rounded to bf16
//!   ([`crate::Fixture::load_bf16_rounded`]).
//! - **bf16 LoRA** ([`CpuProbe::bf16_lora`]): LoRA A and B rounded to bf16 at upload, what
//!   `--cuda-lora-bf16` stores, to measure what that rounding does to the logits.
//! - **bf16 KV cache** ([`CpuProbe::bf16_kv`]): keys and values rounded to bf16 (nearest
//!   even) as they are stored, what `--cuda-kv-bf16` keeps; attention reads them back exactly.
//! - **TF32 LoRA** ([`CpuProbe::tf32_lora`]): what `--cuda-experimental sgmv` computes: the
//!   inputs of both LoRA products (x and A, u and B^T) rounded to TF32 (10 mantissa bits,
//!   nearest, ties away from zero, as `cvt.rna.tf32.f32`) with f32 accumulation.
//! - **replay check** ([`CpuProbe::replay_check`]): what CUDA graphs rely on. Every step's ops
//!   are logged with their sizes and the addresses of the buffers they touch; a step whose
//!   [`StepShape`] was seen before must log exactly what the first one did (a graph recorded
//!   from the first is replayed for it), else `run_recorded` returns an error naming the first
//!   difference.

use std::collections::HashMap;
use std::sync::Mutex;

use dlp_engine::backend::{linears_each, AttnShape, Backend, LinearJob, LoraStackHost, StepShape};
use dlp_engine::cpu::CpuBackend;
use dlp_engine::tensor::HostTensor;
use dlp_engine::{Error, Result, StepPlan, Xielu};

type Cpu = CpuBackend;
type Buf = <Cpu as Backend>::Buf;
type Weight = <Cpu as Backend>::Weight;
type Step = <Cpu as Backend>::Step;
type Lora = <Cpu as Backend>::Lora;

/// The CPU backend with the instruments of the module docs.
pub struct CpuProbe {
    cpu: CpuBackend,
    round_inputs: bool,
    round_lora: bool,
    tf32_lora: bool,
    round_kv: bool,
    replay: Option<Mutex<ReplayLog>>,
}

#[derive(Default)]
struct ReplayLog {
    /// The ops of the step being run.
    current: Option<Vec<String>>,
    /// The ops of the first step of each shape.
    first: HashMap<StepShape, Vec<String>>,
    /// Steps checked against an earlier one of their shape.
    compared: usize,
}

/// `x` rounded to TF32 as `cvt.rna.tf32.f32` does: 10 mantissa bits, to nearest, ties away
/// from zero (adding half an ulp to the magnitude and truncating). Not finite: unchanged.
pub fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

/// `x` rounded to the nearest bf16 value, ties to even.
pub fn round_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The first `len` values of `x`, each rounded by `round` ([`round_bf16`], [`round_tf32`]).
fn rounded(x: &[f32], len: usize, round: fn(f32) -> f32) -> Vec<f32> {
    x[..len.min(x.len())].iter().map(|&v| round(v)).collect()
}

/// A buffer's identity for the replay log.
fn at<T>(b: &T) -> usize {
    b as *const T as usize
}

fn buf(b: &Buf) -> usize {
    b.as_ptr() as usize
}

/// What a recorded step's launches see of its plan: sizes only (the contents are copied into
/// the recording's own buffers before each replay).
fn step_sizes(s: &StepPlan) -> String {
    format!(
        "step(tokens={}, k={}, mix={}, logits={})",
        s.token_ids.len(),
        s.mix_k,
        s.mix_slots.len(),
        s.logit_rows.len()
    )
}

impl CpuProbe {
    /// The plain CPU backend, no instrument on.
    fn plain() -> Self {
        CpuProbe {
            cpu: CpuBackend::new(),
            round_inputs: false,
            round_lora: false,
            tf32_lora: false,
            round_kv: false,
            replay: None,
        }
    }

    /// Matmul and lm_head inputs rounded to bf16 (`--cuda-bf16-compute` on the CPU).
    pub fn bf16_inputs() -> Self {
        CpuProbe {
            round_inputs: true,
            ..Self::plain()
        }
    }

    /// LoRA A and B rounded to bf16 at upload (`--cuda-lora-bf16` on the CPU).
    pub fn bf16_lora() -> Self {
        CpuProbe {
            round_lora: true,
            ..Self::plain()
        }
    }

    /// Both roundings: matmul inputs and LoRA A/B in bf16 (`--cuda-bf16-compute
    /// --cuda-lora-bf16`, what `scripts/gpu-check.sh` benches as `bf16c-exp`).
    pub fn bf16_inputs_and_lora() -> Self {
        CpuProbe {
            round_lora: true,
            ..Self::bf16_inputs()
        }
    }

    /// Both LoRA products' inputs rounded to TF32 (`--cuda-experimental sgmv` on the CPU).
    pub fn tf32_lora() -> Self {
        CpuProbe {
            tf32_lora: true,
            ..Self::plain()
        }
    }

    /// Keys and values rounded to bf16 as they are stored (`--cuda-kv-bf16` on the CPU).
    pub fn bf16_kv() -> Self {
        CpuProbe {
            round_kv: true,
            ..Self::plain()
        }
    }

    /// Steps of one shape checked to launch the same work (what CUDA graphs replay).
    pub fn replay_check() -> Self {
        CpuProbe {
            replay: Some(Mutex::new(ReplayLog::default())),
            ..Self::plain()
        }
    }

    /// Steps that were checked against an earlier step of their shape.
    pub fn replays_checked(&self) -> usize {
        self.replay
            .as_ref()
            .map_or(0, |r| r.lock().unwrap_or_else(|p| p.into_inner()).compared)
    }

    fn log(&self, op: impl FnOnce() -> String) {
        if let Some(r) = &self.replay {
            if let Some(cur) = r.lock().unwrap_or_else(|p| p.into_inner()).current.as_mut() {
                cur.push(op());
            }
        }
    }
}

impl Backend for CpuProbe {
    type Buf = Buf;
    type Weight = Weight;
    type Step = Step;
    type Lora = Lora;

    fn name(&self) -> String {
        let what = if self.round_inputs && self.round_lora {
            "bf16 matmul inputs and LoRA"
        } else if self.round_inputs {
            "bf16 matmul inputs"
        } else if self.round_lora {
            "bf16 LoRA"
        } else if self.tf32_lora {
            "TF32 LoRA"
        } else if self.round_kv {
            "bf16 KV cache"
        } else {
            "replay check"
        };
        format!("{} ({what})", self.cpu.name())
    }
    fn alloc(&self, len: usize) -> Result<Buf> {
        self.cpu.alloc(len)
    }
    fn alloc_kv(&self, len: usize, sparse: bool) -> Result<Buf> {
        self.cpu.alloc_kv(len, sparse)
    }
    fn upload(&self, data: &[f32]) -> Result<Buf> {
        self.cpu.upload(data)
    }
    fn download(&self, b: &Buf, len: usize) -> Result<Vec<f32>> {
        self.cpu.download(b, len)
    }
    fn upload_weight(&self, w: &HostTensor) -> Result<Weight> {
        self.cpu.upload_weight(w)
    }
    fn packed_weights(&self) -> bool {
        self.cpu.packed_weights()
    }
    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        self.cpu.run_step(step)
    }
    fn upload_lora(&self, s: &LoraStackHost) -> Result<Lora> {
        let round: fn(f32) -> f32 = match (self.round_lora, self.tf32_lora) {
            (true, _) => round_bf16,
            (_, true) => round_tf32,
            _ => return self.cpu.upload_lora(s),
        };
        let mut r = s.clone();
        r.a.iter_mut()
            .chain(r.bt.iter_mut())
            .for_each(|v| *v = round(*v));
        self.cpu.upload_lora(&r)
    }
    fn upload_step(&self, plan: &StepPlan, reuse: Option<Step>) -> Result<Step> {
        self.cpu.upload_step(plan, reuse)
    }
    fn run_recorded(
        &self,
        shape: &StepShape,
        plan: &StepPlan,
        reuse: Option<Step>,
        body: &mut dyn FnMut(&Step) -> Result<()>,
    ) -> Result<Option<Step>> {
        let Some(r) = &self.replay else {
            let step = self.upload_step(plan, reuse)?;
            body(&step)?;
            return Ok(Some(step));
        };
        let lock = || r.lock().unwrap_or_else(|p| p.into_inner());
        lock().current = Some(Vec::new());
        let step = self.upload_step(plan, reuse)?;
        let res = body(&step);
        let ops = lock().current.take().unwrap_or_default();
        res?;
        let mut g = lock();
        match g.first.get(shape) {
            None => {
                g.first.insert(*shape, ops);
            }
            Some(first) if *first == ops => g.compared += 1,
            Some(first) => {
                let i = first.iter().zip(&ops).take_while(|(a, b)| a == b).count();
                let none = "(nothing)".to_string();
                return Err(Error::invalid(format!(
                    "replay check: a step of {shape:?} launched other work than the first of \
                     its shape, from op {i}: {} then, {} now",
                    first.get(i).unwrap_or(&none),
                    ops.get(i).unwrap_or(&none)
                )));
            }
        }
        Ok(Some(step))
    }
    fn embedding(&self, t: &Weight, s: &Step, n: usize, dim: usize, out: &mut Buf) -> Result<()> {
        self.log(|| {
            format!(
                "embedding {:x} {} {n} {dim} {:x}",
                at(t),
                step_sizes(s),
                buf(out)
            )
        });
        self.cpu.embedding(t, s, n, dim, out)
    }
    fn rms_norm(
        &self,
        x: &Buf,
        w: &Buf,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut Buf,
    ) -> Result<()> {
        self.log(|| {
            format!(
                "rms_norm {:x} {:x} {rows} {dim} {w_rows} {eps} {:x}",
                buf(x),
                buf(w),
                buf(out)
            )
        });
        self.cpu.rms_norm(x, w, rows, dim, w_rows, eps, out)
    }
    fn center(&self, x: &mut Buf, rows: usize, dim: usize) -> Result<()> {
        self.log(|| format!("center {:x} {rows} {dim}", buf(x)));
        self.cpu.center(x, rows, dim)
    }
    fn matmul(
        &self,
        x: &Buf,
        w: &Weight,
        bias: Option<&Buf>,
        rows: usize,
        k: usize,
        n: usize,
        out: &mut Buf,
    ) -> Result<()> {
        self.log(|| {
            let b = bias.map(buf);
            format!(
                "matmul {:x} {:x} {b:?} {rows} {k} {n} {:x}",
                buf(x),
                at(w),
                buf(out)
            )
        });
        if self.round_inputs {
            return self
                .cpu
                .matmul(&rounded(x, rows * k, round_bf16), w, bias, rows, k, n, out);
        }
        self.cpu.matmul(x, w, bias, rows, k, n, out)
    }
    fn linears(
        &self,
        x: &Buf,
        n_tokens: usize,
        n_in: usize,
        step: &Step,
        jobs: &mut [LinearJob<'_, Self>],
        u: &mut Buf,
    ) -> Result<()> {
        // Op by op: each matmul rounds (and logs) its input; each LoRA shrink reads it as is.
        linears_each(self, x, n_tokens, n_in, step, jobs, u)
    }
    fn rope(&self, x: &mut Buf, cs: &Buf, s: &Step, t: usize, h: usize, d: usize) -> Result<()> {
        self.log(|| {
            format!(
                "rope {:x} {:x} {} {t} {h} {d}",
                buf(x),
                buf(cs),
                step_sizes(s)
            )
        });
        self.cpu.rope(x, cs, s, t, h, d)
    }
    fn attention(
        &self,
        q: &Buf,
        k: &Buf,
        v: &Buf,
        k_cache: &mut Buf,
        v_cache: &mut Buf,
        step: &Step,
        shape: AttnShape,
        out: &mut Buf,
    ) -> Result<()> {
        self.log(|| {
            let b = [buf(q), buf(k), buf(v), buf(k_cache), buf(v_cache), buf(out)];
            format!("attention {b:x?} {} {shape:?}", step_sizes(step))
        });
        if self.round_kv {
            // The cache holds what is stored; the CPU attends over the cache only.
            let n = shape.n_tokens * shape.n_kv_heads * shape.head_dim;
            let (k, v) = (rounded(k, n, round_bf16), rounded(v, n, round_bf16));
            return self
                .cpu
                .attention(q, &k, &v, k_cache, v_cache, step, shape, out);
        }
        self.cpu
            .attention(q, k, v, k_cache, v_cache, step, shape, out)
    }
    fn silu_mul(&self, gate: &Buf, up: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("silu_mul {:x} {:x} {n} {:x}", buf(gate), buf(up), buf(out)));
        self.cpu.silu_mul(gate, up, n, out)
    }
    fn gelu_mul(&self, gate: &Buf, up: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("gelu_mul {:x} {:x} {n} {:x}", buf(gate), buf(up), buf(out)));
        self.cpu.gelu_mul(gate, up, n, out)
    }
    fn gelu(&self, x: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("gelu {:x} {n} {:x}", buf(x), buf(out)));
        self.cpu.gelu(x, n, out)
    }
    fn gelu_erf(&self, x: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("gelu_erf {:x} {n} {:x}", buf(x), buf(out)));
        self.cpu.gelu_erf(x, n, out)
    }
    fn relu_sq(&self, x: &Buf, n: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("relu_sq {:x} {n} {:x}", buf(x), buf(out)));
        self.cpu.relu_sq(x, n, out)
    }
    fn xielu(&self, x: &Buf, n: usize, p: Xielu, out: &mut Buf) -> Result<()> {
        self.log(|| format!("xielu {:x} {n} {p:?} {:x}", buf(x), buf(out)));
        self.cpu.xielu(x, n, p, out)
    }
    fn add_bias(&self, x: &mut Buf, bias: &Buf, rows: usize, dim: usize) -> Result<()> {
        self.log(|| format!("add_bias {:x} {:x} {rows} {dim}", buf(x), buf(bias)));
        self.cpu.add_bias(x, bias, rows, dim)
    }
    fn scale(&self, x: &mut Buf, s: f32, n: usize) -> Result<()> {
        self.log(|| format!("scale {:x} {s} {n}", buf(x)));
        self.cpu.scale(x, s, n)
    }
    fn clamp(&self, x: &mut Buf, limit: f32, n: usize) -> Result<()> {
        self.log(|| format!("clamp {:x} {limit} {n}", buf(x)));
        self.cpu.clamp(x, limit, n)
    }

    fn softcap(&self, x: &mut Buf, cap: f32, n: usize) -> Result<()> {
        self.log(|| format!("softcap {:x} {cap} {n}", buf(x)));
        self.cpu.softcap(x, cap, n)
    }
    fn add(&self, dst: &mut Buf, src: &Buf, n: usize) -> Result<()> {
        self.log(|| format!("add {:x} {:x} {n}", buf(dst), buf(src)));
        self.cpu.add(dst, src, n)
    }
    fn lora_shrink(&self, x: &Buf, l: &Lora, s: &Step, n: usize, u: &mut Buf) -> Result<()> {
        self.log(|| {
            format!(
                "lora_shrink {:x} {:x} {} {n} {:x}",
                buf(x),
                at(l),
                step_sizes(s),
                buf(u)
            )
        });
        if self.tf32_lora {
            return self
                .cpu
                .lora_shrink(&rounded(x, x.len(), round_tf32), l, s, n, u);
        }
        self.cpu.lora_shrink(x, l, s, n, u)
    }
    fn lora_expand(&self, u: &Buf, l: &Lora, s: &Step, n: usize, y: &mut Buf) -> Result<()> {
        self.log(|| {
            format!(
                "lora_expand {:x} {:x} {} {n} {:x}",
                buf(u),
                at(l),
                step_sizes(s),
                buf(y)
            )
        });
        if self.tf32_lora {
            return self
                .cpu
                .lora_expand(&rounded(u, u.len(), round_tf32), l, s, n, y);
        }
        self.cpu.lora_expand(u, l, s, n, y)
    }
    fn logits(
        &self,
        x: &Buf,
        norm: &Buf,
        eps: f32,
        lm_head: &Weight,
        step: &Step,
        hidden: usize,
        vocab: usize,
        out: &mut Buf,
    ) -> Result<()> {
        self.log(|| {
            let b = [buf(x), buf(norm), at(lm_head), buf(out)];
            format!("logits {b:x?} {eps} {} {hidden} {vocab}", step_sizes(step))
        });
        if !self.round_inputs {
            return self
                .cpu
                .logits(x, norm, eps, lm_head, step, hidden, vocab, out);
        }
        // The CUDA order: normalise the picked rows in f32, round, then the lm_head product.
        let rows = &step.logit_rows;
        let mut picked = Vec::with_capacity(rows.len() * hidden);
        for &r in rows {
            let r = r as usize;
            picked.extend_from_slice(&x[r * hidden..(r + 1) * hidden]);
        }
        let mut normed = vec![0.0; picked.len()];
        self.cpu
            .rms_norm(&picked, norm, rows.len(), hidden, 1, eps, &mut normed)?;
        self.cpu.matmul(
            &rounded(&normed, normed.len(), round_bf16),
            lm_head,
            None,
            rows.len(),
            hidden,
            vocab,
            out,
        )
    }
    fn argmax(&self, logits: &Buf, rows: usize, vocab: usize, out: &mut Buf) -> Result<()> {
        self.log(|| format!("argmax {:x} {rows} {vocab} {:x}", buf(logits), buf(out)));
        self.cpu.argmax(logits, rows, vocab, out)
    }
}

#[cfg(test)]
mod tests {
    use super::round_bf16;

    #[test]
    fn tf32_rounds_to_nearest_ties_away_like_cvt_rna() {
        use super::round_tf32;
        // 10 mantissa bits: 1 + 2^-11 is halfway between 1 and 1 + 2^-10: away from zero.
        assert_eq!(round_tf32(1.0 + 1.0 / 2048.0), 1.0 + 1.0 / 1024.0);
        assert_eq!(round_tf32(-(1.0 + 1.0 / 2048.0)), -(1.0 + 1.0 / 1024.0));
        // Just below halfway rounds down; values with 10 bits are unchanged.
        assert_eq!(round_tf32(1.0 + 1.0 / 2048.0 - 1.0 / 8_388_608.0), 1.0);
        assert_eq!(round_tf32(1.5 + 1.0 / 1024.0), 1.5 + 1.0 / 1024.0);
        assert!(round_tf32(f32::NAN).is_nan());
        assert_eq!(round_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
    }

    #[test]
    fn rounds_to_nearest_even_like_the_cuda_kernel() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert_eq!(round_bf16(-2.5), -2.5);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
    }
}

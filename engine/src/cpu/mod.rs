//! The CPU backend: f32 ops (the reference every other backend is compared with), parallel
//! with rayon, with SIMD kernels picked at run time (AVX-512, AVX2, portable) and `gemm`.
//! One file per op, named as the WGSL and CUDA kernels; `packed_dot` and `avx512` hold the
//! shared dot-product kernels.

mod add;
mod add_bias;
#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod amx_pack;
pub mod argmax;
mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_blocks;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_blocks;
#[cfg(target_arch = "x86_64")]
mod avx512_rows;
mod center;
mod embedding;
pub(crate) mod exp_poly;
mod features;
mod gelu;
mod gelu_mul;
mod huge_pages;
pub mod int8;
mod linears;
#[cfg(target_arch = "x86_64")]
mod linears_amx;
mod logits;
mod lora;
#[cfg(target_arch = "x86_64")]
mod lora_amx;
pub use lora::CpuLora;
mod clamp;
mod matmul;
#[cfg(target_arch = "x86_64")]
mod matmul_amx;
mod packed_dot;
mod relu_sq;
mod rms_norm;
mod rope;
pub mod sample;
mod scale;
mod silu_mul;
mod softcap;
mod unary;
mod xielu;

use std::sync::Mutex;

use crate::backend::{AttnShape, Backend, LoraStackHost, StepPlan, Xielu};
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, Packed};

pub use matmul::dot;

/// A 2-D weight `[rows, cols]` in host memory: f32, or the file's packed blocks.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Row-major values (empty when `packed` holds them).
    pub data: Vec<f32>,
    /// Compact storage (Q8_0/Q4_0/Q4_1/F16/BF16, Q5 and k-quants), dequantised inside the kernels.
    pub packed: Option<Packed>,
}

impl CpuWeight {
    /// Bytes of host memory the values take.
    pub fn bytes(&self) -> usize {
        self.packed
            .as_ref()
            .map_or(self.data.len() * 4, |p| p.bytes.len())
    }

    /// Row `r` as f32 into `out` (`cols` values).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        match &self.packed {
            Some(p) => {
                let rb = p.kind.row_bytes(self.cols);
                p.kind.dequantize(&p.bytes[r * rb..(r + 1) * rb], out);
            }
            None => out.copy_from_slice(&self.data[r * self.cols..(r + 1) * self.cols]),
        }
    }
}

/// The reference backend. Threads come from rayon's global pool (`RAYON_NUM_THREADS`).
#[derive(Debug, Default)]
pub struct CpuBackend {
    /// Scratch for the normalised rows of `logits` (reused, so decode does not allocate).
    scratch: Mutex<Vec<f32>>,
    options: CpuOptions,
}

/// Storage choices of the CPU backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuOptions {
    /// Store LoRA A and B in f16 instead of f32: half the bytes each adapter adds to a decode
    /// step, at the cost of rounding them (relative error about 2e-4 on trained adapters).
    pub lora_f16: bool,
    /// Run matmuls of several rows (batches, prefill) on the AMX tile unit in bf16 where the
    /// CPU has AMX-BF16 ([`amx_available`]): several times the f32 FLOP rate, with inputs and
    /// weights rounded to bf16. The LoRA pair of several tokens too (A, B and the shrink
    /// outputs rounded to bf16, from the f32 adapter values even with `lora_f16`). Steps of
    /// fewer than [`AMX_MIN_ROWS`] rows (decode, small batches) stay f32.
    pub amx: bool,
    /// 8-bit activations ([`int8`]): matmuls and linears quantise their input rows per block
    /// of 32 and run integer dot products against Q4_0/Q4_1/Q8_0 weights (llama.cpp's CPU
    /// scheme); 2-D weights stored otherwise (f32, F16, BF16) are quantised to Q8_0 at load.
    /// LoRA, attention and norms stay f32. Faster decode and batches on CPUs without AVX-512;
    /// logits move by the quantisation (see `--cpu-int8`'s help for the measured bound).
    pub int8: bool,
}

pub use features::{amx_available, kernel_set, AMX_MIN_ROWS};
#[cfg(target_arch = "x86_64")]
use features::{amx_rows, turned_off};
#[cfg(target_arch = "x86_64")]
pub(crate) use features::{avx2_available, avx512_available};

impl CpuBackend {
    /// A CPU backend (f32 LoRA: the reference).
    pub fn new() -> Self {
        Self::default()
    }

    /// A CPU backend with `options`.
    pub fn with_options(options: CpuOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }
}

/// Checks that a buffer holds at least `need` values; an internal-consistency guard that turns
/// a would-be out-of-bounds panic into an error naming the op.
pub(crate) fn check_len(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::Backend {
            backend: "cpu".into(),
            msg: format!("{op}: buffer `{what}` holds {have} values, needs {need}"),
        });
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type Weight = CpuWeight;
    type Step = StepPlan;
    type Lora = lora::CpuLora;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn kernels(&self) -> Option<String> {
        Some(kernel_set(self.options))
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn release_kv(&self, buf: &mut Vec<f32>, from: usize, len: usize) {
        let end = (from + len).min(buf.len());
        if from < end {
            huge_pages::discard(&mut buf[from..end]);
        }
    }

    fn copies_kv(&self) -> bool {
        true
    }

    fn copy_kv(&self, buf: &mut Vec<f32>, from: usize, to: usize, len: usize) -> Result<()> {
        crate::backend::check_kv_copy(buf.len(), from, to, len)?;
        buf.copy_within(from..from + len, to);
        Ok(())
    }

    fn alloc_kv(&self, len: usize, sparse: bool) -> Result<Vec<f32>> {
        // Zeroed memory is committed as it is first written. A cache that fills up gets huge
        // pages (fewer TLB misses in attention); a sparse one keeps 4 KiB pages, or every
        // slot's first few positions would commit 2 MiB per layer (GiBs for a server).
        let v = vec![0.0; len];
        if !sparse {
            huge_pages::advise_lazy(&v);
        }
        Ok(v)
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        Ok(data.to_vec())
    }

    fn download(&self, buf: &Vec<f32>, len: usize) -> Result<Vec<f32>> {
        check_len("download", "buf", buf.len(), len)?;
        Ok(buf[..len].to_vec())
    }

    fn download_into(&self, buf: &Vec<f32>, len: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("download", "buf", buf.len(), len)?;
        out.clear();
        out.extend_from_slice(&buf[..len]);
        Ok(())
    }

    fn upload_weight(&self, w: &HostTensor) -> Result<CpuWeight> {
        if w.shape.len() != 2 {
            return Err(Error::invalid(format!(
                "upload_weight: expected a 2-D tensor, got shape {:?}",
                w.shape
            )));
        }
        let (rows, cols) = (w.shape[0], w.shape[1]);
        if self.options.int8 && cols.is_multiple_of(packed_dot::QK) {
            let unsupported = w
                .packed
                .as_ref()
                .is_none_or(|p| !int8::supports(p.kind, cols));
            if unsupported {
                let packed = Packed {
                    kind: crate::tensor::PackedKind::Q8_0,
                    bytes: int8::quantize_q8_0(&w.values()),
                };
                return self.upload_weight(&HostTensor::packed(rows, cols, packed));
            }
        }
        if let Some(p) = &w.packed {
            let (per, _) = p.kind.block();
            if !cols.is_multiple_of(per) || p.bytes.len() != rows * p.kind.row_bytes(cols) {
                return Err(Error::invalid(format!(
                    "upload_weight: {} weight [{rows}, {cols}] holds {} bytes (rows must be whole blocks of {per})",
                    p.kind.name(),
                    p.bytes.len()
                )));
            }
        }
        let w = CpuWeight {
            rows,
            cols,
            data: if w.packed.is_some() {
                Vec::new()
            } else {
                w.data.clone()
            },
            packed: w.packed.clone(),
        };
        huge_pages::collapse(&w.data);
        if let Some(p) = &w.packed {
            huge_pages::collapse(&p.bytes);
        }
        Ok(w)
    }

    fn weight_bytes(&self, w: &CpuWeight) -> Option<usize> {
        Some(w.bytes())
    }

    fn packed_weights(&self) -> bool {
        true
    }

    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        // From a thread outside the pool every parallel op is injected into the pool and the
        // caller sleeps until it is done (a futex wake per op, hundreds per token); on a
        // worker the op forks and joins with the other workers directly.
        rayon::scope(|_| step())
    }

    fn upload_lora(&self, s: &LoraStackHost) -> Result<lora::CpuLora> {
        s.validate()?;
        let l = lora::CpuLora::new(
            s,
            self.options.lora_f16,
            self.options.amx && amx_available(),
        );
        l.collapse_pages();
        Ok(l)
    }

    fn upload_step(&self, plan: &StepPlan, reuse: Option<StepPlan>) -> Result<StepPlan> {
        let mut step = reuse.unwrap_or_default();
        step.clone_from(plan);
        Ok(step)
    }

    fn embedding(
        &self,
        table: &CpuWeight,
        step: &StepPlan,
        n_tokens: usize,
        dim: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        embedding::embedding(table, &step.token_ids[..n_tokens], dim, out)
    }

    fn rms_norm(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        crate::backend::check_norm_weight_rows(rows, w_rows)?;
        check_len("rms_norm", "x", x.len(), rows * dim)?;
        check_len("rms_norm", "out", out.len(), rows * dim)?;
        check_len("rms_norm", "w", w.len(), w_rows * dim)?;
        rms_norm::rms_norm(
            &x[..rows * dim],
            &w[..w_rows * dim],
            dim,
            w_rows,
            eps,
            &mut out[..rows * dim],
        );
        Ok(())
    }

    fn center(&self, x: &mut Vec<f32>, rows: usize, dim: usize) -> Result<()> {
        check_len("center", "x", x.len(), rows * dim)?;
        center::center(&mut x[..rows * dim], dim.max(1));
        Ok(())
    }

    fn matmul(
        &self,
        x: &Vec<f32>,
        w: &CpuWeight,
        bias: Option<&Vec<f32>>,
        rows: usize,
        k: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if w.cols != k || w.rows != n {
            return Err(Error::Backend {
                backend: "cpu".into(),
                msg: format!(
                    "matmul: weight is [{}, {}], call expects [{n}, {k}]",
                    w.rows, w.cols
                ),
            });
        }
        check_len("matmul", "x", x.len(), rows * k)?;
        check_len("matmul", "out", out.len(), rows * n)?;
        if let Some(b) = bias {
            check_len("matmul", "bias", b.len(), n)?;
        }
        matmul::matmul(
            &x[..rows * k],
            w,
            bias.map(|b| &b[..n]),
            rows,
            &mut out[..rows * n],
            self.options,
        );
        Ok(())
    }

    fn linears(
        &self,
        x: &Vec<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &StepPlan,
        jobs: &mut [crate::backend::LinearJob<'_, Self>],
        u: &mut Vec<f32>,
    ) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if amx_rows(self.options.amx, n_tokens) {
            return linears_amx::linears(x, n_tokens, n_in, step, jobs);
        }
        if n_tokens == 1 && jobs.len() <= linears::MAX_JOBS {
            linears::decode_linears(x, n_in, step, jobs, self.options.int8)
        } else {
            crate::backend::linears_each(self, x, n_tokens, n_in, step, jobs, u)
        }
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        cos_sin: &Vec<f32>,
        step: &StepPlan,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        check_len("rope", "x", x.len(), n_tokens * n_heads * head_dim)?;
        let table = crate::backend::rope_table_len(&step.positions, n_tokens, head_dim);
        check_len("rope", "cos_sin", cos_sin.len(), table)?;
        rope::rope(
            &mut x[..n_tokens * n_heads * head_dim],
            cos_sin,
            &step.positions[..n_tokens],
            n_heads,
            head_dim,
        );
        Ok(())
    }

    fn attention(
        &self,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        k_cache: &mut Vec<f32>,
        v_cache: &mut Vec<f32>,
        step: &StepPlan,
        shape: AttnShape,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        attention::attention(q, k, v, k_cache, v_cache, step, shape, out)
    }

    fn silu_mul(&self, gate: &Vec<f32>, up: &Vec<f32>, n: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("silu_mul", "gate", gate.len(), n)?;
        check_len("silu_mul", "up", up.len(), n)?;
        check_len("silu_mul", "out", out.len(), n)?;
        silu_mul::silu_mul(&gate[..n], &up[..n], &mut out[..n]);
        Ok(())
    }

    fn gelu_mul(&self, gate: &Vec<f32>, up: &Vec<f32>, n: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("gelu_mul", "gate", gate.len(), n)?;
        check_len("gelu_mul", "up", up.len(), n)?;
        check_len("gelu_mul", "out", out.len(), n)?;
        gelu_mul::gelu_mul(&gate[..n], &up[..n], &mut out[..n]);
        Ok(())
    }

    fn gelu(&self, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("gelu", "x", x.len(), n)?;
        check_len("gelu", "out", out.len(), n)?;
        gelu::gelu(&x[..n], &mut out[..n]);
        Ok(())
    }

    fn gelu_erf(&self, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("gelu_erf", "x", x.len(), n)?;
        check_len("gelu_erf", "out", out.len(), n)?;
        gelu::gelu_erf(&x[..n], &mut out[..n]);
        Ok(())
    }

    fn relu_sq(&self, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("relu_sq", "x", x.len(), n)?;
        check_len("relu_sq", "out", out.len(), n)?;
        relu_sq::relu_sq(&x[..n], &mut out[..n]);
        Ok(())
    }

    fn xielu(&self, x: &Vec<f32>, n: usize, p: Xielu, out: &mut Vec<f32>) -> Result<()> {
        check_len("xielu", "x", x.len(), n)?;
        check_len("xielu", "out", out.len(), n)?;
        xielu::xielu(&x[..n], p, &mut out[..n]);
        Ok(())
    }

    fn add_bias(&self, x: &mut Vec<f32>, bias: &Vec<f32>, rows: usize, dim: usize) -> Result<()> {
        check_len("add_bias", "x", x.len(), rows * dim)?;
        check_len("add_bias", "bias", bias.len(), dim)?;
        if dim > 0 {
            add_bias::add_bias(&mut x[..rows * dim], &bias[..dim]);
        }
        Ok(())
    }

    fn scale(&self, x: &mut Vec<f32>, s: f32, n: usize) -> Result<()> {
        check_len("scale", "x", x.len(), n)?;
        scale::scale(&mut x[..n], s);
        Ok(())
    }

    fn softcap(&self, x: &mut Vec<f32>, cap: f32, n: usize) -> Result<()> {
        check_len("softcap", "x", x.len(), n)?;
        crate::backend::check_softcap(cap)?;
        softcap::softcap(&mut x[..n], cap);
        Ok(())
    }

    fn clamp(&self, x: &mut Vec<f32>, limit: f32, n: usize) -> Result<()> {
        check_len("clamp", "x", x.len(), n)?;
        crate::backend::check_clamp(limit)?;
        clamp::clamp(&mut x[..n], limit);
        Ok(())
    }

    fn add(&self, dst: &mut Vec<f32>, src: &Vec<f32>, n: usize) -> Result<()> {
        check_len("add", "dst", dst.len(), n)?;
        check_len("add", "src", src.len(), n)?;
        add::add(&mut dst[..n], &src[..n]);
        Ok(())
    }

    fn lora_shrink(
        &self,
        x: &Vec<f32>,
        lora: &lora::CpuLora,
        step: &StepPlan,
        n_tokens: usize,
        u: &mut Vec<f32>,
    ) -> Result<()> {
        lora::lora_shrink(x, lora, step, n_tokens, u)
    }

    fn lora_expand(
        &self,
        u: &Vec<f32>,
        lora: &lora::CpuLora,
        step: &StepPlan,
        n_tokens: usize,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        lora::lora_expand(u, lora, step, n_tokens, y)
    }

    fn logits(
        &self,
        x: &Vec<f32>,
        norm: &Vec<f32>,
        eps: f32,
        lm_head: &CpuWeight,
        step: &StepPlan,
        hidden: usize,
        vocab: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        // Taken out of the lock for the call: the matmul inside forks, and a worker waiting on
        // it may meanwhile run another step's ops (another request's `logits` included), so
        // nothing may stay locked or borrowed across it.
        let lock = || self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let mut scratch = std::mem::take(&mut *lock());
        let r = logits::logits(
            x,
            norm,
            eps,
            lm_head,
            &step.logit_rows,
            hidden,
            vocab,
            &mut scratch,
            out,
            self.options,
        );
        *lock() = scratch;
        r
    }

    fn argmax(
        &self,
        logits: &Vec<f32>,
        rows: usize,
        vocab: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        argmax::argmax(logits, rows, vocab, out)
    }

    fn sample(
        &self,
        logits: &Vec<f32>,
        rows: usize,
        vocab: usize,
        step: &StepPlan,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        sample::sample(logits, rows, vocab, &step.pick_args, out)
    }

    fn samples_on_device(&self, vocab: usize) -> bool {
        vocab <= argmax::MAX_VOCAB
    }
}

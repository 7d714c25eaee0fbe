//! `impl Backend for CudaBackend`: host-side checks (the same errors the CPU reference gives),
//! then one launch per op (two for attention, logits and matmul with bias), all on one stream.

use std::sync::atomic::Ordering;

use cudarc::driver::{CudaSlice, PushKernelArg};
use dlp_engine::backend::{
    add_then_rms_norm, rope_each, rope_then_attention, AttnShape, Backend, LinearJob,
    LoraStackHost, ResidualNorm, StepPlan, StepShape,
};
use dlp_engine::tensor::HostTensor;
use dlp_engine::{Error, Result, Xielu};

use crate::counts::LaunchCounters;
use crate::launch::{cfg, check_len, grid_1d, int};
use crate::{err, CudaBackend, CudaLora, CudaStep, CudaWeight};

/// The device buffer of every op.
type Slice = CudaSlice<f32>;

impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;
    type Weight = CudaWeight;
    type Step = CudaStep;
    type Lora = CudaLora;

    fn name(&self) -> String {
        self.short_name()
    }

    fn kernels(&self) -> Option<String> {
        let o = &self.options;
        let mode = if o.bf16_compute {
            "bf16 compute (bf16 inputs, cublasGemmEx for > 8 rows)"
        } else if o.bf16_weights {
            "bf16 weights, f32 activations"
        } else {
            "f32 (cuBLAS sgemm)"
        };
        let x = &o.experimental;
        let mut mode = mode.to_string();
        if o.lora_bf16 {
            mode += ", LoRA bf16";
        }
        if o.kv_bf16 {
            mode += ", KV cache bf16";
        }
        let on = x.names_on();
        let mut exp = if on.is_empty() {
            String::new()
        } else {
            format!("; experimental: {}", on.join(", "))
        };
        if (x.fused_shrink || x.dependent_launch || x.lora_prefetch)
            && !self.pdl.load(Ordering::Relaxed)
        {
            exp += " (fused-shrink, dependent-launch and lora-prefetch inactive: no dependent \
                    launches here)";
        }
        for (path, needs) in x.inactive_paths(self.options.bf16_storage()) {
            exp += &format!(" ({path} inactive: it needs {needs})");
        }
        if let Some(t) = self.tune.describe() {
            let from = match self.options.tune {
                Some(_) => "CudaOptions::tune",
                None => crate::tune::TUNE_ENV,
            };
            exp += &format!("; tuned ({from}): {t}");
        }
        Some(format!("{} kernels, {mode}{exp}", self.arch()))
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: the contents are unspecified by the trait; CUDA allocates nothing for 0.
        unsafe { self.stream().alloc::<f32>(len.max(1)) }
            .map_err(|e| err(format!("cuMemAlloc of {len} floats: {e}")))
    }

    fn upload(&self, data: &[f32]) -> Result<CudaSlice<f32>> {
        self.put(data)
    }

    fn alloc_kv(&self, len: usize, _sparse: bool) -> Result<CudaSlice<f32>> {
        self.alloc(self.kv_words(len))
    }

    fn copies_kv(&self) -> bool {
        self.options.experimental.kv_copy
    }

    fn copy_kv(&self, buf: &mut CudaSlice<f32>, from: usize, to: usize, len: usize) -> Result<()> {
        self.copy_kv_values(buf, from, to, len)
    }

    fn kv_value_bytes(&self) -> usize {
        if self.options.kv_bf16 {
            2
        } else {
            4
        }
    }

    fn upload_kv(&self, data: &[f32]) -> Result<CudaSlice<f32>> {
        if !self.options.kv_bf16 {
            return self.put(data);
        }
        self.put(&crate::kv::pack_bf16(data))
    }

    fn download_kv(&self, buf: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>> {
        if !self.options.kv_bf16 {
            return self.download(buf, len);
        }
        let words = self.download(buf, self.kv_words(len))?;
        Ok(crate::kv::unpack_bf16(&words, len))
    }

    fn weight_bytes(&self, w: &CudaWeight) -> Option<usize> {
        Some(w.bytes())
    }

    fn device_bandwidth_gbs(&self) -> Option<f64> {
        // A probe that fails (2 GiB not free) leaves the bench without its memory section
        // rather than failing the run.
        self.copy_bandwidth_gbs()
            .map_err(|e| tracing::warn!("device copy-bandwidth probe failed: {e}"))
            .ok()
    }

    fn profiler_range(&self, capture: bool) {
        // A profiler that refuses leaves the run as it was: nothing to report but a warning.
        self.set_profiler_range(capture)
            .unwrap_or_else(|e| tracing::warn!("profiler range: {e}"));
    }

    fn download(&self, buf: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>> {
        check_len("download", "buf", buf.len(), len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.stream()
            .clone_dtoh(&buf.slice(0..len))
            .map_err(|e| err(format!("download of {len} values: {e}")))
    }

    fn download_into(&self, buf: &CudaSlice<f32>, len: usize, out: &mut Vec<f32>) -> Result<()> {
        check_len("download", "buf", buf.len(), len)?;
        // Into the caller's vector, which keeps its capacity from step to step: a decode
        // step's logit rows (513 KB a row on Llama 3) no longer take a fresh allocation each
        // step. The driver call `download` makes (`clone_dtoh` allocates, then copies the
        // same way); into pageable memory it returns once the copy is done. Only a longer
        // vector is filled first (the copy overwrites every value).
        out.resize(len, 0.0);
        if len == 0 {
            return Ok(());
        }
        self.stream()
            .memcpy_dtoh(&buf.slice(0..len), out.as_mut_slice())
            .map_err(|e| err(format!("download of {len} values: {e}")))
    }

    fn upload_weight(&self, w: &HostTensor) -> Result<CudaWeight> {
        if w.shape.len() != 2 {
            return Err(Error::invalid(format!(
                "upload_weight: expected a 2-D tensor, got shape {:?}",
                w.shape
            )));
        }
        let values = w.values();
        if self.options.bf16_storage() {
            let bits: Vec<u16> = values
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_bits())
                .collect();
            return Ok(CudaWeight {
                rows: w.shape[0],
                cols: w.shape[1],
                data: self.put::<f32>(&[])?,
                bf16: Some(self.put(&bits)?),
            });
        }
        Ok(CudaWeight {
            rows: w.shape[0],
            cols: w.shape[1],
            data: self.put(&values)?,
            bf16: None,
        })
    }

    fn upload_lora(&self, s: &LoraStackHost) -> Result<CudaLora> {
        self.upload_lora_impl(s)
    }

    fn upload_step(&self, plan: &StepPlan, reuse: Option<CudaStep>) -> Result<CudaStep> {
        self.upload_step_impl(plan, reuse)
    }

    fn run_recorded(
        &self,
        shape: &StepShape,
        plan: &StepPlan,
        reuse: Option<CudaStep>,
        body: &mut dyn FnMut(&CudaStep) -> Result<()>,
    ) -> Result<Option<CudaStep>> {
        self.run_recorded_graph(shape, plan, reuse, body)
    }

    fn embedding(
        &self,
        table: &CudaWeight,
        step: &CudaStep,
        n_tokens: usize,
        dim: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.embedding_impl(table, step, n_tokens, dim, out)
    }

    fn rms_norm(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.rms_norm_impl(x, w, rows, dim, w_rows, eps, out)
    }

    fn center(&self, x: &mut CudaSlice<f32>, rows: usize, dim: usize) -> Result<()> {
        self.center_impl(x, rows, dim)
    }

    fn matmul(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaWeight,
        bias: Option<&CudaSlice<f32>>,
        rows: usize,
        k: usize,
        n: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if w.cols != k || w.rows != n {
            return Err(err(format!(
                "matmul: weight is [{}, {}], call expects [{n}, {k}]",
                w.rows, w.cols
            )));
        }
        check_len("matmul", "x", x.len(), rows * k)?;
        check_len("matmul", "out", out.len(), rows * n)?;
        if let Some(b) = bias {
            check_len("matmul", "bias", b.len(), n)?;
        }
        if rows == 0 || n == 0 {
            return Ok(());
        }
        self.matmul_dispatch(x, w, bias, rows, out)
    }

    fn linears(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.linears_impl(x, n_tokens, n_in, step, jobs, u)
    }

    fn linears_silu_mul(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        gate_up: &mut [LinearJob<'_, Self>; 2],
        u: &mut CudaSlice<f32>,
        act: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.linears_silu_mul_impl(x, n_tokens, n_in, step, gate_up, u, act)
    }

    fn linear_add_rms_norm(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        job: &mut [LinearJob<'_, Self>; 1],
        u: &mut CudaSlice<f32>,
        norm: ResidualNorm<'_, Self>,
    ) -> Result<()> {
        self.linear_add_rms_norm_impl(x, n_tokens, n_in, step, job, u, norm)
    }

    fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        cos_sin: &CudaSlice<f32>,
        step: &CudaStep,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        check_len("rope", "x", x.len(), n_tokens * n_heads * head_dim)?;
        crate::attention::check_rope_table(cos_sin, step, n_tokens, head_dim)?;
        if n_tokens == 0 || n_heads == 0 || head_dim < 2 {
            return Ok(());
        }
        let (t, h, d) = (
            int("rope", n_tokens)?,
            int("rope", n_heads)?,
            int("rope", head_dim)?,
        );
        let positions = step.positions();
        let mut a = self.args(&self.k.rope);
        a.arg(x)
            .arg(cos_sin)
            .arg(&positions)
            .arg(&t)
            .arg(&h)
            .arg(&d);
        self.go("rope", a, grid_1d(n_tokens * n_heads * head_dim / 2))?;
        LaunchCounters::bump(&self.counts.rope);
        Ok(())
    }

    fn rope_qk(
        &self,
        q: &mut CudaSlice<f32>,
        k: &mut CudaSlice<f32>,
        cos_sin: &CudaSlice<f32>,
        step: &CudaStep,
        n_tokens: usize,
        (n_heads, n_kv_heads): (usize, usize),
        head_dim: usize,
    ) -> Result<()> {
        if !self.options.experimental.fused_rope {
            let heads = (n_heads, n_kv_heads);
            return rope_each(self, q, k, cos_sin, step, n_tokens, heads, head_dim);
        }
        check_len("rope", "q", q.len(), n_tokens * n_heads * head_dim)?;
        check_len("rope", "k", k.len(), n_tokens * n_kv_heads * head_dim)?;
        crate::attention::check_rope_table(cos_sin, step, n_tokens, head_dim)?;
        let heads = n_heads + n_kv_heads;
        if n_tokens == 0 || heads == 0 || head_dim < 2 {
            return Ok(());
        }
        let (t, d) = (int("rope", n_tokens)?, int("rope", head_dim)?);
        let (h, kvh) = (int("rope", n_heads)?, int("rope", n_kv_heads)?);
        let positions = step.positions();
        let mut a = self.args(&self.k.rope_qk);
        a.arg(q).arg(k).arg(cos_sin).arg(&positions);
        a.arg(&t).arg(&h).arg(&kvh).arg(&d);
        self.go(
            "rope (q and k)",
            a,
            grid_1d(n_tokens * heads * head_dim / 2),
        )?;
        LaunchCounters::bump(&self.counts.rope);
        Ok(())
    }

    fn attention(
        &self,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
        step: &CudaStep,
        s: AttnShape,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.attention_impl(None, q, k, v, k_cache, v_cache, step, s, out)
    }

    fn rope_attention(
        &self,
        q: &mut CudaSlice<f32>,
        k: &mut CudaSlice<f32>,
        v: &CudaSlice<f32>,
        cos_sin: &CudaSlice<f32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
        step: &CudaStep,
        s: AttnShape,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let x = &self.options.experimental;
        // Only where the fused store takes the step (decode: each token alone in its slot);
        // `StepShape` carries the same test, so a recorded graph's replays take the same path.
        // (Gemma 2's capped scores have the plain kernel only.)
        if x.rope_in_attention && x.fused_kv_store && step.tokens_alone && !s.capped() {
            crate::attention::check_rope_table(cos_sin, step, s.n_tokens, s.head_dim)?;
            return self.attention_impl(Some(cos_sin), q, k, v, k_cache, v_cache, step, s, out);
        }
        rope_then_attention(self, q, k, v, cos_sin, k_cache, v_cache, step, s, out)
    }

    fn silu_mul(&self, g: &Slice, up: &Slice, n: usize, out: &mut Slice) -> Result<()> {
        let count = Some(&self.counts.silu_mul);
        self.gated_impl("silu_mul", &self.k.silu_mul, count, g, up, n, out)
    }

    fn gelu_mul(&self, g: &Slice, up: &Slice, n: usize, out: &mut Slice) -> Result<()> {
        self.gated_impl("gelu_mul", &self.k.gelu_mul, None, g, up, n, out)
    }

    fn scale(&self, x: &mut Slice, s: f32, n: usize) -> Result<()> {
        self.in_place_impl("scale", &self.k.scale, x, s, n)
    }

    fn softcap(&self, x: &mut Slice, cap: f32, n: usize) -> Result<()> {
        dlp_engine::backend::check_softcap(cap)?;
        self.in_place_impl("softcap", &self.k.softcap, x, cap, n)
    }

    fn clamp(&self, x: &mut Slice, limit: f32, n: usize) -> Result<()> {
        dlp_engine::backend::check_clamp(limit)?;
        self.in_place_impl("clamp", &self.k.clamp, x, limit, n)
    }

    fn add_rms_norm(
        &self,
        x: &mut CudaSlice<f32>,
        y: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        LaunchCounters::bump(&self.counts.add_rms_norm);
        if !self.options.experimental.fused_norm {
            return add_then_rms_norm(self, x, y, w, rows, dim, eps, out);
        }
        self.add_rms_norm_impl(x, y, w, rows, dim, eps, out)
    }

    fn add(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, n: usize) -> Result<()> {
        self.add_impl(dst, src, n)
    }

    fn gelu(&self, x: &Slice, n: usize, out: &mut Slice) -> Result<()> {
        self.unary_impl("gelu", &self.k.gelu, x, n, &[], out)
    }

    fn gelu_erf(&self, x: &Slice, n: usize, out: &mut Slice) -> Result<()> {
        self.unary_impl("gelu_erf", &self.k.gelu_erf, x, n, &[], out)
    }

    fn relu_sq(&self, x: &Slice, n: usize, out: &mut Slice) -> Result<()> {
        self.unary_impl("relu_sq", &self.k.relu_sq, x, n, &[], out)
    }

    fn xielu(&self, x: &Slice, n: usize, p: Xielu, out: &mut Slice) -> Result<()> {
        let c = [p.alpha_p, p.alpha_n, p.beta, p.eps];
        self.unary_impl("xielu", &self.k.xielu, x, n, &c, out)
    }

    fn add_bias(&self, x: &mut Slice, bias: &Slice, rows: usize, dim: usize) -> Result<()> {
        self.add_bias_impl(x, bias, rows, dim)
    }

    fn lora_shrink(
        &self,
        x: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.lora_shrink_impl(x, l, step, n_tokens, u)
    }

    fn lora_expand(
        &self,
        u: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.lora_expand_impl(u, l, step, n_tokens, y)
    }

    fn logits(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaSlice<f32>,
        eps: f32,
        lm_head: &CudaWeight,
        step: &CudaStep,
        hidden: usize,
        vocab: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let rows = &step.plan.logit_rows;
        let n = rows.len();
        check_len("logits", "out", out.len(), n * vocab)?;
        check_len("logits", "norm", norm.len(), hidden)?;
        if lm_head.rows != vocab || lm_head.cols != hidden {
            return Err(err(format!(
                "logits: lm_head is [{}, {}], expected [{vocab}, {hidden}]",
                lm_head.rows, lm_head.cols
            )));
        }
        if let Some(&r) = rows.iter().max() {
            check_len("logits", "x", x.len(), (r as usize + 1) * hidden)?;
        }
        if n == 0 || hidden == 0 {
            return Ok(());
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.scratch_at_least(&mut scratch, n * hidden, "logits", || {
            self.alloc(n * hidden)
        })?;
        let d = int("logits", hidden)?;
        let dev_rows = step.logit_rows();
        let mut a = self.args(&self.k.logits_norm);
        a.arg(x)
            .arg(norm)
            .arg(&dev_rows)
            .arg(&d)
            .arg(&eps)
            .arg(&mut *s);
        let block = self.row_block(n);
        self.go("logits norm", a, cfg((n as u32, 1, 1), block, 0))?;
        self.matmul_dispatch(s, lm_head, None, n, out)
    }

    fn argmax(
        &self,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.argmax_impl(logits, rows, vocab, out)
    }

    fn argmax_on_device(&self) -> bool {
        self.options.experimental.device_argmax
    }

    fn sample(
        &self,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        step: &CudaStep,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.sample_impl(logits, rows, vocab, step, out)
    }

    fn samples_on_device(&self, vocab: usize) -> bool {
        self.options.experimental.device_sampling && crate::sample::vocab_fits(vocab)
    }
}

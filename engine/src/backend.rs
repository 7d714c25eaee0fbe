//! The op-level `Backend` trait. The forward pass (`model.rs`) is written once over it; each op
//! has a CPU version (`cpu/<op>.rs`, the reference), a WGSL kernel (`shaders/wgsl/<op>.wgsl`)
//! and a CUDA kernel (`cuda/kernels/<op>.cu`) with the same name and semantics.
//!
//! Buffers hold f32, row-major. Ops take the number of valid rows explicitly so that scratch
//! buffers sized for the largest step are reused by smaller ones (no allocation per token).

use crate::error::{Error, Result};
use crate::tensor::HostTensor;

mod attn_shape;
mod checks;
mod compose;
mod lora_stack;
mod step_plan;
pub use attn_shape::{check_clamp, check_softcap, AttnShape};
pub use checks::{check_kv_copy, check_norm_weight_rows, rope_table_len};
pub use compose::{
    add_then_rms_norm, gate_silu_width, linear_then_add_rms_norm, linears_each,
    linears_then_silu_mul, rope_each, rope_then_attention, ResidualNorm, ResidualSite,
};
pub use lora_stack::LoraStackHost;
pub use step_plan::StepPlan;

/// Marks an unused entry of a segment's mixture (`StepPlan::mix_slots`).
pub const NO_ADAPTER: u32 = u32::MAX;

/// A fresh id, unique in this process (never reused): what a recorded step
/// ([`Backend::run_recorded`]) keys on to know that the buffers it baked in still exist.
pub fn unique_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The constants of one layer's xIELU activation ([`Backend::xielu`]; Huang et al. 2024, arXiv
/// 2411.13010), as the kernels use them: `alpha_p = softplus(alpha_p')`, `alpha_n = beta +
/// softplus(alpha_n')` of the learned `alpha_p'`, `alpha_n'` ([`Xielu::from_learned`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Xielu {
    /// The positive side's quadratic coefficient.
    pub alpha_p: f32,
    /// The negative side's coefficient, `beta` included.
    pub alpha_n: f32,
    /// The linear term of both sides.
    pub beta: f32,
    /// The clamp of the negative side's `expm1(min(x, eps))` (negative; -1e-6 in Apertus).
    pub eps: f32,
}

impl Xielu {
    /// From the parameters a checkpoint stores (transformers' `XIELUActivation`: `alpha_p`,
    /// `alpha_n`, `beta`, `eps`; llama.cpp's `xielu.*` keys), folding the softplus in f64 as
    /// PyTorch's (`log1p(exp(x))`, `x` itself past 20) and ggml's `ggml_xielu` do.
    pub fn from_learned(alpha_p: f64, alpha_n: f64, beta: f64, eps: f64) -> Self {
        let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
        Xielu {
            alpha_p: softplus(alpha_p) as f32,
            alpha_n: (beta + softplus(alpha_n)) as f32,
            beta: beta as f32,
            eps: eps as f32,
        }
    }
}

/// Everything a step's launches depend on besides the contents of its plan: the identities of
/// the buffers it reads and writes (workspace, KV cache, LoRA stacks; [`unique_id`]s) and the
/// sizes that set its grids. Two steps of one shape launch the same kernels on the same
/// buffers, so a backend may record one and replay it for the other
/// ([`Backend::run_recorded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepShape {
    /// The [`crate::model::Workspace`]'s id.
    pub workspace: u64,
    /// The [`crate::kv_cache::KvCache`]'s id.
    pub kv: u64,
    /// Id of the model's current LoRA stacks (new on every `set_adapters`).
    pub lora: u64,
    /// Tokens in the step.
    pub n_tokens: usize,
    /// Segments (routing decisions) in the step.
    pub n_segments: usize,
    /// Entries per segment mixture (`K`).
    pub mix_k: usize,
    /// Rows whose logits are computed.
    pub n_logit_rows: usize,
    /// Whether any entry names an adapter (the LoRA launches run at all).
    pub any_lora: bool,
    /// [`StepPlan::tokens_alone_in_slots`] (a backend may launch other attention kernels then).
    pub tokens_alone_in_slots: bool,
    /// Whether the step ends with [`Backend::argmax`] of its logit rows.
    pub argmax: bool,
    /// Whether the step ends with [`Backend::sample`] of its logit rows.
    pub sample: bool,
}

/// One linear layer for [`Backend::linears`].
pub struct LinearJob<'a, B: Backend> {
    /// `W`, `[n_out, n_in]`.
    pub w: &'a B::Weight,
    /// Bias, `[n_out]`.
    pub bias: Option<&'a B::Buf>,
    /// Output features.
    pub n_out: usize,
    /// The module's LoRA stack, when the step applies adapters to it.
    pub lora: Option<&'a B::Lora>,
    /// `[n_tokens, n_out]`.
    pub out: &'a mut B::Buf,
}

/// A compute backend: buffer management plus the engine's ops. See the module docs.
pub trait Backend: Send + Sync + Sized {
    /// Device buffer of f32.
    type Buf: Send + Sync;
    /// A 2-D matmul / embedding weight `[rows, cols]`, in whatever storage the backend prefers.
    type Weight: Send + Sync;
    /// A [`StepPlan`] on the device.
    type Step: Send + Sync;
    /// A [`LoraStackHost`] on the device.
    type Lora: Send + Sync;

    /// Short name for messages (`cpu`, `wgpu:<adapter>`, `cuda:0`).
    fn name(&self) -> String;

    /// The kernel set that runs on this machine, where the backend picks one at run time
    /// (CPU: `AVX2+FMA, int8 activations (AVX2 maddubs)`); printed by `bench`. Default: none.
    fn kernels(&self) -> Option<String> {
        None
    }

    /// A buffer of `len` f32 (contents unspecified).
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A KV-cache buffer of `len` values (contents unspecified; a backend storing the cache in
    /// a narrower type than f32 may hold them packed, so the buffer's own length can be less:
    /// size KV buffers by values, never by their length). `sparse`: most of it may never
    /// be written (a server's slots each sized for the whole context), so memory should be
    /// committed as written, in small pages; otherwise it fills up (a batch sized to its
    /// needs). Default: [`Backend::alloc`].
    fn alloc_kv(&self, len: usize, sparse: bool) -> Result<Self::Buf> {
        let _ = sparse;
        self.alloc(len)
    }
    /// Values `from..from + len` of a sparse KV buffer ([`Backend::alloc_kv`]) are no longer
    /// needed (their sequence ended): the backend may give their memory back; they may then
    /// read as anything. Default: nothing.
    fn release_kv(&self, buf: &mut Self::Buf, from: usize, len: usize) {
        let _ = (buf, from, len);
    }
    /// Whether [`Backend::copy_kv`] works here (prefix sharing, [`crate::prefix`], is off
    /// where it does not). Default: false.
    fn copies_kv(&self) -> bool {
        false
    }
    /// Copies values `from..from + len` of KV buffer `buf` ([`Backend::alloc_kv`]) to
    /// `to..to + len`, after every recorded write and before every later read; the ranges do
    /// not overlap. Units are values, as in `alloc_kv`.
    ///
    /// # Errors
    /// A range past the buffer; unsupported where [`Backend::copies_kv`] is false (default).
    fn copy_kv(&self, buf: &mut Self::Buf, from: usize, to: usize, len: usize) -> Result<()> {
        let _ = (buf, from, to, len);
        Err(crate::error::Error::unsupported(format!(
            "{}: copying KV-cache rows",
            self.name()
        )))
    }
    /// Bytes of memory one KV-cache value takes (4 by default: f32; a backend that stores the
    /// cache in bf16 says 2).
    fn kv_value_bytes(&self) -> usize {
        4
    }
    /// A KV-cache buffer holding `data` as this backend stores the cache (a test or tool
    /// seeding a cache). Default: [`Backend::upload`].
    fn upload_kv(&self, data: &[f32]) -> Result<Self::Buf> {
        self.upload(data)
    }
    /// The first `len` values of KV-cache buffer `buf`, as f32. Default: [`Backend::download`].
    fn download_kv(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>> {
        self.download(buf, len)
    }
    /// A buffer holding `data`.
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    /// The first `len` values of `buf`.
    fn download(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>>;
    /// The first `len` values of `buf` into `out` (replacing its contents). Backends that can
    /// copy into host memory they are given override it, so that decode allocates nothing.
    fn download_into(&self, buf: &Self::Buf, len: usize, out: &mut Vec<f32>) -> Result<()> {
        *out = self.download(buf, len)?;
        Ok(())
    }
    /// A weight from a 2-D host tensor `[rows, cols]` (f32, or packed when
    /// [`Backend::packed_weights`] is true).
    fn upload_weight(&self, w: &HostTensor) -> Result<Self::Weight>;
    /// Bytes of memory weight `w` holds, where the backend can tell (`None` by default).
    fn weight_bytes(&self, _w: &Self::Weight) -> Option<usize> {
        None
    }
    /// The device's own memory bandwidth in GB/s, measured when called (GPU backends: a
    /// device-to-device copy, bytes read plus written), against which `bench` reads each decode
    /// figure. `None` by default: the CPU's bound is host memory, which `bench` measures itself.
    fn device_bandwidth_gbs(&self) -> Option<f64> {
        None
    }
    /// Starts (`capture`) or stops the attached profiler's capture range, so that a profile
    /// holds only the steps between (CUDA: `cuProfilerStart`/`Stop`, honoured by `ncu
    /// --profile-from-start off` and `nsys profile --capture-range=cudaProfilerApi`). Default:
    /// nothing (as with no profiler attached).
    fn profiler_range(&self, _capture: bool) {}
    /// Whether [`Backend::upload_weight`] keeps packed tensors ([`crate::tensor::Packed`])
    /// compact and computes on them; loaders then skip dequantising. Default: false (a packed
    /// tensor is dequantised to f32 on upload).
    fn packed_weights(&self) -> bool {
        false
    }
    /// What a GGUF's packed tensors are kept as (where `packed_weights`), for `bench`.
    fn packed_description(&self) -> &'static str {
        "packed (the file's own types)"
    }
    /// Runs `step` (one forward pass) where this backend's ops run best. Default: on the
    /// caller's thread. The CPU backend runs it on a worker of its thread pool, so that each
    /// op's parallel loop forks and joins among the workers instead of waking the caller's
    /// thread once per op.
    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        step()
    }
    /// A LoRA stack on the device.
    fn upload_lora(&self, s: &LoraStackHost) -> Result<Self::Lora>;
    /// The step on the device, reusing `reuse`'s allocation when it is large enough.
    fn upload_step(&self, plan: &StepPlan, reuse: Option<Self::Step>) -> Result<Self::Step>;
    /// Runs the launches of one step: uploads `plan` (into `reuse` when it fits) and calls
    /// `body` on it; returns the step buffers for the next call's `reuse`. A backend that
    /// records steps (CUDA graphs) may instead copy `plan` into the buffers of an earlier
    /// recording of the same `shape` and replay it without calling `body`, so `body` must
    /// launch the same work for every plan of one shape, and the caller checks each plan
    /// (token ids, KV positions, adapter slots) on the host before. Default: upload and call.
    fn run_recorded(
        &self,
        shape: &StepShape,
        plan: &StepPlan,
        reuse: Option<Self::Step>,
        body: &mut dyn FnMut(&Self::Step) -> Result<()>,
    ) -> Result<Option<Self::Step>> {
        let _ = shape;
        let step = self.upload_step(plan, reuse)?;
        body(&step)?;
        Ok(Some(step))
    }

    /// `out[t, :] = table[token_ids[t], :]` for the step's `T` tokens; `dim` = columns of `table`.
    fn embedding(
        &self,
        table: &Self::Weight,
        step: &Self::Step,
        n_tokens: usize,
        dim: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w[r % w_rows, :]` for `rows` rows of
    /// width `dim`; `w` is `[w_rows, dim]`: one row for every row of `x` (`w_rows` 1), or one per
    /// head where `x` is `[tokens, heads, dim]` (`w_rows` = heads: StableLM 2 12B's and Command
    /// R+'s query/key norms, which have a weight of their own in each head).
    ///
    /// # Errors
    /// `w_rows` 0 or not dividing `rows`; buffers shorter than the shapes.
    #[allow(clippy::too_many_arguments)]
    fn rms_norm(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `x[r, :] -= mean(x[r, :])` in place for `rows` rows of width `dim`: LayerNorm's first
    /// step. The RMSNorm that reads the result completes it (`layer_norm(x) * w =
    /// rms_norm(x - mean(x)) * w`, the same eps), so a LayerNorm model keeps its residual
    /// stream centered and runs `rms_norm`, `add_rms_norm` and the norm in `logits` as its
    /// LayerNorm (`linear_add_rms_norm` is not used for it: the product is centered first).
    fn center(&self, x: &mut Self::Buf, rows: usize, dim: usize) -> Result<()>;
    /// `out[rows, n] = x[rows, k] @ W^T (+ bias[n])` where `W` is `[n, k]`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        x: &Self::Buf,
        w: &Self::Weight,
        bias: Option<&Self::Buf>,
        rows: usize,
        k: usize,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// Several linear layers that read the same input `x` (`[n_tokens, n_in]`): q/k/v,
    /// gate/up, or one alone. Each job is `out = x @ W^T (+ bias)` plus, with `lora`, the
    /// step's fused LoRA mixture; `u` is scratch for the shrink (`[T, K, max_rank]`). Default:
    /// [`linears_each`] (matmul, lora_shrink, lora_expand per job). Backends may fuse them;
    /// the CPU does for decode.
    fn linears(
        &self,
        x: &Self::Buf,
        n_tokens: usize,
        n_in: usize,
        step: &Self::Step,
        jobs: &mut [LinearJob<'_, Self>],
        u: &mut Self::Buf,
    ) -> Result<()> {
        linears_each(self, x, n_tokens, n_in, step, jobs, u)
    }
    /// The SwiGLU input of a feed-forward block: [`Backend::linears`] on `gate_up` (gate, then
    /// up; both `n` wide, else an error), then `act[t, i] = silu(gate[t, i]) * up[t, i]`
    /// ([`Backend::silu_mul`]; `act`: `[n_tokens, n]`). Default: those two
    /// ([`linears_then_silu_mul`]). A backend may fold the activation into the products (CUDA's
    /// `fused-silu`): `act` is the same; the jobs' outputs then hold the products or what they
    /// held before (nothing reads them after).
    #[allow(clippy::too_many_arguments)]
    fn linears_silu_mul(
        &self,
        x: &Self::Buf,
        n_tokens: usize,
        n_in: usize,
        step: &Self::Step,
        gate_up: &mut [LinearJob<'_, Self>; 2],
        u: &mut Self::Buf,
        act: &mut Self::Buf,
    ) -> Result<()> {
        linears_then_silu_mul(self, x, n_tokens, n_in, step, gate_up, u, act)
    }
    /// The o or down projection and the residual add and RMSNorm that read its output:
    /// [`Backend::linears`] on `job` (`out`: `[n_tokens, n_out]`), then `norm` (see
    /// [`ResidualNorm`]: `residual += out`, `norm.out = rms_norm(residual) * norm.w`, rows of
    /// `n_out`). Default: those two ([`linear_then_add_rms_norm`]). A backend may fold the add
    /// and norm into the product's launch (CUDA's `norm-in-matvec`) with the same values; the
    /// job's `out` then holds the product as well.
    #[allow(clippy::too_many_arguments)]
    fn linear_add_rms_norm(
        &self,
        x: &Self::Buf,
        n_tokens: usize,
        n_in: usize,
        step: &Self::Step,
        job: &mut [LinearJob<'_, Self>; 1],
        u: &mut Self::Buf,
        norm: ResidualNorm<'_, Self>,
    ) -> Result<()> {
        linear_then_add_rms_norm(self, x, n_tokens, n_in, step, job, u, norm)
    }
    /// Rotary embedding in place on `x` `[T, n_heads, head_dim]`, HF rotate-half layout:
    /// for `i < head_dim/2`, pair `(i, i + head_dim/2)` rotates by the angle at
    /// `cos_sin[(pos * head_dim/2 + i) * 2 + {0: cos, 1: sin}]`, `pos` = the token's position.
    fn rope(
        &self,
        x: &mut Self::Buf,
        cos_sin: &Self::Buf,
        step: &Self::Step,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()>;
    /// [`Backend::rope`] on a step's queries `q` (`[T, n_heads, head_dim]`) and keys `k`
    /// (`[T, n_kv_heads, head_dim]`). Default: two `rope` calls; a backend may do both in one
    /// pass (CUDA's `rope_qk`) with the same results.
    #[allow(clippy::too_many_arguments)]
    fn rope_qk(
        &self,
        q: &mut Self::Buf,
        k: &mut Self::Buf,
        cos_sin: &Self::Buf,
        step: &Self::Step,
        n_tokens: usize,
        (n_heads, n_kv_heads): (usize, usize),
        head_dim: usize,
    ) -> Result<()> {
        rope_each(
            self,
            q,
            k,
            cos_sin,
            step,
            n_tokens,
            (n_heads, n_kv_heads),
            head_dim,
        )
    }
    /// Causal GQA attention over the KV cache. First stores `k`, `v` (`[T, n_kv_heads*head_dim]`)
    /// at each token's (kv slot, position) in `k_cache` / `v_cache`; then each token attends to
    /// positions `start..=pos` of its slot (`start = pos + 1 - window` with a window, else 0):
    /// `out[t, h, :] = softmax(cap(q·K^T * scale)) V`, query head `h` reading kv head
    /// `h / (n_heads / n_kv_heads)`; `cap(s) = softcap * tanh(s / softcap)` where
    /// `softcap > 0`, else `s` ([`AttnShape`]).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        k_cache: &mut Self::Buf,
        v_cache: &mut Self::Buf,
        step: &Self::Step,
        shape: AttnShape,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// [`Backend::rope_qk`] on the step's `q` and `k` by `cos_sin`, then [`Backend::attention`]
    /// (the default, which every backend may keep). A backend may fuse them (CUDA's
    /// `rope-in-attention` rotates q and k as its attention kernel reads them): the outputs,
    /// `out` and the caches, are the same; `q` and `k` then hold either the rotated values or
    /// what they held before (nothing reads them after attention). Shapes and errors as those
    /// two ops'.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &self,
        q: &mut Self::Buf,
        k: &mut Self::Buf,
        v: &Self::Buf,
        cos_sin: &Self::Buf,
        k_cache: &mut Self::Buf,
        v_cache: &mut Self::Buf,
        step: &Self::Step,
        shape: AttnShape,
        out: &mut Self::Buf,
    ) -> Result<()> {
        rope_then_attention(self, q, k, v, cos_sin, k_cache, v_cache, step, shape, out)
    }
    /// `out[i] = silu(gate[i]) * up[i]` for `n` values.
    fn silu_mul(
        &self,
        gate: &Self::Buf,
        up: &Self::Buf,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out[i] = gelu(gate[i]) * up[i]` for `n` values (GeGLU, Gemma's), GELU's tanh
    /// approximation (PyTorch's `gelu(approximate="tanh")`), computed as the equal
    /// `g / (1 + exp(-2 sqrt(2/pi) (g + 0.044715 g^3)))`.
    fn gelu_mul(
        &self,
        gate: &Self::Buf,
        up: &Self::Buf,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out[i] = gelu(x[i])` for `n` values: the ungated feed-forward activation (StarCoder2's
    /// `gelu_pytorch_tanh`, Phi-2's `gelu_new`), GELU's tanh approximation computed as
    /// [`Backend::gelu_mul`] computes it (`gelu_mul` with `up` all ones, to the bit).
    fn gelu(&self, x: &Self::Buf, n: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out[i] = x[i] / 2 * (1 + erf(x[i] / sqrt(2)))` for `n` values: the exact GELU
    /// (transformers' `gelu`, PyTorch's default `F.gelu`), GPT-NeoX's and Falcon's ungated
    /// activation.
    fn gelu_erf(&self, x: &Self::Buf, n: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out[i] = max(x[i], 0)^2` for `n` values, NaN kept: the squared ReLU (transformers'
    /// `relu2`; So et al. 2021, arXiv 2109.08668), Arcee's and Nemotron's ungated activation.
    fn relu_sq(&self, x: &Self::Buf, n: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out[i] = xielu(x[i])` for `n` values with one layer's constants `p`: `alpha_p * x * x +
    /// beta * x` for `x > 0`, else `(expm1(min(x, eps)) - x) * alpha_n + beta * x` (xIELU, Huang
    /// et al. 2024, arXiv 2411.13010), Apertus's ungated activation.
    fn xielu(&self, x: &Self::Buf, n: usize, p: Xielu, out: &mut Self::Buf) -> Result<()>;
    /// `x[r, :] += bias` for `rows` rows of `dim` (`x`: `[rows, dim]`, `bias`: `[dim]`): the
    /// bias of a LayerNorm (StableLM's, StarCoder2's, Phi-2's), added after the norm.
    fn add_bias(&self, x: &mut Self::Buf, bias: &Self::Buf, rows: usize, dim: usize) -> Result<()>;
    /// `x[i] *= s` for `n` values (Gemma's embedding scale).
    fn scale(&self, x: &mut Self::Buf, s: f32, n: usize) -> Result<()>;
    /// `x[i] = cap * tanh(x[i] / cap)` for `n` values, `cap > 0` (Gemma 2's final logit soft
    /// cap, `final_logit_softcapping`).
    fn softcap(&self, x: &mut Self::Buf, cap: f32, n: usize) -> Result<()>;
    /// `x[i] = min(max(x[i], -limit), limit)` for `n` values, `limit > 0`, NaN kept (PyTorch's
    /// `clamp_`): OLMo's `clip_qkv` on the query, key and value projections. (llama.cpp's
    /// `ggml_clamp` turns a NaN into a limit; only a non-finite projection tells them apart.)
    fn clamp(&self, x: &mut Self::Buf, limit: f32, n: usize) -> Result<()>;
    /// `dst[i] += src[i]` for `n` values.
    fn add(&self, dst: &mut Self::Buf, src: &Self::Buf, n: usize) -> Result<()>;
    /// The residual add and the RMSNorm that reads its result: `x[r, :] += y[r, :]`, then
    /// `out[r, :] = rms_norm(x[r, :]) * w` for `rows` rows of `dim` (`x`, `y`, `out`:
    /// `[rows, dim]`; `w`: `[dim]`). Default: [`Backend::add`] then [`Backend::rms_norm`];
    /// a backend may fuse them into one pass (CUDA's `add_rms_norm`) with the same results.
    #[allow(clippy::too_many_arguments)]
    fn add_rms_norm(
        &self,
        x: &mut Self::Buf,
        y: &Self::Buf,
        w: &Self::Buf,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &mut Self::Buf,
    ) -> Result<()> {
        add_then_rms_norm(self, x, y, w, rows, dim, eps, out)
    }
    /// Fused LoRA, first half, for all segments at once: for token `t` in segment `s` and each
    /// entry `k` of its mixture with slot `a` (rank `r`, scale `c`, weight `w`):
    /// `u[t, k, j] = w * c * dot(A_a[j, :], x[t, :])` for `j < r`. `u` is `[T, K, max_rank]`;
    /// entries past `r` are not read by `lora_expand` and may hold anything.
    fn lora_shrink(
        &self,
        x: &Self::Buf,
        lora: &Self::Lora,
        step: &Self::Step,
        n_tokens: usize,
        u: &mut Self::Buf,
    ) -> Result<()>;
    /// Fused LoRA, second half: `y[t, :] += sum_k sum_{j<r} u[t, k, j] * B_a[:, j]` with the
    /// same slots as `lora_shrink`.
    fn lora_expand(
        &self,
        u: &Self::Buf,
        lora: &Self::Lora,
        step: &Self::Step,
        n_tokens: usize,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// Final RMSNorm + lm_head on the step's `logit_rows` only:
    /// `out[i, :] = rms_norm(x[logit_rows[i], :]) @ W^T`, `W` `[vocab, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn logits(
        &self,
        x: &Self::Buf,
        norm: &Self::Buf,
        eps: f32,
        lm_head: &Self::Weight,
        step: &Self::Step,
        hidden: usize,
        vocab: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Greedy pick of each logit row: `out[i]` = the index of the first maximum of row `i` of
    /// `logits` (`[rows, vocab]`) as an f32 (exact: `vocab` ≤ 2^24), or -1 when the row holds a
    /// NaN or no usable logit (all `-inf`). Compared as the sampler's greedy path compares
    /// ([`crate::sampler::Sampler::try_sample`]): `+inf` as `f32::MAX`, `-0.0` equal to
    /// `+0.0`, ties to the lower index. A greedy decode step then downloads `rows` values
    /// instead of `rows × vocab` ([`crate::model::Model::forward_argmax`]).
    ///
    /// # Errors
    /// Short buffers, or `vocab` above 2^24.
    fn argmax(
        &self,
        logits: &Self::Buf,
        rows: usize,
        vocab: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Whether a step may run [`Backend::argmax`] on the device (else
    /// [`crate::model::Model::forward_argmax`] downloads the rows and picks on the host, with
    /// the same result): a backend's switch for a kernel not yet verified on hardware.
    fn argmax_on_device(&self) -> bool {
        true
    }

    /// Each logit row's token at its temperature from a uniform draw the host made: `out[i]`
    /// = the token of row `i` of `logits` (`[rows, vocab]`) as an f32, or -1 for a refused
    /// row, with row `i`'s temperature and draw in `step`'s
    /// [`StepPlan::pick_args`](crate::backend::StepPlan::pick_args). The host sampler's draw
    /// with no filter, bias or penalty, to the bit ([`crate::cpu::sample::pick_row`]: its
    /// probabilities, f64 block sums and walk in the same order); temperature 0 is
    /// [`Backend::argmax`]. A sampled decode step then downloads `rows` values
    /// ([`crate::model::Model::forward_sample`]). Only where [`Backend::samples_on_device`].
    ///
    /// # Errors
    /// Short buffers or arguments, a vocabulary the backend does not sample, or (by default)
    /// unsupported.
    fn sample(
        &self,
        logits: &Self::Buf,
        rows: usize,
        vocab: usize,
        step: &Self::Step,
        out: &mut Self::Buf,
    ) -> Result<()> {
        let _ = (logits, rows, vocab, step, out);
        Err(Error::unsupported(format!("{}: sample", self.name())))
    }

    /// Whether a step may run [`Backend::sample`] for a vocabulary of `vocab` entries (else
    /// [`crate::model::Model::forward_sample`] downloads the rows and draws on the host, with
    /// the same result). Off by default: the draw sums in f64, which WGSL lacks.
    fn samples_on_device(&self, vocab: usize) -> bool {
        let _ = vocab;
        false
    }
}

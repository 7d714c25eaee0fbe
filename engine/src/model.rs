//! The Llama-family decoder, written once over [`Backend`]: every family of
//! [`crate::config::Arch`] (Llama 2/3, Mistral, Qwen, Phi-3, Gemma 1/2/3, OLMo, Cohere,
//! StableLM, StarCoder2, Phi, ...) differs only in configuration (biases, GQA, RoPE scaling,
//! NoPE layers, tied embeddings, sliding windows, query/key norms per head or over all heads,
//! Gemma's scaled embedding, GELU and norms around both sub-blocks, OLMo 2's norms after them
//! only, soft caps, Granite's multipliers, LayerNorms with or without biases, parallel blocks,
//! ungated feed-forwards) and, for Apertus, each layer's learned xIELU constants.

use crate::backend::{
    AttnShape, Backend, LinearJob, ResidualNorm, ResidualSite, StepPlan, StepShape, NO_ADAPTER,
};
use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::loader::peft::PeftAdapter;
use crate::{lora, LoraModule};

mod attend;
mod load;
mod picks;
mod plan_check;
mod workspace;

pub use workspace::Workspace;

use picks::PickOp;

/// A linear layer `y = x W^T (+ b)`.
pub struct Linear<B: Backend> {
    w: B::Weight,
    b: Option<B::Buf>,
    n_in: usize,
    n_out: usize,
}

/// A norm's weight and, for a LayerNorm with a bias ([`crate::config::Arch::norm_bias`]), its
/// bias (`[hidden]` each).
struct Norm<B: Backend> {
    weight: B::Buf,
    bias: Option<B::Buf>,
}

struct Layer<B: Backend> {
    /// The norms of the attention's and the feed-forward's inputs; `None` for OLMo 2, whose
    /// linears read the residual stream as it is ([`ModelConfig::pre_norms`]), and the
    /// feed-forward's of a [`ModelConfig::parallel_block`].
    attn_norm: Option<Norm<B>>,
    ffn_norm: Option<Norm<B>>,
    /// The `q_norm` and `k_norm` weights, applied to the query and key before RoPE: Qwen3's
    /// and Gemma 3's per head (`[head_dim]` each), OLMo 2's over all heads (`[q_dim]`,
    /// `[kv_dim]`; [`ModelConfig::qk_norm_widths`]), StableLM 2 12B's and Command R+'s a row per
    /// head (`[q_dim]`, `[kv_dim]`, after `center`: [`ModelConfig::qk_norm_per_head`]); `None`
    /// for the other families.
    qk_norm: Option<(B::Buf, B::Buf)>,
    /// Gemma 2's, 3's and OLMo 2's norms of the attention's and the feed-forward's outputs
    /// (`post_attention_layernorm`, `post_feedforward_layernorm`; Gemma's `ffn_norm` is then
    /// its `pre_feedforward_layernorm`); `None` for the other families.
    post_norms: Option<(B::Buf, B::Buf)>,
    /// Indexed by [`LoraModule::index`]; `None` for a module the model lacks
    /// ([`ModelConfig::has_module`]: an ungated feed-forward's gate).
    linears: [Option<Linear<B>>; 7],
    /// The fused-LoRA stack of each module; `None` where no loaded adapter targets it.
    lora: [Option<B::Lora>; 7],
    /// Largest rank in each stack (0 when none).
    lora_max_rank: [usize; 7],
    /// The layer's xIELU constants ([`Activation::Xielu`], Apertus's); `None` for the other
    /// activations.
    xielu: Option<crate::backend::Xielu>,
}

impl<B: Backend> Norm<B> {
    /// `out = rms_norm(x) * weight (+ bias)` over `rows` rows of `dim` (`x` already centered in
    /// a LayerNorm model, so this is its LayerNorm).
    fn apply(
        &self,
        b: &B,
        x: &B::Buf,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &mut B::Buf,
    ) -> Result<()> {
        b.rms_norm(x, &self.weight, rows, dim, 1, eps, out)?;
        match &self.bias {
            Some(bias) => b.add_bias(out, bias, rows, dim),
            None => Ok(()),
        }
    }
}

impl<B: Backend> Layer<B> {
    /// Module `m`.
    ///
    /// # Errors
    /// A module this model does not have (the forward pass asks only for those it has).
    fn linear(&self, m: LoraModule) -> Result<&Linear<B>> {
        self.linears[m.index()]
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("this model has no {} module", m.hf_path())))
    }
}

/// Module `m` of `layer` as a [`LinearJob`] writing `out`, with its LoRA stack when `lora_on`.
///
/// # Errors
/// A module the model lacks ([`Layer::linear`]).
fn linear_job<'a, B: Backend>(
    layer: &'a Layer<B>,
    m: LoraModule,
    lora_on: bool,
    out: &'a mut B::Buf,
) -> Result<LinearJob<'a, B>> {
    let l = layer.linear(m)?;
    Ok(LinearJob {
        w: &l.w,
        bias: l.b.as_ref(),
        n_out: l.n_out,
        lora: layer.lora[m.index()].as_ref().filter(|_| lora_on),
        out,
    })
}

/// A loaded model on a backend, with its adapters.
pub struct Model<B: Backend> {
    /// The backend the weights live on.
    pub backend: B,
    /// Hyper-parameters.
    pub config: ModelConfig,
    embed: B::Weight,
    /// `None` when tied to `embed`.
    lm_head: Option<B::Weight>,
    norm: B::Buf,
    layers: Vec<Layer<B>>,
    /// What each row of logits adds after the head (`[vocab]`): the final LayerNorm's bias
    /// through the head, and the head's own bias (Phi's); `None` where the model has neither
    /// (`load::logit_bias`).
    logit_bias: Option<B::Buf>,
    rope: B::Buf,
    /// The table of the sliding-window layers (those with a window), where their RoPE differs
    /// from the others' (Gemma 3's and OLMo 3's; [`ModelConfig::local_rope_theta`]).
    rope_local: Option<B::Buf>,
    /// The identity table of NoPE layers ([`ModelConfig::rope_layers`] false), where the model
    /// has any ([`crate::rope_table::identity_table`]).
    rope_none: Option<B::Buf>,
    /// The queries' table where the model scales them by position and the context reaches the
    /// step where that starts (Ministral 3's attention temperature;
    /// [`crate::rope_table::query_table`]); the keys rotate by `rope`.
    rope_query: Option<B::Buf>,
    /// Positions covered by the RoPE table: the longest context this model instance serves.
    pub max_context: usize,
    adapter_names: Vec<String>,
    /// A [`crate::backend::unique_id`] of the current LoRA stacks (part of [`StepShape`]).
    lora_id: u64,
}

/// What a step downloads: every logit row, or each row's pick by `op` ([`picks`]).
enum StepOut<'a> {
    Logits(&'a mut Vec<f32>),
    Picks(PickOp, &'a mut Vec<f32>),
}

impl<B: Backend> Model<B> {
    /// Replaces the loaded adapters: slot `i` is `adapters[i]`. Each (layer, module) that any
    /// adapter targets gets one stack with all of them side by side.
    pub fn set_adapters(&mut self, adapters: &[PeftAdapter]) -> Result<()> {
        for (i, a) in adapters.iter().enumerate() {
            if adapters[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::invalid(format!(
                    "two adapters are named `{}`",
                    a.name
                )));
            }
        }
        // Every adapter's modules exist here, checked before any stack is replaced.
        for a in adapters {
            if let Some(((layer, m), _)) =
                (a.pairs.iter()).find(|((_, m), _)| !self.config.has_module(*m))
            {
                return Err(Error::invalid(format!(
                    "adapter `{}` targets layer {layer}'s {}, which this model does not have",
                    a.name,
                    m.hf_path()
                )));
            }
        }
        // New stacks, new id (first: a failed upload below has already replaced some).
        self.lora_id = crate::backend::unique_id();
        for (li, layer) in self.layers.iter_mut().enumerate() {
            for m in LoraModule::ALL {
                let s = lora::stack(adapters, &self.config, li, m);
                layer.lora_max_rank[m.index()] = s.as_ref().map_or(0, |s| s.max_rank);
                layer.lora[m.index()] = s.map(|s| self.backend.upload_lora(&s)).transpose()?;
            }
        }
        self.adapter_names = adapters.iter().map(|a| a.name.clone()).collect();
        Ok(())
    }

    /// Bytes of weights one decode step reads, where the backend can tell
    /// ([`Backend::weight_bytes`]): every linear of every layer and the output head (the
    /// embedding table when tied; otherwise a lookup reads one row of it).
    pub fn weight_bytes_per_token(&self) -> Option<u64> {
        let b = &self.backend;
        let mut total = b.weight_bytes(self.lm_head.as_ref().unwrap_or(&self.embed))?;
        for layer in &self.layers {
            for l in layer.linears.iter().flatten() {
                total += b.weight_bytes(&l.w)?;
            }
        }
        Some(total as u64)
    }

    /// Names of the loaded adapters, by slot.
    pub fn adapter_names(&self) -> &[String] {
        &self.adapter_names
    }

    /// Largest LoRA rank of any loaded adapter in any module.
    pub fn max_lora_rank(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.lora_max_rank)
            .max()
            .unwrap_or(0)
    }

    /// A KV cache for `slots` sequences of up to `capacity` positions (at most `max_context`),
    /// sized to what they need.
    pub fn kv_cache(&self, slots: usize, capacity: usize) -> Result<KvCache<B>> {
        self.kv_cache_with(slots, capacity, false)
    }

    /// As [`Model::kv_cache`]; `sparse` when most positions will stay unused (see
    /// [`Backend::alloc_kv`]).
    pub fn kv_cache_with(&self, slots: usize, capacity: usize, sparse: bool) -> Result<KvCache<B>> {
        if capacity > self.max_context {
            return Err(Error::invalid(format!(
                "a context of {capacity} positions exceeds this model's limit of {}",
                self.max_context
            )));
        }
        KvCache::new(
            &self.backend,
            &self.config,
            slots.max(1),
            capacity.max(1),
            sparse,
        )
    }

    /// Runs one step and returns the logits of `plan.logit_rows`, `[rows, vocab]`.
    pub fn forward(
        &self,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_into(plan, kv, ws, &mut out)?;
        Ok(out)
    }

    /// As [`Model::forward`], writing the logits into `logits` (reused across steps, so a
    /// decode loop allocates nothing per token on the CPU backend).
    pub fn forward_into(
        &self,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        self.backend
            .run_step(|| self.forward_on_backend(plan, kv, ws, StepOut::Logits(logits)))
    }

    /// The body of [`Model::forward_into`] and of the picking forwards ([`picks`]), run through
    /// [`Backend::run_step`].
    fn forward_on_backend(
        &self,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        out: StepOut<'_>,
    ) -> Result<()> {
        let c = &self.config;
        let b = &self.backend;
        let t = plan.n_tokens();
        self.check_plan(plan, kv, ws)?;
        let any_lora = plan.mix_slots.iter().any(|&s| s != NO_ADAPTER);
        let pick = match out {
            StepOut::Picks(op, _) => Some(op),
            StepOut::Logits(_) => None,
        };
        let recorded = StepShape {
            workspace: ws.id,
            kv: kv.id,
            lora: self.lora_id,
            n_tokens: t,
            n_segments: plan.n_segments(),
            mix_k: plan.mix_k,
            n_logit_rows: plan.logit_rows.len(),
            any_lora,
            tokens_alone_in_slots: plan.tokens_alone_in_slots(),
            argmax: pick == Some(PickOp::Argmax),
            sample: pick == Some(PickOp::Sample),
        };
        let shape = AttnShape {
            n_tokens: t,
            n_heads: c.num_heads,
            n_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            capacity: kv.capacity,
            window: 0,
            scale: c.attention_scale(),
            softcap: c.softcaps().0.unwrap_or(0.0),
        };
        let reuse = ws.step.take();
        let ws_step = b.run_recorded(&recorded, plan, reuse, &mut |step| {
            self.launch_step(step, t, any_lora, shape, kv, ws)?;
            let rows = plan.logit_rows.len();
            if let Some(bias) = &self.logit_bias {
                b.add_bias(&mut ws.logits, bias, rows, c.vocab_size)?;
            }
            if let Some(cap) = c.softcaps().1 {
                b.softcap(&mut ws.logits, cap, rows * c.vocab_size)?;
            }
            if let Some(s) = c.logit_factor() {
                b.scale(&mut ws.logits, s, rows * c.vocab_size)?;
            }
            match pick {
                Some(PickOp::Argmax) => b.argmax(&ws.logits, rows, c.vocab_size, &mut ws.picks),
                Some(PickOp::Sample) => {
                    b.sample(&ws.logits, rows, c.vocab_size, step, &mut ws.picks)
                }
                None => Ok(()),
            }
        })?;
        let rows = plan.logit_rows.len();
        let out = match out {
            StepOut::Logits(logits) => b.download_into(&ws.logits, rows * c.vocab_size, logits),
            StepOut::Picks(_, values) => b.download_into(&ws.picks, rows, values),
        };
        ws.step = ws_step;
        out
    }

    /// Every launch of one step, embedding to logits (the body [`Backend::run_recorded`]
    /// runs or records): depends on the plan only through `step`'s device buffers and the
    /// sizes in its [`StepShape`].
    fn launch_step(
        &self,
        step: &B::Step,
        t: usize,
        any_lora: bool,
        shape: AttnShape,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let c = &self.config;
        let b = &self.backend;
        let hd = c.hidden_size;
        let eps = c.rms_norm_eps;
        b.embedding(&self.embed, step, t, hd, &mut ws.x)?;
        if let Some(s) = c.embed_scale() {
            b.scale(&mut ws.x, s, t * hd)?;
        }
        // A LayerNorm model's residual stream stays centered (ModelConfig::layer_norms).
        if c.layer_norms() {
            b.center(&mut ws.x, t, hd)?;
        }
        if let Some(n) = self.layers.first().and_then(|l| l.attn_norm.as_ref()) {
            n.apply(b, &ws.x, t, hd, eps, &mut ws.h)?;
        }
        // Each residual add is fused with the RMSNorm that reads its result (the FFN's, then
        // the next layer's attention norm): `ws.h` holds the normed input of every linears.
        // Without those norms (OLMo 2) the linears read the residual stream `ws.x` itself.
        // A parallel block's feed-forward (Cohere's, Phi's, GPT-J's, Falcon-7B's) has no norm of
        // its own: the attention's add is plain, and `ws.h` still holds the input both read
        // (GPT-NeoX's and Falcon-40B's has: it is written into `ws.h` once q/k/v have read it). A LayerNorm's bias is added to
        // `ws.h` after its norm.
        let pre_norms = c.pre_norms();
        for (li, layer) in self.layers.iter().enumerate() {
            let n_in = |m: LoraModule| layer.linear(m).map(|l| l.n_in);
            let mut qkv = [
                linear_job(layer, LoraModule::Q, any_lora, &mut ws.q)?,
                linear_job(layer, LoraModule::K, any_lora, &mut ws.k)?,
                linear_job(layer, LoraModule::V, any_lora, &mut ws.v)?,
            ];
            let input = if pre_norms { &ws.h } else { &ws.x };
            b.linears(input, t, n_in(LoraModule::Q)?, step, &mut qkv, &mut ws.u)?;
            // GPT-NeoX's (and Falcon-40B's) parallel feed-forward reads its own norm of the same
            // input: into `ws.h` now, q/k/v read, before the attention's add changes `ws.x`.
            let parallel_norm = layer.ffn_norm.as_ref().filter(|_| c.parallel_block());
            if let Some(n) = parallel_norm {
                n.apply(b, &ws.x, t, hd, eps, &mut ws.h)?;
            }
            self.attend(li, layer, step, t, shape, kv, ws)?;
            // Gemma 2 and 3 and OLMo 2 norm each sub-block's output before its residual add.
            let post = layer.post_norms.as_ref();
            let ffn_norm = (layer.ffn_norm.as_ref())
                .filter(|_| parallel_norm.is_none())
                .map(|w| (w, ResidualSite::Attention));
            let post_attn = post.map(|p| &p.0);
            self.project_residual(
                step,
                t,
                any_lora,
                layer,
                LoraModule::O,
                post_attn,
                ffn_norm,
                ws,
            )?;
            let input = if pre_norms { &ws.h } else { &ws.x };
            let n_in = n_in(LoraModule::Up)?;
            let n = t * c.intermediate_size;
            let job = |m, out| linear_job(layer, m, any_lora, out);
            let (gate, up) = (LoraModule::Gate, LoraModule::Up);
            match (c.arch.gated_mlp(), c.activation) {
                // StarCoder2's, Phi's, GPT-NeoX's, Falcon's and GPT-J's `down(gelu(up(x)))`,
                // Arcee's and Nemotron's `down(relu2(up(x)))` (or any of the three), Apertus's
                // `down(xielu(up(x)))` with the layer's constants.
                (false, act) => {
                    b.linears(input, t, n_in, step, &mut [job(up, &mut ws.up)?], &mut ws.u)?;
                    match act {
                        Activation::GeluTanh => b.gelu(&ws.up, n, &mut ws.act)?,
                        Activation::GeluErf => b.gelu_erf(&ws.up, n, &mut ws.act)?,
                        Activation::Relu2 => b.relu_sq(&ws.up, n, &mut ws.act)?,
                        Activation::Xielu => {
                            let p = layer.xielu.ok_or_else(|| {
                                Error::invalid(format!("layer {li} has no xIELU constants"))
                            })?;
                            b.xielu(&ws.up, n, p, &mut ws.act)?
                        }
                        Activation::Silu => {
                            return Err(Error::unsupported("an ungated feed-forward with SiLU"))
                        }
                    }
                }
                (true, Activation::Silu) => {
                    let mut jobs = [job(gate, &mut ws.gate)?, job(up, &mut ws.up)?];
                    b.linears_silu_mul(input, t, n_in, step, &mut jobs, &mut ws.u, &mut ws.act)?
                }
                (true, Activation::GeluTanh) => {
                    let mut jobs = [job(gate, &mut ws.gate)?, job(up, &mut ws.up)?];
                    b.linears(input, t, n_in, step, &mut jobs, &mut ws.u)?;
                    b.gelu_mul(&ws.gate, &ws.up, n, &mut ws.act)?
                }
                (true, Activation::GeluErf | Activation::Relu2 | Activation::Xielu) => {
                    return Err(Error::unsupported(
                        "a gated feed-forward with the exact GELU, the squared ReLU or xIELU",
                    ))
                }
            }
            let next = (self.layers.get(li + 1).and_then(|n| n.attn_norm.as_ref()))
                .map(|n| (n, ResidualSite::FeedForward));
            let post_ffn = post.map(|p| &p.1);
            self.project_residual(
                step,
                t,
                any_lora,
                layer,
                LoraModule::Down,
                post_ffn,
                next,
                ws,
            )?;
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        b.logits(
            &ws.x,
            &self.norm,
            eps,
            head,
            step,
            hd,
            c.vocab_size,
            &mut ws.logits,
        )
    }

    /// A sub-block's output projection `m` (o_proj reading `ws.att`, down_proj reading
    /// `ws.act`, into `ws.o`) and the residual add into `ws.x` with the RMSNorm that reads its
    /// result into `ws.h` (`next`: that norm's weight and site; `None` after the last layer,
    /// or in OLMo 2, which norms no input: the add alone). With `post_norm` (Gemma 2's and 3's,
    /// OLMo 2's), the projection's output is normed
    /// first and the add and norm follow it; with Granite's residual multiplier, it is scaled
    /// first; in a LayerNorm model, centered ([`ModelConfig::layer_norms`]); with none of
    /// these, the backend's `linear_add_rms_norm` (fused where it can).
    #[allow(clippy::too_many_arguments)]
    fn project_residual(
        &self,
        step: &B::Step,
        t: usize,
        any_lora: bool,
        layer: &Layer<B>,
        m: LoraModule,
        post_norm: Option<&B::Buf>,
        next: Option<(&Norm<B>, ResidualSite)>,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let b = &self.backend;
        let (hd, eps) = (self.config.hidden_size, self.config.rms_norm_eps);
        let n_in = layer.linear(m)?.n_in;
        let input = if m == LoraModule::O { &ws.att } else { &ws.act };
        let mut job = [linear_job(layer, m, any_lora, &mut ws.o)?];
        let residual = self.config.residual_scale();
        let centered = self.config.layer_norms();
        if let (None, None, Some((n, site)), false) = (post_norm, residual, next, centered) {
            let norm = ResidualNorm {
                residual: &mut ws.x,
                w: &n.weight,
                eps,
                out: &mut ws.h,
                site,
            };
            return b.linear_add_rms_norm(input, t, n_in, step, &mut job, &mut ws.u, norm);
        }
        b.linears(input, t, n_in, step, &mut job, &mut ws.u)?;
        // What the residual adds: the product, normed (Gemma 2, 3, OLMo 2) and scaled (Granite).
        let out = match (post_norm, &mut ws.post_normed) {
            (None, _) => &mut ws.o,
            (Some(w), Some(normed)) => {
                b.rms_norm(&ws.o, w, t, hd, 1, eps, normed)?;
                normed
            }
            (Some(_), None) => {
                return Err(Error::invalid(
                    "the workspace has no buffer for the post-norms (made for another model)",
                ))
            }
        };
        if let Some(r) = residual {
            b.scale(out, r, t * hd)?;
        }
        // What a LayerNorm model adds to its centered residual stream is centered first.
        if centered {
            b.center(out, t, hd)?;
        }
        match next {
            Some((n, _)) => {
                b.add_rms_norm(&mut ws.x, out, &n.weight, t, hd, eps, &mut ws.h)?;
                match &n.bias {
                    Some(bias) => b.add_bias(&mut ws.h, bias, t, hd),
                    None => Ok(()),
                }
            }
            None => b.add(&mut ws.x, out, t * hd),
        }
    }
}

//! A decoder layer's attention sub-block up to the output projection: the query/key norms,
//! RoPE and attention over the KV cache, in the order each family runs them.

use super::{Layer, Model, Workspace};
use crate::backend::{AttnShape, Backend};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;

impl<B: Backend> Model<B> {
    /// Layer `li`'s attention on the step's `ws.q`, `ws.k`, `ws.v` (`t` tokens) into `ws.att`,
    /// its keys and values stored in `kv`: OLMo's clamp of all three where it has one
    /// ([`ModelConfig::clip_qkv`]); the query/key norms where the model has them, before
    /// RoPE (Qwen3's, Gemma 3's, OLMo's, ...) or after it (HunYuan's,
    /// [`crate::config::Arch::qk_norm_after_rope`]); RoPE by the layer's table, the queries by
    /// their own where the model scales them (Ministral 3's attention temperature); then
    /// [`Backend::attention`] with the layer's window. `shape` is the step's, without a window.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attend(
        &self,
        li: usize,
        layer: &Layer<B>,
        step: &B::Step,
        t: usize,
        shape: AttnShape,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let (c, b) = (&self.config, &self.backend);
        // OLMo's clip_qkv: the projections as transformers' clamp_ leaves them, LoRAs included.
        if let Some(limit) = c.clip_qkv {
            b.clamp(&mut ws.q, limit, t * c.q_dim())?;
            b.clamp(&mut ws.k, limit, t * c.kv_dim())?;
            b.clamp(&mut ws.v, limit, t * c.kv_dim())?;
        }
        // Gemma 3's and OLMo 3's sliding-window layers rotate by a table of their own;
        // SmolLM3's NoPE layers by the identity.
        let window = c.attention_window.get(li).copied().flatten();
        let rope = match (c.rope_layers.get(li), window, &self.rope_local) {
            (Some(false), ..) => self.rope_none.as_ref().ok_or_else(|| {
                Error::invalid(format!(
                    "layer {li} is NoPE, but no identity table was made"
                ))
            })?,
            (_, Some(_), Some(local)) => local,
            _ => &self.rope,
        };
        let shape = AttnShape {
            window: window.unwrap_or(0),
            ..shape
        };
        // The queries' own table is the main table scaled; no family with one has NoPE or
        // sliding layers of another base, or norms after RoPE (Llama 4, which scales its NoPE
        // layers' queries, is not read).
        if self.rope_query.is_some()
            && (!std::ptr::eq(rope, &self.rope) || c.arch.qk_norm_after_rope())
        {
            return Err(Error::unsupported(format!(
                "layer {li}: an attention temperature on a layer with its own RoPE table or with query/key norms after RoPE"
            )));
        }
        let (kc, vc) = (&mut kv.k[li], &mut kv.v[li]);
        let heads = (c.num_heads, c.num_kv_heads);
        if c.arch.qk_norm_after_rope() {
            b.rope_qk(&mut ws.q, &mut ws.k, rope, step, t, heads, c.head_dim)?;
            let (q, k) = qk_normed(b, c, layer, t, &mut ws.q, &mut ws.k, &mut ws.qk_normed)?;
            return b.attention(q, k, &ws.v, kc, vc, step, shape, &mut ws.att);
        }
        let (q, k) = qk_normed(b, c, layer, t, &mut ws.q, &mut ws.k, &mut ws.qk_normed)?;
        match &self.rope_query {
            // Queries and keys by their own tables, each through the plain `rope`.
            Some(rq) => {
                b.rope(q, rq, step, t, c.num_heads, c.head_dim)?;
                b.rope(k, rope, step, t, c.num_kv_heads, c.head_dim)?;
                b.attention(q, k, &ws.v, kc, vc, step, shape, &mut ws.att)
            }
            _ => b.rope_attention(q, k, &ws.v, rope, kc, vc, step, shape, &mut ws.att),
        }
    }
}

/// The step's query and key (`q`, `k`: `t` tokens) through the layer's norms into `normed`,
/// or `q` and `k` themselves where it has none. Qwen3, Gemma 3, HunYuan: each head's normed
/// over head_dim (rows = tokens x heads); OLMo 2: all heads at once (rows = tokens); StableLM 2
/// 12B, Command R+: each head's LayerNorm (centered first) with its own weight row.
#[allow(clippy::too_many_arguments)]
fn qk_normed<'a, B: Backend>(
    b: &B,
    c: &ModelConfig,
    layer: &Layer<B>,
    t: usize,
    q: &'a mut B::Buf,
    k: &'a mut B::Buf,
    normed: &'a mut Option<(B::Buf, B::Buf)>,
) -> Result<(&'a mut B::Buf, &'a mut B::Buf)> {
    match (&layer.qk_norm, normed) {
        (None, _) => Ok((q, k)),
        (Some((qw, kw)), Some((qn, kn))) => {
            let (wq, wk) = c.qk_norm_widths();
            let (rq, rk) = (t * c.q_dim() / wq, t * c.kv_dim() / wk);
            if c.qk_norm_per_head {
                b.center(q, rq, wq)?;
                b.center(k, rk, wk)?;
            }
            let (hq, hk) = c.qk_norm_weight_rows();
            let eps = c.rms_norm_eps;
            b.rms_norm(q, qw, rq, wq, hq, eps, qn)?;
            b.rms_norm(k, kw, rk, wk, hk, eps, kn)?;
            Ok((qn, kn))
        }
        (Some(_), None) => Err(Error::invalid(
            "the workspace has no buffers for the query/key norms (made for another model)",
        )),
    }
}

//! A GGUF's RoPE scaling as llama.cpp reads it: linear, YaRN, Phi-3's LongRoPE, frequency
//! factor tensors.

use super::super::GgufFile;
use crate::config::{
    yarn_mscale, Arch, AttnTemperature, LongRopeScaling, RopeScaling, YarnScaling,
};
use crate::error::{Error, Result};

impl GgufFile {
    /// The per-frequency divisors in tensor `name`, if the file has it, checked: `rotary_dim / 2`
    /// finite values > 0.
    pub(super) fn frequency_factors(
        &self,
        name: &str,
        rotary_dim: usize,
    ) -> Result<Option<Vec<f64>>> {
        let Some(t) = self.tensor(name) else {
            return Ok(None);
        };
        let want = rotary_dim / 2;
        if t.n_elements() != want as u64 || t.dims.len() != 1 {
            return Err(Error::format(
                &self.path,
                format!("tensor `{name}` has shape {:?}: expected [{want}] (one factor per RoPE frequency)", t.dims),
            ));
        }
        let values = self.dequantize(t)?.values().into_owned();
        if let Some((i, v)) =
            (values.iter().enumerate()).find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(Error::format(
                &self.path,
                format!("tensor `{name}`: value {i} is {v}; each frequency factor must be a finite number > 0"),
            ));
        }
        Ok(Some(values.into_iter().map(f64::from).collect()))
    }

    /// RoPE scaling as llama.cpp reads it (llama-model.cpp, llama-context.cpp):
    /// `rope.scaling.type` (default `linear`), `rope.scaling.factor` (or the old
    /// `rope.scale_linear`; none or 1: no scaling), and for YaRN the original context and
    /// `rope.scaling.attn_factor`, which multiplies YaRN's cos/sin factor. llama.cpp applies
    /// that attn_factor without YaRN too; such a file is refused here. It reads no betas for
    /// these architectures (32 and 1), so neither does this.
    pub(super) fn rope_scaling(&self, key: &dyn Fn(&str) -> String) -> Result<Option<RopeScaling>> {
        let p = &self.path;
        let kind = match self.metadata.get(&key("rope.scaling.type")) {
            None => "linear",
            Some(v) => v.as_str().ok_or_else(|| {
                Error::format(
                    p,
                    format!(
                        "`{}`: expected a string, found {v}",
                        key("rope.scaling.type")
                    ),
                )
            })?,
        };
        if !matches!(kind, "none" | "linear" | "yarn") {
            return Err(Error::unsupported(format!(
                "{}: rope scaling type `{kind}` in GGUF (supported: none, linear, yarn)",
                p.display()
            )));
        }
        let factor = match self.meta_f64(&key("rope.scaling.factor"))? {
            Some(f) => Some(f),
            None => self.meta_f64(&key("rope.scale_linear"))?,
        };
        if let Some(f) = factor.filter(|&f| !(f.is_finite() && f >= 0.0)) {
            let named = match self.metadata.contains_key(&key("rope.scaling.factor")) {
                true => key("rope.scaling.factor"),
                false => key("rope.scale_linear"),
            };
            return Err(Error::format(
                p,
                format!("`{named}` is {f}; expected a finite number >= 0 (0 or 1: no scaling)"),
            ));
        }
        let factor = factor.filter(|&f| kind != "none" && f != 0.0 && f != 1.0);
        let attn = self.meta_f64(&key("rope.scaling.attn_factor"))?;
        if let Some(a) = attn.filter(|&a| a != 1.0) {
            if !(kind == "yarn" && factor.is_some() && a.is_finite() && a > 0.0) {
                return Err(Error::unsupported(format!(
                    "{}: `{}` {a} with rope scaling `{kind}` and {} (read only as a finite factor > 0 on YaRN's)",
                    p.display(),
                    key("rope.scaling.attn_factor"),
                    factor.map_or("no scaling factor".to_string(), |f| format!("factor {f}"))
                )));
            }
        }
        let Some(factor) = factor else {
            return Ok(None);
        };
        if kind == "linear" {
            return Ok(Some(RopeScaling::Linear { factor }));
        }
        let (arch, _) = self.arch()?;
        // llama.cpp's cos/sin factor with a log multiplier m (llama-context.cpp, which takes
        // YaRN's `mscale` as 1): mscale(factor, 1) / mscale(factor, m), as transformers'
        // `mscale` / `mscale_all_dim`. Only `mistral3` writes it among the files read here.
        let log_mul_key = key("rope.scaling.yarn_log_multiplier");
        let log_mul = self.meta_f64(&log_mul_key)?;
        let cos_sin_factor = match log_mul.filter(|&m| m != 0.0) {
            Some(m) if arch == Arch::Ministral3 => {
                let f = yarn_mscale(factor, 1.0) / yarn_mscale(factor, m);
                if !(f.is_finite() && f > 0.0) {
                    return Err(Error::format(
                        p,
                        format!("`{log_mul_key}` {m} makes YaRN's cos/sin factor {f} (mscale({factor}, 1) / mscale({factor}, {m})); expected a finite factor > 0"),
                    ));
                }
                f
            }
            Some(m) => {
                return Err(Error::unsupported(format!(
                    "{}: YaRN with `{log_mul_key}` {m} (DeepSeek's attention scaling; read for mistral3 files only)",
                    p.display(),
                )))
            }
            None => yarn_mscale(factor, 1.0),
        };
        // llama.cpp reads the betas for mistral3 and uses 32 and 1 for the others read here.
        let mut betas = [32.0, 1.0];
        for (b, k) in betas
            .iter_mut()
            .zip(["rope.scaling.yarn_beta_fast", "rope.scaling.yarn_beta_slow"])
        {
            match self.meta_f64(&key(k))?.filter(|&x| x != *b) {
                Some(x) if arch == Arch::Ministral3 && x.is_finite() && x > 0.0 => *b = x,
                Some(x) if arch == Arch::Ministral3 => {
                    return Err(Error::format(
                        p,
                        format!("`{}` is {x}; expected a finite number > 0", key(k)),
                    ))
                }
                Some(x) => tracing::warn!(
                    "{}: `{}` {x} is not read, as llama.cpp reads it for none of llama, qwen2 and qwen3 ({b} is used)",
                    p.display(),
                    key(k)
                ),
                None => {}
            }
        }
        let original = match self.meta_f64(&key("rope.scaling.original_context_length"))? {
            Some(o) => o,
            None => self.meta_f64(&key("context_length"))?.unwrap_or(4096.0),
        };
        let y = YarnScaling {
            factor,
            original_max_position_embeddings: original,
            beta_fast: betas[0],
            beta_slow: betas[1],
            attention_factor: attn.unwrap_or(1.0) * cos_sin_factor,
            truncate: true,
        };
        if !(original.is_finite() && original > 0.0) {
            return Err(Error::format(
                p,
                format!("YaRN's original context is {original}; expected a number > 0"),
            ));
        }
        Ok(Some(RopeScaling::Yarn(y)))
    }

    /// A `phi3` GGUF as llama.cpp reads it: LongRoPE (the 128k-context models) from its factor
    /// tensors `rope_factors_short` and `rope_factors_long`, `rope.scaling.attn_factor`
    /// (default 1) and `rope.scaling.original_context_length` (default the context length);
    /// `phi3.attention.sliding_window` not applied, as llama.cpp does not apply it
    /// (llama.cpp#13676) and transformers does not read it from a GGUF, with a warning.
    pub(super) fn phi3_longrope(&self, rotary_dim: usize) -> Result<Option<LongRopeScaling>> {
        if let Some(w) = self
            .meta_u64("phi3.attention.sliding_window")?
            .filter(|&w| w > 0)
        {
            tracing::warn!(
                "{}: `phi3.attention.sliding_window` {w} is not applied: every layer attends to \
                 the whole context, as in llama.cpp (which turns Phi-3's window off) and in \
                 transformers' reading of a GGUF; the HF model applies it past {w} tokens",
                self.path.display()
            );
        }
        let short = self.frequency_factors("rope_factors_short.weight", rotary_dim)?;
        let long = self.frequency_factors("rope_factors_long.weight", rotary_dim)?;
        let (short_factor, long_factor) = match (short, long) {
            (None, None) => return Ok(None),
            (Some(s), Some(l)) => (s, l),
            (s, _) => {
                let missing = if s.is_none() { "short" } else { "long" };
                return Err(Error::format(
                    &self.path,
                    format!("tensor `rope_factors_{missing}.weight` is missing: LongRoPE needs both factor sets"),
                ));
            }
        };
        // llama.cpp would scale the positions too (its factor, for every architecture); its
        // converter writes none for LongRoPE, and this engine applies none beside it.
        for k in ["phi3.rope.scaling.factor", "phi3.rope.scale_linear"] {
            if let Some(f) = self.meta_f64(k)?.filter(|&f| f != 0.0 && f != 1.0) {
                return Err(Error::unsupported(format!(
                    "{}: `{k}` {f} beside LongRoPE's factor tensors: one RoPE scaling at a time is supported",
                    self.path.display()
                )));
            }
        }
        let context = self.meta_f64("phi3.context_length")?.unwrap_or(4096.0);
        let original =
            (self.meta_f64("phi3.rope.scaling.original_context_length")?).unwrap_or(context);
        let attention_factor = self
            .meta_f64("phi3.rope.scaling.attn_factor")?
            .unwrap_or(1.0);
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if !(ok(original) && ok(attention_factor)) {
            return Err(Error::format(
                &self.path,
                format!("LongRoPE: `phi3.rope.scaling.original_context_length` {original} and `phi3.rope.scaling.attn_factor` {attention_factor}; expected finite numbers > 0"),
            ));
        }
        Ok(Some(LongRopeScaling {
            short_factor,
            long_factor,
            original_max_position_embeddings: original,
            attention_factor,
        }))
    }

    /// The RoPE base of an `arch` file with base `base` and heads of `head_dim` (the key's):
    /// where a `hunyuan-dense` file has `rope.scaling.alpha` > 0, stretched by it as
    /// llama.cpp's loader does (`base * alpha^(head_dim / (head_dim - 2))`, there in f32; its
    /// converter writes the stretched base and no alpha); else `base`. llama.cpp reads the key
    /// for every architecture and applies it for HunYuan's only.
    ///
    /// # Errors
    /// An alpha that is not finite, or one that makes no usable base.
    pub(super) fn ntk_alpha(
        &self,
        arch: Arch,
        key: &dyn Fn(&str) -> String,
        base: f64,
        head_dim: usize,
    ) -> Result<f64> {
        let k = key("rope.scaling.alpha");
        let alpha = match self.meta_f64(&k)? {
            Some(a) if arch == Arch::Hunyuan => a,
            _ => return Ok(base),
        };
        if !alpha.is_finite() {
            return Err(Error::format(
                &self.path,
                format!("`{k}` is {alpha}; expected a finite number"),
            ));
        }
        if alpha <= 0.0 {
            return Ok(base);
        }
        crate::config::ntk_alpha_base(base, alpha, head_dim)
            .map_err(|why| Error::format(&self.path, format!("`{k}` {alpha}: {why}")))
    }

    /// Llama 4's attention temperature as llama.cpp's `mistral3` reads it:
    /// `attention.temperature_scale` (beta; absent or 0: none) over YaRN's original context
    /// (`rope.scaling.original_context_length`, else `context_length`). `None` for the other
    /// architectures, which llama.cpp reads without one here.
    ///
    /// # Errors
    /// A beta that is not finite, or no original context to step by.
    pub(super) fn attn_temperature(
        &self,
        arch: Arch,
        key: &dyn Fn(&str) -> String,
        scaling: Option<&RopeScaling>,
    ) -> Result<Option<AttnTemperature>> {
        if arch != Arch::Ministral3 {
            return Ok(None);
        }
        let k = key("attention.temperature_scale");
        let beta = match self.meta_f64(&k)? {
            None => return Ok(None),
            Some(0.0) => return Ok(None),
            Some(b) if b.is_finite() => b,
            Some(b) => {
                return Err(Error::format(
                    &self.path,
                    format!("`{k}` is {b}; expected a finite number"),
                ))
            }
        };
        let step = match scaling {
            Some(RopeScaling::Yarn(y)) => y.original_max_position_embeddings,
            _ => match self.meta_f64(&key("rope.scaling.original_context_length"))? {
                Some(o) => o,
                None => self.meta_f64(&key("context_length"))?.unwrap_or(0.0),
            },
        };
        if !(step.is_finite() && step >= 1.0) {
            return Err(Error::format(
                &self.path,
                format!(
                    "`{k}` {beta} needs an original context (`{}`) of at least 1; found {step}",
                    key("rope.scaling.original_context_length")
                ),
            ));
        }
        Ok(Some(AttnTemperature {
            beta,
            step: step as usize,
        }))
    }
}

//! The GGUF readings of the families that add to Llama's computation, as llama.cpp reads
//! them: Gemma's features and every architecture's per-layer windows, Granite's multipliers.

use super::super::names::layer_of;
use super::super::{GgufFile, GgufValue};
use crate::config::{sliding_every, Arch, GemmaFeatures, GraniteScales, POSITIVE_F32};
use crate::error::{Error, Result};

impl GgufFile {
    /// Gemma's features and every architecture's per-layer windows, as llama.cpp reads a
    /// `gemma` / `gemma2` / `gemma3` GGUF: the embedding scaled by `sqrt(embedding_length)`;
    /// for `gemma2` and `gemma3`, norms around both sub-blocks and attention scaled by
    /// `(embedding_length / head_count)^-0.5` for the 27B (46 / 62 layers), else
    /// `head_dim^-0.5`. `gemma2`: the window `gemma2.attention.sliding_window` (default 4096)
    /// in every other layer from the first, the soft caps `gemma2.attn_logit_softcapping`
    /// (default 50) and `gemma2.final_logit_softcapping` (default 30). `gemma3`: with
    /// `gemma3.attention.sliding_window` > 0 that window in the sliding layers
    /// ([`GgufFile::sliding_pattern`]: five of six by default) whose RoPE base is
    /// `gemma3.rope.freq_base_swa` (default 10000), unscaled; `final_logit_softcapping`
    /// refused (llama.cpp's `gemma3` applies none). An OLMo 3 file (`olmo2` with
    /// `olmo2.attention.sliding_window` > 0): that window in three layers of four. An `exaone4`
    /// file of 64 layers: `exaone4.attention.sliding_window` (default 4096) in three layers of
    /// four; of any other count: none, whatever the key says. A `cohere2` file:
    /// `cohere2.attention.sliding_window` (required) in three layers of four. llama.cpp's
    /// `llama`, `qwen2` and `qwen3` have no window (Mistral GGUFs run with full attention there
    /// too), and it turns `phi3`'s off.
    pub(super) fn gemma(
        &self,
        arch: Arch,
        hidden: usize,
        heads: usize,
        head_dim: usize,
        layers: usize,
    ) -> Result<(Option<GemmaFeatures>, Vec<Option<usize>>)> {
        let none = vec![None; layers];
        let a = match arch {
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            // llama.cpp's OLMo 3 (`olmo2` with a window): `set_swa_pattern(4)`.
            Arch::Olmo3 => {
                let w = self.meta_usize("olmo2.attention.sliding_window")?;
                let sliding = sliding_every(layers, 4);
                // llama.cpp's converter writes the layer types as flags; which forms its loader
                // reads is not pinned down here, so a pattern other than three in four is
                // refused rather than read one way.
                if self.sliding_pattern("olmo2", layers, 4)? != sliding {
                    return Err(Error::unsupported(format!(
                        "{}: metadata `olmo2.attention.sliding_window_pattern` is not three sliding layers in four, the only OLMo 3 pattern read",
                        self.path.display()
                    )));
                }
                return Ok((None, windowed(sliding, w)));
            }
            // llama.cpp's `cohere2`: `cohere2.attention.sliding_window` (required) in three
            // layers of four.
            Arch::Cohere2 => {
                let key = "cohere2.attention.sliding_window";
                if self.meta_u64(key)?.is_none() {
                    return Err(Error::format(
                        &self.path,
                        format!("missing metadata `{key}`"),
                    ));
                }
                let w = self.window_or(key, 0)?;
                return Ok((None, windowed(sliding_every(layers, 4), w)));
            }
            // llama.cpp's `exaone4`: windows in a file of 64 layers (before any prediction
            // layers: EXAONE 4.0 32B's, 4.5 33B's) only, `exaone4.attention.sliding_window` wide
            // (default 4096), in the layers its `sliding_window_pattern` flags (its converter
            // writes `layer_types` there, the prediction layers' included), else three in four
            // (`load_swa_pattern(ml, 4)`).
            Arch::Exaone4 if layers == 64 => {
                let w = self.window_or("exaone4.attention.sliding_window", 4096)?;
                return Ok((
                    None,
                    windowed(self.sliding_pattern("exaone4", layers, 4)?, w),
                ));
            }
            _ => return Ok((None, none)),
        };
        let (attn_softcap, final_softcap) = match arch {
            Arch::Gemma2 => (
                Some(self.softcap("gemma2.attn_logit_softcapping", 50.0)?),
                Some(self.softcap("gemma2.final_logit_softcapping", 30.0)?),
            ),
            _ => {
                let cap = self.meta_f64(&format!("{a}.final_logit_softcapping"))?;
                if let Some(c) = cap.filter(|&c| c != 0.0) {
                    return Err(Error::unsupported(format!(
                        "{}: `{a}.final_logit_softcapping` {c}: llama.cpp's `{a}` applies no soft cap to the logits, so a file that sets one is not read (Gemma 2's `gemma2` files are)",
                        self.path.display()
                    )));
                }
                (None, None)
            }
        };
        let windows = match arch {
            Arch::Gemma2 => {
                let w = self.window_or("gemma2.attention.sliding_window", 4096)?;
                windowed(sliding_every(layers, 2), w)
            }
            Arch::Gemma3 => match self.meta_u64("gemma3.attention.sliding_window")? {
                Some(w) if w > 0 => {
                    windowed(self.sliding_pattern("gemma3", layers, 6)?, w as usize)
                }
                _ => none,
            },
            _ => none,
        };
        let scale_dim = match (arch, layers) {
            (Arch::Gemma2, 46) | (Arch::Gemma3, 62) if hidden >= heads => (hidden / heads) as f64,
            (Arch::Gemma2, 46) | (Arch::Gemma3, 62) => {
                return Err(Error::format(
                    &self.path,
                    format!("{a}.embedding_length {hidden} is below {a}.attention.head_count {heads}: the 27B's attention scale (embedding_length / head_count)^-0.5 is undefined"),
                ))
            }
            _ => head_dim as f64,
        };
        let features = GemmaFeatures {
            embed_scale: (hidden as f32).sqrt(),
            sandwich_norms: arch != Arch::Gemma,
            query_pre_attn_scalar: scale_dim,
            attn_softcap,
            final_softcap,
        };
        Ok((Some(features), windows))
    }

    /// The RoPE base of the sliding-window layers, which rotate unscaled
    /// ([`crate::config::ModelConfig::local_rope_theta`]), where `windows` has any: a `gemma3`
    /// file's `gemma3.rope.freq_base_swa` (default 10000); an OLMo 3 file's `rope_theta`, the
    /// file's base (llama.cpp rotates its sliding layers at that base with no YaRN).
    ///
    /// # Errors
    /// A base that is not a number > 0; an OLMo 3 file whose `olmo2.rope.freq_base_swa`
    /// differs from its base (llama.cpp's `olmo2` rotation is not known to read it).
    pub(super) fn local_rope_theta(
        &self,
        arch: Arch,
        windows: &[Option<usize>],
        rope_theta: f64,
    ) -> Result<Option<f64>> {
        if windows.iter().all(Option::is_none) {
            return Ok(None);
        }
        let (key, base) = match arch {
            Arch::Gemma3 => ("gemma3.rope.freq_base_swa", 10000.0),
            Arch::Olmo3 => ("olmo2.rope.freq_base_swa", rope_theta),
            _ => return Ok(None),
        };
        let local = self.meta_f64(key)?.unwrap_or(base);
        if !(local.is_finite() && local > 0.0) {
            return Err(Error::format(
                &self.path,
                format!("metadata `{key}` is {local}; expected a number > 0"),
            ));
        }
        if arch == Arch::Olmo3 && local != rope_theta {
            return Err(Error::unsupported(format!(
                "{}: metadata `{key}` {local} differs from `olmo2.rope.freq_base` {rope_theta}: llama.cpp rotates OLMo 3's sliding layers at the file's base, and a base of their own is not read",
                self.path.display()
            )));
        }
        Ok(Some(local))
    }

    /// The window in metadata `key`, `default` where the file has none.
    ///
    /// # Errors
    /// A window of 0 (sliding layers need one).
    fn window_or(&self, key: &str, default: u64) -> Result<usize> {
        match self.meta_u64(key)?.unwrap_or(default) {
            0 => Err(Error::format(
                &self.path,
                format!("metadata `{key}` is 0; expected the sliding layers' window (> 0)"),
            )),
            w => Ok(w as usize),
        }
    }

    /// A soft cap from metadata `key` (`default` where absent), as llama.cpp reads Gemma 2's.
    ///
    /// # Errors
    /// A cap that is not a finite number > 0 (llama.cpp would divide by it).
    fn softcap(&self, key: &str, default: f64) -> Result<f32> {
        let cap = self.meta_f64(key)?.unwrap_or(default);
        crate::config::positive_f32(cap).ok_or_else(|| {
            Error::format(
                &self.path,
                format!("metadata `{key}` is {cap}; expected a soft cap, {POSITIVE_F32}"),
            )
        })
    }

    /// Which of a file's `layers` layers slide, as llama.cpp's `set_swa_pattern` reads
    /// `<a>.attention.sliding_window_pattern`: a period `p` (layer `i` slides where
    /// `i % p < p - 1`; 0: every layer), or one flag per layer (the prediction layers' after
    /// them, which do not run, may follow: an EXAONE 4.5 file's); absent, the period `default`
    /// (`gemma3`'s 6).
    fn sliding_pattern(&self, a: &str, layers: usize, default: u64) -> Result<Vec<bool>> {
        let key = &format!("{a}.attention.sliding_window_pattern");
        let bad = |found: &GgufValue| {
            Error::format(
                &self.path,
                format!("metadata `{key}`: expected a period or {layers} per-layer flags, found {found}"),
            )
        };
        let period = |p: u64| sliding_every(layers, p.min(layers as u64 + 1) as usize);
        let all = self.meta_u64(&format!("{a}.block_count"))?.unwrap_or(0) as usize;
        match self.metadata.get(key) {
            None => Ok(period(default)),
            Some(v) => match (v.as_u64(), v.as_array()) {
                (Some(p), _) => Ok(period(p)),
                (_, Some(flags)) if flags.len() == layers || flags.len() == all => (flags.iter())
                    .take(layers)
                    .map(|x| match x {
                        GgufValue::Bool(b) => Ok(*b),
                        x => x.as_u64().map(|u| u != 0).ok_or_else(|| bad(v)),
                    })
                    .collect(),
                _ => Err(bad(v)),
            },
        }
    }

    /// Refuses what a file may hold beyond the text model, which this engine does not read:
    /// M-RoPE sections (`glm4.rope.dimension_sections`, GLM-4V's, whose converter permuted q/k
    /// for NEOX RoPE; `hunyuan-dense.rope.dimension_sections`, on which llama.cpp's HunYuan
    /// graph turns to XD-RoPE). Nothing for the other architectures.
    pub(super) fn text_only(&self, arch: Arch) -> Result<()> {
        match arch {
            Arch::Hunyuan => self.no_rope_sections("hunyuan-dense", "HunYuan's XD-RoPE sections"),
            Arch::Glm4 => self.no_rope_sections(
                "glm4",
                "GLM-4V's position sections, with q/k rows permuted for it",
            ),
            _ => Ok(()),
        }
    }

    /// Refuses `<a>.rope.dimension_sections` with a section other than 0 (M-RoPE, `what`).
    fn no_rope_sections(&self, a: &str, what: &str) -> Result<()> {
        let p = self.path.display();
        let key = format!("{a}.rope.dimension_sections");
        let sections = match self.metadata.get(&key) {
            Some(GgufValue::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
            None => vec![],
        };
        if sections.iter().any(|v| v.as_u64() != Some(0)) {
            let shown = |v: &GgufValue| v.as_u64().map_or(v.to_string(), |n| n.to_string());
            let sections: Vec<String> = sections.iter().map(shown).collect();
            return Err(Error::unsupported(format!(
                "{p}: `{key}` is [{}]: M-RoPE ({what}) is not read; a text-only file has none",
                sections.join(", ")
            )));
        }
        Ok(())
    }

    /// The layers the forward pass runs of the `all` in `<a>.block_count`: all but the
    /// next-token-prediction layers appended after them (`<a>.nextn_predict_layers`: EXAONE
    /// 4.5's and GLM-OCR's multi-token prediction), which llama.cpp loads and does not run
    /// (its `n_layer()`); their tensors are not read ([`GgufFile::prediction_layers_from`]).
    /// Only llama.cpp's `exaone4` and `glm4` loaders make such layers; the others' refuse their
    /// tensors, and so does this.
    ///
    /// # Errors
    /// A count that leaves no layer, one over layers without `nextn.eh_proj`, or any in a file
    /// of another architecture.
    pub(in crate::loader::gguf) fn forward_layers(
        &self,
        arch: Arch,
        a: &str,
        all: usize,
    ) -> Result<usize> {
        let key = format!("{a}.nextn_predict_layers");
        let n = match self.meta_u64(&key)?.unwrap_or(0) {
            0 => return Ok(all),
            n if !matches!(arch, Arch::Exaone4 | Arch::Glm4) => {
                return Err(Error::unsupported(format!(
                    "{}: `{key}` is {n}: next-token-prediction layers are read in `exaone4` and `glm4` files, whose llama.cpp loaders make them (its `{a}` loader refuses their tensors)",
                    self.path.display()
                )))
            }
            n if n < all as u64 => n as usize,
            n => {
                return Err(Error::format(
                    &self.path,
                    format!("`{key}` is {n}, which leaves none of the {all} layers of `{a}.block_count` to run"),
                ))
            }
        };
        // Each is a prediction layer, as llama.cpp's loaders require (they make its
        // `nextn.eh_proj`): else the count would drop layers the model runs.
        if let Some(i) = (all - n..all).find(|i| {
            self.tensor(&format!("blk.{i}.nextn.eh_proj.weight"))
                .is_none()
        }) {
            return Err(Error::format(
                &self.path,
                format!("`{key}` is {n}, but layer {i} of the {all} has no `blk.{i}.nextn.eh_proj.weight`: it is no next-token-prediction layer (llama.cpp refuses such a file)"),
            ));
        }
        Ok(all - n)
    }

    /// The first next-token-prediction layer of an `a` file that has any
    /// ([`GgufFile::forward_layers`]): its tensors, and those of the layers after it, are left
    /// unread.
    ///
    /// # Errors
    /// As [`GgufFile::forward_layers`]; a `block_count` that is no layer count.
    pub(in crate::loader::gguf) fn prediction_layers_from(
        &self,
        arch: Arch,
        a: &str,
    ) -> Result<Option<usize>> {
        let key = format!("{a}.block_count");
        let all = crate::config::layer_count(self.meta_usize(&key)?, &self.path)?;
        let forward = self.forward_layers(arch, a, all)?;
        Ok((forward < all).then_some(forward))
    }

    /// A `nemotron` file's rotation as llama.cpp runs it: no `rope_freqs.weight` (its loader
    /// makes none and refuses a file holding one); a warning where the heads are wider than
    /// embedding_length / head_count (`narrow`) and a part rotates, as llama.cpp's converter
    /// counts that part as factor x `narrow`, not x head_dim as transformers rotates
    /// (Minitron-8B: 42 where it rotates 64). Nothing for the other families.
    pub(super) fn nemotron_rope(
        &self,
        arch: Arch,
        narrow: usize,
        head_dim: usize,
        rotary_dim: usize,
    ) -> Result<()> {
        if arch != Arch::Nemotron {
            return Ok(());
        }
        if self.tensor("rope_freqs.weight").is_some() {
            return Err(Error::format(
                &self.path,
                "tensor `rope_freqs.weight`: llama.cpp's `nemotron` graph reads no frequency factors",
            ));
        }
        if head_dim != narrow && rotary_dim < head_dim {
            tracing::warn!(
                "{}: a `nemotron` file with heads of {head_dim} (not embedding_length / head_count = {narrow}) rotating {rotary_dim} of them: llama.cpp's converter counts factor x {narrow} there, so the checkpoint it came from may rotate more; run as llama.cpp runs it",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The norms' eps: `<arch>.attention.layer_norm_rms_epsilon`, or the LayerNorm families'
    /// `attention.layer_norm_epsilon` (Cohere's, those with norm biases, OLMo's), each required
    /// as llama.cpp requires it.
    pub(super) fn norm_eps(&self, arch: Arch, a: &str) -> Result<f32> {
        let key = match arch.is_cohere() || arch.norm_bias() || arch.unweighted_norms() {
            true => format!("{a}.attention.layer_norm_epsilon"),
            false => format!("{a}.attention.layer_norm_rms_epsilon"),
        };
        let eps = self.meta_f64(&key)?;
        let eps = eps.ok_or_else(|| Error::format(&self.path, format!("missing metadata `{key}`")));
        Ok(eps? as f32)
    }

    /// A `stablelm` file's o_proj and feed-forward biases, any linear's bias in a `falcon`
    /// file, an `arcee` file's o_proj and feed-forward biases and an `apertus` file's
    /// feed-forward biases, refused: llama.cpp reads none (StableLM's modules have none;
    /// Falcon's released checkpoints have none, `bias` false; llama.cpp's `arcee` graph adds
    /// q/k/v biases only, its `apertus` graph q/k/v/o). Nothing to check for the other families.
    pub(super) fn unread_biases(&self, arch: Arch, layers: usize) -> Result<()> {
        let (linears, why): (&[&str], &str) = match arch {
            Arch::StableLm => (
                &["attn_output", "ffn_gate", "ffn_up", "ffn_down"],
                "a `stablelm` file's o_proj and feed-forward have no biases (StableLM's, and llama.cpp reads none)",
            ),
            Arch::Falcon => (
                &["attn_qkv", "attn_output", "ffn_up", "ffn_down"],
                "a `falcon` file's linears have no biases (Falcon's released checkpoints', and llama.cpp reads none)",
            ),
            Arch::Arcee => (
                &["attn_output", "ffn_up", "ffn_down"],
                "llama.cpp's `arcee` graph adds no o_proj or feed-forward bias (AFM has none)",
            ),
            Arch::Apertus => (
                &["ffn_up", "ffn_down"],
                "llama.cpp's `apertus` graph adds no feed-forward bias (ApertusMLP has none)",
            ),
            Arch::Hunyuan => (
                &["attn_output", "ffn_gate", "ffn_up", "ffn_down"],
                "llama.cpp's `hunyuan-dense` graph adds no o_proj or feed-forward bias",
            ),
            Arch::Olmo => (
                &["attn_output", "ffn_gate", "ffn_up", "ffn_down"],
                "llama.cpp's `olmo` graph adds no o_proj or feed-forward bias (OLMo has none)",
            ),
            _ => return Ok(()),
        };
        for t in linears {
            if let Some(i) =
                (0..layers).find(|i| self.tensor(&format!("blk.{i}.{t}.bias")).is_some())
            {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `blk.{i}.{t}.bias`: {why}"),
                ));
            }
        }
        Ok(())
    }

    /// Tensors llama.cpp's loader would not make, so that it refuses the file ("wrong number of
    /// tensors"), where they would otherwise be left unread: any of a layer past `block_count`,
    /// and an ungated family's `ffn_gate`. Checked before any weight is read.
    ///
    /// # Errors
    /// The first such tensor by name.
    pub(super) fn stray_tensors(&self, arch: Arch, a: &str, layers: usize) -> Result<()> {
        let past =
            (self.tensors.iter()).filter_map(|t| Some((layer_of(&t.name)?, t.name.as_str())));
        if let Some((l, n)) = past.filter(|(l, _)| *l >= layers).min() {
            return Err(Error::format(
                &self.path,
                format!("tensor `{n}` is of layer {l}, past `{a}.block_count` {layers}; llama.cpp refuses such a file (wrong number of tensors)"),
            ));
        }
        if !arch.gated_mlp() {
            let gate = (0..layers)
                .flat_map(|i| ["weight", "bias"].map(|s| format!("blk.{i}.ffn_gate.{s}")))
                .find(|n| self.tensor(n).is_some());
            if let Some(n) = gate {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `{n}`: a `{a}` model's feed-forward has no gate; llama.cpp refuses such a file (wrong number of tensors)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether a `falcon` file's feed-forward has a norm of its own: Falcon-40B's, whose layers
    /// hold `attn_norm_2` (attention's input norm; `attn_norm` is then the feed-forward's, as
    /// llama.cpp's graph reads them); false for the other families. A layer without
    /// `attn_norm` is left for the model's loader to name.
    ///
    /// # Errors
    /// `attn_norm_2` in some layers only (llama.cpp would run two kinds of layer).
    pub(super) fn falcon_second_norm(&self, arch: Arch, a: &str, layers: usize) -> Result<bool> {
        if arch != Arch::Falcon {
            return Ok(false);
        }
        let has = |i: usize, norm: &str| self.tensor(&format!("blk.{i}.{norm}.weight")).is_some();
        let present: Vec<usize> = (0..layers).filter(|&i| has(i, "attn_norm")).collect();
        let (with, without): (Vec<usize>, Vec<usize>) =
            present.iter().partition(|&&i| has(i, "attn_norm_2"));
        match (with.first(), without.first()) {
            (Some(w), Some(wo)) => Err(Error::unsupported(format!(
                "{}: `{a}` layers with and without a second norm (blk.{w}.attn_norm_2.weight present, blk.{wo}.attn_norm_2.weight missing)",
                self.path.display()
            ))),
            (with, _) => Ok(with.is_some()),
        }
    }

    /// Whether attention and the feed-forward sit side by side: always for `command-r`,
    /// `cohere2`, `phi2` and `falcon`; for `stablelm`, where its layers have no `ffn_norm` (llama.cpp
    /// decides per layer; a file with it in some layers only is refused).
    pub(super) fn parallel_residual(&self, arch: Arch, a: &str, layers: usize) -> Result<bool> {
        if arch != Arch::StableLm {
            return Ok(arch.is_cohere() || matches!(arch, Arch::Phi | Arch::Falcon));
        }
        let normed: Vec<usize> = (0..layers)
            .filter(|i| self.tensor(&format!("blk.{i}.ffn_norm.weight")).is_some())
            .collect();
        match normed.len() {
            0 => Ok(true),
            n if n == layers => Ok(false),
            _ => {
                let missing = (0..layers).find(|i| !normed.contains(i)).unwrap_or(0);
                Err(Error::unsupported(format!(
                    "{}: `{a}` layers with and without `ffn_norm` (blk.{}.ffn_norm.weight present, blk.{missing}.ffn_norm.weight missing): parallel and sequential blocks in one model",
                    self.path.display(),
                    normed[0]
                )))
            }
        }
    }

    /// A Cohere file's `<arch>.logit_scale` (required, as llama.cpp requires it; 0: none,
    /// as llama.cpp then scales nothing), `None` for the other families.
    pub(super) fn logit_scale(&self, arch: Arch, a: &str) -> Result<Option<f32>> {
        if !arch.is_cohere() {
            return Ok(None);
        }
        let key = format!("{a}.logit_scale");
        match self.meta_f64(&key)? {
            Some(s) if s.is_finite() => Ok(Some(s as f32).filter(|&s| s != 0.0)),
            Some(s) => Err(Error::format(
                &self.path,
                format!("metadata `{key}` is {s}; expected a finite number"),
            )),
            None => Err(Error::format(
                &self.path,
                format!("missing metadata `{key}` (llama.cpp requires it of a {a} file)"),
            )),
        }
    }

    /// Granite's multipliers as llama.cpp reads a `granite` GGUF (`None` for the other
    /// architectures): `granite.embedding_scale`, `granite.residual_scale`,
    /// `granite.logit_scale` (each 0: not applied) and `granite.attention.scale` (0:
    /// `head_dim^-0.5`), all four required, as llama.cpp requires them.
    ///
    /// # Errors
    /// A missing key, a negative or non-finite one; `granite.rope.scaling.finetuned` false
    /// (llama.cpp's switch that turns RoPE off, which this engine always applies) or not a
    /// bool.
    pub(super) fn granite(&self, arch: Arch, head_dim: usize) -> Result<Option<GraniteScales>> {
        if arch != Arch::Granite {
            return Ok(None);
        }
        let get = |key: &str, unset: f32| -> Result<f32> {
            match self.meta_f64(key)? {
                Some(0.0) => Ok(unset),
                Some(x) => crate::config::positive_f32(x).ok_or_else(|| {
                    Error::format(
                        &self.path,
                        format!("metadata `{key}` is {x}; expected {POSITIVE_F32} (or 0: none)"),
                    )
                }),
                None => Err(Error::format(
                    &self.path,
                    format!("missing metadata `{key}` (llama.cpp requires it of a granite file)"),
                )),
            }
        };
        let key = "granite.rope.scaling.finetuned";
        match self.metadata.get(key) {
            None | Some(GgufValue::Bool(true)) => {}
            Some(GgufValue::Bool(false)) => {
                return Err(Error::unsupported(format!(
                    "{}: `{key}` is false: llama.cpp then leaves out the rotary embedding, which this engine always applies",
                    self.path.display()
                )))
            }
            Some(other) => {
                return Err(Error::format(
                    &self.path,
                    format!("metadata `{key}`: expected a bool (as llama.cpp reads it), found {other}"),
                ))
            }
        }
        let head_scale = crate::backend::AttnShape::head_scale(head_dim);
        Ok(Some(GraniteScales {
            embedding: get("granite.embedding_scale", 1.0)?,
            attention: get("granite.attention.scale", head_scale)?,
            residual: get("granite.residual_scale", 1.0)?,
            logits: get("granite.logit_scale", 1.0)?,
        }))
    }
}

/// Each layer's window: `w` in the layers `sliding` marks, none elsewhere.
fn windowed(sliding: Vec<bool>, w: usize) -> Vec<Option<usize>> {
    sliding.into_iter().map(|s| s.then_some(w)).collect()
}

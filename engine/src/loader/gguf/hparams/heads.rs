//! A GGUF's attention widths: head counts and the head width, as llama.cpp reads them; which
//! query/key norms it has; an `olmo` file's clamp.

use super::super::GgufFile;
use crate::config::Arch;
use crate::error::{Error, Result};

impl GgufFile {
    /// An `olmo` file's `olmo.attention.clamp_kqv` (its converter writes OLMo's `clip_qkv`):
    /// the limit where it is > 0, as llama.cpp's `build_qkv` clamps only then; `None` where
    /// it is absent, 0 or less, or +infinity (a clamp that changes nothing), and for the other
    /// families (llama.cpp reads the key for MPT and DBRX too, families dlp-run does not read).
    ///
    /// # Errors
    /// A limit that is not a number (NaN among them), or > 0 but too small for an f32 whose
    /// reciprocal is one too.
    pub(in crate::loader::gguf) fn clamp_kqv(&self, arch: Arch, a: &str) -> Result<Option<f32>> {
        if arch != Arch::Olmo {
            return Ok(None);
        }
        let key = format!("{a}.attention.clamp_kqv");
        let expected = format!(
            "expected 0 or less (no clamp) or {}",
            crate::config::POSITIVE_F32
        );
        match self.meta_f64(&key)? {
            Some(c) if c.is_nan() => Err(Error::format(
                &self.path,
                format!("metadata `{key}` is NaN; {expected}"),
            )),
            Some(c) if c > 0.0 && c.is_finite() => match crate::config::positive_f32(c) {
                Some(c) => Ok(Some(c)),
                None => Err(Error::format(
                    &self.path,
                    format!("metadata `{key}` is {c}; {expected}"),
                )),
            },
            _ => Ok(None),
        }
    }

    /// (query heads, key/value heads) from `<arch>.attention.*`.
    pub(in crate::loader::gguf) fn head_counts(&self) -> Result<(usize, usize)> {
        let (_, a) = self.arch()?;
        let heads = self.meta_usize(&format!("{a}.attention.head_count"))?;
        let kv = self
            .meta_u64(&format!("{a}.attention.head_count_kv"))?
            .map_or(heads, |v| v as usize);
        Ok((heads, kv))
    }

    /// `(hidden, key_length, head width)`: `<arch>.embedding_length`, the file's
    /// `<arch>.attention.key_length` and the head width it gives, embedding_length / head_count
    /// where the file has none, as llama.cpp reads them.
    ///
    /// Errors: a head count of 0, a missing or non-integer width.
    pub(in crate::loader::gguf) fn widths(&self) -> Result<(usize, Option<u64>, usize)> {
        let (_, a) = self.arch()?;
        let hidden = self.meta_usize(&format!("{a}.embedding_length"))?;
        let (heads, _) = self.head_counts()?;
        if heads == 0 {
            return Err(Error::format(
                &self.path,
                format!("{a}.attention.head_count must be > 0"),
            ));
        }
        let key_length = self.meta_u64(&format!("{a}.attention.key_length"))?;
        Ok((
            hidden,
            key_length,
            key_length.map_or(hidden / heads, |v| v as usize),
        ))
    }

    /// `(qk_norm, qk_norm_per_head)` ([`crate::config::ModelConfig::qk_norm`]) from
    /// `blk.0.attn_q_norm.weight`, as llama.cpp's loaders make it (`src/models/*.cpp`): always
    /// in Qwen3, Gemma 3, Apertus, OLMo, EXAONE 4 and HunYuan dense (one weight for every
    /// head, or OLMo's whole-projection one); optional in `stablelm` (StableLM 2 12B's, a weight
    /// per head); in `command-r` exactly where there are 64 layers or more (Command R+'s, a
    /// weight per head: llama.cpp's test for it).
    ///
    /// Errors: the tensor missing where the family has it, present where it has none; a
    /// `stablelm` file with the norms of some layers or projections only (llama.cpp takes each
    /// as optional; its converter writes all or none, and this engine reads all or none).
    pub(in crate::loader::gguf) fn qk_norms(
        &self,
        arch: Arch,
        a: &str,
        layers: usize,
    ) -> Result<(bool, bool)> {
        let present = self.tensor("blk.0.attn_q_norm.weight").is_some();
        let want = match arch {
            Arch::StableLm => {
                let names = (0..layers)
                    .flat_map(|i| ["q", "k"].map(|m| format!("blk.{i}.attn_{m}_norm.weight")));
                let missing: Vec<String> = names.filter(|n| self.tensor(n).is_none()).collect();
                if !missing.is_empty() && missing.len() < 2 * layers {
                    return Err(Error::format(
                        &self.path,
                        format!(
                            "a `stablelm` file with the query/key norms of some layers only (`{}` is missing): StableLM 2 12B's are in every layer, for both; this engine reads them in all or in none",
                            missing[0]
                        ),
                    ));
                }
                return Ok((missing.is_empty(), missing.is_empty()));
            }
            Arch::Cohere => layers >= 64,
            _ => arch.has_qk_norm(),
        };
        if present == want {
            return Ok((present, present && arch == Arch::Cohere));
        }
        let why = match arch {
            Arch::Cohere => format!(
                "llama.cpp's `command-r` has them exactly where there are 64 layers or more \
                 (Command R+), and this file has {layers}"
            ),
            _ => format!(
                "query/key norms are Qwen3's, Gemma 3's, Apertus's, OLMo's, EXAONE 4's, \
                 HunYuan's, StableLM 2 12B's and Command R+'s, and this is a `{a}` GGUF"
            ),
        };
        Err(Error::format(
            &self.path,
            format!(
                "tensor `blk.0.attn_q_norm.weight` {}: {why}",
                if present { "is present" } else { "is missing" }
            ),
        ))
    }
}

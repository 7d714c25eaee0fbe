//! A GGUF's tensors as the model's weights: under HF's names ([`super::names`]), a
//! `llama`-converted file's q/k rows restored to HF's layout, a fused `attn_qkv` split
//! ([`super::fused_qkv`]); what llama.cpp's loader would refuse is refused by name.

use std::collections::HashMap;

use super::{fused_qkv, names, quant, GgufFile, GgufTensorInfo, PROGRESS_BYTES};
use crate::config::Arch;
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, Packed, PackedKind, WeightMap};

/// What reading the tensors keeps across them.
struct Reading<'a> {
    arch: Arch,
    /// The metadata prefix (`llama`, ...), for messages.
    a: &'static str,
    /// Query heads, key/value heads.
    heads: (usize, usize),
    /// The GGUF tensor each HF name was read from: two that the model would read as one (a
    /// `llama` file's `ffn_norm` and a `post_attention_norm`) are refused, not one dropped.
    from: HashMap<String, &'a str>,
}

impl GgufFile {
    /// Every tensor the model uses, dequantised to f32 under its HF name, with attn_q / attn_k
    /// (weights and biases) un-permuted to HF's layout. Shows a progress bar for large files.
    pub fn load_weights(&self) -> Result<WeightMap> {
        self.load_weights_with(false)
    }

    /// As [`GgufFile::load_weights`]; with `keep_packed`, 2-D tensors stored in a type a
    /// [`PackedKind`] names (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K to Q6_K, IQ4_NL,
    /// IQ4_XS) keep their blocks ([`HostTensor::packed`]) instead of becoming f32.
    ///
    /// Errors: a tensor the family does not have ([`names::read_elsewhere`]), q/k/v in two
    /// forms in a layer or a misshapen fused `attn_qkv` ([`fused_qkv`]), two tensors read
    /// under one name, and what reading one tensor refuses.
    pub fn load_weights_with(&self, keep_packed: bool) -> Result<WeightMap> {
        let (arch, a) = self.arch()?;
        let mut map = WeightMap::new(&self.path);
        map.file_names = Some(crate::tensor::FileNames {
            of: names::gguf_name_of(arch),
            gguf_order: true,
        });
        let bar = self.progress_bar();
        fused_qkv::check_one_form(&self.path, self.tensors.iter().map(|t| t.name.as_str()))?;
        let qkv = self.fused_qkv_rows(arch)?;
        let mut r = Reading {
            arch,
            a,
            heads: self.head_counts()?,
            from: HashMap::new(),
        };
        let prediction = self.prediction_layers_from(arch, a)?;
        let mut skipped = 0;
        for t in &self.tensors {
            if prediction.is_some_and(|f| names::layer_of(&t.name).is_some_and(|l| l >= f)) {
                skipped += 1;
                continue;
            }
            if names::hf_name_in(arch, &t.name).is_none() {
                self.unread(arch, a, &t.name)?;
                continue;
            }
            let ht = self.read_tensor(t, keep_packed)?;
            let parts =
                qkv.and_then(|(rows, hidden)| Some((fused_qkv::parts(&t.name, rows)?, hidden)));
            let pieces = match parts {
                Some((parts, hidden)) => fused_qkv::split(&self.path, &t.name, ht, parts, hidden)?,
                None => vec![(t.name.clone(), ht)],
            };
            for (part, ht) in pieces {
                self.read_as(&mut r, &t.name, &part, ht, &mut map)?;
            }
            bar.inc(t.byte_size().unwrap_or(0));
        }
        bar.finish_and_clear();
        if skipped > 0 {
            tracing::info!(
                "{}: {skipped} tensors of the next-token-prediction layers left out (llama.cpp loads them and does not run them)",
                self.path.display()
            );
        }
        if arch == Arch::Apertus {
            super::super::apertus::prepare_gguf(&self.metadata, &self.path, &mut map)?;
        }
        Ok(map)
    }

    /// A bar over the tensors' bytes for a file over [`PROGRESS_BYTES`]; hidden otherwise.
    fn progress_bar(&self) -> indicatif::ProgressBar {
        if self.mmap.len() as u64 <= PROGRESS_BYTES {
            return indicatif::ProgressBar::hidden();
        }
        let total: u64 = self.tensors.iter().filter_map(|t| t.byte_size()).sum();
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "loading {msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(
            (self.path.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        b
    }

    /// Where the file holds a fused `attn_qkv` this reader splits ([`fused_qkv::splits`]):
    /// q's, k's and v's rows (heads x head width, key/value heads x head width twice, as
    /// llama.cpp's `create_tensor_qkv` takes them) and the input width.
    ///
    /// Errors: head counts whose rows overflow.
    fn fused_qkv_rows(&self, arch: Arch) -> Result<Option<([usize; 3], usize)>> {
        let fused = self.tensors.iter().any(|t| t.name.contains(".attn_qkv."));
        if !(fused && fused_qkv::splits(arch)) {
            return Ok(None);
        }
        let (heads, kv_heads) = self.head_counts()?;
        let (hidden, _, head_dim) = self.widths()?;
        let rows = |n: usize| {
            n.checked_mul(head_dim).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("{n} heads of {head_dim}: too many rows"),
                )
            })
        };
        let kv = rows(kv_heads)?;
        Ok(Some(([rows(heads)?, kv, kv], hidden)))
    }

    /// Skips GGUF tensor `name`, which has no HF name, where the family has it
    /// ([`names::read_elsewhere`]); refuses it otherwise.
    fn unread(&self, arch: Arch, a: &str, name: &str) -> Result<()> {
        if names::read_elsewhere(arch, name) {
            tracing::debug!(
                "{}: skipping tensor `{name}` (read with the metadata, or not used to generate)",
                self.path.display()
            );
            return Ok(());
        }
        let why = match name.ends_with(".scale") || name.ends_with(".input_scale") {
            // llama.cpp makes these for every family and multiplies them in.
            true => "is a per-tensor scale (NVFP4's), which llama.cpp multiplies into its product; not supported".to_string(),
            false => format!("is not one this engine reads in a `{a}` file, nor one llama.cpp's loader makes for it (llama.cpp refuses the file: wrong number of tensors)"),
        };
        Err(Error::format(&self.path, format!("tensor `{name}` {why}")))
    }

    /// Tensor `t` as stored (2-D in a [`PackedKind`], with `keep_packed`) or dequantised.
    fn read_tensor(&self, t: &GgufTensorInfo, keep_packed: bool) -> Result<HostTensor> {
        let packed_kind = PackedKind::from_ggml(t.ggml_type).filter(|_| keep_packed);
        match packed_kind {
            Some(kind) if t.dims.len() == 2 => {
                let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
                let bytes = self.tensor_bytes(t)?.to_vec();
                Ok(HostTensor::packed(rows, cols, Packed { kind, bytes }))
            }
            _ => self.dequantize(t),
        }
    }

    /// Inserts `ht`, read from GGUF tensor `source` as `part` (itself, or a part of a fused
    /// tensor), into `map` under its HF name, a `llama`-converted file's q/k rows restored to
    /// HF's layout.
    ///
    /// Errors: q/k rows not divisible into the query (key/value) heads of even size; two GGUF
    /// tensors read under one HF name.
    fn read_as<'a>(
        &self,
        r: &mut Reading<'a>,
        source: &'a str,
        part: &str,
        mut ht: HostTensor,
        map: &mut WeightMap,
    ) -> Result<()> {
        // Every tensor that comes here has one (a fused tensor's parts are attn_q/k/v).
        let name = names::hf_name_in(r.arch, part).ok_or_else(|| {
            Error::format(
                &self.path,
                format!("tensor `{part}` (of `{source}`) has no HF name"),
            )
        })?;
        let llama_rows = names::permuted_qk(r.arch);
        let n_head = match names::layer_tensor(part) {
            Some((_, "attn_q", _)) if llama_rows => Some(r.heads.0),
            Some((_, "attn_k", _)) if llama_rows => Some(r.heads.1),
            _ => None,
        };
        if let Some(n) = n_head {
            if !unpermute_heads(&mut ht, n) {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `{source}` has shape {:?}: rows not divisible into {n} heads of even size", ht.shape),
                ));
            }
        }
        if part != source {
            map.rows_of.insert(name.clone(), source.to_string());
        }
        if let Some(first) = r.from.insert(name.clone(), source) {
            return Err(Error::format(
                &self.path,
                format!("tensors `{first}` and `{source}` are both read as {name} in a `{}` file; llama.cpp's loader makes one of them only", r.a),
            ));
        }
        map.insert(name, ht, &self.path)
    }
}

/// Restores HF's row order of a `llama`-converted q or k tensor (a weight, a bias, a LoRA's B)
/// of `n` heads, f32 or packed ([`quant::unpermute_rows`]); false, `t` untouched, where its rows
/// are not `n` heads of even size or it has more than 2 dimensions.
pub(super) fn unpermute_heads(t: &mut HostTensor, n: usize) -> bool {
    let rows = t.shape.first().copied().unwrap_or(0);
    if n == 0 || !rows.is_multiple_of(n.saturating_mul(2)) || t.shape.len() > 2 {
        return false;
    }
    let cols = t.shape.get(1).copied().unwrap_or(1);
    match &mut t.packed {
        // Rows of blocks move as wholes: permute rows of `row_bytes` bytes.
        Some(p) => p.bytes = quant::unpermute_rows(&p.bytes, rows, p.kind.row_bytes(cols), n),
        None => t.data = quant::unpermute_rows(&t.data, rows, cols, n),
    }
    true
}

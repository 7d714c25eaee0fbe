//! Host-side tensors as the loaders produce them: f32, row-major, with the HF tensor name, or
//! (for backends that compute on compact storage) the file's packed blocks.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Compact weight formats a backend may compute on directly (dequantised block by block inside
/// its matmul) instead of f32: GGUF's quantisations and half precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // ggml's names (Q4_K), as users and llama.cpp write them
pub enum PackedKind {
    /// IEEE half, 2 bytes per value.
    F16,
    /// bfloat16, 2 bytes per value.
    BF16,
    /// ggml Q8_0: blocks of 32 `i8` with one f16 scale (34 bytes).
    Q8_0,
    /// ggml Q4_0: blocks of 32 nibbles `(q - 8) * d` (18 bytes).
    Q4_0,
    /// ggml Q4_1: blocks of 32 nibbles `q * d + m` (20 bytes).
    Q4_1,
    /// ggml Q5_0: blocks of 32 five-bit `(q - 16) * d` (22 bytes).
    Q5_0,
    /// ggml Q5_1: blocks of 32 five-bit `q * d + m` (24 bytes).
    Q5_1,
    /// ggml Q2_K: blocks of 256 two-bit values, 16 groups with 4-bit scales and mins (84 bytes).
    Q2_K,
    /// ggml Q3_K: blocks of 256 three-bit values, 16 groups with 6-bit scales (110 bytes).
    Q3_K,
    /// ggml Q4_K: blocks of 256 nibbles, 8 groups with 6-bit scales and mins (144 bytes).
    Q4_K,
    /// ggml Q5_K: blocks of 256 five-bit values, 8 groups with 6-bit scales and mins (176
    /// bytes).
    Q5_K,
    /// ggml Q6_K: blocks of 256 six-bit values, 16 groups with 8-bit scales (210 bytes).
    Q6_K,
    /// ggml IQ4_NL: blocks of 32 nibbles indexing a non-linear table, one f16 scale (18 bytes).
    IQ4_NL,
    /// ggml IQ4_XS: blocks of 256 such nibbles, 8 groups with 6-bit scales (136 bytes).
    IQ4_XS,
}

impl PackedKind {
    /// Every kind.
    pub const ALL: [PackedKind; 14] = {
        use PackedKind::*;
        [
            F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
        ]
    };

    /// The kind of a ggml type id, if it is one of these.
    pub fn from_ggml(t: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.ggml_type() == t)
    }

    /// The ggml type id.
    pub fn ggml_type(self) -> u32 {
        use crate::loader::gguf::quant as q;
        match self {
            PackedKind::F16 => q::F16,
            PackedKind::BF16 => q::BF16,
            PackedKind::Q8_0 => q::Q8_0,
            PackedKind::Q4_0 => q::Q4_0,
            PackedKind::Q4_1 => q::Q4_1,
            PackedKind::Q5_0 => q::Q5_0,
            PackedKind::Q5_1 => q::Q5_1,
            PackedKind::Q2_K => q::Q2_K,
            PackedKind::Q3_K => q::Q3_K,
            PackedKind::Q4_K => q::Q4_K,
            PackedKind::Q5_K => q::Q5_K,
            PackedKind::Q6_K => q::Q6_K,
            PackedKind::IQ4_NL => q::IQ4_NL,
            PackedKind::IQ4_XS => q::IQ4_XS,
        }
    }

    /// Whether the CPU backend has kernels of its own for these blocks (the legacy 4- and 8-bit
    /// types: SIMD dots, integer dots, AMX tile packing); the others are dequantised in f32
    /// inside the dot or a tile ([`crate::cpu::packed_dot`]).
    pub fn has_block_kernels(self) -> bool {
        matches!(self, PackedKind::Q8_0 | PackedKind::Q4_0 | PackedKind::Q4_1)
    }

    /// `(values per block, bytes per block)`.
    pub fn block(self) -> (usize, usize) {
        let (_, per, bytes) = crate::loader::gguf::quant::type_info(self.ggml_type())
            .expect("every packed kind is a known ggml type");
        (per as usize, bytes as usize)
    }

    /// Bytes of host memory per parameter.
    pub fn bytes_per_param(self) -> f64 {
        let (n, b) = self.block();
        b as f64 / n as f64
    }

    /// The name ggml gives the type.
    pub fn name(self) -> &'static str {
        crate::loader::gguf::quant::type_info(self.ggml_type())
            .expect("every packed kind is a known ggml type")
            .0
    }

    /// Bytes of one row of `cols` values (`cols` must be a multiple of the block).
    pub fn row_bytes(self, cols: usize) -> usize {
        let (n, b) = self.block();
        cols / n * b
    }

    /// Dequantises whole blocks: `bytes` holds exactly `out.len()` values.
    pub fn dequantize(self, bytes: &[u8], out: &mut [f32]) {
        crate::loader::gguf::quant::dequantize_serial(self.ggml_type(), bytes, out);
    }
}

/// A 2-D tensor's values in a compact format: rows of blocks, row-major.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The format.
    pub kind: PackedKind,
    /// `rows * kind.row_bytes(cols)` bytes.
    pub bytes: Vec<u8>,
}

/// A named tensor in host memory, row-major: f32 values, or packed blocks (then `data` is
/// empty and [`HostTensor::values`] dequantises on demand).
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Shape, outermost first (a linear weight is `[out, in]` as in PyTorch).
    pub shape: Vec<usize>,
    /// Row-major values (empty when `packed` holds them).
    pub data: Vec<f32>,
    /// The file's compact storage, kept for backends that compute on it.
    pub packed: Option<Packed>,
}

impl HostTensor {
    /// A tensor from its shape and values; panics unless the product of `shape` equals
    /// `data.len()`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "HostTensor::new: shape {shape:?}"
        );
        HostTensor {
            shape,
            data,
            packed: None,
        }
    }

    /// A 2-D tensor kept in packed form; panics unless `packed` holds `rows` rows of `cols`.
    pub fn packed(rows: usize, cols: usize, packed: Packed) -> Self {
        assert_eq!(
            packed.bytes.len(),
            rows * packed.kind.row_bytes(cols),
            "HostTensor::packed: {rows}x{cols}"
        );
        HostTensor {
            shape: vec![rows, cols],
            data: Vec::new(),
            packed: Some(packed),
        }
    }

    /// The rows `rows` (indices along the first dimension, in that order; a 1-D tensor's
    /// elements) as a tensor of their own, in this one's storage: packed rows move whole.
    /// Panics on a 0-d tensor or an index past the rows.
    pub fn gather_rows(&self, rows: impl IntoIterator<Item = usize>) -> HostTensor {
        fn gather<T: Copy>(v: &[T], total: usize, rows: &[usize]) -> Vec<T> {
            let len = v.len().checked_div(total).unwrap_or(0);
            rows.iter()
                .flat_map(|&r| &v[r * len..(r + 1) * len])
                .copied()
                .collect()
        }
        let rows: Vec<usize> = rows.into_iter().collect();
        let mut shape = self.shape.clone();
        let total = std::mem::replace(&mut shape[0], rows.len());
        let packed = (self.packed.as_ref()).map(|p| Packed {
            kind: p.kind,
            bytes: gather(&p.bytes, total, &rows),
        });
        let data = gather(&self.data, total, &rows);
        HostTensor {
            shape,
            data,
            packed,
        }
    }

    /// Consecutive blocks of the rows, of `rows` rows each in order (they should sum to
    /// `shape[0]`), kept in the tensor's storage (f32 or packed blocks).
    pub fn split_rows(&self, rows: impl IntoIterator<Item = usize>) -> Vec<HostTensor> {
        (rows.into_iter())
            .scan(0, |start, n| {
                let piece = self.gather_rows(*start..*start + n);
                *start += n;
                Some(piece)
            })
            .collect()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (borrowed, or dequantised from the packed form).
    pub fn values(&self) -> Cow<'_, [f32]> {
        match &self.packed {
            Some(p) => {
                let mut out = vec![0.0f32; self.numel()];
                p.kind.dequantize(&p.bytes, &mut out);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(&self.data),
        }
    }

    /// Index and value of the first NaN or infinity, if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        let v = self.values();
        v.iter().position(|v| !v.is_finite()).map(|i| (i, v[i]))
    }
}

/// Tensors by HF name (e.g. `model.layers.0.self_attn.q_proj.weight`), with the file they came
/// from for error messages. Loaders fill it; the model takes what it needs, checking shapes.
#[derive(Debug, Default)]
pub struct WeightMap {
    tensors: HashMap<String, (HostTensor, PathBuf)>,
    /// Where the weights came from (a directory or a file), for messages.
    pub origin: PathBuf,
    /// How the file names its tensors, where that differs from HF's (a GGUF's
    /// `blk.0.attn_q.weight`, an EXAONE 3 checkpoint's), so that messages name what the file
    /// holds.
    pub file_names: Option<FileNames>,
    /// The tensors read as rows of a stacked one (a fused `attn_qkv`'s q/k/v, Phi-3's
    /// `gate_up_proj`'s gate and up): each HF name's stacked tensor as the file names it, so
    /// that messages name what the file holds.
    pub rows_of: HashMap<String, String>,
}

/// How a model file names its tensors where they are not HF's, for messages.
#[derive(Debug, Clone, Copy)]
pub struct FileNames {
    /// The file's name for an HF name (`None`: the same).
    pub of: fn(&str) -> Option<String>,
    /// Whether the file lists shapes with `ne[0]` (the columns) first, as a GGUF does.
    pub gguf_order: bool,
}

impl WeightMap {
    /// An empty map for weights from `origin`.
    pub fn new(origin: impl AsRef<Path>) -> Self {
        WeightMap {
            tensors: HashMap::new(),
            origin: origin.as_ref().to_path_buf(),
            file_names: None,
            rows_of: HashMap::new(),
        }
    }

    /// Adds a tensor read from `file`; refuses NaN/inf values, naming the tensor.
    pub fn insert(&mut self, name: String, t: HostTensor, file: &Path) -> Result<()> {
        if let Some((i, v)) = t.first_non_finite() {
            let (what, _) = self.described(&name, &t.shape);
            return Err(Error::format(
                file,
                format!("tensor {what} holds a non-finite value ({v}) at flat index {i}: the weights are corrupt"),
            ));
        }
        self.tensors.insert(name, (t, file.to_path_buf()));
        Ok(())
    }

    /// Renames tensor `from` to `to` (a checkpoint's own prefix to the model's); nothing where
    /// `from` is absent.
    pub fn rename(&mut self, from: &str, to: String) {
        if let Some(t) = self.tensors.remove(from) {
            self.tensors.insert(to, t);
        }
    }

    /// Renames every tensor `model_name` gives another name (a checkpoint's own names to
    /// Llama's, which the model reads); whether any was. `whose` names the checkpoint's names
    /// in messages (`EXAONE's`).
    ///
    /// # Errors
    /// A tensor present under both names (which one the model should read is not for the
    /// loader to guess).
    pub fn rename_to_model(
        &mut self,
        model_name: impl Fn(&str) -> Option<String>,
        whose: &str,
    ) -> Result<bool> {
        let names: Vec<String> = self.names().map(String::from).collect();
        let mut renamed = false;
        for name in names {
            let Some(to) = model_name(&name) else {
                continue;
            };
            if self.contains(&to) {
                return Err(Error::format(
                    &self.origin,
                    format!("tensors `{name}` and `{to}` are one tensor under {whose} and Llama's names; keep one"),
                ));
            }
            self.rename(&name, to);
            renamed = true;
        }
        Ok(renamed)
    }

    /// Removes a tensor the model does not read, whatever its shape.
    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name).map(|(t, _)| t)
    }

    /// A tensor to modify in place (e.g. to merge adapters into it).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut HostTensor> {
        self.tensors.get_mut(name).map(|(t, _)| t)
    }

    /// The file a tensor was read from, if present.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).map(|(_, f)| f.as_path())
    }

    /// Whether a tensor is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor names (unordered).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// `name` for a message: the file's own name first where it has one, and shapes said in
    /// its order too (a GGUF lists `ne[0]`, the columns, first).
    pub(crate) fn described(&self, name: &str, shape: &[usize]) -> (String, String) {
        let own = self
            .file_names
            .and_then(|n| Some(((n.of)(name)?, n.gguf_order)));
        let (what, shape) = match own {
            Some((own, true)) => {
                let rev: Vec<usize> = shape.iter().rev().copied().collect();
                (
                    format!("`{own}` ({name})"),
                    format!("{rev:?} (GGUF order, ne[0] first)"),
                )
            }
            Some((own, false)) => (format!("`{own}` ({name})"), format!("{shape:?}")),
            None => (format!("`{name}`"), format!("{shape:?}")),
        };
        match self.rows_of.get(name) {
            Some(stacked) => (format!("{what} (rows of `{stacked}`)"), shape),
            None => (what, shape),
        }
    }

    /// How messages name tensor `name`: as the model file names it, with the HF name beside
    /// it for a GGUF (`` `token_embd.weight` (model.embed_tokens.weight) ``).
    pub fn display_name(&self, name: &str) -> String {
        self.described(name, &[]).0
    }

    /// Removes and returns a tensor, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let Some((t, file)) = self.tensors.remove(name) else {
            let (what, want) = self.described(name, shape);
            return Err(Error::format(
                &self.origin,
                format!("missing tensor {what}: expected shape {want}"),
            ));
        };
        if t.shape != shape {
            let (what, want) = self.described(name, shape);
            let (_, got) = self.described(name, &t.shape);
            return Err(Error::format(
                file,
                format!("tensor {what} has shape {got}, expected {want}"),
            ));
        }
        Ok(t)
    }

    /// Replaces the tensor `name` (a matrix of `cols` columns, or a bias vector where `cols`
    /// is `None`), if present, by consecutive blocks of its rows: `parts` are (name, rows) in
    /// row order, each kept in the tensor's storage (f32 or packed blocks, whose rows are whole
    /// blocks), from the same file. Returns whether it was present. A part the map holds already
    /// is replaced, with a warning (transformers, too, takes the stacked tensor and ignores the
    /// other), or in a GGUF's map refused.
    ///
    /// Errors: the tensor is not `[sum of rows, cols]` (`[sum of rows]`; the message names it
    /// and both shapes); a GGUF's part present beside it.
    pub fn split_rows(
        &mut self,
        name: &str,
        cols: Option<usize>,
        parts: &[(String, usize)],
    ) -> Result<bool> {
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let file = self
            .file_of(name)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let shape: Vec<usize> = std::iter::once(rows).chain(cols).collect();
        let Some(t) = self.take_opt(name, &shape)? else {
            return Ok(false);
        };
        // A single part is the tensor renamed (StarCoder2's `c_fc` as up_proj): moved whole.
        let pieces: Vec<HostTensor> = match parts {
            [_] => vec![t],
            _ => t.split_rows(parts.iter().map(|p| p.1)),
        };
        for ((part, _), piece) in parts.iter().zip(pieces) {
            // A GGUF with both: llama.cpp's loader makes one of them and refuses the file (a
            // tensor left over).
            if self.contains(part) && self.file_names.is_some_and(|n| n.gguf_order) {
                return Err(Error::format(
                    &self.origin,
                    format!(
                        "both {} and {}: llama.cpp's loader reads one of them only and refuses the file",
                        self.display_name(name),
                        self.display_name(part)
                    ),
                ));
            }
            if self.contains(part) {
                tracing::warn!(
                    "{}: both {} and {}: the rows of the first are used",
                    self.origin.display(),
                    self.display_name(name),
                    self.display_name(part)
                );
            }
            // The values were checked when the whole tensor was inserted.
            self.tensors.insert(part.clone(), (piece, file.clone()));
            let stacked = self.file_names.and_then(|n| (n.of)(name));
            (self.rows_of).insert(part.clone(), stacked.unwrap_or_else(|| name.to_string()));
        }
        Ok(true)
    }

    /// Removes and returns a tensor if present, checking its shape.
    pub fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<HostTensor>> {
        if self.contains(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

//! GGUF reader (llama.cpp's model format, versions 2 and 3, little-endian): memory-maps the file,
//! parses and bounds-checks header, metadata and tensor infos, builds a
//! [`ModelConfig`](crate::config::ModelConfig) from the `llama.*`, `qwen2.*` or `qwen3.*`
//! metadata and dequantises tensors to f32 under HF names, with a `llama` file's attn_q / attn_k
//! rows restored to HF's rotate-half layout.

mod hparams;
pub mod lora;
pub(crate) use hparams::EOG_TEXTS;
mod fused_qkv;
pub(crate) mod kquant;
pub(crate) mod names;
pub mod quant;
mod reader;
mod weights;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use reader::Reader;

use crate::error::{Error, Result};
use crate::tensor::HostTensor;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; deeper nesting than this only comes from corrupt files.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Files above this size get a progress bar while loading.
const PROGRESS_BYTES: u64 = 64 << 20;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// type 0
    U8(u8),
    /// type 1
    I8(i8),
    /// type 2
    U16(u16),
    /// type 3
    I16(i16),
    /// type 4
    U32(u32),
    /// type 5
    I32(i32),
    /// type 6
    F32(f32),
    /// type 7
    Bool(bool),
    /// type 8
    Str(String),
    /// type 9
    Array(Vec<GgufValue>),
    /// type 10
    U64(u64),
    /// type 11
    I64(i64),
    /// type 12
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// The value as a float, if it is any number (a negative integer included).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The value as a message names it: its GGUF type and value (`the string "4"`, `the u32 4`,
/// `an array of 3 values`), not Rust's debug form.
impl std::fmt::Display for GgufValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::U8(v) => write!(f, "the u8 {v}"),
            Self::I8(v) => write!(f, "the i8 {v}"),
            Self::U16(v) => write!(f, "the u16 {v}"),
            Self::I16(v) => write!(f, "the i16 {v}"),
            Self::U32(v) => write!(f, "the u32 {v}"),
            Self::I32(v) => write!(f, "the i32 {v}"),
            Self::U64(v) => write!(f, "the u64 {v}"),
            Self::I64(v) => write!(f, "the i64 {v}"),
            Self::F32(v) => write!(f, "the f32 {v}"),
            Self::F64(v) => write!(f, "the f64 {v}"),
            Self::Bool(v) => write!(f, "the bool {v}"),
            Self::Str(s) if s.chars().count() > 64 => {
                let head: String = s.chars().take(64).collect();
                write!(
                    f,
                    "the string {head:?}... ({} characters)",
                    s.chars().count()
                )
            }
            Self::Str(s) => write!(f, "the string {s:?}"),
            Self::Array(a) => write!(f, "an array of {} values", a.len()),
        }
    }
}

/// Whether `path` is a file that starts with GGUF's magic (a model, or a llama.cpp LoRA
/// adapter).
pub fn is_gguf_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok_and(|_| &magic == b"GGUF")
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF order, `ne[0]` (the contiguous one) first.
    pub dims: Vec<u64>,
    /// ggml type number.
    pub ggml_type: u32,
    /// Byte offset inside the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Size of the data in bytes, if the type is known.
    pub fn byte_size(&self) -> Option<u64> {
        quant::type_info(self.ggml_type)
            .map(|(_, blck, size)| (self.n_elements() / blck).saturating_mul(size))
    }
}

/// An open, validated GGUF file.
pub struct GgufFile {
    /// The file.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// All metadata key/value pairs.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensorInfo>,
    mmap: Mmap,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`, checking every count, length and offset against the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap-based loader we assume the file is not
        // truncated by another process while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut r = Reader {
            buf: &mmap,
            pos: 0,
            path,
        };
        let magic = r.array::<4>(&|| "magic".into())?;
        if &magic != MAGIC {
            return Err(r.err(format!(
                "bad magic: expected {:?} (a GGUF file), found {:?}",
                String::from_utf8_lossy(MAGIC),
                String::from_utf8_lossy(&magic)
            )));
        }
        let version = r.u32(&|| "version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::unsupported(format!(
                    "{}: GGUF version 1 (only versions 2 and 3 are read; re-convert the model with a current llama.cpp)",
                    path.display()
                )))
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(Error::unsupported(format!("{}: big-endian GGUF file", path.display())))
            }
            v => return Err(r.err(format!("unknown GGUF version {v} (expected 2 or 3)"))),
        }
        let n_tensors = r.u64(&|| "tensor count".into())?;
        let n_kv = r.u64(&|| "metadata count".into())?;
        // A key/value pair takes at least 13 bytes, a tensor info at least 24.
        if n_kv.saturating_mul(13) > r.remaining() || n_tensors.saturating_mul(24) > r.remaining() {
            return Err(r.err(format!(
                "header claims {n_kv} metadata entries and {n_tensors} tensors, which cannot fit in a \
                 {}-byte file (truncated or corrupt header)",
                mmap.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.strict_str(&|| format!("metadata key #{i}"))?;
            let ty = r.u32(&|| format!("value type of metadata key `{key}`"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.err(format!("duplicate metadata key `{key}`")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(r.err(format!(
                    "general.alignment must be a u32 power of two, found {v:?}"
                )))
            }
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut seen = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let name = r.strict_str(&|| format!("name of tensor #{i}"))?;
            let w = || format!("info of tensor `{name}`");
            let n_dims = r.u32(&w)?;
            if n_dims > MAX_DIMS {
                return Err(r.err(format!(
                    "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
                )));
            }
            let dims = (0..n_dims).map(|_| r.u64(&w)).collect::<Result<Vec<_>>>()?;
            let ggml_type = r.u32(&w)?;
            let offset = r.u64(&w)?;
            if !seen.insert(name.clone()) {
                return Err(r.err(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
        let g = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            mmap,
            data_offset,
        };
        for t in &g.tensors {
            g.check_tensor(t, alignment)?;
        }
        Ok(g)
    }

    fn check_tensor(&self, t: &GgufTensorInfo, alignment: u64) -> Result<()> {
        let bad = |m: String| {
            Err(Error::format(
                &self.path,
                format!("tensor `{}`: {m}", t.name),
            ))
        };
        let Some(numel) = t
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n < 1 << 62)
        else {
            return bad(format!("dimensions {:?} are too large", t.dims));
        };
        if !t.offset.is_multiple_of(alignment) {
            return bad(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                t.offset
            ));
        }
        // Unknown types cannot be sized; loading them fails later with a clear message.
        let Some((tname, blck, bsize)) = quant::type_info(t.ggml_type) else {
            return Ok(());
        };
        let ne0 = t.dims.first().copied().unwrap_or(1);
        if !ne0.is_multiple_of(blck) {
            return bad(format!("type {tname} stores blocks of {blck} values, but ne[0] = {ne0} is not divisible by {blck}"));
        }
        let Some(size) = (numel / blck).checked_mul(bsize) else {
            return bad(format!("dimensions {:?} are too large", t.dims));
        };
        let avail = (self.mmap.len() as u64).saturating_sub(self.data_offset);
        if t.offset.checked_add(size).is_none_or(|end| end > avail) {
            return bad(format!(
                "data ({size} bytes of {tname} at data offset {}) runs past the end of the file \
                 (data section is {avail} bytes): truncated file",
                t.offset
            ));
        }
        Ok(())
    }

    /// A tensor's bytes as the file stores them (bounds were checked by `open` for every known
    /// type).
    ///
    /// Errors: a type whose block size is not known ([`GgufFile::type_name`] `unknown`).
    pub fn tensor_bytes(&self, t: &GgufTensorInfo) -> Result<&[u8]> {
        let size = t.byte_size().ok_or_else(|| self.unsupported_type(t))?;
        let start = (self.data_offset + t.offset) as usize;
        Ok(&self.mmap[start..start + size as usize])
    }

    fn unsupported_type(&self, t: &GgufTensorInfo) -> Error {
        let name = match Self::type_name(t.ggml_type) {
            "unknown" => format!("unknown (ggml type id {})", t.ggml_type),
            n => n.to_string(),
        };
        Error::unsupported(format!(
            "{}: tensor {} has type {name}, supported: {}",
            self.path.display(),
            t.name,
            quant::SUPPORTED
        ))
    }

    /// Dequantises one tensor to f32 with the PyTorch shape (GGUF dims reversed).
    pub fn dequantize(&self, t: &GgufTensorInfo) -> Result<HostTensor> {
        if !quant::is_supported(t.ggml_type) {
            return Err(self.unsupported_type(t));
        }
        let bytes = self.tensor_bytes(t)?;
        let mut data = vec![0.0f32; t.n_elements() as usize];
        quant::dequantize(t.ggml_type, bytes, &mut data);
        let shape = t.dims.iter().rev().map(|&d| d as usize).collect();
        Ok(HostTensor::new(shape, data))
    }

    /// `tokenizer.chat_template`, if present.
    pub fn chat_template(&self) -> Option<String> {
        self.metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(String::from)
    }

    /// ggml's name of a tensor type (`Q4_0`, ...), `unknown` for numbers it does not know.
    pub fn type_name(ggml_type: u32) -> &'static str {
        quant::type_info(ggml_type).map_or("unknown", |(n, _, _)| n)
    }

    /// A human-readable dump for `dlp-run inspect`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "GGUF v{}: {} ({} bytes)",
            self.version,
            self.path.display(),
            self.mmap.len()
        );
        let _ = writeln!(s, "metadata ({} keys):", self.metadata.len());
        for (k, v) in &self.metadata {
            let _ = writeln!(s, "  {k} = {}", short_value(v));
        }
        let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for t in &self.tensors {
            let e = by_type.entry(Self::type_name(t.ggml_type)).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(t.n_elements());
        }
        let _ = writeln!(s, "tensors: {}", self.tensors.len());
        for (ty, (n, numel)) in &by_type {
            let _ = writeln!(s, "  {ty:<8} {n:>5} tensors, {numel} values");
        }
        const SHOWN: usize = 12;
        let _ = writeln!(s, "first tensors (GGUF dims, ne[0] first):");
        for t in self.tensors.iter().take(SHOWN) {
            let _ = writeln!(
                s,
                "  {:<36} {:<8} {:?}",
                t.name,
                Self::type_name(t.ggml_type),
                t.dims
            );
        }
        if self.tensors.len() > SHOWN {
            let _ = writeln!(s, "  ... {} more", self.tensors.len() - SHOWN);
        }
        s
    }
}

/// One line per value: long strings cut, arrays shortened to their first elements.
fn short_value(v: &GgufValue) -> String {
    const MAX: usize = 80;
    match v {
        GgufValue::Str(s) => {
            let esc: String = format!("{s:?}");
            if esc.chars().count() > MAX {
                format!(
                    "{}...\" ({} chars)",
                    esc.chars().take(MAX).collect::<String>(),
                    s.chars().count()
                )
            } else {
                esc
            }
        }
        GgufValue::Array(a) => {
            let head: Vec<String> = a.iter().take(4).map(short_value).collect();
            let more = if a.len() > 4 { ", ..." } else { "" };
            let n = a.len();
            format!(
                "[{}{more}] ({n} element{})",
                head.join(", "),
                if n == 1 { "" } else { "s" }
            )
        }
        GgufValue::U8(x) => x.to_string(),
        GgufValue::I8(x) => x.to_string(),
        GgufValue::U16(x) => x.to_string(),
        GgufValue::I16(x) => x.to_string(),
        GgufValue::U32(x) => x.to_string(),
        GgufValue::I32(x) => x.to_string(),
        GgufValue::U64(x) => x.to_string(),
        GgufValue::I64(x) => x.to_string(),
        GgufValue::F32(x) => x.to_string(),
        GgufValue::F64(x) => x.to_string(),
        GgufValue::Bool(x) => x.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_conversions() {
        assert_eq!(GgufValue::I32(-1).as_u64(), None);
        assert_eq!(GgufValue::U16(7).as_u64(), Some(7));
        assert_eq!(GgufValue::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(GgufValue::I32(-3).as_f64(), Some(-3.0));
        assert_eq!(GgufValue::Str("1".into()).as_f64(), None);
        assert_eq!(GgufFile::type_name(13), "Q5_K");
        assert_eq!(GgufFile::type_name(999), "unknown");
    }
}

//! Bounds-checked parsing of GGUF header fields and metadata values.

use std::path::Path;

use super::{GgufValue, MAX_ARRAY_DEPTH};
use crate::error::{Error, Result};

/// Bounds-checked little-endian cursor; every failure names the file and the offset.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) path: &'a Path,
}

impl<'a> Reader<'a> {
    pub(super) fn err(&self, msg: String) -> Error {
        Error::format(self.path, msg)
    }
    pub(super) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }
    pub(super) fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated file: {} needs {n} bytes at offset {}, but the file ends at {}",
                what(),
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    pub(super) fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returns N bytes"))
    }
    pub(super) fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }
    pub(super) fn bytes_str(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() {
            return Err(self.err(format!(
                "{} has length {len} at offset {}, more than the {} bytes left in the file \
                 (corrupt or truncated)",
                what(),
                self.pos - 8,
                self.remaining()
            )));
        }
        self.take(len, what)
    }
    /// A string that must be valid UTF-8 (keys, tensor names).
    pub(super) fn strict_str(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let b = self.bytes_str(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| self.err(format!("{} is not valid UTF-8", what())))
    }
    pub(super) fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<GgufValue> {
        let w = || format!("value of metadata key `{key}`");
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>(&w)?[0]),
            1 => GgufValue::I8(self.array::<1>(&w)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(&w)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(&w)?)),
            4 => GgufValue::U32(self.u32(&w)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(&w)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(&w)?)),
            7 => match self.array::<1>(&w)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(self.err(format!(
                        "metadata key `{key}`: bool must be 0 or 1, found {b}"
                    )))
                }
            },
            // Values (token strings) may hold arbitrary bytes in old converters: keep them.
            8 => GgufValue::Str(String::from_utf8_lossy(self.bytes_str(&w)?).into_owned()),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "metadata key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let ety = self.u32(&|| format!("array element type of `{key}`"))?;
                let n = self.u64(&|| format!("array length of `{key}`"))?;
                let min = min_value_size(ety).ok_or_else(|| {
                    self.err(format!(
                        "metadata key `{key}`: unknown array element type {ety} (expected 0..=12)"
                    ))
                })?;
                if n.saturating_mul(min) > self.remaining() {
                    return Err(self.err(format!(
                        "metadata key `{key}`: array of {n} elements cannot fit in the {} bytes left \
                         in the file (corrupt or truncated)",
                        self.remaining()
                    )));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, key, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(self.u64(&w)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(&w)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(&w)?)),
            t => {
                return Err(self.err(format!(
                    "metadata key `{key}`: unknown value type {t} (expected 0..=12)"
                )))
            }
        })
    }
}

/// Smallest encoding of a value of type `t`, to reject absurd array lengths before allocating.
fn min_value_size(t: u32) -> Option<u64> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

//! A GGUF's attention widths: head counts and the head width, as llama.cpp reads them.

use super::super::GgufFile;
use crate::error::{Error, Result};

impl GgufFile {
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
}

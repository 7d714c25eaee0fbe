//! The KV cache in bf16 ([`crate::CudaOptions::kv_bf16`]): the cache buffers stay
//! `CudaSlice<f32>` (what the engine's `Backend::Buf` is), each f32 word holding two bf16
//! values, element `2i` in the low half of word `i` (the `unsigned short` layout the
//! `_bf16` kernels of attention.cu read and write on a little-endian GPU).

use std::ops::Range;

use cudarc::driver::{CudaSlice, DevicePtrMut};
use dlp_engine::{Error, Result};

use crate::{err, CudaBackend};

/// `values` rounded to bf16 (nearest, ties to even, as `kv_store_bf16` stores them) and packed
/// two per word.
pub fn pack_bf16(values: &[f32]) -> Vec<f32> {
    values
        .chunks(2)
        .map(|p| {
            let lo = half::bf16::from_f32(p[0]).to_bits() as u32;
            let hi = p
                .get(1)
                .map_or(0, |&v| half::bf16::from_f32(v).to_bits() as u32);
            f32::from_bits(lo | hi << 16)
        })
        .collect()
}

/// The first `len` values of words packed by [`pack_bf16`] (or written by `kv_store_bf16`).
pub fn unpack_bf16(words: &[f32], len: usize) -> Vec<f32> {
    words
        .iter()
        .flat_map(|w| {
            let b = w.to_bits();
            [b << 16, b & 0xffff_0000].map(f32::from_bits)
        })
        .take(len)
        .collect()
}

/// How [`dlp_engine::Backend::copy_kv`] moves `len` values of a KV buffer whose f32 words hold
/// `per_word` values each (1: f32; 2: packed bf16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCopy {
    /// Whole words, `len` of them from word `from` to word `to`: one device-to-device copy.
    Words { from: usize, to: usize, len: usize },
    /// Values that start or end inside a word (bf16 at odd offsets: a model whose KV width is
    /// odd): the words `src` and `dst` go through the host, where [`copy_packed`] moves the
    /// values and keeps the other halves of `dst`'s end words.
    Host {
        src: Range<usize>,
        dst: Range<usize>,
    },
}

/// The [`KvCopy`] of `len` values from value `from` to value `to` (`per_word` 1 or 2).
pub fn plan_copy(per_word: usize, from: usize, to: usize, len: usize) -> KvCopy {
    if [from, to, len].iter().all(|v| v % per_word == 0) {
        return KvCopy::Words {
            from: from / per_word,
            to: to / per_word,
            len: len / per_word,
        };
    }
    let words = |at: usize| at / per_word..(at + len).div_ceil(per_word);
    KvCopy::Host {
        src: words(from),
        dst: words(to),
    }
}

/// Copies `len` packed bf16 values from value `src_at` of `src` to value `dst_at` of `dst`
/// (words laid out as [`pack_bf16`] lays them), bit for bit; `dst`'s other values stay.
///
/// # Panics
/// A range past its words (the caller sized them with [`plan_copy`]).
pub fn copy_packed(src: &[f32], src_at: usize, dst: &mut [f32], dst_at: usize, len: usize) {
    for i in 0..len {
        let (s, d) = (src_at + i, dst_at + i);
        let value = (src[s / 2].to_bits() >> (16 * (s % 2))) & 0xffff;
        let shift = 16 * (d % 2);
        let kept = dst[d / 2].to_bits() & !(0xffff << shift);
        dst[d / 2] = f32::from_bits(kept | value << shift);
    }
}

impl CudaBackend {
    /// f32 words of a KV buffer of `values` values (half of them, rounded up, in bf16).
    pub(crate) fn kv_words(&self, values: usize) -> usize {
        if self.options.kv_bf16 {
            values.div_ceil(2)
        } else {
            values
        }
    }

    /// [`dlp_engine::Backend::copy_kv`] ([`crate::Experimental::kv_copy`]): on the backend's
    /// stream, after the kernels queued before it and before those after.
    pub(crate) fn copy_kv_values(
        &self,
        buf: &mut CudaSlice<f32>,
        from: usize,
        to: usize,
        len: usize,
    ) -> Result<()> {
        if !self.options.experimental.kv_copy {
            return Err(Error::unsupported(
                "cuda: copying KV-cache rows needs --cuda-experimental kv-copy",
            ));
        }
        let per_word = if self.options.kv_bf16 { 2 } else { 1 };
        dlp_engine::backend::check_kv_copy(buf.len() * per_word, from, to, len)?;
        if self.capturing.load(std::sync::atomic::Ordering::Acquire) {
            return Err(err("copy_kv: during a CUDA graph capture"));
        }
        let what = format!("copy_kv: {len} values from {from} to {to}");
        let stream = self.stream();
        match plan_copy(per_word, from, to, len) {
            KvCopy::Words { len: 0, .. } => {}
            KvCopy::Words { from, to, len } => {
                let word = std::mem::size_of::<f32>() as u64;
                // The raw copy below does not bind the context as cudarc's own calls do.
                stream
                    .context()
                    .bind_to_thread()
                    .map_err(|e| err(format!("{what}: binding the CUDA context: {e}")))?;
                let (p, _g) = buf.device_ptr_mut(stream);
                // SAFETY: both ranges lie inside `buf` and apart (check_kv_copy), and the copy
                // is ordered on the stream that every kernel using `buf` runs on.
                unsafe {
                    cudarc::driver::result::memcpy_dtod_async(
                        p + to as u64 * word,
                        p + from as u64 * word,
                        len * word as usize,
                        stream.cu_stream(),
                    )
                }
                .map_err(|e| err(format!("{what}: {e}")))?;
            }
            KvCopy::Host { src, dst } => {
                let read = |r: &Range<usize>| {
                    stream
                        .clone_dtoh(&buf.slice(r.clone()))
                        .map_err(|e| err(format!("{what}: reading words {r:?}: {e}")))
                };
                let (words, mut out) = (read(&src)?, read(&dst)?);
                copy_packed(
                    &words,
                    from - 2 * src.start,
                    &mut out,
                    to - 2 * dst.start,
                    len,
                );
                stream
                    .memcpy_htod(&out, &mut buf.slice_mut(dst.clone()))
                    .map_err(|e| err(format!("{what}: writing words {dst:?}: {e}")))?;
            }
        }
        self.sync_if_asked("copy_kv")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_rounds_to_nearest_even_and_keeps_order() {
        // 1 + 2^-8 ties to 1.0; 1 + 3 * 2^-8 ties to 1 + 2^-6; odd lengths pad the last word.
        let v = [1.0 + 1.0 / 256.0, -2.5, 1.0 + 3.0 / 256.0, 3.0e38, 7.0];
        let w = pack_bf16(&v);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].to_bits() & 0xffff, 0x3f80, "element 0 in the low half");
        assert_eq!(
            unpack_bf16(&w, 5),
            vec![
                1.0,
                -2.5,
                1.0 + 1.0 / 64.0,
                half::bf16::from_f32(3.0e38).to_f32(),
                7.0
            ]
        );
        assert_eq!(unpack_bf16(&w, 4).len(), 4);
        assert!(unpack_bf16(&pack_bf16(&[f32::NAN]), 1)[0].is_nan());
    }

    /// Whole words copy on the device; bf16 values at odd offsets or of odd length go through
    /// the host, over the words they touch.
    #[test]
    fn copies_are_whole_words_where_they_can_be() {
        assert_eq!(
            plan_copy(1, 3, 10, 5),
            KvCopy::Words {
                from: 3,
                to: 10,
                len: 5
            }
        );
        assert_eq!(
            plan_copy(2, 4, 12, 6),
            KvCopy::Words {
                from: 2,
                to: 6,
                len: 3
            }
        );
        assert_eq!(
            plan_copy(2, 3, 12, 6),
            KvCopy::Host {
                src: 1..5,
                dst: 6..9
            }
        );
        assert_eq!(
            plan_copy(2, 4, 12, 5),
            KvCopy::Host {
                src: 2..5,
                dst: 6..9
            }
        );
    }

    /// Packed copies at every parity of source, destination and length move exactly the
    /// values named, bit for bit (a NaN's payload included), as a copy of the unpacked values
    /// would, and leave the destination's other values as they were.
    #[test]
    fn packed_copies_match_a_copy_of_the_values() {
        let values: Vec<f32> = (0..40)
            .map(|i| half::bf16::from_f32(i as f32 * 1.5 - 7.0).to_f32())
            .collect();
        let nan = f32::from_bits(0x7fc1_0000);
        // The last two share a word between source and destination.
        let cases = [
            (3, 20, 7),
            (2, 21, 6),
            (5, 30, 4),
            (0, 11, 9),
            (21, 1, 5),
            (0, 3, 3),
            (3, 0, 3),
        ];
        for (from, to, len) in cases {
            let mut v = values.clone();
            v[from] = nan;
            let packed = pack_bf16(&v);
            let KvCopy::Host { src, dst } = plan_copy(2, from, to, len) else {
                panic!("({from}, {to}, {len}) is not whole words")
            };
            let mut out = packed[dst.clone()].to_vec();
            copy_packed(
                &packed[src.clone()],
                from - 2 * src.start,
                &mut out,
                to - 2 * dst.start,
                len,
            );
            let mut words = packed.clone();
            words[dst].copy_from_slice(&out);
            let mut want = v.clone();
            want.copy_within(from..from + len, to);
            let got = unpack_bf16(&words, v.len());
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "({from}, {to}, {len})");
        }
    }
}

//! The KV cache in bf16 ([`crate::CudaOptions::kv_bf16`]): the cache buffers stay
//! `CudaSlice<f32>` (what the engine's `Backend::Buf` is), each f32 word holding two bf16
//! values, element `2i` in the low half of word `i` (the `unsigned short` layout the
//! `_bf16` kernels of attention.cu read and write on a little-endian GPU).

use crate::CudaBackend;

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

impl CudaBackend {
    /// f32 words of a KV buffer of `values` values (half of them, rounded up, in bf16).
    pub(crate) fn kv_words(&self, values: usize) -> usize {
        if self.options.kv_bf16 {
            values.div_ceil(2)
        } else {
            values
        }
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
}

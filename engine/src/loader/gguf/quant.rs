//! ggml tensor types: block geometry of every known type, and dequantisation of the types this
//! engine loads (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the k-quants Q2_K to Q6_K,
//! IQ4_NL and IQ4_XS), bit-exact with ggml's reference code.

use half::{bf16, f16};
use rayon::prelude::*;

use super::kquant;
pub(crate) use super::kquant::{dot_q4_k, dot_q5_k, dot_q6_k};

/// `GGML_TYPE_F32`
pub const F32: u32 = 0;
/// `GGML_TYPE_F16`
pub const F16: u32 = 1;
/// `GGML_TYPE_Q4_0`
pub const Q4_0: u32 = 2;
/// `GGML_TYPE_Q4_1`
pub const Q4_1: u32 = 3;
/// `GGML_TYPE_Q5_0`
pub const Q5_0: u32 = 6;
/// `GGML_TYPE_Q5_1`
pub const Q5_1: u32 = 7;
/// `GGML_TYPE_Q8_0`
pub const Q8_0: u32 = 8;
/// `GGML_TYPE_Q2_K`
pub const Q2_K: u32 = 10;
/// `GGML_TYPE_Q3_K`
pub const Q3_K: u32 = 11;
/// `GGML_TYPE_Q4_K`
pub const Q4_K: u32 = 12;
/// `GGML_TYPE_Q5_K`
pub const Q5_K: u32 = 13;
/// `GGML_TYPE_Q6_K`
pub const Q6_K: u32 = 14;
/// `GGML_TYPE_IQ4_NL`
pub const IQ4_NL: u32 = 20;
/// `GGML_TYPE_IQ4_XS`
pub const IQ4_XS: u32 = 23;
/// `GGML_TYPE_BF16`
pub const BF16: u32 = 30;

/// The types [`dequantize`] handles, as listed in error messages.
pub const SUPPORTED: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";

/// Name, elements per block and bytes per block of a ggml type (ggml.c `type_traits`).
/// Sizes are known for types we cannot dequantise too, so `open` can still bounds-check them.
pub fn type_info(t: u32) -> Option<(&'static str, u64, u64)> {
    Some(match t {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

/// Whether [`dequantize`] handles type `t`: f32 and every kind a backend may keep packed.
pub fn is_supported(t: u32) -> bool {
    t == F32 || crate::tensor::PackedKind::from_ggml(t).is_some()
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `bytes` (exactly the tensor's data, `out.len()` elements) of type `t` into `out`.
/// The caller has checked that `t` is supported and that the sizes match.
pub fn dequantize(t: u32, bytes: &[u8], out: &mut [f32]) {
    // Large chunks keep rayon's overhead negligible; blocks never straddle a chunk.
    const CHUNK: usize = 32 * 1024;
    let (blck, bsize) = match type_info(t) {
        Some((_, b, s)) => (b as usize, s as usize),
        None => unreachable!("dequantize called on unknown type {t}"),
    };
    assert_eq!(
        out.len() / blck * bsize,
        bytes.len(),
        "dequantize: output and block sizes"
    );
    out.par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(CHUNK / blck * bsize))
        .for_each(|(o, b)| dequantize_serial(t, b, o));
}

/// [`dequantize`] on the calling thread (for one row or tile at a time).
#[inline(always)]
pub fn dequantize_serial(t: u32, bytes: &[u8], out: &mut [f32]) {
    match t {
        F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        // ggml: low nibbles are elements 0..16, high nibbles 16..32; y = (q - 8) * d.
        Q4_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
                let d = half_at(b, 0);
                for j in 0..16 {
                    o[j] = ((b[2 + j] & 0x0f) as i32 - 8) as f32 * d;
                    o[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        // y = q * d + m, unfused as in ggml and gguf-py.
        Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(20)) {
                let (d, m) = (half_at(b, 0), half_at(b, 2));
                for j in 0..16 {
                    o[j] = (b[4 + j] & 0x0f) as f32 * d + m;
                    o[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
                }
            }
        }
        Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = half_at(b, 0);
                for j in 0..32 {
                    o[j] = b[2 + j] as i8 as f32 * d;
                }
            }
        }
        Q5_0 => kquant::q5_0(bytes, out),
        Q5_1 => kquant::q5_1(bytes, out),
        Q2_K => kquant::q2_k(bytes, out),
        Q3_K => kquant::q3_k(bytes, out),
        Q4_K => kquant::q4_k(bytes, out),
        Q5_K => kquant::q5_k(bytes, out),
        Q6_K => kquant::q6_k(bytes, out),
        IQ4_NL => kquant::iq4_nl(bytes, out),
        IQ4_XS => kquant::iq4_xs(bytes, out),
        _ => unreachable!("dequantize called on unsupported type {t}"),
    }
}

/// Undoes llama.cpp's `permute(w, n_head)` of attn_q / attn_k rows (row-major `[rows, cols]`):
/// the converter interleaves the two RoPE halves of each head; HF's rotate-half layout keeps
/// them apart. GGUF row `h*hd + 2*i + j` holds HF row `h*hd + j*hd/2 + i`.
/// The caller checks `rows % (2 * n_head) == 0`.
pub fn unpermute_rows<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Vec<T> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_block() {
        let mut b = h(0.5).to_vec();
        // byte j: low nibble j, high nibble 15 - j
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = vec![0.0; 32];
        dequantize(Q4_0, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(out[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_1_block() {
        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = vec![0.0; 32];
        dequantize(Q4_1, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.25 - 1.0);
            assert_eq!(out[j + 16], (15 - j) as f32 * 0.25 - 1.0);
        }
    }

    #[test]
    fn q8_0_two_blocks() {
        let mut b = Vec::new();
        for (k, d) in [(0, 0.125f32), (1, -2.0)] {
            b.extend(h(d));
            b.extend((0..32i32).map(|j| ((j - 16) * (k + 1) * 3) as i8 as u8));
        }
        let mut out = vec![0.0; 64];
        dequantize(Q8_0, &b, &mut out);
        for j in 0..32 {
            assert_eq!(out[j], ((j as i32 - 16) * 3) as i8 as f32 * 0.125);
            assert_eq!(out[32 + j], ((j as i32 - 16) * 6) as i8 as f32 * -2.0);
        }
    }

    #[test]
    fn float_types() {
        let mut out = vec![0.0; 2];
        let b: Vec<u8> = [1.5f32, -3.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        dequantize(F32, &b, &mut out);
        assert_eq!(out, [1.5, -3.25]);
        let b: Vec<u8> = [h(1.5), h(-3.25)].concat();
        dequantize(F16, &b, &mut out);
        assert_eq!(out, [1.5, -3.25]);
        let b: Vec<u8> = [
            bf16::from_f32(1.5).to_le_bytes(),
            bf16::from_f32(-3.25).to_le_bytes(),
        ]
        .concat();
        dequantize(BF16, &b, &mut out);
        assert_eq!(out, [1.5, -3.25]);
    }

    #[test]
    fn large_tensor_chunks_align() {
        // More than one rayon chunk, to check chunk boundaries fall on block boundaries.
        let n_blocks = 3000;
        let mut b = Vec::new();
        for k in 0..n_blocks {
            b.extend(h((k % 7) as f32));
            b.extend((0..32).map(|j| j as u8));
        }
        let mut out = vec![0.0; n_blocks * 32];
        dequantize(Q8_0, &b, &mut out);
        for k in 0..n_blocks {
            for j in 0..32 {
                assert_eq!(out[k * 32 + j], j as f32 * (k % 7) as f32);
            }
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)
        let (n_head, hd, cols) = (3, 4, 2);
        let rows = n_head * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut gguf = vec![0.0; hf.len()];
        for h in 0..n_head {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    let src = (h * hd + j * hd / 2 + i) * cols;
                    let dst = (h * hd + i * 2 + j) * cols;
                    gguf[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rows(&gguf, rows, cols, n_head), hf);
    }
}

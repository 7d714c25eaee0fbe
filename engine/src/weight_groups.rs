//! Scale-offset groups: the one storage in which a GPU backend keeps ggml's block-quantised
//! weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the k-quants, IQ4_NL, IQ4_XS), so that a GGUF model
//! takes 5 to 10 bits a weight on the device instead of 32 (f32) or 16 (f16).
//!
//! Every one of these kinds dequantises, group by group, as `y = a * (q - z) - b`: ggml's block
//! and sub-block scales fold into a group's `a` and `b`, computed exactly as the CPU's
//! dequantisation computes them (`loader::gguf::quant`, `kquant`), and `q` is the group's code
//! for the value. So one decoder reads them all. A row of `cols` values is `cols / size`
//! groups, each `[a][b, where the kind has a min][codes]` as little-endian u32 words: `a` and
//! `b` as f32 bits, codes of 4 or 8 bits, the first value in the lowest bits.
//!
//! Decoded as `a * f32(q - z) - b` without fusing (`b` left out where the kind has none), the
//! values are bit for bit those of the CPU ([`GroupLayout::decode`]:
//! `engine/tests/weight_groups.rs`; the WGSL decoder on lavapipe: the embedding rows of the
//! op-parity cases). WGSL cannot forbid a driver to fuse `a * t - b` into one FMA: for the kinds
//! with a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) a GPU may then differ by one rounding.
//!
//! Why not the blocks as the file stores them: WGSL reads storage as u32 words, which Q8_0's
//! 34-byte and Q6_K's 210-byte blocks straddle, and each kind would need its own decoder in
//! every weight-reading shader. The price, bits a weight here (in the file): Q4_0 5 (4.5),
//! Q4_1 and Q4_K 6 (5, 4.5), Q3_K 6 (3.4), Q2_K 8 (2.6), Q8_0 9 (8.5), Q5_0 9 (5.5), Q5_1 and
//! Q5_K 10 (6, 5.5), Q6_K 10 (6.6), IQ4_NL and IQ4_XS 9 (4.5, 4.25: their codes are the
//! table's 8-bit values).

use crate::loader::gguf::kquant::{half_at, q3_k_scales, scale_min_k4, KVALUES_IQ4NL};
use rayon::prelude::*;

use crate::tensor::PackedKind;

/// How a kind's groups are stored; see the module docs. Used as a shader variant's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupLayout {
    /// Bits per code: 4 or 8.
    pub bits: u32,
    /// Values per group: 16 or 32.
    pub size: u32,
    /// Whether each group stores `b` (the kinds with a min); otherwise `b` is 0.
    pub has_min: bool,
    /// The codes' zero point `z`.
    pub zero: i32,
}

impl GroupLayout {
    /// The layout a kind is regrouped into; `None` for F16 and BF16 (not block-quantised).
    pub fn of(kind: PackedKind) -> Option<GroupLayout> {
        use PackedKind::*;
        let layout = |bits, size, has_min, zero| {
            Some(GroupLayout {
                bits,
                size,
                has_min,
                zero,
            })
        };
        match kind {
            F16 | BF16 => None,
            // Signed 8-bit values and IQ4's table values (-127..113) as unsigned codes.
            Q8_0 | IQ4_NL | IQ4_XS => layout(8, 32, false, 128),
            Q4_0 => layout(4, 32, false, 8),
            Q4_1 | Q4_K => layout(4, 32, true, 0),
            Q5_0 => layout(8, 32, false, 16),
            Q5_1 | Q5_K => layout(8, 32, true, 0),
            Q2_K => layout(4, 16, true, 0),
            // q - 4 where the value's high bit is clear: the code is the 3-bit value + 4.
            Q3_K => layout(4, 16, false, 4),
            Q6_K => layout(8, 16, false, 32),
        }
    }

    /// u32 words of one group.
    pub fn group_words(self) -> usize {
        1 + self.has_min as usize + (self.size * self.bits / 32) as usize
    }

    /// u32 words of a row of `cols` values (`cols` a multiple of the kind's block, hence of
    /// the group).
    pub fn row_words(self, cols: usize) -> usize {
        cols / self.size as usize * self.group_words()
    }

    /// Value `i` of regrouped `words` (the shaders' decoder, in Rust, for tests).
    pub fn decode(self, words: &[u32], i: usize) -> f32 {
        let g = i / self.size as usize * self.group_words();
        let bit = (i % self.size as usize) as u32 * self.bits;
        let code = (words[g + 1 + self.has_min as usize + (bit / 32) as usize] >> (bit % 32))
            & ((1 << self.bits) - 1);
        let v = f32::from_bits(words[g]) * (code as i32 - self.zero) as f32;
        if self.has_min {
            v - f32::from_bits(words[g + 1])
        } else {
            v
        }
    }
}

/// Groups written one after another into `out`.
struct Writer<'a> {
    layout: GroupLayout,
    out: &'a mut [u32],
    at: usize,
}

impl Writer<'_> {
    /// One group: its `a`, `b` (ignored without a min) and `size` codes.
    fn push(&mut self, a: f32, b: f32, codes: impl IntoIterator<Item = u8>) {
        let mut put = |v: u32| {
            self.out[self.at] = v;
            self.at += 1;
        };
        put(a.to_bits());
        if self.layout.has_min {
            put(b.to_bits());
        }
        let per_word = 32 / self.layout.bits;
        let (mut word, mut n) = (0u32, 0);
        for c in codes {
            word |= (c as u32) << (n * self.layout.bits);
            n += 1;
            if n == per_word {
                put(word);
                (word, n) = (0, 0);
            }
        }
        debug_assert_eq!(n, 0, "a group's codes fill whole words");
    }
}

/// Element j < 16 of a 32-value group is the low nibble of byte j, j >= 16 the high one of
/// byte j - 16 (ggml's legacy types and IQ4_NL).
fn nibbles(qs: &[u8]) -> impl Iterator<Item = u8> + '_ {
    (qs.iter().map(|q| q & 0x0f)).chain(qs.iter().map(|q| q >> 4))
}

fn iq4(q: u8) -> u8 {
    (KVALUES_IQ4NL[q as usize] as i32 + 128) as u8
}

/// `bytes` (whole blocks of `kind`, in file order) as groups of [`GroupLayout::of`]`(kind)`;
/// `None` for F16 and BF16. Rows need no marks: a row is whole blocks, hence whole groups.
pub fn regroup(kind: PackedKind, bytes: &[u8]) -> Option<(GroupLayout, Vec<u32>)> {
    let layout = GroupLayout::of(kind)?;
    let (per_block, block_bytes) = kind.block();
    let block_words = per_block / layout.size as usize * layout.group_words();
    let mut words = vec![0u32; bytes.len() / block_bytes * block_words];
    // A 7B model is 10^8 blocks: in parallel, in chunks of whole blocks.
    const CHUNK: usize = 4096;
    words
        .par_chunks_mut(CHUNK * block_words)
        .zip(bytes.par_chunks(CHUNK * block_bytes))
        .for_each(|(out, bytes)| {
            let mut w = Writer { layout, out, at: 0 };
            for b in bytes.chunks_exact(block_bytes) {
                regroup_block(kind, b, &mut w);
            }
        });
    Some((layout, words))
}

/// One block of `kind` into its groups.
fn regroup_block(kind: PackedKind, b: &[u8], w: &mut Writer) {
    use PackedKind::*;
    match kind {
        F16 | BF16 => unreachable!("no layout"),
        Q8_0 => w.push(half_at(b, 0), 0.0, b[2..34].iter().map(|&q| q ^ 0x80)),
        Q4_0 => w.push(half_at(b, 0), 0.0, nibbles(&b[2..18])),
        Q4_1 => w.push(half_at(b, 0), -half_at(b, 2), nibbles(&b[4..20])),
        Q5_0 | Q5_1 => {
            let (d, m, at) = match kind {
                Q5_0 => (half_at(b, 0), 0.0, 2),
                _ => (half_at(b, 0), half_at(b, 2), 4),
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let codes = (nibbles(&b[at + 4..at + 20]).enumerate())
                .map(|(j, low)| low | (((qh >> j) & 1) << 4) as u8);
            w.push(d, -m, codes);
        }
        Q2_K => {
            let (scales, qs) = (&b[0..16], &b[16..80]);
            let (d, min) = (half_at(b, 80), half_at(b, 82));
            let mut is = 0;
            for q in qs.chunks_exact(32) {
                for shift in [0, 2, 4, 6] {
                    for half in [&q[0..16], &q[16..32]] {
                        let sc = scales[is];
                        is += 1;
                        let (a, m) = (d * (sc & 0x0f) as f32, min * (sc >> 4) as f32);
                        w.push(a, m, half.iter().map(|v| (v >> shift) & 3));
                    }
                }
            }
        }
        Q3_K => {
            let (hm, qs) = (&b[0..32], &b[32..96]);
            let (d, scales) = (half_at(b, 108), q3_k_scales(&b[96..108]));
            let (mut is, mut m) = (0, 1u8);
            for q in qs.chunks_exact(32) {
                for shift in [0, 2, 4, 6] {
                    for off in [0, 16] {
                        let a = d * (scales[is] as i32 - 32) as f32;
                        is += 1;
                        let codes = (off..off + 16)
                            .map(|l| ((q[l] >> shift) & 3) | if hm[l] & m != 0 { 4 } else { 0 });
                        w.push(a, 0.0, codes);
                    }
                    m <<= 1;
                }
            }
        }
        Q4_K | Q5_K => {
            let (d, min, scales) = (half_at(b, 0), half_at(b, 2), &b[4..16]);
            let (qh, qs) = match kind {
                Q4_K => (None, &b[16..144]),
                _ => (Some(&b[16..48]), &b[48..176]),
            };
            for (g, q) in qs.chunks_exact(32).enumerate() {
                for (j, shift) in [(2 * g, 0), (2 * g + 1, 4)] {
                    let (s, m) = scale_min_k4(j, scales);
                    let high = |l: usize| qh.map_or(0, |h| ((h[l] >> j) & 1) << 4);
                    let codes = (0..32).map(|l| ((q[l] >> shift) & 0x0f) | high(l));
                    w.push(d * s as f32, min * m as f32, codes);
                }
            }
        }
        Q6_K => {
            let d = half_at(b, 208);
            for n in 0..2 {
                let (ql, qh) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..160 + 32 * n]);
                for quarter in 0..4 {
                    let src = &ql[32 * (quarter % 2)..32 * (quarter % 2) + 32];
                    let (nib, hs) = (4 * (quarter / 2), 2 * quarter);
                    for half in 0..2 {
                        let s = b[192 + 8 * n + half + 2 * quarter] as i8 as f32;
                        let codes = (16 * half..16 * half + 16)
                            .map(|l| ((src[l] >> nib) & 0x0f) | (((qh[l] >> hs) & 3) << 4));
                        w.push(d * s, 0.0, codes);
                    }
                }
            }
        }
        IQ4_NL => w.push(half_at(b, 0), 0.0, nibbles(&b[2..18]).map(iq4)),
        IQ4_XS => {
            let d = half_at(b, 0);
            let scales_h = u16::from_le_bytes([b[2], b[3]]) as i32;
            for (ib, q) in b[8..136].chunks_exact(16).enumerate() {
                let ls = ((b[4 + ib / 2] as i32 >> (4 * (ib % 2))) & 0x0f)
                    | (((scales_h >> (2 * ib)) & 3) << 4);
                w.push(d * (ls - 32) as f32, 0.0, nibbles(q).map(iq4));
            }
        }
    }
}

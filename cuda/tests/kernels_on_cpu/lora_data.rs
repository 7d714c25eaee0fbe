//! Random LoRA stacks and segment plans as the backend lays them out (lora.cu's header), the
//! float64 reference of the shrink/expand pair, and the pair's leading kernel arguments
//! (`LORA_PAIR_PARAMS`).

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::common::{to_bf16, BLOCK};
use crate::emu::{arg, dev, Arg, Module};

/// `NO_ADAPTER` in lora.cu: a mixture entry naming no adapter.
pub const NO_ADAPTER: u32 = u32::MAX;

/// One case's shape: tokens in segments, each segment's mixture of `mix_k` entries over the
/// stack's adapters (`slots`, by rank).
#[derive(Debug, Clone)]
pub struct Shape {
    pub n_tokens: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    pub ranks: Vec<usize>,
    pub mix_k: usize,
    /// Each segment's first token (the first is 0).
    pub segment_starts: Vec<usize>,
}

/// A stack (A `[total_rank, in_dim]`, B^T `[total_rank, out_dim]`, slot tables) and a step's
/// plan (segment of each token, each segment's slots and weights), with the bf16 copies.
pub struct Lora {
    pub shape: Shape,
    pub max_rank: usize,
    pub a: Vec<f32>,
    pub bt: Vec<f32>,
    pub a16: Vec<u16>,
    pub bt16: Vec<u16>,
    pub slot_offset: Vec<u32>,
    pub slot_rank: Vec<u32>,
    pub slot_scale: Vec<f32>,
    pub seg_of_token: Vec<u32>,
    pub mix_slots: Vec<u32>,
    pub mix_weights: Vec<f32>,
}

impl Lora {
    /// Random values for `shape` from `seed`; with `bf16`, A and B^T are bf16-representable
    /// (so the f32 and bf16 stacks hold the same values). Each segment's mixture names
    /// distinct slots, the last entry of every third segment none.
    pub fn random(shape: &Shape, seed: u64, bf16: bool) -> Lora {
        let mut rng = StdRng::seed_from_u64(seed);
        let total: usize = shape.ranks.iter().sum();
        let val = |rng: &mut StdRng| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if bf16 {
                to_bf16(v).0
            } else {
                v
            }
        };
        let a: Vec<f32> = (0..total * shape.in_dim).map(|_| val(&mut rng)).collect();
        let bt: Vec<f32> = (0..total * shape.out_dim).map(|_| val(&mut rng)).collect();
        let mut off = 0u32;
        let slot_offset = shape
            .ranks
            .iter()
            .map(|r| {
                let o = off;
                off += *r as u32;
                o
            })
            .collect();
        let n_slots = shape.ranks.len();
        let slot_scale = (0..n_slots).map(|s| 0.5 + s as f32 * 0.25).collect();
        let n_seg = shape.segment_starts.len();
        let mut seg_of_token = vec![0u32; shape.n_tokens];
        for (s, w) in shape.segment_starts.iter().enumerate() {
            let end = shape
                .segment_starts
                .get(s + 1)
                .copied()
                .unwrap_or(shape.n_tokens);
            seg_of_token[*w..end].fill(s as u32);
        }
        let mut mix_slots = Vec::new();
        let mut mix_weights = Vec::new();
        for s in 0..n_seg {
            let first = rng.random_range(0..n_slots);
            for k in 0..shape.mix_k {
                let none = k + 1 == shape.mix_k && k > 0 && s % 3 == 2;
                mix_slots.push(if none {
                    NO_ADAPTER
                } else {
                    ((first + k) % n_slots) as u32
                });
                mix_weights.push(rng.random_range(0.1..1.0));
            }
        }
        Lora {
            shape: shape.clone(),
            max_rank: *shape.ranks.iter().max().unwrap(),
            a16: a.iter().map(|v| to_bf16(*v).1).collect(),
            bt16: bt.iter().map(|v| to_bf16(*v).1).collect(),
            a,
            bt,
            slot_offset,
            slot_rank: shape.ranks.iter().map(|r| *r as u32).collect(),
            slot_scale,
            seg_of_token,
            mix_slots,
            mix_weights,
        }
    }

    /// Entry `e` of token t's mixture: (row offset, rank, weight * scale), or None where it
    /// names no adapter (lora.cu `lora_entry`).
    fn entry(&self, t: usize, e: usize) -> Option<(usize, usize, f64)> {
        let at = self.seg_of_token[t] as usize * self.shape.mix_k + e;
        let slot = self.mix_slots[at];
        (slot != NO_ADAPTER).then(|| {
            let slot = slot as usize;
            let ws = self.mix_weights[at] as f64 * self.slot_scale[slot] as f64;
            (self.slot_offset[slot] as usize, self.shape.ranks[slot], ws)
        })
    }

    /// u `[n_tokens, mix_k, max_rank]` in float64 (NaN where no entry writes).
    pub fn shrink_ref(&self, x: &[f32]) -> Vec<f64> {
        let (k, mr, d) = (self.shape.mix_k, self.max_rank, self.shape.in_dim);
        let mut u = vec![f64::NAN; self.shape.n_tokens * k * mr];
        for t in 0..self.shape.n_tokens {
            for e in 0..k {
                let Some((off, rank, ws)) = self.entry(t, e) else {
                    continue;
                };
                for j in 0..rank {
                    let row = &self.a[(off + j) * d..][..d];
                    let dot: f64 = row
                        .iter()
                        .zip(&x[t * d..(t + 1) * d])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    u[(t * k + e) * mr + j] = ws * dot;
                }
            }
        }
        u
    }

    /// y + the expand of `u` (float64), `[n_tokens, out_dim]`.
    pub fn expand_ref(&self, u: &[f32], y: &[f32]) -> Vec<f64> {
        let (k, mr, n) = (self.shape.mix_k, self.max_rank, self.shape.out_dim);
        let mut out: Vec<f64> = y.iter().map(|v| *v as f64).collect();
        for t in 0..self.shape.n_tokens {
            for e in 0..k {
                let Some((off, rank, _)) = self.entry(t, e) else {
                    continue;
                };
                for j in 0..rank {
                    let uj = u[(t * k + e) * mr + j] as f64;
                    let row = &self.bt[(off + j) * n..][..n];
                    for (o, b) in row.iter().enumerate() {
                        out[t * n + o] += uj * *b as f64;
                    }
                }
            }
        }
        out
    }
}

/// The arguments of `LORA_PAIR_PARAMS(input, stack, T, dim)` for the shrink (`expand`
/// false: A and in_dim) or the expand (B^T and out_dim), f32 or bf16 stack. The host
/// pointers are taken from `l` (which must outlive the launch) and `input`.
pub struct PairArgs {
    vals: [u64; 8],
    ints: [i32; 4],
}

impl PairArgs {
    pub fn new(l: &mut Lora, input: &mut [f32], expand: bool, bf16: bool) -> PairArgs {
        let stack = match (expand, bf16) {
            (false, false) => dev(&mut l.a),
            (false, true) => dev(&mut l.a16),
            (true, false) => dev(&mut l.bt),
            (true, true) => dev(&mut l.bt16),
        };
        let dim = if expand {
            l.shape.out_dim
        } else {
            l.shape.in_dim
        };
        PairArgs {
            vals: [
                dev(input),
                stack,
                dev(&mut l.seg_of_token),
                dev(&mut l.mix_slots),
                dev(&mut l.mix_weights),
                dev(&mut l.slot_offset),
                dev(&mut l.slot_rank),
                dev(&mut l.slot_scale),
            ],
            ints: [
                l.shape.mix_k as i32,
                l.shape.ranks.len() as i32,
                dim as i32,
                l.max_rank as i32,
            ],
        }
    }

    /// The 12 leading arguments, in `LORA_PAIR_PARAMS` order.
    pub fn args(&self) -> Vec<Arg> {
        let v = &self.vals;
        let i = &self.ints;
        vec![
            arg(&v[0]),
            arg(&v[1]),
            arg(&v[2]),
            arg(&v[3]),
            arg(&v[4]),
            arg(&i[0]),
            arg(&v[5]),
            arg(&v[6]),
            arg(&v[7]),
            arg(&i[1]),
            arg(&i[2]),
            arg(&i[3]),
        ]
    }
}

/// The segment shrink (`lora_shrink`, `_bf16` on a bf16 stack) as lora.rs launches it:
/// grid (T, K); u `[T, K, max_rank]`, NaN where no entry writes.
pub fn segment_shrink(
    m: &Module,
    l: &mut Lora,
    x: &mut [f32],
    bf16: bool,
) -> Result<Vec<f32>, String> {
    let (t, k) = (l.shape.n_tokens, l.shape.mix_k);
    let mut u = vec![f32::NAN; t * k * l.max_rank];
    let pu = dev(&mut u);
    let p = PairArgs::new(l, x, false, bf16);
    let mut a = p.args();
    a.push(arg(&pu));
    let name = if bf16 {
        "lora_shrink_bf16"
    } else {
        "lora_shrink"
    };
    m.launch(name, (t as u32, k as u32, 1), BLOCK, 0, &a)?;
    Ok(u)
}

/// The segment expand (`lora_expand`, `_bf16`) adding into y, as lora.rs launches it: grid
/// (ceil(out_dim / 256), T), `K * (max_rank + 2)` words of shared memory.
pub fn segment_expand(
    m: &Module,
    l: &mut Lora,
    u: &mut [f32],
    y: &mut [f32],
    bf16: bool,
) -> Result<(), String> {
    let (t, k, n) = (l.shape.n_tokens, l.shape.mix_k, l.shape.out_dim);
    let shared = (k * (l.max_rank + 2) * 4) as u32;
    let py = dev(y);
    let p = PairArgs::new(l, u, true, bf16);
    let mut a = p.args();
    a.push(arg(&py));
    let name = if bf16 {
        "lora_expand_bf16"
    } else {
        "lora_expand"
    };
    let grid = (n.div_ceil(BLOCK as usize) as u32, t as u32, 1);
    m.launch(name, grid, BLOCK, shared, &a)
}

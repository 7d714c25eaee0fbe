//! The seeded inputs the parity cases draw: the generator, step plans, rope tables, the logit
//! rows of `argmax` and `sample`, and the LoRA stacks and mixtures.

use dlp_engine::tensor::{Packed, PackedKind};
use dlp_engine::{HostTensor, LoraStackHost, StepPlan, NO_ADAPTER};

use super::Mixture;

/// splitmix64: a seeded generator with no dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1], never zero.
    pub(super) fn f(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        let x = 2.0 * u - 1.0;
        if x == 0.0 {
            0.5
        } else {
            x
        }
    }
    pub(super) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    pub(super) fn below(&mut self, n: usize) -> u32 {
        (self.next() % n.max(1) as u64) as u32
    }
}

/// A `[rows, cols]` tensor of random `kind` blocks (`cols` a multiple of its block), each
/// block's f16 scales (and mins) set to random values in [0.004, 0.02] so that the values are
/// finite and of order 1 (random bytes there would give infinities and NaNs); F16 and BF16:
/// random values in [-1, 1] rounded to the type.
pub(super) fn random_blocks(kind: PackedKind, rows: usize, cols: usize, g: &mut Rng) -> HostTensor {
    use PackedKind::*;
    if matches!(kind, F16 | BF16) {
        let bytes = (0..rows * cols)
            .flat_map(|_| match kind {
                F16 => half::f16::from_f32(g.f()).to_le_bytes(),
                _ => half::bf16::from_f32(g.f()).to_le_bytes(),
            })
            .collect();
        return HostTensor::packed(rows, cols, Packed { kind, bytes });
    }
    let scales: &[usize] = match kind {
        Q8_0 | Q4_0 | Q5_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        F16 | BF16 => unreachable!("returned above"),
    };
    let (per, block) = kind.block();
    assert!(cols.is_multiple_of(per), "{cols} columns of {kind:?}");
    let mut bytes: Vec<u8> = (0..rows * cols / per * block)
        .map(|_| g.next() as u8)
        .collect();
    for b in bytes.chunks_exact_mut(block) {
        for &at in scales {
            let d = half::f16::from_f32(0.012 + 0.008 * g.f());
            b[at..at + 2].copy_from_slice(&d.to_le_bytes());
        }
    }
    HostTensor::packed(rows, cols, Packed { kind, bytes })
}

/// An empty step plan of `tokens` tokens: slot 0, position 0, segment 0, no adapter.
pub(super) fn plan(tokens: usize) -> StepPlan {
    StepPlan {
        token_ids: vec![0; tokens],
        positions: vec![0; tokens],
        kv_slots: vec![0; tokens],
        segment_of_token: vec![0; tokens],
        mix_k: 1,
        mix_slots: vec![NO_ADAPTER],
        mix_weights: vec![0.0],
        logit_rows: Vec::new(),
        pick_args: Vec::new(),
    }
}

/// A random rope table for `positions`: (cos, sin) pairs of random angles, at least
/// `head_dim` values per position up to the largest (what the backends check).
pub(super) fn rope_table(positions: &[u32], head_dim: usize, g: &mut Rng) -> Vec<f32> {
    let max_pos = *positions.iter().max().unwrap_or(&0) as usize;
    (0..((max_pos + 1) * head_dim).div_ceil(2))
        .flat_map(|_| {
            let a = g.f() * 3.0;
            [a.cos(), a.sin()]
        })
        .collect()
}

/// `rows` rows of `vocab` logits in [-1, 1], row `r` with edge `r % 10` of the greedy rule.
pub(super) fn argmax_rows(rows: usize, vocab: usize, g: &mut Rng) -> Vec<f32> {
    let ninf = f32::NEG_INFINITY;
    let mut out = Vec::with_capacity(rows * vocab);
    for r in 0..rows {
        let mut row = g.vec(vocab);
        let mut at = |g: &mut Rng, v: f32| row[g.below(vocab) as usize] = v;
        match r % 10 {
            1 => (0..3).for_each(|_| at(g, 2.0)), // ties above the rest: the first wins
            2 => {
                at(g, f32::INFINITY); // counts as f32::MAX: the first of the two wins
                at(g, f32::MAX);
            }
            3 => at(g, f32::NAN), // refused: -1
            4 => row.fill(ninf),  // refused: -1
            5 => {
                row.fill(ninf);
                let mut at = |g: &mut Rng, v: f32| row[g.below(vocab) as usize] = v;
                at(g, 0.0);
                at(g, -0.0); // equal to +0.0: the first wins
            }
            6 => row.iter_mut().for_each(|x| *x = (*x * 2.0).round()), // five values
            7 => {
                row.fill(ninf);
                row[vocab - 1] = -3.0e38;
            }
            8 => row.iter_mut().for_each(|x| *x *= 1e-39), // subnormals, compared exactly
            9 => at(g, -f32::NAN), // a NaN with its sign bit set: refused too
            _ => {}
        }
        out.extend(row);
    }
    out
}

/// `rows` rows of `vocab` logits and their `pick_args` for `sample`, row `r` with edge
/// `r % 8` of the draw: noise in [-2.5, 2.5] with five tokens near 8 above it, as a model's
/// peaked rows look.
pub(super) fn sample_rows(rows: usize, vocab: usize, g: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    use dlp_engine::cpu::sample::push_args;
    let (mut logits, mut args) = (Vec::with_capacity(rows * vocab), Vec::new());
    for r in 0..rows {
        let mut row: Vec<f32> = g.vec(vocab).iter().map(|x| 2.5 * x).collect();
        for _ in 0..5 {
            row[g.below(vocab) as usize] = 8.0 + g.f();
        }
        // A draw in [0, 1) with 53 bits, as the host sampler's.
        let mut draw = (g.next() >> 11) as f64 / (1u64 << 53) as f64;
        let mut temperature = 0.5 + g.f().abs();
        match r % 8 {
            1 => draw = 0.0,
            2 => draw = 1.0 - f64::EPSILON / 2.0, // the walk's last token, or its fallback
            3 => temperature = 0.0,               // greedy: argmax's rule
            4 => temperature = 1e-3, // nearly greedy: only tokens within ~0.09 of the best
            5 => temperature = 100.0, // nearly flat
            6 => row[g.below(vocab) as usize] = f32::NAN, // refused: -1
            7 => {
                row.fill(f32::NEG_INFINITY);
                // +inf counts as f32::MAX: the only token drawn, unless the second write
                // lands on it (a row of one finite token).
                row[g.below(vocab) as usize] = f32::INFINITY;
                row[g.below(vocab) as usize] = -3.0e38;
            }
            _ => {}
        }
        logits.extend(row);
        push_args(temperature, draw, &mut args);
    }
    (logits, args)
}

/// A random stack for mixture `m` with `out_dim` outputs: slot ranks as `m` says, stacked
/// without padding; A and B drawn as bf16 values with `bf16` (for `--cuda-lora-bf16`).
pub(super) fn lora_host(m: &Mixture, out_dim: usize, bf16: bool, g: &mut Rng) -> LoraStackHost {
    let total: usize = m.ranks.iter().map(|&r| r as usize).sum();
    let mut draw = |n: usize| {
        let mut v = g.vec(n);
        if bf16 {
            v.iter_mut()
                .for_each(|x| *x = half::bf16::from_f32(*x).to_f32());
        }
        v
    };
    let (a, bt) = (draw(total * m.in_dim), draw(total * out_dim));
    let mut offset = Vec::new();
    let mut at = 0u32;
    for &r in &m.ranks {
        offset.push(at);
        at += r;
    }
    LoraStackHost {
        in_dim: m.in_dim,
        out_dim,
        max_rank: *m.ranks.iter().max().unwrap_or(&0) as usize,
        a,
        bt,
        slot_offset: offset,
        slot_rank: m.ranks.clone(),
        slot_scale: m.ranks.iter().map(|_| 0.5 + g.f().abs()).collect(),
    }
}

/// The step plan of mixture `m`, with random weights for its used entries.
pub(super) fn lora_plan(m: &Mixture, g: &mut Rng) -> StepPlan {
    let mut p = plan(m.segment_of_token.len());
    p.segment_of_token = m.segment_of_token.clone();
    p.mix_k = m.k;
    p.mix_slots = m.slots.clone();
    p.mix_weights = m
        .slots
        .iter()
        .map(|&s| if s == NO_ADAPTER { 0.0 } else { g.f() })
        .collect();
    p
}

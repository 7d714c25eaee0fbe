//! A group of modules reading one x (q/k/v, gate/up, or one alone) as the decode matvec
//! takes it: bf16 weights, biases, each module's LoRA stack (or none) over one step plan, and
//! the fused LoRA's scratch as fused_linears.rs lays it out.

use dlp_cuda::matvec::{shrink_chunks, LoraJobs, MatvecJobs};

use crate::common::{random_vec, to_bf16};
use crate::emu::dev;
use crate::lora_data::{Lora, Shape};

/// A group: `rows` tokens of width `k` into jobs of `ns[j]` features, each job with a stack
/// of the same slots (its own ranks; 0: the adapter leaves that module alone) and one plan,
/// or no stack at all (no ranks given: a module no adapter targets, `j.lora` None).
pub struct Group {
    pub rows: usize,
    pub k: usize,
    pub x: Vec<f32>,
    /// bf16 weights `[n_j, k]` (bit patterns) and their f32 values.
    pub w16: Vec<Vec<u16>>,
    pub w: Vec<Vec<f32>>,
    pub bias: Vec<Vec<f32>>,
    pub loras: Vec<Lora>,
    /// Whether job j has a LoRA stack.
    pub stacked: Vec<bool>,
    pub lora_bf16: bool,
}

impl Group {
    pub fn new(
        rows: usize,
        k: usize,
        ns: &[usize],
        ranks: &[Vec<usize>],
        bf16: bool,
        seed: u64,
    ) -> Group {
        Group::with_mix_k(rows, k, ns, ranks, bf16, seed, 2)
    }

    /// [`Group::new`] with mixtures of `mix_k` entries (2 there).
    #[allow(clippy::too_many_arguments)]
    pub fn with_mix_k(
        rows: usize,
        k: usize,
        ns: &[usize],
        ranks: &[Vec<usize>],
        bf16: bool,
        seed: u64,
        mix_k: usize,
    ) -> Group {
        let mut loras: Vec<Lora> = ns
            .iter()
            .zip(ranks)
            .enumerate()
            .map(|(j, (n, r))| {
                let shape = Shape {
                    n_tokens: rows,
                    in_dim: k,
                    out_dim: *n,
                    ranks: if r.is_empty() { vec![0] } else { r.clone() },
                    mix_k,
                    segment_starts: (0..rows).collect(), // decode: a segment per token
                };
                Lora::random(&shape, seed + j as u64, bf16)
            })
            .collect();
        for j in 1..loras.len() {
            loras[j].seg_of_token = loras[0].seg_of_token.clone();
            loras[j].mix_slots = loras[0].mix_slots.clone();
            loras[j].mix_weights = loras[0].mix_weights.clone();
        }
        // bf16 weights (bit patterns for the kernels) and their values (for float64).
        let (w, w16): (Vec<Vec<f32>>, Vec<Vec<u16>>) = ns
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let v = random_vec(n * k, seed + 100 + j as u64);
                v.iter().map(|x| to_bf16(*x)).unzip()
            })
            .unzip();
        Group {
            rows,
            k,
            x: random_vec(rows * k, seed + 200),
            w16,
            w,
            bias: ns
                .iter()
                .enumerate()
                .map(|(j, n)| random_vec(*n, seed + 300 + j as u64))
                .collect(),
            loras,
            stacked: ranks.iter().map(|r| !r.is_empty()).collect(),
            lora_bf16: bf16,
        }
    }

    pub fn ns(&self) -> Vec<usize> {
        self.loras.iter().map(|l| l.shape.out_dim).collect()
    }

    /// The base product of job j in float64, `[rows, n_j]`.
    pub fn matvec_ref(&self, j: usize) -> Vec<f64> {
        let (k, n) = (self.k, self.ns()[j]);
        let mut out = vec![0f64; self.rows * n];
        for r in 0..self.rows {
            for f in 0..n {
                let d: f64 = (0..k)
                    .map(|i| self.w[j][f * k + i] as f64 * self.x[r * k + i] as f64)
                    .sum();
                out[r * n + f] = d + self.bias[j][f] as f64;
            }
        }
        out
    }

    /// The matvec's `MatvecJobs` into `outs` (0: not written).
    pub fn jobs(&mut self, outs: &[u64]) -> MatvecJobs {
        let mut m = MatvecJobs::default();
        for (j, out) in outs.iter().enumerate() {
            m.w[j] = dev(&mut self.w16[j]);
            m.bias[j] = dev(&mut self.bias[j]);
            m.out[j] = *out;
            m.n[j] = self.w[j].len() as i32 / self.k as i32;
        }
        m
    }

    /// `LoraJobs` over `scratch` (see [`Scratch`]), `inline`: the shrink's blocks in the
    /// matvec's grid.
    pub fn lora_jobs(&mut self, s: &mut Scratch, inline: bool) -> LoraJobs {
        let base = dev(&mut s.buf);
        self.lora_jobs_at(s, base, inline)
    }

    /// [`Group::lora_jobs`] over a scratch at `base` laid out as `s` (the counters there, u
    /// after them): the backend's groups share one.
    pub fn lora_jobs_at(&mut self, s: &Scratch, base: u64, inline: bool) -> LoraJobs {
        let mut lj = LoraJobs::default();
        let n_jobs = self.loras.len();
        let bf16 = self.lora_bf16;
        for (j, l) in self.loras.iter_mut().enumerate() {
            if !self.stacked[j] {
                continue; // all zero, as fused_linears.rs leaves a job without a stack
            }
            lj.a[j] = if bf16 { dev(&mut l.a16) } else { dev(&mut l.a) };
            lj.bt[j] = if bf16 {
                dev(&mut l.bt16)
            } else {
                dev(&mut l.bt)
            };
            lj.slot_offset[j] = dev(&mut l.slot_offset);
            lj.slot_rank[j] = dev(&mut l.slot_rank);
            lj.slot_scale[j] = dev(&mut l.slot_scale);
            lj.u[j] = base + 64 + (j * s.region * 4) as u64;
            lj.n_slots[j] = l.shape.ranks.len() as i32;
            lj.max_rank[j] = l.max_rank as i32;
        }
        let l0 = &mut self.loras[0];
        lj.seg_of_token = dev(&mut l0.seg_of_token);
        lj.mix_slots = dev(&mut l0.mix_slots);
        lj.mix_weights = dev(&mut l0.mix_weights);
        lj.mix_k = l0.shape.mix_k as i32;
        lj.n_jobs = n_jobs as i32;
        lj.ab_bf16 = bf16 as i32;
        lj.n_chunks = s.n_chunks as i32;
        lj.chunk_stride = s.per as i32;
        lj.inline_blocks = if inline {
            (self.rows * l0.shape.mix_k * s.n_chunks * n_jobs) as i32
        } else {
            0
        };
        lj.sync = base;
        lj
    }

    /// The scratch's layout for this group (fused_linears.rs: `per` by the stacks' largest
    /// rank), with its own buffer ([`laid_out`]).
    pub fn scratch(&self) -> Scratch {
        let k_mix = self.loras[0].shape.mix_k;
        let stacks = self.loras.iter().zip(&self.stacked).filter(|(_, s)| **s);
        let mr = stacks.map(|(l, _)| l.max_rank).max().unwrap_or(0);
        let per = self.rows * k_mix * mr;
        let n_chunks = shrink_chunks(self.k);
        let region = per * n_chunks + 2 * self.rows * k_mix;
        let mut s = Scratch {
            buf: Vec::new(),
            region,
            per,
            n_chunks,
            max_rank: mr,
            jobs: self.loras.len(),
        };
        s.buf = laid_out(&[&s]);
        s
    }
}

/// A scratch buffer for `layouts` (the groups of a layer share one, each with its own layout
/// over it) as the backend leaves it between launches with its tests' poison (fused_linears.rs
/// `poison_fused_u`): the counters zero, the rest NaN, every layout's table entries (offset 0,
/// rank 1), so that an expand reading an entry its shrink did not write takes one NaN term and
/// the comparison fails, rather than a wild offset.
pub fn laid_out(layouts: &[&Scratch]) -> Vec<f32> {
    let words = layouts.iter().map(|s| s.words()).max().unwrap_or(16);
    let mut buf = vec![f32::NAN; words];
    buf[..16].fill(0.0);
    for s in layouts {
        s.poison_tables(&mut buf);
    }
    buf
}

/// The fused LoRA's scratch: 16 u32 counters (4 sets), then per job the partial sums
/// `[n_chunks][T, K, max_rank]` and the entry table of (offset, rank) per (token, entry).
pub struct Scratch {
    pub buf: Vec<f32>,
    pub region: usize,
    pub per: usize,
    pub n_chunks: usize,
    pub max_rank: usize,
    pub jobs: usize,
}

impl Scratch {
    /// Words this layout takes.
    pub fn words(&self) -> usize {
        16 + self.jobs * self.region
    }

    /// This layout's table entries in `buf`, (offset 0, rank 1) each.
    fn poison_tables(&self, buf: &mut [f32]) {
        for z in 0..self.jobs {
            let at = 16 + z * self.region;
            let table = &mut buf[at + self.per * self.n_chunks..at + self.region];
            for e in table.chunks_mut(2) {
                e[0] = f32::from_bits(0);
                e[1] = f32::from_bits(1);
            }
        }
    }

    /// Whether the counters are back to zero (every launch must leave them so).
    pub fn counters_zero(&self) -> bool {
        self.buf[..16].iter().all(|v| v.to_bits() == 0)
    }
}

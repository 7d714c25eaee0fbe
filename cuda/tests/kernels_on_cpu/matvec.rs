//! The decode matvec's LoRA paths on a group of modules reading one x (q/k/v-like, up to 3
//! jobs): the base matvec and the segment LoRA pair (passed on an H200) against float64, then
//! `fused-lora` (`lora_shrink_jobs` + `matvec_bf16_lora_r*`, whose entry table came after the
//! GPU run), `inline-shrink` (`matvec_bf16_lora_inline_r*`, bit for bit the fused one) and
//! `batch-lora` (`lora_shrink_jobs` + `lora_expand_jobs`) against them, with the backend's
//! grids (`dlp_cuda::matvec`) and its scratch layout (16 counters, then per job the chunk
//! partial sums and the entry table).

use dlp_cuda::matvec::{matvec_bucket, matvec_launch, shrink_chunks, LoraJobs, MatvecJobs};
use dlp_cuda::tune::Tune;

use crate::emu::{arg, dev, module, Arg, Module, Order, Runs, ORDERS};
use crate::lora_data::{random_vec, segment_expand, segment_shrink, worst, Lora, Shape, BLOCK};

/// SMs of the pretend device: `matvec_blocks_per_sm` caps a grid at that many blocks per SM,
/// so few SMs make the persistent matvec's warps take several features each.
const SMS: usize = 2;

/// The kernel's `LoraOuts` (lora.cu; the backend's copy is crate-private).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct LoraOuts {
    out: [u64; 3],
    n: [i32; 3],
    pad: i32,
}

/// A group: `rows` tokens of width `k` into jobs of `ns[j]` features, each job with a stack
/// of the same slots (its own ranks; 0: the adapter leaves that module alone) and one plan.
pub struct Group {
    pub rows: usize,
    pub k: usize,
    pub x: Vec<f32>,
    /// bf16 weights `[n_j, k]` (bit patterns) and their f32 values.
    pub w16: Vec<Vec<u16>>,
    pub w: Vec<Vec<f32>>,
    pub bias: Vec<Vec<f32>>,
    pub loras: Vec<Lora>,
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
        let mut loras: Vec<Lora> = ns
            .iter()
            .zip(ranks)
            .enumerate()
            .map(|(j, (n, r))| {
                let shape = Shape {
                    n_tokens: rows,
                    in_dim: k,
                    out_dim: *n,
                    ranks: r.clone(),
                    mix_k: 2,
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
        let w: Vec<Vec<f32>> = ns
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let v = random_vec(n * k, seed + 100 + j as u64);
                v.iter()
                    .map(|x| half::bf16::from_f32(*x).to_f32())
                    .collect()
            })
            .collect();
        Group {
            rows,
            k,
            x: random_vec(rows * k, seed + 200),
            w16: w
                .iter()
                .map(|v| {
                    v.iter()
                        .map(|x| half::bf16::from_f32(*x).to_bits())
                        .collect()
                })
                .collect(),
            w,
            bias: ns
                .iter()
                .enumerate()
                .map(|(j, n)| random_vec(*n, seed + 300 + j as u64))
                .collect(),
            loras,
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
        let mut lj = LoraJobs::default();
        let n_jobs = self.loras.len();
        let bf16 = self.lora_bf16;
        for (j, l) in self.loras.iter_mut().enumerate() {
            lj.a[j] = if bf16 { dev(&mut l.a16) } else { dev(&mut l.a) };
            lj.bt[j] = if bf16 {
                dev(&mut l.bt16)
            } else {
                dev(&mut l.bt)
            };
            lj.slot_offset[j] = dev(&mut l.slot_offset);
            lj.slot_rank[j] = dev(&mut l.slot_rank);
            lj.slot_scale[j] = dev(&mut l.slot_scale);
            lj.u[j] = dev(&mut s.buf) + 64 + (j * s.region * 4) as u64;
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
        lj.sync = dev(&mut s.buf);
        lj
    }

    pub fn scratch(&self) -> Scratch {
        let k_mix = self.loras[0].shape.mix_k;
        let mr = self.loras.iter().map(|l| l.max_rank).max().unwrap();
        let per = self.rows * k_mix * mr;
        let n_chunks = shrink_chunks(self.k);
        let region = per * n_chunks + 2 * self.rows * k_mix;
        let mut buf = vec![f32::NAN; 16 + self.loras.len() * region];
        buf[..16].fill(0.0); // the counters, zero between launches
        Scratch {
            buf,
            region,
            per,
            n_chunks,
            max_rank: mr,
        }
    }
}

/// The fused LoRA's scratch: 16 u32 counters, then per job the partial sums `[n_chunks][T,
/// K, max_rank]` and the entry table (poisoned: NaN).
pub struct Scratch {
    pub buf: Vec<f32>,
    pub region: usize,
    pub per: usize,
    pub n_chunks: usize,
    pub max_rank: usize,
}

impl Scratch {
    /// Whether the counters are back to zero (every launch must leave them so).
    pub fn counters_zero(&self) -> bool {
        self.buf[..16].iter().all(|v| v.to_bits() == 0)
    }
}

/// The decode matvec's modules under `tune`: `matmul` (with the folds' entries, as the
/// backend builds it where a fold is on) and `lora`, which the backend takes
/// `lora_shrink_jobs` from, with the knobs' defines (`Tune::defines_for`).
pub struct Mods {
    pub m: Module,
    pub lora: Module,
    pub tune: Tune,
}

/// The matvec's knobs the cases run under (`DLP_CUDA_TUNE` spelling): the defaults, the GPU
/// run's sweep (more or fewer loads per round, other block sizes, an occupancy hint), and the
/// persistent matvec (a grid of `blocks_per_sm` blocks per SM, each warp taking several
/// features), which no GPU has run.
pub fn tunes() -> Vec<(&'static str, Tune)> {
    [
        "",
        "matvec_unroll=8",
        "matvec_unroll=1,matvec_warps=4,matvec_min_blocks=4",
        "matvec_warps=2,matvec_blocks_per_sm=1",
        "matvec_unroll=16,matvec_blocks_per_sm=3",
    ]
    .into_iter()
    .map(|k| (k, Tune::parse(k).expect("valid knobs")))
    .collect()
}

impl Mods {
    pub fn new(order: Order, tune: &Tune) -> Result<Mods, String> {
        let mut defines = tune.defines_for("matmul");
        defines.push(dlp_cuda::nvrtc::MATVEC_FOLDS_DEFINE.into());
        let d: Vec<&str> = defines.iter().map(String::as_str).collect();
        let l = tune.defines_for("lora");
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        Ok(Mods {
            m: module("matmul", &d, order)?,
            lora: module("lora", &l, order)?,
            tune: *tune,
        })
    }
}

/// `lora_shrink_jobs` (grid (T, K * n_chunks, jobs), as `shrink_jobs` in fused_linears.rs).
fn shrink_jobs(
    lora: &Module,
    lj: &LoraJobs,
    s: &Scratch,
    rows: usize,
    px: &u64,
    k: &i32,
) -> Result<(), String> {
    let grid = (
        rows as u32,
        (lj.mix_k as usize * s.n_chunks) as u32,
        lj.n_jobs as u32,
    );
    lora.launch(
        "lora_shrink_jobs",
        grid,
        BLOCK,
        0,
        &[arg(px), arg(k), arg(lj)],
    )
}

/// `name` with the row bucket's suffix (`_r1` ... `_r8`).
pub fn bucket(name: &str, rows: usize) -> String {
    format!(
        "{name}_r{}",
        [1, 2, 4, 8][matvec_bucket(rows).expect("1 to 8 rows")]
    )
}

/// The decode matvec of `g` into fresh outputs, `[rows, n_j]` per job: plain (`base`), with
/// the fused LoRA (`fused`: after `lora_shrink_jobs` from `lora`), or with the shrink inline.
pub fn run_matvec(
    mods: &Mods,
    g: &mut Group,
    kind: &str,
    round_x: i32,
) -> Result<Vec<Vec<f32>>, String> {
    let mut outs: Vec<Vec<f32>> = g.ns().iter().map(|n| vec![f32::NAN; g.rows * n]).collect();
    let ptrs: Vec<u64> = outs.iter_mut().map(|o| dev(o)).collect();
    let jobs = g.jobs(&ptrs);
    let total = g.ns().iter().sum();
    launch_matvec(mods, g, kind, round_x, "", jobs, total, &[])?;
    Ok(outs)
}

/// One decode matvec launch of kind `base`, `fused` or `inline` (entry `matvec_bf16`,
/// `matvec_bf16_lora` or `matvec_bf16_lora_inline`, then `fold`, then the row bucket) over
/// `features` warps' features, with `tail` after the matvec's own arguments; checks that the
/// LoRA counters are zero again after it.
#[allow(clippy::too_many_arguments)]
pub fn launch_matvec(
    mods: &Mods,
    g: &mut Group,
    kind: &str,
    round_x: i32,
    fold: &str,
    jobs: MatvecJobs,
    features: usize,
    tail: &[Arg],
) -> Result<(), String> {
    let shared = if round_x == 2 {
        (g.rows * g.k * 2) as u32
    } else {
        0
    };
    let (m, lora) = (&mods.m, &mods.lora);
    let c = matvec_launch(features, mods.tune.matvec_warps as usize, shared);
    let (rows, k) = (g.rows as i32, g.k as i32);
    let mut xx = g.x.clone();
    let px = dev(&mut xx);
    let mut a = vec![arg(&px), arg(&rows), arg(&k), arg(&round_x), arg(&jobs)];
    let mut s = g.scratch();
    let lj = g.lora_jobs(&mut s, kind == "inline");
    let mut grid = c.grid_dim;
    grid.0 = mods.tune.matvec_grid(grid.0 as usize, SMS) as u32;
    let name = match kind {
        "base" => "matvec_bf16",
        "fused" => {
            shrink_jobs(lora, &lj, &s, g.rows, &px, &k)?;
            "matvec_bf16_lora"
        }
        "inline" => {
            grid.0 += lj.inline_blocks as u32;
            "matvec_bf16_lora_inline"
        }
        _ => return Err(format!("no matvec kind {kind}")),
    };
    if kind != "base" {
        a.push(arg(&lj));
    }
    a.extend_from_slice(tail);
    m.launch(
        &bucket(&format!("{name}{fold}"), g.rows),
        grid,
        c.block_dim.0,
        shared,
        &a,
    )?;
    if !s.counters_zero() {
        return Err(format!(
            "{kind}: the counters are not zero after the launch: {:?}",
            &s.buf[..4]
        ));
    }
    Ok(())
}

/// `base` plus the segment LoRA pair (`lora_shrink` + `lora_expand` per job), the default
/// path's LoRA, in place.
pub fn add_segment_lora(lora: &Module, g: &mut Group, base: &mut [Vec<f32>]) -> Result<(), String> {
    let bf16 = g.lora_bf16;
    let mut x = g.x.clone();
    for (l, y) in g.loras.iter_mut().zip(base) {
        let mut u = segment_shrink(lora, l, &mut x, bf16)?;
        segment_expand(lora, l, &mut u, y, bf16)?;
    }
    Ok(())
}

/// `batch-lora`: `lora_shrink_jobs` then `lora_expand_jobs` adding into `base`, in place.
fn add_batch_lora(lora: &Module, g: &mut Group, base: &mut [Vec<f32>]) -> Result<(), String> {
    let mut s = g.scratch();
    let lj = g.lora_jobs(&mut s, false);
    let mut x = g.x.clone();
    let (px, k) = (dev(&mut x), g.k as i32);
    let kk = lj.mix_k as usize;
    shrink_jobs(lora, &lj, &s, g.rows, &px, &k)?;
    let mut o = LoraOuts::default();
    for (j, b) in base.iter_mut().enumerate() {
        o.out[j] = dev(b);
        o.n[j] = (b.len() / g.rows) as i32;
    }
    let widest = o.n.iter().copied().max().unwrap() as usize;
    let grid = (
        widest.div_ceil(BLOCK as usize) as u32,
        g.rows as u32,
        lj.n_jobs as u32,
    );
    let shared = ((kk * s.max_rank + 2 * kk) * 4) as u32;
    lora.launch(
        "lora_expand_jobs",
        grid,
        BLOCK,
        shared,
        &[arg(&lj), arg(&o)],
    )?;
    if !s.counters_zero() {
        return Err("batch-lora: counters changed".into());
    }
    Ok(())
}

pub fn bit_equal(a: &[Vec<f32>], b: &[Vec<f32>]) -> usize {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn run_group(
    rows: usize,
    k: usize,
    ns: &[usize],
    ranks: &[Vec<usize>],
    bf16: bool,
    order: Order,
    tune: &Tune,
) -> Result<(), String> {
    let mods = Mods::new(order, tune)?;
    let mut g = Group::new(rows, k, ns, ranks, bf16, 5);
    // The verified kernels against float64.
    let base = run_matvec(&mods, &mut g, "base", 0)?;
    let mut want = Vec::new();
    for (j, b) in base.iter().enumerate() {
        let e = worst(b, &g.matvec_ref(j));
        if e > 1e-5 {
            return Err(format!("matvec_bf16 job {j}: {e:.2e} from float64"));
        }
        let u: Vec<f32> = g.loras[j]
            .shrink_ref(&g.x)
            .iter()
            .map(|v| *v as f32)
            .collect();
        want.push(g.loras[j].expand_ref(&u, b));
    }
    let mut seg = base.clone();
    add_segment_lora(&mods.lora, &mut g, &mut seg)?;
    for j in 0..ns.len() {
        let e = worst(&seg[j], &want[j]);
        if e > 1e-4 {
            return Err(format!("segment LoRA job {j}: {e:.2e} from float64"));
        }
    }
    let close = |what: &str, got: &[Vec<f32>]| -> Result<(), String> {
        for j in 0..ns.len() {
            let e = worst(
                &got[j],
                &seg[j].iter().map(|v| *v as f64).collect::<Vec<_>>(),
            );
            if e > 1e-5 {
                return Err(format!("{what} job {j}: {e:.2e} from the segment path"));
            }
        }
        Ok(())
    };
    let fused = run_matvec(&mods, &mut g, "fused", 0)?;
    close("fused-lora", &fused)?;
    let mut batch = base.clone();
    add_batch_lora(&mods.lora, &mut g, &mut batch)?;
    close("batch-lora", &batch)?;
    for round_x in [0, 1, 2] {
        let fused = run_matvec(&mods, &mut g, "fused", round_x)?;
        let inline = run_matvec(&mods, &mut g, "inline", round_x)?;
        let n = bit_equal(&fused, &inline);
        if n > 0 {
            return Err(format!(
                "inline-shrink (round_x {round_x}) differs from fused-lora in {n} values"
            ));
        }
    }
    Ok(())
}

#[test]
fn decode_lora_paths_match_the_verified_kernels() {
    // (rows, k, job widths, each job's slot ranks)
    type Case = (usize, usize, Vec<usize>, Vec<Vec<usize>>);
    let cases: Vec<Case> = vec![
        (1, 64, vec![96], vec![vec![4, 8]]),
        (
            3,
            128,
            vec![64, 32, 40],
            vec![vec![4, 8, 0], vec![2, 0, 6], vec![16, 1, 3]],
        ),
        (5, 1040, vec![24, 16], vec![vec![8, 4], vec![3, 16]]),
    ];
    let mut runs = Runs::default();
    for (knobs, tune) in tunes() {
        for (i, (rows, k, ns, ranks)) in cases.iter().enumerate() {
            for bf16 in [false, true] {
                for (name, order) in ORDERS {
                    let label = format!("case {i} lora_bf16={bf16} {name} {knobs}");
                    runs.check(label, run_group(*rows, *k, ns, ranks, bf16, order, &tune));
                }
            }
        }
    }
    runs.finish();
}

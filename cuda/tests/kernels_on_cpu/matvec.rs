//! The decode matvec's LoRA paths on a group of modules reading one x (q/k/v-like, up to 3
//! jobs, one of them without a stack): the base matvec and the segment LoRA pair (passed on
//! an H200) against float64, then `fused-lora` (`lora_shrink_jobs` + `matvec_bf16_lora_r*`,
//! whose entry table came after the GPU run), `inline-shrink` (`matvec_bf16_lora_inline_r*`,
//! bit for bit the fused one) and `batch-lora` (`lora_shrink_jobs` + `lora_expand_jobs`)
//! against them, with the backend's grids (`dlp_cuda::matvec`) and scratch (group.rs).

use dlp_cuda::matvec::{matvec_bucket, matvec_launch, LoraJobs, MatvecJobs, MatvecNorm};
use dlp_cuda::tune::Tune;

use crate::common::{bits_differ, worst, Runs, BLOCK};
use crate::emu::{arg, dev, module, Launch, Module, Order, ORDERS};
use crate::group::{Group, Scratch};
use crate::lora_data::{segment_expand, segment_shrink};

/// SMs of the pretend device: `matvec_blocks_per_sm` caps a grid at that many blocks per SM,
/// so few SMs make the persistent matvec's warps take several features each.
pub const SMS: usize = 2;

/// How a decode matvec applies its group's LoRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No LoRA (`matvec_bf16_r*`).
    Base,
    /// `lora_shrink_jobs`, then the expands in the matvec's epilogue (`matvec_bf16_lora_r*`).
    Fused,
    /// The shrink's blocks in the matvec's own grid (`matvec_bf16_lora_inline_r*`).
    Inline,
}

pub const KINDS: [Kind; 3] = [Kind::Base, Kind::Fused, Kind::Inline];

/// The kernel's `LoraOuts` (lora.cu; the backend's copy is crate-private).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct LoraOuts {
    pub out: [u64; 3],
    pub n: [i32; 3],
    pub pad: i32,
}

/// The decode matvec's modules under `tune`: `matmul` with the folds' entries and the
/// dependent-launch trigger (`-DDLP_PDL`, which changes nothing in plain stream order), as
/// the backend builds it on sm_90 with those switches on, and `lora` (the segment and batch
/// kernels), with the knobs' defines (`Tune::defines_for`).
pub struct Mods {
    pub m: Module,
    pub lora: Module,
    pub tune: Tune,
}

impl Mods {
    pub fn new(order: Order, tune: &Tune) -> Result<Mods, String> {
        let mut defines = tune.defines_for("matmul");
        defines.extend([
            dlp_cuda::nvrtc::MATVEC_FOLDS_DEFINE.into(),
            "-DDLP_PDL".into(),
        ]);
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

/// `name` with the row bucket's suffix (`_r1` ... `_r8`).
pub fn bucket(name: &str, rows: usize) -> String {
    let r = [1, 2, 4, 8][matvec_bucket(rows).expect("1 to 8 rows")];
    format!("{name}_r{r}")
}

/// One decode matvec call, its arguments by value (its launches borrow them).
pub struct MatvecCall {
    pub x: u64,
    pub rows: i32,
    pub k: i32,
    pub round_x: i32,
    pub jobs: MatvecJobs,
    pub lj: LoraJobs,
    /// The `_norm` entries' last argument (norm-in-matvec).
    pub nm: Option<MatvecNorm>,
    /// `""`, `"_silu"` or `"_norm"`.
    pub fold: &'static str,
    /// Features the warps compute (a gate/up pair counts once with `_silu`).
    pub features: usize,
    pub n_chunks: usize,
}

impl MatvecCall {
    /// The call of `g`'s matvec on `x` with scratch layout `s` (its features: one per warp,
    /// a gate/up pair counting once with `_silu`).
    pub fn new(
        g: &Group,
        s: &Scratch,
        x: u64,
        round_x: i32,
        jobs: MatvecJobs,
        lj: LoraJobs,
        fold: &'static str,
    ) -> MatvecCall {
        let features = if fold == "_silu" {
            g.ns()[0]
        } else {
            g.ns().iter().sum()
        };
        let (rows, k, n_chunks, nm) = (g.rows as i32, g.k as i32, s.n_chunks, None);
        MatvecCall {
            x,
            rows,
            k,
            round_x,
            jobs,
            lj,
            nm,
            fold,
            features,
            n_chunks,
        }
    }

    /// Its launches as the backend makes them (matvec.rs `matvec_bf16`, fused_linears.rs): for
    /// `Fused` first `lora_shrink_jobs` (grid (T, K * n_chunks, jobs)); the matvec's grid
    /// capped by `matvec_blocks_per_sm`, plus the inline shrink's blocks; the matvec a
    /// programmatic dependent of the launch before where `dependent`.
    pub fn launches(&self, kind: Kind, dependent: bool, tune: &Tune) -> Vec<Launch> {
        let shared = if self.round_x == 2 {
            (self.rows * self.k * 2) as u32
        } else {
            0
        };
        let c = matvec_launch(self.features, tune.matvec_warps as usize, shared);
        let mut grid = c.grid_dim;
        grid.0 = tune.matvec_grid(grid.0 as usize, SMS) as u32;
        let mut v = Vec::new();
        let mut args = vec![
            arg(&self.x),
            arg(&self.rows),
            arg(&self.k),
            arg(&self.round_x),
            arg(&self.jobs),
        ];
        let name = match kind {
            Kind::Base => "matvec_bf16",
            Kind::Fused => {
                let (t, kc) = (self.rows as u32, self.lj.mix_k as usize * self.n_chunks);
                v.push(Launch {
                    name: "lora_shrink_jobs".into(),
                    grid: (t, kc as u32, self.lj.n_jobs as u32),
                    block: BLOCK,
                    shared: 0,
                    args: vec![arg(&self.x), arg(&self.k), arg(&self.lj)],
                    dependent: false,
                });
                "matvec_bf16_lora"
            }
            Kind::Inline => {
                grid.0 += self.lj.inline_blocks as u32;
                "matvec_bf16_lora_inline"
            }
        };
        if kind != Kind::Base {
            args.push(arg(&self.lj));
        }
        if let Some(nm) = &self.nm {
            args.push(arg(nm));
        }
        let name = bucket(&format!("{name}{}", self.fold), self.rows as usize);
        v.push(Launch {
            name,
            grid,
            block: c.block_dim.0,
            shared,
            args,
            dependent,
        });
        v
    }
}

/// The decode matvec of `g` into fresh outputs, `[rows, n_j]` per job.
pub fn run_matvec(
    mods: &Mods,
    g: &mut Group,
    kind: Kind,
    round_x: i32,
) -> Result<Vec<Vec<f32>>, String> {
    let mut outs: Vec<Vec<f32>> = g.ns().iter().map(|n| vec![f32::NAN; g.rows * n]).collect();
    let ptrs: Vec<u64> = outs.iter_mut().map(|o| dev(o)).collect();
    let jobs = g.jobs(&ptrs);
    launch_matvec(mods, g, kind, round_x, "", jobs, None)?;
    Ok(outs)
}

/// One decode matvec of `g` (entry by `kind` and `fold`; `nm` for the `_norm` entries), on
/// its own scratch; the inline one must leave its counters zero.
#[allow(clippy::too_many_arguments)]
pub fn launch_matvec(
    mods: &Mods,
    g: &mut Group,
    kind: Kind,
    round_x: i32,
    fold: &'static str,
    jobs: MatvecJobs,
    nm: Option<MatvecNorm>,
) -> Result<(), String> {
    let mut xx = g.x.clone();
    let mut s = g.scratch();
    let lj = g.lora_jobs(&mut s, kind == Kind::Inline);
    let mut call = MatvecCall::new(g, &s, dev(&mut xx), round_x, jobs, lj, fold);
    call.nm = nm;
    mods.m.stream(&call.launches(kind, false, &mods.tune))?;
    if !s.counters_zero() {
        return Err(format!(
            "{kind:?}: counters not zero after the launch: {:?}",
            &s.buf[..4]
        ));
    }
    Ok(())
}

/// `base` plus the segment LoRA pair (`lora_shrink` + `lora_expand` per job with a stack),
/// the default path's LoRA, in place.
pub fn add_segment_lora(lora: &Module, g: &mut Group, base: &mut [Vec<f32>]) -> Result<(), String> {
    let bf16 = g.lora_bf16;
    let mut x = g.x.clone();
    for ((l, y), stacked) in g.loras.iter_mut().zip(base).zip(&g.stacked) {
        if *stacked {
            let mut u = segment_shrink(lora, l, &mut x, bf16)?;
            segment_expand(lora, l, &mut u, y, bf16)?;
        }
    }
    Ok(())
}

/// `batch-lora`: `lora_shrink_jobs` then `lora_expand_jobs` adding into `base`, in place
/// (fused_linears.rs `linears_grouped_lora` without the matvec).
fn add_batch_lora(lora: &Module, g: &mut Group, base: &mut [Vec<f32>]) -> Result<(), String> {
    let mut s: Scratch = g.scratch();
    let lj = g.lora_jobs(&mut s, false);
    let mut x = g.x.clone();
    let (px, k, kk) = (dev(&mut x), g.k as i32, lj.mix_k as usize);
    let shrink_grid = (g.rows as u32, (kk * s.n_chunks) as u32, lj.n_jobs as u32);
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
    let launch = |name: &str, grid, shared, args| Launch {
        name: name.into(),
        grid,
        block: BLOCK,
        shared,
        args,
        dependent: false,
    };
    lora.stream(&[
        launch(
            "lora_shrink_jobs",
            shrink_grid,
            0,
            vec![arg(&px), arg(&k), arg(&lj)],
        ),
        launch("lora_expand_jobs", grid, shared, vec![arg(&lj), arg(&o)]),
    ])
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
    // The verified kernels against float64 (a job without a stack: its base product).
    let base = run_matvec(&mods, &mut g, Kind::Base, 0)?;
    let mut want = Vec::new();
    for (j, b) in base.iter().enumerate() {
        let e = worst(b, &g.matvec_ref(j));
        if e > 1e-5 {
            return Err(format!("matvec_bf16 job {j}: {e:.2e} from float64"));
        }
        let l = &g.loras[j];
        want.push(if g.stacked[j] {
            let u: Vec<f32> = l.shrink_ref(&g.x).iter().map(|v| *v as f32).collect();
            l.expand_ref(&u, b)
        } else {
            b.iter().map(|v| *v as f64).collect()
        });
    }
    let mut seg = base.clone();
    add_segment_lora(&mods.lora, &mut g, &mut seg)?;
    for (j, (s, w)) in seg.iter().zip(&want).enumerate() {
        let e = worst(s, w);
        if e > 1e-4 {
            return Err(format!("segment LoRA job {j}: {e:.2e} from float64"));
        }
    }
    let close = |what: &str, got: &[Vec<f32>]| -> Result<(), String> {
        for (j, (g, s)) in got.iter().zip(&seg).enumerate() {
            let e = worst(g, &s.iter().map(|v| *v as f64).collect::<Vec<_>>());
            if e > 1e-5 {
                return Err(format!("{what} job {j}: {e:.2e} from the segment path"));
            }
        }
        Ok(())
    };
    let mut batch = base.clone();
    add_batch_lora(&mods.lora, &mut g, &mut batch)?;
    close("batch-lora", &batch)?;
    for round_x in [0, 1, 2] {
        let fused = run_matvec(&mods, &mut g, Kind::Fused, round_x)?;
        if round_x == 0 {
            close("fused-lora", &fused)?;
        }
        let inline = run_matvec(&mods, &mut g, Kind::Inline, round_x)?;
        let n = bits_differ(&fused, &inline);
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
    // (rows, k, job widths, each job's slot ranks; none: no stack)
    type Case = (usize, usize, Vec<usize>, Vec<Vec<usize>>);
    let cases: Vec<Case> = vec![
        (1, 64, vec![96], vec![vec![4, 8]]),
        (
            3,
            128,
            vec![64, 32, 40],
            vec![vec![4, 8, 0], vec![], vec![16, 1, 3]],
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

//! `lora-prefetch`: expand-launch's chain with every launch after the first a programmatic
//! dependent of the one before (a matvec writing x and releasing its dependent at its start,
//! `lora_shrink_jobs_prefetch`, the plain matvec waiting for x and releasing, then
//! `lora_expand_jobs_prefetch`), against the same chain in plain stream order with the kernels
//! verified on an H200 (`lora_shrink_jobs`, the plain matvec, `lora_expand_jobs`): x, the
//! products and the whole scratch (partial sums and entry table) bit for bit. In the emulator a
//! dependent that reads before its wait what a launch still running writes reads it unwritten
//! (x NaN, the scratch poisoned as the backend's tests poison it); the same chain with a verified
//! kernel (which has no wait) in place of either new one must differ, or the check has no teeth.

use dlp_cuda::matvec::{PDL_RELEASE, PDL_WAIT_X};

use crate::common::{bits_differ, Runs, BLOCK};
use crate::emu::{arg, dev, Launch, Order, ORDERS};
use crate::group::Group;
use crate::matvec::{tunes, Kind, LoraOuts, MatvecCall, Mods};

/// Every block of the chain resident at once, the newest first in each sweep: a dependent's
/// blocks run ahead of the launches still running before it.
const WIDE: Order = Order {
    resident: 64,
    reverse: 1,
    max_sweeps: 10_000_000,
};

/// Which kernels the chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// The verified kernels in plain stream order.
    Plain,
    /// lora-prefetch: the new shrink and expand, every launch after the first a dependent.
    Prefetch,
    /// As `Prefetch` with the verified shrink, which reads x with no wait.
    EarlyShrink,
    /// As `Prefetch` with the verified expand, which reads the shrink's results with no wait.
    EarlyExpand,
}

/// What a chain leaves: x, each job's products `[rows, n_j]`, and the fused LoRA scratch.
struct Left {
    x: Vec<f32>,
    outs: Vec<Vec<f32>>,
    scratch: Vec<f32>,
}

/// `pre`'s plain matvec writes x (`[rows, g.k]`), then `g`'s shrink, plain matvec (reading x
/// as `round_x` says) and expand, by `chain`.
fn run_chain(
    mods: &Mods,
    g: &mut Group,
    pre: &mut Group,
    chain: Chain,
    round_x: i32,
) -> Result<Left, String> {
    let (rows, dependent) = (g.rows, chain != Chain::Plain);
    let mut x = vec![f32::NAN; rows * g.k];
    let px = dev(&mut x);
    let mut pre_s = pre.scratch();
    let pre_lj = pre.lora_jobs(&mut pre_s, false);
    let mut pre_jobs = pre.jobs(&[px]);
    pre_jobs.pdl = if dependent { PDL_RELEASE } else { 0 };
    let mut pre_x = pre.x.clone();
    let pre_call = MatvecCall::new(pre, &pre_s, dev(&mut pre_x), 0, pre_jobs, pre_lj, "");
    let mut launches = pre_call.launches(Kind::Base, false, &mods.tune);

    let mut s = g.scratch();
    let lj = g.lora_jobs(&mut s, false);
    let mut outs: Vec<Vec<f32>> = g.ns().iter().map(|n| vec![f32::NAN; rows * n]).collect();
    let ptrs: Vec<u64> = outs.iter_mut().map(|o| dev(o)).collect();
    let mut jobs = g.jobs(&ptrs);
    jobs.pdl = if dependent {
        PDL_WAIT_X | PDL_RELEASE
    } else {
        0
    };
    let (k, kk) = (g.k as i32, lj.mix_k as usize);
    let shrink = match chain {
        Chain::Prefetch | Chain::EarlyExpand => "lora_shrink_jobs_prefetch",
        Chain::Plain | Chain::EarlyShrink => "lora_shrink_jobs",
    };
    launches.push(Launch {
        name: shrink.into(),
        grid: (rows as u32, (kk * s.n_chunks) as u32, lj.n_jobs as u32),
        block: BLOCK,
        shared: 0,
        args: vec![arg(&px), arg(&k), arg(&lj)],
        dependent,
    });
    let call = MatvecCall::new(g, &s, px, round_x, jobs, lj, "");
    launches.extend(call.launches(Kind::Base, dependent, &mods.tune));
    let mut o = LoraOuts::default();
    for (j, p) in ptrs.iter().enumerate() {
        o.out[j] = *p;
        o.n[j] = g.ns()[j] as i32;
    }
    let widest = g.ns().into_iter().max().unwrap_or(0);
    let expand = match chain {
        Chain::Prefetch | Chain::EarlyShrink => "lora_expand_jobs_prefetch",
        Chain::Plain | Chain::EarlyExpand => "lora_expand_jobs",
    };
    launches.push(Launch {
        name: expand.into(),
        grid: (
            widest.div_ceil(BLOCK as usize) as u32,
            rows as u32,
            lj.n_jobs as u32,
        ),
        block: BLOCK,
        shared: ((kk * s.max_rank + 2 * kk) * 4) as u32,
        args: vec![arg(&lj), arg(&o)],
        dependent,
    });
    mods.m.stream(&launches)?;
    Ok(Left {
        x,
        outs,
        scratch: s.buf,
    })
}

/// How many values of `b` differ from `a` in their bits (x, products, scratch).
fn differ(a: &Left, b: &Left) -> usize {
    use std::slice::from_ref;
    bits_differ(from_ref(&a.x), from_ref(&b.x))
        + bits_differ(&a.outs, &b.outs)
        + bits_differ(from_ref(&a.scratch), from_ref(&b.scratch))
}

/// (rows, k, job widths, each job's slot ranks (none: no stack), entries per mixture). Up to
/// 32 terms a token (mix_k x the largest rank), all the prefetch expand holds: 2 x 16, and the
/// benchmarks' 3 adapters of rank 8.
type Case = (usize, usize, Vec<usize>, Vec<Vec<usize>>, usize);

fn cases() -> Vec<Case> {
    vec![
        (1, 64, vec![96], vec![vec![4, 8]], 2),
        (
            2,
            128,
            vec![64, 32, 40],
            vec![vec![4, 8, 0], vec![], vec![16, 1, 3]],
            2,
        ),
        (3, 1040, vec![24, 300], vec![vec![8, 4], vec![3, 16]], 2),
        (1, 2056, vec![40, 16, 16], vec![vec![8, 8, 8, 8]; 3], 3),
        (2, 64, vec![33], vec![vec![5, 2]], 1),
    ]
}

fn run_case(case: &Case, bf16: bool, mods: &Mods) -> Result<(), String> {
    let (rows, k, ns, ranks, mix_k) = case;
    let mut g = Group::with_mix_k(*rows, *k, ns, ranks, bf16, 21, *mix_k);
    let mut pre = Group::new(*rows, 32, &[*k], &[vec![]], bf16, 22);
    for round_x in [0, 2] {
        let plain = run_chain(mods, &mut g, &mut pre, Chain::Plain, round_x)?;
        let all_finite = plain.outs.iter().flatten().all(|v| v.is_finite());
        if !all_finite || plain.x.iter().any(|v| !v.is_finite()) {
            return Err(format!("round_x {round_x}: the plain chain left a NaN"));
        }
        let prefetch = run_chain(mods, &mut g, &mut pre, Chain::Prefetch, round_x)?;
        let n = differ(&plain, &prefetch);
        if n > 0 {
            return Err(format!(
                "round_x {round_x}: lora-prefetch differs from the plain chain in {n} values"
            ));
        }
    }
    Ok(())
}

#[test]
fn lora_prefetch_chain_matches_the_verified_kernels() {
    let mut runs = Runs::default();
    let orders = ORDERS.into_iter().chain([("wide", WIDE)]);
    for (name, order) in orders {
        // The defaults and the persistent matvec (its warps taking several features each).
        for (knobs, tune) in tunes()
            .into_iter()
            .filter(|(k, _)| k.is_empty() || k.contains("blocks_per_sm=1"))
        {
            let mods = Mods::new(order, &tune).expect("the modules build");
            for (i, case) in cases().iter().enumerate() {
                for bf16 in [false, true] {
                    let label = format!("case {i} lora_bf16={bf16} {name} {knobs}");
                    runs.check(label, run_case(case, bf16, &mods));
                }
            }
        }
    }
    runs.finish();
}

/// The check's teeth: with every block resident and the newest running first, a verified
/// kernel (no wait) launched as a dependent in the chain reads what it must wait for, and the
/// chain differs from the plain one.
#[test]
fn a_dependent_that_reads_before_waiting_is_caught() {
    let mods = Mods::new(WIDE, &tunes()[0].1).expect("the modules build");
    let case = &cases()[1];
    let (rows, k, ns, ranks, _) = case;
    for chain in [Chain::EarlyShrink, Chain::EarlyExpand] {
        let mut g = Group::new(*rows, *k, ns, ranks, true, 21);
        let mut pre = Group::new(*rows, 32, &[*k], &[vec![]], true, 22);
        let plain = run_chain(&mods, &mut g, &mut pre, Chain::Plain, 0).unwrap();
        let early = run_chain(&mods, &mut g, &mut pre, chain, 0).unwrap();
        assert!(
            differ(&plain, &early) > 0,
            "{chain:?}: the chain matched the plain one"
        );
    }
}

//! A decode layer's matvec chain with programmatic dependent launches (`dependent-launch`,
//! first run on a GPU before `fused-silu` and `norm-in-matvec` existed, with them since): o (its norm fold
//! adding into the residual), gate/up (silu fold), down (norm fold), the next layer's q/k/v,
//! each launched as a dependent of the launch before (`MatvecLaunch::AfterX`, `PDL_WAIT_X`), the
//! folds releasing their dependents at their start (`-DDLP_PDL`), so up to four grids run
//! side by side, sharing the fused-LoRA scratch (`fused_linears.rs`: one counter set each, one
//! u area for all). Every output must equal that of the same launches in plain stream order,
//! bit for bit, and every counter be zero after.

use dlp_cuda::matvec::{MatvecNorm, PDL_WAIT_X};
use dlp_cuda::tune::Tune;

use crate::common::{bits, random_vec, Runs, BLOCK};
use crate::emu::{dev, Order};
use crate::group::{laid_out, Group, Scratch};
use crate::matvec::{tunes, Kind, MatvecCall, Mods, KINDS};

/// The orders the chain runs in: each with room for a dependent grid's blocks beside those
/// of the grid before it (one block at a time leaves none), up to 8 blocks at once, newest
/// first (the dependent's blocks run first in each sweep) or oldest first.
const CHAIN_ORDERS: [(&str, Order); 3] = [
    ("reverse", Order::REVERSE),
    (
        "wide",
        Order {
            resident: 8,
            reverse: 0,
            max_sweeps: 10_000_000,
        },
    ),
    (
        "wide-reverse",
        Order {
            resident: 8,
            reverse: 1,
            max_sweeps: 10_000_000,
        },
    ),
];

/// What the chain leaves: o's product, its normed output, the activation, down's product, the
/// residual, the next layer's normed input, q, k and v, then the counters.
type Outputs = Vec<Vec<u32>>;

/// Runs the chain on fresh buffers; `dependent`: each matvec after the first a dependent
/// launch waiting for x (`PDL_WAIT_X`), as the backend launches them with `dependent-launch`;
/// with `fused_shrink` too (`Fused` only), each matvec a dependent of its group's shrink that
/// reads x at once and waits only before its expands (`MatvecLaunch::AfterShrink`).
#[allow(clippy::too_many_arguments)]
fn run_chain(
    mods: &Mods,
    layer: &mut [Group; 4],
    kind: Kind,
    dependent: bool,
    fused_shrink: bool,
    round_x: i32,
) -> Result<Outputs, String> {
    let rows = layer[0].rows;
    let (hidden, inter) = (64, 96);
    let mut x_attn = random_vec(rows * hidden, 41);
    let mut residual = random_vec(rows * hidden, 42);
    let (mut w_attn, mut w_ffn) = (random_vec(hidden, 43), random_vec(hidden, 44));
    let nan = |n: usize| vec![f32::NAN; n];
    let (mut y_o, mut h1, mut act) = (nan(rows * hidden), nan(rows * hidden), nan(rows * inter));
    let (mut y_d, mut h2) = (nan(rows * hidden), nan(rows * hidden));
    let (mut q, mut k, mut v) = (nan(rows * 64), nan(rows * 32), nan(rows * 32));
    let mut norm_sync = vec![0u32; 2];
    // The groups' one scratch: 4 sets of 4 counters, then u (each group's layout over it).
    let layouts: Vec<Scratch> = layer.iter().map(|g| g.scratch()).collect();
    let mut scratch = laid_out(&layouts.iter().collect::<Vec<_>>());
    let base = dev(&mut scratch);
    let norm = |x: u64, w: u64, out: u64, sync: u64| {
        let (dim, threads) = (hidden as i32, BLOCK as i32);
        MatvecNorm {
            x,
            w,
            out,
            sync,
            dim,
            threads,
            eps: 1e-5,
            pad: 0,
        }
    };
    let sync0 = dev(&mut norm_sync);
    let nm_o = norm(dev(&mut residual), dev(&mut w_attn), dev(&mut h1), sync0);
    let nm_d = norm(dev(&mut residual), dev(&mut w_ffn), dev(&mut h2), sync0 + 4);
    // (x, outputs, norm, fold, counter set: fused_linears.rs's sync_set).
    type Plan = (u64, Vec<u64>, Option<MatvecNorm>, &'static str, u64);
    let plan: [Plan; 4] = [
        (
            dev(&mut x_attn),
            vec![dev(&mut y_o)],
            Some(nm_o),
            "_norm",
            2,
        ),
        (dev(&mut h1), vec![0, dev(&mut act)], None, "_silu", 1),
        (dev(&mut act), vec![dev(&mut y_d)], Some(nm_d), "_norm", 3),
        (
            dev(&mut h2),
            vec![dev(&mut q), dev(&mut k), dev(&mut v)],
            None,
            "",
            0,
        ),
    ];
    let mut calls = Vec::new();
    for ((g, s), (x, outs, nm, fold, set)) in layer.iter_mut().zip(&layouts).zip(plan) {
        let mut jobs = g.jobs(&outs);
        jobs.pdl = (dependent && !(fused_shrink && kind == Kind::Fused)) as i32 * PDL_WAIT_X;
        let mut lj = g.lora_jobs_at(s, base, kind == Kind::Inline);
        lj.sync = base + set * 16;
        let mut call = MatvecCall::new(g, s, x, round_x, jobs, lj, fold);
        call.nm = nm;
        calls.push(call);
    }
    let mut launches = Vec::new();
    for c in &calls {
        let mut ls = c.launches(kind, dependent, &mods.tune);
        // The first matvec follows attention, a plain launch: it starts in plain order.
        if launches.is_empty() && ls.len() == 1 {
            ls[0].dependent = false;
        }
        launches.extend(ls);
    }
    mods.m.stream(&launches)?;
    let counters = scratch[..16]
        .iter()
        .map(|v| v.to_bits())
        .chain(norm_sync.iter().copied());
    let outputs = [&y_o, &h1, &act, &y_d, &residual, &h2, &q, &k, &v];
    Ok(outputs
        .iter()
        .map(|o| bits(o))
        .chain([counters.collect()])
        .collect())
}

/// What [`run_chain`] returns, by index.
const WHAT: [&str; 10] = [
    "o product",
    "o normed",
    "activation",
    "down product",
    "residual",
    "next input",
    "q",
    "k",
    "v",
    "counters",
];

fn case(rows: usize, bf16: bool, order: Order, tune: &Tune) -> Result<(), String> {
    let mods = Mods::new(order, tune)?;
    let ranks = |n: usize| vec![vec![4, 8, 0]; n];
    let mut layer = [
        Group::new(rows, 64, &[64], &ranks(1), bf16, 51),
        Group::new(rows, 64, &[96, 96], &ranks(2), bf16, 52),
        Group::new(rows, 96, &[64], &ranks(1), bf16, 53),
        // k without a stack (adapters on q and v only, the common case).
        Group::new(
            rows,
            64,
            &[64, 32, 32],
            &[vec![4, 8, 0], vec![], vec![2, 2, 16]],
            bf16,
            54,
        ),
    ];
    // (kind, fused-shrink)
    let modes = KINDS
        .iter()
        .map(|k| (*k, false))
        .chain([(Kind::Fused, true)]);
    for (kind, fs) in modes {
        for round_x in [0, 2] {
            let mode = format!(
                "{kind:?}{} (round_x {round_x})",
                if fs { " + fused-shrink" } else { "" }
            );
            let plain = run_chain(&mods, &mut layer, kind, false, false, round_x)
                .map_err(|e| format!("{mode}, plain order: {e}"))?;
            let pdl = run_chain(&mods, &mut layer, kind, true, fs, round_x)
                .map_err(|e| format!("{mode}, dependent launches: {e}"))?;
            if plain[9].iter().any(|c| *c != 0) {
                return Err(format!(
                    "{mode}: counters left set in plain order: {:?}",
                    plain[9]
                ));
            }
            // Both runs agreeing means nothing if an output was left unwritten in both.
            for (i, o) in plain[..9].iter().enumerate() {
                if o.iter().any(|b| !f32::from_bits(*b).is_finite()) {
                    return Err(format!(
                        "{mode}: {} not all written (NaN) in plain order",
                        WHAT[i]
                    ));
                }
            }
            for (i, (a, b)) in plain.iter().zip(&pdl).enumerate() {
                let n = a.iter().zip(b).filter(|(x, y)| x != y).count();
                if n > 0 {
                    let what = WHAT[i];
                    return Err(format!(
                        "{mode}: {what}: {n} values differ with dependent launches"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_decode_chain_with_dependent_launches_matches_plain_order() {
    let mut runs = Runs::default();
    let tunes = tunes()
        .into_iter()
        .filter(|(k, _)| k.is_empty() || k.contains("blocks_per_sm=1"));
    for (knobs, tune) in tunes {
        for rows in [1, 2] {
            for bf16 in [false, true] {
                for (name, order) in CHAIN_ORDERS {
                    let label = format!("rows={rows} lora_bf16={bf16} {name} {knobs}");
                    runs.check(label, case(rows, bf16, order, &tune));
                }
            }
        }
    }
    runs.finish();
}

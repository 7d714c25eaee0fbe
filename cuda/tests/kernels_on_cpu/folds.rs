//! The decode matvec's folds (`-DDLP_MATVEC_FOLDS`; written without a GPU, since passed on an
//! H200 with the tiny test models): `fused-silu` (the
//! gate/up matvec storing silu(gate) * up) against the two-job matvec then `silu_mul`, and
//! `norm-in-matvec` (the o/down matvec whose last block adds the residual and normalises)
//! against the one-job matvec then `add_rms_norm`; each plain, with the fused LoRA and with
//! the shrink inline, bit for bit (the same expressions in the same order).

use dlp_cuda::matvec::MatvecNorm;

use dlp_cuda::tune::Tune;

use crate::common::{bits_differ, random_vec, Runs, BLOCK};
use crate::emu::{arg, dev, module, Order, ORDERS};
use crate::group::Group;
use crate::matvec::{launch_matvec, run_matvec, tunes, Mods, KINDS};

fn silu_case(
    rows: usize,
    k: usize,
    n: usize,
    bf16: bool,
    order: Order,
    tune: &Tune,
) -> Result<(), String> {
    let mods = Mods::new(order, tune)?;
    let silu = module("silu_mul", &[], order)?;
    let ranks = vec![vec![4, 8, 0], vec![2, 5, 16]];
    let mut g = Group::new(rows, k, &[n, n], &ranks, bf16, 9);
    for kind in KINDS {
        for round_x in [0, 2] {
            // The verified route: gate and up as two jobs, then silu_mul.
            let gu = run_matvec(&mods, &mut g, kind, round_x)?;
            let (mut gate, mut up) = (gu[0].clone(), gu[1].clone());
            let mut want = vec![f32::NAN; rows * n];
            let (pg, pu, pw, nn) = (
                dev(&mut gate),
                dev(&mut up),
                dev(&mut want),
                (rows * n) as i32,
            );
            let grid = ((rows * n).div_ceil(BLOCK as usize) as u32, 1, 1);
            silu.launch(
                "silu_mul",
                grid,
                BLOCK,
                0,
                &[arg(&pg), arg(&pu), arg(&nn), arg(&pw)],
            )?;
            // The fold: one warp per feature pair, job 0's output not written.
            let mut act = vec![f32::NAN; rows * n];
            let jobs = g.jobs(&[0, dev(&mut act)]);
            launch_matvec(&mods, &mut g, kind, round_x, "_silu", jobs, None)?;
            let d = bits_differ(&[act], &[want]);
            if d > 0 {
                return Err(format!(
                    "fused-silu ({kind:?}, round_x {round_x}): {d} values differ"
                ));
            }
        }
    }
    Ok(())
}

/// `threads`: the block of the `add_rms_norm` the fold stands for (`nm.threads`), 256, or
/// 1,024 with `wide-grids` (the fold then sums as 32 virtual warps).
#[allow(clippy::too_many_arguments)]
fn norm_case(
    rows: usize,
    k: usize,
    n: usize,
    threads: u32,
    bf16: bool,
    order: Order,
    tune: &Tune,
) -> Result<(), String> {
    let mods = Mods::new(order, tune)?;
    let norm = module("rms_norm", &[], order)?;
    let mut g = Group::new(rows, k, &[n], &[vec![8, 3, 16]], bf16, 21);
    let residual = random_vec(rows * n, 22);
    let mut w = random_vec(n, 23);
    let (eps, dim, block) = (1e-5f32, n as i32, threads);
    let threads = threads as i32;
    for kind in KINDS {
        for round_x in [0, 2] {
            // The verified route: the product, then add_rms_norm (residual += y, normalise).
            let y = run_matvec(&mods, &mut g, kind, round_x)?.remove(0);
            let (mut x_want, mut y_in, mut out_want) =
                (residual.clone(), y.clone(), vec![f32::NAN; rows * n]);
            let (px, py, pw, po) = (
                dev(&mut x_want),
                dev(&mut y_in),
                dev(&mut w),
                dev(&mut out_want),
            );
            let a = [arg(&px), arg(&py), arg(&pw), arg(&dim), arg(&eps), arg(&po)];
            norm.launch("add_rms_norm", (rows as u32, 1, 1), block, 0, &a)?;
            // The fold: the same product, and its last block does the rest.
            let (mut x_got, mut y_got, mut out_got) = (
                residual.clone(),
                vec![f32::NAN; rows * n],
                vec![f32::NAN; rows * n],
            );
            let mut sync = vec![0u32; 4];
            let nm = MatvecNorm {
                x: dev(&mut x_got),
                w: dev(&mut w),
                out: dev(&mut out_got),
                sync: dev(&mut sync),
                dim,
                threads,
                eps,
                pad: 0,
            };
            let jobs = g.jobs(&[dev(&mut y_got)]);
            launch_matvec(&mods, &mut g, kind, round_x, "_norm", jobs, Some(nm))?;
            for (what, got, want) in [
                ("product", &y_got, &y),
                ("residual", &x_got, &x_want),
                ("normed", &out_got, &out_want),
            ] {
                let d = bits_differ(std::slice::from_ref(got), std::slice::from_ref(want));
                if d > 0 {
                    return Err(format!(
                        "norm-in-matvec ({kind:?}, round_x {round_x}): {what}: {d} values differ"
                    ));
                }
            }
            if sync[0] != 0 {
                return Err(format!(
                    "norm-in-matvec ({kind:?}): its counter is {} after the launch",
                    sync[0]
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn matvec_folds_match_the_verified_kernels() {
    let mut runs = Runs::default();
    for (knobs, tune) in tunes() {
        for bf16 in [false, true] {
            for (name, order) in ORDERS {
                // (rows, k, n): fused-silu up to 8 rows; norm-in-matvec takes 1 or 2.
                for (rows, k, n) in [(1, 64, 72), (3, 136, 40), (8, 1040, 24)] {
                    let label = format!("silu rows={rows} k={k} lora_bf16={bf16} {name} {knobs}");
                    runs.check(label, silu_case(rows, k, n, bf16, order, &tune));
                }
                for (rows, k, n, threads) in
                    [(1, 64, 300, 256), (2, 1040, 96, 256), (2, 64, 1100, 1024)]
                {
                    let label = format!(
                        "norm rows={rows} k={k} threads={threads} lora_bf16={bf16} {name} {knobs}"
                    );
                    runs.check(label, norm_case(rows, k, n, threads, bf16, order, &tune));
                }
            }
        }
    }
    runs.finish();
}

//! `tiled-lora` (lora_tiled.cu; written without a GPU, since passed on an H200 with the tiny
//! test models) against the segment kernels (lora.cu,
//! passed on an H200) and the float64 reference, on the grids the backend launches
//! (`dlp_cuda::lora_tiled::{shrink_grid, expand_grid}`).

use dlp_cuda::lora_tiled::{expand_grid, shrink_grid};

use dlp_cuda::tune::Tune;

use crate::common::{bits_differ, random_vec, worst, Runs};
use crate::emu::{arg, dev, module, Order, ORDERS};
use crate::lora_data::{segment_expand, segment_shrink, Lora, PairArgs, Shape};

/// Threads of the tiled kernels' blocks.
const TILED_SHRINK_THREADS: u32 = 256;
const TILED_EXPAND_THREADS: u32 = 128;

/// The cases: tiles cut by segments, partial tiles, odd and mixed ranks, entries naming no
/// adapter, output widths not a whole number of blocks.
fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            n_tokens: 3,
            in_dim: 64,
            out_dim: 96,
            ranks: vec![4, 8],
            mix_k: 2,
            segment_starts: vec![0],
        },
        Shape {
            n_tokens: 19,
            in_dim: 136,
            out_dim: 130,
            ranks: vec![3, 16, 5, 17],
            mix_k: 3,
            segment_starts: vec![0, 5, 6, 13],
        },
        Shape {
            n_tokens: 64,
            in_dim: 256,
            out_dim: 256,
            ranks: vec![16; 8],
            mix_k: 3,
            segment_starts: (0..8).map(|s| s * 8).collect(),
        },
    ]
}

/// Runs shrink then expand with the segment kernels and the tiled ones (`rows` rank rows per
/// shrink block) on the same inputs: both shrinks within 1e-5 of float64, both expands too
/// (from the segment shrink's u), and the tiled expand equal to the segment one bit for bit.
fn run_case(shape: &Shape, bf16: bool, rows: usize, order: Order) -> Result<(), String> {
    // The defines the backend passes for `tiled_rows` (none for the default).
    let tune = Tune {
        tiled_rows: rows as u32,
        ..Tune::default()
    };
    let defines = tune.defines_for("lora");
    let m = module(
        "lora",
        &defines.iter().map(String::as_str).collect::<Vec<_>>(),
        order,
    )?;
    let sfx = if bf16 { "_bf16" } else { "" };
    let (t, k) = (shape.n_tokens, shape.mix_k);
    let mut l = Lora::random(shape, 7 + rows as u64, bf16);
    let mr = l.max_rank;
    let mut x = random_vec(t * shape.in_dim, 11);
    let want_u = l.shrink_ref(&x);
    let n_tok = t as i32;

    // Shrink: segment (grid (T, K)) and tiled.
    let mut u_seg = segment_shrink(&m, &mut l, &mut x, bf16)?;
    let mut u_tiled = vec![f32::NAN; t * k * mr];
    let p = PairArgs::new(&mut l, &mut x, false, bf16);
    let elem = if bf16 { 2 } else { 4 };
    let grid = shrink_grid(t, k, mr, shape.in_dim, elem, rows).ok_or("no tiled shrink grid")?;
    let pu = dev(&mut u_tiled);
    let mut a = p.args();
    a.push(arg(&n_tok));
    a.push(arg(&pu));
    m.launch(
        &format!("lora_shrink_tiled{sfx}"),
        grid,
        TILED_SHRINK_THREADS,
        0,
        &a,
    )?;
    let (e_seg, e_tiled) = (worst(&u_seg, &want_u), worst(&u_tiled, &want_u));
    if e_seg > 1e-5 || e_tiled > 1e-5 {
        return Err(format!(
            "shrink: segment {e_seg:.2e}, tiled {e_tiled:.2e} from float64"
        ));
    }

    // Expand from the segment kernel's u, on the same y.
    let y0 = random_vec(t * shape.out_dim, 13);
    let want_y = l.expand_ref(&u_seg, &y0);
    let (mut y_seg, mut y_tiled) = (y0.clone(), y0.clone());
    segment_expand(&m, &mut l, &mut u_seg, &mut y_seg, bf16)?;
    let p = PairArgs::new(&mut l, &mut u_seg, true, bf16);
    let (grid, shared) = expand_grid(t, k, mr, shape.out_dim).ok_or("no tiled expand grid")?;
    let py = dev(&mut y_tiled);
    let mut a = p.args();
    a.push(arg(&n_tok));
    a.push(arg(&py));
    m.launch(
        &format!("lora_expand_tiled{sfx}"),
        grid,
        TILED_EXPAND_THREADS,
        shared,
        &a,
    )?;
    let (e_seg, e_tiled) = (worst(&y_seg, &want_y), worst(&y_tiled, &want_y));
    if e_seg > 1e-5 || e_tiled > 1e-5 {
        return Err(format!(
            "expand: segment {e_seg:.2e}, tiled {e_tiled:.2e} from float64"
        ));
    }
    let n = bits_differ(std::slice::from_ref(&y_seg), std::slice::from_ref(&y_tiled));
    if n > 0 {
        return Err(format!(
            "the tiled expand differs from the segment one in {n} of {} values (from the same u)",
            y_seg.len()
        ));
    }
    Ok(())
}

#[test]
fn tiled_lora_matches_the_segment_kernels() {
    let mut runs = Runs::default();
    for (i, s) in shapes().iter().enumerate() {
        for bf16 in [false, true] {
            if bf16 && s.in_dim % 8 != 0 {
                continue; // no tiled bf16 shrink for this width (shrink_grid: None)
            }
            for rows in [1, 2, 4] {
                for (name, order) in ORDERS {
                    let label = format!("case {i} bf16={bf16} rows={rows} {name}");
                    runs.check(label, run_case(s, bf16, rows, order));
                }
            }
        }
    }
    runs.finish();
}

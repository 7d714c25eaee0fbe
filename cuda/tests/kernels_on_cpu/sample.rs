//! `sample` (`--cuda-experimental device-sampling`, not yet run on a GPU) draws what the CPU
//! reference draws (`dlp_engine::cpu::sample`, the host sampler's own function), bit for bit.

use super::emu::{self, arg, dev, module, Order};
use dlp_engine::cpu::sample::{push_args, sample};

/// Row `r` of `vocab` logits: a bell of small integers' sums with a few tokens far above it
/// (as language models give), with the edges at some rows: ties at the top, +inf beside
/// f32::MAX, a NaN (refused), all -inf (refused), a max of 0 with -0.0 beside it, most tokens
/// -inf, values so spread that most fall below the e^-86 floor.
fn row(r: usize, vocab: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..vocab)
        .map(|i| ((i * 7919 + r * 104_729) % 1009) as f32 / 200.0 - 2.5)
        .collect();
    let at = |k: usize| (k * 31 + r * 17) % vocab;
    for k in 0..3.min(vocab) {
        v[at(k)] = 6.0 + k as f32;
    }
    match r % 8 {
        1 => [3, 4].iter().for_each(|&k| v[at(k)] = 9.0),
        2 => {
            v[at(5)] = f32::INFINITY;
            v[at(6)] = f32::MAX;
        }
        3 => v[at(7)] = f32::NAN,
        4 => v.fill(f32::NEG_INFINITY),
        5 => {
            v.iter_mut().for_each(|x| *x = -x.abs() - 1.0);
            v[at(8)] = 0.0;
            v[at(9)] = -0.0;
        }
        6 => v.iter_mut().step_by(3).for_each(|x| *x = f32::NEG_INFINITY),
        7 => v.iter_mut().for_each(|x| *x *= 40.0),
        _ => {}
    }
    v
}

/// Rows of every kind at widths that end blocks of 256 and groups of 8 early, temperatures
/// from greedy (0) to hot, draws at the ends of [0, 1) and between, under 1,024-thread
/// blocks as the backend launches and smaller ones, in both block orders.
#[test]
fn sample_draws_as_the_cpu() {
    let mut m = module("sample", &[], Order::FORWARD).unwrap();
    let temperatures = [1.0f32, 0.0, 0.3, 2.5, 1e-3, 0.7, 1.0, 1.3];
    // The largest draw below 1 times a total may round to the total: the walk then falls
    // back to the last token with mass.
    let top = 1.0 - f64::EPSILON / 2.0;
    let draws = [0.5f64, 0.0, top, 0.123_456_789, 0.75, 0.01, 0.99, 0.333];
    let widths = [
        (16usize, 37usize),
        (16, 1001),
        (8, 4100),
        (4, 50_003),
        (3, 128_256),
    ];
    for (rows, vocab) in widths {
        let logits: Vec<f32> = (0..rows).flat_map(|r| row(r, vocab)).collect();
        let mut args = Vec::new();
        for r in 0..rows {
            // The second eight rows shift the temperatures (ties drawn, not only picked),
            // their refused rows (11, 12) greedy.
            let t = match r {
                11 | 12 => 0.0,
                _ => temperatures[(r + r / 8) % 8],
            };
            push_args(t, draws[(r / 8 + r) % 8], &mut args);
        }
        let mut want = vec![0.0; rows];
        sample(&logits, rows, vocab, &args, &mut want).unwrap();
        if rows >= 8 {
            // Refused rows (3 and 4) and draws past the best token both occur.
            assert!(want.contains(&-1.0) && want.iter().filter(|&&w| w > 0.0).count() > rows / 2);
        }
        let shared = vocab.div_ceil(256) as u32 * 8 * 8;
        for block in [1024u32, 96, 32] {
            for (order_name, order) in emu::ORDERS {
                m.order = order;
                let (mut l, mut a) = (logits.clone(), args.clone());
                let mut out = vec![f32::NAN; rows];
                let (pl, pa, po, v) = (dev(&mut l), dev(&mut a), dev(&mut out), vocab as i32);
                m.launch(
                    "sample",
                    (rows as u32, 1, 1),
                    block,
                    shared,
                    &[arg(&pl), arg(&v), arg(&pa), arg(&po)],
                )
                .unwrap();
                assert_eq!(
                    out, want,
                    "{rows} rows of {vocab}, block {block}, {order_name}"
                );
            }
        }
    }
}

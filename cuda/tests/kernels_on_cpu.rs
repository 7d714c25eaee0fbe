//! The CUDA kernels run on the CPU (cuda_emu.h: each CUDA thread a coroutine, blocks a few at
//! a time), so that kernels no GPU has run yet are checked against the kernels that passed on
//! one, on the same inputs. Needs only a host C++ compiler (`c++`, or `CXX`).

#[path = "kernels_on_cpu/attention.rs"]
mod attention;
#[path = "kernels_on_cpu/chain.rs"]
mod chain;
#[path = "kernels_on_cpu/common.rs"]
mod common;
#[path = "kernels_on_cpu/emu.rs"]
mod emu;
#[path = "kernels_on_cpu/emu_source.rs"]
mod emu_source;
#[path = "kernels_on_cpu/folds.rs"]
mod folds;
#[path = "kernels_on_cpu/group.rs"]
mod group;
#[path = "kernels_on_cpu/lora_data.rs"]
mod lora_data;
#[path = "kernels_on_cpu/matvec.rs"]
mod matvec;
#[path = "kernels_on_cpu/prefetch.rs"]
mod prefetch;
#[path = "kernels_on_cpu/sample.rs"]
mod sample;
#[path = "kernels_on_cpu/tiled.rs"]
mod tiled;

use emu::{arg, dev, module, Order};

#[test]
fn every_module_builds() {
    for m in [
        "lora",
        "matmul",
        "attention",
        "rms_norm",
        "rope",
        "silu_mul",
        "add",
        "gelu_mul",
        "scale",
        "softcap",
        "clamp",
        "center",
        "argmax",
        "sample",
    ] {
        module(m, &[], Order::FORWARD).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn add_matches() {
    let m = module("add", &[], Order::FORWARD).unwrap();
    let mut a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let mut b: Vec<f32> = (0..1000).map(|i| 2.0 * i as f32).collect();
    let (pa, pb, n) = (dev(&mut a), dev(&mut b), 1000i32);
    m.launch("add", (2, 1, 1), 256, 0, &[arg(&pa), arg(&pb), arg(&n)])
        .unwrap();
    assert!(a.iter().enumerate().all(|(i, v)| *v == 3.0 * i as f32));
}

/// `gelu_mul` (Gemma's GeGLU; not yet run on a GPU) computes what the CPU reference computes,
/// within a few ulps (the device `expf` against the CPU's vector `exp`) above 1e-3 in size, over both tails and a
/// NaN; `scale` multiplies exactly. Lengths past one launch's threads (grid-stride loop).
#[test]
fn gelu_mul_and_scale_match_the_cpu() {
    let n = 5000usize;
    let gate: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 40.0 - 20.0)
        .chain([f32::NAN, 0.0, -0.0, 1e30, -1e30])
        .collect();
    let n = gate.len();
    let up: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32 / 7.0).collect();
    let mut want = vec![0.0f32; n];
    let cpu = dlp_engine::cpu::CpuBackend::new();
    dlp_engine::Backend::gelu_mul(&cpu, &gate, &up, n, &mut want).unwrap();
    let m = module("gelu_mul", &[], Order::FORWARD).unwrap();
    let (mut g, mut u, mut out) = (gate.clone(), up.clone(), vec![f32::NAN; n]);
    let (pg, pu, po, nn) = (dev(&mut g), dev(&mut u), dev(&mut out), n as i32);
    m.launch(
        "gelu_mul",
        (3, 1, 1),
        256,
        0,
        &[arg(&pg), arg(&pu), arg(&nn), arg(&po)],
    )
    .unwrap();
    for (i, (o, w)) in out.iter().zip(&want).enumerate() {
        // Where the value is tiny (the far negative tail, exp of a large z) the two roundings
        // of z differ by ulps of z, and so the values by more: bounded there absolutely.
        let close = (o - w).abs() <= 4e-6 * w.abs().max(1e-3) || (o.is_nan() && w.is_nan());
        assert!(
            close,
            "gelu_mul({}) * {}: kernel {o}, CPU {w}",
            gate[i], up[i]
        );
    }
    let m = module("scale", &[], Order::FORWARD).unwrap();
    let mut x = up.clone();
    let (px, s) = (dev(&mut x), 33.941_124f32);
    m.launch("scale", (2, 1, 1), 256, 0, &[arg(&px), arg(&s), arg(&nn)])
        .unwrap();
    assert!(x.iter().zip(&up).all(|(x, u)| *x == u * s));
}

/// `gelu` (StarCoder2's and Phi-2's ungated activation), `gelu_erf` (GPT-NeoX's) and `relu_sq`
/// (Arcee's and Nemotron's; none yet run on a GPU) compute what the CPU reference computes,
/// within `gelu_mul`'s bound (`relu_sq` to the bit), past one launch's threads.
#[test]
fn ungated_activations_match_the_cpu() {
    let x: Vec<f32> = (0..5000)
        .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 40.0 - 20.0)
        .chain([f32::NAN, 0.0, -0.0, 1e30, -1e30])
        .collect();
    let n = x.len();
    let cpu = dlp_engine::cpu::CpuBackend::new();
    let m = module("gelu_mul", &[], Order::FORWARD).unwrap();
    for op in ["gelu", "gelu_erf", "relu_sq"] {
        let mut want = vec![0.0f32; n];
        match op {
            "gelu" => dlp_engine::Backend::gelu(&cpu, &x, n, &mut want),
            "gelu_erf" => dlp_engine::Backend::gelu_erf(&cpu, &x, n, &mut want),
            _ => dlp_engine::Backend::relu_sq(&cpu, &x, n, &mut want),
        }
        .unwrap();
        let (mut g, mut out) = (x.clone(), vec![f32::NAN; n]);
        let (pg, po, nn) = (dev(&mut g), dev(&mut out), n as i32);
        m.launch(op, (3, 1, 1), 256, 0, &[arg(&pg), arg(&nn), arg(&po)])
            .unwrap();
        for (i, (o, w)) in out.iter().zip(&want).enumerate() {
            // relu_sq to the bit (one rounding of one product, infinities included).
            let bound = if op == "relu_sq" { 0.0 } else { 4e-6 };
            let close =
                o == w || (o - w).abs() <= bound * w.abs().max(1e-3) || (o.is_nan() && w.is_nan());
            assert!(close, "{op}({}): kernel {o}, CPU {w}", x[i]);
        }
    }
}

/// `xielu` (Apertus's activation; not yet run on a GPU) computes what the CPU reference
/// computes, within a few ulps (the device `expm1f` against Rust's), over both branches, the
/// eps clamp, values near 0 where expm1 must keep its digits, the tails and a NaN.
#[test]
fn xielu_matches_the_cpu() {
    let x: Vec<f32> = (0..5000)
        .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 40.0 - 20.0)
        .chain((0..200).map(|i| -(i as f32) * 1e-8))
        .chain([f32::NAN, 0.0, -0.0, 1e30, -1e30])
        .collect();
    let n = x.len();
    let cpu = dlp_engine::cpu::CpuBackend::new();
    let m = module("gelu_mul", &[], Order::FORWARD).unwrap();
    for eps in [-1e-6f32, -0.25] {
        let p = dlp_engine::Xielu {
            alpha_p: 0.9,
            alpha_n: 1.3,
            beta: 0.4,
            eps,
        };
        let mut want = vec![0.0f32; n];
        dlp_engine::Backend::xielu(&cpu, &x, n, p, &mut want).unwrap();
        let (mut g, mut out) = (x.clone(), vec![f32::NAN; n]);
        let (pg, po, nn) = (dev(&mut g), dev(&mut out), n as i32);
        let consts = [p.alpha_p, p.alpha_n, p.beta, p.eps];
        let mut args = vec![arg(&pg), arg(&nn)];
        args.extend(consts.iter().map(arg));
        args.push(arg(&po));
        m.launch("xielu", (3, 1, 1), 256, 0, &args).unwrap();
        for (i, (o, w)) in out.iter().zip(&want).enumerate() {
            let close =
                o == w || (o - w).abs() <= 4e-6 * w.abs().max(1e-12) || (o.is_nan() && w.is_nan());
            assert!(close, "xielu({}, eps {eps}): kernel {o}, CPU {w}", x[i]);
        }
    }
}

/// `x` through the in-place kernel `op(x, s, n)` of module `op` (`softcap`, `clamp`), three
/// blocks of 256 threads: fewer than the values, so each thread strides.
fn in_place_kernel(op: &str, x: &[f32], s: f32) -> Vec<f32> {
    let m = module(op, &[], Order::FORWARD).unwrap();
    let mut got = x.to_vec();
    let (px, n) = (dev(&mut got), x.len() as i32);
    m.launch(op, (3, 1, 1), 256, 0, &[arg(&px), arg(&s), arg(&n)])
        .unwrap();
    got
}

/// `softcap` (Gemma 2's final logit cap; not yet run on a GPU) computes what the CPU reference
/// computes within a few ulps (the device `tanhf` against Rust's), over the slope, both flat
/// tails, huge values and a NaN, past one launch's threads.
#[test]
fn softcap_matches_the_cpu() {
    let cap = 3.0f32;
    let x: Vec<f32> = (0..5000)
        .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 40.0 - 20.0)
        .chain([f32::NAN, 0.0, -0.0, 1e30, -1e30, f32::INFINITY])
        .collect();
    let n = x.len();
    let mut want = x.clone();
    let cpu = dlp_engine::cpu::CpuBackend::new();
    dlp_engine::Backend::softcap(&cpu, &mut want, cap, n).unwrap();
    let got = in_place_kernel("softcap", &x, cap);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let close = (g - w).abs() <= 4e-7 * w.abs().max(1e-3) || (g.is_nan() && w.is_nan());
        assert!(close, "softcap({}): kernel {g}, CPU {w}", x[i]);
    }
}

/// `clamp` (OLMo's `clip_qkv`; not yet run on a GPU) gives exactly what the CPU reference gives:
/// values inside, at and past both limits, infinities, signed zeros and a NaN (kept), past one
/// launch's threads.
#[test]
fn clamp_matches_the_cpu() {
    let limit = 2.5f32;
    let x: Vec<f32> = (0..5000)
        .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 10.0 - 5.0)
        .chain([
            f32::NAN,
            2.5,
            -2.5,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ])
        .collect();
    let n = x.len();
    let mut want = x.clone();
    let cpu = dlp_engine::cpu::CpuBackend::new();
    dlp_engine::Backend::clamp(&cpu, &mut want, limit, n).unwrap();
    assert!(want[n - 7].is_nan() && want[n - 2] == limit && want[n - 1] == -limit);
    let got = in_place_kernel("clamp", &x, limit);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "clamp({}): kernel {g}, CPU {w}", x[i]);
    }
}

/// `center` (LayerNorm's centering, Cohere's; not yet run on a GPU) gives what the CPU
/// reference gives (both sum and subtract in double): rows narrower than a warp, wider than a
/// block's threads, far from zero on average, and in the reverse block order; rows apart.
#[test]
fn center_matches_the_cpu() {
    for (rows, dim, threads) in [(3usize, 19usize, 256u32), (2, 1000, 256), (4, 4100, 1024)] {
        let x: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 8.0 - 4.0 + (i / dim) as f32 * 300.0)
            .collect();
        let mut want = x.clone();
        let cpu = dlp_engine::cpu::CpuBackend::new();
        dlp_engine::Backend::center(&cpu, &mut want, rows, dim).unwrap();
        for order in [Order::FORWARD, Order::REVERSE] {
            let m = module("center", &[], order).unwrap();
            let mut got = x.clone();
            let (px, d) = (dev(&mut got), dim as i32);
            m.launch(
                "center",
                (rows as u32, 1, 1),
                threads,
                0,
                &[arg(&px), arg(&d)],
            )
            .unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "center [{rows}x{dim}] {i}: kernel {g}, CPU {w}"
                );
            }
        }
    }
}

/// `argmax` (`--cuda-experimental device-argmax`, not yet run on a GPU) picks what the CPU
/// reference, and so the greedy sampler, picks: rows with ties, +inf beside f32::MAX, a NaN,
/// all -inf, -0.0 beside +0.0, many equal values, subnormals and a NaN with its sign bit, at odd widths (one value a load) and
/// multiples of 4 (16-byte loads), under 1,024-thread blocks as the backend launches and
/// smaller ones (fewer warps in the last reduction), in both block orders.
#[test]
fn argmax_picks_as_the_cpu() {
    let mut m = module("argmax", &[], Order::FORWARD).unwrap();
    let ninf = f32::NEG_INFINITY;
    for (rows, vocab) in [(10usize, 37usize), (10, 1001), (10, 4100), (2, 128_256)] {
        let mut logits = Vec::with_capacity(rows * vocab);
        for r in 0..rows {
            let mut row: Vec<f32> = (0..vocab)
                .map(|i| ((i * 7919 + r * 104_729) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let at = |k: usize| (k * 7 + r * 13) % vocab;
            match r % 10 {
                1 => [3, 1, 2].iter().for_each(|&k| row[at(k)] = 2.0),
                2 => {
                    row[at(5)] = f32::INFINITY;
                    row[at(2)] = f32::MAX;
                }
                3 => row[at(4)] = f32::NAN,
                4 => row.fill(ninf),
                5 => {
                    row.fill(ninf);
                    row[at(3)] = 0.0;
                    row[at(1)] = -0.0;
                }
                6 => row.iter_mut().for_each(|x| *x = (*x * 2.0).round()),
                7 => {
                    row.fill(ninf);
                    row[vocab - 1] = -3.0e38;
                }
                8 => row.iter_mut().for_each(|x| *x *= 1e-39),
                9 => row[at(6)] = -f32::NAN,
                _ => {}
            }
            logits.extend(row);
        }
        let mut want = vec![0.0; rows];
        dlp_engine::cpu::argmax::argmax(&logits, rows, vocab, &mut want).unwrap();
        // Refused rows and picks past index 0 both occur (the edges are rows 3, 4 and 7).
        assert!(rows < 10 || want.contains(&-1.0) && want.iter().any(|&w| w > 0.0));
        for block in [1024u32, 96, 32] {
            for (order_name, order) in emu::ORDERS {
                m.order = order;
                let mut out = vec![f32::NAN; rows];
                let (pl, po, v) = (dev(&mut logits), dev(&mut out), vocab as i32);
                m.launch(
                    "argmax",
                    (rows as u32, 1, 1),
                    block,
                    0,
                    &[arg(&pl), arg(&v), arg(&po)],
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

/// The emulator catches what it exists to catch: a missing barrier, a barrier half a warp
/// waits at while the other half is in a warp collective, lanes at different collectives, a
/// partial mask, a shuffle from an exited lane, a write past a block's dynamic or static
/// shared memory, a block spinning on one not resident, a dependent launch reading before
/// pdl_wait; warp shuffles and ballots give CUDA's values.
#[test]
fn emulator_catches_faults() {
    faults(&[]);
    // The portable thread switch (ucontext), which hosts other than x86-64 ELF use.
    faults(&["-DEMU_FORCE_UCONTEXT"]);
}

fn faults(defines: &[&str]) {
    let mut m = module("selftest", defines, Order::FORWARD).unwrap();
    let mut x: Vec<f32> = (0..512).map(|i| (i % 7) as f32).collect();
    let want: Vec<f32> = x.chunks(256).map(|c| c.iter().sum()).collect();
    for good in [1i32, 0] {
        let mut out = vec![0f32; 2];
        let (px, po) = (dev(&mut x), dev(&mut out));
        m.launch(
            "block_sum",
            (2, 1, 1),
            256,
            0,
            &[arg(&px), arg(&good), arg(&po)],
        )
        .unwrap();
        assert_eq!(out == want, good == 1, "block_sum good={good}: {out:?}");
    }

    let mut x: Vec<f32> = (0..64)
        .map(|i| if i % 3 == 0 { 1.0 } else { -0.5 })
        .collect();
    let (mut sum, mut ballot) = (vec![0f32; 2], vec![0u32; 2]);
    let (px, ps, pb) = (dev(&mut x), dev(&mut sum), dev(&mut ballot));
    m.launch(
        "warp_ops",
        (1, 1, 1),
        64,
        0,
        &[arg(&px), arg(&ps), arg(&pb)],
    )
    .unwrap();
    for w in 0..2 {
        let lanes = &x[w * 32..w * 32 + 32];
        assert_eq!(sum[w], lanes.iter().sum::<f32>());
        let b = lanes
            .iter()
            .enumerate()
            .fold(0u32, |b, (l, v)| b | ((*v > 0.0) as u32) << l);
        assert_eq!(ballot[w], b);
    }

    for (order, ok) in [(Order::FORWARD, false), (Order::REVERSE, true)] {
        m.order = order;
        let mut flags = vec![0u32; 4];
        let pf = dev(&mut flags);
        let r = m.launch("waits_on_next", (4, 1, 1), 32, 0, &[arg(&pf)]);
        assert_eq!(r.is_ok(), ok, "{r:?}");
        assert!(ok || r.unwrap_err().contains("no progress"));
    }
    let e = m.launch("block_sum", (1, 1, 1), 32, 0, &[arg(&0i32)]);
    assert!(e.unwrap_err().contains("takes 3 parameters, got 1"));

    let e = m.launch("shared_overrun", (1, 1, 1), 32, 64, &[arg(&16i32)]);
    assert!(e
        .unwrap_err()
        .contains("wrote past its 64 bytes of dynamic shared memory"));
    let mut out = vec![0f32; 32];
    let po = dev(&mut out);
    for (kernel, error) in [
        ("divergent_barrier", "deadlock"),
        ("mixed_collectives", "different warp collectives"),
        ("partial_mask", "partial mask"),
        ("shuffle_from_exited", "a lane that has exited"),
        ("static_overrun", "wrote past __shared__ `s` (16 bytes)"),
    ] {
        let e = m.launch(kernel, (1, 1, 1), 32, 0, &[arg(&po)]);
        assert!(e.as_ref().unwrap_err().contains(error), "{kernel}: {e:?}");
    }

    // A dependent launch overlaps the one before it (in reverse order, its blocks run first):
    // without pdl_wait it reads x unwritten (NaN); with it, what the writer wrote.
    m.order = Order::REVERSE;
    for wait in [0i32, 1] {
        let (mut x, mut out) = (vec![f32::NAN; 64], vec![0f32; 64]);
        let (px, po) = (dev(&mut x), dev(&mut out));
        let launch = |name: &str, args: Vec<emu::Arg>, dependent| emu::Launch {
            name: name.into(),
            grid: (2, 1, 1),
            block: 32,
            shared: 0,
            args,
            dependent,
        };
        m.stream(&[
            launch("pdl_writer", vec![arg(&px)], false),
            launch("pdl_reader", vec![arg(&px), arg(&wait), arg(&po)], true),
        ])
        .unwrap();
        let copied = out.iter().enumerate().all(|(i, v)| *v == i as f32);
        assert_eq!(copied, wait == 1, "pdl_reader wait={wait}: {out:?}");
    }
}

/// rms_norm (passed on an H200 with one weight row) against its formula, with one weight row
/// and with one per head (rows = 2 tokens x 3 heads): the emulator runs real kernels.
#[test]
fn rms_norm_matches_cpu() {
    let m = module("rms_norm", &[], Order::FORWARD).unwrap();
    let (rows, dim, eps) = (6usize, 700usize, 1e-5f32);
    for w_rows in [1usize, 3] {
        let mut x: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let mut w: Vec<f32> = (0..w_rows * dim)
            .map(|i| 0.5 + (i % 13) as f32 / 10.0 + (i / dim) as f32)
            .collect();
        let mut out = vec![f32::NAN; rows * dim];
        let mut want = vec![0f32; rows * dim];
        for r in 0..rows {
            let s = r * dim..(r + 1) * dim;
            let ss: f64 = x[s.clone()].iter().map(|v| (*v as f64) * (*v as f64)).sum();
            let inv = (1.0 / (ss / dim as f64 + eps as f64).sqrt()) as f32;
            for i in s {
                want[i] = x[i] * inv * w[r % w_rows * dim + i - r * dim];
            }
        }
        let (px, pw, po) = (dev(&mut x), dev(&mut w), dev(&mut out));
        let (d, wr) = (dim as i32, w_rows as i32);
        m.launch(
            "rms_norm",
            (rows as u32, 1, 1),
            256,
            0,
            &[arg(&px), arg(&pw), arg(&d), arg(&wr), arg(&eps), arg(&po)],
        )
        .unwrap();
        let worst = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-6,
            "rms_norm (w_rows {w_rows}) differs by {worst}"
        );
    }
}

//! Micro-benchmark of the fused LoRA pair (`lora_shrink` + `lora_expand`) on CUDA at a serving
//! shape: hidden 4096, 32 adapters of rank 16 loaded, K 3, 64 tokens in 8 segments; on the
//! segment kernels, the SGMV ones (`--cuda-experimental sgmv`) and the tiled ones
//! (`--cuda-experimental tiled-lora`). Each result is first
//! checked against the CPU reference; the times are then set against the device-to-device copy
//! bandwidth measured in the same run, and each half is timed alone too (where the pair's
//! time goes). `cargo run --release -p dlp-cuda --example lora_bench`.
//!
//! Bytes counted are the fewest the pair must move: the A and B rows of the adapters the step
//! uses, x, u written and read, y read and written. Eight LoRA stacks (as eight layers would)
//! are cycled so that the adapters are not all served from L2.

use cudarc::driver::sys::CUevent_flags;
use dlp_cuda::{CudaBackend, CudaOptions, Experimental};
use dlp_engine::backend::{Backend, LoraStackHost, StepPlan, NO_ADAPTER};
use dlp_engine::cpu::CpuBackend;
use rand::{Rng, SeedableRng};

const HIDDEN: usize = 4096;
const ADAPTERS: usize = 32;
const RANK: usize = 16;
const K: usize = 3;
const TOKENS: usize = 64;
const SEGMENTS: usize = 8;
const STACKS: usize = 8;

fn main() {
    if let Err(e) = run() {
        eprintln!("lora_bench: {e}");
        std::process::exit(1);
    }
}

fn rand_vec(r: &mut impl Rng, n: usize, s: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(-s..s)).collect()
}

fn stack(r: &mut impl Rng) -> LoraStackHost {
    LoraStackHost {
        in_dim: HIDDEN,
        out_dim: HIDDEN,
        max_rank: RANK,
        a: rand_vec(r, ADAPTERS * RANK * HIDDEN, 0.02),
        bt: rand_vec(r, ADAPTERS * RANK * HIDDEN, 0.02),
        slot_offset: (0..ADAPTERS as u32).map(|i| i * RANK as u32).collect(),
        slot_rank: vec![RANK as u32; ADAPTERS],
        slot_scale: vec![2.0; ADAPTERS],
    }
}

fn plan(r: &mut impl Rng) -> StepPlan {
    let mut mix_slots = Vec::new();
    for _ in 0..SEGMENTS {
        let mut chosen: Vec<u32> = Vec::new();
        while chosen.len() < K {
            let s = r.random_range(0..ADAPTERS as u32);
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        mix_slots.extend(chosen);
    }
    StepPlan {
        token_ids: vec![0; TOKENS],
        positions: (0..TOKENS as u32).collect(),
        kv_slots: vec![0; TOKENS],
        segment_of_token: (0..TOKENS)
            .map(|t| (t * SEGMENTS / TOKENS) as u32)
            .collect(),
        mix_k: K,
        mix_weights: (0..SEGMENTS * K)
            .map(|_| r.random_range(0.1..1.0))
            .collect(),
        mix_slots,
        logit_rows: vec![],
        pick_args: Vec::new(),
    }
}

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        num += ((x - y) as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    num / den.max(1e-30)
}

/// Median of `reps` timings (ms) of `iters` calls of `f` each, between two events.
fn time_ms(
    b: &CudaBackend,
    reps: usize,
    iters: usize,
    mut f: impl FnMut(usize),
) -> Result<f64, String> {
    let ctx = b.context();
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| e.to_string())
    };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (s, e) = (ev()?, ev()?);
        s.record(b.stream()).map_err(|e| e.to_string())?;
        for i in 0..iters {
            f(i);
        }
        e.record(b.stream()).map_err(|e| e.to_string())?;
        e.synchronize().map_err(|e| e.to_string())?;
        times.push(s.elapsed_ms(&e).map_err(|e| e.to_string())? as f64 / iters as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[reps / 2])
}

/// Median times (ms) of one pair and of its two halves alone, cycling the stacks.
struct Times {
    pair: f64,
    shrink: f64,
    expand: f64,
}

/// The pair on `b`: its NMSE against the CPU result `cy` (stack 0), then its [`Times`]: the
/// halves alone say which one the pair's time goes to (the next GPU run's first question).
fn measure(
    b: &CudaBackend,
    hosts: &[LoraStackHost],
    p: &StepPlan,
    x_h: &[f32],
    y_h: &[f32],
    cy: &[f32],
) -> Result<(f64, Times), String> {
    let e = |e: dlp_engine::Error| e.to_string();
    let step = b.upload_step(p, None).map_err(e)?;
    let loras = hosts
        .iter()
        .map(|h| b.upload_lora(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let x = b.upload(x_h).map_err(e)?;
    let mut y = b.upload(y_h).map_err(e)?;
    let mut u = b.upload(&vec![f32::NAN; TOKENS * K * RANK]).map_err(e)?;
    b.lora_shrink(&x, &loras[0], &step, TOKENS, &mut u)
        .map_err(e)?;
    b.lora_expand(&u, &loras[0], &step, TOKENS, &mut y)
        .map_err(e)?;
    let err = nmse(&b.download(&y, TOKENS * HIDDEN).map_err(e)?, cy);

    // Timing: warm up, then median of 21 repetitions of 50 calls, cycling the stacks.
    let mut times = [0.0; 3];
    for (t, halves) in times
        .iter_mut()
        .zip([[true, true], [true, false], [false, true]])
    {
        let mut call = |i: usize| {
            let l = &loras[i % STACKS];
            if halves[0] {
                b.lora_shrink(&x, l, &step, TOKENS, &mut u)
                    .expect("lora_shrink");
            }
            if halves[1] {
                b.lora_expand(&u, l, &step, TOKENS, &mut y)
                    .expect("lora_expand");
            }
        };
        for i in 0..20 {
            call(i);
        }
        *t = time_ms(b, 21, 50, &mut call)?;
    }
    let [pair, shrink, expand] = times;
    Ok((
        err,
        Times {
            pair,
            shrink,
            expand,
        },
    ))
}

fn run() -> Result<(), String> {
    let with = |experimental| {
        let opts = CudaOptions {
            experimental,
            ..Default::default()
        };
        CudaBackend::with_options(0, opts).map_err(|e| e.to_string())
    };
    let b = with(Experimental::NONE)?;
    // The same pair on TF32 tensor cores, tokens in tiles by adapter (`--cuda-experimental sgmv`).
    let b_sgmv = with(Experimental {
        sgmv: true,
        ..Default::default()
    })?;
    // Tiles of 8 tokens on CUDA cores, each adapter's rows read once per tile
    // (`--cuda-experimental tiled-lora`).
    let b_tiled = with(Experimental {
        tiled_lora: true,
        ..Default::default()
    })?;
    let mut r = rand::rngs::StdRng::seed_from_u64(7);
    let hosts: Vec<LoraStackHost> = (0..STACKS).map(|_| stack(&mut r)).collect();
    let p = plan(&mut r);
    let x_h = rand_vec(&mut r, TOKENS * HIDDEN, 1.0);
    let y_h = rand_vec(&mut r, TOKENS * HIDDEN, 1.0);
    let e = |e: dlp_engine::Error| e.to_string();

    // Correctness first: one pass against the CPU reference on stack 0.
    let cpu = CpuBackend::new();
    let (cs, cl) = (
        cpu.upload_step(&p, None).map_err(e)?,
        cpu.upload_lora(&hosts[0]).map_err(e)?,
    );
    let mut cu = vec![0.0; TOKENS * K * RANK];
    let mut cy = y_h.clone();
    cpu.lora_shrink(&x_h, &cl, &cs, TOKENS, &mut cu)
        .map_err(e)?;
    cpu.lora_expand(&cu, &cl, &cs, TOKENS, &mut cy).map_err(e)?;
    let (err, ms) = measure(&b, &hosts, &p, &x_h, &y_h, &cy)?;
    let (err_sgmv, ms_sgmv) = measure(&b_sgmv, &hosts, &p, &x_h, &y_h, &cy)?;
    let (err_tiled, ms_tiled) = measure(&b_tiled, &hosts, &p, &x_h, &y_h, &cy)?;
    let used: std::collections::BTreeSet<u32> = p
        .mix_slots
        .iter()
        .copied()
        .filter(|&s| s != NO_ADAPTER)
        .collect();
    let f = 4.0f64;
    let bytes = used.len() as f64 * RANK as f64 * HIDDEN as f64 * 2.0 * f
        + (TOKENS * HIDDEN) as f64 * f * 3.0
        + (TOKENS * K * RANK) as f64 * f * 2.0;
    let gbs = |ms: f64| bytes / (ms * 1e-3) / 1e9;

    // Device copy ceiling: the backend's own probe (what `dlp-run bench` reads decode against).
    let copy_gbs = b.copy_bandwidth_gbs()?;
    let copy_ms = 2.0 * dlp_cuda::probe::COPY_PROBE_BYTES as f64 / (copy_gbs * 1e9) * 1e3;

    println!("device            {} ({})", b.device_name(), b.arch());
    println!("shape             hidden {HIDDEN}, {ADAPTERS} adapters r {RANK}, K {K}, {TOKENS} tokens / {SEGMENTS} segments, {} adapters used", used.len());
    println!(
        "| what                       | time (us) | GB/s    | % of copy | shrink alone (us) | expand alone (us) |"
    );
    println!(
        "|----------------------------|-----------|---------|-----------|-------------------|-------------------|"
    );
    println!(
        "| d2d copy 1 GiB             | {:>9.1} | {:>7.0} | {:>8.1}% |                   |                   |",
        copy_ms * 1e3,
        copy_gbs,
        100.0
    );
    for (what, t) in [
        ("lora shrink+expand", ms),
        ("lora shrink+expand (sgmv)", ms_sgmv),
        ("lora shrink+expand (tiled)", ms_tiled),
    ] {
        println!(
            "| {what:<26} | {:>9.2} | {:>7.0} | {:>8.1}% | {:>17.2} | {:>17.2} |",
            t.pair * 1e3,
            gbs(t.pair),
            100.0 * gbs(t.pair) / copy_gbs,
            t.shrink * 1e3,
            t.expand * 1e3
        );
    }
    // f32 kernels agree to rounding; TF32 rounds the products' inputs (about 1e-7 NMSE on
    // random inputs, `sgmv_cases_pass_with_tf32_rounding_on_the_cpu`).
    let checks = [
        ("segment", err, 1e-10),
        ("sgmv (TF32)", err_sgmv, 1e-5),
        ("tiled", err_tiled, 1e-10),
    ];
    for (what, err, tol) in checks {
        let ok = err < tol;
        println!(
            "lora vs cpu nmse  {what}: {err:.3e} ({})",
            if ok { "ok" } else { "FAIL" }
        );
    }
    if let Some((what, err, _)) = checks.iter().find(|(_, err, tol)| err >= tol) {
        return Err(format!(
            "{what} LoRA result differs from the CPU reference (nmse {err:.3e})"
        ));
    }
    Ok(())
}

//! The fused LoRA pair against a naive per-adapter loop: mixed ranks, a slot that does not
//! target the module, several segments with different mixtures (and unused entries); one
//! token (decode, split over threads) and several, widths below and above the kernels'
//! 64-column register chunk, with A/B in f32 and in f16 (`--lora-f16`, against the same loop
//! on the rounded values).

use dlp_engine::cpu::{CpuBackend, CpuOptions};
use dlp_engine::{Backend, LoraStackHost, StepPlan, NO_ADAPTER};
use rand::{Rng, SeedableRng};

struct Adapter {
    rank: usize,
    scale: f32,
    a: Vec<f32>, // [r, in]
    b: Vec<f32>, // [out, r]
}

fn random(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn stack(ads: &[Adapter], n_in: usize, n_out: usize) -> LoraStackHost {
    let mut s = LoraStackHost {
        in_dim: n_in,
        out_dim: n_out,
        ..Default::default()
    };
    for ad in ads {
        s.slot_offset.push(s.slot_rank.iter().sum());
        s.slot_rank.push(ad.rank as u32);
        s.slot_scale.push(ad.scale);
        s.max_rank = s.max_rank.max(ad.rank);
        s.a.extend_from_slice(&ad.a);
        for j in 0..ad.rank {
            s.bt.extend((0..n_out).map(|o| ad.b[o * ad.rank + j]));
        }
    }
    s
}

#[test]
fn fused_pair_matches_naive_loop() {
    for f16 in [false, true] {
        for (n_in, n_out, t) in [
            (37, 23, 11),
            (70, 150, 1),
            (64, 200, 3),
            (40, 64, 1),
            (96, 130, 40),
        ] {
            fused_case(n_in, n_out, t, f16, false);
        }
    }
}

/// `--cpu-amx`: several tokens go through the AMX shrink and expand (bf16 inputs, A, B and
/// coefficients), held to an NMSE of the LoRA delta that bf16's rounding meets (measured
/// about 1e-5) and any layout or indexing error does not (about 1).
#[test]
fn amx_fused_pair_matches_naive_loop() {
    if !dlp_engine::cpu::amx_available() {
        return dlp_skip::skip(dlp_skip::kind::AMX, "this CPU or OS has no AMX-BF16", None);
    }
    for f16 in [false, true] {
        // At least `AMX_MIN_ROWS` tokens: fewer stay on the f32 kernels.
        for (n_in, n_out, t) in [(37, 23, 11), (64, 200, 9), (96, 130, 40), (576, 192, 33)] {
            fused_case(n_in, n_out, t, f16, true);
        }
    }
}

fn fused_case(n_in: usize, n_out: usize, t: usize, f16: bool, amx: bool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ranks = [3usize, 8, 0, 5, 1];
    let mut ads: Vec<Adapter> = ranks
        .iter()
        .map(|&r| Adapter {
            rank: r,
            scale: rng.random_range(0.5..4.0),
            a: random(&mut rng, r * n_in),
            b: random(&mut rng, n_out * r),
        })
        .collect();
    let st = stack(&ads, n_in, n_out);
    if f16 {
        // The reference loop runs on the values the f16 stack holds.
        let round = |v: &mut Vec<f32>| {
            v.iter_mut()
                .for_each(|x| *x = half::f16::from_f32(*x).to_f32())
        };
        for ad in &mut ads {
            round(&mut ad.a);
            round(&mut ad.b);
        }
    }
    // Three segments: a 3-adapter mixture, a single adapter plus an unused entry, and one that
    // names the slot with rank 0 (does not target this module) next to a real one.
    let k = 3;
    let mix: Vec<Vec<(u32, f32)>> = vec![
        vec![(0, 0.5), (1, 0.3), (3, 0.2)],
        vec![(4, 1.0), (NO_ADAPTER, 0.0)],
        vec![(2, 0.6), (1, 0.4)],
    ];
    let segment_of_token: Vec<u32> = (0..t)
        .map(|i| [0, 0, 1, 2, 2, 0, 1, 1, 2, 0, 2][i % 11])
        .collect();
    let mut plan = StepPlan {
        mix_k: k,
        segment_of_token,
        ..Default::default()
    };
    for m in &mix {
        for e in 0..k {
            let (s, w) = m.get(e).copied().unwrap_or((NO_ADAPTER, 0.0));
            plan.mix_slots.push(s);
            plan.mix_weights.push(w);
        }
    }
    plan.token_ids = vec![0; t];
    plan.positions = (0..t as u32).collect();
    plan.kv_slots = vec![0; t];
    let x = random(&mut rng, t * n_in);
    let y0 = random(&mut rng, t * n_out);

    let b = CpuBackend::with_options(CpuOptions {
        lora_f16: f16,
        amx,
        ..Default::default()
    });
    let lora = b.upload_lora(&st).unwrap();
    let step = b.upload_step(&plan, None).unwrap();
    let mut u = vec![f32::NAN; t * k * st.max_rank];
    let mut y = y0.clone();
    b.lora_shrink(&x, &lora, &step, t, &mut u).unwrap();
    b.lora_expand(&u, &lora, &step, t, &mut y).unwrap();

    let mut want = y0.clone();
    for tok in 0..t {
        for &(slot, w) in &mix[plan.segment_of_token[tok] as usize] {
            if slot == NO_ADAPTER {
                continue;
            }
            let ad = &ads[slot as usize];
            for o in 0..n_out {
                let mut d = 0f64;
                for j in 0..ad.rank {
                    let ax: f64 = (0..n_in)
                        .map(|i| ad.a[j * n_in + i] as f64 * x[tok * n_in + i] as f64)
                        .sum();
                    d += ad.b[o * ad.rank + j] as f64 * ax;
                }
                want[tok * n_out + o] += (w as f64 * ad.scale as f64 * d) as f32;
            }
        }
    }
    // NMSE of the LoRA delta (the part this op adds to `y0`).
    let err: f64 = y
        .iter()
        .zip(&want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / want
            .iter()
            .zip(&y0)
            .map(|(b, y0)| ((b - y0) as f64).powi(2))
            .sum::<f64>();
    let id = format!("in {n_in} out {n_out} tokens {t} f16 {f16} amx {amx}");
    assert!(y.iter().all(|v| v.is_finite()), "{id}: non-finite output");
    let bound = if amx { 2e-4 } else { 1e-8 };
    assert!(err < bound, "{id}: NMSE of the LoRA delta {err:e}");
    if amx {
        println!("{id}: NMSE of the LoRA delta {err:.2e}");
    }
}

#[test]
fn bad_slot_is_an_error_not_a_panic() {
    let b = CpuBackend::new();
    let st = LoraStackHost {
        in_dim: 2,
        out_dim: 2,
        max_rank: 1,
        a: vec![1.0; 2],
        bt: vec![1.0; 2],
        slot_offset: vec![0],
        slot_rank: vec![1],
        slot_scale: vec![1.0],
    };
    let plan = StepPlan {
        token_ids: vec![0],
        positions: vec![0],
        kv_slots: vec![0],
        segment_of_token: vec![0],
        mix_k: 1,
        mix_slots: vec![5],
        mix_weights: vec![1.0],
        logit_rows: vec![],
        pick_args: Vec::new(),
    };
    let mut u = vec![0.0; 1];
    let lora = b.upload_lora(&st).unwrap();
    let err = b
        .lora_shrink(&vec![1.0; 2], &lora, &plan, 1, &mut u)
        .unwrap_err();
    assert!(err.to_string().contains("slot 5"), "{err}");

    // A slot table that points past the stack's rows is refused at upload.
    let outside = LoraStackHost {
        slot_offset: vec![1],
        ..st.clone()
    };
    let err = b.upload_lora(&outside).unwrap_err();
    assert!(
        err.to_string().contains("slot 0 (offset 1, rank 1)"),
        "{err}"
    );
}

/// The CPU's fused decode `linears` (all shrinks in one pass, then every gemv block with its
/// LoRA columns) against `linears_each` (op by op), on three jobs sharing one input: f32 and
/// packed weights, a bias, LoRA on two of them, f32 and f16 LoRA storage.
#[test]
fn fused_decode_linears_match_op_by_op() {
    for f16 in [false, true] {
        linears_case(1, f16, false, 3);
    }
}

/// `--cpu-amx`: `linears` of several tokens (inputs packed once per call, each LoRA expand
/// in its base matmul's tile accumulators; up to 32 rows the weights packed as used, more
/// rows in a second pass) against the same backend op by op.
#[test]
fn amx_batch_linears_match_op_by_op() {
    if !dlp_engine::cpu::amx_available() {
        return dlp_skip::skip(dlp_skip::kind::AMX, "this CPU or OS has no AMX-BF16", None);
    }
    // 2 tokens: below `AMX_MIN_ROWS`, the f32 kernels on both sides.
    for tokens in [2, 9, 17, 32, 33, 70] {
        for f16 in [false, true] {
            linears_case(tokens, f16, true, 3);
        }
    }
    // A stack of 33 adapters of rank 8 (264 rows): too large for the AMX LoRA, so the f32
    // LoRA kernels run beside the AMX matmuls.
    linears_case(17, false, true, 33);
}

/// Four jobs reading one input of `tokens` rows: f32 weights with bias and LoRA, Q8_0
/// without, Q4_1 with LoRA, F16 with LoRA (`adapters` per stack: ranks 4, 8, 2, then 8);
/// `Backend::linears` against `linears_each`.
fn linears_case(tokens: usize, f16: bool, amx: bool, adapters: usize) {
    use dlp_engine::backend::{linears_each, LinearJob};
    use dlp_engine::tensor::{HostTensor, Packed, PackedKind};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let n_in = 96;
    let b = CpuBackend::with_options(CpuOptions {
        lora_f16: f16,
        amx,
        ..Default::default()
    });
    let outs = [150usize, 64, 70, 33];
    let blocks = |rng: &mut rand::rngs::StdRng, n: usize, q4: bool| -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n * n_in / 32 {
            out.extend(half::f16::from_f32(0.01).to_le_bytes());
            if q4 {
                out.extend(half::f16::from_f32(-0.05).to_le_bytes());
            }
            out.extend((0..if q4 { 16 } else { 32 }).map(|_| rng.random_range(0u8..=255)));
        }
        out
    };
    let packed = |kind: PackedKind, n: usize, bytes: Vec<u8>| {
        b.upload_weight(&HostTensor::packed(n, n_in, Packed { kind, bytes }))
            .unwrap()
    };
    let f32w = b
        .upload_weight(&HostTensor::new(
            vec![outs[0], n_in],
            random(&mut rng, outs[0] * n_in),
        ))
        .unwrap();
    let q8w = packed(PackedKind::Q8_0, outs[1], blocks(&mut rng, outs[1], false));
    let q4w = packed(PackedKind::Q4_1, outs[2], blocks(&mut rng, outs[2], true));
    let f16_bytes: Vec<u8> = random(&mut rng, outs[3] * n_in)
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let f16w = packed(PackedKind::F16, outs[3], f16_bytes);
    let bias = b.upload(&random(&mut rng, outs[0])).unwrap();
    let stacks: Vec<_> = [outs[0], outs[2], outs[3]]
        .iter()
        .map(|&o| {
            let ads: Vec<Adapter> = [4usize, 8, 2]
                .into_iter()
                .chain(std::iter::repeat(8))
                .take(adapters)
                .map(|r| Adapter {
                    rank: r,
                    scale: 2.0,
                    a: random(&mut rng, r * n_in),
                    b: random(&mut rng, o * r),
                })
                .collect();
            b.upload_lora(&stack(&ads, n_in, o)).unwrap()
        })
        .collect();
    // Every token its own segment, the mixtures cycling through three patterns.
    let patterns: [[(u32, f32); 3]; 3] = [
        [(2, 0.7), (0, 0.3), (NO_ADAPTER, 0.0)],
        [(1, 1.0), (NO_ADAPTER, 0.0), (NO_ADAPTER, 0.0)],
        [(0, 0.5), (1, 0.25), (2, 0.25)],
    ];
    let mut plan = StepPlan {
        token_ids: vec![0; tokens],
        positions: (0..tokens as u32).collect(),
        kv_slots: vec![0; tokens],
        segment_of_token: (0..tokens as u32).collect(),
        mix_k: 3,
        ..Default::default()
    };
    for t in 0..tokens {
        for &(slot, w) in &patterns[t % 3] {
            plan.mix_slots.push(slot);
            plan.mix_weights.push(w);
        }
    }
    let step = b.upload_step(&plan, None).unwrap();
    let x = random(&mut rng, tokens * n_in);
    let run = |fused: bool| {
        let mut o: Vec<Vec<f32>> = outs.iter().map(|&n| vec![f32::NAN; tokens * n]).collect();
        let mut u = vec![f32::NAN; tokens * 3 * 8];
        let [o0, o1, o2, o3] = &mut o[..] else {
            unreachable!()
        };
        let mut jobs = [
            LinearJob::<CpuBackend> {
                w: &f32w,
                bias: Some(&bias),
                n_out: outs[0],
                lora: Some(&stacks[0]),
                out: o0,
            },
            LinearJob {
                w: &q8w,
                bias: None,
                n_out: outs[1],
                lora: None,
                out: o1,
            },
            LinearJob {
                w: &q4w,
                bias: None,
                n_out: outs[2],
                lora: Some(&stacks[1]),
                out: o2,
            },
            LinearJob {
                w: &f16w,
                bias: None,
                n_out: outs[3],
                lora: Some(&stacks[2]),
                out: o3,
            },
        ];
        if fused {
            b.linears(&x, tokens, n_in, &step, &mut jobs, &mut u)
                .unwrap();
        } else {
            linears_each(&b, &x, tokens, n_in, &step, &mut jobs, &mut u).unwrap();
        }
        o
    };
    let (fused, each) = (run(true), run(false));
    let id = format!("tokens {tokens} f16 {f16} amx {amx}");
    for (i, (f, e)) in fused.iter().zip(&each).enumerate() {
        for (c, (a, w)) in f.iter().zip(e).enumerate() {
            assert!(a.is_finite(), "{id} job {i} out[{c}] = {a}");
            assert!(
                (a - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{id} job {i} out[{c}]: fused {a}, op by op {w}"
            );
        }
    }
}

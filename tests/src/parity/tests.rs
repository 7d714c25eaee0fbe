//! CPU checks of the parity harness and its case sets.

use super::*;
use crate::cpu_probe::CpuProbe;
use dlp_engine::backend::ResidualSite;

/// The fused-KV-store set holds decode steps (the fused kernels' cases) and prefills (the
/// fallback's), as the backend tells them apart, and runs on the CPU reference.
#[test]
fn fused_kv_store_cases_hold_decode_steps_and_prefills() {
    let cases = fused_kv_store_cases();
    let decode = cases
        .iter()
        .filter(|c| match &c.op {
            Op::Attention { kv_slots, .. } => {
                let mut p = plan(kv_slots.len());
                p.kv_slots = kv_slots.clone();
                p.tokens_alone_in_slots()
            }
            _ => panic!("{}: not an attention case", c.id),
        })
        .count();
    assert!(decode >= 14, "{decode} decode cases");
    assert!(
        cases.len() - decode >= 4,
        "{} prefills",
        cases.len() - decode
    );
    assert!(cases.iter().all(|c| c.tol == 0.0));
    assert_all_pass(&run_cases(&CpuBackend::new(), cases));
}

/// The batch-LoRA set holds decode batches on both sides of the decode matvec's 8 rows and of
/// the path's 64, with mixtures that differ between tokens and leave entries unused, and runs
/// on the CPU reference (and against the bf16-input probe, as the bf16 compute mode's test).
#[test]
fn batch_lora_cases_hold_mixed_decode_batches() {
    let cases = batch_lora_cases();
    let mut rows = Vec::new();
    for c in &cases {
        let Op::Linears { rows: r, mix, .. } = &c.op else {
            panic!("{}: not a linears case", c.id)
        };
        let m = mix.as_ref().expect("every case has LoRA");
        let distinct: std::collections::HashSet<_> = m.slots.chunks(m.k).collect();
        assert!(*r < 3 || distinct.len() > 2, "{}: mixtures differ", c.id);
        rows.push(*r);
    }
    let slots: Vec<u32> = cases
        .iter()
        .flat_map(|c| match &c.op {
            Op::Linears { mix: Some(m), .. } => m.slots.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(slots.contains(&dlp_engine::NO_ADAPTER));
    assert!(rows.contains(&1) && rows.contains(&9) && rows.contains(&64) && rows.contains(&65));
    assert_all_pass(&run_cases(&CpuBackend::new(), cases.clone()));
    let probe = CpuProbe::bf16_inputs();
    assert_all_pass(&run_cases_against(&CpuBackend::new(), &probe, cases));
}

/// The tiled-LoRA set holds what the tiled kernels must get right, and runs on the CPU
/// reference: tiles of 8 (`TILED_TOKENS`) that hold two sentences, and tiles whose every token
/// names its own adapters, at a width the tiled shrink takes (16-byte rows in f32 and bf16) and
/// at K 16; a shrink of several rounds (4,096 values each); inputs the 16-byte loads
/// take only in f32 or not at all; used ranks that are odd and past the expand's 16 values a
/// round; one adapter named by two sentences of a tile.
#[test]
fn tiled_lora_cases_hold_mixed_tiles_and_the_fallback_widths() {
    const TILE: usize = 8;
    let cases = tiled_lora_cases();
    let mixes: Vec<&Mixture> = cases
        .iter()
        .map(|c| match &c.op {
            Op::Lora { mix, .. } => mix,
            _ => panic!("{}: not a LoRA case", c.id),
        })
        .collect();
    let used_ranks = |m: &Mixture| -> Vec<u32> {
        m.slots
            .iter()
            .filter(|&&s| s != NO_ADAPTER)
            .map(|&s| m.ranks[s as usize])
            .collect()
    };
    let tiles_mixed = |m: &Mixture| {
        m.segment_of_token
            .chunks(TILE)
            .any(|t| t.iter().any(|&s| s != t[0]))
    };
    let one_each = |m: &Mixture| {
        let seg = &m.segment_of_token;
        seg.len() > TILE && (0..seg.len()).all(|t| seg[t] == t as u32)
    };
    let tiled_width = |m: &Mixture| m.in_dim.is_multiple_of(8);
    assert!(mixes
        .iter()
        .any(|m| tiles_mixed(m) && m.in_dim > 8192 && tiled_width(m)));
    assert!(mixes
        .iter()
        .any(|m| one_each(m) && tiled_width(m) && m.k == 16));
    assert!(mixes
        .iter()
        .any(|m| m.in_dim.is_multiple_of(4) && !tiled_width(m)));
    assert!(mixes.iter().any(|m| !m.in_dim.is_multiple_of(4)));
    assert!(mixes
        .iter()
        .any(|m| used_ranks(m).iter().any(|&r| r > 32 && r % 16 != 0)));
    assert!(mixes
        .iter()
        .any(|m| used_ranks(m).iter().any(|&r| r % 2 == 1 && r > 2)));
    // Two segments of one tile name the same slot at the same entry.
    assert!(mixes.iter().any(|m| {
        m.segment_of_token.chunks(TILE).any(|t| {
            (0..m.k).any(|k| {
                t.iter().any(|&a| {
                    t.iter().any(|&b| {
                        let (sa, sb) =
                            (m.slots[a as usize * m.k + k], m.slots[b as usize * m.k + k]);
                        a != b && sa == sb && sa != NO_ADAPTER
                    })
                })
            })
        })
    }));
    assert_all_pass(&run_cases(&CpuBackend::new(), cases));
}

/// The decode-matvec set (the `linears` cases included) runs on the CPU, and rounding the
/// matmul inputs to bf16 (what `--cuda-bf16-compute` does) moves every output measurably
/// but within the reduction bound that the GPU is held to against the rounded reference.
#[test]
fn decode_matvec_cases_run_and_bf16_inputs_move_them_by_rounding_only() {
    let reference = CpuProbe::bf16_inputs();
    let results = run_cases_against(&CpuBackend::new(), &reference, decode_matvec_cases());
    assert_all_pass(&results);
    for (id, o) in &results {
        let Outcome::Pass { nmse } = o else {
            unreachable!()
        };
        assert!(
            *nmse > 1e-9,
            "{id}: rounding the inputs changed nothing ({nmse:e})"
        );
    }
}

/// The SGMV set runs on the CPU reference, and TF32 rounding of both LoRA products' inputs
/// (what the SGMV kernels compute, [`CpuProbe::tf32_lora`]) stays well inside the LoRA
/// cases' bound: the GPU's error is its accumulation order, not the rounding.
#[test]
fn sgmv_cases_pass_with_tf32_rounding_on_the_cpu() {
    let cases = sgmv_cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let results = run_cases(&crate::cpu_probe::CpuProbe::tf32_lora(), cases.clone());
    assert_all_pass(&results);
    let worst = results
        .iter()
        .map(|(_, o)| match o {
            Outcome::Pass { nmse } => *nmse,
            _ => unreachable!(),
        })
        .fold(0f64, f64::max);
    println!("TF32 LoRA on the SGMV cases: worst NMSE {worst:.2e}");
    assert!(worst > 0.0 && worst < REDUCTION_TOL / 100.0, "{worst:e}");
}

/// The bf16-KV set runs on the CPU probe that rounds keys and values as the store does;
/// a backend that stored them unrounded (the plain CPU) fails every case on its caches,
/// though its outputs are within the attention bound: the caches are held bit-exact.
#[test]
fn bf16_kv_cases_hold_the_caches_bit_exact() {
    let cases = bf16_kv_cases();
    assert!(cases.len() >= 12 && cases.iter().all(|c| c.bf16_kv));
    let probe = crate::cpu_probe::CpuProbe::bf16_kv();
    assert_all_pass(&run_cases_against(&probe, &probe, cases.clone()));
    for (id, o) in run_cases_against(&CpuBackend::new(), &probe, cases) {
        assert!(
            matches!(&o, Outcome::Fail(m) if m.contains("_cache[")),
            "{id}: an f32 store passed: {o:?}"
        );
    }
}

/// The split-attention set (long contexts, 4,096 positions) and the bf16-LoRA set (A and
/// B drawn as bf16 values) are within what the harness builds and the CPU reference runs,
/// so a GPU run spends its time on the GPU side only.
#[test]
fn split_attention_and_bf16_lora_cases_run_on_the_cpu_reference() {
    let cases = split_attention_cases();
    assert!(cases.len() >= 12, "{} cases", cases.len());
    assert_all_pass(&run_cases(&CpuBackend::new(), cases));
    let cases = bf16_lora_cases();
    assert!(
        cases.len() >= 8 && cases.iter().all(|c| c.bf16_lora),
        "{cases:?}"
    );
    assert_all_pass(&run_cases(&CpuBackend::new(), cases));
}

/// The rope-in-attention set runs on the CPU reference, and its rope is real: every case's
/// key cache differs from the same case without the rope (same draws up to the table) and its
/// value cache does not; the output differs too, except where each token sees one position
/// only (a window of 1: the output is then that position's value).
#[test]
fn rope_in_attention_cases_rotate_and_run_on_the_cpu_reference() {
    let cases = rope_in_attention_cases();
    assert_eq!(cases.len(), fused_kv_store_cases().len());
    assert_all_pass(&run_cases(&CpuBackend::new(), cases.clone()));
    let cpu = CpuBackend::new();
    for (with, without) in cases.iter().zip(fused_kv_store_cases()) {
        let a = exec(&cpu, with).unwrap();
        let b = exec(&cpu, &without).unwrap();
        let names: Vec<&str> = a.iter().map(|o| o.0).collect();
        assert_eq!(names, ["out", "k_cache", "v_cache"], "{}", with.id);
        assert_ne!(a[1].1, b[1].1, "{}: key cache", with.id);
        assert_eq!(a[2].1, b[2].1, "{}: value cache", with.id);
        let Op::Attention { shape, .. } = &with.op else {
            unreachable!("attention cases only")
        };
        assert_eq!(a[0].1 == b[0].1, shape.window == 1, "{}: output", with.id);
    }
}

/// The fused-silu set runs on the CPU reference and covers every row bucket with and without
/// LoRA; its output is `silu_mul` of what `linears` computes for the same draws, bit for bit,
/// and differs from both products (a silu that was skipped, or applied to the wrong one, fails).
#[test]
fn fused_silu_cases_are_silu_mul_of_the_linears_and_run_on_the_cpu_reference() {
    let cases = fused_silu_cases();
    assert_all_pass(&run_cases(&CpuBackend::new(), cases.clone()));
    let cpu = CpuBackend::new();
    let mut buckets = std::collections::BTreeSet::new();
    for c in &cases {
        let Op::Linears {
            rows,
            ns,
            mix,
            silu,
            ..
        } = &c.op
        else {
            panic!("{}: not a linears case", c.id)
        };
        assert!(*silu && ns.len() == 2 && ns[0] == ns[1], "{}", c.id);
        buckets.insert((matvec_rows_bucket(*rows), mix.is_some()));
        let mut plain = c.clone();
        if let Op::Linears { silu, .. } = &mut plain.op {
            *silu = false;
        }
        let act = exec(&cpu, c).unwrap();
        let outs = exec(&cpu, &plain).unwrap();
        assert_eq!(act.len(), 1, "{}", c.id);
        let (gate, up) = (&outs[0].1, &outs[1].1);
        let mut want = vec![0.0; gate.len()];
        cpu.silu_mul(gate, up, gate.len(), &mut want).unwrap();
        assert_eq!(act[0].1, want, "{}", c.id);
        assert_ne!(&act[0].1, gate, "{}", c.id);
        assert_ne!(&act[0].1, up, "{}", c.id);
    }
    for lora in [false, true] {
        for bucket in 0..4 {
            assert!(
                buckets.contains(&(bucket, lora)),
                "bucket {bucket}, LoRA {lora}"
            );
        }
    }
}

/// The norm-in-matvec set runs on the CPU reference and covers the two folded buckets and rows
/// past the fold, with and without LoRA, both residual sites, a width past 8 values per thread
/// of a 256-thread norm and one not a multiple of 32; its product is the plain `linears`'s for
/// the same draws, bit for bit, and the normed rows differ from the residual (a norm that was
/// skipped fails). That the residual holds residual + product is held at bound 0 against
/// `add_rms_norm` by the CUDA test (`op_parity_cuda_norm_in_matvec_...`).
#[test]
fn norm_in_matvec_cases_run_on_the_cpu_reference_and_cover_the_fold() {
    let cases = norm_in_matvec_cases();
    assert_all_pass(&run_cases(&CpuBackend::new(), cases.clone()));
    let cpu = CpuBackend::new();
    let (mut buckets, mut sites) = (std::collections::BTreeSet::new(), Vec::new());
    let (mut long, mut ragged) = (false, false);
    for c in &cases {
        let Op::Linears {
            rows,
            ns,
            mix,
            norm: Some(site),
            ..
        } = &c.op
        else {
            panic!("{}: not a norm case", c.id)
        };
        assert_eq!(ns.len(), 1, "{}", c.id);
        buckets.insert(((*rows).min(3), mix.is_some()));
        sites.push(*site);
        long |= ns[0] > 8 * 256;
        ragged |= !ns[0].is_multiple_of(32);
        let outs = exec(&cpu, c).unwrap();
        let names: Vec<&str> = outs.iter().map(|o| o.0).collect();
        assert_eq!(names, ["out", "residual", "normed"], "{}", c.id);
        let mut plain = c.clone();
        if let Op::Linears { norm, .. } = &mut plain.op {
            *norm = None;
        }
        assert_eq!(outs[0].1, exec(&cpu, &plain).unwrap()[0].1, "{}", c.id);
        assert_ne!(outs[2].1, outs[1].1, "{}", c.id);
    }
    for rows in 1..=3 {
        for lora in [false, true] {
            assert!(buckets.contains(&(rows, lora)), "rows {rows}, LoRA {lora}");
        }
    }
    assert!(sites.contains(&ResidualSite::Attention) && sites.contains(&ResidualSite::FeedForward));
    assert!(long && ragged);
}

/// The decode matvec's row bucket (1, 2, 3-4, 5-8 rows) as an index.
fn matvec_rows_bucket(rows: usize) -> usize {
    match rows {
        1 => 0,
        2 => 1,
        3..=4 => 2,
        _ => 3,
    }
}

/// `linears_silu_mul` of a pair of two widths is refused, naming both, not computed over the
/// narrower one.
#[test]
fn linears_silu_mul_refuses_a_pair_of_two_widths() {
    let c = ParityCase {
        op: Op::Linears {
            rows: 2,
            k: 16,
            ns: vec![8, 16],
            bias: false,
            mix: None,
            bare: Vec::new(),
            silu: true,
            norm: None,
        },
        ..fused_silu_cases()[0].clone()
    };
    let e = exec(&CpuBackend::new(), &c).unwrap_err().to_string();
    assert!(e.contains("gate is 8 wide, up 16"), "{e}");
}

/// The sample cases hold every kind of row they name: refused rows (-1), greedy ones
/// (argmax's pick), draws at 0 and just below 1 (the walk's first and last tokens: every
/// token is above the probability floor), draws at moderate and high temperatures that leave
/// the argmax. They run on the CPU reference (against itself: that checks only that every
/// output is written), and a backend without the op reports it unsupported.
#[test]
fn sample_cases_draw_and_refuse_on_the_cpu_reference() {
    let cases = sample_cases();
    assert_all_pass(&run_cases(&CpuBackend::new(), cases.clone()));
    let b = CpuBackend::new();
    let (mut refused, mut drawn_off_argmax) = (0, 0);
    for c in &cases {
        let Op::Sample { rows, vocab } = c.op else {
            panic!("{c:?}")
        };
        let picks = exec(&b, c).unwrap().remove(0).1;
        let (logits, args) = sample_rows(rows, vocab, &mut Rng(c.seed));
        for (r, &pick) in picks.iter().enumerate() {
            let row = &logits[r * vocab..(r + 1) * vocab];
            let greedy = dlp_engine::cpu::argmax::pick(row).map_or(-1.0, |t| t as f32);
            let (temperature, _) = dlp_engine::cpu::sample::row_args(&args, r);
            match r % 8 {
                6 => {
                    assert_eq!(pick, -1.0, "{}: row {r}", c.id);
                    refused += 1;
                }
                3 | 7 => assert_eq!(pick, greedy, "{}: row {r}", c.id),
                1 => assert_eq!(pick, 0.0, "{}: row {r}", c.id),
                2 => assert_eq!(pick, (vocab - 1) as f32, "{}: row {r}", c.id),
                _ => {
                    assert!(temperature > 0.0 && pick >= 0.0, "{}: row {r}", c.id);
                    // Rows at temperatures from 0.5 to 1.5, and at 100.
                    if r % 8 == 0 || r % 8 == 5 {
                        drawn_off_argmax += usize::from(pick != greedy);
                    }
                }
            }
        }
    }
    assert!(refused >= cases.len(), "{refused}");
    // Five tokens stand far above the rest: the draws leave the best one now and then at
    // moderate temperatures, and nearly always at 100.
    assert!(drawn_off_argmax >= cases.len(), "{drawn_off_argmax}");
    // CpuProbe leaves `sample` to the trait's default, as WGSL does.
    let unsupported = run_case(&CpuProbe::bf16_inputs(), &cases[0]);
    assert!(
        matches!(unsupported, Outcome::Unsupported(_)),
        "{unsupported:?}"
    );
}

//! The fusions held to the ops they replace at bound 0 (`run_cases_against` with NMSE 0): each
//! switch that folds launches computes what the launches it removes computed, bit for bit, and
//! the launch counts show the folded path ran.

use dlp_cuda::tune::Tune;
use dlp_cuda::NORM_FOLD_MAX_ROWS;
use dlp_engine::backend::StepPlan;
use dlp_engine::Backend;
use dlp_tests::parity::{
    cases, fused_kv_store_cases, fused_silu_cases, norm_in_matvec_cases, rope_in_attention_cases,
};

use super::*;

/// The backends of `with(true)` and `with(false)`, made one at a time: without a GPU the first
/// records the skip and the caller ends.
fn fused_and_unfused(with: impl Fn(bool) -> CudaOptions) -> Option<(CudaBackend, CudaBackend)> {
    let fused = cuda(with(true))?;
    Some((fused, cuda(with(false))?))
}

/// The decode matvec's ways of running a module's LoRA, for the epilogue folds (`fused-silu`,
/// `norm-in-matvec`), each with whether the fold takes the LoRA cases: the plain matvec (its
/// LoRA runs after the products: no), `fused-lora`, `fused-shrink` (the matvec a dependent
/// launch of its shrink, on sm_90), `inline-shrink` under dependent launches, and
/// `expand-launch` (the expands in a launch after the plain matvec: no), and with
/// `lora-prefetch` (the same, its shrink and expand dependent launches: no).
fn matvec_fold_paths() -> [(Experimental, bool); 6] {
    let inline = Experimental {
        dependent_launch: true,
        inline_shrink: true,
        ..FUSED
    };
    let expand = Experimental {
        dependent_launch: true,
        expand_launch: true,
        ..FUSED
    };
    [
        (MATVEC, false),
        (FUSED, true),
        (FUSED_SHRINK, true),
        (inline, true),
        (expand, false),
        (
            Experimental {
                lora_prefetch: true,
                ..expand
            },
            false,
        ),
    ]
}

/// Every case on `fused` against `unfused` at bound 0, then against the CPU (its bf16-input
/// probe where `bf16_compute`); returns the launches `count` saw during the bound-0 run on
/// each backend, `(fused, unfused)`.
fn exact_then_reference(
    fused: &CudaBackend,
    unfused: &CudaBackend,
    cases: &[ParityCase],
    bf16_compute: bool,
    count: impl Fn(&CudaBackend) -> u64,
) -> (u64, u64) {
    let exact: Vec<ParityCase> = cases
        .iter()
        .map(|c| ParityCase {
            tol: 0.0,
            ..c.clone()
        })
        .collect();
    let before = (count(fused), count(unfused));
    assert_all_pass(&run_cases_against(fused, unfused, exact));
    let launched = (count(fused) - before.0, count(unfused) - before.1);
    if bf16_compute {
        let probe = CpuProbe::bf16_inputs();
        assert_all_pass(&run_cases_against(fused, &probe, cases.to_vec()));
    } else {
        assert_all_pass(&run_cases(fused, cases.to_vec()));
    }
    launched
}

/// `lora-prefetch` computes what `expand-launch` computes, bit for bit (the same terms in the
/// same order): the fused-LoRA cases on bf16 weights with f32 and bf16 A/B and in the bf16
/// compute mode against the expand-launch backend (bound 0), then against the CPU, u and the
/// entry table poisoned before each shrink (an expand reading them before its wait fails).
/// The poison's memsets come between the kernel writing x and the shrink, so one more run
/// leaves them out: its shrinks follow the `add` that writes x directly (it releases its
/// dependents at its start), and a shrink reading x before its wait reads zeros. On sm_90 the
/// shrinks and expands must have run as dependent launches (`LaunchCounts::lora_prefetch`),
/// not the plain-order fallback.
#[test]
fn op_parity_cuda_lora_prefetch_matches_expand_launch_exactly() {
    let runs = [
        (false, false, true),
        (true, false, true),
        (false, true, true),
        (false, false, false),
    ];
    for (lora_bf16, bf16_compute, poison_scratch) in runs {
        let with = |prefetch: bool| CudaOptions {
            bf16_weights: true,
            bf16_compute,
            lora_bf16,
            experimental: Experimental {
                dependent_launch: true,
                expand_launch: true,
                lora_prefetch: prefetch,
                ..FUSED
            },
            poison_scratch,
            ..Default::default()
        };
        let Some((prefetch, expand)) = fused_and_unfused(with) else {
            return;
        };
        println!(
            "lora-prefetch vs expand-launch, LoRA bf16 {lora_bf16}, bf16 compute {bf16_compute}, poisoned scratch {poison_scratch}"
        );
        let cases = if lora_bf16 {
            bf16_lora_cases()
        } else {
            decode_matvec_cases()
        };
        let count = |b: &CudaBackend| b.launches().lora_prefetch;
        let (ran, ran_without) =
            exact_then_reference(&prefetch, &expand, &cases, bf16_compute, count);
        assert_eq!(ran_without, 0, "lora-prefetch launches with the switch off");
        let sm90 = prefetch
            .arch()
            .trim_start_matches("sm_")
            .parse::<u32>()
            .is_ok_and(|v| v >= 90);
        assert_eq!(
            ran > 0,
            sm90,
            "{} dependent lora-prefetch launches on {}",
            ran,
            prefetch.arch()
        );
    }
}

/// `fused-norm` and `fused-rope` compute what the unfused ops compute, bit for bit: the
/// table's `add_rms_norm` and `rope_qk` cases on the fused backend against the unfused one
/// (bound 0), with narrow and wide grids (rows at 256 and 1,024 threads).
#[test]
fn op_parity_cuda_fusions_match_the_unfused_ops_exactly() {
    for wide_grids in [false, true] {
        let with = |fused: bool| CudaOptions {
            experimental: Experimental {
                wide_grids,
                fused_norm: fused,
                fused_rope: fused,
                ..Default::default()
            },
            ..Default::default()
        };
        let Some((fused, unfused)) = fused_and_unfused(with) else {
            return;
        };
        println!("fused vs unfused, wide grids {wide_grids}");
        let cases: Vec<ParityCase> = cases()
            .into_iter()
            .filter(|c| match &c.op {
                Op::AddRmsNorm { .. } => true,
                Op::Rope { kv_heads, .. } => kv_heads.is_some(),
                _ => false,
            })
            .map(|c| ParityCase { tol: 0.0, ..c })
            .collect();
        assert!(cases.len() >= 6);
        assert_all_pass(&run_cases_against(&fused, &unfused, cases));
    }
}

/// `inline-combine` computes what the split kernel then `attention_combine` compute, bit for
/// bit: every attention case and the long contexts (1 to 16 splits, empty splits, GQA,
/// windows) against the backend with the combine launch (bound 0), with f32 and bf16 caches,
/// the fused KV store off and on. The partials are NaN before each split launch
/// (`poison_scratch`) and every case runs twice, so a block that merged before every split
/// had written, or a launch that left its counts non-zero, fails; and no `attention_combine`
/// may run on the inline backend.
#[test]
fn op_parity_cuda_inline_combine_matches_the_combine_launch_exactly() {
    for (kv_bf16, fused_kv_store) in [(false, false), (false, true), (true, false), (true, true)] {
        let with = |inline_combine: bool| CudaOptions {
            kv_bf16,
            experimental: Experimental {
                split_attention: true,
                fused_kv_store,
                inline_combine,
                ..Default::default()
            },
            poison_scratch: true,
            ..Default::default()
        };
        let Some((inline, launched)) = fused_and_unfused(with) else {
            return;
        };
        println!(
            "inline combine vs combine launch, bf16 cache {kv_bf16}, fused store {fused_kv_store}"
        );
        let cases: Vec<ParityCase> = (0..2).flat_map(|_| fused_kv_store_cases()).collect();
        let before = (inline.launches(), launched.launches());
        assert_all_pass(&run_cases_against(&inline, &launched, cases));
        // The split steps merged inside: no combine launch, where the other backend has some.
        assert_eq!(
            inline.launches().attention_combine,
            before.0.attention_combine
        );
        let combines = launched.launches().attention_combine - before.1.attention_combine;
        assert!(combines > 0, "no split step among the cases");
    }
}

/// How many of `cases` (attention cases) are decode steps: each token alone in its KV slot.
fn decode_steps(cases: &[ParityCase]) -> u64 {
    let decode = |c: &ParityCase| match &c.op {
        Op::Attention { kv_slots, .. } => StepPlan {
            kv_slots: kv_slots.clone(),
            ..Default::default()
        }
        .tokens_alone_in_slots(),
        _ => false,
    };
    cases.iter().filter(|c| decode(c)).count() as u64
}

/// `rope-in-attention` computes what `rope` then the fused-store attention compute, bit for
/// bit: every case of `rope_in_attention_cases` against the backend without it (bound 0), with
/// f32 and bf16 caches, unsplit, split with the combine launch, and split with
/// `inline-combine` (every `_rope` entry); on f32 caches also against the CPU. The rope
/// launches counted show that the decode steps took the rotating kernels.
#[test]
fn op_parity_cuda_rope_in_attention_matches_the_rope_launch_exactly() {
    for kv_bf16 in [false, true] {
        for (split_attention, inline_combine) in [(false, false), (true, false), (true, true)] {
            let with = |rope_in_attention: bool| CudaOptions {
                kv_bf16,
                experimental: Experimental {
                    fused_kv_store: true,
                    split_attention,
                    inline_combine,
                    rope_in_attention,
                    ..Default::default()
                },
                ..Default::default()
            };
            let Some((fused, unfused)) = fused_and_unfused(with) else {
                return;
            };
            println!(
                "rope in attention vs rope launch, bf16 cache {kv_bf16}, split \
                 {split_attention}, inline combine {inline_combine}"
            );
            let cases = rope_in_attention_cases();
            let before = (fused.launches().rope, unfused.launches().rope);
            assert_all_pass(&run_cases_against(&fused, &unfused, cases.clone()));
            // Without fused-rope a rope is two launches (q, then k). The decode steps rotated
            // inside attention: that path ran, not the fallback, which gives the same values.
            let (all, decode) = (cases.len() as u64, decode_steps(&cases));
            assert!(decode >= 14, "{decode} decode steps");
            assert_eq!(unfused.launches().rope - before.1, 2 * all);
            assert_eq!(fused.launches().rope - before.0, 2 * (all - decode));
            if !kv_bf16 {
                let cases = cases.into_iter().map(|c| ParityCase {
                    tol: dlp_tests::parity::REDUCTION_TOL,
                    ..c
                });
                assert_all_pass(&run_cases(&fused, cases.collect()));
            }
        }
    }
}

/// `fused-silu` computes what the gate/up matvec then `silu_mul` compute, bit for bit: every
/// case of `fused_silu_cases` (all four row buckets) against the backend without it (bound
/// 0), on the plain matvec (the LoRA cases then keep the launch: their LoRA runs after the
/// products), with `fused-lora`, with `fused-shrink` (the matvec a dependent launch of its
/// shrink, on sm_90), and with `inline-shrink` under dependent launches; f32 and
/// bf16 compute; each case twice, the LoRA scratch poisoned; and against the CPU. The
/// `silu_mul` launches counted show which cases folded it: all but the plain matvec's LoRA ones.
#[test]
fn op_parity_cuda_fused_silu_matches_the_silu_launch_exactly() {
    for (experimental, folds_lora) in matvec_fold_paths() {
        for bf16_compute in [false, true] {
            let with = |fused_silu: bool| CudaOptions {
                bf16_weights: true,
                bf16_compute,
                experimental: Experimental {
                    fused_silu,
                    ..experimental
                },
                poison_scratch: true,
                ..Default::default()
            };
            let Some((fused, unfused)) = fused_and_unfused(with) else {
                return;
            };
            println!(
                "fused silu vs silu_mul launch, {experimental:?}, bf16 compute {bf16_compute}"
            );
            let cases: Vec<ParityCase> = (0..2).flat_map(|_| fused_silu_cases()).collect();
            let count = |b: &CudaBackend| b.launches().silu_mul;
            let launched = exact_then_reference(&fused, &unfused, &cases, bf16_compute, count);
            let lora = cases
                .iter()
                .filter(|c| matches!(&c.op, Op::Linears { mix: Some(_), .. }))
                .count() as u64;
            assert!(
                lora >= 8 && cases.len() as u64 - lora >= 8,
                "{lora} LoRA cases"
            );
            let kept = if folds_lora { 0 } else { lora };
            assert_eq!(launched, (kept, cases.len() as u64));
        }
    }
}

/// `norm-in-matvec` computes what the matvec then `add_rms_norm` compute, bit for bit: every
/// case of `norm_in_matvec_cases` (the product, the residual and the normed rows) against the
/// backend without it (bound 0), on the plain matvec (the LoRA cases then keep the launch:
/// their LoRA runs after the product), with `fused-lora`, with `fused-shrink`, and with
/// `inline-shrink` under dependent launches; narrow and wide grids (the norm's sums at 256 and
/// 1,024 threads, reproduced by the matvec's blocks of 256), `add_rms_norm` fused or as `add`
/// then `rms_norm`, f32 and bf16 compute; each case twice, the LoRA scratch poisoned; and
/// against the CPU. The `add_rms_norm` calls counted show which cases folded: those of at most
/// `NORM_FOLD_MAX_ROWS` rows, but for the plain matvec's LoRA ones. Then on matvec blocks of 4
/// and 32 warps, the norm's block emulated by more and by fewer warps than it has.
#[test]
fn op_parity_cuda_norm_in_matvec_matches_the_add_rms_norm_launch_exactly() {
    for (experimental, folds_lora) in matvec_fold_paths() {
        for (bf16_compute, wide_grids, fused_norm) in [
            (false, false, true),
            (true, false, false),
            (false, true, false),
            (true, true, true),
        ] {
            let with = |norm_in_matvec: bool| CudaOptions {
                bf16_weights: true,
                bf16_compute,
                experimental: Experimental {
                    norm_in_matvec,
                    wide_grids,
                    fused_norm,
                    ..experimental
                },
                poison_scratch: true,
                ..Default::default()
            };
            let Some((fused, unfused)) = fused_and_unfused(with) else {
                return;
            };
            println!(
                "norm in matvec vs add_rms_norm launch, {experimental:?}, bf16 compute \
                 {bf16_compute}, wide grids {wide_grids}, fused norm {fused_norm}"
            );
            let cases: Vec<ParityCase> = (0..2).flat_map(|_| norm_in_matvec_cases()).collect();
            let count = |b: &CudaBackend| b.launches().add_rms_norm;
            let launched = exact_then_reference(&fused, &unfused, &cases, bf16_compute, count);
            let folded = cases
                .iter()
                .filter(|c| match &c.op {
                    Op::Linears { rows, mix, .. } => {
                        *rows <= NORM_FOLD_MAX_ROWS && (folds_lora || mix.is_none())
                    }
                    _ => false,
                })
                .count() as u64;
            assert!(folded >= 8, "{folded} cases fold");
            let n = cases.len() as u64;
            assert_eq!(launched, (n - folded, n));
        }
    }
    // Matvec blocks of 4 and 32 warps (the tuning knob), the norm's sums at 1,024 threads
    // (more virtual warps than the block has: each warp takes several) and at 256 (fewer:
    // some warps idle), with the fused LoRA; the unfused side has the default block.
    for (warps, wide_grids) in [(4, true), (32, false)] {
        let with = |norm_in_matvec: bool| CudaOptions {
            bf16_weights: true,
            experimental: Experimental {
                norm_in_matvec,
                wide_grids,
                fused_norm: true,
                ..FUSED
            },
            tune: norm_in_matvec
                .then(|| Tune::parse(&format!("matvec_warps={warps}")).expect("a valid knob")),
            ..Default::default()
        };
        let Some((fused, unfused)) = fused_and_unfused(with) else {
            return;
        };
        println!("norm in matvec on blocks of {warps} warps, wide grids {wide_grids}");
        // The knob took (not the default block, which would pass as well).
        let described = fused.kernels().unwrap_or_default();
        assert!(
            described.contains(&format!("matvec_warps={warps}")),
            "{described}"
        );
        let cases = norm_in_matvec_cases();
        let count = |b: &CudaBackend| b.launches().add_rms_norm;
        let launched = exact_then_reference(&fused, &unfused, &cases, false, count);
        let kept = cases.iter().filter(|c| match &c.op {
            Op::Linears { rows, .. } => *rows > NORM_FOLD_MAX_ROWS,
            _ => true,
        });
        let n = cases.len() as u64;
        assert_eq!(launched, (kept.count() as u64, n), "{warps} warps");
    }
}

/// `fused-kv-store` computes what `kv_store` then `attention` compute, bit for bit, caches
/// included: every attention case and the long contexts (decode steps take the fused kernels;
/// prefills, several tokens in one slot, keep `kv_store`) against the unfused backend (bound
/// 0), with f32 and bf16 caches, split attention off and on.
#[test]
fn op_parity_cuda_fused_kv_store_matches_the_unfused_attention_exactly() {
    for (kv_bf16, split_attention) in [(false, false), (false, true), (true, false), (true, true)] {
        let with = |fused_kv_store: bool| CudaOptions {
            kv_bf16,
            experimental: Experimental {
                split_attention,
                fused_kv_store,
                ..Default::default()
            },
            ..Default::default()
        };
        let Some((fused, unfused)) = fused_and_unfused(with) else {
            return;
        };
        println!(
            "fused KV store vs kv_store + attention, bf16 cache {kv_bf16}, split {split_attention}"
        );
        assert_all_pass(&run_cases_against(&fused, &unfused, fused_kv_store_cases()));
    }
}

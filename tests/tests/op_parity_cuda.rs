//! The op-parity table on the CUDA backend against the CPU reference (`--features cuda`).
//! Without a GPU: `SKIPPED: no CUDA device`, unless `DLP_REQUIRE_CUDA=1`. Then the bf16-weight
//! cases on the backend with bf16 weight storage, the decode-matvec cases with
//! `--cuda-experimental decode-matvec` (and `fused-lora`), the whole table and long contexts
//! with `wide-grids,split-attention`, the bf16 compute mode against the CPU with the
//! same input rounding, and the LoRA cases on tensor cores with `sgmv`.
#![cfg(feature = "cuda")]

use dlp_cuda::{CudaBackend, CudaOptions, Experimental};
use dlp_engine::backend::StepPlan;
use dlp_tests::backend_or_skip;
use dlp_tests::cpu_probe::CpuProbe;
use dlp_tests::parity::{
    assert_all_pass, batch_lora_cases, bf16_kv_cases, bf16_lora_cases, bf16_weight_cases, cases,
    decode_matvec_cases, fused_kv_store_cases, fused_silu_cases, rope_in_attention_cases, run_all,
    run_case, run_cases, run_cases_against, sgmv_cases, split_attention_cases, tiled_lora_cases,
    Op, ParityCase,
};

fn cuda(opts: CudaOptions) -> Option<CudaBackend> {
    backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA")
}

const MATVEC: Experimental = Experimental {
    decode_matvec: true,
    ..Experimental::NONE
};

/// The decode matvec with the fused LoRA pair.
const FUSED: Experimental = Experimental {
    fused_lora: true,
    ..MATVEC
};

/// The fused LoRA pair with each matvec a programmatic dependent launch of its shrink.
const FUSED_SHRINK: Experimental = Experimental {
    fused_shrink: true,
    ..FUSED
};

#[test]
fn op_parity_cuda() {
    let Some(b) = cuda(CudaOptions::default()) else {
        return;
    };
    assert_all_pass(&run_all(&b));
}

/// bf16 weight storage (`--cuda-bf16-weights`): embedding, matmul (with and without bias, one
/// row and many, odd shapes) and logits on weights drawn as bf16 values, against the CPU on
/// the same values.
#[test]
fn op_parity_cuda_bf16_weights() {
    let opts = CudaOptions {
        bf16_weights: true,
        ..Default::default()
    };
    let Some(b) = cuda(opts) else {
        return;
    };
    assert_all_pass(&run_cases(&b, bf16_weight_cases()));
}

/// `--cuda-experimental decode-matvec` on bf16 weights: every row bucket, grouped q/k/v and
/// gate/up launches with and without LoRA, the lm_head; and the bf16-weight set through it.
/// Then again with `fused-lora` (the `linears` cases with LoRA run the fused shrink/expand).
#[test]
fn op_parity_cuda_decode_matvec() {
    for experimental in [MATVEC, FUSED] {
        let opts = CudaOptions {
            bf16_weights: true,
            experimental,
            ..Default::default()
        };
        if !decode_matvec_sets_pass(opts) {
            return;
        }
    }
}

/// The decode-matvec and bf16-weight sets on bf16 weights with `opts`; false (after the
/// skip is recorded) when there is no GPU.
fn decode_matvec_sets_pass(opts: CudaOptions) -> bool {
    let Some(b) = cuda(opts) else {
        return false;
    };
    println!("{:?}", opts.experimental);
    let mut cases = decode_matvec_cases();
    cases.extend(bf16_weight_cases());
    assert_all_pass(&run_cases(&b, cases));
    true
}

/// `--cuda-experimental decode-matvec,fused-lora,dependent-launch,inline-shrink`: each group's
/// shrink runs in its matvec's grid (blocks by start-order ticket, the expands waiting on the
/// shrink blocks' counter), the grid a programmatic dependent of the kernel writing x. Every
/// case runs twice, so that a launch that left its counters non-zero fails the next.
#[test]
fn op_parity_cuda_inline_shrink() {
    let inline = Experimental {
        dependent_launch: true,
        inline_shrink: true,
        ..FUSED
    };
    fused_lora_sets_pass("inline-shrink", inline, 2);
}

/// The fused-LoRA `linears` cases on bf16 weights with `experimental`, with f32 and bf16 A/B
/// and in the bf16 compute mode (against the CPU with its input rounding), each case `times`
/// times in a row. u and the entry table are poisoned before each shrink (`poison_scratch`),
/// so an expand that read them before its shrink wrote them fails the case every time.
fn fused_lora_sets_pass(what: &str, experimental: Experimental, times: usize) {
    for (lora_bf16, bf16_compute) in [(false, false), (true, false), (false, true)] {
        let opts = CudaOptions {
            bf16_weights: true,
            bf16_compute,
            lora_bf16,
            experimental,
            poison_scratch: true,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("{what}, LoRA bf16 {lora_bf16}, bf16 compute {bf16_compute}");
        let cases = if lora_bf16 {
            bf16_lora_cases()
        } else {
            decode_matvec_cases()
        };
        let cases: Vec<ParityCase> = (0..times).flat_map(|_| cases.clone()).collect();
        let results = if bf16_compute {
            run_cases_against(&b, &CpuProbe::bf16_inputs(), cases)
        } else {
            run_cases(&b, cases)
        };
        assert_all_pass(&results);
    }
}

/// `--cuda-experimental batch-lora`: decode batches' LoRA as one shrink and one expand launch
/// per group of modules, around the base products, on f32 weights and LoRA, on bf16 weights
/// with bf16 A/B, and in the bf16 compute mode (against the CPU with its input rounding); u
/// and the entry table poisoned before each shrink.
#[test]
fn op_parity_cuda_batch_lora() {
    for (bf16, bf16_compute) in [(false, false), (true, false), (false, true)] {
        let opts = CudaOptions {
            bf16_weights: bf16,
            bf16_compute,
            lora_bf16: bf16,
            experimental: Experimental {
                batch_lora: true,
                ..Experimental::NONE
            },
            poison_scratch: true,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("batch-lora, bf16 weights and LoRA {bf16}, bf16 compute {bf16_compute}");
        let cases = batch_lora_cases().into_iter().map(|c| ParityCase {
            bf16_weights: bf16 || bf16_compute,
            bf16_lora: bf16,
            ..c
        });
        let results = if bf16_compute {
            run_cases_against(&b, &CpuProbe::bf16_inputs(), cases.collect())
        } else {
            run_cases(&b, cases.collect())
        };
        assert_all_pass(&results);
    }
}

/// `--cuda-experimental decode-matvec,fused-lora,fused-shrink`: each fused-LoRA matvec starts
/// while its shrink runs (programmatic dependent launch on sm_90; its expands wait with
/// `griddepcontrol.wait`).
#[test]
fn op_parity_cuda_fused_shrink() {
    fused_lora_sets_pass("fused-shrink", FUSED_SHRINK, 1);
}

/// `--cuda-experimental decode-matvec,dependent-launch`: each decode matvec launched as a
/// programmatic dependent of the kernel before it (sm_90), waiting for it before reading x;
/// the kernels that may come before it compiled with their early release (`-DDLP_PDL`). The
/// decode-matvec set and the bf16-weight set (their matmul and linears inputs written by a
/// kernel right before, as in the model), then with fused-lora, then with fused-shrink too.
#[test]
fn op_parity_cuda_dependent_launch() {
    let dependent = Experimental {
        dependent_launch: true,
        ..MATVEC
    };
    for experimental in [
        dependent,
        Experimental {
            dependent_launch: true,
            ..FUSED
        },
        Experimental {
            dependent_launch: true,
            ..FUSED_SHRINK
        },
    ] {
        let opts = CudaOptions {
            bf16_weights: true,
            experimental,
            poison_scratch: true,
            ..Default::default()
        };
        if !decode_matvec_sets_pass(opts) {
            return;
        }
    }
}

/// `--cuda-bf16-compute` (inputs rounded to bf16, cublasGemmEx on tensor cores for many rows),
/// with the decode matvec off and on (then with the fused LoRA, and with every launch a
/// dependent one: the matvec stages x after its wait), against the CPU with the same rounding
/// ([`CpuProbe::bf16_inputs`]): the rounding is the same on both sides, so the f32 bounds hold.
#[test]
fn op_parity_cuda_bf16_compute() {
    let all_launches = Experimental {
        dependent_launch: true,
        ..FUSED_SHRINK
    };
    for experimental in [Experimental::default(), MATVEC, FUSED, all_launches] {
        let opts = CudaOptions {
            bf16_compute: true,
            experimental,
            poison_scratch: true,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("bf16 compute, {experimental:?}");
        let mut cases = decode_matvec_cases();
        cases.extend(bf16_weight_cases());
        assert_all_pass(&run_cases_against(&b, &CpuProbe::bf16_inputs(), cases));
    }
}

/// `--cuda-experimental wide-grids,split-attention,fused-norm,fused-rope,fused-kv-store` on f32
/// weights: the whole table (RMSNorm rows on 1,024 threads, the fused add and RMSNorm, q and k
/// rotated in one launch, the KV store on several blocks per token or, in decode steps, inside
/// attention, logits), then the attention cases and long contexts split over positions
/// (flash-decoding) and combined.
#[test]
fn op_parity_cuda_wide_grids_and_split_attention() {
    let opts = CudaOptions {
        experimental: Experimental {
            wide_grids: true,
            split_attention: true,
            fused_norm: true,
            fused_rope: true,
            fused_kv_store: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let Some(b) = cuda(opts) else {
        return;
    };
    let mut results = run_all(&b);
    results.extend(run_cases(&b, split_attention_cases()));
    assert_all_pass(&results);
}

/// `--cuda-lora-bf16`: the table's shrink/expand cases and the grouped `linears` cases with
/// LoRA, A and B drawn as bf16 values (both sides compute on the same numbers), with the
/// fused LoRA path off and on.
#[test]
fn op_parity_cuda_lora_bf16() {
    for experimental in [MATVEC, FUSED] {
        let opts = CudaOptions {
            bf16_weights: true,
            lora_bf16: true,
            experimental,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("LoRA bf16, {experimental:?}");
        assert_all_pass(&run_cases(&b, bf16_lora_cases()));
    }
}

/// `--cuda-experimental sgmv` (the LoRA pair on TF32 tensor cores, tokens in tiles of 16): the
/// SGMV set (the table's LoRA cases, batches over three tiles, prefill, empty tiles, K up to 16
/// and past it, a stack too wide for the tile) against the plain CPU (TF32 rounding is far
/// inside the bound: `sgmv_cases_pass_with_tf32_rounding_on_the_cpu`), with f32 and with bf16
/// A/B; then the grouped `linears` cases with LoRA.
#[test]
fn op_parity_cuda_sgmv() {
    for lora_bf16 in [false, true] {
        let opts = CudaOptions {
            lora_bf16,
            experimental: Experimental {
                sgmv: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("sgmv, LoRA bf16 {lora_bf16}");
        let cases = sgmv_cases()
            .into_iter()
            .map(|c| ParityCase {
                bf16_lora: lora_bf16,
                ..c
            })
            .collect();
        assert_all_pass(&run_cases(&b, cases));
    }
}

/// `--cuda-experimental tiled-lora` (the LoRA pair over tiles of 8 tokens on CUDA cores): the
/// tiled set (every SGMV case, segments that straddle tiles, shrinks of several rounds, a
/// mixture per token at K 16, widths that fall back to the segment kernels) against the plain
/// CPU, with f32 and with bf16 A/B, each case checked to have run on the tiled kernels exactly
/// where they take its shape (the backend counts their launches); then the batch-LoRA
/// `linears` cases, whose modules' LoRA takes the pair one module at a time without
/// `batch-lora`. Last, every expand case against the segment kernel with bound 0: from the
/// same u the tiled expand adds the same terms in the same order.
#[test]
fn op_parity_cuda_tiled_lora() {
    use dlp_cuda::lora_tiled::{expand_grid, shrink_grid};
    let rows = dlp_cuda::tune::Tune::from_env()
        .expect("DLP_CUDA_TUNE")
        .tiled_rows as usize;
    for lora_bf16 in [false, true] {
        let tiled = |on| CudaOptions {
            lora_bf16,
            experimental: Experimental {
                tiled_lora: on,
                ..Default::default()
            },
            ..Default::default()
        };
        let Some(b) = cuda(tiled(true)) else {
            return;
        };
        println!("tiled-lora, LoRA bf16 {lora_bf16}");
        let cases: Vec<ParityCase> = tiled_lora_cases()
            .into_iter()
            .map(|c| ParityCase {
                bf16_lora: lora_bf16,
                ..c
            })
            .collect();
        let (mut results, mut ran) = (Vec::new(), 0);
        for c in &cases {
            let Op::Lora { mix: m, expand } = &c.op else {
                unreachable!("tiled_lora_cases holds LoRA cases only")
            };
            let (t, rank) = (
                m.segment_of_token.len(),
                *m.ranks.iter().max().unwrap_or(&0) as usize,
            );
            let takes = rank > 0
                && if *expand {
                    expand_grid(t, m.k, rank, m.out_dim).is_some()
                } else {
                    shrink_grid(t, m.k, rank, m.in_dim, if lora_bf16 { 2 } else { 4 }, rows)
                        .is_some()
                };
            let before = b.launches().tiled_lora;
            results.push((c.id.clone(), run_case(&b, c)));
            let launches = b.launches().tiled_lora - before;
            assert_eq!(launches, u64::from(takes), "{}: tiled launches", c.id);
            ran += usize::from(takes);
        }
        assert!(
            ran >= cases.len() * 2 / 3,
            "{ran} of {} cases tiled",
            cases.len()
        );
        assert_all_pass(&results);
        let before = b.launches().tiled_lora;
        assert_all_pass(&run_cases(&b, batch_lora_cases()));
        assert!(
            b.launches().tiled_lora > before,
            "the linears cases ran no tiled kernel"
        );
        let Some(segment) = cuda(tiled(false)) else {
            return;
        };
        let expands = cases
            .into_iter()
            .filter(|c| matches!(c.op, Op::Lora { expand: true, .. }))
            .map(|c| ParityCase { tol: 0.0, ..c })
            .collect();
        assert_all_pass(&run_cases_against(&b, &segment, expands));
    }
}

/// `--cuda-kv-bf16`: the attention cases and long contexts with the cache stored in bf16, with
/// split attention and wide grids (the KV store on several blocks per token) off and on, against the CPU with keys and values rounded as they are
/// stored ([`CpuProbe::bf16_kv`]): the caches must hold exactly the rounded values and the
/// outputs agree to f32 accumulation.
#[test]
fn op_parity_cuda_kv_bf16() {
    for split in [false, true] {
        let opts = CudaOptions {
            kv_bf16: true,
            experimental: Experimental {
                split_attention: split,
                wide_grids: split,
                fused_kv_store: split,
                ..Default::default()
            },
            ..Default::default()
        };
        let Some(b) = cuda(opts) else {
            return;
        };
        println!("bf16 KV cache, split attention, wide grids and fused KV store {split}");
        assert_all_pass(&run_cases_against(
            &b,
            &CpuProbe::bf16_kv(),
            bf16_kv_cases(),
        ));
    }
}

/// The backends of `with(true)` and `with(false)`, made one at a time: without a GPU the first
/// records the skip and the caller ends.
fn fused_and_unfused(with: impl Fn(bool) -> CudaOptions) -> Option<(CudaBackend, CudaBackend)> {
    let fused = cuda(with(true))?;
    Some((fused, cuda(with(false))?))
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
    let inline = Experimental {
        dependent_launch: true,
        inline_shrink: true,
        ..FUSED
    };
    for (experimental, folds_lora) in [
        (MATVEC, false),
        (FUSED, true),
        (FUSED_SHRINK, true),
        (inline, true),
    ] {
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
            let exact: Vec<ParityCase> = cases
                .iter()
                .map(|c| ParityCase {
                    tol: 0.0,
                    ..c.clone()
                })
                .collect();
            let before = (fused.launches().silu_mul, unfused.launches().silu_mul);
            assert_all_pass(&run_cases_against(&fused, &unfused, exact));
            let lora = cases
                .iter()
                .filter(|c| matches!(&c.op, Op::Linears { mix: Some(_), .. }))
                .count() as u64;
            assert!(
                lora >= 8 && cases.len() as u64 - lora >= 8,
                "{lora} LoRA cases"
            );
            assert_eq!(unfused.launches().silu_mul - before.1, cases.len() as u64);
            let kept = if folds_lora { 0 } else { lora };
            assert_eq!(fused.launches().silu_mul - before.0, kept);
            if bf16_compute {
                let probe = CpuProbe::bf16_inputs();
                assert_all_pass(&run_cases_against(&fused, &probe, cases));
            } else {
                assert_all_pass(&run_cases(&fused, cases));
            }
        }
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

//! The op-parity table on the CUDA backend against the CPU reference (`--features cuda`).
//! Without a GPU: `SKIPPED: no CUDA device`, unless `DLP_REQUIRE_CUDA=1`. Then the bf16-weight
//! cases on the backend with bf16 weight storage, the decode-matvec cases with
//! `--cuda-experimental decode-matvec` (and `fused-lora`), the whole table and long contexts
//! with `wide-grids,split-attention`, the bf16 compute mode against the CPU with the
//! same input rounding, and the LoRA cases on tensor cores with `sgmv`. The fusions held at
//! bound 0 to the launches they replace are in `op_parity_cuda/exact.rs`.
#![cfg(feature = "cuda")]

use dlp_cuda::{CudaBackend, CudaOptions, Experimental};
use dlp_tests::backend_or_skip;
use dlp_tests::cpu_probe::CpuProbe;
use dlp_tests::parity::{
    assert_all_pass, batch_lora_cases, bf16_kv_cases, bf16_lora_cases, bf16_weight_cases,
    decode_matvec_cases, run_all, run_case, run_cases, run_cases_against, sample_cases, sgmv_cases,
    split_attention_cases, tiled_lora_cases, Op, ParityCase,
};

#[path = "op_parity_cuda/exact.rs"]
mod exact;

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

/// `sample` (`--cuda-experimental device-sampling`'s op; the op itself runs without the
/// switch, which only lets steps use it): each row's draw bit for bit the CPU's, at Llama 3's
/// vocabulary too. Not in the whole table: WGSL has no f64 and reports it unsupported.
#[test]
fn op_parity_cuda_sample() {
    let Some(b) = cuda(CudaOptions::default()) else {
        return;
    };
    assert_all_pass(&run_cases(&b, sample_cases()));
}

/// `--cuda-experimental packed-upload`: every op that reads the step's plan (embedding, rope,
/// the KV store, attention, LoRA, logits, sample) reads it from the one packed buffer; the
/// whole table and the sample rows, at the default path's bounds.
#[test]
fn op_parity_cuda_packed_upload() {
    let opts = CudaOptions {
        experimental: Experimental {
            packed_upload: true,
            ..Experimental::NONE
        },
        ..Default::default()
    };
    let Some(b) = cuda(opts) else {
        return;
    };
    let mut results = run_all(&b);
    results.extend(run_cases(&b, sample_cases()));
    assert_all_pass(&results);
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

/// `--cuda-experimental decode-matvec,fused-lora,dependent-launch,expand-launch`: each group's
/// shrinks in one launch, the plain matvec a programmatic dependent of it (waiting for it
/// before reading x), then every module's expand in one launch. With u and the entry table
/// poisoned before each shrink, an expand that ran before its shrink had finished fails.
#[test]
fn op_parity_cuda_expand_launch() {
    let expand = Experimental {
        dependent_launch: true,
        expand_launch: true,
        ..FUSED
    };
    fused_lora_sets_pass("expand-launch", expand, 1);
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

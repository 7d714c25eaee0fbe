//! Every fixture case on the CUDA backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds (`--features cuda`). Without a GPU: `SKIPPED: no CUDA device`, unless
//! `DLP_REQUIRE_CUDA=1`. Then every fixture again with bf16 weight storage, under its own bound.
#![cfg(feature = "cuda")]

use dlp_cuda::{CudaBackend, CudaOptions, LaunchCounter};
use dlp_tests::{
    backend_or_skip, bf16_compute_logit_tol, bf16_logit_tol, fixture_tests, kv_bf16_logit_tol,
    lora_bf16_logit_tol, lora_tf32_logit_tol, run_golden, run_golden_bf16_weights,
    run_golden_within,
};

fn run_fixture(name: &str) {
    if let Some(b) = backend_or_skip(CudaBackend::new(0), "DLP_REQUIRE_CUDA") {
        run_golden(name, b);
    }
}

fixture_tests!(run_fixture);
dlp_tests::gguf_fixture_tests!(run_fixture);
dlp_tests::rope_fixture_tests!(run_fixture);
dlp_tests::phi3_fixture_tests!(run_fixture);
dlp_tests::gemma_fixture_tests!(run_fixture);
dlp_tests::granite_fixture_tests!(run_fixture);
dlp_tests::smollm3_fixture_tests!(run_fixture);
dlp_tests::post_norm_fixture_tests!(run_fixture);
dlp_tests::llama_variant_fixture_tests!(run_fixture);
dlp_tests::pair_rope_fixture_tests!(run_fixture);
dlp_tests::cohere_fixture_tests!(run_fixture);
dlp_tests::norm_bias_fixture_tests!(run_fixture);
dlp_tests::activation_fixture_tests!(run_fixture);
dlp_tests::compat_fixture_tests!(run_fixture);

/// The same fixtures with the 2-D weights stored in bf16 (`--cuda-bf16-weights`, the
/// `matmul_bf16` / `embedding_bf16` kernels), under [`bf16_logit_tol`]: the bound the CPU
/// backend meets on the same rounded weights.
mod bf16_weights {
    use super::*;

    fn run_fixture(name: &str) {
        let opts = CudaOptions {
            bf16_weights: true,
            ..Default::default()
        };
        if let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA") {
            run_golden_bf16_weights(name, b, bf16_logit_tol(name));
        }
    }

    fixture_tests!(run_fixture);
    dlp_tests::scored_fixture_tests!(run_fixture);
}

/// `--cuda-bf16-compute` (weights in bf16, every base matmul's and the lm_head's input rounded
/// to bf16, cublasGemmEx on tensor cores for prefill and batches), under
/// [`bf16_compute_logit_tol`]: the bound the CPU meets with the same rounding.
mod bf16_compute {
    use super::*;

    fn run_fixture(name: &str) {
        let opts = CudaOptions {
            bf16_compute: true,
            ..Default::default()
        };
        if let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA") {
            run_golden_bf16_weights(name, b, bf16_compute_logit_tol(name));
        }
    }

    fixture_tests!(run_fixture);
    dlp_tests::scored_fixture_tests!(run_fixture);
}

/// LoRA A and B stored in bf16 (`--cuda-lora-bf16`), f32 weights, under
/// [`lora_bf16_logit_tol`]: the bound the CPU meets with the adapters rounded the same way.
mod lora_bf16 {
    use super::*;

    fn run_fixture(name: &str) {
        let opts = CudaOptions {
            lora_bf16: true,
            ..Default::default()
        };
        if let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA") {
            run_golden_within(name, b, lora_bf16_logit_tol(name));
        }
    }

    fixture_tests!(run_fixture);
    dlp_tests::scored_fixture_tests!(run_fixture);
}

/// The KV cache stored in bf16 (`--cuda-kv-bf16`), f32 weights, with split attention off and
/// on (the flash-decoding kernels read the bf16 cache too), under [`kv_bf16_logit_tol`]: the
/// bound the CPU meets with keys and values rounded the same way.
mod kv_bf16 {
    use super::*;
    use dlp_cuda::Experimental;

    fn run_fixture(name: &str) {
        for split_attention in [false, true] {
            let opts = CudaOptions {
                kv_bf16: true,
                experimental: Experimental {
                    split_attention,
                    ..Default::default()
                },
                ..Default::default()
            };
            let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA")
            else {
                return;
            };
            println!("{name}: bf16 KV cache, split attention {split_attention}");
            run_golden_within(name, b, kv_bf16_logit_tol(name));
        }
    }

    fixture_tests!(run_fixture);
    dlp_tests::scored_fixture_tests!(run_fixture);
}

/// The unverified paths (`--cuda-experimental`): each alone in the bf16 compute mode, one test
/// module per path (`experimental::sgmv::tiny_llama`, ...) so that a failure names its path and,
/// run one test per process as `scripts/gpu-check.sh` does, a kernel fault that poisons the CUDA
/// context cannot fail the other paths' tests; then, in `experimental::combined`, all but `sgmv`
/// with f32 weights under the f32 bounds, all under the TF32 LoRA bound, with bf16 weights and in
/// the bf16 compute mode under theirs, and with bf16 LoRA and KV cache as well under the sum of
/// the bounds (bf16 compute with bf16 LoRA measured together on the CPU, `golden_cpu
/// bf16_compute_and_lora`: tiny fixtures up to 3.82e-2, SmolLM2 3.86e-1). `sgmv` rounds the LoRA
/// products' inputs to TF32: its bound ([`lora_tf32_logit_tol`]) adds to the others.
mod experimental {
    use super::*;
    use dlp_cuda::Experimental;

    const NONE: Experimental = Experimental::NONE;
    const ALL: Experimental = Experimental::ALL;
    /// What passed on the f32 bounds before `sgmv` existed.
    const ALL_BUT_SGMV: Experimental = Experimental { sgmv: false, ..ALL };

    fn cuda(opts: CudaOptions) -> Option<CudaBackend> {
        backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA")
    }

    /// Fixture `name` in the bf16 compute mode with only the paths of `experimental` on, under
    /// the mode's bound (plus the TF32 bound when `sgmv` is on); false where it was skipped
    /// (no GPU), so that a test of several configurations skips once.
    fn alone(name: &str, what: &str, experimental: Experimental) -> bool {
        // A fixture not carried to the GPU machine (SmolLM2's) skips here, before the checks
        // below would count its steps.
        if dlp_tests::fixtures(name).is_none() {
            return false;
        }
        let opts = CudaOptions {
            bf16_compute: true,
            experimental,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else { return false };
        println!("{name}: bf16 compute, --cuda-experimental {what}");
        let tf32 = if experimental.sgmv {
            lora_tf32_logit_tol(name)
        } else {
            0.0
        };
        let counter = b.launch_counter();
        run_golden_bf16_weights(name, b, bf16_compute_logit_tol(name) + tf32);
        check_graphs_ran(&counter, experimental, &format!("{name}, {what}"));
        true
    }

    /// With graphs on, some step must have replayed a captured graph and none have fallen back
    /// to running eagerly (a failed capture, a plan moved under its graph): the eager run
    /// computes the same values, so the logits alone cannot tell.
    fn check_graphs_ran(counter: &LaunchCounter, experimental: Experimental, what: &str) {
        if experimental.graphs {
            let c = counter.counts();
            println!(
                "{what}: {} graphs captured, {} replays",
                c.graph_captures, c.graph_replays
            );
            assert!(
                c.graph_replays > 0,
                "{what}: no step replayed a CUDA graph: {c:?}"
            );
            assert_eq!(
                c.graph_failures, 0,
                "{what}: steps fell back to eager: {c:?}"
            );
        }
    }

    /// A test module `$module` running every fixture with the paths `$paths` (the CLI's
    /// spelling) on alone.
    macro_rules! alone_tests {
        ($module:ident, $paths:literal, $experimental:expr) => {
            mod $module {
                use super::*;
                fn run_fixture(name: &str) {
                    alone(name, $paths, $experimental);
                }
                fixture_tests!(run_fixture);
            }
        };
    }

    alone_tests!(
        decode_matvec,
        "decode-matvec",
        Experimental {
            decode_matvec: true,
            ..NONE
        }
    );
    // Fused LoRA rides on the decode matvec.
    alone_tests!(
        fused_lora,
        "decode-matvec,fused-lora",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            ..NONE
        }
    );
    // The matvec started while its shrink runs (programmatic dependent launch) rides on both.
    alone_tests!(
        fused_shrink,
        "decode-matvec,fused-lora,fused-shrink",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            fused_shrink: true,
            ..NONE
        }
    );
    // Dependent launches matter for the decode matvec only.
    alone_tests!(
        dependent_launch,
        "decode-matvec,dependent-launch",
        Experimental {
            decode_matvec: true,
            dependent_launch: true,
            ..NONE
        }
    );
    alone_tests!(
        wide_grids,
        "wide-grids",
        Experimental {
            wide_grids: true,
            ..NONE
        }
    );
    alone_tests!(
        split_attention,
        "split-attention",
        Experimental {
            split_attention: true,
            ..NONE
        }
    );
    alone_tests!(
        graphs,
        "graphs",
        Experimental {
            graphs: true,
            ..NONE
        }
    );
    alone_tests!(sgmv, "sgmv", Experimental { sgmv: true, ..NONE });
    /// One host-to-device copy per step instead of up to eight: alone, and with graphs (a replay
    /// copies into the recorded buffer, so steps of one shape must keep their layout).
    mod packed_upload {
        use super::*;
        fn run_fixture(name: &str) {
            let x = Experimental {
                packed_upload: true,
                ..NONE
            };
            let graphs = Experimental { graphs: true, ..x };
            if alone(name, "packed-upload", x) {
                alone(name, "packed-upload,graphs", graphs);
            }
        }
        fixture_tests!(run_fixture);
    }
    alone_tests!(
        fused_norm,
        "fused-norm",
        Experimental {
            fused_norm: true,
            ..NONE
        }
    );
    alone_tests!(
        fused_rope,
        "fused-rope",
        Experimental {
            fused_rope: true,
            ..NONE
        }
    );
    alone_tests!(
        fused_kv_store,
        "fused-kv-store",
        Experimental {
            fused_kv_store: true,
            ..NONE
        }
    );
    // The shrink in the matvec's grid rides on the fused LoRA, with the grid a dependent of
    // the kernel writing x (the overlap it exists for).
    alone_tests!(
        inline_shrink,
        "decode-matvec,fused-lora,dependent-launch,inline-shrink",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            dependent_launch: true,
            inline_shrink: true,
            ..NONE
        }
    );
    // The expands after the plain matvec, with the matvec a dependent of the shrink launch
    // (the order it relies on) and the folds on (which it must not take for LoRA groups).
    alone_tests!(
        expand_launch,
        "decode-matvec,fused-lora,dependent-launch,fused-silu,norm-in-matvec,expand-launch",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            dependent_launch: true,
            fused_silu: true,
            norm_in_matvec: true,
            expand_launch: true,
            ..NONE
        }
    );
    // expand-launch's shrink and expand as dependent launches that load their adapter rows
    // before they wait, the kernels writing x releasing them at their start (dependent-launch).
    alone_tests!(
        lora_prefetch,
        "decode-matvec,fused-lora,dependent-launch,expand-launch,lora-prefetch",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            dependent_launch: true,
            expand_launch: true,
            lora_prefetch: true,
            ..NONE
        }
    );
    // Alone (no decode matvec), every decode step with LoRA takes it, one token or several.
    alone_tests!(
        batch_lora,
        "batch-lora",
        Experimental {
            batch_lora: true,
            ..NONE
        }
    );
    alone_tests!(
        tiled_lora,
        "tiled-lora",
        Experimental {
            tiled_lora: true,
            ..NONE
        }
    );
    // The rope inside attention rides on the fused store (decode steps).
    alone_tests!(
        rope_in_attention,
        "fused-kv-store,rope-in-attention",
        Experimental {
            fused_kv_store: true,
            rope_in_attention: true,
            ..NONE
        }
    );
    alone_tests!(
        inline_combine,
        "split-attention,inline-combine",
        Experimental {
            split_attention: true,
            inline_combine: true,
            ..NONE
        }
    );
    // The silu fold rides on the decode matvec; with the fused LoRA it folds the LoRA steps
    // too.
    alone_tests!(
        fused_silu,
        "decode-matvec,fused-lora,fused-silu",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            fused_silu: true,
            ..NONE
        }
    );
    // With inline shrinks under dependent launches, the down projection's grid follows the
    // gate/up one directly (no silu_mul launch between them) and starts while it runs: the
    // two grids' inline-shrink counters must be apart.
    alone_tests!(
        fused_silu_inline,
        "decode-matvec,fused-lora,dependent-launch,inline-shrink,fused-silu",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            dependent_launch: true,
            inline_shrink: true,
            fused_silu: true,
            ..NONE
        }
    );
    // The norm fold rides on the decode matvec; with the fused LoRA it folds the LoRA steps
    // too.
    alone_tests!(
        norm_in_matvec,
        "decode-matvec,fused-lora,norm-in-matvec",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            norm_in_matvec: true,
            ..NONE
        }
    );
    // With inline shrinks under dependent launches and the silu fold, each decode layer's o,
    // gate/up and down grids and the next layer's q/k/v grid are dependent launches in a row,
    // each released at its predecessor's start: their four sets of counters must be apart.
    alone_tests!(
        norm_in_matvec_inline,
        "decode-matvec,fused-lora,dependent-launch,inline-shrink,fused-silu,norm-in-matvec",
        Experimental {
            decode_matvec: true,
            fused_lora: true,
            dependent_launch: true,
            inline_shrink: true,
            fused_silu: true,
            norm_in_matvec: true,
            ..NONE
        }
    );

    /// `kv-copy`: prefix sharing on CUDA (the scheduler copies a running sequence's KV rows
    /// for a prompt that starts as its does), in f32 and in the bf16 compute mode with the
    /// bf16 KV cache, against the same prompts computed in full on the same backend; then the
    /// copy itself, at offsets on and off the packed bf16 cache's whole words.
    mod kv_copy {
        use super::*;
        use dlp_engine::Backend;
        use dlp_tests::prefix_sharing::check_prefix_sharing;
        use dlp_tests::{fixtures, kv_bf16_logit_tol, Fixture};

        const KV_COPY: Experimental = Experimental {
            kv_copy: true,
            ..NONE
        };

        fn run_fixture(name: &str) {
            let Some(dir) = fixtures(name) else { return };
            let fx = Fixture::open(&dir);
            // f32: the two runs differ only in which rows share a launch. bf16: a rounding
            // that flips there moves the logits by up to the modes' bounds.
            let bf16_tol = bf16_compute_logit_tol(name) + kv_bf16_logit_tol(name);
            for (bf16, tol) in [(false, 1e-3), (true, bf16_tol)] {
                let opts = CudaOptions {
                    bf16_compute: bf16,
                    kv_bf16: bf16,
                    experimental: KV_COPY,
                    ..Default::default()
                };
                let Some(b) = cuda(opts) else { return };
                println!("{name}: bf16 compute and KV cache {bf16}, --cuda-experimental kv-copy");
                let model = fx.load(b).unwrap();
                check_prefix_sharing(&model, &fx, tol);
            }
        }

        #[test]
        fn tiny_llama() {
            run_fixture("tiny-llama");
        }

        #[test]
        fn tiny_llama3() {
            run_fixture("tiny-llama3");
        }

        /// Values copied within one KV buffer come back as a host copy moves them, in f32 and
        /// in packed bf16 (odd offsets and lengths go through the host); ranges past the
        /// buffer or overlapping are errors; without the switch the backend does not copy.
        #[test]
        fn copies_values_at_any_offset() {
            // Exact in bf16, so that packing keeps them.
            let values: Vec<f32> = (0..64).map(|i| i as f32 - 20.5).collect();
            for kv_bf16 in [false, true] {
                let opts = CudaOptions {
                    kv_bf16,
                    experimental: KV_COPY,
                    ..Default::default()
                };
                let Some(b) = cuda(opts) else { return };
                assert!(b.copies_kv());
                // The first two share a word between source and destination in bf16.
                let cases = [
                    (0, 3, 3),
                    (3, 0, 3),
                    (0, 32, 16),
                    (3, 40, 7),
                    (2, 41, 6),
                    (5, 30, 4),
                    (40, 1, 9),
                    (8, 24, 0),
                ];
                for (from, to, len) in cases {
                    let mut buf = b.upload_kv(&values).unwrap();
                    b.copy_kv(&mut buf, from, to, len).unwrap();
                    let got = b.download_kv(&buf, values.len()).unwrap();
                    let mut want = values.clone();
                    want.copy_within(from..from + len, to);
                    assert_eq!(
                        got, want,
                        "kv_bf16 {kv_bf16}: {len} values from {from} to {to}"
                    );
                }
                let mut buf = b.upload_kv(&values).unwrap();
                assert!(b.copy_kv(&mut buf, 60, 0, 8).is_err(), "past the end");
                assert!(b.copy_kv(&mut buf, 0, 4, 8).is_err(), "overlapping");
            }
            let Some(b) = cuda(CudaOptions::default()) else {
                return;
            };
            assert!(!b.copies_kv(), "kv-copy is off by default");
            let mut buf = b.upload_kv(&values).unwrap();
            assert!(b.copy_kv(&mut buf, 0, 32, 8).is_err());
        }
    }

    // The device picks' checks: `device_argmax`, `device_sampling`, `packed_upload_sampling`.
    include!("golden_cuda/device_picks.rs");

    /// Every path together, in each storage and compute mode.
    mod combined {
        use super::*;

        fn run_fixture(name: &str) {
            let compute_tol = bf16_compute_logit_tol(name);
            let tf32 = lora_tf32_logit_tol(name);
            let f32_opts = CudaOptions {
                experimental: ALL_BUT_SGMV,
                ..Default::default()
            };
            let Some(b) = cuda(f32_opts) else { return };
            println!("{name}: f32, --cuda-experimental all but sgmv");
            run_golden(name, b);
            let f32_opts = CudaOptions {
                experimental: ALL,
                ..Default::default()
            };
            if let Some(b) = cuda(f32_opts) {
                println!("{name}: f32, --cuda-experimental all");
                run_golden_within(name, b, tf32);
            }
            for (compute, tol) in [(false, bf16_logit_tol(name)), (true, compute_tol)] {
                let opts = CudaOptions {
                    bf16_weights: true,
                    bf16_compute: compute,
                    experimental: ALL,
                    ..Default::default()
                };
                if let Some(b) = cuda(opts) {
                    println!(
                        "{name}: bf16 weights, bf16 compute {compute}, --cuda-experimental all"
                    );
                    run_golden_bf16_weights(name, b, tol + tf32);
                }
            }
            // What gpu-check.sh benches as bf16c-exp: the roundings' bounds add.
            let opts = CudaOptions {
                bf16_compute: true,
                lora_bf16: true,
                kv_bf16: true,
                experimental: ALL,
                ..Default::default()
            };
            if let Some(b) = cuda(opts) {
                println!(
                    "{name}: bf16 compute, --cuda-lora-bf16, --cuda-kv-bf16, --cuda-experimental all"
                );
                let tol = compute_tol + lora_bf16_logit_tol(name) + tf32 + kv_bf16_logit_tol(name);
                run_golden_bf16_weights(name, b, tol);
            }
        }

        fixture_tests!(run_fixture);
        dlp_tests::scored_fixture_tests!(run_fixture);
    }
}

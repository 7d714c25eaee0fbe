// `device-argmax` and `device-sampling`'s fixture checks: items of golden_cuda.rs's
// `experimental` module (`include!`d there, so that the tests keep the names
// `experimental::<path>::*` that scripts/gpu_check.py reads a path's verdict from).

/// Runs [`dlp_tests::device_argmax::check_device_argmax`] on fixture `name` under each (bf16 compute, paths) of
/// `configs`, each backend first saying it picks on the device as its paths ask.
fn check_device_picks(name: &str, configs: &[(bool, Experimental)]) {
    let Some(dir) = dlp_tests::fixtures(name) else {
        return;
    };
    let fx = dlp_tests::Fixture::open(&dir);
    for &(bf16_compute, experimental) in configs {
        let opts = CudaOptions {
            bf16_compute,
            experimental,
            ..Default::default()
        };
        let Some(b) = cuda(opts) else { return };
        println!("{name}: bf16 compute {bf16_compute}, {experimental:?}");
        let counter = b.launch_counter();
        let model = fx.load(b).unwrap();
        let vocab = model.config.vocab_size;
        use dlp_engine::Backend;
        assert_eq!(model.backend.argmax_on_device(), experimental.device_argmax);
        assert_eq!(
            model.backend.samples_on_device(vocab),
            experimental.device_sampling
        );
        dlp_tests::device_argmax::check_device_argmax(&model, &fx);
        // The picks the check counts as the device's (tokens that came without rows) include
        // host picks of a backend without the kernel: the kernels' own launches say they ran.
        let c = counter.counts();
        assert_eq!(c.argmax > 0, experimental.device_argmax, "{name}: argmax: {c:?}");
        assert_eq!(c.sample > 0, experimental.device_sampling, "{name}: sample: {c:?}");
        check_graphs_ran(&counter, experimental, name);
    }
}

/// `#[test]`s running `run_fixture` on the tiny fixtures (the SmolLM2 cases need fixtures too
/// large for the GPU run to carry), and on Gemma 2's and Granite's, whose logits are soft-capped
/// or divided on the device before the pick.
macro_rules! tiny_fixture_tests {
    ($run:ident) => {
        #[test]
        fn tiny_llama() {
            $run("tiny-llama");
        }

        #[test]
        fn tiny_llama3() {
            $run("tiny-llama3");
        }

        dlp_tests::scored_fixture_tests!($run);
    };
}

/// `device-argmax`: greedy steps pick their tokens on the GPU (`argmax`) and must generate
/// what picks on the host from the same backend's downloaded rows generate
/// ([`check_device_argmax`]): in f32 with that path alone, and in the bf16 compute mode with
/// every path run on a GPU so far (graphs replay the pick with the step).
mod device_argmax {
    use super::*;

    fn run_fixture(name: &str) {
        let alone = Experimental {
            device_argmax: true,
            ..NONE
        };
        let verified = Experimental {
            device_argmax: true,
            lora_prefetch: false,
            packed_upload: false,
            device_sampling: false,
            ..ALL
        };
        check_device_picks(name, &[(false, alone), (true, verified)]);
    }

    tiny_fixture_tests!(run_fixture);
}

/// `device-sampling`: steps that sample at a temperature alone draw their tokens on the GPU
/// (`sample`) from the host sampler's draws and must generate what the host draws from
/// the same backend's downloaded rows generate, bit for bit ([`check_device_argmax`]'s
/// temperature sequence): alone (greedy steps then pick on the host), with
/// `device-argmax`, and in the bf16 compute mode with every path run on a GPU so far (graphs
/// replay the draw with the step, each step's draws uploaded with its plan).
mod device_sampling {
    use super::*;

    fn run_fixture(name: &str) {
        let alone = Experimental {
            device_sampling: true,
            ..NONE
        };
        let with_argmax = Experimental {
            device_argmax: true,
            ..alone
        };
        let verified = Experimental {
            device_sampling: true,
            device_argmax: false,
            lora_prefetch: false,
            packed_upload: false,
            ..ALL
        };
        check_device_picks(
            name,
            &[(false, alone), (false, with_argmax), (true, verified)],
        );
    }

    tiny_fixture_tests!(run_fixture);
}

/// `packed-upload` with `device-sampling` and graphs: the draws read as f32 from the packed
/// buffer and replayed (a module of its own, named after the path it tests, so that a
/// failure here is not put down to `device-sampling`).
mod packed_upload_sampling {
    use super::*;

    fn run_fixture(name: &str) {
        let packed = Experimental {
            packed_upload: true,
            graphs: true,
            device_sampling: true,
            ..NONE
        };
        check_device_picks(name, &[(true, packed)]);
    }

    tiny_fixture_tests!(run_fixture);
}

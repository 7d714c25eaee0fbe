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
        let model = fx.load(b).unwrap();
        let vocab = model.config.vocab_size;
        use dlp_engine::Backend;
        assert_eq!(model.backend.argmax_on_device(), experimental.device_argmax);
        assert_eq!(
            model.backend.samples_on_device(vocab),
            experimental.device_sampling
        );
        dlp_tests::device_argmax::check_device_argmax(&model, &fx);
    }
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

    #[test]
    fn tiny_llama() {
        run_fixture("tiny-llama");
    }

    #[test]
    fn tiny_llama3() {
        run_fixture("tiny-llama3");
    }
}

/// `device-sampling`: steps that sample at a temperature alone draw their tokens on the GPU
/// (`sample`) from the host sampler's draws and must generate what the host draws from
/// the same backend's downloaded rows generate, bit for bit ([`check_device_argmax`]'s
/// temperature sequence): alone (greedy steps then pick on the host), with
/// `device-argmax`, in the bf16 compute mode with every path run on a GPU so far (graphs
/// replay the draw with the step, each step's draws uploaded with its plan), and with
/// `packed-upload` and graphs (the draws read from the packed buffer as f32, replayed).
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
        let packed = Experimental {
            packed_upload: true,
            graphs: true,
            ..alone
        };
        check_device_picks(
            name,
            &[
                (false, alone),
                (false, with_argmax),
                (true, verified),
                (true, packed),
            ],
        );
    }

    #[test]
    fn tiny_llama() {
        run_fixture("tiny-llama");
    }

    #[test]
    fn tiny_llama3() {
        run_fixture("tiny-llama3");
    }
}

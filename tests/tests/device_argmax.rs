//! Greedy steps that pick on the device (`Backend::argmax`, `Model::forward_argmax`) generate
//! what picks on the host from the downloaded rows generate, on the CPU and on wgpu
//! ([`check_device_argmax`] says what it checks); CUDA's kernel is an experimental path,
//! checked in `golden_cuda.rs` (`experimental::device_argmax`).

use dlp_tests::device_argmax::check_device_argmax;
use dlp_tests::{backend_or_skip, cpu_model, fixtures, Fixture};
use dlp_wgpu::{AdapterPolicy, WgpuBackend};

#[test]
fn device_picks_generate_what_host_picks_do_cpu() {
    for name in ["tiny-llama", "tiny-llama3"] {
        let Some(dir) = fixtures(name) else {
            return;
        };
        let fx = Fixture::open(&dir);
        check_device_argmax(&cpu_model(&fx), &fx);
    }
}

#[test]
fn device_picks_generate_what_host_picks_do_wgpu() {
    let Some(dir) = fixtures("tiny-llama") else {
        return;
    };
    let made = WgpuBackend::new(AdapterPolicy::AllowSoftware);
    let Some(b) = backend_or_skip(made, "DLP_REQUIRE_WGPU") else {
        return;
    };
    let fx = Fixture::open(&dir);
    check_device_argmax(&fx.load(b).unwrap(), &fx);
}

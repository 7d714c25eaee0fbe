//! Prefix sharing in the scheduler (`SchedulerConfig::share_prefixes`): sequences that share a
//! prompt prefix (and its mixture) with a running one copy its KV rows, and must generate what
//! they generate when every prompt is computed in full — the same greedy tokens, and first-token
//! logits within float rounding — while fewer prompt tokens go through the model. On the CPU
//! and on wgpu here ([`check_prefix_sharing`] says what it checks); CUDA's copy is an
//! experimental path, checked in `golden_cuda.rs` (`experimental::kv_copy`).

use dlp_tests::prefix_sharing::check_prefix_sharing;
use dlp_tests::{backend_or_skip, cpu_model, fixtures, Fixture};
use dlp_wgpu::{AdapterPolicy, WgpuBackend};

#[test]
fn shared_prefixes_generate_what_full_prompts_do_cpu() {
    // tiny-llama3: grouped-query attention (fewer KV heads), as CUDA's test runs it too.
    for name in ["tiny-llama", "tiny-llama3"] {
        let Some(dir) = fixtures(name) else {
            return;
        };
        let fx = Fixture::open(&dir);
        check_prefix_sharing(&cpu_model(&fx), &fx, 1e-4);
    }
}

#[test]
fn shared_prefixes_generate_what_full_prompts_do_wgpu() {
    let Some(dir) = fixtures("tiny-llama") else {
        return;
    };
    let made = WgpuBackend::new(AdapterPolicy::AllowSoftware);
    let Some(b) = backend_or_skip(made, "DLP_REQUIRE_WGPU") else {
        return;
    };
    let fx = Fixture::open(&dir);
    let model = fx.load(b).unwrap();
    check_prefix_sharing(&model, &fx, 1e-3);
}

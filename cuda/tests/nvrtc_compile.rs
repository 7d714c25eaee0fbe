//! Every kernel file compiles with NVRTC for sm_80 and sm_90 with no error and no warning.
//! Needs libnvrtc only (no GPU): from the CUDA toolkit or the `nvidia-cuda-nvrtc-cu12` wheel,
//! found through `LD_LIBRARY_PATH` or `DLP_NVRTC_LIB`. Without it the test prints `SKIPPED`,
//! unless `DLP_REQUIRE_NVRTC=1` makes that a failure.

use dlp_cuda::nvrtc::{compile_uncached, options, probe, SOURCES};

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if let Err(why) = probe() {
        return dlp_skip::skip(dlp_skip::kind::NVRTC, &why, Some("DLP_REQUIRE_NVRTC"));
    }
    let mut failures = Vec::new();
    for arch in ["sm_80", "sm_90"] {
        for k in &SOURCES {
            match compile_uncached(k, &options(arch)) {
                Ok(c) if c.log.is_empty() => {
                    assert!(
                        c.ptx.contains(".entry"),
                        "{}.cu for {arch}: no kernel in the PTX",
                        k.name
                    );
                    eprintln!(
                        "ok: {}.cu for {arch} ({} bytes of PTX)",
                        k.name,
                        c.ptx.len()
                    );
                }
                Ok(c) => failures.push(format!("{}.cu for {arch}: warnings:\n{}", k.name, c.log)),
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "NVRTC:\n{}", failures.join("\n"));
}

/// The SGMV kernels (`--cuda-experimental sgmv`) run their products on tensor cores: the PTX
/// of lora.cu holds TF32 `mma.sync` and `cvt.rna.tf32` for sm_80 and sm_90. Below sm_80 (no
/// TF32 mma) the file still compiles, with the SGMV bodies trapping (the host refuses the
/// switch there), so older GPUs keep every other LoRA kernel.
#[test]
fn sgmv_kernels_use_tf32_tensor_cores() {
    if let Err(why) = probe() {
        return dlp_skip::skip(dlp_skip::kind::NVRTC, &why, Some("DLP_REQUIRE_NVRTC"));
    }
    let lora = SOURCES.iter().find(|k| k.name == "lora").expect("lora.cu");
    for arch in ["sm_80", "sm_90"] {
        let ptx = compile_uncached(lora, &options(arch)).unwrap().ptx;
        for want in [
            ".entry sgmv_shrink(",
            ".entry sgmv_shrink_bf16(",
            ".entry sgmv_expand(",
            ".entry sgmv_expand_bf16(",
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
            "cvt.rna.tf32.f32",
        ] {
            assert!(
                ptx.contains(want),
                "lora.cu for {arch}: no `{want}` in the PTX"
            );
        }
    }
    let c = compile_uncached(lora, &options("sm_75")).unwrap();
    assert!(c.log.is_empty(), "lora.cu for sm_75: {}", c.log);
    assert!(!c.ptx.contains("mma.sync") && c.ptx.contains(".entry lora_shrink("));
}

/// The entry points the backend's switches load are in their files' PTX (a misspelled one
/// would otherwise surface only on a GPU, in `Kernels::load`).
#[test]
fn the_switches_entry_points_are_in_the_ptx() {
    if let Err(why) = probe() {
        return dlp_skip::skip(dlp_skip::kind::NVRTC, &why, Some("DLP_REQUIRE_NVRTC"));
    }
    for (file, entries) in [
        ("rms_norm", &["add_rms_norm"][..]),
        ("rope", &["rope", "rope_qk"][..]),
        (
            "attention",
            &[
                "kv_store_bf16",
                "attention_bf16",
                "attention_split_bf16",
                "attention_store",
                "attention_store_bf16",
                "attention_split_store",
                "attention_split_store_bf16",
            ][..],
        ),
    ] {
        let k = SOURCES
            .iter()
            .find(|k| k.name == file)
            .expect("kernel file");
        let ptx = compile_uncached(k, &options("sm_90")).unwrap().ptx;
        for e in entries {
            assert!(
                ptx.contains(&format!(".entry {e}(")),
                "{file}.cu: no entry {e}"
            );
        }
    }
}

#[test]
fn a_broken_kernel_reports_its_name_and_the_log() {
    if probe().is_err() {
        return dlp_skip::skip(
            dlp_skip::kind::NVRTC,
            "no libnvrtc",
            Some("DLP_REQUIRE_NVRTC"),
        );
    }
    let bad = dlp_cuda::nvrtc::KernelSource {
        name: "broken",
        src: "extern \"C\" __global__ void f(float* x) { x[0] = undefined_name; }",
    };
    let e = compile_uncached(&bad, &options("sm_90")).unwrap_err();
    assert!(
        e.contains("broken.cu") && e.contains("undefined_name"),
        "{e}"
    );
}

//! The fold entries of matmul.cu (`fused-silu`'s `_silu` matvecs, `norm-in-matvec`'s `_norm`
//! ones): each computes the op it folds with that op's instructions, and no other entry does.

use super::*;

/// `fused-silu`: every `_silu` matvec entry computes silu_mul.cu's expression (IEEE division,
/// `expf`'s exp2 step) in its epilogue, with one copy of the weight loop (its pair loop not
/// unrolled: about the size of the entry without silu); no other matvec entry does. With
/// `-DDLP_PDL` the `_silu` entries release their dependent launch (the down projection) at
/// their start, as the silu_mul launch they replace did, and so do the `_norm` entries
/// (`norm-in-matvec`), as the add_rms_norm launch they replace did, and the plain ones may
/// (`PDL_RELEASE`, `lora-prefetch`'s expand after them); the others still do not.
#[test]
fn fused_silu_matvecs_apply_the_activation_and_the_others_do_not() {
    if nvrtc_missing() {
        return;
    }
    let mut opts = options_for("matmul", "sm_90");
    opts.push("-DDLP_PDL".into());
    prefetch(&[
        (source("matmul"), opts.clone()),
        (source("matmul"), options_for("matmul", "sm_90")),
    ]);
    let ptx = ptx_sm90("matmul");
    let mut silu = 0;
    for name in entries(&ptx, "matvec_bf16_") {
        let body = entry(&ptx, name);
        let has = body.contains("ex2.approx") && body.contains("div.rn.f32");
        assert_eq!(has, name.contains("_silu_"), "{name}");
        if let Some(plain) = name.contains("_silu_").then(|| name.replace("_silu", "")) {
            let (a, b) = (body.len(), entry(&ptx, &plain).len());
            assert!(
                a < b + b / 4,
                "{name}: {a} bytes of PTX against {plain}'s {b}"
            );
            silu += 1;
        }
    }
    assert_eq!(silu, 12, "three kinds of silu entry in four row buckets");
    let pdl = compile_uncached(source("matmul"), &opts).unwrap().ptx;
    let mut released = 0;
    for name in entries(&pdl, "matvec_bf16_") {
        let body = entry(&pdl, name);
        let release = body.find("griddepcontrol.launch_dependents");
        let plain = name.trim_start_matches("matvec_bf16_").starts_with('r');
        assert_eq!(
            release.is_some(),
            name.contains("_silu_") || name.contains("_norm_") || plain,
            "{name} with -DDLP_PDL"
        );
        if let Some(at) = release {
            // At the start: before the inline entries' ticket, and before any wait.
            for later in ["atom.global.add", "griddepcontrol.wait"] {
                let first = body.find(later).unwrap_or(usize::MAX);
                assert!(at < first, "{name}: releases after its first {later}");
            }
            released += 1;
        }
    }
    assert_eq!(
        released, 22,
        "the 12 _silu entries, the 6 _norm ones and the 4 plain ones"
    );
}

/// `norm-in-matvec`: each `_norm` matvec entry (three kinds in the buckets of 1 and 2 rows)
/// counts its finished blocks with a fenced atomic behind a barrier, reads the other blocks'
/// products and the residual through L2, and computes `add_rms_norm`'s expressions with the
/// same instructions: the squares summed in double with a fused multiply-add (as
/// `add_rms_norm` contracts `ss += v * v`), a double division and square root, the butterfly
/// of double shuffles; no other matvec entry does.
#[test]
fn norm_in_matvec_entries_count_their_blocks_and_norm_as_add_rms_norm_does() {
    if nvrtc_missing() {
        return;
    }
    let norm_ops = ["fma.rn.f64", "sqrt.rn.f64", "div.rn.f64", "cvt.rn.f32.f64"];
    let rms = compile_uncached(source("rms_norm"), &options("sm_90"))
        .unwrap()
        .ptx;
    let add_rms_norm = entry(&rms, "add_rms_norm");
    for op in norm_ops {
        assert!(add_rms_norm.contains(op), "add_rms_norm: no {op}");
    }
    let ptx = ptx_sm90("matmul");
    let mut norm = 0;
    for name in entries(&ptx, "matvec_bf16_") {
        let body = entry(&ptx, name);
        let has = norm_ops.iter().all(|op| body.contains(op));
        assert_eq!(has, name.contains("_norm_"), "{name}");
        if has {
            for want in [
                "atom.global.add.u32",
                "membar.gl",
                "bar.sync",
                "ld.global.cg.f32",
                "shfl.sync.bfly.b32",
            ] {
                assert!(body.contains(want), "{name}: no {want}");
            }
            norm += 1;
        }
    }
    assert_eq!(norm, 6, "three kinds of norm entry in two row buckets");
}

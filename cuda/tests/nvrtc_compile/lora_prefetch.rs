//! `lora-prefetch`'s kernels (lora_prefetch.cu) and the plain matvec's release, in the PTX.

use super::*;

/// `lora-prefetch` on sm_90: its shrink and expand release their dependents first; a block
/// that exits early waits before it returns; past that exit, up to the wait of the first path
/// (bf16 A or B^T), they issue their prefetch loads and nothing the launch before may still be
/// writing or that others read: no global store, no read of x (`ld.global.nc.v4.f32`), of u
/// (`ld.global.cg`) or of the output (a generic `ld.f32`); every read of u comes after the last
/// wait. (The f32 path's order is checked by running it: kernels_on_cpu/prefetch.rs.) The plain
/// matvec can release its dependent before its first weight load (PDL_RELEASE); below sm_90
/// the instructions are compiled out.
#[test]
fn lora_prefetch_kernels_load_before_they_wait_and_nothing_else() {
    if nvrtc_missing() {
        return;
    }
    let lora = source("lora");
    prefetch(&[(lora, options("sm_90")), (lora, options("sm_80"))]);
    let ptx = compile_uncached(lora, &options("sm_90")).unwrap().ptx;
    // (entry, waits: the early exit's and one per path, the prefetch load, what must wait)
    let kernels: [(&str, usize, &str, &[&str]); 2] = [
        (
            "lora_shrink_jobs_prefetch",
            3,
            "ld.global.v4.u32",
            &[
                "st.global",
                "\tst.f32",
                "ld.global.nc.v4.f32",
                "ld.global.cg",
            ],
        ),
        (
            "lora_expand_jobs_prefetch",
            2,
            "ld.global.u16",
            &["st.global", "\tst.f32", "ld.global.cg", "\tld.f32"],
        ),
    ];
    for (name, waits, load, after) in kernels {
        let body = entry(&ptx, name);
        let release = body.find("griddepcontrol.launch_dependents");
        let first_wait = body.find("griddepcontrol.wait");
        let exit = body.find("ret;");
        assert!(
            release.is_some() && release < first_wait && first_wait < exit,
            "{name}: release at {release:?}, first wait at {first_wait:?}, first return at {exit:?}"
        );
        assert_eq!(body.matches("griddepcontrol.wait").count(), waits, "{name}");
        let from = exit.unwrap();
        let to = from
            + body[from..].find("griddepcontrol.wait").unwrap_or_else(|| {
                panic!("{name}: no wait after its first return (the early exit's)")
            });
        let region = &body[from..to];
        assert!(region.contains(load), "{name}: no {load} before its wait");
        for early in after {
            assert!(!region.contains(early), "{name}: {early} before its wait");
        }
        let last_wait = body.rfind("griddepcontrol.wait");
        if let Some(u) = body.find("ld.global.cg") {
            assert!(
                last_wait < Some(u),
                "{name}: a read of u before the last wait"
            );
        }
    }
    let sm80 = compile_uncached(lora, &options("sm_80")).unwrap();
    assert!(sm80.log.is_empty());
    for name in ["lora_shrink_jobs_prefetch", "lora_expand_jobs_prefetch"] {
        assert!(
            !entry(&sm80.ptx, name).contains("griddepcontrol"),
            "{name} on sm_80"
        );
    }
    let matmul = compile_uncached(source("matmul"), &options_for("matmul", "sm_90"))
        .unwrap()
        .ptx;
    for r in [1, 2, 4, 8] {
        let body = entry(&matmul, &format!("matvec_bf16_r{r}"));
        let release = body.find("griddepcontrol.launch_dependents");
        let weights = body.find("ld.global.cs.v4");
        assert!(
            release.is_some() && weights.is_some() && release < weights,
            "matvec_bf16_r{r}: release at {release:?}, first weight load at {weights:?}"
        );
    }
}

//! Every kernel file compiles with NVRTC for sm_80 and sm_90 with no error and no warning.
//! Needs libnvrtc only (no GPU): from the CUDA toolkit or the `nvidia-cuda-nvrtc-cu12` wheel,
//! found through `LD_LIBRARY_PATH` or `DLP_NVRTC_LIB`. Without it the test prints `SKIPPED`,
//! unless `DLP_REQUIRE_NVRTC=1` makes that a failure.
//!
//! What NVRTC returned (PTX and log) is kept under the build's target folder, keyed by
//! everything the answer depends on: the prelude, the file, the options, the code that calls
//! NVRTC (`cuda/src/nvrtc.rs`), libnvrtc's version and the loaded libnvrtc (path, size,
//! modification time). A file compiles again when any of it changes; a run with unchanged
//! kernels reads the same answer back instead of spending three minutes of two cores on it.
//! A hit shows that this very library compiled these inputs before, not that it still can
//! (an install whose NVRTC cannot run any more is caught with `DLP_NVRTC_CHECK_CACHE=off`,
//! which compiles all).

use dlp_cuda::nvrtc::{options, probe, KernelSource, MATVEC_FOLDS_DEFINE, SOURCES};
use dlp_cuda::tune::Tune;

#[path = "nvrtc_compile/cache.rs"]
mod cache;
use cache::{compile_uncached, prefetch};

/// [`options`] for `file` as the tests read it: matmul.cu with its `fused-silu` and
/// `norm-in-matvec` entries ([`MATVEC_FOLDS_DEFINE`], the superset the backend compiles where
/// either switch is on; the default module, without them, is compiled by the knobs' test).
fn options_for(file: &str, arch: &str) -> Vec<String> {
    let mut o = options(arch);
    if file == "matmul" {
        o.push(MATVEC_FOLDS_DEFINE.into());
    }
    o
}

#[path = "nvrtc_compile/folds.rs"]
mod folds;
#[path = "nvrtc_compile/lora_prefetch.rs"]
mod lora_prefetch;
#[path = "nvrtc_compile/parts.rs"]
mod parts;

/// The kernel file `name` (`name`.cu) of [`SOURCES`].
fn source(name: &str) -> &'static KernelSource {
    let k = SOURCES.iter().find(|k| k.name == name);
    k.unwrap_or_else(|| panic!("no kernel file {name}.cu in SOURCES"))
}

/// Whether libnvrtc is missing: then the test records its skip (a failure with
/// `DLP_REQUIRE_NVRTC=1`) and returns.
fn nvrtc_missing() -> bool {
    match probe() {
        Ok(()) => false,
        Err(why) => {
            dlp_skip::skip(dlp_skip::kind::NVRTC, &why, Some("DLP_REQUIRE_NVRTC"));
            true
        }
    }
}

/// The PTX of kernel file `file` for sm_90, with the options the tests read it with
/// ([`options_for`]).
fn ptx_sm90(file: &str) -> String {
    compile_uncached(source(file), &options_for(file, "sm_90"))
        .unwrap()
        .ptx
}

/// The names of the PTX's entry points that start with `prefix`, in the module's order.
fn entries<'a>(ptx: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    dlp_cuda::nvrtc::entry_names(ptx).filter(move |n| n.starts_with(prefix))
}

/// The PTX of one entry point, from `.entry name(` to the end of its body.
fn entry(ptx: &str, name: &str) -> String {
    let at = ptx
        .find(&format!(".entry {name}("))
        .unwrap_or_else(|| panic!("no entry {name}"));
    let end = ptx[at..].find("\n}\n").map_or(ptx.len(), |e| at + e);
    ptx[at..end].to_string()
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if nvrtc_missing() {
        return;
    }
    let mut jobs = Vec::new();
    for arch in ["sm_80", "sm_90"] {
        for k in &SOURCES {
            jobs.push((arch, k, options_for(k.name, arch)));
            // matmul.cu also without the fold entries: the module a default backend loads.
            if k.name == "matmul" {
                jobs.push((arch, k, options(arch)));
            }
        }
    }
    jobs.sort_by_key(|(_, k, _)| std::cmp::Reverse(k.src.len()));
    prefetch(
        &jobs
            .iter()
            .map(|(_, k, o)| (*k, o.clone()))
            .collect::<Vec<_>>(),
    );
    let mut failures = Vec::new();
    for (arch, k, opts) in &jobs {
        match compile_uncached(k, opts) {
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
    assert!(failures.is_empty(), "NVRTC:\n{}", failures.join("\n"));
}

/// The decode matvec compiles, warning-free, with every tuning knob a sweep may set off its
/// default (`DLP_CUDA_TUNE`: an unroll of 1 and 16, the persistent grid, 32 warps, 4 warps with
/// an occupancy hint of 8 blocks per SM), and the bounds reach the PTX. These compile the
/// default module (without the fold entries of `MATVEC_FOLDS_DEFINE`): its 12 entries only;
/// with 32 warps also the module with them.
#[test]
fn matvec_compiles_with_the_tuning_knobs() {
    if nvrtc_missing() {
        return;
    }
    let matmul = source("matmul");
    let knob_opts = |knobs: &str| {
        let mut opts = options("sm_90");
        opts.extend(Tune::parse(knobs).expect("valid knobs").defines());
        opts
    };
    // The longest compile first (about 57 s of one core for the first; 10 to 30 s the rest).
    let all = [
        "matvec_unroll=16,matvec_warps=4,matvec_min_blocks=8",
        "matvec_blocks_per_sm=4",
        "matvec_unroll=1",
        "matvec_warps=32",
    ];
    let mut folds = knob_opts("matvec_warps=32");
    folds.push(MATVEC_FOLDS_DEFINE.into());
    let mut jobs: Vec<_> = all.iter().map(|knobs| (matmul, knob_opts(knobs))).collect();
    jobs.insert(1, (matmul, folds));
    prefetch(&jobs);
    for knobs in all {
        let mut opts = knob_opts(knobs);
        let c = compile_uncached(matmul, &opts).unwrap_or_else(|e| panic!("{knobs}: {e}"));
        assert!(c.log.is_empty(), "{knobs}: warnings:\n{}", c.log);
        // Without MATVEC_FOLDS_DEFINE: the 12 entries of the default module, no fold entry.
        let names: Vec<&str> = entries(&c.ptx, "matvec_bf16_").collect();
        assert_eq!(names.len(), 12, "{knobs}: {names:?}");
        assert!(
            names
                .iter()
                .all(|n| !n.contains("_silu_") && !n.contains("_norm_")),
            "{knobs}: {names:?}"
        );
        if knobs == "matvec_warps=32" {
            // A tuned block size bounds every entry's registers, so 1,024 threads launch; the
            // fold entries too (their module with the same knob).
            for e in ["matvec_bf16_r8", "matvec_bf16_lora_inline_r8"] {
                assert!(entry(&c.ptx, e).contains(".maxntid 1024"), "{knobs}: {e}");
            }
            opts.push(MATVEC_FOLDS_DEFINE.into());
            let f = compile_uncached(matmul, &opts).unwrap_or_else(|e| panic!("{knobs}: {e}"));
            assert!(
                f.log.is_empty(),
                "{knobs} with the folds: warnings:\n{}",
                f.log
            );
            for e in [
                "matvec_bf16_lora_inline_silu_r8",
                "matvec_bf16_lora_inline_norm_r2",
            ] {
                assert!(entry(&f.ptx, e).contains(".maxntid 1024"), "{knobs}: {e}");
            }
        }
        if knobs.contains("min_blocks") {
            let e = entry(&c.ptx, "matvec_bf16_r1");
            assert!(
                e.contains(".maxntid 128") && e.contains(".minnctapersm 8"),
                "{knobs}"
            );
        }
    }
}

/// The tiled LoRA shrink compiles, warning-free and without local memory, at every
/// `tiled_rows` a sweep may set (`DLP_CUDA_TUNE`: 1, 4 and 8 rank rows per block).
#[test]
fn tiled_lora_compiles_with_its_tuning_knob() {
    if nvrtc_missing() {
        return;
    }
    let all = ["tiled_rows=1", "tiled_rows=4", "tiled_rows=8"].map(|knobs| {
        let mut opts = options("sm_90");
        opts.extend(Tune::parse(knobs).expect("valid knobs").defines());
        (knobs, opts)
    });
    prefetch(&all.clone().map(|(_, opts)| (source("lora"), opts)));
    for (knobs, opts) in all {
        let c = compile_uncached(source("lora"), &opts).unwrap_or_else(|e| panic!("{knobs}: {e}"));
        assert!(c.log.is_empty(), "{knobs}: warnings:\n{}", c.log);
        for e in ["lora_shrink_tiled", "lora_shrink_tiled_bf16"] {
            assert!(!entry(&c.ptx, e).contains(".local"), "{knobs}: {e}");
        }
    }
}

/// The SGMV kernels (`--cuda-experimental sgmv`) run their products on tensor cores: the PTX
/// of lora.cu holds TF32 `mma.sync` and `cvt.rna.tf32` for sm_80 and sm_90. Below sm_80 (no
/// TF32 mma) the file still compiles, with the SGMV bodies trapping (the host refuses the
/// switch there), so older GPUs keep every other LoRA kernel.
#[test]
fn sgmv_kernels_use_tf32_tensor_cores() {
    if nvrtc_missing() {
        return;
    }
    let lora = source("lora");
    prefetch(&["sm_90", "sm_80", "sm_75"].map(|arch| (lora, options(arch))));
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

/// `fused-shrink` launches each fused-LoRA matvec while its shrink still runs (programmatic
/// dependent launch, sm_90), so on sm_90 the shrink must release its dependents and every
/// matvec with expands must wait before reading u (without the wait it would race the
/// shrink); below sm_90 both instructions are compiled out (the host launches plainly there).
#[test]
fn fused_lora_kernels_carry_the_dependent_launch_controls_on_sm90() {
    if nvrtc_missing() {
        return;
    }
    let matmul = source("matmul");
    // The backend loads the shrink from lora.cu's module.
    let lora = source("lora");
    prefetch(&[
        (matmul, options_for("matmul", "sm_90")),
        (matmul, options_for("matmul", "sm_80")),
        (lora, options("sm_90")),
    ]);
    let ptx = compile_uncached(lora, &options("sm_90")).unwrap().ptx;
    assert!(entry(&ptx, "lora_shrink_jobs").contains("griddepcontrol.launch_dependents"));
    let ptx = compile_uncached(matmul, &options_for("matmul", "sm_90"))
        .unwrap()
        .ptx;
    for r in [1, 2, 4, 8] {
        let body = entry(&ptx, &format!("matvec_bf16_lora_r{r}"));
        // u is read through L2 (`ld.global.cg`), and only after a wait that comes after the
        // weight stream, whose x reads (`ld.global.nc.v4.f32`) end before it: the wait before
        // x (dependent-launch) does not count, since fused-shrink launches without PDL_WAIT_X.
        let last_x = body.rfind("ld.global.nc.v4.f32");
        let wait = body.rfind("griddepcontrol.wait");
        let first_u = body.find("ld.global.cg");
        assert!(
            last_x.is_some()
                && wait.is_some()
                && first_u.is_some()
                && last_x < wait
                && wait < first_u,
            "matvec_bf16_lora_r{r}: last read of x at {last_x:?}, last wait at {wait:?}, first \
             read of u at {first_u:?}"
        );
    }
    let sm80 = compile_uncached(matmul, &options_for("matmul", "sm_80")).unwrap();
    assert!(sm80.log.is_empty() && !sm80.ptx.contains("griddepcontrol"));
}

/// `dependent-launch`: with `-DDLP_PDL` the kernels that can come just before a decode matvec
/// release it at their start, and without it their PTX has no dependent-launch instruction
/// (the default build is unchanged); every decode matvec waits for the kernel before it
/// (`PDL_WAIT_X`) after its first weight loads and before its first read of x.
#[test]
fn dependent_launch_releases_and_waits_where_the_matvec_needs_them() {
    if nvrtc_missing() {
        return;
    }
    let pdl = || {
        let mut opts = options("sm_90");
        opts.push("-DDLP_PDL".into());
        opts
    };
    let files = [
        ("rms_norm", &["rms_norm", "add_rms_norm"][..]),
        ("silu_mul", &["silu_mul"][..]),
        ("add", &["add"][..]),
        (
            "gelu_mul",
            &["gelu_mul", "gelu", "gelu_erf", "relu_sq", "xielu"][..],
        ),
        ("scale", &["scale"][..]),
        ("softcap", &["softcap"][..]),
        ("center", &["center"][..]),
        ("logits", &["logits_norm"][..]),
        (
            "attention",
            &[
                "attention",
                "attention_bf16",
                "attention_split",
                "attention_split_bf16",
                "attention_store",
                "attention_store_bf16",
                "attention_split_store",
                "attention_split_store_bf16",
                "attention_split_last",
                "attention_split_last_bf16",
                "attention_split_store_last",
                "attention_split_store_last_bf16",
                "attention_store_rope",
                "attention_store_rope_bf16",
                "attention_split_store_rope",
                "attention_split_store_rope_bf16",
                "attention_split_store_last_rope",
                "attention_split_store_last_rope_bf16",
                "attention_softcap",
                "attention_softcap_bf16",
                "attention_combine",
            ][..],
        ),
    ];
    let mut jobs = vec![(source("matmul"), options_for("matmul", "sm_90"))];
    for (file, _) in &files {
        jobs.extend([(source(file), pdl()), (source(file), options("sm_90"))]);
    }
    prefetch(&jobs);
    for (file, entries) in files {
        let k = source(file);
        let opts = pdl();
        let with = compile_uncached(k, &opts).unwrap();
        assert!(with.log.is_empty(), "{file}.cu with DLP_PDL: {}", with.log);
        for e in entries {
            assert!(
                entry(&with.ptx, e).contains("griddepcontrol.launch_dependents"),
                "{file}.cu: {e} does not release its dependents with DLP_PDL"
            );
        }
        let without = compile_uncached(k, &options("sm_90")).unwrap().ptx;
        assert!(
            !without.contains("griddepcontrol"),
            "{file}.cu without DLP_PDL"
        );
    }
    let matmul = source("matmul");
    let ptx = compile_uncached(matmul, &options_for("matmul", "sm_90"))
        .unwrap()
        .ptx;
    for r in [1, 2, 4, 8] {
        let mut names = vec![
            format!("matvec_bf16_r{r}"),
            format!("matvec_bf16_lora_r{r}"),
        ];
        if r <= 2 {
            names.push(format!("matvec_bf16_norm_r{r}"));
            names.push(format!("matvec_bf16_lora_norm_r{r}"));
        }
        for name in names {
            let body = entry(&ptx, &name);
            let weights = body.find("ld.global.cs.v4");
            let wait = body.find("griddepcontrol.wait");
            let x = body.find("ld.global.nc.v4.f32");
            assert!(
                weights.is_some() && wait.is_some() && x.is_some() && weights < wait && wait < x,
                "{name}: weight loads at {weights:?}, wait at {wait:?}, first read of x at {x:?}"
            );
        }
    }
}

/// The decode matvecs and the batch-LoRA expand (and lora-prefetch's shrink and expand, whose
/// prefetched A row and B^T terms are arrays indexed by unrolled loops only) read their
/// parameter structs in place: no
/// entry copies one to local memory, as indexing a struct's array by a variable did (11 local
/// stores per thread ahead of each matvec's first weight load, in the SASS). The tiled LoRA
/// kernels keep their per-token sums and row values in registers (arrays indexed only by
/// unrolled loops).
#[test]
fn matvecs_and_the_lora_job_and_tile_kernels_use_no_local_memory() {
    if nvrtc_missing() {
        return;
    }
    let mut checked = 0;
    for (file, prefix) in [
        ("matmul", "matvec_bf16_"),
        ("lora", "lora_expand_jobs"),
        ("lora", "lora_shrink_jobs_prefetch"),
        ("lora", "lora_shrink_tiled"),
        ("lora", "lora_expand_tiled"),
    ] {
        let ptx = ptx_sm90(file);
        for name in entries(&ptx, prefix) {
            let body = entry(&ptx, name);
            assert!(
                !body.contains(".local"),
                "{file}.cu: {name} uses local memory"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 37,
        "30 matvec entries (12 of them fused-silu's, 6 norm-in-matvec's), the batch expand, \
         lora-prefetch's shrink and expand, the tiled shrink and expand (f32 and bf16)"
    );
}

/// `inline-shrink`: each `matvec_bf16_lora_inline{,_silu,_norm}_r*` takes its block's ticket and counts its
/// shrink blocks with atomics, waits for the kernel writing x (dependent launch) before its
/// shrink blocks read it, polls the done counter with a volatile load (sleeping between polls)
/// behind a fence, and reads u through L2.
#[test]
fn inline_shrink_matvecs_carry_their_tickets_and_waits() {
    if nvrtc_missing() {
        return;
    }
    let ptx = ptx_sm90("matmul");
    let norm = [1, 2].map(|r| format!("matvec_bf16_lora_inline_norm_r{r}"));
    for name in [1, 2, 4, 8]
        .into_iter()
        .flat_map(|r| {
            [
                format!("matvec_bf16_lora_inline_r{r}"),
                format!("matvec_bf16_lora_inline_silu_r{r}"),
            ]
        })
        .chain(norm)
    {
        let body = entry(&ptx, &name);
        for want in [
            "atom.global.add.u32",
            "griddepcontrol.wait",
            "ld.volatile.global.u32",
            "nanosleep.u32",
            "membar.gl",
            "ld.global.cg.f32",
            "bar.sync",
        ] {
            assert!(body.contains(want), "{name}: no {want}");
        }
        // Three counters: the ticket, a shrink block done, a block finished.
        assert!(body.matches("atom.global.add.u32").count() >= 3, "{name}");
    }
}

/// Every entry point `Kernels::load` asks for (each `get("file", "entry")` in
/// `src/kernels.rs`, each attention `pair("entry")`: `entry` and `entry_bf16`, each matvec
/// `buckets("entry")`: `entry_r1` to `entry_r8`, and each `two("entry")`: `entry_r1` and
/// `entry_r2`) is in its
/// file's PTX: a misspelled or missing one would otherwise surface only on a GPU, when the
/// backend loads.
#[test]
fn every_entry_point_the_backend_loads_is_in_the_ptx() {
    if nvrtc_missing() {
        return;
    }
    let src = include_str!("../src/kernels.rs");
    let mut wanted: Vec<(&str, String)> = src
        .split("get(\"")
        .skip(1)
        .map(|rest| {
            // `file", "entry")?`
            let parts: Vec<&str> = rest.splitn(4, '"').collect();
            assert_eq!(parts.get(1), Some(&", "), "kernels.rs: get(\"{rest:.40}");
            (parts[0], parts[2].to_string())
        })
        .collect();
    let gets = wanted.len();
    for rest in src.split("pair(\"").skip(1) {
        let entry = rest.split('"').next().expect("split yields one piece");
        wanted.push(("attention", entry.to_string()));
        wanted.push(("attention", format!("{entry}_bf16")));
    }
    let pairs = wanted.len() - gets;
    for rest in src.split("buckets(\"").skip(1) {
        let entry = rest.split('"').next().expect("split yields one piece");
        for r in [1, 2, 4, 8] {
            wanted.push(("matmul", format!("{entry}_r{r}")));
        }
    }
    for rest in src.split("two(\"").skip(1) {
        let entry = rest.split('"').next().expect("split yields one piece");
        for r in [1, 2] {
            wanted.push(("matmul", format!("{entry}_r{r}")));
        }
    }
    let buckets = wanted.len() - gets - pairs;
    assert!(
        gets >= 25 && pairs >= 18 && buckets >= 30,
        "found only {gets} get(...), {pairs} pair(...) and {buckets} buckets(...)/two(...) \
         entries"
    );
    let mut ptx_of = std::collections::HashMap::new();
    for (file, entry) in wanted {
        // The fold entries in the module with MATVEC_FOLDS_DEFINE; every other entry in the
        // default one (the backend loads it there when the folds are off).
        let fold = entry.contains("_silu_") || entry.contains("_norm_");
        let ptx = ptx_of.entry((file, fold)).or_insert_with(|| {
            let opts = if fold {
                options_for(file, "sm_90")
            } else {
                options("sm_90")
            };
            compile_uncached(source(file), &opts).unwrap().ptx
        });
        assert!(
            ptx.contains(&format!(".entry {entry}(")),
            "{file}.cu: no entry {entry}"
        );
    }
}

#[test]
fn a_broken_kernel_reports_its_name_and_the_log() {
    if nvrtc_missing() {
        return;
    }
    let bad = dlp_cuda::nvrtc::KernelSource {
        name: "broken",
        src: "extern \"C\" __global__ void f(float* x) { x[0] = undefined_name; }",
        parts: &[],
    };
    let e = compile_uncached(&bad, &options("sm_90")).unwrap_err();
    assert!(
        e.contains("broken.cu") && e.contains("undefined_name"),
        "{e}"
    );
}

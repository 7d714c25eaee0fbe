//! The loaded kernels: every file of [`crate::nvrtc::SOURCES`] compiled for the device's
//! architecture and loaded as one module each (or one per part), with its entry points looked
//! up once.

use std::collections::HashSet;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use crate::nvrtc::{compile, each_module, entry_names, modules};
use crate::tune::Tune;

/// Entry points of the kernel files (see `kernels/<op>.cu`).
pub struct Kernels {
    /// Keeps the modules loaded while the functions are used.
    _modules: Vec<Arc<CudaModule>>,
    pub(crate) embedding: CudaFunction,
    pub(crate) embedding_bf16: CudaFunction,
    pub(crate) matmul_bf16: CudaFunction,
    /// `matvec_bf16_r{1,2,4,8}`: the row buckets of the decode matvec.
    pub(crate) matvec_bf16: [CudaFunction; 4],
    /// `matvec_bf16_lora_r{1,2,4,8}`: the same with fused-LoRA expands.
    pub(crate) matvec_bf16_lora: [CudaFunction; 4],
    /// `matvec_bf16_lora_inline_r{1,2,4,8}`: the same, running the shrink in their grid too
    /// (`inline-shrink`).
    pub(crate) matvec_bf16_lora_inline: [CudaFunction; 4],
    /// `matvec_bf16{,_lora,_lora_inline}_silu_r{1,2,4,8}`: the three above for the gate/up
    /// launch of `fused-silu` (`[plain, lora, lora inline][bucket]`), storing silu(gate) * up.
    /// Loaded with `folds` only (see [`Kernels::load`]).
    pub(crate) matvec_bf16_silu: Option<[[CudaFunction; 4]; 3]>,
    /// `matvec_bf16{,_lora,_lora_inline}_norm_r{1,2}`: the three for the o and down launches
    /// of `norm-in-matvec` (`[plain, lora, lora inline][bucket]`, the buckets of up to
    /// [`crate::NORM_FOLD_MAX_ROWS`] rows), whose last block runs `add_rms_norm` on the output.
    /// Loaded with `folds` only.
    pub(crate) matvec_bf16_norm: Option<[[CudaFunction; 2]; 3]>,
    /// Static shared memory (bytes) of the loaded entries that have any (the inline ones, silu
    /// or not, and the norm ones), the most of them: their launches stage x in what the 48 KiB
    /// default leaves.
    pub(crate) matvec_static_shared: usize,
    pub(crate) lora_shrink_jobs: CudaFunction,
    /// `lora_expand_jobs`: the expands of a `batch-lora` or `expand-launch` group, after its
    /// base products.
    pub(crate) lora_expand_jobs: CudaFunction,
    /// `lora_shrink_jobs_prefetch` and `lora_expand_jobs_prefetch`: `lora-prefetch`'s shrink
    /// and expand, programmatic dependents that read A or B^T before they wait.
    pub(crate) lora_shrink_jobs_prefetch: CudaFunction,
    pub(crate) lora_expand_jobs_prefetch: CudaFunction,
    pub(crate) to_bf16: CudaFunction,
    pub(crate) rms_norm: CudaFunction,
    pub(crate) add_rms_norm: CudaFunction,
    pub(crate) bias_add: CudaFunction,
    pub(crate) rope: CudaFunction,
    pub(crate) rope_qk: CudaFunction,
    pub(crate) kv_store: CudaFunction,
    pub(crate) kv_store_bf16: CudaFunction,
    /// The attention entries, each as `[f32 cache, bf16 cache]` (`name`, `name_bf16`); see
    /// kernels/attention.cu and [`AttnKernels`].
    pub(crate) attn: AttnKernels,
    pub(crate) attention_combine: CudaFunction,
    pub(crate) silu_mul: CudaFunction,
    pub(crate) gelu_mul: CudaFunction,
    pub(crate) gelu: CudaFunction,
    pub(crate) gelu_erf: CudaFunction,
    pub(crate) relu_sq: CudaFunction,
    pub(crate) xielu: CudaFunction,
    pub(crate) scale: CudaFunction,
    pub(crate) softcap: CudaFunction,
    pub(crate) clamp: CudaFunction,
    pub(crate) center: CudaFunction,
    pub(crate) add: CudaFunction,
    pub(crate) lora_shrink: CudaFunction,
    pub(crate) lora_shrink_bf16: CudaFunction,
    pub(crate) lora_expand: CudaFunction,
    pub(crate) lora_expand_bf16: CudaFunction,
    pub(crate) sgmv_shrink: CudaFunction,
    pub(crate) sgmv_shrink_bf16: CudaFunction,
    pub(crate) sgmv_expand: CudaFunction,
    pub(crate) sgmv_expand_bf16: CudaFunction,
    /// `lora_*_tiled*`: the pair over token tiles (`tiled-lora`).
    pub(crate) lora_shrink_tiled: CudaFunction,
    pub(crate) lora_shrink_tiled_bf16: CudaFunction,
    pub(crate) lora_expand_tiled: CudaFunction,
    pub(crate) lora_expand_tiled_bf16: CudaFunction,
    pub(crate) logits_norm: CudaFunction,
    pub(crate) argmax: CudaFunction,
    pub(crate) sample: CudaFunction,
}

impl Kernels {
    /// Compiles (or takes from the PTX cache) and loads every kernel module for `arch`, the
    /// modules at once on the CPU's threads ([`crate::nvrtc::modules`]: every file, matmul.cu
    /// in its parts, with `dependent_launch`'s `DLP_PDL`, `folds`' `_silu` and `_norm` matvec
    /// entries (`fused-silu` or `norm-in-matvec` on) and the defines each file reads of `tune`;
    /// [`crate::nvrtc::each_module`]). Errors name the file (and part) and what failed.
    pub fn load(
        ctx: &Arc<CudaContext>,
        arch: &str,
        dependent_launch: bool,
        folds: bool,
        tune: &Tune,
    ) -> Result<Kernels, String> {
        let mods = modules(dependent_launch, folds, tune);
        let threads = compile_threads()?;
        let loaded = each_module(&mods, threads, |m| {
            let c = compile(m.file, arch, &m.defines()).map_err(|e| match m.part {
                Some(_) => format!("{}: {e}", m.label()),
                None => e,
            })?;
            let entries: HashSet<String> = entry_names(&c.ptx).map(str::to_string).collect();
            let module = ctx
                .load_module(Ptx::from_src(c.ptx))
                .map_err(|e| format!("loading kernel {}: {e}", m.label()))?;
            Ok((m.file.name, entries, module))
        })?;
        // The module of `file` (of its parts, the one) holding entry `f`.
        let get = |file: &str, f: &str| -> Result<CudaFunction, String> {
            let mut of_file = loaded.iter().filter(|(n, _, _)| *n == file).peekable();
            if of_file.peek().is_none() {
                return Err(format!("kernel file {file}.cu is not loaded"));
            }
            let (_, _, m) = of_file
                .find(|(_, entries, _)| entries.contains(f))
                .ok_or_else(|| format!("kernel {file}.cu has no function `{f}`"))?;
            m.load_function(f)
                .map_err(|e| format!("kernel {file}.cu has no function `{f}`: {e}"))
        };
        // The four row buckets of a matvec entry (`name_r1` ... `name_r8`).
        let buckets = |name: &str| -> Result<[CudaFunction; 4], String> {
            let file = "matmul";
            let r = |n: usize| get(file, &format!("{name}_r{n}"));
            Ok([r(1)?, r(2)?, r(4)?, r(8)?])
        };
        let matvec_bf16_lora_inline = buckets("matvec_bf16_lora_inline")?;
        let matvec_bf16_silu = folds
            .then(|| -> Result<_, String> {
                Ok([
                    buckets("matvec_bf16_silu")?,
                    buckets("matvec_bf16_lora_silu")?,
                    buckets("matvec_bf16_lora_inline_silu")?,
                ])
            })
            .transpose()?;
        // An attention entry on an f32 cache and on a bf16 one (`name`, `name_bf16`).
        let pair = |f: &str| -> Result<[CudaFunction; 2], String> {
            let file = "attention";
            Ok([get(file, f)?, get(file, &format!("{f}_bf16"))?])
        };
        // The buckets of 1 and 2 rows only (the `_norm` entries).
        let two = |name: &str| -> Result<[CudaFunction; 2], String> {
            let file = "matmul";
            Ok([
                get(file, &format!("{name}_r1"))?,
                get(file, &format!("{name}_r2"))?,
            ])
        };
        let matvec_bf16_norm = folds
            .then(|| -> Result<_, String> {
                Ok([
                    two("matvec_bf16_norm")?,
                    two("matvec_bf16_lora_norm")?,
                    two("matvec_bf16_lora_inline_norm")?,
                ])
            })
            .transpose()?;
        let mut matvec_static_shared = 0;
        for f in matvec_bf16_lora_inline
            .iter()
            .chain(matvec_bf16_silu.iter().flat_map(|s| &s[2]))
            .chain(matvec_bf16_norm.iter().flatten().flatten())
        {
            let b = f
                .shared_size_bytes()
                .map_err(|e| format!("reading a matvec entry's shared memory size: {e}"))?;
            matvec_static_shared = matvec_static_shared.max(b.max(0) as usize);
        }
        Ok(Kernels {
            embedding: get("embedding", "embedding")?,
            embedding_bf16: get("embedding", "embedding_bf16")?,
            matmul_bf16: get("matmul", "matmul_bf16")?,
            matvec_bf16: buckets("matvec_bf16")?,
            matvec_bf16_lora: buckets("matvec_bf16_lora")?,
            matvec_bf16_lora_inline,
            matvec_bf16_silu,
            matvec_bf16_norm,
            matvec_static_shared,
            lora_shrink_jobs: get("lora", "lora_shrink_jobs")?,
            lora_expand_jobs: get("lora", "lora_expand_jobs")?,
            lora_shrink_jobs_prefetch: get("lora", "lora_shrink_jobs_prefetch")?,
            lora_expand_jobs_prefetch: get("lora", "lora_expand_jobs_prefetch")?,
            to_bf16: get("matmul", "to_bf16")?,
            rms_norm: get("rms_norm", "rms_norm")?,
            add_rms_norm: get("rms_norm", "add_rms_norm")?,
            bias_add: get("matmul", "bias_add")?,
            rope: get("rope", "rope")?,
            rope_qk: get("rope", "rope_qk")?,
            kv_store: get("attention", "kv_store")?,
            kv_store_bf16: get("attention", "kv_store_bf16")?,
            attn: AttnKernels {
                plain: pair("attention")?,
                split: pair("attention_split")?,
                store: pair("attention_store")?,
                split_store: pair("attention_split_store")?,
                split_last: pair("attention_split_last")?,
                split_store_last: pair("attention_split_store_last")?,
                store_rope: pair("attention_store_rope")?,
                split_store_rope: pair("attention_split_store_rope")?,
                split_store_last_rope: pair("attention_split_store_last_rope")?,
                softcap: pair("attention_softcap")?,
            },
            attention_combine: get("attention", "attention_combine")?,
            silu_mul: get("silu_mul", "silu_mul")?,
            gelu_mul: get("gelu_mul", "gelu_mul")?,
            gelu: get("gelu_mul", "gelu")?,
            gelu_erf: get("gelu_mul", "gelu_erf")?,
            relu_sq: get("gelu_mul", "relu_sq")?,
            xielu: get("gelu_mul", "xielu")?,
            scale: get("scale", "scale")?,
            softcap: get("softcap", "softcap")?,
            clamp: get("clamp", "clamp")?,
            center: get("center", "center")?,
            add: get("add", "add")?,
            lora_shrink: get("lora", "lora_shrink")?,
            lora_shrink_bf16: get("lora", "lora_shrink_bf16")?,
            lora_expand: get("lora", "lora_expand")?,
            lora_expand_bf16: get("lora", "lora_expand_bf16")?,
            sgmv_shrink: get("lora", "sgmv_shrink")?,
            sgmv_shrink_bf16: get("lora", "sgmv_shrink_bf16")?,
            sgmv_expand: get("lora", "sgmv_expand")?,
            sgmv_expand_bf16: get("lora", "sgmv_expand_bf16")?,
            lora_shrink_tiled: get("lora", "lora_shrink_tiled")?,
            lora_shrink_tiled_bf16: get("lora", "lora_shrink_tiled_bf16")?,
            lora_expand_tiled: get("lora", "lora_expand_tiled")?,
            lora_expand_tiled_bf16: get("lora", "lora_expand_tiled_bf16")?,
            logits_norm: get("logits", "logits_norm")?,
            argmax: get("logits", "argmax")?,
            sample: get("logits", "sample")?,
            _modules: loaded.into_iter().map(|(_, _, m)| m).collect(),
        })
    }
}

/// Threads that compile and load the modules: `DLP_CUDA_COMPILE_THREADS` (a positive number;
/// 1 compiles one after another in the calling thread), else (unset or empty) one per core.
fn compile_threads() -> Result<usize, String> {
    threads_of(std::env::var("DLP_CUDA_COMPILE_THREADS"))
}

/// [`compile_threads`] of the variable's value.
fn threads_of(var: Result<String, std::env::VarError>) -> Result<usize, String> {
    let v = match var {
        Ok(v) if !v.trim().is_empty() => v,
        Err(std::env::VarError::NotUnicode(_)) => "(not unicode)".into(),
        // Unset or empty (as `DLP_CUDA_TUNE`): the default.
        _ => return Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "DLP_CUDA_COMPILE_THREADS={v}: expected a positive number of threads"
        )),
    }
}

/// The attention kernels, each `[f32 cache, bf16 cache]`: `plain` (one block per (token,
/// head)), `split` (flash-decoding partials, merged by `attention_combine`), `_store` (decode
/// steps store their keys and values inside: `fused-kv-store`), `_last` (the split blocks merge
/// themselves: `inline-combine`), `_rope` (q and k rotated as read: `rope-in-attention`);
/// `softcap` (Gemma 2's capped scores: the plain kernel with the cap, taken alone).
pub(crate) struct AttnKernels {
    pub(crate) plain: [CudaFunction; 2],
    pub(crate) split: [CudaFunction; 2],
    pub(crate) store: [CudaFunction; 2],
    pub(crate) split_store: [CudaFunction; 2],
    pub(crate) split_last: [CudaFunction; 2],
    pub(crate) split_store_last: [CudaFunction; 2],
    pub(crate) store_rope: [CudaFunction; 2],
    pub(crate) split_store_rope: [CudaFunction; 2],
    pub(crate) split_store_last_rope: [CudaFunction; 2],
    pub(crate) softcap: [CudaFunction; 2],
}

impl AttnKernels {
    /// The entry for a launch: `split` (several blocks per (token, head)), `store` (the fused
    /// KV store), `last` (with `split`: merged inside), `rope` (with `store`: rotated inside),
    /// `capped` (Gemma 2's soft-capped scores: the plain launch only), on a bf16 cache or not;
    /// `None` for a combination no kernel has (rope without the store, a cap with any of the
    /// others).
    pub(crate) fn pick(
        &self,
        split: bool,
        store: bool,
        last: bool,
        rope: bool,
        capped: bool,
        kv_bf16: bool,
    ) -> Option<&CudaFunction> {
        if capped {
            let plain = !(split || store || rope);
            return plain.then(|| &self.softcap[usize::from(kv_bf16)]);
        }
        let pair = match (split, store, last && split, rope) {
            (_, false, _, true) => return None,
            (false, false, _, false) => &self.plain,
            (false, true, _, false) => &self.store,
            (false, true, _, true) => &self.store_rope,
            (true, false, false, false) => &self.split,
            (true, false, true, false) => &self.split_last,
            (true, true, false, false) => &self.split_store,
            (true, true, true, false) => &self.split_store_last,
            (true, true, false, true) => &self.split_store_rope,
            (true, true, true, true) => &self.split_store_last_rope,
        };
        Some(&pair[usize::from(kv_bf16)])
    }
}

#[cfg(test)]
mod tests {
    use std::env::VarError;

    #[test]
    fn compile_threads_default_to_the_cores_and_refuse_nonsense() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(super::threads_of(Err(VarError::NotPresent)), Ok(cores));
        assert_eq!(super::threads_of(Ok(" 3".into())), Ok(3));
        assert_eq!(super::threads_of(Ok(" ".into())), Ok(cores));
        for bad in ["0", "-1", "two"] {
            let e = super::threads_of(Ok(bad.into())).unwrap_err();
            assert!(
                e.contains(&format!("DLP_CUDA_COMPILE_THREADS={bad}:")),
                "{e}"
            );
        }
        let e = super::threads_of(Err(VarError::NotUnicode("\u{fffd}".into()))).unwrap_err();
        assert!(
            e.contains("=(not unicode): expected a positive number"),
            "{e}"
        );
    }
}

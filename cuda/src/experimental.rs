//! The `--cuda-experimental` switches: each GPU path written without a GPU, off by default until
//! a GPU run has verified it.

/// Switches for the GPU paths written without a GPU (`--cuda-experimental`), off by default;
/// each but `lora-prefetch`, `device-argmax`, `device-sampling` and `packed-upload` (not yet run
/// on a GPU) has passed every CUDA test on an H200 (`scripts/gpu-check.sh`; the later ones, and
/// the fused LoRA's entry table, on the tiny test models only, whose SmolLM2 cases need
/// fixtures too large to carry). Their kernels also pass on the CPU against the kernels verified first
/// (`cuda/tests/kernels_on_cpu.rs`: indexing, barriers, inter-block counters and arithmetic,
/// not speed or memory ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Experimental {
    /// Few-row (decode) matmuls on bf16 weights in `matvec_bf16_r*` (16-byte weight loads,
    /// q/k/v and gate/up as one launch) instead of `matmul_bf16` or cuBLAS.
    pub decode_matvec: bool,
    /// With `decode_matvec`: the LoRA of the modules that read one input in two launches (all
    /// shrinks in one, the expands inside the matvec) instead of two per module.
    pub fused_lora: bool,
    /// Grids that fill the GPU for the small ops of decode steps (at most
    /// [`crate::WIDE_GRID_MAX_ROWS`] rows): RMSNorm rows with 1,024 threads instead of 256, the KV
    /// store with one block per 256 values of a token instead of one per token.
    pub wide_grids: bool,
    /// Attention of decode steps split over positions (flash-decoding: `attention_split` then
    /// `attention_combine`), so that a long context fills the GPU at small batches.
    pub split_attention: bool,
    /// Decode steps captured once per shape as CUDA graphs and replayed ([`crate::graphs`]); the
    /// backend then runs on its own stream (capture needs one) with a fixed cuBLAS workspace.
    /// While a step is captured, nothing else may use the backend (the engine runs one step at
    /// a time; work queued from another thread would join the graph).
    pub graphs: bool,
    /// LoRA shrink/expand of steps the fused decode path does not take (batches, prefill) on
    /// tensor cores ([`crate::sgmv`]: tokens in tiles of 16, each adapter a tile uses one TF32 GEMM
    /// over the tile) instead of the segment kernels' per-token products. Needs sm_80 or newer.
    pub sgmv: bool,
    /// Each residual add and the RMSNorm that reads its result in one launch (`add_rms_norm`)
    /// instead of two: two launches fewer per layer, with the same values.
    pub fused_norm: bool,
    /// The queries' and keys' rotary embedding of a step in one launch (`rope_qk`) instead of
    /// two, with the same values.
    pub fused_rope: bool,
    /// Decode steps (every token alone in its KV slot) store their keys and values inside the
    /// attention kernel (`attention_store*`) instead of in a `kv_store` launch before it: one
    /// launch fewer per layer, with the same values.
    pub fused_kv_store: bool,
    /// With `fused_lora`, on sm_90 or newer: each fused-LoRA matvec launched as a programmatic
    /// dependent of its LoRA shrink (CUDA's programmatic dependent launch): it streams its
    /// weights while the shrink runs and waits for it only before the expands, so the shrink
    /// and the launch gap hide under the weight stream. Same kernels, same values; below
    /// sm_90 the launches run one after the other, as without it.
    pub fused_shrink: bool,
    /// On sm_90 or newer: each decode matvec launched as a programmatic dependent of the
    /// kernel that wrote its input (CUDA's programmatic dependent launch; that kernel releases
    /// it at its start): the matvec's blocks start and issue their first weight loads while
    /// that kernel finishes, then wait for it before reading the input. Hides the gap between
    /// launches in front of each weight stream. Same values; below sm_90 plain launches.
    pub dependent_launch: bool,
    /// Decode steps of up to 64 tokens (each with its own mixture) that the decode matvec does
    /// not take (past its 8 rows, or weights it does not read): every module's LoRA shrink of
    /// a q/k/v or gate/up group in one launch (split over in_dim chunks, as `fused-lora`) and
    /// every expand in one launch after the base products, instead of a shrink and an expand
    /// per module (segment or SGMV kernels). Written without a GPU; passed on an H200 with the tiny test models.
    pub batch_lora: bool,
    /// With `fused-lora`: each group's LoRA shrink runs inside its matvec's grid (blocks that
    /// take the first tickets do the shrink, the rest the features; the features' expands wait
    /// for the shrink blocks in their epilogue) instead of as a launch of its own before it. One
    /// launch fewer per group, and with `dependent-launch` the shrink, like the weight stream,
    /// starts while the kernel writing x finishes. Replaces `fused-shrink` where both are on.
    /// Written without a GPU; passed on an H200 with the tiny test models.
    pub inline_shrink: bool,
    /// LoRA shrink/expand of the steps the fused decode path and `batch-lora` do not take
    /// (prefill, batches) over tiles of 8 consecutive tokens on CUDA cores ([`crate::lora_tiled`]):
    /// a tile's tokens that name the same adapter share one read of its rows, where the segment
    /// kernels read them once per token; f32 products, no TF32 rounding. Replaces `sgmv` where
    /// both are on. Written without a GPU; passed on an H200 with the tiny test models.
    pub tiled_lora: bool,
    /// With `split-attention`: the split block of each (token, head) that finishes last merges
    /// the splits (a count per (token, head) in device memory: the last-block reduction of
    /// CUDA's threadFenceReduction sample) instead of an `attention_combine` launch after the
    /// split kernel: one launch fewer per layer, the same expressions in the same order.
    /// Written without a GPU; passed on an H200 with the tiny test models.
    pub inline_combine: bool,
    /// With `fused-kv-store`: decode steps rotate their queries and keys inside the attention
    /// kernel as it reads them (the `_rope` entries, `rope`'s expressions) instead of in a
    /// `rope_qk` launch (two `rope` launches without `fused-rope`) before it, the same values.
    /// Written without a GPU; passed on an H200 with the tiny test models.
    pub rope_in_attention: bool,
    /// With `decode-matvec`: the gate/up matvec of a decode step stores silu(gate) * up (one
    /// warp computes gate row f then up row f, their LoRA expands included, and applies
    /// `silu_mul`'s expression) instead of both products and a `silu_mul` launch after them:
    /// one launch fewer per layer, the same values. Not where the LoRA runs outside the
    /// matvec (without `fused-lora`, or with `expand-launch`). Written without a GPU; passed on an H200 with the tiny test models.
    pub fused_silu: bool,
    /// With `decode-matvec`: the o and down matvecs of a decode step of one or two tokens also
    /// do the residual add and RMSNorm that read their output (`add_rms_norm`): the block that
    /// finishes last applies them, adding the sums in `add_rms_norm`'s order (the `_norm`
    /// entries), instead of an `add_rms_norm` launch (or `add` and `rms_norm`) after the
    /// matvec: two launches fewer per layer, the same values. Not where the LoRA runs outside
    /// the matvec (without `fused-lora`, or with `expand-launch`). Written without a GPU; passed on an H200 with the tiny test models.
    pub norm_in_matvec: bool,
    /// Prefix sharing in the scheduler ([`dlp_engine::Backend::copy_kv`]): a sequence whose
    /// prompt starts as a running one's copies that one's KV rows with a device-to-device copy
    /// (`cuMemcpyDtoDAsync` on the backend's stream, in order with the kernels) instead of
    /// computing them; a bf16 cache's rows that do not start and end on whole words go
    /// through the host. Without it, every prompt is computed in full. Written without a GPU:
    /// passed on an H200 with the tiny test models.
    pub kv_copy: bool,
    /// With `fused-lora`: a decode step's LoRA around the plain matvec instead of in its
    /// epilogue: every module's shrink in one launch, the matvec as without LoRA, then every
    /// module's expand in one launch (`lora_expand_jobs`, as `batch-lora`) adding into the
    /// products. On the H200 the fused epilogue held each warp's weight stream behind its
    /// expand's loads (the LoRA matvecs ran at 25-49% of the DRAM bandwidth; 3 fused adapters
    /// added 1.4 ms to a 4.5 ms 7B step, 2.7 ms with `inline-shrink`); this keeps the matvec's
    /// speed and adds two small launches per group. Takes the place of `inline-shrink` and
    /// `fused-shrink`, and of the `fused-silu` and `norm-in-matvec` folds for the groups with
    /// LoRA (their products are not final in the matvec). Written without a GPU; passed on an
    /// H200 with the tiny test models (bf16 compute), where on the 7B shape (the folds off) 3
    /// fused adapters decoded 199.6 tok/s against 182.6 with the expands in the epilogue (base
    /// 257.4); on the 1B shape 676.7 against 744.1 (two launches more weigh more there).
    pub expand_launch: bool,
    /// With `expand-launch` and `dependent-launch`, on sm_90 or newer: each such LoRA group's
    /// shrink and expand are programmatic dependents too, each reading what no kernel of a
    /// step writes (the tables, A or B^T) before it waits: the shrink
    /// (`lora_shrink_jobs_prefetch`) is launched as a dependent of the kernel writing x, its
    /// lookups and first A row in flight while that kernel finishes; the plain matvec releases
    /// the expand at its start; the expand (`lora_expand_jobs_prefetch`) looks up its entries
    /// and loads its B^T terms (up to 32 a token, `EXPAND_PREFETCH` in lora_prefetch.cu:
    /// mixtures past that run as `expand-launch`) while the matvec streams, then waits and adds.
    /// Two launch gaps and the LoRA rows' first loads per group move under the neighbouring
    /// kernels; the same values as `expand-launch`. Written without a GPU; not yet run on one.
    pub lora_prefetch: bool,
    /// Greedy steps pick their tokens on the device (`argmax`, one block per logit row) and
    /// download a value per row instead of the rows: the copy of 128,256 logits (513 KB, on
    /// Llama 3's vocabulary) and the host's scan leave each decode step, where they held the
    /// GPU idle. The same tokens (the sampler's greedy rule, exactly); steps that sample,
    /// penalise, constrain or report log-probabilities still download their rows. Written
    /// without a GPU; not yet run on one.
    pub device_argmax: bool,
    /// Steps whose tokens are drawn at a temperature alone (no top-k, top-p, min-p, bias or
    /// penalty: a server's default request) draw them on the device (`sample`, one block per
    /// logit row) from the host sampler's uniform draws, and download a value per row instead
    /// of the rows; greedy rows of such a step pick as `device-argmax`. The same tokens as the
    /// host, bit for bit (the same probabilities, f64 sums in the same order, the same walk).
    /// Written without a GPU; not yet run on one.
    pub device_sampling: bool,
    /// Each step's plan (token ids, positions, KV slots, segments, mixtures, logit rows, pick
    /// arguments) packed on the host into one buffer (`StepLayout` in cuda/src/step.rs: each
    /// array on a 64-byte boundary) and copied to the device in one host-to-device copy instead of
    /// one per array (seven in a decode step, eight where it samples on the device): six or
    /// seven driver calls and DMA transfers fewer in front of every decode step's first kernel
    /// (or graph replay). Steps of one shape share the layout, so a
    /// recorded graph's addresses hold. The same values. Written without a GPU; not yet run
    /// on one.
    pub packed_upload: bool,
}

impl Experimental {
    /// Every path off (the default).
    pub const NONE: Experimental = Experimental {
        decode_matvec: false,
        fused_lora: false,
        wide_grids: false,
        split_attention: false,
        graphs: false,
        sgmv: false,
        fused_norm: false,
        fused_rope: false,
        fused_kv_store: false,
        fused_shrink: false,
        dependent_launch: false,
        batch_lora: false,
        inline_shrink: false,
        tiled_lora: false,
        inline_combine: false,
        rope_in_attention: false,
        fused_silu: false,
        norm_in_matvec: false,
        kv_copy: false,
        expand_launch: false,
        lora_prefetch: false,
        device_argmax: false,
        device_sampling: false,
        packed_upload: false,
    };
    /// Every path on (`--cuda-experimental all`).
    pub const ALL: Experimental = Experimental {
        decode_matvec: true,
        fused_lora: true,
        wide_grids: true,
        split_attention: true,
        graphs: true,
        sgmv: true,
        fused_norm: true,
        fused_rope: true,
        fused_kv_store: true,
        fused_shrink: true,
        dependent_launch: true,
        batch_lora: true,
        inline_shrink: true,
        tiled_lora: true,
        inline_combine: true,
        rope_in_attention: true,
        fused_silu: true,
        norm_in_matvec: true,
        kv_copy: true,
        expand_launch: true,
        lora_prefetch: true,
        device_argmax: true,
        device_sampling: true,
        packed_upload: true,
    };
}

impl Experimental {
    /// The `--cuda-experimental` names of the paths that are on, in the flag's order.
    pub fn names_on(&self) -> Vec<&'static str> {
        let x = self;
        [
            (x.decode_matvec, "decode-matvec"),
            (x.fused_lora, "fused-lora"),
            (x.wide_grids, "wide-grids"),
            (x.split_attention, "split-attention"),
            (x.graphs, "graphs"),
            (x.sgmv, "sgmv"),
            (x.fused_norm, "fused-norm"),
            (x.fused_rope, "fused-rope"),
            (x.fused_kv_store, "fused-kv-store"),
            (x.fused_shrink, "fused-shrink"),
            (x.dependent_launch, "dependent-launch"),
            (x.batch_lora, "batch-lora"),
            (x.inline_shrink, "inline-shrink"),
            (x.tiled_lora, "tiled-lora"),
            (x.inline_combine, "inline-combine"),
            (x.rope_in_attention, "rope-in-attention"),
            (x.fused_silu, "fused-silu"),
            (x.norm_in_matvec, "norm-in-matvec"),
            (x.kv_copy, "kv-copy"),
            (x.expand_launch, "expand-launch"),
            (x.lora_prefetch, "lora-prefetch"),
            (x.device_argmax, "device-argmax"),
            (x.device_sampling, "device-sampling"),
            (x.packed_upload, "packed-upload"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }

    /// The paths that are on but do nothing, each with what it needs: a path that rides on
    /// another, without it, or the decode matvec without bf16 weights to read (`bf16_storage`:
    /// [`crate::CudaOptions::bf16_storage`]). The backend's description names them inactive.
    pub fn inactive_paths(&self, bf16_storage: bool) -> Vec<(&'static str, &'static str)> {
        let matvec = self.decode_matvec && bf16_storage;
        let fused = matvec && self.fused_lora;
        [
            (
                self.decode_matvec && !bf16_storage,
                "decode-matvec",
                "--cuda-bf16-weights or --cuda-bf16-compute",
            ),
            (self.fused_lora && !matvec, "fused-lora", "decode-matvec"),
            (self.fused_shrink && !fused, "fused-shrink", "fused-lora"),
            (self.inline_shrink && !fused, "inline-shrink", "fused-lora"),
            (self.expand_launch && !fused, "expand-launch", "fused-lora"),
            (
                self.lora_prefetch && !(fused && self.expand_launch && self.dependent_launch),
                "lora-prefetch",
                "expand-launch and dependent-launch",
            ),
            // expand-launch takes every LoRA group whose expand fits its shared memory (mix_k x
            // (max rank + 2) up to 12,288): the shrink is then a launch of its own (plain, or
            // lora-prefetch's dependent one) and no matvec waits for it in an epilogue.
            (
                fused && self.expand_launch && self.fused_shrink,
                "fused-shrink",
                "expand-launch off",
            ),
            (
                fused && self.expand_launch && self.inline_shrink,
                "inline-shrink",
                "expand-launch off",
            ),
            (
                self.dependent_launch && !matvec,
                "dependent-launch",
                "decode-matvec",
            ),
            (self.fused_silu && !matvec, "fused-silu", "decode-matvec"),
            (
                self.norm_in_matvec && !matvec,
                "norm-in-matvec",
                "decode-matvec",
            ),
            (
                self.inline_combine && !self.split_attention,
                "inline-combine",
                "split-attention",
            ),
            (
                self.rope_in_attention && !self.fused_kv_store,
                "rope-in-attention",
                "fused-kv-store",
            ),
        ]
        .into_iter()
        .filter(|r| r.0)
        .map(|(_, path, needs)| (path, needs))
        .collect()
    }
}

impl Default for Experimental {
    fn default() -> Self {
        Self::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::Experimental;

    /// Every path on is active with bf16 weights; each riding path alone is named with what it
    /// needs; the decode matvec needs bf16 weights, and takes its riders with it.
    #[test]
    fn inactive_paths_name_what_each_needs() {
        assert_eq!(
            Experimental::ALL.inactive_paths(true),
            vec![
                ("fused-shrink", "expand-launch off"),
                ("inline-shrink", "expand-launch off")
            ]
        );
        let without_expand = Experimental {
            expand_launch: false,
            ..Experimental::ALL
        };
        assert_eq!(
            without_expand.inactive_paths(true),
            vec![("lora-prefetch", "expand-launch and dependent-launch")]
        );
        assert_eq!(Experimental::NONE.inactive_paths(false), vec![]);
        let alone = [
            (
                Experimental {
                    inline_combine: true,
                    ..Experimental::NONE
                },
                ("inline-combine", "split-attention"),
            ),
            (
                Experimental {
                    rope_in_attention: true,
                    ..Experimental::NONE
                },
                ("rope-in-attention", "fused-kv-store"),
            ),
            (
                Experimental {
                    fused_silu: true,
                    ..Experimental::NONE
                },
                ("fused-silu", "decode-matvec"),
            ),
            (
                Experimental {
                    norm_in_matvec: true,
                    ..Experimental::NONE
                },
                ("norm-in-matvec", "decode-matvec"),
            ),
            (
                Experimental {
                    decode_matvec: true,
                    inline_shrink: true,
                    ..Experimental::NONE
                },
                ("inline-shrink", "fused-lora"),
            ),
            (
                Experimental {
                    decode_matvec: true,
                    fused_lora: true,
                    expand_launch: true,
                    lora_prefetch: true,
                    ..Experimental::NONE
                },
                ("lora-prefetch", "expand-launch and dependent-launch"),
            ),
        ];
        for (x, want) in alone {
            assert_eq!(x.inactive_paths(true), vec![want], "{x:?}");
        }
        let names: Vec<&str> = Experimental::ALL
            .inactive_paths(false)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            names,
            [
                "decode-matvec",
                "fused-lora",
                "fused-shrink",
                "inline-shrink",
                "expand-launch",
                "lora-prefetch",
                "dependent-launch",
                "fused-silu",
                "norm-in-matvec"
            ]
        );
    }
}

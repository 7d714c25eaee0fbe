//! `attention` on CUDA: the KV store (`kv_store`, `kv_store_bf16` with
//! [`crate::CudaOptions::kv_bf16`]), then one block per (token, query head) (`attention`), or
//! with [`crate::Experimental::split_attention`] several per (token, head) and a combine
//! (flash-decoding); with [`crate::Experimental::fused_kv_store`], decode steps store inside
//! the attention kernel (`attention*_store*`); with [`crate::Experimental::inline_combine`],
//! the split kernel's last block per (token, head) merges the splits (`attention_split*_last*`);
//! with [`crate::Experimental::rope_in_attention`], the fused-store kernels rotate q and k
//! themselves (`attention*_store*_rope*`). Gemma 2's soft-capped scores take the plain kernel
//! with the cap (`attention_softcap*`) and none of those paths. Kernels in
//! `kernels/attention.cu`.

use cudarc::driver::{CudaSlice, DevicePtrMut, PushKernelArg};
use dlp_engine::backend::{AttnShape, Backend};
use dlp_engine::{Error, Result};

use crate::counts::LaunchCounters;
use crate::launch::{cfg, check_len, int, ATTN_MAX_HEAD_DIM, ATTN_THREADS, BLOCK};
use crate::{err, CudaBackend, CudaStep};

impl CudaBackend {
    /// [`dlp_engine::Backend::attention`] on this backend; with `rope` (the rope table, for
    /// [`dlp_engine::Backend::rope_attention`] with `rope-in-attention`), a decode step's
    /// queries and keys are rotated inside the kernel (the caller checks that the fused store
    /// takes the step).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_impl(
        &self,
        rope: Option<&CudaSlice<f32>>,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
        step: &CudaStep,
        s: AttnShape,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (t_n, hd) = (s.n_tokens, s.head_dim);
        let kv_dim = s.n_kv_heads * hd;
        let q_dim = s.n_heads * hd;
        if s.n_kv_heads == 0 || s.n_heads / s.n_kv_heads * s.n_kv_heads != s.n_heads {
            return Err(Error::invalid(format!(
                "attention: {} query heads are not a multiple of {} kv heads",
                s.n_heads, s.n_kv_heads
            )));
        }
        if hd > ATTN_MAX_HEAD_DIM {
            return Err(Error::unsupported(format!(
                "cuda attention: head_dim {hd} > {ATTN_MAX_HEAD_DIM}"
            )));
        }
        check_len("attention", "q", q.len(), t_n * q_dim)?;
        check_len("attention", "k", k.len(), t_n * kv_dim)?;
        check_len("attention", "v", v.len(), t_n * kv_dim)?;
        check_len("attention", "out", out.len(), t_n * q_dim)?;
        check_len("attention", "v_cache", v_cache.len(), k_cache.len())?;
        s.check_scores()?;
        // Gemma 2's capped scores: the plain kernel with the cap (`attention_softcap*`), none
        // of the experimental paths.
        let capped = s.capped();
        let x = &self.options.experimental;
        if capped && (x.split_attention || x.fused_kv_store || x.inline_combine) {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    "soft-capped attention (Gemma 2) takes the plain attention kernel: --cuda-experimental split-attention, fused-kv-store, inline-combine and rope-in-attention do not apply to it"
                )
            });
        }
        // Values the caches hold (two per f32 element when they store bf16).
        let cache_values = k_cache.len() * if self.options.kv_bf16 { 2 } else { 1 };
        let slots = cache_values / (s.capacity * kv_dim).max(1);
        step.plan.check_kv_positions(t_n, slots, s.capacity)?;
        if t_n == 0 || q_dim == 0 {
            return Ok(());
        }
        let kvd = int("attention", kv_dim)?;
        let cap = int("attention", s.capacity)?;
        let kv_bf16 = self.options.kv_bf16;
        // A decode step may store its keys and values inside attention (no token reads a
        // position another token of the step stores); `StepShape` carries the same test, so
        // a recorded graph's replays take the same kernels.
        let fused_store = self.options.experimental.fused_kv_store && step.tokens_alone && !capped;
        let (slots, positions) = (step.kv_slots(), step.positions());
        if !fused_store {
            let mut a = self.args(if kv_bf16 {
                &self.k.kv_store_bf16
            } else {
                &self.k.kv_store
            });
            a.arg(k).arg(v).arg(&mut *k_cache).arg(&mut *v_cache);
            a.arg(&slots).arg(&positions).arg(&kvd).arg(&cap);
            let chunks = self.kv_store_chunks(t_n, kv_dim) as u32;
            self.go(
                "attention kv_store",
                a,
                cfg((t_n as u32, chunks, 1), BLOCK, 0),
            )?;
        }
        let (nh, nkv, hdi) = (
            int("attention", s.n_heads)?,
            int("attention", s.n_kv_heads)?,
            int("attention", hd)?,
        );
        let scale = s.scale;
        let window = int("attention", s.window)?;
        let ty = u32::try_from(t_n)
            .ok()
            .filter(|&t| t <= 65535)
            .ok_or_else(|| {
                Error::unsupported(format!(
                    "cuda attention: {t_n} tokens in one step (max 65535)"
                ))
            })?;
        let splits = match capped {
            true => 1,
            false => self.attention_splits(s.capacity, t_n),
        };
        // `inline-combine`: the split kernel merges its splits itself (no combine launch).
        let last = splits > 1 && self.options.experimental.inline_combine;
        // The one kernel that writes `out` takes it from here.
        let mut out = Some(out);
        let part_len = t_n * s.n_heads * splits * (hd + 2);
        let mut part_guard = self.scratch_attn.lock().unwrap_or_else(|p| p.into_inner());
        let mut count_guard = self
            .scratch_attn_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (target, grid) = if splits > 1 {
            if last {
                let rows = t_n * s.n_heads;
                self.scratch_at_least(&mut count_guard, rows, "attention (split counts)", || {
                    self.stream()
                        .alloc_zeros::<u32>(rows)
                        .map_err(|e| err(format!("attention: allocating {rows} split counts: {e}")))
                })?;
            }
            let part = self.scratch_at_least(
                &mut part_guard,
                part_len,
                "attention (split partials)",
                || self.alloc(part_len),
            )?;
            if self.options.poison_scratch {
                // NaN partials: a merge that read a split before it wrote fails its case.
                let (p, _g) = part.device_ptr_mut(self.stream());
                let bytes = part_len * std::mem::size_of::<f32>();
                let what = "attention: poisoning the split partials";
                // SAFETY: `part` holds at least `part_len` floats.
                unsafe { self.memset_bytes(p, 0xff, bytes, what) }?;
            }
            (part, splits as u32)
        } else {
            (out.take().expect("not yet taken"), 1)
        };
        let f = (self.k.attn)
            .pick(splits > 1, fused_store, last, rope.is_some(), capped, kv_bf16)
            .ok_or_else(|| {
                err("attention: no kernel fuses the rope without the fused KV store, or caps the scores in a split, fused or roped launch")
            })?;
        let mut a = self.args(f);
        a.arg(q);
        if fused_store {
            a.arg(&mut *k_cache).arg(&mut *v_cache);
        } else {
            a.arg(&*k_cache).arg(&*v_cache);
        }
        a.arg(&slots).arg(&positions);
        a.arg(&nh)
            .arg(&nkv)
            .arg(&hdi)
            .arg(&cap)
            .arg(&scale)
            .arg(&window)
            .arg(&mut *target);
        if fused_store {
            // The `_store` kernels' next parameters: the step's keys and values.
            a.arg(k).arg(v);
        }
        if last {
            // The `_last` kernels' last parameters: the counts and the output.
            a.arg(count_guard.as_mut().expect("allocated above"));
            a.arg(out.take().expect("not yet taken"));
        }
        if let Some(cos_sin) = rope {
            // The `_rope` kernels' last parameter: the rope table.
            a.arg(cos_sin);
        }
        if capped {
            // The `_softcap` kernels' last parameter.
            a.arg(&s.softcap);
        }
        self.go(
            "attention",
            a,
            cfg((s.n_heads as u32, ty, grid), ATTN_THREADS, 0),
        )?;
        if splits > 1 && !last {
            let part = part_guard.as_ref().expect("allocated above");
            let z = int("attention", splits)?;
            let mut a = self.args(&self.k.attention_combine);
            a.arg(part).arg(&nh).arg(&hdi).arg(&z);
            a.arg(out.take().expect("not yet taken"));
            self.go(
                "attention combine",
                a,
                cfg((s.n_heads as u32, ty, 1), ATTN_THREADS, 0),
            )?;
            LaunchCounters::bump(&self.counts.attention_combine);
        }
        Ok(())
    }
}

/// The checks `rope` makes of the step's positions and the angle table: every token's position
/// has its row of head_dim/2 (cos, sin) pairs in `cos_sin` (`Backend::rope`'s layout).
pub(crate) fn check_rope_table(
    cos_sin: &CudaSlice<f32>,
    step: &CudaStep,
    n_tokens: usize,
    head_dim: usize,
) -> Result<()> {
    check_len("rope", "positions", step.plan.positions.len(), n_tokens)?;
    let table = dlp_engine::backend::rope_table_len(&step.plan.positions, n_tokens, head_dim);
    check_len("rope", "cos_sin", cos_sin.len(), table)
}

//! The bf16 matmul paths: the decode matvec (`matvec_bf16_r*` in `kernels/matmul.cu`, behind
//! [`crate::Experimental::decode_matvec`]) and the bf16 compute mode's tensor-core GEMM
//! ([`crate::gemm`]), plus the
//! dispatch that picks among them and the older `matmul_bf16` / cuBLAS sgemm paths.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use dlp_engine::backend::{LinearJob, ResidualSite};
use dlp_engine::Result;

use crate::launch::{cfg, check_len, int, Ptrs};
use crate::{err, CudaBackend, CudaWeight};

/// Most activation rows the decode matvec takes (its largest row bucket).
pub const MATVEC_MAX_ROWS: usize = 8;
/// Most weights one matvec launch takes (`MATVEC_JOBS` in matmul.cu): q, k and v.
pub const MATVEC_MAX_JOBS: usize = 3;

/// The kernel's `MatvecJobs` (same layout): device pointers and output widths of up to
/// [`MATVEC_MAX_JOBS`] weights; unused entries have `n = 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatvecJobs {
    /// `const uint4*` weight rows, `[n, k / 8]`.
    pub w: [u64; MATVEC_MAX_JOBS],
    /// `const float*` bias, `[n]`; 0 for none.
    pub bias: [u64; MATVEC_MAX_JOBS],
    /// `float*` output, `[rows, n]`.
    pub out: [u64; MATVEC_MAX_JOBS],
    /// Output features per job.
    pub n: [i32; MATVEC_MAX_JOBS],
    /// Dependent-launch bits ([`MatvecLaunch::bits`]): [`PDL_WAIT_X`] (wait for the kernel
    /// before it, then read x), [`PDL_RELEASE`] (release the launch after it at the start).
    pub pdl: i32,
}

/// [`MatvecJobs::pdl`] bit (`PDL_WAIT_X` in matmul.cu): launched as a dependent of the kernel
/// that wrote x, the matvec waits for it after its first weight loads, before reading x.
pub const PDL_WAIT_X: i32 = 1;

/// [`MatvecJobs::pdl`] bit (`PDL_RELEASE` in matmul.cu): the matvec releases the launch after it
/// (a programmatic dependent: `lora-prefetch`'s expand) at its start.
pub const PDL_RELEASE: i32 = 2;

// SAFETY: plain old data with the C layout of `MatvecJobs` in matmul.cu.
unsafe impl DeviceRepr for MatvecJobs {}

/// The kernel's `LoraJobs` (same layout, lora.cu): the fused-LoRA stacks of up to
/// [`MATVEC_MAX_JOBS`] modules that read the same input, and the step's mixture tables; a job
/// without a stack has `a = bt = 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoraJobs {
    /// `const float*` (bf16 bit patterns with `ab_bf16`) stacked A, `[total_rank, in_dim]`.
    pub a: [u64; MATVEC_MAX_JOBS],
    /// `const float*` (bf16 bit patterns with `ab_bf16`) stacked B^T, `[total_rank, n]`.
    pub bt: [u64; MATVEC_MAX_JOBS],
    /// `const unsigned*` first row of each slot.
    pub slot_offset: [u64; MATVEC_MAX_JOBS],
    /// `const unsigned*` rank of each slot.
    pub slot_rank: [u64; MATVEC_MAX_JOBS],
    /// `const float*` alpha / r of each slot.
    pub slot_scale: [u64; MATVEC_MAX_JOBS],
    /// `float*` shrink output as partial sums, `[n_chunks][T, mix_k, max_rank]` with
    /// `chunk_stride` floats between chunks, then the entry table: `i32` (offset, rank) per
    /// `[T, mix_k]` (see `fused_u_region`).
    pub u: [u64; MATVEC_MAX_JOBS],
    /// Slots of each stack.
    pub n_slots: [i32; MATVEC_MAX_JOBS],
    /// Largest rank of each stack.
    pub max_rank: [i32; MATVEC_MAX_JOBS],
    /// `const unsigned*` segment of each token.
    pub seg_of_token: u64,
    /// `const unsigned*` `[S, mix_k]` slots.
    pub mix_slots: u64,
    /// `const float*` `[S, mix_k]` weights.
    pub mix_weights: u64,
    /// Entries per segment.
    pub mix_k: i32,
    /// Jobs described (stacked or not).
    pub n_jobs: i32,
    /// 1 when A and B^T hold bf16 bit patterns (`CudaOptions::lora_bf16`; all jobs alike).
    pub ab_bf16: i32,
    /// In-dim chunks of the shrink ([`shrink_chunks`]): partial sums per value of u.
    pub n_chunks: i32,
    /// Floats between two chunks' partial sums in each job's u.
    pub chunk_stride: i32,
    /// `inline-shrink`: the shrink's blocks (T x K x chunks x the launch's jobs) that run in
    /// the matvec's own grid, ahead of its feature blocks; 0 when the shrink is its own launch.
    pub inline_blocks: i32,
    /// `unsigned*` three counters (tickets, shrink blocks done, blocks finished), zero between
    /// launches: the last block of an `inline-shrink` launch zeroes them.
    pub sync: u64,
}

/// The kernel's `MatvecNorm` (same layout, matmul.cu): the residual add and RMSNorm that a
/// `norm-in-matvec` launch (`matvec_bf16*_norm_r*`) applies to its output, as `add_rms_norm`
/// does: `x[r, :] += out[r, :]`, then `out_norm[r, :] = rms_norm(x[r, :]) * w`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MatvecNorm {
    /// `float*` the residual, `[rows, dim]`.
    pub x: u64,
    /// `const float*` the norm's weight, `[dim]`.
    pub w: u64,
    /// `float*` the normed rows, `[rows, dim]`.
    pub out: u64,
    /// `unsigned*` the launch's count of finished blocks, zero between launches.
    pub sync: u64,
    /// Width of a row: the matvec's output features.
    pub dim: i32,
    /// The block size whose sums `add_rms_norm` would add (a multiple of 32, at most 1,024):
    /// the kernel adds them in that order.
    pub threads: i32,
    /// The norm's epsilon.
    pub eps: f32,
    /// Padding to the kernel's 48 bytes.
    pub pad: i32,
}

// SAFETY: plain old data with the C layout of `MatvecNorm` in matmul.cu.
unsafe impl DeviceRepr for MatvecNorm {}

/// What a decode matvec launch does with its products (see [`CudaBackend::matvec_bf16`]).
#[derive(Debug)]
pub(crate) enum MatvecEpilogue<'a> {
    /// Stores each job's products at its `out`.
    Store,
    /// `fused-silu` (the jobs are gate and up, as wide): stores `silu(gate) * up` here
    /// (`[rows, n]`), neither product.
    Silu(&'a mut CudaSlice<f32>),
    /// `norm-in-matvec` (one job, `n` = the norm's `dim`): stores the products, then its last
    /// block adds them to the residual and norms it (`nm`'s pointers, kept alive by the
    /// caller until the launch is queued); `site` picks the launch's counters.
    AddNorm { nm: MatvecNorm, site: ResidualSite },
}

/// In-dim elements per block of the fused shrink (`SHRINK_CHUNK` in lora.cu).
pub const SHRINK_CHUNK: usize = 1024;

/// Blocks the fused shrink (`lora_shrink_jobs`) splits an `in_dim`-wide dot product into,
/// each writing a partial sum that the matvec's epilogue adds in order (at least 1).
pub fn shrink_chunks(in_dim: usize) -> usize {
    in_dim.div_ceil(SHRINK_CHUNK).max(1)
}

// SAFETY: plain old data with the C layout of `LoraJobs` in lora.cu.
unsafe impl DeviceRepr for LoraJobs {}

/// The row bucket (index into `Kernels::matvec_bf16`: 1, 2, 4 or 8 rows) for `rows` rows, or
/// `None` when the matvec does not take that many.
pub fn matvec_bucket(rows: usize) -> Option<usize> {
    match rows {
        1 => Some(0),
        2 => Some(1),
        3..=4 => Some(2),
        5..=MATVEC_MAX_ROWS => Some(3),
        _ => None,
    }
}

/// The error of a fold whose entries the backend did not load (made without its switch).
fn not_loaded(path: &str) -> dlp_engine::Error {
    err(format!(
        "matvec: the {path} entries are not loaded (the backend was made without \
         --cuda-experimental {path})"
    ))
}

/// Whether `add_rms_norm`'s block size `threads` can be emulated by a `_norm` entry: whole
/// warps, at most 1,024 threads (its sums of 32 warps).
pub fn valid_norm_threads(threads: i32) -> bool {
    (32..=1024).contains(&threads) && threads % 32 == 0
}

/// Bytes of shared memory a block may take without the opt-in attribute (48 KiB on every
/// device since sm_20): the most the matvec stages x into.
const MATVEC_MAX_STAGE_BYTES: usize = 48 * 1024;

/// The matvec's `round_x` argument and the dynamic shared memory (bytes) of its launch, for
/// `rows` rows of `k` inputs, on a kernel with `static_shared` bytes of its own. Without
/// rounding (f32 compute) x is read as f32 from L1 (0, no shared memory). The bf16 compute mode
/// rounds x to bf16: once per block into shared memory as bf16 (2, `rows * k * 2` bytes) where
/// that and the static bytes fit `MATVEC_MAX_STAGE_BYTES` (48 KiB), else per warp and per weight load
/// (1). Both give the same values; 2 is the fast one.
pub fn matvec_round_x(
    bf16_compute: bool,
    rows: usize,
    k: usize,
    static_shared: usize,
) -> (i32, u32) {
    let stage = rows * k * 2;
    match bf16_compute {
        false => (0, 0),
        true if stage + static_shared <= MATVEC_MAX_STAGE_BYTES => (2, stage as u32),
        true => (1, 0),
    }
}

/// The matvec's launch for jobs of `n` output features in all (one warp per feature, `warps`
/// per block: [`crate::tune::Tune::matvec_warps`]), with `shared` bytes of dynamic shared
/// memory (see [`matvec_round_x`]).
pub fn matvec_launch(total_n: usize, warps: usize, shared: u32) -> LaunchConfig {
    cfg(
        (total_n.div_ceil(warps) as u32, 1, 1),
        (warps * 32) as u32,
        shared,
    )
}

/// How a decode matvec is launched relative to the launch just before it on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatvecLaunch {
    /// In plain stream order.
    Plain,
    /// A programmatic dependent of the kernel that wrote x (`dependent-launch`): its blocks
    /// start and issue their first weight loads while that kernel finishes, then wait for it
    /// before reading x ([`PDL_WAIT_X`]).
    AfterX,
    /// As `AfterX`, and releasing the launch after it at its start ([`PDL_RELEASE`]):
    /// `lora-prefetch`'s plain matvec, whose expand (a dependent launch) then loads its B^T
    /// terms while the matvec streams.
    AfterXReleasing,
    /// A programmatic dependent of the LoRA shrink of its `lora` jobs (`fused-shrink`), which
    /// was itself launched after x was written: it reads x and streams all its weights while
    /// the shrink runs, and waits for it only before the expands read u.
    AfterShrink,
}

impl MatvecLaunch {
    /// The kernel's [`MatvecJobs::pdl`] bits for this launch.
    pub fn bits(self) -> i32 {
        match self {
            MatvecLaunch::Plain | MatvecLaunch::AfterShrink => 0,
            MatvecLaunch::AfterX => PDL_WAIT_X,
            MatvecLaunch::AfterXReleasing => PDL_WAIT_X | PDL_RELEASE,
        }
    }
}

impl CudaBackend {
    /// The launch of a decode matvec whose launch just before is its LoRA shrink
    /// (`after_shrink`) or the kernel that wrote its x, by the switches and the device
    /// (dependent launches need sm_90).
    pub(crate) fn matvec_launch_mode(&self, after_shrink: bool) -> MatvecLaunch {
        let x = &self.options.experimental;
        if !self.pdl.load(Ordering::Relaxed) {
            MatvecLaunch::Plain
        } else if after_shrink && x.fused_shrink {
            MatvecLaunch::AfterShrink
        } else if x.dependent_launch {
            MatvecLaunch::AfterX
        } else {
            MatvecLaunch::Plain
        }
    }

    /// Whether `rows` rows of `w` go to the decode matvec: the switch is on, the weight is
    /// bf16, `rows` fits a bucket and the rows are 16-byte aligned (`cols % 8 == 0`).
    pub(crate) fn matvec_fits(&self, w: &CudaWeight, rows: usize) -> bool {
        self.options.experimental.decode_matvec
            && w.bf16.is_some()
            && matvec_bucket(rows).is_some()
            && w.cols.is_multiple_of(8)
    }

    /// `out = x @ W^T (+ bias)` for every job in one launch (LoRA only through `lora`, the
    /// fused epilogue; each job's own `lora` is not read); all weights share `x` (`[rows, k]`,
    /// `k` = each weight's columns), then `epilogue`: with [`MatvecEpilogue::Silu`]
    /// (`fused-silu`: the jobs are gate and up, as wide), `act[r, f] = silu(gate[r, f]) *
    /// up[r, f]` instead, the `_silu` entries (one warp per pair of rows), the jobs' outputs not
    /// written; with [`MatvecEpilogue::AddNorm`] (`norm-in-matvec`: one job), the `_norm`
    /// entries, whose last block also runs `add_rms_norm` on the output. Callers check
    /// [`Self::matvec_fits`] and the sizes, and pick `launch` with [`Self::matvec_launch_mode`].
    pub(crate) fn matvec_bf16(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        jobs: &mut [LinearJob<'_, CudaBackend>],
        lora: Option<&LoraJobs>,
        launch: MatvecLaunch,
        epilogue: MatvecEpilogue<'_>,
    ) -> Result<()> {
        let bucket = matvec_bucket(rows).ok_or_else(|| err(format!("matvec: {rows} rows")))?;
        if jobs.is_empty() || jobs.len() > MATVEC_MAX_JOBS {
            return Err(err(format!("matvec: {} weights in one launch", jobs.len())));
        }
        let (k, n_jobs) = (jobs[0].w.cols, jobs.len());
        let stream = self.stream();
        let mut desc = MatvecJobs::default();
        let mut total = 0usize;
        // Per job W, bias, out; then x (for a launch with attributes).
        let mut ptrs = Ptrs::<{ 3 * MATVEC_MAX_JOBS + 1 }>::new(stream);
        for (i, j) in jobs.iter_mut().enumerate() {
            if j.w.cols != k {
                return Err(err("matvec: weights of one launch differ in columns"));
            }
            let wb =
                j.w.bf16
                    .as_ref()
                    .ok_or_else(|| err("matvec: weight is not bf16"))?;
            desc.w[i] = ptrs.read(wb);
            if let Some(b) = j.bias {
                desc.bias[i] = ptrs.read(b);
            }
            if !matches!(epilogue, MatvecEpilogue::Silu(_)) {
                desc.out[i] = ptrs.write(j.out);
            }
            desc.n[i] = int("matvec", j.w.rows)?;
            total += j.w.rows;
        }
        let mut norm = None;
        // 0: store, 1: silu, 2: add-norm (the entry sets' order).
        let kind = match epilogue {
            MatvecEpilogue::Store => 0,
            MatvecEpilogue::Silu(act) => {
                if n_jobs != 2 || desc.n[0] != desc.n[1] {
                    return Err(err("matvec (fused silu): not a gate/up pair of one width"));
                }
                // One warp per pair of rows: as many warps as features of one job.
                total = desc.n[0] as usize;
                check_len("matvec (fused silu)", "act", act.len(), rows * total)?;
                // The kernel stores at job 1's out (the up rows' epilogue), reads job 0's none.
                desc.out[1] = ptrs.write(act);
                1
            }
            MatvecEpilogue::AddNorm { nm, .. } => {
                if n_jobs != 1 || desc.n[0] != nm.dim || !valid_norm_threads(nm.threads) {
                    return Err(err(format!(
                        "matvec (add-norm): {n_jobs} jobs of {} features for a norm of {} \
                         on {} threads (one job as wide as the norm, a multiple of 32 threads)",
                        desc.n[0], nm.dim, nm.threads
                    )));
                }
                norm = Some(nm);
                2
            }
        };
        int("matvec", total)?;
        let (r, kk) = (int("matvec", rows)?, int("matvec", k)?);
        let inline = lora.is_some_and(|l| l.inline_blocks > 0);
        // The inline-shrink entries have a static ticket in shared memory and the add-norm ones
        // their sums (the others none).
        let static_shared = if inline || norm.is_some() {
            self.k.matvec_static_shared
        } else {
            0
        };
        let (round_x, shared) = matvec_round_x(self.options.bf16_compute, rows, k, static_shared);
        let mut grid = matvec_launch(total, self.tune.matvec_warps as usize, shared);
        grid.grid_dim.0 = self.tune.matvec_grid(grid.grid_dim.0 as usize, self.sms) as u32;
        // inline-shrink: the LoRA shrink's blocks run in this grid, ahead of the features.
        grid.grid_dim.0 += lora.map_or(0, |l| l.inline_blocks.max(0) as u32);
        let op = "matmul (bf16 matvec)";
        // [plain, fused-LoRA, inline-shrink] of the epilogue's entry set.
        let set = match lora {
            Some(_) if inline => 2,
            Some(_) => 1,
            None => 0,
        };
        let entries = match kind {
            0 => &[
                &self.k.matvec_bf16,
                &self.k.matvec_bf16_lora,
                &self.k.matvec_bf16_lora_inline,
            ][set][..],
            1 => &self
                .k
                .matvec_bf16_silu
                .as_ref()
                .ok_or_else(|| not_loaded("fused-silu"))?[set][..],
            _ => &self
                .k
                .matvec_bf16_norm
                .as_ref()
                .ok_or_else(|| not_loaded("norm-in-matvec"))?[set][..],
        };
        let f = entries.get(bucket).ok_or_else(|| {
            err(format!(
                "matvec (add-norm): {rows} rows, past the norm entries' buckets"
            ))
        })?;
        desc.pdl = launch.bits();
        if launch != MatvecLaunch::Plain {
            let mut xp = ptrs.read(x);
            let (mut r, mut kk, mut round_x, mut desc) = (r, kk, round_x, desc);
            let mut l = lora.copied().unwrap_or_default();
            let mut nm = norm.unwrap_or_default();
            let mut params = [
                (&mut xp as *mut u64).cast::<c_void>(),
                (&mut r as *mut i32).cast(),
                (&mut kk as *mut i32).cast(),
                (&mut round_x as *mut i32).cast(),
                (&mut desc as *mut MatvecJobs).cast(),
                (&mut l as *mut LoraJobs).cast(),
                (&mut nm as *mut MatvecNorm).cast(),
            ];
            // Without LoRA the entries take no `LoraJobs`: the norm moves up one place.
            if lora.is_none() {
                params.swap(5, 6);
            }
            let n_params = 5 + usize::from(lora.is_some()) + usize::from(norm.is_some());
            // SAFETY: the parameters of the entry `f` in order and types: x (its device
            // address, kept alive by `ptrs`), rows, k, round_x, the jobs, then `LoraJobs` for
            // the `_lora` entries and `MatvecNorm` for the `_norm` ones (whose pointers the
            // caller keeps alive); sizes checked as for the plain launch.
            if unsafe { self.launch_dependent(op, f, &mut params[..n_params], grid) }? {
                return self.sync_if_asked(op);
            }
        }
        let mut a = self.args(f);
        a.arg(x).arg(&r).arg(&kk).arg(&round_x).arg(&desc);
        if let Some(l) = lora {
            a.arg(l);
        }
        if let Some(nm) = norm.as_ref() {
            a.arg(nm);
        }
        let res = self.go(op, a, grid);
        drop(ptrs);
        res
    }

    /// `out[rows, n] = x @ W^T (+ bias)` by whichever path the options and shape pick:
    /// decode matvec, bf16 GEMM, `matmul_bf16`, or cuBLAS sgemm (f32, the parity path).
    pub(crate) fn matmul_dispatch(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaWeight,
        bias: Option<&CudaSlice<f32>>,
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("matmul", "x", x.len(), rows * w.cols)?;
        check_len("matmul", "out", out.len(), rows * w.rows)?;
        if self.matvec_fits(w, rows) {
            let mut jobs = [LinearJob {
                w,
                bias,
                n_out: w.rows,
                lora: None,
                out,
            }];
            let launch = self.matvec_launch_mode(false);
            return self.matvec_bf16(x, rows, &mut jobs, None, launch, MatvecEpilogue::Store);
        }
        if w.bf16.is_some() && !self.options.bf16_compute {
            return self.matmul_bf16(x, w, bias, rows, out);
        }
        if w.bf16.is_some() {
            let mut job = [LinearJob {
                w,
                bias,
                n_out: w.rows,
                lora: None,
                out,
            }];
            return self.gemm_bf16_each(x, rows, w.cols, &mut job);
        }
        self.sgemm(x, w, rows, out)?;
        if let Some(b) = bias {
            self.bias_add(out, b, rows, w.rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_buckets_cover_one_to_eight_rows_and_nothing_else() {
        let b: Vec<_> = (0..=10).map(matvec_bucket).collect();
        assert_eq!(
            b,
            [
                None,
                Some(0),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                None,
                None
            ]
        );
    }

    #[test]
    fn norm_descriptor_has_the_kernels_layout() {
        // 4 pointers, 2 ints, a float, padding (C: 48 bytes).
        let src = include_str!("../kernels/matmul.cu");
        assert!(src.contains("static_assert(sizeof(MatvecNorm) == 48,"));
        assert_eq!(std::mem::size_of::<MatvecNorm>(), 48);
        assert_eq!(std::mem::offset_of!(MatvecNorm, sync), 24);
        assert_eq!(std::mem::offset_of!(MatvecNorm, dim), 32);
        assert_eq!(std::mem::offset_of!(MatvecNorm, threads), 36);
        assert_eq!(std::mem::offset_of!(MatvecNorm, eps), 40);
    }

    #[test]
    fn norm_block_sizes_are_whole_warps_up_to_1024() {
        for (t, ok) in [
            (0, false),
            (31, false),
            (32, true),
            (256, true),
            (1024, true),
        ] {
            assert_eq!(valid_norm_threads(t), ok, "{t}");
        }
        assert!(!valid_norm_threads(1056) && !valid_norm_threads(-32));
    }

    #[test]
    fn jobs_descriptor_has_the_kernels_layout() {
        // 9 pointers then 4 ints (C: 88 bytes, no implicit padding).
        assert_eq!(std::mem::size_of::<MatvecJobs>(), 88);
        assert_eq!(std::mem::align_of::<MatvecJobs>(), 8);
        assert_eq!(std::mem::offset_of!(MatvecJobs, n), 72);
        assert_eq!(std::mem::offset_of!(MatvecJobs, pdl), 84);
        let src = include_str!("../kernels/matmul.cu");
        for (name, bit) in [("PDL_WAIT_X", PDL_WAIT_X), ("PDL_RELEASE", PDL_RELEASE)] {
            assert!(src.contains(&format!("#define {name} {bit}\n")), "{name}");
        }
    }

    #[test]
    fn lora_jobs_descriptor_has_the_kernels_layout() {
        // 18 pointers, 6 ints, 3 pointers, 6 ints, 1 pointer (C: 224 bytes, no padding).
        let src = include_str!("../kernels/lora.cu");
        assert!(src.contains("static_assert(sizeof(LoraJobs) == 224,"));
        assert_eq!(std::mem::size_of::<LoraJobs>(), 224);
        assert_eq!(std::mem::offset_of!(LoraJobs, ab_bf16), 200);
        assert_eq!(std::mem::offset_of!(LoraJobs, n_chunks), 204);
        assert_eq!(std::mem::offset_of!(LoraJobs, chunk_stride), 208);
        assert_eq!(std::mem::offset_of!(LoraJobs, inline_blocks), 212);
        assert_eq!(std::mem::offset_of!(LoraJobs, sync), 216);
        assert_eq!(std::mem::offset_of!(LoraJobs, n_slots), 144);
        assert_eq!(std::mem::offset_of!(LoraJobs, seg_of_token), 168);
        assert_eq!(std::mem::offset_of!(LoraJobs, mix_k), 192);
        assert_eq!(std::mem::offset_of!(LoraJobs, n_jobs), 196);
    }

    #[test]
    fn shrink_chunks_cover_in_dim_in_kernel_sized_pieces() {
        let src = include_str!("../kernels/lora.cu");
        assert!(src.contains(&format!("#define SHRINK_CHUNK {SHRINK_CHUNK}\n")));
        for (in_dim, n) in [(0, 1), (1, 1), (1024, 1), (1025, 2), (4096, 4), (11008, 11)] {
            assert_eq!(shrink_chunks(in_dim), n, "in_dim {in_dim}");
            assert!(shrink_chunks(in_dim) * SHRINK_CHUNK >= in_dim);
        }
    }

    #[test]
    fn launch_gives_one_warp_per_output_feature() {
        let c = matvec_launch(4096 * 3, 8, 0);
        assert_eq!(
            c.grid_dim.0 as usize * c.block_dim.0 as usize / 32,
            4096 * 3
        );
        let c = matvec_launch(9, 8, 8192);
        assert_eq!(
            (c.grid_dim.0, c.block_dim.0, c.shared_mem_bytes),
            (2, 256, 8192)
        );
        // Tuned to 4 warps per block (`DLP_CUDA_TUNE=matvec_warps=4`).
        let c = matvec_launch(9, 4, 0);
        assert_eq!((c.grid_dim.0, c.block_dim.0), (3, 128));
    }

    #[test]
    fn bf16_compute_stages_x_in_shared_memory_where_it_fits() {
        assert_eq!(matvec_round_x(false, 1, 11008, 0), (0, 0));
        // Decode of a 7B model: q/k/v (k 4096) and down_proj (k 11008) both staged.
        assert_eq!(matvec_round_x(true, 1, 4096, 0), (2, 8192));
        assert_eq!(matvec_round_x(true, 1, 11008, 0), (2, 22016));
        assert_eq!(matvec_round_x(true, 6, 4096, 0), (2, 49152));
        // Past 48 KiB: rounded per warp instead (same values).
        assert_eq!(matvec_round_x(true, 8, 4096, 0), (1, 0));
        assert_eq!(matvec_round_x(true, 3, 11008, 0), (1, 0));
        // A kernel's own static bytes count: exactly 48 KiB staged no longer fits with 16 more.
        assert_eq!(matvec_round_x(true, 6, 4096, 16), (1, 0));
        assert_eq!(matvec_round_x(true, 5, 4096, 16), (2, 40960));
    }
}

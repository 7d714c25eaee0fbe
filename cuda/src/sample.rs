//! `sample` on CUDA: each logit row's token drawn at its temperature from the host's uniform
//! draw, bit for bit the host sampler's plain draw, one block per row (`kernels/sample.cu`),
//! with [`crate::Experimental::device_sampling`]; without it the engine downloads the rows
//! and draws on the host, with the same result.

use cudarc::driver::{CudaSlice, PushKernelArg};
use dlp_engine::cpu::sample::ARGS_PER_ROW;
use dlp_engine::Result;

use crate::counts::LaunchCounters;
use crate::launch::{cfg, check_len, int};
use crate::{CudaBackend, CudaStep};

/// Threads per row, as `argmax`'s.
const SAMPLE_THREADS: u32 = 1024;
/// Tokens per block of the kernel's sums, and the f64 lanes of each (`sample.cu`).
const SAMPLE_BLOCK: usize = 256;
const SAMPLE_LANES: usize = 8;
/// The dynamic shared memory a launch may take without opting in: 48 KB less the static
/// 256 bytes of `argmax_block`, the lane sums of 195,584 tokens (Llama 3's 128,256 take
/// 32 KB).
const MAX_SHARED: usize = 48 * 1024 - 256;

/// Whether the kernel's lane sums of a `vocab`-entry row fit its shared memory.
pub(crate) fn vocab_fits(vocab: usize) -> bool {
    shared_bytes(vocab) <= MAX_SHARED && vocab <= dlp_engine::cpu::argmax::MAX_VOCAB
}

fn shared_bytes(vocab: usize) -> usize {
    vocab.div_ceil(SAMPLE_BLOCK) * SAMPLE_LANES * 8
}

impl CudaBackend {
    /// [`dlp_engine::Backend::sample`] on this backend.
    pub(crate) fn sample_impl(
        &self,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        step: &CudaStep,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        dlp_engine::cpu::argmax::check_vocab(vocab)?;
        if !vocab_fits(vocab) {
            return Err(dlp_engine::Error::unsupported(format!(
                "cuda sample: a vocabulary of {vocab} entries needs {} bytes of shared memory, \
                 above {MAX_SHARED}",
                shared_bytes(vocab)
            )));
        }
        check_len("sample", "logits", logits.len(), rows * vocab)?;
        check_len(
            "sample",
            "pick_args",
            step.plan.pick_args.len(),
            rows * ARGS_PER_ROW,
        )?;
        check_len("sample", "out", out.len(), rows)?;
        if rows == 0 {
            return Ok(());
        }
        let v = int("sample", vocab)?;
        let grid = u32::try_from(rows)
            .map_err(|_| crate::err(format!("sample: {rows} rows exceed a grid")))?;
        let pick_args = step.pick_args();
        let mut a = self.args(&self.k.sample);
        a.arg(logits).arg(&v).arg(&pick_args).arg(out);
        let shared = shared_bytes(vocab) as u32;
        LaunchCounters::bump(&self.counts.sample);
        self.go("sample", a, cfg((grid, 1, 1), SAMPLE_THREADS, shared))
    }
}

#[cfg(test)]
mod tests {
    use super::vocab_fits;

    #[test]
    fn vocabularies_that_fit_the_lane_sums() {
        assert!(vocab_fits(32_000) && vocab_fits(128_256) && vocab_fits(195_584));
        assert!(!vocab_fits(195_585) && !vocab_fits(256_000));
    }
}

//! `argmax` on CUDA: each logit row's greedy pick, one block per row (`kernels/argmax.cu`),
//! with [`crate::Experimental::device_argmax`]; without it the engine downloads the rows and
//! picks on the host, with the same result.

use cudarc::driver::{CudaSlice, PushKernelArg};
use dlp_engine::Result;

use crate::counts::LaunchCounters;
use crate::launch::{cfg, check_len, int};
use crate::CudaBackend;

/// Threads per row: enough 16-byte loads in flight to stream a 128K-entry row from L2.
const ARGMAX_THREADS: u32 = 1024;

impl CudaBackend {
    /// [`dlp_engine::Backend::argmax`] on this backend.
    pub(crate) fn argmax_impl(
        &self,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        dlp_engine::cpu::argmax::check_vocab(vocab)?;
        check_len("argmax", "logits", logits.len(), rows * vocab)?;
        check_len("argmax", "out", out.len(), rows)?;
        if rows == 0 {
            return Ok(());
        }
        let v = int("argmax", vocab)?;
        let grid = u32::try_from(rows)
            .map_err(|_| crate::err(format!("argmax: {rows} rows exceed a grid")))?;
        let mut a = self.args(&self.k.argmax);
        a.arg(logits).arg(&v).arg(out);
        LaunchCounters::bump(&self.counts.argmax);
        self.go("argmax", a, cfg((grid, 1, 1), ARGMAX_THREADS, 0))
    }
}

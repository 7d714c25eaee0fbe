//! [`CudaStep`]: a [`StepPlan`] uploaded to the device, its buffers reused from step to step
//! (a recorded graph holds their addresses).

use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use dlp_engine::backend::StepPlan;
use dlp_engine::Result;

use crate::{err, launch, CudaBackend};

/// A [`StepPlan`] on the device; the host copy is kept for the index checks the CPU makes.
pub struct CudaStep {
    pub(crate) plan: StepPlan,
    pub(crate) token_ids: CudaSlice<u32>,
    pub(crate) positions: CudaSlice<u32>,
    pub(crate) kv_slots: CudaSlice<u32>,
    pub(crate) segment_of_token: CudaSlice<u32>,
    /// `plan.mix_k` as the kernels' `int` parameter (checked at upload).
    pub(crate) mix_k_int: i32,
    /// [`StepPlan::tokens_alone_in_slots`], found once at upload.
    pub(crate) tokens_alone: bool,
    pub(crate) mix_slots: CudaSlice<u32>,
    pub(crate) mix_weights: CudaSlice<f32>,
    pub(crate) logit_rows: CudaSlice<u32>,
    /// [`StepPlan::pick_args`]: each logit row's temperature and draw (`sample`).
    pub(crate) pick_args: CudaSlice<f32>,
}

impl CudaBackend {
    /// A device copy of `data` (at least one element: CUDA allocates nothing for zero).
    pub(crate) fn put<T: DeviceRepr + ValidAsZeroBits>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        if data.is_empty() {
            return self
                .stream
                .alloc_zeros::<T>(1)
                .map_err(|e| err(format!("alloc: {e}")));
        }
        self.stream
            .clone_htod(data)
            .map_err(|e| err(format!("upload of {} values: {e}", data.len())))
    }

    /// Like [`Self::put`], writing into `reuse` when it is large enough.
    pub(crate) fn put_into<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        data: &[T],
        reuse: Option<CudaSlice<T>>,
    ) -> Result<CudaSlice<T>> {
        match reuse {
            Some(mut r) if r.len() >= data.len().max(1) => {
                if !data.is_empty() {
                    self.stream
                        .memcpy_htod(data, &mut r.slice_mut(0..data.len()))
                        .map_err(|e| err(format!("upload of {} values: {e}", data.len())))?;
                }
                Ok(r)
            }
            _ => self.put(data),
        }
    }

    pub(crate) fn upload_step_impl(
        &self,
        p: &StepPlan,
        reuse: Option<CudaStep>,
    ) -> Result<CudaStep> {
        // The old step's buffers, each reused where the new data fits.
        let (old_u32, old_f32) = match reuse {
            Some(s) => (
                [
                    s.token_ids,
                    s.positions,
                    s.kv_slots,
                    s.segment_of_token,
                    s.mix_slots,
                    s.logit_rows,
                ]
                .map(Some),
                [s.mix_weights, s.pick_args].map(Some),
            ),
            None => Default::default(),
        };
        let [a, b, c, d, e, g] = old_u32;
        let [f, h] = old_f32;
        Ok(CudaStep {
            plan: p.clone(),
            token_ids: self.put_into(&p.token_ids, a)?,
            positions: self.put_into(&p.positions, b)?,
            kv_slots: self.put_into(&p.kv_slots, c)?,
            segment_of_token: self.put_into(&p.segment_of_token, d)?,
            mix_k_int: launch::int("upload_step", p.mix_k)?,
            tokens_alone: p.tokens_alone_in_slots(),
            mix_slots: self.put_into(&p.mix_slots, e)?,
            mix_weights: self.put_into(&p.mix_weights, f)?,
            logit_rows: self.put_into(&p.logit_rows, g)?,
            pick_args: self.put_into(&p.pick_args, h)?,
        })
    }
}

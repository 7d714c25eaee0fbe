//! The fused multi-LoRA pair on CUDA: the stacks on the device ([`CudaLora`]), and
//! `lora_shrink` / `lora_expand` on the segment kernels of `kernels/lora.cu`, or on the tiled
//! ones ([`crate::lora_tiled`]) or the SGMV ones ([`crate::sgmv`]) where that switch and the
//! shape allow (tiled first where both are on). Every kernel of the pair
//! starts with the same parameters (`LORA_PAIR_PARAMS` in lora.cu), pushed by
//! [`CudaBackend::lora_args`].

use cudarc::driver::{CudaFunction, CudaSlice, LaunchArgs, PushKernelArg};
use dlp_engine::backend::LoraStackHost;
use dlp_engine::{Error, Result};

use crate::launch::{cfg, check_len, int, BLOCK};
use crate::sgmv::sgmv_cols;
use crate::step::LoraTables;
use crate::{CudaBackend, CudaStep};

/// A [`LoraStackHost`] on the device: stacked A and B^T with the rank-offset table.
pub struct CudaLora {
    pub(crate) in_dim: usize,
    pub(crate) out_dim: usize,
    pub(crate) max_rank: usize,
    pub(crate) n_slots: usize,
    /// The sizes above as the kernels' `int` parameters (checked once, at upload).
    pub(crate) ints: LoraInts,
    /// Stacked A (one unused value when `a16` holds it).
    pub(crate) a: CudaSlice<f32>,
    /// Stacked B^T (one unused value when `bt16` holds it).
    pub(crate) bt: CudaSlice<f32>,
    /// A as bf16 bit patterns, with [`crate::CudaOptions::lora_bf16`].
    pub(crate) a16: Option<CudaSlice<u16>>,
    /// B^T as bf16 bit patterns, with [`crate::CudaOptions::lora_bf16`].
    pub(crate) bt16: Option<CudaSlice<u16>>,
    pub(crate) slot_offset: CudaSlice<u32>,
    pub(crate) slot_rank: CudaSlice<u32>,
    pub(crate) slot_scale: CudaSlice<f32>,
    /// The slot ranks on the host, largest first (the SGMV grids' column bound).
    pub(crate) ranks_desc: Vec<u32>,
}

/// A stack's sizes as kernel `int`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoraInts {
    pub(crate) in_dim: i32,
    pub(crate) out_dim: i32,
    pub(crate) max_rank: i32,
    pub(crate) n_slots: i32,
}

impl CudaBackend {
    pub(crate) fn upload_lora_impl(&self, s: &LoraStackHost) -> Result<CudaLora> {
        s.validate()?;
        let n = s.slot_rank.len();
        let (a, bt, a16, bt16) = if self.options.lora_bf16 {
            let bits = |v: &[f32]| -> Vec<u16> {
                v.iter()
                    .map(|&x| half::bf16::from_f32(x).to_bits())
                    .collect()
            };
            (
                self.put::<f32>(&[])?,
                self.put::<f32>(&[])?,
                Some(self.put(&bits(&s.a))?),
                Some(self.put(&bits(&s.bt))?),
            )
        } else {
            (self.put(&s.a)?, self.put(&s.bt)?, None, None)
        };
        let op = "upload_lora";
        Ok(CudaLora {
            in_dim: s.in_dim,
            out_dim: s.out_dim,
            max_rank: s.max_rank,
            n_slots: n,
            ints: LoraInts {
                in_dim: int(op, s.in_dim)?,
                out_dim: int(op, s.out_dim)?,
                max_rank: int(op, s.max_rank)?,
                n_slots: int(op, n)?,
            },
            a,
            bt,
            a16,
            bt16,
            slot_offset: self.put(&s.slot_offset)?,
            slot_rank: self.put(&s.slot_rank)?,
            slot_scale: self.put(&s.slot_scale)?,
            ranks_desc: {
                let mut r = s.slot_rank.clone();
                r.sort_unstable_by(|a, b| b.cmp(a));
                r
            },
        })
    }

    /// A launch of one kernel of the pair, its f32 or bf16 variant by the stack's storage
    /// (`--cuda-lora-bf16`), with the parameters every such kernel starts with pushed
    /// (`LORA_PAIR_PARAMS`): `input` (x, or u for an `expand`), A (or B^T), the step's
    /// tables, the stack's slot tables, `in_dim` (or `out_dim`) and `max_rank`. The caller
    /// pushes the kernel's own parameters and its output.
    pub(crate) fn lora_args<'a>(
        &'a self,
        (f32_kernel, bf16_kernel): (&'a CudaFunction, &'a CudaFunction),
        input: &'a CudaSlice<f32>,
        l: &'a CudaLora,
        t: &'a LoraTables<'a>,
        expand: bool,
    ) -> LaunchArgs<'a> {
        let (m, m16, dim) = if expand {
            (&l.bt, &l.bt16, &l.ints.out_dim)
        } else {
            (&l.a, &l.a16, &l.ints.in_dim)
        };
        let mut a = match m16 {
            Some(m16) => {
                let mut a = self.args(bf16_kernel);
                a.arg(input).arg(m16);
                a
            }
            None => {
                let mut a = self.args(f32_kernel);
                a.arg(input).arg(m);
                a
            }
        };
        a.arg(&t.seg_of_token)
            .arg(&t.mix_slots)
            .arg(&t.mix_weights)
            .arg(t.mix_k)
            .arg(&l.slot_offset)
            .arg(&l.slot_rank)
            .arg(&l.slot_scale)
            .arg(&l.ints.n_slots)
            .arg(dim)
            .arg(&l.ints.max_rank);
        a
    }

    /// [`dlp_engine::Backend::lora_shrink`] on this backend.
    pub(crate) fn lora_shrink_impl(
        &self,
        x: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        step.plan.check_lora(n_tokens, l.n_slots)?;
        let kk = step.plan.mix_k;
        check_len("lora_shrink", "x", x.len(), n_tokens * l.in_dim)?;
        check_len("lora_shrink", "u", u.len(), n_tokens * kk * l.max_rank)?;
        if n_tokens == 0 || kk == 0 || l.max_rank == 0 {
            return Ok(());
        }
        if self.tiled_shrink(x, l, step, n_tokens, u)? {
            return Ok(());
        }
        if let Some(cols) = sgmv_cols(self.options.experimental.sgmv, l, kk) {
            return self.sgmv_shrink(x, l, step, n_tokens, cols, u);
        }
        let kernels = (&self.k.lora_shrink, &self.k.lora_shrink_bf16);
        let tables = step.lora_tables();
        let mut a = self.lora_args(kernels, x, l, &tables, false);
        a.arg(u);
        self.go(
            "lora_shrink",
            a,
            cfg((n_tokens as u32, kk as u32, 1), BLOCK, 0),
        )
    }

    /// [`dlp_engine::Backend::lora_expand`] on this backend.
    pub(crate) fn lora_expand_impl(
        &self,
        u: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        step.plan.check_lora(n_tokens, l.n_slots)?;
        let kk = step.plan.mix_k;
        check_len("lora_expand", "u", u.len(), n_tokens * kk * l.max_rank)?;
        check_len("lora_expand", "y", y.len(), n_tokens * l.out_dim)?;
        if n_tokens == 0 || kk == 0 || l.max_rank == 0 || l.out_dim == 0 {
            return Ok(());
        }
        if self.tiled_expand(u, l, step, n_tokens, y)? {
            return Ok(());
        }
        if let Some(cols) = sgmv_cols(self.options.experimental.sgmv, l, kk) {
            return self.sgmv_expand(u, l, step, n_tokens, cols, y);
        }
        let shared = (kk * (l.max_rank + 2) * 4) as u32;
        if shared > 48 * 1024 || kk > BLOCK as usize {
            return Err(Error::unsupported(format!(
                "cuda lora_expand: K {kk} x max rank {} is too large",
                l.max_rank
            )));
        }
        let kernels = (&self.k.lora_expand, &self.k.lora_expand_bf16);
        let tables = step.lora_tables();
        let mut a = self.lora_args(kernels, u, l, &tables, true);
        a.arg(y);
        let gx = l.out_dim.div_ceil(BLOCK as usize) as u32;
        self.go(
            "lora_expand",
            a,
            cfg((gx, n_tokens as u32, 1), BLOCK, shared),
        )
    }
}

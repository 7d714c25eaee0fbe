//! [`CudaStep`]: a [`StepPlan`] uploaded to the device, its buffers reused from step to step
//! (a recorded graph holds their addresses). By default each of the plan's eight arrays is a
//! buffer of its own and a step makes a host-to-device copy per array that is not empty (seven
//! in a decode step, eight where it samples on the device); with
//! [`crate::Experimental::packed_upload`] they share one buffer laid out by [`StepLayout`] and a
//! step makes one copy.

use std::ops::Range;

use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};
use dlp_engine::backend::StepPlan;
use dlp_engine::Result;

use crate::{err, launch, CudaBackend};

/// Alignment of each array in the packed buffer, in 4-byte words: 64 bytes, a cache line
/// (more than any kernel's vector load of these arrays needs).
pub(crate) const PACK_ALIGN_WORDS: usize = 16;

/// The eight arrays of a [`StepPlan`] in the packed buffer's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepArray {
    TokenIds,
    Positions,
    KvSlots,
    SegmentOfToken,
    MixSlots,
    MixWeights,
    LogitRows,
    PickArgs,
}

impl StepArray {
    /// Every array, in the packed buffer's order.
    pub(crate) const ALL: [StepArray; 8] = [
        StepArray::TokenIds,
        StepArray::Positions,
        StepArray::KvSlots,
        StepArray::SegmentOfToken,
        StepArray::MixSlots,
        StepArray::MixWeights,
        StepArray::LogitRows,
        StepArray::PickArgs,
    ];

    /// This array of `p` as 4-byte words (the f32 arrays as their bits).
    fn words(self, p: &StepPlan) -> Words<'_> {
        match self {
            StepArray::TokenIds => Words::U32(&p.token_ids),
            StepArray::Positions => Words::U32(&p.positions),
            StepArray::KvSlots => Words::U32(&p.kv_slots),
            StepArray::SegmentOfToken => Words::U32(&p.segment_of_token),
            StepArray::MixSlots => Words::U32(&p.mix_slots),
            StepArray::MixWeights => Words::F32(&p.mix_weights),
            StepArray::LogitRows => Words::U32(&p.logit_rows),
            StepArray::PickArgs => Words::F32(&p.pick_args),
        }
    }
}

enum Words<'a> {
    U32(&'a [u32]),
    F32(&'a [f32]),
}

impl Words<'_> {
    fn len(&self) -> usize {
        match self {
            Words::U32(w) => w.len(),
            Words::F32(w) => w.len(),
        }
    }
}

/// Where each array of a step sits in the packed buffer (`packed-upload`), in 4-byte words.
/// Each starts on a [`PACK_ALIGN_WORDS`] boundary and has room for at least one word, so every
/// array's address lies inside the buffer even when it is empty (as `CudaBackend::put`
/// allocates one element for an empty array). A function of the arrays' lengths alone: the
/// model's plan check fixes every length but `pick_args`' by the step's
/// [`dlp_engine::backend::StepShape`] (and `pick_args`' too where the step samples), and
/// `pick_args` comes last, so steps of one shape put every array at the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StepLayout {
    starts: [usize; 8],
    lens: [usize; 8],
    total: usize,
}

impl StepLayout {
    /// The layout of `p`'s arrays.
    pub(crate) fn of(p: &StepPlan) -> Self {
        let mut l = StepLayout::default();
        let mut at = 0;
        for (i, a) in StepArray::ALL.into_iter().enumerate() {
            let len = a.words(p).len();
            l.starts[i] = at;
            l.lens[i] = len;
            at += len.max(1).next_multiple_of(PACK_ALIGN_WORDS);
        }
        l.total = at;
        l
    }

    /// Words the packed buffer needs.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The words `a` occupies (empty for an empty array).
    pub(crate) fn range(&self, a: StepArray) -> Range<usize> {
        let i = a as usize;
        self.starts[i]..self.starts[i] + self.lens[i]
    }

    /// Writes `p`'s arrays into `out` at this layout (`out` becomes [`Self::total`] words; the
    /// gaps are zero). `p` must be the plan the layout was made from.
    pub(crate) fn pack(&self, p: &StepPlan, out: &mut Vec<u32>) {
        out.clear();
        out.resize(self.total, 0);
        for a in StepArray::ALL {
            let dst = &mut out[self.range(a)];
            match a.words(p) {
                Words::U32(w) => dst.copy_from_slice(w),
                Words::F32(w) => dst.iter_mut().zip(w).for_each(|(d, s)| *d = s.to_bits()),
            }
        }
    }
}

/// The plan's arrays on the device.
// One per step, moved a few times a step: boxing the larger variant would cost an allocation
// a step to save a few hundred bytes of moves.
#[allow(clippy::large_enum_variant)]
enum Buffers {
    /// One buffer per array (the default).
    Separate {
        u32s: [CudaSlice<u32>; 6],
        f32s: [CudaSlice<f32>; 2],
    },
    /// One buffer for all (`packed-upload`), and the host words last copied into it.
    Packed {
        words: CudaSlice<u32>,
        layout: StepLayout,
        host: Vec<u32>,
        /// Whether `words` was allocated by this upload (the old buffer was too small).
        fresh: bool,
    },
}

/// Index of each u32 array in [`Buffers::Separate`], by [`StepArray`] order.
const U32_ARRAYS: [StepArray; 6] = [
    StepArray::TokenIds,
    StepArray::Positions,
    StepArray::KvSlots,
    StepArray::SegmentOfToken,
    StepArray::MixSlots,
    StepArray::LogitRows,
];
const F32_ARRAYS: [StepArray; 2] = [StepArray::MixWeights, StepArray::PickArgs];

/// A step's segment mixtures as the LoRA kernels read them: bound to a local for as long as a
/// launch's arguments point into it.
pub(crate) struct LoraTables<'a> {
    /// [`StepPlan::segment_of_token`].
    pub(crate) seg_of_token: CudaView<'a, u32>,
    /// [`StepPlan::mix_slots`].
    pub(crate) mix_slots: CudaView<'a, u32>,
    /// [`StepPlan::mix_weights`].
    pub(crate) mix_weights: CudaView<'a, f32>,
    /// [`CudaStep::mix_k_int`].
    pub(crate) mix_k: &'a i32,
}

/// A [`StepPlan`] on the device; the host copy is kept for the index checks the CPU makes.
pub struct CudaStep {
    pub(crate) plan: StepPlan,
    /// `plan.mix_k` as the kernels' `int` parameter (checked at upload).
    pub(crate) mix_k_int: i32,
    /// [`StepPlan::tokens_alone_in_slots`], found once at upload.
    pub(crate) tokens_alone: bool,
    buffers: Buffers,
}

impl CudaStep {
    fn u32_array(&self, a: StepArray) -> CudaView<'_, u32> {
        match &self.buffers {
            Buffers::Separate { u32s, .. } => {
                let i = U32_ARRAYS
                    .iter()
                    .position(|&x| x == a)
                    .expect("a u32 array");
                u32s[i].slice(..)
            }
            Buffers::Packed { words, layout, .. } => words.slice(layout.range(a)),
        }
    }

    fn f32_array(&self, a: StepArray) -> CudaView<'_, f32> {
        match &self.buffers {
            Buffers::Separate { f32s, .. } => {
                let i = F32_ARRAYS
                    .iter()
                    .position(|&x| x == a)
                    .expect("an f32 array");
                f32s[i].slice(..)
            }
            Buffers::Packed { words, layout, .. } => {
                let r = layout.range(a);
                // SAFETY: these words were written from f32 values (`StepLayout::pack`), and
                // the view covers exactly them.
                unsafe { words.slice(r.clone()).transmute::<f32>(r.len()) }
                    .expect("an f32 view of as many words")
            }
        }
    }

    /// [`StepPlan::token_ids`] on the device.
    pub(crate) fn token_ids(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::TokenIds)
    }
    /// [`StepPlan::positions`] on the device.
    pub(crate) fn positions(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::Positions)
    }
    /// [`StepPlan::kv_slots`] on the device.
    pub(crate) fn kv_slots(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::KvSlots)
    }
    /// [`StepPlan::segment_of_token`] on the device.
    pub(crate) fn segment_of_token(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::SegmentOfToken)
    }
    /// [`StepPlan::mix_slots`] on the device.
    pub(crate) fn mix_slots(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::MixSlots)
    }
    /// [`StepPlan::mix_weights`] on the device.
    pub(crate) fn mix_weights(&self) -> CudaView<'_, f32> {
        self.f32_array(StepArray::MixWeights)
    }
    /// [`StepPlan::logit_rows`] on the device.
    pub(crate) fn logit_rows(&self) -> CudaView<'_, u32> {
        self.u32_array(StepArray::LogitRows)
    }
    /// [`StepPlan::pick_args`] on the device: each logit row's temperature and draw.
    pub(crate) fn pick_args(&self) -> CudaView<'_, f32> {
        self.f32_array(StepArray::PickArgs)
    }

    /// The tables the LoRA kernels read ([`CudaBackend::lora_args`]).
    pub(crate) fn lora_tables(&self) -> LoraTables<'_> {
        LoraTables {
            seg_of_token: self.segment_of_token(),
            mix_slots: self.mix_slots(),
            mix_weights: self.mix_weights(),
            mix_k: &self.mix_k_int,
        }
    }

    /// The packed layout, where the step is packed (`packed-upload`).
    pub(crate) fn layout(&self) -> Option<StepLayout> {
        match &self.buffers {
            Buffers::Packed { layout, .. } => Some(*layout),
            Buffers::Separate { .. } => None,
        }
    }

    /// Whether this step's arrays may sit elsewhere than those of the step whose packed layout
    /// was `recorded`, uploaded into that step's buffers: a new buffer, or an array at another
    /// place. Never on the default path: a step of the same shape reuses every buffer a graph
    /// reads (only `pick_args`, which no shape fixes where a step does not sample, may be
    /// reallocated there, and such a step's graph never reads it).
    pub(crate) fn moved_from(&self, recorded: Option<StepLayout>) -> bool {
        match &self.buffers {
            Buffers::Packed { layout, fresh, .. } => {
                *fresh || recorded.is_none_or(|r| r.starts != layout.starts)
            }
            Buffers::Separate { .. } => false,
        }
    }
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
        let old = reuse.map(|s| s.buffers);
        let buffers = if self.options.experimental.packed_upload {
            self.upload_packed(p, old)?
        } else {
            self.upload_separate(p, old)?
        };
        Ok(CudaStep {
            plan: p.clone(),
            mix_k_int: launch::int("upload_step", p.mix_k)?,
            tokens_alone: p.tokens_alone_in_slots(),
            buffers,
        })
    }

    /// The default: each array in a buffer of its own, `old`'s reused where the new data fits
    /// (a copy per array that is not empty).
    fn upload_separate(&self, p: &StepPlan, old: Option<Buffers>) -> Result<Buffers> {
        let (old_u32, old_f32) = match old {
            Some(Buffers::Separate { u32s, f32s }) => (u32s.map(Some), f32s.map(Some)),
            _ => Default::default(),
        };
        // In U32_ARRAYS' order.
        let [a, b, c, d, e, g] = old_u32;
        let u32s = [
            self.put_into(&p.token_ids, a)?,
            self.put_into(&p.positions, b)?,
            self.put_into(&p.kv_slots, c)?,
            self.put_into(&p.segment_of_token, d)?,
            self.put_into(&p.mix_slots, e)?,
            self.put_into(&p.logit_rows, g)?,
        ];
        let [mw, pa] = old_f32;
        let f32s = [
            self.put_into(&p.mix_weights, mw)?,
            self.put_into(&p.pick_args, pa)?,
        ];
        Ok(Buffers::Separate { u32s, f32s })
    }

    /// `packed-upload`: the plan's arrays packed on the host, then one copy into `old`'s
    /// buffer where it is large enough (a new one otherwise).
    fn upload_packed(&self, p: &StepPlan, old: Option<Buffers>) -> Result<Buffers> {
        let (old_words, mut host) = match old {
            Some(Buffers::Packed { words, host, .. }) => (Some(words), host),
            _ => (None, Vec::new()),
        };
        let layout = StepLayout::of(p);
        layout.pack(p, &mut host);
        let fresh = old_words
            .as_ref()
            .is_none_or(|w| w.len() < layout.total().max(1));
        // From pageable memory the driver stages the words before the call returns (it may
        // synchronise to do so), so `host` may be rewritten by the next step: the default
        // path's per-array copies rely on the same, from vectors the plan builder refills.
        let words = self.put_into(&host, old_words)?;
        Ok(Buffers::Packed {
            words,
            layout,
            host,
            fresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tokens: usize, segments: usize, k: usize, rows: usize, sample: bool) -> StepPlan {
        StepPlan {
            token_ids: (0..tokens as u32).map(|i| 100 + i).collect(),
            positions: (0..tokens as u32).map(|i| 200 + i).collect(),
            kv_slots: (0..tokens as u32).map(|i| 300 + i).collect(),
            segment_of_token: (0..tokens as u32)
                .map(|i| i % segments.max(1) as u32)
                .collect(),
            mix_k: k,
            mix_slots: (0..(segments * k) as u32).map(|i| 400 + i).collect(),
            mix_weights: (0..segments * k).map(|i| 0.5 + i as f32).collect(),
            logit_rows: (0..rows as u32).collect(),
            pick_args: if sample {
                let per_row = dlp_engine::cpu::sample::ARGS_PER_ROW;
                (0..per_row * rows).map(|i| -(i as f32) - 0.25).collect()
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn each_array_is_aligned_apart_and_inside_the_buffer() {
        for p in [
            plan(1, 1, 1, 1, false),
            plan(1, 1, 3, 1, true),
            plan(17, 5, 3, 4, true),
            plan(64, 64, 8, 64, true),
            plan(0, 0, 0, 0, false),
            StepPlan::default(),
        ] {
            let l = StepLayout::of(&p);
            let mut end = 0;
            for a in StepArray::ALL {
                let r = l.range(a);
                assert_eq!(r.start % PACK_ALIGN_WORDS, 0, "{a:?} aligned");
                assert!(r.start >= end, "{a:?} after the array before it");
                // Room for one word even when empty: the address is inside the buffer.
                assert!(r.start < l.total(), "{a:?} starts inside the buffer");
                assert!(r.end <= l.total());
                end = r.end.max(r.start + 1);
            }
            assert_eq!(l.range(StepArray::TokenIds).len(), p.token_ids.len());
            assert_eq!(l.range(StepArray::MixWeights).len(), p.mix_weights.len());
            assert_eq!(l.range(StepArray::PickArgs).len(), p.pick_args.len());
        }
    }

    #[test]
    fn packing_puts_each_array_at_its_range_and_zeroes_the_gaps() {
        let p = plan(5, 2, 3, 2, true);
        let l = StepLayout::of(&p);
        let mut host = vec![7u32; 3]; // stale words from an earlier step
        l.pack(&p, &mut host);
        assert_eq!(host.len(), l.total());
        let mut used = vec![false; l.total()];
        for a in StepArray::ALL {
            let r = l.range(a);
            let got = &host[r.clone()];
            match a.words(&p) {
                Words::U32(w) => assert_eq!(got, w, "{a:?}"),
                Words::F32(w) => {
                    let back: Vec<f32> = got.iter().map(|&b| f32::from_bits(b)).collect();
                    assert_eq!(back, w, "{a:?}");
                }
            }
            r.for_each(|i| used[i] = true);
        }
        assert!(
            host.iter().zip(&used).all(|(&w, &u)| u || w == 0),
            "gaps are zero"
        );
    }

    #[test]
    fn steps_of_one_shape_share_a_layout_and_other_shapes_do_not() {
        // Same lengths, other values: a graph's replay reads the same addresses.
        let a = plan(8, 8, 3, 8, true);
        let mut b = a.clone();
        b.token_ids.iter_mut().for_each(|t| *t += 9);
        b.mix_weights.iter_mut().for_each(|w| *w *= 0.5);
        assert_eq!(StepLayout::of(&a), StepLayout::of(&b));
        // A step that also samples, or has one more token, has another layout.
        assert_ne!(StepLayout::of(&a), StepLayout::of(&plan(8, 8, 3, 8, false)));
        assert_ne!(StepLayout::of(&a), StepLayout::of(&plan(9, 8, 3, 8, true)));
    }
}

//! [`WgpuBackend`]: buffers, weights (split into row blocks past the binding limit), step
//! tables and LoRA stacks on the device. The ops themselves are in `ops.rs`.

use std::sync::Mutex;

use dlp_engine::tensor::PackedKind;
use dlp_engine::weight_groups::{regroup, GroupLayout};
use dlp_engine::{Error, HostTensor, LoraStackHost, Result, StepPlan};

use crate::device::{AdapterPolicy, Gpu};
use crate::half::f16_bits;

/// A device buffer of f32.
pub struct WgpuBuf {
    pub(crate) buf: wgpu::Buffer,
    /// Number of f32 it holds.
    pub len: usize,
}

/// One row block of a weight.
pub(crate) struct Block {
    pub start: usize,
    pub rows: usize,
    pub buf: wgpu::Buffer,
}

/// How a weight's values are stored on the device; each is read by its own build of the
/// weight-reading shaders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WeightStore {
    /// 4 bytes a value.
    #[default]
    F32,
    /// 2 bytes a value ([`WgpuOptions::f16_weights`]).
    F16,
    /// A GGUF's quantised blocks as scale-offset groups (`dlp_engine::weight_groups`), the
    /// CPU's values: 5-10 bits a value by kind.
    Groups(GroupLayout),
}

impl std::fmt::Display for WeightStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightStore::F32 => write!(f, "f32"),
            WeightStore::F16 => write!(f, "f16"),
            WeightStore::Groups(g) => write!(
                f,
                "{}-bit groups of {}{}",
                g.bits,
                g.size,
                if g.has_min { " with mins" } else { "" }
            ),
        }
    }
}

/// A 2-D weight `[rows, cols]`, as one or more row blocks each within the binding limit,
/// stored as f32, (with [`WgpuOptions::f16_weights`]) f16, or, where the model file holds it
/// block-quantised (a GGUF's Q4_K, Q8_0, ...), as scale-offset groups of the same values.
pub struct WgpuWeight {
    /// Rows (output features / vocabulary).
    pub rows: usize,
    /// Columns (input features).
    pub cols: usize,
    /// How the values are stored.
    pub store: WeightStore,
    pub(crate) blocks: Vec<Block>,
}

/// Word offsets of the step's tables inside [`WgpuStep`]'s one buffer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepOffsets {
    pub ids: u32,
    pub pos: u32,
    pub slots: u32,
    pub seg: u32,
    pub mix_slots: u32,
    pub mix_weights: u32,
    pub logit_rows: u32,
}

/// A [`StepPlan`] on the device (one buffer of u32 tables) plus its host copy for checks.
pub struct WgpuStep {
    pub(crate) plan: StepPlan,
    pub(crate) buf: wgpu::Buffer,
    pub(crate) words: usize,
    pub(crate) off: StepOffsets,
}

/// A LoRA stack on the device: A, B^T and the per-slot table `[offset, rank, scale bits]`.
pub struct WgpuLora {
    pub(crate) host: LoraStackHost,
    pub(crate) a: wgpu::Buffer,
    pub(crate) bt: wgpu::Buffer,
    pub(crate) slots: wgpu::Buffer,
}

/// How [`WgpuBackend::with_options`] sets the backend up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WgpuOptions {
    /// Store the large weights (matmul weights, lm_head, embedding table) as f16, half the
    /// memory and bandwidth of f32; activations, accumulation, the KV cache, LoRA and norms
    /// stay f32. Needs the adapter's `SHADER_F16` feature (an error names the adapter when it
    /// lacks it). Logits then differ from the f32 path by the weights' rounding: up to 2.6e-3
    /// measured on a tiny f32 model, tested bound 1e-2 (`tests/tests/golden_wgpu.rs`). A GGUF's
    /// quantised matrices are not rounded: they stay [`WeightStore::Groups`] either way.
    pub f16_weights: bool,
    /// Split weights into row blocks of at most this many bytes (tests use a small cap to
    /// exercise the splitting that big weights need); `None`: the adapter's binding limit.
    pub binding_cap: Option<u64>,
}

/// The wgpu backend. See the crate docs.
pub struct WgpuBackend {
    pub(crate) gpu: Gpu,
    /// Bound where a shader's optional input (bias) is absent.
    pub(crate) dummy: wgpu::Buffer,
    /// Normalised rows of `logits`, grown as needed.
    pub(crate) scratch: Mutex<Option<WgpuBuf>>,
    /// Largest row block of a weight, in bytes (the binding limit, or a smaller test cap).
    pub(crate) block_bytes: u64,
}

pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::Backend {
        backend: "wgpu".into(),
        msg: msg.into(),
    }
}

impl WgpuBackend {
    /// Opens the best adapter `policy` allows, or says why there is none (f32 weights).
    pub fn new(policy: AdapterPolicy) -> Result<Self> {
        Self::with_options(policy, WgpuOptions::default())
    }

    /// As [`WgpuBackend::new`], with weights split into row blocks of at most `cap` bytes
    /// (tests use a small cap to exercise the splitting that big weights need).
    pub fn with_binding_cap(policy: AdapterPolicy, cap: Option<u64>) -> Result<Self> {
        let opts = WgpuOptions {
            binding_cap: cap,
            ..WgpuOptions::default()
        };
        Self::with_options(policy, opts)
    }

    /// Opens the best adapter `policy` allows, set up as `opts` says. With f16 weights on an
    /// adapter without `SHADER_F16`: an error naming both (the adapter is still chosen by
    /// `policy` alone; there is no silent fallback to f32).
    pub fn with_options(policy: AdapterPolicy, opts: WgpuOptions) -> Result<Self> {
        let gpu = Gpu::new(policy, opts.f16_weights)?;
        let dummy = gpu.storage("dummy", 16, None)?;
        let block_bytes = opts
            .binding_cap
            .map_or(gpu.max_binding, |c| c.min(gpu.max_binding));
        Ok(WgpuBackend {
            gpu,
            dummy,
            scratch: Mutex::new(None),
            block_bytes,
        })
    }

    /// The adapter in use.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// The adapter's `max_storage_buffer_binding_size` (capped by `max_buffer_size`).
    pub fn max_binding_bytes(&self) -> u64 {
        self.gpu.max_binding
    }

    /// Whether weights are stored as f16 ([`WgpuOptions::f16_weights`]).
    pub fn f16_weights(&self) -> bool {
        self.gpu.f16
    }

    /// Whether the adapter offers `SHADER_F16`, i.e. whether f16 weights can be asked for.
    pub fn adapter_supports_f16(&self) -> bool {
        self.gpu.adapter_f16
    }

    /// Whether the adapter is a software rasteriser (lavapipe, llvmpipe).
    pub fn is_software(&self) -> bool {
        crate::is_software(&self.gpu.info)
    }

    pub(crate) fn buffer(&self, what: &str, data: &[f32]) -> Result<WgpuBuf> {
        Ok(WgpuBuf {
            buf: self.gpu.storage(
                what,
                (data.len() * 4) as u64,
                Some(bytemuck::cast_slice(data)),
            )?,
            len: data.len(),
        })
    }

    pub(crate) fn upload_weight_impl(&self, w: &HostTensor) -> Result<WgpuWeight> {
        let [rows, cols] = w.shape[..] else {
            return Err(Error::invalid(format!(
                "upload_weight: expected a 2-D tensor, got shape {:?}",
                w.shape
            )));
        };
        // A GGUF's quantised blocks stay compact (regrouped, the same values); f16 storage
        // takes a file's own f16 values as they are and rounds anything else to nearest.
        if let Some(layout) = w.packed.as_ref().and_then(|p| GroupLayout::of(p.kind)) {
            // A packed tensor's rows are whole blocks (`HostTensor::packed`), hence whole groups.
            if cols % layout.size as usize != 0 {
                return Err(Error::invalid(format!(
                    "upload_weight: a packed [{rows}, {cols}] weight whose rows are not whole groups of {}",
                    layout.size
                )));
            }
        }
        let groups = w.packed.as_ref().and_then(|p| regroup(p.kind, &p.bytes));
        let f16 = self.gpu.f16 && groups.is_none();
        let bits: Vec<u16> = match &w.packed {
            Some(p) if f16 && p.kind == PackedKind::F16 => p
                .bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect(),
            _ if f16 => w.values().iter().map(|&v| f16_bits(v)).collect(),
            _ => Vec::new(),
        };
        let values = if groups.is_none() && !f16 {
            w.values()
        } else {
            Default::default()
        };
        let (store, data, row_bytes): (WeightStore, &[u8], usize) = match &groups {
            Some((layout, words)) => (
                WeightStore::Groups(*layout),
                bytemuck::cast_slice(words),
                layout.row_words(cols) * 4,
            ),
            None if f16 => (WeightStore::F16, bytemuck::cast_slice(&bits), cols * 2),
            None => (WeightStore::F32, bytemuck::cast_slice(&values), cols * 4),
        };
        // Buffers are padded to a multiple of 4 bytes (an odd count of f16): a block of whole
        // rows within the limit rounded down to 4 bytes stays within it once padded.
        let per_block = (self.block_bytes / 4 * 4 / row_bytes.max(1) as u64) as usize;
        if per_block == 0 {
            return Err(err(format!(
                "weight [{rows}, {cols}]: one row ({row_bytes} bytes, {store}) exceeds the adapter's max_storage_buffer_binding_size ({} bytes)",
                self.gpu.max_binding
            )));
        }
        let mut blocks = Vec::new();
        let mut start = 0;
        while start < rows.max(1) {
            let n = per_block.min(rows - start.min(rows));
            let what = format!(
                "weight [{rows}, {cols}] {store} rows {start}..{}",
                start + n
            );
            let data = &data[start * row_bytes..(start + n) * row_bytes];
            let buf = self.gpu.storage(&what, data.len() as u64, Some(data))?;
            blocks.push(Block {
                start,
                rows: n,
                buf,
            });
            start += n.max(1);
        }
        Ok(WgpuWeight {
            rows,
            cols,
            store,
            blocks,
        })
    }

    pub(crate) fn upload_lora_impl(&self, s: &LoraStackHost) -> Result<WgpuLora> {
        s.validate()?;
        let slots: Vec<u32> = (0..s.slot_rank.len())
            .flat_map(|i| [s.slot_offset[i], s.slot_rank[i], s.slot_scale[i].to_bits()])
            .collect();
        let what = |m: &str| format!("LoRA stack [{} x {}] {m}", s.in_dim, s.out_dim);
        Ok(WgpuLora {
            a: self.buffer(&what("A"), &s.a)?.buf,
            bt: self.buffer(&what("B^T"), &s.bt)?.buf,
            slots: self.gpu.storage(
                &what("slot table"),
                (slots.len() * 4) as u64,
                Some(bytemuck::cast_slice(&slots)),
            )?,
            host: LoraStackHost {
                a: Vec::new(),
                bt: Vec::new(),
                ..s.clone()
            },
        })
    }

    pub(crate) fn upload_step_impl(
        &self,
        plan: &StepPlan,
        reuse: Option<WgpuStep>,
    ) -> Result<WgpuStep> {
        let mut words: Vec<u32> = Vec::new();
        let mut put = |v: &[u32]| {
            let at = words.len() as u32;
            words.extend_from_slice(v);
            at
        };
        let weights: Vec<u32> = plan.mix_weights.iter().map(|w| w.to_bits()).collect();
        let off = StepOffsets {
            ids: put(&plan.token_ids),
            pos: put(&plan.positions),
            slots: put(&plan.kv_slots),
            seg: put(&plan.segment_of_token),
            mix_slots: put(&plan.mix_slots),
            mix_weights: put(&weights),
            logit_rows: put(&plan.logit_rows),
        };
        let step = match reuse {
            Some(mut s) if s.words >= words.len() => {
                self.gpu.write(&s.buf, bytemuck::cast_slice(&words));
                s.plan.clone_from(plan);
                s.off = off;
                s
            }
            _ => WgpuStep {
                plan: plan.clone(),
                buf: self.gpu.storage(
                    "step tables",
                    (words.len() * 4) as u64,
                    Some(bytemuck::cast_slice(&words)),
                )?,
                words: words.len().max(4),
                off,
            },
        };
        Ok(step)
    }

    /// The scratch buffer for `logits`, at least `len` f32.
    pub(crate) fn scratch(&self, len: usize) -> Result<wgpu::Buffer> {
        let mut s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if s.as_ref().is_none_or(|b| b.len < len) {
            *s = Some(WgpuBuf {
                buf: self.gpu.storage("logits scratch", (len * 4) as u64, None)?,
                len,
            });
        }
        Ok(s.as_ref().map(|b| b.buf.clone()).expect("just set"))
    }
}

/// Checks a buffer holds at least `need` values (the CPU backend's guard, same wording).
pub(crate) fn check_len(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(err(format!(
            "{op}: buffer `{what}` holds {have} values, needs {need}"
        )));
    }
    Ok(())
}

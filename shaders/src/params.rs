//! The uniform block of each shader, defined once here; each `.wgsl` file declares the same
//! fields in the same order as its `struct P` (all 4-byte scalars, padded to 16 bytes).

use bytemuck::{Pod, Zeroable};

/// `embedding.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct EmbeddingP {
    pub n_tokens: u32,
    pub dim: u32,
    pub row_start: u32,
    pub block_rows: u32,
    pub ids_off: u32,
    pub _p: [u32; 3],
}

/// `rms_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RmsNormP {
    pub rows: u32,
    pub dim: u32,
    pub eps: f32,
    /// The weight's rows: row `r` is scaled by weight row `r % w_rows`.
    pub w_rows: u32,
}

/// `center.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct CenterP {
    pub rows: u32,
    pub dim: u32,
    pub _p: [u32; 2],
}

/// `logits.wgsl` (`gather_norm`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct LogitsP {
    pub n_rows: u32,
    pub hidden: u32,
    pub eps: f32,
    pub rows_off: u32,
}

/// `matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatmulP {
    pub rows: u32,
    pub k: u32,
    pub n: u32,
    pub n_off: u32,
    pub n_blk: u32,
    pub has_bias: u32,
    pub _p: [u32; 2],
}

/// `rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RopeP {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    pub pos_off: u32,
}

/// `attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AttentionP {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub capacity: u32,
    pub pos_off: u32,
    pub slot_off: u32,
    pub scale: f32,
    /// Sliding window (0: none).
    pub window: u32,
    /// Soft cap of the scaled scores (0: none).
    pub softcap: f32,
    pub _p: [u32; 2],
}

/// `gated.wgsl` (silu_mul, gelu_mul) and `add.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct CountP {
    pub n: u32,
    pub _p: [u32; 3],
}

/// `add_bias.wgsl` (`n`: rows x dim values).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AddBiasP {
    pub n: u32,
    pub dim: u32,
    pub _p: [u32; 2],
}

/// `in_place.wgsl` (scale, clamp, softcap): `n` values, `s` the op's constant (the scale's
/// factor, the clamp's limit, the cap).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ScaleP {
    pub n: u32,
    pub s: f32,
    pub _p: [u32; 2],
}

/// `unary.wgsl` (gelu, gelu_erf, relu_sq, xielu): `n` values, `c` the op's constants (xielu's
/// alpha_p, alpha_n, beta, eps; [`dlp_engine::Xielu`]), zero for the others.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct UnaryP {
    pub n: u32,
    pub _p: [u32; 3],
    pub c: [f32; 4],
}

/// `argmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ArgmaxP {
    pub rows: u32,
    pub vocab: u32,
    pub _p: [u32; 2],
}

/// `lora.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct LoraP {
    pub n_tokens: u32,
    pub mix_k: u32,
    pub max_rank: u32,
    pub in_dim: u32,
    pub out_dim: u32,
    pub n_slots: u32,
    pub n_segments: u32,
    pub seg_off: u32,
    pub mslot_off: u32,
    pub mw_off: u32,
    pub _p: [u32; 2],
}

//! What this CPU runs: which kernel sets (AVX-512, AVX2, portable; AMX) are available and
//! turned on, and their description.

use super::CpuOptions;

/// Fewest rows that [`CpuOptions::amx`] sends to the tile unit: below it a weight tile packed
/// for the tiles serves too few rows, and the f32 kernels that dot the blocks with each row
/// are faster (batch 4 on the dev machine: 2.2x batch 1's throughput on them, 1.7x on AMX).
pub const AMX_MIN_ROWS: usize = 9;

/// Whether a step of `rows` rows goes to the AMX tile unit when `enabled`
/// ([`CpuOptions::amx`], or a LoRA stack packed for it): at least [`AMX_MIN_ROWS`] rows, on
/// a CPU that has AMX.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels only
pub(super) fn amx_rows(enabled: bool, rows: usize) -> bool {
    enabled && rows >= AMX_MIN_ROWS && amx_available()
}

/// Whether this CPU and OS run the AMX-BF16 kernels of [`CpuOptions::amx`] (AVX-512 too).
pub fn amx_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::avx512::available() && super::amx::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the AVX-512 kernels run here ([`kernel_set`]'s first choice).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_available() -> bool {
    super::avx512::available()
}

/// Whether the AVX2 kernels run here (AVX2, FMA and F16C, not turned off).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_available() -> bool {
    super::packed_dot::has_avx2()
}

/// Whether the environment variable `name` turns a kernel set off: set, not empty, not `0`.
/// `DLP_CPU_NO_AVX512=1` leaves the AVX2 kernels; `DLP_CPU_NO_AVX2=1` the portable ones, what a
/// CPU without AVX2 or an ARM CPU runs (the tests run again under both).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 checks only
pub(super) fn turned_off(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The kernels `options` run on this CPU, in words: the vector width (`DLP_CPU_NO_AVX512=1`
/// turns AVX-512 off, `DLP_CPU_NO_AVX2=1` AVX2 too), f32 or int8 activations and their
/// integer-dot instruction, AMX.
pub fn kernel_set(options: CpuOptions) -> String {
    #[cfg(target_arch = "x86_64")]
    let simd = if super::avx512::available() {
        "AVX-512"
    } else if super::packed_dot::has_avx2() {
        "AVX2+FMA"
    } else {
        "portable"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd = "portable";
    let acts = if options.int8 {
        format!(
            "int8 activations ({})",
            super::int8::Kernels::detect().name()
        )
    } else {
        "f32 activations".to_string()
    };
    let amx = if options.amx && amx_available() {
        ", AMX-BF16 for several rows"
    } else {
        ""
    };
    format!("{simd}, {acts}{amx}")
}

// bf16 helpers shared by kernel files (prepended to them in nvrtc.rs; no kernels here).

// x rounded to the nearest bf16, ties to even (as `half::bf16::from_f32`); NaN stays NaN.
__device__ __forceinline__ float round_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float((u | 0x00400000u) & 0xffff0000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}

// The bf16 bit pattern of round_bf16(f).
__device__ __forceinline__ unsigned short bf16_bits(float f) {
    return (unsigned short)(__float_as_uint(round_bf16(f)) >> 16);
}

// The f32 value of a bf16 bit pattern (exact).
__device__ __forceinline__ float bf16_value(unsigned short b) {
    return __uint_as_float(((unsigned)b) << 16);
}

// bf16 helpers shared by kernel files (prepended to every file in nvrtc.rs; no kernels here).

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

// dot(8 bf16 weights packed in w, the 8 floats a, b), in element order: the decode matvec's
// and the fused shrink's product of one 16-byte weight load.
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b) {
    return __uint_as_float(w.x << 16) * a.x + __uint_as_float(w.x & 0xffff0000u) * a.y +
           __uint_as_float(w.y << 16) * a.z + __uint_as_float(w.y & 0xffff0000u) * a.w +
           __uint_as_float(w.z << 16) * b.x + __uint_as_float(w.z & 0xffff0000u) * b.y +
           __uint_as_float(w.w << 16) * b.z + __uint_as_float(w.w & 0xffff0000u) * b.w;
}

// dot8 with x as 8 bf16 packed like the weights (element 2m in the low half of word m): the
// same products and sums in the same order as dot8 on their f32 values.
__device__ __forceinline__ float dot8_bf16(uint4 w, uint4 x) {
    return dot8(w,
                make_float4(__uint_as_float(x.x << 16), __uint_as_float(x.x & 0xffff0000u),
                            __uint_as_float(x.y << 16), __uint_as_float(x.y & 0xffff0000u)),
                make_float4(__uint_as_float(x.z << 16), __uint_as_float(x.z & 0xffff0000u),
                            __uint_as_float(x.w << 16), __uint_as_float(x.w & 0xffff0000u)));
}

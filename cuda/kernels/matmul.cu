// matmul: cuBLAS computes x @ W^T for f32 weights; this adds the optional bias,
// out[r, c] += bias[c].
extern "C" __global__ void bias_add(float* __restrict__ out, const float* __restrict__ bias,
                                    int rows, int n) {
    const size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % n];
}

// bf16 weight storage (half the bytes of f32; activations and accumulation stay f32):
// out[r, c] = sum_k x[r, k] * W[c, k] (+ bias[c]), W row-major [n, k] as bf16 bit patterns.
// One warp per output feature c and up to MATMUL_BF16_ROWS rows (grid.y covers the rest), so
// decode reads each weight row once, coalesced, two values per lane per step.
#define MATMUL_BF16_ROWS 8

__device__ __forceinline__ float bf16_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned)b) << 16);
}

extern "C" __global__ void matmul_bf16(const float* __restrict__ x,
                                       const unsigned short* __restrict__ w,
                                       const float* __restrict__ bias, int has_bias, int rows,
                                       int k, int n, float* __restrict__ out) {
    const int warps = blockDim.x / 32;
    const int c = blockIdx.x * warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int r0 = blockIdx.y * MATMUL_BF16_ROWS;
    if (c >= n) return;
    const int nr = min(MATMUL_BF16_ROWS, rows - r0);
    const unsigned short* wr = w + (size_t)c * k;
    float acc[MATMUL_BF16_ROWS];
#pragma unroll
    for (int r = 0; r < MATMUL_BF16_ROWS; r++) acc[r] = 0.f;
    for (int i = lane; i < k; i += 32) {
        const float wv = bf16_to_f32(wr[i]);
#pragma unroll
        for (int r = 0; r < MATMUL_BF16_ROWS; r++)
            if (r < nr) acc[r] += wv * x[(size_t)(r0 + r) * k + i];
    }
#pragma unroll
    for (int r = 0; r < MATMUL_BF16_ROWS; r++) {
        float v = acc[r];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0 && r < nr)
            out[(size_t)(r0 + r) * n + c] = v + (has_bias ? bias[c] : 0.f);
    }
}

// rms_norm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w. One block per row; the
// sum of squares is accumulated in double, as the CPU reference does.

__device__ __forceinline__ double block_sum(double v, double* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int n_warps = (blockDim.x + 31) >> 5;
    v = lane < n_warps ? shared[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void norm_row(const float* __restrict__ x, const float* __restrict__ w,
                                         int dim, float eps, float* __restrict__ out) {
    __shared__ double partial[32];
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const double v = x[i];
        ss += v * v;
    }
    ss = block_sum(ss, partial);
    const float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = x[i] * inv * w[i];
}

// Row r of x into row r of out.
extern "C" __global__ void rms_norm(const float* __restrict__ x, const float* __restrict__ w,
                                    int dim, float eps, float* __restrict__ out) {
    const size_t r = blockIdx.x;
    norm_row(x + r * dim, w, dim, eps, out + r * dim);
}

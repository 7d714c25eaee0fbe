// rms_norm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w[r % w_rows, :]. One block per
// row; the sum of squares is accumulated in double, as the CPU reference does. w_rows is 1, or
// the heads where each head has a weight of its own (rows = tokens x heads).

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

// Row r of x into row r of out, scaled by weight row r % w_rows.
extern "C" __global__ void rms_norm(const float* __restrict__ x, const float* __restrict__ w,
                                    int dim, int w_rows, float eps, float* __restrict__ out) {
    PDL_TRIGGER();
    const size_t r = blockIdx.x;
    norm_row(x + r * dim, w + (r % (size_t)w_rows) * dim, dim, eps, out + r * dim);
}

// add_rms_norm (`--cuda-experimental fused-norm`): the residual add and the RMSNorm that reads
// its result in one launch: x[r, :] += y[r, :], then out[r, :] = rms_norm(x[r, :]) * w. One
// block per row. Each thread adds the elements it then squares and scales (the same striding
// as `norm_row`), with the same expressions, so on the same block size the values are those
// of `add` then `rms_norm`. x is read back through a plain pointer: it was written in this
// kernel, which the read-only path (const __restrict__) must not see.
// Where a row fits NORM_REGS values per thread (8,192 with the wide grids' 1,024 threads), each
// thread keeps its sums and the norm's weights (loaded up front, with x and y) in registers, so
// that the second pass reads no memory: a decode step waits on this kernel twice per layer.
// The same striding and expressions, so the same values.
#define NORM_REGS 8
extern "C" __global__ void add_rms_norm(float* x, const float* __restrict__ y,
                                        const float* __restrict__ w, int dim, float eps,
                                        float* __restrict__ out) {
    PDL_TRIGGER();
    __shared__ double partial[32];
    float* xr = x + (size_t)blockIdx.x * dim;
    const float* yr = y + (size_t)blockIdx.x * dim;
    if (dim <= NORM_REGS * (int)blockDim.x) {
        float xv[NORM_REGS], wv[NORM_REGS];
#pragma unroll
        for (int u = 0; u < NORM_REGS; u++) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i < dim) {
                wv[u] = w[i];
                xv[u] = xr[i] + yr[i];
            }
        }
        double ss = 0.0;
#pragma unroll
        for (int u = 0; u < NORM_REGS; u++) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i < dim) {
                xr[i] = xv[u];
                const double v = xv[u];
                ss += v * v;
            }
        }
        ss = block_sum(ss, partial);
        const float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
        float* o = out + (size_t)blockIdx.x * dim;
#pragma unroll
        for (int u = 0; u < NORM_REGS; u++) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i < dim) o[i] = xv[u] * inv * wv[u];
        }
        return;
    }
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        xr[i] += yr[i];
        const double v = xr[i];
        ss += v * v;
    }
    ss = block_sum(ss, partial);
    const float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
    float* o = out + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}

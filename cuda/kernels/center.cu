// center: x[r, :] -= mean(x[r, :]) in place (LayerNorm's centering; the RMSNorm that reads the
// result completes it). One block per row; the sum is accumulated in double and the mean
// subtracted in double, as the CPU reference does. Compiled after rms_norm.cu, whose
// `block_sum` it uses.

// Row blockIdx.x of x, `dim` wide.
extern "C" __global__ void center(float* __restrict__ x, int dim) {
    PDL_TRIGGER();
    __shared__ double partial[32];
    float* row = x + (size_t)blockIdx.x * dim;
    double s = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += row[i];
    const double mean = block_sum(s, partial) / dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) row[i] = (float)((double)row[i] - mean);
}

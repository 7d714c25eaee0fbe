// logits, first half: the final RMSNorm of the wanted rows only; cuBLAS then multiplies by
// lm_head. Compiled after rms_norm.cu (the host prepends it), whose `norm_row` this uses.

// Row rows[i] of x into row i of out.
extern "C" __global__ void logits_norm(const float* __restrict__ x, const float* __restrict__ w,
                                       const unsigned* __restrict__ rows, int dim, float eps,
                                       float* __restrict__ out) {
    PDL_TRIGGER();
    const size_t i = blockIdx.x;
    norm_row(x + (size_t)rows[i] * dim, w, dim, eps, out + i * dim);
}

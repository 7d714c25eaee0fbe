// embedding: out[t, :] = table[ids[t], :]. Ids are checked on the host (the step plan is
// host data), so the kernel only gathers. One block per token, threads over the row.
extern "C" __global__ void embedding(const float* __restrict__ table,
                                     const unsigned* __restrict__ ids, int dim,
                                     float* __restrict__ out) {
    const int t = blockIdx.x;
    const float* src = table + (size_t)ids[t] * dim;
    float* dst = out + (size_t)t * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

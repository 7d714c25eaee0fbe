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

// The same gather from a bf16 table (bf16 weight storage): out[t, :] = f32(table[ids[t], :]).
extern "C" __global__ void embedding_bf16(const unsigned short* __restrict__ table,
                                          const unsigned* __restrict__ ids, int dim,
                                          float* __restrict__ out) {
    const int t = blockIdx.x;
    const unsigned short* src = table + (size_t)ids[t] * dim;
    float* dst = out + (size_t)t * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        dst[i] = __uint_as_float(((unsigned)src[i]) << 16);
}

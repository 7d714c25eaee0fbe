// rope: HF rotate-half rotary embedding in place on x [T, n_heads, head_dim]; the angle of
// pair (i, i + head_dim/2) at position p is cos_sin[(p * head_dim/2 + i) * 2 + {0: cos, 1: sin}].

// Pair i of one head rotated by the angle at cs (cos, sin).
__device__ __forceinline__ void rotate_pair(float* __restrict__ head, const float* __restrict__ cs,
                                            int i, int half) {
    const float c = cs[0], s = cs[1];
    const float a = head[i], b = head[i + half];
    head[i] = a * c - b * s;
    head[i + half] = b * c + a * s;
}

extern "C" __global__ void rope(float* __restrict__ x, const float* __restrict__ cos_sin,
                                const unsigned* __restrict__ positions, int n_tokens,
                                int n_heads, int head_dim) {
    const int half = head_dim / 2;
    const size_t total = (size_t)n_tokens * n_heads * half;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < total;
         g += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(g % half);
        const size_t th = g / half;  // token * n_heads + head
        const size_t t = th / n_heads;
        rotate_pair(x + th * head_dim, cos_sin + ((size_t)positions[t] * half + i) * 2, i, half);
    }
}

// rope_qk (`--cuda-experimental fused-rope`): the queries' and the keys' rotations of a step in
// one launch. Heads 0 .. n_heads of a token are q's, the next n_kv_heads its k's; each pair
// is rotated exactly as `rope` rotates it.
extern "C" __global__ void rope_qk(float* __restrict__ q, float* __restrict__ k,
                                   const float* __restrict__ cos_sin,
                                   const unsigned* __restrict__ positions, int n_tokens,
                                   int n_heads, int n_kv_heads, int head_dim) {
    const int half = head_dim / 2, heads = n_heads + n_kv_heads;
    const size_t total = (size_t)n_tokens * heads * half;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < total;
         g += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(g % half);
        const size_t th = g / half;  // token * heads + head
        const size_t t = th / heads;
        const int h = (int)(th % heads);
        float* head = h < n_heads ? q + (t * n_heads + h) * head_dim
                                  : k + (t * n_kv_heads + (h - n_heads)) * head_dim;
        rotate_pair(head, cos_sin + ((size_t)positions[t] * half + i) * 2, i, half);
    }
}

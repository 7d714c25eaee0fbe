// rope: HF rotate-half rotary embedding in place on x [T, n_heads, head_dim]; the angle of
// pair (i, i + head_dim/2) at position p is cos_sin[(p * head_dim/2 + i) * 2 + {0: cos, 1: sin}].
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
        const float* cs = cos_sin + ((size_t)positions[t] * half + i) * 2;
        const float c = cs[0], s = cs[1];
        float* head = x + th * head_dim;
        const float a = head[i], b = head[i + half];
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
    }
}

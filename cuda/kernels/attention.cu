// attention: causal grouped-query attention over the KV cache [slots, capacity, kv_dim].
// `kv_store` first writes the step's keys and values at each token's (slot, position); then
// `attention` (one kernel for decode and prefill) gives each (token, query head) one block.
// Its warps split the positions start..=pos (start = pos + 1 - window with a sliding window,
// else 0), each keeping an online softmax (running max, sum and
// a head_dim accumulator in registers, lanes splitting head_dim); the warps merge at the end.

#define ATTN_WARPS 4
#define ATTN_MAX_HEAD_DIM 256
#define ATTN_PER_LANE (ATTN_MAX_HEAD_DIM / 32)

extern "C" __global__ void kv_store(const float* __restrict__ k, const float* __restrict__ v,
                                    float* __restrict__ k_cache, float* __restrict__ v_cache,
                                    const unsigned* __restrict__ kv_slots,
                                    const unsigned* __restrict__ positions, int kv_dim,
                                    int capacity) {
    const int t = blockIdx.x;
    const size_t at = ((size_t)kv_slots[t] * capacity + positions[t]) * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        k_cache[at + i] = k[(size_t)t * kv_dim + i];
        v_cache[at + i] = v[(size_t)t * kv_dim + i];
    }
}

// grid (n_heads, n_tokens), block ATTN_WARPS * 32; head_dim <= ATTN_MAX_HEAD_DIM.
extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)
    attention(const float* __restrict__ q, const float* __restrict__ k_cache,
              const float* __restrict__ v_cache, const unsigned* __restrict__ kv_slots,
              const unsigned* __restrict__ positions, int n_heads, int n_kv_heads, int head_dim,
              int capacity, float scale, int window, float* __restrict__ out) {
    __shared__ float s_m[ATTN_WARPS], s_l[ATTN_WARPS];
    __shared__ float s_acc[ATTN_WARPS][ATTN_MAX_HEAD_DIM];
    const int h = blockIdx.x, t = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kv_dim = n_kv_heads * head_dim;
    const int kvh = h / (n_heads / n_kv_heads);
    const int pos = positions[t];
    const float* qv = q + ((size_t)t * n_heads + h) * head_dim;
    const size_t base = (size_t)kv_slots[t] * capacity * kv_dim + (size_t)kvh * head_dim;

    float qr[ATTN_PER_LANE], acc[ATTN_PER_LANE];
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < head_dim ? qv[d] * scale : 0.0f;
        acc[i] = 0.0f;
    }
    const float neg_inf = __int_as_float(0xff800000);
    float m = neg_inf, l = 0.0f;
    const int start = (window > 0 && pos + 1 > window) ? pos + 1 - window : 0;
    for (int p = start + warp; p <= pos; p += ATTN_WARPS) {
        const float* kp = k_cache + base + (size_t)p * kv_dim;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < ATTN_PER_LANE; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim) s += qr[i] * kp[d];
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), e = expf(s - m_new);
        l = l * corr + e;
        const float* vp = v_cache + base + (size_t)p * kv_dim;
#pragma unroll
        for (int i = 0; i < ATTN_PER_LANE; i++) {
            const int d = lane + 32 * i;
            acc[i] = acc[i] * corr + (d < head_dim ? e * vp[d] : 0.0f);
        }
        m = m_new;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        if (d < head_dim) s_acc[warp][d] = acc[i];
    }
    __syncthreads();
    // Warps that saw no position hold m = -inf and l = 0: their factor below is exp(-inf) = 0.
    float mx = neg_inf;
    for (int w = 0; w < ATTN_WARPS; w++) mx = fmaxf(mx, s_m[w]);
    float den = 0.0f;
    for (int w = 0; w < ATTN_WARPS; w++) den += s_l[w] * expf(s_m[w] - mx);
    float* o = out + ((size_t)t * n_heads + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float num = 0.0f;
        for (int w = 0; w < ATTN_WARPS; w++) num += s_acc[w][d] * expf(s_m[w] - mx);
        o[d] = num / den;
    }
}

// attention: causal grouped-query attention over the KV cache [slots, capacity, kv_dim].
// `kv_store` first writes the step's keys and values at each token's (slot, position); then
// `attention` (one kernel for decode and prefill) gives each (token, query head) one block.
// Its warps split the positions start..=pos (start = pos + 1 - window with a sliding window,
// else 0), each keeping an online softmax (running max, sum and
// a head_dim accumulator in registers, lanes splitting head_dim); the warps merge at the end.
// `attention_split` + `attention_combine` do the same over several blocks per (token, head).
// With `--cuda-experimental fused-kv-store`, a decode step (every token alone in its cache
// slot) skips `kv_store`: `attention_store*` read the token's own position from the step's k
// and v (rounded as the cache would hold them), and one block per (token, kv head) stores them.
// With `--cuda-experimental inline-combine`, the split kernels' `_last` entries merge the
// splits themselves: the last split block of each (token, head) to finish runs the combine.
// With `--cuda-experimental rope-in-attention`, the `_store` kernels' `_rope` entries also
// rotate the step's queries and keys (as `rope` would, by the angles of `cos_sin`) as they read
// them, so no rope launch comes first.
// Gemma 2's soft-capped scores (`cap * tanh(s / cap)`) have kernels of their own
// (`attention_softcap*`: the plain kernel with CAP set); the others are compiled without it.

#define ATTN_WARPS 4
#define ATTN_MAX_HEAD_DIM 256
#define ATTN_PER_LANE (ATTN_MAX_HEAD_DIM / 32)

// The KV cache holds f32, or bf16 bit patterns with `--cuda-kv-bf16` (the `_bf16` kernels:
// half the memory and half the bytes attention reads; values rounded to nearest even when
// stored, read back exactly).
typedef unsigned short kv_bf16;
__device__ __forceinline__ float kv_load(const float* __restrict__ p, size_t i) { return p[i]; }
__device__ __forceinline__ float kv_load(const kv_bf16* __restrict__ p, size_t i) {
    return bf16_value(p[i]);
}
__device__ __forceinline__ void kv_put(float* __restrict__ p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void kv_put(kv_bf16* __restrict__ p, size_t i, float v) {
    p[i] = bf16_bits(v);
}
// What `v` reads back as once stored in a cache like `p` (for the fused store's own position).
__device__ __forceinline__ float kv_round(const float*, float v) { return v; }
__device__ __forceinline__ float kv_round(const kv_bf16*, float v) {
    return bf16_value(bf16_bits(v));
}

// grid (T, chunks): the step's keys and values at each token's (slot, position).
#define KV_STORE(NAME, C)                                                                     \
    extern "C" __global__ void NAME(const float* __restrict__ k, const float* __restrict__ v, \
                                    C* __restrict__ k_cache, C* __restrict__ v_cache,         \
                                    const unsigned* __restrict__ kv_slots,                    \
                                    const unsigned* __restrict__ positions, int kv_dim,       \
                                    int capacity) {                                           \
        const int t = blockIdx.x;                                                             \
        const size_t at = ((size_t)kv_slots[t] * capacity + positions[t]) * kv_dim;           \
        /* grid.y blocks share a token's row (more than one with `wide-grids`, for decode). */ \
        for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < kv_dim;                       \
             i += gridDim.y * blockDim.x) {                                                   \
            kv_put(k_cache, at + i, k[(size_t)t * kv_dim + i]);                               \
            kv_put(v_cache, at + i, v[(size_t)t * kv_dim + i]);                               \
        }                                                                                     \
    }
KV_STORE(kv_store, float)
KV_STORE(kv_store_bf16, kv_bf16)

// Element d of a head `x` rotated as `rope` rotates it (`rotate_pair`'s expressions, in
// rope.cu): pair (i, i + half), i < half, by the angle at cs[2 i] (cos), cs[2 i + 1] (sin),
// cs the token's row of the table; an odd head's last element is not rotated. With ROPE false,
// x[d] as it is.
template <bool ROPE>
__device__ __forceinline__ float roped(const float* __restrict__ x, const float* __restrict__ cs,
                                       int d, int half) {
    if (!ROPE) return x[d];
    if (d < half) {
        const float c = cs[2 * d], s = cs[2 * d + 1];
        const float a = x[d], b = x[d + half];
        return a * c - b * s;
    }
    if (d < 2 * half) {
        const int i = d - half;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float a = x[i], b = x[d];
        return b * c + a * s;
    }
    return x[d];
}

struct AttnShared {
    float m[ATTN_WARPS], l[ATTN_WARPS];
    float acc[ATTN_WARPS][ATTN_MAX_HEAD_DIM];
};

// One position's step of a warp's online softmax: the score q.k (lanes split head_dim, then a
// shuffle sum), with CAP soft-capped by `cap`, then the running max m, sum l and accumulator
// acc. `key(d)` and `value(d)` give element d of the position's key and value.
template <bool CAP, typename Key, typename Value>
__device__ __forceinline__ void attend_position(const float (&qr)[ATTN_PER_LANE],
                                                float (&acc)[ATTN_PER_LANE], float& m,
                                                float& l, int lane, int head_dim, Key key,
                                                Value value, float cap) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        if (d < head_dim) s += qr[i] * key(d);
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (CAP) s = cap * tanhf(s / cap);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), e = expf(s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        acc[i] = acc[i] * corr + (d < head_dim ? e * value(d) : 0.0f);
    }
    m = m_new;
}

// The online softmax of one block over positions [p_begin, p_end) of one (token, query head):
// its warps split the positions; on return the block's merged state is in shared memory:
// s_m[0] (max score), s_l[0] (sum of exp(score - max)) and s_acc[0][d] (sum of exp * v), not
// yet divided. An empty range leaves max = -inf, sum = 0, acc = 0. With FRESH, position
// `p_new` is read from `k_new`/`v_new` (the step's own key and value, not yet stored) instead
// of the cache, rounded as the cache would round them: the same numbers either way. It is
// always the range's last position when the range holds it, so it is taken after the loop
// (which stays the plain one), by the warp whose turn it would have been: the same order.
// With ROPE, the query and the fresh key are read rotated by the angles at `cs` (`roped`).
// With CAP, the scores are soft-capped by `cap` (`attend_position`).
template <typename C, bool FRESH, bool ROPE = false, bool CAP = false>
__device__ __forceinline__ void attend_range(const float* __restrict__ qv,
                                             const C* __restrict__ k_cache,
                                             const C* __restrict__ v_cache, size_t base,
                                             int kv_dim, int head_dim, float scale, int p_begin,
                                             int p_end, AttnShared& sh,
                                             const float* __restrict__ k_new,
                                             const float* __restrict__ v_new, int p_new,
                                             const float* __restrict__ cs = nullptr,
                                             float cap = 0.0f) {
    const int half = head_dim / 2;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float qr[ATTN_PER_LANE], acc[ATTN_PER_LANE];
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < head_dim ? roped<ROPE>(qv, cs, d, half) * scale : 0.0f;
        acc[i] = 0.0f;
    }
    const float neg_inf = __int_as_float(0xff800000);
    float m = neg_inf, l = 0.0f;
    const bool has_new = FRESH && p_end > p_begin && p_end - 1 == p_new;
    const int cache_end = has_new ? p_end - 1 : p_end;
    for (int p = p_begin + warp; p < cache_end; p += ATTN_WARPS) {
        const C* kp = k_cache + base + (size_t)p * kv_dim;
        const C* vp = v_cache + base + (size_t)p * kv_dim;
        attend_position<CAP>(
            qr, acc, m, l, lane, head_dim, [&](int d) { return kv_load(kp, d); },
            [&](int d) { return kv_load(vp, d); }, cap);
    }
    if (has_new && (p_new - p_begin) % ATTN_WARPS == warp) {
        attend_position<CAP>(
            qr, acc, m, l, lane, head_dim,
            [&](int d) { return kv_round(k_cache, roped<ROPE>(k_new, cs, d, half)); },
            [&](int d) { return kv_round(v_cache, v_new[d]); }, cap);
    }
    if (lane == 0) {
        sh.m[warp] = m;
        sh.l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        const int d = lane + 32 * i;
        if (d < head_dim) sh.acc[warp][d] = acc[i];
    }
    __syncthreads();
    // Merge the warps into slot 0. Warps that saw no position hold m = -inf and l = 0: their
    // factor is exp(-inf) = 0, unless every warp is empty (mx = -inf): then all stays 0.
    float mx = neg_inf;
    for (int w = 0; w < ATTN_WARPS; w++) mx = fmaxf(mx, sh.m[w]);
    float den = 0.0f;
    // The expressions of the single-block kernel before the split existed, unchanged (same
    // contraction, same results); an all-empty split keeps zeros.
    if (mx != neg_inf) {
        for (int w = 0; w < ATTN_WARPS; w++) den += sh.l[w] * expf(sh.m[w] - mx);
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float num = 0.0f;
        if (mx != neg_inf) {
            for (int w = 0; w < ATTN_WARPS; w++) num += sh.acc[w][d] * expf(sh.m[w] - mx);
        }
        sh.acc[0][d] = num;  // each d is read and written by the same thread only
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        sh.m[0] = mx;
        sh.l[0] = den;
    }
    __syncthreads();
}

// What the block of (query head h, token t) attends with: its query row, the first value of
// its kv head in the token's cache slot, and its positions start..=pos (start = pos + 1 -
// window with a sliding window, else 0). For the fused store: where the token's key and value
// for that kv head sit in the step's k and v (`own`), and whether this block stores them (the
// first query head of each kv head).
struct AttnRow {
    const float* qv;
    size_t base, own;
    int kv_dim, pos, start;
    bool writer;
};

__device__ __forceinline__ AttnRow attn_row(const float* __restrict__ q,
                                            const unsigned* __restrict__ kv_slots,
                                            const unsigned* __restrict__ positions, int h, int t,
                                            int n_heads, int n_kv_heads, int head_dim,
                                            int capacity, int window) {
    AttnRow r;
    r.kv_dim = n_kv_heads * head_dim;
    const int group = n_heads / n_kv_heads, kvh = h / group;
    r.pos = positions[t];
    r.qv = q + ((size_t)t * n_heads + h) * head_dim;
    r.base = (size_t)kv_slots[t] * capacity * r.kv_dim + (size_t)kvh * head_dim;
    r.start = (window > 0 && r.pos + 1 > window) ? r.pos + 1 - window : 0;
    r.own = (size_t)t * r.kv_dim + (size_t)kvh * head_dim;
    r.writer = h % group == 0;
    return r;
}

// The fused store: the token's key and value of this block's kv head at its position. No
// block of the step reads that position from the cache (each reads its own from k/v, and no
// other token shares the slot), so the write needs no ordering. With ROPE, the key rotated.
template <typename C, bool ROPE = false>
__device__ __forceinline__ void store_own(C* k_cache, C* v_cache, const AttnRow& r,
                                          const float* __restrict__ k,
                                          const float* __restrict__ v, int head_dim,
                                          const float* __restrict__ cs = nullptr) {
    const size_t at = r.base + (size_t)r.pos * r.kv_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        kv_put(k_cache, at + d, roped<ROPE>(k + r.own, cs, d, head_dim / 2));
        kv_put(v_cache, at + d, v[r.own + d]);
    }
}

// grid (n_heads, n_tokens), block ATTN_WARPS * 32; head_dim <= ATTN_MAX_HEAD_DIM. With STORE,
// the step's k and v (`k`, `v`, [T, kv_dim]) are stored here (`k_w`, `v_w`: the caches); with
// ROPE (and STORE), q and k are rotated as read (`cos_sin` [positions, head_dim / 2, 2]); with
// CAP, the scores are soft-capped by `cap`.
template <typename C, bool STORE, bool ROPE = false, bool CAP = false>
__device__ __forceinline__ void attention_body(
    const float* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const unsigned* __restrict__ kv_slots, const unsigned* __restrict__ positions, int n_heads,
    int n_kv_heads, int head_dim, int capacity, float scale, int window,
    float* __restrict__ out, const float* k, const float* v, C* k_w, C* v_w,
    const float* __restrict__ cos_sin = nullptr, float cap = 0.0f) {
    __shared__ AttnShared sh;
    const int h = blockIdx.x, t = blockIdx.y;
    const AttnRow r = attn_row(q, kv_slots, positions, h, t, n_heads, n_kv_heads, head_dim,
                               capacity, window);
    const float* cs = ROPE ? cos_sin + (size_t)r.pos * (head_dim / 2) * 2 : nullptr;
    attend_range<C, STORE, ROPE, CAP>(r.qv, k_cache, v_cache, r.base, r.kv_dim, head_dim,
                                      scale, r.start, r.pos + 1, sh,
                                      STORE ? k + r.own : nullptr, STORE ? v + r.own : nullptr,
                                      r.pos, cs, cap);
    float* o = out + ((size_t)t * n_heads + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) o[d] = sh.acc[0][d] / sh.l[0];
    if (STORE && r.writer) store_own<C, ROPE>(k_w, v_w, r, k, v, head_dim, cs);
}

// out[d] for d in [0, head_dim) of one (token, head) from its splits' partials `pt` [splits,
// head_dim + 2], each (acc[head_dim], max, sum): max M = max_z m_z, weights exp(m_z - M) (0 for
// an empty split), out = sum_z w_z acc_z / sum_z w_z l_z. `ld(p)` reads one partial value.
template <typename Load>
__device__ __forceinline__ void combine_splits(const float* pt, int splits, int head_dim,
                                               float* __restrict__ o, Load ld) {
    const float neg_inf = __int_as_float(0xff800000);
    float mx = neg_inf;
    for (int z = 0; z < splits; z++) mx = fmaxf(mx, ld(pt + z * (head_dim + 2) + head_dim));
    float den = 0.0f;
    for (int z = 0; z < splits; z++) {
        const float m = ld(pt + z * (head_dim + 2) + head_dim);
        if (m != neg_inf) den += ld(pt + z * (head_dim + 2) + head_dim + 1) * expf(m - mx);
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float num = 0.0f;
        for (int z = 0; z < splits; z++) {
            const float m = ld(pt + z * (head_dim + 2) + head_dim);
            if (m != neg_inf) num += ld(pt + z * (head_dim + 2) + d) * expf(m - mx);
        }
        o[d] = num / den;
    }
}

// Flash-decoding (`--cuda-experimental split-attention`): the positions of each (token, head)
// are cut into gridDim.z splits, one block each, so a long context fills the GPU even at batch
// 1. Split z of a token covers ceil(n / splits) of its n positions (n read on the device: the
// launch depends on the step's shape only). Partials go to `part` [T, n_heads, splits,
// head_dim + 2] as (acc[head_dim], max, sum); `attention_combine` merges them. With STORE, the
// split holding the token's position stores its key and value. With LAST (`inline-combine`),
// no combine launch follows: each block counts itself done in `counts[t, h]` (zero before the
// launch) after its partials, and the block that counts last merges them into `out` and
// leaves the count zero again (the last-block reduction of CUDA's threadFenceReduction
// sample): one launch fewer per layer, the same expressions in the same order.
template <typename C, bool STORE, bool LAST = false, bool ROPE = false>
__device__ __forceinline__ void attention_split_body(
    const float* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const unsigned* __restrict__ kv_slots, const unsigned* __restrict__ positions, int n_heads,
    int n_kv_heads, int head_dim, int capacity, float scale, int window,
    float* __restrict__ part, const float* k, const float* v, C* k_w, C* v_w,
    unsigned* __restrict__ counts = nullptr, float* __restrict__ out = nullptr,
    const float* __restrict__ cos_sin = nullptr) {
    __shared__ AttnShared sh;
    const int h = blockIdx.x, t = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    const AttnRow r = attn_row(q, kv_slots, positions, h, t, n_heads, n_kv_heads, head_dim,
                               capacity, window);
    const int chunk = (r.pos + 1 - r.start + splits - 1) / splits;
    const int b = r.start + z * chunk, e = min(b + chunk, r.pos + 1);
    const float* cs = ROPE ? cos_sin + (size_t)r.pos * (head_dim / 2) * 2 : nullptr;
    attend_range<C, STORE, ROPE>(r.qv, k_cache, v_cache, r.base, r.kv_dim, head_dim, scale, b,
                                 max(b, e), sh, STORE ? k + r.own : nullptr,
                                 STORE ? v + r.own : nullptr, r.pos, cs);
    const size_t row = (size_t)t * n_heads + h;
    float* pt = part + (row * splits + z) * (head_dim + 2);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) pt[d] = sh.acc[0][d];
    if (threadIdx.x == 0) {
        pt[head_dim] = sh.m[0];
        pt[head_dim + 1] = sh.l[0];
    }
    if (STORE && r.writer && b <= r.pos && r.pos < e)
        store_own<C, ROPE>(k_w, v_w, r, k, v, head_dim, cs);
    if (LAST) {
        __shared__ bool last;
        // Every thread's partials visible to the whole GPU before the block counts itself.
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            last = atomicAdd(counts + row, 1u) == (unsigned)splits - 1;
            // Every other split has counted: no one touches the count again in this launch.
            if (last) counts[row] = 0;
        }
        __syncthreads();
        if (last) {
            __threadfence();
            // From L2 (__ldcg): other blocks wrote them; this SM's L1 must not answer.
            combine_splits(part + row * splits * (head_dim + 2), splits, head_dim,
                           out + row * head_dim, [](const float* p) { return __ldcg(p); });
        }
    }
}

// The parameters every attention entry starts with (its caches as CACHE: read-only, or `C*`
// where the entry stores into them), and the same names as arguments.
#define ATTN_PARAMS(CACHE)                                                                    \
    const float* __restrict__ q, CACHE k_cache, CACHE v_cache,                                \
        const unsigned* __restrict__ kv_slots, const unsigned* __restrict__ positions,       \
        int n_heads, int n_kv_heads, int head_dim, int capacity, float scale, int window
#define ATTN_ARGS                                                                             \
    q, k_cache, v_cache, kv_slots, positions, n_heads, n_kv_heads, head_dim, capacity, scale, \
        window
#define ATTN_ENTRY extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)

// The attention kernels on an f32 cache (`attention`, `attention_split`) and a bf16 one
// (`_bf16`): the same bodies, `out` the output (attention) or the split partials.
#define ATTENTION(NAME, BODY, C)                                                              \
    ATTN_ENTRY NAME(ATTN_PARAMS(const C* __restrict__), float* __restrict__ out) {            \
        PDL_TRIGGER();                                                                        \
        BODY<C, false>(ATTN_ARGS, out, nullptr, nullptr, nullptr, nullptr);                   \
    }
ATTENTION(attention, attention_body, float)
ATTENTION(attention_bf16, attention_body, kv_bf16)
ATTENTION(attention_split, attention_split_body, float)
ATTENTION(attention_split_bf16, attention_split_body, kv_bf16)

// The same with the fused store (`_store`): the caches are written too, and the step's k and v
// (`k`, `v`, [T, kv_dim]) come last. Only for steps whose tokens are each alone in their slot.
#define ATTN_STORE_PARAMS(C)                                                                  \
    ATTN_PARAMS(C*), float* __restrict__ out, const float* __restrict__ k,                    \
        const float* __restrict__ v
#define ATTENTION_STORE(NAME, BODY, C)                                                        \
    ATTN_ENTRY NAME(ATTN_STORE_PARAMS(C)) {                                                   \
        PDL_TRIGGER();                                                                        \
        BODY<C, true>(ATTN_ARGS, out, k, v, k_cache, v_cache);                                \
    }
ATTENTION_STORE(attention_store, attention_body, float)
ATTENTION_STORE(attention_store_bf16, attention_body, kv_bf16)
ATTENTION_STORE(attention_split_store, attention_split_body, float)
ATTENTION_STORE(attention_split_store_bf16, attention_split_body, kv_bf16)

// The split kernels with the combine inside (`_last`, `inline-combine`): `out` is the
// partials, then `counts` [T, n_heads] (zero before each launch, and left so) and `final_out`
// the output; the `_store` ones store the step's keys and values as above.
#define ATTENTION_SPLIT_LAST(NAME, C)                                                         \
    ATTN_ENTRY NAME(ATTN_PARAMS(const C* __restrict__), float* __restrict__ out,              \
                    unsigned* __restrict__ counts, float* __restrict__ final_out) {           \
        PDL_TRIGGER();                                                                        \
        attention_split_body<C, false, true>(ATTN_ARGS, out, nullptr, nullptr, nullptr,       \
                                             nullptr, counts, final_out);                     \
    }
ATTENTION_SPLIT_LAST(attention_split_last, float)
ATTENTION_SPLIT_LAST(attention_split_last_bf16, kv_bf16)
#define ATTENTION_SPLIT_STORE_LAST(NAME, C)                                                   \
    ATTN_ENTRY NAME(ATTN_STORE_PARAMS(C), unsigned* __restrict__ counts,                      \
                    float* __restrict__ final_out) {                                          \
        PDL_TRIGGER();                                                                        \
        attention_split_body<C, true, true>(ATTN_ARGS, out, k, v, k_cache, v_cache, counts,   \
                                            final_out);                                       \
    }
ATTENTION_SPLIT_STORE_LAST(attention_split_store_last, float)
ATTENTION_SPLIT_STORE_LAST(attention_split_store_last_bf16, kv_bf16)

// The `_store` kernels that also rotate the step's queries and keys (`_rope`,
// `rope-in-attention`): the same parameters, then the rope table `cos_sin`.
#define ATTENTION_STORE_ROPE(NAME, C)                                                         \
    ATTN_ENTRY NAME(ATTN_STORE_PARAMS(C), const float* __restrict__ cos_sin) {                \
        PDL_TRIGGER();                                                                        \
        attention_body<C, true, true>(ATTN_ARGS, out, k, v, k_cache, v_cache, cos_sin);       \
    }
ATTENTION_STORE_ROPE(attention_store_rope, float)
ATTENTION_STORE_ROPE(attention_store_rope_bf16, kv_bf16)
#define ATTENTION_SPLIT_STORE_ROPE(NAME, C)                                                   \
    ATTN_ENTRY NAME(ATTN_STORE_PARAMS(C), const float* __restrict__ cos_sin) {                \
        PDL_TRIGGER();                                                                        \
        attention_split_body<C, true, false, true>(ATTN_ARGS, out, k, v, k_cache, v_cache,    \
                                                   nullptr, nullptr, cos_sin);                \
    }
ATTENTION_SPLIT_STORE_ROPE(attention_split_store_rope, float)
ATTENTION_SPLIT_STORE_ROPE(attention_split_store_rope_bf16, kv_bf16)
// With the combine inside too (`_last_rope`): the `_last` parameters, then `cos_sin`.
#define ATTENTION_SPLIT_STORE_LAST_ROPE(NAME, C)                                              \
    ATTN_ENTRY NAME(ATTN_STORE_PARAMS(C), unsigned* __restrict__ counts,                      \
                    float* __restrict__ final_out, const float* __restrict__ cos_sin) {       \
        PDL_TRIGGER();                                                                        \
        attention_split_body<C, true, true, true>(ATTN_ARGS, out, k, v, k_cache, v_cache,     \
                                                  counts, final_out, cos_sin);                \
    }
ATTENTION_SPLIT_STORE_LAST_ROPE(attention_split_store_last_rope, float)
ATTENTION_SPLIT_STORE_LAST_ROPE(attention_split_store_last_rope_bf16, kv_bf16)

// Gemma 2's soft-capped attention (`attention_softcap`, `_bf16`): the plain kernel's
// parameters, then the cap (> 0).
#define ATTENTION_SOFTCAP(NAME, C)                                                            \
    ATTN_ENTRY NAME(ATTN_PARAMS(const C* __restrict__), float* __restrict__ out, float cap) { \
        PDL_TRIGGER();                                                                        \
        attention_body<C, false, false, true>(ATTN_ARGS, out, nullptr, nullptr, nullptr,      \
                                              nullptr, nullptr, cap);                         \
    }
ATTENTION_SOFTCAP(attention_softcap, float)
ATTENTION_SOFTCAP(attention_softcap_bf16, kv_bf16)

// out[t, h, :] from the splits' partials (`combine_splits`). grid (n_heads, n_tokens).
extern "C" __global__ void attention_combine(const float* __restrict__ part, int n_heads,
                                             int head_dim, int splits,
                                             float* __restrict__ out) {
    PDL_TRIGGER();
    const int h = blockIdx.x, t = blockIdx.y;
    combine_splits(part + ((size_t)t * n_heads + h) * splits * (head_dim + 2), splits, head_dim,
                   out + ((size_t)t * n_heads + h) * head_dim,
                   [](const float* p) { return *p; });
}

// lora_shrink / lora_expand over token tiles on CUDA cores (`--cuda-experimental tiled-lora`);
// compiled after lora.cu (entry lookups, pair parameters) as part of the one `lora` module.
// Why: the segment kernels read an adapter's A and B^T rows once per token (one block per
// (token, entry) walks a whole 4,096-wide row with one warp per rank row): at 64 tokens in 8
// segments that is 8 reads of each row, in chains of dependent loads, 28 us for a pair that
// must move 16 MB (10% of the H200's copy bandwidth). Here a block takes a tile of
// TILED_TOKENS consecutive tokens: the tokens of the tile whose entry names the same adapter
// (all of them within a segment) share one read of its rows, held in registers while each
// token's x (or u) is applied. Every lane issues all its row loads of a round at once. f32
// products in a fixed order: deterministic; the expand's sums run in the segment kernel's
// order (the same value from the same u).

#define TILED_TOKENS 8           // tokens per tile
#ifndef TILED_ROWS
#define TILED_ROWS 2             // A rows (rank indices) per shrink block (tune: tiled_rows)
#endif
// 16-byte loads of each row per thread per round (shrink): 4 for f32 rows, 2 for bf16 (4,096
// values a round either way; bf16 at 4 held 128 registers and spilled, ptxas sm_90).
#define TILED_ROUND_BYTES 64
#define TILED_SHRINK_THREADS 256
#define TILED_EXPAND_ROWS 16     // B^T values per thread loaded at once (expand)

// 16 bytes of a stack row: four f32 or eight bf16 values.
template <typename T> struct TiledRow { typedef float4 type; };
template <> struct TiledRow<lora_bf16> { typedef uint4 type; };

__device__ __forceinline__ void tiled_zero(float4& w) { w = make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
__device__ __forceinline__ void tiled_zero(uint4& w) { w = make_uint4(0u, 0u, 0u, 0u); }

// The x values that meet the v-th 16 bytes of a row of T: one float4 for f32, two for bf16.
template <typename T>
__device__ __forceinline__ void tiled_x(const float* __restrict__ xt, int v, float4 (&xv)[2]) {
    const float4* x4 = reinterpret_cast<const float4*>(xt);
    if (sizeof(T) == 4) {
        xv[0] = x4[v];
        xv[1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
        xv[0] = x4[2 * v];
        xv[1] = x4[2 * v + 1];
    }
}
// The x values of token t (clamped to the step's last token: always a valid row) that meet
// this thread's 16-byte steps v0 + q * NT of a round (zero past the row).
template <typename T, int ROUND, int NT>
__device__ __forceinline__ void tiled_load_x(const float* __restrict__ x, int t, int n_tokens,
                                             int in_dim, int v0, int n_vec,
                                             float4 (&xv)[ROUND][2]) {
    const float* xt = x + (size_t)min(t, n_tokens - 1) * in_dim;
#pragma unroll
    for (int q = 0; q < ROUND; q++) {
        if (v0 + q * NT < n_vec) {
            tiled_x<T>(xt, v0 + q * NT, xv[q]);
        } else {
            xv[q][0] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            xv[q][1] = xv[q][0];
        }
    }
}

__device__ __forceinline__ float tiled_dot(const float4 w, const float4 (&xv)[2]) {
    return w.x * xv[0].x + w.y * xv[0].y + w.z * xv[0].z + w.w * xv[0].w;
}
__device__ __forceinline__ float tiled_dot(const uint4 w, const float4 (&xv)[2]) {
    return dot8(w, xv[0], xv[1]);
}

// The tokens of the tile (bits) not yet in `done` whose entry is (off, rank), as token `lead`'s.
// Every thread computes the same mask from shared memory, so branches on it are uniform.
__device__ __forceinline__ unsigned tiled_group(const int* __restrict__ s_off,
                                                const int* __restrict__ s_rank, int stride,
                                                int lead, unsigned done) {
    const int off = s_off[lead * stride], rank = s_rank[lead * stride];
    unsigned g = 0;
    for (int i = lead; i < TILED_TOKENS; i++)
        if (s_off[i * stride] == off && s_rank[i * stride] == rank) g |= 1u << i;
    return g & ~done;
}

// u[t, k, r] = w * scale * dot(A[off + r, :], x[t, :]) for the tile's tokens t, entry k and
// rows r0 .. r0 + TILED_ROWS (< the entry's rank). Threads split in_dim in 16-byte steps; each
// sums its products in order, then the lanes (xor tree), then the warps in order.
// in_dim * sizeof(T) % 16 == 0 (the host checks), so every row and x start is 16-byte aligned.
template <typename T>
__device__ __forceinline__ void tiled_shrink_body(LORA_PAIR_PARAMS(x, a, T, in_dim),
                                                  int n_tokens, float* __restrict__ u) {
    typedef typename TiledRow<T>::type W;
    constexpr int TT = TILED_TOKENS, RR = TILED_ROWS;
    constexpr int ROUND = TILED_ROUND_BYTES / 16 * (int)sizeof(T) / 4;
    constexpr int NT = TILED_SHRINK_THREADS, NW = NT / 32;
    __shared__ int s_off[TT], s_rank[TT];
    __shared__ float s_ws[TT];
    __shared__ float s_part[NW][TT * RR];
    const int t0 = blockIdx.x * TT, k = blockIdx.y, r0 = blockIdx.z * RR;
    if (threadIdx.x < TT) {
        const int t = t0 + threadIdx.x;
        int off = 0, rank = 0;
        float ws = 0.0f;
        if (t < n_tokens)
            rank = lora_entry(seg_of_token, mix_slots, mix_weights, mix_k, slot_offset, slot_rank,
                              slot_scale, n_slots, t, k, &off, &ws);
        s_off[threadIdx.x] = off;
        s_rank[threadIdx.x] = rank;
        s_ws[threadIdx.x] = ws;
    }
    __syncthreads();
    const int n_vec = in_dim / (16 / (int)sizeof(T));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    unsigned done = 0;
    for (int lead = 0; lead < TT; lead++) {
        if ((done >> lead) & 1u) continue;
        const unsigned group = tiled_group(s_off, s_rank, 1, lead, done);
        done |= group;
        const int off = s_off[lead], rank = s_rank[lead];
        if (rank <= r0) continue;  // no rows here (rank 0: no adapter, or past the step)
        float acc[TT][RR];
#pragma unroll
        for (int t = 0; t < TT; t++)
#pragma unroll
            for (int r = 0; r < RR; r++) acc[t][r] = 0.0f;
        for (int v0 = threadIdx.x; v0 < n_vec; v0 += NT * ROUND) {
            W w[RR][ROUND];
#pragma unroll
            for (int r = 0; r < RR; r++) {
                const W* row = reinterpret_cast<const W*>(a + (size_t)(off + r0 + r) * in_dim);
#pragma unroll
                for (int q = 0; q < ROUND; q++) {
                    if (r0 + r < rank && v0 + q * NT < n_vec)
                        w[r][q] = row[v0 + q * NT];
                    else
                        tiled_zero(w[r][q]);
                }
            }
            // Every token's x is loaded, one token ahead of its products (a token outside the
            // group, or past the step, reads a valid row and its sums are not kept): no branch
            // between the loads, so each token's loads are in flight during the previous one's
            // products, where a branch per token made every token wait for its own loads.
            float4 xv[2][ROUND][2];
            tiled_load_x<T, ROUND, NT>(x, t0, n_tokens, in_dim, v0, n_vec, xv[0]);
#pragma unroll
            for (int t = 0; t < TT; t++) {
                if (t + 1 < TT)
                    tiled_load_x<T, ROUND, NT>(x, t0 + t + 1, n_tokens, in_dim, v0, n_vec,
                                               xv[(t + 1) & 1]);
                const bool in = (group >> t) & 1u;
#pragma unroll
                for (int q = 0; q < ROUND; q++)
#pragma unroll
                    for (int r = 0; r < RR; r++) {
                        const float d = tiled_dot(w[r][q], xv[t & 1][q]);
                        acc[t][r] = in ? acc[t][r] + d : acc[t][r];
                    }
            }
        }
#pragma unroll
        for (int t = 0; t < TT; t++) {
            if (!((group >> t) & 1u)) continue;
#pragma unroll
            for (int r = 0; r < RR; r++) {
                float s = acc[t][r];
                for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (lane == 0) s_part[warp][t * RR + r] = s;
            }
        }
        __syncthreads();
        if (threadIdx.x < TT * RR) {
            const int t = threadIdx.x / RR, r = threadIdx.x - t * RR;
            if (((group >> t) & 1u) && r0 + r < rank) {
                float s = 0.0f;
                for (int w = 0; w < NW; w++) s += s_part[w][threadIdx.x];
                u[((size_t)(t0 + t) * mix_k + k) * max_rank + r0 + r] = s_ws[t] * s;
            }
        }
        __syncthreads();  // s_part is the next group's
    }
}

// grid (ceil(T / TILED_TOKENS), K, ceil(max_rank / TILED_ROWS)), block TILED_SHRINK_THREADS.
#define LORA_SHRINK_TILED(NAME, T)                                                            \
    extern "C" __global__ void __launch_bounds__(TILED_SHRINK_THREADS)                        \
        NAME(LORA_PAIR_PARAMS(x, a, T, in_dim), int n_tokens, float* __restrict__ u) {        \
        tiled_shrink_body<T>(LORA_PAIR_ARGS(x, a, in_dim), n_tokens, u);                      \
    }
LORA_SHRINK_TILED(lora_shrink_tiled, float)
LORA_SHRINK_TILED(lora_shrink_tiled_bf16, lora_bf16)

// y[t, o] += sum_k sum_{j < rank_k} u[t, k, j] * B^T[off_k + j, o] for the tile's tokens and
// one output column o per thread: the tile's u and entries staged in shared memory, then for
// each entry k and each adapter the tile's tokens name there, its B^T values of column o loaded
// TILED_EXPAND_ROWS at a time and applied to every token that names it. Each output's terms
// are added in the segment kernel's order (k, then j), so from the same u it is the same value.
// Dynamic shared memory: TILED_TOKENS * mix_k * (max_rank + 2) words.
template <typename T>
__device__ __forceinline__ void tiled_expand_body(LORA_PAIR_PARAMS(uin, bt, T, out_dim),
                                                  int n_tokens, float* __restrict__ y) {
    constexpr int TT = TILED_TOKENS, ER = TILED_EXPAND_ROWS;
    extern __shared__ float smem[];
    const int km = mix_k * max_rank;
    float* s_u = smem;                                          // [TT, mix_k, max_rank]
    int* s_off = reinterpret_cast<int*>(smem + TT * km);        // [TT, mix_k]
    int* s_rank = s_off + TT * mix_k;                           // [TT, mix_k]
    const int t0 = blockIdx.y * TT;
    for (int i = threadIdx.x; i < TT * mix_k; i += blockDim.x) {
        const int t = t0 + i / mix_k;
        int off = 0, rank = 0;
        float ws = 0.0f;
        if (t < n_tokens)
            rank = lora_entry(seg_of_token, mix_slots, mix_weights, mix_k, slot_offset, slot_rank,
                              slot_scale, n_slots, t, i % mix_k, &off, &ws);
        s_off[i] = off;
        s_rank[i] = rank;
    }
    __syncthreads();
    // Only the values the shrink wrote (j < the entry's rank) are read.
    for (int i = threadIdx.x; i < TT * km; i += blockDim.x) {
        const int t = t0 + i / km;
        if (t < n_tokens && i % max_rank < s_rank[i / max_rank])
            s_u[i] = uin[(size_t)t0 * km + i];
    }
    __syncthreads();
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_dim) return;
    float acc[TT];
#pragma unroll
    for (int t = 0; t < TT; t++) acc[t] = 0.0f;
    for (int k = 0; k < mix_k; k++) {
        unsigned done = 0;
        for (int lead = 0; lead < TT; lead++) {
            if ((done >> lead) & 1u) continue;
            const unsigned group = tiled_group(s_off + k, s_rank + k, mix_k, lead, done);
            done |= group;
            const int off = s_off[lead * mix_k + k], rank = s_rank[lead * mix_k + k];
            for (int j0 = 0; j0 < rank; j0 += ER) {
                float b[ER];
#pragma unroll
                for (int j = 0; j < ER; j++)
                    b[j] = j0 + j < rank ? lora_val(bt, (size_t)(off + j0 + j) * out_dim + o)
                                         : 0.0f;
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    if (!((group >> t) & 1u)) continue;
                    const float* ut = s_u + (t * mix_k + k) * max_rank + j0;
#pragma unroll
                    for (int j = 0; j < ER; j++)
                        if (j0 + j < rank) acc[t] += ut[j] * b[j];
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < TT; t++)
        if (t0 + t < n_tokens) y[(size_t)(t0 + t) * out_dim + o] += acc[t];
}

// grid (ceil(out_dim / blockDim), ceil(T / TILED_TOKENS)), block 128 (EXPAND_THREADS in
// lora_tiled.rs); mix_weights and slot_scale are read for the lookup only: u already holds
// w * scale.
#define LORA_EXPAND_TILED(NAME, T)                                                            \
    extern "C" __global__ void NAME(LORA_PAIR_PARAMS(u, bt, T, out_dim), int n_tokens,        \
                                    float* __restrict__ y) {                                  \
        tiled_expand_body<T>(LORA_PAIR_ARGS(u, bt, out_dim), n_tokens, y);                    \
    }
LORA_EXPAND_TILED(lora_expand_tiled, float)
LORA_EXPAND_TILED(lora_expand_tiled_bf16, lora_bf16)

// sgmv: `lora_shrink` and `lora_expand` on tensor cores, for batches and prefill
// (`--cuda-experimental sgmv`); compiled after lora.cu, whose entry lookups and pair parameters
// it shares.
// Tokens are taken in tiles of SGMV_TILE; the adapters a tile's tokens use are grouped (the tile's
// slot union, in order of first use), and each adapter's rank rows are one GEMM over the whole
// tile: A and B^T are read once per tile instead of once per token. A token that does not use an
// adapter contributes a zero row (cheap on tensor cores; zero times the adapter's B^T stays zero
// because adapters are finite: the PEFT loader rejects others). The products are m16n8k8 TF32
// mma.sync (inputs rounded to 10 mantissa bits, f32 accumulation); every output is written by one
// thread, so results do not depend on scheduling.

#define SGMV_TILE 16                               // tokens per tile: the mma's M
#define SGMV_MAX_K 16                              // mixture entries per token supported
#define SGMV_MAX_SLOTS (SGMV_TILE * SGMV_MAX_K)    // distinct adapters a tile can use
#define SGMV_WARPS 4                               // warps per expand block (128 threads)
#define SGMV_SHRINK_WARPS 8                        // warps per shrink block (256 threads)

// The tile's slot union: slot[i] with rank rows at stack rows off[i] .. off[i] + rank, which
// are GEMM columns col0[i] .. col0[i + 1]; n slots, col0[n] columns in all.
struct SgmvUnion {
    int n;
    int slot[SGMV_MAX_SLOTS];
    int off[SGMV_MAX_SLOTS];
    int col0[SGMV_MAX_SLOTS + 1];
};

// The adapters the tokens t0 .. t0 + SGMV_TILE (those < n_tokens) use, with rank > 0, in order
// of first use. Every thread of the block calls it; it ends with a barrier. s_ent keeps entry
// k of the tile's token r at r * mix_k + k: its slot, or -1 (unused, rank 0, past the step).
__device__ void sgmv_union(const unsigned* __restrict__ seg_of_token,
                           const unsigned* __restrict__ mix_slots, int mix_k,
                           const unsigned* __restrict__ slot_offset,
                           const unsigned* __restrict__ slot_rank, int n_slots, int t0,
                           int n_tokens, int* __restrict__ s_ent, SgmvUnion& u) {
    const int n_ent = SGMV_TILE * mix_k;
    for (int i = threadIdx.x; i < n_ent; i += blockDim.x) {
        const int t = t0 + i / mix_k;
        int s = -1;
        if (t < n_tokens) {
            const unsigned slot = mix_slots[seg_of_token[t] * mix_k + i % mix_k];
            if (slot != NO_ADAPTER && slot < (unsigned)n_slots && slot_rank[slot] > 0)
                s = (int)slot;
        }
        s_ent[i] = s;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int n = 0;
        for (int base = 0; base < n_ent; base += 32) {
            const int i = base + lane;
            bool first = i < n_ent && s_ent[i] >= 0;
            for (int j = 0; first && j < i; j++) first = s_ent[j] != s_ent[i];
            const unsigned m = __ballot_sync(0xffffffffu, first);
            if (first) u.slot[n + __popc(m & ((1u << lane) - 1u))] = s_ent[i];
            n += __popc(m);
        }
        __syncwarp();
        // Offsets and ranks loaded in parallel (not a chain of dependent loads on one lane),
        // column starts by a warp prefix sum of the ranks.
        int carry = 0;
        for (int base = 0; base < n; base += 32) {
            const int i = base + lane;
            int r = 0;
            if (i < n) {
                u.off[i] = (int)slot_offset[u.slot[i]];
                r = (int)slot_rank[u.slot[i]];
            }
            int incl = r;
            for (int o = 1; o < 32; o <<= 1) {
                const int v = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += v;
            }
            if (i < n) u.col0[i] = carry + incl - r;
            carry += __shfl_sync(0xffffffffu, incl, 31);
        }
        if (lane == 0) {
            u.col0[n] = carry;
            u.n = n;
        }
    }
    __syncthreads();
}

// Column c of the union's GEMM: its union entry (or -1 past the last column).
__device__ __forceinline__ int sgmv_entry_of_col(const SgmvUnion& u, int c) {
    if (c >= u.col0[u.n]) return -1;
    int i = 0;
    while (u.col0[i + 1] <= c) i++;
    return i;
}

// d += A (16x8, row-major) * B (8x8, col-major) on tensor cores in TF32. Fragments of
// mma.m16n8k8 (PTX ISA), with g = lane / 4, q = lane % 4: a0 (g, q), a1 (g + 8, q),
// a2 (g, q + 4), a3 (g + 8, q + 4); b0 (k q, n g), b1 (k q + 4, n g); d0 (g, 2q), d1 (g, 2q + 1),
// d2 (g + 8, 2q), d3 (g + 8, 2q + 1). sm_80 and newer; the host refuses SGMV below.
__device__ __forceinline__ void mma_tf32(float* d, float a0, float a1, float a2, float a3,
                                         float b0, float b1) {
#if __CUDA_ARCH__ >= 800
    unsigned r[6];
    const float in[6] = {a0, a1, a2, a3, b0, b1};
#pragma unroll
    for (int i = 0; i < 6; i++) asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r[i]) : "f"(in[i]));
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]), "r"(r[4]), "r"(r[5]));
#else
    __trap();
#endif
}

// 8 consecutive values p[0..8) as floats, with 16-byte loads (p 16-byte aligned).
__device__ __forceinline__ void load8(const float* __restrict__ p, float* v) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void load8(const lora_bf16* __restrict__ p, float* v) {
    const uint4 a = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {  // little-endian: element 2i is the low half of word i
        v[2 * i] = __uint_as_float(w[i] << 16);
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

// lora_shrink over a tile: block (tile, column group of 8): P[16 tokens, 8 columns] =
// x[tile] . A[columns]^T over in_dim, split between the warps and summed in warp order; then
// u[t, k, j] = w * scale * P for each entry k of token t that names the column's adapter.
// Where rows are 16-byte aligned, each warp takes chunks of 32 k: lane (g, q) loads 8
// consecutive k of its rows with 16-byte loads and feeds them to 4 mmas, k 8q + 2i and
// 8q + 2i + 1 at the mma's positions q and q + 4 of both operands (the same permutation of k
// on both sides leaves the dot products unchanged). The rest of in_dim (or all of it) goes by
// steps of 8 with one value per load.
template <typename T>
__device__ void sgmv_shrink_body(const float* __restrict__ x, const T* __restrict__ a,
                                 const unsigned* __restrict__ seg_of_token,
                                 const unsigned* __restrict__ mix_slots,
                                 const float* __restrict__ mix_weights, int mix_k,
                                 const unsigned* __restrict__ slot_offset,
                                 const unsigned* __restrict__ slot_rank,
                                 const float* __restrict__ slot_scale, int n_slots, int in_dim,
                                 int max_rank, int n_tokens, float* __restrict__ u) {
    __shared__ int s_ent[SGMV_MAX_SLOTS];
    __shared__ SgmvUnion un;
    __shared__ int s_row[8], s_entry[8];
    __shared__ float s_part[SGMV_SHRINK_WARPS][SGMV_TILE][8];
    const int t0 = blockIdx.x * SGMV_TILE, c0 = blockIdx.y * 8;
    sgmv_union(seg_of_token, mix_slots, mix_k, slot_offset, slot_rank, n_slots, t0, n_tokens,
               s_ent, un);
    if (c0 >= un.col0[un.n]) return;  // the same for the whole block
    if (threadIdx.x < 8) {
        const int c = c0 + threadIdx.x, e = sgmv_entry_of_col(un, c);
        s_entry[threadIdx.x] = e;
        s_row[threadIdx.x] = e < 0 ? -1 : un.off[e] + c - un.col0[e];
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int row = s_row[g];
    const T* ar = row < 0 ? nullptr : a + (size_t)row * in_dim;
    const float* x0 = t0 + g < n_tokens ? x + (size_t)(t0 + g) * in_dim : nullptr;
    const float* x8 = t0 + g + 8 < n_tokens ? x + (size_t)(t0 + g + 8) * in_dim : nullptr;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const bool vec = (in_dim & 3) == 0 && (sizeof(T) == 4 || (in_dim & 7) == 0);
    const int vec_end = vec ? in_dim & ~31 : 0;
#pragma unroll 2
    for (int k0 = warp * 32; k0 < vec_end; k0 += 32 * SGMV_SHRINK_WARPS) {
        const int k = k0 + 8 * q;
        float xa[8] = {}, xb[8] = {}, av[8] = {};
        if (x0) load8(x0 + k, xa);
        if (x8) load8(x8 + k, xb);
        if (ar) load8(ar + k, av);
#pragma unroll
        for (int i = 0; i < 4; i++)
            mma_tf32(d, xa[2 * i], xb[2 * i], xa[2 * i + 1], xb[2 * i + 1], av[2 * i],
                     av[2 * i + 1]);
    }
    for (int k0 = vec_end + warp * 8; k0 < in_dim; k0 += 8 * SGMV_SHRINK_WARPS) {
        const int ka = k0 + q, kb = k0 + q + 4;
        const bool ina = ka < in_dim, inb = kb < in_dim;
        mma_tf32(d, x0 && ina ? x0[ka] : 0.0f, x8 && ina ? x8[ka] : 0.0f,
                 x0 && inb ? x0[kb] : 0.0f, x8 && inb ? x8[kb] : 0.0f,
                 ar && ina ? lora_val(ar, ka) : 0.0f, ar && inb ? lora_val(ar, kb) : 0.0f);
    }
    s_part[warp][g][2 * q] = d[0];
    s_part[warp][g][2 * q + 1] = d[1];
    s_part[warp][g + 8][2 * q] = d[2];
    s_part[warp][g + 8][2 * q + 1] = d[3];
    __syncthreads();
    for (int i = threadIdx.x; i < SGMV_TILE * 8; i += blockDim.x) {
        const int r = i >> 3, c = i & 7, t = t0 + r;
        if (t >= n_tokens || s_entry[c] < 0) continue;
        float p = 0.0f;
        for (int w = 0; w < SGMV_SHRINK_WARPS; w++) p += s_part[w][r][c];
        const int e = s_entry[c], slot = un.slot[e], j = c0 + c - un.col0[e];
        for (int k = 0; k < mix_k; k++)
            if (s_ent[r * mix_k + k] == slot)
                u[((size_t)t * mix_k + k) * max_rank + j] =
                    mix_weights[seg_of_token[t] * mix_k + k] * slot_scale[slot] * p;
    }
}

// grid (ceil(T / SGMV_TILE), ceil(columns bound / 8)), block 32 * SGMV_SHRINK_WARPS.
#define SGMV_SHRINK(NAME, T)                                                                  \
    extern "C" __global__ void NAME(LORA_PAIR_PARAMS(x, a, T, in_dim), int n_tokens,          \
                                    float* __restrict__ u) {                                  \
        sgmv_shrink_body<T>(LORA_PAIR_ARGS(x, a, in_dim), n_tokens, u);                       \
    }
SGMV_SHRINK(sgmv_shrink, float)
SGMV_SHRINK(sgmv_shrink_bf16, lora_bf16)

// lora_expand over a tile: block (64 output columns, tile); the tile's u gathered into
// U[16 tokens, union columns] in shared memory (the sum of the entries naming the column's
// adapter, zero where none does), then y[tile, columns] += U . B^T[union rows, columns], each
// warp 16 columns (two n8 products). Dynamic shared memory: SGMV_TILE * (cols + 4) + 2 * cols
// words for a columns bound `cols` (a multiple of 8).
template <typename T>
__device__ void sgmv_expand_body(const float* __restrict__ uin, const T* __restrict__ bt,
                                 const unsigned* __restrict__ seg_of_token,
                                 const unsigned* __restrict__ mix_slots, int mix_k,
                                 const unsigned* __restrict__ slot_offset,
                                 const unsigned* __restrict__ slot_rank, int n_slots,
                                 int out_dim, int max_rank, int n_tokens, int cols_bound,
                                 float* __restrict__ y) {
    __shared__ int s_ent[SGMV_MAX_SLOTS];
    __shared__ SgmvUnion un;
    extern __shared__ float smem[];
    // Row stride 4 mod 8 words: the 8 rows g of a fragment read start in 8 distinct 4-bank groups.
    const int ldu = cols_bound + 4;
    float* s_u = smem;                                              // [SGMV_TILE, ldu]
    int* s_row = reinterpret_cast<int*>(smem + SGMV_TILE * ldu);    // [cols_bound]
    int* s_col = s_row + cols_bound;                                 // [cols_bound]: entry
    const int t0 = blockIdx.y * SGMV_TILE;
    sgmv_union(seg_of_token, mix_slots, mix_k, slot_offset, slot_rank, n_slots, t0, n_tokens,
               s_ent, un);
    const int cols = un.col0[un.n];
    if (cols == 0) return;  // the same for the whole block
    if (cols > cols_bound) __trap();  // the host's bound is the largest union: never silently short
    const int cols8 = (cols + 7) & ~7;
    for (int c = threadIdx.x; c < cols8; c += blockDim.x) {
        const int e = sgmv_entry_of_col(un, c);
        s_col[c] = e;
        s_row[c] = e < 0 ? -1 : un.off[e] + c - un.col0[e];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < SGMV_TILE * cols8; i += blockDim.x) {
        const int r = i / cols8, c = i % cols8, t = t0 + r;
        float v = 0.0f;
        const int e = t < n_tokens ? s_col[c] : -1;
        if (e >= 0) {
            const int j = c - un.col0[e];
            for (int k = 0; k < mix_k; k++)
                if (s_ent[r * mix_k + k] == un.slot[e])
                    v += uin[((size_t)t * mix_k + k) * max_rank + j];
        }
        s_u[r * ldu + c] = v;
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int o0 = blockIdx.x * (16 * SGMV_WARPS) + warp * 16;
    float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    for (int kc = 0; kc < cols8; kc += 8) {
        const float a0 = s_u[g * ldu + kc + q], a1 = s_u[(g + 8) * ldu + kc + q];
        const float a2 = s_u[g * ldu + kc + q + 4], a3 = s_u[(g + 8) * ldu + kc + q + 4];
        const int ra = s_row[kc + q], rb = s_row[kc + q + 4];
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            const int o = o0 + nt * 8 + g;
            const bool in = o < out_dim;
            const float b0 = in && ra >= 0 ? lora_val(bt, (size_t)ra * out_dim + o) : 0.0f;
            const float b1 = in && rb >= 0 ? lora_val(bt, (size_t)rb * out_dim + o) : 0.0f;
            mma_tf32(d[nt], a0, a1, a2, a3, b0, b1);
        }
    }
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int t = t0 + g + (i >> 1) * 8, o = o0 + nt * 8 + 2 * q + (i & 1);
            if (t < n_tokens && o < out_dim) y[(size_t)t * out_dim + o] += d[nt][i];
        }
}

// grid (ceil(out_dim / (16 * SGMV_WARPS)), ceil(T / SGMV_TILE)), block 32 * SGMV_WARPS.
// mix_weights and slot_scale are not read: u already holds w * scale.
#define SGMV_EXPAND(NAME, T)                                                                  \
    extern "C" __global__ void NAME(LORA_PAIR_PARAMS(u, bt, T, out_dim), int n_tokens,        \
                                    int cols_bound, float* __restrict__ y) {                  \
        sgmv_expand_body<T>(u, bt, seg_of_token, mix_slots, mix_k, slot_offset, slot_rank,    \
                            n_slots, out_dim, max_rank, n_tokens, cols_bound, y);             \
    }
SGMV_EXPAND(sgmv_expand, float)
SGMV_EXPAND(sgmv_expand_bf16, lora_bf16)

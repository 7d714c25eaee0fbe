// lora_shrink / lora_expand: the sentence-level fused multi-LoRA pair over the segment table.
// Token t's segment s picks up to K (slot, weight) entries; slot a owns rows
// slot_offset[a] .. + slot_rank[a] of the stacked A and B^T (ranks mix without padding).
// One launch each for the whole batch.

#define NO_ADAPTER 0xffffffffu

// matmul.cu's modules start with this file (for its device code) and are compiled in parts:
// DLP_MATVEC_PART=R (1, 2, 4 or 8, set by the backend) keeps the decode matvec entries of row
// bucket R, and with R = 1 every other entry, this file's included (the backend loads those
// from the lora module; each further copy would cost compile and JIT time). Undefined: every
// entry, as the lora module, the compile check and the CPU emulation read the files.
#ifdef DLP_MATVEC_PART
#define MATVEC_PART_HAS(R) (DLP_MATVEC_PART == (R))
#else
#define MATVEC_PART_HAS(R) 1
#endif

// Stacked A and B^T hold f32, or bf16 bit patterns with `--cuda-lora-bf16` (the `_bf16`
// kernels): half the bytes and memory per adapter.
typedef unsigned short lora_bf16;

__device__ __forceinline__ float lora_val(const float* __restrict__ p, size_t i) { return p[i]; }
__device__ __forceinline__ float lora_val(const lora_bf16* __restrict__ p, size_t i) {
    return __uint_as_float(((unsigned)p[i]) << 16);
}

// One lane's share of dot(row, xt) over in_dim (lanes stride 32): f32 rows 16-byte aligned
// (in_dim % 4 == 0) take float4 loads.
__device__ __forceinline__ float row_dot(const float* __restrict__ row,
                                         const float* __restrict__ xt, int in_dim, int lane) {
    float s = 0.0f;
    if ((in_dim & 3) == 0) {
        const float4* r4 = reinterpret_cast<const float4*>(row);
        const float4* x4 = reinterpret_cast<const float4*>(xt);
        for (int i = lane; i < in_dim / 4; i += 32) {
            const float4 rv = r4[i], xv = x4[i];
            s += rv.x * xv.x + rv.y * xv.y + rv.z * xv.z + rv.w * xv.w;
        }
    } else {
        for (int i = lane; i < in_dim; i += 32) s += row[i] * xt[i];
    }
    return s;
}
__device__ __forceinline__ float row_dot(const lora_bf16* __restrict__ row,
                                         const float* __restrict__ xt, int in_dim, int lane) {
    float s = 0.0f;
    for (int i = lane; i < in_dim; i += 32) s += lora_val(row, i) * xt[i];
    return s;
}

// Entry k of token t: returns the rank (0: nothing to do) and sets the row offset and w * scale.
__device__ __forceinline__ int lora_entry(const unsigned* __restrict__ seg_of_token,
                                          const unsigned* __restrict__ mix_slots,
                                          const float* __restrict__ mix_weights, int mix_k,
                                          const unsigned* __restrict__ slot_offset,
                                          const unsigned* __restrict__ slot_rank,
                                          const float* __restrict__ slot_scale, int n_slots,
                                          int t, int k, int* off, float* ws) {
    const unsigned e = seg_of_token[t] * mix_k + k;
    const unsigned slot = mix_slots[e];
    if (slot == NO_ADAPTER || slot >= (unsigned)n_slots) return 0;
    *off = (int)slot_offset[slot];
    *ws = mix_weights[e] * slot_scale[slot];
    return (int)slot_rank[slot];
}

// u[t, k, j] = w * scale * dot(A[off + j, :], x[t, :]) for j < rank: the block of (t, k); each
// warp takes rows j, lanes split in_dim.
template <typename T>
__device__ __forceinline__ void shrink_entry(const float* __restrict__ x, const T* __restrict__ a,
                                             const unsigned* __restrict__ seg_of_token,
                                             const unsigned* __restrict__ mix_slots,
                                             const float* __restrict__ mix_weights, int mix_k,
                                             const unsigned* __restrict__ slot_offset,
                                             const unsigned* __restrict__ slot_rank,
                                             const float* __restrict__ slot_scale, int n_slots,
                                             int in_dim, int max_rank, int t, int k,
                                             float* __restrict__ u) {
    int off = 0;
    float ws = 0.0f;
    const int rank = lora_entry(seg_of_token, mix_slots, mix_weights, mix_k, slot_offset,
                                slot_rank, slot_scale, n_slots, t, k, &off, &ws);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    const float* xt = x + (size_t)t * in_dim;
    float* ut = u + ((size_t)t * mix_k + k) * max_rank;
    for (int j = warp; j < rank; j += n_warps) {
        float s = row_dot(a + (size_t)(off + j) * in_dim, xt, in_dim, lane);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) ut[j] = ws * s;
    }
}

// The parameters every kernel of the pair starts with (segment and SGMV, shrink and expand;
// the host pushes them in one place, `CudaBackend::lora_args`): the input IN (x or u), the
// stack matrix MAT (A or B^T) of element type T, the step's tables, the stack's slot tables,
// the width DIM (in_dim or out_dim) and max_rank.
#define LORA_PAIR_PARAMS(IN, MAT, T, DIM)                                                     \
    const float* __restrict__ IN, const T* __restrict__ MAT,                                  \
        const unsigned* __restrict__ seg_of_token, const unsigned* __restrict__ mix_slots,    \
        const float* __restrict__ mix_weights, int mix_k,                                     \
        const unsigned* __restrict__ slot_offset, const unsigned* __restrict__ slot_rank,     \
        const float* __restrict__ slot_scale, int n_slots, int DIM, int max_rank

// The same parameters passed on, from an entry point to the body it runs.
#define LORA_PAIR_ARGS(IN, MAT, DIM)                                                          \
    IN, MAT, seg_of_token, mix_slots, mix_weights, mix_k, slot_offset, slot_rank, slot_scale, \
        n_slots, DIM, max_rank

// grid (T, K), block 256.
#define LORA_SHRINK(NAME, T)                                                                  \
    extern "C" __global__ void NAME(LORA_PAIR_PARAMS(x, a, T, in_dim),                        \
                                    float* __restrict__ u) {                                  \
        shrink_entry<T>(LORA_PAIR_ARGS(x, a, in_dim), blockIdx.x, blockIdx.y, u);             \
    }
#if MATVEC_PART_HAS(1)
LORA_SHRINK(lora_shrink, float)
LORA_SHRINK(lora_shrink_bf16, lora_bf16)
#endif

// Element j (0 to 2) of a 3-wide array in a kernel's parameter struct, by selects: indexing
// it with a variable makes the compiler copy the whole struct into local memory in every
// thread (11 local stores ahead of each decode matvec's first weight load, in its SASS).
template <typename T>
__device__ __forceinline__ T pick3(const T (&a)[3], int j) {
    return j == 0 ? a[0] : (j == 1 ? a[1] : a[2]);
}

// The stacks of up to LORA_JOBS modules that read the same x (q/k/v, gate/up), by device
// pointers; the shrinks of all of them run as one launch (`lora_shrink_jobs`) and their
// expands inside the decode matvec (`matvec_bf16_lora_r*` in matmul.cu) or as one more launch
// (`lora_expand_jobs`: after the plain matvec with `expand-launch`, or for the decode batches
// it does not take with `batch-lora`).
#define LORA_JOBS 3
struct LoraJobs {
    unsigned long long a[LORA_JOBS];   // const float* (or bf16 bits): stacked A [rank, in_dim]
    unsigned long long bt[LORA_JOBS];  // const float* (or bf16 bits): stacked B^T [rank, n]
    unsigned long long slot_offset[LORA_JOBS];  // const unsigned*
    unsigned long long slot_rank[LORA_JOBS];    // const unsigned*
    unsigned long long slot_scale[LORA_JOBS];   // const float*
    // float*: partial sums [n_chunks][T, mix_k, max_rank], then the entry table
    // (lora_entries): int (offset, rank) per (T, mix_k)
    unsigned long long u[LORA_JOBS];
    int n_slots[LORA_JOBS];
    int max_rank[LORA_JOBS];
    unsigned long long seg_of_token, mix_slots, mix_weights;  // the step's tables
    int mix_k;
    int n_jobs;  // jobs with a stack; a job without one has a == 0
    int ab_bf16;  // A and B^T hold bf16 bit patterns (`--cuda-lora-bf16`)
    int n_chunks;      // ceil(in_dim / SHRINK_CHUNK): u's partial sums per value
    int chunk_stride;  // floats between two chunks' partial sums in u
    // `inline-shrink`: the shrink's blocks (T * K * n_chunks * the launch's jobs) run in the
    // matvec's own grid, before its feature blocks (0: the shrink is a launch of its own).
    int inline_blocks;
    // unsigned* [3], zero between launches: tickets taken, shrink blocks done, blocks finished
    // (matvec_lora_inline in matmul.cu).
    unsigned long long sync;
};
// The host's `LoraJobs` (cuda/src/matvec.rs) has this size; its test checks the offsets.
static_assert(sizeof(LoraJobs) == 224, "LoraJobs: 224 bytes");

// Job z's entry table, after u's partial sums: (offset, rank) of entry (t, k) at
// 2 * (t * mix_k + k), written by lora_shrink_jobs for the matvec's expands.
__device__ __forceinline__ int* lora_entries(const LoraJobs& j, int z) {
    return reinterpret_cast<int*>(reinterpret_cast<float*>(j.u[z]) +
                                  (size_t)j.n_chunks * j.chunk_stride);
}

// One fused-LoRA expand term of job j for row r and term e = kk * max_rank + i: the B^T value
// that multiplies u[r, kk, i], or false when i is past the entry's rank (or no adapter). The
// entry's (offset, rank) come from the table lora_shrink_jobs writes after u's partial sums:
// two loads at once from L2 where the lookup chain (token -> segment -> slot -> offset) took
// four in a row.
__device__ __forceinline__ bool lora_term(const LoraJobs& lj, int j, int n, int f, int r, int e,
                                          float* btv) {
    const int mr = lj.max_rank[j], kk = e / mr, i = e - kk * mr;
    const int* ent = lora_entries(lj, j) + 2 * (r * lj.mix_k + kk);
    const int off = __ldcg(ent), rank = __ldcg(ent + 1);
    if (i >= rank) return false;
    const size_t at = (size_t)(off + i) * n + f;
    *btv = lj.ab_bf16 ? lora_val(reinterpret_cast<const lora_bf16*>(lj.bt[j]), at)
                      : reinterpret_cast<const float*>(lj.bt[j])[at];
    return true;
}

// u[r, kk, i] for term e = kk * max_rank + i of job j: the shrink's partial sums over in_dim
// chunks, in chunk order; the first 8 loaded at once (__ldcg: from L2, where the shrink wrote).
__device__ __forceinline__ float lora_u(const LoraJobs& lj, int j, int r, int e) {
    const float* up =
        reinterpret_cast<const float*>(lj.u[j]) + (size_t)r * lj.mix_k * lj.max_rank[j] + e;
    float part[8];
#pragma unroll
    for (int c = 0; c < 8; c++)
        part[c] = c < lj.n_chunks ? __ldcg(up + (size_t)c * lj.chunk_stride) : 0.0f;
    float uv = 0.0f;
#pragma unroll
    for (int c = 0; c < 8; c++) uv += part[c];
    for (int c = 8; c < lj.n_chunks; c++) uv += __ldcg(up + (size_t)c * lj.chunk_stride);
    return uv;
}

// The shrink splits in_dim into chunks of SHRINK_CHUNK so that a decode step's few (t, k)
// entries still fill many blocks, each lane issuing all its loads at once (4 x 16 bytes of
// bf16 A, 8 of f32). One block per (t, k, chunk) wrote 3 blocks for a whole 4096-wide row
// before: 11-26 us per shrink on the H200, a chain of dependent loads.
#define SHRINK_CHUNK 1024

// One lane's share of dot(row[0 .. len), xt[0 .. len)) for a chunk (len <= SHRINK_CHUNK;
// lanes stride 32) with 16-byte loads: the fused path runs only where the decode matvec does,
// on in_dim % 8 == 0, so rows, x and chunk starts are 16-byte aligned and len % 8 == 0. All of
// a lane's loads are issued before the first product (fixed-size arrays, so the compiler
// cannot reuse a register before its load returns), or with PARTS > 1 in that many rounds
// (fewer registers: the inline-shrink matvec holds the matvec's too); the products are summed
// in the same order either way.
template <int PARTS = 1>
__device__ __forceinline__ float chunk_dot(const lora_bf16* __restrict__ row,
                                           const float* __restrict__ xt, int len, int lane) {
    constexpr int PER_LANE = SHRINK_CHUNK / 8 / 32 / PARTS;
    const uint4* r8 = reinterpret_cast<const uint4*>(row);
    const float4* x4 = reinterpret_cast<const float4*>(xt);
    const int n = len / 8;
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < PARTS; p++) {
        uint4 w[PER_LANE];
        float4 a[PER_LANE], b[PER_LANE];
#pragma unroll
        for (int u = 0; u < PER_LANE; u++) {
            const int i = lane + 32 * (p * PER_LANE + u);
            if (i < n) {
                w[u] = r8[i];
                a[u] = x4[2 * i];
                b[u] = x4[2 * i + 1];
            }
        }
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * (p * PER_LANE + u) < n) s += dot8(w[u], a[u], b[u]);
    }
    return s;
}
template <int PARTS = 1>
__device__ __forceinline__ float chunk_dot(const float* __restrict__ row,
                                           const float* __restrict__ xt, int len, int lane) {
    constexpr int PER_LANE = SHRINK_CHUNK / 4 / 32 / PARTS;
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const float4* x4 = reinterpret_cast<const float4*>(xt);
    const int n = len / 4;
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < PARTS; p++) {
        float4 rv[PER_LANE], xv[PER_LANE];
#pragma unroll
        for (int u = 0; u < PER_LANE; u++) {
            const int i = lane + 32 * (p * PER_LANE + u);
            if (i < n) {
                rv[u] = r4[i];
                xv[u] = x4[i];
            }
        }
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * (p * PER_LANE + u) < n)
                s += rv[u].x * xv[u].x + rv[u].y * xv[u].y + rv[u].z * xv[u].z +
                     rv[u].w * xv[u].w;
    }
    return s;
}

// Chunk c of entry (t, k): u[c * chunk_stride + (t * mix_k + k) * max_rank + r] =
// w * scale * dot(A[off + r, chunk], x[t, chunk]) for r < rank; each warp takes rows r. Chunk
// 0 also writes the entry's (off, rank) into the entry table.
// The matvec's epilogue sums the chunks in order (deterministic, no atomics).
template <int PARTS, typename T>
__device__ __forceinline__ void shrink_chunk(const float* __restrict__ x, const T* __restrict__ a,
                                             const LoraJobs& j, int z, int in_dim, int t, int k,
                                             int c) {
    int off = 0;
    float ws = 0.0f;
    const int rank = lora_entry(reinterpret_cast<const unsigned*>(j.seg_of_token),
                                reinterpret_cast<const unsigned*>(j.mix_slots),
                                reinterpret_cast<const float*>(j.mix_weights), j.mix_k,
                                reinterpret_cast<const unsigned*>(j.slot_offset[z]),
                                reinterpret_cast<const unsigned*>(j.slot_rank[z]),
                                reinterpret_cast<const float*>(j.slot_scale[z]), j.n_slots[z], t,
                                k, &off, &ws);
    if (c == 0 && threadIdx.x == 0) {
        int* ent = lora_entries(j, z) + 2 * ((size_t)t * j.mix_k + k);
        ent[0] = off;
        ent[1] = rank;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    const int lo = c * SHRINK_CHUNK, len = min(SHRINK_CHUNK, in_dim - lo);
    const float* xt = x + (size_t)t * in_dim + lo;
    float* ut = reinterpret_cast<float*>(j.u[z]) + (size_t)c * j.chunk_stride +
                ((size_t)t * j.mix_k + k) * j.max_rank[z];
    for (int r = warp; r < rank; r += n_warps) {
        float s = chunk_dot<PARTS>(a + (size_t)(off + r) * in_dim + lo, xt, len, lane);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) ut[r] = ws * s;
    }
}

// Chunk c of job z's shrink for entry (t, k), on A's storage type (nothing when the job has
// no stack); PARTS as chunk_dot's.
template <int PARTS = 1>
__device__ __forceinline__ void shrink_job_chunk(const float* __restrict__ x, const LoraJobs& j,
                                                 int z, int in_dim, int t, int k, int c) {
    if (z >= j.n_jobs || j.a[z] == 0) return;
    if (j.ab_bf16)
        shrink_chunk<PARTS>(x, reinterpret_cast<const lora_bf16*>(j.a[z]), j, z, in_dim, t, k,
                            c);
    else
        shrink_chunk<PARTS>(x, reinterpret_cast<const float*>(j.a[z]), j, z, in_dim, t, k, c);
}

// grid (T, K * n_chunks, LORA_JOBS), block 256: block (t, k * n_chunks + c, z) is chunk c of
// job z's shrink for entry (t, k).
#if MATVEC_PART_HAS(1)
extern "C" __global__ void lora_shrink_jobs(const float* __restrict__ x, int in_dim, LoraJobs j) {
    // `fused-shrink`: the matvec after it (a dependent launch) streams its weights meanwhile.
    pdl_launch_dependents();
    const int k = blockIdx.y / j.n_chunks, c = blockIdx.y - k * j.n_chunks;
    shrink_job_chunk(x, j, blockIdx.z, in_dim, blockIdx.x, k, c);
}
#endif

// acc + sum_{i < rank} u[i] * b[i * n] (b: B^T at the entry's first row and this thread's
// feature), added in order of i. The loads of EXPAND_BATCH terms are issued before their
// products: a loop that used each value right after its load waited for the loads one by one
// (rank round trips to DRAM per entry, the expand's whole time at a decode step). For
// lora_expand_jobs only: in the segment expand (64 tokens, many blocks resident) it measured
// slower on the H200 (lora_bench's pair 27.6 -> 33.4 us), so that one keeps its plain loop.
#define EXPAND_BATCH 8
template <typename T>
__device__ __forceinline__ float expand_terms(float acc, const T* __restrict__ b, int n,
                                              int rank, const float* u) {
    for (int i0 = 0; i0 < rank; i0 += EXPAND_BATCH) {
        float v[EXPAND_BATCH];
#pragma unroll
        for (int q = 0; q < EXPAND_BATCH; q++)
            v[q] = i0 + q < rank ? lora_val(b, (size_t)(i0 + q) * n) : 0.0f;
#pragma unroll
        for (int q = 0; q < EXPAND_BATCH; q++)
            if (i0 + q < rank) acc += u[i0 + q] * v[q];
    }
    return acc;
}

// Where the expands of lora_expand_jobs add: job z's output [T, n[z]] (n = 0: no job).
struct LoraOuts {
    unsigned long long out[LORA_JOBS];  // float*
    int n[LORA_JOBS];
    int pad;  // explicit: the struct is copied whole into the kernel parameters
};
// The host's `LoraOuts` (cuda/src/fused_linears.rs) has this size; its test checks offsets.
static_assert(sizeof(LoraOuts) == 40, "LoraOuts: 40 bytes");

// The expands of a group after its modules' base products: the plain decode matvec's
// (`expand-launch`), or those of the steps the matvec does not take (`batch-lora`: decode
// batches past its 8 rows): out_z[t, f] += sum_k sum_{i < rank_k}
// u_z[t, k, i] * B^T_z[off_k + i, f], u being lora_shrink_jobs' partial sums added in chunk
// order (already scaled) and (off_k, rank_k) its entry table. Every module of the launch in
// one grid, each (token, entry) read from the tables once per block instead of once per term.
// grid (ceil(max n / blockDim), T, LORA_JOBS); dynamic shared memory: mix_k * max_rank +
// 2 * mix_k words (max_rank the largest of the jobs').
#if MATVEC_PART_HAS(1)
extern "C" __global__ void lora_expand_jobs(LoraJobs lj, LoraOuts o) {
    extern __shared__ float us[];  // [mix_k, max_rank]: u of token t; then (off, rank) pairs
    const int z = blockIdx.z, t = blockIdx.y;
    // Uniform over the block, so before the barrier (a narrower job's blocks past its n: k/v
    // next to q with grouped-query attention).
    const int n = pick3(o.n, z);
    if (z >= lj.n_jobs || lj.bt[z] == 0 || blockIdx.x * blockDim.x >= n) return;
    const int mr = lj.max_rank[z], km = lj.mix_k * mr;
    int* es = reinterpret_cast<int*>(us + km);
    const int* ent = lora_entries(lj, z) + 2 * (size_t)t * lj.mix_k;
    for (int i = threadIdx.x; i < 2 * lj.mix_k; i += blockDim.x) es[i] = __ldcg(ent + i);
    __syncthreads();
    // Only the values the shrink wrote (i < the entry's rank) are read.
    for (int e = threadIdx.x; e < km; e += blockDim.x)
        if (e % mr < es[2 * (e / mr) + 1]) us[e] = lora_u(lj, z, t, e);
    __syncthreads();
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    if (f >= n) return;
    float acc = 0.0f;
    for (int k = 0; k < lj.mix_k; k++) {
        const int off = es[2 * k], rank = es[2 * k + 1];
        const float* uk = us + k * mr;
        const size_t at = (size_t)off * n + f;
        if (lj.ab_bf16)
            acc = expand_terms(acc, reinterpret_cast<const lora_bf16*>(lj.bt[z]) + at, n, rank,
                               uk);
        else
            acc = expand_terms(acc, reinterpret_cast<const float*>(lj.bt[z]) + at, n, rank, uk);
    }
    reinterpret_cast<float*>(pick3(o.out, z))[(size_t)t * n + f] += acc;
}
#endif

// y[t, :] += sum_k sum_{j < rank_k} u[t, k, j] * B^T[off_k + j, :].
// grid (ceil(out_dim / blockDim), T); dynamic shared memory: mix_k * (max_rank + 2) words.
template <typename T>
__device__ __forceinline__ void expand_body(const float* __restrict__ u, const T* __restrict__ bt,
                                            const unsigned* __restrict__ seg_of_token,
                                            const unsigned* __restrict__ mix_slots,
                                            const float* __restrict__ mix_weights, int mix_k,
                                            const unsigned* __restrict__ slot_offset,
                                            const unsigned* __restrict__ slot_rank,
                                            const float* __restrict__ slot_scale, int n_slots,
                                            int out_dim, int max_rank, float* __restrict__ y) {
    extern __shared__ float smem[];
    float* su = smem;                                          // [mix_k, max_rank]
    int* s_off = reinterpret_cast<int*>(smem + mix_k * max_rank);  // [mix_k]
    int* s_rank = s_off + mix_k;                               // [mix_k]
    const int t = blockIdx.y;
    if (threadIdx.x < mix_k) {
        int off = 0;
        float ws = 0.0f;
        s_rank[threadIdx.x] = lora_entry(seg_of_token, mix_slots, mix_weights, mix_k,
                                         slot_offset, slot_rank, slot_scale, n_slots, t,
                                         threadIdx.x, &off, &ws);
        s_off[threadIdx.x] = off;
    }
    for (int i = threadIdx.x; i < mix_k * max_rank; i += blockDim.x)
        su[i] = u[(size_t)t * mix_k * max_rank + i];
    __syncthreads();
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_dim) return;
    float acc = 0.0f;
    for (int k = 0; k < mix_k; k++) {
        const int rank = s_rank[k];
        const T* b = bt + (size_t)s_off[k] * out_dim + o;
        const float* uk = su + k * max_rank;
        for (int j = 0; j < rank; j++) acc += uk[j] * lora_val(b, (size_t)j * out_dim);
    }
    y[(size_t)t * out_dim + o] += acc;
}

#define LORA_EXPAND(NAME, T)                                                                  \
    extern "C" __global__ void NAME(LORA_PAIR_PARAMS(u, bt, T, out_dim),                      \
                                    float* __restrict__ y) {                                  \
        expand_body<T>(LORA_PAIR_ARGS(u, bt, out_dim), y);                                    \
    }
#if MATVEC_PART_HAS(1)
LORA_EXPAND(lora_expand, float)
LORA_EXPAND(lora_expand_bf16, lora_bf16)
#endif

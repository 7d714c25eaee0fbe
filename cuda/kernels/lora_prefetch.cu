// `--cuda-experimental lora-prefetch`: expand-launch's shrink and expand as programmatic
// dependent launches that load their tables and adapter rows before they wait. Compiled after
// lora.cu (LoraJobs, LoraOuts, the entry lookups, SHRINK_CHUNK) as part of the `lora` module.

// `lora-prefetch`: lora_shrink_jobs launched as a programmatic dependent of the kernel that
// writes x. What no kernel of a step writes (the step's and the stacks' tables, A) is read
// before pdl_wait: the entry's lookup chain and each warp's first row of A are in flight while
// that kernel finishes, where lora_shrink_jobs waited for it, then for its own launch, then for
// them. x, and every write, come after the wait; every block waits, so that the matvec waiting
// for this grid also waits, through it, for x. One row's share of a lane, as shrink_chunk<1>
// loads it: ShrinkRow::load before the wait, ShrinkRow::dot after it (the same products in the
// same order as chunk_dot<1>).
template <typename T>
struct ShrinkRow;
template <>
struct ShrinkRow<lora_bf16> {
    static constexpr int PER_LANE = SHRINK_CHUNK / 8 / 32;
    uint4 w[PER_LANE];
    __device__ __forceinline__ void load(const lora_bf16* __restrict__ row, int len, int lane) {
        const uint4* r8 = reinterpret_cast<const uint4*>(row);
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * u < len / 8) w[u] = r8[lane + 32 * u];
    }
    __device__ __forceinline__ float dot(const float* __restrict__ xt, int len, int lane) const {
        const float4* x4 = reinterpret_cast<const float4*>(xt);
        float4 a[PER_LANE], b[PER_LANE];
#pragma unroll
        for (int u = 0; u < PER_LANE; u++) {
            const int i = lane + 32 * u;
            if (i < len / 8) {
                a[u] = x4[2 * i];
                b[u] = x4[2 * i + 1];
            }
        }
        float s = 0.0f;
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * u < len / 8) s += dot8(w[u], a[u], b[u]);
        return s;
    }
};
template <>
struct ShrinkRow<float> {
    static constexpr int PER_LANE = SHRINK_CHUNK / 4 / 32;
    float4 w[PER_LANE];
    __device__ __forceinline__ void load(const float* __restrict__ row, int len, int lane) {
        const float4* r4 = reinterpret_cast<const float4*>(row);
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * u < len / 4) w[u] = r4[lane + 32 * u];
    }
    __device__ __forceinline__ float dot(const float* __restrict__ xt, int len, int lane) const {
        const float4* x4 = reinterpret_cast<const float4*>(xt);
        float4 xv[PER_LANE];
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * u < len / 4) xv[u] = x4[lane + 32 * u];
        float s = 0.0f;
#pragma unroll
        for (int u = 0; u < PER_LANE; u++)
            if (lane + 32 * u < len / 4)
                s += w[u].x * xv[u].x + w[u].y * xv[u].y + w[u].z * xv[u].z + w[u].w * xv[u].w;
        return s;
    }
};

// shrink_chunk<1> with the loads of A (and the lookup) before pdl_wait: the same values.
template <typename T>
__device__ __forceinline__ void shrink_chunk_prefetch(const float* __restrict__ x,
                                                      const T* __restrict__ a, const LoraJobs& j,
                                                      int z, int in_dim, int t, int k, int c) {
    int off = 0;
    float ws = 0.0f;
    const int rank = lora_entry(reinterpret_cast<const unsigned*>(j.seg_of_token),
                                reinterpret_cast<const unsigned*>(j.mix_slots),
                                reinterpret_cast<const float*>(j.mix_weights), j.mix_k,
                                reinterpret_cast<const unsigned*>(pick3(j.slot_offset, z)),
                                reinterpret_cast<const unsigned*>(pick3(j.slot_rank, z)),
                                reinterpret_cast<const float*>(pick3(j.slot_scale, z)),
                                pick3(j.n_slots, z), t, k, &off, &ws);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    const int lo = c * SHRINK_CHUNK, len = min(SHRINK_CHUNK, in_dim - lo);
    ShrinkRow<T> row;
    if (warp < rank) row.load(a + (size_t)(off + warp) * in_dim + lo, len, lane);
    pdl_wait();
    if (c == 0 && threadIdx.x == 0) {
        int* ent = lora_entries(j, z) + 2 * ((size_t)t * j.mix_k + k);
        ent[0] = off;
        ent[1] = rank;
    }
    const float* xt = x + (size_t)t * in_dim + lo;
    float* ut = reinterpret_cast<float*>(pick3(j.u, z)) + (size_t)c * j.chunk_stride +
                ((size_t)t * j.mix_k + k) * pick3(j.max_rank, z);
    for (int r = warp; r < rank; r += n_warps) {
        if (r != warp) row.load(a + (size_t)(off + r) * in_dim + lo, len, lane);
        float s = row.dot(xt, len, lane);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) ut[r] = ws * s;
    }
}

// grid and blocks as lora_shrink_jobs'.
#if MATVEC_PART_HAS(1)
extern "C" __global__ void lora_shrink_jobs_prefetch(const float* __restrict__ x, int in_dim,
                                                     LoraJobs j) {
    pdl_launch_dependents();  // the matvec after it streams its first weights meanwhile
    const int z = blockIdx.z, k = blockIdx.y / j.n_chunks, c = blockIdx.y - k * j.n_chunks;
    if (z >= j.n_jobs || pick3(j.a, z) == 0) {
        pdl_wait();  // every block: see above
        return;
    }
    if (j.ab_bf16)
        shrink_chunk_prefetch(x, reinterpret_cast<const lora_bf16*>(pick3(j.a, z)), j, z, in_dim,
                              blockIdx.x, k, c);
    else
        shrink_chunk_prefetch(x, reinterpret_cast<const float*>(pick3(j.a, z)), j, z, in_dim,
                              blockIdx.x, k, c);
}
#endif

// `lora-prefetch`: lora_expand_jobs launched as a programmatic dependent of the plain matvec
// (which releases it at its start: PDL_RELEASE in matmul.cu). Before pdl_wait it reads only
// what no kernel of a step writes: the entries from the step's tables (lora_entry, as the
// shrink looks them up, not the shrink's table) and this thread's EXPAND_PREFETCH terms of
// B^T, into registers; u and the output after it. Every block waits (see
// lora_shrink_jobs_prefetch). The same terms added in the same order as lora_expand_jobs;
// the host takes it for mix_k * max_rank <= EXPAND_PREFETCH (3 adapters of rank 8: 24).
#define EXPAND_PREFETCH 32
#if MATVEC_PART_HAS(1)
extern "C" __global__ void lora_expand_jobs_prefetch(LoraJobs lj, LoraOuts o) {
    pdl_launch_dependents();
    extern __shared__ float us[];  // [mix_k, max_rank]: u of token t; then (off, rank) pairs
    const int z = blockIdx.z, t = blockIdx.y;
    const int n = pick3(o.n, z);
    if (z >= lj.n_jobs || pick3(lj.bt, z) == 0 || blockIdx.x * blockDim.x >= n) {
        pdl_wait();
        return;
    }
    const int mr = pick3(lj.max_rank, z), km = lj.mix_k * mr;
    if (km > EXPAND_PREFETCH) __trap();  // terms past the registers: the host checks the fit
    int* es = reinterpret_cast<int*>(us + km);
    for (int k = threadIdx.x; k < lj.mix_k; k += blockDim.x) {
        int off = 0;
        float ws = 0.0f;
        const int rank =
            lora_entry(reinterpret_cast<const unsigned*>(lj.seg_of_token),
                       reinterpret_cast<const unsigned*>(lj.mix_slots),
                       reinterpret_cast<const float*>(lj.mix_weights), lj.mix_k,
                       reinterpret_cast<const unsigned*>(pick3(lj.slot_offset, z)),
                       reinterpret_cast<const unsigned*>(pick3(lj.slot_rank, z)),
                       reinterpret_cast<const float*>(pick3(lj.slot_scale, z)),
                       pick3(lj.n_slots, z), t, k, &off, &ws);
        es[2 * k] = off;
        es[2 * k + 1] = rank;
    }
    __syncthreads();
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long bt = pick3(lj.bt, z);
    // Term e = kk * mr + i, walked with (kk, i) counters (no division per term).
    float v[EXPAND_PREFETCH];
    {
        int kk = 0, i = 0;
#pragma unroll
        for (int e = 0; e < EXPAND_PREFETCH; e++) {
            v[e] = 0.0f;
            if (e < km && f < n && i < es[2 * kk + 1]) {
                const size_t at = (size_t)(es[2 * kk] + i) * n + f;
                v[e] = lj.ab_bf16 ? lora_val(reinterpret_cast<const lora_bf16*>(bt), at)
                                  : reinterpret_cast<const float*>(bt)[at];
            }
            if (++i == mr) i = 0, kk++;
        }
    }
    pdl_wait();
    for (int e = threadIdx.x; e < km; e += blockDim.x)
        if (e % mr < es[2 * (e / mr) + 1]) us[e] = lora_u(lj, z, t, e);
    __syncthreads();
    if (f >= n) return;
    float acc = 0.0f;
    int kk = 0, i = 0;
#pragma unroll
    for (int e = 0; e < EXPAND_PREFETCH; e++) {
        if (e < km && i < es[2 * kk + 1]) acc += us[e] * v[e];
        if (++i == mr) i = 0, kk++;
    }
    reinterpret_cast<float*>(pick3(o.out, z))[(size_t)t * n + f] += acc;
}
#endif

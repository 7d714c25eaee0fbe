// matmul: (compiled after lora.cu, whose `LoraJobs`, `lora_term` and `lora_u` the fused
// decode matvec uses.) cuBLAS computes x @ W^T for f32 weights; this adds the optional bias,
// out[r, c] += bias[c].
// The backend compiles and loads this file as four modules at once, one per row bucket of the
// decode matvec (MATVEC_PART_HAS, defined in lora.cu): it is most of a cold start's NVRTC and
// JIT time, and each bucket's entries are code of their own, the same PTX in any module.

#if MATVEC_PART_HAS(1)
extern "C" __global__ void bias_add(float* __restrict__ out, const float* __restrict__ bias,
                                    int rows, int n) {
    const size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % n];
}

// bf16 weight storage (half the bytes of f32; activations and accumulation stay f32):
// out[r, c] = sum_k x[r, k] * W[c, k] (+ bias[c]), W row-major [n, k] as bf16 bit patterns.
// One warp per output feature c and up to MATMUL_BF16_ROWS rows (grid.y covers the rest), so
// decode reads each weight row once, coalesced, two values per lane per step.
#define MATMUL_BF16_ROWS 8

__device__ __forceinline__ float bf16_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned)b) << 16);
}

extern "C" __global__ void matmul_bf16(const float* __restrict__ x,
                                       const unsigned short* __restrict__ w,
                                       const float* __restrict__ bias, int has_bias, int rows,
                                       int k, int n, float* __restrict__ out) {
    const int warps = blockDim.x / 32;
    const int c = blockIdx.x * warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int r0 = blockIdx.y * MATMUL_BF16_ROWS;
    if (c >= n) return;
    const int nr = min(MATMUL_BF16_ROWS, rows - r0);
    const unsigned short* wr = w + (size_t)c * k;
    float acc[MATMUL_BF16_ROWS];
#pragma unroll
    for (int r = 0; r < MATMUL_BF16_ROWS; r++) acc[r] = 0.f;
    for (int i = lane; i < k; i += 32) {
        const float wv = bf16_to_f32(wr[i]);
#pragma unroll
        for (int r = 0; r < MATMUL_BF16_ROWS; r++)
            if (r < nr) acc[r] += wv * x[(size_t)(r0 + r) * k + i];
    }
#pragma unroll
    for (int r = 0; r < MATMUL_BF16_ROWS; r++) {
        float v = acc[r];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0 && r < nr)
            out[(size_t)(r0 + r) * n + c] = v + (has_bias ? bias[c] : 0.f);
    }
}
#endif  // MATVEC_PART_HAS(1)

// Decode matvec on bf16 weights (few rows: decode, small batches), bound by the weights'
// bytes. Each warp owns one output feature and streams its weight row with 16-byte loads
// (8 bf16 per lane), MATVEC_UNROLL loads per lane per round, the next round's loads issued
// before the current round's products; the R activation rows share every weight load. Up to
// three weights that read the same x (q/k/v, gate/up) run in one launch: feature f of the
// concatenated outputs belongs to job 0, 1 or 2 by the running sums of n.
// round_x: 0 = x as f32 (from L1); 1 = each input rounded to bf16 first (the bf16 compute
// mode, as its GEMMs see it); 2 = the same, rounded once per block into shared memory as bf16
// (dynamic shared memory of rows * k * 2 bytes; the host picks 2 where that fits). Rounding
// per warp and per weight load cost about 60 instructions per 16 bytes of weights, which held
// the H200 at about half its DRAM bandwidth; 2 gives the same values.
// Needs k % 8 == 0 (16-byte aligned rows); the host falls back to matmul_bf16 otherwise.
// MATVEC_UNROLL, the block size MATVEC_THREADS and the occupancy hint MATVEC_MIN_BLOCKS may be
// set by the host for tuning sweeps (`DLP_CUDA_TUNE`, cuda/src/tune.rs).
#ifndef MATVEC_UNROLL
#define MATVEC_UNROLL 4
#endif
// A tuned block size bounds the registers (so that a block of up to 1,024 threads launches).
#if defined(MATVEC_MIN_BLOCKS)
#define MATVEC_BOUNDS __launch_bounds__(MATVEC_THREADS, MATVEC_MIN_BLOCKS)
#elif defined(MATVEC_THREADS)
#define MATVEC_BOUNDS __launch_bounds__(MATVEC_THREADS)
#else
#define MATVEC_BOUNDS
#endif
#ifndef MATVEC_THREADS
#define MATVEC_THREADS 256  // the host's block: 8 warps, unless tuned
#endif
#define MATVEC_JOBS 3

struct MatvecJobs {
    unsigned long long w[MATVEC_JOBS];     // const uint4*: [n, k / 8]
    unsigned long long bias[MATVEC_JOBS];  // const float*: [n], 0 = none
    unsigned long long out[MATVEC_JOBS];   // float*: [rows, n]
    int n[MATVEC_JOBS];
    // Dependent-launch bits. PDL_WAIT_X: launched as a dependent of the kernel that wrote x
    // (`dependent-launch`): wait for it (pdl_wait) after issuing the first weight loads,
    // before reading x. PDL_RELEASE: release the launch after it at the start (`lora-prefetch`:
    // the group's expand, a dependent launch that loads its B^T rows while this one streams).
    int pdl;
};
// The host's `MatvecJobs` (cuda/src/matvec.rs) has this size; its test checks the offsets.
static_assert(sizeof(MatvecJobs) == 88, "MatvecJobs: 88 bytes");
#define PDL_WAIT_X 1
#define PDL_RELEASE 2

__device__ __forceinline__ float4 round4(float4 v, int round_x) {
    if (round_x) {
        v.x = round_bf16(v.x);
        v.y = round_bf16(v.y);
        v.z = round_bf16(v.z);
        v.w = round_bf16(v.w);
    }
    return v;
}

// Loads the MATVEC_UNROLL 16-byte pieces of a weight row at i0, i0 + 32, ... (those < k8).
// Read once: the weights stay out of L1 (__ldcs: evict-first streaming load).
__device__ __forceinline__ void load_weights(uint4 (&wv)[MATVEC_UNROLL],
                                             const uint4* __restrict__ wr, int i0, int k8) {
#pragma unroll
    for (int u = 0; u < MATVEC_UNROLL; u++) {
        const int i = i0 + u * 32;
        if (i < k8) wv[u] = __ldcs(wr + i);
    }
}

// round_x 2: x[r, 8i .. 8i + 8) rounded to bf16, packed as dot8_bf16 reads it, into
// xs[r * k8 + i] for every r < rows, by the whole block; then a barrier.
__device__ __forceinline__ void stage_x_bf16(uint4* __restrict__ xs, const float4* __restrict__ x4,
                                             int rows, int k8) {
    for (int idx = threadIdx.x; idx < rows * k8; idx += blockDim.x) {
        const float4 a = x4[(size_t)idx * 2], b = x4[(size_t)idx * 2 + 1];
        uint4 p;
        p.x = (unsigned)bf16_bits(a.x) | ((unsigned)bf16_bits(a.y) << 16);
        p.y = (unsigned)bf16_bits(a.z) | ((unsigned)bf16_bits(a.w) << 16);
        p.z = (unsigned)bf16_bits(b.x) | ((unsigned)bf16_bits(b.y) << 16);
        p.w = (unsigned)bf16_bits(b.z) | ((unsigned)bf16_bits(b.w) << 16);
        xs[idx] = p;
    }
    __syncthreads();
}

// `inline-shrink`: until every shrink block of this grid has published its partial sums and
// entries (lane 0 polls the done counter; the fence orders the reads after it; u and the table
// are then read from L2 with __ldcg).
__device__ __forceinline__ void wait_inline_shrink(const LoraJobs& lj, int lane) {
    const volatile unsigned* done = reinterpret_cast<const volatile unsigned*>(lj.sync) + 1;
    if (lane == 0) {
        while (*done < (unsigned)lj.inline_blocks) {
#if __CUDA_ARCH__ >= 700
            __nanosleep(32);
#endif
        }
    }
    __syncwarp();
    __threadfence();
}

// What matvec_feature does with a feature's sums: stores them (MATVEC_STORE), or, for
// `fused-silu` (the gate/up launch computing both rows of a feature in one warp), keeps the
// gate's in every lane (MATVEC_KEEP_GATE), then stores silu(gate) * up (MATVEC_STORE_SILU).
#define MATVEC_STORE 0
#define MATVEC_KEEP_GATE 1
#define MATVEC_STORE_SILU 2

// Output feature f of job j (f counted within the job, wr its weight row) for up to R rows,
// its first MATVEC_UNROLL weight loads already in wv. With LORA, job j's fused-LoRA expand
// joins the dot products before their reduction: out[r, f] += sum_k sum_{i < rank_k}
// u_j[r, k, i] * B^T_j[off_k + i, f] (u: the sum of lora_shrink_jobs' partial sums, already
// scaled), lanes splitting the mix_k * max_rank terms. With MATVEC_KEEP_GATE the sums (bias
// added) go to gate and the first loads of wnext (the up row) are issued after the weight
// loop, so they fly during the epilogue; MATVEC_STORE_SILU stores silu_mul.cu's expression,
// g / (1 + exp(-g)) * u, of gate and these sums (bias added): the same values.
template <int R, bool LORA, bool INLINE>
__device__ __forceinline__ void matvec_feature(const float4* __restrict__ x4,
                                               const uint4* __restrict__ xs, bool stage,
                                               int rows, int k, int round_x,
                                               const MatvecJobs& jobs, const LoraJobs& lj, int j,
                                               int f, const uint4* __restrict__ wr,
                                               uint4 (&wv)[MATVEC_UNROLL], int lane,
                                               int epilogue = MATVEC_STORE,
                                               float (*gate)[R] = nullptr,
                                               const uint4* __restrict__ wnext = nullptr) {
    const int k8 = k / 8;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    const int n = pick3(jobs.n, j);
    const bool lora = LORA && j < lj.n_jobs && lj.bt[j] != 0;
    const int km = lora ? lj.mix_k * lj.max_rank[j] : 0;
    for (int i0 = lane; i0 < k8; i0 += 32 * MATVEC_UNROLL) {
        uint4 next[MATVEC_UNROLL];
        load_weights(next, wr, i0 + 32 * MATVEC_UNROLL, k8);
#pragma unroll
        for (int u = 0; u < MATVEC_UNROLL; u++) {
            const int i = i0 + u * 32;
            if (i >= k8) break;
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (r < rows) {
                    if (stage) {
                        acc[r] += dot8_bf16(wv[u], xs[r * k8 + i]);
                    } else {
                        const size_t base = ((size_t)r * k) / 4 + (size_t)i * 2;
                        acc[r] += dot8(wv[u], round4(x4[base], round_x),
                                       round4(x4[base + 1], round_x));
                    }
                }
            }
        }
#pragma unroll
        for (int u = 0; u < MATVEC_UNROLL; u++) wv[u] = next[u];
    }
    if (epilogue == MATVEC_KEEP_GATE) load_weights(wv, wnext, lane, k8);
    float* out = reinterpret_cast<float*>(pick3(jobs.out, j));
    const float* bias = reinterpret_cast<const float*>(pick3(jobs.bias, j));
    if (lora) {
        // u and the entry table come from lora_shrink_jobs, which may still run (fused-shrink:
        // programmatic dependent launch), or from the shrink blocks of this grid
        // (inline-shrink): wait for them here, after the weights have streamed.
        pdl_wait();
        if (INLINE) wait_inline_shrink(lj, lane);
        for (int e = lane; e < km; e += 32) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                float btv;
                if (r < rows && lora_term(lj, j, n, f, r, e, &btv))
                    acc[r] += lora_u(lj, j, r, e) * btv;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (epilogue == MATVEC_KEEP_GATE) {
            (*gate)[r] = v + (bias ? bias[f] : 0.f);
        } else if (lane == 0 && r < rows) {
            if (epilogue == MATVEC_STORE_SILU) {
                const float g = (*gate)[r];
                out[(size_t)r * n + f] = g / (1.0f + expf(-g)) * (v + (bias ? bias[f] : 0.f));
            } else {
                out[(size_t)r * n + f] = v + (bias ? bias[f] : 0.f);
            }
        }
    }
}

// The job of feature f of the launch (counted over all jobs), with f made the feature within
// that job; MATVEC_JOBS past the last feature.
__device__ __forceinline__ int matvec_job(const MatvecJobs& jobs, int& f) {
    int j = 0;
#pragma unroll
    for (int i = 0; i < MATVEC_JOBS; i++) {
        if (j == i && f >= jobs.n[i]) {
            f -= jobs.n[i];
            j = i + 1;
        }
    }
    return j;
}

// One unit of a warp's work: feature f of job j (wr its weight row, its first loads in wv),
// or with SILU (`fused-silu`: jobs 0 and 1 are gate and up, as wide) gate row f then up row f,
// storing silu(gate) * up at job 1's out: the silu_mul launch folded into the epilogue.
template <int R, bool LORA, bool INLINE, bool SILU>
__device__ __forceinline__ void matvec_unit(const float4* __restrict__ x4,
                                            const uint4* __restrict__ xs, bool stage, int rows,
                                            int k, int round_x, const MatvecJobs& jobs,
                                            const LoraJobs& lj, int j, int f,
                                            const uint4* __restrict__ wr,
                                            uint4 (&wv)[MATVEC_UNROLL], int lane) {
    if (SILU) {
        // Not unrolled: one copy of the weight loop serves both rows (the entries' code size).
        float gate[R];
        const uint4* up = reinterpret_cast<const uint4*>(jobs.w[1]) + (size_t)f * (k / 8);
#pragma unroll 1
        for (int p = 0; p < 2; p++) {
            matvec_feature<R, LORA, INLINE>(x4, xs, stage, rows, k, round_x, jobs, lj, p, f,
                                            p == 0 ? wr : up, wv, lane,
                                            p == 0 ? MATVEC_KEEP_GATE : MATVEC_STORE_SILU, &gate,
                                            up);
        }
    } else {
        matvec_feature<R, LORA, INLINE>(x4, xs, stage, rows, k, round_x, jobs, lj, j, f, wr, wv,
                                        lane);
    }
}

// matvec_job, or with SILU the gate/up pair's: job 0 below jobs.n[0] features (f unchanged),
// else past the last.
template <bool SILU>
__device__ __forceinline__ int matvec_unit_job(const MatvecJobs& jobs, int& f) {
    if (SILU) return f < jobs.n[0] ? 0 : MATVEC_JOBS;
    return matvec_job(jobs, f);
}

// Each warp computes feature block * warps + warp of the launch (block: of the n_blocks that
// compute features); with MATVEC_PERSISTENT (`DLP_CUDA_TUNE=matvec_blocks_per_sm=N`: the host
// launches at most N blocks per SM), also every n_blocks * warps features after it: x is
// staged once per block for several features, and the warps' counts of features differ by at
// most one (no last wave of a few blocks). Each feature is computed as in one pass: the same
// values. With SILU a feature is a gate/up pair (matvec_unit).
template <int R, bool LORA, bool INLINE = false, bool SILU = false>
__device__ __forceinline__ void matvec_bf16_body(const float* __restrict__ x, int rows, int k,
                                                 int round_x, const MatvecJobs& jobs,
                                                 const LoraJobs& lj, int block, int n_blocks) {
    extern __shared__ uint4 xs[];  // round_x 2: [rows, k / 8] packed bf16
    if (!LORA && !SILU && (jobs.pdl & PDL_RELEASE)) pdl_launch_dependents();  // plain entries
    const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
    int f = block * warps + threadIdx.x / 32;
    int j = matvec_unit_job<SILU>(jobs, f);
    const bool stage = round_x == 2;
    // A warp past the last feature returns, unless the block stages x (it helps, then).
    if (j == MATVEC_JOBS && !stage) return;
    const bool active = j < MATVEC_JOBS;
    const int k8 = k / 8;
    const uint4* wr =
        active ? reinterpret_cast<const uint4*>(pick3(jobs.w, j)) + (size_t)f * k8 : nullptr;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    uint4 wv[MATVEC_UNROLL];
    // The first weight loads: no kernel writes the weights, so with PDL_WAIT_X they are in
    // flight while the kernel that writes x finishes (and while the block stages x).
    if (active) load_weights(wv, wr, lane, k8);
    if (jobs.pdl & PDL_WAIT_X) pdl_wait();
    if (stage) stage_x_bf16(xs, x4, rows, k8);
    if (!active) return;
    matvec_unit<R, LORA, INLINE, SILU>(x4, xs, stage, rows, k, round_x, jobs, lj, j, f, wr, wv,
                                       lane);
#ifdef MATVEC_PERSISTENT
    for (int g = block * warps + threadIdx.x / 32 + n_blocks * warps;; g += n_blocks * warps) {
        f = g;
        j = matvec_unit_job<SILU>(jobs, f);
        if (j == MATVEC_JOBS) return;
        wr = reinterpret_cast<const uint4*>(pick3(jobs.w, j)) + (size_t)f * k8;
        load_weights(wv, wr, lane, k8);
        matvec_unit<R, LORA, INLINE, SILU>(x4, xs, stage, rows, k, round_x, jobs, lj, j, f, wr,
                                           wv, lane);
    }
#endif
}

// `inline-shrink`: one grid for a group's LoRA shrinks and its matvec. Each block takes a
// ticket in the order blocks start (an atomic counter, as a decoupled look-back scan does):
// the first inline_blocks tickets run the shrink's blocks (lora_shrink_jobs' work, block
// (t, k * n_chunks + c, z) of its grid), the rest the matvec's features. A feature block waits
// for the shrinks only in its epilogue, and only blocks holding a lower ticket, which have
// started, can hold it up: no deadlock however the GPU schedules the grid. The shrink no longer
// waits for the kernel before to finish and then for its own launch: with dependent-launch
// the whole grid starts while the kernel writing x runs. The last block to finish zeroes the
// counters for the next launch.
template <int R, bool SILU = false>
__device__ __forceinline__ void matvec_lora_inline(const float* __restrict__ x, int rows, int k,
                                                   int round_x, const MatvecJobs& jobs,
                                                   const LoraJobs& lj) {
    __shared__ unsigned ticket;
    unsigned* sync = reinterpret_cast<unsigned*>(lj.sync);
    if (threadIdx.x == 0) ticket = atomicAdd(sync, 1u);
    __syncthreads();
    const int t0 = (int)ticket, shrinks = lj.inline_blocks;
    if (t0 < shrinks) {
        const int per_job = rows * lj.mix_k * lj.n_chunks, z = t0 / per_job;
        const int rest = t0 - z * per_job, t = rest / (lj.mix_k * lj.n_chunks);
        const int kc = rest - t * lj.mix_k * lj.n_chunks, kk = kc / lj.n_chunks;
        if (jobs.pdl & PDL_WAIT_X) pdl_wait();
        // In 4 rounds of loads: ptxas (sm_90) then gives the r1 entry 80 registers, not 94
        // (the plain fused-LoRA r1 takes 61; matvec_min_blocks can cap it for a sweep).
        shrink_job_chunk<4>(x, lj, z, k, t, kk, kc - kk * lj.n_chunks);
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(sync + 1, 1u);
        }
    } else {
        matvec_bf16_body<R, true, true, SILU>(x, rows, k, round_x, jobs, lj, t0 - shrinks,
                                              (int)gridDim.x - shrinks);
    }
    __syncthreads();
    // Fenced both sides: this block's done count lands before its finished count, and the
    // reset after every other block's counts. The next launch to use these counters is queued
    // after a plain launch (at least the attention between two layers' grouped linears), so it
    // starts after this grid has completed, its stores visible. The launches that release
    // their dependent at their start, and so may run beside the next inline launch before
    // their reset is visible, have counters of their own (the host points lj.sync past these:
    // `fused-silu`'s gate/up, `norm-in-matvec`'s o and down; fused_linears.rs, sync_set).
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(sync + 2, 1u) == gridDim.x - 1) {
            __threadfence();
            sync[0] = 0;
            sync[1] = 0;
            sync[2] = 0;
        }
    }
}

// One entry point per row bucket (1, 2, 4, 8 rows): acc[R] stays in registers. The `_lora`
// ones add the jobs' fused-LoRA expands; the `_lora_inline` ones also run their shrink. With
// SUFFIX _silu (SILU true): the gate/up launch of `fused-silu`, one warp per pair of rows. It
// takes silu_mul's place just before the down projection's matvec, so like silu_mul it lets
// that dependent launch start at once (PDL_TRIGGER; the matvec waits before reading x).
#define MATVEC_ENTRIES_OF(R, SUFFIX, SILU)                                                    \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16##SUFFIX##_r##R(                      \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs) {         \
        if (SILU) PDL_TRIGGER();                                                              \
        LoraJobs none;                                                                        \
        none.n_jobs = 0;                                                                      \
        matvec_bf16_body<R, false, false, SILU>(x, rows, k, round_x, jobs, none, blockIdx.x,  \
                                                gridDim.x);                                   \
    }                                                                                         \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16_lora##SUFFIX##_r##R(                 \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs,           \
        LoraJobs lj) {                                                                        \
        if (SILU) PDL_TRIGGER();                                                              \
        matvec_bf16_body<R, true, false, SILU>(x, rows, k, round_x, jobs, lj, blockIdx.x,     \
                                               gridDim.x);                                    \
    }                                                                                         \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16_lora_inline##SUFFIX##_r##R(          \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs,           \
        LoraJobs lj) {                                                                        \
        if (SILU) PDL_TRIGGER();                                                              \
        matvec_lora_inline<R, SILU>(x, rows, k, round_x, jobs, lj);                           \
    }
// `norm-in-matvec`: the o or down projection's launch also does the residual add and the
// RMSNorm that read its output (add_rms_norm in rms_norm.cu): x[r, :] += out[r, :], then
// norm_out[r, :] = rms_norm(x[r, :]) * w, for every row, by the block that finishes last (a
// count per launch in device memory: the last-block reduction of CUDA's threadFenceReduction
// sample), instead of an add_rms_norm launch after the matvec. The host passes the block size
// add_rms_norm would have (threads: 256, or 1,024 with wide grids), and the block emulates it:
// virtual thread v sums the squares of elements v, v + threads, ... in order, each virtual warp
// reduces with block_sum's butterfly, then the warps' sums with the same one; so the sums are
// added in add_rms_norm's order whatever the matvec's block size, and the values are its values.
struct MatvecNorm {
    unsigned long long x;     // float*: [rows, dim] residual, += the matvec's output
    unsigned long long w;     // const float*: [dim] the norm's weight
    unsigned long long out;   // float*: [rows, dim] the normed rows
    unsigned long long sync;  // unsigned*: blocks finished, zero between launches
    int dim;                  // the matvec's n (job 0)
    int threads;              // add_rms_norm's block size (a multiple of 32, at most 1,024)
    float eps;
    int pad;
};
// The host's `MatvecNorm` (cuda/src/matvec.rs) has this size; its test checks the offsets.
static_assert(sizeof(MatvecNorm) == 48, "MatvecNorm: 48 bytes");

// The rows' residual add and RMSNorm, by the whole block, as add_rms_norm computes them with
// nm.threads threads (see MatvecNorm). y (the matvec's output) was written by other blocks of
// this grid and x by an earlier launch: both read from L2 (__ldcg); x is then rewritten by the
// thread that reads it back.
__device__ __forceinline__ void add_norm_rows(const MatvecNorm& nm, const float* y, int rows) {
    __shared__ double partial[32];
    const int vws = nm.threads / 32, warps = blockDim.x / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, dim = nm.dim;
    const float* __restrict__ w = reinterpret_cast<const float*>(nm.w);
    for (int r = 0; r < rows; r++) {
        float* xr = reinterpret_cast<float*>(nm.x) + (size_t)r * dim;
        const float* yr = y + (size_t)r * dim;
        for (int vw = warp; vw < vws; vw += warps) {
            double ss = 0.0;
            for (int i = vw * 32 + lane; i < dim; i += nm.threads) {
                const float xv = __ldcg(xr + i) + __ldcg(yr + i);
                xr[i] = xv;
                const double v = xv;
                ss += v * v;
            }
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) partial[vw] = ss;
        }
        __syncthreads();
        double ss = lane < vws ? partial[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float inv = (float)(1.0 / sqrt(ss / dim + (double)nm.eps));
        float* out = reinterpret_cast<float*>(nm.out) + (size_t)r * dim;
        for (int vw = warp; vw < vws; vw += warps)
            for (int i = vw * 32 + lane; i < dim; i += nm.threads) out[i] = xr[i] * inv * w[i];
        __syncthreads();  // partial is rewritten for the next row
    }
}

// After the block's features: every thread fences its stores, the block counts itself
// finished, and the last block (all outputs then written and visible) runs add_norm_rows and
// zeroes the count for the next launch. Every thread of the block gets here (the matvec's
// early returns leave its body only).
__device__ __forceinline__ void add_norm_last_block(const MatvecNorm& nm, const MatvecJobs& jobs,
                                                    int rows) {
    __shared__ unsigned last;
    __threadfence();
    __syncthreads();
    unsigned* sync = reinterpret_cast<unsigned*>(nm.sync);
    if (threadIdx.x == 0) last = atomicAdd(sync, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    add_norm_rows(nm, reinterpret_cast<const float*>(jobs.out[0]), rows);
    if (threadIdx.x == 0) {
        *sync = 0;
        __threadfence();
    }
}

// The `_norm` entries (`norm-in-matvec`): the plain, fused-LoRA and inline-shrink matvecs of
// one job with add_norm_last_block after them. Like add_rms_norm, whose place they take, they
// release the next (dependent) matvec at their start; it waits for this whole grid before it
// reads the normed rows. Their counters are their own (the host's `NORM_SYNC_WORDS`): the grid
// after a dependent's may start before this one has reset them.
#define MATVEC_NORM_ENTRIES(R)                                                                \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16_norm_r##R(                           \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs,           \
        MatvecNorm nm) {                                                                      \
        PDL_TRIGGER();                                                                        \
        LoraJobs none;                                                                        \
        none.n_jobs = 0;                                                                      \
        matvec_bf16_body<R, false>(x, rows, k, round_x, jobs, none, blockIdx.x, gridDim.x);   \
        add_norm_last_block(nm, jobs, rows);                                                  \
    }                                                                                         \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16_lora_norm_r##R(                      \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs,           \
        LoraJobs lj, MatvecNorm nm) {                                                         \
        PDL_TRIGGER();                                                                        \
        matvec_bf16_body<R, true>(x, rows, k, round_x, jobs, lj, blockIdx.x, gridDim.x);      \
        add_norm_last_block(nm, jobs, rows);                                                  \
    }                                                                                         \
    extern "C" __global__ void MATVEC_BOUNDS matvec_bf16_lora_inline_norm_r##R(               \
        const float* __restrict__ x, int rows, int k, int round_x, MatvecJobs jobs,           \
        LoraJobs lj, MatvecNorm nm) {                                                         \
        PDL_TRIGGER();                                                                        \
        matvec_lora_inline<R>(x, rows, k, round_x, jobs, lj);                                 \
        add_norm_last_block(nm, jobs, rows);                                                  \
    }
// Each row bucket's entries (see DLP_MATVEC_PART). The `fused-silu` and `norm-in-matvec` ones
// only where the host asks for them (DLP_MATVEC_FOLDS: either switch on), so that the default
// module keeps its size and JIT time (the 18 entries more than double its PTX); the host folds
// the norm for at most 2 rows (`NORM_FOLD_MAX_ROWS`): two buckets.
#if MATVEC_PART_HAS(1)
MATVEC_ENTRIES_OF(1, , false)
#ifdef DLP_MATVEC_FOLDS
MATVEC_ENTRIES_OF(1, _silu, true)
MATVEC_NORM_ENTRIES(1)
#endif
#endif
#if MATVEC_PART_HAS(2)
MATVEC_ENTRIES_OF(2, , false)
#ifdef DLP_MATVEC_FOLDS
MATVEC_ENTRIES_OF(2, _silu, true)
MATVEC_NORM_ENTRIES(2)
#endif
#endif
#if MATVEC_PART_HAS(4)
MATVEC_ENTRIES_OF(4, , false)
#ifdef DLP_MATVEC_FOLDS
MATVEC_ENTRIES_OF(4, _silu, true)
#endif
#endif
#if MATVEC_PART_HAS(8)
MATVEC_ENTRIES_OF(8, , false)
#ifdef DLP_MATVEC_FOLDS
MATVEC_ENTRIES_OF(8, _silu, true)
#endif
#endif

#if MATVEC_PART_HAS(1)
// The bf16 compute mode's GEMM input: out[i] = bf16(x[i]) as bit patterns (round to nearest
// even), for cublasGemmEx on tensor cores.
extern "C" __global__ void to_bf16(const float* __restrict__ x, int n,
                                   unsigned short* __restrict__ out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = bf16_bits(x[i]);
}
#endif  // MATVEC_PART_HAS(1)

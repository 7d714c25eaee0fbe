// lora_shrink / lora_expand: the sentence-level fused multi-LoRA pair over the segment table.
// Token t's segment s picks up to K (slot, weight) entries; slot a owns rows
// slot_offset[a] .. + slot_rank[a] of the stacked A and B^T (ranks mix without padding).
// One launch each for the whole batch.

#define NO_ADAPTER 0xffffffffu

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

// grid (T, K), block 256.
#define LORA_SHRINK(NAME, T)                                                                  \
    extern "C" __global__ void NAME(                                                          \
        const float* __restrict__ x, const T* __restrict__ a,                                 \
        const unsigned* __restrict__ seg_of_token, const unsigned* __restrict__ mix_slots,    \
        const float* __restrict__ mix_weights, int mix_k,                                     \
        const unsigned* __restrict__ slot_offset, const unsigned* __restrict__ slot_rank,     \
        const float* __restrict__ slot_scale, int n_slots, int in_dim, int max_rank,          \
        float* __restrict__ u) {                                                              \
        shrink_entry<T>(x, a, seg_of_token, mix_slots, mix_weights, mix_k, slot_offset,       \
                        slot_rank, slot_scale, n_slots, in_dim, max_rank, blockIdx.x,         \
                        blockIdx.y, u);                                                       \
    }
LORA_SHRINK(lora_shrink, float)
LORA_SHRINK(lora_shrink_bf16, lora_bf16)

// The stacks of up to LORA_JOBS modules that read the same x (q/k/v, gate/up), by device
// pointers; the shrinks of all of them run as one launch (`lora_shrink_jobs`) and their
// expands inside the decode matvec (`matvec_bf16_lora_r*` in matmul.cu).
#define LORA_JOBS 3
struct LoraJobs {
    unsigned long long a[LORA_JOBS];   // const float* (or bf16 bits): stacked A [rank, in_dim]
    unsigned long long bt[LORA_JOBS];  // const float* (or bf16 bits): stacked B^T [rank, n]
    unsigned long long slot_offset[LORA_JOBS];  // const unsigned*
    unsigned long long slot_rank[LORA_JOBS];    // const unsigned*
    unsigned long long slot_scale[LORA_JOBS];   // const float*
    unsigned long long u[LORA_JOBS];            // float*: [T, mix_k, max_rank]
    int n_slots[LORA_JOBS];
    int max_rank[LORA_JOBS];
    unsigned long long seg_of_token, mix_slots, mix_weights;  // the step's tables
    int mix_k;
    int n_jobs;  // jobs with a stack; a job without one has a == 0
    int ab_bf16;  // A and B^T hold bf16 bit patterns (`--cuda-lora-bf16`)
    int pad;      // explicit: the struct is copied whole into the kernel parameters
};

// grid (T, K, LORA_JOBS): block z is job z's shrink (nothing when it has no stack).
extern "C" __global__ void lora_shrink_jobs(const float* __restrict__ x, int in_dim, LoraJobs j) {
    const int z = blockIdx.z;
    if (z >= j.n_jobs || j.a[z] == 0) return;
    const unsigned* seg = reinterpret_cast<const unsigned*>(j.seg_of_token);
    const unsigned* slots = reinterpret_cast<const unsigned*>(j.mix_slots);
    const float* weights = reinterpret_cast<const float*>(j.mix_weights);
    const unsigned* off = reinterpret_cast<const unsigned*>(j.slot_offset[z]);
    const unsigned* rank = reinterpret_cast<const unsigned*>(j.slot_rank[z]);
    const float* scale = reinterpret_cast<const float*>(j.slot_scale[z]);
    float* u = reinterpret_cast<float*>(j.u[z]);
    if (j.ab_bf16)
        shrink_entry(x, reinterpret_cast<const lora_bf16*>(j.a[z]), seg, slots, weights, j.mix_k,
                     off, rank, scale, j.n_slots[z], in_dim, j.max_rank[z], blockIdx.x,
                     blockIdx.y, u);
    else
        shrink_entry(x, reinterpret_cast<const float*>(j.a[z]), seg, slots, weights, j.mix_k,
                     off, rank, scale, j.n_slots[z], in_dim, j.max_rank[z], blockIdx.x,
                     blockIdx.y, u);
}

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
    extern "C" __global__ void NAME(                                                          \
        const float* __restrict__ u, const T* __restrict__ bt,                                \
        const unsigned* __restrict__ seg_of_token, const unsigned* __restrict__ mix_slots,    \
        const float* __restrict__ mix_weights, int mix_k,                                     \
        const unsigned* __restrict__ slot_offset, const unsigned* __restrict__ slot_rank,     \
        const float* __restrict__ slot_scale, int n_slots, int out_dim, int max_rank,         \
        float* __restrict__ y) {                                                              \
        expand_body<T>(u, bt, seg_of_token, mix_slots, mix_weights, mix_k, slot_offset,       \
                       slot_rank, slot_scale, n_slots, out_dim, max_rank, y);                 \
    }
LORA_EXPAND(lora_expand, float)
LORA_EXPAND(lora_expand_bf16, lora_bf16)

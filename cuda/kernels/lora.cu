// lora_shrink / lora_expand: the sentence-level fused multi-LoRA pair over the segment table.
// Token t's segment s picks up to K (slot, weight) entries; slot a owns rows
// slot_offset[a] .. + slot_rank[a] of the stacked A and B^T (ranks mix without padding).
// One launch each for the whole batch.

#define NO_ADAPTER 0xffffffffu

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
__device__ __forceinline__ void shrink_entry(const float* __restrict__ x, const float* __restrict__ a,
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
    const bool vec = (in_dim & 3) == 0;  // rows are then 16-byte aligned: float4 loads
    for (int j = warp; j < rank; j += n_warps) {
        const float* row = a + (size_t)(off + j) * in_dim;
        float s = 0.0f;
        if (vec) {
            const float4* r4 = reinterpret_cast<const float4*>(row);
            const float4* x4 = reinterpret_cast<const float4*>(xt);
            for (int i = lane; i < in_dim / 4; i += 32) {
                const float4 rv = r4[i], xv = x4[i];
                s += rv.x * xv.x + rv.y * xv.y + rv.z * xv.z + rv.w * xv.w;
            }
        } else {
            for (int i = lane; i < in_dim; i += 32) s += row[i] * xt[i];
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) ut[j] = ws * s;
    }
}

// grid (T, K), block 256.
extern "C" __global__ void lora_shrink(const float* __restrict__ x, const float* __restrict__ a,
                                       const unsigned* __restrict__ seg_of_token,
                                       const unsigned* __restrict__ mix_slots,
                                       const float* __restrict__ mix_weights, int mix_k,
                                       const unsigned* __restrict__ slot_offset,
                                       const unsigned* __restrict__ slot_rank,
                                       const float* __restrict__ slot_scale, int n_slots,
                                       int in_dim, int max_rank, float* __restrict__ u) {
    shrink_entry(x, a, seg_of_token, mix_slots, mix_weights, mix_k, slot_offset, slot_rank,
                 slot_scale, n_slots, in_dim, max_rank, blockIdx.x, blockIdx.y, u);
}

// The stacks of up to LORA_JOBS modules that read the same x (q/k/v, gate/up), by device
// pointers; the shrinks of all of them run as one launch (`lora_shrink_jobs`) and their
// expands inside the decode matvec (`matvec_bf16_lora_r*` in matmul.cu).
#define LORA_JOBS 3
struct LoraJobs {
    unsigned long long a[LORA_JOBS];            // const float*: stacked A [total_rank, in_dim]
    unsigned long long bt[LORA_JOBS];           // const float*: stacked B^T [total_rank, n]
    unsigned long long slot_offset[LORA_JOBS];  // const unsigned*
    unsigned long long slot_rank[LORA_JOBS];    // const unsigned*
    unsigned long long slot_scale[LORA_JOBS];   // const float*
    unsigned long long u[LORA_JOBS];            // float*: [T, mix_k, max_rank]
    int n_slots[LORA_JOBS];
    int max_rank[LORA_JOBS];
    unsigned long long seg_of_token, mix_slots, mix_weights;  // the step's tables
    int mix_k;
    int n_jobs;  // jobs with a stack; a job without one has a == 0
};

// grid (T, K, LORA_JOBS): block z is job z's shrink (nothing when it has no stack).
extern "C" __global__ void lora_shrink_jobs(const float* __restrict__ x, int in_dim, LoraJobs j) {
    const int z = blockIdx.z;
    if (z >= j.n_jobs || j.a[z] == 0) return;
    shrink_entry(x, reinterpret_cast<const float*>(j.a[z]),
                 reinterpret_cast<const unsigned*>(j.seg_of_token),
                 reinterpret_cast<const unsigned*>(j.mix_slots),
                 reinterpret_cast<const float*>(j.mix_weights), j.mix_k,
                 reinterpret_cast<const unsigned*>(j.slot_offset[z]),
                 reinterpret_cast<const unsigned*>(j.slot_rank[z]),
                 reinterpret_cast<const float*>(j.slot_scale[z]), j.n_slots[z], in_dim,
                 j.max_rank[z], blockIdx.x, blockIdx.y, reinterpret_cast<float*>(j.u[z]));
}

// y[t, :] += sum_k sum_{j < rank_k} u[t, k, j] * B^T[off_k + j, :].
// grid (ceil(out_dim / blockDim), T); dynamic shared memory: mix_k * (max_rank + 2) words.
extern "C" __global__ void lora_expand(const float* __restrict__ u, const float* __restrict__ bt,
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
        const float* b = bt + (size_t)s_off[k] * out_dim + o;
        const float* uk = su + k * max_rank;
        for (int j = 0; j < rank; j++) acc += uk[j] * b[(size_t)j * out_dim];
    }
    y[(size_t)t * out_dim + o] += acc;
}

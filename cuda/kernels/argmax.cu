// argmax: each logit row's greedy pick, the sampler's greedy rule (engine/src/cpu/argmax.rs):
// out[r] = the index of row r's first maximum as a float (exact below 2^24), or -1 when the
// row holds a NaN or no usable logit (all -inf). A greedy decode step then downloads a value a
// row instead of the row (513 KB for Llama 3's vocabulary). One block per row. The logits
// are compared as order-preserving u32 keys of their bits: +inf counts as FLT_MAX, -0.0 as
// +0.0, and a NaN's key beats every other, refusing the row; ties go to the lower index.

#define ARGMAX_NAN_KEY 0xffffffffu
#define ARGMAX_NEG_INF_KEY 0x007fffffu  // the key of -inf

__device__ __forceinline__ unsigned argmax_key(float x) {
    const unsigned b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return ARGMAX_NAN_KEY;
    if (b == 0x7f800000u) return 0xff7fffffu;  // +inf as FLT_MAX
    if (b == 0x80000000u) return 0x80000000u;  // -0.0 as +0.0
    return (b >> 31) ? ~b : (b | 0x80000000u);
}

// Keeps (k, i) when it beats (best, at): a larger key, or the same key at a lower index.
__device__ __forceinline__ void argmax_take(unsigned& best, unsigned& at, unsigned k, unsigned i) {
    if (k > best || (k == best && i < at)) {
        best = k;
        at = i;
    }
}

__device__ __forceinline__ void argmax_warp(unsigned& best, unsigned& at) {
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned k = __shfl_down_sync(0xffffffffu, best, o);
        const unsigned i = __shfl_down_sync(0xffffffffu, at, o);
        argmax_take(best, at, k, i);
    }
}

// The block's best (key, index) of every thread's, returned to every thread. Block size: a
// multiple of 32 up to 1,024. Once per kernel: no barrier follows the final read (256 bytes
// of static shared memory, which cuda/src/sample.rs counts).
__device__ __forceinline__ void argmax_block(unsigned& best, unsigned& at) {
    __shared__ unsigned s_key[32], s_at[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    argmax_warp(best, at);
    if (lane == 0) {
        s_key[warp] = best;
        s_at[warp] = at;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        best = lane < warps ? s_key[lane] : 0u;
        at = lane < warps ? s_at[lane] : 0xffffffffu;
        argmax_warp(best, at);
        if (lane == 0) {
            s_key[0] = best;
            s_at[0] = at;
        }
    }
    __syncthreads();
    best = s_key[0];
    at = s_at[0];
}

// Grid: one block per row; any block size that is a multiple of 32 up to 1,024 (the bound keeps
// the registers a 1,024-thread launch may use).
extern "C" __global__ void __launch_bounds__(1024) argmax(const float* __restrict__ logits, int vocab,
                                  float* __restrict__ out) {
    const float* row = logits + (size_t)blockIdx.x * vocab;
    unsigned best = 0u, at = 0xffffffffu;
    if ((vocab & 3) == 0) {
        // 16-byte loads (cudaMalloc'd rows of a multiple of 4 floats are 16-byte aligned),
        // several in flight per thread: one block streams the row from L2.
        const float4* row4 = reinterpret_cast<const float4*>(row);
        const int n4 = vocab >> 2;
#pragma unroll 4
        for (int j = threadIdx.x; j < n4; j += blockDim.x) {
            const float4 v = row4[j];
            const unsigned i = 4u * (unsigned)j;
            argmax_take(best, at, argmax_key(v.x), i);
            argmax_take(best, at, argmax_key(v.y), i + 1);
            argmax_take(best, at, argmax_key(v.z), i + 2);
            argmax_take(best, at, argmax_key(v.w), i + 3);
        }
    } else {
        for (int i = threadIdx.x; i < vocab; i += blockDim.x)
            argmax_take(best, at, argmax_key(row[i]), (unsigned)i);
    }
    argmax_block(best, at);
    if (threadIdx.x == 0)
        out[blockIdx.x] = (best == ARGMAX_NAN_KEY || best <= ARGMAX_NEG_INF_KEY) ? -1.0f : (float)at;
}

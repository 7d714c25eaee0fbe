// sample: each logit row's token drawn at its temperature from a uniform draw the host made,
// bit for bit the host sampler's plain draw (engine/src/cpu/sample.rs, sampler/probs.rs): the
// probabilities exp_neg((l - max) / T) (Cephes' expf with IEEE-rounded steps, no fused
// multiply-add), their f64 sums per block of 256 tokens in 8 strided lanes added in a fixed
// order, the running sum walked in token order to u times the total. A sampled decode step
// then downloads a value a row instead of the row. Temperature 0 (or NaN, or below) is the
// greedy pick (argmax.cu's rule). One block per row; argmax.cu precedes it in the module.

#define SAMPLE_BLOCK 256
#define SAMPLE_LANES 8
#define SAMPLE_MIN_EXPONENT (-86.0f)

// e^x for x in [-86, 0] (below: e^-86), as sampler/probs.rs's exp_neg computes it.
__device__ __forceinline__ float sample_exp_neg(float x) {
    const float LOG2E = 1.44269504088896341f;  // log2(e), rounded to f32 as Rust's LOG2_E
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    const float MAGIC = 12582912.0f;
    x = x >= SAMPLE_MIN_EXPONENT ? x : SAMPLE_MIN_EXPONENT;  // NaN too
    const float t = __fadd_rn(__fmul_rn(x, LOG2E), MAGIC);
    const float n = __fsub_rn(t, MAGIC);
    const float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, LN2_HI)), __fmul_rn(n, LN2_LO));
    float p = 1.9875691e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.333452e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665796e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 0.5f);
    const float e = __fadd_rn(__fadd_rn(__fmul_rn(p, __fmul_rn(r, r)), r), 1.0f);
    const int k = __float_as_int(t) - __float_as_int(MAGIC);
    return __fmul_rn(e, __int_as_float((k + 127) << 23));
}

// The unnormalised probability of logit l (sanitised as the host does: +inf as FLT_MAX; the
// row holds no NaN), 0 below the floor or at -inf.
__device__ __forceinline__ float sample_q(float l, float max, float temp, float floor) {
    l = fminf(l, __int_as_float(0x7f7fffff));                // FLT_MAX
    const bool usable = l >= floor && l > __int_as_float(0xff800000);  // -inf
    return usable ? sample_exp_neg(__fdiv_rn(__fsub_rn(l, max), temp)) : 0.0f;
}

// The host's sum of 8 lanes: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
__device__ __forceinline__ double sample_sum_lanes(const double* l) {
    return __dadd_rn(__dadd_rn(__dadd_rn(l[0], l[4]), __dadd_rn(l[2], l[6])),
                     __dadd_rn(__dadd_rn(l[1], l[5]), __dadd_rn(l[3], l[7])));
}

// Grid: one block per row, any block size that is a multiple of 32 up to 1,024. Dynamic
// shared memory: 8 doubles per block of 256 tokens (the host checks the vocabulary fits).
// args: per row, the temperature and the draw's low and high 32 bits (cpu/sample.rs).
extern "C" __global__ void __launch_bounds__(1024) sample(const float* __restrict__ logits, int vocab,
                                  const float* __restrict__ args, float* __restrict__ out) {
    extern __shared__ double s_lanes[];
    const float* row = logits + (size_t)blockIdx.x * vocab;
    const float* a = args + 3 * (size_t)blockIdx.x;
    const float temp = a[0];
    const unsigned long long bits = (unsigned long long)__float_as_uint(a[1]) |
                                    ((unsigned long long)__float_as_uint(a[2]) << 32);
    const double u = __longlong_as_double((long long)bits);

    // The row's best key and its first index (argmax.cu's rule): the greedy pick, the max, and
    // whether a NaN or nothing usable refuses the row.
    unsigned best = 0u, at = 0xffffffffu;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        argmax_take(best, at, argmax_key(row[i]), (unsigned)i);
    argmax_block(best, at);
    if (best == ARGMAX_NAN_KEY || best <= ARGMAX_NEG_INF_KEY) {
        if (threadIdx.x == 0) out[blockIdx.x] = -1.0f;
        return;
    }
    if (!(temp > 0.0f)) {
        if (threadIdx.x == 0) out[blockIdx.x] = (float)at;
        return;
    }
    // The key back to the value it orders (+inf was keyed as FLT_MAX).
    const float top = __uint_as_float((best >> 31) ? (best & 0x7fffffffu) : ~best);
    const float floor = __fadd_rn(top, __fmul_rn(SAMPLE_MIN_EXPONENT, temp));

    // Each (block, lane) sum: lane j adds tokens j, j + 8, ... of the block's whole groups of
    // 8, in order; lane 0 then adds the block's last partial group, in order.
    const int blocks = (vocab + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    for (int t = threadIdx.x; t < blocks * SAMPLE_LANES; t += blockDim.x) {
        const int b = t / SAMPLE_LANES, j = t % SAMPLE_LANES;
        const int start = b * SAMPLE_BLOCK;
        const int len = min(SAMPLE_BLOCK, vocab - start);
        const int whole = len & ~(SAMPLE_LANES - 1);
        double s = 0.0;
        for (int c = j; c < whole; c += SAMPLE_LANES)
            s = __dadd_rn(s, (double)sample_q(row[start + c], top, temp, floor));
        if (j == 0)
            for (int c = whole; c < len; ++c)
                s = __dadd_rn(s, (double)sample_q(row[start + c], top, temp, floor));
        s_lanes[t] = s;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    // One thread from here: the total in block order, then the walk (sampler/probs.rs walk).
    double total = 0.0;
    for (int b = 0; b < blocks; ++b) {
        const double s = sample_sum_lanes(s_lanes + b * SAMPLE_LANES);
        s_lanes[b * SAMPLE_LANES] = s;
        total = __dadd_rn(total, s);
    }
    const double r = __dmul_rn(u, total);
    double acc = 0.0;
    int pick = -1;
    for (int b = 0; b < blocks && pick < 0; ++b) {
        const double s = s_lanes[b * SAMPLE_LANES];
        if (r < __dadd_rn(acc, s)) {
            const int start = b * SAMPLE_BLOCK, end = min(start + SAMPLE_BLOCK, vocab);
            for (int i = start; i < end; ++i) {
                const float q = sample_q(row[i], top, temp, floor);
                if (q > 0.0f) {
                    acc = __dadd_rn(acc, (double)q);
                    pick = i;
                    if (r < acc) break;
                }
            }
            break;
        }
        acc = __dadd_rn(acc, s);
    }
    if (pick < 0)  // rounding left the sum short of r: the last token with mass (else 0)
        for (int i = vocab - 1; i >= 0 && pick < 0; --i)
            if (sample_q(row[i], top, temp, floor) > 0.0f) pick = i;
    out[blockIdx.x] = (float)max(pick, 0);
}

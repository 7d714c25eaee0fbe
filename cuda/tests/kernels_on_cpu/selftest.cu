// Kernels with known faults, for the emulator's own tests (kernels_on_cpu.rs): each must be
// caught, so that a kernel passing on the emulator means something.

// Block sum through shared memory, with (good = 1) or without (good = 0) the barrier between
// the writes and the reads: without it, thread 0 reads the other slots before they are
// written (poison, NaN).
extern "C" __global__ void block_sum(const float* __restrict__ x, int good, float* __restrict__ out) {
    __shared__ float s[256];
    s[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    if (good) __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (unsigned i = 0; i < blockDim.x; i++) t += s[i];
        out[blockIdx.x] = t;
    }
}

// A barrier only half of the block reaches.
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        __syncwarp();
    }
}

// Warp sum by shuffles, and a ballot.
extern "C" __global__ void warp_ops(const float* __restrict__ x, float* __restrict__ sum,
                                    unsigned* __restrict__ ballot) {
    float v = x[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const unsigned b = __ballot_sync(0xffffffffu, x[threadIdx.x] > 0.0f);
    if ((threadIdx.x & 31) == 0) sum[threadIdx.x >> 5] = v, ballot[threadIdx.x >> 5] = b;
}

// Block b waits (spinning) until block b + 1 has written its flag: it needs the blocks that
// come after it to be resident; in reverse order it never waits.
extern "C" __global__ void waits_on_next(volatile unsigned* flags) {
    const unsigned b = blockIdx.x;
    if (threadIdx.x == 0) {
        if (b + 1 < gridDim.x)
            while (flags[b + 1] == 0) __nanosleep(32);
        flags[b] = 1;
    }
}

// A programmatic dependent pair: `pdl_writer` releases its dependents at its start, then
// (after a barrier, as real kernels have) writes x; `pdl_reader` copies x, waiting for the
// writer first only if `wait`.
extern "C" __global__ void pdl_writer(float* x) {
    pdl_launch_dependents();
    __syncthreads();
    x[blockIdx.x * blockDim.x + threadIdx.x] = (float)(blockIdx.x * blockDim.x + threadIdx.x);
}
extern "C" __global__ void pdl_reader(const float* x, int wait, float* out) {
    if (wait) pdl_wait();
    out[blockIdx.x * blockDim.x + threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
}

// Writes one float past the `n` floats of dynamic shared memory the launch gives.
extern "C" __global__ void shared_overrun(int n) {
    extern __shared__ float s[];
    if (threadIdx.x == 0) s[n] = 1.0f;
}

// Half the warp in a shuffle, the other half in __syncwarp: different collectives.
extern "C" __global__ void mixed_collectives(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16)
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    else
        __syncwarp();
    out[threadIdx.x] = v;
}

// A shuffle with a partial mask (not emulated: a trap).
extern "C" __global__ void partial_mask(float* out) {
    out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, (float)threadIdx.x, 1);
}

// Lanes 16 to 31 exit; the others read them by a shuffle.
extern "C" __global__ void shuffle_from_exited(float* out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 16);
}

// Writes one float past a static __shared__ array.
extern "C" __global__ void static_overrun(float* out) {
    __shared__ float s[4];
    if (threadIdx.x == 0) s[4] = 1.0f;
    out[0] = 0.0f;
}

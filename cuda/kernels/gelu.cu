// gelu: out[i] = gelu(x[i]), the ungated feed-forward activation (StarCoder2's, Phi-2's), GELU's
// tanh approximation as gelu_mul.cu computes it (x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))).
extern "C" __global__ void gelu(const float* __restrict__ x, int n, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = x[i];
        const float z = 1.5957692f * (g + 0.044715f * g * g * g);
        // 0 where expf(-z) overflows, as gelu_mul.cu.
        out[i] = z < -80.0f ? 0.0f : g / (1.0f + expf(-z));
    }
}

// gelu_erf: out[i] = x / 2 * erfc(-x / sqrt(2)), the exact GELU (GPT-NeoX's `gelu`), by CUDA's
// erfcf (its tail keeps the relative accuracy where x is far below zero).
extern "C" __global__ void gelu_erf(const float* __restrict__ x, int n, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = x[i];
        out[i] = 0.5f * v * erfcf(-v * 0.70710678118654752f);
    }
}

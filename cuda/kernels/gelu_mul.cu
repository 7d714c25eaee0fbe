// gelu_mul: the GeGLU activation (Gemma's), out[i] = gelu(gate[i]) * up[i], GELU's tanh
// approximation as the equal g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)).
extern "C" __global__ void gelu_mul(const float* __restrict__ gate, const float* __restrict__ up,
                                    int n, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = gate[i];
        const float z = 1.5957692f * (g + 0.044715f * g * g * g);
        // 0 where expf(-z) overflows, as the WGSL kernel (whose exp is undefined there).
        out[i] = z < -80.0f ? 0.0f : g / (1.0f + expf(-z)) * up[i];
    }
}

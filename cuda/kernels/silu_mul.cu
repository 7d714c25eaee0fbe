// silu_mul: the SwiGLU activation, out[i] = silu(gate[i]) * up[i].
extern "C" __global__ void silu_mul(const float* __restrict__ gate, const float* __restrict__ up,
                                    int n, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

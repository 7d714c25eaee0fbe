// relu_sq: out[i] = max(x, 0)^2, the squared ReLU (Arcee's and Nemotron's `relu2`), NaN kept
// (`v <= 0` is false for NaN, which then squares to NaN); the product is rounded once, as the
// CPU's. __fmul_rn keeps NVRTC from contracting it into a neighbour.
extern "C" __global__ void relu_sq(const float* __restrict__ x, int n, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = x[i];
        out[i] = v <= 0.0f ? 0.0f : __fmul_rn(v, v);
    }
}

// scale: x[i] *= s (Gemma's embedding scale).
extern "C" __global__ void scale(float* __restrict__ x, float s, int n) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] *= s;
}

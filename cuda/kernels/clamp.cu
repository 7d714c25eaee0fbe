// clamp: x[i] = min(max(x[i], -limit), limit), limit > 0 (OLMo's clip_qkv). By comparisons,
// not fminf/fmaxf (which return the other operand for a NaN): a NaN stays NaN, as on the CPU.
extern "C" __global__ void clamp(float* __restrict__ x, float limit, int n) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = x[i];
        if (v < -limit) x[i] = -limit;
        else if (v > limit) x[i] = limit;
    }
}

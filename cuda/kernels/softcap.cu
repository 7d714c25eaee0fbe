// softcap: x[i] = cap * tanh(x[i] / cap), cap > 0 (Gemma 2's final logit soft cap).
extern "C" __global__ void softcap(float* __restrict__ x, float cap, int n) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

// xielu: out[i] = xIELU(x[i]) with one layer's constants (Apertus's ungated activation; Huang et
// al. 2024, arXiv 2411.13010): alpha_p * x * x + beta * x for x > 0, else
// (expm1(min(x, eps)) - x) * alpha_n + beta * x, alpha_p and alpha_n through their softplus
// already (the host's `Xielu`). The _rn intrinsics keep NVRTC from contracting into FMAs, so
// each step rounds as the CPU's; expm1f keeps min(x, eps)'s digits near 0 (eps is -1e-6).
extern "C" __global__ void xielu(const float* __restrict__ x, int n, float alpha_p, float alpha_n,
                                 float beta, float eps, float* __restrict__ out) {
    PDL_TRIGGER();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = x[i];
        const float lin = __fmul_rn(beta, v);
        if (v > 0.0f) {
            out[i] = __fadd_rn(__fmul_rn(__fmul_rn(alpha_p, v), v), lin);
        } else {
            // fminf would drop a NaN v for eps; `- v` below carries it through, as the CPU's.
            const float m = fminf(v, eps);
            out[i] = __fadd_rn(__fmul_rn(__fsub_rn(expm1f(m), v), alpha_n), lin);
        }
    }
}

// matmul: cuBLAS computes x @ W^T; this adds the optional bias, out[r, c] += bias[c].
extern "C" __global__ void bias_add(float* __restrict__ out, const float* __restrict__ bias,
                                    int rows, int n) {
    const size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % n];
}

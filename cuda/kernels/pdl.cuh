// Programmatic dependent launch (sm_90, CUDA's PDL), prepended to every kernel file
// (nvrtc.rs). A launch made with the programmatic-serialization attribute
// (`CudaBackend::launch_dependent`) may start once every block of the launch before it has run
// `launch_dependents`; it must `wait` (that launch complete, its writes visible) before it
// reads what that launch wrote. Below sm_90 both compile to nothing, and without the
// attribute `wait` returns at once and `launch_dependents` does nothing.
// DLP_CPU_EMU: the CPU emulation of the kernels (cuda/tests/kernels_on_cpu), never NVRTC.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(DLP_CPU_EMU)
    emu::pdl_launch_dependents();
#elif __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(DLP_CPU_EMU)
    emu::pdl_wait();
#elif __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// At the start of each kernel that can come just before a dependent decode matvec (the norms,
// attention, silu_mul or `fused-silu`'s gate/up matvec; add, before the op-parity tests'
// matvecs): lets the matvec's blocks
// start and issue their first weight loads while this kernel finishes. Compiled in only with
// -DDLP_PDL (`--cuda-experimental dependent-launch`), so the kernels' PTX is unchanged
// without it.
#ifdef DLP_PDL
#define PDL_TRIGGER() pdl_launch_dependents()
#else
#define PDL_TRIGGER()
#endif

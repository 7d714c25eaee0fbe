// CUDA kernels on the CPU, for tests: the kernel files compiled by a host C++ compiler with
// this header in front (cuda/tests/kernels_on_cpu/emu.rs prepares the source), each CUDA
// thread a coroutine of one OS thread (emu_runtime.h). A stream of launches runs its blocks a
// few at a time (`resident`), threads of a resident block switching only at __syncthreads,
// warp collectives (__shfl_*_sync, __ballot_sync, __syncwarp), __nanosleep and pdl_wait, so:
// - results depend only on the kernel's synchronisation, never on timing: a missing barrier
//   reads another thread's stale or poisoned data (shared memory starts as 0xff bytes, a NaN
//   in every float) rather than racing;
// - blocks that spin on other blocks (ticket queues, "last block" counters) see those blocks
//   progress as on a GPU, within `resident` blocks at once;
// - a programmatic dependent launch (PDL, pdl.cuh's DLP_CPU_EMU branch) starts once every
//   block of the launch before it has run pdl_launch_dependents or exited, and its pdl_wait
//   returns once that launch has completed: a kernel that reads its input before waiting
//   reads it unwritten;
// - threads and blocks can run in reverse order, to catch code that relies on one order.
// Not emulated: tensor-core asm (sgmv.cu is left out; __CUDA_ARCH__ is 700), memory-model
// effects of real concurrency (a missing __threadfence goes unseen), FMA contraction (the
// host compiler rounds a*b+c twice where nvcc may fuse it: compare across kernels only where
// both are emulated, or with tolerances).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <csignal>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

// ---- CUDA's vector types and bit casts ----
struct uint3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(8) int2 { int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
template <class To, class From> inline To emu_bits(From f) {
    static_assert(sizeof(To) == sizeof(From), "bit cast of unequal sizes");
    To t;
    std::memcpy(&t, &f, sizeof t);
    return t;
}
inline unsigned __float_as_uint(float f) { return emu_bits<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return emu_bits<float>(u); }
inline int __float_as_int(float f) { return emu_bits<int>(f); }
inline float __int_as_float(int i) { return emu_bits<float>(i); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline float __expf(float x) { return expf(x); }
// IEEE round-to-nearest arithmetic, as the GPU's `_rn` intrinsics (built with
// -ffp-contract=off, so nothing fuses them).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __longlong_as_double(long long v) { return emu_bits<double>(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldg(const T* p) { return *p; }
// Threads of one OS thread: a read-modify-write is atomic.
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
inline void __threadfence() { asm volatile("" ::: "memory"); }

#include "emu_runtime.h"

inline void __syncthreads() { emu::yield(emu::AT_BARRIER); }
inline void __nanosleep(unsigned) { emu::yield(emu::SLEEPING); }
inline void __trap() { emu::trap("__trap()"); }
namespace emu {
// The warp collectives, tagged with their call site (EMU_SITE: a static per expansion and
// template instance), so that lanes meeting at different ones are reported.
// __syncwarp: lanes may meet at different calls of it (sm_70 on), so it has one tag.
inline const void* syncwarp_tag() { static char t; return &t; }
inline void syncwarp(unsigned mask = 0xffffffffu) {
    check_mask(mask);
    cur()->tag = syncwarp_tag();
    yield(AT_WARP);
}
template <class T> T shfl_xor(const void* tag, unsigned mask, T v, int m, int w = 32) {
    return exchange(mask, v, [=](int l) { return ((l ^ m) & (w - 1)) | (l & ~(w - 1)); }, tag);
}
template <class T> T shfl(const void* tag, unsigned mask, T v, int s, int w = 32) {
    return exchange(mask, v, [=](int l) { return (l & ~(w - 1)) + (s & (w - 1)); }, tag);
}
template <class T> T shfl_down(const void* tag, unsigned mask, T v, unsigned d, int w = 32) {
    return exchange(mask, v, [=](int l) { return (l % w) + (int)d < w ? l + (int)d : l; }, tag);
}
template <class T> T shfl_up(const void* tag, unsigned mask, T v, unsigned d, int w = 32) {
    return exchange(mask, v, [=](int l) { return (l % w) >= (int)d ? l - (int)d : l; }, tag);
}
}  // namespace emu
// A writable static: read-only ones may be merged by the linker, which would merge tags.
#define EMU_SITE ([] { static char site = 0; return static_cast<const void*>(&site); }())
#define __syncwarp(...) emu::syncwarp(__VA_ARGS__)
#define __shfl_xor_sync(...) emu::shfl_xor(EMU_SITE, __VA_ARGS__)
#define __shfl_sync(...) emu::shfl(EMU_SITE, __VA_ARGS__)
#define __shfl_down_sync(...) emu::shfl_down(EMU_SITE, __VA_ARGS__)
#define __shfl_up_sync(...) emu::shfl_up(EMU_SITE, __VA_ARGS__)
#define __ballot_sync(mask, p) emu::ballot(mask, p, EMU_SITE)

#define threadIdx (emu::cur()->tid)
#define blockIdx (emu::cur()->blk->idx)
#define blockDim (emu::cur()->blk->l->block)
#define gridDim (emu::cur()->blk->l->grid)
#define warpSize 32
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// emu.rs rewrites every __shared__ declaration; one it missed fails to compile.
#define __shared__ EMU_SHARED_DECLARATION_NOT_REWRITTEN

// CUDA kernels on the CPU, for tests: the kernel files compiled by a host C++ compiler with
// this header in front (cuda/tests/kernels_on_cpu/emu.rs prepares the source), each CUDA
// thread a coroutine (ucontext) of one OS thread. A launch runs its blocks a few at a time
// (`resident`), threads of a resident block switching only at __syncthreads, warp collectives
// (__shfl_*_sync, __ballot_sync, __syncwarp) and __nanosleep, so:
// - results depend only on the kernel's synchronisation, never on timing: a missing barrier
//   reads another thread's stale or poisoned data (shared memory starts as 0xff bytes, a NaN
//   in every float) rather than racing;
// - blocks that spin on other blocks (ticket queues, "last block" counters) see those blocks
//   progress as on a GPU, within `resident` blocks at once;
// - threads and blocks can run in reverse order, to catch code that relies on one order.
// Not emulated: tensor-core asm (sgmv.cu is left out), programmatic dependent launch
// (__CUDA_ARCH__ is 700, so pdl_wait/launch_dependents compile to nothing; launches run one
// after another), memory-model effects of real concurrency, FMA contraction (the host
// compiler may round a*b+c twice where nvcc fuses it: compare with tolerances).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
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

// ---- the scheduler ----
// A thread switch saves the callee-saved registers on the running stack and swaps stack
// pointers: glibc's swapcontext also saves the signal mask, a system call per switch, which
// made the tests several times slower. x86-64 (System V) only; other hosts use ucontext.
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch(void** save_sp, void* to_sp);
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#else
#define EMU_FAST_SWITCH 0
#endif
namespace emu {
enum State { RUN, AT_BARRIER, AT_WARP, SLEEPING, DONE };
struct Block;
struct Thread {
    ucontext_t ctx;  // without EMU_FAST_SWITCH
    void* sp;        // with it: the saved stack pointer
    uint3 tid;
    int lane, warp;
    State state;
    unsigned long long slot;  // a warp collective's value
    Block* blk;
    void* stack;
};
struct Block {
    uint3 idx;
    std::vector<Thread> threads;
    std::unordered_map<const void*, void*> shared;  // static __shared__ variables, by key
    void* dynamic;                                  // extern __shared__
};
struct Launch {
    uint3 grid, block;
    unsigned shared_bytes;
    void (*call)(void**);
    void** args;
    std::string error;
};
// Per OS thread: the test harness runs tests on several threads at once.
inline Thread*& cur() { static thread_local Thread* t; return t; }
inline Launch*& launch() { static thread_local Launch* l; return l; }
inline ucontext_t& scheduler() { static thread_local ucontext_t c; return c; }
inline void*& scheduler_sp() { static thread_local void* sp; return sp; }
// Runs thread t until it yields (from the scheduler).
inline void resume(Thread* t) {
    cur() = t;
#if EMU_FAST_SWITCH
    emu_switch(&scheduler_sp(), t->sp);
#else
    swapcontext(&scheduler(), &t->ctx);
#endif
}
// Back to the scheduler (from thread t).
inline void suspend(Thread* t) {
#if EMU_FAST_SWITCH
    emu_switch(&t->sp, scheduler_sp());
#else
    swapcontext(&t->ctx, &scheduler());
#endif
}
constexpr size_t STACK_BYTES = 256 * 1024;

inline void* poisoned(size_t bytes) {
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    std::memset(p, 0xff, bytes);
    return p;
}
inline void yield(State s) {
    Thread* t = cur();
    t->state = s;
    suspend(t);
}
inline void trap(const char* why) {
    Thread* t = cur();
    if (launch()->error.empty()) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s in block (%u,%u,%u) thread (%u,%u,%u)", why,
                      t->blk->idx.x, t->blk->idx.y, t->blk->idx.z, t->tid.x, t->tid.y, t->tid.z);
        launch()->error = buf;
    }
    t->state = DONE;
    suspend(t);
    std::abort();  // never resumed
}
inline void thread_main() {
    launch()->call(launch()->args);
    cur()->state = DONE;
#if EMU_FAST_SWITCH
    suspend(cur());  // never resumed: there is no frame to return to
    std::abort();
#endif
    // (ucontext) returning resumes uc_link, the scheduler.
}
template <class T> T& shared_var(const void* key) {
    Block* b = cur()->blk;
    auto it = b->shared.find(key);
    if (it == b->shared.end()) it = b->shared.emplace(key, poisoned(sizeof(T))).first;
    return *static_cast<T*>(it->second);
}
inline void* dynamic_shared() { return cur()->blk->dynamic; }

// A warp collective: every live lane of the warp posts `v`, then each reads what `src(lane)`
// posted. Two warp barriers: the second keeps a fast lane from overwriting a slot too early.
template <class T, class Src> T exchange(T v, Src src) {
    static_assert(sizeof(T) <= 8, "warp exchange of a value over 8 bytes");
    Thread* t = cur();
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    t->slot = bits;
    yield(AT_WARP);
    Block* b = t->blk;
    const int s = src(t->lane);
    const size_t i = (size_t)t->warp * 32 + (size_t)s;
    T out = v;
    if (s >= 0 && s < 32 && i < b->threads.size()) std::memcpy(&out, &b->threads[i].slot, sizeof out);
    yield(AT_WARP);
    return out;
}
inline unsigned ballot(bool pred) {
    Thread* t = cur();
    t->slot = pred;
    yield(AT_WARP);
    unsigned m = 0;
    Block* b = t->blk;
    for (int l = 0; l < 32; l++) {
        const size_t i = (size_t)t->warp * 32 + l;
        if (i < b->threads.size() && b->threads[i].state != DONE && b->threads[i].slot) m |= 1u << l;
    }
    yield(AT_WARP);
    return m;
}
}  // namespace emu

namespace emu {
// One kernel entry: its name, a call unpacking `void** args` into its parameters, and the
// parameters' sizes (0-terminated), which the launch checks against the arguments given.
struct Entry {
    const char* name;
    void (*call)(void**);
    const unsigned* sizes;
};
template <class... A, size_t... I>
void call_unpacked(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}
template <class... A> void call_with(void (*f)(A...), void** p) {
    call_unpacked(f, p, std::index_sequence_for<A...>{});
}
template <class... A> const unsigned* param_sizes(void (*)(A...)) {
    static const unsigned s[] = {(unsigned)sizeof(A)..., 0u};
    return s;
}

struct Options {
    unsigned resident;  // blocks run at once (at least 1)
    unsigned reverse;   // 1: blocks and threads in reverse order
    unsigned long long max_sweeps;  // sweeps over the resident threads before "hung"
};

inline void* new_stack() {
    void* s = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return s == MAP_FAILED ? nullptr : s;
}

inline std::string run(const Entry& e, const uint3 grid, const uint3 block, unsigned shared_bytes,
                       void** args, const Options& o) {
    Launch l{grid, block, shared_bytes, e.call, args, {}};
    launch() = &l;
    const size_t n_blocks = (size_t)grid.x * grid.y * grid.z;
    const size_t n_threads = (size_t)block.x * block.y * block.z;
    if (n_blocks == 0 || n_threads == 0 || n_threads > 1024 || block.x > 1024 || block.z > 64)
        return "invalid launch: grid or block empty, or a block over 1024 threads";
    if (grid.y > 65535 || grid.z > 65535) return "invalid launch: grid y or z over 65535";
    // Thread stacks, reused by the next block and the next launch (mapping them anew each
    // launch cost more system time than the kernels' own work).
    static thread_local std::vector<void*> stacks;
    std::vector<Block*> resident;
    size_t next = 0;
    unsigned long long sweeps = 0;
    auto admit = [&](size_t linear) {
        const size_t id = o.reverse ? n_blocks - 1 - linear : linear;
        Block* b = new Block;
        b->idx = {(unsigned)(id % grid.x), (unsigned)(id / grid.x % grid.y),
                  (unsigned)(id / ((size_t)grid.x * grid.y))};
        b->dynamic = poisoned(shared_bytes);
        b->threads.resize(n_threads);
        for (size_t i = 0; i < n_threads; i++) {
            Thread& t = b->threads[i];
            t.tid = {(unsigned)(i % block.x), (unsigned)(i / block.x % block.y),
                     (unsigned)(i / ((size_t)block.x * block.y))};
            t.lane = (int)(i % 32);
            t.warp = (int)(i / 32);
            t.state = RUN;
            t.blk = b;
            t.slot = 0;
            if (stacks.empty()) stacks.push_back(new_stack());
            t.stack = stacks.back();
            stacks.pop_back();
            if (!t.stack) continue;  // reported when the thread would run
#if EMU_FAST_SWITCH
            // emu_switch's frame: six registers, then the return address (thread_main),
            // placed so that thread_main starts with the stack aligned as after a call.
            void** top = reinterpret_cast<void**>(static_cast<char*>(t.stack) + STACK_BYTES);
            top[-2] = reinterpret_cast<void*>(&thread_main);
            for (int r = 3; r <= 8; r++) top[-r] = nullptr;
            t.sp = top - 8;
#else
            getcontext(&t.ctx);
            t.ctx.uc_stack.ss_sp = t.stack;
            t.ctx.uc_stack.ss_size = STACK_BYTES;
            t.ctx.uc_link = &scheduler();
            makecontext(&t.ctx, thread_main, 0);
#endif
        }
        resident.push_back(b);
    };
    auto retire = [&](Block* b) {
        for (Thread& t : b->threads) stacks.push_back(t.stack);
        for (auto& kv : b->shared) std::free(kv.second);
        std::free(b->dynamic);
        delete b;
    };
    while (true) {
        while (resident.size() < std::max(o.resident, 1u) && next < n_blocks) admit(next++);
        if (resident.empty()) break;
        bool ran = false;
        for (Block* b : resident) {
            const size_t n = b->threads.size();
            for (size_t j = 0; j < n; j++) {
                Thread& t = b->threads[o.reverse ? n - 1 - j : j];
                if (t.state != RUN) continue;
                if (t.stack == nullptr) return "out of memory for thread stacks";
                resume(&t);
                ran = true;
            }
        }
        if (!l.error.empty()) break;
        bool released = false, sleeping = false;
        for (size_t r = 0; r < resident.size();) {
            Block* b = resident[r];
            size_t done = 0, at_bar = 0;
            for (Thread& t : b->threads) {
                done += t.state == DONE;
                at_bar += t.state == AT_BARRIER;
                if (t.state == SLEEPING) t.state = RUN, sleeping = true;
            }
            if (done == b->threads.size()) {
                retire(b);
                resident.erase(resident.begin() + r);
                released = true;
                continue;
            }
            // __syncthreads: every thread there or exited.
            if (at_bar > 0 && at_bar + done == b->threads.size()) {
                for (Thread& t : b->threads)
                    if (t.state == AT_BARRIER) t.state = RUN;
                released = true;
            }
            // Warp collectives: every live lane of the warp there.
            for (size_t w = 0; w * 32 < b->threads.size(); w++) {
                const size_t end = std::min(b->threads.size(), w * 32 + 32);
                size_t live = 0, at_warp = 0;
                for (size_t i = w * 32; i < end; i++) {
                    live += b->threads[i].state != DONE;
                    at_warp += b->threads[i].state == AT_WARP;
                }
                if (at_warp > 0 && at_warp == live) {
                    for (size_t i = w * 32; i < end; i++)
                        if (b->threads[i].state == AT_WARP) b->threads[i].state = RUN;
                    released = true;
                }
            }
            r++;
        }
        if (!ran && !released && !sleeping) {
            l.error = "deadlock: every thread waits (a barrier some threads of the block or warp "
                      "never reach, or a mix of __syncthreads and warp collectives)";
            break;
        }
        if (++sweeps > o.max_sweeps) {
            l.error = "hung: still running after the sweep limit (a block spinning on one that "
                      "is not resident?)";
            break;
        }
    }
    for (Block* b : resident) retire(b);
    stacks.erase(std::remove(stacks.begin(), stacks.end(), nullptr), stacks.end());
    launch() = nullptr;
    return l.error;
}
}  // namespace emu

inline void __syncthreads() { emu::yield(emu::AT_BARRIER); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::yield(emu::AT_WARP); }
inline void __nanosleep(unsigned) { emu::yield(emu::SLEEPING); }
inline void __trap() { emu::trap("__trap()"); }
template <class T> T __shfl_xor_sync(unsigned, T v, int m, int w = 32) {
    return emu::exchange(v, [=](int l) { return ((l ^ m) & (w - 1)) | (l & ~(w - 1)); });
}
template <class T> T __shfl_sync(unsigned, T v, int s, int w = 32) {
    return emu::exchange(v, [=](int l) { return (l & ~(w - 1)) + (s & (w - 1)); });
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned d, int w = 32) {
    return emu::exchange(v, [=](int l) { return (l % w) + (int)d < w ? l + (int)d : l; });
}
template <class T> T __shfl_up_sync(unsigned, T v, unsigned d, int w = 32) {
    return emu::exchange(v, [=](int l) { return (l % w) >= (int)d ? l - (int)d : l; });
}
inline unsigned __ballot_sync(unsigned, bool p) { return emu::ballot(p); }

#define threadIdx (emu::cur()->tid)
#define blockIdx (emu::cur()->blk->idx)
#define blockDim (emu::launch()->block)
#define gridDim (emu::launch()->grid)
#define warpSize 32
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// emu.rs rewrites every __shared__ declaration; one it missed fails to compile.
#define __shared__ EMU_SHARED_DECLARATION_NOT_REWRITTEN

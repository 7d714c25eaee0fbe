// The scheduler of cuda_emu.h: CUDA threads as coroutines of one OS thread, the blocks of a
// stream of launches run a few at a time, programmatic dependent launches (PDL) included.
#pragma once

// A thread switch saves the callee-saved registers on the running stack and swaps stack
// pointers: glibc's swapcontext also saves the signal mask, a system call per switch, which
// made the tests several times slower. x86-64 ELF (System V) only; other hosts, and builds
// with EMU_FORCE_UCONTEXT (the self-test's), use ucontext.
// (The kernels change neither MXCSR nor the x87 control word, which the switch leaves alone.)
#if defined(__x86_64__) && defined(__ELF__) && !defined(EMU_FORCE_UCONTEXT)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch(void** save_sp, void* to_sp);
asm(R"(
    .pushsection .text
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
    .popsection
)");
#else
#define EMU_FAST_SWITCH 0
#endif

namespace emu {
// RUN: runnable; AT_BARRIER: in __syncthreads; AT_WARP: in a warp collective; SLEEPING: in
// __nanosleep (runnable again after each sweep); AT_GRID: in pdl_wait (until the launch before
// has completed); DONE: exited.
enum State { RUN, AT_BARRIER, AT_WARP, SLEEPING, AT_GRID, DONE };
struct Block;
struct Launch;
struct Thread {
    ucontext_t ctx;  // without EMU_FAST_SWITCH
    void* sp;        // with it: the saved stack pointer
    uint3 tid;
    int lane, warp;
    State state;
    unsigned long long slot;  // a warp collective's value
    const void* tag;          // which collective (its call site) the thread waits in
    Block* blk;
    void* stack;
};
struct Block {
    Launch* l;
    uint3 idx;
    bool triggered;  // has run pdl_launch_dependents
    std::vector<Thread> threads;
    // Static __shared__ variables by key: storage, size and name.
    struct Var {
        void* p;
        size_t bytes;
        const char* name;
    };
    std::unordered_map<const void*, Var> shared;
    void* dynamic;  // extern __shared__
};
// One kernel entry: its name, a call unpacking `void** args` into its parameters, and the
// parameters' sizes (0-terminated), which a launch checks against the arguments given.
struct Entry {
    const char* name;
    void (*call)(void**);
    const unsigned* sizes;
};
struct Launch {
    const Entry* entry;
    uint3 grid, block;
    unsigned shared_bytes;
    void** args;
    bool dependent;  // a programmatic dependent of the launch before
    size_t n_blocks, admitted = 0, exited = 0, triggered = 0;  // triggered: or exited
    const Launch* before = nullptr;  // the launch before in the stream
    bool complete() const { return exited == n_blocks; }
    // Whether pdl_wait may return: the launch before (if this one depends on it) completed.
    bool may_read() const { return !dependent || !before || before->complete(); }
};

// Per OS thread: the test harness runs tests on several threads at once.
inline Thread*& cur() { static thread_local Thread* t; return t; }
inline std::string& error() { static thread_local std::string e; return e; }
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
    cur() = nullptr;  // set only while a kernel thread runs (the fault handler reads it)
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
constexpr size_t GUARD_BYTES = 4096;  // an unmapped page below each stack
constexpr size_t REDZONE = 1024;      // bytes after each shared variable, checked at exit
constexpr size_t FRONT = 64;          // and before it

// `bytes` of shared memory between redzones, all 0xff (a NaN in every float): reads out of
// bounds see NaN, writes there are reported when the block exits. Freed with `unpoison`.
inline void* poisoned(size_t bytes) {
    const size_t n = (FRONT + bytes + REDZONE + 63) / 64 * 64;
    unsigned char* p = static_cast<unsigned char*>(std::aligned_alloc(64, n));
    std::memset(p, 0xff, n);
    return p + FRONT;
}
inline void unpoison(void* p) { std::free(static_cast<unsigned char*>(p) - FRONT); }
inline bool redzones_intact(const void* p, size_t bytes) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    for (size_t i = 1; i <= FRONT; i++)
        if (*(c - i) != 0xff) return false;
    for (size_t i = 0; i < REDZONE; i++)
        if (c[bytes + i] != 0xff) return false;
    return true;
}
inline void yield(State s) {
    Thread* t = cur();
    t->state = s;
    suspend(t);
}
inline void trap(const char* why) {
    Thread* t = cur();
    if (error().empty()) {
        char buf[320];
        std::snprintf(buf, sizeof buf, "%s in %s block (%u,%u,%u) thread (%u,%u,%u)", why,
                      t->blk->l->entry->name, t->blk->idx.x, t->blk->idx.y, t->blk->idx.z,
                      t->tid.x, t->tid.y, t->tid.z);
        error() = buf;
    }
    t->state = DONE;
    suspend(t);
    std::abort();  // never resumed
}
inline void thread_main() {
    Launch* l = cur()->blk->l;
    l->entry->call(l->args);
    cur()->state = DONE;
#if EMU_FAST_SWITCH
    suspend(cur());  // never resumed: there is no frame to return to
    std::abort();
#endif
    // (ucontext) returning resumes uc_link, the scheduler.
}
template <class T> T& shared_var(const void* key, const char* name) {
    Block* b = cur()->blk;
    auto it = b->shared.find(key);
    if (it == b->shared.end())
        it = b->shared.emplace(key, Block::Var{poisoned(sizeof(T)), sizeof(T), name}).first;
    return *static_cast<T*>(it->second.p);
}
inline void* dynamic_shared() { return cur()->blk->dynamic; }

// A warp collective: every live lane of the warp posts `v`, then each reads what `src(lane)`
// posted. Two warp barriers: the second keeps a fast lane from overwriting a slot too early.
// `tag` names the call site: lanes are released together only from the same one.
inline void check_mask(unsigned mask) {
    if (mask != 0xffffffffu) trap("a warp collective with a partial mask (not emulated)");
}
template <class T, class Src> T exchange(unsigned mask, T v, Src src, const void* tag) {
    static_assert(sizeof(T) <= 8, "warp exchange of a value over 8 bytes");
    check_mask(mask);
    Thread* t = cur();
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    t->slot = bits;
    t->tag = tag;
    yield(AT_WARP);
    Block* b = t->blk;
    const int s = src(t->lane);
    const size_t i = (size_t)t->warp * 32 + (size_t)s;
    T out = v;
    if (s >= 0 && s < 32 && i < b->threads.size()) {
        if (b->threads[i].state == DONE) trap("a shuffle reads a lane that has exited");
        std::memcpy(&out, &b->threads[i].slot, sizeof out);
    }
    yield(AT_WARP);
    return out;
}
inline unsigned ballot(unsigned mask, bool pred, const void* tag) {
    check_mask(mask);
    Thread* t = cur();
    t->slot = pred;
    t->tag = tag;
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

// griddepcontrol.launch_dependents: the block counts towards releasing the next launch.
inline void pdl_launch_dependents() {
    Block* b = cur()->blk;
    if (!b->triggered) b->triggered = true, b->l->triggered++;
}
// griddepcontrol.wait: until the launch before has completed (its blocks all exited; not, by
// itself, the launches before that one). Returns at once in a launch that is not dependent.
inline void pdl_wait() {
    if (!cur()->blk->l->may_read()) yield(AT_GRID);
}

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
    unsigned resident;              // blocks run at once, over all launches (at least 1)
    unsigned reverse;               // 1: blocks and threads in reverse order
    unsigned long long max_sweeps;  // sweeps over the resident threads before "hung"
};

// Thread stacks of this OS thread, reused by the next block and the next launch (mapping
// them anew each launch cost more system time than the kernels' own work); unmapped when
// the thread ends.
struct StackPool {
    std::vector<void*> free;
    std::vector<void*> all;
    ~StackPool() {
        for (void* s : all) munmap(static_cast<char*>(s) - GUARD_BYTES, STACK_BYTES + GUARD_BYTES);
    }
};
inline StackPool& stack_pool() { static thread_local StackPool p; return p; }

// A thread stack (STACK_BYTES from the returned address) above an unmapped guard page: an
// overflow faults instead of overwriting another thread's frames.
inline void* new_stack() {
    const size_t n = STACK_BYTES + GUARD_BYTES;
    void* s = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) return nullptr;
    mprotect(s, GUARD_BYTES, PROT_NONE);
    void* top = static_cast<char*>(s) + GUARD_BYTES;
    stack_pool().all.push_back(top);
    return top;
}

// Whether launch i of `ls` may start blocks: a plain launch once every launch before it has
// completed (stream order); a dependent one once the launch before it has started all its
// blocks and each has triggered or exited.
inline bool may_start(const std::vector<Launch>& ls, size_t i) {
    if (i == 0) return true;
    const Launch& p = ls[i - 1];
    if (!ls[i].dependent) {
        for (size_t j = 0; j < i; j++)
            if (!ls[j].complete()) return false;
        return true;
    }
    return may_start(ls, i - 1) && p.admitted == p.n_blocks && p.triggered == p.n_blocks;
}


// A fault (SIGSEGV, SIGBUS: an index far out of bounds, a stack overflow into a guard page)
// in a kernel thread ends the test binary with the kernel, block and thread named, rather
// than a bare signal. Faults elsewhere go to the handler that was there before.
inline struct sigaction& old_action(int sig) {
    static struct sigaction old[2];
    return old[sig == SIGBUS];
}
inline void on_fault(int sig) {
    const Thread* t = cur();
    if (!t) {
        sigaction(sig, &old_action(sig), nullptr);  // not ours: the fault repeats, to it
        return;
    }
    char buf[400];
    const int n = std::snprintf(buf, sizeof buf,
                                "kernels_on_cpu: signal %d (out-of-bounds access or stack "
                                "overflow) in %s block (%u,%u,%u) thread (%u,%u,%u)\n",
                                sig, t->blk->l->entry->name, t->blk->idx.x, t->blk->idx.y,
                                t->blk->idx.z, t->tid.x, t->tid.y, t->tid.z);
    if (write(2, buf, n > 0 ? (size_t)n : 0) < 0) _exit(101);
    _exit(101);
}
inline void catch_faults() {
    static bool done = false;  // once per module (the handlers chain across modules)
    if (done) return;
    done = true;
    struct sigaction a {};
    a.sa_handler = on_fault;
    a.sa_flags = SA_ONSTACK;  // on the alternate stack Rust gives each thread
    sigemptyset(&a.sa_mask);
    sigaction(SIGSEGV, &a, &old_action(SIGSEGV));
    sigaction(SIGBUS, &a, &old_action(SIGBUS));
}

// Runs the launches `ls` (a stream) to completion; returns the first error ("" if none).
inline std::string run(std::vector<Launch>& ls, const Options& o) {
    catch_faults();
    for (size_t i = 0; i < ls.size(); i++) {
        Launch& l = ls[i];
        l.before = i > 0 ? &ls[i - 1] : nullptr;
        l.n_blocks = (size_t)l.grid.x * l.grid.y * l.grid.z;
        const size_t n_threads = (size_t)l.block.x * l.block.y * l.block.z;
        if (l.n_blocks == 0 || n_threads == 0 || n_threads > 1024 || l.block.z > 64)
            return std::string(l.entry->name) + ": invalid launch: grid or block empty, or a "
                                                "block over 1024 threads";
        if (l.grid.y > 65535 || l.grid.z > 65535)
            return std::string(l.entry->name) + ": invalid launch: grid y or z over 65535";
    }
    error().clear();
    std::vector<void*>& stacks = stack_pool().free;
    std::vector<Block*> resident;
    unsigned long long sweeps = 0;
    auto admit = [&](Launch& l) {
        const size_t linear = l.admitted++;
        const size_t id = o.reverse ? l.n_blocks - 1 - linear : linear;
        const uint3 g = l.grid, bd = l.block;
        Block* b = new Block;
        b->l = &l;
        b->triggered = false;
        b->idx = {(unsigned)(id % g.x), (unsigned)(id / g.x % g.y), (unsigned)(id / ((size_t)g.x * g.y))};
        b->dynamic = poisoned(l.shared_bytes);
        b->threads.resize((size_t)bd.x * bd.y * bd.z);
        for (size_t i = 0; i < b->threads.size(); i++) {
            Thread& t = b->threads[i];
            t.tid = {(unsigned)(i % bd.x), (unsigned)(i / bd.x % bd.y), (unsigned)(i / ((size_t)bd.x * bd.y))};
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
            top[-1] = nullptr;  // no caller above thread_main (for debuggers)
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
    std::string err;
    auto retire = [&](Block* b) {
        for (Thread& t : b->threads) stacks.push_back(t.stack);
        char what[200] = "";
        if (!redzones_intact(b->dynamic, b->l->shared_bytes))
            std::snprintf(what, sizeof what, "its %u bytes of dynamic shared memory",
                          b->l->shared_bytes);
        for (auto& kv : b->shared) {
            const Block::Var& v = kv.second;
            if (!what[0] && !redzones_intact(v.p, v.bytes))
                std::snprintf(what, sizeof what, "__shared__ `%s` (%zu bytes)", v.name, v.bytes);
            unpoison(v.p);
        }
        if (what[0]) {
            const std::string e = std::string(b->l->entry->name) + ": a block wrote past " + what;
            err = err.empty() ? e : err + " (also: " + e + ")";
        }
        unpoison(b->dynamic);
        delete b;
    };
    unsigned long long idle = 0;  // sweeps in a row with no event (see below)
    const size_t places = std::max(o.resident, 1u);
    while (true) {
        const size_t before_admit = resident.size();
        // Free places go to the earliest launch that may start and has blocks left.
        for (size_t i = 0; i < ls.size(); i++)
            while (resident.size() < places && ls[i].admitted < ls[i].n_blocks && may_start(ls, i))
                admit(ls[i]);
        bool event = resident.size() != before_admit;
        if (resident.empty()) {
            bool all = true;
            for (const Launch& l : ls) all = all && l.complete();
            if (!all) err = "deadlock: a launch can never start";
            break;
        }
        bool ran = false;
        // In reverse order the newest blocks run first in each sweep: a dependent launch's
        // blocks before those of the launch they depend on.
        for (size_t rb = 0; rb < resident.size(); rb++) {
            Block* b = resident[o.reverse ? resident.size() - 1 - rb : rb];
            const size_t n = b->threads.size();
            for (size_t j = 0; j < n; j++) {
                Thread& t = b->threads[o.reverse ? n - 1 - j : j];
                if (t.state != RUN) continue;
                if (t.stack == nullptr) {
                    err = "out of memory for thread stacks";
                    break;
                }
                resume(&t);
                ran = true;
            }
        }
        if (!error().empty()) {
            if (err.empty()) err = error();
            break;
        }
        if (!err.empty()) break;
        bool released = false, sleeping = false;
        for (size_t r = 0; r < resident.size();) {
            Block* b = resident[r];
            Launch& l = *b->l;
            size_t done = 0, at_bar = 0;
            for (Thread& t : b->threads) {
                if (t.state == SLEEPING) t.state = RUN, sleeping = true;
                if (t.state == AT_GRID && l.may_read()) t.state = RUN, released = true;
                done += t.state == DONE;
                at_bar += t.state == AT_BARRIER;
            }
            if (done == b->threads.size()) {
                l.exited++;
                if (!b->triggered) l.triggered++;
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
            // Warp collectives: every live lane of the warp there, at the same call site.
            for (size_t w = 0; w * 32 < b->threads.size(); w++) {
                const size_t end = std::min(b->threads.size(), w * 32 + 32);
                size_t live = 0, at_warp = 0;
                const void* tag = nullptr;
                bool mixed = false;
                for (size_t i = w * 32; i < end; i++) {
                    const Thread& t = b->threads[i];
                    live += t.state != DONE;
                    if (t.state != AT_WARP) continue;
                    mixed = mixed || (at_warp > 0 && t.tag != tag);
                    tag = t.tag;
                    at_warp++;
                }
                if (at_warp > 0 && at_warp == live && mixed && err.empty())
                    err = std::string(l.entry->name) + ": lanes of a warp meet at different warp "
                                                       "collectives";
                if (at_warp > 0 && at_warp == live && !mixed) {
                    for (size_t i = w * 32; i < end; i++)
                        if (b->threads[i].state == AT_WARP) b->threads[i].state = RUN;
                    released = true;
                }
            }
            r++;
        }
        if (!err.empty()) break;
        event = event || released;
        if (!ran && !released && !sleeping) {
            err = "deadlock: every thread waits (a barrier some threads of the block or warp never "
                  "reach, a mix of __syncthreads and warp collectives, or pdl_wait on a launch "
                  "that cannot finish)";
            break;
        }
        // Only sleeping threads ran and nothing happened (no barrier released, no block
        // admitted or exited): a spin on something no resident thread will do.
        idle = event ? 0 : idle + 1;
        if (idle > 10000) {
            err = "hung: no progress in 10,000 sweeps, blocks spin (__nanosleep) on a change no "
                  "resident block makes (a block waiting on one not yet started?)";
            break;
        }
        if (++sweeps > o.max_sweeps) {
            err = "over the sweep limit (max_sweeps): the launch runs too long";
            break;
        }
    }
    for (Block* b : resident) retire(b);
    stacks.erase(std::remove(stacks.begin(), stacks.end(), nullptr), stacks.end());
    return err;
}
}  // namespace emu

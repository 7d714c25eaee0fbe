//! Builds kernel files into a host shared library that runs them on the CPU (`cuda_emu.h`),
//! and launches their entries with explicit grids and arguments.
//!
//! The translation unit is what NVRTC compiles (`dlp_cuda::nvrtc::PRELUDE` and the kernel
//! files) with every `__shared__` declaration rewritten into per-block storage, then a table
//! of the kernel entries (found by preprocessing with `__global__` as a marker) that unpacks
//! each launch's `void**` arguments into the entry's parameters after checking their sizes.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The emulator's header, put in front of every translation unit.
const HEADER: &str = include_str!("cuda_emu.h");

/// Kernel files by module, as the backend's modules (nvrtc.rs) concatenate them, except that
/// `sgmv.cu` (tensor-core asm, which a host compiler cannot build) is left out of `lora`.
fn files(module: &str) -> Option<Vec<&'static str>> {
    const LORA: &str = include_str!("../../kernels/lora.cu");
    Some(match module {
        "lora" => vec![LORA, include_str!("../../kernels/lora_tiled.cu")],
        "matmul" => vec![LORA, include_str!("../../kernels/matmul.cu")],
        "attention" => vec![include_str!("../../kernels/attention.cu")],
        "rms_norm" => vec![include_str!("../../kernels/rms_norm.cu")],
        "rope" => vec![include_str!("../../kernels/rope.cu")],
        "silu_mul" => vec![include_str!("../../kernels/silu_mul.cu")],
        "add" => vec![include_str!("../../kernels/add.cu")],
        "selftest" => vec![include_str!("selftest.cu")],
        _ => return None,
    })
}

/// How a launch is scheduled (`emu::Options` in cuda_emu.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Order {
    /// Blocks run at once.
    pub resident: u32,
    /// 1: blocks and threads in reverse order.
    pub reverse: u32,
    /// Sweeps over the resident threads before the launch counts as hung.
    pub max_sweeps: u64,
}

/// The orders every case runs in, by name.
pub const ORDERS: [(&str, Order); 2] = [("forward", Order::FORWARD), ("reverse", Order::REVERSE)];

/// Failures of a test's runs, reported together at the end.
#[derive(Default)]
pub struct Runs {
    ran: usize,
    failures: Vec<String>,
}

impl Runs {
    /// Records run `label`'s result.
    pub fn check(&mut self, label: String, r: Result<(), String>) {
        self.ran += 1;
        if let Err(e) = r {
            self.failures.push(format!("{label}: {e}"));
        }
    }

    /// Panics naming every failed run.
    pub fn finish(self) {
        let (n, ran) = (self.failures.len(), self.ran);
        assert!(
            n == 0,
            "{n} of {ran} runs failed:\n{}",
            self.failures.join("\n")
        );
    }
}

impl Order {
    /// Blocks one at a time, in order.
    pub const FORWARD: Order = Order {
        resident: 1,
        reverse: 0,
        max_sweeps: 10_000_000,
    };
    /// Three blocks at once, blocks and threads in reverse order.
    pub const REVERSE: Order = Order {
        resident: 3,
        reverse: 1,
        max_sweeps: 10_000_000,
    };
}

/// One kernel argument: the address and size of its value (a pointer argument is the
/// address of a pointer).
#[derive(Debug, Clone, Copy)]
pub struct Arg(*const c_void, u32);

/// `v` as a kernel argument.
pub fn arg<T: Copy>(v: &T) -> Arg {
    Arg(
        v as *const T as *const c_void,
        std::mem::size_of::<T>() as u32,
    )
}

/// A host pointer standing in for a device one (a `T*` or a `u64` field of a launch struct).
pub fn dev<T>(v: &mut [T]) -> u64 {
    v.as_mut_ptr() as u64
}

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const u32,
    *const u32,
    u32,
    *const *const c_void,
    *const u32,
    u32,
    *const Order,
    *mut c_char,
    u32,
) -> i32;

/// A kernel module built for the CPU.
pub struct Module {
    name: String,
    _lib: libloading::Library,
    launch: LaunchFn,
    /// How launches are scheduled.
    pub order: Order,
}

impl Module {
    /// Runs entry `name` on `grid` blocks of `block` threads with `shared` bytes of dynamic
    /// shared memory; errors name the module and entry (a wrong argument count or size, a
    /// deadlock, a hang, a `__trap`).
    pub fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<(), String> {
        let c_name = CString::new(name).map_err(|e| e.to_string())?;
        let ptrs: Vec<*const c_void> = args.iter().map(|a| a.0).collect();
        let sizes: Vec<u32> = args.iter().map(|a| a.1).collect();
        let mut err = vec![0u8; 512];
        // SAFETY: the entry checks the argument count and sizes against its parameters; the
        // pointers inside the arguments are the caller's (host buffers sized for the launch).
        let rc = unsafe {
            (self.launch)(
                c_name.as_ptr(),
                [grid.0, grid.1, grid.2].as_ptr(),
                [block, 1, 1].as_ptr(),
                shared,
                ptrs.as_ptr(),
                sizes.as_ptr(),
                args.len() as u32,
                &self.order,
                err.as_mut_ptr() as *mut c_char,
                err.len() as u32,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(format!(
            "{}/{name}: {}",
            self.name,
            String::from_utf8_lossy(&err[..end])
        ))
    }
}

/// Every `__shared__` declaration of `src` as per-block storage: `__shared__ T a[N], b;`
/// becomes `static char k0; auto& a = emu::shared_var<T[N]>(&k0); ...` (the key is one per
/// function, template instance included), `extern __shared__ T s[];` becomes
/// `T* s = reinterpret_cast<T*>(emu::dynamic_shared());`.
pub fn rewrite_shared(src: &str) -> Result<String, String> {
    const KW: &str = "__shared__";
    let mut out = String::with_capacity(src.len() + 1024);
    let mut rest = src;
    let mut key = 0usize;
    while let Some(at) = rest.find(KW) {
        let (before, after) = rest.split_at(at);
        let after = &after[KW.len()..];
        let end = after
            .find(';')
            .ok_or("a __shared__ declaration without `;`")?;
        let decl = after[..end].trim();
        let trimmed = before.trim_end();
        if let Some(head) = trimmed.strip_suffix("extern") {
            out.push_str(head);
            let decl = strip_align(decl);
            let decl = decl
                .strip_suffix("[]")
                .ok_or_else(|| format!("extern __shared__ `{decl}` is not `T name[]`"))?;
            let (ty, name) = split_last_ident(decl)?;
            out.push_str(&format!(
                "{ty}* {name} = reinterpret_cast<{ty}*>(emu::dynamic_shared())"
            ));
        } else {
            out.push_str(before);
            let decl = strip_align(decl);
            let mut parts = split_top_commas(&decl).into_iter();
            let first = parts.next().ok_or("empty __shared__ declaration")?;
            let head_end = first.find('[').unwrap_or(first.len());
            let (ty, name) = split_last_ident(&first[..head_end])?;
            let mut decls = vec![(name, first[head_end..].to_string())];
            for p in parts {
                let p = p.trim();
                let e = p.find('[').unwrap_or(p.len());
                decls.push((p[..e].trim().to_string(), p[e..].to_string()));
            }
            let mut stmts = Vec::new();
            for (name, dims) in decls {
                stmts.push(format!(
                    "static char emu_k{key}; auto& {name} = emu::shared_var<{ty}{dims}>(&emu_k{key})"
                ));
                key += 1;
            }
            out.push_str(&stmts.join("; "));
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `decl` without `__align__(n)`.
fn strip_align(decl: &str) -> String {
    match decl.find("__align__(") {
        Some(a) => {
            let close = decl[a..].find(')').map_or(decl.len(), |c| a + c + 1);
            format!("{} {}", &decl[..a], &decl[close..])
        }
        None => decl.to_string(),
    }
}

/// (type, name) of `T name`.
fn split_last_ident(s: &str) -> Result<(String, String), String> {
    let s = s.trim();
    let start = s
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let (ty, name) = (s[..start].trim(), &s[start..]);
    if ty.is_empty() || name.is_empty() {
        return Err(format!("cannot read a type and a name from `{s}`"));
    }
    Ok((ty.to_string(), name.to_string()))
}

/// `s` split at commas outside brackets and parentheses.
fn split_top_commas(s: &str) -> Vec<String> {
    let (mut depth, mut parts, mut cur) = (0i32, Vec::new(), String::new());
    for c in s.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

/// The kernel entries' names in a preprocessed translation unit (`__global__` as a marker).
fn entry_names(preprocessed: &str) -> Vec<String> {
    const MARK: &str = "EMU_KERNEL_MARK";
    let mut names = Vec::new();
    for (i, _) in preprocessed.match_indices(MARK) {
        let rest = preprocessed[i + MARK.len()..].trim_start();
        let Some(rest) = rest.strip_prefix("void") else {
            continue;
        };
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The entry table and `emu_launch`, after the kernels.
fn epilogue(names: &[String]) -> String {
    let mut s = String::from("\nstatic const emu::Entry emu_entries[] = {\n");
    for n in names {
        s.push_str(&format!(
            "    {{\"{n}\", [](void** p) {{ emu::call_with({n}, p); }}, emu::param_sizes({n})}},\n"
        ));
    }
    s.push_str(
        r#"};
extern "C" int emu_launch(const char* name, const unsigned* g, const unsigned* b, unsigned shared,
                          void** args, const unsigned* sizes, unsigned n_args,
                          const emu::Options* o, char* err, unsigned err_len) {
    std::string e;
    const emu::Entry* entry = nullptr;
    for (const emu::Entry& x : emu_entries)
        if (std::strcmp(x.name, name) == 0) entry = &x;
    if (!entry) {
        e = "no kernel entry of this name in the module";
    } else {
        unsigned n = 0;
        while (entry->sizes[n]) n++;
        if (n != n_args) e = "takes " + std::to_string(n) + " parameters, got " + std::to_string(n_args);
        for (unsigned i = 0; e.empty() && i < n; i++)
            if (entry->sizes[i] != sizes[i])
                e = "parameter " + std::to_string(i) + " is " + std::to_string(entry->sizes[i]) +
                    " bytes, the argument " + std::to_string(sizes[i]);
        if (e.empty()) e = emu::run(*entry, {g[0], g[1], g[2]}, {b[0], b[1], b[2]}, shared, args, *o);
    }
    std::snprintf(err, err_len, "%s", e.c_str());
    return e.empty() ? 0 : 1;
}
"#,
    );
    s
}

/// The host C++ compiler: `CXX`, else `c++`.
fn cxx() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "{what}: cannot run the C++ compiler `{}`: {e} (install one, e.g. Debian's g++, \
                 or name it in CXX)",
            cxx()
        )
    })?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let head: String = log.lines().take(40).collect::<Vec<_>>().join("\n");
        return Err(format!("{what} failed:\n{head}"));
    }
    Ok(out.stdout)
}

/// FNV-1a of `parts`, for the build cache.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.bytes().chain([0u8])) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Builds (or reuses, per process and on disk) `module` with `defines` (e.g. `-DTILED_ROWS=4`),
/// its launches scheduled in `order`.
pub fn module(name: &str, defines: &[&str], order: Order) -> Result<Module, String> {
    type Slot = Arc<OnceLock<Result<PathBuf, String>>>;
    static BUILT: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let key = format!("{name}\n{}", defines.join("\n"));
    let slot = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone();
    let path = slot.get_or_init(|| build(name, defines)).clone()?;
    // SAFETY: the library is the emulator built above; its initialisers only fill tables.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: `emu_launch` is defined by `epilogue` with exactly this signature.
    let launch = unsafe { lib.get::<LaunchFn>(b"emu_launch\0") }
        .map(|f| *f)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Module {
        name: name.to_string(),
        _lib: lib,
        launch,
        order,
    })
}

fn build(name: &str, defines: &[&str]) -> Result<PathBuf, String> {
    let srcs = files(name).ok_or_else(|| format!("no kernel module `{name}` for the CPU"))?;
    let mut body = String::from(dlp_cuda::nvrtc::PRELUDE);
    for s in srcs {
        body.push('\n');
        body.push_str(s);
    }
    let body = rewrite_shared(&body).map_err(|e| format!("{name}: {e}"))?;
    // No FMA contraction: kernels that claim equal values are compared bit for bit.
    let flags = [
        "-std=c++17",
        "-O1",
        "-ffp-contract=off",
        "-fno-strict-aliasing",
        "-w",
        "-D__CUDA_ARCH__=700",
    ];
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernels_on_cpu");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut parts = vec![HEADER, body.as_str()];
    parts.extend(flags);
    parts.extend(defines.iter().copied());
    let stem = format!("{name}-{:016x}", fnv1a(&parts));
    let so = dir.join(format!("{stem}.so"));
    if so.exists() {
        return Ok(so);
    }
    let header = dir.join(format!("{stem}.h"));
    std::fs::write(&header, HEADER).map_err(|e| e.to_string())?;
    let tu = format!("#include \"{}\"\n{body}", header.display());
    let scan = dir.join(format!("{stem}.scan.cpp"));
    std::fs::write(&scan, &tu).map_err(|e| e.to_string())?;
    let pre = run(
        Command::new(cxx())
            .args(flags)
            .args(defines)
            .args(["-E", "-P", "-D__global__=EMU_KERNEL_MARK"])
            .arg(&scan),
        &format!("preprocessing {name}"),
    )?;
    let names = entry_names(&String::from_utf8_lossy(&pre));
    if names.is_empty() {
        return Err(format!("{name}: no kernel entries found"));
    }
    let cpp = dir.join(format!("{stem}.cpp"));
    std::fs::write(&cpp, tu + &epilogue(&names)).map_err(|e| e.to_string())?;
    // Written under a temporary name and renamed: another test process may build it too.
    let tmp = dir.join(format!("{stem}.{}.tmp", std::process::id()));
    run(
        Command::new(cxx())
            .args(flags)
            .args(defines)
            .args(["-fPIC", "-shared", "-D__global__="])
            .arg(&cpp)
            .arg("-o")
            .arg(&tmp),
        &format!("compiling {name} for the CPU"),
    )?;
    std::fs::rename(&tmp, &so).map_err(|e| e.to_string())?;
    Ok(so)
}

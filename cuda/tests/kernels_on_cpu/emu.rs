//! Builds kernel files into a host shared library that runs them on the CPU (`cuda_emu.h`),
//! and launches their entries with explicit grids and arguments.
//!
//! The translation unit is what NVRTC compiles (`dlp_cuda::nvrtc::PRELUDE` and the kernel
//! files) with every `__shared__` declaration rewritten into per-block storage, then a table
//! of the kernel entries (found by preprocessing with `__global__` as a marker) that unpacks
//! each launch's `void**` arguments into the entry's parameters after checking their sizes.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::emu_source::{entry_names, epilogue, rewrite_shared};

/// The emulator's header (with its runtime), put in front of every translation unit.
fn header() -> String {
    const INCLUDE: &str = "#include \"emu_runtime.h\"";
    let h = include_str!("cuda_emu.h");
    assert!(
        h.contains(INCLUDE),
        "cuda_emu.h no longer includes emu_runtime.h"
    );
    h.replace(INCLUDE, include_str!("emu_runtime.h"))
}

/// Whether the host compiler takes `-ftrivial-auto-var-init=pattern` (GCC 12+, clang 8+).
fn pattern_init_supported() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let out = Command::new(cxx())
            .args([
                "-ftrivial-auto-var-init=pattern",
                "-fsyntax-only",
                "-x",
                "c++",
                "/dev/null",
            ])
            .output();
        out.is_ok_and(|o| o.status.success())
    })
}

/// The host compiler and its version, for the build cache's key.
fn compiler_id() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let v = Command::new(cxx()).arg("--version").output();
        let v = v.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        });
        format!("{} {}", cxx(), v.unwrap_or_default())
    })
    .clone()
}

/// Kernel files by module, as the backend's modules (nvrtc.rs) concatenate them, except that
/// `sgmv.cu` (tensor-core asm, which a host compiler cannot build) is left out of `lora`, and
/// that `matmul` also holds `lora_prefetch.cu` (the backend takes those entries from `lora`):
/// lora-prefetch's chain of dependent launches runs in one emulated stream, of one module.
fn files(module: &str) -> Option<Vec<&'static str>> {
    const LORA: &str = include_str!("../../kernels/lora.cu");
    const PREFETCH: &str = include_str!("../../kernels/lora_prefetch.cu");
    Some(match module {
        "lora" => vec![LORA, PREFETCH, include_str!("../../kernels/lora_tiled.cu")],
        "matmul" => vec![LORA, PREFETCH, include_str!("../../kernels/matmul.cu")],
        "attention" => vec![include_str!("../../kernels/attention.cu")],
        "rms_norm" => vec![include_str!("../../kernels/rms_norm.cu")],
        "rope" => vec![include_str!("../../kernels/rope.cu")],
        "silu_mul" => vec![include_str!("../../kernels/silu_mul.cu")],
        "add" => vec![include_str!("../../kernels/add.cu")],
        // As the backend's module has them: gelu.cu, relu_sq.cu and xielu.cu beside gelu_mul.cu.
        "gelu_mul" => vec![
            include_str!("../../kernels/gelu_mul.cu"),
            include_str!("../../kernels/gelu.cu"),
            include_str!("../../kernels/relu_sq.cu"),
            include_str!("../../kernels/xielu.cu"),
        ],
        "scale" => vec![include_str!("../../kernels/scale.cu")],
        "softcap" => vec![include_str!("../../kernels/softcap.cu")],
        "clamp" => vec![include_str!("../../kernels/clamp.cu")],
        // As the backend's `center` module has them: center.cu reuses rms_norm's block_sum.
        "center" => vec![
            include_str!("../../kernels/rms_norm.cu"),
            include_str!("../../kernels/center.cu"),
        ],
        "argmax" => vec![include_str!("../../kernels/argmax.cu")],
        // As the backend's `logits` module has them: sample.cu reuses argmax's keys.
        "sample" => vec![
            include_str!("../../kernels/argmax.cu"),
            include_str!("../../kernels/sample.cu"),
        ],
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

/// How long one stream may run before the watchdog ends the test binary.
const WATCHDOG: Duration = Duration::from_secs(300);

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

/// One launch of a stream, as `emu_run` takes it (the epilogue's `EmuLaunch`).
#[repr(C)]
struct LaunchDesc {
    name: *const c_char,
    grid: [u32; 3],
    block: [u32; 3],
    shared: u32,
    args: *const *const c_void,
    sizes: *const u32,
    n_args: u32,
    dependent: u32,
}

type RunFn = unsafe extern "C" fn(*const LaunchDesc, u32, *const Order, *mut c_char, u32) -> i32;

/// One launch of a stream ([`Module::stream`]).
pub struct Launch {
    pub name: String,
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub shared: u32,
    pub args: Vec<Arg>,
    /// A programmatic dependent of the launch before (CUDA's PDL: it may start once every
    /// block of that launch has run `pdl_launch_dependents` or exited).
    pub dependent: bool,
}

/// A kernel module built for the CPU.
pub struct Module {
    name: String,
    _lib: libloading::Library,
    run: RunFn,
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
        self.stream(&[Launch {
            name: name.to_string(),
            grid,
            block,
            shared,
            args: args.to_vec(),
            dependent: false,
        }])
    }

    /// Runs `launches` in stream order (a dependent launch may overlap the one before it);
    /// errors name the module and the entries.
    pub fn stream(&self, launches: &[Launch]) -> Result<(), String> {
        let names: Vec<CString> = launches
            .iter()
            .map(|l| CString::new(l.name.as_str()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let ptrs: Vec<Vec<*const c_void>> = launches
            .iter()
            .map(|l| l.args.iter().map(|a| a.0).collect())
            .collect();
        let sizes: Vec<Vec<u32>> = launches
            .iter()
            .map(|l| l.args.iter().map(|a| a.1).collect())
            .collect();
        let descs: Vec<LaunchDesc> = launches
            .iter()
            .enumerate()
            .map(|(i, l)| LaunchDesc {
                name: names[i].as_ptr(),
                grid: [l.grid.0, l.grid.1, l.grid.2],
                block: [l.block, 1, 1],
                shared: l.shared,
                args: ptrs[i].as_ptr(),
                sizes: sizes[i].as_ptr(),
                n_args: l.args.len() as u32,
                dependent: l.dependent as u32,
            })
            .collect();
        let mut err = vec![0u8; 512];
        let entries: Vec<&str> = launches.iter().map(|l| l.name.as_str()).collect();
        let what = format!("{}/{}", self.name, entries.join("+"));
        // A kernel spinning without __nanosleep never returns to the scheduler: end the test
        // binary with a message rather than hang CI.
        let (done, watch) = mpsc::channel::<()>();
        let watched = what.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(WATCHDOG) {
                // To the stderr handle: the test's output capture (which this thread inherits)
                // would be lost with the abort.
                let _ = writeln!(
                    std::io::stderr(),
                    "kernels_on_cpu: {watched} still running after {} s (a spin loop without \
                     __nanosleep?): aborting",
                    WATCHDOG.as_secs()
                );
                std::process::abort();
            }
        });
        // SAFETY: each entry checks the argument count and sizes against its parameters; the
        // pointers inside the arguments are the caller's (host buffers sized for the launch).
        let rc = unsafe {
            (self.run)(
                descs.as_ptr(),
                descs.len() as u32,
                &self.order,
                err.as_mut_ptr() as *mut c_char,
                err.len() as u32,
            )
        };
        let _ = done.send(());
        if rc == 0 {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(format!("{what}: {}", String::from_utf8_lossy(&err[..end])))
    }
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
    // SAFETY: `emu_run` is defined by `epilogue` with exactly this signature.
    let run = unsafe { lib.get::<RunFn>(b"emu_run\0") }
        .map(|f| *f)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Module {
        name: name.to_string(),
        _lib: lib,
        run,
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
    let mut flags = vec![
        "-std=c++17",
        "-O1",
        "-ffp-contract=off",
        // emu_switch returns into another stack: no shadow stack.
        "-fcf-protection=none",
        "-fno-strict-aliasing",
        "-w",
        "-D__CUDA_ARCH__=700",
        "-DDLP_CPU_EMU",
    ];
    // Uninitialised locals hold a pattern (GCC: 0xfe bytes, -1.7e38 as a float; clang: NaN),
    // not the last thread's values; compilers before GCC 12 lack the flag.
    if pattern_init_supported() {
        flags.push("-ftrivial-auto-var-init=pattern");
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernels_on_cpu");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let header = header();
    // Everything the library depends on: the source, the epilogue's fixed part (the layout
    // `emu_run` reads), the compiler, the flags.
    let (fixed, compiler) = (epilogue(&[]), compiler_id());
    let mut parts = vec![
        header.as_str(),
        body.as_str(),
        fixed.as_str(),
        compiler.as_str(),
    ];
    parts.extend(flags.iter().copied());
    parts.extend(defines.iter().copied());
    let stem = format!("{name}-{:016x}", dlp_cuda::nvrtc::fnv1a(&parts));
    let so = dir.join(format!("{stem}.so"));
    if so.exists() {
        return Ok(so);
    }
    // Intermediate files named per process: another test process may build the same module.
    let pid = std::process::id();
    let header_file = dir.join(format!("{stem}.{pid}.h"));
    std::fs::write(&header_file, &header).map_err(|e| e.to_string())?;
    let tu = format!("#include \"{}\"\n{body}", header_file.display());
    let scan = dir.join(format!("{stem}.{pid}.scan.cpp"));
    std::fs::write(&scan, &tu).map_err(|e| e.to_string())?;
    let pre = run(
        Command::new(cxx())
            .args(&flags)
            .args(defines)
            .args(["-E", "-P", "-D__global__=EMU_KERNEL_MARK"])
            .arg(&scan),
        &format!("preprocessing {name}"),
    )?;
    let names = entry_names(&String::from_utf8_lossy(&pre));
    if names.is_empty() {
        return Err(format!("{name}: no kernel entries found"));
    }
    let cpp = dir.join(format!("{stem}.{pid}.cpp"));
    std::fs::write(&cpp, tu + &epilogue(&names)).map_err(|e| e.to_string())?;
    // Written under a temporary name and renamed: another test process may build it too.
    let tmp = dir.join(format!("{stem}.{pid}.tmp"));
    run(
        Command::new(cxx())
            .args(&flags)
            .args(defines)
            .args(["-fPIC", "-shared", "-D__global__="])
            .arg(&cpp)
            .arg("-o")
            .arg(&tmp),
        &format!("compiling {name} for the CPU"),
    )?;
    std::fs::rename(&tmp, &so).map_err(|e| e.to_string())?;
    for f in [header_file, scan, cpp] {
        let _ = std::fs::remove_file(f); // the library stands alone
    }
    Ok(so)
}

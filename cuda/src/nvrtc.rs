//! Run-time compilation of the kernels with NVRTC: every `kernels/<op>.cu` to PTX for one GPU
//! architecture, with `-lineinfo`, cached by a hash of (source, options) in memory and on disk.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::result as nv;

use crate::ptx_cache;
use crate::tune::Tune;

/// One kernel source file: its name (the CPU op's name) and its CUDA C++ source.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File stem under `kernels/`, e.g. `lora`.
    pub name: &'static str,
    /// The translation unit NVRTC compiles.
    pub src: &'static str,
    /// Defines that each select a part of the file's entry points, every part compiled and
    /// loaded as a module of its own, at the same time as the others (empty: one module).
    /// Together the parts hold every entry of the whole file, with the same PTX
    /// (`cuda/tests/nvrtc_compile.rs` checks it entry by entry). Listed longest compile first.
    pub parts: &'static [&'static str],
}

/// Prepended to every kernel file: the bf16 helpers (`bf16.cuh`) and the dependent-launch
/// controls (`pdl.cuh`). Device functions and macros only, so a file that uses none of them
/// compiles to the same code.
pub const PRELUDE: &str = concat!(
    include_str!("../kernels/bf16.cuh"),
    "\n",
    include_str!("../kernels/pdl.cuh"),
    "\n"
);

/// `logits.cu` reuses `norm_row` from `rms_norm.cu`, so it is compiled after it; `argmax.cu`
/// and `sample.cu` (which reuses argmax's keys), the ops that read the logits, share the
/// module.
const LOGITS_SRC: &str = concat!(
    include_str!("../kernels/rms_norm.cu"),
    "\n",
    include_str!("../kernels/logits.cu"),
    "\n",
    include_str!("../kernels/argmax.cu"),
    "\n",
    include_str!("../kernels/sample.cu")
);

/// The feed-forward activations in one module (compiles fewer at start): `gelu_mul.cu`,
/// `gelu.cu` (`gelu`, `gelu_erf`), `relu_sq.cu` and `xielu.cu`.
const GELU_SRC: &str = concat!(
    include_str!("../kernels/gelu_mul.cu"),
    "\n",
    include_str!("../kernels/gelu.cu"),
    "\n",
    include_str!("../kernels/relu_sq.cu"),
    "\n",
    include_str!("../kernels/xielu.cu")
);

/// `center.cu` reuses `block_sum` from `rms_norm.cu`, so it is compiled after it.
const CENTER_SRC: &str = concat!(
    include_str!("../kernels/rms_norm.cu"),
    "\n",
    include_str!("../kernels/center.cu")
);

/// `lora_prefetch.cu`, `sgmv.cu` and `lora_tiled.cu` share `lora.cu`'s entry lookups and pair
/// parameters: the four are one module (`lora`), compiled in that order.
const LORA_SRC: &str = concat!(
    include_str!("../kernels/lora.cu"),
    "\n",
    include_str!("../kernels/lora_prefetch.cu"),
    "\n",
    include_str!("../kernels/sgmv.cu"),
    "\n",
    include_str!("../kernels/lora_tiled.cu")
);

/// `matmul.cu`'s decode matvec applies fused-LoRA expands with `lora.cu`'s `LoraJobs` and
/// `lora_entries`, so it is compiled after it.
const MATMUL_SRC: &str = concat!(
    include_str!("../kernels/lora.cu"),
    "\n",
    include_str!("../kernels/matmul.cu")
);

/// matmul.cu's parts (`DLP_MATVEC_PART`): the decode matvec's entries of 8, 4, 2 and 1 rows,
/// the file's other entries (and lora.cu's) with the last. The whole file is about half of a
/// cold start's NVRTC time (two thirds with the fold entries); its largest part, of 8 rows,
/// takes about 5.5 s on one core here (12 s with the folds), about as long as attention.cu.
pub const MATVEC_PARTS: [&str; 4] = [
    "-DDLP_MATVEC_PART=8",
    "-DDLP_MATVEC_PART=4",
    "-DDLP_MATVEC_PART=2",
    "-DDLP_MATVEC_PART=1",
];

/// Every kernel file, in the order the backend loads them.
pub const SOURCES: [KernelSource; 14] = [
    KernelSource {
        name: "embedding",
        src: include_str!("../kernels/embedding.cu"),
        parts: &[],
    },
    KernelSource {
        name: "rms_norm",
        src: include_str!("../kernels/rms_norm.cu"),
        parts: &[],
    },
    KernelSource {
        name: "matmul",
        src: MATMUL_SRC,
        parts: &MATVEC_PARTS,
    },
    KernelSource {
        name: "rope",
        src: include_str!("../kernels/rope.cu"),
        parts: &[],
    },
    KernelSource {
        name: "attention",
        src: include_str!("../kernels/attention.cu"),
        parts: &[],
    },
    KernelSource {
        name: "silu_mul",
        src: include_str!("../kernels/silu_mul.cu"),
        parts: &[],
    },
    KernelSource {
        name: "add",
        src: include_str!("../kernels/add.cu"),
        parts: &[],
    },
    KernelSource {
        name: "gelu_mul",
        src: GELU_SRC,
        parts: &[],
    },
    KernelSource {
        name: "scale",
        src: include_str!("../kernels/scale.cu"),
        parts: &[],
    },
    KernelSource {
        name: "softcap",
        src: include_str!("../kernels/softcap.cu"),
        parts: &[],
    },
    KernelSource {
        name: "clamp",
        src: include_str!("../kernels/clamp.cu"),
        parts: &[],
    },
    KernelSource {
        name: "center",
        src: CENTER_SRC,
        parts: &[],
    },
    KernelSource {
        name: "lora",
        src: LORA_SRC,
        parts: &[],
    },
    KernelSource {
        name: "logits",
        src: LOGITS_SRC,
        parts: &[],
    },
];

/// A compiled kernel file.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// PTX text.
    pub ptx: String,
    /// NVRTC's log (warnings); empty when the compile was clean.
    pub log: String,
}

/// The define that compiles matmul.cu's `fused-silu` and `norm-in-matvec` entries (the `_silu`
/// and `_norm` matvecs): the backend passes it for that file where either switch is on.
pub const MATVEC_FOLDS_DEFINE: &str = "-DDLP_MATVEC_FOLDS";

/// The NVRTC options for `arch` (e.g. `sm_90`).
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "-lineinfo".into(),
        "--std=c++17".into(),
        // Parity with the CPU reference: IEEE division and square root, no flush to zero.
        "--ftz=false".into(),
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
    ]
}

/// Makes sure libnvrtc can be loaded, without cudarc's panic when it cannot. `DLP_NVRTC_LIB`
/// (a file, or the folder holding `libnvrtc.so.*`) is loaded first: cudarc's later `dlopen` by
/// name then finds the already-loaded library.
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("DLP_NVRTC_LIB") {
                let p = PathBuf::from(p);
                let file = if p.is_dir() {
                    std::fs::read_dir(&p)
                        .ok()
                        .and_then(|d| {
                            d.filter_map(|e| e.ok().map(|e| e.path())).find(|f| {
                                f.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.starts_with("libnvrtc.so"))
                            })
                        })
                        .ok_or_else(|| {
                            format!("DLP_NVRTC_LIB={}: no libnvrtc.so* there", p.display())
                        })?
                } else {
                    p
                };
                // SAFETY: loading libnvrtc runs only its (trusted) initialisers.
                let lib = unsafe { libloading::Library::new(&file) }
                    .map_err(|e| format!("DLP_NVRTC_LIB={}: {e}", file.display()))?;
                std::mem::forget(lib); // stays loaded for cudarc
            }
            // SAFETY: only dlopen()s candidate names; no symbol is called.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(())
            } else {
                Err(
                    "no NVRTC library found (libnvrtc.so.13/.12): install the CUDA toolkit or \
                     the nvidia-cuda-nvrtc-cu12 wheel and add its lib folder to LD_LIBRARY_PATH \
                     (or set DLP_NVRTC_LIB)"
                        .into(),
                )
            }
        })
        .clone()
}

/// FNV-1a of `parts` (each followed by a 0 byte): a stable hash for cache keys (std's hasher
/// may change between Rust releases). Also keys the CPU builds of the kernels' tests.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Compiles one kernel file for `arch` with [`options`] and `extra` (e.g. `-DDLP_PDL`), or
/// returns the cached PTX. Errors name the kernel file and carry NVRTC's log.
pub fn compile(k: &KernelSource, arch: &str, extra: &[&str]) -> Result<Compiled, String> {
    static MEM: OnceLock<Mutex<HashMap<u64, Compiled>>> = OnceLock::new();
    probe()?;
    let mut opts = options(arch);
    opts.extend(extra.iter().map(|s| s.to_string()));
    let version = nvrtc_version();
    let mut parts = vec![PRELUDE, k.src, version.as_str()];
    parts.extend(opts.iter().map(String::as_str));
    let key = fnv1a(&parts);
    let mem = MEM.get_or_init(Default::default);
    if let Some(c) = mem.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let file = ptx_cache::dir().map(|d| d.join(format!("{}-{arch}-{key:016x}.ptx", k.name)));
    let c = ptx_cache::get_or_compile(file.as_deref(), ptx_cache::LOCK_WAIT, || {
        compile_uncached(k, &opts)
    })?;
    mem.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, c.clone());
    Ok(c)
}

/// A module the backend compiles and loads: a kernel file, the defines it is compiled with
/// beyond [`options`], and which of its parts it is.
#[derive(Debug, Clone)]
pub struct ModuleSource {
    /// The kernel file.
    pub file: &'static KernelSource,
    /// The file's defines (e.g. `-DDLP_PDL`, the tuning knobs it reads).
    pub extra: Vec<String>,
    /// The part's define (one of `file.parts`), or None for a whole file.
    pub part: Option<&'static str>,
}

impl ModuleSource {
    /// Every define to compile it with: [`ModuleSource::extra`], then the part's.
    pub fn defines(&self) -> Vec<&str> {
        let extra = self.extra.iter().map(String::as_str);
        extra.chain(self.part).collect()
    }

    /// `matmul.cu`, or `matmul.cu (-DDLP_MATVEC_PART=8)` for a part: for error messages.
    pub fn label(&self) -> String {
        match self.part {
            Some(part) => format!("{}.cu ({part})", self.file.name),
            None => format!("{}.cu", self.file.name),
        }
    }
}

/// The modules a backend loads, in the order to compile them (longest first: the parts of
/// a split file, then the others by the length of their source): every file of [`SOURCES`]
/// with the defines it reads ([`Tune::defines_for`]), `-DDLP_PDL` with `dependent_launch` (the
/// kernels that may precede a dependent matvec release it at their start), matmul.cu with
/// [`MATVEC_FOLDS_DEFINE`] with `folds`, and a file with parts once per part.
pub fn modules(dependent_launch: bool, folds: bool, tune: &Tune) -> Vec<ModuleSource> {
    let mut mods = Vec::new();
    for file in &SOURCES {
        let mut extra = tune.defines_for(file.name);
        if dependent_launch {
            extra.push("-DDLP_PDL".into());
        }
        if folds && file.name == "matmul" {
            extra.push(MATVEC_FOLDS_DEFINE.into());
        }
        if file.parts.is_empty() {
            mods.push(ModuleSource {
                file,
                extra,
                part: None,
            });
            continue;
        }
        for part in file.parts {
            let extra = extra.clone();
            mods.push(ModuleSource {
                file,
                extra,
                part: Some(part),
            });
        }
    }
    mods.sort_by_key(|m| (m.part.is_none(), std::cmp::Reverse(m.file.src.len())));
    mods
}

/// Runs `job` for every module of `mods` (the backend's [`ModuleSource`]s: compile with
/// [`compile`], then load, the driver's JIT compile; the compile check's (file, options)
/// pairs) on up to `threads` threads, each taking the next module in order. Why: one compile
/// keeps one core busy, and a cold start compiled one file after another (26 s of NVRTC on one
/// core here); with enough cores the longest module bounds it. Returns the answers in `mods`'
/// order, or the first error in that order (no module is started after an error).
pub fn each_module<M: Sync, T: Send>(
    mods: &[M],
    threads: usize,
    job: impl Fn(&M) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    // Modules are taken in order, so when one fails every module before it has been taken:
    // stopping there still finds the first error in order.
    let work = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(m) = mods.get(i) else { break };
            let r = job(m);
            failed.fetch_or(r.is_err(), Ordering::Relaxed);
            done.push((i, r));
        }
        done
    };
    let mut done: Vec<(usize, Result<T, String>)> = std::thread::scope(|s| {
        // NVRTC's parser recurses deeply: the main thread's 8 MiB, not a spawned one's 2. A
        // thread that cannot be made leaves its modules to the others.
        let workers: Vec<_> = (1..threads.clamp(1, mods.len().max(1)))
            .filter_map(|_| {
                let b = std::thread::Builder::new().name("dlp-kernels".into());
                b.stack_size(8 << 20).spawn_scoped(s, work).ok()
            })
            .collect();
        let mut done = work();
        for w in workers {
            // A panic in a worker (a bug, not a compile error) goes on in this thread.
            done.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        done
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The names of a PTX module's entry points (`.entry name(`), in the module's order.
pub fn entry_names(ptx: &str) -> impl Iterator<Item = &str> {
    ptx.split(".entry ")
        .skip(1)
        .filter_map(|p| p.split('(').next())
}

/// `major.minor` of the loaded libnvrtc (part of the cache key: PTX differs between versions).
pub fn nvrtc_version() -> String {
    let (mut a, mut b) = (0, 0);
    // SAFETY: two out-pointers to live ints; `probe` has loaded the library.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) };
    if r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        format!("{a}.{b}")
    } else {
        String::new()
    }
}

/// Compiles [`PRELUDE`] and the file without any cache (the CI compile check uses this to see
/// every warning).
pub fn compile_uncached(k: &KernelSource, opts: &[String]) -> Result<Compiled, String> {
    probe()?;
    let src = CString::new(format!("{PRELUDE}{}", k.src))
        .map_err(|_| format!("kernel {}: NUL in source", k.name))?;
    let name = CString::new(format!("{}.cu", k.name)).expect("kernel names have no NUL");
    let prog = nv::create_program(&src, Some(&name))
        .map_err(|e| format!("kernel {}: nvrtcCreateProgram: {e:?}", k.name))?;
    // SAFETY: `prog` is a live program until destroyed below; options are plain strings.
    let res = unsafe { nv::compile_program(prog, opts) };
    // SAFETY: as above.
    let log = unsafe { nv::get_program_log(prog) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    let out = match res {
        Err(e) => Err(format!(
            "kernel {}.cu failed to compile for {} ({e:?}):\n{}",
            k.name,
            opts.first().map(String::as_str).unwrap_or(""),
            log.trim_end()
        )),
        // SAFETY: as above; the compile succeeded so PTX exists.
        Ok(()) => unsafe { nv::get_ptx(prog) }
            .map(|p| Compiled {
                ptx: c_chars_to_string(&p),
                log: log.trim().to_string(),
            })
            .map_err(|e| format!("kernel {}: nvrtcGetPTX: {e:?}", k.name)),
    };
    // SAFETY: destroyed exactly once.
    let _ = unsafe { nv::destroy_program(prog) };
    out
}

fn c_chars_to_string(v: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        // c_char is i8 on x86-64 and u8 on aarch64: its byte either way.
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module list: every file once, matmul.cu once per part (its parts first, the
    /// largest bucket first, each with its part's define last), and each file with the
    /// defines that belong to it.
    #[test]
    fn modules_split_matmul_into_its_parts_with_each_files_defines() {
        let plain = modules(false, false, &Tune::default());
        let names: Vec<&str> = plain.iter().map(|m| m.file.name).collect();
        assert_eq!(
            names.len(),
            SOURCES.len() - 1 + MATVEC_PARTS.len(),
            "{names:?}"
        );
        assert_eq!(&names[..4], ["matmul"; 4], "{names:?}");
        for k in &SOURCES {
            assert!(names.contains(&k.name), "{} missing: {names:?}", k.name);
        }
        for (m, part) in plain.iter().zip(MATVEC_PARTS) {
            assert_eq!(
                (m.part, m.defines()),
                (Some(part), vec![part]),
                "{}",
                m.label()
            );
            assert_eq!(m.label(), format!("matmul.cu ({part})"));
        }
        assert!(plain[4..].iter().all(|m| m.defines().is_empty()));
        assert_eq!(plain[4].label(), format!("{}.cu", plain[4].file.name));

        let tune = Tune::parse("matvec_unroll=8,tiled_rows=4").unwrap();
        for m in modules(true, true, &tune) {
            let has = |d: &str| m.defines().iter().any(|e| e.starts_with(d));
            assert!(has("-DDLP_PDL"), "{}: {:?}", m.label(), m.defines());
            let matmul = m.file.name == "matmul";
            assert_eq!(has("-DMATVEC_UNROLL=8"), matmul, "{}", m.label());
            assert_eq!(has(MATVEC_FOLDS_DEFINE), matmul, "{}", m.label());
            assert_eq!(has("-DDLP_MATVEC_PART="), matmul, "{}", m.label());
            assert_eq!(
                has("-DTILED_ROWS=4"),
                m.file.name == "lora",
                "{}",
                m.label()
            );
            if matmul {
                assert!(m
                    .defines()
                    .last()
                    .unwrap()
                    .starts_with("-DDLP_MATVEC_PART="));
            }
        }
    }

    /// Answers in the modules' order whatever thread ran each, the first error in that order,
    /// and no module run twice or left out.
    #[test]
    fn each_module_answers_in_order_and_reports_the_first_error() {
        let mods = modules(false, false, &Tune::default());
        let runs = std::sync::atomic::AtomicUsize::new(0);
        for threads in [0, 1, 3, 64] {
            runs.store(0, std::sync::atomic::Ordering::Relaxed);
            let got = each_module(&mods, threads, |m| {
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(m.label())
            })
            .unwrap();
            let want: Vec<String> = mods.iter().map(ModuleSource::label).collect();
            assert_eq!(got, want, "{threads} threads");
            assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), mods.len());
        }
        let failing = |m: &ModuleSource| match m.file.name {
            "lora" | "add" => Err(format!("{} broke", m.label())),
            _ => Ok(()),
        };
        let first = mods.iter().position(|m| failing(m).is_err()).unwrap();
        for threads in [1, 3] {
            let e = each_module(&mods, threads, failing).unwrap_err();
            assert_eq!(
                e,
                format!("{} broke", mods[first].label()),
                "{threads} threads"
            );
        }
        // One thread stops at the first error: nothing after it runs.
        runs.store(0, std::sync::atomic::Ordering::Relaxed);
        let _ = each_module(&mods, 1, |m| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            failing(m)
        });
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), first + 1);
        assert!(each_module(&[], 4, failing).unwrap().is_empty());
    }
}

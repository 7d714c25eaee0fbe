//! The check's compiles: each (file, options) once per process, from and to the check cache
//! in the target folder, and several at a time where a test asks for them ahead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use dlp_cuda::nvrtc::{Compiled, KernelSource};

/// [`dlp_cuda::nvrtc::compile_uncached`], once per (file, options) for the whole binary: the
/// tests read the same PTX (matmul.cu with its fold entries and lora.cu for sm_90 several
/// times each), and NVRTC takes most of this binary's time (about three minutes on two
/// cores). A test asking for one another test is compiling waits for it. Successful
/// compiles also come from, and go to, the check cache ([`check_cache`]).
pub(crate) fn compile_uncached(k: &KernelSource, opts: &[String]) -> Result<Compiled, String> {
    type Slot = Arc<OnceLock<Result<Compiled, String>>>;
    static DONE: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let key = format!("{}\n{}\n{}", k.name, k.src, opts.join("\n"));
    let slot = {
        // A test that panicked while holding the lock left the map whole: go on with it.
        let done = DONE.get_or_init(Default::default).lock();
        done.unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    };
    slot.get_or_init(|| {
        let file = check_cache(k, opts);
        if let Some(c) = file.as_deref().and_then(read_cached) {
            let first = opts.first().map(String::as_str).unwrap_or("");
            eprintln!(
                "{}.cu ({first}, ...): NVRTC's answer from the check cache",
                k.name
            );
            return Ok(c);
        }
        let c = dlp_cuda::nvrtc::compile_uncached(k, opts);
        if let (Ok(c), Some(f)) = (&c, file) {
            let text = format!("{}\n{}{}", c.log.len(), c.log, c.ptx);
            dlp_cuda::ptx_cache::write_cache_file(&f, text.as_bytes());
        }
        c
    })
    .clone()
}

/// Compiles `jobs` on two threads, in the given order (longest first), before a test reads
/// them one by one ([`compile_uncached`] keeps every answer, errors too, for those reads).
/// One NVRTC compile uses one core: tests compiling their variants in turn left a core idle
/// behind the longest (with an empty cache, 147 s of wall time for 198 s of CPU on two cores;
/// 100 s with this).
pub(crate) fn prefetch(jobs: &[(&KernelSource, Vec<String>)]) {
    // Errors are kept for the reads too, so no job is an error here: all of them run.
    let _ = dlp_cuda::nvrtc::each_module(jobs, 2, |(k, opts)| {
        let _ = compile_uncached(k, opts);
        Ok(())
    });
}

/// The check cache's file for `k` compiled with `opts`: `nvrtc_compile/<file>-<key>` in the
/// target folder, the key an FNV-1a of everything NVRTC's answer depends on. `None` with
/// `DLP_NVRTC_CHECK_CACHE=off`. Only successes are kept (an error is always compiled again).
fn check_cache(k: &KernelSource, opts: &[String]) -> Option<std::path::PathBuf> {
    if std::env::var_os("DLP_NVRTC_CHECK_CACHE").is_some_and(|v| v == "off") {
        return None;
    }
    // The library and the calling code, the same for every compile of this process.
    static COMPILER: OnceLock<String> = OnceLock::new();
    let compiler = COMPILER.get_or_init(|| {
        let caller = include_str!("../../src/nvrtc.rs");
        let version = dlp_cuda::nvrtc::nvrtc_version();
        format!("{caller}\n{version}\n{}", loaded_nvrtc_files())
    });
    let mut parts = vec![dlp_cuda::nvrtc::PRELUDE, k.src, compiler.as_str()];
    parts.extend(opts.iter().map(String::as_str));
    let key = dlp_cuda::nvrtc::fnv1a(&parts);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvrtc_compile");
    Some(dir.join(format!("{}-{key:016x}", k.name)))
}

/// The libnvrtc this process has loaded (`/proc/self/maps`), as path, size and modification
/// time: a patch release in the same place changes them. Not its builtins library, which
/// NVRTC loads at its first compile (a key must not depend on whether one ran before it).
fn loaded_nvrtc_files() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with("libnvrtc.so"))
        })
        .collect();
    files.sort_unstable();
    files.dedup();
    let id = |p: &str| {
        let m = std::fs::metadata(p).ok();
        let mtime = m.as_ref().and_then(|m| m.modified().ok());
        format!("{p} {:?} {mtime:?}", m.map(|m| m.len()))
    };
    files.into_iter().map(id).collect::<Vec<_>>().join("\n")
}

/// A cached compile (written with [`dlp_cuda::ptx_cache::write_cache_file`]): the log's length in
/// bytes on the first line, then the log, then the PTX.
fn read_cached(f: &std::path::Path) -> Option<Compiled> {
    let text = std::fs::read_to_string(f).ok()?;
    let (len, rest) = text.split_once('\n')?;
    let len: usize = len.parse().ok()?;
    let (log, ptx) = (rest.get(..len)?, rest.get(len..)?);
    // A file cut short (a run killed while writing it) holds no entry: compile again.
    ptx.contains(".entry").then(|| Compiled {
        ptx: ptx.to_string(),
        log: log.to_string(),
    })
}

//! The on-disk PTX cache of [`crate::nvrtc::compile`]: one file per (kernel file, options,
//! NVRTC version) key, written through a rename, and compiled by one process at a time.
//!
//! Why the lock: processes that start together on one machine (the replicas of a node, the
//! test processes of `scripts/gpu-check.sh`, six at a time) all found the cache cold and each
//! compiled every module, several times the CPU of one cold start on the same cores. Now the
//! first to take an entry's lock compiles it, and the others wait for its file.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::nvrtc::Compiled;

/// How long a compile waits for another process's compile of the same entry before it
/// compiles the entry itself: past the longest cold compile seen (a module takes up to about
/// 40 s on one busy core), and short enough that a stopped holder costs only that.
pub const LOCK_WAIT: Duration = Duration::from_secs(180);

/// Where PTX is cached on disk: `DLP_CUDA_CACHE`, else `$XDG_CACHE_HOME` or `~/.cache`, under
/// `dlp-run/ptx`. `DLP_CUDA_CACHE=off` disables the disk cache.
pub fn dir() -> Option<PathBuf> {
    match std::env::var_os("DLP_CUDA_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("dlp-run").join("ptx")),
    }
}

/// The cached PTX of `file`, else `compile()`'s, written to `file` for the next process. While
/// one process (or thread) compiles an entry, the others that want it wait on its lock (at most
/// `wait`) and then read its file. `file` None: no disk cache, always compiled. Errors are
/// `compile`'s; a cache that cannot be read, locked or written only costs a compile.
pub fn get_or_compile(
    file: Option<&Path>,
    wait: Duration,
    compile: impl FnOnce() -> Result<Compiled, String>,
) -> Result<Compiled, String> {
    let Some(file) = file else {
        return compile();
    };
    if let Some(c) = read(file) {
        return Ok(c);
    }
    let _lock = EntryLock::acquire(file, wait);
    // Written while this one waited: another process compiled it.
    if let Some(c) = read(file) {
        return Ok(c);
    }
    let c = compile()?;
    write_cache_file(file, c.ptx.as_bytes());
    Ok(c)
}

fn read(file: &Path) -> Option<Compiled> {
    std::fs::read_to_string(file).ok().map(|ptx| Compiled {
        ptx,
        log: String::new(),
    })
}

/// An exclusive lock on `<entry>.lock` beside a cache entry (an OS file lock: released when the
/// holder closes it or dies, so a crashed compile never blocks the next). The lock files stay,
/// empty, one per entry: removing one could let two holders lock two different files.
struct EntryLock {
    _held: File,
}

impl EntryLock {
    /// Waits for the lock for up to `wait` (polling: a blocking lock could wait forever on a
    /// stopped process). None where it cannot be had (a read-only folder, a file system
    /// without locks, the wait over): the caller compiles without it.
    fn acquire(entry: &Path, wait: Duration) -> Option<EntryLock> {
        let _ = entry.parent().map(std::fs::create_dir_all);
        let path = entry.with_extension("lock");
        // Read-only where it cannot be written (another user's): a file lock needs no more.
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path))
            .ok()?;
        let until = Instant::now() + wait;
        loop {
            match f.try_lock() {
                Ok(()) => return Some(EntryLock { _held: f }),
                Err(TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(25))
                }
                Err(TryLockError::WouldBlock) => {
                    tracing::warn!(
                        "{}: another process held this kernel cache entry for {} s; \
                         compiling it here too",
                        entry.display(),
                        wait.as_secs()
                    );
                    return None;
                }
                Err(TryLockError::Error(_)) => return None,
            }
        }
    }
}

/// Writes a cache file `f` (and its folder) through a temporary name and a rename, so that a
/// reader never sees half of one. Best effort: a cache that cannot be written only costs a
/// compile next time. Also the CI compile check's cache (cuda/tests/nvrtc_compile/cache.rs).
pub fn write_cache_file(f: &Path, bytes: &[u8]) {
    // Unique per write, not only per process: threads may write the same file at once (two
    // backends made at the same time compile the same modules).
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let _ = f.parent().map(std::fs::create_dir_all);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = f.with_extension(format!("tmp{}-{n}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlp-ptx-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Four compiles of one cold entry at once: one compiles (slowly), the others wait for its
    /// file and read the same PTX. Without the lock all four compiled.
    #[test]
    fn one_compile_per_entry_when_several_want_it_at_once() {
        let d = scratch("once");
        let entry = d.join("matmul-sm_90-0123.ptx");
        if EntryLock::acquire(&entry, Duration::ZERO).is_none() {
            // A platform without std file locks (illumos): compiles are only not shared there.
            println!("SKIPPED: no file locks on this platform");
            return;
        }
        let (compiles, start) = (AtomicUsize::new(0), Barrier::new(4));
        let got: Vec<Compiled> = std::thread::scope(|s| {
            let jobs: Vec<_> = (0..4)
                .map(|i| {
                    let (entry, compiles, start) = (&entry, &compiles, &start);
                    s.spawn(move || {
                        start.wait();
                        get_or_compile(Some(entry), LOCK_WAIT, || {
                            compiles.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(300));
                            Ok(Compiled {
                                ptx: format!("ptx of thread {i}"),
                                log: String::new(),
                            })
                        })
                        .unwrap()
                    })
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        assert_eq!(compiles.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|c| c.ptx == got[0].ptx), "{got:?}");
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), got[0].ptx);
        // Warm: read, not compiled.
        let c = get_or_compile(Some(&entry), LOCK_WAIT, || Err("compiled".into())).unwrap();
        assert_eq!(c.ptx, got[0].ptx);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A holder that never finishes delays a compile by `wait`, not forever; a failed compile
    /// leaves no entry and releases the lock; no cache file means a plain compile.
    #[test]
    fn a_held_lock_waits_only_so_long_and_errors_leave_no_entry() {
        let d = scratch("held");
        let entry = d.join("lora-sm_90-4567.ptx");
        let held = EntryLock::acquire(&entry, LOCK_WAIT).expect("a fresh lock");
        let t = Instant::now();
        let c = get_or_compile(Some(&entry), Duration::from_millis(200), || {
            Ok(Compiled {
                ptx: "late".into(),
                log: String::new(),
            })
        })
        .unwrap();
        assert_eq!(c.ptx, "late");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        drop(held);

        let other = d.join("add-sm_90-89ab.ptx");
        let e = get_or_compile(
            Some(&other),
            LOCK_WAIT,
            || Err("kernel add.cu broke".into()),
        );
        assert_eq!(e.unwrap_err(), "kernel add.cu broke");
        assert!(!other.exists());
        assert!(EntryLock::acquire(&other, Duration::ZERO).is_some());
        let c = get_or_compile(None, LOCK_WAIT, || {
            Ok(Compiled {
                ptx: "uncached".into(),
                log: "warning".into(),
            })
        })
        .unwrap();
        assert_eq!((c.ptx.as_str(), c.log.as_str()), ("uncached", "warning"));
        let _ = std::fs::remove_dir_all(&d);
    }
}

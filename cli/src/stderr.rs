//! Standard error around C libraries: Vulkan drivers print to file descriptor 2 while an
//! adapter is probed or opened (Mesa's `XDG_RUNTIME_DIR is invalid`, twice, on a headless
//! machine). Those lines are silenced or captured; log lines go to a duplicate of fd 2 made at
//! start, so capturing fd 2 never captures (or hides) our own.

#[cfg(unix)]
use std::sync::OnceLock;

/// A duplicate of standard error made on first use (at start, by the log setup), or None
/// where duplicating failed.
#[cfg(unix)]
fn log_file() -> Option<&'static std::fs::File> {
    use std::os::fd::FromRawFd;
    static FILE: OnceLock<Option<std::fs::File>> = OnceLock::new();
    FILE.get_or_init(|| {
        // SAFETY: dup returns a new descriptor this process owns, handed to one File.
        let fd = unsafe { libc::dup(2) };
        (fd >= 0).then(|| unsafe { std::fs::File::from_raw_fd(fd) })
    })
    .as_ref()
}

/// The writer for log lines (`tracing_subscriber`'s `with_writer`): the duplicate of
/// standard error, else standard error itself.
pub fn log_writer() -> Box<dyn std::io::Write> {
    #[cfg(unix)]
    if let Some(f) = log_file() {
        return Box::new(f);
    }
    Box::new(std::io::stderr())
}

/// Runs `f` with standard error (fd 2) pointed at /dev/null, so that C libraries it calls
/// print nothing; restored afterwards.
#[cfg(feature = "wgpu")]
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    captured(f).0
}

/// Runs `f` with standard error (fd 2) pointed at a temporary file, restored afterwards;
/// returns what was written there. Without a temporary file, `f` runs as is and "" comes
/// back.
#[cfg(feature = "wgpu")]
pub fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[cfg(unix)]
    {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let Ok(mut file) = tempfile::tempfile() else {
            return (f(), String::new());
        };
        // Made before fd 2 moves, so that log lines written meanwhile are not captured.
        let _ = log_file();
        // SAFETY: dup/dup2/close on descriptors this function owns or restores; fd 2 always
        // points at a valid file (the original or the temporary one) in between.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return (f(), String::new());
        }
        unsafe { libc::dup2(file.as_raw_fd(), 2) };
        let out = f();
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
        let mut text = String::new();
        let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
        (out, text)
    }
    #[cfg(not(unix))]
    (f(), String::new())
}

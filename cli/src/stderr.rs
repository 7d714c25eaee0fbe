//! Standard error around C libraries: Vulkan drivers print to file descriptor 2 while an
//! adapter is probed or opened (Mesa's `XDG_RUNTIME_DIR is invalid`, twice, on a headless
//! machine). Those lines are silenced or captured; log lines go to a duplicate of fd 2 made
//! before fd 2 first moves, so capturing fd 2 never captures (or hides) our own.

#[cfg(unix)]
use std::sync::OnceLock;

/// A duplicate of standard error, made on first use (the first log line, or a capture, which
/// makes it before it moves fd 2), or None where duplicating failed. Close-on-exec, so child
/// processes (the bench peers) do not inherit it.
#[cfg(unix)]
fn log_file() -> Option<&'static std::fs::File> {
    use std::os::fd::FromRawFd;
    static FILE: OnceLock<Option<std::fs::File>> = OnceLock::new();
    FILE.get_or_init(|| {
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor this process owns, handed to one
        // File.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
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
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        return redirected(&null, f);
    }
    f()
}

/// Runs `f` with standard error (fd 2) pointed at a temporary file, restored afterwards;
/// returns what was written there (invalid UTF-8 as U+FFFD). Without a temporary file, `f`
/// runs as is and "" comes back.
#[cfg(feature = "wgpu")]
pub fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[cfg(unix)]
    {
        use std::io::{Read, Seek};
        let Ok(mut file) = tempfile::tempfile() else {
            return (f(), String::new());
        };
        let out = redirected(&file, f);
        let mut bytes = Vec::new();
        let _ = file.rewind().and_then(|()| file.read_to_end(&mut bytes));
        (out, String::from_utf8_lossy(&bytes).into_owned())
    }
    #[cfg(not(unix))]
    (f(), String::new())
}

/// Runs `f` with fd 2 pointed at `to`; restored when `f` returns or panics (a driver fault),
/// so the panic's message is not lost in `to`.
#[cfg(all(unix, feature = "wgpu"))]
fn redirected<T>(to: &std::fs::File, f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: `self.0` is the duplicate of fd 2 made below, owned here.
            unsafe {
                libc::dup2(self.0, 2);
                libc::close(self.0);
            }
        }
    }
    // Made before fd 2 moves, so that log lines written meanwhile still reach the terminal.
    let _ = log_file();
    // SAFETY: dup/dup2 on descriptors this function owns or restores (by `Restore`); fd 2
    // always points at a valid file (the original or `to`) in between.
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return f();
    }
    let _restore = Restore(saved);
    unsafe { libc::dup2(to.as_raw_fd(), 2) };
    f()
}

/// Whether what goes to stderr shows in the same place as stdout: both on a terminal, or
/// both the same file or pipe (`> log 2>&1`, `2>&1 | tee`), where a line written to stderr
/// lands in the middle of stdout's.
pub fn same_as_stdout() -> bool {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let id = |fd: std::os::fd::BorrowedFd<'_>| {
            let f = std::fs::File::from(fd.try_clone_to_owned().ok()?);
            let m = f.metadata().ok()?;
            Some((m.dev(), m.ino()))
        };
        let (out, err) = (id(std::io::stdout().as_fd()), id(std::io::stderr().as_fd()));
        out.is_some() && out == err
    }
    #[cfg(not(unix))]
    false
}

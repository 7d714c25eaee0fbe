//! One error type for the engine: every variant says which file / field / tensor is at fault
//! and what was expected, so the CLI can print it as is and exit non-zero.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read at all.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error: printed in this error's message, so not also returned as its
        /// `source()` (an error chain, anyhow's `{:#}`, would print it twice).
        error: std::io::Error,
    },
    /// A file was read but its content is wrong (corrupt, truncated, wrong field, wrong shape).
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, with expected vs found.
        msg: String,
    },
    /// A request (prompt, mixture, flag) that cannot be served.
    #[error("{0}")]
    Invalid(String),
    /// Valid input that this engine does not support (yet); the message says what to do.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A backend failed (device lost, out of memory, kernel error).
    #[error("backend {backend}: {msg}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What failed.
        msg: String,
    },
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A content error in `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }
    /// An invalid request.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    /// An unsupported feature.
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
}

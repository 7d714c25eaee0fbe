//! The router's error type.

use std::path::PathBuf;

/// Everything that can go wrong loading, training, evaluating or applying a router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error: printed in this error's message, so not also returned as its
        /// `source()` (an error chain would print it twice).
        error: std::io::Error,
    },
    /// `router.json` or a data line is not the JSON we expect.
    #[error("{path}: {msg}")]
    Json {
        /// The file involved (with `:LINE` for jsonl data).
        path: String,
        /// What was wrong.
        msg: String,
    },
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// `router.safetensors` is missing a tensor or a tensor has the wrong shape.
    #[error("router weights: {0}")]
    Weights(String),
    /// Router labels and loaded adapters do not correspond one to one.
    #[error("{0}")]
    LabelMismatch(String),
    /// Training or evaluation data is unusable (no examples, unknown labels, ...).
    #[error("data: {0}")]
    Data(String),
    /// A hyper-parameter is out of its range.
    #[error("{field} must be {expected}, got {got}")]
    Config {
        /// The [`crate::train::TrainConfig`] field (the CLI flag with `_` for `-`).
        field: &'static str,
        /// The range expected.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A plot could not be drawn or written.
    #[error("{0}")]
    Plot(String),
    /// Training failed (backend unavailable, diverged, ...).
    #[error("training: {0}")]
    Train(String),
}

impl RouterError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        RouterError::Io {
            path: path.into(),
            error,
        }
    }
}

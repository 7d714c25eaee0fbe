//! Host-side tensors as the loaders produce them: f32, row-major, with the HF tensor name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A named f32 tensor in host memory, row-major.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Shape, outermost first (a linear weight is `[out, in]` as in PyTorch).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and values (the product of `shape` must equal `data.len()`).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Index and value of the first NaN or infinity, if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (i, self.data[i]))
    }
}

/// Tensors by HF name (e.g. `model.layers.0.self_attn.q_proj.weight`), with the file they came
/// from for error messages. Loaders fill it; the model takes what it needs, checking shapes.
#[derive(Debug, Default)]
pub struct WeightMap {
    tensors: HashMap<String, (HostTensor, PathBuf)>,
    /// Where the weights came from (a directory or a file), for messages.
    pub origin: PathBuf,
}

impl WeightMap {
    /// An empty map for weights from `origin`.
    pub fn new(origin: impl AsRef<Path>) -> Self {
        WeightMap {
            tensors: HashMap::new(),
            origin: origin.as_ref().to_path_buf(),
        }
    }

    /// Adds a tensor read from `file`; refuses NaN/inf values, naming the tensor.
    pub fn insert(&mut self, name: String, t: HostTensor, file: &Path) -> Result<()> {
        if let Some((i, v)) = t.first_non_finite() {
            return Err(Error::format(
                file,
                format!("tensor `{name}` holds a non-finite value ({v}) at flat index {i}: the weights are corrupt"),
            ));
        }
        self.tensors.insert(name, (t, file.to_path_buf()));
        Ok(())
    }

    /// Whether a tensor is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor names (unordered).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// Removes and returns a tensor, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let (t, file) = self.tensors.remove(name).ok_or_else(|| {
            Error::format(
                &self.origin,
                format!("missing tensor `{name}` (expected shape {shape:?})"),
            )
        })?;
        if t.shape != shape {
            return Err(Error::format(
                file,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape
                ),
            ));
        }
        Ok(t)
    }

    /// Removes and returns a tensor if present, checking its shape.
    pub fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<HostTensor>> {
        if self.contains(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

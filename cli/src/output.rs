//! Output files of the long-running commands: checked before the run (so a typo does not
//! throw the results away at its end) and written whole or not at all.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Checks, before a long run, that the file `flag` names can be written at its end: not a
/// directory, in a directory that exists, and a `.png` when `png` (the plots are PNGs); so a
/// typo does not throw away the run's results. The file itself is not touched.
pub fn check_output_path(flag: &str, path: &Path, png: bool) -> Result<()> {
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; give a file name",
            path.display()
        );
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png && !is_png {
        bail!(
            "{flag} {}: the plot is a PNG; name a .png file",
            path.display()
        );
    }
    Ok(())
}

/// Whether writing `out` would replace the model at `model`: the model file itself, or a file
/// directly in the model directory (a weight shard, the config, the tokenizer).
pub fn overwrites_model(out: &Path, model: &Path) -> bool {
    let (Ok(out), Ok(model)) = (out.canonicalize(), model.canonicalize()) else {
        return false;
    };
    out == model || (model.is_dir() && out.parent() == Some(model.as_path()))
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`: a failed
/// write leaves any earlier file whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", path.display()))
}

//! Output files of the long-running commands: checked before the run (so a typo does not
//! throw the results away at its end) and written whole or not at all.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What an output file holds, which its name must not contradict.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutFormat {
    /// Text (JSON): any name, a device such as `/dev/stdout` included.
    Text,
    /// A PNG plot: the name must end in `.png`.
    Png,
    /// A safetensors file: any name but one whose extension names another format (`.gguf`,
    /// `.json`, `.png`, ...), which a reader would take for that format.
    Safetensors,
}

/// Extensions of formats a safetensors file must not be named as.
const NOT_SAFETENSORS: [&str; 11] = [
    "gguf", "json", "jsonl", "png", "npy", "npz", "pt", "pth", "bin", "csv", "txt",
];

/// Checks, before a long run, that the file `flag` names can be written at its end: not a
/// directory, in a directory that exists, and named as its `format` allows ([`OutFormat`]);
/// so a typo does not throw away the run's results. The file itself is not touched.
pub fn check_output_path(flag: &str, path: &Path, format: OutFormat) -> Result<()> {
    let link = path;
    let path = &follow_link(path);
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
            link.display(),
            parent.display()
        );
    }
    let ext = (path.extension().and_then(|e| e.to_str())).map(str::to_ascii_lowercase);
    match format {
        OutFormat::Png if ext.as_deref() != Some("png") => bail!(
            "{flag} {}: the plot is a PNG; name a .png file",
            path.display()
        ),
        OutFormat::Safetensors if ext.is_some_and(|e| NOT_SAFETENSORS.contains(&e.as_str())) => {
            bail!(
                "{flag} {}: the file is written as safetensors, not as its name's `.{}`; name a .safetensors file",
                link.display(),
                path.extension().unwrap_or_default().to_string_lossy()
            )
        }
        _ => {}
    }
    // Written beside as a temporary file, then renamed ([`write_atomic`]): that must be
    // possible now, not after an evaluation of hours (`/proc/x.json` failed only then).
    // A device or FIFO is written in place.
    if !std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let probe = path.with_extension(format!("probe-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .with_context(|| format!("{flag} {}: cannot write there", link.display()))?;
        let _ = std::fs::remove_file(&probe);
    }
    Ok(())
}

/// Where writing `path` lands: a symlink's target (a dangling one's too, as a shell's `>`
/// would create it), else `path`. A loop stops after 40 links (Linux's limit); the write then
/// fails with the OS's error.
fn follow_link(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(target) => p = p.parent().unwrap_or(Path::new("")).join(target),
            Err(_) => break,
        }
    }
    p
}

/// What a run reads: files, and directories with the names of the files it reads in them
/// (`*.ext` matches by extension).
#[derive(Debug, Default)]
pub struct Inputs {
    files: Vec<PathBuf>,
    dirs: Vec<(PathBuf, &'static [&'static str])>,
}

/// The files a model directory's loader reads by name (its shards are added by name too).
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors",
    "model.safetensors.index.json",
];
/// The files a PEFT adapter's loader reads.
pub const ADAPTER_FILES: &[&str] = &[
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
];
/// The files a router's loader reads (its tokenizer may lie elsewhere: add it as a file).
pub const ROUTER_FILES: &[&str] = &[
    "router.json",
    "router.safetensors",
    "router-stats.safetensors",
    "tokenizer.json",
];

impl Inputs {
    /// Adds a file the run reads.
    pub fn file(&mut self, p: &Path) {
        self.files.push(p.to_path_buf());
    }

    /// Adds a directory the run reads the files `names` of.
    pub fn dir(&mut self, p: &Path, names: &'static [&'static str]) {
        self.dirs.push((p.to_path_buf(), names));
    }

    /// Adds a router's directory and its tokenizer (which router.json may place elsewhere);
    /// None: no router.
    pub fn router(&mut self, dir: Option<&Path>) {
        let Some(dir) = dir else { return };
        self.dir(dir, ROUTER_FILES);
        if let Ok(cfg) = dlp_router::config::RouterConfig::load(dir) {
            self.file(&cfg.tokenizer_path(dir));
        }
    }

    /// The input `out` would replace, if any: an input file itself, or an existing file the
    /// run reads in an input directory. Paths are compared resolved (`./a/../b`, symlinks).
    pub fn replaced_by(&self, out: &Path) -> Option<PathBuf> {
        let out = out.canonicalize().ok()?;
        let same = |p: &PathBuf| p.canonicalize().is_ok_and(|p| p == out);
        if let Some(f) = self.files.iter().find(|f| same(f)) {
            return Some(f.clone());
        }
        let (parent, name) = (out.parent()?, out.file_name()?.to_str()?);
        let read = |n: &&str| match n.strip_prefix('*') {
            Some(ext) => name.ends_with(ext),
            None => *n == name,
        };
        self.dirs
            .iter()
            .find(|(d, names)| {
                d.canonicalize().is_ok_and(|d| d == parent) && names.iter().any(read)
            })
            .map(|(d, _)| d.join(name))
    }
}

/// `p` with its directory (and `p` itself, when it exists) resolved; None when the directory
/// does not exist.
fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(p.file_name()?))
}

/// Checks, before a run, the files it will write (`(flag, path, format)` as
/// [`check_output_path`]; None: not asked for): each writable, no two the same file (the
/// second would replace the first's results), none an input of the run.
pub fn check_outputs(outputs: &[(&str, Option<&Path>, OutFormat)], inputs: &Inputs) -> Result<()> {
    let outputs: Vec<(&str, &Path, OutFormat)> = outputs
        .iter()
        .filter_map(|&(f, p, format)| Some((f, p?, format)))
        .collect();
    for (i, &(flag, path, format)) in outputs.iter().enumerate() {
        check_output_path(flag, path, format)?;
        if let Some(input) = inputs.replaced_by(path) {
            bail!(
                "{flag} {}: would replace {}, which this run reads; name another file",
                path.display(),
                input.display()
            );
        }
        for &(other, p, _) in &outputs[..i] {
            if resolve(p).is_some() && resolve(p) == resolve(path) {
                bail!(
                    "{flag} and {other} name the same file ({}); give each its own",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Writes `args` to standard output and flushes it, returning the error (a full disk, a
/// closed file) that `print!` would panic on; the macros [`out!`] and [`outln!`] call it.
pub fn print_out(args: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

/// `print!` that returns its error through `?` ([`print_out`]).
macro_rules! out {
    ($($t:tt)*) => {
        $crate::output::print_out(format_args!($($t)*))?
    };
}
/// `println!` that returns its error through `?` ([`print_out`]).
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::output::print_out(format_args!("{}\n", format_args!($($t)*)))?
    };
}
pub(crate) use {out, outln};

/// Writes `bytes` to `path` whole or not at all: to a temporary file beside it, then renamed
/// over it, so a failed write leaves any earlier file whole. A symlink is followed (its target
/// is replaced, the link stays); a path that is not a regular file (`/dev/null`, a FIFO) is
/// written in place, as a shell redirect would.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        std::fs::write(file, bytes).with_context(|| format!("writing {}", path.display()))
    })
}

/// Has `write` write the file `path` names whole or not at all, as [`write_atomic`] does: it
/// is given a temporary path beside `path`, with the same extension (the PNG writers read
/// the format from it), renamed over `path` once `write` succeeds; a path that is not a
/// regular file is given as is.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = follow_link(path);
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
        return write(&target);
    }
    let ext = target
        .extension()
        .map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    let tmp = target.with_extension(format!("tmp-{}{ext}", std::process::id()));
    let written = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, &target).with_context(|| format!("writing {}", path.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    // The writer's own message names the temporary file: name the one asked for.
    written.map_err(|e| {
        anyhow::anyhow!(
            "{}",
            format!("{e:#}").replace(&*tmp.to_string_lossy(), &path.to_string_lossy())
        )
    })
}

/// The start of [`write_files_atomic`]'s temporary folder's name; the process id follows.
#[cfg(feature = "train")]
const STAGING: &str = ".dlp-tmp-";

/// The temporary folders in `dir` that [`write_files_atomic`] runs left when interrupted:
/// named [`STAGING`] and the id of a process that is no longer running (checked in /proc,
/// so on Linux only; elsewhere none is taken for stale).
#[cfg(feature = "train")]
pub fn stale_staging(dir: &Path) -> Vec<PathBuf> {
    let proc = Path::new("/proc/self");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(STAGING));
            pid.is_some_and(|p| {
                p.parse::<u32>().is_ok()
                    && proc.exists()
                    && !Path::new("/proc").join(p).exists()
                    && e.file_type().is_ok_and(|t| t.is_dir())
            })
        })
        .map(|e| e.path())
        .collect()
}

/// Has `write` write a set of files (a router: weights, config, tokenizer, statistics) into
/// `dir`, all or none: they go into a temporary folder inside `dir` (so on its file system,
/// whatever `dir` is: `.`, a mount point), and each is renamed over its namesake once every
/// one is written, the file `last` (the config that names the others) last. A failed write (a
/// full disk) so leaves an earlier set whole; other files in `dir` stay. Errors name `dir`,
/// not the temporary folder.
#[cfg(feature = "train")]
pub fn write_files_atomic(
    dir: &Path,
    last: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // An interrupted earlier write (Ctrl-C while saving) left its folder: gone now.
    for stale in stale_staging(dir) {
        let _ = std::fs::remove_dir_all(stale);
    }
    let staging = dir.join(format!("{STAGING}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).with_context(|| format!("writing into {}", dir.display()))?;
    let written = write(&staging).map_err(|e| {
        // The writer's own message names the temporary folder: name the one asked for.
        let msg = format!("{e:#}").replace(&*staging.to_string_lossy(), &dir.to_string_lossy());
        anyhow::anyhow!("{msg} (nothing in {} was replaced)", dir.display())
    });
    let moved = written.and_then(|()| {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&staging)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort_by_key(|n| n == last);
        for n in names {
            std::fs::rename(staging.join(&n), dir.join(&n)).with_context(|| {
                format!(
                    "moving the new {} into {}",
                    n.to_string_lossy(),
                    dir.display()
                )
            })?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// Writes `v` as pretty JSON with a final newline to `path` (as [`write_atomic`]), its `f32`
/// numbers in their shortest form ([`tidy_floats`]).
pub fn write_json(path: &Path, mut v: serde_json::Value) -> Result<()> {
    tidy_floats(&mut v);
    write_atomic(path, (serde_json::to_string_pretty(&v)? + "\n").as_bytes())
}

/// Rewrites every non-integer number of `v` that is exactly an `f32` in that `f32`'s shortest
/// decimal form: serde_json widens an `f32` to the `f64` next to it, so a weight of 0.7 was
/// written as 0.699999988079071. Values computed in `f64` are exact `f32`s only by chance, and
/// then the shortest form names the same number to `f32` precision.
pub fn tidy_floats(v: &mut serde_json::Value) {
    use serde_json::{Number, Value};
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let f = x as f32;
            // Integer values stay: f32's shortest form of 2^31 is 2147483600.
            if f.is_finite() && f64::from(f) == x && x.fract() != 0.0 {
                // ryu writes the shortest form into a stack buffer: no allocation per number
                // of a streamed chunk.
                let shortest = ryu::Buffer::new().format_finite(f).parse().ok();
                if let Some(m) = shortest.and_then(Number::from_f64) {
                    *n = m;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(tidy_floats),
        Value::Object(o) => o.values_mut().for_each(tidy_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn f32_numbers_are_written_in_their_shortest_form() {
        let mut v = json!({"w": 0.7f32, "d": 0.1f64, "i": 3, "neg": -1.25e-7f32,
                           "a": [0.9f32, {"p": 0.3f32}], "s": "0.7", "big": 2147483648.0f64});
        assert_eq!(v["w"].as_f64(), Some(0.699999988079071));
        super::tidy_floats(&mut v);
        assert_eq!(
            v.to_string(),
            r#"{"w":0.7,"d":0.1,"i":3,"neg":-1.25e-7,"a":[0.9,{"p":0.3}],"s":"0.7","big":2147483648.0}"#
        );
    }

    /// The names in `dir`, sorted.
    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    /// A set of files is replaced all or none: a write that fails halfway leaves the earlier
    /// set as it was, names the folder asked for, and leaves no temporary folder; one that
    /// succeeds replaces its files, and other files in the folder stay.
    #[test]
    #[cfg(feature = "train")]
    fn file_sets_are_replaced_all_or_none() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("router");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a"), "old a").unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let e = super::write_files_atomic(&out, "a", |d| {
            std::fs::write(d.join("a"), "new a")?;
            anyhow::bail!("{}: disk full", d.join("b").display())
        })
        .unwrap_err();
        let e = format!("{e:#}");
        let want = format!("{}: disk full (nothing in", out.join("b").display());
        assert!(e.starts_with(&want), "{e}");
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "old a");
        assert_eq!(names(&out), ["a", "notes.txt"]);
        super::write_files_atomic(&out, "a", |d| {
            std::fs::write(d.join("a"), "new a")?;
            Ok(std::fs::write(d.join("b"), "new b")?)
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "new a");
        assert_eq!(names(&out), ["a", "b", "notes.txt"]);
        // An interrupted run's folder (a process id no system gives) goes at the next write;
        // a running process's (init's, here) stays.
        if std::path::Path::new("/proc/self").exists() {
            let stale = out.join(".dlp-tmp-999999999");
            std::fs::create_dir(&stale).unwrap();
            std::fs::write(stale.join("a"), "cut short").unwrap();
            let live = out.join(".dlp-tmp-1");
            std::fs::create_dir(&live).unwrap();
            assert_eq!(super::stale_staging(&out), std::slice::from_ref(&stale));
            super::write_files_atomic(&out, "a", |d| Ok(std::fs::write(d.join("a"), "a3")?))
                .unwrap();
            assert!(!stale.exists());
            std::fs::remove_dir(&live).unwrap();
            assert_eq!(names(&out), ["a", "b", "notes.txt"]);
        }
        // A new folder, and the current one (`--out .`, whose name is not its own).
        let fresh = tmp.path().join("fresh");
        super::write_files_atomic(&fresh, "x", |d| Ok(std::fs::write(d.join("x"), "x")?)).unwrap();
        assert_eq!(names(&fresh), ["x"]);
        let dot = fresh.join(".");
        super::write_files_atomic(&dot, "y", |d| Ok(std::fs::write(d.join("y"), "y")?)).unwrap();
        assert_eq!(names(&fresh), ["x", "y"]);
    }

    /// A file written by a writer that takes a path (the PNG plots): whole or not at all, the
    /// temporary file's name never in the error.
    #[test]
    fn files_written_by_path_are_replaced_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let png = tmp.path().join("plot.png");
        std::fs::write(&png, "old").unwrap();
        let e = super::write_atomic_with(&png, |p| {
            assert_eq!(p.extension().unwrap(), "png");
            std::fs::write(p, "ha")?;
            anyhow::bail!("drawing {}: disk full", p.display())
        })
        .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!("drawing {}: disk full", png.display())
        );
        assert_eq!(std::fs::read_to_string(&png).unwrap(), "old");
        assert_eq!(names(tmp.path()), ["plot.png"]);
        super::write_atomic_with(&png, |p| Ok(std::fs::write(p, "new")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&png).unwrap(), "new");
        assert_eq!(names(tmp.path()), ["plot.png"]);
    }
}

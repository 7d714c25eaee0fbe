//! The split files (`KernelSource::parts`: matmul.cu by the decode matvec's row buckets): the
//! modules the backend compiles for them hold, together, every entry of the whole file, each
//! once and with the same PTX, so that loading the parts loads the code the whole file's module
//! held, and no part repeats another's work.

use std::collections::{HashMap, HashSet};

use super::*;
use dlp_cuda::nvrtc::{entry_names, modules, MATVEC_PARTS};

/// PTX with the module-wide numbers of its debug strings and labels left out: an entry's
/// `$L__info_string47` in one module is `$L__info_string20` in another, for the same function
/// (`$L__BB3_12` keeps its `_12`, the block's number within the entry).
fn normalized(ptx: &str) -> String {
    let mut out = String::with_capacity(ptx.len());
    let mut rest = ptx;
    while let Some(at) = rest.find("$L__") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let word = rest
            .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .unwrap_or(rest.len());
        out.push_str(&rest[..word]);
        rest = rest[word..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[test]
fn matmul_parts_hold_every_entry_of_the_whole_file_with_the_same_ptx() {
    if nvrtc_missing() {
        return;
    }
    assert_eq!(
        normalized("a $L__BB3_12 $L__info_string47)"),
        "a $L__BB_12 $L__info_string)"
    );
    let with = |defines: Vec<&str>| {
        let mut o = options("sm_90");
        o.extend(defines.into_iter().map(String::from));
        o
    };
    // The default backend's modules, and those of every experimental path (PDL and folds).
    for (dependent_launch, folds) in [(false, false), (true, true)] {
        let mods: Vec<_> = modules(dependent_launch, folds, &Tune::default())
            .into_iter()
            .filter(|m| !m.file.parts.is_empty())
            .collect();
        assert_eq!(mods.len(), MATVEC_PARTS.len(), "only matmul.cu has parts");
        let whole_opts = with(mods[0].extra.iter().map(String::as_str).collect());
        let mut jobs = vec![(mods[0].file, whole_opts.clone())];
        jobs.extend(mods.iter().map(|m| (m.file, with(m.defines()))));
        prefetch(&jobs);
        let whole_ptx = compile_uncached(mods[0].file, &whole_opts).unwrap().ptx;
        let whole: HashMap<&str, String> = entry_names(&whole_ptx)
            .map(|n| (n, normalized(&entry(&whole_ptx, n))))
            .collect();
        let matvecs = whole.keys().filter(|n| n.starts_with("matvec_")).count();
        assert_eq!(matvecs, if folds { 30 } else { 12 }, "{whole_opts:?}");
        let mut found: HashSet<String> = HashSet::new();
        for m in &mods {
            let c = compile_uncached(m.file, &with(m.defines())).unwrap();
            assert!(c.log.is_empty(), "{}: warnings:\n{}", m.label(), c.log);
            let bucket = m.part.and_then(|p| p.rsplit('=').next()).unwrap();
            for name in entry_names(&c.ptx) {
                let w = whole.get(name);
                let w = w.unwrap_or_else(|| panic!("{}: {name} is not the file's", m.label()));
                let same = normalized(&entry(&c.ptx, name)) == *w;
                assert!(same, "{}: {name}'s PTX is not the whole file's", m.label());
                // A matvec entry in its bucket's part, every other entry (matmul.cu's and
                // lora.cu's) in part 1: each in one part only.
                let here = match name.starts_with("matvec_") {
                    true => name.ends_with(&format!("_r{bucket}")),
                    false => bucket == "1",
                };
                assert!(here, "{}: {name} belongs to another part", m.label());
                assert!(found.insert(name.to_string()), "{name} in two parts");
            }
        }
        let mut missing: Vec<&&str> = whole.keys().filter(|n| !found.contains(**n)).collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "in no part ({whole_opts:?}): {missing:?}"
        );
    }
}

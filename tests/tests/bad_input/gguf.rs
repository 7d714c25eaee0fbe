//! GGUF files whose headers lie.

use super::*;

/// GGUF headers that lie: wrong magic, a tensor or metadata count past the file, a string
/// length of gigabytes. Each an error naming the file, with no large allocation.
#[test]
fn corrupt_gguf_headers() {
    let Some(smol) = fixtures("smollm2") else {
        return;
    };
    let bytes = std::fs::read(smol.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.gguf");
    // The header's first 4 KiB with the u64 at byte `at` replaced by `v`.
    let patched = |at: usize, v: u64| -> Vec<u8> {
        let mut h = bytes[..4096].to_vec();
        h[at..at + 8].copy_from_slice(&v.to_le_bytes());
        h
    };
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (
            b"NOPE".iter().chain(&bytes[4..4096]).copied().collect(),
            &["bad.gguf", "magic"],
        ),
        // Tensor count (bytes 8..16) of 2^62.
        (patched(8, 1 << 62), &["bad.gguf"]),
        // Metadata count (bytes 16..24) of 2^40.
        (patched(16, 1 << 40), &["bad.gguf"]),
        // The first key's length (bytes 24..32) of 2^40.
        (patched(24, 1 << 40), &["bad.gguf"]),
        (bytes[..100].to_vec(), &["bad.gguf"]),
    ];
    for (data, needles) in cases {
        std::fs::write(&p, data).unwrap();
        must_contain(&err_of(ModelFiles::load(&p)), needles);
    }
}

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
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (
            b"NOPE".iter().chain(&bytes[4..4096]).copied().collect(),
            &["bad.gguf", "magic"],
        ),
        // Tensor count (bytes 8..16) of 2^62.
        (
            bytes[..8]
                .iter()
                .chain(&(1u64 << 62).to_le_bytes())
                .chain(&bytes[16..4096])
                .copied()
                .collect(),
            &["bad.gguf"],
        ),
        // Metadata count (bytes 16..24) of 2^40.
        (
            bytes[..16]
                .iter()
                .chain(&(1u64 << 40).to_le_bytes())
                .chain(&bytes[24..4096])
                .copied()
                .collect(),
            &["bad.gguf"],
        ),
        // The first key's length (bytes 24..32) of 2^40.
        (
            bytes[..24]
                .iter()
                .chain(&(1u64 << 40).to_le_bytes())
                .chain(&bytes[32..4096])
                .copied()
                .collect(),
            &["bad.gguf"],
        ),
        (bytes[..100].to_vec(), &["bad.gguf"]),
    ];
    for (data, needles) in cases {
        std::fs::write(&p, data).unwrap();
        must_contain(&err_of(ModelFiles::load(&p)), needles);
    }
}

//! The op-parity table on the CUDA backend against the CPU reference (`--features cuda`).
//! Without a GPU: `SKIPPED: no CUDA device`, unless `DLP_REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

use dlp_cuda::CudaBackend;
use dlp_tests::parity::{run_all, Outcome};

fn backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("DLP_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("no CUDA backend: {e}; DLP_REQUIRE_CUDA=1 makes this a failure")
        }
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

#[test]
fn op_parity_cuda() {
    let Some(b) = backend() else { return };
    let results = run_all(&b);
    for (id, o) in &results {
        println!("  {:<90} {o:?}", id);
    }
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Pass { .. }))
        .map(|(id, o)| format!("{id}: {o:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} cases did not pass:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

//! The op-parity table on the wgpu backend (lavapipe when it is all there is), plus the
//! matmul / embedding / logits cases again with a tiny binding limit so that every weight is
//! split into row blocks. Without an adapter: `SKIPPED`, unless `DLP_REQUIRE_WGPU=1`.

use dlp_tests::parity::{cases, run_all, run_case, Op, Outcome};
use dlp_wgpu::{AdapterPolicy, WgpuBackend};

fn backend(cap: Option<u64>) -> Option<WgpuBackend> {
    match WgpuBackend::with_binding_cap(AdapterPolicy::AllowSoftware, cap) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("DLP_REQUIRE_WGPU").is_ok_and(|v| v == "1") => {
            panic!("no wgpu backend: {e}; DLP_REQUIRE_WGPU=1 makes this a failure")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn assert_all_pass(results: &[(String, Outcome)]) {
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

#[test]
fn op_parity_wgpu() {
    let Some(b) = backend(None) else { return };
    assert_all_pass(&run_all(&b));
}

#[test]
fn op_parity_wgpu_split_weights() {
    // 4 KiB per binding: every weight of these cases spans several row blocks.
    let Some(b) = backend(Some(4096)) else { return };
    let results: Vec<(String, Outcome)> = cases()
        .into_iter()
        .filter(|c| {
            matches!(
                c.op,
                Op::Matmul { .. } | Op::Embedding { .. } | Op::Logits { .. }
            )
        })
        .map(|c| {
            let o = run_case(&b, &c);
            println!("  split {:<90} {o:?}", c.id);
            (c.id, o)
        })
        .collect();
    assert_all_pass(&results);
}

#[test]
fn too_large_buffer_names_the_limit() {
    let Some(b) = backend(None) else { return };
    // Refused before anything is allocated: one f32 past the adapter's binding limit.
    let limit = b.max_binding_bytes() as usize;
    let e = dlp_engine::Backend::alloc(&b, limit / 4 + 1)
        .err()
        .expect("over the limit");
    let m = e.to_string();
    assert!(m.contains("max_storage_buffer_binding_size"), "{m}");
}

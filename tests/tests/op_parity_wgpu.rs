//! The op-parity table on the wgpu backend (lavapipe when it is all there is), plus the
//! matmul / embedding / logits cases again with a tiny binding limit so that every weight is
//! split into row blocks. Without an adapter: `SKIPPED`, unless `DLP_REQUIRE_WGPU=1`.
//!
//! With f16 weights (adapters with `SHADER_F16`): the f16-weight cases (weights drawn as f16,
//! so the f32 bounds apply), whole and split, and a check that weights really are stored
//! rounded to f16. Without the feature: `unsupported` is printed, a failure only when
//! `DLP_REQUIRE_WGPU_F16=1`.
//!
//! Packed weights (a GGUF's tensors: quantised blocks, kept as scale-offset groups, and
//! F16/BF16): every kind's cases, whole and split, and a check that quantised ones really stay
//! compact on the device.

use dlp_engine::{Backend, HostTensor, StepPlan, NO_ADAPTER};
use dlp_tests::parity::{
    assert_all_pass, cases, f16_weight_cases, packed_weight_cases, run_all, run_case, run_cases,
    Op, Outcome, ParityCase,
};
use dlp_tests::{backend_or_skip, skip_unless_required};
use dlp_wgpu::{round_f16, AdapterPolicy, WeightStore, WgpuBackend, WgpuOptions};

fn backend(cap: Option<u64>) -> Option<WgpuBackend> {
    backend_or_skip(
        WgpuBackend::with_binding_cap(AdapterPolicy::AllowSoftware, cap),
        "DLP_REQUIRE_WGPU",
    )
}

/// The wgpu backend with f16 weights, or `None` (printed) where there is no adapter or it
/// lacks `SHADER_F16`.
fn backend_f16(cap: Option<u64>) -> Option<WgpuBackend> {
    let plain = backend(None)?;
    let info = plain.adapter_info().clone();
    let supported = plain.adapter_supports_f16();
    drop(plain);
    let opts = WgpuOptions {
        f16_weights: true,
        binding_cap: cap,
    };
    let r = WgpuBackend::with_options(AdapterPolicy::AllowSoftware, opts);
    if supported {
        let b = r.unwrap_or_else(|e| panic!("{} offers SHADER_F16, but: {e}", info.name));
        assert!(b.f16_weights());
        println!("{}: SHADER_F16 supported, weights stored as f16", info.name);
        return Some(b);
    }
    // The refusal names the adapter and the feature.
    let m = r
        .err()
        .expect("f16 weights on an adapter without SHADER_F16")
        .to_string();
    assert!(m.contains(&info.name) && m.contains("SHADER_F16"), "{m}");
    skip_unless_required(&format!("unsupported: {m}"), "DLP_REQUIRE_WGPU_F16");
    None
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
    let weighted = cases().into_iter().filter(|c| {
        matches!(
            c.op,
            Op::Matmul { .. } | Op::Embedding { .. } | Op::Logits { .. }
        )
    });
    assert_all_pass(&run_split(&b, weighted));
}

/// Runs `cases` on a backend whose weights are split into small binding blocks, printing each.
fn run_split(
    b: &WgpuBackend,
    cases: impl IntoIterator<Item = ParityCase>,
) -> Vec<(String, Outcome)> {
    cases
        .into_iter()
        .map(|c| {
            let o = run_case(b, &c);
            println!("  split {:<90} {o:?}", c.id);
            (c.id, o)
        })
        .collect()
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

#[test]
fn op_parity_wgpu_f16_weights() {
    let Some(b) = backend_f16(None) else { return };
    println!("op parity on {} vs cpu", b.name());
    assert_all_pass(&run_cases(&b, f16_weight_cases()));
}

#[test]
fn op_parity_wgpu_f16_weights_split() {
    // 4 KiB per binding, 2 bytes per value: several row blocks, odd-sized ones padded.
    let Some(b) = backend_f16(Some(4096)) else {
        return;
    };
    assert_all_pass(&run_split(&b, f16_weight_cases()));
}

/// The f16 cases compare kernels on f16-valued weights; this checks the weights really are
/// stored as f16: values off the f16 grid come back (through an identity matmul, both kernels,
/// and the embedding lookup) exactly rounded to nearest f16, not as given.
#[test]
fn f16_weights_are_stored_rounded() {
    let Some(b) = backend_f16(None) else { return };
    let (n, k) = (9, 7);
    let w: Vec<f32> = (0..n * k).map(|i| 0.1 + i as f32 / 3.0).collect();
    let want: Vec<f32> = w.iter().map(|&v| round_f16(v)).collect();
    assert!(want.iter().zip(&w).filter(|(a, b)| a != b).count() > n * k / 2);
    let weight = b.upload_weight(&HostTensor::new(vec![n, k], w)).unwrap();
    // rows = k (tiled) and rows = 3 (gemv) of the identity: out[r, c] = W[c, r].
    for rows in [k, 3] {
        let eye: Vec<f32> = (0..rows * k)
            .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
            .collect();
        let x = b.upload(&eye).unwrap();
        let mut out = b.alloc(rows * n).unwrap();
        b.matmul(&x, &weight, None, rows, k, n, &mut out).unwrap();
        let got = b.download(&out, rows * n).unwrap();
        for r in 0..rows {
            for c in 0..n {
                assert_eq!(
                    got[r * n + c],
                    want[c * k + r],
                    "matmul rows={rows} [{r}, {c}]"
                );
            }
        }
    }
    let ids: Vec<u32> = vec![8, 0, 3];
    let step = b
        .upload_step(
            &StepPlan {
                token_ids: ids.clone(),
                positions: vec![0; 3],
                kv_slots: vec![0; 3],
                segment_of_token: vec![0; 3],
                mix_k: 1,
                mix_slots: vec![NO_ADAPTER],
                mix_weights: vec![0.0],
                logit_rows: Vec::new(),
                pick_args: Vec::new(),
            },
            None,
        )
        .unwrap();
    let mut out = b.alloc(3 * k).unwrap();
    b.embedding(&weight, &step, 3, k, &mut out).unwrap();
    let got = b.download(&out, 3 * k).unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * k;
        assert_eq!(
            got[t * k..(t + 1) * k],
            want[row..row + k],
            "embedding of {id}"
        );
    }
}

#[test]
fn op_parity_wgpu_packed_weights() {
    let Some(b) = backend(None) else { return };
    assert_all_pass(&run_cases(&b, packed_weight_cases()));
}

#[test]
fn op_parity_wgpu_packed_weights_split() {
    // 4 KiB per binding: a few rows of groups per block.
    let Some(b) = backend(Some(4096)) else { return };
    assert_all_pass(&run_split(&b, packed_weight_cases()));
}

/// The quantised cases compare the same values on both sides; this checks the device really
/// keeps each kind's blocks compact, as scale-offset groups, and no longer as f32, and that
/// the loaders hand it them packed.
#[test]
fn quantised_weights_stay_compact() {
    use dlp_engine::tensor::{Packed, PackedKind};
    use dlp_engine::weight_groups::GroupLayout;
    let Some(b) = backend(None) else { return };
    assert!(b.packed_weights(), "loaders would dequantise before upload");
    let (rows, cols) = (64, 512);
    for kind in PackedKind::ALL {
        let Some(layout) = GroupLayout::of(kind) else {
            continue;
        };
        let bytes = vec![0u8; rows * kind.row_bytes(cols)];
        let w = b
            .upload_weight(&HostTensor::packed(rows, cols, Packed { kind, bytes }))
            .unwrap();
        assert_eq!(w.store, WeightStore::Groups(layout), "{kind:?}");
        let stored = b.weight_bytes(&w).unwrap();
        assert_eq!(stored, rows * layout.row_words(cols) * 4, "{kind:?}");
        assert!(stored * 3 <= rows * cols * 4, "{kind:?}: {stored} bytes");
    }
}

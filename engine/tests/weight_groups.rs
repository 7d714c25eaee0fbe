//! Regrouped weights (`dlp_engine::weight_groups`, what GPU backends keep of a GGUF's
//! quantised tensors) decode to the CPU's dequantised values bit for bit, for every kind, on
//! random blocks (scales included: zeros, subnormals, infinities and NaNs among them).

use dlp_engine::tensor::PackedKind;
use dlp_engine::weight_groups::{regroup, GroupLayout};

/// xorshift64*: random bytes without a dependency.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn regrouped_values_are_the_cpus_bit_for_bit() {
    let mut checked = Vec::new();
    for (seed, kind) in PackedKind::ALL.into_iter().enumerate() {
        let Some(layout) = GroupLayout::of(kind) else {
            assert!(matches!(kind, PackedKind::F16 | PackedKind::BF16));
            assert!(regroup(kind, &[0; 4]).is_none());
            continue;
        };
        let (per_block, block_bytes) = kind.block();
        // Enough blocks for two of regroup's parallel chunks (4096 blocks) and a partial third.
        let blocks = 9000;
        let bytes = random_bytes(blocks * block_bytes, 0x9e37_79b9 + seed as u64);
        let mut want = vec![0f32; blocks * per_block];
        kind.dequantize(&bytes, &mut want);
        let (got_layout, words) = regroup(kind, &bytes).unwrap();
        assert_eq!(got_layout, layout);
        // A row of 4 blocks is whole groups: its words are row_words.
        assert_eq!(words.len(), blocks / 4 * layout.row_words(4 * per_block));
        let mut nan = 0;
        for (i, w) in want.iter().enumerate() {
            let g = layout.decode(&words, i);
            if w.is_nan() {
                assert!(g.is_nan(), "{kind:?} value {i}: {g} for NaN");
                nan += 1;
            } else {
                assert_eq!(g.to_bits(), w.to_bits(), "{kind:?} value {i}: {g} for {w}");
            }
        }
        assert!(nan < want.len() / 10, "{kind:?}: mostly NaN ({nan})");
        checked.push(kind.name());
    }
    assert_eq!(checked.len(), 12, "every quantised kind: {checked:?}");
}

#[test]
fn layouts_are_as_documented() {
    use PackedKind::*;
    // Words per group and bits per weight as the module docs state them.
    let bits = |k| {
        let l = GroupLayout::of(k).unwrap();
        32.0 * l.group_words() as f64 / l.size as f64
    };
    assert_eq!(bits(Q4_K), 6.0);
    assert_eq!(bits(Q4_0), 5.0);
    assert_eq!(bits(Q6_K), 10.0);
    assert_eq!(bits(Q8_0), 9.0);
    assert_eq!(bits(Q2_K), 8.0);
}

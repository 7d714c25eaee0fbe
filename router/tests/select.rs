//! Top-p / top-k selection and fusion weights.

use dlp_router::select::{ranked, select, softmax, FusionWeights, SelectConfig};

fn topp(p: f32) -> SelectConfig {
    SelectConfig {
        top_p: Some(p),
        ..Default::default()
    }
}

fn idx(sel: &[(usize, f32)]) -> Vec<usize> {
    sel.iter().map(|s| s.0).collect()
}

fn assert_sums_to_one(sel: &[(usize, f32)]) {
    let s: f32 = sel.iter().map(|x| x.1).sum();
    assert!((s - 1.0).abs() < 1e-6, "weights sum to {s}");
}

#[test]
fn top_p_smallest_prefix_reaching_p() {
    let p = [0.1, 0.5, 0.3, 0.1];
    assert_eq!(idx(&select(&p, &topp(0.5))), vec![1]);
    assert_eq!(idx(&select(&p, &topp(0.6))), vec![1, 2]);
    // Exactly reachable boundary: 0.5 + 0.3 = 0.8 is not lost to rounding.
    assert_eq!(idx(&select(&p, &topp(0.8))), vec![1, 2]);
    assert_eq!(idx(&select(&p, &topp(0.85))), vec![1, 2, 0]);
}

#[test]
fn top_p_zero_keeps_one_and_one_keeps_all_nonzero() {
    let p = [0.2, 0.7, 0.1, 0.0];
    assert_eq!(idx(&select(&p, &topp(0.0))), vec![1]);
    assert_eq!(idx(&select(&p, &topp(-1.0))), vec![1]);
    assert_eq!(idx(&select(&p, &topp(1.0))), vec![1, 0, 2]);
    assert_eq!(idx(&select(&p, &topp(2.0))), vec![1, 0, 2, 3]);
    // However small: the rounding slack had stopped p = 1 at 1 - 1e-6, keeping the first only.
    let tiny = [0.999_999_6, 3e-7, 1e-7];
    assert_eq!(idx(&select(&tiny, &topp(1.0))), vec![0, 1, 2]);
}

#[test]
fn ties_go_to_the_lower_index() {
    let p = [0.25, 0.25, 0.25, 0.25];
    assert_eq!(idx(&select(&p, &topp(0.3))), vec![0, 1]);
    assert_eq!(ranked(&[0.1, 0.4, 0.4, 0.1]), vec![1, 2, 0, 3]);
    let k2 = SelectConfig {
        top_p: None,
        top_k: Some(2),
        ..Default::default()
    };
    assert_eq!(idx(&select(&[0.3, 0.3, 0.4], &k2)), vec![2, 0]);
}

#[test]
fn one_adapter() {
    let sel = select(&[1.0], &topp(0.9));
    assert_eq!(sel, vec![(0, 1.0)]);
    let soft = SelectConfig {
        weights: FusionWeights::Softmax,
        ..topp(0.9)
    };
    assert_eq!(select(&[1.0], &soft), vec![(0, 1.0)]);
    assert!(select(&[], &topp(0.9)).is_empty());
}

#[test]
fn top_k_and_max_adapters_cap_top_p() {
    let p = [0.3, 0.3, 0.2, 0.2];
    let cfg = SelectConfig {
        top_p: Some(0.95),
        top_k: Some(3),
        ..Default::default()
    };
    assert_eq!(idx(&select(&p, &cfg)), vec![0, 1, 2]);
    let cfg = SelectConfig {
        max_adapters: Some(2),
        ..cfg
    };
    assert_eq!(idx(&select(&p, &cfg)), vec![0, 1]);
    // k = 0 means "no limit", and never an empty mixture.
    let cfg = SelectConfig {
        top_p: None,
        top_k: Some(0),
        ..Default::default()
    };
    assert_eq!(select(&p, &cfg).len(), 4);
}

#[test]
fn renormalised_weights() {
    let sel = select(&[0.6, 0.3, 0.1], &topp(0.9));
    assert_eq!(idx(&sel), vec![0, 1]);
    assert!((sel[0].1 - 0.6 / 0.9).abs() < 1e-6 && (sel[1].1 - 0.3 / 0.9).abs() < 1e-6);
    assert_sums_to_one(&sel);
}

#[test]
fn softmax_weights_follow_the_reference_code() {
    let cfg = SelectConfig {
        weights: FusionWeights::Softmax,
        ..topp(0.95)
    };
    let sel = select(&[0.9, 0.1, 0.0], &cfg);
    assert_eq!(idx(&sel), vec![0, 1]);
    let e = (0.9f32 - 0.1).exp();
    assert!((sel[0].1 - e / (e + 1.0)).abs() < 1e-6, "{sel:?}");
    assert_sums_to_one(&sel);
}

#[test]
fn degenerate_probabilities() {
    // All zero: p is never reached, so every adapter is kept, equally weighted. NaN ranks last
    // and weighs nothing.
    assert_eq!(select(&[0.0, 0.0], &topp(0.9)), vec![(0, 0.5), (1, 0.5)]);
    let sel = select(&[f32::NAN, 0.8, 0.2], &topp(1.0));
    assert_eq!(idx(&sel), vec![1, 2]);
    assert_sums_to_one(&sel);
    let p = softmax(&[1000.0, 0.0]);
    assert!((p[0] - 1.0).abs() < 1e-6 && p[1] >= 0.0);
}

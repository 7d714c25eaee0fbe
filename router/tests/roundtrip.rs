//! Save/load round trips give bit-identical outputs.

mod common;

use dlp_router::config::{param_count, RouterConfig, FORMAT};
use dlp_router::model::{load_tokenizer, Dense, RouterWeights};
use dlp_router::Router;

/// Deterministic pseudo-random weights (an LCG), so the test needs no RNG crate features.
fn weights(vocab: usize, widths: &[usize]) -> RouterWeights {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
    };
    let embed = (0..vocab * widths[0]).map(|_| next()).collect();
    let layers = widths
        .windows(2)
        .map(|w| Dense {
            inputs: w[0],
            outputs: w[1],
            weight: (0..w[0] * w[1]).map(|_| next()).collect(),
            bias: (0..w[1]).map(|_| next()).collect(),
        })
        .collect();
    RouterWeights {
        vocab,
        dim: widths[0],
        embed,
        layers,
    }
}

#[test]
fn weights_round_trip() {
    let w = weights(50, &[8, 16, 16, 8, 3]);
    assert_eq!(w.num_params(), param_count(50, 8, &[16, 16, 8], 3));
    let scratch = common::scratch_dir("weights");
    let dir = scratch.path();
    let path = dir.join("w.safetensors");
    w.save(&path).unwrap();
    let back = RouterWeights::load(&path, 50, &[8, 16, 16, 8, 3]).unwrap();
    assert_eq!(w, back);
    let batch = vec![vec![1, 2, 3], vec![], vec![49, 49, 7, 1000]];
    assert_eq!(w.logits(&batch), back.logits(&batch));
    // A shape that disagrees with router.json is a clear error.
    let err = RouterWeights::load(&path, 50, &[8, 16, 16, 8, 4])
        .unwrap_err()
        .to_string();
    assert!(err.contains("layers.3.weight"), "{err}");
}

#[test]
fn router_dir_round_trip() {
    let Some(tok_path) = common::smollm2_tokenizer("router_dir_round_trip") else {
        return;
    };
    let tokenizer = load_tokenizer(&tok_path).unwrap();
    let vocab = tokenizer.get_vocab_size(true);
    let labels: Vec<String> = ["qv_r8", "all_r4", "mlp_r16"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = RouterConfig {
        format: FORMAT.into(),
        labels: labels.clone(),
        tokenizer: "unused".into(),
        vocab_size: vocab,
        embed_dim: 8,
        hidden: vec![16, 16, 8],
        max_tokens: 64,
        num_params: param_count(vocab, 8, &[16, 16, 8], 3),
        temperature: 1.0,
        dev: None,
        training: None,
        trainings: Vec::new(),
        feature_stats: None,
    };
    let mut router = Router::from_parts(config, tokenizer, weights(vocab, &[8, 16, 16, 8, 3]));
    let scratch = common::scratch_dir("router");
    let dir = scratch.path();
    router.save_self_contained(dir, &tok_path).unwrap();
    let loaded = Router::load(dir).unwrap();
    assert_eq!(loaded.labels(), &labels[..]);
    assert_eq!(loaded.config().tokenizer, "tokenizer.json");
    assert_eq!(loaded.num_params(), router.config().num_params);
    let texts = [
        "How long should I bake the bread?",
        " Which planet has rings? ",
        "",
        "fn main() {}",
    ];
    let a = router.probs(&texts);
    assert_eq!(a, loaded.probs(&texts));
    for row in &a {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Surrounding whitespace does not change what the router sees.
    assert_eq!(loaded.probs(&["Which planet has rings?"])[0], a[1]);
    // A router.json that would route every text the same way is refused at load.
    let json_path = dir.join("router.json");
    let good = std::fs::read_to_string(&json_path).unwrap();
    for (field, zero, want) in [
        ("max_tokens", "64", "max_tokens is 0"),
        ("embed_dim", "8", "a layer width"),
    ] {
        let bad = good.replacen(
            &format!("\"{field}\": {zero}"),
            &format!("\"{field}\": 0"),
            1,
        );
        assert_ne!(bad, good, "{field} not found in router.json");
        std::fs::write(&json_path, bad).unwrap();
        let e = Router::load(dir)
            .err()
            .unwrap_or_else(|| panic!("a zero {field} loads"));
        let e = e.to_string();
        assert!(e.contains("router.json") && e.contains(want), "{e}");
    }
    // So is one with a label given twice: two outputs of one name.
    let twice = good.replacen("\"all_r4\"", "\"qv_r8\"", 1);
    assert_ne!(twice, good);
    std::fs::write(&json_path, twice).unwrap();
    let e = Router::load(dir)
        .err()
        .expect("a label twice loads")
        .to_string();
    assert!(
        e.contains("router.json") && e.contains("labels: `qv_r8` is given twice"),
        "{e}"
    );
}

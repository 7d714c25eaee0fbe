//! Sentence-level re-routing inside generation (`Control::Remix`): the tokens generated under
//! a changing mixture must be exactly what teacher-forced scoring with the same segments
//! predicts, so the KV cache and the segment table agree across a remix.

use dlp_engine::generate::{generate, score_batch, Control, GenRequest, ScoreInput, ScoreMode};
use dlp_engine::lora::resolve_mixture;
use dlp_engine::SamplingParams;
use dlp_tests::{cpu_model, fixtures, Fixture};

#[test]
fn remixed_generation_matches_segmented_scoring() {
    let Some(dir) = fixtures("tiny-llama") else {
        return;
    };
    let fx = Fixture::open(&dir);
    let model = cpu_model(&fx);
    let names = model.adapter_names().to_vec();
    assert!(names.len() >= 2, "the fixture has {names:?}");
    let mix = |n: &[(&str, f32)]| {
        let named: Vec<(String, f32)> = n.iter().map(|&(a, w)| (names_of(&names, a), w)).collect();
        resolve_mixture(&names, &named).unwrap()
    };
    let first = mix(&[("qv", 1.0)]);
    let second = mix(&[("all", 0.6), ("mlp", 0.4)]);
    let third = mix(&[("qv", 0.3), ("mlp", 0.7)]);
    let case = &fx.golden.cases[0];
    let prompt = fx.ids(&format!("{}.input_ids", case.name))[..case.prompt_len].to_vec();
    let params = SamplingParams {
        max_tokens: 12,
        ..Default::default()
    };
    let request = GenRequest {
        prompt: prompt.clone(),
        segments: vec![(0, first.clone())],
        params,
        ..Default::default()
    };
    let mut n = 0;
    let (outs, _) = generate(&model, &[request], &[], 4, |_, _| {
        n += 1;
        Ok(match n {
            4 => Control::Remix(second.clone()),
            8 => Control::Remix(third.clone()),
            _ => Control::Continue,
        })
    })
    .unwrap();
    let out = &outs[0];
    let p = prompt.len();
    assert_eq!(out.tokens.len(), 12);
    let starts: Vec<usize> = out.segments.iter().map(|s| s.0).collect();
    // The 4th and 8th generated tokens open the new segments.
    assert_eq!(starts, vec![0, p + 3, p + 7]);
    let ids: Vec<u32> = prompt.iter().chain(&out.tokens).copied().collect();
    let vocab = model.config.vocab_size;
    let score = |segments| {
        score_batch(
            &model,
            &[ScoreInput {
                ids: ids.clone(),
                segments,
            }],
            ScoreMode::Prefill,
            64,
        )
        .unwrap()
        .remove(0)
    };
    let logits = score(out.segments.clone());
    for (k, &tok) in out.tokens.iter().enumerate() {
        let row = &logits[(p + k - 1) * vocab..(p + k) * vocab];
        let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            row[tok as usize] >= best - 1e-4,
            "generated token {k} ({tok}) is not the argmax of segmented scoring"
        );
    }
    // The remix changed the numbers: one mixture throughout scores the tail differently.
    let flat = score(vec![(0, first)]);
    let tail = (p + 4) * vocab..ids.len() * vocab;
    let diff = logits[tail.clone()]
        .iter()
        .zip(&flat[tail])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "remixing changed nothing (max |Δ| {diff})");
}

/// The fixture adapter whose name starts with `prefix`.
fn names_of(names: &[String], prefix: &str) -> String {
    names
        .iter()
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no adapter starting with {prefix} in {names:?}"))
        .clone()
}

//! The sampler's tests: distributions, seeds, filters, stop strings.

use super::*;
use std::collections::BTreeSet;

fn sp(temperature: f32, edit: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut p = SamplingParams {
        temperature,
        ..Default::default()
    };
    edit(&mut p);
    p
}

fn ln(probs: &[f64]) -> Vec<f32> {
    probs.iter().map(|p| p.ln() as f32).collect()
}

/// Logits uniform in [-4, 4) from a fixed LCG.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005) ^ 0x9e37_79b9;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0
    };
    (0..n).map(|_| next()).collect()
}

/// Tokens seen over 300 seeds x 10 draws.
fn support(p: &SamplingParams, logits: &[f32]) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    for seed in 0..300 {
        let mut s = Sampler::new(SamplingParams { seed, ..p.clone() });
        seen.extend((0..10).map(|_| s.sample(logits, &[])));
    }
    seen
}

#[test]
fn seeded_determinism() {
    let logits = noise(1000, 1);
    let draws = |seed| {
        let mut s = Sampler::new(sp(1.0, |p| p.seed = seed));
        (0..500).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
    };
    assert_eq!(draws(42), draws(42));
    assert_ne!(draws(42), draws(43));
}

/// A seeded draw under top-k / top-p depends on the kept set and its probabilities, not
/// on the order ties among near-equal logits land in: the logits of one request alone and
/// in a batch differ in their last bits (measured ~1e-5 on the server), which reordered
/// quickselect's output and changed the draws.
#[test]
fn seeded_top_k_top_p_draws_survive_last_bit_noise() {
    // 2,000 tokens on 10 levels (100 on the top one), each jittered by its own ~1e-6.
    let level = |i: usize| if i % 100 < 5 { 0 } else { 1 + i % 9 };
    let logits = |seed: u64| -> Vec<f32> {
        let jitter = noise(2000, seed);
        (0..2000)
            .map(|i| -(level(i) as f32) * 0.5 + jitter[i] * 1e-6)
            .collect()
    };
    let (a, b) = (logits(1), logits(2));
    // Top-p cut after the second level (half a token short of its end).
    let mass =
        |l: usize| (0..2000).filter(|&i| level(i) == l).count() as f64 * (-(l as f64) * 0.5).exp();
    let total: f64 = (0..10).map(mass).sum();
    let top_p = ((mass(0) + mass(1) - 0.5 * (-0.5f64).exp()) / total) as f32;
    // top_k keeps 100 (sorted by id), top_p about 300 (placed by id in one pass).
    for (name, k, p, kept) in [("top_k", 100, 1.0, 1), ("top_p", 0, top_p, 2)] {
        let draws = |logits: &[f32]| {
            let mut s = Sampler::new(sp(1.0, |q| (q.seed, q.top_k, q.top_p) = (7, k, p)));
            (0..300).map(|_| s.sample(logits, &[])).collect::<Vec<_>>()
        };
        let (da, db) = (draws(&a), draws(&b));
        assert!(
            da.iter().all(|&t| level(t as usize) < kept),
            "{name}: {da:?}"
        );
        assert_eq!(da, db, "{name}");
    }
}

#[test]
fn greedy_argmax_ties_and_no_rng() {
    let mut s = Sampler::new(SamplingParams::default());
    assert_eq!(s.sample(&[0.1, 3.0, -2.0, 3.0], &[]), 1);
    assert_eq!(s.sample(&[-0.0, 0.0], &[]), 0);
    let logits = noise(5000, 7);
    let want = s.sample(&logits, &[]);
    for seed in 0..20 {
        let mut g = Sampler::new(sp(0.0, |p| p.seed = seed));
        assert_eq!(g.sample(&logits, &[]), want);
    }
}

#[test]
fn top_k_one_equals_greedy() {
    let mut g = Sampler::new(SamplingParams::default());
    for seed in 0..50 {
        let mut logits = noise(2000, seed);
        logits[(seed as usize * 37) % 2000] = 10.0;
        logits[(seed as usize * 91) % 2000] = 10.0; // a tie, mostly
        let mut k = Sampler::new(sp(1.5, |p| (p.top_k, p.seed) = (1, seed)));
        for _ in 0..5 {
            assert_eq!(k.sample(&logits, &[]), g.sample(&logits, &[]));
        }
    }
}

#[test]
fn top_p_boundaries() {
    let logits = ln(&[0.2, 0.5, 0.3]);
    let top_p = |v| sp(1.0, |p| p.top_p = v);
    assert_eq!(support(&top_p(0.5), &logits), BTreeSet::from([1]));
    assert_eq!(support(&top_p(0.8), &logits), BTreeSet::from([1, 2]));
    assert_eq!(support(&top_p(0.80001), &logits), BTreeSet::from([0, 1, 2]));
    assert_eq!(support(&top_p(1e-9), &logits), BTreeSet::from([1]));
    assert_eq!(support(&top_p(0.6), &logits), BTreeSet::from([1, 2]));
    // HF order: top_k renormalises before top_p (0.5 / 0.8 = 0.625 >= 0.6).
    let kp = SamplingParams {
        top_k: 2,
        ..top_p(0.6)
    };
    assert_eq!(support(&kp, &logits), BTreeSet::from([1]));
}

#[test]
fn nucleus_matches_full_sort() {
    for (n, seed, target) in [
        (1, 0, 0.5),
        (7, 1, 0.99),
        (50_000, 2, 0.9),
        (50_000, 3, 1e-3),
    ] {
        let probs: Vec<f32> = noise(n, seed).iter().map(|l| (l / 0.3).exp()).collect();
        let mut cand: Vec<(u32, f32)> = probs
            .iter()
            .enumerate()
            .map(|(i, &q)| (i as u32, q))
            .collect();
        let sum: f64 = probs.iter().map(|&q| f64::from(q)).sum();
        let keep = nucleus(&mut cand, target * sum);
        let mut sorted: Vec<u32> = (0..n as u32).collect();
        sorted.sort_by(|&a, &b| {
            probs[b as usize]
                .total_cmp(&probs[a as usize])
                .then(a.cmp(&b))
        });
        let mut cum = 0.0;
        let want = 1 + sorted
            .iter()
            .take_while(|&&i| {
                cum += f64::from(probs[i as usize]);
                cum < target * sum
            })
            .count()
            .min(n - 1);
        assert_eq!(keep, want);
        let got: BTreeSet<u32> = cand[..keep].iter().map(|c| c.0).collect();
        assert_eq!(got, sorted[..want].iter().copied().collect());
    }
}

#[test]
fn min_p_boundary() {
    let logits = ln(&[0.05, 0.5, 0.2, 0.25]);
    assert_eq!(
        support(&sp(1.0, |p| p.min_p = 0.5), &logits),
        BTreeSet::from([1, 3])
    );
    assert_eq!(
        support(&sp(1.0, |p| p.min_p = 0.0999), &logits),
        BTreeSet::from([0, 1, 2, 3])
    );
}

#[test]
fn repetition_penalty_signs() {
    let mut s = Sampler::new(sp(0.0, |p| p.repetition_penalty = 2.0));
    assert_eq!(s.sample(&[2.0, 1.5], &[0]), 1); // 2 / 2 = 1 < 1.5
    assert_eq!(s.sample(&[-1.0, -1.5], &[0]), 1); // -1 * 2 = -2 < -1.5
    assert_eq!(s.sample(&[2.0, 1.5], &[1, 99]), 0); // 99 is out of vocabulary: ignored
                                                    // Once per distinct token: 2 / 1.5 > 1.2 (twice would give 0.89).
    let mut s = Sampler::new(sp(0.0, |p| p.repetition_penalty = 1.5));
    assert_eq!(s.sample(&[2.0, 1.2], &[0, 0, 0]), 0);
}

/// OpenAI's formula, `logit[j] -= count[j] * frequency + (count[j] > 0) * presence`, over the
/// tokens this sampler returned: the prompt (in `context`) does not count.
#[test]
fn frequency_and_presence_penalties_count_generated_tokens() {
    // Token 0 leads by 1.0; each pick of it costs 0.3 (frequency) + 0.5 once (presence).
    let logits = [3.0f32, 2.0, 0.0];
    let mut s = Sampler::new(sp(0.0, |p| {
        p.frequency_penalty = 0.3;
        p.presence_penalty = 0.5;
    }));
    // The prompt holds token 0 many times: no penalty yet.
    assert_eq!(s.sample(&logits, &[0, 0, 0, 0]), 0);
    // 3 - 0.3 - 0.5 = 2.2 > 2.0: token 0 again.
    assert_eq!(s.sample(&logits, &[0, 0, 0, 0, 0]), 0);
    // 3 - 0.6 - 0.5 = 1.9 < 2.0: token 1.
    assert_eq!(s.sample(&logits, &[]), 1);
    // Token 1 now 2 - 0.8 = 1.2, token 0 still 1.9.
    assert_eq!(s.sample(&logits, &[]), 0);
    // Negative values favour what was generated.
    let mut s = Sampler::new(sp(0.0, |p| p.presence_penalty = -2.0));
    assert_eq!(s.sample(&[1.0, 2.0], &[]), 1);
    assert_eq!(s.sample(&[2.5, 2.0], &[]), 1); // 2 + 2 > 2.5
                                               // Off (both 0), nothing is counted.
    let mut s = Sampler::new(SamplingParams::default());
    for _ in 0..5 {
        assert_eq!(s.sample(&logits, &[]), 0);
    }
    assert!(s.counts.is_empty());
}

/// `logit_bias` moves raw logits before everything else; the repetition penalty then scales
/// the biased logit, once per distinct context token.
#[test]
fn logit_bias_before_the_penalties() {
    let mut s = Sampler::new(sp(0.0, |p| p.logit_bias = vec![(1, 0.6), (7, 50.0)]));
    assert_eq!(s.sample(&[1.0, 0.5], &[]), 1); // 0.5 + 0.6 > 1.0; id 7 is past the logits
    let mut s = Sampler::new(sp(0.0, |p| p.logit_bias = vec![(0, -100.0)]));
    assert_eq!(s.sample(&[60.0, 0.0, -30.0], &[]), 1);
    // Biased 1.0 + 3.0 = 4.0, then / 2 = 2.0 < 2.5 (the raw 1.0 / 2 + 3.0 would be 3.5).
    let mut s = Sampler::new(sp(0.0, |p| {
        p.logit_bias = vec![(0, 3.0)];
        p.repetition_penalty = 2.0;
    }));
    assert_eq!(s.sample(&[1.0, 2.5], &[0, 0]), 1);
    // A bias of 100 wins the draw at any temperature against logits within a few units.
    let hot = sp(1.0, |p| p.logit_bias = vec![(2, 100.0)]);
    assert_eq!(support(&hot, &[4.0, 3.0, -4.0]), BTreeSet::from([2]));
}

#[test]
fn temperature_matches_softmax() {
    let logits = [1.0f32, 2.0, 0.5, -1.0];
    for t in [0.5f32, 1.0, 2.0] {
        let e: Vec<f64> = logits.iter().map(|&l| f64::from(l / t).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut s = Sampler::new(sp(t, |p| p.seed = 9));
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            counts[s.sample(&logits, &[]) as usize] += 1;
        }
        for (c, w) in counts.iter().zip(&e) {
            let f = f64::from(*c) / 20_000.0;
            assert!((f - w / z).abs() < 0.015, "t={t}: {counts:?} vs {}", w / z);
        }
    }
}

#[test]
fn non_finite_logits() {
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let mut g = Sampler::new(SamplingParams::default());
    assert_eq!(g.sample(&[nan, 1.0, 0.5], &[]), 1);
    assert_eq!(g.sample(&[-1.0, nan, -3.0], &[]), 0);
    assert_eq!(g.sample(&[nan, nan], &[]), 0);
    assert_eq!(g.try_sample(&[nan, -inf], &[]), None);
    // One NaN marks the row broken for try_sample; sample skips it.
    assert_eq!(g.try_sample(&[nan, -inf, -3.0], &[]), None);
    assert_eq!(g.sample(&[nan, -inf, -3.0], &[]), 2);
    assert_eq!(g.try_sample(&[-inf, -inf, -3.0], &[]), Some(2));
    let mut long = vec![0.5f32; 19];
    long[17] = nan; // in the remainder after the 8-wide chunks
    assert_eq!(g.try_sample(&long, &[]), None);
    long[17] = 0.5;
    long[3] = nan;
    assert_eq!(g.try_sample(&long, &[]), None);
    long[3] = 0.7;
    assert_eq!(g.try_sample(&long, &[]), Some(3));
    assert_eq!(
        Sampler::new(sp(1.0, |_| ())).try_sample(&[nan, nan], &[]),
        None
    );
    assert_eq!(g.sample(&[1.0, inf, f32::MAX], &[]), 1);
    let hot = sp(1.0, |_| ());
    assert_eq!(support(&hot, &[nan, 1.0, nan, 0.0]), BTreeSet::from([1, 3]));
    assert_eq!(support(&hot, &[nan, -inf]), BTreeSet::from([0]));
    assert_eq!(support(&hot, &[0.0, inf, -inf, 3.0]), BTreeSet::from([1]));
    assert_eq!(
        support(&sp(1e-30, |_| ()), &[0.0, 1.0, 0.5]),
        BTreeSet::from([1])
    );
}

#[test]
fn validation() {
    assert!(SamplingParams::default().validate().is_ok());
    type Edit = fn(&mut SamplingParams);
    let bad: [(&str, Edit); 18] = [
        ("temperature", |p| p.temperature = -0.1),
        ("temperature", |p| p.temperature = f32::INFINITY),
        ("top_p", |p| p.top_p = 0.0),
        ("top_p", |p| p.top_p = 1.5),
        ("top_p", |p| p.top_p = f32::NAN),
        ("min_p", |p| p.min_p = -0.5),
        ("min_p", |p| p.min_p = 1.01),
        ("repetition_penalty", |p| p.repetition_penalty = 0.0),
        ("repetition_penalty", |p| p.repetition_penalty = f32::NAN),
        ("presence_penalty", |p| p.presence_penalty = 2.01),
        ("presence_penalty", |p| p.presence_penalty = f32::NAN),
        ("frequency_penalty", |p| p.frequency_penalty = -2.5),
        ("logit_bias", |p| p.logit_bias = vec![(3, 100.5)]),
        ("logit_bias", |p| p.logit_bias = vec![(3, 1.0), (3, 2.0)]),
        ("logit_bias", |p| p.logit_bias = vec![(4, 1.0), (3, 2.0)]),
        ("min_tokens", |p| p.min_tokens = p.max_tokens + 1),
        ("allowed_token_ids", |p| p.allowed_token_ids = vec![4, 2]),
        ("bad_words_ids", |p| p.bad_words_ids = vec![vec![]]),
    ];
    for (field, edit) in bad {
        let msg = sp(0.0, edit).validate().unwrap_err().to_string();
        assert!(msg.contains(&format!("`{field}`")), "{msg}");
    }
    let err = sp(0.0, |p| p.top_p = 1.5).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid sampling parameter `top_p` = 1.5: must be in (0, 1]"
    );
}

/// `min_tokens` masks the end tokens (EOS, set by the scheduler, and `stop_token_ids`) for
/// exactly that many returned tokens, greedy or sampled; other tokens are untouched.
#[test]
fn min_tokens_holds_the_end_tokens_back() {
    // Token 0 (EOS) and 3 (a stop token id) lead by far; 1 is next.
    let logits = [9.0, 2.0, 1.0, 8.0];
    for t in [0.0, 1.0] {
        let p = sp(t, |p| {
            p.min_tokens = 3;
            p.stop_token_ids = vec![3];
        });
        let mut s = Sampler::new(p);
        s.set_end_tokens(&[0]);
        let picks: Vec<u32> = (0..5).map(|_| s.sample(&logits, &[])).collect();
        assert!(picks[..3].iter().all(|&x| x == 1 || x == 2), "{picks:?}");
        if t == 0.0 {
            assert_eq!(picks, [1, 1, 1, 0, 0]);
        }
    }
    // Without end tokens set, only `stop_token_ids` are held back.
    let mut s = Sampler::new(sp(0.0, |p| {
        p.min_tokens = 1;
        p.stop_token_ids = vec![0];
    }));
    assert_eq!(s.sample(&logits, &[]), 3);
}

/// `allowed_token_ids` leaves only those tokens; `bad_words_ids` masks a word's last token
/// where the generated tokens (not the prompt) end with the rest of it.
#[test]
fn allowed_tokens_and_bad_words() {
    let logits = [5.0, 4.0, 3.0, 2.0, 1.0];
    let mut s = Sampler::new(sp(0.0, |p| p.allowed_token_ids = vec![2, 4]));
    assert_eq!(s.sample(&logits, &[]), 2);
    for seed in 0..50 {
        let mut s = Sampler::new(sp(1.0, |p| {
            p.allowed_token_ids = vec![2, 4];
            p.seed = seed;
        }));
        assert!([2, 4].contains(&s.sample(&logits, &[])));
    }
    // Words [0] (one token) and [1, 0] and [3, 3, 1].
    let words = vec![vec![0], vec![1, 0], vec![3, 3, 1]];
    let mut s = Sampler::new(sp(0.0, |p| p.bad_words_ids = words));
    let mut ctx = vec![3, 3]; // the prompt: it does not count
    let mut picks = Vec::new();
    for _ in 0..3 {
        let t = s.sample(&logits, &ctx);
        picks.push(t);
        ctx.push(t);
    }
    // 0 is always banned; after 1, 0 would be anyway; [3, 3] is the prompt, so 1 is free.
    assert_eq!(picks, [1, 1, 1]);
    let mut s = Sampler::new(sp(0.0, |p| p.bad_words_ids = vec![vec![1, 1]]));
    let mut ctx = vec![];
    for _ in 0..4 {
        let t = s.sample(&[0.0, 5.0, 4.0], &ctx);
        ctx.push(t);
    }
    assert_eq!(ctx, [1, 2, 1, 2]);
}

/// Only stops ending past `end` count, whatever their lengths; a stop may begin before `end`,
/// inside a character's bytes too; `end` at (or past) the text's end finds nothing.
#[test]
fn stops_count_when_they_end_past_end() {
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let text = " Bananas\n2. Apples\n3.";
    let end = " Bananas\n2".len();
    assert_eq!(find_stop(text, &v(&["\n", "zzzzz"]), end), Some((18, 0)));
    assert_eq!(find_stop(text, &v(&["zzzzz", "\n"]), end), Some((18, 1)));
    // One that begins before `end` and ends after it counts.
    assert_eq!(find_stop(text, &v(&["2. A"]), end), Some((9, 0)));
    assert_eq!(find_stop(text, &v(&["\n"]), 0), Some((8, 0)));
    let fr = " bébé";
    let end = " bé".len();
    assert_eq!(find_stop(fr, &v(&["é"]), end), Some((" béb".len(), 0)));
    assert_eq!(find_stop(fr, &v(&["x"]), end), None);
    for end in [fr.len(), fr.len() + 3] {
        assert_eq!(find_stop(fr, &v(&["x", "é", "bé"]), end), None);
    }
    assert_eq!(find_stop("", &v(&["a"]), 0), None);
}

#[test]
fn stop_strings() {
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        find_stop("hello world", &v(&["world", "lo"]), 0),
        Some((3, 1))
    );
    assert_eq!(find_stop("hello", &v(&["x", ""]), 0), None);
    assert_eq!(find_stop("naïve café", &v(&["é", "ï"]), 0), Some((2, 1)));
    // Two starting at one place: the first listed.
    assert_eq!(find_stop("abc", &v(&["bc", "b"]), 0), Some((1, 0)));
    assert_eq!(stop_holdback("hello wor", &v(&["world"])), 3);
    assert_eq!(stop_holdback("hello world", &v(&["world"])), 0); // not a proper prefix
    assert_eq!(stop_holdback("abc", &v(&["c", "bcd", "xyz", ""])), 2);
    assert_eq!(stop_holdback("", &v(&["ab"])), 0);
    assert_eq!(stop_holdback("caf\u{e9}", &v(&["\u{e9}t\u{e9}"])), 2);
    assert_eq!(stop_holdback("x\u{e8}", &v(&["\u{e9}"])), 0); // same lead byte only
    assert_eq!(stop_holdback("a🙂", &v(&["🙂🙃"])), 4);
    for stop in ["語x", "本語x", "日本語x"] {
        let h = stop_holdback("日本語", &v(&[stop]));
        assert!("日本語".is_char_boundary(9 - h));
        assert_eq!(h, stop.len() - 1);
    }
}

/// Rows that put the greedy rule's edges in place: ties, +inf beside f32::MAX, -0.0 before
/// +0.0, NaN of either sign, all -inf, few distinct values (many ties), subnormals, plain noise.
fn argmax_edge_rows(vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let (inf, ninf) = (f32::INFINITY, f32::NEG_INFINITY);
    let n = noise(vocab, seed);
    let top = n.iter().copied().fold(ninf, f32::max);
    let at = |row: &mut Vec<f32>, i: usize, v: f32| row[i % vocab] = v;
    let mut rows = vec![n.clone()];
    let mut r = n.clone();
    at(&mut r, vocab / 2, top + 1.0);
    at(&mut r, vocab - 1, top + 1.0);
    at(&mut r, vocab / 3, top + 1.0);
    rows.push(r);
    for (first, second) in [(inf, f32::MAX), (f32::MAX, inf)] {
        let mut r = n.clone();
        at(&mut r, vocab - 2, second);
        at(&mut r, vocab / 4 + 1, first);
        rows.push(r);
    }
    let mut r = n.clone();
    at(&mut r, vocab / 5, f32::NAN);
    rows.push(r);
    rows.push(vec![ninf; vocab]);
    let mut r = vec![ninf; vocab];
    at(&mut r, vocab / 2 + 1, 0.0);
    at(&mut r, vocab / 3, -0.0);
    rows.push(r);
    rows.push(n.iter().map(|x| x.round()).collect());
    let mut r = vec![ninf; vocab];
    at(&mut r, vocab - 1, -3.0e38);
    rows.push(r);
    rows.push(n.iter().map(|x| x * 1e-39).collect()); // subnormals
    let mut r = n.clone();
    at(&mut r, vocab / 7, -f32::NAN);
    rows.push(r);
    rows
}

/// The argmax op's CPU reference picks what the greedy sampler picks on every edge row, and
/// the sampler says when it may take such a pick.
#[test]
fn argmax_picks_what_the_greedy_sampler_picks() {
    for vocab in [1, 2, 7, 37, 1000, 4099] {
        for (i, row) in argmax_edge_rows(vocab, vocab as u64).iter().enumerate() {
            let mut s = Sampler::new(SamplingParams::default());
            assert!(s.picks_argmax());
            // A bias of 0 changes no logit but takes the sampler's own path, not `pick`.
            let mut full = Sampler::new(SamplingParams {
                logit_bias: vec![(0, 0.0)],
                ..Default::default()
            });
            let want = full.try_sample(row, &[]);
            assert_eq!(s.try_sample(row, &[]), want, "vocab {vocab}, row {i}");
            assert_eq!(
                crate::cpu::argmax::pick(row),
                want,
                "vocab {vocab}, row {i}"
            );
            let mut out = vec![7.5; 1];
            crate::cpu::argmax::argmax(row, 1, vocab, &mut out).unwrap();
            assert_eq!(
                out[0],
                want.map_or(-1.0, |t| t as f32),
                "vocab {vocab}, row {i}"
            );
        }
    }
    // Ties go to the first; +inf ties with f32::MAX; -0.0 ties with +0.0.
    let pick = crate::cpu::argmax::pick;
    assert_eq!(pick(&[1.0, 3.0, 3.0]), Some(1));
    assert_eq!(pick(&[f32::MAX, f32::INFINITY]), Some(0));
    assert_eq!(pick(&[f32::NEG_INFINITY, -0.0, 0.0]), Some(1));
    assert_eq!(pick(&[1.0, f32::NAN]), None);
    assert_eq!(pick(&[f32::NEG_INFINITY; 3]), None);
    assert_eq!(pick(&[]), None);
    let mut out = vec![0.0; 2];
    let e = crate::cpu::argmax::argmax(&[0.0; 4], 2, (1 << 24) + 1, &mut out);
    assert!(e.unwrap_err().to_string().contains("exceeds 16777216"));
}

/// Every parameter that moves or masks a logit, and `min_tokens` not yet reached, keep the
/// pick on the host; `accept_argmax` counts a pick as `try_sample` does.
#[test]
fn picks_argmax_only_for_plain_greedy() {
    let plain = SamplingParams::default();
    type Edit = (&'static str, fn(&mut SamplingParams));
    let edits: [Edit; 9] = [
        ("temperature", |p| p.temperature = 0.7),
        ("logit_bias", |p| p.logit_bias = vec![(1, 0.5)]),
        ("repetition_penalty", |p| p.repetition_penalty = 1.1),
        ("presence_penalty", |p| p.presence_penalty = 0.5),
        ("frequency_penalty", |p| p.frequency_penalty = 0.5),
        ("min_tokens", |p| p.min_tokens = 1),
        ("allowed_token_ids", |p| p.allowed_token_ids = vec![1]),
        ("bad_words_ids", |p| p.bad_words_ids = vec![vec![1]]),
        ("top_k with temperature", |p| {
            p.temperature = 0.5;
            p.top_k = 1
        }),
    ];
    for (name, edit) in edits {
        let mut p = plain.clone();
        edit(&mut p);
        assert!(!Sampler::new(p).picks_argmax(), "{name}");
    }
    // Greedy filters that change nothing keep it: top_k/top_p/min_p apply only when sampling.
    let mut p = plain.clone();
    p.top_p = 0.5;
    assert!(Sampler::new(p).picks_argmax());
    // min_tokens reached: the device may pick again.
    let mut s = Sampler::new(SamplingParams {
        min_tokens: 2,
        ..plain
    });
    assert!(!s.picks_argmax());
    assert_eq!(s.accept_argmax(Some(4)), Some(4));
    assert_eq!(s.accept_argmax(None), None);
    assert!(!s.picks_argmax(), "a refused row is not a returned token");
    assert_eq!(s.accept_argmax(Some(2)), Some(2));
    assert!(s.picks_argmax());
}

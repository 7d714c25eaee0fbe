//! Prefix sharing in the scheduler (`SchedulerConfig::share_prefixes`), checked on any
//! backend that copies KV rows ([`check_prefix_sharing`]): `tests/prefix_sharing.rs` runs it on
//! the CPU and on wgpu, `tests/golden_cuda.rs` on CUDA (`--cuda-experimental kv-copy`).

use std::collections::HashMap;

use crate::Fixture;
use dlp_engine::backend::Backend;
use dlp_engine::generate::{Control, GenOutput, GenRequest};
use dlp_engine::lora::resolve_mixture;
use dlp_engine::model::Model;
use dlp_engine::scheduler::{Event, Scheduler, SchedulerConfig, SeqOptions};
use dlp_engine::SamplingParams;

/// Per sequence id: its output and the logits its first token was sampled from.
type Results = HashMap<u64, (GenOutput, Vec<f32>)>;

/// Runs `requests` (ids 0..) to the end; `cancel_after_first_step` cancels that id after the
/// first step. Returns the results and the prompt tokens that went through the model.
fn run<B: Backend>(
    model: &Model<B>,
    requests: &[GenRequest],
    share: bool,
    step_tokens: usize,
    cancel_after_first_step: Option<u64>,
) -> (Results, usize) {
    let capacity = requests.iter().map(|r| r.prompt.len()).max().unwrap() + 16;
    let cfg = SchedulerConfig {
        max_seqs: requests.len(),
        capacity,
        step_tokens,
        mix_k: 8,
        // As the server runs (cpu: 4 KiB pages committed as written, given back at the end).
        sparse_kv: true,
        share_prefixes: share,
    };
    let mut sched = Scheduler::new(model, cfg).unwrap();
    for (i, r) in requests.iter().enumerate() {
        sched
            .add(model, i as u64, r.clone(), SeqOptions::default())
            .unwrap();
    }
    let mut first: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut out = Results::new();
    let mut steps = 0;
    while sched.has_work() {
        let report = sched
            .step(model, &[], |ev| {
                if let Event::Token { id, logits, .. } = ev {
                    first.entry(id).or_insert_with(|| logits.to_vec());
                }
                Ok(Control::Continue)
            })
            .unwrap();
        for (id, o) in report.finished {
            let logits = first.remove(&id).unwrap_or_default();
            out.insert(id, (o, logits));
        }
        steps += 1;
        if steps == 1 {
            if let Some(id) = cancel_after_first_step {
                assert!(sched.cancel(id), "sequence {id} was running");
            }
        }
    }
    (out, sched.stats.prefill_tokens)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sequences that share a prompt prefix (and its mixture) with a running one must generate
/// what they generate when every prompt is computed in full — the same greedy tokens, and
/// first-token logits within `tol` — while fewer prompt tokens go through the model: a whole
/// prompt shared, 24 of its 40 tokens shared, another mixture not shared, a follower waiting on
/// chunked prefill, a leader that ends at its first token, and a leader cancelled before the
/// copy (its followers then compute the prompt once, the oldest for the others). `model` holds
/// fixture `fx`'s adapters (two at least).
///
/// # Panics
/// Whatever differs, naming the sequence.
pub fn check_prefix_sharing<B: Backend>(model: &Model<B>, fx: &Fixture, tol: f32) {
    let names = model.adapter_names().to_vec();
    let mix = |i: usize| resolve_mixture(&names, &[(names[i].clone(), 1.0)]).unwrap();
    let case = &fx.golden.cases[0];
    let ids = fx.ids(&format!("{}.input_ids", case.name));
    // A prompt of 40 tokens, however long the fixture's case is.
    let prompt: Vec<u32> = ids.iter().cycle().take(40).copied().collect();
    let mut other = prompt.clone();
    for t in &mut other[24..] {
        *t = (*t + 7) % model.config.vocab_size as u32;
    }
    let req = |prompt: &[u32], m: usize| GenRequest {
        prompt: prompt.to_vec(),
        segments: vec![(0, mix(m))],
        params: SamplingParams {
            max_tokens: 6,
            ..Default::default()
        },
        ..Default::default()
    };
    // 0 leads; 1 shares its whole prompt; 2 its first 24 tokens; 3 the tokens under another
    // adapter (nothing shared).
    let requests = [
        req(&prompt, 0),
        req(&prompt, 0),
        req(&other, 0),
        req(&prompt, 1),
    ];
    let (full, full_prefill) = run(model, &requests, false, 64, None);
    let (shared, shared_prefill) = run(model, &requests, true, 64, None);
    assert_eq!(full_prefill, 160);
    assert_eq!(shared_prefill, 160 - 39 - 24, "copied: 39 and 24 positions");
    for id in 0..4 {
        let (a, la) = &full[&id];
        let (b, lb) = &shared[&id];
        assert_eq!(a.tokens, b.tokens, "sequence {id}: greedy tokens");
        assert_eq!(a.tokens.len(), 6);
        let d = max_diff(la, lb);
        assert!(
            d <= tol,
            "sequence {id}: first-token logits differ by {d} (bound {tol})"
        );
    }
    // Mixture 1 differs from mixture 0 (so request 3 really shared nothing).
    assert!(max_diff(&full[&0].1, &full[&3].1) > 1e-3);

    // Prompts in chunks of 8 tokens: the follower waits for the leader's prefill; the leader
    // cancelled after the first step leaves it to compute its prompt itself.
    let (waited, waited_prefill) = run(model, &requests[..2], true, 8, None);
    assert_eq!(waited_prefill, 80 - 39);
    assert_eq!(waited[&1].0.tokens, full[&1].0.tokens);
    // A leader that ends in the step its prompt completes (`max_tokens` 1) still leaves it.
    let one = |r: &GenRequest| GenRequest {
        params: SamplingParams {
            max_tokens: 1,
            ..Default::default()
        },
        ..r.clone()
    };
    let (short, short_prefill) = run(
        model,
        &[one(&requests[0]), one(&requests[1])],
        true,
        64,
        None,
    );
    assert_eq!(short_prefill, 80 - 39);
    assert_eq!(short[&1].0.tokens, full[&1].0.tokens[..1]);
    let (alone, alone_prefill) = run(model, &requests[..2], true, 8, Some(0));
    assert_eq!(
        alone_prefill, 80,
        "the fork was dropped: the whole prompt computed"
    );
    assert!(!alone.contains_key(&0), "sequence 0 was cancelled");
    assert_eq!(alone[&1].0.tokens, full[&1].0.tokens);
    // Two followers of a cancelled leader: the older computes the prompt, the other copies it.
    let three = [
        requests[0].clone(),
        requests[1].clone(),
        requests[1].clone(),
    ];
    let (pair, pair_prefill) = run(model, &three, true, 8, Some(0));
    assert_eq!(
        pair_prefill,
        120 - 39,
        "the second follower forked from the first"
    );
    assert_eq!(pair[&1].0.tokens, full[&1].0.tokens);
    assert_eq!(pair[&2].0.tokens, full[&1].0.tokens);
}

//! A batch's sampled rows are picked side by side on the host's cores (the scheduler's
//! `sample_rows`, rayon): each token is what the sequence's own sampler, fed the logit row
//! reported with that token, picks; a pool of one thread and one of four give the same tokens.

use std::collections::HashMap;

use dlp_engine::generate::{Control, GenRequest};
use dlp_engine::lora::resolve_mixture;
use dlp_engine::sampler::Sampler;
use dlp_engine::scheduler::{Event, Scheduler, SchedulerConfig, SeqOptions};
use dlp_engine::SamplingParams;
use dlp_tests::{cpu_model, fixtures, Fixture};

fn sampling(seed: u64, edit: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut p = SamplingParams {
        temperature: 1.0,
        seed,
        max_tokens: 12,
        ..Default::default()
    };
    edit(&mut p);
    p
}

#[test]
fn sampled_rows_picked_side_by_side_are_each_sequences_own() {
    let Some(dir) = fixtures("tiny-llama") else {
        return;
    };
    let fx = Fixture::open(&dir);
    let model = cpu_model(&fx);
    let names = model.adapter_names().to_vec();
    let case = &fx.golden.cases[0];
    let ids = fx.ids(&format!("{}.input_ids", case.name));
    let prompt: Vec<u32> = ids.iter().cycle().take(12).copied().collect();
    let params = [
        sampling(1, |_| ()),
        sampling(2, |p| (p.temperature, p.top_p) = (0.7, 0.9)),
        sampling(3, |p| (p.temperature, p.top_k) = (1.3, 20)),
        sampling(4, |p| (p.min_p, p.repetition_penalty) = (0.1, 1.3)),
        sampling(5, |p| {
            (p.frequency_penalty, p.presence_penalty) = (0.5, 0.3);
            p.min_tokens = 4;
        }),
        sampling(6, |p| p.temperature = 0.0),
        sampling(1, |_| ()), // the first one's seed again, under another mixture
    ];
    // Made inside each run: a request may hold a grammar, not shared between threads.
    let requests = || -> Vec<GenRequest> {
        (params.iter().enumerate())
            .map(|(i, p)| {
                let w = (i % 3) as f32 / 2.0;
                let named = vec![(names[0].clone(), 1.0 - w), (names[1].clone(), w)];
                GenRequest {
                    prompt: prompt[..4 + i].to_vec(),
                    segments: vec![(0, resolve_mixture(&names, &named).unwrap())],
                    params: p.clone(),
                    ..Default::default()
                }
            })
            .collect()
    };

    let run = |threads: usize, eos: &[u32]| -> HashMap<u64, Vec<u32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let requests = requests();
            let cfg = SchedulerConfig {
                max_seqs: requests.len(),
                capacity: 64,
                step_tokens: 64,
                mix_k: 8,
                sparse_kv: false,
                share_prefixes: false,
            };
            let mut sched = Scheduler::new(&model, cfg).unwrap();
            let mut refs: Vec<Sampler> = Vec::new();
            let mut context: Vec<Vec<u32>> = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                sched
                    .add(&model, i as u64, r.clone(), SeqOptions::default())
                    .unwrap();
                let mut reference = Sampler::new(r.params.clone());
                reference.set_end_tokens(eos);
                refs.push(reference);
                context.push(r.prompt.clone());
            }
            let mut tokens: HashMap<u64, Vec<u32>> = HashMap::new();
            while sched.has_work() {
                sched
                    .step(&model, eos, |ev| {
                        let Event::Token { id, token, logits } = ev else {
                            return Ok(Control::Continue);
                        };
                        let i = id as usize;
                        let want = refs[i].try_sample(logits, &context[i]);
                        assert_eq!(want, Some(token), "{threads} threads, sequence {id}");
                        context[i].push(token);
                        tokens.entry(id).or_default().push(token);
                        Ok(Control::Continue)
                    })
                    .unwrap();
            }
            tokens
        })
    };
    let alone = run(1, &[]);
    assert_eq!(alone, run(4, &[]));
    for (id, p) in params.iter().enumerate() {
        assert_eq!(alone[&(id as u64)].len(), p.max_tokens, "sequence {id}");
    }
    // Seeds and mixtures matter: the same seed under another mixture, another seed.
    assert_ne!(alone[&0], alone[&6]);
    assert_ne!(alone[&0], alone[&1]);
    // Again with sequence 4's second token as the end-of-sequence token: `min_tokens` holds it
    // back for its first four (the reference samplers are told the same end token).
    let eos = [alone[&4][1]];
    let ended = run(1, &eos);
    assert_eq!(ended, run(4, &eos));
    assert!(ended[&4].len() >= 4, "{:?}", ended[&4]);
}

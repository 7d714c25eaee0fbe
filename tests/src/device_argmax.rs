//! Picks made by the step (greedy: [`Model::forward_argmax`], `Backend::argmax`; drawn at a
//! temperature: [`Model::forward_sample`], `Backend::sample`) against picks made on the host
//! from the downloaded logit rows, through the scheduler, on any backend
//! ([`check_device_argmax`]): `tests/device_argmax.rs` runs it on the CPU and on wgpu,
//! `tests/golden_cuda.rs` on CUDA (`--cuda-experimental device-argmax`, `device-sampling`).

use std::collections::HashMap;

use crate::Fixture;
use dlp_engine::backend::Backend;
use dlp_engine::generate::{Control, GenOutput, GenRequest};
use dlp_engine::lora::resolve_mixture;
use dlp_engine::model::Model;
use dlp_engine::scheduler::{Event, Scheduler, SchedulerConfig, SeqOptions};
use dlp_engine::SamplingParams;

/// What one run saw: each sequence's output, and how many of its tokens came with a logit
/// row and without one.
struct Run {
    outputs: HashMap<u64, GenOutput>,
    with_rows: HashMap<u64, usize>,
    without_rows: HashMap<u64, usize>,
}

fn run<B: Backend>(model: &Model<B>, requests: &[GenRequest], eos: &[u32], on_device: bool) -> Run {
    let cfg = SchedulerConfig {
        max_seqs: requests.len(),
        capacity: requests.iter().map(|r| r.prompt.len()).max().unwrap() + 16,
        step_tokens: 64,
        mix_k: 8,
        sparse_kv: false,
        share_prefixes: false,
    };
    let mut sched = Scheduler::new(model, cfg).unwrap();
    let opts = SeqOptions {
        picks_on_device: on_device,
        ..SeqOptions::default()
    };
    for (i, r) in requests.iter().enumerate() {
        sched.add(model, i as u64, r.clone(), opts).unwrap();
    }
    let mut run = Run {
        outputs: HashMap::new(),
        with_rows: HashMap::new(),
        without_rows: HashMap::new(),
    };
    let mut n = 0;
    while sched.has_work() {
        let report = sched
            .step(model, eos, |ev| {
                let Event::Token { id, logits, .. } = ev else {
                    return Ok(Control::Continue);
                };
                let seen = if logits.is_empty() {
                    &mut run.without_rows
                } else {
                    &mut run.with_rows
                };
                *seen.entry(id).or_default() += 1;
                // Remix now and then: steps of new mixtures keep picking on the device.
                n += 1;
                Ok(match n % 9 {
                    0 => Control::Remix(
                        requests[(id as usize + 1) % requests.len()].segments[0]
                            .1
                            .clone(),
                    ),
                    _ => Control::Continue,
                })
            })
            .unwrap();
        run.outputs.extend(report.finished);
    }
    run
}

/// Generation picks the same tokens and ends the same way whether each step picks on the
/// device or on the host from its downloaded rows: three greedy sequences under different
/// mixtures, remixed as they go, one held to `min_tokens` (its first picks, and so the batch's
/// steps, stay on the host until it is reached), one that samples at a temperature alone
/// (drawn on the device where the backend samples there: bit for bit the host's draw) and
/// one with top-p (never on the device: no step that holds it picks there; it ends first);
/// then again with an end-of-sequence token that sequence 0 meets on the way (the same ends,
/// the same end tokens). The device paths really ran where the backend runs them (tokens came
/// without a logit row). `model` holds fixture `fx`'s adapters (two at least).
///
/// # Panics
/// Whatever differs, naming the sequence.
pub fn check_device_argmax<B: Backend>(model: &Model<B>, fx: &Fixture) {
    let names = model.adapter_names().to_vec();
    assert!(names.len() >= 2, "the fixture has {names:?}");
    let mix = |w: [f32; 2]| {
        let named: Vec<(String, f32)> = names.iter().cloned().zip(w).collect();
        resolve_mixture(&names, &named).unwrap()
    };
    let case = &fx.golden.cases[0];
    let ids = fx.ids(&format!("{}.input_ids", case.name));
    let prompt: Vec<u32> = ids.iter().cycle().take(12).copied().collect();
    let req = |n: usize, w: [f32; 2], params: SamplingParams| GenRequest {
        prompt: prompt[..n].to_vec(),
        segments: vec![(0, mix(w))],
        params,
        ..Default::default()
    };
    let greedy = |max_tokens| SamplingParams {
        max_tokens,
        ..Default::default()
    };
    let requests = [
        req(4, [1.0, 0.0], greedy(14)),
        req(7, [0.3, 0.7], greedy(12)),
        req(
            12,
            [0.0, 1.0],
            SamplingParams {
                min_tokens: 3,
                ..greedy(10)
            },
        ),
        req(
            5,
            [0.5, 0.5],
            SamplingParams {
                temperature: 0.8,
                seed: 7,
                ..greedy(9)
            },
        ),
        req(
            6,
            [0.2, 0.8],
            SamplingParams {
                temperature: 0.9,
                top_p: 0.9,
                seed: 11,
                ..greedy(4)
            },
        ),
    ];
    let samples_here = model.backend.samples_on_device(model.config.vocab_size);
    let (mut eos, mut ends_at) = (vec![], 0);
    for round in ["no end token", "an end token"] {
        let host = run(model, &requests, &eos, false);
        let device = run(model, &requests, &eos, true);
        for id in 0..requests.len() as u64 {
            let (h, d) = (&host.outputs[&id], &device.outputs[&id]);
            assert_eq!(h.tokens, d.tokens, "{round}: sequence {id}: tokens");
            assert_eq!(h.finish, d.finish, "{round}: sequence {id}: finish");
            assert_eq!(
                h.stop_token, d.stop_token,
                "{round}: sequence {id}: end token"
            );
            assert_eq!(h.segments, d.segments, "{round}: sequence {id}: mixtures");
            let rows = host.without_rows.get(&id);
            assert_eq!(rows, None, "{round}: sequence {id}: rows");
        }
        let top_p = device.without_rows.get(&4);
        assert_eq!(top_p, None, "the top-p sequence got its rows");
        // The temperature sequence is drawn on the device once the top-p one has ended (4
        // tokens; its own 9 outlast it), where the backend samples there.
        let drawn = device.without_rows.get(&3).copied().unwrap_or(0);
        let tokens = device.outputs[&3].tokens.len();
        if !samples_here {
            assert_eq!(
                drawn, 0,
                "{round}: sequence 3 drawn on a backend that does not"
            );
        } else if eos.is_empty() {
            assert!(
                drawn >= 3,
                "{round}: {drawn} of sequence 3's {tokens} tokens drawn on the device"
            );
        }
        let picked_on_device: usize = device.without_rows.values().sum();
        // Once 4 has ended, 2 has its first three tokens and (where the backend does not
        // sample on the device) 3 has ended, every step picks on the device: 9 tokens at
        // least (the end token may end sequences early in the second round).
        let enough = if eos.is_empty() { 8 } else { 1 };
        assert!(
            picked_on_device >= enough,
            "{round}: {picked_on_device} tokens picked on the device"
        );
        println!(
            "{} ({round}): {picked_on_device} tokens picked on the device, {} with rows",
            model.backend.name(),
            device.with_rows.values().sum::<usize>()
        );
        // Again with a token of sequence 0 as the end-of-sequence token, one that no sequence
        // made before it (an earlier end elsewhere would change the batch, and so the last
        // bits of sequence 0's logits, and a near-tie of a random model could turn): it ends
        // there. The steps run in lockstep, so index j of every sequence is one step.
        let first = &host.outputs[&0];
        if eos.is_empty() {
            let fresh = |j: usize| {
                let t = first.tokens[j];
                (0..requests.len() as u64).all(|o| {
                    let made = &host.outputs[&o].tokens;
                    !made[..(j + usize::from(o != 0)).min(made.len())].contains(&t)
                })
            };
            let j = (3..first.tokens.len()).find(|&j| fresh(j));
            let j = j.expect("a token of sequence 0 no sequence made before it");
            eos = vec![first.tokens[j]];
            ends_at = j;
        } else {
            assert_eq!(
                (first.stop_token, first.tokens.len()),
                (Some(eos[0]), ends_at),
                "sequence 0 ends at its end token"
            );
        }
    }
}

//! What CUDA graphs (`--cuda-experimental graphs`) rely on, checked on the CPU: every decode
//! step of one [`StepShape`] launches exactly the same ops, on the same buffers, with the same
//! sizes, whatever its tokens, positions and mixtures ([`CpuProbe::replay_check`]); only the
//! plan's contents differ, and the graph path copies those into the recording's buffers.

use dlp_engine::backend::{Backend, StepShape};
use dlp_engine::generate::{generate, Control, GenRequest};
use dlp_engine::lora::resolve_mixture;
use dlp_engine::{SamplingParams, StepPlan};
use dlp_tests::cpu_probe::CpuProbe;
use dlp_tests::{fixtures, Fixture};

/// A batch of three sequences with different mixtures, remixed during generation: dozens of
/// decode steps share a shape, and every one launches what the first of its shape did. On
/// Llama and on Qwen3 (whose query/key norms write buffers of their own).
#[test]
fn decode_steps_of_one_shape_launch_the_same_work() {
    for name in ["tiny-llama", "tiny-qwen3"] {
        replays_match(name);
    }
}

fn replays_match(name: &str) {
    let Some(dir) = fixtures(name) else {
        return;
    };
    let fx = Fixture::open(&dir);
    let model = fx
        .load(CpuProbe::replay_check())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    let names = model.adapter_names().to_vec();
    assert!(names.len() >= 2, "the fixture has {names:?}");
    let mix = |w: &[f32]| {
        let named: Vec<(String, f32)> = names.iter().cloned().zip(w.iter().copied()).collect();
        resolve_mixture(&names, &named).unwrap()
    };
    let (a, b, c) = (mix(&[1.0, 0.0]), mix(&[0.3, 0.7]), mix(&[0.0, 1.0]));
    let case = &fx.golden.cases[0];
    let prompt = fx.ids(&format!("{}.input_ids", case.name))[..case.prompt_len].to_vec();
    let req = |m: &dlp_engine::lora::Mixture, n: usize| GenRequest {
        prompt: prompt[..prompt.len().min(n)].to_vec(),
        segments: vec![(0, m.clone())],
        params: SamplingParams {
            max_tokens: 16,
            ..Default::default()
        },
        ..Default::default()
    };
    let requests = [req(&a, 3), req(&b, 5), req(&c, 8)];
    let mut n = 0;
    let (outs, _) = generate(&model, &requests, &[], 64, |_, _| {
        n += 1;
        Ok(if n % 7 == 0 {
            Control::Remix(if n % 2 == 0 { a.clone() } else { c.clone() })
        } else {
            Control::Continue
        })
    })
    .expect("every step of a repeated shape matched the first of its shape");
    assert!(outs.iter().all(|o| o.tokens.len() == 16));
    let checked = model.backend.replays_checked();
    println!("{name}: {checked} steps checked against the first of their shape");
    assert!(checked >= 10, "only {checked} steps repeated a shape");
}

/// The check can fail: two steps of one shape that touch different buffers are refused,
/// naming the first op that differs.
#[test]
fn the_replay_check_catches_a_step_that_launches_other_work() {
    let probe = CpuProbe::replay_check();
    let shape = StepShape {
        workspace: 1,
        kv: 1,
        lora: 1,
        n_tokens: 1,
        n_segments: 1,
        mix_k: 1,
        n_logit_rows: 1,
        any_lora: false,
        tokens_alone_in_slots: true,
        argmax: false,
        sample: false,
    };
    let plan = StepPlan {
        token_ids: vec![0],
        positions: vec![0],
        kv_slots: vec![0],
        segment_of_token: vec![0],
        mix_k: 1,
        mix_slots: vec![dlp_engine::NO_ADAPTER],
        mix_weights: vec![0.0],
        logit_rows: vec![0],
        pick_args: Vec::new(),
    };
    let (mut x, y) = (
        probe.upload(&[1.0; 4]).unwrap(),
        probe.upload(&[2.0; 4]).unwrap(),
    );
    let mut z = probe.upload(&[3.0; 4]).unwrap();
    probe
        .run_recorded(&shape, &plan, None, &mut |_| probe.add(&mut x, &y, 4))
        .unwrap();
    probe
        .run_recorded(&shape, &plan, None, &mut |_| probe.add(&mut x, &y, 4))
        .unwrap();
    assert_eq!(probe.replays_checked(), 1);
    let e = probe
        .run_recorded(&shape, &plan, None, &mut |_| probe.add(&mut z, &y, 4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("replay check") && e.contains("from op 0"), "{e}");
    // Another shape is recorded afresh.
    let other = StepShape {
        n_tokens: 2,
        ..shape
    };
    probe
        .run_recorded(&other, &plan, None, &mut |_| probe.add(&mut z, &y, 4))
        .unwrap();
}

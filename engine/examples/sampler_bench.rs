//! Time per logit row of the host sampler ([`Sampler::try_sample`]) at the vocabularies of
//! Llama 2 (32,000), SmolLM2 (49,152) and Llama 3 (128,256), greedy and sampled as servers'
//! requests ask. Rows: a bell of width 2.5 with five tokens far above it, as language models
//! give. `cargo run --release -p dlp-engine --example sampler_bench` (`ONLY="t 1, top-p 0.95"`
//! runs that row alone, e.g. under a profiler).

use std::time::Instant;

use dlp_engine::sampler::{Sampler, SamplingParams};
use rand::{Rng, SeedableRng};

/// Rows cycled through, so that one row's cache state does not carry to the next.
const ROWS: usize = 8;
/// Picks timed per setting.
const PICKS: usize = 200;

fn main() {
    let mut r = rand::rngs::StdRng::seed_from_u64(1);
    let sampled = |temperature, edit: fn(&mut SamplingParams)| {
        let mut p = SamplingParams {
            temperature,
            ..Default::default()
        };
        edit(&mut p);
        p
    };
    let settings = [
        ("greedy", SamplingParams::default()),
        ("temperature 1", sampled(1.0, |_| ())),
        ("t 0.7, top-p 0.9", sampled(0.7, |p| p.top_p = 0.9)),
        ("t 1, top-p 0.95", sampled(1.0, |p| p.top_p = 0.95)),
        ("t 0.7, top-k 50", sampled(0.7, |p| p.top_k = 50)),
        ("t 1, min-p 0.05", sampled(1.0, |p| p.min_p = 0.05)),
    ];
    println!("| setting          | vocab 32000 | vocab 49152 | vocab 128256 |");
    println!("|------------------|-------------|-------------|--------------|");
    let rows: Vec<Vec<Vec<f32>>> = [32_000, 49_152, 128_256]
        .iter()
        .map(|&vocab| {
            (0..ROWS)
                .map(|_| {
                    let mut v: Vec<f32> = (0..vocab)
                        .map(|_| (0..4).map(|_| r.random_range(-1.0f32..1.0)).sum::<f32>() * 2.2)
                        .collect();
                    for j in 0..5 {
                        v[r.random_range(0..vocab)] = 12.0 + j as f32;
                    }
                    v
                })
                .collect()
        })
        .collect();
    let only = std::env::var("ONLY").ok();
    for (name, p) in settings {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut line = format!("| {name:<16} |");
        for (rows, width) in rows.iter().zip([11, 11, 12]) {
            let mut s = Sampler::new(p.clone());
            let t = Instant::now();
            for i in 0..PICKS {
                std::hint::black_box(s.try_sample(&rows[i % ROWS], &[]));
            }
            let us = t.elapsed().as_secs_f64() / PICKS as f64 * 1e6;
            line += &format!(" {:>w$} |", format!("{us:.1} µs"), w = width);
        }
        println!("{line}");
    }
}

//! `dlp-run bench`: the bytes one sequence's decode step reads (every weight as the backend
//! stores it, the adapters of its mixture, and its KV cache at the bench's mean decode
//! position) and the memory bandwidth, measured in the same
//! run (the CPU: this machine's streaming read; a GPU: its device copy, from the backend), so
//! that each decode figure can be read as a share of what memory allows: near 100% a scenario
//! is bandwidth-bound, well below it the arithmetic per byte (unpacking blocks, the LoRA pair)
//! or the launches are the limit.

use std::time::Instant;

use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::lora::Mixture;
use dlp_engine::model::Model;
use dlp_engine::Backend;
use rayon::prelude::*;
use serde_json::{json, Value};

/// Bytes of the streaming-read probe: well past the caches of the CPUs this runs on.
const PROBE_BYTES: usize = 256 << 20;

/// What a decode step reads, and what memory delivers.
#[derive(Debug, Clone)]
pub struct MemoryModel {
    /// The bandwidth a decode step is measured against, GB/s: on the CPU the best of several
    /// passes summing [`PROBE_BYTES`] on the run's threads; on a GPU its device copy.
    pub bandwidth_gbs: f64,
    /// Whether `bandwidth_gbs` is a GPU's device copy (bytes read plus written).
    pub device_copy: bool,
    /// Weights a decode step reads, as the backend stores them.
    pub weight_bytes: u64,
    /// Each adapter's A and B as the CPU backend stores them.
    pub adapter_bytes: Vec<u64>,
    /// Bytes per LoRA parameter (4, or 2 with `--lora-f16`).
    pub lora_bytes_per_param: u64,
    /// KV-cache bytes a decode step of one sequence reads at the bench's mean decode
    /// position ([`Self::with_kv`]; 0 until set).
    pub kv_bytes: u64,
    /// That mean position (positions attended).
    pub kv_positions: u64,
}

impl MemoryModel {
    /// `weight_bytes` from [`dlp_engine::model::Model::weight_bytes_per_token`], the
    /// adapters at `lora_bytes_per_param`; then measures the bandwidth.
    pub fn measure(weight_bytes: u64, adapters: &[PeftAdapter], lora_bytes_per_param: u64) -> Self {
        MemoryModel {
            bandwidth_gbs: stream_read_gbs(),
            ..Self::sized(weight_bytes, adapters, lora_bytes_per_param)
        }
    }

    /// As [`Self::measure`] for a GPU backend, against its device copy bandwidth
    /// ([`dlp_engine::backend::Backend::device_bandwidth_gbs`]).
    pub fn device(
        weight_bytes: u64,
        adapters: &[PeftAdapter],
        lora_bytes_per_param: u64,
        copy_gbs: f64,
    ) -> Self {
        MemoryModel {
            bandwidth_gbs: copy_gbs,
            device_copy: true,
            ..Self::sized(weight_bytes, adapters, lora_bytes_per_param)
        }
    }

    fn sized(weight_bytes: u64, adapters: &[PeftAdapter], lora_bytes_per_param: u64) -> Self {
        MemoryModel {
            bandwidth_gbs: f64::NAN,
            device_copy: false,
            weight_bytes,
            adapter_bytes: adapters
                .iter()
                .map(|a| a.num_params() as u64 * lora_bytes_per_param)
                .collect(),
            lora_bytes_per_param,
            kv_bytes: 0,
            kv_positions: 0,
        }
    }

    /// The model of a bench run on `model`: its weights as stored, `adapters` at
    /// `lora_bytes_per_param`, and its KV cache as the backend stores it at `mean_positions`
    /// (the mean position a decode step attends over), against this machine's streaming read
    /// on the CPU (measured here) or the device's own copy on a GPU. `None` where the backend
    /// cannot tell its weights' bytes or its bandwidth.
    pub fn for_model<B: Backend>(
        model: &Model<B>,
        adapters: &[PeftAdapter],
        lora_bytes_per_param: u64,
        mean_positions: usize,
    ) -> Option<Self> {
        let weights = model.weight_bytes_per_token()?;
        let backend = &model.backend;
        let mem = if backend.name() == "cpu" {
            Self::measure(weights, adapters, lora_bytes_per_param)
        } else {
            let gbs = backend.device_bandwidth_gbs()?;
            Self::device(weights, adapters, lora_bytes_per_param, gbs)
        };
        let cfg = &model.config;
        let per_layer_position = (2 * cfg.kv_dim() * backend.kv_value_bytes()) as u64;
        let kv_bytes = kv_bytes_read(
            &cfg.attention_window,
            per_layer_position,
            mean_positions as u64,
        );
        Some(mem.with_kv(kv_bytes, mean_positions as u64))
    }

    /// What the bandwidth is, for the table: `streaming read` or `device copy`.
    pub fn probe_name(&self) -> &'static str {
        if self.device_copy {
            "device copy"
        } else {
            "streaming read"
        }
    }

    /// With the KV cache a decode step reads at `positions` (see [`kv_bytes_read`]): `kv_bytes`.
    /// At 4,096 positions of Llama-2-7B in f32 that is 4.3 GB, a third of its bf16 weights.
    pub fn with_kv(self, kv_bytes: u64, positions: u64) -> Self {
        MemoryModel {
            kv_bytes,
            kv_positions: positions,
            ..self
        }
    }

    /// Bytes one decode step of a sequence under `mix` reads: the weights, the mixture's
    /// adapters and the KV cache at the mean decode position.
    pub fn bytes_per_token(&self, mix: &Mixture) -> u64 {
        self.weight_bytes
            + self.kv_bytes
            + mix
                .iter()
                .map(|&(a, _)| self.adapter_bytes.get(a).copied().unwrap_or(0))
                .sum::<u64>()
    }

    /// The header line of the table's memory section.
    pub fn describe(&self) -> String {
        let each = match self.adapter_bytes.iter().max() {
            Some(&b) => format!(
                ", each adapter up to {:.1} MB ({} B per LoRA parameter)",
                b as f64 / 1e6,
                self.lora_bytes_per_param
            ),
            None => String::new(),
        };
        let probe = if self.device_copy {
            "device copy (read + write)".to_string()
        } else {
            format!(
                "streaming read ({} MiB, {} threads)",
                PROBE_BYTES >> 20,
                rayon::current_num_threads()
            )
        };
        format!(
            "memory: {probe} {:.1} GB/s; read per token: weights {:.1} MB{each}, KV cache {:.1} MB \
             (mean of {} positions)",
            self.bandwidth_gbs,
            self.weight_bytes as f64 / 1e6,
            self.kv_bytes as f64 / 1e6,
            self.kv_positions,
        )
    }

    /// The JSON object `memory`.
    pub fn to_json(&self) -> Value {
        let (key, mib) = if self.device_copy {
            ("device_copy_gbs", 1024)
        } else {
            ("stream_read_gbs", PROBE_BYTES >> 20)
        };
        json!({
            key: self.bandwidth_gbs,
            "probe_mib": mib,
            "weight_mb_per_token": self.weight_bytes as f64 / 1e6,
            "adapter_mb": self.adapter_bytes.iter().map(|&b| b as f64 / 1e6).collect::<Vec<_>>(),
            "lora_bytes_per_param": self.lora_bytes_per_param,
            "kv_mb_per_token": self.kv_bytes as f64 / 1e6,
            "kv_mean_positions": self.kv_positions,
        })
    }
}

/// The memory free for a new allocation now (Linux's `MemAvailable`), bytes; None where it
/// cannot be read.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Streaming read bandwidth on the current rayon threads, GB/s: the best of seven passes
/// summing a [`PROBE_BYTES`] buffer, each thread one contiguous part.
pub fn stream_read_gbs() -> f64 {
    let v: Vec<f32> = (0..PROBE_BYTES / 4)
        .into_par_iter()
        .map(|i| (i % 1000) as f32)
        .collect();
    let part = v.len().div_ceil(rayon::current_num_threads());
    let mut best = 0f64;
    for _ in 0..7 {
        let t = Instant::now();
        let s: f32 = v.par_chunks(part).map(sum).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        best = best.max(PROBE_BYTES as f64 / secs / 1e9);
    }
    best
}

/// A sum with independent lanes, so the loads, not one addition chain, set the pace; in the
/// widest registers the CPU has (a load per cache line with AVX-512, as the engine's
/// kernels).
fn sum(c: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { sum_avx512(c) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { sum_avx2(c) };
        }
    }
    sum_lanes(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_avx512(c: &[f32]) -> f32 {
    sum_lanes(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_avx2(c: &[f32]) -> f32 {
    sum_lanes(c)
}

#[inline(always)]
fn sum_lanes(c: &[f32]) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    let mut blocks = c.chunks_exact(64);
    for b in &mut blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            for (i, x) in a.iter_mut().enumerate() {
                *x += b[j * 16 + i];
            }
        }
    }
    acc.iter().flatten().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// Bytes of the KV cache one decode step at `positions` reads: keys and values of every layer,
/// `per_layer_position` bytes per layer and position (2 x kv_dim x bytes per value), each layer
/// over its attention window when it has one (`windows`, one entry per layer, as
/// `ModelConfig::attention_window`: a sliding-window layer attends over at most its last
/// `window` positions).
pub fn kv_bytes_read(windows: &[Option<usize>], per_layer_position: u64, positions: u64) -> u64 {
    windows
        .iter()
        .map(|w| per_layer_position * w.map_or(positions, |w| positions.min(w as u64)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sum_matches_a_plain_sum() {
        let v: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        assert_eq!(sum(&v), v.iter().sum::<f32>());
    }

    #[test]
    fn a_token_reads_the_weights_and_its_mixture() {
        let m = MemoryModel {
            bandwidth_gbs: 1.0,
            device_copy: false,
            weight_bytes: 1000,
            adapter_bytes: vec![10, 20, 40],
            lora_bytes_per_param: 4,
            kv_bytes: 0,
            kv_positions: 0,
        };
        assert_eq!(m.bytes_per_token(&vec![]), 1000);
        assert_eq!(m.bytes_per_token(&vec![(0, 0.5), (2, 0.5)]), 1050);
        // The KV cache at the mean decode position counts too.
        let m = m.with_kv(kv_bytes_read(&[None], 3, 100), 100);
        assert_eq!(m.bytes_per_token(&vec![(1, 1.0)]), 1000 + 20 + 300);
        assert!(m
            .describe()
            .contains("KV cache 0.0 MB (mean of 100 positions)"));
        assert_eq!(m.to_json()["kv_mean_positions"].as_u64(), Some(100));
        assert!(m.describe().contains("streaming read"), "{}", m.describe());
        assert!(m.to_json()["stream_read_gbs"].is_number());
    }

    #[test]
    fn sliding_window_layers_read_at_most_their_window() {
        // Mistral-style: every layer windowed; Qwen2-style: the first layers full.
        assert_eq!(kv_bytes_read(&[Some(64), Some(64)], 10, 100), 2 * 10 * 64);
        assert_eq!(kv_bytes_read(&[Some(64), Some(64)], 10, 50), 2 * 10 * 50);
        assert_eq!(
            kv_bytes_read(&[None, Some(64)], 10, 100),
            10 * 100 + 10 * 64
        );
        assert_eq!(kv_bytes_read(&[], 10, 100), 0);
    }

    #[test]
    fn a_gpu_is_measured_against_its_device_copy() {
        let m = MemoryModel::device(1000, &[], 4, 4000.0);
        assert_eq!(m.bytes_per_token(&vec![]), 1000);
        assert_eq!(m.probe_name(), "device copy");
        assert!(m.describe().contains("device copy"), "{}", m.describe());
        let j = m.to_json();
        assert_eq!(j["device_copy_gbs"].as_f64(), Some(4000.0));
        assert!(j.get("stream_read_gbs").is_none(), "{j}");
    }
}

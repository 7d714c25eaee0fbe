//! `dlp-run bench` end to end on the SmolLM2 fixture: the table, the JSON and its ratios, the
//! memory section, the kernel set it names.

use std::path::PathBuf;

use dlp_tests::fixtures;

use super::{fails_with, run, succeeds};

/// A temporary folder, the JSON report's path in it, and the SmolLM2 GGUF (None without the
/// fixtures).
fn setup() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let d = fixtures("smollm2")?;
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    Some((tmp, json, d.join("SmolLM2-135M-Instruct.Q4_1.gguf")))
}

/// `dlp-run bench --cpu-int8` names its kernel set in the JSON, and `--cpu-int8` with another
/// backend than the CPU is refused, naming the flag.
#[test]
fn bench_cpu_int8_names_its_kernels() {
    let Some((tmp, json, gguf)) = setup() else {
        return;
    };
    let args = [
        "bench",
        "-m",
        gguf.to_str().unwrap(),
        "--quick",
        "--only",
        "base",
    ];
    let out = succeeds(
        &[
            &args[..],
            &[
                "--backend",
                "cpu",
                "--cpu-int8",
                "--synthetic-adapters",
                "1",
            ],
            &[
                "--new-tokens",
                "2",
                "--rounds",
                "1",
                "--json",
                json.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let kernels = v["kernels"].as_str().unwrap_or_default();
    assert!(kernels.contains("int8 activations"), "kernels: {kernels}");
    // A figure the run lacks is `-` with its reason, never NaN.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("NaN"), "{table}");
    assert!(table.contains("ratios: none"), "{table}");
    // A plot with nothing to plot is refused before the run, not after it.
    let png = tmp.path().join("p.png");
    fails_with(
        &[
            &args[..],
            &["--backend", "cpu", "--synthetic-adapters", "1"],
            &["--plot", png.to_str().unwrap()],
        ]
        .concat(),
        &[
            "--plot draws",
            "--only base runs no `single` or `fused*` scenario",
        ],
    );
    // The int8 path is the CPU's alone: another backend is refused, naming the flag.
    let out = run(&[&args[..], &["--backend", "wgpu", "--cpu-int8"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpu-int8"), "{err}");
}

/// `dlp-run bench --quick` end to end on SmolLM2 (few tokens: a smoke test of the contract,
/// not a measurement): the table, and JSON with every scenario and the headline ratios.
#[test]
fn bench_quick_writes_ratios() {
    let Some((tmp, json, gguf)) = setup() else {
        return;
    };
    let plot = tmp.path().join("bench.png");
    let out = succeeds(&[
        "bench",
        "--backend",
        "cpu",
        "-m",
        gguf.to_str().unwrap(),
        "--quick",
        "--synthetic-adapters",
        "4",
        "--rank",
        "4",
        "--new-tokens",
        "3",
        "--rounds",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    for row in ["base", "single", "fused3", "token_level", "batch32"] {
        assert!(table.contains(row), "no {row} row in {table}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "fused3_over_single",
        "fused3_over_base",
        "token_level_over_sentence_level",
        "batch32_over_batch1_throughput",
    ] {
        let r = v["ratios"][key].as_f64().unwrap_or(f64::NAN);
        assert!(r.is_finite() && r > 0.0, "ratio {key} = {r} in {v}");
    }
    assert_eq!(v["scenarios"].as_array().unwrap().len(), 5);
    let kernels = v["kernels"].as_str().unwrap_or_default();
    assert!(kernels.contains("f32 activations"), "kernels: {kernels}");
    assert!(table.contains(&format!("kernels: {kernels}")), "{table}");
    // Bytes per token: the weights as stored (the GGUF's blocks, so just under the file's
    // size, which also holds the vocabulary), plus each adapter of the mixture.
    let mem = &v["memory"];
    let gbs = mem["stream_read_gbs"].as_f64().unwrap_or(f64::NAN);
    assert!(gbs.is_finite() && gbs > 0.0, "memory: {mem}");
    let file_mb = std::fs::metadata(&gguf).unwrap().len() as f64 / 1e6;
    let weights = mem["weight_mb_per_token"].as_f64().unwrap();
    assert!(
        (0.95 * file_mb..=file_mb).contains(&weights),
        "weights {weights} MB per token, file {file_mb} MB"
    );
    let adapter = mem["adapter_mb"][0].as_f64().unwrap();
    let per_token = |name: &str| {
        v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["decode_mb_per_token"].as_f64())
    };
    // And the KV cache at the mean decode position: SmolLM2 keeps 2 x 30 layers x 192 f32
    // per position.
    let kv = mem["kv_mb_per_token"].as_f64().unwrap();
    let positions = mem["kv_mean_positions"].as_u64().unwrap();
    let (prompt, new) = (v["prompt_tokens"].as_u64(), v["new_tokens"].as_u64());
    assert_eq!(
        Some(positions),
        prompt.zip(new).map(|(p, n)| p + n / 2),
        "{v}"
    );
    assert!(
        (kv - (2 * 30 * 192 * 4 * positions) as f64 / 1e6).abs() < 1e-9,
        "kv {kv} MB"
    );
    let base = per_token("base").unwrap();
    assert!((base - weights - kv).abs() < 1e-6, "base {base} MB");
    let fused3 = per_token("fused3").unwrap();
    assert!(
        (fused3 - weights - kv - 3.0 * adapter).abs() < 1e-6,
        "fused3 {fused3} MB"
    );
    assert_eq!(per_token("batch32"), None);
    assert!(table.contains("% of streaming read"), "{table}");
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
    fails_with(
        &[
            "bench",
            "--backend",
            "cpu",
            "-m",
            gguf.to_str().unwrap(),
            "--targets",
            "q_proj,nope",
        ],
        &["--targets", "nope"],
    );
}

/// The merged-weights rows alone (`--only`): measured, each running the base scenario on its
/// own model, named as the run names them (merged1_f32 with one adapter); in a `--quick` run,
/// which has none, refused with the reason. (`--only base_f32` had panicked, and a quick run
/// had written an empty report.)
#[test]
fn bench_only_the_merged_rows() {
    let Some((_tmp, json, gguf)) = setup() else {
        return;
    };
    let args = [
        "bench",
        "--backend",
        "cpu",
        "-m",
        gguf.to_str().unwrap(),
        "--synthetic-adapters",
        "1",
        "--rank",
        "2",
        "--new-tokens",
        "2",
        "--rounds",
        "1",
    ];
    let only = ["--only", "merged1_f32", "--json", json.to_str().unwrap()];
    succeeds(&[&args[..], &only].concat());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = v["scenarios"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["name"], "merged1_f32");
    assert_eq!(rows[0]["k"], 1);
    assert!(
        rows[0]["decode_tokens_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    fails_with(
        &[&args[..], &["--quick", "--only", "base_f32"]].concat(),
        &["--only: no scenario `base_f32`", "without --quick"],
    );
    fails_with(
        &[&args[..], &["--only", "merged3_f32"]].concat(),
        &["--only: no scenario `merged3_f32`", "merged1_f32"],
    );
}

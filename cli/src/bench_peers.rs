//! The peers of `dlp-run bench --peers` (llama.cpp, transformers+PEFT), run through
//! `bench/peers/peers.py` on the same prompt ids and token count.
//!
//! llama.cpp, the peer whose ratio sits near 1, runs once after every round of dlp-run's
//! scenarios, so both sides see the same minutes of a shared machine (its decode rate drifts
//! ±10–20% from minute to minute); transformers, 3–4x slower, runs once after the rounds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench_report::median;

/// How to start `peers.py` for this run.
pub struct Peers {
    python: PathBuf,
    script: PathBuf,
    model: PathBuf,
    prompt: String,
    ids: Vec<u32>,
    new_tokens: usize,
    adapters: Vec<String>,
}

impl Peers {
    /// Checks that the script and a GGUF model are there; picks the Python.
    pub fn new(
        args: &crate::bench::BenchArgs,
        model: &Path,
        prompt: &str,
        new_tokens: usize,
        ids: &[u32],
    ) -> Result<Self> {
        let script = PathBuf::from("bench/peers/peers.py");
        if !script.exists() {
            bail!(
                "--peers: {} not found (run dlp-run bench from the repository root)",
                script.display()
            );
        }
        if model.extension().is_none_or(|e| e != "gguf") {
            bail!("--peers needs a .gguf model (llama.cpp and transformers both load it)");
        }
        let python = args.python.clone().unwrap_or_else(|| {
            let venv = Path::new(".venv-peers/bin/python");
            if venv.exists() {
                venv.into()
            } else {
                "python3".into()
            }
        });
        eprintln!(
            "peers through {} {}: llama.cpp after every round, transformers+PEFT at the end",
            python.display(),
            script.display()
        );
        Ok(Self {
            python,
            script,
            model: model.into(),
            prompt: prompt.into(),
            ids: ids.to_vec(),
            new_tokens,
            // The first three adapters: the ones `fused3` mixes (equal weights), so the ratio
            // pairs like with like.
            adapters: args.model.adapters.iter().take(3).cloned().collect(),
        })
    }

    /// One invocation of the script for `only` (`llamacpp` or `transformers`), `repeats`
    /// timed runs after its warm-up; its JSON report.
    pub fn run(&self, only: &str, repeats: usize) -> Result<Value> {
        let out = std::env::temp_dir().join(format!("{}-dlp-peers.json", std::process::id()));
        let ids: Vec<String> = self.ids.iter().map(|i| i.to_string()).collect();
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg(&self.script)
            .arg("--gguf")
            .arg(&self.model)
            .arg("--prompt")
            .arg(&self.prompt)
            .arg("--prompt-ids")
            .arg(ids.join(","))
            .arg("--new-tokens")
            .arg(self.new_tokens.to_string())
            .arg("--threads")
            .arg(rayon::current_num_threads().to_string())
            .arg("--repeats")
            .arg(repeats.max(1).to_string())
            .arg("--only")
            .arg(only)
            .arg("--json")
            .arg(&out);
        let tokenizer_dir = self.model.with_file_name("tokenizer");
        if tokenizer_dir.is_dir() {
            cmd.arg("--tokenizer-dir").arg(&tokenizer_dir);
        }
        for a in &self.adapters {
            cmd.arg("--adapter").arg(a);
        }
        let status = cmd
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("starting {}", self.python.display()))?;
        if !status.success() {
            bail!(
                "{} --only {only} exited with {status}; run bench/peers/setup.sh first",
                self.script.display()
            );
        }
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        let _ = std::fs::remove_file(&out);
        serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
    }
}

/// The transformers report with llama.cpp's per-round reports folded in as one peer: every
/// round's run listed, decode rate and prefill time the medians over them.
pub fn merge(transformers: Value, llama_rounds: &[Value], new_tokens: usize) -> Value {
    let mut report = transformers;
    let rounds: Vec<&Value> = llama_rounds
        .iter()
        .map(|r| &r["peers"]["llama_cpp"])
        .collect();
    let llama = match rounds.iter().find(|r| r.get("error").is_some()) {
        Some(failed) => (*failed).clone(),
        None if rounds.is_empty() => json!({"error": "no rounds ran"}),
        None => {
            let runs: Vec<Value> = rounds
                .iter()
                .flat_map(|r| r["runs"].as_array().cloned().unwrap_or_default())
                .collect();
            let times =
                |key: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[key].as_f64()).collect() };
            let (prefill, total) = (times("prefill_secs"), times("total_secs"));
            let decode: Vec<f64> = prefill
                .iter()
                .zip(&total)
                .map(|(p, t)| (new_tokens - 1) as f64 / (t - p))
                .collect();
            let mut v = rounds[0].clone();
            v["runs"] = Value::Array(runs);
            v["decode_tokens_per_s"] = json!(median(decode));
            v["prefill_secs"] = json!(median(prefill));
            v["interleaved"] = json!("one timed run after each round of dlp-run's scenarios");
            v
        }
    };
    report["peers"]["llama_cpp"] = llama;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_rounds_fold_into_one_peer() {
        let round = |p: f64, t: f64| {
            json!({"peers": {"llama_cpp": {"mode": "m", "decode_tokens_per_s": 0.0,
                "runs": [{"prefill_secs": p, "total_secs": t}]}}})
        };
        let tf = json!({"prompt_tokens": 5, "peers": {"transformers_base": {"decode_tokens_per_s": 9.0}}});
        // 9 new tokens: decode rate 8 / (t - p): 4, 8, 2 tokens/s.
        let v = merge(tf, &[round(1.0, 3.0), round(0.5, 1.5), round(1.0, 5.0)], 9);
        let l = &v["peers"]["llama_cpp"];
        assert_eq!(l["decode_tokens_per_s"].as_f64(), Some(4.0));
        assert_eq!(l["prefill_secs"].as_f64(), Some(1.0));
        assert_eq!(l["runs"].as_array().map(|r| r.len()), Some(3));
        assert_eq!(
            v["peers"]["transformers_base"]["decode_tokens_per_s"].as_f64(),
            Some(9.0)
        );

        let failed = json!({"peers": {"llama_cpp": {"error": "ImportError: x"}}});
        let v = merge(json!({"peers": {}}), &[round(1.0, 2.0), failed], 9);
        assert!(v["peers"]["llama_cpp"]["error"].is_string());
    }
}

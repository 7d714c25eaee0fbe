//! The adapter mixture as the command line gives it: `--mix NAME=W,...` (and a `--prompts`
//! line's `mix`), checked against the loaded adapters, with "did you mean" for a misspelt name.

use anyhow::{bail, Context, Result};
use dlp_engine::lora::{resolve_mixture, Mixture, MAX_MIX_WEIGHT};
use dlp_engine::model::Model;
use dlp_engine::Backend;

/// Parses `--mix NAME=W[,NAME=W]...`.
pub fn parse_mix(s: &str) -> Result<Vec<(String, f32)>> {
    parse_mix_as(s, "--mix")
}

/// Parses `NAME=W[,NAME=W]...`; errors name it as `what` (`--mix`, a prompts line's `mix`).
pub fn parse_mix_as(s: &str, what: &str) -> Result<Vec<(String, f32)>> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| {
            if part.trim().is_empty() {
                bail!("{what} `{s}`: an empty entry (a stray comma?); expected NAME=WEIGHT[,NAME=WEIGHT]...");
            }
            let (n, w) = part
                .split_once('=')
                .with_context(|| format!("{what} `{part}`: expected NAME=WEIGHT"))?;
            let w: f64 = w
                .trim()
                .parse()
                .with_context(|| format!("{what} `{part}`: weight `{w}` is not a number"))?;
            let w = mix_weight(w, || format!("{what} `{part}`"))?;
            if n.trim().is_empty() {
                bail!("{what} `{part}`: no adapter name before `=`; expected NAME=WEIGHT");
            }
            Ok((n.trim().to_string(), w))
        })
        .collect()
}

/// A mixture weight read as f64, as f32 (the engine's); `where_` names it in the error for
/// one past [`MAX_MIX_WEIGHT`] in magnitude, which as f32 could read `inf` (3.5e38). The
/// engine checks the rest (>= 0, finite) when the mixture is resolved.
pub fn mix_weight(w: f64, where_: impl FnOnce() -> String) -> Result<f32> {
    if w.is_finite() && w.abs() > f64::from(MAX_MIX_WEIGHT) {
        bail!(
            "{}: the weight is past the largest a mixture may give, {MAX_MIX_WEIGHT} (past it a \
             mixture only drowns the base model)",
            where_()
        );
    }
    // `+ 0.0` turns -0 into 0 (echoed as 0).
    Ok(w as f32 + 0.0)
}

/// Resolves a named mixture against the loaded adapters.
pub fn mixture<B: Backend>(model: &Model<B>, named: &[(String, f32)]) -> Result<Mixture> {
    resolve_mixture(model.adapter_names(), named).map_err(|e| {
        let (names, said) = (model.adapter_names(), e.to_string());
        // The hint only where the error is the unknown name (not another entry's weight).
        match (named.iter()).find(|(n, _)| !names.contains(n) && said.contains(&format!("`{n}`"))) {
            Some((n, _)) => match closest_name(n, names) {
                Some(near) => anyhow::anyhow!(
                    "{e}; did you mean `{near}`? (or load it with --adapter {n}=PATH)"
                ),
                None => anyhow::anyhow!(
                    "{e}; load it with --adapter {n}=PATH (a PEFT adapter directory or a llama.cpp LoRA GGUF)"
                ),
            },
            None => e.into(),
        }
    })
}

/// The loaded name most like a misspelt `name` (Jaro-Winkler similarity, the measure clap
/// uses for its own suggestions, above 0.8), for "did you mean".
pub fn closest_name<'a, S: AsRef<str>>(name: &str, names: &'a [S]) -> Option<&'a str> {
    let name = name.to_lowercase();
    names
        .iter()
        .map(|n| {
            (
                strsim::jaro_winkler(&name, &n.as_ref().to_lowercase()),
                n.as_ref(),
            )
        })
        .filter(|(sim, _)| *sim > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_misspelt_adapter_name_finds_the_loaded_one() {
        let names: Vec<String> = ["boolq", "piqa", "gsm8k", "arc_easy", "arc_challenge"]
            .map(String::from)
            .to_vec();
        let near = |n| super::closest_name(n, &names);
        assert_eq!(near("boolk"), Some("boolq"));
        assert_eq!(near("pica"), Some("piqa"));
        assert_eq!(near("arc-easy"), Some("arc_easy"));
        assert_eq!(near("gsm8"), Some("gsm8k"));
        assert_eq!(near("BoolQ"), Some("boolq"));
        assert_eq!(near("math"), None);
        assert_eq!(near("nope"), None);
    }
}

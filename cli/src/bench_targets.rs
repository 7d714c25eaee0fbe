//! `bench --targets`: the modules the synthetic adapters adapt, by PEFT name, as the model
//! names them (a stacked module names the modules it holds) or by this engine's names.

use anyhow::{bail, Result};
use dlp_engine::config::ModelConfig;
use dlp_engine::loader::fused::stored_modules;
use dlp_engine::LoraModule;

/// `--targets`' default: the seven modules of a Llama layer (gate_proj is left out on a model
/// whose feed-forward has none).
pub const DEFAULT: &str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";

/// The modules `spec` (comma-separated PEFT names) names in a model of `cfg`, sorted, each once:
/// a name the model's files use (Phi-3's `qkv_proj`, StarCoder2's `c_fc`, Phi's `dense`: the
/// modules they hold or are), or this engine's name of a module the model has (`up_proj` is
/// StarCoder2's `c_fc`).
///
/// # Errors
/// A name the model has no module under (the message lists those it has), unless it is the
/// default list's `gate_proj` on a model without one; an empty list.
pub fn parse(spec: &str, cfg: &ModelConfig) -> Result<Vec<LoraModule>> {
    let stored = stored_modules(cfg.arch);
    let names = || {
        let own = stored.iter().map(|m| m.peft_name());
        let engine = (LoraModule::ALL.into_iter())
            .filter(|&m| cfg.has_module(m))
            .map(LoraModule::peft_name);
        let mut all: Vec<&str> = own.chain(engine).collect();
        all.sort();
        all.dedup();
        all.join(", ")
    };
    let mut targets = Vec::new();
    for t in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match (
            LoraModule::from_peft_name(t),
            stored.iter().find(|m| m.peft_name() == t),
        ) {
            (Some(m), _) if cfg.has_module(m) => targets.push(m),
            (Some(_), _) if spec == DEFAULT => {}
            (None, Some(s)) => targets.extend(s.parts),
            _ => bail!(
                "--targets: this {:?} model has no module `{t}` (its modules, by PEFT name: {})",
                cfg.arch,
                names()
            ),
        }
    }
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        bail!(
            "--targets: no module named (its modules, by PEFT name: {})",
            names()
        );
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(model_type: &str) -> ModelConfig {
        let v = serde_json::json!({"model_type": model_type, "hidden_size": 64,
            "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": 2, "vocab_size": 256});
        ModelConfig::from_hf_json(&v, std::path::Path::new("config.json")).unwrap()
    }

    /// Each family's own names and this engine's; the default list without a gate where there
    /// is none; a name the model lacks refused with the ones it has.
    #[test]
    fn targets_are_the_models_modules() {
        use LoraModule::*;
        let phi = cfg("phi");
        assert_eq!(parse("dense,fc1", &phi).unwrap(), [O, Up]);
        assert_eq!(parse("o_proj,up_proj", &phi).unwrap(), [O, Up]);
        assert_eq!(parse(DEFAULT, &phi).unwrap(), [Q, K, V, O, Up, Down]);
        let e = parse("c_fc", &phi).unwrap_err().to_string();
        assert!(e.contains("this Phi model has no module `c_fc`"), "{e}");
        assert!(
            e.contains("dense, down_proj, fc1, fc2, k_proj, o_proj"),
            "{e}"
        );
        let e = parse("gate_proj", &cfg("starcoder2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no module `gate_proj`"), "{e}");
        assert_eq!(
            parse("c_fc,c_proj", &cfg("starcoder2")).unwrap(),
            [Up, Down]
        );
        assert_eq!(parse("qkv_proj", &cfg("phi3")).unwrap(), [Q, K, V]);
        assert_eq!(parse(DEFAULT, &cfg("llama")).unwrap().len(), 7);
        assert!(parse(" , ", &cfg("llama")).is_err());
    }
}

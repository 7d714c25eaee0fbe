//! Linear modules as a model's files store them. Most architectures store each of this
//! engine's seven modules alone (StarCoder2 and Phi under names of their own, read as one
//! "stack" of a single part); Phi-3 stacks q/k/v in one matrix (`self_attn.qkv_proj`) and
//! gate/up in another (`mlp.gate_up_proj`), and its PEFT adapters adapt those. Loading splits
//! them into row blocks, so the forward pass (and each backend) sees the same seven modules
//! for every architecture: `y = W x` for a stacked `W` is the stacked products of its blocks,
//! and a LoRA `B A x` on it is, per block, the same `A` with that block's rows of `B`.

use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::tensor::WeightMap;
use crate::LoraModule;

/// A linear module as the files name it: one of the engine's modules, or several stacked by
/// rows in `parts`' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredModule {
    /// The path inside a decoder layer (`self_attn.qkv_proj`).
    pub hf_path: &'static str,
    /// The engine's modules it holds, first rows first.
    pub parts: &'static [LoraModule],
}

impl StoredModule {
    /// PEFT's short name (`qkv_proj`).
    pub fn peft_name(&self) -> &'static str {
        self.hf_path.rsplit('.').next().unwrap_or(self.hf_path)
    }

    /// Input width and the rows of each part, for `cfg`.
    pub fn dims(&self, cfg: &ModelConfig) -> (usize, Vec<usize>) {
        let n_in = cfg.module_dims(self.parts[0]).0;
        (
            n_in,
            self.parts.iter().map(|&m| cfg.module_dims(m).1).collect(),
        )
    }
}

macro_rules! single {
    ($($m:ident),*) => {
        [$(StoredModule { hf_path: LoraModule::$m.hf_path(), parts: &[LoraModule::$m] }),*]
    };
}

/// Llama, Mistral, Qwen2, Qwen3: every module alone.
const SINGLE: [StoredModule; 7] = single!(Q, K, V, O, Gate, Up, Down);

/// Phi-3 (transformers' Phi3Attention and Phi3MLP; llama.cpp's `attn_qkv` and the `ffn_up` of
/// twice the feed-forward width).
const PHI3: [StoredModule; 4] = [
    StoredModule {
        hf_path: "self_attn.qkv_proj",
        parts: &[LoraModule::Q, LoraModule::K, LoraModule::V],
    },
    SINGLE[3],
    StoredModule {
        hf_path: "mlp.gate_up_proj",
        parts: &[LoraModule::Gate, LoraModule::Up],
    },
    SINGLE[6],
];

/// GLM and GLM-4 (transformers' GlmMLP and Glm4MLP; llama.cpp's `glm4` `ffn_up` of twice the
/// feed-forward width): gate and up stacked, the others alone.
const GLM: [StoredModule; 6] = [
    SINGLE[0], SINGLE[1], SINGLE[2], SINGLE[3], PHI3[2], SINGLE[6],
];

/// StarCoder2 (transformers' Starcoder2MLP): an ungated feed-forward, `mlp.c_fc` (read as up)
/// and `mlp.c_proj` (down).
const STARCODER2: [StoredModule; 6] = [
    SINGLE[0],
    SINGLE[1],
    SINGLE[2],
    SINGLE[3],
    StoredModule {
        hf_path: "mlp.c_fc",
        parts: &[LoraModule::Up],
    },
    StoredModule {
        hf_path: "mlp.c_proj",
        parts: &[LoraModule::Down],
    },
];

/// Phi (transformers' PhiAttention and PhiMLP): o_proj is `self_attn.dense`, the ungated
/// feed-forward `mlp.fc1` (up) and `mlp.fc2` (down).
const PHI: [StoredModule; 6] = [
    SINGLE[0],
    SINGLE[1],
    SINGLE[2],
    StoredModule {
        hf_path: "self_attn.dense",
        parts: &[LoraModule::O],
    },
    StoredModule {
        hf_path: "mlp.fc1",
        parts: &[LoraModule::Up],
    },
    StoredModule {
        hf_path: "mlp.fc2",
        parts: &[LoraModule::Down],
    },
];

/// GPT-NeoX (transformers' GPTNeoXAttention and GPTNeoXMLP): q/k/v stacked in
/// `attention.query_key_value` (reordered from per-head rows at load,
/// [`super::prefixed::reorder_qkv`]), o_proj as `attention.dense`, an ungated feed-forward
/// `mlp.dense_h_to_4h` (up) and `mlp.dense_4h_to_h` (down).
const GPT_NEOX: [StoredModule; 4] = [
    StoredModule {
        hf_path: "attention.query_key_value",
        parts: &[LoraModule::Q, LoraModule::K, LoraModule::V],
    },
    StoredModule {
        hf_path: "attention.dense",
        parts: &[LoraModule::O],
    },
    StoredModule {
        hf_path: "mlp.dense_h_to_4h",
        parts: &[LoraModule::Up],
    },
    StoredModule {
        hf_path: "mlp.dense_4h_to_h",
        parts: &[LoraModule::Down],
    },
];

/// Falcon (transformers' FalconAttention and FalconMLP): GPT-NeoX's modules under
/// `self_attention` (q/k/v rows per key/value group, reordered at load).
const FALCON: [StoredModule; 4] = [
    StoredModule {
        hf_path: "self_attention.query_key_value",
        parts: &[LoraModule::Q, LoraModule::K, LoraModule::V],
    },
    StoredModule {
        hf_path: "self_attention.dense",
        parts: &[LoraModule::O],
    },
    GPT_NEOX[2],
    GPT_NEOX[3],
];

/// GPT-J (transformers' GPTJAttention and GPTJMLP): q/k/v/o as `attn.q_proj`, `attn.k_proj`,
/// `attn.v_proj`, `attn.out_proj`, an ungated feed-forward `mlp.fc_in` (up) and `mlp.fc_out`
/// (down).
const GPT_J: [StoredModule; 6] = [
    StoredModule {
        hf_path: "attn.q_proj",
        parts: &[LoraModule::Q],
    },
    StoredModule {
        hf_path: "attn.k_proj",
        parts: &[LoraModule::K],
    },
    StoredModule {
        hf_path: "attn.v_proj",
        parts: &[LoraModule::V],
    },
    StoredModule {
        hf_path: "attn.out_proj",
        parts: &[LoraModule::O],
    },
    StoredModule {
        hf_path: "mlp.fc_in",
        parts: &[LoraModule::Up],
    },
    StoredModule {
        hf_path: "mlp.fc_out",
        parts: &[LoraModule::Down],
    },
];

/// Arcee, Nemotron, Apertus and Jais 2 (transformers' ArceeMLP, NemotronMLP, ApertusMLP and
/// Jais2MLP): Llama's
/// modules but the gate, an ungated feed-forward.
const LLAMA_UNGATED: [StoredModule; 6] = [
    SINGLE[0], SINGLE[1], SINGLE[2], SINGLE[3], SINGLE[5], SINGLE[6],
];

/// The linear modules of `arch`'s decoder layers as its files store them, in forward order.
pub fn stored_modules(arch: Arch) -> &'static [StoredModule] {
    match arch {
        Arch::Phi3 => &PHI3,
        Arch::Glm | Arch::Glm4 => &GLM,
        Arch::Starcoder2 => &STARCODER2,
        Arch::Phi => &PHI,
        Arch::GptNeoX => &GPT_NEOX,
        Arch::Falcon => &FALCON,
        Arch::GptJ => &GPT_J,
        Arch::Arcee | Arch::Nemotron | Arch::Apertus | Arch::Jais2 => &LLAMA_UNGATED,
        Arch::Llama
        | Arch::Mistral
        | Arch::Qwen2
        | Arch::Qwen3
        | Arch::Gemma
        | Arch::Gemma2
        | Arch::VaultGemma
        | Arch::Olmo
        | Arch::Gemma3
        | Arch::Granite
        | Arch::SmolLM3
        | Arch::Olmo2
        | Arch::Olmo3
        | Arch::Exaone4
        | Arch::SeedOss
        | Arch::Ernie45
        | Arch::Ministral
        | Arch::Ministral3
        | Arch::Exaone
        | Arch::InternLM3
        | Arch::Helium
        | Arch::Cohere
        | Arch::Cohere2
        | Arch::StableLm
        | Arch::Hunyuan => &SINGLE,
    }
}

/// Phi's final norm as stored (`model.final_layernorm`), read as `model.norm`.
const PHI_FINAL_NORM: &str = "model.final_layernorm.";

/// Renames a Phi checkpoint's `model.final_layernorm.{weight,bias}` to `model.norm.*`, the name
/// the model (and a `phi2` GGUF's `output_norm`) reads; nothing for the other families.
///
/// # Errors
/// A tensor present under both names (which one to read is not for the loader to guess).
pub fn rename_final_norm(w: &mut WeightMap, arch: Arch) -> Result<()> {
    if arch != Arch::Phi {
        return Ok(());
    }
    for suffix in ["weight", "bias"] {
        let (from, to) = (
            format!("{PHI_FINAL_NORM}{suffix}"),
            format!("model.norm.{suffix}"),
        );
        if w.contains(&from) && w.contains(&to) {
            return Err(Error::format(
                &w.origin,
                format!("tensors `{from}` and `{to}` are one tensor (Phi's final norm) under two names; keep one"),
            ));
        }
        w.rename(&from, to);
    }
    Ok(())
}

/// How messages name a renamed module's tensors (`model.layers.0.mlp.c_fc.bias` for up_proj's)
/// and Phi's final norm in a StarCoder2 or Phi checkpoint, which [`split_stacked`] and
/// [`rename_final_norm`] read under this engine's names; `None` for the other families.
pub fn file_names(arch: Arch) -> Option<crate::tensor::FileNames> {
    let of: fn(&str) -> Option<String> = match arch {
        Arch::Starcoder2 => |n| stored_name(n, &STARCODER2),
        Arch::Phi => |n| match n.strip_prefix("model.norm.") {
            Some(suffix) => Some(format!("{PHI_FINAL_NORM}{suffix}")),
            None => stored_name(n, &PHI),
        },
        _ => return None,
    };
    Some(crate::tensor::FileNames {
        of,
        gguf_order: false,
    })
}

/// [`stored_name`] over `arch`'s modules.
pub fn stored_name_in(arch: Arch, name: &str) -> Option<String> {
    stored_name(name, stored_modules(arch))
}

/// `name` (`model.layers.N.<engine path>.<suffix>`) under the stored name of the single-part
/// module of `modules` that holds it, where that differs.
fn stored_name(name: &str, modules: &[StoredModule]) -> Option<String> {
    modules
        .iter()
        .filter(|m| m.parts.len() == 1 && m.hf_path != m.parts[0].hf_path())
        .find_map(|m| {
            let from = format!(".{}.", m.parts[0].hf_path());
            name.contains(&from)
                .then(|| name.replacen(&from, &format!(".{}.", m.hf_path), 1))
        })
}

/// The modules a model file of `arch` may hold stacked, each with whether the stack is the
/// form the family's checkpoints take (a layer with neither it nor its parts is then refused
/// naming it): those of [`stored_modules`], and GLM's and Phi's q/k/v, which llama.cpp's
/// `chatglm` files (from THUDM's checkpoints) and `phi2` files (converted from Phi-2's first
/// checkpoints, `Wqkv`) may stack in `attn_qkv` (its `glm4` loader reads them so too) where
/// transformers' models and their adapters keep them apart.
fn file_stacks(arch: Arch) -> impl Iterator<Item = (&'static StoredModule, bool)> {
    let glm_qkv = (arch.is_glm() || arch == Arch::Phi).then_some((&PHI3[0], false));
    (stored_modules(arch).iter())
        .filter(|m| m.parts.len() > 1 || m.hf_path != m.parts[0].hf_path())
        .map(|m| (m, true))
        .chain(glm_qkv)
}

/// Whether a model file of `arch` may hold q/k/v stacked in one tensor that [`split_stacked`]
/// splits under HF's names (Phi-3's `qkv_proj`, Falcon's `query_key_value`, GLM's and Phi's
/// optional `attn_qkv`).
pub fn stacks_qkv(arch: Arch) -> bool {
    file_stacks(arch).any(|(m, _)| m.parts.len() > 1 && m.parts.contains(&LoraModule::Q))
}

/// Splits every stacked module's weight (and bias, where it has one) of `w` into its parts'
/// (`qkv_proj.weight` into `q_proj.weight`, `k_proj.weight`, `v_proj.weight`), kept as stored
/// (f32 or packed blocks). A layer may hold the parts instead (llama.cpp's
/// `create_tensor_qkv` reads separate q/k/v where a file has no `attn_qkv`); one with neither
/// is refused, naming the stacked tensor.
///
/// Errors: a stacked tensor whose shape is not `[sum of the parts' rows, in]` (a bias
/// `[sum of the parts' rows]`), or a missing one.
pub fn split_stacked(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    for layer in 0..cfg.num_layers {
        for (m, usual) in file_stacks(cfg.arch) {
            let stem = format!("model.layers.{layer}");
            let (n_in, rows) = m.dims(cfg);
            let parts = |suffix: &str| -> Vec<(String, usize)> {
                (m.parts.iter().zip(&rows))
                    .map(|(p, &r)| (format!("{stem}.{}.{suffix}", p.hf_path()), r))
                    .collect()
            };
            w.split_rows(&format!("{stem}.{}.bias", m.hf_path), None, &parts("bias"))?;
            let parts = parts("weight");
            let name = format!("{stem}.{}.weight", m.hf_path);
            // Where the stack is optional, the model names the missing part.
            if !w.split_rows(&name, Some(n_in), &parts)? && !w.contains(&parts[0].0) && usual {
                let (what, shape) = w.described(&name, &[rows.iter().sum(), n_in]);
                let parts: Vec<&str> = m.parts.iter().map(|p| p.peft_name()).collect();
                let stacked = match parts.len() {
                    1 => String::new(),
                    _ => format!(", the rows of {} stacked", parts.join(", ")),
                };
                return Err(Error::format(
                    &w.origin,
                    format!("missing tensor {what}: expected shape {shape}{stacked}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{HostTensor, Packed, PackedKind};

    fn phi3(layers: usize) -> ModelConfig {
        let v = serde_json::json!({"model_type": "phi3", "hidden_size": 32,
            "intermediate_size": 24, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": layers, "vocab_size": 16});
        ModelConfig::from_hf_json(&v, std::path::Path::new("config.json")).unwrap()
    }

    /// `(shape, f32 values, packed bytes)` of layer-0 module `m`.
    fn part(w: &mut WeightMap, m: &str) -> (Vec<usize>, Vec<f32>, Option<Vec<u8>>) {
        let t = w.get_mut(&format!("model.layers.0.{m}.weight")).unwrap();
        (
            t.shape.clone(),
            t.data.clone(),
            t.packed.clone().map(|p| p.bytes),
        )
    }

    /// Rows in order, f32 and packed (Q8_0 rows of 34-byte blocks, moved whole), a stacked bias
    /// likewise; a part the file also holds gives way to the stack's rows; a layer holding the
    /// parts is kept.
    #[test]
    fn stacked_rows_split_in_order() {
        let file = std::path::Path::new("model.safetensors");
        let mut w = WeightMap::new("m");
        let put = |w: &mut WeightMap, name: &str, t: HostTensor| {
            w.insert(format!("model.layers.{name}.weight"), t, file)
                .unwrap()
        };
        let qkv: Vec<f32> = (0..64 * 32).map(|i| i as f32).collect();
        put(
            &mut w,
            "0.self_attn.qkv_proj",
            HostTensor::new(vec![64, 32], qkv.clone()),
        );
        let stale = HostTensor::new(vec![32, 32], vec![-1.0; 32 * 32]);
        put(&mut w, "0.self_attn.q_proj", stale);
        let mut bytes: Vec<u8> = (0..48 * 34).map(|i| (i % 251) as u8).collect();
        // Each block's f16 scale 0.5 (random bytes could be a NaN).
        bytes
            .chunks_exact_mut(34)
            .for_each(|b| b[..2].copy_from_slice(&[0x00, 0x38]));
        let kind = PackedKind::Q8_0;
        let gu = HostTensor::packed(
            48,
            32,
            Packed {
                kind,
                bytes: bytes.clone(),
            },
        );
        put(&mut w, "0.mlp.gate_up_proj", gu);
        for (m, rows) in [("q", 32), ("k", 16), ("v", 16)] {
            let t = HostTensor::new(vec![rows, 32], vec![0.5; rows * 32]);
            put(&mut w, &format!("1.self_attn.{m}_proj"), t);
        }
        for m in ["gate", "up"] {
            put(
                &mut w,
                &format!("1.mlp.{m}_proj"),
                HostTensor::new(vec![24, 32], vec![0.5; 24 * 32]),
            );
        }
        let bias: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let file = std::path::Path::new("model.safetensors");
        let qkv_bias = HostTensor::new(vec![64], bias.clone());
        (w.insert(
            "model.layers.0.self_attn.qkv_proj.bias".into(),
            qkv_bias,
            file,
        ))
        .unwrap();
        split_stacked(&mut w, &phi3(2)).unwrap();
        let k_bias = w.get_mut("model.layers.0.self_attn.k_proj.bias").unwrap();
        assert_eq!(
            (&k_bias.shape[..], &k_bias.data[..]),
            (&[16][..], &bias[32..48])
        );
        let q = part(&mut w, "self_attn.q_proj");
        assert_eq!(q, (vec![32, 32], qkv[..32 * 32].to_vec(), None));
        assert_eq!(part(&mut w, "self_attn.k_proj").1, qkv[32 * 32..48 * 32]);
        assert_eq!(part(&mut w, "self_attn.v_proj").1, qkv[48 * 32..]);
        let gate = part(&mut w, "mlp.gate_proj");
        assert_eq!(
            (gate.0, gate.2.unwrap()),
            (vec![24, 32], bytes[..24 * 34].to_vec())
        );
        assert_eq!(part(&mut w, "mlp.up_proj").2.unwrap(), bytes[24 * 34..]);
        assert!(!w.contains("model.layers.0.self_attn.qkv_proj.weight"));
        assert!(w.contains("model.layers.1.mlp.up_proj.weight"));

        // A stack of the wrong height, and a layer with neither form.
        let mut w = WeightMap::new("m");
        put(
            &mut w,
            "0.self_attn.qkv_proj",
            HostTensor::new(vec![63, 32], vec![0.0; 63 * 32]),
        );
        let e = split_stacked(&mut w, &phi3(1)).unwrap_err().to_string();
        let want =
            "`model.layers.0.self_attn.qkv_proj.weight` has shape [63, 32], expected [64, 32]";
        assert!(e.contains(want), "{e}");
        // GLM's q/k/v stack is optional (transformers' checkpoints keep them apart): a layer
        // with neither form is left for the model to name q_proj; its gate/up stack is not.
        let v = serde_json::json!({"model_type": "glm", "hidden_size": 32,
            "intermediate_size": 24, "num_attention_heads": 4, "num_hidden_layers": 1,
            "vocab_size": 16, "head_dim": 8});
        let glm = ModelConfig::from_hf_json(&v, std::path::Path::new("config.json")).unwrap();
        let mut w = WeightMap::new("m");
        let gu = HostTensor::new(vec![48, 32], vec![0.5; 48 * 32]);
        put(&mut w, "0.mlp.gate_up_proj", gu);
        split_stacked(&mut w, &glm).unwrap();
        assert!(w.contains("model.layers.0.mlp.up_proj.weight"));
        let e = split_stacked(&mut WeightMap::new("m"), &glm).unwrap_err();
        assert!(e.to_string().contains("mlp.gate_up_proj.weight"), "{e}");
        let e = split_stacked(&mut WeightMap::new("m"), &phi3(1))
            .unwrap_err()
            .to_string();
        let want = "missing tensor `model.layers.0.self_attn.qkv_proj.weight`: expected shape [64, 32], the rows of q_proj, k_proj, v_proj stacked";
        assert!(e.contains(want), "{e}");
    }
}

//! Text-and-image checkpoints (`Gemma3ForConditionalGeneration`,
//! `Mistral3ForConditionalGeneration`, `Exaone4_5_ForConditionalGeneration`,
//! `Apertus1p5ForConditionalGeneration`): their text decoder
//! under the text model's names, and their vision tower and projector, which text never
//! reaches, left out by the loaders.

use crate::tensor::WeightMap;

/// Where the decoder of a text-and-image checkpoint keeps its tensors, as the Hub's files name
/// them (transformers 4's and 5's saved forms) and as transformers 5's live modules do, with
/// the model's names for them.
const MULTIMODAL: [(&str, &str); 3] = [
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model."),
];

/// Whether tensor `name` (of a checkpoint, or of a PEFT adapter: `base_model.model.` in
/// front) belongs to a vision tower or its projector, which text alone never reaches: the
/// loaders leave them out as they read (a 4B's tower is 0.4 B parameters).
pub fn vision_tensor(name: &str) -> bool {
    let name = name.strip_prefix("base_model.model.").unwrap_or(name);
    let name = name.strip_prefix("model.").unwrap_or(name);
    // EXAONE 4.5's tower and merger are `visual.*` (Qwen2-VL's layout); Apertus 1.5's image
    // and audio tokenizers (a VQ-VAE, WavTokenizer) turn media into tokens before the decoder.
    [
        "vision_tower.",
        "multi_modal_projector.",
        "visual.",
        "vision_tokenizer.",
        "audio_tokenizer.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The text decoder of a text-and-image checkpoint under the model's names (nothing for a
/// text-only checkpoint, whose names never start so).
pub fn text_model(w: &mut WeightMap) {
    let names: Vec<String> = w.names().map(String::from).collect();
    for name in names {
        if let Some((from, to)) = MULTIMODAL.iter().find(|(p, _)| name.starts_with(p)) {
            w.rename(&name, format!("{to}{}", &name[from.len()..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::HostTensor;

    /// The vision tower and projector under every prefix a checkpoint or an adapter gives them
    /// (transformers 4's and 5's, PEFT's); the decoder's tensors renamed to the model's.
    #[test]
    fn multimodal_names() {
        for n in [
            "vision_tower.encoder.layers.0.mlp.fc1.weight",
            "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
            "multi_modal_projector.mm_input_projection_weight",
            "base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.multi_modal_projector.linear.lora_B.weight",
            "model.visual.blocks.0.attn.qkv.weight",
            "model.visual.merger.mlp.0.weight",
        ] {
            assert!(vision_tensor(n), "{n}");
        }
        for n in [
            "model.layers.0.self_attn.q_proj.weight",
            "language_model.model.layers.0.mlp.up_proj.weight",
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
        ] {
            assert!(!vision_tensor(n), "{n}");
        }
        let mut w = WeightMap::new("m");
        for n in [
            "language_model.model.norm.weight",
            "model.language_model.layers.0.input_layernorm.weight",
            "language_model.lm_head.weight",
            "model.layers.1.input_layernorm.weight",
        ] {
            let t = HostTensor::new(vec![1], vec![1.0]);
            w.insert(n.into(), t, std::path::Path::new("m")).unwrap();
        }
        text_model(&mut w);
        let mut names: Vec<&str> = w.names().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "lm_head.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.1.input_layernorm.weight",
                "model.norm.weight"
            ]
        );
    }
}

//! The text model of a text-and-image checkpoint: Gemma 3's (`gemma3`,
//! `Gemma3ForConditionalGeneration`), Mistral 3's (`mistral3`,
//! `Mistral3ForConditionalGeneration`: Ministral 3, Mistral Small 3.1 and 3.2), EXAONE 4.5's
//! (`exaone4_5`, `Exaone4_5_ForConditionalGeneration`: an EXAONE 4 text model) and Apertus
//! 1.5's (`apertus1p5`, `Apertus1p5ForConditionalGeneration`: an Apertus text model, images
//! and audio as tokens of its vocabulary). Their weights are renamed at load
//! ([`crate::loader::multimodal`]); the vision tower (Apertus 1.5's image and audio
//! tokenizers) is left out.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The text models a wrapper of `model_type` holds, the first its class's default where
/// `text_config` names none (Gemma3Config's `gemma3_text`, Mistral3Config's `mistral`,
/// Exaone4_5_Config's `exaone4`, which its first releases named `exaone4_5_text`,
/// Apertus1p5Config's `apertus1p5_text`), and the class's name, for messages.
fn text_models(model_type: &str) -> (&'static [&'static str], &'static str) {
    match model_type {
        "gemma3" => (&["gemma3_text"], "Gemma3ForConditionalGeneration"),
        "exaone4_5" => (
            &["exaone4", "exaone4_5_text"],
            "Exaone4_5_ForConditionalGeneration",
        ),
        "apertus1p5" => (&["apertus1p5_text"], "Apertus1p5ForConditionalGeneration"),
        _ => (
            &["mistral", "ministral3"],
            "Mistral3ForConditionalGeneration",
        ),
    }
}

/// The text model's config of a `model_type` text-and-image checkpoint (`gemma3`, `mistral3`,
/// `exaone4_5` or `apertus1p5`):
/// its `text_config`, with the end and start ids and `tie_word_embeddings` of the outer config
/// where the text one lacks them (the Hub's gemma-3 files keep `eos_token_id` [1, 106] outside).
///
/// # Errors
/// No `text_config` object, or one of a model type the wrapper does not hold here.
pub(super) fn text_config(v: &Value, model_type: &str, path: &Path) -> Result<Value> {
    let (inner, class) = text_models(model_type);
    let mut text = match v.get("text_config") {
        Some(t @ Value::Object(_)) => t.clone(),
        _ => {
            return Err(Error::format(
                path,
                format!("model_type `{model_type}` ({class}) needs a `text_config` object"),
            ))
        }
    };
    match text.get("model_type").and_then(Value::as_str) {
        None => text["model_type"] = inner[0].into(),
        // Exaone4_5_Config reads its first releases' name as EXAONE 4's.
        Some("exaone4_5_text") => text["model_type"] = "exaone4".into(),
        Some(t) if inner.contains(&t) => {}
        Some(other) => {
            return Err(Error::unsupported(format!(
                "{}: `text_config.model_type` `{other}` in a {model_type} config (expected {})",
                path.display(),
                inner.join(" or ")
            )))
        }
    }
    // transformers 5 reads `tie_word_embeddings` of the outer config alone (its class's
    // default where absent: true for Gemma 3's and Mistral 3's, false for EXAONE 4.5's), and
    // does not tie a stored lm_head that differs from the embedding: the text config's flag,
    // where given, says which a checkpoint has (as vLLM reads it). EXAONE 4.5 keeps its
    // prediction layers' count outside, where vLLM reads it. (An outer `quantization_config`
    // is refused before this.)
    for key in [
        "eos_token_id",
        "bos_token_id",
        "tie_word_embeddings",
        "num_nextn_predict_layers",
    ] {
        if let (None, Some(outer)) = (text.get(key), v.get(key)) {
            text[key] = outer.clone();
        }
    }
    Ok(text)
}

//! The chat messages and requests a template renders, as transformers' `apply_chat_template`
//! takes them.

use serde_json::Value as Json;

/// One chat turn as transformers takes it: an object with a string `role` and whatever else
/// the caller gives (`content` as a string or a list of parts, `tool_calls`, `name`, ...), all
/// of it visible to the template, keys in their given order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(
    try_from = "serde_json::Map<String, Json>",
    into = "serde_json::Map<String, Json>"
)]
pub struct ChatMessage(pub(super) serde_json::Map<String, Json>);

/// The text of an OpenAI content part `{"type": "text", "text": ...}`; None for any other part.
pub fn text_of_part(part: &Json) -> Option<&str> {
    (part.get("type")?.as_str()? == "text")
        .then(|| part.get("text")?.as_str())
        .flatten()
}

/// Between the texts of a message's text parts where they are read as one string (vLLM's
/// choice for templates that take content as a string).
pub const PARTS_JOIN: &str = "\n";

impl TryFrom<serde_json::Map<String, Json>> for ChatMessage {
    type Error = String;
    fn try_from(m: serde_json::Map<String, Json>) -> std::result::Result<Self, String> {
        match m.get("role") {
            Some(Json::String(_)) => Ok(ChatMessage(m)),
            Some(other) => Err(format!(
                "a message's `role` must be a string, found {other}"
            )),
            None => Err("every message needs a `role`".into()),
        }
    }
}

impl From<ChatMessage> for serde_json::Map<String, Json> {
    fn from(m: ChatMessage) -> Self {
        m.0
    }
}

impl ChatMessage {
    /// `{"role": role, "content": content}`.
    pub fn new(role: &str, content: &str) -> Self {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), Json::String(role.into()));
        m.insert("content".into(), Json::String(content.into()));
        ChatMessage(m)
    }

    /// The role.
    pub fn role(&self) -> &str {
        self.0.get("role").and_then(Json::as_str).unwrap_or("")
    }

    /// The text of the content: the string, or the text parts of a list joined by
    /// [`PARTS_JOIN`] (what a router reads of a turn, and what a chat template that does not
    /// loop over parts is given, so the router's text is found in the rendered prompt).
    pub fn text(&self) -> String {
        match self.0.get("content") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Json::as_str))
                .collect::<Vec<_>>()
                .join(PARTS_JOIN),
            _ => String::new(),
        }
    }

    /// The whole message as given.
    pub fn fields(&self) -> &serde_json::Map<String, Json> {
        &self.0
    }
}

/// What `apply_chat_template` takes: the messages, optional `tools` and `documents` (the
/// template sees None without them), whether to open the assistant's turn or continue the
/// last one, and more template variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Tool (function) schemas.
    pub tools: Option<Json>,
    /// Retrieval documents.
    pub documents: Option<Json>,
    /// Open the assistant's turn at the end.
    pub add_generation_prompt: bool,
    /// Continue the final message (an assistant's answer begun by the caller): the text ends
    /// where that message's content does, without the template's end of turn
    /// (transformers' `continue_final_message`). Excludes `add_generation_prompt`.
    pub continue_final_message: bool,
    /// More template variables (transformers' keyword arguments, vLLM's
    /// `chat_template_kwargs`: `enable_thinking` for Qwen3's template, say); the names the
    /// renderer sets itself are refused.
    pub template_kwargs: serde_json::Map<String, Json>,
}

impl ChatRequest {
    /// `messages` alone, the assistant's turn opened (what a chat prompt is).
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            add_generation_prompt: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChatMessage;

    #[test]
    fn a_message_is_an_object_with_a_string_role() {
        let read = |s: &str| serde_json::from_str::<ChatMessage>(s).map_err(|e| e.to_string());
        let m = read(r#"{"role": "user", "content": "a", "name": "n"}"#).unwrap();
        assert_eq!(m.text(), "a");
        for (s, want) in [
            (r#"{"content": "a"}"#, "needs a `role`"),
            (r#"{"role": 1}"#, "must be a string"),
            ("[1]", "expected a map"),
        ] {
            let e = read(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}

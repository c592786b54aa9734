//! Model-agnostic requests and responses of the client layer.

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatRole {
    /// The user (the prompt).
    User,
    /// The model (earlier answers, as conversation history).
    Assistant,
}

/// One message of a conversation. Its `Debug` shows images and documents as
/// `[image: png, 1,234 bytes]`, never their bytes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: ChatRole,
    /// The text blocks of the message (usually one).
    pub texts: Vec<String>,
}

impl std::fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let texts: Vec<std::borrow::Cow<'_, str>> = self
            .texts
            .iter()
            .map(|t| super::media::marker::shown(t))
            .collect();
        f.debug_struct("ChatMessage")
            .field("role", &self.role)
            .field("texts", &texts)
            .finish()
    }
}

impl ChatMessage {
    /// A one-block user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            texts: vec![text.into()],
        }
    }

    /// A one-block assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            texts: vec![text.into()],
        }
    }

    /// The blocks joined by newlines (for families that take one string per message).
    #[must_use]
    pub fn joined(&self) -> String {
        self.texts.join("\n")
    }
}

/// Inference parameters. `None` leaves the model's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceParams {
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0..=1.
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0..=1.
    pub top_p: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Extra model-specific fields (Converse `additionalModelRequestFields`, or merged into a
    /// native body).
    pub extra: Option<serde_json::Value>,
    /// `service_tier`: Bedrock's processing tier (`None`: the service's default tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// `latency`: standard or latency-optimized inference (`None`: standard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// `prompt_cache`: Bedrock prompt caching of the static part (`None`: `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache: Option<super::prompt_cache::PromptCache>,
    /// `rows_per_request`: rows packed into one request (`None`: 1, no packing). Not sent: the
    /// caller packs rows (see [`packing`](crate::inference::packing)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_request: Option<u32>,
}

/// Bedrock's processing tiers: `service_tier = 'default' | 'flex' | 'priority'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceTier {
    /// The standard tier.
    Default,
    /// Cheaper, when the workload can wait longer.
    Flex,
    /// Served first, at a premium.
    Priority,
}

impl ServiceTier {
    /// `default`, `flex` or `priority`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Flex => "flex",
            Self::Priority => "priority",
        }
    }

    /// Reads a tier (case-insensitive).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`](crate::Error::InvalidInput) naming the tiers.
    pub fn parse(text: &str, key: &str) -> crate::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(Self::Default),
            "flex" => Ok(Self::Flex),
            "priority" => Ok(Self::Priority),
            _ => Err(crate::Error::InvalidInput(format!(
                "Parameter '{key}' = '{text}' is not a service tier: use 'default', 'flex' (cheaper, slower) or 'priority' (faster, dearer)"
            ))),
        }
    }
}

/// Inference latency: `latency = 'standard' | 'optimized'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Latency {
    /// Standard inference.
    Standard,
    /// Latency-optimized inference, on the models and regions that offer it.
    Optimized,
}

impl Latency {
    /// `standard` or `optimized`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Optimized => "optimized",
        }
    }

    /// Reads a latency setting (case-insensitive).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`](crate::Error::InvalidInput) naming the values.
    pub fn parse(text: &str, key: &str) -> crate::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "standard" => Ok(Self::Standard),
            "optimized" => Ok(Self::Optimized),
            _ => Err(crate::Error::InvalidInput(format!(
                "Parameter '{key}' = '{text}' is not a latency setting: use 'standard' or 'optimized' (latency-optimized inference, where the model offers it)"
            ))),
        }
    }
}

/// A tool the model must call, whose input is the structured answer (Converse tool use with
/// `toolChoice` naming it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What the tool is for, as the model reads it.
    pub description: String,
    /// The JSON Schema of the tool's input.
    pub schema: serde_json::Value,
}

/// A text-generation request: an optional system prompt and a conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextRequest {
    /// The system prompt.
    pub system: Option<String>,
    /// The conversation; the last message is the user's.
    pub messages: Vec<ChatMessage>,
    /// Inference parameters.
    pub params: InferenceParams,
    /// A tool the model is forced to call: the answer is its input (structured output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolSpec>,
    /// Where Bedrock is asked to cache the prompt's static part (see
    /// [`prompt_cache`](super::prompt_cache)); changes neither the prompt nor the cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<super::prompt_cache::CachePoints>,
}

impl TextRequest {
    /// A single user prompt with parameters.
    pub fn prompt(text: impl Into<String>, params: InferenceParams) -> Self {
        Self {
            system: None,
            messages: vec![ChatMessage::user(text)],
            params,
            tool: None,
            cache: None,
        }
    }

    /// The order that puts requests sharing a prefix next to each other: by system prompt,
    /// then by the texts of the messages in turn.
    #[must_use]
    pub fn prefix_order(&self, other: &Self) -> std::cmp::Ordering {
        fn texts(r: &TextRequest) -> impl Iterator<Item = &str> {
            r.messages
                .iter()
                .flat_map(|m| m.texts.iter().map(String::as_str))
        }
        self.system
            .cmp(&other.system)
            .then_with(|| texts(self).cmp(texts(other)))
    }

    /// A rough input-token estimate (one token per four characters of text, and each image's
    /// or document's own estimate — see [`media`](super::media)), used to reserve a
    /// tokens-per-minute budget before the service reports the real count.
    #[must_use]
    pub fn estimated_input_tokens(&self) -> u64 {
        use super::media::marker;
        let texts = self.messages.iter().flat_map(|m| m.texts.iter());
        if !texts.clone().any(|t| marker::has_media(t)) {
            let chars: usize = self.system.as_ref().map_or(0, |s| s.chars().count())
                + texts.map(|t| t.chars().count()).sum::<usize>();
            return (chars as u64).div_ceil(4).max(1);
        }
        let system = self.system.as_deref().map_or(0, marker::estimated_tokens);
        (system + texts.map(|t| marker::estimated_tokens(t)).sum::<u64>()).max(1)
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextResponse {
    /// The generated text.
    pub text: String,
    /// Input tokens the service counted.
    pub input_tokens: u64,
    /// Output tokens the service counted.
    pub output_tokens: u64,
    /// Why generation stopped, normalised to Converse's vocabulary: `end_turn`, `max_tokens`,
    /// `stop_sequence`, `tool_use`, `content_filtered`, `guardrail_intervened`.
    pub stop_reason: String,
    /// The input of the forced tool's call, when the request had a [`ToolSpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_input: Option<serde_json::Value>,
    /// How this answer was obtained (not cached with it).
    #[serde(skip)]
    pub call: CallInfo,
}

/// An embedding of one row's text.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedResponse {
    /// The vector, shared with the cache and with the rows repeating the same text.
    pub vector: std::sync::Arc<Vec<f32>>,
    /// This row's share of its call's input tokens (calls embedding several texts divide
    /// theirs among them, the remainder to the first); 0 when no call was made for the row.
    pub input_tokens: u64,
    /// How this vector was obtained.
    pub call: CallInfo,
}

/// How one answer was obtained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The id of the batch inference job that answered, for an answer of a batch job.
    pub batch_job: Option<std::sync::Arc<str>>,
    /// Served from the cache or by an identical request in flight: no request was sent for it.
    pub cache_hit: bool,
    /// A repeat of an earlier input of the same batch, answered by that input's request.
    pub deduplicated: bool,
    /// Attempts retried before the answer came.
    pub retries: u32,
    /// Attempts refused by throttling among them.
    pub throttles: u32,
    /// Milliseconds of the successful attempt.
    pub latency_ms: u64,
    /// The service tier Bedrock says it used (`default`, `flex`, `priority`), when it says.
    pub service_tier: Option<std::sync::Arc<str>>,
    /// Input tokens Bedrock read from its prompt cache (billed at the read price).
    pub cache_read_tokens: u64,
    /// Input tokens Bedrock wrote to its prompt cache (billed at the write price).
    pub cache_write_tokens: u64,
    /// The rows answered by the request (more than 1 when rows were packed; 0 or 1 otherwise).
    pub packed_rows: u32,
    /// The first row of a packed request (the one that counts the request).
    pub packed_first: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::media::{Format, MediaKind, marker};

    #[test]
    fn debug_and_estimates_never_carry_the_bytes() {
        let image = marker::inline(MediaKind::Image, Format::Gif, None, &[b'G'; 4000]);
        let request = TextRequest::prompt(format!("Describe {image}"), InferenceParams::default());
        assert_eq!(
            format!("{:?}", request.messages[0]),
            "ChatMessage { role: User, texts: [\"Describe [image: gif, 4,000 bytes]\"] }"
        );
        // "Describe " is 3 tokens; an image whose header gives no size is 1,600.
        assert_eq!(request.estimated_input_tokens(), 3 + 1600);
        assert_eq!(
            TextRequest::prompt("abcdefgh", InferenceParams::default()).estimated_input_tokens(),
            2
        );
    }
}

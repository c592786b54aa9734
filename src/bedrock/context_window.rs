//! How many tokens a model reads and writes in one request: the context window of the known
//! Bedrock models, by model family, for the operators that pack many rows into one request
//! (`ai_agg` chunks its rows to fit).

use super::families::base_model_id;

/// The context window assumed for a model this table does not know, in tokens: small enough
/// for every text model on Bedrock.
pub const UNKNOWN_CONTEXT_TOKENS: u32 = 8_000;

/// Context windows in tokens, by the start of the base model id (the first match wins, so
/// specific prefixes come before general ones). From the providers' model cards.
const CONTEXT_WINDOWS: &[(&str, u32)] = &[
    ("amazon.titan-text-premier", 32_000),
    ("amazon.titan-text-express", 8_000),
    ("amazon.titan-text-lite", 4_000),
    ("amazon.nova-micro", 128_000),
    ("amazon.nova-lite", 300_000),
    ("amazon.nova-pro", 300_000),
    ("amazon.nova-premier", 1_000_000),
    ("anthropic.claude", 200_000),
    ("meta.llama3-8b", 8_000),
    ("meta.llama3-70b", 8_000),
    ("meta.llama3", 128_000),
    ("meta.llama4", 128_000),
    ("mistral.mistral-7b", 32_000),
    ("mistral.mixtral", 32_000),
    ("mistral.mistral-small", 32_000),
    ("mistral.mistral-large-2402", 32_000),
    ("mistral.", 128_000),
    ("cohere.command-r", 128_000),
    ("cohere.command", 4_000),
    ("ai21.jamba", 256_000),
    ("deepseek.", 128_000),
    ("openai.", 128_000),
    ("qwen.", 128_000),
    ("writer.", 128_000),
];

/// The context window of `model_id` (a model id, inference profile id or ARN) in tokens, or
/// [`UNKNOWN_CONTEXT_TOKENS`] for a model the table does not know.
///
/// ```
/// use datafusion_bedrock::bedrock::context_window::context_tokens;
/// assert_eq!(context_tokens("us.anthropic.claude-3-5-haiku-20241022-v1:0"), 200_000);
/// assert_eq!(context_tokens("example.unknown-v1"), 8_000);
/// ```
#[must_use]
pub fn context_tokens(model_id: &str) -> u32 {
    let base = base_model_id(model_id);
    CONTEXT_WINDOWS
        .iter()
        .find(|(prefix, _)| base.starts_with(prefix))
        .map_or(UNKNOWN_CONTEXT_TOKENS, |(_, tokens)| *tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_prefixes_win_over_general_ones() {
        let windows: Vec<u32> = [
            "meta.llama3-8b-instruct-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
            "mistral.mistral-7b-instruct-v0:2",
            "mistral.mistral-large-2407-v1:0",
            "amazon.titan-text-lite-v1",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0",
        ]
        .iter()
        .map(|id| context_tokens(id))
        .collect();
        assert_eq!(
            windows,
            vec![8_000, 128_000, 32_000, 128_000, 4_000, 300_000]
        );
    }
}

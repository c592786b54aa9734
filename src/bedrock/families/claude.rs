//! Anthropic Claude, Messages API.
//!
//! Request: `{"anthropic_version": "bedrock-2023-05-31", "max_tokens", "system", "messages":
//! [{"role", "content": [{"type": "text", "text"}]}], "temperature", "top_p",
//! "stop_sequences"}`; response: `{"content": [{"type": "text", "text"}], "stop_reason",
//! "usage": {"input_tokens", "output_tokens"}}`.

use serde_json::{Map, Value, json};

use super::ModelFamily;
use super::common::{self, Body, ParamKeys};
use crate::Result;
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};

const CLAUDE: ModelFamily = ModelFamily::Claude;

/// The `anthropic_version` Bedrock requires.
const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// `max_tokens` when the request leaves it unset (the Messages API requires it).
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The Claude request body.
pub(super) fn encode(request: &TextRequest) -> Result<Value> {
    common::check_conversation(CLAUDE, request, true)?;
    common::require_user_first(CLAUDE, request)?;
    let messages: Vec<Value> = common::merged_turns(request)
        .iter()
        .map(|turn| {
            let content: Vec<Value> = turn
                .texts
                .iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect();
            let role = match turn.role {
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("anthropic_version".into(), ANTHROPIC_VERSION.into());
    common::put_params(
        CLAUDE,
        &mut body,
        &request.params,
        &ParamKeys {
            max_tokens: "max_tokens",
            temperature: "temperature",
            top_p: "top_p",
            stop: Some("stop_sequences"),
        },
    )?;
    body.entry("max_tokens")
        .or_insert_with(|| DEFAULT_MAX_TOKENS.into());
    if let Some(system) = &request.system {
        body.insert("system".into(), system.as_str().into());
    }
    body.insert("messages".into(), messages.into());
    common::with_extra(CLAUDE, body, request.params.extra.as_ref())
}

/// Parses a Claude response body. The text is that of all `text` blocks, concatenated
/// (thinking and tool-use blocks are skipped); `refusal` is reported as `content_filtered`.
pub(super) fn decode(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(CLAUDE, raw)?;
    let text: String = body
        .array("/content")?
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    let stop_reason = match body.opt_str("/stop_reason") {
        Some("refusal") => "content_filtered".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text,
        body.tokens("/usage/input_tokens"),
        body.tokens("/usage/output_tokens"),
        stop_reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::{decode_text_response, encode_text_request};
    use crate::bedrock::request::{CallInfo, ChatMessage, InferenceParams};

    #[test]
    fn requests_encode() {
        let request = TextRequest {
            tool: None,
            cache: None,
            system: Some("You are terse.".into()),
            messages: vec![
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello."),
                ChatMessage::user("Colour of the sky?"),
                ChatMessage::user("One word."),
            ],
            params: InferenceParams {
                max_tokens: Some(200),
                temperature: Some(0.3),
                top_p: Some(0.95),
                stop: vec!["\n\nHuman:".into()],
                extra: Some(json!({"top_k": 40})),
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
        };
        assert_eq!(
            encode_text_request(CLAUDE, &request).unwrap(),
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 200,
                "system": "You are terse.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Colour of the sky?"},
                        {"type": "text", "text": "One word."}
                    ]}
                ],
                "temperature": 0.3,
                "top_p": 0.95,
                "stop_sequences": ["\n\nHuman:"],
                "top_k": 40
            })
        );
    }

    #[test]
    fn max_tokens_defaults_and_prefill_is_allowed() {
        let request = TextRequest::prompt("Hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(CLAUDE, &request).unwrap(),
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
            })
        );
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![
                ChatMessage::user("JSON please"),
                ChatMessage::assistant("{"),
            ],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(CLAUDE, &request).unwrap(),
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 4096,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "JSON please"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "{"}]}
                ]
            })
        );
    }

    #[test]
    fn invalid_requests_are_refused() {
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![ChatMessage::assistant("Hi")],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(CLAUDE, &request)
                .unwrap_err()
                .to_string(),
            "Anthropic Claude request starts with an assistant message, but Anthropic \
             Claude's native InvokeModel API requires the conversation to start with a user \
             message; add the user's message first"
        );
        let request = TextRequest::prompt(
            "Hi",
            InferenceParams {
                top_p: Some(f32::INFINITY),
                ..Default::default()
            },
        );
        assert_eq!(
            encode_text_request(CLAUDE, &request)
                .unwrap_err()
                .to_string(),
            "top_p must be a finite number, got inf (Anthropic Claude request); set it to a \
             value such as 0.5"
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[{"type":"text","text":"Blue."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":5}}"#;
        assert_eq!(
            decode_text_response(CLAUDE, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 14,
                output_tokens: 5,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"id":"msg_bdrk_02","type":"message","role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"x"},{"type":"text","text":"The sky "},{"type":"text","text":"is blue"}],"stop_reason":"stop_sequence","stop_sequence":"END","usage":{"input_tokens":3,"output_tokens":9}}"#;
        assert_eq!(
            decode_text_response(CLAUDE, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "The sky is blue".into(),
                input_tokens: 3,
                output_tokens: 9,
                stop_reason: "stop_sequence".into(),
            }
        );
        for (native, converse) in [
            ("max_tokens", "max_tokens"),
            ("tool_use", "tool_use"),
            ("refusal", "content_filtered"),
        ] {
            let body = json!({"content": [], "stop_reason": native, "usage": {}});
            let decoded = decode_text_response(CLAUDE, body.to_string().as_bytes()).unwrap();
            assert_eq!(decoded.stop_reason, converse, "{native}");
        }
    }

    #[test]
    fn foreign_responses_are_refused() {
        let body = format!(r#"{{"outputs":[{{"text":"{}"}}]}}"#, "x".repeat(300));
        let err = decode_text_response(CLAUDE, body.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "Anthropic Claude response body has no array at `content`, so it is not in \
                 the Anthropic Claude InvokeModel response format; check that the model id \
                 belongs to the Anthropic Claude family. Body: {}…",
                &body[..200]
            )
        );
    }
}

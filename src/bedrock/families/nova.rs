//! Amazon Nova (understanding models), Messages schema v1.
//!
//! Request: `{"schemaVersion": "messages-v1", "system": [{"text"}], "messages": [{"role",
//! "content": [{"text"}]}], "inferenceConfig": {"max_new_tokens", "temperature", "top_p",
//! "stopSequences"}}`; response: `{"output": {"message": {"content": [{"text"}]}},
//! "stopReason", "usage": {"inputTokens", "outputTokens"}}`.

use serde_json::{Map, Value, json};

use super::ModelFamily;
use super::common::{self, Body, ParamKeys};
use crate::Result;
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};

const NOVA: ModelFamily = ModelFamily::Nova;

/// The Nova request body.
pub(super) fn encode(request: &TextRequest) -> Result<Value> {
    common::check_conversation(NOVA, request, true)?;
    common::require_user_first(NOVA, request)?;
    let messages: Vec<Value> = common::merged_turns(request)
        .iter()
        .map(|turn| {
            let content: Vec<Value> = turn.texts.iter().map(|t| json!({"text": t})).collect();
            json!({"role": role(turn.role), "content": content})
        })
        .collect();
    let mut config = Map::new();
    common::put_params(
        NOVA,
        &mut config,
        &request.params,
        &ParamKeys {
            max_tokens: "max_new_tokens",
            temperature: "temperature",
            top_p: "top_p",
            stop: Some("stopSequences"),
        },
    )?;
    let mut body = Map::new();
    body.insert("schemaVersion".into(), "messages-v1".into());
    if let Some(system) = &request.system {
        body.insert("system".into(), json!([{"text": system}]));
    }
    body.insert("messages".into(), messages.into());
    if !config.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(config));
    }
    common::with_extra(NOVA, body, request.params.extra.as_ref())
}

/// Nova's name of a role.
fn role(role: ChatRole) -> &'static str {
    match role {
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

/// Parses a Nova response body. The text is that of all text blocks, concatenated (other
/// blocks, such as reasoning, are skipped). Nova's stop reasons are Converse's already.
pub(super) fn decode(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(NOVA, raw)?;
    let text: String = body
        .array("/output/message/content")?
        .iter()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    Ok(body.response(
        text,
        body.tokens("/usage/inputTokens"),
        body.tokens("/usage/outputTokens"),
        common::other_reason(body.opt_str("/stopReason")),
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
                ChatMessage {
                    role: ChatRole::User,
                    texts: vec!["Colour of the sky?".into(), "One word.".into()],
                },
            ],
            params: InferenceParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                top_p: Some(0.9),
                stop: vec!["END".into()],
                extra: Some(json!({"inferenceConfig": {"topK": 20}})),
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
        };
        assert_eq!(
            encode_text_request(NOVA, &request).unwrap(),
            json!({
                "schemaVersion": "messages-v1",
                "system": [{"text": "You are terse."}],
                "messages": [
                    {"role": "user", "content": [{"text": "Hi"}]},
                    {"role": "assistant", "content": [{"text": "Hello."}]},
                    {"role": "user", "content": [{"text": "Colour of the sky?"}, {"text": "One word."}]}
                ],
                "inferenceConfig": {
                    "max_new_tokens": 100,
                    "temperature": 0.5,
                    "top_p": 0.9,
                    "stopSequences": ["END"],
                    "topK": 20
                }
            })
        );
    }

    #[test]
    fn minimal_requests_prefill_and_merged_turns() {
        let request = TextRequest::prompt("Hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(NOVA, &request).unwrap(),
            json!({
                "schemaVersion": "messages-v1",
                "messages": [{"role": "user", "content": [{"text": "Hi"}]}]
            })
        );
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![
                ChatMessage::user("a"),
                ChatMessage::user("b"),
                ChatMessage::assistant("{"),
            ],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(NOVA, &request).unwrap(),
            json!({
                "schemaVersion": "messages-v1",
                "messages": [
                    {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                    {"role": "assistant", "content": [{"text": "{"}]}
                ]
            })
        );
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![ChatMessage::assistant("Hi"), ChatMessage::user("Hi")],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(NOVA, &request).unwrap_err().to_string(),
            "Amazon Nova request starts with an assistant message, but Amazon Nova's native \
             InvokeModel API requires the conversation to start with a user message; add the \
             user's message first"
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"output":{"message":{"content":[{"text":"Blue"},{"text":"."}],"role":"assistant"}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":2,"totalTokens":14,"cacheReadInputTokenCount":0,"cacheWriteInputTokenCount":0}}"#;
        assert_eq!(
            decode_text_response(NOVA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 12,
                output_tokens: 2,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"output":{"message":{"content":[{"reasoningContent":{"reasoningText":{"text":"hmm"}}},{"text":"Long"}],"role":"assistant"}},"stopReason":"max_tokens","usage":{"inputTokens":3,"outputTokens":1}}"#;
        assert_eq!(
            decode_text_response(NOVA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Long".into(),
                input_tokens: 3,
                output_tokens: 1,
                stop_reason: "max_tokens".into(),
            }
        );
        let body = br#"{"output":{"message":{"content":[],"role":"assistant"}},"stopReason":"content_filtered"}"#;
        assert_eq!(
            decode_text_response(NOVA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: String::new(),
                input_tokens: 0,
                output_tokens: 0,
                stop_reason: "content_filtered".into(),
            }
        );
    }

    #[test]
    fn foreign_responses_are_refused() {
        let body = br#"{"content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn"}"#;
        assert_eq!(
            decode_text_response(NOVA, body).unwrap_err().to_string(),
            "Amazon Nova response body has no array at `output.message.content`, so it is not \
             in the Amazon Nova InvokeModel response format; check that the model id belongs \
             to the Amazon Nova family. Body: {\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\"}"
        );
    }
}
